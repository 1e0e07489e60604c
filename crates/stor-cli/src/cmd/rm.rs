//! `stor rm URL`: one object, a tree (`-r`) or what a wildcard matches, deleted
//! in batches.

use std::collections::HashSet;

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
    if a.version_id.is_some() || a.all_versions {
        return rm_versions(ctx, a, store, scheme, &bucket, &key).await;
    }
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

/// `rm --version-id ID` (one version, for good) and `rm --all-versions` (every
/// version and delete marker of the object, or with `-r` under the prefix: a
/// purge).
async fn rm_versions(
    ctx: &Ctx,
    a: &RmArgs,
    store: &Storage,
    scheme: Scheme,
    bucket: &str,
    key: &str,
) -> Result<Exit> {
    let shown = |k: &str, v: &str| format!("{} (version {v})", url(scheme, bucket, k));
    if let Some(v) = &a.version_id {
        if key.is_empty() || key.ends_with('/') {
            return Err(usage(format!("{} names no object", a.url)));
        }
        if a.dry_run {
            ctx.out.say(&format!("(dryrun) delete: {}", shown(key, v)));
        } else {
            store.delete_version(bucket, key, v).await?;
            ctx.out.note(&format!("delete: {}", shown(key, v)));
        }
        return Ok(ctx.status());
    }
    if !a.recursive && (key.is_empty() || key.ends_with('/')) {
        return Err(usage(format!(
            "{} is a prefix; add --recursive to purge every version under it",
            a.url
        )));
    }
    // Under the prefix with -r; else the versions of exactly this key.
    let prefix = if a.recursive {
        tree_prefix(key)
    } else {
        key.to_owned()
    };
    let exact = (!a.recursive).then_some(key);
    // Deleting from a listing while paging through it ends early on moto: the
    // next page's markers name versions that are gone, and it lists nothing
    // after them. So after each deleted page the listing starts over, skipping
    // what was already sent (what failed stays listed); done when a listing has
    // nothing new. A dry run deletes nothing and pages straight through.
    let fresh = || store.list_versions_stream(bucket, ListOptions::default().prefix(&prefix));
    let mut listed = fresh();
    let mut sent = HashSet::new();
    let mut n = 0u64;
    loop {
        let mut batch = Vec::new();
        let mut ended = false;
        while batch.len() < stor::DELETE_BATCH {
            let Some(v) = listed.try_next().await? else {
                ended = true;
                break;
            };
            if exact.is_some_and(|k| v.info.key != k) {
                continue;
            }
            if let Some(id) = v.info.version_id {
                let kv = (v.info.key, id);
                if sent.insert(kv.clone()) {
                    batch.push(kv);
                }
            }
        }
        n += batch.len() as u64;
        if a.dry_run {
            for (k, v) in &batch {
                ctx.out.say(&format!("(dryrun) delete: {}", shown(k, v)));
            }
        } else if !batch.is_empty() {
            for d in store.delete_versions(bucket, &batch).await? {
                match &d.error {
                    None => ctx
                        .out
                        .note(&format!("delete: {}", shown(&d.key, &d.version_id))),
                    Some(e) => ctx
                        .out
                        .fail(&format!("delete {}", shown(&d.key, &d.version_id)), e),
                }
            }
            listed = fresh();
            continue;
        }
        if ended {
            break;
        }
    }
    if n == 0 && !a.recursive {
        return Err(stor::Error::new(
            stor::ErrorKind::KeyNotFound,
            format!("{} has no versions (nothing was deleted)", a.url),
        )
        .into());
    }
    Ok(ctx.status())
}
