//! AWS S3 and S3-compatible engines (MinIO, Ceph, SeaweedFS, R2, Garage) on the
//! official `aws-sdk-s3`.
//!
//! One [`aws_sdk_s3::Client`] — one connection pool — serves every bucket. The SDK's
//! own retries are turned off: stor has exactly one retry layer, in the service
//! (see `retry.rs`), which knows which errors can heal. For custom endpoints, request
//! checksums and response validation are "when required": the SDK's default CRC32
//! trailers double upload CPU and break several S3-compatible engines.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart as SdkPart, Delete, MetadataDirective,
    ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

mod client;
mod errors;
pub(crate) use errors::wire_failure;
// Header-safe metadata values, shared with the other HTTP stores.

mod http;
mod post;
mod presign;
mod tags;
mod versions;

use super::{
    Backend, Body, Capabilities, CompletedPart, CopySource, FileRange, GetResponse, Multipart,
    PartCopySource, PendingUpload, StoredPart, Tagging, Versions,
};
use crate::checksum::{Checksum, ChecksumAlgorithm as StorAlgo};
use crate::config::{StorageConfig, DEFAULT_REGION};
use crate::credentials;
use crate::error::{Error, ErrorKind, Result, Wire};
use crate::post::{PostKey, PresignPostOptions, PresignedPost};
use crate::types::{
    ByteRange, DeleteResult, Encryption, ListOptions, ListPage, ObjectInfo, PresignMethod,
    PresignOptions, UploadOptions, WriteCondition,
};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::types::{ChecksumAlgorithm as SdkAlgo, ChecksumMode, ChecksumType};
use client::ClockSkew;
use errors::{chain, sdk_err};
use presign::{Creds, Endpoint, Presigner};

/// The S3 backend.
pub struct S3Backend {
    client: Client,
    endpoint: Option<String>,
    region: String,
    /// Fast presigning for the endpoint layouts it knows; the SDK otherwise.
    presigner: Option<Presigner>,
    credentials: Option<SharedCredentialsProvider>,
    /// The same credentials, with where they came from (`Backend::credentials`).
    sources: credentials::Sources,
    cached_creds: std::sync::Mutex<Option<std::sync::Arc<Creds>>>,
    skew: ClockSkew,
    /// Send stor's checksums in S3's own headers too (`native_checksums`).
    native: bool,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish()
    }
}

/// The first of an object's S3-native checksums that covers its whole content.
/// A COMPOSITE checksum (or a part-level value, `…-N`) is a checksum of the parts'
/// checksums and cannot be checked against the bytes without the part layout.
fn full_object_checksum<const N: usize>(
    kind: Option<&ChecksumType>,
    values: [(StorAlgo, Option<&str>); N],
) -> Option<(StorAlgo, String)> {
    if kind == Some(&ChecksumType::Composite) {
        return None;
    }
    let (algo, value) = values.into_iter().find_map(|(a, v)| Some((a, v?)))?;
    if value.contains('-') {
        return None;
    }
    if !algo.fits(value) {
        // Not a checksum of that algorithm (moto 5 sends a 32-byte value as
        // CRC64NVME for multipart uploads): nothing to verify against.
        tracing::warn!(
            algorithm = algo.name(),
            value,
            "the server sent a malformed checksum; not verifying against it"
        );
        return None;
    }
    Some((algo, value.trim().to_owned()))
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn to_time(t: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

// Header values must be ASCII on the wire. Non-ASCII metadata values are sent as
// RFC 2047 encoded words (as AWS documents) and decoded on the way back, so any
// value round-trips on every engine.
pub(crate) fn encode_meta_value(v: &str) -> String {
    if v.is_ascii() {
        v.to_owned()
    } else {
        format!("=?UTF-8?B?{}?=", aws_smithy_types::base64::encode(v))
    }
}

pub(crate) fn decode_meta_value(v: &str) -> String {
    if let Some(inner) = v
        .strip_prefix("=?UTF-8?B?")
        .and_then(|s| s.strip_suffix("?="))
    {
        if let Ok(bytes) = aws_smithy_types::base64::decode(inner) {
            if let Ok(s) = String::from_utf8(bytes) {
                return s;
            }
        }
    }
    v.to_owned()
}

fn decode_metadata(
    m: Option<&std::collections::HashMap<String, String>>,
) -> BTreeMap<String, String> {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), decode_meta_value(v)))
            .collect()
    })
    .unwrap_or_default()
}

// Everything but unreserved characters and '/' is escaped in x-amz-copy-source.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn copy_source(bucket: &str, key: &str) -> String {
    format!("{}/{}", bucket, utf8_percent_encode(key, COPY_SOURCE))
}

