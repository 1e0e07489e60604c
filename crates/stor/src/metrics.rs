//! Counters of what a [`crate::Storage`] did: the original service's metrics
//! (operations, successes, failures, bytes and time up and down, last operation)
//! plus retries and throttling, and connection health.
//!
//! Bytes are counted once per successful transfer, never per attempt, so retries
//! do not inflate them.
//!
//! The same events also go to the [`metrics`](https://docs.rs/metrics) crate's
//! facade, so a service can export them (Prometheus, StatsD, …) by installing a
//! recorder; without one they cost next to nothing. Names and labels:
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `stor_operations_total` | counter | `op`, `backend`, `outcome` (`ok`/`error`), `kind` (error kind, `none` when ok) | operations finished |
//! | `stor_operation_duration_seconds` | histogram | `op`, `backend`, `outcome` | whole-operation latency, retries included |
//! | `stor_bytes_total` | counter | `direction` (`up`/`down`), `backend` | bytes of successful transfers, counted once |
//! | `stor_request_attempts_total` | counter | `backend` | requests sent, retries included |
//! | `stor_retries_total` | counter | `kind` | requests retried, by the error kind that caused it |
//! | `stor_throttled_total` | counter | — | responses that were throttling (SlowDown, 503, …) |
//!
//! `op` is one of `upload`, `download`, `info`, `delete`, `list`, `copy`, `move`,
//! `create bucket`, `delete bucket`, `bucket exists`, `list buckets`, `cleanup`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// A point-in-time copy of the counters. It serialises with the original
/// service's `S3Metrics` names, so code and dashboards reading those keep working,
/// and stor's extras beside them:
///
/// | JSON key | field | meaning |
/// |---|---|---|
/// | `total_operations` | `operations` | operations started |
/// | `successful_operations` | `successes` | operations that succeeded |
/// | `failed_operations` | `failures` | operations that failed |
/// | `total_upload_time` | `upload_seconds` | seconds spent in uploads |
/// | `total_download_time` | `download_seconds` | seconds spent in downloads |
/// | `bytes_uploaded` | `bytes_uploaded` | bytes of successful uploads |
/// | `bytes_downloaded` | `bytes_downloaded` | bytes of successful downloads |
/// | `last_operation_time` | `last_operation` | when the last operation finished, Unix epoch seconds (`null` before any) |
/// | `retries` | `retries` | stor: requests retried |
/// | `throttled` | `throttled` | stor: throttling answers received |
///
/// ```
/// let m = stor::MetricsSnapshot { operations: 2, successes: 1, failures: 1, ..Default::default() };
/// let v = serde_json::to_value(&m).unwrap();
/// assert_eq!(v["total_operations"], 2);
/// assert_eq!(v["failed_operations"], 1);
/// assert!(v["last_operation_time"].is_null());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// Operations started (= successes + failures once they finish).
    #[serde(rename = "total_operations")]
    pub operations: u64,
    /// Operations that succeeded.
    #[serde(rename = "successful_operations")]
    pub successes: u64,
    /// Operations that failed.
    #[serde(rename = "failed_operations")]
    pub failures: u64,
    /// Bytes uploaded by successful uploads.
    pub bytes_uploaded: u64,
    /// Bytes downloaded by successful downloads.
    pub bytes_downloaded: u64,
    /// Total seconds spent in uploads.
    #[serde(rename = "total_upload_time")]
    pub upload_seconds: f64,
    /// Total seconds spent in downloads.
    #[serde(rename = "total_download_time")]
    pub download_seconds: f64,
    /// Requests retried.
    pub retries: u64,
    /// Throttling answers received (503 SlowDown, 429, …).
    pub throttled: u64,
    /// When the last operation finished.
    #[serde(rename = "last_operation_time", serialize_with = "ser_epoch_seconds")]
    pub last_operation: Option<SystemTime>,
}

/// A time as Unix epoch seconds (fractional), like Python's `time.time()`.
fn ser_epoch_seconds<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::types::format_time(*t)),
        None => s.serialize_none(),
    }
}

/// Whether the backend answered, as seen by the last operations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// `s3`, `local` or `memory`.
    pub backend: String,
    /// The endpoint in use (custom S3 endpoint), if any.
    pub endpoint: Option<String>,
    /// Whether the probe succeeded.
    pub healthy: bool,
    /// How long the probe took.
    #[serde(serialize_with = "ser_duration")]
    pub latency: Duration,
    /// Why it is unhealthy, when it is.
    pub error: Option<String>,
    /// Failures in a row of the operations before the probe (network, timeout, 5xx).
    pub consecutive_failures: u64,
    /// When an operation last succeeded.
    #[serde(serialize_with = "ser_opt_time")]
    pub last_success: Option<SystemTime>,
    /// Seconds the server's clock is ahead of ours (SigV4 fails past 900).
    pub clock_skew_seconds: Option<f64>,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Which way the bytes of an operation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Up,
    Down,
    None,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    operations: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_downloaded: AtomicU64,
    upload_micros: AtomicU64,
    download_micros: AtomicU64,
    consecutive_failures: AtomicU64,
    last_operation: Mutex<Option<SystemTime>>,
    last_success: Mutex<Option<SystemTime>>,
}

impl Metrics {
    pub fn start(&self) {
        self.operations.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one finished operation (also through the `metrics` facade).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        op: &'static str,
        backend: &'static str,
        error: Option<crate::ErrorKind>,
        connection_fault: bool,
        dir: Direction,
        bytes: u64,
        took: Duration,
    ) {
        let outcome = if error.is_none() { "ok" } else { "error" };
        let kind = error
            .map(|k| k.to_string())
            .unwrap_or_else(|| "none".into());
        metrics::counter!("stor_operations_total", "op" => op, "backend" => backend,
            "outcome" => outcome, "kind" => kind)
        .increment(1);
        metrics::histogram!("stor_operation_duration_seconds", "op" => op,
            "backend" => backend, "outcome" => outcome)
        .record(took.as_secs_f64());
        if error.is_none() && bytes > 0 {
            let direction = match dir {
                Direction::Up => "up",
                Direction::Down => "down",
                Direction::None => "none",
            };
            metrics::counter!("stor_bytes_total", "direction" => direction, "backend" => backend)
                .increment(bytes);
        }
        self.finish(error.is_none(), connection_fault, dir, bytes, took);
    }

    fn finish(&self, ok: bool, connection_fault: bool, dir: Direction, bytes: u64, took: Duration) {
        let now = SystemTime::now();
        if ok {
            self.successes.fetch_add(1, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
            *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if connection_fault {
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = took.as_micros() as u64;
        match dir {
            Direction::Up => {
                if ok {
                    self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
                }
                self.upload_micros.fetch_add(micros, Ordering::Relaxed);
            }
            Direction::Down => {
                if ok {
                    self.bytes_downloaded.fetch_add(bytes, Ordering::Relaxed);
                }
                self.download_micros.fetch_add(micros, Ordering::Relaxed);
            }
            Direction::None => {}
        }
        *self
            .last_operation
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub fn last_success(&self) -> Option<SystemTime> {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self, retries: u64, throttled: u64) -> MetricsSnapshot {
        MetricsSnapshot {
            operations: self.operations.load(Ordering::Relaxed),
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            bytes_downloaded: self.bytes_downloaded.load(Ordering::Relaxed),
            upload_seconds: self.upload_micros.load(Ordering::Relaxed) as f64 / 1e6,
            download_seconds: self.download_micros.load(Ordering::Relaxed) as f64 / 1e6,
            retries,
            throttled,
            last_operation: *self
                .last_operation
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        }
    }
}
