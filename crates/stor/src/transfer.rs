//! The transfer engine: one generic implementation over the backend primitives.
//!
//! Uploads: one PUT up to `multipart_threshold`, else multipart — parts sent
//! concurrently (at most `max_concurrency` per transfer, and every request under the
//! client-wide request budget), each part retried on its own, completed in order,
//! and aborted on any failure *or cancellation* (an abort guard aborts the upload
//! if the future is dropped), so no multipart upload is left behind.
//!
//! Downloads: on backends that take ranges cheaply (S3), the first request reads the
//! first part and learns size and ETag; the rest is read by parallel ranged GETs
//! pinned to that ETag with If-Match, so an object replaced mid-download is an
//! error, never a mixed file. Every range resumes from the last byte received when
//! a connection breaks. Files are written to a temp file beside the target and
//! renamed only when complete.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::backend::{
    source_changed, Backend, Body, CompletedPart, FileRange, PartCopySource, Replay, SourceCheck,
    Tap,
};
use crate::checksum::{self, Checksum, ChecksumAlgorithm, Hasher, Hashers, RangeChecksums};
use crate::config::{MAX_PARTS, MAX_PART_SIZE, MIB, MIN_PART_SIZE};
use crate::destination::{Destination, Sweeps};
use crate::error::{Error, ErrorKind, Result};
use crate::service::{reader_stream, Downloaded, Storage};
use crate::types::{ByteRange, CopyOptions, ObjectInfo, Progress, TransferResult, UploadOptions};

/// Part size used when none is configured (raised as needed to stay within
/// 10 000 parts).
pub const AUTO_PART_SIZE: u64 = 16 * MIB;
/// Largest object S3 stores.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;

/// The part size for an object of `len` bytes: the configured size (or
/// [`AUTO_PART_SIZE`]), raised so the object fits in 10 000 parts, never below
/// 5 MiB or above 5 GiB.
///
/// ```
/// use stor::transfer::part_size;
/// const MIB: u64 = 1024 * 1024;
/// assert_eq!(part_size(100 * MIB, None).unwrap(), 16 * MIB);
/// assert_eq!(part_size(100 * MIB, Some(5 * MIB)).unwrap(), 5 * MIB);
/// // 200 000 MiB in 5 MiB parts would be 40 000 parts: raised to 20 MiB.
/// assert_eq!(part_size(200_000 * MIB, Some(5 * MIB)).unwrap(), 20 * MIB);
/// assert!(part_size(100 * MIB, Some(MIB)).is_err());
/// ```
pub fn part_size(len: u64, configured: Option<u64>) -> Result<u64> {
    if let Some(p) = configured {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&p) {
            return Err(Error::invalid(format!(
                "part size {p} bytes is outside S3's range of 5 MiB to 5 GiB"
            )));
        }
    }
    if len > MAX_OBJECT_SIZE {
        return Err(Error::invalid(format!(
            "{len} bytes is larger than S3's 5 TiB object limit"
        )));
    }
    let wanted = configured.unwrap_or(AUTO_PART_SIZE);
    let min_for_count = len.div_ceil(MAX_PARTS);
    let size = wanted.max(min_for_count).max(MIN_PART_SIZE);
    // Round raised sizes up to a whole MiB, but never past the limit.
    let size = if size > wanted {
        size.div_ceil(MIB) * MIB
    } else {
        size
    };
    Ok(size.min(MAX_PART_SIZE))
}

/// Largest range a download asks for at once when no part size is configured.
pub const MAX_DOWNLOAD_RANGE: u64 = 64 * MIB;

/// The ranges a download fetches after its first response (which ended at
/// `from`). A configured part size is the range size; otherwise the rest is split
/// so every one of `concurrency` requests gets about one range, between
/// [`AUTO_PART_SIZE`] and [`MAX_DOWNLOAD_RANGE`]: fewer, larger GETs cost the
/// server less (A/B on SeaweedFS, 3 runs each: 512 MiB in 64 MiB ranges took 20%
/// less server CPU than in 8 MiB ones, 7% less than in 16 MiB ones) and a download
/// buffers nothing per range, so memory does not grow with it.
///
/// ```
/// use stor::transfer::download_ranges;
/// const MIB: u64 = 1024 * 1024;
/// // 512 MiB after a first 16 MiB, 10 at a time: 10 ranges of 50 MiB (the last short).
/// let r = download_ranges(16 * MIB, 512 * MIB, None, 10);
/// assert_eq!(r.len(), 10);
/// assert_eq!((r[0].start, r[0].end), (16 * MIB, 66 * MIB));
/// assert_eq!(r.last().unwrap().end, 512 * MIB);
/// // A configured part size is honoured.
/// assert_eq!(download_ranges(5 * MIB, 12 * MIB, Some(5 * MIB), 10).len(), 2);
/// ```
pub fn download_ranges(
    from: u64,
    size: u64,
    configured: Option<u64>,
    concurrency: usize,
) -> Vec<ByteRange> {
    let rest = size.saturating_sub(from);
    let step = match configured {
        Some(p) => p.max(1),
        None => rest
            .div_ceil(concurrency.max(1) as u64)
            .div_ceil(MIB)
            .saturating_mul(MIB)
            .clamp(AUTO_PART_SIZE, MAX_DOWNLOAD_RANGE),
    };
    (0..rest.div_ceil(step))
        .map(|i| ByteRange {
            start: from + i * step,
            end: (from + (i + 1) * step).min(size),
        })
        .collect()
}

