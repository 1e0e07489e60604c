//! Object tags: read, replace and remove the tags of an object. Tags are set on
//! upload with [`UploadOptions::tag`](crate::UploadOptions::tag) and kept by copies
//! (replaced along with the metadata by [`CopyOptions::replace`](crate::CopyOptions)).
//!
//! ```
//! # tokio_test::block_on(async {
//! use stor::{Storage, StorageConfig, UploadOptions};
//! let s = Storage::new(StorageConfig::memory()).await?;
//! s.create_bucket("news").await?;
//! s.upload_bytes("news", "a.json", "{}", UploadOptions::default().tag("team", "data")).await?;
//! assert_eq!(s.tags("news", "a.json").await?["team"], "data");
//! s.delete_tags("news", "a.json").await?;
//! assert!(s.tags("news", "a.json").await?.is_empty());
//! # Ok::<(), stor::Error>(()) }).unwrap();
//! ```

use std::collections::BTreeMap;

use crate::backend::{Backend, Tagging};
use crate::core::BucketArg;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Storage;
use crate::validate::{validate_key, validate_tags};

/// The tagging requests of a store, or why it has none.
pub(crate) fn tagging_of(be: &dyn Backend) -> Result<&dyn Tagging> {
    be.tagging().ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            format!("the {} store keeps no object tags", be.scheme()),
        )
    })
}

fn none<T>(_: &T) -> u64 {
    0
}

impl Storage {
    /// An object's tags (empty when it has none).
    pub async fn tags<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
    ) -> Result<BTreeMap<String, String>> {
        let core = self.core();
        core.op("tags", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                let t = tagging_of(&*core.backend)?;
                let (tags, _) = core.request(|_| t.get_tags(&b, key, None)).await?;
                Ok(tags)
            })
            .await
    }

    /// The tags of one version of an object (empty when it has none).
    pub async fn version_tags<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        version_id: &str,
    ) -> Result<BTreeMap<String, String>> {
        let core = self.core();
        core.op("tags", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                crate::validate::validate_version_id(version_id)?;
                let t = tagging_of(&*core.backend)?;
                let v = Some(version_id);
                let (tags, _) = core.request(|_| t.get_tags(&b, key, v)).await?;
                Ok(tags)
            })
            .await
    }

    /// Replaces an object's tags with `tags` (S3's rules: at most 10, see
    /// [`validate_tags`](crate::validate_tags)).
    pub async fn put_tags<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        let core = self.core();
        core.op("tags", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                validate_tags(&tags)?;
                let t = tagging_of(&*core.backend)?;
                core.request(|_| t.put_tags(&b, key, &tags)).await?;
                Ok(())
            })
            .await
    }

    /// Removes all of an object's tags.
    pub async fn delete_tags<'b>(&self, bucket: impl Into<BucketArg<'b>>, key: &str) -> Result<()> {
        let core = self.core();
        core.op("tags", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                let t = tagging_of(&*core.backend)?;
                core.request(|_| t.delete_tags(&b, key)).await?;
                Ok(())
            })
            .await
    }
}
