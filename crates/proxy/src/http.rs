//! One request: host → site, redirects, maintenance, limits, forwarding headers, the
//! backend call (keep-alive pool), WebSocket upgrades, and the access log line.

use crate::backend::Backends;
use crate::origin::Origin;
use crate::pages;
use crate::server::Shared;
use crate::table::{normalize_host, HostEntry, Site};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use pic2_render::proxy::RouteTls;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// What the connection knows about its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub addr: SocketAddr,
    pub tls: bool,
}

pub(crate) fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

fn page(status: StatusCode, html: String) -> Response<Body> {
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

const HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("close"), // reserved (RFC 9110 §7.6.1): never forwarded
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const FORWARDING: [HeaderName; 6] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
];

/// Removes hop-by-hop headers, including those the Connection header names.
fn strip_hop(h: &mut HeaderMap) {
    strip(h, &[]);
}

/// Removes hop-by-hop headers, those the Connection header names, and `also`. One pass over
/// the names finds them (a request or an answer usually has one or none) rather than a
/// removal by name, a hash and a probe, for each of the fourteen.
fn strip(h: &mut HeaderMap, also: &[HeaderName]) {
    let mut found: Vec<HeaderName> = h
        .keys()
        .filter(|k| HOP.contains(k) || also.contains(k))
        .cloned()
        .collect();
    if found.is_empty() {
        return;
    }
    if found.contains(&header::CONNECTION) {
        // names HOP has (`keep-alive`, `close`: the usual tokens) are found above already
        let named = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !HOP.iter().any(|hop| hop.as_str().eq_ignore_ascii_case(n)))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect::<Vec<_>>();
        found.extend(named);
    }
    for n in &found {
        h.remove(n);
    }
}

