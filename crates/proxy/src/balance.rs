//! Keeps the workers' shares of the open connections even.
//!
//! The kernel spreads new connections over the workers' SO_REUSEPORT sockets by a hash of
//! their addresses, blind to load: 32 long-lived connections often split 20/12, and the
//! busier core then sets the pace while the other waits (measured under h2load: the two
//! workers' CPU time split from 47/53 to 38/62 from one run to the next, req/s following
//! it). HAProxy gives each new connection to its least loaded thread; here the worker that
//! accepted a connection hands it over when another worker has at least two fewer open.
//! One fewer would only move the imbalance from one worker to the other.

use crate::server::Slots;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The workers' open connections, and their inboxes for handed-over ones.
pub(crate) struct Balance {
    open: Arc<[AtomicUsize]>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
}

/// A connection accepted by one worker and served by another.
pub(crate) struct Handoff {
    pub stream: std::net::TcpStream,
    pub addr: SocketAddr,
    /// Accepted on the TLS listener.
    pub tls: bool,
    pub slots: Slots,
    pub open: Open,
}

/// One open connection, counted on the worker that serves it until dropped.
pub(crate) struct Open {
    open: Arc<[AtomicUsize]>,
    worker: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(n) = self.open.get(self.worker) {
            n.fetch_sub(1, Relaxed);
        }
    }
}

/// Where a connection accepted by a worker is served.
pub(crate) enum Placed {
    Here(Open),
    /// By worker `.0`, counted there already (so that the next accept sees it).
    There(usize, Open),
}

impl Balance {
    /// A balance for `workers` workers, and the inbox each worker reads.
    pub(crate) fn new(workers: usize) -> (Balance, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (inboxes, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let open = (0..workers).map(|_| AtomicUsize::new(0)).collect();
        (Balance { open, inboxes }, receivers)
    }

    /// Decides who serves a connection that worker `me` accepted, and counts it there.
    pub(crate) fn place(&self, me: usize) -> Placed {
        let mine = self.open.get(me).map_or(0, |n| n.load(Relaxed));
        let least = self
            .open
            .iter()
            .enumerate()
            .map(|(i, n)| (n.load(Relaxed), i))
            .min();
        match least {
            Some((fewest, other)) if other != me && fewest + 2 <= mine => {
                Placed::There(other, self.count(other))
            }
            _ => Placed::Here(self.count(me)),
        }
    }

    /// Counts one more open connection on `worker`.
    fn count(&self, worker: usize) -> Open {
        if let Some(n) = self.open.get(worker) {
            n.fetch_add(1, Relaxed);
        }
        Open {
            open: Arc::clone(&self.open),
            worker,
        }
    }

    /// Puts `h` in `worker`'s inbox; fails if that worker has stopped.
    pub(crate) fn hand_over(&self, worker: usize, h: Handoff) -> Result<(), ()> {
        let inbox = self.inboxes.get(worker).ok_or(())?;
        inbox.send(h).map_err(drop)
    }

    /// The open connections of each worker.
    pub(crate) fn open(&self) -> impl Iterator<Item = usize> + '_ {
        self.open.iter().map(|n| n.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed_on(p: &Placed, me: usize) -> usize {
        match p {
            Placed::Here(_) => me,
            Placed::There(w, _) => *w,
        }
    }

    #[test]
    fn a_burst_on_one_worker_ends_spread_evenly() {
        let (b, _inboxes) = Balance::new(3);
        // every connection of the burst lands on worker 0's socket
        let held: Vec<Placed> = (0..30).map(|_| b.place(0)).collect();
        let open: Vec<usize> = b.open().collect();
        assert_eq!(open.iter().sum::<usize>(), 30);
        assert!(open.iter().all(|n| (9..=11).contains(n)), "{open:?}");
        drop(held);
        assert_eq!(b.open().collect::<Vec<_>>(), [0, 0, 0]);
    }

    #[test]
    fn a_worker_one_connection_ahead_keeps_what_it_accepts() {
        let (b, _inboxes) = Balance::new(2);
        let _first = b.place(0);
        let second = b.place(0);
        assert_eq!(
            placed_on(&second, 0),
            0,
            "1 against 0 is no imbalance worth a hop"
        );
        let third = b.place(0);
        assert_eq!(placed_on(&third, 0), 1);
    }

    #[test]
    fn a_closed_connection_is_uncounted_on_the_worker_that_served_it() {
        let (b, _inboxes) = Balance::new(2);
        let a = b.place(1);
        let c = b.place(1);
        let d = b.place(1);
        assert_eq!(placed_on(&d, 1), 0);
        drop((a, c));
        assert_eq!(b.open().collect::<Vec<_>>(), [1, 0]);
        drop(d);
        assert_eq!(b.open().collect::<Vec<_>>(), [0, 0]);
    }

    #[test]
    fn one_worker_serves_everything_itself() {
        let (b, _inboxes) = Balance::new(1);
        let held: Vec<Placed> = (0..5).map(|_| b.place(0)).collect();
        assert!(held.iter().all(|p| matches!(p, Placed::Here(_))));
    }
}
