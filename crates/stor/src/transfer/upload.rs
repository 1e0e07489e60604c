//! Uploads: one PUT up to `multipart_threshold`, else multipart (see
//! `multipart.rs`). Files are checksummed first (the checksum goes into the
//! metadata the upload starts with) and every body re-checks what it sends before
//! its last byte; streams of unknown length are read part by part within the byte
//! budget.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use super::condition::condition_error;
use super::multipart::{MultipartUpload, Part, PartBody};
use super::parts::{part_count, part_size, AUTO_PART_SIZE};
use super::resume::UploadJournal;
use crate::backend::{source_changed, Body, ByteStream, FileRange, Replay, SourceCheck, Tap};
use crate::checksum::{Checksum, ChecksumAlgorithm, Hasher};
use crate::config::{MAX_PARTS, MIB};
use crate::core::{kib, Core};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{Progress, TransferResult, UploadOptions, WriteCondition};

/// Where an upload's bytes come from.
pub(crate) enum Source {
    /// A file; its length is read when the upload starts.
    File(PathBuf),
    Bytes(Bytes),
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

pub(crate) async fn upload(
    core: &Core,
    bucket: &str,
    key: &str,
    src: Source,
    opts: &UploadOptions,
) -> Result<TransferResult> {
    let start = Instant::now();
    // Local checks before any request.
    let file_meta = match &src {
        Source::File(path) => {
            let meta = match tokio::fs::metadata(&path).await {
                Ok(m) => m,
                // A source that is not there is bad input, not a disk failure.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::invalid(format!(
                        "{}: no such file or directory",
                        path.display()
                    )))
                }
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            };
            if !meta.is_file() {
                return Err(Error::invalid(format!(
                    "{} is not a regular file (use --recursive for directories)",
                    path.display()
                )));
            }
            Some(meta)
        }
        _ => None,
    };
    check_write_options(core, opts)?;
    core.ensure_bucket(bucket).await?;
    let cfg = &core.config;
    let threshold = cfg.multipart_threshold;
    let algo = cfg.checksum;
    let mut opts = opts.clone();
    let progress = opts.progress.take();
    let report = |done: u64, total: Option<u64>| {
        if let Some(p) = &progress {
            p.report(done, total)
        }
    };
    let result = |bytes: u64,
                  etag: Option<String>,
                  attempts: u32,
                  multipart: bool,
                  sum: Option<Checksum>| TransferResult {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        bytes,
        etag,
        attempts,
        elapsed: start.elapsed(),
        multipart,
        checksum: sum.map(|c| c.label()),
        resumed: 0,
    };
    match src {
        Source::Bytes(_) | Source::File(_) => {
            // Known length and replayable: checksum first (it goes into the metadata
            // the upload starts with), then one PUT or parts of the same source. A
            // file is read twice — once for the checksum, once to send — so every
            // body re-checks what it sends before its last byte (see FileRange):
            // a file changed in between fails before anything is committed.
            let len = match (&src, &file_meta) {
                (Source::Bytes(b), _) => b.len() as u64,
                (_, Some(meta)) => meta.len(),
                _ => unreachable!("a file was looked at above"),
            };
            if let Some(n) = opts.expected_size.filter(|n| *n != len) {
                return Err(Error::invalid(format!(
                    "the source has {len} bytes, not the {n} expected; nothing was stored"
                )));
            }
            let in_parts = core.caps.multipart && len > threshold;
            let ps = if in_parts {
                part_size(len, cfg.part_size)?
            } else {
                len.max(1)
            };
            let mut ranges: Vec<(u64, u64)> = (0..part_count(len, ps))
                .map(|i| (i * ps, ((i + 1) * ps).min(len)))
                .collect();
            // A file in parts is journaled; an interrupted upload of it resumes (its
            // part layout and checksums are the journal's). See `resume.rs`.
            let journal = match (&src, &file_meta) {
                (Source::File(path), Some(meta)) if in_parts => {
                    UploadJournal::prepare(core, bucket, key, path, meta, &opts).await?
                }
                _ => None,
            };
            if let Some(r) = journal.as_ref().and_then(UploadJournal::ranges) {
                ranges = r;
            }
            let resumed = journal.as_ref().map_or(0, UploadJournal::resumed_bytes);
            let done = Arc::new(AtomicU64::new(resumed));
            let tap = || {
                progress
                    .clone()
                    .map(|p| Tap::new(p, Some(len), done.clone()))
            };
            // Per range: its body and checksum; and, for a file, what is checked
            // once more before a multipart upload is completed.
            type Unchanged = Option<(PathBuf, u64, Option<SystemTime>)>;
            let (bodies, sums, check): (Vec<Replay>, Vec<Option<Checksum>>, Unchanged) = match src {
                Source::Bytes(b) => {
                    let sum = bytes_checksum(algo, &b).await;
                    let bodies = ranges
                        .iter()
                        .map(|&(a, z)| Replay::Bytes(b.slice(a as usize..z as usize)))
                        .collect();
                    (bodies, vec![sum], None)
                }
                Source::File(path) => {
                    let mtime = file_meta.as_ref().and_then(|m| m.modified().ok());
                    if len <= SMALL_FILE {
                        // Small files are read once, on this thread (from the page
                        // cache, microseconds): checksum and body from one read, no
                        // thread hop per file — and checked unchanged before sending.
                        let data = std::fs::read(&path)
                            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                        file_unchanged(&path, len, mtime)?;
                        if data.len() as u64 != len {
                            return Err(changed_error(&path, "its size changed"));
                        }
                        let sum = algo.of(&data);
                        (vec![Replay::Bytes(Bytes::from(data))], vec![sum], None)
                    } else {
                        // Resumed: the journaled checksums, the file not read again
                        // for them (each part still sent is checked against its own
                        // before its last byte).
                        let sums = match journal.as_ref().and_then(UploadJournal::sums) {
                            Some(sums) => sums,
                            None => file_checksums(algo, &path, &ranges).await?,
                        };
                        if let Some(j) = &journal {
                            j.plan(&ranges, &sums);
                        }
                        let check = SourceCheck::new(None, len, mtime);
                        let bodies = ranges
                            .iter()
                            .zip(&sums)
                            .map(|(&(a, z), sum)| {
                                let r = FileRange::new(path.clone(), a, z - a)
                                    .checked(check.for_range(*sum))
                                    .with_progress(tap());
                                Replay::File(r)
                            })
                            .collect();
                        (bodies, sums, Some((path, len, mtime)))
                    }
                }
                Source::Reader(_) => unreachable!("matched above"),
            };
            let sum = sums
                .iter()
                .copied()
                .reduce(|a, b| a.zip(b).map(|(a, b)| a.then(b)))
                .flatten();
            if let Some(c) = &sum {
                c.store_in(&mut opts.metadata);
            }
            report(resumed, Some(len));
            // A file's bodies report progress as they are read; bytes as stored.
            let store_progress = check.is_none().then_some(progress.as_ref()).flatten();
            if in_parts {
                let journal = journal.as_ref();
                let parts = futures::stream::iter(
                    bodies
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| (i as i32 + 1, b))
                        .filter(move |(n, _)| !journal.is_some_and(|j| j.is_stored(*n)))
                        .map(|(n, b)| Ok((n, PartBody::Data(b), None))),
                );
                let verify = move || {
                    if let Some((path, len, mtime)) = &check {
                        file_unchanged(path, *len, *mtime)?;
                    }
                    Ok(sum)
                };
                let (etag, attempts, bytes) = MultipartUpload {
                    core,
                    bucket,
                    key,
                    opts: &opts,
                    copy_from: None,
                    progress: store_progress,
                    total: Some(len),
                    checksum: sum.map(|c| c.algorithm),
                    journal,
                }
                .run(parts, verify)
                .await?;
                Ok(TransferResult {
                    resumed,
                    ..result(bytes + resumed, etag, attempts, true, sum)
                })
            } else {
                let whole = bodies.into_iter().next().expect("one range");
                // Stores that take streams (local, memory) get bytes as a stream that
                // reports progress as it is read; a file reports through its body.
                let body = match (&whole, store_progress) {
                    (Replay::Bytes(_), Some(p)) if core.caps.streaming_bodies => {
                        counted_stream(&whole, p.clone())
                    }
                    _ => whole.body(),
                };
                let (etag, attempts) = put_single(core, bucket, key, body, &opts).await?;
                report(len, Some(len));
                Ok(result(len, etag, attempts, false, sum))
            }
        }
        Source::Reader(r) => {
            // A declared size sizes the parts and is enforced as the bytes are read:
            // a short or long stream fails before anything is committed.
            let (mut r, ps): (Box<dyn AsyncRead + Send + Unpin>, u64) = match opts.expected_size {
                Some(n) => (Box::new(ExactSize::new(r, n)), part_size(n, cfg.part_size)?),
                None => (r, cfg.part_size.unwrap_or(AUTO_PART_SIZE)),
            };
            // Read whole parts until the stream ends or is certainly over the
            // threshold, within the byte budget: a stream longer than the budget
            // goes multipart even under the threshold.
            let budget = u64::from(core.buffer_permits) * 1024;
            let head_parts = (threshold + 1).div_ceil(ps).min((budget / ps).max(1));
            let head_permit = core.reserve(head_parts * ps).await?;
            let mut head = Vec::new();
            let mut head_len = 0u64;
            let mut ended = false;
            while (head.len() as u64) < head_parts {
                let chunk = read_part(r.as_mut(), ps as usize).await?;
                head_len += chunk.len() as u64;
                ended = (chunk.len() as u64) < ps;
                if !chunk.is_empty() {
                    head.push(chunk);
                }
                if ended {
                    break;
                }
            }
            if ended && head_len <= threshold {
                let body = match head.len() {
                    0 => Bytes::new(),
                    1 => head.pop().expect("one chunk"),
                    _ => head.concat().into(),
                };
                let sum = bytes_checksum(algo, &body).await;
                if let Some(c) = &sum {
                    c.store_in(&mut opts.metadata);
                }
                let (etag, attempts) =
                    put_single(core, bucket, key, Body::Bytes(body), &opts).await?;
                drop(head_permit);
                report(head_len, Some(head_len));
                return Ok(result(head_len, etag, attempts, false, sum));
            }
            if core.caps.streaming_bodies && !core.caps.multipart {
                // The local store takes a stream of any length in one call. Its bytes
                // never cross a network, so no checksum is stored for them. (Stores
                // with multipart uploads take long streams in parts, bounded by the
                // byte budget.)
                let counted = Arc::new(AtomicU64::new(0));
                let c = counted.clone();
                let rest = if ended { None } else { Some(reader_stream(r)) };
                let stream = futures::stream::iter(head.into_iter().map(Ok))
                    .chain(futures::stream::iter(rest).flatten())
                    .inspect_ok(move |b| {
                        c.fetch_add(b.len() as u64, Ordering::Relaxed);
                    });
                let (etag, attempts) =
                    put_single(core, bucket, key, Body::Stream(Box::pin(stream)), &opts).await?;
                drop(head_permit);
                let n = counted.load(Ordering::Relaxed);
                report(n, Some(n));
                return Ok(result(n, etag, attempts, false, None));
            }
            if !core.caps.multipart {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "this store takes no streams and has no multipart uploads: it cannot \
                     store a stream longer than multipart_threshold",
                ));
            }
            // The checksum of a stream is known only at its end, after the upload
            // was created: too late for metadata, so it is reported, and sent with
            // the completion where S3-native checksums are on (`native_checksums`).
            let hasher = Arc::new(Mutex::new(Hasher::new(algo)));
            let parts = reader_parts(
                core,
                head,
                head_permit,
                (!ended).then_some(r),
                ps,
                hasher.clone(),
            );
            let (etag, attempts, bytes) = MultipartUpload {
                core,
                bucket,
                key,
                opts: &opts,
                copy_from: None,
                progress: progress.as_ref(),
                total: None,
                checksum: (algo != ChecksumAlgorithm::None).then_some(algo),
                journal: None,
            }
            .run(parts, || Ok(stream_sum(&hasher)))
            .await?;
            let sum = stream_sum(&hasher);
            Ok(result(bytes, etag, attempts, true, sum))
        }
    }
}

