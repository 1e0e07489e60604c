//! Many-object transfers: a directory tree up to a prefix, a prefix down to a
//! directory. Every object flows through the same `Storage`, so through its one
//! request budget and byte budget; each gets its own result, and one failure does
//! not stop the others unless [`BatchOptions::fail_fast`] asks it to.
//!
//! ```
//! # tokio_test::block_on(async {
//! use stor::{BatchOptions, Storage, StorageConfig};
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::create_dir_all(dir.path().join("2026/11")).unwrap();
//! std::fs::write(dir.path().join("2026/11/a.json"), "{}").unwrap();
//! std::fs::write(dir.path().join("index.json"), "[]").unwrap();
//!
//! let storage = Storage::new(StorageConfig::memory()).await?;
//! storage.create_bucket("news").await?;
//! let up = storage.upload_dir("news", dir.path(), "batch/", BatchOptions::default()).await?;
//! assert_eq!(up.len(), 2);
//! assert!(up.iter().all(|o| o.result.is_ok()));
//!
//! let out = tempfile::tempdir().unwrap();
//! let down = storage.download_prefix("news", "batch/", out.path(), BatchOptions::default()).await?;
//! assert_eq!(down.len(), 2);
//! assert_eq!(std::fs::read(out.path().join("2026/11/a.json")).unwrap(), b"{}");
//! # Ok::<(), stor::Error>(()) }).unwrap();
//! ```

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::core::BucketArg;
use crate::destination::Sweeps;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{file_identity, Journal};
use crate::reserved::{format_mtime, MTIME_KEY};
use crate::storage::Storage;
use crate::transfer::FileTarget;
use crate::types::{
    DownloadOptions, ListOptions, ObjectInfo, Progress, TransferResult, UploadOptions,
};

/// One object of a batch: the local path and the key it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// The local file.
    pub path: PathBuf,
    /// The object's key.
    pub key: String,
    /// Size in bytes, when known before the transfer.
    pub size: Option<u64>,
    /// The object's ETag, when a listing told it (downloads): a batch that skips
    /// objects an interrupted run finished ([`BatchOptions::journal`]) skips a
    /// download only when the object is still this version.
    pub etag: Option<String>,
}

/// What happened to one object of a batch.
#[derive(Debug)]
pub struct BatchOutcome {
    /// The object.
    pub item: BatchItem,
    /// Its transfer, or why it failed (or was not started).
    pub result: Result<TransferResult>,
}

/// Options of a many-object transfer.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    /// Headers and metadata of every upload (their `progress` is ignored: see
    /// [`BatchOptions::progress`]).
    pub upload: UploadOptions,
    /// Stop starting objects after the first failure (those not started fail with
    /// [`ErrorKind::Cancelled`]).
    pub fail_fast: bool,
    /// Objects in flight at once; `max_concurrency` when unset.
    pub concurrency: Option<usize>,
    /// Called with bytes done and total across the whole batch.
    pub progress: Option<Progress>,
    /// Downloads: the directory every item's path lies in. Writes stay inside it
    /// whatever is planted there: no symlink below it is followed, and only regular
    /// files are replaced (a symlink, FIFO or device there fails that item).
    /// [`Storage::download_prefix`] sets it to its target directory.
    pub root: Option<PathBuf>,
    /// Uploads: store each file's modification time with its object, under
    /// [`MTIME_KEY`](crate::MTIME_KEY) (read just before the file is, so a file that changes while it
    /// uploads is never recorded as its newer self). A later sync compares it
    /// exactly, where the object's Last-Modified is only the upload's second.
    pub keep_mtime: bool,
    /// Journal the batch: record each object it finishes, and skip those that an
    /// interrupted run of the same batch (same direction, store, bucket, and the
    /// items' common directory and key prefix) finished and that are unchanged
    /// since — a file of the same size, modification time and inode; for a
    /// download, the object still at the ETag its item carries and the file it
    /// wrote untouched. [`Storage::upload_dir`] and [`Storage::download_prefix`]
    /// set it. The record goes when the batch ends with every object done.
    pub journal: bool,
    /// Every object starts fresh: no interrupted upload or download is resumed and
    /// none is journaled (see [`UploadOptions::no_resume`]).
    pub no_resume: bool,
}

