//! Backends: the small trait every store implements, and the stores.
//!
//! A backend does one request per call and nothing more: no retries, no
//! validation, no metrics, no multipart chunking. The core under
//! [`crate::Storage`] does those once for all backends. Every backend module has
//! the same shape: a struct, its constructor, the [`Backend`] impl with its
//! [`Capabilities`], and the [`Multipart`] impl where it has multipart uploads.
//! `common` holds what the local and memory stores share.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::config::{StorageConfig, StorageType};
use crate::error::Result;
use crate::post::{PostKey, PresignPostOptions, PresignedPost};
use crate::types::{
    ByteRange, DeleteResult, ListOptions, ListPage, ObjectInfo, PresignOptions, SweepReport,
    UploadOptions, WriteCondition,
};
use crate::types::{DeletedVersion, VersionPage, Versioning};

pub mod azure;
mod common;
mod file_body;
pub mod gcs;
mod listing;
pub mod local;
pub mod memory;
mod rest;
pub mod s3;

pub(crate) use file_body::{source_changed, Tap};
pub use file_body::{FileBody, FileRange, SourceCheck};
pub(crate) use listing::{list_sorted, successor as listing_upper_bound};

pub use crate::types::ByteStream;

/// The body of a single PUT or one part.
pub enum Body {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A range of a file, re-opened on each attempt and read through
    /// [`FileRange::body`], which checks it before its last byte.
    File(FileRange),
    /// A stream of unknown length. Only for backends with
    /// [`Capabilities::streaming_bodies`]; never retried.
    Stream(ByteStream),
    /// A stream of exactly this many bytes (how the engine sends bytes in memory
    /// paced by a bandwidth limit). Every backend takes it; never retried.
    Sized(ByteStream, u64),
}

impl Body {
    /// Length when known.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File(r) => Some(r.len),
            Body::Stream(_) => None,
            Body::Sized(_, n) => Some(*n),
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The body as something every attempt can send again; a stream (which cannot
    /// be replayed) comes back as it was.
    pub(crate) fn replay(self) -> std::result::Result<Replay, ByteStream> {
        match self {
            Body::Bytes(b) => Ok(Replay::Bytes(b)),
            Body::File(r) => Ok(Replay::File(r)),
            Body::Stream(s) | Body::Sized(s, _) => Err(s),
        }
    }
}

/// A body each attempt can send again: bytes, or a file range re-opened per attempt.
/// Unlike [`Body`] it is `Sync`, so futures that borrow it across retries stay `Send`.
pub(crate) enum Replay {
    Bytes(Bytes),
    File(FileRange),
}

impl Replay {
    /// A fresh body for one attempt.
    pub fn body(&self) -> Body {
        match self {
            Replay::Bytes(b) => Body::Bytes(b.clone()),
            Replay::File(r) => Body::File(r.clone()),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Replay::Bytes(b) => b.len() as u64,
            Replay::File(r) => r.len,
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::File(r) => write!(f, "Body::{r:?}"),
            Body::Stream(_) => f.write_str("Body::Stream"),
            Body::Sized(_, n) => write!(f, "Body::Sized({n} bytes)"),
        }
    }
}

/// A GET's answer: what the object is, and its bytes.
pub struct GetResponse {
    /// The object's info (size is the whole object's size).
    pub info: ObjectInfo,
    /// Bytes of the requested range (or the whole object).
    pub body: ByteStream,
    /// Length of `body`.
    pub content_length: u64,
    /// The S3-native full-object checksum the server sent with a whole-object GET
    /// (asked for only where native checksums are on; see
    /// [`Backend::native_checksum`]).
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// A part of a multipart upload that was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub part_number: i32,
    /// The part's ETag as returned by the server.
    pub etag: String,
    /// The part's S3-native checksum (base64), when the upload asked for one.
    pub checksum: Option<String>,
}

/// A part a multipart upload holds on the server (ListParts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// 1-based part number.
    pub part_number: i32,
    /// The part's ETag as the server lists it.
    pub etag: String,
    /// Bytes in the part.
    pub size: u64,
}

/// The source of an UploadPartCopy: a range of an object, pinned to its ETag.
#[derive(Debug, Clone, Copy)]
pub struct PartCopySource<'a> {
    /// Source bucket.
    pub bucket: &'a str,
    /// Source key.
    pub key: &'a str,
    /// The copy fails with PreconditionFailed unless the source still has this ETag.
    pub etag: Option<&'a str>,
    /// Bytes to copy.
    pub range: ByteRange,
    /// This version of the source (stores with [`Capabilities::versioning`]).
    pub version_id: Option<&'a str>,
}

