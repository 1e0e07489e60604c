//! Object tags on S3: GetObjectTagging, PutObjectTagging, DeleteObjectTagging
//! (tags on upload and copy travel as `x-amz-tagging`; see `apply_upload_opts!`).

// The rest of `impl S3Backend`, with the module's imports.
use super::*;
use aws_sdk_s3::types::Tag;

#[async_trait]
impl Tagging for S3Backend {
    async fn get_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<BTreeMap<String, String>> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn put_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        let set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::invalid(format!("building the tag set: {e}")))?;
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| Error::invalid(format!("building the tag set: {e}")))?;
        self.client
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()> {
        self.client
            .delete_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }
}
