//! Many objects at once (`cp -r`, `mv -r`, wildcards): a directory up, a prefix
//! down, one line per object and a summary. A move removes each source once its
//! transfer is confirmed, and only if it is still what was transferred.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use futures::{FutureExt, StreamExt};
use serde_json::json;
use stor::{dir_prefix, BatchItem, BatchOptions, Scheme, Storage, TransferResult, UploadOptions};

use super::source::{self, FileState};
use super::{probe, report::Report};
use crate::context::Ctx;
use crate::exit::usage;
use crate::filter::Filter;
use crate::progress::Ui;
use crate::urls::url;

/// How a batch runs: which entries it takes, whether it only says what it would
/// do, and whether it moves.
pub struct Batch<'a> {
    pub filter: &'a Filter,
    pub dry_run: bool,
    /// `mv`: remove each source after its transfer (and say `move`).
    pub moving: bool,
    /// Start every transfer fresh and journal none (`--no-resume`).
    pub no_resume: bool,
}

impl Batch<'_> {
    fn op<'o>(&self, way: &'o str) -> &'o str {
        if self.moving {
            "move"
        } else {
            way
        }
    }
}

/// Uploads the files below `dir` that pass the filter (matched on the path below
/// it) under the key `key` names as a directory.
#[allow(clippy::too_many_arguments)]
pub async fn upload_dir(
    ctx: &Ctx,
    store: &Storage,
    scheme: Scheme,
    dir: &Path,
    bucket: &str,
    key: &str,
    opts: &UploadOptions,
    b: &Batch<'_>,
) -> Result<()> {
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let prefix = dir_prefix(key);
    let plan = stor::plan_upload(dir, &prefix, true)?;
    report_skipped(ctx, &plan.skipped, &prefix, b.filter);
    let mut items: Vec<BatchItem> = plan
        .items
        .into_iter()
        .filter(|i| b.filter.allows(&i.key[prefix.len()..]))
        .collect();
    let op = b.op("upload");
    let describe = |i: &BatchItem| {
        format!(
            "{op}: {} to {}",
            i.path.display(),
            url(scheme, bucket, &i.key)
        )
    };
    if b.dry_run {
        let report = Report::new(ctx, &[store]);
        for i in &items {
            let obj = json!({ "op": op, "path": i.path.display().to_string(), "key": i.key });
            report.planned(&describe(i), obj);
        }
        return Ok(());
    }
    // Keys the engine would not keep as sent (it would merge `a\b` into `a/b`).
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let refused = probe::refusals(store, bucket, &prefix, &keys).await?;
    items.retain(|i| match refused.get(&i.key) {
        Some(r) => {
            let why = format!("not uploaded: {}", r.reason);
            ctx.out.fail(&format!("{op} {}", i.path.display()), &why);
            false
        }
        None => true,
    });
    // A move removes a file only if it is as it was before its upload began.
    let mut before: HashMap<PathBuf, FileState> = HashMap::new();
    if b.moving {
        items.retain(|i| match FileState::of(&i.path) {
            Ok(s) => {
                before.insert(i.path.clone(), s);
                true
            }
            Err(e) => {
                ctx.out.fail(&format!("{op} {}", i.path.display()), &e);
                false
            }
        });
    }
    let after = |i: &BatchItem, _: &TransferResult| {
        let state = before.get(&i.path).copied();
        let path = i.path.clone();
        async move {
            match state {
                Some(s) => source::remove_file_if_unchanged(&path, &s),
                None => Ok(()),
            }
        }
        .boxed()
    };
    let then: Option<&Then<'_>> = if b.moving { Some(&after) } else { None };
    run_batch(
        ctx,
        store,
        bucket,
        items,
        Way::Up(opts),
        op,
        b.no_resume,
        &describe,
        then,
    )
    .await;
    Ok(())
}

