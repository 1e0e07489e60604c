//! [`Storage`], the cheap-to-clone handle every operation goes through: a thin
//! façade over the [`Core`](crate::core). Each operation checks its input, then runs
//! an engine (`transfer/`) or one backend request inside [`Op::run`] — the one
//! place that resolves the bucket, applies the timeout, records metrics and
//! tracing, and names the operation and location in any error.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncRead;

use crate::backend::{Backend, Capabilities, PendingUpload};
use crate::config::StorageConfig;
use crate::core::{BucketArg, Core};
use crate::destination::Sweeps;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{WriteEvents, WriteKind};
use crate::journal::Interrupted;
use crate::metrics::{HealthReport, MetricsSnapshot};
use crate::post::{PostKey, PresignPostOptions, PresignedPost};
use crate::reserved;
use crate::transfer::{self, FileTarget, Source};
use crate::types::{
    CopyOptions, DeleteResult, DownloadOptions, Downloaded, ListOptions, ListPage, ObjectInfo,
    ObjectStream, PresignOptions, SweepReport, TransferResult, UploadOptions,
};
use crate::validate::{validate_expiry, validate_header_value, validate_key, validate_metadata};

/// Most keys S3 deletes in one request.
pub const DELETE_BATCH: usize = 1000;

/// A handle to one store. Clone it freely: clones share the client, its
/// connection pool, request budget and metrics.
///
/// ```
/// # tokio_test::block_on(async {
/// use stor::{Storage, StorageConfig, UploadOptions};
/// let storage = Storage::new(StorageConfig::memory()).await?;
/// storage.create_bucket("news").await?;
/// let put = storage
///     .upload_bytes("news", "2026/11/26/a.json", br#"{"title":"hi"}"#.to_vec(), UploadOptions::default())
///     .await?;
/// assert_eq!(put.bytes, 14);
/// let info = storage.info("news", "2026/11/26/a.json").await?;
/// assert_eq!(info.content_type.as_deref(), Some("application/json"));
/// # Ok::<(), stor::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Storage {
    core: Arc<Core>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.core.backend)
            .field("config", &self.core.config)
            .finish()
    }
}

/// Counts no bytes (operations that move none).
fn none<T>(_: &T) -> u64 {
    0
}

impl Storage {
    /// Opens the store the config names: S3 (credentials from the config, else the
    /// AWS environment; region [`StorageConfig::resolved_region`]), the local store,
    /// or memory.
    pub async fn new(config: StorageConfig) -> Result<Storage> {
        let backend = crate::backend::open(&config).await?;
        // As the original: one INFO line when the service opens (and at shutdown).
        let region = match config.storage_type {
            crate::StorageType::S3 => Some(config.resolved_region().await),
            _ => None,
        };
        tracing::info!(
            "storage service initialized {}",
            config.describe(region.as_deref())
        );
        Ok(Storage::with_backend(backend, config))
    }

    /// A handle over any [`Backend`] (a custom store, or a wrapper around one of
    /// [`crate::backend::open`]'s): every operation still goes through the one
    /// validation, retry and metrics layer.
    pub fn with_backend(backend: Arc<dyn Backend>, config: StorageConfig) -> Storage {
        Storage {
            core: Arc::new(Core::new(backend, config)),
        }
    }

    /// The config in use.
    pub fn config(&self) -> &StorageConfig {
        &self.core.config
    }

