//! The transfer engine without servers: the memory backend declares multipart
//! uploads, part copies and parallel ranged reads, and a fault-injecting wrapper
//! around it (`Faulty`) breaks bodies and parts on cue. Runs in plain
//! `cargo test`: multipart uploads, parallel ranged downloads, a broken range
//! resumed, a failed part retried, abort on failure, on cancellation and on drop,
//! and copies by parts.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::faulty::Faulty;
use stor::{CopyOptions, ErrorKind, Storage, StorageConfig, UploadOptions};

const MIB: usize = 1024 * 1024;

/// A store over `Faulty` with 5 MiB parts above 5 MiB, and its bucket.
async fn rig(concurrency: usize) -> (Storage, Arc<Faulty>) {
    let be = Arc::new(Faulty::default());
    let cfg = StorageConfig {
        multipart_threshold: 5 * MIB as u64,
        part_size: Some(5 * MIB as u64),
        max_concurrency: concurrency,
        ..StorageConfig::memory()
    };
    let s = Storage::with_backend(be.clone(), cfg);
    s.create_bucket("eng").await.unwrap();
    (s, be)
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_and_parallel_ranged_download_on_memory() {
    let (s, be) = rig(4).await;
    let data = payload(23 * MIB + 7, 1);
    let r = s
        .upload_bytes("eng", "big", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    assert!(r.multipart);
    assert_eq!(
        be.parts_sent.load(Ordering::SeqCst),
        5,
        "5 parts of ≤ 5 MiB"
    );
    assert!(r.etag.unwrap().ends_with("-5"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big");
    let d = s.download_file("eng", "big", &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(d.checksum.is_some(), "verified");
    let starts = be.range_starts.lock().unwrap().clone();
    assert!(
        starts.len() >= 2,
        "the rest came in parallel ranges: {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_range_resumes_from_its_last_byte() {
    let (s, be) = rig(4).await;
    let data = payload(21 * MIB, 2);
    s.upload_bytes("eng", "k", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    be.range_starts.lock().unwrap().clear();
    *be.cut_next_range_after.lock().unwrap() = Some(1000);
    let got = s.download_bytes("eng", "k").await.unwrap();
    assert_eq!(got.data.as_ref(), &data[..], "whole and verified");
    let starts = be.range_starts.lock().unwrap().clone();
    // The cut range was asked again from where its bytes stopped, not from its start.
    let resumed = starts
        .iter()
        .any(|s| *s % (5 * MIB as u64) == 1000 || starts.contains(&(s + 1000)));
    assert!(resumed, "a range resumed mid-way: {starts:?}");
    assert!(got.result.attempts >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_is_retried_alone_and_a_refused_one_aborts() {
    let (s, be) = rig(4).await;
    let data = payload(16 * MIB, 3);
    be.fail_parts_once.lock().unwrap().push(2);
    let r = s
        .upload_bytes("eng", "retried", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.attempts, 2);
    assert_eq!(
        be.parts_sent.load(Ordering::SeqCst),
        4,
        "only part 2 went twice"
    );
    assert_eq!(
        s.download_bytes("eng", "retried")
            .await
            .unwrap()
            .data
            .as_ref(),
        &data[..]
    );
    *be.fail_part_always.lock().unwrap() = Some(3);
    let e = s
        .upload_bytes("eng", "refused", data, UploadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.to_string().contains("part 3"), "{e}");
    assert_eq!(be.aborts.load(Ordering::SeqCst), 1);
    assert!(s.list_uploads("eng", "").await.unwrap().is_empty());
    assert!(!s.exists("eng", "refused").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_timed_out_upload_is_aborted() {
    let (s, be) = rig(2).await;
    *be.part_delay.lock().unwrap() = Some(Duration::from_millis(300));
    let data = payload(20 * MIB, 4);
    // Dropped: the future is given up once its multipart upload exists.
    let task = {
        let (s, data) = (s.clone(), data.clone());
        tokio::spawn(async move {
            s.upload_bytes("eng", "dropped", data, UploadOptions::default())
                .await
        })
    };
    for _ in 0..200 {
        if !s.list_uploads("eng", "").await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.list_uploads("eng", "").await.unwrap().len(), 1, "started");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(stor::transfer::wait_for_pending_aborts(Duration::from_secs(10)).await);
    assert!(s.list_uploads("eng", "").await.unwrap().is_empty());
    assert!(be.aborts.load(Ordering::SeqCst) >= 1);
    // Cancelled by the operation's own timeout.
    let cfg = StorageConfig {
        upload_timeout: 1,
        ..s.config().clone()
    };
    let short = Storage::with_backend(be.clone(), cfg);
    *be.part_delay.lock().unwrap() = Some(Duration::from_millis(1500));
    let e = short
        .upload_bytes("eng", "timed-out", data, UploadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(stor::transfer::wait_for_pending_aborts(Duration::from_secs(10)).await);
    assert!(s.list_uploads("eng", "").await.unwrap().is_empty());
    assert!(!s.exists("eng", "timed-out").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_go_by_parts_and_keep_the_checksum() {
    let (s, be) = rig(4).await;
    let data = payload(12 * MIB, 5);
    s.upload_bytes(
        "eng",
        "src",
        data.clone(),
        UploadOptions::default().content_type("video/mp4"),
    )
    .await
    .unwrap();
    let r = s
        .copy_object("eng", "src", "eng", "dst", CopyOptions::default())
        .await
        .unwrap();
    assert!(r.multipart);
    assert_eq!(be.part_copies.load(Ordering::SeqCst), 3);
    let info = s.info("eng", "dst").await.unwrap();
    assert_eq!(info.content_type.as_deref(), Some("video/mp4"));
    let got = s.download_bytes("eng", "dst").await.unwrap();
    assert_eq!(got.data.as_ref(), &data[..]);
    assert!(
        got.result.checksum.is_some(),
        "the checksum travelled with it"
    );
}

/// `max_bandwidth` paces every transfer of a `Storage` through one bucket per
/// direction: four uploads at once share the upload limit (not four times it),
/// downloads get theirs, and files are paced as they are read. Time is tokio's
/// paused clock, so the figures are exact, not a measurement.
#[tokio::test(start_paused = true)]
async fn one_bandwidth_limit_paces_every_transfer_of_a_storage() {
    let limit: stor::config::Bandwidth = "1MiB:2MiB".parse().unwrap();
    let cfg = StorageConfig {
        max_bandwidth: Some(limit),
        ..StorageConfig::memory()
    };
    let s = Storage::new(cfg).await.unwrap();
    s.create_bucket("bwl").await.unwrap();
    let secs = |t: tokio::time::Instant| t.elapsed().as_secs_f64();
    // Four 1 MiB uploads at once: 4 MiB at 1 MiB/s between them, less the one
    // burst (50 ms of the rate) the bucket starts with.
    let start = tokio::time::Instant::now();
    let ups = (0..4).map(|i| {
        let s = s.clone();
        async move {
            s.upload_bytes(
                "bwl",
                &format!("k{i}"),
                payload(MIB, i),
                UploadOptions::default(),
            )
            .await
            .unwrap()
        }
    });
    futures::future::join_all(ups).await;
    let up = secs(start);
    assert!((up - 3.95).abs() < 0.01, "4 MiB up took {up} s at 1 MiB/s");
    // Downloading them: 4 MiB at 2 MiB/s.
    let start = tokio::time::Instant::now();
    let downs = (0..4).map(|i| {
        let s = s.clone();
        async move { s.download_bytes("bwl", &format!("k{i}")).await.unwrap() }
    });
    let got = futures::future::join_all(downs).await;
    assert!(got.iter().all(|d| d.data.len() == MIB));
    let down = secs(start);
    assert!(
        (down - 1.95).abs() < 0.01,
        "4 MiB down took {down} s at 2 MiB/s"
    );
    // A file (read in paced pieces as it is sent).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, payload(3 * MIB, 9)).unwrap();
    let start = tokio::time::Instant::now();
    s.upload_file("bwl", "file", &path, UploadOptions::default())
        .await
        .unwrap();
    let up = secs(start);
    assert!(
        (up - 2.95).abs() < 0.05,
        "3 MiB file took {up} s at 1 MiB/s"
    );
    // Without a limit no time passes at all.
    let free = Storage::new(StorageConfig::memory()).await.unwrap();
    free.create_bucket("bwl").await.unwrap();
    let start = tokio::time::Instant::now();
    free.upload_bytes("bwl", "k", payload(4 * MIB, 1), UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(secs(start), 0.0);
}

/// A transfer dropped while its CreateMultipartUpload is still in flight leaves no
/// upload: the upload the server makes is aborted when the answer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_dropped_while_its_upload_is_being_created_leaves_none() {
    let (s, be) = rig(2).await;
    *be.create_delay.lock().unwrap() = Some(Duration::from_millis(500));
    let data = payload(12 * MIB, 6);
    let task = {
        let s = s.clone();
        tokio::spawn(async move {
            s.upload_bytes("eng", "mid-create", data, UploadOptions::default())
                .await
        })
    };
    for _ in 0..200 {
        if be.creates_started.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(be.creates_started.load(Ordering::SeqCst), 1);
    // The server already has the upload; the answer has not come yet.
    assert_eq!(s.list_uploads("eng", "").await.unwrap().len(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(stor::transfer::wait_for_pending_aborts(Duration::from_secs(10)).await);
    assert!(
        s.list_uploads("eng", "").await.unwrap().is_empty(),
        "aborted when the answer came"
    );
    assert!(be.aborts.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_replaced_during_a_copy_or_move_is_never_deleted_and_says_so() {
    let (s, be) = rig(4).await;
    let target = || Some(("eng".to_owned(), "src".to_owned()));
    let big = payload(12 * MIB, 6);
    let replaced: &[u8] = b"another writer's version";
    for verb in ["copy", "move"] {
        // Replaced while its parts are copied: the pinned part copy fails.
        s.upload_bytes("eng", "src", big.clone(), UploadOptions::default())
            .await
            .unwrap();
        *be.replace_at_part_copy.lock().unwrap() = target();
        let r = match verb {
            "copy" => {
                s.copy_object("eng", "src", "eng", "dst", CopyOptions::default())
                    .await
            }
            _ => {
                s.move_object("eng", "src", "eng", "dst", CopyOptions::default())
                    .await
            }
        };
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{verb}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("changed during the {verb}")), "{msg}");
        assert!(!msg.contains("download"), "{msg}");
        assert!(!s.exists("eng", "dst").await.unwrap(), "{verb}: aborted");
        let now = s.download_bytes("eng", "src").await.unwrap();
        assert_eq!(
            now.data.as_ref(),
            replaced,
            "{verb}: the new version is kept"
        );
    }
    // Replaced between the copy and the delete: both are kept.
    s.upload_bytes("eng", "small", "first", UploadOptions::default())
        .await
        .unwrap();
    *be.replace_after_copy.lock().unwrap() = Some(("eng".into(), "small".into()));
    let e = s
        .move_object("eng", "small", "eng", "moved", CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert!(e.to_string().contains("both it and the copy"), "{e}");
    let now = s.download_bytes("eng", "small").await.unwrap();
    assert_eq!(now.data.as_ref(), replaced, "the new version is kept");
    let copy = s.download_bytes("eng", "moved").await.unwrap();
    assert_eq!(copy.data.as_ref(), b"first");
}
