//! The transfer journal: what an interrupted transfer had already done, so that
//! running it again continues where it stopped instead of starting over.
//!
//! One SQLite file under the state directory (`state_dir` in the config, else
//! `$STOR_STATE_DIR`, else `$XDG_STATE_HOME/stor` or `~/.local/state/stor`) records
//! each multipart upload of a file (its source's size, modification time and inode,
//! the upload ID, and each part — planned with its CRC, then stored with its ETag)
//! and each ranged download into a file (the object's ETag and checksum, the temp
//! file, and each range received with its CRC), as the parts and ranges complete;
//! the row goes when the transfer finishes. Batches (`cp -r`) record the objects they
//! finished, so a re-run skips them.
//!
//! WAL mode with `synchronous=NORMAL`: a commit survives a killed process without
//! an fsync each (cheap enough to leave on for every transfer); a power loss may lose
//! the last commits, which only means sending those bytes again — and a download's
//! journaled ranges are read back and checked against their CRCs before they are
//! trusted, so a lost write in the temp file is fetched again, never kept.
//!
//! A file that is not a journal (damaged, truncated, overwritten) or a journal of an
//! older format is moved aside (`transfers.sqlite3.damaged-<time>`) and a new one
//! started: its transfers start over, never resume from a record that cannot be
//! trusted. A journal of a newer format is left alone and this process runs without
//! one.
//!
//! Each transfer is locked while a process runs it (an `flock` on a file under
//! `locks/`, released by the kernel when the process dies): a second process that
//! would run the same transfer fails at once, saying so, instead of writing too.
//!
//! ```text
//! <state dir>/transfers.sqlite3     transfers in progress, batches' finished objects
//! <state dir>/locks/<md5>.lock      one per transfer running (holds the runner's pid)
//! ```
//!
//! The journal never fails a transfer: when it cannot be opened or written, the
//! transfer runs as it would without it (and says so once, at warn level).

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::checksum::ChecksumAlgorithm;
use crate::error::{Error, ErrorKind, Result};

/// The journal's file name in the state directory.
pub const JOURNAL_FILE: &str = "transfers.sqlite3";

/// The format this version writes (`PRAGMA user_version`).
const FORMAT: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE transfers (
    id        INTEGER PRIMARY KEY,
    kind      TEXT NOT NULL,        -- 'upload' | 'download'
    store     TEXT NOT NULL,        -- which store: scheme and endpoint
    bucket    TEXT NOT NULL,
    key       TEXT NOT NULL,
    path      BLOB NOT NULL,        -- the local file: an upload's source, a download's target
    size      INTEGER NOT NULL,     -- bytes of the transfer
    source    TEXT NOT NULL,        -- upload: mtime_ns:inode:device; download: the ETag
    options   TEXT NOT NULL,        -- upload: a digest of headers and metadata
    upload_id TEXT,                 -- upload
    temp      BLOB,                 -- download: the temp file beside the target
    checksum  TEXT,                 -- upload: the algorithm; download: algorithm:expected
    created   INTEGER NOT NULL,     -- unix ms
    updated   INTEGER NOT NULL,
    UNIQUE (kind, store, bucket, key, path)
);
CREATE INDEX transfers_temp ON transfers (temp);
CREATE TABLE pieces (
    transfer INTEGER NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
    start    INTEGER NOT NULL,
    len      INTEGER NOT NULL,
    part     INTEGER,               -- upload: the part number
    crc      INTEGER,               -- CRC of the bytes in the transfer's algorithm
    etag     TEXT,                  -- upload: the stored part's ETag (NULL: not stored yet)
    native   TEXT,                  -- upload: the part's S3-native checksum
    PRIMARY KEY (transfer, start)
);
CREATE TABLE batches (
    id      INTEGER PRIMARY KEY,
    ident   TEXT NOT NULL UNIQUE,
    store   TEXT NOT NULL,
    bucket  TEXT NOT NULL,
    prefix  TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE batch_done (
    batch  INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    path   BLOB NOT NULL,
    source TEXT NOT NULL,           -- what the object was when it was done
    PRIMARY KEY (batch, key, path)
);
";

/// The objects a batch finished: `(key, path)` → what the object was then.
pub(crate) type Finished = HashMap<(String, PathBuf), String>;

/// Which way a journaled transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    /// A file going up in parts.
    Upload,
    /// An object coming down in ranges into a file.
    Download,
}

