//! No two accounts share a uid, and none takes the SSH group's gid (each account's own group
//! has gid = uid).

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;
use std::collections::BTreeMap;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let mut first = BTreeMap::new();
    for (name, account) in &inv.accounts {
        let uid = account.uid.value;
        if let Some((other, span)) = first.insert(uid, (name, account.uid.span)) {
            out.push(
                Diagnostic::new(
                    Code::DuplicateUid,
                    account.uid.span,
                    format!("uid {uid} is already the uid of `{other}`"),
                )
                .label("taken twice")
                .related(span, format!("`{other}` has it"))
                .hint("give each account its own uid within uid_range"),
            );
            first.insert(uid, (other, span));
        }
        if uid == inv.directory.ssh_group_gid.value {
            out.push(
                Diagnostic::new(Code::DuplicateUid, account.uid.span, format!("uid {uid} is the gid of the SSH group"))
                    .label("taken by the SSH group")
                    .related(inv.directory.ssh_group_gid.span, "the SSH group's gid comes from here")
                    .hint("every account's private group has gid = uid: choose another uid, or set `ssh_group_gid` in [directory]"),
            );
        }
    }
}
