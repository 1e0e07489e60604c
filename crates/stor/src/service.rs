//! [`Storage`], the cheap-to-clone handle every operation goes through, and
//! [`StorageService`], the process-wide instance like the original's static class.
//!
//! Every operation here: resolves the bucket (the default one when none is given),
//! validates names and options before any I/O, runs each request through the one
//! retry layer under the client-wide request budget, applies the configured timeout
//! to the whole operation, records metrics and tracing, and names the operation and
//! location in any error.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::backend::local::LocalBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::s3::S3Backend;
use crate::backend::{Backend, ByteStream, PendingUpload};
use crate::config::{StorageConfig, StorageType};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{Direction, HealthReport, Metrics, MetricsSnapshot};
use crate::retry::{endpoint_label, with_retry, EndpointGate, RetryBudget, RetryPolicy};
use crate::transfer::Source;
use crate::types::{
    CopyOptions, DeleteResult, DownloadOptions, ListOptions, ListPage, ObjectInfo, PresignOptions,
    SweepReport, TransferResult, UploadOptions,
};
use crate::validate::{
    validate_bucket, validate_expiry, validate_header_value, validate_key, validate_metadata,
};

/// Most keys S3 deletes in one request.
pub const DELETE_BATCH: usize = 1000;

/// The metadata key of the marker a move writes into a copy that lands on an
/// existing key, to prove the source is another object before deleting it (see
/// [`Storage::move_object`]). Never shown by [`Storage::info`] nor carried by copies.
pub const MOVE_MARKER: &str = "stor-move";

pub(crate) struct Inner {
    pub backend: Arc<dyn Backend>,
    pub config: StorageConfig,
    pub retry: RetryPolicy,
    pub budget: RetryBudget,
    /// Whether the endpoint answers: while it does not, one request probes it and
    /// the others wait (see `retry.rs`).
    pub gate: EndpointGate,
    /// One permit per request in flight, across every transfer: the connection pool bound.
    pub requests: Arc<Semaphore>,
    /// The byte budget: one permit per KiB of part buffers held by transfers, shared
    /// by all of them (`max_concurrency` × part size in total).
    pub buffers: Arc<Semaphore>,
    /// Permits `buffers` started with.
    pub buffer_permits: u32,
    pub metrics: Metrics,
    closed: AtomicBool,
    /// Buckets seen to exist; writes check their bucket once (see `ensure_bucket`).
    known_buckets: std::sync::Mutex<std::collections::HashSet<String>>,
}

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
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.inner.backend)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The bucket argument of operations: a name, or `None` for the configured default.
pub type BucketArg<'a> = Option<&'a str>;

