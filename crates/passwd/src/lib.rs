//! `pic2 passwd`: the password self-service web application of a pic2 platform.
//!
//! Users change their password (bound as themselves, through the Password Modify extended
//! operation so the directory hashes it), get a single-use reset link by mail when they forgot
//! it, and manage their SSH public keys. [`app`] builds the axum [`Router`] from an
//! [`AppState`] (configuration, [`ldap::Directory`], [`mail::Mailer`], the in-memory
//! [`store`] of reset tokens and sessions, the [`limiter`]s); [`serve`] runs it until a
//! shutdown signal; [`run`] does both on its own runtime for the `pic2` binary, its address
//! bound first, as root if need be, and root then given up for `--user`'s user.
//!
//! Safety rules the code keeps: every form carries an anti-CSRF value checked by
//! [`web::CheckedForm`]; sign-in failures are limited per address and per account with
//! back-off and answered after the same minimum time whether or not the account exists; the
//! forgotten-password answer is the same page at once for every name (the work happens
//! after, in a task); reset tokens are kept hashed, expire after 30 minutes, work once; the
//! privileged bind happens only inside the reset flow, one operation per bind, its password
//! read from its file each time; logs name the account, the address and the event, never a
//! password, a token or a link.

pub mod config;
mod handlers;
pub mod i18n;
pub mod ldap;
pub mod limiter;
pub mod mail;
pub mod pages;
pub mod policy;
pub mod store;
pub mod web;

pub use config::Config;

use crate::i18n::Lang;
use crate::web::Ctx;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// The application's shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub dir: ldap::Directory,
    pub mailer: mail::Mailer,
    pub tokens: store::ResetTokens,
    pub sessions: store::Sessions,
    /// Failed sign-ins and bad reset links, per client address.
    pub by_address: limiter::Limiter,
    /// Failed sign-ins, per account name (existing or not).
    pub by_account: limiter::Limiter,
    /// Reset requests per address; reset mails per account asked from one address, and per
    /// account in all. Per account alone, anyone could ask for a member's three mails, then
    /// one an hour, and the member never got one.
    pub forgot_by_address: limiter::Limiter,
    pub mail_by_account_and_address: limiter::Limiter,
    pub mail_by_account: limiter::Limiter,
    pub strength_by_address: limiter::Limiter,
    /// Signs the anti-CSRF values; random at each start.
    pub csrf_key: [u8; 32],
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config) -> Self {
        let free = config.free_failures;
        let base = Duration::from_secs(2);
        AppState(Arc::new(Inner {
            dir: ldap::Directory::new(&config),
            mailer: mail::Mailer::new(&config),
            tokens: store::ResetTokens::new(config.reset_ttl),
            sessions: store::Sessions::new(config.session_ttl),
            by_address: limiter::Limiter::new(free.saturating_mul(4), base),
            by_account: limiter::Limiter::new(free, base),
            forgot_by_address: limiter::Limiter::new(10, Duration::from_secs(60)),
            // three mails at once (a check passes the free ones and the one that blocks)
            mail_by_account_and_address: limiter::Limiter::new(2, Duration::from_secs(600)),
            // against mail bombing from many addresses: ten at once, then fewer, whoever asks
            mail_by_account: limiter::Limiter::new(9, Duration::from_secs(600)),
            strength_by_address: limiter::Limiter::new(600, Duration::from_secs(1)),
            csrf_key: rand::random(),
            config,
        }))
    }

    pub fn page<'a>(&'a self, ctx: &'a Ctx) -> pages::Page<'a> {
        pages::Page {
            lang: ctx.lang,
            csrf: &ctx.csrf_field,
            min_length: self.config.min_length,
        }
    }

    /// One audit line per change or failed attempt: event, account, address — nothing else.
    fn audit(&self, event: &str, account: &str, ctx: &Ctx) {
        self.audit_with(event, account, ctx, "");
    }

    fn audit_with(&self, event: &str, account: &str, ctx: &Ctx, detail: &str) {
        // Only names of pic2's syntax reach the log, so a crafted name cannot forge lines.
        let account = if policy::valid_account_name(account) {
            account
        } else {
            "(invalid name)"
        };
        tracing::info!(target: "audit", event, account, address = %ctx.addr, detail);
    }

    /// The "your password was changed" mail, sent after the answer.
    fn notify_changed(&self, lang: Lang, account: &str, mail: Option<String>, ctx: &Ctx) {
        let Some(to) = mail else { return };
        let t = lang.t();
        let body = t
            .mail_changed_body
            .replace("{account}", account)
            .replace("{platform}", &self.config.platform_name)
            .replace("{address}", &ctx.addr.to_string())
            .replace("{url}", &self.config.public_url);
        let mailer = self.mailer.clone();
        let account = account.to_string();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&to, t.mail_changed_subject, body).await {
                tracing::warn!(account, cause = %e, "could not send the change notification");
            }
        });
    }

    /// The forgotten-password work, after the answer: look-up (privileged, one search), token,
    /// mail. Unknown names, accounts without mail and accounts over their mail limit end here
    /// silently (the audit line says which).
    async fn send_reset_link(&self, lang: Lang, account: String, ctx: &Ctx) {
        if !policy::valid_account_name(&account) {
            self.audit("reset-requested-unknown", &account, ctx);
            return;
        }
        let key = account.to_lowercase();
        let pair = format!("{key}|{}", limiter::address_key(ctx.addr));
        // counted as they are checked, under each table's lock: asks sent at once cannot
        // pass together
        if self.mail_by_account_and_address.attempt(&pair).is_err() {
            self.audit("reset-requested-throttled", &account, ctx);
            return;
        }
        if self.mail_by_account.attempt(&key).is_err() {
            self.mail_by_account_and_address.refund(&pair);
            self.audit("reset-requested-throttled", &account, ctx);
            return;
        }
        let person = match self.dir.lookup_for_reset(&account).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.audit("reset-requested-unknown", &account, ctx);
                return;
            }
            Err(e) => {
                tracing::error!(account, cause = %e, "reset look-up failed");
                return;
            }
        };
        let Some(to) = person.mail.clone() else {
            self.audit("reset-requested-no-mail", &account, ctx);
            return;
        };
        let link = store::ResetLink {
            account: account.clone(),
            full_name: person.full_name,
            mail: person.mail,
        };
        let Some(token) = self.tokens.issue(link) else {
            tracing::error!(account, "reset token table full");
            return;
        };
        let t = lang.t();
        let url = format!("{}/reset?token={token}", self.config.public_url);
        let body = t
            .mail_reset_body
            .replace("{account}", &account)
            .replace("{platform}", &self.config.platform_name)
            .replace("{link}", &url);
        match self.mailer.send(&to, t.mail_reset_subject, body).await {
            Ok(()) => self.audit("reset-link-sent", &account, ctx),
            Err(e) => tracing::error!(account, cause = %e, "could not send the reset link"),
        }
    }
}

