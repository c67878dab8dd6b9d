//! Keep-alive connections to the backends: one pool per worker thread, and pic2's own
//! HTTP/1.1 client on them ([`wire`] holds its parsing and framing, without I/O).
//!
//! Why not hyper's client: its connection is a dispatcher fed through a channel, built for
//! a task of its own. Even driven by the request's task, as pic2 did, the channel, the
//! dispatcher's states and the parsing into its own types were a quarter of the proxy's
//! user-space CPU under h2load (perf, 2026-11-26); this client is a tenth, and took h2load
//! from 0.78x to 0.86x HAProxy's req/s. A request writes its head in one write, reads the
//! answer's head into the connection's buffer, and the answer's body reads the rest from the
//! same buffer and socket, in the client connection's task throughout.
//!
//! A connection goes back to the pool only when everything is known to be in order: the
//! request was sent whole, the answer read to its announced end (length or last chunk),
//! nothing more arrived, and the backend did not ask to close. Anything else closes it: a
//! wrong guess would hand the rest of one answer to the next client. An idle connection is
//! polled by nobody; it is looked at when taken (closed by the backend meanwhile: dropped,
//! next one), and a request without body that got no byte back on a reused connection is
//! sent again, once, on a fresh one, when its method is idempotent (RFC 9110 §9.2.2): a
//! backend closing an idle connection as the request leaves must not cost the client a 502,
//! and one that dies on a request must not get it once per pooled connection.
//!
//! WebSocket upgrades still go through hyper's client, on a connection of their own.

mod wire;

pub(crate) use wire::{connection_tokens, named_by_connection, HOP_BY_HOP};

use crate::http::{full, Body, BoxError};
use crate::stall::{StallClock, Stalled};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::{Chunked, Decoded, Head, Malformed, RequestBody, ResponseBody, ResponseHead};

/// Idle connections kept per backend, and how long one may stay idle: the runtimes' Apache
/// closes its own after 5 s (`KeepAliveTimeout`'s default), so we let go first; a busy site
/// reuses them long before.
const MAX_IDLE_PER_BACKEND: usize = 512;
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// How often the idle connections past the timeout are closed (nobody polls them, so one the
/// backend closed lingers in CLOSE_WAIT until then).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's read buffer: room for a usual answer's head and a small body in one read
/// (hyper's first size too).
const READ_SIZE: usize = 8 * 1024;
/// The most a read of a large body asks for at once, and the most a connection keeps when
/// it goes back to the pool: hyper's default buffer grew to ~400 KB on large bodies and every
/// idle connection kept it (capping it at 64 KB halved RSS on bench/proxy's 100 KB answers).
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
    Io {
        backend: String,
        source: std::io::Error,
    },
    #[error("{backend} closed the connection before its answer's head")]
    Closed { backend: String },
    #[error("{backend} did not answer within the backend timeout")]
    Timeout { backend: String },
    #[error("{backend} answered something pic2 cannot forward safely: {source}")]
    Malformed { backend: String, source: Malformed },
    /// The client's body failed: cut short, or over the site's limit (413).
    #[error("the request's body: {source}")]
    RequestBody { source: BoxError },
    /// hyper's client, which carries upgrades (WebSockets), failed.
    #[error("{backend}: {source}")]
    Http {
        backend: String,
        source: hyper::Error,
    },
}

/// Where a site's requests go: the backend's address, and the pool its idle connections
/// wait in. Sites share a pool only when one connection may serve them in turn: an mpm-itk
/// runtime ties a connection to the owner (uid) of its first request and closes it,
/// unanswered, when asked for another owner's site (a POST, never sent twice, then got a
/// 502), so `pic2 render` names a runtime site's owner as its route's pool.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`.
    pub addr: Arc<str>,
    /// The pool's key: the address and the pool's name.
    pool: Arc<str>,
}

impl Target {
    pub fn new(addr: &str, pool: &str) -> Self {
        Target {
            addr: Arc::from(addr),
            pool: Arc::from(format!("{addr} {pool}")),
        }
    }

    /// The key of the pool its idle connections wait in.
    pub fn pool_key(&self) -> &str {
        &self.pool
    }
}

/// A backend connection and what has been read from it and not used yet.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

struct Idle {
    conn: Conn,
    since: Instant,
    /// The routes' generation it was given back under.
    generation: u64,
}