/// Number of parts for `len` bytes in parts of `part` bytes (at least one).
pub fn part_count(len: u64, part: u64) -> u64 {
    len.div_ceil(part).max(1)
}

/// Where an upload's bytes come from.
pub(crate) enum Source {
    /// A file; its length is read when the upload starts.
    File(PathBuf),
    Bytes(Bytes),
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

/// Byte-budget permits count KiB, so a `u32` covers any budget.
pub(crate) fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as u64) as u32
}

/// Takes `bytes` from the client-wide byte budget (all at once, so a transfer never
/// holds part of what it needs while waiting for the rest).
async fn reserve(s: &Storage, bytes: u64) -> Result<OwnedSemaphorePermit> {
    let n = kib(bytes).min(s.inner.buffer_permits);
    s.inner
        .buffers
        .clone()
        .acquire_many_owned(n)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::NotInitialized,
                "the storage service was shut down",
            )
        })
}

/// What a part is made of: bytes sent, or a range of another object copied
/// server-side (UploadPartCopy).
enum PartBody {
    Data(Replay),
    Copy(ByteRange),
}

/// One part of a multipart upload: number, body, and the byte-budget share its
/// buffer holds (released once the part is stored).
type Part = (i32, PartBody, Option<OwnedSemaphorePermit>);

pub(crate) async fn upload(
    s: &Storage,
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
            Some((meta.len(), meta.modified().ok()))
        }
        _ => None,
    };
    s.ensure_bucket(bucket).await?;
    let be = s.inner.backend.clone();
    let cfg = &s.inner.config;
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
    };
    match src {
        Source::Bytes(_) | Source::File(_) => {
            // Known length and replayable: checksum first (it goes into the metadata
            // the upload starts with), then one PUT or parts of the same source. A
            // file is read twice — once for the checksum, once to send — so every
            // body re-checks what it sends before its last byte (see FileRange):
            // a file changed in between fails before anything is committed.
            let len = match (&src, file_meta) {
                (Source::Bytes(b), _) => b.len() as u64,
                (_, Some((len, _))) => len,
                _ => unreachable!("a file was looked at above"),
            };
            if let Some(n) = opts.expected_size.filter(|n| *n != len) {
                return Err(Error::invalid(format!(
                    "the source has {len} bytes, not the {n} expected; nothing was stored"
                )));
            }
            let in_parts = be.supports_multipart() && len > threshold;
            let ps = if in_parts {
                part_size(len, cfg.part_size)?
            } else {
                len.max(1)
            };
            let ranges: Vec<(u64, u64)> = (0..part_count(len, ps))
                .map(|i| (i * ps, ((i + 1) * ps).min(len)))
                .collect();
            let done = Arc::new(AtomicU64::new(0));
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
                    let (_, mtime) = file_meta.expect("looked at above");
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
                        let sums = file_checksums(algo, &path, &ranges).await?;
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
            report(0, Some(len));
            // A file's bodies report progress as they are read; bytes as stored.
            let store_progress = check.is_none().then_some(progress.as_ref()).flatten();
            if in_parts {
                let parts = futures::stream::iter(
                    bodies
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| Ok((i as i32 + 1, PartBody::Data(b), None))),
                );
                let verify = move || {
                    if let Some((path, len, mtime)) = &check {
                        file_unchanged(path, *len, *mtime)?;
                    }
                    Ok(sum)
                };
                let (etag, attempts, bytes) = multipart(
                    s,
                    bucket,
                    key,
                    &opts,
                    parts,
                    None,
                    store_progress,
                    Some(len),
                    sum.map(|c| c.algorithm),
                    verify,
                )
                .await?;
                Ok(result(bytes, etag, attempts, true, sum))
            } else {
                let whole = bodies.into_iter().next().expect("one range");
                // Stores that take streams (local, memory) get bytes as a stream that
                // reports progress as it is read; a file reports through its body.
                let body = match (&whole, store_progress) {
                    (Replay::Bytes(_), Some(p)) if be.accepts_streams() => {
                        counted_stream(&whole, p.clone())
                    }
                    _ => whole.body(),
                };
                let (etag, attempts) = put_single(s, bucket, key, body, &opts).await?;
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
            let budget = u64::from(s.inner.buffer_permits) * 1024;
            let head_parts = (threshold + 1).div_ceil(ps).min((budget / ps).max(1));
            let head_permit = reserve(s, head_parts * ps).await?;
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
                let (etag, attempts) = put_single(s, bucket, key, Body::Bytes(body), &opts).await?;
                drop(head_permit);
                report(head_len, Some(head_len));
                return Ok(result(head_len, etag, attempts, false, sum));
            }
            if be.accepts_streams() {
                // The local store takes a stream of any length in one call. Its bytes
                // never cross a network, so no checksum is stored for them.
                let counted = Arc::new(AtomicU64::new(0));
                let c = counted.clone();
                let rest = if ended { None } else { Some(reader_stream(r)) };
                let stream = futures::stream::iter(head.into_iter().map(Ok))
                    .chain(futures::stream::iter(rest).flatten())
                    .inspect_ok(move |b| {
                        c.fetch_add(b.len() as u64, Ordering::Relaxed);
                    });
                let (etag, attempts) =
                    put_single(s, bucket, key, Body::Stream(Box::pin(stream)), &opts).await?;
                drop(head_permit);
                let n = counted.load(Ordering::Relaxed);
                report(n, Some(n));
                return Ok(result(n, etag, attempts, false, None));
            }
            if !be.supports_multipart() {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "this backend cannot store a stream longer than multipart_threshold",
                ));
            }
            // The checksum of a stream is known only at its end, after the upload
            // was created: too late for metadata, so it is reported, and sent with
            // the completion where S3-native checksums are on (`native_checksums`).
            let hasher = Arc::new(Mutex::new(Hasher::new(algo)));
            let parts = reader_parts(
                s,
                head,
                head_permit,
                (!ended).then_some(r),
                ps,
                hasher.clone(),
            );
            let (etag, attempts, bytes) = multipart(
                s,
                bucket,
                key,
                &opts,
                parts,
                None,
                progress.as_ref(),
                None,
                (algo != ChecksumAlgorithm::None).then_some(algo),
                || Ok(stream_sum(&hasher)),
            )
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
    s: &'a Storage,
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
            let permit = reserve(s, ps).await?;
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
    s: &Storage,
    bucket: &str,
    key: &str,
    body: Body,
    opts: &UploadOptions,
) -> Result<(Option<String>, u32)> {
    let be = &s.inner.backend;
    match body.replay() {
        Ok(r) => {
            s.request(|_| be.put_object(bucket, key, r.body(), opts))
                .await
        }
        Err(stream) => {
            // A stream cannot be replayed: one attempt, holding one request permit.
            let _permit = s.inner.requests.acquire().await.map_err(|_| {
                Error::new(
                    ErrorKind::NotInitialized,
                    "the storage service was shut down",
                )
            })?;
            Ok((
                be.put_object(bucket, key, Body::Stream(stream), opts)
                    .await?,
                1,
            ))
        }
    }
}

