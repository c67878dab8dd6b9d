//! The `[proxy]` section: settings of the reverse proxy (`pic2 proxy`).

use crate::diagnostic::{Code, Diagnostic};
use crate::read::{Sink, Table};
use crate::source::{Span, Spanned};
use crate::types::Email;
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
        state_dir: t.opt("state_dir", sink),
        admin_addresses: t.opt("admin_addresses", sink).unwrap_or_default(),
        trusted_proxies: t.opt("trusted_proxies", sink).unwrap_or_default(),
        metrics_listen: t.opt("metrics_listen", sink),
        acme_ca_file: t.opt("acme_ca_file", sink),
        acme_challenge: t.opt("acme_challenge", sink),
        max_connections_per_client: at_least_one(t.opt("max_connections_per_client", sink), sink),
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
