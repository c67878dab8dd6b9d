//! Running a plan: each change in order, with progress, stopping at the first failure. What
//! ran stays done; planning again shows what is left, and the next apply finishes it.

use crate::credentials::{file_contents, generate_password, password_in};
use crate::{volume, Error, Systems};
use pic2_plan::{Change, Op, Plan};

/// Progress of an apply, for the CLI to show.
pub enum ApplyEvent<'a> {
    Started {
        index: usize,
        total: usize,
        change: &'a Change,
    },
    Finished {
        index: usize,
        total: usize,
        change: &'a Change,
    },
    /// A long change under way (a walk re-owning files): how many entries it has looked at.
    Progress {
        index: usize,
        total: usize,
        change: &'a Change,
        done: u64,
    },
}

pub fn apply(
    plan: &Plan,
    systems: &mut Systems,
    progress: &mut dyn FnMut(ApplyEvent<'_>),
) -> Result<(), (usize, Error)> {
    let total = plan.changes.len();
    for (index, change) in plan.changes.iter().enumerate() {
        progress(ApplyEvent::Started {
            index,
            total,
            change,
        });
        let mut under_way = |done| {
            progress(ApplyEvent::Progress {
                index,
                total,
                change,
                done,
            })
        };
        run(&change.op, systems, &mut under_way).map_err(|e| (index, e))?;
        progress(ApplyEvent::Finished {
            index,
            total,
            change,
        });
    }
    Ok(())
}

fn run(op: &Op, s: &mut Systems, progress: &mut dyn FnMut(u64)) -> Result<(), Error> {
    match op {
        Op::LdapAdd { dn, attrs } => s.directory.add(dn, attrs),
        Op::LdapModify { dn, replace, edit } => s.directory.modify(dn, replace, edit),
        Op::LdapDelete { dn } => s.directory.delete(dn),
        Op::CreateDir {
            path,
            uid,
            gid,
            mode,
        } => volume::create_dir(path, *uid, *gid, *mode),
        Op::SetOwnerMode {
            path,
            uid,
            gid,
            mode,
        } => volume::set_owner_mode(path, *uid, *gid, *mode),
        Op::WriteFile {
            path,
            uid,
            gid,
            mode,
            contents,
        } => volume::write_file(path, *uid, *gid, *mode, contents),
        Op::RemoveTree { path } => volume::remove_tree(path),
        Op::MoveAside { path, to } => volume::move_aside(path, to).map(drop),
        Op::ReownFiles {
            path,
            from_uid,
            to_uid,
            from_gid,
            to_gid,
        } => {
            let ids = volume::Reown {
                from_uid: *from_uid,
                to_uid: *to_uid,
                from_gid: *from_gid,
                to_gid: *to_gid,
            };
            volume::reown_files(path, ids, progress).map(drop)
        }
        Op::CreateDatabase { name, comment } => s.databases.create_database(name, comment),
        Op::SetDatabaseComment { name, comment } => s.databases.set_comment(name, comment),
        Op::EnsureUser {
            user,
            create_on,
            all_hosts,
            new_password,
            rewrite,
            credentials,
        } => {
            // The password is set on the server first and written last: if anything stops in
            // between, the file is missing, and the next plan sets a new one.
            let password = if *new_password {
                generate_password()
            } else {
                let text = volume::read_file(&credentials.path)?;
                password_in(&text)
                    .map(str::to_string)
                    .ok_or_else(|| Error::io(&credentials.path, "has no `password=` line: delete the file and apply again to set a new password"))?
            };
            for host in create_on {
                s.databases.create_user(user, host, &password)?;
            }
            if *new_password {
                for host in all_hosts.iter().filter(|h| !create_on.contains(h)) {
                    s.databases.set_user_password(user, host, &password)?;
                }
            }
            if *new_password || *rewrite {
                volume::write_file(
                    &credentials.path,
                    credentials.uid,
                    credentials.gid,
                    0o600,
                    &file_contents(credentials, &password),
                )?;
            }
            Ok(())
        }
        Op::Grant {
            database,
            user,
            host,
        } => s.databases.grant_all(database, user, host),
        Op::LimitConnections { user, host, max } => s.databases.limit_connections(user, host, *max),
        Op::RevokePattern {
            pattern,
            user,
            host,
        } => s.databases.revoke_pattern(pattern, user, host),
        Op::DropUser { user, host } => s.databases.drop_user(user, host),
        Op::DropDatabase { name } => s.databases.drop_database(name),
        Op::BuildImage { image } => engine(s)?.build_image(image),
        Op::CreateNetwork { network } => engine(s)?.create_network(network),
        Op::CreateContainer { container } => engine(s)?.create_container(container),
        Op::ReplaceContainer { container } => engine(s)?.replace_container(container),
        Op::StartContainer { name } => engine(s)?.start_container(name),
        Op::Reload { name, command } => engine(s)?.reload(name, command),
        Op::RemoveContainer { name } => engine(s)?.remove_container(name),
    }
}

fn engine(s: &Systems) -> Result<&crate::Engine, Error> {
    s.docker
        .as_ref()
        .ok_or_else(|| Error::docker("changing containers", "not connected to the Docker engine"))
}
