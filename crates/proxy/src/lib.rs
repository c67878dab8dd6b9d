//! `pic2 proxy`: the platform's reverse proxy, on hyper + rustls + tokio.
//!
//! It reads one file, the routes that `pic2 render` writes (`pic2_render::proxy::Routes`),
//! compiles it into a [`table::Table`] (host → site, redirects, limits) held behind an
//! `ArcSwap`, and serves HTTP/1.1 and HTTP/2 on a plain and a TLS listener ([`server`]).
//! HTTP/1 connections pass through a framing guard ([`guard`]) that refuses smuggling
//! shapes with 400 before hyper tidies them. Each request is routed by [`http::handle`]; TLS certificates come from files or from the
//! ACME CA ([`acme`]) and are picked by SNI ([`tls::Certs`]). A reload (SIGHUP, or a change
//! of the routes or certificate files seen by the poller) swaps the table and the
//! certificates and touches no connection, so requests in flight and WebSockets carry on.
//! Maintenance switches are files under the state folder ([`maintenance`]), seen at once
//! through inotify on their folder, and by the same poller as a fallback: no reload needed. Metrics and health are served on a private address
//! ([`metrics`]).

pub mod access_log;
pub mod acme;
pub mod backend;
mod balance;
pub mod coalesce;
mod deadline;
mod descriptors;
mod error;
pub mod guard;
pub mod http;
mod idle;
mod logged_body;
pub mod maintenance;
pub mod metrics;
pub mod net;
pub mod origin;
mod pages;
mod per_client;
pub mod privileges;
mod room;
mod send_timeout;
pub mod server;
mod stall;
pub mod table;
pub mod tls;
mod tunnel;
mod worker;

pub use error::Error;
pub use server::{hold_signals, run, serve, Options, Proxy};
