//! The HTTP/1 framing guard: follows the request heads of one HTTP/1 connection as its bytes
//! go to hyper, and refuses the smuggling shapes hyper would otherwise tidy up silently
//! (Content-Length with Transfer-Encoding: hyper drops the length and reads chunked), plus two
//! Content-Lengths, a non-digit length and any Transfer-Encoding but a single `chunked`.
//!
//! The bytes of a head are held back until the head is complete (hyper could not parse half
//! a head anyway); everything else passes as it comes. A refused head never reaches hyper:
//! what came before it does, then a request of the guard's own making that carries a
//! per-process secret ([`refusal_status`] reads it back), then nothing more. The
//! service answers that request with the bilingual page for 400 (smuggling shape), 431 (a
//! head over the limit) or 414 (its request line alone over it), and the connection closes;
//! it logs the refused head's method, target and Host, which the guard leaves in the
//! connection's [`Link`] ([`RefusedHead`]).
//! The guard knows where the next head starts after a head without body, with a Content-Length or with a chunked body (its chunk
//! framing followed); after a `101` answering an upgrade (seen on the write side, once the
//! service said it answered one, through the connection's [`Link`]), or a head
//! or chunk line it cannot parse (the HTTP/2 preface among them: `HTTP/2.0` is no HTTP/1
//! version), it steps aside for the rest of the connection (hyper still reads Content-Length
//! with Transfer-Encoding as chunked and closes the connection after that request, so
//! nothing is smuggled there either). A CONNECT or a `PRI` in the middle of a connection is
//! followed as any request: pic2 refuses CONNECT (405) and never switches, and stepping
//! aside for them let the next heads past unchecked.

use bytes::{Buf, BytesMut};
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading a head (its bytes so far are in `head`).
    Head,
    /// Inside a Content-Length body: bytes left.
    Body(u64),
    /// A chunked body: the hex size (digits read so far), its extensions to the line end,
    /// the chunk's data left, the CR LF after it (`true` once the CR is seen), the trailer
    /// section.
    ChunkSize(u64, u8),
    ChunkExt(u64),
    ChunkData(u64),
    ChunkEnd(bool),
    Trailer(Trailer),
    /// No longer following the framing.
    Aside,
    /// A head was refused: nothing more is delivered.
    Refused,
    /// A head grew past the limit before its end: refused too (431, or 414 if its request
    /// line did).
    TooLarge,
}

/// Where in a chunked body's trailer section, byte for byte as hyper's decoder reads it: a
/// trailer line ends at CR LF only, and the section at an empty one. Where the two
/// disagreed (the guard ended a line at a bare LF, hyper reads on to the CR), a request head
/// sent as "trailers" passed the guard as the previous request's, and the bytes after it as
/// a body, while hyper read them as the next head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trailer {
    /// At a line's start (hyper's `EndCr`): a CR begins the section's end.
    LineStart,
    /// In a trailer line: up to its CR.
    Line,
    /// After a trailer line's CR: its LF must follow.
    LineCr,
    /// After the empty line's CR: its LF ends the body.
    EndCr,
}

/// The framing follower, independent of any I/O.
#[derive(Debug)]
pub struct Framing {
    mode: Mode,
    head: Vec<u8>,
    limit: usize,
    max_headers: usize,
    /// Bytes fed so far, and the stream offset where the current head began.
    fed: u64,
    head_start: u64,
    /// The last head asked for an upgrade: a `101` answer sets the guard aside.
    switch_asked: bool,
    /// Empty lines came since the last complete head (see [`Self::head_open`]).
    opened: bool,
    /// The stream offset where the current head opened: its first byte, or the first
    /// empty line before it. Its clock runs from there.
    opened_at: u64,
    /// The head that outgrew the limit did so in its request line (a URL too long: 414,
    /// not 431).
    long_line: bool,
    /// What the access log shows of the head refused, until the guard takes it.
    refused_head: Option<RefusedHead>,
}

/// What the access log shows of a refused head, which hyper never parses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusedHead {
    pub method: String,
    pub target: String,
    /// The Host field's value, as sent; `None` when there is none, or when the head was cut
    /// before it.
    pub host: Option<String>,
}

impl RefusedHead {
    /// From a parsed head.
    fn of(req: &httparse::Request<'_, '_>) -> Box<Self> {
        let host = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| String::from_utf8_lossy(h.value).into_owned());
        Box::new(RefusedHead {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            host,
        })
    }

    /// From the start of a head past the limit, which may end mid-line: the request line's
    /// first two words, and a Host from the lines that came whole.
    fn of_prefix(bytes: &[u8]) -> Self {
        let whole = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(&[][..], |end| bytes.get(..end).unwrap_or_default());
        let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        let mut words = first_line
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w.strip_suffix(b"\r").unwrap_or(w)).into_owned());
        let host = whole.split(|b| *b == b'\n').skip(1).find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (name, value) = line.split_at(line.iter().position(|b| *b == b':')?);
            name.eq_ignore_ascii_case(b"host").then(|| {
                let value = value.get(1..).unwrap_or_default();
                String::from_utf8_lossy(value.trim_ascii()).into_owned()
            })
        });
        RefusedHead {
            method: words.next().unwrap_or_default(),
            target: words.next().unwrap_or_default(),
            host,
        }
    }
}