/// A key as a listing sent it: decoded when the server says it URL-encoded keys
/// (form encoding, as S3 writes it: `+` is a space, `%2B` a plus).
fn listed_key(encoded: bool, k: Option<&str>) -> Result<String> {
    let k = k.unwrap_or_default();
    if !encoded {
        return Ok(k.to_owned());
    }
    percent_encoding::percent_decode_str(&k.replace('+', " "))
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            Error::new(
                ErrorKind::Other,
                format!("the server listed a key that is not UTF-8: {k:?}"),
            )
        })
}

/// `x-amz-copy-source` of an object, or of one version of it.
fn copy_source_of(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    match version_id {
        None => copy_source(bucket, key),
        Some(v) => format!(
            "{}?versionId={}",
            copy_source(bucket, key),
            utf8_percent_encode(v, NON_ALPHANUMERIC)
        ),
    }
}

/// Tags as `x-amz-tagging` carries them: a URL query, every byte but unreserved
/// ones escaped (spaces as `%20`, which every engine reads; `+` is ambiguous).
fn encode_tags(tags: &BTreeMap<String, String>) -> String {
    const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, ESCAPE),
                utf8_percent_encode(v, ESCAPE)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The S3 header value of a write condition: `If-None-Match: *` or `If-Match: "etag"`.
fn condition_header(c: &WriteCondition) -> (bool, String) {
    match c {
        WriteCondition::IfAbsent => (false, "*".to_owned()),
        WriteCondition::IfMatch(e) => (true, format!("\"{}\"", e.trim_matches('"'))),
    }
}

/// An HTTP body over a stream of known length ([`Body::Sized`]). The SDK wants a
/// `Sync` body; the stream is only `Send`, so it sits in a mutex that is never
/// contended (polling has `&mut self`).
struct SizedBody {
    stream: std::sync::Mutex<super::ByteStream>,
    left: u64,
}

impl http_body::Body for SizedBody {
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<bytes::Bytes>, Error>>> {
        use futures::StreamExt;
        let this = self.get_mut();
        let stream = this.stream.get_mut().unwrap_or_else(|p| p.into_inner());
        match std::task::ready!(stream.poll_next_unpin(cx)) {
            Some(Ok(b)) => {
                this.left = this.left.saturating_sub(b.len() as u64);
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(b))))
            }
            Some(Err(e)) => std::task::Poll::Ready(Some(Err(e))),
            None => std::task::Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// The failure a file body's checks ended it with, if any: the SDK reports it as a
/// dispatch failure (retryable), but a source that changed must not be retried.
fn body_failure(body: &Body) -> impl Fn() -> Option<Error> {
    let range = match body {
        Body::File(r) => Some(r.clone()),
        _ => None,
    };
    move || range.as_ref().and_then(FileRange::failure)
}

async fn to_sdk_stream(body: Body) -> Result<SdkStream> {
    match body {
        Body::Bytes(b) => Ok(SdkStream::from(b)),
        // Checked before its last byte (see FileRange): a source that changed
        // ends the body with an error, so the server never gets the whole of it.
        Body::File(r) => Ok(SdkStream::from_body_1_x(r.body())),
        Body::Sized(stream, left) => Ok(SdkStream::from_body_1_x(SizedBody {
            stream: std::sync::Mutex::new(stream),
            left,
        })),
        Body::Stream(_) => Err(Error::new(
            ErrorKind::Unsupported,
            "S3 needs a known length per request; stream bodies go through multipart",
        )),
    }
}

/// Applies upload options to a PutObject / CreateMultipartUpload / CopyObject builder.
macro_rules! apply_upload_opts {
    ($req:expr, $opts:expr) => {{
        let o: &UploadOptions = $opts;
        let mut r = $req;
        if let Some(ct) = &o.content_type {
            r = r.content_type(ct);
        }
        for (k, v) in &o.metadata {
            r = r.metadata(k, encode_meta_value(v));
        }
        if let Some(v) = &o.cache_control {
            r = r.cache_control(v);
        }
        if let Some(v) = &o.content_disposition {
            r = r.content_disposition(v);
        }
        if let Some(v) = &o.content_encoding {
            r = r.content_encoding(v);
        }
        if let Some(v) = &o.storage_class {
            r = r.storage_class(StorageClass::from(v.as_str()));
        }
        match &o.encryption {
            Some(Encryption::Aes256) => {
                r = r.server_side_encryption(ServerSideEncryption::Aes256);
            }
            Some(Encryption::Kms { key_id }) => {
                r = r.server_side_encryption(ServerSideEncryption::AwsKms);
                if let Some(k) = key_id {
                    r = r.ssekms_key_id(k);
                }
            }
            None => {}
        }
        if !o.tags.is_empty() {
            r = r.tagging(encode_tags(&o.tags));
        }
        r
    }};
}

