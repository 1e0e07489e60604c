//! Presigned POST: browser form uploads. The store signs a *policy* — an expiry
//! and the conditions an upload must meet (its key, or a prefix of it; its size;
//! Content-Type; metadata) — and hands back the URL and the form fields a browser
//! sends with the file (`<form method="post" enctype="multipart/form-data">`, the
//! file field last). The server checks the signature, the expiry and every
//! condition; nothing of it is enforced by stor after signing.
//!
//! ```no_run
//! # async fn f(s: stor::Storage) -> stor::Result<()> {
//! use std::time::Duration;
//! use stor::{PostKey, PresignPostOptions};
//! let post = s
//!     .presign_post(
//!         "uploads",
//!         PostKey::StartsWith("user/42/".into()),
//!         PresignPostOptions::new(Duration::from_secs(600))
//!             .max_size(10 << 20)
//!             .content_type("image/png"),
//!     )
//!     .await?;
//! println!("{}", serde_json::to_string(&post).unwrap()); // {"url": …, "fields": {…}}
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::validate::{validate_expiry, validate_header_value, validate_key, MAX_KEY_BYTES};

/// Which keys a form upload may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostKey {
    /// Exactly this key.
    Exact(String),
    /// Any key starting with this prefix; the form's `key` field is
    /// `prefix${filename}` (the browser puts the file's name in), and the uploader
    /// may change it to any key under the prefix.
    StartsWith(String),
}

/// One condition of a POST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostCondition {
    /// The form field must have exactly this value (and stor puts it in the form).
    Equals {
        /// Field name (`Content-Type`, `x-amz-meta-…`, `acl`, …).
        field: String,
        /// Its value.
        value: String,
    },
    /// The form field must start with this (the uploader supplies the field).
    StartsWith {
        /// Field name.
        field: String,
        /// What its value must start with (empty: any value).
        prefix: String,
    },
    /// The file must have `min..=max` bytes.
    ContentLengthRange {
        /// Fewest bytes.
        min: u64,
        /// Most bytes.
        max: u64,
    },
}

/// Options of a presigned POST: how long the form works and what it allows.
#[derive(Debug, Clone)]
pub struct PresignPostOptions {
    /// How long the policy is valid, 1 s to 7 days.
    pub expires_in: Duration,
    /// Conditions besides the bucket and key (which the call gives).
    pub conditions: Vec<PostCondition>,
}

impl PresignPostOptions {
    /// A policy valid for `expires_in`, with no conditions yet.
    pub fn new(expires_in: Duration) -> PresignPostOptions {
        PresignPostOptions {
            expires_in,
            conditions: Vec::new(),
        }
    }
    /// Files of at most `max` bytes.
    pub fn max_size(self, max: u64) -> Self {
        self.condition(PostCondition::ContentLengthRange { min: 0, max })
    }
    /// Files of `min..=max` bytes.
    pub fn size_range(self, min: u64, max: u64) -> Self {
        self.condition(PostCondition::ContentLengthRange { min, max })
    }
    /// The upload's Content-Type is exactly `ct` (stor puts it in the form).
    pub fn content_type(self, ct: impl Into<String>) -> Self {
        self.field("Content-Type", ct)
    }
    /// The upload's Content-Type starts with `prefix` (`image/`).
    pub fn content_type_prefix(self, prefix: impl Into<String>) -> Self {
        self.condition(PostCondition::StartsWith {
            field: "Content-Type".into(),
            prefix: prefix.into(),
        })
    }
    /// The object gets this user metadata (`x-amz-meta-<name>`).
    pub fn metadata(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.field(format!("x-amz-meta-{name}"), value)
    }
    /// Any form field with an exact value.
    pub fn field(self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.condition(PostCondition::Equals {
            field: field.into(),
            value: value.into(),
        })
    }
    /// Adds a condition.
    pub fn condition(mut self, c: PostCondition) -> Self {
        self.conditions.push(c);
        self
    }
}

/// A form upload: POST the `fields` and then the file (field name `file`, last) to
/// `url` as `multipart/form-data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresignedPost {
    /// Where the form goes.
    pub url: String,
    /// The form fields, signature and policy included.
    pub fields: BTreeMap<String, String>,
}

