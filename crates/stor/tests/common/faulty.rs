//! `Faulty`: a memory store that fails, stalls and counts on cue, for driving the
//! engine without servers (tests/engine.rs, tests/resume.rs).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use stor::backend::memory::MemoryBackend;
use stor::backend::{
    Backend, Body, Capabilities, CompletedPart, GetResponse, Multipart, PartCopySource,
    PendingUpload, StoredPart,
};
use stor::{
    ByteRange, DeleteResult, ErrorKind, ListOptions, ListPage, ObjectInfo, Result, UploadOptions,
};

/// A memory store that fails on cue.
#[derive(Debug, Default)]
pub struct Faulty {
    pub inner: MemoryBackend,
    /// Ranged GETs seen (start offsets).
    pub range_starts: Mutex<Vec<u64>>,
    /// Break the body of the next ranged GET starting past 0 after this many bytes.
    pub cut_next_range_after: Mutex<Option<usize>>,
    /// Fail these part numbers once (then let them through).
    pub fail_parts_once: Mutex<Vec<i32>>,
    /// Fail this part number every time.
    pub fail_part_always: Mutex<Option<i32>>,
    /// Hold every part this long (to cancel mid-upload).
    pub part_delay: Mutex<Option<Duration>>,
    /// Hold CreateMultipartUpload this long after the upload exists.
    pub create_delay: Mutex<Option<Duration>>,
    pub creates_started: AtomicUsize,
    /// Replace this object (bucket, key) with other bytes at the next part copy.
    pub replace_at_part_copy: Mutex<Option<(String, String)>>,
    /// Replace this object with other bytes right after the next CopyObject.
    pub replace_after_copy: Mutex<Option<(String, String)>>,
    pub parts_sent: AtomicU32,
    pub part_copies: AtomicUsize,
    pub aborts: AtomicUsize,
    /// Ranged GETs starting past 0 deliver this many bytes, then stall forever
    /// (to interrupt a download mid-range).
    pub stall_ranges_after: Mutex<Option<usize>>,
    /// Body bytes GETs delivered.
    pub bytes_served: std::sync::Arc<AtomicU64>,
    /// Single PUTs stored.
    pub puts: AtomicUsize,
}

pub fn transient(what: &str) -> stor::Error {
    stor::Error::new(ErrorKind::Transient, what.to_owned())
}

#[async_trait]
impl Backend for Faulty {
    fn scheme(&self) -> &'static str {
        "memory"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }
    async fn create_bucket(&self, b: &str) -> Result<()> {
        self.inner.create_bucket(b).await
    }
    async fn delete_bucket(&self, b: &str) -> Result<()> {
        self.inner.delete_bucket(b).await
    }
    async fn bucket_exists(&self, b: &str) -> Result<bool> {
        self.inner.bucket_exists(b).await
    }
    async fn list_buckets(&self) -> Result<Vec<String>> {
        self.inner.list_buckets().await
    }
    async fn put_object(
        &self,
        b: &str,
        k: &str,
        body: Body,
        o: &UploadOptions,
    ) -> Result<Option<String>> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_object(b, k, body, o).await
    }
    async fn get_object(
        &self,
        b: &str,
        k: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse> {
        let mut resp = self.inner.get_object(b, k, range, if_match).await?;
        let stall = match range {
            Some(r) if r.start > 0 => *self.stall_ranges_after.lock().unwrap(),
            _ => None,
        };
        if let Some(n) = stall {
            let all: Vec<Bytes> = resp.body.map(|c| c.unwrap()).collect::<Vec<_>>().await;
            let joined = Bytes::from(all.concat());
            let first = joined.slice(..n.min(joined.len()));
            resp.body =
                Box::pin(futures::stream::iter(vec![Ok(first)]).chain(futures::stream::pending()));
        }
        if let Some(r) = range {
            self.range_starts.lock().unwrap().push(r.start);
            let cut = if r.start > 0 {
                self.cut_next_range_after.lock().unwrap().take()
            } else {
                None
            };
            if let Some(n) = cut {
                // Deliver n bytes, then a broken connection.
                let body = resp.body;
                let all: Vec<Bytes> = body.map(|c| c.unwrap()).collect::<Vec<_>>().await;
                let joined = Bytes::from(all.concat());
                let first = joined.slice(..n.min(joined.len()));
                resp.body = Box::pin(futures::stream::iter(vec![
                    Ok(first),
                    Err(transient("connection reset mid-body")),
                ]));
            }
        }
        let served = self.bytes_served.clone();
        resp.body = Box::pin(resp.body.inspect(move |c| {
            if let Ok(c) = c {
                served.fetch_add(c.len() as u64, Ordering::SeqCst);
            }
        }));
        Ok(resp)
    }
    async fn head_object(&self, b: &str, k: &str) -> Result<ObjectInfo> {
        self.inner.head_object(b, k).await
    }
    async fn delete_objects(&self, b: &str, keys: &[String]) -> Result<Vec<DeleteResult>> {
        self.inner.delete_objects(b, keys).await
    }
    async fn list_objects(&self, b: &str, req: &ListOptions) -> Result<ListPage> {
        self.inner.list_objects(b, req).await
    }
    async fn copy_object(
        &self,
        sb: &str,
        sk: &str,
        db: &str,
        dk: &str,
        r: Option<&UploadOptions>,
    ) -> Result<Option<String>> {
        let etag = self.inner.copy_object(sb, sk, db, dk, r).await?;
        let replace = self.replace_after_copy.lock().unwrap().take();
        self.overwrite(replace).await;
        Ok(etag)
    }
}

