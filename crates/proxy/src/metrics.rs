//! Prometheus metrics (requests by site and status class, a latency histogram per site,
//! connections, reloads, certificates) and the health endpoint, on a private address.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
pub const BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
pub struct SiteMetrics {
    /// Requests by status class: 1xx … 5xx.
    pub status: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl SiteMetrics {
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).saturating_sub(1);
        if let Some(c) = self.status.get(class) {
            c.fetch_add(1, Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                b.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }
}

/// Counters that belong to no site.
#[derive(Debug, Default)]
pub struct Global {
    pub unknown_host: AtomicU64,
    pub misdirected: AtomicU64,
    pub bad_requests: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub client_limit_refused: AtomicU64,
    pub http2_windows_starved: AtomicU64,
    /// HTTP/2 connections told to go away: their client cancelled too many requests
    /// before their answer (rapid reset).
    pub http2_cancel_floods: AtomicU64,
    /// Connections (and upgrades) refused: every one of `max_connections` was taken.
    pub refused_full: AtomicU64,
    pub idle_reclaimed: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub certificates_issued: AtomicU64,
    pub certificate_failures: AtomicU64,
    pub websockets_open: AtomicU64,
    /// Lines the access log's queue refused (full) or a write lost (shared with its writer).
    pub access_log_dropped: std::sync::Arc<AtomicU64>,
    /// Connections served by each worker thread since the start (what `crate::balance` keeps
    /// even is the connections open at once, a gauge of their own).
    pub worker_connections: Vec<AtomicU64>,
    /// Connections accepted by one worker and handed to a less busy one.
    pub connections_handed_over: AtomicU64,
}

impl Global {
    pub fn new(workers: usize) -> Self {
        Global {
            worker_connections: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ..Global::default()
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One value per worker thread, labelled by its index.
fn per_worker(
    o: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    values: impl Iterator<Item = u64>,
) {
    let _ = writeln!(
        o,
        "# HELP pic2_proxy_{name} {help}\n# TYPE pic2_proxy_{name} {kind}"
    );
    for (i, v) in values.enumerate() {
        let _ = writeln!(o, "pic2_proxy_{name}{{worker=\"{i}\"}} {v}");
    }
}

/// The Prometheus text exposition of every counter and gauge; `worker_open` is each worker's
/// open connections.
pub fn render(
    global: &Global,
    worker_open: &[usize],
    sites: &[std::sync::Arc<crate::table::Site>],
    certificates: &[crate::tls::Coverage],
) -> String {
    let mut o = String::new();
    let g = |o: &mut String, name: &str, kind: &str, help: &str, v: &AtomicU64| {
        let _ = writeln!(
            o,
            "# HELP pic2_proxy_{name} {help}\n# TYPE pic2_proxy_{name} {kind}\npic2_proxy_{name} {}",
            v.load(Relaxed)
        );
    };
    g(
        &mut o,
        "unknown_host_total",
        "counter",
        "Requests for a name no site serves.",
        &global.unknown_host,
    );
    g(
        &mut o,
        "misdirected_requests_total",
        "counter",
        "Requests over TLS for another site than the one the handshake named (421).",
        &global.misdirected,
    );
    g(
        &mut o,
        "bad_requests_total",
        "counter",
        "Requests refused as malformed.",
        &global.bad_requests,
    );
    g(
        &mut o,
        "connections_open",
        "gauge",
        "Client connections open.",
        &global.connections_open,
    );
    g(
        &mut o,
        "connections_total",
        "counter",
        "Client connections accepted.",
        &global.connections_total,
    );
    g(
        &mut o,
        "connections_handed_over_total",
        "counter",
        "Client connections accepted by one worker thread and served by a less busy one.",
        &global.connections_handed_over,
    );
    per_worker(
        &mut o,
        ("worker_connections_total", "counter"),
        "Client connections served by each worker thread.",
        global.worker_connections.iter().map(|c| c.load(Relaxed)),
    );
    per_worker(
        &mut o,
        ("worker_connections_open", "gauge"),
        "Client connections open on each worker thread (a new one goes to a worker with at least two fewer).",
        worker_open.iter().map(|&n| u64::try_from(n).unwrap_or(u64::MAX)),
    );
    g(
        &mut o,
        "client_limit_refused_total",
        "counter",
        "Connections closed at once: their client had max_connections_per_client open.",
        &global.client_limit_refused,
    );
    g(
        &mut o,
        "connections_refused_full_total",
        "counter",
        "Connections and WebSocket upgrades refused: max_connections were open (quiet ones are then closed to make room).",
        &global.refused_full,
    );
    g(
        &mut o,
        "idle_connections_reclaimed_total",
        "counter",
        "Connections with nothing in flight for a second or more closed to make room, max_connections being open.",
        &global.idle_reclaimed,
    );
    g(
        &mut o,
        "http2_windows_starved_total",
        "counter",
        "HTTP/2 connections told to go away, then closed: an answer waited send_timeout on its client's flow-control window.",
        &global.http2_windows_starved,
    );
    g(
        &mut o,
        "http2_cancel_floods_total",
        "counter",
        "HTTP/2 connections told to go away: their client cancelled requests by the hundred before their answer began (rapid reset).",
        &global.http2_cancel_floods,
    );
    g(
        &mut o,
        "tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed or timed out.",
        &global.tls_handshake_failures,
    );
    g(
        &mut o,
        "reloads_total",
        "counter",
        "Successful reloads.",
        &global.reloads,
    );
    g(
        &mut o,
        "reload_failures_total",
        "counter",
        "Reloads refused (the previous routes stay).",
        &global.reload_failures,
    );
    g(
        &mut o,
        "certificates_issued_total",
        "counter",
        "Certificates obtained over ACME.",
        &global.certificates_issued,
    );
    g(
        &mut o,
        "certificate_failures_total",
        "counter",
        "Failed ACME attempts.",
        &global.certificate_failures,
    );
    g(
        &mut o,
        "websockets_open",
        "gauge",
        "Upgraded connections (WebSockets) open.",
        &global.websockets_open,
    );
    g(
        &mut o,
        "access_log_dropped_total",
        "counter",
        "Access log lines dropped: the writer behind (queue full) or a write that failed (disk full).",
        &global.access_log_dropped,
    );
    o.push_str("# HELP pic2_proxy_certificate_not_after_seconds When the first of the certificates served for a site's names ends (Unix time).\n# TYPE pic2_proxy_certificate_not_after_seconds gauge\n");
    for c in certificates {
        if let Some(t) = c.not_after {
            let _ = writeln!(
                o,
                "pic2_proxy_certificate_not_after_seconds{{site=\"{}\"}} {t}",
                label(&c.site)
            );
        }
    }
    o.push_str("# HELP pic2_proxy_certificate_names_uncovered Names of a TLS site that no valid certificate served covers.\n# TYPE pic2_proxy_certificate_names_uncovered gauge\n");
    for c in certificates {
        let _ = writeln!(
            o,
            "pic2_proxy_certificate_names_uncovered{{site=\"{}\"}} {}",
            label(&c.site),
            c.uncovered
        );
    }
    o.push_str("# HELP pic2_proxy_requests_total Requests by site and status class.\n# TYPE pic2_proxy_requests_total counter\n");
    for s in sites {
        for (i, c) in s.metrics.status.iter().enumerate() {
            let _ = writeln!(
                o,
                "pic2_proxy_requests_total{{site=\"{}\",code=\"{}xx\"}} {}",
                label(&s.name),
                i + 1,
                c.load(Relaxed)
            );
        }
    }
    o.push_str("# HELP pic2_proxy_request_duration_seconds Time to the response head, by site.\n# TYPE pic2_proxy_request_duration_seconds histogram\n");
    for s in sites {
        let m = &s.metrics;
        let name = label(&s.name);
        let mut acc = 0;
        for (b, c) in BUCKETS.iter().zip(m.buckets.iter()) {
            acc += c.load(Relaxed);
            let _ = writeln!(
                o,
                "pic2_proxy_request_duration_seconds_bucket{{site=\"{name}\",le=\"{b}\"}} {acc}"
            );
        }
        let count = m.count.load(Relaxed);
        let _ = writeln!(
            o,
            "pic2_proxy_request_duration_seconds_bucket{{site=\"{name}\",le=\"+Inf\"}} {count}\npic2_proxy_request_duration_seconds_sum{{site=\"{name}\"}} {}\npic2_proxy_request_duration_seconds_count{{site=\"{name}\"}} {count}",
            m.sum_micros.load(Relaxed) as f64 / 1e6
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