/// Fields stor sets itself; a condition may not name them.
const RESERVED: [&str; 9] = [
    "bucket",
    "key",
    "policy",
    "file",
    "x-amz-signature",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-security-token",
];

/// Checks the key and conditions of a POST before anything is signed.
pub(crate) fn check(key: &PostKey, opts: &PresignPostOptions) -> Result<()> {
    validate_expiry(opts.expires_in)?;
    match key {
        PostKey::Exact(k) => validate_key(k)?,
        PostKey::StartsWith(p) if p.len() >= MAX_KEY_BYTES => {
            return Err(Error::invalid(format!(
                "key prefix of {} bytes leaves no room for a name (keys are at most \
                 {MAX_KEY_BYTES} bytes)",
                p.len()
            )))
        }
        PostKey::StartsWith(p) => validate_header_value("key prefix", p)?,
    }
    for c in &opts.conditions {
        let (field, value) = match c {
            PostCondition::Equals { field, value } => (field, value),
            PostCondition::StartsWith { field, prefix } => (field, prefix),
            PostCondition::ContentLengthRange { min, max } => {
                if min > max {
                    return Err(Error::invalid(format!(
                        "content-length-range {min}..={max}: the minimum is above the maximum"
                    )));
                }
                continue;
            }
        };
        let name = field.to_ascii_lowercase();
        if field.is_empty() || RESERVED.contains(&name.as_str()) {
            return Err(Error::invalid(format!(
                "POST condition on {field:?}: stor sets that field itself (give the key as \
                 the PostKey)"
            )));
        }
        if let Some(c) = field
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
        {
            return Err(Error::invalid(format!(
                "POST condition on {field:?}: character {c:?} is not allowed in a field name"
            )));
        }
        validate_header_value(field, value)?;
    }
    Ok(())
}

/// What a policy signs besides its conditions: when it expires and who signs it.
pub(crate) struct Signer<'a> {
    /// `AKID/20151229/us-east-1/s3/aws4_request`.
    pub credential: &'a str,
    /// `20151229T000000Z`.
    pub amz_date: &'a str,
    /// A session token, for temporary credentials.
    pub token: Option<&'a str>,
    pub expiration: SystemTime,
}

/// The policy document (JSON, to be base64-encoded and signed) and the form fields
/// that go with it, except `policy` and `x-amz-signature`. Conditions in the order
/// AWS's documented example has them: bucket, key, the caller's, then who signs.
pub(crate) fn policy(
    bucket: &str,
    key: &PostKey,
    opts: &PresignPostOptions,
    signer: &Signer<'_>,
) -> (String, BTreeMap<String, String>) {
    let mut fields = BTreeMap::new();
    let mut conditions = vec![json!({ "bucket": bucket })];
    match key {
        PostKey::Exact(k) => {
            conditions.push(json!({ "key": k }));
            fields.insert("key".to_owned(), k.clone());
        }
        PostKey::StartsWith(p) => {
            conditions.push(json!(["starts-with", "$key", p]));
            fields.insert("key".to_owned(), format!("{p}${{filename}}"));
        }
    }
    for c in &opts.conditions {
        conditions.push(match c {
            PostCondition::Equals { field, value } => {
                fields.insert(field.clone(), value.clone());
                json!({ field.as_str(): value })
            }
            PostCondition::StartsWith { field, prefix } => {
                json!(["starts-with", format!("${field}"), prefix])
            }
            PostCondition::ContentLengthRange { min, max } => {
                json!(["content-length-range", min, max])
            }
        });
    }
    let mut signed = vec![
        ("x-amz-credential", signer.credential),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        ("x-amz-date", signer.amz_date),
    ];
    if let Some(t) = signer.token {
        signed.push(("x-amz-security-token", t));
    }
    for (name, value) in signed {
        conditions.push(json!({ name: value }));
        fields.insert(name.to_owned(), value.to_owned());
    }
    let doc = json!({
        "expiration": expiration(signer.expiration),
        "conditions": Value::Array(conditions),
    });
    (doc.to_string(), fields)
}

