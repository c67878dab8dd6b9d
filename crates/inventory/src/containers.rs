//! The `[containers]` section: pic2 runs the web runtimes on this host's Docker engine.
//! Without it, pic2 manages no container (the runtimes are then someone else's job).

use crate::diagnostic::{Code, Diagnostic};
use crate::net::ClientHost;
use crate::read::{Sink, Table};
use crate::source::{Span, Spanned};
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct ContainersConfig {
    pub span: Span,
    /// Where pic2 writes the configuration it mounts into the containers (Apache vhosts).
    pub config_dir: Spanned<PathBuf>,
    /// The runtimes' Docker network, IPv6 (`fd00:5049:4332:1::/64`): database users are
    /// granted from it, and it routes to the database host.
    pub subnet6: Option<Spanned<String>>,
    /// Memory limit of each runtime container, in MB.
    pub memory_mb: u32,
    /// Apache's per-site cap on simultaneous requests (mpm-itk `MaxClientsVHost`).
    pub max_clients_per_site: u32,
    /// The mail server PHP's mail() sends through, `host:port` (setgid helpers cannot run under
    /// no-new-privileges, so there is no local sendmail).
    pub smtp: Option<Spanned<String>>,
    /// Where the SFTP/SSH container is published (`127.0.0.1:2222`; `[::]:22` in production).
    /// Without it, no SFTP/SSH container. Needs `[directory] service_dn`.
    pub sftp_listen: Option<Spanned<std::net::SocketAddr>>,
    /// The base image of the SFTP/SSH container (OpenSSH ≥ 9.8 for per-source penalties).
    pub sftp_base_image: String,
    /// The port on 127.0.0.1 of the phpMyAdmin container (run when `[services] phpmyadmin`
    /// names its domain), for the proxy.
    pub phpmyadmin_port: u16,
    /// The day Debian's updates are taken as of (`YYYY-MM-DD`): every image installs them
    /// when it is built, and a new date rebuilds every image with that day's (and replaces
    /// the containers). Without it, images are built once and keep what they got then.
    pub updates_as_of: Option<Spanned<String>>,
}

pub(crate) fn read_containers(
    value: toml_span::Value<'_>,
    sink: &mut Sink,
) -> Option<ContainersConfig> {
    let mut t = Table::new(value, "[containers]", sink)?;
    let span = t.span;
    let config_dir = crate::model::abs_path(&mut t, "config_dir", sink);
    let subnet6 = t.opt::<Spanned<String>>("subnet6", sink).and_then(|s| {
        match ClientHost::parse(&s.value, s.span) {
            Ok(_) if s.value.contains(':') && s.value.contains('/') => Some(s),
            Ok(_) => {
                sink.push(
                    Diagnostic::new(
                        Code::InvalidAddress,
                        s.span,
                        format!("`{}` is not an IPv6 network", s.value),
                    )
                    .label("here")
                    .hint("write it like \"fd00:5049:4332:1::/64\""),
                );
                None
            }
            Err(d) => {
                sink.push(d);
                None
            }
        }
    });
    let memory_mb = t.opt::<u32>("memory_mb", sink).unwrap_or(512);
    let max_clients_per_site = t.opt::<u32>("max_clients_per_site", sink).unwrap_or(20);
    let smtp = t.opt::<Spanned<String>>("smtp", sink).and_then(|s| {
        crate::net::check_host_port(&s)
            .map(|()| s)
            .map_err(|d| sink.push(d))
            .ok()
    });
    let sftp_listen = t.opt::<Spanned<String>>("sftp_listen", sink).and_then(|l| {
        crate::net::parse_socket_addr(&l, "\"127.0.0.1:2222\" or \"[::]:22\"")
            .map_err(|d| sink.push(d))
            .ok()
    });
    let sftp_base_image = t
        .opt::<String>("sftp_base_image", sink)
        .unwrap_or_else(|| "local/debian:trixie".into());
    let phpmyadmin_port = t.opt::<u16>("phpmyadmin_port", sink).unwrap_or(8180);
    let updates_as_of = t
        .opt::<Spanned<String>>("updates_as_of", sink)
        .and_then(|d| check_date(&d).map(|()| d).map_err(|e| sink.push(e)).ok());
    t.finish(sink);
    Some(ContainersConfig {
        span,
        config_dir: config_dir?,
        subnet6,
        memory_mb,
        max_clients_per_site,
        smtp,
        sftp_listen,
        sftp_base_image,
        phpmyadmin_port,
        updates_as_of,
    })
}

/// A day, `YYYY-MM-DD` (it is written into the images' build commands).
fn check_date(d: &Spanned<String>) -> Result<(), Diagnostic> {
    let parts: Vec<&str> = d.value.split('-').collect();
    let ok = matches!(parts.as_slice(), [y, m, day]
        if y.len() == 4 && m.len() == 2 && day.len() == 2
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
            && (1..=12).contains(&m.parse::<u8>().unwrap_or(0))
            && (1..=31).contains(&day.parse::<u8>().unwrap_or(0)));
    if ok {
        Ok(())
    } else {
        Err(Diagnostic::new(
            Code::InvalidValue,
            d.span,
            format!("`{}` is not a day", d.value),
        )
        .label("here")
        .hint(
            "write it like \"2026-11-26\": bump it to rebuild the images with that day's updates",
        ))
    }
}
