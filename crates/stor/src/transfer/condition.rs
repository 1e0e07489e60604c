//! A failed write condition (create-only, If-Match) in stor's words and kinds,
//! shared by single uploads, multipart completions and copies.

use crate::error::{Error, ErrorKind};
use crate::types::WriteCondition;

/// A failed write condition in stor's words and kinds: create-only is
/// `AlreadyExists`, If-Match `PreconditionFailed` (also when the key holds nothing,
/// which some engines answer with 404). S3 engines answer both with 412; the local
/// and memory stores already say it this way.
pub(crate) fn condition_error(e: Error, cond: Option<&WriteCondition>) -> Error {
    let from_server = e.status().is_some() || e.code().is_some();
    let (kind, msg) = match (cond, e.kind()) {
        (Some(WriteCondition::IfAbsent), ErrorKind::PreconditionFailed) if from_server => (
            ErrorKind::AlreadyExists,
            "the key already holds an object and the write was create-only; nothing was \
             written"
                .to_owned(),
        ),
        (Some(WriteCondition::IfMatch(t)), ErrorKind::PreconditionFailed) if from_server => (
            ErrorKind::PreconditionFailed,
            format!(
                "the object is no longer the one with ETag {t} (it changed or is gone); \
                 nothing was written"
            ),
        ),
        (Some(WriteCondition::IfMatch(t)), ErrorKind::KeyNotFound) if from_server => (
            ErrorKind::PreconditionFailed,
            format!("no object holds the key, so its ETag is not {t}; nothing was written"),
        ),
        _ => return e,
    };
    Error::new(kind, msg).with_attempts(e.attempts(), e.elapsed().unwrap_or_default())
}
