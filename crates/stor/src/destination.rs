//! Where a download writes, decided in one place, the way cp(1) decides it.
//!
//! - A regular file, or a name not there yet: the bytes go to a temp file beside it
//!   (`.NAME.RANDOM.stor-part`), renamed over it only when complete and verified —
//!   never a partial file. A symlink is written *through*: the temp file goes beside
//!   its final target, which the rename replaces (the link stays a link).
//! - A FIFO or a device (`/dev/null`, `/dev/stdout`): streamed into in order, no
//!   temp file, no rename — nothing is ever renamed over what is not a regular file.
//! - A directory or a socket: refused.
//!
//! Recursive downloads (`cp -r`, `sync`) are *confined* to their target directory:
//! the path below it is walked with `openat(O_NOFOLLOW)`, so a symlinked directory
//! planted inside the target cannot lead a write outside it, and an entry that is a
//! symlink, FIFO or device is refused rather than replaced or written through.
//!
//! Temp files are held under an exclusive `flock` while they are written. A download
//! into a directory first removes temp files of this naming that nobody holds (left
//! by a killed process), once per directory per process.
//!
//! Hand-written over `rustix` (already linked by `tempfile`) because `tempfile`
//! creates by path, and a path can be redirected between check and use.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};

use crate::error::{Error, ErrorKind, Result};

/// The suffix of download temp files; `cp -r`/`sync` never upload such files.
pub const TEMP_SUFFIX: &str = ".stor-part";

/// Symlinks followed from a destination before it counts as a loop (Linux's own
/// limit for a path's resolution).
const MAX_LINKS: usize = 40;

/// Temp files younger than this are never swept, whoever holds them.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(60);

