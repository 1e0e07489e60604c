//! The embedded local store: the default backend, an S3 look-alike under one root
//! directory.
//!
//! Keys never become file paths. An SQLite index (WAL mode, synchronous=FULL) maps
//! `(bucket, key)` to a row of metadata and the name of an immutable blob file;
//! blob names are random hex, so any valid S3 key works — `a` beside `a/b`, `..`,
//! 1024-byte keys, any unicode byte for byte — and no key can reach outside the root.
//! Keys are stored as BLOBs so SQLite orders them by bytes, which is S3's order.
//!
//! A write streams into `tmp/`, is fsynced, renamed into `blobs/` and only then
//! committed to the index; the old blob is removed after the commit. A crash at any
//! point leaves either the old object or the new one, never a torn one; at worst a
//! temp file or a blob no row points at. Every open removes such temp files, `sweep`
//! (`stor cleanup local://..`) those blobs too, never a file of a write still in flight
//! in any process (writers hold an `flock` on it until committed; see `sweep.rs`).
//! Processes sharing a root wait for each other's writes (the index's write lock is
//! taken up front, with a 30 s busy timeout); reads never wait and never see a torn
//! object.
//!
//! Why SQLite rather than redb: several `stor` processes may share one root (two CLI
//! runs at once); SQLite's WAL takes concurrent readers and serialises writers across
//! processes, while redb allows one process per database file.
//!
//! ```text
//! <root>/stor.sqlite3      index: buckets, objects
//! <root>/blobs/<32 hex>    object bytes, immutable
//! <root>/tmp/              writes in progress
//! ```

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use md5::{Digest, Md5};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use self::sweep::{Creating, InFlight};
use super::common::{check_condition, info_from_opts, slice_range};
use super::{list_sorted, Backend, Body, Capabilities, CopySource, GetResponse, Tagging};
use crate::error::{Error, ErrorKind, Result};
use crate::types::{
    ByteRange, DeleteResult, ListOptions, ListPage, ObjectInfo, SweepReport, UploadOptions,
    WriteCondition,
};

mod sweep;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS buckets (
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    bucket              TEXT NOT NULL,
    key                 BLOB NOT NULL,
    size                INTEGER NOT NULL,
    etag                TEXT NOT NULL,
    modified_ms         INTEGER NOT NULL,
    content_type        TEXT,
    cache_control       TEXT,
    content_disposition TEXT,
    content_encoding    TEXT,
    storage_class       TEXT,
    metadata            TEXT NOT NULL,
    blob                TEXT NOT NULL,
    tags                TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
";

/// Columns added since the first schema, with their definitions: an index made by
/// an older stor gets them at open (old rows take the default).
const ADDED_COLUMNS: [(&str, &str); 1] = [("tags", "TEXT NOT NULL DEFAULT '{}'")];

type Tags = std::collections::BTreeMap<String, String>;

/// The local backend.
pub struct LocalBackend {
    root: PathBuf,
    db: Arc<Mutex<Connection>>,
    /// What the sweep at open removed, until a [`Backend::sweep`] reports it.
    swept_at_open: Mutex<SweepReport>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("root", &self.root)
            .finish()
    }
}

fn db_err(e: rusqlite::Error) -> Error {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            ErrorKind::Transient
        }
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("local store index: {e}")).with_source(e)
}

/// Starts a transaction that writes. IMMEDIATE takes the write lock up front, waiting
/// (busy timeout) for other processes' writers; a deferred one would take it only at
/// its first write, after reading, and SQLite then answers BUSY at once, without
/// waiting, because its snapshot may be stale.
fn write_tx(c: &mut Connection) -> Result<Transaction<'_>> {
    c.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)
}

fn no_bucket(bucket: &str) -> Error {
    Error::new(
        ErrorKind::BucketNotFound,
        format!("the bucket {bucket:?} does not exist (create it with `stor mb local://{bucket}`)"),
    )
}

