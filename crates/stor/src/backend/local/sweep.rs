//! Reclaiming what writes that died left in the local store, without ever touching a
//! write in flight, in this process or another.
//!
//! A writer holds a shared `flock` on its file from its creation in `tmp/` until after
//! the index commit ([`InFlight`]); the lock belongs to the inode, so it follows the
//! rename into `blobs/`, and a copy locks its source's inode before hard-linking a
//! new name to it. The sweeper removes only files it can lock exclusively: files of
//! dead writers, whose locks the kernel dropped with them. Creating a temp file and
//! locking it are two steps, so writers hold a shared lock on `tmp/` itself across
//! both ([`Creating`]) and the sweeper an exclusive one while it looks at `tmp/`.
//! A blob is removed only if the index does not name it once it is locked (the
//! writer may have committed and let go between the first look and the lock).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::Result;
use crate::types::SweepReport;

/// Names of temp files in `tmp/` start with this.
pub(super) const TEMP_PREFIX: &str = ".put-";

/// Blobs looked at per round: each one locked holds a file descriptor.
const ROUND: usize = 256;

#[derive(Clone, Copy)]
enum Lock {
    Shared,
    Exclusive,
    /// Exclusive, or `false` at once when someone holds a lock.
    TryExclusive,
}

fn flock(f: &File, how: Lock) -> io::Result<bool> {
    let op = match how {
        Lock::Shared => libc::LOCK_SH,
        Lock::Exclusive => libc::LOCK_EX,
        Lock::TryExclusive => libc::LOCK_EX | libc::LOCK_NB,
    };
    loop {
        // SAFETY: flock only reads the descriptor, which `f` keeps open for the call.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if matches!(how, Lock::TryExclusive) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Opens without following a symlink, and without blocking on a FIFO planted there.
fn open_nofollow(path: &Path, dir: bool) -> io::Result<File> {
    let mut flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    if dir {
        flags |= libc::O_DIRECTORY;
    }
    OpenOptions::new().read(true).custom_flags(flags).open(path)
}

/// A write in flight: its file stays locked until this is dropped, after the commit.
#[derive(Debug)]
pub(super) struct InFlight {
    _locked: File,
}

impl InFlight {
    /// Marks the file `f` is open on (its inode, under whatever name it gets).
    pub(super) fn mark(f: &File) -> io::Result<InFlight> {
        // A second descriptor of the same open file: the lock lives while either does.
        let f = f.try_clone()?;
        flock(&f, Lock::Shared)?;
        Ok(InFlight { _locked: f })
    }

    /// Marks the file at `path`, before a new name is linked to it.
    pub(super) fn open(path: &Path) -> io::Result<InFlight> {
        let f = open_nofollow(path, false)?;
        flock(&f, Lock::Shared)?;
        Ok(InFlight { _locked: f })
    }
}

/// Held by a writer while it creates its temp file and marks it [`InFlight`].
pub(super) struct Creating {
    _locked: File,
}

impl Creating {
    pub(super) fn lock(tmp: &Path) -> io::Result<Creating> {
        let d = open_nofollow(tmp, true)?;
        flock(&d, Lock::Shared)?;
        Ok(Creating { _locked: d })
    }
}

/// The file at `path`, locked exclusively, and its size: `None` when someone holds a
/// lock on it, or it is gone, or it is not a regular file.
fn lock_unused(path: &Path) -> io::Result<Option<(File, u64)>> {
    let f = match open_nofollow(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() || !flock(&f, Lock::TryExclusive)? {
        return Ok(None);
    }
    Ok(Some((f, meta.len())))
}

/// Removes a file; `false` when it was already gone.
fn remove(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the temp files in `tmp` of writers that are gone. With `wait` false it
/// gives up at once (removing nothing) while a writer is creating its temp file.
pub(super) fn temp_files(tmp: &Path, wait: bool) -> io::Result<SweepReport> {
    let mut report = SweepReport::default();
    let dir = open_nofollow(tmp, true)?;
    let how = if wait {
        Lock::Exclusive
    } else {
        Lock::TryExclusive
    };
    if !flock(&dir, how)? {
        return Ok(report);
    }
    for entry in std::fs::read_dir(tmp)? {
        let path = entry?.path();
        let is_temp = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(TEMP_PREFIX));
        if !is_temp {
            continue;
        }
        if let Some((_locked, len)) = lock_unused(&path)? {
            if remove(&path)? {
                report.temp_files += 1;
                report.temp_bytes += len;
            }
        }
    }
    Ok(report)
}

/// Whether `name` is one `new_blob_name` makes: 32 lowercase hex digits. Anything else
/// in `blobs/` was not put there by the store and is left alone.
fn is_blob_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Removes the blobs in `blobs` that no object points at and no writer holds;
/// `referenced` reads the names the index holds (a fresh read each call).
pub(super) fn orphan_blobs(
    blobs: &Path,
    mut referenced: impl FnMut() -> Result<HashSet<String>>,
) -> Result<SweepReport> {
    let io_err = |e| crate::Error::io(format!("sweeping {}", blobs.display()), e);
    let mut report = SweepReport::default();
    // The directory first, then the index: a blob renamed in after this listing is
    // not looked at, one listed and committed since is in the index or still locked.
    let mut names = Vec::new();
    for entry in std::fs::read_dir(blobs).map_err(io_err)? {
        let name = entry.map_err(io_err)?.file_name();
        if let Some(n) = name.to_str().filter(|n| is_blob_name(n)) {
            names.push(n.to_owned());
        }
    }
    let known = referenced()?;
    names.retain(|n| !known.contains(n));
    drop(known);
    for round in names.chunks(ROUND) {
        let mut locked = Vec::new();
        for name in round {
            if let Some((f, len)) = lock_unused(&blobs.join(name)).map_err(io_err)? {
                locked.push((name, f, len));
            }
        }
        if locked.is_empty() {
            continue;
        }
        // Locked now, so no writer can still commit them; a writer that committed
        // one and let go after the first look shows here.
        let known = referenced()?;
        for (name, _locked, len) in &locked {
            if !known.contains(*name) && remove(&blobs.join(name)).map_err(io_err)? {
                report.orphan_blobs += 1;
                report.orphan_bytes += len;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_left_alone_while_a_writer_is_creating_one() {
        let tmp = tempfile::tempdir().unwrap();
        let creating = Creating::lock(tmp.path()).unwrap();
        // Created, not yet marked: the sweeper cannot tell it from a dead writer's.
        let file = tmp.path().join(".put-new");
        std::fs::write(&file, b"x").unwrap();
        let swept = temp_files(tmp.path(), false).unwrap();
        assert_eq!(swept, SweepReport::default());
        assert!(file.exists());
        drop(creating);
        assert_eq!(temp_files(tmp.path(), false).unwrap().temp_files, 1);
        assert!(!file.exists());
    }

    #[test]
    fn a_blob_committed_after_the_first_look_is_kept() {
        let blobs = tempfile::tempdir().unwrap();
        let name = "0123456789abcdef0123456789abcdef";
        std::fs::write(blobs.path().join(name), b"data").unwrap();
        // The first read of the index misses it (its writer had not committed), the
        // one after the lock sees it (the writer committed and let go in between).
        let mut reads = 0;
        let swept = orphan_blobs(blobs.path(), || {
            reads += 1;
            Ok(match reads {
                1 => HashSet::new(),
                _ => HashSet::from([name.to_owned()]),
            })
        })
        .unwrap();
        assert_eq!(swept, SweepReport::default());
        assert!(blobs.path().join(name).exists());
        let swept = orphan_blobs(blobs.path(), || Ok(HashSet::new())).unwrap();
        assert_eq!((swept.orphan_blobs, swept.orphan_bytes), (1, 4));
    }
}
