//! The plan's vocabulary: typed operations, changes, conflicts, held-back deletions.

use pic2_inventory::ClientHost;
use pic2_render::containers::{DesiredContainer, DesiredNetwork};
use pic2_render::runtimes::ImageContext;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Directory,
    Files,
    Databases,
    Containers,
}

impl System {
    pub const ALL: [System; 4] = [
        System::Directory,
        System::Files,
        System::Databases,
        System::Containers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            System::Directory => "directory",
            System::Files => "files",
            System::Databases => "databases",
            System::Containers => "containers",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Create,
    Update,
    Delete,
}

/// When a change runs. Creations go parents first and before what depends on them (an
/// account before its home, a home before the credentials file in it); deletions of data last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Pruned accounts, then their groups, so a renamed account frees its uid first.
    DirectoryDeletes,
    DirectoryContainers,
    DirectoryGroups,
    DirectoryAccounts,
    /// The files inside an account's folders re-owned after its uid (gid) changed: before the
    /// folders themselves are (in `AfterReloads`, after a second walk), since a folder still
    /// owned by the old id is what tells the next plan that its walk is not done (an apply
    /// stopped midway is resumed, not forgotten).
    FileOwners,
    Folders,
    Databases,
    DatabaseUsers,
    Grants,
    Images,
    Networks,
    Containers,
    /// Graceful reloads, once the new configuration is written.
    Reloads,
    /// Files written once the reloads are done: the proxy's routes (the runtimes serve what
    /// they lead to by then), and the stamps of the configuration each container loaded.
    /// After a uid change, the second walk of each of the account's folders (its PHP ran as
    /// the old uid until now), then the folder's own owner.
    AfterReloads,
    ContainerDeletes,
    /// Users go before their database.
    DatabaseUserDeletes,
    DatabaseDeletes,
    FolderDeletes,
}

/// Where a database's credentials go; `apply` fills in the password.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CredentialsTarget {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub database: String,
    /// The database server as the sites reach it.
    pub server_host: String,
    pub server_port: u16,
}

/// Values of one attribute to take out and put in (see [`Op::LdapModify`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ValueEdit {
    pub attr: String,
    pub delete: Vec<String>,
    pub add: Vec<String>,
}

/// One operation on one system, exact enough that the dry run says precisely what will happen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    LdapAdd {
        dn: String,
        attrs: Vec<(String, Vec<String>)>,
    },
    /// Replaces each listed attribute's values (an empty list removes the attribute).
    LdapModify {
        dn: String,
        replace: Vec<(String, Vec<String>)>,
        /// Values taken out and put in, for an attribute shared with someone else (the
        /// member's SSH keys): in the same request as `replace`, so that the server refuses
        /// the whole change if a value to take out is gone meanwhile, rather than undo what
        /// was done between the plan and the apply.
        edit: Vec<ValueEdit>,
    },
    LdapDelete {
        dn: String,
    },
    CreateDir {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    SetOwnerMode {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    WriteFile {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
        contents: String,
    },
    RemoveTree {
        path: PathBuf,
    },
    /// Renames the entry at `path` (a folder or a special file an account put where pic2
    /// writes a file of its own) to `to`, beside it: under the folder's descriptor, the entry
    /// itself never followed nor read, nothing replaced (`RENAME_NOREPLACE`; while that name
    /// is taken, `-2`, `-3`, then a tag of chance appended to `to`) and nothing deleted. Gone
    /// already: done.
    MoveAside {
        path: PathBuf,
        to: PathBuf,
    },
    /// Walks the entries below `path` (not `path` itself: a `SetOwnerMode` after it sets it)
    /// and gives `to_uid` to those whose uid is `from_uid`, `to_gid` to those whose gid is
    /// `from_gid` (an id equal on both sides is left as it is); entries of other owners are
    /// left alone. Links are re-owned themselves, never followed; the walk stays on the
    /// folder's mount. What `usermod -u` does in a home.
    ReownFiles {
        path: PathBuf,
        from_uid: u32,
        to_uid: u32,
        from_gid: u32,
        to_gid: u32,
    },
    CreateDatabase {
        name: String,
        comment: String,
    },
    SetDatabaseComment {
        name: String,
        comment: String,
    },
    /// Creates the user on `create_on`; with `new_password`, sets a fresh password on every
    /// host and writes the credentials file, otherwise reuses the one in the file.
    EnsureUser {
        user: String,
        create_on: Vec<ClientHost>,
        all_hosts: Vec<ClientHost>,
        new_password: bool,
        /// Rewrite the file with the password it holds (its other settings changed).
        rewrite: bool,
        credentials: CredentialsTarget,
    },
    Grant {
        database: String,
        user: String,
        host: ClientHost,
    },
    /// `ALTER USER … WITH MAX_USER_CONNECTIONS max`.
    LimitConnections {
        user: String,
        host: ClientHost,
        max: u32,
    },
    /// `REVOKE ALL ON pattern.*`, the pattern as `mysql.db` holds it.
    RevokePattern {
        pattern: String,
        user: String,
        host: String,
    },
    DropUser {
        user: String,
        host: String,
    },
    DropDatabase {
        name: String,
    },
    BuildImage {
        image: ImageContext,
    },
    CreateNetwork {
        network: DesiredNetwork,
    },
    /// Creates and starts.
    CreateContainer {
        container: DesiredContainer,
    },
    /// Stops and removes the old one, then creates and starts the new one.
    ReplaceContainer {
        container: DesiredContainer,
    },
    StartContainer {
        name: String,
    },
    /// Runs the container's graceful reload command (`apache2ctl graceful` for a runtime:
    /// checks the configuration, keeps in-flight requests).
    Reload {
        name: String,
        command: Vec<String>,
    },
    RemoveContainer {
        name: String,
    },
}

/// One change to one system, built by `Change::new`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub system: System,
    pub kind: Kind,
    pub phase: Phase,
    /// The object: a DN, a path, a database or `user@host`.
    pub subject: String,
    /// One line for the summary.
    pub summary: String,
    /// The attribute-level diff, for `--detail`.
    pub details: Vec<String>,
    /// Deletes something a user may want back: set by `Change::new` for every deletion.
    pub destructive: bool,
    pub op: Op,
}