impl TransferKind {
    fn name(self) -> &'static str {
        match self {
            TransferKind::Upload => "upload",
            TransferKind::Download => "download",
        }
    }

    fn parse(s: &str) -> Option<TransferKind> {
        match s {
            "upload" => Some(TransferKind::Upload),
            "download" => Some(TransferKind::Download),
            _ => None,
        }
    }
}

/// One transfer, as the journal and its lock name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ident<'a> {
    pub kind: TransferKind,
    pub store: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub path: &'a Path,
}

impl Ident<'_> {
    fn digest(&self) -> String {
        let mut h = Md5::new();
        for part in [
            self.kind.name().as_bytes(),
            self.store.as_bytes(),
            self.bucket.as_bytes(),
            self.key.as_bytes(),
            self.path.as_os_str().as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        hex::encode(h.finalize())
    }
}

/// A part of a journaled upload: planned (its place and CRC), then stored (its ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartRecord {
    pub number: i32,
    pub start: u64,
    pub len: u64,
    pub crc: Option<u64>,
    pub etag: Option<String>,
    pub native: Option<String>,
}

/// A journaled multipart upload of a file.
#[derive(Debug, Clone)]
pub(crate) struct UploadRecord {
    pub id: i64,
    pub size: u64,
    /// `mtime_ns:inode:device` of the source when the upload started.
    pub source: String,
    /// Digest of the upload's headers and metadata.
    pub options: String,
    pub upload_id: String,
    pub checksum: Option<ChecksumAlgorithm>,
    pub parts: Vec<PartRecord>,
}

/// A byte run of a journaled download that is in the temp file, and its CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub start: u64,
    pub len: u64,
    pub crc: u64,
}

/// A journaled ranged download into a file.
#[derive(Debug, Clone)]
pub(crate) struct DownloadRecord {
    pub id: i64,
    pub size: u64,
    pub etag: String,
    pub temp: PathBuf,
    pub expected: (ChecksumAlgorithm, String),
    pub pieces: Vec<Piece>,
}

/// A transfer that was interrupted (a crash, Ctrl-C, a network that stayed down)
/// and that running it again resumes; see [`crate::Storage::interrupted_transfers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interrupted {
    /// Upload or download.
    pub kind: TransferKind,
    /// The object's bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// The local file: the upload's source, or the download's target.
    pub path: PathBuf,
    /// Bytes of the whole transfer.
    pub size: u64,
    /// Bytes already stored (an upload's parts) or received (a download's ranges).
    pub done: u64,
    /// The multipart upload kept for it, on the server.
    pub upload_id: Option<String>,
    /// The partial file kept for it, beside the target.
    pub temp: Option<PathBuf>,
    /// When it last made progress.
    #[serde(serialize_with = "ser_time")]
    pub updated: SystemTime,
    #[serde(skip)]
    pub(crate) id: i64,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::types::format_time(*t))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn path_of(b: Vec<u8>) -> PathBuf {
    PathBuf::from(<std::ffi::OsStr as OsStrExt>::from_bytes(&b).to_owned())
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Io, format!("the transfer journal: {e}"))
}

/// Why a file could not be used as the journal.
enum Unusable {
    /// Not a journal, damaged, or an older format: move it aside.
    Replace(String),
    /// A newer stor's journal: leave it alone.
    Newer(i64),
    Failed(Error),
}

impl From<rusqlite::Error> for Unusable {
    fn from(e: rusqlite::Error) -> Unusable {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(NotADatabase | DatabaseCorrupt) => {
                Unusable::Replace(format!("it is damaged ({e})"))
            }
            _ => Unusable::Failed(db_err(e)),
        }
    }
}

/// The open journal. Every method is one short SQLite transaction.
pub(crate) struct Journal {
    dir: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journal({})", self.dir.display())
    }
}

