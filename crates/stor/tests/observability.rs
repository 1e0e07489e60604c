//! Observability: every operation reaches the `metrics` facade under the names and
//! labels documented in `stor::metrics`, and runs in a tracing span naming it.
//! Its own test binary: it installs a global metrics recorder.

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
