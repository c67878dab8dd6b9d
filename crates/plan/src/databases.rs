//! MariaDB diff: databases, their users and grants, and the credentials files.
//!
//! A database is pic2's when its comment starts with `pic2:<platform>`. Its user has the same
//! name; users of a managed database are managed too. A database that does not exist yet may
//! not be created over an existing user of that name: that user is someone else's.

use crate::change::{Change, CredentialsTarget, Kind, Op, Phase, Plan, System};
use crate::observed::{FileKind, FileMeta, ObservedDatabases, ObservedFiles};
use crate::Options;
use pic2_inventory::{ClientHost, ValidInventory};
use pic2_render::databases::{desired, mark, DesiredDatabase};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The platform a database comment names, if it is a pic2 comment.
fn comment_platform(comment: &str) -> Option<&str> {
    comment.split_whitespace().next()?.strip_prefix("pic2:")
}

pub(crate) fn diff(
    inv: &ValidInventory,
    observed: &ObservedDatabases,
    files: &ObservedFiles,
    options: Options,
    plan: &mut Plan,
) {
    let platform = inv.platform.name.as_str();
    let desired = desired(inv);
    let server = &inv.database.url.value;
    // Every user's hosts, grouped once (a scan per database would be quadratic).
    let mut hosts_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (user, host) in &observed.users {
        hosts_of
            .entry(user.as_str())
            .or_default()
            .insert(host.as_str());
    }
    let no_hosts = BTreeSet::new();

    for db in &desired {
        let name = db.name.as_str();
        let users: &BTreeSet<&str> = hosts_of.get(name).unwrap_or(&no_hosts);
        let credentials = CredentialsTarget {
            path: db.credentials.clone(),
            uid: db.owner_uid,
            gid: db.owner_uid,
            database: name.to_string(),
            server_host: inv
                .database
                .site_host
                .as_ref()
                .map_or_else(|| server.host.clone(), |h| h.value.to_string()),
            server_port: server.port,
        };
        // A link in place of the file (the account's doing: `private/` is its folder) holds
        // no password of pic2's: the file is written over it with a new one, as for a file
        // gone. Never followed: what it points to is not read, and the file is renamed over
        // the link (which replaces the link itself). A folder or a special file there may
        // hold the account's data: moved aside first (renamed beside it, nothing deleted),
        // then the file is written, with a new password. Neither is a conflict: the account
        // would stop every apply of the platform with a `mkdir`.
        let (link, in_the_way, on_disk) = match files.paths.get(&db.credentials) {
            Some(m) if m.kind == FileKind::Symlink => (Some(m), None, None),
            Some(m) if m.kind != FileKind::File => (None, Some(m), None),
            other => (None, None, other),
        };
        let aside = in_the_way.map(|m| move_aside(&db.credentials, m, &files.observed_at));
        let moved = aside.is_some();
        let has_credentials = on_disk.is_some();
        // The file's settings other than the password (read with it blanked by the observer).
        let stale_credentials = on_disk.is_some_and(|m| {
            m.contents.as_deref()
                != Some(&pic2_render::databases::credentials_text(
                    name,
                    &credentials.path,
                    &credentials.server_host,
                    credentials.server_port,
                    "",
                ))
        });
        match observed.databases.get(name) {
            None => {
                if !users.is_empty() {
                    let hosts: Vec<&str> = users.iter().copied().collect();
                    plan.conflict(System::Databases, name, format!("the user `{name}` already exists (from {}) and pic2 does not manage it", hosts.join(", ")), "pic2 names each database's user after the database: rename the database in the inventory, or drop that user");
                    continue;
                }
                plan.push(create_database(db));
                plan.changes.extend(aside);
                plan.push(ensure_user(db, db.hosts.clone(), Password::New, credentials, link, moved));
                for host in &db.hosts {
                    plan.push(limit_connections(db, host));
                    plan.push(grant(name, host));
                }
            }
            // A comment without pic2's mark on a database all of whose pic2 users are there
            // is one its user edited (ALTER, which a site needs for its tables, covers ALTER
            // DATABASE … COMMENT): still ours, its mark put back. A tenant must not be able to
            // stop every apply of the platform with a comment.
            Some(comment) => match comment_platform(comment) {
                mark if mark == Some(platform)
                    || (mark.is_none()
                        && !db.hosts.is_empty()
                        && db.hosts.iter().all(|h| users.contains(h.as_str()))) =>
                {
                    if *comment != db.comment {
                        plan.push(Change::new(System::Databases, Kind::Update, Phase::Databases, name.to_string(), format!("set the comment of database {name} to '{}'", db.comment), Op::SetDatabaseComment { name: name.to_string(), comment: db.comment.clone() }).with_details(vec![format!("- comment: {comment}"), format!("+ comment: {}", db.comment)]));
                    }
                    let missing: Vec<ClientHost> = db.hosts.iter().filter(|h| !users.contains(h.as_str())).cloned().collect();
                    let password = match (has_credentials, stale_credentials) {
                        (false, _) => Password::New,
                        (true, true) => Password::Rewrite,
                        (true, false) => Password::Keep,
                    };
                    if !missing.is_empty() || password != Password::Keep {
                        plan.changes.extend(aside);
                        plan.push(ensure_user(db, missing, password, credentials, link, moved));
                    }
                    for host in &db.hosts {
                        let key = (name.to_string(), host.as_str().to_string());
                        if observed.connection_limits.get(&key) != Some(&db.max_connections) {
                            plan.push(limit_connections(db, host));
                        }
                    }
                    let pattern = pic2_render::databases::grant_pattern(name);
                    for host in &db.hosts {
                        let key = (pattern.clone(), name.to_string(), host.as_str().to_string());
                        if observed.grants.get(&key) != Some(&true) {
                            plan.push(grant(name, host));
                        }
                    }
                    // a grant pic2 made before it escaped `_`: a wildcard over other names
                    if pattern != name {
                        // its grants in key order (a scan of every grant per database would be
                        // quadratic: 10,000 databases with a `_`, 10⁸ steps at every plan)
                        let from = (name.to_string(), name.to_string(), String::new());
                        let unescaped = observed
                            .grants
                            .range(from..)
                            .map(|((db_pattern, user, host), _)| (db_pattern, user, host))
                            .take_while(|(db_pattern, user, _)| *db_pattern == name && *user == name);
                        for (_, _, host) in unescaped {
                            plan.push(revoke_wildcard(name, host));
                        }
                    }
                    let wanted: BTreeSet<&str> = db.hosts.iter().map(|h| h.as_str()).collect();
                    for host in users.iter().filter(|h| !wanted.contains(*h)) {
                        drop_user(name, host, options, plan);
                    }
                }
                Some(other) => plan.conflict(System::Databases, name, format!("the database belongs to the pic2 platform `{other}`"), "two platforms cannot share a database name: rename it in one inventory"),
                None => plan.conflict(System::Databases, name, "the database exists and pic2 does not manage it (its comment has no pic2 mark)", format!("rename the database in the inventory, or to let pic2 take it over: ALTER DATABASE `{name}` COMMENT '{}'", db.comment)),
            },
        }
    }

    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    let prefix = mark(platform);
    for (name, comment) in &observed.databases {
        if wanted.contains(name.as_str())
            || comment_platform(comment) != prefix.strip_prefix("pic2:")
        {
            continue;
        }
        for host in hosts_of.get(name.as_str()).unwrap_or(&no_hosts) {
            drop_user(name, host, options, plan);
        }
        if options.prune && options.drop_data {
            plan.push(Change::new(
                System::Databases,
                Kind::Delete,
                Phase::DatabaseDeletes,
                name.clone(),
                format!("DROP DATABASE {name} and all its tables"),
                Op::DropDatabase { name: name.clone() },
            ));
        } else {
            plan.hold(System::Databases, name.clone(), "--prune --drop-data");
        }
    }
}

