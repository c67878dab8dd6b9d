//! Accounts' uids fall inside the directory's `uid_range` (its first id excepted: it is the web
//! runtimes' idle user, which mpm-itk needs inside the range), and the SSH group's gid outside.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let range = &inv.directory.uid_range;
    let (lo, hi) = range.value;
    for (name, account) in &inv.accounts {
        let uid = account.uid.value;
        if !(lo + 1..=hi).contains(&uid) {
            out.push(
                Diagnostic::new(
                    Code::UidOutOfRange,
                    account.uid.span,
                    format!("uid {uid} of `{name}` is outside uid_range [{lo}, {hi}]"),
                )
                .label("out of range")
                .related(range.span, "the range is set here")
                .hint(format!(
                    "choose a uid between {lo} and {hi}, or widen uid_range"
                )),
            );
        }
    }
    let gid = &inv.directory.ssh_group_gid;
    if (lo..=hi).contains(&gid.value) || gid.value < 1000 {
        out.push(
            Diagnostic::new(Code::UidOutOfRange, gid.span, format!("the SSH group's gid {} must be at least 1000 and outside uid_range [{lo}, {hi}]", gid.value))
                .label("SSH group gid")
                .hint("set `ssh_group_gid` in [directory] to a free id outside the accounts' range, for example the one just below it"),
        );
    }
}
