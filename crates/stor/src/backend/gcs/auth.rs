//! Where GCS credentials come from, in the order Google's client libraries look:
//! the config's `google_application_credentials`, `GOOGLE_APPLICATION_CREDENTIALS`,
//! the application-default credentials `gcloud auth application-default login`
//! writes, then the metadata server when running on Google Cloud. A service
//! account's key also signs V4 URLs (`presign.rs`).
//!
//! Tokens are OAuth2 access tokens: a service account signs a JWT with its RSA key
//! and trades it for one; an authorized user trades its refresh token. One token is
//! cached and renewed five minutes before it expires.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine as _;
use serde::Deserialize;

use crate::backend::rest::{self, Http};
use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind, Result};

const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.full_control";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA_TOKEN: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

/// A service account's signing identity.
pub(crate) struct ServiceAccount {
    pub email: String,
    key: RsaKeyPair,
    token_uri: String,
}

impl ServiceAccount {
    /// RSA-SHA256 (PKCS #1 v1.5) of `data` with the account's key.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut sig)
            .map_err(|_| Error::new(ErrorKind::Other, "RSA signing failed"))?;
        Ok(sig)
    }

    /// A service account from its JSON key file's text.
    #[cfg(test)]
    pub fn from_json(text: &str, from: &str) -> Result<ServiceAccount> {
        let f: KeyFile = serde_json::from_str(text)
            .map_err(|e| Error::config(format!("{from}: not a credentials file: {e}")))?;
        Self::from_key_file(f, from)
    }

    fn from_key_file(f: KeyFile, from: &str) -> Result<ServiceAccount> {
        use rustls_pki_types::pem::PemObject;
        let (Some(email), Some(pem)) = (f.client_email, f.private_key) else {
            return Err(Error::config(format!(
                "{from}: a service account key needs client_email and private_key"
            )));
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| Error::config(format!("{from}: private_key is not a PKCS #8 PEM: {e}")))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| Error::config(format!("{from}: private_key is not an RSA key: {e}")))?;
        Ok(ServiceAccount {
            email,
            key,
            token_uri: f.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.into()),
        })
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
    project_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    quota_project_id: Option<String>,
}

/// What authenticates requests.
pub(crate) enum Source {
    /// No credentials: an emulator, or a public bucket.
    Anonymous,
    ServiceAccount(Arc<ServiceAccount>),
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
    /// The metadata server of a Google Cloud machine.
    Metadata,
}

/// The credentials, where they came from, and the cached token.
pub(crate) struct Auth {
    pub source: Source,
    /// `"service account x@y (GOOGLE_APPLICATION_CREDENTIALS)"`, for `stor doctor`.
    pub from: String,
    pub project: Option<String>,
    /// No tokens are sent (an emulator, or an endpoint that is not Google's): a
    /// key file, if any, only signs URLs.
    anonymous: bool,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl Auth {
    /// Finds credentials; `anonymous` (an emulator, a host that is not Google's)
    /// looks for a key file only, to sign URLs with, and never fails for want of
    /// one: Google tokens are never sent anywhere but Google.
    pub fn find(cfg: &StorageConfig, anonymous: bool) -> Result<Auth> {
        let mut auth = Self::find_any(cfg, anonymous)?;
        auth.anonymous = anonymous;
        Ok(auth)
    }

    fn find_any(cfg: &StorageConfig, anonymous: bool) -> Result<Auth> {
        let mut looked = Vec::new();
        let env = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| !v.is_empty());
        let candidates: [(Option<PathBuf>, &str); 3] = [
            (
                cfg.google_application_credentials.clone(),
                "config key google_application_credentials",
            ),
            (env.map(PathBuf::from), "GOOGLE_APPLICATION_CREDENTIALS"),
            (adc_path(), "application default credentials"),
        ];
        for (path, what) in candidates {
            let Some(path) = path else { continue };
            if (anonymous || what == "application default credentials") && !path.exists() {
                looked.push(format!("{what} ({})", path.display()));
                continue;
            }
            return Self::from_file(&path, what, cfg);
        }
        let project = cfg.google_cloud_project.clone().or_else(env_project);
        if anonymous {
            return Ok(Auth::new(
                Source::Anonymous,
                "none (emulator)".into(),
                project,
            ));
        }
        if on_google_cloud() {
            return Ok(Auth::new(
                Source::Metadata,
                "the metadata server".into(),
                project,
            ));
        }
        looked.push("the metadata server (not on Google Cloud)".into());
        Err(Error::config(format!(
            "no GCS credentials found (looked in: config key google_application_credentials, \
             GOOGLE_APPLICATION_CREDENTIALS, {}); set GOOGLE_APPLICATION_CREDENTIALS to a \
             service account key file, run `gcloud auth application-default login`, or point \
             STORAGE_EMULATOR_HOST at an emulator",
            looked.join(", ")
        )))
    }

    fn new(source: Source, from: String, project: Option<String>) -> Auth {
        Auth {
            source,
            from,
            project,
            anonymous: false,
            token: tokio::sync::Mutex::new(None),
        }
    }

