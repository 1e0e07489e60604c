//! Presigned URLs per second through the public API (`Storage::presign`), one core.
//! `cargo bench -p stor --bench presign`; the target is ≥ 300 000 URLs/s.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stor::{PresignOptions, Storage, StorageConfig};

fn presign(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storage = rt.block_on(async {
        Storage::new(StorageConfig {
            endpoint_url: Some("http://127.0.0.1:8500".into()),
            aws_access_key_id: Some("AKIDEXAMPLE".into()),
            aws_secret_access_key: Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            region_name: Some("us-east-1".into()),
            ..StorageConfig::s3()
        })
        .await
        .unwrap()
    });
    let keys: Vec<String> = (0..1000).map(|i| format!("pb/list/k{i:06}")).collect();
    let mut g = c.benchmark_group("presign");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("get_1000_urls", |b| {
        b.iter(|| {
            rt.block_on(async {
                for k in &keys {
                    let u = storage
                        .presign("bench-bucket", k, PresignOptions::default())
                        .await
                        .unwrap();
                    std::hint::black_box(u);
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, presign);
criterion_main!(benches);