/// Whether a file name is one of stor's download temp files: `.NAME.XXXXXXXX.stor-part`,
/// eight lowercase hex digits before the suffix.
///
/// ```
/// assert!(stor::is_download_temp(".report.pdf.3f2a9c1b.stor-part".as_ref()));
/// assert!(!stor::is_download_temp("report.pdf".as_ref()));
/// assert!(!stor::is_download_temp("x.stor-part".as_ref()));
/// assert!(!stor::is_download_temp(".notes.stor-part".as_ref()));
/// assert!(!stor::is_download_temp(".a.3F2A9C1B.stor-part".as_ref()));
/// ```
pub fn is_download_temp(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let Some(stem) = b.strip_suffix(TEMP_SUFFIX.as_bytes()) else {
        return false;
    };
    // ".", a name of at least one byte, ".", 8 hex digits.
    stem.len() >= 11
        && stem[0] == b'.'
        && stem[stem.len() - 9] == b'.'
        && stem[stem.len() - 8..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// What a download writes into.
pub(crate) enum Destination {
    /// A regular file (or a new one): written whole to a temp file, then renamed.
    File(TempFile),
    /// A FIFO or device, to open for writing (which may wait for a FIFO's reader)
    /// and write in order as the bytes arrive.
    Stream(PathBuf),
    /// One of this process's open descriptors (`/dev/stdout`, `/dev/fd/N`,
    /// `/proc/self/fd/N`): written in order through it, at its offset and with its
    /// flags (`>>` appends) — never reopened, never renamed over.
    Descriptor(i32),
}

fn io_err(what: String) -> impl FnOnce(rustix::io::Errno) -> Error {
    move |e| Error::io(what, std::io::Error::from(e))
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Directory => "a directory",
        _ => "not a regular file",
    }
}

impl Destination {
    /// Opens the destination `path`. With `root`, `path` must lie under it and is
    /// confined to it (see the module docs). A FIFO's open waits for a
    /// reader, as cp(1) does: that open is left to the caller.
    pub fn open(path: &Path, root: Option<&Path>, sweeps: &Sweeps) -> Result<Destination> {
        match root {
            Some(root) => Destination::confined(root, path, sweeps),
            None => Destination::direct(path, sweeps),
        }
    }

    /// A path the user named: symlinks are followed to their final target.
    fn direct(path: &Path, sweeps: &Sweeps) -> Result<Destination> {
        // Said before a byte is fetched: otherwise the loop shows only when the
        // finished download cannot be renamed over it.
        let a_loop = || {
            Error::invalid(format!(
                "{} is a symlink loop (or a chain of more than {MAX_LINKS} links); give a \
                 path that ends in a file, a FIFO or a device",
                path.display()
            ))
        };
        let mut target = path.to_path_buf();
        let mut hops = 0;
        loop {
            if let Some(fd) = own_descriptor(&target) {
                return Ok(Destination::Descriptor(fd));
            }
            let meta = match std::fs::symlink_metadata(&target) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                // A loop in a directory above the name.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    return Err(a_loop())
                }
                Err(e) => return Err(Error::io(format!("checking {}", target.display()), e)),
            };
            let ft = FileType::from_raw_mode(std::os::unix::fs::MetadataExt::mode(&meta));
            match ft {
                FileType::RegularFile => break,
                FileType::Symlink => {
                    hops += 1;
                    if hops > MAX_LINKS {
                        return Err(a_loop());
                    }
                    let link = std::fs::read_link(&target)
                        .map_err(|e| Error::io(format!("reading link {}", target.display()), e))?;
                    target = match target.parent() {
                        Some(dir) if link.is_relative() => dir.join(link),
                        _ => link,
                    };
                }
                FileType::Directory => {
                    return Err(Error::invalid(format!(
                        "{} is a directory; give a file path (e.g. {}/NAME)",
                        path.display(),
                        path.display()
                    )))
                }
                FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                    return Ok(Destination::Stream(target));
                }
                other => {
                    return Err(Error::invalid(format!(
                        "{} is {}; a download can only write a file, a FIFO or a device",
                        target.display(),
                        kind_name(other)
                    )))
                }
            }
        }
        let name = match target.file_name() {
            Some(n) => n.to_owned(),
            None => {
                return Err(Error::invalid(format!(
                    "{} names no file; give a file path",
                    path.display()
                )))
            }
        };
        let dir_path = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = rustix::fs::open(
            &dir_path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(format!("opening directory {}", dir_path.display())))?;
        TempFile::create(dir, dir_path, name, sweeps).map(Destination::File)
    }

    /// A path below `root` that a listing produced: every directory below the root
    /// is walked without following symlinks, and only a regular file (or nothing)
    /// may be at the end.
    fn confined(root: &Path, path: &Path, sweeps: &Sweeps) -> Result<Destination> {
        let rel = path.strip_prefix(root).map_err(|_| {
            Error::invalid(format!(
                "{} is not under {}; a recursive download writes only below its target",
                path.display(),
                root.display()
            ))
        })?;
        let mut parts: Vec<&OsStr> = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => parts.push(n),
                Component::CurDir => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "{} would be written outside {}",
                        path.display(),
                        root.display()
                    )))
                }
            }
        }
        let Some(name) = parts.pop() else {
            return Err(Error::invalid(format!("{} names no file", path.display())));
        };
        let mut dir = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(format!("opening directory {}", root.display())))?;
        let mut dir_path = root.to_path_buf();
        for part in parts {
            dir_path.push(part);
            let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
            let next = match rustix::fs::openat(&dir, part, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => {
                            return Err(io_err(format!("creating {}", dir_path.display()))(e))
                        }
                    }
                    rustix::fs::openat(&dir, part, flags, Mode::empty())
                        .map_err(|e| not_a_dir(&dir, part, &dir_path, root, e))?
                }
                Err(e) => return Err(not_a_dir(&dir, part, &dir_path, root, e)),
            };
            dir = next;
        }
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let ft = FileType::from_raw_mode(st.st_mode);
                if ft != FileType::RegularFile {
                    return Err(Error::invalid(format!(
                        "{} is {}; a recursive download replaces only regular files \
                         (and never writes through links inside {})",
                        dir_path.join(name).display(),
                        kind_name(ft),
                        root.display()
                    )));
                }
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                return Err(io_err(format!(
                    "checking {}",
                    dir_path.join(name).display()
                ))(e))
            }
        }
        TempFile::create(dir, dir_path, name.to_owned(), sweeps).map(Destination::File)
    }
}

