//! The commands. Each one parses its locations, then calls the library.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _, Result};
use futures::{StreamExt, TryStreamExt};
use stor::{
    dir_prefix, BatchItem, BatchOptions, CopyOptions, DownloadOptions, Encryption, ErrorKind,
    ListOptions, Location, ObjectInfo, PresignMethod, PresignOptions, Scheme, Storage,
    StorageConfig, StorageType, UploadOptions,
};
use tokio::sync::OnceCell;

use stor::config::ConfigFile;

use crate::args::{self, Global, Method};
use crate::ui::{printable, select, Filter, Selection, Ui};

/// Exit status when some operation failed.
pub const EXIT_FAILED: u8 = 1;

/// Everything commands share: the effective config and the stores, opened on first use.
pub struct Ctx {
    base: StorageConfig,
    /// The config file's profile in use, when the file has profiles.
    stor_profile: Option<String>,
    pub(crate) quiet: bool,
    s3: OnceCell<Storage>,
    local: OnceCell<Storage>,
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    failures: AtomicU64,
    /// Entries a walk left out (FIFOs, dangling links …), for the summary.
    pub(crate) skipped: AtomicU64,
    /// Many-object commands print JSON lines (`cp --json`, `sync --json`).
    pub(crate) json: std::sync::atomic::AtomicBool,
}

