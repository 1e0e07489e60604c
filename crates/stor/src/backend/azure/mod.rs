//! Azure Blob Storage over its REST API, spoken directly (see README, "Why GCS and
//! Azure are spoken directly"): plain HTTPS (`backend/rest.rs`), Shared Key or
//! SAS authentication (`client.rs`), SAS URLs (`presign.rs`).
//!
//! - Buckets are containers; objects are block blobs. Large uploads are blocks
//!   (Put Block, concurrently) committed by one Put Block List. Azure keeps
//!   uncommitted blocks for a week and then drops them by itself, and has no call
//!   to drop them sooner or to list them per upload: an abort forgets the upload,
//!   and there is nothing for `stor cleanup` to list.
//! - Deleting a container deletes its blobs on Azure; stor refuses a container
//!   that still holds one (as S3 refuses a bucket that is not empty).
//! - Metadata names must be C# identifiers on Azure: a name that is not one (stor's
//!   own `stor-crc64nvme`, any name with `-` or `.`) is stored as `storx_` and an
//!   escaped form, and read back as it was (`meta_name` / `meta_name_back`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt;
use http::Method;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

mod client;
mod errors;
mod presign;

use super::rest::{self, Http};
use super::s3::{decode_meta_value, encode_meta_value};
use super::{Backend, Body, Capabilities, CompletedPart, GetResponse, Multipart, PendingUpload};
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::types::{
    ByteRange, DeleteResult, ListOptions, ListPage, ObjectInfo, PresignOptions, UploadOptions,
};
use crate::validate::NameRules;
use client::{Creds, Req, Settings};

/// Escaped in paths: everything but unreserved characters and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// Escaped in query values: everything but unreserved characters.
const VALUE: &AsciiSet = &PATH.add(b'/');

fn encode_path(p: &str) -> String {
    utf8_percent_encode(p, PATH).to_string()
}

fn encode_value(v: &str) -> String {
    utf8_percent_encode(v, VALUE).to_string()
}

/// Names of metadata stored escaped start with this.
const ESCAPED: &str = "storx_";

/// A metadata name as Azure accepts it: a C# identifier as it is, anything else
/// (and identifiers that start with `storx_`) escaped behind `storx_`: `_` as `_u`,
/// `-` as `_d`, `.` as `_p`, any other byte as `_x` and two hex digits.
fn meta_name(name: &str) -> String {
    let ident = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident && !name.to_ascii_lowercase().starts_with(ESCAPED) {
        return name.to_owned();
    }
    let mut out = String::from(ESCAPED);
    for b in name.bytes() {
        match b {
            b'_' => out.push_str("_u"),
            b'-' => out.push_str("_d"),
            b'.' => out.push_str("_p"),
            b if b.is_ascii_alphanumeric() => out.push(b as char),
            b => out.push_str(&format!("_x{b:02x}")),
        }
    }
    out
}

/// The name [`meta_name`] escaped, as it was (lowercased, as S3 gives names back).
fn meta_name_back(stored: &str) -> String {
    let lower = stored.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix(ESCAPED) else {
        return lower;
    };
    let mut out = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' && i + 1 < b.len() {
            match b[i + 1] {
                b'u' => out.push(b'_'),
                b'd' => out.push(b'-'),
                b'p' => out.push(b'.'),
                b'x' if i + 3 < b.len() => {
                    if let Ok(v) = u8::from_str_radix(&rest[i + 2..i + 4], 16) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                    out.extend_from_slice(&b[i..i + 2]);
                }
                _ => out.extend_from_slice(&b[i..i + 2]),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or(lower)
}

/// The Azure backend.
pub struct AzureBackend {
    http: Http,
    account: String,
    endpoint: String,
    creds: Creds,
    from: String,
    /// Options of block uploads in progress in this process, by upload id: they
    /// apply when the block list is committed.
    pending: Mutex<HashMap<String, UploadOptions>>,
}

impl std::fmt::Debug for AzureBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBackend")
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The headers an upload sets (Put Blob, Put Block List, Set Blob Properties).
fn upload_headers(opts: &UploadOptions) -> Vec<(String, String)> {
    let mut h = Vec::new();
    let fields = [
        ("x-ms-blob-content-type", &opts.content_type),
        ("x-ms-blob-cache-control", &opts.cache_control),
        ("x-ms-blob-content-disposition", &opts.content_disposition),
        ("x-ms-blob-content-encoding", &opts.content_encoding),
        ("x-ms-access-tier", &opts.storage_class),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            h.push((k.to_owned(), v.clone()));
        }
    }
    for (k, v) in &opts.metadata {
        h.push((format!("x-ms-meta-{}", meta_name(k)), encode_meta_value(v)));
    }
    h
}

