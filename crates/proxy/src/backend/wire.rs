//! HTTP/1.1 to a backend, without I/O: the request head pic2 writes, the response head it
//! reads and how that response's body ends (RFC 9112 §6.3), and the chunked decoding.
//!
//! Strict on purpose. A backend answer with a transfer coding other than `chunked`, or with
//! lengths that disagree, is refused (502) rather than guessed at: a guess that differs from
//! the backend's would leave the rest of its bytes on a kept-alive connection, read as the
//! next client's answer. One with both a Content-Length and `chunked` is read as chunked, as
//! RFC 9112 §6.3 says, and its connection is then closed, never reused.

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

/// Largest response head read from a backend; above nginx's own (proxy_buffer_size, 4-8 KB).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;
/// A chunk-size line (size and extensions), and all the trailers together.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// A backend answer pic2 cannot forward safely.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Malformed {
    #[error("response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("unsupported transfer-encoding {0:?} (only \"chunked\")")]
    TransferEncoding(String),
    #[error("conflicting or invalid content-length")]
    ContentLength,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedUpgrade,
    #[error("chunked body: {0}")]
    Chunk(&'static str),
}

/// How the request's body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// No body, and no framing header (GET, HEAD…), unless the client declared a length of 0.
    None {
        declared_zero: bool,
    },
    Length(u64),
    Chunked,
}

impl RequestBody {
    /// From the body's own hints: an exact size (the client's Content-Length, or an HTTP/2
    /// stream that ended with its head) or else chunked.
    pub fn of(exact: Option<u64>, declared: bool) -> Self {
        match exact {
            Some(0) => RequestBody::None {
                declared_zero: declared,
            },
            Some(n) => RequestBody::Length(n),
            None => RequestBody::Chunked,
        }
    }

    pub fn is_empty(self) -> bool {
        matches!(self, RequestBody::None { .. })
    }
}

/// Writes the request head. `headers` has no hop-by-hop header left (the caller stripped
/// them); `more_headers` writes lines of its own after them; Content-Length is written from
/// `body`, never copied, and several Cookie fields (an HTTP/2 client splits them) become the
/// one line HTTP/1.1 allows (RFC 9113 §8.2.3).
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    more_headers: impl FnOnce(&mut Vec<u8>),
    body: RequestBody,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if !path_and_query.starts_with('/') && path_and_query != "*" {
        out.push(b'/'); // an absolute-form target with no path: `http://a.test?q` is `/?q`
    }
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::COOKIE
        {
            continue;
        }
        line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    more_headers(out);
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(first.as_bytes());
        for more in cookies {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(more.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    match body {
        RequestBody::None {
            declared_zero: true,
        } => out.extend_from_slice(b"content-length: 0\r\n"),
        RequestBody::None { .. } => {}
        RequestBody::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestBody::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How a response's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// HEAD, 204, 304: nothing follows the head, whatever it says.
    None,
    Length(u64),
    Chunked,
    /// Neither length nor chunked: the body ends when the backend closes.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ResponseBody,
    /// The connection may carry another request once this body is read (HTTP/1.1, no
    /// `Connection: close`, framed by length or chunks, never framed two ways).
    pub reusable: bool,
}

/// What one look at the read buffer gives.
#[derive(Debug)]
pub enum Head {
    /// More bytes are needed.
    Partial,
    /// A 1xx (100 Continue, 103 Early Hints…): taken out of the buffer, and not forwarded
    /// (hyper's own client did not either); the real answer follows.
    Informational,
    Complete(ResponseHead),
}

/// Parses the response head at the start of `buf`, and takes it out of the buffer once it is
/// complete. `method` is the request's (a HEAD's answer has no body).
pub fn parse_response_head(buf: &mut BytesMut, method: &Method) -> Result<Head, Malformed> {
    // on the stack and left uninitialised: filling 128 empty headers cost more than parsing
    // a usual answer's eight (callgrind)
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(Malformed::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed::Head("too many headers")),
        Err(_) => return Err(Malformed::Head("not valid HTTP/1.x")),
    };
    if len > MAX_RESPONSE_HEAD {
        return Err(Malformed::HeadTooLarge);
    }
    let code = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    // where each name and value sits in the buffer, so that the values can share it once
    // the head is taken out (on the stack: a vector was one more allocation a request)
    let base = buf.as_ptr() as usize;
    let offset = |p: *const u8| u32::try_from(p as usize - base).unwrap_or(u32::MAX);
    let mut spans = [[0u32; 4]; MAX_RESPONSE_HEADERS];
    for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
        let name = offset(h.name.as_ptr());
        let value = offset(h.value.as_ptr());
        *span = [
            name,
            name + u32::try_from(h.name.len()).unwrap_or(u32::MAX),
            value,
            value + u32::try_from(h.value.len()).unwrap_or(u32::MAX),
        ];
    }
    let count = resp.headers.len();
    let head = buf.split_to(len).freeze();
    if (100..200).contains(&code) {
        return match code {
            101 => Err(Malformed::UnaskedUpgrade),
            _ => Ok(Head::Informational),
        };
    }
    let status = StatusCode::from_u16(code).map_err(|_| Malformed::Head("invalid status"))?;
    let mut headers = HeaderMap::with_capacity(count);
    let mut said = Said::default();
    for [name_start, name_end, value_start, value_end] in spans.into_iter().take(count) {
        let at = |start: u32, end: u32| (start as usize)..(end as usize);
        let name = head
            .get(at(name_start, name_end))
            .and_then(|n| HeaderName::from_bytes(n).ok())
            .ok_or(Malformed::Head("invalid header name"))?;
        let value = at(value_start, value_end);
        // within the head (httparse's spans are): checked, as `slice` would panic otherwise
        let value = (value.end <= head.len())
            .then(|| head.slice(value))
            .and_then(|v| HeaderValue::from_maybe_shared(v).ok())
            .ok_or(Malformed::Head("invalid header value"))?;
        // the framing and connection headers are read here, once, and the hop-by-hop ones
        // never enter the map (they are this connection's, not the client's)
        if name == header::CONTENT_LENGTH {
            said.length(&value);
        } else if name == header::TRANSFER_ENCODING {
            said.coding(value);
            continue;
        } else if name == header::CONNECTION {
            said.connection(&value);
            continue;
        } else if HOP_BY_HOP.contains(&name) {
            continue;
        }
        headers.append(name, value);
    }
    let (body, framed_twice) = said.body(status, method)?;
    if framed_twice {
        // chunked wins (RFC 9112 §6.3), and the length is not passed on
        headers.remove(header::CONTENT_LENGTH);
    }
    for named in &said.named {
        headers.remove(named);
    }
    let reusable = http11 && !framed_twice && body != ResponseBody::UntilClose && !said.close;
    Ok(Head::Complete(ResponseHead {
        status,
        headers,
        body,
        reusable,
    }))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): about one connection, never forwarded. `close` is
