//! Checks of bucket names, keys, metadata and other inputs by the S3 rules,
//! done once where they enter, before any I/O. Most servers check few of these
//! (SeaweedFS accepts 9 KB metadata, moto accepts 1025-byte keys), so the client must.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

/// Longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest total of user metadata keys and values, in bytes.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Longest presigned URL expiry S3 accepts (7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(604_800);

/// Checks a bucket name against S3's general-purpose bucket naming rules.
///
/// ```
/// assert!(stor::validate_bucket("my-bucket.logs").is_ok());
/// assert!(stor::validate_bucket("My_Bucket").is_err());
/// assert!(stor::validate_bucket("192.168.1.1").is_err());
/// ```
pub fn validate_bucket(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "invalid bucket name {name:?}: {why} (S3 bucket names are 3-63 characters of \
             lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
        )))
    };
    if name.len() < 3 {
        return bad("shorter than 3 characters");
    }
    if name.len() > 63 {
        return bad("longer than 63 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return bad(&format!("character {c:?} is not allowed"));
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("must start and end with a letter or digit");
    }
    // One pass over adjacent pairs (this runs on every call, e.g. per presigned URL).
    for pair in name.as_bytes().windows(2) {
        match pair {
            b".." => return bad("two adjacent dots"),
            b".-" | b"-." => return bad("a dot next to a hyphen"),
            _ => {}
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name.split('.').count() == 4
        && name.split('.').all(|p| p.parse::<u8>().is_ok())
    {
        return bad("formatted as an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return bad(&format!("the prefix {prefix:?} is reserved"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return bad(&format!("the suffix {suffix:?} is reserved"));
        }
    }
    Ok(())
}

/// Checks an object key: 1 to 1024 bytes of UTF-8.
///
/// ```
/// assert!(stor::validate_key("reports/2026/q3 final%.pdf").is_ok());
/// assert!(stor::validate_key("").is_err());
/// assert!(stor::validate_key(&"k".repeat(1025)).is_err());
/// ```
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid(
            "invalid key: the key is empty (give the object a name, e.g. dir/file.json)",
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(format!(
            "invalid key: {} bytes long, S3 allows at most {MAX_KEY_BYTES} bytes of UTF-8",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value that will be sent as an HTTP header (Content-Type, Cache-Control, …):
/// no control characters, so no header injection.
pub(crate) fn validate_header_value(what: &str, value: &str) -> Result<()> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "invalid {what} {value:?}: contains the control character {c:?} \
             (CR, LF and other control characters are not allowed in headers)"
        )));
    }
    Ok(())
}

/// Checks user metadata: names are HTTP tokens, values have no control characters,
/// and keys plus values total at most 2 KB as S3 requires.
pub(crate) fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut total = 0;
    for (k, v) in metadata {
        if k.is_empty() {
            return Err(Error::invalid("invalid metadata: empty name"));
        }
        if let Some(c) = k
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c)))
        {
            return Err(Error::invalid(format!(
                "invalid metadata name {k:?}: character {c:?} is not allowed \
                 (use letters, digits and -_.)"
            )));
        }
        validate_header_value(&format!("metadata value for {k:?}"), v)?;
        total += k.len() + v.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(Error::invalid(format!(
            "invalid metadata: {total} bytes of names and values, S3 allows at most \
             {MAX_METADATA_BYTES}"
        )));
    }
    Ok(())
}

/// Most tags S3 keeps on one object.
pub const MAX_TAGS: usize = 10;

/// Checks object tags by S3's rules: at most 10; keys of 1 to 128 characters and
/// values of at most 256, made of letters, digits, spaces and `+ - = . _ : / @`;
/// no key starting with `aws:` (reserved).
///
/// ```
/// use std::collections::BTreeMap;
/// let ok = BTreeMap::from([("team".to_string(), "data eng".to_string())]);
/// assert!(stor::validate_tags(&ok).is_ok());
/// let bad = BTreeMap::from([("a&b".to_string(), "x".to_string())]);
/// assert!(stor::validate_tags(&bad).is_err());
/// ```
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!(
            "{} tags: S3 keeps at most {MAX_TAGS} per object",
            tags.len()
        )));
    }
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c);
    for (k, v) in tags {
        let chars = k.chars().count();
        if chars == 0 || chars > 128 {
            return Err(Error::invalid(format!(
                "invalid tag key {k:?}: must be 1 to 128 characters"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::invalid(format!(
                "invalid tag key {k:?}: the prefix aws: is reserved"
            )));
        }
        if v.chars().count() > 256 {
            return Err(Error::invalid(format!(
                "invalid tag value for {k:?}: longer than 256 characters"
            )));
        }
        for (what, s) in [("key", k), ("value", v)] {
            if let Some(c) = s.chars().find(|c| !allowed(*c)) {
                return Err(Error::invalid(format!(
                    "invalid tag {what} {s:?}: character {c:?} is not allowed (tags are \
                     letters, digits, spaces and + - = . _ : / @)"
                )));
            }
        }
    }
    Ok(())
}

/// Whose naming rules a store follows: bucket (container) names and keys are
/// checked by them before any I/O, so a bad name fails the same clear way on every
/// store instead of as whatever the server answers.
///
/// ```
/// use stor::validate::NameRules;
/// assert!(NameRules::Gcs.bucket("my_bucket.logs").is_ok());
/// assert!(NameRules::S3.bucket("my_bucket.logs").is_err());
/// assert!(NameRules::Azure.bucket("reports-2026").is_ok());
/// assert!(NameRules::Azure.bucket("reports.2026").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NameRules {
    /// S3's general-purpose bucket rules (also the local and memory stores').
    #[default]
    S3,
    /// Google Cloud Storage: `_` and dots allowed, dotted names up to 222 characters.
    Gcs,
    /// Azure containers: 3-63 lowercase letters, digits and single hyphens.
    Azure,
}

