//! The data that goes in and out of operations: object info, listing pages,
//! options structs (one per call, `Default` + setters) and results.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::io::AsyncRead;

use crate::error::Result;

/// A stream of body chunks.
pub type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes>> + Send>>;

/// What S3 knows about an object (HEAD, or one entry of a listing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    /// The object's bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modified time.
    #[serde(serialize_with = "ser_time")]
    pub last_modified: Option<SystemTime>,
    /// Entity tag without quotes.
    pub etag: Option<String>,
    /// Content-Type (not returned by listings).
    pub content_type: Option<String>,
    /// User metadata (not returned by listings).
    pub metadata: BTreeMap<String, String>,
    /// Storage class, when the backend reports one.
    pub storage_class: Option<String>,
    /// Cache-Control, when set.
    pub cache_control: Option<String>,
    /// Content-Disposition, when set.
    pub content_disposition: Option<String>,
    /// Content-Encoding, when set.
    pub content_encoding: Option<String>,
    /// The end-to-end checksum stor stored with the object (algorithm and base64
    /// value, shown as `crc64nvme:…`); kept out of `metadata`, where other tools see
    /// it as `stor-crc64nvme`.
    #[serde(serialize_with = "ser_checksum")]
    pub checksum: Option<(crate::ChecksumAlgorithm, String)>,
    /// The modification time of the file the object was uploaded from, when the
    /// upload recorded it (`stor sync` does).
    #[serde(serialize_with = "ser_time")]
    pub source_mtime: Option<SystemTime>,
    /// The version this is, in a bucket that keeps versions (`None` elsewhere, and
    /// for objects written while versioning was never enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

fn ser_checksum<S: serde::Serializer>(
    c: &Option<(crate::ChecksumAlgorithm, String)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match c {
        Some((a, v)) => s.serialize_some(&format!("{}:{v}", a.name())),
        None => s.serialize_none(),
    }
}

impl ObjectInfo {
    pub(crate) fn new(bucket: &str, key: &str, size: u64) -> ObjectInfo {
        ObjectInfo {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            last_modified: None,
            etag: None,
            content_type: None,
            metadata: BTreeMap::new(),
            storage_class: None,
            cache_control: None,
            content_disposition: None,
            content_encoding: None,
            checksum: None,
            source_mtime: None,
            version_id: None,
        }
    }
}

/// Formats a time as RFC 3339 UTC with seconds (`2026-11-26T12:00:00Z`).
pub fn format_time(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let dt = dt.replace_nanosecond(0).unwrap_or(dt);
    dt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn ser_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}

/// Server-side encryption of an uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// SSE-S3 (`AES256`).
    Aes256,
    /// SSE-KMS, with an optional key id (the account's default key when `None`).
    Kms {
        /// KMS key id or ARN.
        key_id: Option<String>,
    },
}

/// Options of an upload. Content-Type is guessed from the file name or key when unset.
///
/// ```
/// let opts = stor::UploadOptions::default()
///     .content_type("application/json")
///     .metadata("source", "crawler")
///     .cache_control("max-age=60");
/// assert_eq!(opts.metadata["source"], "crawler");
/// ```
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// Content-Type; guessed when `None`.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: BTreeMap<String, String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Storage class (`STANDARD`, `STANDARD_IA`, `GLACIER_IR`, …).
    pub storage_class: Option<String>,
    /// Server-side encryption.
    pub encryption: Option<Encryption>,
    /// Called as the upload advances.
    pub progress: Option<Progress>,
    /// The number of bytes the source must have (like `aws s3 cp --expected-size`):
    /// a stream that ends short or runs long fails and stores nothing. Also sizes
    /// the parts of a long stream.
    pub expected_size: Option<u64>,
    /// Write only if this holds of the object the key holds now; the store checks
    /// it atomically with the write (see [`WriteCondition`]).
    pub condition: Option<WriteCondition>,
    /// Object tags (S3's `x-amz-tagging`): at most 10, on stores whose
    /// [`Capabilities::tags`](crate::backend::Capabilities::tags) is set.
    pub tags: BTreeMap<String, String>,
    /// Start fresh: do not resume an interrupted upload of the same file to the same
    /// key (its multipart upload is aborted) and journal nothing for this one. By
    /// default a file upload in parts is journaled, so running it again after a
    /// crash sends only the parts that are missing (see [`crate::journal`]).
    pub no_resume: bool,
}

