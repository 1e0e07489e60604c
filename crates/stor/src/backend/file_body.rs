//! File ranges as upload bodies, checked before their last byte.
//!
//! Every backend reads a [`Body::File`](super::Body::File) through [`FileBody`]:
//! positional reads off the runtime, each chunk checksummed as it passes. When the
//! range carries a [`SourceCheck`] (every upload of a file does), the body verifies
//! it *before* handing on its last chunk: the bytes read must have the checksum
//! computed when the upload started, and the file must still have the size and
//! modification time it had then. A range that fails ends with an
//! [`ErrorKind::Integrity`] error instead of its last chunk, so neither a server nor
//! the local store ever receives a whole body of changed bytes: nothing is
//! committed and the previous object stays.
//!
//! Hand-written rather than the SDK's `ByteStream::read_from()` (which reads a path
//! too): that one cannot check anything before its last chunk, and the local and
//! memory stores need the same checks.

use std::fmt;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::bandwidth::Limiter;
use crate::checksum::{Checksum, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::types::Progress;

/// Bytes read per chunk (the SDK's file bodies use the same).
const CHUNK: u64 = 256 * 1024;

/// `len` bytes of a file from `offset`, re-opened for each attempt.
#[derive(Clone)]
pub struct FileRange {
    /// The file.
    pub path: PathBuf,
    /// First byte.
    pub offset: u64,
    /// Bytes to send.
    pub len: u64,
    /// What the bytes must be when the last one is read.
    pub check: Option<SourceCheck>,
    progress: Option<Tap>,
    pace: Option<Arc<Limiter>>,
}

impl FileRange {
    /// A range without checks.
    pub fn new(path: impl Into<PathBuf>, offset: u64, len: u64) -> FileRange {
        FileRange {
            path: path.into(),
            offset,
            len,
            check: None,
            progress: None,
            pace: None,
        }
    }

    /// The range with `check` verified before its last byte.
    pub fn checked(mut self, check: SourceCheck) -> FileRange {
        self.check = Some(check);
        self
    }

    pub(crate) fn with_progress(mut self, tap: Option<Tap>) -> FileRange {
        self.progress = tap;
        self
    }

    /// The range read no faster than `limiter` allows (a bandwidth limit).
    pub(crate) fn paced(mut self, limiter: Arc<Limiter>) -> FileRange {
        self.pace = Some(limiter);
        self
    }

    /// The bytes, as a stream (and an HTTP body) that runs the checks.
    pub fn body(&self) -> FileBody {
        FileBody {
            path: self.path.clone(),
            file: None,
            start: self.offset,
            pos: self.offset,
            end: self.offset + self.len,
            hasher: self
                .check
                .as_ref()
                .and_then(|c| c.checksum)
                .and_then(|c| Hasher::new(c.algorithm)),
            check: self.check.clone(),
            progress: self.progress.clone(),
            pending: None,
            done: false,
            pace: self.pace.clone(),
            granted: None,
            wait: None,
        }
    }

    /// The error the checks ended a body with, if one did: a transport that
    /// reports the body's failure as its own (a dropped connection) is told apart
    /// by this.
    pub fn failure(&self) -> Option<Error> {
        self.check.as_ref().and_then(SourceCheck::failure)
    }
}

impl fmt::Debug for FileRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileRange({}, {}+{}{})",
            self.path.display(),
            self.offset,
            self.len,
            if self.check.is_some() {
                ", checked"
            } else {
                ""
            }
        )
    }
}

/// What a file range must be when its last byte is read: its checksum, and the
/// file's size and modification time, as seen when the upload started.
#[derive(Clone, Debug)]
pub struct SourceCheck {
    /// The checksum of the range's bytes (none when checksums are off: then only
    /// size and modification time are checked).
    pub checksum: Option<Checksum>,
    /// The whole file's size.
    pub size: u64,
    /// The file's modification time.
    pub modified: Option<SystemTime>,
    failed: Arc<OnceLock<String>>,
}

impl SourceCheck {
    /// A check of a file that had `size` bytes and `modified` when it was read.
    pub fn new(checksum: Option<Checksum>, size: u64, modified: Option<SystemTime>) -> SourceCheck {
        SourceCheck {
            checksum,
            size,
            modified,
            failed: Arc::default(),
        }
    }

    /// The same file facts for another range of the file, with its own checksum.
    pub fn for_range(&self, checksum: Option<Checksum>) -> SourceCheck {
        SourceCheck::new(checksum, self.size, self.modified)
    }

    /// The error a body of this check ended with, if any.
    pub fn failure(&self) -> Option<Error> {
        self.failed
            .get()
            .map(|m| Error::new(ErrorKind::Integrity, m.clone()))
    }

