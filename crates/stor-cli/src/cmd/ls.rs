//! Looking at what is stored: `stor ls` (buckets, one level, or `-r` a tree),
//! `stor stat` (one object) and `stor du` (a tree's count and bytes).

use anyhow::Result;
use futures::TryStreamExt;
use stor::{ListOptions, ObjectInfo, Scheme, Storage};

use crate::args::{DuArgs, LsArgs, StatArgs};
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::output::human;
use crate::urls::{object, tree_prefix, url};

fn date(o: &ObjectInfo) -> String {
    o.last_modified
        .map(|t| {
            stor::format_time(t)
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_owned()
        })
        .unwrap_or_else(|| " ".repeat(19))
}

pub async fn ls(ctx: &Ctx, a: &LsArgs) -> Result<Exit> {
    let bucket_listing = Scheme::ALL.into_iter().find(|s| {
        let u = a.url.as_str();
        u.strip_suffix("//").unwrap_or(u).strip_suffix(':') == Some(s.as_str())
    });
    if let Some(scheme) = bucket_listing {
        let store = ctx.store(scheme).await?;
        for b in store.list_buckets().await? {
            if a.json {
                ctx.out.say(&serde_json::json!({ "bucket": b }).to_string());
            } else {
                ctx.out.say(&format!("{}://{b}", scheme.as_str()));
            }
        }
        return Ok(ctx.status());
    }
    let (scheme, bucket, key) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
    if a.all_versions {
        return versions(ctx, a, store, &bucket, &key).await;
    }
    // Names are shown relative to the listed "directory", like aws s3 ls.
    let base = match key.rfind('/') {
        Some(i) if !a.recursive => &key[..=i],
        _ => "",
    };
    let (mut count, mut total) = (0u64, 0u64);
    // Recursive: the tree below the "directory" the URL names (see `tree_prefix`).
    let mut opts = ListOptions::default().prefix(if a.recursive {
        tree_prefix(&key)
    } else {
        key.clone()
    });
    if !a.recursive {
        opts = opts.delimiter("/");
    }
    loop {
        let page = store.list(bucket.as_str(), opts.clone()).await?;
        for p in &page.common_prefixes {
            if a.json {
                ctx.out.say(&serde_json::json!({ "prefix": p }).to_string());
            } else {
                ctx.out.say(&format!("{:>30} PRE {}", "", &p[base.len()..]));
            }
        }
        for o in &page.objects {
            count += 1;
            total += o.size;
            if a.json {
                ctx.out.say(&serde_json::to_string(o)?);
            } else {
                let size = if a.human_readable {
                    human(o.size)
                } else {
                    o.size.to_string()
                };
                ctx.out.say(&format!(
                    "{} {:>10} {}",
                    date(o),
                    size,
                    &o.key[base.len()..]
                ));
            }
        }
        match page.next_continuation_token {
            Some(t) => opts.continuation_token = Some(t),
            None => break,
        }
    }
    if a.summarize {
        if a.json {
            ctx.out
                .say(&serde_json::json!({ "objects": count, "bytes": total }).to_string());
        } else {
            let size = if a.human_readable {
                human(total)
            } else {
                total.to_string()
            };
            ctx.out.say("");
            ctx.out.say(&format!("Total Objects: {count}"));
            ctx.out.say(&format!("   Total Size: {size}"));
        }
    }
    Ok(ctx.status())
}

/// `ls --all-versions`: every version and delete marker, page by page, newest
/// first per key; one level (with common prefixes) unless `-r`.
async fn versions(ctx: &Ctx, a: &LsArgs, store: &Storage, bucket: &str, key: &str) -> Result<Exit> {
    let base = match key.rfind('/') {
        Some(i) if !a.recursive => &key[..=i],
        _ => "",
    };
    let mut opts = ListOptions::default().prefix(if a.recursive {
        tree_prefix(key)
    } else {
        key.to_owned()
    });
    if !a.recursive {
        opts = opts.delimiter("/");
    }
    let (mut count, mut total) = (0u64, 0u64);
    loop {
        let page = store.list_versions(bucket, opts.clone()).await?;
        for p in &page.common_prefixes {
            if a.json {
                ctx.out.say(&serde_json::json!({ "prefix": p }).to_string());
            } else {
                ctx.out.say(&format!("{:>30} PRE {}", "", &p[base.len()..]));
            }
        }
        for v in &page.versions {
            count += 1;
            total += v.info.size;
            if a.json {
                ctx.out.say(&serde_json::to_string(v)?);
                continue;
            }
            let size = if a.human_readable {
                human(v.info.size)
            } else {
                v.info.size.to_string()
            };
            // Date, size, version id, what it is, then the key (last: it may hold
            // spaces).
            let what = match (v.delete_marker, v.is_latest) {
                (true, true) => "DELETED",
                (true, false) => "deleted",
                (false, true) => "LATEST ",
                (false, false) => "       ",
            };
            ctx.out.say(&format!(
                "{} {:>10} {:<32} {what} {}",
                date(&v.info),
                size,
                v.info.version_id.as_deref().unwrap_or("null"),
                &v.info.key[base.len()..]
            ));
        }
        match page.next_continuation_token {
            Some(t) => opts.continuation_token = Some(t),
            None => break,
        }
    }
    if a.summarize {
        if a.json {
            ctx.out
                .say(&serde_json::json!({ "versions": count, "bytes": total }).to_string());
        } else {
            ctx.out.say("");
            ctx.out.say(&format!("Total Versions: {count}"));
            ctx.out.say(&format!("    Total Size: {total}"));
        }
    }
    Ok(ctx.status())
}

