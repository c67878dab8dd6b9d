//! Listeners, connections, reload, the poller (routes, certificates, maintenance), the ACME
//! loop, the metrics listener, and graceful shutdown.

use crate::acme::{Acme, AcmeOptions};
use crate::backend::Backends;
use crate::balance::{Balance, Handoff, Open, Placed};
use crate::guard::{Framing, Guarded};
use crate::http::{handle, Body, Client};
use crate::idle::Misbehaviour;
use crate::idle::Tracked;
use crate::metrics::Global;
use crate::send_timeout::SendTimeout;
use crate::table::{read_routes, Table};
use crate::tls::Certs;
use crate::Error;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

/// Everything the daemon takes besides its routes file.
#[derive(Clone, Debug)]
pub struct Options {
    pub routes: PathBuf,
    /// Override the routes' listeners (tests use "127.0.0.1:0"); `Some("")` disables one.
    pub listen_http: Option<String>,
    pub listen_https: Option<String>,
    pub listen_metrics: Option<String>,
    /// The public ports used in redirects when they differ from the bound ones.
    pub public_http_port: Option<u16>,
    pub public_https_port: Option<u16>,
    /// The timeouts where the routes say nothing (`crate::table::Timeouts` says what each
    /// bounds, and its defaults).
    pub timeouts: crate::table::Timeouts,
    /// Largest request head in bytes (beyond: 431, or 414 when its request line is).
    pub max_header_bytes: usize,
    /// Default body limit (a site's `max_body_mb` wins), in bytes.
    pub default_max_body: u64,
    pub max_connections: usize,
    /// Open connections one client address (an IPv6 /64) may have when the routes do not
    /// say (`[proxy] max_connections_per_client`); trusted proxies are not limited. Beyond,
    /// a connection is closed at once (counted).
    pub max_connections_per_client: usize,
    /// Serving threads, each with its own listeners and backend pool (default: one per core).
    pub workers: usize,
    /// "-" for standard output, a path, or None.
    pub access_log: Option<PathBuf>,
    pub access_log_format: crate::access_log::Format,
    /// How often routes, certificates and maintenance switches are looked at.
    pub poll_interval: Duration,
    pub acme: AcmeOptions,
    /// The user to run as once the ports are bound, when started as root
    /// ([`crate::privileges`]).
    pub run_as: Option<crate::privileges::RunAs>,
    pub shutdown_grace: Duration,
}

impl Options {
    /// What applies where the routes say nothing.
    pub fn defaults(&self) -> crate::table::Defaults {
        crate::table::Defaults {
            max_body: self.default_max_body,
            timeouts: self.timeouts,
        }
    }

    pub fn new(routes: impl Into<PathBuf>) -> Self {
        Options {
            routes: routes.into(),
            listen_http: None,
            listen_https: None,
            listen_metrics: None,
            public_http_port: None,
            public_https_port: None,
            timeouts: crate::table::Timeouts::default(),
            max_header_bytes: 16 * 1024,
            default_max_body: u64::from(pic2_render::proxy::DEFAULT_MAX_BODY_MB) * 1024 * 1024,
            max_connections: 20_000,
            max_connections_per_client: 256,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            access_log: None,
            access_log_format: crate::access_log::Format::Json,
            poll_interval: Duration::from_secs(1),
            acme: AcmeOptions::default(),
            run_as: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The files watched for a reload, with their (modified, length) when last seen.
type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

/// The (modified, length) of each file, now.
fn stamps(files: Vec<PathBuf>) -> Fingerprint {
    files
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (p, m)
        })
        .collect()
}

/// State shared by every connection.
pub struct Shared {
    pub options: Options,
    pub table: ArcSwap<Table>,
    pub maintenance: ArcSwap<HashSet<String>>,
    pub certs: Arc<Certs>,
    pub acme: Acme,
    pub global: Global,
    pub http_public_port: Option<u16>,
    pub https_public_port: Option<u16>,
    log: Option<crate::access_log::Queue>,
    fingerprint: Mutex<Fingerprint>,
    /// Held by a reload from its first read to its last store.
    reload_lock: Mutex<()>,
    /// Bumped by every reload: the workers' backend pools let their idle connections go.
    pub(crate) routes_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Held while the maintenance switches are read and stored (the poller and the watcher);
    /// it keeps the last read's error, so that a folder that stays unreadable is logged once.
    maintenance_lock: Mutex<Option<String>>,
    acme_wake: Notify,
    /// One permit per open client connection, for all workers and listeners together (an
    /// upgraded connection, a WebSocket, holds one of its own).
    connection_slots: Arc<tokio::sync::Semaphore>,
    /// The open connections, some of which are closed when every slot is taken.
    room: crate::room::Room,
    per_client: Arc<crate::per_client::PerClient>,
    pub(crate) balance: Balance,
}

/// What an open connection (or the WebSocket tunnel it became) holds: one of
/// `max_connections`, and one of its client's `max_connections_per_client` (none for a
/// trusted proxy).
#[derive(Debug)]
pub(crate) struct Slots {
    _all: tokio::sync::OwnedSemaphorePermit,
    client: Option<crate::per_client::Slot>,
}

impl Slots {
    /// The cancels its client's HTTP/2 connections may still make together (none counted for
    /// a trusted proxy: the connection gets a budget of its own).
    fn cancel_budget(&self) -> Option<Arc<crate::idle::CancelBudget>> {
        self.client
            .as_ref()
            .map(crate::per_client::Slot::cancel_budget)
    }
}

/// An HTTP/1 connection's [`Slots`], which a WebSocket upgrade on it takes over: hyper then
/// hands the connection to the tunnel, which may live for hours. They come back if the
/// backend does not switch, and the connection goes on.
#[derive(Debug)]
pub(crate) struct HeldSlots {
    slots: Mutex<Option<Slots>>,
    /// Shared with the connection's framing guard: told when the connection switches
    /// protocols, for the guard to step aside; holds the head the guard refused.
    pub(crate) guard: Arc<crate::guard::Link>,
}

impl HeldSlots {
    pub(crate) fn new(slots: Slots) -> Arc<Self> {
        Arc::new(HeldSlots {
            slots: Mutex::new(Some(slots)),
            guard: Arc::default(),
        })
    }

