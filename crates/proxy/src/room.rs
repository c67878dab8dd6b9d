//! Making room when every connection slot is taken: the connections with nothing in flight
//! (a keep-alive wait, a head never finished, an HTTP/2 connection without a stream) are
//! closed, as nginx closes its idle keep-alive connections when it runs out, so that a new
//! client gets in at its next try instead of after their idle timeouts. An idle HTTP/2
//! connection keeps its slot for `idle_timeout` (10 minutes): slots held that cheaply would
//! otherwise let a few clients lock everyone out.
//!
//! A connection is closed from outside its task by shutting its socket down (through a
//! duplicate of its descriptor): its reads then end, and it ends of itself. Nothing is
//! polled with the requests: a wake-up branch in every connection's loop cost 269 to 375
//! instructions per request (bench/proxy/instructions.sh), against a `dup` per connection.

use crate::idle::Activity;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// The open connections that may be closed to make room.
#[derive(Debug, Default)]
pub(crate) struct Room {
    open: Mutex<slab::Slab<(Activity, OwnedFd)>>,
}

impl Room {
    /// Lists a connection (its activity, and a duplicate of its socket's descriptor) until the
    /// returned guard is dropped. A connection that cannot be listed (no descriptor left)
    /// is served all the same, only never closed to make room.
    pub(crate) fn list(&self, activity: &Activity, socket: Option<OwnedFd>) -> Listed<'_> {
        let key = socket.and_then(|fd| {
            let mut open = self.open.lock().ok()?;
            Some(open.insert((activity.clone(), fd)))
        });
        Listed { room: self, key }
    }

    /// Closes every listed connection with nothing in flight; how many.
    pub(crate) fn make(&self) -> u64 {
        let Ok(open) = self.open.lock() else {
            return 0;
        };
        let mut closed = 0;
        for (_, (activity, socket)) in open.iter() {
            // a request that starts right now is cut, as on any keep-alive connection closed
            // by its server: clients send an idempotent one again
            if activity.nothing_in_flight()
                && rustix::net::shutdown(socket, rustix::net::Shutdown::Both).is_ok()
            {
                closed += 1;
            }
        }
        closed
    }
}

/// A connection listed in a [`Room`], until dropped.
pub(crate) struct Listed<'a> {
    room: &'a Room,
    key: Option<usize>,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        if let (Some(key), Ok(mut open)) = (self.key, self.room.open.lock()) {
            open.try_remove(key);
        }
    }
}