/// reserved there as a field name for the same reason.
pub(crate) const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("close"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The tokens of a Connection field (RFC 9110 §7.6.1), trimmed; none if it is not text.
pub(crate) fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value.to_str().unwrap_or_default().split(',').map(str::trim)
}

/// The header a Connection token names, to be removed with the hop-by-hop ones: none for a
/// token that is one of them already (`keep-alive`, `close`), or no header name at all.
pub(crate) fn named_by_connection(token: &str) -> Option<HeaderName> {
    if HOP_BY_HOP
        .iter()
        .any(|h| h.as_str().eq_ignore_ascii_case(token))
    {
        return None;
    }
    HeaderName::from_bytes(token.as_bytes()).ok()
}

/// What a response head's framing and connection headers say, gathered as they are read.
#[derive(Default)]
struct Said {
    /// The length every Content-Length field and list item agreed on so far (RFC 9110 §8.6).
    length: Length,
    /// The first Transfer-Encoding field, and whether another came: only `chunked` alone is
    /// taken, so the rest need not be kept.
    coding: Option<HeaderValue>,
    more_codings: bool,
    /// `Connection: close`.
    close: bool,
    /// Other headers that Connection names: hop-by-hop too.
    named: Vec<HeaderName>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Length {
    #[default]
    Absent,
    Agreed(u64),
    /// Two that differ, or one that is not a number.
    Bad,
}

impl Said {
    fn coding(&mut self, value: HeaderValue) {
        if self.coding.is_none() {
            self.coding = Some(value);
        } else {
            self.more_codings = true;
        }
    }

    fn length(&mut self, value: &HeaderValue) {
        let Ok(text) = value.to_str() else {
            self.length = Length::Bad;
            return;
        };
        for item in text.split(',') {
            let item = item.trim();
            let n = (!item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()))
                .then(|| item.parse::<u64>().ok())
                .flatten();
            self.length = match (self.length, n) {
                (Length::Absent, Some(n)) => Length::Agreed(n),
                (Length::Agreed(l), Some(n)) if l == n => Length::Agreed(l),
                _ => Length::Bad,
            };
        }
    }

