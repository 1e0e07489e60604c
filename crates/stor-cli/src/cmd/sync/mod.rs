//! `stor sync SRC DST`: make the destination hold what the source holds
//! (a directory and a prefix, either way), moving only what is new or changed,
//! and with `--delete` removing what the source does not have.
//!
//! This module gathers both sides (a listing, a directory walk, and where sizes
//! leave the question open a HEAD per object and, with `--checksum`, a streamed
//! hash per file, `max_concurrency` at a time), hands them to [`plan::plan`] — the
//! rules, pure and tested as a table — then carries the plan out in the plan's
//! order and reports every step ([`out`]).

mod out;
mod plan;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use stor::checksum::Hasher;
use stor::{
    BatchItem, BatchOptions, BatchOutcome, ChecksumAlgorithm, ListOptions, Location, ObjectInfo,
    Scheme, Storage, TransferResult,
};

use super::probe;
use crate::args::SyncArgs;
use crate::context::Ctx;
use crate::exit::{usage, Exit};
use crate::filter::Filter;
use crate::progress::Ui;
use crate::urls::{tree_prefix, url};
use out::Out;
use plan::{plan, Dest, Direction, Meta, Plan, Rules, Source};

pub async fn sync(ctx: &Ctx, a: &SyncArgs) -> Result<Exit> {
    let src: Location = a.src.parse()?;
    let dst: Location = a.dst.parse()?;
    let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
    let out = Out::new(ctx, a.json);
    match (&src, &dst) {
        (
            Location::Path(dir),
            Location::Object {
                scheme,
                bucket,
                key,
            },
        ) => {
            let to = Remote::open(ctx, *scheme, bucket, key).await?;
            up(&out, a, dir, &to, &filter).await?
        }
        (
            Location::Object {
                scheme,
                bucket,
                key,
            },
            Location::Path(dir),
        ) => {
            let from = Remote::open(ctx, *scheme, bucket, key).await?;
            down(&out, a, &from, dir, &filter).await?
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

/// The prefix side of a sync.
struct Remote<'a> {
    store: &'a Storage,
    scheme: Scheme,
    bucket: String,
    /// A directory prefix: empty or ending in `/` (see `tree_prefix`).
    prefix: String,
}

impl<'a> Remote<'a> {
    async fn open(ctx: &'a Ctx, scheme: Scheme, bucket: &str, key: &str) -> Result<Remote<'a>> {
        Ok(Remote {
            store: ctx.store(scheme).await?,
            scheme,
            bucket: bucket.to_owned(),
            prefix: tree_prefix(key),
        })
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    fn rel<'k>(&self, key: &'k str) -> &'k str {
        key.get(self.prefix.len()..).unwrap_or(key)
    }

    fn url(&self, rel: &str) -> String {
        url(self.scheme, &self.bucket, &self.key(rel))
    }

    /// Every object under the prefix (directory markers and the prefix's own key
    /// left out).
    async fn list(&self) -> Result<Vec<ObjectInfo>> {
        let all: Vec<ObjectInfo> = self
            .store
            .list_stream(
                self.bucket.as_str(),
                ListOptions::default().prefix(self.prefix.clone()),
            )
            .try_collect()
            .await?;
        Ok(all
            .into_iter()
            .filter(|o| !o.key.ends_with('/') && o.key.len() > self.prefix.len())
            .collect())
    }

    fn concurrency(&self) -> usize {
        self.store.config().max_concurrency.max(1)
    }
}

/// What an object's listing (or HEAD) says, for the plan.
fn object_meta(o: &ObjectInfo) -> Meta {
    Meta {
        size: o.size,
        mtime: o.source_mtime,
        modified: o.last_modified,
        checksum: o.checksum.clone(),
    }
}

/// Whether an object's info came from a listing that carries no metadata (S3's):
/// its recorded time and checksum need a HEAD. (The local store's listings carry
/// them.)
fn listing_only(o: &ObjectInfo) -> bool {
    o.content_type.is_none()
        && o.metadata.is_empty()
        && o.checksum.is_none()
        && o.source_mtime.is_none()
}

fn file_meta(m: &std::fs::Metadata) -> Meta {
    Meta {
        size: m.len(),
        mtime: m.modified().ok(),
        ..Meta::default()
    }
}

fn rules<'a>(a: &SyncArgs, direction: Direction, allows: &'a dyn Fn(&str) -> bool) -> Rules<'a> {
    Rules {
        direction,
        delete: a.delete,
        checksum: a.checksum,
        allow_empty_source: a.allow_empty_source,
        granularity: 1,
        allows,
    }
}

