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

/// The sites in maintenance now (an absent folder means none).
pub fn read(state_dir: &Path) -> HashSet<String> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return HashSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| check_name(n).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn switches_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).is_empty());
        set(d.path(), "a.test", true).unwrap();
        assert!(read(d.path()).contains("a.test"));
        set(d.path(), "a.test", false).unwrap();
        set(d.path(), "a.test", false).unwrap();
        assert!(read(d.path()).is_empty());
        assert!(set(d.path(), "../etc", true).is_err());
    }
}
