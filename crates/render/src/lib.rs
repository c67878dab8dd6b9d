//! Renderers: from a [`ValidInventory`] to what the real systems should hold.
//!
//! Everything here is pure: the desired LDAP entries ([`directory`]), databases and users
//! ([`databases`]), the data volume's layout ([`files`]), and the files a human reviews
//! (LDIF, SQL, the testers' hosts block, the cost report). The planner compares the same
//! desired state with what it observes, so what `pic2 render` shows is what `pic2 apply` makes.

pub mod compose;
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
    /// Unix permission bits (0o755 for the scripts images copy).
    pub mode: u32,
}

/// Every file `pic2 render` writes.
pub fn all(inv: &ValidInventory) -> Vec<RenderedFile> {
    let mut files = vec![
        RenderedFile {
            path: "directory/entries.ldif".into(),
            contents: ldif::render(inv, &directory::desired(inv)),
            mode: 0o644,
        },
        RenderedFile {
            path: "databases/databases.sql".into(),
            contents: databases::sql(inv),
            mode: 0o644,
        },
        RenderedFile {
            path: "files/layout.txt".into(),
            contents: files::describe(&files::desired(inv)),
            mode: 0o644,
        },
        RenderedFile {
            path: "migration/hosts".into(),
            contents: hosts::render(inv, None),
            mode: 0o644,
        },
        RenderedFile {
            path: "proxy/routes.json".into(),
            contents: proxy::render(inv),
            mode: 0o644,
        },
    ];
    if let Some(d) = containers::desired(inv) {
        files.push(RenderedFile {
            path: "containers/compose.yaml".into(),
            contents: compose::render(&d),
            mode: 0o644,
        });
        for image in &d.images {
            let dir = image.tag.split(':').next().unwrap_or("").replace('/', "-");
            for (name, contents, mode) in &image.files {
                files.push(RenderedFile {
                    path: format!("images/{dir}/{name}"),
                    contents: contents.clone(),
                    mode: *mode,
                });
            }
        }
        for f in files::desired(inv)
            .into_iter()
            .filter(|f| f.kind == files::PathKind::File)
        {
            let Some(config) = inv.containers.as_ref().map(|c| &c.config_dir.value) else {
                continue;
            };
            if let (Ok(rel), Some(contents)) = (f.path.strip_prefix(config), f.contents) {
                files.push(RenderedFile {
                    path: format!("config/{}", rel.display()),
                    contents,
                    mode: f.mode,
                });
            }
        }
    }
    files
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