impl NameRules {
    /// Checks a bucket (Azure: container) name.
    pub fn bucket(self, name: &str) -> Result<()> {
        match self {
            NameRules::S3 => validate_bucket(name),
            NameRules::Gcs => gcs_bucket(name),
            NameRules::Azure => azure_container(name),
        }
    }

    /// Checks a key beyond the rules every store shares ([`validate_key`]).
    pub fn key(self, key: &str) -> Result<()> {
        validate_key(key)?;
        match self {
            NameRules::S3 => Ok(()),
            NameRules::Gcs => {
                let bad = |why: &str| {
                    Err(Error::invalid(format!(
                        "invalid GCS object name {key:?}: {why} (GCS object names are 1-1024 \
                         bytes of UTF-8 without CR or LF, and not . or ..)"
                    )))
                };
                if key.contains(['\r', '\n']) {
                    return bad("it holds a carriage return or line feed");
                }
                if key == "." || key == ".." {
                    return bad("it is . or ..");
                }
                if key.starts_with(".well-known/acme-challenge/") {
                    return bad("the prefix .well-known/acme-challenge/ is reserved");
                }
                Ok(())
            }
            NameRules::Azure => {
                let bad = |why: &str| {
                    Err(Error::invalid(format!(
                        "invalid Azure blob name {key:?}: {why} (Azure blob names are 1-1024 \
                         characters without control characters, not ending in . or /)"
                    )))
                };
                if let Some(c) = key.chars().find(|c| c.is_control()) {
                    // XML 1.0, which Azure's listings are written in, cannot carry them.
                    return bad(&format!("the control character {c:?} is not allowed"));
                }
                if key.ends_with(['.', '/']) {
                    // Azure drops trailing dots and slashes from a name's segments.
                    return bad("it ends in . or /");
                }
                if key.split('/').any(|seg| seg.ends_with('.')) {
                    return bad("a path segment ends in .");
                }
                Ok(())
            }
        }
    }

    /// The URL scheme names of this store's objects are shown with.
    pub fn name(self) -> &'static str {
        match self {
            NameRules::S3 => "S3",
            NameRules::Gcs => "GCS",
            NameRules::Azure => "Azure",
        }
    }
}

fn gcs_bucket(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "invalid GCS bucket name {name:?}: {why} (GCS bucket names are 3-63 characters \
             of lowercase letters, digits, '-', '_' and '.', starting and ending with a letter \
             or digit; up to 222 with dots, 63 between dots)"
        )))
    };
    let max = if name.contains('.') { 222 } else { 63 };
    if name.len() < 3 {
        return bad("shorter than 3 characters");
    }
    if name.len() > max {
        return bad(&format!("longer than {max} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return bad(&format!("character {c:?} is not allowed"));
    }
    let (first, last) = (name.as_bytes()[0], name.as_bytes()[name.len() - 1]);
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("must start and end with a letter or digit");
    }
    if name.split('.').any(|p| p.is_empty() || p.len() > 63) {
        return bad("each dot-separated part must be 1-63 characters");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return bad("formatted as an IP address");
    }
    if name.starts_with("goog") || name.contains("google") || name.contains("g00gle") {
        return bad("names starting with goog or containing google are reserved");
    }
    Ok(())
}

fn azure_container(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "invalid Azure container name {name:?}: {why} (container names are 3-63 \
             lowercase letters, digits and single hyphens, starting and ending with a letter \
             or digit)"
        )))
    };
    if name.len() < 3 {
        return bad("shorter than 3 characters");
    }
    if name.len() > 63 {
        return bad("longer than 63 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return bad(&format!("character {c:?} is not allowed"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("--") {
        return bad("two hyphens in a row");
    }
    Ok(())
}

/// Checks a presigned URL expiry: 1 second to 7 days.
pub fn validate_expiry(expires_in: Duration) -> Result<()> {
    if expires_in < Duration::from_secs(1) {
        return Err(Error::invalid(format!(
            "invalid presign expiry {}s: must be at least 1 second",
            expires_in.as_secs_f64()
        )));
    }
    if expires_in > MAX_PRESIGN_EXPIRY {
        return Err(Error::invalid(format!(
            "invalid presign expiry {}s: S3 allows at most 604800 s (7 days)",
            expires_in.as_secs()
        )));
    }
    Ok(())
}

