//! Events after writes, so "upload, then start the ingestion" is one subscriber,
//! not code at every call site.
//!
//! Every completed put, copy, move and delete of a [`Storage`](crate::Storage) (and
//! its clones) is announced to every subscriber, after the write succeeded — never
//! for a failed one. A slow subscriber never holds a transfer up: each has a bounded
//! queue ([`QUEUE`] events); when it falls that far behind, the oldest events it has
//! not read are dropped and counted ([`WriteEvents::dropped`], and the
//! `stor_events_dropped_total` counter).
//!
//! ```
//! # tokio_test::block_on(async {
//! use stor::{Storage, StorageConfig, UploadOptions, WriteKind};
//! let storage = Storage::new(StorageConfig::memory()).await?;
//! storage.create_bucket("news").await?;
//! let mut events = storage.subscribe();
//! storage
//!     .upload_bytes("news", "a.json", "{}", UploadOptions::default().metadata("source", "crawler"))
//!     .await?;
//! let e = events.next().await.unwrap();
//! assert_eq!((e.kind, e.key.as_str(), e.size), (WriteKind::Put, "a.json", Some(2)));
//! assert_eq!(e.metadata["source"], "crawler");
//! # Ok::<(), stor::Error>(()) }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before the oldest are dropped.
pub const QUEUE: usize = 1024;

/// What kind of write completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteKind {
    /// An upload stored an object.
    Put,
    /// A server-side copy stored an object (`source` names the original).
    Copy,
    /// A move stored an object and deleted its source (`source`).
    Move,
    /// An object was deleted.
    Delete,
}

/// A completed write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteEvent {
    /// What happened.
    pub kind: WriteKind,
    /// The bucket written to.
    pub bucket: String,
    /// The key written (or deleted).
    pub key: String,
    /// Bytes stored (none for a delete).
    pub size: Option<u64>,
    /// The stored object's ETag, when the store said.
    pub etag: Option<String>,
    /// The user metadata the object was written with (empty for copies and moves
    /// that kept the source's, and for deletes).
    pub metadata: BTreeMap<String, String>,
    /// The object a copy or move came from: bucket and key.
    pub source: Option<(String, String)>,
}

/// The sending side, one per store (shared by its handles).
#[derive(Debug)]
pub(crate) struct Events(broadcast::Sender<Arc<WriteEvent>>);

impl Default for Events {
    fn default() -> Self {
        Events(broadcast::channel(QUEUE).0)
    }
}

impl Events {
    /// Whether anyone listens (events are built only then).
    pub fn wanted(&self) -> bool {
        self.0.receiver_count() > 0
    }

    pub fn send(&self, e: WriteEvent) {
        // No subscriber is not an error.
        let _ = self.0.send(Arc::new(e));
    }

    pub fn subscribe(&self) -> WriteEvents {
        WriteEvents {
            rx: self.0.subscribe(),
            dropped: 0,
        }
    }
}

/// A subscription to a store's completed writes ([`crate::Storage::subscribe`]).
#[derive(Debug)]
pub struct WriteEvents {
    rx: broadcast::Receiver<Arc<WriteEvent>>,
    dropped: u64,
}

impl WriteEvents {
    /// The next completed write, in the order they completed; `None` once the store
    /// and all its handles are gone. Events dropped because this subscriber fell
    /// behind are skipped and counted.
    pub async fn next(&mut self) -> Option<WriteEvent> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some((*e).clone()),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.dropped += n;
                    metrics::counter!("stor_events_dropped_total").increment(n);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Events this subscriber missed because it fell more than [`QUEUE`] behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
