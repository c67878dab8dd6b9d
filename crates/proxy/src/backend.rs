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
//! sent again on a fresh one, when its method is idempotent (RFC 9110 §9.2.2), as nginx does.
//!
//! WebSocket upgrades still go through hyper's client, on a connection of their own.

mod wire;

use crate::http::{Body, BoxError};
use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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

/// A backend connection and what has been read from it and not used yet.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

struct Idle {
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

    /// Sends `req` (origin-form URI, Host set, hop-by-hop headers removed) to `backend`
    /// (`host:port`) on a kept-alive connection or a new one. The answer's body reads the
    /// rest from the connection, and gives it back to the pool once read to its end.
    pub async fn send(&self, backend: &str, req: Request<Body>) -> Result<Response<Body>, Error> {
        let (parts, body) = req.into_parts();
        let exact = hyper::body::Body::size_hint(&body)
            .exact()
            .or(hyper::body::Body::is_end_stream(&body).then_some(0));
        let framing = RequestBody::of(exact, parts.headers.contains_key(header::CONTENT_LENGTH));
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(256 + 64 * parts.headers.len());
        wire::encode_request_head(&mut head, &parts.method, path, &parts.headers, framing);
        let retryable = framing.is_empty() && parts.method.is_idempotent();
        let mut body = Some(body);
        loop {
            let (mut conn, reused) = match self.take(backend) {
                Some(conn) => (conn, true),
                // boxed: a cold path that would otherwise make every request's future
                // (moved on each spawn) larger
                None => (Box::pin(connect(backend)).await?, false),
            };
            let body = body.take().unwrap_or_else(empty);
            match conn.exchange(&head, framing, body, &parts.method).await {
                Ok((answer, sent_whole)) => {
                    return Ok(self.answer(backend, conn, answer, sent_whole));
                }
                Err(f) if f.nothing_back && reused && retryable => continue,
                Err(f) => return Err(f.cause.with(backend)),
            }
        }
    }

