//! When something last happened on a connection, what is in flight on it, and a future that
//! waits for it to have been idle long enough: the idle timeouts of tunnels (no byte either
//! way) and of HTTP/1 and HTTP/2 connections (no request in flight, none new); and, on
//! HTTP/2, whether an answer has waited too long on its client's flow-control window. One
//! timer per connection, moved on only when it fires: a timer armed per request costs a
//! timer wheel insertion and removal each time.

use bytes::Buf;
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
    /// HTTP/2 only: answers that handed hyper a frame and have not been asked for the next
    /// one since, counted by the epoch ([`Activity::starved`]'s ticks) they handed it in,
    /// two epochs in turn. Hyper asks an answer for more only once its client's
    /// flow-control window has room: a count that outlives its epoch is an answer whose
    /// client holds its window shut while reading its socket, which no write ever waits on.
    waiting_on_client: Option<HandOffs>,
}

#[derive(Debug, Default)]
struct HandOffs {
    epoch: AtomicU32,
    even: AtomicU32,
    odd: AtomicU32,
}

impl HandOffs {
    /// A frame handed now: the epoch to give back once the answer is asked for more.
    fn hand(&self) -> u32 {
        let epoch = self.epoch.load(Relaxed);
        self.bucket(epoch).fetch_add(1, Relaxed);
        epoch
    }

    fn taken(&self, epoch: u32) {
        self.bucket(epoch).fetch_sub(1, Relaxed);
    }

