//! `stor cp SRC DST`: one file, a directory (`-r`), stdin or an object, to or from
//! an object; object to object.

use anyhow::Result;
use stor::{Location, WriteCondition};

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
    if a.expected_size.is_some() && (a.recursive || !dst.is_object() || src.is_object()) {
        return Err(usage(
            "--expected-size applies to one upload (a file or - to an object URL)".into(),
        ));
    }
    opts.condition = write_condition(a, &src, &dst)?;
    let version = a.version_id.as_deref();
    if version.is_some() && (!src.is_object() || a.recursive) {
        return Err(usage(
            "--version-id names a version of one source object (s3://BUCKET/KEY)".into(),
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
                    let what = format!("upload {}", p.display());
                    let sent = transfer::upload_file(&ctx.out, store, bucket, &k, p, opts.clone())
                        .await
                        .map_err(anyhow::Error::from);
                    match sent {
                        Ok(_) => ctx.out.note(&format!(
                            "upload: {} to {}",
                            p.display(),
                            url(*scheme, bucket, &k)
                        )),
                        Err(e) if copy::clobber_avoided(ctx, &opts, &e, &what) => {}
                        Err(e) => return Err(e),
                    }
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
            let sent = transfer::upload_stdin(&ctx.out, store, bucket, key, opts.clone())
                .await
                .map_err(anyhow::Error::from);
            match sent {
                Ok(_) => ctx
                    .out
                    .note(&format!("upload: - to {}", url(*scheme, bucket, key))),
                Err(e) if copy::clobber_avoided(ctx, &opts, &e, "upload -") => {}
                Err(e) => return Err(e),
            }
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
            let selected = match version {
                // A version names one object as it is: no wildcard.
                Some(_) => Selection::Key(key.clone()),
                None => resolve(store, bucket, key).await?,
            };
            if let Selection::Pattern {
                prefix, pattern, ..
            } = &selected
            {
                // s3://b/logs/*.json: the matching keys, named below the wildcard's
                // directory, into the target directory.
                let filter = Filter::glob(pattern)?;
                let url = Some(a.src.as_str());
                batch::download_prefix(
                    ctx, store, *scheme, bucket, prefix, p, a.dry_run, &filter, url,
                )
                .await?;
            } else if a.recursive {
                let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
                let prefix = tree_prefix(&selected.key());
                batch::download_prefix(
                    ctx, store, *scheme, bucket, &prefix, p, a.dry_run, &filter, None,
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
                    transfer::download_file(&ctx.out, store, bucket, key, version, &target).await?;
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
            to_stdout(&ctx.out, store, bucket, key, version).await?;
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
                version,
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

/// The condition `--no-clobber` or `--if-match` puts on what `cp` writes: objects
/// only (a file is not a store that checks conditions), and `--if-match` names one
/// object's ETag, so one destination.
fn write_condition(a: &CpArgs, src: &Location, dst: &Location) -> Result<Option<WriteCondition>> {
    if !(a.no_clobber || a.if_match.is_some()) {
        return Ok(None);
    }
    if !dst.is_object() {
        return Err(usage(
            "--no-clobber and --if-match apply to writes to s3:// or local:// (uploads and \
             copies), not to files"
                .into(),
        ));
    }
    Ok(match &a.if_match {
        Some(_)
            if a.recursive
                || matches!(src, Location::Object { key, .. } if key.contains(['*', '?', '['])) =>
        {
            return Err(usage(
                "--if-match names one object's ETag: give one source, not --recursive or a \
                 wildcard"
                    .into(),
            ))
        }
        Some(etag) => Some(WriteCondition::IfMatch(etag.clone())),
        None => Some(WriteCondition::IfAbsent),
    })
}
