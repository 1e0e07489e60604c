//! Many objects at once (`cp -r`, wildcards): a directory up, a prefix down, one
//! line per object and a summary.

use std::path::Path;

use anyhow::{anyhow, Result};
use futures::StreamExt;
use stor::{dir_prefix, BatchItem, BatchOptions, Scheme, Storage, UploadOptions};

use crate::context::Ctx;
use crate::exit::usage;
use crate::filter::Filter;
use crate::progress::Ui;
use crate::urls::url;

/// Uploads the files below `dir` that pass `filter` (matched on the path below
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
    dry_run: bool,
    filter: &Filter,
) -> Result<()> {
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let prefix = dir_prefix(key);
    let plan = stor::plan_upload(dir, &prefix, true)?;
    report_skipped(ctx, &plan.skipped, &prefix, filter);
    let items: Vec<BatchItem> = plan
        .items
        .into_iter()
        .filter(|i| filter.allows(&i.key[prefix.len()..]))
        .collect();
    let describe = |i: &BatchItem| {
        format!(
            "upload: {} to {}",
            i.path.display(),
            url(scheme, bucket, &i.key)
        )
    };
    if dry_run {
        for i in &items {
            ctx.out.say(&format!("(dryrun) {}", describe(i)));
        }
        return Ok(());
    }
    let way = Way::Up(opts);
    run_batch(ctx, store, bucket, items, way, opts.no_resume, &describe).await;
    Ok(())
}

/// Downloads the objects under `prefix` that pass `filter` (matched on the key
/// below the prefix) into `dir`.
#[allow(clippy::too_many_arguments)]
pub async fn download_prefix(
    ctx: &Ctx,
    store: &Storage,
    scheme: Scheme,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    dry_run: bool,
    filter: &Filter,
    pattern: Option<&str>,
    no_resume: bool,
) -> Result<()> {
    let mut items = Vec::new();
    let mut refused = 0;
    for planned in store.plan_download(bucket, prefix, dir).await? {
        match planned {
            Ok(i) if filter.allows(&i.key[prefix.len()..]) => items.push(i),
            Ok(_) => {}
            Err(e) if e.key().is_some_and(|k| !filter.allows(&k[prefix.len()..])) => {}
            Err(e) => {
                refused += 1;
                ctx.out.fail("download", &e)
            }
        }
    }
    if let (Some(url), true) = (pattern, items.is_empty() && refused == 0) {
        return Err(anyhow!("no objects match {url}"));
    }
    let describe = |i: &BatchItem| {
        format!(
            "download: {} to {}",
            url(scheme, bucket, &i.key),
            i.path.display()
        )
    };
    if dry_run {
        for i in &items {
            ctx.out.say(&format!("(dryrun) {}", describe(i)));
        }
        return Ok(());
    }
    run_batch(
        ctx,
        store,
        bucket,
        items,
        Way::Down(dir),
        no_resume,
        &describe,
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

/// Runs a batch through the library (one budget for all objects), printing one
/// line per object and the summary. The batch is journaled unless `no_resume`: a
/// rerun after a crash skips the objects the crashed run finished (unchanged since)
/// and resumes the partial ones.
async fn run_batch(
    ctx: &Ctx,
    store: &Storage,
    bucket: &str,
    items: Vec<BatchItem>,
    way: Way<'_>,
    no_resume: bool,
    describe: &(dyn Fn(&BatchItem) -> String + Sync),
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
    let op = if up.is_some() { "upload" } else { "download" };
    let mut outcomes = match up {
        Some(_) => store.upload_many(bucket, items, opts),
        None => store.download_many(bucket, items, opts),
    };
    // Bytes interrupted runs had already moved (not sent or received again).
    let mut resumed = 0;
    while let Some(o) = outcomes.next().await {
        resumed += o.result.as_ref().map_or(0, |r| r.resumed);
        if json {
            // One JSON object per line, failures included (and counted for the status).
            let line = serde_json::json!({
                "op": op,
                "path": o.item.path.display().to_string(),
                "key": o.item.key,
                "bytes": o.result.as_ref().ok().map(|r| r.bytes),
                "resumed": o.result.as_ref().ok().map(|r| r.resumed),
                "etag": o.result.as_ref().ok().and_then(|r| r.etag.clone()),
                "checksum": o.result.as_ref().ok().and_then(|r| r.checksum.clone()),
                "error": o.result.as_ref().err().map(|e| e.to_string()),
            });
            ctx.out.say(&line.to_string());
        }
        match &o.result {
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
                    ctx.out.fail(&describe(&o.item), e);
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