impl Storage {
    /// Opens the store the config names: S3 (credentials and region from the config,
    /// else the AWS environment), the local store, or memory.
    pub async fn new(config: StorageConfig) -> Result<Storage> {
        config.validate()?;
        let mut region = None;
        let backend: Arc<dyn Backend> = match config.storage_type {
            StorageType::S3 => {
                let b = S3Backend::new(&config).await?;
                region = Some(b.region().to_owned());
                Arc::new(b)
            }
            StorageType::Local => {
                let root = config.resolved_local_root();
                let b = tokio::task::spawn_blocking(move || LocalBackend::open(root))
                    .await
                    .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))??;
                Arc::new(b)
            }
            StorageType::Memory => Arc::new(MemoryBackend::new()),
        };
        let storage = Storage::with_backend(backend, config);
        let about = storage.inner.config.describe(region.as_deref());
        tracing::info!("storage service initialized {about}");
        Ok(storage)
    }

    /// A handle over any [`Backend`] (for custom stores and wrappers).
    pub fn with_backend(backend: Arc<dyn Backend>, config: StorageConfig) -> Storage {
        let part = config.part_size.unwrap_or(crate::transfer::AUTO_PART_SIZE);
        let buffer_permits =
            crate::transfer::kib(part.saturating_mul(config.max_concurrency.max(1) as u64));
        let retry = RetryPolicy::new(config.max_retries);
        let endpoint = endpoint_label(config.endpoint_url.as_deref(), backend.scheme());
        Storage {
            inner: Arc::new(Inner {
                gate: EndpointGate::new(endpoint, &retry),
                backend,
                retry,
                budget: RetryBudget::new(500),
                requests: Arc::new(Semaphore::new(config.max_pool_connections)),
                buffers: Arc::new(Semaphore::new(buffer_permits as usize)),
                buffer_permits,
                metrics: Metrics::default(),
                closed: AtomicBool::new(false),
                known_buckets: Default::default(),
                config,
            }),
        }
    }

    /// The config in use.
    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    /// The backend's scheme: `s3`, `local` or `memory`.
    pub fn scheme(&self) -> &'static str {
        self.inner.backend.scheme()
    }

    /// The backend, for what the handle does not wrap.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Stops taking operations and waits (up to 30 s) for those in flight.
    pub async fn shutdown(&self) {
        if !self.inner.closed.swap(true, Ordering::SeqCst) {
            let about = self.inner.config.describe(None);
            tracing::info!("storage service shut down {about}");
        }
        let all = self.inner.config.max_pool_connections as u32;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            self.inner.requests.acquire_many(all),
        )
        .await;
    }

    /// Whether [`Storage::shutdown`] has been called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    // ---------------------------------------------------------------- plumbing

    pub(crate) fn bucket_or_default(&self, bucket: BucketArg<'_>) -> Result<String> {
        if self.is_shut_down() {
            return Err(Error::new(
                ErrorKind::NotInitialized,
                "the storage service was shut down; call init again",
            ));
        }
        let b = match bucket {
            Some(b) => b.to_owned(),
            None => self.inner.config.default_bucket.clone().ok_or_else(|| {
                Error::invalid("no bucket given and no default_bucket configured")
            })?,
        };
        validate_bucket(&b)?;
        Ok(b)
    }

    /// One request through the retry layer, holding a request permit per attempt
    /// (taken after the endpoint gate lets the attempt through: calls waiting for
    /// an endpoint that is down hold none).
    pub(crate) async fn request<T, F, Fut>(&self, mut f: F) -> Result<(T, u32)>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let inner = &self.inner;
        let backend = self.scheme();
        with_retry(&inner.retry, &inner.budget, &inner.gate, |n| {
            let fut = f(n);
            metrics::counter!("stor_request_attempts_total", "backend" => backend).increment(1);
            let span = tracing::debug_span!("attempt", attempt = n);
            let fut = fut.instrument(span);
            async move {
                let _permit = inner.requests.acquire().await.map_err(|_| {
                    Error::new(
                        ErrorKind::NotInitialized,
                        "the storage service was shut down",
                    )
                })?;
                let out = fut.await;
                // hyper hands a finished connection back to its pool from a task it
                // spawns; letting that run before the permit goes keeps the next
                // request from opening a new connection in the meantime.
                tokio::task::yield_now().await;
                out
            }
        })
        .await
    }

    /// Runs a whole operation: timeout, metrics, tracing, error context.
    #[allow(clippy::too_many_arguments)] // one call shape for every operation
    pub(crate) async fn operation<T, Fut>(
        &self,
        op: &'static str,
        bucket: &str,
        key: &str,
        dir: Direction,
        timeout: Duration,
        bytes_of: impl Fn(&T) -> u64,
        fut: Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let m = &self.inner.metrics;
        m.start();
        let start = Instant::now();
        let scheme = self.scheme();
        // One span per operation: what and where, never credentials or URLs.
        let span = tracing::info_span!("stor", op, backend = scheme, bucket, key);
        let res = match tokio::time::timeout(timeout, fut.instrument(span.clone())).await {
            Ok(r) => r,
            Err(_) => {
                let mut msg = format!(
                    "did not finish within {} s (raise {} in the config)",
                    timeout.as_secs(),
                    match dir {
                        Direction::Up => "upload_timeout",
                        Direction::Down => "download_timeout",
                        Direction::None => "operation_timeout",
                    }
                );
                // Say why, when it is the endpoint that is gone.
                if let Some((reason, since)) = self.inner.gate.outage() {
                    msg.push_str(&format!(
                        "; {} has been unavailable for {:.1} s ({reason})",
                        self.inner.gate.endpoint(),
                        since.as_secs_f64()
                    ));
                }
                Err(Error::new(ErrorKind::Timeout, msg))
            }
        };
        let took = start.elapsed();
        let res = res.map_err(|e| e.with_op(op).with_location(bucket, key).with_scheme(scheme));
        let bytes = res.as_ref().map(&bytes_of).unwrap_or(0);
        let fault = matches!(&res, Err(e) if matches!(e.kind(),
            ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::Throttled));
        let err_kind = res.as_ref().err().map(|e| e.kind());
        m.record(op, scheme, err_kind, fault, dir, bytes, took);
        let _in = span.enter();
        match &res {
            Ok(_) => tracing::debug!(bytes, elapsed_ms = took.as_millis() as u64, "ok"),
            Err(e) => tracing::debug!(attempts = e.attempts(),
                elapsed_ms = took.as_millis() as u64, kind = %e.kind(), "failed: {e}"),
        }
        drop(_in);
        res
    }

    /// Fails with `BucketNotFound` when the bucket certainly does not exist. Some
    /// engines answer a write to a missing bucket with AccessDenied or 500, and
    /// SeaweedFS even creates it; one HEAD per bucket per client (cached) gives every
    /// engine S3's answer. A HEAD that is itself refused (credentials that may write
    /// but not list) lets the write go ahead.
    pub(crate) async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        let known = |inner: &Inner| {
            inner
                .known_buckets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(bucket)
        };
        if known(&self.inner) {
            return Ok(());
        }
        let be = &self.inner.backend;
        let start = Instant::now();
        match self.request(|_| be.bucket_exists(bucket)).await {
            Ok((true, _)) => {
                self.remember_bucket(bucket, true);
                Ok(())
            }
            Ok((false, attempts)) => Err(Error::new(
                ErrorKind::BucketNotFound,
                format!("the bucket {bucket:?} does not exist (create it first, e.g. `stor mb`)"),
            )
            .with_attempts(attempts, start.elapsed())),
            Err(e) => {
                tracing::debug!(bucket, "could not check the bucket, writing anyway: {e}");
                Ok(())
            }
        }
    }

    fn remember_bucket(&self, bucket: &str, exists: bool) {
        let mut k = self
            .inner
            .known_buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if exists {
            k.insert(bucket.to_owned());
        } else {
            k.remove(bucket);
        }
    }

    fn op_timeout(&self) -> Duration {
        self.inner.config.operation_timeout()
    }

    // ---------------------------------------------------------------- buckets

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let b = self.bucket_or_default(Some(bucket))?;
        let be = &self.inner.backend;
        self.operation(
            "create bucket",
            &b,
            "",
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async { self.request(|_| be.create_bucket(&b)).await.map(|_| ()) },
        )
        .await
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let b = self.bucket_or_default(Some(bucket))?;
        let be = &self.inner.backend;
        self.operation(
            "delete bucket",
            &b,
            "",
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async { self.request(|_| be.delete_bucket(&b)).await.map(|_| ()) },
        )
        .await
    }

    /// Whether a bucket exists and is reachable with these credentials.
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let b = self.bucket_or_default(Some(bucket))?;
        let be = &self.inner.backend;
        self.operation(
            "bucket exists",
            &b,
            "",
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async { self.request(|_| be.bucket_exists(&b)).await.map(|(v, _)| v) },
        )
        .await
    }

    /// Names of all buckets.
    pub async fn list_buckets(&self) -> Result<Vec<String>> {
        let be = &self.inner.backend;
        self.operation(
            "list buckets",
            "",
            "",
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async { self.request(|_| be.list_buckets()).await.map(|(v, _)| v) },
        )
        .await
    }

    // ---------------------------------------------------------------- uploads

    fn check_upload(&self, key: &str, opts: &mut UploadOptions, name_hint: &str) -> Result<()> {
        validate_key(key)?;
        validate_metadata(&opts.metadata)?;
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

    /// Every upload: validate before any I/O (Content-Type guessed from `name_hint`),
    /// then the transfer engine under the upload timeout.
    async fn upload(
        &self,
        bucket: BucketArg<'_>,
        key: &str,
        source: Source,
        mut opts: UploadOptions,
        name_hint: &str,
    ) -> Result<TransferResult> {
        let b = self.bucket_or_default(bucket)?;
        self.check_upload(key, &mut opts, name_hint).map_err(|e| {
            e.with_op("upload")
                .with_location(&b, key)
                .with_scheme(self.scheme())
        })?;
        let fut = crate::transfer::upload(self, &b, key, source, &opts);
        self.operation(
            "upload",
            &b,
            key,
            Direction::Up,
            self.inner.config.upload_timeout(),
            |r: &TransferResult| r.bytes,
            fut,
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
        let target = crate::transfer::FileTarget {
            path: path.as_ref(),
            root: None,
            sweeps: &Default::default(),
        };
        self.download_file_sized(bucket, key, target, opts, None)
            .await
    }

    /// [`Storage::download_file_with`] for an object whose size a listing told
    /// (`size`): one that fits in a part is fetched with a plain GET.
    pub(crate) async fn download_file_sized<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        target: crate::transfer::FileTarget<'_>,
        opts: DownloadOptions,
        size: Option<u64>,
    ) -> Result<TransferResult> {
        let b = self.bucket_or_default(bucket.into())?;
        validate_key(key)?;
        if opts.range.is_some() || opts.if_match.is_some() {
            return Err(Error::invalid(
                "download_file_with takes no range or if_match (use download_stream)",
            )
            .with_op("download")
            .with_location(&b, key));
        }
        let progress = opts.progress;
        let fut = crate::transfer::download_to_file(self, &b, key, target, progress.as_ref(), size);
        self.operation(
            "download",
            &b,
            key,
            Direction::Down,
            self.inner.config.download_timeout(),
            |r: &TransferResult| r.bytes,
            fut,
        )
        .await
    }

    /// Downloads an object into memory.
    pub async fn download_bytes<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
    ) -> Result<Downloaded> {
        let b = self.bucket_or_default(bucket.into())?;
        validate_key(key)?;
        let fut = crate::transfer::download_to_memory(self, &b, key, None);
        self.operation(
            "download",
            &b,
            key,
            Direction::Down,
            self.inner.config.download_timeout(),
            |r: &Downloaded| r.result.bytes,
            fut,
        )
        .await
    }

    /// Opens an object as a stream of chunks (a range of it with `opts.range`).
    /// Holds one request permit until the stream is dropped. Use
    /// [`ObjectStream::into_async_read`] for an `AsyncRead`.
    pub async fn download_stream<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        opts: DownloadOptions,
    ) -> Result<ObjectStream> {
        let b = self.bucket_or_default(bucket.into())?;
        validate_key(key)?;
        let be = self.inner.backend.clone();
        let fut = async {
            // The permit is taken per attempt, after the endpoint gate (as in
            // `request`), and kept by the body.
            let requests = &self.inner.requests;
            let ((resp, permit), _) = with_retry(
                &self.inner.retry,
                &self.inner.budget,
                &self.inner.gate,
                |_| {
                    let get = be.get_object(&b, key, opts.range, opts.if_match.as_deref());
                    async move {
                        let permit = requests.clone().acquire_owned().await.map_err(|_| {
                            Error::new(
                                ErrorKind::NotInitialized,
                                "the storage service was shut down",
                            )
                        })?;
                        Ok((get.await?, permit))
                    }
                },
            )
            .await?;
            let mut body: ByteStream = Box::pin(resp.body.map(move |c| {
                let _hold = &permit;
                c
            }));
            // A whole object is verified against its stored checksum as it streams.
            if opts.range.is_none() {
                let stored = crate::checksum::stored_in(&resp.info.metadata);
                if let Some(expected) = stored.or(resp.checksum.clone()) {
                    body = crate::transfer::verified_stream(body, expected);
                }
            }
            if let Some(p) = opts.progress.clone() {
                let total = resp.content_length;
                let mut done = 0u64;
                body = Box::pin(body.inspect(move |c| {
                    if let Ok(c) = c {
                        done += c.len() as u64;
                        p.report(done, Some(total));
                    }
                }));
            }
            Ok(ObjectStream {
                info: resp.info,
                content_length: resp.content_length,
                body,
            })
        };
        self.operation(
            "download",
            &b,
            key,
            Direction::None,
            self.op_timeout(),
            |_| 0,
            fut,
        )
        .await
    }

    // ---------------------------------------------------------------- objects

    /// An object's size, modified time, ETag, Content-Type, metadata and storage class.
    pub async fn info<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
    ) -> Result<ObjectInfo> {
        let b = self.bucket_or_default(bucket.into())?;
        validate_key(key)?;
        let be = &self.inner.backend;
        self.operation(
            "info",
            &b,
            key,
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async {
                let (mut info, _) = self.request(|_| be.head_object(&b, key)).await?;
                info.metadata.remove(MOVE_MARKER);
                Ok(info)
            },
        )
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
        let b = self.bucket_or_default(bucket.into())?;
        validate_key(key)?;
        let be = &self.inner.backend;
        self.operation(
            "delete",
            &b,
            key,
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async {
                self.request(|_| be.delete_object(&b, key))
                    .await
                    .map(|_| ())
            },
        )
        .await
    }

    /// Deletes many objects, batched up to 1000 keys per request; one result per key.
    /// A batch that fails as a whole marks each of its keys with the error.
    pub async fn delete_many<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        keys: &[String],
    ) -> Result<Vec<DeleteResult>> {
        let b = self.bucket_or_default(bucket.into())?;
        for k in keys {
            validate_key(k).map_err(|e| e.with_op("delete").with_location(&b, k))?;
        }
        let be = &self.inner.backend;
        let b = &b;
        let fut = async {
            let batches = futures::stream::iter(keys.chunks(DELETE_BATCH))
                .map(|chunk| async {
                    match self.request(|_| be.delete_objects(b, chunk)).await {
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
                .buffered(self.inner.config.max_concurrency.min(4))
                .try_collect::<Vec<_>>()
                .await?;
            Ok(batches.into_iter().flatten().collect::<Vec<_>>())
        };
        self.operation(
            "delete",
            b,
            "",
            Direction::None,
            self.op_timeout(),
            |_| 0,
            fut,
        )
        .await
    }

    /// One page of keys (at most `max_keys`, 1000 when unset).
    pub async fn list<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        opts: ListOptions,
    ) -> Result<ListPage> {
        let b = self.bucket_or_default(bucket.into())?;
        self.list_page(&b, &opts).await
    }

    async fn list_page(&self, b: &str, opts: &ListOptions) -> Result<ListPage> {
        let max = opts.max_keys.unwrap_or(1000);
        if max > 1000 {
            return Err(Error::invalid(format!(
                "max_keys {max} is above S3's 1000 per page; use list_stream for more"
            ))
            .with_op("list")
            .with_location(b, ""));
        }
        let be = &self.inner.backend;
        self.operation(
            "list",
            b,
            &opts.prefix,
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async {
                self.request(|_| {
                    be.list_objects(
                        b,
                        &opts.prefix,
                        opts.delimiter.as_deref(),
                        max,
                        opts.continuation_token.as_deref(),
                        opts.start_after.as_deref(),
                    )
                })
                .await
                .map(|(v, _)| v)
            },
        )
        .await
    }

    /// Every object under the options' prefix, page after page (common prefixes are
    /// skipped; use [`Storage::list`] with a delimiter for those).
    pub fn list_stream<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        opts: ListOptions,
    ) -> futures::stream::BoxStream<'static, Result<ObjectInfo>> {
        let this = self.clone();
        let b = self.bucket_or_default(bucket.into());
        futures::stream::try_unfold((Some(opts), b, this), |(opts, b, this)| async move {
            let Some(opts) = opts else { return Ok(None) };
            let b = b?;
            let page = this.list_page(&b, &opts).await?;
            let next = page.next_continuation_token.clone().map(|t| ListOptions {
                continuation_token: Some(t),
                ..opts.clone()
            });
            Ok(Some((page.objects, (next, Ok(b), this))))
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
        let sb = self.bucket_or_default(src_bucket.into())?;
        let db = self.bucket_or_default(dst_bucket.into())?;
        self.check_copy(&sb, src_key, &db, dst_key, &opts)?;
        let fut = crate::transfer::copy(self, &sb, src_key, &db, dst_key, &opts);
        self.operation(
            "copy",
            &sb,
            src_key,
            Direction::None,
            self.inner.config.upload_timeout(),
            |_| 0,
            fut,
        )
        .await
    }

    fn check_copy(&self, sb: &str, sk: &str, db: &str, dk: &str, opts: &CopyOptions) -> Result<()> {
        validate_key(sk)?;
        validate_key(dk)?;
        if let Some(r) = &opts.replace {
            let mut r = r.clone();
            self.check_upload(dk, &mut r, dk)?;
        }
        if sb == db && sk == dk && opts.replace.is_none() {
            return Err(Error::invalid(format!(
                "cannot copy {}://{sb}/{sk} onto itself without replacing its metadata",
                self.scheme()
            )));
        }
        Ok(())
    }

    /// Moves an object: a server-side copy (with `opts.replace`, new headers and
    /// metadata), confirmed by reading the destination back, and only then the
    /// source deleted — and only with proof that source and destination are two
    /// stored objects, whatever the engine does to keys (SeaweedFS stores `a//b` as
    /// `a/b`, some gateways fold case). The proof: a destination that did not exist
    /// before the copy cannot be the source; one that did gets a unique marker in
    /// the copy's metadata (`stor-move`), and the source is deleted only if it does
    /// not carry it. Moving an object onto its own key with `opts.replace` is a
    /// metadata replacement; nothing is deleted.
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
    /// let retag = CopyOptions { replace: Some(UploadOptions::default().content_type("text/plain")) };
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
        let sb = self.bucket_or_default(src_bucket.into())?;
        let db = self.bucket_or_default(dst_bucket.into())?;
        let same_key = sb == db && src_key == dst_key;
        if same_key && opts.replace.is_none() {
            return Err(Error::invalid(format!(
                "cannot move {}://{sb}/{src_key} onto itself (give new headers or metadata to \
                 replace them in place)",
                self.scheme()
            ))
            .with_op("move")
            .with_location(&sb, src_key)
            .with_scheme(self.scheme()));
        }
        self.check_copy(&sb, src_key, &db, dst_key, &opts)
            .map_err(|e| {
                e.with_op("move")
                    .with_location(&sb, src_key)
                    .with_scheme(self.scheme())
            })?;
        let fut = async {
            let be = &self.inner.backend;
            if same_key {
                // One key, new headers: replace them in place; nothing to delete.
                return crate::transfer::copy(self, &sb, src_key, &db, dst_key, &opts).await;
            }
            let (src, _) = self.request(|_| be.head_object(&sb, src_key)).await?;
            let existed = match self.request(|_| be.head_object(&db, dst_key)).await {
                Ok(_) => true,
                Err(e) if e.kind() == ErrorKind::KeyNotFound => false,
                Err(e) => return Err(e),
            };
            let marker = existed.then(|| hex::encode(rand::random::<[u8; 12]>()));
            let mut copy_opts = opts.clone();
            if let Some(m) = &marker {
                let mut r = copy_opts
                    .replace
                    .take()
                    .unwrap_or_else(|| crate::transfer::options_of(&src));
                r.metadata.insert(MOVE_MARKER.to_owned(), m.clone());
                copy_opts.replace = Some(r);
            }
            let res = crate::transfer::copy(self, &sb, src_key, &db, dst_key, &copy_opts).await?;
            let (dst, _) = self.request(|_| be.head_object(&db, dst_key)).await?;
            let kept = |why: String| {
                Error::new(ErrorKind::Integrity, format!("{why}; the source was kept"))
            };
            if dst.size != res.bytes {
                return Err(kept(format!(
                    "the copy has {} bytes, the source {}",
                    dst.size, res.bytes
                )));
            }
            if let Some(m) = &marker {
                if dst.metadata.get(MOVE_MARKER) != Some(m) {
                    return Err(kept(
                        "the destination does not show the copy just made (another writer?)".into(),
                    ));
                }
                match self.request(|_| be.head_object(&sb, src_key)).await {
                    Ok((now, _)) if now.metadata.get(MOVE_MARKER) == Some(m) => {
                        return Err(Error::invalid(format!(
                            "{}://{db}/{dst_key} is the same stored object as \
                             {}://{sb}/{src_key} on this store (it normalises keys); \
                             nothing was moved or deleted",
                            self.scheme(),
                            self.scheme()
                        )));
                    }
                    Ok(_) => {}
                    // Gone meanwhile (another client): nothing left to delete.
                    Err(e) if e.kind() == ErrorKind::KeyNotFound => return Ok(res),
                    Err(e) => return Err(e),
                }
            }
            self.request(|_| be.delete_object(&sb, src_key)).await?;
            Ok(res)
        };
        self.operation(
            "move",
            &sb,
            src_key,
            Direction::None,
            self.inner.config.upload_timeout(),
            |_| 0,
            fut,
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
        let b = self.bucket_or_default(bucket.into())?;
        let check = || -> Result<()> {
            validate_key(key)?;
            validate_expiry(opts.expires_in)?;
            if let Some(ct) = &opts.content_type {
                validate_header_value("Content-Type", ct)?;
            }
            Ok(())
        };
        check().map_err(|e| {
            e.with_op("presign")
                .with_location(&b, key)
                .with_scheme(self.scheme())
        })?;
        self.inner
            .backend
            .presign(&b, key, &opts)
            .await
            .map_err(|e| {
                e.with_op("presign")
                    .with_location(&b, key)
                    .with_scheme(self.scheme())
            })
    }

    /// Aborts multipart uploads under `prefix` started more than `older_than` ago;
    /// returns those aborted.
    pub async fn abort_stale_uploads<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<PendingUpload>> {
        let b = self.bucket_or_default(bucket.into())?;
        let be = &self.inner.backend;
        let fut = async {
            let (pending, _) = self
                .request(|_| be.list_multipart_uploads(&b, prefix))
                .await?;
            let cutoff = SystemTime::now().checked_sub(older_than);
            let mut aborted = Vec::new();
            for u in pending {
                let stale = match (u.initiated, cutoff) {
                    (Some(t), Some(c)) => t <= c,
                    _ => true,
                };
                if stale {
                    self.request(|_| be.abort_multipart(&b, &u.key, &u.upload_id))
                        .await?;
                    aborted.push(u);
                }
            }
            Ok(aborted)
        };
        self.operation(
            "cleanup",
            &b,
            prefix,
            Direction::None,
            self.op_timeout(),
            |_| 0,
            fut,
        )
        .await
    }

    /// Removes what writes that died (a crash, `kill -9`) left in the store: the local
    /// store's temp files and blobs no object points at, including the temp files its
    /// open already removed. Never touches a write in flight, in this process or
    /// another. Other stores have nothing to sweep; S3's leftovers are multipart
    /// uploads ([`Storage::abort_stale_uploads`]).
    pub async fn sweep(&self) -> Result<SweepReport> {
        let be = &self.inner.backend;
        self.operation(
            "sweep",
            "",
            "",
            Direction::None,
            self.op_timeout(),
            |_| 0,
            async { self.request(|_| be.sweep()).await.map(|(r, _)| r) },
        )
        .await
    }

    // ---------------------------------------------------------------- health, metrics

    /// Probes the backend (the default bucket when configured, else the bucket list)
    /// and reports connection health.
    pub async fn health(&self) -> HealthReport {
        let start = Instant::now();
        let be = &self.inner.backend;
        let probe = async {
            match &self.inner.config.default_bucket {
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
            Duration::from_secs(self.inner.config.connect_timeout.max(1) * 2),
            probe,
        )
        .await
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::Timeout, "the health probe timed out")));
        let m = &self.inner.metrics;
        let endpoint = match self.scheme() {
            "s3" => self
                .inner
                .config
                .endpoint_url
                .as_deref()
                .map(crate::config::redact_url),
            "local" => Some(
                self.inner
                    .config
                    .resolved_local_root()
                    .display()
                    .to_string(),
            ),
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
        let b = &self.inner.budget;
        self.inner.metrics.snapshot(
            b.retries.load(Ordering::Relaxed),
            b.throttled.load(Ordering::Relaxed),
        )
    }
}

