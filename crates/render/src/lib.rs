//! Renderers: from a [`ValidInventory`] to what the real systems should hold.
//!
//! Everything here is pure: the desired LDAP entries ([`directory`]), databases and users
//! ([`databases`]), the data volume's layout ([`files`]), and the files a human reviews
//! (LDIF, SQL, the testers' hosts block, the cost report). The planner compares the same
//! desired state with what it observes, so what `pic2 render` shows is what `pic2 apply` makes.

pub mod containers;
pub mod cost;
pub mod databases;
pub mod directory;
pub mod files;
pub mod hosts;
pub mod ldif;
pub mod phpmyadmin;
pub mod proxy;
pub mod runtimes;
pub mod sftp;

use pic2_inventory::ValidInventory;

/// A generated file: its path relative to the output folder, and its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: String,
    pub contents: String,
}

/// Every file `pic2 render` writes.
pub fn all(inv: &ValidInventory) -> Vec<RenderedFile> {
    vec![
        RenderedFile {
            path: "directory/entries.ldif".into(),
            contents: ldif::render(inv, &directory::desired(inv)),
        },
        RenderedFile {
            path: "databases/databases.sql".into(),
            contents: databases::sql(inv),
        },
        RenderedFile {
            path: "files/layout.txt".into(),
            contents: files::describe(&files::desired(inv)),
        },
        RenderedFile {
            path: "migration/hosts".into(),
            contents: hosts::render(inv, None),
        },
        RenderedFile {
            path: "proxy/routes.json".into(),
            contents: proxy::render(inv),
        },
    ]
}

#[cfg(test)]
mod tests {
    use pic2_inventory::ValidInventory;

    pub fn demo() -> ValidInventory {
        pic2_inventory::load(
            "examples/demo.toml",
            include_str!("../../../examples/demo.toml"),
        )
        .unwrap()
    }

    pub fn document() -> ValidInventory {
        pic2_inventory::load(
            "examples/pic2.toml",
            include_str!("../../../examples/pic2.toml"),
        )
        .unwrap()
    }
}
