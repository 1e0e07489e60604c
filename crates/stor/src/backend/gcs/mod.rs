//! Google Cloud Storage over its JSON API, spoken directly (see README, "Why GCS
//! and Azure are spoken directly"): plain HTTPS (`backend/rest.rs`), OAuth2 tokens
//! from the Google credentials (`auth.rs`), V4 signed URLs (`presign.rs`).
//!
//! - An object's version is its *generation*: it is the ETag stor reports, and
//!   reads pinned to a version send `ifGenerationMatch`.
//! - Large uploads go in parts the way `gcloud storage` does parallel composite
//!   uploads: each part is a temporary object under `.stor-uploads/ID/`, uploaded
//!   concurrently, then composed (32 at a time) into the object and deleted. (GCS's
//!   XML multipart API would do the same, but no emulator speaks it, so it could
//!   not be tested.) Leftovers of an upload that never finished are listed and
//!   removed by `stor cleanup`; listings never show `.stor-uploads/`.
//! - Reads of the start of an object (or the whole of it) first read its metadata
//!   (size, generation, user metadata with the stor checksum), then the bytes
//!   pinned to that generation; later ranges of the same download read bytes only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::json;

mod auth;
mod client;
mod errors;
pub(crate) mod presign;

use super::rest::{self, Http};
use super::{Backend, Body, Capabilities, CompletedPart, GetResponse, Multipart, PendingUpload};
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{
    ByteRange, DeleteResult, ListOptions, ListPage, ObjectInfo, PresignMethod, PresignOptions,
    UploadOptions,
};
use crate::validate::NameRules;

/// Where the parts of uploads in progress live, in the upload's bucket.
pub const UPLOADS_PREFIX: &str = ".stor-uploads/";
/// Most sources one compose request takes.
const COMPOSE_MAX: usize = 32;
/// Metadata key on each part naming the key it belongs to (for `stor cleanup`).
const PART_KEY: &str = "stor-upload-key";

/// Everything but unreserved characters is escaped (object names in paths, so `/`
/// too, and query values).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn encode_query(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The GCS backend.
pub struct GcsBackend {
    http: Http,
    endpoint: String,
    auth: Arc<auth::Auth>,
    /// Options of the uploads in progress in this process, by upload id: they
    /// apply when the parts are composed.
    pending: Mutex<HashMap<String, UploadOptions>>,
    /// Uploads aborted in this process: a part that lands after the abort removes
    /// itself and fails, as S3 fails parts of an aborted upload.
    aborted: Arc<Mutex<std::collections::HashSet<String>>>,
    /// The part uploads in flight, by upload id, each holding a read guard: an
    /// abort takes the write lock, so it lists the parts only once they have all
    /// ended (stored, then removed by themselves, or failed), and none lands after.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl std::fmt::Debug for GcsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBackend")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// An object resource of the JSON API (the fields stor reads).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Object {
    name: String,
    generation: Option<String>,
    size: Option<String>,
    content_type: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    updated: Option<String>,
    time_created: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    storage_class: Option<String>,
}

