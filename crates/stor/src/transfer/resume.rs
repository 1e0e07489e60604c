//! Resuming interrupted transfers: the engines' side of the journal
//! (`journal.rs`). An upload of a file in parts and a ranged download into a file
//! are journaled as they go; running the same transfer again finds the record,
//! checks that what it describes still holds, and continues.
//!
//! - Upload: the same file (size, modification time, inode), the same headers and
//!   metadata, and an upload the server still has whose parts match the journal
//!   (ListParts: number, size, ETag) — then only the missing parts are sent, each
//!   checked against the CRC journaled for it before its last byte, and the
//!   completion carries the full-object CRC combined from the journaled part CRCs.
//!   Parts already stored are not read again: they were checked against the same
//!   CRCs when they were sent. Anything else aborts what is left and starts over,
//!   saying why (at warn level).
//! - Download: the same object (its ETag, by a HEAD), a partial file still beside
//!   the target, and each journaled range read back from it and checked against its
//!   CRC — then only the missing ranges are fetched (pinned with If-Match), and the
//!   whole object's CRC, combined from the ranges', must match before the rename.
//!
//! A failure that running again may get past (the network, a timeout, throttling,
//! expired credentials) or a cancellation (Ctrl-C, a dropped future) keeps what was
//! done, with its record; any other failure removes both, as a transfer without a
//! journal does.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::backend::CompletedPart;
use crate::checksum::{Checksum, ChecksumAlgorithm, Hasher};
use crate::config::MIB;
use crate::core::Core;
use crate::destination::TempFile;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{
    file_identity, DownloadRecord, Ident, Interrupted, Journal, PartRecord, Piece, TransferKind,
    TransferLock, UploadRecord,
};
use crate::types::UploadOptions;

use crate::backend::multipart_of;

/// Whether a failure keeps what the transfer had done, for running it again: one
/// a later run may get past. Others (a changed source, a refused request, an
/// integrity failure) remove it, as a transfer without a journal does.
pub(super) fn keeps(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Timeout
            | ErrorKind::Throttled
            | ErrorKind::Transient
            | ErrorKind::AccessDenied
            | ErrorKind::NotInitialized
    )
}

/// Transfers this process kept for resuming (interrupted or failed), newest last.
static KEPT: Mutex<Vec<Interrupted>> = Mutex::new(Vec::new());

