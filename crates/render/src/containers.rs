//! The Docker objects an inventory with `[containers]` calls for: one network, one image per
//! distinct runtime Dockerfile, one container per runtime.
//!
//! Each container is confined as measured in DESIGN.md: every capability dropped but the four
//! mpm-itk needs (SETUID, SETGID to take the site owner's ids; DAC_READ_SEARCH so root can
//! reach owner-only folders to open logs and check paths; SYS_NICE, asked for by mpm-itk in the
//! same call) and KILL (so `docker stop` ends the children at once); `no-new-privileges`, without
//! which mpm-itk's seccomp filter — the one enforcing LimitUIDRange — is silently not installed;
//! a read-only root file system; its port published on 127.0.0.1 only, for the proxy.

use crate::runtimes::{self, ImageContext, CONFIG_MOUNT, CONTAINER_PORT};
use pic2_inventory::ValidInventory;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The labels that mark what pic2 owns on the Docker engine.
pub const LABEL_PLATFORM: &str = "org.pic2.platform";
pub const LABEL_RUNTIME: &str = "org.pic2.runtime";
/// A hash of the container's whole specification: a different one means "recreate".
pub const LABEL_SPEC: &str = "org.pic2.spec";

pub const CAPABILITIES: &[&str] = &["SETUID", "SETGID", "DAC_READ_SEARCH", "SYS_NICE", "KILL"];
/// Writable places Apache needs, as memory file systems over the read-only root.
/// Root's (0755, not a memory file system's default 1777): a site's PHP has only its own
/// `tmp`, and no business with Apache's run, lock and log folders.
pub const TMPFS: &[&str] = &[
    "/run:mode=0755",
    "/tmp",
    "/var/lock:mode=0755",
    "/var/log/apache2:mode=0755",
];

