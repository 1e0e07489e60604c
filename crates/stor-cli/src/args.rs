//! Command-line flags (clap derive). Parsing only; `cmd/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Move files and bytes in and out of S3, S3-compatible engines and the embedded
/// local store.
///
/// Locations: s3://BUCKET/KEY is an object in S3 (or --endpoint-url), gs://BUCKET/KEY in
/// Google Cloud Storage (GOOGLE_APPLICATION_CREDENTIALS, STORAGE_EMULATOR_HOST),
/// az://CONTAINER/KEY in Azure Blob Storage (AZURE_STORAGE_CONNECTION_STRING, or
/// AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN),
/// local://BUCKET/KEY an object in the embedded local store, `-` is stdin/stdout,
/// anything else a file path.
#[derive(Debug, Parser)]
#[command(name = "stor", version, max_term_width = 100, after_long_help = crate::exit::HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, listed under their own heading in each command's
/// help (apart from its own options).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// S3 endpoint (MinIO, Ceph, SeaweedFS, R2, …) [env: AWS_ENDPOINT_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region [env: AWS_REGION]; default ap-northeast-2
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Profile: a named profile of the config file, else an AWS profile [env: STOR_PROFILE, AWS_PROFILE]
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Config file: {"storageConfig": {...}} or {"profiles": {"NAME": {...}}} [default: <config dir>/stor/config.json]
    #[arg(long, global = true, env = "STOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Root directory of the local store for local:// URLs
    #[arg(long, global = true, env = "STOR_LOCAL_ROOT", value_name = "DIR")]
    pub local_root: Option<PathBuf>,
    /// Parts or files transferred at once (default 10)
    #[arg(long, global = true, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Multipart part size, e.g. 8MiB, 64M (default: automatic, 16 MiB)
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub part_size: Option<u64>,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Bandwidth limit of all transfers together: 50MiB, or UP:DOWN as 10MiB:50MiB
    /// (K/M/G are powers of 1024; off for none)
    #[arg(long, global = true, value_name = "RATE", value_parser = parse_bwlimit)]
    pub bwlimit: Option<stor::config::Bandwidth>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy files and objects: file→object, object→file, object→object, stdin/stdout
    Cp(CpArgs),
    /// Move (copy, confirm, then delete the source)
    Mv(MvArgs),
    /// Make DST hold what SRC holds (directory <-> prefix): only new or changed files
    Sync(SyncArgs),
    /// List buckets (s3:// or local://), or objects under a prefix
    Ls(LsArgs),
    /// Show an object's size, ETag, modified time, Content-Type and metadata
    Stat(StatArgs),
    /// Delete objects
    Rm(RmArgs),
    /// Print a presigned URL (GET by default, valid 1 hour)
    Presign(PresignArgs),
    /// Make a bucket
    Mb(BucketArgs),
    /// Remove a bucket
    Rb(RbArgs),
    /// Abort stale multipart uploads
    Cleanup(CleanupArgs),
    /// Write an object to stdout, streaming
    Cat(CatArgs),
    /// Count objects and bytes under a prefix
    Du(DuArgs),
    /// Show the effective configuration, secrets masked
    Config(ConfigArgs),
    /// Check credentials, endpoint, bucket access, clock skew and S3 features
    Doctor(DoctorArgs),
    /// Show a bucket's versioning, or turn it on (enable) or off again (suspend)
    Versioning(VersioningArgs),
    /// Print shell completions: stor completions bash|zsh|fish
    Completions(CompletionsArgs),
    /// Print the man page (roff): stor man | man -l -
    Man,
    /// Print the version
    Version,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// The object
    pub url: String,
    /// This version of the object (as `ls --all-versions` shows it)
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VersioningAction {
    /// Keep every version from now on
    Enable,
    /// Stop keeping new versions (those kept stay)
    Suspend,
}

#[derive(Debug, Args)]
pub struct VersioningArgs {
    /// s3://BUCKET
    pub url: String,
    /// What to do; without it, show the state
    #[arg(value_enum, ignore_case = true)]
    pub action: Option<VersioningAction>,
}

