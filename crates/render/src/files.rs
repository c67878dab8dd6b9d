//! The data volume's layout: every folder and file pic2 makes, with owner and mode.
//!
//! ```text
//! {data_dir}/                        root:root 0755
//!   home/                            root:root 0755
//!     NAME/                          root:root 0755   the SFTP chroot (OpenSSH wants it root's)
//!       .pic2-home                   root:root 0644   the mark: this home is pic2's
//!       private/                     NAME:NAME 0700   credentials, outside every document root
//!         mariadb-DB.cnf             NAME:NAME 0600   written by apply with the password
//!       sites/                       root:NAME 0750   root's on the way to logs/ (no link swap)
//!         DOMAIN/                    root:NAME 0750
//!           htdocs/                  NAME:NAME 0750   the document root
//!           logs/                    root:NAME 0750   Apache (root) writes, the owner reads
//!           tmp/                     NAME:NAME 0700   PHP uploads and sessions
//! {proxy.state_dir}/                 root:root 0700   with [proxy]: certificates, ACME account
//!   routes.json                      root:root 0644   what `pic2 proxy` serves (reloaded on change)
//! {containers.config_dir}/runtimes/RUNTIME/
//!   runtime.conf                     root:root 0644   the runtime's vhosts (mounted read-only)
//!   runtime.conf.loaded              root:root 0644   its hash, once the runtime has reloaded it
//! ```
//! Group and others get nothing below the home: mpm-itk serves each site as its owner, so no
//! other account (nor the web server's idle user) needs to read a site's files.

use pic2_inventory::layout::HOME_MARKER;
use pic2_inventory::ValidInventory;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    Dir,
    /// A small file whose exact contents pic2 decides (home markers, runtime configuration).
    File,
    /// Database credentials: pic2 checks it exists, `apply` writes it with the password.
    Credentials,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPath {
    pub path: PathBuf,
    pub kind: PathKind,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// For markers: the exact contents.
    pub contents: Option<String>,
    /// Written once the containers have reloaded: the proxy's routes, which a running
    /// proxy follows at once (a route must not lead to a runtime that does not serve its
    /// site yet).
    pub after_reloads: bool,
}

/// The folders whose entries pic2 lists to find homes and sites it no longer wants.
pub fn listed_dirs(inv: &ValidInventory) -> Vec<PathBuf> {
    let mut out = vec![inv.homes_dir()];
    out.extend(inv.accounts.keys().map(|a| inv.sites_dir(a)));
    out
}

pub fn home_marker(platform: &str, account: &str) -> String {
    format!("# This home is managed by pic2 (platform {platform}); do not remove this file.\nplatform={platform}\naccount={account}\n")
}

pub fn desired(inv: &ValidInventory) -> Vec<DesiredPath> {
    let dir = |path: PathBuf, uid: u32, mode: u32| DesiredPath {
        path,
        kind: PathKind::Dir,
        uid,
        gid: uid,
        mode,
        contents: None,
        after_reloads: false,
    };
    let mut out = vec![
        dir(inv.platform.data_dir.value.clone(), 0, 0o755),
        dir(inv.homes_dir(), 0, 0o755),
    ];
    for (name, account) in &inv.accounts {
        let id = account.uid.value;
        let home = inv.home_dir(name);
        out.push(dir(home.clone(), 0, 0o755));
        out.push(root_file(
            home.join(HOME_MARKER),
            home_marker(inv.platform.name.as_str(), name.as_str()),
        ));
        out.push(dir(inv.private_dir(name), id, 0o700));
        // Apache opens each site's logs as root, before it takes the owner's uid (and root
        // has no DAC_OVERRIDE in the container). So root owns every folder on the way to
        // them, the owner reading through its group: an owner able to rename `logs` could
        // put a link in its place, and Apache's root would append to, or create, files
        // anywhere root owns on the volume (another site's logs, a future home), or block
        // on a FIFO and stop every site of the runtime.
        let root_owned = |path: PathBuf| DesiredPath {
            path,
            kind: PathKind::Dir,
            uid: 0,
            gid: id,
            mode: 0o750,
            contents: None,
            after_reloads: false,
        };
        out.push(root_owned(inv.sites_dir(name)));
        for (domain, _) in inv.sites_of(name) {
            let site = inv.site_dir(name, domain);
            out.push(root_owned(site.clone()));
            out.push(dir(site.join("htdocs"), id, 0o750));
            out.push(root_owned(site.join("logs")));
            out.push(dir(site.join("tmp"), id, 0o700));
        }
        for db in inv.databases_of(name) {
            out.push(DesiredPath {
                path: inv.credentials_file(name, db),
                kind: PathKind::Credentials,
                uid: id,
                gid: id,
                mode: 0o600,
                contents: None,
                after_reloads: false,
            });
        }
    }
    if let Some(containers) = &inv.containers {
        container_config(inv, containers, &mut out);
    }
    if inv.proxy.is_some() {
        proxy_routes(inv, &mut out);
    }
    loaded_stamps(inv, &mut out);
    out
}

/// Where the stamp of the configuration `config` a container loaded is kept: beside it (a
/// runtime includes `*.conf` from that folder, not this).
pub fn loaded_stamp_path(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_owned();
    name.push(".loaded");
    PathBuf::from(name)
}

