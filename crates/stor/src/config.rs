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
//! AWS_ENDPOINT_URL, AWS_PROFILE and the ~/.aws files), as for the aws cli; the
//! order credentials are looked for in is [`crate::credentials`]'s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::bandwidth::Bandwidth;
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
/// Largest object one PUT may carry: the multipart threshold's upper bound.
pub const MAX_SINGLE_UPLOAD: u64 = 5 * 1024 * MIB;
/// Region used when neither config nor environment names one (the original's default).
pub const DEFAULT_REGION: &str = "ap-northeast-2";
/// Longest timeout accepted, in seconds (7 days): long enough for a multi-terabyte
/// transfer over a slow link, short enough that every deadline computed from it
/// (`Instant::now() + timeout`, twice the connect timeout, …) fits in an `Instant`.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Most attempts per request (`max_retries`).
pub const MAX_ATTEMPTS: u32 = 20;
/// Most parts or objects in flight per transfer (`max_concurrency`).
pub const MAX_CONCURRENCY: usize = 1000;
/// Most connections in the pool (`max_pool_connections`).
pub const MAX_POOL_CONNECTIONS: usize = 10_000;

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
    /// Google Cloud Storage (or an emulator: `STORAGE_EMULATOR_HOST`, `endpoint_url`).
    Gcs,
    /// Azure Blob Storage (or Azurite: a connection string's `BlobEndpoint`).
    Azure,
}

impl StorageType {
    /// Whose rules this store's bucket names and keys are checked by.
    pub fn name_rules(self) -> crate::validate::NameRules {
        use crate::validate::NameRules;
        match self {
            StorageType::Gcs => NameRules::Gcs,
            StorageType::Azure => NameRules::Azure,
            StorageType::S3 | StorageType::Local | StorageType::Memory => NameRules::S3,
        }
    }
}

impl fmt::Display for StorageType {
    /// The name the config uses: `s3`, `gcs`, `azure`, `local`, `memory`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageType::S3 => "s3",
            StorageType::Gcs => "gcs",
            StorageType::Azure => "azure",
            StorageType::Local => "local",
            StorageType::Memory => "memory",
        })
    }
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
    /// Backend: `s3`, `gcs`, `azure`, `local` or `memory`. Left out of JSON, it is
    /// inferred ([`StorageConfig::inferred_storage_type`]: `s3` when any S3 setting is
    /// given, as the original service defaults to S3); `StorageConfig::default()` is
    /// `local`.
    pub storage_type: StorageType,
    /// Access key; when unset the AWS credential chain is used.
    pub aws_access_key_id: Option<String>,
    /// Secret key; when unset the AWS credential chain is used.
    pub aws_secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    pub aws_session_token: Option<Secret>,
    /// Region; when unset, the config's `profile`'s region, else `ap-northeast-2`
    /// (as the original: the environment's AWS_REGION is not consulted; see
    /// [`StorageConfig::resolved_region`]).
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
    /// AWS profile for credentials and region, like the aws cli's `--profile`: its
    /// credentials and no others (unless keys are set here); it must exist.
    pub profile: Option<String>,
    /// Whole-transfer upload timeout, seconds (1 ..= [`MAX_TIMEOUT_SECS`], 7 days).
    pub upload_timeout: u64,
    /// Whole-transfer download timeout, seconds (1 ..= 7 days).
    pub download_timeout: u64,
    /// Timeout of every other operation (list, head, delete, copy), seconds (1 ..= 7 days).
    pub operation_timeout: u64,
    /// TCP connect timeout, seconds (1 ..= 7 days).
    pub connect_timeout: u64,
    /// Timeout for a stalled read on a connection, seconds (1 ..= 7 days).
    pub read_timeout: u64,
    /// Total attempts per request, including the first (1 = no retries; 1 ..= 20).
    pub max_retries: u32,
    /// Uploads larger than this many bytes use multipart (5 MiB ..= 5 GiB: S3's
    /// smallest part and its largest single PUT).
    pub multipart_threshold: u64,
    /// Part size for multipart transfers in bytes (5 MiB ..= 5 GiB, S3's limits);
    /// `None` picks one automatically.
    #[serde(alias = "multipart_chunksize")]
    pub part_size: Option<u64>,
    /// Parts (or objects) transferred at once per transfer (1 ..= 1000).
    pub max_concurrency: usize,
    /// Requests in flight at once across the whole client, and the most TCP
    /// connections open to the endpoint at any moment (the connection pool; 1 ..= 10000).
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
    /// The file this config was read from (set by [`ConfigFile::config`]), named in
    /// errors such as "no credentials found"; never read from or written to JSON.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Bandwidth limit of all transfers of a [`crate::Storage`] together, up and
    /// down: `"50MiB"`, `"10MiB:50MiB"` (upload:download), or
    /// `{"up": "10MiB", "down": "50MiB"}` (see [`Bandwidth`]); unset is unlimited.
    pub max_bandwidth: Option<Bandwidth>,
    /// Where the transfer journal lives (interrupted uploads and downloads, so that
    /// running them again resumes them); else `$STOR_STATE_DIR`, else
    /// `<state dir>/stor` (e.g. `~/.local/state/stor`). See [`crate::journal`].
    pub state_dir: Option<PathBuf>,
    /// GCS: a service-account JSON key file (else `GOOGLE_APPLICATION_CREDENTIALS`,
    /// else the application-default credentials gcloud writes, else the metadata
    /// server on Google Cloud).
    pub google_application_credentials: Option<PathBuf>,
    /// GCS: the project buckets are created and listed in (else
    /// `GOOGLE_CLOUD_PROJECT`, else the credentials' own project).
    pub google_cloud_project: Option<String>,
    /// Azure: a connection string as the portal and `az` show it
    /// (`AccountName=…;AccountKey=…` or `…;SharedAccessSignature=…`, with an optional
    /// `BlobEndpoint`); else `AZURE_STORAGE_CONNECTION_STRING`.
    pub azure_storage_connection_string: Option<Secret>,
    /// Azure: the storage account (else `AZURE_STORAGE_ACCOUNT`).
    pub azure_storage_account: Option<String>,
    /// Azure: the account key, base64 (else `AZURE_STORAGE_KEY`).
    pub azure_storage_key: Option<Secret>,
    /// Azure: a SAS token instead of the key (else `AZURE_STORAGE_SAS_TOKEN`).
    pub azure_storage_sas_token: Option<Secret>,
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
            config_file: None,
            max_bandwidth: None,
            state_dir: None,
            google_application_credentials: None,
            google_cloud_project: None,
            azure_storage_connection_string: None,
            azure_storage_account: None,
            azure_storage_key: None,
            azure_storage_sas_token: None,
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
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_url),
            )
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
            .field("config_file", &self.config_file)
            .field("max_bandwidth", &self.max_bandwidth)
            .field("state_dir", &self.state_dir)
            .field(
                "google_application_credentials",
                &self.google_application_credentials,
            )
            .field("google_cloud_project", &self.google_cloud_project)
            .field(
                "azure_storage_connection_string",
                &masked(&self.azure_storage_connection_string),
            )
            .field("azure_storage_account", &self.azure_storage_account)
            .field("azure_storage_key", &masked(&self.azure_storage_key))
            .field(
                "azure_storage_sas_token",
                &masked(&self.azure_storage_sas_token),
            )
            .finish()
    }
}