pub async fn stat(ctx: &Ctx, a: &StatArgs) -> Result<Exit> {
    let (scheme, bucket, key) = object(&a.url)?;
    if key.is_empty() {
        return Err(usage(format!("{} names no object", a.url)));
    }
    let store = ctx.store(scheme).await?;
    let info = match &a.version_id {
        Some(v) => store.info_version(bucket.as_str(), &key, v).await?,
        None => store.info(bucket.as_str(), &key).await?,
    };
    // Tags are a request of their own (HEAD does not carry them): asked where the
    // store keeps them, of the current object.
    let tags = match store.capabilities().tags && a.version_id.is_none() {
        true => Some(store.tags(bucket.as_str(), &key).await?),
        false => None,
    };
    if a.json {
        let mut v = serde_json::to_value(&info)?;
        if let (Some(t), Some(m)) = (&tags, v.as_object_mut()) {
            m.insert("tags".into(), serde_json::to_value(t)?);
        }
        ctx.out.say(&v.to_string());
    } else {
        ctx.out
            .say(&format!("URL:           {}", url(scheme, &bucket, &key)));
        if let Some(v) = &info.version_id {
            ctx.out.say(&format!("Version-Id:    {v}"));
        }
        ctx.out.say(&format!(
            "Size:          {} ({})",
            info.size,
            human(info.size)
        ));
        ctx.out.say(&format!(
            "Last-Modified: {}",
            info.last_modified
                .map(stor::format_time)
                .unwrap_or_default()
        ));
        ctx.out.say(&format!(
            "ETag:          {}",
            info.etag.as_deref().unwrap_or("")
        ));
        ctx.out.say(&format!(
            "Content-Type:  {}",
            info.content_type.as_deref().unwrap_or("")
        ));
        if let Some(sc) = &info.storage_class {
            ctx.out.say(&format!("Storage-Class: {sc}"));
        }
        for (k, v) in [
            ("Cache-Control", &info.cache_control),
            ("Content-Disposition", &info.content_disposition),
            ("Content-Encoding", &info.content_encoding),
        ] {
            if let Some(v) = v {
                ctx.out.say(&format!("{k}: {v}"));
            }
        }
        if let Some((algo, value)) = &info.checksum {
            ctx.out
                .say(&format!("Checksum:      {}:{value}", algo.name()));
        }
        for (k, v) in &info.metadata {
            ctx.out.say(&format!("Metadata:      {k}={v}"));
        }
        for (k, v) in tags.iter().flatten() {
            ctx.out.say(&format!("Tag:           {k}={v}"));
        }
    }
    Ok(ctx.status())
}

pub async fn du(ctx: &Ctx, a: &DuArgs) -> Result<Exit> {
    let (scheme, bucket, key) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
    let (count, bytes) = store
        .list_stream(
            bucket.as_str(),
            ListOptions::default().prefix(tree_prefix(&key)),
        )
        .try_fold(
            (0u64, 0u64),
            |(n, b), o| async move { Ok((n + 1, b + o.size)) },
        )
        .await?;
    if a.json {
        ctx.out.say(
            &serde_json::json!({ "url": a.url, "objects": count, "bytes": bytes }).to_string(),
        );
    } else {
        let size = if a.human_readable {
            human(bytes)
        } else {
            bytes.to_string()
        };
        let size = if a.human_readable {
            size
        } else {
            format!("{size} bytes")
        };
        ctx.out
            .say(&format!("{size} in {count} objects\t{}", a.url));
    }
    Ok(ctx.status())
}
