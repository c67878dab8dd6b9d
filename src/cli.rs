//! The command line: every subcommand with its one-line purpose.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "pic2", version, about = "Plans and applies a small host's platform (OpenLDAP, MariaDB, the data volume, Docker) from one inventory", long_about = None)]
pub struct Cli {
    /// The inventory.
    #[arg(
        short,
        long,
        global = true,
        env = "PIC2_CONFIG",
        default_value = "pic2.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// Print JSON for machines instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// When to use colours.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check the inventory and report every problem with its line and column.
    Check,
    /// Write every generated file (LDIF, SQL, layout, hosts block, routes, container configuration, compose) for review.
    Render {
        /// The folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the testers' /etc/hosts block of the migration.
    Hosts {
        /// Only this site (its main domain or an alias).
        #[arg(long, value_name = "DOMAIN")]
        site: Option<String>,
    },
    /// Print the monthly and yearly cost per host, from resources and [pricing].
    Cost,
    /// Show what apply would change (exit 0: nothing, 2: changes, 1: error or conflict).
    Plan(PlanArgs),
    /// Make the real systems match the inventory, after showing the plan.
    Apply {
        #[command(flatten)]
        plan: PlanArgs,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Manage one account.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Serve the password self-service application (behind the proxy).
    Passwd {
        /// Listen here instead of `[passwd] listen`.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Started as root, run as this user once the address is bound (a system user of
        /// the application's own, e.g. `pic2-passwd`); `[passwd] bind_password_file` must
        /// be readable by its group (`chgrp pic2-passwd FILE; chmod 640 FILE`).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Serve the reverse proxy from the routes rendered from the inventory (or --routes).
    ///
    /// Signals: SIGHUP reloads the routes and certificates and reopens the access log;
    /// SIGUSR1 tries at once the certificates waiting out a back-off (after a DNS switch);
    /// SIGTERM stops it gracefully.
    Proxy(ProxyArgs),
    /// Manage one site.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Print the inventory's JSON Schema, for editors.
    Schema,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Args, Clone, Copy)]
pub struct PlanArgs {
    /// Show every change with its attribute-level diff.
    #[arg(long)]
    pub detail: bool,
    /// Also delete what pic2 manages and the inventory no longer lists (accounts, users).
    #[arg(long)]
    pub prune: bool,
    /// With --prune, also delete data: databases, homes and site folders.
    #[arg(long, requires = "prune")]
    pub drop_data: bool,
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Set an account's password (read from the terminal, or one line of stdin; never argv).
    SetPassword {
        name: String,
        /// Read the password from standard input instead of the terminal.
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(Args, Clone)]
pub struct ProxyArgs {
    /// Serve this routes file (as `pic2 render` writes it) instead of rendering the
    /// inventory's into `<state_dir>/routes.json`.
    #[arg(long, value_name = "FILE")]
    pub routes: Option<PathBuf>,
    /// Listen for HTTP here instead of `[proxy] listen_http`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen_http: Option<String>,
    /// Listen for HTTPS here instead of `[proxy] listen_https`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen_https: Option<String>,
    /// Write the access log here; `-` for standard output. Reopened on SIGHUP (logrotate's
    /// `postrotate`: `kill -HUP` the proxy).
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// The access log's lines: JSON objects, Apache's combined format (GoAccess, AWStats,
    /// fail2ban), or its vhost_combined (the combined line after `host:port`, for one log of
    /// every site: GoAccess's VCOMBINED).
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Json, requires = "access_log")]
    pub access_log_format: AccessLogFormat,
    /// Started as root, run as this user once the ports are bound (a system user of the
    /// proxy's own, e.g. `pic2-proxy`; `certs/` and `acme/` in `[proxy] state_dir` become
    /// its own).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Serving threads, each with its own listeners and backend connections [default: one
    /// per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Combined,
    VhostCombined,
}

#[derive(Subcommand)]
pub enum SiteCommand {
    /// Put a site in maintenance (503 + bilingual page; admin addresses still pass) or back.
    Maintenance {
        state: OnOff,
        /// The site's domain (or one of its aliases).
        domain: String,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}
