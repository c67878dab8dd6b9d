//! Certificates by SNI: a map swapped whole on reload or issuance, plus the TLS-ALPN-01
//! challenge certificates while an ACME validation runs.

use crate::Error;
use arc_swap::ArcSwap;
use pic2_render::proxy::RouteTls;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The ALPN protocol of TLS-ALPN-01 validations (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
pub struct Certs {
    by_name: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Certs {
    pub fn replace_all(&self, map: HashMap<String, Arc<CertifiedKey>>) {
        self.by_name.store(Arc::new(map));
    }

    /// Serves `key` for `names` from now on (a certificate just issued or renewed).
    pub fn insert(&self, names: &[String], key: Arc<CertifiedKey>) {
        self.by_name.rcu(|old| {
            let mut m = HashMap::clone(old);
            for n in names {
                m.insert(n.clone(), Arc::clone(&key));
            }
            m
        });
    }

    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.by_name.load().get(name).cloned()
    }

    /// Whether a certificate is served for `name`.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.load().contains_key(name)
    }

    /// The certificates served now, by name.
    pub fn current(&self) -> Arc<HashMap<String, Arc<CertifiedKey>>> {
        self.by_name.load_full()
    }

    pub fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        if let Ok(mut c) = self.challenges.lock() {
            match key {
                Some(k) => c.insert(name.to_owned(), k),
                None => c.remove(name),
            };
        }
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?.to_ascii_lowercase();
        let acme = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if acme {
            return self.challenges.lock().ok()?.get(&sni).cloned();
        }
        self.by_name.load().get(&sni).cloned()
    }
}

/// Reads a PEM chain and key into a signing key rustls can serve.
pub fn load_pair(cert: &Path, key: &Path, site: &str) -> Result<CertifiedKey, Error> {
    let bad = |reason: String| Error::Cert {
        site: site.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(bad(format!("{}: no certificate in it", cert.display())));
    }
    let der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(format!("{}: {e}", key.display())))?;
    pair_from_der(chain, &der).map_err(|e| bad(format!("{}: {e}", key.display())))
}

/// A signing key for `chain`, refused when the key is not the certificate's (a renewal
/// caught between writing its key and its certificate, a mistaken path): served, such a pair
/// fails every handshake.
fn pair_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<CertifiedKey, rustls::Error> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)?;
    let pair = CertifiedKey::new(chain, signer);
    match pair.keys_match() {
        Err(e @ rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(e),
        // anything else means the comparison could not be made (a signer that cannot tell its
        // public key; a certificate webpki does not parse — a v1 one, an unknown critical
        // extension — which rustls would still serve): served as before
        _ => Ok(pair),
    }
}

/// What pic2 reads of a certificate, from its leaf: its validity (Unix time) and the DNS
/// names of its subjectAltName, in lower case.
#[derive(Debug)]
pub(crate) struct Leaf {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) names: Vec<String>,
}

impl Leaf {
    pub(crate) fn of(der: &CertificateDer<'_>) -> Option<Leaf> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let v = cert.validity();
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => {
                            Some(d.to_ascii_lowercase())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Leaf {
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
            names,
        })
    }

    /// Whether it names `host` (normalised), itself or through a wildcard of one label.
    pub(crate) fn names_host(&self, host: &str) -> bool {
        let wildcard = host
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        self.names
            .iter()
            .any(|n| n == host || wildcard.as_deref() == Some(n.as_str()))
    }
}

/// Now, in Unix seconds: what certificates' validity is told in.
pub(crate) fn now_secs() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One TLS site's certificates as served, for the metrics: the earliest end among those
/// served for its names, and how many of its names none covers at `now` (a name the CA
/// refused, a certificate file short of an alias, no certificate yet, or an expired one).
#[derive(Debug, PartialEq, Eq)]
pub struct Coverage {
    pub site: String,
    pub not_after: Option<i64>,
    pub uncovered: usize,
}