/// Aborts started by dropped transfers that have not finished yet.
static PENDING_ABORTS: AtomicU64 = AtomicU64::new(0);

/// Waits (up to `timeout`) for the multipart aborts that cancelled transfers started
/// in the background. Call it before exiting after a cancellation (Ctrl-C), so no
/// multipart upload is left behind. Returns whether all finished.
pub async fn wait_for_pending_aborts(timeout: std::time::Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while PENDING_ABORTS.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    true
}

/// Aborts a multipart upload unless disarmed; on drop (cancellation) it spawns the
/// abort so no upload is left behind even when the caller gives up.
struct AbortGuard {
    backend: Arc<dyn Backend>,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortGuard {
    async fn abort_now(mut self) {
        self.armed = false;
        if let Err(e) = self
            .backend
            .abort_multipart(&self.bucket, &self.key, &self.upload_id)
            .await
        {
            tracing::warn!(bucket = %self.bucket, key = %self.key,
                "could not abort multipart upload: {e}; `stor cleanup` will find it");
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (be, b, k, id) = (
            self.backend.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            PENDING_ABORTS.fetch_add(1, Ordering::SeqCst);
            rt.spawn(async move {
                if let Err(e) = be.abort_multipart(&b, &k, &id).await {
                    tracing::warn!(bucket = %b, key = %k, "could not abort multipart upload: {e}");
                }
                PENDING_ABORTS.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// Multipart upload (of parts sent, or copied from `copy_src`); `before_complete`
/// runs after all parts are stored and may veto completion (e.g. the source file
/// changed); it returns the whole object's checksum (of algorithm `checksum`, as
/// announced at the start), sent with the completion. Progress counts each part
/// once, when it is stored.
#[allow(clippy::too_many_arguments)]
async fn multipart(
    s: &Storage,
    bucket: &str,
    key: &str,
    opts: &UploadOptions,
    parts: impl Stream<Item = Result<Part>> + Send,
    copy_src: Option<&ObjectInfo>,
    progress: Option<&Progress>,
    total: Option<u64>,
    checksum: Option<ChecksumAlgorithm>,
    before_complete: impl FnOnce() -> Result<Option<Checksum>>,
) -> Result<(Option<String>, u32, u64)> {
    let be = s.inner.backend.clone();
    let (upload_id, _) = s
        .request(|_| be.create_multipart(bucket, key, opts, checksum))
        .await?;
    let guard = AbortGuard {
        backend: be.clone(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        upload_id: upload_id.clone(),
        armed: true,
    };
    let max_attempts = AtomicU32::new(1);
    let sent = AtomicU64::new(0);
    let work = async {
        let conc = s.inner.config.max_concurrency;
        let id = upload_id.as_str();
        let be = &be;
        let max_attempts = &max_attempts;
        let sent = &sent;
        let mut done: Vec<CompletedPart> = parts
            .map(|p| async move {
                let (n, body, permit) = p?;
                let sent_part = match &body {
                    PartBody::Data(b) => {
                        s.request(|_| be.upload_part(bucket, key, id, n, b.body(), checksum))
                            .await
                    }
                    PartBody::Copy(range) => {
                        let src = copy_src.expect("copied parts have a source");
                        let from = PartCopySource {
                            bucket: &src.bucket,
                            key: &src.key,
                            etag: src.etag.as_deref(),
                            range: *range,
                        };
                        s.request(|_| be.upload_part_copy(&from, bucket, key, id, n))
                            .await
                            .map(|(etag, attempts)| {
                                let part = CompletedPart {
                                    part_number: n,
                                    etag,
                                    checksum: None,
                                };
                                (part, attempts)
                            })
                            .map_err(changed)
                    }
                };
                let len = match &body {
                    PartBody::Data(b) => b.len(),
                    PartBody::Copy(r) => r.end - r.start,
                };
                let (part, attempts) = sent_part.map_err(|e| e.prefixed(&format!("part {n}")))?;
                drop((body, permit));
                max_attempts.fetch_max(attempts, Ordering::Relaxed);
                let now = sent.fetch_add(len, Ordering::Relaxed) + len;
                if let Some(p) = progress {
                    p.report(now, total);
                }
                Ok::<_, Error>(part)
            })
            .buffer_unordered(conc)
            .try_collect()
            .await?;
        let whole = before_complete()?;
        done.sort_by_key(|p| p.part_number);
        let (etag, attempts) = s
            .request(|_| be.complete_multipart(bucket, key, id, &done, whole.as_ref()))
            .await?;
        max_attempts.fetch_max(attempts, Ordering::Relaxed);
        Ok::<_, Error>(etag)
    };
    // NoSuchUpload mid-transfer: someone aborted it (another process's cleanup),
    // not a missing key.
    let work = async {
        work.await.map_err(|e| {
            if e.code() != Some("NoSuchUpload") {
                return e;
            }
            Error::new(
                ErrorKind::Cancelled,
                "the multipart upload was aborted by someone else while it ran (another \
                 process's `stor cleanup`?); nothing was stored — upload again",
            )
            .with_attempts(e.attempts(), e.elapsed().unwrap_or_default())
        })
    };
    match work.await {
        Ok(etag) => {
            let mut guard = guard;
            guard.armed = false;
            Ok((
                etag,
                max_attempts.load(Ordering::Relaxed),
                sent.load(Ordering::Relaxed),
            ))
        }
        Err(e) => {
            guard.abort_now().await;
            Err(e)
        }
    }
}

// ---------------------------------------------------------------- downloads

/// Receives downloaded bytes at their offset in the object.
type Sink<'a> = &'a (dyn Fn(u64, &[u8]) -> Result<()> + Sync);

/// Reads `start..end` of the object into `sink`, resuming from the last byte
/// received after a broken connection, all within the one retry layer. With
/// `etag`, the object must still be that version (If-Match). Each piece that
/// arrives is checksummed into `sums` when given. Returns attempts made.
#[allow(clippy::too_many_arguments)]
async fn fetch_range(
    s: &Storage,
    bucket: &str,
    key: &str,
    start: u64,
    end: u64,
    etag: Option<&str>,
    sink: Sink<'_>,
    sums: Option<(ChecksumAlgorithm, &RangeChecksums)>,
) -> Result<u32> {
    let be = &s.inner.backend;
    let pos = AtomicU64::new(start);
    let (_, attempts) = s
        .request(|_| async {
            let p = pos.load(Ordering::SeqCst);
            if p >= end {
                return Ok(());
            }
            let range = Some(ByteRange { start: p, end });
            let resp = be
                .get_object(bucket, key, range, etag)
                .await
                .map_err(changed)?;
            let mut body = resp.body;
            let algos = match &sums {
                Some((a, _)) => std::slice::from_ref(a),
                None => &[],
            };
            let (n, h, broken) = drain(&mut body, p, end, sink, algos).await?;
            if let (Some(h), Some((algo, all))) = (h, sums) {
                if let Some(c) = h.finish(algo) {
                    all.add(p, c);
                }
            }
            pos.fetch_add(n, Ordering::SeqCst);
            if let Some(e) = broken {
                return Err(e);
            }
            if pos.load(Ordering::SeqCst) < end {
                return Err(Error::new(
                    ErrorKind::Transient,
                    "the connection closed before the whole body arrived",
                ));
            }
            Ok(())
        })
        .await?;
    Ok(attempts)
}

/// Writes a body to `sink` from offset `at`, never past `end`, chunk by chunk as
/// the network delivers them. (Gathering chunks into 1 MiB writes was measured: it
/// cost more CPU in copies than it saved in syscalls, W2 0.55 s -> 0.72 s.)
/// Returns the bytes written, their checksums in `algos`, and the error that broke
/// the body, if one did (the bytes before it are written, so a retry resumes after
/// them).
async fn drain(
    body: &mut crate::backend::ByteStream,
    at: u64,
    end: u64,
    sink: Sink<'_>,
    algos: &[ChecksumAlgorithm],
) -> Result<(u64, Option<Hashers>, Option<Error>)> {
    let mut written = 0u64;
    let mut hasher = Hashers::new(algos);
    let mut broken = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                broken = Some(e);
                break;
            }
        };
        if at + written + chunk.len() as u64 > end {
            return Err(Error::new(
                ErrorKind::Integrity,
                "the server sent more bytes than the range asked for",
            ));
        }
        sink(at + written, &chunk)?;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        written += chunk.len() as u64;
    }
    Ok((written, hasher, broken))
}

fn changed(e: Error) -> Error {
    if e.kind() == ErrorKind::PreconditionFailed {
        Error::new(
            ErrorKind::PreconditionFailed,
            "the object changed during the download (its ETag no longer matches) — \
             download it again",
        )
    } else {
        e
    }
}

/// What the first response of a download told, handed to the other ranges.
struct First {
    size: u64,
    etag: Option<String>,
    /// Bytes the first response carries.
    len: u64,
    /// The checksum to expect, when the headers named one.
    known: Option<(ChecksumAlgorithm, String)>,
}

/// How [`fetch_object`] reads: `size_hint` is the size a listing told (an object
/// that fits in a part then takes one plain GET); `sequential` reads in order, in
/// one request resumed from its last byte (for a FIFO or device).
#[derive(Default, Clone, Copy)]
struct Fetch {
    size_hint: Option<u64>,
    sequential: bool,
}

/// What [`fetch_object`] got: the object's info, attempts, and the checksum it
/// verified (when the object has one: stor's, or an S3-native one).
struct Fetched {
    info: ObjectInfo,
    attempts: u32,
    verified: Option<Checksum>,
}

/// Fetches the whole object into `sink`. The first request reads the first part (or,
/// on backends without cheap ranges, everything) and tells the size, handed to
/// `on_size` before any byte; the rest is read in parallel ranges pinned to the
/// first response's ETag. When the object carries a stor checksum, every range is
/// checksummed as it arrives and the joined result must match, else the download
/// fails with an integrity error before the caller keeps anything. Objects without
/// one are checked against their S3-native full-object checksum where the backend
/// uses those: its algorithm is learnt (HEAD, same ETag) while the first range
/// arrives, which is therefore checksummed in every algorithm stor knows.
async fn fetch_object(
    s: &Storage,
    bucket: &str,
    key: &str,
    on_size: &(dyn Fn(u64) -> Result<()> + Sync),
    sink: Sink<'_>,
    progress: Option<&Progress>,
    how: Fetch,
) -> Result<Fetched> {
    let Fetch {
        size_hint,
        sequential,
    } = how;
    let be = &s.inner.backend;
    // In order (a FIFO, a device) means one request, resumed from its last byte.
    let parallel = be.supports_multipart() && !sequential;
    let ps = s.inner.config.part_size.unwrap_or(AUTO_PART_SIZE);
    // An object known (from a listing) to fit in one part is fetched with a plain
    // GET: measured on SeaweedFS, 1000 × 64 KiB cost the server 7% less CPU than
    // the same GETs with a Range, and the whole-object answer carries the native
    // checksum. Otherwise the first part is asked for and the size learnt from it.
    let whole = size_hint.is_some_and(|n| n <= ps);
    let range = (parallel && !whole).then_some(ByteRange { start: 0, end: ps });
    let native = be.native_checksums();
    let done = AtomicU64::new(0);
    let size_seen = AtomicU64::new(0);
    let counted = |off: u64, data: &[u8]| -> Result<()> {
        sink(off, data)?;
        let now = done.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
        if let Some(p) = progress {
            p.report(now, Some(size_seen.load(Ordering::Relaxed)));
        }
        Ok(())
    };
    let sink: Sink<'_> = if progress.is_some() { &counted } else { sink };
    // The first response tells the size (and the checksum to expect); the other
    // ranges start as soon as its headers are in, while its body is still being
    // read — not after it (which cost a whole first part's transfer time of idle
    // connections on every large download).
    let (told, heard) = futures::channel::oneshot::channel::<First>();
    let told = Mutex::new(Some(told));
    // Once the others started on a version, a retried first request must read
    // that same version.
    let pinned: Mutex<Option<String>> = Mutex::new(None);
    // The first response's body is read inside its request, under its permit, so
    // requests in flight (and connections) never exceed the pool.
    let first = s.request(|_| async {
        let pin = pinned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let pin = pin.as_deref();
        let resp = match be.get_object(bucket, key, range, pin).await {
            // A range of an empty object is "not satisfiable": read it whole.
            Err(e) if e.status() == Some(416) => be.get_object(bucket, key, None, pin).await,
            r => r,
        }
        .map_err(changed)?;
        on_size(resp.info.size)?;
        size_seen.store(resp.info.size, Ordering::Relaxed);
        let known = checksum::stored_in(&resp.info.metadata).or(resp.checksum);
        let algos = match &known {
            Some((a, _)) => vec![*a],
            None if native => checksum::STORED.to_vec(),
            None => Vec::new(),
        };
        if let Some(t) = told.lock().unwrap_or_else(|p| p.into_inner()).take() {
            *pinned.lock().unwrap_or_else(|p| p.into_inner()) = resp.info.etag.clone();
            let _ = t.send(First {
                size: resp.info.size,
                etag: resp.info.etag.clone(),
                len: resp.content_length,
                known,
            });
        }
        let mut body = resp.body;
        let (got, h, broken) = drain(&mut body, 0, resp.content_length, sink, &algos).await?;
        Ok((resp.info, resp.content_length, got, h, broken))
    });
    let sums = RangeChecksums::default();
    let rest = async {
        // No headers ever (the first request failed): `first` carries the error.
        let Ok(head) = heard.await else {
            return futures::future::pending().await;
        };
        let etag = head.etag.as_deref();
        let mut attempts = 0;
        let expected = match head.known {
            Some(k) => Some(k),
            None if native => {
                let (n, tries) = s
                    .request(|_| be.native_checksum(bucket, key, etag))
                    .await
                    .map_err(changed)?;
                attempts = tries;
                n
            }
            None => None,
        };
        let hashing = expected.as_ref().map(|(a, _)| (*a, &sums));
        if parallel && head.size > head.len {
            // With the first request still reading, one fewer at a time.
            let conc = s.inner.config.max_concurrency;
            let ranges = download_ranges(head.len, head.size, s.inner.config.part_size, conc);
            let more: Vec<u32> = futures::stream::iter(ranges)
                .map(|r| fetch_range(s, bucket, key, r.start, r.end, etag, sink, hashing))
                .buffer_unordered(conc.saturating_sub(1).max(1))
                .try_collect()
                .await?;
            attempts = attempts.max(more.into_iter().max().unwrap_or(1));
        }
        Ok::<_, Error>((expected, attempts))
    };
    let (((info, first_len, got, first_sums, broken), first_attempts), (expected, more)) =
        futures::try_join!(first, rest)?;
    let mut attempts = first_attempts.max(more);
    let size = info.size;
    if let Some(e) = broken.filter(|e| !e.is_retryable()) {
        return Err(e);
    }
    let etag = info.etag.as_deref();
    let hashing = expected.as_ref().map(|(a, _)| (*a, &sums));
    // (A first range not checksummed in the expected algorithm leaves a gap, which
    // verification reports as an integrity error.)
    if let (Some(h), Some((algo, _))) = (first_sums, &expected) {
        if let Some(c) = h.finish(*algo) {
            sums.add(0, c);
        }
    }
    if got < first_len {
        // The connection broke: resume the rest of the first range, same version.
        attempts += fetch_range(s, bucket, key, got, first_len, etag, sink, hashing).await?;
    }
    let verified = match &expected {
        Some(exp) => {
            let got = sums.join(size);
            checksum::verify(exp, got)?;
            got
        }
        None => None,
    };
    Ok(Fetched {
        info,
        attempts,
        verified,
    })
}

/// Sizes the temp file. Large ones get their blocks reserved up front (like
/// rclone's preallocation): the parallel ranges then write into allocated extents
/// instead of allocating block by block, and a full disk fails at once, before
/// any byte is fetched (filesystems without fallocate: set_len). Small files are
/// left to grow with their writes: one syscall less per file, which shows when
/// thousands are downloaded.
fn allocate(file: &std::fs::File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if size < 8 << 20 {
        return Ok(());
    }
    // SAFETY: a valid open descriptor; fallocate only reads its arguments.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    file.set_len(size)
}

/// Where a file download goes: the path, and for recursive downloads the
/// directory it must stay in (see [`crate::destination`]).
pub(crate) struct FileTarget<'a> {
    pub path: &'a Path,
    pub root: Option<&'a Path>,
    pub sweeps: &'a Sweeps,
}

pub(crate) async fn download_to_file(
    s: &Storage,
    bucket: &str,
    key: &str,
    target: FileTarget<'_>,
    progress: Option<&Progress>,
    size_hint: Option<u64>,
) -> Result<TransferResult> {
    let start = Instant::now();
    let path = target.path;
    let result = |info: ObjectInfo, got: Fetched| TransferResult {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        bytes: info.size,
        etag: info.etag,
        attempts: got.attempts,
        elapsed: start.elapsed(),
        multipart: false,
        checksum: got.verified.map(|c| c.label()),
    };
    // Opening is a few syscalls, done on this thread (a hop to the blocking pool per
    // file shows when thousands are downloaded); only a FIFO's open may wait.
    let tmp = match Destination::open(path, target.root, target.sweeps)? {
        Destination::File(tmp) => tmp,
        Destination::Stream(dev) => {
            let at = dev.clone();
            let file = tokio::task::spawn_blocking(move || {
                std::fs::OpenOptions::new().write(true).open(&at)
            })
            .await
            .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?
            .map_err(|e| Error::io(format!("opening {}", dev.display()), e))?;
            return stream_into(s, bucket, key, &file, &dev, progress)
                .await
                .map(|(info, got)| result(info, got));
        }
    };
    let file = &tmp.file;
    let on_size = |size: u64| -> Result<()> {
        allocate(file, size).map_err(|e| Error::io(format!("allocating {}", path.display()), e))
    };
    // Positional writes of ≤ 256 KiB chunks go to the page cache; doing them on the
    // runtime thread avoids a thread hop per chunk.
    let sink = |off: u64, data: &[u8]| -> Result<()> {
        file.write_all_at(data, off)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    };
    let got = fetch_object(
        s,
        bucket,
        key,
        &on_size,
        &sink,
        progress,
        Fetch {
            size_hint,
            sequential: false,
        },
    )
    .await
    .map_err(nothing_kept)?;
    let info = got.info.clone();
    let written = file
        .metadata()
        .map_err(|e| Error::io(format!("checking {}", path.display()), e))?
        .len();
    if written != info.size {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!("wrote {written} bytes but the object has {}", info.size),
        ));
    }
    if s.inner.config.fsync_downloads {
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
    }
    tmp.persist()?;
    Ok(result(info, got))
}

/// An integrity error of a download whose bytes were dropped (a temp file
/// removed, a buffer freed) says so.
fn nothing_kept(e: Error) -> Error {
    if !matches!(
        e.kind(),
        ErrorKind::Integrity | ErrorKind::PreconditionFailed
    ) {
        return e;
    }
    let msg = format!("{}; nothing was kept", e.message());
    Error::new(e.kind(), msg).with_attempts(e.attempts(), e.elapsed().unwrap_or_default())
}

/// Streams an object in order into a FIFO or device: one request, resumed from its
/// last byte, verified at the end (by then the bytes are gone: the error says so).
async fn stream_into(
    s: &Storage,
    bucket: &str,
    key: &str,
    file: &std::fs::File,
    path: &Path,
    progress: Option<&Progress>,
) -> Result<(ObjectInfo, Fetched)> {
    use std::io::Write;
    let next = AtomicU64::new(0);
    let sink = |off: u64, data: &[u8]| -> Result<()> {
        if off != next.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Other,
                "bytes for a stream destination arrived out of order",
            ));
        }
        (&*file)
            .write_all(data)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        next.fetch_add(data.len() as u64, Ordering::SeqCst);
        Ok(())
    };
    let got = fetch_object(
        s,
        bucket,
        key,
        &|_| Ok(()),
        &sink,
        progress,
        Fetch {
            size_hint: None,
            sequential: true,
        },
    )
    .await
    .map_err(|e| {
        let sent = next.load(Ordering::SeqCst);
        if sent == 0 {
            return e;
        }
        let msg = format!(
            "{}; {sent} bytes had already been written to {}, which cannot be taken back",
            e.message(),
            path.display()
        );
        Error::new(e.kind(), msg).with_attempts(e.attempts(), e.elapsed().unwrap_or_default())
    })?;
    Ok((got.info.clone(), got))
}

