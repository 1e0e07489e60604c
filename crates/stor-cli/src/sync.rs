//! `stor sync SRC DST`: make the destination hold what the source holds, moving
//! only what is new or changed — by size and modification time, or by content with
//! `--checksum` (the local file's CRC64NVME against the one stored with the
//! object) — and, with `--delete`, removing what the source does not have.
//! Downloaded files get the object's modification time, so a second sync finds
//! nothing to do.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;
use futures::TryStreamExt;
use stor::{BatchItem, ChecksumAlgorithm, ListOptions, Location, Storage};

use crate::args::SyncArgs;
use crate::commands::{run_batch, tree_prefix, url, usage, Ctx, Way};
use crate::ui::Filter;

/// What is on the other side, per relative path: size, modified time.
type Side = HashMap<String, (u64, Option<SystemTime>)>;

async fn remote_side(store: &Storage, bucket: &str, prefix: &str) -> Result<Side> {
    Ok(store
        .list_stream(bucket, ListOptions::default().prefix(prefix.to_owned()))
        .map_ok(|o| (o.key[prefix.len()..].to_owned(), (o.size, o.last_modified)))
        .try_collect()
        .await?)
}

/// The local file's checksum, as stored with objects.
fn local_checksum(path: &Path) -> Option<String> {
    let data = std::fs::read(path).ok()?;
    ChecksumAlgorithm::Crc64nvme.of(&data).map(|c| c.encoded())
}

/// Whether the copy at the destination differs from the source.
async fn differs(
    a: &SyncArgs,
    store: &Storage,
    bucket: &str,
    key: &str,
    local: &Path,
    src_newer: bool,
    sizes_differ: bool,
) -> bool {
    if sizes_differ {
        return true;
    }
    if !a.checksum {
        return src_newer;
    }
    let stored = store
        .info(bucket, key)
        .await
        .ok()
        .and_then(|i| stor::checksum::stored_in(&i.metadata));
    match (stored, local_checksum(local)) {
        (Some((ChecksumAlgorithm::Crc64nvme, remote)), Some(mine)) => remote != mine,
        _ => true, // nothing to compare: copy to be sure
    }
}

/// O_NOFOLLOW (Linux value; the CLI does not link libc).
fn libc_o_nofollow() -> i32 {
    0o400000
}

