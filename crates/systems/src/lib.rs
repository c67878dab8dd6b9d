//! The edge of pic2: the only code that talks to OpenLDAP, MariaDB and the data volume.
//!
//! Each real system has one module that *observes* it (filling `pic2_plan::Observed` in a
//! bounded number of round trips) and *applies* the typed operations of a plan. [`observe`]
//! and [`apply`] wire them together; [`Lock`] keeps two applies from interleaving;
//! [`secret`] reads the admin passwords from files and refuses world-readable ones;
//! [`privileges`] is how the daemons (`pic2 proxy`, `pic2 passwd`) give root up.

mod apply;
mod credentials;
mod docker;
mod error;
mod ldap;
mod lock;
mod mariadb;
pub mod privileges;
pub mod secret;
mod volume;

pub use apply::{apply, ApplyEvent};
pub use docker::Engine;
pub use error::Error;
pub use ldap::{set_password, Directory};
pub use lock::Lock;
pub use mariadb::Databases;

use pic2_inventory::ValidInventory;
use pic2_plan::{Observed, System};
use std::time::{Duration, Instant};

fn milliseconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// How reading one system went: for `plan --json` and the benchmark.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ObserveStats {
    pub system: System,
    /// Requests sent (LDAP operations, SQL statements); filesystem calls are not counted.
    pub round_trips: u32,
    /// In `--json`: `elapsed_ms`, a number of milliseconds (not serde's `{secs, nanos}`).
    #[serde(rename = "elapsed_ms", serialize_with = "milliseconds")]
    pub elapsed: Duration,
    /// Objects read.
    pub objects: usize,
}

/// Open connections to the systems, reused from observe to apply.
pub struct Systems {
    pub directory: Directory,
    pub databases: Databases,
    /// Only when the inventory has `[containers]`.
    pub docker: Option<Engine>,
}

impl Systems {
    /// Connects and binds to both servers with the admin secrets of the inventory.
    pub fn connect(inv: &ValidInventory) -> Result<Self, Error> {
        Ok(Systems {
            directory: Directory::connect(inv)?,
            databases: Databases::connect(inv)?,
            docker: inv
                .containers
                .as_ref()
                .map(|_| Engine::connect())
                .transpose()?,
        })
    }
}

fn joined<T>(r: std::thread::Result<Result<T, Error>>) -> Result<T, Error> {
    r.unwrap_or_else(|_| {
        Err(Error::Io {
            path: "observe".into(),
            message: "an observer thread panicked".into(),
        })
    })
}

/// Reads the actual state of every system.
pub fn observe(
    inv: &ValidInventory,
    systems: &mut Systems,
) -> Result<(Observed, Vec<ObserveStats>), Error> {
    // The three reads wait on different things (slapd, MariaDB, the disk): run them at once.
    let Systems {
        directory,
        databases,
        docker,
    } = systems;
    let (directory, databases, files) = std::thread::scope(|scope| {
        let ldap = scope.spawn(move || {
            timed(
                System::Directory,
                || directory.observe(),
                |d| d.entries.len(),
            )
        });
        let sql = scope.spawn(move || {
            timed(
                System::Databases,
                || databases.observe(),
                |d| d.databases.len() + d.users.len(),
            )
        });
        let files = timed(
            System::Files,
            || Ok((volume::observe(inv)?, 0)),
            |f| f.paths.len(),
        );
        (joined(ldap.join()), joined(sql.join()), files)
    });
    let ((directory, directory_stats), (databases, databases_stats), (files, files_stats)) =
        (directory?, databases?, files?);
    let mut stats = vec![directory_stats, databases_stats, files_stats];
    let containers = match docker {
        Some(engine) => {
            refuse_exposed_mounted_secrets(inv)?;
            let (containers, s) = timed(
                System::Containers,
                || engine.observe(),
                |c| c.containers.len() + c.images.len() + c.networks.len(),
            )?;
            stats.push(s);
            containers
        }
        None => Default::default(),
    };
    Ok((
        Observed {
            directory,
            databases,
            files,
            containers,
        },
        stats,
    ))
}

/// The directory's service password is mounted into the SFTP container, where SSH accounts
/// have a shell: a file others may read there is refused, as the admin secrets are, before
/// a container is made to show it.
fn refuse_exposed_mounted_secrets(inv: &ValidInventory) -> Result<(), Error> {
    let sftp = inv
        .containers
        .as_ref()
        .is_some_and(|c| c.sftp_listen.is_some());
    match &inv.directory.service_password_file {
        Some(file) if sftp => secret::read_for_container(&file.value).map(drop),
        _ => Ok(()),
    }
}

/// Runs one observer, which returns the state and its round trips, and times it.
fn timed<T>(
    system: System,
    observe: impl FnOnce() -> Result<(T, u32), Error>,
    objects: impl Fn(&T) -> usize,
) -> Result<(T, ObserveStats), Error> {
    let t = Instant::now();
    let (state, round_trips) = observe()?;
    let stats = ObserveStats {
        system,
        round_trips,
        elapsed: t.elapsed(),
        objects: objects(&state),
    };
    Ok((state, stats))
}