pub(crate) async fn download_to_memory(
    s: &Storage,
    bucket: &str,
    key: &str,
    progress: Option<&Progress>,
) -> Result<Downloaded> {
    let start = Instant::now();
    let buf: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    let on_size = |size: u64| -> Result<()> {
        buf.lock()
            .unwrap_or_else(|x| x.into_inner())
            .resize(size as usize, 0);
        Ok(())
    };
    let sink = |off: u64, data: &[u8]| -> Result<()> {
        let mut b = buf.lock().unwrap_or_else(|x| x.into_inner());
        let end = off as usize + data.len();
        if end > b.len() {
            b.resize(end, 0);
        }
        b[off as usize..end].copy_from_slice(data);
        Ok(())
    };
    let got = fetch_object(s, bucket, key, &on_size, &sink, progress, Fetch::default())
        .await
        .map_err(nothing_kept)?;
    let info = got.info;
    let data = Bytes::from(buf.into_inner().unwrap_or_else(|x| x.into_inner()));
    if data.len() as u64 != info.size {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "received {} bytes but the object has {}",
                data.len(),
                info.size
            ),
        ));
    }
    let result = TransferResult {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        bytes: info.size,
        etag: info.etag.clone(),
        attempts: got.attempts,
        elapsed: start.elapsed(),
        multipart: false,
        checksum: got.verified.map(|c| c.label()),
    };
    Ok(Downloaded { data, info, result })
}

