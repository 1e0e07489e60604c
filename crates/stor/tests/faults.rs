//! The fault suite: stor against SeaweedFS through the scripted fault proxy
//! (`common/proxy.rs`). Each test injects one kind of fault and checks what the
//! issue promises: only the failed part is retried, downloads resume, storms fail
//! fast, errors are typed, nothing partial is left behind.
//!
//! Run: `scripts/with-servers.sh cargo test -p stor --test faults`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::{Fault, FaultProxy, Rule};
use common::{payload, unique};
use futures::TryStreamExt;
use stor::{
    CopyOptions, DownloadOptions, ErrorKind, Progress, Storage, StorageConfig, UploadOptions,
};

const MIB: usize = 1024 * 1024;

struct Rig {
    proxy: FaultProxy,
    /// Through the proxy.
    s: Storage,
    /// Straight to the server, to set up and check.
    direct: Storage,
    bucket: String,
}

/// A store behind a fresh proxy, with 5 MiB parts so multipart shows at test sizes.
async fn rig(tweak: impl FnOnce(&mut StorageConfig)) -> Option<Rig> {
    let upstream = common::endpoint(common::Kind::SeaweedFs)?;
    Some(rig_on(&upstream, tweak).await)
}

/// The rig in front of the SeaweedFS at `upstream`.
async fn rig_on(upstream: &str, tweak: impl FnOnce(&mut StorageConfig)) -> Rig {
    let proxy = FaultProxy::start(upstream).await;
    let mut cfg = common::s3_config(&proxy.url);
    cfg.multipart_threshold = 5 * MIB as u64;
    cfg.part_size = Some(5 * MIB as u64);
    cfg.max_concurrency = 2;
    tweak(&mut cfg);
    let s = Storage::new(cfg).await.unwrap();
    let direct = Storage::new(common::s3_config(upstream)).await.unwrap();
    let bucket = unique("stor-faults");
    until_ready(&direct, &bucket).await;
    Rig {
        proxy,
        s,
        direct,
        bucket,
    }
}

/// Records every progress report.
fn recorder() -> (Progress, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    (
        Progress::new(move |done, _| rec.lock().unwrap().push(done)),
        seen,
    )
}

