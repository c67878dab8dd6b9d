//! Each domain is served once: site names, aliases and the platform services' domains together.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;
use crate::source::Span;
use std::collections::BTreeMap;

pub(crate) fn check<'a>(inv: &'a Inventory, out: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<&str, (Span, String)> = BTreeMap::new();
    let mut claim = |domain: &'a str, span: Span, by: String, out: &mut Vec<Diagnostic>| {
        if let Some((first_span, first_by)) = seen.get(domain) {
            out.push(
                Diagnostic::new(
                    Code::DuplicateDomain,
                    span,
                    format!("`{domain}` is already served by {first_by}"),
                )
                .label(format!("served again by {by}"))
                .related(*first_span, "first here")
                .hint("a name can point at one site only: remove one of the two"),
            );
        } else {
            seen.insert(domain, (span, by));
        }
    };
    for (domain, site) in &inv.sites {
        claim(
            domain.as_str(),
            site.span,
            format!("the site `{domain}`"),
            out,
        );
    }
    for (domain, site) in &inv.sites {
        for alias in &site.aliases {
            claim(
                alias.as_str(),
                alias.span,
                format!("an alias of `{domain}`"),
                out,
            );
        }
    }
    for (service, domain) in inv.services.domains() {
        claim(
            domain.as_str(),
            domain.span,
            format!("the service `{service}`"),
            out,
        );
    }
}