    /// Compares the file (by its open handle) and the checksum of what was read.
    fn verify(&self, path: &Path, file: &std::fs::File, read: Option<Checksum>) -> Result<()> {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("checking {}", path.display()), e))?;
        let (size, modified) = (meta.len(), meta.modified().ok());
        let what = if size != self.size {
            Some(format!("its size went from {} to {size} bytes", self.size))
        } else if modified != self.modified {
            Some("it was modified".to_owned())
        } else if let (Some(want), Some(got)) = (self.checksum, read) {
            (want.value != got.value).then(|| "its content changed".to_owned())
        } else {
            None
        };
        match what {
            None => Ok(()),
            Some(what) => {
                let msg = source_changed(path, &what);
                let _ = self.failed.set(msg.clone());
                Err(Error::new(ErrorKind::Integrity, msg))
            }
        }
    }
}

/// The message for a source file that changed during its upload.
pub(crate) fn source_changed(path: &Path, what: &str) -> String {
    format!(
        "{} changed while it was being uploaded ({what}); the upload stopped before \
         its last byte, so nothing was stored and any previous object is intact — \
         upload it again once it is no longer being written",
        path.display()
    )
}

/// Adds what one body read to a transfer-wide byte count, each byte once however
/// often the body is sent again.
#[derive(Clone)]
pub(crate) struct Tap {
    sink: Progress,
    total: Option<u64>,
    done: Arc<AtomicU64>,
    high: Arc<AtomicU64>,
}

impl Tap {
    /// A tap for one transfer: `done` is shared by all its bodies.
    pub fn new(sink: Progress, total: Option<u64>, done: Arc<AtomicU64>) -> Tap {
        Tap {
            sink,
            total,
            done,
            high: Arc::default(),
        }
    }

    /// The body read `upto` bytes of its range so far.
    fn read(&self, upto: u64) {
        let before = self.high.fetch_max(upto, Ordering::Relaxed);
        if upto > before {
            let add = upto - before;
            let now = self.done.fetch_add(add, Ordering::Relaxed) + add;
            self.sink.report(now, self.total);
        }
    }
}

type Read = tokio::task::JoinHandle<std::io::Result<(Arc<std::fs::File>, BytesMut)>>;