/// The transfers this process stopped and kept for resuming — by a cancellation
/// (Ctrl-C, a dropped future, a timeout) or a failure that running them again may
/// get past: what to tell the user before exiting (run the same command again to
/// resume; `stor cleanup` to discard them).
pub fn kept_for_resume() -> Vec<Interrupted> {
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn keep_note(i: Interrupted) {
    tracing::info!(
        bucket = %i.bucket, key = %i.key,
        "kept {} of {} bytes for resuming (run the same transfer again)",
        i.done, i.size
    );
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(i);
}

/// Says once, at warn level, that the journal failed and resuming is off for the
/// rest of this transfer.
fn journal_failed(what: &str, e: &Error) {
    tracing::warn!(
        "the transfer journal could not record {what} ({e}); this transfer will not be resumable"
    );
}

/// A digest of what an upload's object will carry (headers, metadata,
/// encryption): a resumed upload was created with them, so they must not differ.
fn options_digest(o: &UploadOptions) -> String {
    use md5::{Digest, Md5};
    let shown = format!(
        "{:?}",
        (
            &o.content_type,
            &o.metadata,
            &o.cache_control,
            &o.content_disposition,
            &o.content_encoding,
            &o.storage_class,
            &o.encryption,
        )
    );
    hex::encode(Md5::digest(shown.as_bytes()))
}

fn unquoted(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// What an upload resumes from.
struct Resuming {
    upload_id: String,
    /// Every part, in order: its place, CRC and (when stored) ETag.
    parts: Vec<PartRecord>,
}

/// Where a journaled upload is: recording (a record exists), or finished with it.
struct Recording {
    journal: Arc<Journal>,
    rid: i64,
}

/// The journal of one multipart upload of a file.
pub(super) struct UploadJournal {
    journal: Arc<Journal>,
    store: String,
    bucket: String,
    key: String,
    path: PathBuf,
    size: u64,
    source: String,
    options: String,
    lock: Mutex<Option<TransferLock>>,
    resuming: Option<Resuming>,
    /// The parts planned (number, place, CRC), recorded when the upload is created.
    plan: Mutex<Vec<PartRecord>>,
    checksum: Mutex<Option<ChecksumAlgorithm>>,
    recording: Mutex<Option<Recording>>,
    /// Bytes of parts stored, for the note a kept upload leaves.
    stored: AtomicU64,
}

impl UploadJournal {
    fn ident(&self) -> Ident<'_> {
        Ident {
            kind: TransferKind::Upload,
            store: &self.store,
            bucket: &self.bucket,
            key: &self.key,
            path: &self.path,
        }
    }

    /// The journal of an upload of `path` (its `meta` read at the start) to
    /// `bucket/key` in parts `ranges`: resuming the journaled one when it still
    /// holds, else a fresh one (the old upload aborted, saying why). `None` with
    /// `opts.no_resume` (a journaled upload is discarded first) or when the journal
    /// cannot be used. Fails when another process runs the same upload.
    pub async fn prepare(
        core: &Core,
        bucket: &str,
        key: &str,
        path: &Path,
        meta: &std::fs::Metadata,
        opts: &UploadOptions,
    ) -> Result<Option<UploadJournal>> {
        let abs = absolute(path);
        let store = core.store_id();
        let Some(journal) = core.journal(!opts.no_resume) else {
            return Ok(None);
        };
        let ident = Ident {
            kind: TransferKind::Upload,
            store: &store,
            bucket,
            key,
            path: &abs,
        };
        let lock = journal.lock(&ident)?;
        let found = match journal.find_upload(&ident) {
            Ok(f) => f,
            Err(e) => {
                journal_failed("this upload", &e);
                return Ok(None);
            }
        };
        let mut this = UploadJournal {
            journal: journal.clone(),
            store: store.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            path: abs.clone(),
            size: meta.len(),
            source: file_identity(meta),
            options: options_digest(opts),
            lock: Mutex::new(Some(lock)),
            resuming: None,
            plan: Mutex::new(Vec::new()),
            checksum: Mutex::new(None),
            recording: Mutex::new(None),
            stored: AtomicU64::new(0),
        };
        if let Some(rec) = found {
            let why = match opts.no_resume {
                true => Some("--no-resume was asked for".to_owned()),
                false => this.mismatch(core, &rec).await?,
            };
            match why {
                None => {
                    let stored: u64 = rec
                        .parts
                        .iter()
                        .filter(|p| p.etag.is_some())
                        .map(|p| p.len)
                        .sum();
                    let n = rec.parts.iter().filter(|p| p.etag.is_some()).count();
                    tracing::info!(
                        "resuming the upload of {} to {bucket}/{key}: {n} of {} parts ({stored} \
                         of {} bytes) already stored",
                        path.display(),
                        rec.parts.len(),
                        rec.size
                    );
                    this.stored.store(stored, Ordering::Relaxed);
                    *this.checksum.lock().unwrap_or_else(|p| p.into_inner()) = rec.checksum;
                    *this.recording.lock().unwrap_or_else(|p| p.into_inner()) = Some(Recording {
                        journal: journal.clone(),
                        rid: rec.id,
                    });
                    this.resuming = Some(Resuming {
                        upload_id: rec.upload_id,
                        parts: rec.parts,
                    });
                }
                Some(why) => {
                    if !opts.no_resume {
                        tracing::warn!(
                            "not resuming the interrupted upload of {} to {bucket}/{key}: {why}; \
                             it is aborted and this upload starts over",
                            path.display()
                        );
                    }
                    if let Ok(mp) = multipart_of(&*core.backend) {
                        let id = rec.upload_id.as_str();
                        if let Err(e) = core.request(|_| mp.abort_multipart(bucket, key, id)).await
                        {
                            tracing::warn!(
                                "could not abort the interrupted upload of {bucket}/{key}: {e}; \
                                 `stor cleanup` will find it"
                            );
                        }
                    }
                    let _ = journal.remove(rec.id);
                }
            }
        }
        if opts.no_resume {
            if let Some(l) = this.lock.lock().unwrap_or_else(|p| p.into_inner()).take() {
                l.release();
            }
            return Ok(None);
        }
        Ok(Some(this))
    }

    /// Why the journaled upload `rec` cannot be resumed, if it cannot.
    async fn mismatch(&self, core: &Core, rec: &UploadRecord) -> Result<Option<String>> {
        if rec.size != self.size {
            return Ok(Some(format!(
                "the file changed size ({} → {} bytes)",
                rec.size, self.size
            )));
        }
        if rec.source != self.source {
            return Ok(Some(
                "the file was modified or replaced since (its modification time or inode \
                 changed)"
                    .to_owned(),
            ));
        }
        if rec.options != self.options {
            return Ok(Some(
                "its headers or metadata differ from this upload's".to_owned(),
            ));
        }
        let mut at = 0;
        for (i, p) in rec.parts.iter().enumerate() {
            if p.start != at || p.number != i as i32 + 1 || p.len == 0 && rec.size > 0 {
                return Ok(Some("its journal record is inconsistent".to_owned()));
            }
            at += p.len;
        }
        if at != rec.size || rec.upload_id.is_empty() {
            return Ok(Some("its journal record is inconsistent".to_owned()));
        }
        let mp = multipart_of(&*core.backend)?;
        let (bucket, key, id) = (self.bucket.as_str(), self.key.as_str(), &rec.upload_id);
        let listed = match core.request(|_| mp.list_parts(bucket, key, id)).await {
            Ok((v, _)) => v,
            Err(e) if e.code() == Some("NoSuchUpload") || e.kind() == ErrorKind::KeyNotFound => {
                return Ok(Some(
                    "the server no longer has its multipart upload (aborted, expired or \
                     completed)"
                        .to_owned(),
                ))
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                return Ok(Some("this store cannot list an upload's parts".to_owned()))
            }
            Err(e) => return Err(e),
        };
        for p in rec.parts.iter().filter(|p| p.etag.is_some()) {
            let etag = p.etag.as_deref().map(unquoted).unwrap_or_default();
            let on_server = listed.iter().find(|l| l.part_number == p.number);
            match on_server {
                Some(l) if l.size == p.len && unquoted(&l.etag) == etag => {}
                Some(_) => {
                    return Ok(Some(format!(
                        "part {} on the server is not the one the journal recorded",
                        p.number
                    )))
                }
                None => {
                    return Ok(Some(format!(
                        "part {} the journal recorded is missing on the server",
                        p.number
                    )))
                }
            }
        }
        Ok(None)
    }

    /// The parts of the resumed upload (`start`, `end`), in order.
    pub fn ranges(&self) -> Option<Vec<(u64, u64)>> {
        let r = self.resuming.as_ref()?;
        Some(r.parts.iter().map(|p| (p.start, p.start + p.len)).collect())
    }

    /// The journaled checksum of each part of the resumed upload.
    pub fn sums(&self) -> Option<Vec<Option<Checksum>>> {
        let r = self.resuming.as_ref()?;
        let algo = *self.checksum.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            r.parts
                .iter()
                .map(|p| {
                    let (a, v) = (algo?, p.crc?);
                    Some(Checksum {
                        algorithm: a,
                        value: v,
                        len: p.len,
                    })
                })
                .collect(),
        )
    }

    /// Whether part `number` is stored already (resumed uploads).
    pub fn is_stored(&self, number: i32) -> bool {
        self.resuming.as_ref().is_some_and(|r| {
            r.parts
                .iter()
                .any(|p| p.number == number && p.etag.is_some())
        })
    }

    /// Bytes a previous run stored.
    pub fn resumed_bytes(&self) -> u64 {
        self.resuming.as_ref().map_or(0, |r| {
            r.parts
                .iter()
                .filter(|p| p.etag.is_some())
                .map(|p| p.len)
                .sum()
        })
    }

    /// The upload ID and stored parts to continue from, when resuming.
    pub fn resumed(&self) -> Option<(String, Vec<CompletedPart>)> {
        let r = self.resuming.as_ref()?;
        let parts = r
            .parts
            .iter()
            .filter_map(|p| {
                Some(CompletedPart {
                    part_number: p.number,
                    etag: p.etag.clone()?,
                    checksum: p.native.clone(),
                })
            })
            .collect();
        Some((r.upload_id.clone(), parts))
    }

    /// The parts a fresh upload will send, with their checksums (recorded when it
    /// is created).
    pub fn plan(&self, ranges: &[(u64, u64)], sums: &[Option<Checksum>]) {
        let plan = ranges
            .iter()
            .enumerate()
            .map(|(i, &(a, z))| PartRecord {
                number: i as i32 + 1,
                start: a,
                len: z - a,
                crc: sums.get(i).copied().flatten().map(|c| c.value),
                etag: None,
                native: None,
            })
            .collect();
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = plan;
        *self.checksum.lock().unwrap_or_else(|p| p.into_inner()) =
            sums.iter().flatten().next().map(|c| c.algorithm);
    }

    /// Records the multipart upload just created. False when it could not be
    /// recorded: the upload then behaves as one without a journal (aborted on
    /// failure or cancellation).
    pub fn created(&self, upload_id: &str) -> bool {
        let rec = UploadRecord {
            id: 0,
            size: self.size,
            source: self.source.clone(),
            options: self.options.clone(),
            upload_id: upload_id.to_owned(),
            checksum: *self.checksum.lock().unwrap_or_else(|p| p.into_inner()),
            parts: self.plan.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        match self.journal.insert_upload(&self.ident(), &rec) {
            Ok(rid) => {
                *self.recording.lock().unwrap_or_else(|p| p.into_inner()) = Some(Recording {
                    journal: self.journal.clone(),
                    rid,
                });
                true
            }
            Err(e) => {
                journal_failed("this upload", &e);
                false
            }
        }
    }

    /// Whether a record of the upload exists (it is kept when interrupted).
    pub fn is_recording(&self) -> bool {
        self.recording
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Records a part stored.
    pub fn stored(&self, part: &CompletedPart, len: u64) {
        self.stored.fetch_add(len, Ordering::Relaxed);
        let rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = rec.as_ref() {
            let native = part.checksum.as_deref();
            // On failure the record stays as it was: a resumed run sends this part again.
            if let Err(e) = r
                .journal
                .part_stored(r.rid, part.part_number, &part.etag, native)
            {
                journal_failed("a part", &e);
            }
        }
    }

    /// The upload is over (completed, or aborted for good): forget it.
    pub fn finished(&self) {
        if let Some(r) = self
            .recording
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            if let Err(e) = r.journal.remove(r.rid) {
                tracing::warn!("could not remove a finished upload from the transfer journal: {e}");
            }
        }
        if let Some(l) = self.lock.lock().unwrap_or_else(|p| p.into_inner()).take() {
            l.release();
        }
    }
}

impl Drop for UploadJournal {
    /// Still recording: the upload stopped without finishing (a failure it keeps,
    /// or a cancellation), and is kept for resuming.
    fn drop(&mut self) {
        let rec = self.recording.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = rec.take() {
            keep_note(Interrupted {
                kind: TransferKind::Upload,
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                path: self.path.clone(),
                size: self.size,
                done: self.stored.load(Ordering::Relaxed),
                upload_id: None,
                temp: None,
                updated: SystemTime::now(),
                id: r.rid,
            });
        }
    }
}

/// A path made absolute against the current directory (the journal names files
/// wherever the command ran from).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// How often a ranged download records its progress: every this many bytes of a
/// range (the most a killed download fetches again per range in flight).
pub(super) fn checkpoint_every(core: &Core) -> u64 {
    let part = core.config.part_size.unwrap_or(super::AUTO_PART_SIZE);
    (part / 4).max(MIB)
}

/// The journal of one ranged download into a file.
pub(super) struct DownloadJournal<'a> {
    core: &'a Core,
    store: String,
    bucket: String,
    key: String,
    target: PathBuf,
    temp: &'a TempFile,
    every: u64,
    /// Pieces that arrived before the record was made (the first range).
    early: Mutex<Vec<Piece>>,
    recording: Mutex<Option<(Recording, Option<TransferLock>)>>,
    /// The record could not be written: stop trying.
    off: AtomicBool,
    received: AtomicU64,
    size: AtomicU64,
}

