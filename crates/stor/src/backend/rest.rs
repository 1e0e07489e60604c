//! Plain HTTPS for the stores stor speaks to without an SDK (GCS, Azure): one
//! hyper client per backend on the rustls/aws-lc stack the AWS SDK already links,
//! request bodies from [`Body`] (file ranges checked before their last byte),
//! response bodies as [`ByteStream`]s with a read timeout per chunk, and transport
//! failures told apart the way the S3 backend tells them (could not connect vs a
//! connection that broke) for the one retry layer.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Body;
use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind, Result, Wire};
use crate::types::ByteStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body as hyper takes it.
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// A response as the backends read it.
pub(crate) type Response = http::Response<Incoming>;

/// Pooled idle connections are closed before the services would close them
/// (both drop idle connections after tens of seconds).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The HTTPS client of one backend.
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, ReqBody>,
    read_timeout: Duration,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

impl Http {
    /// The client for `cfg`: certificates from `ca_bundle` replace the system roots,
    /// `connect_timeout` and `read_timeout` apply, at most `max_pool_connections`
    /// idle connections are kept (the core's request permits bound those in use).
    pub fn new(cfg: &StorageConfig) -> Result<Http> {
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots(cfg)?)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(cfg.connect_timeout)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(cfg.max_pool_connections)
            .build(https);
        Ok(Http {
            client,
            read_timeout: Duration::from_secs(cfg.read_timeout),
        })
    }

    /// Sends one request; the response headers must arrive within the read timeout.
    /// Failures without a response come back as transient or timeout errors with
    /// their [`Wire`]; `body_failed` names a file body whose source changed (not
    /// to be retried).
    pub async fn send(
        &self,
        req: http::Request<ReqBody>,
        body_failed: impl Fn() -> Option<Error>,
    ) -> Result<Response> {
        match tokio::time::timeout(self.read_timeout, self.client.request(req)).await {
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "no answer from the server within read_timeout",
            )),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(body_failed().unwrap_or_else(|| transport_error(&e))),
        }
    }

    /// The whole body of a response (an error document, a JSON resource, a listing).
    pub async fn read_all(&self, resp: Response) -> Result<Bytes> {
        let collect = resp.into_body().collect();
        match tokio::time::timeout(self.read_timeout, collect).await {
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "the server stopped sending within read_timeout",
            )),
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) => Err(broken(&e)),
        }
    }

    /// A response body as a stream of chunks, each within the read timeout; a
    /// connection that breaks ends it with a [`Wire::Broken`] error.
    pub fn stream(&self, resp: Response) -> ByteStream {
        let timeout = self.read_timeout;
        let body = resp.into_body();
        Box::pin(futures::stream::unfold(
            Some(body),
            move |body| async move {
                let mut body = body?;
                loop {
                    match tokio::time::timeout(timeout, body.frame()).await {
                        Err(_) => {
                            let e = Error::new(
                                ErrorKind::Timeout,
                                "the download stalled longer than read_timeout",
                            )
                            .with_wire(Wire::Broken);
                            return Some((Err(e), None));
                        }
                        Ok(None) => return None,
                        Ok(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) if data.is_empty() => continue,
                            Ok(data) => return Some((Ok(data), Some(body))),
                            Err(_) => continue, // trailers
                        },
                        Ok(Some(Err(e))) => {
                            let e = Error::new(
                                ErrorKind::Transient,
                                format!("the download was interrupted: {}", chain(&e)),
                            )
                            .with_wire(Wire::Broken);
                            return Some((Err(e), None));
                        }
                    }
                }
            },
        ))
    }
}

/// The trust roots: `ca_bundle`'s certificates, else the system's.
fn roots(cfg: &StorageConfig) -> Result<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    if let Some(path) = &cfg.ca_bundle {
        let bad = |e: &dyn std::fmt::Display| {
            Error::config(format!(
                "cannot read the CA bundle {} (ca_bundle): {e}",
                path.display()
            ))
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(&e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        if certs.is_empty() {
            return Err(Error::config(format!(
                "the CA bundle {} holds no PEM certificate",
                path.display()
            )));
        }
        for c in certs {
            store.add(c).map_err(|e| bad(&e))?;
        }
        return Ok(store);
    }
    // Roots that do not parse are skipped, as curl does.
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = store.add(c);
    }
    Ok(store)
}

/// A body from bytes.
pub(crate) fn bytes(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

/// No body.
pub(crate) fn empty() -> ReqBody {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// A [`Body`] to send: bytes, a file range read through its checks, or a stream.
pub(crate) fn body(b: Body) -> ReqBody {
    match b {
        Body::Bytes(b) => bytes(b),
        Body::File(r) => r.body().map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
        Body::Stream(s) | Body::Sized(s, _) => {
            StreamBody::new(s.map(|c| c.map(Frame::data).map_err(BoxError::from))).boxed_unsync()
        }
    }
}

/// `head`, then the body, then `tail`, as one body (a multipart/related upload).
pub(crate) fn framed(head: Bytes, b: Body, tail: Bytes) -> ReqBody {
    let inner = body(b).into_data_stream();
    let all = futures::stream::once(async move { Ok::<_, BoxError>(head) })
        .chain(inner)
        .chain(futures::stream::once(async move { Ok(tail) }));
    StreamBody::new(all.map(|c| c.map(Frame::data))).boxed_unsync()
}

/// The failure a file body's checks ended it with, if any (see `s3::body_failure`).
pub(crate) fn body_failure(b: &Body) -> impl Fn() -> Option<Error> {
    let range = match b {
        Body::File(r) => Some(r.clone()),
        _ => None,
    };
    move || range.as_ref().and_then(super::FileRange::failure)
}

/// A hyper client error as a stor error: a connection that could not be made is
/// unreachable (nothing was sent), anything else a broken connection.
pub(crate) fn transport_error(e: &hyper_util::client::legacy::Error) -> Error {
    let msg = chain(e);
    if e.is_connect() {
        let why = match crate::backend::s3::wire_failure(e) {
            Wire::Unreachable(why) => why,
            Wire::Broken if msg.contains("dns error") => "DNS lookup failed",
            Wire::Broken if msg.contains("timed out") => "connect timed out",
            Wire::Broken => "connection failed",
        };
        if msg.contains("certificate") || msg.contains("InvalidCertificate") {
            return Error::config(format!(
                "TLS with the endpoint failed: {msg} (if it uses a private CA, point \
                 ca_bundle at its certificate)"
            ));
        }
        let kind = if why == "connect timed out" {
            ErrorKind::Timeout
        } else {
            ErrorKind::Transient
        };
        return Error::new(kind, format!("cannot connect ({why}): {msg}"))
            .with_wire(Wire::Unreachable(why));
    }
    broken(e)
}

fn broken(e: &(dyn std::error::Error + 'static)) -> Error {
    Error::new(
        ErrorKind::Transient,
        format!("connection failed: {}", chain(e)),
    )
    .with_wire(Wire::Broken)
}

/// The error and its causes in one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A response header as text.
pub(crate) fn header<'a>(resp: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    resp.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A time in an HTTP `Last-Modified` / RFC 3339 form.
pub(crate) fn parse_time(s: &str) -> Option<std::time::SystemTime> {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&s.replace("GMT", "+0000"), &Rfc2822))
        .ok()
        .map(std::time::SystemTime::from)
}
