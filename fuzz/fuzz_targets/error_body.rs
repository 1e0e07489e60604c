//! Any bytes as an S3 error response body: parsing never panics, a code is a
//! plain identifier, the message is bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let (code, msg) = stor::error::parse_error_body(body);
    if let Some(c) = code {
        assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_'));
    }
    if let Some(m) = msg {
        assert!(m.chars().count() <= 201);
    }
    let e = stor::Error::from_response(502, body);
    let _ = e.to_string();
});
