//! A `redirect` between `x` and `www.x` needs both names on the site.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::{Inventory, Redirect};

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    for (domain, site) in &inv.sites {
        let Some(redirect) = &site.redirect else {
            continue;
        };
        let names: Vec<&str> = std::iter::once(domain.as_str())
            .chain(site.aliases.iter().map(|a| a.as_str()))
            .collect();
        let apex = domain
            .as_str()
            .strip_prefix("www.")
            .unwrap_or(domain.as_str());
        let www = format!("www.{apex}");
        if !(names.contains(&apex) && names.contains(&www.as_str())) {
            let (from, to) = match redirect.value {
                Redirect::Www => (apex, www.as_str()),
                Redirect::Apex => (www.as_str(), apex),
            };
            out.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    redirect.span,
                    format!("`{domain}` redirects {from} to {to}, but does not answer on both"),
                )
                .label("needs both names")
                .hint(format!(
                    "add \"{}\" to the site's aliases",
                    if names.contains(&apex) {
                        www.as_str()
                    } else {
                        apex
                    }
                )),
            );
        }
    }
}