#[async_trait]
impl Multipart for Faulty {
    async fn create_multipart(
        &self,
        b: &str,
        k: &str,
        o: &UploadOptions,
        c: Option<stor::ChecksumAlgorithm>,
    ) -> Result<String> {
        self.creates_started.fetch_add(1, Ordering::SeqCst);
        let id = self.mp().create_multipart(b, k, o, c).await?;
        let delay = *self.create_delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        Ok(id)
    }
    async fn upload_part(
        &self,
        b: &str,
        k: &str,
        id: &str,
        n: i32,
        body: Body,
        c: Option<stor::ChecksumAlgorithm>,
    ) -> Result<CompletedPart> {
        let delay = *self.part_delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if *self.fail_part_always.lock().unwrap() == Some(n) {
            return Err(stor::Error::new(ErrorKind::AccessDenied, "part refused"));
        }
        {
            let mut once = self.fail_parts_once.lock().unwrap();
            if let Some(i) = once.iter().position(|p| *p == n) {
                once.remove(i);
                return Err(transient("the server dropped the part"));
            }
        }
        self.parts_sent.fetch_add(1, Ordering::SeqCst);
        self.mp().upload_part(b, k, id, n, body, c).await
    }
    async fn upload_part_copy(
        &self,
        src: &PartCopySource<'_>,
        b: &str,
        k: &str,
        id: &str,
        n: i32,
    ) -> Result<String> {
        self.part_copies.fetch_add(1, Ordering::SeqCst);
        let replace = self.replace_at_part_copy.lock().unwrap().take();
        self.overwrite(replace).await;
        self.mp().upload_part_copy(src, b, k, id, n).await
    }
    async fn complete_multipart(
        &self,
        b: &str,
        k: &str,
        id: &str,
        parts: &[CompletedPart],
        c: Option<&stor::checksum::Checksum>,
    ) -> Result<Option<String>> {
        self.mp().complete_multipart(b, k, id, parts, c).await
    }
    async fn abort_multipart(&self, b: &str, k: &str, id: &str) -> Result<()> {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        self.mp().abort_multipart(b, k, id).await
    }
    async fn list_multipart_uploads(&self, b: &str, p: &str) -> Result<Vec<PendingUpload>> {
        self.mp().list_multipart_uploads(b, p).await
    }
    async fn list_parts(&self, b: &str, k: &str, id: &str) -> Result<Vec<StoredPart>> {
        self.mp().list_parts(b, k, id).await
    }
}

impl Faulty {
    /// Another writer: stores other bytes under (bucket, key).
    async fn overwrite(&self, target: Option<(String, String)>) {
        if let Some((b, k)) = target {
            let body = Body::Bytes(Bytes::from_static(b"another writer's version"));
            let opts = UploadOptions::default();
            self.inner.put_object(&b, &k, body, &opts).await.unwrap();
        }
    }

    fn mp(&self) -> &dyn Multipart {
        self.inner
            .multipart()
            .expect("memory has multipart uploads")
    }
}
