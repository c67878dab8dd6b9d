//! The edge of pic2: the only code that talks to OpenLDAP, MariaDB and the data volume.
//!
//! Each real system has one module that *observes* it (filling `pic2_plan::Observed` in a
//! bounded number of round trips) and *applies* the typed operations of a plan. [`observe`]
//! and [`apply`] wire them together; [`Lock`] keeps two applies from interleaving;
//! [`secret`] reads the admin passwords from files and refuses world-readable ones.

mod apply;
mod credentials;
mod docker;
mod error;
mod ldap;
mod lock;
mod mariadb;
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

/// How reading one system went: for `plan --json` and the benchmark.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ObserveStats {
    pub system: System,
    /// Requests sent (LDAP operations, SQL statements); filesystem calls are not counted.
    pub round_trips: u32,
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
    let timed = |system, f: &mut dyn FnMut() -> Result<(u32, usize), Error>| {
        let t = Instant::now();
        f().map(|(round_trips, objects)| ObserveStats {
            system,
            round_trips,
            elapsed: t.elapsed(),
            objects,
        })
    };
    let (directory, databases, files) = std::thread::scope(|scope| {
        let Systems {
            directory,
            databases,
            ..
        } = systems;
        let ldap = scope.spawn(move || {
            let mut out = None;
            let stats = timed(System::Directory, &mut || {
                let (d, trips) = directory.observe()?;
                let n = d.entries.len();
                out = Some(d);
                Ok((trips, n))
            });
            stats.map(|s| (out.unwrap_or_default(), s))
        });
        let sql = scope.spawn(move || {
            let mut out = None;
            let stats = timed(System::Databases, &mut || {
                let (d, trips) = databases.observe()?;
                let n = d.databases.len() + d.users.len();
                out = Some(d);
                Ok((trips, n))
            });
            stats.map(|s| (out.unwrap_or_default(), s))
        });
        let mut out = None;
        let files = timed(System::Files, &mut || {
            let f = volume::observe(inv)?;
            let n = f.paths.len();
            out = Some(f);
            Ok((0, n))
        })
        .map(|s| (out.unwrap_or_default(), s));
        (joined(ldap.join()), joined(sql.join()), files)
    });
    let (directory, directory_stats) = directory?;
    let (databases, databases_stats) = databases?;
    let (files, files_stats) = files?;
    let mut stats = vec![directory_stats, databases_stats, files_stats];
    let containers = match &systems.docker {
        Some(engine) => {
            let t = Instant::now();
            let (containers, trips) = engine.observe()?;
            stats.push(ObserveStats {
                system: System::Containers,
                round_trips: trips,
                elapsed: t.elapsed(),
                objects: containers.containers.len()
                    + containers.images.len()
                    + containers.networks.len(),
            });
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