/// A whole-object stream that checksums what passes and, when the object carries a
/// stor checksum, ends with an integrity error instead of a clean end on a mismatch.
pub(crate) fn verified_stream(
    body: crate::backend::ByteStream,
    expected: (ChecksumAlgorithm, String),
) -> crate::backend::ByteStream {
    let Some(h) = Hasher::new(expected.0) else {
        return body;
    };
    Box::pin(futures::stream::unfold(
        (body, Some(h), expected),
        |(mut body, mut h, exp)| async move {
            let hasher = h.as_mut()?;
            match body.next().await {
                Some(Ok(c)) => {
                    hasher.update(&c);
                    Some((Ok(c), (body, h, exp)))
                }
                Some(Err(e)) => Some((Err(e), (body, None, exp))),
                None => match checksum::verify(&exp, Some(hasher.finish())) {
                    Ok(()) => None,
                    Err(e) => Some((Err(e), (body, None, exp))),
                },
            }
        },
    ))
}

/// The byte ranges a multipart copy of `size` bytes is made of: parts of
/// [`part_size`] (the configured size honoured), none over 5 GiB, at most 10 000.
///
/// ```
/// use stor::transfer::copy_ranges;
/// const MIB: u64 = 1024 * 1024;
/// // A 6 GiB object copied in 5 MiB parts: 1229 ranges, the last one short.
/// let r = copy_ranges(6 * 1024 * MIB, Some(5 * MIB)).unwrap();
/// assert_eq!(r.len(), 1229);
/// assert_eq!((r[0].start, r[0].end), (0, 5 * MIB));
/// assert_eq!(r.last().unwrap().end, 6 * 1024 * MIB);
/// ```
pub fn copy_ranges(size: u64, configured: Option<u64>) -> Result<Vec<ByteRange>> {
    let ps = part_size(size, configured)?;
    Ok((0..part_count(size, ps))
        .map(|i| ByteRange {
            start: i * ps,
            end: ((i + 1) * ps).min(size),
        })
        .collect())
}