// ---------------------------------------------------------------- up

async fn up(
    out: &Out<'_>,
    a: &SyncArgs,
    dir: &Path,
    to: &Remote<'_>,
    filter: &Filter,
) -> Result<()> {
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let objects: BTreeMap<String, ObjectInfo> = to
        .list()
        .await?
        .into_iter()
        .map(|o| (to.rel(&o.key).to_owned(), o))
        .collect();
    let walk = stor::plan_upload(dir, &to.prefix, !a.no_follow_symlinks)?;
    let mut source = BTreeMap::new();
    let mut paths: HashMap<String, PathBuf> = HashMap::new();
    for s in &walk.skipped {
        let rel = s.key.as_deref().map(|k| to.rel(k).to_owned());
        // Protected from --delete whatever the filters say; reported when they let it in.
        if let Some(r) = &rel {
            source.insert(r.clone(), Source::Skipped);
        }
        if rel.is_some_and(|r| !filter.allows(r.trim_end_matches('/'))) {
            continue;
        }
        let path = s.path.display().to_string();
        if s.failed {
            let obj = json!({ "op": "upload", "path": path, "key": s.key });
            out.fail(&format!("upload {path}"), &s.reason, obj);
        } else {
            out.skip(&path, s.key.as_deref(), &s.reason);
        }
    }
    for item in walk.items {
        let rel = to.rel(&item.key).to_owned();
        let meta = match std::fs::metadata(&item.path) {
            Ok(m) => file_meta(&m),
            Err(e) => {
                let path = item.path.display().to_string();
                let obj = json!({ "op": "upload", "path": path, "key": item.key });
                out.fail(&format!("upload {path}"), &e, obj);
                source.insert(rel, Source::Skipped);
                continue;
            }
        };
        source.insert(rel.clone(), Source::File(meta));
        paths.insert(rel, item.path);
    }
    let mut dest: BTreeMap<String, Dest> = objects
        .iter()
        .map(|(r, o)| (r.clone(), Dest::File(object_meta(o))))
        .collect();

    // Sizes equal: the object's recorded time (and checksum) decide, and only the
    // listings of some stores carry them.
    let todo: Vec<Detail> = source
        .iter()
        .filter(|(rel, _)| filter.allows(rel))
        .filter_map(|(rel, s)| {
            let (Source::File(m), Some(o)) = (s, objects.get(rel)) else {
                return None;
            };
            (m.size == o.size).then(|| Detail {
                rel: rel.clone(),
                object: o.clone(),
                file: Some(paths[rel].clone()),
            })
        })
        .collect();
    for (rel, r) in details(to, todo, a.checksum).await {
        match r {
            Ok(d) => {
                dest.insert(rel.clone(), Dest::File(d.object));
                if let Some(Source::File(m)) = source.get_mut(&rel) {
                    m.checksum = d.file_checksum;
                }
            }
            Err(e) => {
                let path = paths[&rel].display().to_string();
                let obj = json!({ "op": "upload", "path": path, "key": to.key(&rel) });
                out.fail(&format!("comparing {path} with {}", to.url(&rel)), &e, obj);
                source.insert(rel, Source::Skipped);
            }
        }
    }

    if !a.dry_run {
        refuse_rewritten_keys(out, to, &objects, &paths, &mut source, filter).await?;
    }

    let allows = |r: &str| filter.allows(r);
    let p = plan(&source, &dest, &rules(a, Direction::Up, &allows));
    if let Some(gone) = &p.refused {
        let gone = gone
            .iter()
            .map(|r| (to.url(r), json!({ "op": "delete", "key": to.key(r) })))
            .collect();
        return Err(refuse(out, a, gone));
    }
    let upload = |rel: &str| {
        let path = paths[rel].display().to_string();
        let text = format!("upload: {path} to {}", to.url(rel));
        (
            text,
            json!({ "op": "upload", "path": path, "key": to.key(rel) }),
        )
    };
    let delete = |rel: &str| {
        let text = format!("delete: {}", to.url(rel));
        (text, json!({ "op": "delete", "key": to.key(rel) }))
    };
    if a.dry_run {
        for (text, obj) in (p.clear.iter().map(|r| delete(r)))
            .chain(p.copy.iter().map(|r| upload(r)))
            .chain(p.delete.iter().map(|r| delete(r)))
        {
            out.planned(&text, obj);
        }
        return Ok(());
    }

    let items: Vec<BatchItem> = p
        .copy
        .iter()
        .map(|rel| BatchItem {
            path: paths[rel].clone(),
            key: to.key(rel),
            size: match &source[rel] {
                Source::File(m) => Some(m.size),
                Source::Skipped => None,
            },
            // Sync decides what to copy itself (no batch journal to skip by).
            etag: None,
        })
        .collect();
    let ui = new_ui(out, &items);
    let retries = to.store.metrics().retries;
    // What is in the way goes first: engines that cannot hold `x` beside `x/y`
    // take the upload in the same run.
    delete_objects(out, &ui, to, &p.clear).await;
    let opts = BatchOptions {
        concurrency: Some(to.concurrency()),
        progress: Some(ui.progress()),
        keep_mtime: true,
        no_resume: a.no_resume,
        ..Default::default()
    };
    let outcomes = to.store.upload_many(to.bucket.as_str(), items, opts);
    let describe = |i: &BatchItem| {
        let rel = to.rel(&i.key);
        upload(rel).0
    };
    transfer(out, &ui, outcomes, "upload", &describe, |_, _| Ok(())).await;
    delete_objects(out, &ui, to, &p.delete).await;
    out.summary(&ui, to.store.metrics().retries - retries);
    Ok(())
}