/// What a complete head means for the bytes that follow it.
enum Verdict {
    Refuse(Box<RefusedHead>),
    Next(Mode),
    /// As `Next`, for a head that asks to switch protocols (`Upgrade`): its bytes are followed
    /// as any request's until the answer says `101`.
    Upgrade(Mode),
}

/// The most header lines the guard reads in a head. A head with more sets the guard aside
/// (hyper refuses it), so hyper's own limit must not be above this (a check in server.rs).
pub(crate) const HEADERS_CAP: usize = 128;

/// What parsing the bytes at the start of a head gives.
enum Parsed {
    /// The head is whole, and this long.
    Whole(usize, Verdict),
    /// Its end has not come yet.
    Partial,
    /// Not a head hyper can parse either: it refuses it (400) and closes the connection.
    Invalid,
}

/// The verdict on `head`, which is whole.
fn check(head: &[u8], max_headers: usize) -> Verdict {
    match parse(head, max_headers) {
        Parsed::Whole(_, verdict) => verdict,
        Parsed::Partial | Parsed::Invalid => Verdict::Next(Mode::Aside),
    }
}

/// Parses the head at the start of `bytes`, and judges it once whole. A head hyper cannot
/// parse either sets the guard aside at once (hyper refuses it, and closes the connection).
fn parse(bytes: &[u8], max_headers: usize) -> Parsed {
    // on the stack and left uninitialised: this runs for every HTTP/1 request
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; HEADERS_CAP];
    let n = max_headers.min(HEADERS_CAP);
    let slots = slots.get_mut(..n).unwrap_or_default();
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(bytes, slots) {
        Ok(httparse::Status::Complete(len)) => Parsed::Whole(len, judge(&req)),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        // hyper parses the same bytes and refuses them itself
        Err(_) => Parsed::Invalid,
    }
}

