//! What the systems hold, as read by the observers. Plain data, filled in by `pic2-systems`
//! (or by hand in tests).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub directory: ObservedDirectory,
    pub databases: ObservedDatabases,
    pub files: ObservedFiles,
    pub containers: ObservedContainers,
}

/// What the Docker engine runs that may concern pic2 (names starting with `pic2-`).
#[derive(Clone, Debug, Default)]
pub struct ObservedContainers {
    /// Network name → labels.
    pub networks: BTreeMap<String, BTreeMap<String, String>>,
    /// Network name → the subnets of its address plan (IPv4 and IPv6).
    pub network_subnets: BTreeMap<String, BTreeSet<String>>,
    /// Image tags present.
    pub images: BTreeSet<String>,
    pub containers: BTreeMap<String, ObservedContainer>,
}

#[derive(Clone, Debug, Default)]
pub struct ObservedContainer {
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub running: bool,
    /// Docker's word for it: running, exited, created, …
    pub state: String,
}

/// One LDAP entry: attribute names lowercased, values as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedEntry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl ObservedEntry {
    pub fn values(&self, attr: &str) -> &[String] {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.values("objectClass")
            .iter()
            .any(|c| c.eq_ignore_ascii_case(class))
    }
}

/// The entries under the base DN that matter to pic2: accounts, groups, containers and
/// anything carrying pic2's mark.
#[derive(Clone, Debug, Default)]
pub struct ObservedDirectory {
    pub entries: Vec<ObservedEntry>,
    /// Whether the base DN exists.
    pub base_exists: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ObservedDatabases {
    /// Every database and its comment.
    pub databases: BTreeMap<String, String>,
    /// Every user as (name, host).
    pub users: BTreeSet<(String, String)>,
    /// Each user's `max_user_connections` (0: only the server's limit).
    pub connection_limits: BTreeMap<(String, String), u32>,
    /// Database-level grants as (database, user, host) → whether every privilege is granted.
    pub grants: BTreeMap<(String, String, String), bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    /// Never followed: a link where pic2 expects a folder is a conflict.
    Symlink,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub kind: FileKind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits only (`0o755`).
    pub mode: u32,
    /// For small regular files pic2 reads (home markers): their text.
    pub contents: Option<String>,
    /// For a symbolic link: where it points, as read (never followed), for the plan to say.
    pub target: Option<PathBuf>,
}

#[derive(Clone, Debug, Default)]
pub struct ObservedFiles {
    /// Each path pic2 looked at that exists (looked up without following links).
    pub paths: HashMap<PathBuf, FileMeta>,
    /// The entry names of the folders pic2 lists (the homes folder, each account's sites).
    pub listings: BTreeMap<PathBuf, Vec<String>>,
    /// When the volume was observed, UTC, as `YYYYMMDD-HHMMSS`: what names an entry moved aside (see
    /// [`crate::Op::MoveAside`]). Read by the observer, so that the plan, which reads no
    /// clock, shows the exact name the apply uses.
    pub observed_at: String,
}