impl S3Backend {
    /// A GET of the object, or of one version of it.
    pub(super) async fn get(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse> {
        let mut req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned));
        if let Some(r) = range {
            if r.end <= r.start {
                return Err(Error::invalid(format!(
                    "empty range {}..{}",
                    r.start, r.end
                )));
            }
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        if let Some(m) = if_match {
            req = req.if_match(format!("\"{m}\""));
        }
        let out = if self.native && range.is_none() {
            // Ask for the stored checksum by header rather than the `checksum_mode`
            // field: the field also makes the SDK validate the body, a second CRC of
            // every byte whose mismatch surfaces as an untyped body error; stor
            // verifies it itself (transfer.rs: fetch_object, verified_stream).
            req.customize()
                .mutate_request(|r| {
                    r.headers_mut().insert("x-amz-checksum-mode", "ENABLED");
                })
                .send()
                .await
        } else {
            req.send().await
        }
        .map_err(|e| version_refused(sdk_err(e), key, version_id))?;
        let checksum = if self.native && range.is_none() {
            full_object_checksum(
                out.checksum_type(),
                [
                    (StorAlgo::Crc64nvme, out.checksum_crc64_nvme()),
                    (StorAlgo::Crc32c, out.checksum_crc32_c()),
                    (StorAlgo::Crc32, out.checksum_crc32()),
                ],
            )
        } else {
            None
        };
        let content_length = out.content_length().unwrap_or(0).max(0) as u64;
        // The whole object's size: from Content-Range on ranged reads.
        let size = out
            .content_range()
            .and_then(|cr| cr.rsplit('/').next())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(content_length);
        let mut info = ObjectInfo::new(bucket, key, size);
        info.etag = out.e_tag().map(unquote);
        info.version_id = out.version_id().map(str::to_owned);
        check_version(key, version_id, info.version_id.as_deref())?;
        info.last_modified = to_time(out.last_modified());
        info.content_type = out.content_type().map(str::to_owned);
        info.metadata = decode_metadata(out.metadata());
        info.storage_class = out.storage_class().map(|s| s.as_str().to_owned());
        info.cache_control = out.cache_control().map(str::to_owned);
        info.content_disposition = out.content_disposition().map(str::to_owned);
        info.content_encoding = out.content_encoding().map(str::to_owned);
        let body = out.body;
        let stream = futures::stream::unfold(body, |mut body| async move {
            match body.next().await {
                None => None,
                Some(Ok(b)) => Some((Ok(b), body)),
                Some(Err(e)) => Some((
                    Err(Error::new(
                        ErrorKind::Transient,
                        format!("the download was interrupted: {}", chain(&e)),
                    )
                    .with_wire(Wire::Broken)),
                    body,
                )),
            }
        });
        Ok(GetResponse {
            info,
            checksum,
            content_length,
            body: Box::pin(stream),
        })
    }

    /// A HEAD of the object, or of one version of it.
    pub(super) async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectInfo> {
        let out = match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let e = sdk_err(e);
                // HEAD answers carry no body: tell a missing bucket from a missing key.
                if e.status() == Some(404) && !self.bucket_exists(bucket).await.unwrap_or(true) {
                    return Err(e.with_kind(ErrorKind::BucketNotFound));
                }
                return Err(version_refused(e, key, version_id));
            }
        };
        let mut info =
            ObjectInfo::new(bucket, key, out.content_length().unwrap_or(0).max(0) as u64);
        info.etag = out.e_tag().map(unquote);
        info.version_id = out.version_id().map(str::to_owned);
        check_version(key, version_id, info.version_id.as_deref())?;
        info.last_modified = to_time(out.last_modified());
        info.content_type = out.content_type().map(str::to_owned);
        info.metadata = decode_metadata(out.metadata());
        info.storage_class = Some(
            out.storage_class()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "STANDARD".into()),
        );
        info.cache_control = out.cache_control().map(str::to_owned);
        info.content_disposition = out.content_disposition().map(str::to_owned);
        info.content_encoding = out.content_encoding().map(str::to_owned);
        Ok(info)
    }
}

