//! Object to object (`cp`, `mv`): server-side within one store, streamed between
//! stores; and the upload flags those copies take.

use anyhow::{anyhow, bail, Result};
use futures::{StreamExt, TryStreamExt};
use stor::{
    dir_prefix, CopyOptions, DownloadOptions, Encryption, ErrorKind, ListOptions, Location,
    ObjectInfo, Storage, UploadOptions,
};

use crate::args::UploadFlags;
use crate::context::Ctx;
use crate::exit::usage;
use crate::filter::{resolve, Filter, Selection};
use crate::output::Output;
use crate::progress::Ui;
use crate::urls::{key_under, tree_prefix, url};

/// The upload options the flags ask for (an unknown `--sse` is bad input).
pub fn upload_opts(f: &UploadFlags) -> Result<UploadOptions> {
    let mut o = UploadOptions {
        content_type: f.content_type.clone(),
        cache_control: f.cache_control.clone(),
        content_disposition: f.content_disposition.clone(),
        content_encoding: f.content_encoding.clone(),
        storage_class: f.storage_class.clone(),
        ..Default::default()
    };
    for (k, v) in &f.metadata {
        o.metadata.insert(k.clone(), v.clone());
    }
    o.encryption = match f.sse.as_deref() {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("AES256") => Some(Encryption::Aes256),
        Some(s) if s.eq_ignore_ascii_case("aws:kms") => Some(Encryption::Kms {
            key_id: f.sse_kms_key_id.clone(),
        }),
        Some(s) => {
            return Err(stor::Error::new(
                ErrorKind::InvalidInput,
                format!("--sse {s:?}: use AES256 or aws:kms"),
            )
            .into())
        }
    };
    Ok(o)
}

/// Copies (or moves) object → object: server-side within one store, streamed
/// between stores.
#[allow(clippy::too_many_arguments)]
pub async fn copy_objects(
    ctx: &Ctx,
    src: &Location,
    dst: &Location,
    recursive: bool,
    opts: &UploadOptions,
    dry_run: bool,
    delete_source: bool,
    filter: &Filter,
) -> Result<()> {
    let (
        Location::Object {
            scheme: ss,
            bucket: sb,
            key: sk,
        },
        Location::Object {
            scheme: ds,
            bucket: db,
            key: dk,
        },
    ) = (src, dst)
    else {
        unreachable!("both are objects");
    };
    let sstore = ctx.store(*ss).await?;
    let dstore = ctx.store(*ds).await?;
    let verb = if delete_source { "move" } else { "copy" };
    let (wildcard, sk) = match resolve(sstore, sb, sk).await? {
        Selection::Pattern {
            prefix, pattern, ..
        } => (Some((prefix, pattern)), sk.clone()),
        Selection::Key(k) => (None, k),
    };
    let sk = &sk;
    let (many, wildcard_given) = (recursive || wildcard.is_some(), wildcard.is_some());
    let pairs: Vec<(String, String)> = if many {
        let (sp, pattern) = wildcard.unwrap_or_else(|| (tree_prefix(sk), String::new()));
        let only = if pattern.is_empty() {
            None
        } else {
            Some(Filter::glob(&pattern)?)
        };
        let dp = dir_prefix(dk);
        let all: Vec<(String, String)> = sstore
            .list_stream(sb.as_str(), ListOptions::default().prefix(sp.clone()))
            .map_ok(|o| (o.key.clone(), format!("{dp}{}", &o.key[sp.len()..])))
            .try_collect()
            .await?;
        all.into_iter()
            .filter(|(k, _)| {
                let rel = &k[sp.len()..];
                filter.allows(rel) && only.as_ref().is_none_or(|f| f.allows(rel))
            })
            .collect()
    } else {
        if sk.is_empty() || sk.ends_with('/') {
            return Err(usage(format!("{src} is a prefix; add --recursive")));
        }
        let name = sk.rsplit('/').next().unwrap_or(sk);
        vec![(sk.clone(), key_under(dk, name))]
    };
    let replace = has_upload_flags(opts).then(|| opts.clone());
    // `bar`: one object named, streamed between stores, shows its progress.
    let one = |from: String, to: String, bar: bool| {
        let replace = replace.clone();
        let out = bar.then_some(&*ctx.out);
        async move {
            if ss == ds {
                let opts = CopyOptions { replace };
                if delete_source {
                    // One path for every move, with its "never delete the only
                    // copy" proof (an in-place move with new headers is a metadata
                    // replacement).
                    sstore
                        .move_object(sb.as_str(), &from, db.as_str(), &to, opts)
                        .await?;
                } else {
                    sstore
                        .copy_object(sb.as_str(), &from, db.as_str(), &to, opts)
                        .await?;
                }
            } else {
                // Two stores: two objects; the source goes only after the copy
                // arrived whole (stream_copy verifies it).
                stream_copy(sstore, sb, &from, dstore, db, &to, replace, out).await?;
                if delete_source {
                    sstore.delete(sb.as_str(), &from).await?;
                }
            }
            Ok::<(), anyhow::Error>(())
        }
    };
    if !many {
        // One object named: its error is the command's (and its exit status).
        let (from, to) = pairs.into_iter().next().expect("one pair");
        let (fu, tu) = (url(*ss, sb, &from), url(*ds, db, &to));
        if dry_run {
            ctx.out.say(&format!("(dryrun) {verb}: {fu} to {tu}"));
        } else {
            one(from, to, true).await?;
            ctx.out.note(&format!("{verb}: {fu} to {tu}"));
        }
        return Ok(());
    }
    if pairs.is_empty() && wildcard_given {
        return Err(anyhow!(
            "no objects match {src} (nothing was {})",
            if delete_source { "moved" } else { "copied" }
        ));
    }
    futures::stream::iter(pairs)
        .for_each_concurrent(ctx.concurrency(), |(from, to)| {
            let one = &one;
            async move {
                let (fu, tu) = (url(*ss, sb, &from), url(*ds, db, &to));
                if dry_run {
                    ctx.out.say(&format!("(dryrun) {verb}: {fu} to {tu}"));
                    return;
                }
                match one(from, to, false).await {
                    Ok(()) => ctx.out.note(&format!("{verb}: {fu} to {tu}")),
                    Err(e) => ctx.out.fail(&format!("{verb} {fu}"), &e),
                }
            }
        })
        .await;
    Ok(())
}

