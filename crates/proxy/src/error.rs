//! The proxy's errors: each names the file, address or site it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the routes file {path} is not valid: {source}")]
    Routes {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot set up {what}: {source}")]
    Setup {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("certificate of {site}: {reason}")]
    Cert { site: String, reason: String },
    /// Names the CA refused that the site's certificate still covers for a while: the
    /// certificate is kept, and its renewal asked again later with them.
    #[error("ACME for {site}: the CA could not validate {}; the current certificate, which names them, is kept and its renewal tried again later", refused.join("; "))]
    AcmeKept { site: String, refused: Vec<String> },
    #[error("running as another user: {reason}")]
    Privileges { reason: String },
    #[error("TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
    #[error("ACME for {site}: {reason}")]
    Acme { site: String, reason: String },
    #[error("ACME for {site}: the CA's rate limit was reached, next try in an hour at the earliest: {reason}")]
    AcmeRateLimited { site: String, reason: String },
    /// Names of a site failed their validation (an alias whose DNS does not lead here yet):
    /// the certificate is ordered again at once without them, if any name is left, and they
    /// wait out their own back-off.
    #[error("ACME for {site}: the CA could not validate {}; left out of the site's certificate, tried again after a back-off (12 minutes at least)", refused.join("; "))]
    AcmeRefused {
        site: String,
        /// `name: the CA's reason`, one for each name refused.
        refused: Vec<String>,
        names: Vec<String>,
    },
}

impl Error {
    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl ToString) -> Self {
        Error::Invalid {
            what,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}
