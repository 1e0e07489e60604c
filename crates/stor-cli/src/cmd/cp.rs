//! `stor cp SRC DST`: one file, a directory (`-r`), stdin or an object, to or from
//! an object; object to object.

use std::path::{Path, PathBuf};

use anyhow::Result;
use stor::{Location, Scheme, Storage, TransferResult, UploadOptions, WriteCondition};

use super::batch::{self, Batch};
use super::cat::to_stdout;
use super::copy::{self, Copying};
use super::report::{file_object, Report};
use super::{probe, transfer};

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
    opts.condition = write_condition(a, &src, &dst)?;
    let version = a.version_id.as_deref();
    if version.is_some() && (!src.is_object() || a.recursive) {
        return Err(usage(
            "--version-id names a version of one source object (s3://BUCKET/KEY)".into(),
        ));
    }
    let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
    let batch = Batch {
        filter: &filter,
        dry_run: a.dry_run,
        moving: false,
        no_resume: a.no_resume,
    };
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
                batch::upload_dir(ctx, store, *scheme, p, bucket, key, &opts, &batch).await?;
            } else {
                let k = file_key(p, key, "upload")?;
                let to = Upload {
                    store,
                    scheme: *scheme,
                    bucket,
                    key: &k,
                };
                let shown = p.display().to_string();
                let Some(one) = OneUpload::plan(ctx, to, &shown, "upload", a.dry_run).await? else {
                    return Ok(ctx.status());
                };
                let r = one.to.file(ctx, p, opts.clone()).await;
                let what = format!("upload {shown}");
                done_unless_taken(ctx, &opts, &what, &one.report, &one.text, one.obj, r)?;
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
            let to = Upload {
                store,
                scheme: *scheme,
                bucket,
                key,
            };
            let Some(one) = OneUpload::plan(ctx, to, "-", "upload", a.dry_run).await? else {
                return Ok(ctx.status());
            };
            let r = transfer::upload_stdin(&ctx.out, store, bucket, key, opts.clone()).await;
            done_unless_taken(ctx, &opts, "upload -", &one.report, &one.text, one.obj, r)?;
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
                let glob = Filter::glob(pattern)?;
                let batch = Batch {
                    filter: &glob,
                    ..batch
                };
                let url = Some(a.src.as_str());
                batch::download_prefix(ctx, store, *scheme, bucket, prefix, p, &batch, url).await?;
            } else if a.recursive {
                let prefix = tree_prefix(&selected.key());
                batch::download_prefix(ctx, store, *scheme, bucket, &prefix, p, &batch, None)
                    .await?;
            } else {
                let key = &selected.key();
                if key.is_empty() || key.ends_with('/') {
                    return Err(usage(format!("{} is a prefix; add --recursive", a.src)));
                }
                let target = target_of(key, p, &a.dst);
                let report = Report::new(ctx, &[store]);
                let text = format!(
                    "download: {} to {}",
                    url(*scheme, bucket, key),
                    target.display()
                );
                let obj = file_object("download", &target.display().to_string(), key);
                if a.dry_run {
                    report.planned(&text, obj);
                    return Ok(ctx.status());
                }
                let r = transfer::download_file(
                    &ctx.out,
                    store,
                    bucket,
                    key,
                    version,
                    &target,
                    a.no_resume,
                )
                .await;
                one_done(&report, &text, obj, r)?;
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
            if a.json {
                return Err(usage(
                    "--json does not go with `-` as the destination: stdout carries the \
                     object's bytes"
                        .into(),
                ));
            }
            let store = ctx.store(*scheme).await?;
            // The wildcard rule, as for a file: escapes removed, the exact text wins.
            let key = match version {
                Some(_) => key.clone(),
                None => match resolve(store, bucket, key).await? {
                    Selection::Key(k) => k,
                    Selection::Pattern { .. } => {
                        return Err(usage(format!(
                            "{} is a wildcard, and stdout takes one object (copy to a \
                         directory, or put a `\\` before the wildcard to name a key)",
                            a.src
                        )))
                    }
                },
            };
            to_stdout(&ctx.out, store, bucket, &key, version).await?;
        }
        (Location::Object { .. }, Location::Object { .. }) => {
            let c = Copying {
                recursive: a.recursive,
                dry_run: a.dry_run,
                delete_source: false,
                filter: &filter,
                opts: &opts,
                version,
            };
            copy::copy_objects(ctx, &src, &dst, &c).await?;
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

/// The last part of a path, to name its object.
fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| usage(format!("{} names no file", p.display())))
}

