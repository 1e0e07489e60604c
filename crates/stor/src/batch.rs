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

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::service::{BucketArg, Storage};
use crate::types::{DownloadOptions, ListOptions, Progress, TransferResult, UploadOptions};

/// One object of a batch: the local path and the key it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// The local file.
    pub path: PathBuf,
    /// The object's key.
    pub key: String,
    /// Size in bytes, when known before the transfer.
    pub size: Option<u64>,
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

/// The files under `dir` (following symlinks to files, not to directories) and the
/// keys they get under `prefix`, `/`-separated, sorted by key.
pub fn plan_upload(dir: &Path, prefix: &str) -> Result<Vec<BatchItem>> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let path = entry.path();
            if ft.is_dir() {
                walk(&path, out)?;
            } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
                let len = std::fs::metadata(&path)?.len();
                out.push((path, len));
            }
        }
        Ok(())
    }
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let prefix = dir_prefix(prefix);
    let mut items: Vec<BatchItem> = files
        .into_iter()
        .map(|(path, len)| {
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            BatchItem {
                key: format!("{prefix}{rel}"),
                path,
                size: Some(len),
            }
        })
        .collect();
    items.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(items)
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
        self.run_batch(items, opts, move |item, upload, progress| {
            let (this, bucket) = (this.clone(), bucket.clone());
            async move {
                let mut o = upload;
                o.progress = progress;
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
        // Each directory is made once per batch, not once per file: many files share
        // one, and every tokio::fs call is a hop to the blocking pool.
        let made: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        self.run_batch(items, opts, move |item, _, progress| {
            let (this, bucket, made) = (this.clone(), bucket.clone(), made.clone());
            async move {
                if let Some(parent) = item.path.parent() {
                    let seen = made
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(parent);
                    if !seen {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                        made.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(parent.to_path_buf());
                    }
                }
                let o = DownloadOptions {
                    progress,
                    ..Default::default()
                };
                this.download_file_sized(bucket.as_deref(), &item.key, &item.path, o, item.size)
                    .await
            }
        })
    }

    fn run_batch<F, Fut>(
        &self,
        items: Vec<BatchItem>,
        opts: BatchOptions,
        run: F,
    ) -> BoxStream<'static, BatchOutcome>
    where
        F: Fn(BatchItem, UploadOptions, Option<Progress>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<TransferResult>> + Send + 'static,
    {
        let conc = opts
            .concurrency
            .unwrap_or(self.inner.config.max_concurrency)
            .max(1);
        let tally = Tally::new(opts.progress.clone(), &items);
        let failed = Arc::new(AtomicBool::new(false));
        let run = Arc::new(run);
        futures::stream::iter(items)
            .map(move |item| {
                let (run, failed, tally) = (run.clone(), failed.clone(), tally.clone());
                let (upload, fail_fast) = (opts.upload.clone(), opts.fail_fast);
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
                    let result = run(item.clone(), upload, progress).await;
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    BatchOutcome { item, result }
                }
            })
            .buffer_unordered(conc)
            .boxed()
    }

    /// The objects under `prefix` and the paths they get under `dir` (the key's
    /// part after the prefix). Keys that would land outside `dir` are refused.
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
        Ok(objects
            .into_iter()
            .filter(|o| !o.key.ends_with('/')) // "directory marker" objects
            .map(|o| {
                let rel = &o.key[prefix.len()..];
                path_under(dir, rel)
                    .map(|path| BatchItem {
                        path,
                        key: o.key.clone(),
                        size: Some(o.size),
                    })
                    .map_err(|e| e.with_location(&o.bucket, &o.key))
            })
            .collect())
    }

    /// Uploads a directory tree under `prefix`; one outcome per file, sorted by key.
    pub async fn upload_dir<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        dir: impl AsRef<Path>,
        prefix: &str,
        opts: BatchOptions,
    ) -> Result<Vec<BatchOutcome>> {
        let items = plan_upload(dir.as_ref(), prefix)?;
        let mut out: Vec<_> = self.upload_many(bucket, items, opts).collect().await;
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
        let mut out: Vec<_> = self.download_many(bucket, items, opts).collect().await;
        out.extend(refused.into_iter().map(|e| BatchOutcome {
            item: BatchItem {
                path: PathBuf::new(),
                key: e.key().unwrap_or_default().to_owned(),
                size: None,
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
        let items = plan_upload(dir.path(), "up").unwrap();
        let keys: Vec<_> = items.iter().map(|i| (i.key.as_str(), i.size)).collect();
        assert_eq!(keys, [("up/a.txt", Some(1)), ("up/b/c/d.txt", Some(2))]);
        assert!(plan_upload(&dir.path().join("a.txt"), "").is_err());
    }
}