impl Object {
    fn info(self, bucket: &str) -> ObjectInfo {
        let size = self
            .size
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut info = ObjectInfo::new(bucket, &self.name, size);
        info.etag = self.generation;
        info.last_modified = self.updated.as_deref().and_then(rest::parse_time);
        info.content_type = self.content_type;
        info.metadata = self
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        info.cache_control = self.cache_control;
        info.content_disposition = self.content_disposition;
        info.content_encoding = self.content_encoding;
        info.storage_class = self.storage_class;
        info
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Objects {
    items: Vec<Object>,
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

/// The object resource fields an upload sets.
fn resource(key: &str, opts: &UploadOptions) -> serde_json::Value {
    let mut r = json!({ "name": key });
    let m = r.as_object_mut().expect("an object");
    let fields = [
        ("contentType", &opts.content_type),
        ("cacheControl", &opts.cache_control),
        ("contentDisposition", &opts.content_disposition),
        ("contentEncoding", &opts.content_encoding),
        ("storageClass", &opts.storage_class),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if !opts.metadata.is_empty() {
        m.insert("metadata".into(), json!(opts.metadata));
    }
    r
}

impl GcsBackend {
    fn object_path(bucket: &str, key: &str) -> String {
        format!("/storage/v1/b/{bucket}/o/{}", encode_query(key))
    }

    async fn object(&self, bucket: &str, key: &str) -> Result<Object> {
        self.json(Method::GET, &Self::object_path(bucket, key), None)
            .await
            .map_err(|e| self.not_found(e, bucket))
    }

    /// A 404 on an object is a missing key unless the message says it is the
    /// bucket (as GCS and fake-gcs-server word it).
    fn not_found(&self, e: Error, _bucket: &str) -> Error {
        if e.status() == Some(404) && e.message().to_ascii_lowercase().contains("bucket") {
            e.with_kind(ErrorKind::BucketNotFound)
        } else {
            e
        }
    }

    /// A 404 on an object, told apart by asking for the bucket.
    async fn missing(&self, e: Error, bucket: &str) -> Error {
        if e.kind() == ErrorKind::KeyNotFound && !self.bucket_exists(bucket).await.unwrap_or(true) {
            return e.with_kind(ErrorKind::BucketNotFound);
        }
        e
    }

    /// One object from `body` (a multipart/related upload: metadata, then bytes).
    async fn insert(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        opts: &UploadOptions,
    ) -> Result<Object> {
        let len = body
            .len()
            .ok_or_else(|| Error::new(ErrorKind::Unsupported, "GCS uploads need a known length"))?;
        let failed = rest::body_failure(&body);
        let boundary = format!("stor-{:016x}", rand::random::<u64>());
        let ct = opts
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let head = format!(
            "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{}\r\n\
             --{boundary}\r\ncontent-type: {ct}\r\n\r\n",
            resource(key, opts)
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let total = head.len() as u64 + len + tail.len() as u64;
        let body = rest::framed(Bytes::from(head), body, Bytes::from(tail));
        let resp = self
            .send(
                Method::POST,
                &format!("/upload/storage/v1/b/{bucket}/o?uploadType=multipart"),
                &[
                    (
                        "content-type",
                        format!("multipart/related; boundary={boundary}"),
                    ),
                    ("content-length", total.to_string()),
                ],
                body,
                failed,
            )
            .await?;
        let bytes = self.http.read_all(resp).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("GCS answered an upload with: {e}"),
            )
        })
    }

    fn part_name(upload_id: &str, part: i32) -> String {
        format!("{UPLOADS_PREFIX}{upload_id}/{part:05}")
    }

    /// The empty object that says an upload is in progress (from its creation, so
    /// `stor cleanup` sees it before any part lands, as it sees S3's).
    fn marker_name(upload_id: &str) -> String {
        format!("{UPLOADS_PREFIX}{upload_id}/upload")
    }

    fn was_aborted(&self, upload_id: &str) -> bool {
        self.aborted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(upload_id)
    }

    /// Deletes an upload's marker, parts and intermediate composites.
    async fn remove_parts(&self, bucket: &str, upload_id: &str) -> Result<()> {
        let names = self
            .list_prefix(bucket, &format!("{UPLOADS_PREFIX}{upload_id}/"))
            .await?
            .into_iter()
            .map(|o| o.name)
            .collect::<Vec<_>>();
        for r in self.delete_all(bucket, &names).await {
            match r {
                Err(e) if e.status() != Some(404) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Deletes objects concurrently; a missing one is not an error.
    async fn delete_all(&self, bucket: &str, keys: &[String]) -> Vec<Result<()>> {
        // Owned keys: a closure over borrowed ones trips the Send check of
        // async-trait futures (rust-lang/rust#102211).
        futures::stream::iter(keys.to_vec())
            .map(|k| async move {
                self.send(
                    Method::DELETE,
                    &Self::object_path(bucket, &k),
                    &[],
                    rest::empty(),
                    || None,
                )
                .await
                .map(drop)
            })
            .buffered(16)
            .collect()
            .await
    }

    /// Signs a V4 URL at `now` (for tests: a fixed time).
    pub(crate) fn presign_at(
        &self,
        bucket: &str,
        key: &str,
        opts: &PresignOptions,
        now: SystemTime,
    ) -> Result<String> {
        let Some(sa) = self.auth.signer() else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "GCS signed URLs need a service account key; the credentials are {} \
                     (set GOOGLE_APPLICATION_CREDENTIALS to a service account key file)",
                    self.auth.from
                ),
            ));
        };
        let mut headers = BTreeMap::new();
        if let Some(ct) = &opts.content_type {
            headers.insert("content-type".to_owned(), ct.clone());
        }
        let req = presign::Request {
            method: match opts.method {
                PresignMethod::Put => "PUT",
                _ => "GET",
            },
            bucket,
            object: key,
            expires_secs: opts.expires_in.as_secs(),
            headers,
            query: BTreeMap::new(),
            style: presign::Style::Path {
                base: &self.endpoint,
            },
        };
        Ok(presign::sign(&sa, &req, now)?.url)
    }
}

#[async_trait]
impl Backend for GcsBackend {
    fn scheme(&self) -> &'static str {
        "gs"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            multipart: true,
            part_copy: false,
            parallel_ranges: true,
            streaming_bodies: false,
            presign: self.auth.signer().is_some(),
            native_checksums: false,
            conditional_reads: true,
            names: NameRules::Gcs,
            // Versions, conditional writes, tags and browser form uploads are S3's
            // here; this backend does not speak them yet.
            versioning: false,
            conditional_writes: false,
            tags: false,
            presign_post: false,
            listed_uploads: true,
        }
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    async fn credentials(&self) -> Result<Option<String>> {
        self.auth.token(&self.http).await?;
        Ok(Some(self.auth.from.clone()))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let project = self.auth.project.clone().unwrap_or_else(|| "stor".into());
        let r: Result<serde_json::Value> = self
            .json(
                Method::POST,
                &format!("/storage/v1/b?project={}", encode_query(&project)),
                Some(json!({ "name": bucket })),
            )
            .await;
        match r {
            Err(e) if e.status() == Some(409) => Err(e.with_kind(ErrorKind::AlreadyExists)),
            r => r.map(drop),
        }
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        match self
            .send(
                Method::DELETE,
                &format!("/storage/v1/b/{bucket}"),
                &[],
                rest::empty(),
                || None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Err(e.with_kind(ErrorKind::BucketNotFound)),
            // GCS answers 409; fake-gcs-server 412 ("bucket must be empty").
            Err(e) if matches!(e.status(), Some(409 | 412)) => {
                Err(e.with_kind(ErrorKind::BucketNotEmpty))
            }
            Err(e) => Err(e),
        }
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let r: Result<serde_json::Value> = self
            .json(Method::GET, &format!("/storage/v1/b/{bucket}"), None)
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_buckets(&self) -> Result<Vec<String>> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Buckets {
            items: Vec<Named>,
            next_page_token: Option<String>,
        }
        #[derive(Deserialize, Default)]
        struct Named {
            name: String,
        }
        let project = self.auth.project.clone().unwrap_or_else(|| "stor".into());
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("/storage/v1/b?project={}", encode_query(&project));
            if let Some(t) = &token {
                q.push_str(&format!("&pageToken={}", encode_query(t)));
            }
            let page: Buckets = self.json(Method::GET, &q, None).await?;
            names.extend(page.items.into_iter().map(|b| b.name));
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        opts: &UploadOptions,
    ) -> Result<Option<String>> {
        let obj = match self.insert(bucket, key, body, opts).await {
            Err(e) => return Err(self.missing(e, bucket).await),
            Ok(o) => o,
        };
        Ok(obj.generation)
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse> {
        if let Some(r) = range {
            if r.end <= r.start {
                return Err(Error::invalid(format!(
                    "empty range {}..{}",
                    r.start, r.end
                )));
            }
        }
        // The start of an object: its metadata first (the checksum to expect).
        let meta = if range.is_none_or(|r| r.start == 0) {
            let obj = match self.object(bucket, key).await {
                Err(e) => return Err(self.missing(e, bucket).await),
                Ok(o) => o,
            };
            if let (Some(want), Some(have)) = (if_match, &obj.generation) {
                if want != have {
                    return Err(Error::new(
                        ErrorKind::PreconditionFailed,
                        format!("the object is generation {have}, not {want}"),
                    ));
                }
            }
            Some(obj.info(bucket))
        } else {
            None
        };
        let generation = if_match
            .map(str::to_owned)
            .or_else(|| meta.as_ref().and_then(|m| m.etag.clone()));
        if let Some(g) = &generation {
            if !g.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid(format!(
                    "{g:?} is not a GCS generation (a number, the ETag stor reports)"
                )));
            }
        }
        if let Some(m) = &meta {
            if m.size == 0 {
                return Ok(GetResponse {
                    info: m.clone(),
                    body: Box::pin(futures::stream::empty()),
                    content_length: 0,
                    checksum: None,
                });
            }
        }
        let mut q = format!("{}?alt=media", Self::object_path(bucket, key));
        if let Some(g) = &generation {
            q.push_str(&format!("&ifGenerationMatch={g}"));
        }
        let mut headers = Vec::new();
        if let Some(r) = range {
            headers.push(("range", format!("bytes={}-{}", r.start, r.end - 1)));
        }
        let resp = match self
            .send(Method::GET, &q, &headers, rest::empty(), || None)
            .await
        {
            Err(e) => return Err(self.missing(self.not_found(e, bucket), bucket).await),
            Ok(r) => r,
        };
        let (parts, body) = resp.into_parts();
        // GCS refuses a read of another generation itself; fake-gcs-server ignores
        // ifGenerationMatch on media reads, so the answer's generation is checked too.
        if let (Some(want), Some(have)) = (&generation, rest::header(&parts, "x-goog-generation")) {
            if want != have {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    format!("the object is generation {have} now, not {want}"),
                ));
            }
        }
        let content_length = rest::header(&parts, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let info = match meta {
            Some(m) => m,
            None => {
                let size = rest::header(&parts, "content-range")
                    .and_then(|cr| cr.rsplit('/').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(content_length);
                let mut info = ObjectInfo::new(bucket, key, size);
                info.etag = rest::header(&parts, "x-goog-generation")
                    .map(str::to_owned)
                    .or(generation);
                info
            }
        };
        Ok(GetResponse {
            info,
            body: self.http.stream(http::Response::from_parts(parts, body)),
            content_length,
            checksum: None,
        })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        match self.object(bucket, key).await {
            Ok(o) => Ok(o.info(bucket)),
            Err(e) => Err(self.missing(e, bucket).await),
        }
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<DeleteResult>> {
        let results = self.delete_all(bucket, keys).await;
        let mut out = Vec::with_capacity(keys.len());
        let mut bucket_checked = false;
        for (k, r) in keys.iter().zip(results) {
            let error = match r {
                Ok(()) => None,
                Err(e) if e.status() == Some(404) => {
                    // Absent keys are deleted already; an absent bucket is an error.
                    if !bucket_checked {
                        bucket_checked = true;
                        if !self.bucket_exists(bucket).await? {
                            return Err(e.with_kind(ErrorKind::BucketNotFound));
                        }
                    }
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            out.push(DeleteResult {
                key: k.clone(),
                error,
            });
        }
        Ok(out)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        match self.delete_objects(bucket, &[key.to_owned()]).await?.pop() {
            Some(DeleteResult { error: Some(e), .. }) => Err(Error::new(ErrorKind::Other, e)),
            _ => Ok(()),
        }
    }

    async fn list_objects(&self, bucket: &str, req: &ListOptions) -> Result<ListPage> {
        let max = req.max_keys.unwrap_or(1000);
        let mut q = format!("/storage/v1/b/{bucket}/o?maxResults={max}");
        if !req.prefix.is_empty() {
            q.push_str(&format!("&prefix={}", encode_query(&req.prefix)));
        }
        if let Some(d) = req.delimiter.as_deref().filter(|d| !d.is_empty()) {
            q.push_str(&format!("&delimiter={}", encode_query(d)));
        }
        if let Some(t) = &req.continuation_token {
            q.push_str(&format!("&pageToken={}", encode_query(t)));
        } else if let Some(s) = &req.start_after {
            // startOffset is inclusive; start_after is not (the key itself is dropped).
            q.push_str(&format!("&startOffset={}", encode_query(s)));
        }
        let page: Objects = match self.json(Method::GET, &q, None).await {
            Err(e) if e.status() == Some(404) => return Err(e.with_kind(ErrorKind::BucketNotFound)),
            r => r?,
        };
        let after = req
            .start_after
            .as_deref()
            .filter(|_| req.continuation_token.is_none());
        let objects = page
            .items
            .into_iter()
            .filter(|o| !o.name.starts_with(UPLOADS_PREFIX) && Some(o.name.as_str()) != after)
            .map(|o| o.info(bucket))
            .collect();
        let common_prefixes = page
            .prefixes
            .into_iter()
            .filter(|p| !p.starts_with(UPLOADS_PREFIX))
            .collect();
        Ok(ListPage {
            objects,
            common_prefixes,
            next_continuation_token: page.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        replace: Option<&UploadOptions>,
    ) -> Result<Option<String>> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct Rewrite {
            done: bool,
            rewrite_token: Option<String>,
            resource: Option<Object>,
        }
        let base = format!(
            "{}/rewriteTo/b/{dst_bucket}/o/{}",
            Self::object_path(src_bucket, src_key),
            encode_query(dst_key)
        );
        let body = replace.map(|o| resource(dst_key, o));
        let mut token: Option<String> = None;
        // A rewrite of a large object across locations or classes takes several calls.
        loop {
            let q = match &token {
                Some(t) => format!("{base}?rewriteToken={}", encode_query(t)),
                None => base.clone(),
            };
            let r: Rewrite = match self
                // No body: the copy keeps the source's metadata.
                .json(Method::POST, &q, body.clone())
                .await
            {
                Err(e) if e.status() == Some(404) => {
                    let e = self
                        .missing(self.not_found(e, src_bucket), src_bucket)
                        .await;
                    return Err(if e.kind() == ErrorKind::KeyNotFound {
                        self.missing(e, dst_bucket).await
                    } else {
                        e
                    });
                }
                r => r?,
            };
            if r.done {
                return Ok(r.resource.and_then(|o| o.generation));
            }
            token = r.rewrite_token;
            if token.is_none() {
                return Err(Error::new(
                    ErrorKind::Other,
                    "GCS answered a rewrite with neither done nor a rewrite token",
                ));
            }
        }
    }

    async fn presign(&self, bucket: &str, key: &str, opts: &PresignOptions) -> Result<String> {
        self.presign_at(bucket, key, opts, SystemTime::now())
    }
}

#[async_trait]
impl Multipart for GcsBackend {
    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: &UploadOptions,
        _checksum: Option<ChecksumAlgorithm>,
    ) -> Result<String> {
        let id = hex::encode(rand::random::<[u8; 12]>());
        let marker = UploadOptions::default().metadata(PART_KEY, key);
        let empty = Body::Bytes(Bytes::new());
        if let Err(e) = self
            .insert(bucket, &Self::marker_name(&id), empty, &marker)
            .await
        {
            return Err(self.missing(e, bucket).await);
        }
        let mut kept = opts.clone();
        kept.progress = None;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), kept);
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
        _checksum: Option<ChecksumAlgorithm>,
    ) -> Result<CompletedPart> {
        if self.was_aborted(upload_id) {
            return Err(no_upload());
        }
        let opts = UploadOptions::default().metadata(PART_KEY, key);
        let name = Self::part_name(upload_id, part_number);
        // In a task of its own, which the upload's abort waits for: a part whose
        // request was sent when the transfer was dropped (another part failed)
        // would otherwise be stored after the abort listed the parts. (Stopping it
        // would not do: the server may store a request it has whole.)
        let me = GcsBackend {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            auth: self.auth.clone(),
            pending: Default::default(),
            aborted: self.aborted.clone(),
            inflight: Default::default(),
        };
        let lock = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(upload_id.to_owned())
            .or_default()
            .clone();
        let guard = lock.read_owned().await;
        let (bucket, id) = (bucket.to_owned(), upload_id.to_owned());
        let obj = tokio::spawn(async move {
            let _running = guard;
            let obj = me.insert(&bucket, &name, body, &opts).await?;
            if me.was_aborted(&id) {
                let _ = me.delete_all(&bucket, &[name]).await;
                return Err(no_upload());
            }
            Ok(obj)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Other, format!("a part upload task failed: {e}")))??;
        Ok(CompletedPart {
            part_number,
            etag: obj.generation.unwrap_or_default(),
            checksum: None,
        })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        _checksum: Option<&Checksum>,
    ) -> Result<Option<String>> {
        let opts = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(upload_id)
            .cloned()
            .ok_or_else(no_upload)?;
        // Aborted by another process (its `stor cleanup`): the marker is gone.
        if let Err(e) = self.object(bucket, &Self::marker_name(upload_id)).await {
            return Err(match e.status() {
                Some(404) => no_upload(),
                _ => e,
            });
        }
        // A part removed or replaced under a compose: the upload was aborted.
        let gone = |e: Error| match e.status() {
            Some(404 | 412) => no_upload(),
            _ => e,
        };
        // Sources as (name, generation); composed 32 at a time into intermediate
        // objects until one compose makes the object.
        let mut sources: Vec<(String, String)> = parts
            .iter()
            .map(|p| (Self::part_name(upload_id, p.part_number), p.etag.clone()))
            .collect();
        let mut level = 0;
        while sources.len() > COMPOSE_MAX {
            level += 1;
            let mut next = Vec::new();
            for (i, group) in sources.chunks(COMPOSE_MAX).enumerate() {
                let name = format!("{UPLOADS_PREFIX}{upload_id}/c{level}-{i:05}");
                let dest = UploadOptions::default().metadata(PART_KEY, key);
                let obj = self
                    .compose(bucket, &name, group, &dest)
                    .await
                    .map_err(gone)?;
                next.push((name, obj.generation.unwrap_or_default()));
            }
            sources = next;
        }
        let obj = self
            .compose(bucket, key, &sources, &opts)
            .await
            .map_err(gone)?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(upload_id);
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(upload_id);
        let _ = self.remove_parts(bucket, upload_id).await;
        Ok(obj.generation)
    }

    async fn abort_multipart(&self, bucket: &str, _key: &str, upload_id: &str) -> Result<()> {
        self.aborted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(upload_id.to_owned());
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(upload_id);
        let running = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(upload_id)
            .unwrap_or_default();
        let _all_ended = running.write().await;
        self.remove_parts(bucket, upload_id).await
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>> {
        let mut uploads: BTreeMap<String, PendingUpload> = BTreeMap::new();
        for o in self.list_prefix(bucket, UPLOADS_PREFIX).await? {
            let Some(id) = o.name[UPLOADS_PREFIX.len()..].split('/').next() else {
                continue;
            };
            let key = o
                .metadata
                .as_ref()
                .and_then(|m| m.get(PART_KEY))
                .cloned()
                .unwrap_or_default();
            if !key.starts_with(prefix) {
                continue;
            }
            let t = o.time_created.as_deref().and_then(rest::parse_time);
            let e = uploads.entry(id.to_owned()).or_insert(PendingUpload {
                key,
                upload_id: id.to_owned(),
                initiated: t,
            });
            if let (Some(a), Some(b)) = (e.initiated, t) {
                e.initiated = Some(a.min(b));
            }
        }
        Ok(uploads.into_values().collect())
    }
}

/// As S3 says it, so the engine tells an upload someone aborted from a missing key.
fn no_upload() -> Error {
    Error::s3(
        Some("NoSuchUpload"),
        Some(404),
        Some("no such upload in progress (aborted or completed)"),
    )
}

impl GcsBackend {
    async fn compose(
        &self,
        bucket: &str,
        key: &str,
        sources: &[(String, String)],
        opts: &UploadOptions,
    ) -> Result<Object> {
        let src: Vec<_> = sources
            .iter()
            .map(|(name, generation)| {
                json!({ "name": name, "objectPreconditions": { "ifGenerationMatch": generation } })
            })
            .collect();
        let body = json!({ "destination": resource(key, opts), "sourceObjects": src });
        self.json(
            Method::POST,
            &format!("{}/compose", Self::object_path(bucket, key)),
            Some(body),
        )
        .await
    }

    /// Every object under `prefix`, with its metadata.
    async fn list_prefix(&self, bucket: &str, prefix: &str) -> Result<Vec<Object>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("/storage/v1/b/{bucket}/o?prefix={}", encode_query(prefix));
            if let Some(t) = &token {
                q.push_str(&format!("&pageToken={}", encode_query(t)));
            }
            let page: Objects = self.json(Method::GET, &q, None).await?;
            out.extend(page.items);
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}
