//! The data volume: a walk to observe, and changes that never follow a symbolic link.
//!
//! Users own folders inside their homes, so they can swap a folder for a link to `/etc` at
//! any time. Every change therefore opens its target with `openat2(RESOLVE_NO_SYMLINKS)` and
//! works on the open descriptor (`fchown`, `fchmod`, `mkdirat`, `renameat`): a link anywhere on
//! the path makes the change fail instead of landing elsewhere.

use crate::Error;
use pic2_inventory::layout::HOME_MARKER;
use pic2_inventory::ValidInventory;
use pic2_plan::{FileKind, FileMeta, ObservedFiles};
use pic2_render::files::{desired, listed_dirs, PathKind};
use rustix::fd::OwnedFd;
use rustix::fs::{
    fchmod, fchown, fsync, mkdirat, openat2, renameat, unlinkat, AtFlags, Mode, OFlags,
    ResolveFlags, CWD,
};
use rustix::process::{Gid, Uid};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The largest file pic2 reads back whose contents it cannot know beforehand (a
/// credentials file, a home's marker); a bigger one is not pic2's.
const MARKER_MAX: u64 = 1 << 20;

pub fn observe(inv: &ValidInventory) -> Result<ObservedFiles, Error> {
    let mut out = ObservedFiles::default();
    // Tens of thousands of lstat calls at 10,000 accounts: split them over two threads.
    let wanted = desired(inv);
    refuse_linked_roots(&wanted)?;
    let half = wanted.len() / 2;
    let (first, second) = wanted.split_at(half);
    let (a, b) = std::thread::scope(|scope| {
        let other = scope.spawn(|| stat_all(second));
        (stat_all(first), other.join())
    });
    out.paths = a?;
    out.paths
        .extend(b.unwrap_or_else(|_| Err(Error::io("data volume", "a walker thread panicked")))?);
    for dir in listed_dirs(inv) {
        if let Some(names) = list(&dir)? {
            out.listings.insert(dir, names);
        }
    }
    // Homes not in the inventory: read their marker, to know whether they are ours to prune.
    // Homes without a marker: list them, since an empty one is what an interrupted apply left.
    let homes = inv.homes_dir();
    let names = out.listings.get(&homes).cloned().unwrap_or_default();
    for name in names {
        let home = homes.join(&name);
        let marker = home.join(HOME_MARKER);
        if !out.paths.contains_key(&marker) {
            if let Some(meta) = lstat(&marker, Some(MARKER_MAX))? {
                out.paths.insert(marker.clone(), meta);
            }
            // whose uid its data still has, for the plan to refuse giving it to another
            let private = home.join("private");
            if let Some(meta) = lstat(&private, None)? {
                out.paths.insert(private, meta);
            }
        }
        if !out.paths.contains_key(&marker)
            && out
                .paths
                .get(&home)
                .is_some_and(|m| m.kind == FileKind::Dir)
        {
            if let Some(names) = list(&home)? {
                out.listings.insert(home, names);
            }
        }
    }
    Ok(out)
}

/// Changes follow no link anywhere on their path (`openat2` with `RESOLVE_NO_SYMLINKS`), so
/// a root reached through one (`/srv/pic2 -> /mnt/data`, a data disk mounted elsewhere)
/// would have every change on the volume refused, after the directory's and the databases'
/// were made, at every apply. Said now, before any change, with the path to write instead.
fn refuse_linked_roots(wanted: &[pic2_render::files::DesiredPath]) -> Result<(), Error> {
    // the top-most wanted paths: sorted by component, a folder's paths follow it
    let mut paths: Vec<&Path> = wanted.iter().map(|w| w.path.as_path()).collect();
    paths.sort_unstable();
    let mut roots: Vec<&Path> = Vec::new();
    for p in paths {
        if !roots.last().is_some_and(|r| p.starts_with(r)) {
            roots.push(p);
        }
    }
    for root in roots {
        // its deepest part that exists (a fresh platform has none of its folders yet)
        let Some(existing) = root.ancestors().find(|a| a.symlink_metadata().is_ok()) else {
            continue;
        };
        let real = std::fs::canonicalize(existing).map_err(|e| Error::io(existing, e))?;
        if real != existing {
            return Err(Error::io(
                root,
                format!(
                    "reached through a symbolic link ({} is {}): pic2 follows no link on the \
                     paths it changes; write the real path in the inventory",
                    existing.display(),
                    real.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Looks each wanted path up (without following links); credentials are read with their
/// password blanked, so the password never leaves this module.
fn stat_all(
    wanted: &[pic2_render::files::DesiredPath],
) -> Result<std::collections::HashMap<PathBuf, FileMeta>, Error> {
    let mut out = std::collections::HashMap::with_capacity(wanted.len());
    for want in wanted {
        // A generated file is read back only when it may be the one wanted: as long at
        // most (a runtime's vhosts pass a megabyte at some 800 sites; capped at that, they
        // were rewritten and reloaded by every apply).
        let read = match (want.kind, &want.contents) {
            (PathKind::File, Some(text)) => Some(u64::try_from(text.len()).unwrap_or(u64::MAX)),
            (PathKind::File | PathKind::Credentials, _) => Some(MARKER_MAX),
            _ => None,
        };
        if let Some(mut meta) = lstat(&want.path, read)? {
            if want.kind == PathKind::Credentials {
                meta.contents = meta
                    .contents
                    .map(|c| pic2_render::databases::redact_credentials(&c));
            }
            out.insert(want.path.clone(), meta);
        }
    }
    Ok(out)
}

/// A path's kind, owner and mode, and, for a regular file of at most `read_up_to` bytes,
/// its contents.
fn lstat(path: &Path, read_up_to: Option<u64>) -> Result<Option<FileMeta>, Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    let contents = if kind == FileKind::File && read_up_to.is_some_and(|max| meta.len() <= max) {
        read_nofollow(path).ok()
    } else {
        None
    };
    Ok(Some(FileMeta {
        kind,
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        contents,
    }))
}

fn read_nofollow(path: &Path) -> std::io::Result<String> {
    let fd = openat2(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )?;
    std::io::read_to_string(std::fs::File::from(fd))
}

fn list(dir: &Path) -> Result<Option<Vec<String>>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::NotADirectory =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(Some(names))
}

fn open_nofollow(path: &Path, flags: OFlags) -> Result<OwnedFd, Error> {
    openat2(
        CWD,
        path,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            Error::io(
                path,
                "a symbolic link is on the path: pic2 never follows links on the data volume",
            )
        } else if e == rustix::io::Errno::NOENT {
            Error::io(
                path,
                "no such file or folder (pic2 creates the data folder, not its parents)",
            )
        } else {
            Error::io(path, e)
        }
    })
}

fn parent_and_name(path: &Path) -> Result<(OwnedFd, &std::ffi::OsStr), Error> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::io(path, "has no parent folder"));
    };
    Ok((
        open_nofollow(parent, OFlags::RDONLY | OFlags::DIRECTORY)?,
        name,
    ))
}