/// The source of a copy: an object, or one version of it.
#[derive(Debug, Clone, Copy)]
pub struct CopySource<'a> {
    /// Source bucket.
    pub bucket: &'a str,
    /// Source key.
    pub key: &'a str,
    /// This version rather than the current one.
    pub version_id: Option<&'a str>,
}

impl<'a> CopySource<'a> {
    /// The current object under `key`: what [`Backend::copy_object`] copies, so
    /// stores that implement [`Backend::copy_object_with`] answer it through that.
    pub fn current(bucket: &'a str, key: &'a str) -> Self {
        CopySource {
            bucket,
            key,
            version_id: None,
        }
    }
}

/// A multipart upload that was started and not completed or aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Key of the upload.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When it was started.
    pub initiated: Option<std::time::SystemTime>,
}

/// What a backend can do. The engine reads it to choose how to transfer (one
/// request or parts, one GET or parallel ranges), and the contract suite to choose
/// which cases apply — one value instead of booleans with two meanings.
///
/// ```
/// let caps = stor::backend::Capabilities {
///     multipart: true,
///     ..Default::default()
/// };
/// assert!(caps.multipart && !caps.presign);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Large uploads go in parts: [`Backend::multipart`] gives the primitives.
    pub multipart: bool,
    /// Parts can be copied from a range of another object (UploadPartCopy), so
    /// large copies go by parts.
    pub part_copy: bool,
    /// Ranged reads are cheap and several at once make a download faster (a store
    /// across a network): large downloads use parallel ranged GETs.
    pub parallel_ranges: bool,
    /// [`Backend::put_object`] takes a [`Body::Stream`] of unknown length.
    pub streaming_bodies: bool,
    /// [`Backend::presign`] makes URLs a browser can use.
    pub presign: bool,
    /// S3's own checksum headers are sent and kept (`native_checksums`), so an
    /// object without a stor checksum may still have one to verify against.
    pub native_checksums: bool,
    /// Reads honour If-Match (a download pins the version it started on).
    pub conditional_reads: bool,
    /// Buckets can keep every version of an object ([`Backend::versions`]). The
    /// local store does not.
    pub versioning: bool,
    /// Writes take a [`WriteCondition`] (create-only, If-Match) that the store
    /// checks atomically with the write: single PUTs, multipart completions and
    /// copies.
    pub conditional_writes: bool,
    /// Objects carry tags ([`Backend::tagging`]), set on upload and kept by copies
    /// (also from another store: `stor cp`/`mv` carry them; into a store without
    /// tags, a tagged source is refused rather than copied without them).
    pub tags: bool,
    /// [`Backend::presign_post`] makes browser form uploads (a POST policy).
    pub presign_post: bool,
    /// Whose rules bucket names and keys are checked by before any I/O.
    pub names: crate::validate::NameRules,
    /// The store keeps a record of each multipart upload in progress, which
    /// [`Multipart::list_multipart_uploads`] lists and another process can abort
    /// (`stor cleanup`). Azure keeps none: uncommitted blocks belong to no upload
    /// and Azure drops them itself after a week.
    pub listed_uploads: bool,
}

