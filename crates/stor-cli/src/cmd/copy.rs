//! Object to object (`cp`, `mv`): server-side within one store, streamed between
//! stores; and the upload flags those copies take.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use futures::{StreamExt, TryStreamExt};
use stor::{
    dir_prefix, CopyOptions, DownloadOptions, Encryption, ErrorKind, ListOptions, Location,
    ObjectInfo, Storage, TransferResult, UploadOptions, WriteCondition,
};

use super::report::{object_object, Report};
use super::{probe, source};
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
    for (k, v) in &f.tags {
        o.tags.insert(k.clone(), v.clone());
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

/// How [`copy_objects`] copies: what it takes, and whether it moves.
pub struct Copying<'a> {
    /// Every object under the source prefix (`-r`).
    pub recursive: bool,
    pub dry_run: bool,
    /// A move: each source is deleted once its copy is confirmed.
    pub delete_source: bool,
    /// `--include`/`--exclude`, on keys below the source prefix.
    pub filter: &'a Filter,
    /// The upload flags (new headers and metadata replace the source's); its
    /// `condition` applies to each destination.
    pub opts: &'a UploadOptions,
    /// The version of the one source object to copy (`--version-id`).
    pub version: Option<&'a str>,
}

/// Copies (or moves) object → object: server-side within one store, streamed
/// between stores.
pub async fn copy_objects(
    ctx: &Ctx,
    src: &Location,
    dst: &Location,
    c: &Copying<'_>,
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
    let (dry_run, delete_source) = (c.dry_run, c.delete_source);
    let sstore = ctx.store(*ss).await?;
    let dstore = ctx.store(*ds).await?;
    let (verb, verb_done) = if delete_source {
        ("move", "moved")
    } else {
        ("copy", "copied")
    };
    let (wildcard, sk) = match resolve(sstore, sb, sk).await? {
        Selection::Pattern {
            prefix, pattern, ..
        } => (Some((prefix, pattern)), sk.clone()),
        Selection::Key(k) => (None, k),
    };
    let sk = &sk;
    let (many, wildcard_given) = (c.recursive || wildcard.is_some(), wildcard.is_some());
    let version = c.version;
    if version.is_some() && many {
        return Err(usage(
            "--version-id names a version of one object; it takes no prefix or wildcard".into(),
        ));
    }
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
                c.filter.allows(rel) && only.as_ref().is_none_or(|f| f.allows(rel))
            })
            .collect()
    } else {
        if sk.is_empty() || sk.ends_with('/') {
            return Err(usage(format!("{src} is a prefix; add --recursive")));
        }
        let name = sk.rsplit('/').next().unwrap_or(sk);
        vec![(sk.clone(), key_under(dk, name))]
    };
    if many && pairs.is_empty() && wildcard_given {
        return Err(anyhow!("no objects match {src} (nothing was {verb_done})"));
    }
    let same_key = |from: &str, to: &str| ss == ds && sb == db && from == to;
    if ss == ds && sb == db {
        refuse_overlap(&pairs, |k| url(*ss, sb, k), verb, verb_done)?;
    }
    let report = Report::new(ctx, &[sstore, dstore]);
    let object = |from: &str, to: &str| {
        let (fu, tu) = (url(*ss, sb, from), url(*ds, db, to));
        let text = format!("{verb}: {fu} to {tu}");
        (text, object_object(verb, &fu, &tu, to), fu)
    };
    if dry_run {
        for (from, to) in &pairs {
            let (text, obj, _) = object(from, to);
            report.planned(&text, obj);
        }
        return Ok(());
    }
    // Keys the engine would not keep as sent (it would merge `x\y` into `x/y`).
    let pairs = if !many {
        if let Some((_, to)) = pairs.first().filter(|(f, t)| !same_key(f, t)) {
            probe::check_key(dstore, db, to, verb_done).await?;
        }
        pairs
    } else {
        let new: Vec<&str> = (pairs.iter())
            .filter(|(f, t)| !same_key(f, t))
            .map(|(_, t)| t.as_str())
            .collect();
        let refused = probe::refusals(dstore, db, &dir_prefix(dk), &new).await?;
        pairs
            .into_iter()
            .filter(|(from, to)| match refused.get(to) {
                Some(r) => {
                    let why = format!("not {verb_done}: {}", r.reason);
                    ctx.out
                        .fail(&format!("{verb} {}", url(*ss, sb, from)), &why);
                    false
                }
                None => true,
            })
            .collect()
    };
    let condition = c.opts.condition.clone();
    let replace = has_upload_flags(c.opts).then(|| UploadOptions {
        condition: None,
        ..c.opts.clone()
    });
    // `bar`: one object named, streamed between stores, shows its progress.
    let one = |from: String, to: String, bar: bool| {
        let replace = replace.clone();
        let condition = condition.clone();
        let out = bar.then_some(&*ctx.out);
        async move {
            if ss != ds {
                // Two stores: two objects. The source goes only after the copy
                // arrived whole (stream_copy checks it) and only if it is still the
                // version that was copied.
                let ends = (&from[..], version, &to[..], condition);
                let (r, copied) = stream_copy(sstore, sb, dstore, db, ends, replace, out).await?;
                if delete_source {
                    let (fu, tu) = (url(*ss, sb, &from), url(*ds, db, &to));
                    source::delete_object_if_unchanged(
                        sstore,
                        sb,
                        &from,
                        copied.as_deref(),
                        &fu,
                        &tu,
                    )
                    .await?;
                }
                return Ok(r);
            }
            let opts = CopyOptions {
                replace,
                condition,
                version_id: version.map(str::to_owned),
            };
            let r = if delete_source {
                // One path for every move, with its "never delete the only copy"
                // and "never delete a replaced source" proofs (an in-place move with
                // new headers is a metadata replacement).
                sstore
                    .move_object(sb.as_str(), &from, db.as_str(), &to, opts)
                    .await?
            } else {
                sstore
                    .copy_object(sb.as_str(), &from, db.as_str(), &to, opts)
                    .await?
            };
            Ok::<TransferResult, anyhow::Error>(r)
        }
    };
    if !many {
        // One object named: its error is the command's (and its exit status).
        let (from, to) = pairs.into_iter().next().expect("one pair");
        let (text, obj, _) = object(&from, &to);
        let fu = url(*ss, sb, &from);
        match one(from, to, true).await {
            Ok(r) => report.done(&text, obj, &r),
            Err(e) if clobber_avoided(ctx, c.opts, &e, &format!("{verb} {fu}")) => {}
            Err(e) => {
                report.failed_alone(&e, obj);
                report.finish();
                return Err(e);
            }
        }
        report.finish();
        return Ok(());
    }
    futures::stream::iter(pairs)
        .for_each_concurrent(ctx.concurrency(), |(from, to)| {
            let (one, report) = (&one, &report);
            async move {
                let (text, obj, fu) = object(&from, &to);
                match one(from, to, false).await {
                    Ok(r) => report.done(&text, obj, &r),
                    Err(e) if clobber_avoided(ctx, c.opts, &e, &format!("{verb} {fu}")) => {}
                    Err(e) => report.failed(&format!("{verb} {fu}"), &e, obj),
                }
            }
        })
        .await;
    report.finish();
    Ok(())
}

