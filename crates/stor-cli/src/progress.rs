//! What the user sees while bytes move: a progress bar on a terminal (bytes, rate,
//! ETA, files done/total) for every transfer, and for many objects a summary line
//! at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::AsyncRead;
use tokio_util::io::InspectReader;

use crate::output::{human, printable, Output};

/// Progress of one command: a bar when both stdout and stderr are terminals (and
/// not `--quiet`/`--json`), counters always, for the summary.
pub struct Ui {
    bar: Option<ProgressBar>,
    start: Instant,
    files_total: u64,
    files_done: AtomicU64,
    /// Of `files_done`, those left out (`--no-clobber`): neither objects nor
    /// failures.
    skips: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
    deleted: AtomicU64,
    quiet: bool,
}

/// The bar of a known total: bytes, rate, ETA, and the message (files done/total).
const SIZED: &str =
    "{bar:30.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}";
/// The bar of a stream whose length is unknown: the bytes read so far, and the rate.
const STREAM: &str = "{spinner} {bytes} read, {binary_bytes_per_sec} {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

/// Redraws `bar` every 250 ms while it lives, so the rate, the ETA and the spinner
/// stay true while no byte moves (a stalled connection, a slow producer on stdin).
/// Not indicatif's steady tick: with it installed, progress updates never draw,
/// and a bar moves only at its ticks; here each update draws (indicatif limits
/// that to 20 a second).
fn keep_fresh(bar: &ProgressBar) {
    let weak = bar.downgrade();
    std::thread::spawn(move || {
        while let Some(b) = weak.upgrade().filter(|b| !b.is_finished()) {
            b.tick();
            drop(b);
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}

impl Ui {
    /// The progress of many objects: `bytes_total` and `files_total` are what the
    /// command plans to move.
    pub fn new(quiet: bool, json: bool, bytes_total: u64, files_total: u64) -> Arc<Ui> {
        let ui = Ui::with_bar(quiet, json, Some(bytes_total), files_total);
        if let Some(b) = &ui.bar {
            b.set_message(format!("0/{files_total} files"));
        }
        ui
    }

    /// The progress of one transfer (a file, stdin, a stream between stores), of
    /// `total` bytes when known now; a library [`Ui::progress`] that reports a total
    /// sets it later. No summary: [`Ui::clear`] when it ends.
    pub fn one(out: &Output, total: Option<u64>) -> Arc<Ui> {
        Ui::with_bar(out.quiet(), out.json(), total, 1)
    }

    fn with_bar(quiet: bool, json: bool, total: Option<u64>, files_total: u64) -> Arc<Ui> {
        let show =
            !quiet && !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = show.then(|| {
            let b = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            b.set_style(style(if total.is_some() { SIZED } else { STREAM }));
            keep_fresh(&b);
            b
        });
        Arc::new(Ui {
            bar,
            start: Instant::now(),
            files_total,
            files_done: AtomicU64::new(0),
            skips: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            quiet: quiet || json,
        })
    }

    /// A progress callback for the library: bytes done across the whole command
    /// (the total, the first time the library tells it and the bar lacks one).
    pub fn progress(self: &Arc<Ui>) -> stor::Progress {
        let ui = self.clone();
        stor::Progress::new(move |done, total| {
            if let Some(b) = &ui.bar {
                if let (None, Some(t)) = (b.length(), total) {
                    b.set_length(t);
                    b.set_style(style(SIZED));
                }
                b.set_position(done);
            }
        })
    }

    /// `r`, counting the bytes read from it as progress: for a stream, where the
    /// library can tell only parts stored.
    pub fn reading<R: AsyncRead>(self: &Arc<Ui>, r: R) -> impl AsyncRead {
        let ui = self.clone();
        InspectReader::new(r, move |chunk: &[u8]| {
            if let Some(b) = &ui.bar {
                b.inc(chunk.len() as u64);
            }
        })
    }

    /// Clears the bar of one transfer, before its line or its error is printed.
    pub fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// One object finished (`bytes` when it succeeded).
    pub fn finished(&self, bytes: Option<u64>) {
        let n = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        match bytes {
            Some(b) => {
                self.bytes.fetch_add(b, Ordering::Relaxed);
            }
            None => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{n}/{} files", self.files_total));
        }
    }

    /// One file or object left out (`--no-clobber` found it taken): it moves the
    /// bar on and counts as neither an object nor a failure.
    pub fn skipped(&self) {
        self.skips.fetch_add(1, Ordering::Relaxed);
        let n = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{n}/{} files", self.files_total));
        }
    }

    /// One object or file deleted (`sync --delete`), for the summary.
    pub fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints a line above the bar; false when there is no bar (print it
    /// yourself, to stdout).
    pub fn println(&self, line: &str) -> bool {
        match &self.bar {
            Some(b) => {
                b.println(printable(line));
                true
            }
            None => false,
        }
    }

    /// Clears the bar and prints the summary on stderr (unless quiet or JSON):
    /// objects, bytes, elapsed, rate, retries, failures. Returns it.
    /// `earlier_failures`: items that failed before the transfers started (refused
    /// while planning), counted in the summary too.
    pub fn finish(&self, retries: u64, skipped: u64, earlier_failures: u64) -> Summary {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let failures = self.failures.load(Ordering::Relaxed);
        let s = Summary {
            objects: self.files_done.load(Ordering::Relaxed)
                - failures
                - self.skips.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            seconds: self.start.elapsed().as_secs_f64(),
            retries,
            failures: failures + earlier_failures,
            skipped,
            deleted: self.deleted.load(Ordering::Relaxed),
        };
        if !self.quiet {
            let rate = if s.seconds > 0.0 {
                s.bytes as f64 / s.seconds
            } else {
                0.0
            };
            let skipped = match s.skipped {
                0 => String::new(),
                n => format!(", {n} skipped"),
            };
            let deleted = match s.deleted {
                0 => String::new(),
                n => format!(", {n} deleted"),
            };
            eprintln!(
                "Done: {} objects, {} in {:.1} s ({}/s), {} retries, {} failures{skipped}{deleted}",
                s.objects,
                human(s.bytes),
                s.seconds,
                human(rate as u64),
                s.retries,
                s.failures
            );
        }
        s
    }
}

/// What a many-object command did.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub objects: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub retries: u64,
    pub failures: u64,
    /// Entries left out: not regular files, dangling links, loops.
    pub skipped: u64,
    /// Objects or files deleted (`sync --delete`).
    pub deleted: u64,
}