/// Idle connections by pool ([`Target`]), looked up twice a request: with a fast hasher
/// (the keys are the routes' own, never a client's).
type Pools = HashMap<Arc<str>, Vec<Idle>, foldhash::fast::RandomState>;

/// A worker's pools (cheap to clone). Only its own thread uses it: the lock is never
/// contended, it is there because hyper wants services that could move between threads.
#[derive(Clone, Default)]
pub struct Backends {
    idle: Arc<Mutex<Pools>>,
    /// Bumped by every reload of the routes: a connection idle from before is not taken
    /// again. `pic2 apply` writes the routes once the runtimes have reloaded gracefully,
    /// and an old child of Apache serves its kept-alive connection to its end with the old
    /// configuration (a site just added: its 404, for as long as requests keep it alive).
    generation: Arc<AtomicU64>,
    /// The worker's timers for the waits on a backend's answer ([`crate::deadline`]).
    pub(crate) timers: crate::deadline::Timers,
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

    /// Pools whose idle connections are let go when `generation` changes.
    pub(crate) fn following(generation: Arc<AtomicU64>) -> Self {
        Backends {
            generation,
            ..Self::default()
        }
    }

    /// Sends `req` (origin-form URI, Host set, hop-by-hop headers removed) to `backend`
    /// (`host:port`) on a kept-alive connection or a new one; `more_headers` writes header
    /// lines of the caller's into the head, after `req`'s. The answer's body reads the rest
    /// from the connection, and gives it back to the pool once read to its end.
    ///
    /// The head is written before the future is made: the request's headers and the
    /// caller's writer are gone by its first wait, and not part of every request's future.
    ///
    /// `waiting`, the backend timeout, bounds every wait on the backend: for its answer's
    /// head once the request is sent whole, for the next byte of a request's body it takes
    /// (an upload on a slow link may take longer in all) and of its answer's body.
    pub fn send<'a>(
        &'a self,
        to: &'a Target,
        req: Request<Body>,
        more_headers: impl FnOnce(&mut Vec<u8>),
        waiting: Duration,
    ) -> impl std::future::Future<Output = Result<Response<Body>, Error>> + Send + 'a {
        let (parts, body) = req.into_parts();
        let framing = request_framing(&parts, &body);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(512 + 64 * parts.headers.len());
        wire::encode_request_head(
            &mut head,
            &parts.method,
            path,
            &parts.headers,
            more_headers,
            framing,
        );
        self.send_head(to, parts.method, head, body, framing, waiting)
    }

    async fn send_head(
        &self,
        to: &Target,
        method: Method,
        head: Vec<u8>,
        body: Body,
        framing: RequestBody,
        waiting: Duration,
    ) -> Result<Response<Body>, Error> {
        if !framing.is_empty() {
            // sent once: its body is read as it goes. Boxed: the less usual path, which
            // would make every request's future larger
            let upload = Upload::new(head.into(), body, framing);
            return Box::pin(self.send_with_body(to, &method, upload, waiting)).await;
        }
        let answered = self
            .timers
            .timeout(waiting, self.send_without_body(to, &method, &head))
            .await;
        let (conn, answer) = answered.unwrap_or_else(|_| Err(Cause::Timeout.with(&to.addr)))?;
        Ok(self.answer(to, conn, answer, None, waiting))
    }

    /// Sent again once, on a fresh connection, when a reused one gave nothing back (the
    /// backend closed it as the request left) and the method is idempotent.
    async fn send_without_body(
        &self,
        to: &Target,
        method: &Method,
        head: &[u8],
    ) -> Result<(Conn, ResponseHead), Error> {
        let mut pooled = true;
        loop {
            let once = !method.is_idempotent();
            let (mut conn, reused) = self.take_or_connect(to, pooled, once).await?;
            match conn.exchange(head, method).await {
                Ok(answer) => return Ok((conn, answer)),
                Err(f) if f.nothing_back && reused && method.is_idempotent() => {
                    pooled = false;
                }
                Err(f) => return Err(f.cause.with(&to.addr)),
            }
        }
    }

    async fn send_with_body(
        &self,
        to: &Target,
        method: &Method,
        upload: Upload,
        waiting: Duration,
    ) -> Result<Response<Body>, Error> {
        // a body is never sent twice
        let (mut conn, _) = self.take_or_connect(to, true, true).await?;
        let (answer, upload) = conn
            .exchange_with_body(upload, method, waiting)
            .await
            .map_err(|f| f.cause.with(&to.addr))?;
        Ok(self.answer(to, conn, answer, Some(upload), waiting))
    }

    /// The response for the client: its body reads the rest of the answer (and sends the
    /// rest of the request's), unless there is none; the connection goes back to the pool
    /// when it may.
    fn answer(
        &self,
        to: &Target,
        conn: Conn,
        head: ResponseHead,
        upload: Option<Upload>,
        waiting: Duration,
    ) -> Response<Body> {
        let home = head.reusable.then(|| Home {
            pools: self.clone(),
            pool: Arc::clone(&to.pool),
        });
        let reading = match head.body {
            ResponseBody::None | ResponseBody::Length(0) => Reading::Done,
            ResponseBody::Length(n) => Reading::Length(n),
            ResponseBody::Chunked => Reading::Chunked(Chunked::default()),
            ResponseBody::UntilClose => Reading::UntilClose,
        };
        let mut answer = Answer {
            conn: Some(conn),
            reading,
            upload,
            home,
            stall: StallClock::new(waiting),
        };
        let body = if answer.reading == Reading::Done {
            answer.finish();
            full(Bytes::new())
        } else {
            http_body_util::BodyExt::boxed(answer)
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        resp
    }

    /// Sends an upgrade request (WebSocket) on a connection of its own, through hyper's
    /// client, driven by its own task until both sides let go of the upgraded stream.
    pub async fn send_upgrade(
        &self,
        backend: &str,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, Error> {
        let Conn { stream, .. } = Box::pin(connect(backend)).await?;
        let http = |source| Error::Http {
            backend: backend.to_owned(),
            source,
        };
        let (mut sender, conn): (SendRequest<Body>, _) = http1::Builder::new()
            .max_buf_size(MAX_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(conn.with_upgrades());
        sender.send_request(req).await.map_err(http)
    }

    /// An idle connection of `to`'s pool (when `pooled`) or a new one, and whether it was
    /// idle. For a request that `once` can be sent, an idle one is checked for sure.
    async fn take_or_connect(
        &self,
        to: &Target,
        pooled: bool,
        once: bool,
    ) -> Result<(Conn, bool), Error> {
        match pooled.then(|| self.take(&to.pool, once)).flatten() {
            Some(conn) => Ok((conn, true)),
            // boxed: a cold path that would otherwise make every request's future (moved on
            // each spawn) larger
            None => Ok((Box::pin(connect(&to.addr)).await?, false)),
        }
    }

    /// The most recently used idle connection of `pool` that is still open ([`still_open`]
    /// `for_sure`).
    fn take(&self, pool: &str, for_sure: bool) -> Option<Conn> {
        loop {
            let idle = {
                let mut pools = self.idle.lock().ok()?;
                pools.get_mut(pool)?.pop()?
            };
            if idle.since.elapsed() <= IDLE_TIMEOUT
                && idle.generation == self.generation.load(Relaxed)
                && still_open(&idle.conn.stream, for_sure)
            {
                return Some(idle.conn);
            }
        }
    }

    fn give_back(&self, pool: Arc<str>, mut conn: Conn) {
        if conn.buf.capacity() > MAX_READ_BUFFER {
            conn.buf = BytesMut::new();
        }
        let Ok(mut pools) = self.idle.lock() else {
            return;
        };
        let list = pools.entry(pool).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle {
                conn,
                since: Instant::now(),
                generation: self.generation.load(Relaxed),
            });
        }
    }

    /// Closes the connections idle for longer than the timeout (run now and then, so that a
    /// backend nobody visits does not keep sockets open).
    pub fn sweep(&self) {
        let Ok(mut pools) = self.idle.lock() else {
            return;
        };
        let generation = self.generation.load(Relaxed);
        for list in pools.values_mut() {
            list.retain(|i| i.since.elapsed() <= IDLE_TIMEOUT && i.generation == generation);
        }
        pools.retain(|_, list| !list.is_empty());
    }
}