/// The operations every store offers. One request per call; see the module docs.
/// Twelve required methods; multipart uploads are an extension
/// ([`Backend::multipart`]), and the rest have defaults for stores without them.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Short name used in URLs and messages: `s3`, `local`, `memory`.
    fn scheme(&self) -> &'static str;

    /// What this store can do.
    fn capabilities(&self) -> Capabilities;

    /// Creates a bucket.
    async fn create_bucket(&self, bucket: &str) -> Result<()>;
    /// Deletes an empty bucket.
    async fn delete_bucket(&self, bucket: &str) -> Result<()>;
    /// Whether a bucket exists (and is accessible).
    async fn bucket_exists(&self, bucket: &str) -> Result<bool>;
    /// Names of all buckets.
    async fn list_buckets(&self) -> Result<Vec<String>>;

    /// Stores an object in one request; returns its ETag.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        opts: &UploadOptions,
    ) -> Result<Option<String>>;
    /// Reads an object or a range of it.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse>;
    /// An object's info.
    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo>;
    /// Deletes up to 1000 keys in one request; per-key results. Absent keys are
    /// not an error (as in S3).
    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<DeleteResult>>;
    /// One page of keys: `req.prefix`, `req.delimiter`, `req.continuation_token`,
    /// `req.start_after`, and at most `req.max_keys` (always set, 1..=1000).
    async fn list_objects(&self, bucket: &str, req: &ListOptions) -> Result<ListPage>;
    /// Copies an object inside the store without moving bytes through the client.
    /// `replace` replaces headers and metadata instead of copying them.
    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        replace: Option<&UploadOptions>,
    ) -> Result<Option<String>>;

    /// Deletes one object (through [`Backend::delete_objects`] unless overridden).
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let res = self.delete_objects(bucket, &[key.to_owned()]).await?;
        match res.into_iter().find_map(|r| r.error) {
            Some(e) => Err(crate::Error::new(crate::ErrorKind::Other, e)),
            None => Ok(()),
        }
    }

    /// The multipart primitives, for stores whose [`Capabilities::multipart`] is set.
    fn multipart(&self) -> Option<&dyn Multipart> {
        None
    }

    /// A presigned URL, for stores whose [`Capabilities::presign`] is set.
    async fn presign(&self, bucket: &str, key: &str, opts: &PresignOptions) -> Result<String> {
        let _ = (bucket, key, opts);
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!(
                "the {} store has no HTTP endpoint to presign for; presign needs an s3:// URL",
                self.scheme()
            ),
        ))
    }

    /// Seconds the server's clock is ahead of ours (negative: behind), as last seen
    /// in a response's `Date`; `None` when unknown or not applicable.
    fn clock_skew(&self) -> Option<f64> {
        None
    }

    /// Resolves the credentials now, rather than at the first request, and says
    /// where they came from (`"profile prod (~/.aws/credentials)"`); `None` for
    /// backends that need none. With none to be found, the error names every place
    /// looked in (see [`crate::credentials`]).
    async fn credentials(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// The S3-native checksum stored with the object, when the backend uses them
    /// and the object has one that covers its whole content in an algorithm stor
    /// computes (CRC64NVME, CRC32C, CRC32). A multipart upload's COMPOSITE checksum
    /// (a checksum of part checksums) cannot be checked against the bytes alone and
    /// gives `None`. With `etag`, the object must still be that version.
    async fn native_checksum(
        &self,
        _bucket: &str,
        _key: &str,
        _etag: Option<&str>,
    ) -> Result<Option<(ChecksumAlgorithm, String)>> {
        Ok(None)
    }

    /// Removes what writes that never finished left behind (temp files, stored bytes
    /// no object points at), never the files of a write still in flight; returns what
    /// was removed. Stores that leave nothing behind do nothing (an S3 upload's
    /// leftovers are its multipart uploads: [`Multipart::abort_multipart`]).
    async fn sweep(&self) -> Result<SweepReport> {
        Ok(SweepReport::default())
    }

    /// The custom endpoint requests go to, as resolved when the backend was opened
    /// (from the config, the environment or an AWS profile), without userinfo;
    /// `None` for the provider's own endpoint or stores that have none.
    fn endpoint_url(&self) -> Option<String> {
        None
    }

    /// A copy with what [`Backend::copy_object`] lacks: a version of the source, a
    /// condition on the destination (stores with [`Capabilities::versioning`] or
    /// [`Capabilities::conditional_writes`] implement it; the default takes plain
    /// copies only).
    async fn copy_object_with(
        &self,
        src: &CopySource<'_>,
        dst_bucket: &str,
        dst_key: &str,
        replace: Option<&UploadOptions>,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<String>> {
        match (src.version_id, condition) {
            (None, None) => {
                self.copy_object(src.bucket, src.key, dst_bucket, dst_key, replace)
                    .await
            }
            _ => Err(crate::Error::new(
                crate::ErrorKind::Unsupported,
                format!(
                    "the {} store copies neither versions nor on conditions",
                    self.scheme()
                ),
            )),
        }
    }

    /// Bucket versioning, for stores whose [`Capabilities::versioning`] is set.
    fn versions(&self) -> Option<&dyn Versions> {
        None
    }

    /// Object tags, for stores whose [`Capabilities::tags`] is set.
    fn tagging(&self) -> Option<&dyn Tagging> {
        None
    }

    /// A browser form upload (URL and form fields signed with a POST policy), for
    /// stores whose [`Capabilities::presign_post`] is set.
    async fn presign_post(
        &self,
        bucket: &str,
        key: &PostKey,
        opts: &PresignPostOptions,
    ) -> Result<PresignedPost> {
        let _ = (bucket, key, opts);
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!(
                "the {} store has no HTTP endpoint for browser uploads; presigned POST \
                 needs an s3:// URL",
                self.scheme()
            ),
        ))
    }
}

