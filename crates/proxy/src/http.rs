//! One request: host → site, redirects, maintenance, limits, forwarding headers, the
//! backend call (keep-alive pool), WebSocket upgrades, and the access log line.

// hop-by-hop headers: the backend client's list, for the client's requests too
use crate::backend::{connection_tokens, named_by_connection, Backends, HOP_BY_HOP as HOP};
use crate::logged_body::LoggedBody;
use crate::origin::Origin;
use crate::pages;
use crate::server::{HeldSlots, Shared, Slots};
use crate::stall::{AnswerStalled, BodyTimedOut, StalledBody};
use crate::table::{normalize_host, HostEntry, Site, Table, Timeouts};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use pic2_render::proxy::RouteTls;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// What the connection knows about its client.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The name the client asked for in its TLS handshake (SNI), normalised: its requests
    /// must be for that name's site ([`misdirected`]).
    pub sni: Option<Arc<str>>,
    /// An HTTP/1 connection's slots, which a WebSocket upgrade takes over (none over TLS
    /// with ALPN h2, the only way HTTP/2 is served).
    pub(crate) slots: Option<Arc<crate::server::HeldSlots>>,
}

impl Client {
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        Client {
            addr,
            tls,
            sni: None,
            slots: None,
        }
    }

    /// The same client, over a TLS connection whose handshake asked for `sni`.
    pub(crate) fn with_sni(self, sni: Option<&str>) -> Self {
        Client {
            sni: sni.map(|n| Arc::from(normalize_host(n).as_ref())),
            ..self
        }
    }

    /// An HTTP/1 connection's client, holding the connection's `slots`.
    pub(crate) fn holding(addr: SocketAddr, tls: bool, slots: Slots) -> Self {
        Client {
            slots: Some(HeldSlots::new(slots)),
            ..Client::new(addr, tls)
        }
    }
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

/// Whether `name` is a header that tells a backend who the client is, how it came or what
/// it asked for, beside the request line: the client's own are never passed on (pic2 sets
/// the first five itself). Frameworks and applications believe them: `X-Forwarded-Ssl` and
/// `Front-End-Https` make PHP apps think the request came over HTTPS, `True-Client-IP` and
/// its kin stand for the client's address, `X-Original-URL` and `X-Rewrite-URL` override
/// the path (Symfony's CVE-2018-14773). A `match` on the name: a few instructions a header.
fn is_forwarding(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-real-ip"
            | "x-forwarded-ssl"
            | "x-forwarded-scheme"
            | "x-forwarded-server"
            | "x-forwarded-prefix"
            | "x-url-scheme"
            | "front-end-https"
            | "x-client-ip"
            | "true-client-ip"
            | "x-cluster-client-ip"
            | "cf-connecting-ip"
            | "fastly-client-ip"
            | "x-original-url"
            | "x-rewrite-url"
            // what PHP's "real IP" snippets read first (HTTP_CLIENT_IP, HTTP_X_FORWARDED…)
            | "client-ip"
            | "x-forwarded"
            | "forwarded-for"
            | "x-originating-ip"
            | "x-remote-ip"
            | "x-remote-addr"
            | "x-proxyuser-ip"
            | "x-host"
    )
}

/// Removes hop-by-hop headers, including those the Connection header names.
fn strip_hop(h: &mut HeaderMap) {
    strip(h, |_| false);
}

/// Removes hop-by-hop headers, those the Connection header names, and `also`. One pass over
/// the names finds each (a request or an answer usually has one or none) rather than a
/// removal by name, a hash and a probe, for each of the fourteen; nothing is allocated
/// unless Connection names a header of its own.
fn strip(h: &mut HeaderMap, also: fn(&HeaderName) -> bool) {
    let listed = |k: &HeaderName| HOP.contains(k) || also(k);
    // names HOP has (`keep-alive`, `close`: the usual tokens) are found by `listed` already
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .filter_map(named_by_connection)
        .collect();
    while let Some(k) = h.keys().find(|k| listed(k)).cloned() {
        h.remove(&k);
    }
    for n in &named {
        h.remove(n);
    }
}

