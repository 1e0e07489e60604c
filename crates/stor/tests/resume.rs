//! Resuming interrupted transfers, on the engine without servers: the memory store
//! behind `Faulty`, a journal of its own per test. An interruption is a cancelled
//! transfer — what Ctrl-C or a killed process leaves behind: the parts stored (and
//! recorded) so far. The same transfer run again on a fresh handle must send only
//! what is missing and give the whole, verified object; where what the journal
//! describes no longer holds, it must start over (and still give the right
//! object). The versions with a real `stor` killed by SIGKILL are in
//! crates/stor-cli/tests/resume.rs.
//!
//! Run: `cargo test -p stor --test resume`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::faulty::Faulty;
use common::payload;
use futures::StreamExt;
use stor::{
    BatchItem, BatchOptions, ChecksumAlgorithm, DownloadOptions, ErrorKind, Interrupted, Storage,
    StorageConfig, TransferKind, UploadOptions,
};

const MIB: usize = 1024 * 1024;
const PART: u64 = 5 * MIB as u64;

/// A memory store behind `Faulty`, a journal directory and a working directory:
/// every [`Rig::storage`] is a new handle on them, as a new process would be.
struct Rig {
    be: Arc<Faulty>,
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Rig {
        let rig = Rig {
            be: Arc::new(Faulty::default()),
            state: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        rig.storage(1).create_bucket("eng").await.unwrap();
        rig
    }

    /// A fresh handle: 5 MiB parts above 5 MiB, `concurrency` parts at a time.
    fn storage(&self, concurrency: usize) -> Storage {
        let cfg = StorageConfig {
            multipart_threshold: PART,
            part_size: Some(PART),
            max_concurrency: concurrency,
            state_dir: Some(self.state.path().to_path_buf()),
            ..StorageConfig::memory()
        };
        Storage::with_backend(self.be.clone(), cfg)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn journal(&self) -> PathBuf {
        self.state.path().join(stor::journal::JOURNAL_FILE)
    }

    async fn pending_uploads(&self) -> usize {
        self.storage(1).list_uploads("eng", "").await.unwrap().len()
    }

    async fn interrupted(&self, key: &str) -> Vec<Interrupted> {
        self.storage(1)
            .interrupted_transfers("eng", key)
            .await
            .unwrap()
    }

    /// Starts uploading `path` to `key` with each part held 100 ms, and cancels the
    /// upload once the journal records `parts` parts stored; returns what the journal
    /// then holds.
    async fn interrupted_upload(&self, path: &Path, key: &str, parts: u64) -> Interrupted {
        *self.be.part_delay.lock().unwrap() = Some(Duration::from_millis(100));
        let s = self.storage(1);
        let (p, k) = (path.to_path_buf(), key.to_owned());
        let task =
            tokio::spawn(
                async move { s.upload_file("eng", &k, &p, UploadOptions::default()).await },
            );
        let mut waited = 0;
        while self
            .interrupted(key)
            .await
            .first()
            .is_none_or(|t| t.done < parts * PART)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
            assert!(waited < 2000, "the upload never got {parts} parts in");
        }
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        *self.be.part_delay.lock().unwrap() = None;
        let kept = self.interrupted(key).await;
        assert_eq!(kept.len(), 1, "{kept:?}");
        kept[0].clone()
    }

    /// Starts downloading `key` into `out`; ranges past the first deliver 2 MiB and
    /// stall. Cancels once the journal holds `at_least` bytes and has stopped
    /// growing; returns what it holds.
    async fn interrupted_download(&self, key: &str, out: &Path, at_least: u64) -> Interrupted {
        *self.be.stall_ranges_after.lock().unwrap() = Some(2 * MIB);
        let s = self.storage(3);
        let (k, o) = (key.to_owned(), out.to_path_buf());
        let task = tokio::spawn(async move { s.download_file("eng", &k, &o).await });
        let mut last = 0;
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let done = self.interrupted(key).await.first().map_or(0, |t| t.done);
            if done >= at_least && done == last {
                break;
            }
            last = done;
            assert!(i < 1000, "the download never got {at_least} bytes in");
        }
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        *self.be.stall_ranges_after.lock().unwrap() = None;
        let kept = self.interrupted(key).await;
        assert_eq!(kept.len(), 1, "{kept:?}");
        kept[0].clone()
    }
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

fn crc(data: &[u8]) -> String {
    ChecksumAlgorithm::Crc64nvme.of(data).unwrap().label()
}

async fn stored(s: &Storage, key: &str) -> Vec<u8> {
    s.download_bytes("eng", key).await.unwrap().data.to_vec()
}

/// Temp files of downloads left in `dir`.
fn partial_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| stor::is_download_temp(&e.file_name()))
        .map(|e| e.path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_sends_only_the_missing_parts() {
    let rig = Rig::new().await;
    let data = payload(26 * MIB + 3, 1);
    let src = rig.path("big.bin");
    write(&src, &data);
    let kept = rig.interrupted_upload(&src, "up/big.bin", 3).await;
    assert_eq!(kept.kind, TransferKind::Upload);
    assert_eq!(kept.size, data.len() as u64);
    assert_eq!(
        rig.pending_uploads().await,
        1,
        "kept on the server, not aborted"
    );
    assert!(
        stor::transfer::kept_for_resume()
            .iter()
            .any(|k| k.key == "up/big.bin"),
        "the process knows it kept it (for the Ctrl-C message)"
    );
    let stored_before = kept.done;
    let total_parts = data.len().div_ceil(PART as usize) as u32;

    rig.be.parts_sent.store(0, Ordering::SeqCst);
    let s = rig.storage(1);
    let r = s
        .upload_file("eng", "up/big.bin", &src, UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.resumed, stored_before);
    assert_eq!(r.bytes, data.len() as u64);
    let parts_now = rig.be.parts_sent.load(Ordering::SeqCst);
    assert_eq!(
        parts_now,
        total_parts - (stored_before / PART) as u32,
        "only the missing parts went up"
    );
    assert_eq!(stored(&s, "up/big.bin").await, data);
    assert_eq!(r.checksum.as_deref(), Some(crc(&data).as_str()));
    let info = s.info("eng", "up/big.bin").await.unwrap();
    assert_eq!(
        info.checksum.map(|(_, v)| v),
        Some(ChecksumAlgorithm::Crc64nvme.of(&data).unwrap().encoded()),
        "the object carries the whole file's CRC, combined from the journaled parts'"
    );
    assert!(rig.interrupted("up/").await.is_empty(), "journal emptied");
    assert_eq!(rig.pending_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_no_longer_holds_starts_the_upload_over() {
    // Each case changes one thing between the interrupted run and the next, which
    // must then abort the kept upload and send every part again.
    type Change = fn(&Rig, &Path, &Interrupted) -> (UploadOptions, Vec<u8>);
    let cases: [(&str, Change); 6] = [
        ("source changed", |_, src, _| {
            let data = payload(26 * MIB + 3, 99);
            std::thread::sleep(Duration::from_millis(20));
            write(src, &data);
            (UploadOptions::default(), data)
        }),
        ("source touched, same bytes", |_, src, _| {
            let f = std::fs::File::options().write(true).open(src).unwrap();
            f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
                .unwrap();
            (UploadOptions::default(), std::fs::read(src).unwrap())
        }),
        ("other headers", |_, src, _| {
            let o = UploadOptions::default().content_type("video/mp4");
            (o, std::fs::read(src).unwrap())
        }),
        ("server lost the upload", |rig, src, kept| {
            let be = rig.be.clone();
            let id = rig_upload_id(rig, kept);
            futures::executor::block_on(async move {
                use stor::backend::Backend;
                be.multipart()
                    .unwrap()
                    .abort_multipart("eng", &kept_key(kept), &id)
                    .await
                    .unwrap();
            });
            (UploadOptions::default(), std::fs::read(src).unwrap())
        }),
        ("journal deleted", |rig, src, _| {
            std::fs::remove_file(rig.journal()).unwrap();
            let _ = std::fs::remove_file(format!("{}-wal", rig.journal().display()));
            let _ = std::fs::remove_file(format!("{}-shm", rig.journal().display()));
            (UploadOptions::default(), std::fs::read(src).unwrap())
        }),
        ("journal damaged", |rig, src, _| {
            let _ = std::fs::remove_file(format!("{}-wal", rig.journal().display()));
            let _ = std::fs::remove_file(format!("{}-shm", rig.journal().display()));
            std::fs::write(rig.journal(), vec![0x5a; 64 * 1024]).unwrap();
            (UploadOptions::default(), std::fs::read(src).unwrap())
        }),
    ];
    for (name, change) in cases {
        let rig = Rig::new().await;
        let src = rig.path("big.bin");
        write(&src, &payload(26 * MIB + 3, 1));
        let kept = rig.interrupted_upload(&src, "big.bin", 2).await;
        let (opts, data) = change(&rig, &src, &kept);
        rig.be.parts_sent.store(0, Ordering::SeqCst);
        let s = rig.storage(2);
        let r = s.upload_file("eng", "big.bin", &src, opts).await.unwrap();
        assert_eq!(r.resumed, 0, "{name}: started over");
        assert_eq!(rig.be.parts_sent.load(Ordering::SeqCst), 6, "{name}");
        assert_eq!(stored(&s, "big.bin").await, data, "{name}");
        assert!(rig.interrupted("").await.is_empty(), "{name}");
        // The kept upload was aborted — except when the journal that named it is
        // gone (`stor cleanup` of the bucket finds it then).
        let left = rig.pending_uploads().await;
        match name {
            "journal deleted" | "journal damaged" => assert_eq!(left, 1, "{name}"),
            _ => assert_eq!(left, 0, "{name}: the old upload was aborted"),
        }
        if name == "journal damaged" {
            let aside = std::fs::read_dir(rig.state.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().contains(".damaged-"));
            assert!(aside, "the damaged journal was kept aside");
        }
    }
}

fn kept_key(kept: &Interrupted) -> String {
    kept.key.clone()
}

/// The multipart upload a kept transfer holds (the journal's listing names it).
fn rig_upload_id(_rig: &Rig, kept: &Interrupted) -> String {
    kept.upload_id
        .clone()
        .expect("an upload keeps its upload id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resume_discards_the_interrupted_upload() {
    let rig = Rig::new().await;
    let data = payload(16 * MIB, 3);
    let src = rig.path("f.bin");
    write(&src, &data);
    rig.interrupted_upload(&src, "f.bin", 1).await;
    rig.be.parts_sent.store(0, Ordering::SeqCst);
    let s = rig.storage(2);
    let r = s
        .upload_file("eng", "f.bin", &src, UploadOptions::default().no_resume())
        .await
        .unwrap();
    assert_eq!(r.resumed, 0);
    assert_eq!(rig.be.parts_sent.load(Ordering::SeqCst), 4);
    assert_eq!(stored(&s, "f.bin").await, data);
    assert_eq!(
        rig.pending_uploads().await,
        0,
        "the kept upload was aborted"
    );
    assert!(rig.interrupted("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_of_the_same_transfer_is_refused() {
    let rig = Rig::new().await;
    let data = payload(21 * MIB, 4);
    let src = rig.path("f.bin");
    write(&src, &data);
    *rig.be.part_delay.lock().unwrap() = Some(Duration::from_millis(150));
    let s = rig.storage(1);
    let first = {
        let (s, src) = (s.clone(), src.clone());
        tokio::spawn(async move {
            s.upload_file("eng", "f.bin", &src, UploadOptions::default())
                .await
        })
    };
    while rig.interrupted("f.bin").await.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = rig
        .storage(1)
        .upload_file("eng", "f.bin", &src, UploadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("already transferring"), "{e}");
    *rig.be.part_delay.lock().unwrap() = None;
    first.await.unwrap().unwrap();
    assert_eq!(
        stored(&s, "f.bin").await,
        data,
        "the first one finished alone"
    );
    assert_eq!(rig.pending_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_keep_what_a_rerun_can_use_and_drop_the_rest() {
    // A part that keeps failing transiently: the upload fails, but what it stored
    // is kept, and running it again finishes it.
    let rig = Rig::new().await;
    let data = payload(21 * MIB, 5);
    let src = rig.path("f.bin");
    write(&src, &data);
    rig.be.fail_parts_once.lock().unwrap().extend([3, 3, 3]);
    let s = rig.storage(1);
    let e = s
        .upload_file("eng", "f.bin", &src, UploadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    assert!(e.to_string().contains("kept"), "says what it kept: {e}");
    assert_eq!(rig.pending_uploads().await, 1);
    let r = rig
        .storage(1)
        .upload_file("eng", "f.bin", &src, UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.resumed, 2 * PART);
    assert_eq!(stored(&s, "f.bin").await, data);

    // The source changing under the upload is no failure to keep: aborted and
    // forgotten, as without a journal.
    let rig = Rig::new().await;
    write(&src, &data);
    *rig.be.part_delay.lock().unwrap() = Some(Duration::from_millis(100));
    let s = rig.storage(1);
    let task = {
        let (s, src) = (s.clone(), src.clone());
        tokio::spawn(async move {
            s.upload_file("eng", "g.bin", &src, UploadOptions::default())
                .await
        })
    };
    while rig
        .interrupted("g.bin")
        .await
        .first()
        .is_none_or(|t| t.done == 0)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut changed = data.clone();
    changed[18 * MIB] ^= 1;
    std::thread::sleep(Duration::from_millis(20));
    write(&src, &changed);
    let e = task.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert_eq!(rig.pending_uploads().await, 0, "aborted");
    assert!(rig.interrupted("").await.is_empty(), "forgotten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_fetches_only_the_missing_ranges() {
    let rig = Rig::new().await;
    let data = payload(40 * MIB + 11, 6);
    let s = rig.storage(3);
    s.upload_bytes("eng", "d.bin", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    let out = rig.path("d.bin");
    let kept = rig
        .interrupted_download("d.bin", &out, PART + MIB as u64)
        .await;
    assert_eq!(kept.kind, TransferKind::Download);
    assert!(!out.exists(), "no partial file at the target");
    let partial = partial_files(rig.dir.path());
    assert_eq!(partial.len(), 1, "the partial file is kept beside it");
    assert_eq!(kept.temp.as_deref(), Some(partial[0].as_path()));

    let served = rig.be.bytes_served.load(Ordering::SeqCst);
    let r = rig
        .storage(3)
        .download_file("eng", "d.bin", &out)
        .await
        .unwrap();
    let fetched = rig.be.bytes_served.load(Ordering::SeqCst) - served;
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(r.resumed, kept.done, "every journaled range was used");
    assert_eq!(
        fetched,
        data.len() as u64 - kept.done,
        "only the missing ranges were fetched"
    );
    assert_eq!(r.checksum.as_deref(), Some(crc(&data).as_str()), "verified");
    assert!(partial_files(rig.dir.path()).is_empty());
    assert!(rig.interrupted("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_no_longer_holds_starts_the_download_over_or_fetches_again() {
    // Replaced object: starts over, gives the new one.
    let rig = Rig::new().await;
    let old = payload(30 * MIB, 7);
    let s = rig.storage(3);
    s.upload_bytes("eng", "d.bin", old.clone(), UploadOptions::default())
        .await
        .unwrap();
    let out = rig.path("d.bin");
    rig.interrupted_download("d.bin", &out, PART).await;
    let new = payload(30 * MIB, 8);
    s.upload_bytes("eng", "d.bin", new.clone(), UploadOptions::default())
        .await
        .unwrap();
    let r = rig
        .storage(3)
        .download_file("eng", "d.bin", &out)
        .await
        .unwrap();
    assert_eq!(r.resumed, 0);
    assert_eq!(std::fs::read(&out).unwrap(), new);
    assert!(partial_files(rig.dir.path()).is_empty());

    // A damaged partial file: the range it spoils is fetched again, the rest kept.
    let rig = Rig::new().await;
    let s = rig.storage(3);
    s.upload_bytes("eng", "d.bin", old.clone(), UploadOptions::default())
        .await
        .unwrap();
    let out = rig.path("d.bin");
    let kept = rig.interrupted_download("d.bin", &out, PART).await;
    let partial = partial_files(rig.dir.path()).pop().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::options().write(true).open(&partial).unwrap();
        f.write_all_at(&[old[1000] ^ 0xff], 1000).unwrap();
    }
    let served = rig.be.bytes_served.load(Ordering::SeqCst);
    let r = rig
        .storage(3)
        .download_file("eng", "d.bin", &out)
        .await
        .unwrap();
    let fetched = rig.be.bytes_served.load(Ordering::SeqCst) - served;
    assert_eq!(std::fs::read(&out).unwrap(), old);
    assert!(
        r.resumed > 0 && r.resumed < kept.done,
        "{} of {}",
        r.resumed,
        kept.done
    );
    assert_eq!(fetched, old.len() as u64 - r.resumed);

    // A deleted journal: starts over.
    let rig = Rig::new().await;
    let s = rig.storage(3);
    s.upload_bytes("eng", "d.bin", old.clone(), UploadOptions::default())
        .await
        .unwrap();
    let out = rig.path("d.bin");
    rig.interrupted_download("d.bin", &out, PART).await;
    std::fs::remove_file(rig.journal()).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", rig.journal().display()));
    let _ = std::fs::remove_file(format!("{}-shm", rig.journal().display()));
    let r = rig
        .storage(3)
        .download_file("eng", "d.bin", &out)
        .await
        .unwrap();
    assert_eq!(r.resumed, 0);
    assert_eq!(std::fs::read(&out).unwrap(), old);

    // --no-resume: the partial file is removed, the download starts over.
    let rig = Rig::new().await;
    let s = rig.storage(3);
    s.upload_bytes("eng", "d.bin", old.clone(), UploadOptions::default())
        .await
        .unwrap();
    let out = rig.path("d.bin");
    rig.interrupted_download("d.bin", &out, PART).await;
    let fresh = DownloadOptions {
        no_resume: true,
        ..Default::default()
    };
    let r = rig
        .storage(3)
        .download_file_with("eng", "d.bin", &out, fresh)
        .await
        .unwrap();
    assert_eq!(r.resumed, 0);
    assert_eq!(std::fs::read(&out).unwrap(), old);
    assert!(partial_files(rig.dir.path()).is_empty());
    assert!(rig.interrupted("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_download_is_refused_to_a_second_runner_and_discarded_on_request() {
    let rig = Rig::new().await;
    let data = payload(30 * MIB, 9);
    let s = rig.storage(3);
    s.upload_bytes("eng", "d.bin", data.clone(), UploadOptions::default())
        .await
        .unwrap();
    let out = rig.path("d.bin");
    // While one runs (stalled), a second is refused.
    *rig.be.stall_ranges_after.lock().unwrap() = Some(2 * MIB);
    let first = {
        let (s, out) = (s.clone(), out.clone());
        tokio::spawn(async move { s.download_file("eng", "d.bin", &out).await })
    };
    while rig.interrupted("d.bin").await.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = rig
        .storage(3)
        .download_file("eng", "d.bin", &out)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    first.abort();
    let _ = first.await;
    *rig.be.stall_ranges_after.lock().unwrap() = None;
    // Younger than asked: kept.
    let gone = s
        .discard_interrupted("eng", "", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(gone.is_empty());
    assert_eq!(partial_files(rig.dir.path()).len(), 1);
    // Discarded: record and partial file gone.
    let gone = s
        .discard_interrupted("eng", "", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert!(partial_files(rig.dir.path()).is_empty());
    assert!(rig.interrupted("").await.is_empty());
    // And an interrupted upload's multipart upload is aborted.
    let src = rig.path("u.bin");
    write(&src, &data);
    rig.interrupted_upload(&src, "u.bin", 1).await;
    assert_eq!(rig.pending_uploads().await, 1);
    let gone = s
        .discard_interrupted("eng", "", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(rig.pending_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_again_skips_what_it_finished() {
    let rig = Rig::new().await;
    let tree = rig.path("tree");
    std::fs::create_dir(&tree).unwrap();
    let items: Vec<BatchItem> = (0..20)
        .map(|i| {
            let path = tree.join(format!("f{i:02}"));
            write(&path, &payload(1000 + i, i as u64));
            BatchItem {
                path,
                key: format!("t/f{i:02}"),
                size: Some(1000 + i as u64),
                etag: None,
            }
        })
        .collect();
    let opts = || BatchOptions {
        journal: true,
        concurrency: Some(1),
        ..Default::default()
    };
    // Interrupted after 8 objects.
    let s = rig.storage(1);
    let first: Vec<_> = s
        .upload_many("eng", items.clone(), opts())
        .take(8)
        .collect()
        .await;
    assert!(first.iter().all(|o| o.result.is_ok()));
    assert_eq!(rig.be.puts.load(Ordering::SeqCst), 8);
    // One of those changes before the re-run: it goes up again.
    std::thread::sleep(Duration::from_millis(20));
    write(&items[0].path, b"changed");
    let again: Vec<_> = rig
        .storage(1)
        .upload_many("eng", items.clone(), opts())
        .collect()
        .await;
    assert_eq!(again.len(), 20);
    let skipped = again
        .iter()
        .filter(|o| o.result.as_ref().unwrap().resumed > 0)
        .count();
    assert_eq!(skipped, 7);
    assert_eq!(rig.be.puts.load(Ordering::SeqCst), 8 + 13);
    assert_eq!(stored(&s, "t/f00").await, b"changed");
    // That run finished the batch: a third run is a new batch and sends everything.
    let third: Vec<_> = s.upload_many("eng", items.clone(), opts()).collect().await;
    assert!(third
        .iter()
        .all(|o| o.result.as_ref().unwrap().resumed == 0));
    assert_eq!(rig.be.puts.load(Ordering::SeqCst), 8 + 13 + 20);

    // Downloads: an interrupted prefix download skips the files it wrote, unless
    // the object changed since.
    let out = rig.path("out");
    let planned: Vec<BatchItem> = s
        .plan_download("eng", "t/", &out)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let down = || BatchOptions {
        journal: true,
        concurrency: Some(1),
        root: Some(out.clone()),
        ..Default::default()
    };
    let first: Vec<_> = s
        .download_many("eng", planned.clone(), down())
        .take(5)
        .collect()
        .await;
    assert!(first.iter().all(|o| o.result.is_ok()));
    s.upload_bytes("eng", &planned[1].key, "new", UploadOptions::default())
        .await
        .unwrap();
    let planned: Vec<BatchItem> = s
        .plan_download("eng", "t/", &out)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let served = rig.be.bytes_served.load(Ordering::SeqCst);
    let again: Vec<_> = s
        .download_many("eng", planned.clone(), down())
        .collect()
        .await;
    let skipped: Vec<_> = again
        .iter()
        .filter(|o| o.result.as_ref().unwrap().resumed > 0)
        .map(|o| o.item.key.clone())
        .collect();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(
        !skipped.contains(&planned[1].key),
        "the replaced one was fetched again"
    );
    let fetched = rig.be.bytes_served.load(Ordering::SeqCst) - served;
    let rest: u64 = planned
        .iter()
        .filter(|i| !skipped.contains(&i.key))
        .map(|i| i.size.unwrap())
        .sum();
    assert_eq!(fetched, rest);
    assert_eq!(std::fs::read(out.join("f01")).unwrap(), b"new");
    for i in &planned {
        let want = stored(&s, &i.key).await;
        assert_eq!(std::fs::read(&i.path).unwrap(), want, "{}", i.key);
    }
}
