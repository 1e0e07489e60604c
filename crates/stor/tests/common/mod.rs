//! Fixtures shared by the integration tests: a store of each kind, each test in a
//! prefix of its own. Real servers come from `scripts/with-servers.sh`, which sets
//! STOR_TEST_SEAWEEDFS and STOR_TEST_MOTO; without them those backends are skipped,
//! unless STOR_TEST_REQUIRE_SERVERS=1 (set by the script and CI), where a missing or
//! unreachable server fails the test loudly.

#![allow(dead_code)]

pub mod faulty;
pub mod proxy;

use std::sync::{Arc, OnceLock};

use stor::backend::Backend;

use stor::{Storage, StorageConfig, StorageType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Local,
    SeaweedFs,
    Moto,
    /// fake-gcs-server.
    Gcs,
    /// Azurite's blob service.
    Azurite,
}

impl Kind {
    /// Real S3 servers (presign works, multipart is used).
    pub fn is_s3(self) -> bool {
        matches!(self, Kind::SeaweedFs | Kind::Moto)
    }
    /// A server of its own (shares one bucket per test process).
    pub fn is_server(self) -> bool {
        !matches!(self, Kind::Memory | Kind::Local)
    }
    /// SeaweedFS folds `//` and caps each `/`-separated segment at 255 bytes;
    /// the others keep keys byte for byte.
    pub fn keeps_keys_exactly(self) -> bool {
        self != Kind::SeaweedFs
    }
    /// moto and fake-gcs-server check no signatures; SeaweedFS and Azurite do.
    pub fn checks_signatures(self) -> bool {
        matches!(self, Kind::SeaweedFs | Kind::Azurite)
    }
    fn env(self) -> Option<&'static str> {
        match self {
            Kind::SeaweedFs => Some("STOR_TEST_SEAWEEDFS"),
            Kind::Moto => Some("STOR_TEST_MOTO"),
            Kind::Gcs => Some("STOR_TEST_GCS"),
            Kind::Azurite => Some("STOR_TEST_AZURITE"),
            _ => None,
        }
    }
}

pub struct Fixture {
    pub kind: Kind,
    pub storage: Storage,
    /// The store's backend itself, for cases that must write around the engine
    /// (a damaged object, a leftover multipart upload).
    pub backend: Arc<dyn Backend>,
    /// A bucket shared by all tests of this kind in this process.
    pub bucket: String,
    /// A prefix unique to this test; every key a test writes starts with it.
    pub prefix: String,
    _root: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }
}

pub fn unique(tag: &str) -> String {
    format!("{tag}-{:08x}", rand::random::<u32>())
}

/// The S3 config tests use: explicit, so nothing from the ambient AWS environment
/// leaks in.
pub fn s3_config(endpoint: &str) -> StorageConfig {
    StorageConfig {
        storage_type: StorageType::S3,
        endpoint_url: Some(endpoint.to_owned()),
        aws_access_key_id: Some(env_or("STOR_TEST_ACCESS_KEY_ID", "stor-test")),
        aws_secret_access_key: Some(
            env_or("STOR_TEST_SECRET_ACCESS_KEY", "stor-test-secret").into(),
        ),
        region_name: Some("us-east-1".into()),
        max_retries: 3,
        state_dir: Some(state_dir()),
        ..StorageConfig::default()
    }
}

/// A transfer journal directory for this test process (never the user's own).
pub fn state_dir() -> std::path::PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_path_buf()
}

/// The GCS config tests use: the emulator as the endpoint, no credentials.
/// The dummy service account key of Google's signing conformance tests signs URLs
/// (the emulator checks no signatures, and no token is ever asked for: tokens go to
/// Google's hosts only).
pub fn gcs_config(endpoint: &str) -> StorageConfig {
    StorageConfig {
        endpoint_url: Some(endpoint.to_owned()),
        google_application_credentials: Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/gcs-v4/service-account.json"
            )
            .into(),
        ),
        max_retries: 3,
        ..StorageConfig::gcs()
    }
}

/// Azurite's well-known development account key (public, in Azure's docs).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The connection string of Azurite's development account at `endpoint`.
pub fn azurite_connection_string(endpoint: &str) -> String {
    format!("AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint={endpoint}")
}

/// The Azure config tests use: Azurite's development account by connection string.
pub fn azure_config(endpoint: &str) -> StorageConfig {
    StorageConfig {
        azure_storage_connection_string: Some(azurite_connection_string(endpoint).into()),
        max_retries: 3,
        ..StorageConfig::azure()
    }
}

/// The config of a server kind at its endpoint.
pub fn server_config(kind: Kind, endpoint: &str) -> StorageConfig {
    match kind {
        Kind::Gcs => gcs_config(endpoint),
        Kind::Azurite => azure_config(endpoint),
        _ => s3_config(endpoint),
    }
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn endpoint(kind: Kind) -> Option<String> {
    let var = kind.env()?;
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("STOR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!("{var} is not set but STOR_TEST_REQUIRE_SERVERS=1: start the servers with scripts/with-servers.sh");
            }
            None
        }
    }
}