    fn from_file(path: &Path, what: &str, cfg: &StorageConfig) -> Result<Auth> {
        let from = format!("{what} ({})", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read {from}: {e}")))?;
        let f: KeyFile = serde_json::from_str(&text)
            .map_err(|e| Error::config(format!("{from}: not a credentials file: {e}")))?;
        let project = cfg
            .google_cloud_project
            .clone()
            .or_else(env_project)
            .or(f.project_id.clone())
            .or(f.quota_project_id.clone());
        match f.kind.as_deref() {
            Some("service_account") => {
                let sa = ServiceAccount::from_key_file(f, &from)?;
                let from = format!("service account {} ({from})", sa.email);
                Ok(Auth::new(
                    Source::ServiceAccount(Arc::new(sa)),
                    from,
                    project,
                ))
            }
            Some("authorized_user") => {
                let (Some(client_id), Some(client_secret), Some(refresh_token)) =
                    (f.client_id, f.client_secret, f.refresh_token)
                else {
                    return Err(Error::config(format!(
                        "{from}: an authorized_user file needs client_id, client_secret and \
                         refresh_token"
                    )));
                };
                Ok(Auth::new(
                    Source::AuthorizedUser {
                        client_id,
                        client_secret,
                        refresh_token,
                    },
                    format!("authorized user ({from})"),
                    project,
                ))
            }
            other => Err(Error::config(format!(
                "{from}: credentials of type {other:?} are not supported (use a service \
                 account key or application-default credentials)"
            ))),
        }
    }

    /// The service account, when the credentials are one (they can sign URLs).
    pub fn signer(&self) -> Option<Arc<ServiceAccount>> {
        match &self.source {
            Source::ServiceAccount(sa) => Some(sa.clone()),
            _ => None,
        }
    }

    /// The bearer token for the next request; `None` when anonymous.
    pub async fn token(&self, http: &Http) -> Result<Option<String>> {
        if self.anonymous || matches!(self.source, Source::Anonymous) {
            return Ok(None);
        }
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = &*cached {
            if Instant::now() < *until {
                return Ok(Some(t.clone()));
            }
        }
        let (token, ttl) = self.fetch(http).await.map_err(|e| {
            let kind = if e.is_retryable() {
                e.kind()
            } else {
                ErrorKind::AccessDenied
            };
            Error::new(
                kind,
                format!(
                    "getting a GCS access token from {}: {}",
                    self.from,
                    e.message()
                ),
            )
        })?;
        let renew = ttl
            .saturating_sub(Duration::from_secs(300))
            .max(Duration::from_secs(30));
        *cached = Some((token.clone(), Instant::now() + renew));
        Ok(Some(token))
    }

    async fn fetch(&self, http: &Http) -> Result<(String, Duration)> {
        let form = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", super::encode_query(v)))
                .collect::<Vec<_>>()
                .join("&")
        };
        let req = match &self.source {
            Source::Anonymous => unreachable!("no token is fetched for anonymous access"),
            Source::ServiceAccount(sa) => {
                let assertion = jwt(sa)?;
                post_form(
                    &sa.token_uri,
                    form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &assertion),
                    ]),
                )?
            }
            Source::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
            } => post_form(
                DEFAULT_TOKEN_URI,
                form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("refresh_token", refresh_token),
                ]),
            )?,
            Source::Metadata => {
                let url = std::env::var("GCE_METADATA_HOST")
                    .map(|h| {
                        format!(
                            "http://{h}/computeMetadata/v1/instance/service-accounts/default/token"
                        )
                    })
                    .unwrap_or_else(|_| METADATA_TOKEN.into());
                http::Request::get(url)
                    .header("Metadata-Flavor", "Google")
                    .body(rest::empty())
                    .map_err(|e| Error::config(e.to_string()))?
            }
        };
        let resp = http.send(req, || None).await?;
        let (parts, body) = resp.into_parts();
        let body = http
            .read_all(http::Response::from_parts(parts.clone(), body))
            .await?;
        if !parts.status.is_success() {
            return Err(super::errors::from_response(parts.status.as_u16(), &body));
        }
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("the token answer is not JSON: {e}"),
            )
        })?;
        Ok((
            t.access_token,
            Duration::from_secs(t.expires_in.unwrap_or(3600)),
        ))
    }
}

fn post_form(url: &str, body: String) -> Result<http::Request<rest::ReqBody>> {
    http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(rest::bytes(body))
        .map_err(|e| Error::config(format!("token endpoint {url}: {e}")))
}

/// The signed JWT a service account trades for a token.
fn jwt(sa: &ServiceAccount) -> Result<String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": sa.email, "scope": SCOPE, "aud": sa.token_uri,
        "iat": now, "exp": now + 3600,
    });
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let sig = sa.sign(signed.as_bytes())?;
    Ok(format!("{signed}.{}", b64.encode(sig)))
}

/// Where `gcloud auth application-default login` writes.
fn adc_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CLOUDSDK_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("application_default_credentials.json"));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(
        config
            .join("gcloud")
            .join("application_default_credentials.json"),
    )
}

fn env_project() -> Option<String> {
    ["GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|p| !p.trim().is_empty()))
}

/// Whether this is a Google Cloud machine (as google-auth tells it on Linux): the
/// metadata server is asked only there, so elsewhere no request waits on it.
fn on_google_cloud() -> bool {
    std::env::var_os("GCE_METADATA_HOST").is_some()
        || std::fs::read_to_string("/sys/class/dmi/id/product_name")
            .is_ok_and(|p| p.contains("Google"))
}
