//! `stor cleanup URL`: abort stale multipart uploads; in the local store, also
//! remove what writes that never finished left behind.

use anyhow::Result;
use stor::Scheme;

use crate::args::CleanupArgs;
use crate::context::Ctx;
use crate::exit::Exit;
use crate::urls::{object, url};

pub async fn cleanup(ctx: &Ctx, a: &CleanupArgs) -> Result<Exit> {
    let (scheme, bucket, prefix) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
    if a.dry_run {
        let cutoff = std::time::SystemTime::now().checked_sub(a.older_than);
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
