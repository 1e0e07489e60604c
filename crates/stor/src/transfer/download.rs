//! Downloads: on stores whose ranged reads pay off in parallel (S3), the first
//! request reads the first part and learns size and ETag; the rest is read by
//! parallel ranged GETs pinned to that ETag with If-Match, so an object replaced
//! mid-download is an error, never a mixed file. Every range resumes from the last
//! byte received when a connection breaks, and is checksummed as it arrives (the
//! joined CRC must match the object's). Files go through `destination.rs`: a temp
//! file renamed only when complete, or a FIFO/device streamed into in order.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::parts::{download_ranges, AUTO_PART_SIZE};
use super::resume::{self, DownloadJournal, FoundDownload};
use crate::backend::versions_of;
use crate::backend::{ByteStream, GetResponse};
use crate::checksum::{self, Checksum, ChecksumAlgorithm, Hasher, Hashers, RangeChecksums};
use crate::core::Core;
use crate::destination::{Destination, Sweeps};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{
    ByteRange, DownloadOptions, Downloaded, ObjectInfo, ObjectStream, Progress, TransferResult,
};

/// Receives downloaded bytes at their offset in the object.
type Sink<'a> = &'a (dyn Fn(u64, &[u8]) -> Result<()> + Sync);

/// How a download checksums what arrives: in `algo`, each piece into `sums` and,
/// for a journaled download, into the journal too — in pieces of at most `every`
/// bytes (the most a killed download fetches again per range).
#[derive(Clone, Copy)]
struct Hashing<'a> {
    algo: ChecksumAlgorithm,
    sums: &'a RangeChecksums,
    journal: Option<&'a DownloadJournal<'a>>,
    every: u64,
}

impl Hashing<'_> {
    /// `c` covers bytes from `start`, written.
    fn add(&self, start: u64, c: Checksum) {
        self.sums.add(start, c);
        if let Some(j) = self.journal {
            j.piece(start, c);
        }
    }
}