/// Probes the unusual names among the keys about to be created (see
/// [`probe`]); a key the engine would not keep as sent is refused, reported, and
/// both it and the key the engine would make of it are kept from `--delete`.
async fn refuse_rewritten_keys(
    out: &Out<'_>,
    to: &Remote<'_>,
    objects: &BTreeMap<String, ObjectInfo>,
    paths: &HashMap<String, PathBuf>,
    source: &mut BTreeMap<String, Source>,
    filter: &Filter,
) -> Result<()> {
    // A key the listing shows as it is was kept; only new ones are in question.
    let new: Vec<String> = source
        .iter()
        .filter(|(rel, s)| {
            matches!(s, Source::File(_)) && !objects.contains_key(*rel) && filter.allows(rel)
        })
        .map(|(rel, _)| to.key(rel))
        .filter(|k| probe::is_unusual(k))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = new.iter().map(String::as_str).collect();
    let found = probe::probe(to.store, &to.bucket, &to.prefix, &keys).await?;
    for key in &new {
        let Some(r) = found.refusal(key) else {
            continue;
        };
        let rel = to.rel(key).to_owned();
        let path = paths[&rel].display().to_string();
        let obj = json!({ "op": "upload", "path": path, "key": key });
        let why = format!("not uploaded: {}", r.reason);
        out.fail(&format!("upload {path}"), &why, obj);
        source.insert(rel, Source::Skipped);
        if let Some(twin) = r.twin.as_deref().and_then(|t| t.strip_prefix(&to.prefix)) {
            source.entry(twin.to_owned()).or_insert(Source::Skipped);
        }
    }
    Ok(())
}