fn create_database(db: &DesiredDatabase) -> Change {
    Change::new(
        System::Databases,
        Kind::Create,
        Phase::Databases,
        db.name.to_string(),
        format!("create database {} (owner {})", db.name, db.owner),
        Op::CreateDatabase {
            name: db.name.to_string(),
            comment: db.comment.clone(),
        },
    )
    .with_details(vec![format!("+ comment: {}", db.comment)])
}

/// What becomes of a database user's password.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Password {
    /// A fresh one, set everywhere and written to the (missing) credentials file.
    New,
    /// The one in the credentials file.
    Keep,
    /// The one in the file, which is rewritten: its other settings (host, port) changed.
    Rewrite,
}

/// Moves the folder (special file) at a credentials file's path aside, for the file to be
/// written there: renamed beside it, with the observation's date and time.
fn move_aside(path: &Path, meta: &FileMeta, observed_at: &str) -> Change {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{}{observed_at}", crate::MOVED_SUFFIX));
    let to = path.with_file_name(name);
    let what = if meta.kind == FileKind::Dir {
        "folder"
    } else {
        "special file"
    };
    Change::new(
        System::Files,
        Kind::Update,
        Phase::Folders,
        path.display().to_string(),
        format!(
            "move the {what} at {} aside to {} (never followed, nothing deleted), then write pic2's credentials file",
            path.display(),
            to.display()
        ),
        Op::MoveAside {
            path: path.to_path_buf(),
            to: to.clone(),
        },
    )
    .with_details(vec![
        format!("- {what} {}:{} {:04o}", meta.uid, meta.gid, meta.mode),
        format!(
            "+ {what} kept as {} (if that name is taken: -2, -3, then a tag of chance appended)",
            to.display()
        ),
    ])
}

