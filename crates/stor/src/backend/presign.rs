//! SigV4 query presigning for S3, fast enough for millions of URLs.
//!
//! Why not the SDK's `presigned()`: it builds a whole request through the
//! orchestrator per URL (~28 000 URLs/s on one core here) and derives the signing
//! key every time. A presigned GET/PUT is a canonical request, one SHA-256 and one
//! HMAC; the signing key only changes per day, region and credentials. This module
//! builds the canonical request by hand, keeps the key, and leaves the cryptography
//! (key derivation, signature) to the `aws-sigv4` crate. Its URLs are byte-identical
//! to the SDK's for the same inputs (tested), and it falls back to the SDK for any
//! endpoint layout it does not know.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Characters S3 keeps as they are in URIs and query values (RFC 3986 unreserved).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes `s` into `out` as SigV4 wants: every byte but unreserved ones
/// (and `/` when `keep_slash`), upper-case hex.
pub(crate) fn uri_encode(out: &mut String, s: &str, keep_slash: bool) {
    let bytes = s.as_bytes();
    let mut run = 0; // start of the current run of bytes kept as they are
    for (i, &b) in bytes.iter().enumerate() {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            continue;
        }
        out.push_str(std::str::from_utf8(&bytes[run..i]).expect("an ASCII run"));
        let esc = [b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]];
        out.push_str(std::str::from_utf8(&esc).expect("ASCII"));
        run = i + 1;
    }
    out.push_str(std::str::from_utf8(&bytes[run..]).expect("an ASCII run"));
}