/// A reader that must yield exactly `expected` bytes: running long fails at the
/// first byte too many, ending short fails at the end — before the upload that
/// reads it can commit anything.
struct ExactSize {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    expected: u64,
    read: u64,
}

impl ExactSize {
    fn new(inner: Box<dyn AsyncRead + Send + Unpin>, expected: u64) -> ExactSize {
        ExactSize {
            inner,
            expected,
            read: 0,
        }
    }

    fn wrong(&self, what: String) -> std::io::Error {
        std::io::Error::other(Error::new(
            ErrorKind::Integrity,
            format!(
                "{what}, not the {} bytes expected (--expected-size); nothing was stored",
                self.expected
            ),
        ))
    }
}

impl AsyncRead for ExactSize {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        self.read += n;
        let res = if self.read > self.expected {
            Err(self.wrong("the source is longer".to_owned()))
        } else if n == 0 && self.read < self.expected && buf.remaining() > 0 {
            Err(self.wrong(format!("the source ended after {} bytes", self.read)))
        } else {
            Ok(())
        };
        std::task::Poll::Ready(res)
    }
}

/// The checksum of all bytes a stream upload read.
fn stream_sum(hasher: &Mutex<Option<Hasher>>) -> Option<Checksum> {
    hasher
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(Hasher::finish)
}