    fn connection(&mut self, value: &HeaderValue) {
        for token in connection_tokens(value) {
            if token.eq_ignore_ascii_case("close") {
                self.close = true;
            } else if let Some(name) = named_by_connection(token) {
                self.named.push(name);
            }
        }
    }

    /// The body's framing, and whether the head framed it two ways (length and chunked).
    fn body(&self, status: StatusCode, method: &Method) -> Result<(ResponseBody, bool), Malformed> {
        if method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((ResponseBody::None, false));
        }
        let has_length = self.length != Length::Absent;
        if let Some(first) = &self.coding {
            let value = String::from_utf8_lossy(first.as_bytes());
            if self.more_codings || !value.trim().eq_ignore_ascii_case("chunked") {
                return Err(Malformed::TransferEncoding(value.into_owned()));
            }
            return Ok((ResponseBody::Chunked, has_length));
        }
        match self.length {
            Length::Absent => Ok((ResponseBody::UntilClose, false)),
            Length::Agreed(n) => Ok((ResponseBody::Length(n), false)),
            Length::Bad => Err(Malformed::ContentLength),
        }
    }
}

/// Decodes a chunked body as its bytes come (extensions and trailers are read and dropped).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A chunk-size line ends with CR LF and holds no other control byte but HTAB.
fn clean_size_line(line: &[u8]) -> bool {
    line.strip_suffix(b"\r\n")
        .is_some_and(|l| l.iter().all(|b| *b == b'\t' || !b.is_ascii_control()))
}

/// What the decoder gives from the bytes it has.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    NeedMore,
    Done,
}

