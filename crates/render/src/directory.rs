//! The LDAP entries an inventory calls for: the two containers, one posixGroup per account,
//! the SSH group, and the accounts themselves.
//!
//! Attribute names are written in their schema's case; the planner compares them without case.
//! `userPassword` is never part of the desired state: it belongs to the account's owner.

use pic2_inventory::layout::{NO_SHELL, SSH_SHELL};
use pic2_inventory::{Access, ValidInventory};

/// What an entry is, which decides the order of changes and how pic2 treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// The base DN or an OU under it: created when missing, never changed or deleted.
    Container,
    Group,
    Account,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub kind: EntryKind,
    /// Attribute name and values, in a stable order.
    pub attrs: Vec<(&'static str, Vec<String>)>,
}

/// The auxiliary class and attribute that mark what pic2 manages (schema/pic2.ldif).
pub const MARK_CLASS: &str = "pic2Managed";
pub const MARK_ATTR: &str = "pic2Platform";
/// An account's SSH keys: the inventory's when pic2 creates it; then the member's too,
/// through `pic2 passwd`.
pub const SSH_KEYS_ATTR: &str = "sshPublicKey";
/// The keys the inventory listed at the last apply (schema/pic2.ldif): what the inventory
/// changed since is told apart from what the member changed.
pub const LISTED_KEYS_ATTR: &str = "pic2SshKeys";

/// The attributes pic2 reads and writes on the entries it manages; others (a password, a
/// shadow date) are left as they are. [`SSH_KEYS_ATTR`] is shared with the member: the plan
/// merges it rather than sets it.
pub const MANAGED_ATTRS: &[&str] = &[
    "objectClass",
    "cn",
    "sn",
    "displayName",
    "mail",
    "uid",
    "uidNumber",
    "gidNumber",
    "homeDirectory",
    "loginShell",
    SSH_KEYS_ATTR,
    LISTED_KEYS_ATTR,
    "memberUid",
    "description",
    MARK_ATTR,
];

pub fn desired(inv: &ValidInventory) -> Vec<Entry> {
    let platform = inv.platform.name.to_string();
    let mark = |mut attrs: Vec<(&'static str, Vec<String>)>| {
        attrs.push((MARK_ATTR, vec![platform.clone()]));
        attrs
    };
    let mut out = Vec::new();
    if let Some(base) = base_entry(inv.directory.base_dn.value.as_str()) {
        out.push(base);
    }
    for (ou, dn) in [
        ("people", inv.directory.people_dn()),
        ("groups", inv.directory.groups_dn()),
    ] {
        out.push(Entry {
            dn,
            kind: EntryKind::Container,
            attrs: vec![
                ("objectClass", vec!["organizationalUnit".into()]),
                ("ou", vec![ou.into()]),
            ],
        });
    }
    let ssh_members: Vec<String> = inv
        .accounts
        .iter()
        .filter(|(_, a)| a.access == Access::Ssh)
        .map(|(n, _)| n.to_string())
        .collect();
    out.push(Entry {
        dn: inv.group_dn(&inv.ssh_group()),
        kind: EntryKind::Group,
        attrs: mark(vec![
            ("objectClass", vec!["posixGroup".into(), MARK_CLASS.into()]),
            ("cn", vec![inv.ssh_group()]),
            (
                "gidNumber",
                vec![inv.directory.ssh_group_gid.value.to_string()],
            ),
            (
                "description",
                vec!["Accounts with a shell over SSH (others are chrooted to SFTP)".into()],
            ),
            ("memberUid", ssh_members),
        ]),
    });
    for (name, account) in &inv.accounts {
        let id = account.uid.value.to_string();
        out.push(Entry {
            dn: inv.group_dn(name.as_str()),
            kind: EntryKind::Group,
            attrs: mark(vec![
                ("objectClass", vec!["posixGroup".into(), MARK_CLASS.into()]),
                ("cn", vec![name.to_string()]),
                ("gidNumber", vec![id.clone()]),
                ("description", vec![format!("Private group of {name}")]),
            ]),
        });
    }
    for (name, account) in &inv.accounts {
        let id = account.uid.value.to_string();
        let keys: Vec<String> = account.ssh_keys.iter().map(|k| k.to_line()).collect();
        let shell = match account.access {
            Access::Ssh => SSH_SHELL,
            Access::Sftp => NO_SHELL,
        };
        out.push(Entry {
            dn: inv.account_dn(name),
            kind: EntryKind::Account,
            attrs: mark(vec![
                (
                    "objectClass",
                    [
                        "inetOrgPerson",
                        "posixAccount",
                        "shadowAccount",
                        "ldapPublicKey",
                        MARK_CLASS,
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                ("uid", vec![name.to_string()]),
                ("cn", vec![account.full_name.clone()]),
                ("sn", vec![account.full_name.clone()]),
                ("displayName", vec![account.full_name.clone()]),
                ("mail", vec![account.email.to_string()]),
                ("uidNumber", vec![id.clone()]),
                ("gidNumber", vec![id]),
                (
                    "homeDirectory",
                    vec![inv.home_dir(name).display().to_string()],
                ),
                ("loginShell", vec![shell.into()]),
                (SSH_KEYS_ATTR, keys.clone()),
                (LISTED_KEYS_ATTR, keys),
            ]),
        });
    }
    out
}

/// The base entry itself, when it is one pic2 can create (`ou=…` or `dc=…`); it is only
/// created if missing, so a suffix made by the server's admin is never touched.
fn base_entry(base_dn: &str) -> Option<Entry> {
    let first = base_dn.split(',').next()?;
    let (attr, value) = first.split_once('=')?;
    let (class, attr) = match attr.trim().to_ascii_lowercase().as_str() {
        "ou" => ("organizationalUnit", "ou"),
        "dc" => ("domain", "dc"),
        _ => return None,
    };
    Some(Entry {
        dn: base_dn.to_string(),
        kind: EntryKind::Container,
        attrs: vec![
            ("objectClass", vec![class.into()]),
            (attr, vec![value.trim().to_string()]),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_directory_as_ldif() {
        let inv = crate::tests::demo();
        insta::assert_snapshot!(crate::ldif::render(&inv, &desired(&inv)));
    }

    #[test]
    fn ssh_group_lists_ssh_accounts_only() {
        let inv = crate::tests::demo();
        let group = desired(&inv)
            .into_iter()
            .find(|e| e.dn.starts_with("cn=demo-ssh,"))
            .unwrap();
        let members = &group
            .attrs
            .iter()
            .find(|(a, _)| *a == "memberUid")
            .unwrap()
            .1;
        assert_eq!(members, &vec!["arto".to_string(), "velobs".to_string()]);
    }
}
