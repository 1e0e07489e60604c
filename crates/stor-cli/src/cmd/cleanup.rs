//! `stor cleanup URL`: discard interrupted transfers the journal keeps for resuming
//! and abort stale multipart uploads; in the local store, also remove what writes
//! that never finished left behind.

use anyhow::Result;
use stor::Scheme;

use crate::args::CleanupArgs;
use crate::context::Ctx;
use crate::exit::Exit;
use crate::urls::{object, url};

pub async fn cleanup(ctx: &Ctx, a: &CleanupArgs) -> Result<Exit> {
    let (scheme, bucket, prefix) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
    let cutoff = std::time::SystemTime::now().checked_sub(a.older_than);
    if a.dry_run {
        for t in store
            .interrupted_transfers(bucket.as_str(), &prefix)
            .await?
        {
            if cutoff.is_some_and(|c| t.updated <= c) {
                ctx.out
                    .say(&format!("(dryrun) discard: {}", interrupted(scheme, &t)));
            }
        }
        for u in store.list_uploads(bucket.as_str(), &prefix).await? {
            let stale = matches!((u.initiated, cutoff), (Some(t), Some(c)) if t <= c)
                || u.initiated.is_none();
            if stale {
                ctx.out.say(&format!(
                    "(dryrun) abort: {} {}",
                    url(scheme, &bucket, &u.key),
                    u.upload_id
                ));
            }
        }
        return Ok(ctx.status());
    }
    // First the journal's own (their uploads aborted, partial files removed, records
    // gone), so none is left naming an upload the sweep below aborts.
    let discarded = store
        .discard_interrupted(bucket.as_str(), &prefix, a.older_than)
        .await?;
    for t in &discarded {
        ctx.out
            .note(&format!("discard: {}", interrupted(scheme, t)));
    }
    if !discarded.is_empty() {
        ctx.out.note(&format!(
            "discarded {} interrupted transfer(s)",
            discarded.len()
        ));
    }
    let aborted = store
        .abort_stale_uploads(bucket.as_str(), &prefix, a.older_than)
        .await?;
    for u in &aborted {
        ctx.out.note(&format!(
            "abort: {} {}",
            url(scheme, &bucket, &u.key),
            u.upload_id
        ));
    }
    ctx.out.note(&format!(
        "aborted {} stale multipart upload(s)",
        aborted.len()
    ));
    if scheme == Scheme::Local {
        // The local store's leftovers are files, for the whole store, not per bucket.
        let r = store.sweep().await?;
        ctx.out.note(&format!(
            "removed {} temp file(s) ({} bytes) and {} orphan blob(s) ({} bytes) \
             left by writes that never finished",
            r.temp_files, r.temp_bytes, r.orphan_blobs, r.orphan_bytes
        ));
    }
    Ok(ctx.status())
}

/// An interrupted transfer as `cleanup` names it: which way, the object, the file,
/// and how far it got.
fn interrupted(scheme: Scheme, t: &stor::Interrupted) -> String {
    let (way, from, to) = match t.kind {
        stor::TransferKind::Upload => (
            "upload",
            t.path.display().to_string(),
            url(scheme, &t.bucket, &t.key),
        ),
        stor::TransferKind::Download => (
            "download",
            url(scheme, &t.bucket, &t.key),
            t.path.display().to_string(),
        ),
    };
    format!("{way} {from} to {to} ({} of {} bytes done)", t.done, t.size)
}