/// How every image begins its build: Debian's updates on top of the base image (built once,
/// by debootstrap, and kept), as of `[containers] updates_as_of` when set. The date is in
/// the command itself, so that Docker's build cache cannot answer for an older day.
pub fn updates(inv: &ValidInventory) -> String {
    let day = inv
        .containers
        .as_ref()
        .and_then(|c| c.updates_as_of.as_ref())
        .map_or(String::new(), |d| {
            format!("echo 'Debian updates as of {}' && ", d.value)
        });
    format!("{day}apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y upgrade")
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DesiredNetwork {
    pub name: String,
    pub subnet6: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// A published port: `host_ip:host_port` → the container's `container_port`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PortMap {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DesiredContainer {
    pub name: String,
    /// What it runs, for people: `runtime itk82`, `sftp`, `phpmyadmin`.
    pub role: String,
    pub image: String,
    pub network: String,
    pub ports: Vec<PortMap>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// Memory, swap included (none beyond it: a site swapping slows every other).
    pub memory_mb: u32,
    /// Processes and threads at most: a fork bomb or a runaway `exec` from one site's PHP
    /// stops there, not at the host's limit (on a 1-CPU server, everything else with it).
    pub pids_limit: u32,
    pub labels: BTreeMap<String, String>,
    /// Added to `--cap-drop ALL`.
    pub capabilities: Vec<String>,
    pub read_only: bool,
    /// Writable memory file systems over a read-only root: a path, optionally followed by
    /// `:` and mount options (`/var/lib/x:uid=33,gid=33,mode=0750`).
    pub tmpfs: Vec<String>,
    /// The health check command (`CMD` form); empty for none.
    pub healthcheck: Vec<String>,
    /// Configuration files on the host whose change calls for `reload` rather than a restart.
    pub config_files: Vec<String>,
    /// The graceful reload command, run inside.
    pub reload: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredContainers {
    pub network: DesiredNetwork,
    pub images: Vec<ImageContext>,
    pub containers: Vec<DesiredContainer>,
}

pub fn network_name(inv: &ValidInventory) -> String {
    format!("pic2-{}", inv.platform.name)
}

pub fn container_name(inv: &ValidInventory, runtime: &str) -> String {
    format!("pic2-{}-{runtime}", inv.platform.name)
}

/// `None` when the inventory has no `[containers]`: pic2 then manages no container.
pub fn desired(inv: &ValidInventory) -> Option<DesiredContainers> {
    let config = inv.containers.as_ref()?;
    let platform = inv.platform.name.to_string();
    let network = DesiredNetwork {
        name: network_name(inv),
        subnet6: config.subnet6.as_ref().map(|s| s.value.clone()),
        labels: BTreeMap::from([(LABEL_PLATFORM.to_string(), platform.clone())]),
    };
    let mut images: Vec<ImageContext> = Vec::new();
    let mut containers = Vec::new();
    let (idle, _) = inv.directory.uid_range.value;
    let data_dir = inv.platform.data_dir.value.display().to_string();
    for (name, runtime) in &inv.runtimes {
        let image = runtimes::image(runtime, &updates(inv));
        let (Some(port), Some(conf_dir)) =
            (inv.runtime_port(name), runtimes::config_dir(inv, name))
        else {
            continue;
        };
        let mut c = DesiredContainer {
            name: container_name(inv, name.as_str()),
            role: format!("runtime {name}"),
            image: image.tag.clone(),
            network: network.name.clone(),
            ports: vec![PortMap {
                host_ip: "127.0.0.1".into(),
                host_port: port,
                container_port: CONTAINER_PORT,
            }],
            env: vec![
                ("PIC2_IDLE_UID".into(), idle.to_string()),
                ("PIC2_IDLE_GID".into(), idle.to_string()),
            ],
            mounts: vec![
                // The data volume at the same path as on the host, so paths agree everywhere.
                Mount {
                    source: data_dir.clone(),
                    target: data_dir.clone(),
                    read_only: false,
                },
                Mount {
                    source: conf_dir.display().to_string(),
                    target: CONFIG_MOUNT.into(),
                    read_only: true,
                },
            ],
            memory_mb: config.memory_mb,
            // Apache's prefork default is 150 workers, each maybe running a command
            pids_limit: 1024,
            labels: BTreeMap::from([
                (LABEL_PLATFORM.to_string(), platform.clone()),
                (LABEL_RUNTIME.to_string(), name.to_string()),
            ]),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            read_only: true,
            tmpfs: TMPFS.iter().map(|t| t.to_string()).collect(),
            healthcheck: [
                "curl",
                "-fsS",
                "-o",
                "/dev/null",
                "-H",
                "Host: pic2-default",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("http://127.0.0.1:{CONTAINER_PORT}/health")])
            .collect(),
            config_files: vec![conf_dir.join("runtime.conf").display().to_string()],
            // Checks the configuration first: a broken one is refused, the running one serves on.
            reload: vec!["apache2ctl".into(), "graceful".into()],
        };
        seal(&mut c);
        containers.push(c);
        if !images.iter().any(|i| i.tag == image.tag) {
            images.push(image);
        }
    }
    if let Some(sftp) = sftp_container(inv, &network.name) {
        images.extend(crate::sftp::image(inv));
        containers.push(sftp);
    }
    if let Some(pma) = phpmyadmin_container(inv, &network.name) {
        images.extend(crate::phpmyadmin::image(inv));
        containers.push(pma);
    }
    Some(DesiredContainers {
        network,
        images,
        containers,
    })
}

/// The SFTP/SSH container, when `[containers] sftp_listen` is set: OpenSSH needs SETUID and
/// SETGID (to become the user), SYS_CHROOT (the SFTP chroot), CHOWN and AUDIT_WRITE (terminal
/// sessions of SSH accounts), KILL (a clean stop).
fn sftp_container(inv: &ValidInventory, network: &str) -> Option<DesiredContainer> {
    let config = inv.containers.as_ref()?;
    let listen = config.sftp_listen.as_ref()?;
    let image = crate::sftp::image(inv)?;
    let secret = inv.directory.service_password_file.as_ref()?;
    let data_dir = inv.platform.data_dir.value.display().to_string();
    let mut c = DesiredContainer {
        name: container_name(inv, "sftp"),
        role: "SFTP/SSH".into(),
        image: image.tag,
        network: network.to_string(),
        ports: vec![PortMap {
            host_ip: listen.value.ip().to_string(),
            host_port: listen.value.port(),
            container_port: crate::sftp::CONTAINER_PORT,
        }],
        // sshd and nslcd read their settings once: a change of them is a new container.
        env: vec![("PIC2_CONFIG_HASH".into(), {
            let text = [
                crate::sftp::sshd_config(inv),
                crate::sftp::nslcd_conf(inv),
                crate::sftp::keys_env(inv),
            ]
            .concat();
            Sha256::digest(text.as_bytes())
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect()
        })],
        mounts: vec![
            Mount {
                source: data_dir.clone(),
                target: data_dir,
                read_only: false,
            },
            Mount {
                source: crate::sftp::config_dir(inv)?.display().to_string(),
                target: CONFIG_MOUNT.into(),
                read_only: true,
            },
            Mount {
                source: crate::sftp::host_keys_dir(inv)?.display().to_string(),
                target: crate::sftp::HOST_KEYS.into(),
                read_only: false,
            },
            Mount {
                source: secret.value.display().to_string(),
                target: crate::sftp::SECRET.into(),
                read_only: true,
            },
        ],
        memory_mb: 128,
        // an sshd and its sftp-server per session, nslcd, and what SSH members run (a
        // composer or node build counts its threads)
        pids_limit: 512,
        labels: BTreeMap::from([(LABEL_PLATFORM.to_string(), inv.platform.name.to_string())]),
        capabilities: [
            "SETUID",
            "SETGID",
            "SYS_CHROOT",
            "CHOWN",
            "AUDIT_WRITE",
            "KILL",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect(),
        read_only: true,
        tmpfs: vec!["/run".into(), "/tmp".into()],
        healthcheck: vec![
            "ssh-keyscan".into(),
            "-T".into(),
            "3".into(),
            "-p".into(),
            crate::sftp::CONTAINER_PORT.to_string(),
            "127.0.0.1".into(),
        ],
        config_files: vec![],
        reload: vec![],
    };
    seal(&mut c);
    Some(c)
}

/// phpMyAdmin, when `[services] phpmyadmin` names its domain: Apache drops to www-data (SETUID,
/// SETGID), the start script hands it its temporary folder (CHOWN), KILL for a clean stop.
fn phpmyadmin_container(inv: &ValidInventory, network: &str) -> Option<DesiredContainer> {
    let config = inv.containers.as_ref()?;
    let image = crate::phpmyadmin::image(inv)?;
    let conf_dir = crate::phpmyadmin::config_dir(inv)?;
    let mut c = DesiredContainer {
        name: container_name(inv, "phpmyadmin"),
        role: "phpMyAdmin".into(),
        image: image.tag,
        network: network.to_string(),
        ports: vec![PortMap {
            host_ip: "127.0.0.1".into(),
            host_port: config.phpmyadmin_port,
            container_port: crate::phpmyadmin::CONTAINER_PORT,
        }],
        env: vec![],
        mounts: vec![
            Mount {
                source: conf_dir.display().to_string(),
                target: CONFIG_MOUNT.into(),
                read_only: true,
            },
            Mount {
                source: conf_dir.join("pic2.php").display().to_string(),
                target: crate::phpmyadmin::SETTINGS_MOUNT.into(),
                read_only: true,
            },
        ],
        // an import (up to PHPMYADMIN_MAX_BODY_MB) lands in a memory file system, counted here
        memory_mb: 256,
        pids_limit: 256,
        labels: BTreeMap::from([(LABEL_PLATFORM.to_string(), inv.platform.name.to_string())]),
        capabilities: ["SETUID", "SETGID", "CHOWN", "KILL"]
            .iter()
            .map(|c| c.to_string())
            .collect(),
        read_only: true,
        tmpfs: vec![
            "/run".into(),
            "/tmp".into(),
            "/var/lock".into(),
            "/var/log/apache2".into(),
            "/var/lib/phpmyadmin/tmp:uid=33,gid=33,mode=0750".into(),
            "/var/lib/php/sessions:uid=33,gid=33,mode=0700".into(),
            "/var/lib/phpmyadmin/secret".into(),
        ],
        healthcheck: vec![
            "curl".into(),
            "-fsS".into(),
            "-o".into(),
            "/dev/null".into(),
            format!("http://127.0.0.1:{}/", crate::phpmyadmin::CONTAINER_PORT),
        ],
        config_files: vec![
            conf_dir.join("phpmyadmin.conf").display().to_string(),
            conf_dir.join("pic2.php").display().to_string(),
        ],
        reload: vec!["apache2ctl".into(), "graceful".into()],
    };
    seal(&mut c);
    Some(c)
}

/// Labels the container with a hash of its whole specification: everything that, changed,
/// needs a new container (not its configuration files: those reload).
pub fn seal(c: &mut DesiredContainer) {
    c.labels.remove(LABEL_SPEC);
    let spec = spec_hash(c);
    c.labels.insert(LABEL_SPEC.into(), spec);
}

fn spec_hash(c: &DesiredContainer) -> String {
    let text = serde_json::to_string(c).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new `updates_as_of` day gives every image a new build command, hence a new tag
    /// (and the containers a new spec), and one Docker's build cache cannot answer.
    #[test]
    fn a_new_updates_day_rebuilds_every_image() {
        let before = desired(&crate::tests::demo()).unwrap();
        let text = include_str!("../../../examples/demo.toml").replace(
            "[containers]\n",
            "[containers]\nupdates_as_of = \"2026-11-26\"\n",
        );
        let inv = pic2_inventory::load("demo.toml", &text).unwrap();
        let after = desired(&inv).unwrap();
        assert_eq!(before.images.len(), after.images.len());
        for (b, a) in before.images.iter().zip(&after.images) {
            assert_ne!(b.tag, a.tag);
            let dockerfile = &a.files[0].1;
            assert!(
                dockerfile.contains("echo 'Debian updates as of 2026-11-26' && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y upgrade"),
                "{dockerfile}"
            );
        }
    }

    #[test]
    fn no_containers_section_no_containers() {
        assert!(desired(&crate::tests::document()).is_some());
        let demo = crate::tests::demo();
        let d = desired(&demo).unwrap();
        assert_eq!(d.containers.len(), 4, "two runtimes, SFTP, phpMyAdmin");
        assert_eq!(d.images.len(), 4, "two PHP versions, SFTP, phpMyAdmin");
        let c = &d.containers[0];
        assert_eq!(c.name, "pic2-demo-itk82");
        assert_eq!(c.ports[0].host_port, 8100);
        assert!(c.labels.contains_key(LABEL_SPEC));
    }
}