    /// The backend's scheme: `s3`, `local` or `memory`.
    pub fn scheme(&self) -> &'static str {
        self.core.scheme()
    }

    /// The custom endpoint in use (userinfo removed, so safe to show), wherever it
    /// was set — the config, `AWS_ENDPOINT_URL`, or an AWS profile's `endpoint_url`;
    /// `None` for AWS's own endpoint and for stores that are not S3.
    pub fn endpoint(&self) -> Option<String> {
        self.core
            .backend
            .endpoint_url()
            .map(|u| crate::config::redact_url(&u))
    }

    /// What the store can do (multipart uploads, presigning, native checksums …).
    pub fn capabilities(&self) -> Capabilities {
        self.core.caps
    }

    /// The core, for the façade's other modules (versions, tags, presigned POST).
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Sweeps of stale download temp files that leave those the transfer journal
    /// keeps for resuming.
    pub(crate) fn sweeps(&self) -> Sweeps {
        let core = self.core.clone();
        Sweeps::keeping(move |temp| core.journal(false).is_some_and(|j| j.knows_temp(temp)))
    }

    /// The backend, for the probes of `probe.rs` only (they must reach it without
    /// the engine in between).
    pub(crate) fn backend_for_probe(&self) -> &dyn Backend {
        &*self.core.backend
    }

    /// Stops taking operations and waits (up to 30 s) for those in flight.
    pub async fn shutdown(&self) {
        self.core.shutdown().await
    }

    /// Whether [`Storage::shutdown`] has been called.
    pub fn is_shut_down(&self) -> bool {
        self.core.is_shut_down()
    }

    /// Subscribes to this store's completed writes (puts, copies, moves, deletes),
    /// from this handle and all its clones: see [`crate::events`].
    pub fn subscribe(&self) -> WriteEvents {
        self.core.events.subscribe()
    }

    /// Where the credentials in use came from (`"profile prod (~/.aws/credentials)"`,
    /// `"environment (AWS_ACCESS_KEY_ID)"`); `None` for stores that need none. With
    /// none to be found, the error names every place looked in.
    pub async fn credentials_source(&self) -> Result<Option<String>> {
        self.core.backend.credentials().await
    }

    // ---------------------------------------------------------------- buckets

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let core = &*self.core;
        core.op("create bucket", Some(bucket), "")
            .run(none, |b| async move {
                core.request(|_| core.backend.create_bucket(&b)).await?;
                Ok(())
            })
            .await
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let core = &*self.core;
        core.op("delete bucket", Some(bucket), "")
            .run(none, |b| async move {
                core.request(|_| core.backend.delete_bucket(&b)).await?;
                core.forget_bucket(&b);
                Ok(())
            })
            .await
    }

    /// Whether a bucket exists and is reachable with these credentials.
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let core = &*self.core;
        core.op("bucket exists", Some(bucket), "")
            .run(none, |b| async move {
                let (v, _) = core.request(|_| core.backend.bucket_exists(&b)).await?;
                Ok(v)
            })
            .await
    }

    /// Names of all buckets.
    pub async fn list_buckets(&self) -> Result<Vec<String>> {
        let core = &*self.core;
        core.op("list buckets", Some(""), "")
            .unchecked_bucket()
            .run(none, |_| async move {
                let (v, _) = core.request(|_| core.backend.list_buckets()).await?;
                Ok(v)
            })
            .await
    }

    // ---------------------------------------------------------------- uploads

    /// Uploads a file. Multipart above `multipart_threshold`.
    pub async fn upload_file<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        path: impl AsRef<Path>,
        opts: UploadOptions,
    ) -> Result<TransferResult> {
        let path = path.as_ref().to_path_buf();
        let hint = path.to_string_lossy().into_owned();
        self.upload(bucket.into(), key, Source::File(path), opts, &hint)
            .await
    }

    /// Uploads bytes from memory. Multipart above `multipart_threshold`.
    pub async fn upload_bytes<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        data: impl Into<Bytes>,
        opts: UploadOptions,
    ) -> Result<TransferResult> {
        self.upload(bucket.into(), key, Source::Bytes(data.into()), opts, key)
            .await
    }

    /// Uploads everything an async reader yields, length unknown in advance:
    /// one PUT when it ends before `multipart_threshold`, else multipart with memory
    /// bounded by `max_concurrency` parts.
    pub async fn upload_reader<'b, R>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        reader: R,
        opts: UploadOptions,
    ) -> Result<TransferResult>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let source = Source::Reader(Box::new(reader));
        self.upload(bucket.into(), key, source, opts, key).await
    }

    /// Every upload: checks before any I/O (Content-Type guessed from `name_hint`),
    /// then the upload engine under the upload timeout.
    async fn upload(
        &self,
        bucket: BucketArg<'_>,
        key: &str,
        source: Source,
        mut opts: UploadOptions,
        name_hint: &str,
    ) -> Result<TransferResult> {
        let core = &*self.core;
        core.op("upload", bucket, key)
            .up()
            .run(
                |r: &TransferResult| r.bytes,
                |b| async move {
                    check_upload(key, &mut opts, name_hint)?;
                    let r = transfer::upload(core, &b, key, source, &opts).await?;
                    let mut metadata = opts.metadata;
                    metadata.retain(|k, _| !reserved::is_reserved(k));
                    core.announce(WriteKind::Put, &b, key, Some(&r), metadata, None);
                    Ok(r)
                },
            )
            .await
    }

    // ---------------------------------------------------------------- downloads

    /// Downloads an object to a file: written to a temp file beside it and renamed
    /// only when complete and verified, so the path never holds a partial file.
    pub async fn download_file<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        path: impl AsRef<Path>,
    ) -> Result<TransferResult> {
        self.download_file_with(bucket, key, path, DownloadOptions::default())
            .await
    }

    /// [`Storage::download_file`] with options: `opts.progress` is reported as bytes
    /// arrive (a range is not allowed: a file is always the whole object).
    pub async fn download_file_with<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        path: impl AsRef<Path>,
        opts: DownloadOptions,
    ) -> Result<TransferResult> {
        let target = FileTarget {
            path: path.as_ref(),
            root: None,
            sweeps: &self.sweeps(),
        };
        self.download_file_sized(bucket.into(), key, target, opts, None)
            .await
    }

    /// [`Storage::download_file_with`] for an object whose size a listing told
    /// (`size`): one that fits in a part is fetched with a plain GET.
    pub(crate) async fn download_file_sized(
        &self,
        bucket: BucketArg<'_>,
        key: &str,
        target: FileTarget<'_>,
        opts: DownloadOptions,
        size: Option<u64>,
    ) -> Result<TransferResult> {
        let core = &*self.core;
        core.op("download", bucket, key)
            .down()
            .run(
                |r: &TransferResult| r.bytes,
                |b| async move {
                    validate_key(key)?;
                    if opts.range.is_some() || opts.if_match.is_some() {
                        return Err(Error::invalid(
                            "download_file_with takes no range or if_match (use download_stream)",
                        ));
                    }
                    if let Some(v) = opts.version_id.as_deref() {
                        crate::validate::validate_version_id(v)?;
                    }
                    transfer::download_to_file(core, &b, key, target, &opts, size).await
                },
            )
            .await
    }

    /// Downloads an object into memory.
    pub async fn download_bytes<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
    ) -> Result<Downloaded> {
        let core = &*self.core;
        core.op("download", bucket.into(), key)
            .down()
            .run(
                |r: &Downloaded| r.result.bytes,
                |b| async move {
                    validate_key(key)?;
                    let mut got = transfer::download_to_memory(core, &b, key, None, None).await?;
                    reserved::split(&mut got.info);
                    Ok(got)
                },
            )
            .await
    }

    /// Opens an object as a stream of chunks (a range of it with `opts.range`),
    /// verified against its stored checksum as it streams when it is the whole
    /// object. Holds one request permit until the stream is dropped. Use
    /// [`ObjectStream::into_async_read`] for an `AsyncRead`.
    pub async fn download_stream<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        opts: DownloadOptions,
    ) -> Result<ObjectStream> {
        let core = &*self.core;
        core.op("download", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                if let Some(v) = &opts.version_id {
                    crate::validate::validate_version_id(v)?;
                }
                let mut stream = transfer::open_stream(core, &b, key, opts).await?;
                reserved::split(&mut stream.info);
                Ok(stream)
            })
            .await
    }

    // ---------------------------------------------------------------- objects

    /// An object's size, modified time, ETag, Content-Type, metadata and storage class.
    pub async fn info<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
    ) -> Result<ObjectInfo> {
        let core = &*self.core;
        core.op("info", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                let (mut info, _) = core.request(|_| core.backend.head_object(&b, key)).await?;
                reserved::split(&mut info);
                Ok(info)
            })
            .await
    }

    /// The S3-native full-object checksum the server keeps for an object (stores
    /// with native checksums on; `None` otherwise, or for a multipart upload's
    /// COMPOSITE checksum, which is no checksum of the bytes). With `etag`, the
    /// object must still be that version.
    pub async fn native_checksum<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Option<(crate::ChecksumAlgorithm, String)>> {
        let core = &*self.core;
        core.op("info", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                let (v, _) = core
                    .request(|_| core.backend.native_checksum(&b, key, etag))
                    .await?;
                Ok(v)
            })
            .await
    }

    /// Whether an object exists.
    pub async fn exists<'b>(&self, bucket: impl Into<BucketArg<'b>>, key: &str) -> Result<bool> {
        match self.info(bucket, key).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::KeyNotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes an object. Deleting a key that does not exist succeeds, as in S3.
    pub async fn delete<'b>(&self, bucket: impl Into<BucketArg<'b>>, key: &str) -> Result<()> {
        let core = &*self.core;
        core.op("delete", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                core.request(|_| core.backend.delete_object(&b, key))
                    .await?;
                core.announce(WriteKind::Delete, &b, key, None, Default::default(), None);
                Ok(())
            })
            .await
    }

    /// Deletes many objects, batched up to 1000 keys per request; one result per key.
    /// A batch that fails as a whole marks each of its keys with the error.
    pub async fn delete_many<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        keys: &[String],
    ) -> Result<Vec<DeleteResult>> {
        let core = &*self.core;
        core.op("delete", bucket.into(), "")
            .run(none, |b| async move {
                for k in keys {
                    core.caps
                        .names
                        .key(k)
                        .map_err(|e| e.prefixed(&format!("key {k:?}")))?;
                }
                let b = &b;
                let batches = futures::stream::iter(keys.chunks(DELETE_BATCH))
                    .map(|chunk| async move {
                        match core
                            .request(|_| core.backend.delete_objects(b, chunk))
                            .await
                        {
                            Ok((v, _)) => Ok(v),
                            Err(e) if e.kind() == ErrorKind::BucketNotFound => Err(e),
                            Err(e) => Ok(chunk
                                .iter()
                                .map(|k| DeleteResult {
                                    key: k.clone(),
                                    error: Some(e.to_string()),
                                })
                                .collect()),
                        }
                    })
                    .buffered(core.config.max_concurrency.min(4))
                    .try_collect::<Vec<_>>()
                    .await?;
                let results: Vec<DeleteResult> = batches.into_iter().flatten().collect();
                for r in results.iter().filter(|r| r.error.is_none()) {
                    core.announce(WriteKind::Delete, b, &r.key, None, Default::default(), None);
                }
                Ok(results)
            })
            .await
    }

    /// One page of keys (at most `max_keys`, 1000 when unset).
    pub async fn list<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        opts: ListOptions,
    ) -> Result<ListPage> {
        list_page(&self.core, bucket.into(), opts).await
    }

    /// Every object under the options' prefix, page after page (common prefixes are
    /// skipped; use [`Storage::list`] with a delimiter for those).
    pub fn list_stream<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        opts: ListOptions,
    ) -> futures::stream::BoxStream<'static, Result<ObjectInfo>> {
        let core = self.core.clone();
        let b = bucket.into().map(str::to_owned);
        futures::stream::try_unfold(Some(opts), move |opts| {
            let (core, b) = (core.clone(), b.clone());
            async move {
                let Some(opts) = opts else { return Ok(None) };
                let page = list_page(&core, b.as_deref(), opts.clone()).await?;
                let next = page.next_continuation_token.clone().map(|t| ListOptions {
                    continuation_token: Some(t),
                    ..opts
                });
                Ok(Some((page.objects, next)))
            }
        })
        .map_ok(|objs| futures::stream::iter(objs.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// Copies an object server-side (no bytes through the client), within or
    /// across buckets of this store.
    pub async fn copy_object<'b>(
        &self,
        src_bucket: impl Into<BucketArg<'b>>,
        src_key: &str,
        dst_bucket: impl Into<BucketArg<'b>>,
        dst_key: &str,
        opts: CopyOptions,
    ) -> Result<TransferResult> {
        let (sb, db) = (src_bucket.into(), dst_bucket.into());
        self.server_side(WriteKind::Copy, sb, src_key, db, dst_key, opts)
            .await
    }

    /// Moves an object: a server-side copy (with `opts.replace`, new headers and
    /// metadata), confirmed by reading the destination back, and only then the
    /// source deleted — only if it still has the ETag it had when the move began
    /// (one replaced meanwhile is kept, beside the copy, with a
    /// [`ErrorKind::PreconditionFailed`] error), and only with proof that source and
    /// destination are two stored objects, whatever the engine does to keys
    /// (SeaweedFS stores `a//b` as `a/b`, some gateways fold case). The proof: a
    /// destination that did not exist before the copy cannot be the source; one that
    /// did gets a unique marker in the copy's metadata (`stor-move`), and the source
    /// is deleted only if it does not carry it. A destination that looks like the
    /// source (same ETag and size) is proved another object before the new headers
    /// are written, so a refused move changes nothing. Moving an object onto its own
    /// key with `opts.replace` is a metadata replacement; nothing is deleted.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use stor::{CopyOptions, Storage, StorageConfig, UploadOptions};
    /// let s = Storage::new(StorageConfig::memory()).await?;
    /// s.create_bucket("news").await?;
    /// s.upload_bytes("news", "in/a.json", "{}", UploadOptions::default()).await?;
    /// s.move_object("news", "in/a.json", "news", "done/a.json", CopyOptions::default()).await?;
    /// assert!(!s.exists("news", "in/a.json").await?);
    /// // In place, with new headers: a metadata replacement.
    /// let retag = CopyOptions::default().replace(UploadOptions::default().content_type("text/plain"));
    /// s.move_object("news", "done/a.json", "news", "done/a.json", retag).await?;
    /// assert_eq!(s.info("news", "done/a.json").await?.content_type.as_deref(), Some("text/plain"));
    /// # Ok::<(), stor::Error>(()) }).unwrap();
    /// ```
    pub async fn move_object<'b>(
        &self,
        src_bucket: impl Into<BucketArg<'b>>,
        src_key: &str,
        dst_bucket: impl Into<BucketArg<'b>>,
        dst_key: &str,
        opts: CopyOptions,
    ) -> Result<TransferResult> {
        let (sb, db) = (src_bucket.into(), dst_bucket.into());
        self.server_side(WriteKind::Move, sb, src_key, db, dst_key, opts)
            .await
    }

    /// A copy or a move inside this store: checked before any I/O, run as one
    /// operation, announced to subscribers once it is done.
    async fn server_side(
        &self,
        kind: WriteKind,
        src_bucket: BucketArg<'_>,
        src_key: &str,
        dst_bucket: BucketArg<'_>,
        dst_key: &str,
        opts: CopyOptions,
    ) -> Result<TransferResult> {
        let core = &*self.core;
        let moving = kind == WriteKind::Move;
        core.op(if moving { "move" } else { "copy" }, src_bucket, src_key)
            .long()
            .run(none, |sb| async move {
                let db = core.bucket(dst_bucket)?;
                if moving && sb == db && src_key == dst_key && opts.replace.is_none() {
                    return Err(Error::invalid(format!(
                        "cannot move {}://{sb}/{src_key} onto itself (give new headers or \
                         metadata to replace them in place)",
                        core.scheme()
                    )));
                }
                check_copy(core, &sb, src_key, &db, dst_key, &opts)?;
                let r = if moving {
                    transfer::move_object(core, &sb, src_key, &db, dst_key, &opts).await?
                } else {
                    transfer::copy(core, &sb, src_key, &db, dst_key, &opts).await?
                };
                let metadata = user_metadata(&opts);
                let from = Some((sb.as_str(), src_key));
                core.announce(kind, &db, dst_key, Some(&r), metadata, from);
                Ok(r)
            })
            .await
    }

    /// A browser form upload into `bucket`: the URL and the form fields, signed
    /// with a POST policy that allows `key` (one key, or any under a prefix) until
    /// `opts.expires_in` from now, under `opts.conditions` (size range,
    /// Content-Type, metadata). Needs an S3 store
    /// ([`Capabilities::presign_post`](crate::backend::Capabilities::presign_post));
    /// the server enforces the policy (SeaweedFS and AWS do; moto checks none of it).
    pub async fn presign_post<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: PostKey,
        opts: PresignPostOptions,
    ) -> Result<PresignedPost> {
        let core = self.core();
        if !core.caps.presign_post {
            // Said before the key is checked by this store's name rules: the form
            // could not be signed here whatever the key.
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the {} store has no browser form uploads; presigned POST needs an s3:// URL",
                    core.scheme()
                ),
            ));
        }
        let shown = match &key {
            PostKey::Exact(k) | PostKey::StartsWith(k) => k.clone(),
        };
        core.op("presign", bucket.into(), &shown)
            .quiet()
            .run(
                |_| 0,
                |b| async move {
                    crate::post::check(&key, &opts)?;
                    core.backend.presign_post(&b, &key, &opts).await
                },
            )
            .await
    }

    /// A presigned URL (GET by default, 1 hour): valid for `opts.expires_in`,
    /// 1 s to 7 days. PUT URLs can pin the Content-Type.
    pub async fn presign<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        opts: PresignOptions,
    ) -> Result<String> {
        let core = &*self.core;
        core.op("presign", bucket.into(), key)
            .quiet()
            .run(none, |b| async move {
                validate_key(key)?;
                validate_expiry(opts.expires_in)?;
                if let Some(ct) = &opts.content_type {
                    validate_header_value("Content-Type", ct)?;
                }
                if let Some(v) = &opts.version_id {
                    crate::validate::validate_version_id(v)?;
                    if opts.method != crate::types::PresignMethod::Get {
                        return Err(Error::invalid(
                            "a version can only be read: presign it for GET",
                        ));
                    }
                }
                core.backend.presign(&b, key, &opts).await
            })
            .await
    }

    /// Multipart uploads under `prefix` that were started and never completed or
    /// aborted (none on stores without multipart uploads).
    pub async fn list_uploads<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>> {
        let core = &*self.core;
        core.op("list uploads", bucket.into(), prefix)
            .prefix()
            .run(none, |b| async move {
                let Some(mp) = core.backend.multipart() else {
                    return Ok(Vec::new());
                };
                let (v, _) = core
                    .request(|_| mp.list_multipart_uploads(&b, prefix))
                    .await?;
                Ok(v)
            })
            .await
    }

    /// Aborts multipart uploads under `prefix` started more than `older_than` ago;
    /// returns those aborted.
    pub async fn abort_stale_uploads<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<PendingUpload>> {
        let bucket = bucket.into();
        let pending = self.list_uploads(bucket, prefix).await?;
        let core = &*self.core;
        core.op("cleanup", bucket, prefix)
            .prefix()
            .run(none, |b| async move {
                let cutoff = SystemTime::now().checked_sub(older_than);
                let stale = |u: &PendingUpload| match (u.initiated, cutoff) {
                    (Some(t), Some(c)) => t <= c,
                    _ => true,
                };
                let mut aborted = Vec::new();
                for u in pending.into_iter().filter(stale) {
                    let mp = transfer::multipart_of(&*core.backend)?;
                    core.request(|_| mp.abort_multipart(&b, &u.key, &u.upload_id))
                        .await?;
                    aborted.push(u);
                }
                Ok(aborted)
            })
            .await
    }

    /// Removes what writes that died (a crash, `kill -9`) left in the store: the local
    /// store's temp files and blobs no object points at, including the temp files its
    /// open already removed. Never touches a write in flight, in this process or
    /// another. Other stores have nothing to sweep; S3's leftovers are multipart
    /// uploads ([`Storage::abort_stale_uploads`]).
    pub async fn sweep(&self) -> Result<SweepReport> {
        let core = &*self.core;
        core.op("sweep", Some(""), "")
            .unchecked_bucket()
            .run(none, |_| async move {
                let (r, _) = core.request(|_| core.backend.sweep()).await?;
                Ok(r)
            })
            .await
    }

    // ---------------------------------------------------------------- interrupted transfers

    /// The transfers of this store into or out of `bucket` under `prefix` that were
    /// interrupted (a crash, Ctrl-C, a network that stayed down) and that running
    /// them again resumes: multipart uploads of files and ranged downloads into
    /// files, from the transfer journal (see [`crate::journal`]). Oldest progress
    /// is not removed by itself: [`Storage::discard_interrupted`] does that.
    pub async fn interrupted_transfers<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
    ) -> Result<Vec<Interrupted>> {
        let core = &*self.core;
        core.op("list interrupted", bucket.into(), prefix)
            .run(none, |b| async move {
                let Some(j) = core.journal(false) else {
                    return Ok(Vec::new());
                };
                j.interrupted(&core.store_id(), &b, prefix)
            })
            .await
    }

    /// Discards the interrupted transfers of `bucket` under `prefix` (see
    /// [`Storage::interrupted_transfers`]) that made no progress for `older_than`:
    /// their multipart uploads are aborted, their partial files removed, their
    /// journal records — and those of interrupted batches — deleted. One that a
    /// process is running is left alone. Returns those discarded.
    pub async fn discard_interrupted<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<Interrupted>> {
        let core = &*self.core;
        core.op("cleanup", bucket.into(), prefix)
            .run(none, |b| async move {
                let Some(j) = core.journal(false) else {
                    return Ok(Vec::new());
                };
                let store = core.store_id();
                let cutoff = SystemTime::now()
                    .checked_sub(older_than)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let mut gone = Vec::new();
                for t in j.interrupted(&store, &b, prefix)? {
                    if t.updated > cutoff {
                        continue;
                    }
                    let ident = crate::journal::Ident {
                        kind: t.kind,
                        store: &store,
                        bucket: &b,
                        key: &t.key,
                        path: &t.path,
                    };
                    let Ok(lock) = j.lock(&ident) else {
                        continue; // running: not interrupted
                    };
                    if let Some(id) = &t.upload_id {
                        let mp = transfer::multipart_of(&*core.backend)?;
                        core.request(|_| mp.abort_multipart(&b, &t.key, id)).await?;
                    }
                    if let Some(temp) = &t.temp {
                        let ours = temp
                            .file_name()
                            .is_some_and(crate::destination::is_download_temp);
                        if ours {
                            match std::fs::remove_file(temp) {
                                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                    return Err(Error::io(
                                        format!("removing {}", temp.display()),
                                        e,
                                    ))
                                }
                                _ => {}
                            }
                        }
                    }
                    j.remove(t.id)?;
                    lock.release();
                    gone.push(t);
                }
                j.discard_batches(&store, &b, prefix, cutoff)?;
                Ok(gone)
            })
            .await
    }

    // ---------------------------------------------------------------- health, metrics

    /// Probes the backend (the default bucket when configured, else the bucket list)
    /// and reports connection health.
    pub async fn health(&self) -> HealthReport {
        let core = &*self.core;
        let start = Instant::now();
        let be = &core.backend;
        let probe = async {
            match &core.config.default_bucket {
                Some(b) => match be.bucket_exists(b).await? {
                    true => Ok(()),
                    false => Err(Error::new(
                        ErrorKind::BucketNotFound,
                        format!("the default bucket {b:?} does not exist"),
                    )),
                },
                None => be.list_buckets().await.map(|_| ()),
            }
        };
        let res = tokio::time::timeout(
            Duration::from_secs(core.config.connect_timeout.max(1) * 2),
            probe,
        )
        .await
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::Timeout, "the health probe timed out")));
        let m = &core.metrics;
        let endpoint = match self.scheme() {
            "s3" => core
                .config
                .endpoint_url
                .as_deref()
                .map(crate::config::redact_url),
            "local" => Some(core.config.resolved_local_root().display().to_string()),
            _ => None,
        };
        HealthReport {
            backend: self.scheme().to_owned(),
            endpoint,
            healthy: res.is_ok(),
            latency: start.elapsed(),
            error: res.err().map(|e| e.to_string()),
            consecutive_failures: m.consecutive_failures(),
            last_success: m.last_success(),
            clock_skew_seconds: be.clock_skew(),
        }
    }

    /// The counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        let b = &self.core.budget;
        self.core.metrics.snapshot(
            b.retries.load(Ordering::Relaxed),
            b.throttled.load(Ordering::Relaxed),
        )
    }
}