/// Downloads the objects under `prefix` that pass the filter (matched on the key
/// below the prefix) into `dir`.
#[allow(clippy::too_many_arguments)]
pub async fn download_prefix(
    ctx: &Ctx,
    store: &Storage,
    scheme: Scheme,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    b: &Batch<'_>,
    pattern: Option<&str>,
) -> Result<()> {
    let op = b.op("download");
    let mut items = Vec::new();
    let mut refused = 0;
    for planned in store.plan_download(bucket, prefix, dir).await? {
        match planned {
            Ok(i) if b.filter.allows(&i.key[prefix.len()..]) => items.push(i),
            Ok(_) => {}
            Err(e)
                if e.key()
                    .is_some_and(|k| !b.filter.allows(&k[prefix.len()..])) => {}
            Err(e) => {
                refused += 1;
                let what = match e.key() {
                    Some(k) => format!("{op} {}", url(scheme, bucket, k)),
                    None => op.to_owned(),
                };
                ctx.out.fail(&what, &e)
            }
        }
    }
    if let (Some(url), true) = (pattern, items.is_empty() && refused == 0) {
        return Err(anyhow!("no objects match {url}"));
    }
    let describe = |i: &BatchItem| {
        format!(
            "{op}: {} to {}",
            url(scheme, bucket, &i.key),
            i.path.display()
        )
    };
    if b.dry_run {
        let report = Report::new(ctx, &[store]);
        for i in &items {
            let obj = json!({ "op": op, "path": i.path.display().to_string(), "key": i.key });
            report.planned(&describe(i), obj);
        }
        return Ok(());
    }
    // A move deletes an object only if it is still the version downloaded.
    let after = |i: &BatchItem, r: &TransferResult| {
        let (key, etag) = (i.key.clone(), r.etag.clone());
        let (from, to) = (url(scheme, bucket, &i.key), i.path.display().to_string());
        async move {
            source::delete_object_if_unchanged(store, bucket, &key, etag.as_deref(), &from, &to)
                .await
        }
        .boxed()
    };
    let then: Option<&Then<'_>> = if b.moving { Some(&after) } else { None };
    run_batch(
        ctx,
        store,
        bucket,
        items,
        Way::Down(dir),
        op,
        b.no_resume,
        &describe,
        then,
    )
    .await;
    Ok(())
}