/// A body as a stream that reports each chunk to `progress` as it is read.
fn counted_stream(whole: &Replay, progress: Progress) -> Body {
    let Replay::Bytes(b) = whole else {
        return whole.body();
    };
    let (b, total) = (b.clone(), whole.len());
    let step = 256 * 1024;
    let chunks = futures::stream::iter(
        (0..b.len())
            .step_by(step)
            .map(move |i| Ok::<_, Error>(b.slice(i..(i + step).min(b.len())))),
    );
    let mut done = 0u64;
    Body::Stream(Box::pin(chunks.inspect_ok(move |c| {
        done += c.len() as u64;
        progress.report(done, Some(total));
    })))
}

/// Files up to this size are read into memory in one go for upload.
const SMALL_FILE: u64 = 1024 * 1024;

/// The checksum of bytes in memory (off the runtime threads when large).
async fn bytes_checksum(algo: ChecksumAlgorithm, b: &Bytes) -> Option<Checksum> {
    if b.len() < 4 * MIB as usize {
        return algo.of(b);
    }
    let b = b.clone();
    tokio::task::spawn_blocking(move || algo.of(&b))
        .await
        .ok()
        .flatten()
}

/// The checksums of a file's `ranges` (in order, covering it), read once before
/// the upload (its pages are then in the cache the upload reads from). Each range
/// is a part (or the whole file): every body checks its own range before its last
/// byte, and together they make the whole file's checksum.
async fn file_checksums(
    algo: ChecksumAlgorithm,
    path: &Path,
    ranges: &[(u64, u64)],
) -> Result<Vec<Option<Checksum>>> {
    if Hasher::new(algo).is_none() {
        return Ok(vec![None; ranges.len()]);
    }
    let (path, ranges) = (path.to_path_buf(), ranges.to_vec());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let read_err = |e| Error::io(format!("reading {}", path.display()), e);
        let mut f = std::fs::File::open(&path).map_err(read_err)?;
        let largest = ranges.iter().map(|(a, z)| z - a).max().unwrap_or(0);
        // Sized to the file: a zeroed 1 MiB buffer per small file was 13% of the
        // CPU of uploading 1000 × 64 KiB files (perf).
        let mut buf = vec![0u8; (largest as usize).clamp(1, MIB as usize)];
        let mut sums = Vec::with_capacity(ranges.len());
        for (a, z) in ranges {
            let mut h = Hasher::new(algo).expect("checked above");
            let mut left = z - a;
            while left > 0 {
                let want = (left as usize).min(buf.len());
                let n = f.read(&mut buf[..want]).map_err(read_err)?;
                if n == 0 {
                    return Err(changed_error(&path, "it ended early"));
                }
                h.update(&buf[..n]);
                left -= n as u64;
            }
            sums.push(Some(h.finish()));
        }
        Ok(sums)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?
}