/// [`Coverage`] of every site with TLS, by site name. Each certificate is parsed once.
pub fn coverage(table: &crate::table::Table, certs: &Certs, now: i64) -> Vec<Coverage> {
    let served = certs.current();
    let mut parsed: HashMap<*const CertifiedKey, Option<Leaf>> = HashMap::new();
    let mut by_site: std::collections::BTreeMap<&str, Coverage> = Default::default();
    for (host, entry) in &table.hosts {
        if entry.site.tls == RouteTls::None {
            continue;
        }
        let c = by_site.entry(&entry.site.name).or_insert_with(|| Coverage {
            site: entry.site.name.clone(),
            not_after: None,
            uncovered: 0,
        });
        let stored = served.get(host).and_then(|k| {
            parsed
                .entry(Arc::as_ptr(k))
                .or_insert_with(|| k.end_entity_cert().ok().and_then(Leaf::of))
                .as_ref()
        });
        if let Some(s) = stored {
            c.not_after = Some(c.not_after.map_or(s.not_after, |t| t.min(s.not_after)));
        }
        if !stored.is_some_and(|s| s.names_host(host) && s.not_after > now) {
            c.uncovered += 1;
        }
    }
    by_site.into_values().collect()
}

/// Where the ACME certificate of a site is kept.
pub fn acme_paths(state_dir: &Path, site: &str) -> (PathBuf, PathBuf) {
    let d = state_dir.join("certs").join(site);
    (d.join("fullchain.pem"), d.join("key.pem"))
}

/// The files whose change triggers a reload: every site's certificate and key.
pub fn watched_files(routes: &pic2_render::proxy::Routes) -> Vec<PathBuf> {
    let state = Path::new(&routes.settings.state_dir);
    let mut v = Vec::new();
    for r in &routes.sites {
        match &r.tls {
            RouteTls::Files { cert, key } => {
                v.push(PathBuf::from(cert));
                v.push(PathBuf::from(key));
            }
            RouteTls::Acme => {
                let (c, k) = acme_paths(state, &r.name);
                v.push(c);
                v.push(k);
            }
            RouteTls::None => {}
        }
    }
    v
}

/// Loads every certificate the routes name. A site whose files are missing or broken is
/// reported and keeps what `previous` served for its names, if anything (an ACME site
/// without a certificate yet is normal).
pub fn load_all(
    routes: &pic2_render::proxy::Routes,
    previous: &HashMap<String, Arc<CertifiedKey>>,
) -> (HashMap<String, Arc<CertifiedKey>>, Vec<Error>) {
    let state = Path::new(&routes.settings.state_dir);
    let mut map = HashMap::new();
    let mut errors = Vec::new();
    for r in &routes.sites {
        let pair = match &r.tls {
            RouteTls::None => continue,
            RouteTls::Files { cert, key } => load_pair(Path::new(cert), Path::new(key), &r.name),
            RouteTls::Acme => {
                let (c, k) = acme_paths(state, &r.name);
                if !c.exists() {
                    continue;
                }
                load_pair(&c, &k, &r.name)
            }
        };
        match pair {
            Ok(p) => {
                // only for the names it covers: served for another (an alias the CA refused,
                // a file short of a name), it fails the handshake, and its name's plain HTTP
                // would be sent there; one whose names cannot be read is served for all
                let names = p
                    .end_entity_cert()
                    .ok()
                    .and_then(Leaf::of)
                    .filter(|l| !l.names.is_empty());
                let p = Arc::new(p);
                let mut served = 0;
                for h in &r.hosts {
                    let h = crate::table::normalize_host(h);
                    if names.as_ref().is_none_or(|s| s.names_host(&h)) {
                        map.insert(h.into_owned(), Arc::clone(&p));
                        served += 1;
                    }
                }
                if served == 0 && !r.hosts.is_empty() {
                    tracing::warn!(
                        site = r.name,
                        "its certificate names none of its hosts: it is not served"
                    );
                }
            }
            Err(e) => {
                for h in &r.hosts {
                    let h = crate::table::normalize_host(h);
                    if let Some(p) = previous.get(&*h) {
                        map.insert(h.into_owned(), Arc::clone(p));
                    }
                }
                errors.push(e);
            }
        }
    }
    (map, errors)
}

/// The server configuration: certificates by SNI, HTTP/2 and HTTP/1.1 by ALPN, and the
/// ACME TLS-ALPN-01 protocol.
pub fn server_config(certs: Arc<Certs>) -> Result<rustls::ServerConfig, Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k, other) = (
            d.path().join("c.pem"),
            d.path().join("k.pem"),
            d.path().join("other.pem"),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&other, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(load_pair(&c, &k, "a.test").is_ok());
        let e = load_pair(&c, &other, "a.test").unwrap_err().to_string();
        assert!(e.contains("other.pem"), "{e}");
    }
}
