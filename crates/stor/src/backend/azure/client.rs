//! Building the Azure client from the config and the Azure environment, and
//! authenticating each request: Shared Key (HMAC-SHA256 of the canonical request
//! with the account key) or a SAS token in the query.
//!
//! Where the account and credentials come from, in order: the config's
//! `azure_storage_connection_string`, `AZURE_STORAGE_CONNECTION_STRING`, then
//! account (`azure_storage_account` / `AZURE_STORAGE_ACCOUNT`) with a key
//! (`azure_storage_key` / `AZURE_STORAGE_KEY`) or SAS token
//! (`azure_storage_sas_token` / `AZURE_STORAGE_SAS_TOKEN`) — what `az storage` and
//! the Azure SDKs read. A connection string's `BlobEndpoint` (or `endpoint_url`)
//! points at Azurite or another endpoint.

use base64::Engine as _;
use http::Method;

use super::AzureBackend;
use crate::backend::rest::{self, Http, ReqBody, Response};
use crate::config::{Secret, StorageConfig};
use crate::error::{Error, Result};

/// The REST API version stor speaks (Azurite 3.37 knows it).
pub(super) const VERSION: &str = "2025-01-05";

/// Azurite's well-known development account (`UseDevelopmentStorage=true`).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How requests are authenticated.
pub(super) enum Creds {
    /// The account key, decoded.
    Key(Vec<u8>),
    /// A SAS token (without the leading `?`), appended to every request.
    Sas(Secret),
}

/// What the config and environment say.
pub(super) struct Settings {
    pub account: String,
    pub endpoint: String,
    pub creds: Creds,
    pub from: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    pub fn find(cfg: &StorageConfig) -> Result<Settings> {
        let conn = cfg
            .azure_storage_connection_string
            .as_ref()
            .map(|s| {
                (
                    s.expose().to_owned(),
                    "config key azure_storage_connection_string",
                )
            })
            .or_else(|| {
                env("AZURE_STORAGE_CONNECTION_STRING")
                    .map(|s| (s, "AZURE_STORAGE_CONNECTION_STRING"))
            });
        let mut s = match conn {
            Some((text, from)) => Self::from_connection_string(&text, from)?,
            None => Self::from_parts(cfg)?,
        };
        if let Some(u) = &cfg.endpoint_url {
            s.endpoint = u.trim_end_matches('/').to_owned();
        }
        Ok(s)
    }