/// The bytes of a [`FileRange`]: a [`Stream`] of chunks and an `http_body::Body`
/// with an exact size, ending with an error instead of its last chunk when a check
/// fails.
pub struct FileBody {
    path: PathBuf,
    file: Option<Arc<std::fs::File>>,
    start: u64,
    pos: u64,
    end: u64,
    hasher: Option<Hasher>,
    check: Option<SourceCheck>,
    progress: Option<Tap>,
    pending: Option<Read>,
    done: bool,
    /// The bandwidth limit the reads wait for, the bytes the next read may take,
    /// and the wait before it.
    pace: Option<Arc<Limiter>>,
    granted: Option<usize>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FileBody {
    fn read_error(&self, e: std::io::Error) -> Error {
        Error::io(format!("reading {}", self.path.display()), e)
    }

    /// Runs the checks once the last byte was read.
    fn finish(&mut self, file: &std::fs::File) -> Result<()> {
        match &self.check {
            Some(c) => c.verify(&self.path, file, self.hasher.as_ref().map(Hasher::finish)),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: Error) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        self.pending = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for FileBody {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(read) = this.pending.as_mut() {
            let got = ready!(Pin::new(read).poll(cx));
            this.pending = None;
            let (file, buf) = match got {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let e = this.read_error(e);
                    return this.fail(e);
                }
                Err(e) => return this.fail(Error::new(ErrorKind::Other, e.to_string())),
            };
            if buf.is_empty() {
                let msg = source_changed(&this.path, "it ended early");
                if let Some(c) = &this.check {
                    let _ = c.failed.set(msg.clone());
                }
                return this.fail(Error::new(ErrorKind::Integrity, msg));
            }
            if let Some(h) = this.hasher.as_mut() {
                h.update(&buf);
            }
            this.pos += buf.len() as u64;
            if let Some(t) = &this.progress {
                t.read(this.pos - this.start);
            }
            this.file = Some(file.clone());
            if this.pos == this.end {
                if let Err(e) = this.finish(&file) {
                    return this.fail(e);
                }
                this.done = true;
            }
            return Poll::Ready(Some(Ok(buf.freeze())));
        }
        if this.pos == this.end {
            // An empty range: nothing to read, but the checks still run.
            let file = match &this.file {
                Some(f) => f.clone(),
                None => match std::fs::File::open(&this.path) {
                    Ok(f) => Arc::new(f),
                    Err(e) => {
                        let e = this.read_error(e);
                        return this.fail(e);
                    }
                },
            };
            this.done = true;
            return match this.finish(&file) {
                Ok(()) => Poll::Ready(None),
                Err(e) => Poll::Ready(Some(Err(e))),
            };
        }
        let mut want = CHUNK.min(this.end - this.pos) as usize;
        if let Some(l) = &this.pace {
            // Paced: the next read takes a piece of the limit, once its wait is over.
            let granted = match this.granted {
                Some(n) => n,
                None => {
                    let n = want.min(l.piece());
                    let wait = l.reserve(n as u64);
                    if !wait.is_zero() {
                        this.wait = Some(Box::pin(tokio::time::sleep(wait)));
                    }
                    this.granted = Some(n);
                    n
                }
            };
            if let Some(w) = this.wait.as_mut() {
                ready!(w.as_mut().poll(cx));
                this.wait = None;
            }
            this.granted = None;
            want = granted;
        }
        let (file, path) = (this.file.clone(), this.path.clone());
        let at = this.pos;
        this.pending = Some(tokio::task::spawn_blocking(move || {
            let file = match file {
                Some(f) => f,
                None => Arc::new(std::fs::File::open(&path)?),
            };
            let mut buf = BytesMut::zeroed(want);
            let mut n = 0;
            while n < want {
                match file.read_at(&mut buf[n..], at + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(n);
            Ok((file, buf))
        }));
        // Poll the read once so its waker is registered.
        self.poll_next(cx)
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Error>>> {
        self.poll_next(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(if self.done { 0 } else { self.end - self.pos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::ChecksumAlgorithm;
    use futures::TryStreamExt;

    fn file_with(data: &[u8]) -> (tempfile::TempDir, PathBuf, SourceCheck) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let sum = ChecksumAlgorithm::Crc64nvme.of(data);
        let check = SourceCheck::new(sum, meta.len(), meta.modified().ok());
        (dir, path, check)
    }

    async fn read_all(r: &FileRange) -> Result<Vec<Bytes>> {
        r.body().try_collect().await
    }

    #[tokio::test]
    async fn reads_a_range_in_chunks_and_passes_its_checks() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let (_d, path, check) = file_with(&data);
        let whole = FileRange::new(&path, 0, data.len() as u64).checked(check.clone());
        let chunks = read_all(&whole).await.unwrap();
        assert!(chunks.len() >= 3, "read in chunks");
        assert_eq!(chunks.concat(), data);
        // A middle range with its own checksum.
        let sum = ChecksumAlgorithm::Crc64nvme.of(&data[1000..300_000]);
        let part = FileRange::new(&path, 1000, 299_000).checked(check.for_range(sum));
        assert_eq!(
            read_all(&part).await.unwrap().concat(),
            &data[1000..300_000]
        );
        assert!(part.failure().is_none());
    }

    #[tokio::test]
    async fn a_change_fails_before_the_last_chunk_is_handed_on() {
        let data = vec![7u8; 600_000];
        let (_d, path, check) = file_with(&data);
        let range = FileRange::new(&path, 0, data.len() as u64).checked(check);
        let mut body = range.body();
        use futures::StreamExt;
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(first.len() as u64, CHUNK);
        // Rewrite 8 bytes in the middle, keeping size and modification time.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(b"CHANGED!", 400_000).unwrap();
            f.set_modified(mtime).unwrap();
        }
        let mut got = first.len();
        let err = loop {
            match body.next().await.unwrap() {
                Ok(c) => got += c.len(),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
        assert!(got < data.len(), "the last chunk was held back");
        assert!(err.to_string().contains("content changed"), "{err}");
        assert!(range.failure().is_some(), "the range remembers why");
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn growth_shrinking_and_touching_are_changes_too() {
        for change in ["grow", "shrink", "touch"] {
            let data = vec![1u8; 300_000];
            let (_d, path, check) = file_with(&data);
            let range = FileRange::new(&path, 0, data.len() as u64).checked(check);
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            match change {
                "grow" => f.write_all_at(b"more", data.len() as u64).unwrap(),
                "shrink" => f.set_len(100_000).unwrap(),
                _ => f
                    .set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
                    .unwrap(),
            }
            let err = read_all(&range).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Integrity, "{change}: {err}");
        }
    }

    #[tokio::test]
    async fn progress_counts_each_byte_once_across_attempts() {
        let data = vec![3u8; 600_000];
        let (_d, path, _) = file_with(&data);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink = Progress::new(move |d, _| s.lock().unwrap().push(d));
        let tap = Tap::new(sink, Some(600_000), Arc::default());
        let range = FileRange::new(&path, 0, 600_000).with_progress(Some(tap));
        read_all(&range).await.unwrap();
        read_all(&range).await.unwrap(); // a retry reads it again
        let seen = seen.lock().unwrap();
        assert_eq!(*seen.last().unwrap(), 600_000);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }
}
