//! The compiled routes: host name → site, with each name's redirect, and the settings.

use crate::metrics::SiteMetrics;
use crate::net::Net;
use crate::Error;
use pic2_render::proxy::{RedirectTo, RouteTls, Routes};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The proxy's timeouts: the routes' settings (`[proxy] …_timeout_seconds` in the
/// inventory) over [`crate::Options`]' `timeouts`, a site's `backend_timeout_seconds` over
/// both; read again on every reload, applied to the connections opened after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to read a request head (from its first byte, or an empty line before it), and
    /// the longest an HTTP/1 connection stays open with nothing in flight and no new
    /// request (counted from the last answer's last byte). 15 s.
    pub header_read: Duration,
    /// The longest a read of a request's body may wait for the client (nginx's
    /// `client_body_timeout`, and its default: 60 s): past it the request fails and its
    /// connection ends (the "slow POST" attack would otherwise hold it, and a backend
    /// connection, for ever).
    pub body_read: Duration,
    /// The longest wait on a backend: for its answer's head once the request is sent
    /// whole, for it to take the next byte of a request's body, for the next byte of its
    /// answer's body (nginx's `proxy_read_timeout` and `proxy_send_timeout` in one). 60 s.
    pub backend: Duration,
    /// A client that takes no byte of what it is sent for this long is cut off (a slow
    /// reader would otherwise hold its connection, and the backend connection feeding it,
    /// for ever: the "slow read" attack). nginx's `send_timeout`, and its default: 60 s.
    pub send: Duration,
    /// A WebSocket (or any upgraded connection) with no byte either way for this long is
    /// closed; an HTTP/2 connection with no stream in flight and no new one for this long is
    /// told to go away (GOAWAY). Keep-alive pings do not count. 600 s.
    pub idle: Duration,
    /// The longest a TLS handshake may take (a connection that opens and says nothing,
    /// or trickles its hello). 10 s.
    pub tls_handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: Duration::from_secs(15),
            body_read: Duration::from_secs(60),
            backend: Duration::from_secs(60),
            send: Duration::from_secs(60),
            idle: Duration::from_secs(600),
            tls_handshake: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// `settings`' timeouts, each absent one taken from `defaults`.
    fn over(settings: &pic2_render::proxy::Timeouts, defaults: Timeouts) -> Result<Self, Error> {
        Ok(Timeouts {
            header_read: seconds_or(settings.header_read_seconds, defaults.header_read)?,
            body_read: seconds_or(settings.body_read_seconds, defaults.body_read)?,
            backend: seconds_or(settings.backend_seconds, defaults.backend)?,
            send: seconds_or(settings.send_seconds, defaults.send)?,
            idle: seconds_or(settings.idle_seconds, defaults.idle)?,
            tls_handshake: seconds_or(settings.tls_handshake_seconds, defaults.tls_handshake)?,
        })
    }
}

/// A timeout of the routes, or `default` without one. `pic2 render` never writes 0 (the
/// inventory refuses it), but a routes file written by hand might: it would cut every
/// exchange at once.
fn seconds_or(seconds: Option<u32>, default: Duration) -> Result<Duration, Error> {
    match seconds {
        None => Ok(default),
        Some(0) => Err(Error::invalid(
            "routes timeout",
            "0",
            "a timeout is at least 1 second",
        )),
        Some(s) => Ok(Duration::from_secs(u64::from(s))),
    }
}

/// What applies where the routes say nothing (from [`crate::Options`]).
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// Largest request body, in bytes.
    pub max_body: u64,
    pub timeouts: Timeouts,
}

/// One site as the request path needs it.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    /// The backend (`host:port`) and the pool of its connections the site uses.
    pub backend: crate::backend::Target,
    /// The backend as a URI authority (None if it is not one: its requests get 502).
    pub authority: Option<hyper::http::uri::Authority>,
    pub tls: RouteTls,
    pub hsts: bool,
    /// Query strings go into the access log (not those of the platform's applications).
    pub log_query: bool,
    /// Largest request body in bytes.
    pub max_body: u64,
    /// The longest wait on this backend (the site's own, or the table's).
    pub backend_timeout: Duration,
    pub metrics: Arc<SiteMetrics>,
}

