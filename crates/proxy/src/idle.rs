//! When something last happened on a connection, what is in flight on it, and a future that
//! waits for it to have been idle long enough: the idle timeouts of tunnels (no byte either
//! way) and of HTTP/1 and HTTP/2 connections (no request in flight, none new); and, on
//! HTTP/2, whether an answer has waited too long on its client's flow-control window, and
//! whether its client cancels requests faster than any browser does (rapid reset). One
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
    /// HTTP/2 only: the answers' data bytes handed to hyper, and the DATA payload bytes h2
    /// has framed for the socket since ([`crate::coalesce`] counts them). h2 frames data only
    /// while its client's flow-control windows have room: bytes handed and not framed for a
    /// whole tick of [`Activity::starved`], with nothing framed meanwhile, are answers whose
    /// client holds its windows shut while reading its socket, which no write ever waits on.
    /// Bytes, not frames of the answers' bodies: hyper hands an answer's last chunk to h2
    /// whole once the window has a byte of room, and drops the body, while h2 keeps the
    /// rest until the window opens.
    unsent: Option<Unsent>,
    /// HTTP/2 only: the requests its client cancelled (reset their streams) before their
    /// answer began.
    cancels: Option<Cancels>,
}

#[derive(Debug, Default)]
struct Unsent {
    handed: AtomicU64,
    framed: AtomicU64,
}

/// Requests an HTTP/2 client may cancel before their answer begins: a burst of
/// [`CANCELS_BURST`], then [`CANCELS_PER_SECOND`]; past that its connection is closed.
///
/// h2 ends a connection whose client resets more than 20 streams it has not yet handed
/// hyper, but counts nothing once hyper has taken them: a client that waits for its
/// requests to reach the backend (a round trip) before resetting them was held by nothing,
/// `max_concurrent_streams` included, since a reset stream gives its place back. Each of
/// those requests still costs the site a PHP run, which goes on after the reset. A browser
/// cancels a page's requests when its user leaves the page: at most the 128 a connection
/// may have in flight, hence a burst of four pages' worth, for all of a client's connections
/// (an address, an IPv6 /64: a household behind one address shares it). Varnish allows 100 such resets a
/// minute, Node.js a burst of 1,000 then 33 a second.
pub(crate) const CANCELS_BURST: u32 = 512;
pub(crate) const CANCELS_PER_SECOND: u32 = 50;

/// The cancels a client may still make (a burst of [`CANCELS_BURST`], refilled at
/// [`CANCELS_PER_SECOND`]), shared by all its HTTP/2 connections
/// ([`crate::per_client`]): one bucket per connection let a client with 256 connections
/// cancel 256 times as many. A lock, not atomics: taken only when a request is cancelled.
#[derive(Debug)]
pub(crate) struct CancelBudget(std::sync::Mutex<(f64, Instant)>);

impl Default for CancelBudget {
    fn default() -> Self {
        CancelBudget(std::sync::Mutex::new((
            f64::from(CANCELS_BURST),
            Instant::now(),
        )))
    }
}

impl CancelBudget {
    /// Takes one cancel; false once none is left. The debt stops at one: the streams of a
    /// connection closed for its cancels count as cancelled too, and would otherwise cut the
    /// client's other connections at their first cancel for seconds.
    pub(crate) fn take(&self) -> bool {
        let now = Instant::now();
        let mut bucket = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = Self::refilled(*bucket, now) - 1.0;
        *bucket = (tokens.max(-1.0), now);
        tokens >= 0.0
    }

    /// Whole again: as if its client had cancelled nothing (nothing to remember of it).
    pub(crate) fn full(&self) -> bool {
        let bucket = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        Self::refilled(bucket, Instant::now()) >= f64::from(CANCELS_BURST)
    }

    /// The cancels left at `now` of what was left at `at`.
    fn refilled((tokens, at): (f64, Instant), now: Instant) -> f64 {
        let refill =
            now.saturating_duration_since(at).as_secs_f64() * f64::from(CANCELS_PER_SECOND);
        (tokens + refill).min(f64::from(CANCELS_BURST))
    }
}

#[derive(Debug)]
struct Cancels {
    /// The client's budget (the connection's own for a client not counted: a trusted proxy).
    budget: Arc<CancelBudget>,
    /// Told once the budget is spent, on the connection that spent it.
    flood: tokio::sync::Notify,
}

