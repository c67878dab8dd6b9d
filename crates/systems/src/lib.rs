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

/// Reads the actual state of every system.
pub fn observe(
    inv: &ValidInventory,
    systems: &mut Systems,
) -> Result<(Observed, Vec<ObserveStats>), Error> {
    let mut stats = Vec::new();
    let t = Instant::now();
    let (directory, trips) = systems.directory.observe(inv)?;
    stats.push(ObserveStats {
        system: System::Directory,
        round_trips: trips,
        elapsed: t.elapsed(),
        objects: directory.entries.len(),
    });
    let t = Instant::now();
    let (databases, trips) = systems.databases.observe()?;
    stats.push(ObserveStats {
        system: System::Databases,
        round_trips: trips,
        elapsed: t.elapsed(),
        objects: databases.databases.len() + databases.users.len(),
    });
    let t = Instant::now();
    let files = volume::observe(inv)?;
    stats.push(ObserveStats {
        system: System::Files,
        round_trips: 0,
        elapsed: t.elapsed(),
        objects: files.paths.len(),
    });
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
