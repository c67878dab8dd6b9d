//! Open connections per client: one address may not take every connection slot of every
//! site. IPv6 clients count per /64 (what one host is usually given, and can walk through),
//! and their /48 (what one site, a home or a server, is often given: 65,536 /64s) may hold
//! [`NETWORK_SHARE`] times as many: 79 /64s of one home would otherwise take all 20,000 slots.
//! Trusted proxies (a load balancer in front) are not limited: all clients come through them.
//! A client's HTTP/2 connections also share one budget of cancelled requests (rapid reset,
//! [`crate::idle::CANCELS_BURST`]), remembered after its last connection until it is whole
//! again: closing and reconnecting does not renew it.

use crate::idle::CancelBudget;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(crate) struct PerClient {
    /// Changed by a reload; connections open beyond a lowered limit stay.
    limit: AtomicUsize,
    open: Mutex<Open>,
}

/// A /48's connections may be this many times a client's.
pub(crate) const NETWORK_SHARE: usize = 8;

#[derive(Debug, Default)]
struct Open {
    /// Per client: an IPv4 address or an IPv6 /64; one without connections is kept while its
    /// cancel budget refills (else reconnecting would give it a new one).
    clients: HashMap<IpAddr, Client>,
    /// Per IPv6 /48, the connections of its clients together.
    networks: HashMap<IpAddr, usize>,
    /// Slots taken since clients without connections and with their budget whole were last
    /// forgotten ([`FORGET_EVERY`]).
    taken: usize,
}

/// Clients without connections are forgotten once their budget is whole, looked for every
/// this many slots taken: a scan of the map, paid for by as many connections (so the map
/// holds the clients with connections, those that cancelled in the last ten seconds, and
/// this many more at most).
const FORGET_EVERY: usize = 1024;

/// A client with connections open: how many, and the cancels its HTTP/2 connections may
/// still make together (forgotten with its last connection).
#[derive(Debug, Default)]
struct Client {
    open: usize,
    cancels: Arc<CancelBudget>,
}

/// One open connection of a client, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    owner: Arc<PerClient>,
    key: IpAddr,
    cancels: Arc<CancelBudget>,
}

impl PerClient {
    /// `limit` is at least 1: a limit of none would refuse every client.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PerClient {
            limit: AtomicUsize::new(limit.max(1)),
            open: Mutex::new(Open::default()),
        })
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Relaxed);
    }

    /// A slot for `ip`, or `None` if it has `limit` connections open already (or its /48,
    /// [`NETWORK_SHARE`] times that).
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let key = key_of(ip);
        let limit = self.limit.load(Relaxed);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Open {
            clients,
            networks,
            taken,
        } = &mut *open;
        *taken += 1;
        if *taken >= FORGET_EVERY {
            *taken = 0;
            forget_whole(clients);
        }
        let net = network_of(key);
        let client_full = clients.get(&key).is_some_and(|c| c.open >= limit);
        let network_full = net
            .and_then(|n| networks.get(&n))
            .is_some_and(|n| *n >= limit.saturating_mul(NETWORK_SHARE));
        if client_full || network_full {
            return None;
        }
        if let Some(n) = net {
            *networks.entry(n).or_default() += 1;
        }
        let client = clients.entry(key).or_default();
        client.open += 1;
        Some(Slot {
            owner: Arc::clone(self),
            key,
            cancels: Arc::clone(&client.cancels),
        })
    }
}

impl Slot {
    /// The cancels the client's HTTP/2 connections may still make, together.
    pub(crate) fn cancel_budget(&self) -> Arc<CancelBudget> {
        Arc::clone(&self.cancels)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Open {
            clients, networks, ..
        } = &mut *open;
        // kept after its last connection, forgotten by a later scan once its budget is whole:
        // reconnecting must not renew it, and the streams of the connection that ends here
        // may still cancel (each in a task of its own, after this)
        if let Some(client) = clients.get_mut(&self.key) {
            client.open = client.open.saturating_sub(1);
        }
        if let Some(net) = network_of(self.key) {
            if let Some(n) = networks.get_mut(&net) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    networks.remove(&net);
                }
            }
        }
    }
}