/// Whether a request asks to become a WebSocket (a GET naming `websocket` among its
/// `Upgrade` protocols), the only upgrade the backend is asked for in turn. Any other
/// protocol is dropped with the hop-by-hop headers and the request goes on as it is: a
/// backend switching to h2c (Apache's `Protocols h2c`) would open a tunnel whose requests no
/// routing, maintenance, body limit or 421 sees.
fn wants_websocket(method: &Method, h: &HeaderMap) -> bool {
    let conn_upgrade = h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .any(|t| t.eq_ignore_ascii_case("upgrade"));
    let websocket = h
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(connection_tokens)
        .any(|t| t.eq_ignore_ascii_case("websocket"));
    conn_upgrade && websocket && method == Method::GET
}

/// RFC 9112 §3.2: a request with two Host fields, or one that is no `host[:port]`, and an
/// HTTP/1.1 request without one, get 400 (they were routed by the first, or as an unknown
/// site).
fn bad_host(req: &Request<Incoming>) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => true,
        (Some(host), None) => !is_host_field(host.as_bytes()),
        (None, _) => req.version() == Version::HTTP_11,
    }
}

/// `host [":" port]`: a name or IPv4 address (RFC 3986's reg-name characters), or an IPv6
/// address in brackets; the port digits only. Empty is allowed (a target without authority).
fn is_host_field(v: &[u8]) -> bool {
    let port_ok = |rest: &[u8]| match rest.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    if let Some(inner) = v.strip_prefix(b"[") {
        let Some(end) = inner.iter().position(|b| *b == b']') else {
            return false;
        };
        let (ip, rest) = inner.split_at(end);
        let ip_ok = !ip.is_empty()
            && ip
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b));
        return ip_ok && port_ok(rest.get(1..).unwrap_or_default());
    }
    let end = v.iter().position(|b| *b == b':').unwrap_or(v.len());
    let (name, rest) = v.split_at(end);
    let name_ok = name
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b));
    name_ok && port_ok(rest)
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

/// `body`, failing once it has given more than `limit` bytes (413).
fn limited<B>(body: B, limit: usize) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    Limited::new(body, limit)
        .map_err(|e| -> BoxError { e })
        .boxed()
}

/// True when `e`, or an error under it, is a `T`.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn path_of(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The name a request asks for, normalised: an absolute-form target's authority, else the
/// Host field's value (empty without either).
fn asked_host<'a>(
    authority: Option<&'a str>,
    host_field: impl FnOnce() -> Option<&'a str>,
) -> Cow<'a, str> {
    authority
        .or_else(host_field)
        .map(normalize_host)
        .unwrap_or_default()
}

/// The head the framing guard refused, when `req` is the request it made in its place.
fn refused_head(req: &Request<Incoming>, client: &Client) -> Option<crate::guard::RefusedHead> {
    let verdict = req.headers().get(crate::guard::VERDICT_HEADER)?;
    crate::guard::refusal_status(verdict.as_bytes())?;
    client.slots.as_ref()?.guard.take_refused()
}

/// What the access log shows of a query string a route keeps out of it (`log_query`).
const QUERY_NOT_LOGGED: &str = "(not-logged)";

/// The parts of a request the access log needs, copied before it is forwarded.
struct Logged {
    time: chrono::DateTime<chrono::Utc>,
    method: String,
    path: String,
    version: &'static str,
    referer: Option<String>,
    user_agent: Option<String>,
    /// The host logged in place of the one routed to (the guard's refusals).
    host: Option<String>,
}

