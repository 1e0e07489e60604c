//! `stor cp SRC DST`: one file, a directory (`-r`), stdin or an object, to or from
//! an object; object to object.

use anyhow::Result;
use stor::Location;

use super::cat::to_stdout;
use super::{batch, copy, transfer};
use crate::args::CpArgs;
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::filter::{resolve, Filter, Selection};
use crate::urls::{key_under, parse, tree_prefix, url};

pub async fn cp(ctx: &Ctx, a: &CpArgs) -> Result<Exit> {
    let src = parse(&a.src)?;
    let dst = parse(&a.dst)?;
    let mut opts = copy::upload_opts(&a.upload)?;
    opts.expected_size = a.expected_size;
    opts.no_resume = a.no_resume;
    if a.expected_size.is_some() && (a.recursive || !dst.is_object() || src.is_object()) {
        return Err(usage(
            "--expected-size applies to one upload (a file or - to an object URL)".into(),
        ));
    }
    match (&src, &dst) {
        (
            Location::Path(p),
            Location::Object {
                scheme,
                bucket,
                key,
            },
        ) => {
            let store = ctx.store(*scheme).await?;
            if a.recursive {
                let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
                batch::upload_dir(
                    ctx, store, *scheme, p, bucket, key, &opts, a.dry_run, &filter,
                )
                .await?;
            } else {
                if p.is_dir() {
                    return Err(usage(format!(
                        "{} is a directory; add --recursive",
                        p.display()
                    )));
                }
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| usage(format!("{} names no file", p.display())))?;
                let k = key_under(key, &name);
                if a.dry_run {
                    ctx.out.say(&format!(
                        "(dryrun) upload: {} to {}",
                        p.display(),
                        url(*scheme, bucket, &k)
                    ));
                } else {
                    transfer::upload_file(&ctx.out, store, bucket, &k, p, opts).await?;
                    ctx.out.note(&format!(
                        "upload: {} to {}",
                        p.display(),
                        url(*scheme, bucket, &k)
                    ));
                }
            }
        }
        (
            Location::Stdio,
            Location::Object {
                scheme,
                bucket,
                key,
            },
        ) => {
            if key.is_empty() || key.ends_with('/') {
                return Err(usage(
                    "uploading stdin needs a full key, e.g. s3://bucket/data.bin".into(),
                ));
            }
            let store = ctx.store(*scheme).await?;
            transfer::upload_stdin(&ctx.out, store, bucket, key, opts).await?;
            ctx.out
                .note(&format!("upload: - to {}", url(*scheme, bucket, key)));
        }
        (
            Location::Object {
                scheme,
                bucket,
                key,
            },
            Location::Path(p),
        ) => {
            let store = ctx.store(*scheme).await?;
            let selected = resolve(store, bucket, key).await?;
            if let Selection::Pattern {
                prefix, pattern, ..
            } = &selected
            {
                // s3://b/logs/*.json: the matching keys, named below the wildcard's
                // directory, into the target directory.
                let filter = Filter::glob(pattern)?;
                let url = Some(a.src.as_str());
                batch::download_prefix(
                    ctx,
                    store,
                    *scheme,
                    bucket,
                    prefix,
                    p,
                    a.dry_run,
                    &filter,
                    url,
                    a.no_resume,
                )
                .await?;
            } else if a.recursive {
                let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
                let prefix = tree_prefix(&selected.key());
                batch::download_prefix(
                    ctx,
                    store,
                    *scheme,
                    bucket,
                    &prefix,
                    p,
                    a.dry_run,
                    &filter,
                    None,
                    a.no_resume,
                )
                .await?;
            } else {
                let key = &selected.key();
                if key.is_empty() || key.ends_with('/') {
                    return Err(usage(format!("{} is a prefix; add --recursive", a.src)));
                }
                let name = key.rsplit('/').next().unwrap_or(key);
                let target = if p.is_dir() || a.dst.ends_with('/') {
                    p.join(name)
                } else {
                    p.clone()
                };
                if a.dry_run {
                    ctx.out.say(&format!(
                        "(dryrun) download: {} to {}",
                        url(*scheme, bucket, key),
                        target.display()
                    ));
                } else {
                    transfer::download_file(&ctx.out, store, bucket, key, &target, a.no_resume)
                        .await?;
                    ctx.out.note(&format!(
                        "download: {} to {}",
                        url(*scheme, bucket, key),
                        target.display()
                    ));
                }
            }
        }
        (
            Location::Object {
                scheme,
                bucket,
                key,
            },
            Location::Stdio,
        ) => {
            let store = ctx.store(*scheme).await?;
            to_stdout(&ctx.out, store, bucket, key).await?;
        }
        (Location::Object { .. }, Location::Object { .. }) => {
            let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
            copy::copy_objects(
                ctx,
                &src,
                &dst,
                a.recursive,
                &opts,
                a.dry_run,
                false,
                &filter,
            )
            .await?;
        }
        _ => {
            return Err(usage(format!(
                "cannot copy {} to {}: one side must be s3:// or local:// (use cp(1) for files)",
                a.src, a.dst
            )))
        }
    }
    Ok(ctx.status())
}
