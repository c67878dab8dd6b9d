//! The reverse proxy's routes file (`proxy/routes.json`): every public name, the backend
//! that serves it, its TLS mode, redirects and limits, and the proxy's settings.
//!
//! `pic2 proxy` reads only this file (never the inventory), so what it serves is what
//! `pic2 render` shows. The types are shared: the proxy deserialises the same [`Routes`].

use pic2_inventory::{Redirect, Tls, ValidInventory};
use serde::{Deserialize, Serialize};

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// phpMyAdmin's `ExecTimeLimit` default, in seconds: how long an import or export may run.
pub const PHPMYADMIN_EXEC_TIME_LIMIT: u32 = 300;
/// The largest import phpMyAdmin takes, in MB: its route's body limit and its PHP's.
pub const PHPMYADMIN_MAX_BODY_MB: u32 = 64;

/// The whole routes file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    /// Format version of this file (1).
    pub version: u32,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub sites: Vec<Route>,
}

/// The proxy's own settings (from the inventory's `[proxy]` section, with defaults filled in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen_http: Option<String>,
    pub listen_https: Option<String>,
    pub acme_directory: String,
    pub acme_ca_file: Option<String>,
    /// "http-01" or "tls-alpn-01".
    pub acme_challenge: String,
    pub acme_email: Option<String>,
    pub state_dir: String,
    pub admin_addresses: Vec<String>,
    /// Proxies in front whose forwarding headers are believed (absent: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    pub metrics_listen: Option<String>,
    /// Connections one client address may hold open (absent: the proxy's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<u32>,
    /// The inventory's `*_timeout_seconds` (absent: the proxy's defaults).
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
}

/// The proxy's timeouts in whole seconds, each absent for the proxy's default
/// (`pic2_inventory::Timeouts` says what each bounds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_read_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_seconds: Option<u32>,
}

impl Timeouts {
    pub fn is_empty(&self) -> bool {
        *self == Timeouts::default()
    }
}

impl From<pic2_inventory::Timeouts> for Timeouts {
    fn from(t: pic2_inventory::Timeouts) -> Self {
        let s = |t: Option<pic2_inventory::Timeout>| t.map(pic2_inventory::Timeout::seconds);
        Timeouts {
            header_read_seconds: s(t.header_read),
            body_read_seconds: s(t.body_read),
            backend_seconds: s(t.backend),
            send_seconds: s(t.send),
            idle_seconds: s(t.idle),
            tls_handshake_seconds: s(t.tls_handshake),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_http: Some("[::]:80".into()),
            listen_https: Some("[::]:443".into()),
            acme_directory: LETS_ENCRYPT.into(),
            acme_ca_file: None,
            acme_challenge: "http-01".into(),
            acme_email: None,
            state_dir: "/var/lib/pic2/proxy".into(),
            admin_addresses: Vec::new(),
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            max_connections_per_client: None,
            timeouts: Timeouts::default(),
        }
    }
}

/// The routes file's name in the proxy's `state_dir`.
pub const ROUTES_FILE: &str = "routes.json";

/// The largest request body a site takes without its own `max_body_mb` (the proxy's
/// default; its runtime's PHP is given the same).
pub const DEFAULT_MAX_BODY_MB: u32 = 64;

/// One site: the names it answers to and where its requests go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The main domain: names the maintenance switch, the certificate and the metrics label.
    pub name: String,
    /// Every name served (the main domain first, then aliases).
    pub hosts: Vec<String>,
    /// `host:port` of the backend (a runtime's container published on loopback).
    pub backend: String,
    pub tls: RouteTls,
    /// Send one of `x` / `www.x` to the other with a 308.
    #[serde(default)]
    pub redirect: Option<RedirectTo>,
    /// Send Strict-Transport-Security on HTTPS answers.
    #[serde(default)]
    pub hsts: bool,
    /// Largest request body, in MB (default: the proxy's).
    #[serde(default)]
    pub max_body_mb: Option<u32>,
    /// The longest wait on this backend, in seconds (default: the settings' `backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_timeout_seconds: Option<u32>,
    /// Routes with the same backend and pool share its kept-alive connections (default:
    /// the route's name, a pool of its own). A runtime's sites share by owner: mpm-itk ties
    /// a connection to the uid of its first request, and closes it unanswered when asked
    /// for another uid's site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Write requests' query strings in the access log (default). Off for the platform's
    /// own applications, whose addresses carry secrets: a password reset link's token,
    /// phpMyAdmin's SQL.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub log_query: bool,
}

fn yes() -> bool {
    true
}

