//! The original service's main job: a news crawler stores a batch of JSON documents
//! with metadata, then lists what it stored and reads one back.
//!
//! Runs on the embedded local store with no AWS at all:
//!
//! ```text
//! cargo run -p stor --example crawler
//! ```
//!
//! Point it at S3 or any S3-compatible engine with a config file in the original
//! format: `STOR_CONFIG=storage.json cargo run -p stor --example crawler`.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use stor::{ListOptions, StorageConfig, StorageService, UploadOptions};

#[tokio::main]
async fn main() -> Result<(), stor::Error> {
    let mut config = match std::env::var_os("STOR_CONFIG") {
        Some(path) => StorageConfig::from_file(path)?,
        None => StorageConfig::default(), // the embedded local store
    };
    let bucket = config
        .default_bucket
        .get_or_insert_with(|| "news".into())
        .clone();
    println!(
        "storage: {:?} (local root {})",
        config.storage_type,
        config.resolved_local_root().display()
    );

    let storage = StorageService::init(config).await?;
    if !storage.bucket_exists(&bucket).await? {
        storage.create_bucket(&bucket).await?;
    }

    // One crawl: a batch of articles, each a JSON document with metadata.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let prefix = format!("crawl/{run}/");
    let articles = [
        ("kospi-rally", "KOSPI closes higher on chip rally", "ko"),
        ("fed-minutes", "Fed minutes signal patience", "en"),
        ("won-dollar", "원/달러 환율 하락", "ko"),
    ];
    for (slug, title, lang) in articles {
        let doc = format!(r#"{{"slug":"{slug}","title":"{title}","lang":"{lang}"}}"#);
        let opts = UploadOptions::default()
            .metadata("source", "crawler")
            .metadata("lang", lang)
            .metadata("title", title);
        let key = format!("{prefix}{slug}.json");
        let r = storage.upload_bytes(None, &key, doc, opts).await?;
        println!(
            "stored {key} ({} bytes, etag {})",
            r.bytes,
            r.etag.unwrap_or_default()
        );
    }

    // What did this crawl store? (Here the knowledge-base ingestion would start.)
    let stored: Vec<_> = storage
        .list_stream(None, ListOptions::default().prefix(prefix.clone()))
        .try_collect()
        .await?;
    println!("{} documents under {prefix}:", stored.len());
    for o in &stored {
        let info = storage.info(None, &o.key).await?;
        println!(
            "  {} {} bytes lang={} type={}",
            o.key,
            o.size,
            info.metadata["lang"],
            info.content_type.unwrap_or_default()
        );
    }
    let first = storage.download_bytes(None, &stored[0].key).await?;
    println!("read back: {}", String::from_utf8_lossy(&first.data));

    let m = storage.metrics();
    println!(
        "metrics: {} operations, {} failures, {} bytes up, {} bytes down",
        m.operations, m.failures, m.bytes_uploaded, m.bytes_downloaded
    );
    StorageService::shutdown().await;
    Ok(())
}
