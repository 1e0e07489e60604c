//! [`Storage::probe`]: what a store really does on one bucket — a write, a read
//! back, the optional features the engine may or may not have — as data, for
//! `stor doctor` and for programs that want to know before they rely on them.

use crate::backend::Backend;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Storage;
use crate::types::{CopyOptions, UploadOptions};
use crate::StorageConfig;

/// The result of one check of [`Storage::probe`].
#[derive(Debug)]
pub struct ProbeCheck {
    /// What was tried: `"write an object"`, `"read it back"`, `"multipart uploads"`,
    /// `"conditional reads"`, `"S3-native checksums"`, `"server-side copy"`,
    /// `"delete objects"`.
    pub name: &'static str,
    /// How it went.
    pub outcome: ProbeOutcome,
}

/// How a check went.
#[derive(Debug)]
pub enum ProbeOutcome {
    /// It works (and how, when there is something to say).
    Works(String),
    /// An optional feature the store does not have, or does not honour; what that
    /// means for the user.
    Missing(String),
    /// A basic operation failed.
    Failed(Error),
}

impl ProbeCheck {
    fn new(name: &'static str, outcome: ProbeOutcome) -> ProbeCheck {
        ProbeCheck { name, outcome }
    }
}

const PROBE_BODY: &[u8] = b"stor probe";

impl Storage {
    /// Tries the store on `bucket` with objects of its own under `.stor-probe/`
    /// (removed again): write, read back, and the optional features — multipart
    /// uploads, If-Match on reads, S3-native checksums (S3 only: whether the engine
    /// keeps them, so `native_checksums` can be turned on), server-side copy, batch
    /// delete. Stops after a failed write (nothing else can be tried).
    pub async fn probe(&self, bucket: &str) -> Vec<ProbeCheck> {
        let mut out = Vec::new();
        let key = format!(".stor-probe/{:016x}", rand::random::<u64>());
        if let Err(e) = self
            .upload_bytes(bucket, &key, PROBE_BODY, UploadOptions::default())
            .await
        {
            out.push(ProbeCheck::new("write an object", ProbeOutcome::Failed(e)));
            return out;
        }
        out.push(ProbeCheck::new(
            "write an object",
            ProbeOutcome::Works(String::new()),
        ));
        out.push(ProbeCheck::new(
            "read it back",
            match self.download_bytes(bucket, &key).await {
                Ok(d) if d.data.as_ref() == PROBE_BODY => {
                    ProbeOutcome::Works("checksum verified".into())
                }
                Ok(_) => ProbeOutcome::Failed(Error::new(
                    ErrorKind::Integrity,
                    "the bytes read back differ from those written (a proxy that rewrites \
                     bodies?)",
                )),
                Err(e) => ProbeOutcome::Failed(e),
            },
        ));
        let be = self.backend_for_probe();
        if self.capabilities().multipart {
            out.push(ProbeCheck::new(
                "multipart uploads",
                match multipart(be, bucket, &key).await {
                    Ok(()) => ProbeOutcome::Works(String::new()),
                    Err(e) => ProbeOutcome::Missing(format!(
                        "{e}; large uploads will fail — raise multipart_threshold"
                    )),
                },
            ));
        }
        out.push(ProbeCheck::new(
            "conditional reads",
            match be
                .get_object(bucket, &key, None, Some("0000000000000000"))
                .await
            {
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                    ProbeOutcome::Works("If-Match pins parallel downloads".into())
                }
                _ => ProbeOutcome::Missing(
                    "If-Match is ignored: an object replaced during a download is then \
                     caught only by its checksum"
                        .into(),
                ),
            },
        ));
        if self.scheme() == "s3" {
            out.push(ProbeCheck::new(
                "S3-native checksums",
                self.native_checksums(bucket, &format!("{key}.native"))
                    .await,
            ));
        }
        let copy = format!("{key}.copy");
        out.push(ProbeCheck::new(
            "server-side copy",
            match self
                .copy_object(bucket, &key, bucket, &copy, CopyOptions::default())
                .await
            {
                Ok(_) => ProbeOutcome::Works(String::new()),
                Err(e) => ProbeOutcome::Missing(format!("{e}; cp/mv between keys will fail")),
            },
        ));
        out.push(ProbeCheck::new(
            "delete objects",
            match self.delete_many(bucket, &[key.clone(), copy]).await {
                Ok(res) => match res.into_iter().find_map(|d| d.error) {
                    None => ProbeOutcome::Works("batched".into()),
                    Some(e) => ProbeOutcome::Failed(Error::new(ErrorKind::AccessDenied, e)),
                },
                Err(e) => ProbeOutcome::Failed(e),
            },
        ));
        out
    }

    /// Whether the endpoint checks and keeps S3's own checksum headers: an upload
    /// with them on, then the stored checksum must be stor's CRC64NVME.
    async fn native_checksums(&self, bucket: &str, key: &str) -> ProbeOutcome {
        let cfg = self.config();
        let on = self.capabilities().native_checksums;
        let with_native = StorageConfig {
            native_checksums: Some(true),
            checksum: crate::ChecksumAlgorithm::Crc64nvme,
            ..cfg.clone()
        };
        let want = crate::ChecksumAlgorithm::Crc64nvme
            .of(PROBE_BODY)
            .map(|c| c.encoded());
        let kept = async {
            let store = Storage::new(with_native).await?;
            store
                .upload_bytes(bucket, key, PROBE_BODY, UploadOptions::default())
                .await?;
            let got = store
                .backend_for_probe()
                .native_checksum(bucket, key, None)
                .await;
            let _ = store.delete(bucket, key).await;
            Ok::<_, Error>(got.ok().flatten().map(|(_, v)| v))
        };
        match kept.await {
            Ok(got) if got.is_some() && got == want => ProbeOutcome::Works(if on {
                "on: the server checks every upload".into()
            } else {
                "kept here; set \"native_checksums\": true to have the server check every \
                 upload"
                    .into()
            }),
            Ok(_) => ProbeOutcome::Missing(
                "not kept: leave native_checksums off (stor's own checksum still guards \
                 every download)"
                    .into(),
            ),
            Err(e) => ProbeOutcome::Missing(format!(
                "the headers were refused ({e}): leave native_checksums off"
            )),
        }
    }
}

/// Starts a multipart upload and aborts it.
async fn multipart(be: &dyn Backend, bucket: &str, key: &str) -> Result<()> {
    let mp = be
        .multipart()
        .ok_or_else(|| Error::new(ErrorKind::Unsupported, "no multipart uploads"))?;
    let id = mp
        .create_multipart(bucket, key, &UploadOptions::default(), None)
        .await?;
    mp.abort_multipart(bucket, key, &id).await
}
