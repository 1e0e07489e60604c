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
        self.ctx.say(&format!("warn  {what}\n      fix: {fix}"));
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.failed = true;
        self.ctx.say(&format!("FAIL  {what}\n      fix: {fix}"));
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
            r.fail(
                &format!("opening the {} store: {e:#}", scheme.as_str()),
                "check the config",
            );
            ctx.flush();
            return Ok(EXIT_FAILED);
        }
    };
    let cfg = store.config();
    r.ok(&format!(
        "config: {} store, endpoint {}, region {}, credentials {}",
        store.scheme(),
        cfg.endpoint_url.as_deref().unwrap_or("AWS default"),
        cfg.region_name.as_deref().unwrap_or("from the environment"),
        match &cfg.aws_access_key_id {
            Some(id) => format!("{} (config)", stor::config::mask_key_id(id)),
            None => "from the AWS environment/profile".into(),
        }
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
                .create_multipart(b, &probe, &UploadOptions::default())
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
