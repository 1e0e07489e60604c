//! [`StorageService`], the process-wide instance like the original's static class.

use std::sync::RwLock;

use crate::config::StorageConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Storage;

static GLOBAL: RwLock<Option<Storage>> = RwLock::new(None);

/// The process-wide storage service, like the original's static class.
///
/// ```
/// # tokio_test::block_on(async {
/// use stor::{StorageConfig, StorageService};
/// StorageService::init(StorageConfig::memory()).await?;
/// assert!(StorageService::is_initialized());
/// let storage = StorageService::get()?;
/// storage.create_bucket("reports").await?;
/// StorageService::shutdown().await;
/// assert!(!StorageService::is_initialized());
/// assert!(StorageService::get().is_err());
/// # Ok::<(), stor::Error>(()) }).unwrap();
/// ```
pub struct StorageService;

impl StorageService {
    /// Opens the store and makes it the process-wide instance (replacing any before).
    pub async fn init(config: StorageConfig) -> Result<Storage> {
        let storage = Storage::new(config).await?;
        let old = GLOBAL
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(storage.clone());
        if let Some(old) = old {
            old.shutdown().await;
        }
        Ok(storage)
    }

    /// The process-wide instance.
    pub fn get() -> Result<Storage> {
        GLOBAL
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotInitialized,
                    "call StorageService::init(config) first",
                )
            })
    }

    /// Whether [`StorageService::init`] has been called (and not shut down).
    pub fn is_initialized() -> bool {
        GLOBAL.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Shuts the instance down: waits for operations in flight, then forgets it.
    pub async fn shutdown() {
        let s = GLOBAL.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = s {
            s.shutdown().await;
        }
    }
}
