//! Bucket versioning: turning it on, listing versions and delete markers, and the
//! operations on one version (info, download, copy, presign, delete, restore).
//!
//! Reads of a version go through the same engine as reads of the current object
//! ([`DownloadOptions::version_id`](crate::DownloadOptions::version_id),
//! [`CopyOptions::version_id`](crate::CopyOptions::version_id),
//! [`PresignOptions::version_id`](crate::PresignOptions::version_id)); this module
//! holds what only versioned buckets have.
//!
//! ```no_run
//! # async fn f(s: stor::Storage) -> stor::Result<()> {
//! use futures::TryStreamExt;
//! s.set_versioning("news", true).await?;
//! let v1 = s.upload_bytes("news", "a.json", "1", Default::default()).await?;
//! s.upload_bytes("news", "a.json", "2", Default::default()).await?;
//! let all: Vec<_> = s.list_versions_stream("news", Default::default()).try_collect().await?;
//! assert_eq!(all.len(), 2);
//! let old = all.iter().find(|v| !v.is_latest).unwrap();
//! s.restore_version("news", "a.json", old.info.version_id.as_deref().unwrap()).await?;
//! # let _ = v1; Ok(()) }
//! ```

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};

use crate::backend::versions_of;
use crate::core::{BucketArg, Core};
use crate::error::{Error, ErrorKind, Result};
use crate::events::WriteKind;
use crate::reserved;
use crate::storage::{Storage, DELETE_BATCH};
use crate::types::{CopyOptions, ListOptions, ObjectInfo, TransferResult};
use crate::validate::validate_key;

pub use crate::types::{DeletedVersion, ObjectVersion, VersionPage, Versioning};

/// Counts no bytes.
fn none<T>(_: &T) -> u64 {
    0
}

impl Storage {
    /// Turns versioning on for a bucket (`true`), or suspends it (`false`): the
    /// versions kept so far stay either way.
    pub async fn set_versioning(&self, bucket: &str, enabled: bool) -> Result<()> {
        let core = self.core();
        core.op("versioning", Some(bucket), "")
            .run(none, |b| async move {
                let v = versions_of(&*core.backend)?;
                core.request(|_| v.set_versioning(&b, enabled)).await?;
                Ok(())
            })
            .await
    }

    /// A bucket's versioning state.
    pub async fn versioning(&self, bucket: &str) -> Result<Versioning> {
        let core = self.core();
        core.op("versioning", Some(bucket), "")
            .run(none, |b| async move {
                let v = versions_of(&*core.backend)?;
                let (state, _) = core.request(|_| v.versioning(&b)).await?;
                Ok(state)
            })
            .await
    }

    /// One page of versions and delete markers under `opts.prefix` (at most
    /// `max_keys`, 1000 when unset), keys in byte order, newest first per key.
    pub async fn list_versions<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        opts: ListOptions,
    ) -> Result<VersionPage> {
        versions_page(self.core(), bucket.into(), opts).await
    }

    /// Every version and delete marker under the options' prefix, page after page.
    pub fn list_versions_stream<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        opts: ListOptions,
    ) -> futures::stream::BoxStream<'static, Result<ObjectVersion>> {
        let core = self.core().clone();
        let b = bucket.into().map(str::to_owned);
        futures::stream::try_unfold(Some(opts), move |opts| {
            let (core, b) = (core.clone(), b.clone());
            async move {
                let Some(opts) = opts else { return Ok(None) };
                let page = versions_page(&core, b.as_deref(), opts.clone()).await?;
                let next = page.next_continuation_token.clone().map(|t| ListOptions {
                    continuation_token: Some(t),
                    ..opts
                });
                Ok(Some((page.versions, next)))
            }
        })
        .map_ok(|vs| futures::stream::iter(vs.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// One version's size, time, ETag, Content-Type and metadata. A delete marker
    /// or an unknown version is [`ErrorKind::KeyNotFound`].
    pub async fn info_version<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        version_id: &str,
    ) -> Result<ObjectInfo> {
        let core = self.core();
        core.op("info", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                crate::validate::validate_version_id(version_id)?;
                let v = versions_of(&*core.backend)?;
                let (mut info, _) = core
                    .request(|_| v.head_version(&b, key, version_id))
                    .await?;
                reserved::split(&mut info);
                Ok(info)
            })
            .await
    }

    /// Removes one version (or delete marker) for good. A version that is not
    /// there is [`ErrorKind::KeyNotFound`] and nothing is deleted: engines drop
    /// the version id on a bucket that was never versioned and would delete the
    /// current object instead, so the version is looked up first.
    pub async fn delete_version<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        version_id: &str,
    ) -> Result<()> {
        let core = self.core();
        core.op("delete", bucket.into(), key)
            .run(none, |b| async move {
                validate_key(key)?;
                crate::validate::validate_version_id(version_id)?;
                let v = versions_of(&*core.backend)?;
                if !version_exists(core, &b, key, version_id).await? {
                    return Err(Error::new(
                        ErrorKind::KeyNotFound,
                        format!(
                            "{key} has no version {version_id} (nothing was deleted); \
                             `stor ls --all-versions` lists the versions there are"
                        ),
                    ));
                }
                let one = [(key.to_owned(), version_id.to_owned())];
                let (res, _) = core.request(|_| v.delete_versions(&b, &one)).await?;
                match res.into_iter().find_map(|r| r.error) {
                    Some(e) => Err(Error::new(ErrorKind::Other, e)),
                    None => Ok(()),
                }
            })
            .await
    }

    /// Removes many versions for good, up to 1000 per request; one result each.
    pub async fn delete_versions<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        versions: &[(String, String)],
    ) -> Result<Vec<DeletedVersion>> {
        let core = self.core();
        core.op("delete", bucket.into(), "")
            .run(none, |b| async move {
                for (k, v) in versions {
                    validate_key(k).map_err(|e| e.prefixed(&format!("key {k:?}")))?;
                    crate::validate::validate_version_id(v)?;
                }
                delete_batches(core, &b, versions).await
            })
            .await
    }

    /// Purges a prefix: removes every version and delete marker of every key under
    /// `prefix`, for good, page by page. One result per version removed (or not).
    pub async fn delete_all_versions<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        prefix: &str,
    ) -> Result<Vec<DeletedVersion>> {
        let bucket = bucket.into();
        let core = self.core();
        core.op("purge", bucket, prefix)
            .run(none, |b| async move {
                // Each deleted page starts the listing over: paging on past
                // versions just deleted ends early on moto (the markers name
                // versions that are gone). What was sent is skipped, so what
                // failed to go does not come round again; done when a listing
                // has nothing new.
                let mut out = Vec::new();
                let mut sent = HashSet::new();
                loop {
                    let mut opts = ListOptions::default().prefix(prefix);
                    let batch = loop {
                        let page = versions_page(core, Some(&b), opts.clone()).await?;
                        let new: Vec<(String, String)> = page
                            .versions
                            .into_iter()
                            .filter_map(|v| Some((v.info.key, v.info.version_id?)))
                            .filter(|kv| !sent.contains(kv))
                            .collect();
                        match page.next_continuation_token {
                            Some(t) if new.is_empty() => opts.continuation_token = Some(t),
                            _ => break new,
                        }
                    };
                    if batch.is_empty() {
                        return Ok(out);
                    }
                    sent.extend(batch.iter().cloned());
                    out.extend(delete_batches(core, &b, &batch).await?);
                }
            })
            .await
    }

    /// Restores an older version: copies it over the current one (a new version,
    /// server-side; the version history stays as it was).
    pub async fn restore_version<'b>(
        &self,
        bucket: impl Into<BucketArg<'b>>,
        key: &str,
        version_id: &str,
    ) -> Result<TransferResult> {
        let bucket = bucket.into();
        let opts = CopyOptions::default().version(version_id);
        self.copy_object(bucket, key, bucket, key, opts).await
    }
}

