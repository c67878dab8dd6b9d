//! Giving up root: the proxy's part. The proxy is the platform's only public face; started
//! as root with a user to run as (`pic2 proxy --user pic2-proxy`), it binds its ports, then
//! takes that user's ids for good (`pic2_systems::privileges`, shared with `pic2 passwd`)
//! before it reads its certificates or a byte from the network.
//!
//! The state folder stays root's and writable by root alone: `pic2 apply` writes the routes
//! into it and `pic2 site maintenance` its flags, never through a link the user could have
//! planted. What the proxy writes lives in two folders of the user's own inside it,
//! `certs/` (its certificates) and `acme/` (the CA account), made for the user at start or
//! checked to be the user's. A certificate ordered and then lost for want of a place to
//! keep it is ordered again at every try, and the CA allows five a week: so the proxy does
//! not start when they are someone else's.

use crate::Error;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub use pic2_systems::privileges::RunAs;

/// The command named in the shared module's messages (`pic2 proxy`, user `pic2-proxy`).
pub const DAEMON: &str = "proxy";

fn err(reason: impl Into<String>) -> Error {
    Error::Privileges {
        reason: reason.into(),
    }
}

/// The shared module's refusals as the proxy's own.
fn shared(e: pic2_systems::Error) -> Error {
    match e {
        pic2_systems::Error::Privileges { reason } => err(reason),
        other => err(other.to_string()),
    }
}

/// The folders the proxy writes in its state folder, as the user it runs as.
const WRITTEN: [&str; 2] = ["certs", "acme"];

/// Checks that `state_dir` is root's alone (made if missing, 0755: the routes and the
/// maintenance flags are no secret), and that `certs/` and `acme/` in it are `who`'s
/// folders (made 0700 if missing). Called as root, before anything is dropped.
pub fn prepare_state_dir(state_dir: &Path, who: &RunAs) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    if !state_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(state_dir)
            .map_err(|source| Error::Write {
                path: state_dir.to_owned(),
                source,
            })?;
    }
    let meta = std::fs::metadata(state_dir).map_err(|source| Error::Read {
        path: state_dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(err(format!(
            "{0} must be a folder root alone can write: root writes the routes and the maintenance flags there, never through a link {1} could put in it (`chown root: {0}; chmod go-w {0}`)",
            state_dir.display(),
            who.name
        )));
    }
    for name in WRITTEN {
        user_folder(&state_dir.join(name), who)?;
    }
    Ok(())
}

/// Makes `dir` (in a folder root alone writes) a 0700 folder of `who`'s, or checks it is one.
fn user_folder(dir: &Path, who: &RunAs) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let made = |source| Error::Write {
        path: dir.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // its folder is root's: nobody else can put anything at this name meanwhile
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(made)?;
            std::os::unix::fs::lchown(dir, Some(who.uid), Some(who.gid)).map_err(made)?;
            return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(made);
        }
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    if meta.is_dir() && meta.uid() == who.uid {
        return Ok(());
    }
    let what = if meta.is_dir() {
        format!("uid {}'s", meta.uid())
    } else {
        "no folder".to_owned()
    };
    Err(err(format!(
        "{} is {what}, and the proxy runs as {} (uid {}), which writes there: `chown -R {}: {0}`",
        dir.display(),
        who.name,
        who.uid,
        who.name
    )))
}

/// Once the ports are bound: takes `who`'s ids for good, or, without one, warns when the
/// proxy runs as root.
pub(crate) fn give_up_root(who: Option<&RunAs>) -> Result<(), Error> {
    pic2_systems::privileges::give_up_root(who, DAEMON).map_err(shared)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_state_folder_stays_roots_and_the_written_ones_are_the_users() {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            rustix::process::geteuid().is_root(),
            "this test makes folders for another user: run it as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let nobody = RunAs::lookup("nobody", DAEMON).unwrap();
        // missing: made, root's 0755, with the user's certs/ and acme/ (0700)
        let state = dir.path().join("state");
        prepare_state_dir(&state, &nobody).unwrap();
        let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        assert_eq!(
            (meta(&state).uid(), meta(&state).mode() & 0o777),
            (0, 0o755)
        );
        for d in WRITTEN {
            let m = meta(&state.join(d));
            let seen = (m.uid(), m.gid(), m.mode() & 0o777);
            assert_eq!(seen, (65534, nobody.gid, 0o700), "{d}");
        }
        prepare_state_dir(&state, &nobody).unwrap();
        // the state folder writable by others: refused
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_state_dir(&state, &nobody).unwrap_err().to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        // certs/ root's (from runs as root): refused, with the command that mends it
        std::os::unix::fs::lchown(state.join("certs"), Some(0), Some(0)).unwrap();
        let e = prepare_state_dir(&state, &nobody).unwrap_err().to_string();
        let hint = format!("chown -R nobody: {}", state.join("certs").display());
        assert!(e.contains(&hint), "{e}");
        // a link in its place: refused, never followed
        std::fs::remove_dir(state.join("certs")).unwrap();
        std::os::unix::fs::symlink("/etc", state.join("certs")).unwrap();
        let e = prepare_state_dir(&state, &nobody).unwrap_err().to_string();
        assert!(e.contains("is no folder"), "{e}");
        assert_eq!(meta(Path::new("/etc")).uid(), 0);
    }
}
