//! Deadlines for requests waiting on a backend, with timers lent from a worker's pool.
//!
//! `tokio::time::timeout` arms a timer for each request: an insertion into the timer wheel
//! when the request first waits, a removal when it is answered, under the wheel's lock each
//! time. Here a request borrows a timer already in the wheel and leaves it armed where it
//! is, as long as that is no later than the request's deadline: it may go off early, and is
//! then moved on to the deadline, which happens about once per timeout per timer, whatever
//! the number of requests. nginx keeps its timers the same lazy way (`NGX_TIMER_LAZY_DELAY`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The most idle timers a worker keeps: its usual number of requests waiting at once.
const MAX_SPARE: usize = 1024;

/// A worker's spare timers (cheap to clone; only its own thread uses them).
#[derive(Clone, Default)]
pub(crate) struct Timers {
    spare: Arc<Mutex<Vec<Pin<Box<Sleep>>>>>,
}

/// `within` from now; a wait too long to add up (`Duration::MAX` for "no limit") is a
/// century.
pub(crate) fn after(within: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(within)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

impl Timers {
    /// `fut`, or [`Elapsed`] once `within` has passed.
    pub(crate) fn timeout<F: Future>(&self, within: Duration, fut: F) -> Deadline<'_, F> {
        Deadline {
            fut,
            at: after(within),
            timer: None,
            timers: self,
        }
    }

    fn lend(&self) -> Option<Pin<Box<Sleep>>> {
        self.spare.lock().ok()?.pop()
    }

    fn give_back(&self, timer: Pin<Box<Sleep>>) {
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < MAX_SPARE {
                spare.push(timer);
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future [`Timers::timeout`] returns.
    pub(crate) struct Deadline<'a, F> {
        #[pin]
        fut: F,
        at: Instant,
        // borrowed at the first wait, given back when the request is done with it
        timer: Option<Pin<Box<Sleep>>>,
        timers: &'a Timers,
    }

    impl<F> PinnedDrop for Deadline<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(timer) = this.timer.take() {
                this.timers.give_back(timer);
            }
        }
    }
}

impl<F: Future> Future for Deadline<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let at = *this.at;
        let timers = *this.timers;
        let timer = this.timer.get_or_insert_with(|| {
            timers
                .lend()
                .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(at)))
        });
        if timer.deadline() > at {
            // armed for later than this request may wait (a shorter timeout since)
            timer.as_mut().reset(at);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // it went off: at this request's deadline, or earlier, for an earlier one
            if Instant::now() >= at {
                return Poll::Ready(Err(Elapsed));
            }
            timer.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_deadline_and_not_before() {
        let timers = Timers::default();
        let slow = timers
            .timeout(
                Duration::from_secs(5),
                tokio::time::sleep(Duration::from_secs(6)),
            )
            .await;
        assert_eq!(slow, Err(Elapsed));
        let fast = timers
            .timeout(
                Duration::from_secs(5),
                tokio::time::sleep(Duration::from_secs(4)),
            )
            .await;
        assert_eq!(fast, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lent_timer_is_moved_to_the_new_deadline_earlier_or_later() {
        let timers = Timers::default();
        let pending = || std::future::pending::<()>();
        // answered after 1 s: its timer goes back to the pool armed at 100 s
        let t = Instant::now();
        let answered = timers.timeout(
            Duration::from_secs(100),
            tokio::time::sleep(Duration::from_secs(1)),
        );
        assert_eq!(answered.await, Ok(()));
        assert_eq!(timers.spare.lock().map(|s| s.len()).ok(), Some(1));
        // the next wait borrows it, and moves it earlier: it ends at its own deadline
        assert_eq!(
            timers.timeout(Duration::from_secs(10), pending()).await,
            Err(Elapsed)
        );
        assert_eq!(t.elapsed(), Duration::from_secs(11));
        // borrowed again, gone off already: moved on, and the wait ends 10 s later, not now
        assert_eq!(
            timers.timeout(Duration::from_secs(10), pending()).await,
            Err(Elapsed)
        );
        assert_eq!(t.elapsed(), Duration::from_secs(21));
        assert_eq!(timers.spare.lock().map(|s| s.len()).ok(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waits_each_have_a_timer() {
        let timers = Timers::default();
        let a = timers.timeout(Duration::from_secs(3), std::future::pending::<()>());
        let b = timers.timeout(Duration::from_secs(2), std::future::pending::<()>());
        let t = Instant::now();
        let (a, b) = tokio::join!(a, b);
        assert_eq!((a, b), (Err(Elapsed), Err(Elapsed)));
        assert_eq!(t.elapsed(), Duration::from_secs(3));
        assert_eq!(timers.spare.lock().map(|s| s.len()).ok(), Some(2));
    }
}
