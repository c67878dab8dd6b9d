//! Write coalescing for HTTP/2 connections: the responses of the streams answered in the same
//! turn of the event loop leave in one TLS record and one system call.
//!
//! Why: h2 writes each DATA frame of more than 256 bytes on its own (it chains the payload
//! instead of copying it, and flushes before it takes the next), so behind TLS every 1 KB
//! response cost a record, an encryption and a `writev` — measured: one client write per
//! response where HAProxy makes one per four. Here writes are taken into a buffer, and a flush
//! first lets the other ready tasks run once (their streams add their frames), then writes it
//! all at once.

use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Beyond this, a write waits for the buffer to go out first.
const MAX_BUFFERED: usize = 64 * 1024;
/// A buffer that grew past this is given back once empty (idle connections hold little).
const KEPT_CAPACITY: usize = 16 * 1024;

/// A stream whose writes are gathered until a flush, and whose flushes yield once.
pub struct Coalesced<S> {
    inner: S,
    buf: BytesMut,
    /// This flush already let the other tasks run.
    yielded: bool,
}

impl<S> Coalesced<S> {
    pub fn new(inner: S) -> Self {
        Coalesced {
            inner,
            buf: BytesMut::new(),
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Writes the whole buffer out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buf.advance(n);
        }
        if self.buf.capacity() > KEPT_CAPACITY {
            self.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Room for more: drains first when the buffer is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.len() >= MAX_BUFFERED {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(MAX_BUFFERED - self.buf.len()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = ready!(this.poll_room(cx))?;
        let n = data.len().min(room);
        this.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut room = ready!(this.poll_room(cx))?;
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(room);
            this.buf.extend_from_slice(b.get(..n).unwrap_or_default());
            taken += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() && !this.yielded {
            // Once: the tasks already woken (other streams of this connection, answered in
            // this turn) run before the write, and add their frames to it.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_leave_together_at_the_flush_and_nothing_is_lost() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut c = Coalesced::new(a);
        c.write_all(b"one ").await.unwrap();
        c.write_all(b"two ").await.unwrap();
        // nothing has left before the flush
        let mut probe = [0u8; 16];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut probe)).await;
        assert!(early.is_err(), "bytes left before the flush");
        let big = vec![b'x'; 3 * MAX_BUFFERED];
        c.write_all(&big).await.unwrap(); // past the limit: drained on the way
        c.write_all(b" end").await.unwrap();
        c.flush().await.unwrap();
        c.shutdown().await.unwrap();
        drop(c);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 8 + big.len() + 4);
        assert!(got.starts_with(b"one two xx") && got.ends_with(b"x end"));
    }
}