/// Where URLs point: path style (`host/bucket/key`) or virtual-hosted
/// (`bucket.host/key`).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and port as sent in the Host header, e.g. `127.0.0.1:8500` or
    /// `s3.eu-west-1.amazonaws.com`.
    pub host: String,
    /// Path style (true) or bucket as a subdomain (false).
    pub path_style: bool,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/]`; `None` for anything with a path or query
    /// (left to the SDK).
    pub fn parse(url: &str, path_style: bool) -> Option<Endpoint> {
        let (scheme, rest) = url.split_once("://")?;
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '?', '#', '@']) {
            return None;
        }
        // The SDK leaves default ports out of the Host header.
        let host = match (scheme, host.rsplit_once(':')) {
            ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h,
            _ => host,
        };
        Some(Endpoint {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            path_style,
        })
    }

    /// AWS's regional endpoint in the standard partition; `None` for other
    /// partitions (China, GovCloud, ISO), which the SDK handles.
    pub fn aws(region: &str, path_style: bool) -> Option<Endpoint> {
        let standard = region.split('-').count() >= 3
            && !["cn-", "us-gov-", "us-iso", "eu-isoe-"]
                .iter()
                .any(|p| region.starts_with(p))
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        standard.then(|| Endpoint {
            scheme: "https".into(),
            host: format!("s3.{region}.amazonaws.com"),
            path_style,
        })
    }
}

/// One set of credentials.
#[derive(Clone)]
pub(crate) struct Creds {
    pub access_key: String,
    pub secret: String,
    pub token: Option<String>,
    pub expiry: Option<SystemTime>,
}

struct KeyCache {
    date: String,
    access_key: String,
    secret: String,
    key: [u8; 32],
    /// HMAC keyed with `key`, its inner and outer pads already hashed: each URL
    /// clones it instead of hashing the pads again (two SHA-256 blocks saved).
    mac: Hmac<Sha256>,
}

/// The date stamps of one second, kept so they are formatted once per second.
struct Stamps {
    secs: u64,
    date: String,
    stamp: String,
}

/// Presigns S3 GET and PUT URLs for one endpoint and region.
pub(crate) struct Presigner {
    endpoint: Endpoint,
    region: String,
    key: Mutex<Option<KeyCache>>,
    stamps: Mutex<Option<Stamps>>,
}

/// What to presign.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub expires: Duration,
    pub content_type: Option<&'a str>,
    pub now: SystemTime,
}

fn amz_dates(t: SystemTime) -> (String, String) {
    let dt = time::OffsetDateTime::from(t);
    let date = format!("{:04}{:02}{:02}", dt.year(), dt.month() as u8, dt.day());
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    (date, stamp)
}

impl Presigner {
    pub fn new(endpoint: Endpoint, region: &str) -> Presigner {
        Presigner {
            endpoint,
            region: region.to_owned(),
            key: Mutex::new(None),
            stamps: Mutex::new(None),
        }
    }

    fn stamps(&self, now: SystemTime) -> (String, String) {
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut cache = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some(s) if s.secs == secs => (s.date.clone(), s.stamp.clone()),
            _ => {
                let (date, stamp) = amz_dates(now);
                *cache = Some(Stamps {
                    secs,
                    date: date.clone(),
                    stamp: stamp.clone(),
                });
                (date, stamp)
            }
        }
    }

    /// Whether this bucket can be addressed as the endpoint wants (a virtual host
    /// needs a DNS label: no dots, which would also break TLS wildcards).
    pub fn handles(&self, bucket: &str) -> bool {
        self.endpoint.path_style || !bucket.contains('.')
    }

    /// The prepared HMAC for today's signing key (one lock when cached).
    fn signer(&self, creds: &Creds, date: &str) -> Hmac<Sha256> {
        {
            let cache = self.key.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.as_ref() {
                if c.date == date && c.access_key == creds.access_key && c.secret == creds.secret {
                    return c.mac.clone();
                }
            }
        }
        self.signing_key(creds, date);
        let cache = self.key.lock().unwrap_or_else(|p| p.into_inner());
        cache.as_ref().expect("just derived").mac.clone()
    }

    fn signing_key(&self, creds: &Creds, date: &str) -> [u8; 32] {
        let mut cache = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref() {
            if c.date == date && c.access_key == creds.access_key && c.secret == creds.secret {
                return c.key;
            }
        }
        // Derived at noon of that day: only the date enters the key.
        let day = time::Date::parse(
            date,
            time::macros::format_description!("[year][month][day]"),
        )
        .map(|d| SystemTime::from(d.with_hms(12, 0, 0).expect("valid time").assume_utc()))
        .unwrap_or_else(|_| SystemTime::now());
        let derived =
            aws_sigv4::sign::v4::generate_signing_key(&creds.secret, day, &self.region, "s3");
        let mut key = [0u8; 32];
        key.copy_from_slice(derived.as_ref());
        *cache = Some(KeyCache {
            date: date.to_owned(),
            access_key: creds.access_key.clone(),
            secret: creds.secret.clone(),
            key,
            mac: Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key size"),
        });
        key
    }

    /// The presigned URL, laid out exactly as the SDK lays it out.
    pub fn presign(&self, creds: &Creds, req: &Request<'_>) -> String {
        let (date, stamp) = self.stamps(req.now);
        let ep = &self.endpoint;
        let host = if ep.path_style {
            ep.host.clone()
        } else {
            format!("{}.{}", req.bucket, ep.host)
        };
        let mut path = String::with_capacity(req.bucket.len() + req.key.len() * 3 + 2);
        path.push('/');
        if ep.path_style {
            uri_encode(&mut path, req.bucket, false);
            path.push('/');
        }
        uri_encode(&mut path, req.key, true);

        let mut credential = String::with_capacity(80);
        uri_encode(
            &mut credential,
            &format!(
                "{}/{date}/{}/s3/aws4_request",
                creds.access_key, self.region
            ),
            false,
        );
        let signed_headers = if req.content_type.is_some() {
            "content-type%3Bhost"
        } else {
            "host"
        };
        let x_id = if req.method == "PUT" {
            "PutObject"
        } else {
            "GetObject"
        };
        let expires = req.expires.as_secs();
        let mut token = String::new();
        if let Some(t) = &creds.token {
            uri_encode(&mut token, t, false);
        }
        // Sorted by name (byte order): X-Amz-* before x-id.
        let mut query = String::with_capacity(256 + token.len());
        let _ = write!(
            query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}&X-Amz-Date={stamp}\
             &X-Amz-Expires={expires}"
        );
        if creds.token.is_some() {
            let _ = write!(query, "&X-Amz-Security-Token={token}");
        }
        let _ = write!(query, "&X-Amz-SignedHeaders={signed_headers}&x-id={x_id}");
        let mut canonical = String::with_capacity(path.len() + query.len() + host.len() + 128);
        let _ = write!(canonical, "{}\n{path}\n{query}\n", req.method);
        if let Some(ct) = req.content_type {
            let _ = writeln!(canonical, "content-type:{}", ct.trim());
        }
        let _ = write!(
            canonical,
            "host:{host}\n\n{}\nUNSIGNED-PAYLOAD",
            if req.content_type.is_some() {
                "content-type;host"
            } else {
                "host"
            }
        );
        let mut string_to_sign = String::with_capacity(160);
        let _ = write!(
            string_to_sign,
            "AWS4-HMAC-SHA256\n{stamp}\n{date}/{}/s3/aws4_request\n",
            self.region
        );
        let mut digest = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(canonical.as_bytes()), &mut digest)
            .expect("64 hex digits");
        string_to_sign.push_str(std::str::from_utf8(&digest).expect("hex is ASCII"));
        let mut mac = self.signer(creds, &date);
        mac.update(string_to_sign.as_bytes());
        let mut sig = [0u8; 64];
        hex::encode_to_slice(mac.finalize().into_bytes(), &mut sig).expect("64 hex digits");
        let signature = std::str::from_utf8(&sig).expect("hex is ASCII");

        let mut url =
            String::with_capacity(ep.scheme.len() + host.len() + path.len() + query.len() + 200);
        let _ = write!(
            url,
            "{}://{host}{path}?x-id={x_id}&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={credential}&X-Amz-Date={stamp}&X-Amz-Expires={expires}\
             &X-Amz-SignedHeaders={signed_headers}&X-Amz-Signature={signature}",
            ep.scheme
        );
        if creds.token.is_some() {
            // Signed like the rest, but placed after the signature, as the SDK does.
            url.push_str("&X-Amz-Security-Token=");
            url.push_str(&token);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn encoding_matches_sigv4() {
        let mut s = String::new();
        uri_encode(&mut s, "a b/c%d/é~!*'()+", true);
        assert_eq!(s, "a%20b/c%25d/%C3%A9~%21%2A%27%28%29%2B");
        s.clear();
        uri_encode(&mut s, "AKID/20130524/us-east-1/s3/aws4_request", false);
        assert_eq!(s, "AKID%2F20130524%2Fus-east-1%2Fs3%2Faws4_request");
    }

    /// AWS's documented example of a presigned GET ("Authenticating Requests: Using
    /// Query Parameters", examplebucket/test.txt, 2013-05-24), without x-id.
    #[test]
    fn aws_sigv4_presign_test_vector() {
        let creds = Creds {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
            expiry: None,
        };
        let canonical = "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\nhost:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD";
        let sts = format!(
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let p = Presigner::new(Endpoint::aws("us-east-1", false).unwrap(), "us-east-1");
        let key = p.signing_key(&creds, "20130524");
        assert_eq!(
            aws_sigv4::sign::v4::calculate_signature(key, sts.as_bytes()),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn the_prepared_hmac_equals_aws_sigv4s_signature() {
        let p = Presigner::new(Endpoint::parse("http://h:1", true).unwrap(), "eu-west-1");
        let creds = Creds {
            access_key: "a".into(),
            secret: "s3cr3t".into(),
            token: None,
            expiry: None,
        };
        for sts in [
            "",
            "AWS4-HMAC-SHA256\n20261126T000000Z\nscope\nabc",
            &"x".repeat(300),
        ] {
            let key = p.signing_key(&creds, "20261126");
            let mut mac = p.signer(&creds, "20261126");
            mac.update(sts.as_bytes());
            assert_eq!(
                hex::encode(mac.finalize().into_bytes()),
                aws_sigv4::sign::v4::calculate_signature(key, sts.as_bytes())
            );
        }
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:8500/", true).unwrap();
        assert_eq!(
            (e.scheme.as_str(), e.host.as_str()),
            ("http", "127.0.0.1:8500")
        );
        assert_eq!(
            Endpoint::parse("https://S3.Example.com:443", true)
                .unwrap()
                .host,
            "s3.example.com"
        );
        assert!(Endpoint::parse("http://host/path", true).is_none());
        assert!(Endpoint::parse("ftp://host", true).is_none());
        assert!(Endpoint::aws("cn-north-1", false).is_none());
        assert!(Endpoint::aws("us-gov-west-1", false).is_none());
        assert_eq!(
            Endpoint::aws("eu-west-1", false).unwrap().host,
            "s3.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn the_signing_key_is_derived_once_per_day() {
        let p = Presigner::new(Endpoint::parse("http://h:1", true).unwrap(), "us-east-1");
        let creds = Creds {
            access_key: "a".into(),
            secret: "s".into(),
            token: None,
            expiry: None,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let req = Request {
            method: "GET",
            bucket: "b",
            key: "k",
            expires: Duration::from_secs(60),
            content_type: None,
            now,
        };
        let u1 = p.presign(&creds, &req);
        let cached = p.key.lock().unwrap().as_ref().unwrap().key;
        let u2 = p.presign(&creds, &req);
        assert_eq!(u1, u2);
        assert_eq!(p.key.lock().unwrap().as_ref().unwrap().key, cached);
        let other = Creds {
            secret: "s2".into(),
            ..creds.clone()
        };
        assert_ne!(p.presign(&other, &req), u1, "new secret, new key");
    }
}
