//! A web backend's use of presigned URLs: the browser uploads a report straight to
//! S3 with a presigned PUT (the bytes never pass through the backend), the backend
//! checks what arrived, and later hands out a presigned GET for download.
//!
//! Presigned URLs need an S3 endpoint (AWS or any S3-compatible engine):
//!
//! ```text
//! STOR_CONFIG=storage.json cargo run --example presign_web
//! # or, with the test servers:
//! scripts/with-servers.sh sh -c 'STOR_EXAMPLE_ENDPOINT=$STOR_TEST_SEAWEEDFS \
//!     cargo run --example presign_web'
//! ```
//!
//! The "browser" here is a plain HTTP client (ureq), doing what `fetch(url,
//! {method: "PUT", body, headers: {"Content-Type": ...}})` would.

use std::time::Duration;

use stor::{PresignOptions, Storage, StorageConfig, StorageType};

/// What the backend's "start upload" endpoint returns to the browser.
struct UploadSlot {
    key: String,
    put_url: String,
    content_type: String,
}

/// Backend: reserve a key for the user's file and sign a PUT for it, valid 15
/// minutes, pinned to the Content-Type the browser must send.
async fn start_upload(s: &Storage, user: &str, file_name: &str) -> stor::Result<UploadSlot> {
    let key = format!("uploads/{user}/{file_name}");
    let content_type = stor::guess_content_type(file_name);
    let put_url = s
        .presign(
            None,
            &key,
            PresignOptions::put(Duration::from_secs(15 * 60)).content_type(&content_type),
        )
        .await?;
    Ok(UploadSlot {
        key,
        put_url,
        content_type,
    })
}

/// Backend: the browser says it is done; check the object before accepting it.
async fn finish_upload(s: &Storage, slot: &UploadSlot, max_bytes: u64) -> stor::Result<u64> {
    let info = s.info(None, &slot.key).await?;
    if info.size > max_bytes {
        s.delete(None, &slot.key).await?;
        return Err(stor::Error::new(
            stor::ErrorKind::InvalidInput,
            format!("{} bytes is over the {max_bytes}-byte limit", info.size),
        ));
    }
    Ok(info.size)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = match (
        std::env::var_os("STOR_CONFIG"),
        std::env::var("STOR_EXAMPLE_ENDPOINT"),
    ) {
        (Some(path), _) => StorageConfig::from_file(path)?,
        (None, Ok(endpoint)) => StorageConfig {
            storage_type: StorageType::S3,
            endpoint_url: Some(endpoint),
            aws_access_key_id: Some(
                std::env::var("STOR_TEST_ACCESS_KEY_ID").unwrap_or("stor-test".into()),
            ),
            aws_secret_access_key: Some(
                std::env::var("STOR_TEST_SECRET_ACCESS_KEY")
                    .unwrap_or("stor-test-secret".into())
                    .into(),
            ),
            region_name: Some("us-east-1".into()),
            ..StorageConfig::default()
        },
        (None, Err(_)) => {
            eprintln!("presigned URLs need S3: set STOR_CONFIG or STOR_EXAMPLE_ENDPOINT (see the file's docs)");
            return Ok(());
        }
    };
    let bucket = config
        .default_bucket
        .get_or_insert_with(|| "reports".into())
        .clone();
    let s = Storage::new(config).await?;
    if !s.bucket_exists(bucket.as_str()).await? {
        s.create_bucket(&bucket).await?;
    }

    // 1. The browser asks for an upload slot and PUTs the file straight to S3.
    let slot = start_upload(&s, "kim", "q3-report.pdf").await?;
    println!(
        "PUT URL for the browser: {}…",
        &slot.put_url[..slot.put_url.find('?').unwrap_or(60)]
    );
    let report = b"%PDF-1.7 quarterly trading report".to_vec();
    let url = slot.put_url.clone();
    let ct = slot.content_type.clone();
    let status = tokio::task::spawn_blocking(move || {
        ureq::put(&url)
            .set("Content-Type", &ct)
            .send_bytes(&report)
            .map(|r| r.status())
            .map_err(|e| e.to_string())
    })
    .await??;
    println!("browser upload: HTTP {status}");

    // 2. The backend checks what arrived.
    let size = finish_upload(&s, &slot, 10 << 20).await?;
    println!("accepted {} ({size} bytes)", slot.key);

    // 3. Later: a download link, valid one hour.
    let get_url = s
        .presign(None, &slot.key, PresignOptions::default())
        .await?;
    let body = tokio::task::spawn_blocking(
        move || -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            Ok(ureq::get(&get_url).call()?.into_string()?)
        },
    )
    .await?
    .map_err(|e| e.to_string())?;
    println!(
        "browser download: {} bytes, starts {:?}",
        body.len(),
        &body[..8]
    );
    Ok(())
}
