//! The metadata keys stor keeps for itself (`stor-…`): the end-to-end checksum
//! (`checksum.rs`), the modification time of the file an object was uploaded from,
//! and a move's proof marker. [`ObjectInfo`]s the library hands out carry them in
//! fields of their own ([`ObjectInfo::checksum`], [`ObjectInfo::source_mtime`]), so
//! `metadata` holds the user's metadata only — what other tools set and see.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checksum;
use crate::types::ObjectInfo;

/// The metadata key of the marker a move writes into a copy that lands on an
/// existing key, to prove the source is another object before deleting it (see
/// [`crate::Storage::move_object`]). Never shown as user metadata, nor carried by
/// copies.
pub const MOVE_MARKER: &str = "stor-move";

/// The metadata key holding the modification time of the file an object was
/// uploaded from ([`crate::BatchOptions::keep_mtime`]): seconds since the Unix epoch with
/// nine decimals, `1732612345.123456789` (rclone's `mtime` takes the same form).
pub const MTIME_KEY: &str = "stor-mtime";

/// `t` as stored under [`MTIME_KEY`]; `None` before 1970.
pub fn format_mtime(t: SystemTime) -> Option<String> {
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    Some(format!("{}.{:09}", d.as_secs(), d.subsec_nanos()))
}

/// The file modification time an object's metadata records ([`MTIME_KEY`]), if
/// it records one that parses.
pub fn stored_mtime(metadata: &BTreeMap<String, String>) -> Option<SystemTime> {
    let v = metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(MTIME_KEY))?
        .1
        .trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) if digits(f) && f.len() <= 9 => (s, f),
        Some(_) => return None,
        None => (v, ""),
    };
    if !digits(secs) {
        return None;
    }
    let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs.parse().ok()?, nanos))
}

/// Whether a metadata key is one of stor's own.
pub fn is_reserved(key: &str) -> bool {
    checksum::is_reserved(key)
        || key.eq_ignore_ascii_case(MTIME_KEY)
        || key.eq_ignore_ascii_case(MOVE_MARKER)
}

/// Moves stor's own keys out of an object's user metadata into their fields.
pub(crate) fn split(info: &mut ObjectInfo) {
    if info.metadata.keys().any(|k| is_reserved(k)) {
        info.checksum = checksum::stored_in(&info.metadata);
        info.source_mtime = stored_mtime(&info.metadata);
        info.metadata.retain(|k, _| !is_reserved(k));
    }
}