fn ensure_user(
    db: &DesiredDatabase,
    create_on: Vec<ClientHost>,
    password: Password,
    credentials: CredentialsTarget,
    link: Option<&FileMeta>,
    moved_aside: bool,
) -> Change {
    let new_password = password == Password::New;
    let name = db.name.as_str();
    let hosts: Vec<&str> = create_on.iter().map(|h| h.as_str()).collect();
    let mut parts = Vec::new();
    if !create_on.is_empty() {
        parts.push(format!("create user {name} from {}", hosts.join(", ")));
    }
    let mut details: Vec<String> = create_on
        .iter()
        .map(|h| format!("+ user: '{name}'@'{}'", h.as_str()))
        .collect();
    if let Some(link) = link {
        // the account wrote the target: quoted and escaped, never printed raw
        let target = link
            .target
            .as_ref()
            .map_or_else(|| "unreadable".to_string(), |t| format!("{t:?}"));
        parts.push(format!(
            "replace the symbolic link at {} (→ {target}, not followed) with pic2's credentials file, with a new password",
            credentials.path.display()
        ));
        details.push(format!("- symbolic link → {target}"));
        details.push(format!(
            "+ credentials file {}:{} 0600",
            credentials.uid, credentials.gid
        ));
    } else if new_password && moved_aside {
        parts.push(format!(
            "set a new password, written to {} (in place of what was moved aside)",
            credentials.path.display()
        ));
    } else if new_password {
        parts.push(format!(
            "set a new password, written to {}",
            credentials.path.display()
        ));
    } else if password == Password::Rewrite {
        parts.push(format!(
            "rewrite {} (same password, new settings)",
            credentials.path.display()
        ));
    } else {
        parts.push(format!(
            "with the password from {}",
            credentials.path.display()
        ));
    }
    let kind = if create_on.is_empty() {
        Kind::Update
    } else {
        Kind::Create
    };
    Change::new(
        System::Databases,
        kind,
        Phase::DatabaseUsers,
        name.to_string(),
        parts.join("; "),
        Op::EnsureUser {
            user: name.to_string(),
            create_on,
            all_hosts: db.hosts.clone(),
            new_password,
            rewrite: password == Password::Rewrite,
            credentials,
        },
    )
    .with_details(details)
}

fn grant(db: &str, host: &ClientHost) -> Change {
    Change::new(
        System::Databases,
        Kind::Create,
        Phase::Grants,
        format!("{db}@{}", host.as_str()),
        format!(
            "grant all privileges on {db}.* to '{db}'@'{}'",
            host.as_str()
        ),
        Op::Grant {
            database: db.to_string(),
            user: db.to_string(),
            host: host.clone(),
        },
    )
}