/// The config file: `--config`/`STOR_CONFIG`, else `<config dir>/stor/config.json`
/// when it exists.
fn config_file(g: &Global) -> Result<Option<ConfigFile>> {
    let path = match &g.config {
        Some(p) => Some(p.clone()),
        None => dirs::config_dir()
            .map(|d| d.join("stor").join("config.json"))
            .filter(|p| p.is_file()),
    };
    Ok(path.map(ConfigFile::read).transpose()?)
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// The flag if given, else the first of `vars` that is set (flags > environment).
fn flag_or_env(flag: &Option<String>, vars: &[&str]) -> Option<String> {
    flag.clone().or_else(|| vars.iter().find_map(|v| env(v)))
}

/// A profile named by `--profile`, else `STOR_PROFILE`, else `AWS_PROFILE`: a
/// profile of the config file when it has one by that name, else an AWS profile.
struct NamedProfile {
    name: String,
    by: &'static str,
}

impl NamedProfile {
    fn from(g: &Global) -> Option<NamedProfile> {
        let named = |name: String, by| NamedProfile { name, by };
        g.profile
            .clone()
            .filter(|p| !p.trim().is_empty())
            .map(|p| named(p, "--profile"))
            .or_else(|| env("STOR_PROFILE").map(|p| named(p, "STOR_PROFILE")))
            .or_else(|| env("AWS_PROFILE").map(|p| named(p, "AWS_PROFILE")))
    }

    fn is_flag(&self) -> bool {
        self.by == "--profile"
    }
}

/// Where the credentials come from, in the order they win (as in the aws cli):
/// `--profile` > `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` > `STOR_PROFILE`/
/// `AWS_PROFILE` > the config file's keys or `profile` > the rest of the AWS chain.
#[derive(Clone)]
enum Credentials {
    /// The config file's (or its chosen profile's) keys, or the AWS profile it names.
    File,
    /// That AWS profile only.
    AwsProfile(String),
    /// The AWS chain, which starts with the environment's keys.
    Chain,
}

/// The effective config: the config file (or its profile that `--profile`,
/// `STOR_PROFILE` or `AWS_PROFILE` names), the environment over it, flags over both;
/// credentials as [`Credentials`] orders them. A named profile that exists nowhere
/// is an error listing the files looked in.
async fn effective_config(g: &Global) -> Result<(StorageConfig, Option<String>)> {
    let file = config_file(g)?;
    let named = NamedProfile::from(g);
    let stor_profile = named
        .as_ref()
        .filter(|n| file.as_ref().is_some_and(|f| f.has_profile(&n.name)))
        .map(|n| n.name.clone());
    let aws = OnceCell::new();
    let aws_profiles = || aws.get_or_try_init(stor::credentials::AwsProfiles::load);
    if let Some(n) = named.as_ref().filter(|_| stor_profile.is_none()) {
        let profiles = aws_profiles().await?;
        if profiles.find(&n.name).is_none() {
            let mut places = Vec::new();
            if let Some(f) = file.as_ref().filter(|f| !f.profiles().is_empty()) {
                places.push(format!(
                    "{} (it has: {})",
                    f.path().display(),
                    f.profiles().join(", ")
                ));
            }
            places.push(profiles.summary());
            return Err(stor::Error::new(
                ErrorKind::Config,
                format!(
                    "profile {} not found in {} (named by {})",
                    n.name,
                    places.join(", "),
                    n.by
                ),
            )
            .into());
        }
    }
    let mut base = match &file {
        None => StorageConfig::default(),
        Some(f) if stor_profile.is_some() => f.config(stor_profile.as_deref())?,
        // An AWS profile is named and the file's profiles have no default: the
        // file adds nothing.
        Some(f) if named.is_some() && !f.profiles().is_empty() && !f.has_profile("default") => {
            StorageConfig {
                config_file: Some(f.path().to_owned()),
                ..StorageConfig::default()
            }
        }
        Some(f) => f.config(None)?,
    };
    // Flags > environment > config file.
    if let Some(root) = &g.local_root {
        base.local_root = Some(root.clone());
    }
    if let Some(e) = flag_or_env(
        &g.endpoint_url,
        &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
    ) {
        base.endpoint_url = Some(e);
    }
    if let Some(r) = flag_or_env(&g.region, &["AWS_REGION", "AWS_DEFAULT_REGION"]) {
        base.region_name = Some(r);
    }
    // Credentials.
    // Half a key pair is no key (the SDK's rule); "no credentials found" then
    // says so.
    let env_keys = env("AWS_ACCESS_KEY_ID").is_some() && env("AWS_SECRET_ACCESS_KEY").is_some();
    let from_file =
        (base.aws_access_key_id.is_some() || base.profile.is_some()).then_some(Credentials::File);
    let by_name = |n: &NamedProfile| match &stor_profile {
        Some(_) => from_file.clone(),
        None => Some(Credentials::AwsProfile(n.name.clone())),
    };
    let flag = named.as_ref().filter(|n| n.is_flag());
    let from_env = named.as_ref().filter(|n| !n.is_flag());
    let chosen = flag
        .and_then(by_name)
        .or(env_keys.then_some(Credentials::Chain))
        .or_else(|| from_env.and_then(by_name))
        .or(from_file)
        .unwrap_or(Credentials::Chain);
    match chosen {
        Credentials::File => {}
        Credentials::AwsProfile(p) => {
            base.profile = Some(p);
            clear_keys(&mut base);
        }
        Credentials::Chain => {
            base.profile = None;
            clear_keys(&mut base);
        }
    }
    if let Some(p) = &base.profile {
        let profiles = aws_profiles().await?;
        if profiles.find(p).is_none() {
            return Err(profiles.not_found(p).into());
        }
    }
    if let Some(c) = g.concurrency {
        base.max_concurrency = c;
        base.max_pool_connections = base.max_pool_connections.max(c);
    }
    if let Some(p) = g.part_size {
        base.part_size = Some(p);
    }
    base.validate()?;
    Ok((base, stor_profile))
}

fn clear_keys(cfg: &mut StorageConfig) {
    cfg.aws_access_key_id = None;
    cfg.aws_secret_access_key = None;
    cfg.aws_session_token = None;
}

impl Ctx {
    pub async fn new(g: &Global) -> Result<Ctx> {
        let (base, stor_profile) = effective_config(g).await?;
        Ok(Ctx {
            base,
            stor_profile,
            quiet: g.quiet,
            s3: OnceCell::new(),
            local: OnceCell::new(),
            out: Mutex::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            )),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            json: Default::default(),
        })
    }

    /// The store for a scheme, opened once.
    pub async fn store(&self, scheme: Scheme) -> Result<&Storage> {
        let (cell, ty) = match scheme {
            Scheme::S3 => (&self.s3, StorageType::S3),
            Scheme::Local => (&self.local, StorageType::Local),
        };
        let s = cell
            .get_or_try_init(|| async {
                let cfg = StorageConfig {
                    storage_type: ty,
                    ..self.base.clone()
                };
                let store = Storage::new(cfg).await?;
                // Credentials now, once: missing ones are one clear error before
                // any transfer starts, not one per object.
                store.credentials_source().await?;
                Ok::<_, stor::Error>(store)
            })
            .await?;
        Ok(s)
    }

    /// Writes a line to stdout, control characters escaped (a key holding `\n` or
    /// ESC never splits a line or reaches the terminal). A closed pipe (`stor ls |
    /// head`) ends quietly.
    pub fn say(&self, line: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(out, "{}", printable(line)) {
            exit_on_broken_pipe(e);
        }
    }

    /// Several lines of text the command made itself (pretty JSON: serde escapes
    /// control characters in strings), each through [`Ctx::say`].
    pub fn say_block(&self, text: &str) {
        for line in text.lines() {
            self.say(line);
        }
    }

    /// Like [`Ctx::say`] unless `--quiet`.
    pub fn note(&self, line: &str) {
        if !self.quiet {
            self.say(line);
        }
    }

    pub fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.flush() {
            exit_on_broken_pipe(e);
        }
    }

    /// Reports the entries a directory walk left out (those the filter would have
    /// excluded anyway are not mentioned): failures fail the command, the rest are
    /// counted as skipped in its summary.
    pub fn report_skipped(&self, skipped: &[stor::Skipped], prefix: &str, filter: &Filter) {
        for s in skipped {
            let rel = s.key.as_deref().map(|k| k.get(prefix.len()..).unwrap_or(k));
            if rel.is_some_and(|r| !filter.allows(r.trim_end_matches('/'))) {
                continue;
            }
            if s.failed {
                self.fail(&format!("upload {}", s.path.display()), &s.reason);
            } else {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                if !self.quiet {
                    self.flush();
                    let line = format!("skipped {}: {}", s.path.display(), s.reason);
                    eprintln!("stor: {}", printable(&line));
                }
            }
        }
    }

    /// Reports one failed item of a many-item command and remembers the failure.
    pub fn fail(&self, what: &str, err: &dyn std::fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.flush();
        eprintln!("stor: {}", printable(&format!("{what} failed: {err}")));
    }

    pub fn status(&self) -> u8 {
        self.flush();
        if self.failures.load(Ordering::Relaxed) > 0 {
            EXIT_FAILED
        } else {
            0
        }
    }

    fn concurrency(&self) -> usize {
        self.base.max_concurrency
    }
}