impl Change {
    pub(crate) fn new(
        system: System,
        kind: Kind,
        phase: Phase,
        subject: impl Into<String>,
        summary: impl Into<String>,
        op: Op,
    ) -> Self {
        Change {
            system,
            kind,
            phase,
            subject: subject.into(),
            summary: summary.into(),
            details: Vec::new(),
            destructive: kind == Kind::Delete,
            op,
        }
    }

    /// The attribute-level lines `--detail` shows.
    pub(crate) fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
}

/// An object in the way that pic2 does not own: apply refuses to run while there is one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub system: System,
    pub subject: String,
    pub message: String,
    pub hint: String,
}

/// A deletion the inventory implies but the options do not allow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    pub system: System,
    pub subject: String,
    /// What it would take: `--prune` or `--prune --drop-data`.
    pub needs: &'static str,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub conflicts: Vec<Conflict>,
    pub held: Vec<Held>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Adds `other`'s changes, conflicts and holds after this plan's.
    pub(crate) fn append(&mut self, mut other: Plan) {
        self.changes.append(&mut other.changes);
        self.conflicts.append(&mut other.conflicts);
        self.held.append(&mut other.held);
    }

    /// Orders changes by phase; inside a phase, creations parents first (shorter subjects
    /// first, then by name) and deletions children first.
    pub(crate) fn sort(&mut self) {
        self.changes.sort_by(|a, b| {
            a.phase.cmp(&b.phase).then_with(|| {
                let depth = |c: &Change| c.subject.matches(['/', ',']).count();
                let by_depth = depth(a)
                    .cmp(&depth(b))
                    .then_with(|| a.subject.cmp(&b.subject));
                if a.kind == Kind::Delete {
                    by_depth.reverse()
                } else {
                    by_depth
                }
            })
        });
    }

    pub(crate) fn push(&mut self, change: Change) {
        self.changes.push(change);
    }

    pub(crate) fn conflict(
        &mut self,
        system: System,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.conflicts.push(Conflict {
            system,
            subject: subject.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    pub(crate) fn hold(&mut self, system: System, subject: impl Into<String>, needs: &'static str) {
        self.held.push(Held {
            system,
            subject: subject.into(),
            needs,
        });
    }

    /// Counts of changes of one system by kind: (create, update, delete).
    pub fn counts(&self, system: System) -> (usize, usize, usize) {
        let of = |k| {
            self.changes
                .iter()
                .filter(|c| c.system == system && c.kind == k)
                .count()
        };
        (of(Kind::Create), of(Kind::Update), of(Kind::Delete))
    }
}
