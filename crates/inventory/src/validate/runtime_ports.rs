//! Two runtimes cannot listen on one port, whether it is written or the default one (8100 +
//! the runtime's place in name order, which a runtime added before it in that order moves),
//! nor on phpMyAdmin's.

use crate::diagnostic::{Code, Diagnostic};
use crate::layout::default_runtime_port;
use crate::model::Inventory;
use crate::source::Span;
use crate::types::Ident;
use std::collections::BTreeMap;

/// Where a runtime's port comes from: its `port` key, or the default (the runtime's table).
struct Taken<'a> {
    runtime: &'a Ident,
    span: Span,
    written: bool,
}

impl Taken<'_> {
    fn says(&self) -> String {
        if self.written {
            format!("the port of the runtime `{}`", self.runtime)
        } else {
            format!(
                "the default port of the runtime `{}` (8100 + its place in name order)",
                self.runtime
            )
        }
    }

    fn label(&self) -> &'static str {
        if self.written {
            "first here"
        } else {
            "takes it by default"
        }
    }
}

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<u16, Taken<'_>> = BTreeMap::new();
    for (rank, (name, runtime)) in inv.runtimes.iter().enumerate() {
        let (port, taken) = match &runtime.port {
            Some(p) => (
                p.value,
                Taken {
                    runtime: name,
                    span: p.span,
                    written: true,
                },
            ),
            None => (
                default_runtime_port(rank),
                Taken {
                    runtime: name,
                    span: runtime.span,
                    written: false,
                },
            ),
        };
        if let Some(first) = seen.get(&port) {
            // said where a port is written, if either is
            let (here, there) = if taken.written || !first.written {
                (&taken, first)
            } else {
                (first, &taken)
            };
            out.push(
                Diagnostic::new(
                    Code::DuplicateValue,
                    here.span,
                    format!("port {port} is also {}", there.says()),
                )
                .label("taken twice")
                .related(there.span, there.label())
                .hint("give each runtime a `port` of its own"),
            );
            continue;
        }
        seen.insert(port, taken);
    }
    if let Some(c) = &inv.containers {
        if let Some(taken) = seen.get(&c.phpmyadmin_port) {
            out.push(
                Diagnostic::new(
                    Code::DuplicateValue,
                    taken.span,
                    format!(
                        "port {} is also phpMyAdmin's (`[containers] phpmyadmin_port`)",
                        c.phpmyadmin_port
                    ),
                )
                .label("taken twice")
                .related(
                    c.span,
                    "phpMyAdmin's port is set here, or its default, 8180",
                )
                .hint("give the runtime a `port` of its own, or phpMyAdmin another"),
            );
        }
    }
}
