//! Where things live on the data volume and in the directory, derived from the inventory.
//!
//! One place decides the paths and DNs so the renderers, the planner and the daemons agree.

use crate::types::{AccountName, DbName, Domain};
use crate::ValidInventory;
use std::path::PathBuf;

/// The shell of accounts with `access = "ssh"`, and of everyone else.
pub const SSH_SHELL: &str = "/bin/bash";
pub const NO_SHELL: &str = "/usr/sbin/nologin";
/// The file that marks a home as pic2's, root-owned, inside the home.
pub const HOME_MARKER: &str = ".pic2-home";

impl ValidInventory {
    /// `{data_dir}/home`: root-owned 0755, like every component above a chroot.
    pub fn homes_dir(&self) -> PathBuf {
        self.platform.data_dir.value.join("home")
    }

    pub fn home_dir(&self, account: &AccountName) -> PathBuf {
        self.homes_dir().join(account.as_str())
    }

    pub fn sites_dir(&self, account: &AccountName) -> PathBuf {
        self.home_dir(account).join("sites")
    }

    pub fn site_dir(&self, account: &AccountName, site: &Domain) -> PathBuf {
        self.sites_dir(account).join(site.as_str())
    }

    /// The document root of a site.
    pub fn document_root(&self, account: &AccountName, site: &Domain) -> PathBuf {
        self.site_dir(account, site).join("htdocs")
    }

    /// Owner-only files pic2 writes for the account (database credentials), outside every
    /// document root.
    pub fn private_dir(&self, account: &AccountName) -> PathBuf {
        self.home_dir(account).join("private")
    }

    /// The MariaDB client option file with a database's credentials.
    pub fn credentials_file(&self, account: &AccountName, db: &DbName) -> PathBuf {
        self.private_dir(account).join(format!("mariadb-{db}.cnf"))
    }

    /// The group whose members get a shell from the SFTP/SSH service: `<platform>-ssh`, so two
    /// platforms sharing a directory never claim the same group.
    pub fn ssh_group(&self) -> String {
        let name = format!("{}-ssh", self.platform.name);
        if name.len() <= 32 {
            name
        } else {
            "pic2-ssh".to_string()
        }
    }

    pub fn account_dn(&self, account: &AccountName) -> String {
        format!("uid={account},{}", self.directory.people_dn())
    }

    pub fn group_dn(&self, group: &str) -> String {
        format!("cn={group},{}", self.directory.groups_dn())
    }
}

impl ValidInventory {
    /// The port on 127.0.0.1 where a runtime's container listens: its `port`, else 8100 plus
    /// its rank among the runtimes in name order.
    pub fn runtime_port(&self, runtime: &crate::types::Ident) -> Option<u16> {
        let (rank, (_, r)) = self
            .runtimes
            .iter()
            .enumerate()
            .find(|(_, (n, _))| *n == runtime)?;
        Some(
            r.port
                .as_ref()
                .map_or(default_runtime_port(rank), |p| p.value),
        )
    }
}

/// The port of the runtime at `rank` in name order, when it names none.
pub fn default_runtime_port(rank: usize) -> u16 {
    u16::try_from(rank).map_or(u16::MAX, |r| 8100u16.saturating_add(r))
}