    /// The slots, taken from the connection.
    pub(crate) fn take(&self) -> Option<Slots> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Gives `slots` back to the connection they were taken from, if any (else they are
    /// dropped: they were taken for the upgrade alone).
    pub(crate) fn give_back(held: Option<&Self>, slots: Slots) {
        if let Some(held) = held {
            *held.slots.lock().unwrap_or_else(PoisonError::into_inner) = Some(slots);
        }
    }
}

impl Shared {
    /// Slots for a new connection or tunnel from `ip`; `None` when a limit is reached.
    pub(crate) fn take_slots(&self, ip: std::net::IpAddr) -> Option<Slots> {
        let Ok(all) = Arc::clone(&self.connection_slots).try_acquire_owned() else {
            self.global.refused_full.fetch_add(1, Relaxed);
            let closed = self.room.sweep();
            self.global.idle_reclaimed.fetch_add(closed, Relaxed);
            return None;
        };
        let client = if crate::origin::is_trusted(&self.table.load().trusted, ip) {
            None
        } else {
            let Some(slot) = self.per_client.try_take(ip) else {
                self.global.client_limit_refused.fetch_add(1, Relaxed);
                return None;
            };
            Some(slot)
        };
        Some(Slots { _all: all, client })
    }

    /// True when an access log is written.
    pub fn logs(&self) -> bool {
        self.log.is_some()
    }

    /// Queues the entry's line; a full queue drops it (counted) rather than hold the request.
    pub fn access_log(&self, entry: &crate::access_log::Entry) {
        let Some(queue) = &self.log else { return };
        if !queue.push(entry.render(self.options.access_log_format)) {
            self.global.access_log_dropped.fetch_add(1, Relaxed);
        }
    }

    fn fingerprint_of(&self, table: &Table) -> Fingerprint {
        let mut files = vec![self.options.routes.clone()];
        files.extend(crate::tls::watched_files(&table.routes));
        stamps(files)
    }

    /// Re-reads the routes and every certificate; on error the previous ones stay. One
    /// reload at a time (the poller's and SIGHUP's): an older read stored last would keep
    /// old routes under the new file's fingerprint, never read again.
    pub fn reload(&self) -> Result<(), Error> {
        let _one_at_a_time = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let res = (|| {
            // each file's stamp is taken before it is read: one that changes meanwhile is
            // read again at the next poll, rather than its old content kept under its new
            // stamp
            let mut fp = stamps(vec![self.options.routes.clone()]);
            let routes = read_routes(&self.options.routes)?;
            let old = self.table.load_full();
            let table = Table::build(routes, Some(&old), self.options.defaults())?;
            fp.extend(stamps(crate::tls::watched_files(&table.routes)));
            let (certs, errors) = crate::tls::load_all(&table.routes, &self.certs.current());
            for e in errors {
                tracing::warn!("{e} (its previous certificate, if any, is still served)");
            }
            self.certs.replace_all(certs);
            self.per_client
                .set_limit(per_client_limit(&table, &self.options));
            self.table.store(Arc::new(table));
            self.routes_generation.fetch_add(1, Relaxed);
            if let Ok(mut f) = self.fingerprint.lock() {
                *f = fp;
            }
            Ok(())
        })();
        match &res {
            Ok(()) => {
                self.global.reloads.fetch_add(1, Relaxed);
                self.acme_wake.notify_one();
            }
            Err(e) => {
                self.global.reload_failures.fetch_add(1, Relaxed);
                tracing::error!("reload refused, previous routes kept: {e}");
            }
        }
        res
    }

