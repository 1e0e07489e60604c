//! Where data lives, as users write it: `s3://bucket/key`, `gs://bucket/key`,
//! `az://container/key`, `local://bucket/key`, `-` for stdin/stdout, anything else
//! a file path.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::validate::NameRules;

/// Which store an object URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `s3://`: S3 or an S3-compatible endpoint.
    S3,
    /// `local://`: the embedded local store.
    Local,
    /// `gs://`: Google Cloud Storage.
    Gcs,
    /// `az://`: Azure Blob Storage (the bucket is the container).
    Azure,
}

impl Scheme {
    /// `s3`, `local`, `gs` or `az`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Local => "local",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
        }
    }

    /// Every scheme, in the order URLs are tried.
    pub const ALL: [Scheme; 4] = [Scheme::S3, Scheme::Local, Scheme::Gcs, Scheme::Azure];

    /// The store a URL of this scheme opens.
    pub fn storage_type(self) -> crate::config::StorageType {
        use crate::config::StorageType;
        match self {
            Scheme::S3 => StorageType::S3,
            Scheme::Local => StorageType::Local,
            Scheme::Gcs => StorageType::Gcs,
            Scheme::Azure => StorageType::Azure,
        }
    }

    /// Whose naming rules the store's bucket names and keys follow.
    pub fn names(self) -> NameRules {
        self.storage_type().name_rules()
    }
}

/// A parsed source or destination.
///
/// ```
/// use stor::{Location, Scheme};
/// let loc: Location = "s3://news/2026/a b.json".parse().unwrap();
/// assert_eq!(loc, Location::Object { scheme: Scheme::S3, bucket: "news".into(), key: "2026/a b.json".into() });
/// assert!(matches!("./report.pdf".parse::<Location>().unwrap(), Location::Path(_)));
/// assert!("s3://Bad_Bucket/k".parse::<Location>().is_err());
/// assert!("".parse::<Location>().is_err());
/// assert_eq!("/dev/stdout".parse::<Location>().unwrap(), Location::Stdio);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An object, or with an empty key a bucket (or a prefix ending in `/`).
    Object {
        /// The store.
        scheme: Scheme,
        /// The bucket.
        bucket: String,
        /// The key or prefix; may be empty.
        key: String,
    },
    /// A local file or directory.
    Path(PathBuf),
    /// Standard input or output (`-`).
    Stdio,
}

impl Location {
    /// Whether this names an object store rather than a file.
    pub fn is_object(&self) -> bool {
        matches!(self, Location::Object { .. })
    }
}

impl std::str::FromStr for Location {
    type Err = Error;

    fn from_str(s: &str) -> Result<Location> {
        // `-`, and the names of this process's own stdin/stdout: the CLI reads and
        // writes them as streams (never as files to replace).
        if matches!(
            s,
            "-" | "/dev/stdin"
                | "/dev/stdout"
                | "/dev/fd/0"
                | "/dev/fd/1"
                | "/proc/self/fd/0"
                | "/proc/self/fd/1"
        ) {
            return Ok(Location::Stdio);
        }
        if s.is_empty() {
            return Err(Error::invalid(
                "an empty location; give a file path, -, or an object URL (s3://BUCKET/KEY)",
            ));
        }
        for scheme in Scheme::ALL {
            let prefix = format!("{}://", scheme.as_str());
            if let Some(rest) = s.strip_prefix(&prefix) {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(Error::invalid(format!(
                        "{s:?} names no bucket; write {prefix}BUCKET/KEY"
                    )));
                }
                scheme.names().bucket(bucket)?;
                return Ok(Location::Object {
                    scheme,
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                });
            }
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Error::invalid(format!(
                    "unknown scheme {scheme}:// in {s:?}; use s3://, gs://, az://, local:// \
                     or a file path"
                )));
            }
        }
        Ok(Location::Path(PathBuf::from(s)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Object {
                scheme,
                bucket,
                key,
            } => {
                write!(f, "{}://{}/{}", scheme.as_str(), bucket, key)
            }
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Stdio => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_paths() {
        let l: Location = "local://b-1/".parse().unwrap();
        assert_eq!(
            l,
            Location::Object {
                scheme: Scheme::Local,
                bucket: "b-1".into(),
                key: "".into()
            }
        );
        let l: Location = "s3://bkt".parse().unwrap();
        assert!(matches!(l, Location::Object { ref key, .. } if key.is_empty()));
        let l: Location = "s3://bkt/a//b/%20".parse().unwrap();
        assert!(matches!(l, Location::Object { ref key, .. } if key == "a//b/%20"));
        assert_eq!("-".parse::<Location>().unwrap(), Location::Stdio);
        assert!("gcs://bkt/k".parse::<Location>().is_err());
        // Each store's own bucket rules: `_` is GCS's, not S3's or Azure's.
        assert!(matches!(
            "gs://my_bkt/k".parse::<Location>().unwrap(),
            Location::Object {
                scheme: Scheme::Gcs,
                ..
            }
        ));
        assert!("s3://my_bkt/k".parse::<Location>().is_err());
        assert!("az://my_bkt/k".parse::<Location>().is_err());
        assert!(matches!(
            "az://reports/2026/x".parse::<Location>().unwrap(),
            Location::Object { scheme: Scheme::Azure, ref key, .. } if key == "2026/x"
        ));
        assert!("s3:///k".parse::<Location>().is_err());
        assert!(matches!(
            "C:/x".parse::<Location>().unwrap(),
            Location::Path(_)
        ));
    }
}