/// A journaled download found for a target, with its lock and partial file.
pub(super) struct FoundDownload {
    pub record: DownloadRecord,
    pub lock: TransferLock,
    pub journal: Arc<Journal>,
    pub temp: TempFile,
}

/// The journaled download of `bucket/key` into `tmp`'s target, if one was
/// interrupted there and its partial file is still beside it (locked for this
/// process; fails when another process runs it). With `no_resume`, one found is
/// discarded (its partial file removed) and `None` returned.
pub(super) fn find_download(
    core: &Core,
    bucket: &str,
    key: &str,
    tmp: &TempFile,
    no_resume: bool,
) -> Result<Option<FoundDownload>> {
    let Some(journal) = core.journal(false) else {
        return Ok(None);
    };
    let store = core.store_id();
    let target = absolute(&tmp.target());
    let ident = Ident {
        kind: TransferKind::Download,
        store: &store,
        bucket,
        key,
        path: &target,
    };
    let found = match journal.find_download(&ident) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => {
            journal_failed("this download", &e);
            return Ok(None);
        }
    };
    let lock = journal.lock(&ident)?;
    let forget = |why: &str| {
        if !why.is_empty() {
            tracing::warn!(
                "not resuming the interrupted download of {bucket}/{key} into {}: {why}; it \
                 starts over",
                target.display()
            );
        }
        let _ = journal.remove(found.id);
    };
    if no_resume {
        if let Ok(Some(old)) = tmp.adopt(&found.temp) {
            drop(old); // removed when dropped
        }
        forget("");
        lock.release();
        return Ok(None);
    }
    match tmp.adopt(&found.temp) {
        Ok(Some(old)) => Ok(Some(FoundDownload {
            record: found,
            lock,
            journal,
            temp: old,
        })),
        Ok(None) => {
            forget("its partial file is gone");
            Ok(None)
        }
        Err(e) => {
            forget(&format!("its partial file cannot be used ({e})"));
            Ok(None)
        }
    }
}