/// Bucket versioning: the requests of a store that keeps every version of an
/// object. One request per call, like [`Backend`].
#[async_trait]
pub trait Versions: Send + Sync {
    /// Turns versioning on (`true`) or suspends it (`false`).
    async fn set_versioning(&self, bucket: &str, enabled: bool) -> Result<()>;
    /// The bucket's versioning state.
    async fn versioning(&self, bucket: &str) -> Result<Versioning>;
    /// One page of versions and delete markers, newest first per key; paged by
    /// `req.continuation_token` (opaque), at most `req.max_keys` (1..=1000).
    async fn list_versions(&self, bucket: &str, req: &ListOptions) -> Result<VersionPage>;
    /// One version's info (a delete marker is `KeyNotFound`).
    async fn head_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectInfo>;
    /// Reads one version or a range of it.
    async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        range: Option<ByteRange>,
    ) -> Result<GetResponse>;
    /// Removes up to 1000 versions (or delete markers) for good; per-version
    /// results, in order. Absent versions are not an error.
    async fn delete_versions(
        &self,
        bucket: &str,
        versions: &[(String, String)],
    ) -> Result<Vec<DeletedVersion>>;
}

/// Object tags. One request per call, like [`Backend`].
#[async_trait]
pub trait Tagging: Send + Sync {
    /// An object's tags (of `version_id` when given).
    async fn get_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, String>>;
    /// Replaces an object's tags.
    async fn put_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<()>;
    /// Removes an object's tags.
    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()>;
}

/// Multipart uploads: the primitives the engine builds large uploads and copies
/// from (it does the chunking, concurrency, retries and abort on failure).
#[async_trait]
pub trait Multipart: Send + Sync {
    /// Starts a multipart upload; returns its id. `checksum`: the upload will
    /// send a full-object checksum of this algorithm at completion (backends with
    /// S3-native checksums turned on then have each part checksummed too).
    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: &UploadOptions,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<String>;
    /// Stores one part; `checksum` as given to `create_multipart`.
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<CompletedPart>;
    /// Copies a range of another object into one part (UploadPartCopy); returns
    /// the part's ETag. Stores whose [`Capabilities::part_copy`] is set implement it.
    async fn upload_part_copy(
        &self,
        src: &PartCopySource<'_>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
    ) -> Result<String> {
        let _ = (src, bucket, key, upload_id, part_number);
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            "this backend has no multipart copy",
        ))
    }
    /// Completes a multipart upload from its parts in order; returns the ETag.
    /// `checksum`: the whole object's, for backends that check and keep it.
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
    ) -> Result<Option<String>>;
    /// Aborts a multipart upload and frees its parts.
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()>;
    /// Multipart uploads started under `prefix` and not finished.
    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>>;
    /// [`Multipart::complete_multipart`] only if `condition` holds of the object
    /// the key holds then, checked atomically with the completion (stores with
    /// [`Capabilities::conditional_writes`]; the default takes no condition).
    async fn complete_multipart_if(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<String>> {
        match condition {
            None => {
                self.complete_multipart(bucket, key, upload_id, parts, checksum)
                    .await
            }
            Some(_) => Err(crate::Error::new(
                crate::ErrorKind::Unsupported,
                "this store completes multipart uploads on no condition",
            )),
        }
    }

    /// The parts an upload holds so far, in order (ListParts): what a resumed upload
    /// checks against its journal. An upload the server no longer has fails with
    /// S3's `NoSuchUpload`. Stores that cannot list parts answer `Unsupported` (a
    /// resumed upload then starts over).
    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>> {
        let _ = (bucket, key, upload_id);
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            "this backend cannot list the parts of an upload",
        ))
    }
}

/// The multipart primitives of a backend whose capabilities promise them.
pub(crate) fn multipart_of(be: &dyn Backend) -> Result<&dyn Multipart> {
    be.multipart().ok_or_else(|| {
        crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("the {} store has no multipart uploads", be.scheme()),
        )
    })
}

/// The versioning requests of a store, or why it has none.
pub(crate) fn versions_of(be: &dyn Backend) -> Result<&dyn Versions> {
    be.versions().ok_or_else(|| {
        crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!(
                "the {} store keeps no object versions (versioning needs an S3 engine)",
                be.scheme()
            ),
        )
    })
}

/// Opens the backend a config names: S3 (credentials and region from the config,
/// else the AWS environment), the local store, or memory. [`crate::Storage::new`]
/// is this and [`crate::Storage::with_backend`]; wrappers (a fault injector, a
/// cache) open the backend here and wrap it.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Backend>> {
    config.validate()?;
    Ok(match config.storage_type {
        StorageType::S3 => Arc::new(s3::S3Backend::new(config).await?),
        StorageType::Local => {
            let root = config.resolved_local_root();
            let b = tokio::task::spawn_blocking(move || local::LocalBackend::open(root))
                .await
                .map_err(|e| crate::Error::new(crate::ErrorKind::Other, e.to_string()))??;
            Arc::new(b)
        }
        StorageType::Memory => Arc::new(memory::MemoryBackend::new()),
        StorageType::Gcs => Arc::new(gcs::GcsBackend::new(config).await?),
        StorageType::Azure => Arc::new(azure::AzureBackend::new(config).await?),
    })
}
