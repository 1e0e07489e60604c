//! Azure shared access signatures for one blob (a service SAS signed with the
//! account key): read for GET, create and write for PUT. A PUT through it must
//! send `x-ms-blob-type: BlockBlob`, as Azure requires of every blob upload.

use std::time::{Duration, SystemTime};

use super::client::hmac;
use crate::types::PresignMethod;

/// The SAS version signed (its string-to-sign layout is this version's).
const SAS_VERSION: &str = "2022-11-02";

/// The query string (without `?`) that grants `method` on `/blob/account/container/blob`
/// from `now` until `now + expires_in`.
pub(super) fn sas(
    key: &[u8],
    account: &str,
    container: &str,
    blob: &str,
    method: PresignMethod,
    expires_in: Duration,
    now: SystemTime,
) -> String {
    let fmt = |t: SystemTime| {
        let t = time::OffsetDateTime::from(t);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let permissions = match method {
        PresignMethod::Put => "cw",
        _ => "r",
    };
    // A minute of leeway for clocks behind ours.
    let start = fmt(now - Duration::from_secs(60));
    let expiry = fmt(now + expires_in);
    let resource = format!("/blob/{account}/{container}/{blob}");
    // sp, st, se, canonicalized resource, si, sip, spr, sv, sr, snapshot time,
    // encryption scope, rscc, rscd, rsce, rscl, rsct.
    let text = format!(
        "{permissions}\n{start}\n{expiry}\n{resource}\n\n\nhttps,http\n{SAS_VERSION}\nb\n\n\n\n\n\n\n"
    );
    let sig = hmac(key, &text);
    format!(
        "sv={SAS_VERSION}&spr=https%2Chttp&st={}&se={}&sr=b&sp={permissions}&sig={}",
        super::encode_value(&start),
        super::encode_value(&expiry),
        super::encode_value(&sig)
    )
}