impl UploadOptions {
    /// Sets Content-Type.
    pub fn content_type(mut self, v: impl Into<String>) -> Self {
        self.content_type = Some(v.into());
        self
    }
    /// Adds one user metadata entry.
    pub fn metadata(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }
    /// Replaces all user metadata.
    pub fn metadata_map(mut self, m: BTreeMap<String, String>) -> Self {
        self.metadata = m;
        self
    }
    /// Sets Cache-Control.
    pub fn cache_control(mut self, v: impl Into<String>) -> Self {
        self.cache_control = Some(v.into());
        self
    }
    /// Sets Content-Disposition.
    pub fn content_disposition(mut self, v: impl Into<String>) -> Self {
        self.content_disposition = Some(v.into());
        self
    }
    /// Sets Content-Encoding.
    pub fn content_encoding(mut self, v: impl Into<String>) -> Self {
        self.content_encoding = Some(v.into());
        self
    }
    /// Sets the storage class.
    pub fn storage_class(mut self, v: impl Into<String>) -> Self {
        self.storage_class = Some(v.into());
        self
    }
    /// Sets server-side encryption.
    pub fn encryption(mut self, e: Encryption) -> Self {
        self.encryption = Some(e);
        self
    }
    /// Reports progress to `p`.
    pub fn progress(mut self, p: Progress) -> Self {
        self.progress = Some(p);
        self
    }
    /// Requires the source to have exactly `n` bytes.
    pub fn expected_size(mut self, n: u64) -> Self {
        self.expected_size = Some(n);
        self
    }
    /// Starts fresh instead of resuming; see [`UploadOptions::no_resume`].
    pub fn no_resume(mut self) -> Self {
        self.no_resume = true;
        self
    }
    /// Writes only if the key holds no object yet ([`WriteCondition::IfAbsent`]).
    pub fn create_only(mut self) -> Self {
        self.condition = Some(WriteCondition::IfAbsent);
        self
    }
    /// Replaces the object only if its ETag is still `etag`
    /// ([`WriteCondition::IfMatch`]).
    pub fn if_match(mut self, etag: impl Into<String>) -> Self {
        self.condition = Some(WriteCondition::IfMatch(etag.into()));
        self
    }
    /// Adds one object tag.
    pub fn tag(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.tags.insert(k.into(), v.into());
        self
    }
}

/// What must hold of the object a write would replace. The store checks it
/// atomically with the write — S3 engines by `If-None-Match` / `If-Match` on the
/// PUT, the CopyObject or the CompleteMultipartUpload, the local and memory stores
/// under their write lock — so two writers can never both win, and a write whose
/// condition fails changes nothing. A failed condition is never retried.
///
/// ```
/// # tokio_test::block_on(async {
/// use stor::{ErrorKind, Storage, StorageConfig, UploadOptions};
/// let s = Storage::new(StorageConfig::memory()).await?;
/// s.create_bucket("jobs").await?;
/// let first = s.upload_bytes("jobs", "lock", "a", UploadOptions::default().create_only()).await?;
/// let again = s.upload_bytes("jobs", "lock", "b", UploadOptions::default().create_only()).await;
/// assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
/// // An optimistic update: only over the version read.
/// let etag = first.etag.unwrap();
/// s.upload_bytes("jobs", "lock", "c", UploadOptions::default().if_match(&etag)).await?;
/// let stale = s.upload_bytes("jobs", "lock", "d", UploadOptions::default().if_match(&etag)).await;
/// assert_eq!(stale.unwrap_err().kind(), ErrorKind::PreconditionFailed);
/// assert_eq!(&s.download_bytes("jobs", "lock").await?.data[..], b"c");
/// # Ok::<(), stor::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Only if the key holds no object (S3 `If-None-Match: *`); else the write fails
    /// with [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists).
    IfAbsent,
    /// Only if the object's ETag is this one (S3 `If-Match`); else — also when there
    /// is no object — it fails with
    /// [`ErrorKind::PreconditionFailed`](crate::ErrorKind::PreconditionFailed).
    IfMatch(String),
}

/// A progress callback for one transfer: called with the bytes done so far and the
/// total when known. Bytes count once: a retried part or a resumed range never
/// counts its bytes again, so `done` only grows and ends at the object's size.
/// File uploads report as bytes are read to be sent; uploads from memory and
/// streams as each part (or the single PUT) is stored; downloads as chunks arrive. Keep it cheap: it runs on the transfer's task.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// let seen = Arc::new(AtomicU64::new(0));
/// let s = seen.clone();
/// let p = stor::Progress::new(move |done, _total| s.store(done, Ordering::Relaxed));
/// let opts = stor::UploadOptions::default().progress(p);
/// # let _ = opts;
/// ```
#[derive(Clone)]
pub struct Progress(std::sync::Arc<dyn Fn(u64, Option<u64>) + Send + Sync>);

impl Progress {
    /// Wraps a callback `(bytes_done, total)`.
    pub fn new(f: impl Fn(u64, Option<u64>) + Send + Sync + 'static) -> Progress {
        Progress(std::sync::Arc::new(f))
    }