    fn poll(&self) {
        let table = self.table.load_full();
        let fp = self.fingerprint_of(&table);
        let changed = self.fingerprint.lock().map(|f| *f != fp).unwrap_or(false);
        if changed {
            if let Ok(mut f) = self.fingerprint.lock() {
                *f = fp; // a broken file is not retried until it changes again
            }
            let _ = self.reload();
        }
        self.refresh_maintenance();
    }

    /// Reads the maintenance switches; the lock keeps an older read from being stored last.
    fn refresh_maintenance(&self) {
        let mut last_error = self
            .maintenance_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let table = self.table.load();
        match crate::maintenance::read(Path::new(&table.routes.settings.state_dir)) {
            Ok(m) => {
                if last_error.take().is_some() {
                    tracing::info!("maintenance switches read again");
                }
                if **self.maintenance.load() != m {
                    self.maintenance.store(Arc::new(m));
                }
            }
            // the switches stay as they were: a site in maintenance stays closed
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    tracing::warn!("maintenance switches not read (kept as they were): {text}");
                    *last_error = Some(text);
                }
            }
        }
    }
}

/// The routes' per-client connection limit, or the options' default.
fn per_client_limit(table: &Table, options: &Options) -> usize {
    table
        .routes
        .settings
        .max_connections_per_client
        .map_or(options.max_connections_per_client, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        })
}

fn pick(over: &Option<String>, routes: &Option<String>) -> Option<String> {
    over.clone()
        .or_else(|| routes.clone())
        .filter(|s| !s.is_empty())
}

async fn bind(addr: &str) -> Result<TcpListener, Error> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| Error::invalid("listen address", addr, e))?;
    let sock = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    let b = |source| Error::Bind {
        addr: addr.to_owned(),
        source,
    };
    let sock = sock.map_err(b)?;
    sock.set_reuseaddr(true).map_err(b)?;
    sock.bind(sa).map_err(b)?;
    sock.listen(4096).map_err(b)
}

/// A running proxy: its bound addresses, and handles to reload and stop it.
pub struct Proxy {
    pub shared: Arc<Shared>,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    workers: Vec<crate::worker::Running>,
    /// Kept apart from `tasks`: it ends after the workers, with the last requests' lines.
    log_writer: Option<crate::access_log::Writer>,
}