/// The verdict on a parsed head: what its framing headers say of the bytes that follow.
fn judge(req: &httparse::Request<'_, '_>) -> Verdict {
    let mut lengths = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    let mut codings = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let length = lengths.next();
    let coding = codings.next();
    if lengths.next().is_some() || codings.next().is_some() {
        return Verdict::Refuse(RefusedHead::of(req));
    }
    let upgrade = req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let next = |mode| {
        if upgrade {
            Verdict::Upgrade(mode)
        } else {
            Verdict::Next(mode)
        }
    };
    match (length, coding) {
        (Some(_), Some(_)) => Verdict::Refuse(RefusedHead::of(req)),
        (None, Some(te)) if !te.value.eq_ignore_ascii_case(b"chunked") => {
            Verdict::Refuse(RefusedHead::of(req))
        }
        (None, Some(_)) => next(Mode::ChunkSize(0, 0)),
        (Some(cl), None) => {
            let digits = !cl.value.is_empty() && cl.value.iter().all(u8::is_ascii_digit);
            let n = std::str::from_utf8(cl.value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            match n {
                Some(0) if digits => next(Mode::Head),
                Some(n) if digits => next(Mode::Body(n)),
                _ => Verdict::Refuse(RefusedHead::of(req)),
            }
        }
        (None, None) => next(Mode::Head),
    }
}

/// One byte of a chunked body's framing (the data itself is skipped in bulk). Anything
/// unexpected sets the guard aside: hyper's decoder refuses it and closes the connection.
fn chunk_step(mode: Mode, b: u8) -> Mode {
    let size_line_end = |size: u64| {
        if size == 0 {
            Mode::Trailer(Trailer::LineStart)
        } else {
            Mode::ChunkData(size)
        }
    };
    match (mode, b) {
        (Mode::ChunkSize(size, digits), _) if b.is_ascii_hexdigit() => {
            let d = u64::from(char::from(b).to_digit(16).unwrap_or(0));
            // leading zeros count as a digit once (hyper accepts any number of them): a
            // client cannot push the guard aside with `00000000000000001`
            let digits = if size == 0 && digits > 0 {
                digits
            } else {
                digits + 1
            };
            match size.checked_mul(16).and_then(|v| v.checked_add(d)) {
                Some(v) if digits <= 16 => Mode::ChunkSize(v, digits),
                _ => Mode::Aside,
            }
        }
        (Mode::ChunkSize(_, 0), _) => Mode::Aside,
        (Mode::ChunkSize(size, _), b'\n') => size_line_end(size),
        (Mode::ChunkSize(size, _), b';' | b' ' | b'\t' | b'\r') => Mode::ChunkExt(size),
        (Mode::ChunkExt(size), b'\n') => size_line_end(size),
        (Mode::ChunkExt(size), _) => Mode::ChunkExt(size),
        (Mode::ChunkEnd(false), b'\r') => Mode::ChunkEnd(true),
        (Mode::ChunkEnd(_), b'\n') => Mode::ChunkSize(0, 0),
        (Mode::Trailer(Trailer::LineStart), b'\r') => Mode::Trailer(Trailer::EndCr),
        (Mode::Trailer(Trailer::Line), b'\r') => Mode::Trailer(Trailer::LineCr),
        (Mode::Trailer(Trailer::LineStart | Trailer::Line), _) => Mode::Trailer(Trailer::Line),
        (Mode::Trailer(Trailer::LineCr), b'\n') => Mode::Trailer(Trailer::LineStart),
        (Mode::Trailer(Trailer::EndCr), b'\n') => Mode::Head,
        _ => Mode::Aside,
    }
}

impl Framing {
    /// `limit`: the largest head kept (beyond it, the head is refused: 414 or 431).
    pub fn new(limit: usize, max_headers: usize) -> Self {
        Framing {
            mode: Mode::Head,
            head: Vec::new(),
            limit,
            max_headers,
            fed: 0,
            head_start: 0,
            switch_asked: false,
            opened: false,
            opened_at: 0,
            long_line: false,
            refused_head: None,
        }
    }

    /// True once a head was refused.
    pub fn refused(&self) -> bool {
        self.mode == Mode::Refused
    }

    /// Called with the start of each response: a `101` to a head that asked to switch
    /// protocols ends the HTTP/1 framing, and the guard steps aside (what it held is then
    /// the new protocol's). True when it did.
    pub fn response_starts(&mut self, start: &[u8]) -> bool {
        if !(self.switch_asked && start.starts_with(b"HTTP/1.1 101")) {
            return false;
        }
        self.switch_asked = false;
        self.mode = Mode::Aside;
        self.head = Vec::new();
        true
    }

    /// True once a head outgrew the limit.
    pub fn too_large(&self) -> bool {
        self.mode == Mode::TooLarge
    }

    /// True once a head outgrew the limit in its request line (its URL).
    pub fn line_too_long(&self) -> bool {
        self.too_large() && self.long_line
    }

    /// The head made of `parts` is past the limit: it is refused, and said to be so in its
    /// request line when no line end comes within the limit.
    fn outgrown<'a>(&mut self, parts: impl Iterator<Item = &'a u8>) {
        let start: Vec<u8> = parts.take(self.limit).copied().collect();
        self.long_line = !start.contains(&b'\n');
        self.refused_head = Some(RefusedHead::of_prefix(&start));
        self.head = Vec::new();
        self.mode = Mode::TooLarge;
    }

    /// What the log shows of the head refused last, taken.
    pub fn take_refused_head(&mut self) -> Option<RefusedHead> {
        self.refused_head.take()
    }

    /// The stream offset where the current (or refused) head begins.
    pub fn head_start(&self) -> u64 {
        self.head_start
    }

    /// The stream offset where the current head opened: the first empty line before it, if
    /// any, else its first byte. A head's time counts from there.
    pub fn opened_at(&self) -> u64 {
        self.opened_at
    }

    /// True while a head has begun (its first byte, or an empty line before it, came) and
    /// is not complete yet: the time it takes is limited.
    pub fn head_open(&self) -> bool {
        self.mode == Mode::Head && (self.opened || !self.head.is_empty())
    }

    /// How many of the last bytes fed belong to a head not complete yet.
    pub fn held(&self) -> usize {
        if self.mode == Mode::Head {
            self.head.len()
        } else {
            0
        }
    }

    /// Follows `data`, the next bytes of the connection; returns the index of the byte that
    /// ends a refused head (to be poisoned, and nothing delivered after it).
    pub fn feed(&mut self, data: &[u8]) -> Option<usize> {
        let at = self.fed;
        self.fed += u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.follow(data, at)
    }

    /// [`Self::feed`] on `data`, which starts at stream offset `at`.
    fn follow(&mut self, data: &[u8], at: u64) -> Option<usize> {
        let mut i = 0;
        while i < data.len() {
            match self.mode {
                Mode::Aside | Mode::Refused | Mode::TooLarge => return None,
                Mode::Body(left) => {
                    let rest = u64::try_from(data.len() - i).unwrap_or(u64::MAX);
                    let take = left.min(rest);
                    self.mode = if take == left {
                        Mode::Head
                    } else {
                        Mode::Body(left - take)
                    };
                    i += usize::try_from(take).unwrap_or(data.len());
                }
                Mode::ChunkData(left) => {
                    let rest = u64::try_from(data.len() - i).unwrap_or(u64::MAX);
                    let take = left.min(rest);
                    self.mode = if take == left {
                        Mode::ChunkEnd(false)
                    } else {
                        Mode::ChunkData(left - take)
                    };
                    i += usize::try_from(take).unwrap_or(data.len());
                }
                Mode::ChunkSize(..) | Mode::ChunkExt(_) | Mode::ChunkEnd(_) | Mode::Trailer(_) => {
                    if let Some(b) = data.get(i) {
                        self.mode = chunk_step(self.mode, *b);
                    }
                    i += 1;
                }
                Mode::Head => {
                    if self.head.is_empty() {
                        // empty lines before a request line are skipped, as httparse does, but
                        // they open a head: a clock runs from them (a client sending one line
                        // break and nothing more would otherwise hold the connection), and
                        // goes on when the request line comes
                        if !self.opened {
                            self.opened_at = at + u64::try_from(i).unwrap_or(u64::MAX);
                        }
                        while data.get(i).is_some_and(|b| *b == b'\r' || *b == b'\n') {
                            i += 1;
                            self.opened = true;
                        }
                        if i >= data.len() {
                            return None;
                        }
                        self.head_start = at + u64::try_from(i).unwrap_or(u64::MAX);
                    }
                    let rest = data.get(i..).unwrap_or_default();
                    // the usual case, a head whole in one read: parsed once, where it lies
                    // (looking for its end byte by byte first was most of the guard's time)
                    if self.head.is_empty() {
                        match parse(rest, self.max_headers) {
                            Parsed::Whole(len, _) if len > self.limit => {
                                self.outgrown(rest.iter());
                                return None;
                            }
                            Parsed::Whole(len, verdict) => {
                                if self.apply(verdict) {
                                    return Some(i + len - 1);
                                }
                                i += len;
                                continue;
                            }
                            Parsed::Invalid => {
                                self.mode = Mode::Aside;
                                return None;
                            }
                            Parsed::Partial => {}
                        }
                    }
                    let Some(end) = self.head_end(rest) else {
                        if self.head.len() + rest.len() > self.limit {
                            let head = std::mem::take(&mut self.head);
                            self.outgrown(head.iter().chain(rest));
                        } else {
                            self.head.extend_from_slice(rest);
                        }
                        return None;
                    };
                    let chunk = rest.get(..=end).unwrap_or_default();
                    if self.head.len() + chunk.len() > self.limit {
                        let head = std::mem::take(&mut self.head);
                        self.outgrown(head.iter().chain(chunk));
                        return None;
                    }
                    let verdict = if self.head.is_empty() {
                        check(chunk, self.max_headers)
                    } else {
                        self.head.extend_from_slice(chunk);
                        let v = check(&self.head, self.max_headers);
                        self.head.clear();
                        v
                    };
                    if self.apply(verdict) {
                        return Some(i + end);
                    }
                    i += end + 1;
                }
            }
        }
        None
    }

    /// Follows a head's verdict; true when it refused the head.
    fn apply(&mut self, verdict: Verdict) -> bool {
        self.opened = false; // the head is complete
        match verdict {
            Verdict::Refuse(head) => {
                self.refused_head = Some(*head);
                self.mode = Mode::Refused;
                return true;
            }
            Verdict::Next(m) => {
                self.mode = m;
                self.switch_asked = false;
            }
            Verdict::Upgrade(m) => {
                self.mode = m;
                self.switch_asked = true;
            }
        }
        false
    }

    /// The index in `rest` of the line feed ending the head: an empty line, `\n` or `\r\n`,
    /// after the bytes kept so far.
    fn head_end(&self, rest: &[u8]) -> Option<usize> {
        let kept = self.head.len();
        let at = |k: usize, back: usize| -> Option<u8> {
            // the byte `back` places before rest[k], in the kept head then in rest
            if back <= k {
                rest.get(k - back).copied()
            } else {
                let from_end = back - k;
                kept.checked_sub(from_end)
                    .and_then(|j| self.head.get(j).copied())
            }
        };
        rest.iter().enumerate().find_map(|(k, b)| {
            let ends = *b == b'\n'
                && (at(k, 1) == Some(b'\n')
                    || (at(k, 1) == Some(b'\r') && at(k, 2) == Some(b'\n')));
            ends.then_some(k)
        })
    }
}

