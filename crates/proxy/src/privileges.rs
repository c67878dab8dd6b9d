//! Giving up root. The proxy is the platform's only public face, and the host it runs on
//! holds every site's files: a flaw in a parser must not give root. Started as root with a
//! user to run as (`pic2 proxy --user pic2-proxy`, as nginx's and HAProxy's `user`), it
//! binds its ports, then takes that user's uid and gid for good (supplementary groups
//! dropped, no capability left), before it reads its certificates or a byte from the
//! network. glibc's `setuid` changes every thread of the process, not only the caller's.
//!
//! What it keeps writing must then be the user's: the state folder (ACME's certificates
//! and account), and the access log's folder if logrotate moves the file away. The state
//! folder is checked before anything is dropped, and the proxy does not start when it is
//! someone else's: a certificate ordered and then lost for want of a place to keep it is
//! ordered again at every try, and the CA allows five a week.

use crate::Error;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user the proxy runs as, looked up by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn err(reason: impl Into<String>) -> Error {
    Error::Privileges {
        reason: reason.into(),
    }
}

impl RunAs {
    /// The user named `name` (the system's users: /etc/passwd, or what NSS serves).
    pub fn lookup(name: &str) -> Result<RunAs, Error> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| err(format!("cannot look up the user {name:?}: {e}")))?
            .ok_or_else(|| {
                err(format!(
                    "no user {name:?} on this system: create it (`adduser --system --group {name}`)"
                ))
            })?;
        if user.uid.is_root() {
            return Err(err(format!(
                "{name:?} is root: run the proxy as a user of its own (`adduser --system --group pic2-proxy`)"
            )));
        }
        Ok(RunAs {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

/// Checks that `state_dir` (made if missing), and the folders the proxy writes in it, are
/// `who`'s to write. Called as root, before anything is dropped.
pub fn prepare_state_dir(state_dir: &Path, who: &RunAs) -> Result<(), Error> {
    if !state_dir.exists() {
        std::fs::create_dir_all(state_dir).map_err(|source| Error::Write {
            path: state_dir.to_owned(),
            source,
        })?;
        std::os::unix::fs::chown(state_dir, Some(who.uid), Some(who.gid)).map_err(|e| {
            err(format!(
                "cannot give {} to {}: {e}",
                state_dir.display(),
                who.name
            ))
        })?;
    }
    for dir in [
        state_dir.to_owned(),
        state_dir.join("certs"),
        state_dir.join("acme"),
    ] {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue; // made later by the proxy itself, as the user
        };
        if meta.uid() != who.uid {
            return Err(err(format!(
                "{} belongs to uid {}, and the proxy runs as {} (uid {}), which writes its certificates there: `chown -R {}: {}`",
                dir.display(),
                meta.uid(),
                who.name,
                who.uid,
                who.name,
                state_dir.display()
            )));
        }
    }
    Ok(())
}

/// Takes `who`'s ids for good. Started as `who` already, there is nothing to do; started
/// as another user than root, the switch cannot be made and is refused.
pub(crate) fn become_user(who: &RunAs) -> Result<(), Error> {
    use nix::unistd::{getegid, geteuid, getgid, getuid, setgid, setgroups, setuid, Gid, Uid};
    let (uid, gid) = (Uid::from_raw(who.uid), Gid::from_raw(who.gid));
    if getuid() == uid && geteuid() == uid {
        return Ok(());
    }
    if !geteuid().is_root() {
        return Err(err(format!(
            "running as uid {}, which cannot become {}: start the proxy as root (it gives root up once its ports are bound) or as {} itself",
            geteuid(),
            who.name,
            who.name
        )));
    }
    let fail = |what: &str, e: nix::Error| err(format!("cannot {what} for {}: {e}", who.name));
    setgroups(&[gid]).map_err(|e| fail("drop the supplementary groups", e))?;
    setgid(gid).map_err(|e| fail("set the group", e))?;
    setuid(uid).map_err(|e| fail("set the user", e))?;
    // checked rather than trusted: root cannot be taken back, and every id is the user's
    let dropped = getuid() == uid && geteuid() == uid && getgid() == gid && getegid() == gid;
    if !dropped || setuid(Uid::from_raw(0)).is_ok() {
        return Err(err(format!("root was not given up for {}", who.name)));
    }
    tracing::info!(
        user = who.name,
        uid = who.uid,
        gid = who.gid,
        "running as an unprivileged user"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn root_and_unknown_users_are_refused_with_a_hint() {
        let e = RunAs::lookup("root").unwrap_err().to_string();
        assert!(e.contains("adduser --system"), "{e}");
        let e = RunAs::lookup("no-such-user-pic2").unwrap_err().to_string();
        assert!(e.contains("no user \"no-such-user-pic2\""), "{e}");
        let nobody = RunAs::lookup("nobody").unwrap();
        assert_eq!(nobody.uid, 65534);
    }

    #[test]
    fn a_state_folder_of_another_owner_is_refused_before_anything_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let nobody = RunAs::lookup("nobody").unwrap();
        let mine = RunAs {
            uid: nix::unistd::geteuid().as_raw(),
            ..nobody.clone()
        };
        // missing: made, the user's
        let state = dir.path().join("state");
        prepare_state_dir(&state, &mine).unwrap();
        assert!(state.is_dir());
        // someone else's: refused, with the command that mends it
        let e = prepare_state_dir(&state, &nobody).unwrap_err().to_string();
        assert!(
            e.contains(&format!("chown -R nobody: {}", state.display())),
            "{e}"
        );
    }
}
