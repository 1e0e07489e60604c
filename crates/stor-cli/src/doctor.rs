//! `stor doctor`: checks what usually goes wrong — credentials, the endpoint, the
//! bucket, the clock — and which optional S3 features the endpoint supports, and
//! says what to fix.

use anyhow::Result;
use stor::{CopyOptions, ErrorKind, Location, Scheme, UploadOptions};

use crate::args::DoctorArgs;
use crate::commands::{usage, Ctx, EXIT_FAILED};

struct Report<'a> {
    ctx: &'a Ctx,
    failed: bool,
}

impl Report<'_> {
    fn ok(&self, what: &str) {
        self.ctx.say(&format!("ok    {what}"));
    }
    fn warn(&self, what: &str, fix: &str) {
        self.ctx.say(&format!("warn  {what}"));
        self.ctx.say(&format!("      fix: {fix}"));
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.failed = true;
        self.ctx.say(&format!("FAIL  {what}"));
        self.ctx.say(&format!("      fix: {fix}"));
    }
}

fn fix_for(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::AccessDenied => {
            "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, --profile, the \
             config file) and that they may use this bucket"
        }
        ErrorKind::Config => "check the config; for a private CA set ca_bundle or AWS_CA_BUNDLE",
        ErrorKind::Timeout | ErrorKind::Transient => {
            "check --endpoint-url / AWS_ENDPOINT_URL and that the server is up and reachable"
        }
        ErrorKind::BucketNotFound => "create the bucket (`stor mb`) or fix its name",
        _ => "see the error above",
    }
}

pub async fn doctor(ctx: &Ctx, a: &DoctorArgs) -> Result<u8> {
    let (scheme, bucket) = match a.url.as_deref().map(str::parse::<Location>).transpose()? {
        None => (Scheme::S3, None),
        Some(Location::Object { scheme, bucket, .. }) if bucket.is_empty() => (scheme, None),
        Some(Location::Object { scheme, bucket, .. }) => (scheme, Some(bucket)),
        Some(_) => return Err(usage("doctor takes s3://BUCKET or local://BUCKET".into())),
    };
    let mut r = Report { ctx, failed: false };
    let store = match ctx.store(scheme).await {
        Ok(s) => s,
        Err(e) => {
            let kind = e.downcast_ref::<stor::Error>().map(stor::Error::kind);
            let fix = match kind {
                Some(ErrorKind::Config) | None => {
                    "check the config, the flags and the AWS_* variables"
                }
                Some(kind) => fix_for(kind),
            };
            r.fail(
                &format!("opening the {} store: {e:#}", scheme.as_str()),
                fix,
            );
            ctx.flush();
            return Ok(EXIT_FAILED);
        }
    };
    let cfg = store.config();
    // Resolved when the store was opened; this asks no one again.
    let credentials = match store.backend().credentials().await {
        Ok(Some(from)) => format!(", credentials from {from}"),
        Ok(None) => String::new(),
        Err(e) => format!(", credentials: {e}"),
    };
    r.ok(&format!(
        "config: {} store, endpoint {}, region {}{credentials}",
        store.scheme(),
        cfg.endpoint_url
            .as_deref()
            .map_or("AWS default".into(), stor::config::redact_url),
        cfg.resolved_region().await,
    ));

    // Reachability and credentials: listing buckets needs both.
    let health = store.health().await;
    match &health.error {
        None => r.ok(&format!(
            "endpoint reachable and credentials accepted ({} ms)",
            health.latency.as_millis()
        )),
        Some(e) => {
            let kind = store
                .list_buckets()
                .await
                .err()
                .map(|e| e.kind())
                .unwrap_or(ErrorKind::Other);
            r.fail(&format!("endpoint or credentials: {e}"), fix_for(kind));
        }
    }
    match health.clock_skew_seconds {
        Some(s) if s.abs() > 900.0 => r.fail(
            &format!("clock skew {s:+.0} s: requests are refused past 15 minutes"),
            "sync this machine's clock (NTP)",
        ),
        Some(s) if s.abs() > 60.0 => r.warn(
            &format!("clock skew {s:+.0} s"),
            "sync this machine's clock (NTP) before it reaches 15 minutes",
        ),
        Some(s) => r.ok(&format!("clock skew {s:+.1} s")),
        None => {}
    }

    let Some(bucket) = bucket else {
        ctx.flush();
        return Ok(if r.failed { EXIT_FAILED } else { 0 });
    };
    let b = bucket.as_str();
    match store.bucket_exists(b).await {
        Ok(true) => r.ok(&format!("bucket {b} exists")),
        Ok(false) => r.fail(
            &format!("bucket {b} does not exist"),
            fix_for(ErrorKind::BucketNotFound),
        ),
        Err(e) => r.fail(&format!("bucket {b}: {e}"), fix_for(e.kind())),
    }
    // Write, read, delete a probe object.
    let probe = format!(".stor-doctor/{:016x}", rand_id());
    let wrote = match store
        .upload_bytes(b, &probe, "stor doctor probe", UploadOptions::default())
        .await
    {
        Ok(_) => {
            r.ok("write an object");
            true
        }
        Err(e) => {
            r.fail(&format!("write an object: {e}"), fix_for(e.kind()));
            false
        }
    };
    if wrote {
        match store.download_bytes(b, &probe).await {
            Ok(d) if d.data.as_ref() == b"stor doctor probe" => {
                r.ok("read it back (checksum verified)")
            }
            Ok(_) => r.fail(
                "read it back: the bytes differ",
                "check the endpoint (a proxy that rewrites bodies?)",
            ),
            Err(e) => r.fail(&format!("read it back: {e}"), fix_for(e.kind())),
        }
        // Optional features.
        let be = store.backend();
        if be.supports_multipart() {
            match be
                .create_multipart(b, &probe, &UploadOptions::default(), None)
                .await
            {
                Ok(id) => {
                    let _ = be.abort_multipart(b, &probe, &id).await;
                    r.ok("feature: multipart uploads");
                }
                Err(e) => r.warn(
                    &format!("feature: multipart uploads: {e}"),
                    "large uploads will fail; raise multipart_threshold",
                ),
            }
        }
        match be
            .get_object(b, &probe, None, Some("0000000000000000"))
            .await
        {
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                r.ok("feature: conditional reads (If-Match pins parallel downloads)")
            }
            _ => r.warn(
                "feature: conditional reads are ignored",
                "an object replaced during a download is then caught only by its checksum",
            ),
        }
        if scheme == Scheme::S3 {
            native_checksums(&mut r, cfg, b, &format!("{probe}.native")).await;
        }
        let copy = format!("{probe}.copy");
        match store
            .copy_object(b, &probe, b, &copy, CopyOptions::default())
            .await
        {
            Ok(_) => r.ok("feature: server-side copy"),
            Err(e) => r.warn(
                &format!("feature: server-side copy: {e}"),
                "cp/mv between keys will fail",
            ),
        }
        match store.delete_many(b, &[probe.clone(), copy]).await {
            Ok(res) if res.iter().all(|d| d.is_deleted()) => r.ok("delete objects (batched)"),
            Ok(res) => r.fail(
                &format!("delete objects: {:?}", res),
                fix_for(ErrorKind::AccessDenied),
            ),
            Err(e) => r.fail(&format!("delete objects: {e}"), fix_for(e.kind())),
        }
    }
    ctx.flush();
    Ok(if r.failed { EXIT_FAILED } else { 0 })
}