/// The header that carries the guard's verdict to the service, in the request it makes.
pub const VERDICT_HEADER: &str = "x-pic2-guard";

/// The secret that tells the guard's requests from a client's: random, one per process.
fn secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut bytes = [0u8; 16];
        // without randomness the value is still unknown to clients in practice (the address
        // of a static and the time), and the service refuses the request either way
        if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = t.to_le_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The request the guard hands to hyper in place of a refused head.
fn verdict_request(status: u16) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nhost: pic2-guard.invalid\r\n{VERDICT_HEADER}: {} {status}\r\nconnection: close\r\n\r\n",
        secret()
    )
    .into_bytes()
}

/// The status of the guard's refusal when `value` (of [`VERDICT_HEADER`]) is its own: 400,
/// 414 or 431. A client sending that header gets `None`, and 400 from the service.
pub fn refusal_status(value: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(value).ok()?;
    let (token, status) = text.split_once(' ')?;
    (token == secret())
        .then(|| status.parse().ok())
        .flatten()
        .filter(|s| matches!(s, 400 | 414 | 431))
}

/// What the guard and the service of one connection tell each other.
///
/// The service confirms it answered an upgrade with the backend's `101` and handed the
/// connection to a tunnel; only then does a `101` seen on the write side set the guard
/// aside. The bytes hyper writes include answers' bodies, which the sites write: one whose
/// chunk starts with `HTTP/1.1 101`, answering a request that asked to switch and was
/// refused, set the guard aside for the rest of the connection.
///
/// The guard leaves there the head it refused, for the service's log line.
#[derive(Debug, Default)]
pub struct Link {
    switched: AtomicBool,
    refused: Mutex<Option<RefusedHead>>,
}

impl Link {
    pub fn confirm_switch(&self) {
        self.switched.store(true, Ordering::Release);
    }

    fn switch_confirmed(&self) -> bool {
        self.switched.load(Ordering::Acquire)
    }

