//! ACME issuance and renewal against the dev Pebble (start it with `dev/pebble.sh start`):
//! HTTP-01 on 127.0.0.1:5002, then TLS-ALPN-01 on 127.0.0.1:5001 (the ports Pebble's
//! validation uses), certificates stored 0600 and renewed while served, no restart (here
//! because an alias was added, which the stored certificate does not name).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use pic2_proxy::{Options, Proxy};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

const CA: &str = "/var/lib/pic2-dev/pebble/ca.pem";

/// Pebble validates on fixed ports (5002, 5001): the tests take them in turn, else two
/// proxies share the port (SO_REUSEPORT) and one answers the other's challenges.
static CHALLENGE_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pebble_roots(dir: &Path) -> PathBuf {
    let out = dir.join("pebble-roots.pem");
    let ok = std::process::Command::new("curl")
        .args(["-fsS", "--max-time", "5", "--cacert", CA, "-o"])
        .arg(&out)
        .arg("https://127.0.0.1:15000/roots/0")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "Pebble is not answering on https://127.0.0.1:15000 (CA {CA}): start it with `dev/pebble.sh start` (or dev/up.sh)"
    );
    out
}

async fn served_cert(addr: std::net::SocketAddr, name: &str, roots: &Path) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(roots).unwrap() {
        store.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap(),
            tcp,
        )
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?[0].to_vec())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn issue_and_renew(challenge: &str) {
    let dir = tempfile::tempdir().unwrap();
    let roots = pebble_roots(dir.path());
    let state = dir.path().join("state");
    let n = std::process::id();
    let name = format!("{}-{n}.acme.test", challenge.replace('-', ""));
    let alias = format!("www.{name}");
    let rpath = dir.path().join("routes.json");
    let write_routes = |hosts: &[&str]| {
        let routes = serde_json::json!({"version": 1, "settings": {
            "acme_directory": "https://127.0.0.1:14000/dir", "acme_ca_file": CA,
            "acme_challenge": challenge, "acme_email": "admins@pic2.test",
            "state_dir": state.to_str().unwrap()},
            "sites": [{"name": name, "hosts": hosts, "backend": "127.0.0.1:9", "tls": {"mode": "acme"}}]});
        std::fs::write(&rpath, serde_json::to_vec(&routes).unwrap()).unwrap();
    };
    write_routes(&[&name, &alias]);
    let mut o = options(&rpath, challenge);
    o.acme.check_interval = Duration::from_millis(500);
    o.acme.backoff_base = Duration::from_millis(500);
    let p = Proxy::start(o).await.unwrap();
    let https = p.https_addr.unwrap();
    let mut first = None;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(c) = served_cert(https, &alias, &roots).await {
            first = Some(c);
            break;
        }
    }
    let first = first.unwrap_or_else(|| panic!("no certificate from Pebble over {challenge} in 30 s (see /var/lib/pic2-dev/log/pebble.log)"));
    let site_dir = state.join("certs").join(&name);
    assert_eq!(mode(&site_dir.join("key.pem")), 0o600);
    assert_eq!(mode(&site_dir.join("fullchain.pem")), 0o600);
    let accounts: Vec<_> = std::fs::read_dir(state.join("acme"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(accounts.len(), 1);
    assert_eq!(mode(&accounts[0]), 0o600);
    assert_eq!(
        p.shared
            .global
            .certificate_failures
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    p.shutdown().await;

    // renewal: an alias added to the site makes its certificate due at once (it does not
    // name the alias; its validity alone would not: renew_before is the default 30 days); a
    // new one is issued with the same account and served without a restart
    let added = format!("new.{name}");
    write_routes(&[&name, &alias, &added]);
    let mut o = options(&rpath, challenge);
    o.acme.check_interval = Duration::from_secs(3600);
    o.acme.backoff_base = Duration::from_secs(3600);
    let p = Proxy::start(o).await.unwrap();
    let https = p.https_addr.unwrap();
    assert_eq!(
        served_cert(https, &name, &roots).await.as_ref(),
        Some(&first),
        "the stored certificate is served at start"
    );
    let mut renewed = None;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // verified against Pebble's roots for the added name: only a new certificate passes
        if let Some(c) = served_cert(https, &added, &roots).await {
            renewed = Some(c);
            break;
        }
    }
    let renewed = renewed.expect("no certificate naming the added alias was served");
    assert_ne!(renewed, first);
    assert_eq!(
        served_cert(https, &name, &roots).await.as_ref(),
        Some(&renewed),
        "every name of the site is served the new certificate"
    );
    let accounts_after: Vec<_> = std::fs::read_dir(state.join("acme"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(accounts_after, accounts, "the account key is kept");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_http01_and_tls_alpn01_issue_and_renew_against_pebble() {
    let _ports = CHALLENGE_PORTS.lock().await;
    issue_and_renew("http-01").await;
    issue_and_renew("tls-alpn-01").await;
}

/// Points `name` at `addr` in Pebble's DNS (pebble-challtestsrv's management API), or back
/// at the default (127.0.0.1) with `None`.
fn dns_a(name: &str, addr: Option<&str>) {
    let (path, body) = match addr {
        Some(a) => ("add-a", serde_json::json!({"host": name, "addresses": [a]})),
        None => ("clear-a", serde_json::json!({"host": name})),
    };
    let ok = std::process::Command::new("curl")
        .args(["-fsS", "--max-time", "5", "-X", "POST", "-d"])
        .arg(body.to_string())
        .arg(format!("http://127.0.0.1:8055/{path}"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "pebble-challtestsrv's management API (127.0.0.1:8055) did not take {path} for {name}: `dev/pebble.sh start`");
}

/// The names of the certificate `der`'s subjectAltName.
fn san_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

/// An alias whose DNS leads elsewhere (127.0.0.2, where nothing answers Pebble) must not
/// cost the site its certificate: the order fails on it, and the proxy orders again at once
/// for the names that remain; the alias waits out its back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_an_alias_that_cannot_be_validated_does_not_block_the_site() {
    let _ports = CHALLENGE_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let roots = pebble_roots(dir.path());
    let state = dir.path().join("state");
    let n = std::process::id();
    let name = format!("partial-{n}.acme.test");
    let (alias, stale) = (format!("www.{name}"), format!("old.{name}"));
    dns_a(&stale, Some("127.0.0.2"));
    let rpath = dir.path().join("routes.json");
    let routes = serde_json::json!({"version": 1, "settings": {
        "acme_directory": "https://127.0.0.1:14000/dir", "acme_ca_file": CA,
        "acme_challenge": "http-01", "state_dir": state.to_str().unwrap()},
        "sites": [{"name": name, "hosts": [&name, &stale, &alias], "backend": "127.0.0.1:9",
                   "tls": {"mode": "acme"}}]});
    std::fs::write(&rpath, serde_json::to_vec(&routes).unwrap()).unwrap();
    let mut o = options(&rpath, "http-01");
    o.acme.check_interval = Duration::from_millis(500);
    o.acme.backoff_base = Duration::from_secs(3600);
    let p = Proxy::start(o).await.unwrap();
    let https = p.https_addr.unwrap();
    let mut served = None;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(c) = served_cert(https, &alias, &roots).await {
            served = Some(c);
            break;
        }
    }
    let served = served.expect(
        "no certificate for the site's valid names in 30 s (see /var/lib/pic2-dev/log/pebble.log)",
    );
    let mut names = san_names(&served);
    names.sort();
    let mut expected = vec![name.clone(), alias.clone()];
    expected.sort();
    assert_eq!(
        names, expected,
        "the certificate names every name but the refused one"
    );
    assert_eq!(
        served_cert(https, &name, &roots).await.as_ref(),
        Some(&served)
    );
    let failures = &p.shared.global.certificate_failures;
    assert_eq!(
        failures.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the refusal is counted once"
    );
    // the refused name waits its back-off (an hour here): no order for it in later passes
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 1);
    // a reload (SIGHUP, as logrotate sends daily) does not lift the back-off
    dns_a(&stale, None);
    p.reload().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(served_cert(https, &stale, &roots).await, None);
    // the name now leads here (the DNS switch of a migration), and the admin asks for a
    // retry (SIGUSR1): it is tried at once, and the new certificate names it
    p.retry_certificates();
    let mut renewed = None;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(c) = served_cert(https, &stale, &roots).await {
            renewed = Some(c);
            break;
        }
    }
    let renewed = renewed.expect("the refused name was not tried again after SIGUSR1");
    assert_eq!(san_names(&renewed).len(), 3);
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 1);
    p.shutdown().await;
}

/// The proxy's options for `challenge`: Pebble validates HTTP-01 on :5002 and TLS-ALPN-01 on
/// :5001, so the matching listener takes that port and the other a free one; no metrics.
fn options(routes: &Path, challenge: &str) -> Options {
    let mut o = Options::new(routes);
    let port = |wanted, port| {
        if challenge == wanted {
            port
        } else {
            "127.0.0.1:0"
        }
    };
    o.listen_http = Some(port("http-01", "127.0.0.1:5002").into());
    o.listen_https = Some(port("tls-alpn-01", "127.0.0.1:5001").into());
    o.listen_metrics = Some(String::new());
    o
}
