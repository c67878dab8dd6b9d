//! Consistency rules across the inventory, one rule per file.
//!
//! Each rule looks at a parsed [`Inventory`] and reports what it finds; all rules always run,
//! so one `pic2 check` lists every problem. Adding a rule means adding a file and a line in
//! [`RULES`].

use crate::diagnostic::Diagnostic;
use crate::model::Inventory;

mod database_owner;
mod host_roles;
mod passwd_url;
mod proxy_networks;
mod redirects;
mod references;
mod runtime_ports;
mod sftp;
mod ssh_keys;
mod uid_range;
mod unique_domains;
mod unique_uids;

/// A consistency rule.
pub(crate) type Rule = fn(&Inventory, &mut Vec<Diagnostic>);

pub(crate) const RULES: &[Rule] = &[
    references::check,
    unique_uids::check,
    uid_range::check,
    unique_domains::check,
    database_owner::check,
    host_roles::check,
    ssh_keys::check,
    redirects::check,
    runtime_ports::check,
    sftp::check,
    proxy_networks::check,
    passwd_url::check,
];