/// Whether `key` has the version (or delete marker) `version_id`. A HEAD of the
/// version answers for versions (the engine checks the id it gives back); delete
/// markers answer no HEAD, so on any refusal the key's versions are listed.
async fn version_exists(core: &Core, bucket: &str, key: &str, version_id: &str) -> Result<bool> {
    let v = versions_of(&*core.backend)?;
    match core
        .request(|_| v.head_version(bucket, key, version_id))
        .await
    {
        Ok(_) => return Ok(true),
        Err(e) if e.kind() == ErrorKind::BucketNotFound => return Err(e),
        Err(_) => {}
    }
    let mut opts = ListOptions::default().prefix(key);
    loop {
        let page = versions_page(core, Some(bucket), opts.clone()).await?;
        if page
            .versions
            .iter()
            .any(|o| o.info.key == key && o.info.version_id.as_deref() == Some(version_id))
        {
            return Ok(true);
        }
        match page.next_continuation_token {
            Some(t) => opts.continuation_token = Some(t),
            None => return Ok(false),
        }
    }
}

/// Deletes versions in batches of 1000; a batch that fails as a whole marks each of
/// its versions with the error.
async fn delete_batches(
    core: &Core,
    bucket: &str,
    versions: &[(String, String)],
) -> Result<Vec<DeletedVersion>> {
    let v = versions_of(&*core.backend)?;
    let mut out = Vec::with_capacity(versions.len());
    for chunk in versions.chunks(DELETE_BATCH) {
        match core.request(|_| v.delete_versions(bucket, chunk)).await {
            Ok((res, _)) => {
                for d in res.iter().filter(|d| d.is_deleted()) {
                    core.announce(
                        WriteKind::Delete,
                        bucket,
                        &d.key,
                        None,
                        Default::default(),
                        None,
                    );
                }
                out.extend(res)
            }
            Err(e) if e.kind() == ErrorKind::BucketNotFound => return Err(e),
            Err(e) => out.extend(chunk.iter().map(|(k, v)| DeletedVersion {
                key: k.clone(),
                version_id: v.clone(),
                error: Some(e.to_string()),
            })),
        }
    }
    Ok(out)
}

/// One page of a version listing.
async fn versions_page(
    core: &Core,
    bucket: BucketArg<'_>,
    opts: ListOptions,
) -> Result<VersionPage> {
    let prefix = opts.prefix.clone();
    core.op("list versions", bucket, &prefix)
        .run(none, |b| async move {
            let max = opts.max_keys.unwrap_or(1000);
            if !(1..=1000).contains(&max) {
                return Err(Error::invalid(format!(
                    "max_keys {max} is outside 1..=1000 per page; use list_versions_stream \
                     for more"
                )));
            }
            let v = versions_of(&*core.backend)?;
            let req = ListOptions {
                max_keys: Some(max),
                ..opts
            };
            let (page, _) = core.request(|_| v.list_versions(&b, &req)).await?;
            Ok(page)
        })
        .await
}
