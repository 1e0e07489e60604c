//! Configuration: plain data with defaults.
//!
//! [`StorageConfig`] reads the original service's JSON verbatim:
//!
//! ```
//! let cfg = stor::StorageConfig::from_json_str(r#"{"storageConfig": {
//!     "storage_type": "s3",
//!     "aws_access_key_id": "AKIAEXAMPLE",
//!     "aws_secret_access_key": "very-secret",
//!     "region_name": "ap-northeast-2",
//!     "default_bucket": "news",
//!     "upload_timeout": 300, "download_timeout": 300, "max_retries": 3
//! }}"#).unwrap();
//! assert_eq!(cfg.storage_type, stor::StorageType::S3);
//! assert_eq!(cfg.multipart_threshold, 100 * 1024 * 1024);
//! assert!(!format!("{cfg:?}").contains("very-secret"));
//! ```
//!
//! Anything left out of the config comes from the standard AWS environment
//! (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
//! AWS_ENDPOINT_URL, AWS_PROFILE and the ~/.aws files) through the AWS SDK's chain,
//! as for the aws cli.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::checksum::ChecksumAlgorithm;
use crate::error::{Error, Result};

/// 1 MiB.
pub const MIB: u64 = 1024 * 1024;
/// Smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// Most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// Region used when neither config nor environment names one (the original's default).
pub const DEFAULT_REGION: &str = "ap-northeast-2";

/// Which backend a [`crate::Storage`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// AWS S3 or any S3-compatible engine.
    S3,
    /// The embedded local store under `local_root` (the default).
    #[default]
    Local,
    /// In-process memory, for tests and examples.
    Memory,
}

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself: use only to hand it to the signer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// Everything a [`crate::Storage`] needs. Build it with struct update syntax over
/// `StorageConfig::default()`, or read it with [`StorageConfig::from_json_str`] /
/// [`StorageConfig::from_file`].
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Backend: `s3`, `local` (default) or `memory`.
    pub storage_type: StorageType,
    /// Access key; when unset the AWS credential chain is used.
    pub aws_access_key_id: Option<String>,
    /// Secret key; when unset the AWS credential chain is used.
    pub aws_secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    pub aws_session_token: Option<Secret>,
    /// Region; when unset AWS_REGION / the profile, else `ap-northeast-2`.
    #[serde(alias = "region")]
    pub region_name: Option<String>,
    /// Bucket used when an operation names none.
    pub default_bucket: Option<String>,
    /// A custom S3 endpoint (MinIO, Ceph, SeaweedFS, R2, …); else AWS_ENDPOINT_URL.
    pub endpoint_url: Option<String>,
    /// Path-style addressing; defaults to true when an endpoint is given.
    pub force_path_style: Option<bool>,
    /// Root directory of the local store; default under the user's data directory.
    pub local_root: Option<PathBuf>,
    /// AWS profile name for credentials and region (like AWS_PROFILE).
    pub profile: Option<String>,
    /// Whole-transfer upload timeout, seconds.
    pub upload_timeout: u64,
    /// Whole-transfer download timeout, seconds.
    pub download_timeout: u64,
    /// Timeout of every other operation (list, head, delete, copy), seconds.
    pub operation_timeout: u64,
    /// TCP connect timeout, seconds.
    pub connect_timeout: u64,
    /// Timeout for a stalled read on a connection, seconds.
    pub read_timeout: u64,
    /// Total attempts per request, including the first (1 = no retries).
    pub max_retries: u32,
    /// Uploads larger than this many bytes use multipart.
    pub multipart_threshold: u64,
    /// Part size for multipart transfers in bytes; `None` picks one automatically.
    #[serde(alias = "multipart_chunksize")]
    pub part_size: Option<u64>,
    /// Parts (or objects) transferred at once per transfer.
    pub max_concurrency: usize,
    /// Requests in flight at once across the whole client, and the most TCP
    /// connections open to the endpoint at any moment (the connection pool).
    pub max_pool_connections: usize,
    /// fsync each downloaded file before it is renamed into place, so it survives a
    /// power loss too. Off by default, like aws, s5cmd and rclone: the temp-file
    /// rename already means no partial file after a crash of the process.
    pub fsync_downloads: bool,
    /// PEM file of the certificate authorities to trust instead of the system's
    /// (like the aws cli's `ca_bundle`); else `AWS_CA_BUNDLE`, else the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// Full-object checksum stored with every upload and verified on every download:
    /// `crc64nvme` (default), `crc32c`, `crc32` or `none`.
    pub checksum: ChecksumAlgorithm,
    /// Also send that checksum in S3's own headers (`x-amz-checksum-crc64nvme` /
    /// `-crc32c`; multipart uploads as a FULL_OBJECT checksum), so the server checks
    /// every upload on arrival and keeps the checksum (also for streams over the
    /// multipart threshold, whose checksum is known only at the end). Unset: on for
    /// AWS, off for custom endpoints (`true` for engines that support it: SeaweedFS,
    /// MinIO, R2 do; `stor doctor` tells). Downloads of objects without a stor
    /// checksum are then verified against the full-object checksum the server keeps.
    pub native_checksums: Option<bool>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            storage_type: StorageType::Local,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_session_token: None,
            region_name: None,
            default_bucket: None,
            endpoint_url: None,
            force_path_style: None,
            local_root: None,
            profile: None,
            upload_timeout: 300,
            download_timeout: 300,
            operation_timeout: 60,
            connect_timeout: 10,
            read_timeout: 60,
            max_retries: 3,
            multipart_threshold: 100 * MIB,
            part_size: None,
            max_concurrency: 10,
            max_pool_connections: 50,
            fsync_downloads: false,
            checksum: ChecksumAlgorithm::Crc64nvme,
            native_checksums: None,
            ca_bundle: None,
        }
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = |s: &Option<Secret>| s.as_ref().map(|_| "***");
        f.debug_struct("StorageConfig")
            .field("storage_type", &self.storage_type)
            .field(
                "aws_access_key_id",
                &self.aws_access_key_id.as_deref().map(mask_key_id),
            )
            .field(
                "aws_secret_access_key",
                &masked(&self.aws_secret_access_key),
            )
            .field("aws_session_token", &masked(&self.aws_session_token))
            .field("region_name", &self.region_name)
            .field("default_bucket", &self.default_bucket)
            .field("endpoint_url", &self.endpoint_url)
            .field("force_path_style", &self.force_path_style)
            .field("local_root", &self.local_root)
            .field("profile", &self.profile)
            .field("upload_timeout", &self.upload_timeout)
            .field("download_timeout", &self.download_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_retries", &self.max_retries)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_pool_connections", &self.max_pool_connections)
            .field("fsync_downloads", &self.fsync_downloads)
            .field("checksum", &self.checksum)
            .field("ca_bundle", &self.ca_bundle)
            .field("native_checksums", &self.native_checksums)
            .finish()
    }
}

