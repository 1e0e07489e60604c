//! Presigned POST on S3: the policy document (built in `crate::post`) signed with
//! SigV4 — the day's signing key (aws-sigv4 derives it, as for presigned URLs)
//! and one HMAC-SHA256 over the base64 policy.

// The rest of `impl S3Backend`, with the module's imports.
use super::presign::{amz_dates, derive_key};
use super::*;
use crate::post::{policy, Signer};

/// The SigV4 signature of a base64 POST policy: hex HMAC-SHA256 with the signing
/// key of `date` (`YYYYMMDD`), `region` and `s3`.
pub(super) fn sign_policy(secret: &str, date: &str, region: &str, policy_b64: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &derive_key(secret, date, region));
    hex::encode(hmac::sign(&key, policy_b64.as_bytes()))
}

impl S3Backend {
    /// The form of a browser upload signed at `now`.
    pub(crate) async fn presign_post_at(
        &self,
        bucket: &str,
        key: &PostKey,
        opts: &PresignPostOptions,
        now: SystemTime,
    ) -> Result<PresignedPost> {
        let Some(p) = &self.presigner else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "presigned POST needs an endpoint URL of the form scheme://host[:port] \
                 (or AWS's standard regions); this endpoint is one stor leaves to the SDK, \
                 which cannot sign POST policies",
            ));
        };
        let creds = self.presign_creds().await?.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no credentials to sign the POST policy with (anonymous access)",
            )
        })?;
        let (date, stamp) = amz_dates(now);
        let credential = format!(
            "{}/{date}/{}/s3/aws4_request",
            creds.access_key, self.region
        );
        let signer = Signer {
            credential: &credential,
            amz_date: &stamp,
            token: creds.token.as_deref(),
            expiration: now + opts.expires_in,
        };
        let (doc, mut fields) = policy(bucket, key, opts, &signer);
        let encoded = aws_smithy_types::base64::encode(doc);
        let signature = sign_policy(&creds.secret, &date, &self.region, &encoded);
        fields.insert("policy".to_owned(), encoded);
        fields.insert("x-amz-signature".to_owned(), signature);
        Ok(PresignedPost {
            url: p.form_url(bucket),
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example ("Example: Browser-Based Upload using HTTP POST
    /// (Using AWS Signature Version 4)"): its policy, base64-encoded, signed with
    /// its example secret on 2015-12-29 in us-east-1, gives its signature.
    #[test]
    fn the_signature_matches_aws_documented_example() {
        let policy = crate::post::tests::AWS_EXAMPLE_POLICY;
        let encoded = aws_smithy_types::base64::encode(policy);
        assert!(encoded.starts_with("eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0K"));
        assert!(encoded.ends_with("IgfQ0KICBdDQp9"));
        let sig = sign_policy(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20151229",
            "us-east-1",
            &encoded,
        );
        assert_eq!(
            sig,
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
    }

    /// A form from the backend: the URL of the bucket, the fields the policy
    /// names, and a signature that verifies with the same key.
    #[tokio::test]
    async fn a_signed_form_carries_its_policy_and_signature() {
        let cfg = StorageConfig {
            endpoint_url: Some("http://127.0.0.1:8333".into()),
            aws_access_key_id: Some("AKIDEXAMPLE".into()),
            aws_secret_access_key: Some("secret".into()),
            aws_session_token: Some("tok".into()),
            region_name: Some("eu-west-1".into()),
            ..StorageConfig::s3()
        };
        let be = S3Backend::new(&cfg).await.unwrap();
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let opts = PresignPostOptions::new(Duration::from_secs(600)).max_size(100);
        let key = PostKey::Exact("in/a.txt".into());
        let post = be.presign_post_at("bkt", &key, &opts, now).await.unwrap();
        assert_eq!(post.url, "http://127.0.0.1:8333/bkt");
        let f = &post.fields;
        assert_eq!(f["key"], "in/a.txt");
        assert_eq!(f["x-amz-security-token"], "tok");
        let (date, _) = amz_dates(now);
        assert_eq!(
            f["x-amz-credential"],
            format!("AKIDEXAMPLE/{date}/eu-west-1/s3/aws4_request")
        );
        let doc = aws_smithy_types::base64::decode(&f["policy"]).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(doc["expiration"], "2026-11-18T11:16:40.000Z");
        assert!(doc["conditions"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["content-length-range", 0, 100])));
        assert_eq!(
            f["x-amz-signature"],
            sign_policy("secret", &date, "eu-west-1", &f["policy"])
        );
    }
}