/// Forgets the clients without connections whose cancel budget is whole again: nothing of
/// them is left to remember.
fn forget_whole(clients: &mut HashMap<IpAddr, Client>) {
    clients.retain(|_, c| c.open > 0 || !c.cancels.full());
}

/// The /48 an IPv6 client's key (its /64) is in; none for IPv4 (an address is often shared
/// by a whole carrier-grade NAT already).
fn network_of(key: IpAddr) -> Option<IpAddr> {
    match key {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(IpAddr::V6(std::net::Ipv6Addr::new(
                s[0], s[1], s[2], 0, 0, 0, 0, 0,
            )))
        }
        IpAddr::V4(_) => None,
    }
}

/// The address an IPv4 client is counted under, or the /64 of an IPv6 one.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_client_gets_its_limit_and_its_slots_back() {
        let p = PerClient::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = p.try_take(a).unwrap();
        let _s2 = p.try_take(a).unwrap();
        assert!(p.try_take(a).is_none());
        assert!(p.try_take(b).is_some(), "another client is not affected");
        drop(s1);
        assert!(p.try_take(a).is_some());
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let p = PerClient::new(1);
        let _s = p.try_take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(p
            .try_take("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        assert!(p.try_take("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = p.try_take("192.0.2.1".parse().unwrap()).unwrap();
        assert!(p.try_take("::ffff:192.0.2.1".parse().unwrap()).is_none());
    }

    #[test]
    fn an_ipv6_48_holds_a_share_of_clients_and_no_more() {
        let p = PerClient::new(2);
        let in_48 = |n: u16| -> IpAddr { format!("2001:db8:1:{n:x}::1").parse().unwrap() };
        // 8 /64s of one /48, 2 each: its share, 16
        let held: Vec<_> = (0..8u16)
            .flat_map(|n| [p.try_take(in_48(n)).unwrap(), p.try_take(in_48(n)).unwrap()])
            .collect();
        assert!(p.try_take(in_48(8)).is_none(), "a 9th /64 of the same /48");
        assert!(
            p.try_take("2001:db8:2::1".parse().unwrap()).is_some(),
            "another /48"
        );
        assert!(
            p.try_take("192.0.2.1".parse().unwrap()).is_some(),
            "IPv4: no network count"
        );
        drop(held);
        assert!(p.try_take(in_48(8)).is_some(), "room once they are gone");
    }

    #[test]
    fn a_clients_connections_share_one_cancel_budget() {
        let p = PerClient::new(4);
        let a = p.try_take("192.0.2.1".parse().unwrap()).unwrap();
        let b = p.try_take("192.0.2.1".parse().unwrap()).unwrap();
        let other = p.try_take("192.0.2.2".parse().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a.cancel_budget(), &b.cancel_budget()));
        assert!(!Arc::ptr_eq(&a.cancel_budget(), &other.cancel_budget()));
        // spent, it stays the client's after its last connection: reconnecting does not
        // renew it
        let spent = a.cancel_budget();
        assert!(spent.take());
        drop((a, b));
        let again = p.try_take("192.0.2.1".parse().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&spent, &again.cancel_budget()), "a new budget");
        // a last connection's streams cancel after it has ended (each in a task of its
        // own): those count too
        let last = p.try_take("192.0.2.3".parse().unwrap()).unwrap();
        let budget = last.cancel_budget();
        drop(last);
        assert!(budget.take());
        let next = p.try_take("192.0.2.3".parse().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&budget, &next.cancel_budget()), "a new budget");
    }

    #[test]
    fn nothing_is_left_behind_once_every_slot_is_back() {
        let p = PerClient::new(4);
        let slots: Vec<_> = (0..4)
            .map(|_| p.try_take("192.0.2.1".parse().unwrap()).unwrap())
            .collect();
        drop(slots);
        let v6: Vec<_> = (0..4)
            .map(|_| p.try_take("2001:db8::1".parse().unwrap()).unwrap())
            .collect();
        assert!(p.try_take("2001:db8::1".parse().unwrap()).is_none());
        drop(v6);
        let mut open = p.open.lock().unwrap();
        assert!(open.networks.is_empty(), "{open:?}");
        // the clients without connections and with their budget whole: at the next scan
        forget_whole(&mut open.clients);
        assert!(open.clients.is_empty(), "{open:?}");
    }
}
