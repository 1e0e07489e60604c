//! `stor mv SRC DST`: copy, confirm, then delete the source.

use anyhow::{Context as _, Result};
use stor::Location;

use super::copy::{copy_objects, upload_opts};
use super::transfer;
use crate::args::MvArgs;
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::filter::Filter;
use crate::urls::{key_under, parse, url};

pub async fn mv(ctx: &Ctx, a: &MvArgs) -> Result<Exit> {
    let src = parse(&a.src)?;
    let dst = parse(&a.dst)?;
    let opts = upload_opts(&a.upload)?;
    match (&src, &dst) {
        (Location::Object { .. }, Location::Object { .. }) => {
            let all = Filter::default();
            copy_objects(ctx, &src, &dst, false, &opts, false, true, &all).await?;
        }
        (
            Location::Path(p),
            Location::Object {
                scheme,
                bucket,
                key,
            },
        ) => {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let k = key_under(key, &name);
            let store = ctx.store(*scheme).await?;
            transfer::upload_file(&ctx.out, store, bucket, &k, p, opts).await?;
            // The upload is confirmed (it returned Ok): only now remove the file.
            std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
            ctx.out.note(&format!(
                "move: {} to {}",
                p.display(),
                url(*scheme, bucket, &k)
            ));
        }
        (
            Location::Object {
                scheme,
                bucket,
                key,
            },
            Location::Path(p),
        ) => {
            let name = key.rsplit('/').next().unwrap_or(key);
            let target = if p.is_dir() { p.join(name) } else { p.clone() };
            // A FIFO or device would take the bytes and keep none: deleting the
            // object after that would lose it.
            if let Ok(m) = std::fs::metadata(&target) {
                if !m.is_file() {
                    return Err(usage(format!(
                        "{} is not a regular file; mv needs one to keep the object's bytes \
                         (use cp to write into it)",
                        target.display()
                    )));
                }
            }
            let store = ctx.store(*scheme).await?;
            transfer::download_file(&ctx.out, store, bucket, key, &target, false).await?;
            store.delete(bucket.as_str(), key).await?;
            ctx.out.note(&format!(
                "move: {} to {}",
                url(*scheme, bucket, key),
                target.display()
            ));
        }
        _ => return Err(usage(format!("cannot move {} to {}", a.src, a.dst))),
    }
    Ok(ctx.status())
}
