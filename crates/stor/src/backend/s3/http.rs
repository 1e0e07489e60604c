//! The HTTP client under the S3 backend: TLS trust and a connection pool whose
//! size is a hard bound on open TCP connections.
//!
//! The pool is the SDK's own (`aws_smithy_http_client::pool`): establishing, idle
//! and busy sockets all count against `max_pool_connections` per origin, so the
//! bound holds exactly (hyper's legacy pool, the SDK's default, bounds only idle
//! sockets and may dial extra ones while others are being returned). That pool
//! runs its connection drivers on the runtime it is first used on; a `Storage`
//! that outlives that runtime (one client shared by many `#[tokio::test]`s, or
//! built in one runtime and used in another) would be left with drivers on a dead
//! runtime. So there is one pool per live runtime, made on first use there and
//! dropped once that runtime is gone; with one runtime, which is the rule, it is
//! one pool.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_http_client::{pool, tls};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use tokio::sync::oneshot;

use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind, Result};

/// Pooled connections idle longer than this are closed rather than reused: S3 drops
/// idle connections after about 20 s, and reusing one it already closed fails the
/// request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The HTTPS client (rustls on aws-lc, as the SDK's default) for `cfg`:
/// certificates from `ca_bundle` or `AWS_CA_BUNDLE` replace the system roots (as
/// in the aws cli), at most `max_pool_connections` TCP connections per endpoint,
/// idle ones closed before S3 would close them.
pub(crate) fn client(cfg: &StorageConfig) -> Result<SharedHttpClient> {
    let context = tls::TlsContext::builder()
        .with_trust_store(trust_store(cfg)?)
        .build()
        .map_err(|e| Error::new(ErrorKind::Config, format!("TLS setup failed: {e}")))?;
    let builder = pool::ConnectionPool::builder()
        .idle_timeout(POOL_IDLE_TIMEOUT)
        .max_connections_per_host(cfg.max_pool_connections)
        .tcp_nodelay(true)
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context);
    // Built once here so a bad setting fails `Storage::new`, not the first call.
    let first = PerRuntime::build(&builder)?;
    Ok(SharedHttpClient::new(PerRuntime {
        builder,
        first,
        pools: Arc::new(Mutex::new(Vec::new())),
    }))
}

fn trust_store(cfg: &StorageConfig) -> Result<tls::TrustStore> {
    let bundle = cfg.ca_bundle.clone().or_else(|| {
        std::env::var_os("AWS_CA_BUNDLE")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    });
    let Some(path) = bundle else {
        return Ok(tls::TrustStore::default());
    };
    let pem = std::fs::read(&path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!(
                "cannot read the CA bundle {} (ca_bundle / AWS_CA_BUNDLE): {e}",
                path.display()
            ),
        )
    })?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::new(
            ErrorKind::Config,
            format!("the CA bundle {} holds no PEM certificate", path.display()),
        ));
    }
    Ok(tls::TrustStore::empty().with_pem_certificate(pem))
}

/// One bounded pool per live tokio runtime.
#[derive(Clone)]
struct PerRuntime {
    builder: pool::HttpsBuilder,
    /// Checks the configuration; serves callers outside any runtime (whose
    /// requests the pool then refuses with a clear error).
    first: pool::Client,
    pools: Arc<Mutex<Vec<RuntimePool>>>,
}

struct RuntimePool {
    runtime: tokio::runtime::Id,
    client: pool::Client,
    /// Closed when the runtime shuts down (the task holding the sender is dropped).
    alive: oneshot::Receiver<()>,
}

impl PerRuntime {
    fn build(builder: &pool::HttpsBuilder) -> Result<pool::Client> {
        let setup = |e: &dyn fmt::Display| {
            Error::new(ErrorKind::Config, format!("HTTP client setup failed: {e}"))
        };
        let pool = builder.clone().build_https().map_err(|e| setup(&e))?;
        pool::Client::new(&pool).map_err(|e| setup(&e))
    }

    /// The pool of the runtime this runs on, made on first use there.
    fn current(&self) -> pool::Client {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return self.first.clone();
        };
        let id = handle.id();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.iter().find(|p| p.runtime == id) {
            return p.client.clone();
        }
        // A runtime not seen before: forget the pools of runtimes that are gone.
        pools
            .retain_mut(|p| matches!(p.alive.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        let client = Self::build(&self.builder).unwrap_or_else(|_| self.first.clone());
        let (tx, alive) = oneshot::channel::<()>();
        handle.spawn(async move {
            let _held_until_shutdown = tx;
            std::future::pending::<()>().await
        });
        pools.push(RuntimePool {
            runtime: id,
            client: client.clone(),
            alive,
        });
        client
    }
}

impl fmt::Debug for PerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerRuntime")
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

impl HttpClient for PerRuntime {
    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.first.validate_base_client_config(components, cfg)
    }

    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.current().http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.first.connector_metadata()
    }
}