    fn leave_refused(&self, head: RefusedHead) {
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some(head);
        }
    }

    /// The head the guard refused, taken: for the request the guard made in its place only
    /// (checked by [`refusal_status`]), never for one before it (a pipelined request is
    /// answered after the guard read, and refused, the head that follows it).
    pub fn take_refused(&self) -> Option<RefusedHead> {
        self.refused.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A connection's stream with its [`Framing`] applied to everything read from it.
pub struct Guarded<S> {
    inner: S,
    framing: Framing,
    /// Confirms a `101` is the service's own, and takes the refused head ([`Link`]); never
    /// confirms, unless [`Guarded::linked_to`] was given one the service sets.
    link: Arc<Link>,
    on_refuse: Option<Box<dyn FnOnce() + Send>>,
    /// Read from the client, not yet given to hyper: `ready` bytes that may go, then the
    /// held bytes of a head not complete yet.
    pending: BytesMut,
    ready: usize,
    /// The stream offset of `pending`'s first byte.
    base: u64,
    /// After a refusal: the guard's request still to deliver, then the end of the stream.
    verdict: Option<bytes::Bytes>,
    eof: bool,
    /// The only clock on a head's bytes: hyper's header timer is off (it could not run out
    /// on bytes the guard holds anyway, and cost a timer per request), so the guard times
    /// each head itself, from its first byte or from the first empty line before it.
    /// `timed_head` is the stream offset where the timed head opened.
    head_timeout: Duration,
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_head: u64,
}

impl<S> Guarded<S> {
    /// `head_timeout`: the time a head may take to arrive, from its first byte or the first
    /// empty line before it; past it the
    /// connection ends.
    pub fn new(
        inner: S,
        framing: Framing,
        head_timeout: Duration,
        on_refuse: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Guarded {
            inner,
            framing,
            link: Arc::default(),
            on_refuse: Some(on_refuse),
            pending: BytesMut::new(),
            ready: 0,
            base: 0,
            verdict: None,
            eof: false,
            head_timeout,
            head_deadline: None,
            timed_head: 0,
        }
    }

    /// Steps aside on a `101` only once `link` (shared with the service) says the service
    /// answered one; leaves there the head it refuses.
    pub fn linked_to(self, link: Arc<Link>) -> Self {
        Guarded { link, ..self }
    }

    /// Starts a head's clock when it opens (its first byte, or an empty line before it),
    /// stops it once the head is complete, and starts it afresh for the next head
    /// (pipelined heads each get the whole time).
    fn time_head(&mut self) {
        let start = self.framing.opened_at();
        if !self.framing.head_open() {
            self.head_deadline = None;
        } else if self.head_deadline.is_none() || self.timed_head != start {
            self.head_deadline = Some(Box::pin(tokio::time::sleep(self.head_timeout)));
            self.timed_head = start;
        }
    }

    /// True when a held head took too long: the connection then ends, unanswered, as hyper
    /// ends one whose head times out.
    fn head_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let expired = self
            .head_deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready());
        if expired {
            self.head_deadline = None;
            self.pending.clear();
            self.ready = 0;
            self.eof = true;
        }
        expired
    }

    /// Follows the `n` bytes just read at the end of `pending`; decides what may go.
    fn follow(&mut self, n: usize) {
        let start = self.pending.len() - n;
        let _ = self
            .framing
            .feed(self.pending.get(start..).unwrap_or_default());
        match self.refusal() {
            None => self.ready = self.pending.len() - self.framing.held(),
            Some(status) => {
                // what came before the refused head goes; the head never does
                let before = self.before_refused(self.pending.len());
                self.pending.truncate(before);
                self.ready = before;
                self.refuse(status);
            }
        }
    }

    /// The status of a refusal the framing just made: 400 (smuggling shapes), 414 (a request
    /// line over the limit), 431 (a head over the limit).
    fn refusal(&self) -> Option<u16> {
        if self.framing.refused() {
            Some(400)
        } else if self.framing.line_too_long() {
            Some(414)
        } else if self.framing.too_large() {
            Some(431)
        } else {
            None
        }
    }

    /// Of the `len` bytes from `base` on, those before the refused head.
    fn before_refused(&self, len: usize) -> usize {
        usize::try_from(self.framing.head_start().saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(len)
    }

    fn refuse(&mut self, status: u16) {
        self.verdict = Some(verdict_request(status).into());
        if let Some(head) = self.framing.take_refused_head() {
            self.link.leave_refused(head);
        }
        if let Some(f) = self.on_refuse.take() {
            f();
        }
    }

    /// The usual case, nothing held: reads straight into hyper's buffer, with no copy and
    /// no buffer of the guard's own, then takes back what may not go yet (the start of an
    /// incomplete head, kept in `pending` until it is whole; a refused head, dropped).
    /// `None` when the read gave hyper nothing to see yet.
    fn read_direct(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Option<Poll<io::Result<()>>>
    where
        S: AsyncRead + Unpin,
    {
        let start = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending if self.head_timed_out(cx) => return Some(Poll::Ready(Ok(()))),
            Poll::Pending => return Some(Poll::Pending),
            Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
            Poll::Ready(Ok(())) => {}
        }
        let fresh = buf.filled().get(start..).unwrap_or_default();
        if fresh.is_empty() {
            self.eof = true; // the client is done, with nothing held: hyper sees the end
            return Some(Poll::Ready(Ok(())));
        }
        let _ = self.framing.feed(fresh);
        let go = match self.refusal() {
            None => {
                let go = fresh.len() - self.framing.held().min(fresh.len());
                if go < fresh.len() {
                    // the start of a head: the rest of it comes into `pending` too
                    self.pending.reserve(READ_SIZE);
                    self.pending
                        .extend_from_slice(fresh.get(go..).unwrap_or_default());
                }
                go
            }
            Some(status) => {
                let before = self.before_refused(fresh.len());
                self.refuse(status);
                before
            }
        };
        buf.set_filled(start + go);
        self.base += u64::try_from(go).unwrap_or(u64::MAX);
        self.time_head();
        // zero bytes would read as the end of the stream: the caller goes on instead
        (go > 0).then_some(Poll::Ready(Ok(())))
    }

    /// Gives hyper as much of the ready bytes as it takes.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.ready.min(buf.remaining());
        buf.put_slice(self.pending.get(..n).unwrap_or_default());
        self.pending.advance(n);
        self.ready -= n;
        self.base += u64::try_from(n).unwrap_or(u64::MAX);
        if self.pending.is_empty() {
            // nothing held any more: reads go straight to hyper's buffer again, and a
            // connection waiting for its next request keeps no buffer (ten thousand idle
            // keep-alive clients cost no 160 MB)
            self.pending = BytesMut::new();
        }
    }
}