impl Proxy {
    /// Reads the routes, loads the certificates, binds the listeners and starts serving.
    pub async fn start(options: Options) -> Result<Proxy, Error> {
        crate::descriptors::raise_for(options.max_connections);
        let routes = read_routes(&options.routes)?;
        let table = Table::build(routes, None, options.defaults())?;
        let settings = table.routes.settings.clone();
        let workers = options.workers.max(1);
        let bind_workers = |addr: Option<String>| match addr {
            Some(a) => crate::worker::bind_all(&a, workers).map(Some),
            None => Ok(None),
        };
        let http_l = bind_workers(pick(&options.listen_http, &settings.listen_http))?;
        let https_l = bind_workers(pick(&options.listen_https, &settings.listen_https))?;
        let metrics_l = match pick(&options.listen_metrics, &settings.metrics_listen) {
            Some(a) => Some(bind(&a).await?),
            None => None,
        };
        let first_addr = |l: &Option<Vec<std::net::TcpListener>>| {
            l.as_ref()
                .and_then(|l| l.first())
                .and_then(|l| l.local_addr().ok())
        };
        let http_addr = first_addr(&http_l);
        let https_addr = first_addr(&https_l);
        let metrics_addr = metrics_l.as_ref().and_then(|l| l.local_addr().ok());
        // root is given up here, once the ports are bound: certificates, the access log and
        // every byte from the network are read as the user
        if let Some(who) = &options.run_as {
            crate::privileges::prepare_state_dir(Path::new(&settings.state_dir), who)?;
        }
        crate::privileges::give_up_root(options.run_as.as_ref())?;

        let certs = Arc::new(Certs::default());
        let (loaded, errors) = crate::tls::load_all(&table.routes, &HashMap::new());
        for e in errors {
            tracing::warn!("{e}");
        }
        certs.replace_all(loaded);
        let mut tasks = JoinSet::new();
        let global = Global::new(workers);
        let (log, log_writer) = match &options.access_log {
            None => (None, None),
            Some(path) => {
                crate::access_log::can_open(path)?;
                let dropped = Arc::clone(&global.access_log_dropped);
                let (queue, writer) = crate::access_log::start(path.clone(), dropped);
                (Some(queue), Some(writer))
            }
        };
        let state_dir = PathBuf::from(&settings.state_dir);
        let per_client = crate::per_client::PerClient::new(per_client_limit(&table, &options));
        let (balance, inboxes) = Balance::new(workers);
        let shared = Arc::new(Shared {
            acme: Acme::new(Arc::clone(&certs), options.acme.clone()),
            http_public_port: options.public_http_port.or(http_addr.map(|a| a.port())),
            https_public_port: options.public_https_port.or(https_addr.map(|a| a.port())),
            maintenance: ArcSwap::from_pointee(crate::maintenance::read(&state_dir).map_err(
                |source| Error::Read {
                    path: crate::maintenance::dir(&state_dir),
                    source,
                },
            )?),
            table: ArcSwap::from_pointee(table),
            certs: Arc::clone(&certs),
            global,
            log,
            fingerprint: Mutex::new(Vec::new()),
            reload_lock: Mutex::new(()),
            routes_generation: Arc::default(),
            maintenance_lock: Mutex::new(None),
            acme_wake: Notify::new(),
            connection_slots: Arc::new(tokio::sync::Semaphore::new(options.max_connections)),
            room: crate::room::Room::default(),
            per_client,
            balance,
            options,
        });
        {
            let t = shared.table.load_full();
            let fp = shared.fingerprint_of(&t);
            if let Ok(mut f) = shared.fingerprint.lock() {
                *f = fp;
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let tls = Arc::new(crate::tls::server_config(certs)?);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        // worker i gets the i-th socket of each listener
        let mut http_l = http_l.into_iter().flatten();
        let mut https_l = https_l.into_iter().flatten();
        let sockets = inboxes.into_iter().map(|inbox| crate::worker::Sockets {
            http: http_l.next(),
            https: https_l.next(),
            inbox,
        });
        let mut running = Vec::with_capacity(workers);
        for (index, sockets) in sockets.enumerate() {
            running.push(crate::worker::start(
                index,
                sockets,
                acceptor.clone(),
                Arc::clone(&shared),
                stop_rx.clone(),
            )?);
        }
        if let Some(l) = metrics_l {
            tasks.spawn(metrics_loop(l, Arc::clone(&shared), stop_rx.clone()));
        }
        tasks.spawn(poll_loop(Arc::clone(&shared), stop_rx.clone()));
        tasks.spawn(watch_maintenance(Arc::clone(&shared), stop_rx.clone()));
        tasks.spawn(acme_loop(Arc::clone(&shared), stop_rx));
        Ok(Proxy {
            shared,
            http_addr,
            https_addr,
            metrics_addr,
            stop,
            tasks,
            workers: running,
            log_writer,
        })
    }

    /// What SIGHUP does: re-reads the routes and certificates (see [`Shared::reload`]) and
    /// reopens the access log, which logrotate may have moved.
    pub fn reload(&self) -> Result<(), Error> {
        self.reopen_log();
        self.shared.reload()
    }

    /// What SIGUSR1 does: the certificates waiting out a back-off are tried at once
    /// ([`Acme::retry_waiting`]), after the DNS switch of a migration.
    pub fn retry_certificates(&self) {
        self.shared.acme.retry_waiting();
        self.shared.acme_wake.notify_one();
    }

    /// Asks the access log's writer to reopen its file (logrotate moved it).
    fn reopen_log(&self) {
        if let Some(w) = &self.log_writer {
            w.reopen.notify_one();
        }
    }

    /// Stops accepting, lets requests in flight finish (up to the grace period), writes the
    /// access log out, then ends.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let grace = self.shared.options.shutdown_grace + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            for worker in self.workers.drain(..) {
                let _ = worker.done.await;
            }
        })
        .await;
        // every request has ended (or the grace has): the log's last lines are queued
        let log_task = self.log_writer.take().map(|w| {
            let _ = w.close.send(true);
            w.task
        });
        if let Some(t) = log_task {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

async fn poll_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.options.poll_interval) => {}
            _ = stop.changed() => return,
        }
        let s = Arc::clone(&shared);
        let _ = tokio::task::spawn_blocking(move || s.poll()).await;
    }
}

