//! The context every command runs in: the effective config — flags over the
//! environment over the config file, with its profiles — the stores, opened once
//! each on first use, and the run's [`Output`].

use std::sync::Arc;

use anyhow::Result;
use stor::config::ConfigFile;
use stor::{ErrorKind, Scheme, Storage, StorageConfig, StorageType};
use tokio::sync::OnceCell;

use crate::args::Global;
use crate::exit::Exit;
use crate::output::Output;

/// Everything commands share: the effective config, the stores, the output.
pub struct Ctx {
    base: StorageConfig,
    /// The config file's profile in use, when the file has profiles.
    stor_profile: Option<String>,
    /// Where the config's `endpoint_url` came from, when it has one.
    endpoint_from: Option<String>,
    s3: OnceCell<Storage>,
    local: OnceCell<Storage>,
    gcs: OnceCell<Storage>,
    azure: OnceCell<Storage>,
    pub out: Arc<Output>,
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

/// The effective config, the config file's profile in use, and where the endpoint
/// came from.
struct Effective {
    base: StorageConfig,
    stor_profile: Option<String>,
    endpoint_from: Option<String>,
}

/// The effective config: the config file (or its profile that `--profile`,
/// `STOR_PROFILE` or `AWS_PROFILE` names), the environment over it, flags over both;
/// credentials as [`Credentials`] orders them. A named profile that exists nowhere
/// is an error listing the files looked in.
async fn effective_config(g: &Global) -> Result<Effective> {
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
    let mut endpoint_from = base.endpoint_url.as_ref().map(|_| match &file {
        Some(f) => format!("the config file {}", f.path().display()),
        None => "the config file".to_owned(),
    });
    let endpoint_vars = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"];
    if let Some(e) = flag_or_env(&g.endpoint_url, &endpoint_vars) {
        base.endpoint_url = Some(e);
        endpoint_from = Some(match &g.endpoint_url {
            Some(_) => "--endpoint-url".to_owned(),
            None => endpoint_vars
                .iter()
                .find(|v| env(v).is_some())
                .map_or_else(String::new, |v| (*v).to_owned()),
        });
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
    // The library takes the region from the config alone (the original's rule);
    // the CLI keeps the aws cli's: with no flag, variable or config region, the
    // region of the AWS profile in use (a named profile's is the library's part).
    if base.region_name.is_none() && base.profile.is_none() {
        base.region_name = stor::config::aws_profile_region(None).await;
    }
    if let Some(c) = g.concurrency {
        base.max_concurrency = c;
        base.max_pool_connections = base.max_pool_connections.max(c);
    }
    if let Some(p) = g.part_size {
        base.part_size = Some(p);
    }
    if let Some(b) = g.bwlimit {
        base.max_bandwidth = (!b.is_unlimited()).then_some(b);
    }
    base.validate()?;
    Ok(Effective {
        base,
        stor_profile,
        endpoint_from,
    })
}

fn clear_keys(cfg: &mut StorageConfig) {
    cfg.aws_access_key_id = None;
    cfg.aws_secret_access_key = None;
    cfg.aws_session_token = None;
}

impl Ctx {
    pub async fn new(g: &Global, out: Arc<Output>) -> Result<Ctx> {
        let Effective {
            base,
            stor_profile,
            endpoint_from,
        } = effective_config(g).await?;
        Ok(Ctx {
            base,
            stor_profile,
            endpoint_from,
            s3: OnceCell::new(),
            local: OnceCell::new(),
            gcs: OnceCell::new(),
            azure: OnceCell::new(),
            out,
        })
    }

    /// The effective config (for any scheme: each store sets its `storage_type`).
    pub fn config(&self) -> &StorageConfig {
        &self.base
    }

    /// The config file's profile in use, when the file has profiles.
    pub fn stor_profile(&self) -> Option<&str> {
        self.stor_profile.as_deref()
    }

    /// The S3 endpoint `store` uses (shown safely) and where it came from — the
    /// flag, a variable, the config file, or an AWS profile's `endpoint_url` (which
    /// the SDK reads itself); `None` for AWS's own endpoint.
    pub fn endpoint(&self, store: &Storage) -> Option<(String, String)> {
        if let Some(url) = &self.base.endpoint_url {
            let from = self.endpoint_from.clone().unwrap_or_default();
            return Some((stor::config::redact_url(url), from));
        }
        let url = store.endpoint()?;
        let profile = (self.base.profile.clone())
            .or_else(|| env("AWS_PROFILE"))
            .unwrap_or_else(|| "default".to_owned());
        Some((url, format!("the AWS config, profile {profile}")))
    }

    /// The store for a scheme, opened once.
    pub async fn store(&self, scheme: Scheme) -> Result<&Storage> {
        let cell = match scheme {
            Scheme::S3 => &self.s3,
            Scheme::Local => &self.local,
            Scheme::Gcs => &self.gcs,
            Scheme::Azure => &self.azure,
        };
        let ty = scheme.storage_type();
        let s = cell
            .get_or_try_init(|| async {
                let mut cfg = StorageConfig {
                    storage_type: ty,
                    ..self.base.clone()
                };
                if matches!(ty, StorageType::Gcs | StorageType::Azure)
                    && self.base.storage_type != ty
                {
                    // endpoint_url (--endpoint-url, AWS_ENDPOINT_URL) names the S3
                    // endpoint; GCS and Azure find theirs their own way
                    // (STORAGE_EMULATOR_HOST, a connection string's BlobEndpoint).
                    cfg.endpoint_url = None;
                }
                let store = Storage::new(cfg).await?;
                // Credentials now, once: missing ones are one clear error before
                // any transfer starts, not one per object.
                store.credentials_source().await?;
                Ok::<_, stor::Error>(store)
            })
            .await?;
        Ok(s)
    }

    /// Objects (or parts) transferred at once.
    pub fn concurrency(&self) -> usize {
        self.base.max_concurrency
    }

    /// The status of a command that ran to its end: failed if any item failed.
    pub fn status(&self) -> Exit {
        self.out.flush();
        Exit::failed_if(self.out.failures() > 0)
    }
}
