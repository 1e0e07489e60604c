//! `stor doctor`: checks what usually goes wrong — credentials, the endpoint, the
//! bucket, the clock — and which optional S3 features the endpoint supports, and
//! says what to fix.

use anyhow::Result;
use stor::{ErrorKind, Location, ProbeOutcome, Scheme};

use crate::args::DoctorArgs;
use crate::context::Ctx;
use crate::exit::{usage, Exit};

struct Report<'a> {
    ctx: &'a Ctx,
    failed: bool,
}

impl Report<'_> {
    fn ok(&self, what: &str) {
        self.ctx.out.say(&format!("ok    {what}"));
    }
    fn warn(&self, what: &str, fix: &str) {
        self.ctx.out.say(&format!("warn  {what}"));
        self.ctx.out.say(&format!("      fix: {fix}"));
    }
    /// An optional feature the store lacks: the probe's text already says what
    /// that means and what to do.
    fn lacks(&self, what: &str) {
        self.ctx.out.say(&format!("warn  {what}"));
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.failed = true;
        self.ctx.out.say(&format!("FAIL  {what}"));
        self.ctx.out.say(&format!("      fix: {fix}"));
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

pub async fn doctor(ctx: &Ctx, a: &DoctorArgs) -> Result<Exit> {
    let (scheme, bucket) = match a.url.as_deref().map(str::parse::<Location>).transpose()? {
        None => (Scheme::S3, None),
        Some(Location::Object { scheme, bucket, .. }) if bucket.is_empty() => (scheme, None),
        Some(Location::Object { scheme, bucket, .. }) => (scheme, Some(bucket)),
        Some(_) => {
            return Err(usage(
                "doctor takes s3://BUCKET, gs://BUCKET, az://CONTAINER or local://BUCKET".into(),
            ))
        }
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
            ctx.out.flush();
            return Ok(Exit::Failed);
        }
    };
    let cfg = store.config();
    // Resolved when the store was opened; this asks no one again.
    let credentials = match store.credentials_source().await {
        Ok(Some(from)) => format!(", credentials from {from}"),
        Ok(None) => String::new(),
        Err(e) => format!(", credentials: {e}"),
    };
    let endpoint = match ctx.endpoint(store) {
        _ if store.scheme() != "s3" => format!("root {}", cfg.resolved_local_root().display()),
        Some((url, from)) => format!("endpoint {url} (from {from})"),
        None => "endpoint AWS default".to_owned(),
    };
    r.ok(&format!(
        "config: {} store, {endpoint}, region {}{credentials}",
        store.scheme(),
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
        ctx.out.flush();
        return Ok(Exit::failed_if(r.failed));
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
    // Write, read back, the optional features: the library's probe.
    for check in store.probe(b).await {
        let name = match check.name {
            "write an object" | "read it back" | "delete objects" => check.name.to_owned(),
            other => format!("feature: {other}"),
        };
        match check.outcome {
            ProbeOutcome::Works(how) if how.is_empty() => r.ok(&name),
            ProbeOutcome::Works(how) => r.ok(&format!("{name} ({how})")),
            ProbeOutcome::Missing(what) => r.lacks(&format!("{name}: {what}")),
            ProbeOutcome::Failed(e) => r.fail(&format!("{name}: {e}"), fix_for(e.kind())),
        }
    }
    ctx.out.flush();
    Ok(Exit::failed_if(r.failed))
}