fn limit_connections(db: &DesiredDatabase, host: &ClientHost) -> Change {
    let name = db.name.as_str();
    Change::new(
        System::Databases,
        Kind::Update,
        Phase::DatabaseUsers,
        format!("{name}@{}", host.as_str()),
        format!(
            "let '{name}'@'{}' hold {} connections at most",
            host.as_str(),
            db.max_connections
        ),
        Op::LimitConnections {
            user: name.to_string(),
            host: host.clone(),
            max: db.max_connections,
        },
    )
}

/// Revokes the grant on `name` taken as a pattern (`_` matching any character): it gave
/// the database's user every database whose name differs from its own by those characters.
/// Not a deletion: the escaped grant on the database itself stays.
fn revoke_wildcard(name: &str, host: &str) -> Change {
    Change::new(
        System::Databases,
        Kind::Update,
        Phase::Grants,
        format!("{name}@{host}"),
        format!(
            "revoke the grant on the pattern {name}.* ('_' matches any character) from '{name}'@'{host}'"
        ),
        Op::RevokePattern {
            pattern: name.to_string(),
            user: name.to_string(),
            host: host.to_string(),
        },
    )
}

fn drop_user(name: &str, host: &str, options: Options, plan: &mut Plan) {
    let subject = format!("'{name}'@'{host}'");
    if options.prune {
        plan.push(Change::new(
            System::Databases,
            Kind::Delete,
            Phase::DatabaseUserDeletes,
            subject.clone(),
            format!("drop user {subject}"),
            Op::DropUser {
                user: name.to_string(),
                host: host.to_string(),
            },
        ));
    } else {
        plan.hold(System::Databases, subject, "--prune");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::Observed;
    use crate::plan;
    use crate::tests::{applied_databases, applied_files, demo};

    fn applied() -> (ValidInventory, Observed) {
        let inv = demo();
        let o = Observed {
            files: applied_files(&inv),
            databases: applied_databases(&inv),
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        (inv, o)
    }

    /// Where velobs's credentials file is, as observed.
    fn velobs_credentials(o: &Observed) -> std::path::PathBuf {
        o.files
            .paths
            .keys()
            .find(|p| p.ends_with("mariadb-velobs.cnf"))
            .unwrap()
            .clone()
    }

    fn db_changes(p: &crate::Plan) -> Vec<&Change> {
        p.changes
            .iter()
            .filter(|c| c.system == System::Databases)
            .collect()
    }

    #[test]
    fn empty_server_gets_databases_users_and_grants() {
        let inv = demo();
        let p = plan(&inv, &Observed::default(), Options::default());
        let ops: Vec<_> = db_changes(&p)
            .iter()
            .map(|c| (c.phase, c.subject.clone()))
            .collect();
        assert_eq!(
            ops,
            vec![
                (Phase::Databases, "arto".into()),
                (Phase::Databases, "velobs".into()),
                (Phase::DatabaseUsers, "arto".into()),
                (Phase::DatabaseUsers, "arto@fd00:5049:4332:1:%".into()),
                (Phase::DatabaseUsers, "velobs".into()),
                (Phase::DatabaseUsers, "velobs@fd00:5049:4332:1:%".into()),
                (Phase::Grants, "arto@fd00:5049:4332:1:%".into()),
                (Phase::Grants, "velobs@fd00:5049:4332:1:%".into()),
            ]
        );
    }

    /// `_` is a wildcard in a grant's database: pic2 grants the escaped name, which
    /// `mysql.db` keeps as written, and revokes a grant it made unescaped before.
    #[test]
    fn a_grant_on_a_name_with_an_underscore_is_escaped_and_an_old_wildcard_revoked() {
        let text = include_str!("../../../examples/demo.toml")
            .replace("databases = [\"velobs\"]", "databases = [\"velo_bs\"]")
            .replace("[databases.velobs]", "[databases.velo_bs]");
        let inv = pic2_inventory::load("demo.toml", &text).unwrap();
        let mut o = Observed {
            files: crate::tests::applied_files(&inv),
            databases: applied_databases(&inv),
            ..Default::default()
        };
        let keys: Vec<_> = o.databases.grants.keys().map(|k| k.0.clone()).collect();
        assert!(keys.contains(&"velo\\_bs".to_string()), "{keys:?}");
        assert!(db_changes(&plan(&inv, &o, Options::default())).is_empty());

        let host = "fd00:5049:4332:1:%".to_string();
        o.databases
            .grants
            .insert(("velo_bs".into(), "velo_bs".into(), host.clone()), true);
        let p = plan(&inv, &o, Options::default());
        let c = db_changes(&p);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert!(
            matches!(&c[0].op, Op::RevokePattern { pattern, user, host: h }
                if pattern == "velo_bs" && user == "velo_bs" && *h == host),
            "{c:#?}"
        );
    }

    #[test]
    fn applied_server_needs_nothing() {
        let (inv, o) = applied();
        let p = plan(&inv, &o, Options::default());
        assert!(db_changes(&p).is_empty(), "{:#?}", p.changes);
    }

    /// A user made before the cap (or changed by hand) is capped again: one site's
    /// leaking script must not take the shared server's every connection.
    #[test]
    fn a_database_user_without_its_connection_cap_gets_it() {
        let (inv, mut o) = applied();
        let key = ("velobs".to_string(), "fd00:5049:4332:1:%".to_string());
        o.databases.connection_limits.insert(key, 0);
        let p = plan(&inv, &o, Options::default());
        let c = db_changes(&p);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert!(
            matches!(&c[0].op, Op::LimitConnections { user, max: 30, .. } if user == "velobs"),
            "{c:#?}"
        );
    }

    /// A site's user may edit its database's comment (ALTER covers it): the database is
    /// still pic2's while pic2's users of it are all there, and its mark is put back, rather
    /// than a conflict that stops every apply of the platform.
    #[test]
    fn a_comment_its_user_edited_is_put_back_not_a_conflict() {
        let (inv, mut o) = applied();
        o.databases
            .databases
            .insert("velobs".into(), "mine now".into());
        let p = plan(&inv, &o, Options::default());
        assert!(p.conflicts.is_empty(), "{:#?}", p.conflicts);
        let c = db_changes(&p);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert!(matches!(&c[0].op, Op::SetDatabaseComment { name, .. } if name == "velobs"));
    }

    #[test]
    fn lost_credentials_file_means_a_new_password() {
        let (inv, mut o) = applied();
        o.files
            .paths
            .retain(|p, _| !p.ends_with("mariadb-velobs.cnf"));
        let p = plan(&inv, &o, Options::default());
        let c = db_changes(&p);
        assert_eq!(c.len(), 1);
        assert!(
            matches!(&c[0].op, Op::EnsureUser { new_password: true, create_on, .. } if create_on.is_empty())
        );
    }

    /// The account swapped its credentials file for a link (to `/etc/passwd`, say): the file
    /// is pic2's, written over the link with a new password; not a conflict that stops the
    /// apply of every other site.
    #[test]
    fn a_link_in_place_of_the_credentials_file_is_replaced_not_a_conflict() {
        let (inv, applied) = applied();
        let path = velobs_credentials(&applied);
        let mut o = applied.clone();
        let linked = |kind, target: Option<&str>| FileMeta {
            kind,
            uid: 10001,
            gid: 10001,
            mode: 0o777,
            contents: None,
            target: target.map(Into::into),
        };
        o.files
            .paths
            .insert(path.clone(), linked(FileKind::Symlink, Some("/etc/passwd")));
        let p = plan(&inv, &o, Options::default());
        assert!(p.conflicts.is_empty(), "{:#?}", p.conflicts);
        let c = db_changes(&p);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert!(
            matches!(&c[0].op, Op::EnsureUser { new_password: true, create_on, credentials, .. }
                if create_on.is_empty() && credentials.path == path),
            "{:#?}",
            c[0]
        );
        assert_eq!(
            c[0].summary,
            format!(
                "replace the symbolic link at {} (→ \"/etc/passwd\", not followed) with pic2's credentials file, with a new password",
                path.display()
            )
        );
        // nothing else on that path (no chown of the link, nothing followed)
        assert!(p
            .changes
            .iter()
            .all(|c| c.system != System::Files || c.subject != path.display().to_string()));
        // once the file is back (what the apply leaves), nothing
        let p = plan(&inv, &applied, Options::default());
        assert!(db_changes(&p).is_empty() && p.conflicts.is_empty());
    }

    /// A folder (a FIFO, any special file) the account made at its credentials file's path
    /// may hold its data: moved aside, under a name of the observation's time, then the file
    /// written with a new password; not a conflict that stops the apply of every site.
    #[test]
    fn a_folder_in_place_of_the_credentials_file_is_moved_aside_not_a_conflict() {
        let (inv, applied) = applied();
        let path = velobs_credentials(&applied);
        let mut o = applied.clone();
        o.files.observed_at = "20260115-093000".into();
        let to = path.with_file_name("mariadb-velobs.cnf.pic2-moved-20260115-093000");
        for (kind, what) in [(FileKind::Dir, "folder"), (FileKind::Other, "special file")] {
            let meta = FileMeta {
                kind,
                uid: 10001,
                gid: 10001,
                mode: 0o755,
                contents: None,
                target: None,
            };
            o.files.paths.insert(path.clone(), meta);
            let p = plan(&inv, &o, Options::default());
            assert!(p.conflicts.is_empty(), "{kind:?}: {:#?}", p.conflicts);
            let on_path: Vec<&Change> = p
                .changes
                .iter()
                .filter(|c| c.subject == path.display().to_string())
                .collect();
            assert_eq!(on_path.len(), 1, "{on_path:#?}");
            assert_eq!(
                on_path[0].op,
                Op::MoveAside {
                    path: path.clone(),
                    to: to.clone()
                }
            );
            assert_eq!(
                on_path[0].summary,
                format!(
                    "move the {what} at {} aside to {} (never followed, nothing deleted), then write pic2's credentials file",
                    path.display(),
                    to.display()
                )
            );
            let c = db_changes(&p);
            assert_eq!(c.len(), 1, "{c:#?}");
            assert!(
                matches!(&c[0].op, Op::EnsureUser { new_password: true, rewrite: false, credentials, .. }
                    if credentials.path == path),
                "{:#?}",
                c[0]
            );
            // moved before the file is written
            let pos = |c: &Change| p.changes.iter().position(|x| x == c).unwrap();
            assert!(pos(on_path[0]) < pos(c[0]));
        }
        // once applied (the file in place, the folder beside it, unobserved): nothing
        let p = plan(&inv, &applied, Options::default());
        assert!(
            p.conflicts.is_empty()
                && p.changes
                    .iter()
                    .all(|c| c.system != System::Files && c.system != System::Databases),
            "{p:#?}"
        );
    }

    #[test]
    fn existing_unmanaged_database_or_user_conflicts() {
        let (inv, mut o) = applied();
        // a legacy velobs database, whose users are not pic2's
        o.databases.databases.insert("velobs".into(), "".into());
        o.databases.users.retain(|(u, _)| u != "velobs");
        o.databases.databases.remove("arto");
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: true,
            },
        );
        let subjects: Vec<_> = p.conflicts.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects, vec!["arto", "velobs"], "{:#?}", p.conflicts);
        assert!(p.changes.iter().all(|c| c.kind != Kind::Delete));
    }

    #[test]
    fn dropping_needs_prune_and_drop_data() {
        let (inv, mut o) = applied();
        o.databases
            .databases
            .insert("old".into(), "pic2:demo owner=velobs".into());
        o.databases.users.insert(("old".into(), "127.0.0.1".into()));
        o.databases
            .databases
            .insert("theirs".into(), "pic2:other owner=x".into());
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.held.len(), 2);
        assert!(db_changes(&p).is_empty());
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: false,
            },
        );
        assert_eq!(db_changes(&p).len(), 1, "the user only");
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: true,
            },
        );
        let d: Vec<_> = db_changes(&p).iter().map(|c| c.summary.clone()).collect();
        assert_eq!(
            d,
            vec![
                "drop user 'old'@'127.0.0.1'",
                "DROP DATABASE old and all its tables"
            ]
        );
    }
}
