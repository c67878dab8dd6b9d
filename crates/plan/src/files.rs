//! Data volume diff: the layout from `pic2-render` against what the walk found.
//!
//! A home is pic2's when it holds the marker file naming this platform; an empty folder with
//! no marker is taken over (it is what an interrupted apply leaves). Links are never followed:
//! a link where pic2 expects a folder is a conflict, so a user cannot make pic2 chown `/etc`.

use crate::change::{Change, Kind, Op, Phase, Plan, System};
use crate::observed::{FileKind, FileMeta, ObservedFiles};
use crate::Options;
use pic2_inventory::layout::HOME_MARKER;
use pic2_inventory::ValidInventory;
use pic2_render::files::{desired, DesiredPath, PathKind};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// The platform named by a home marker's text.
pub(crate) fn marker_platform(contents: &str) -> Option<&str> {
    contents.lines().find_map(|l| l.strip_prefix("platform="))
}

pub(crate) fn diff(
    inv: &ValidInventory,
    observed: &ObservedFiles,
    options: Options,
    plan: &mut Plan,
) {
    let platform = inv.platform.name.as_str();
    let homes_dir = inv.homes_dir();
    let desired = desired(inv);
    // Homes that belong to someone else: nothing below them is touched.
    let mut foreign: BTreeSet<&Path> = BTreeSet::new();
    // (old id, the account taking it) of the walks refused
    let mut handed_over: BTreeSet<(u32, String)> = BTreeSet::new();
    // Folders with a folder of the layout inside; the others (private, htdocs, tmp, logs) are
    // where an account's own files are.
    let has_subfolders: HashSet<&Path> = desired
        .iter()
        .filter(|d| d.kind == PathKind::Dir)
        .filter_map(|d| d.path.parent())
        .collect();

    for want in &desired {
        if foreign.iter().any(|f| want.path.starts_with(f)) {
            continue;
        }
        let is_home = want.path.parent() == Some(homes_dir.as_path());
        let have = observed.paths.get(&want.path);
        if is_home {
            if let Some(reason) = foreign_home(&want.path, observed, platform) {
                plan.conflict(System::Files, want.path.display().to_string(), reason, "rename the account in the inventory, or move that folder away; pic2 only manages homes it created");
                foreign.insert(&want.path);
                continue;
            }
        }
        match (want.kind, have) {
            (PathKind::Dir, None) => plan.push(create_dir(want)),
            (PathKind::File, None) => plan.push(write_file(want)),
            (PathKind::Credentials, None) => {} // the databases diff sets a new password and writes it
            // A link, a folder or a special file in place of a credentials file: the account
            // made it (`private/` is its folder), and the file is pic2's to write. Not a
            // conflict that would stop every apply of the platform: the databases diff writes
            // the file over the link (renamed over it, never followed), or moves the folder
            // (special file) aside first, which may hold the account's data, and writes the
            // file in its place, with a new password.
            (PathKind::Credentials, Some(meta)) if meta.kind != FileKind::File => {}
            (_, Some(meta)) => {
                let expected = if want.kind == PathKind::Dir {
                    FileKind::Dir
                } else {
                    FileKind::File
                };
                if meta.kind != expected {
                    let found = match meta.kind {
                        FileKind::Symlink => "a symbolic link (pic2 never follows links here)",
                        FileKind::Dir => "a folder",
                        FileKind::File => "a file",
                        FileKind::Other => "a special file",
                    };
                    plan.conflict(
                        System::Files,
                        want.path.display().to_string(),
                        format!(
                            "expected {}, found {found}",
                            if expected == FileKind::Dir {
                                "a folder"
                            } else {
                                "a file"
                            }
                        ),
                        "move it away; pic2 will then create what the layout needs",
                    );
                    continue;
                }
                // the folder's own owner is set after the walks (see `reown_files`)
                let mut owner_phase = Phase::Folders;
                if want.kind == PathKind::Dir && !has_subfolders.contains(want.path.as_path()) {
                    let walk = reown_files(want, meta);
                    if let Some(TakenOver { id, old, new, heir }) =
                        walk.as_ref().and_then(|w| taken_over(w, inv))
                    {
                        // said once per account (its every data folder is walked)
                        if handed_over.insert((old, heir.clone())) {
                            plan.conflict(
                                System::Files,
                                want.path.display().to_string(),
                                format!("the files here still have {id} {old}, which the inventory gives {heir}: re-owning them to {new} in this apply could take files that are {heir}'s now, and while the runtimes still run their sites as the old ids (until they reload, late in the apply; each mounts the whole data volume), one tenant's files would be another's to read and write meanwhile"),
                                format!("if {heir} takes the {id} from this account, give it up in one apply and take it in a later one, once the runtimes have reloaded: give {heir} a free {id} first (or keep its own), apply, then give it {old} and apply again; if the folder had {id} {old} before (set by hand), give it this account's {id} {new} back, the folder alone, once you know whose files are inside"),
                            );
                        }
                        continue;
                    }
                    if let Some(walk) = walk {
                        let again = walk_again(&walk);
                        plan.push(walk);
                        plan.push(again);
                        owner_phase = Phase::AfterReloads;
                    }
                }
                if want.kind == PathKind::File
                    && meta.contents.as_deref() != want.contents.as_deref()
                {
                    plan.push(write_file(want));
                } else if (meta.uid, meta.gid, meta.mode) != (want.uid, want.gid, want.mode) {
                    plan.push(
                        Change::new(
                            System::Files,
                            Kind::Update,
                            owner_phase,
                            want.path.display().to_string(),
                            format!(
                                "set {} to {}:{} {:04o}",
                                want.path.display(),
                                want.uid,
                                want.gid,
                                want.mode
                            ),
                            Op::SetOwnerMode {
                                path: want.path.clone(),
                                uid: want.uid,
                                gid: want.gid,
                                mode: want.mode,
                            },
                        )
                        .with_details(vec![
                            format!("- {}:{} {:04o}", meta.uid, meta.gid, meta.mode),
                            format!("+ {}:{} {:04o}", want.uid, want.gid, want.mode),
                        ]),
                    );
                }
            }
        }
    }

    let wanted: HashSet<&Path> = desired.iter().map(|d| d.path.as_path()).collect();
    let prune = |path: std::path::PathBuf, plan: &mut Plan| {
        if options.prune && options.drop_data {
            plan.push(Change::new(
                System::Files,
                Kind::Delete,
                Phase::FolderDeletes,
                path.display().to_string(),
                format!("delete {} and everything in it", path.display()),
                Op::RemoveTree { path },
            ));
        } else {
            plan.hold(
                System::Files,
                path.display().to_string(),
                "--prune --drop-data",
            );
        }
    };
    // Homes of accounts no longer listed, when they carry our marker.
    for name in observed.listings.get(&homes_dir).into_iter().flatten() {
        let home = homes_dir.join(name);
        let ours = observed
            .paths
            .get(&home.join(HOME_MARKER))
            .and_then(|m| m.contents.as_deref())
            .and_then(marker_platform)
            == Some(platform);
        if ours && !wanted.contains(home.as_path()) {
            // Kept data still belongs to its old uid: an account given that uid would read
            // it (its PHP runs as the uid, over the whole volume), credentials included.
            // Pruned with --drop-data in this very plan, it goes first (FolderDeletes after
            // the accounts' creation: not soon enough, hence refused too).
            let owner = observed.paths.get(&home.join("private")).map(|m| m.uid);
            let heir = owner.and_then(|uid| {
                inv.accounts
                    .iter()
                    .find(|(_, a)| a.uid.value == uid)
                    .map(|(n, _)| (uid, n))
            });
            if let Some((uid, heir)) = heir {
                plan.conflict(
                    System::Files,
                    home.display().to_string(),
                    format!("uid {uid} still owns this kept home's data, and the inventory gives it to `{heir}`, who would read it"),
                    format!("give `{heir}` another uid, or delete the old data first (`pic2 apply --prune --drop-data` before adding `{heir}`); for an account renamed, rename its home first (mv home/OLD home/NEW: the home's mark names the platform, so pic2 takes it over)"),
                );
            }
            prune(home, plan);
        }
    }
    // Site folders of sites no longer listed, inside homes that are ours.
    for account in inv.accounts.keys() {
        let sites = inv.sites_dir(account);
        if foreign.iter().any(|f| sites.starts_with(f)) {
            continue;
        }
        for name in observed.listings.get(&sites).into_iter().flatten() {
            let site = sites.join(name);
            if !wanted.contains(site.as_path()) {
                prune(site, plan);
            }
        }
    }
}