    /// The response for the client: its body reads the rest of the answer, unless there is
    /// none, and the connection goes back to the pool when it may.
    fn answer(&self, backend: &str, conn: Conn, head: ResponseHead, sent: bool) -> Response<Body> {
        let reusable = head.reusable && sent;
        let home = reusable.then(|| Home {
            pools: self.clone(),
            backend: backend.to_owned(),
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
            home,
        };
        let body = if answer.reading == Reading::Done {
            answer.finish();
            empty()
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

    /// The most recently used idle connection to `backend` that is still open.
    fn take(&self, backend: &str) -> Option<Conn> {
        loop {
            let idle = {
                let mut pools = self.idle.lock().ok()?;
                pools.get_mut(backend)?.pop()?
            };
            if idle.since.elapsed() <= IDLE_TIMEOUT && still_open(&idle.conn.stream) {
                return Some(idle.conn);
            }
        }
    }

    fn give_back(&self, backend: String, mut conn: Conn) {
        if conn.buf.capacity() > MAX_READ_BUFFER {
            conn.buf = BytesMut::new();
        }
        let Ok(mut pools) = self.idle.lock() else {
            return;
        };
        let list = pools.entry(backend).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle {
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

fn empty() -> Body {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// An idle connection with nothing to read is open. One the backend closed (or wrote to
/// unasked) is readable: a look at one byte tells. No system call in the usual case: the
/// last read of an answer was short, which cleared tokio's readiness.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => matches!(
            stream.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ),
    }
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

/// Why an exchange failed, and whether anything at all came back (a request that got no
/// byte on a reused connection may be sent again).
struct Failed {
    cause: Cause,
    nothing_back: bool,
}

enum Cause {
    Io(std::io::Error),
    Closed,
    Malformed(Malformed),
    RequestBody(BoxError),
}

impl Cause {
    fn with(self, backend: &str) -> Error {
        let backend = backend.to_owned();
        match self {
            Cause::Io(source) => Error::Io { backend, source },
            Cause::Closed => Error::Closed { backend },
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
    /// Writes the request and reads the answer's head. A body is sent while the head is
    /// awaited: a backend may answer before reading it all (401, 413), and that answer is
    /// the one the client gets. Also returns whether the request was sent whole.
    async fn exchange(
        &mut self,
        head: &[u8],
        framing: RequestBody,
        body: Body,
        method: &Method,
    ) -> Result<(ResponseHead, bool), Failed> {
        if framing.is_empty() {
            self.stream.write_all(head).await.map_err(Failed::io)?;
            let answer = read_head(&mut self.stream, &mut self.buf, method).await?;
            return Ok((answer, true));
        }
        // boxed: the less usual path, whose two futures would make every request's larger
        Box::pin(self.exchange_with_body(head, framing, body, method)).await
    }

    async fn exchange_with_body(
        &mut self,
        head: &[u8],
        framing: RequestBody,
        body: Body,
        method: &Method,
    ) -> Result<(ResponseHead, bool), Failed> {
        let Conn { stream, buf } = self;
        let (mut rd, mut wr) = stream.split();
        let sending = send_body(&mut wr, head, body, framing);
        let reading = read_head(&mut rd, buf, method);
        tokio::pin!(sending, reading);
        let mut sent = None;
        loop {
            tokio::select! {
                biased;
                answer = &mut reading => return Ok((answer?, sent == Some(true))),
                done = &mut sending, if sent.is_none() => match done {
                    Ok(()) => sent = Some(true),
                    Err(Failed { cause: Cause::RequestBody(e), nothing_back }) => {
                        return Err(Failed { cause: Cause::RequestBody(e), nothing_back })
                    }
                    // the backend stopped reading, and may have answered: read on
                    Err(_) => sent = Some(false),
                },
            }
        }
    }
}

/// Reads until a final answer's head is whole (1xx answers are read and passed over).
async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<ResponseHead, Failed> {
    let mut nothing_back = buf.is_empty();
    loop {
        if !buf.is_empty() {
            nothing_back = false;
            match wire::parse_response_head(buf, method) {
                Ok(Head::Complete(head)) => return Ok(head),
                Ok(Head::Informational) => continue,
                Ok(Head::Partial) => {}
                Err(e) => {
                    return Err(Failed {
                        cause: Cause::Malformed(e),
                        nothing_back,
                    })
                }
            }
        }
        make_room(buf, READ_SIZE);
        match rd.read_buf(buf).await {
            Ok(0) => {
                return Err(Failed {
                    cause: Cause::Closed,
                    nothing_back,
                })
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Failed {
                    cause: Cause::Io(e),
                    nothing_back,
                })
            }
        }
    }
}

/// Room in `buf` for a read of at least a few kilobytes, `want` when it must grow.
fn make_room(buf: &mut BytesMut, want: usize) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(want.clamp(READ_SIZE, MAX_READ_BUFFER));
    }
}

/// Writes the head and the body, framed by its length or in chunks.
async fn send_body<W: AsyncWrite + Unpin>(
    wr: &mut W,
    head: &[u8],
    mut body: Body,
    framing: RequestBody,
) -> Result<(), Failed> {
    use http_body_util::BodyExt;
    wr.write_all(head).await.map_err(Failed::io)?;
    let mut written: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failed {
            cause: Cause::RequestBody(e),
            nothing_back: true,
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not forwarded to HTTP/1 backends
        };
        if data.is_empty() {
            continue;
        }
        written += data.len() as u64;
        if framing == RequestBody::Chunked {
            wr.write_all(&wire::chunk_header(data.len()))
                .await
                .map_err(Failed::io)?;
            wr.write_all(&data).await.map_err(Failed::io)?;
            wr.write_all(wire::CHUNK_END).await.map_err(Failed::io)?;
        } else {
            wr.write_all(&data).await.map_err(Failed::io)?;
        }
    }
    match framing {
        RequestBody::Chunked => wr.write_all(wire::LAST_CHUNK).await.map_err(Failed::io),
        RequestBody::Length(n) if n != written => Err(Failed {
            cause: Cause::RequestBody(format!("{written} bytes where {n} were announced").into()),
            nothing_back: true,
        }),
        _ => Ok(()),
    }
}

/// Where a connection goes back to once its answer has been read.
struct Home {
    pools: Backends,
    backend: String,
}

/// What a poll of a body gives.
type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// How much of the answer's body is left.
#[derive(Debug, PartialEq, Eq)]
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
    home: Option<Home>,
}

impl Answer {
    /// The body is read: the connection goes home if it has one and nothing is left over.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.take()) {
            if conn.buf.is_empty() {
                home.pools.give_back(home.backend, conn);
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
            Reading::Chunked(decoder) => match decoder.decode(buf) {
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

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
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
            match ready!(read) {
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

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("reading", &self.reading)
            .finish()
    }
}