/// A key's relative part as a path below `dir`, refusing anything that would land
/// outside it (`..`, absolute paths, empty segments that mean "the directory").
pub fn path_under(dir: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    // Only plain names ("." allowed), and at least one: "." or "a/.." would name
    // the directory itself.
    let safe = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && p.components().any(|c| matches!(c, Component::Normal(_)));
    if !safe {
        return Err(Error::invalid(format!(
            "the key part {rel:?} would be written outside {}; skipped",
            dir.display()
        )));
    }
    Ok(dir.join(p))
}

/// `key` as a prefix: itself when empty or ending in `/`, else with `/` added.
pub fn dir_prefix(key: &str) -> String {
    if key.is_empty() || key.ends_with('/') {
        key.to_owned()
    } else {
        format!("{key}/")
    }
}

/// What a walk of a directory tree found: the files to upload and what it left out.
#[derive(Debug, Default)]
pub struct UploadPlan {
    /// The regular files and the keys they get, sorted by key.
    pub items: Vec<BatchItem>,
    /// Entries left out, and why.
    pub skipped: Vec<Skipped>,
}

/// An entry a walk left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry.
    pub path: PathBuf,
    /// The key it would have had (a directory's ends in `/`), when its name has one.
    /// A sync never deletes what is at this key: its source exists.
    pub key: Option<String>,
    /// Why it was left out.
    pub reason: String,
    /// A failure (the command should report it and fail), not just an entry that is
    /// not a file (a FIFO, a dangling symlink).
    pub failed: bool,
}

