//! What the local and memory stores share: object info from upload options,
//! S3's ETag of a single PUT, range arithmetic, and reading a body whole.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest, Md5};

use super::Body;
use crate::error::{Error, ErrorKind, Result};
use crate::types::{ByteRange, ObjectInfo, UploadOptions, WriteCondition};

pub(super) fn etag_of(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

pub(super) fn info_from_opts(
    bucket: &str,
    key: &str,
    size: u64,
    opts: &UploadOptions,
) -> ObjectInfo {
    let mut info = ObjectInfo::new(bucket, key, size);
    info.content_type = opts.content_type.clone();
    info.metadata = opts.metadata.clone();
    info.cache_control = opts.cache_control.clone();
    info.content_disposition = opts.content_disposition.clone();
    info.content_encoding = opts.content_encoding.clone();
    info.storage_class = Some(
        opts.storage_class
            .clone()
            .unwrap_or_else(|| "STANDARD".into()),
    );
    info.last_modified = Some(SystemTime::now());
    info
}

pub(super) async fn collect_body(body: Body) -> Result<Bytes> {
    match body {
        Body::Bytes(b) => Ok(b),
        Body::File(r) => {
            let mut buf = BytesMut::with_capacity(r.len as usize);
            let mut body = r.body();
            while let Some(chunk) = body.next().await {
                buf.extend_from_slice(&chunk?);
            }
            Ok(buf.freeze())
        }
        Body::Stream(mut s) | Body::Sized(mut s, _) => {
            let mut buf = BytesMut::new();
            while let Some(chunk) = s.next().await {
                buf.extend_from_slice(&chunk?);
            }
            Ok(buf.freeze())
        }
    }
}

pub(super) fn slice_range(size: u64, range: Option<ByteRange>) -> Result<(u64, u64)> {
    match range {
        None => Ok((0, size)),
        Some(r) if r.start >= size && !(r.start == 0 && size == 0) || r.end <= r.start => {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "range {}..{} is not satisfiable for {size} bytes",
                    r.start, r.end
                ),
            ))
        }
        Some(r) => Ok((r.start, r.end.min(size))),
    }
}

/// Checks a write's condition against the ETag of the object the key holds now
/// (`None`: no object). The local and memory stores call it under the lock their
/// write commits under, so the check and the write are one step.
pub(super) fn check_condition(current: Option<&str>, cond: Option<&WriteCondition>) -> Result<()> {
    match (cond, current) {
        (None, _) | (Some(WriteCondition::IfAbsent), None) => Ok(()),
        (Some(WriteCondition::IfAbsent), Some(_)) => Err(Error::new(
            ErrorKind::AlreadyExists,
            "the key already holds an object and the write was create-only; nothing was \
             written",
        )),
        (Some(WriteCondition::IfMatch(want)), None) => Err(Error::new(
            ErrorKind::PreconditionFailed,
            format!("no object holds the key, so its ETag is not {want}; nothing was written"),
        )),
        (Some(WriteCondition::IfMatch(want)), Some(now)) if now != want.trim_matches('"') => {
            Err(Error::new(
                ErrorKind::PreconditionFailed,
                format!("the object's ETag is {now}, not {want} (it changed); nothing was written"),
            ))
        }
        (Some(WriteCondition::IfMatch(_)), Some(_)) => Ok(()),
    }
}