/// Bytes asked of the client per read.
const READ_SIZE: usize = 16 * 1024;

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                this.deliver(buf);
                return Poll::Ready(Ok(()));
            }
            if let Some(verdict) = this.verdict.as_mut() {
                if verdict.is_empty() {
                    // Never the end of the stream: hyper would drop the request unanswered
                    // (no half-close). Both sides said `connection: close`, so hyper closes
                    // once the page is written; nothing waits on this read.
                    return Poll::Pending;
                }
                let n = verdict.len().min(buf.remaining());
                buf.put_slice(verdict.get(..n).unwrap_or_default());
                verdict.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.pending.is_empty() && buf.remaining() > 0 {
                match this.read_direct(cx, buf) {
                    Some(done) => return done,
                    None => continue,
                }
            }
            this.pending.reserve(READ_SIZE);
            let n = match tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.pending,
            ) {
                Poll::Pending if this.head_timed_out(cx) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(n)) => n,
            };
            if n == 0 {
                // the client is done: hyper gets a head left incomplete, and sees the end
                this.eof = true;
                this.ready = this.pending.len();
                continue;
            }
            this.follow(n);
            this.time_head();
        }
    }
}

impl<S> Guarded<S> {
    /// Looks at what hyper writes: a `101` switching protocols sets the guard aside.
    fn watch_response(&mut self, start: &[u8]) {
        if self.link.switch_confirmed() && self.framing.response_starts(start) {
            self.ready = self.pending.len();
            self.head_deadline = None;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.watch_response(buf);
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.watch_response(first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn run(stream: &[u8], step: usize) -> Option<usize> {
        let mut f = Framing::new(16 * 1024, 100);
        for (n, chunk) in stream.chunks(step).enumerate() {
            if let Some(k) = f.feed(chunk) {
                return Some(n * step + k);
            }
        }
        None
    }

    fn refused_at(stream: &[u8]) -> Option<usize> {
        // the same answer whatever the read sizes
        let whole = run(stream, stream.len().max(1));
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(run(stream, step), whole, "step {step}");
        }
        whole
    }

    #[test]
    fn empty_lines_before_a_request_line_open_a_head_until_it_is_complete() {
        let mut f = Framing::new(16 * 1024, 100);
        assert!(!f.head_open());
        assert_eq!(f.feed(b"\r\n"), None);
        assert!(f.head_open(), "a line break alone starts the head's clock");
        assert_eq!(f.feed(b"\r\nGET / HTTP/1.1\r\nHo"), None);
        assert_eq!(
            f.opened_at(),
            0,
            "the request line does not restart the clock"
        );
        assert_eq!(f.head_start(), 4);
        assert_eq!(f.feed(b"st: a\r\n\r\n"), None);
        assert!(!f.head_open());
        assert_eq!(f.feed(b"GET / HTTP/1.1\r\nHo"), None);
        assert!(f.head_open());
        assert_eq!(
            f.opened_at(),
            31,
            "the next head opens at its own first byte"
        );
    }

    #[test]
    fn unparseable_bytes_set_the_guard_aside_whatever_their_length() {
        let mut f = Framing::new(64, 100);
        let junk = format!(
            "POST / HTTP/1.1\r\nX: a\x01b\r\nY: {}\r\n\r\n",
            "z".repeat(200)
        );
        assert_eq!(f.feed(junk.as_bytes()), None);
        assert!(!f.too_large(), "hyper answers 400, not the guard 431");
        assert_eq!(f.mode, Mode::Aside);
    }

    /// The refused head's method, target and Host, for the log, whatever the read sizes;
    /// from a head past the limit, as much as came whole.
    #[test]
    fn a_refused_head_is_described_for_the_log() {
        let described = |stream: &[u8], limit: usize| {
            let mut heads = Vec::new();
            for step in [1, 3, 64, stream.len()] {
                let mut f = Framing::new(limit, 100);
                for chunk in stream.chunks(step) {
                    let _ = f.feed(chunk);
                }
                heads.push(f.take_refused_head());
                assert_eq!(f.take_refused_head(), None, "taken once");
            }
            assert!(heads.windows(2).all(|w| w[0] == w[1]), "{heads:?}");
            heads.pop().flatten()
        };
        let head = |method: &str, target: &str, host: Option<&str>| RefusedHead {
            method: method.into(),
            target: target.into(),
            host: host.map(Into::into),
        };
        let smuggling = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST /x?y=1 HTTP/1.1\r\nHOST: Shop.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            described(smuggling, 1024),
            Some(head("POST", "/x?y=1", Some("Shop.test")))
        );
        let long_url = format!("GET /{} HTTP/1.1\r\nHost: a.test\r\n\r\n", "a".repeat(300));
        assert_eq!(
            described(long_url.as_bytes(), 256),
            Some(head("GET", &format!("/{}", "a".repeat(251)), None)),
            "cut at the limit, before its Host"
        );
        let big_field = format!(
            "GET /p HTTP/1.1\r\nhost:  b.test \r\nCookie: {}\r\n\r\n",
            "c".repeat(300)
        );
        assert_eq!(
            described(big_field.as_bytes(), 256),
            Some(head("GET", "/p", Some("b.test")))
        );
        assert_eq!(described(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1024), None);
    }

    #[test]
    fn plain_keep_alive_requests_pass() {
        let s = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\n\r\nTransfer-Encoding: chunked\r\n\r\nGET /x HTTP/1.1\nHost: a\n\n\r\nGET / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(refused_at(s), None);
    }

    #[test]
    fn smuggling_heads_are_refused_at_their_last_byte() {
        let bad: [&[u8]; 6] = [
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n",
        ];
        for s in bad {
            let end = s.windows(2).position(|w| w == b"\n\n").map_or_else(
                || s.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 3,
                |p| p + 1,
            );
            assert_eq!(refused_at(s), Some(end), "{}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn a_bad_head_after_a_length_body_is_found() {
        let first = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        let second = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let s = [first.clone(), second.to_vec()].concat();
        assert_eq!(refused_at(&s), Some(s.len() - 1));
    }

    #[test]
    fn a_bad_head_after_chunked_bodies_is_found() {
        let first = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nContent-Length: 1\r\n\r\n\r\n123\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let second = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let bad = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let s = [&first[..], &second[..], &bad[..]].concat();
        assert_eq!(refused_at(&s), Some(s.len() - 1));
        let good = [&first[..], &second[..]].concat();
        assert_eq!(refused_at(&good), None);
    }

    /// A bare LF does not end a trailer line (hyper reads on to the CR LF): a head sent as
    /// "trailers" after `0\r\n\n` is hyper's trailers, not a request whose body would hide
    /// the next head from the guard.
    #[test]
    fn a_head_hidden_in_trailers_behind_a_bare_line_feed_is_found() {
        let hidden = b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 70\r\n\r\n";
        let bad = b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let s = [&hidden[..], &bad[..]].concat();
        assert_eq!(refused_at(&s), Some(s.len() - 1));
        // trailer lines as hyper reads them: the body ends at the empty line
        let trailers =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\n\r\n";
        let s = [&trailers[..], &bad[..]].concat();
        assert_eq!(refused_at(&s), Some(s.len() - 1));
    }

    #[test]
    fn leading_zeros_in_a_chunk_size_do_not_set_the_guard_aside() {
        let first = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000000005\r\nhello\r\n0\r\n\r\n";
        let bad = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let s = [&first[..], &bad[..]].concat();
        assert_eq!(refused_at(&s), Some(s.len() - 1));
    }

    #[test]
    fn an_upgrade_sets_the_guard_aside_only_once_answered_101() {
        let ask = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        let bad = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        // not switched (the backend said no): the next head is checked
        let s = [&ask[..], &bad[..]].concat();
        assert_eq!(refused_at(&s), Some(s.len() - 1));
        // switched: what follows is the new protocol's
        let mut f = Framing::new(16 * 1024, 100);
        assert_eq!(f.feed(ask), None);
        assert!(!f.response_starts(b"HTTP/1.1 200 OK\r\n"));
        assert!(f.response_starts(b"HTTP/1.1 101 Switching Protocols\r\n"));
        assert_eq!(f.feed(bad), None);
        // a 101 nobody asked for changes nothing
        let mut f = Framing::new(16 * 1024, 100);
        assert!(!f.response_starts(b"HTTP/1.1 101 Switching Protocols\r\n"));
    }

    #[test]
    fn steps_aside_after_upgrade_h2_and_bad_chunks() {
        for s in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            // not HTTP at all (a TLS hello on the plain port): hyper refuses it
            b"\x16\x03\x01\x02\x00\x01\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert_eq!(refused_at(s), None, "{}", String::from_utf8_lossy(s));
        }
        // a head beyond the limit is refused as too large, from where it began
        let mut f = Framing::new(64, 100);
        let first = b"GET / HTTP/1.1\r\n\r\n\r\n";
        assert_eq!(f.feed(first), None);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(f.feed(big.as_bytes()), None);
        assert!(f.too_large());
        assert!(!f.line_too_long(), "its request line was short");
        assert_eq!(f.head_start(), 20);
        assert_eq!(f.feed(b"\r\n"), None);
        // a request line beyond the limit (a URL too long), whole or still coming
        for line in [
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100)),
            format!("GET /{}", "a".repeat(100)),
        ] {
            let mut f = Framing::new(64, 100);
            assert_eq!(f.feed(line.as_bytes()), None);
            assert!(f.line_too_long(), "{line}");
        }
        // its end coming in a later read, and after empty lines
        let mut f = Framing::new(64, 100);
        assert_eq!(
            f.feed(format!("\r\n\r\nGET /{}", "a".repeat(40)).as_bytes()),
            None
        );
        assert!(!f.too_large());
        assert_eq!(
            f.feed(format!("{} HTTP/1.1\r\n\r\n", "a".repeat(40)).as_bytes()),
            None
        );
        assert!(f.line_too_long());
    }
}