/// Shows an access key id as its first 4 characters and `***`.
pub fn mask_key_id(id: &str) -> String {
    let head: String = id.chars().take(4).collect();
    format!("{head}***")
}

/// A URL with any userinfo (`user:password@`) shown as `***@`, for messages, logs
/// and `Debug`. Conservative on purpose: everything between `://` and the last `@`
/// goes, so a password holding an unescaped `/`, `?` or `#` is hidden too.
///
/// ```
/// use stor::config::redact_url;
/// assert_eq!(redact_url("http://admin:hunter2@minio:9000"), "http://***@minio:9000");
/// assert_eq!(redact_url("https://s3.example.com/base"), "https://s3.example.com/base");
/// ```
pub fn redact_url(url: &str) -> String {
    match userinfo_span(url, true) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// The URL without its userinfo, and whether it had one. The rest of the text is
/// kept byte for byte (the `url` crate would re-serialize it: add a trailing `/`,
/// re-encode the path), which is what the SDK then signs against.
pub(crate) fn strip_url_userinfo(url: &str) -> (String, bool) {
    match userinfo_span(url, false) {
        // Drop the userinfo and its '@'.
        Some((start, end)) => (format!("{}{}", &url[..start], &url[end + 1..]), true),
        None => (url.to_owned(), false),
    }
}

/// Byte range of the userinfo (without the '@') after `://`. `anywhere`: up to the
/// last '@' of the whole URL (for hiding); else within the authority only, as a URL
/// parser reads it (for stripping; `validate` refuses an '@' past the authority).
fn userinfo_span(url: &str, anywhere: bool) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let scope = if anywhere {
        rest
    } else {
        &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())]
    };
    scope.rfind('@').map(|at| (start, start + at))
}

/// Every key a config object may hold (aliases included); the test
/// `config_keys_are_the_fields` keeps it in step with [`StorageConfig`].
pub const CONFIG_KEYS: &[&str] = &[
    "storage_type",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "region_name",
    "region",
    "default_bucket",
    "endpoint_url",
    "force_path_style",
    "local_root",
    "profile",
    "upload_timeout",
    "download_timeout",
    "operation_timeout",
    "connect_timeout",
    "read_timeout",
    "max_retries",
    "multipart_threshold",
    "part_size",
    "multipart_chunksize",
    "max_bandwidth",
    "state_dir",
    "google_application_credentials",
    "google_cloud_project",
    "azure_storage_connection_string",
    "azure_storage_account",
    "azure_storage_key",
    "azure_storage_sas_token",
    "max_concurrency",
    "max_pool_connections",
    "fsync_downloads",
    "ca_bundle",
    "checksum",
    "native_checksums",
];

/// Refuses a key that is not a config key, naming it and the closest valid one
/// (serde's own message lists them all, which hides the likely typo).
fn check_known_keys(keys: &Map<String, Value>, prefix: &str) -> Result<()> {
    let Some(unknown) = keys.keys().find(|k| !CONFIG_KEYS.contains(&k.as_str())) else {
        return Ok(());
    };
    let hint = match closest_key(unknown) {
        Some(k) => format!("did you mean {k}?"),
        None => format!("valid keys: {}", CONFIG_KEYS.join(", ")),
    };
    Err(Error::config(format!(
        "config key {prefix}{unknown}: unknown; {hint}"
    )))
}