/// Maintenance switches seen at once: inotify on the maintenance folder (created if missing),
/// re-armed after each event and each poll interval (a folder removed and made again, a state
/// folder changed by a reload). Without inotify the poller alone sees them.
async fn watch_maintenance(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let Ok(fd) = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) else {
        tracing::warn!("inotify unavailable: maintenance switches seen by the poller only");
        return;
    };
    // `register` is the non-deprecated form but `unsafe` (forbidden here); its condition (the
    // descriptor stays open and the same while registered) holds for an `OwnedFd` we own.
    #[allow(deprecated)]
    let Ok(fd) = tokio::io::unix::AsyncFd::new(fd) else {
        return;
    };
    let flags = WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::ONLYDIR;
    let arm = || {
        let state_dir = PathBuf::from(&shared.table.load().routes.settings.state_dir);
        let dir = crate::maintenance::dir(&state_dir);
        let _ = std::fs::create_dir_all(&dir);
        // the same folder again gives the same watch: this only re-arms
        let _ = inotify::add_watch(fd.get_ref(), &dir, flags);
    };
    let mut buf = [0u8; 4096];
    loop {
        arm();
        shared.refresh_maintenance();
        tokio::select! {
            r = fd.readable() => {
                let Ok(mut ready) = r else { return };
                // the events only say "look again": drain them until the queue is empty
                while rustix::io::read(fd.get_ref(), &mut buf).is_ok_and(|n| n > 0) {}
                ready.clear_ready();
            }
            _ = tokio::time::sleep(shared.options.poll_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn acme_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let table = shared.table.load_full();
        for res in shared.acme.run_once(&table.routes).await {
            match res {
                Ok(site) => {
                    shared.global.certificates_issued.fetch_add(1, Relaxed);
                    tracing::info!(site, "certificate obtained");
                }
                Err(e) => {
                    shared.global.certificate_failures.fetch_add(1, Relaxed);
                    tracing::warn!("{e}");
                }
            }
        }
        let interval = shared
            .acme
            .options()
            .check_interval
            .min(shared.acme.options().backoff_base);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shared.acme_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// What a worker's loops share: the proxy's state, the worker's index and its backend pool.
#[derive(Clone)]
pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    pub index: usize,
    pub backends: Backends,
    pub stop: watch::Receiver<bool>,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut worker: Worker,
) {
    // every connection's task, from its TLS handshake on: shutdown waits for them
    let connections = tokio_util::task::TaskTracker::new();
    let shared = Arc::clone(&worker.shared);
    loop {
        let Some((stream, addr)) = accept_until_stop(&listener, &mut worker.stop, "accept").await
        else {
            break;
        };
        let Some(slots) = shared.take_slots(addr.ip()) else {
            drop(stream); // over the connection limit, or this client's share
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = match shared.balance.place(worker.index) {
            Placed::Here(open) => open,
            Placed::There(other, open) => {
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("a connection could not be handed over: {e}");
                        continue;
                    }
                };
                let h = Handoff {
                    stream,
                    addr,
                    tls: tls.is_some(),
                    slots,
                    open,
                };
                // refused only once that worker has stopped taking them (shutting down):
                // like a connection still in the backlog then, this one is closed
                if shared.balance.hand_over(other, h).is_ok() {
                    shared.global.connections_handed_over.fetch_add(1, Relaxed);
                }
                continue;
            }
        };
        spawn_connection(
            &connections,
            &worker,
            (stream, addr, slots, open),
            tls.clone(),
        );
    }
    drop(listener);
    finish(connections, &shared).await;
}

/// Serves the connections other workers hand over (see [`crate::balance`]).
pub(crate) async fn handoff_loop(
    mut inbox: mpsc::UnboundedReceiver<Handoff>,
    acceptor: tokio_rustls::TlsAcceptor,
    mut worker: Worker,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let h = tokio::select! {
            h = inbox.recv() => match h {
                Some(h) => h,
                None => break,
            },
            _ = worker.stop.changed() => break,
        };
        // registered with this worker's runtime from here on
        let stream = match tokio::net::TcpStream::from_std(h.stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("a connection handed over could not be served: {e}");
                continue;
            }
        };
        let tls = h.tls.then(|| acceptor.clone());
        spawn_connection(
            &connections,
            &worker,
            (stream, h.addr, h.slots, h.open),
            tls,
        );
    }
    // shutting down: the workers still accepting are refused from now on, and what they
    // handed over meanwhile is closed now rather than at the end of the grace period
    inbox.close();
    while inbox.try_recv().is_ok() {}
    finish(connections, &worker.shared).await;
}

/// A connection to serve: its stream, its client, what it holds of the limits, its count.
type Accepted = (tokio::net::TcpStream, SocketAddr, Slots, Open);

fn spawn_connection(
    connections: &tokio_util::task::TaskTracker,
    worker: &Worker,
    (stream, addr, slots, open): Accepted,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let Worker {
        shared,
        index,
        backends,
        stop,
    } = worker.clone();
    connections.spawn(async move {
        shared.global.connections_total.fetch_add(1, Relaxed);
        if let Some(c) = shared.global.worker_connections.get(index) {
            c.fetch_add(1, Relaxed);
        }
        shared.global.connections_open.fetch_add(1, Relaxed);
        serve_conn((stream, addr, slots), tls, &shared, backends, stop).await;
        shared.global.connections_open.fetch_sub(1, Relaxed);
        drop(open);
    });
}

/// Stops taking connections and waits for those open, up to the grace period.
async fn finish(connections: tokio_util::task::TaskTracker, shared: &Shared) {
    connections.close();
    let grace = shared.options.shutdown_grace;
    let _ = tokio::time::timeout(grace, connections.wait()).await;
}

/// The next connection on `listener` and its client's address (an IPv4 one as such), or
/// `None` once `stop` changes (or its sender is gone).
/// An accept error (out of file descriptors, say) is logged as `what` and waited out for
/// 50 ms rather than retried at once: a spinning loop would starve the thread's other work.
async fn accept_until_stop(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    what: &str,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                // an IPv4 client of a dual-stack listener (`[::]:80`, the default) is
                // `::ffff:a.b.c.d`: told as such to backends and to the access log, it
                // would escape fail2ban's IPv4 bans and the backends' IPv4 allow-lists
                Ok((stream, mut addr)) => {
                    addr.set_ip(addr.ip().to_canonical());
                    return Some((stream, addr));
                }
                Err(e) => {
                    tracing::warn!("{what}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return None,
        }
    }
}