/// The descriptor a path names when it is one of this process's own: `/dev/stdin`,
/// `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N` (or this PID's).
/// Following such a link would reach whatever file the descriptor was opened on
/// (`>> log.txt`), which must be written through the descriptor, not replaced.
fn own_descriptor(path: &Path) -> Option<i32> {
    let s = path.to_str()?;
    match s {
        "/dev/stdin" => return Some(0),
        "/dev/stdout" => return Some(1),
        "/dev/stderr" => return Some(2),
        _ => {}
    }
    let pid = format!("/proc/{}/fd/", std::process::id());
    let n = s
        .strip_prefix("/dev/fd/")
        .or_else(|| s.strip_prefix("/proc/self/fd/"))
        .or_else(|| s.strip_prefix("/proc/thread-self/fd/"))
        .or_else(|| s.strip_prefix(pid.as_str()))?;
    n.parse().ok()
}

/// Why a directory below a recursive download's root could not be entered.
fn not_a_dir(dir: &OwnedFd, part: &OsStr, path: &Path, root: &Path, e: rustix::io::Errno) -> Error {
    match rustix::fs::statat(dir, part, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
            Error::invalid(format!(
                "{} is {}, not a directory; a recursive download does not follow links \
                 inside {} (they could lead outside it)",
                path.display(),
                kind_name(FileType::from_raw_mode(st.st_mode)),
                root.display()
            ))
        }
        _ => io_err(format!("opening {}", path.display()))(e),
    }
}

/// A temp file beside its target, under an exclusive lock; removed on drop unless
/// [`TempFile::persist`]ed.
pub(crate) struct TempFile {
    dir: OwnedFd,
    dir_path: PathBuf,
    name: OsString,
    temp: OsString,
    pub file: std::fs::File,
    done: bool,
    /// Left in place when dropped: the transfer journal keeps it for resuming.
    keep: AtomicBool,
}

/// The directories (device, inode) a batch of downloads already swept of stale
/// temp files; a single download makes a fresh one. `keep` names the temp files
/// the sweep must leave (those the transfer journal keeps for resuming).
#[derive(Default)]
pub(crate) struct Sweeps {
    done: Mutex<HashSet<(u64, u64)>>,
    keep: Option<Box<Keep>>,
}

/// Says whether a temp file (by its absolute path) is kept.
type Keep = dyn Fn(&Path) -> bool + Send + Sync;

impl Sweeps {
    /// Sweeps that leave the temp files `keep` says yes to.
    pub fn keeping(keep: impl Fn(&Path) -> bool + Send + Sync + 'static) -> Sweeps {
        Sweeps {
            done: Mutex::default(),
            keep: Some(Box::new(keep)),
        }
    }
}

