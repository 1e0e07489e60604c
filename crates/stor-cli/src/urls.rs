//! The locations commands take (`s3://BUCKET/KEY`, `local://…`, `-`, a path) and the
//! keys they make of them.

use anyhow::Result;
use stor::{dir_prefix, ErrorKind, Location, Scheme};

use crate::exit::usage;

/// Any location: an object URL, `-` or a path.
pub fn parse(s: &str) -> Result<Location> {
    Ok(s.parse::<Location>()?)
}

/// An object URL (the key may be empty or a prefix); anything else is bad input.
pub fn object(s: &str) -> Result<(Scheme, String, String)> {
    match parse(s)? {
        Location::Object {
            scheme,
            bucket,
            key,
        } => Ok((scheme, bucket, key)),
        _ => Err(stor::Error::new(
            ErrorKind::InvalidInput,
            format!("{s:?} is not an object URL; write s3://BUCKET/KEY, gs://…, az://… or local://BUCKET/KEY"),
        )
        .into()),
    }
}

/// A bucket URL, with no key.
pub fn bucket_only(u: &str) -> Result<(Scheme, String)> {
    let (scheme, bucket, key) = object(u)?;
    if !key.is_empty() {
        return Err(usage(format!("{u} names a key; give only s3://BUCKET")));
    }
    Ok((scheme, bucket))
}

/// The URL of an object, as messages show it.
pub fn url(scheme: Scheme, bucket: &str, key: &str) -> String {
    format!("{}://{}/{}", scheme.as_str(), bucket, key)
}

/// The one rule of every recursive command (`cp -r`, `mv -r`, `rm -r`, `sync`,
/// `du`, `ls -r`): a URL names a directory, so `s3://b/logs` and `s3://b/logs/`
/// both mean the keys under `logs/` — never `logs-archive/…` or `logsX`, which
/// only share a name prefix (a wildcard, `s3://b/logs*`, matches by name).
pub fn tree_prefix(key: &str) -> String {
    dir_prefix(key)
}

/// The key for `name` under a destination key: `dir/` + name, or the key itself.
pub fn key_under(dst_key: &str, name: &str) -> String {
    if dst_key.is_empty() || dst_key.ends_with('/') {
        format!("{dst_key}{name}")
    } else {
        dst_key.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_keys() {
        assert_eq!(key_under("", "f.txt"), "f.txt");
        assert_eq!(key_under("dir/", "f.txt"), "dir/f.txt");
        assert_eq!(key_under("exact.txt", "f.txt"), "exact.txt");
        assert_eq!(tree_prefix("logs"), "logs/");
        assert_eq!(tree_prefix(""), "");
    }
}