async fn delete_objects(out: &Out<'_>, ui: &Ui, to: &Remote<'_>, rels: &[String]) {
    if rels.is_empty() {
        return;
    }
    let keys: Vec<String> = rels.iter().map(|r| to.key(r)).collect();
    let results = match to.store.delete_many(to.bucket.as_str(), &keys).await {
        Ok(r) => r,
        Err(e) => {
            for k in &keys {
                let what = format!("delete {}", url(to.scheme, &to.bucket, k));
                out.fail(&what, &e, json!({ "op": "delete", "key": k }));
            }
            return;
        }
    };
    for r in results {
        let u = url(to.scheme, &to.bucket, &r.key);
        let obj = json!({ "op": "delete", "key": r.key });
        match &r.error {
            None => {
                ui.deleted();
                let mut obj = obj;
                obj["error"] = Value::Null;
                out.event(Some(ui), &format!("delete: {u}"), obj);
            }
            Some(e) => out.fail(&format!("delete {u}"), e, obj),
        }
    }
}

// ---------------------------------------------------------------- down

async fn down(
    out: &Out<'_>,
    a: &SyncArgs,
    from: &Remote<'_>,
    dir: &Path,
    filter: &Filter,
) -> Result<()> {
    if dir.symlink_metadata().is_ok() && !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let objects = from.list().await?;
    let by_key: HashMap<&str, &ObjectInfo> = objects.iter().map(|o| (o.key.as_str(), o)).collect();
    let mut source = BTreeMap::new();
    let mut listed: HashMap<String, &ObjectInfo> = HashMap::new();
    for r in stor::download_paths(&from.prefix, dir, &objects) {
        match r {
            Ok(item) => {
                let o = by_key[item.key.as_str()];
                let rel = from.rel(&o.key).to_owned();
                source.insert(rel.clone(), Source::File(object_meta(o)));
                listed.insert(rel, o);
            }
            Err(e) => {
                // Its source exists: whatever a path of its could hold stays (unless
                // another key has that path as its own).
                let key = e.key().unwrap_or_default().to_owned();
                let rel = from.rel(&key).to_owned();
                for r in [fold(&rel), rel.clone()] {
                    if !r.is_empty() {
                        source.entry(r).or_insert(Source::Skipped);
                    }
                }
                if filter.allows(&rel) {
                    let obj = json!({ "op": "download", "key": key });
                    out.fail(&format!("download {}", from.url(&rel)), &e, obj);
                }
            }
        }
    }
    let mut dest = walk(out, dir);

    // Each object's recorded time (and checksum), where the listing lacks them: to
    // compare, and to give a downloaded file.
    let todo: Vec<Detail> = listed
        .iter()
        .filter(|(rel, o)| filter.allows(rel) && (listing_only(o) || a.checksum))
        .map(|(rel, o)| Detail {
            rel: rel.clone(),
            object: (*o).clone(),
            file: match dest.get(rel.as_str()) {
                Some(Dest::File(m)) if m.size == o.size => Some(dir.join(rel)),
                _ => None,
            },
        })
        .collect();
    let mut etags: HashMap<String, Option<String>> = listed
        .iter()
        .map(|(rel, o)| (rel.clone(), o.etag.clone()))
        .collect();
    for (rel, r) in details(from, todo, a.checksum).await {
        match r {
            Ok(d) => {
                source.insert(rel.clone(), Source::File(d.object));
                etags.insert(rel.clone(), d.etag);
                if let Some(Dest::File(m)) = dest.get_mut(&rel) {
                    m.checksum = d.file_checksum;
                }
            }
            Err(e) => {
                let obj = json!({ "op": "download", "key": from.key(&rel) });
                out.fail(&format!("download {}", from.url(&rel)), &e, obj);
                source.insert(rel, Source::Skipped);
            }
        }
    }

    let allows = |r: &str| filter.allows(r);
    let has_files = dest.values().any(|d| matches!(d, Dest::File(_)));
    let rules = Rules {
        granularity: if has_files { granularity(dir) } else { 1 },
        ..rules(a, Direction::Down, &allows)
    };
    let p = plan(&source, &dest, &rules);
    let shown = |rel: &str| dir.join(rel).display().to_string();
    if let Some(gone) = &p.refused {
        let gone = gone
            .iter()
            .map(|r| (shown(r), json!({ "op": "delete", "path": shown(r) })))
            .collect();
        return Err(refuse(out, a, gone));
    }
    for c in &p.conflicts {
        let obj = json!({
            "op": "conflict",
            "path": shown(&c.path),
            "key": from.key(&c.path),
            "source": c.source.name(),
            "destination": c.dest.name(),
        });
        out.fail(&format!("sync {}", shown(&c.path)), &c.message(), obj);
    }
    let download = |rel: &str| {
        let text = format!("download: {} to {}", from.url(rel), shown(rel));
        let obj = json!({ "op": "download", "path": shown(rel), "key": from.key(rel) });
        (text, obj)
    };
    let remove = |rel: &str| {
        let text = format!("delete: {}", shown(rel));
        (text, json!({ "op": "delete", "path": shown(rel) }))
    };
    if a.dry_run {
        let dirs = p.rmdirs.iter().map(|r| {
            let text = format!("rmdir: {}", shown(r));
            (text, json!({ "op": "rmdir", "path": shown(r) }))
        });
        for (text, obj) in (p.clear.iter().map(|r| remove(r)))
            .chain(dirs)
            .chain(p.copy.iter().map(|r| download(r)))
            .chain(p.delete.iter().map(|r| remove(r)))
        {
            out.planned(&text, obj);
        }
        return Ok(());
    }

    let items: Vec<BatchItem> = p
        .copy
        .iter()
        .map(|rel| BatchItem {
            path: dir.join(rel),
            key: from.key(rel),
            size: match &source[rel] {
                Source::File(m) => Some(m.size),
                Source::Skipped => None,
            },
            // Sync decides what to copy itself (no batch journal to skip by).
            etag: None,
        })
        .collect();
    let ui = new_ui(out, &items);
    let retries = from.store.metrics().retries;
    remove_local(out, &ui, dir, &p, Stage::InTheWay);
    let opts = BatchOptions {
        concurrency: Some(from.concurrency()),
        progress: Some(ui.progress()),
        root: Some(dir.to_path_buf()),
        no_resume: a.no_resume,
        ..Default::default()
    };
    let outcomes = from.store.download_many(from.bucket.as_str(), items, opts);
    let describe = |i: &BatchItem| download(from.rel(&i.key)).0;
    // Only a download that completed gives its file the object's time — and only
    // when it fetched the version whose time that is — so a failed or raced one
    // is found changed again next time.
    let stamp = |item: &BatchItem, r: &TransferResult| -> Result<(), String> {
        let rel = from.rel(&item.key);
        let Some(Source::File(m)) = source.get(rel) else {
            return Ok(());
        };
        let etag = etags.get(rel).cloned().flatten();
        let (Some(t), true) = (m.mtime.or(m.modified), etag.is_none() || etag == r.etag) else {
            return Ok(());
        };
        set_mtime(&item.path, t)
            .map_err(|e| format!("setting its modification time failed ({e}); it was downloaded"))
    };
    transfer(out, &ui, outcomes, "download", &describe, stamp).await;
    remove_local(out, &ui, dir, &p, Stage::Extras);
    out.summary(&ui, from.store.metrics().retries - retries);
    Ok(())
}

