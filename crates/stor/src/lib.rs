//! # stor — object storage for Rust backends
//!
//! One async API over AWS S3, every S3-compatible engine (MinIO, Ceph, SeaweedFS,
//! R2, Garage), an embedded local store (the default when nothing is configured) and
//! an in-memory store for tests.
//!
//! ## A tour
//!
//! Open a store from a [`StorageConfig`] — plain data with defaults, readable from the
//! original service's JSON — and use the [`Storage`] handle (cheap to clone) or the
//! process-wide [`StorageService`]:
//!
//! ```
//! # tokio_test::block_on(async {
//! use std::time::Duration;
//! use stor::{ListOptions, Storage, StorageConfig, UploadOptions};
//!
//! let root = tempfile::tempdir().unwrap();
//! let storage = Storage::new(StorageConfig {
//!     default_bucket: Some("news".into()),
//!     ..StorageConfig::local(root.path())
//! })
//! .await?;
//! storage.create_bucket("news").await?;
//!
//! // Upload with metadata; None means the default bucket.
//! let opts = UploadOptions::default().metadata("source", "crawler");
//! storage.upload_bytes(None, "2026/11/26/a.json", r#"{"title":"hello"}"#, opts).await?;
//!
//! // List by prefix.
//! let page = storage.list(None, ListOptions::default().prefix("2026/")).await?;
//! assert_eq!(page.objects[0].key, "2026/11/26/a.json");
//!
//! // Info, download.
//! let info = storage.info(None, "2026/11/26/a.json").await?;
//! assert_eq!(info.metadata["source"], "crawler");
//! let got = storage.download_bytes(None, "2026/11/26/a.json").await?;
//! assert_eq!(&got.data[..], br#"{"title":"hello"}"#);
//!
//! // Errors have kinds to branch on.
//! let err = storage.info(None, "missing").await.unwrap_err();
//! assert_eq!(err.kind(), stor::ErrorKind::KeyNotFound);
//! # Ok::<(), stor::Error>(()) }).unwrap();
//! ```
//!
//! Presigned URLs need an S3 endpoint: `storage.presign(None, key,
//! PresignOptions::get(Duration::from_secs(3600)))`.
//!
//! ## Modules
//! - [`config`]: [`StorageConfig`] and its defaults.
//! - [`error`]: [`Error`] and [`ErrorKind`].
//! - [`backend`]: the [`Backend`](backend::Backend) trait and the S3, local and memory stores.
//! - [`transfer`]: part-size arithmetic of the multipart engine.
//! - [`checksum`]: the end-to-end CRC stored with each object and verified on download.
//! - [`metrics`]: counters and health.

#![warn(missing_docs)]

pub mod backend;
mod bandwidth;
mod batch;
pub mod checksum;
pub mod config;
mod core;
pub mod credentials;
mod destination;
pub mod error;
pub mod events;
pub mod journal;
mod location;
pub mod metrics;
mod post;
mod probe;
mod reserved;
mod retry;
mod service;
mod storage;
mod tags;
pub mod transfer;
mod types;
pub mod validate;
mod versions;

pub use crate::core::BucketArg;
pub use batch::{
    dir_prefix, download_paths, path_under, plan_upload, BatchItem, BatchOptions, BatchOutcome,
    Skipped, UploadPlan,
};
pub use checksum::ChecksumAlgorithm;
pub use config::{Secret, StorageConfig, StorageType};
pub use destination::{is_download_temp, TEMP_SUFFIX};
pub use error::{Error, ErrorKind, Result};
pub use events::{WriteEvent, WriteEvents, WriteKind};
pub use journal::{Interrupted, TransferKind};
pub use location::{Location, Scheme};
pub use metrics::{HealthReport, MetricsSnapshot};
pub use post::{PostCondition, PostKey, PresignPostOptions, PresignedPost};
pub use probe::{ProbeCheck, ProbeOutcome};
pub use reserved::{format_mtime, is_reserved, stored_mtime, MOVE_MARKER, MTIME_KEY};
pub use service::StorageService;
pub use storage::{guess_content_type, Storage, DELETE_BATCH};
pub use types::{
    format_time, ByteRange, CopyOptions, DeleteResult, DownloadOptions, Downloaded, Encryption,
    ListOptions, ListPage, ObjectInfo, ObjectStream, PresignMethod, PresignOptions, Progress,
    SweepReport, TransferResult, UploadOptions, WriteCondition,
};
pub use validate::{validate_bucket, validate_expiry, validate_key, validate_tags, MAX_KEY_BYTES};
pub use versions::{DeletedVersion, ObjectVersion, VersionPage, Versioning};
