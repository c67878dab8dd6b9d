//! A client connection whose writes fail once the client has taken nothing for a while.
//!
//! Without it a client that asks for an answer and never reads it (or reads a byte now and
//! then: the "slow read" attack) holds its connection, and the backend connection feeding
//! it, for as long as it likes: the socket's buffer fills, every write waits, and no timer
//! of the connection's runs out (it is not idle, a request is in flight). nginx's
//! `send_timeout` and HAProxy's `timeout client` close such a client; so does this, below
//! TLS and HTTP. What it does not see: an HTTP/2 client that reads its socket but leaves a
//! stream's flow-control window shut (its writes never wait; the stream stays in flight);
//! [`crate::idle::Activity::starved`] does.
//!
//! Nothing is armed while writes go through: a [`StallClock`] starts only when a write has
//! to wait, and is stopped (left as it is) by the next write that goes through.

use crate::room::Exit;
use crate::stall::{StallClock, Stalled};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client's stream whose writes fail once one has waited `limit` (see the module).
pub(crate) struct SendTimeout<S> {
    inner: S,
    clock: StallClock,
    /// Told while a write waits, so that `crate::room` spares the connection (its answer's
    /// end may be in buffers above the socket).
    exit: Option<Arc<Exit>>,
}

impl<S> SendTimeout<S> {
    pub(crate) fn new(inner: S, limit: Duration, exit: Option<Arc<Exit>>) -> Self {
        SendTimeout {
            inner,
            clock: StallClock::new(limit),
            exit,
        }
    }

    /// What a write that went (`Ready`) or waits (`Pending`) becomes: a wait longer than
    /// the limit, counted from its start, is an error.
    fn judge<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let was_waiting = self.clock.is_waiting();
        let timed = self.clock.time(cx, poll);
        if let Some(exit) = self
            .exit
            .as_ref()
            .filter(|_| was_waiting != self.clock.is_waiting())
        {
            exit.writes_wait(!was_waiting);
        }
        timed.map(|timed| {
            timed.unwrap_or_else(|Stalled| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took nothing for the send timeout",
                ))
            })
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.judge(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.judge(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.judge(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.judge(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    /// A pipe of 16 bytes: a reader that never reads fills it at once.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_takes_nothing_is_cut_off_after_the_limit() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut s = SendTimeout::new(server, Duration::from_secs(60), None);
        s.write_all(&[b'x'; 16]).await.unwrap();
        let started = Instant::now();
        let err = s.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - started, Duration::from_secs(60));
        let mut got = [0u8; 16];
        client.read_exact(&mut got).await.unwrap();
    }

    /// A slow client that keeps taking bytes is served: each wait has the whole limit.
    #[tokio::test(start_paused = true)]
    async fn a_slow_client_that_keeps_reading_is_served() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut s = SendTimeout::new(server, Duration::from_secs(60), None);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = [0u8; 16];
            loop {
                // 50 s between reads: less than the limit each time, far more in all
                tokio::time::sleep(Duration::from_secs(50)).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => return all,
                    n => all.extend_from_slice(&buf[..n]),
                }
            }
        });
        s.write_all(&[b'y'; 64]).await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        assert_eq!(reader.await.unwrap(), vec![b'y'; 64]);
    }
}