/// Why [`Activity::misbehaves`] resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misbehaviour {
    /// An answer waited on its client's flow-control windows (see [`Activity::starved`]).
    Starved,
    /// Requests cancelled before their answer faster than [`CANCELS_PER_SECOND`], past a
    /// burst of [`CANCELS_BURST`].
    CancelFlood,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self::with(State::default())
    }

    /// For an HTTP/2 connection: also counts the answers' bytes handed and framed, and the
    /// requests cancelled before their answer, against its client's `budget` (one of its own
    /// if `None`), for [`misbehaves`](Self::misbehaves).
    pub(crate) fn http2(budget: Option<Arc<CancelBudget>>) -> Self {
        Self::with(State {
            unsent: Some(Unsent::default()),
            cancels: Some(Cancels {
                budget: budget.unwrap_or_default(),
                flood: tokio::sync::Notify::new(),
            }),
            ..State::default()
        })
    }

    /// Resolves once the connection's client has starved an answer (see
    /// [`starved`](Self::starved)) or cancelled more requests than
    /// its cancels allow (see [`CANCELS_BURST`]); never for a connection not made
    /// [`http2`](Self::http2).
    pub(crate) async fn misbehaves(&self, send_timeout: Duration) -> Misbehaviour {
        let Some(c) = &self.state.cancels else {
            return std::future::pending().await;
        };
        tokio::select! {
            () = self.starved(send_timeout) => Misbehaviour::Starved,
            () = c.flood.notified() => Misbehaviour::CancelFlood,
        }
    }

    /// A request was cancelled before its answer began: on HTTP/2 its stream was reset (or
    /// the connection ended with it in flight, when the count no longer matters).
    fn cancelled(&self) {
        let Some(c) = &self.state.cancels else {
            return;
        };
        if !c.budget.take() {
            c.flood.notify_one();
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// h2 framed `n` bytes of DATA payload for the socket.
    pub(crate) fn framed(&self, n: u64) {
        if let Some(u) = &self.state.unsent {
            u.framed.fetch_add(n, Relaxed);
        }
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

    /// Resolves once data handed to hyper has waited on its client's flow-control windows
    /// for at least `within`, with nothing framed meanwhile (for at most twice that: the
    /// check runs once per `within`, one timer per connection rather than one per frame);
    /// never without [`http2`](Self::http2).
    ///
    /// Hyper gives no handle on one stream, so the caller can only close the connection,
    /// where nginx resets the stream alone; a browser grants its windows as it reads.
    pub(crate) async fn starved(&self, within: Duration) {
        let Some(u) = &self.state.unsent else {
            return std::future::pending().await;
        };
        // what was handed by the last tick, and framed by then
        let mut before = (0, 0);
        loop {
            tokio::time::sleep(within).await;
            let framed = u.framed.load(Relaxed);
            if before.0 > framed && framed == before.1 {
                return;
            }
            before = (u.handed.load(Relaxed), framed);
        }
    }

    /// Something happened now.
    pub(crate) fn touch(&self) {
        self.state.last.store(self.now_ms(), Relaxed);
    }

    /// A request starts: the connection is busy until the returned guard goes, with the
    /// answer's last byte (or the answer, dropped), and its idle time counts from then.
    pub(crate) fn begin(&self) -> InFlight {
        self.touch();
        self.state.in_flight.fetch_add(1, Relaxed);
        InFlight {
            activity: self.clone(),
            answered: false,
        }
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

/// A request in flight on a connection (see [`Activity::begin`]); dropped before its answer
/// began ([`Tracked::new`]), it was cancelled.
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Activity,
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.activity;
        a.state.in_flight.fetch_sub(1, Relaxed);
        a.touch();
        if !self.answered {
            a.cancelled();
        }
    }
}

/// An answer's body that keeps its request in flight until it ends or is dropped, and on
/// HTTP/2 counts the data it hands hyper ([`Activity::starved`]).
pub(crate) struct Tracked<B> {
    body: B,
    flight: InFlight,
    /// HTTP/2: the data bytes handed so far, and whether the body has ended.
    handed: u64,
    ended: bool,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, mut flight: InFlight) -> Self {
        flight.answered = true;
        Tracked {
            body,
            flight,
            handed: 0,
            ended: false,
        }
    }

    fn unsent(&self) -> Option<&Unsent> {
        self.flight.activity.state.unsent.as_ref()
    }
}

/// An answer dropped before its end (its stream reset by the client, an error) takes its
/// bytes back from the count: h2 drops what it had not framed of them, which would
/// otherwise look unsent for ever. Those it had framed are then counted as framed but not
/// handed, which can only hide later unsent bytes as many, never make up some.
impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if let (false, Some(u)) = (self.ended, self.unsent()) {
            u.handed.fetch_sub(self.handed, Relaxed);
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
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if this.unsent().is_some() {
            match &frame {
                Poll::Ready(Some(Ok(f))) => {
                    let n = f
                        .data_ref()
                        .map_or(0, |d| u64::try_from(d.remaining()).unwrap_or(u64::MAX));
                    if let Some(u) = this.unsent() {
                        u.handed.fetch_add(n, Relaxed);
                    }
                    this.handed = this.handed.saturating_add(n);
                    this.ended = this.body.is_end_stream();
                }
                Poll::Ready(None) => this.ended = true,
                _ => {}
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

    /// What hyper does once the client's window has room: takes a frame.
    fn ask<B: hyper::body::Body + Unpin>(body: &mut Tracked<B>) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = hyper::body::Body::poll_frame(Pin::new(body), &mut cx);
    }

    /// Hands and frames a byte of `steady` every second (a client reading along) until the
    /// connection is found starved (true) or `for_` has passed (false).
    async fn starved_while_framing(
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
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    ask(steady);
                    activity.framed(1);
                }
            }
        }
        false
    }

    /// Bytes handed and never framed, on a connection where nothing is framed (as a client
    /// holding every window shut leaves it), starve it in one to two periods.
    #[tokio::test(start_paused = true)]
    async fn data_never_framed_starves_its_http2_connection_in_one_to_two_periods() {
        let within = Duration::from_secs(10);
        let activity = Activity::http2(None);
        tokio::time::advance(Duration::from_secs(3)).await;
        let mut held = Tracked::new(Endless, activity.begin());
        ask(&mut held);
        let handed = Instant::now();
        let starved = tokio::time::timeout(within * 5, activity.starved(within)).await;
        assert!(starved.is_ok());
        let waited = Instant::now() - handed;
        assert!(waited >= within && waited <= within * 2, "{waited:?}");

        // HTTP/1 answers are timed at the socket: nothing is counted here
        let activity = Activity::new();
        ask(&mut Tracked::new(Endless, activity.begin()));
        let quiet = tokio::time::timeout(within * 5, activity.starved(within)).await;
        assert!(quiet.is_err());
    }

    /// Hyper hands an answer's last chunk to h2 whole and drops the body, which has ended:
    /// its bytes still wait for the window, and count.
    #[tokio::test(start_paused = true)]
    async fn a_last_chunk_left_in_h2_starves_its_connection_too() {
        let within = Duration::from_secs(10);
        let activity = Activity::http2(None);
        let last = http_body_util::Full::new(bytes::Bytes::from_static(b"the whole answer"));
        let mut held = Tracked::new(last, activity.begin());
        ask(&mut held);
        assert!(hyper::body::Body::is_end_stream(&held));
        drop(held);
        assert!(activity.nothing_in_flight());
        let starved = tokio::time::timeout(within * 3, activity.starved(within)).await;
        assert!(starved.is_ok(), "its connection looked idle");
    }

    /// Answers whose bytes are framed as they are handed, and one dropped before its end
    /// with bytes h2 will never frame (a stream the client reset), never starve theirs.
    #[tokio::test(start_paused = true)]
    async fn framed_answers_and_reset_streams_never_starve_their_connection() {
        let within = Duration::from_secs(10);
        let activity = Activity::http2(None);
        let mut steady = Tracked::new(Endless, activity.begin());
        let mut reset = Tracked::new(Endless, activity.begin());
        for _ in 0..5 {
            ask(&mut reset);
        }
        drop(reset);
        assert!(!starved_while_framing(&activity, within, &mut steady, within * 10).await);
        // and a quiet connection after them
        let quiet = tokio::time::timeout(within * 5, activity.starved(within)).await;
        assert!(quiet.is_err(), "starved at {:?}", activity.start.elapsed());
    }

    /// Whether `activity` has been found misbehaving by now (a tick of the clock lets the
    /// flood's notice through; `within` is long enough never to starve here).
    async fn flooded(activity: &Activity) -> bool {
        let within = Duration::from_secs(3600);
        tokio::time::timeout(Duration::from_millis(1), activity.misbehaves(within))
            .await
            .is_ok_and(|why| why == Misbehaviour::CancelFlood)
    }

    /// Requests cancelled before their answer count, answered ones never: a burst of
    /// `CANCELS_BURST`, then `CANCELS_PER_SECOND`, and the connection floods past them;
    /// HTTP/1 counts nothing.
    #[tokio::test(start_paused = true)]
    async fn requests_cancelled_by_the_hundred_flood_an_http2_connection() {
        let activity = Activity::http2(None);
        for _ in 0..1000 {
            drop(Tracked::new(Endless, activity.begin())); // answered, then reset
        }
        for _ in 0..CANCELS_BURST {
            drop(activity.begin());
        }
        assert!(!flooded(&activity).await, "flooded within the burst");
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..CANCELS_PER_SECOND * 2 {
            drop(activity.begin());
        }
        assert!(!flooded(&activity).await, "the refill was not counted");
        drop(activity.begin());
        drop(activity.begin());
        assert!(flooded(&activity).await, "past the limit, let through");

        let activity = Activity::new();
        for _ in 0..=CANCELS_BURST * 10 {
            drop(activity.begin());
        }
        assert!(!flooded(&activity).await);
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