/// One page of a listing.
async fn list_page(core: &Core, bucket: BucketArg<'_>, opts: ListOptions) -> Result<ListPage> {
    let prefix = opts.prefix.clone();
    core.op("list", bucket, &prefix)
        .prefix()
        .run(none, |b| async move {
            let max = opts.max_keys.unwrap_or(1000);
            if max > 1000 {
                return Err(Error::invalid(format!(
                    "max_keys {max} is above S3's 1000 per page; use list_stream for more"
                )));
            }
            let req = ListOptions {
                max_keys: Some(max),
                ..opts
            };
            let (mut page, _) = core
                .request(|_| core.backend.list_objects(&b, &req))
                .await?;
            // Listings that carry metadata (the local store's) keep stor's own keys
            // apart as `info` does.
            page.objects.iter_mut().for_each(reserved::split);
            Ok(page)
        })
        .await
}

/// An upload's key, metadata and headers, checked before any I/O; the Content-Type
/// is guessed from `name_hint` when not given.
fn check_upload(key: &str, opts: &mut UploadOptions, name_hint: &str) -> Result<()> {
    validate_key(key)?;
    validate_metadata(&opts.metadata)?;
    crate::validate::validate_tags(&opts.tags)?;
    if let Some(crate::types::WriteCondition::IfMatch(etag)) = &opts.condition {
        validate_header_value("If-Match ETag", etag)?;
        if etag.trim_matches('"').is_empty() {
            return Err(Error::invalid("If-Match needs an ETag, not an empty one"));
        }
    }
    for (what, v) in [
        ("Content-Type", &opts.content_type),
        ("Cache-Control", &opts.cache_control),
        ("Content-Disposition", &opts.content_disposition),
        ("Content-Encoding", &opts.content_encoding),
        ("storage class", &opts.storage_class),
    ] {
        if let Some(v) = v {
            validate_header_value(what, v)?;
        }
    }
    if opts.content_type.is_none() {
        opts.content_type = Some(guess_content_type(name_hint));
    }
    Ok(())
}