fn exit_on_broken_pipe(e: std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("stor: writing to stdout failed: {e}");
    std::process::exit(EXIT_FAILED as i32);
}

fn parse(s: &str) -> Result<Location> {
    Ok(s.parse::<Location>()?)
}

fn object(s: &str) -> Result<(Scheme, String, String)> {
    match parse(s)? {
        Location::Object {
            scheme,
            bucket,
            key,
        } => Ok((scheme, bucket, key)),
        _ => Err(stor::Error::new(
            ErrorKind::InvalidInput,
            format!("{s:?} is not an object URL; write s3://BUCKET/KEY or local://BUCKET/KEY"),
        )
        .into()),
    }
}

pub(crate) fn url(scheme: Scheme, bucket: &str, key: &str) -> String {
    format!("{}://{}/{}", scheme.as_str(), bucket, key)
}

fn upload_opts(f: &args::UploadFlags) -> Result<UploadOptions> {
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

pub(crate) fn usage(msg: String) -> anyhow::Error {
    stor::Error::new(ErrorKind::InvalidInput, msg).into()
}

/// The one rule of every recursive command (`cp -r`, `mv -r`, `rm -r`, `sync`,
/// `du`, `ls -r`): a URL names a directory, so `s3://b/logs` and `s3://b/logs/`
/// both mean the keys under `logs/` — never `logs-archive/…` or `logsX`, which
/// only share a name prefix (a wildcard, `s3://b/logs*`, matches by name).
pub(crate) fn tree_prefix(key: &str) -> String {
    dir_prefix(key)
}

/// The key for `name` under a destination key: `dir/` + name, or the key itself.
fn key_under(dst_key: &str, name: &str) -> String {
    if dst_key.is_empty() || dst_key.ends_with('/') {
        format!("{dst_key}{name}")
    } else {
        dst_key.to_owned()
    }
}

// ---------------------------------------------------------------- cp

pub async fn cp(ctx: &Ctx, a: &args::CpArgs) -> Result<u8> {
    ctx.json.store(a.json, Ordering::Relaxed);
    let src = parse(&a.src)?;
    let dst = parse(&a.dst)?;
    let mut opts = upload_opts(&a.upload)?;
    opts.expected_size = a.expected_size;
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
                upload_dir(
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
                    ctx.say(&format!(
                        "(dryrun) upload: {} to {}",
                        p.display(),
                        url(*scheme, bucket, &k)
                    ));
                } else {
                    store.upload_file(bucket.as_str(), &k, p, opts).await?;
                    ctx.note(&format!(
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
            store
                .upload_reader(bucket.as_str(), key, tokio::io::stdin(), opts)
                .await?;
            ctx.note(&format!("upload: - to {}", url(*scheme, bucket, key)));
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
            let selected = resolve_source(store, bucket, key).await?;
            if let Selection::Pattern {
                prefix, pattern, ..
            } = &selected
            {
                // s3://b/logs/*.json: the matching keys, named below the wildcard's
                // directory, into the target directory.
                let filter = Filter::glob(pattern)?;
                let url = Some(a.src.as_str());
                download_prefix(
                    ctx, store, *scheme, bucket, prefix, p, a.dry_run, &filter, url,
                )
                .await?;
            } else if a.recursive {
                let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
                let prefix = tree_prefix(&selected.key());
                download_prefix(
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
                    ctx.say(&format!(
                        "(dryrun) download: {} to {}",
                        url(*scheme, bucket, key),
                        target.display()
                    ));
                } else {
                    store.download_file(bucket.as_str(), key, &target).await?;
                    ctx.note(&format!(
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
            to_stdout(store, bucket, key).await?;
        }
        (Location::Object { .. }, Location::Object { .. }) => {
            let filter = Filter::new(&a.filter.include, &a.filter.exclude)?;
            copy_objects(
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

/// Which way a batch goes: uploads with these options, or downloads that stay
/// inside this directory.
pub(crate) enum Way<'a> {
    Up(&'a UploadOptions),
    Down(&'a Path),
}

/// Runs a batch through the library (one budget for all objects), printing one
/// line per object and the summary.
pub(crate) async fn run_batch(
    ctx: &Ctx,
    store: &Storage,
    bucket: &str,
    items: Vec<BatchItem>,
    way: Way<'_>,
    describe: &(dyn Fn(&BatchItem) -> String + Sync),
) {
    let (up, root) = match way {
        Way::Up(o) => (Some(o), None),
        Way::Down(dir) => (None, Some(dir.to_path_buf())),
    };
    let total: u64 = items.iter().filter_map(|i| i.size).sum();
    let json = ctx.json.load(Ordering::Relaxed);
    let ui = Ui::new(ctx.quiet, json, total, items.len() as u64);
    let opts = BatchOptions {
        upload: up.cloned().unwrap_or_default(),
        concurrency: Some(ctx.concurrency()),
        progress: Some(ui.progress()),
        root,
        ..Default::default()
    };
    let before = store.metrics().retries;
    let earlier = ctx.failures.load(Ordering::Relaxed);
    let op = if up.is_some() { "upload" } else { "download" };
    let mut outcomes = match up {
        Some(_) => store.upload_many(bucket, items, opts),
        None => store.download_many(bucket, items, opts),
    };
    while let Some(o) = outcomes.next().await {
        if json {
            // One JSON object per line, failures included (and counted for the status).
            let line = serde_json::json!({
                "op": op,
                "path": o.item.path.display().to_string(),
                "key": o.item.key,
                "bytes": o.result.as_ref().ok().map(|r| r.bytes),
                "etag": o.result.as_ref().ok().and_then(|r| r.etag.clone()),
                "checksum": o.result.as_ref().ok().and_then(|r| r.checksum.clone()),
                "error": o.result.as_ref().err().map(|e| e.to_string()),
            });
            ctx.say(&line.to_string());
        }
        match &o.result {
            Ok(r) => {
                ui.finished(Some(r.bytes));
                if !json && !ctx.quiet && !ui.println(&describe(&o.item)) {
                    ctx.note(&describe(&o.item));
                }
            }
            Err(e) => {
                ui.finished(None);
                if json {
                    ctx.failures.fetch_add(1, Ordering::Relaxed);
                } else {
                    ctx.fail(&describe(&o.item), e);
                }
            }
        }
    }
    let skipped = ctx.skipped.load(Ordering::Relaxed);
    let summary = ui.finish(store.metrics().retries - before, skipped, earlier);
    if json {
        ctx.say(&serde_json::json!({ "summary": summary }).to_string());
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload_dir(
    ctx: &Ctx,
    store: &Storage,
    scheme: Scheme,
    dir: &Path,
    bucket: &str,
    key: &str,
    opts: &UploadOptions,
    dry_run: bool,
    filter: &Filter,
) -> Result<()> {
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let prefix = dir_prefix(key);
    let plan = stor::plan_upload(dir, &prefix, true)?;
    ctx.report_skipped(&plan.skipped, &prefix, filter);
    let items: Vec<BatchItem> = plan
        .items
        .into_iter()
        .filter(|i| filter.allows(&i.key[prefix.len()..]))
        .collect();
    let describe = |i: &BatchItem| {
        format!(
            "upload: {} to {}",
            i.path.display(),
            url(scheme, bucket, &i.key)
        )
    };
    if dry_run {
        for i in &items {
            ctx.say(&format!("(dryrun) {}", describe(i)));
        }
        return Ok(());
    }
    run_batch(ctx, store, bucket, items, Way::Up(opts), &describe).await;
    Ok(())
}

/// Downloads the objects under `prefix` that pass `filter` (matched on the key
/// below the prefix) into `dir`.
#[allow(clippy::too_many_arguments)]
async fn download_prefix(
    ctx: &Ctx,
    store: &Storage,
    scheme: Scheme,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    dry_run: bool,
    filter: &Filter,
    pattern: Option<&str>,
) -> Result<()> {
    let mut items = Vec::new();
    let mut refused = 0;
    for planned in store.plan_download(bucket, prefix, dir).await? {
        match planned {
            Ok(i) if filter.allows(&i.key[prefix.len()..]) => items.push(i),
            Ok(_) => {}
            Err(e) if e.key().is_some_and(|k| !filter.allows(&k[prefix.len()..])) => {}
            Err(e) => {
                refused += 1;
                ctx.fail("download", &e)
            }
        }
    }
    if let (Some(url), true) = (pattern, items.is_empty() && refused == 0) {
        return Err(anyhow!("no objects match {url}"));
    }
    let describe = |i: &BatchItem| {
        format!(
            "download: {} to {}",
            url(scheme, bucket, &i.key),
            i.path.display()
        )
    };
    if dry_run {
        for i in &items {
            ctx.say(&format!("(dryrun) {}", describe(i)));
        }
        return Ok(());
    }
    run_batch(ctx, store, bucket, items, Way::Down(dir), &describe).await;
    Ok(())
}

/// Copies (or moves) object → object: server-side within one store, streamed
/// between stores.
#[allow(clippy::too_many_arguments)]
async fn copy_objects(
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
    let (wildcard, sk) = match resolve_source(sstore, sb, sk).await? {
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
    let one = |from: String, to: String| {
        let replace = replace.clone();
        async move {
            if ss == ds {
                let opts = CopyOptions {
                    replace,
                    ..Default::default()
                };
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
                stream_copy(sstore, sb, &from, dstore, db, &to, replace).await?;
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
            ctx.say(&format!("(dryrun) {verb}: {fu} to {tu}"));
        } else {
            one(from, to).await?;
            ctx.note(&format!("{verb}: {fu} to {tu}"));
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
                    ctx.say(&format!("(dryrun) {verb}: {fu} to {tu}"));
                    return;
                }
                match one(from, to).await {
                    Ok(()) => ctx.note(&format!("{verb}: {fu} to {tu}")),
                    Err(e) => ctx.fail(&format!("{verb} {fu}"), &e),
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
/// replaced; the destination's size is checked against the source's.
async fn stream_copy(
    from: &Storage,
    sb: &str,
    sk: &str,
    to: &Storage,
    db: &str,
    dk: &str,
    replace: Option<UploadOptions>,
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
    let r = to
        .upload_reader(db, dk, obj.into_async_read(), opts)
        .await?;
    if r.bytes != info.size {
        bail!(
            "copied {} bytes of {}; the source was kept",
            r.bytes,
            info.size
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- mv

pub async fn mv(ctx: &Ctx, a: &args::MvArgs) -> Result<u8> {
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
            store.upload_file(bucket.as_str(), &k, p, opts).await?;
            // The upload is confirmed (it returned Ok): only now remove the file.
            std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
            ctx.note(&format!(
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
            store.download_file(bucket.as_str(), key, &target).await?;
            store.delete(bucket.as_str(), key).await?;
            ctx.note(&format!(
                "move: {} to {}",
                url(*scheme, bucket, key),
                target.display()
            ));
        }
        _ => return Err(usage(format!("cannot move {} to {}", a.src, a.dst))),
    }
    Ok(ctx.status())
}

// ---------------------------------------------------------------- ls

pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

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

pub async fn ls(ctx: &Ctx, a: &args::LsArgs) -> Result<u8> {
    let bucket_listing = match a.url.as_str() {
        "s3://" | "s3:" => Some(Scheme::S3),
        "local://" | "local:" => Some(Scheme::Local),
        _ => None,
    };
    if let Some(scheme) = bucket_listing {
        let store = ctx.store(scheme).await?;
        for b in store.list_buckets().await? {
            if a.json {
                ctx.say(&serde_json::json!({ "bucket": b }).to_string());
            } else {
                ctx.say(&format!("{}://{b}", scheme.as_str()));
            }
        }
        return Ok(ctx.status());
    }
    let (scheme, bucket, key) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
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
                ctx.say(&serde_json::json!({ "prefix": p }).to_string());
            } else {
                ctx.say(&format!("{:>30} PRE {}", "", &p[base.len()..]));
            }
        }
        for o in &page.objects {
            count += 1;
            total += o.size;
            if a.json {
                ctx.say(&serde_json::to_string(o)?);
            } else {
                let size = if a.human_readable {
                    human(o.size)
                } else {
                    o.size.to_string()
                };
                ctx.say(&format!(
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
            ctx.say(&serde_json::json!({ "objects": count, "bytes": total }).to_string());
        } else {
            let size = if a.human_readable {
                human(total)
            } else {
                total.to_string()
            };
            ctx.say("");
            ctx.say(&format!("Total Objects: {count}"));
            ctx.say(&format!("   Total Size: {size}"));
        }
    }
    Ok(ctx.status())
}

// ---------------------------------------------------------------- stat

pub async fn stat(ctx: &Ctx, a: &args::StatArgs) -> Result<u8> {
    let (scheme, bucket, key) = object(&a.url)?;
    if key.is_empty() {
        return Err(usage(format!("{} names no object", a.url)));
    }
    let store = ctx.store(scheme).await?;
    let info = store.info(bucket.as_str(), &key).await?;
    if a.json {
        ctx.say(&serde_json::to_string(&info)?);
    } else {
        ctx.say(&format!("URL:           {}", url(scheme, &bucket, &key)));
        ctx.say(&format!(
            "Size:          {} ({})",
            info.size,
            human(info.size)
        ));
        ctx.say(&format!(
            "Last-Modified: {}",
            info.last_modified
                .map(stor::format_time)
                .unwrap_or_default()
        ));
        ctx.say(&format!(
            "ETag:          {}",
            info.etag.as_deref().unwrap_or("")
        ));
        ctx.say(&format!(
            "Content-Type:  {}",
            info.content_type.as_deref().unwrap_or("")
        ));
        if let Some(sc) = &info.storage_class {
            ctx.say(&format!("Storage-Class: {sc}"));
        }
        for (k, v) in [
            ("Cache-Control", &info.cache_control),
            ("Content-Disposition", &info.content_disposition),
            ("Content-Encoding", &info.content_encoding),
        ] {
            if let Some(v) = v {
                ctx.say(&format!("{k}: {v}"));
            }
        }
        for (k, v) in &info.metadata {
            ctx.say(&format!("Metadata:      {k}={v}"));
        }
    }
    Ok(ctx.status())
}

// ---------------------------------------------------------------- rm

pub async fn rm(ctx: &Ctx, a: &args::RmArgs) -> Result<u8> {
    let (scheme, bucket, key) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
    let key = match resolve_source(store, &bucket, &key).await? {
        Selection::Pattern {
            prefix, pattern, ..
        } => {
            let filter = Filter::glob(&pattern)?;
            let n = delete_under(
                ctx,
                store,
                scheme,
                &bucket,
                &prefix,
                Some(&filter),
                a.dry_run,
            )
            .await?;
            if n == 0 {
                return Err(anyhow!("no objects match {} (nothing was deleted)", a.url));
            }
            return Ok(ctx.status());
        }
        Selection::Key(k) => k,
    };
    if !a.recursive {
        if key.is_empty() || key.ends_with('/') {
            return Err(usage(format!(
                "{} is a prefix; add --recursive to delete under it",
                a.url
            )));
        }
        if a.dry_run {
            ctx.say(&format!("(dryrun) delete: {}", url(scheme, &bucket, &key)));
        } else {
            store.delete(bucket.as_str(), &key).await?;
            ctx.note(&format!("delete: {}", url(scheme, &bucket, &key)));
        }
        return Ok(ctx.status());
    }
    delete_under(
        ctx,
        store,
        scheme,
        &bucket,
        &tree_prefix(&key),
        None,
        a.dry_run,
    )
    .await?;
    Ok(ctx.status())
}

/// A source key by the wildcard rule ([`Selection`]): a pattern, unless an object
/// of exactly the text given exists (it wins).
async fn resolve_source(store: &Storage, bucket: &str, key: &str) -> Result<Selection> {
    match select(key) {
        Selection::Pattern { raw, .. } if store.exists(bucket, &raw).await? => {
            Ok(Selection::Key(raw))
        }
        s => Ok(s),
    }
}

/// Deletes the keys under `prefix` (those whose rest passes `filter`, when given),
/// in batches; returns how many were (or, with `dry_run`, would be) deleted.
async fn delete_under(
    ctx: &Ctx,
    store: &Storage,
    scheme: Scheme,
    bucket: &str,
    prefix: &str,
    filter: Option<&Filter>,
    dry_run: bool,
) -> Result<u64> {
    let mut keys = store
        .list_stream(bucket, ListOptions::default().prefix(prefix.to_owned()))
        .map_ok(|o| o.key)
        .try_filter(|k| {
            let keep = filter.is_none_or(|f| f.allows(&k[prefix.len()..]));
            std::future::ready(keep)
        })
        .try_chunks(stor::DELETE_BATCH);
    let mut n = 0;
    while let Some(chunk) = keys.next().await {
        let chunk = chunk.map_err(|e| e.1)?;
        n += chunk.len() as u64;
        if dry_run {
            for k in &chunk {
                ctx.say(&format!("(dryrun) delete: {}", url(scheme, bucket, k)));
            }
            continue;
        }
        for r in store.delete_many(bucket, &chunk).await? {
            match &r.error {
                None => ctx.note(&format!("delete: {}", url(scheme, bucket, &r.key))),
                Some(e) => ctx.fail(&format!("delete {}", url(scheme, bucket, &r.key)), e),
            }
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------- presign

fn presign_opts(a: &args::PresignArgs) -> Result<PresignOptions> {
    if a.expires.is_zero() {
        return Err(usage(
            "--expires: must be 1 s to 7 days (e.g. 600, 10m, 12h, 7d)".into(),
        ));
    }
    Ok(PresignOptions {
        method: match a.method {
            Method::Get => PresignMethod::Get,
            Method::Put => PresignMethod::Put,
        },
        expires_in: a.expires,
        content_type: a.content_type.clone(),
        ..Default::default()
    })
}

pub async fn presign(ctx: &Ctx, a: &args::PresignArgs) -> Result<u8> {
    let opts = presign_opts(a)?;
    if a.stdin {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            // Keys may end in spaces: only the line ending goes.
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let res: Result<String> = async {
                let (scheme, bucket, key) = object(line)?;
                Ok(ctx
                    .store(scheme)
                    .await?
                    .presign(bucket.as_str(), &key, opts.clone())
                    .await?)
            }
            .await;
            match res {
                Ok(u) => ctx.say(&u),
                Err(e) => ctx.fail(&format!("presign {line}"), &e),
            }
        }
        return Ok(ctx.status());
    }
    let url_arg = a
        .url
        .as_deref()
        .ok_or_else(|| anyhow!("give a URL or --stdin"))?;
    let (scheme, bucket, key) = object(url_arg)?;
    let u = ctx
        .store(scheme)
        .await?
        .presign(bucket.as_str(), &key, opts)
        .await?;
    ctx.say(&u);
    Ok(ctx.status())
}

// ---------------------------------------------------------------- buckets

fn bucket_only(u: &str) -> Result<(Scheme, String)> {
    let (scheme, bucket, key) = object(u)?;
    if !key.is_empty() {
        return Err(usage(format!("{u} names a key; give only s3://BUCKET")));
    }
    Ok((scheme, bucket))
}

pub async fn mb(ctx: &Ctx, a: &args::BucketArgs) -> Result<u8> {
    let (scheme, bucket) = bucket_only(&a.url)?;
    ctx.store(scheme).await?.create_bucket(&bucket).await?;
    ctx.note(&format!("make_bucket: {}://{bucket}", scheme.as_str()));
    Ok(ctx.status())
}

pub async fn rb(ctx: &Ctx, a: &args::RbArgs) -> Result<u8> {
    let (scheme, bucket) = bucket_only(&a.url)?;
    let store = ctx.store(scheme).await?;
    if a.force {
        delete_under(ctx, store, scheme, &bucket, "", None, false).await?;
        if ctx.failures.load(Ordering::Relaxed) > 0 {
            bail!("some objects could not be deleted; the bucket was kept");
        }
    }
    store.delete_bucket(&bucket).await?;
    ctx.note(&format!("remove_bucket: {}://{bucket}", scheme.as_str()));
    Ok(ctx.status())
}

pub async fn cleanup(ctx: &Ctx, a: &args::CleanupArgs) -> Result<u8> {
    let (scheme, bucket, prefix) = object(&a.url)?;
    let store = ctx.store(scheme).await?;
    if a.dry_run {
        let cutoff = std::time::SystemTime::now().checked_sub(a.older_than);
        for u in store.list_uploads(bucket.as_str(), &prefix).await? {
            let stale = matches!((u.initiated, cutoff), (Some(t), Some(c)) if t <= c)
                || u.initiated.is_none();
            if stale {
                ctx.say(&format!(
                    "(dryrun) abort: {} {}",
                    url(scheme, &bucket, &u.key),
                    u.upload_id
                ));
            }
        }
        return Ok(ctx.status());
    }
    let aborted = store
        .abort_stale_uploads(bucket.as_str(), &prefix, a.older_than)
        .await?;
    for u in &aborted {
        ctx.note(&format!(
            "abort: {} {}",
            url(scheme, &bucket, &u.key),
            u.upload_id
        ));
    }
    ctx.note(&format!(
        "aborted {} stale multipart upload(s)",
        aborted.len()
    ));
    if scheme == Scheme::Local {
        // The local store's leftovers are files, for the whole store, not per bucket.
        let r = store.sweep().await?;
        ctx.note(&format!(
            "removed {} temp file(s) ({} bytes) and {} orphan blob(s) ({} bytes) \
             left by writes that never finished",
            r.temp_files, r.temp_bytes, r.orphan_blobs, r.orphan_bytes
        ));
    }
    Ok(ctx.status())
}

// ---------------------------------------------------------------- cat, du, config

pub async fn cat(ctx: &Ctx, a: &args::CatArgs) -> Result<u8> {
    let (scheme, bucket, key) = object(&a.url)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(usage(format!("{} names no object", a.url)));
    }
    to_stdout(ctx.store(scheme).await?, &bucket, &key).await?;
    Ok(ctx.status())
}

/// Streams an object to stdout; a closed pipe ends the process quietly.
async fn to_stdout(store: &Storage, bucket: &str, key: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut body = store
        .download_stream(bucket, key, DownloadOptions::default())
        .await?
        .body;
    let mut stdout = tokio::io::stdout();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        // Bytes already on stdout cannot be taken back: say how many there are.
        let chunk = chunk.map_err(|e| {
            anyhow!(
                "{e}; {written} bytes of it had already been written to stdout — \
                 discard them"
            )
        })?;
        if let Err(e) = stdout.write_all(&chunk).await {
            exit_on_broken_pipe(e);
        }
        written += chunk.len() as u64;
    }
    if let Err(e) = stdout.flush().await {
        exit_on_broken_pipe(e);
    }
    Ok(())
}

pub async fn du(ctx: &Ctx, a: &args::DuArgs) -> Result<u8> {
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
        ctx.say(&serde_json::json!({ "url": a.url, "objects": count, "bytes": bytes }).to_string());
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
        ctx.say(&format!("{size} in {count} objects\t{}", a.url));
    }
    Ok(ctx.status())
}

/// The effective config with secrets masked (the access key id shows 4 characters).
/// The effective config as `{"storageConfig": {...}}`, secrets masked, with where
/// it came from: `config_file`, the file's `stor_profile`, and `credentials_source`
/// (decided without network: "environment (AWS_ACCESS_KEY_ID)", "profile prod
/// (~/.aws/credentials)", "config file …").
pub async fn config_show(ctx: &Ctx) -> Result<u8> {
    let mut v = serde_json::to_value(&ctx.base)?;
    if let Some(m) = v.as_object_mut() {
        for k in ["aws_secret_access_key", "aws_session_token"] {
            if m.get(k).is_some_and(|x| !x.is_null()) {
                m.insert(k.into(), "***".into());
            }
        }
        if let Some(url) = ctx.base.endpoint_url.as_deref() {
            m.insert("endpoint_url".into(), stor::config::redact_url(url).into());
        }
        if let Some(id) = ctx.base.aws_access_key_id.as_deref() {
            m.insert(
                "aws_access_key_id".into(),
                stor::config::mask_key_id(id).into(),
            );
        }
        m.insert(
            "local_root".into(),
            ctx.base.resolved_local_root().display().to_string().into(),
        );
    }
    let mut credentials = stor::credentials::describe(&ctx.base).await?;
    if let (Some(p), Some(_)) = (&ctx.stor_profile, &ctx.base.aws_access_key_id) {
        credentials.push_str(&format!(", profile {p}"));
    }
    ctx.say_block(&serde_json::to_string_pretty(&serde_json::json!({
        "storageConfig": v,
        "config_file": ctx.base.config_file,
        "stor_profile": ctx.stor_profile,
        "credentials_source": credentials,
    }))?);
    Ok(ctx.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_keys() {
        assert_eq!(key_under("", "f.txt"), "f.txt");
        assert_eq!(key_under("dir/", "f.txt"), "dir/f.txt");
        assert_eq!(key_under("exact.txt", "f.txt"), "exact.txt");
        assert_eq!(dir_prefix("logs"), "logs/");
        assert_eq!(dir_prefix(""), "");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }
}
