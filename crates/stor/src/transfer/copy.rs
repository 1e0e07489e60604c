//! Server-side copies: one CopyObject, or — above `multipart_threshold` on stores
//! with part copies — concurrent UploadPartCopy requests pinned to the source's
//! ETag (the only way past S3's 5 GiB CopyObject limit).

use std::time::Instant;

use super::condition::condition_error;
use super::multipart::{fails_now, MultipartUpload, PartBody};
use super::parts::copy_ranges;
use super::upload::check_write_options;
use crate::backend::versions_of;
use crate::backend::CopySource;
use crate::checksum;
use crate::core::Core;
use crate::error::{Error, ErrorKind, Result};
use crate::reserved::MOVE_MARKER;
use crate::types::{CopyOptions, ObjectInfo, TransferResult, UploadOptions};

/// The headers and metadata a copy carries over when it cannot use S3's COPY
/// directive (a multipart copy starts a new upload).
pub(crate) fn options_of(info: &ObjectInfo) -> UploadOptions {
    let mut metadata = info.metadata.clone();
    metadata.remove(MOVE_MARKER);
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

/// What a copy that starts a new object carries over from its source: headers,
/// metadata and, on stores with tags, the source's tags (of its version).
async fn carried_options(core: &Core, src: &ObjectInfo) -> Result<UploadOptions> {
    let mut o = options_of(src);
    if let Some(t) = core.backend.tagging().filter(|_| core.caps.tags) {
        let v = src.version_id.as_deref();
        let (tags, _) = core
            .request(|_| t.get_tags(&src.bucket, &src.key, v))
            .await?;
        o.tags = tags;
    }
    Ok(o)
}

/// The source's info: its current version, or the one asked for.
async fn head(core: &Core, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectInfo> {
    let be = &core.backend;
    let (info, _) = match version {
        None => core.request(|_| be.head_object(bucket, key)).await?,
        Some(v) => {
            let vs = versions_of(&**be)?;
            core.request(|_| vs.head_version(bucket, key, v)).await?
        }
    };
    Ok(info)
}

/// Server-side copy; the source's HEAD gives the size and a clear error (bucket or
/// key missing) before anything is written. Objects over `multipart_threshold` are
/// copied by concurrent UploadPartCopy requests pinned to the source's ETag (the
/// only way past S3's 5 GiB CopyObject limit, and faster for large objects), with
/// the source's headers and metadata. The stor checksum travels with the object,
/// also when the metadata is replaced (the bytes are the same).
pub(crate) async fn copy(
    core: &Core,
    sb: &str,
    sk: &str,
    db: &str,
    dk: &str,
    opts: &CopyOptions,
) -> Result<TransferResult> {
    let start = Instant::now();
    let be = &core.backend;
    if let Some(r) = &opts.replace {
        check_write_options(core, r)?;
    }
    let cond = opts.condition.as_ref();
    if cond.is_some() {
        check_write_options(core, &UploadOptions::default().create_only())?;
    }
    let version = opts.version_id.as_deref();
    let src = head(core, sb, sk, version).await?;
    core.ensure_bucket(db).await?;
    let sum = checksum::stored_in(&src.metadata);
    let mut replace = opts.replace.clone();
    if let (Some(r), Some((algo, value))) = (&mut replace, &sum) {
        r.metadata.retain(|k, _| !checksum::is_reserved(k));
        r.metadata.insert(algo.metadata_key(), value.clone());
    }
    let cfg = &core.config;
    let multipart_copy = core.caps.part_copy && src.size > cfg.multipart_threshold;
    let (etag, attempts) = if multipart_copy {
        let ranges = copy_ranges(src.size, cfg.part_size)?;
        let parts = futures::stream::iter(
            ranges
                .into_iter()
                .enumerate()
                .map(|(i, r)| Ok((i as i32 + 1, PartBody::Copy(r), None))),
        );
        let mut new_opts = match replace {
            Some(r) => r,
            None => carried_options(core, &src).await?,
        };
        new_opts.condition = opts.condition.clone();
        let (etag, attempts, _) = MultipartUpload {
            core,
            bucket: db,
            key: dk,
            opts: &new_opts,
            copy_from: Some(&src),
            progress: None,
            total: None,
            checksum: None,
            journal: None,
        }
        .run(parts, || Ok(None))
        .await?;
        (etag, attempts)
    } else {
        if let Some(c) = cond {
            fails_now(core, db, dk, c).await?;
        }
        let from = CopySource {
            bucket: sb,
            key: sk,
            version_id: version,
        };
        core.request(|_| be.copy_object_with(&from, db, dk, replace.as_ref(), cond))
            .await
            .map_err(|e| condition_error(e, cond))?
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
        resumed: 0,
    })
}

/// Moves an object (see [`crate::Storage::move_object`] for the proof that the
/// source is another object before it is deleted, and that it is still the
/// object that was copied). Keys and buckets are checked.
pub(crate) async fn move_object(
    core: &Core,
    sb: &str,
    sk: &str,
    db: &str,
    dk: &str,
    opts: &CopyOptions,
) -> Result<TransferResult> {
    let be = &core.backend;
    if opts.version_id.is_some() {
        return Err(Error::invalid(
            "a move takes the current object; to move a version, copy it (with its \
             version id) and delete that version",
        ));
    }
    if sb == db && sk == dk {
        // One key, new headers: replace them in place; nothing to delete.
        return copy(core, sb, sk, db, dk, opts).await;
    }
    let scheme = core.scheme();
    let (from, to) = (
        format!("{scheme}://{sb}/{sk}"),
        format!("{scheme}://{db}/{dk}"),
    );
    let (src, _) = core.request(|_| be.head_object(sb, sk)).await?;
    let before = match core.request(|_| be.head_object(db, dk)).await {
        Ok((info, _)) => Some(info),
        Err(e) if e.kind() == ErrorKind::KeyNotFound => None,
        Err(e) => return Err(e),
    };
    // What the copy carries over when it must replace the headers to add the
    // marker: the source's own (tags included, on stores with tags).
    let own = match before {
        Some(_) => Some(carried_options(core, &src).await?),
        None => None,
    };
    let marked = |m: &str, replace: Option<UploadOptions>| {
        let mut r = replace.or_else(|| own.clone()).unwrap_or_default();
        r.metadata.insert(MOVE_MARKER.to_owned(), m.to_owned());
        CopyOptions {
            replace: Some(r),
            ..opts.clone()
        }
    };
    let same_object = || {
        Error::invalid(format!(
            "{to} is the same stored object as {from} on this store (it normalises keys); \
             nothing was moved or deleted"
        ))
    };
    if before
        .as_ref()
        .is_some_and(|d| d.etag == src.etag && d.size == src.size)
    {
        // The destination may be the source under another spelling: prove it is not
        // before writing the new headers, so a refused move changes nothing. The
        // proof copies the source's own headers with a marker; on the same object
        // it is then put back as it was.
        let m = new_marker();
        copy(core, sb, sk, db, dk, &marked(&m, None)).await?;
        if carries(core, sb, sk, &m).await? {
            let back = CopyOptions {
                replace: own.clone(),
                ..CopyOptions::default()
            };
            if let Err(e) = copy(core, sb, sk, sb, sk, &back).await {
                tracing::warn!("could not remove the move marker from {from}: {e}");
            }
            return Err(same_object());
        }
    }
    let marker = before.is_some().then(new_marker);
    let copy_opts = match &marker {
        Some(m) => marked(m, opts.replace.clone()),
        None => opts.clone(),
    };
    let res = copy(core, sb, sk, db, dk, &copy_opts).await.map_err(|e| {
        if e.kind() == ErrorKind::PreconditionFailed {
            Error::new(
                ErrorKind::PreconditionFailed,
                "the source object changed during the move (its ETag no longer matches); \
                 nothing was moved or deleted — move it again",
            )
        } else {
            e
        }
    })?;
    let (dst, _) = core.request(|_| be.head_object(db, dk)).await?;
    let kept =
        |why: String| Error::new(ErrorKind::Integrity, format!("{why}; the source was kept"));
    if dst.size != res.bytes {
        return Err(kept(format!(
            "the copy has {} bytes, the source {}",
            dst.size, res.bytes
        )));
    }
    if let Some(m) = &marker {
        if dst.metadata.get(MOVE_MARKER) != Some(m) {
            return Err(kept(
                "the destination does not show the copy just made (another writer?)".into(),
            ));
        }
    }
    // Right before the delete: the source must still be the object that was
    // copied (and, with a marker, not the destination itself). A window remains
    // between this HEAD and the DELETE: S3 offers no conditional delete that every
    // engine honours (If-Match on DeleteObject is recent on AWS and unknown to most
    // S3-compatible servers), so this narrows the race to one round trip.
    let now = match core.request(|_| be.head_object(sb, sk)).await {
        Ok((now, _)) => now,
        // Gone meanwhile (another client): nothing left to delete.
        Err(e) if e.kind() == ErrorKind::KeyNotFound => return Ok(res),
        Err(e) => return Err(e),
    };
    if marker
        .as_ref()
        .is_some_and(|m| now.metadata.get(MOVE_MARKER) == Some(m))
    {
        return Err(same_object());
    }
    if now.etag != src.etag {
        return Err(Error::new(
            ErrorKind::PreconditionFailed,
            format!(
                "{from} changed during the move (it was replaced after the copy started); \
                 both it and the copy at {to} were kept"
            ),
        ));
    }
    core.request(|_| be.delete_object(sb, sk)).await?;
    Ok(res)
}

/// A unique value for the move marker.
fn new_marker() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// Whether the object at `bucket/key` now carries the move marker `m`.
async fn carries(core: &Core, bucket: &str, key: &str, m: &str) -> Result<bool> {
    let (info, _) = core
        .request(|_| core.backend.head_object(bucket, key))
        .await?;
    Ok(info.metadata.get(MOVE_MARKER).map(String::as_str) == Some(m))
}