/// Refuses a copy or move of many objects within one bucket where a destination
/// key is also another pair's source: which of the two wins would depend on the
/// order of the copies, and a move would delete one of them (`mv 's3://b/m/*'
/// s3://b/m/z/` with `m/a` and `m/z/a`). A pair onto its own key (new headers
/// in place) is no overlap.
fn refuse_overlap(
    pairs: &[(String, String)],
    url: impl Fn(&str) -> String,
    verb: &str,
    verb_done: &str,
) -> Result<()> {
    let sources: std::collections::HashSet<&str> =
        pairs.iter().map(|(from, _)| from.as_str()).collect();
    let Some((from, to)) = pairs
        .iter()
        .find(|(from, to)| from != to && sources.contains(to.as_str()))
    else {
        return Ok(());
    };
    Err(usage(format!(
        "refusing to {verb}: {} would go onto {}, which is itself one of the objects to \
         {verb} — the result would depend on the order. Nothing was {verb_done}. Choose a \
         destination outside what the source names",
        url(from),
        url(to)
    )))
}

fn has_upload_flags(o: &UploadOptions) -> bool {
    o.content_type.is_some()
        || !o.metadata.is_empty()
        || o.cache_control.is_some()
        || o.content_disposition.is_some()
        || o.content_encoding.is_some()
        || o.storage_class.is_some()
        || o.encryption.is_some()
        || !o.tags.is_empty()
}

/// Whether `e` is a create-only write that found the key taken: with
/// `--no-clobber` that is a skip, said on stderr, not a failure.
pub fn clobber_avoided(ctx: &Ctx, opts: &UploadOptions, e: &anyhow::Error, what: &str) -> bool {
    let taken = opts.condition == Some(WriteCondition::IfAbsent)
        && e.downcast_ref::<stor::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::AlreadyExists);
    if taken {
        ctx.out.skip(&format!(
            "skipped {what}: the destination exists (--no-clobber)"
        ));
    }
    taken
}

/// The source's tags (of its version), for its copy in another store, as a copy
/// within a store keeps them. A destination store without tags is refused when
/// there are tags to carry (a move would lose them with its source).
async fn carried_tags(
    from: &Storage,
    sb: &str,
    sk: &str,
    version: Option<&str>,
    to: &Storage,
) -> Result<BTreeMap<String, String>> {
    if !from.capabilities().tags {
        return Ok(BTreeMap::new());
    }
    let tags = match version {
        Some(v) => from.version_tags(sb, sk, v).await?,
        None => from.tags(sb, sk).await?,
    };
    if !tags.is_empty() && !to.capabilities().tags {
        bail!(
            "the source has tags and the destination store keeps none; \
             nothing was copied (give --tag to copy it without them)"
        );
    }
    Ok(tags)
}

/// Copies between two stores by streaming: headers, metadata and tags come along
/// unless replaced; the destination's size is checked against the source's. With `out`,
/// a progress bar counts the bytes read from the source.
/// `ends`: the source key and version, the destination key and its condition.
async fn stream_copy(
    from: &Storage,
    sb: &str,
    to: &Storage,
    db: &str,
    ends: (&str, Option<&str>, &str, Option<WriteCondition>),
    replace: Option<UploadOptions>,
    out: Option<&Output>,
) -> Result<(TransferResult, Option<String>)> {
    let (sk, version, dk, condition) = ends;
    let read = DownloadOptions {
        version_id: version.map(str::to_owned),
        ..Default::default()
    };
    let obj = from.download_stream(sb, sk, read).await?;
    let info: ObjectInfo = obj.info.clone();
    let replaced = replace.is_some();
    let mut opts = replace.unwrap_or_else(|| UploadOptions {
        content_type: info.content_type.clone(),
        metadata: info.metadata.clone(),
        cache_control: info.cache_control.clone(),
        content_disposition: info.content_disposition.clone(),
        content_encoding: info.content_encoding.clone(),
        ..Default::default()
    });
    if !replaced {
        opts.tags = carried_tags(from, sb, sk, version, to).await?;
    }
    opts.condition = condition;
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
    Ok((r, info.etag))
}
