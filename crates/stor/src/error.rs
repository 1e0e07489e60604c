//! One error type for every operation and backend.
//!
//! [`Error`] carries a [`ErrorKind`] a caller can `match` on, the operation and the
//! bucket/key it concerned, how many attempts were made and how long they took, and
//! the underlying cause. Messages never contain credentials or presigned query strings.
//!
//! The mapping from S3 error codes and HTTP statuses to kinds lives in one place:
//! [`ErrorKind::from_s3`].

use std::fmt;
use std::time::Duration;

/// Shorthand for `std::result::Result<T, stor::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarse enough to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bucket does not exist.
    BucketNotFound,
    /// The bucket exists but the key does not.
    KeyNotFound,
    /// Credentials were refused or lack permission (also bad signatures).
    AccessDenied,
    /// The caller passed something invalid: a bucket name, key, size, expiry, metadata.
    /// Nothing was written or deleted.
    InvalidInput,
    /// The configuration is invalid (names the key).
    Config,
    /// The bucket (or object, for create-only writes) already exists.
    AlreadyExists,
    /// The bucket is not empty (delete bucket).
    BucketNotEmpty,
    /// A precondition (If-Match, If-None-Match) failed, e.g. the object changed mid-transfer.
    PreconditionFailed,
    /// The operation or an attempt took longer than allowed.
    Timeout,
    /// The server asked us to slow down (503 SlowDown, 429, Throttling).
    Throttled,
    /// A transient server or network failure (5xx, connection reset).
    Transient,
    /// Data did not match its checksum or declared size.
    Integrity,
    /// A local filesystem error (disk full, permission denied, read-only).
    Io,
    /// The backend or endpoint does not support this operation.
    Unsupported,
    /// The service was used before [`crate::StorageService::init`] or after shutdown.
    NotInitialized,
    /// The operation was cancelled.
    Cancelled,
    /// Anything else the server said that maps to no other kind.
    Other,
}

