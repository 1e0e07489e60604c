//! Azure error answers as stor errors: the code from `x-ms-error-code` (present
//! even on HEAD answers, which have no body) or the XML `<Error><Code>`, mapped by
//! the one table in `error.rs`.

use crate::error::Error;

/// The error of an answer with `status`, the `x-ms-error-code` header and `body`.
pub(super) fn from_response(status: u16, code: Option<&str>, body: &[u8]) -> Error {
    let (body_code, message) = crate::error::parse_error_body(body);
    let code = code.map(str::to_owned).or(body_code);
    // Azure's messages end with a RequestId and Time, one per line: the first
    // line is what matters.
    let message = message.map(|m| {
        m.split(['\n', '\r'])
            .next()
            .unwrap_or(&m)
            .split(" RequestId:")
            .next()
            .unwrap_or(&m)
            .trim()
            .to_owned()
    });
    Error::s3(code.as_deref(), Some(status), message.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn codes_map_to_kinds_with_or_without_a_body() {
        let e = from_response(404, Some("ContainerNotFound"), b"");
        assert_eq!(e.kind(), ErrorKind::BucketNotFound);
        let e = from_response(404, Some("BlobNotFound"), b"");
        assert_eq!(e.kind(), ErrorKind::KeyNotFound);
        let body = b"<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code><Message>Slow down.\nRequestId:1\nTime:2</Message></Error>";
        let e = from_response(503, None, body);
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert_eq!(e.message(), "ServerBusy: Slow down.");
        assert_eq!(
            from_response(412, Some("ConditionNotMet"), b"").kind(),
            ErrorKind::PreconditionFailed
        );
        assert_eq!(
            from_response(403, Some("AuthenticationFailed"), b"").kind(),
            ErrorKind::AccessDenied
        );
    }
}
