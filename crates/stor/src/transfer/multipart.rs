//! Multipart uploads: parts sent (or copied server-side) concurrently under the
//! client-wide budgets, each retried on its own, completed in order — and aborted
//! on any failure *or cancellation*, so no multipart upload is left behind.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::OwnedSemaphorePermit;

use super::condition::condition_error;
use super::resume::{keeps, UploadJournal};
use crate::backend::multipart_of;
use crate::backend::{Backend, CompletedPart, Multipart, PartCopySource, Replay};
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::core::Core;
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;
use crate::types::{ByteRange, ObjectInfo, Progress, UploadOptions, WriteCondition};

/// What a part is made of: bytes sent, or a range of another object copied
/// server-side (UploadPartCopy).
pub(super) enum PartBody {
    Data(Replay),
    Copy(ByteRange),
}

/// One part of a multipart upload: number, body, and the byte-budget share its
/// buffer holds (released once the part is stored).
pub(super) type Part = (i32, PartBody, Option<OwnedSemaphorePermit>);

/// One multipart upload: where it goes and how.
pub(super) struct MultipartUpload<'a> {
    pub core: &'a Core,
    pub bucket: &'a str,
    pub key: &'a str,
    /// Headers and metadata of the object.
    pub opts: &'a UploadOptions,
    /// The object copied parts come from ([`PartBody::Copy`]), pinned to its ETag.
    pub copy_from: Option<&'a ObjectInfo>,
    /// Reported as each part is stored (bodies that count their own bytes as they
    /// are read leave it `None`).
    pub progress: Option<&'a Progress>,
    pub total: Option<u64>,
    /// The full-object checksum the completion will carry (announced at the start).
    pub checksum: Option<ChecksumAlgorithm>,
    /// The transfer journal of this upload (a file's): the upload and each part
    /// are recorded as they are stored, a resumed one continues the journaled
    /// upload, and one that stops without finishing is kept, not aborted (see
    /// `resume.rs`).
    pub journal: Option<&'a UploadJournal>,
}

/// What a finished upload gives back: ETag, most attempts any request took, bytes.
pub(super) type Finished = (Option<String>, u32, u64);