impl<'a> DownloadJournal<'a> {
    /// A journal for a download into `temp`; it records once [`DownloadJournal::start`]
    /// is called (or at once, for a resumed one).
    pub fn new(
        core: &'a Core,
        bucket: &str,
        key: &str,
        temp: &'a TempFile,
        resumed: Option<(Arc<Journal>, i64, TransferLock)>,
    ) -> DownloadJournal<'a> {
        let recording = resumed.map(|(journal, rid, lock)| {
            temp.keep_on_drop(true);
            (Recording { journal, rid }, Some(lock))
        });
        DownloadJournal {
            core,
            store: core.store_id(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            target: absolute(&temp.target()),
            temp,
            every: checkpoint_every(core),
            early: Mutex::new(Vec::new()),
            recording: Mutex::new(recording),
            off: AtomicBool::new(false),
            received: AtomicU64::new(0),
            size: AtomicU64::new(0),
        }
    }

    fn ident(&self) -> Ident<'_> {
        Ident {
            kind: TransferKind::Download,
            store: &self.store,
            bucket: &self.bucket,
            key: &self.key,
            path: &self.target,
        }
    }

    /// Bytes per journaled piece.
    pub fn every(&self) -> u64 {
        self.every
    }

    /// The download turned out ranged: record it (object `size`, `etag`, the
    /// checksum it must have), with the pieces that arrived so far.
    pub fn start(&self, size: u64, etag: &str, expected: &(ChecksumAlgorithm, String)) {
        self.size.store(size, Ordering::Relaxed);
        let mut rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        if rec.is_some() || self.off.load(Ordering::Relaxed) {
            return;
        }
        let Some(journal) = self.core.journal(true) else {
            self.off.store(true, Ordering::Relaxed);
            return;
        };
        let ident = self.ident();
        // Another process started the same download at the same moment: this one
        // goes on unjournaled.
        let Ok(lock) = journal.lock(&ident) else {
            self.off.store(true, Ordering::Relaxed);
            return;
        };
        match journal.insert_download(&ident, size, etag, &absolute(&self.temp.path()), expected) {
            Ok(rid) => {
                self.temp.keep_on_drop(true);
                let early =
                    std::mem::take(&mut *self.early.lock().unwrap_or_else(|p| p.into_inner()));
                for p in early {
                    if let Err(e) = journal.add_piece(rid, p) {
                        journal_failed("a range", &e);
                    }
                }
                *rec = Some((Recording { journal, rid }, Some(lock)));
            }
            Err(e) => {
                journal_failed("this download", &e);
                self.off.store(true, Ordering::Relaxed);
            }
        }
    }

    /// `c` covers bytes from `start` that are in the temp file now.
    pub fn piece(&self, start: u64, c: Checksum) {
        self.received.fetch_add(c.len, Ordering::Relaxed);
        let piece = Piece {
            start,
            len: c.len,
            crc: c.value,
        };
        let rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        match rec.as_ref() {
            Some((r, _)) => {
                if let Err(e) = r.journal.add_piece(r.rid, piece) {
                    journal_failed("a range", &e);
                }
            }
            None if !self.off.load(Ordering::Relaxed) => self
                .early
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(piece),
            None => {}
        }
    }

    /// Forgets pieces that turned out not to be in the temp file.
    pub fn drop_pieces(&self, starts: &[u64]) {
        let rec = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((r, _)) = rec.as_ref() {
            let _ = r.journal.drop_pieces(r.rid, starts);
        }
    }

    /// The download is over (renamed into place, or failed for good): forget it.
    pub fn finished(&self) {
        let taken = self
            .recording
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((r, lock)) = taken {
            if let Err(e) = r.journal.remove(r.rid) {
                tracing::warn!(
                    "could not remove a finished download from the transfer journal: {e}"
                );
            }
            if let Some(l) = lock {
                l.release();
            }
        }
        self.temp.keep_on_drop(false);
    }

    /// Ends a failed download: kept for resuming when the failure is one a later
    /// run may get past, else forgotten (its partial file removed).
    pub fn failed(&self, e: &Error) {
        if !keeps(e) {
            self.finished();
        }
    }
}

