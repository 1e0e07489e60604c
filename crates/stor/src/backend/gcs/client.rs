//! Building the GCS client: the endpoint (`endpoint_url`, else
//! `STORAGE_EMULATOR_HOST` as Google's own libraries read it, else
//! storage.googleapis.com), the credentials (`auth.rs`), and one request helper
//! that authenticates, sends and turns an error answer into a stor error.

use std::sync::Arc;

use super::auth::Auth;
use super::GcsBackend;
use crate::backend::rest::{self, Http, ReqBody, Response};
use crate::config::StorageConfig;
use crate::error::{Error, Result};

pub(super) const GOOGLE: &str = "https://storage.googleapis.com";

impl GcsBackend {
    /// Opens GCS as `cfg` and the Google environment say: `STORAGE_EMULATOR_HOST`
    /// (`host:port` or a URL) points every request at an emulator and needs no
    /// credentials, as in Google's client libraries; `endpoint_url` names another
    /// endpoint (credentials used when found).
    pub async fn new(cfg: &StorageConfig) -> Result<GcsBackend> {
        let emulator = std::env::var("STORAGE_EMULATOR_HOST")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|h| {
                if h.contains("://") {
                    h
                } else {
                    format!("http://{h}")
                }
            });
        let endpoint = match (&cfg.endpoint_url, emulator) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, Some(e)) => e.trim_end_matches('/').to_owned(),
            (None, None) => GOOGLE.to_owned(),
        };
        // Tokens go to Google's own hosts only: an emulator needs none, and a
        // token sent anywhere else would be handed to whoever runs it.
        let google = url::Url::parse(&endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|h| h == "googleapis.com" || h.ends_with(".googleapis.com"));
        let auth = Auth::find(cfg, !google)?;
        Ok(GcsBackend {
            http: Http::new(cfg)?,
            endpoint,
            auth: Arc::new(auth),
            pending: Default::default(),
            aborted: Default::default(),
            inflight: Default::default(),
        })
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends `req` (a path and query under the endpoint) with the bearer token;
    /// an answer that is not 2xx becomes the error it says.
    pub(super) async fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: ReqBody,
        body_failed: impl Fn() -> Option<Error>,
    ) -> Result<Response> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.endpoint));
        if let Some(t) = self.auth.token(&self.http).await? {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let req = b
            .body(body)
            .map_err(|e| Error::invalid(format!("building the request: {e}")))?;
        let resp = self.http.send(req, body_failed).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = self.http.read_all(resp).await.unwrap_or_default();
        Err(super::errors::from_response(status, &body))
    }

    /// [`GcsBackend::send`] without a body, reading a JSON answer.
    pub(super) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let (headers, body) = match body {
            Some(v) => (
                vec![("content-type", "application/json".to_owned())],
                rest::bytes(v.to_string()),
            ),
            None => (Vec::new(), rest::empty()),
        };
        let resp = self
            .send(method, path_and_query, &headers, body, || None)
            .await?;
        let bytes = self.http.read_all(resp).await?;
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                crate::ErrorKind::Other,
                format!("GCS answered with JSON stor cannot read: {e}"),
            )
        })
    }
}