/// The valid key most like `key`, compared without case and `_`/`-` so that
/// `regionName` and `Region-Name` find `region_name`; none when nothing is close.
pub(crate) fn closest_key(key: &str) -> Option<&'static str> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let wanted = norm(key);
    CONFIG_KEYS
        .iter()
        .map(|k| (strsim::jaro_winkler(&wanted, &norm(k)), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The inner-object keys of the original format: `{"storageConfig": {...}}`.
const WRAPPER_KEY: &str = "storageConfig";
/// The key of a file of named profiles: `{"profiles": {"NAME": {...}}}`.
const PROFILES_KEY: &str = "profiles";

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

    /// A config for Google Cloud Storage; credentials, project and endpoint from the
    /// Google environment (`GOOGLE_APPLICATION_CREDENTIALS`, `STORAGE_EMULATOR_HOST`)
    /// unless set on the result.
    pub fn gcs() -> StorageConfig {
        StorageConfig {
            storage_type: StorageType::Gcs,
            ..StorageConfig::default()
        }
    }

    /// A config for Azure Blob Storage; account and credentials from the Azure
    /// environment (`AZURE_STORAGE_CONNECTION_STRING`, or `AZURE_STORAGE_ACCOUNT`
    /// with `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN`) unless set on the result.
    pub fn azure() -> StorageConfig {
        StorageConfig {
            storage_type: StorageType::Azure,
            ..StorageConfig::default()
        }
    }

    /// Parses JSON: either `{"storageConfig": {...}}` (the original format) or the
    /// inner object alone. It must be an object; a key given twice at any level, an
    /// unknown key or a bad value is an error naming it. A leading UTF-8 BOM (as
    /// Windows editors write) is skipped.
    pub fn from_json_str(json: &str) -> Result<StorageConfig> {
        StorageConfig::from_object(parse_object(json)?)
    }

    /// The config in a parsed object: `{"storageConfig": {...}}` or the inner object.
    /// Beside `storageConfig`, other sections (the platform's whole app config:
    /// `databaseConfig`, …) belong to other components and are ignored; a storage key
    /// put there by mistake is refused, since it would otherwise be ignored silently.
    fn from_object(mut map: Map<String, Value>) -> Result<StorageConfig> {
        let (inner, prefix) = match map.remove(WRAPPER_KEY) {
            Some(inner) => {
                if let Some(other) = map.keys().find(|k| CONFIG_KEYS.contains(&k.as_str())) {
                    return Err(Error::config(format!(
                        "config key {other}: a storage setting next to {WRAPPER_KEY}, where \
                         it would be ignored; put it inside {WRAPPER_KEY}"
                    )));
                }
                for other in map.keys() {
                    tracing::debug!(
                        "config section {other} beside {WRAPPER_KEY}: not stor's, ignored"
                    );
                }
                if !inner.is_object() {
                    return Err(Error::config(format!(
                        "config key {WRAPPER_KEY}: must be an object {{...}}, not {}",
                        kind_of(&inner)
                    )));
                }
                (inner, "storageConfig.")
            }
            None => (Value::Object(map), ""),
        };
        let given_type = match &inner {
            Value::Object(keys) => {
                check_known_keys(keys, prefix)?;
                keys.contains_key("storage_type")
            }
            _ => true,
        };
        let mut cfg: StorageConfig = serde_path_to_error::deserialize(inner).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                Error::config(format!("config {prefix}: {inner}"))
            } else {
                Error::config(format!("config key {prefix}{path}: {inner}"))
            }
        })?;
        if !given_type {
            let (ty, why) = cfg.inferred_storage_type();
            tracing::info!("config has no storage_type: using {ty} ({why})");
            cfg.storage_type = ty;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The backend a config without `storage_type` means. The original service
    /// defaults to S3, so any S3 setting (credentials, a profile, an endpoint, a
    /// region, path style, checksum headers, a CA bundle) means `s3`; else
    /// `local_root` means the local store; else a `default_bucket` alone means `s3`
    /// (the original's configs name one), and a config with none of these is `local`.
    /// Returns the choice and why, for the log.
    pub fn inferred_storage_type(&self) -> (StorageType, String) {
        let s3_keys: Vec<&str> = [
            ("aws_access_key_id", self.aws_access_key_id.is_some()),
            (
                "aws_secret_access_key",
                self.aws_secret_access_key.is_some(),
            ),
            ("aws_session_token", self.aws_session_token.is_some()),
            ("profile", self.profile.is_some()),
            ("endpoint_url", self.endpoint_url.is_some()),
            ("region_name", self.region_name.is_some()),
            ("force_path_style", self.force_path_style.is_some()),
            ("native_checksums", self.native_checksums.is_some()),
            ("ca_bundle", self.ca_bundle.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        // A config that names only another cloud's settings means that cloud.
        let other = |keys: [(&'static str, bool); 4]| -> Vec<&'static str> {
            keys.into_iter()
                .filter_map(|(k, set)| set.then_some(k))
                .collect()
        };
        let gcs = other([
            (
                "google_application_credentials",
                self.google_application_credentials.is_some(),
            ),
            ("google_cloud_project", self.google_cloud_project.is_some()),
            ("", false),
            ("", false),
        ]);
        let azure = other([
            (
                "azure_storage_connection_string",
                self.azure_storage_connection_string.is_some(),
            ),
            (
                "azure_storage_account",
                self.azure_storage_account.is_some(),
            ),
            ("azure_storage_key", self.azure_storage_key.is_some()),
            (
                "azure_storage_sas_token",
                self.azure_storage_sas_token.is_some(),
            ),
        ]);
        if s3_keys.is_empty() {
            match (gcs.is_empty(), azure.is_empty()) {
                (false, true) => {
                    return (
                        StorageType::Gcs,
                        format!("the config sets {}", gcs.join(", ")),
                    )
                }
                (true, false) => {
                    return (
                        StorageType::Azure,
                        format!("the config sets {}", azure.join(", ")),
                    )
                }
                _ => {}
            }
        }
        if !s3_keys.is_empty() {
            let mut why = format!("the config sets {}", s3_keys.join(", "));
            if self.local_root.is_some() {
                why.push_str(
                    "; local_root is set too: give \"storage_type\": \"local\" for the local store",
                );
            }
            return (StorageType::S3, why);
        }
        if self.local_root.is_some() {
            return (StorageType::Local, "the config sets local_root".into());
        }
        if self.default_bucket.is_some() {
            return (StorageType::S3, "the config sets default_bucket".into());
        }
        (
            StorageType::Local,
            "the config sets nothing for S3: the embedded local store".into(),
        )
    }

    /// Reads [`StorageConfig::from_json_str`] from a file (see [`ConfigFile`]).
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
        ConfigFile::read(path)?.config(profile)
    }

    /// Checks every value; the error names the key and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let timeouts = [
            ("upload_timeout", self.upload_timeout),
            ("download_timeout", self.download_timeout),
            ("operation_timeout", self.operation_timeout),
            ("connect_timeout", self.connect_timeout),
            ("read_timeout", self.read_timeout),
        ];
        for (key, secs) in timeouts {
            if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
                return Err(Error::config(format!(
                    "config key {key}: {secs} is out of range; timeouts are whole seconds, \
                     1..={MAX_TIMEOUT_SECS} (7 days)"
                )));
            }
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_retries) {
            return Err(Error::config(format!(
                "config key max_retries: {} is out of range; it is the total number of attempts \
                 per request, 1..={MAX_ATTEMPTS}",
                self.max_retries
            )));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(Error::config(format!(
                "config key max_concurrency: {} is out of range 1..={MAX_CONCURRENCY}",
                self.max_concurrency
            )));
        }
        if !(1..=MAX_POOL_CONNECTIONS).contains(&self.max_pool_connections) {
            return Err(Error::config(format!(
                "config key max_pool_connections: {} is out of range 1..={MAX_POOL_CONNECTIONS}",
                self.max_pool_connections
            )));
        }
        if !(MIN_PART_SIZE..=MAX_SINGLE_UPLOAD).contains(&self.multipart_threshold) {
            return Err(Error::config(format!(
                "config key multipart_threshold: {} bytes is outside 5 MiB..=5 GiB (S3's \
                 smallest part and its largest single upload)",
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
        self.validate_text()?;
        if let Some(b) = &self.default_bucket {
            self.storage_type.name_rules().bucket(b).map_err(|e| {
                Error::config(format!("config key default_bucket: {}", e.message()))
            })?;
        }
        if let Some(url) = &self.endpoint_url {
            validate_endpoint(url)
                .map_err(|why| Error::config(format!("config key endpoint_url: {why}")))?;
        }
        if self.aws_access_key_id.is_some() != self.aws_secret_access_key.is_some() {
            return Err(Error::config(
                "config keys aws_access_key_id and aws_secret_access_key: give both or neither",
            ));
        }
        Ok(())
    }

    /// An empty string or path means "unset" to nobody: `"local_root": ""` would write
    /// into the current directory, `"region_name": ""` sign for no region.
    fn validate_text(&self) -> Result<()> {
        let blank = |s: &str| s.trim().is_empty();
        let texts = [
            ("aws_access_key_id", self.aws_access_key_id.as_deref()),
            (
                "aws_secret_access_key",
                self.aws_secret_access_key.as_ref().map(Secret::expose),
            ),
            (
                "aws_session_token",
                self.aws_session_token.as_ref().map(Secret::expose),
            ),
            ("region_name", self.region_name.as_deref()),
            ("default_bucket", self.default_bucket.as_deref()),
            ("endpoint_url", self.endpoint_url.as_deref()),
            ("profile", self.profile.as_deref()),
            ("google_cloud_project", self.google_cloud_project.as_deref()),
            (
                "azure_storage_connection_string",
                self.azure_storage_connection_string
                    .as_ref()
                    .map(Secret::expose),
            ),
            (
                "azure_storage_account",
                self.azure_storage_account.as_deref(),
            ),
            (
                "azure_storage_key",
                self.azure_storage_key.as_ref().map(Secret::expose),
            ),
            (
                "azure_storage_sas_token",
                self.azure_storage_sas_token.as_ref().map(Secret::expose),
            ),
        ];
        let paths = [
            ("local_root", self.local_root.as_deref()),
            ("ca_bundle", self.ca_bundle.as_deref()),
            ("state_dir", self.state_dir.as_deref()),
            (
                "google_application_credentials",
                self.google_application_credentials.as_deref(),
            ),
        ];
        let empty = texts
            .into_iter()
            .find(|(_, v)| v.is_some_and(blank))
            .or_else(|| {
                paths
                    .into_iter()
                    .find(|(_, v)| v.is_some_and(|p| p.as_os_str().is_empty()))
                    .map(|(k, _)| (k, None))
            });
        match empty {
            Some((key, _)) => Err(Error::config(format!(
                "config key {key}: empty; give a value or leave the key out for the default"
            ))),
            None => Ok(()),
        }
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

    /// The directory of the transfer journal: `state_dir`, else `$STOR_STATE_DIR`,
    /// else `$XDG_STATE_HOME/stor`, else `~/.local/state/stor`.
    pub fn resolved_state_dir(&self) -> PathBuf {
        if let Some(d) = &self.state_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("STOR_STATE_DIR").filter(|v| !v.is_empty()) {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(d).join("stor");
        }
        if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(h).join(".local").join("state").join("stor");
        }
        std::env::temp_dir().join("stor-state")
    }

    /// The region S3 requests are signed for, as the original service chose it: the
    /// config's `region_name`, else the region of the AWS profile the config names in
    /// `profile` (when that profile sets one), else [`DEFAULT_REGION`]
    /// (`ap-northeast-2`). `AWS_REGION` and the ambient profile are not consulted, so a
    /// config means the same on every machine (the CLI maps `--region` and
    /// `AWS_REGION` into `region_name` itself), and EC2 instance metadata is never
    /// asked: its probe costs seconds wherever it is not there.
    pub async fn resolved_region(&self) -> String {
        if let Some(r) = &self.region_name {
            return r.clone();
        }
        if let Some(p) = &self.profile {
            if let Some(r) = aws_profile_region(Some(p)).await {
                return r;
            }
        }
        DEFAULT_REGION.to_owned()
    }

    /// What a store is and where, for the log lines at init and shutdown ("storage
    /// service initialized for region ap-northeast-2 (s3, bucket news)"; the region
    /// when known); never secrets.
    pub(crate) fn describe(&self, region: Option<&str>) -> String {
        let bucket = match &self.default_bucket {
            Some(b) => format!("bucket {b}"),
            None => "no default bucket".into(),
        };
        match self.storage_type {
            StorageType::S3 => {
                let at = self
                    .endpoint_url
                    .as_deref()
                    .map(|u| format!(" at {}", redact_url(u)))
                    .unwrap_or_default();
                let region = region
                    .map(|r| format!("for region {r} "))
                    .unwrap_or_default();
                format!("{region}(s3{at}, {bucket})")
            }
            StorageType::Local => format!(
                "(local store at {}, {bucket})",
                self.resolved_local_root().display()
            ),
            StorageType::Gcs | StorageType::Azure => {
                let at = self
                    .endpoint_url
                    .as_deref()
                    .map(|u| format!(" at {}", redact_url(u)))
                    .unwrap_or_default();
                format!("({}{at}, {bucket})", self.storage_type)
            }
            StorageType::Memory => format!("(memory, {bucket})"),
        }
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

/// The region an AWS profile sets in `~/.aws/config` (or `$AWS_CONFIG_FILE`):
/// `profile`, else the ambient one (`AWS_PROFILE`, else `default`); `None` when
/// it sets none. Reads files only, never the network.
pub async fn aws_profile_region(profile: Option<&str>) -> Option<String> {
    use aws_config::meta::region::ProvideRegion;
    let mut b = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(p) = profile {
        b = b.profile_name(p);
    }
    b.build().region().await.map(|r| r.to_string())
}

/// Why an endpoint URL cannot be used (the URL in the message redacted).
fn validate_endpoint(url: &str) -> std::result::Result<(), String> {
    let shown = redact_url(url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{shown:?} must start with http:// or https://"));
    }
    let (bare, _) = strip_url_userinfo(url);
    if bare.contains('@') {
        // A password with an unescaped '/', '?' or '#': a URL parser would take part
        // of it for the host or path, and send the rest to the server.
        return Err(format!(
            "{shown:?} has an '@' after the host; leave credentials out of the URL \
             (S3 does not use them) or percent-encode them"
        ));
    }
    match url::Url::parse(&bare) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err(format!("{shown:?} names no host")),
        Err(e) => Err(format!("{shown:?} is not a valid URL: {e}")),
    }
}

/// A config file, read and checked once: one config (`{"storageConfig": {...}}` or
/// the bare object), or named profiles (`{"profiles": {"NAME": {...}}}`).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("config.json");
/// std::fs::write(&path, r#"{"profiles": {"default": {}, "minio": {"storage_type": "s3"}}}"#)
///     .unwrap();
/// let file = stor::config::ConfigFile::read(&path).unwrap();
/// assert_eq!(file.profiles(), ["default", "minio"]);
/// assert_eq!(file.config(Some("minio")).unwrap().storage_type, stor::StorageType::S3);
/// ```
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    /// The whole object (one config), or the `profiles` object.
    body: Map<String, Value>,
    has_profiles: bool,
}

impl ConfigFile {
    /// Reads and parses `path`. A file that cannot be read (missing, a directory,
    /// not readable) is a [`ErrorKind::Config`](crate::ErrorKind::Config) error with
    /// the OS error; so is JSON that is not an object or repeats a key.
    pub fn read(path: impl AsRef<Path>) -> Result<ConfigFile> {
        let path = path.as_ref();
        let named =
            |e: Error| Error::config(format!("config file {}: {}", path.display(), e.message()));
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}: {e}", path.display())).with_source(e)
        })?;
        let mut body = parse_object(&text).map_err(named)?;
        let has_profiles = match body.remove(PROFILES_KEY) {
            None => false,
            Some(Value::Object(profiles)) => {
                if let Some(other) = body.keys().next() {
                    return Err(named(Error::config(format!(
                        "key {other:?} next to \"profiles\": put it inside a profile"
                    ))));
                }
                body = profiles;
                true
            }
            Some(other) => {
                return Err(named(Error::config(format!(
                    "\"profiles\" must be an object of named configs, not {}",
                    kind_of(&other)
                ))))
            }
        };
        Ok(ConfigFile {
            path: path.to_owned(),
            body,
            has_profiles,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The profile names of a file of profiles, sorted; empty for a one-config file.
    pub fn profiles(&self) -> Vec<&str> {
        if !self.has_profiles {
            return Vec::new();
        }
        self.body.keys().map(String::as_str).collect()
    }

    /// Whether this is a file of profiles holding `name`.
    pub fn has_profile(&self, name: &str) -> bool {
        self.has_profiles && self.body.contains_key(name)
    }

    /// The config: of a file of profiles, the one named `profile` (`default` when
    /// `None`); a one-config file ignores `profile` (it then names an AWS profile).
    /// Warns when the result holds secrets and the file is readable by group or others.
    pub fn config(&self, profile: Option<&str>) -> Result<StorageConfig> {
        let path = self.path.display();
        let mut cfg = if self.has_profiles {
            let name = profile.unwrap_or("default");
            let chosen = self.body.get(name).ok_or_else(|| {
                Error::config(format!(
                    "{path}: no profile {name:?}; it has: {}",
                    self.profiles().join(", ")
                ))
            })?;
            let Value::Object(map) = chosen else {
                return Err(Error::config(format!(
                    "{path}: profile {name}: must be an object {{...}}, not {}",
                    kind_of(chosen)
                )));
            };
            StorageConfig::from_object(map.clone())
                .map_err(|e| Error::config(format!("{path}: profile {name}: {}", e.message())))?
        } else {
            StorageConfig::from_object(self.body.clone())
                .map_err(|e| Error::config(format!("{path}: {}", e.message())))?
        };
        if cfg.aws_secret_access_key.is_some()
            || cfg.aws_session_token.is_some()
            || cfg.azure_storage_key.is_some()
            || cfg.azure_storage_sas_token.is_some()
            || cfg.azure_storage_connection_string.is_some()
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(&self.path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        "{path} holds credentials and is readable by group or others; \
                         restrict it with `chmod 600 {path}`"
                    );
                }
            }
        }
        cfg.config_file = Some(self.path.clone());
        Ok(cfg)
    }
}

/// Parses config JSON that must be an object and may not repeat a key.
fn parse_object(text: &str) -> Result<Map<String, Value>> {
    // Editors on Windows save UTF-8 with a byte order mark; it is not JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = serde_json::from_str::<NoDuplicates>(text)
        .map_err(|e| Error::config(format!("not valid JSON: {e}")))?
        .0;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Error::config(format!(
            "must be a JSON object {{...}}, not {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value like `serde_json::Value`, except that a key repeated within one
/// object is an error: serde_json keeps the last one silently, so a file with two
/// `region_name` keys would quietly use the second. (serde_json has no switch for
/// this; the visitor is the documented way.)
struct NoDuplicates(Value);

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor).map(NoDuplicates)
    }
}

struct NoDuplicatesVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicatesVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(NoDuplicates(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "key {key:?} appears twice in one object; keep one"
                )));
            }
            let NoDuplicates(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
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
    fn unknown_keys_suggest_the_closest_valid_one() {
        for (typo, meant) in [
            ("regoin_name", "region_name"),
            ("regionName", "region_name"),
            ("defaultBucket", "default_bucket"),
            ("aws_secret_key", "aws_secret_access_key"),
            ("endpoint", "endpoint_url"),
            ("max_retry", "max_retries"),
            ("storageType", "storage_type"),
        ] {
            let err = config_err(&format!(r#"{{"storageConfig": {{"{typo}": 1}}}}"#));
            assert!(
                err.message().contains(&format!(
                    "storageConfig.{typo}: unknown; did you mean {meant}?"
                )),
                "{typo}: {err}"
            );
        }
        // Nothing close: the valid keys are listed instead of a wild guess.
        let err = config_err(r#"{"databaseUrl": "postgres://x"}"#);
        assert!(
            err.message()
                .contains("databaseUrl: unknown; valid keys: storage_type"),
            "{err}"
        );
    }

    #[test]
    fn config_keys_are_the_fields() {
        let v = serde_json::to_value(StorageConfig::default()).unwrap();
        let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        fields.extend(["region", "multipart_chunksize"]); // the serde aliases
        fields.sort_unstable();
        let mut keys = CONFIG_KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }

    #[test]
    fn sibling_sections_of_storage_config_are_ignored() {
        let cfg = StorageConfig::from_json_str(
            r#"{"storageConfig": {"storage_type": "s3", "region_name": "eu-west-1"},
                "databaseConfig": {"host": "db", "port": 5432},
                "crawlerConfig": {"interval": 60}, "version": 3}"#,
        )
        .unwrap();
        assert_eq!(cfg.region_name.as_deref(), Some("eu-west-1"));
        // A storage key at the wrong level would be ignored silently: refused.
        let err = config_err(r#"{"storageConfig": {}, "databaseConfig": {}, "max_retries": 5}"#);
        assert!(err.message().contains("max_retries"), "{err}");
        assert!(err.message().contains("inside storageConfig"), "{err}");
        // Unknown keys inside storageConfig stay errors.
        let err = config_err(r#"{"storageConfig": {"host": "db"}, "databaseConfig": {}}"#);
        assert!(
            err.message().contains("storageConfig.host: unknown"),
            "{err}"
        );
    }

    #[test]
    fn omitted_storage_type_is_s3_when_any_s3_setting_is_given() {
        let ty = |json: &str| StorageConfig::from_json_str(json).unwrap().storage_type;
        for s3 in [
            r#"{"aws_access_key_id": "AKIA1", "aws_secret_access_key": "x"}"#,
            r#"{"profile": "prod"}"#,
            r#"{"endpoint_url": "http://127.0.0.1:9000"}"#,
            r#"{"region_name": "ap-northeast-2"}"#,
            r#"{"default_bucket": "news"}"#,
            r#"{"storageConfig": {"region_name": "ap-northeast-2", "default_bucket": "news",
                "upload_timeout": 300, "download_timeout": 300, "max_retries": 3}}"#,
            r#"{"force_path_style": true}"#,
            r#"{"endpoint_url": "http://127.0.0.1:9000", "local_root": "/srv/stor"}"#,
        ] {
            assert_eq!(ty(s3), StorageType::S3, "{s3}");
        }
        for local in [
            "{}",
            r#"{"storageConfig": {}}"#,
            r#"{"max_retries": 5, "upload_timeout": 60}"#,
            r#"{"local_root": "/srv/stor"}"#,
            r#"{"local_root": "/srv/stor", "default_bucket": "news"}"#,
        ] {
            assert_eq!(ty(local), StorageType::Local, "{local}");
        }
        // Another cloud's settings alone mean that cloud.
        assert_eq!(
            ty(
                r#"{"google_application_credentials": "/etc/sa.json", "default_bucket": "market_data"}"#
            ),
            StorageType::Gcs
        );
        assert_eq!(
            ty(r#"{"azure_storage_account": "acct", "azure_storage_key": "a2V5"}"#),
            StorageType::Azure
        );
        // Given, it is kept whatever else the config says.
        assert_eq!(
            ty(r#"{"storage_type": "local", "region_name": "eu-west-1"}"#),
            StorageType::Local
        );
        assert_eq!(
            ty(r#"{"storage_type": "memory", "default_bucket": "bkt"}"#),
            StorageType::Memory
        );
    }

    /// The region the store signs for, read from a presigned URL's credential scope.
    fn signed_region(cfg: StorageConfig) -> String {
        let cfg = StorageConfig {
            aws_access_key_id: Some("AKIAEXAMPLE".into()),
            aws_secret_access_key: Some("secret".into()),
            ..cfg
        };
        tokio_test::block_on(async {
            let s = crate::Storage::new(cfg).await.unwrap();
            let url = s
                .presign(
                    "bkt",
                    "k",
                    crate::PresignOptions::get(Duration::from_secs(60)),
                )
                .await
                .unwrap();
            let scope = url.split("X-Amz-Credential=").nth(1).unwrap();
            scope.split("%2F").nth(2).unwrap().to_owned()
        })
    }

    #[test]
    fn the_region_is_the_configs_else_ap_northeast_2_whatever_the_environment() {
        // AWS_REGION and AWS_CONFIG_FILE are process-wide: set them only in a child
        // process (this test binary, running this one test), never under the other
        // tests running in parallel.
        const CHILD: &str = "STOR_TEST_REGION_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let dir = tempfile::tempdir().unwrap();
            let aws_config = dir.path().join("config");
            std::fs::write(
                &aws_config,
                "[default]\nregion = us-west-2\n[profile prod]\nregion = eu-central-1\n",
            )
            .unwrap();
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "--nocapture", "config::tests::the_region_is_the_configs_else_ap_northeast_2_whatever_the_environment"])
                .env(CHILD, "1")
                .env("AWS_CONFIG_FILE", &aws_config)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_PROFILE", "default")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("1 passed"), "the child ran the test: {text}");
            return;
        }
        assert_eq!(signed_region(StorageConfig::s3()), DEFAULT_REGION);
        let original =
            StorageConfig::from_json_str(r#"{"storageConfig": {"default_bucket": "bkt"}}"#)
                .unwrap();
        assert_eq!(signed_region(original), "ap-northeast-2");
        let named = StorageConfig {
            region_name: Some("sa-east-1".into()),
            ..StorageConfig::s3()
        };
        assert_eq!(signed_region(named), "sa-east-1");
        // A profile the config names brings its region; the ambient one does not
        // (the CLI asks aws_profile_region(None) for it).
        let prod = StorageConfig {
            profile: Some("prod".into()),
            ..StorageConfig::s3()
        };
        assert_eq!(tokio_test::block_on(prod.resolved_region()), "eu-central-1");
        assert_eq!(
            tokio_test::block_on(aws_profile_region(None)).as_deref(),
            Some("us-west-2")
        );
    }

    #[test]
    fn the_log_line_names_region_backend_and_bucket_never_secrets() {
        let cfg = StorageConfig {
            default_bucket: Some("news".into()),
            endpoint_url: Some("http://admin:canary-pw@127.0.0.1:9000".into()),
            aws_access_key_id: Some("AKIACANARY".into()),
            aws_secret_access_key: Some("canary-secret".into()),
            ..StorageConfig::s3()
        };
        let line = cfg.describe(Some("ap-northeast-2"));
        assert_eq!(
            line,
            "for region ap-northeast-2 (s3 at http://***@127.0.0.1:9000, bucket news)"
        );
        let line = StorageConfig::local("/srv/stor").describe(None);
        assert_eq!(line, "(local store at /srv/stor, no default bucket)");
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

    fn config_err(json: &str) -> Error {
        let err = StorageConfig::from_json_str(json).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config, "{json}: {err}");
        err
    }

    #[test]
    fn only_a_json_object_is_a_config() {
        for json in ["[]", "\"x\"", "3", "null", "true", "[{}]", " \n\"{}\""] {
            let err = config_err(json);
            assert!(
                err.message().contains("must be a JSON object"),
                "{json}: {err}"
            );
        }
        for (json, says) in [
            (
                r#"{"storageConfig": []}"#,
                "storageConfig: must be an object",
            ),
            (
                r#"{"storageConfig": null}"#,
                "storageConfig: must be an object",
            ),
            (
                r#"{"storageConfig": {}, "region_name": "x"}"#,
                "region_name",
            ),
        ] {
            let err = config_err(json);
            assert!(err.message().contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_level() {
        let cases = [
            r#"{"region_name": "a", "region_name": "b"}"#,
            r#"{"storageConfig": {"max_retries": 3, "max_retries": 5}}"#,
            r#"{"storageConfig": {}, "storageConfig": {}}"#,
            r#"{"storageConfig": {"profile": "a", "region_name": "x", "profile": "b"}}"#,
        ];
        for json in cases {
            let err = config_err(json);
            assert!(err.message().contains("appears twice"), "{json}: {err}");
            assert!(err.message().contains("line 1"), "says where: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        for json in [
            r#"{"profiles": {"a": {}, "a": {"storage_type": "s3"}}}"#,
            r#"{"profiles": {"a": {"region": "x", "region": "y"}}}"#,
            r#"{"profiles": {}, "profiles": {}}"#,
        ] {
            std::fs::write(&path, json).unwrap();
            let err = ConfigFile::read(&path)
                .and_then(|f| f.config(Some("a")))
                .unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{json}: {err}");
            assert!(err.message().contains("appears twice"), "{json}: {err}");
            assert!(err.message().contains("c.json"), "names the file: {err}");
        }
    }

    #[test]
    fn profile_files_must_hold_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        for (json, says) in [
            (r#"{"profiles": []}"#, "\"profiles\" must be an object"),
            (r#"{"profiles": {"a": 3}}"#, "profile a: must be an object"),
            (
                r#"{"profiles": {"a": {}}, "region_name": "x"}"#,
                "next to \"profiles\"",
            ),
            ("[]", "must be a JSON object"),
        ] {
            std::fs::write(&path, json).unwrap();
            let err = ConfigFile::read(&path)
                .and_then(|f| f.config(Some("a")))
                .unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{json}: {err}");
            assert!(err.message().contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn a_utf8_bom_is_skipped() {
        let cfg = StorageConfig::from_json_str("\u{feff}{\"region_name\": \"eu-west-1\"}").unwrap();
        assert_eq!(cfg.region_name.as_deref(), Some("eu-west-1"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, b"\xef\xbb\xbf{\"profiles\": {\"default\": {}}}").unwrap();
        assert!(StorageConfig::from_file(&path).is_ok());
    }

    #[test]
    fn an_unreadable_config_file_is_a_config_error_with_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        for path in [dir.path().join("missing.json"), dir.path().to_owned()] {
            let err = StorageConfig::from_file(&path).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{err}");
            assert!(err.message().contains("os error"), "{err}");
            assert!(err.cause().is_some());
        }
    }

    #[test]
    fn empty_values_are_refused_naming_the_key() {
        for key in [
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
            "region_name",
            "default_bucket",
            "endpoint_url",
            "profile",
            "local_root",
            "ca_bundle",
        ] {
            for empty in ["\"\"", "\"  \""] {
                if empty != "\"\"" && matches!(key, "local_root" | "ca_bundle") {
                    continue; // a path of spaces is a (strange) name, not nothing
                }
                let err = config_err(&format!(r#"{{"{key}": {empty}}}"#));
                assert!(err.message().contains(key), "{key}: {err}");
            }
        }
    }

    /// Every numeric key, found from the serialized defaults (a new one is covered
    /// without editing a list), plus the optional ones that default to null.
    fn numeric_keys() -> Vec<String> {
        let v = serde_json::to_value(StorageConfig::default()).unwrap();
        let mut keys: Vec<String> = v
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.is_number())
            .map(|(k, _)| k.clone())
            .collect();
        keys.push("part_size".into());
        assert_eq!(keys.len(), 10, "{keys:?}");
        keys
    }

    /// `{key: value}` gives a config whose every deadline and size is usable, or a
    /// config error naming the key; never a panic.
    fn usable_or_named(key: &str, value: &str) {
        let json = format!(r#"{{"{key}": {value}}}"#);
        match StorageConfig::from_json_str(&json) {
            Ok(cfg) => {
                let now = std::time::Instant::now();
                for secs in [
                    cfg.upload_timeout,
                    cfg.download_timeout,
                    cfg.operation_timeout,
                    cfg.connect_timeout.saturating_mul(2),
                    cfg.read_timeout,
                ] {
                    assert!(
                        now.checked_add(Duration::from_secs(secs)).is_some(),
                        "{json}: a deadline {secs} s away does not fit in an Instant"
                    );
                }
                let part = cfg.part_size.unwrap_or(MIN_PART_SIZE);
                assert!(
                    part.checked_mul(cfg.max_concurrency as u64).is_some(),
                    "{json}"
                );
                assert!(cfg.part_size.is_none_or(|p| p <= MAX_PART_SIZE), "{json}");
                assert!(cfg.multipart_threshold <= MAX_SINGLE_UPLOAD, "{json}");
                let store = tokio_test::block_on(crate::Storage::new(StorageConfig {
                    storage_type: StorageType::Memory,
                    ..cfg
                }));
                assert!(store.is_ok(), "{json}: {:?}", store.err());
            }
            Err(err) => {
                assert_eq!(err.kind(), crate::ErrorKind::Config, "{json}: {err}");
                assert!(err.message().contains(key), "{json}: {err}");
            }
        }
    }

    #[test]
    fn every_numeric_key_is_range_checked() {
        let extremes = [
            "0".to_string(),
            "1".into(),
            (MIN_PART_SIZE - 1).to_string(),
            MIN_PART_SIZE.to_string(),
            MAX_TIMEOUT_SECS.to_string(),
            (MAX_TIMEOUT_SECS + 1).to_string(),
            u32::MAX.to_string(),
            (u32::MAX as u64 + 1).to_string(),
            MAX_PART_SIZE.to_string(),
            (MAX_PART_SIZE + 1).to_string(),
            i64::MAX.to_string(),
            u64::MAX.to_string(),
            "18446744073709551616".into(),
            "-1".into(),
            "1.5".into(),
            "1e30".into(),
            "\"10\"".into(),
        ];
        for key in numeric_keys() {
            for v in &extremes {
                usable_or_named(&key, v);
            }
        }
        // The case that panicked (exit 101) before ranges were checked.
        let err = config_err(r#"{"connect_timeout": 18446744073709551615}"#);
        assert!(err.message().contains("1..=604800"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_number_for_any_numeric_key_is_usable_or_named(
            key in proptest::sample::select(numeric_keys()),
            v in proptest::prelude::any::<u64>(),
            small in 0u64..=20_000,
        ) {
            usable_or_named(&key, &v.to_string());
            usable_or_named(&key, &small.to_string());
        }
    }

    #[test]
    fn passwords_in_endpoint_urls_are_hidden_and_stripped() {
        let cases = [
            // (url, redacted, stripped)
            (
                "http://u:p4ss@host:9000",
                "http://***@host:9000",
                "http://host:9000",
            ),
            (
                "https://u@host/base",
                "https://***@host/base",
                "https://host/base",
            ),
            ("http://u:p@ss@host", "http://***@host", "http://host"),
            ("http://host:9000", "http://host:9000", "http://host:9000"),
            (
                "http://host/a?x=1",
                "http://host/a?x=1",
                "http://host/a?x=1",
            ),
        ];
        for (url, redacted, stripped) in cases {
            assert_eq!(redact_url(url), redacted);
            assert_eq!(strip_url_userinfo(url).0, stripped);
            assert_eq!(strip_url_userinfo(url).1, url != stripped);
        }
        // A password with an unescaped '/' would leave its tail in the path: refused,
        // and the message hides it as well.
        let err = config_err(r#"{"endpoint_url": "http://u:pa/ss-canary@host"}"#);
        assert!(err.message().contains("'@' after the host"), "{err}");
        assert!(!err.to_string().contains("ss-canary"), "{err}");
        for bad in [
            "ftp://u:canary-pw@host",
            "http://canary-pw@",
            "http://u:canary-pw@ho st",
        ] {
            let err = config_err(&format!(r#"{{"endpoint_url": "{bad}"}}"#));
            assert!(err.message().contains("endpoint_url"), "{err}");
            assert!(!format!("{err} {err:?}").contains("canary-pw"), "{err}");
        }
        let cfg = StorageConfig {
            endpoint_url: Some("http://admin:canary-pw@127.0.0.1:9000".into()),
            ..StorageConfig::s3()
        };
        cfg.validate().unwrap();
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("canary-pw") && dbg.contains("***@127.0.0.1:9000"),
            "{dbg}"
        );
    }
}