fn wants_upgrade(h: &HeaderMap) -> Option<HeaderValue> {
    let conn_upgrade = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if conn_upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Framing shapes used for request smuggling that hyper's parser lets through. On HTTP/1
/// Content-Length with Transfer-Encoding never gets here (hyper drops the length before the
/// service sees the head): the connection's framing guard ([`crate::guard`]) refuses it.
fn smuggling(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    let cl = h.get_all(header::CONTENT_LENGTH).iter().count();
    let te: Vec<&HeaderValue> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    if cl > 1 || (cl > 0 && !te.is_empty()) || te.len() > 1 {
        return true;
    }
    // Only a plain "chunked" is accepted (no lists, no odd spacing or case tricks).
    te.first().is_some_and(|v| v.as_bytes() != b"chunked")
}

fn is_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn path_of(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The parts of a request the access log needs, copied before it is forwarded.
struct Logged {
    time: chrono::DateTime<chrono::Utc>,
    method: String,
    path: String,
    version: &'static str,
    referer: Option<String>,
    user_agent: Option<String>,
}

impl Logged {
    fn of(req: &Request<Incoming>) -> Self {
        let text = |n: HeaderName| {
            req.headers()
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Logged {
            time: chrono::Utc::now(),
            method: req.method().as_str().to_owned(),
            path: path_of(req.uri()).to_owned(),
            version: match req.version() {
                Version::HTTP_2 => "HTTP/2.0",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            referer: text(header::REFERER),
            user_agent: text(header::USER_AGENT),
        }
    }

    fn entry(
        self,
        client: std::net::IpAddr,
        host: String,
        resp: &Response<Body>,
        elapsed: std::time::Duration,
    ) -> crate::access_log::Entry {
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or_else(|| hyper::body::Body::size_hint(resp.body()).exact());
        crate::access_log::Entry {
            time: self.time,
            client,
            host,
            method: self.method,
            path: self.path,
            version: self.version,
            status: resp.status().as_u16(),
            bytes,
            referer: self.referer,
            user_agent: self.user_agent,
            elapsed,
        }
    }
}

/// Handles one request end to end (never fails: errors become pages).
pub async fn handle(
    shared: Arc<Shared>,
    backends: Backends,
    client: Client,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let start = Instant::now();
    // copied only for the access log, before the request moves on to the backend
    let logged = shared.logs().then(|| Logged::of(&req));
    let raw_host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let wanted = raw_host.map(normalize_host).unwrap_or_default();
    let table = shared.table.load_full();
    // a known name is borrowed from the table, which this future holds: no copy per request
    let (host, entry) = match table.hosts.get_key_value(&*wanted) {
        Some((name, entry)) => (Cow::Borrowed(name.as_str()), Some(entry)),
        None => (Cow::Owned(wanted.into_owned()), None),
    };
    let origin = crate::origin::resolve(&table.trusted, client, req.headers());
    let resp = route(&shared, &backends, &origin, req, &host, entry, &table).await;
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    match &entry {
        Some(e) => e.site.metrics.observe(status, elapsed),
        None if status == 404 => {
            shared.global.unknown_host.fetch_add(1, Relaxed);
        }
        None => {}
    }
    if let Some(l) = logged {
        shared.access_log(&l.entry(origin.ip, host.into_owned(), &resp, elapsed));
    }
    Ok(resp)
}

/// The answer to the framing guard's own request (a refused HTTP/1 head, counted by the
/// guard): its page, and the connection closed. A client sending the header itself gets 400.
fn guard_verdict(value: &[u8]) -> Response<Body> {
    let mut r = match crate::guard::refusal_status(value) {
        Some(431) => page(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            pages::header_too_large(),
        ),
        _ => page(StatusCode::BAD_REQUEST, pages::bad_request()),
    };
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn route(
    shared: &Arc<Shared>,
    backends: &Backends,
    origin: &Origin,
    req: Request<Incoming>,
    host: &str,
    entry: Option<&HostEntry>,
    table: &crate::table::Table,
) -> Response<Body> {
    if let Some(v) = req.headers().get(crate::guard::VERDICT_HEADER) {
        return guard_verdict(v.as_bytes());
    }
    if smuggling(&req) {
        shared.global.bad_requests.fetch_add(1, Relaxed);
        let mut r = page(StatusCode::BAD_REQUEST, pages::bad_request());
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let path = req.uri().path();
    if !origin.peer.tls {
        if let Some(token) = path.strip_prefix("/.well-known/acme-challenge/") {
            if let Some(ka) = shared.acme.http01(token) {
                let mut r = Response::new(full(ka));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                return r;
            }
        }
    }
    let Some(entry) = entry else {
        return page(StatusCode::NOT_FOUND, pages::not_found());
    };
    let site = &entry.site;
    let https_port = shared.https_public_port;
    let to_https = !origin.https && site.tls != RouteTls::None && https_port.is_some();
    if entry.redirect_to.is_some() || to_https {
        let target = entry.redirect_to.as_deref().unwrap_or(host);
        let (scheme, port) = if origin.https || to_https {
            ("https", https_port)
        } else {
            ("http", shared.http_public_port)
        };
        let port = port
            .filter(|p| *p != if scheme == "https" { 443 } else { 80 })
            .map_or(String::new(), |p| format!(":{p}"));
        let pq = path_of(req.uri());
        return redirect(&format!("{scheme}://{target}{port}{pq}"));
    }
    if shared.maintenance.load().contains(&site.name)
        && !(origin.known && table.is_admin(origin.ip))
    {
        let mut r = page(StatusCode::SERVICE_UNAVAILABLE, pages::maintenance());
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("600"));
        return r;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > site.max_body) {
        let mut r = page(StatusCode::PAYLOAD_TOO_LARGE, pages::too_large());
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let mut resp = forward(shared, backends, origin, req, host, site).await;
    if origin.https && site.hsts {
        resp.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

async fn forward(
    shared: &Arc<Shared>,
    backends: &Backends,
    origin: &Origin,
    req: Request<Incoming>,
    host: &str,
    site: &Site,
) -> Response<Body> {
    let backend = site.backend.as_str();
    let (out, client_upgrade) = backend_request(origin, req, host, site);
    let waiting = shared.options.backend_timeout;
    if let Some(client_up) = client_upgrade {
        // the client's connection gives its slots back when hyper hands it over: the
        // tunnel, which may live for hours, holds its own, taken before the backend is asked
        let Some(slots) = shared.take_slots(origin.peer.addr.ip()) else {
            return page(StatusCode::SERVICE_UNAVAILABLE, pages::busy());
        };
        let sent = tokio::time::timeout(waiting, backends.send_upgrade(backend, out)).await;
        return match answered(backend, sent) {
            Ok(resp) => tunnel(shared, client_up, resp, slots),
            Err(no) => no.page(),
        };
    }
    let sent = tokio::time::timeout(waiting, backends.send(backend, out)).await;
    match answered(backend, sent) {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop(&mut parts.headers);
            Response::from_parts(parts, body)
        }
        Err(no) => no.page(),
    }
}

/// The request for the backend (origin-form URI, hop-by-hop headers out, forwarding headers
/// set, body under the site's limit), and the client's side of an upgrade it asks for.
/// Not async on purpose: none of its locals lives in the request's future.
fn backend_request(
    origin: &Origin,
    mut req: Request<Incoming>,
    host: &str,
    site: &Site,
) -> (Request<Body>, Option<hyper::upgrade::OnUpgrade>) {
    let upgrade = if req.version() == Version::HTTP_11 {
        wants_upgrade(req.headers())
    } else {
        None
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    // origin-form: the client's path and query, without a new parse
    let path_and_query = parts
        .uri
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::from(path_and_query);
    let mut headers = parts.headers;
    strip(&mut headers, &FORWARDING);
    let proto = HeaderValue::from_static(scheme(origin));
    headers.insert(HeaderName::from_static("x-forwarded-proto"), proto);
    let (xff, forwarded) = forwarding_values(origin, host);
    for (name, value) in [
        (HeaderName::from_static("x-forwarded-for"), xff),
        (header::FORWARDED, forwarded),
    ] {
        if let Some(v) = value {
            headers.insert(name, v);
        }
    }
    if let Some(v) = host_value(host, headers.get(header::HOST)) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), v.clone());
        headers.insert(header::HOST, v);
    }
    if let Some(u) = &upgrade {
        headers.insert(header::UPGRADE, u.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let body: Body = Limited::new(body, usize::try_from(site.max_body).unwrap_or(usize::MAX))
        .map_err(|e| -> BoxError { e })
        .boxed();
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;
    (out, client_upgrade)
}

/// The Host the backend gets (the site's name as routed): the client's own header value
/// when it is already that name, which is the usual case (no copy).
fn host_value(host: &str, client_host: Option<&HeaderValue>) -> Option<HeaderValue> {
    match client_host {
        Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
        _ => header_value(host.as_bytes().to_vec()),
    }
}

/// X-Forwarded-For and Forwarded (RFC 7239) for `origin`, written with one formatting of
/// the address each. Behind a trusted proxy its X-Forwarded-For chain goes on, with the
/// proxy itself last.
fn forwarding_values(origin: &Origin, host: &str) -> (Option<HeaderValue>, Option<HeaderValue>) {
    use std::fmt::Write as _;
    let mut xff = String::with_capacity(48);
    if let Some(chain) = &origin.chain {
        let _ = write!(xff, "{chain}, {}", origin.peer.addr.ip());
    } else {
        let _ = write!(xff, "{}", origin.ip);
    }
    let proto = scheme(origin);
    let mut fwd = String::with_capacity(64 + host.len());
    let _ = match origin.ip {
        std::net::IpAddr::V4(a) => write!(fwd, "for={a};proto={proto};host={host}"),
        std::net::IpAddr::V6(a) => write!(fwd, "for=\"[{a}]\";proto={proto};host={host}"),
    };
    (
        header_value(xff.into_bytes()),
        header_value(fwd.into_bytes()),
    )
}

/// The scheme the client used (to pic2, or to the trusted proxy in front).
fn scheme(origin: &Origin) -> &'static str {
    if origin.https {
        "https"
    } else {
        "http"
    }
}

/// A header value from bytes pic2 wrote itself, moved rather than copied (`from_str`
/// copies); `None`, and the header left out, if they are not a valid value.
fn header_value(bytes: Vec<u8>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(bytes)).ok()
}

/// Why a backend gave no response.
#[derive(Clone, Copy, Debug)]
enum NoAnswer {
    Timeout,
    BodyTooLarge,
    Unreachable,
}

impl NoAnswer {
    /// The page that says so: 504, 413, 502.
    fn page(self) -> Response<Body> {
        match self {
            NoAnswer::Timeout => page(StatusCode::GATEWAY_TIMEOUT, pages::gateway_timeout()),
            NoAnswer::BodyTooLarge => page(StatusCode::PAYLOAD_TOO_LARGE, pages::too_large()),
            NoAnswer::Unreachable => page(StatusCode::BAD_GATEWAY, pages::bad_gateway()),
        }
    }
}

/// The backend's response, or why there is none.
fn answered<T>(
    backend: &str,
    sent: Result<Result<T, crate::backend::Error>, tokio::time::error::Elapsed>,
) -> Result<T, NoAnswer> {
    match sent {
        Err(_) => Err(NoAnswer::Timeout),
        Ok(Err(e)) if is_body_limit(&e) => Err(NoAnswer::BodyTooLarge),
        Ok(Err(e)) => {
            tracing::debug!(backend, error = %e, "backend request failed");
            Err(NoAnswer::Unreachable)
        }
        Ok(Ok(r)) => Ok(r),
    }
}

/// An upgrade the backend accepted (101): both streams are joined by a task of their own
/// that outlives the request (and any reload); anything else goes back as it came.
fn tunnel(
    shared: &Arc<Shared>,
    client_up: hyper::upgrade::OnUpgrade,
    mut resp: Response<Incoming>,
    slots: crate::server::Slots,
) -> Response<Body> {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = resp.into_parts();
        strip_hop(&mut parts.headers);
        return Response::from_parts(parts, body.map_err(|e| -> BoxError { Box::new(e) }).boxed());
    }
    let backend_up = hyper::upgrade::on(&mut resp);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let _slots = slots;
        if let (Ok(a), Ok(b)) = (client_up.await, backend_up.await) {
            shared.global.websockets_open.fetch_add(1, Relaxed);
            crate::tunnel::join(
                TokioIo::new(a),
                TokioIo::new(b),
                shared.options.idle_timeout,
            )
            .await;
            shared.global.websockets_open.fetch_sub(1, Relaxed);
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, full(Bytes::new()))
}
#[cfg(test)]
mod future_size {
    /// The size of the future an async fn taking four arguments returns.
    fn of<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Each request's future is moved whole when hyper spawns an HTTP/2 stream and when it
    /// stores an HTTP/1 one. It was 5.7 KB (the backend connection held inline, the
    /// request's locals kept across awaits) when memmove took 9.5 % of the CPU under h2load;
    /// 2.9 KB and 6 % since.
    #[test]
    fn a_requests_future_stays_small() {
        let size = of(super::handle);
        assert!(size <= 3 * 1024, "handle's future is {size} bytes");
    }
}

#[cfg(test)]
mod headers {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "close, X-Secret"),
            ("connection", "keep-alive"),
            ("close", "x"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-kept", "1"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        strip_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn forwarding_values_name_the_client_for_ipv4_ipv6_and_behind_a_trusted_proxy() {
        let origin = |ip: &str, https, chain: Option<&str>| Origin {
            peer: Client {
                addr: "192.0.2.9:4000".parse().unwrap(),
                tls: https,
            },
            ip: ip.parse().unwrap(),
            known: true,
            https,
            chain: chain.map(str::to_owned),
        };
        let text = |v: Option<HeaderValue>| v.unwrap().to_str().unwrap().to_owned();
        let (xff, fwd) = forwarding_values(&origin("203.0.113.7", false, None), "a.test");
        assert_eq!(text(xff), "203.0.113.7");
        assert_eq!(text(fwd), "for=203.0.113.7;proto=http;host=a.test");
        let (xff, fwd) = forwarding_values(&origin("2001:db8::1", true, None), "a.test");
        assert_eq!(text(xff), "2001:db8::1");
        assert_eq!(text(fwd), "for=\"[2001:db8::1]\";proto=https;host=a.test");
        let behind = origin("203.0.113.7", true, Some("203.0.113.7"));
        let (xff, _) = forwarding_values(&behind, "a.test");
        assert_eq!(text(xff), "203.0.113.7, 192.0.2.9");
    }

    #[test]
    fn the_backend_host_reuses_the_clients_value_only_when_it_is_the_routed_name() {
        let same = HeaderValue::from_static("a.test");
        assert_eq!(host_value("a.test", Some(&same)).unwrap(), "a.test");
        let other = HeaderValue::from_static("A.TEST:8080");
        assert_eq!(host_value("a.test", Some(&other)).unwrap(), "a.test");
        assert_eq!(host_value("a.test", None).unwrap(), "a.test");
    }
}