/// hyper's HTTP/1 server as pic2 runs it. HTTP/1 alone: on the HTTP/2 preface (h2c with
/// prior knowledge, or after ALPN http/1.1) hyper closes the connection without an answer.
/// hyper-util's `auto` builder would serve it as HTTP/2 (its
/// `serve_connection_with_upgrades` ignores `http1_only`), without the checks an HTTP/2
/// connection gets after ALPN h2.
fn http1_builder(shared: &Shared) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    // No header timer of hyper's: it armed one, an allocation and a timer wheel insertion
    // and removal, for every request. The framing guard times each head from its first byte,
    // and `drive` closes a connection with nothing in flight and no new request for as long
    // (one timer per connection, moved on only when it fires).
    b.timer(TokioTimer::new())
        .header_read_timeout(None)
        // the guard refuses heads over the limit (414 or 431, its pages): hyper's buffer,
        // which also holds pipelined bytes, has room to spare so that its bare 431 never
        // comes first
        .max_buf_size(shared.options.max_header_bytes.max(8192) * 2)
        .max_headers(MAX_HEADERS);
    b
}

/// The most streams an HTTP/2 client may have open on a connection (nginx's default; h2's
/// 256 was twice it, each stream a backend connection).
const HTTP2_STREAMS: u32 = 128;

/// What h2 queues for one stream before it stops reading that stream's answer: a client
/// that opens its windows and then reads slowly makes h2 hold this much per stream (hyper's
/// default, 400 KB, was 100 MB a connection). An answer's read of the backend is 64 KB at
/// most, and h2 takes one more when under the mark: an answer is read on as fast.
const HTTP2_SEND_BUFFER: usize = 64 * 1024;