/// Guesses Content-Type from a file name or key; `application/octet-stream` when unknown.
pub fn guess_content_type(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_owned()
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

/// Makes the body of [`Body::Stream`] from an `AsyncRead`.
pub(crate) fn reader_stream(r: Box<dyn AsyncRead + Send + Unpin>) -> ByteStream {
    Box::pin(
        tokio_util::io::ReaderStream::with_capacity(r, 256 * 1024)
            .map_err(|e| Error::io("reading the upload source", e)),
    )
}

static GLOBAL: RwLock<Option<Storage>> = RwLock::new(None);

/// The process-wide storage service, like the original's static class.
///
/// ```
/// # tokio_test::block_on(async {
/// use stor::{StorageConfig, StorageService};
/// StorageService::init(StorageConfig::memory()).await?;
/// assert!(StorageService::is_initialized());
/// let storage = StorageService::get()?;
/// storage.create_bucket("reports").await?;
/// StorageService::shutdown().await;
/// assert!(!StorageService::is_initialized());
/// assert!(StorageService::get().is_err());
/// # Ok::<(), stor::Error>(()) }).unwrap();
/// ```
pub struct StorageService;

impl StorageService {
    /// Opens the store and makes it the process-wide instance (replacing any before).
    pub async fn init(config: StorageConfig) -> Result<Storage> {
        let storage = Storage::new(config).await?;
        let old = GLOBAL
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(storage.clone());
        if let Some(old) = old {
            old.shutdown().await;
        }
        Ok(storage)
    }

    /// The process-wide instance.
    pub fn get() -> Result<Storage> {
        GLOBAL
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotInitialized,
                    "call StorageService::init(config) first",
                )
            })
    }

    /// Whether [`StorageService::init`] has been called (and not shut down).
    pub fn is_initialized() -> bool {
        GLOBAL.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Shuts the instance down: waits for operations in flight, then forgets it.
    pub async fn shutdown() {
        let s = GLOBAL.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = s {
            s.shutdown().await;
        }
    }
}
