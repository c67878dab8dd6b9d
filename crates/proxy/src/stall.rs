//! Clocks on waits that make no progress, and a request body timed with one.
//!
//! A limit on the whole of a transfer cuts a slow but honest one (an upload on an ADSL line);
//! no limit lets a client or a backend that stops hold a connection for ever. nginx's
//! `client_body_timeout`, `send_timeout` and `proxy_read_timeout` time each wait instead, and
//! so do the users of [`StallClock`]: the request body ([`StalledBody`],
//! `body_read_timeout`), the writes to a client (`crate::send_timeout`), the waits on a
//! backend taking an upload, then for its answer's head and body (`crate::backend`).
//!
//! Nothing is armed while the operation goes on: a clock starts only when it has to wait,
//! and is stopped (left armed, to go off once for nothing) by the next progress.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// The time an operation has been waiting with no progress: started by the first wait,
/// stopped by progress, run out once one wait has lasted `limit`.
pub(crate) struct StallClock {
    limit: Duration,
    /// Running while the operation waits; reset, not reallocated, for the next wait.
    clock: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl StallClock {
    pub(crate) fn new(limit: Duration) -> Self {
        StallClock {
            limit,
            clock: None,
            waiting: false,
        }
    }

    /// The operation made progress: the next wait starts a new count.
    pub(crate) fn progressed(&mut self) {
        self.waiting = false;
    }

    /// The operation waits: true once this wait has lasted the limit (else `cx` is woken
    /// when it has).
    pub(crate) fn waits(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.waiting {
            self.waiting = true;
            let deadline = crate::deadline::after(self.limit);
            match self.clock.as_mut() {
                Some(clock) => clock.as_mut().reset(deadline),
                None => self.clock = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.clock
            .as_mut()
            .is_some_and(|clock| clock.as_mut().poll(cx).is_ready())
    }

    /// A wait is under way (since the last progress).
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// `poll` timed: what is ready is progress; what waits stays pending until this wait
    /// has lasted the limit, and is then [`Stalled`].
    pub(crate) fn time<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<T>,
    ) -> Poll<Result<T, Stalled>> {
        match poll {
            Poll::Ready(done) => {
                self.progressed();
                Poll::Ready(Ok(done))
            }
            Poll::Pending if self.waits(cx) => Poll::Ready(Err(Stalled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A wait lasted its clock's limit.
#[derive(Debug)]
pub(crate) struct Stalled;

/// A body whose reads may each wait `limit`, no longer: past it the body fails with `E`.
///
/// A request body's (`E` = [`BodyTimedOut`]): the "slow POST" attack, a client announcing a
/// body and sending a byte now and then, would otherwise hold its connection and a backend
/// connection for ever. Over HTTP/2 a wait may not be the client's: a stream whose backend
/// stops taking its body leaves its data unread, and once that fills the connection's
/// flow-control window (hyper's default, 1 MB) the other streams' clients cannot send
/// either, and may be timed out.
///
/// An answer's from hyper's client (`E` = [`AnswerStalled`]; pic2's own client times its
/// answers itself): a backend that stops in the middle would hold its client for ever.
pub(crate) struct StalledBody<B, E> {
    body: B,
    clock: StallClock,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<B, E> StalledBody<B, E> {
    pub(crate) fn new(body: B, limit: Duration) -> Self {
        StalledBody {
            body,
            clock: StallClock::new(limit),
            error: std::marker::PhantomData,
        }
    }
}

/// A request body's client sent nothing for `body_read_timeout`.
#[derive(Debug, Default, thiserror::Error)]
#[error("no byte of the request body for the body read timeout")]
pub(crate) struct BodyTimedOut;

/// A backend sent nothing of its answer's body for the backend timeout.
#[derive(Debug, Default, thiserror::Error)]
#[error("the backend sent nothing for the backend timeout")]
pub(crate) struct AnswerStalled;

impl<B, E> hyper::body::Body for StalledBody<B, E>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<crate::http::BoxError>,
    E: Default + Into<crate::http::BoxError>,
{
    type Data = B::Data;
    type Error = crate::http::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        this.clock.time(cx, frame).map(|timed| match timed {
            Ok(frame) => frame.map(|f| f.map_err(Into::into)),
            Err(Stalled) => Some(Err(E::default().into())),
        })
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
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::time::Instant;

    /// Each wait of the body has the whole limit; one that lasts it fails the body. The
    /// paused clock jumps to the next timer, so the times read back are exact.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_fails_after_the_limit() {
        let second = Duration::from_secs(1);
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BodyTimedOut>::new(1);
        let mut body = StalledBody::<_, BodyTimedOut>::new(body, 5 * second);
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(4 * second).await;
                tx.send_data(Bytes::from_static(b"ab")).await.unwrap();
            }
            tokio::time::sleep(60 * second).await; // then nothing, the sender kept
        });
        let started = Instant::now();
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"ab"));
        }
        assert_eq!(
            Instant::now() - started,
            12 * second,
            "4 s waits all passed"
        );
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert_eq!(Instant::now() - started, 17 * second);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_counted_from_its_start_not_from_the_last_progress_before_it() {
        let second = Duration::from_secs(1);
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BodyTimedOut>::new(8);
        let mut body = StalledBody::<_, BodyTimedOut>::new(body, 5 * second);
        tx.send_data(Bytes::from_static(b"a")).await.unwrap();
        body.frame().await.unwrap().unwrap();
        // 30 s with nobody reading the body (a backend slow to take it): no wait of the
        // client's, nothing counted
        tokio::time::sleep(30 * second).await;
        tx.send_data(Bytes::from_static(b"b")).await.unwrap();
        body.frame().await.unwrap().unwrap();
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert_eq!(Instant::now() - started, 5 * second);
    }
}
