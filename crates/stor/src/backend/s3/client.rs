//! Building the S3 client: the SDK config from stor's config and the AWS
//! environment, the HTTP client with its bounded pool (`http.rs`), no SDK retries,
//! and the clock-skew interceptor.

// The rest of `impl S3Backend`, with the module's imports.
use super::*;

impl S3Backend {
    /// Builds the client from config, filling the rest from the AWS environment.
    /// Credentials: see [`crate::credentials`]. Region:
    /// [`StorageConfig::resolved_region`] (the original's rule; never instance metadata).
    pub async fn new(cfg: &StorageConfig) -> Result<S3Backend> {
        let http = super::http::client(cfg)?;
        let region = Region::new(cfg.resolved_region().await);
        let provider_config = aws_config::provider_config::ProviderConfig::default()
            .with_http_client(http.clone())
            .with_region(Some(region.clone()))
            .with_behavior_version(Some(BehaviorVersion::latest()));
        let sources = credentials::Sources::new(cfg, &provider_config).await?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(region)
            .credentials_provider(sources.clone())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(cfg.connect_timeout))
                    .read_timeout(Duration::from_secs(cfg.read_timeout))
                    .build(),
            );
        if let Some(p) = &cfg.profile {
            loader = loader.profile_name(p);
        }
        // Config first, then the S3-specific variable, then AWS_ENDPOINT_URL, all
        // without userinfo before the SDK (and its logs) see them.
        if let Some(u) = cfg.endpoint_url.clone().or_else(env_endpoint) {
            loader = loader.endpoint_url(without_userinfo(&u));
        }
        let sdk = loader.load().await;
        // An endpoint_url from the AWS profile files can carry userinfo too.
        let endpoint = sdk.endpoint_url().map(without_userinfo);
        let custom = endpoint.is_some();
        let path_style = cfg.force_path_style.unwrap_or(custom);
        let mut b = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(path_style);
        b.set_endpoint_url(endpoint.clone());
        let region = match sdk.region() {
            Some(r) => r.to_string(),
            None => {
                b = b.region(Region::new(DEFAULT_REGION));
                DEFAULT_REGION.to_owned()
            }
        };
        let skew = ClockSkew::default();
        b = b.interceptor(skew.clone());
        let native = cfg.native_checksums.unwrap_or(!custom)
            && cfg.checksum != crate::checksum::ChecksumAlgorithm::None;
        if custom || native {
            // Custom engines: no checksum headers they may not know. Native: stor
            // sends its own (computed once, while reading the source) instead of
            // the SDK's default CRC32 on top.
            b = b.request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        }
        if custom || native {
            // Native: stor verifies the stored checksum itself, also across parallel
            // ranges, and reports a mismatch as an integrity error (see get_object).
            b = b.response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        let special = [
            "AWS_USE_FIPS_ENDPOINT",
            "AWS_USE_DUALSTACK_ENDPOINT",
            "AWS_S3_USE_ARN_REGION",
        ]
        .iter()
        .any(|v| {
            std::env::var(v)
                .map(|x| x.eq_ignore_ascii_case("true"))
                .unwrap_or(false)
        });
        let presign_endpoint = match &endpoint {
            _ if special => None,
            Some(url) => Endpoint::parse(url, path_style),
            None => Endpoint::aws(&region, path_style),
        };
        Ok(S3Backend {
            client: Client::from_conf(b.build()),
            presigner: presign_endpoint.map(|e| Presigner::new(e, &region)),
            credentials: sdk.credentials_provider(),
            sources,
            cached_creds: std::sync::Mutex::new(None),
            endpoint,
            region,
            skew,
            native,
        })
    }

    /// The S3 algorithm to send for `algo`, when native checksums are on.
    pub(super) fn native_algo(&self, algo: Option<StorAlgo>) -> Option<SdkAlgo> {
        match algo.filter(|_| self.native)? {
            StorAlgo::Crc64nvme => Some(SdkAlgo::Crc64Nvme),
            StorAlgo::Crc32c => Some(SdkAlgo::Crc32C),
            StorAlgo::Crc32 => Some(SdkAlgo::Crc32),
            StorAlgo::None => None,
        }
    }

    /// The underlying SDK client, for operations stor does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The custom endpoint, when one is in use.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }
}

/// The endpoint from the environment, as the SDK reads it: `AWS_ENDPOINT_URL_S3`,
/// else `AWS_ENDPOINT_URL`, unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`.
fn env_endpoint() -> Option<String> {
    let var = |v: &str| std::env::var(v).ok().filter(|x| !x.trim().is_empty());
    if var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"))
}

/// The endpoint URL without `user:password@`. S3 authenticates by signing with the
/// access keys and never uses URL userinfo, so it is dropped before the SDK, its
/// logs or its errors see it; said once per process, at WARN.
fn without_userinfo(url: &str) -> String {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let (bare, had) = crate::config::strip_url_userinfo(url);
    if had {
        WARNED.call_once(|| {
            tracing::warn!(
                "the endpoint URL {} carries credentials; S3 does not use them (requests are \
                 signed with the access keys), so they are ignored",
                crate::config::redact_url(url)
            )
        });
    }
    bare
}

/// Remembers how far the server's clock (its `Date` header) is from ours, for
/// `Storage::health` and `stor doctor`: SigV4 fails past 15 minutes of skew.
#[derive(Debug, Default, Clone)]
pub(super) struct ClockSkew(pub(super) std::sync::Arc<std::sync::Mutex<Option<f64>>>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for ClockSkew {
    fn name(&self) -> &'static str {
        "StorClockSkew"
    }

    fn read_after_transmit(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let date = ctx.response().headers().get("date");
        if let Some(d) = date.and_then(|d| {
            aws_smithy_types::DateTime::from_str(d, aws_smithy_types::date_time::Format::HttpDate)
                .ok()
        }) {
            let ours = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(d.as_secs_f64() - ours);
        }
        Ok(())
    }
}