/// Checks a version id: what S3 hands out is short printable ASCII.
pub(crate) fn validate_version_id(v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 1024 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(format!(
            "invalid version id {v:?}: give one as a version listing shows it \
             (`stor ls --all-versions`)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_rules() {
        for ok in [
            "abc",
            "my-bucket",
            "a.b.c",
            "123",
            "bucket-1.logs",
            &"a".repeat(63),
        ] {
            assert!(validate_bucket(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "ab",
            &long,
            "ABC",
            "a_b",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "a.-b",
            "a-.b",
            "192.168.0.1",
            "xn--abc",
            "sthree-x",
            "amzn-s3-demo-x",
            "abc-s3alias",
            "abc--ol-s3",
            "abc.mrap",
            "abc--x-s3",
            "abc--table-s3",
            "a b c",
            "abé",
        ] {
            let err = validate_bucket(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
            assert!(err.message().contains("invalid bucket name"), "{bad}");
        }
        // Four dotted parts that are not all numbers is a valid name.
        assert!(validate_bucket("1.2.3.x").is_ok());
    }

    #[test]
    fn key_rules() {
        assert!(validate_key("a").is_ok());
        assert!(validate_key(&"é".repeat(512)).is_ok()); // 1024 bytes
        assert!(validate_key(&"é".repeat(513)).is_err()); // 1026 bytes
        assert!(validate_key(&"k".repeat(1024)).is_ok());
        assert!(validate_key(&"k".repeat(1025)).is_err());
        assert!(validate_key("").is_err());
        assert!(validate_key("../../etc/passwd").is_ok()); // a valid S3 key; backends keep it safe
    }

    #[test]
    fn metadata_rules() {
        let mut m = BTreeMap::new();
        m.insert("source".to_string(), "크롤러 news".to_string());
        assert!(validate_metadata(&m).is_ok());
        m.insert("bad\nname".to_string(), "x".to_string());
        assert!(validate_metadata(&m).is_err());
        let mut m = BTreeMap::new();
        m.insert("x".to_string(), "a\r\nX-Injected: 1".to_string());
        assert!(validate_metadata(&m).is_err());
        let mut m = BTreeMap::new();
        m.insert("big".to_string(), "v".repeat(2045));
        assert!(validate_metadata(&m).is_ok()); // 3 + 2045 = 2048
        m.insert("big".to_string(), "v".repeat(2046));
        assert!(validate_metadata(&m).is_err());
    }

    #[test]
    fn gcs_and_azure_bucket_rules() {
        let gcs = NameRules::Gcs;
        for ok in [
            "my_bucket",
            "a.b.c",
            "abc",
            "a-b_c.d1",
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
        ] {
            assert!(gcs.bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "_abc",
            "abc_",
            "ABC",
            "a..b",
            "goog-x",
            "my-google-data",
            "1.2.3.4",
            &"a".repeat(64),
            &format!("{}.b", "a".repeat(64)),
        ] {
            let e = gcs.bucket(bad).unwrap_err();
            assert!(
                e.message().contains("invalid GCS bucket name"),
                "{bad}: {e}"
            );
        }
        let az = NameRules::Azure;
        for ok in ["abc", "reports-2026", "1ab", &"a".repeat(63)] {
            assert!(az.bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "a_b",
            "a.b",
            "-ab",
            "ab-",
            "a--b",
            "ABC",
            &"a".repeat(64),
        ] {
            let e = az.bucket(bad).unwrap_err();
            assert!(
                e.message().contains("invalid Azure container name"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn gcs_and_azure_key_rules() {
        for bad in ["a\nb", "a\rb", ".", "..", ".well-known/acme-challenge/x"] {
            assert!(NameRules::Gcs.key(bad).is_err(), "{bad:?}");
            assert!(NameRules::S3.key(bad).is_ok(), "{bad:?}");
        }
        assert!(NameRules::Gcs.key("a/./b").is_ok());
        for bad in ["a\u{1b}b", "dir/", "name.", "a./b"] {
            assert!(NameRules::Azure.key(bad).is_err(), "{bad:?}");
        }
        assert!(NameRules::Azure.key("a/b.c").is_ok());
    }

    #[test]
    fn expiry_rules() {
        assert!(validate_expiry(Duration::from_secs(0)).is_err());
        assert!(validate_expiry(Duration::from_millis(999)).is_err());
        assert!(validate_expiry(Duration::from_secs(1)).is_ok());
        assert!(validate_expiry(Duration::from_secs(604_800)).is_ok());
        assert!(validate_expiry(Duration::from_secs(604_801)).is_err());
    }

    #[test]
    fn header_values_reject_control_characters() {
        assert!(validate_header_value("Content-Type", "text/plain; charset=utf-8").is_ok());
        assert!(validate_header_value("Content-Type", "text/plain\r\nX: y").is_err());
        assert!(validate_header_value("Content-Type", "a\0b").is_err());
    }
}