/// Reads `start..end` of the object into `sink`, resuming from the last byte
/// received after a broken connection, all within the one retry layer. With
/// `etag`, the object must still be that version (If-Match). What arrives is
/// checksummed by `hashing` when given. Returns attempts made.
#[allow(clippy::too_many_arguments)]
async fn fetch_range(
    core: &Core,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    start: u64,
    end: u64,
    etag: Option<&str>,
    sink: Sink<'_>,
    hashing: Option<Hashing<'_>>,
) -> Result<u32> {
    let pos = AtomicU64::new(start);
    let (_, attempts) = core
        .request(|_| async {
            let p = pos.load(Ordering::SeqCst);
            if p >= end {
                return Ok(());
            }
            let range = Some(ByteRange { start: p, end });
            let resp = get(core, bucket, key, version, range, etag)
                .await
                .map_err(changed)?;
            let mut body = resp.body;
            let algos = match &hashing {
                Some(h) => std::slice::from_ref(&h.algo),
                None => &[],
            };
            let (n, _, broken) = drain(&mut body, p, end, sink, algos, hashing).await?;
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
/// them). With `pieces` (and `algos` its one algorithm), the checksums go to it
/// instead, a piece at least every `pieces.every` bytes and one for the rest — also
/// when the body broke.
async fn drain(
    body: &mut crate::backend::ByteStream,
    at: u64,
    end: u64,
    sink: Sink<'_>,
    algos: &[ChecksumAlgorithm],
    pieces: Option<Hashing<'_>>,
) -> Result<(u64, Option<Hashers>, Option<Error>)> {
    let mut written = 0u64;
    let mut hasher = Hashers::new(algos);
    // Where the piece being checksummed began (bytes into this body).
    let mut piece_at = 0u64;
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
        match (pieces, hasher.as_mut()) {
            (Some(p), Some(h)) => {
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() {
                    let room = p.every - (written - piece_at);
                    let n = (rest.len() as u64).min(room) as usize;
                    h.update(&rest[..n]);
                    written += n as u64;
                    rest = &rest[n..];
                    if written - piece_at == p.every {
                        if let Some(c) = h.finish(p.algo) {
                            p.add(at + piece_at, c);
                        }
                        *h = Hashers::new(algos).expect("one algorithm");
                        piece_at = written;
                    }
                }
            }
            (_, h) => {
                if let Some(h) = h {
                    h.update(&chunk);
                }
                written += chunk.len() as u64;
            }
        }
    }
    if let (Some(p), Some(h)) = (pieces, hasher.as_ref()) {
        // (An empty body that was all there was to read still has a checksum.)
        if written > piece_at || at == end {
            if let Some(c) = h.finish(p.algo) {
                p.add(at + piece_at, c);
            }
        }
        return Ok((written, None, broken));
    }
    Ok((written, hasher, broken))
}

/// One GET of the object, or of one version of it (which never changes, so needs
/// no If-Match), its body read no faster than the download limit allows.
async fn get(
    core: &Core,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    range: Option<ByteRange>,
    etag: Option<&str>,
) -> Result<GetResponse> {
    let resp = match version {
        None => core.backend.get_object(bucket, key, range, etag).await?,
        Some(v) => {
            versions_of(&*core.backend)?
                .get_version(bucket, key, v, range)
                .await?
        }
    };
    Ok(GetResponse {
        body: core.pace_down(resp.body),
        ..resp
    })
}

pub(super) fn changed(e: Error) -> Error {
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
pub(crate) struct Fetch<'a> {
    pub size_hint: Option<u64>,
    pub sequential: bool,
    /// This version rather than the current object.
    pub version: Option<&'a str>,
    /// Records a ranged download as it goes, for resuming it (see `resume.rs`).
    pub journal: Option<&'a DownloadJournal<'a>>,
}

/// What [`fetch_object`] got: the object's info, attempts, and the checksum it
/// verified (when the object has one: stor's, or an S3-native one).
struct Fetched {
    info: ObjectInfo,
    attempts: u32,
    verified: Option<Checksum>,
    /// Bytes an interrupted run had received, not fetched again.
    resumed: u64,
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
    core: &Core,
    bucket: &str,
    key: &str,
    on_size: &(dyn Fn(u64) -> Result<()> + Sync),
    sink: Sink<'_>,
    progress: Option<&Progress>,
    how: Fetch<'_>,
) -> Result<Fetched> {
    let Fetch {
        size_hint,
        sequential,
        version,
        journal,
    } = how;
    let every = journal.map_or(u64::MAX, DownloadJournal::every);
    let sums = RangeChecksums::default();
    let be = &core.backend;
    // In order (a FIFO, a device) means one request, resumed from its last byte.
    let parallel = core.caps.parallel_ranges && !sequential;
    let ps = core.config.part_size.unwrap_or(AUTO_PART_SIZE);
    // An object known (from a listing) to fit in one part is fetched with a plain
    // GET: measured on SeaweedFS, 1000 × 64 KiB cost the server 7% less CPU than
    // the same GETs with a Range, and the whole-object answer carries the native
    // checksum. Otherwise the first part is asked for and the size learnt from it.
    let whole = size_hint.is_some_and(|n| n <= ps);
    let range = (parallel && !whole).then_some(ByteRange { start: 0, end: ps });
    let native = core.caps.native_checksums;
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
    let first = core.request(|_| async {
        let pin = pinned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let pin = pin.as_deref();
        let resp = match get(core, bucket, key, version, range, pin).await {
            // A range of an empty object is "not satisfiable": read it whole.
            Err(e) if e.status() == Some(416) => get(core, bucket, key, version, None, pin).await,
            r => r,
        }
        .map_err(changed)?;
        on_size(resp.info.size)?;
        size_seen.store(resp.info.size, Ordering::Relaxed);
        let known = checksum::stored_in(&resp.info.metadata).or(resp.checksum);
        let is_known = known.is_some();
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
        // Known now: checksummed in pieces (journaled as they arrive); otherwise in
        // every algorithm, added once the expected one is known.
        let pieces = match (is_known, algos.as_slice()) {
            (true, [algo]) => Some(Hashing {
                algo: *algo,
                sums: &sums,
                journal,
                every,
            }),
            _ => None,
        };
        let (got, h, broken) =
            drain(&mut body, 0, resp.content_length, sink, &algos, pieces).await?;
        Ok((resp.info, resp.content_length, got, h, broken))
    });
    let rest = async {
        // No headers ever (the first request failed): `first` carries the error.
        let Ok(head) = heard.await else {
            return futures::future::pending().await;
        };
        let etag = head.etag.as_deref();
        let mut attempts = 0;
        let expected = match head.known {
            Some(k) => Some(k),
            // (A version's native checksum would need a HEAD of that version: only
            // its stor checksum is verified.)
            None if native && version.is_none() => {
                let (n, tries) = core
                    .request(|_| be.native_checksum(bucket, key, etag))
                    .await
                    .map_err(changed)?;
                attempts = tries;
                n
            }
            None => None,
        };
        let hashing = expected.as_ref().map(|(a, _)| Hashing {
            algo: *a,
            sums: &sums,
            journal,
            every,
        });
        if let (Some(j), Some(exp), Some(etag), true) =
            (journal, &expected, etag, parallel && head.size > head.len)
        {
            j.start(head.size, etag, exp);
        }
        if parallel && head.size > head.len {
            // With the first request still reading, one fewer at a time.
            let conc = core.config.max_concurrency;
            let ranges = download_ranges(head.len, head.size, core.config.part_size, conc);
            let more: Vec<u32> = futures::stream::iter(ranges)
                .map(|r| {
                    fetch_range(
                        core, bucket, key, version, r.start, r.end, etag, sink, hashing,
                    )
                })
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
    let hashing = expected.as_ref().map(|(a, _)| Hashing {
        algo: *a,
        sums: &sums,
        journal,
        every,
    });
    // (A first range not checksummed in the expected algorithm leaves a gap, which
    // verification reports as an integrity error.)
    if let (Some(h), Some(hashing)) = (first_sums, hashing) {
        if let Some(c) = h.finish(hashing.algo) {
            hashing.add(0, c);
        }
    }
    if got < first_len {
        // The connection broke: resume the rest of the first range, same version.
        attempts += fetch_range(
            core, bucket, key, version, got, first_len, etag, sink, hashing,
        )
        .await?;
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
        resumed: 0,
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

/// Downloads `key` into `target`. From `opts` it takes the version, the progress
/// callback and `no_resume` (the façade refuses a range or `if_match` here);
/// `size_hint` is the size a listing told, if any.
pub(crate) async fn download_to_file(
    core: &Core,
    bucket: &str,
    key: &str,
    target: FileTarget<'_>,
    opts: &DownloadOptions,
    size_hint: Option<u64>,
) -> Result<TransferResult> {
    let start = Instant::now();
    let version = opts.version_id.as_deref();
    let progress = opts.progress.as_ref();
    let no_resume = opts.no_resume;
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
        resumed: got.resumed,
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
            return stream_into(core, bucket, key, version, &file, &dev, progress)
                .await
                .map(|(info, got)| result(info, got));
        }
        Destination::Descriptor(fd) => {
            // SAFETY: `fd` is one of this process's descriptors by its own name;
            // it is duplicated, never closed here.
            let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
                .try_clone_to_owned()
                .map_err(|e| Error::io(format!("using {}", path.display()), e))?;
            let file = std::fs::File::from(owned);
            return stream_into(core, bucket, key, version, &file, path, progress)
                .await
                .map(|(info, got)| result(info, got));
        }
    };
    // A ranged download into a file is journaled; one interrupted into this target
    // resumes, in its own partial file (see `resume.rs`). An object a listing says
    // fits in one part is one GET: nothing to resume.
    let ps = core.config.part_size.unwrap_or(AUTO_PART_SIZE);
    // A download of a given version is not journaled (the journal pins the current
    // object by its ETag): an interrupted one starts over.
    let ranged = core.caps.parallel_ranges && version.is_none() && size_hint.is_none_or(|n| n > ps);
    let found = match ranged {
        true => resume::find_download(core, bucket, key, &tmp, no_resume)?,
        false => None,
    };
    let (tmp, record, resumed) = match found {
        Some(FoundDownload {
            record,
            lock,
            journal,
            temp,
        }) => {
            drop(tmp);
            let id = record.id;
            (temp, Some(record), Some((journal, id, lock)))
        }
        None => (tmp, None, None),
    };
    let journal =
        (ranged && !no_resume).then(|| DownloadJournal::new(core, bucket, key, &tmp, resumed));
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
    let fetched = async {
        if let (Some(rec), Some(j)) = (&record, &journal) {
            if let Some(got) = resume_fetch(core, bucket, key, file, path, rec, j, progress).await?
            {
                return Ok(got);
            }
            // The object changed: start over, in the same file.
            j.finished();
            file.set_len(0)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        let how = Fetch {
            size_hint,
            sequential: false,
            version,
            journal: journal.as_ref(),
        };
        fetch_object(core, bucket, key, &on_size, &sink, progress, how).await
    };
    let got = match fetched.await {
        Ok(got) => got,
        Err(e) => {
            if let Some(j) = &journal {
                j.failed(&e);
            }
            return Err(nothing_kept(e));
        }
    };
    // Whatever happens now, there is nothing left to resume.
    if let Some(j) = &journal {
        j.finished();
    }
    drop(journal);
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
    if core.config.fsync_downloads {
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
    }
    tmp.persist()?;
    Ok(result(info, got))
}

/// Continues the interrupted download journaled as `rec` into its partial `file`:
/// the object must still be the same version (its ETag, by a HEAD; the ranges are
/// pinned to it with If-Match), the journaled ranges are read back and checked
/// against their CRCs (a bad one is fetched again), only the missing ranges are
/// fetched, and the CRC of the whole, combined from the ranges', must match the
/// object's. `None` when the object changed since: the caller starts over.
#[allow(clippy::too_many_arguments)]
async fn resume_fetch(
    core: &Core,
    bucket: &str,
    key: &str,
    file: &std::fs::File,
    path: &Path,
    rec: &crate::journal::DownloadRecord,
    journal: &DownloadJournal<'_>,
    progress: Option<&Progress>,
) -> Result<Option<Fetched>> {
    let be = &core.backend;
    let (info, head_attempts) = core.request(|_| be.head_object(bucket, key)).await?;
    if info.etag.as_deref() != Some(rec.etag.as_str()) || info.size != rec.size {
        tracing::warn!(
            "{bucket}/{key} was replaced since the interrupted download into {} (its ETag \
             or size differs); the download starts over",
            path.display()
        );
        return Ok(None);
    }
    let (algo, size) = (rec.expected.0, rec.size);
    let (good, bad) = resume::verified_pieces(file, algo, size, &rec.pieces).await?;
    if !bad.is_empty() {
        tracing::warn!(
            "{} range(s) the journal recorded are not in {}'s partial file as they were \
             received; they are fetched again",
            bad.len(),
            path.display()
        );
        journal.drop_pieces(&bad);
    }
    let resumed: u64 = good.iter().map(|p| p.len).sum();
    tracing::info!(
        "resuming the download of {bucket}/{key} into {}: {resumed} of {size} bytes \
         already received",
        path.display()
    );
    journal.start(size, &rec.etag, &rec.expected);
    let sums = RangeChecksums::default();
    for p in &good {
        let c = Checksum {
            algorithm: algo,
            value: p.crc,
            len: p.len,
        };
        sums.add(p.start, c);
    }
    let done = AtomicU64::new(resumed);
    if let Some(p) = progress {
        p.report(resumed, Some(size));
    }
    let sink = |off: u64, data: &[u8]| -> Result<()> {
        file.write_all_at(data, off)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let now = done.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
        if let Some(p) = progress {
            p.report(now, Some(size));
        }
        Ok(())
    };
    let hashing = Hashing {
        algo,
        sums: &sums,
        journal: Some(journal),
        every: journal.every(),
    };
    let step = core.config.part_size.unwrap_or(AUTO_PART_SIZE).max(1);
    let ranges: Vec<(u64, u64)> = resume::gaps(&good, size)
        .into_iter()
        .flat_map(|(a, z)| {
            (0..(z - a).div_ceil(step)).map(move |i| (a + i * step, (a + (i + 1) * step).min(z)))
        })
        .collect();
    let etag = Some(rec.etag.as_str());
    let sink: Sink<'_> = &sink;
    let more: Vec<u32> = futures::stream::iter(ranges)
        .map(|(a, z)| fetch_range(core, bucket, key, None, a, z, etag, sink, Some(hashing)))
        .buffer_unordered(core.config.max_concurrency.max(1))
        .try_collect()
        .await?;
    let attempts = head_attempts.max(more.into_iter().max().unwrap_or(1));
    let got = sums.join(size);
    checksum::verify(&rec.expected, got)?;
    Ok(Some(Fetched {
        info,
        attempts,
        verified: got,
        resumed,
    }))
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
    core: &Core,
    bucket: &str,
    key: &str,
    version: Option<&str>,
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
        core,
        bucket,
        key,
        &|_| Ok(()),
        &sink,
        progress,
        Fetch {
            size_hint: None,
            sequential: true,
            version,
            journal: None,
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
    core: &Core,
    bucket: &str,
    key: &str,
    version: Option<&str>,
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
    let got = fetch_object(
        core,
        bucket,
        key,
        &on_size,
        &sink,
        progress,
        Fetch {
            version,
            ..Fetch::default()
        },
    )
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
        resumed: 0,
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

/// Opens an object as a stream (a range of it with `opts.range`); the request permit
/// is taken per attempt, after the endpoint gate, and kept by the body. A whole
/// object is verified against its stored checksum as it streams.
pub(crate) async fn open_stream(
    core: &Core,
    bucket: &str,
    key: &str,
    opts: DownloadOptions,
) -> Result<ObjectStream> {
    let version = opts.version_id.as_deref();
    if version.is_some() && opts.if_match.is_some() {
        return Err(Error::invalid(
            "a version never changes: give a version id or if_match, not both",
        ));
    }
    let ((resp, permit), _) = core
        .request_holding_permit(|_| {
            get(
                core,
                bucket,
                key,
                version,
                opts.range,
                opts.if_match.as_deref(),
            )
        })
        .await?;
    let mut body: ByteStream = Box::pin(resp.body.map(move |c| {
        let _hold = &permit;
        c
    }));
    if opts.range.is_none() {
        let stored = checksum::stored_in(&resp.info.metadata);
        if let Some(expected) = stored.or(resp.checksum.clone()) {
            body = verified_stream(body, expected);
        }
    }
    if let Some(p) = opts.progress.clone() {
        let total = resp.content_length;
        let mut done = 0u64;
        body = Box::pin(body.inspect(move |c| {
            if let Ok(c) = c {
                done += c.len() as u64;
                p.report(done, Some(total));
            }
        }));
    }
    Ok(ObjectStream {
        info: resp.info,
        content_length: resp.content_length,
        body,
    })
}
