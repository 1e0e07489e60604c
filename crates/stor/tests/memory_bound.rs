//! The byte budget as a guarantee: a mix of concurrent uploads (streams of unknown
//! length, files, bytes) and downloads holds at most `max_concurrency` × part size
//! of buffers, plus a small constant — measured with a counting allocator, against
//! SeaweedFS. Without the budget this mix would buffer 4 × 2 parts of streams alone.
//!
//! Its own test binary: the allocator counts everything in the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use stor::UploadOptions;
use tokio::io::{AsyncRead, ReadBuf};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1024 * 1024;

/// An endless-looking source of `left` bytes that allocates nothing itself.
struct Generated {
    left: usize,
    seed: u8,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.left).min(64 * 1024);
        let seed = self.seed;
        let start = self.left;
        let dst = buf.initialize_unfilled_to(n);
        for (i, b) in dst.iter_mut().enumerate() {
            *b = ((start - i) as u8).wrapping_mul(31) ^ seed;
        }
        buf.advance(n);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_transfers_stays_within_the_byte_budget() {
    let Some((s, _)) = common::storage_with(common::Kind::SeaweedFs, |c| {
        c.multipart_threshold = 5 * MIB as u64;
        c.part_size = Some(5 * MIB as u64);
        c.max_concurrency = 2;
    })
    .await
    else {
        eprintln!("skipping: SeaweedFS not configured");
        return;
    };
    let bucket = common::unique("stor-membound");
    s.create_bucket(&bucket).await.unwrap();
    let b = b_owned(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src.bin");
    std::fs::write(&file, common::payload(30 * MIB, 1)).unwrap();
    s.upload_file(b, "seed.bin", &file, UploadOptions::default())
        .await
        .unwrap();

    let budget = 2 * 5 * MIB;
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let streams = (0..4).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let src = Generated {
                left: 30 * MIB + i,
                seed: i as u8,
            };
            s.upload_reader(b, &format!("stream-{i}"), src, UploadOptions::default())
                .await
                .unwrap()
        })
    });
    let files = (0..2).map(|i| {
        let (s, file) = (s.clone(), file.clone());
        tokio::spawn(async move {
            s.upload_file(b, &format!("file-{i}"), &file, UploadOptions::default())
                .await
                .unwrap()
        })
    });
    let downloads = (0..2).map(|i| {
        let s = s.clone();
        let out = dir.path().join(format!("down-{i}"));
        tokio::spawn(async move { s.download_file(b, "seed.bin", &out).await.unwrap() })
    });
    let all: Vec<_> = streams.chain(files).chain(downloads).collect();
    for h in all {
        let r = h.await.unwrap();
        assert!(r.bytes >= 30 * MIB as u64);
    }
    let peak = PEAK.load(Ordering::SeqCst) - base;
    let constant = 8 * MIB;
    eprintln!(
        "peak buffers over baseline: {:.1} MiB (budget {} MiB + {} MiB)",
        peak as f64 / MIB as f64,
        budget / MIB,
        constant / MIB
    );
    assert!(
        peak <= budget + constant,
        "peak {peak} bytes is over the budget {budget} + {constant}"
    );
    // The data arrived whole.
    for i in 0..4 {
        let info = s.info(b, &format!("stream-{i}")).await.unwrap();
        assert_eq!(info.size, (30 * MIB + i) as u64);
    }
}

/// The bucket name as a `'static` string for spawned tasks.
fn b_owned(b: &str) -> &'static str {
    Box::leak(b.to_owned().into_boxed_str())
}