/// Gives a file modification time `t` (without following a symlink planted in
/// its place since).
fn set_mtime(path: &Path, t: SystemTime) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .set_modified(t)
}

/// How finely the file system of `dir` keeps modification times, in nanoseconds
/// (1 on most; 1 000 000 000 where it keeps whole seconds, 2 s on FAT): a
/// downloaded file keeps only that much of its object's time. Tried on a temp file
/// (named like a download's, so walks and cleanups know it); 1 if that fails.
fn granularity(dir: &Path) -> u64 {
    let probe = dir.join(format!(
        ".mtime-probe.{:08x}{}",
        std::process::id(),
        stor::TEMP_SUFFIX
    ));
    // An odd second, so a two-second granularity shows.
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_000_000_001, 123_456_789);
    let kept = std::fs::File::create_new(&probe).and_then(|f| {
        f.set_modified(t)?;
        f.metadata()?.modified()
    });
    let _ = std::fs::remove_file(&probe);
    let Ok(kept) = kept else {
        return 1;
    };
    [
        1,
        1_000,
        1_000_000,
        10_000_000,
        1_000_000_000,
        2_000_000_000,
    ]
    .into_iter()
    .find(|g| plan::truncate(t, *g) == Some(kept))
    .unwrap_or(1)
}

/// A key's path below the prefix with empty and `.` segments dropped and `..`
/// applied, as a file system would read it.
fn fold(rel: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// The destination directory, not following symlinks: files, directories, and
/// everything else as [`Dest::Other`]. Names that are not UTF-8 (no key maps to
/// them) and stor's download temp files are left out.
fn walk(out: &Out<'_>, dir: &Path) -> BTreeMap<String, Dest> {
    let mut dest = BTreeMap::new();
    if !dir.is_dir() {
        return dest;
    }
    let mut entries = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .into_iter();
    while let Some(entry) = entries.next() {
        let e = match entry {
            Ok(e) => e,
            Err(err) => {
                let path = err.path().unwrap_or(dir).display().to_string();
                let obj = json!({ "op": "walk", "path": path });
                out.fail(&format!("reading {path}"), &err, obj);
                continue;
            }
        };
        let ft = e.file_type();
        let rel = e.path().strip_prefix(dir).ok().and_then(Path::to_str);
        let Some(rel) = rel.filter(|_| !stor::is_download_temp(e.file_name())) else {
            if ft.is_dir() {
                entries.skip_current_dir();
            }
            continue;
        };
        let d = if ft.is_dir() {
            Dest::Dir
        } else if ft.is_file() {
            e.metadata()
                .map(|m| Dest::File(file_meta(&m)))
                .unwrap_or(Dest::Other)
        } else {
            Dest::Other
        };
        dest.insert(rel.to_owned(), d);
    }
    dest
}

#[derive(PartialEq)]
enum Stage {
    /// Before the downloads: what is in their way.
    InTheWay,
    /// After them: what the source does not have.
    Extras,
}

fn remove_local(out: &Out<'_>, ui: &Ui, dir: &Path, p: &Plan, stage: Stage) {
    let (files, dirs): (&[String], &[String]) = match stage {
        Stage::InTheWay => (&p.clear, &p.rmdirs),
        Stage::Extras => (&p.delete, &[]),
    };
    let gone = |path: &Path, op: &str, r: std::io::Result<()>| {
        let shown = path.display().to_string();
        let obj = json!({ "op": op, "path": shown });
        match r {
            Ok(()) => {
                ui.deleted();
                let mut obj = obj;
                obj["error"] = Value::Null;
                out.event(Some(ui), &format!("{op}: {shown}"), obj);
            }
            Err(e) => out.fail(&format!("{op} {shown}"), &e, obj),
        }
    };
    for rel in files {
        let path = dir.join(rel);
        gone(&path, "delete", std::fs::remove_file(&path));
    }
    for rel in dirs {
        let path = dir.join(rel);
        gone(&path, "rmdir", std::fs::remove_dir(&path));
    }
}

// ---------------------------------------------------------------- shared

/// Refuses a `--delete` whose source holds nothing: prints what would have gone
/// and returns the error (exit status 2).
fn refuse(out: &Out<'_>, a: &SyncArgs, gone: Vec<(String, Value)>) -> anyhow::Error {
    let n = gone.len();
    for (shown, mut obj) in gone {
        if out.json {
            obj["refused"] = true.into();
            out.ctx.out.say(&obj.to_string());
        } else {
            out.ctx.out.say(&format!("(refused) delete: {shown}"));
        }
    }
    let filtered = if a.filter.include.is_empty() && a.filter.exclude.is_empty() {
        ""
    } else {
        " that the filters let through"
    };
    usage(format!(
        "refusing --delete: the source {} holds nothing{filtered} (a mistyped prefix? an \
         unmounted directory?), so it would delete all {n} entries listed above from {}. \
         Nothing was changed. Check the source, or add --allow-empty-source to delete them",
        a.src, a.dst
    ))
}

fn new_ui(out: &Out<'_>, items: &[BatchItem]) -> std::sync::Arc<Ui> {
    let bytes = items.iter().filter_map(|i| i.size).sum();
    Ui::new(out.ctx.out.quiet(), out.json, bytes, items.len() as u64)
}

/// One object a plan needs to know more of.
struct Detail {
    rel: String,
    /// As listed (a HEAD replaces it when the listing carries no metadata).
    object: ObjectInfo,
    /// The local file to hash (`--checksum`), when there is one of the same size.
    file: Option<PathBuf>,
}

struct Detailed {
    object: Meta,
    etag: Option<String>,
    /// The local file's checksum in the object's algorithm.
    file_checksum: Option<(ChecksumAlgorithm, String)>,
}

/// HEADs the objects whose listing carries no metadata (S3 listings carry none;
/// the local store's do) and, with `--checksum`, hashes the files against those
/// that carry a checksum — `max_concurrency` objects at a time.
async fn details(
    at: &Remote<'_>,
    todo: Vec<Detail>,
    checksum: bool,
) -> Vec<(String, Result<Detailed>)> {
    let one = |d: Detail| async move {
        let r = async {
            let info = if listing_only(&d.object) {
                at.store.info(at.bucket.as_str(), &d.object.key).await?
            } else {
                d.object
            };
            let mut object = object_meta(&info);
            if checksum
                && d.file.is_some()
                && object.checksum.is_none()
                && at.store.capabilities().native_checksums
            {
                object.checksum = at
                    .store
                    .native_checksum(at.bucket.as_str(), &info.key, info.etag.as_deref())
                    .await?;
            }
            let file_checksum = match (&object.checksum, d.file) {
                (Some((algo, _)), Some(path)) if checksum => {
                    Some((*algo, hash_file(path, *algo).await?))
                }
                _ => None,
            };
            Ok(Detailed {
                object,
                etag: info.etag,
                file_checksum,
            })
        }
        .await;
        (d.rel, r)
    };
    futures::stream::iter(todo)
        .map(one)
        .buffer_unordered(at.concurrency())
        .collect()
        .await
}

/// A file's checksum, as objects store it, read in 256 KiB pieces (never the
/// whole file in memory).
async fn hash_file(path: PathBuf, algo: ChecksumAlgorithm) -> Result<String> {
    use std::io::Read;
    tokio::task::spawn_blocking(move || -> Result<String> {
        let mut h = Hasher::new(algo)
            .ok_or_else(|| anyhow::anyhow!("{} is not a checksum", algo.name()))?;
        let mut f = std::fs::File::open(&path)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
            }
        }
        Ok(h.finish().encoded())
    })
    .await?
}