impl Journal {
    /// Opens the journal in `dir`, creating both when missing. A file that cannot be
    /// trusted is moved aside (see the module docs); `Ok(None)` when the journal
    /// belongs to a newer stor.
    pub fn open(dir: &Path) -> Result<Option<Journal>> {
        std::fs::create_dir_all(dir.join("locks"))
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(JOURNAL_FILE);
        let conn = match open_file(&path) {
            Ok(c) => c,
            Err(Unusable::Newer(v)) => {
                tracing::warn!(
                    "the transfer journal {} is of a newer stor (format {v}); transfers run \
                     without resuming",
                    path.display()
                );
                return Ok(None);
            }
            Err(Unusable::Failed(e)) => return Err(e),
            Err(Unusable::Replace(why)) => {
                let aside = move_aside(&path)?;
                tracing::warn!(
                    "the transfer journal {} could not be used ({why}); it was moved to {} \
                     and interrupted transfers start over",
                    path.display(),
                    aside.display()
                );
                match open_file(&path) {
                    Ok(c) => c,
                    Err(Unusable::Failed(e)) => return Err(e),
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::Io,
                            format!("a new transfer journal {} is unusable", path.display()),
                        ))
                    }
                }
            }
        };
        Ok(Some(Journal {
            dir: dir.to_path_buf(),
            conn: Mutex::new(conn),
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(db_err)
    }

    /// Takes the transfer's lock, or fails (`AlreadyExists`) when another process
    /// (or another call in this one) runs it.
    pub fn lock(&self, id: &Ident<'_>) -> Result<TransferLock> {
        TransferLock::take(&self.dir.join("locks"), id)
    }

    /// The journaled upload of `id`, if there is one.
    pub fn find_upload(&self, id: &Ident<'_>) -> Result<Option<UploadRecord>> {
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT id, size, source, options, upload_id, checksum FROM transfers
                     WHERE kind = ?1 AND store = ?2 AND bucket = ?3 AND key = ?4 AND path = ?5",
                    params![
                        id.kind.name(),
                        id.store,
                        id.bucket,
                        id.key,
                        id.path.as_os_str().as_bytes()
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                        ))
                    },
                )
                .optional()?;
            let Some((rid, size, source, options, upload_id, checksum)) = row else {
                return Ok(None);
            };
            let mut st = c.prepare(
                "SELECT part, start, len, crc, etag, native FROM pieces
                 WHERE transfer = ?1 ORDER BY start",
            )?;
            let parts = st
                .query_map([rid], |r| {
                    Ok(PartRecord {
                        number: r.get::<_, Option<i32>>(0)?.unwrap_or(0),
                        start: r.get::<_, i64>(1)? as u64,
                        len: r.get::<_, i64>(2)? as u64,
                        crc: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                        etag: r.get(4)?,
                        native: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(UploadRecord {
                id: rid,
                size: size as u64,
                source,
                options,
                upload_id: upload_id.unwrap_or_default(),
                checksum: checksum.as_deref().and_then(algorithm),
                parts,
            }))
        })
    }

    /// Records a multipart upload just created, with every part it will have
    /// (replacing any record of the same transfer).
    pub fn insert_upload(&self, id: &Ident<'_>, rec: &UploadRecord) -> Result<i64> {
        self.with(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            tx.execute(
                "DELETE FROM transfers
                 WHERE kind = ?1 AND store = ?2 AND bucket = ?3 AND key = ?4 AND path = ?5",
                params![
                    id.kind.name(),
                    id.store,
                    id.bucket,
                    id.key,
                    id.path.as_os_str().as_bytes()
                ],
            )?;
            tx.execute(
                "INSERT INTO transfers (kind, store, bucket, key, path, size, source, options,
                     upload_id, checksum, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                params![
                    id.kind.name(),
                    id.store,
                    id.bucket,
                    id.key,
                    id.path.as_os_str().as_bytes(),
                    rec.size as i64,
                    rec.source,
                    rec.options,
                    rec.upload_id,
                    rec.checksum.map(|a| a.name()),
                    now
                ],
            )?;
            let rid = tx.last_insert_rowid();
            {
                let mut st = tx.prepare(
                    "INSERT INTO pieces (transfer, start, len, part, crc, etag, native)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for p in &rec.parts {
                    st.execute(params![
                        rid,
                        p.start as i64,
                        p.len as i64,
                        p.number,
                        p.crc.map(|v| v as i64),
                        p.etag,
                        p.native
                    ])?;
                }
            }
            tx.commit()?;
            Ok(rid)
        })
    }

    /// Records that part `number` of upload `rid` is stored.
    pub fn part_stored(
        &self,
        rid: i64,
        number: i32,
        etag: &str,
        native: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE pieces SET etag = ?3, native = ?4 WHERE transfer = ?1 AND part = ?2",
                params![rid, number, etag, native],
            )?;
            tx.execute(
                "UPDATE transfers SET updated = ?2 WHERE id = ?1",
                params![rid, now_ms()],
            )?;
            tx.commit()
        })
    }

    /// The journaled download of `id`, if there is one.
    pub fn find_download(&self, id: &Ident<'_>) -> Result<Option<DownloadRecord>> {
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT id, size, source, temp, checksum FROM transfers
                     WHERE kind = ?1 AND store = ?2 AND bucket = ?3 AND key = ?4 AND path = ?5",
                    params![
                        id.kind.name(),
                        id.store,
                        id.bucket,
                        id.key,
                        id.path.as_os_str().as_bytes()
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                        ))
                    },
                )
                .optional()?;
            let Some((rid, size, etag, temp, checksum)) = row else {
                return Ok(None);
            };
            let pieces = c
                .prepare("SELECT start, len, crc FROM pieces WHERE transfer = ?1 ORDER BY start")?
                .query_map([rid], |r| {
                    Ok(Piece {
                        start: r.get::<_, i64>(0)? as u64,
                        len: r.get::<_, i64>(1)? as u64,
                        crc: r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let expected = checksum.as_deref().and_then(|c| {
                let (a, v) = c.split_once(':')?;
                Some((algorithm(a)?, v.to_owned()))
            });
            Ok(match (temp, expected) {
                (Some(temp), Some(expected)) => Some(DownloadRecord {
                    id: rid,
                    size: size as u64,
                    etag,
                    temp: path_of(temp),
                    expected,
                    pieces,
                }),
                // A record without them cannot be resumed: treat as none (it is
                // replaced by the next insert).
                _ => None,
            })
        })
    }

    /// Records a ranged download into `temp` (replacing any record of the same
    /// transfer); pieces follow as they arrive.
    pub fn insert_download(
        &self,
        id: &Ident<'_>,
        size: u64,
        etag: &str,
        temp: &Path,
        expected: &(ChecksumAlgorithm, String),
    ) -> Result<i64> {
        self.with(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            tx.execute(
                "DELETE FROM transfers
                 WHERE kind = ?1 AND store = ?2 AND bucket = ?3 AND key = ?4 AND path = ?5",
                params![
                    id.kind.name(),
                    id.store,
                    id.bucket,
                    id.key,
                    id.path.as_os_str().as_bytes()
                ],
            )?;
            tx.execute(
                "INSERT INTO transfers (kind, store, bucket, key, path, size, source, options,
                     temp, checksum, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', ?8, ?9, ?10, ?10)",
                params![
                    id.kind.name(),
                    id.store,
                    id.bucket,
                    id.key,
                    id.path.as_os_str().as_bytes(),
                    size as i64,
                    etag,
                    temp.as_os_str().as_bytes(),
                    format!("{}:{}", expected.0.name(), expected.1),
                    now
                ],
            )?;
            let rid = tx.last_insert_rowid();
            tx.commit()?;
            Ok(rid)
        })
    }

    /// Records that `piece` of download `rid` is in its temp file.
    pub fn add_piece(&self, rid: i64, piece: Piece) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR REPLACE INTO pieces (transfer, start, len, crc) VALUES (?1, ?2, ?3, ?4)",
                params![rid, piece.start as i64, piece.len as i64, piece.crc as i64],
            )?;
            tx.execute(
                "UPDATE transfers SET updated = ?2 WHERE id = ?1",
                params![rid, now_ms()],
            )?;
            tx.commit()
        })
    }

    /// Forgets download pieces that turned out not to be in the temp file.
    pub fn drop_pieces(&self, rid: i64, starts: &[u64]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for s in starts {
                tx.execute(
                    "DELETE FROM pieces WHERE transfer = ?1 AND start = ?2",
                    params![rid, *s as i64],
                )?;
            }
            tx.commit()
        })
    }

    /// Forgets a transfer (finished, or started over).
    pub fn remove(&self, rid: i64) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM transfers WHERE id = ?1", [rid])
                .map(|_| ())
        })
    }

    /// Whether a download's temp file is one the journal keeps for resuming.
    pub fn knows_temp(&self, temp: &Path) -> bool {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM transfers WHERE temp = ?1",
                [temp.as_os_str().as_bytes()],
                |_| Ok(()),
            )
            .optional()
        })
        .ok()
        .flatten()
        .is_some()
    }

    /// The interrupted transfers of `store` in `bucket` under `prefix`.
    pub fn interrupted(&self, store: &str, bucket: &str, prefix: &str) -> Result<Vec<Interrupted>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT t.id, t.kind, t.bucket, t.key, t.path, t.size, t.upload_id, t.temp,
                        t.updated,
                        COALESCE((SELECT SUM(len) FROM pieces p WHERE p.transfer = t.id
                                  AND (t.kind = 'download' OR p.etag IS NOT NULL)), 0)
                 FROM transfers t
                 WHERE t.store = ?1 AND t.bucket = ?2 AND substr(t.key, 1, length(?3)) = ?3
                 ORDER BY t.key, t.kind",
            )?;
            let rows = st
                .query_map(params![store, bucket, prefix], |r| {
                    Ok(Interrupted {
                        id: r.get(0)?,
                        kind: TransferKind::parse(&r.get::<_, String>(1)?)
                            .unwrap_or(TransferKind::Upload),
                        bucket: r.get(2)?,
                        key: r.get(3)?,
                        path: path_of(r.get(4)?),
                        size: r.get::<_, i64>(5)? as u64,
                        upload_id: r.get(6)?,
                        temp: r.get::<_, Option<Vec<u8>>>(7)?.map(path_of),
                        updated: from_ms(r.get(8)?),
                        done: r.get::<_, i64>(9)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    // ------------------------------------------------------------ batches

    /// Starts (or, after an interruption, continues) the batch `ident`: its id and
    /// the objects it already finished, `(key, path) → source`.
    pub fn batch_begin(
        &self,
        ident: &str,
        store: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<(i64, Finished)> {
        self.with(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            tx.execute(
                "INSERT INTO batches (ident, store, bucket, prefix, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (ident) DO UPDATE SET updated = ?5",
                params![ident, store, bucket, prefix, now],
            )?;
            let id: i64 =
                tx.query_row("SELECT id FROM batches WHERE ident = ?1", [ident], |r| {
                    r.get(0)
                })?;
            let done = tx
                .prepare("SELECT key, path, source FROM batch_done WHERE batch = ?1")?
                .query_map([id], |r| {
                    Ok((
                        (r.get::<_, String>(0)?, path_of(r.get(1)?)),
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<HashMap<_, _>>>()?;
            tx.commit()?;
            Ok((id, done))
        })
    }

    /// Records objects a batch finished.
    pub fn batch_done(&self, id: i64, items: &[(String, PathBuf, String)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                // Cached: a batch of small files commits one of these per file.
                let mut st = tx.prepare_cached(
                    "INSERT OR REPLACE INTO batch_done (batch, key, path, source)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM batches WHERE id = ?1)",
                )?;
                for (k, p, s) in items {
                    st.execute(params![id, k, p.as_os_str().as_bytes(), s])?;
                }
            }
            tx.prepare_cached("UPDATE batches SET updated = ?2 WHERE id = ?1")?
                .execute(params![id, now_ms()])?;
            tx.commit()
        })
    }

    /// Forgets a batch (it finished, every object done).
    pub fn batch_end(&self, id: i64) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM batches WHERE id = ?1", [id])
                .map(|_| ())
        })
    }

    /// Forgets the batches of `store` in `bucket` under `prefix` that made no
    /// progress since `cutoff`; returns how many.
    pub fn discard_batches(
        &self,
        store: &str,
        bucket: &str,
        prefix: &str,
        cutoff: SystemTime,
    ) -> Result<usize> {
        let cutoff = cutoff
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.with(|c| {
            c.execute(
                "DELETE FROM batches WHERE store = ?1 AND bucket = ?2
                 AND substr(prefix, 1, length(?3)) = ?3 AND updated <= ?4",
                params![store, bucket, prefix, cutoff],
            )
        })
    }
}

/// `mtime_ns:inode:device` of a file: what "the same file" means for resuming (a
/// file rewritten in place gets a new modification time; one replaced by a rename
/// gets a new inode).
pub(crate) fn file_identity(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    format!("{ns}:{}:{}", meta.ino(), meta.dev())
}

fn algorithm(name: &str) -> Option<ChecksumAlgorithm> {
    crate::checksum::STORED
        .iter()
        .copied()
        .find(|a| a.name() == name)
}

/// Opens `path` as a journal of this format, creating the schema in a new file.
fn open_file(path: &Path) -> std::result::Result<Connection, Unusable> {
    let mut c = Connection::open(path).map_err(|e| Unusable::Failed(db_err(e)))?;
    c.busy_timeout(Duration::from_secs(5))?;
    // Reading the header is the first thing that fails on a file that is no database.
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    // Format and tables read, and a new file's schema written, under the write lock:
    // another process opening the same new file at once sees all of it or none.
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > FORMAT {
        return Err(Unusable::Newer(version));
    }
    if version < FORMAT {
        let tables: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 {
            return Err(Unusable::Replace(format!(
                "it is of an older format ({version})"
            )));
        }
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", FORMAT)?;
    }
    tx.commit()?;
    let check: String = c.pragma_query_value(None, "quick_check", |r| r.get(0))?;
    if check != "ok" {
        return Err(Unusable::Replace(format!("it is damaged ({check})")));
    }
    Ok(c)
}

/// Renames a journal that cannot be used (and its WAL files) out of the way.
fn move_aside(path: &Path) -> Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = PathBuf::from(format!("{}.damaged-{secs}", path.display()));
    std::fs::rename(path, &aside)
        .map_err(|e| Error::io(format!("moving {} aside", path.display()), e))?;
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", path.display()));
        let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
    }
    Ok(aside)
}