impl Chunked {
    /// Takes from `buf` what it can: the next piece of data, the end, or a request for more.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        self.decode_at_most(buf, usize::MAX)
    }

    /// [`Chunked::decode`], with a piece of data of `most` bytes at most.
    pub fn decode_at_most(
        &mut self,
        buf: &mut BytesMut,
        most: usize,
    ) -> Result<Decoded, Malformed> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(Decoded::Done),
                // httparse takes a size line without digits for 0, and any byte in its
                // extensions: hyper refuses both, and so do we (an empty line would end
                // the body early and take what follows for trailers)
                ChunkState::Size if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                    return Err(Malformed::Chunk("a chunk-size line without digits"));
                }
                ChunkState::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        if !clean_size_line(buf.get(..used).unwrap_or_default()) {
                            return Err(Malformed::Chunk("a control byte in a chunk-size line"));
                        }
                        buf.advance(used);
                        self.state = match size {
                            0 => ChunkState::Trailers,
                            n => ChunkState::Data(n),
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Err(Malformed::Chunk("chunk-size line too long"))
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(Malformed::Chunk("invalid chunk size")),
                },
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buf.len())
                        .min(most);
                    let rest = left - take as u64;
                    self.state = if rest == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(rest)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if !buf.starts_with(b"\r\n") {
                        return Err(Malformed::Chunk("no CRLF after a chunk's data"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailer_bytes + buf.len() > MAX_TRAILERS {
                            return Err(Malformed::Chunk("trailers too large"));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    self.trailer_bytes += end + 2;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(Malformed::Chunk("trailers too large"));
                    }
                    buf.advance(end + 2);
                    if end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// A chunk's header for `len` bytes of request body (its CRLF end is [`CHUNK_END`]).
pub fn chunk_header(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

pub const CHUNK_END: &[u8] = b"\r\n";
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str, method: Method) -> Result<Head, Malformed> {
        parse_response_head(&mut BytesMut::from(text), &method)
    }

    fn complete(text: &str) -> ResponseHead {
        match parse(text, Method::GET).unwrap() {
            Head::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_head_has_its_framing_from_the_body_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a.test"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::POST,
            "/p?q=1",
            &h,
            |out| out.extend_from_slice(b"x-more: 1\r\n"),
            RequestBody::Length(5),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: a.test\r\nx-more: 1\r\ncookie: a=1; b=2\r\ncontent-length: 5\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::GET,
            "?q=1",
            &h,
            |_| {},
            RequestBody::of(Some(0), false),
        );
        assert!(out.starts_with(b"GET /?q=1 HTTP/1.1\r\n"));
        assert!(!String::from_utf8(out).unwrap().contains("content-length"));
        let mut out = Vec::new();
        encode_request_head(
            &mut out,
            &Method::PUT,
            "/",
            &h,
            |_| {},
            RequestBody::of(None, true),
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("transfer-encoding: chunked\r\n\r\n"));
    }

    #[test]
    fn a_response_body_ends_as_its_head_says() {
        let h = complete("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Length(12), true));
        let h = complete("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.body, ResponseBody::Length(3));
        let h = complete("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Chunked, true));
        let h = complete("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::UntilClose, false));
        let h = complete("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(h.body, ResponseBody::None);
        let h = complete("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.reusable, "HTTP/1.0");
        let h = complete(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(!h.reusable, "Connection: close");
        match parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD).unwrap() {
            Head::Complete(h) => assert_eq!(h.body, ResponseBody::None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_never_enter_the_map() {
        let h = complete(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n\
             X-Internal: 1\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nX-Kept: 1\r\n\r\n",
        );
        let names: Vec<&str> = h.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
        assert_eq!((h.body, h.reusable), (ResponseBody::Chunked, true));
    }

    #[test]
    fn a_body_framed_two_ways_is_chunked_and_its_connection_not_reused() {
        let h =
            complete("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Chunked, false));
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn ambiguous_or_odd_framings_are_refused() {
        for (text, want) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Malformed::ContentLength,
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", Malformed::ContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", Malformed::ContentLength),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Malformed::TransferEncoding("gzip, chunked".into()),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Malformed::TransferEncoding("chunked".into()),
            ),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n", Malformed::UnaskedUpgrade),
            ("SSH-2.0-OpenSSH\r\n\r\n", Malformed::Head("not valid HTTP/1.x")),
        ] {
            assert_eq!(parse(text, Method::GET).unwrap_err(), want, "{text:?}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "y".repeat(MAX_RESPONSE_HEAD));
        assert_eq!(
            parse(&huge, Method::GET).unwrap_err(),
            Malformed::HeadTooLarge
        );
    }

    #[test]
    fn a_head_is_taken_out_of_the_buffer_once_whole() {
        let mut buf = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le");
        assert!(matches!(
            parse_response_head(&mut buf, &Method::POST),
            Ok(Head::Informational)
        ));
        assert!(matches!(
            parse_response_head(&mut buf, &Method::POST),
            Ok(Head::Partial)
        ));
        buf.extend_from_slice(b"ngth: 2\r\nX-A: b\r\n\r\nok");
        let Ok(Head::Complete(h)) = parse_response_head(&mut buf, &Method::POST) else {
            panic!()
        };
        assert_eq!(h.headers["x-a"], "b");
        assert_eq!(&buf[..], b"ok");
    }

    fn decode_all(input: &[&[u8]]) -> Result<(Vec<u8>, bool, BytesMut), Malformed> {
        let mut d = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for (i, piece) in input.iter().enumerate() {
            buf.extend_from_slice(piece);
            loop {
                match d.decode(&mut buf)? {
                    Decoded::Data(b) => out.extend_from_slice(&b),
                    Decoded::NeedMore => break,
                    Decoded::Done => {
                        // what came after the end stays for the next reader
                        input[i + 1..].iter().for_each(|p| buf.extend_from_slice(p));
                        return Ok((out, true, buf));
                    }
                }
            }
        }
        Ok((out, false, buf))
    }

    #[test]
    fn chunks_are_decoded_however_the_bytes_are_cut() {
        let whole: &[u8] = b"5;ext=1\r\nhello\r\nb\r\n, world!!!!\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for cut in 0..whole.len() {
            let (out, done, rest) = decode_all(&[&whole[..cut], &whole[cut..]]).unwrap();
            assert_eq!(
                (out.as_slice(), done),
                (&b"hello, world!!!!"[..], true),
                "cut {cut}"
            );
            assert_eq!(&rest[..], b"NEXT", "the next answer's bytes stay");
        }
    }

    #[test]
    fn bad_chunks_are_refused() {
        for bad in [
            &b"zz\r\nhello\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            // no digits: read as the last chunk, "hello" would pass for the whole body
            b"5\r\nhello\r\n\r\n5\r\nworld\r\n0\r\n\r\n",
            b"5\r\nhello\r\n;x\r\n0\r\n\r\n",
            // a bare LF, or a control byte, in the extensions
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_all(&[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(decode_all(&[&long]).is_err());
    }
}