/// What a host name leads to.
#[derive(Clone, Debug)]
pub struct HostEntry {
    pub site: Arc<Site>,
    /// The name this one is redirected to (www ↔ apex), if any.
    pub redirect_to: Option<Arc<str>>,
}

/// Host names to their entries. Looked up on every request with a name the client chose, but
/// never grown from one: a fast hasher is safe here (keyed anyway, per process).
pub type Hosts = HashMap<String, HostEntry, foldhash::fast::RandomState>;

#[derive(Debug)]
pub struct Table {
    pub hosts: Hosts,
    pub sites: Vec<Arc<Site>>,
    pub admin: Vec<Net>,
    /// Proxies in front whose forwarding headers are believed ([`crate::origin`]).
    pub trusted: Vec<Net>,
    pub timeouts: Timeouts,
    pub routes: Routes,
}

/// Reads and parses the routes file.
pub fn read_routes(path: &Path) -> Result<Routes, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Routes {
        path: path.to_owned(),
        source,
    })
}

/// Lower-cases a host name and drops a trailing dot and a port.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let h = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        match raw.rsplit_once(':') {
            // a bare IPv6 address (a routes file may name a site so): no port to take off,
            // and taking one left `::1` as `:`
            Some((h, _)) if h.contains(':') => raw,
            Some((h, _)) => h,
            None => raw,
        }
    };
    let h = h.trim_end_matches('.');
    // most clients send the name in lower case: then no copy, on every request
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

impl Table {
    /// Compiles routes; the metrics of sites already known to `previous` carry over.
    pub fn build(
        routes: Routes,
        previous: Option<&Table>,
        defaults: Defaults,
    ) -> Result<Table, Error> {
        if routes.version != 1 {
            return Err(Error::invalid(
                "routes version",
                &routes.version.to_string(),
                "this proxy reads version 1",
            ));
        }
        let networks = |list: &[String]| -> Result<Vec<Net>, Error> {
            list.iter().map(|a| Net::parse(a)).collect()
        };
        let admin = networks(&routes.settings.admin_addresses)?;
        let trusted = networks(&routes.settings.trusted_proxies)?;
        let timeouts = Timeouts::over(&routes.settings.timeouts, defaults.timeouts)?;
        let old: HashMap<&str, &Arc<SiteMetrics>> = previous
            .map(|p| {
                p.sites
                    .iter()
                    .map(|s| (s.name.as_str(), &s.metrics))
                    .collect()
            })
            .unwrap_or_default();
        let mut hosts = Hosts::default();
        let mut sites = Vec::with_capacity(routes.sites.len());
        for r in &routes.sites {
            let site = Arc::new(Site {
                name: r.name.clone(),
                backend: crate::backend::Target::new(
                    &r.backend,
                    r.pool.as_deref().unwrap_or(&r.name),
                ),
                authority: r.backend.parse().ok(),
                tls: r.tls.clone(),
                hsts: r.hsts,
                log_query: r.log_query,
                max_body: r
                    .max_body_mb
                    .map_or(defaults.max_body, |mb| u64::from(mb) * 1024 * 1024),
                backend_timeout: seconds_or(r.backend_timeout_seconds, timeouts.backend)?,
                metrics: old
                    .get(r.name.as_str())
                    .map_or_else(|| Arc::new(SiteMetrics::default()), |m| Arc::clone(m)),
            });
            let names: Vec<String> = r
                .hosts
                .iter()
                .map(|h| normalize_host(h).into_owned())
                .collect();
            for h in &names {
                let target = match r.redirect {
                    Some(RedirectTo::Www) if !h.starts_with("www.") => {
                        Some(format!("www.{h}")).filter(|t| names.contains(t))
                    }
                    Some(RedirectTo::Apex) => h
                        .strip_prefix("www.")
                        .map(str::to_owned)
                        .filter(|t| names.contains(t)),
                    _ => None,
                };
                let entry = HostEntry {
                    site: Arc::clone(&site),
                    redirect_to: target.map(Arc::from),
                };
                if hosts.insert(h.clone(), entry).is_some() {
                    return Err(Error::invalid("routes", h, "this name is served twice"));
                }
            }
            sites.push(site);
        }
        Ok(Table {
            hosts,
            sites,
            admin,
            trusted,
            timeouts,
            routes,
        })
    }