/// Says which version a refused read of one version named: a delete marker
/// answers 405 (AWS, moto), an id the engine cannot place 400 (moto) or 404.
fn version_refused(e: Error, key: &str, version: Option<&str>) -> Error {
    let Some(v) = version else { return e };
    match e.status() {
        Some(405) => e
            .with_kind(ErrorKind::KeyNotFound)
            .prefixed(&format!("version {v} of {key} is a delete marker")),
        Some(400 | 404) => e.prefixed(&format!("{key} has no version {v}")),
        _ => e,
    }
}

/// Checks that an answer is of the version asked for: engines ignore the version id
/// on a bucket that was never versioned (SeaweedFS) and answer with the current
/// object. An unversioned object is version `null` (no version id in the answer).
fn check_version(key: &str, asked: Option<&str>, got: Option<&str>) -> Result<()> {
    let Some(asked) = asked else { return Ok(()) };
    if got == Some(asked) || (asked == "null" && got.is_none()) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::KeyNotFound,
        format!(
            "{key} has no version {asked} (the store answered with {}); \
             `stor ls --all-versions` lists the versions there are",
            match got {
                Some(v) => format!("version {v}"),
                None => "the current, unversioned object".into(),
            }
        ),
    ))
}

#[async_trait]
impl Backend for S3Backend {
    fn scheme(&self) -> &'static str {
        "s3"
    }

    fn clock_skew(&self) -> Option<f64> {
        *self.skew.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn endpoint_url(&self) -> Option<String> {
        self.endpoint.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            multipart: true,
            part_copy: true,
            parallel_ranges: true,
            streaming_bodies: false,
            presign: true,
            native_checksums: self.native,
            conditional_reads: true,
            versioning: true,
            conditional_writes: true,
            tags: true,
            presign_post: self.presigner.is_some(),
            names: crate::validate::NameRules::S3,
            listed_uploads: true,
        }
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    fn versions(&self) -> Option<&dyn Versions> {
        Some(self)
    }

    fn tagging(&self) -> Option<&dyn Tagging> {
        Some(self)
    }

    async fn presign_post(
        &self,
        bucket: &str,
        key: &PostKey,
        opts: &PresignPostOptions,
    ) -> Result<PresignedPost> {
        self.presign_post_at(bucket, key, opts, SystemTime::now())
            .await
    }

    async fn credentials(&self) -> Result<Option<String>> {
        match self.sources.resolve().await {
            Ok((_, from)) => Ok(Some(from.to_string())),
            Err(e) => Err(credentials::from_chain(&e)
                .unwrap_or_else(|| Error::new(ErrorKind::Config, e.to_string()))),
        }
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let mut req = self.client.create_bucket().bucket(bucket);
        // us-east-1 takes no location constraint; everywhere else needs one on AWS.
        if self.endpoint.is_none() && self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        self.region.as_str(),
                    ))
                    .build(),
            );
        }
        req.send().await.map_err(sdk_err)?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| match sdk_err(e) {
                e if e.status() == Some(404) && e.code().is_none() => {
                    e.with_kind(ErrorKind::BucketNotFound)
                }
                e => e,
            })?;
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = sdk_err(e);
                if e.status() == Some(404) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn list_buckets(&self) -> Result<Vec<String>> {
        let out = self.client.list_buckets().send().await.map_err(sdk_err)?;
        let mut names: Vec<String> = out
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .collect();
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
        let len = body.len();
        let failed = body_failure(&body);
        let stream = to_sdk_stream(body).await?;
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(stream);
        if let Some(len) = len {
            req = req.content_length(len as i64);
        }
        let mut req = apply_upload_opts!(req, opts);
        req = match opts.condition.as_ref().map(condition_header) {
            Some((true, etag)) => req.if_match(etag),
            Some((false, any)) => req.if_none_match(any),
            None => req,
        };
        if self.native {
            if let Some((algo, value)) = crate::checksum::stored_in(&opts.metadata) {
                req = match algo {
                    StorAlgo::Crc64nvme => req.checksum_crc64_nvme(value),
                    StorAlgo::Crc32c => req.checksum_crc32_c(value),
                    StorAlgo::Crc32 => req.checksum_crc32(value),
                    StorAlgo::None => req,
                };
            }
        }
        // Payload signing hashes the whole body with SHA-256 before sending (no
        // SHA-NI here: ~0.4 s of CPU per 64 MB). Bodies read from files already go
        // unsigned (the SDK's choice for streams); in-memory ones now do too.
        // Integrity in transit: TLS, the native checksum header where that is on
        // (the default on AWS), and on any engine the stor CRC verified by every
        // download.
        let out = req
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| failed().unwrap_or_else(|| sdk_err(e)))?;
        Ok(out.e_tag().map(unquote))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse> {
        self.get(bucket, key, None, range, if_match).await
    }

    async fn native_checksum(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Option<(StorAlgo, String)>> {
        if !self.native {
            return Ok(None);
        }
        let mut req = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled);
        if let Some(m) = etag {
            req = req.if_match(format!("\"{m}\""));
        }
        let out = req.send().await.map_err(sdk_err)?;
        Ok(full_object_checksum(
            out.checksum_type(),
            [
                (StorAlgo::Crc64nvme, out.checksum_crc64_nvme()),
                (StorAlgo::Crc32c, out.checksum_crc32_c()),
                (StorAlgo::Crc32, out.checksum_crc32()),
            ],
        ))
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        self.head(bucket, key, None).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<DeleteResult>> {
        // A key holding a control character cannot travel in the XML body of a
        // batch delete (XML 1.0 has no way to write it; servers answer 400 or 500):
        // a batch holding one goes key by key.
        if keys.iter().any(|k| k.chars().any(char::is_control)) {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let error = match self.delete_object(bucket, k).await {
                    Ok(()) => None,
                    Err(e) if e.kind() == ErrorKind::BucketNotFound => return Err(e),
                    Err(e) => Some(e.to_string()),
                };
                out.push(DeleteResult {
                    key: k.clone(),
                    error,
                });
            }
            return Ok(out);
        }
        let ids = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid(format!("building the delete request: {e}")))?;
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| Error::invalid(format!("building the delete request: {e}")))?;
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(sdk_err)?;
        let mut failed: BTreeMap<&str, String> = BTreeMap::new();
        for e in out.errors() {
            if let Some(k) = e.key() {
                failed.insert(
                    k,
                    format!(
                        "{}: {}",
                        e.code().unwrap_or("Error"),
                        e.message().unwrap_or("not deleted")
                    ),
                );
            }
        }
        Ok(keys
            .iter()
            .map(|k| DeleteResult {
                key: k.clone(),
                error: failed.get(k.as_str()).cloned(),
            })
            .collect())
    }

    async fn list_objects(&self, bucket: &str, req: &ListOptions) -> Result<ListPage> {
        let (prefix, delimiter) = (req.prefix.as_str(), req.delimiter.as_deref());
        let max_keys = req.max_keys.unwrap_or(1000);
        let (continuation, start_after) = (
            req.continuation_token.as_deref(),
            req.start_after.as_deref(),
        );
        // Keys come back percent-encoded: XML 1.0 cannot carry control characters,
        // so without it a key holding ESC or BEL comes back mangled (SeaweedFS
        // sends U+FFFD) or breaks the response (moto).
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .max_keys(max_keys as i32);
        if !prefix.is_empty() {
            req = req.prefix(prefix);
        }
        if let Some(d) = delimiter {
            req = req.delimiter(d);
        }
        if let Some(c) = continuation {
            req = req.continuation_token(c);
        }
        if let Some(s) = start_after {
            req = req.start_after(s);
        }
        let out = req.send().await.map_err(sdk_err)?;
        // Decoded only when the server says it encoded (an engine that ignores the
        // request sends keys as they are, `%` included).
        let encoded = out.encoding_type() == Some(&aws_sdk_s3::types::EncodingType::Url);
        let key = |k: Option<&str>| listed_key(encoded, k);
        let objects = out
            .contents()
            .iter()
            .map(|o| {
                let mut info =
                    ObjectInfo::new(bucket, &key(o.key())?, o.size().unwrap_or(0).max(0) as u64);
                info.etag = o.e_tag().map(unquote);
                info.last_modified = to_time(o.last_modified());
                info.storage_class = o.storage_class().map(|s| s.as_str().to_owned());
                Ok(info)
            })
            .collect::<Result<_>>()?;
        let common_prefixes = out
            .common_prefixes()
            .iter()
            .filter(|p| p.prefix().is_some())
            .map(|p| key(p.prefix()))
            .collect::<Result<_>>()?;
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next_continuation_token: next,
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
        let src = CopySource::current(src_bucket, src_key);
        self.copy_object_with(&src, dst_bucket, dst_key, replace, None)
            .await
    }

    async fn copy_object_with(
        &self,
        src: &CopySource<'_>,
        dst_bucket: &str,
        dst_key: &str,
        replace: Option<&UploadOptions>,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<String>> {
        let mut req = self
            .client
            .copy_object()
            .copy_source(copy_source_of(src.bucket, src.key, src.version_id))
            .bucket(dst_bucket)
            .key(dst_key);
        if let Some(opts) = replace {
            // Headers, metadata and tags are replaced together, like metadata.
            req = req
                .metadata_directive(MetadataDirective::Replace)
                .tagging_directive(aws_sdk_s3::types::TaggingDirective::Replace);
            req = apply_upload_opts!(req, opts);
        }
        req = match condition.map(condition_header) {
            Some((true, etag)) => req.if_match(etag),
            Some((false, any)) => req.if_none_match(any),
            None => req,
        };
        let out = req.send().await.map_err(sdk_err)?;
        Ok(out
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .map(unquote))
    }

    async fn presign(&self, bucket: &str, key: &str, opts: &PresignOptions) -> Result<String> {
        self.presign_at(bucket, key, opts, SystemTime::now(), false)
            .await
    }
}

