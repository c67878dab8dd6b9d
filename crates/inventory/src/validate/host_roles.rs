//! The hosts cover each role the platform needs: one database host, one directory host, at
//! least one web host; and a web host has the public addresses the testers' hosts file needs.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::{Inventory, Role};
use crate::source::Span;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let section_span = inv
        .hosts
        .values()
        .map(|h| h.span)
        .min()
        .unwrap_or(Span::default());
    for role in [Role::Database, Role::Directory, Role::Web] {
        let holders: Vec<_> = inv.hosts.iter().filter(|(_, h)| h.has_role(role)).collect();
        match holders.as_slice() {
            [] => out.push(
                Diagnostic::new(
                    Code::HostRoles,
                    section_span,
                    format!("no host has the role `{}`", role.as_str()),
                )
                .label("among these hosts")
                .hint(format!(
                    "add \"{}\" to the `roles` of one host",
                    role.as_str()
                )),
            ),
            [_] => {}
            [(first, _), rest @ ..] if role != Role::Web => {
                for (name, host) in rest {
                    let span = host
                        .roles
                        .iter()
                        .find(|r| r.value == role)
                        .map_or(host.span, |r| r.span);
                    out.push(
                        Diagnostic::new(Code::HostRoles, span, format!("`{name}` and `{first}` both have the role `{}`", role.as_str()))
                            .label("second holder")
                            .hint("pic2 manages one database server and one directory server: keep the role on one host"),
                    );
                }
            }
            _ => {}
        }
    }
    for (name, host) in &inv.hosts {
        let mut seen = Vec::new();
        for role in &host.roles {
            if seen.contains(&role.value) {
                out.push(
                    Diagnostic::new(
                        Code::DuplicateValue,
                        role.span,
                        format!("`{name}` lists the role `{}` twice", role.value.as_str()),
                    )
                    .label("again")
                    .hint("list each role once"),
                );
            }
            seen.push(role.value);
        }
    }
}