/// The key a file `p` is uploaded to: `key`, or the file's name below it when it
/// ends in `/`. A directory needs `--recursive` (`verb`: what that does to its
/// files).
pub fn file_key(p: &Path, key: &str, verb: &str) -> Result<String> {
    // Said before anything else, so a --dry-run refuses what the real run would.
    let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            usage(format!("{}: no such file or directory", p.display()))
        }
        _ => usage(format!("{}: {e}", p.display())),
    })?;
    if meta.is_dir() {
        return Err(usage(format!(
            "{} is a directory; add --recursive to {verb} the files below it",
            p.display()
        )));
    }
    Ok(key_under(key, &file_name(p)?))
}

/// The file a download of `key` writes: `path` itself, or the key's last part
/// inside it when it is a directory (or written as one, `dir/`).
pub fn target_of(key: &str, path: &Path, as_typed: &str) -> PathBuf {
    let name = key.rsplit('/').next().unwrap_or(key);
    if path.is_dir() || as_typed.ends_with('/') {
        path.join(name)
    } else {
        path.to_path_buf()
    }
}

/// The end of a command's one transfer: its line (or JSON object and summary),
/// and its error as the command's.
pub fn one_done<E: Into<anyhow::Error>>(
    report: &Report<'_>,
    text: &str,
    obj: serde_json::Value,
    r: std::result::Result<TransferResult, E>,
) -> Result<TransferResult> {
    match r.map_err(Into::into) {
        Ok(r) => {
            report.done(text, obj, &r);
            report.finish();
            Ok(r)
        }
        Err(e) => {
            report.failed_alone(&format!("{e:#}"), obj);
            report.finish();
            Err(e)
        }
    }
}

/// [`one_done`], except that a create-only write that found the key taken
/// (`--no-clobber`) is a skip, said on stderr.
fn done_unless_taken(
    ctx: &Ctx,
    opts: &UploadOptions,
    what: &str,
    report: &Report<'_>,
    text: &str,
    obj: serde_json::Value,
    r: stor::Result<TransferResult>,
) -> Result<()> {
    match r.map_err(anyhow::Error::from) {
        Err(e) if copy::clobber_avoided(ctx, opts, &e, what) => {
            report.finish();
            Ok(())
        }
        r => one_done(report, text, obj, r).map(drop),
    }
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

/// One file (or stdin) to one object, as `cp` and `mv` run it: where it goes, and
/// the line and JSON object that report it.
pub struct OneUpload<'a> {
    pub to: Upload<'a>,
    pub report: Report<'a>,
    pub text: String,
    pub obj: serde_json::Value,
}

impl<'a> OneUpload<'a> {
    /// `source` (a path as shown, or `-`) to `to` by `op` ("upload", "move"): with
    /// `dry_run` it is said and `None` returned; else the engine is checked to keep
    /// the key as sent before anything is read.
    pub async fn plan(
        ctx: &'a Ctx,
        to: Upload<'a>,
        source: &str,
        op: &str,
        dry_run: bool,
    ) -> Result<Option<OneUpload<'a>>> {
        let report = Report::new(ctx, &[to.store]);
        let text = format!("{op}: {source} to {}", to.url());
        let obj = file_object(op, source, to.key);
        if dry_run {
            report.planned(&text, obj);
            return Ok(None);
        }
        let done = if op == "move" { "moved" } else { "uploaded" };
        to.check(done).await?;
        Ok(Some(OneUpload {
            to,
            report,
            text,
            obj,
        }))
    }
}

/// One object a file or stdin is uploaded to.
pub struct Upload<'a> {
    pub store: &'a Storage,
    pub scheme: Scheme,
    pub bucket: &'a str,
    pub key: &'a str,
}

impl Upload<'_> {
    pub fn url(&self) -> String {
        url(self.scheme, self.bucket, self.key)
    }

    /// Checks that the engine keeps the key as sent (`verb`: what a refusal says
    /// was not done).
    pub async fn check(&self, verb: &str) -> Result<()> {
        probe::check_key(self.store, self.bucket, self.key, verb).await
    }

    /// Uploads the file `p`, with a progress bar on a terminal.
    pub async fn file(
        &self,
        ctx: &Ctx,
        p: &Path,
        opts: UploadOptions,
    ) -> stor::Result<TransferResult> {
        transfer::upload_file(&ctx.out, self.store, self.bucket, self.key, p, opts).await
    }
}
