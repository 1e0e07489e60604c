//! Where the S3 backend's credentials come from: one rule, and a plain error when
//! there are none.
//!
//! 1. `aws_access_key_id`/`aws_secret_access_key` in the config;
//! 2. else the config's `profile`: that AWS profile and nothing else (as the aws
//!    cli's `--profile`: keys in the environment do not override it); it must
//!    exist in `~/.aws/credentials` or `~/.aws/config` (or the files
//!    `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` name);
//! 3. else the AWS SDK's chain, source by source: the environment
//!    (`AWS_ACCESS_KEY_ID`…), the `AWS_PROFILE` (or `default`) profile, a web
//!    identity token, container credentials, EC2 instance metadata.
//!
//! When no source has credentials, the error (kind [`ErrorKind::Config`], never
//! retried) names every place looked in. Instance metadata is asked once, with the
//! aws cli's settings (one attempt, 1 s timeouts), and only for credentials, never
//! for the region; `AWS_EC2_METADATA_DISABLED=true` skips it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::os_shim_internal::{Env, Fs};

use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind, Result};

/// Timeout of each connect and read to instance metadata, with one attempt: the aws
/// cli's `metadata_service_timeout` and `metadata_service_num_attempts` defaults.
/// The SDK's own (4 attempts) cost about 5 s per command wherever there is no
/// instance metadata and its address is silently dropped (most laptops and CI
/// runners); on EC2 the service answers in milliseconds.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// Credentials expiring sooner than this are fetched again.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// The AWS shared config files, read with the SDK's own parser: the credentials
/// file (`~/.aws/credentials` or `$AWS_SHARED_CREDENTIALS_FILE`) and the config file
/// (`~/.aws/config` or `$AWS_CONFIG_FILE`). A missing file has no profiles.
#[derive(Debug, Clone)]
pub struct AwsProfiles {
    files: Vec<ProfileFile>,
}

#[derive(Debug, Clone)]
struct ProfileFile {
    /// As the user would write it: `~/.aws/credentials`, or the override.
    shown: String,
    names: BTreeSet<String>,
}

impl AwsProfiles {
    /// Reads both files; a file that does not parse is a config error naming it.
    pub async fn load() -> Result<AwsProfiles> {
        let mut files = Vec::new();
        for kind in [EnvConfigFileKind::Credentials, EnvConfigFileKind::Config] {
            let (var, default) = match kind {
                EnvConfigFileKind::Credentials => {
                    ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
                }
                EnvConfigFileKind::Config => ("AWS_CONFIG_FILE", "~/.aws/config"),
            };
            let shown = std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned());
            let only_this = match kind {
                EnvConfigFileKind::Credentials => {
                    EnvConfigFiles::builder().include_default_credentials_file(true)
                }
                EnvConfigFileKind::Config => {
                    EnvConfigFiles::builder().include_default_config_file(true)
                }
            }
            .build();
            let set = aws_config::profile::load(&Fs::real(), &Env::real(), &only_this, None)
                .await
                .map_err(|e| Error::config(format!("{shown}: {}", DisplayErrorContext(&e))))?;
            files.push(ProfileFile {
                shown,
                names: set.profiles().map(str::to_owned).collect(),
            });
        }
        Ok(AwsProfiles { files })
    }

    /// The files, for messages: `~/.aws/credentials, ~/.aws/config`.
    pub fn files(&self) -> String {
        let shown: Vec<&str> = self.files.iter().map(|f| f.shown.as_str()).collect();
        shown.join(", ")
    }

    /// The files that define profile `name`, or `None` when none does.
    pub fn find(&self, name: &str) -> Option<String> {
        let shown: Vec<&str> = self
            .files
            .iter()
            .filter(|f| f.names.contains(name))
            .map(|f| f.shown.as_str())
            .collect();
        (!shown.is_empty()).then(|| shown.join(", "))
    }

    /// Every profile name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let all: BTreeSet<&str> = self
            .files
            .iter()
            .flat_map(|f| f.names.iter().map(String::as_str))
            .collect();
        all.into_iter().collect()
    }

    /// The files and the profiles they define, for messages:
    /// `~/.aws/credentials, ~/.aws/config (they define: default, prod)`.
    pub fn summary(&self) -> String {
        let names = self.names();
        if names.is_empty() {
            format!("{} (they define none)", self.files())
        } else {
            format!("{} (they define: {})", self.files(), names.join(", "))
        }
    }

    /// The error for an explicit profile that no file defines.
    pub fn not_found(&self, name: &str) -> Error {
        Error::config(format!("profile {name} not found in {}", self.summary()))
    }
}