/// hyper's HTTP/2 server as pic2 runs it (after ALPN h2 only).
fn http2_builder(shared: &Shared) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(shared.options.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(HTTP2_STREAMS)
        .max_send_buf_size(HTTP2_SEND_BUFFER)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// One request of a connection, answered by [`handle`], in flight on the connection from
/// now to its answer's last byte: the connection's idle time counts from then (a slow
/// backend or a long download does not eat it, nor get it closed).
///
/// `handle`'s future is boxed: hyper moves it into its HTTP/1 dispatcher, or into a task
/// per HTTP/2 stream, and moving 2.9 KB cost more than one allocation (callgrind,
/// bench/proxy/instructions.sh: 30,189 -> 29,538 instructions per HTTP/1 request; HTTP/2
/// CPU per request 26.0 -> 24.5 us, medians of five alternated h2load runs).
fn in_flight(
    seen: &crate::idle::Activity,
    shared: &Arc<Shared>,
    backends: &Backends,
    client: Client,
    req: hyper::Request<hyper::body::Incoming>,
) -> impl std::future::Future<Output = Result<Response<Tracked<Body>>, Infallible>> {
    let flight = seen.begin();
    let answer = Box::pin(handle(Arc::clone(shared), backends.clone(), client, req));
    async move {
        let out = answer.await;
        out.map(|r| r.map(|body| Tracked::new(body, flight)))
    }
}

/// A connection [`drive`] can ask to finish: hyper's, for each protocol. (hyper-util's
/// `GracefulConnection`, sealed, leaves out HTTP/1 with upgrades.)
trait Graceful: std::future::Future {
    /// No new request; those in flight complete.
    fn finish(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<crate::http::BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<crate::http::BoxError>,
{
    fn finish(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<crate::http::BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<crate::http::BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn finish(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How [`drive`] saw a connection end.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Of itself, or after being asked to finish (stop, idleness).
    Served,
    /// Its HTTP/2 client misbehaved: it starved an answer, or cancelled too many requests.
    Misbehaved(Misbehaviour),
}

/// Serves `conn` to its end. On stop, or once `idle` has passed with nothing in flight and
/// no new request, it is asked to finish gracefully: no new request (HTTP/1:
/// `Connection: close`; HTTP/2: GOAWAY), those in flight complete. An HTTP/2 connection
/// one of whose answers waited `send_timeout` on its client's window is told to go away
/// too, then closed if it has not ended after one more `send_timeout`: the other streams
/// may finish meanwhile and new requests go to a new connection, but the starved answer
/// would never end by itself. One whose client cancels requests by the hundred (rapid
/// reset, see [`crate::idle::CANCELS_BURST`]) is closed at once.
async fn drive<C>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    activity: &crate::idle::Activity,
    idle: Duration,
    send_timeout: Duration,
) -> Ended
where
    C: Graceful,
{
    tokio::pin!(conn);
    let misbehaves = activity.misbehaves(send_timeout);
    tokio::pin!(misbehaves);
    let mut ended = Ended::Served;
    tokio::select! {
        // first: a connection that ends drops its streams, which would count as cancels
        biased;
        _ = conn.as_mut() => return ended,
        why = misbehaves.as_mut() => ended = Ended::Misbehaved(why),
        _ = stop.changed() => {}
        () = activity.idle_for(idle) => {}
    }
    if ended == Ended::Misbehaved(Misbehaviour::CancelFlood) {
        // closed at once: h2's graceful GOAWAY takes new streams until its client answers
        // a PING, which a client flooding with resets need never do
        return ended;
    }
    conn.as_mut().finish();
    if ended == Ended::Served {
        tokio::select! {
            biased;
            _ = conn.as_mut() => return ended,
            why = misbehaves => ended = Ended::Misbehaved(why),
        }
        if ended == Ended::Misbehaved(Misbehaviour::CancelFlood) {
            return ended;
        }
    }
    let _ = tokio::time::timeout(send_timeout, conn).await;
    ended
}

/// An HTTP/1 connection's stream behind the framing guard (smuggling shapes refused, 400).
fn guard<S>(
    stream: S,
    shared: &Arc<Shared>,
    head_timeout: Duration,
    link: Arc<crate::guard::Link>,
) -> Guarded<S> {
    let limit = shared.options.max_header_bytes.max(8192);
    let s = Arc::clone(shared);
    let on_refuse = Box::new(move || {
        s.global.bad_requests.fetch_add(1, Relaxed);
    });
    Guarded::new(
        stream,
        Framing::new(limit, MAX_HEADERS),
        head_timeout,
        on_refuse,
    )
    .linked_to(link)
}

const MAX_HEADERS: usize = 100;
// past the guard's own count it would step aside, and hyper alone would read such heads
const _: () = assert!(MAX_HEADERS <= crate::guard::HEADERS_CAP);

/// Serves a connection to its end; its `slots` are held meanwhile (on HTTP/1 by its
/// [`Client`], for a WebSocket upgrade to take over).
async fn serve_conn(
    (stream, addr, slots): (tokio::net::TcpStream, SocketAddr, Slots),
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: &Arc<Shared>,
    backends: Backends,
    mut stop: watch::Receiver<bool>,
) {
    // as the routes are now: a reload applies to the connections opened after it
    let timeouts = shared.table.load().timeouts;
    // for `Room`, which closes idle connections when every slot is taken
    let exit = crate::room::Exit::of(&stream);
    let stream = SendTimeout::new(stream, timeouts.send, exit.clone());
    match tls {
        None => {
            let client = Client::holding(addr, false, slots);
            serve_http1(stream, client, shared, backends, stop, timeouts, exit).await;
        }
        Some(acceptor) => {
            let hs = tokio::select! {
                hs = tokio::time::timeout(
                    timeouts.tls_handshake,
                    acceptor.accept(stream),
                ) => hs,
                // shutting down: a handshake not done yet is not waited for
                _ = stop.changed() => return,
            };
            let Ok(Ok(tls_stream)) = hs else {
                shared.global.tls_handshake_failures.fetch_add(1, Relaxed);
                return;
            };
            let alpn = tls_stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let sni = tls_stream.get_ref().1.server_name();
            if alpn.as_deref() == Some(crate::tls::ACME_TLS_ALPN) {
                return; // a TLS-ALPN-01 validation: the handshake was the answer
            }
            if alpn.as_deref() == Some(b"h2") {
                let client = Client::new(addr, true).with_sni(sni);
                let s = Arc::clone(shared);
                // an HTTP/2 connection answers pings for ever: its idle time is the time
                // with no stream in flight
                let activity = crate::idle::Activity::http2(slots.cancel_budget());
                let _slots = slots;
                let seen = activity.clone();
                let svc =
                    service_fn(move |req| in_flight(&seen, &s, &backends, client.clone(), req));
                // HTTP/2 only: HTTP/1 bytes sent after ALPN h2 are no HTTP/2 preface
                let b = http2_builder(shared);
                let io = crate::coalesce::Coalesced::new(tls_stream).counting(activity.clone());
                let io = TokioIo::new(io);
                let conn = b.serve_connection(io, svc);
                let _listed = shared.room.list(&activity, exit);
                let ended = drive(conn, stop, &activity, timeouts.idle, timeouts.send).await;
                let counter = match ended {
                    Ended::Served => None,
                    Ended::Misbehaved(Misbehaviour::Starved) => {
                        Some(&shared.global.http2_windows_starved)
                    }
                    Ended::Misbehaved(Misbehaviour::CancelFlood) => {
                        Some(&shared.global.http2_cancel_floods)
                    }
                };
                if let Some(c) = counter {
                    c.fetch_add(1, Relaxed);
                }
            } else {
                let client = Client::holding(addr, true, slots).with_sni(sni);
                serve_http1(tls_stream, client, shared, backends, stop, timeouts, exit).await;
            }
        }
    }
}

/// Serves an HTTP/1 connection (plain, or TLS without h2) behind the framing guard, closed
/// once it has had no request in flight and no new one for `header_read_timeout`.
async fn serve_http1<S>(
    stream: S,
    client: Client,
    shared: &Arc<Shared>,
    backends: Backends,
    stop: watch::Receiver<bool>,
    timeouts: crate::table::Timeouts,
    exit: Option<Arc<crate::room::Exit>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let link = client
        .slots
        .as_ref()
        .map(|h| Arc::clone(&h.guard))
        .unwrap_or_default();
    let s = Arc::clone(shared);
    let activity = crate::idle::Activity::new();
    let seen = activity.clone();
    let svc = service_fn(move |req| in_flight(&seen, &s, &backends, client.clone(), req));
    let guarded = guard(stream, shared, timeouts.header_read, link);
    let conn = http1_builder(shared)
        .serve_connection(TokioIo::new(guarded), svc)
        .with_upgrades();
    let _listed = shared.room.list(&activity, exit);
    // HTTP/1 answers are timed at the socket (`SendTimeout`): never starved here
    let _ = drive(conn, stop, &activity, timeouts.header_read, timeouts.send).await;
}

/// Metrics connections served at once, and the time one may take: the endpoint is for a
/// scraper or a health check on a private address, not for load.
const METRICS_CONNECTIONS: usize = 16;
const METRICS_CONNECTION_TIME: Duration = Duration::from_secs(10);

async fn metrics_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let Some((stream, _)) = accept_until_stop(&listener, &mut stop, "metrics accept").await
        else {
            return;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // dropped: too many at once
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let shared = Arc::clone(&shared);
                async move {
                    let (status, body) = match req.uri().path() {
                        "/health" => (200, "ok\n".to_owned()),
                        "/metrics" => {
                            let t = shared.table.load_full();
                            let open: Vec<usize> = shared.balance.open().collect();
                            let now = crate::tls::now_secs();
                            let certs = crate::tls::coverage(&t, &shared.certs, now);
                            let text =
                                crate::metrics::render(&shared.global, &open, &t.sites, &certs);
                            (200, text)
                        }
                        _ => (404, "not found\n".to_owned()),
                    };
                    let mut r =
                        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false) // one request per connection: the time cap never cuts a scrape
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(METRICS_CONNECTION_TIME, conn).await;
        });
    }
}

/// The signals the daemon handles whose default action would end it (logrotate's SIGHUP, an
/// admin's SIGUSR1).
fn held_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGUSR1);
    set
}

