//! Contract cases of presigned POST (browser form uploads, issue 17): the form is
//! sent by `curl -F`, as a browser would send it. Which engine enforces what:
//! SeaweedFS checks the signature, the expiry and every condition; moto stores
//! whatever is posted (it checks nothing, so there only the happy path is real).

use std::time::Duration;

use stor::{ErrorKind, PostKey, PresignPostOptions, PresignedPost};

use crate::common::{Fixture, Kind};

/// Posts `file` (named `name`) with the form's fields, `key` overriding its key
/// field when given; returns the HTTP status and body.
fn post(form: &PresignedPost, key: Option<&str>, name: &str, file: &[u8]) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, file).unwrap();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}"]);
    for (k, v) in &form.fields {
        let v = match (k.as_str(), key) {
            ("key", Some(k)) => k,
            _ => v.as_str(),
        };
        // --form-string: the value as it is (no @file or <file reading).
        cmd.arg("--form-string").arg(format!("{k}={v}"));
    }
    cmd.arg("-F").arg(format!("file=@{}", path.display()));
    cmd.arg(&form.url);
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A form signed for a prefix, a size limit and a Content-Type uploads a file
/// under the prefix (its name from the browser); the store refuses a file over
/// the limit, a key outside the prefix, a tampered signature and an expired
/// policy — and stores none of them.
pub async fn presigned_post_uploads_only_what_its_policy_allows(f: Fixture) {
    let s = &f.storage;
    let b = f.bucket.as_str();
    let prefix = f.key("inbox/");
    let opts = || {
        PresignPostOptions::new(Duration::from_secs(600))
            .max_size(100)
            .content_type("text/plain")
            .metadata("origin", "browser")
    };
    if !s.capabilities().presign_post {
        let e = s
            .presign_post(b, PostKey::StartsWith(prefix), opts())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        return;
    }
    let form = s
        .presign_post(b, PostKey::StartsWith(prefix.clone()), opts())
        .await
        .unwrap();
    assert_eq!(form.fields["key"], format!("{prefix}${{filename}}"));
    assert_eq!(form.fields["Content-Type"], "text/plain");
    let (status, body) = post(&form, None, "note.txt", b"hello from a form");
    assert!((200..300).contains(&status), "{status} {body}");
    let key = format!("{prefix}note.txt");
    let got = s.download_bytes(b, &key).await.unwrap();
    assert_eq!(got.data.as_ref(), b"hello from a form");
    assert_eq!(got.info.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        got.info.metadata.get("origin").map(String::as_str),
        Some("browser")
    );
    // An exact key.
    let exact = f.key("exact.txt");
    let one = s
        .presign_post(b, PostKey::Exact(exact.clone()), opts())
        .await
        .unwrap();
    let (status, body) = post(&one, None, "whatever.txt", b"exact");
    assert!((200..300).contains(&status), "{status} {body}");
    assert_eq!(
        s.download_bytes(b, &exact).await.unwrap().data.as_ref(),
        b"exact"
    );

    let outside = f.key("elsewhere/x.txt");
    let mut tampered = form.clone();
    let sig = tampered.fields.get_mut("x-amz-signature").unwrap();
    *sig = sig.chars().rev().collect();
    let short = s
        .presign_post(
            b,
            PostKey::StartsWith(prefix.clone()),
            PresignPostOptions::new(Duration::from_secs(1)).max_size(100),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let violations = [
        (
            "over the size limit",
            post(&form, None, "big.txt", &[b'x'; 101]),
            format!("{prefix}big.txt"),
        ),
        (
            "outside the prefix",
            post(&form, Some(&outside), "x.txt", b"x"),
            outside.clone(),
        ),
        (
            "tampered signature",
            post(&tampered, None, "t.txt", b"x"),
            format!("{prefix}t.txt"),
        ),
        (
            "expired",
            post(&short, None, "late.txt", b"x"),
            format!("{prefix}late.txt"),
        ),
    ];
    for (what, (status, body), key) in violations {
        match f.kind {
            Kind::SeaweedFs => {
                assert!(matches!(status, 400 | 403), "{what}: {status} {body}");
                assert!(!s.exists(b, &key).await.unwrap(), "{what}: stored anyway");
            }
            // moto enforces no POST policy: pinned so the README's table stays true.
            _ => assert!(
                (200..300).contains(&status),
                "{what}: moto refused: {status} {body}"
            ),
        }
    }
}