/// Beside each configuration file a container reloads, a stamp of the contents it has
/// loaded, written once the reloads are done. A plan that finds a stamp stale reloads the
/// container: a file written by an apply that stopped before the reload (an image that did
/// not build, Docker down, a reload that failed) was otherwise never loaded, and the proxy's
/// routes led to a runtime that did not serve the site.
fn loaded_stamps(inv: &ValidInventory, out: &mut Vec<DesiredPath>) {
    let reloaded: std::collections::BTreeSet<PathBuf> = crate::containers::desired(inv)
        .into_iter()
        .flat_map(|d| d.containers)
        .filter(|c| !c.reload.is_empty())
        .flat_map(|c| c.config_files.into_iter().map(PathBuf::from))
        .collect();
    let stamps: Vec<DesiredPath> = out
        .iter()
        .filter(|d| reloaded.contains(&d.path))
        .filter_map(|d| {
            let digest = Sha256::digest(d.contents.as_deref()?.as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let text = format!(
                "# Written by pic2 once its container had loaded {}: do not edit.\nsha256={hex}\n",
                d.path.display()
            );
            Some(DesiredPath {
                after_reloads: true,
                ..root_file(loaded_stamp_path(&d.path), text)
            })
        })
        .collect();
    out.extend(stamps);
}

/// The proxy's routes file, which a running `pic2 proxy` reloads when it changes: `apply`
/// writes it, so a site added or moved is served once its runtime is ready. Its folder is
/// root's to write, and readable by the proxy's own user (`--user`): the routes and the
/// maintenance flags are no secret. The certificates and the ACME account key are in its
/// `certs/` and `acme/`, the proxy's own folders (0700), which pic2 leaves as they are.
fn proxy_routes(inv: &ValidInventory, out: &mut Vec<DesiredPath>) {
    let routes = crate::proxy::routes(inv);
    let state = PathBuf::from(&routes.settings.state_dir);
    out.push(root_dir(state.clone(), 0o755));
    out.push(DesiredPath {
        after_reloads: true,
        ..root_file(
            state.join(crate::proxy::ROUTES_FILE),
            crate::proxy::text(&routes),
        )
    });
}

/// A folder only root writes.
fn root_dir(path: PathBuf, mode: u32) -> DesiredPath {
    DesiredPath {
        path,
        kind: PathKind::Dir,
        uid: 0,
        gid: 0,
        mode,
        contents: None,
        after_reloads: false,
    }
}

/// A generated file only root writes: a home's marker, configuration the containers mount.
fn root_file(path: PathBuf, contents: String) -> DesiredPath {
    DesiredPath {
        path,
        kind: PathKind::File,
        uid: 0,
        gid: 0,
        mode: 0o644,
        contents: Some(contents),
        after_reloads: false,
    }
}

/// The configuration pic2 writes for its containers under `config_dir`: each runtime's vhosts,
/// the SFTP/SSH container's settings and host-key folder, phpMyAdmin's settings.
fn container_config(
    inv: &ValidInventory,
    containers: &pic2_inventory::ContainersConfig,
    out: &mut Vec<DesiredPath>,
) {
    let base = containers.config_dir.value.clone();
    out.push(root_dir(base.clone(), 0o755));
    out.push(root_dir(base.join("runtimes"), 0o755));
    for name in inv.runtimes.keys() {
        let Some(rt_dir) = crate::runtimes::config_dir(inv, name) else {
            continue;
        };
        out.push(root_dir(rt_dir.clone(), 0o755));
        out.push(root_file(
            rt_dir.join("runtime.conf"),
            crate::runtimes::apache_conf(inv, name),
        ));
    }
    if let (Some(sftp), Some(keys), Some(_)) = (
        crate::sftp::config_dir(inv),
        crate::sftp::host_keys_dir(inv),
        containers.sftp_listen.as_ref(),
    ) {
        out.push(root_dir(sftp.clone(), 0o755));
        out.push(root_file(
            sftp.join("sshd_config"),
            crate::sftp::sshd_config(inv),
        ));
        out.push(root_file(
            sftp.join("nslcd.conf"),
            crate::sftp::nslcd_conf(inv),
        ));
        out.push(root_file(sftp.join("keys.env"), crate::sftp::keys_env(inv)));
        // The host keys: secret, kept across rebuilds, made by the container itself.
        out.push(root_dir(keys, 0o700));
    }
    if let (Some(pma), Some(_)) = (
        crate::phpmyadmin::config_dir(inv),
        inv.services.phpmyadmin.as_ref(),
    ) {
        out.push(root_dir(pma.clone(), 0o755));
        out.push(root_file(
            pma.join("phpmyadmin.conf"),
            crate::phpmyadmin::apache_conf(inv),
        ));
        out.push(root_file(
            pma.join("pic2.php"),
            crate::phpmyadmin::config_php(inv),
        ));
    }
}

/// A readable listing of the layout, for `pic2 render`.
pub fn describe(paths: &[DesiredPath]) -> String {
    let mut out =
        String::from("# The data volume as `pic2 apply` makes it: mode, owner:group, path.\n");
    for p in paths {
        let kind = match p.kind {
            PathKind::Dir => "dir ",
            PathKind::File => "file",
            PathKind::Credentials => "cred",
        };
        let _ = writeln!(
            out,
            "{kind} {:04o} {:>5}:{:<5} {}",
            p.mode,
            p.uid,
            p.gid,
            p.path.display()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_layout() {
        insta::assert_snapshot!(describe(&desired(&crate::tests::demo())));
    }

    #[test]
    fn credentials_are_outside_every_document_root() {
        let paths = desired(&crate::tests::demo());
        for cred in paths.iter().filter(|p| p.kind == PathKind::Credentials) {
            assert!(!cred.path.components().any(|c| c.as_os_str() == "htdocs"));
            assert_eq!(cred.mode, 0o600);
        }
    }
}
