//! Server-side copies: one CopyObject, or — above `multipart_threshold` on stores
//! with part copies — concurrent UploadPartCopy requests pinned to the source's
//! ETag (the only way past S3's 5 GiB CopyObject limit).

use std::time::Instant;

use super::multipart::{MultipartUpload, PartBody};
use super::parts::copy_ranges;
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
    let (src, _) = core.request(|_| be.head_object(sb, sk)).await?;
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
        let new_opts = replace.unwrap_or_else(|| options_of(&src));
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
        core.request(|_| be.copy_object(sb, sk, db, dk, replace.as_ref()))
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
        resumed: 0,
    })
}

/// Moves an object (see [`crate::Storage::move_object`] for the proof that the
/// source is another object before it is deleted). Keys and buckets are checked.
pub(crate) async fn move_object(
    core: &Core,
    sb: &str,
    sk: &str,
    db: &str,
    dk: &str,
    opts: &CopyOptions,
) -> Result<TransferResult> {
    let be = &core.backend;
    if sb == db && sk == dk {
        // One key, new headers: replace them in place; nothing to delete.
        return copy(core, sb, sk, db, dk, opts).await;
    }
    let (src, _) = core.request(|_| be.head_object(sb, sk)).await?;
    let existed = match core.request(|_| be.head_object(db, dk)).await {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::KeyNotFound => false,
        Err(e) => return Err(e),
    };
    let marker = existed.then(|| hex::encode(rand::random::<[u8; 12]>()));
    let mut copy_opts = opts.clone();
    if let Some(m) = &marker {
        let mut r = copy_opts.replace.take().unwrap_or_else(|| options_of(&src));
        r.metadata.insert(MOVE_MARKER.to_owned(), m.clone());
        copy_opts.replace = Some(r);
    }
    let res = copy(core, sb, sk, db, dk, &copy_opts).await?;
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
        match core.request(|_| be.head_object(sb, sk)).await {
            Ok((now, _)) if now.metadata.get(MOVE_MARKER) == Some(m) => {
                let scheme = core.scheme();
                return Err(Error::invalid(format!(
                    "{scheme}://{db}/{dk} is the same stored object as {scheme}://{sb}/{sk} \
                     on this store (it normalises keys); nothing was moved or deleted"
                )));
            }
            Ok(_) => {}
            // Gone meanwhile (another client): nothing left to delete.
            Err(e) if e.kind() == ErrorKind::KeyNotFound => return Ok(res),
            Err(e) => return Err(e),
        }
    }
    core.request(|_| be.delete_object(sb, sk)).await?;
    Ok(res)
}