    /// Parses `Key=Value;…` (values may hold `=`: keys and SAS tokens do).
    pub fn from_connection_string(text: &str, from: &str) -> Result<Settings> {
        let mut kv = std::collections::HashMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::config(format!(
                    "{from}: {:?} is not Key=Value (a connection string is \
                     AccountName=…;AccountKey=…[;BlobEndpoint=…])",
                    part.split('=').next().unwrap_or_default()
                ))
            })?;
            kv.insert(k.to_ascii_lowercase(), v.to_owned());
        }
        if kv
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let endpoint = kv
                .get("developmentstorageproxyuri")
                .map(|u| format!("{}:10000/{DEV_ACCOUNT}", u.trim_end_matches('/')))
                .unwrap_or_else(|| format!("http://127.0.0.1:10000/{DEV_ACCOUNT}"));
            return Ok(Settings {
                account: DEV_ACCOUNT.into(),
                endpoint,
                creds: Creds::Key(decode_key(DEV_KEY, from)?),
                from: format!("the development account ({from})"),
            });
        }
        let account = kv.get("accountname").cloned();
        let endpoint = kv
            .get("blobendpoint")
            .map(|e| e.trim_end_matches('/').to_owned());
        let creds = match (kv.get("accountkey"), kv.get("sharedaccesssignature")) {
            (Some(k), _) => Creds::Key(decode_key(k, from)?),
            (None, Some(sas)) => Creds::Sas(Secret::new(sas.trim_start_matches('?'))),
            (None, None) => {
                return Err(Error::config(format!(
                    "{from}: holds neither AccountKey nor SharedAccessSignature"
                )))
            }
        };
        let account = match (account, &endpoint) {
            (Some(a), _) => a,
            // A SAS connection string may name only the endpoint.
            (None, Some(e)) => account_of(e).ok_or_else(|| {
                Error::config(format!("{from}: no AccountName, and none in BlobEndpoint"))
            })?,
            (None, None) => {
                return Err(Error::config(format!(
                    "{from}: needs AccountName (or a BlobEndpoint)"
                )))
            }
        };
        let endpoint = endpoint.unwrap_or_else(|| {
            let proto = kv
                .get("defaultendpointsprotocol")
                .cloned()
                .unwrap_or_else(|| "https".into());
            let suffix = kv
                .get("endpointsuffix")
                .cloned()
                .unwrap_or_else(|| "core.windows.net".into());
            format!("{proto}://{account}.blob.{suffix}")
        });
        Ok(Settings {
            account,
            endpoint,
            creds,
            from: format!("connection string ({from})"),
        })
    }

    fn from_parts(cfg: &StorageConfig) -> Result<Settings> {
        let account = cfg
            .azure_storage_account
            .clone()
            .map(|a| (a, "config key azure_storage_account"))
            .or_else(|| env("AZURE_STORAGE_ACCOUNT").map(|a| (a, "AZURE_STORAGE_ACCOUNT")));
        let key = cfg
            .azure_storage_key
            .as_ref()
            .map(|k| (k.expose().to_owned(), "config key azure_storage_key"))
            .or_else(|| env("AZURE_STORAGE_KEY").map(|k| (k, "AZURE_STORAGE_KEY")));
        let sas = cfg
            .azure_storage_sas_token
            .as_ref()
            .map(|k| (k.expose().to_owned(), "config key azure_storage_sas_token"))
            .or_else(|| env("AZURE_STORAGE_SAS_TOKEN").map(|k| (k, "AZURE_STORAGE_SAS_TOKEN")));
        let Some((account, account_from)) = account else {
            return Err(Error::config(
                "no Azure storage account found (looked in: config key \
                 azure_storage_connection_string, AZURE_STORAGE_CONNECTION_STRING, config key \
                 azure_storage_account, AZURE_STORAGE_ACCOUNT); set \
                 AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with \
                 AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN",
            ));
        };
        let (creds, from) = match (key, sas) {
            (Some((k, from)), _) => (Creds::Key(decode_key(&k, from)?), from),
            (None, Some((s, from))) => (Creds::Sas(Secret::new(s.trim_start_matches('?'))), from),
            (None, None) => {
                return Err(Error::config(format!(
                    "no credentials for the Azure account {account} ({account_from}): set \
                     AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (or the config keys \
                     azure_storage_key / azure_storage_sas_token)"
                )))
            }
        };
        Ok(Settings {
            endpoint: format!("https://{account}.blob.core.windows.net"),
            from: format!("account {account} with {from}"),
            account,
            creds,
        })
    }
}

/// The account an endpoint names: `https://ACCOUNT.blob…` or `http://host/ACCOUNT`.
fn account_of(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://")?.1;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    match path.split('/').next().filter(|p| !p.is_empty()) {
        Some(a) => Some(a.to_owned()),
        None => host.split('.').next().map(str::to_owned),
    }
}

fn decode_key(k: &str, from: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(k.trim())
        .map_err(|_| Error::config(format!("{from}: the account key is not base64")))
}

/// HMAC-SHA256 of `text` with `key`, base64.
pub(super) fn hmac(key: &[u8], text: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&k, text.as_bytes()))
}

/// A request under construction: the blob path (not yet encoded), the query
/// (decoded), the headers.
pub(super) struct Req<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Vec<(&'a str, String)>,
    pub headers: Vec<(String, String)>,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, path: &'a str) -> Req<'a> {
        Req {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
        }
    }
    pub fn query(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.query.push((k, v.into()));
        self
    }
    pub fn header(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.headers.push((k.into().to_ascii_lowercase(), v.into()));
        self
    }
}

impl AzureBackend {
    /// The endpoint's base path (`/devstoreaccount1` on Azurite, empty on Azure).
    fn base_path(&self) -> &str {
        let rest = self
            .endpoint
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or("");
        rest.find('/').map(|i| &rest[i..]).unwrap_or("")
    }

