//! A site uses only databases of its own owner, each once: database credentials are the
//! owner's, so a database of another account would hand them to a stranger.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;
use std::collections::BTreeMap;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    for (domain, site) in &inv.sites {
        let mut listed = BTreeMap::new();
        for db in &site.databases {
            if let Some(first) = listed.insert(db.as_str(), db.span) {
                out.push(
                    Diagnostic::new(
                        Code::DuplicateValue,
                        db.span,
                        format!("database `{}` is listed twice for `{domain}`", db.value),
                    )
                    .label("again")
                    .related(first, "first here")
                    .hint("list each database once"),
                );
            }
            let Some(database) = inv.databases.get(db.as_str()) else {
                continue;
            };
            if database.owner.value != site.owner.value {
                out.push(
                    Diagnostic::new(
                        Code::DatabaseOwnerMismatch,
                        db.span,
                        format!("the site `{domain}` (owner `{}`) uses database `{}` owned by `{}`", site.owner.value, db.value, database.owner.value),
                    )
                    .label("another account's database")
                    .related(database.owner.span, "owner declared here")
                    .hint("a site may only use its owner's databases: change the database's owner or the site's"),
                );
            }
        }
    }
}
