//! An upgraded connection (a WebSocket) joined to its backend: bytes both ways until either
//! side closes, or until nothing has passed either way for the idle time (a client gone
//! without a word, a half-open TCP connection: without it such a tunnel lives forever).

use crate::idle::Activity;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copies between `a` and `b` until one ends or both are idle for `idle`.
pub(crate) async fn join<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut a = Active {
        inner: a,
        activity: activity.clone(),
    };
    let mut b = Active {
        inner: b,
        activity: activity.clone(),
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
        () = activity.idle_for(idle) => {
            tracing::debug!("tunnel closed after {} s without traffic", idle.as_secs());
        }
    }
}

/// A stream that records when bytes are read from it (what is written was read from the
/// other one).
struct Active<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // every byte written was read on the other side first, which counted it
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Traffic keeps the tunnel open past the idle time; silence closes it. (Real time, with
    /// margins of five: tokio's paused clock needs its test-util feature, which would also
    /// slow down the clock of the example bench/proxy measures.)
    #[tokio::test]
    async fn a_tunnel_lives_while_bytes_pass_and_ends_after_the_idle_time() {
        let (mut client, a) = tokio::io::duplex(1024);
        let (b, mut backend) = tokio::io::duplex(1024);
        let idle = Duration::from_secs(1);
        let t = tokio::spawn(join(a, b, idle));
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            backend.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
        assert!(
            !t.is_finished(),
            "closed while in use (a message every 0.2 s)"
        );
        let ended = tokio::time::timeout(Duration::from_secs(5), t).await;
        assert!(ended.is_ok(), "still open after 5 s of silence");
        let mut rest = Vec::new();
        assert_eq!(
            client.read_to_end(&mut rest).await.unwrap(),
            0,
            "the client saw the end"
        );
    }
}
