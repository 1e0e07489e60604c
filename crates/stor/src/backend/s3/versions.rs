//! Bucket versioning on S3: PutBucketVersioning, ListObjectVersions, and the
//! GET/HEAD/DELETE of one version.

// The rest of `impl S3Backend`, with the module's imports.
use super::*;
use crate::types::{DeletedVersion, ObjectVersion, VersionPage, Versioning};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

/// The continuation of a version listing: S3's key and version-id markers, as
/// one opaque token.
fn encode_token(key: &str, version: &str) -> String {
    serde_json::json!([key, version]).to_string()
}

fn decode_token(t: &str) -> Result<(String, String)> {
    serde_json::from_str(t).map_err(|_| {
        Error::invalid(format!(
            "continuation token {t:?} is not one a version listing gave"
        ))
    })
}

/// Which entries of a ListObjectVersions answer are delete markers, in the
/// answer's order. The SDK hands versions and markers as two lists; the server's
/// order is the true one (newest first per key), and times cannot rebuild it:
/// SeaweedFS gives them to the second, so a marker and a version written in one
/// second tie.
#[derive(Debug, Default, Clone)]
struct EntryOrder(std::sync::Arc<std::sync::Mutex<Option<Vec<bool>>>>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for EntryOrder {
    fn name(&self) -> &'static str {
        "StorVersionOrder"
    }

    fn read_after_deserialization(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(body) = ctx.response().body().bytes() {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(entry_kinds(body));
        }
        Ok(())
    }
}

/// `<Version>` (false) and `<DeleteMarker>` (true) elements in document order.
/// Keys cannot fake one: they travel URL-encoded (`<` is `%3C`).
fn entry_kinds(xml: &[u8]) -> Vec<bool> {
    let mut out = Vec::new();
    for (i, _) in xml.iter().enumerate().filter(|(_, &c)| c == b'<') {
        if xml[i..].starts_with(b"<Version>") {
            out.push(false);
        } else if xml[i..].starts_with(b"<DeleteMarker>") {
            out.push(true);
        }
    }
    out
}

#[async_trait]
impl Versions for S3Backend {
    async fn set_versioning(&self, bucket: &str, enabled: bool) -> Result<()> {
        let status = match enabled {
            true => BucketVersioningStatus::Enabled,
            false => BucketVersioningStatus::Suspended,
        };
        self.client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn versioning(&self, bucket: &str) -> Result<Versioning> {
        let out = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(match out.status() {
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            Some(BucketVersioningStatus::Suspended) => Versioning::Suspended,
            _ => Versioning::Unversioned,
        })
    }

    async fn list_versions(&self, bucket: &str, req: &ListOptions) -> Result<VersionPage> {
        let mut r = self
            .client
            .list_object_versions()
            .bucket(bucket)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .max_keys(req.max_keys.unwrap_or(1000) as i32);
        if !req.prefix.is_empty() {
            r = r.prefix(&req.prefix);
        }
        if let Some(d) = &req.delimiter {
            r = r.delimiter(d);
        }
        if let Some(t) = &req.continuation_token {
            let (k, v) = decode_token(t)?;
            r = r.key_marker(k).version_id_marker(v);
        } else if let Some(s) = &req.start_after {
            r = r.key_marker(s);
        }
        let order = EntryOrder::default();
        let out = r
            .customize()
            .interceptor(order.clone())
            .send()
            .await
            .map_err(sdk_err)?;
        let encoded = out.encoding_type() == Some(&aws_sdk_s3::types::EncodingType::Url);
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for v in out.versions() {
            let mut info = ObjectInfo::new(
                bucket,
                &listed_key(encoded, v.key())?,
                v.size().unwrap_or(0).max(0) as u64,
            );
            info.etag = v.e_tag().map(unquote);
            info.last_modified = to_time(v.last_modified());
            info.version_id = v.version_id().map(str::to_owned);
            info.storage_class = v.storage_class().map(|s| s.as_str().to_owned());
            versions.push(ObjectVersion {
                info,
                is_latest: v.is_latest() == Some(true),
                delete_marker: false,
            });
        }
        for m in out.delete_markers() {
            let mut info = ObjectInfo::new(bucket, &listed_key(encoded, m.key())?, 0);
            info.last_modified = to_time(m.last_modified());
            info.version_id = m.version_id().map(str::to_owned);
            markers.push(ObjectVersion {
                info,
                is_latest: m.is_latest() == Some(true),
                delete_marker: true,
            });
        }
        // The server's order where the answer's body shows it (the SDK splits it
        // into two lists), then keys in byte order, the latest first, newest
        // first by time; stable, so entries of one second keep the server's
        // order (right on SeaweedFS; moto lists every version before every
        // marker and gives whole seconds, so there a tie stays ambiguous).
        let kinds = order.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut versions = match kinds.filter(|k| {
            k.iter().filter(|m| **m).count() == markers.len()
                && k.len() == versions.len() + markers.len()
        }) {
            Some(kinds) => {
                let (mut vs, mut ms) = (versions.into_iter(), markers.into_iter());
                kinds
                    .iter()
                    .filter_map(|&m| if m { ms.next() } else { vs.next() })
                    .collect()
            }
            None => {
                versions.extend(markers);
                versions
            }
        };
        versions.sort_by(|a, b| {
            a.info
                .key
                .as_bytes()
                .cmp(b.info.key.as_bytes())
                .then(b.is_latest.cmp(&a.is_latest))
                .then(b.info.last_modified.cmp(&a.info.last_modified))
        });
        let common_prefixes = out
            .common_prefixes()
            .iter()
            .filter(|p| p.prefix().is_some())
            .map(|p| listed_key(encoded, p.prefix()))
            .collect::<Result<_>>()?;
        let next = match (out.is_truncated(), out.next_key_marker()) {
            (Some(true), Some(k)) => {
                let k = listed_key(encoded, Some(k))?;
                Some(encode_token(&k, out.next_version_id_marker().unwrap_or("")))
            }
            _ => None,
        };
        Ok(VersionPage {
            versions,
            common_prefixes,
            next_continuation_token: next,
        })
    }

    async fn head_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<ObjectInfo> {
        self.head(bucket, key, Some(version_id)).await
    }

    async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        range: Option<ByteRange>,
    ) -> Result<GetResponse> {
        self.get(bucket, key, Some(version_id), range, None).await
    }