/// The regular files under `dir` and the keys they get under `prefix` (the path
/// below `dir`, `/`-separated), sorted by key. Symlinks are followed — to files and
/// to directories, a directory seen twice on one path (a loop) only once — unless
/// `follow_symlinks` is false. Every entry left out is in [`UploadPlan::skipped`]:
/// FIFOs, sockets, devices, dangling symlinks and loops (not failures); names that
/// are not UTF-8 (no key maps to them one to one) and unreadable entries
/// (failures). Download temp files of stor's (`.NAME.RANDOM.stor-part`) are left
/// out as well.
pub fn plan_upload(dir: &Path, prefix: &str, follow_symlinks: bool) -> Result<UploadPlan> {
    use std::os::unix::fs::MetadataExt;
    struct Walk {
        follow: bool,
        /// (device, inode) of the directories on the current path.
        ancestors: Vec<(u64, u64)>,
        plan: UploadPlan,
    }
    impl Walk {
        fn skip(&mut self, path: PathBuf, key: Option<String>, reason: String, failed: bool) {
            self.plan.skipped.push(Skipped {
                path,
                key,
                reason,
                failed,
            });
        }
        fn dir(&mut self, dir: &Path, rel: &str) {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    let key = Some(rel.to_owned());
                    return self.skip(dir.to_path_buf(), key, format!("cannot read it: {e}"), true);
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        let why = format!("cannot read it: {e}");
                        return self.skip(dir.to_path_buf(), Some(rel.to_owned()), why, true);
                    }
                };
                let path = entry.path();
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    let why = "its name is not valid UTF-8, so no key maps to it one to one; \
                               rename it"
                        .to_owned();
                    self.skip(path, None, why, true);
                    continue;
                };
                if crate::destination::is_download_temp(name.as_ref()) {
                    let why = "a download temp file of stor's".to_owned();
                    self.skip(path, Some(format!("{rel}{name}")), why, false);
                    continue;
                }
                let key = format!("{rel}{name}");
                let lmeta = match std::fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        self.skip(path, Some(key), format!("cannot read it: {e}"), true);
                        continue;
                    }
                };
                let meta = if lmeta.file_type().is_symlink() {
                    if !self.follow {
                        let why = "a symlink (not followed)".to_owned();
                        self.skip(path, Some(key), why, false);
                        continue;
                    }
                    match std::fs::metadata(&path) {
                        Ok(m) => m,
                        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                            self.skip(path, Some(key), "a symlink loop".into(), false);
                            continue;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            self.skip(path, Some(key), "a dangling symlink".into(), false);
                            continue;
                        }
                        Err(e) => {
                            self.skip(path, Some(key), format!("cannot read it: {e}"), true);
                            continue;
                        }
                    }
                } else {
                    lmeta
                };
                if meta.is_dir() {
                    let id = (meta.dev(), meta.ino());
                    if self.ancestors.contains(&id) {
                        let why = "a symlink loop (it leads back to a directory above it)";
                        self.skip(path, Some(format!("{key}/")), why.into(), false);
                        continue;
                    }
                    self.ancestors.push(id);
                    self.dir(&path, &format!("{key}/"));
                    self.ancestors.pop();
                } else if meta.is_file() {
                    self.plan.items.push(BatchItem {
                        path,
                        key,
                        size: Some(meta.len()),
                        etag: None,
                    });
                } else {
                    let what = special_kind(&meta.file_type());
                    let why = format!("{what}; only regular files are uploaded");
                    self.skip(path, Some(key), why, false);
                }
            }
        }
    }
    let meta =
        std::fs::metadata(dir).map_err(|e| Error::invalid(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut walk = Walk {
        follow: follow_symlinks,
        ancestors: vec![(meta.dev(), meta.ino())],
        plan: UploadPlan::default(),
    };
    let prefix = dir_prefix(prefix);
    walk.dir(dir, &prefix);
    let mut plan = walk.plan;
    plan.items.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(plan)
}

/// What a file that is not regular nor a directory is, for messages.
fn special_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Why `rel` (a key below a download's prefix) has no file path of its own: a
/// segment that is empty (`a//b`), `.` or `..` would make the path name another key's
/// file or leave the directory. `None` when it maps one to one.
fn not_one_to_one(rel: &str) -> Option<&'static str> {
    if rel.starts_with('/') || rel.split('/').any(str::is_empty) {
        Some("an empty path segment")
    } else if rel.split('/').any(|s| s == "..") {
        Some("a `..` path segment (it would lead outside the directory)")
    } else if rel.split('/').any(|s| s == ".") {
        Some("a `.` path segment")
    } else {
        None
    }
}

/// The same key with its non-canonical segments folded, as a path would fold them.
fn folded(rel: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// [`Storage::plan_download`] for objects already listed under `prefix` (a
/// directory prefix, see [`dir_prefix`]): the path under `dir` of each, or why it has
/// none of its own.
pub fn download_paths(prefix: &str, dir: &Path, objects: &[ObjectInfo]) -> Vec<Result<BatchItem>> {
    let objects: Vec<_> = objects
        .iter()
        .filter(|o| o.key.starts_with(prefix) && !o.key.ends_with('/'))
        .collect();
    let rels: HashSet<&str> = objects.iter().map(|o| &o.key[prefix.len()..]).collect();
    // Every path that keys need as a directory.
    let dirs: HashSet<&str> = rels
        .iter()
        .flat_map(|r| r.match_indices('/').map(move |(i, _)| &r[..i]))
        .collect();
    objects
        .iter()
        .map(|o| {
            let rel = &o.key[prefix.len()..];
            let refuse = |msg: String| Err(Error::invalid(msg).with_location(&o.bucket, &o.key));
            if let Some(why) = not_one_to_one(rel) {
                let f = folded(rel);
                return refuse(if rels.contains(f.as_str()) && !f.is_empty() {
                    format!(
                        "the keys {:?} and {:?} would be the same file {}; neither \
                         is written over the other — {:?} was skipped",
                        o.key,
                        format!("{prefix}{f}"),
                        dir.join(&f).display(),
                        o.key
                    )
                } else {
                    format!(
                        "the key has {why}, so it has no file path of its own under {}; \
                         skipped",
                        dir.display()
                    )
                });
            }
            // A file here and a directory of the same name for keys below it.
            let mut at = 0;
            while let Some(i) = rel[at..].find('/') {
                let parent = &rel[..at + i];
                if rels.contains(parent) {
                    return refuse(format!(
                        "{:?} needs a directory {} where the key {:?} needs a file; \
                         skipped",
                        o.key,
                        dir.join(parent).display(),
                        format!("{prefix}{parent}")
                    ));
                }
                at += i + 1;
            }
            if dirs.contains(rel) {
                return refuse(format!(
                    "{:?} needs a file {} where keys below {:?} need a directory; skipped",
                    o.key,
                    dir.join(rel).display(),
                    format!("{}/", o.key)
                ));
            }
            path_under(dir, rel)
                .map(|path| BatchItem {
                    path,
                    key: o.key.clone(),
                    size: Some(o.size),
                    etag: o.etag.clone(),
                })
                .map_err(|e| e.with_location(&o.bucket, &o.key))
        })
        .collect()
}

/// Option<String> of a bucket argument, owned.
type BatchArg = Option<String>;

/// The longest common prefix of `keys`.
fn common_prefix<'a>(mut keys: impl Iterator<Item = &'a str>) -> &'a str {
    let Some(first) = keys.next() else {
        return "";
    };
    let mut n = first.len();
    for k in keys {
        n = first
            .bytes()
            .zip(k.bytes())
            .take(n)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Never split a character.
    while !first.is_char_boundary(n) {
        n -= 1;
    }
    &first[..n]
}

/// The deepest directory holding every path (absolute).
fn common_dir<'a>(paths: impl Iterator<Item = &'a Path>) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for p in paths {
        let dir = crate::transfer::absolute(p.parent().unwrap_or(Path::new("")));
        common = Some(match common {
            None => dir,
            Some(c) => c
                .components()
                .zip(dir.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common.unwrap_or_default()
}

/// The journal of a batch ([`BatchOptions::journal`]): what an interrupted run of
/// it finished, and what this run finishes — written in groups (every 64 objects
/// or 200 ms, and at the end), so small files do not pay a commit each; a crash
/// loses at most the last group, whose objects are sent again.
struct BatchJournal {
    journal: Arc<Journal>,
    id: i64,
    up: bool,
    /// What the interrupted run finished: (key, path) → what it was then.
    done: crate::journal::Finished,
    failed: AtomicBool,
}

impl BatchJournal {
    /// What an item is now, as recorded when it is done: the file's size and
    /// identity; for a download, the object's ETag too.
    fn identity(&self, item: &BatchItem, etag: Option<&str>) -> Option<String> {
        let meta = std::fs::symlink_metadata(&item.path).ok()?;
        // A download wrote a regular file; an upload may have read one through a link.
        let readable = meta.is_file() || self.up && meta.file_type().is_symlink();
        if !readable {
            return None;
        }
        let meta = match self.up {
            true => std::fs::metadata(&item.path).ok()?,
            false => meta,
        };
        let file = format!("{}:{}", meta.len(), file_identity(&meta));
        match self.up {
            true => Some(file),
            false => Some(format!("{}\n{file}", etag?)),
        }
    }

    /// The result of an item an interrupted run finished and that is unchanged.
    fn finished_before(&self, item: &BatchItem) -> Option<TransferResult> {
        let was = self.done.get(&(item.key.clone(), item.path.clone()))?;
        let now = self.identity(item, item.etag.as_deref())?;
        if *was != now {
            return None;
        }
        let bytes = item
            .size
            .or_else(|| std::fs::metadata(&item.path).ok().map(|m| m.len()))?;
        Some(TransferResult {
            bucket: String::new(),
            key: item.key.clone(),
            bytes,
            etag: item.etag.clone(),
            attempts: 0,
            elapsed: Duration::ZERO,
            multipart: false,
            checksum: None,
            resumed: bytes,
        })
    }

    /// Records an item done, at once: a kill -9 right after must not send it again
    /// (one small transaction in WAL mode, without fsync — cheap next to an
    /// object's requests; batching them lost the last fraction of a second).
    fn done(&self, item: &BatchItem, r: &TransferResult) {
        let Some(now) = self.identity(item, r.etag.as_deref()) else {
            return;
        };
        self.write(&[(item.key.clone(), item.path.clone(), now)]);
    }

    fn write(&self, items: &[(String, PathBuf, String)]) {
        if let Err(e) = self.journal.batch_done(self.id, items) {
            tracing::warn!("the transfer journal could not record finished objects: {e}");
        }
    }

    /// The batch ran to its end: over when every object was done, else kept (a
    /// re-run skips what this one finished).
    fn end(&self) {
        if !self.failed.load(Ordering::SeqCst) {
            if let Err(e) = self.journal.batch_end(self.id) {
                tracing::warn!("could not remove a finished batch from the transfer journal: {e}");
            }
        }
    }
}

/// Per-object progress adapters that add up into one batch-wide callback.
struct Tally {
    done: AtomicU64,
    total: u64,
    sink: Progress,
}

impl Tally {
    fn new(sink: Option<Progress>, items: &[BatchItem]) -> Option<Arc<Tally>> {
        let total = items.iter().filter_map(|i| i.size).sum();
        sink.map(|sink| {
            Arc::new(Tally {
                done: AtomicU64::new(0),
                total,
                sink,
            })
        })
    }

    /// A callback for one object: forwards its growth to the batch total.
    fn object(self: &Arc<Tally>) -> Progress {
        let t = self.clone();
        let last = AtomicU64::new(0);
        Progress::new(move |done, _| {
            let before = last.swap(done, Ordering::Relaxed);
            let add = done.saturating_sub(before);
            let now = t.done.fetch_add(add, Ordering::Relaxed) + add;
            t.sink.report(now, Some(t.total));
        })
    }
}

impl Storage {
    /// The journal of a batch with [`BatchOptions::journal`], when it can be had.
    fn batch_journal(
        &self,
        up: bool,
        bucket: BatchArg,
        items: &[BatchItem],
        root: Option<&Path>,
    ) -> Option<Arc<BatchJournal>> {
        let core = self.core();
        let bucket = core.bucket(bucket.as_deref()).ok()?;
        let journal = core.journal(true)?;
        let keys = items.iter().map(|i| i.key.as_str());
        let common = common_prefix(keys);
        let prefix = common[..common.rfind('/').map_or(0, |i| i + 1)].to_owned();
        let dir = match root {
            Some(r) => crate::transfer::absolute(r),
            None => common_dir(items.iter().map(|i| i.path.as_path())),
        };
        let store = core.store_id();
        let way = if up { "up" } else { "down" };
        let ident = format!("{way}\n{store}\n{bucket}\n{prefix}\n{}", dir.display());
        match journal.batch_begin(&ident, &store, &bucket, &prefix) {
            Ok((id, done)) => {
                if !done.is_empty() {
                    tracing::info!(
                        "continuing an interrupted batch: {} object(s) it finished are \
                         skipped where unchanged",
                        done.len()
                    );
                }
                Some(Arc::new(BatchJournal {
                    journal,
                    id,
                    up,
                    done,
                    failed: AtomicBool::new(false),
                }))
            }
            Err(e) => {
                tracing::warn!("the transfer journal cannot record this batch ({e}); it will not skip what it finished if it is run again");
                None
            }
        }
    }

    /// Uploads each item's file to its key, `concurrency` objects at a time; yields
    /// outcomes as they finish.
    pub fn upload_many<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        items: Vec<BatchItem>,
        opts: BatchOptions,
    ) -> BoxStream<'static, BatchOutcome> {
        let bucket = bucket.into().map(str::to_owned);
        let this = self.clone();
        let keep_mtime = opts.keep_mtime;
        let journal = match opts.journal {
            true => self.batch_journal(true, bucket.clone(), &items, None),
            false => None,
        };
        self.run_batch(items, opts, journal, move |item, upload, progress| {
            let (this, bucket) = (this.clone(), bucket.clone());
            async move {
                let mut o = upload;
                o.progress = progress;
                if keep_mtime {
                    // Before the upload reads a byte: see `BatchOptions::keep_mtime`.
                    let t = std::fs::metadata(&item.path).and_then(|m| m.modified());
                    if let Some(v) = t.ok().and_then(format_mtime) {
                        o.metadata.insert(MTIME_KEY.to_owned(), v);
                    }
                }
                this.upload_file(bucket.as_deref(), &item.key, &item.path, o)
                    .await
            }
        })
    }

    /// Downloads each item's key to its file, `concurrency` objects at a time
    /// (parent directories are created); yields outcomes as they finish.
    pub fn download_many<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        items: Vec<BatchItem>,
        opts: BatchOptions,
    ) -> BoxStream<'static, BatchOutcome> {
        let bucket = bucket.into().map(str::to_owned);
        let this = self.clone();
        let root = opts.root.clone();
        let no_resume = opts.no_resume;
        let journal = match opts.journal {
            true => self.batch_journal(false, bucket.clone(), &items, root.as_deref()),
            false => None,
        };
        let sweeps: Arc<Sweeps> = Arc::new(self.sweeps());
        // Each directory is made once per batch, not once per file: many files share
        // one, and every tokio::fs call is a hop to the blocking pool. (Below a root,
        // the confined walk makes them.)
        let made: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        self.run_batch(items, opts, journal, move |item, _, progress| {
            let (this, bucket, made) = (this.clone(), bucket.clone(), made.clone());
            let (root, sweeps) = (root.clone(), sweeps.clone());
            async move {
                let dir = match &root {
                    Some(r) => Some(r.as_path()),
                    None => item.path.parent(),
                };
                if let Some(dir) = dir {
                    let seen = made.lock().unwrap_or_else(|p| p.into_inner()).contains(dir);
                    if !seen {
                        tokio::fs::create_dir_all(dir)
                            .await
                            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                        made.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(dir.to_path_buf());
                    }
                }
                let o = DownloadOptions {
                    progress,
                    no_resume,
                    ..Default::default()
                };
                let target = FileTarget {
                    path: &item.path,
                    root: root.as_deref(),
                    sweeps: &sweeps,
                };
                this.download_file_sized(bucket.as_deref(), &item.key, target, o, item.size)
                    .await
            }
        })
    }

    fn run_batch<F, Fut>(
        &self,
        items: Vec<BatchItem>,
        opts: BatchOptions,
        journal: Option<Arc<BatchJournal>>,
        run: F,
    ) -> BoxStream<'static, BatchOutcome>
    where
        F: Fn(BatchItem, UploadOptions, Option<Progress>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<TransferResult>> + Send + 'static,
    {
        let conc = opts
            .concurrency
            .unwrap_or(self.config().max_concurrency)
            .max(1);
        let tally = Tally::new(opts.progress.clone(), &items);
        let failed = Arc::new(AtomicBool::new(false));
        let run = Arc::new(run);
        let mut upload = opts.upload.clone();
        upload.no_resume |= opts.no_resume;
        let tail = journal.clone();
        futures::stream::iter(items)
            .map(move |item| {
                let (run, failed, tally) = (run.clone(), failed.clone(), tally.clone());
                let (upload, fail_fast) = (upload.clone(), opts.fail_fast);
                let journal = journal.clone();
                async move {
                    if fail_fast && failed.load(Ordering::SeqCst) {
                        let e = Error::new(
                            ErrorKind::Cancelled,
                            "not started: an earlier object failed (fail_fast)",
                        );
                        return BatchOutcome {
                            item,
                            result: Err(e),
                        };
                    }
                    let progress = tally.as_ref().map(|t| t.object());
                    if let Some(r) = journal.as_ref().and_then(|j| j.finished_before(&item)) {
                        if let Some(p) = &progress {
                            p.report(r.bytes, Some(r.bytes));
                        }
                        return BatchOutcome {
                            item,
                            result: Ok(r),
                        };
                    }
                    // A create-only write that found the key taken is a skip, and
                    // finished: a re-run must skip it again, not take the batch for
                    // interrupted and report the others as uploaded by it.
                    let create_only =
                        upload.condition == Some(crate::types::WriteCondition::IfAbsent);
                    let result = run(item.clone(), upload, progress).await;
                    let taken = create_only
                        && matches!(&result, Err(e) if e.kind() == ErrorKind::AlreadyExists);
                    match (&result, &journal) {
                        (Ok(r), Some(j)) => j.done(&item, r),
                        (Err(_), Some(j)) if !taken => j.failed.store(true, Ordering::SeqCst),
                        _ => {}
                    }
                    if result.is_err() && !taken {
                        failed.store(true, Ordering::SeqCst);
                    }
                    BatchOutcome { item, result }
                }
            })
            .buffer_unordered(conc)
            .map(Some)
            .chain(futures::stream::once(async move {
                // The last outcome is out: a batch with every object done is over.
                if let Some(j) = tail {
                    j.end();
                }
                None
            }))
            .filter_map(|o| async move { o })
            .boxed()
    }

    /// The objects under `prefix` and the paths they get under `dir` (the key's
    /// part after the prefix), one to one: a key whose path would fold into another
    /// one's (`a//b`, `a/./b`), leave `dir` (`../x`), or need a file and a directory
    /// at one path (`x` beside `x/y`) is refused with an error naming the keys
    /// involved, and nothing is written for it. Keys ending in `/` ("directory
    /// markers") are left out.
    pub async fn plan_download<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
        dir: &Path,
    ) -> Result<Vec<Result<BatchItem>>> {
        let prefix = dir_prefix(prefix);
        let objects: Vec<_> = self
            .list_stream(bucket, ListOptions::default().prefix(prefix.clone()))
            .try_collect()
            .await?;
        Ok(download_paths(&prefix, dir, &objects))
    }

    /// Uploads a directory tree under `prefix`; one outcome per file, sorted by key.
    pub async fn upload_dir<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        dir: impl AsRef<Path>,
        prefix: &str,
        opts: BatchOptions,
    ) -> Result<Vec<BatchOutcome>> {
        let plan = plan_upload(dir.as_ref(), prefix, true)?;
        let opts = BatchOptions {
            journal: !opts.no_resume,
            ..opts
        };
        let mut out: Vec<_> = self.upload_many(bucket, plan.items, opts).collect().await;
        out.extend(plan.skipped.into_iter().filter(|s| s.failed).map(|s| {
            let msg = format!("{}: {}", s.path.display(), s.reason);
            BatchOutcome {
                item: BatchItem {
                    path: s.path,
                    key: s.key.unwrap_or_default(),
                    size: None,
                    etag: None,
                },
                result: Err(Error::invalid(msg)),
            }
        }));
        out.sort_by(|a, b| a.item.key.cmp(&b.item.key));
        Ok(out)
    }

    /// Downloads every object under `prefix` into `dir`, keeping the key's path
    /// below the prefix; one outcome per object, sorted by key.
    pub async fn download_prefix<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
        dir: impl AsRef<Path>,
        opts: BatchOptions,
    ) -> Result<Vec<BatchOutcome>> {
        let bucket = bucket.into();
        let planned = self.plan_download(bucket, prefix, dir.as_ref()).await?;
        let mut refused = Vec::new();
        let mut items = Vec::new();
        for p in planned {
            match p {
                Ok(i) => items.push(i),
                Err(e) => refused.push(e),
            }
        }
        let opts = BatchOptions {
            root: Some(dir.as_ref().to_path_buf()),
            journal: !opts.no_resume,
            ..opts
        };
        let mut out: Vec<_> = self.download_many(bucket, items, opts).collect().await;
        out.extend(refused.into_iter().map(|e| BatchOutcome {
            item: BatchItem {
                path: PathBuf::new(),
                key: e.key().unwrap_or_default().to_owned(),
                size: None,
                etag: None,
            },
            result: Err(e),
        }));
        out.sort_by(|a, b| a.item.key.cmp(&b.item.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reserved::stored_mtime;
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn keys_never_escape_the_target_directory() {
        let d = Path::new("/tmp/out");
        assert_eq!(path_under(d, "a/b.txt").unwrap(), d.join("a/b.txt"));
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "..", ".", "./"] {
            assert!(path_under(d, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tree_maps_to_sorted_keys_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/d.txt"), "12").unwrap();
        std::fs::write(dir.path().join("a.txt"), "1").unwrap();
        let plan = plan_upload(dir.path(), "up", true).unwrap();
        let keys: Vec<_> = plan
            .items
            .iter()
            .map(|i| (i.key.as_str(), i.size))
            .collect();
        assert_eq!(keys, [("up/a.txt", Some(1)), ("up/b/c/d.txt", Some(2))]);
        assert!(plan.skipped.is_empty());
        assert!(plan_upload(&dir.path().join("a.txt"), "", true).is_err());
        assert!(plan_upload(&dir.path().join("missing"), "", true).is_err());
    }

    /// Every kind of entry a tree can hold: uploaded, or reported with a reason —
    /// never merged (non-UTF-8 names) and never silently dropped.
    #[test]
    fn a_walk_reports_every_entry_it_leaves_out() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("lib")).unwrap();
        std::fs::write(outside.path().join("lib/x.txt"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("plain.txt"), "p").unwrap();
        // Two names that to_string_lossy would both turn into "bad-\u{FFFD}.txt".
        for b in [&b"bad-\xff.txt"[..], &b"bad-\xfe.txt"[..]] {
            std::fs::write(d.join(std::ffi::OsStr::from_bytes(b)), "n").unwrap();
        }
        symlink(outside.path().join("lib"), d.join("linked-dir")).unwrap();
        symlink("plain.txt", d.join("linked-file")).unwrap();
        symlink("nowhere", d.join("dangling")).unwrap();
        symlink("loop-b", d.join("loop-a")).unwrap();
        symlink("loop-a", d.join("loop-b")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        symlink("..", d.join("sub/up")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::write(d.join(".big.iso.0badf00d.stor-part"), "partial").unwrap();

        let plan = plan_upload(d, "", true).unwrap();
        let keys: Vec<_> = plan.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["linked-dir/x.txt", "linked-file", "plain.txt"]);
        let mut why: Vec<_> = plan
            .skipped
            .iter()
            .map(|s| (s.key.clone().unwrap_or_else(|| "?".into()), s.failed))
            .collect();
        why.sort();
        assert_eq!(
            why,
            [
                (".big.iso.0badf00d.stor-part".to_owned(), false),
                ("?".into(), true),
                ("?".into(), true),
                ("dangling".into(), false),
                ("fifo".into(), false),
                ("loop-a".into(), false),
                ("loop-b".into(), false),
                ("sub/up/".into(), false),
            ]
        );
        // Without following symlinks, each link is reported instead.
        let plan = plan_upload(d, "", false).unwrap();
        let keys: Vec<_> = plan.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["plain.txt"]);
        assert!(plan
            .skipped
            .iter()
            .any(|s| s.key.as_deref() == Some("linked-dir") && s.reason.contains("symlink")));
    }

    #[test]
    fn stored_mtimes_round_trip_to_the_nanosecond() {
        let t = UNIX_EPOCH + Duration::new(1_732_612_345, 123_456_789);
        let v = format_mtime(t).unwrap();
        assert_eq!(v, "1732612345.123456789");
        let meta = |v: &str| BTreeMap::from([("Stor-Mtime".to_owned(), v.to_owned())]);
        assert_eq!(stored_mtime(&meta(&v)), Some(t));
        assert_eq!(
            stored_mtime(&meta("1732612345.5")),
            Some(UNIX_EPOCH + Duration::new(1_732_612_345, 500_000_000))
        );
        assert_eq!(
            stored_mtime(&meta("17")),
            Some(UNIX_EPOCH + Duration::from_secs(17))
        );
        for bad in ["", "x", "-5.1", "1.", ".5", "1.1234567891", "1.2e3", "1 .2"] {
            assert_eq!(stored_mtime(&meta(bad)), None, "{bad:?}");
        }
        assert_eq!(stored_mtime(&BTreeMap::new()), None);
        assert_eq!(format_mtime(UNIX_EPOCH - Duration::from_secs(1)), None);
    }

    /// What a batch upload records is the file's time, to the nanosecond.
    #[test]
    fn batch_uploads_keep_each_files_mtime_when_asked() {
        tokio_test::block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.txt");
            std::fs::write(&path, "a").unwrap();
            let t = UNIX_EPOCH + Duration::new(1_600_000_000, 987_654_321);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap();
            let s = Storage::new(crate::StorageConfig::memory()).await.unwrap();
            s.create_bucket("bkt").await.unwrap();
            let item = |key: &str| BatchItem {
                path: path.clone(),
                key: key.into(),
                size: Some(1),
                etag: None,
            };
            let keep = BatchOptions {
                keep_mtime: true,
                ..Default::default()
            };
            for (key, opts) in [("kept", keep), ("plain", BatchOptions::default())] {
                let out: Vec<_> = s.upload_many("bkt", vec![item(key)], opts).collect().await;
                assert!(out[0].result.is_ok());
            }
            let kept = s.info("bkt", "kept").await.unwrap();
            assert_eq!(kept.source_mtime, Some(t));
            assert!(kept.metadata.is_empty(), "{:?}", kept.metadata);
            let plain = s.info("bkt", "plain").await.unwrap();
            assert_eq!(plain.source_mtime, None);
        });
    }

    #[test]
    fn keys_map_to_paths_one_to_one_or_not_at_all() {
        for (rel, one_to_one) in [
            ("a/b", true),
            ("a b/ü.txt", true),
            ("a//b", false),
            ("/a", false),
            ("a/", false),
            ("a/./b", false),
            ("./a", false),
            ("a/../b", false),
            ("..", false),
            ("...", true),
            (".hidden", true),
        ] {
            assert_eq!(not_one_to_one(rel).is_none(), one_to_one, "{rel}");
        }
        assert_eq!(folded("a//b"), "a/b");
        assert_eq!(folded("a/./b"), "a/b");
        assert_eq!(folded("x/../a/b"), "a/b");
    }
}