/// The integrity error for a source file that changed during its upload.
fn changed_error(path: &Path, what: &str) -> Error {
    Error::new(ErrorKind::Integrity, source_changed(path, what))
}

/// Fails if the file's size or modification time moved since the upload started.
fn file_unchanged(path: &Path, len: u64, mtime: Option<SystemTime>) -> Result<()> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let (now, now_mtime) = (meta.len(), meta.modified().ok());
    if now != len {
        return Err(changed_error(
            path,
            &format!("its size went from {len} to {now} bytes"),
        ));
    }
    if now_mtime != mtime {
        return Err(changed_error(path, "it was modified"));
    }
    Ok(())
}

/// Reads up to `limit` bytes into one buffer of exactly that capacity.
async fn read_part(r: &mut (dyn AsyncRead + Send + Unpin), limit: usize) -> Result<Bytes> {
    use bytes::BufMut;
    let mut buf = BytesMut::with_capacity(limit);
    while buf.len() < limit {
        let room = limit - buf.len();
        let n = r
            .read_buf(&mut (&mut buf).limit(room))
            .await
            .map_err(|e| Error::io("reading the upload source", e))?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// Parts of a stream of unknown length: first the head already read, then the rest
/// of the reader, one part at a time. Each part is read only when the uploader
/// asks for one and after its bytes were taken from the byte budget, so at most
/// `max_concurrency` parts per transfer — and the budget across transfers — are in
/// memory.
fn reader_parts<'a>(
    core: &'a Core,
    head: Vec<Bytes>,
    mut head_permit: OwnedSemaphorePermit,
    reader: Option<Box<dyn AsyncRead + Send + Unpin>>,
    ps: u64,
    hasher: Arc<Mutex<Option<Hasher>>>,
) -> impl Stream<Item = Result<Part>> + Send + 'a {
    let hash = move |b: &Bytes| {
        if let Some(h) = hasher.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            h.update(b);
        }
    };
    let head: Vec<_> = head
        .into_iter()
        .map(|b| {
            let n = kib(b.len() as u64).min(head_permit.num_permits() as u32);
            let permit = head_permit.split(n as usize);
            (b, permit)
        })
        .collect();
    let head_count = head.len() as i32;
    let first = futures::stream::iter(
        head.into_iter()
            .enumerate()
            .map(move |(i, (b, p))| Ok::<_, Error>((i as i32 + 1, b, p))),
    );
    let rest =
        futures::stream::try_unfold((reader, head_count + 1), move |(reader, n)| async move {
            let Some(mut r) = reader else { return Ok(None) };
            let permit = core.reserve(ps).await?;
            let b = read_part(r.as_mut(), ps as usize).await?;
            if b.is_empty() {
                return Ok(None);
            }
            if n as u64 > MAX_PARTS {
                return Err(Error::invalid(format!(
                    "the stream is longer than 10 000 parts of {ps} bytes; configure a larger \
                     part_size"
                )));
            }
            let next = ((b.len() as u64) == ps).then_some(r);
            Ok(Some(((n, b, Some(permit)), (next, n + 1))))
        });
    first.chain(rest).map_ok(move |(n, b, p)| {
        hash(&b);
        (n, PartBody::Data(Replay::Bytes(b)), p)
    })
}

