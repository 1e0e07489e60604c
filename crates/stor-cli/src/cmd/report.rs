//! What `cp` and `mv` print for transfers that are not a batch of the library's —
//! one file, stdin, one object, copies and moves between objects: a text line per
//! transfer as before, or with `--json` one JSON object per transfer and then a
//! summary object, the shape batch transfers print, so that every line on stdout
//! is JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use stor::{Storage, TransferResult};

use crate::context::Ctx;
use crate::progress::Ui;

/// The lines of one command's transfers.
pub struct Report<'a> {
    ctx: &'a Ctx,
    /// Counts for the summary; never draws (a single transfer has its own bar).
    ui: Arc<Ui>,
    stores: Vec<&'a Storage>,
    retries: u64,
    /// Failures the command had reported before this report began.
    failures_before: u64,
    /// Failures of this report's transfers that Output counted too (the others
    /// it counted are refusals made elsewhere, which the summary adds).
    counted: AtomicU64,
}

fn retries(stores: &[&Storage]) -> u64 {
    stores.iter().map(|s| s.metrics().retries).sum()
}

impl<'a> Report<'a> {
    /// A report of transfers on `stores` (their retries count in the summary).
    pub fn new(ctx: &'a Ctx, stores: &[&'a Storage]) -> Report<'a> {
        Report {
            ctx,
            ui: Ui::new(true, ctx.out.json(), 0, 0),
            stores: stores.to_vec(),
            retries: retries(stores),
            failures_before: ctx.out.failures(),
            counted: AtomicU64::new(0),
        }
    }

    /// `obj` with the transfer's result.
    fn with_result(mut obj: Value, r: &TransferResult) -> Value {
        obj["bytes"] = r.bytes.into();
        obj["etag"] = r.etag.clone().into();
        obj["checksum"] = r.checksum.clone().into();
        obj["error"] = Value::Null;
        obj
    }

    /// A transfer that succeeded: its text line (unless --quiet), or its object.
    pub fn done(&self, text: &str, obj: Value, r: &TransferResult) {
        self.ui.finished(Some(r.bytes));
        if self.ctx.out.json() {
            self.ctx.out.say(&Self::with_result(obj, r).to_string());
        } else {
            self.ctx.out.note(text);
        }
    }

    /// A transfer, one of many, that failed: one line on stderr (counted for the
    /// exit status), and its object with the error.
    pub fn failed(&self, text: &str, err: &dyn std::fmt::Display, mut obj: Value) {
        self.ui.finished(None);
        self.counted.fetch_add(1, Ordering::Relaxed);
        self.ctx.out.fail(text, err);
        if self.ctx.out.json() {
            obj["error"] = err.to_string().into();
            self.ctx.out.say(&obj.to_string());
        }
    }

    /// The command's one transfer failed: its object with the error (the error
    /// itself ends the command, and `main` prints it on stderr).
    pub fn failed_alone(&self, err: &dyn std::fmt::Display, mut obj: Value) {
        self.ui.finished(None);
        if self.ctx.out.json() {
            obj["error"] = err.to_string().into();
            self.ctx.out.say(&obj.to_string());
        }
    }

    /// A transfer `--dry-run` would make: `(dryrun) text`, or its object with
    /// `"dry_run": true` (printed even with --quiet: it is the output).
    pub fn planned(&self, text: &str, mut obj: Value) {
        if self.ctx.out.json() {
            obj["dry_run"] = true.into();
            self.ctx.out.say(&obj.to_string());
        } else {
            self.ctx.out.say(&format!("(dryrun) {text}"));
        }
    }

    /// With --json, the summary object (text output never had one for these).
    pub fn finish(&self) {
        if !self.ctx.out.json() {
            return;
        }
        let all = self.ctx.out.failures() - self.failures_before;
        let earlier = all.saturating_sub(self.counted.load(Ordering::Relaxed));
        let retries = retries(&self.stores) - self.retries;
        let summary = self.ui.finish(retries, self.ctx.out.skipped(), earlier);
        self.ctx.out.say(&json!({ "summary": summary }).to_string());
    }
}

/// The JSON object of a transfer between a path (`-` for stdin) and a key.
pub fn file_object(op: &str, path: &str, key: &str) -> Value {
    json!({ "op": op, "path": path, "key": key })
}

/// The JSON object of a copy or move between objects.
pub fn object_object(op: &str, source: &str, destination: &str, key: &str) -> Value {
    json!({ "op": op, "source": source, "destination": destination, "key": key })
}