/// Where credentials for `cfg` will come from, decided without any network request
/// (instance metadata, STS): for `stor config show`. Fails like
/// [`crate::Storage::new`] when the config names a profile that does not exist.
pub async fn describe(cfg: &StorageConfig) -> Result<String> {
    if cfg.aws_access_key_id.is_some() {
        return Ok(config_keys_label(cfg));
    }
    let profiles = AwsProfiles::load().await?;
    if let Some(p) = &cfg.profile {
        let files = profiles.find(p).ok_or_else(|| profiles.not_found(p))?;
        return Ok(format!("profile {p} ({files})"));
    }
    if set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY") {
        return Ok("environment (AWS_ACCESS_KEY_ID)".into());
    }
    let name = ambient_profile();
    if let Some(files) = profiles.find(&name) {
        return Ok(format!("profile {name} ({files})"));
    }
    if set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        return Ok("web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)".into());
    }
    if set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        return Ok("container credentials (AWS_CONTAINER_CREDENTIALS_*)".into());
    }
    Ok(if imds_disabled() {
        "none found (instance metadata disabled by AWS_EC2_METADATA_DISABLED)".into()
    } else {
        "none configured; instance metadata will be asked (on EC2)".into()
    })
}

/// The credentials of an S3 backend: the sources that apply to its config, in
/// order, each named; the first with credentials wins, and its answer is kept until
/// shortly before it expires.
#[derive(Clone)]
pub(crate) struct Sources(Arc<SourcesInner>);

struct SourcesInner {
    /// Mentioned first when nothing is found: the config file had no keys.
    config_file: Option<String>,
    links: Vec<Link>,
    cached: Mutex<Option<(Credentials, Arc<str>)>>,
}

struct Link {
    what: String,
    provider: SharedCredentialsProvider,
    /// Instance metadata: any failure means "not on EC2 / no role here", the end
    /// of the chain rather than an error of its own.
    probe: bool,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what: Vec<&str> = self.0.links.iter().map(|l| l.what.as_str()).collect();
        f.debug_struct("Sources").field("links", &what).finish()
    }
}

impl Sources {
    /// The sources for `cfg`; `conf` carries the HTTP client and region for the
    /// ones that make requests (STS, containers, instance metadata).
    pub(crate) async fn new(cfg: &StorageConfig, conf: &ProviderConfig) -> Result<Sources> {
        let links = if let (Some(id), Some(secret)) =
            (&cfg.aws_access_key_id, &cfg.aws_secret_access_key)
        {
            let keys = Credentials::new(
                id,
                secret.expose(),
                cfg.aws_session_token
                    .as_ref()
                    .map(|t| t.expose().to_owned()),
                None,
                "stor-config",
            );
            vec![Link::new(config_keys_label(cfg), MaskedCredentials(keys))]
        } else if let Some(p) = &cfg.profile {
            let profiles = AwsProfiles::load().await?;
            let files = profiles.find(p).ok_or_else(|| profiles.not_found(p))?;
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .configure(conf)
                .profile_name(p)
                .build();
            vec![Link::new(format!("profile {p} ({files})"), provider)]
        } else {
            let profiles = AwsProfiles::load().await?;
            let imds = aws_config::imds::Client::builder()
                .configure(conf)
                .max_attempts(1)
                .connect_timeout(IMDS_TIMEOUT)
                .read_timeout(IMDS_TIMEOUT)
                .build();
            use aws_config::{ecs, environment, imds, profile, web_identity_token};
            let half = set("AWS_ACCESS_KEY_ID") && !set("AWS_SECRET_ACCESS_KEY");
            vec![
                Link::new(
                    if half {
                        "environment (AWS_ACCESS_KEY_ID without AWS_SECRET_ACCESS_KEY)".into()
                    } else {
                        "environment (AWS_ACCESS_KEY_ID)".into()
                    },
                    environment::credentials::EnvironmentVariableCredentialsProvider::new(),
                ),
                Link::new(
                    format!("profile {} ({})", ambient_profile(), profiles.files()),
                    profile::ProfileFileCredentialsProvider::builder()
                        .configure(conf)
                        .build(),
                ),
                Link::new(
                    "web identity token".into(),
                    web_identity_token::WebIdentityTokenCredentialsProvider::builder()
                        .configure(conf)
                        .build(),
                ),
                Link::new(
                    "container credentials".into(),
                    ecs::EcsCredentialsProvider::builder()
                        .configure(conf)
                        .build(),
                ),
                Link {
                    probe: true,
                    ..Link::new(
                        "instance metadata".into(),
                        imds::credentials::ImdsCredentialsProvider::builder()
                            .configure(conf)
                            .imds_client(imds)
                            .build(),
                    )
                },
            ]
        };
        Ok(Sources(Arc::new(SourcesInner {
            config_file: cfg
                .config_file
                .as_ref()
                .map(|p| format!("config file {}", p.display())),
            links,
            cached: Mutex::new(None),
        })))
    }