/// Which way a batch goes: uploads with these options, or downloads that stay
/// inside this directory.
enum Way<'a> {
    Up(&'a UploadOptions),
    Down(&'a Path),
}

/// What follows each confirmed transfer of a batch (a move's removal of its
/// source); its error is the object's failure.
type Then<'a> =
    dyn Fn(&BatchItem, &TransferResult) -> futures::future::BoxFuture<'a, Result<()>> + Sync + 'a;

/// Runs a batch through the library (one budget for all objects), printing one
/// line per object and the summary. The batch is journaled unless `no_resume`: a
/// rerun after a crash skips the objects the crashed run finished (unchanged since)
/// and resumes the partial ones.
#[allow(clippy::too_many_arguments)]
async fn run_batch(
    ctx: &Ctx,
    store: &Storage,
    bucket: &str,
    items: Vec<BatchItem>,
    way: Way<'_>,
    op: &str,
    no_resume: bool,
    describe: &(dyn Fn(&BatchItem) -> String + Sync),
    then: Option<&Then<'_>>,
) {
    let (up, root) = match way {
        Way::Up(o) => (Some(o), None),
        Way::Down(dir) => (None, Some(dir.to_path_buf())),
    };
    let total: u64 = items.iter().filter_map(|i| i.size).sum();
    let json = ctx.out.json();
    let ui = Ui::new(ctx.out.quiet(), json, total, items.len() as u64);
    let opts = BatchOptions {
        upload: up.cloned().unwrap_or_default(),
        concurrency: Some(ctx.concurrency()),
        progress: Some(ui.progress()),
        root,
        journal: !no_resume,
        no_resume,
        ..Default::default()
    };
    let before = store.metrics().retries;
    let earlier = ctx.out.failures();
    let mut outcomes = match up {
        Some(_) => store.upload_many(bucket, items, opts),
        None => store.download_many(bucket, items, opts),
    };
    // Bytes interrupted runs had already moved (not sent or received again).
    let mut resumed = 0;
    // With --no-clobber a key that is taken is a skip, not a failure.
    let create_only = up.is_some_and(|o| o.condition == Some(stor::WriteCondition::IfAbsent));
    let taken = |r: &stor::Result<stor::TransferResult>| {
        create_only && matches!(r, Err(e) if e.kind() == stor::ErrorKind::AlreadyExists)
    };
    while let Some(o) = outcomes.next().await {
        if taken(&o.result) {
            ui.skipped();
            let why = "the destination exists (--no-clobber)";
            if json {
                let line = serde_json::json!({
                    "op": op,
                    "path": o.item.path.display().to_string(),
                    "key": o.item.key,
                    "skipped": why,
                });
                ctx.out.say(&line.to_string());
            }
            ctx.out
                .skip(&format!("skipped {}: {why}", describe(&o.item)));
            continue;
        }
        resumed += o.result.as_ref().map_or(0, |r| r.resumed);
        let result: Result<&TransferResult> = match (&o.result, then) {
            (Ok(r), Some(then)) => then(&o.item, r).await.map(|()| r),
            (Ok(r), None) => Ok(r),
            (Err(e), _) => Err(anyhow!("{e}")),
        };
        if json {
            // One JSON object per line, failures included (and counted for the status).
            let line = serde_json::json!({
                "op": op,
                "path": o.item.path.display().to_string(),
                "key": o.item.key,
                "bytes": result.as_ref().ok().map(|r| r.bytes),
                "resumed": result.as_ref().ok().map(|r| r.resumed),
                "etag": result.as_ref().ok().and_then(|r| r.etag.clone()),
                "checksum": result.as_ref().ok().and_then(|r| r.checksum.clone()),
                "error": result.as_ref().err().map(|e| format!("{e:#}")),
            });
            ctx.out.say(&line.to_string());
        }
        match &result {
            Ok(r) => {
                ui.finished(Some(r.bytes));
                if !json && !ctx.out.quiet() && !ui.println(&describe(&o.item)) {
                    ctx.out.note(&describe(&o.item));
                }
            }
            Err(e) => {
                ui.finished(None);
                if json {
                    ctx.out.failed();
                } else {
                    ctx.out.fail(&describe(&o.item), &format!("{e:#}"));
                }
            }
        }
    }
    let skipped = ctx.out.skipped();
    let summary = ui.finish(store.metrics().retries - before, skipped, earlier);
    if json {
        let mut summary = serde_json::json!(summary);
        summary["resumed"] = resumed.into();
        ctx.out
            .say(&serde_json::json!({ "summary": summary }).to_string());
    } else if resumed > 0 {
        ctx.out.note(&format!(
            "resumed: {resumed} of {} bytes were done by an interrupted run; {} moved now",
            summary.bytes,
            summary.bytes.saturating_sub(resumed)
        ));
    }
}

/// Reports the entries a directory walk left out (those the filter would have
/// excluded anyway are not mentioned): failures fail the command, the rest are
/// counted as skipped in its summary.
fn report_skipped(ctx: &Ctx, skipped: &[stor::Skipped], prefix: &str, filter: &Filter) {
    for s in skipped {
        let rel = s.key.as_deref().map(|k| k.get(prefix.len()..).unwrap_or(k));
        if rel.is_some_and(|r| !filter.allows(r.trim_end_matches('/'))) {
            continue;
        }
        if s.failed {
            ctx.out
                .fail(&format!("upload {}", s.path.display()), &s.reason);
        } else {
            ctx.out
                .skip(&format!("skipped {}: {}", s.path.display(), s.reason));
        }
    }
}
