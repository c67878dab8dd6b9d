//! The plan: what must change on each real system for it to match the inventory.
//!
//! The systems crate observes the actual state ([`Observed`]: two LDAP searches, a few SQL
//! queries, a walk of the data volume); [`plan`] compares it with the desired state that
//! `pic2-render` derives from the inventory, and returns a [`Plan`] of typed, ordered
//! [`Change`]s, the [`Conflict`]s with objects pic2 does not own, and the deletions [`Held`]
//! back for want of `--prune` / `--drop-data`. No I/O happens here, so the dry run is exact:
//! applying a plan performs exactly its changes, and planning again afterwards finds none.

mod change;
mod containers;
mod databases;
mod directory;
mod files;
mod observed;

pub use change::{
    Change, Conflict, CredentialsTarget, Held, Kind, Op, Phase, Plan, System, ValueEdit,
};
pub use observed::{
    FileKind, FileMeta, Observed, ObservedContainer, ObservedContainers, ObservedDatabases,
    ObservedDirectory, ObservedEntry, ObservedFiles,
};

use pic2_inventory::ValidInventory;

/// The suffix of the temporary files pic2 writes before renaming them into place.
pub const TEMP_SUFFIX: &str = ".pic2-tmp";

/// What follows the name of an entry pic2 moves aside, before the observation's date and time
/// (`mariadb-x.cnf.pic2-moved-20260115-093000`) or, for what a write exchanged out, a tag of
/// chance.
pub const MOVED_SUFFIX: &str = ".pic2-moved-";

/// What the user allowed beyond creating and updating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Delete objects pic2 manages that the inventory no longer lists (LDAP entries, database
    /// users, grants).
    pub prune: bool,
    /// With `prune`, also delete data: databases, homes and site folders.
    pub drop_data: bool,
}

/// Compares the inventory with what was observed.
pub fn plan(inv: &ValidInventory, observed: &Observed, options: Options) -> Plan {
    // The directory's, the files' and the databases' diffs only add to their own plan: run
    // at once (a third of a no-op plan at 10,000 accounts, each some 0.1 s), then joined in
    // the order they were made in one after the other (the sort below is stable). The
    // containers' diff reads the files' changes (a runtime's configuration written is
    // reloaded): it comes after.
    let (mut plan, files, databases) = std::thread::scope(|scope| {
        let files = scope.spawn(|| {
            let mut plan = Plan::default();
            files::diff(inv, &observed.files, options, &mut plan);
            plan
        });
        let databases = scope.spawn(|| {
            let mut plan = Plan::default();
            let files = &observed.files;
            databases::diff(inv, &observed.databases, files, options, &mut plan);
            plan
        });
        let mut plan = Plan::default();
        directory::diff(inv, &observed.directory, options, &mut plan);
        (plan, files.join(), databases.join())
    });
    for part in [files, databases] {
        // a diff that panicked panics here too, as it did when run on this thread
        plan.append(part.unwrap_or_else(|p| std::panic::resume_unwind(p)));
    }
    containers::diff(inv, &observed.containers, options, &mut plan);
    plan.sort();
    plan
}

#[cfg(test)]
mod tests {
    //! Observed states built from the desired ones: "what an apply leaves".
    use super::*;
    use pic2_inventory::{AccountName, Domain, Span};
    use pic2_render::files::PathKind;

    pub fn demo() -> ValidInventory {
        pic2_inventory::load(
            "examples/demo.toml",
            include_str!("../../../examples/demo.toml"),
        )
        .unwrap()
    }

    pub trait Names {
        fn parse_name(&self) -> AccountName;
        fn parse_domain(&self) -> Domain;
    }

    impl Names for str {
        fn parse_name(&self) -> AccountName {
            AccountName::parse(self, Span::default()).unwrap()
        }
        fn parse_domain(&self) -> Domain {
            Domain::parse(self, Span::default()).unwrap()
        }
    }

    pub fn entry_from(e: &pic2_render::directory::Entry) -> ObservedEntry {
        ObservedEntry {
            dn: e.dn.clone(),
            attrs: e
                .attrs
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(a, v)| (a.to_ascii_lowercase(), v.clone()))
                .collect(),
        }
    }

    pub fn applied_files(inv: &ValidInventory) -> ObservedFiles {
        let mut o = ObservedFiles::default();
        let url = &inv.database.url.value;
        let host = inv
            .database
            .site_host
            .as_ref()
            .map_or_else(|| url.host.clone(), |h| h.value.to_string());
        for d in pic2_render::files::desired(inv) {
            let contents = match d.kind {
                PathKind::Credentials => {
                    let db = d
                        .path
                        .file_stem()
                        .unwrap()
                        .to_string_lossy()
                        .trim_start_matches("mariadb-")
                        .to_string();
                    Some(pic2_render::databases::credentials_text(
                        &db, &d.path, &host, url.port, "",
                    ))
                }
                _ => d.contents.clone(),
            };
            let kind = if d.kind == PathKind::Dir {
                FileKind::Dir
            } else {
                FileKind::File
            };
            o.paths.insert(
                d.path.clone(),
                FileMeta {
                    kind,
                    uid: d.uid,
                    gid: d.gid,
                    mode: d.mode,
                    contents,
                    target: None,
                },
            );
        }
        for dir in pic2_render::files::listed_dirs(inv) {
            let names = o
                .paths
                .keys()
                .filter(|p| p.parent() == Some(dir.as_path()))
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            o.listings.insert(dir, names);
        }
        o
    }

    /// A Docker engine with nothing of pic2's yet, but the base images it builds from.
    pub fn fresh_engine(inv: &ValidInventory) -> crate::observed::ObservedContainers {
        let mut o = crate::observed::ObservedContainers::default();
        for image in pic2_render::containers::desired(inv)
            .map(|d| d.images)
            .unwrap_or_default()
        {
            o.images.extend(image.base().map(str::to_string));
        }
        o
    }

    pub fn applied_databases(inv: &ValidInventory) -> ObservedDatabases {
        let mut o = ObservedDatabases::default();
        for db in pic2_render::databases::desired(inv) {
            o.databases.insert(db.name.to_string(), db.comment.clone());
            for h in &db.hosts {
                o.users
                    .insert((db.name.to_string(), h.as_str().to_string()));
                o.connection_limits.insert(
                    (db.name.to_string(), h.as_str().to_string()),
                    db.max_connections,
                );
                // as `mysql.db` keeps it: the pattern pic2 grants on
                o.grants.insert(
                    (
                        pic2_render::databases::grant_pattern(db.name.as_str()),
                        db.name.to_string(),
                        h.as_str().to_string(),
                    ),
                    true,
                );
            }
        }
        o
    }
}
