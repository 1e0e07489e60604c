//! Security: canary credentials never leak (logs at every level, errors, `Debug`,
//! metrics), TLS is verified by default and a CA bundle makes a private CA work,
//! presigned URLs are refused when tampered, expired or used for another method.
//!
//! Its own test binary: it installs a global tracing subscriber at TRACE.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stor::{ErrorKind, PresignOptions, Storage, StorageConfig, StorageType, UploadOptions};

const CANARY_ID: &str = "AKIACANARY7Q2Z9X4W1V";
const CANARY_SECRET: &str = "canary/Secret+Never-Leak-9f8e7d6c5b4a3210";
const CANARY_TOKEN: &str = "canary-session-token-c0ffee-f00d";
/// A password in the endpoint URL's userinfo (S3 never uses it; stor strips it).
const CANARY_URL_PASSWORD: &str = "canary-url-pw-5e6f";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let cap = Captured::default();
    let writer = cap.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    cap
}

fn assert_clean(what: &str, text: &str) {
    assert_no(
        what,
        text,
        &[
            CANARY_ID,
            CANARY_SECRET,
            CANARY_TOKEN,
            "Secret+Never-Leak",
            CANARY_URL_PASSWORD,
        ],
    );
}

fn assert_no(what: &str, text: &str, canaries: &[&str]) {
    for canary in canaries {
        assert!(
            !text.contains(canary),
            "{what} leaks {canary:?}:\n{}",
            &text[text.find(canary).unwrap().saturating_sub(300)..]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_credentials_never_leak_and_tls_is_verified() {
    let logs = capture_logs();
    let Some(endpoint) = common::endpoint(common::Kind::SeaweedFs) else {
        return;
    };
    // Canary credentials SeaweedFS does not know: every request fails, down every
    // error path (signature refused, missing bucket, presign, retries). The endpoint
    // carries a canary password as URL userinfo, which must vanish as well.
    let with_userinfo =
        endpoint.replacen("://", &format!("://canary-user:{CANARY_URL_PASSWORD}@"), 1);
    let cfg = StorageConfig {
        aws_access_key_id: Some(CANARY_ID.into()),
        aws_secret_access_key: Some(CANARY_SECRET.into()),
        aws_session_token: Some(CANARY_TOKEN.into()),
        ..common::s3_config(&with_userinfo)
    };
    let mut evidence = format!("{cfg:?}\n");
    let s = Storage::new(cfg).await.unwrap();
    evidence.push_str(&format!("{s:?}\n"));
    let mut errors = Vec::new();
    errors.push(s.create_bucket("stor-canary").await.unwrap_err());
    errors.push(
        s.upload_bytes("stor-canary", "k", "v", UploadOptions::default())
            .await
            .unwrap_err(),
    );
    errors.push(s.download_bytes("stor-canary", "k").await.unwrap_err());
    errors.push(s.info("stor-canary", "k").await.unwrap_err());
    errors.push(s.list_buckets().await.unwrap_err());
    let url = s
        .presign("stor-canary", "k", PresignOptions::default())
        .await
        .unwrap();
    // The URL carries the key id (that is how SigV4 works) but never the secret.
    assert!(!url.contains(CANARY_SECRET) && !url.contains("Secret%2BNever"));
    for e in &errors {
        evidence.push_str(&format!("{e}\n{e:?}\n"));
        let mut src = std::error::Error::source(e);
        while let Some(c) = src {
            evidence.push_str(&format!("{c}\n{c:?}\n"));
            src = c.source();
        }
    }
    assert!(
        errors.iter().any(|e| e.kind() == ErrorKind::AccessDenied),
        "the canary was refused: {errors:?}"
    );
    evidence.push_str(&format!("{:?}\n{:?}\n", s.metrics(), s.health().await));
    assert_clean("errors, Debug and metrics", &evidence);
    // Good keys with URL userinfo: the userinfo is dropped, the requests work.
    let works = Storage::new(common::s3_config(&with_userinfo))
        .await
        .unwrap();
    works.list_buckets().await.unwrap();

    // TLS: SeaweedFS over HTTPS with a self-signed certificate.
    let (Ok(https), Ok(ca)) = (
        std::env::var("STOR_TEST_SEAWEEDFS_HTTPS"),
        std::env::var("STOR_TEST_CA"),
    ) else {
        panic!("STOR_TEST_SEAWEEDFS_HTTPS and STOR_TEST_CA come with the servers");
    };
    let system = StorageConfig {
        // The system roots explicitly, whatever AWS_CA_BUNDLE says here.
        ca_bundle: Some("/etc/ssl/certs/ca-certificates.crt".into()),
        max_retries: 3,
        ..common::s3_config(&https)
    };
    let untrusted = Storage::new(system.clone()).await.unwrap();
    let e = untrusted.list_buckets().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("ca_bundle"), "says what to do: {e}");
    assert_eq!(e.attempts(), 1, "not retried");
    let trusted = Storage::new(StorageConfig {
        ca_bundle: Some(ca.clone().into()),
        ..system.clone()
    })
    .await
    .unwrap();
    let b = common::unique("stor-tls");
    trusted.create_bucket(&b).await.unwrap();
    trusted
        .upload_bytes(b.as_str(), "x", "over tls", UploadOptions::default())
        .await
        .unwrap();
    let got = trusted.download_bytes(b.as_str(), "x").await.unwrap();
    assert_eq!(got.data.as_ref(), b"over tls");
    // A bundle that is not PEM is a config error before any request.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "not a certificate").unwrap();
    let e = Storage::new(StorageConfig {
        ca_bundle: Some(bad.path().into()),
        ..system
    })
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");

    // Presigned URLs on the real server: tampered, expired and wrong-method refused.
    let good = Storage::new(common::s3_config(&endpoint)).await.unwrap();
    let b = common::unique("stor-presign");
    good.create_bucket(&b).await.unwrap();
    good.upload_bytes(b.as_str(), "doc", "secret report", UploadOptions::default())
        .await
        .unwrap();
    let url = good
        .presign(
            b.as_str(),
            "doc",
            PresignOptions::get(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    assert_eq!(common::http("GET", &url, None, b"").await.0, 200);
    assert_eq!(common::http("PUT", &url, None, b"overwrite").await.0, 403);
    let tampered = url.replace("/doc?", "/doc2?");
    assert_eq!(common::http("GET", &tampered, None, b"").await.0, 403);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _) = common::http("GET", &url, None, b"").await;
    assert_eq!(status, 403, "expired");
    let after = good.download_bytes(b.as_str(), "doc").await.unwrap();
    assert_eq!(
        after.data.as_ref(),
        b"secret report",
        "the PUT changed nothing"
    );

    // Everything logged at TRACE, by stor and the SDK, on all these paths: never
    // the secret or the session token. The access key id is an identifier (it is in
    // every request's Authorization header and presigned URL); the SDK's request
    // orchestrator and signer print it at DEBUG and TRACE (identity, endpoint and
    // signing-parameter lines), which the CLI filters out at every -v level;
    // nothing else shows it.
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.len() > 1000, "the subscriber captured the logs");
    assert_no(
        "logs at TRACE",
        &text,
        &[
            CANARY_SECRET,
            CANARY_TOKEN,
            "Secret+Never-Leak",
            CANARY_URL_PASSWORD,
        ],
    );
    assert_eq!(
        text.matches("carries credentials; S3 does not use them")
            .count(),
        1,
        "the ignored userinfo is said once"
    );
    let rest: String = text
        .lines()
        .filter(|l| {
            !l.contains(" aws_smithy_runtime::client::orchestrator") && !l.contains(" aws_sigv4::")
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_clean("logs at TRACE but the SDK orchestrator's", &rest);
}

#[test]
fn a_config_file_with_secrets_readable_by_others_still_loads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"storageConfig": {"storage_type": "s3", "aws_access_key_id": "AKIAEXAMPLE",
            "aws_secret_access_key": "shh"}}"#,
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = StorageConfig::from_file(&path).unwrap();
    assert_eq!(cfg.storage_type, StorageType::S3);
    // The warning itself is asserted on stderr by the CLI test
    // man_page_profiles_and_config_permissions; here: the file still loads.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(StorageConfig::from_file(&path).is_ok());
}