impl Drop for DownloadJournal<'_> {
    fn drop(&mut self) {
        let rec = self.recording.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some((r, _lock)) = rec.take() {
            keep_note(Interrupted {
                kind: TransferKind::Download,
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                path: self.target.clone(),
                size: self.size.load(Ordering::Relaxed),
                done: self.received.load(Ordering::Relaxed),
                upload_id: None,
                temp: Some(absolute(&self.temp.path())),
                updated: SystemTime::now(),
                id: r.rid,
            });
        }
    }
}

/// Reads the journaled `pieces` back from the partial file and keeps those whose
/// CRC (in `algo`) still matches: a piece lost to a power failure or changed on
/// disk is fetched again, never trusted. Returns the good ones and the starts of
/// the bad ones.
pub(super) async fn verified_pieces(
    file: &std::fs::File,
    algo: ChecksumAlgorithm,
    size: u64,
    pieces: &[Piece],
) -> Result<(Vec<Piece>, Vec<u64>)> {
    let file = file
        .try_clone()
        .map_err(|e| Error::io("reopening a partial download", e))?;
    let pieces = pieces.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut good: Vec<Piece> = Vec::new();
        let mut bad = Vec::new();
        let mut buf = vec![0u8; MIB as usize];
        let mut end_of_last = 0;
        for p in pieces {
            // Pieces are sorted by start; one that overlaps the last good one, or
            // lies past the object, is not trusted.
            let fits = p.start >= end_of_last && p.start + p.len <= size && p.len > 0;
            let ok = fits && {
                let mut h = Hasher::new(algo).expect("a stored algorithm");
                let (mut at, end) = (p.start, p.start + p.len);
                let mut read_ok = true;
                while at < end {
                    let want = ((end - at) as usize).min(buf.len());
                    match file.read_at(&mut buf[..want], at) {
                        Ok(0) | Err(_) => {
                            read_ok = false;
                            break;
                        }
                        Ok(n) => {
                            h.update(&buf[..n]);
                            at += n as u64;
                        }
                    }
                }
                read_ok && h.finish().value == p.crc
            };
            if ok {
                end_of_last = p.start + p.len;
                good.push(p);
            } else {
                bad.push(p.start);
            }
        }
        (good, bad)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))
}