/// How the request's body goes to the backend. A length is trusted when the client declared
/// one (hyper and h2 hold the body to it): `Limited` also gives one when the site's limit is
/// all that is left, which is not the body's. A GET or HEAD of unknown length (an HTTP/2
/// stream whose head did not end it) goes without a body, as hyper's client sent it:
/// backends and firewalls refuse one.
fn request_framing(parts: &hyper::http::request::Parts, body: &Body) -> RequestBody {
    use hyper::body::Body as _;
    let declared = parts.headers.contains_key(header::CONTENT_LENGTH);
    let exact = if body.is_end_stream() {
        Some(0)
    } else if declared {
        body.size_hint().exact()
    } else if parts.method == Method::GET || parts.method == Method::HEAD {
        Some(0)
    } else {
        None
    };
    RequestBody::of(exact, declared)
}

/// An idle connection with nothing to read is open. One the backend closed (or wrote to
/// unasked) is readable: a look at one byte tells. No system call in the usual case: the
/// last read of an answer was short, which cleared tokio's readiness.
///
/// `for_sure` looks at the socket itself, a system call, for a request that cannot be sent
/// twice (a POST): tokio's readiness is only as fresh as the worker's last look at its
/// events, and a close the backend sent since (Apache's keep-alive timeout counts from its
/// last write, which a slow client's download can put seconds before ours) would cost the
/// request a 502. A request that can be sent again is, on a fresh connection.
fn still_open(stream: &TcpStream, for_sure: bool) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending if !for_sure => true,
        Poll::Ready(Err(_)) => false,
        Poll::Pending | Poll::Ready(Ok(())) => nothing_to_read(stream),
    }
}

