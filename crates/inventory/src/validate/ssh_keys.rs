//! An account lists each SSH key once (comments aside).

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;
use std::collections::BTreeMap;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    for (name, account) in &inv.accounts {
        let mut seen = BTreeMap::new();
        for key in &account.ssh_keys {
            if let Some(first) = seen.insert(key.key.as_str(), key.span) {
                out.push(
                    Diagnostic::new(
                        Code::DuplicateValue,
                        key.span,
                        format!("this SSH key is listed twice for `{name}`"),
                    )
                    .label("same key")
                    .related(first, "first here")
                    .hint(
                        "remove one of the two lines (the comment does not make a key different)",
                    ),
                );
            }
        }
    }
}