    /// Credentials and the source that gave them ("profile prod (~/.aws/credentials)").
    pub(crate) async fn resolve(
        &self,
    ) -> std::result::Result<(Credentials, Arc<str>), CredentialsError> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
        };
        if let Some((c, from)) = self.lock().as_ref().filter(|(c, _)| fresh(c)) {
            return Ok((c.clone(), from.clone()));
        }
        let mut looked: Vec<String> = self.0.config_file.iter().cloned().collect();
        for link in &self.0.links {
            match link.provider.provide_credentials().await {
                Ok(c) => {
                    tracing::debug!(source = %link.what, "credentials loaded");
                    let from: Arc<str> = link.what.as_str().into();
                    *self.lock() = Some((c.clone(), from.clone()));
                    return Ok((c, from));
                }
                Err(e) if link.probe || matches!(e, CredentialsError::CredentialsNotLoaded(_)) => {
                    tracing::debug!(source = %link.what, error = %DisplayErrorContext(&e), "no credentials here");
                    looked.push(match link.probe {
                        true if imds_disabled() => {
                            format!("{} (disabled by AWS_EC2_METADATA_DISABLED)", link.what)
                        }
                        true => format!("{} (none reachable)", link.what),
                        false => link.what.clone(),
                    });
                }
                Err(e) => {
                    let kind = match &e {
                        CredentialsError::InvalidConfiguration(_) => ErrorKind::Config,
                        CredentialsError::ProviderTimedOut(_) => ErrorKind::Timeout,
                        _ => ErrorKind::AccessDenied,
                    };
                    let message = format!(
                        "credentials from {} could not be loaded: {}",
                        link.what,
                        DisplayErrorContext(&e)
                    );
                    return Err(CredentialsError::provider_error(Failure { kind, message }));
                }
            }
        }
        Err(CredentialsError::not_loaded(Failure {
            kind: ErrorKind::Config,
            message: format!(
                "no credentials found (looked in: {}); set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, name an AWS profile (--profile, AWS_PROFILE), or put \
                 aws_access_key_id and aws_secret_access_key in the config",
                looked.join(", ")
            ),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Credentials, Arc<str>)>> {
        self.0.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
impl Sources {
    /// Sources that never find anything, for tests of the error's way out.
    pub(crate) fn nowhere() -> Sources {
        #[derive(Debug)]
        struct Nothing;
        impl ProvideCredentials for Nothing {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("none")))
            }
        }
        Sources(Arc::new(SourcesInner {
            config_file: Some("config file t.json".into()),
            links: vec![Link::new("nowhere".into(), Nothing)],
            cached: Mutex::new(None),
        }))
    }
}

impl Link {
    fn new(what: String, provider: impl ProvideCredentials + 'static) -> Link {
        Link {
            what,
            provider: SharedCredentialsProvider::new(provider),
            probe: false,
        }
    }
}

impl ProvideCredentials for Sources {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move { self.resolve().await.map(|(c, _)| c) })
    }
}

/// A credentials failure stor has already put into words. It travels through the
/// SDK's identity resolution as the source of a `CredentialsError`, and
/// [`from_chain`] turns it back into a [`crate::Error`] of its kind.
#[derive(Debug)]
struct Failure {
    kind: ErrorKind,
    message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The stor error for a credentials failure anywhere in `e`'s source chain (an SDK
/// request that could not resolve its identity, or a direct `provide_credentials`).
pub(crate) fn from_chain(e: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut cur = Some(e);
    let mut generic = None;
    while let Some(c) = cur {
        if let Some(f) = c.downcast_ref::<Failure>() {
            return Some(Error::new(f.kind, f.message.clone()));
        }
        if let Some(ce) = c.downcast_ref::<CredentialsError>() {
            generic.get_or_insert_with(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "credentials could not be loaded: {}",
                        DisplayErrorContext(ce)
                    ),
                )
            });
        }
        cur = c.source();
    }
    generic
}

/// How the config's own keys are named: the file they would be in.
fn config_keys_label(cfg: &StorageConfig) -> String {
    match &cfg.config_file {
        Some(p) => format!("config file {}", p.display()),
        None => "the config's keys (aws_access_key_id)".into(),
    }
}

/// Whether an environment variable holds something (the SDK treats blank as unset).
fn set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// The profile the SDK's chain reads when the config names none.
fn ambient_profile() -> String {
    std::env::var("AWS_PROFILE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "default".into())
}

fn imds_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Keys from the config, handed to the SDK behind a `Debug` that shows no key: the
/// SDK prints its providers at TRACE, and `Credentials`' own `Debug` shows the
/// access key id.
struct MaskedCredentials(Credentials);

impl fmt::Debug for MaskedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(from the stor config, masked)")
    }
}

impl ProvideCredentials for MaskedCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Ok(self.0.clone()))
    }
}