fn no_key() -> Error {
    Error::new(ErrorKind::KeyNotFound, "the key does not exist")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_blob_name() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Fails unless `p` is a real directory (not a symlink to one elsewhere).
fn ensure_real_dir(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} is not a plain directory (a symlink or file was planted there); \
                 the local store refuses to write through it",
                p.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(p)
            .map_err(|e| Error::io(format!("creating {}", p.display()), e)),
        Err(e) => Err(Error::io(format!("checking {}", p.display()), e)),
    }
}

struct Row {
    info: ObjectInfo,
    blob: String,
    tags: Tags,
}

fn row_to_info(bucket: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let key: Vec<u8> = r.get("key")?;
    let key = String::from_utf8(key).unwrap_or_default();
    let mut info = ObjectInfo::new(bucket, &key, r.get::<_, i64>("size")? as u64);
    info.etag = Some(r.get("etag")?);
    info.last_modified =
        Some(UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>("modified_ms")? as u64));
    info.content_type = r.get("content_type")?;
    info.cache_control = r.get("cache_control")?;
    info.content_disposition = r.get("content_disposition")?;
    info.content_encoding = r.get("content_encoding")?;
    info.storage_class = r.get("storage_class")?;
    let meta: String = r.get("metadata")?;
    info.metadata = serde_json::from_str(&meta).unwrap_or_default();
    let tags: String = r.get("tags")?;
    Ok(Row {
        info,
        blob: r.get("blob")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
    })
}

const SELECT_ROW: &str = "SELECT key, size, etag, modified_ms, content_type, cache_control, \
    content_disposition, content_encoding, storage_class, metadata, blob, tags FROM objects";

/// Adds the columns of [`ADDED_COLUMNS`] an older index lacks.
fn add_missing_columns(conn: &Connection) -> Result<()> {
    let have: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('objects')")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(db_err)?;
    for (name, def) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE objects ADD COLUMN {name} {def}"))
                .map_err(db_err)?;
        }
    }
    Ok(())
}