/// Holds SIGHUP and SIGUSR1 on the calling thread, and the threads it starts, until [`run`]
/// has its handlers: one sent while `pic2 proxy` starts (reading the inventory, rendering the
/// routes) then waits for them instead of ending the process. Called first thing.
pub fn hold_signals() -> Result<(), Error> {
    use nix::sys::signal::{pthread_sigmask, SigmaskHow};
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held_signals()), None).map_err(|e| Error::Setup {
        what: "signal mask",
        source: e.into(),
    })
}

/// The daemon: serves until SIGTERM or SIGINT (graceful), reloads on SIGHUP, tries the
/// certificates waiting out a back-off at once on SIGUSR1.
pub async fn run(options: Options) -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| {
        signal(k).map_err(|source| Error::Setup {
            what: "signal handler",
            source,
        })
    };
    // taken before the start: a SIGHUP or SIGUSR1 (logrotate, an admin) sent while the proxy
    // starts would otherwise end it, their default action
    let mut hup = sig(SignalKind::hangup())?;
    let mut usr1 = sig(SignalKind::user_defined1())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    // handled now: what [`hold_signals`] held is delivered (a SIGHUP held is a reload)
    let unblocked = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
        Some(&held_signals()),
        None,
    );
    if let Err(e) = unblocked {
        tracing::warn!("SIGHUP and SIGUSR1 stay held, unhandled: {e}");
    }
    let proxy = Proxy::start(options).await?;
    tracing::info!(
        http = ?proxy.http_addr,
        https = ?proxy.https_addr,
        metrics = ?proxy.metrics_addr,
        "pic2 proxy serving"
    );
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // certificates are read and parsed off this thread, which answers the
                // health checks and metrics meanwhile
                proxy.reopen_log();
                let shared = Arc::clone(&proxy.shared);
                if let Ok(Ok(())) = tokio::task::spawn_blocking(move || shared.reload()).await {
                    tracing::info!("reloaded");
                }
            }
            _ = usr1.recv() => {
                tracing::info!("certificates waiting out a back-off are tried now");
                proxy.retry_certificates();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
    proxy.shutdown().await;
    Ok(())
}

/// [`run`] on its own runtime, with logs on standard error (`RUST_LOG`-free: info level).
pub fn serve(options: Options) -> Result<(), Error> {
    // colours only on a terminal: a service manager's journal or `2>>log` gets plain text
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    // The serving happens on the workers' threads; this one runs signals, reloads, ACME, metrics.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Setup {
            what: "tokio runtime",
            source,
        })?;
    let ran = rt.block_on(run(options));
    // the access log's last write may be stuck on a stalled pipe (`-`): dropping the runtime
    // would wait for it for ever
    rt.shutdown_timeout(Duration::from_secs(2));
    ran
}