impl TempFile {
    fn create(
        dir: OwnedFd,
        dir_path: PathBuf,
        name: OsString,
        sweeps: &Sweeps,
    ) -> Result<TempFile> {
        sweep_once(&dir, &dir_path, sweeps);
        let mut temp = OsString::from(".");
        temp.push(&name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // 0666 less the umask, like any file a program writes (and what aws cli and
        // s5cmd leave), not a temp file's private 0600.
        let mode = Mode::from_raw_mode(0o666);
        for _ in 0..16 {
            let mut t = temp.clone();
            t.push(format!(".{:08x}{TEMP_SUFFIX}", rand::random::<u32>()));
            match rustix::fs::openat(&dir, &t, flags, mode) {
                Ok(fd) => {
                    let _ = rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive);
                    return Ok(TempFile {
                        dir,
                        dir_path,
                        name,
                        temp: t,
                        file: std::fs::File::from(fd),
                        done: false,
                        keep: AtomicBool::new(false),
                    });
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => {
                    return Err(io_err(format!(
                        "creating a temp file in {}",
                        dir_path.display()
                    ))(e))
                }
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            format!("could not name a temp file in {}", dir_path.display()),
        ))
    }

    /// The final path, for messages.
    pub fn target(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// The temp file's own path.
    pub fn path(&self) -> PathBuf {
        self.dir_path.join(&self.temp)
    }

    /// Leave the file in place when dropped unpersisted (a download kept for
    /// resuming), or not.
    pub fn keep_on_drop(&self, keep: bool) {
        self.keep.store(keep, Ordering::SeqCst);
    }

    /// The temp file `path` of an interrupted download into the same target (found
    /// in the transfer journal), opened for reading and writing and locked —
    /// `None` when it is gone. It must be one of our temp files, in this one's
    /// directory, and a regular file nobody else holds.
    pub fn adopt(&self, path: &Path) -> Result<Option<TempFile>> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(None);
        };
        let same_dir = std::path::absolute(dir).ok() == std::path::absolute(&self.dir_path).ok();
        if !same_dir || !is_download_temp(name) {
            return Err(Error::invalid(format!(
                "{} is not a download temp file beside {}",
                path.display(),
                self.target().display()
            )));
        }
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_err(format!("opening {}", path.display()))(e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(io_err(format!("checking {}", path.display())))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} is held by another process", path.display()),
            ));
        }
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(io_err("reopening".into()))?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)
            .map_err(io_err("reopening".into()))?;
        let dir = rustix::io::fcntl_dupfd_cloexec(&self.dir, 0)
            .map_err(io_err(format!("opening {}", self.dir_path.display())))?;
        Ok(Some(TempFile {
            dir,
            dir_path: self.dir_path.clone(),
            name: self.name.clone(),
            temp: name.to_owned(),
            file: std::fs::File::from(fd),
            done: false,
            keep: AtomicBool::new(false),
        }))
    }

    /// Renames the temp file over the target — unless the target became something
    /// other than a regular file meanwhile.
    pub fn persist(mut self) -> Result<()> {
        match rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile => {
                return Err(Error::invalid(format!(
                    "{} became {} during the download; it was not replaced",
                    self.target().display(),
                    kind_name(FileType::from_raw_mode(st.st_mode))
                )));
            }
            _ => {}
        }
        rustix::fs::renameat(&self.dir, &self.temp, &self.dir, &self.name).map_err(io_err(
            format!("moving the download into {}", self.target().display()),
        ))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done && !self.keep.load(Ordering::SeqCst) {
            let _ = rustix::fs::unlinkat(&self.dir, &self.temp, AtFlags::empty());
        }
    }
}

