//! Giving up root, for the daemons that serve the network (`pic2 proxy`, `pic2 passwd`): a
//! flaw in a parser must not give root on the host that holds every site's files. Started
//! as root with a user to run as (`--user pic2-proxy`, as nginx's and HAProxy's `user`), a
//! daemon binds its ports, then takes that user's ids for good (its groups from /etc/group,
//! as `initgroups` gives them; no capability; no new privileges) before it reads a byte from
//! the network. glibc's `setuid` changes every thread of the process, not only the caller's.
//! What each daemon must prepare as root first (the proxy's `certs/` and `acme/`) stays in
//! its own crate.

use crate::Error;

/// The user a daemon runs as, looked up by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The name of its group (`gid`), for the hints (`chgrp GROUP FILE`).
    pub group: String,
    /// The daemon's command, `proxy` or `passwd` (`pic2 proxy`, whose own user is
    /// usually `pic2-proxy`): named in the messages.
    pub daemon: &'static str,
}

fn err(reason: impl Into<String>) -> Error {
    Error::Privileges {
        reason: reason.into(),
    }
}

impl RunAs {
    /// The user named `name` (the system's users: /etc/passwd, or what NSS serves), to run
    /// `pic2 {daemon}` as. Root and users in root's group are refused.
    pub fn lookup(name: &str, daemon: &'static str) -> Result<RunAs, Error> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| err(format!("cannot look up the user {name:?}: {e}")))?
            .ok_or_else(|| {
                err(format!(
                    "no user {name:?} on this system: create it (`adduser --system --group {name}`)"
                ))
            })?;
        if user.uid.is_root() || user.gid.as_raw() == 0 {
            return Err(err(format!(
                "{name:?} is root or in root's group: run pic2 {daemon} as a user of its own (`adduser --system --group pic2-{daemon}`)"
            )));
        }
        let group = nix::unistd::Group::from_gid(user.gid)
            .ok()
            .flatten()
            .map_or_else(|| user.gid.to_string(), |g| g.name);
        Ok(RunAs {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            group,
            daemon,
        })
    }
}

/// Called once the daemon's ports are bound: takes `who`'s ids for good when there is one,
/// else, when running as root, says in the log that `pic2 {daemon}` should not.
pub fn give_up_root(who: Option<&RunAs>, daemon: &str) -> Result<(), Error> {
    match who {
        Some(who) => become_user(who),
        None => {
            if nix::unistd::geteuid().is_root() {
                tracing::warn!(
                    "pic2 {daemon} runs as root: a flaw in it would give root on this host; start it with --user (a system user of its own, `pic2-{daemon}`)"
                );
            }
            Ok(())
        }
    }
}

/// Takes `who`'s ids for good. Started as `who` already, there is nothing to do; started
/// as another user than root, the switch cannot be made and is refused.
pub fn become_user(who: &RunAs) -> Result<(), Error> {
    use nix::unistd::{getegid, geteuid, getgid, getuid, initgroups, setgid, setuid, Gid, Uid};
    let (uid, gid) = (Uid::from_raw(who.uid), Gid::from_raw(who.gid));
    if getuid() == uid && geteuid() == uid {
        return Ok(());
    }
    if !geteuid().is_root() {
        return Err(err(format!(
            "running as uid {}, which cannot become {}: start pic2 {} as root (it gives root up once its ports are bound) or as {} itself",
            geteuid(),
            who.name,
            who.daemon,
            who.name
        )));
    }
    let fail = |what: &str, e: nix::Error| err(format!("cannot {what} for {}: {e}", who.name));
    let name = std::ffi::CString::new(who.name.as_str())
        .map_err(|e| err(format!("user name {:?}: {e}", who.name)))?;
    // the user's own groups (`ssl-cert`, to read certificate keys), root's dropped
    initgroups(&name, gid).map_err(|e| fail("set the groups", e))?;
    setgid(gid).map_err(|e| fail("set the group", e))?;
    setuid(uid).map_err(|e| fail("set the user", e))?;
    // inherited by every thread started after this one; glibc's set*id above changed
    // every thread already running, this one flag is the caller's alone
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| err(format!("cannot forbid new privileges: {e}")))?;
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
    use super::*;

    #[test]
    fn root_and_unknown_users_are_refused_with_a_hint() {
        let e = RunAs::lookup("root", "passwd").unwrap_err().to_string();
        assert!(e.contains("adduser --system --group pic2-passwd"), "{e}");
        let e = RunAs::lookup("no-such-user-pic2", "proxy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no user \"no-such-user-pic2\""), "{e}");
        let nobody = RunAs::lookup("nobody", "proxy").unwrap();
        assert_eq!((nobody.uid, nobody.daemon), (65534, "proxy"));
        assert_eq!(nobody.group, "nogroup");
    }
}
