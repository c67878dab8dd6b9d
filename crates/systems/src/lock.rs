//! One apply at a time per platform: an exclusive `flock` on a file in /run, released by the
//! kernel when the process ends, however it ends (so no stale lock after a crash).

use crate::Error;
use rustix::fs::{flock, FlockOperation};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

pub struct Lock {
    _file: std::fs::File,
    pub path: PathBuf,
}

impl Lock {
    /// Takes the lock of `platform`, or says who holds it. `PIC2_LOCK_DIR` overrides the folder.
    pub fn acquire(platform: &str) -> Result<Self, Error> {
        let dir = std::env::var_os("PIC2_LOCK_DIR")
            .map_or_else(|| PathBuf::from("/run/pic2"), PathBuf::from);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{platform}.lock"));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = if holder.trim().is_empty() {
                "unknown process".to_string()
            } else {
                holder.trim().to_string()
            };
            return Err(Error::Locked { path, holder });
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(Lock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("PIC2_LOCK_DIR", dir.path());
        let first = Lock::acquire("t").unwrap();
        let second = Lock::acquire("t");
        assert!(
            matches!(&second, Err(Error::Locked { holder, .. }) if holder == &format!("pid {}", std::process::id()))
        );
        drop(first);
        assert!(Lock::acquire("t").is_ok());
    }
}