fn has_upload_flags(o: &UploadOptions) -> bool {
    o.content_type.is_some()
        || !o.metadata.is_empty()
        || o.cache_control.is_some()
        || o.content_disposition.is_some()
        || o.content_encoding.is_some()
        || o.storage_class.is_some()
        || o.encryption.is_some()
}

/// Copies between two stores by streaming: headers and metadata come along unless
/// replaced; the destination's size is checked against the source's. With `out`,
/// a progress bar counts the bytes read from the source.
#[allow(clippy::too_many_arguments)]
async fn stream_copy(
    from: &Storage,
    sb: &str,
    sk: &str,
    to: &Storage,
    db: &str,
    dk: &str,
    replace: Option<UploadOptions>,
    out: Option<&Output>,
) -> Result<()> {
    let obj = from
        .download_stream(sb, sk, DownloadOptions::default())
        .await?;
    let info: ObjectInfo = obj.info.clone();
    let opts = replace.unwrap_or_else(|| UploadOptions {
        content_type: info.content_type.clone(),
        metadata: info.metadata.clone(),
        cache_control: info.cache_control.clone(),
        content_disposition: info.content_disposition.clone(),
        content_encoding: info.content_encoding.clone(),
        ..Default::default()
    });
    let body = obj.into_async_read();
    let r = match out.map(|out| Ui::one(out, Some(info.size))) {
        Some(ui) => {
            let r = to.upload_reader(db, dk, ui.reading(body), opts).await;
            ui.clear();
            r?
        }
        None => to.upload_reader(db, dk, body, opts).await?,
    };
    if r.bytes != info.size {
        bail!(
            "copied {} bytes of {}; the source was kept",
            r.bytes,
            info.size
        );
    }
    Ok(())
}