/// Whether the socket has nothing to read and is not closed, without taking a byte.
fn nothing_to_read(stream: &TcpStream) -> bool {
    use rustix::net::RecvFlags;
    matches!(
        rustix::net::recv(stream, &mut [0u8; 1], RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Err(rustix::io::Errno::AGAIN)
    )
}

async fn connect(backend: &str) -> Result<Conn, Error> {
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
    Ok(Conn {
        stream,
        buf: BytesMut::new(),
    })
}

/// The most 1xx answers passed over before a final one (a backend sending them for ever
/// would keep a worker parsing them for the whole backend timeout).
const MAX_INTERIM: u8 = 8;

/// What reading an answer's head has seen so far.
#[derive(Debug, Default)]
struct HeadRead {
    /// A byte came back.
    anything: bool,
    /// The buffer's bytes already parsed without a whole head in them.
    parsed: usize,
    /// 1xx answers passed over.
    interim: u8,
}

impl HeadRead {
    fn nothing_back(&self) -> bool {
        !self.anything
    }
}

/// Why an exchange failed, and whether anything at all came back (a request that got no
/// byte on a reused connection may be sent again).
struct Failed {
    cause: Cause,
    nothing_back: bool,
}

enum Cause {
    Io(std::io::Error),
    Closed,
    Timeout,
    Malformed(Malformed),
    RequestBody(BoxError),
}

impl Cause {
    fn with(self, backend: &str) -> Error {
        let backend = backend.to_owned();
        match self {
            Cause::Io(source) => Error::Io { backend, source },
            Cause::Closed => Error::Closed { backend },
            Cause::Timeout => Error::Timeout { backend },
            Cause::Malformed(source) => Error::Malformed { backend, source },
            Cause::RequestBody(source) => Error::RequestBody { source },
        }
    }
}

impl Failed {
    fn io(e: std::io::Error) -> Self {
        Failed {
            cause: Cause::Io(e),
            nothing_back: true,
        }
    }
}

impl Conn {
    /// Writes a request without body and reads the answer's head.
    async fn exchange(&mut self, head: &[u8], method: &Method) -> Result<ResponseHead, Failed> {
        self.stream.write_all(head).await.map_err(Failed::io)?;
        let mut read = HeadRead::default();
        poll_fn(|cx| self.poll_head(method, &mut read, cx)).await
    }

    /// Sends the request and its body while the answer's head is awaited: a backend may
    /// answer before it has read it all (a 401 or 413 to an upload, or an echo that streams
    /// back as it reads). What is left of the body then goes on with the answer's body.
    ///
    /// `waiting` bounds each wait on the backend, not the whole exchange: an upload on a
    /// slow link may take longer than that in all, and the backend then has the whole time
    /// to answer once it is sent.
    async fn exchange_with_body(
        &mut self,
        mut upload: Upload,
        method: &Method,
        waiting: Duration,
    ) -> Result<(ResponseHead, Upload), Failed> {
        let mut read = HeadRead::default();
        let mut stall = StallClock::new(waiting);
        let head = poll_fn(|cx| {
            match upload.poll_send(&mut self.stream, cx) {
                Ok(sent) if sent.backend_not_late() => stall.progressed(),
                Ok(_) => {}
                // the client's body failed (cut short, over the site's limit): no answer
                Err(cause) => {
                    return Poll::Ready(Err(Failed {
                        cause,
                        nothing_back: read.nothing_back(),
                    }))
                }
            }
            let head = self.poll_head(method, &mut read, cx);
            stall.time(cx, head).map(|timed| {
                timed.unwrap_or_else(|Stalled| {
                    Err(Failed {
                        cause: Cause::Timeout,
                        nothing_back: read.nothing_back(),
                    })
                })
            })
        })
        .await?;
        Ok((head, upload))
    }

    /// Reads until a final answer's head is whole (up to [`MAX_INTERIM`] 1xx answers are read
    /// and passed over); `read` keeps what was seen across polls.
    fn poll_head(
        &mut self,
        method: &Method,
        read: &mut HeadRead,
        cx: &mut Context<'_>,
    ) -> Poll<Result<ResponseHead, Failed>> {
        let Conn { stream, buf } = self;
        let malformed = |e| {
            Poll::Ready(Err(Failed {
                cause: Cause::Malformed(e),
                nothing_back: false,
            }))
        };
        loop {
            // a head ends with a line: bytes without one cannot end it, and parsing it all
            // again for each (a head trickled a byte at a time) would cost its square; past
            // the size limit, the parse says so
            let new_line = buf
                .get(read.parsed..)
                .is_some_and(|new| new.contains(&b'\n'));
            if new_line || buf.len() >= wire::MAX_RESPONSE_HEAD {
                read.parsed = buf.len();
                match wire::parse_response_head(buf, method) {
                    Ok(Head::Complete(head)) => return Poll::Ready(Ok(head)),
                    Ok(Head::Informational) if read.interim >= MAX_INTERIM => {
                        return malformed(Malformed::Head("too many 1xx answers"));
                    }
                    Ok(Head::Informational) => {
                        read.interim += 1;
                        read.parsed = 0;
                        continue;
                    }
                    Ok(Head::Partial) => {}
                    Err(e) => return malformed(e),
                }
            }
            make_room(buf, READ_SIZE);
            let got = tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, buf);
            let cause = match ready!(got) {
                Ok(0) => Cause::Closed,
                Ok(_) => {
                    read.anything = true;
                    continue;
                }
                Err(e) => Cause::Io(e),
            };
            return Poll::Ready(Err(Failed {
                cause,
                nothing_back: read.nothing_back(),
            }));
        }
    }
}

