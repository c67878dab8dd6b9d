//! The serving threads: one per core, each with its own single-threaded runtime, its own
//! listening sockets (SO_REUSEPORT on the shared addresses: the kernel spreads connections,
//! [`crate::balance`] evens out what it spreads unevenly) and its own pool of backend
//! connections.
//!
//! Why not one multi-threaded runtime: there, hyper's client drives each backend connection
//! in a task of its own, so every request hops between two tasks and, more often than not,
//! two threads (a cross-core wake-up per request, and the work-stealing queues' atomics).
//! Here a request, its backend connection and the client connection stay on one core from
//! the first byte to the last, as in nginx's and HAProxy's workers. What the threads share
//! (routes, certificates, maintenance switches, counters) is behind `ArcSwap` and atomics.
//!
//! With more than one worker, a worker with nothing left to do yields its core before it
//! sleeps (`sched_yield`, tokio's park hook). If a client or a backend is ready to run on
//! that core, it runs first, and what it writes is often there when the worker looks for
//! I/O: the worker goes on instead of sleeping and being woken, perhaps on another core.
//! Measured on two cores (1 KB over HTTP/1.1, wrk, pic2 with and without, 13 alternated
//! rounds): more req/s in 12 (-7 to +20 %), a lower p99 in 9; on HTTP/2 over TLS level or
//! better (+0.4, +5 %). On one core it cost up to 15 % (the yield is one more switch there,
//! with no other core to avoid): a single worker never yields.

use crate::balance::Handoff;
use crate::server::{accept_loop, handoff_loop, Shared, Worker};
use crate::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// The listening sockets of one worker, before its runtime registers them, and its inbox
/// of connections other workers hand over.
pub(crate) struct Sockets {
    pub http: Option<std::net::TcpListener>,
    pub https: Option<std::net::TcpListener>,
    pub inbox: mpsc::UnboundedReceiver<Handoff>,
}

/// Binds `workers` sockets on `addr` with SO_REUSEPORT. The first one resolves a port 0; the
/// others take the port it got, so every worker listens on the same address.
pub(crate) fn bind_all(addr: &str, workers: usize) -> Result<Vec<std::net::TcpListener>, Error> {
    let wanted: SocketAddr = addr
        .parse()
        .map_err(|e| Error::invalid("listen address", addr, e))?;
    if wanted.port() != 0 {
        // SO_REUSEPORT would let a second proxy (same user) share the port silently, each
        // getting half the connections: a plain bind first says the port is taken
        refuse_if_taken(wanted, addr)?;
    }
    let first = bind(wanted, addr)?;
    let actual = first.local_addr().map_err(|source| Error::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(bind(actual, addr)?);
    }
    Ok(all)
}

/// Fails if something listens on `sa` already (the probe socket is closed at once).
fn refuse_if_taken(sa: SocketAddr, shown: &str) -> Result<(), Error> {
    socket(sa, shown)?.bind(sa).map_err(bind_error(shown))
}

/// A socket for `sa`'s family, with SO_REUSEADDR (a restart binds past TIME_WAIT).
fn socket(sa: SocketAddr, shown: &str) -> Result<tokio::net::TcpSocket, Error> {
    let b = bind_error(shown);
    let sock = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(&b)?;
    sock.set_reuseaddr(true).map_err(b)?;
    Ok(sock)
}

fn bind_error(shown: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Bind {
        addr: shown.to_owned(),
        source,
    }
}

fn bind(sa: SocketAddr, shown: &str) -> Result<std::net::TcpListener, Error> {
    let b = bind_error(shown);
    let sock = socket(sa, shown)?;
    sock.set_reuseport(true).map_err(&b)?;
    sock.bind(sa).map_err(&b)?;
    // `listen` registers the socket with the caller's runtime: take it back out, the
    // worker's own runtime registers it again.
    sock.listen(4096).map_err(&b)?.into_std().map_err(b)
}

/// A started worker thread: resolves when it has finished (graceful shutdown done).
pub(crate) struct Running {
    pub done: oneshot::Receiver<()>,
}

/// Starts one worker thread serving `sockets` until `stop` turns true (or its sender goes).
pub(crate) fn start(
    index: usize,
    sockets: Sockets,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<Running, Error> {
    let spawn_err = |source| Error::Bind {
        addr: format!("worker thread {index}"),
        source,
    };
    let mut builder = tokio::runtime::Builder::new_current_thread();
    if shared.options.workers > 1 {
        builder.on_thread_park(std::thread::yield_now);
    }
    let runtime = builder.enable_all().build().map_err(spawn_err)?;
    let (finished, done) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("pic2-proxy-{index}"))
        .spawn(move || {
            runtime.block_on(serve(index, sockets, acceptor, shared, stop));
            // the connections still open after the grace end here, before the proxy is told
            // the worker is done: their answers' bodies, dropped, queue their log lines
            // while the log's writer still takes them
            runtime.shutdown_timeout(Duration::from_secs(1));
            let _ = finished.send(());
        })
        .map_err(spawn_err)?;
    Ok(Running { done })
}

async fn serve(
    index: usize,
    sockets: Sockets,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let backends = crate::backend::Backends::following(Arc::clone(&shared.routes_generation));
    let worker = Worker {
        shared,
        index,
        backends: backends.clone(),
        stop: stop.clone(),
    };
    let mut loops = JoinSet::new();
    loops.spawn(handoff_loop(
        sockets.inbox,
        acceptor.clone(),
        worker.clone(),
    ));
    let listeners = [(sockets.http, None), (sockets.https, Some(acceptor))];
    for (socket, tls) in listeners {
        let Some(socket) = socket else { continue };
        match tokio::net::TcpListener::from_std(socket) {
            Ok(l) => {
                loops.spawn(accept_loop(l, tls, worker.clone()));
            }
            Err(e) => tracing::error!("a worker cannot listen: {e}"),
        }
    }
    let sweeper = tokio::spawn(sweep(backends, stop));
    while loops.join_next().await.is_some() {}
    sweeper.abort();
}

/// Closes the backend connections left idle too long.
async fn sweep(backends: crate::backend::Backends, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::backend::SWEEP_INTERVAL) => backends.sweep(),
            _ = stop.changed() => return,
        }
    }
}