/// serde's `skip_serializing_if` passes a reference.
fn is_yes(b: &bool) -> bool {
    *b
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum RouteTls {
    /// Plain HTTP only.
    None,
    /// A certificate from the ACME CA, kept under the state folder.
    Acme,
    /// Certificate chain and key files maintained by the admin.
    Files { cert: String, key: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectTo {
    /// `x` → `www.x`.
    Www,
    /// `www.x` → `x`.
    Apex,
}

/// The routes of every site and service of the inventory.
pub fn routes(inv: &ValidInventory) -> Routes {
    let mut settings = Settings::default();
    if let Some(p) = &inv.proxy {
        let get = |v: &Option<pic2_inventory::Spanned<String>>| v.as_ref().map(|s| s.value.clone());
        settings.listen_http = get(&p.listen_http).or(settings.listen_http);
        settings.listen_https = get(&p.listen_https).or(settings.listen_https);
        settings.acme_directory = get(&p.acme_directory).unwrap_or(settings.acme_directory);
        settings.acme_ca_file = get(&p.acme_ca_file);
        settings.acme_challenge = get(&p.acme_challenge).unwrap_or(settings.acme_challenge);
        settings.acme_email = p.acme_email.as_ref().map(|e| e.value.to_string());
        settings.state_dir = get(&p.state_dir).unwrap_or(settings.state_dir);
        settings.admin_addresses = p.admin_addresses.iter().map(|a| a.value.clone()).collect();
        settings.trusted_proxies = p.trusted_proxies.iter().map(|a| a.value.clone()).collect();
        settings.metrics_listen = get(&p.metrics_listen);
        settings.max_connections_per_client =
            p.max_connections_per_client.as_ref().map(|n| n.value);
        settings.timeouts = p.timeouts.into();
    }
    let mut sites = Vec::new();
    for (domain, site) in &inv.sites {
        let Some(port) = inv.runtime_port(&site.runtime.value) else {
            continue; // validation guarantees the runtime exists
        };
        sites.push(Route {
            name: domain.to_string(),
            hosts: inv
                .site_domains((domain, site))
                .map(|d| d.to_string())
                .collect(),
            backend: format!("127.0.0.1:{port}"),
            tls: match &site.tls {
                Tls::Acme => RouteTls::Acme,
                Tls::None => RouteTls::None,
                Tls::Files { cert, key } => RouteTls::Files {
                    cert: cert.display().to_string(),
                    key: key.display().to_string(),
                },
            },
            redirect: site.redirect.as_ref().map(|r| match r.value {
                Redirect::Www => RedirectTo::Www,
                Redirect::Apex => RedirectTo::Apex,
            }),
            hsts: site.hsts,
            max_body_mb: site.max_body_mb,
            backend_timeout_seconds: site.backend_timeout.map(pic2_inventory::Timeout::seconds),
            pool: Some(format!("owner {}", site.owner.value)),
            log_query: true,
        });
    }
    if let (Some(domain), Some(passwd)) = (&inv.services.passwd, &inv.passwd) {
        sites.push(Route {
            name: domain.value.to_string(),
            hosts: vec![domain.value.to_string()],
            backend: passwd.listen.value.to_string(),
            tls: RouteTls::Acme,
            redirect: None,
            hsts: true,
            max_body_mb: Some(1),
            backend_timeout_seconds: None,
            pool: None,
            // `GET /reset?token=…`: the token sets the account's password for 30 minutes
            log_query: false,
        });
    }
    // phpMyAdmin, when its container runs (`[containers]` and `[services] phpmyadmin`).
    if let (Some(domain), Some(containers)) = (&inv.services.phpmyadmin, &inv.containers) {
        sites.push(Route {
            name: domain.value.to_string(),
            hosts: vec![domain.value.to_string()],
            backend: format!("127.0.0.1:{}", containers.phpmyadmin_port),
            tls: RouteTls::Acme,
            redirect: None,
            hsts: true,
            max_body_mb: Some(PHPMYADMIN_MAX_BODY_MB),
            // phpMyAdmin's own limit on an import or export (`ExecTimeLimit`), and a little
            // more for its own error to arrive: the proxy's 60 s would answer 504 to a large
            // import the script is still running
            backend_timeout_seconds: Some(PHPMYADMIN_EXEC_TIME_LIMIT + 10),
            pool: None,
            // its links carry SQL, and the rows a query picks out (`sql_query=…`)
            log_query: false,
        });
    }
    sites.sort_by(|a, b| a.name.cmp(&b.name));
    Routes {
        version: 1,
        settings,
        sites,
    }
}

/// The routes file as written by `pic2 render` (pretty JSON, one trailing newline).
pub fn render(inv: &ValidInventory) -> String {
    text(&routes(inv))
}

/// `routes` as the file says them (pretty JSON, one trailing newline).
pub fn text(routes: &Routes) -> String {
    let mut s = serde_json::to_string_pretty(routes).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_demo_routes() {
        insta::assert_snapshot!(render(&crate::tests::demo()));
    }

    #[test]
    fn the_document_routes() {
        insta::assert_snapshot!(render(&crate::tests::document()));
    }

    #[test]
    fn the_routes_file_reads_back() {
        let text = render(&crate::tests::demo());
        let back: Routes = serde_json::from_str(&text).unwrap();
        assert_eq!(back, routes(&crate::tests::demo()));
    }
}