#[cfg(test)]
mod verdict_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_guards_own_verdicts_are_read() {
        let req = String::from_utf8(verdict_request(431)).unwrap();
        let value = req
            .lines()
            .find_map(|l| l.strip_prefix("x-pic2-guard: "))
            .unwrap();
        assert_eq!(refusal_status(value.as_bytes()), Some(431));
        assert_eq!(refusal_status(b"0123 400"), None);
        assert_eq!(refusal_status(format!("{} 200", secret()).as_bytes()), None);
        assert_eq!(secret().len(), 32);
    }
}

#[cfg(test)]
mod hyper_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client connection to hyper behind a guard, through a pipe of `pipe` bytes (small
    /// pipes split heads across reads). The service answers with the method, the path and
    /// the guard's verdict, if any.
    fn guarded_hyper(pipe: usize) -> tokio::io::DuplexStream {
        let (client, server) = tokio::io::duplex(pipe);
        let g = Guarded::new(
            server,
            Framing::new(16384, 100),
            std::time::Duration::from_secs(5),
            Box::new(|| {}),
        );
        let svc =
            hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let verdict = req
                    .headers()
                    .get(VERDICT_HEADER)
                    .and_then(|v| refusal_status(v.as_bytes()));
                let text = format!("called {} {} verdict {verdict:?}", req.method(), req.uri());
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(text),
                )))
            });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(g), svc)
                .with_upgrades()
                .await;
        });
        client
    }

    /// Sends `bytes` and reads until the connection closes (5 s at most).
    async fn exchange(client: &mut tokio::io::DuplexStream, bytes: &[u8]) -> String {
        let (mut rd, mut wr) = tokio::io::split(client);
        let send = async {
            let _ = wr.write_all(bytes).await;
        };
        let mut out = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), rd.read_to_end(&mut out));
        let (_, r) = tokio::join!(send, read);
        assert!(r.is_ok(), "not closed");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Behind the guard, hyper (with the auto builder, as served) never sees a refused
    /// head: the service is called once, with the guard's own request saying 400, whatever
    /// the read sizes, and the connection ends.
    #[tokio::test]
    async fn a_refused_head_becomes_the_guards_request() {
        for pipe in [5, 64, 64 * 1024] {
            let mut client = guarded_hyper(pipe);
            let out = exchange(
                &mut client,
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            )
            .await;
            assert!(
                out.ends_with("called GET / verdict Some(400)"),
                "{pipe}: {out}"
            );
            assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
        }
    }

    /// Pipelined heads, split at every size of read: each reaches hyper whole and once,
    /// whether the guard reads straight into hyper's buffer or holds a head's first part.
    #[tokio::test]
    async fn pipelined_heads_split_anywhere_all_arrive() {
        let heads = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        for pipe in [1, 2, 3, 7, 16, 29, 64, 64 * 1024] {
            let mut client = guarded_hyper(pipe);
            let out = exchange(&mut client, heads).await;
            for path in ["/a", "/b", "/c"] {
                assert_eq!(
                    out.matches(&format!("called GET {path} verdict None"))
                        .count(),
                    1,
                    "{pipe}: {out}"
                );
            }
            assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{pipe}: {out}");
        }
    }

    /// A head's clock runs from the empty line before it: its request line, coming later,
    /// does not start it afresh (which let such a head take twice the timeout).
    #[tokio::test(start_paused = true)]
    async fn the_head_clock_runs_from_an_empty_line_before_it() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let timeout = std::time::Duration::from_secs(5);
        let mut g = Guarded::new(server, Framing::new(16384, 100), timeout, Box::new(|| {}));
        let mut buf = vec![0u8; 4096];
        client.write_all(b"\r\n").await.unwrap();
        // the line break goes through (hyper skips it), and the clock starts
        assert_eq!(g.read(&mut buf).await.unwrap(), 2);
        let wait = std::time::Duration::from_secs(3);
        assert!(tokio::time::timeout(wait, g.read(&mut buf)).await.is_err());
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        // 3 s gone: the connection ends 2 s later, not 5 (the paused clock jumps to
        // whichever comes first, so this cannot pass by chance)
        let read = tokio::time::timeout(wait, g.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    }

    /// A head split across reads is held in the guard's buffer; once it has gone to hyper
    /// the buffer goes too: a connection waiting for its next request holds none.
    #[tokio::test]
    async fn no_buffer_is_kept_once_a_split_head_has_gone() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut g = Guarded::new(
            server,
            Framing::new(16384, 100),
            std::time::Duration::from_secs(5),
            Box::new(|| {}),
        );
        let mut buf = vec![0u8; 4096];
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), g.read(&mut buf)).await;
        assert!(early.is_err(), "half a head went through");
        assert!(g.pending.capacity() > 0, "the half head is held");
        client.write_all(b"st: a\r\n\r\n").await.unwrap();
        let n = g.read(&mut buf).await.unwrap();
        assert_eq!(
            buf.get(..n),
            Some(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..])
        );
        assert_eq!(g.pending.capacity(), 0);
    }
}