impl MultipartUpload<'_> {
    /// Sends `parts`, then completes with what `before_complete` returns (the whole
    /// object's checksum) — unless it fails, which aborts (e.g. the source file
    /// changed). Any failure, or dropping the future, aborts the upload.
    pub async fn run(
        self,
        parts: impl Stream<Item = Result<Part>> + Send,
        before_complete: impl FnOnce() -> Result<Option<Checksum>>,
    ) -> Result<Finished> {
        let core = self.core;
        let (bucket, key, checksum) = (self.bucket, self.key, self.checksum);
        let mp = multipart_of(&*core.backend)?;
        let cond = self.opts.condition.as_ref();
        if let Some(c) = cond {
            // Before any part is sent, so a large write that cannot succeed does not
            // send its bytes first. Only a shortcut: the store checks the condition
            // again, atomically, at the completion.
            fails_now(core, bucket, key, c).await?;
        }
        let journal = self.journal;
        let (mut guard, before) = match journal.and_then(UploadJournal::resumed) {
            Some((upload_id, before)) => {
                let guard = AbortGuard {
                    backend: core.backend.clone(),
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    upload_id,
                    armed: true,
                };
                (guard, before)
            }
            None => {
                let (guard, _) = core
                    .request(|_| create(core.backend.clone(), bucket, key, self.opts, checksum))
                    .await?;
                if let Some(j) = journal {
                    j.created(&guard.upload_id);
                }
                (guard, Vec::new())
            }
        };
        // A journaled upload (recording once created or resumed) is kept for
        // resuming when it stops, not aborted.
        let kept = journal.is_some_and(UploadJournal::is_recording);
        guard.armed = !kept;
        let upload_id = guard.upload_id.clone();
        let max_attempts = AtomicU32::new(1);
        let sent = AtomicU64::new(0);
        let work = async {
            let id = upload_id.as_str();
            let (max_attempts, sent, this) = (&max_attempts, &sent, &self);
            let mut done: Vec<CompletedPart> = parts
                .map(|p| async move {
                    let (n, body, permit) = p?;
                    let (part, attempts) = this.send_part(mp, id, n, &body).await?;
                    let len = match &body {
                        PartBody::Data(b) => b.len(),
                        PartBody::Copy(r) => r.end - r.start,
                    };
                    drop((body, permit));
                    if let Some(j) = this.journal {
                        j.stored(&part, len);
                    }
                    max_attempts.fetch_max(attempts, Ordering::Relaxed);
                    let now = sent.fetch_add(len, Ordering::Relaxed) + len;
                    if let Some(p) = this.progress {
                        p.report(now, this.total);
                    }
                    Ok::<_, Error>(part)
                })
                .buffer_unordered(core.config.max_concurrency)
                .try_collect()
                .await?;
            let whole = before_complete()?;
            // Parts a previous run stored, unless this run sent them again.
            let sent_now: std::collections::HashSet<i32> =
                done.iter().map(|d| d.part_number).collect();
            done.extend(
                before
                    .into_iter()
                    .filter(|b| !sent_now.contains(&b.part_number)),
            );
            done.sort_by_key(|p| p.part_number);
            let (etag, attempts) = core
                .request(|_| mp.complete_multipart_if(bucket, key, id, &done, whole.as_ref(), cond))
                .await
                .map_err(|e| condition_error(e, cond))?;
            max_attempts.fetch_max(attempts, Ordering::Relaxed);
            Ok::<_, Error>(etag)
        };
        match work.await.map_err(aborted_by_others) {
            Ok(etag) => {
                let mut guard = guard;
                guard.armed = false;
                if let Some(j) = journal {
                    j.finished();
                }
                let attempts = max_attempts.load(Ordering::Relaxed);
                Ok((etag, attempts, sent.load(Ordering::Relaxed)))
            }
            Err(e) if kept && keeps(&e) => Err(e.suffixed(
                "the parts already stored are kept: run the same upload again to resume it \
                 (or `stor cleanup` to discard it)",
            )),
            Err(e) => {
                guard.abort_now().await;
                if let Some(j) = journal {
                    j.finished();
                }
                Err(e)
            }
        }
    }

    /// Stores one part (sent or copied), retried on its own.
    async fn send_part(
        &self,
        mp: &dyn Multipart,
        id: &str,
        n: i32,
        body: &PartBody,
    ) -> Result<(CompletedPart, u32)> {
        let (core, bucket, key) = (self.core, self.bucket, self.key);
        let sent = match body {
            PartBody::Data(b) => {
                core.request(|_| {
                    let body = core.pace_up(b.body());
                    mp.upload_part(bucket, key, id, n, body, self.checksum)
                })
                .await
            }
            PartBody::Copy(range) => {
                let src = self.copy_from.ok_or_else(|| {
                    Error::new(ErrorKind::Other, "a copied part without a source object")
                })?;
                let from = PartCopySource {
                    bucket: &src.bucket,
                    key: &src.key,
                    etag: src.etag.as_deref(),
                    range: *range,
                    version_id: src.version_id.as_deref(),
                };
                core.request(|_| mp.upload_part_copy(&from, bucket, key, id, n))
                    .await
                    .map(|(etag, attempts)| {
                        let part = CompletedPart {
                            part_number: n,
                            etag,
                            checksum: None,
                        };
                        (part, attempts)
                    })
                    .map_err(source_changed)
            }
        };
        sent.map_err(|e| e.prefixed(&format!("part {n}")))
    }
}

/// Fails when `cond` already fails for the object the key holds (one HEAD): a
/// shortcut before a write that takes long, and a guard on engines that ignore the
/// condition's header on some requests (moto on CopyObject and on an If-Match
/// CompleteMultipartUpload). The store's own check at the write is what counts.
pub(super) async fn fails_now(
    core: &Core,
    bucket: &str,
    key: &str,
    cond: &WriteCondition,
) -> Result<()> {
    let current = match core
        .request(|_| core.backend.head_object(bucket, key))
        .await
    {
        Ok((info, _)) => Some(info.etag.unwrap_or_default()),
        Err(e) if e.kind() == ErrorKind::KeyNotFound => None,
        // Cannot tell (a HEAD refused to write-only credentials): the completion will.
        Err(_) => return Ok(()),
    };
    let failed = match (cond, &current) {
        (WriteCondition::IfAbsent, Some(_)) => ErrorKind::AlreadyExists,
        (WriteCondition::IfMatch(_), None) => ErrorKind::PreconditionFailed,
        (WriteCondition::IfMatch(want), Some(now)) if now != want.trim_matches('"') => {
            ErrorKind::PreconditionFailed
        }
        _ => return Ok(()),
    };
    let msg = match cond {
        WriteCondition::IfAbsent => {
            "the key already holds an object and the write was create-only; nothing was \
             written"
                .to_owned()
        }
        WriteCondition::IfMatch(t) => format!(
            "the object is no longer the one with ETag {t} (it changed or is gone); nothing \
             was written"
        ),
    };
    Err(Error::new(failed, msg))
}