/// Every route, with the context and security middleware around them.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(handlers::home))
        .route(
            "/password",
            get(handlers::change_form).post(handlers::change),
        )
        .route("/forgot", get(handlers::forgot_form).post(handlers::forgot))
        .route("/reset", get(handlers::reset_form).post(handlers::reset))
        .route("/keys", get(handlers::keys))
        .route("/keys/signin", post(handlers::keys_signin))
        .route("/keys/add", post(handlers::keys_add))
        .route("/keys/remove", post(handlers::keys_remove))
        .route("/keys/signout", post(handlers::keys_signout))
        .route("/strength", post(handlers::strength))
        .route("/static/style.css", get(handlers::style))
        .route("/static/strength.js", get(handlers::script))
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::context,
        ))
        .with_state(state)
}

/// Serves until `shutdown` completes, then lets requests in flight finish (up to 10 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let server = tokio::spawn(async move { server.await });
    let _ = rx.changed().await;
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => {
            tracing::warn!(
                "requests still running 10 s after the shutdown signal: stopping anyway"
            );
            Ok(())
        }
    }
}

/// Ends at SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The `pic2 passwd` entry point: logs to stderr, binds `[passwd] listen`, then, started as
/// root, runs as `run_as` for good (`pic2_systems::privileges`; without one, a warning in
/// the log) and checks it can read the bind password file, before a runtime thread exists
/// or a byte is read from the network; serves on two worker threads until SIGTERM.
pub fn run(config: Config, run_as: Option<RunAs>) -> std::io::Result<()> {
    // colours only on a terminal: a service manager's journal or `2>>log` gets plain text
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
    let listener = listen(config.listen)?;
    pic2_systems::privileges::give_up_root(run_as.as_ref(), DAEMON)
        .map_err(std::io::Error::other)?;
    can_read_password_file(&config, run_as.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(listen = %config.listen, public_url = %config.public_url, "pic2 passwd listening");
        serve(listener, AppState::new(config), shutdown_signal()).await
    })
}

pub use pic2_systems::privileges::RunAs;

/// The command named in the messages of `pic2_systems::privileges` (`pic2 passwd`, its
/// own user `pic2-passwd`).
pub const DAEMON: &str = "passwd";

/// A listening socket on `addr` (non-blocking, for tokio; the backlog tokio's `bind` gives).
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let failed = |e: rustix::io::Errno| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
    };
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let socket =
        rustix::net::socket_with(family, SocketType::STREAM, flags, None).map_err(failed)?;
    sockopt::set_socket_reuseaddr(&socket, true).map_err(failed)?;
    rustix::net::bind(&socket, &addr).map_err(failed)?;
    rustix::net::listen(&socket, 1024).map_err(failed)?;
    Ok(std::net::TcpListener::from(socket))
}

/// The bind password file is read at each privileged bind, as the user the application
/// runs as: checked once at start, so that a file it cannot read stops it now, naming the
/// file and the fix, rather than every reset later. (The pages, styles and word lists are
/// in the binary: it reads no other file.)
fn can_read_password_file(config: &Config, run_as: Option<&RunAs>) -> std::io::Result<()> {
    let path = &config.admin_password_file;
    let Err(e) = pic2_systems::secret::read(path).map(zeroize::Zeroizing::new) else {
        return Ok(());
    };
    let fix = match run_as {
        Some(who) => format!(
            "pic2 passwd runs as {name} (uid {uid}): let its group read the file, and nobody else (`chgrp {group} {file}; chmod 640 {file}`; the folders above it must let {name} through)",
            name = who.name,
            uid = who.uid,
            group = who.group,
            file = path.display()
        ),
        None => "write the password alone in the file, readable by the user pic2 passwd runs as and by nobody else".to_owned(),
    };
    Err(std::io::Error::other(format!(
        "the password of [passwd] bind_dn cannot be read: {e}; {fix}"
    )))
}