/// Shows an access key id as its first 4 characters and `***`.
pub fn mask_key_id(id: &str) -> String {
    let head: String = id.chars().take(4).collect();
    format!("{head}***")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    #[serde(rename = "storageConfig")]
    storage_config: serde_json::Value,
}

impl StorageConfig {
    /// A config for the in-memory backend (tests, examples).
    pub fn memory() -> StorageConfig {
        StorageConfig {
            storage_type: StorageType::Memory,
            ..StorageConfig::default()
        }
    }

    /// A config for the embedded local store rooted at `root`.
    pub fn local(root: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            storage_type: StorageType::Local,
            local_root: Some(root.into()),
            ..StorageConfig::default()
        }
    }

    /// A config for S3 or an S3-compatible endpoint; credentials and region from the
    /// AWS environment unless set on the result.
    pub fn s3() -> StorageConfig {
        StorageConfig {
            storage_type: StorageType::S3,
            ..StorageConfig::default()
        }
    }

    /// Parses JSON: either `{"storageConfig": {...}}` (the original format) or the
    /// inner object alone. Unknown keys and bad values are errors naming the key.
    pub fn from_json_str(json: &str) -> Result<StorageConfig> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::config(format!("config is not valid JSON: {e}")))?;
        let (inner, prefix) = match &value {
            serde_json::Value::Object(map) if map.contains_key("storageConfig") => {
                let w: Wrapped = serde_json::from_value(value)
                    .map_err(|e| Error::config(format!("config: {e}")))?;
                (w.storage_config, "storageConfig.")
            }
            _ => (value, ""),
        };
        let cfg: StorageConfig = serde_path_to_error::deserialize(inner).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                Error::config(format!("config {prefix}: {inner}"))
            } else {
                Error::config(format!("config key {prefix}{path}: {inner}"))
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads [`StorageConfig::from_json_str`] from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<StorageConfig> {
        StorageConfig::from_file_profile(path, None)
    }

    /// Reads a config file that is either one config (`{"storageConfig": {...}}`)
    /// or named profiles (`{"profiles": {"default": {...}, "minio": {...}}}`, like
    /// rclone remotes); `profile` picks one (`default` when `None`). A file holding
    /// secrets that group or others can read gets a warning.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("config.json");
    /// std::fs::write(&path, r#"{"profiles": {
    ///     "default": {"storage_type": "local"},
    ///     "minio": {"storage_type": "s3", "endpoint_url": "http://127.0.0.1:9000"}}}"#).unwrap();
    /// let c = stor::StorageConfig::from_file_profile(&path, Some("minio")).unwrap();
    /// assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
    /// let e = stor::StorageConfig::from_file_profile(&path, Some("prod")).unwrap_err();
    /// assert!(e.to_string().contains("default, minio"));
    /// ```
    pub fn from_file_profile(
        path: impl AsRef<Path>,
        profile: Option<&str>,
    ) -> Result<StorageConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading config {}", path.display()), e))?;
        let in_file = |e: Error| {
            Error::config(format!("{}: {}", path.display(), e.message())).with_kind(e.kind())
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(format!("{}: not valid JSON: {e}", path.display())))?;
        let cfg = match value.get("profiles").and_then(|p| p.as_object()) {
            Some(profiles) => {
                let name = profile.unwrap_or("default");
                let chosen = profiles.get(name).ok_or_else(|| {
                    let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
                    Error::config(format!(
                        "{}: no profile {name:?}; it has: {}",
                        path.display(),
                        names.join(", ")
                    ))
                })?;
                StorageConfig::from_json_str(&chosen.to_string()).map_err(|e| {
                    in_file(Error::config(format!("profile {name}: {}", e.message())))
                })?
            }
            None => StorageConfig::from_json_str(&text).map_err(in_file)?,
        };
        if cfg.aws_secret_access_key.is_some() || cfg.aws_session_token.is_some() {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        "{} holds credentials and is readable by group or others; \
                         restrict it with `chmod 600 {}`",
                        path.display(),
                        path.display()
                    );
                }
            }
        }
        Ok(cfg)
    }

    /// Whether a config file defines named profiles.
    pub fn file_has_profiles(path: impl AsRef<Path>) -> bool {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("profiles").is_some())
    }

    /// Checks every value; the error names the key and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: u64| {
            if v == 0 {
                Err(Error::config(format!(
                    "config key {name}: must be at least 1"
                )))
            } else {
                Ok(())
            }
        };
        positive("upload_timeout", self.upload_timeout)?;
        positive("download_timeout", self.download_timeout)?;
        positive("operation_timeout", self.operation_timeout)?;
        positive("connect_timeout", self.connect_timeout)?;
        positive("read_timeout", self.read_timeout)?;
        if !(1..=20).contains(&self.max_retries) {
            return Err(Error::config(format!(
                "config key max_retries: {} is out of range; it is the total number of attempts \
                 per request, 1..=20",
                self.max_retries
            )));
        }
        if !(1..=1000).contains(&self.max_concurrency) {
            return Err(Error::config(format!(
                "config key max_concurrency: {} is out of range 1..=1000",
                self.max_concurrency
            )));
        }
        if !(1..=10_000).contains(&self.max_pool_connections) {
            return Err(Error::config(format!(
                "config key max_pool_connections: {} is out of range 1..=10000",
                self.max_pool_connections
            )));
        }
        if self.multipart_threshold < MIN_PART_SIZE {
            return Err(Error::config(format!(
                "config key multipart_threshold: {} bytes is below S3's 5 MiB minimum part size",
                self.multipart_threshold
            )));
        }
        if let Some(p) = self.part_size {
            if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&p) {
                return Err(Error::config(format!(
                    "config key part_size: {p} bytes is outside S3's part size range \
                     5 MiB..=5 GiB"
                )));
            }
        }
        if let Some(b) = &self.default_bucket {
            crate::validate::validate_bucket(b).map_err(|e| {
                Error::config(format!("config key default_bucket: {}", e.message()))
            })?;
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::config(format!(
                    "config key endpoint_url: {url:?} must start with http:// or https://"
                )));
            }
        }
        if self.aws_access_key_id.is_some() != self.aws_secret_access_key.is_some() {
            return Err(Error::config(
                "config keys aws_access_key_id and aws_secret_access_key: give both or neither",
            ));
        }
        Ok(())
    }

    /// The local store's root: `local_root`, else `$STOR_LOCAL_ROOT`, else
    /// `<data dir>/stor` (e.g. `~/.local/share/stor`).
    pub fn resolved_local_root(&self) -> PathBuf {
        if let Some(r) = &self.local_root {
            return r.clone();
        }
        if let Some(r) = std::env::var_os("STOR_LOCAL_ROOT").filter(|v| !v.is_empty()) {
            return PathBuf::from(r);
        }
        default_data_dir().join("stor")
    }

    pub(crate) fn upload_timeout(&self) -> Duration {
        Duration::from_secs(self.upload_timeout)
    }
    pub(crate) fn download_timeout(&self) -> Duration {
        Duration::from_secs(self.download_timeout)
    }
    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout)
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local").join("share");
    }
    std::env::temp_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_format_with_its_defaults() {
        let cfg = StorageConfig::from_json_str(
            r#"{"storageConfig": {"storage_type": "s3", "aws_access_key_id": "AKIA1234",
            "aws_secret_access_key": "s3cr3t-canary", "region_name": "ap-northeast-2",
            "default_bucket": "news-bucket", "upload_timeout": 300, "download_timeout": 300,
            "max_retries": 3}}"#,
        )
        .unwrap();
        assert_eq!(cfg.storage_type, StorageType::S3);
        assert_eq!(cfg.region_name.as_deref(), Some("ap-northeast-2"));
        assert_eq!(cfg.default_bucket.as_deref(), Some("news-bucket"));
        assert_eq!(cfg.max_concurrency, 10);
        assert_eq!(cfg.max_pool_connections, 50);
        assert_eq!(cfg.multipart_threshold, 100 * MIB);
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cr3t-canary"), "{dbg}");
        assert!(!dbg.contains("AKIA1234"), "{dbg}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            StorageConfig::from_json_str(r#"{"storageConfig": {"regoin_name": "x"}}"#).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        assert!(err.message().contains("regoin_name"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = StorageConfig::from_json_str(r#"{"upload_timeout": "soon"}"#).unwrap_err();
        assert!(err.message().contains("upload_timeout"), "{err}");
        let err = StorageConfig::from_json_str(r#"{"storage_type": "ftp"}"#).unwrap_err();
        assert!(err.message().contains("storage_type"), "{err}");
        let err = StorageConfig::from_json_str(r#"{"max_retries": 0}"#).unwrap_err();
        assert!(err.message().contains("max_retries"), "{err}");
        let err = StorageConfig::from_json_str(r#"{"part_size": 1024}"#).unwrap_err();
        assert!(err.message().contains("part_size"), "{err}");
        let err = StorageConfig::from_json_str(r#"{"default_bucket": "No_Good"}"#).unwrap_err();
        assert!(err.message().contains("default_bucket"), "{err}");
        let err =
            StorageConfig::from_json_str(r#"{"endpoint_url": "localhost:9000"}"#).unwrap_err();
        assert!(err.message().contains("endpoint_url"), "{err}");
    }

    #[test]
    fn error_messages_leave_secrets_out() {
        let err = StorageConfig::from_json_str(
            r#"{"aws_secret_access_key": "s3cr3t-canary", "max_retries": 99}"#,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-canary"));
        assert!(!format!("{err:?}").contains("s3cr3t-canary"));
        let err = StorageConfig::from_json_str(r#"{"aws_secret_access_key": "s3cr3t-canary"}"#)
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-canary"), "{err}");
    }

    #[test]
    fn bare_object_and_defaults() {
        let cfg = StorageConfig::from_json_str("{}").unwrap();
        assert_eq!(cfg, StorageConfig::default());
        assert_eq!(cfg.storage_type, StorageType::Local);
    }
}