    pub(crate) fn report(&self, done: u64, total: Option<u64>) {
        (self.0)(done, total)
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Options of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only keys starting with this.
    pub prefix: String,
    /// Group keys by this delimiter (usually `/`) into common prefixes.
    pub delimiter: Option<String>,
    /// At most this many keys plus common prefixes per page (1..=1000; default 1000).
    pub max_keys: Option<u32>,
    /// Continue after a previous page.
    pub continuation_token: Option<String>,
    /// Start after this key.
    pub start_after: Option<String>,
}

impl ListOptions {
    /// Lists keys under `prefix`.
    pub fn prefix(mut self, p: impl Into<String>) -> Self {
        self.prefix = p.into();
        self
    }
    /// Sets the delimiter.
    pub fn delimiter(mut self, d: impl Into<String>) -> Self {
        self.delimiter = Some(d.into());
        self
    }
    /// Sets max keys per page.
    pub fn max_keys(mut self, n: u32) -> Self {
        self.max_keys = Some(n);
        self
    }
    /// Continues a listing.
    pub fn continuation_token(mut self, t: impl Into<String>) -> Self {
        self.continuation_token = Some(t.into());
        self
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListPage {
    /// Objects, in S3's byte order of keys.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes (with a delimiter), in byte order.
    pub common_prefixes: Vec<String>,
    /// Give this to the next call to get the next page; `None` on the last page.
    pub next_continuation_token: Option<String>,
}

impl ListPage {
    /// Whether more pages follow.
    pub fn is_truncated(&self) -> bool {
        self.next_continuation_token.is_some()
    }
}

/// What an upload, download or copy achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferResult {
    /// Bucket written or read.
    pub bucket: String,
    /// Key written or read.
    pub key: String,
    /// Bytes transferred (object size).
    pub bytes: u64,
    /// ETag of the object, without quotes.
    pub etag: Option<String>,
    /// Attempts made, counting the first (the most of any request for multipart).
    pub attempts: u32,
    /// Wall time of the whole transfer.
    #[serde(serialize_with = "ser_duration")]
    pub elapsed: Duration,
    /// Whether the transfer used multipart.
    pub multipart: bool,
    /// The full-object checksum (`crc64nvme:<base64>`): stored with an upload, or
    /// verified by a download. `None` when the object carries none.
    pub checksum: Option<String>,
    /// Bytes an earlier, interrupted run had already stored (or received) and that
    /// this one therefore did not send again: `bytes - resumed` went over the wire.
    /// 0 for a transfer that started fresh.
    pub resumed: u64,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Outcome of one key of a batch delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteResult {
    /// The key.
    pub key: String,
    /// `None` when deleted (or already absent, as S3 does), else why not.
    pub error: Option<String>,
}

impl DeleteResult {
    /// Whether this key was deleted.
    pub fn is_deleted(&self) -> bool {
        self.error.is_none()
    }
}

/// What a sweep removed from a store: the leftovers of writes that never finished
/// (a crash, a `kill -9`). See [`crate::Storage::sweep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SweepReport {
    /// Temp files of unfinished writes removed.
    pub temp_files: u64,
    /// Their bytes.
    pub temp_bytes: u64,
    /// Blob files that no object pointed at, removed.
    pub orphan_blobs: u64,
    /// Their bytes.
    pub orphan_bytes: u64,
}

impl std::ops::AddAssign for SweepReport {
    fn add_assign(&mut self, o: SweepReport) {
        self.temp_files += o.temp_files;
        self.temp_bytes += o.temp_bytes;
        self.orphan_blobs += o.orphan_blobs;
        self.orphan_bytes += o.orphan_bytes;
    }
}

/// HTTP method of a presigned URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresignMethod {
    /// Download.
    #[default]
    Get,
    /// Upload.
    Put,
}

/// Options of a presigned URL.
#[derive(Debug, Clone)]
pub struct PresignOptions {
    /// GET (default) or PUT.
    pub method: PresignMethod,
    /// Validity, 1 s to 7 days; default 1 hour.
    pub expires_in: Duration,
    /// For PUT: the Content-Type the uploader must send (signed into the URL).
    pub content_type: Option<String>,
    /// For GET: this version of the object rather than the current one.
    pub version_id: Option<String>,
}

impl Default for PresignOptions {
    fn default() -> Self {
        PresignOptions {
            method: PresignMethod::Get,
            expires_in: Duration::from_secs(3600),
            content_type: None,
            version_id: None,
        }
    }
}

impl PresignOptions {
    /// A GET URL valid for `expires_in`.
    pub fn get(expires_in: Duration) -> Self {
        PresignOptions {
            expires_in,
            ..Default::default()
        }
    }
    /// A PUT URL valid for `expires_in`.
    pub fn put(expires_in: Duration) -> Self {
        PresignOptions {
            method: PresignMethod::Put,
            expires_in,
            ..Default::default()
        }
    }
    /// Pins the Content-Type of a PUT.
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.content_type = Some(ct.into());
        self
    }
    /// A GET of this version of the object.
    pub fn version(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }
}

