//! GCS error responses as stor errors: the JSON API's `{"error": {"code", "message",
//! "errors": [{"reason"}]}}` (or an emulator's or proxy's plain text), its reason
//! and status mapped by the one table in `error.rs`.

use crate::error::Error;

/// The error of a response with `status` and `body`.
pub(super) fn from_response(status: u16, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Doc {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        reason: Option<String>,
    }
    match serde_json::from_slice::<Doc>(body) {
        Ok(doc) => {
            let reason = doc.error.errors.into_iter().find_map(|e| e.reason);
            Error::s3(
                reason.as_deref(),
                Some(status),
                doc.error.message.as_deref(),
            )
        }
        // Not the JSON API's document: whatever text it is.
        Err(_) => Error::from_response(status, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn json_api_reasons_map_to_kinds() {
        let doc = |status, reason: &str| {
            let body = format!(
                r#"{{"error":{{"code":{status},"message":"m","errors":[{{"reason":"{reason}"}}]}}}}"#
            );
            from_response(status, body.as_bytes())
        };
        assert_eq!(doc(429, "rateLimitExceeded").kind(), ErrorKind::Throttled);
        assert_eq!(
            doc(412, "conditionNotMet").kind(),
            ErrorKind::PreconditionFailed
        );
        assert_eq!(doc(401, "required").kind(), ErrorKind::AccessDenied);
        assert_eq!(doc(404, "notFound").kind(), ErrorKind::KeyNotFound);
        assert_eq!(doc(503, "backendError").kind(), ErrorKind::Transient);
        assert_eq!(doc(400, "invalid").kind(), ErrorKind::InvalidInput);
        let e = from_response(404, b"not found");
        assert_eq!(
            (e.kind(), e.message()),
            (ErrorKind::KeyNotFound, "HTTP 404: not found")
        );
    }
}