/// Room in `buf` for a read of at least a few kilobytes, `want` when it must grow.
fn make_room(buf: &mut BytesMut, want: usize) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(want.clamp(READ_SIZE, MAX_READ_BUFFER));
    }
}

/// A request's head and body on their way to the backend, written as the socket takes them,
/// in the task that reads the answer (no task of its own).
struct Upload {
    body: Body,
    framing: RequestBody,
    written: u64,
    /// Taken and not written yet: the head, then the body's data with its chunk framing.
    out: VecDeque<Bytes>,
    body_done: bool,
    state: UploadState,
}

/// What a turn of [`Upload::poll_send`] did: whether the backend took bytes, and whether
/// the upload now waits on the client's body (else on the backend, or it is over).
#[derive(Clone, Copy, Debug)]
struct Sent {
    taken: bool,
    on_client: bool,
}

impl Sent {
    /// The backend is not the one late: it took bytes, or the upload waits on the client
    /// (whose own clock, `body_read_timeout`, times that wait). The backend's clock then
    /// starts afresh.
    fn backend_not_late(self) -> bool {
        self.taken || self.on_client
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UploadState {
    Sending,
    Whole,
    /// The backend stopped taking it (it may have answered already), or the client's body
    /// failed: the connection is not kept.
    Abandoned,
}

impl Upload {
    fn new(head: Bytes, body: Body, framing: RequestBody) -> Self {
        Upload {
            body,
            framing,
            written: 0,
            out: VecDeque::from([head]),
            body_done: false,
            state: UploadState::Sending,
        }
    }

    fn sent_whole(&self) -> bool {
        self.state == UploadState::Whole
    }

    /// Writes what the socket takes now; never the only thing a caller waits on. Says
    /// whether the backend took bytes, and who the upload waits on. An error is the
    /// client's body failing; the backend not reading any more only ends the upload.
    fn poll_send(&mut self, stream: &mut TcpStream, cx: &mut Context<'_>) -> Result<Sent, Cause> {
        let mut taken = false;
        loop {
            if self.state != UploadState::Sending {
                return Ok(Sent {
                    taken,
                    on_client: false,
                });
            }
            if !self.out.is_empty() {
                let slices: Vec<IoSlice<'_>> =
                    self.out.iter().take(4).map(|b| IoSlice::new(b)).collect();
                match Pin::new(&mut *stream).poll_write_vectored(cx, &slices) {
                    Poll::Pending => {
                        return Ok(Sent {
                            taken,
                            on_client: false,
                        })
                    }
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.consume(n);
                        taken = true;
                    }
                    Poll::Ready(_) => self.abandon(),
                }
                continue;
            }
            if self.body_done {
                self.state = UploadState::Whole;
                continue;
            }
            match hyper::body::Body::poll_frame(Pin::new(&mut self.body), cx) {
                // the client's own clock (`body_read_timeout`) times this wait
                Poll::Pending => {
                    return Ok(Sent {
                        taken,
                        on_client: true,
                    })
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // trailers are not forwarded to HTTP/1 backends
                    if let Ok(data) = frame.into_data() {
                        self.take(data)?;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.abandon();
                    return Err(Cause::RequestBody(e));
                }
                Poll::Ready(None) => self.end()?,
            }
        }
    }

    /// Queues a piece of the body, framed; more than the announced length is refused before
    /// a byte of it leaves.
    fn take(&mut self, data: Bytes) -> Result<(), Cause> {
        if data.is_empty() {
            return Ok(());
        }
        self.written += data.len() as u64;
        match self.framing {
            RequestBody::Length(n) if self.written > n => {
                self.abandon();
                return Err(Cause::RequestBody(
                    format!("more than the {n} bytes announced").into(),
                ));
            }
            RequestBody::Chunked => {
                self.out.push_back(wire::chunk_header(data.len()));
                self.out.push_back(data);
                self.out.push_back(Bytes::from_static(wire::CHUNK_END));
            }
            _ => self.out.push_back(data),
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), Cause> {
        match self.framing {
            RequestBody::Chunked => self.out.push_back(Bytes::from_static(wire::LAST_CHUNK)),
            RequestBody::Length(n) if n != self.written => {
                self.abandon();
                return Err(Cause::RequestBody(
                    format!("{} bytes where {n} were announced", self.written).into(),
                ));
            }
            _ => {}
        }
        self.body_done = true;
        Ok(())
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, mut n: usize) {
        while let Some(front) = self.out.front_mut() {
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.out.pop_front();
        }
    }

    fn abandon(&mut self) {
        self.state = UploadState::Abandoned;
        self.out.clear();
    }
}

/// Where a connection goes back to once its answer has been read.
struct Home {
    pools: Backends,
    /// The site's pool key, shared: no copy per request.
    pool: Arc<str>,
}

/// What a poll of a body gives.
type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// How much of the answer's body is left.
#[derive(PartialEq, Eq)]
enum Reading {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// An answer's body, read from its backend connection as the client takes it. Read to its
/// end, the connection goes back to the pool (with a home: the exchange left it in order);
/// dropped before, the connection is closed with it.
struct Answer {
    conn: Option<Conn>,
    reading: Reading,
    /// What is left to send of a request's body, sent as the answer is read.
    upload: Option<Upload>,
    home: Option<Home>,
    /// A read that waits the backend timeout for a byte fails the answer (a backend that
    /// stops in the middle of it would otherwise hold the client for ever).
    stall: StallClock,
}

impl Answer {
    /// The body is read: the connection goes home if it has one, the request went whole and
    /// nothing is left over.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        let sent = self.upload.take().is_none_or(|u| u.sent_whole());
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.take()) {
            if sent && conn.buf.is_empty() {
                home.pools.give_back(home.pool, conn);
            }
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Polled {
        self.conn = None;
        self.reading = Reading::Done;
        Poll::Ready(Some(Err(e.into())))
    }

    /// What the buffer holds of the body: `Some` is the poll's answer, `None` asks for a read.
    fn take_buffered(&mut self) -> Option<Polled> {
        let buf = &mut self.conn.as_mut()?.buf;
        let data = match &mut self.reading {
            Reading::Done => return Some(Poll::Ready(None)),
            Reading::Length(left) => {
                if buf.is_empty() {
                    return None;
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                let data = buf.split_to(take).freeze();
                if *left == 0 {
                    self.finish();
                }
                data
            }
            Reading::Chunked(decoder) => match next_piece(decoder, buf) {
                Ok(Decoded::Data(data)) => data,
                Ok(Decoded::NeedMore) => return None,
                Ok(Decoded::Done) => {
                    self.finish();
                    return Some(Poll::Ready(None));
                }
                Err(e) => return Some(self.fail(e)),
            },
            Reading::UntilClose if buf.is_empty() => return None,
            Reading::UntilClose => buf.split().freeze(),
        };
        Some(Poll::Ready(Some(Ok(Frame::data(data)))))
    }
}

/// A chunk this small is sent to the client with the data that follows it in the buffer
/// (the next chunks' data, whole or in part), up to [`MERGED_CHUNKS`] bytes: one frame each
/// would cost the worker a frame and, over HTTP/2, 9 bytes of head and h2's queue entry per
/// chunk (a backend writing one byte a chunk made its client's connection a stream of
/// one-byte frames). A chunk that starts a piece at this size or more goes on as it is,
/// without a copy.
const SMALL_CHUNK: usize = 4096;
const MERGED_CHUNKS: usize = 16 * 1024;

/// The decoder's next piece of `buf`: a chunk's data (a small one with what follows it,
/// [`merge_small_chunks`]), the end, or a request for more.
fn next_piece(decoder: &mut Chunked, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
    Ok(match decoder.decode(buf)? {
        Decoded::Data(data) if data.len() < SMALL_CHUNK => {
            Decoded::Data(merge_small_chunks(decoder, buf, data))
        }
        other => other,
    })
}

/// `first` and the data of the chunks after it that `buf` holds, copied into one piece up to
/// [`MERGED_CHUNKS`] (what stops it, the end or an error, is met again at the next decode:
/// the decoder stays where it was).
fn merge_small_chunks(decoder: &mut Chunked, buf: &mut BytesMut, first: Bytes) -> Bytes {
    let mut merged: Option<BytesMut> = None;
    loop {
        let room = MERGED_CHUNKS - merged.as_ref().map_or(first.len(), BytesMut::len);
        let Ok(Decoded::Data(next)) = decoder.decode_at_most(buf, room) else {
            break;
        };
        merged
            .get_or_insert_with(|| {
                let mut m = BytesMut::with_capacity(MERGED_CHUNKS);
                m.extend_from_slice(&first);
                m
            })
            .extend_from_slice(&next);
        if room == next.len() {
            break; // full
        }
    }
    merged.map_or(first, BytesMut::freeze)
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        if let (Some(upload), Some(conn)) = (this.upload.as_mut(), this.conn.as_mut()) {
            match upload.poll_send(&mut conn.stream, cx) {
                // its answer's next byte may wait until the body is all in
                Ok(sent) if sent.backend_not_late() => this.stall.progressed(),
                Ok(_) => {}
                // the client's body failed after the answer began (cut short, over the
                // limit, stopped): the upload is abandoned and the connection not kept; the
                // backend is told at once (end of its input) rather than left waiting
                Err(_) => {
                    let _ = Pin::new(&mut conn.stream).poll_shutdown(cx);
                }
            }
        }
        loop {
            if let Some(answer) = this.take_buffered() {
                return answer;
            }
            let want = match this.reading {
                Reading::Length(left) => usize::try_from(left).unwrap_or(usize::MAX),
                _ => MAX_READ_BUFFER,
            };
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            make_room(&mut conn.buf, want);
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf);
            let Ok(read) = ready!(this.stall.time(cx, read)) else {
                return this.fail("the backend sent nothing for the backend timeout");
            };
            match read {
                Ok(0) if this.reading == Reading::UntilClose => {
                    this.conn = None;
                    this.reading = Reading::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail("the backend closed before the end of its answer"),
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done | Reading::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(left) => SizeHint::with_exact(left),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt, Full, Limited};

    /// Decodes `wire` as `take_buffered` does, small chunks merged: the pieces given, then
    /// what stopped the decoder.
    fn merged(wire: &[u8]) -> (Vec<Vec<u8>>, Result<Decoded, Malformed>) {
        let mut d = Chunked::default();
        let mut buf = BytesMut::from(wire);
        let mut pieces = Vec::new();
        loop {
            match next_piece(&mut d, &mut buf) {
                Ok(Decoded::Data(data)) => pieces.push(data.to_vec()),
                other => return (pieces, other),
            }
        }
    }

    #[test]
    fn small_chunks_merge_in_order_and_what_ends_them_still_comes() {
        // distinct bytes, so that a reordering shows
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for i in 0..300u16 {
            let b = u8::try_from(i % 251).unwrap();
            wire.extend_from_slice(b"1\r\n");
            wire.push(b);
            wire.extend_from_slice(b"\r\n");
            want.push(b);
        }
        let mut with_trailers = wire.clone();
        with_trailers.extend_from_slice(b"0\r\nX-T: 1\r\n\r\n");
        let (pieces, end) = merged(&with_trailers);
        assert_eq!(pieces.concat(), want);
        assert_eq!(pieces.len(), 1, "300 one-byte chunks in one piece");
        assert_eq!(end, Ok(Decoded::Done), "the end, after its trailers");
        // a bad size line after merged data: the data first, then the error
        let mut bad = wire.clone();
        bad.extend_from_slice(b"zz\r\n");
        let (pieces, end) = merged(&bad);
        assert_eq!(pieces.concat(), want);
        assert!(end.is_err(), "{end:?}");
        // a chunk cut at the end of the buffer: its first part merged, the rest asked for
        let mut cut = wire.clone();
        cut.extend_from_slice(b"a\r\n01234");
        let (pieces, end) = merged(&cut);
        assert_eq!(pieces.concat(), [&want[..], b"01234"].concat());
        assert_eq!(end, Ok(Decoded::NeedMore));
        // a large chunk after a small one: merged up to MERGED_CHUNKS, then on its own
        let big = vec![7u8; 40_000];
        let mut wire = b"1\r\nx\r\n".to_vec();
        wire.extend_from_slice(format!("{:x}\r\n", big.len()).as_bytes());
        wire.extend_from_slice(&big);
        wire.extend_from_slice(b"\r\n0\r\n\r\n");
        let (pieces, end) = merged(&wire);
        assert_eq!(pieces.concat(), [&b"x"[..], &big].concat());
        assert_eq!(pieces[0].len(), MERGED_CHUNKS);
        assert_eq!(end, Ok(Decoded::Done));
    }

    /// A close that arrived after the worker last looked at its events: tokio's readiness
    /// has not seen it, the socket has. A request that cannot be sent twice looks at the
    /// socket.
    #[tokio::test]
    async fn a_close_the_worker_has_not_seen_is_found_for_a_request_sent_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().unwrap();
        assert!(still_open(&ours, true), "open");
        drop(peer);
        // no await from here: the runtime does not look at its events
        std::thread::sleep(Duration::from_millis(50));
        assert!(still_open(&ours, false), "tokio's readiness is as it was");
        assert!(!still_open(&ours, true), "the socket tells");
    }

    fn framing(method: Method, length: Option<&'static str>, body: Body) -> RequestBody {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        if let Some(l) = length {
            let value = header::HeaderValue::from_static(l);
            req.headers_mut().insert(header::CONTENT_LENGTH, value);
        }
        let (parts, body) = req.into_parts();
        request_framing(&parts, &body)
    }

    /// A body whose length nobody knows (a chunked upload, an HTTP/2 stream without length).
    struct Unknown;

    impl hyper::body::Body for Unknown {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Polled {
            Poll::Ready(None)
        }
    }

    #[test]
    fn a_requests_framing_comes_from_what_the_client_declared() {
        let hello = Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed();
        assert_eq!(
            framing(Method::POST, Some("5"), hello),
            RequestBody::Length(5)
        );
        assert_eq!(
            framing(Method::POST, None, Unknown.boxed()),
            RequestBody::Chunked
        );
        // an HTTP/2 GET whose head did not end its stream: no body, as hyper's client sent it
        assert!(framing(Method::GET, None, Unknown.boxed()).is_empty());
        // a site limit of 0 bytes: Limited's exact(0) is not the body's length; the body must
        // be read (and refused), not dropped
        let limited = Limited::new(Unknown, 0).boxed();
        assert_eq!(framing(Method::POST, None, limited), RequestBody::Chunked);
    }
}
