//! Keep-alive connections to the backends: one pool per worker thread, and each connection
//! driven by the request that uses it.
//!
//! Why not hyper_util's pooled client: it drives every backend connection in a task of its
//! own, so each request crosses tasks four times (request out, response head, each body
//! chunk, back to the pool), each crossing a trip through the scheduler's queue. Here the
//! request's own task polls the connection while it waits for the head, and the response
//! body polls it while the client connection reads the body: one task from the first byte to
//! the last. An idle connection is polled by nobody; it is checked when taken (closed by the
//! backend meanwhile: dropped, next one) and a request that never left is sent again on a
//! fresh connection, as hyper_util does.

use crate::http::{Body, BoxError};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Boxed once per connection: the dispatcher is large, and requests' futures move it.
type Conn = Pin<Box<Connection<TokioIo<TcpStream>, Body>>>;

/// Idle connections kept per backend, and how long one may stay idle: the runtimes' Apache
/// closes its own after 5 s (`KeepAliveTimeout`'s default), so we let go first; a busy site
/// reuses them long before.
const MAX_IDLE_PER_BACKEND: usize = 512;
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// How often the idle connections past the timeout are closed (nobody polls them, so one the
/// backend closed lingers in CLOSE_WAIT until then).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The read buffer of a backend connection grows up to this (hyper's default, ~400 KB, is
/// reached on large bodies, and kept by every idle connection): 64 KB halved the proxy's
/// RSS on bench/proxy's 100 KB answers (38 -> 23 MB) at the same req/s. It also caps a
/// response head, far above nginx's own limit (proxy_buffer_size, 4-8 KB).
const MAX_READ_BUFFER: usize = 64 * 1024;

/// Why a backend request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {backend}: {source}")]
    Connect {
        backend: String,
        source: std::io::Error,
    },
    #[error("connecting to {backend} timed out")]
    ConnectTimeout { backend: String },
    #[error("{backend}: {source}")]
    Http {
        backend: String,
        source: hyper::Error,
    },
}

impl Error {
    /// The underlying hyper error, to tell a body over its limit from a broken backend.
    pub fn hyper(&self) -> Option<&hyper::Error> {
        match self {
            Error::Http { source, .. } => Some(source),
            _ => None,
        }
    }
}

struct Idle {
    sender: SendRequest<Body>,
    conn: Conn,
    since: Instant,
}