    async fn delete_versions(
        &self,
        bucket: &str,
        versions: &[(String, String)],
    ) -> Result<Vec<DeletedVersion>> {
        let result = |(k, v): &(String, String), error| DeletedVersion {
            key: k.clone(),
            version_id: v.clone(),
            error,
        };
        // Keys with control characters cannot travel in the batch's XML (see
        // `delete_objects`): those batches go one by one.
        if versions
            .iter()
            .any(|(k, _)| k.chars().any(char::is_control))
        {
            let mut out = Vec::with_capacity(versions.len());
            for kv in versions {
                let sent = self
                    .client
                    .delete_object()
                    .bucket(bucket)
                    .key(&kv.0)
                    .version_id(&kv.1)
                    .send()
                    .await
                    .map_err(sdk_err);
                match sent {
                    Ok(_) => out.push(result(kv, None)),
                    Err(e) if e.kind() == ErrorKind::BucketNotFound => return Err(e),
                    Err(e) => out.push(result(kv, Some(e.to_string()))),
                }
            }
            return Ok(out);
        }
        let ids = versions
            .iter()
            .map(|(k, v)| ObjectIdentifier::builder().key(k).version_id(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid(format!("building the delete request: {e}")))?;
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| Error::invalid(format!("building the delete request: {e}")))?;
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(sdk_err)?;
        let mut failed: BTreeMap<(&str, &str), String> = BTreeMap::new();
        for e in out.errors() {
            if let Some(k) = e.key() {
                let msg = format!(
                    "{}: {}",
                    e.code().unwrap_or("Error"),
                    e.message().unwrap_or("not deleted")
                );
                failed.insert((k, e.version_id().unwrap_or("")), msg);
            }
        }
        Ok(versions
            .iter()
            .map(|kv| {
                let err = failed.get(&(kv.0.as_str(), kv.1.as_str())).cloned();
                result(kv, err)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_kinds_follow_the_document() {
        let xml = b"<R><Version><Key>a%3CVersion%3E</Key><VersionId>1</VersionId></Version>\
            <DeleteMarker><Key>a</Key></DeleteMarker><Version><Key>a</Key></Version></R>";
        assert_eq!(entry_kinds(xml), [false, true, false]);
    }

    #[test]
    fn tokens_carry_any_key_and_version() {
        for (k, v) in [("a", "v1"), ("we\"ird\n/\\key", ""), ("유니코드", "null")] {
            assert_eq!(
                decode_token(&encode_token(k, v)).unwrap(),
                (k.into(), v.into())
            );
        }
        assert!(decode_token("garbage").is_err());
    }
}