/// The byte runs of `0..size` that `pieces` (sorted, not overlapping) leave out.
pub(super) fn gaps(pieces: &[Piece], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for p in pieces {
        if p.start > at {
            out.push((at, p.start));
        }
        at = at.max(p.start + p.len);
    }
    if at < size {
        out.push((at, size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_what_the_pieces_leave_out() {
        let p = |start, len| Piece { start, len, crc: 0 };
        assert_eq!(gaps(&[], 10), [(0, 10)]);
        assert_eq!(gaps(&[p(0, 10)], 10), []);
        assert_eq!(gaps(&[p(2, 3), p(5, 1), p(8, 2)], 10), [(0, 2), (6, 8)]);
        assert_eq!(gaps(&[p(0, 4)], 9), [(4, 9)]);
    }

    #[test]
    fn only_what_a_later_run_may_get_past_is_kept() {
        for (kind, kept) in [
            (ErrorKind::Transient, true),
            (ErrorKind::Timeout, true),
            (ErrorKind::Throttled, true),
            (ErrorKind::AccessDenied, true),
            (ErrorKind::Integrity, false),
            (ErrorKind::PreconditionFailed, false),
            (ErrorKind::InvalidInput, false),
            (ErrorKind::Io, false),
            (ErrorKind::Cancelled, false),
        ] {
            assert_eq!(keeps(&Error::new(kind, "x")), kept, "{kind:?}");
        }
    }
}