/// Removes temp files of ours in `dir` that no process holds (their writer was
/// killed) and the journal does not keep, once per directory per [`Sweeps`].
fn sweep_once(dir: &OwnedFd, dir_path: &Path, sweeps: &Sweeps) {
    let Ok(st) = rustix::fs::fstat(dir) else {
        return;
    };
    let first = sweeps
        .done
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((st.st_dev, st.st_ino));
    if !first {
        return;
    }
    let Ok(entries) = rustix::fs::Dir::read_from(dir.as_fd()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if !is_download_temp(name) {
            continue;
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&fd) else {
            continue;
        };
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
        let old = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= SWEEP_MIN_AGE);
        if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
            && old
            && rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
            && !sweeps.keep.as_ref().is_some_and(|k| {
                let p = dir_path.join(name);
                k(&std::path::absolute(&p).unwrap_or(p))
            })
        {
            tracing::debug!("removing a stale download temp file {name:?}");
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(d: Destination, data: &[u8]) -> Result<()> {
        use std::io::Write;
        match d {
            Destination::File(mut t) => {
                t.file.write_all(data).unwrap();
                t.persist()
            }
            Destination::Descriptor(_) => Ok(()),
            Destination::Stream(path) => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .write_all(data)
                    .unwrap();
                Ok(())
            }
        }
    }

    #[test]
    fn a_symlink_is_written_through_and_stays_a_link() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("real.txt");
        std::fs::write(&target, "old").unwrap();
        symlink("real.txt", d.path().join("link")).unwrap();
        write(
            Destination::open(&d.path().join("link"), None, &Sweeps::default()).unwrap(),
            b"new",
        )
        .unwrap();
        assert!(std::fs::symlink_metadata(d.path().join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // A dangling link creates its target.
        symlink("sub/made.txt", d.path().join("dangling")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        write(
            Destination::open(&d.path().join("dangling"), None, &Sweeps::default()).unwrap(),
            b"x",
        )
        .unwrap();
        assert_eq!(std::fs::read(d.path().join("sub/made.txt")).unwrap(), b"x");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 4, "no temp file left: {names:?}");
    }

    #[test]
    fn a_symlink_loop_is_refused_before_anything_is_written() {
        let d = tempfile::tempdir().unwrap();
        symlink("l2", d.path().join("l1")).unwrap();
        symlink("l1", d.path().join("l2")).unwrap();
        for p in ["l1", "l1/below"] {
            let e = Destination::open(&d.path().join(p), None, &Sweeps::default())
                .err()
                .unwrap_or_else(|| panic!("{p} was taken"));
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{p}: {e}");
            assert!(e.to_string().contains("is a symlink loop"), "{p}: {e}");
        }
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temp file: {names:?}");
    }

    #[test]
    fn devices_and_fifos_are_streamed_into_never_replaced() {
        let d = Destination::open(Path::new("/dev/null"), None, &Sweeps::default()).unwrap();
        assert!(matches!(d, Destination::Stream(_)));
        write(d, b"gone").unwrap();
        let meta = std::fs::symlink_metadata("/dev/null").unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(
            meta.file_type().is_char_device(),
            "/dev/null is still a device"
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write(
            Destination::open(&fifo, None, &Sweeps::default()).unwrap(),
            b"through the pipe",
        )
        .unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        let e = Destination::open(dir.path(), None, &Sweeps::default())
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn confined_writes_never_leave_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "keep").unwrap();
        symlink(outside.path(), root.path().join("link")).unwrap();
        symlink(outside.path().join("passwd"), root.path().join("file-link")).unwrap();
        for rel in ["link/passwd", "link/new", "file-link", "../x", "a/../../x"] {
            let e = Destination::open(
                &root.path().join(rel),
                Some(root.path()),
                &Sweeps::default(),
            )
            .err()
            .unwrap_or_else(|| panic!("{rel} was allowed"));
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{rel}: {e}");
        }
        assert_eq!(
            std::fs::read(outside.path().join("passwd")).unwrap(),
            b"keep"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        // Real directories below the root are made and used.
        write(
            Destination::open(
                &root.path().join("a/b/c.txt"),
                Some(root.path()),
                &Sweeps::default(),
            )
            .unwrap(),
            b"ok",
        )
        .unwrap();
        assert_eq!(std::fs::read(root.path().join("a/b/c.txt")).unwrap(), b"ok");
    }

    #[test]
    fn own_descriptors_are_written_through_not_replaced() {
        for (p, fd) in [
            ("/dev/stdout", Some(1)),
            ("/dev/stderr", Some(2)),
            ("/dev/fd/7", Some(7)),
            ("/proc/self/fd/1", Some(1)),
            ("/dev/null", None),
            ("/dev/fd/x", None),
            ("/tmp/fd/1", None),
        ] {
            assert_eq!(own_descriptor(Path::new(p)), fd, "{p}");
        }
        let own = format!("/proc/{}/fd/3", std::process::id());
        assert_eq!(own_descriptor(Path::new(&own)), Some(3));
        let d = Destination::open(Path::new("/dev/stdout"), None, &Sweeps::default()).unwrap();
        assert!(matches!(d, Destination::Descriptor(1)));
    }

    #[test]
    fn stale_temp_files_are_swept_held_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let stale = d.path().join(".x.deadbeef.stor-part");
        let held = d.path().join(".y.cafef00d.stor-part");
        let young = d.path().join(".z.01234567.stor-part");
        let old = SystemTime::now() - Duration::from_secs(3600);
        for p in [&stale, &held, &young] {
            let f = std::fs::File::create(p).unwrap();
            if p != &young {
                f.set_modified(old).unwrap();
            }
        }
        let holder = std::fs::File::open(&held).unwrap();
        rustix::fs::flock(&holder, FlockOperation::NonBlockingLockExclusive).unwrap();
        let t = Destination::open(&d.path().join("new.txt"), None, &Sweeps::default()).unwrap();
        assert!(!stale.exists(), "a stale temp file is removed");
        assert!(held.exists(), "one a live process holds is kept");
        assert!(young.exists(), "a young one is kept");
        drop(t);
    }
}