    fn bucket(&self, epoch: u32) -> &AtomicU32 {
        if epoch.is_multiple_of(2) {
            &self.even
        } else {
            &self.odd
        }
    }
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self::with(State::default())
    }

    /// For an HTTP/2 connection: also counts the answers waiting on their client's
    /// flow-control window, for [`starved`](Self::starved).
    pub(crate) fn watching_windows() -> Self {
        Self::with(State {
            waiting_on_client: Some(HandOffs::default()),
            ..State::default()
        })
    }

    fn with(state: State) -> Self {
        Activity {
            start: Instant::now(),
            state: Arc::new(state),
        }
    }

    /// When something last happened.
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.state.last.load(Relaxed))
    }

    /// Resolves once an answer has waited on its client's flow-control window for at
    /// least `within` (for at most twice that: the check runs once per `within`, one timer
    /// per connection rather than one per frame); never without [`watching_windows`].
    ///
    /// Hyper gives no handle on one stream, so the caller can only close the connection,
    /// where nginx resets the stream alone; a browser grants its windows as it reads.
    pub(crate) async fn starved(&self, within: Duration) {
        let Some(h) = &self.state.waiting_on_client else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(within).await;
            let epoch = h.epoch.load(Relaxed);
            // handed in the epoch before this one, so at least `within` ago, and not taken
            if epoch > 0 && h.bucket(epoch - 1).load(Relaxed) > 0 {
                return;
            }
            // the next epoch reuses that bucket, now empty
            h.epoch.store(epoch.wrapping_add(1), Relaxed);
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

    /// The time since something last happened (a request began or ended).
    pub(crate) fn quiet_for(&self) -> Duration {
        self.last().elapsed()
    }

    /// No request in flight: a keep-alive wait, a head not yet whole, an HTTP/2 connection
    /// without a stream.
    pub(crate) fn nothing_in_flight(&self) -> bool {
        self.state.in_flight.load(Relaxed) == 0
    }

    /// Resolves once `idle` has passed with no [`touch`](Self::touch) and nothing in flight.
    /// A request longer than `idle` (a long download, a stream of events, a slow upload) is
    /// not cut, and the connection's idle time counts from its end.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            // an idle time too large to add up means none
            let Some(at) = self.last().checked_add(idle) else {
                return std::future::pending().await;
            };
            if Instant::now() < at {
                tokio::time::sleep_until(at).await;
            } else if self.nothing_in_flight() {
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

/// An answer's body that keeps its request in flight until it ends or is dropped, and on
/// HTTP/2 says when it waits on its client's window ([`Activity::starved`]).
pub(crate) struct Tracked<B> {
    body: B,
    flight: InFlight,
    /// The epoch of the frame handed and not yet followed by a new ask.
    handed_in: Option<u32>,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, flight: InFlight) -> Self {
        Tracked {
            body,
            flight,
            handed_in: None,
        }
    }

    fn asked_again(&mut self) {
        if let (Some(epoch), Some(h)) = (self.handed_in.take(), self.hand_offs()) {
            h.taken(epoch);
        }
    }

    fn hand_offs(&self) -> Option<&HandOffs> {
        self.flight.0.state.waiting_on_client.as_ref()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.asked_again();
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        this.asked_again();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        // hyper keeps a data frame, the last one too, until the client's window has room,
        // then asks again (or, after the last, drops the body); an empty one goes at once
        if let (Poll::Ready(Some(Ok(f))), Some(h)) = (&frame, this.hand_offs()) {
            if f.data_ref().is_some_and(|d| d.has_remaining()) {
                this.handed_in = Some(h.hand());
            }
        }
        frame
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

    /// A body that always has a frame ready, and never knows it has ended.
    struct Endless;

    #[tokio::test(start_paused = true)]
    async fn a_last_frame_kept_waiting_starves_its_connection_too() {
        let within = Duration::from_secs(10);
        let activity = Activity::watching_windows();
        let mut steady = Tracked::new(Endless, activity.begin());
        let last = http_body_util::Full::new(bytes::Bytes::from_static(b"the whole answer"));
        let mut held = Tracked::new(last, activity.begin());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = hyper::body::Body::poll_frame(Pin::new(&mut held), &mut cx);
        assert!(hyper::body::Body::is_end_stream(&held));
        assert!(starved_while_asking(&activity, within, &mut steady, within * 5).await);
    }

    impl hyper::body::Body for Endless {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(Some(Ok(hyper::body::Frame::data(
                bytes::Bytes::from_static(b"x"),
            ))))
        }
    }

    /// What hyper does once the client's window has room.
    fn ask(body: &mut Tracked<Endless>) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = hyper::body::Body::poll_frame(Pin::new(body), &mut cx);
    }

    /// Asks `steady` every second until the connection is found starved (true) or `for_`
    /// has passed (false).
    async fn starved_while_asking(
        activity: &Activity,
        within: Duration,
        steady: &mut Tracked<Endless>,
        for_: Duration,
    ) -> bool {
        let starved = activity.starved(within);
        tokio::pin!(starved);
        let end = Instant::now() + for_;
        while Instant::now() < end {
            tokio::select! {
                () = &mut starved => return true,
                () = tokio::time::sleep(Duration::from_secs(1)) => ask(steady),
            }
        }
        false
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_never_asked_again_starves_its_http2_connection_in_one_to_two_periods() {
        let within = Duration::from_secs(10);
        let activity = Activity::watching_windows();
        let mut steady = Tracked::new(Endless, activity.begin());
        let mut held = Tracked::new(Endless, activity.begin());
        tokio::time::advance(Duration::from_secs(3)).await;
        ask(&mut held);
        let handed = Instant::now();
        let long = within * 5;
        assert!(starved_while_asking(&activity, within, &mut steady, long).await);
        let waited = Instant::now() - handed;
        assert!(waited >= within && waited <= within * 2, "{waited:?}");

        // HTTP/1 answers are timed at the socket: nothing is counted here
        let activity = Activity::new();
        let mut steady = Tracked::new(Endless, activity.begin());
        ask(&mut Tracked::new(Endless, activity.begin()));
        let mut held = Tracked::new(Endless, activity.begin());
        ask(&mut held);
        assert!(!starved_while_asking(&activity, within, &mut steady, long).await);
    }

    /// Frames of several answers always outstanding, each taken within a few seconds, and
    /// an answer dropped with its frame outstanding (a stream the client reset).
    #[tokio::test(start_paused = true)]
    async fn answers_asked_again_or_dropped_never_starve_their_connection() {
        let within = Duration::from_secs(10);
        let activity = Activity::watching_windows();
        let mut steady = Tracked::new(Endless, activity.begin());
        let mut other = Tracked::new(Endless, activity.begin());
        ask(&mut other);
        let mut reset = Tracked::new(Endless, activity.begin());
        ask(&mut reset);
        drop(reset);
        let starved = activity.starved(within);
        tokio::pin!(starved);
        for _ in 0..100 {
            tokio::select! {
                () = &mut starved => panic!("starved at {:?}", activity.start.elapsed()),
                () = tokio::time::sleep(Duration::from_secs(3)) => {
                    ask(&mut steady);
                    ask(&mut other);
                }
            }
        }
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
