//! `[proxy] admin_addresses` and `trusted_proxies` are addresses or networks, and apart: a
//! mistake there would otherwise only show when the proxy starts, or lock the admins out
//! during a cut-over; and a trusted proxy inside an admin network would make every client
//! it forwards an admin whenever it cannot name the client.

use crate::diagnostic::{Code, Diagnostic};
use crate::model::Inventory;
use crate::net::parse_network;
use crate::source::Spanned;
use std::net::IpAddr;

pub(crate) fn check(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let Some(proxy) = &inv.proxy else {
        return;
    };
    let admins = networks(&proxy.admin_addresses, out);
    let trusted = networks(&proxy.trusted_proxies, out);
    for (t, tnet) in &trusted {
        for (a, anet) in &admins {
            if overlap(*tnet, *anet) {
                out.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        t.span,
                        format!("the trusted proxy `{}` is inside the admin network `{}`", t.value, a.value),
                    )
                    .label("trusted here")
                    .hint("admin addresses are the admins' own machines: list the balancer's address in `trusted_proxies` only"),
                );
            }
        }
    }
}

/// The entries that parse, with their networks; a diagnostic for each other one.
fn networks<'a>(
    list: &'a [Spanned<String>],
    out: &mut Vec<Diagnostic>,
) -> Vec<(&'a Spanned<String>, (IpAddr, u8))> {
    list.iter()
        .filter_map(|e| match parse_network(&e.value, e.span) {
            Ok(net) => Some((e, net)),
            Err(d) => {
                out.push(d);
                None
            }
        })
        .collect()
}

/// Whether two networks share an address.
fn overlap((a, pa): (IpAddr, u8), (b, pb): (IpAddr, u8)) -> bool {
    let prefix = pa.min(pb);
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}
