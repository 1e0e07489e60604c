//! `stor mv SRC DST`: copy, confirm, then remove the source — only if it is still
//! what was copied (see `source.rs`). A file, a directory (`-r`) or objects, to or
//! from objects; object to object.

use anyhow::Result;
use stor::Location;

use super::batch::{self, Batch};
use super::copy::{copy_objects, upload_opts, Copying};
use super::cp::{file_key, one_done, target_of, OneUpload, Upload};
use super::report::{file_object, Report};
use super::source::{self, FileState};
use super::transfer;
use crate::args::MvArgs;
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::filter::{resolve, Filter, Selection};
use crate::urls::{parse, tree_prefix, url};

pub async fn mv(ctx: &Ctx, a: &MvArgs) -> Result<Exit> {
    let src = parse(&a.src)?;
    let dst = parse(&a.dst)?;
    let mut opts = upload_opts(&a.upload)?;
    opts.no_resume = a.no_resume;
    let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
    let batch = Batch {
        filter: &filter,
        dry_run: a.dry_run,
        moving: true,
        no_resume: a.no_resume,
    };
    match (&src, &dst) {
        (Location::Object { .. }, Location::Object { .. }) => {
            let c = Copying {
                recursive: a.recursive,
                dry_run: a.dry_run,
                delete_source: true,
                filter: &filter,
                opts: &opts,
                version: None,
            };
            copy_objects(ctx, &src, &dst, &c).await?;
        }
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
                batch::upload_dir(ctx, store, *scheme, p, bucket, key, &opts, &batch).await?;
                return Ok(ctx.status());
            }
            let k = file_key(p, key, "move")?;
            let to = Upload {
                store,
                scheme: *scheme,
                bucket,
                key: &k,
            };
            let shown = p.display().to_string();
            let Some(one) = OneUpload::plan(ctx, to, &shown, "move", a.dry_run).await? else {
                return Ok(ctx.status());
            };
            let before = FileState::of(p).map_err(|e| usage(format!("{shown}: {e}")))?;
            let r = async {
                let r = one.to.file(ctx, p, opts).await?;
                // The upload is confirmed: now the file goes, if it did not change
                // after the upload last read it.
                source::remove_file_if_unchanged(p, &before)?;
                Ok::<_, anyhow::Error>(r)
            }
            .await;
            one_done(&one.report, &one.text, one.obj, r)?;
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
                let glob = Filter::glob(pattern)?;
                let batch = Batch {
                    filter: &glob,
                    ..batch
                };
                let url = Some(a.src.as_str());
                batch::download_prefix(ctx, store, *scheme, bucket, prefix, p, &batch, url).await?;
                return Ok(ctx.status());
            }
            if a.recursive {
                let prefix = tree_prefix(&selected.key());
                batch::download_prefix(ctx, store, *scheme, bucket, &prefix, p, &batch, None)
                    .await?;
                return Ok(ctx.status());
            }
            let key = &selected.key();
            if key.is_empty() || key.ends_with('/') {
                return Err(usage(format!("{} is a prefix; add --recursive", a.src)));
            }
            let target = target_of(key, p, &a.dst);
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
            let (from, shown) = (url(*scheme, bucket, key), target.display().to_string());
            let report = Report::new(ctx, &[store]);
            let text = format!("move: {from} to {shown}");
            let obj = file_object("move", &shown, key);
            if a.dry_run {
                report.planned(&text, obj);
                return Ok(ctx.status());
            }
            let r = async {
                let r = transfer::download_file(
                    &ctx.out,
                    store,
                    bucket,
                    key,
                    None,
                    &target,
                    a.no_resume,
                )
                .await?;
                // The file is complete and verified: now the object goes, if it is
                // still the version downloaded.
                let etag = r.etag.as_deref();
                source::delete_object_if_unchanged(store, bucket, key, etag, &from, &shown).await?;
                Ok::<_, anyhow::Error>(r)
            }
            .await;
            one_done(&report, &text, obj, r)?;
        }
        _ => return Err(usage(format!("cannot move {} to {}", a.src, a.dst))),
    }
    Ok(ctx.status())
}