#[derive(Debug, Args)]
pub struct DuArgs {
    /// s3://BUCKET[/PREFIX] or local://BUCKET[/PREFIX]
    pub url: String,
    /// Sizes as KiB/MiB/GiB
    #[arg(short = 'H', long)]
    pub human_readable: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective config (flags > environment > file) as JSON, secrets masked
    Show,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// s3://BUCKET (or local://BUCKET) to also check bucket access and features
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct UploadFlags {
    /// Content-Type of uploads (default: guessed from the name)
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// User metadata, repeatable: --metadata source=crawler
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub metadata: Vec<(String, String)>,
    /// Cache-Control of uploads
    #[arg(long, value_name = "VALUE")]
    pub cache_control: Option<String>,
    /// Content-Disposition of uploads
    #[arg(long, value_name = "VALUE")]
    pub content_disposition: Option<String>,
    /// Content-Encoding of uploads
    #[arg(long, value_name = "VALUE")]
    pub content_encoding: Option<String>,
    /// Storage class of uploads (STANDARD, STANDARD_IA, …)
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Server-side encryption: AES256 or aws:kms
    #[arg(long, value_name = "ALG")]
    pub sse: Option<String>,
    /// KMS key id for --sse aws:kms
    #[arg(long, value_name = "ID")]
    pub sse_kms_key_id: Option<String>,
    /// Object tag, repeatable: --tag team=data (at most 10)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: file, directory (with --recursive), -, s3://… or local://…
    pub src: String,
    /// Destination
    pub dst: String,
    /// Copy a directory or every object under a prefix
    #[arg(short, long)]
    pub recursive: bool,
    /// Show what would be copied, copy nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterFlags,
    /// One JSON object per transferred object, then a summary object (no progress bar)
    #[arg(long)]
    pub json: bool,
    /// The size the source must have (for `-`: a stream that ends short or runs long
    /// fails and stores nothing), e.g. 10GiB; also sizes the parts of a long stream
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub expected_size: Option<u64>,
    /// Never replace an object: write only keys that hold none (checked by the store
    /// as it writes); existing ones are skipped and said so
    #[arg(short = 'n', long, conflicts_with = "if_match")]
    pub no_clobber: bool,
    /// Replace the destination object only if its ETag is still this one (an
    /// optimistic update; fails, changing nothing, if someone replaced it meanwhile)
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
    /// Copy or download this version of the source object (to its own key:
    /// restores it as the current version)
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
    #[command(flatten)]
    pub upload: UploadFlags,
    /// Start over instead of continuing what an interrupted run of the same
    /// transfer left (by default a rerun sends only what is missing)
    #[arg(long)]
    pub no_resume: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Source: a directory or s3://BUCKET/PREFIX (local://…)
    pub src: String,
    /// Destination: a prefix or a directory
    pub dst: String,
    /// Compare contents where sizes match, by the checksum the object carries
    /// (CRC64NVME, CRC32C or CRC32), instead of modification times
    #[arg(long)]
    pub checksum: bool,
    /// Delete what the destination has and the source does not (never what the
    /// filters exclude, nor copies of entries the source has but skipped)
    #[arg(long)]
    pub delete: bool,
    /// With --delete: go ahead when the source holds nothing (refused otherwise:
    /// a mistyped prefix would empty the destination)
    #[arg(long, requires = "delete")]
    pub allow_empty_source: bool,
    /// Do not follow symlinks in the source directory: report each as skipped
    /// (by default they are followed, to files and directories; loops are reported)
    #[arg(long)]
    pub no_follow_symlinks: bool,
    /// Show what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterFlags,
    /// Only JSON on stdout: one object per upload, download, delete, skip, conflict
    /// or planned step, then a summary object (no progress bar)
    #[arg(long)]
    pub json: bool,
    /// Start over instead of continuing the uploads and downloads an interrupted
    /// sync left (by default a rerun sends only what is missing)
    #[arg(long)]
    pub no_resume: bool,
}

/// Globs matched against paths below the source directory or prefix (`*` also
/// matches `/`); excludes win.
#[derive(Debug, Args)]
pub struct FilterFlags {
    /// Only paths below the source matching this glob (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip paths below the source matching this glob (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MvArgs {
    /// Source: file, directory (with --recursive), s3://… or local://…
    pub src: String,
    /// Destination
    pub dst: String,
    /// Move a directory's files or every object under a prefix
    #[arg(short, long)]
    pub recursive: bool,
    /// Show what would be moved, move nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterFlags,
    /// One JSON object per moved object, then a summary object (no progress bar)
    #[arg(long)]
    pub json: bool,
    /// Start over instead of continuing what an interrupted run of the same
    /// transfer left (by default a rerun sends only what is missing)
    #[arg(long)]
    pub no_resume: bool,
    #[command(flatten)]
    pub upload: UploadFlags,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// s3://, local://, s3://BUCKET or s3://BUCKET/PREFIX
    pub url: String,
    /// List every key under the prefix instead of one level
    #[arg(short, long)]
    pub recursive: bool,
    /// Sizes as KiB/MiB/GiB
    #[arg(short = 'H', long)]
    pub human_readable: bool,
    /// Print the count and total size at the end
    #[arg(short, long)]
    pub summarize: bool,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
    /// Every version and delete marker, newest first per key, with its version id
    #[arg(long)]
    pub all_versions: bool,
}

#[derive(Debug, Args)]
pub struct StatArgs {
    /// The object
    pub url: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// This version of the object
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The object, or a prefix with --recursive
    pub url: String,
    /// Delete every object under the prefix (batched)
    #[arg(short, long)]
    pub recursive: bool,
    /// Show what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Remove this version (or delete marker) of the object for good
    #[arg(long, value_name = "ID", conflicts_with_all = ["recursive", "all_versions"])]
    pub version_id: Option<String>,
    /// Remove every version and delete marker for good: of the object, or with
    /// --recursive of every key under the prefix (a purge)
    #[arg(long)]
    pub all_versions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Download URL
    Get,
    /// Upload URL
    Put,
    /// Browser form upload: prints {"url": …, "fields": {…}} (a key ending in / is a
    /// prefix the form may write under)
    Post,
}

#[derive(Debug, Args)]
pub struct PresignArgs {
    /// The object (omit with --stdin)
    #[arg(required_unless_present = "stdin")]
    pub url: Option<String>,
    /// How long the URL stays valid: seconds or 30m, 12h, 7d (1 s ..= 7 d)
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub expires: std::time::Duration,
    /// HTTP method
    #[arg(long, value_enum, ignore_case = true, default_value = "get")]
    pub method: Method,
    /// For PUT and POST: the Content-Type the uploader must send
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Read s3:// URLs from stdin, one per line; print one presigned URL per line
    #[arg(long)]
    pub stdin: bool,
    /// For GET: this version of the object
    #[arg(long, value_name = "ID")]
    pub version_id: Option<String>,
    /// For POST: the largest file the form takes, e.g. 10MiB
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BucketArgs {
    /// s3://BUCKET or local://BUCKET
    pub url: String,
}

#[derive(Debug, Args)]
pub struct RbArgs {
    /// s3://BUCKET or local://BUCKET
    pub url: String,
    /// Delete every object first
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// s3://BUCKET or s3://BUCKET/PREFIX
    pub url: String,
    /// Only uploads started (and interrupted transfers last advanced) longer ago
    /// than this (e.g. 30m, 24h, 7d)
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub older_than: std::time::Duration,
    /// Show what would be aborted or discarded, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `123`, `64K`, `8MiB`, `1.5G` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 8MiB, 64M, 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => return Err(format!("unknown size unit {u:?} in {s:?} (use K, M, G, T)")),
    };
    Ok((n * mult as f64) as u64)
}

/// Parses `30s`, `15m`, `24h`, `7d` (or plain seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30m, 24h, 7d)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        u => return Err(format!("unknown duration unit {u:?} (use s, m, h, d)")),
    };
    n.checked_mul(mult)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long a duration"))
}

/// Parses `--bwlimit` (see [`stor::config::Bandwidth`]).
fn parse_bwlimit(s: &str) -> Result<stor::config::Bandwidth, String> {
    s.parse().map_err(|e: stor::Error| e.message().to_owned())
}

/// Parses `--tag KEY=VALUE` (the value may be empty).
fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn metadata_pairs() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=x").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