/// CreateMultipartUpload in a task of its own, answering with an armed
/// [`AbortGuard`]: if the caller is gone by the time the server answers (the
/// transfer was dropped or timed out mid-request), the guard is dropped unread —
/// in the task or in the channel — and aborts the upload, so a cancellation never
/// leaves one behind, however late it comes.
async fn create(
    backend: Arc<dyn Backend>,
    bucket: &str,
    key: &str,
    opts: &UploadOptions,
    checksum: Option<ChecksumAlgorithm>,
) -> Result<AbortGuard> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (b, k, o) = (bucket.to_owned(), key.to_owned(), opts.clone());
    PENDING_ABORTS.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        let created = async {
            let id = multipart_of(&*backend)?
                .create_multipart(&b, &k, &o, checksum)
                .await?;
            Ok(AbortGuard {
                backend: backend.clone(),
                bucket: b,
                key: k,
                upload_id: id,
                armed: true,
            })
        };
        let _ = tx.send(created.await);
        PENDING_ABORTS.fetch_sub(1, Ordering::SeqCst);
    });
    rx.await.unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::Cancelled,
            "the runtime went away while the upload was being created",
        ))
    })
}

/// NoSuchUpload mid-transfer: someone aborted the upload (another process's
/// cleanup) — not a missing key.
fn aborted_by_others(e: Error) -> Error {
    if e.code() != Some("NoSuchUpload") {
        return e;
    }
    Error::new(
        ErrorKind::Cancelled,
        "the multipart upload was aborted by someone else while it ran (another \
         process's `stor cleanup`?); nothing was stored — upload again",
    )
    .with_attempts(e.attempts(), e.elapsed().unwrap_or_default())
}

/// Aborts started by dropped transfers (and creations that may still need one)
/// that have not finished yet.
static PENDING_ABORTS: AtomicU64 = AtomicU64::new(0);

/// Waits (up to `timeout`) for the multipart aborts that cancelled transfers started
/// in the background. Call it before exiting after a cancellation (Ctrl-C), so no
/// multipart upload is left behind. Returns whether all finished.
pub async fn wait_for_pending_aborts(timeout: std::time::Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while PENDING_ABORTS.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    true
}

/// Aborts a multipart upload unless disarmed; on drop (cancellation) it spawns the
/// abort so no upload is left behind even when the caller gives up.
struct AbortGuard {
    backend: Arc<dyn Backend>,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortGuard {
    async fn abort_now(mut self) {
        self.armed = false;
        if let Err(e) = abort(&*self.backend, &self.bucket, &self.key, &self.upload_id).await {
            tracing::warn!(bucket = %self.bucket, key = %self.key,
                "could not abort multipart upload: {e}; `stor cleanup` will find it");
        }
    }
}

/// Attempts an abort gets, whatever `max_retries` says: an upload left behind keeps
/// its parts' storage (and its bill) until a cleanup finds it.
const ABORT_ATTEMPTS: u32 = 5;

/// Aborts an upload, retrying errors that can heal (a 500, a reset connection,
/// throttling) with the client's backoff. It goes around the retry layer's budget
/// and endpoint gate on purpose: those exist to stop a client from piling retries
/// on a sick server, and an abort is the last request of a failed transfer, which
/// should land even when the budget is spent.
async fn abort(be: &dyn Backend, bucket: &str, key: &str, id: &str) -> Result<()> {
    let policy = RetryPolicy::new(ABORT_ATTEMPTS);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match multipart_of(be)?.abort_multipart(bucket, key, id).await {
            Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                let delay = policy.delay(attempt, e.kind(), rand::random::<f64>());
                tracing::debug!(attempt, "retrying the abort after: {e}");
                tokio::time::sleep(delay).await;
            }
            r => return r,
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (be, b, k, id) = (
            self.backend.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            PENDING_ABORTS.fetch_add(1, Ordering::SeqCst);
            rt.spawn(async move {
                if let Err(e) = abort(&*be, &b, &k, &id).await {
                    tracing::warn!(bucket = %b, key = %k, "could not abort multipart upload: {e}");
                }
                PENDING_ABORTS.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// A part copy pinned to the source's ETag failed its precondition: the source was
/// replaced while it was being copied (the download's wording would send the user
/// to download something).
fn source_changed(e: Error) -> Error {
    if e.kind() == ErrorKind::PreconditionFailed {
        Error::new(
            ErrorKind::PreconditionFailed,
            "the source object changed during the copy (its ETag no longer matches); \
             nothing was copied — copy it again",
        )
    } else {
        e
    }
}