/// The user metadata a copy or move wrote: the new metadata it replaced, else
/// none (the source's was kept).
fn user_metadata(opts: &CopyOptions) -> std::collections::BTreeMap<String, String> {
    let mut m = opts
        .replace
        .as_ref()
        .map(|r| r.metadata.clone())
        .unwrap_or_default();
    m.retain(|k, _| !reserved::is_reserved(k));
    m
}

/// A copy's keys and new headers, checked before any I/O.
fn check_copy(
    core: &Core,
    sb: &str,
    sk: &str,
    db: &str,
    dk: &str,
    opts: &CopyOptions,
) -> Result<()> {
    validate_key(sk)?;
    validate_key(dk)?;
    // The destination's name by the store's own rules (the source exists already).
    core.caps.names.key(dk)?;
    if let Some(r) = &opts.replace {
        check_upload(dk, &mut r.clone(), dk)?;
        if r.condition.is_some() {
            return Err(Error::invalid(
                "a copy's condition goes in CopyOptions::condition, not in its replacement \
                 headers",
            ));
        }
    }
    check_upload(
        dk,
        &mut UploadOptions {
            condition: opts.condition.clone(),
            content_type: Some(String::new()),
            ..UploadOptions::default()
        },
        dk,
    )?;
    if let Some(v) = &opts.version_id {
        crate::validate::validate_version_id(v)?;
    }
    if sb == db && sk == dk && opts.replace.is_none() && opts.version_id.is_none() {
        return Err(Error::invalid(format!(
            "cannot copy {}://{sb}/{sk} onto itself without replacing its metadata",
            core.scheme()
        )));
    }
    Ok(())
}

/// Guesses Content-Type from a file name or key; `application/octet-stream` when unknown.
pub fn guess_content_type(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_owned()
}
