//! In-process memory store, for tests and examples. Behaves like S3 for every
//! operation except presigning (there is no HTTP server to sign for).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};

use super::common::{check_condition, collect_body, etag_of, info_from_opts, slice_range};
use super::{
    list_sorted, Backend, Body, ByteStream, Capabilities, CompletedPart, CopySource, GetResponse,
    Multipart, PartCopySource, PendingUpload, StoredPart, Tagging,
};
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{
    ByteRange, DeleteResult, ListOptions, ListPage, ObjectInfo, UploadOptions, WriteCondition,
};

type Tags = BTreeMap<String, String>;

#[derive(Clone)]
struct Object {
    data: Bytes,
    info: ObjectInfo,
    tags: Tags,
}

impl State {
    /// The ETag of the object `key` holds now, for a write's condition.
    fn current(&self, bucket: &str, key: &str) -> Option<&str> {
        let objs = self.buckets.get(bucket)?;
        objs.get(key.as_bytes())?.info.etag.as_deref()
    }
}

struct Upload {
    bucket: String,
    key: String,
    opts: UploadOptions,
    parts: BTreeMap<i32, Bytes>,
    initiated: SystemTime,
}

#[derive(Default)]
struct State {
    // Keys as bytes: BTreeMap order is then S3's byte order.
    buckets: BTreeMap<String, BTreeMap<Vec<u8>, Object>>,
    uploads: HashMap<String, Upload>,
}

/// The memory backend.
#[derive(Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    next_upload: AtomicU64,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBackend")
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn no_bucket(bucket: &str) -> Error {
    Error::new(
        ErrorKind::BucketNotFound,
        format!("the bucket {bucket:?} does not exist"),
    )
}

/// As S3 says it, so the engine can tell an upload someone aborted.
fn no_upload() -> Error {
    Error::s3(
        Some("NoSuchUpload"),
        Some(404),
        Some("no such multipart upload (aborted or completed)"),
    )
}

fn no_key() -> Error {
    Error::new(ErrorKind::KeyNotFound, "the key does not exist")
}

fn once_stream(b: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(b) }))
}

