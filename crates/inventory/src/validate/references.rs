//! Every name an object refers to is declared: site owners, runtimes and databases, database
//! owners.

use crate::diagnostic::{nearest, Code, Diagnostic};
use crate::model::Inventory;
use crate::source::Spanned;
use std::collections::BTreeMap;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    for (domain, site) in &inv.sites {
        require(
            &site.owner,
            &inv.accounts,
            Code::UnknownAccount,
            "account",
            "accounts",
            out,
        );
        require(
            &site.runtime,
            &inv.runtimes,
            Code::UnknownRuntime,
            "runtime",
            "runtimes",
            out,
        );
        for db in &site.databases {
            if !inv.databases.contains_key(db.as_str()) {
                let d = missing(db, inv.databases.keys().map(|k| k.as_str()), Code::UnknownDatabase, "database", "databases")
                    .hint(format!("declare it with `[databases.{}]` and `owner = \"{}\"`, or remove it from the site `{domain}`", db.value, site.owner.value));
                out.push(d);
            }
        }
    }
    for db in inv.databases.values() {
        require(
            &db.owner,
            &inv.accounts,
            Code::UnknownAccount,
            "account",
            "accounts",
            out,
        );
    }
}

fn require<K: std::borrow::Borrow<str> + Ord, V, T: AsRef<str>>(
    name: &Spanned<T>,
    declared: &BTreeMap<K, V>,
    code: Code,
    what: &str,
    section: &str,
    out: &mut Vec<Diagnostic>,
) {
    if !declared.contains_key(name.value.as_ref()) {
        out.push(missing(
            name,
            declared.keys().map(|k| k.borrow()),
            code,
            what,
            section,
        ));
    }
}

fn missing<'a, T: AsRef<str>>(
    name: &Spanned<T>,
    declared: impl Iterator<Item = &'a str> + Clone,
    code: Code,
    what: &str,
    section: &str,
) -> Diagnostic {
    let wrong = name.value.as_ref();
    let d = Diagnostic::new(
        code,
        name.span,
        format!("no {what} named `{wrong}` is declared"),
    )
    .label(format!("unknown {what}"));
    match nearest(wrong, declared.clone()) {
        Some(near) => d.hint(format!("did you mean `{near}`?")),
        None => d.hint(format!("declare it as `[{section}.{wrong}]`")),
    }
}
