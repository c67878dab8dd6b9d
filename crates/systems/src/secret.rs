//! Admin passwords come from files, never from argv or the environment, and a file others can
//! read is refused: the secret would already be out.

use crate::Error;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn read(path: &Path) -> Result<String, Error> {
    read_checked(path, false)
}

/// A secret mounted into a container where accounts' uids and gids are the host's: a file an
/// account's uid owns, or its group may read, is that account's to read there, so it must
/// be root's and readable by root alone.
pub fn read_for_container(path: &Path) -> Result<String, Error> {
    read_checked(path, true)
}

fn read_checked(path: &Path, root_only: bool) -> Result<String, Error> {
    let err = |reason: String| Error::Secret {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(err("it is not a regular file".into()));
    }
    if meta.mode() & 0o004 != 0 {
        return Err(err(format!(
            "it is readable by every user (mode {:04o})",
            meta.mode() & 0o7777
        )));
    }
    if root_only && (meta.uid() != 0 || meta.mode() & 0o077 != 0) {
        return Err(err(format!(
            "it is mounted into the SFTP container, where accounts' ids are the host's: it must be root's and readable by root alone (owner {}, mode {:04o}); chown root: it and chmod 600 it",
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(err("it is empty".into()));
    }
    if secret.contains('\n') {
        return Err(err("it holds more than one line".into()));
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn refuses_world_readable_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "hunter2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&p).unwrap(), "hunter2");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read(&p)
            .unwrap_err()
            .to_string()
            .contains("readable by every user (mode 0644)"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("empty"));
        assert!(read(&dir.path().join("missing"))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }
}