impl Logged {
    /// The request's parts; for the request the framing guard made in place of a head it
    /// refused, that head's method, target and host.
    fn of(req: &Request<Incoming>, client: &Client) -> Self {
        let text = |n: HeaderName| {
            req.headers()
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut logged = Logged {
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
            host: None,
        };
        if let Some(refused) = refused_head(req, client) {
            let target = refused.target.parse::<Uri>().ok();
            let authority = target.as_ref().and_then(Uri::authority).map(|a| a.as_str());
            logged.host = Some(asked_host(authority, || refused.host.as_deref()).into_owned());
            logged.method = refused.method;
            logged.path = refused.target;
        }
        logged
    }

    /// The query strings of the path and the referer replaced by [`QUERY_NOT_LOGGED`].
    fn without_queries(&mut self) {
        let cut = |s: &mut String| {
            if let Some(at) = s.find('?') {
                s.truncate(at + 1);
                s.push_str(QUERY_NOT_LOGGED);
            }
        };
        cut(&mut self.path);
        if let Some(r) = &mut self.referer {
            cut(r);
        }
    }

    /// The log's entry, for the host and port the client reached; its bytes and time are
    /// the body's to set, at its end ([`LoggedBody`]).
    fn entry(
        self,
        client: std::net::IpAddr,
        (host, port): (String, u16),
        status: StatusCode,
    ) -> crate::access_log::Entry {
        crate::access_log::Entry {
            time: self.time,
            client,
            host,
            port,
            method: self.method,
            path: self.path,
            version: self.version,
            status: status.as_u16(),
            bytes: None,
            referer: self.referer,
            user_agent: self.user_agent,
            elapsed: Duration::ZERO,
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
    let logged = shared.logs().then(|| Logged::of(&req, &client));
    let wanted = asked_host(req.uri().authority().map(|a| a.as_str()), || {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let table = shared.table.load_full();
    // a known name is borrowed from the table, which this future holds: no copy per request
    let (host, entry) = match table.hosts.get_key_value(&*wanted) {
        Some((name, entry)) => (Cow::Borrowed(name.as_str()), Some(entry)),
        None => (Cow::Owned(wanted.into_owned()), None),
    };
    let origin = crate::origin::resolve(&table.trusted, client, req.headers());
    let mut resp = route(&shared, &backends, &origin, req, &host, entry, &table).await;
    // on every answer over HTTPS of a site that asks, the proxy's own pages and redirects too
    if origin.https && entry.is_some_and(|e| e.site.hsts) {
        resp.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    match &entry {
        Some(e) => e.site.metrics.observe(status, elapsed),
        None if status == 404 => {
            shared.global.unknown_host.fetch_add(1, Relaxed);
        }
        None => {}
    }
    let Some(mut l) = logged else {
        return Ok(resp);
    };
    // a refused head's site keeps its queries out too (a reset token sent with a bad
    // framing would have been logged), and one whose site is not known (no Host: cut
    // before it, a URL too long) keeps them out whatever it was for
    let private = match &l.host {
        Some(refused) => table
            .hosts
            .get(refused.as_str())
            .is_none_or(|e| !e.site.log_query),
        None => entry.is_some_and(|e| !e.site.log_query),
    };
    if private {
        l.without_queries();
    }
    let host = l.host.take().unwrap_or_else(|| host.into_owned());
    let port = match origin.peer.tls {
        true => shared.https_public_port,
        false => shared.http_public_port,
    };
    let port = port.unwrap_or_default();
    let entry = l.entry(origin.ip, (host, port), resp.status());
    Ok(resp.map(|body| LoggedBody::new(body, entry, start, shared).boxed()))
}

/// The answer to the framing guard's own request (a refused HTTP/1 head, counted by the
/// guard): its page, and the connection closed. A client sending the header itself gets 400.
fn guard_verdict(value: &[u8]) -> Response<Body> {
    let mut r = match crate::guard::refusal_status(value) {
        Some(414) => page(StatusCode::URI_TOO_LONG, pages::uri_too_long()),
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
    table: &Table,
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
    if req.method() == Method::CONNECT {
        // not a forward proxy: refused before any site or backend sees it. hyper would
        // otherwise take a 2xx from a backend for a tunnel, and the framing guard follows
        // a CONNECT's bytes as any request's because it never switches
        let mut r = page(StatusCode::METHOD_NOT_ALLOWED, pages::not_a_tunnel());
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        // closed: hyper keeps a CONNECT's upgrade pending, and would end the connection
        // later without an orderly close (no TLS close_notify)
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    if bad_host(&req) {
        shared.global.bad_requests.fetch_add(1, Relaxed);
        return page(StatusCode::BAD_REQUEST, pages::bad_request());
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
    // a trusted proxy in front may carry several sites' requests on one connection
    if misdirected(origin.peer.sni.as_deref(), host, entry, table)
        && !crate::origin::is_trusted(&table.trusted, origin.peer.addr.ip())
    {
        shared.global.misdirected.fetch_add(1, Relaxed);
        return page(StatusCode::MISDIRECTED_REQUEST, pages::misdirected());
    }
    let site = &entry.site;
    let https_port = shared.https_public_port;
    let target = entry.redirect_to.as_deref().unwrap_or(host);
    // only once there is a certificate to serve there: before ACME's first one (DNS still
    // on the old server while the migration is tested through a hosts file), or with a
    // certificate file that cannot be read, the redirect would lead to a failed handshake
    let to_https = !origin.https
        && site.tls != RouteTls::None
        && https_port.is_some()
        && shared.certs.has(target);
    if entry.redirect_to.is_some() || to_https {
        let (scheme, port) = if origin.https || to_https {
            ("https", https_port)
        } else {
            ("http", shared.http_public_port)
        };
        let port = port
            .filter(|p| *p != if scheme == "https" { 443 } else { 80 })
            .map_or(String::new(), |p| format!(":{p}"));
        let pq = path_of(req.uri());
        let target = authority(target);
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
    forward(shared, backends, origin, req, host, site, &table.timeouts).await
}

/// Is a request for `host` (whose entry is `entry`) on a TLS connection opened for `sni`
/// one for another site? Its certificate was chosen for `sni`, so the answer would come
/// from a site whose certificate the client never checked: a browser that reused an HTTP/2
/// connection for another name it believed covered (RFC 9110 §15.5.20), or a client
/// fronting one site with another. 421 tells the browser to open a connection of its own.
/// The names of one site (its aliases, www and apex) share its certificate and its backend.
fn misdirected(sni: Option<&str>, host: &str, entry: &HostEntry, table: &Table) -> bool {
    let Some(sni) = sni else {
        // nothing to compare; not met today: a handshake without SNI (an old client, an
        // address) gets no certificate (`tls::Certs::resolve`), as no site is the default
        return false;
    };
    sni != host
        && table
            .hosts
            .get(sni)
            .is_none_or(|e| !Arc::ptr_eq(&e.site, &entry.site))
}

async fn forward(
    shared: &Arc<Shared>,
    backends: &Backends,
    origin: &Origin,
    req: Request<Incoming>,
    host: &str,
    site: &Site,
    timeouts: &Timeouts,
) -> Response<Body> {
    let backend = &site.backend;
    let (out, client_upgrade) = backend_request(req, host, site, timeouts.body_read);
    let forwarding = Forwarding { origin, host };
    let waiting = site.backend_timeout;
    if let Some(client_up) = client_upgrade {
        // the tunnel, which may live for hours, holds the connection's slots once hyper hands
        // the connection over to it (taking slots of its own instead, an upgrade on a full
        // proxy, or from a client at its limit, got a 503); they go back to the connection
        // if the backend does not switch
        let held = origin.peer.slots.as_deref();
        let Some(slots) = held
            .and_then(HeldSlots::take)
            .or_else(|| shared.take_slots(origin.peer.addr.ip()))
        else {
            return page(StatusCode::SERVICE_UNAVAILABLE, pages::busy());
        };
        let out = forwarding.inserted_into(out);
        let sent = backends
            .timers
            .timeout(waiting, backends.send_upgrade(&backend.addr, out))
            .await
            .unwrap_or_else(|_| {
                Err(crate::backend::Error::Timeout {
                    backend: backend.addr.to_string(),
                })
            });
        return match answered(&backend.addr, sent) {
            Ok(resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                if let Some(h) = held {
                    h.guard.confirm_switch();
                }
                tunnel(shared, client_up, resp, slots, timeouts.idle)
            }
            Ok(resp) => {
                HeldSlots::give_back(held, slots);
                not_switched(resp, waiting)
            }
            Err(no) => {
                HeldSlots::give_back(held, slots);
                no.page()
            }
        };
    }
    let sent = backends
        .send(backend, out, |head| forwarding.write(head), waiting)
        .await;
    // the answer's hop-by-hop headers were left out as its head was read
    match answered(&backend.addr, sent) {
        Ok(resp) => resp,
        Err(no) => no.page(),
    }
}

/// The request for the backend (origin-form URI, hop-by-hop and the client's forwarding
/// headers out, Host the routed name, body under the site's limit), and the client's side
/// of an upgrade it asks for. pic2's own forwarding headers are added by [`Forwarding`].
/// Not async on purpose: none of its locals lives in the request's future.
fn backend_request(
    mut req: Request<Incoming>,
    host: &str,
    site: &Site,
    body_read_timeout: Duration,
) -> (Request<Body>, Option<hyper::upgrade::OnUpgrade>) {
    let websocket =
        req.version() == Version::HTTP_11 && wants_websocket(req.method(), req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    // origin-form: the client's path and query, without a new parse
    let path_and_query = parts
        .uri
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::from(path_and_query);
    let mut headers = parts.headers;
    // the client's forwarding headers, and Expect: hyper has answered a `100-continue`
    // itself, and pic2 sends the body at once (nginx drops it too)
    strip(&mut headers, |name| {
        is_forwarding(name) || name == header::EXPECT
    });
    // the client's Host is kept as it came when it is the routed name, the usual case, and
    // the only Host line (a second one would reach the backend beside it)
    let mut hosts = headers.get_all(header::HOST).iter();
    let routed = hosts
        .next()
        .is_some_and(|v| v.as_bytes() == host.as_bytes())
        && hosts.next().is_none();
    if !routed {
        if let Ok(v) = HeaderValue::from_str(&authority(host)) {
            headers.insert(header::HOST, v);
        }
    }
    if websocket {
        // only it, whatever else the client's list named
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let limit = usize::try_from(site.max_body).unwrap_or(usize::MAX);
    // no clock around a body already ended (most requests): one layer less on every read
    // of it (callgrind: 89 instructions per request)
    let body = if hyper::body::Body::is_end_stream(&body) {
        limited(body, limit)
    } else {
        limited(
            StalledBody::<_, BodyTimedOut>::new(body, body_read_timeout),
            limit,
        )
    };
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;
    (out, client_upgrade)
}

/// The forwarding headers pic2 sets for `origin`: X-Forwarded-Proto, X-Forwarded-For,
/// Forwarded (RFC 7239) and X-Forwarded-Host. Each names the client pic2 resolved (`unknown`
/// when a trusted proxy named it with no address), never a trusted proxy's chain: pic2 is the
/// trust boundary, and a runtime's Apache believes every private hop (its
/// `RemoteIPInternalProxy`), so behind a public CDN it took the CDN for every visitor, and a
/// client with a private address could put a forged hop before it.
///
/// pic2's client writes them straight into the request head: as header map entries they
/// cost four insertions and four allocations a request, and formatting the address twice
/// with `format!` alone was 7 % of the user-space instructions of an HTTP/1 request
/// (callgrind).
struct Forwarding<'a> {
    origin: &'a Origin,
    host: &'a str,
}

/// The headers [`Forwarding`] writes, in that order.
const FORWARDING_SET: [(&str, ForwardingHeader); 4] = [
    ("x-forwarded-proto", ForwardingHeader::Proto),
    ("x-forwarded-for", ForwardingHeader::For),
    ("forwarded", ForwardingHeader::Forwarded),
    ("x-forwarded-host", ForwardingHeader::Host),
];

#[derive(Clone, Copy)]
enum ForwardingHeader {
    Proto,
    For,
    Forwarded,
    Host,
}

impl Forwarding<'_> {
    /// Appends the headers as lines of a request head. A value that could not go in a head
    /// (a line break: none of pic2's own values has one) is left out with its name.
    fn write(&self, head: &mut Vec<u8>) {
        for (name, which) in FORWARDING_SET {
            let line_start = head.len();
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            let value_start = head.len();
            self.value(which, head);
            let value = head.get(value_start..).unwrap_or_default();
            if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                head.truncate(line_start);
                continue;
            }
            head.extend_from_slice(b"\r\n");
        }
    }

    /// `req` with the headers in its map, for hyper's client (which carries upgrades). Takes
    /// and gives back the request: a local of `forward` borrowed even once would be kept in
    /// every request's future (264 bytes more).
    fn inserted_into(&self, mut req: Request<Body>) -> Request<Body> {
        self.insert(req.headers_mut());
        req
    }

    fn insert(&self, headers: &mut HeaderMap) {
        for (name, which) in FORWARDING_SET {
            let mut value = Vec::with_capacity(64);
            self.value(which, &mut value);
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }

    /// Appends one header's value to `out`.
    fn value(&self, which: ForwardingHeader, out: &mut Vec<u8>) {
        let origin = self.origin;
        match which {
            ForwardingHeader::Proto => out.extend_from_slice(scheme(origin).as_bytes()),
            ForwardingHeader::For if !origin.known => out.extend_from_slice(b"unknown"),
            ForwardingHeader::For => push_ip(out, origin.ip),
            ForwardingHeader::Forwarded => {
                out.extend_from_slice(b"for=");
                match origin.ip {
                    _ if !origin.known => out.extend_from_slice(b"unknown"),
                    IpAddr::V4(_) => push_ip(out, origin.ip),
                    IpAddr::V6(_) => {
                        out.extend_from_slice(b"\"[");
                        push_ip(out, origin.ip);
                        out.extend_from_slice(b"]\"");
                    }
                }
                out.extend_from_slice(b";proto=");
                out.extend_from_slice(scheme(origin).as_bytes());
                out.extend_from_slice(b";host=");
                match ipv6_literal(self.host) {
                    // brackets and colons are no token: quoted (RFC 7239)
                    true => {
                        out.extend_from_slice(format!("\"{}\"", authority(self.host)).as_bytes())
                    }
                    false => out.extend_from_slice(self.host.as_bytes()),
                }
            }
            ForwardingHeader::Host => out.extend_from_slice(authority(self.host).as_bytes()),
        }
    }
}

/// A routed name that is an IPv6 address (a route may be named by one): the table keeps it
/// without its brackets.
fn ipv6_literal(host: &str) -> bool {
    host.contains(':')
}

/// `host` as a Host field names it: an IPv6 address in brackets.
fn authority(host: &str) -> Cow<'_, str> {
    match ipv6_literal(host) {
        true => Cow::Owned(format!("[{host}]")),
        false => Cow::Borrowed(host),
    }
}

/// Appends `ip` as text: an IPv4 address by hand (the usual case, twice a request), an IPv6
/// one through `Display` (its shortest form has rules worth not rewriting).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// The scheme the client used (to pic2, or to the trusted proxy in front).
fn scheme(origin: &Origin) -> &'static str {
    if origin.https {
        "https"
    } else {
        "http"
    }
}

/// Why a backend gave no response.
#[derive(Clone, Copy, Debug)]
enum NoAnswer {
    Timeout,
    BodyTooLarge,
    /// The client stopped sending its body: its fault, not the backend's.
    BodyTooSlow,
    /// The client's body broke its own framing (a bad chunk) or ended early: its fault too.
    BadBody,
    Unreachable,
}

impl NoAnswer {
    /// The page that says so: 504, 413, 408, 400, 502.
    fn page(self) -> Response<Body> {
        match self {
            NoAnswer::Timeout => page(StatusCode::GATEWAY_TIMEOUT, pages::gateway_timeout()),
            NoAnswer::BodyTooSlow => page(StatusCode::REQUEST_TIMEOUT, pages::request_timeout()),
            NoAnswer::BodyTooLarge => page(StatusCode::PAYLOAD_TOO_LARGE, pages::too_large()),
            NoAnswer::BadBody => {
                let mut r = page(StatusCode::BAD_REQUEST, pages::bad_request());
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            NoAnswer::Unreachable => page(StatusCode::BAD_GATEWAY, pages::bad_gateway()),
        }
    }
}

/// The backend's response, or why there is none.
fn answered<T>(backend: &str, sent: Result<T, crate::backend::Error>) -> Result<T, NoAnswer> {
    match sent {
        Err(crate::backend::Error::Timeout { .. }) => Err(NoAnswer::Timeout),
        Err(e) if caused_by::<http_body_util::LengthLimitError>(&e) => Err(NoAnswer::BodyTooLarge),
        Err(e) if caused_by::<BodyTimedOut>(&e) => Err(NoAnswer::BodyTooSlow),
        Err(crate::backend::Error::RequestBody { .. }) => Err(NoAnswer::BadBody),
        Err(e) => {
            tracing::debug!(backend, error = %e, "backend request failed");
            Err(NoAnswer::Unreachable)
        }
        Ok(r) => Ok(r),
    }
}

/// The backend's answer to an upgrade it did not accept: it goes back as it came, each wait
/// for its body's next bytes `waiting` at most.
fn not_switched(resp: Response<Incoming>, waiting: Duration) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    strip_hop(&mut parts.headers);
    let body = StalledBody::<_, AnswerStalled>::new(body, waiting);
    Response::from_parts(parts, body.boxed())
}

/// An upgrade the backend accepted (101): both streams are joined by a task of their own
/// that outlives the request (and any reload), holds the connection's `slots`, and is
/// silent for `idle` at most.
fn tunnel(
    shared: &Arc<Shared>,
    client_up: hyper::upgrade::OnUpgrade,
    mut resp: Response<Incoming>,
    slots: Slots,
    idle: Duration,
) -> Response<Body> {
    let backend_up = hyper::upgrade::on(&mut resp);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let _slots = slots;
        if let (Ok(a), Ok(b)) = (client_up.await, backend_up.await) {
            shared.global.websockets_open.fetch_add(1, Relaxed);
            crate::tunnel::join(TokioIo::new(a), TokioIo::new(b), idle).await;
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

    /// Each request's future is boxed (HTTP/1 and HTTP/2): its size is what each request
    /// allocates and copies once into the box. Before the boxes it was moved whole when
    /// hyper spawned an HTTP/2 stream and when it stored an HTTP/1 one. It was 5.7 KB (the
    /// backend connection held inline, the request's locals kept across awaits) when memmove
    /// took 9.5 % of the CPU under h2load; 2.9 KB and 6 % since.
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

    fn heads(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_websockets_upgrade_is_the_only_one_asked_of_a_backend() {
        let ws = |pairs| wants_websocket(&Method::GET, &heads(pairs));
        for pairs in [
            &[("connection", "Upgrade"), ("upgrade", "websocket")][..],
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket"),
            ],
            &[("connection", "upgrade"), ("upgrade", " websocket ")],
            &[("connection", "upgrade"), ("upgrade", "foo, websocket")],
        ] {
            assert!(ws(pairs), "{pairs:?}");
        }
        for pairs in [
            &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            &[("upgrade", "websocket")],
            &[("connection", "close"), ("upgrade", "websocket")],
        ] {
            assert!(!ws(pairs), "{pairs:?}");
        }
        let h = heads(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(!wants_websocket(&Method::POST, &h), "a POST");
    }

    #[test]
    fn a_host_field_is_a_name_or_an_address_and_a_port() {
        for good in [
            "a.test",
            "A.TEST.:8080",
            "192.0.2.1:80",
            "[2001:db8::1]",
            "[::1]:443",
            "xn--caf-dma.test",
            "",
        ] {
            assert!(is_host_field(good.as_bytes()), "{good:?} refused");
        }
        for bad in [
            "a.test:abc",
            "[a.test]",
            "a.test:80:80",
            "[::1",
            "[::1]x",
            "[]",
            "a test",
            "a.test/x",
            "user@a.test",
        ] {
            assert!(!is_host_field(bad.as_bytes()), "{bad:?} taken");
        }
    }

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

    fn origin(ip: &str, https: bool) -> Origin {
        Origin {
            peer: Client::new("192.0.2.9:4000".parse().unwrap(), https),
            ip: ip.parse().unwrap(),
            known: true,
            https,
        }
    }

    /// The lines [`Forwarding::write`] adds to a head, and the map [`Forwarding::insert`]
    /// fills: the same headers, the same values.
    fn forwarded(origin: &Origin, host: &str) -> String {
        let f = Forwarding { origin, host };
        let mut head = Vec::new();
        f.write(&mut head);
        let text = String::from_utf8(head).unwrap();
        let mut map = HeaderMap::new();
        f.insert(&mut map);
        let from_map: String = map
            .iter()
            .map(|(n, v)| format!("{n}: {}\r\n", v.to_str().unwrap()))
            .collect();
        assert_eq!(text, from_map);
        text
    }

    #[test]
    fn forwarding_headers_name_the_client_for_ipv4_ipv6_and_an_unknown_one() {
        assert_eq!(
            forwarded(&origin("203.0.113.7", false), "a.test"),
            "x-forwarded-proto: http\r\nx-forwarded-for: 203.0.113.7\r\n\
             forwarded: for=203.0.113.7;proto=http;host=a.test\r\nx-forwarded-host: a.test\r\n"
        );
        assert_eq!(
            forwarded(&origin("2001:db8::1", true), "a.test"),
            "x-forwarded-proto: https\r\nx-forwarded-for: 2001:db8::1\r\n\
             forwarded: for=\"[2001:db8::1]\";proto=https;host=a.test\r\nx-forwarded-host: a.test\r\n"
        );
        // a route named by an IPv6 address: in brackets, and quoted in Forwarded
        assert_eq!(
            forwarded(&origin("203.0.113.7", false), "2001:db8::5"),
            "x-forwarded-proto: http\r\nx-forwarded-for: 203.0.113.7\r\n\
             forwarded: for=203.0.113.7;proto=http;host=\"[2001:db8::5]\"\r\nx-forwarded-host: [2001:db8::5]\r\n"
        );
        let unknown = Origin {
            known: false,
            ..origin("0.0.0.0", true)
        };
        assert_eq!(
            forwarded(&unknown, "a.test"),
            "x-forwarded-proto: https\r\nx-forwarded-for: unknown\r\n\
             forwarded: for=unknown;proto=https;host=a.test\r\nx-forwarded-host: a.test\r\n"
        );
    }

    #[test]
    fn a_forwarding_value_that_would_break_the_head_is_left_out() {
        let text = forwarded(&origin("203.0.113.7", false), "a.test\r\nx-evil: 1");
        assert_eq!(
            text,
            "x-forwarded-proto: http\r\nx-forwarded-for: 203.0.113.7\r\n"
        );
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "203.0.113.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 255 - o, o / 7, o % 10]);
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }
}