/// Why an existing home is not ours, if it is not.
fn foreign_home(home: &Path, observed: &ObservedFiles, platform: &str) -> Option<String> {
    observed.paths.get(home)?;
    match observed
        .paths
        .get(&home.join(HOME_MARKER))
        .and_then(|m| m.contents.as_deref())
        .map(marker_platform)
    {
        Some(Some(p)) if p == platform => None,
        Some(Some(other)) => Some(format!("this home belongs to the pic2 platform `{other}`")),
        Some(None) => Some(format!("the marker {HOME_MARKER} is not pic2's")),
        None => {
            // Empty, or holding only the temporary file of a marker being written: what an
            // apply killed at that moment leaves.
            let empty = observed
                .listings
                .get(home)
                .is_some_and(|l| l.iter().all(|n| n.ends_with(crate::TEMP_SUFFIX)));
            (!empty).then(|| format!("the folder exists, is not empty, and has no {HOME_MARKER} marker: pic2 did not create it"))
        }
    }
}

/// A walk's old id that the inventory gives another (see [`taken_over`]).
struct TakenOver {
    /// "uid" or "gid"
    id: &'static str,
    old: u32,
    /// what the walk would give instead
    new: u32,
    /// who has `old` in the inventory: "`NAME`" (an account, or its group) or the SSH group
    heir: String,
}