/// One entry of a listing.
#[derive(Default)]
struct Listed {
    blobs: Vec<ObjectInfo>,
    prefixes: Vec<String>,
    containers: Vec<String>,
    next_marker: Option<String>,
}

/// Reads an `EnumerationResults` document (blobs or containers).
fn parse_listing(bucket: &str, xml: &[u8]) -> Result<Listed> {
    use quick_xml::events::Event;
    let bad = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Other,
            format!("Azure sent a listing stor cannot read: {e}"),
        )
    };
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut encoded = false;
    let mut out = Listed::default();
    let mut blob: Option<ObjectInfo> = None;
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                encoded = e
                    .try_get_attribute("Encoded")
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.value.as_ref() == b"true");
                if name == "Blob" {
                    blob = Some(ObjectInfo::new(bucket, "", 0));
                }
                path.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| bad(&e))? {
                Some(c) => text.push(c),
                None => text.push_str(match r.decode().map_err(|e| bad(&e))?.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => return Err(bad(&format!("unknown entity &{other};"))),
                }),
            },
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str).unwrap_or("");
                let value = if encoded {
                    percent_encoding::percent_decode_str(&text)
                        .decode_utf8()
                        .map_err(|e| bad(&e))?
                        .into_owned()
                } else {
                    text.clone()
                };
                match (parent, name.as_str()) {
                    ("Blob", "Name") => {
                        if let Some(b) = blob.as_mut() {
                            b.key = value;
                        }
                    }
                    ("Properties", field) if blob.is_some() => {
                        let b = blob.as_mut().expect("inside a Blob");
                        match field {
                            "Content-Length" => b.size = value.parse().unwrap_or(0),
                            "Etag" => b.etag = Some(value.trim_matches('"').to_owned()),
                            "Last-Modified" => b.last_modified = rest::parse_time(&value),
                            "Content-Type" if !value.is_empty() => b.content_type = Some(value),
                            "AccessTier" => b.storage_class = Some(value),
                            _ => {}
                        }
                    }
                    (_, "Blob") => out.blobs.extend(blob.take()),
                    ("BlobPrefix", "Name") => out.prefixes.push(value),
                    ("Container", "Name") => out.containers.push(value),
                    ("EnumerationResults", "NextMarker") if !value.is_empty() => {
                        out.next_marker = Some(value)
                    }
                    _ => {}
                }
                text.clear();
                encoded = false;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

impl AzureBackend {
    /// Opens Azure as the config and the Azure environment say (see `client.rs`).
    pub async fn new(cfg: &StorageConfig) -> Result<AzureBackend> {
        let s = Settings::find(cfg)?;
        Ok(AzureBackend {
            http: Http::new(cfg)?,
            account: s.account,
            endpoint: s.endpoint,
            creds: s.creds,
            from: s.from,
            pending: Default::default(),
        })
    }

    /// The account in use.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The blob endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn blob_path(bucket: &str, key: &str) -> String {
        format!("{bucket}/{key}")
    }

    fn info_from(bucket: &str, key: &str, parts: &http::response::Parts, size: u64) -> ObjectInfo {
        let h = |n: &str| rest::header(parts, n).map(str::to_owned);
        let mut info = ObjectInfo::new(bucket, key, size);
        info.etag = h("etag").map(|e| e.trim_matches('"').to_owned());
        info.last_modified = h("last-modified").as_deref().and_then(rest::parse_time);
        info.content_type = h("content-type");
        info.cache_control = h("cache-control");
        info.content_disposition = h("content-disposition");
        info.content_encoding = h("content-encoding");
        info.storage_class = h("x-ms-access-tier");
        info.metadata = parts
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str().strip_prefix("x-ms-meta-")?;
                Some((meta_name_back(name), decode_meta_value(v.to_str().ok()?)))
            })
            .collect();
        info
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        max: u32,
        marker: Option<&str>,
    ) -> Result<Listed> {
        let mut r = Req::new(Method::GET, bucket)
            .query("restype", "container")
            .query("comp", "list")
            .query("maxresults", max.to_string());
        if !prefix.is_empty() {
            r = r.query("prefix", prefix);
        }
        if let Some(d) = delimiter.filter(|d| !d.is_empty()) {
            r = r.query("delimiter", d);
        }
        if let Some(m) = marker {
            r = r.query("marker", m);
        }
        let xml = self.read(r).await?;
        parse_listing(bucket, &xml)
    }

    fn block_id(upload_id: &str, part: i32) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{upload_id}-{part:06}"))
    }

    /// A SAS URL at `now` (for tests: a fixed time).
    pub(crate) fn presign_at(
        &self,
        bucket: &str,
        key: &str,
        opts: &PresignOptions,
        now: SystemTime,
    ) -> Result<String> {
        let Creds::Key(k) = &self.creds else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "Azure SAS URLs are signed with the account key; the credentials are a SAS \
                 token (set AZURE_STORAGE_KEY or a connection string with AccountKey)",
            ));
        };
        let sas = presign::sas(
            k,
            &self.account,
            bucket,
            key,
            opts.method,
            opts.expires_in,
            now,
        );
        Ok(self.url(&Self::blob_path(bucket, key), &[], Some(&sas)))
    }
}