impl ErrorKind {
    /// Whether an operation that failed with this kind may succeed if tried again.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Throttled | ErrorKind::Transient
        )
    }

    /// Maps an S3 error code (from the XML body), an Azure error code or a GCS
    /// reason, and/or the HTTP status, to a kind. This is the one table for the
    /// whole crate.
    pub fn from_s3(code: Option<&str>, status: Option<u16>) -> ErrorKind {
        if let Some(code) = code {
            let kind = match code {
                "NoSuchBucket" => Some(ErrorKind::BucketNotFound),
                "NoSuchKey" | "NoSuchVersion" | "NotFound" => Some(ErrorKind::KeyNotFound),
                "NoSuchUpload" => Some(ErrorKind::KeyNotFound),
                "AccessDenied"
                | "AllAccessDisabled"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired"
                | "AccountProblem"
                | "InvalidSecurity" => Some(ErrorKind::AccessDenied),
                "InvalidBucketName"
                | "KeyTooLongError"
                | "MetadataTooLarge"
                | "InvalidArgument"
                | "InvalidRequest"
                | "InvalidRange"
                | "EntityTooSmall"
                | "EntityTooLarge"
                | "InvalidPart"
                | "InvalidPartOrder"
                | "MalformedXML"
                | "InvalidStorageClass"
                | "InvalidDigest"
                | "BadDigest"
                | "InvalidObjectState"
                | "MissingContentLength"
                | "InvalidLocationConstraint"
                | "IllegalLocationConstraintException" => Some(ErrorKind::InvalidInput),
                "BucketAlreadyExists" | "BucketAlreadyOwnedByYou" => Some(ErrorKind::AlreadyExists),
                "BucketNotEmpty" => Some(ErrorKind::BucketNotEmpty),
                "PreconditionFailed" | "ConditionalRequestConflict" => {
                    Some(ErrorKind::PreconditionFailed)
                }
                "RequestTimeout" | "RequestTimeTooSkewed" => Some(ErrorKind::Timeout),
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequests"
                | "TooManyRequestsException"
                | "ProvisionedThroughputExceeded"
                | "RequestThrottled"
                | "BandwidthLimitExceeded"
                | "EC2ThrottledException"
                | "ThrottledException" => Some(ErrorKind::Throttled),
                "InternalError" | "ServiceUnavailable" | "InternalFailure" | "OperationAborted" => {
                    Some(ErrorKind::Transient)
                }
                "NotImplemented" | "XNotImplemented" => Some(ErrorKind::Unsupported),
                // Azure Blob Storage's codes (x-ms-error-code).
                "ContainerNotFound" => Some(ErrorKind::BucketNotFound),
                "BlobNotFound" => Some(ErrorKind::KeyNotFound),
                "ContainerAlreadyExists" | "BlobAlreadyExists" => Some(ErrorKind::AlreadyExists),
                "AuthenticationFailed"
                | "AuthorizationFailure"
                | "AuthorizationPermissionMismatch"
                | "InsufficientAccountPermissions"
                | "AccountIsDisabled" => Some(ErrorKind::AccessDenied),
                "ConditionNotMet" | "TargetConditionNotMet" | "SourceConditionNotMet" => {
                    Some(ErrorKind::PreconditionFailed)
                }
                "ServerBusy" => Some(ErrorKind::Throttled),
                "OperationTimedOut" => Some(ErrorKind::Timeout),
                "InvalidHeaderValue"
                | "InvalidQueryParameterValue"
                | "InvalidResourceName"
                | "InvalidBlockList"
                | "InvalidBlockId"
                | "OutOfRangeInput"
                | "InvalidXmlDocument"
                | "InvalidMetadata"
                | "RequestBodyTooLarge" => Some(ErrorKind::InvalidInput),
                "ContainerBeingDeleted" => Some(ErrorKind::Transient),
                // GCS JSON API reasons (errors[].reason).
                "notFound" => Some(ErrorKind::KeyNotFound),
                "forbidden"
                | "required"
                | "authError"
                | "unauthorized"
                | "accessNotConfigured"
                | "userProjectMissing" => Some(ErrorKind::AccessDenied),
                "conditionNotMet" => Some(ErrorKind::PreconditionFailed),
                "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded" => {
                    Some(ErrorKind::Throttled)
                }
                "backendError" | "internalError" => Some(ErrorKind::Transient),
                "invalid" | "invalidArgument" | "badRequest" | "required_field" | "parseError" => {
                    Some(ErrorKind::InvalidInput)
                }
                c if c.starts_with("Throttling") => Some(ErrorKind::Throttled),
                _ => None,
            };
            if let Some(kind) = kind {
                return kind;
            }
        }
        match status {
            Some(404) => ErrorKind::KeyNotFound,
            Some(401) | Some(403) => ErrorKind::AccessDenied,
            Some(409) => ErrorKind::AlreadyExists,
            Some(412) => ErrorKind::PreconditionFailed,
            Some(408) => ErrorKind::Timeout,
            Some(429) | Some(503) => ErrorKind::Throttled,
            Some(501) => ErrorKind::Unsupported,
            // The 5xx that heal (the SDKs' standard retry list); 505, 507, 511 … do not.
            Some(500) | Some(502) | Some(504) => ErrorKind::Transient,
            Some(400) | Some(411) | Some(413) | Some(416) => ErrorKind::InvalidInput,
            _ => ErrorKind::Other,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ErrorKind::BucketNotFound => "bucket not found",
            ErrorKind::KeyNotFound => "key not found",
            ErrorKind::AccessDenied => "access denied",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::BucketNotEmpty => "bucket not empty",
            ErrorKind::PreconditionFailed => "precondition failed",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Transient => "transient failure",
            ErrorKind::Integrity => "integrity check failed",
            ErrorKind::Io => "I/O error",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NotInitialized => "storage service not initialized",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Other => "error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a request that got no response failed on the wire: what the retry layer
/// needs to know beyond the kind. Decided in one place per backend (for S3,
/// `sdk_err`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// No connection could be made — refused, DNS, no route, connect timeout — so
    /// nothing reached the server: it is down, restarting or failing over. Says
    /// which, for the log.
    Unreachable(&'static str),
    /// A connection existed and broke (reset, closed before the response ended).
    Broken,
}

/// The error of every stor operation.
///
/// ```
/// use stor::{Error, ErrorKind};
/// let err = Error::new(ErrorKind::KeyNotFound, "no such key")
///     .with_op("download")
///     .with_location("reports", "2026/q3.pdf");
/// assert_eq!(err.kind(), ErrorKind::KeyNotFound);
/// assert!(err.is_not_found());
/// assert!(!err.is_retryable());
/// assert_eq!(err.to_string(), "download s3://reports/2026/q3.pdf: key not found: no such key");
/// ```
#[non_exhaustive]
pub struct Error {
    inner: Box<Inner>,
}

// Boxed so `Result<T, Error>` stays one pointer wide on the happy path.
struct Inner {
    kind: ErrorKind,
    message: String,
    op: Option<&'static str>,
    bucket: Option<String>,
    key: Option<String>,
    scheme: &'static str,
    code: Option<String>,
    status: Option<u16>,
    attempts: u32,
    elapsed: Option<Duration>,
    wire: Option<Wire>,
    source: Option<Source>,
}

impl Error {
    /// A new error of `kind` with a human message (what was wrong and what to do).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                op: None,
                bucket: None,
                key: None,
                scheme: "s3",
                code: None,
                status: None,
                attempts: 0,
                elapsed: None,
                wire: None,
                source: None,
            }),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn io(context: impl Into<String>, mut err: std::io::Error) -> Error {
        // An error of ours that travelled through an io::Error (a reader that
        // enforces a size, a body that checks its source) comes back as it was.
        if err.get_ref().is_some_and(|e| e.is::<Error>()) {
            let kind = err.kind();
            match err.into_inner().map(|e| e.downcast::<Error>()) {
                Some(Ok(e)) => return *e,
                Some(Err(other)) => err = std::io::Error::new(kind, other),
                None => err = kind.into(),
            }
        }
        let kind = match err.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        let message = format!("{}: {}", context.into(), err);
        Error::new(kind, message).with_source(err)
    }

    /// An error from an S3 response: code and status mapped by [`ErrorKind::from_s3`].
    pub(crate) fn s3(code: Option<&str>, status: Option<u16>, message: Option<&str>) -> Error {
        let kind = ErrorKind::from_s3(code, status);
        let mut text = String::new();
        if let Some(code) = code {
            text.push_str(code);
        } else if let Some(status) = status {
            text.push_str(&format!("HTTP {status}"));
        }
        if let Some(m) = message.filter(|m| !m.is_empty()) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(m);
        }
        if text.is_empty() {
            text.push_str("no details from the server");
        }
        let mut err = Error::new(kind, text);
        err.inner.code = code.map(str::to_owned);
        err.inner.status = status;
        err
    }

    /// An error from an HTTP status and a raw error body the SDK could not read:
    /// S3's XML `<Error>` document, or whatever a proxy or load balancer sent (HTML,
    /// JSON, text) — see [`parse_error_body`].
    pub fn from_response(status: u16, body: &[u8]) -> Error {
        let (code, message) = parse_error_body(body);
        Error::s3(code.as_deref(), Some(status), message.as_deref())
    }

    /// The kind, to branch on.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The human message, without operation or location.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// True for both [`ErrorKind::BucketNotFound`] and [`ErrorKind::KeyNotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::BucketNotFound | ErrorKind::KeyNotFound
        )
    }

    /// Whether trying again may succeed (timeouts, throttling, 5xx, resets).
    pub fn is_retryable(&self) -> bool {
        self.inner.kind.is_retryable()
    }

    /// Whether the endpoint could not be reached at all (connection refused, DNS,
    /// no route, connect timeout): nothing was sent to the server.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.inner.wire, Some(Wire::Unreachable(_)))
    }

    pub(crate) fn wire(&self) -> Option<Wire> {
        self.inner.wire
    }

    pub(crate) fn with_wire(mut self, wire: Wire) -> Error {
        self.inner.wire = Some(wire);
        self
    }

    /// The operation that failed (`"upload"`, `"list"`, …), when known.
    pub fn operation(&self) -> Option<&'static str> {
        self.inner.op
    }

    /// The bucket concerned, when known.
    pub fn bucket(&self) -> Option<&str> {
        self.inner.bucket.as_deref()
    }

    /// The key concerned, when known.
    pub fn key(&self) -> Option<&str> {
        self.inner.key.as_deref()
    }

    /// The S3 error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// How many attempts were made (0 when the error came before any I/O).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The underlying error (an [`std::io::Error`], the local index's SQLite error, …),
    /// to downcast; its text is already part of the message.
    ///
    /// ```
    /// use std::error::Error as _;
    /// let e = stor::StorageConfig::from_file("/no/such/stor.json").unwrap_err();
    /// let io = e.cause().and_then(|c| c.downcast_ref::<std::io::Error>()).unwrap();
    /// assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    /// assert!(e.source().is_none(), "shown once, in the message");
    /// ```
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.inner.source.as_deref()
    }

    /// How long the operation ran before failing, when measured.
    pub fn elapsed(&self) -> Option<Duration> {
        self.inner.elapsed
    }

    /// Names the operation that failed.
    pub fn with_op(mut self, op: &'static str) -> Error {
        if self.inner.op.is_none() {
            self.inner.op = Some(op);
        }
        self
    }

    /// Names the bucket and key concerned (key may be empty for bucket operations).
    pub fn with_location(mut self, bucket: &str, key: &str) -> Error {
        if self.inner.bucket.is_none() && !bucket.is_empty() {
            self.inner.bucket = Some(bucket.to_owned());
        }
        if self.inner.key.is_none() && !key.is_empty() {
            self.inner.key = Some(key.to_owned());
        }
        self
    }

    /// The URL scheme shown for the location (`s3`, `local`, `memory`).
    pub(crate) fn with_scheme(mut self, scheme: &'static str) -> Error {
        self.inner.scheme = scheme;
        self
    }

    /// The same error with `what: ` before its message (kind, code, status and
    /// attempts kept).
    pub(crate) fn prefixed(mut self, what: &str) -> Error {
        self.inner.message = format!("{what}: {}", self.inner.message);
        self
    }

    /// The same error with `; what` after its message (kind, code, status and
    /// attempts kept).
    pub(crate) fn suffixed(mut self, what: &str) -> Error {
        self.inner.message = format!("{}; {what}", self.inner.message);
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32, elapsed: Duration) -> Error {
        self.inner.attempts = attempts;
        self.inner.elapsed = Some(elapsed);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.inner.kind = kind;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = self.inner.op {
            f.write_str(op)?;
            match (&self.inner.bucket, &self.inner.key) {
                (Some(b), Some(k)) => write!(f, " {}://{}/{}", self.inner.scheme, b, k)?,
                (Some(b), None) => write!(f, " {}://{}", self.inner.scheme, b)?,
                _ => {}
            }
            f.write_str(": ")?;
        }
        write!(f, "{}", self.inner.kind)?;
        if !self.inner.message.is_empty() && self.inner.message != self.inner.kind.describe() {
            write!(f, ": {}", self.inner.message)?;
        }
        if self.inner.attempts > 1 {
            write!(f, " (after {} attempts", self.inner.attempts)?;
            if let Some(e) = self.inner.elapsed {
                write!(f, " in {:.1}s", e.as_secs_f64())?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .field("op", &self.inner.op)
            .field("bucket", &self.inner.bucket)
            .field("key", &self.inner.key)
            .field("code", &self.inner.code)
            .field("status", &self.inner.status)
            .field("attempts", &self.inner.attempts)
            .field("elapsed", &self.inner.elapsed)
            .field("wire", &self.inner.wire);
        if let Some(s) = &self.inner.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

// `source()` stays `None`: the message already carries the cause's text ("reading
// a.txt: No such file or directory (os error 2)"), and an error must either show its
// cause or return it as its source, never both, or every chain printer (anyhow's
// `{:#}`, `Report`, a logger walking sources) prints the OS error twice. The cause
// itself is still there for code: [`Error::cause`].
impl std::error::Error for Error {}

/// Most characters of a body kept in an error message.
const BODY_MESSAGE_CHARS: usize = 200;

/// Reads an error response body: from S3's XML `<Error><Code>…</Code><Message>…
/// </Message></Error>` the code and message (entities decoded); from anything else
/// (an HTML page from a proxy, JSON, text) no code and its text, tags stripped,
/// whitespace folded, at most 200 characters. Never fails, for any bytes.
///
/// ```
/// use stor::error::parse_error_body;
/// let (code, msg) = parse_error_body(b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>\
///     <Message>Reduce your request rate &amp; retry.</Message></Error>");
/// assert_eq!(code.as_deref(), Some("SlowDown"));
/// assert_eq!(msg.as_deref(), Some("Reduce your request rate & retry."));
/// let (code, msg) = parse_error_body(b"<html><body><h1>502 Bad Gateway</h1></body></html>");
/// assert_eq!((code, msg.as_deref()), (None, Some("502 Bad Gateway")));
/// ```
pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(body);
    let element = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&close)?;
        let v = unescape(text[start..start + len].trim());
        (!v.is_empty()).then(|| clip(&v))
    };
    if text.contains("<Error>") {
        let code = element("Code").filter(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_')
        });
        if code.is_some() {
            return (code, element("Message"));
        }
    }
    // Anything else: its visible text.
    let mut out = String::new();
    let mut in_tag = false;
    for ch in text.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() || c.is_whitespace() => out.push(' '),
            c => out.push(c),
        }
    }
    let folded = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let folded = unescape(&folded);
    (None, (!folded.is_empty()).then(|| clip(&folded)))
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(BODY_MESSAGE_CHARS).collect();
    if s.chars().count() > BODY_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_codes_map_to_kinds() {
        let cases = [
            ("NoSuchBucket", 404, ErrorKind::BucketNotFound),
            ("NoSuchKey", 404, ErrorKind::KeyNotFound),
            ("AccessDenied", 403, ErrorKind::AccessDenied),
            ("SignatureDoesNotMatch", 403, ErrorKind::AccessDenied),
            ("InvalidBucketName", 400, ErrorKind::InvalidInput),
            ("EntityTooSmall", 400, ErrorKind::InvalidInput),
            ("PreconditionFailed", 412, ErrorKind::PreconditionFailed),
            ("SlowDown", 503, ErrorKind::Throttled),
            ("ThrottlingException", 400, ErrorKind::Throttled),
            ("InternalError", 500, ErrorKind::Transient),
            ("RequestTimeout", 400, ErrorKind::Timeout),
            ("BucketNotEmpty", 409, ErrorKind::BucketNotEmpty),
            ("BucketAlreadyOwnedByYou", 409, ErrorKind::AlreadyExists),
        ];
        for (code, status, kind) in cases {
            assert_eq!(ErrorKind::from_s3(Some(code), Some(status)), kind, "{code}");
        }
    }

    #[test]
    fn statuses_map_when_code_is_unknown_or_missing() {
        assert_eq!(ErrorKind::from_s3(None, Some(404)), ErrorKind::KeyNotFound);
        assert_eq!(ErrorKind::from_s3(None, Some(503)), ErrorKind::Throttled);
        assert_eq!(
            ErrorKind::from_s3(Some("Weird"), Some(502)),
            ErrorKind::Transient
        );
        assert_eq!(ErrorKind::from_s3(None, Some(429)), ErrorKind::Throttled);
        assert_eq!(ErrorKind::from_s3(None, Some(403)), ErrorKind::AccessDenied);
        assert_eq!(ErrorKind::from_s3(None, None), ErrorKind::Other);
    }

    #[test]
    fn retryable_only_for_transient_kinds() {
        assert!(Error::s3(Some("SlowDown"), Some(503), None).is_retryable());
        assert!(Error::s3(None, Some(500), None).is_retryable());
        for code in [
            "NoSuchBucket",
            "AccessDenied",
            "InvalidBucketName",
            "NoSuchKey",
        ] {
            assert!(
                !Error::s3(Some(code), Some(400), None).is_retryable(),
                "{code}"
            );
        }
    }

    #[test]
    fn display_tells_the_whole_story() {
        let e = Error::s3(
            Some("SlowDown"),
            Some(503),
            Some("Please reduce your request rate."),
        )
        .with_op("upload")
        .with_location("b", "k")
        .with_attempts(3, Duration::from_millis(1500));
        assert_eq!(
            e.to_string(),
            "upload s3://b/k: throttled: SlowDown: Please reduce your request rate. (after 3 attempts in 1.5s)"
        );
    }
}