/// Options of a copy or move.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Replace metadata, headers and tags with these instead of copying the
    /// source's (its `condition` is not used: see [`CopyOptions::condition`]).
    pub replace: Option<UploadOptions>,
    /// Write the destination only if this holds of it (checked by the store,
    /// atomically with the copy).
    pub condition: Option<WriteCondition>,
    /// Copy this version of the source rather than its current one (restoring an
    /// old version is copying it over its own key).
    pub version_id: Option<String>,
}

impl CopyOptions {
    /// Replaces headers, metadata and tags with these.
    pub fn replace(mut self, opts: UploadOptions) -> Self {
        self.replace = Some(opts);
        self
    }
    /// Writes the destination only if it does not exist yet.
    pub fn create_only(mut self) -> Self {
        self.condition = Some(WriteCondition::IfAbsent);
        self
    }
    /// Replaces the destination only if its ETag is still `etag`.
    pub fn if_match(mut self, etag: impl Into<String>) -> Self {
        self.condition = Some(WriteCondition::IfMatch(etag.into()));
        self
    }
    /// Copies this version of the source.
    pub fn version(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }
}

/// A byte range of an object, `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Options of a download.
#[derive(Debug, Clone, Default)]
pub struct DownloadOptions {
    /// Only this range of the object.
    pub range: Option<ByteRange>,
    /// Fail with [`crate::ErrorKind::PreconditionFailed`] unless the ETag matches.
    pub if_match: Option<String>,
    /// Called as the download advances.
    pub progress: Option<Progress>,
    /// This version of the object rather than the current one.
    pub version_id: Option<String>,
    /// Start fresh: do not resume an interrupted download of the same object into
    /// the same file (its partial file is removed) and journal nothing for this one.
    /// By default a ranged download into a file is journaled, so running it again
    /// after a crash fetches only the ranges that are missing.
    pub no_resume: bool,
}

/// An object downloaded into memory.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The bytes.
    pub data: Bytes,
    /// The object's info.
    pub info: ObjectInfo,
    /// What the transfer took.
    pub result: TransferResult,
}

/// An object being read as a stream.
pub struct ObjectStream {
    /// The object's info.
    pub info: ObjectInfo,
    /// Bytes the stream will yield.
    pub content_length: u64,
    /// The chunks.
    pub body: ByteStream,
}

impl std::fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStream")
            .field("info", &self.info)
            .field("content_length", &self.content_length)
            .finish()
    }
}

impl ObjectStream {
    /// The body as an `AsyncRead`.
    pub fn into_async_read(self) -> impl AsyncRead + Send + Unpin {
        tokio_util::io::StreamReader::new(self.body.map_err(std::io::Error::other))
    }

    /// Reads the whole body into memory.
    pub async fn collect(self) -> Result<Bytes> {
        let mut buf = bytes::BytesMut::with_capacity(self.content_length as usize);
        let mut body = self.body;
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }
}

// ---------------------------------------------------------------- versions
// (the data of `crate::versions`, here so that backends name them without
// depending on the façade)

/// A bucket's versioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Versioning {
    /// Never turned on: a write replaces the object.
    Unversioned,
    /// Every write keeps the previous version; a delete leaves a delete marker.
    Enabled,
    /// Turned off again: versions kept so far stay, new writes replace the `null`
    /// version.
    Suspended,
}

/// One version of an object, or a delete marker, as a version listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectVersion {
    /// Key, size, ETag, time and `version_id` (size 0 and no ETag for a delete
    /// marker).
    #[serde(flatten)]
    pub info: ObjectInfo,
    /// The key's current version (or the marker that hides it).
    pub is_latest: bool,
    /// A delete marker: the key looked deleted from then on.
    pub delete_marker: bool,
}

/// One page of a version listing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionPage {
    /// Versions and delete markers: keys in byte order, newest first per key.
    pub versions: Vec<ObjectVersion>,
    /// Common prefixes (with a delimiter), in byte order.
    pub common_prefixes: Vec<String>,
    /// Give this to the next call (as `ListOptions::continuation_token`) for the
    /// next page; `None` on the last.
    pub next_continuation_token: Option<String>,
}

/// What happened to one version a purge or a batch delete named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedVersion {
    /// The key.
    pub key: String,
    /// The version (or delete marker) removed.
    pub version_id: String,
    /// `None` when removed (or already gone), else why not.
    pub error: Option<String>,
}

impl DeletedVersion {
    /// Whether this version is gone.
    pub fn is_deleted(&self) -> bool {
        self.error.is_none()
    }
}
