//! The library's share of the cluster run (`scripts/cluster.sh`): a mixed workload
//! against an S3 endpoint for a while — small and multipart uploads, whole and
//! ranged downloads checked byte for byte, listings, copies by parts, create-only
//! writes — recording every operation's latency and the phase of the run it
//! started in (read from `STOR_CLUSTER_PHASE`, a file the script rewrites: `before`,
//! `down`, `restarted`), and the retries the client made in each phase. `verify`
//! then reads back everything `load` wrote and checks no multipart upload is left.
//!
//! ```text
//! cluster_load load   BUCKET SECONDS MANIFEST   # prints a JSON summary
//! cluster_load verify BUCKET MANIFEST           # exit 1 on any difference
//! ```
//! Endpoint and keys: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY;
//! attempts per request: STOR_MAX_RETRIES (default 10).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use stor::{
    ByteRange, CopyOptions, DownloadOptions, ListOptions, Storage, StorageConfig, UploadOptions,
};

const MIB: usize = 1 << 20;
const SMALL: usize = 64 * 1024;
const BIG: usize = 16 * MIB;

/// Deterministic bytes, distinct per seed (xorshift), so any object can be checked
/// from its length and seed alone.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"))
}

async fn storage() -> Storage {
    let attempts = std::env::var("STOR_MAX_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cfg = StorageConfig {
        endpoint_url: Some(env("AWS_ENDPOINT_URL")),
        aws_access_key_id: Some(env("AWS_ACCESS_KEY_ID")),
        aws_secret_access_key: Some(env("AWS_SECRET_ACCESS_KEY").into()),
        region_name: Some("us-east-1".into()),
        max_retries: attempts,
        multipart_threshold: 8 * MIB as u64,
        part_size: Some(5 * MIB as u64),
        max_concurrency: 4,
        ..StorageConfig::s3()
    };
    Storage::new(cfg).await.expect("open the store")
}

fn phase() -> String {
    std::env::var("STOR_CLUSTER_PHASE")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "before".into())
}

/// One finished operation.
struct Sample {
    op: &'static str,
    phase: String,
    ms: f64,
    attempts: u32,
    error: Option<String>,
}

/// Objects written: key → (length, seed).
type Manifest = Arc<Mutex<BTreeMap<String, (usize, u64)>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("load") => load(&args[2], args[3].parse().unwrap(), &args[4]).await,
        Some("verify") => verify(&args[2], &args[3]).await,
        _ => {
            eprintln!("usage: cluster_load load BUCKET SECONDS MANIFEST | verify BUCKET MANIFEST");
            std::process::exit(2);
        }
    }
}

async fn load(bucket: &str, seconds: u64, manifest_path: &str) {
    let s = storage().await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let manifest: Manifest = Arc::default();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    // Retries per phase: the client's counter read at every change of phase.
    let retries: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let watcher = {
        let (s, retries) = (s.clone(), retries.clone());
        tokio::spawn(async move {
            let (mut current, mut at) = (phase(), s.metrics().retries);
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (now, total) = (phase(), s.metrics().retries);
                *retries.lock().unwrap().entry(current.clone()).or_default() += total - at;
                at = total;
                current = now;
            }
        })
    };
    let seq = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..6u64)
        .map(|w| {
            let (s, manifest, samples, seq) =
                (s.clone(), manifest.clone(), samples.clone(), seq.clone());
            let bucket = bucket.to_owned();
            tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < deadline {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let started = (phase(), Instant::now());
                    let (op, res) = one(&s, &bucket, i % 7, n, &manifest).await;
                    let (attempts, error) = match res {
                        Ok(a) => (a, None),
                        Err(e) => (e.attempts(), Some(e.to_string())),
                    };
                    samples.lock().unwrap().push(Sample {
                        op,
                        phase: started.0,
                        ms: started.1.elapsed().as_secs_f64() * 1000.0,
                        attempts,
                        error,
                    });
                    i += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    watcher.abort();
    let m = manifest.lock().unwrap().clone();
    std::fs::write(manifest_path, serde_json::to_string(&m).unwrap()).unwrap();
    let samples = samples.lock().unwrap();
    let mut by: BTreeMap<(String, &str), Vec<&Sample>> = BTreeMap::new();
    for x in samples.iter() {
        by.entry((x.phase.clone(), x.op)).or_default().push(x);
    }
    let mut rows = Vec::new();
    for ((phase, op), xs) in &by {
        let mut ms: Vec<f64> = xs.iter().map(|x| x.ms).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
        rows.push(serde_json::json!({
            "phase": phase, "op": op, "count": xs.len(),
            "failures": xs.iter().filter(|x| x.error.is_some()).count(),
            "p50_ms": pct(0.5).round(), "p95_ms": pct(0.95).round(), "max_ms": pct(1.0).round(),
            "max_attempts": xs.iter().map(|x| x.attempts).max(),
            "retried_ops": xs.iter().filter(|x| x.attempts > 1).count(),
        }));
    }
    let errors: Vec<&String> = samples.iter().filter_map(|x| x.error.as_ref()).collect();
    let snap = s.metrics();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "operations": samples.len(),
            "failures": errors.len(),
            "errors": errors,
            "retries_total": snap.retries,
            "retries_by_phase": *retries.lock().unwrap(),
            "throttled": snap.throttled,
            "by_phase_and_op": rows,
        }))
        .unwrap()
    );
}