    /// The full URL of `path` (container/blob, unencoded) with `query`.
    pub(super) fn url(&self, path: &str, query: &[(&str, String)], sas: Option<&str>) -> String {
        let mut url = format!("{}/{}", self.endpoint, super::encode_path(path));
        let mut sep = '?';
        for (k, v) in query {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&super::encode_value(v));
            sep = '&';
        }
        if let Some(s) = sas {
            url.push(sep);
            url.push_str(s);
        }
        url
    }

    /// Shared Key's string to sign for a request, and the signature.
    pub(super) fn shared_key(&self, key: &[u8], r: &Req<'_>, content_length: u64) -> String {
        let h = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let len = if content_length == 0 {
            String::new()
        } else {
            content_length.to_string()
        };
        let mut ms: Vec<(&str, &str)> = r
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-ms-"))
            .map(|(k, v)| (k.as_str(), v.trim()))
            .collect();
        ms.sort();
        let mut canon = String::new();
        for (k, v) in ms {
            canon.push_str(&format!("{k}:{v}\n"));
        }
        let mut resource = format!(
            "/{}{}/{}",
            self.account,
            self.base_path(),
            super::encode_path(r.path)
        );
        let mut q: Vec<(String, &str)> = r
            .query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        q.sort();
        for (k, v) in q {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        let text = format!(
            "{}\n{}\n{}\n{len}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n{canon}{resource}",
            r.method,
            h("content-encoding"),
            h("content-language"),
            h("content-md5"),
            h("content-type"),
            h("if-modified-since"),
            h("if-match"),
            h("if-none-match"),
            h("if-unmodified-since"),
            h("range"),
        );
        format!("SharedKey {}:{}", self.account, hmac(key, &text))
    }

    /// Sends `r` with `body` (of `len` bytes), authenticated; an answer that is not
    /// 2xx becomes the error it says.
    pub(super) async fn send(
        &self,
        r: Req<'_>,
        body: ReqBody,
        len: u64,
        body_failed: impl Fn() -> Option<Error>,
    ) -> Result<Response> {
        let date = httpdate(std::time::SystemTime::now());
        let r = r.header("x-ms-date", date).header("x-ms-version", VERSION);
        let (url, auth) = match &self.creds {
            Creds::Key(k) => (
                self.url(r.path, &r.query, None),
                Some(self.shared_key(k, &r, len)),
            ),
            Creds::Sas(s) => (self.url(r.path, &r.query, Some(s.expose())), None),
        };
        let mut b = http::Request::builder().method(r.method.clone()).uri(url);
        for (k, v) in &r.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if len > 0 || r.method == Method::PUT || r.method == Method::POST {
            b = b.header("content-length", len.to_string());
        }
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let req = b
            .body(body)
            .map_err(|e| Error::invalid(format!("building the request: {e}")))?;
        let resp = self.http.send(req, body_failed).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.http.read_all(resp).await.unwrap_or_default();
        Err(super::errors::from_response(status, code.as_deref(), &body))
    }

    /// [`AzureBackend::send`] without a body; the answer's bytes.
    pub(super) async fn read(&self, r: Req<'_>) -> Result<bytes::Bytes> {
        let resp = self.send(r, rest::empty(), 0, || None).await?;
        self.http.read_all(resp).await
    }

    pub(super) fn http(&self) -> &Http {
        &self.http
    }
}

/// An HTTP date (RFC 1123, GMT).
pub(super) fn httpdate(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_as_the_portal_and_azurite_write_them() {
        let s = Settings::from_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
            "t",
        )
        .unwrap();
        assert_eq!(
            (s.account.as_str(), s.endpoint.as_str()),
            ("acct", "https://acct.blob.core.windows.net")
        );
        assert!(matches!(s.creds, Creds::Key(ref k) if k == b"key"));
        let s = Settings::from_connection_string(
            "AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
            "t",
        )
        .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        let s = Settings::from_connection_string(
            "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022&sig=a%2Bb=",
            "t",
        )
        .unwrap();
        assert_eq!(s.account, "acct");
        assert!(matches!(s.creds, Creds::Sas(ref t) if t.expose() == "sv=2022&sig=a%2Bb="));
        let s = Settings::from_connection_string("UseDevelopmentStorage=true", "t").unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        for bad in ["AccountName=a", "AccountName=a;AccountKey=!!", "nonsense"] {
            let e = Settings::from_connection_string(bad, "t").err().unwrap();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{bad}");
            assert!(!e.to_string().contains("!!"), "{e}");
        }
    }

    #[test]
    fn http_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(httpdate(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
