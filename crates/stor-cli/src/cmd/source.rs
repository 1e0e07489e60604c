//! The end of a move: removing its source, only if the source is still what was
//! transferred. A file that changed after the upload last read it, or an object
//! replaced after it was read, is kept (beside the copy) and the move fails.
//!
//! A window remains in both cases, between the last check and the removal: POSIX
//! has no "unlink if unchanged", and S3 no conditional delete that every engine
//! honours (If-Match on DeleteObject is recent on AWS and unknown to most
//! S3-compatible servers; the local store has none). The checks narrow it to one
//! system call or one round trip.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[cfg(test)]
use std::io::Write as _;

use stor::{ErrorKind, Storage};

/// What a file was when its upload began: a write, a truncation or a replacement
/// since changes at least one of these (the inode change time even when the
/// modification time is set back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl FileState {
    /// The state of the file at `path` (following a symlink: its content is what
    /// the upload reads).
    pub fn of(path: &Path) -> std::io::Result<FileState> {
        let m = std::fs::metadata(path)?;
        Ok(FileState {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        })
    }
}

/// Removes the file a move uploaded, if it is still as it was `before` the upload.
pub fn remove_file_if_unchanged(path: &Path, before: &FileState) -> anyhow::Result<()> {
    let shown = path.display();
    let now = FileState::of(path).map_err(|e| anyhow::anyhow!("checking {shown}: {e}"))?;
    if now != *before {
        return Err(stor::Error::new(
            ErrorKind::Integrity,
            format!(
                "{shown} changed after it was uploaded (its size, times or inode differ), so \
                 it was kept: the object holds the earlier content — move it again"
            ),
        )
        .into());
    }
    std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("removing {shown}: {e}"))
}

/// Deletes the object a move copied or downloaded, if it still has the ETag of
/// the version that was read (`copied`); `from` and `to` name both ends for the
/// message.
pub async fn delete_object_if_unchanged(
    store: &Storage,
    bucket: &str,
    key: &str,
    copied: Option<&str>,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    let now = match store.info(bucket, key).await {
        Ok(i) => i,
        // Gone meanwhile (another client): nothing left to delete.
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if copied.is_none() || now.etag.as_deref() != copied {
        return Err(stor::Error::new(
            ErrorKind::PreconditionFailed,
            format!(
                "{from} changed during the move (it was replaced after it was read); both it \
                 and the copy at {to} were kept"
            ),
        )
        .into());
    }
    store.delete(bucket, key).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stor::{StorageConfig, UploadOptions};

    #[test]
    fn a_file_that_changed_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "read").unwrap();
        let before = FileState::of(&p).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b" and appended")
            .unwrap();
        let e = remove_file_if_unchanged(&p, &before).unwrap_err();
        assert!(
            format!("{e:#}").contains("changed after it was uploaded"),
            "{e:#}"
        );
        assert!(p.exists());
        // Rewritten in place with the same size and modification time: the inode
        // change time tells.
        let before = FileState::of(&p).unwrap();
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&p, "READ AND APPENDED").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(remove_file_if_unchanged(&p, &before).is_err());
        let before = FileState::of(&p).unwrap();
        remove_file_if_unchanged(&p, &before).unwrap();
        assert!(!p.exists());
    }

    #[tokio::test]
    async fn an_object_replaced_after_it_was_read_is_kept() {
        let s = Storage::new(StorageConfig::memory()).await.unwrap();
        s.create_bucket("bkt").await.unwrap();
        let put = |v: &'static str| s.upload_bytes("bkt", "k", v, UploadOptions::default());
        let read = put("first").await.unwrap().etag;
        put("second").await.unwrap();
        let e = delete_object_if_unchanged(&s, "bkt", "k", read.as_deref(), "from", "to")
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("from changed during the move"),
            "{e:#}"
        );
        assert_eq!(
            &s.download_bytes("bkt", "k").await.unwrap().data[..],
            b"second"
        );
        let now = s.info("bkt", "k").await.unwrap().etag;
        delete_object_if_unchanged(&s, "bkt", "k", now.as_deref(), "from", "to")
            .await
            .unwrap();
        assert!(!s.exists("bkt", "k").await.unwrap());
    }
}