/// `2015-12-30T12:00:00.000Z`, as POST policies write times.
fn expiration(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// AWS's documented example ("Example: Browser-Based Upload using HTTP POST
    /// (Using AWS Signature Version 4)"): the same conditions give the same
    /// policy document, condition for condition. (Its signature is checked in
    /// `backend/s3/post.rs`.)
    #[test]
    fn the_policy_matches_aws_documented_example() {
        let opts = PresignPostOptions::new(Duration::from_secs(1))
            .field("acl", "public-read")
            .field(
                "success_action_redirect",
                "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
            )
            .content_type_prefix("image/")
            .metadata("uuid", "14365123651274")
            .field("x-amz-server-side-encryption", "AES256")
            .condition(PostCondition::StartsWith {
                field: "x-amz-meta-tag".into(),
                prefix: String::new(),
            });
        let signer = Signer {
            credential: "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
            amz_date: "20151229T000000Z",
            token: None,
            // 2015-12-30T12:00:00Z
            expiration: UNIX_EPOCH + Duration::from_secs(1_451_476_800),
        };
        let key = PostKey::StartsWith("user/user1/".into());
        check(&key, &opts).unwrap();
        let (doc, fields) = policy("sigv4examplebucket", &key, &opts, &signer);
        let ours: Value = serde_json::from_str(&doc).unwrap();
        let theirs: Value = serde_json::from_str(AWS_EXAMPLE_POLICY).unwrap();
        assert_eq!(ours, theirs);
        // The form carries every exact value, and the key with its placeholder.
        assert_eq!(fields["key"], "user/user1/${filename}");
        assert_eq!(fields["acl"], "public-read");
        assert_eq!(fields["x-amz-meta-uuid"], "14365123651274");
        assert_eq!(fields["x-amz-date"], "20151229T000000Z");
        assert!(
            !fields.contains_key("Content-Type"),
            "a prefix is the uploader's"
        );
    }

    /// The documented policy, CRLF line ends and all (its base64 is what AWS signs).
    pub(crate) const AWS_EXAMPLE_POLICY: &str = "{ \"expiration\": \"2015-12-30T12:00:00.000Z\",\r\n  \"conditions\": [\r\n    {\"bucket\": \"sigv4examplebucket\"},\r\n    [\"starts-with\", \"$key\", \"user/user1/\"],\r\n    {\"acl\": \"public-read\"},\r\n    {\"success_action_redirect\": \"http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html\"},\r\n    [\"starts-with\", \"$Content-Type\", \"image/\"],\r\n    {\"x-amz-meta-uuid\": \"14365123651274\"},\r\n    {\"x-amz-server-side-encryption\": \"AES256\"},\r\n    [\"starts-with\", \"$x-amz-meta-tag\", \"\"],\r\n\r\n    {\"x-amz-credential\": \"AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request\"},\r\n    {\"x-amz-algorithm\": \"AWS4-HMAC-SHA256\"},\r\n    {\"x-amz-date\": \"20151229T000000Z\" }\r\n  ]\r\n}";

    #[test]
    fn bad_conditions_are_refused_before_signing() {
        let key = PostKey::Exact("a.txt".into());
        let o = |c: PostCondition| PresignPostOptions::new(Duration::from_secs(60)).condition(c);
        let cases = [
            o(PostCondition::ContentLengthRange { min: 10, max: 1 }),
            PresignPostOptions::new(Duration::from_secs(60)).field("key", "other"),
            PresignPostOptions::new(Duration::from_secs(60)).field("X-Amz-Signature", "x"),
            PresignPostOptions::new(Duration::from_secs(60)).field("a b", "x"),
            PresignPostOptions::new(Duration::from_secs(60)).content_type("text/plain\r\nX: y"),
            PresignPostOptions::new(Duration::ZERO),
            PresignPostOptions::new(Duration::from_secs(8 * 86_400)),
        ];
        for opts in cases {
            let e = check(&key, &opts).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{opts:?}");
        }
        let long = PostKey::StartsWith("p".repeat(1024));
        let ok = PresignPostOptions::new(Duration::from_secs(60));
        assert!(check(&long, &ok).is_err());
        assert!(check(&PostKey::Exact(String::new()), &ok).is_err());
        assert!(check(&PostKey::StartsWith(String::new()), &ok).is_ok());
    }
}