/// The id a walk takes the files from, when the inventory gives it to another: an account's
/// uid, an account's group's gid (its uid), or the SSH group's gid (`ssh_group_gid`, which an
/// apply stopped midway may have given already: the directory's entries no longer show it).
fn taken_over(walk: &Change, inv: &ValidInventory) -> Option<TakenOver> {
    let Op::ReownFiles {
        from_uid,
        to_uid,
        from_gid,
        to_gid,
        ..
    } = walk.op
    else {
        return None;
    };
    [("uid", from_uid, to_uid), ("gid", from_gid, to_gid)]
        .into_iter()
        .filter(|(_, from, to)| from != to)
        .find_map(|(id, old, new)| {
            // an account's group has its uid as gid
            let account = inv
                .accounts
                .iter()
                .find(|(_, a)| a.uid.value == old)
                .map(|(name, _)| format!("`{name}`"));
            let ssh_group = (id == "gid" && inv.directory.ssh_group_gid.value == old)
                .then(|| format!("the SSH group `{}`", inv.ssh_group()));
            account
                .or(ssh_group)
                .map(|heir| TakenOver { id, old, new, heir })
        })
}

/// The walk that gives an account's files its new ids, when a folder holding them still has
/// another uid (gid) than the layout gives it: the account's uid changed, and the files
/// inside still carry the old one, which PHP (mpm-itk runs it as the new uid) and SFTP could
/// no longer write (`usermod -u` does the same in a home). The folder's own owner is what
/// says the walk is due. The walk runs twice: early (phase `FileOwners`), so the runtimes
/// find their files re-owned as they reload, and again once they have (`AfterReloads`,
/// [`walk_again`]), for the files their PHP made meanwhile, still as the old uid. The
/// folder's owner is set (`SetOwnerMode`) only after that second walk, in the same phase:
/// an apply stopped anywhere before leaves it old and the next plan walks again; a finished
/// one leaves nothing to plan, and no file below is read to know it. Root's id is neither
/// taken nor given: root's files in there are not the account's (and a folder pic2 has just
/// made is root's until it is handed over).
fn reown_files(want: &DesiredPath, meta: &FileMeta) -> Option<Change> {
    let from = |have: u32, wanted: u32| {
        if have != wanted && have != 0 && wanted != 0 {
            have
        } else {
            wanted
        }
    };
    let (from_uid, from_gid) = (from(meta.uid, want.uid), from(meta.gid, want.gid));
    if (from_uid, from_gid) == (want.uid, want.gid) {
        return None;
    }
    let (mut ids, mut old, mut new) = (Vec::new(), Vec::new(), Vec::new());
    for (id, from, to) in [("uid", from_uid, want.uid), ("gid", from_gid, want.gid)] {
        if from != to {
            ids.push(format!("{id} {from} → {to}"));
            old.push(format!("{id} {from}"));
            new.push(format!("{id} {to}"));
        }
    }
    let path = want.path.display();
    Some(
        Change::new(
            System::Files,
            Kind::Update,
            Phase::FileOwners,
            path.to_string(),
            format!("re-own the files under {path}: {}", ids.join(", ")),
            Op::ReownFiles {
                path: want.path.clone(),
                from_uid,
                to_uid: want.uid,
                from_gid,
                to_gid: want.gid,
            },
        )
        .with_details(vec![
            format!(
                "- files, folders and links below it with {}",
                old.join(", ")
            ),
            format!("+ {}", new.join(", ")),
            "  other owners' files left as they are; links re-owned themselves, never followed"
                .to_string(),
        ]),
    )
}

