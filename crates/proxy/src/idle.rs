//! When something last happened on a connection, what is in flight on it, and a future that
//! waits for it to have been idle long enough: the idle timeouts of tunnels (no byte either
//! way) and of HTTP/1 and HTTP/2 connections (no request in flight, none new). One timer per
//! connection, moved on only when it fires: a timer armed per request costs a timer wheel
//! insertion and removal each time.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// The time of the last activity and the requests in flight, shared by the parts that
/// record them and the one that waits.
#[derive(Clone, Debug)]
pub(crate) struct Activity {
    start: Instant,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Milliseconds since `start`.
    last: AtomicU64,
    in_flight: AtomicU32,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            start: Instant::now(),
            state: Arc::default(),
        }
    }

    /// Something happened now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.state.last.store(ms, Relaxed);
    }

    /// A request starts: the connection is busy until the returned guard goes, with the
    /// answer's last byte (or the answer, dropped), and its idle time counts from then.
    pub(crate) fn begin(&self) -> InFlight {
        self.touch();
        self.state.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// Resolves once `idle` has passed with no [`touch`](Self::touch) and nothing in flight.
    /// A request longer than `idle` (a long download, a stream of events, a slow upload) is
    /// not cut, and the connection's idle time counts from its end.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.state.last.load(Relaxed));
            // an idle time too large to add up means none
            let Some(at) = last.checked_add(idle) else {
                return std::future::pending().await;
            };
            if Instant::now() < at {
                tokio::time::sleep_until(at).await;
            } else if self.state.in_flight.load(Relaxed) == 0 {
                return;
            } else {
                // looked at again in `idle`: a flight that ends meanwhile touches, and the
                // wait is then counted from its end
                tokio::time::sleep(idle).await;
            }
        }
    }
}

/// A request in flight on a connection (see [`Activity::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state.in_flight.fetch_sub(1, Relaxed);
        self.0.touch();
    }
}

/// An answer's body that keeps its request in flight until it ends or is dropped.
pub(crate) struct Tracked<B> {
    body: B,
    _flight: InFlight,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, flight: InFlight) -> Self {
        Tracked {
            body,
            _flight: flight,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn idle_after(activity: &Activity, idle: Duration) -> bool {
        tokio::time::timeout(idle * 10, activity.idle_for(idle))
            .await
            .is_ok()
    }

    /// The paused clock jumps to the next timer: `idle_for` either resolves at a time that
    /// can be read back, or never within the window.
    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_the_connection_from_being_idle() {
        let idle = Duration::from_secs(10);
        let activity = Activity::new();
        let flight = activity.begin();
        assert!(
            !idle_after(&activity, idle).await,
            "idle with a request in flight"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(flight);
        let ended = Instant::now();
        assert!(idle_after(&activity, idle).await);
        assert!(
            Instant::now() - ended >= idle,
            "idle counted from before the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_in_flight_the_idle_time_counts_from_the_last_touch() {
        let idle = Duration::from_secs(10);
        let activity = Activity::new();
        tokio::time::advance(Duration::from_secs(4)).await;
        activity.touch();
        let touched = Instant::now();
        assert!(idle_after(&activity, idle).await);
        let waited = Instant::now() - touched;
        assert!(
            waited >= idle && waited < idle + Duration::from_millis(10),
            "{waited:?}"
        );
    }
}
