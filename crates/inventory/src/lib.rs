//! The pic2 inventory: the one declarative description of a hosting platform.
//!
//! [`load`] reads a `pic2.toml` (path and text given by the caller: this crate does no I/O),
//! checks its syntax and shape into an [`Inventory`], then runs every consistency rule and
//! returns a [`ValidInventory`] — the only type the renderers and the planner accept. Every
//! problem comes back at once as [`Diagnostics`], each with a stable [`Code`], the span of the
//! offending text and a hint; spans stay in the model so later stages can point at the file too.

mod containers;
mod diagnostic;
pub mod layout;
mod model;
mod net;
mod passwd;
mod proxy;
mod read;
mod source;
mod types;
mod validate;

pub use containers::ContainersConfig;
pub use diagnostic::{nearest, Code, Diagnostic, Diagnostics, Located, Related};
pub use model::{
    Account, Database, DatabaseServer, Directory, Host, Inventory, MailingList, Platform, Pricing,
    Redirect, Resources, Role, Runtime, ServerUrl, Services, Site, Tls,
};
pub use net::{parse_network, ClientHost};
pub use passwd::PasswdConfig;
pub use proxy::{ProxyConfig, Timeout, Timeouts};
pub use source::{LineCol, SourceFile, Span, Spanned};
pub use types::{Access, AccountName, DbName, Dn, Domain, Email, Ident, PhpVersion, SshKey};

use std::collections::BTreeMap;
use std::sync::Arc;

/// The JSON Schema of `pic2.toml`, for editors (`pic2 schema`).
pub const JSON_SCHEMA: &str = include_str!("pic2.schema.json");

/// An inventory that passed every rule. Only [`load`] makes one.
#[derive(Clone, Debug)]
pub struct ValidInventory {
    inventory: Inventory,
    /// Each account's sites and databases, indexed once: the renderers ask per account, and a
    /// scan per account would make a 10,000-account plan quadratic.
    sites_by_owner: BTreeMap<AccountName, Vec<Domain>>,
    databases_by_owner: BTreeMap<AccountName, Vec<DbName>>,
}

impl std::ops::Deref for ValidInventory {
    type Target = Inventory;
    fn deref(&self) -> &Inventory {
        &self.inventory
    }
}

impl ValidInventory {
    fn new(inventory: Inventory) -> Self {
        let mut sites_by_owner: BTreeMap<AccountName, Vec<Domain>> = BTreeMap::new();
        for (domain, site) in &inventory.sites {
            sites_by_owner
                .entry(site.owner.value.clone())
                .or_default()
                .push(domain.clone());
        }
        let mut databases_by_owner: BTreeMap<AccountName, Vec<DbName>> = BTreeMap::new();
        for (name, db) in &inventory.databases {
            databases_by_owner
                .entry(db.owner.value.clone())
                .or_default()
                .push(name.clone());
        }
        ValidInventory {
            inventory,
            sites_by_owner,
            databases_by_owner,
        }
    }

    /// The sites an account owns, in domain order.
    pub fn sites_of<'a>(
        &'a self,
        account: &AccountName,
    ) -> impl Iterator<Item = (&'a Domain, &'a Site)> + 'a {
        let domains = self
            .sites_by_owner
            .get(account)
            .map_or(&[][..], Vec::as_slice);
        domains
            .iter()
            .filter_map(|d| self.inventory.sites.get_key_value(d))
    }

    /// The databases an account owns, in name order.
    pub fn databases_of<'a>(
        &'a self,
        account: &AccountName,
    ) -> impl Iterator<Item = &'a DbName> + 'a {
        self.databases_by_owner
            .get(account)
            .map_or(&[][..], Vec::as_slice)
            .iter()
    }
}

/// Reads and validates an inventory from its text.
pub fn load(
    path: impl Into<std::path::PathBuf>,
    text: impl Into<String>,
) -> Result<ValidInventory, Diagnostics> {
    let source = Arc::new(SourceFile::new(path, text));
    let mut diagnostics = Vec::new();
    let read = model::read(source.clone(), &mut diagnostics);
    let Some(inventory) = read.inventory else {
        return Err(Diagnostics {
            file: source,
            diagnostics,
        });
    };
    // The rules run even after reading errors, so one check lists everything; an entry that
    // failed to read is left out of the model, and references to it are not reported again.
    let mut found = Vec::new();
    for rule in validate::RULES {
        rule(&inventory, &mut found);
    }
    found.retain(|d| !d.follows_from(&read.broken));
    diagnostics.extend(found);
    if diagnostics.is_empty() {
        Ok(ValidInventory::new(inventory))
    } else {
        diagnostics.sort_by_key(|d| d.span.start);
        Err(Diagnostics {
            file: source,
            diagnostics,
        })
    }
}

impl ValidInventory {
    /// The host that runs the given role; validation guarantees there is one for the
    /// database, directory and web roles.
    pub fn host_with(&self, role: Role) -> Option<(&Ident, &Host)> {
        self.hosts.iter().find(|(_, h)| h.has_role(role))
    }

    /// Where database clients connect from: `[database] clients`, else every web host's address.
    pub fn database_clients(&self) -> Vec<ClientHost> {
        if !self.database.clients.is_empty() {
            return self
                .database
                .clients
                .iter()
                .map(|c| c.value.clone())
                .collect();
        }
        let mut out: Vec<ClientHost> = self
            .hosts
            .values()
            .filter(|h| h.has_role(Role::Web))
            .map(|h| ClientHost::from_ip(h.address.value))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every domain a site answers on, site name first.
    pub fn site_domains<'a>(
        &'a self,
        site: (&'a Domain, &'a Site),
    ) -> impl Iterator<Item = &'a Domain> {
        std::iter::once(site.0).chain(site.1.aliases.iter().map(|a| &a.value))
    }
}

#[cfg(test)]
mod tests;