#[async_trait]
impl Backend for MemoryBackend {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        // Everything an S3 engine does but presigning (no HTTP server), so the
        // engine's multipart, parallel-range and part-copy paths run in plain
        // `cargo test` too.
        Capabilities {
            multipart: true,
            part_copy: true,
            parallel_ranges: true,
            streaming_bodies: true,
            conditional_reads: true,
            conditional_writes: true,
            tags: true,
            listed_uploads: true,
            ..Capabilities::default()
        }
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    fn tagging(&self) -> Option<&dyn Tagging> {
        Some(self)
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let mut st = self.lock();
        if st.buckets.contains_key(bucket) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("the bucket {bucket:?} already exists"),
            ));
        }
        st.buckets.insert(bucket.to_owned(), BTreeMap::new());
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let mut st = self.lock();
        match st.buckets.get(bucket) {
            None => Err(no_bucket(bucket)),
            Some(objs) if !objs.is_empty() => Err(Error::new(
                ErrorKind::BucketNotEmpty,
                format!("the bucket {bucket:?} is not empty; delete its objects first"),
            )),
            Some(_) => {
                st.buckets.remove(bucket);
                Ok(())
            }
        }
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(self.lock().buckets.contains_key(bucket))
    }

    async fn list_buckets(&self) -> Result<Vec<String>> {
        Ok(self.lock().buckets.keys().cloned().collect())
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        opts: &UploadOptions,
    ) -> Result<Option<String>> {
        if !self.lock().buckets.contains_key(bucket) {
            return Err(no_bucket(bucket));
        }
        let data = collect_body(body).await?;
        let mut info = info_from_opts(bucket, key, data.len() as u64, opts);
        let etag = etag_of(&data);
        info.etag = Some(etag.clone());
        let mut st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(no_bucket(bucket));
        }
        // Checked and written under one lock: the condition holds at the write.
        check_condition(st.current(bucket, key), opts.condition.as_ref())?;
        let objs = st
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_bucket(bucket))?;
        let tags = opts.tags.clone();
        objs.insert(key.as_bytes().to_vec(), Object { data, info, tags });
        Ok(Some(etag))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse> {
        let obj = {
            let st = self.lock();
            let objs = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
            objs.get(key.as_bytes()).cloned().ok_or_else(no_key)?
        };
        if let Some(m) = if_match {
            if obj.info.etag.as_deref() != Some(m) {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    "the object changed",
                ));
            }
        }
        let (start, end) = slice_range(obj.info.size, range)?;
        let body = obj.data.slice(start as usize..end as usize);
        Ok(GetResponse {
            info: obj.info,
            content_length: end - start,
            checksum: None,
            body: once_stream(body),
        })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let st = self.lock();
        let objs = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        Ok(objs.get(key.as_bytes()).ok_or_else(no_key)?.info.clone())
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let mut st = self.lock();
        let objs = st
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_bucket(bucket))?;
        objs.remove(key.as_bytes());
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<DeleteResult>> {
        let mut st = self.lock();
        let objs = st
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_bucket(bucket))?;
        Ok(keys
            .iter()
            .map(|k| {
                objs.remove(k.as_bytes());
                DeleteResult {
                    key: k.clone(),
                    error: None,
                }
            })
            .collect())
    }

    async fn list_objects(&self, bucket: &str, req: &ListOptions) -> Result<ListPage> {
        let st = self.lock();
        let objs = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let mut fetch = |prefix: &[u8], lower: &[u8], inclusive: bool, limit: usize| {
            use std::ops::Bound;
            let lo = if inclusive {
                Bound::Included(lower.to_vec())
            } else {
                Bound::Excluded(lower.to_vec())
            };
            Ok(objs
                .range((lo, Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(limit)
                .map(|(_, o)| o.info.clone())
                .collect())
        };
        list_sorted(&mut fetch, req)
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
        if src.version_id.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the memory store keeps no versions",
            ));
        }
        let (src_bucket, src_key) = (src.bucket, src.key);
        let mut st = self.lock();
        let src = st
            .buckets
            .get(src_bucket)
            .ok_or_else(|| no_bucket(src_bucket))?
            .get(src_key.as_bytes())
            .cloned()
            .ok_or_else(no_key)?;
        if !st.buckets.contains_key(dst_bucket) {
            return Err(no_bucket(dst_bucket));
        }
        check_condition(st.current(dst_bucket, dst_key), condition)?;
        let dst = st
            .buckets
            .get_mut(dst_bucket)
            .ok_or_else(|| no_bucket(dst_bucket))?;
        let mut info = match replace {
            Some(o) => info_from_opts(dst_bucket, dst_key, src.info.size, o),
            None => src.info.clone(),
        };
        info.bucket = dst_bucket.to_owned();
        info.key = dst_key.to_owned();
        info.last_modified = Some(SystemTime::now());
        info.etag = src.info.etag.clone();
        let etag = info.etag.clone();
        let tags = match replace {
            Some(o) => o.tags.clone(),
            None => src.tags,
        };
        dst.insert(
            dst_key.as_bytes().to_vec(),
            Object {
                data: src.data,
                info,
                tags,
            },
        );
        Ok(etag)
    }
}

#[async_trait]
impl Tagging for MemoryBackend {
    async fn get_tags(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Tags> {
        if version_id.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the memory store keeps no versions",
            ));
        }
        let st = self.lock();
        let objs = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        Ok(objs.get(key.as_bytes()).ok_or_else(no_key)?.tags.clone())
    }

    async fn put_tags(&self, bucket: &str, key: &str, tags: &Tags) -> Result<()> {
        let mut st = self.lock();
        let objs = st
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_bucket(bucket))?;
        objs.get_mut(key.as_bytes()).ok_or_else(no_key)?.tags = tags.clone();
        Ok(())
    }

    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()> {
        self.put_tags(bucket, key, &Tags::new()).await
    }
}

