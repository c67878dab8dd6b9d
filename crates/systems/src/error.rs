//! Errors of the edge: each names the system, the object and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the directory at {url}: {source}")]
    LdapConnect {
        url: String,
        #[source]
        source: Box<ldap3::LdapError>,
    },
    #[error("the directory refused the admin bind as {dn}: {message}")]
    LdapBind { dn: String, message: String },
    #[error("directory: {what} failed: {message}")]
    Ldap { what: String, message: String },
    #[error("cannot reach MariaDB at {url}: {source}")]
    SqlConnect {
        url: String,
        #[source]
        source: Box<mysql::Error>,
    },
    #[error("MariaDB: {what} failed: {source}")]
    Sql {
        what: String,
        #[source]
        source: Box<mysql::Error>,
    },
    #[error("Docker: {what} failed: {message}")]
    Docker { what: String, message: String },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("secret file {}: {reason}", path.display())]
    Secret { path: PathBuf, reason: String },
    #[error("running as another user: {reason}")]
    Privileges { reason: String },
    #[error("another `pic2 apply` holds the lock {} ({holder}); wait for it to finish", path.display())]
    Locked { path: PathBuf, holder: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn docker(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Docker {
            what: what.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn ldap(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Ldap {
            what: what.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn sql(what: impl Into<String>) -> impl FnOnce(mysql::Error) -> Self {
        let what = what.into();
        move |source| Error::Sql {
            what,
            source: Box::new(source),
        }
    }

    /// What the user can do about it, when we know.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::LdapConnect { .. } => Some("check [directory] url and that slapd runs (dev: `dev/up.sh`)"),
            Error::LdapBind { .. } => Some("check [directory] admin_dn and the password in admin_password_file"),
            Error::SqlConnect { .. } => Some("check [database] url, admin_user and admin_password_file, and that MariaDB runs (dev: `dev/up.sh`)"),
            Error::Docker { .. } => Some("is the Docker engine running? (dev: `dev/docker.sh start`)"),
            Error::Secret { .. } => Some("write the password alone in the file, owned by root, mode 0600 (`chmod 600 FILE`)"),
            Error::Locked { .. } => Some("if no pic2 is running, the lock is released automatically: retry"),
            _ => None,
        }
    }
}