pub async fn sync(ctx: &Ctx, a: &SyncArgs) -> Result<u8> {
    ctx.json.store(a.json, std::sync::atomic::Ordering::Relaxed);
    let src: Location = a.src.parse()?;
    let dst: Location = a.dst.parse()?;
    let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
    match (&src, &dst) {
        (
            Location::Path(dir),
            Location::Object {
                scheme,
                bucket,
                key,
            },
        ) => {
            if !dir.is_dir() {
                return Err(usage(format!("{} is not a directory", dir.display())));
            }
            let store = ctx.store(*scheme).await?;
            let prefix = tree_prefix(key);
            let remote = remote_side(store, bucket, &prefix).await?;
            let mut todo = Vec::new();
            let mut local_keys = std::collections::HashSet::new();
            let plan = stor::plan_upload(dir, &prefix, true)?;
            ctx.report_skipped(&plan.skipped, &prefix, &filter);
            // What exists in the source but was left out is never deleted remotely.
            let kept: Vec<&str> = plan
                .skipped
                .iter()
                .filter_map(|s| s.key.as_deref())
                .map(|k| &k[prefix.len()..])
                .collect();
            let protected = |rel: &str| {
                kept.iter()
                    .any(|k| rel == *k || (k.ends_with('/') && rel.starts_with(k)))
            };
            for item in plan.items {
                let rel = item.key[prefix.len()..].to_owned();
                if !filter.allows(&rel) {
                    continue;
                }
                local_keys.insert(rel.clone());
                let size = item.size.unwrap_or(0);
                let changed = match remote.get(&rel) {
                    None => true,
                    Some((rsize, rtime)) => {
                        let mtime = std::fs::metadata(&item.path)
                            .and_then(|m| m.modified())
                            .ok();
                        let newer = matches!((mtime, rtime), (Some(l), Some(r)) if l > *r);
                        differs(
                            a,
                            store,
                            bucket,
                            &item.key,
                            &item.path,
                            newer,
                            *rsize != size,
                        )
                        .await
                    }
                };
                if changed {
                    todo.push(item);
                }
            }
            let describe = |i: &BatchItem| {
                format!(
                    "upload: {} to {}",
                    i.path.display(),
                    url(*scheme, bucket, &i.key)
                )
            };
            let extras: Vec<String> = remote
                .keys()
                .filter(|rel| filter.allows(rel) && !local_keys.contains(*rel) && !protected(rel))
                .map(|rel| format!("{prefix}{rel}"))
                .collect();
            if a.dry_run {
                for i in &todo {
                    ctx.say(&format!("(dryrun) {}", describe(i)));
                }
                if a.delete {
                    for k in &extras {
                        ctx.say(&format!("(dryrun) delete: {}", url(*scheme, bucket, k)));
                    }
                }
                return Ok(ctx.status());
            }
            let opts = stor::UploadOptions::default();
            run_batch(ctx, store, bucket, todo, Way::Up(&opts), &describe).await;
            if a.delete && !extras.is_empty() {
                for r in store.delete_many(bucket.as_str(), &extras).await? {
                    match &r.error {
                        None => ctx.note(&format!("delete: {}", url(*scheme, bucket, &r.key))),
                        Some(e) => ctx.fail(&format!("delete {}", url(*scheme, bucket, &r.key)), e),
                    }
                }
            }
        }
        (
            Location::Object {
                scheme,
                bucket,
                key,
            },
            Location::Path(dir),
        ) => {
            let store = ctx.store(*scheme).await?;
            let prefix = tree_prefix(key);
            let mut todo = Vec::new();
            let mut remote_paths = std::collections::HashSet::new();
            let mut times = HashMap::new();
            let objects: Vec<stor::ObjectInfo> = store
                .list_stream(
                    bucket.as_str(),
                    ListOptions::default().prefix(prefix.clone()),
                )
                .try_collect()
                .await?;
            for o in objects {
                let rel = o.key[prefix.len()..].to_owned();
                if rel.is_empty() || o.key.ends_with('/') || !filter.allows(&rel) {
                    continue;
                }
                let path = match stor::path_under(dir, &rel) {
                    Ok(p) => p,
                    Err(e) => {
                        ctx.fail("sync", &e);
                        continue;
                    }
                };
                remote_paths.insert(path.clone());
                let changed = match std::fs::metadata(&path) {
                    Err(_) => true,
                    Ok(m) => {
                        let newer = matches!((o.last_modified, m.modified().ok()),
                            (Some(r), Some(l)) if r > l);
                        differs(a, store, bucket, &o.key, &path, newer, m.len() != o.size).await
                    }
                };
                if changed {
                    times.insert(path.clone(), o.last_modified);
                    todo.push(BatchItem {
                        path,
                        key: o.key.clone(),
                        size: Some(o.size),
                    });
                }
            }
            let describe = |i: &BatchItem| {
                format!(
                    "download: {} to {}",
                    url(*scheme, bucket, &i.key),
                    i.path.display()
                )
            };
            let mut extras = Vec::new();
            if a.delete && dir.is_dir() {
                // Not following links: only regular files inside the directory go.
                for item in stor::plan_upload(dir, "", false)?.items {
                    if filter.allows(&item.key) && !remote_paths.contains(&item.path) {
                        extras.push(item.path);
                    }
                }
            }
            if a.dry_run {
                for i in &todo {
                    ctx.say(&format!("(dryrun) {}", describe(i)));
                }
                for p in &extras {
                    ctx.say(&format!("(dryrun) delete: {}", p.display()));
                }
                return Ok(ctx.status());
            }
            let paths: Vec<_> = todo.iter().map(|i| i.path.clone()).collect();
            run_batch(ctx, store, bucket, todo, Way::Down(dir), &describe).await;
            // The object's time on the file, so the next sync sees it unchanged.
            // Only regular files, never through a link (nor into a FIFO's open).
            for p in paths {
                use std::os::unix::fs::OpenOptionsExt;
                let regular = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
                let file = || {
                    std::fs::File::options()
                        .write(true)
                        .custom_flags(libc_o_nofollow())
                        .open(&p)
                };
                if let (true, Some(Some(t))) = (regular, times.get(&p)) {
                    if let Ok(f) = file() {
                        let _ = f.set_modified(*t);
                    }
                }
            }
            for p in extras {
                match std::fs::remove_file(&p) {
                    Ok(()) => ctx.note(&format!("delete: {}", p.display())),
                    Err(e) => ctx.fail(&format!("delete {}", p.display()), &e),
                }
            }
        }
        _ => {
            return Err(usage(format!(
                "sync goes between a directory and a prefix: {} -> {}",
                a.src, a.dst
            )))
        }
    }
    Ok(ctx.status())
}