#[async_trait]
impl Multipart for MemoryBackend {
    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: &UploadOptions,
        _checksum: Option<ChecksumAlgorithm>,
    ) -> Result<String> {
        let mut st = self.lock();
        if !st.buckets.contains_key(bucket) {
            return Err(no_bucket(bucket));
        }
        let id = format!("mem-{}", self.next_upload.fetch_add(1, Ordering::Relaxed));
        st.uploads.insert(
            id.clone(),
            Upload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                opts: opts.clone(),
                parts: BTreeMap::new(),
                initiated: SystemTime::now(),
            },
        );
        Ok(id)
    }

    async fn upload_part(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
        _checksum: Option<ChecksumAlgorithm>,
    ) -> Result<CompletedPart> {
        let data = collect_body(body).await?;
        let etag = etag_of(&data);
        let mut st = self.lock();
        let up = st.uploads.get_mut(upload_id).ok_or_else(no_upload)?;
        up.parts.insert(part_number, data);
        Ok(CompletedPart {
            part_number,
            etag,
            checksum: None,
        })
    }

    async fn upload_part_copy(
        &self,
        src: &PartCopySource<'_>,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
        part_number: i32,
    ) -> Result<String> {
        if src.version_id.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the memory store keeps no versions",
            ));
        }
        let obj = {
            let st = self.lock();
            let objs = st
                .buckets
                .get(src.bucket)
                .ok_or_else(|| no_bucket(src.bucket))?;
            objs.get(src.key.as_bytes()).cloned().ok_or_else(no_key)?
        };
        if src
            .etag
            .is_some_and(|e| obj.info.etag.as_deref() != Some(e))
        {
            return Err(Error::new(
                ErrorKind::PreconditionFailed,
                "the source object changed",
            ));
        }
        let (start, end) = slice_range(obj.info.size, Some(src.range))?;
        let data = obj.data.slice(start as usize..end as usize);
        let etag = etag_of(&data);
        let mut st = self.lock();
        let up = st.uploads.get_mut(upload_id).ok_or_else(no_upload)?;
        up.parts.insert(part_number, data);
        Ok(etag)
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
        _checksum: Option<&Checksum>,
        condition: Option<&WriteCondition>,
    ) -> Result<Option<String>> {
        let mut st = self.lock();
        if !st.uploads.contains_key(upload_id) {
            return Err(no_upload());
        }
        // A failed condition leaves the upload in place, as S3 does: its owner
        // aborts it.
        check_condition(st.current(bucket, key), condition)?;
        let up = st.uploads.remove(upload_id).ok_or_else(no_upload)?;
        let mut data = BytesMut::new();
        let mut md5s = Vec::new();
        for p in parts {
            let part = up.parts.get(&p.part_number).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("part {} was not uploaded", p.part_number),
                )
            })?;
            md5s.extend_from_slice(&Md5::digest(part));
            data.extend_from_slice(part);
        }
        let etag = format!("{}-{}", hex::encode(Md5::digest(&md5s)), parts.len());
        let mut info = info_from_opts(&up.bucket, &up.key, data.len() as u64, &up.opts);
        info.etag = Some(etag.clone());
        let objs = st
            .buckets
            .get_mut(bucket)
            .ok_or_else(|| no_bucket(bucket))?;
        objs.insert(
            key.as_bytes().to_vec(),
            Object {
                data: data.freeze(),
                info,
                tags: up.opts.tags,
            },
        );
        Ok(Some(etag))
    }

    async fn abort_multipart(&self, _bucket: &str, _key: &str, upload_id: &str) -> Result<()> {
        self.lock().uploads.remove(upload_id);
        Ok(())
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>> {
        let st = self.lock();
        let mut v: Vec<PendingUpload> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == bucket && u.key.starts_with(prefix))
            .map(|(id, u)| PendingUpload {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
        Ok(v)
    }

    async fn list_parts(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>> {
        let st = self.lock();
        let up = st.uploads.get(upload_id).ok_or_else(no_upload)?;
        Ok(up
            .parts
            .iter()
            .map(|(n, data)| StoredPart {
                part_number: *n,
                etag: etag_of(data),
                size: data.len() as u64,
            })
            .collect())
    }
}
