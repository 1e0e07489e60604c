//! What a sync prints: a line per event on stdout — text, or with `--json` one
//! JSON object and nothing else (uploads, downloads, deletes, skips, conflicts,
//! dry-run plans, then the summary). Failures also go to stderr, one line each,
//! and count for the exit status.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::progress::Ui;

/// The event printer of one sync.
pub struct Out<'a> {
    pub ctx: &'a Ctx,
    pub json: bool,
    /// Skipped entries (not failures), for the summary.
    pub skipped: AtomicU64,
    /// Failures outside the transfers (refused keys, conflicts, deletes …).
    pub failures: AtomicU64,
}

impl<'a> Out<'a> {
    pub fn new(ctx: &'a Ctx, json: bool) -> Out<'a> {
        Out {
            ctx,
            json,
            skipped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// An event: `text` on a text stdout (unless --quiet; above the progress bar
    /// when there is one), `obj` with --json.
    pub fn event(&self, ui: Option<&Ui>, text: &str, obj: Value) {
        if self.json {
            self.ctx.out.say(&obj.to_string());
        } else if !self.ctx.out.quiet() && !ui.is_some_and(|u| u.println(text)) {
            self.ctx.out.say(text);
        }
    }

    /// A planned action of `--dry-run` (printed even with --quiet: it is the output).
    pub fn planned(&self, text: &str, mut obj: Value) {
        if self.json {
            obj["dry_run"] = true.into();
            self.ctx.out.say(&obj.to_string());
        } else {
            self.ctx.out.say(&format!("(dryrun) {text}"));
        }
    }

    /// A failure: one line on stderr, and the event with its error under --json.
    pub fn fail(&self, what: &str, err: &dyn std::fmt::Display, mut obj: Value) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.ctx.out.fail(what, err);
        if self.json {
            obj["error"] = err.to_string().into();
            self.ctx.out.say(&obj.to_string());
        }
    }

    /// An entry left out that is not a failure (a FIFO, a dangling link …).
    pub fn skip(&self, path: &str, key: Option<&str>, reason: &str) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        if self.json {
            let obj = json!({ "op": "skip", "path": path, "key": key, "reason": reason });
            self.ctx.out.say(&obj.to_string());
        } else if !self.ctx.out.quiet() {
            self.ctx.out.flush();
            let line = format!("skipped {path}: {reason}");
            eprintln!("stor: {}", crate::output::printable(&line));
        }
    }

    /// The closing summary: on stderr as text (by `Ui`), as the last JSON object
    /// with --json.
    pub fn summary(&self, ui: &Ui, retries: u64) {
        let s = ui.finish(
            retries,
            self.skipped.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        );
        if self.json {
            self.ctx.out.say(&json!({ "summary": s }).to_string());
        }
    }
}
