//! SDK errors as stor errors: the S3 code and HTTP status through the one table in
//! `error.rs`, and failures without a response told apart (could not connect vs a
//! connection that broke) for the retry layer.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::credentials;
use crate::error::{Error, ErrorKind, Wire};

/// Converts any SDK error into a stor error: S3 code and HTTP status through the one
/// table in `error.rs`; network failures as transient or timeout.
pub(super) fn sdk_err<E>(e: SdkError<E, aws_smithy_runtime_api::http::Response>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::DispatchFailure(_) = &e {
        // The request never left: its identity (credentials) could not be resolved.
        if let Some(err) = credentials::from_chain(&e) {
            return err;
        }
    }
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.err();
            match (err.code(), se.raw().body().bytes()) {
                // No S3 error code: a proxy's page or an engine's odd body; say
                // what it said.
                (None, Some(body)) if !body.is_empty() => Error::from_response(status, body),
                (code, _) => Error::s3(code, Some(status), err.message()),
            }
        }
        SdkError::TimeoutError(_) => Error::new(ErrorKind::Timeout, "the request timed out"),
        SdkError::DispatchFailure(df) => {
            let msg = chain(&e);
            let wire = wire_failure(&e);
            if let Wire::Unreachable(why) = wire {
                let kind = if df.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Transient
                };
                Error::new(kind, format!("cannot connect ({why}): {msg}")).with_wire(wire)
            } else if df.is_timeout() {
                // A read timeout: the connection stands, the server said nothing.
                Error::new(ErrorKind::Timeout, "the connection timed out")
            } else if msg.contains("certificate") || msg.contains("TLS handshake") {
                // Not something a retry heals: the endpoint's certificate is not
                // trusted (or TLS failed), which is configuration.
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "TLS with the endpoint failed: {msg} (if it uses a private CA, \
                         point ca_bundle or AWS_CA_BUNDLE at its certificate)"
                    ),
                )
            } else if df.is_io() {
                Error::new(ErrorKind::Transient, format!("connection failed: {msg}"))
                    .with_wire(wire)
            } else {
                let err = Error::new(
                    ErrorKind::Transient,
                    format!("request could not be sent: {msg}"),
                );
                // Hyper's "connection closed before message completed" lands here.
                if df.is_user() {
                    err
                } else {
                    err.with_wire(wire)
                }
            }
        }
        SdkError::ResponseError(_) => Error::new(
            ErrorKind::Transient,
            format!("the response could not be read: {}", chain(&e)),
        )
        .with_wire(Wire::Broken),
        SdkError::ConstructionFailure(_) => Error::new(
            ErrorKind::InvalidInput,
            format!("the request could not be built: {}", chain(&e)),
        ),
        _ => Error::new(ErrorKind::Other, chain(&e)),
    }
}

/// Where a request that got no response failed: before any connection existed
/// ([`Wire::Unreachable`]: refused, DNS, no route, connect timeout — nothing reached
/// the server, which is down or restarting), or on a connection that broke. The
/// SDK's `ConnectorError` says only "io" or "timeout" for both (a refused connect
/// and a reset mid-request are both io; connect and read timeouts both timeouts),
/// so the causes decide: the `io::Error` kinds only a connect can fail with, the
/// DNS resolver's error, and the client's connect-timeout error (a private type,
/// known by its message "HTTP connect timeout occurred after …").
pub(crate) fn wire_failure(e: &(dyn std::error::Error + 'static)) -> Wire {
    use std::io::ErrorKind as Io;
    let mut next = Some(e);
    while let Some(cause) = next {
        if cause
            .downcast_ref::<aws_smithy_runtime_api::client::dns::ResolveDnsError>()
            .is_some()
        {
            return Wire::Unreachable("DNS lookup failed");
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                Io::ConnectionRefused => return Wire::Unreachable("connection refused"),
                Io::NetworkUnreachable
                | Io::HostUnreachable
                | Io::NetworkDown
                | Io::AddrNotAvailable => return Wire::Unreachable("no route to the endpoint"),
                _ => {}
            }
            // An io::Error wrapping another error hides it from `source()`.
            if let Some(inner) = io.get_ref() {
                if let Wire::Unreachable(why) = wire_failure(inner) {
                    return Wire::Unreachable(why);
                }
            }
        }
        if cause.to_string().starts_with("HTTP connect timeout") {
            return Wire::Unreachable("connect timed out");
        }
        next = cause.source();
    }
    Wire::Broken
}

/// The error and its causes in one line (the SDK's Display is terse).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
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