    pub fn is_admin(&self, ip: std::net::IpAddr) -> bool {
        self.admin.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("Example.ORG:8443"), "example.org");
        assert_eq!(normalize_host("example.org."), "example.org");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host("2001:DB8::1"), "2001:db8::1");
    }

    #[test]
    fn the_demo_routes_compile_with_redirects() {
        let text = r#"{"version":1,"sites":[{"name":"a.test","hosts":["a.test","www.a.test"],
            "backend":"127.0.0.1:1","tls":{"mode":"none"},"redirect":"www"}]}"#;
        let t = Table::build(serde_json::from_str(text).unwrap(), None, defaults()).unwrap();
        assert_eq!(t.hosts["a.test"].redirect_to.as_deref(), Some("www.a.test"));
        assert!(t.hosts["www.a.test"].redirect_to.is_none());
    }

    fn defaults() -> Defaults {
        crate::Options::new("unused").defaults()
    }

    #[test]
    fn sites_share_a_backends_connections_only_within_a_pool() {
        let text = r#"{"version":1,"sites":[
            {"name":"a.test","hosts":["a.test"],"backend":"127.0.0.1:1","tls":{"mode":"none"},"pool":"owner x"},
            {"name":"b.test","hosts":["b.test"],"backend":"127.0.0.1:1","tls":{"mode":"none"},"pool":"owner x"},
            {"name":"c.test","hosts":["c.test"],"backend":"127.0.0.1:1","tls":{"mode":"none"},"pool":"owner y"},
            {"name":"d.test","hosts":["d.test"],"backend":"127.0.0.1:1","tls":{"mode":"none"}},
            {"name":"e.test","hosts":["e.test"],"backend":"127.0.0.1:1","tls":{"mode":"none"}}]}"#;
        let t = Table::build(serde_json::from_str(text).unwrap(), None, defaults()).unwrap();
        let pool = |h: &str| t.hosts[h].site.backend.pool_key().to_owned();
        assert_eq!(pool("a.test"), pool("b.test"), "one owner's sites");
        assert_ne!(pool("a.test"), pool("c.test"), "another owner's");
        assert_ne!(
            pool("d.test"),
            pool("e.test"),
            "without a pool, a site's own"
        );
        assert_eq!(&*t.hosts["c.test"].site.backend.addr, "127.0.0.1:1");
    }

    #[test]
    fn timeouts_are_the_routes_over_the_defaults_and_a_site_over_both() {
        let text = r#"{"version":1,"settings":{"timeouts":{"send_seconds":5,"backend_seconds":90,"tls_handshake_seconds":3}},
            "sites":[{"name":"a.test","hosts":["a.test"],"backend":"127.0.0.1:1","tls":{"mode":"none"}},
            {"name":"b.test","hosts":["b.test"],"backend":"127.0.0.1:2","tls":{"mode":"none"},
             "backend_timeout_seconds":600}]}"#;
        let d = defaults();
        let t = Table::build(serde_json::from_str(text).unwrap(), None, d).unwrap();
        assert_eq!(t.timeouts.send, Duration::from_secs(5));
        assert_eq!(t.timeouts.backend, Duration::from_secs(90));
        assert_eq!(t.timeouts.tls_handshake, Duration::from_secs(3));
        assert_eq!(t.timeouts.header_read, d.timeouts.header_read);
        assert_eq!(t.timeouts.idle, d.timeouts.idle);
        assert_eq!(
            t.hosts["a.test"].site.backend_timeout,
            Duration::from_secs(90)
        );
        assert_eq!(
            t.hosts["b.test"].site.backend_timeout,
            Duration::from_secs(600)
        );
        for zero in [text.replace(":5,", ":0,"), text.replace(":600", ":0")] {
            let e = Table::build(serde_json::from_str(&zero).unwrap(), None, d).unwrap_err();
            assert!(e.to_string().contains("at least 1 second"), "{e}");
        }
    }
}
