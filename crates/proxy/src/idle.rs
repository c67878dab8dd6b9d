//! When something last happened on a connection, and a future that waits for it to have been
//! idle long enough: the idle timeouts of tunnels (no byte either way) and of HTTP/1 and
//! HTTP/2 connections (no new request). One timer per connection, moved on only when it
//! fires: a timer armed per request costs a timer wheel insertion and removal each time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The time of the last activity, shared by the parts that record it and the one that waits.
#[derive(Clone, Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last: Arc<AtomicU64>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Something happened now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Relaxed);
    }

    /// Resolves once `idle` has passed with no [`touch`](Self::touch).
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Relaxed));
            // an idle time too large to add up means none
            let Some(at) = last.checked_add(idle) else {
                return std::future::pending().await;
            };
            if Instant::now() >= at {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }
}