/// Runs a batch, printing a line per object; `done` follows each success (an
/// `Err` from it is reported as that object's failure).
async fn transfer(
    out: &Out<'_>,
    ui: &Ui,
    mut outcomes: BoxStream<'static, BatchOutcome>,
    op: &str,
    describe: &dyn Fn(&BatchItem) -> String,
    done: impl Fn(&BatchItem, &TransferResult) -> Result<(), String>,
) {
    while let Some(o) = outcomes.next().await {
        let text = describe(&o.item);
        let mut obj = json!({
            "op": op,
            "path": o.item.path.display().to_string(),
            "key": o.item.key,
        });
        match o.result.as_ref().map(|r| (r, done(&o.item, r))) {
            Ok((r, Ok(()))) => {
                ui.finished(Some(r.bytes));
                obj["bytes"] = r.bytes.into();
                obj["etag"] = r.etag.clone().into();
                obj["checksum"] = r.checksum.clone().into();
                obj["error"] = Value::Null;
                out.event(Some(ui), &text, obj);
            }
            Ok((r, Err(e))) => {
                ui.finished(Some(r.bytes));
                out.fail(&text, &e, obj);
            }
            Err(e) => {
                // Counted by the Ui for the summary; ctx.fail for the exit status.
                ui.finished(None);
                out.ctx.out.fail(&text, e);
                if out.json {
                    obj["error"] = e.to_string().into();
                    out.ctx.out.say(&obj.to_string());
                }
            }
        }
    }
}
