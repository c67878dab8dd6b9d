//! Making room when every connection slot is taken: connections with nothing in flight (a
//! keep-alive wait, a head never finished, an HTTP/2 connection without a stream) are
//! closed, as nginx closes idle keep-alive connections when it runs out, so that a new
//! client gets in at its next try instead of after their idle timeouts. An idle HTTP/2
//! connection keeps its slot for `idle_timeout` (10 minutes): slots held that cheaply would
//! otherwise let a few clients lock everyone out. Like nginx, a sweep closes a bounded
//! number, the longest quiet first; it also spares a connection quiet for less than a
//! second (its answer's last bytes may still be on their way out of hyper's and rustls'
//! buffers) and one whose writes wait on its client (a slow reader taking its answer's end).
//!
//! A connection is closed from outside its task by shutting its socket down through a
//! duplicate of its descriptor: its reads then end, and it ends of itself. Nothing is polled
//! with the requests: a wake-up branch in every connection's loop cost 269 to 375
//! instructions per request (bench/proxy/instructions.sh), against a `dup` per connection.

use crate::idle::Activity;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Connections closed by one sweep at most (nginx's drain closes 32).
const PER_SWEEP: usize = 64;
/// A connection quiet for less than this is spared.
const QUIET: Duration = Duration::from_secs(1);
/// Sweeps are this far apart at least: each walks every connection.
const BETWEEN_SWEEPS: Duration = Duration::from_millis(100);

/// What closes a connection from outside: a duplicate of its socket's descriptor, and
/// whether a write to it waits on the client (set by `crate::send_timeout`).
#[derive(Debug)]
pub(crate) struct Exit {
    socket: OwnedFd,
    writes_wait: AtomicBool,
    /// Shut down by a sweep already (its task may not have seen it yet).
    taken: AtomicBool,
}

impl Exit {
    /// `None` when no descriptor is left for the duplicate: the connection is served all
    /// the same, only never closed to make room.
    pub(crate) fn of(socket: &impl AsFd) -> Option<Arc<Exit>> {
        let socket = rustix::io::dup(socket).ok()?;
        Some(Arc::new(Exit {
            socket,
            writes_wait: AtomicBool::new(false),
            taken: AtomicBool::new(false),
        }))
    }

    pub(crate) fn writes_wait(&self, waiting: bool) {
        self.writes_wait.store(waiting, Relaxed);
    }
}

/// The open connections that may be closed to make room.
#[derive(Debug)]
pub(crate) struct Room {
    open: Mutex<slab::Slab<(Activity, Arc<Exit>)>>,
    started: std::time::Instant,
    /// When the last sweep was, in milliseconds since `started` (0: never). Read without
    /// the lock: every refused connection asks for a sweep.
    swept_at: AtomicU64,
}

impl Default for Room {
    fn default() -> Self {
        Room {
            open: Mutex::default(),
            started: std::time::Instant::now(),
            swept_at: AtomicU64::new(0),
        }
    }
}

impl Room {
    /// Lists a connection until the returned guard is dropped.
    pub(crate) fn list(&self, activity: &Activity, exit: Option<Arc<Exit>>) -> Listed<'_> {
        let key = exit.map(|exit| self.lock().insert((activity.clone(), exit)));
        Listed { room: self, key }
    }

    /// Every slot is taken: [`make`](Self::make)s room, unless the last sweep was less than
    /// [`BETWEEN_SWEEPS`] ago; how many connections were closed.
    pub(crate) fn sweep(&self) -> u64 {
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.swept_at.load(Relaxed);
        let between = u64::try_from(BETWEEN_SWEEPS.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < between {
            return 0;
        }
        match self.swept_at.compare_exchange(last, now, Relaxed, Relaxed) {
            Ok(_) => self.make(),
            Err(_) => 0, // another thread sweeps
        }
    }

    /// Closes up to [`PER_SWEEP`] listed connections with nothing in flight, the longest
    /// quiet first; how many.
    fn make(&self) -> u64 {
        let open = self.lock();
        let mut idle: Vec<(Duration, &Exit)> = open
            .iter()
            .filter(|(_, (activity, exit))| {
                activity.nothing_in_flight()
                    && !exit.writes_wait.load(Relaxed)
                    && !exit.taken.load(Relaxed)
            })
            .map(|(_, (activity, exit))| (activity.quiet_for(), &**exit))
            .filter(|(quiet, _)| *quiet >= QUIET)
            .collect();
        if idle.len() > PER_SWEEP {
            idle.select_nth_unstable_by(PER_SWEEP, |a, b| b.0.cmp(&a.0));
            idle.truncate(PER_SWEEP);
        }
        let mut closed = 0;
        for (_, exit) in idle {
            // a request that starts right now is cut, as on any keep-alive connection closed
            // by its server: clients send an idempotent one again
            exit.taken.store(true, Relaxed);
            if rustix::net::shutdown(&exit.socket, rustix::net::Shutdown::Both).is_ok() {
                closed += 1;
            }
        }
        closed
    }

    /// The list, even after a panic elsewhere: a connection left on it would keep its
    /// socket open (the duplicate) for ever.
    fn lock(&self) -> MutexGuard<'_, slab::Slab<(Activity, Arc<Exit>)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection listed in a [`Room`], until dropped.
pub(crate) struct Listed<'a> {
    room: &'a Room,
    key: Option<usize>,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.room.lock().try_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    /// Whether `peer`'s other end was shut down (its reads end at once).
    fn shut(peer: &mut UnixStream) -> bool {
        peer.set_nonblocking(true).unwrap();
        matches!(peer.read(&mut [0u8; 8]), Ok(0))
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_closes_at_most_its_share_the_longest_quiet_first_and_spares_the_rest() {
        let room = Room::default();
        let mut listed = Vec::new();
        let mut peers = Vec::new();
        // 70 quiet connections, opened 10 ms apart: the first 64 are the longest quiet
        for _ in 0..70 {
            let (ours, peer) = UnixStream::pair().unwrap();
            let activity = Activity::new();
            listed.push((room.list(&activity, Exit::of(&ours)), activity, ours));
            peers.push(peer);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        // and three that are not to be closed: busy, writing, too recent
        let (busy_ours, mut busy_peer) = UnixStream::pair().unwrap();
        let busy = Activity::new();
        let _busy_listed = room.list(&busy, Exit::of(&busy_ours));
        let _flight = busy.begin();
        let (writing_ours, mut writing_peer) = UnixStream::pair().unwrap();
        let writing_exit = Exit::of(&writing_ours).unwrap();
        writing_exit.writes_wait(true);
        let _writing_listed = room.list(&Activity::new(), Some(writing_exit));
        tokio::time::advance(QUIET).await;
        let (recent_ours, mut recent_peer) = UnixStream::pair().unwrap();
        let _recent_listed = room.list(&Activity::new(), Exit::of(&recent_ours));

        assert_eq!(room.make(), 64);
        let closed: Vec<bool> = peers.iter_mut().map(shut).collect();
        assert!(closed[..64].iter().all(|c| *c), "{closed:?}");
        assert!(!closed[64..].iter().any(|c| *c), "{closed:?}");
        assert!(!shut(&mut busy_peer) && !shut(&mut writing_peer) && !shut(&mut recent_peer));
        assert_eq!(room.make(), 6 + 64 - 64, "the rest at the next sweep");
        drop(listed);
        assert_eq!(
            room.lock().len(),
            3,
            "a dropped guard unlists its connection"
        );
    }
}
