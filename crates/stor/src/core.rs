//! The core under the [`Storage`](crate::Storage) façade: the backend and the
//! client-wide machinery every operation shares — the one retry layer (policy,
//! budget, endpoint gate), the request and byte budgets, the bucket cache,
//! metrics — and [`Op`], the one wrapper every operation runs in.
//!
//! The transfer engines (`transfer/`) take a `&Core`; nothing below the façade
//! imports it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::backend::{Backend, Body, ByteStream, Capabilities};
use crate::bandwidth::{paced, paced_bytes, Pacing};
use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Events, WriteEvent, WriteKind};
use crate::journal::Journal;
use crate::metrics::{Direction, Metrics};
use crate::retry::{endpoint_label, with_retry, EndpointGate, RetryBudget, RetryPolicy};
use crate::types::TransferResult;

/// The bucket argument of operations: a name, or `None` for the configured default.
pub type BucketArg<'a> = Option<&'a str>;

pub(crate) struct Core {
    pub backend: Arc<dyn Backend>,
    /// What the backend can do, asked once.
    pub caps: Capabilities,
    pub config: StorageConfig,
    retry: RetryPolicy,
    pub budget: RetryBudget,
    /// Whether the endpoint answers: while it does not, one request probes it and
    /// the others wait (see `retry.rs`).
    pub gate: EndpointGate,
    /// One permit per request in flight, across every transfer: the connection pool bound.
    pub requests: Arc<Semaphore>,
    /// The byte budget: one permit per KiB of part buffers held by transfers, shared
    /// by all of them (`max_concurrency` × part size in total).
    buffers: Arc<Semaphore>,
    /// Permits `buffers` started with.
    pub buffer_permits: u32,
    pub metrics: Metrics,
    /// Completed writes, for subscribers (`events.rs`).
    pub events: Events,
    closed: AtomicBool,
    /// Buckets seen to exist; writes check their bucket once (see `ensure_bucket`).
    known_buckets: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The bandwidth limits every transfer shares (`max_bandwidth`).
    pacing: Pacing,
    /// The transfer journal, opened on first use: `None` until tried, then what the
    /// try gave (`Some(None)`: it could not be used, transfers run without it).
    journal: std::sync::Mutex<Option<Option<Arc<Journal>>>>,
}

/// Byte-budget permits count KiB, so a `u32` covers any budget.
pub(crate) fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as u64) as u32
}

fn shut_down() -> Error {
    Error::new(
        ErrorKind::NotInitialized,
        "the storage service was shut down; call init again",
    )
}

impl Core {
    pub fn new(backend: Arc<dyn Backend>, config: StorageConfig) -> Core {
        let part = config.part_size.unwrap_or(crate::transfer::AUTO_PART_SIZE);
        let buffer_permits = kib(part.saturating_mul(config.max_concurrency.max(1) as u64));
        let retry = RetryPolicy::new(config.max_retries);
        let endpoint = endpoint_label(config.endpoint_url.as_deref(), backend.scheme());
        Core {
            gate: EndpointGate::new(endpoint, &retry),
            caps: backend.capabilities(),
            backend,
            retry,
            budget: RetryBudget::new(500),
            requests: Arc::new(Semaphore::new(config.max_pool_connections)),
            buffers: Arc::new(Semaphore::new(buffer_permits as usize)),
            buffer_permits,
            metrics: Metrics::default(),
            events: Events::default(),
            closed: AtomicBool::new(false),
            known_buckets: Default::default(),
            pacing: Pacing::new(config.max_bandwidth),
            journal: Default::default(),
            config,
        }
    }

    /// A body to upload, paced by the upload limit when there is one: files as
    /// they are read, bytes and streams as they are handed on.
    pub fn pace_up(&self, body: Body) -> Body {
        let Some(l) = &self.pacing.up else {
            return body;
        };
        match body {
            Body::File(r) => Body::File(r.paced(l.clone())),
            Body::Bytes(b) => {
                let n = b.len() as u64;
                Body::Sized(paced_bytes(b, l.clone()), n)
            }
            Body::Stream(s) => Body::Stream(paced(s, l.clone())),
            Body::Sized(s, n) => Body::Sized(paced(s, l.clone()), n),
        }
    }