/// The headers and metadata a copy carries over when it cannot use S3's COPY
/// directive (a multipart copy starts a new upload).
pub(crate) fn options_of(info: &ObjectInfo) -> UploadOptions {
    let mut metadata = info.metadata.clone();
    metadata.remove(crate::service::MOVE_MARKER);
    UploadOptions {
        content_type: info.content_type.clone(),
        metadata,
        cache_control: info.cache_control.clone(),
        content_disposition: info.content_disposition.clone(),
        content_encoding: info.content_encoding.clone(),
        storage_class: info.storage_class.clone(),
        ..UploadOptions::default()
    }
}

/// Server-side copy; the source's HEAD gives the size and a clear error (bucket or
/// key missing) before anything is written. Objects over `multipart_threshold` are
/// copied by concurrent UploadPartCopy requests pinned to the source's ETag (the
/// only way past S3's 5 GiB CopyObject limit, and faster for large objects), with
/// the source's headers and metadata. The stor checksum travels with the object,
/// also when the metadata is replaced (the bytes are the same).
pub(crate) async fn copy(
    s: &Storage,
    sb: &str,
    sk: &str,
    db: &str,
    dk: &str,
    opts: &CopyOptions,
) -> Result<TransferResult> {
    let start = Instant::now();
    let be = &s.inner.backend;
    let (src, _) = s.request(|_| be.head_object(sb, sk)).await?;
    s.ensure_bucket(db).await?;
    let sum = checksum::stored_in(&src.metadata);
    let mut replace = opts.replace.clone();
    if let (Some(r), Some((algo, value))) = (&mut replace, &sum) {
        r.metadata.retain(|k, _| !checksum::is_reserved(k));
        r.metadata.insert(algo.metadata_key(), value.clone());
    }
    let cfg = &s.inner.config;
    let multipart_copy = be.supports_multipart() && src.size > cfg.multipart_threshold;
    let (etag, attempts) = if multipart_copy {
        let ranges = copy_ranges(src.size, cfg.part_size)?;
        let parts = futures::stream::iter(
            ranges
                .into_iter()
                .enumerate()
                .map(|(i, r)| Ok((i as i32 + 1, PartBody::Copy(r), None))),
        );
        let new_opts = replace.unwrap_or_else(|| options_of(&src));
        let (etag, attempts, _) = multipart(
            s,
            db,
            dk,
            &new_opts,
            parts,
            Some(&src),
            None,
            None,
            None,
            || Ok(None),
        )
        .await?;
        (etag, attempts)
    } else {
        s.request(|_| be.copy_object(sb, sk, db, dk, replace.as_ref()))
            .await?
    };
    Ok(TransferResult {
        bucket: db.to_owned(),
        key: dk.to_owned(),
        bytes: src.size,
        etag,
        attempts,
        elapsed: start.elapsed(),
        multipart: multipart_copy,
        checksum: sum.map(|(a, v)| format!("{}:{v}", a.name())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_edges() {
        // The automatic size, and a configured one honoured.
        assert_eq!(part_size(0, None).unwrap(), AUTO_PART_SIZE);
        assert_eq!(part_size(1, Some(MIN_PART_SIZE)).unwrap(), MIN_PART_SIZE);
        // Exactly 10 000 parts of 5 MiB fit; one byte more raises the part size.
        let max_at_min = MAX_PARTS * MIN_PART_SIZE;
        assert_eq!(
            part_size(max_at_min, Some(MIN_PART_SIZE)).unwrap(),
            MIN_PART_SIZE
        );
        let raised = part_size(max_at_min + 1, Some(MIN_PART_SIZE)).unwrap();
        assert_eq!(raised, 6 * MIB);
        assert!(part_count(max_at_min + 1, raised) <= MAX_PARTS);
        // Out of range configured sizes are refused.
        assert!(part_size(10, Some(MIN_PART_SIZE - 1)).is_err());
        assert!(part_size(10, Some(MAX_PART_SIZE + 1)).is_err());
        assert_eq!(part_size(10, Some(MAX_PART_SIZE)).unwrap(), MAX_PART_SIZE);
        // Over 5 TiB is refused.
        assert!(part_size(MAX_OBJECT_SIZE + 1, None).is_err());
        assert!(
            part_count(MAX_OBJECT_SIZE, part_size(MAX_OBJECT_SIZE, None).unwrap()) <= MAX_PARTS
        );
    }

    #[test]
    fn download_ranges_cover_the_rest_exactly() {
        assert!(download_ranges(10, 10, None, 10).is_empty());
        assert!(download_ranges(0, 0, Some(5 * MIB), 4).is_empty());
        for (from, size, conf, conc) in [
            (16 * MIB, 16 * MIB + 1, None, 10),
            (16 * MIB, 40 * MIB, None, 10),
            (16 * MIB, 5000 * MIB + 3, None, 10),
            (16 * MIB, 512 * MIB, None, 1),
            (5 * MIB, 12 * MIB, Some(5 * MIB), 10),
            (8 * MIB, 100 * MIB + 1, Some(8 * MIB), 0),
        ] {
            let r = download_ranges(from, size, conf, conc);
            let mut at = from;
            for x in &r {
                assert_eq!(x.start, at, "contiguous");
                assert!(x.end > x.start && x.end <= size);
                let len = x.end - x.start;
                match conf {
                    Some(p) => assert!(len <= p),
                    None => assert!(len <= MAX_DOWNLOAD_RANGE),
                }
                at = x.end;
            }
            assert_eq!(at, size, "{from} {size} {conf:?} {conc}");
        }
        // One range per request at most, unless the cap splits it further.
        assert_eq!(download_ranges(16 * MIB, 512 * MIB, None, 10).len(), 10);
        assert_eq!(download_ranges(16 * MIB, 512 * MIB, None, 2).len(), 8);
        assert_eq!(download_ranges(16 * MIB, 20 * MIB, None, 10).len(), 1);
    }

    #[test]
    fn part_counts_with_a_one_byte_last_part() {
        assert_eq!(part_count(0, MIN_PART_SIZE), 1);
        assert_eq!(part_count(MIN_PART_SIZE, MIN_PART_SIZE), 1);
        assert_eq!(part_count(MIN_PART_SIZE + 1, MIN_PART_SIZE), 2);
        assert_eq!(part_count(3 * MIN_PART_SIZE + 1, MIN_PART_SIZE), 4);
    }
}
