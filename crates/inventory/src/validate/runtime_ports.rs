//! Two runtimes cannot listen on one port.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;
use std::collections::BTreeMap;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let mut seen = BTreeMap::new();
    for (name, runtime) in &inv.runtimes {
        let Some(port) = &runtime.port else { continue };
        if let Some((first, span)) = seen.insert(port.value, (name, port.span)) {
            out.push(
                Diagnostic::new(
                    Code::DuplicateValue,
                    port.span,
                    format!(
                        "port {} is already the port of the runtime `{first}`",
                        port.value
                    ),
                )
                .label("taken twice")
                .related(span, "first here")
                .hint("give each runtime its own port"),
            );
        }
    }
}