/// A transfer's lock: an exclusive `flock` on `locks/<md5>.lock`, which holds the
/// runner's pid (for the message another process gets). Released when dropped or
/// when the process dies.
#[derive(Debug)]
pub(crate) struct TransferLock {
    file: std::fs::File,
    path: PathBuf,
}

impl TransferLock {
    fn take(dir: &Path, id: &Ident<'_>) -> Result<TransferLock> {
        use rustix::fs::{flock, FlockOperation};
        use std::os::unix::fs::MetadataExt;
        let path = dir.join(format!("{}.lock", id.digest()));
        let io = |e| Error::io(format!("locking {}", path.display()), e);
        // A lock file removed by its holder between our open and our flock is not
        // the lock any more: take the one at the path.
        for _ in 0..16 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
                if e != rustix::io::Errno::WOULDBLOCK {
                    return Err(io(e.into()));
                }
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let who = match holder.trim().parse::<u32>() {
                    Ok(pid) if pid == std::process::id() => "this process".to_owned(),
                    Ok(pid) => format!("another stor process (pid {pid})"),
                    Err(_) => "another stor process".to_owned(),
                };
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{who} is already transferring {} to or from {}; wait for it to \
                         finish (or stop it and run this again to resume where it stopped)",
                        id.path.display(),
                        id.key
                    ),
                ));
            }
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "{}", std::process::id());
            return Ok(TransferLock { file, path });
        }
        Err(Error::new(
            ErrorKind::Io,
            format!("could not take the lock {}", path.display()),
        ))
    }

    /// Releases the lock and removes its file (the transfer is over).
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident<'a>(path: &'a Path, key: &'a str) -> Ident<'a> {
        Ident {
            kind: TransferKind::Upload,
            store: "s3 http://127.0.0.1:1",
            bucket: "b",
            key,
            path,
        }
    }

    fn upload(parts: usize) -> UploadRecord {
        UploadRecord {
            id: 0,
            size: parts as u64 * 10,
            source: "1:2:3".into(),
            options: "opts".into(),
            upload_id: "up-1".into(),
            checksum: Some(ChecksumAlgorithm::Crc64nvme),
            parts: (0..parts)
                .map(|i| PartRecord {
                    number: i as i32 + 1,
                    start: i as u64 * 10,
                    len: 10,
                    crc: Some(i as u64 + u64::MAX / 2),
                    etag: None,
                    native: None,
                })
                .collect(),
        }
    }

    #[test]
    fn an_upload_is_recorded_part_by_part_and_forgotten() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap().unwrap();
        let src = Path::new("/data/big.bin");
        let id = ident(src, "k");
        assert!(j.find_upload(&id).unwrap().is_none());
        let rid = j.insert_upload(&id, &upload(3)).unwrap();
        j.part_stored(rid, 2, "\"e2\"", Some("AAAA")).unwrap();
        let got = j.find_upload(&id).unwrap().unwrap();
        assert_eq!(got.upload_id, "up-1");
        assert_eq!(got.parts.len(), 3);
        assert_eq!(got.parts[1].etag.as_deref(), Some("\"e2\""));
        assert_eq!(got.parts[1].crc, Some(1 + u64::MAX / 2), "u64 CRCs survive");
        assert!(got.parts[0].etag.is_none());
        let listed = j.interrupted("s3 http://127.0.0.1:1", "b", "").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].done, listed[0].size), (10, 30));
        // Another store's or bucket's transfers are not listed.
        assert!(j.interrupted("s3 other", "b", "").unwrap().is_empty());
        assert!(j
            .interrupted("s3 http://127.0.0.1:1", "b", "x/")
            .unwrap()
            .is_empty());
        j.remove(rid).unwrap();
        assert!(j.find_upload(&id).unwrap().is_none());
        // The pieces went with it.
        let n: i64 = j
            .with(|c| c.query_row("SELECT count(*) FROM pieces", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_download_keeps_its_pieces_and_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap().unwrap();
        let target = Path::new("/out/x.bin");
        let id = Ident {
            kind: TransferKind::Download,
            ..ident(target, "k")
        };
        let temp = Path::new("/out/.x.bin.0badf00d.stor-part");
        let exp = (ChecksumAlgorithm::Crc32c, "AAAAAA==".to_owned());
        let rid = j.insert_download(&id, 100, "etag-1", temp, &exp).unwrap();
        for (start, len) in [(0, 40), (60, 40)] {
            j.add_piece(rid, Piece { start, len, crc: 7 }).unwrap();
        }
        let got = j.find_download(&id).unwrap().unwrap();
        assert_eq!((got.size, got.etag.as_str()), (100, "etag-1"));
        assert_eq!(got.temp, temp);
        assert_eq!(got.expected, exp);
        assert_eq!(got.pieces.len(), 2);
        assert!(j.knows_temp(temp));
        assert!(!j.knows_temp(Path::new("/out/.y.bin.0badf00d.stor-part")));
        j.drop_pieces(rid, &[60]).unwrap();
        assert_eq!(j.find_download(&id).unwrap().unwrap().pieces.len(), 1);
        // An upload of the same path is another transfer.
        assert!(j.find_upload(&ident(target, "k")).unwrap().is_none());
    }

    #[test]
    fn a_second_holder_of_a_transfer_is_refused_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap().unwrap();
        let p = Path::new("/data/a");
        let first = j.lock(&ident(p, "k")).unwrap();
        let e = j.lock(&ident(p, "k")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("this process"), "{e}");
        // Another transfer is another lock.
        let other = j.lock(&ident(p, "k2")).unwrap();
        first.release();
        let again = j.lock(&ident(p, "k")).unwrap();
        drop((again, other));
    }

    #[test]
    fn a_damaged_or_older_journal_is_moved_aside_and_a_newer_one_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(JOURNAL_FILE);
        std::fs::write(
            &path,
            b"this is not an SQLite database, it is garbage........",
        )
        .unwrap();
        let j = Journal::open(d.path()).unwrap().unwrap();
        assert!(j
            .find_upload(&ident(Path::new("/a"), "k"))
            .unwrap()
            .is_none());
        drop(j);
        let aside: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "the damaged file was kept aside");

        // An older layout (format 0 with tables) is moved aside too.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(JOURNAL_FILE);
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE transfers (id INTEGER PRIMARY KEY, what TEXT);")
            .unwrap();
        let j = Journal::open(d.path()).unwrap().unwrap();
        let rid = j
            .insert_upload(&ident(Path::new("/a"), "k"), &upload(1))
            .unwrap();
        assert!(rid > 0);
        drop(j);

        // A newer stor's journal is not touched.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(JOURNAL_FILE);
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99;")
            .unwrap();
        assert!(Journal::open(d.path()).unwrap().is_none());
        let v: i64 = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
    }

    #[test]
    fn batches_remember_what_they_finished_until_they_end() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(d.path()).unwrap().unwrap();
        let (id, done) = j.batch_begin("up s3 b p/ /d", "s3", "b", "p/").unwrap();
        assert!(done.is_empty());
        j.batch_done(id, &[("p/a".into(), "/d/a".into(), "1:2".into())])
            .unwrap();
        let (again, done) = j.batch_begin("up s3 b p/ /d", "s3", "b", "p/").unwrap();
        assert_eq!(again, id);
        assert_eq!(
            done.get(&("p/a".to_owned(), PathBuf::from("/d/a"))),
            Some(&"1:2".to_owned())
        );
        j.batch_end(id).unwrap();
        let (_, done) = j.batch_begin("up s3 b p/ /d", "s3", "b", "p/").unwrap();
        assert!(done.is_empty());
        let future = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(j.discard_batches("s3", "b", "", future).unwrap(), 1);
    }
}
