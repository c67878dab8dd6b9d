//! A response body that writes its request's access-log line once it is over: sent whole,
//! failed, or dropped because the client went away. The line then holds the bytes the body
//! handed to the connection (nginx's `$body_bytes_sent`, to a buffer's worth: a departed
//! client is credited with what was queued for it) and the time until then: the
//! Content-Length alone left every chunked answer, most PHP output, as `-`, which log
//! analysers (GoAccess) count as nothing. Lines come in the order requests end, each stamped
//! with its start (nginx's order too): a long download's comes after later requests'.

use crate::access_log::Entry;
use crate::http::{Body, BoxError};
use crate::server::Shared;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// `inner`, counted; its line is queued once, at its end or when it is dropped.
pub(crate) struct LoggedBody {
    inner: Body,
    sent: u64,
    /// Taken when the line is queued.
    line: Option<Line>,
}

/// The entry waiting for its bytes and its time.
struct Line {
    entry: Entry,
    started: Instant,
    shared: Arc<Shared>,
}

impl LoggedBody {
    /// `entry` is queued when `inner` ends, with its `bytes` and `elapsed` (from `started`)
    /// set then.
    pub(crate) fn new(inner: Body, entry: Entry, started: Instant, shared: Arc<Shared>) -> Self {
        let line = Line {
            entry,
            started,
            shared,
        };
        LoggedBody {
            inner,
            sent: 0,
            line: Some(line),
        }
    }

    fn finish(&mut self) {
        if let Some(Line {
            mut entry,
            started,
            shared,
        }) = self.line.take()
        {
            entry.bytes = Some(self.sent);
            entry.elapsed = started.elapsed();
            shared.access_log(&entry);
        }
    }
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                self.sent = self.sent.saturating_add(n);
            }
            Poll::Ready(None | Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // never polled to its end: a HEAD, a 304, or a client gone halfway
        self.finish();
    }
}
