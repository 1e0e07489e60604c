//! The original service's main job: a news crawler stores a batch of JSON documents
//! with metadata, each upload starts the knowledge-base ingestion (here a stub that
//! prints), then it lists what it stored and reads one back.
//!
//! The ingestion is one subscriber to the store's completed writes
//! ([`stor::Storage::subscribe`]), not code after every upload call: it hears of an
//! object only once it is stored, never of a failed upload.
//!
//! Runs on the embedded local store with no AWS at all:
//!
//! ```text
//! cargo run --example crawler
//! ```
//!
//! Point it at S3 or any S3-compatible engine with a config file in the original
//! format: `STOR_CONFIG=storage.json cargo run --example crawler`.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use stor::{ListOptions, StorageConfig, StorageService, UploadOptions, WriteEvent, WriteKind};

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

    // Upload, then ingest: the subscriber sees every completed put, with its
    // metadata. (The platform's ingestion would call the knowledge-base API here.)
    let mut events = storage.subscribe();
    let ingestion = tokio::spawn(async move {
        let mut started = 0;
        while let Some(e) = events.next().await {
            if e.kind == WriteKind::Put && e.key.ends_with(".json") {
                start_ingestion(&e);
                started += 1;
                if started == ARTICLES.len() {
                    break;
                }
            }
        }
        started
    });

    // One crawl: a batch of articles, each a JSON document with metadata.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let prefix = format!("crawl/{run}/");
    for (slug, title, lang) in ARTICLES {
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

    let ingested = ingestion.await.expect("the ingestion task");
    println!("ingestion started for {ingested} documents");

    // What did this crawl store?
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

/// Today's crawl: slug, title, language.
const ARTICLES: [(&str, &str, &str); 3] = [
    ("kospi-rally", "KOSPI closes higher on chip rally", "ko"),
    ("fed-minutes", "Fed minutes signal patience", "en"),
    ("won-dollar", "원/달러 환율 하락", "ko"),
];

/// The stub of the knowledge-base ingestion: the original started it right after a
/// successful upload (`if result.get('success'): start_ingestion(...)`).
fn start_ingestion(e: &WriteEvent) {
    println!(
        "ingestion: start for {}/{} ({} bytes, etag {}, source {})",
        e.bucket,
        e.key,
        e.size.unwrap_or(0),
        e.etag.as_deref().unwrap_or("-"),
        e.metadata.get("source").map_or("-", String::as_str)
    );
}