async fn pending_uploads(r: &Rig) -> usize {
    r.direct
        .list_uploads(r.bucket.as_str(), "")
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_part_retries_only_that_part() {
    let Some(r) = rig(|_| {}).await else { return };
    let data = payload(12 * MIB, 1);
    r.proxy.add(Rule::new(
        "PUT",
        "partNumber=2&",
        Fault::ResetRequestAfter(MIB),
    ));
    let (progress, seen) = recorder();
    let res =
        r.s.upload_bytes(
            r.bucket.as_str(),
            "big.bin",
            data.clone(),
            UploadOptions::default().progress(progress),
        )
        .await
        .unwrap();
    assert!(res.multipart);
    assert_eq!(res.attempts, 2, "part 2 took two attempts");
    assert_eq!(r.proxy.count("PUT", "partNumber=1&"), 1);
    assert_eq!(r.proxy.count("PUT", "partNumber=2&"), 2);
    assert_eq!(r.proxy.count("PUT", "partNumber=3&"), 1);
    assert_eq!(r.proxy.faults(), 1);
    // Progress counted the retried part once.
    assert_eq!(
        seen.lock().unwrap().last().copied(),
        Some(data.len() as u64)
    );
    let back = r
        .direct
        .download_bytes(r.bucket.as_str(), "big.bin")
        .await
        .unwrap();
    assert!(
        back.data.as_ref() == data.as_slice(),
        "final object correct"
    );
    assert_eq!(r.s.metrics().retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_download_resumes_with_a_range() {
    let Some(r) = rig(|_| {}).await else { return };
    let data = payload(12 * MIB + 11, 2);
    r.direct
        .upload_bytes(
            r.bucket.as_str(),
            "dl.bin",
            data.clone(),
            UploadOptions::default(),
        )
        .await
        .unwrap();
    // The first GET (the first 5 MiB range) breaks after 2 MiB of its response.
    r.proxy.add(Rule::new(
        "GET",
        "/dl.bin",
        Fault::ResetResponseAfter(2 * MIB),
    ));
    let (progress, seen) = recorder();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dl.bin");
    let opts = DownloadOptions {
        progress: Some(progress),
        ..Default::default()
    };
    let res =
        r.s.download_file_with(r.bucket.as_str(), "dl.bin", &out, opts)
            .await
            .unwrap();
    assert!(std::fs::read(&out).unwrap() == data, "file correct");
    assert!(res.checksum.is_some(), "and verified");
    // 3 ranges + 1 resume of the broken one.
    assert_eq!(r.proxy.count("GET", "/dl.bin"), 4);
    let seen = seen.lock().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back"
    );
    assert_eq!(*seen.last().unwrap(), data.len() as u64, "nor counts twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowdown_storm_is_bounded_and_fails_fast() {
    let Some(r) = rig(|c| c.max_retries = 3).await else {
        return;
    };
    r.proxy
        .add(Rule::new("PUT", "/storm", Fault::Error(503, "SlowDown")).times(100_000));
    // One call: exactly max_retries attempts, then a typed throttling error.
    let e =
        r.s.upload_bytes(r.bucket.as_str(), "storm-0", "x", UploadOptions::default())
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Throttled, "{e}");
    assert_eq!(e.attempts(), 3);
    assert_eq!(r.proxy.count("PUT", "/storm-0"), 3);
    assert!(e.to_string().contains("SlowDown"), "{e}");
    // Many calls: the client-wide retry budget (500 tokens, 5 per retry) runs dry,
    // so the storm costs far fewer than calls × attempts requests.
    let calls = 150;
    let results = futures::future::join_all((1..=calls).map(|i| {
        let s = r.s.clone();
        let b = r.bucket.clone();
        async move {
            s.upload_bytes(
                b.as_str(),
                &format!("storm-{i}"),
                "x",
                UploadOptions::default(),
            )
            .await
        }
    }))
    .await;
    assert!(results
        .iter()
        .all(|x| matches!(x, Err(e) if e.kind() == ErrorKind::Throttled)));
    let sent = r.proxy.count("PUT", "/storm-") - 3;
    assert!(
        sent <= calls + 100 - 2,
        "{sent} requests for {calls} calls: the budget did not stop the storm"
    );
    let budget_stopped = results
        .iter()
        .filter(|x| matches!(x, Err(e) if e.attempts() == 1))
        .count();
    assert!(budget_stopped > 0, "some calls failed at once");
    assert!(r.s.metrics().throttled >= calls as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_succeed() {
    let Some(r) = rig(|c| c.max_retries = 3).await else {
        return;
    };
    r.proxy
        .add(Rule::new("PUT", "/flaky", Fault::Error(500, "InternalError")).times(2));
    let res =
        r.s.upload_bytes(
            r.bucket.as_str(),
            "flaky",
            "payload",
            UploadOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(res.attempts, 3);
    assert_eq!(r.proxy.count("PUT", "/flaky"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_error_page_is_retried_and_reported_readably() {
    let Some(r) = rig(|c| c.max_retries = 2).await else {
        return;
    };
    let page = "<html><head><title>x</title></head><body><h1>502 Bad Gateway</h1>\
                <p>upstream  went away</p></body></html>";
    r.proxy
        .add(Rule::new("GET", "/lb", Fault::Html(502, page)).times(10));
    let e =
        r.s.download_bytes(r.bucket.as_str(), "lb")
            .await
            .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.attempts(), 2, "{e}");
    assert!(
        e.to_string().contains("502 Bad Gateway upstream went away"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_tried_exactly_once() {
    let Some(r) = rig(|c| c.max_retries = 5).await else {
        return;
    };
    for (status, code, kind) in [
        (403, "AccessDenied", ErrorKind::AccessDenied),
        (404, "NoSuchKey", ErrorKind::KeyNotFound),
        (400, "InvalidArgument", ErrorKind::InvalidInput),
        (403, "SignatureDoesNotMatch", ErrorKind::AccessDenied),
    ] {
        let key = format!("c4xx-{code}");
        r.proxy
            .add(Rule::new("GET", format!("/{key}"), Fault::Error(status, code)).times(10));
        let e =
            r.s.download_bytes(r.bucket.as_str(), &key)
                .await
                .unwrap_err();
        assert_eq!(e.kind(), kind, "{code}: {e}");
        assert_eq!(e.attempts(), 1, "{code}");
        assert_eq!(r.proxy.count("GET", &format!("/{key}")), 1, "{code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_with_error_body_is_never_success() {
    let Some(r) = rig(|c| c.max_retries = 2).await else {
        return;
    };
    let b = r.bucket.as_str();
    let data = payload(11 * MIB, 3);
    // Complete answers 200 + <Error> every time: the upload fails, is aborted, and
    // no object appears.
    r.proxy.add(
        Rule::new(
            "POST",
            "/mpu-bad?uploadId=",
            Fault::OkWithError("InternalError"),
        )
        .times(10),
    );
    let e =
        r.s.upload_bytes(b, "mpu-bad", data.clone(), UploadOptions::default())
            .await
            .unwrap_err();
    assert!(e.is_retryable() || e.kind() == ErrorKind::Other, "{e}");
    assert_eq!(
        r.proxy.count("POST", "/mpu-bad?uploadId="),
        2,
        "retried, bounded"
    );
    assert!(!r.direct.exists(b, "mpu-bad").await.unwrap());
    assert_eq!(pending_uploads(&r).await, 0, "aborted");
    // Once: the retry completes it.
    r.proxy.add(Rule::new(
        "POST",
        "/mpu-once?uploadId=",
        Fault::OkWithError("InternalError"),
    ));
    r.s.upload_bytes(b, "mpu-once", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        r.direct.info(b, "mpu-once").await.unwrap().size,
        data.len() as u64
    );
    // A copy answered 200 + <Error> is not a copy.
    r.direct
        .upload_bytes(b, "copy-src", "abc", UploadOptions::default())
        .await
        .unwrap();
    r.proxy
        .add(Rule::new("PUT", "/copy-dst", Fault::OkWithError("InternalError")).times(10));
    let e =
        r.s.copy_object(b, "copy-src", b, "copy-dst", CopyOptions::default())
            .await
            .unwrap_err();
    assert!(e.is_retryable() || e.kind() == ErrorKind::Other, "{e}");
    assert!(!r.direct.exists(b, "copy-dst").await.unwrap());
    // And UploadPartCopy (a copy over the threshold).
    r.direct
        .upload_bytes(b, "big-src", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    r.proxy.add(
        Rule::new(
            "PUT",
            "/big-dst partNumber=2&",
            Fault::OkWithError("InternalError"),
        )
        .times(10),
    );
    let e =
        r.s.copy_object(b, "big-src", b, "big-dst", CopyOptions::default())
            .await
            .unwrap_err();
    assert!(e.is_retryable() || e.kind() == ErrorKind::Other, "{e}");
    assert!(!r.direct.exists(b, "big-dst").await.unwrap());
    assert_eq!(pending_uploads(&r).await, 0, "aborted");
}

/// A failed multipart upload's abort that meets server errors is retried until it
/// lands: an abort given up at the first 500 would leave the upload (and its
/// parts' storage) behind. Its retries are its own, even with `max_retries = 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_meeting_server_errors_is_retried_until_no_upload_is_left() {
    let Some(r) = rig(|c| c.max_retries = 1).await else {
        return;
    };
    let b = r.bucket.as_str();
    let data = payload(11 * MIB, 6);
    // The completion fails for good; then the abort gets a 500, a 503 and a
    // proxy's 502 page, none of them forwarded.
    r.proxy.add(
        Rule::new(
            "POST",
            "/abort-me?uploadId=",
            Fault::Error(400, "InvalidPart"),
        )
        .times(10),
    );
    r.proxy.add(Rule::new(
        "DELETE",
        "/abort-me uploadId=",
        Fault::Error(500, "InternalError"),
    ));
    r.proxy.add(Rule::new(
        "DELETE",
        "/abort-me uploadId=",
        Fault::Error(503, "SlowDown"),
    ));
    r.proxy.add(Rule::new(
        "DELETE",
        "/abort-me uploadId=",
        Fault::Html(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    ));
    let e =
        r.s.upload_bytes(b, "abort-me", data, UploadOptions::default())
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("InvalidPart"), "{e}");
    assert_eq!(
        r.proxy.count("DELETE", "/abort-me uploadId="),
        4,
        "three failed aborts, then the one that landed"
    );
    assert!(!r.direct.exists(b, "abort-me").await.unwrap());
    assert_eq!(pending_uploads(&r).await, 0, "no upload left behind");
}

/// The other ranges of a large download start once the first response's headers
/// are in, not after its whole body: the proxy holds the first body after 1 MiB
/// until it has seen the other two GETs (12 MiB in 5 MiB parts), and lets go
/// after 10 s if they never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_start_while_the_first_body_is_still_arriving() {
    let Some(r) = rig(|c| c.max_concurrency = 4).await else {
        return;
    };
    let b = r.bucket.as_str();
    let data = payload(12 * MIB, 8);
    r.direct
        .upload_bytes(b, "held.bin", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    r.proxy.add(Rule::new(
        "GET",
        "/held.bin",
        Fault::HoldBody {
            after: MIB,
            until_seen: 3,
        },
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("held.bin");
    r.s.download_file(b, "held.bin", &out).await.unwrap();
    assert!(std::fs::read(&out).unwrap() == data);
    assert_eq!(r.proxy.count("GET", "/held.bin"), 3);
    assert_eq!(
        r.proxy.seen_at_release(),
        3,
        "both other ranges were asked for while the first was held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_out_with_a_typed_error() {
    let Some(r) = rig(|c| {
        c.read_timeout = 1;
        c.max_retries = 2;
    })
    .await
    else {
        return;
    };
    r.direct
        .upload_bytes(r.bucket.as_str(), "slow", "abc", UploadOptions::default())
        .await
        .unwrap();
    r.proxy
        .add(Rule::new("GET", "/slow", Fault::Stall(Duration::from_secs(30))).times(10));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("slow");
    let e =
        r.s.download_file(r.bucket.as_str(), "slow", &out)
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.attempts(), 2, "{e}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temp file"
    );
    // A slow but live server is waited for.
    r.proxy.add(Rule::new(
        "GET",
        "/slow",
        Fault::Delay(Duration::from_millis(300)),
    ));
    r.proxy.clear();
    r.proxy.add(Rule::new(
        "GET",
        "/slow",
        Fault::Delay(Duration::from_millis(300)),
    ));
    let got = r.s.download_bytes(r.bucket.as_str(), "slow").await.unwrap();
    assert_eq!(got.data.as_ref(), b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_byte_in_transit_is_an_integrity_error_and_no_file() {
    let Some(r) = rig(|_| {}).await else { return };
    let b = r.bucket.as_str();
    for (key, len) in [("small.bin", 5000), ("ranged.bin", 12 * MIB)] {
        let data = payload(len, 4);
        r.direct
            .upload_bytes(b, key, data.clone(), UploadOptions::default())
            .await
            .unwrap();
        r.proxy.add(Rule::new(
            "GET",
            format!("/{key}"),
            Fault::CorruptBody(len / 3),
        ));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(key);
        let e = r.s.download_file(b, key, &out).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{key}: {e}");
        assert!(!out.exists(), "{key}: no destination file");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{key}");
        // The same bytes uncorrupted come down fine.
        r.s.download_file(b, key, &out).await.unwrap();
        assert!(std::fs::read(&out).unwrap() == data);
    }
}

/// The same for objects whose only checksum is the one the server keeps (streams
/// uploaded in parts): with native checksums on, a flipped byte in the first range
/// (checksummed before the algorithm is known), in a whole small object, or in a
/// whole-object stream is an integrity error, and no file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_byte_fails_against_the_native_checksum_too() {
    let Some(r) = rig(|c| {
        c.native_checksums = Some(true);
        c.part_size = Some(8 * MIB as u64); // 6 MiB comes in one GET, 12 MiB in two
    })
    .await
    else {
        return;
    };
    let b = r.bucket.as_str();
    let writer = Storage::new({
        let mut c = common::s3_config(&common::endpoint(common::Kind::SeaweedFs).unwrap());
        c.multipart_threshold = 5 * MIB as u64;
        c.part_size = Some(5 * MIB as u64);
        c.native_checksums = Some(true);
        c.checksum = stor::ChecksumAlgorithm::Crc32c;
        c
    })
    .await
    .unwrap();
    for (key, len) in [("n-small.bin", 6 * MIB), ("n-ranged.bin", 12 * MIB)] {
        let data = payload(len, 9);
        writer
            .upload_reader(
                b,
                key,
                std::io::Cursor::new(data.clone()),
                UploadOptions::default(),
            )
            .await
            .unwrap();
        let info = r.direct.info(b, key).await.unwrap();
        assert!(info.checksum.is_none(), "{key}");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(key);
        r.proxy.add(Rule::new(
            "GET",
            format!("/{key}"),
            Fault::CorruptBody(len / 3),
        ));
        let e = r.s.download_file(b, key, &out).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{key}: {e}");
        assert!(
            e.to_string().contains("CRC32C"),
            "{key}: names the algorithm: {e}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{key}");
        r.proxy.add(Rule::new(
            "GET",
            format!("/{key}"),
            Fault::CorruptBody(len / 3),
        ));
        let stream =
            r.s.download_stream(b, key, stor::DownloadOptions::default())
                .await
                .unwrap();
        let e = stream.collect().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{key} stream: {e}");
        // Uncorrupted, the same downloads verify.
        let got = r.s.download_file(b, key, &out).await.unwrap();
        assert!(
            got.checksum.as_deref().unwrap_or("").starts_with("crc32c:"),
            "{got:?}"
        );
        assert!(std::fs::read(&out).unwrap() == data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_mid_multipart_leaves_an_upload_that_cleanup_aborts() {
    let Some(r) = rig(|c| {
        c.max_concurrency = 1;
        c.max_retries = 2;
        c.connect_timeout = 1;
    })
    .await
    else {
        return;
    };
    let b = r.bucket.as_str();
    let data = payload(15 * MIB, 5);
    // After the first part is stored the server goes away (every connection reset),
    // so the parts and the abort fail.
    let down = Arc::new(AtomicBool::new(false));
    let (d2, proxy_state) = (down.clone(), &r.proxy);
    let went_down = std::sync::atomic::AtomicBool::new(false);
    let progress = {
        let d2 = d2.clone();
        Progress::new(move |done, _| {
            if done > 0 {
                d2.store(true, Ordering::SeqCst);
            }
        })
    };
    let upload = r.s.upload_bytes(
        b,
        "gone.bin",
        data.clone(),
        UploadOptions::default().progress(progress),
    );
    let watcher = async {
        while !down.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proxy_state.set_down(true);
        went_down.store(true, Ordering::SeqCst);
    };
    let (res, ()) = tokio::join!(upload, watcher);
    assert!(went_down.load(Ordering::SeqCst));
    let e = res.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    // The server is back: no object appeared; the upload left behind is found and
    // aborted by the cleanup.
    r.proxy.set_down(false);
    assert!(!r.direct.exists(b, "gone.bin").await.unwrap());
    let left = pending_uploads(&r).await;
    assert_eq!(left, 1, "the abort could not reach the server");
    let aborted =
        r.s.abort_stale_uploads(b, "", Duration::ZERO)
            .await
            .unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(aborted[0].key, "gone.bin");
    assert_eq!(pending_uploads(&r).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_aborts_and_returns_promptly() {
    let Some(r) = rig(|_| {}).await else { return };
    let b = r.bucket.as_str();
    r.proxy.add(Rule::new(
        "PUT",
        "/cancel.bin partNumber=2&",
        Fault::Delay(Duration::from_secs(20)),
    ));
    let data = payload(12 * MIB, 6);
    let fut =
        r.s.upload_bytes(b, "cancel.bin", data, UploadOptions::default());
    let res = tokio::time::timeout(Duration::from_millis(1500), fut).await;
    assert!(res.is_err(), "still running when cancelled");
    assert!(stor::transfer::wait_for_pending_aborts(Duration::from_secs(10)).await);
    assert_eq!(
        r.proxy.count("DELETE", "/cancel.bin uploadId="),
        1,
        "abort sent"
    );
    assert_eq!(pending_uploads(&r).await, 0);
    assert!(!r.direct.exists(b, "cancel.bin").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_keeps_its_source() {
    let Some(r) = rig(|c| c.max_retries = 2).await else {
        return;
    };
    let b = r.bucket.as_str();
    r.direct
        .upload_bytes(b, "mv-src", "precious", UploadOptions::default())
        .await
        .unwrap();
    // The copy fails.
    r.proxy
        .add(Rule::new("PUT", "/mv-dst", Fault::Error(500, "InternalError")).times(10));
    let e =
        r.s.move_object(b, "mv-src", b, "mv-dst", CopyOptions::default())
            .await
            .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(r.direct.exists(b, "mv-src").await.unwrap(), "source kept");
    // The copy answers 200 + <Error>.
    r.proxy.clear();
    r.proxy
        .add(Rule::new("PUT", "/mv-dst", Fault::OkWithError("InternalError")).times(10));
    r.s.move_object(b, "mv-src", b, "mv-dst", CopyOptions::default())
        .await
        .unwrap_err();
    assert!(r.direct.exists(b, "mv-src").await.unwrap(), "source kept");
    // The delete of the source fails: the copy exists and so does the source.
    r.proxy.clear();
    r.proxy
        .add(Rule::new("DELETE", "/mv-src", Fault::Error(403, "AccessDenied")).times(10));
    let e =
        r.s.move_object(b, "mv-src", b, "mv-dst", CopyOptions::default())
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(r.direct.exists(b, "mv-src").await.unwrap(), "source kept");
    let got = r.direct.download_bytes(b, "mv-dst").await.unwrap();
    assert_eq!(got.data.as_ref(), b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_never_exceed_the_pool() {
    let Some(upstream) = common::endpoint(common::Kind::SeaweedFs) else {
        return;
    };
    for (pool, transfers) in [(4usize, 8usize), (8, 16), (8, 64)] {
        // Two views of the same mixed load: the fault proxy (one request per
        // connection) counts requests in flight; a plain tunnel (keep-alive passes
        // through) counts the TCP connections the client holds open.
        let proxy = FaultProxy::start(&upstream).await;
        let tunnel = FaultProxy::tunnel(&upstream).await;
        let mut peaks = Vec::new();
        for url in [&proxy.url, &tunnel.url] {
            let mut cfg = common::s3_config(url);
            cfg.multipart_threshold = 5 * MIB as u64;
            cfg.part_size = Some(5 * MIB as u64);
            cfg.max_concurrency = 4;
            cfg.max_pool_connections = pool;
            let s = Storage::new(cfg).await.unwrap();
            let b = unique("stor-pool");
            s.create_bucket(&b).await.unwrap();
            let data = payload(6 * MIB, 7);
            let jobs = (0..transfers).map(|i| {
                let (s, b, data) = (s.clone(), b.clone(), data.clone());
                async move {
                    let key = format!("conc-{i}");
                    if i % 4 == 0 {
                        s.upload_bytes(b.as_str(), &key, data, UploadOptions::default())
                            .await
                            .unwrap();
                        s.download_bytes(b.as_str(), &key).await.unwrap();
                    } else {
                        let small = vec![i as u8; 1000];
                        s.upload_bytes(b.as_str(), &key, small, UploadOptions::default())
                            .await
                            .unwrap();
                        s.info(b.as_str(), &key).await.unwrap();
                        s.list(b.as_str(), stor::ListOptions::default())
                            .await
                            .unwrap();
                    }
                }
            });
            futures::future::join_all(jobs).await;
        }
        peaks.push(proxy.peak_requests());
        peaks.push(tunnel.peak_connections());
        eprintln!(
            "pool {pool}, {transfers} transfers: peak {} requests in flight, {} TCP \
             connections ({} opened)",
            peaks[0],
            peaks[1],
            tunnel.accepted()
        );
        assert!(
            peaks[0] <= pool,
            "pool {pool}, {transfers} transfers: {} requests in flight at once",
            peaks[0]
        );
        assert!(
            peaks[0] >= pool.min(4),
            "the load did fill the pool: {peaks:?}"
        );
        // Sockets being established, idle and busy all count against the pool.
        assert!(
            peaks[1] <= pool,
            "pool {pool}, {transfers} transfers: {} TCP connections",
            peaks[1]
        );
    }
}

// ------------------------------------------------------------------ mixed load

/// A self-checking payload: a header naming the key it was first written as and
/// its version, then bytes derived from both, so any torn or mixed object shows.
fn body_of(origin: &str, version: u64, len: usize) -> Vec<u8> {
    let mut out = format!("{origin}|{version}|{len}|").into_bytes();
    let mut x = version.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ origin.len() as u64 | 1;
    while out.len() < len.max(out.len()) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x >> 24) as u8);
    }
    out
}

/// Checks a payload is whole and returns (origin, version).
fn parse_body(data: &[u8]) -> (String, u64) {
    let text = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    let mut parts = text.splitn(4, '|');
    let origin = parts.next().unwrap().to_owned();
    let version: u64 = parts.next().unwrap().parse().unwrap();
    let len: usize = parts.next().unwrap().parse().unwrap();
    assert!(
        data == body_of(&origin, version, len).as_slice(),
        "mixed or torn object"
    );
    (origin, version)
}

type State = Option<(String, u64)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_with_faults_loses_nothing() {
    if common::endpoint(common::Kind::SeaweedFs).is_none() {
        return;
    }
    // A private SeaweedFS, so the restart mid-run can be a real one.
    let Some(mut weed) = Weed::start() else {
        panic!("STOR_TEST_VENV (set by scripts/with-servers.sh) names the venv with weed");
    };
    let r = rig_on(&weed.url(), |c| {
        c.max_retries = 4;
        c.max_concurrency = 2;
        c.connect_timeout = 1;
    })
    .await;
    // Faults sprinkled over the run: resets mid-request and mid-response, 503s, 500s.
    r.proxy
        .add(Rule::new("PUT", "/w", Fault::ResetRequestAfter(700)).times(25));
    r.proxy
        .add(Rule::new("GET", "/w", Fault::ResetResponseAfter(300)).times(25));
    r.proxy
        .add(Rule::new("GET", "/w", Fault::Error(503, "SlowDown")).times(25));
    r.proxy
        .add(Rule::new("DELETE", "/w", Fault::Error(500, "InternalError")).times(15));
    r.proxy
        .add(Rule::new("HEAD", "/w", Fault::Error(503, "SlowDown")).times(15));
    let b = r.bucket.clone();
    let ops_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(false));
    let workers = (0..4u64).map(|w| {
        let (s, b, ops_done, down) = (r.s.clone(), b.clone(), ops_done.clone(), down.clone());
        async move {
            // What each key may hold: every state some acknowledged or
            // unacknowledged operation could have left.
            let mut model: BTreeMap<String, Vec<State>> = BTreeMap::new();
            let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (w + 1).wrapping_mul(0x9E37_79B9);
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut uploaded = 0u64;
            for op in 0..200u64 {
                // Operations in flight at the kill meet it; new ones wait for the
                // server to serve again, so the second half of the run is not spent
                // on a server still loading its volumes.
                while down.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ops_done.fetch_add(1, Ordering::SeqCst);
                let key = format!("w{w}/k{}", next() % 12);
                let other = format!("w{w}/k{}", next() % 12);
                let known = model
                    .entry(key.clone())
                    .or_insert_with(|| vec![None])
                    .clone();
                match next() % 10 {
                    0..=3 => {
                        let len = if next() % 25 == 0 {
                            6 * MIB
                        } else {
                            1 + (next() % 65536) as usize
                        };
                        let version = w * 1000 + op;
                        let res = s
                            .upload_bytes(
                                b.as_str(),
                                &key,
                                body_of(&key, version, len),
                                UploadOptions::default(),
                            )
                            .await;
                        let new = Some((key.clone(), version));
                        match res {
                            Ok(t) => {
                                uploaded += t.bytes;
                                model.insert(key, vec![new]);
                            }
                            Err(_) => model.get_mut(&key).unwrap().push(new),
                        }
                    }
                    4..=5 => {
                        if let Ok(d) = s.download_bytes(b.as_str(), &key).await {
                            let got = Some(parse_body(&d.data));
                            assert!(
                                known.contains(&got),
                                "{key}: read {got:?}, expected one of {known:?}"
                            );
                        }
                    }
                    6 => {
                        let _ = s
                            .list(
                                b.as_str(),
                                stor::ListOptions::default().prefix(format!("w{w}/")),
                            )
                            .await;
                    }
                    7 => {
                        if key == other {
                            continue;
                        }
                        let src = known.clone();
                        let res = s
                            .copy_object(
                                b.as_str(),
                                &key,
                                b.as_str(),
                                &other,
                                CopyOptions::default(),
                            )
                            .await;
                        let dst = model.entry(other.clone()).or_insert_with(|| vec![None]);
                        match res {
                            Ok(_) => *dst = src.into_iter().filter(|x| x.is_some()).collect(),
                            Err(_) => dst.extend(src.into_iter().filter(|x| x.is_some())),
                        }
                    }
                    8 => {
                        if key == other {
                            continue;
                        }
                        let src = known.clone();
                        let res = s
                            .move_object(
                                b.as_str(),
                                &key,
                                b.as_str(),
                                &other,
                                CopyOptions::default(),
                            )
                            .await;
                        match res {
                            Ok(_) => {
                                model.insert(
                                    other.clone(),
                                    src.into_iter().filter(|x| x.is_some()).collect(),
                                );
                                model.insert(key.clone(), vec![None]);
                            }
                            Err(_) => {
                                // The copy may have landed; the source may only be
                                // gone if its delete reached the server.
                                let srcs: Vec<State> =
                                    src.iter().filter(|x| x.is_some()).cloned().collect();
                                model
                                    .entry(other.clone())
                                    .or_insert_with(|| vec![None])
                                    .extend(srcs);
                                model.get_mut(&key).unwrap().push(None);
                            }
                        }
                    }
                    _ => match s.delete(b.as_str(), &key).await {
                        Ok(()) => {
                            model.insert(key, vec![None]);
                        }
                        Err(_) => model.get_mut(&key).unwrap().push(None),
                    },
                }
            }
            (model, uploaded)
        }
    });
    // One server restart mid-run, a real one: SeaweedFS SIGKILLed (whatever it
    // was doing) and started again on its data; the run goes on meanwhile.
    let restart = async {
        while ops_done.load(Ordering::SeqCst) < 400 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        down.store(true, Ordering::SeqCst);
        weed.restart();
        until_serving(&r.direct, &r.bucket).await;
        down.store(false, Ordering::SeqCst);
        restarted.store(true, Ordering::SeqCst);
    };
    let (results, ()) = tokio::join!(futures::future::join_all(workers), restart);
    assert!(restarted.load(Ordering::SeqCst));
    let faults = r.proxy.faults();

    // The checker, straight to the server.
    let mut objects = 0;
    for (model, _) in &results {
        for (key, states) in model {
            let mut tries = 0;
            let actual = loop {
                match r.direct.download_bytes(b.as_str(), key).await {
                    Ok(d) => break Some(parse_body(&d.data)),
                    Err(e) if e.kind() == ErrorKind::KeyNotFound => break None,
                    // A restarted SeaweedFS may still be loading its volumes.
                    Err(e) if e.is_retryable() && tries < 60 => {
                        eprintln!("{key}: {e}; again in 0.5 s");
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => panic!("{key}: {e}"),
                }
            };
            assert!(
                states.contains(&actual),
                "{key}: holds {actual:?}, possible {states:?}"
            );
            objects += actual.is_some() as usize;
        }
    }
    let listed: Vec<_> = r
        .direct
        .list_stream(b.as_str(), stor::ListOptions::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), objects, "no object the model does not know");
    // Multipart uploads left by aborts the dead server could not take are found
    // and aborted by the cleanup; none may remain.
    let orphans = pending_uploads(&r).await;
    r.s.abort_stale_uploads(b.as_str(), "", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(pending_uploads(&r).await, 0);
    // Metrics add up, and bytes count once however many retries.
    let m = r.s.metrics();
    let uploaded: u64 = results.iter().map(|(_, u)| u).sum();
    assert_eq!(m.operations, m.successes + m.failures);
    assert_eq!(m.bytes_uploaded, uploaded);
    eprintln!(
        "mixed run: 800 operations, {} faults injected and a restart, {} retries, {} failures, \
         {objects} objects checked whole, {orphans} orphaned uploads cleaned",
        faults, m.retries, m.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_while_idle_are_not_reused() {
    let Some(upstream) = common::endpoint(common::Kind::SeaweedFs) else {
        return;
    };
    // The "server" drops connections idle for 300 ms; no retries, so a request
    // sent on a dead pooled connection would fail the call.
    let tunnel = FaultProxy::tunnel_closing_idle(&upstream, Duration::from_millis(300)).await;
    let mut cfg = common::s3_config(&tunnel.url);
    cfg.max_retries = 1;
    let s = Storage::new(cfg).await.unwrap();
    let b = unique("stor-idle");
    s.create_bucket(&b).await.unwrap();
    for i in 0..5 {
        let r = s
            .upload_bytes(b.as_str(), &format!("k{i}"), "v", UploadOptions::default())
            .await
            .unwrap();
        assert_eq!(r.attempts, 1);
        s.info(b.as_str(), &format!("k{i}")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert!(
        tunnel.accepted() >= 5,
        "the idle connections were closed and replaced"
    );
    assert_eq!(s.metrics().failures, 0);
}

// ------------------------------------------------------------------ a real server kill

/// A private SeaweedFS this test starts, kills and restarts (by its PID, via the
/// child handle); killed on drop whatever happens.
struct Weed {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    ports: [u16; 4],
}

fn port_pair_free(p: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok()
}

impl Weed {
    fn start() -> Option<Weed> {
        let venv = std::env::var("STOR_TEST_VENV").ok()?;
        // Tests in this process start their servers concurrently, and a port is
        // free until weed binds it: ports handed out here are never handed out
        // again, so two private servers never share one.
        static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
        let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        let mut ports = [0u16; 4];
        let mut n = 0;
        let mut x = std::process::id() as u64 * 7919 + 17 + taken.len() as u64;
        while n < 4 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let p = 10000 + (x >> 33) as u16 % 12700;
            let clash = |q: &u16| q.abs_diff(p) == 0 || q.abs_diff(p) == 10000;
            if !ports[..n].iter().any(clash) && !taken.iter().any(clash) && port_pair_free(p) {
                ports[n] = p;
                n += 1;
            }
        }
        taken.extend_from_slice(&ports);
        drop(taken);
        let mut w = Weed {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            ports,
        };
        w.spawn(&format!("{venv}/bin/weed"));
        Some(w)
    }

    fn spawn(&mut self, weed: &str) {
        let [s3, master, volume, filer] = self.ports;
        let child = std::process::Command::new(weed)
            .arg("server")
            .arg(format!("-dir={}", self.dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"])
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-volume.preStopSeconds=0",
                "-master.telemetry=false",
                "-master.volumeSizeLimitMB=64",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// The running server's PID, to SIGKILL it from where a test needs to.
    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL: no chance to finish anything
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let venv = std::env::var("STOR_TEST_VENV").unwrap();
        self.spawn(&format!("{venv}/bin/weed"));
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
        // The unix sockets weed leaves in /tmp, as scripts/with-servers.sh cleans them.
        let [s3, master, volume, filer] = self.ports;
        for name in [
            format!("s3-{s3}"),
            format!("filer-{filer}"),
            format!("s3-grpc-{}", s3 + 10000),
            format!("filer-grpc-{}", filer + 10000),
            format!("master-grpc-{}", master + 10000),
            format!("volume-grpc-{}", volume + 10000),
        ] {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{name}.sock"));
        }
    }
}

async fn until_ready(s: &Storage, bucket: &str) {
    for _ in 0..240 {
        match s.create_bucket(bucket).await {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    panic!("the private SeaweedFS did not come up in 60 s");
}

/// Until the server takes and serves objects again (after a restart SeaweedFS
/// answers before its volumes are back).
async fn until_serving(s: &Storage, bucket: &str) {
    until_ready(s, bucket).await;
    for _ in 0..240 {
        let put = s
            .upload_bytes(bucket, "ready-probe", "ok", UploadOptions::default())
            .await;
        if put.is_ok() && s.download_bytes(bucket, "ready-probe").await.is_ok() {
            s.delete(bucket, "ready-probe").await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the restarted SeaweedFS did not serve objects in 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_multipart_and_restarted_leaves_nothing_after_cleanup() {
    if common::endpoint(common::Kind::SeaweedFs).is_none() {
        return;
    }
    let Some(mut weed) = Weed::start() else {
        panic!("STOR_TEST_VENV (set by scripts/with-servers.sh) names the venv with weed");
    };
    let mut cfg = common::s3_config(&weed.url());
    cfg.multipart_threshold = 5 * MIB as u64;
    cfg.part_size = Some(5 * MIB as u64);
    cfg.max_concurrency = 1;
    cfg.max_retries = 2;
    cfg.connect_timeout = 1;
    cfg.read_timeout = 5;
    // The server stays dead while the upload runs: it waits for it, until its
    // timeout.
    cfg.upload_timeout = 5;
    let s = Storage::new(cfg.clone()).await.unwrap();
    let b = "stor-kill";
    until_ready(&s, b).await;
    let data = payload(20 * MIB, 9);
    let first_part = Arc::new(AtomicBool::new(false));
    let fp = first_part.clone();
    let progress = Progress::new(move |done, _| {
        if done > 0 {
            fp.store(true, Ordering::SeqCst);
        }
    });
    let upload = s.upload_bytes(
        b,
        "killed.bin",
        data,
        UploadOptions::default().progress(progress),
    );
    let killer = async {
        while !first_part.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        weed.kill();
    };
    let (res, ()) = tokio::join!(upload, killer);
    let e = res.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // Why: the endpoint's outage (refused connections; on a loaded machine a
    // connect may hit its 1 s timeout first).
    let text = e.to_string();
    assert!(
        text.contains(&format!("; {} has been unavailable for", weed.url()))
            && (text.contains("(connection refused)") || text.contains("(connect timed out)")),
        "the timeout says why: {e}"
    );
    // Restarted on the same data: no object appeared; the upload the abort could
    // not reach is still there, and the cleanup aborts it.
    weed.restart();
    let s = Storage::new(cfg).await.unwrap();
    until_ready(&s, b).await;
    assert!(
        !s.exists(b, "killed.bin").await.unwrap(),
        "no object appears"
    );
    let left = s.list_uploads(b, "").await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    let aborted = s.abort_stale_uploads(b, "", Duration::ZERO).await.unwrap();
    assert_eq!(aborted.len(), 1);
    assert!(s.list_uploads(b, "").await.unwrap().is_empty());
}

/// The case: SeaweedFS SIGKILLed in the middle of transfers and started
/// again on its data and ports, which takes it 14–22 s here (connection refused
/// all along, then 500 on GETs for a moment). With the default config — only the
/// endpoint and credentials set — every transfer in flight, and every one started
/// during the outage, completes and reads back byte for byte, and no multipart
/// upload is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_ride_out_a_server_restart_with_the_default_config() {
    if common::endpoint(common::Kind::SeaweedFs).is_none() {
        return;
    }
    let Some(mut weed) = Weed::start() else {
        panic!("STOR_TEST_VENV (set by scripts/with-servers.sh) names the venv with weed");
    };
    let cfg = common::s3_config(&weed.url());
    assert_eq!(
        (cfg.max_retries, cfg.upload_timeout, cfg.connect_timeout),
        (3, 300, 10),
        "the defaults"
    );
    let s = Storage::new(cfg.clone()).await.unwrap();
    let b = "stor-restart";
    until_ready(&s, b).await;
    // Above the default multipart threshold (100 MiB): 7 parts of 16 MiB, all in
    // flight at once (max_concurrency 10).
    let dir = tempfile::tempdir().unwrap();
    let up_data = payload(112 * MIB, 21);
    let up_path = dir.path().join("up.bin");
    std::fs::write(&up_path, &up_data).unwrap();
    let down_data = payload(96 * MIB, 22);
    s.upload_bytes(b, "down.bin", down_data.clone(), UploadOptions::default())
        .await
        .unwrap();
    let small: Vec<Vec<u8>> = (0..3)
        .map(|i| payload(100_000 + i, 30 + i as u64))
        .collect();
    for (i, d) in small.iter().enumerate() {
        s.upload_bytes(
            b,
            &format!("small-{i}"),
            d.clone(),
            UploadOptions::default(),
        )
        .await
        .unwrap();
    }

    // The upload starts; once the server has its multipart upload (the parts are
    // then on their way), the download starts; at the download's first bytes the
    // server is SIGKILLed: both are mid-transfer.
    let pid = weed.pid();
    let watcher = Storage::new(cfg.clone()).await.unwrap();
    let created = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    // Upload progress counts bytes as they are read to be sent, so whether the
    // upload was done at the kill is told by its future having returned.
    let up_done = Arc::new(AtomicBool::new(false));
    let at_kill = Arc::new(Mutex::new((true, 0u64)));
    let upload = async {
        let r = s
            .upload_file(b, "up.bin", &up_path, UploadOptions::default())
            .await;
        up_done.store(true, Ordering::SeqCst);
        r
    };
    let down_path = dir.path().join("down.bin");
    let download = async {
        while !created.load(Ordering::SeqCst) {
            let pending = watcher.list_uploads(b, "up.bin").await;
            if pending.is_ok_and(|p| !p.is_empty()) {
                created.store(true, Ordering::SeqCst);
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let (killed, at_kill, up_done) = (killed.clone(), at_kill.clone(), up_done.clone());
        let progress = Progress::new(move |done, _| {
            if !killed.swap(true, Ordering::SeqCst) {
                // SAFETY: a signal to the server this test started, by its PID.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                *at_kill.lock().unwrap() = (up_done.load(Ordering::SeqCst), done);
            }
        });
        s.download_file_with(
            b,
            "down.bin",
            &down_path,
            DownloadOptions {
                progress: Some(progress),
                ..Default::default()
            },
        )
        .await
    };
    // Transfers started while the server is down: they wait for it.
    let during = async {
        while !killed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ups = (0..3).map(|i| {
            let (s, d) = (&s, small[i].clone());
            async move {
                s.upload_bytes(b, &format!("during-{i}"), d, UploadOptions::default())
                    .await
            }
        });
        let downs = (0..3).map(|i| {
            let s = &s;
            async move { s.download_bytes(b, &format!("small-{i}")).await }
        });
        futures::join!(
            futures::future::join_all(ups),
            futures::future::join_all(downs)
        )
    };
    let restart = async {
        while !killed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = std::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        weed.restart();
        t
    };
    let (up, down, (ups, downs), killed_at) = tokio::join!(upload, download, during, restart);
    let took = killed_at.elapsed();
    let (u, d) = *at_kill.lock().unwrap();
    assert!(
        !u && d < down_data.len() as u64,
        "both were mid-transfer at the kill: upload done {u}, {d} bytes downloaded"
    );
    let up = up.unwrap();
    assert!(up.multipart);
    down.unwrap();
    for r in ups {
        r.unwrap();
    }
    for (i, r) in downs.into_iter().enumerate() {
        assert!(r.unwrap().data.as_ref() == small[i].as_slice(), "small-{i}");
    }
    let m = s.metrics();
    // A fresh client reads everything back.
    let check = Storage::new(cfg).await.unwrap();
    let got = check.download_bytes(b, "up.bin").await.unwrap();
    assert!(got.data.as_ref() == up_data.as_slice(), "up.bin");
    assert!(std::fs::read(&down_path).unwrap() == down_data, "down.bin");
    for (i, d) in small.iter().enumerate() {
        let got = check
            .download_bytes(b, &format!("during-{i}"))
            .await
            .unwrap();
        assert!(got.data.as_ref() == d.as_slice(), "during-{i}");
    }
    let left = check.list_uploads(b, "").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    eprintln!(
        "restart: killed with {u} bytes up (parts stored) and {d} down, all done {:.1} s \
         later, {} retries, {} failures",
        took.as_secs_f64(),
        m.retries,
        m.failures
    );
    assert_eq!(m.failures, 0);
}

/// With the default config, through the fault proxy: a burst of 503 SlowDown is
/// ridden out within max_retries, and transfers started while the endpoint
/// refuses connections (8 s) wait for it and complete, at the cost of one probe
/// at a time rather than every transfer retrying on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_rides_out_a_slowdown_burst_and_refused_connections() {
    let Some(upstream) = common::endpoint(common::Kind::SeaweedFs) else {
        return;
    };
    let proxy = FaultProxy::start(&upstream).await;
    let s = Storage::new(common::s3_config(&proxy.url)).await.unwrap();
    let direct = Storage::new(common::s3_config(&upstream)).await.unwrap();
    let b = unique("stor-refused");
    direct.create_bucket(&b).await.unwrap();
    let b = b.as_str();
    let data = |i: usize| payload(50_000 + i, 40 + i as u64);
    for i in 0..4 {
        direct
            .upload_bytes(b, &format!("dl-{i}"), data(i), UploadOptions::default())
            .await
            .unwrap();
    }
    let upload_all = |tag: &'static str| {
        let s = &s;
        futures::future::join_all((0..20).map(move |i| {
            let s = s.clone();
            async move {
                s.upload_bytes(b, &format!("{tag}-{i}"), data(i), UploadOptions::default())
                    .await
            }
        }))
    };

    // A burst of SlowDown: every upload's first PUT is throttled.
    proxy.add(Rule::new("PUT", "/burst-", Fault::Error(503, "SlowDown")).times(20));
    for r in upload_all("burst").await {
        r.unwrap();
    }
    assert_eq!(proxy.faults(), 20);

    // Connections refused for 8 s; 20 uploads and 4 downloads start meanwhile.
    let before = s.metrics().retries;
    proxy.refuse_for(Duration::from_secs(8)).await;
    let downloads = futures::future::join_all((0..4).map(|i| {
        let s = s.clone();
        async move { s.download_bytes(b, &format!("dl-{i}")).await }
    }));
    let (ups, downs) = tokio::join!(upload_all("refused"), downloads);
    for r in ups {
        r.unwrap();
    }
    for (i, r) in downs.into_iter().enumerate() {
        assert!(r.unwrap().data.as_ref() == data(i).as_slice(), "dl-{i}");
    }
    for i in 0..20 {
        let got = direct
            .download_bytes(b, &format!("refused-{i}"))
            .await
            .unwrap();
        assert!(got.data.as_ref() == data(i).as_slice(), "refused-{i}");
    }
    // Each of the 24 calls failed once and went again once it answered; the rest
    // are the probes, one at a time: a 200 ms schedule doubling to 4 s makes
    // about 8 in 8 s (24 calls retrying each on its own would be 24 × N).
    let retries = s.metrics().retries - before;
    eprintln!("refused for 8 s: 24 transfers, {retries} retries");
    assert!(retries <= 24 + 30, "{retries} retries");
    assert_eq!(s.metrics().failures, 0);
}

/// A `Storage` shared across runtimes (e.g. a static used by many
/// `#[tokio::test]`s) keeps working after the runtime it first ran on is gone.
#[test]
fn storage_outlives_the_runtime_it_was_first_used_on() {
    let Some(upstream) = common::endpoint(common::Kind::SeaweedFs) else {
        return;
    };
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let b = unique("stor-rt");
    let first = rt();
    let s = first.block_on(async {
        let s = Storage::new(common::s3_config(&upstream)).await.unwrap();
        s.create_bucket(&b).await.unwrap();
        s.upload_bytes(b.as_str(), "k", b"one".to_vec(), UploadOptions::default())
            .await
            .unwrap();
        s
    });
    drop(first);
    for round in 0..2 {
        let next = rt();
        next.block_on(async {
            let got = s.download_bytes(b.as_str(), "k").await.unwrap();
            assert_eq!(got.data.as_ref(), b"one", "round {round}");
        });
    }
}
