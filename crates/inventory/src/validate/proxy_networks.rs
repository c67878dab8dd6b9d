//! `[proxy] admin_addresses` and `trusted_proxies` are addresses or networks: a mistake there
//! would otherwise only show when the proxy starts, or lock the admins out during a cut-over.

use crate::diagnostic::Diagnostic;
use crate::model::Inventory;
use crate::net::parse_network;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let Some(proxy) = &inv.proxy else {
        return;
    };
    for entry in proxy.admin_addresses.iter().chain(&proxy.trusted_proxies) {
        if let Err(d) = parse_network(&entry.value, entry.span) {
            out.push(d);
        }
    }
}