async fn put_single(
    core: &Core,
    bucket: &str,
    key: &str,
    body: Body,
    opts: &UploadOptions,
) -> Result<(Option<String>, u32)> {
    let be = &core.backend;
    let cond = opts.condition.as_ref();
    match body.replay() {
        Ok(r) => {
            let len = r.len();
            let sent = core
                .request(|_| be.put_object(bucket, key, core.pace_up(r.body()), opts))
                .await
                .map_err(|e| condition_error(e, cond));
            match sent {
                Err(e) if retried_into_itself(&e, cond) => {
                    ours_after_all(core, bucket, key, len, opts).await?.ok_or(e)
                }
                r => r,
            }
        }
        Err(stream) => {
            // A stream cannot be replayed: one attempt, holding one request permit.
            let _permit = core.requests.acquire().await.map_err(|_| {
                Error::new(
                    ErrorKind::NotInitialized,
                    "the storage service was shut down",
                )
            })?;
            let body = core.pace_up(Body::Stream(stream));
            let etag = be
                .put_object(bucket, key, body, opts)
                .await
                .map_err(|e| condition_error(e, cond))?;
            Ok((etag, 1))
        }
    }
}

/// Refuses what the store cannot do before anything is sent: tags on a store
/// without them, a condition on a store that cannot check it atomically.
pub(super) fn check_write_options(core: &Core, opts: &UploadOptions) -> Result<()> {
    if !opts.tags.is_empty() && !core.caps.tags {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("the {} store keeps no object tags", core.scheme()),
        ));
    }
    if opts.condition.is_some() && !core.caps.conditional_writes {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the {} store cannot check a write's condition atomically; nothing was \
                 written",
                core.scheme()
            ),
        ));
    }
    Ok(())
}

/// A create-only PUT that failed as "exists" after a retry: the attempt that
/// timed out may have been stored, and the retry then ran into it.
fn retried_into_itself(e: &Error, cond: Option<&WriteCondition>) -> bool {
    e.kind() == ErrorKind::AlreadyExists
        && e.attempts() > 1
        && cond == Some(&WriteCondition::IfAbsent)
}

/// Whether the object the key holds is the one this upload sent (its size and
/// the stor checksum it carries are ours): then an earlier attempt of this very
/// upload created it. `None` when it is someone else's, or cannot be told.
async fn ours_after_all(
    core: &Core,
    bucket: &str,
    key: &str,
    len: u64,
    opts: &UploadOptions,
) -> Result<Option<(Option<String>, u32)>> {
    let Some(ours) = crate::checksum::stored_in(&opts.metadata) else {
        return Ok(None);
    };
    let (there, attempts) = core
        .request(|_| core.backend.head_object(bucket, key))
        .await?;
    let same = there.size == len && crate::checksum::stored_in(&there.metadata) == Some(ours);
    Ok(same.then_some((there.etag, attempts)))
}

/// Makes the body of [`Body::Stream`] from an `AsyncRead`.
pub(crate) fn reader_stream(r: Box<dyn AsyncRead + Send + Unpin>) -> ByteStream {
    Box::pin(
        tokio_util::io::ReaderStream::with_capacity(r, 256 * 1024)
            .map_err(|e| Error::io("reading the upload source", e)),
    )
}