#[async_trait]
impl Backend for AzureBackend {
    fn scheme(&self) -> &'static str {
        "az"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            multipart: true,
            part_copy: false,
            parallel_ranges: true,
            streaming_bodies: false,
            presign: matches!(self.creds, Creds::Key(_)),
            native_checksums: false,
            conditional_reads: true,
            names: NameRules::Azure,
            // Versions, conditional writes, tags and browser form uploads are S3's
            // here; this backend does not speak them yet.
            versioning: false,
            conditional_writes: false,
            tags: false,
            presign_post: false,
            listed_uploads: false,
        }
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    async fn credentials(&self) -> Result<Option<String>> {
        Ok(Some(self.from.clone()))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let r = Req::new(Method::PUT, bucket).query("restype", "container");
        self.send(r, rest::empty(), 0, || None).await.map(drop)
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        // Azure deletes a container with everything in it; S3 semantics refuse.
        let page = self.list_page(bucket, "", None, 1, None).await?;
        if !page.blobs.is_empty() {
            return Err(Error::new(
                ErrorKind::BucketNotEmpty,
                "the container holds blobs; delete them first (stor rm -r)",
            ));
        }
        let r = Req::new(Method::DELETE, bucket).query("restype", "container");
        self.send(r, rest::empty(), 0, || None).await.map(drop)
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let r = Req::new(Method::GET, bucket).query("restype", "container");
        match self.read(r).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::BucketNotFound || e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_buckets(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut r = Req::new(Method::GET, "").query("comp", "list");
            if let Some(m) = &marker {
                r = r.query("marker", m.clone());
            }
            let xml = self.read(r).await?;
            let page = parse_listing("", &xml)?;
            names.extend(page.containers);
            marker = page.next_marker;
            if marker.is_none() {
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
        let len = body.len().ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, "Azure uploads need a known length")
        })?;
        let failed = rest::body_failure(&body);
        let path = Self::blob_path(bucket, key);
        let mut r = Req::new(Method::PUT, &path).header("x-ms-blob-type", "BlockBlob");
        for (k, v) in upload_headers(opts) {
            r = r.header(k, v);
        }
        let resp = self.send(r, rest::body(body), len, failed).await?;
        Ok(resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|e| e.trim_matches('"').to_owned()))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse> {
        let path = Self::blob_path(bucket, key);
        let mut r = Req::new(Method::GET, &path);
        if let Some(rg) = range {
            if rg.end <= rg.start {
                return Err(Error::invalid(format!(
                    "empty range {}..{}",
                    rg.start, rg.end
                )));
            }
            r = r.header("x-ms-range", format!("bytes={}-{}", rg.start, rg.end - 1));
        }
        if let Some(m) = if_match {
            r = r.header("if-match", format!("\"{m}\""));
        }
        let resp = self.send(r, rest::empty(), 0, || None).await?;
        let (parts, body) = resp.into_parts();
        let content_length = rest::header(&parts, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let size = rest::header(&parts, "content-range")
            .and_then(|cr| cr.rsplit('/').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(content_length);
        let info = Self::info_from(bucket, key, &parts, size);
        Ok(GetResponse {
            info,
            body: self.http().stream(http::Response::from_parts(parts, body)),
            content_length,
            checksum: None,
        })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let path = Self::blob_path(bucket, key);
        let resp = self
            .send(Req::new(Method::HEAD, &path), rest::empty(), 0, || None)
            .await?;
        let (parts, _) = resp.into_parts();
        let size = rest::header(&parts, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Self::info_from(bucket, key, &parts, size))
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<DeleteResult>> {
        // Owned keys: see gcs::delete_all.
        let results: Vec<Result<()>> = futures::stream::iter(keys.to_vec())
            .map(|k| async move {
                let path = Self::blob_path(bucket, &k);
                self.send(Req::new(Method::DELETE, &path), rest::empty(), 0, || None)
                    .await
                    .map(drop)
            })
            .buffered(16)
            .collect()
            .await;
        let mut out = Vec::with_capacity(keys.len());
        for (k, r) in keys.iter().zip(results) {
            let error = match r {
                Ok(()) => None,
                Err(e) if e.kind() == ErrorKind::BucketNotFound => return Err(e),
                Err(e) if e.kind() == ErrorKind::KeyNotFound => None,
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
        let after = req
            .start_after
            .as_deref()
            .filter(|_| req.continuation_token.is_none());
        let mut marker = req.continuation_token.clone();
        // Azure has no start-after: pages are read until one holds keys past it.
        loop {
            let page = self
                .list_page(
                    bucket,
                    &req.prefix,
                    req.delimiter.as_deref(),
                    max,
                    marker.as_deref(),
                )
                .await?;
            let past = |k: &str| after.is_none_or(|a| k > a);
            let objects: Vec<ObjectInfo> =
                page.blobs.into_iter().filter(|b| past(&b.key)).collect();
            let common_prefixes: Vec<String> =
                page.prefixes.into_iter().filter(|p| past(p)).collect();
            if after.is_some()
                && objects.is_empty()
                && common_prefixes.is_empty()
                && page.next_marker.is_some()
            {
                marker = page.next_marker;
                continue;
            }
            return Ok(ListPage {
                objects,
                common_prefixes,
                next_continuation_token: page.next_marker,
            });
        }
    }

    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        replace: Option<&UploadOptions>,
    ) -> Result<Option<String>> {
        let source = self.url(&Self::blob_path(src_bucket, src_key), &[], None);
        let path = Self::blob_path(dst_bucket, dst_key);
        // Copy Blob carries the source's properties and metadata; replaced ones are
        // set after it (Set Blob Metadata, Set Blob Properties).
        let r = Req::new(Method::PUT, &path).header("x-ms-copy-source", source);
        let resp = match self.send(r, rest::empty(), 0, || None).await {
            // A missing source is reported as the copy's 404.
            Err(e) if e.code() == Some("CannotVerifyCopySource") => {
                return Err(e.with_kind(ErrorKind::KeyNotFound))
            }
            r => r?,
        };
        let status = resp
            .headers()
            .get("x-ms-copy-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("success")
            .to_owned();
        let mut etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|e| e.trim_matches('"').to_owned());
        if status != "success" {
            // Copies inside one account finish at once; anything else is waited for.
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let resp = self
                    .send(Req::new(Method::HEAD, &path), rest::empty(), 0, || None)
                    .await?;
                match resp
                    .headers()
                    .get("x-ms-copy-status")
                    .and_then(|v| v.to_str().ok())
                {
                    Some("pending") => continue,
                    Some("success") | None => {
                        etag = resp
                            .headers()
                            .get("etag")
                            .and_then(|v| v.to_str().ok())
                            .map(|e| e.trim_matches('"').to_owned());
                        break;
                    }
                    Some(other) => {
                        return Err(Error::new(
                            ErrorKind::Other,
                            format!("the copy ended {other}"),
                        ))
                    }
                }
            }
        }
        if let Some(o) = replace {
            let mut r = Req::new(Method::PUT, &path).query("comp", "metadata");
            for (k, v) in upload_headers(o) {
                if k.starts_with("x-ms-meta-") {
                    r = r.header(k, v);
                }
            }
            self.send(r, rest::empty(), 0, || None).await?;
            let mut r = Req::new(Method::PUT, &path).query("comp", "properties");
            for (k, v) in upload_headers(o) {
                if !k.starts_with("x-ms-meta-") && k != "x-ms-access-tier" {
                    r = r.header(k, v);
                }
            }
            let resp = self.send(r, rest::empty(), 0, || None).await?;
            etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|e| e.trim_matches('"').to_owned());
        }
        Ok(etag)
    }

    async fn presign(&self, bucket: &str, key: &str, opts: &PresignOptions) -> Result<String> {
        self.presign_at(bucket, key, opts, SystemTime::now())
    }
}

#[async_trait]
impl Multipart for AzureBackend {
    async fn create_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        opts: &UploadOptions,
        _checksum: Option<ChecksumAlgorithm>,
    ) -> Result<String> {
        let id = hex::encode(rand::random::<[u8; 12]>());
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
        let len = body.len().ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, "Azure blocks need a known length")
        })?;
        let failed = rest::body_failure(&body);
        let path = Self::blob_path(bucket, key);
        let id = Self::block_id(upload_id, part_number);
        let r = Req::new(Method::PUT, &path)
            .query("comp", "block")
            .query("blockid", id.clone());
        self.send(r, rest::body(body), len, failed).await?;
        Ok(CompletedPart {
            part_number,
            etag: id,
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
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::KeyNotFound,
                    format!("no upload {upload_id} in progress (it was completed or aborted)"),
                )
            })?;
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for p in parts {
            xml.push_str(&format!("<Latest>{}</Latest>", p.etag));
        }
        xml.push_str("</BlockList>");
        let path = Self::blob_path(bucket, key);
        let mut r = Req::new(Method::PUT, &path).query("comp", "blocklist");
        for (k, v) in upload_headers(&opts) {
            r = r.header(k, v);
        }
        let len = xml.len() as u64;
        let resp = self.send(r, rest::bytes(xml), len, || None).await?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(upload_id);
        Ok(resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|e| e.trim_matches('"').to_owned()))
    }

    async fn abort_multipart(&self, _bucket: &str, _key: &str, upload_id: &str) -> Result<()> {
        // Uncommitted blocks are dropped by Azure itself (see the module docs).
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(upload_id);
        Ok(())
    }

    async fn list_multipart_uploads(
        &self,
        _bucket: &str,
        _prefix: &str,
    ) -> Result<Vec<PendingUpload>> {
        Ok(Vec::new())
    }
}

