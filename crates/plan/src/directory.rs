//! Directory diff: desired entries against the observed subtree.
//!
//! An entry is pic2's when it carries the `pic2Managed` class with this platform's name.
//! Containers (the base DN, `ou=people`, `ou=groups`) are created when missing and otherwise
//! left alone. Only the attributes in `MANAGED_ATTRS` are compared, so a password or a shadow
//! date set by the owner is never touched.

use crate::change::{Change, Kind, Phase, Plan, System};
use crate::observed::{ObservedDirectory, ObservedEntry};
use crate::Options;
use pic2_inventory::ValidInventory;
use pic2_render::directory::{
    desired, Entry, EntryKind, LISTED_KEYS_ATTR, MANAGED_ATTRS, MARK_ATTR, MARK_CLASS,
    SSH_KEYS_ATTR,
};
use std::collections::{BTreeSet, HashMap, HashSet};

/// A DN compared without case and without spaces around separators.
pub(crate) fn normalize_dn(dn: &str) -> String {
    // The DNs pic2 writes and the server returns are already in this form: no allocation but
    // the copy (a no-op plan normalises tens of thousands of them).
    if dn
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_whitespace() && !b.is_ascii_uppercase())
    {
        return dn.to_owned();
    }
    dn.split(',')
        .map(|rdn| {
            rdn.trim()
                .replace(" =", "=")
                .replace("= ", "=")
                .to_lowercase()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether an observed entry is marked as managed by `platform`; `Err` with the other
/// platform's name when it belongs to another.
fn ownership(entry: &ObservedEntry, platform: &str) -> Result<bool, String> {
    if !entry.has_class(MARK_CLASS) {
        return Ok(false);
    }
    match entry.values(MARK_ATTR).first() {
        Some(p) if p.eq_ignore_ascii_case(platform) => Ok(true),
        Some(other) => Err(other.clone()),
        None => Ok(false),
    }
}

pub(crate) fn diff(
    inv: &ValidInventory,
    observed: &ObservedDirectory,
    options: Options,
    plan: &mut Plan,
) {
    let platform = inv.platform.name.as_str();
    let observed_keys: Vec<String> = observed
        .entries
        .iter()
        .map(|e| normalize_dn(&e.dn))
        .collect();
    let by_dn: HashMap<&str, &ObservedEntry> = observed_keys
        .iter()
        .map(String::as_str)
        .zip(&observed.entries)
        .collect();
    let desired = desired(inv);
    let desired_keys: Vec<String> = desired.iter().map(|e| normalize_dn(&e.dn)).collect();
    let wanted: HashSet<&str> = desired_keys.iter().map(String::as_str).collect();

    for (entry, key) in desired.iter().zip(&desired_keys) {
        match (by_dn.get(key.as_str()), entry.kind) {
            (Some(_), EntryKind::Container) => {}
            (None, EntryKind::Container) if *key == normalize_dn(inv.directory.base_dn.value.as_str()) && observed.base_exists => {}
            (None, _) => {
                if let Some(clash) = clash(entry, &observed.entries, platform, &wanted, None) {
                    plan.conflict(System::Directory, &entry.dn, clash.0, clash.1);
                } else {
                    plan.push(add(entry));
                }
            }
            (Some(actual), _) => match ownership(actual, platform) {
                Ok(true) => {
                    if let Some(clash) = clash(entry, &observed.entries, platform, &wanted, Some(actual)) {
                        plan.conflict(System::Directory, &entry.dn, clash.0, clash.1);
                    } else if let Some((class, want)) = other_structural_class(entry, actual) {
                        plan.conflict(
                            System::Directory,
                            &entry.dn,
                            format!("the entry's structural class is {class}, and pic2 needs {want}, which LDAP cannot change in place (a migrationtools-style account)"),
                            "re-create it: save it (ldapsearch), delete it (ldapdelete), apply, then put back what pic2 does not manage (ldapmodify: its userPassword hash, shadow* dates, the member's own sshPublicKey values)",
                        );
                    } else if let Some(change) = modify(entry, actual) {
                        plan.push(change);
                    }
                }
                Ok(false) => plan.conflict(
                    System::Directory,
                    &entry.dn,
                    "the entry exists and pic2 does not manage it (it lacks the pic2Managed class)",
                    "rename the account in the inventory, or remove or rename the existing entry; to let pic2 take it over, add objectClass pic2Managed and pic2Platform to it",
                ),
                Err(other) => plan.conflict(
                    System::Directory,
                    &entry.dn,
                    format!("the entry belongs to the pic2 platform `{other}`"),
                    "two platforms cannot manage the same account: rename it in one of the inventories",
                ),
            },
        }
    }

    for (actual, key) in observed.entries.iter().zip(&observed_keys) {
        if wanted.contains(key.as_str()) || ownership(actual, platform) != Ok(true) {
            continue;
        }
        if options.prune {
            plan.push(Change::new(
                System::Directory,
                Kind::Delete,
                Phase::DirectoryDeletes,
                actual.dn.clone(),
                format!("delete {}", actual.dn),
                crate::Op::LdapDelete {
                    dn: actual.dn.clone(),
                },
            ));
        } else {
            plan.hold(System::Directory, &actual.dn, "--prune");
        }
    }
}

fn phase_of(kind: EntryKind) -> Phase {
    match kind {
        EntryKind::Container => Phase::DirectoryContainers,
        EntryKind::Group => Phase::DirectoryGroups,
        EntryKind::Account => Phase::DirectoryAccounts,
    }
}

fn nonempty(attrs: &[(&'static str, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    attrs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(a, v)| (a.to_string(), v.clone()))
        .collect()
}

fn add(entry: &Entry) -> Change {
    let attrs = nonempty(&entry.attrs);
    let details = attrs
        .iter()
        .flat_map(|(a, vs)| vs.iter().map(move |v| format!("+ {a}: {v}")))
        .collect();
    Change::new(
        System::Directory,
        Kind::Create,
        phase_of(entry.kind),
        entry.dn.clone(),
        format!("add {}", entry.dn),
        crate::Op::LdapAdd {
            dn: entry.dn.clone(),
            attrs,
        },
    )
    .with_details(details)
}

/// Values compared as sets; object classes without case, as the server does.
fn same_values(attr: &str, want: &[String], have: &[String]) -> bool {
    let fold = attr.eq_ignore_ascii_case("objectClass");
    // the usual case, values as pic2 wrote them: equal in order, no sets built
    if want.len() == have.len()
        && want.iter().zip(have).all(|(w, h)| {
            if fold {
                w.eq_ignore_ascii_case(h)
            } else {
                w == h
            }
        })
    {
        return true;
    }
    let norm = |vs: &[String]| -> BTreeSet<String> {
        if attr.eq_ignore_ascii_case("objectClass") {
            vs.iter().map(|v| v.to_ascii_lowercase()).collect()
        } else {
            vs.iter().cloned().collect()
        }
    };
    norm(want) == norm(have)
}

/// An entry whose structural object class is not the one pic2 writes, which the server
/// refuses to change (result code 69) half-way through an apply: `account` (RFC 2798's
/// predecessor, used by migrationtools) under a pic2 mark, where pic2 wants `inetOrgPerson`.
fn other_structural_class(entry: &Entry, actual: &ObservedEntry) -> Option<(String, &'static str)> {
    const STRUCTURAL: &[&str] = &["inetOrgPerson", "account", "organizationalPerson", "person"];
    if entry.kind != EntryKind::Account {
        return None;
    }
    // the server says it (operational attribute); else, from the classes, the usual ones
    if let Some(class) = actual.values("structuralObjectClass").first() {
        return (!class.eq_ignore_ascii_case("inetOrgPerson"))
            .then(|| (class.clone(), "inetOrgPerson"));
    }
    let classes = actual.values("objectClass");
    let has = |c: &str| classes.iter().any(|v| v.eq_ignore_ascii_case(c));
    if has("inetOrgPerson") {
        return None;
    }
    let class = STRUCTURAL.iter().find(|c| has(c))?;
    Some(((*class).to_string(), "inetOrgPerson"))
}

fn modify(entry: &Entry, actual: &ObservedEntry) -> Option<Change> {
    let mut replace = Vec::new();
    let mut edit = Vec::new();
    let mut details = Vec::new();
    for attr in MANAGED_ATTRS {
        let listed = entry
            .attrs
            .iter()
            .find(|(a, _)| a == attr)
            .map_or(&[][..], |(_, v)| v.as_slice());
        let merged;
        let want: &[String] = if *attr == SSH_KEYS_ATTR {
            merged = merged_ssh_keys(listed, actual);
            &merged
        } else {
            listed
        };
        let have = actual.values(attr);
        if !same_values(attr, want, have) {
            let gone: Vec<String> = have.iter().filter(|v| !want.contains(v)).cloned().collect();
            let new: Vec<String> = want.iter().filter(|v| !have.contains(v)).cloned().collect();
            details.extend(gone.iter().map(|v| format!("- {attr}: {v}")));
            details.extend(new.iter().map(|v| format!("+ {attr}: {v}")));
            if *attr == SSH_KEYS_ATTR {
                edit.push(crate::ValueEdit {
                    attr: attr.to_string(),
                    delete: gone,
                    add: new,
                });
            } else {
                replace.push((attr.to_string(), want.to_vec()));
            }
        }
    }
    if replace.is_empty() && edit.is_empty() {
        return None;
    }
    let names: Vec<&str> = replace
        .iter()
        .map(|(a, _)| a.as_str())
        .chain(edit.iter().map(|e| e.attr.as_str()))
        .collect();
    Some(
        Change::new(
            System::Directory,
            Kind::Update,
            phase_of(entry.kind),
            entry.dn.clone(),
            format!("update {} ({})", entry.dn, names.join(", ")),
            crate::Op::LdapModify {
                dn: entry.dn.clone(),
                replace,
                edit,
            },
        )
        .with_details(details),
    )
}

/// An account's SSH keys after this apply. The member adds and removes keys through `pic2
/// passwd`; the inventory's `ssh_keys` are the admins'. Setting the inventory's alone undid
/// the member's changes at every apply: a key removed for a stolen laptop came back, a
/// key added was lost. So only what the inventory changed since the last apply (recorded in
/// `pic2SshKeys`) is changed: keys it newly lists are added, keys it no longer lists are
/// removed; every other key is the member's business. Keys are compared by type and data,
/// not comment.
fn merged_ssh_keys(listed: &[String], actual: &ObservedEntry) -> Vec<String> {
    let same_key = |a: &str, b: &str| {
        a.split_whitespace()
            .take(2)
            .eq(b.split_whitespace().take(2))
    };
    let among = |keys: &[String], k: &str| keys.iter().any(|o| same_key(o, k));
    let recorded = actual.values(LISTED_KEYS_ATTR);
    let mut keys: Vec<String> = actual
        .values(SSH_KEYS_ATTR)
        .iter()
        // kept unless the inventory listed it last time and no longer does
        .filter(|k| among(listed, k) || !among(recorded, k))
        .cloned()
        .collect();
    for k in listed {
        if !among(recorded, k) && !among(&keys, k) {
            keys.push(k.clone());
        }
    }
    keys
}

/// Another entry that already uses this entry's name or number: an unmanaged one (adding
/// ours would give two accounts one uid, and NSS would pick either), or one of ours that
/// this apply moves to another number or prunes. `existing`: the entry is there already
/// (an update), and only a number it is given anew is checked.
///
/// A number one of ours gives up in this very apply (a swap of two accounts' uids, or an
/// account taking the uid another leaves) would expose files across tenants: each runtime
/// mounts the whole data volume and runs its sites as the old uids until it reloads, late
/// in the apply, while the files are re-owned to the new ones early on.
fn clash(
    entry: &Entry,
    observed: &[ObservedEntry],
    platform: &str,
    wanted: &HashSet<&str>,
    existing: Option<&ObservedEntry>,
) -> Option<(String, String)> {
    let get = |attr: &str| {
        entry
            .attrs
            .iter()
            .find(|(a, _)| *a == attr)
            .and_then(|(_, v)| v.first())
    };
    let (class, keys): (&str, [(&str, Option<&String>); 2]) = match entry.kind {
        EntryKind::Account => (
            "posixAccount",
            [("uid", get("uid")), ("uidNumber", get("uidNumber"))],
        ),
        EntryKind::Group => (
            "posixGroup",
            [("cn", get("cn")), ("gidNumber", get("gidNumber"))],
        ),
        EntryKind::Container => return None,
    };
    // an update that gives no number anew clashes with nothing: most entries at most
    // plans, which then cost no scan of the directory each (10,000 accounts: 10⁸ steps)
    let numbered_anew = |e: &ObservedEntry| {
        keys.iter().any(|(attr, value)| {
            attr.ends_with("Number") && value.is_some_and(|v| !e.values(attr).contains(v))
        })
    };
    if existing.is_some_and(|e| !numbered_anew(e)) {
        return None;
    }
    for other in observed.iter().filter(|o| o.has_class(class)) {
        // `existing` is an entry of `observed` itself
        if existing.is_some_and(|e| std::ptr::eq(e, other)) {
            continue;
        }
        for (attr, value) in keys {
            let Some(value) = value else { continue };
            let number = attr.ends_with("Number");
            if let Some(existing) = existing {
                // the name is the DN's; a number kept is no news
                if !number || existing.values(attr).iter().any(|v| v == value) {
                    continue;
                }
            }
            // uid and cn match without case in LDAP (NSS finds `Velobs` for `velobs`)
            if !other
                .values(attr)
                .iter()
                .any(|v| v.eq_ignore_ascii_case(value))
            {
                continue;
            }
            let ours = ownership(other, platform) == Ok(true);
            if ours && wanted.contains(normalize_dn(&other.dn).as_str()) {
                if !number {
                    continue; // ours and also being updated: the inventory's uniqueness rules hold
                }
                // still listed, so given another number by the inventory (it checks that no
                // two entries share one): given up in this apply
                let id = if attr == "uidNumber" { "uid" } else { "gid" };
                return Some((
                    format!("{id} {value} is still {}'s, which this apply moves to another {id}: its sites would run as {value} until their runtime reloads, late in the apply, and every runtime mounts the whole data volume, so files given {value} here would be theirs to read and write meanwhile", other.dn),
                    format!("give the {id} up in one apply, take it in a later one, once the runtimes have reloaded: give {} its new {id} alone first (or a free one, for a swap), apply, then give {value} here and apply again", other.dn),
                ));
            }
            let hint = if ours {
                // not pruned first in this apply, `--prune` or not: its sites may run as its
                // ids until their runtime goes (see above)
                format!("it is no longer in the inventory, and `--prune` removes it only in an apply that does not give its {attr} away: first take {attr} {value} out of the inventory (or give it another) and run `pic2 apply --prune`, then give {value} and apply again")
            } else {
                "pic2 does not manage that entry: choose another value in the inventory, or remove the entry".to_string()
            };
            return Some((
                format!("{attr} {value} is already used by {}", other.dn),
                hint,
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::Observed;
    use crate::tests::{demo, entry_from};
    use crate::{plan, Op};

    /// velobs's entry as observed.
    fn velobs(o: &mut Observed) -> &mut ObservedEntry {
        o.directory
            .entries
            .iter_mut()
            .find(|e| e.dn.starts_with("uid=velobs,"))
            .unwrap()
    }

    fn applied(inv: &ValidInventory) -> Observed {
        let mut o = Observed {
            containers: crate::tests::fresh_engine(inv),
            ..Default::default()
        };
        o.directory.base_exists = true;
        o.directory.entries = desired(inv).iter().map(entry_from).collect();
        o
    }

    #[test]
    fn dns_compare_without_case_or_spaces_around_separators() {
        for dn in [
            "uid=a,ou=people,dc=x",
            "UID=a, ou=People ,dc=X",
            "uid =a,ou= people,dc=x",
        ] {
            assert_eq!(normalize_dn(dn), "uid=a,ou=people,dc=x", "{dn}");
        }
        assert_eq!(normalize_dn("cn=Élise,dc=x"), "cn=élise,dc=x");
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    /// The keys of velobs after an apply, the directory as `change` leaves it and the
    /// inventory listing `listed`.
    fn keys_after(change: impl Fn(&mut ObservedEntry), listed: &[&str]) -> Vec<String> {
        let inv = demo();
        let mut o = applied(&inv);
        change(velobs(&mut o));
        let entry = desired(&inv)
            .into_iter()
            .find(|e| e.dn.starts_with("uid=velobs,"))
            .unwrap();
        let mut entry = entry;
        for (attr, values) in &mut entry.attrs {
            if *attr == SSH_KEYS_ATTR || *attr == LISTED_KEYS_ATTR {
                *values = listed.iter().map(|k| k.to_string()).collect();
            }
        }
        let actual = velobs(&mut o);
        let mut keys = merged_ssh_keys(
            &entry
                .attrs
                .iter()
                .find(|(a, _)| *a == SSH_KEYS_ATTR)
                .unwrap()
                .1,
            actual,
        );
        keys.sort();
        keys
    }

    /// The member's own changes to their keys (through pic2 passwd) survive an apply; what
    /// the admins changed in the inventory since the last apply is done.
    #[test]
    fn an_apply_keeps_the_members_keys_and_makes_the_inventorys_changes() {
        const LISTED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYEnzX1QbfTQ7m0IxEeKMKDFio0QscGW/flvv+2O5ms admin@velobs";
        const MINE: &str = "ssh-ed25519 AAAAmine laptop";
        const NEW: &str = "ssh-ed25519 AAAAnew from-the-admins";
        let set = |attr: &'static str, keys: &'static [&'static str]| {
            move |e: &mut ObservedEntry| {
                e.attrs.insert(
                    attr.to_ascii_lowercase(),
                    keys.iter().map(|k| k.to_string()).collect(),
                );
            }
        };
        // the member added a key: kept
        assert_eq!(
            keys_after(set(SSH_KEYS_ATTR, &[LISTED, MINE]), &[LISTED]),
            sorted(&[MINE, LISTED])
        );
        // the member removed the inventory's key (a stolen laptop): not put back
        assert!(keys_after(set(SSH_KEYS_ATTR, &[]), &[LISTED]).is_empty());
        // the same key under another comment is the same key
        const RENAMED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYEnzX1QbfTQ7m0IxEeKMKDFio0QscGW/flvv+2O5ms my laptop";
        assert_eq!(
            keys_after(set(SSH_KEYS_ATTR, &[RENAMED]), &[LISTED]),
            sorted(&[RENAMED])
        );
        // the admins list a new key: added, the member's kept
        assert_eq!(
            keys_after(set(SSH_KEYS_ATTR, &[LISTED, MINE]), &[LISTED, NEW]),
            sorted(&[MINE, LISTED, NEW])
        );
        // the admins no longer list theirs: removed, the member's kept
        assert_eq!(
            keys_after(set(SSH_KEYS_ATTR, &[LISTED, MINE]), &[]),
            sorted(&[MINE])
        );
        // an account from before the record: the inventory's keys added once, none removed
        assert_eq!(
            keys_after(
                |e| {
                    e.attrs.remove(&LISTED_KEYS_ATTR.to_ascii_lowercase());
                    e.attrs.insert("sshpublickey".into(), vec![MINE.into()]);
                },
                &[LISTED]
            ),
            sorted(&[MINE, LISTED])
        );
        // what is sent: the values taken out and put in, never the whole list
        let inv = demo();
        let mut o = applied(&inv);
        let listed = velobs(&mut o).values(SSH_KEYS_ATTR).to_vec();
        velobs(&mut o).attrs.insert(
            "sshpublickey".into(),
            [listed.clone(), vec![MINE.into()]].concat(),
        );
        velobs(&mut o).attrs.insert(
            "pic2sshkeys".into(),
            [listed.clone(), vec![NEW.into()]].concat(),
        );
        velobs(&mut o)
            .attrs
            .get_mut("sshpublickey")
            .unwrap()
            .push(NEW.into());
        // the inventory listed NEW last time and no longer does: it is taken out by value
        let p = plan(&inv, &o, Options::default());
        let ops: Vec<&Op> = p
            .changes
            .iter()
            .filter(|c| c.subject.starts_with("uid=velobs,"))
            .map(|c| &c.op)
            .collect();
        assert!(
            matches!(ops.as_slice(), [Op::LdapModify { replace, edit, .. }]
                if replace.iter().all(|(a, _)| a != SSH_KEYS_ATTR)
                    && edit == &[crate::ValueEdit { attr: SSH_KEYS_ATTR.into(), delete: vec![NEW.into()], add: vec![] }]),
            "{ops:#?}"
        );
        // and a directory as the inventory left it needs nothing
        let p = plan(&inv, &applied(&inv), Options::default());
        assert!(
            p.changes.iter().all(|c| c.system != System::Directory),
            "{:#?}",
            p.changes
        );
    }

    /// A marked legacy account whose structural class is `account`: the server would refuse
    /// the change to inetOrgPerson half-way through an apply, so it is a conflict now.
    #[test]
    fn a_legacy_structural_class_is_a_conflict_not_a_failed_apply() {
        let inv = demo();
        let mut o = applied(&inv);
        velobs(&mut o).attrs.insert(
            "objectclass".into(),
            [
                "account",
                "posixAccount",
                "shadowAccount",
                "ldapPublicKey",
                MARK_CLASS,
            ]
            .map(String::from)
            .to_vec(),
        );
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.conflicts.len(), 1, "{:#?}", p.conflicts);
        assert!(p.conflicts[0]
            .message
            .contains("structural class is account"));
        assert!(p
            .changes
            .iter()
            .all(|c| !c.subject.starts_with("uid=velobs,")));
        // the server's own word for it, whatever the class
        let mut o = applied(&inv);
        velobs(&mut o)
            .attrs
            .insert("structuralobjectclass".into(), vec!["device".into()]);
        let p = plan(&inv, &o, Options::default());
        assert!(
            p.conflicts[0]
                .message
                .contains("structural class is device"),
            "{:#?}",
            p.conflicts
        );
        let mut o = applied(&inv);
        velobs(&mut o)
            .attrs
            .insert("structuralobjectclass".into(), vec!["inetOrgPerson".into()]);
        assert!(plan(&inv, &o, Options::default()).conflicts.is_empty());
    }

    #[test]
    fn empty_directory_gets_everything_in_order() {
        let inv = demo();
        let mut o = Observed::default();
        o.directory.base_exists = true;
        let p = plan(&inv, &o, Options::default());
        let dir: Vec<_> = p
            .changes
            .iter()
            .filter(|c| c.system == System::Directory)
            .map(|c| c.subject.as_str())
            .collect();
        assert_eq!(dir[0], "ou=groups,dc=pic2,dc=test");
        assert_eq!(dir[1], "ou=people,dc=pic2,dc=test");
        assert!(dir[2].starts_with("cn="));
        assert!(dir.last().unwrap().starts_with("uid="));
        assert_eq!(dir.len(), 2 + 4 + 3);
    }

    #[test]
    fn applied_directory_needs_nothing_and_passwords_are_ignored() {
        let inv = demo();
        let mut o = applied(&inv);
        for e in &mut o.directory.entries {
            e.attrs
                .insert("userpassword".into(), vec!["{ARGON2}…".into()]);
        }
        let p = plan(&inv, &o, Options::default());
        assert!(
            p.changes.iter().all(|c| c.system != System::Directory),
            "{:#?}",
            p.changes
        );
    }

    #[test]
    fn changed_attributes_are_replaced_and_shown() {
        let inv = demo();
        let mut o = applied(&inv);
        let velobs = velobs(&mut o);
        velobs
            .attrs
            .insert("mail".into(), vec!["old@velobs.test".into()]);
        velobs.attrs.insert(
            "objectclass".into(),
            velobs
                .values("objectClass")
                .iter()
                .map(|c| c.to_uppercase())
                .collect(),
        );
        let p = plan(&inv, &o, Options::default());
        let changes: Vec<_> = p
            .changes
            .iter()
            .filter(|c| c.system == System::Directory)
            .collect();
        assert_eq!(changes.len(), 1, "{changes:#?}");
        let c = changes[0];
        assert_eq!(c.kind, Kind::Update);
        assert_eq!(
            c.details,
            vec!["- mail: old@velobs.test", "+ mail: admin@velobs.test"]
        );
        assert!(matches!(&c.op, Op::LdapModify { replace, .. } if replace.len() == 1));
    }

    #[test]
    fn unmanaged_entries_conflict_and_are_never_deleted() {
        let inv = demo();
        let mut o = applied(&inv);
        o.directory
            .entries
            .retain(|e| !e.dn.starts_with("uid=amap"));
        // somebody else's account with amap's uid number
        let mut stranger = ObservedEntry {
            dn: "uid=stranger,ou=people,dc=pic2,dc=test".into(),
            ..Default::default()
        };
        stranger
            .attrs
            .insert("objectclass".into(), vec!["posixAccount".into()]);
        stranger.attrs.insert("uid".into(), vec!["stranger".into()]);
        stranger
            .attrs
            .insert("uidnumber".into(), vec!["10003".into()]);
        o.directory.entries.push(stranger);
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: true,
            },
        );
        assert_eq!(p.conflicts.len(), 1);
        assert!(p.conflicts[0]
            .message
            .contains("uidNumber 10003 is already used by uid=stranger"));
        // a legacy `uid=Amap` elsewhere is amap too for LDAP and NSS
        let legacy = o.directory.entries.last_mut().unwrap();
        legacy.dn = "uid=Amap,ou=legacy,dc=pic2,dc=test".into();
        legacy.attrs.insert("uid".into(), vec!["Amap".into()]);
        legacy
            .attrs
            .insert("uidnumber".into(), vec!["99999".into()]);
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.conflicts.len(), 1, "{:#?}", p.conflicts);
        assert!(
            p.conflicts[0]
                .message
                .contains("uid amap is already used by uid=Amap"),
            "{}",
            p.conflicts[0].message
        );
        assert!(p
            .changes
            .iter()
            .all(|c| c.kind != Kind::Delete || c.system != System::Directory));
    }

    /// The demo inventory with velobs's and arto's uids as given (10001 and 10002 in it).
    fn with_uids(velobs: u32, arto: u32) -> ValidInventory {
        let text = include_str!("../../../examples/demo.toml")
            .replace("uid = 10001", "uid = VELOBS")
            .replace("uid = 10002", "uid = ARTO")
            .replace("VELOBS", &velobs.to_string())
            .replace("ARTO", &arto.to_string());
        pic2_inventory::load("demo.toml", &text).unwrap()
    }

    /// A uid (gid) one account gives up and another takes in the same apply would expose
    /// files across tenants while the runtimes still run the old ids: a conflict, on the
    /// account (and group) taking it, with the way to do it in two applies.
    #[test]
    fn a_uid_given_up_and_taken_in_one_apply_is_a_conflict() {
        let o = applied(&demo());
        let subjects = |p: &crate::Plan| {
            let mut s: Vec<String> = p.conflicts.iter().map(|c| c.subject.clone()).collect();
            s.sort();
            s
        };
        // a swap
        let p = plan(&with_uids(10002, 10001), &o, Options::default());
        assert_eq!(
            subjects(&p),
            vec![
                "cn=arto,ou=groups,dc=pic2,dc=test",
                "cn=velobs,ou=groups,dc=pic2,dc=test",
                "uid=arto,ou=people,dc=pic2,dc=test",
                "uid=velobs,ou=people,dc=pic2,dc=test",
            ],
            "{:#?}",
            p.conflicts
        );
        let conflict = |p: &crate::Plan, subject: &str| {
            let found = p.conflicts.iter().find(|c| c.subject.starts_with(subject));
            found.cloned().unwrap()
        };
        let velobs = conflict(&p, "uid=velobs");
        assert!(
            velobs.message.starts_with(
                "uid 10002 is still uid=arto,ou=people,dc=pic2,dc=test's, which this apply moves to another uid"
            ),
            "{}",
            velobs.message
        );
        assert!(
            velobs.hint.starts_with(
                "give the uid up in one apply, take it in a later one, once the runtimes have reloaded"
            ),
            "{}",
            velobs.hint
        );
        let group = conflict(&p, "cn=velobs");
        assert!(
            group.message.starts_with("gid 10002 is still cn=arto,"),
            "{}",
            group.message
        );
        // arto takes the uid velobs leaves for a free one: arto's entries only
        let p = plan(&with_uids(10004, 10001), &o, Options::default());
        assert_eq!(
            subjects(&p),
            vec![
                "cn=arto,ou=groups,dc=pic2,dc=test",
                "uid=arto,ou=people,dc=pic2,dc=test",
            ],
            "{:#?}",
            p.conflicts
        );
        // the first of the two applies: velobs to a free uid, no conflict
        let p = plan(&with_uids(10004, 10002), &o, Options::default());
        assert!(p.conflicts.is_empty(), "{:#?}", p.conflicts);
        assert!(p
            .changes
            .iter()
            .any(|c| matches!(&c.op, Op::LdapModify { dn, .. } if dn.starts_with("uid=velobs"))));
        // a new uid an unmanaged entry holds: a conflict too (it was checked for adds only)
        let mut o = o;
        let mut stranger = ObservedEntry {
            dn: "uid=stranger,ou=people,dc=pic2,dc=test".into(),
            ..Default::default()
        };
        stranger
            .attrs
            .insert("objectclass".into(), vec!["posixAccount".into()]);
        stranger
            .attrs
            .insert("uidnumber".into(), vec!["10004".into()]);
        o.directory.entries.push(stranger);
        let p = plan(&with_uids(10004, 10002), &o, Options::default());
        assert_eq!(
            subjects(&p),
            vec!["uid=velobs,ou=people,dc=pic2,dc=test"],
            "{:#?}",
            p.conflicts
        );
        assert!(p.conflicts[0]
            .message
            .contains("uidNumber 10004 is already used by uid=stranger"));
    }

    /// An account renamed (the inventory's new name keeps its uid): the old entry is ours and
    /// no longer listed, and its uid is a conflict with or without `--prune`; the hint says
    /// to prune in an apply that does not give the uid yet, not to prune alone.
    #[test]
    fn an_id_held_by_an_account_to_prune_is_given_in_a_later_apply() {
        let inv = demo();
        let o = applied(&inv);
        let renamed = pic2_inventory::load(
            "demo.toml",
            include_str!("../../../examples/demo.toml")
                .replace("[accounts.arto]", "[accounts.artoo]")
                .replace("owner = \"arto\"", "owner = \"artoo\""),
        )
        .unwrap();
        for prune in [false, true] {
            let p = plan(
                &renamed,
                &o,
                Options {
                    prune,
                    drop_data: false,
                },
            );
            let c = p
                .conflicts
                .iter()
                .find(|c| {
                    c.message
                        .starts_with("uidNumber 10002 is already used by uid=arto,")
                })
                .unwrap_or_else(|| panic!("{:#?}", p.conflicts));
            assert!(
                c.hint.starts_with("it is no longer in the inventory, and `--prune` removes it only in an apply that does not give its uidNumber away: first take uidNumber 10002 out of the inventory (or give it another) and run `pic2 apply --prune`, then give 10002 and apply again"),
                "{}",
                c.hint
            );
        }
    }

    #[test]
    fn removed_accounts_are_held_without_prune() {
        let inv = demo();
        let mut o = applied(&inv);
        let mut gone = o
            .directory
            .entries
            .iter()
            .find(|e| e.dn.starts_with("uid=amap"))
            .unwrap()
            .clone();
        gone.dn = "uid=gone,ou=people,dc=pic2,dc=test".into();
        o.directory.entries.push(gone);
        let p = plan(&inv, &o, Options::default());
        assert!(p.changes.iter().all(|c| c.system != System::Directory));
        assert_eq!(p.held.len(), 1);
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: false,
            },
        );
        let del: Vec<_> = p
            .changes
            .iter()
            .filter(|c| c.kind == Kind::Delete)
            .collect();
        assert_eq!(del.len(), 1);
        assert_eq!(del[0].phase, Phase::DirectoryDeletes);
    }

    #[test]
    fn other_platforms_entries_conflict() {
        let inv = demo();
        let mut o = applied(&inv);
        let velobs = o
            .directory
            .entries
            .iter_mut()
            .find(|e| e.dn.starts_with("uid=velobs"))
            .unwrap();
        velobs
            .attrs
            .insert("pic2platform".into(), vec!["other".into()]);
        let p = plan(&inv, &o, Options::default());
        assert!(p.conflicts[0].message.contains("`other`"));
    }
}
