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
    chownat, fchmod, fchown, fsync, mkdirat, openat, openat2, renameat_with, statat, unlinkat,
    AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, CWD,
};
use rustix::process::{Gid, Uid};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The largest file pic2 reads back whose contents it cannot know beforehand (a
/// credentials file, a home's marker); a bigger one is not pic2's.
const MARKER_MAX: u64 = 1 << 20;

pub fn observe(inv: &ValidInventory) -> Result<ObservedFiles, Error> {
    let mut out = ObservedFiles {
        observed_at: utc_stamp(std::time::SystemTime::now()),
        ..Default::default()
    };
    // Tens of thousands of lstat calls and as many folders listed at 10,000 accounts: split
    // over two threads.
    let wanted = desired(inv);
    refuse_linked_roots(&wanted)?;
    let dirs = listed_dirs(inv);
    let (first, second) = wanted.split_at(wanted.len() / 2);
    let (first_dirs, second_dirs) = dirs.split_at(dirs.len() / 2);
    let (a, b) = std::thread::scope(|scope| {
        let other = scope.spawn(|| read_part(second, second_dirs));
        (read_part(first, first_dirs), other.join())
    });
    let b = b.unwrap_or_else(|_| Err(Error::io("data volume", "a walker thread panicked")));
    let ((paths, listings), (more_paths, more_listings)) = (a?, b?);
    out.paths = paths;
    out.paths.extend(more_paths);
    out.listings = listings;
    out.listings.extend(more_listings);
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

/// A time as `YYYYMMDD-HHMMSS`, UTC (the proleptic Gregorian calendar: Howard Hinnant's
/// `civil_from_days`).
fn utc_stamp(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // days since 0000-03-01, in 400-year eras of 146,097 days
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// `path`'s bytes with each `/` made 0: sorting these sorts paths by component (`/a/b/c`
/// before `/a/b-c`, as `Path`'s own order has it).
fn component_order_key(path: &Path) -> Vec<u8> {
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| if b == b'/' { 0 } else { b })
        .collect()
}

/// Changes follow no link anywhere on their path (`openat2` with `RESOLVE_NO_SYMLINKS`), so
/// a root reached through one (`/srv/pic2 -> /mnt/data`, a data disk mounted elsewhere)
/// would have every change on the volume refused, after the directory's and the databases'
/// were made, at every apply. Said now, before any change, with the path to write instead.
fn refuse_linked_roots(wanted: &[pic2_render::files::DesiredPath]) -> Result<(), Error> {
    // the top-most wanted paths: sorted by component, a folder's paths follow it. Sorted as
    // bytes with the separator made the lowest byte, which is the order of components for
    // the absolute, normal paths the layout makes; comparing `Path`s component by component
    // took 0.1 s at 10,000 accounts (90,000 paths), a tenth of a no-op plan.
    let mut paths: Vec<(Vec<u8>, &Path)> = wanted
        .iter()
        .map(|w| (component_order_key(&w.path), w.path.as_path()))
        .collect();
    paths.sort_unstable();
    let mut roots: Vec<&Path> = Vec::new();
    for (_, p) in paths {
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

/// The metadata of `wanted` and the entry names of `dirs`: one thread's share.
fn read_part(wanted: &[pic2_render::files::DesiredPath], dirs: &[PathBuf]) -> Result<Share, Error> {
    let paths = stat_all(wanted)?;
    let mut listings = BTreeMap::new();
    for dir in dirs {
        if let Some(names) = list(dir)? {
            listings.insert(dir.clone(), names);
        }
    }
    Ok((paths, listings))
}

/// What [`read_part`] gives.
type Share = (
    std::collections::HashMap<PathBuf, FileMeta>,
    BTreeMap<PathBuf, Vec<String>>,
);

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
    let contents = read_up_to
        .filter(|&max| kind == FileKind::File && meta.len() <= max)
        .and_then(|max| read_nofollow(path, max).ok());
    // a link's text, for the plan to say where it points (reading it follows nothing)
    let target = (kind == FileKind::Symlink)
        .then(|| std::fs::read_link(path).ok())
        .flatten();
    Ok(Some(FileMeta {
        kind,
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        contents,
        target,
    }))
}

/// Reads a regular file of at most `max` bytes without following links. What the account
/// may have put at the name since it was looked at (a FIFO, whose open or read would block
/// for ever while holding the apply lock; a device; a file grown huge) is an error, told by
/// the descriptor actually opened.
fn read_nofollow(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let fd = openat2(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > max {
        return Err(std::io::Error::other(format!(
            "not a regular file of at most {max} bytes (changed since it was looked at?)"
        )));
    }
    // room for the whole file and one byte more: read in one call, then one to see its end
    // (an empty buffer starts with small reads: 100,000 of them at 10,000 accounts)
    let room = usize::try_from(meta.len().saturating_add(1)).unwrap_or(usize::MAX);
    let mut text = String::with_capacity(room);
    file.take(max.saturating_add(1)).read_to_string(&mut text)?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > max {
        return Err(std::io::Error::other(format!(
            "grew past {max} bytes while read"
        )));
    }
    Ok(text)
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
    // a name of chance: the folder may be the account's, and a folder (or anything else)
    // it put at a fixed temporary name would make every write here fail
    let tmp = PathBuf::from(format!(
        ".{}.{}{}",
        name.to_string_lossy(),
        random_tag(),
        pic2_plan::TEMP_SUFFIX
    ));
    let fd = openat2(
        &parent,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
        ResolveFlags::NO_SYMLINKS,
    )
    .map_err(|e| Error::io(path, format!("creating a temporary file: {e}")))?;
    let written = (|| {
        own(&fd, path, uid, gid, mode)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(contents.as_bytes())
            .map_err(|e| Error::io(path, e))?;
        fsync(&file).map_err(|e| Error::io(path, format!("fsync: {e}")))?;
        put_in_place(&parent, &tmp, name).map_err(|e| Error::io(path, format!("rename: {e}")))
    })();
    if written.is_err() {
        // its name is never used again: not left behind
        let _ = unlinkat(&parent, &tmp, AtFlags::empty());
    }
    written
}

/// Puts the written temporary file `tmp` at `name`, whatever the account may have put
/// there meanwhile (in a folder of its own, at any moment): what is there is exchanged with
/// the new file in one step (`RENAME_EXCHANGE`), so no folder made at the name in between
/// can make the write fail; it then sits at `tmp`'s name, where a regular file or a link
/// (the old file, or its stand-in) is removed, and anything else is moved aside to a name
/// of chance beside it, never followed nor deleted. Nothing there: a plain rename that
/// replaces nothing, tried again if the account took the name in between (a few times).
fn put_in_place(parent: &OwnedFd, tmp: &Path, name: &std::ffi::OsStr) -> rustix::io::Result<()> {
    use rustix::io::Errno;
    for _ in 0..8 {
        match renameat_with(parent, tmp, parent, name, RenameFlags::EXCHANGE) {
            Ok(()) => return dispose_of_replaced(parent, tmp, name),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        match renameat_with(parent, tmp, parent, name, RenameFlags::NOREPLACE) {
            Err(Errno::EXIST) => continue,
            other => return other,
        }
    }
    Err(Errno::AGAIN)
}

/// What [`put_in_place`] exchanged out, now at `tmp`'s name.
fn dispose_of_replaced(
    parent: &OwnedFd,
    tmp: &Path,
    name: &std::ffi::OsStr,
) -> rustix::io::Result<()> {
    let replaced = statat(parent, tmp, AtFlags::SYMLINK_NOFOLLOW)?;
    let kind = FileType::from_raw_mode(replaced.st_mode);
    if matches!(kind, FileType::RegularFile | FileType::Symlink) {
        return unlinkat(parent, tmp, AtFlags::empty());
    }
    let mut aside = name.to_os_string();
    aside.push(format!("{}{}", pic2_plan::MOVED_SUFFIX, random_tag()));
    renameat_with(parent, tmp, parent, &aside, RenameFlags::NOREPLACE)
}

/// 12 letters and digits of chance: a name the account cannot foresee (and take first).
fn random_tag() -> String {
    rand::distr::SampleString::sample_string(&rand::distr::Alphanumeric, &mut rand::rng(), 12)
}

/// How many names of chance [`move_aside`] tries after `-2` and `-3`.
const ASIDE_TAGS: u32 = 5;

/// Moves the entry at `path` aside to `to` (beside it), as [`pic2_plan::Op::MoveAside`]
/// says: `renameat2(RENAME_NOREPLACE)` under the folder's descriptor (opened without
/// following links), so the entry is never followed and nothing is replaced; while `to` is
/// taken, `-2`, `-3`, then a few tags of chance are appended to it. Returns where it went
/// (`None`: it was gone).
pub fn move_aside(path: &Path, to: &Path) -> Result<Option<PathBuf>, Error> {
    let (parent, name) = parent_and_name(path)?;
    let Some(to_name) = to.file_name().filter(|_| to.parent() == path.parent()) else {
        return Err(Error::io(to, "not beside the entry to move aside"));
    };
    for n in 1..=3 + ASIDE_TAGS {
        let mut candidate = to_name.to_os_string();
        if n > 3 {
            // the plan's names are foreseeable (its time): past a few taken, one of chance
            candidate.push(format!("-{}", random_tag()));
        } else if n > 1 {
            candidate.push(format!("-{n}"));
        }
        match renameat_with(&parent, name, &parent, &candidate, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(Some(path.with_file_name(candidate))),
            Err(rustix::io::Errno::EXIST) => continue,
            // gone since the plan: nothing left in the way
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(Error::io(path, format!("moving it aside: {e}"))),
        }
    }
    Err(Error::io(
        to,
        format!(
            "taken, as are the names with -2, -3 and {ASIDE_TAGS} tags of chance appended: move or delete some"
        ),
    ))
}

/// What [`reown_files`] changes: an entry whose uid is `from_uid` gets `to_uid`, one whose
/// gid is `from_gid` gets `to_gid`.
#[derive(Clone, Copy, Debug)]
pub struct Reown {
    pub from_uid: u32,
    pub to_uid: u32,
    pub from_gid: u32,
    pub to_gid: u32,
}

/// How often, at most, a long walk reports how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How many folders of the path a walk keeps open, counted from the top: deeper ones are
/// re-opened through `..` from the folder below them (checked to be the same folder).
const WALK_OPEN_DIRS: usize = 64;

/// A folder of the path a walk is in.
struct Level {
    /// Its name in the folder above it (empty for the walk's folder).
    name: std::ffi::OsString,
    /// (device, inode): what a re-opened descriptor must be.
    id: (u64, u64),
    /// Open (`O_PATH`) while it is on top or within [`WALK_OPEN_DIRS`] of the walk's folder.
    fd: Option<OwnedFd>,
    /// Its entries not looked at yet.
    names: Vec<std::ffi::OsString>,
}

/// Gives the account's new ids to the entries below `path` (not `path` itself) that still
/// have its old ones, as `usermod -u` does in a home; returns how many entries it changed.
///
/// The folder belongs to the account, who may swap any folder in it for a link at any time,
/// even during the walk. So each entry is opened from its folder's descriptor with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)` and `O_PATH |
/// O_NOFOLLOW`, and its ids are read and changed on that descriptor (`fstatat` and
/// `fchownat` with `AT_EMPTY_PATH`): a link is re-owned itself, never followed or descended
/// into; nothing outside the folder's mount (a mount point, a bind mount) is touched, as
/// with `find -xdev`; and the entry changed is the one whose ids were read, not whatever a
/// swap put at its name meanwhile. An entry gone, or made a link on the way, since its
/// folder was listed is skipped. Entries of other owners are left as they are. The kernel
/// clears the setuid and setgid bits of a regular file whose owner changes (root too, since
/// Linux 2.2.13): an account's set-id program in its site loses them, which is wanted (set-id
/// to an id that is no longer the account's). A folder's setgid bit is kept.
///
/// No path is ever longer than a name: the account may nest folders deeper than `PATH_MAX`,
/// which a walk by paths could not open (and would fail at every apply). The walk keeps a
/// stack of folders, each with its remaining names; the top [`WALK_OPEN_DIRS`] levels keep
/// their descriptors, a deeper folder's is dropped when the walk goes below it and taken
/// back, on the way up, by opening `..` from the folder left, checked (device and inode) to
/// be that very folder; moved elsewhere meanwhile, it is re-opened by its names from the
/// nearest open folder above, each checked the same way, and if that fails too its
/// remaining entries are left as they are (the account moved them during the walk).
///
/// Idempotent: run again, it finds nothing of the old ids. `progress` is told how many
/// entries were looked at, once a second at most.
pub fn reown_files(path: &Path, ids: Reown, progress: &mut dyn FnMut(u64)) -> Result<u64, Error> {
    let root = open_nofollow(path, OFlags::PATH | OFlags::DIRECTORY)?;
    let root_st =
        statat(&root, "", AT_ITSELF).map_err(|e| Error::io(path, format!("stat: {e}")))?;
    let root_dev = root_st.st_dev;
    let mut stack = vec![Level {
        name: std::ffi::OsString::new(),
        id: (root_st.st_dev, root_st.st_ino),
        names: names_in(&root).map_err(|e| Error::io(path, e))?,
        fd: Some(root),
    }];
    // the path of an entry of the top folder, for messages only
    let full = |stack: &[Level], name: &std::ffi::OsStr| {
        let mut p = path.to_path_buf();
        p.extend(stack.iter().skip(1).map(|l| l.name.as_os_str()));
        p.join(name)
    };
    let (mut seen, mut changed) = (0u64, 0u64);
    let mut reported = std::time::Instant::now();
    // the descriptor of the folder just left, to take its parent back through `..`
    let mut left: Option<OwnedFd> = None;
    loop {
        let depth = stack.len();
        let Some(Level {
            names,
            fd: Some(dir),
            ..
        }) = stack.last_mut()
        else {
            // the walk's end, or a folder whose descriptor was dropped on the way down: taken
            // back, then walked on
            let Some(top) = stack.last() else { break };
            let id = top.id;
            let back = left
                .take()
                .and_then(|child| open_checked(&child, "..", id, false))
                .or_else(|| reopen(&stack));
            match (back, stack.last_mut()) {
                (Some(fd), Some(top)) => top.fd = Some(fd),
                // moved away during the walk: its remaining entries are the account's doing
                _ => {
                    stack.pop();
                }
            }
            continue;
        };
        left = None;
        let Some(name) = names.pop() else {
            left = stack.pop().and_then(|l| l.fd);
            continue;
        };
        let fd = match openat2(
            dir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        ) {
            Ok(fd) => fd,
            // gone since its folder was listed; a link now on the way (a folder swapped for
            // one); another mount
            Err(
                rustix::io::Errno::NOENT
                | rustix::io::Errno::LOOP
                | rustix::io::Errno::NOTDIR
                | rustix::io::Errno::XDEV,
            ) => continue,
            Err(e) => return Err(Error::io(full(&stack, &name), e)),
        };
        let st = statat(&fd, "", AT_ITSELF)
            .map_err(|e| Error::io(full(&stack, &name), format!("stat: {e}")))?;
        if st.st_dev != root_dev {
            continue;
        }
        let uid = (st.st_uid == ids.from_uid && ids.from_uid != ids.to_uid)
            .then(|| Uid::from_raw(ids.to_uid));
        let gid = (st.st_gid == ids.from_gid && ids.from_gid != ids.to_gid)
            .then(|| Gid::from_raw(ids.to_gid));
        if uid.is_some() || gid.is_some() {
            chownat(&fd, "", uid, gid, AT_ITSELF)
                .map_err(|e| Error::io(full(&stack, &name), format!("chown: {e}")))?;
            changed += 1;
        }
        seen += 1;
        if seen % 1024 == 0 && reported.elapsed() >= PROGRESS_EVERY {
            progress(seen);
            reported = std::time::Instant::now();
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let names = names_in(&fd).map_err(|e| Error::io(full(&stack, &name), e))?;
            // below the levels kept open, the folder left keeps only the new top's
            if depth >= WALK_OPEN_DIRS {
                if let Some(top) = stack.last_mut() {
                    top.fd = None;
                }
            }
            stack.push(Level {
                name,
                id: (st.st_dev, st.st_ino),
                fd: Some(fd),
                names,
            });
            #[cfg(test)]
            tests::WALK_ENTERED.with_borrow_mut(|hook| {
                if let Some(hook) = hook {
                    hook(stack.len().saturating_sub(1));
                }
            });
        }
    }
    Ok(changed)
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_XDEV)
    .union(ResolveFlags::NO_MAGICLINKS);
const AT_ITSELF: AtFlags = AtFlags::EMPTY_PATH.union(AtFlags::SYMLINK_NOFOLLOW);

/// The folder `name` (`..` included) from `dir`, `O_PATH`, if it is the one of `id`.
/// `beneath`: resolved beneath `dir` (a name), else only without links or other mounts.
fn open_checked(
    dir: &OwnedFd,
    name: impl rustix::path::Arg,
    id: (u64, u64),
    beneath: bool,
) -> Option<OwnedFd> {
    let how = if beneath {
        BENEATH
    } else {
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV | ResolveFlags::NO_MAGICLINKS
    };
    let fd = openat2(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    )
    .ok()?;
    let st = statat(&fd, "", AT_ITSELF).ok()?;
    ((st.st_dev, st.st_ino) == id).then_some(fd)
}

/// The top folder of the walk, re-opened by its names from the nearest open one above it,
/// each step checked to be the folder walked into.
fn reopen(stack: &[Level]) -> Option<OwnedFd> {
    let open = stack.iter().rposition(|l| l.fd.is_some())?;
    let mut fd: Option<OwnedFd> = None;
    for level in stack.iter().skip(open + 1) {
        let from = fd.as_ref().or(stack.get(open)?.fd.as_ref())?;
        fd = Some(open_checked(from, level.name.as_os_str(), level.id, true)?);
    }
    fd
}

/// The names in the folder open (`O_PATH`) as `dir`, in reverse order: popped from the end,
/// they are walked in name order, whatever order the file system lists them in (a walk that
/// goes the same way every time, and tests that know what is left after a folder).
fn names_in(dir: &OwnedFd) -> rustix::io::Result<Vec<std::ffi::OsString>> {
    let fd = openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// Reads a file pic2 wrote (the credentials), without following links.
pub fn read_file(path: &Path) -> Result<String, Error> {
    read_nofollow(path, MARKER_MAX).map_err(|e| Error::io(path, e))
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
    use std::os::unix::fs::FileTypeExt;

    type WalkHook = std::cell::RefCell<Option<Box<dyn FnMut(usize)>>>;

    /// A test that changes owners needs root: it fails without it, never skips.
    fn require_root() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test changes owners, which needs root: run it as root (CI does); it never skips"
        );
    }

    thread_local! {
        /// Called by [`reown_files`] as it enters a folder, with how deep below the walk's
        /// folder it is (1 for an entry of it): a test moves folders meanwhile, as an account
        /// may during a walk.
        pub(super) static WALK_ENTERED: WalkHook = const { std::cell::RefCell::new(None) };
    }

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

    /// The bytes' order with `/` made lowest is `Path`'s own, component by component, on the
    /// layout's kind of paths (names with `-`, `.`, digits, cut at any separator).
    #[test]
    fn paths_sorted_as_bytes_keep_the_order_of_their_components() {
        let paths = [
            "/srv/d/home/a",
            "/srv/d/home/a-b",
            "/srv/d/home/a/sites",
            "/srv/d/home/a.b",
            "/srv/d/home/a/sites/x.test",
            "/srv/d/home/a/private",
            "/srv/d",
            "/srv/d/home",
            "/srv/d/home/a0",
            "/srv/d/home/a/sites/x.test/htdocs",
            "/srv/d-2",
            "/srv/d/home/A",
        ];
        let mut by_path: Vec<&Path> = paths.iter().map(Path::new).collect();
        by_path.sort();
        let mut by_key = by_path.clone();
        by_key.reverse();
        by_key.sort_by_key(|p| component_order_key(p));
        assert_eq!(by_key, by_path);
        assert!(
            by_path.windows(2).any(|w| {
                w[0].as_os_str().as_encoded_bytes() > w[1].as_os_str().as_encoded_bytes()
            }),
            "the plain bytes' order would differ: the test would not test the key"
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
    fn a_folder_at_a_temporary_name_does_not_stop_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // the fixed name writes used before, taken by a folder of the account's
        let old_tmp = dir.path().join(format!(".f{}", pic2_plan::TEMP_SUFFIX));
        std::fs::create_dir(&old_tmp).unwrap();
        write_file(&p, 0, 0, 0o600, "one").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one");
        assert!(old_tmp.is_dir(), "the account's folder is left alone");
        // each write draws its own name: two in a row leave no temporary file either
        write_file(&p, 0, 0, 0o600, "two").unwrap();
        let names = |dir: &Path| {
            let mut n: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(
            names(dir.path()),
            vec![".f.pic2-tmp".to_string(), "f".into()]
        );
        // a folder at the target (made by the account between the plan and the write, or
        // while it is written): exchanged with the new file in one step, then moved aside
        // whole; the write does not fail, and no temporary file is left
        let q = dir.path().join("g");
        std::fs::create_dir(&q).unwrap();
        std::fs::write(q.join("kept"), "x").unwrap();
        write_file(&q, 0, 0, 0o600, "three").unwrap();
        assert_eq!(std::fs::read_to_string(&q).unwrap(), "three");
        let now = names(dir.path());
        assert_eq!(now.len(), 4, "{now:?}");
        let moved = now
            .iter()
            .find(|n| n.starts_with("g.pic2-moved-"))
            .unwrap_or_else(|| panic!("not moved aside: {now:?}"));
        assert_eq!(names(&dir.path().join(moved)), vec!["kept".to_string()]);
        assert!(!now.iter().any(|n| n.starts_with(".g.")), "{now:?}");
    }

    /// A FIFO put where pic2 reads its credentials (after it was looked at) is an error at
    /// once: its open and its read would block for ever, holding the apply lock.
    #[test]
    fn a_fifo_in_place_of_a_file_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("mariadb-a.cnf");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_file(&path).map_err(|e| e.to_string()));
        });
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO blocked");
        let e = read.unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        // a file over 1 MiB: refused too
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; (MARKER_MAX + 1) as usize]).unwrap();
        assert!(read_file(&big).is_err());
    }

    /// A folder (a FIFO) an account put where pic2 writes its credentials is moved aside, its
    /// contents kept, never followed; a name taken gets another suffix; a credentials file can
    /// then be written in its place.
    #[test]
    fn move_aside_renames_beside_without_replacing_or_following() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mariadb-a.cnf");
        let to = dir.path().join("mariadb-a.cnf.pic2-moved-20260115-093000");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("data"), "the account's").unwrap();
        assert_eq!(move_aside(&path, &to).unwrap(), Some(to.clone()));
        assert_eq!(
            std::fs::read_to_string(to.join("data")).unwrap(),
            "the account's"
        );
        write_file(&path, 0, 0, 0o600, "[client]\n").unwrap();
        // the name taken (a second folder the same second): another suffix, nothing replaced
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let second = dir
            .path()
            .join("mariadb-a.cnf.pic2-moved-20260115-093000-2");
        assert_eq!(move_aside(&path, &to).unwrap(), Some(second.clone()));
        assert!(std::fs::symlink_metadata(&second)
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(to.join("data").is_file());
        // gone since the plan: nothing to do
        assert_eq!(move_aside(&path, &to).unwrap(), None);
        // a link to a folder is moved itself, not what it points to
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let third = dir
            .path()
            .join("mariadb-a.cnf.pic2-moved-20260115-093000-3");
        assert_eq!(move_aside(&path, &to).unwrap(), Some(third.clone()));
        assert!(std::fs::symlink_metadata(&third).unwrap().is_symlink());
        assert!(outside.is_dir());
        // never through a link on the way
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(&outside, &linked).unwrap();
        std::fs::create_dir(outside.join("x")).unwrap();
        assert!(move_aside(&linked.join("x"), &linked.join("y")).is_err());
        assert!(outside.join("x").is_dir());
        // never elsewhere than beside it
        assert!(move_aside(&to, &outside.join("y")).is_err());
    }

    #[test]
    fn utc_stamps_are_calendar_dates() {
        let at = |secs| utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "19700101-000000");
        // 2024-02-29 23:59:59, a leap day
        assert_eq!(at(1_709_251_199), "20240229-235959");
        assert_eq!(at(1_709_251_200), "20240301-000000");
        assert_eq!(at(4_102_444_800), "21000101-000000");
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

    /// A credentials file the account swapped for a link: observed as a link with its target
    /// (never followed), then written over it: the link is replaced, its target untouched.
    #[test]
    fn a_file_written_over_a_link_replaces_the_link_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("passwd");
        std::fs::write(&target, "root:x:0:0::/root:/bin/sh\n").unwrap();
        let before = std::fs::metadata(&target).unwrap();
        let path = dir.path().join("mariadb-a.cnf");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let seen = lstat(&path, Some(MARKER_MAX)).unwrap().unwrap();
        assert_eq!(seen.kind, FileKind::Symlink);
        assert_eq!(seen.target.as_deref(), Some(target.as_path()));
        assert_eq!(seen.contents, None, "the target was read");
        write_file(&path, 0, 0, 0o600, "[client]\npassword=x\n").unwrap();
        let now = std::fs::symlink_metadata(&path).unwrap();
        assert!(now.file_type().is_file());
        assert_eq!(now.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        let after = std::fs::metadata(&target).unwrap();
        assert_eq!(
            (after.mode(), after.uid(), after.ino()),
            (before.mode(), before.uid(), before.ino())
        );
    }

    /// A tree deeper than `PATH_MAX` (the account's nested 250-byte names): walked by
    /// descriptors, every level re-owned, also what is looked at on the way back up (past the
    /// levels kept open, through `..`), the link at the bottom re-owned, not followed. The
    /// deep folder's name comes first (`d…` before `e` and `f`, names are walked in order),
    /// so each level still has entries to walk when the walk comes back up to it.
    #[test]
    fn reown_files_walks_a_tree_deeper_than_path_max() {
        require_root();
        let (old, new) = (41011, 41012);
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("htdocs");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&site).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let name = "d".repeat(250);
        let depth = WALK_OPEN_DIRS + 30; // 94 × 251 bytes: past PATH_MAX (4096) and the open levels
        let as_old = |dir: &OwnedFd, entry: &str| {
            chownat(
                dir,
                entry,
                Some(Uid::from_raw(old)),
                Some(Gid::from_raw(old)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap()
        };
        let open_dir = |dir: &OwnedFd, entry: &str| {
            openat(
                dir,
                entry,
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .unwrap()
        };
        let mut levels = vec![open_dir(
            &rustix::fs::openat(CWD, &site, OFlags::RDONLY, Mode::empty()).unwrap(),
            ".",
        )];
        for _ in 0..depth {
            let cur = levels.last().unwrap();
            mkdirat(cur, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            as_old(cur, &name);
            // a file and a second folder beside each: some are looked at after the deep
            // branch, from a folder taken back on the way up
            drop(
                openat(
                    cur,
                    "f",
                    OFlags::CREATE | OFlags::WRONLY,
                    Mode::from_raw_mode(0o644),
                )
                .unwrap(),
            );
            as_old(cur, "f");
            mkdirat(cur, "e", Mode::from_raw_mode(0o755)).unwrap();
            as_old(cur, "e");
            let next = open_dir(cur, &name);
            levels.push(next);
        }
        let bottom = levels.last().unwrap();
        rustix::fs::symlinkat(&outside, bottom, "link").unwrap();
        as_old(bottom, "link");
        let outside_before = std::fs::metadata(&outside).unwrap();
        let too_long = site.join(std::iter::repeat_n(name.as_str(), depth).collect::<PathBuf>());
        assert!(too_long.as_os_str().len() > 4096);
        drop(levels);

        let ids = Reown {
            from_uid: old,
            to_uid: new,
            from_gid: old,
            to_gid: new,
        };
        let changed = reown_files(&site, ids, &mut |_| {}).unwrap();
        assert_eq!(changed, 3 * depth as u64 + 1);
        // every level, looked at by relative steps
        let owner = |dir: &OwnedFd, entry: &str| {
            let st = statat(dir, entry, AtFlags::SYMLINK_NOFOLLOW).unwrap();
            (st.st_uid, st.st_gid)
        };
        let mut cur = open_dir(
            &rustix::fs::openat(CWD, &site, OFlags::RDONLY, Mode::empty()).unwrap(),
            ".",
        );
        for level in 0..depth {
            for entry in [name.as_str(), "f", "e"] {
                assert_eq!(owner(&cur, entry), (new, new), "{entry} at level {level}");
            }
            cur = open_dir(&cur, &name);
        }
        assert_eq!(owner(&cur, "link"), (new, new));
        let outside_after = std::fs::metadata(&outside).unwrap();
        assert_eq!(
            (outside_after.uid(), outside_after.gid()),
            (outside_before.uid(), outside_before.gid()),
            "the link was followed"
        );
        assert_eq!(reown_files(&site, ids, &mut |_| {}).unwrap(), 0);
        dir.close().unwrap();
    }

    /// The walk of a uid change: the old uid's entries get the new one, links are re-owned
    /// and never followed, other owners' files and the folder itself are left alone; a
    /// second walk finds nothing.
    #[test]
    fn reown_files_changes_the_old_ids_only_and_follows_no_link() {
        use std::os::unix::fs::{lchown, symlink, PermissionsExt};
        require_root();
        let (old, new, other) = (41001, 41002, 41003);
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("htdocs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(site.join("sub/deeper")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("target"), "not the site's").unwrap();
        std::fs::write(site.join("index.php"), "x").unwrap();
        std::fs::write(site.join("sub/deeper/setuid"), "x").unwrap();
        std::fs::set_permissions(
            site.join("sub/deeper/setuid"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::write(site.join("foreign.txt"), "x").unwrap();
        symlink(outside.join("target"), site.join("link")).unwrap();
        symlink(&outside, site.join("linked-dir")).unwrap();
        for p in [
            &site,
            &site.join("index.php"),
            &site.join("sub"),
            &site.join("sub/deeper"),
            &site.join("sub/deeper/setuid"),
            &site.join("link"),
            &site.join("linked-dir"),
            &outside,
            &outside.join("target"),
        ] {
            lchown(p, Some(old), Some(old)).unwrap();
        }
        lchown(site.join("foreign.txt"), Some(other), Some(old)).unwrap();
        let ids = Reown {
            from_uid: old,
            to_uid: new,
            from_gid: old,
            to_gid: new,
        };
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        let changed = reown_files(&site, ids, &mut |_| {}).unwrap();
        assert_eq!(changed, 7);
        for p in [
            "index.php",
            "sub",
            "sub/deeper",
            "sub/deeper/setuid",
            "link",
            "linked-dir",
        ] {
            assert_eq!(owner(&site.join(p)), (new, new), "{p}");
        }
        // another owner's file keeps its owner (its group was the account's)
        assert_eq!(owner(&site.join("foreign.txt")), (other, new));
        // the links' targets, and what a linked folder holds, are untouched
        assert_eq!(owner(&outside), (old, old));
        assert_eq!(owner(&outside.join("target")), (old, old));
        // the folder itself is the SetOwnerMode's after the walk
        assert_eq!(owner(&site), (old, old));
        // the kernel cleared the set-uid bit when the owner changed (documented)
        let mode = std::fs::metadata(site.join("sub/deeper/setuid"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        // idempotent
        assert_eq!(reown_files(&site, ids, &mut |_| {}).unwrap(), 0);
        // a folder given as a link is refused, not followed
        assert!(reown_files(&site.join("linked-dir"), ids, &mut |_| {}).is_err());
        // only the group
        let gid_only = Reown {
            from_uid: new,
            to_uid: new,
            from_gid: new,
            to_gid: old,
        };
        assert_eq!(reown_files(&site, gid_only, &mut |_| {}).unwrap(), 7);
        assert_eq!(owner(&site.join("index.php")), (new, old));
    }

    /// A chain `d/d/d/…` of `depth` folders below `site`, each level also holding a folder
    /// `e` and a file `f` (walked after `d`), all of `old` ids.
    fn chain(site: &Path, depth: usize, old: u32) {
        use std::os::unix::fs::lchown;
        std::fs::create_dir(site).unwrap();
        let mut level = site.to_path_buf();
        for _ in 0..depth {
            for entry in ["d", "e"] {
                std::fs::create_dir(level.join(entry)).unwrap();
                lchown(level.join(entry), Some(old), Some(old)).unwrap();
            }
            std::fs::write(level.join("f"), "x").unwrap();
            lchown(level.join("f"), Some(old), Some(old)).unwrap();
            level.push("d");
        }
    }

    /// `d/d/…` `k` times below `site`.
    fn level(site: &Path, k: usize) -> PathBuf {
        site.join(std::iter::repeat_n("d", k).collect::<PathBuf>())
    }

    /// Walks a chain deeper than the folders kept open (`moves` called with the walk's
    /// folder once, as the walk enters the folder `at` levels below it) from old ids to new
    /// ones; returns the temporary folder, the walk's folder and the ids.
    fn walk_with_moves(
        at: usize,
        moves: impl FnOnce(&Path) + 'static,
    ) -> (tempfile::TempDir, PathBuf, Reown) {
        require_root();
        let (old, new) = (41021, 41022);
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("htdocs");
        chain(&site, WALK_OPEN_DIRS + 8, old);
        let ids = Reown {
            from_uid: old,
            to_uid: new,
            from_gid: old,
            to_gid: new,
        };
        let mut moves = Some(moves);
        let top = site.clone();
        WALK_ENTERED.set(Some(Box::new(move |depth| {
            if depth == at {
                if let Some(moves) = moves.take() {
                    moves(&top);
                }
            }
        })));
        let walked = reown_files(&site, ids, &mut |_| {});
        WALK_ENTERED.set(None);
        walked.unwrap();
        (dir, site, ids)
    }

    fn owner_of(path: &Path) -> (u32, u32) {
        let m = std::fs::symlink_metadata(path).unwrap();
        (m.uid(), m.gid())
    }

    /// Past the folders kept open, a folder renamed while the walk is below it (the account
    /// moved it within its parent): taken back through `..` from the folder left (its names
    /// no longer lead to it), and its remaining entries re-owned.
    #[test]
    fn reown_files_takes_a_renamed_folder_back_through_dot_dot() {
        let x = WALK_OPEN_DIRS + 3; // its descriptor is dropped below it
        let (_dir, site, ids) = walk_with_moves(x + 1, move |site| {
            std::fs::rename(level(site, x), level(site, x - 1).join("moved")).unwrap();
        });
        let moved = level(&site, x - 1).join("moved");
        for entry in ["e", "f"] {
            assert_eq!(
                owner_of(&moved.join(entry)),
                (ids.to_uid, ids.to_gid),
                "{entry}"
            );
            assert_eq!(
                owner_of(&level(&site, x - 1).join(entry)),
                (ids.to_uid, ids.to_gid)
            );
        }
    }

    /// A folder moved out of its parent while the walk is in it: `..` leads elsewhere (not
    /// the folder it was entered from), which is re-opened by its names from the nearest
    /// folder kept open, and its remaining entries re-owned.
    #[test]
    fn reown_files_reopens_by_names_a_folder_whose_child_moved_away() {
        let x = WALK_OPEN_DIRS + 3;
        let (dir, site, ids) = walk_with_moves(x + 1, move |site| {
            let away = site.parent().unwrap().join("away");
            std::fs::rename(level(site, x + 1), away).unwrap();
        });
        for entry in ["e", "f"] {
            assert_eq!(
                owner_of(&level(&site, x).join(entry)),
                (ids.to_uid, ids.to_gid),
                "{entry}"
            );
        }
        // the moved folder itself was walked too, by its descriptor
        assert_eq!(
            owner_of(&dir.path().join("away/e")),
            (ids.to_uid, ids.to_gid)
        );
    }

    /// Both: the folder left moved out of its parent, and that parent renamed. Neither `..`
    /// nor its names lead back to it: its remaining entries are left as they are (the
    /// account moved them during the walk), and the walk goes on above it.
    #[test]
    fn reown_files_gives_up_a_folder_moved_out_of_reach_and_goes_on() {
        let x = WALK_OPEN_DIRS + 3;
        let (dir, site, ids) = walk_with_moves(x + 1, move |site| {
            let away = site.parent().unwrap().join("away");
            std::fs::rename(level(site, x + 1), away).unwrap();
            std::fs::rename(level(site, x), level(site, x - 1).join("moved")).unwrap();
        });
        let moved = level(&site, x - 1).join("moved");
        for entry in ["e", "f"] {
            assert_eq!(
                owner_of(&moved.join(entry)),
                (ids.from_uid, ids.from_gid),
                "{entry}: left"
            );
            for k in [x - 1, 3, 0] {
                assert_eq!(
                    owner_of(&level(&site, k).join(entry)),
                    (ids.to_uid, ids.to_gid),
                    "{entry} at level {k}: the walk went on"
                );
            }
        }
        assert_eq!(
            owner_of(&dir.path().join("away/e")),
            (ids.to_uid, ids.to_gid)
        );
    }
}