fn own(fd: &OwnedFd, path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
    // SAFETY-free: ids come from the inventory's checked ranges or are root's.
    fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| Error::io(path, format!("chown: {e}")))?;
    fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| Error::io(path, format!("chmod: {e}")))
}

pub fn create_dir(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
    let (parent, name) = parent_and_name(path)?;
    let made = match mkdirat(&parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => true,
        Err(e) if e == rustix::io::Errno::EXIST => false,
        Err(e) => return Err(Error::io(path, format!("mkdir: {e}"))),
    };
    let fd = open_nofollow(path, OFlags::RDONLY | OFlags::DIRECTORY)?;
    // Made by another hand since the plan (an rsync of a home, say): taken over only if
    // empty, as the plan would have; else chowning it would hand its files' folder to the
    // new owner unannounced.
    if !made {
        // read through the descriptor just opened without following links, not the path
        let mut dir = rustix::fs::Dir::read_from(&fd).map_err(|e| Error::io(path, e))?;
        let mut entries = std::iter::from_fn(|| dir.read());
        let occupied =
            entries.any(|e| e.map_or(true, |e| !matches!(e.file_name().to_bytes(), b"." | b"..")));
        if occupied {
            return Err(Error::io(
                path,
                "appeared, not empty, since the plan: run `pic2 plan` again to see it",
            ));
        }
    }
    own(&fd, path, uid, gid, mode)
}

pub fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
    let fd = open_nofollow(path, OFlags::RDONLY | OFlags::NONBLOCK)?;
    own(&fd, path, uid, gid, mode)
}