/// Whether the endpoint checks and keeps S3's own checksum headers: an upload with
/// them on, then HEAD in checksum mode must return stor's CRC64NVME.
async fn native_checksums(r: &mut Report<'_>, cfg: &stor::StorageConfig, b: &str, key: &str) {
    let on = cfg.native_checksums.unwrap_or(cfg.endpoint_url.is_none());
    let cfg = stor::StorageConfig {
        native_checksums: Some(true),
        checksum: stor::ChecksumAlgorithm::Crc64nvme,
        ..cfg.clone()
    };
    let data = "stor doctor native checksum probe";
    let want = stor::ChecksumAlgorithm::Crc64nvme
        .of(data.as_bytes())
        .map(|c| c.encoded());
    let probe = async {
        let store = stor::Storage::new(cfg.clone()).await?;
        store
            .upload_bytes(b, key, data, UploadOptions::default())
            .await?;
        let raw = stor::backend::s3::S3Backend::new(&cfg).await?;
        let head = raw
            .client()
            .head_object()
            .bucket(b)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await;
        let _ = store.delete(b, key).await;
        Ok::<_, stor::Error>(
            head.ok()
                .and_then(|h| h.checksum_crc64_nvme().map(str::to_owned)),
        )
    };
    match probe.await {
        Ok(got) if got.is_some() && got == want => r.ok(if on {
            "feature: S3-native checksums (on: the server checks every upload)"
        } else {
            "feature: S3-native checksums are kept here; set \"native_checksums\": true \
             to have the server check every upload"
        }),
        Ok(_) => r.warn(
            "feature: S3-native checksums are not kept",
            "leave native_checksums off (stor's own checksum still guards every download)",
        ),
        Err(e) => r.warn(
            &format!("feature: S3-native checksum headers refused: {e}"),
            "leave native_checksums off",
        ),
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