/// A worker's pools (cheap to clone). Only its own thread uses it: the lock is never
/// contended, it is there because hyper wants services that could move between threads.
#[derive(Clone, Default)]
pub struct Backends {
    idle: Arc<Mutex<HashMap<String, Vec<Idle>>>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

impl Backends {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` (origin-form URI, Host set) to `backend` (`host:port`) on a kept-alive
    /// connection or a new one. The response's body keeps driving the connection and gives
    /// it back to the pool once read to its end.
    pub async fn send(
        &self,
        backend: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Error> {
        loop {
            let (reused, mut sender, conn) = match self.take(backend).await {
                Some((sender, conn)) => (true, sender, conn),
                None => {
                    // boxed: a cold path that would otherwise make every request's future
                    // (moved on each spawn) several kilobytes larger
                    let (sender, conn) = Box::pin(connect(backend)).await?;
                    (false, sender, conn)
                }
            };
            let mut conn = Some(conn);
            let mut answer = std::pin::pin!(sender.try_send_request(req));
            let answer = poll_fn(|cx| {
                if let Some(c) = conn.as_mut() {
                    if c.as_mut().poll(cx).is_ready() {
                        conn = None; // ended: the answer now resolves with its error
                    }
                }
                answer.as_mut().poll(cx)
            })
            .await;
            match answer {
                Ok(resp) => {
                    let home = Some(Home {
                        pools: self.clone(),
                        backend: backend.to_owned(),
                    });
                    return Ok(resp.map(|body| {
                        Driven {
                            body,
                            conn: conn.map(|c| (sender, c)),
                            ended: false,
                            home,
                        }
                        .boxed()
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // never sent, on a connection the backend had closed: again, afresh
                    Some(unsent) if reused => req = unsent,
                    _ => {
                        return Err(Error::Http {
                            backend: backend.to_owned(),
                            source: e.into_error(),
                        })
                    }
                },
            }
        }
    }

    /// Sends an upgrade request (WebSocket) on a connection of its own, driven by its own
    /// task until both sides let go of the upgraded stream.
    pub async fn send_upgrade(
        &self,
        backend: &str,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, Error> {
        let (mut sender, conn) = Box::pin(connect(backend)).await?;
        tokio::spawn(Pin::into_inner(conn).with_upgrades());
        sender
            .send_request(req)
            .await
            .map_err(|source| Error::Http {
                backend: backend.to_owned(),
                source,
            })
    }

    /// The most recently used idle connection to `backend` that is still open and ready.
    async fn take(&self, backend: &str) -> Option<(SendRequest<Body>, Conn)> {
        loop {
            let idle = {
                let mut pools = self.idle.lock().ok()?;
                let list = pools.get_mut(backend)?;
                list.pop()?
            };
            if idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            let Idle {
                mut sender,
                mut conn,
                ..
            } = idle;
            // One look: the connection has not ended and takes a request now.
            let usable = poll_fn(|cx| {
                if conn.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
                Poll::Ready(matches!(sender.poll_ready(cx), Poll::Ready(Ok(()))))
            })
            .await;
            if usable {
                return Some((sender, conn));
            }
        }
    }

    fn give_back(&self, backend: String, sender: SendRequest<Body>, conn: Conn) {
        let Ok(mut pools) = self.idle.lock() else {
            return;
        };
        let list = pools.entry(backend).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle {
                sender,
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle for longer than the timeout (run now and then, so that a
    /// backend nobody visits does not keep sockets open).
    pub fn sweep(&self) {
        let Ok(mut pools) = self.idle.lock() else {
            return;
        };
        for list in pools.values_mut() {
            list.retain(|i| i.since.elapsed() <= IDLE_TIMEOUT);
        }
        pools.retain(|_, list| !list.is_empty());
    }
}

async fn connect(backend: &str) -> Result<(SendRequest<Body>, Conn), Error> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend))
        .await
        .map_err(|_| Error::ConnectTimeout {
            backend: backend.to_owned(),
        })?
        .map_err(|source| Error::Connect {
            backend: backend.to_owned(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_READ_BUFFER)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| Error::Http {
            backend: backend.to_owned(),
            source,
        })?;
    Ok((sender, Box::pin(conn)))
}

/// Where a connection goes back to once its response has been read.
struct Home {
    pools: Backends,
    backend: String,
}

/// A response body that drives its backend connection while it is read, and returns the
/// connection to the pool when it has been read to the end (dropped otherwise: a body left
/// half-read leaves the connection in an unknown state).
struct Driven {
    body: Incoming,
    conn: Option<(SendRequest<Body>, Conn)>,
    ended: bool,
    home: Option<Home>,
}

impl hyper::body::Body for Driven {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some((_, conn)) = this.conn.as_mut() {
            if conn.as_mut().poll(cx).is_ready() {
                this.conn = None;
            }
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(BoxError::from))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        if !(self.ended || hyper::body::Body::is_end_stream(&self.body)) {
            return;
        }
        let (Some((mut sender, mut conn)), Some(home)) = (self.conn.take(), self.home.take())
        else {
            return;
        };
        // The response is read, but the request may not be: a backend that answers an upload
        // early (401, 413) before reading it. One look, with nobody to wake: only a
        // connection that takes a request now goes back; the other is closed, which also
        // lets the client's body go.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if conn.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        if let Poll::Ready(Ok(())) = sender.poll_ready(&mut cx) {
            home.pools.give_back(home.backend, sender, conn);
        }
    }
}

impl Driven {
    fn boxed(self) -> Body {
        http_body_util::BodyExt::boxed(self)
    }
}