    /// A downloaded body, read no faster than the download limit allows.
    pub fn pace_down(&self, body: ByteStream) -> ByteStream {
        match &self.pacing.down {
            Some(l) => paced(body, l.clone()),
            None => body,
        }
    }

    pub fn scheme(&self) -> &'static str {
        self.backend.scheme()
    }

    /// Stops taking operations and waits (up to 30 s) for those in flight.
    pub async fn shutdown(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            tracing::info!("storage service shut down {}", self.config.describe(None));
        }
        let all = self.config.max_pool_connections as u32;
        let _ =
            tokio::time::timeout(Duration::from_secs(30), self.requests.acquire_many(all)).await;
    }

    pub fn is_shut_down(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The bucket an operation names, or the configured default; checked by S3's rules.
    pub fn bucket(&self, bucket: BucketArg<'_>) -> Result<String> {
        if self.is_shut_down() {
            return Err(shut_down());
        }
        let b = match bucket {
            Some(b) => b.to_owned(),
            None => self.config.default_bucket.clone().ok_or_else(|| {
                Error::invalid("no bucket given and no default_bucket configured")
            })?,
        };
        self.caps.names.bucket(&b)?;
        Ok(b)
    }

    /// One request through the retry layer, holding a request permit per attempt
    /// (taken after the endpoint gate lets the attempt through: calls waiting for
    /// an endpoint that is down hold none).
    pub async fn request<T, F, Fut>(&self, mut f: F) -> Result<(T, u32)>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let backend = self.scheme();
        with_retry(&self.retry, &self.budget, &self.gate, |n| {
            let fut = f(n);
            metrics::counter!("stor_request_attempts_total", "backend" => backend).increment(1);
            let span = tracing::debug_span!("attempt", attempt = n);
            let fut = fut.instrument(span);
            async move {
                let _permit = self.requests.acquire().await.map_err(|_| shut_down())?;
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

    /// [`Core::request`] whose successful attempt hands its request permit back
    /// with the value: a streamed body keeps it until it is dropped.
    pub async fn request_holding_permit<T, F, Fut>(
        &self,
        mut f: F,
    ) -> Result<((T, OwnedSemaphorePermit), u32)>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        with_retry(&self.retry, &self.budget, &self.gate, |n| {
            let fut = f(n);
            async move {
                let permit = self
                    .requests
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| shut_down())?;
                Ok((fut.await?, permit))
            }
        })
        .await
    }

    /// Takes `bytes` from the client-wide byte budget (all at once, so a transfer
    /// never holds part of what it needs while waiting for the rest).
    pub async fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit> {
        let n = kib(bytes).min(self.buffer_permits);
        self.buffers
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| shut_down())
    }

    /// Fails with `BucketNotFound` when the bucket certainly does not exist. Some
    /// engines answer a write to a missing bucket with AccessDenied or 500, and
    /// SeaweedFS even creates it; one HEAD per bucket per client (cached) gives every
    /// engine S3's answer. A HEAD that is itself refused (credentials that may write
    /// but not list) lets the write go ahead.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<()> {
        let known = self
            .known_buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(bucket);
        if known {
            return Ok(());
        }
        let start = Instant::now();
        match self.request(|_| self.backend.bucket_exists(bucket)).await {
            Ok((true, _)) => {
                self.known_buckets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(bucket.to_owned());
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

    /// The transfer journal (see `journal.rs`). With `create`, it is opened — and
    /// created — on first use; without, only when its file exists already (looking
    /// for an interrupted transfer needs no new file). `None` when it cannot be used:
    /// transfers then run without it (said once, at warn level).
    pub fn journal(&self, create: bool) -> Option<Arc<Journal>> {
        // A memory store does not outlive its process: nothing of it to resume in
        // another one (tests name a state_dir to journal it anyway).
        if self.scheme() == "memory" && self.config.state_dir.is_none() {
            return None;
        }
        let mut slot = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = slot.as_ref() {
            return j.clone();
        }
        let dir = self.config.resolved_state_dir();
        if !create && !dir.join(crate::journal::JOURNAL_FILE).exists() {
            return None;
        }
        let opened = match Journal::open(&dir) {
            Ok(j) => j.map(Arc::new),
            Err(e) => {
                tracing::warn!(
                    "the transfer journal in {} cannot be used ({e}); interrupted transfers \
                     will start over (set state_dir or STOR_STATE_DIR to a writable directory)",
                    dir.display()
                );
                None
            }
        };
        *slot = Some(opened.clone());
        opened
    }

    /// Which store this is, as the journal names it: the scheme and the endpoint (a
    /// memory store: this process's instance).
    pub fn store_id(&self) -> String {
        match self.scheme() {
            "memory" => format!(
                "memory {} {:p}",
                std::process::id(),
                Arc::as_ptr(&self.backend) as *const ()
            ),
            "local" => format!("local {}", self.config.resolved_local_root().display()),
            scheme => {
                let endpoint = self
                    .config
                    .endpoint_url
                    .clone()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                    .filter(|e| !e.trim().is_empty());
                match endpoint {
                    Some(e) => {
                        let (bare, _) = crate::config::strip_url_userinfo(&e);
                        format!("{scheme} {}", bare.trim_end_matches('/'))
                    }
                    None => format!("{scheme} default"),
                }
            }
        }
    }

    /// Tells subscribers a write completed (built only when someone listens).
    pub fn announce(
        &self,
        kind: WriteKind,
        bucket: &str,
        key: &str,
        done: Option<&TransferResult>,
        metadata: BTreeMap<String, String>,
        source: Option<(&str, &str)>,
    ) {
        if !self.events.wanted() {
            return;
        }
        self.events.send(WriteEvent {
            kind,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: done.map(|r| r.bytes),
            etag: done.and_then(|r| r.etag.clone()),
            metadata,
            source: source.map(|(b, k)| (b.to_owned(), k.to_owned())),
        });
    }

    /// Forgets that a bucket exists (it was deleted).
    pub fn forget_bucket(&self, bucket: &str) {
        self.known_buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(bucket);
    }

    /// An operation named `name` on `bucket` (the default when `None`) and `key`:
    /// see [`Op::run`].
    pub fn op<'a>(&'a self, name: &'static str, bucket: BucketArg<'a>, key: &'a str) -> Op<'a> {
        Op {
            core: self,
            name,
            bucket,
            key,
            dir: Direction::None,
            timeout: self.config.operation_timeout(),
            any_bucket: false,
            quiet: false,
            key_is_prefix: false,
        }
    }
}

/// One operation: what it is, where, which way its bytes go and how long it may
/// take. [`Op::run`] is the one place that applies the timeout, records metrics
/// and tracing, and adds the operation, bucket, key and scheme to every error —
/// exactly once, also to errors of its own checks.
pub(crate) struct Op<'a> {
    core: &'a Core,
    name: &'static str,
    bucket: BucketArg<'a>,
    key: &'a str,
    dir: Direction,
    timeout: Duration,
    /// The operation concerns no bucket in particular (list buckets, sweep).
    any_bucket: bool,
    /// No timeout, metrics or span: for operations that do no I/O and run at
    /// hundreds of thousands per second (presign).
    quiet: bool,
    /// `key` is a prefix (list, cleanup), not an object's name to check.
    key_is_prefix: bool,
}

impl Op<'_> {
    /// The operation names no bucket (its bucket is not resolved or checked).
    pub fn unchecked_bucket(mut self) -> Self {
        self.any_bucket = true;
        self
    }

    /// `key` is a prefix, not a name: the store's key rules do not apply to it.
    pub fn prefix(mut self) -> Self {
        self.key_is_prefix = true;
        self
    }

    /// Only the checks and the error context: no timeout, metrics or span.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Bytes go up, under `upload_timeout`.
    pub fn up(mut self) -> Self {
        self.dir = Direction::Up;
        self.timeout = self.core.config.upload_timeout();
        self
    }

    /// Bytes come down, under `download_timeout`.
    pub fn down(mut self) -> Self {
        self.dir = Direction::Down;
        self.timeout = self.core.config.download_timeout();
        self
    }

    /// Under `upload_timeout` (a copy moves bytes on the server).
    pub fn long(mut self) -> Self {
        self.timeout = self.core.config.upload_timeout();
        self
    }

    /// Resolves the bucket (the default one when none was named) and checks it,
    /// then runs `f` with its name under the timeout; `bytes_of` tells the metrics
    /// how many bytes a success moved.
    pub async fn run<T, F, Fut>(self, bytes_of: impl Fn(&T) -> u64, f: F) -> Result<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let core = self.core;
        let scheme = core.scheme();
        let (op, key) = (self.name, self.key);
        let resolved = match self.any_bucket {
            true if core.is_shut_down() => Err(shut_down()),
            true => Ok(String::new()),
            false => core.bucket(self.bucket).and_then(|b| {
                // The store's own key rules (GCS, Azure), before any I/O; the
                // rules every store shares are checked by the operation itself.
                let own_rules = core.caps.names != crate::validate::NameRules::S3;
                if own_rules && !key.is_empty() && !self.key_is_prefix {
                    core.caps.names.key(key)?;
                }
                Ok(b)
            }),
        };
        let bucket = match resolved {
            Ok(b) => b,
            Err(e) => {
                let e = e.with_op(op).with_scheme(scheme);
                return Err(match self.bucket {
                    Some(b) if !b.is_empty() => e.with_location(b, key),
                    _ => e,
                });
            }
        };
        let context = |e: Error| {
            let e = e.with_op(op).with_scheme(scheme);
            match bucket.is_empty() {
                true => e,
                false => e.with_location(&bucket, key),
            }
        };
        if self.quiet {
            return f(bucket.clone()).await.map_err(context);
        }
        let m = &core.metrics;
        m.start();
        let start = Instant::now();
        // One span per operation: what and where, never credentials or URLs.
        let span = tracing::info_span!("stor", op, backend = scheme, bucket = %bucket, key);
        let res =
            match tokio::time::timeout(self.timeout, f(bucket.clone()).instrument(span.clone()))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(self.timed_out()),
            };
        let took = start.elapsed();
        let res = res.map_err(context);
        let bytes = res.as_ref().map(&bytes_of).unwrap_or(0);
        let fault = matches!(&res, Err(e) if matches!(e.kind(),
            ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::Throttled));
        let err_kind = res.as_ref().err().map(|e| e.kind());
        m.record(op, scheme, err_kind, fault, self.dir, bytes, took);
        let _in = span.enter();
        match &res {
            Ok(_) => tracing::debug!(bytes, elapsed_ms = took.as_millis() as u64, "ok"),
            Err(e) => tracing::debug!(attempts = e.attempts(),
                elapsed_ms = took.as_millis() as u64, kind = %e.kind(), "failed: {e}"),
        }
        drop(_in);
        res
    }

    fn timed_out(&self) -> Error {
        let mut msg = format!(
            "did not finish within {} s (raise {} in the config)",
            self.timeout.as_secs(),
            match self.dir {
                Direction::Up => "upload_timeout",
                Direction::Down => "download_timeout",
                Direction::None => "operation_timeout",
            }
        );
        // Say why, when it is the endpoint that is gone.
        let gate = &self.core.gate;
        if let Some((reason, since)) = gate.outage() {
            msg.push_str(&format!(
                "; {} has been unavailable for {:.1} s ({reason})",
                gate.endpoint(),
                since.as_secs_f64()
            ));
        }
        Error::new(ErrorKind::Timeout, msg)
    }
}