impl LocalBackend {
    /// Opens (creating when needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalBackend> {
        let root: PathBuf = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating local store root {}", root.display()), e))?;
        ensure_real_dir(&root.join("blobs"))?;
        ensure_real_dir(&root.join("tmp"))?;
        let db_path = root.join("stor.sqlite3");
        if std::fs::symlink_metadata(&db_path)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            return Err(Error::new(
                ErrorKind::Io,
                format!("{} is a symlink; refusing to use it", db_path.display()),
            ));
        }
        let conn = Connection::open(&db_path).map_err(db_err)?;
        // Each statement below runs alone (autocommit), so it starts with no transaction
        // open and the busy handler waits out another process's writer; the schema
        // statements write only when the tables are missing.
        conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        add_missing_columns(&conn)?;
        // Temp files of writers that died: cheap, tmp/ holds only writes in progress
        // (blobs/ can be large, so orphan blobs wait for `sweep`). Never fatal: the
        // store works with them there.
        let swept = sweep::temp_files(&root.join("tmp"), false).unwrap_or_else(|e| {
            tracing::warn!("could not sweep {}: {e}", root.join("tmp").display());
            SweepReport::default()
        });
        if swept.temp_files > 0 {
            tracing::info!(
                files = swept.temp_files,
                bytes = swept.temp_bytes,
                "removed temp files of unfinished writes from the local store"
            );
        }
        Ok(LocalBackend {
            root,
            db: Arc::new(Mutex::new(conn)),
            swept_at_open: Mutex::new(swept),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, name: &str) -> PathBuf {
        self.root.join("blobs").join(name)
    }

    /// Runs `f` on the index connection off the async runtime.
    async fn with_db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Other, format!("local store task failed: {e}")))?
    }

    async fn require_bucket(&self, bucket: &str) -> Result<()> {
        let b = bucket.to_owned();
        let exists = self
            .with_db(move |c| {
                c.query_row("SELECT 1 FROM buckets WHERE name = ?1", [&b], |_| Ok(()))
                    .optional()
                    .map_err(db_err)
            })
            .await?;
        exists.ok_or_else(|| no_bucket(bucket))
    }

    async fn lookup(&self, bucket: &str, key: &str) -> Result<Row> {
        let (b, k) = (bucket.to_owned(), key.as_bytes().to_vec());
        let row = self
            .with_db(move |c| {
                let bucket_exists = c
                    .query_row("SELECT 1 FROM buckets WHERE name = ?1", [&b], |_| Ok(()))
                    .optional()
                    .map_err(db_err)?
                    .is_some();
                if !bucket_exists {
                    return Ok(Err(no_bucket(&b)));
                }
                let row = c
                    .query_row(
                        &format!("{SELECT_ROW} WHERE bucket = ?1 AND key = ?2"),
                        params![b, k],
                        |r| row_to_info(&b, r),
                    )
                    .optional()
                    .map_err(db_err)?;
                Ok(row.ok_or_else(no_key))
            })
            .await?;
        row
    }

    /// Writes `body` to a new blob file; returns (blob name, size, md5 hex, the mark
    /// that keeps sweeps off it until the commit).
    async fn write_blob(&self, body: Body) -> Result<(String, u64, String, InFlight)> {
        let tmp_dir = self.root.join("tmp");
        ensure_real_dir(&tmp_dir)?;
        ensure_real_dir(&self.root.join("blobs"))?;
        let (tmp, in_flight) = {
            let creating_err = |e| Error::io("creating a temp file in the local store", e);
            let _creating = Creating::lock(&tmp_dir).map_err(creating_err)?;
            let tmp = tempfile::Builder::new()
                .prefix(sweep::TEMP_PREFIX)
                .tempfile_in(&tmp_dir)
                .map_err(creating_err)?;
            let in_flight = InFlight::mark(tmp.as_file()).map_err(creating_err)?;
            (tmp, in_flight)
        };
        let (std_file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut md5 = Md5::new();
        let mut size = 0u64;
        let write = async {
            use tokio::io::AsyncWriteExt;
            match body {
                Body::Bytes(b) => {
                    md5.update(&b);
                    size = b.len() as u64;
                    file.write_all(&b)
                        .await
                        .map_err(|e| Error::io("writing to the local store", e))?;
                }
                Body::File(r) => {
                    // Checked before its last chunk (see FileRange): a source that
                    // changed fails here, before anything is committed.
                    let mut src = r.body();
                    while let Some(chunk) = src.next().await {
                        let chunk = chunk?;
                        md5.update(&chunk);
                        size += chunk.len() as u64;
                        file.write_all(&chunk)
                            .await
                            .map_err(|e| Error::io("writing to the local store", e))?;
                    }
                }
                Body::Stream(mut s) | Body::Sized(mut s, _) => {
                    while let Some(chunk) = s.next().await {
                        let chunk = chunk?;
                        md5.update(&chunk);
                        size += chunk.len() as u64;
                        file.write_all(&chunk)
                            .await
                            .map_err(|e| Error::io("writing to the local store", e))?;
                    }
                }
            }
            file.flush()
                .await
                .map_err(|e| Error::io("writing to the local store", e))?;
            file.sync_data()
                .await
                .map_err(|e| Error::io("syncing the local store", e))?;
            Ok::<_, Error>(())
        };
        // On error the TempPath is dropped and the temp file removed.
        write.await?;
        let name = new_blob_name();
        let dest = self.blob_path(&name);
        let blobs = self.root.join("blobs");
        tokio::task::spawn_blocking(move || -> Result<()> {
            tmp_path
                .persist(&dest)
                .map_err(|e| Error::io("moving a blob into the local store", e.error))?;
            // Make the rename durable before the index points at it.
            if let Ok(d) = std::fs::File::open(&blobs) {
                let _ = d.sync_all();
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Other, format!("local store task failed: {e}")))??;
        Ok((name, size, hex::encode(md5.finalize()), in_flight))
    }

    fn remove_blob(&self, name: &str) {
        let _ = std::fs::remove_file(self.blob_path(name));
    }

    /// Points `(bucket, key)` at a stored blob and removes the blob it replaces.
    /// `in_flight` is let go only once the commit is done (or failed).
    async fn commit(
        &self,
        info: ObjectInfo,
        tags: Tags,
        blob: String,
        in_flight: InFlight,
        condition: Option<WriteCondition>,
    ) -> Result<()> {
        let new_blob = blob.clone();
        let res = self
            .with_db(move |c| {
                // Moved in, so it outlives the commit even if this future is dropped.
                let _in_flight = in_flight;
                let tx = write_tx(c)?;
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM buckets WHERE name = ?1",
                        [&info.bucket],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(db_err)?;
                if exists.is_none() {
                    return Ok(Err(no_bucket(&info.bucket)));
                }
                let old: Option<(String, String)> = tx
                    .query_row(
                        "SELECT blob, etag FROM objects WHERE bucket = ?1 AND key = ?2",
                        params![info.bucket, info.key.as_bytes()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db_err)?;
                // Checked inside the write transaction: no other writer in any
                // process can come between the check and the commit.
                let current = old.as_ref().map(|(_, etag)| etag.as_str());
                if let Err(e) = check_condition(current, condition.as_ref()) {
                    return Ok(Err(e));
                }
                let old = old.map(|(blob, _)| blob);
                let modified = info
                    .last_modified
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or_else(now_ms);
                tx.execute(
                    "INSERT OR REPLACE INTO objects (bucket, key, size, etag, modified_ms, \
                     content_type, cache_control, content_disposition, content_encoding, \
                     storage_class, metadata, blob, tags) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        info.bucket,
                        info.key.as_bytes(),
                        info.size as i64,
                        info.etag.unwrap_or_default(),
                        modified,
                        info.content_type,
                        info.cache_control,
                        info.content_disposition,
                        info.content_encoding,
                        info.storage_class,
                        serde_json::to_string(&info.metadata).unwrap_or_else(|_| "{}".into()),
                        blob,
                        serde_json::to_string(&tags).unwrap_or_else(|_| "{}".into()),
                    ],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(Ok(old))
            })
            .await;
        match res {
            Ok(Ok(old)) => {
                if let Some(old) = old {
                    self.remove_blob(&old);
                }
                Ok(())
            }
            Ok(Err(e)) | Err(e) => {
                self.remove_blob(&new_blob);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn scheme(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> Capabilities {
        // One request per object, streamed to disk: no parts, and parallel ranged
        // reads of a local file would gain nothing.
        Capabilities {
            streaming_bodies: true,
            conditional_reads: true,
            conditional_writes: true,
            tags: true,
            ..Capabilities::default()
        }
    }

    fn tagging(&self) -> Option<&dyn Tagging> {
        Some(self)
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let b = bucket.to_owned();
        self.with_db(move |c| {
            // One statement (autocommit): it takes the write lock before it reads, so it
            // waits for other writers like an IMMEDIATE transaction.
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO buckets (name, created) VALUES (?1, ?2)",
                    params![b, now_ms()],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("the bucket {b:?} already exists"),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let b = bucket.to_owned();
        self.with_db(move |c| {
            let tx = write_tx(c)?;
            let exists = tx
                .query_row("SELECT 1 FROM buckets WHERE name = ?1", [&b], |_| Ok(()))
                .optional()
                .map_err(db_err)?;
            if exists.is_none() {
                return Err(no_bucket(&b));
            }
            let any = tx
                .query_row(
                    "SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1",
                    [&b],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db_err)?;
            if any.is_some() {
                return Err(Error::new(
                    ErrorKind::BucketNotEmpty,
                    format!("the bucket {b:?} is not empty; delete its objects first"),
                ));
            }
            tx.execute("DELETE FROM buckets WHERE name = ?1", [&b])
                .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.require_bucket(bucket).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::BucketNotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_buckets(&self) -> Result<Vec<String>> {
        self.with_db(|c| {
            let mut st = c
                .prepare("SELECT name FROM buckets ORDER BY name")
                .map_err(db_err)?;
            let names = st
                .query_map([], |r| r.get(0))
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db_err)?;
            Ok(names)
        })
        .await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        opts: &UploadOptions,
    ) -> Result<Option<String>> {
        self.require_bucket(bucket).await?;
        let (blob, size, md5, in_flight) = self.write_blob(body).await?;
        let mut info = info_from_opts(bucket, key, size, opts);
        info.etag = Some(md5.clone());
        let cond = opts.condition.clone();
        self.commit(info, opts.tags.clone(), blob, in_flight, cond)
            .await?;
        Ok(Some(md5))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> Result<GetResponse> {
        // A concurrent overwrite may remove the blob between lookup and open: look again.
        for _ in 0..5 {
            let row = self.lookup(bucket, key).await?;
            if let Some(m) = if_match {
                if row.info.etag.as_deref() != Some(m) {
                    return Err(Error::new(
                        ErrorKind::PreconditionFailed,
                        "the object changed",
                    ));
                }
            }
            let path = self.blob_path(&row.blob);
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("opening a blob of the local store", e)),
            };
            let (start, end) = slice_range(row.info.size, range)?;
            let mut file = tokio::fs::File::from_std(file);
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| Error::io("reading the local store", e))?;
            let reader = file.take(end - start);
            let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
                .map(|r| r.map_err(|e| Error::io("reading the local store", e)));
            return Ok(GetResponse {
                info: row.info,
                content_length: end - start,
                checksum: None,
                body: Box::pin(stream),
            });
        }
        Err(Error::new(
            ErrorKind::Transient,
            "the object kept changing while being opened",
        ))
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        Ok(self.lookup(bucket, key).await?.info)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.delete_objects(bucket, &[key.to_owned()]).await?;
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<DeleteResult>> {
        let b = bucket.to_owned();
        let ks = keys.to_vec();
        let blobs = self
            .with_db(move |c| {
                let tx = write_tx(c)?;
                let exists = tx
                    .query_row("SELECT 1 FROM buckets WHERE name = ?1", [&b], |_| Ok(()))
                    .optional()
                    .map_err(db_err)?;
                if exists.is_none() {
                    return Err(no_bucket(&b));
                }
                let mut blobs = Vec::new();
                for k in &ks {
                    let old: Option<String> = tx
                        .query_row(
                            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2 RETURNING blob",
                            params![b, k.as_bytes()],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(db_err)?;
                    blobs.extend(old);
                }
                tx.commit().map_err(db_err)?;
                Ok(blobs)
            })
            .await?;
        for blob in blobs {
            self.remove_blob(&blob);
        }
        Ok(keys
            .iter()
            .map(|k| DeleteResult {
                key: k.clone(),
                error: None,
            })
            .collect())
    }

    async fn list_objects(&self, bucket: &str, req: &ListOptions) -> Result<ListPage> {
        self.require_bucket(bucket).await?;
        let (b, req) = (bucket.to_owned(), req.clone());
        self.with_db(move |c| {
            let mut fetch = |prefix: &[u8], lower: &[u8], inclusive: bool, limit: usize| {
                let op = if inclusive { ">=" } else { ">" };
                // Keys under a prefix are one contiguous range in byte order.
                let upper = super::listing_upper_bound(prefix);
                let sql = match upper {
                    Some(_) => format!(
                        "{SELECT_ROW} WHERE bucket = ?1 AND key {op} ?2 AND key < ?3 \
                         ORDER BY key LIMIT ?4"
                    ),
                    None => format!(
                        "{SELECT_ROW} WHERE bucket = ?1 AND key {op} ?2 AND ?3 IS NULL \
                         ORDER BY key LIMIT ?4"
                    ),
                };
                let mut st = c.prepare_cached(&sql).map_err(db_err)?;
                let rows = st
                    .query_map(params![b, lower, upper, limit as i64], |r| {
                        row_to_info(&b, r)
                    })
                    .map_err(db_err)?;
                let mut out = Vec::new();
                for r in rows {
                    let row = r.map_err(db_err)?;
                    if row.info.key.as_bytes().starts_with(prefix) {
                        out.push(row.info);
                    }
                }
                Ok(out)
            };
            list_sorted(&mut fetch, &req)
        })
        .await
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
                "the local store keeps no versions",
            ));
        }
        let src = self.lookup(src.bucket, src.key).await?;
        self.require_bucket(dst_bucket).await?;
        // Blobs are immutable, so a hard link is a safe, O(1) copy.
        let name = new_blob_name();
        let (from, to) = (self.blob_path(&src.blob), self.blob_path(&name));
        // The source's inode is marked before the new name is linked to it, so a
        // sweep never finds that name unmarked before the commit.
        let linked = InFlight::open(&from).and_then(|m| std::fs::hard_link(&from, &to).map(|_| m));
        let in_flight = match linked {
            Ok(m) => m,
            Err(_) => {
                let tmp_src = Body::File(super::FileRange::new(from, 0, src.info.size));
                let (blob, _, _, m) = self.write_blob(tmp_src).await?;
                std::fs::rename(self.blob_path(&blob), &to)
                    .map_err(|e| Error::io("copying in the local store", e))?;
                m
            }
        };
        let mut info = match replace {
            Some(o) => info_from_opts(dst_bucket, dst_key, src.info.size, o),
            None => src.info.clone(),
        };
        info.bucket = dst_bucket.to_owned();
        info.key = dst_key.to_owned();
        info.etag = src.info.etag.clone();
        info.last_modified = Some(SystemTime::now());
        let etag = info.etag.clone();
        let tags = match replace {
            Some(o) => o.tags.clone(),
            None => src.tags,
        };
        self.commit(info, tags, name, in_flight, condition.cloned())
            .await?;
        Ok(etag)
    }

    /// Removes temp files and blobs of writes that died, and reports them with the
    /// temp files the open removed.
    async fn sweep(&self) -> Result<SweepReport> {
        let (root, db) = (self.root.clone(), self.db.clone());
        let mut report = tokio::task::spawn_blocking(move || -> Result<SweepReport> {
            let tmp = root.join("tmp");
            let mut report = sweep::temp_files(&tmp, true)
                .map_err(|e| Error::io(format!("sweeping {}", tmp.display()), e))?;
            report += sweep::orphan_blobs(&root.join("blobs"), || {
                let c = db.lock().unwrap_or_else(|p| p.into_inner());
                let mut st = c.prepare("SELECT blob FROM objects").map_err(db_err)?;
                let names = st
                    .query_map([], |r| r.get(0))
                    .map_err(db_err)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db_err)?;
                Ok(names)
            })?;
            Ok(report)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Other, format!("local store task failed: {e}")))??;
        report +=
            std::mem::take(&mut *self.swept_at_open.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(report)
    }
}

#[async_trait]
impl Tagging for LocalBackend {
    async fn get_tags(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Tags> {
        if version_id.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "the local store keeps no versions",
            ));
        }
        Ok(self.lookup(bucket, key).await?.tags)
    }

    async fn put_tags(&self, bucket: &str, key: &str, tags: &Tags) -> Result<()> {
        let (b, k) = (bucket.to_owned(), key.as_bytes().to_vec());
        let json = serde_json::to_string(tags).unwrap_or_else(|_| "{}".into());
        let updated = self
            .with_db(move |c| {
                c.execute(
                    "UPDATE objects SET tags = ?3 WHERE bucket = ?1 AND key = ?2",
                    params![b, k, json],
                )
                .map_err(db_err)
            })
            .await?;
        if updated == 0 {
            // Which one is missing: the bucket or the key.
            self.lookup(bucket, key).await?;
        }
        Ok(())
    }

    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()> {
        self.put_tags(bucket, key, &Tags::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(b: &LocalBackend, key: &str, data: &'static [u8]) -> Result<Option<String>> {
        b.put_object(
            "bkt",
            key,
            Body::Bytes(data.into()),
            &UploadOptions::default(),
        )
        .await
    }

    #[tokio::test]
    async fn symlinks_planted_in_the_root_are_never_written_through() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let b = LocalBackend::open(root.path()).unwrap();
        b.create_bucket("bkt").await.unwrap();
        put(&b, "k", b"v").await.unwrap();
        // Replace tmp/ and blobs/ by symlinks to a directory outside the root.
        for dir in ["tmp", "blobs"] {
            let p = root.path().join(dir);
            let moved = root.path().join(format!("{dir}.real"));
            std::fs::rename(&p, &moved).unwrap();
            std::os::unix::fs::symlink(outside.path(), &p).unwrap();
            let err = put(&b, "k2", b"evil").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Io, "{err}");
            assert!(err.to_string().contains("symlink"), "{err}");
            std::fs::remove_file(&p).unwrap();
            std::fs::rename(&moved, &p).unwrap();
        }
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );
        // A blob replaced by a symlink is not followed on read.
        let name: String = std::fs::read_dir(root.path().join("blobs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name()
            .into_string()
            .unwrap();
        let blob = root.path().join("blobs").join(&name);
        std::fs::remove_file(&blob).unwrap();
        std::fs::write(outside.path().join("secret"), b"outside data").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), &blob).unwrap();
        assert!(b.get_object("bkt", "k", None, None).await.is_err());
    }

    /// An index made before tags existed opens: the column is added, old objects
    /// read back with no tags, and take tags from then on.
    #[tokio::test]
    async fn an_index_from_before_tags_gets_the_column() {
        let root = tempfile::tempdir().unwrap();
        let b = LocalBackend::open(root.path()).unwrap();
        b.create_bucket("bkt").await.unwrap();
        put(&b, "old", b"kept").await.unwrap();
        drop(b);
        // Rebuild the table as the first schema had it.
        let c = Connection::open(root.path().join("stor.sqlite3")).unwrap();
        c.execute_batch(
            "CREATE TABLE o AS SELECT bucket, key, size, etag, modified_ms, content_type, \
             cache_control, content_disposition, content_encoding, storage_class, metadata, \
             blob FROM objects; DROP TABLE objects;",
        )
        .unwrap();
        c.execute_batch(
            &SCHEMA.replace("    tags                TEXT NOT NULL DEFAULT '{}',\n", ""),
        )
        .unwrap();
        c.execute_batch("INSERT INTO objects SELECT * FROM o; DROP TABLE o;")
            .unwrap();
        let cols: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_info('objects')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(!cols.contains(&"tags".to_string()), "{cols:?}");
        drop(c);
        let b = LocalBackend::open(root.path()).unwrap();
        assert_eq!(read(&b, "old").await, b"kept");
        assert!(b.get_tags("bkt", "old", None).await.unwrap().is_empty());
        let t = Tags::from([("k".to_string(), "v".to_string())]);
        b.put_tags("bkt", "old", &t).await.unwrap();
        assert_eq!(b.get_tags("bkt", "old", None).await.unwrap(), t);
    }

    #[tokio::test]
    async fn an_overwrite_replaces_the_blob_and_leaves_no_temp_files() {
        let root = tempfile::tempdir().unwrap();
        let b = LocalBackend::open(root.path()).unwrap();
        b.create_bucket("bkt").await.unwrap();
        put(&b, "k", b"one").await.unwrap();
        put(&b, "k", b"two").await.unwrap();
        let blobs = std::fs::read_dir(root.path().join("blobs"))
            .unwrap()
            .count();
        assert_eq!(blobs, 1, "the old blob is removed after the commit");
        assert_eq!(
            std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
            0
        );
        // A write to a missing bucket leaves nothing behind either.
        let err = b
            .put_object(
                "nope",
                "k",
                Body::Bytes("x".into()),
                &UploadOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound);
        assert_eq!(
            std::fs::read_dir(root.path().join("blobs"))
                .unwrap()
                .count(),
            1
        );
        // The index survives a reopen (another process, a restart).
        drop(b);
        let b = LocalBackend::open(root.path()).unwrap();
        let r = b.get_object("bkt", "k", None, None).await.unwrap();
        assert_eq!(r.content_length, 3);
    }

    fn names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    async fn read(b: &LocalBackend, key: &str) -> Vec<u8> {
        let r = b.get_object("bkt", key, None, None).await.unwrap();
        let chunks: Vec<bytes::Bytes> = r.body.map(|c| c.unwrap()).collect().await;
        chunks.concat()
    }

    /// Waits (bounded) for something another task does.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{what} never happened");
    }

    #[tokio::test]
    async fn a_sweep_removes_what_dead_writes_left_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (root.path().join("tmp"), root.path().join("blobs"));
        let b = LocalBackend::open(root.path()).unwrap();
        b.create_bucket("bkt").await.unwrap();
        put(&b, "k", b"kept").await.unwrap();
        drop(b);
        // What a writer killed while writing leaves, and one killed between the rename
        // into blobs/ and the commit (the CLI tests make both with real kills).
        std::fs::write(tmp.join(".put-dead"), b"partial").unwrap();
        let orphan = new_blob_name();
        std::fs::write(blobs.join(&orphan), b"orphan!!").unwrap();
        // Files the store did not make are not its to remove.
        std::fs::write(tmp.join("notes.txt"), b"x").unwrap();
        std::fs::write(blobs.join("README"), b"x").unwrap();

        let b = LocalBackend::open(root.path()).unwrap();
        assert!(!tmp.join(".put-dead").exists(), "the open sweeps tmp/");
        assert!(
            blobs.join(&orphan).exists(),
            "the open does not scan blobs/"
        );
        let swept = b.sweep().await.unwrap();
        assert_eq!(
            swept,
            SweepReport {
                temp_files: 1,
                temp_bytes: 7,
                orphan_blobs: 1,
                orphan_bytes: 8,
            }
        );
        assert!(!blobs.join(&orphan).exists());
        assert!(tmp.join("notes.txt").exists() && blobs.join("README").exists());
        assert_eq!(read(&b, "k").await, b"kept");
        assert_eq!(b.sweep().await.unwrap(), SweepReport::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_never_removes_a_write_in_flight() {
        let root = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (root.path().join("tmp"), root.path().join("blobs"));
        let b = Arc::new(LocalBackend::open(root.path()).unwrap());
        b.create_bucket("bkt").await.unwrap();
        put(&b, "src", b"source").await.unwrap();
        // A write streaming into tmp/.
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<bytes::Bytes>>();
        let writer = {
            let b = b.clone();
            tokio::spawn(async move {
                let body = Body::Stream(Box::pin(rx));
                b.put_object("bkt", "k", body, &UploadOptions::default())
                    .await
            })
        };
        tx.unbounded_send(Ok("first half, ".into())).unwrap();
        until("the temp file has bytes", || {
            names(&tmp)
                .iter()
                .any(|n| std::fs::metadata(tmp.join(n)).is_ok_and(|m| m.len() > 0))
        })
        .await;
        // Other handles (other processes lock alike) open and sweep; so does its own.
        let other = LocalBackend::open(root.path()).unwrap();
        assert_eq!(other.sweep().await.unwrap(), SweepReport::default());
        assert_eq!(b.sweep().await.unwrap(), SweepReport::default());

        // Holding the index's write lock stops the write between the rename into
        // blobs/ and the commit, and a copy between its hard link and its commit.
        let hold = Connection::open(root.path().join("stor.sqlite3")).unwrap();
        hold.execute_batch("BEGIN IMMEDIATE").unwrap();
        tx.unbounded_send(Ok("second half".into())).unwrap();
        drop(tx);
        until("the blob is renamed into blobs/", || {
            names(&blobs).len() == 2 && names(&tmp).is_empty()
        })
        .await;
        let copier = {
            let third = LocalBackend::open(root.path()).unwrap();
            tokio::spawn(async move { third.copy_object("bkt", "src", "bkt", "copy", None).await })
        };
        until("the copy's name is linked", || names(&blobs).len() == 3).await;
        assert_eq!(other.sweep().await.unwrap(), SweepReport::default());
        assert_eq!(names(&blobs).len(), 3);

        hold.execute_batch("ROLLBACK").unwrap();
        writer.await.unwrap().unwrap();
        copier.await.unwrap().unwrap();
        assert_eq!(read(&b, "k").await, b"first half, second half");
        assert_eq!(read(&b, "copy").await, b"source");
        assert_eq!(other.sweep().await.unwrap(), SweepReport::default());
    }
}
