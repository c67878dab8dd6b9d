//! Maintenance switches: a file `maintenance/<site>` under the proxy's state folder puts the
//! site in maintenance. `pic2 site maintenance on|off` writes or removes it; the running
//! proxy sees it at once (inotify on the folder) or, failing that, within its poll interval,
//! without a reload.

use crate::Error;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The folder of the switches.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("maintenance")
}

fn check_name(site: &str) -> Result<(), Error> {
    let ok = !site.is_empty()
        && !site.starts_with('.')
        && site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("site name", site, "not a domain name"))
    }
}

/// Switches maintenance on or off for a site (its main domain).
pub fn set(state_dir: &Path, site: &str, on: bool) -> Result<(), Error> {
    check_name(site)?;
    let d = dir(state_dir);
    let path = d.join(site);
    if on {
        std::fs::create_dir_all(&d).map_err(|source| Error::Write {
            path: d.clone(),
            source,
        })?;
        std::fs::write(&path, b"on\n").map_err(|source| Error::Write { path, source })
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Write { path, source }),
        }
    }
}

/// The sites in maintenance now (an absent folder means none). Any other failure to read
/// the folder is an error, not "none": the caller keeps the switches it had, so that a site
/// in maintenance is not opened to everyone by, say, a file-descriptor shortage.
pub fn read(state_dir: &Path) -> std::io::Result<HashSet<String>> {
    let entries = match std::fs::read_dir(dir(state_dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    let mut on = HashSet::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            if check_name(&name).is_ok() {
                on.insert(name);
            }
        }
    }
    Ok(on)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn switches_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).unwrap().is_empty());
        set(d.path(), "a.test", true).unwrap();
        assert!(read(d.path()).unwrap().contains("a.test"));
        set(d.path(), "a.test", false).unwrap();
        set(d.path(), "a.test", false).unwrap();
        assert!(read(d.path()).unwrap().is_empty());
        assert!(set(d.path(), "../etc", true).is_err());
    }

    #[test]
    fn an_unreadable_folder_is_an_error_not_no_maintenance() {
        let d = tempfile::tempdir().unwrap();
        // a file where the folder should be: read_dir fails with something else than NotFound
        std::fs::write(dir(d.path()), b"").unwrap();
        assert!(read(d.path()).is_err());
    }
}