/// Writes a file atomically: a temporary file in the same folder, owned and moded before any
/// byte is written, synced, then renamed over the target.
pub fn write_file(path: &Path, uid: u32, gid: u32, mode: u32, contents: &str) -> Result<(), Error> {
    let (parent, name) = parent_and_name(path)?;
    let tmp = PathBuf::from(format!(
        ".{}{}",
        name.to_string_lossy(),
        pic2_plan::TEMP_SUFFIX
    ));
    let _ = unlinkat(&parent, &tmp, AtFlags::empty());
    let fd = openat2(
        &parent,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
        ResolveFlags::NO_SYMLINKS,
    )
    .map_err(|e| Error::io(path, format!("creating a temporary file: {e}")))?;
    own(&fd, path, uid, gid, mode)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(contents.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    fsync(&file).map_err(|e| Error::io(path, format!("fsync: {e}")))?;
    renameat(&parent, &tmp, &parent, name).map_err(|e| Error::io(path, format!("rename: {e}")))
}

/// Reads a file pic2 wrote (the credentials), without following links.
pub fn read_file(path: &Path) -> Result<String, Error> {
    read_nofollow(path).map_err(|e| Error::io(path, e))
}

/// Deletes a folder and everything in it. The parent is checked to be reached without links;
/// `remove_dir_all` itself never follows the links it meets inside.
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    let _ = parent_and_name(path)?;
    std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_refuse_symbolic_links_anywhere_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("secret"), "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let before = std::fs::metadata(target.join("secret")).unwrap().mode();
        assert!(set_owner_mode(&link.join("secret"), 0, 0, 0o777).is_err());
        assert!(set_owner_mode(&link, 0, 0, 0o777).is_err());
        assert!(create_dir(&link.join("new"), 0, 0, 0o755).is_err());
        assert!(write_file(&link.join("f"), 0, 0, 0o644, "x").is_err());
        assert!(!target.join("new").exists() && !target.join("f").exists());
        assert_eq!(
            std::fs::metadata(target.join("secret")).unwrap().mode(),
            before
        );
    }

    #[test]
    fn a_root_reached_through_a_link_is_refused_before_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("disk");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("pic2");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let want = |path: PathBuf| pic2_render::files::DesiredPath {
            path,
            kind: PathKind::Dir,
            uid: 0,
            gid: 0,
            mode: 0o755,
            contents: None,
            after_reloads: false,
        };
        let linked = [want(link.join("data")), want(link.join("data/home"))];
        let err = refuse_linked_roots(&linked).unwrap_err().to_string();
        assert!(
            err.contains("symbolic link") && err.contains("disk"),
            "{err}"
        );
        let straight = [want(real.join("data")), want(real.join("data/home"))];
        assert!(refuse_linked_roots(&straight).is_ok());
    }

    /// A generated file over a megabyte (a runtime's vhosts at some 800 sites) is read back
    /// and compared: capped at a megabyte, it was rewritten and reloaded at every apply.
    #[test]
    fn a_generated_file_is_read_back_whatever_its_size_when_it_may_be_the_one_wanted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.conf");
        let text = "# a vhost\n".repeat(200_000);
        std::fs::write(&path, &text).unwrap();
        let want = |contents: Option<String>, kind| pic2_render::files::DesiredPath {
            path: path.clone(),
            kind,
            uid: 0,
            gid: 0,
            mode: 0o644,
            contents,
            after_reloads: false,
        };
        let seen = stat_all(&[want(Some(text.clone()), PathKind::File)]).unwrap();
        assert_eq!(seen[&path].contents.as_deref(), Some(text.as_str()));
        // longer than wanted: not it, and not read
        let seen = stat_all(&[want(Some("short".into()), PathKind::File)]).unwrap();
        assert_eq!(seen[&path].contents, None);
    }

    /// A folder the plan would create that another hand made meanwhile is taken over only
    /// when empty.
    #[test]
    fn a_folder_made_since_the_plan_is_taken_over_only_empty() {
        let dir = tempfile::tempdir().unwrap();
        let uid = rustix::process::getuid().as_raw();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        create_dir(&empty, uid, uid, 0o750).unwrap();
        assert_eq!(std::fs::metadata(&empty).unwrap().mode() & 0o777, 0o750);
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("site.php"), "x").unwrap();
        let err = create_dir(&full, uid, uid, 0o750).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
    }

    #[test]
    fn write_file_sets_mode_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_file(&p, 0, 0, 0o600, "one").unwrap();
        write_file(&p, 0, 0, 0o640, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
