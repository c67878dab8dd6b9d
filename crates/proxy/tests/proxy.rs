//! End-to-end tests of `pic2 proxy` on loopback: a real backend, real sockets, real TLS,
//! and Pebble (dev/pebble.sh) for ACME.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pic2_proxy::{Options, Proxy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend on port 0: answers with the request it saw (method, path, selected headers,
/// body length), echoes bytes after a WebSocket-style upgrade, counts requests. `/slow`
/// answers after 3 s; `/big` and `/huge` add 1 and 64 MB; `/stall` sends a part of its body
/// and then nothing; `/drip` answers at once, then sends its body in four parts 0.8 s apart.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn backend_on(listener: TcpListener) -> Backend {
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        // connections live in this set: aborting the backend drops them all
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let h = Arc::clone(&h);
            conns.spawn(async move {
                let svc = service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async move {
                        // `/stall` and `/refuse` refuse an upgrade: they answer as to any request
                        let refuses = ["/stall", "/refuse", "/fake101"].contains(&req.uri().path());
                        if req.headers().contains_key("upgrade") && !refuses {
                            let up = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(up.await.unwrap());
                                let mut buf = [0u8; 1024];
                                loop {
                                    let n = io.read(&mut buf).await.unwrap_or(0);
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            return Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(101)
                                    .header("connection", "upgrade")
                                    .header("upgrade", "websocket")
                                    .body(full(Bytes::new()))
                                    .unwrap(),
                            );
                        }
                        let mut text = format!("{} {}\n", req.method(), req.uri());
                        for n in [
                            "host",
                            "x-forwarded-for",
                            "x-forwarded-proto",
                            "x-forwarded-host",
                            "forwarded",
                            "x-real-ip",
                            "x-forwarded-ssl",
                            "front-end-https",
                            "true-client-ip",
                            "x-original-url",
                            "client-ip",
                            "x-forwarded",
                            "x-originating-ip",
                            "x-host",
                            "expect",
                        ] {
                            for v in req.headers().get_all(n) {
                                text.push_str(&format!("{n}: {}\n", v.to_str().unwrap()));
                            }
                        }
                        let body = req.into_body().collect().await?.to_bytes();
                        text.push_str(&format!("body: {}\n", body.len()));
                        if text.contains("/big") {
                            text.push_str(&"x".repeat(BIG));
                        }
                        if text.contains("/huge") {
                            text.push_str(&"x".repeat(HUGE));
                        }
                        if text.contains("/slow") {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        if text.contains("/drip") {
                            return Ok(Response::new(drip()));
                        }
                        if text.contains("/stall") {
                            return Ok(Response::new(stall()));
                        }
                        if text.contains("/fake101") {
                            // with a length: a chunked body's writes start with a chunk size
                            let mut r = Response::new(fake_101());
                            r.headers_mut()
                                .insert("content-length", FAKE_101.len().into());
                            return Ok(r);
                        }
                        Ok(Response::new(full(Bytes::from(text))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Backend { addr, hits, task }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn full(bytes: Bytes) -> TestBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A body of four parts, "drip\n" each, sent 0.8 s apart.
fn drip() -> TestBody {
    let (mut tx, body) = http_body_util::channel::Channel::new(1);
    tokio::spawn(async move {
        for _ in 0..4 {
            if tx.send_data(Bytes::from_static(b"drip\n")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
    });
    body.boxed()
}

/// A body that looks like the head of a `101` answer, sent apart from its own head (0.1 s
/// later): a site's answer to an upgrade it refused.
fn fake_101() -> TestBody {
    let (mut tx, body) = http_body_util::channel::Channel::new(1);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx.send_data(Bytes::from_static(FAKE_101.as_bytes())).await;
    });
    body.boxed()
}

const FAKE_101: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

/// A body that sends "part\n", then nothing for 30 s.
fn stall() -> TestBody {
    let (mut tx, body) = http_body_util::channel::Channel::new(1);
    tokio::spawn(async move {
        let _ = tx.send_data(Bytes::from_static(b"part\n")).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    body.boxed()
}

/// The size of the backend's `/big` answer: many times the proxy's backend read buffer.
const BIG: usize = 1 << 20;
/// The size of the backend's `/huge` answer: more than a client's socket buffers and the
/// proxy's can hold (net.ipv4.tcp_wmem's largest: 4 MB here, 16 MB on tuned hosts).
const HUGE: usize = 64 << 20;

async fn backend() -> Backend {
    backend_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
}

struct Env {
    dir: tempfile::TempDir,
    routes: PathBuf,
}

fn site(
    name: &str,
    hosts: &[&str],
    backend: SocketAddr,
    tls: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({"name": name, "hosts": hosts, "backend": backend.to_string(), "tls": tls})
}

fn write_routes(env: &Env, settings: serde_json::Value, sites: Vec<serde_json::Value>) {
    let mut settings = settings;
    settings["state_dir"] = env.dir.path().join("state").to_str().unwrap().into();
    let v = serde_json::json!({"version": 1, "settings": settings, "sites": sites});
    let tmp = env.routes.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    std::fs::rename(&tmp, &env.routes).unwrap();
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    Env { dir, routes }
}

fn options(env: &Env) -> Options {
    let mut o = Options::new(&env.routes);
    o.listen_http = Some("127.0.0.1:0".into());
    o.listen_https = Some("127.0.0.1:0".into());
    o.listen_metrics = Some("127.0.0.1:0".into());
    o.poll_interval = Duration::from_millis(100);
    o.timeouts.header_read = Duration::from_secs(2);
    o.timeouts.backend = Duration::from_secs(2);
    o.shutdown_grace = Duration::from_secs(2);
    o
}

/// Sends raw bytes, returns everything the server sent until it closed (or 5 s).
async fn raw(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(addr: SocketAddr, host: &str, path: &str, extra: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Routes with one site, a.test, over plain HTTP to `backend`.
fn one_site(env: &Env, backend: SocketAddr) {
    let none = serde_json::json!({"mode":"none"});
    let sites = vec![site("a.test", &["a.test"], backend, none)];
    write_routes(env, serde_json::json!({}), sites);
}

/// GETs `path` on `host` until the answer has status `want` (every 20 ms, 3 s at most); the
/// last answer either way.
async fn get_until(addr: SocketAddr, host: &str, extra: &str, want: u16) -> String {
    let mut r = String::new();
    for _ in 0..150 {
        r = get(addr, host, "/", extra).await;
        if status(&r) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r
}

async fn basic() -> (Env, Backend, Proxy) {
    let b = backend().await;
    let e = env();
    write_routes(
        &e,
        serde_json::json!({"admin_addresses": ["127.0.0.2"]}),
        vec![
            site(
                "a.test",
                &["a.test", "www.a.test", "alias.test"],
                b.addr,
                serde_json::json!({"mode":"none"}),
            ),
            {
                let mut s = site(
                    "b.test",
                    &["b.test", "www.b.test"],
                    b.addr,
                    serde_json::json!({"mode":"none"}),
                );
                s["redirect"] = "apex".into();
                s["max_body_mb"] = 1.into();
                s
            },
        ],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    (e, b, p)
}

#[tokio::test]
async fn routing_aliases_404_and_forwarded_headers() {
    let (_e, b, p) = basic().await;
    let http = p.http_addr.unwrap();
    for host in ["a.test", "www.a.test", "alias.test", "A.TEST.:80"] {
        let r = get(http, host, "/x?y=1", "").await;
        assert_eq!(status(&r), 200, "{host}: {r}");
        assert!(r.contains("GET /x?y=1"), "{r}");
    }
    // the backend gets the routed name, whatever spelling the client used, and only it
    let r = get(http, "A.TEST.:80", "/", "").await;
    assert!(r.contains("\nhost: a.test\n"), "{r}");
    assert!(r.contains("x-forwarded-host: a.test\n"), "{r}");
    assert!(!r.contains("A.TEST"), "{r}");
    // the client's own forwarding headers are replaced, never passed on
    let r = get(http, "a.test", "/", "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nTrue-Client-IP: 6.6.6.6\r\nX-Forwarded-Ssl: on\r\nFront-End-Https: on\r\nX-Original-URL: /admin\r\nExpect: 100-continue\r\nClient-IP: 6.6.6.6\r\nX-Forwarded: for=6.6.6.6\r\nX-Originating-IP: 6.6.6.6\r\nX-Host: evil.test\r\n").await;
    assert!(!r.contains("6.6.6.6"), "{r}");
    for name in [
        "x-forwarded-ssl",
        "front-end-https",
        "x-original-url",
        "expect",
        "x-host",
    ] {
        assert!(!r.contains(name), "{name} reached the backend: {r}");
    }
    assert!(r.contains("x-forwarded-for: 127.0.0.1\n"), "{r}");
    assert!(r.contains("x-forwarded-proto: http\n"), "{r}");
    assert!(r.contains("x-forwarded-host: a.test\n"), "{r}");
    assert!(
        r.contains("forwarded: for=127.0.0.1;proto=http;host=a.test\n"),
        "{r}"
    );
    let r = get(http, "nobody.test", "/", "").await;
    assert_eq!(status(&r), 404);
    assert!(
        r.contains("Site inconnu") && r.contains("Unknown site"),
        "{r}"
    );
    // an HTTP/1.1 request without Host, with two, or with one that is no host[:port] gets
    // 400 (RFC 9112 §3.2); HTTP/1.0 may go without
    for head in [
        "GET / HTTP/1.1\r\n",
        "GET / HTTP/1.1\r\nHost: a.test\r\nHost: internal.test\r\n",
        "GET / HTTP/1.1\r\nHost: a.test:abc\r\n",
        "GET / HTTP/1.1\r\nHost: [a.test]\r\n",
    ] {
        let r = raw(http, format!("{head}Connection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status(&r), 400, "{head:?}: {r}");
    }
    let r = raw(http, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&r), 404, "{r}");
    drop(b);
    p.shutdown().await;
}

/// A site named by an IPv6 address gets it in brackets in Host and X-Forwarded-Host, and
/// quoted in Forwarded: the routing table keeps it bare, and sent so it was no valid Host.
#[tokio::test]
async fn a_site_named_by_an_ipv6_address_gets_it_in_brackets() {
    let b = backend().await;
    let e = env();
    let none = serde_json::json!({"mode":"none"});
    write_routes(
        &e,
        serde_json::json!({}),
        vec![site("2001:db8::5", &["[2001:db8::5]"], b.addr, none)],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let r = get(p.http_addr.unwrap(), "[2001:db8::5]:80", "/", "").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("\nhost: [2001:db8::5]\n"), "{r}");
    assert!(r.contains("x-forwarded-host: [2001:db8::5]\n"), "{r}");
    assert!(r.contains(";host=\"[2001:db8::5]\"\n"), "{r}");
    p.shutdown().await;
}

/// On a dual-stack listener (`[::]:80`, the default), an IPv4 client is told to the backend
/// as the IPv4 address it is, not as `::ffff:127.0.0.1` (which fail2ban's IPv4 bans and a
/// backend's IPv4 allow-list would never match); an IPv6 client stays IPv6.
#[tokio::test]
async fn an_ipv4_client_of_a_dual_stack_listener_is_told_as_ipv4() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.listen_http = Some("[::]:0".into());
    let p = Proxy::start(o)
        .await
        .expect("a dual-stack listener ([::]:0) on this host");
    let port = p.http_addr.unwrap().port();
    let v4 = get(SocketAddr::from(([127, 0, 0, 1], port)), "a.test", "/", "").await;
    assert!(v4.contains("x-forwarded-for: 127.0.0.1\n"), "{v4}");
    assert!(v4.contains("forwarded: for=127.0.0.1;"), "{v4}");
    let v6 = get(
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        "a.test",
        "/",
        "",
    )
    .await;
    assert!(v6.contains("x-forwarded-for: ::1\n"), "{v6}");
    p.shutdown().await;
}

/// A backend answer far larger than the proxy's read buffer for a backend connection comes
/// through whole and with its length, three times in a row (the read buffer's cap must not
/// cut or stall a body).
#[tokio::test]
async fn a_large_answer_comes_through_whole() {
    let (_e, b, p) = basic().await;
    let http = p.http_addr.unwrap();
    for _ in 0..3 {
        let r = get(http, "a.test", "/big", "").await;
        assert_eq!(status(&r), 200, "{}", &r[..r.len().min(300)]);
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            body.ends_with(&"x".repeat(BIG)),
            "body of {} bytes",
            body.len()
        );
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .expect(head);
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
    }
    drop(b);
    p.shutdown().await;
}

#[tokio::test]
async fn www_apex_and_https_redirects() {
    let (_e, _b, p) = basic().await;
    let r = get(p.http_addr.unwrap(), "www.b.test", "/p?q", "").await;
    assert_eq!(status(&r), 308, "{r}");
    let port = p.http_addr.unwrap().port();
    assert!(
        r.contains(&format!("location: http://b.test:{port}/p?q")),
        "{r}"
    );
    p.shutdown().await;

    // a TLS site on plain HTTP goes to https
    let b = backend().await;
    let e = env();
    let (cert, key) = self_signed(&e, "t.test");
    write_routes(
        &e,
        serde_json::json!({}),
        vec![site(
            "t.test",
            &["t.test", "www.t.test"],
            b.addr,
            tls_files(&cert, &key),
        )],
    );
    let mut o = options(&e);
    o.public_https_port = Some(443);
    let p = Proxy::start(o).await.unwrap();
    let r = get(p.http_addr.unwrap(), "www.t.test", "/a", "").await;
    assert_eq!(status(&r), 308, "{r}");
    assert!(r.contains("location: https://www.t.test/a"), "{r}");
    p.shutdown().await;

    // a site named by an IPv6 address: in brackets in the Location, as in any URL
    let e = env();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["::1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (e.dir.path().join("v6.crt"), e.dir.path().join("v6.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let tls = tls_files(c.to_str().unwrap(), k.to_str().unwrap());
    write_routes(
        &e,
        serde_json::json!({}),
        vec![site("v6", &["::1"], b.addr, tls)],
    );
    let mut o = options(&e);
    o.public_https_port = Some(8443);
    let p = Proxy::start(o).await.unwrap();
    let r = get(p.http_addr.unwrap(), "[::1]", "/a", "").await;
    assert_eq!(status(&r), 308, "{r}");
    assert!(r.contains("location: https://[::1]:8443/a\r\n"), "{r}");
    p.shutdown().await;
}

fn self_signed(e: &Env, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec![name.to_owned(), format!("www.{name}")]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let c = e.dir.path().join(format!("{name}.crt"));
    let k = e.dir.path().join(format!("{name}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.to_str().unwrap().into(), k.to_str().unwrap().into())
}

/// A site's TLS from certificate files.
fn tls_files(cert: &str, key: &str) -> serde_json::Value {
    serde_json::json!({"mode": "files", "cert": cert, "key": key})
}

/// Routes with one site, a.test, over TLS with a self-signed certificate: its (cert, key).
fn one_tls_site(e: &Env, backend: SocketAddr) -> (String, String) {
    let (c, k) = self_signed(e, "a.test");
    write_routes(
        e,
        serde_json::json!({}),
        vec![site("a.test", &["a.test"], backend, tls_files(&c, &k))],
    );
    (c, k)
}

/// A proxy serving a.test over TLS only (a self-signed certificate: its PEM files' paths) in
/// front of the test backend, with the test options as `tune` leaves them.
async fn tls_proxy(tune: impl FnOnce(&mut Options)) -> (Env, Backend, Proxy, (String, String)) {
    let b = backend().await;
    let e = env();
    let files = one_tls_site(&e, b.addr);
    let mut o = options(&e);
    tune(&mut o);
    let p = Proxy::start(o).await.unwrap();
    (e, b, p, files)
}

/// A TLS connection with SNI `name` offering `alpn`, trusting `roots` (PEM files).
async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    roots: &[&Path],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        for c in rustls_pki_types::CertificateDer::pem_file_iter(r).unwrap() {
            store.add(c.unwrap()).unwrap();
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.unwrap();
    conn.connect(
        rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap(),
        tcp,
    )
    .await
    .unwrap()
}

/// An HTTP/2 client on `tls`, its connection driven by a task of its own (returned: it ends
/// with the connection).
async fn h2_over<B>(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

/// Connects over TLS with SNI `name`, trusting `roots` (PEM files); returns the peer
/// certificate (DER) and the negotiated ALPN, and the HTTP response to GET /.
/// A GET of `/` over TLS: the certificate served, the protocol agreed, the status, the body
/// and the Strict-Transport-Security header.
async fn tls_get(
    addr: SocketAddr,
    name: &str,
    roots: &[&Path],
    alpn: &[&[u8]],
) -> (Vec<u8>, Option<Vec<u8>>, u16, String, Option<String>) {
    tls_get_host(addr, name, name, roots, alpn).await
}

/// [`tls_get`] with SNI `sni` and Host (or HTTP/2 authority) `name`.
async fn tls_get_host(
    addr: SocketAddr,
    sni: &str,
    name: &str,
    roots: &[&Path],
    alpn: &[&[u8]],
) -> (Vec<u8>, Option<Vec<u8>>, u16, String, Option<String>) {
    let tls = tls_connect(addr, sni, roots, alpn).await;
    let (_, c) = tls.get_ref();
    let cert = c.peer_certificates().unwrap()[0].to_vec();
    let proto = c.alpn_protocol().map(<[u8]>::to_vec);
    let req = Request::builder()
        .uri(format!("https://{name}/"))
        .header("host", name)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = if proto.as_deref() == Some(b"h2") {
        let (mut s, _) = h2_over(tls).await;
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(c);
        let mut req = req;
        *req.uri_mut() = "/".parse().unwrap();
        s.send_request(req).await.unwrap()
    };
    let st = r.status().as_u16();
    let hsts = r
        .headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    (cert, proto, st, body, hsts)
}

/// A client that negotiates h2 and then speaks HTTP/1 is not served HTTP/1 (which would
/// pass beside the framing guard): only HTTP/2 is spoken on such a connection.
#[tokio::test]
async fn http1_bytes_after_alpn_h2_are_not_served() {
    let (_e, b, p, (c, _)) = tls_proxy(|_| {}).await;
    let mut tls = tls_connect(p.https_addr.unwrap(), "a.test", &[Path::new(&c)], &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let smuggled = b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    tls.write_all(smuggled).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("HTTP/1."),
        "served HTTP/1 after ALPN h2: {text}"
    );
    assert_eq!(b.hits.load(Ordering::SeqCst), 0, "the backend was reached");
    p.shutdown().await;
}

/// A key that is not the certificate's (a renewal caught half-written, a wrong path) is
/// refused at reload, and the site keeps the certificate it served: never a pair that fails
/// every handshake.
#[tokio::test]
async fn a_mismatched_key_keeps_the_certificate_served() {
    let (_e, _b, p, (c, k)) = tls_proxy(|_| {}).await;
    let https = p.https_addr.unwrap();
    let (before, _, st, _, _) = tls_get(https, "a.test", &[Path::new(&c)], &[b"http/1.1"]).await;
    assert_eq!(st, 200);
    std::fs::write(&k, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    assert!(p.reload().is_ok(), "the routes themselves are fine");
    let (after, _, st, _, _) = tls_get(https, "a.test", &[Path::new(&c)], &[b"http/1.1"]).await;
    assert_eq!((st, after), (200, before));
    p.shutdown().await;
}

/// An HTTP/2 connection with no new request for the idle time is told to go away (pings
/// would keep it open for ever, holding a connection slot); one in use is not.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_with_goaway() {
    let (_e, _b, p, (c, _)) = tls_proxy(|o| o.timeouts.idle = Duration::from_secs(1)).await;
    let tls = tls_connect(p.https_addr.unwrap(), "a.test", &[Path::new(&c)], &[b"h2"]).await;
    let (mut send, conn) = h2_over(tls).await;
    for _ in 0..6 {
        // a request every 0.3 s: in use, kept
        let req = Request::builder()
            .uri("https://a.test/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send.send_request(req).await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!conn.is_finished(), "closed while in use");
    let closed = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection stayed open");

    // the same, frame by frame: the close is a GOAWAY without error (NO_ERROR, 0) naming
    // the last stream served, not a TCP close a client would take for a failure
    let mut tls = tls_connect(p.https_addr.unwrap(), "a.test", &[Path::new(&c)], &[b"h2"]).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&h2_frame(0x4, 0, &[])).await.unwrap();
    // GET https://a.test/ on stream 1, ended (HPACK, no Huffman)
    tls.write_all(&h2_frame(0x1, 0x5, b"\x82\x87\x84\x41\x06a.test"))
        .await
        .unwrap();
    let mut frames = Vec::new(); // (type, payload) of each frame, in order
    let mut got = Vec::new();
    let mut at = 0;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            while got.len() >= at + 9 {
                let len = usize::from(got[at]) << 16
                    | usize::from(got[at + 1]) << 8
                    | usize::from(got[at + 2]);
                if got.len() < at + 9 + len {
                    break;
                }
                let (kind, flags) = (got[at + 3], got[at + 4]);
                let payload = got[at + 9..at + 9 + len].to_vec();
                // acknowledge the server's SETTINGS and PINGs, as a client does
                if (kind == 0x4 || kind == 0x6) && flags & 1 == 0 {
                    // a SETTINGS acknowledgement is empty, a PING's echoes its payload
                    let echoed = if kind == 0x6 { &payload[..] } else { &[] };
                    let mut ack = h2_frame(kind, 1, echoed);
                    ack[8] = 0; // connection-level frames: stream 0
                    tls.write_all(&ack).await.unwrap();
                }
                frames.push((kind, payload));
                at += 9 + len;
            }
            match tls.read(&mut buf).await {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection stayed open: {frames:?}"
    );
    let answered = frames.iter().position(|(k, _)| *k == 0x1);
    let goaways: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|(k, _)| *k == 0x7)
        .map(|(_, p)| p)
        .collect();
    let last = goaways.last().expect("closed without a GOAWAY");
    assert_eq!(&last[4..8], &[0, 0, 0, 0], "GOAWAY with an error: {last:?}");
    assert_eq!(
        &last[0..4],
        &[0, 0, 0, 1],
        "the last stream served is 1: {last:?}"
    );
    assert!(
        answered < frames.iter().position(|(k, _)| *k == 0x7),
        "the answer came before the GOAWAY: {frames:?}"
    );
    p.shutdown().await;
}

/// A request longer than the idle time (here a body dripping for 3.2 s) keeps its
/// connection: the idle time counts from the answer's last byte, and the next request on the
/// same connection is served, over HTTP/1.1 (idle time `header_read_timeout`, 2 s here) and
/// HTTP/2 (`idle_timeout`, 1 s here).
#[tokio::test]
async fn a_long_answer_keeps_its_connection_past_the_idle_time() {
    let (_e, _b, p, (c, _)) = tls_proxy(|o| o.timeouts.idle = Duration::from_secs(1)).await;

    let https = p.https_addr.unwrap();
    let mut s = tls_connect(https, "a.test", &[Path::new(&c)], &[b"http/1.1"]).await;
    s.write_all(b"GET /drip HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 1024];
    while !first.ends_with(b"0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed during the answer: {}",
            String::from_utf8_lossy(&first)
        );
        first.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&first);
    assert_eq!(first.matches("drip").count(), 4, "{first}");
    s.write_all(b"GET /again HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut second = String::new();
    s.read_to_string(&mut second).await.unwrap();
    assert_eq!(status(&second), 200, "HTTP/1.1: {second}");
    assert!(second.contains("GET /again"), "{second}");

    let tls = tls_connect(https, "a.test", &[Path::new(&c)], &[b"h2"]).await;
    let (mut send, _) = h2_over(tls).await;
    let get = |path: &str| {
        Request::builder()
            .uri(format!("https://a.test{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = send.send_request(get("/drip")).await.unwrap();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"drip\n".repeat(4).as_slice());
    let r = send.send_request(get("/again")).await;
    assert_eq!(
        r.map(|r| r.status()).ok(),
        Some(hyper::StatusCode::OK),
        "HTTP/2"
    );
    p.shutdown().await;
}

/// An HTTP/2 client that reads its socket but keeps a stream's flow-control window shut
/// never makes a write wait: without its own clock the answer, and the backend connection
/// feeding it, would be held for ever (the "slow read" attack over HTTP/2). An answer read
/// steadily, even longer than that time, is not cut.
#[tokio::test]
async fn an_http2_client_holding_its_window_shut_is_cut_off() {
    let (_e, _b, p, (c, _)) = tls_proxy(|o| o.timeouts.send = Duration::from_secs(1)).await;
    let https = p.https_addr.unwrap();
    let get = |path: &str| {
        Request::builder()
            .uri(format!("https://a.test{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let tls = tls_connect(https, "a.test", &[Path::new(&c)], &[b"h2"]).await;
    let (mut send, conn) = h2_over(tls).await;
    let r = send.send_request(get("/drip")).await.unwrap();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body.as_ref(),
        b"drip\n".repeat(4).as_slice(),
        "3.2 s, read steadily"
    );

    // in the middle of a long answer (a 16 KB window, never opened again), a window of 0
    // (not even a short answer's only frame goes out), and a window of 1 byte (hyper hands
    // the short answer's only chunk to h2 whole, and its body ends: the rest waits in h2)
    for (window, path) in [(16 * 1024, "/huge"), (0, "/short"), (1, "/short")] {
        let tls = tls_connect(https, "a.test", &[Path::new(&c)], &[b"h2"]).await;
        let (mut send, held_conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(window)
            .handshake(TokioIo::new(tls))
            .await
            .unwrap();
        let held_conn = tokio::spawn(held_conn);
        // the answer's body is never read
        let held = send.send_request(get(path)).await.unwrap();
        // told to go away after one to two send timeouts, closed one later
        let ended = tokio::time::timeout(Duration::from_secs(8), held_conn).await;
        assert!(
            ended.is_ok(),
            "{path}: a stream with its window shut held its connection"
        );
        drop(held);
    }
    assert!(
        !conn.is_finished(),
        "the steady reader's connection was cut too"
    );
    let starved = p.shared.global.http2_windows_starved.load(Ordering::SeqCst);
    assert_eq!(starved, 3);
    p.shutdown().await;
}

/// Every slot taken by connections that hold them cheaply (keep-alive waits, heads never
/// finished, an HTTP/2 connection without a stream): a new client gets in at a next try, as
/// those make room, while a request in flight keeps its connection.
#[tokio::test]
async fn a_full_proxy_makes_room_by_closing_idle_connections() {
    let b = backend().await;
    let e = env();
    let (c, k) = self_signed(&e, "t.test");
    let tls = tls_files(&c, &k);
    let sites = vec![
        site(
            "a.test",
            &["a.test"],
            b.addr,
            serde_json::json!({"mode":"none"}),
        ),
        site("t.test", &["t.test"], b.addr, tls),
    ];
    write_routes(&e, serde_json::json!({}), sites);
    let mut o = options(&e);
    o.max_connections = 6;
    o.timeouts.header_read = Duration::from_secs(30); // no idle timer helps here
    o.timeouts.backend = Duration::from_secs(5);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let mut busy = TcpStream::connect(http).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(http).await.unwrap();
        ask_once(&mut s).await;
        idle.push(s);
    }
    for _ in 0..2 {
        let mut s = TcpStream::connect(http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.t").await.unwrap();
        idle.push(s);
    }
    let tls = tls_connect(p.https_addr.unwrap(), "t.test", &[Path::new(&c)], &[b"h2"]).await;
    let (mut h2, h2_conn) = h2_over::<Full<Bytes>>(tls).await;
    let req = Request::get("https://t.test/").body(Full::new(Bytes::new()));
    let answer = h2.send_request(req.unwrap()).await.unwrap();
    assert_eq!(answer.status(), hyper::StatusCode::OK);
    let open = &p.shared.global.connections_open;
    for _ in 0..100 {
        if open.load(Ordering::SeqCst) == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(open.load(Ordering::SeqCst), 6);
    // a connection quiet for less than a second is spared (its answer may be on its way)
    assert_eq!(status(&get(http, "a.test", "/", "").await), 0, "not full");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut answer = String::new();
    for _ in 0..20 {
        answer = get(http, "a.test", "/", "").await;
        if status(&answer) == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&answer), 200, "no room made: {answer}");
    let mut rest = String::new();
    busy.read_to_string(&mut rest).await.unwrap();
    assert_eq!(status(&rest), 200, "the request in flight was cut: {rest}");
    let closed = tokio::time::timeout(Duration::from_secs(2), h2_conn).await;
    assert!(
        closed.is_ok(),
        "the HTTP/2 connection without a stream kept its slot"
    );
    for mut s in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection kept its slot"
        );
    }
    let g = &p.shared.global;
    assert_eq!(g.idle_reclaimed.load(Ordering::SeqCst), 5);
    assert!(g.refused_full.load(Ordering::SeqCst) >= 2);
    p.shutdown().await;
}

/// One raw HTTP/2 frame: length, type, flags, stream (1, or 0 for SETTINGS), payload.
fn h2_frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let stream = u8::from(kind != 0x4);
    let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, stream];
    f.extend_from_slice(payload);
    f
}

/// Sends the HTTP/2 preface, SETTINGS and a GET for a.test on `io`, and returns what comes
/// back until the connection ends (5 s at most).
async fn h2_prior_knowledge<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
) -> Vec<u8> {
    io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    io.write_all(&h2_frame(0x4, 0, &[])).await.unwrap();
    // GET http://a.test/ on stream 1, ended (HPACK, no Huffman)
    let _ = io
        .write_all(&h2_frame(0x1, 0x5, b"\x82\x86\x84\x41\x06a.test"))
        .await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut got)).await;
    got
}

/// An answer the proxy gives before the request's body is all in (413 on a declared length
/// over the site's limit; 503 in maintenance, 502 with the backend down go the same way)
/// reaches an HTTP/2 client whole, page included, before the stream is reset with NO_ERROR
/// (RFC 9113 §8.1): browsers showed a protocol error instead of the page.
#[tokio::test]
async fn http2_an_early_answer_arrives_whole_while_the_upload_goes_on() {
    let (_e, b, p, (c, _)) = tls_proxy(|o| o.default_max_body = 1024 * 1024).await;
    let tls = tls_connect(p.https_addr.unwrap(), "a.test", &[Path::new(&c)], &[b"h2"]).await;
    let (mut send, _conn) =
        h2_over::<http_body_util::channel::Channel<Bytes, std::convert::Infallible>>(tls).await;
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    let req = Request::builder()
        .method("POST")
        .uri("https://a.test/upload")
        .header("content-length", "2000000")
        .body(body)
        .unwrap();
    let upload = tokio::spawn(async move {
        for _ in 0..122 {
            if tx
                .send_data(Bytes::from(vec![0u8; 16 * 1024]))
                .await
                .is_err()
            {
                break;
            }
        }
        tx // kept: the upload is not over
    });
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    assert_eq!(resp.status(), 413);
    let page = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the page within 5 s")
        .expect("the page, whole")
        .to_bytes();
    assert!(
        String::from_utf8_lossy(&page).contains("Upload too large"),
        "{page:?}"
    );
    assert_eq!(b.hits.load(Ordering::SeqCst), 0);
    drop(upload);
    p.shutdown().await;
}

/// HTTP/2 is served over TLS with ALPN h2 only, where its connections are watched (cancel
/// floods, starved answers). The preface on the plain port (h2c with prior knowledge) or
/// after ALPN http/1.1 was served as HTTP/2 too, without those checks: it is now refused
/// as the HTTP/1 it is not, and reaches no backend.
#[tokio::test]
async fn http2_without_alpn_h2_is_refused() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let p = Proxy::start(options(&e)).await.unwrap();
    let plain = TcpStream::connect(p.http_addr.unwrap()).await.unwrap();
    let got = h2_prior_knowledge(plain).await;
    // an HTTP/2 server's first frame is its SETTINGS: type 4 on stream 0
    let h2_settings = |got: &[u8]| got.len() >= 9 && got[3] == 0x4;
    assert!(!h2_settings(&got), "h2c served: {got:?}");
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        0,
        "the backend was reached over h2c"
    );
    p.shutdown().await;

    let (_e, b, p, (c, _)) = tls_proxy(|_| {}).await;
    let tls = tls_connect(
        p.https_addr.unwrap(),
        "a.test",
        &[Path::new(&c)],
        &[b"http/1.1"],
    )
    .await;
    let got = h2_prior_knowledge(tls).await;
    assert!(
        !h2_settings(&got),
        "HTTP/2 served after ALPN http/1.1: {got:?}"
    );
    assert_eq!(b.hits.load(Ordering::SeqCst), 0, "the backend was reached");
    p.shutdown().await;
}

/// HTTP/2 "CONTINUATION flood" (2024, VU#421644): a header block that never ends, in
/// endless CONTINUATION frames, empty or not, must end its connection before it costs
/// memory or CPU without bound. h2 (0.4.4 and later) allows a block `max_header_list_size`
/// over the frame size, plus a quarter, and 5 frames at least: here the connection ends
/// after the client's first 70,000 or so frames, those its socket buffers took at once.
#[tokio::test]
async fn http2_continuation_flood_is_cut_short() {
    let (_e, b, p, (c, _)) = tls_proxy(|_| {}).await;
    let https = p.https_addr.unwrap();
    // :method GET, :scheme https, :path /, then :authority a.test (HPACK, no Huffman)
    let block = b"\x82\x87\x84\x41\x06a.test";
    // the same block, ended: answered (the frames are understood)
    let mut tls = tls_connect(https, "a.test", &[Path::new(&c)], &[b"h2"]).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&h2_frame(0x4, 0, &[])).await.unwrap();
    tls.write_all(&h2_frame(0x1, 0x5, block)).await.unwrap();
    let mut got = Vec::new();
    let answered = loop {
        // frames from the server: 9 bytes of head, then the payload; HEADERS (1) on stream 1
        let mut at = 0;
        let mut found = false;
        while got.len() >= at + 9 {
            let len = usize::from(got[at]) << 16
                | usize::from(got[at + 1]) << 8
                | usize::from(got[at + 2]);
            if got[at + 3] == 0x1 && got[at + 8] == 1 {
                found = true;
            }
            at += 9 + len;
        }
        if found {
            break true;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break false,
        }
    };
    assert!(answered, "a whole header block was not answered: {got:?}");
    for fragment in [&b""[..], &b"\x82"[..]] {
        let mut tls = tls_connect(https, "a.test", &[Path::new(&c)], &[b"h2"]).await;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        tls.write_all(&h2_frame(0x4, 0, &[])).await.unwrap(); // SETTINGS
                                                              // HEADERS with END_STREAM and without END_HEADERS
        tls.write_all(&h2_frame(0x1, 0x1, block)).await.unwrap();
        let continuation = h2_frame(0x9, 0, fragment).repeat(1000);
        let mut sent = 0;
        let flood = async {
            while sent < 1_000_000 && tls.write_all(&continuation).await.is_ok() {
                sent += 1000;
            }
        };
        let cut = tokio::time::timeout(Duration::from_secs(10), flood).await;
        assert!(
            cut.is_ok(),
            "fragment {fragment:?}: {sent} frames taken in 10 s"
        );
        assert!(
            sent < 1_000_000,
            "fragment {fragment:?}: a million frames taken"
        );
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        1,
        "only the whole block was sent on"
    );
    p.shutdown().await;
}

/// HTTP/2 "rapid reset" (CVE-2023-44487): a client that opens streams and cancels them at
/// once, or once each has reached the backend, must not turn one connection into a flood of
/// backend requests. h2 counts the resets of streams hyper has not taken yet (GOAWAY,
/// ENHANCE_YOUR_CALM); the proxy counts those of requests cancelled before their answer.
/// An HTTP/2 client's connection to a.test, through `h2`'s own client (which can reset a
/// stream it opened).
type H2Client = (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
);

async fn h2_client(https: SocketAddr, roots: &str) -> H2Client {
    let tls = tls_connect(https, "a.test", &[Path::new(roots)], &[b"h2"]).await;
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    (send, tokio::spawn(conn))
}

/// Opens streams on `client` in batches of `batch` (GET /slow) and resets them, `most` in
/// all: at once with a batch of 1, else once all of the batch have reached the backend `b`
/// (waited for, not slept on: on a busy machine 20 ms was sometimes not enough, and h2's own
/// count cut the connection, which hid whether the proxy's held). Returns the streams opened
/// and whether the connection ended, waiting `linger` for its end after the last reset.
async fn reset_in_batches(
    client: H2Client,
    batch: usize,
    b: &Backend,
    most: usize,
    linger: Duration,
) -> (usize, bool) {
    let (mut send, mut conn) = client;
    let mut opened = 0;
    let mut ended = false;
    'batches: while opened < most && !ended {
        let mut streams = Vec::new();
        let hits_before = b.hits.load(Ordering::SeqCst);
        for _ in 0..batch {
            let Ok(ready) = send.ready().await else {
                break 'batches;
            };
            send = ready;
            let req = Request::get("https://a.test/slow").body(()).unwrap();
            let Ok((_, stream)) = send.send_request(req, true) else {
                break;
            };
            streams.push(stream);
            opened += 1;
        }
        if batch == 1 {
            // the connection's task sends the stream's HEADERS before its reset (a stream
            // reset before it was sent is never sent at all)
            tokio::time::sleep(Duration::ZERO).await;
        } else {
            let reached = async {
                while b.hits.load(Ordering::SeqCst) < hits_before + streams.len() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            tokio::select! {
                () = reached => {}
                _ = &mut conn => ended = true,
                () = tokio::time::sleep(Duration::from_secs(5)) => {
                    panic!("batch {batch}: streams did not reach the backend")
                }
            }
        }
        for mut stream in streams.drain(..) {
            stream.send_reset(h2::Reason::CANCEL);
        }
    }
    let ended = ended || tokio::time::timeout(linger, conn).await.is_ok();
    (opened, ended)
}

const FIVE_S: Duration = Duration::from_secs(5);

/// Waits (5 s at most) for the proxy to have counted `n` cancel floods, and says how many.
async fn cancel_floods(p: &Proxy, n: u64) -> u64 {
    // counted once the proxy's side of the connection has ended, maybe after the client's
    let floods = &p.shared.global.http2_cancel_floods;
    let deadline = Instant::now() + Duration::from_secs(5);
    while floods.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    floods.load(Ordering::SeqCst)
}

#[tokio::test]
async fn http2_rapid_reset_is_cut_short() {
    let (_e, b, p, (c, _)) = tls_proxy(|_| {}).await;
    let https = p.https_addr.unwrap();
    // batch 1: reset as soon as sent; batch 100: reset once all have reached the backend
    for batch in [1, 100] {
        let (opened, ended) =
            reset_in_batches(h2_client(https, &c).await, batch, &b, 20_000, FIVE_S).await;
        assert!(ended, "batch {batch}: not cut after {opened} resets");
        assert!(
            opened <= 1_000,
            "batch {batch}: {opened} streams opened and reset"
        );
    }
    // the burst a client may cancel is 512 (four pages' worth), then 50 a second
    let hits = b.hits.load(Ordering::SeqCst);
    assert!(hits <= 800, "{hits} requests reached the backend");
    assert_eq!(
        cancel_floods(&p, 1).await,
        1,
        "the batches of 100 were cut by the proxy's count"
    );
    p.shutdown().await;
}

/// The cancel budget is the client's, for all its connections: one per connection let a
/// client with 256 connections make 256 times as many backend requests it then cancelled.
/// Here a first connection cancels 500, then a second is cut long before it has cancelled
/// 512 of its own.
#[tokio::test]
async fn http2_cancels_count_per_client_not_per_connection() {
    let (_e, b, p, (c, _)) = tls_proxy(|_| {}).await;
    let https = p.https_addr.unwrap();
    // the first connection stays open meanwhile: the budget goes with the client's last one
    let first = h2_client(https, &c).await;
    let keep = first.0.clone();
    // no wait at the end: the budget refills meanwhile (50 a second)
    let (opened, ended) = reset_in_batches(first, 100, &b, 500, Duration::ZERO).await;
    assert!(
        !ended,
        "one connection's 500 cancels are within the budget ({opened})"
    );
    let second = h2_client(https, &c).await;
    // alone, it would be cut after 512 (and what 50 a second refill): not before 1,000
    let (opened, ended) = reset_in_batches(second, 100, &b, 1_000, FIVE_S).await;
    assert!(
        ended,
        "the client's second connection not cut after {opened} more"
    );
    // with the client's budget: what the first left and 50 a second since, a batch or two
    assert!(
        opened < 450,
        "cut after {opened}: its own budget, not the client's"
    );
    assert_eq!(cancel_floods(&p, 1).await, 1);
    drop(keep);
    p.shutdown().await;
}

/// Each name, aliases included, reaches its own site's backend and no other's (the other
/// routing tests share one backend between sites, where a misroute still answers 200).
#[tokio::test]
async fn each_name_reaches_its_own_sites_backend() {
    let (a, b) = (backend().await, backend().await);
    let e = env();
    let none = serde_json::json!({"mode":"none"});
    write_routes(
        &e,
        serde_json::json!({}),
        vec![
            site("a.test", &["a.test", "alias.test"], a.addr, none.clone()),
            site("b.test", &["b.test", "www.b.test"], b.addr, none),
        ],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let http = p.http_addr.unwrap();
    for (host, to_a) in [
        ("a.test", true),
        ("ALIAS.test.", true),
        ("b.test", false),
        ("www.b.test:80", false),
    ] {
        let (before_a, before_b) = (a.hits.load(Ordering::SeqCst), b.hits.load(Ordering::SeqCst));
        assert_eq!(status(&get(http, host, "/", "").await), 200, "{host}");
        let went_a = a.hits.load(Ordering::SeqCst) - before_a;
        let went_b = b.hits.load(Ordering::SeqCst) - before_b;
        assert_eq!(
            (went_a, went_b),
            if to_a { (1, 0) } else { (0, 1) },
            "{host}"
        );
    }
    p.shutdown().await;
}

/// A second proxy on the ports of a running one fails to start (SO_REUSEPORT, which the
/// workers use, would otherwise let it share them silently).
#[tokio::test]
async fn a_second_proxy_on_the_same_port_is_refused() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let first = Proxy::start(options(&e)).await.unwrap();
    let mut o = options(&e);
    o.listen_http = Some(first.http_addr.unwrap().to_string());
    let second = Proxy::start(o).await;
    let err = second
        .err()
        .expect("a second proxy started on the same port");
    assert!(err.to_string().contains("cannot listen on"), "{err}");
    first.shutdown().await;
}

/// One client address may hold `max_connections_per_client` connections, not every slot of
/// every site: the next one is closed at once; once one of its connections ends, it may
/// open another.
#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    let b = backend().await;
    let e = env();
    // the limit as `pic2 render` writes it from `[proxy] max_connections_per_client`
    let none = serde_json::json!({"mode":"none"});
    write_routes(
        &e,
        serde_json::json!({"max_connections_per_client": 2}),
        vec![site("a.test", &["a.test"], b.addr, none)],
    );
    let mut o = options(&e);
    // one worker, one accept queue: connections are taken in the order they were made
    o.workers = 1;
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let closed_at_once = |mut s: TcpStream| async move {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    };
    let first = TcpStream::connect(http).await.unwrap();
    let second = TcpStream::connect(http).await.unwrap();
    let third = TcpStream::connect(http).await.unwrap();
    assert!(closed_at_once(third).await, "a third connection was served");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status(&get(http, "a.test", "/", "").await),
        200,
        "a slot came back"
    );
    let metrics = p.shared.global.client_limit_refused.load(Ordering::SeqCst);
    assert_eq!(metrics, 1);
    drop(second);
    // a WebSocket keeps one of the client's slots after its connection has given its own back
    let mut ws = TcpStream::connect(http).await.unwrap();
    ws.write_all(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = ws.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _plain = TcpStream::connect(http).await.unwrap();
    let over = TcpStream::connect(http).await.unwrap();
    assert!(
        closed_at_once(over).await,
        "the WebSocket did not count against its client's connections"
    );
    p.shutdown().await;
}

/// Reads from `s` until what came contains `until` (5 s at most); what came.
async fn read_until(s: &mut TcpStream, until: &str) -> String {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(until) {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A WebSocket takes over its connection's slot: on a proxy with a single one, an upgrade
/// is served (it got a 503 while the tunnel took a slot of its own before the connection
/// gave its back), the slot stays taken while the WebSocket lives and comes back when it
/// ends. An upgrade the backend refuses leaves the slot with its connection, which goes on.
#[tokio::test]
async fn a_websocket_takes_over_its_connections_slot() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.max_connections = 1;
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let upgrade = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    };
    let mut ws = TcpStream::connect(http).await.unwrap();
    ws.write_all(upgrade("/refuse").as_bytes()).await.unwrap();
    let refused = read_until(&mut ws, "body: 0").await;
    assert_eq!(status(&refused), 200, "{refused}");
    assert_eq!(
        status(&get(http, "a.test", "/", "").await),
        0,
        "the connection lost its slot to the refused upgrade"
    );
    ws.write_all(upgrade("/ws").as_bytes()).await.unwrap();
    let head = read_until(&mut ws, "\r\n\r\n").await;
    assert_eq!(status(&head), 101, "{head}");
    ws.write_all(b"ping").await.unwrap();
    assert_eq!(read_until(&mut ws, "ping").await, "ping");
    assert_eq!(
        status(&get(http, "a.test", "/", "").await),
        0,
        "another connection was let in beside the WebSocket"
    );
    drop(ws);
    let after = get_until(http, "a.test", "", 200).await;
    assert_eq!(
        status(&after),
        200,
        "the WebSocket's slot never came back: {after}"
    );
    p.shutdown().await;
}

/// Plain HTTP goes to HTTPS only once a certificate is served for the name: an ACME site
/// whose first certificate has not come (its DNS still on the old server while the
/// migration is tried through a hosts file) is served over HTTP meanwhile, where a
/// redirect would lead to a failed handshake; a site with its certificate is redirected.
#[tokio::test]
async fn http_goes_to_https_only_once_a_certificate_is_there() {
    let b = backend().await;
    let e = env();
    let (c, k) = self_signed(&e, "t.test");
    write_routes(
        &e,
        // a CA nobody answers at: no certificate comes
        serde_json::json!({"acme_directory": "https://127.0.0.1:9/dir"}),
        vec![
            site(
                "a.test",
                &["a.test"],
                b.addr,
                serde_json::json!({"mode":"acme"}),
            ),
            site("t.test", &["t.test"], b.addr, tls_files(&c, &k)),
        ],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let http = p.http_addr.unwrap();
    let r = get(http, "a.test", "/x", "").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("GET /x"), "{r}");
    let r = get(http, "t.test", "/x", "").await;
    assert_eq!(status(&r), 308, "{r}");
    assert!(r.to_lowercase().contains("location: https://t.test"), "{r}");
    p.shutdown().await;
}

/// A graceful shutdown lets a request in flight finish (a 3 s answer, within the grace
/// period) while new connections are no longer taken.
#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_takes_no_new_connection() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.shutdown_grace = Duration::from_secs(20);
    o.timeouts.backend = Duration::from_secs(10);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let slow = tokio::spawn(get(http, "a.test", "/slow", ""));
    tokio::time::sleep(Duration::from_millis(300)).await; // it has reached the backend
    let stopping = tokio::spawn(p.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = TcpStream::connect(http).await;
    if let Ok(mut s) = late {
        // the listener may linger a moment, but nothing answers there any more
        let _ = s
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .await;
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        assert_eq!(status(&out), 0, "served after the shutdown began: {out}");
    }
    let answer = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the request in flight never ended")
        .unwrap();
    assert_eq!(status(&answer), 200, "cut by the shutdown: {answer}");
    assert!(answer.contains("GET /slow"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown waited past the request")
        .unwrap();
}

/// Shutdown does not wait for a TLS handshake that is not coming (a scanner, a silent
/// client): before the fix every restart waited out tls_handshake_timeout.
#[tokio::test]
async fn shutdown_does_not_wait_for_a_silent_tls_handshake() {
    let (_e, _b, p, _) = tls_proxy(|o| {
        o.timeouts.tls_handshake = Duration::from_secs(60);
        o.shutdown_grace = Duration::from_secs(60);
    })
    .await;
    let _silent = TcpStream::connect(p.https_addr.unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    p.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown waited {:?} for a handshake",
        started.elapsed()
    );
}

#[tokio::test]
async fn tls_by_sni_http2_hsts_and_certificate_file_change() {
    let b = backend().await;
    let e = env();
    let (c1, k1) = self_signed(&e, "one.test");
    let (c2, k2) = self_signed(&e, "two.test");
    let mut two = site("two.test", &["two.test"], b.addr, tls_files(&c2, &k2));
    two["hsts"] = true.into();
    write_routes(
        &e,
        serde_json::json!({}),
        vec![
            site("one.test", &["one.test"], b.addr, tls_files(&c1, &k1)),
            two,
        ],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let https = p.https_addr.unwrap();
    let (cert1, proto, st, body, hsts) =
        tls_get(https, "one.test", &[Path::new(&c1)], &[b"h2", b"http/1.1"]).await;
    assert_eq!((proto.as_deref(), st), (Some(&b"h2"[..]), 200));
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
    assert_eq!(hsts, None, "HSTS only where asked");
    let (cert2, proto, st, _, hsts) =
        tls_get(https, "two.test", &[Path::new(&c2)], &[b"http/1.1"]).await;
    assert_eq!((proto.as_deref(), st), (Some(&b"http/1.1"[..]), 200));
    assert_eq!(hsts.as_deref(), Some("max-age=31536000"));
    assert_ne!(cert1, cert2);
    // a new certificate written in place is served without restart
    let (c3, k3) = self_signed(&e, "three.test");
    let params = rcgen::CertificateParams::new(vec!["one.test".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let new = params.self_signed(&key).unwrap();
    let _ = (c3, k3);
    std::fs::write(&k1, key.serialize_pem()).unwrap();
    std::fs::write(&c1, new.pem()).unwrap();
    let mut served = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        served = tls_get(https, "one.test", &[Path::new(&c1)], &[b"http/1.1"])
            .await
            .0;
        if served == new.der().to_vec() {
            break;
        }
    }
    assert_eq!(served, new.der().to_vec());
    // the proxy's own pages carry HSTS too (here, maintenance's 503)
    let state = e.dir.path().join("state");
    pic2_proxy::maintenance::set(&state, "two.test", true).unwrap();
    let mut seen = (0, None);
    for _ in 0..50 {
        let (_, _, st, _, hsts) =
            tls_get(https, "two.test", &[Path::new(&c2)], &[b"http/1.1"]).await;
        seen = (st, hsts);
        if st == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, (503, Some("max-age=31536000".to_owned())));
    p.shutdown().await;
}

/// A TLS connection opened for one site carries requests for that site's names only: a
/// request for another site gets 421 (its certificate was never checked by the client),
/// on HTTP/2 as on HTTP/1.1; an alias of the same site is served.
#[tokio::test]
async fn a_request_for_another_site_than_the_handshake_named_gets_421() {
    let b = backend().await;
    let e = env();
    let (c1, k1) = self_signed(&e, "one.test");
    let (c2, k2) = self_signed(&e, "two.test");
    write_routes(
        &e,
        serde_json::json!({}),
        vec![
            site(
                "one.test",
                &["one.test", "www.one.test"],
                b.addr,
                tls_files(&c1, &k1),
            ),
            site("two.test", &["two.test"], b.addr, tls_files(&c2, &k2)),
        ],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let https = p.https_addr.unwrap();
    let roots = [Path::new(&c1)];
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let (_, _, st, body, _) =
            tls_get_host(https, "one.test", "two.test", &roots, &[alpn]).await;
        assert_eq!(st, 421, "{body}");
        assert!(body.contains("Misdirected request"), "{body}");
        assert!(body.contains("Mauvaise connexion"), "{body}");
        let (_, _, st, body, _) =
            tls_get_host(https, "one.test", "WWW.One.test.", &roots, &[alpn]).await;
        assert_eq!(st, 200, "an alias of the site the handshake named: {body}");
        let (_, _, st, _, _) =
            tls_get_host(https, "one.test", "unknown.test", &roots, &[alpn]).await;
        assert_eq!(st, 404);
    }
    let misdirected = p.shared.global.misdirected.load(Ordering::SeqCst);
    assert_eq!(misdirected, 2);
    p.shutdown().await;

    // a trusted proxy in front (a load balancer) may carry several sites on one connection
    let routes = std::fs::read_to_string(e.dir.path().join("routes.json")).unwrap();
    let mut routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    routes["settings"]["trusted_proxies"] = serde_json::json!(["127.0.0.1"]);
    std::fs::write(e.dir.path().join("routes.json"), routes.to_string()).unwrap();
    let p = Proxy::start(options(&e)).await.unwrap();
    let (_, _, st, body, _) = tls_get_host(
        p.https_addr.unwrap(),
        "one.test",
        "two.test",
        &roots,
        &[b"h2"],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    p.shutdown().await;
}

/// The metrics say, per TLS site, when its certificate ends and how many of its names no
/// valid certificate covers: what an admin alerts on (an alias left out, a renewal failing).
#[tokio::test]
async fn certificate_coverage_and_end_are_in_the_metrics() {
    let b = backend().await;
    let e = env();
    // covers one.test and www.one.test, not the site's third name
    let (c1, k1) = self_signed(&e, "one.test");
    write_routes(
        &e,
        serde_json::json!({}),
        vec![
            site(
                "one.test",
                &["one.test", "www.one.test", "extra.one.test"],
                b.addr,
                tls_files(&c1, &k1),
            ),
            site(
                "plain.test",
                &["plain.test"],
                b.addr,
                serde_json::json!({"mode":"none"}),
            ),
        ],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let m = get(p.metrics_addr.unwrap(), "x", "/metrics", "").await;
    assert!(
        m.contains("pic2_proxy_certificate_names_uncovered{site=\"one.test\"} 1\n"),
        "{m}"
    );
    let not_after: i64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("pic2_proxy_certificate_not_after_seconds{site=\"one.test\"} ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no end for one.test: {m}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(not_after > i64::try_from(now).unwrap(), "{not_after}");
    assert!(
        !m.contains("certificate_names_uncovered{site=\"plain.test\"}"),
        "a site without TLS: {m}"
    );
    // a name the certificate does not cover is not served it (a failed handshake), and its
    // plain HTTP is not sent to HTTPS: it stays served over HTTP
    let http = p.http_addr.unwrap();
    assert_eq!(status(&get(http, "one.test", "/", "").await), 308);
    assert_eq!(status(&get(http, "extra.one.test", "/", "").await), 200);
    p.shutdown().await;
}

#[tokio::test]
async fn backend_down_then_back() {
    let b = backend().await;
    let addr = b.addr;
    let e = env();
    write_routes(
        &e,
        serde_json::json!({}),
        vec![site(
            "a.test",
            &["a.test"],
            addr,
            serde_json::json!({"mode":"none"}),
        )],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let http = p.http_addr.unwrap();
    assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    b.task.abort();
    let _ = b.task.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = get(http, "a.test", "/", "").await;
    assert_eq!(status(&r), 502, "{r}");
    assert!(r.contains("indisponible") && r.contains("unavailable"));
    let again = backend_on(TcpListener::bind(addr).await.unwrap()).await;
    assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    // a backend slower than the backend timeout: 504
    let r = get(http, "a.test", "/slow", "").await;
    assert_eq!(status(&r), 504, "{r}");
    drop(again);
    p.shutdown().await;
}

/// A client that asks for a large answer and then takes nothing (the "slow read" attack) is
/// cut off once `send_timeout` has passed with nothing taken; the proxy then stops reading
/// the backend's answer. A client as slow that keeps taking bytes is served to the end.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.timeouts.send = Duration::from_secs(1);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    // a small receive buffer, so that the proxy's writes wait soon
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(http).await.unwrap();
    s.write_all(b"GET /huge HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(end.is_ok(), "still open");
    assert!(
        got.len() < HUGE,
        "the whole answer came ({} bytes): the client was not cut off",
        got.len()
    );
    // reading steadily but slowly (a 4 KB buffer, a read every 2 ms) gets the whole answer
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(http).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(got.len() > BIG, "a slow reader got {} bytes", got.len());
    p.shutdown().await;
}

/// A client that announces a body and stops sending it (the "slow POST" attack) gets a 408
/// once a read of the body has waited `body_read_timeout`, over HTTP/1.1 and HTTP/2; one
/// that sends it in time, even in pieces, is served.
#[tokio::test]
async fn a_client_that_stops_sending_its_body_is_cut_off() {
    let (_e, _b, p, (c, _)) = tls_proxy(|o| {
        o.timeouts.body_read = Duration::from_secs(3);
        // the backend waits for the whole body before answering: its timeout must not be
        // what ends the request
        o.timeouts.backend = Duration::from_secs(30);
    })
    .await;
    let https = p.https_addr.unwrap();
    let roots = [Path::new(&c)];
    let head =
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 20\r\nConnection: close\r\n\r\n";

    // HTTP/1.1: a 408, and the connection ends
    let mut s = tls_connect(https, "a.test", &roots, &[b"http/1.1"]).await;
    s.write_all(head).await.unwrap();
    s.write_all(b"0123456789").await.unwrap();
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        end.is_ok(),
        "a body that stopped coming held its connection"
    );
    let got = String::from_utf8_lossy(&got);
    assert_eq!(status(&got), 408, "{got}");
    assert!(
        got.contains("Envoi interrompu") && got.contains("Upload stopped"),
        "{got}"
    );

    // HTTP/2: the same 408, on a stream
    let tls = tls_connect(https, "a.test", &roots, &[b"h2"]).await;
    let (mut send, _) = h2_over(tls).await;
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, hyper::Error>::new(1);
    tx.send_data(Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    let req = Request::builder()
        .method("POST")
        .uri("https://a.test/")
        .header("content-length", "20")
        .body(body)
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), send.send_request(req)).await;
    let code = r
        .expect("a stalled HTTP/2 body held its stream")
        .unwrap()
        .status();
    assert_eq!(code, hyper::StatusCode::REQUEST_TIMEOUT);
    drop(tx);

    // a body sent in time, even in pieces, is served
    let mut s = tls_connect(https, "a.test", &roots, &[b"http/1.1"]).await;
    s.write_all(head).await.unwrap();
    for part in [&b"0123456789"[..], b"abcdefghij"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(part).await.unwrap();
    }
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert_eq!(status(&got), 200, "{got}");
    assert!(got.contains("body: 20"), "{got}");
    p.shutdown().await;
}

#[tokio::test]
async fn the_backend_timeout_bounds_each_wait_not_the_whole_exchange() {
    let (_e, _b, p) = basic().await;
    let http = p.http_addr.unwrap();
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 30\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        s.write_all(b"12345").await.unwrap();
    }
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert_eq!(status(&got), 200, "an upload of 3.6 s: {got}");
    assert!(got.contains("body: 30"), "{got}");

    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        end.is_ok(),
        "an answer stopped in the middle held its client: {got}"
    );
    assert!(got.contains("part"), "{got}");
    assert!(
        !got.ends_with("0\r\n\r\n"),
        "a cut answer looked whole: {got}"
    );

    // an upgrade the backend refuses: its answer comes through hyper's client, timed too
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(
        b"GET /stall HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        end.is_ok(),
        "a refused upgrade's stalled answer held its client: {got}"
    );
    assert_eq!(status(&got), 200, "{got}");
    assert!(got.contains("part"), "{got}");
    assert!(
        !got.ends_with("0\r\n\r\n"),
        "a cut answer to a refused upgrade looked whole: {got}"
    );
    p.shutdown().await;
}

/// The routes' timeouts win over the options' (the proxy's defaults), a site's own backend
/// timeout over both, and a reload applies them.
#[tokio::test]
async fn timeouts_come_from_the_routes_and_a_site_may_wait_longer() {
    let b = backend().await;
    let e = env();
    let none = serde_json::json!({"mode":"none"});
    let patient = {
        let mut s = site("a.test", &["a.test"], b.addr, none.clone());
        s["backend_timeout_seconds"] = 5.into();
        s
    };
    let sites = vec![patient, site("b.test", &["b.test"], b.addr, none)];
    let settings = |t: serde_json::Value| serde_json::json!({"timeouts": t});
    write_routes(
        &e,
        settings(serde_json::json!({"backend_seconds": 1})),
        sites.clone(),
    );
    let mut o = options(&e);
    o.timeouts.backend = Duration::from_secs(30);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    // `/slow` answers after 3 s: past the routes' 1 s, within a.test's own 5 s
    let (a, b_) = tokio::join!(
        get(http, "a.test", "/slow", ""),
        get(http, "b.test", "/slow", "")
    );
    assert_eq!(status(&a), 200, "a.test waits its own 5 s: {a}");
    assert_eq!(status(&b_), 504, "b.test waits the routes' 1 s: {b_}");

    write_routes(&e, settings(serde_json::json!({})), sites);
    let mut after = String::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = get(http, "b.test", "/slow", "").await;
        if status(&after) == 200 {
            break;
        }
    }
    assert_eq!(
        status(&after),
        200,
        "after the reload, the options' 30 s: {after}"
    );
    p.shutdown().await;
}

/// The TLS handshake's time comes from the routes too: a client that connects and says
/// nothing is closed after the routes' 1 s, not the options' 60 s.
#[tokio::test]
async fn the_tls_handshake_time_comes_from_the_routes() {
    let b = backend().await;
    let e = env();
    let (c, k) = self_signed(&e, "a.test");
    let tls = tls_files(&c, &k);
    write_routes(
        &e,
        serde_json::json!({"timeouts": {"tls_handshake_seconds": 1}}),
        vec![site("a.test", &["a.test"], b.addr, tls)],
    );
    let mut o = options(&e);
    o.timeouts.tls_handshake = Duration::from_secs(60);
    let p = Proxy::start(o).await.unwrap();
    let mut silent = TcpStream::connect(p.https_addr.unwrap()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(
        matches!(end, Ok(Ok(0) | Err(_))),
        "still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    p.shutdown().await;
}

#[tokio::test]
async fn limits_414_431_413_and_slow_clients() {
    let (_e, b, p) = basic().await;
    let http = p.http_addr.unwrap();
    let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    let r = get(http, "a.test", "/", &big).await;
    assert_eq!(status(&r), 431, "{r}");
    assert!(
        r.contains("trop volumineux") && r.contains("too large"),
        "{r}"
    );
    // a URL past the limit: 414, not 431 (nothing to do with cookies)
    let long = format!("/{}", "a".repeat(20 * 1024));
    let r = get(http, "a.test", &long, "").await;
    assert_eq!(status(&r), 414, "{}", r.get(..200).unwrap_or(&r));
    assert!(
        r.contains("Adresse trop longue") && r.contains("Address too long"),
        "{r}"
    );
    // the guard's own verdict header cannot be sent by a client
    let hits = b.hits.load(Ordering::SeqCst);
    let r = get(http, "a.test", "/", "X-Pic2-Guard: 0123 431\r\n").await;
    assert_eq!(status(&r), 400, "{r}");
    assert_eq!(b.hits.load(Ordering::SeqCst), hits);
    // b.test accepts 1 MB: a declared larger body is refused before the backend
    let hits = b.hits.load(Ordering::SeqCst);
    let r = raw(
        http,
        b"POST / HTTP/1.1\r\nHost: b.test\r\nContent-Length: 2000000\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 413, "{r}");
    assert_eq!(b.hits.load(Ordering::SeqCst), hits);
    // a chunked body that grows past it too
    let mut req = b"POST / HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..20 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw(http, &req).await;
    assert_eq!(status(&r), 413, "{}", &r[..r.len().min(300)]);
    // a small body passes
    let r = raw(
        http,
        b"POST / HTTP/1.1\r\nHost: b.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(r.contains("body: 5"), "{r}");
    // the limit is b.test's own: a.test takes the same 2 MB
    let mut req =
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n"
            .to_vec();
    req.extend(std::iter::repeat_n(b'z', 2_000_000));
    let r = raw(http, &req).await;
    assert!(r.contains("body: 2000000"), "{}", &r[..r.len().min(300)]);
    // slowloris: 50 clients dribbling headers do not slow a normal client, and are cut off
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // one empty line, then nothing: the head's clock runs from it too
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(b"\r\n").await.unwrap();
    slow.push(s);
    let t = std::time::Instant::now();
    assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    assert!(t.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for mut s in slow {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        assert!(
            n.is_ok(),
            "a slow client was not cut off by the header timeout"
        );
    }
    // an idle keep-alive connection is closed after the same timeout
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(n.is_ok(), "an idle connection stayed open");
    p.shutdown().await;
}

/// The framing guard steps aside only for a `101` the proxy itself answered: a site's body
/// starting like one, answering an upgrade it refused, leaves the guard on the connection,
/// and the next request's smuggling shape is refused.
#[tokio::test]
async fn a_body_that_looks_like_a_101_leaves_the_guard_on() {
    let (_e, _b, p) = basic().await;
    let mut s = TcpStream::connect(p.http_addr.unwrap()).await.unwrap();
    s.write_all(b"GET /fake101 HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let first = read_until(&mut s, &format!("\r\n\r\n{FAKE_101}")).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("101 Switching"), "{first}");
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let shape = format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}");
    s.write_all(shape.as_bytes()).await.unwrap();
    let mut second = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut second)).await;
    let second = String::from_utf8_lossy(&second);
    assert_eq!(status(&second), 400, "{second}");
    assert!(!second.contains("/smuggled"), "{second}");
    p.shutdown().await;
}

#[tokio::test]
async fn request_smuggling_shapes_are_rejected() {
    let (_e, b, p) = basic().await;
    let http = p.http_addr.unwrap();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let shapes: Vec<String> = vec![
        // two different Content-Lengths
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        // obfuscated Transfer-Encoding
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n{smuggled}"),
        // bad chunk sizes
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n{smuggled}"),
        // Transfer-Encoding in HTTP/1.0
        format!("POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
    ];
    for s in &shapes {
        let r = raw(http, s.as_bytes()).await;
        assert!(!r.contains("/smuggled"), "smuggled through:\n{s}\n---\n{r}");
        // the client's fault, said as such: a bad chunk is found once its request went on
        // (the backend saw a head and a body that broke off, never the smuggled request)
        assert_eq!(status(&r), 400, "{s}\n---\n{r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{r}");
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        2,
        "only the two bad-chunk requests, whose heads are sound, reached the backend"
    );
    // Content-Length with Transfer-Encoding (either order), and two equal Content-Lengths:
    // 400, closed, the backend never called, also as the second request of a connection
    let hits = b.hits.load(Ordering::SeqCst);
    let bad_before = p.shared.global.bad_requests.load(Ordering::SeqCst);
    let refused = [
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello{smuggled}"),
    ];
    for s in &refused {
        let r = raw(http, s.as_bytes()).await;
        assert_eq!(status(&r), 400, "{s}\n---\n{r}");
        assert!(
            r.contains("Requête invalide") && r.contains("Bad request"),
            "{r}"
        );
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{r}");
        assert!(!r.contains("/smuggled"), "{r}");
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        hits,
        "the backend was called"
    );
    let second = format!("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n{}", refused[0]);
    let r = raw(http, second.as_bytes()).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(r.matches("HTTP/1.1 ").count(), 2, "{r}");
    assert!(r.contains("HTTP/1.1 400"), "{r}");
    assert_eq!(b.hits.load(Ordering::SeqCst), hits + 1);
    // after a chunked body too
    let chunked = "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let r = raw(http, format!("{chunked}{}", refused[0]).as_bytes()).await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("body: 5"),
        "{r}"
    );
    assert!(r.contains("HTTP/1.1 400"), "{r}");
    assert_eq!(b.hits.load(Ordering::SeqCst), hits + 2);
    assert_eq!(
        p.shared.global.bad_requests.load(Ordering::SeqCst),
        bad_before + 5
    );
    // shapes that once set the guard aside for the rest of the connection, each followed
    // by a refused head: a head hidden in trailers behind a bare LF (hyper reads it as
    // trailers, and the guard took the refused head for its body), a PRI that is not the
    // HTTP/2 preface
    let last = &refused[0];
    let asides = [
        format!("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n{last}", last.len()),
        format!("PRI * HTTP/1.1\r\nHost: a.test\r\n\r\n{last}"),
    ];
    for s in &asides {
        let r = raw(http, s.as_bytes()).await;
        assert_eq!(status(&r), 200, "{s}\n---\n{r}");
        assert!(r.contains("HTTP/1.1 400"), "not refused:\n{s}\n---\n{r}");
        assert!(!r.contains("/smuggled"), "{r}");
    }
    assert_eq!(
        p.shared.global.bad_requests.load(Ordering::SeqCst),
        bad_before + 7
    );
    // a CONNECT is refused before any backend, and its connection closed: pic2 is no
    // forward proxy (it once stepped the guard aside, and was sent on to the site)
    let hits = b.hits.load(Ordering::SeqCst);
    let r = raw(
        http,
        format!("CONNECT a.test:80 HTTP/1.1\r\nHost: a.test:80\r\n\r\n{last}").as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 405, "{r}");
    assert!(r.contains("CONNECT") && r.contains("allow: GET"), "{r}");
    assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{r}");
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        hits,
        "the backend was called"
    );
    drop(b);
    p.shutdown().await;
}

#[tokio::test]
async fn maintenance_mode_without_reload() {
    let (e, _b, p) = basic().await;
    let http = p.http_addr.unwrap();
    let state = e.dir.path().join("state");
    let reloads = p.shared.global.reloads.load(Ordering::SeqCst);
    pic2_proxy::maintenance::set(&state, "a.test", true).unwrap();
    let r = get_until(http, "www.a.test", "", 503).await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.to_ascii_lowercase().contains("retry-after: 600"), "{r}");
    assert!(r.contains("Site en maintenance") && r.contains("Site under maintenance"));
    // other sites are untouched; an admin address still passes
    assert_eq!(status(&get(http, "b.test", "/", "").await), 200);
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = sock.connect(http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(status(&out), 200, "{out}");
    pic2_proxy::maintenance::set(&state, "a.test", false).unwrap();
    let r = get_until(http, "a.test", "", 200).await;
    assert_eq!(status(&r), 200);
    assert_eq!(
        p.shared.global.reloads.load(Ordering::SeqCst),
        reloads,
        "no reload happened"
    );
    p.shutdown().await;
}

/// With a poll interval of 30 s, a switch is seen within a second only through the watcher.
#[tokio::test]
async fn maintenance_switch_is_seen_at_once() {
    let b = backend().await;
    let e = env();
    write_routes(
        &e,
        serde_json::json!({}),
        vec![site(
            "a.test",
            &["a.test"],
            b.addr,
            serde_json::json!({"mode":"none"}),
        )],
    );
    let mut o = options(&e);
    o.poll_interval = Duration::from_secs(30);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let state = e.dir.path().join("state");
    assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    for (on, want) in [(true, 503), (false, 200), (true, 503)] {
        pic2_proxy::maintenance::set(&state, "a.test", on).unwrap();
        let t = std::time::Instant::now();
        let r = get_until(http, "a.test", "", want).await;
        assert_eq!(status(&r), want, "maintenance {on}: {r}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    p.shutdown().await;
}

#[tokio::test]
async fn reloads_under_load_fail_no_request_and_keep_websockets() {
    let (e, b, p) = basic().await;
    let http = p.http_addr.unwrap();
    // a WebSocket-style upgraded connection opened before the reloads
    let mut ws = TcpStream::connect(http).await.unwrap();
    ws.write_all(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = ws.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    ws.write_all(b"ping-1").await.unwrap();
    let mut buf = [0u8; 6];
    ws.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping-1");

    // 8 keep-alive clients for the duration of 30 reloads (bounded in count and time)
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut bad) = (0u32, 0u32);
            let tcp = TcpStream::connect(http).await.unwrap();
            let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(c);
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let req = Request::builder()
                    .uri("/")
                    .header("host", "a.test")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match s.send_request(req).await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.into_body().collect().await;
                        ok += 1
                    }
                    _ => bad += 1,
                }
            }
            (ok, bad)
        }));
    }
    for i in 0..30 {
        let extra = site(
            &format!("n{i}.test"),
            &[&format!("n{i}.test")],
            b.addr,
            serde_json::json!({"mode":"none"}),
        );
        write_routes(
            &e,
            serde_json::json!({"admin_addresses": ["127.0.0.2"]}),
            vec![
                site(
                    "a.test",
                    &["a.test", "www.a.test", "alias.test"],
                    b.addr,
                    serde_json::json!({"mode":"none"}),
                ),
                extra,
            ],
        );
        p.reload().unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut bad) = (0, 0);
    for c in clients {
        let (o, b) = c.await.unwrap();
        ok += o;
        bad += b;
    }
    assert_eq!(bad, 0, "{bad} failed requests during reloads ({ok} ok)");
    assert!(ok > 0);
    assert_eq!(status(&get(http, "n29.test", "/", "").await), 200);
    // the upgraded connection is still there
    ws.write_all(b"ping-2").await.unwrap();
    ws.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping-2");
    // a broken routes file is refused and the old routes stay
    std::fs::write(&e.routes, b"{ not json").unwrap();
    assert!(p.reload().is_err());
    assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    p.shutdown().await;
}

#[tokio::test]
async fn metrics_and_health() {
    let (_e, _b, p) = basic().await;
    let http = p.http_addr.unwrap();
    assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    assert_eq!(status(&get(http, "zzz.test", "/", "").await), 404);
    let m = p.metrics_addr.unwrap();
    let r = get(m, "x", "/health", "").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.ends_with("ok\n"), "{r}");
    // a 413, counted as the site's 4xx
    let r = get(http, "a.test", "/", "Content-Length: 999999999999\r\n").await;
    assert_eq!(status(&r), 413, "{r}");
    let r = get(m, "x", "/metrics", "").await;
    assert!(
        r.contains("pic2_proxy_requests_total{site=\"a.test\",code=\"2xx\"} 1"),
        "{r}"
    );
    assert!(
        r.contains("pic2_proxy_requests_total{site=\"a.test\",code=\"4xx\"} 1"),
        "{r}"
    );
    assert!(
        r.contains("pic2_proxy_request_duration_seconds_bucket{site=\"a.test\",le=\"+Inf\"} 2"),
        "{r}"
    );
    assert!(r.contains("pic2_proxy_unknown_host_total 1"), "{r}");
    assert!(
        r.contains("pic2_proxy_request_duration_seconds_count{site=\"a.test\"} 2"),
        "{r}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn every_worker_serves_the_one_port() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.workers = 4;
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    // 64 connections from 64 source ports: the kernel's hash spreads them over the workers
    let answers = all_at_once((0..64).map(|_| get(http, "a.test", "/", ""))).await;
    assert!(answers.iter().all(|r| status(r) == 200));
    let per_worker: Vec<u64> = p
        .shared
        .global
        .worker_connections
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .collect();
    assert_eq!(per_worker.len(), 4);
    assert_eq!(per_worker.iter().sum::<u64>(), 64, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "a worker got no connection: {per_worker:?}"
    );
    p.shutdown().await;
}

/// The kernel hashes connections onto the workers' sockets blind to load; connections that
/// stay open end up spread evenly all the same (within two), whichever socket took them.
#[tokio::test]
async fn connections_that_stay_open_are_spread_evenly_over_the_workers() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.workers = 4;
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let mut held = Vec::new();
    for _ in 0..40 {
        // one at a time, each answered once (so counted) before the next is opened
        let mut s = TcpStream::connect(http).await.unwrap();
        ask_once(&mut s).await;
        held.push(s);
    }
    spread_evenly_then_uncounted(&p, held).await;
    p.shutdown().await;
}

/// The same over TLS: the worker a connection is handed to does the handshake.
#[tokio::test]
async fn tls_connections_handed_over_are_served_by_the_worker_taking_them() {
    let (_e, _b, p, (cert, _)) = tls_proxy(|o| o.workers = 4).await;
    let https = p.https_addr.unwrap();
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut s = tls_connect(https, "a.test", &[Path::new(&cert)], &[b"http/1.1"]).await;
        ask_once(&mut s).await;
        held.push(s);
    }
    spread_evenly_then_uncounted(&p, held).await;
    p.shutdown().await;
}

/// Sends `GET /` for a.test on `s` and reads until the answer's head, which must be a 200.
async fn ask_once<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(status(&String::from_utf8_lossy(&seen)), 200);
}

/// Checks that the 40 `held` connections are spread over `p`'s 4 workers within two, some
/// of them handed over, then closes them and checks every worker's count back to 0.
async fn spread_evenly_then_uncounted<S>(p: &Proxy, held: Vec<S>) {
    let per_worker: Vec<u64> = p
        .shared
        .global
        .worker_connections
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 40);
    assert!(
        per_worker.iter().all(|n| (9..=11).contains(n)),
        "{per_worker:?}"
    );
    let m = get(p.metrics_addr.unwrap(), "x", "/metrics", "").await;
    let handed: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("pic2_proxy_connections_handed_over_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(handed > 0, "40 connections hashed evenly by chance? {m}");
    let open = open_per_worker(&m);
    assert_eq!(open.iter().sum::<u64>(), 40, "{m}");
    assert!(open.iter().all(|n| (9..=11).contains(n)), "{open:?}");
    drop(held);
    // every connection closed is uncounted on the worker that served it
    let mut open = Vec::new();
    for _ in 0..100 {
        open = open_per_worker(&get(p.metrics_addr.unwrap(), "x", "/metrics", "").await);
        if open.iter().sum::<u64>() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, [0, 0, 0, 0]);
}

/// The `pic2_proxy_worker_connections_open` gauges of a metrics page, by worker.
fn open_per_worker(metrics: &str) -> Vec<u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("pic2_proxy_worker_connections_open{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

async fn all_at_once<F: std::future::Future<Output = String> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<String> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// The test options with an access log (JSON lines) in `e`'s folder, and its path.
fn logging_options(e: &Env) -> (Options, PathBuf) {
    let log = e.dir.path().join("access.log");
    let mut o = options(e);
    o.access_log = Some(log.clone());
    (o, log)
}

/// The access log's text once it holds `lines` lines, or what it holds after 10 s.
async fn log_text(log: &std::path::Path, lines: usize) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().count() >= lines {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

/// A connection that asked a.test for `/stall` and read its first part ("part\n"); the rest
/// of the answer does not come for 30 s.
async fn first_part_of_stall(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("part\n") {
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// A JSON access log's lines, parsed.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn access_log_in_combined_format() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let (mut o, log) = logging_options(&e);
    o.access_log_format = pic2_proxy::access_log::Format::Combined;
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let extra = "User-Agent: bot \"x\"\r\nReferer: http://r.test/\r\n";
    assert_eq!(status(&get(http, "a.test", "/p?q=1", extra).await), 200);
    assert_eq!(status(&get(http, "zzz.test", "/", "").await), 404);
    // a head near the 16 KB limit, of tabs (each escaped to four bytes), is cut to a few KB
    let tabs = format!("User-Agent: {}\r\n", "x\t".repeat(7_000));
    assert_eq!(status(&get(http, "a.test", "/", &tabs).await), 200);
    let text = log_text(&log, 3).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].len() < 5 * 1024 && lines[2].ends_with("\\x09…\""),
        "a line of {} bytes",
        lines[2].len()
    );
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{text}");
    assert!(
        lines[0].contains("] \"GET /p?q=1 HTTP/1.1\" 200 ")
            && lines[0].ends_with(" \"http://r.test/\" \"bot \\\"x\\\"\""),
        "{text}"
    );
    assert!(lines[1].contains("\"GET / HTTP/1.1\" 404 "), "{text}");
    p.shutdown().await;
}

/// The access log's bytes are those the body really sent: a chunked answer's too (most PHP
/// output; the Content-Length alone left it `-`), none for a HEAD, and the part a client
/// got before it left (the line is written then, not lost with the request).
#[tokio::test]
async fn access_log_counts_the_bytes_each_answer_sent() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let (mut o, log) = logging_options(&e);
    // the stalled answer's line must come from the client leaving, not from this timeout
    o.timeouts.backend = Duration::from_secs(60);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let chunked = get(http, "a.test", "/drip", "").await;
    assert!(chunked.contains("transfer-encoding: chunked"), "{chunked}");
    let head = "HEAD /head HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    assert_eq!(status(&raw(http, head.as_bytes()).await), 200);
    // a client that takes the first part of a stalled answer and leaves
    drop(first_part_of_stall(http).await);
    let text = log_text(&log, 3).await;
    let bytes_of = |path: &str| {
        json_lines(&text)
            .into_iter()
            .find(|v| v["path"] == path)
            .map(|v| v["bytes"].clone())
    };
    assert_eq!(bytes_of("/drip"), Some(20.into()), "{text}");
    assert_eq!(bytes_of("/head"), Some(0.into()), "{text}");
    assert_eq!(bytes_of("/stall"), Some(5.into()), "{text}");
    p.shutdown().await;
}

/// An answer still streaming when the shutdown's grace ends is cut, and its line (written
/// when its body is dropped) still reaches the log before the writer closes.
#[tokio::test]
async fn access_log_keeps_the_answers_cut_at_shutdown() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let (mut o, log) = logging_options(&e);
    o.timeouts.backend = Duration::from_secs(60);
    o.shutdown_grace = Duration::from_millis(500);
    let p = Proxy::start(o).await.unwrap();
    let s = first_part_of_stall(p.http_addr.unwrap()).await;
    p.shutdown().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("\"path\":\"/stall\""), "{text:?}");
    drop(s);
}

/// A head the framing guard refuses (400 smuggling shape, 414, 431) is logged as it came:
/// its method, target and Host, not the placeholder request the guard hands hyper in its
/// place (`GET /` for `pic2-guard.invalid`). An admin reading the log for an attack, or
/// fail2ban matching a path, needs them. A pipelined request before it keeps its own.
#[tokio::test]
async fn access_log_shows_the_heads_the_guard_refused() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let (o, log) = logging_options(&e);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let smuggling = "GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n\
        POST /smuggle HTTP/1.1\r\nHost: A.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let r = raw(http, smuggling.as_bytes()).await;
    assert!(r.contains(" 400 "), "{r}");
    let long = format!("/long{}", "a".repeat(20 * 1024));
    assert_eq!(status(&get(http, "a.test", &long, "").await), 414);
    let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    assert_eq!(status(&get(http, "a.test", "/big-head", &big).await), 431);
    let text = log_text(&log, 4).await;
    let lines = json_lines(&text);
    let seen: Vec<(String, String, String, u64)> = lines
        .iter()
        .map(|v| {
            let path = v["path"].as_str().unwrap();
            (
                v["method"].as_str().unwrap().to_owned(),
                path.get(..10).unwrap_or(path).to_owned(),
                v["host"].as_str().unwrap().to_owned(),
                v["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let line = |m: &str, p: &str, h: &str, s| (m.to_owned(), p.to_owned(), h.to_owned(), s);
    assert_eq!(
        seen,
        [
            line("GET", "/first", "a.test", 200),
            line("POST", "/smuggle", "a.test", 400),
            // cut at the limit before its Host came
            line("GET", "/longaaaaa", "", 414),
            line("GET", "/big-head", "a.test", 431),
        ],
        "{text}"
    );
    assert!(!text.contains("pic2-guard"), "{text}");
    p.shutdown().await;
}

/// An access log that cannot be written (a full disk: /dev/full answers ENOSPC) costs no
/// request, and the lines it loses are counted in `access_log_dropped_total` (they went
/// unseen: the write's error was thrown away).
#[tokio::test]
async fn access_log_lines_a_failed_write_loses_are_counted() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.access_log = Some(PathBuf::from("/dev/full"));
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    for i in 0..5 {
        assert_eq!(
            status(&get(http, "a.test", &format!("/{i}"), "").await),
            200
        );
    }
    let dropped = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("pic2_proxy_access_log_dropped_total "))
            .map(|v| v.trim().parse::<u64>().unwrap())
    };
    let mut m = String::new();
    for _ in 0..50 {
        m = get(p.metrics_addr.unwrap(), "x", "/metrics", "").await;
        if dropped(&m) == Some(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dropped(&m), Some(5), "{m}");
    p.shutdown().await;
}

/// A route with `log_query: false` (the password application, phpMyAdmin) keeps its query
/// strings out of the access log, the referer's too: a reset link's token would let whoever
/// reads the log set the account's password. Other sites' queries are logged as they came.
#[tokio::test]
async fn access_log_leaves_out_the_queries_of_a_route_that_asks() {
    let b = backend().await;
    let e = env();
    let none = serde_json::json!({"mode":"none"});
    let mut app = site("passwd.test", &["passwd.test"], b.addr, none.clone());
    app["log_query"] = false.into();
    let sites = vec![site("a.test", &["a.test"], b.addr, none), app];
    write_routes(&e, serde_json::json!({}), sites);
    let (o, log) = logging_options(&e);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let referer = "Referer: http://passwd.test/keys?token=REFERER-SECRET\r\n";
    let r = get(http, "passwd.test", "/reset?token=PATH-SECRET", referer).await;
    assert_eq!(status(&r), 200);
    // a head the framing guard refuses is logged with its own target, its query left out
    // too: its site's (the absolute-form target's, as routing reads it, before the Host
    // field), or any when the site is not known (a URL too long has no Host before the cut)
    let smuggling = "POST http://passwd.test/reset?token=GUARD-SECRET HTTP/1.1\r\n\
        Host: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(raw(http, smuggling.as_bytes()).await.contains(" 400 "));
    let long = format!("/sql?q=LONG-SECRET{}", "a".repeat(20 * 1024));
    assert_eq!(status(&get(http, "passwd.test", &long, "").await), 414);
    assert_eq!(
        status(&get(http, "a.test", "/search?q=bikes", "").await),
        200
    );
    let text = log_text(&log, 4).await;
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 4, "{text}");
    assert!(!text.contains("SECRET"), "a secret in the log: {text}");
    assert_eq!(lines[0]["path"], "/reset?(not-logged)", "{text}");
    assert_eq!(lines[0]["referer"], "http://passwd.test/keys?(not-logged)");
    assert_eq!(
        (&lines[1]["method"], &lines[1]["path"], &lines[1]["status"]),
        (
            &"POST".into(),
            &"http://passwd.test/reset?(not-logged)".into(),
            &400.into()
        ),
        "{text}"
    );
    assert_eq!(
        (&lines[2]["path"], &lines[2]["status"]),
        (&"/sql?(not-logged)".into(), &414.into()),
        "{text}"
    );
    assert_eq!(
        lines[3]["path"], "/search?q=bikes",
        "another site's query is kept"
    );
    p.shutdown().await;
}

/// The access log across logrotate and shutdown: after the file is moved away, a reload
/// (SIGHUP) makes the proxy write to a new file at the path; at shutdown the last lines are
/// written and the proxy ends at once when idle, not after the whole grace period (the log
/// writer used to keep it waiting: 31 s per restart with the default grace).
#[tokio::test]
async fn access_log_reopened_on_reload_and_written_out_at_shutdown() {
    let b = backend().await;
    let e = env();
    one_site(&e, b.addr);
    let (mut o, log) = logging_options(&e);
    let rotated = e.dir.path().join("access.log.1");
    o.shutdown_grace = Duration::from_secs(60);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let lines = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(status(&get(http, "a.test", "/before", "").await), 200);
    for _ in 0..50 {
        if lines(&log) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines(&log), 1);
    std::fs::rename(&log, &rotated).unwrap();
    p.reload().unwrap();
    assert_eq!(status(&get(http, "a.test", "/after", "").await), 200);
    let started = std::time::Instant::now();
    p.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown waited {:?} with nothing in flight",
        started.elapsed()
    );
    assert_eq!(lines(&rotated), 1, "the rotated file got more lines");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("/after"), "the reopened log: {text:?}");
}

/// Reads from `s` until `pending` holds a whole request head, and takes the head out (what
/// follows it stays in `pending`); `None` once the peer has closed first.
async fn next_head(s: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(pending.drain(..end + 4).collect());
        }
        match s.read(&mut buf).await {
            Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// A bare backend on port 0 that runs `serve` on each connection it accepts, in a task of its
/// own, and counts the connections.
async fn raw_backend<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, accepted)
}

/// A backend answering with `interim` 1xx heads before its 200, all in one write, or (with
/// `trickle`) its whole answer a byte at a time.
async fn interim_backend(interim: usize, trickle: bool) -> SocketAddr {
    let (addr, _) = raw_backend(move |mut s| async move {
        if next_head(&mut s, &mut Vec::new()).await.is_none() {
            return;
        }
        let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(interim);
        answer
            .extend_from_slice(b"HTTP/1.1 200 OK\r\nX-Some: thing\r\nContent-Length: 2\r\n\r\nok");
        if trickle {
            for b in answer {
                if s.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            let _ = s.write_all(&answer).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    addr
}

/// 1xx answers before the final one are passed over, 8 at most: a backend sending them for
/// ever kept a worker parsing for the whole backend timeout. A head that comes a byte at a
/// time (parsed again only when a line may have ended it) is read whole.
#[tokio::test]
async fn interim_answers_are_bounded_and_a_trickled_head_is_read() {
    for (interim, trickle, want) in [
        (3, false, 200),
        (8, false, 200),
        (9, false, 502),
        (1, true, 200),
    ] {
        let e = env();
        one_site(&e, interim_backend(interim, trickle).await);
        let p = Proxy::start(options(&e)).await.unwrap();
        let r = get(p.http_addr.unwrap(), "a.test", "/", "").await;
        assert_eq!(
            status(&r),
            want,
            "{interim} interim answers, trickled {trickle}: {r}"
        );
        if want == 200 {
            assert!(
                r.ends_with("\r\n\r\nok") && r.to_ascii_lowercase().contains("x-some: thing"),
                "{r}"
            );
        }
        p.shutdown().await;
    }
}

/// Only a WebSocket upgrade is passed on. `Upgrade: h2c` (or any other protocol) is dropped
/// and the request served as it is: a backend that switched to h2c would carry, in its
/// tunnel, requests no routing, maintenance or limit of the proxy ever sees.
#[tokio::test]
async fn only_a_websocket_upgrade_reaches_the_backend() {
    let (heads_tx, mut heads) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (addr, _) = raw_backend(move |mut s| {
        let heads_tx = heads_tx.clone();
        async move {
            while let Some(head) = next_head(&mut s, &mut Vec::new()).await {
                let _ = heads_tx.send(String::from_utf8_lossy(&head).to_ascii_lowercase());
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let e = env();
    one_site(&e, addr);
    let p = Proxy::start(options(&e)).await.unwrap();
    let http = p.http_addr.unwrap();
    let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n";
    let r = get(http, "a.test", "/", h2c).await;
    assert_eq!(status(&r), 200, "{r}");
    let head = heads.recv().await.unwrap();
    assert!(
        !head.contains("upgrade"),
        "h2c asked of the backend: {head}"
    );
    assert!(!head.contains("http2-settings"), "{head}");
    // a WebSocket's upgrade on a POST is no WebSocket either
    let ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n";
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: a.test\r\n{ws}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut r = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut r)).await;
    assert_eq!(status(&r), 200, "{r}");
    let head = heads.recv().await.unwrap();
    assert!(
        !head.contains("upgrade"),
        "a POST's upgrade asked of the backend: {head}"
    );
    p.shutdown().await;
}

/// A backend's answer in one-byte chunks reaches the client in a few large ones: each chunk
/// forwarded as its own frame cost a frame per byte (on HTTP/2, 9 bytes of frame head and
/// an entry in h2's queue each), CPU and memory a tenant could spend at will.
#[tokio::test]
async fn small_chunks_from_a_backend_are_sent_on_together() {
    const CHUNKS: usize = 3000;
    let (addr, _) = raw_backend(|mut s| async move {
        if next_head(&mut s, &mut Vec::new()).await.is_none() {
            return;
        }
        let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        answer.extend_from_slice(&b"1\r\nx\r\n".repeat(CHUNKS));
        answer.extend_from_slice(b"0\r\n\r\n");
        let _ = s.write_all(&answer).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let e = env();
    one_site(&e, addr);
    let p = Proxy::start(options(&e)).await.unwrap();
    let r = get(p.http_addr.unwrap(), "a.test", "/", "").await;
    assert_eq!(status(&r), 200, "{r}");
    let (_, body) = r.split_once("\r\n\r\n").unwrap();
    // the body as the client got it: chunk-size lines and data
    let mut sizes = Vec::new();
    let mut data = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            break;
        }
        sizes.push(n);
        data.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    assert_eq!(data, "x".repeat(CHUNKS), "the body changed");
    assert!(
        sizes.len() <= 10,
        "{} chunks sent for {CHUNKS} bytes: {sizes:?}",
        sizes.len()
    );
    p.shutdown().await;
}

/// A bare HTTP/1.1 backend that counts its connections and answers "ok" to each request;
/// with `linger`, it closes each connection that long after its first answer, silently (no
/// `Connection: close`), as a backend's keep-alive timeout does.
async fn counting_backend(linger: Option<Duration>) -> (SocketAddr, Arc<AtomicUsize>) {
    raw_backend(move |mut s| async move {
        let mut pending = Vec::new();
        while next_head(&mut s, &mut pending).await.is_some() {
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if s.write_all(ok).await.is_err() {
                return;
            }
            if let Some(d) = linger {
                tokio::time::sleep(d).await;
                return; // dropped: closed without a word
            }
        }
    })
    .await
}

/// After a reload of the routes, an idle backend connection is not taken again: `pic2
/// apply` writes the routes once the runtimes have reloaded, and an old Apache child serves
/// its kept-alive connection to its end with the old configuration (a site just added got
/// its 404 for as long as requests kept that connection alive).
#[tokio::test]
async fn a_reload_lets_the_idle_backend_connections_go() {
    let (addr, accepted) = counting_backend(None).await;
    let e = env();
    one_site(&e, addr);
    let mut o = options(&e);
    o.workers = 1;
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    for _ in 0..3 {
        assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "kept alive");
    let reloads = p.shared.global.reloads.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await; // a new modification time
    one_site(&e, addr);
    for _ in 0..100 {
        if p.shared.global.reloads.load(Ordering::SeqCst) > reloads {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        p.shared.global.reloads.load(Ordering::SeqCst) > reloads,
        "not reloaded"
    );
    for _ in 0..3 {
        assert_eq!(status(&get(http, "a.test", "/", "").await), 200);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one new connection, kept alive"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_replaced_when_closed() {
    for (linger, expected) in [(None, 1), (Some(Duration::from_millis(20)), 10)] {
        let (addr, accepted) = counting_backend(linger).await;
        let e = env();
        one_site(&e, addr);
        let mut o = options(&e);
        o.workers = 1;
        let p = Proxy::start(o).await.unwrap();
        let http = p.http_addr.unwrap();
        for i in 0..10 {
            let r = get(http, "a.test", "/", "").await;
            assert_eq!(status(&r), 200, "request {i} (linger {linger:?}): {r}");
            assert!(r.ends_with("ok"), "{r}");
            // the backend has closed the idle connection before the next request
            tokio::time::sleep(Duration::from_millis(if linger.is_some() {
                100
            } else {
                0
            }))
            .await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            expected,
            "linger {linger:?}"
        );
        p.shutdown().await;
    }
}

#[tokio::test]
async fn forwarding_headers_of_trusted_proxies_only() {
    let b = backend().await;
    let e = env();
    let (cert, key) = self_signed(&e, "t.test");
    let none = serde_json::json!({"mode":"none"});
    let files = tls_files(&cert, &key);
    write_routes(
        &e,
        serde_json::json!({"trusted_proxies": ["127.0.0.1"], "admin_addresses": ["198.51.100.7"]}),
        vec![
            site("a.test", &["a.test"], b.addr, none),
            site("t.test", &["t.test"], b.addr, files),
        ],
    );
    let p = Proxy::start(options(&e)).await.unwrap();
    let http = p.http_addr.unwrap();
    // our load balancer (127.0.0.1) names the client; the backend is told that client
    // alone (a forged entry before it, or the balancer itself, would be believed by a
    // runtime's Apache, which trusts every private hop)
    let lb = "X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n";
    let r = get(http, "a.test", "/", lb).await;
    assert!(r.contains("x-forwarded-for: 203.0.113.9\n"), "{r}");
    assert!(r.contains("x-forwarded-proto: https\n"), "{r}");
    assert!(
        r.contains("forwarded: for=203.0.113.9;proto=https;host=a.test\n"),
        "{r}"
    );
    // TLS ended at the balancer: no redirect to https for what it says was https
    assert_eq!(status(&get(http, "t.test", "/", lb).await), 200);
    assert_eq!(status(&get(http, "t.test", "/", "").await), 308);
    // the admin check looks at the client the balancer names
    let state = e.dir.path().join("state");
    pic2_proxy::maintenance::set(&state, "a.test", true).unwrap();
    let admin = "X-Forwarded-For: 198.51.100.7\r\n";
    let r = get_until(http, "a.test", lb, 503).await;
    assert_eq!(status(&r), 503, "{r}");
    assert_eq!(status(&get(http, "a.test", "/", admin).await), 200);
    p.shutdown().await;

    // the same headers from a peer nobody trusts are replaced
    let e2 = env();
    one_site(&e2, b.addr);
    let p = Proxy::start(options(&e2)).await.unwrap();
    let r = get(p.http_addr.unwrap(), "a.test", "/", lb).await;
    assert!(r.contains("x-forwarded-for: 127.0.0.1\n"), "{r}");
    assert!(r.contains("x-forwarded-proto: http\n"), "{r}");
    p.shutdown().await;
}

/// A backend that answers every request at once with 401 and an empty body, reading only its
/// head (as an application refusing an upload before reading it), and keeps the connection.
async fn early_answer_backend() -> SocketAddr {
    let (addr, _) = raw_backend(|mut s| async move {
        if next_head(&mut s, &mut Vec::new()).await.is_none() {
            return;
        }
        let answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        if s.write_all(answer).await.is_ok() {
            tokio::time::sleep(Duration::from_secs(30)).await; // never reads the body
        }
    })
    .await;
    addr
}

/// A backend that answers a POST's head at once ("early", chunked), then reads the body:
/// whole (100 bytes), it ends the answer with "done"; cut short, it reports what it got and
/// whether its input ended (`tx`) instead.
async fn streaming_early_backend(
    tx: tokio::sync::mpsc::UnboundedSender<(usize, bool)>,
) -> SocketAddr {
    let (addr, _) = raw_backend(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut got = Vec::new();
            if next_head(&mut s, &mut got).await.is_none() {
                return;
            }
            let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nearly\r\n";
            if s.write_all(head).await.is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            while got.len() < 100 {
                match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    Ok(_) => {
                        let _ = tx.send((got.len(), true)); // its input ended
                        return;
                    }
                    Err(_) => {
                        let _ = tx.send((got.len(), false)); // left waiting
                        return;
                    }
                }
            }
            let _ = tx.send((got.len(), false));
            let _ = s.write_all(b"4\r\ndone\r\n0\r\n\r\n").await;
        }
    })
    .await;
    addr
}

/// An answer under way while its upload still comes: a slow client's waits are its own (the
/// backend, waiting for the body, is not late), and a client whose body stops gets the
/// backend's input ended rather than left waiting.
#[tokio::test]
async fn an_answer_that_starts_before_its_upload_ends() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = streaming_early_backend(tx).await;
    let e = env();
    one_site(&e, addr);
    let mut o = options(&e);
    o.timeouts.backend = Duration::from_secs(3);
    o.timeouts.body_read = Duration::from_millis(1500);
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let post = b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789";

    // 90 more bytes over 4.5 s: more than the backend timeout in all, never in one wait
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(post).await.unwrap();
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.write_all(b"0123456789").await.unwrap();
    }
    let mut got = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.recv().await, Some((100, false)));
    assert_eq!(status(&got), 200, "{got}");
    assert!(got.contains("early") && got.contains("done"), "{got}");
    assert!(got.ends_with("0\r\n\r\n"), "the answer was cut: {got}");

    // 10 bytes, then nothing: past the body read timeout the backend's input ends
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(post).await.unwrap();
    // told with the body's failure (1.5 s), not only when the answer's wait runs out (3 s)
    let told = tokio::time::timeout(Duration::from_millis(2500), rx.recv()).await;
    assert_eq!(
        told,
        Ok(Some((10, true))),
        "the backend was left waiting for the body"
    );
    drop(s);
    p.shutdown().await;
}

#[tokio::test]
async fn an_upload_answered_early_does_not_hold_the_client() {
    let addr = early_answer_backend().await;
    let e = env();
    one_site(&e, addr);
    let p = Proxy::start(options(&e)).await.unwrap();
    let http = p.http_addr.unwrap();
    // more than loopback buffers hold: the backend connection is still sending it when the
    // answer has come back, and must not wait in the pool with the client's body
    let size = 32 * 1024 * 1024;
    let mut s = TcpStream::connect(http).await.unwrap();
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let upload = tokio::spawn(async move {
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                return; // the proxy closed: fine
            }
        }
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), rd.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        read.is_ok(),
        "the client's connection was held open after its answer"
    );
    upload.abort();
    p.shutdown().await;
}

/// One scripted answer: the request path it answers, its bytes, and whether the backend
/// closes the connection after it.
type Scripted = (&'static str, &'static str, bool);

/// A backend that answers each request head with the bytes scripted for its path (404 for
/// others; an empty answer closes without a word), counts its connections and logs the paths
/// it was asked for: it writes what a real backend would not, to see what the proxy makes of
/// it. `/slow` is answered "ok" after 300 ms.
struct ScriptedBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn scripted_backend(script: &'static [Scripted]) -> ScriptedBackend {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    let (addr, accepted) = raw_backend(move |mut s| {
        let log = Arc::clone(&log);
        async move {
            let mut pending = Vec::new();
            while let Some(request) = next_head(&mut s, &mut pending).await {
                let path = String::from_utf8_lossy(&request)
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                log.lock().unwrap().push(path.clone());
                if path == "/slow" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let (answer, close) = match script.iter().find(|(p, _, _)| *p == path) {
                    Some((_, answer, close)) => (*answer, *close),
                    None if path == "/slow" => {
                        ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
                    }
                    None => ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false),
                };
                if s.write_all(answer.as_bytes()).await.is_err() || close {
                    return;
                }
            }
        }
    })
    .await;
    ScriptedBackend {
        addr,
        accepted,
        asked,
    }
}

#[tokio::test]
async fn backend_answers_of_every_framing_come_through_and_ambiguous_ones_are_refused() {
    const SCRIPT: &[Scripted] = &[
        ("/chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", false),
        ("/continue", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
        ("/head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        ("/until-close", "HTTP/1.0 200 OK\r\n\r\nhello until close", true),
        ("/both", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
        ("/extra", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged", false),
        ("/two-lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", false),
        ("/gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", false),
        ("/bad-chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", false),
        ("/short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhell", true),
    ];
    let ScriptedBackend { addr, accepted, .. } = scripted_backend(SCRIPT).await;
    let e = env();
    one_site(&e, addr);
    let mut o = options(&e);
    o.workers = 1; // one pool: the connection counts below are exact
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    let body_of = |r: &str| {
        r.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    };

    // chunks (extensions, trailers) decoded and passed on; 1xx passed over; HEAD has no
    // body whatever its length says: one connection for all, kept alive
    for _ in 0..2 {
        let r = get(http, "a.test", "/chunked", "").await;
        assert_eq!(status(&r), 200, "{r}");
        assert!(r.contains("hello") && r.contains(" world"), "{r}");
        assert!(
            r.ends_with("0\r\n\r\n"),
            "the client's chunked body ends: {r}"
        );
    }
    let r = get(http, "a.test", "/continue", "").await;
    assert_eq!((status(&r), body_of(&r).as_str()), (200, "hello"), "{r}");
    assert!(!r.contains("100 Continue"), "{r}");
    let r = raw(
        http,
        b"HEAD /head HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status(&r), body_of(&r).as_str()), (200, ""), "{r}");
    assert!(r.to_ascii_lowercase().contains("content-length: 5"), "{r}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "kept alive");

    // a body that ends when the backend closes; then one framed two ways: chunked wins, the
    // length is not passed on, and the connection is not kept
    let r = get(http, "a.test", "/until-close", "").await;
    assert!(r.contains("hello until close"), "{r}");
    let r = get(http, "a.test", "/both", "").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(
        r.contains("hello") && !r.to_ascii_lowercase().contains("content-length: 3"),
        "{r}"
    );
    // bytes after an answer's end are never read as the next answer
    let r = get(http, "a.test", "/extra", "").await;
    assert_eq!(body_of(&r), "hello", "{r}");
    let before = accepted.load(Ordering::SeqCst);
    let r = get(http, "a.test", "/continue", "").await;
    assert_eq!(
        body_of(&r),
        "hello",
        "an answer left over on the connection was served: {r}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        before + 1,
        "a fresh connection"
    );

    // framings that could be read two ways: 502, never a guess
    for path in ["/two-lengths", "/gzip"] {
        let r = get(http, "a.test", path, "").await;
        assert_eq!(status(&r), 502, "{path}: {r}");
        assert!(!r.contains("hello"), "{r}");
    }
    // a body that breaks off after its head: the client's connection is cut before its body
    // looks whole (hyper may not even have sent the head: nothing at all, then)
    for path in ["/bad-chunk", "/short"] {
        let r = get(http, "a.test", path, "").await;
        assert!([0, 200].contains(&status(&r)), "{path}: {r}");
        assert!(
            !r.ends_with("0\r\n\r\n"),
            "{path}: the body looks whole: {r}"
        );
    }
    // and the pool serves well after all that
    let r = get(http, "a.test", "/chunked", "").await;
    assert!(r.contains("hello") && r.ends_with("0\r\n\r\n"), "{r}");
    p.shutdown().await;
}

#[tokio::test]
async fn request_bodies_reach_the_backend_whole_by_length_and_in_chunks() {
    let (_e, b, p) = basic().await;
    let http = p.http_addr.unwrap();
    let chunked = "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = raw(http, chunked.as_bytes()).await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("POST /up") && r.contains("body: 11\n"), "{r}");
    let big = "z".repeat(300_000); // more than one read and one write
    let by_length = format!(
        "PUT /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    let r = raw(http, by_length.as_bytes()).await;
    assert!(r.contains("PUT /up") && r.contains("body: 300000\n"), "{r}");
    // an absolute-form target with no path reaches the backend as origin-form "/?q"
    let r = raw(
        http,
        b"GET http://a.test?x=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("GET /?x=1\n"), "{r}");
    let empty =
        "POST /empty HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let r = raw(http, empty.as_bytes()).await;
    assert!(r.contains("POST /empty") && r.contains("body: 0\n"), "{r}");
    drop(b);
    p.shutdown().await;
}

#[tokio::test]
async fn a_request_the_backend_drops_unanswered_is_sent_again_once_only() {
    const SCRIPT: &[Scripted] = &[("/crash", "", true)];
    let b = scripted_backend(SCRIPT).await;
    let e = env();
    one_site(&e, b.addr);
    let mut o = options(&e);
    o.workers = 1;
    let p = Proxy::start(o).await.unwrap();
    let http = p.http_addr.unwrap();
    // four kept-alive connections in the pool
    let slow = (0..4).map(|_| async move { get(http, "a.test", "/slow", "").await });
    for r in all_at_once(slow).await {
        assert_eq!(status(&r), 200, "{r}");
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 4);
    // a GET that makes the backend close without answering (a worker that died): sent again
    // once, on a fresh connection, then 502 — not once per pooled connection
    let r = get(http, "a.test", "/crash", "").await;
    assert_eq!(status(&r), 502, "{r}");
    let crashes = b
        .asked
        .lock()
        .unwrap()
        .iter()
        .filter(|p| *p == "/crash")
        .count();
    assert_eq!(crashes, 2, "the backend was asked {crashes} times");
    p.shutdown().await;
}

/// A backend that answers at once with a chunked head, then echoes the request's body (of
/// the Content-Length it announced) as it reads it: full duplex, as a streaming application.
async fn echo_backend() -> SocketAddr {
    let (addr, _) = raw_backend(|mut s| async move {
        let mut body = Vec::new();
        let Some(head) = next_head(&mut s, &mut body).await else {
            return;
        };
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(answer).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 65536];
        let mut echoed = 0;
        while echoed < length {
            if body.is_empty() {
                match s.read(&mut buf).await {
                    Ok(n) if n > 0 => body.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let chunk = format!("{:x}\r\n", body.len());
            let sent = s.write_all(chunk.as_bytes()).await.is_ok()
                && s.write_all(&body).await.is_ok()
                && s.write_all(b"\r\n").await.is_ok();
            if !sent {
                return;
            }
            echoed += body.len();
            body.clear();
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    })
    .await;
    addr
}

#[tokio::test]
async fn a_backend_answering_while_it_reads_the_upload_gets_all_of_it() {
    let addr = echo_backend().await;
    let e = env();
    one_site(&e, addr);
    let p = Proxy::start(options(&e)).await.unwrap();
    let http = p.http_addr.unwrap();
    // the client sends half, waits (the backend's answer head comes back meanwhile), then
    // the rest, which must still reach the backend
    let half = "z".repeat(100_000); // not a hex digit: chunk sizes never count
    let mut s = TcpStream::connect(http).await.unwrap();
    let head = format!(
        "PUT /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        2 * half.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(half.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(half.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(read.is_ok(), "the echo never ended: {} bytes", out.len());
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "{}",
        &out[..out.len().min(200)]
    );
    let echoed = out.bytes().filter(|b| *b == b'z').count();
    assert_eq!(echoed, 2 * half.len(), "bytes echoed");
    assert!(out.ends_with("0\r\n\r\n"), "the body looks cut");
    p.shutdown().await;
}