/// Runs operation `kind`; returns its name and the most attempts a request took.
async fn one(
    s: &Storage,
    b: &str,
    kind: u64,
    n: u64,
    manifest: &Manifest,
) -> (&'static str, stor::Result<u32>) {
    // A big object written earlier, to read or copy.
    let some_big = || {
        let m = manifest.lock().unwrap();
        let bigs: Vec<_> = m.iter().filter(|(_, (len, _))| *len == BIG).collect();
        bigs.get(n as usize % bigs.len().max(1))
            .map(|(k, v)| ((*k).clone(), **v))
    };
    let record = |key: String, len: usize, seed: u64| {
        manifest.lock().unwrap().insert(key, (len, seed));
    };
    match kind {
        0 => (
            "put small",
            async {
                let key = format!("lib/small/{n}");
                let r = s
                    .upload_bytes(b, &key, payload(SMALL, n), UploadOptions::default())
                    .await?;
                record(key, SMALL, n);
                Ok(r.attempts)
            }
            .await,
        ),
        1 => (
            "put multipart",
            async {
                let key = format!("lib/big/{n}");
                let r = s
                    .upload_bytes(b, &key, payload(BIG, n), UploadOptions::default())
                    .await?;
                record(key, BIG, n);
                Ok(r.attempts)
            }
            .await,
        ),
        2 => (
            "get whole",
            async {
                let Some((key, (len, seed))) = some_big() else {
                    return Ok(1);
                };
                let got = s.download_bytes(b, &key).await?;
                if got.data.as_ref() != payload(len, seed).as_slice() {
                    return Err(stor::Error::new(
                        stor::ErrorKind::Integrity,
                        format!("{key}: bytes differ"),
                    ));
                }
                Ok(got.result.attempts)
            }
            .await,
        ),
        3 => (
            "get range",
            async {
                let Some((key, (len, seed))) = some_big() else {
                    return Ok(1);
                };
                let start = (n * 7919) % (len as u64 - MIB as u64);
                let range = ByteRange {
                    start,
                    end: start + MIB as u64,
                };
                let o = DownloadOptions {
                    range: Some(range),
                    ..Default::default()
                };
                let got = s.download_stream(b, &key, o).await?.collect().await?;
                let want = &payload(len, seed)[start as usize..start as usize + MIB];
                if got.as_ref() != want {
                    return Err(stor::Error::new(
                        stor::ErrorKind::Integrity,
                        format!("{key}: range differs"),
                    ));
                }
                Ok(1)
            }
            .await,
        ),
        4 => (
            "list",
            async {
                let before: Vec<String> = manifest.lock().unwrap().keys().cloned().collect();
                let listed: Vec<String> = s
                    .list_stream(b, ListOptions::default().prefix("lib/"))
                    .map_ok(|o| o.key)
                    .try_collect()
                    .await?;
                if let Some(k) = before.iter().find(|k| listed.binary_search(k).is_err()) {
                    return Err(stor::Error::new(
                        stor::ErrorKind::Integrity,
                        format!("listing lacks {k}"),
                    ));
                }
                Ok(1)
            }
            .await,
        ),
        5 => (
            "copy by parts",
            async {
                let Some((key, (len, seed))) = some_big() else {
                    return Ok(1);
                };
                let to = format!("lib/copy/{n}");
                let r = s
                    .copy_object(b, &key, b, &to, CopyOptions::default())
                    .await?;
                record(to, len, seed);
                Ok(r.attempts)
            }
            .await,
        ),
        _ => (
            "put create-only",
            async {
                let key = format!("lib/once/{n}");
                let opts = UploadOptions::default().create_only();
                let r = s.upload_bytes(b, &key, payload(SMALL, n), opts).await?;
                record(key, SMALL, n);
                Ok(r.attempts)
            }
            .await,
        ),
    }
}

async fn verify(bucket: &str, manifest_path: &str) {
    let s = storage().await;
    let m: BTreeMap<String, (usize, u64)> =
        serde_json::from_str(&std::fs::read_to_string(manifest_path).unwrap()).unwrap();
    let mut bad = Vec::new();
    for (key, (len, seed)) in &m {
        match s.download_bytes(bucket, key).await {
            Ok(got) if got.data.as_ref() == payload(*len, *seed).as_slice() => {}
            Ok(_) => bad.push(format!("{key}: bytes differ")),
            Err(e) => bad.push(format!("{key}: {e}")),
        }
    }
    let pending = s.list_uploads(bucket, "").await.unwrap();
    println!(
        "{}",
        serde_json::json!({
            "objects_checked": m.len(),
            "differences": bad,
            "multipart_uploads_left": pending.len(),
        })
    );
    if !bad.is_empty() || !pending.is_empty() {
        std::process::exit(1);
    }
}