/// Metadata as stored and read back, for tests.
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn metadata_names_round_trip_through_identifiers() {
        for name in [
            "source",
            "stor-crc64nvme",
            "stor-mtime",
            "a.b",
            "my_key",
            "1abc",
            "x~y",
            "storx_z",
            "UP",
        ] {
            let stored = meta_name(name);
            assert!(
                stored.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && stored
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name} -> {stored}"
            );
            assert_eq!(
                meta_name_back(&stored),
                name.to_ascii_lowercase(),
                "{name} -> {stored}"
            );
        }
        assert_eq!(meta_name("source"), "source");
    }

    #[test]
    fn listings_with_encoded_names_entities_and_prefixes() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Prefix>p/</Prefix><Blobs><Blob><Name>p/a&amp;b</Name><Properties><Last-Modified>Sun, 06 Nov 1994 08:49:37 GMT</Last-Modified><Etag>"0x8D"</Etag><Content-Length>42</Content-Length><Content-Type>text/plain</Content-Type></Properties></Blob><Blob><Name Encoded="true">p/%1B</Name><Properties><Content-Length>1</Content-Length></Properties></Blob><BlobPrefix><Name>p/d/</Name></BlobPrefix></Blobs><NextMarker>m1</NextMarker></EnumerationResults>"#;
        let l = parse_listing("c", xml).unwrap();
        assert_eq!(l.blobs.len(), 2);
        assert_eq!(l.blobs[0].key, "p/a&b");
        assert_eq!(l.blobs[0].size, 42);
        assert_eq!(l.blobs[0].etag.as_deref(), Some("0x8D"));
        assert!(l.blobs[0].last_modified.is_some());
        assert_eq!(l.blobs[1].key, "p/\u{1b}");
        assert_eq!(l.prefixes, ["p/d/"]);
        assert_eq!(l.next_marker.as_deref(), Some("m1"));
    }

    #[test]
    fn metadata_names_as_stored_are_unchanged_by_lowercasing() {
        let m: BTreeMap<String, String> = [("stor-crc64nvme".to_owned(), "x".to_owned())].into();
        let h = upload_headers(&UploadOptions {
            metadata: m,
            ..Default::default()
        });
        assert_eq!(h[0].0, "x-ms-meta-storx_stor_dcrc64nvme");
    }
}