/// The same walk once the runtimes have reloaded (phase `AfterReloads`): until then their
/// PHP ran as the old uid, and what it made after the first walk has the old ids. Pushed
/// before the folder's `SetOwnerMode` of the same phase (a stable sort keeps the order).
fn walk_again(walk: &Change) -> Change {
    let mut again = walk.clone();
    again.phase = Phase::AfterReloads;
    again.summary = format!(
        "{} (again, once the runtimes have reloaded: files their PHP made meanwhile)",
        walk.summary
    );
    again
}

fn create_dir(want: &DesiredPath) -> Change {
    Change::new(
        System::Files,
        Kind::Create,
        Phase::Folders,
        want.path.display().to_string(),
        format!(
            "create {} ({}:{} {:04o})",
            want.path.display(),
            want.uid,
            want.gid,
            want.mode
        ),
        Op::CreateDir {
            path: want.path.clone(),
            uid: want.uid,
            gid: want.gid,
            mode: want.mode,
        },
    )
}

fn write_file(want: &DesiredPath) -> Change {
    Change::new(
        System::Files,
        Kind::Create,
        if want.after_reloads {
            Phase::AfterReloads
        } else {
            Phase::Folders
        },
        want.path.display().to_string(),
        format!("write {}", want.path.display()),
        Op::WriteFile {
            path: want.path.clone(),
            uid: want.uid,
            gid: want.gid,
            mode: want.mode,
            contents: want.contents.clone().unwrap_or_default(),
        },
    )
    .with_details(
        want.contents
            .iter()
            .flat_map(|c| c.lines().map(|l| format!("+ {l}")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{FileMeta, Observed};
    use crate::plan;
    use crate::tests::{applied_files, demo, Names};

    #[test]
    fn empty_volume_gets_the_whole_layout_parents_first() {
        let inv = demo();
        let p = plan(&inv, &Observed::default(), Options::default());
        let files: Vec<_> = p
            .changes
            .iter()
            .filter(|c| c.system == System::Files)
            .collect();
        assert!(files
            .iter()
            .take(2)
            .any(|c| c.subject == "/var/lib/pic2-dev/data"));
        assert!(files.iter().all(|c| c.kind == Kind::Create));
        let pos = |s: &str| files.iter().position(|c| c.subject == s).unwrap();
        assert!(
            pos("/var/lib/pic2-dev/data/home/velobs")
                < pos("/var/lib/pic2-dev/data/home/velobs/sites/velobs.test/htdocs")
        );
    }

    #[test]
    fn applied_volume_needs_nothing() {
        let inv = demo();
        let o = Observed {
            files: applied_files(&inv),
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        let p = plan(&inv, &o, Options::default());
        assert!(
            p.changes.iter().all(|c| c.system != System::Files),
            "{:#?}",
            p.changes
        );
    }

    #[test]
    fn symlinks_are_conflicts_never_followed() {
        let inv = demo();
        let mut o = Observed {
            files: applied_files(&inv),
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        let htdocs = inv.document_root(&"velobs".parse_name(), &"velobs.test".parse_domain());
        o.files.paths.insert(
            htdocs.clone(),
            FileMeta {
                kind: FileKind::Symlink,
                uid: 10001,
                gid: 10001,
                mode: 0o777,
                contents: None,
                target: None,
            },
        );
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].subject, htdocs.display().to_string());
        assert!(p.changes.iter().all(|c| c.system != System::Files));
    }

    #[test]
    fn a_foreign_home_is_left_alone_entirely() {
        let inv = demo();
        let mut o = Observed {
            files: applied_files(&inv),
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        let home = inv.home_dir(&"amap".parse_name());
        o.files.paths.remove(&home.join(HOME_MARKER));
        o.files
            .listings
            .insert(home.clone(), vec!["important.txt".into()]);
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: true,
            },
        );
        assert_eq!(p.conflicts.len(), 1, "{:#?}", p.conflicts);
        assert!(
            p.changes
                .iter()
                .all(|c| !c.subject.starts_with(&home.display().to_string())),
            "{:#?}",
            p.changes
        );
        // but an empty one (an interrupted apply) is taken over
        o.files.listings.insert(home.clone(), vec![]);
        let p = plan(&inv, &o, Options::default());
        assert!(p.conflicts.is_empty());
        // and so is one holding only the temporary file of a marker being written (found by
        // the interrupted-apply end-to-end test)
        o.files.listings.insert(
            home.clone(),
            vec![format!(".{HOME_MARKER}{}", crate::TEMP_SUFFIX)],
        );
        let p = plan(&inv, &o, Options::default());
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn removed_sites_and_homes_need_both_flags() {
        let inv = demo();
        let mut o = Observed {
            files: applied_files(&inv),
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        let sites = inv.sites_dir(&"velobs".parse_name());
        o.files
            .listings
            .get_mut(&sites)
            .unwrap()
            .push("old.velobs.test".into());
        let old_home = inv.homes_dir().join("gone");
        o.files
            .listings
            .get_mut(&inv.homes_dir())
            .unwrap()
            .push("gone".into());
        o.files.paths.insert(
            old_home.join(HOME_MARKER),
            FileMeta {
                kind: FileKind::File,
                uid: 0,
                gid: 0,
                mode: 0o644,
                contents: Some("platform=demo\n".into()),
                target: None,
            },
        );
        for opts in [
            Options::default(),
            Options {
                prune: true,
                drop_data: false,
            },
        ] {
            let p = plan(&inv, &o, opts);
            assert_eq!(p.held.len(), 2);
            assert!(p.changes.iter().all(|c| c.kind != Kind::Delete));
        }
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: true,
            },
        );
        let deletes: Vec<_> = p
            .changes
            .iter()
            .filter(|c| c.kind == Kind::Delete)
            .map(|c| c.subject.clone())
            .collect();
        assert_eq!(deletes.len(), 2);

        // the kept home's data still has its uid, which the inventory now gives velobs
        let velobs_uid = inv.accounts.get("velobs").unwrap().uid.value;
        let private = FileMeta {
            kind: FileKind::Dir,
            uid: velobs_uid,
            gid: velobs_uid,
            mode: 0o700,
            contents: None,
            target: None,
        };
        o.files.paths.insert(old_home.join("private"), private);
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.conflicts.len(), 1, "{:#?}", p.conflicts);
        assert!(
            p.conflicts[0]
                .message
                .contains(&format!("uid {velobs_uid} still owns"))
                && p.conflicts[0].message.contains("`velobs`"),
            "{}",
            p.conflicts[0].message
        );
    }

    /// A walk would give the files another account's old uid while the runtimes still run
    /// the old ids (a swap, here, which the directory's entries may no longer show: an apply
    /// stopped after the LDAP changes): a conflict, said once per account, and no walk.
    #[test]
    fn files_of_a_uid_another_account_takes_are_a_conflict_not_a_walk() {
        let swapped = pic2_inventory::load(
            "demo.toml",
            include_str!("../../../examples/demo.toml")
                .replace("uid = 10001", "uid = VELOBS")
                .replace("uid = 10002", "uid = 10001")
                .replace("VELOBS", "10002"),
        )
        .unwrap();
        let o = Observed {
            files: applied_files(&demo()),
            containers: crate::tests::fresh_engine(&swapped),
            ..Default::default()
        };
        let p = plan(&swapped, &o, Options::default());
        let files: Vec<&crate::Conflict> = p
            .conflicts
            .iter()
            .filter(|c| c.system == System::Files)
            .collect();
        assert_eq!(files.len(), 2, "{files:#?}");
        let velobs = inv_home(&swapped, "velobs");
        let c = files
            .iter()
            .find(|c| c.subject.starts_with(&velobs))
            .unwrap();
        assert!(
            c.message.starts_with(
                "the files here still have uid 10001, which the inventory gives `arto`: re-owning them to 10002"
            ),
            "{}",
            c.message
        );
        assert!(c.hint.starts_with(
            "if `arto` takes the uid from this account, give it up in one apply and take it in a later one, once the runtimes have reloaded"
        ));
        // not a swap only: a folder given another account's uid by hand is the same to see
        assert!(
            c.hint.contains("if the folder had uid 10001 before (set by hand), give it this account's uid 10002 back"),
            "{}",
            c.hint
        );
        assert!(p
            .changes
            .iter()
            .all(|c| !matches!(c.op, Op::ReownFiles { .. })));
    }

    /// The SSH group given the gid an account's folders still have (an apply stopped after
    /// the directory's changes, its entries no longer show the old gid): a conflict, not a
    /// walk taking the group's files for the account's.
    #[test]
    fn files_of_a_gid_the_ssh_group_takes_are_a_conflict_not_a_walk() {
        let inv = pic2_inventory::load(
            "demo.toml",
            include_str!("../../../examples/demo.toml").replace(
                "uid_range = [10000, 19999]",
                "uid_range = [10000, 19999]\nssh_group_gid = 9990",
            ),
        )
        .unwrap();
        assert_eq!(inv.directory.ssh_group_gid.value, 9990);
        let mut o = Observed {
            files: applied_files(&inv),
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        let velobs = inv.accounts.get("velobs").unwrap().uid.value;
        let home = inv.home_dir(&"velobs".parse_name());
        for (path, meta) in o.files.paths.iter_mut() {
            if path.starts_with(&home) && meta.gid == velobs {
                meta.gid = 9990;
            }
        }
        let p = plan(&inv, &o, Options::default());
        let files: Vec<&crate::Conflict> = p
            .conflicts
            .iter()
            .filter(|c| c.system == System::Files)
            .collect();
        assert_eq!(files.len(), 1, "{files:#?}");
        assert!(
            files[0].message.starts_with(&format!(
                "the files here still have gid 9990, which the inventory gives the SSH group `{}`: re-owning them to {velobs}",
                inv.ssh_group()
            )),
            "{}",
            files[0].message
        );
        assert!(p
            .changes
            .iter()
            .all(|c| !matches!(c.op, Op::ReownFiles { .. })));
    }

    fn inv_home(inv: &ValidInventory, name: &str) -> String {
        inv.home_dir(&name.parse_name()).display().to_string()
    }

    /// The inventory gives velobs a new uid: each folder holding its files is walked, before
    /// the folders themselves are set; once applied, or if never needed, nothing is planned.
    #[test]
    fn a_changed_uid_reowns_the_files_in_each_data_folder_until_the_folder_is_set() {
        let inv = demo();
        let new = inv.accounts.get("velobs").unwrap().uid.value;
        let old = new + 1000;
        let home = inv.home_dir(&"velobs".parse_name());
        let applied = Observed {
            files: applied_files(&inv),
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        // what the volume holds before the apply: the layout, with the old ids
        let mut o = applied.clone();
        for (path, meta) in o.files.paths.iter_mut() {
            if path.starts_with(&home) {
                meta.uid = if meta.uid == new { old } else { meta.uid };
                meta.gid = if meta.gid == new { old } else { meta.gid };
            }
        }
        let p = plan(&inv, &o, Options::default());
        let walks: Vec<&Change> = p
            .changes
            .iter()
            .filter(|c| matches!(c.op, Op::ReownFiles { .. }) && c.phase == Phase::FileOwners)
            .collect();
        let site = inv.site_dir(&"velobs".parse_name(), &"velobs.test".parse_domain());
        let walked: BTreeSet<std::path::PathBuf> = walks
            .iter()
            .map(|c| std::path::PathBuf::from(&c.subject))
            .collect();
        for data in [
            home.join("private"),
            site.join("htdocs"),
            site.join("tmp"),
            site.join("logs"),
        ] {
            assert!(walked.contains(&data), "{data:?} not walked: {walks:#?}");
        }
        // not the folders of pic2's folders (root's, which the account cannot write in)
        assert!(!walked.contains(&home) && !walked.contains(&site));
        assert!(!walked.contains(&inv.sites_dir(&"velobs".parse_name())));
        let htdocs = site.join("htdocs");
        let walk = walks
            .iter()
            .find(|c| c.subject == htdocs.display().to_string())
            .unwrap();
        assert_eq!(
            walk.op,
            Op::ReownFiles {
                path: htdocs.clone(),
                from_uid: old,
                to_uid: new,
                from_gid: old,
                to_gid: new,
            }
        );
        assert_eq!(
            walk.summary,
            format!(
                "re-own the files under {}: uid {old} → {new}, gid {old} → {new}",
                htdocs.display()
            )
        );
        // logs are root's: only the group changes there
        let logs = walks
            .iter()
            .find(|c| c.subject == site.join("logs").display().to_string())
            .unwrap();
        assert!(
            matches!(logs.op, Op::ReownFiles { from_uid: 0, to_uid: 0, from_gid, to_gid, .. } if from_gid == old && to_gid == new),
            "{logs:#?}"
        );
        // each folder is walked twice: before the runtimes reload, and again once they have
        // (their PHP ran as the old uid until then, and what it made meanwhile has the old
        // ids); only then is the folder set: its old owner is what makes the next plan walk
        // again after an apply stopped anywhere before
        let of_htdocs: Vec<(Phase, bool)> = p
            .changes
            .iter()
            .filter(|c| c.subject == htdocs.display().to_string())
            .map(|c| (c.phase, matches!(c.op, Op::ReownFiles { .. })))
            .collect();
        assert_eq!(
            of_htdocs,
            vec![
                (Phase::FileOwners, true),
                (Phase::AfterReloads, true),
                (Phase::AfterReloads, false),
            ]
        );
        let again = p
            .changes
            .iter()
            .find(|c| c.subject == htdocs.display().to_string() && c.phase == Phase::AfterReloads)
            .unwrap();
        assert_eq!(again.op, walk.op);
        assert!(again
            .summary
            .contains("again, once the runtimes have reloaded"));
        // the other accounts: nothing to walk
        assert!(walks
            .iter()
            .all(|c| c.subject.starts_with(&home.display().to_string())));

        // once applied (the folders have the new ids), nothing
        let p = plan(&inv, &applied, Options::default());
        assert!(
            p.changes
                .iter()
                .all(|c| !matches!(c.op, Op::ReownFiles { .. })),
            "{:#?}",
            p.changes
        );
        // an apply stopped after the walks of htdocs (the runtimes reloaded, even) but before
        // its folder was set: walked again, twice
        let mut stopped = applied.clone();
        stopped.files.paths.get_mut(&htdocs).unwrap().uid = old;
        let p = plan(&inv, &stopped, Options::default());
        assert_eq!(
            p.changes
                .iter()
                .filter(|c| matches!(c.op, Op::ReownFiles { .. }))
                .map(|c| (c.subject.clone(), c.phase))
                .collect::<Vec<_>>(),
            vec![
                (htdocs.display().to_string(), Phase::FileOwners),
                (htdocs.display().to_string(), Phase::AfterReloads)
            ]
        );
        // a folder whose mode alone changed is set with the others, walked by none
        let mut moded = applied.clone();
        moded.files.paths.get_mut(&htdocs).unwrap().mode = 0o755;
        let p = plan(&inv, &moded, Options::default());
        let files: Vec<(Phase, bool)> = p
            .changes
            .iter()
            .filter(|c| c.system == System::Files)
            .map(|c| (c.phase, matches!(c.op, Op::SetOwnerMode { .. })))
            .collect();
        assert_eq!(files, vec![(Phase::Folders, true)]);
        // a folder root owns (made, not handed over yet; or by an admin): root's files in it
        // are not the account's
        stopped.files.paths.get_mut(&htdocs).unwrap().uid = 0;
        stopped.files.paths.get_mut(&htdocs).unwrap().gid = 0;
        let p = plan(&inv, &stopped, Options::default());
        assert!(p
            .changes
            .iter()
            .all(|c| !matches!(c.op, Op::ReownFiles { .. })));
    }
}
