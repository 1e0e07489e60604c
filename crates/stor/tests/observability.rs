//! Observability: every operation reaches the `metrics` facade under the names and
//! labels documented in `stor::metrics`, and runs in a tracing span naming it.
//! Also the log lines at init and shutdown, and the metrics snapshot's names.
//! Its own test binary: it installs a global metrics recorder and tracing subscriber.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use stor::{ErrorKind, Storage, StorageConfig, UploadOptions};

#[derive(Default)]
struct Seen {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Mutex<Vec<f64>>>>>,
}

struct Rec(Arc<Seen>);

struct C(Arc<AtomicU64>);
impl metrics::CounterFn for C {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}
struct H(Arc<Mutex<Vec<f64>>>);
impl metrics::HistogramFn for H {
    fn record(&self, v: f64) {
        self.0.lock().unwrap().push(v);
    }
}

fn name(k: &Key) -> String {
    let mut labels: Vec<String> = k
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", k.name(), labels.join(","))
}

impl Recorder for Rec {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, k: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .0
            .counters
            .lock()
            .unwrap()
            .entry(name(k))
            .or_default()
            .clone();
        Counter::from_arc(Arc::new(C(c)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, k: &Key, _: &Metadata<'_>) -> Histogram {
        let h = self
            .0
            .histograms
            .lock()
            .unwrap()
            .entry(name(k))
            .or_default()
            .clone();
        Histogram::from_arc(Arc::new(H(h)))
    }
}

#[tokio::test]
async fn operations_reach_the_metrics_facade_with_documented_names() {
    let seen = Arc::new(Seen::default());
    metrics::set_global_recorder(Rec(seen.clone())).unwrap();
    let s = Storage::new(StorageConfig::memory()).await.unwrap();
    s.create_bucket("obs").await.unwrap();
    s.upload_bytes("obs", "a.json", "12345", UploadOptions::default())
        .await
        .unwrap();
    s.download_bytes("obs", "a.json").await.unwrap();
    let e = s.info("obs", "missing").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound);

    let counters = seen.counters.lock().unwrap();
    let get = |k: &str| {
        counters
            .get(k)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or_else(|| panic!("no {k} in {:?}", counters.keys().collect::<Vec<_>>()))
    };
    assert_eq!(
        get("stor_operations_total{backend=memory,kind=none,op=upload,outcome=ok}"),
        1
    );
    assert_eq!(
        get("stor_operations_total{backend=memory,kind=none,op=download,outcome=ok}"),
        1
    );
    let not_found = ErrorKind::KeyNotFound.to_string();
    assert_eq!(
        get(&format!(
            "stor_operations_total{{backend=memory,kind={not_found},op=info,outcome=error}}"
        )),
        1
    );
    assert_eq!(get("stor_bytes_total{backend=memory,direction=up}"), 5);
    assert_eq!(get("stor_bytes_total{backend=memory,direction=down}"), 5);
    assert!(get("stor_request_attempts_total{backend=memory}") >= 4);
    let hist = seen.histograms.lock().unwrap();
    let up = hist
        .get("stor_operation_duration_seconds{backend=memory,op=upload,outcome=ok}")
        .expect("latency histogram");
    assert_eq!(up.lock().unwrap().len(), 1);
    assert!(up.lock().unwrap()[0] >= 0.0);
    // The snapshot agrees: operations = successes + failures.
    let m = s.metrics();
    assert_eq!(m.operations, m.successes + m.failures);
}

/// Everything logged in this test binary, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn init_and_shutdown_are_logged_at_info_like_the_original() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    // The original's config, storage_type left out: S3, its region, its bucket.
    let cfg = StorageConfig::from_json_str(
        r#"{"storageConfig": {"aws_access_key_id": "AKIAEXAMPLE",
            "aws_secret_access_key": "obs-canary-secret", "default_bucket": "news",
            "endpoint_url": "http://127.0.0.1:9"}, "databaseConfig": {"host": "db"}}"#,
    )
    .unwrap();
    let s = Storage::new(cfg).await.unwrap();
    s.shutdown().await;
    s.shutdown().await;
    let root = tempfile::tempdir().unwrap();
    let local = Storage::new(StorageConfig::local(root.path()))
        .await
        .unwrap();
    local.shutdown().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let info = |needle: &str| {
        text.lines()
            .filter(|l| l.contains(" INFO ") && l.contains(needle))
            .count()
    };
    assert_eq!(
        info(
            "config has no storage_type: using s3 (the config sets aws_access_key_id, \
              aws_secret_access_key, endpoint_url)"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        info("storage service initialized for region ap-northeast-2 (s3 at http://127.0.0.1:9, bucket news)"),
        1,
        "{text}"
    );
    // Once, however often shutdown is called.
    assert_eq!(
        info("storage service shut down (s3 at http://127.0.0.1:9, bucket news)"),
        1,
        "{text}"
    );
    let at = root.path().display().to_string();
    assert_eq!(
        info(&format!("storage service initialized (local store at {at}")),
        1,
        "{text}"
    );
    assert_eq!(
        info(&format!("storage service shut down (local store at {at}")),
        1,
        "{text}"
    );
    assert!(!text.contains("obs-canary-secret"));
}

#[tokio::test]
async fn the_metrics_snapshot_serialises_with_the_original_names() {
    let s = Storage::new(StorageConfig::memory()).await.unwrap();
    s.create_bucket("names").await.unwrap();
    s.upload_bytes("names", "a", "12345", UploadOptions::default())
        .await
        .unwrap();
    s.download_bytes("names", "a").await.unwrap();
    s.info("names", "missing").await.unwrap_err();
    let v = serde_json::to_value(s.metrics()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "total_operations",
        "successful_operations",
        "failed_operations",
        "total_upload_time",
        "total_download_time",
        "bytes_uploaded",
        "bytes_downloaded",
        "last_operation_time",
        "retries",
        "throttled",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(keys.len(), 10, "{keys:?}");
    assert_eq!(v["total_operations"], 4);
    assert_eq!(v["successful_operations"], 3);
    assert_eq!(v["failed_operations"], 1);
    assert_eq!(v["bytes_uploaded"], 5);
    assert_eq!(v["bytes_downloaded"], 5);
    assert!(v["total_upload_time"].as_f64().unwrap() >= 0.0);
    // Epoch seconds, like the original's time.time().
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = v["last_operation_time"].as_f64().unwrap();
    assert!(last <= now && last > now - 3600.0, "{last} vs {now}");
}