#[async_trait]
impl Multipart for S3Backend {
    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: &UploadOptions,
        checksum: Option<StorAlgo>,
    ) -> Result<String> {
        let req = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key);
        let mut req = apply_upload_opts!(req, opts);
        if let Some(algo) = self.native_algo(checksum) {
            req = req
                .checksum_algorithm(algo)
                .checksum_type(ChecksumType::FullObject);
        }
        let out = req.send().await.map_err(sdk_err)?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::new(ErrorKind::Other, "the server returned no upload id"))
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
        checksum: Option<StorAlgo>,
    ) -> Result<CompletedPart> {
        let len = body.len();
        let failed = body_failure(&body);
        let stream = to_sdk_stream(body).await?;
        let mut req = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(stream);
        if let Some(len) = len {
            req = req.content_length(len as i64);
        }
        let native = self.native_algo(checksum);
        if let Some(algo) = &native {
            // The SDK checksums the part as it streams (a trailer for file parts).
            req = req.checksum_algorithm(algo.clone());
        }
        // Unsigned like put_object's body (see there).
        let out = req
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| failed().unwrap_or_else(|| sdk_err(e)))?;
        let etag = out
            .e_tag()
            .map(str::to_owned)
            .ok_or_else(|| Error::new(ErrorKind::Other, "the server returned no part ETag"))?;
        let checksum = match native {
            Some(SdkAlgo::Crc64Nvme) => out.checksum_crc64_nvme(),
            Some(SdkAlgo::Crc32C) => out.checksum_crc32_c(),
            Some(SdkAlgo::Crc32) => out.checksum_crc32(),
            _ => None,
        };
        Ok(CompletedPart {
            part_number,
            etag,
            checksum: checksum.map(str::to_owned),
        })
    }

    async fn upload_part_copy(
        &self,
        src: &PartCopySource<'_>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
    ) -> Result<String> {
        let mut req = self
            .client
            .upload_part_copy()
            .copy_source(copy_source_of(src.bucket, src.key, src.version_id))
            .copy_source_range(format!("bytes={}-{}", src.range.start, src.range.end - 1))
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number);
        if let Some(etag) = src.etag {
            req = req.copy_source_if_match(format!("\"{etag}\""));
        }
        let out = req.send().await.map_err(sdk_err)?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned)
            .ok_or_else(|| Error::new(ErrorKind::Other, "the server returned no part ETag"))
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
    ) -> Result<Option<String>> {
        self.complete_multipart_if(bucket, key, upload_id, parts, checksum, None)
            .await
    }

    async fn complete_multipart_if(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<String>> {
        let native = self.native_algo(checksum.map(|c| c.algorithm));
        let parts = parts
            .iter()
            .map(|p| {
                let b = SdkPart::builder().part_number(p.part_number).e_tag(&p.etag);
                match (&native, &p.checksum) {
                    (Some(SdkAlgo::Crc64Nvme), Some(c)) => b.checksum_crc64_nvme(c),
                    (Some(SdkAlgo::Crc32C), Some(c)) => b.checksum_crc32_c(c),
                    (Some(SdkAlgo::Crc32), Some(c)) => b.checksum_crc32(c),
                    _ => b,
                }
                .build()
            })
            .collect();
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if let (Some(algo), Some(c)) = (&native, checksum) {
            // The server checks the whole object against it and keeps it.
            req = req.checksum_type(ChecksumType::FullObject);
            req = match algo {
                SdkAlgo::Crc64Nvme => req.checksum_crc64_nvme(c.encoded()),
                SdkAlgo::Crc32 => req.checksum_crc32(c.encoded()),
                _ => req.checksum_crc32_c(c.encoded()),
            };
        }
        req = match condition.map(condition_header) {
            Some((true, etag)) => req.if_match(etag),
            Some((false, any)) => req.if_none_match(any),
            None => req,
        };
        let out = req.send().await.map_err(sdk_err)?;
        Ok(out.e_tag().map(unquote))
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_err(e);
                // Already gone is what we wanted.
                if e.code() == Some("NoSuchUpload") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let mut req = self.client.list_multipart_uploads().bucket(bucket);
            if !prefix.is_empty() {
                req = req.prefix(prefix);
            }
            if let Some(k) = &key_marker {
                req = req.key_marker(k);
            }
            if let Some(i) = &id_marker {
                req = req.upload_id_marker(i);
            }
            let page = req.send().await.map_err(sdk_err)?;
            for u in page.uploads() {
                out.push(PendingUpload {
                    key: u.key().unwrap_or_default().to_owned(),
                    upload_id: u.upload_id().unwrap_or_default().to_owned(),
                    initiated: to_time(u.initiated()),
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(out);
            }
        }
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_parts()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id);
            if let Some(m) = &marker {
                req = req.part_number_marker(m);
            }
            let page = req.send().await.map_err(sdk_err)?;
            for p in page.parts() {
                out.push(StoredPart {
                    part_number: p.part_number().unwrap_or_default(),
                    etag: p.e_tag().map(unquote).unwrap_or_default(),
                    size: p.size().unwrap_or_default().max(0) as u64,
                });
            }
            marker = page.next_part_number_marker().map(str::to_owned);
            if page.is_truncated() != Some(true) || marker.is_none() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose credentials cannot be resolved fails as a config error that
    /// names where stor looked: stor's words survive the SDK's identity resolution,
    /// and the kind is one the retry layer leaves alone.
    #[tokio::test]
    async fn missing_credentials_come_out_of_the_sdk_as_a_config_error() {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(credentials::Sources::nowhere())
            .build();
        let e = Client::from_conf(conf)
            .list_buckets()
            .send()
            .await
            .map_err(sdk_err)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(!e.is_retryable());
        assert!(
            e.message()
                .contains("no credentials found (looked in: config file t.json, nowhere)"),
            "{e}"
        );
    }

    #[test]
    fn metadata_values_round_trip_through_ascii_headers() {
        for v in ["plain", "한국어 뉴스", "emoji 🚀", ""] {
            let enc = encode_meta_value(v);
            assert!(enc.is_ascii());
            assert_eq!(decode_meta_value(&enc), v);
        }
    }

    /// How `sdk_err` classifies real network failures, on local sockets: only a
    /// connection that could not be made is "unreachable"; one that existed and
    /// broke is not.
    #[tokio::test]
    async fn failures_to_connect_are_told_from_broken_connections() {
        let head = |url: String| async move {
            let mut cfg = StorageConfig {
                endpoint_url: Some(url),
                connect_timeout: 1,
                ..StorageConfig::s3()
            };
            cfg.aws_access_key_id = Some("AKIDEXAMPLE".into());
            cfg.aws_secret_access_key = Some("secret".into());
            cfg.region_name = Some("us-east-1".into());
            let be = S3Backend::new(&cfg).await.unwrap();
            be.bucket_exists("b").await.unwrap_err()
        };
        // Refused: a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = head(format!("http://127.0.0.1:{port}")).await;
        assert_eq!(
            e.wire(),
            Some(Wire::Unreachable("connection refused")),
            "{e}"
        );
        assert!(
            e.is_unreachable() && e.kind() == ErrorKind::Transient,
            "{e}"
        );
        assert!(
            e.message()
                .starts_with("cannot connect (connection refused)"),
            "{e}"
        );
        // No such host.
        let e = head("http://stor-no-such-host.invalid:9000".into()).await;
        assert_eq!(
            e.wire(),
            Some(Wire::Unreachable("DNS lookup failed")),
            "{e}"
        );
        // Connect timeout: a listener whose accept queue is full drops the SYN.
        let full = full_listener();
        let e = head(format!("http://127.0.0.1:{}", full.port)).await;
        assert_eq!(
            e.wire(),
            Some(Wire::Unreachable("connect timed out")),
            "{e}"
        );
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        // Connected, then reset before any answer: broken, not unreachable.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        #[allow(deprecated)] // SO_LINGER 0 blocks nothing: close then sends a reset
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                let _ = c.set_linger(Some(Duration::ZERO));
                drop(c);
            }
        });
        let e = head(url).await;
        assert_eq!(e.wire(), Some(Wire::Broken), "{e}");
        assert!(!e.is_unreachable() && e.is_retryable(), "{e}");
        // Connected, the head read, then closed without an answer: broken too.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
            }
        });
        let e = head(url).await;
        assert_eq!(e.wire(), Some(Wire::Broken), "{e}");
    }

    /// A listening socket with a backlog of 0 whose queue is filled: further
    /// connects get no SYN-ACK, so they time out (the kernel drops the SYN).
    struct FullListener {
        port: u16,
        _fd: std::os::fd::OwnedFd,
        _queued: Vec<std::net::TcpStream>,
    }

    fn full_listener() -> FullListener {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain socket calls on a descriptor this function owns.
        let fd = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            std::os::fd::OwnedFd::from_raw_fd(fd)
        };
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: addr and len describe a valid sockaddr_in for this socket.
        unsafe {
            let sa = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(libc::bind(fd.as_raw_fd(), sa, len), 0);
            assert_eq!(libc::listen(fd.as_raw_fd(), 0), 0);
            assert_eq!(libc::getsockname(fd.as_raw_fd(), sa, &mut len), 0);
        }
        let port = u16::from_be(addr.sin_port);
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let queued = (0..2)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&target, Duration::from_millis(300)).ok()
            })
            .collect();
        FullListener {
            port,
            _fd: fd,
            _queued: queued,
        }
    }

    async fn backend(
        endpoint: Option<&str>,
        region: &str,
        token: Option<&str>,
        path_style: Option<bool>,
    ) -> S3Backend {
        let cfg = StorageConfig {
            endpoint_url: endpoint.map(str::to_owned),
            aws_access_key_id: Some("AKIDEXAMPLE".into()),
            aws_secret_access_key: Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            aws_session_token: token.map(Into::into),
            region_name: Some(region.into()),
            force_path_style: path_style,
            ..StorageConfig::s3()
        };
        S3Backend::new(&cfg).await.unwrap()
    }

    /// The fast presigner's URLs are byte-identical to the SDK's for the same inputs:
    /// path-style and virtual-hosted endpoints, AWS regions, session tokens, GET and
    /// PUT with a pinned Content-Type, awkward keys, several times of day.
    #[tokio::test]
    async fn fast_presign_matches_the_sdk_byte_for_byte() {
        let setups = [
            backend(Some("http://127.0.0.1:8500"), "us-east-1", None, None).await,
            backend(
                Some("https://minio.example.com"),
                "eu-central-1",
                Some("tok/en+="),
                None,
            )
            .await,
            backend(
                Some("http://localhost:9000"),
                "us-east-1",
                None,
                Some(false),
            )
            .await,
            backend(None, "ap-northeast-2", None, None).await,
            backend(
                None,
                "us-east-1",
                Some("FQoGZXIvYXdzE//token=="),
                Some(true),
            )
            .await,
        ];
        let keys = [
            "k",
            "a b/c%d/é~!*'()+=,;:@&$?#[]",
            "dir/",
            "유니코드/🚀.json",
            "x//y/../z",
            &"long/".repeat(150),
        ];
        let times = [1_795_000_000u64, 1_700_000_000, 1_800_003_599];
        let mut compared = 0;
        for be in &setups {
            assert!(be.presigner.is_some(), "{be:?} should take the fast path");
            for key in keys {
                for t in times {
                    for opts in [
                        PresignOptions::get(Duration::from_secs(3600)),
                        PresignOptions::get(Duration::from_secs(604_800)),
                        PresignOptions::put(Duration::from_secs(60)),
                        PresignOptions::put(Duration::from_secs(600))
                            .content_type("text/plain; charset=utf-8"),
                    ] {
                        let now = std::time::UNIX_EPOCH + Duration::from_secs(t);
                        let fast = be
                            .presign_at("my-bucket", key, &opts, now, false)
                            .await
                            .unwrap();
                        let sdk = be
                            .presign_at("my-bucket", key, &opts, now, true)
                            .await
                            .unwrap();
                        assert_eq!(fast, sdk, "{be:?} {key:?} {opts:?}");
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 5 * 6 * 3 * 4);
        // Dotted buckets on a virtual-hosted endpoint go through the SDK.
        let be = &setups[3];
        let url = be
            .presign("my.dotted.bucket", "k", &PresignOptions::default())
            .await
            .unwrap();
        assert!(url.contains("my.dotted.bucket"), "{url}");
    }

    #[test]
    fn copy_source_escapes_keys() {
        assert_eq!(copy_source("b", "a b/%c"), "b/a%20b/%25c");
        assert_eq!(copy_source("b", "é"), "b/%C3%A9");
    }
}