/// Config for `kind`, with `tweak` applied; `None` when the server is not configured.
pub async fn storage_with(
    kind: Kind,
    tweak: impl FnOnce(&mut StorageConfig),
) -> Option<(Storage, Option<tempfile::TempDir>)> {
    let (mut cfg, root) = match kind {
        Kind::Memory => (StorageConfig::memory(), None),
        Kind::Local => {
            let dir = tempfile::tempdir().unwrap();
            let cfg = StorageConfig {
                state_dir: Some(state_dir()),
                ..StorageConfig::local(dir.path())
            };
            (cfg, Some(dir))
        }
        _ => (server_config(kind, &endpoint(kind)?), None),
    };
    tweak(&mut cfg);
    let backend = stor::backend::open(&cfg).await.expect("open storage");
    Some((Storage::with_backend(backend, cfg), root))
}

/// [`storage_with`], keeping the backend too.
pub async fn storage_and_backend(
    kind: Kind,
    tweak: impl FnOnce(&mut StorageConfig),
) -> Option<(Storage, Arc<dyn Backend>, Option<tempfile::TempDir>)> {
    let (mut cfg, root) = match kind {
        Kind::Memory => (StorageConfig::memory(), None),
        Kind::Local => {
            let dir = tempfile::tempdir().unwrap();
            let cfg = StorageConfig {
                state_dir: Some(state_dir()),
                ..StorageConfig::local(dir.path())
            };
            (cfg, Some(dir))
        }
        _ => (server_config(kind, &endpoint(kind)?), None),
    };
    tweak(&mut cfg);
    let backend = stor::backend::open(&cfg).await.expect("open storage");
    Some((Storage::with_backend(backend.clone(), cfg), backend, root))
}

static SHARED_BUCKETS: OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    OnceLock::new();

/// A fixture for `kind` with a fresh prefix; skips (returns `None`) when the server
/// is not configured, fails when it is configured but unreachable.
pub async fn fixture(kind: Kind, test: &str) -> Option<Fixture> {
    fixture_with(kind, test, |_| {}).await
}

pub async fn fixture_with(
    kind: Kind,
    test: &str,
    tweak: impl FnOnce(&mut StorageConfig),
) -> Option<Fixture> {
    let Some((storage, backend, root)) = storage_and_backend(kind, tweak).await else {
        eprintln!("skipping {test} on {kind:?}: server not configured");
        return None;
    };
    // Real servers share one bucket per process (SeaweedFS makes a collection per
    // bucket); embedded stores are fresh per test anyway.
    let bucket = if kind.is_server() {
        let map = SHARED_BUCKETS.get_or_init(Default::default);
        let name = {
            let mut m = map.lock().unwrap();
            m.entry(format!("{kind:?}"))
                .or_insert_with(|| unique("stor-contract"))
                .clone()
        };
        match storage.create_bucket(&name).await {
            Ok(()) => {}
            Err(e) if e.kind() == stor::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("{kind:?} server configured but not usable: {e}"),
        }
        name
    } else {
        let name = "contract".to_owned();
        storage.create_bucket(&name).await.unwrap();
        name
    };
    Some(Fixture {
        kind,
        storage,
        backend,
        bucket,
        prefix: format!("{}/", unique(test)),
        _root: root,
    })
}

/// Deterministic pseudo-random bytes, distinct per seed.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Instantiates each listed case (an `async fn(Fixture)` in `cases`) for every backend.
#[macro_export]
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() {
            if let Some(f) = $crate::common::fixture($crate::common::Kind::Memory, stringify!($case)).await { super::cases::$case(f).await } } )* }
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() {
            if let Some(f) = $crate::common::fixture($crate::common::Kind::Local, stringify!($case)).await { super::cases::$case(f).await } } )* }
        mod seaweedfs { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() {
            if let Some(f) = $crate::common::fixture($crate::common::Kind::SeaweedFs, stringify!($case)).await { super::cases::$case(f).await } } )* }
        mod moto { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() {
            if let Some(f) = $crate::common::fixture($crate::common::Kind::Moto, stringify!($case)).await { super::cases::$case(f).await } } )* }
        mod gcs { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() {
            if let Some(f) = $crate::common::fixture($crate::common::Kind::Gcs, stringify!($case)).await { super::cases::$case(f).await } } )* }
        mod azurite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() {
            if let Some(f) = $crate::common::fixture($crate::common::Kind::Azurite, stringify!($case)).await { super::cases::$case(f).await } } )* }
    };
}

/// A plain HTTP request (as a browser would make with a presigned URL):
/// returns the status and the body.
pub async fn http(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("Content-Type", ct))
        .into_iter()
        .collect();
    http_with(method, url, &headers, body).await
}

/// [`http`] with any headers.
pub async fn http_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (method, url, headers, body) = (
        method.to_owned(),
        url.to_owned(),
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
        body.to_vec(),
    );
    tokio::task::spawn_blocking(move || {
        let mut req = ureq::request(&method, &url);
        for (k, v) in &headers {
            req = req.set(k, v);
        }
        let res = if method == "GET" {
            req.call()
        } else {
            req.send_bytes(&body)
        };
        match res {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    })
    .await
    .unwrap()
}
