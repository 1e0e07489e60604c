//! `stor rm URL`: one object, a tree (`-r`) or what a wildcard matches, deleted
//! in batches.

use anyhow::{anyhow, Result};
use futures::{StreamExt, TryStreamExt};
use stor::{ListOptions, Scheme, Storage};

use crate::args::RmArgs;
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::filter::{resolve, Filter, Selection};
use crate::urls::{object, tree_prefix, url};

pub async fn rm(ctx: &Ctx, a: &RmArgs) -> Result<Exit> {
    let (scheme, bucket, key) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
    let key = match resolve(store, &bucket, &key).await? {
        Selection::Pattern {
            prefix, pattern, ..
        } => {
            let filter = Filter::glob(&pattern)?;
            let n = delete_under(
                ctx,
                store,
                scheme,
                &bucket,
                &prefix,
                Some(&filter),
                a.dry_run,
            )
            .await?;
            if n == 0 {
                return Err(anyhow!("no objects match {} (nothing was deleted)", a.url));
            }
            return Ok(ctx.status());
        }
        Selection::Key(k) => k,
    };
    if !a.recursive {
        if key.is_empty() || key.ends_with('/') {
            return Err(usage(format!(
                "{} is a prefix; add --recursive to delete under it",
                a.url
            )));
        }
        if a.dry_run {
            ctx.out
                .say(&format!("(dryrun) delete: {}", url(scheme, &bucket, &key)));
        } else {
            store.delete(bucket.as_str(), &key).await?;
            ctx.out
                .note(&format!("delete: {}", url(scheme, &bucket, &key)));
        }
        return Ok(ctx.status());
    }
    delete_under(
        ctx,
        store,
        scheme,
        &bucket,
        &tree_prefix(&key),
        None,
        a.dry_run,
    )
    .await?;
    Ok(ctx.status())
}

/// Deletes the keys under `prefix` (those whose rest passes `filter`, when given),
/// in batches; returns how many were (or, with `dry_run`, would be) deleted.
pub async fn delete_under(
    ctx: &Ctx,
    store: &Storage,
    scheme: Scheme,
    bucket: &str,
    prefix: &str,
    filter: Option<&Filter>,
    dry_run: bool,
) -> Result<u64> {
    let mut keys = store
        .list_stream(bucket, ListOptions::default().prefix(prefix.to_owned()))
        .map_ok(|o| o.key)
        .try_filter(|k| {
            let keep = filter.is_none_or(|f| f.allows(&k[prefix.len()..]));
            std::future::ready(keep)
        })
        .try_chunks(stor::DELETE_BATCH);
    let mut n = 0;
    while let Some(chunk) = keys.next().await {
        let chunk = chunk.map_err(|e| e.1)?;
        n += chunk.len() as u64;
        if dry_run {
            for k in &chunk {
                ctx.out
                    .say(&format!("(dryrun) delete: {}", url(scheme, bucket, k)));
            }
            continue;
        }
        for r in store.delete_many(bucket, &chunk).await? {
            match &r.error {
                None => ctx
                    .out
                    .note(&format!("delete: {}", url(scheme, bucket, &r.key))),
                Some(e) => ctx
                    .out
                    .fail(&format!("delete {}", url(scheme, bucket, &r.key)), e),
            }
        }
    }
    Ok(n)
}
