//! The `[proxy]` section: settings of the reverse proxy (`pic2 proxy`).

use crate::diagnostic::{Code, Diagnostic};
use crate::model::AbsPath;
use crate::read::{wrong_type, FromToml, Sink, Table};
use crate::source::{Span, Spanned};
use crate::types::Email;
use toml_span::value::ValueInner;
use toml_span::Value;

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub span: Span,
    /// Plain HTTP listener (ACME HTTP-01, redirects to HTTPS), e.g. "[::]:80".
    pub listen_http: Option<Spanned<String>>,
    /// TLS listener, e.g. "[::]:443".
    pub listen_https: Option<Spanned<String>>,
    /// The ACME directory URL (default: Let's Encrypt's).
    pub acme_directory: Option<Spanned<String>>,
    /// The ACME account's contact.
    pub acme_email: Option<Spanned<Email>>,
    /// Where certificates, the ACME account key and maintenance switches live.
    pub state_dir: Option<Spanned<String>>,
    /// Addresses or networks still let through to a site in maintenance.
    pub admin_addresses: Vec<Spanned<String>>,
    /// Proxies in front of this one (a load balancer, a CDN) whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed; nobody else's ever are.
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Private address of the health and Prometheus metrics endpoint.
    pub metrics_listen: Option<Spanned<String>>,
    /// A PEM file of extra roots trusted for the ACME directory's own HTTPS (a test CA
    /// such as Pebble's); the public roots are used when absent.
    pub acme_ca_file: Option<Spanned<String>>,
    /// The ACME challenge: "http-01" (default when `listen_http` is set) or "tls-alpn-01".
    pub acme_challenge: Option<Spanned<String>>,
    /// Connections one client address (an IPv6 /64) may hold open at once, over all sites
    /// (the proxy's default: 256); trusted proxies are not limited. At least 1.
    pub max_connections_per_client: Option<Spanned<u32>>,
    /// The proxy's timeouts, each in whole seconds (absent: the proxy's defaults).
    pub timeouts: Timeouts,
}

/// The `*_timeout_seconds` keys of `[proxy]`, each the counterpart of an nginx directive
/// named below (a site's own `backend_timeout_seconds` wins over `backend`); the defaults
/// are the proxy's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// To read a request head, and an HTTP/1 connection's wait for its next request
    /// (`client_header_timeout`, `keepalive_timeout`; default 15, where nginx has 60 and 75).
    pub header_read: Option<Timeout>,
    /// The longest wait for a request body's next bytes (`client_body_timeout`; 60).
    pub body_read: Option<Timeout>,
    /// The longest wait on a backend: for its answer, to take the request's body, for the
    /// answer body's next bytes (`proxy_read_timeout`, `proxy_send_timeout`; 60).
    pub backend: Option<Timeout>,
    /// The longest a client may take none of what it is sent (`send_timeout`; 60). Over
    /// HTTP/2, the longest an answer may wait on its stream's flow-control window.
    pub send: Option<Timeout>,
    /// A WebSocket's, or an HTTP/2 connection's with no request, longest silence (600;
    /// nginx's `proxy_read_timeout` and `keepalive_timeout` do this).
    pub idle: Option<Timeout>,
    /// The longest a TLS handshake may take (10; nginx's `ssl_handshake_timeout`, 60).
    pub tls_handshake: Option<Timeout>,
}

/// A timeout in whole seconds, from 1 to [`Timeout::MAX`] (a day): 0 would cut every
/// exchange at once, and a wait longer than a day is a peer that is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timeout(u32);

impl Timeout {
    pub const MAX: u32 = 86_400;

    /// `seconds` if it is within 1 to [`Timeout::MAX`].
    pub fn new(seconds: u32) -> Option<Timeout> {
        (1..=Self::MAX)
            .contains(&seconds)
            .then_some(Timeout(seconds))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl FromToml for Timeout {
    fn from_toml(mut value: Value<'_>, sink: &mut Sink) -> Option<Self> {
        let span: Span = value.span.into();
        match value.take() {
            ValueInner::Integer(i) => {
                let timeout = u32::try_from(i).ok().and_then(Timeout::new);
                if timeout.is_none() {
                    sink.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            span,
                            format!("a timeout of {i} seconds is out of range"),
                        )
                        .label(format!("expected 1 to {} (a day)", Timeout::MAX))
                        .hint("leave the key out for the proxy's default"),
                    );
                }
                timeout
            }
            other => {
                wrong_type(sink, span, "a whole number of seconds", &other);
                None
            }
        }
    }
}

pub(crate) fn read_proxy(value: Value<'_>, sink: &mut Sink) -> Option<ProxyConfig> {
    let mut t = Table::new(value, "[proxy]", sink)?;
    let span = t.span;
    let c = ProxyConfig {
        span,
        listen_http: t.opt("listen_http", sink),
        listen_https: t.opt("listen_https", sink),
        acme_directory: t.opt("acme_directory", sink),
        acme_email: t.opt("acme_email", sink),
        // a folder of the data volume's layout: held to the layout's paths' rule
        state_dir: t
            .opt::<Spanned<AbsPath>>("state_dir", sink)
            .map(|s| Spanned::new(s.value.0.display().to_string(), s.span)),
        admin_addresses: t.opt("admin_addresses", sink).unwrap_or_default(),
        trusted_proxies: t.opt("trusted_proxies", sink).unwrap_or_default(),
        metrics_listen: t.opt("metrics_listen", sink),
        acme_ca_file: t.opt("acme_ca_file", sink),
        acme_challenge: t.opt("acme_challenge", sink),
        max_connections_per_client: at_least_one(t.opt("max_connections_per_client", sink), sink),
        timeouts: Timeouts {
            header_read: t.opt("header_read_timeout_seconds", sink),
            body_read: t.opt("body_read_timeout_seconds", sink),
            backend: t.opt("backend_timeout_seconds", sink),
            send: t.opt("send_timeout_seconds", sink),
            idle: t.opt("idle_timeout_seconds", sink),
            tls_handshake: t.opt("tls_handshake_timeout_seconds", sink),
        },
    };
    t.finish(sink);
    Some(c)
}

/// `Some(0)` would refuse every client: said where it is written, and dropped.
fn at_least_one(v: Option<Spanned<u32>>, sink: &mut Sink) -> Option<Spanned<u32>> {
    match v {
        Some(n) if n.value == 0 => {
            sink.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    n.span,
                    "`max_connections_per_client` must be at least 1",
                )
                .label("0 would refuse every client")
                .hint("raise it for clients behind one shared address (a school, an office); leave it out for the default, 256"),
            );
            None
        }
        v => v,
    }
}
