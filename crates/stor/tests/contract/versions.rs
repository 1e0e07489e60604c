//! Contract cases of bucket versioning (issue 17), on every store whose
//! capabilities say it keeps versions; the others refuse with `Unsupported`.

use std::time::Duration;

use futures::TryStreamExt;
use stor::{
    CopyOptions, DownloadOptions, ErrorKind, ListOptions, ObjectVersion, PresignOptions,
    UploadOptions, Versioning,
};

use crate::common::{http, payload, storage_and_backend, unique, Fixture, Kind};

const MIB: usize = 1024 * 1024;

/// A fresh bucket with versioning on (each case its own: versioning is a bucket's
/// setting). `None` on stores without versions, after checking they say so.
async fn versioned(f: &Fixture) -> Option<String> {
    let s = &f.storage;
    if !s.capabilities().versioning {
        let e = s.set_versioning(&f.bucket, true).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let e = s
            .list_versions(f.bucket.as_str(), ListOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let o = DownloadOptions {
            version_id: Some("v1".into()),
            ..Default::default()
        };
        let e = s
            .download_stream(f.bucket.as_str(), &f.key("k"), o)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        return None;
    }
    let b = unique("stor-ver");
    s.create_bucket(&b).await.unwrap();
    assert_eq!(s.versioning(&b).await.unwrap(), Versioning::Unversioned);
    s.set_versioning(&b, true).await.unwrap();
    assert_eq!(s.versioning(&b).await.unwrap(), Versioning::Enabled);
    Some(b)
}

/// Purges and removes a versioned bucket.
async fn drop_bucket(s: &stor::Storage, b: &str) {
    let gone = s.delete_all_versions(b, "").await.unwrap();
    assert!(gone.iter().all(|d| d.is_deleted()), "{gone:?}");
    s.delete_bucket(b).await.unwrap();
}

async fn all_versions(s: &stor::Storage, b: &str, prefix: &str) -> Vec<ObjectVersion> {
    s.list_versions_stream(b, ListOptions::default().prefix(prefix))
        .try_collect()
        .await
        .unwrap()
}

async fn version_bytes(s: &stor::Storage, b: &str, k: &str, v: &str) -> Vec<u8> {
    let o = DownloadOptions {
        version_id: Some(v.into()),
        ..Default::default()
    };
    s.download_stream(b, k, o)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .to_vec()
}

/// Every write keeps a version: they list newest first, each reads back (whole,
/// as a range, into a file, through a presigned URL), copies elsewhere, and an
/// older one restores over the current; a delete leaves a marker that hides the
/// key until a version is restored; versions go one by one or all at once.
pub async fn versions_are_kept_listed_read_and_restored(f: Fixture) {
    let Some(b) = versioned(&f).await else {
        return;
    };
    let s = &f.storage;
    let key = "doc.txt";
    let mut ids = Vec::new();
    for body in ["one", "two", "three"] {
        let r = s
            .upload_bytes(b.as_str(), key, body, UploadOptions::default())
            .await
            .unwrap();
        let info = s.info(b.as_str(), key).await.unwrap();
        ids.push(
            info.version_id
                .clone()
                .expect("a versioned object has a version id"),
        );
        assert_eq!(info.etag, r.etag);
    }
    let vs = all_versions(s, &b, "").await;
    let listed: Vec<_> = vs
        .iter()
        .map(|v| v.info.version_id.clone().unwrap())
        .collect();
    assert_eq!(
        listed,
        ids.iter().rev().cloned().collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(
        vs.iter().map(|v| v.is_latest).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert!(vs.iter().all(|v| !v.delete_marker && v.info.key == key));
    assert_eq!(vs[2].info.size, 3);
    // One page at a time gives the same.
    let mut paged = Vec::new();
    let mut opts = ListOptions::default().max_keys(1);
    loop {
        let page = s.list_versions(b.as_str(), opts.clone()).await.unwrap();
        assert!(page.versions.len() <= 1);
        paged.extend(page.versions);
        match page.next_continuation_token {
            Some(t) => opts = opts.continuation_token(t),
            None => break,
        }
    }
    assert_eq!(paged, vs);
    // Each version reads back.
    assert_eq!(version_bytes(s, &b, key, &ids[0]).await, b"one");
    let info = s.info_version(b.as_str(), key, &ids[1]).await.unwrap();
    assert_eq!(
        (info.size, info.version_id.as_deref()),
        (3, Some(ids[1].as_str()))
    );
    let range = DownloadOptions {
        version_id: Some(ids[2].clone()),
        range: Some(stor::ByteRange { start: 1, end: 3 }),
        ..Default::default()
    };
    let got = s.download_stream(b.as_str(), key, range).await.unwrap();
    assert_eq!(got.collect().await.unwrap().as_ref(), b"hr");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.txt");
    let o = DownloadOptions {
        version_id: Some(ids[0].clone()),
        ..Default::default()
    };
    s.download_file_with(b.as_str(), key, &path, o)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"one");
    let url = s
        .presign(
            b.as_str(),
            key,
            PresignOptions::get(Duration::from_secs(60)).version(&ids[0]),
        )
        .await
        .unwrap();
    assert_eq!(http("GET", &url, None, b"").await, (200, "one".into()));
    // A version copies elsewhere.
    let c = CopyOptions::default().version(&ids[1]);
    s.copy_object(b.as_str(), key, b.as_str(), "copy.txt", c)
        .await
        .unwrap();
    assert_eq!(
        s.download_bytes(b.as_str(), "copy.txt")
            .await
            .unwrap()
            .data
            .as_ref(),
        b"two"
    );
    // A delete leaves a marker: the key is gone, its versions are not.
    s.delete(b.as_str(), key).await.unwrap();
    let e = s.info(b.as_str(), key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    let vs = all_versions(s, &b, key).await;
    assert_eq!(vs.len(), 4);
    assert!(vs[0].delete_marker && vs[0].is_latest, "{vs:?}");
    assert_eq!(vs[0].info.size, 0);
    // Restoring an old version makes it current again.
    s.restore_version(b.as_str(), key, &ids[0]).await.unwrap();
    assert_eq!(
        s.download_bytes(b.as_str(), key)
            .await
            .unwrap()
            .data
            .as_ref(),
        b"one"
    );
    assert_eq!(all_versions(s, &b, key).await.len(), 5);
    // Versions go for good, one by one.
    s.delete_version(b.as_str(), key, &ids[2]).await.unwrap();
    let left: Vec<_> = all_versions(s, &b, key).await;
    assert!(left
        .iter()
        .all(|v| v.info.version_id.as_deref() != Some(&ids[2])));
    let e = s.info_version(b.as_str(), key, &ids[2]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    // A purge of the prefix removes every version and marker under it, no more.
    let purged = s.delete_all_versions(b.as_str(), "doc").await.unwrap();
    assert_eq!(purged.len(), 4, "{purged:?}");
    assert!(purged.iter().all(|d| d.is_deleted()), "{purged:?}");
    assert!(all_versions(s, &b, "doc").await.is_empty());
    let kept = all_versions(s, &b, "").await;
    assert_eq!(kept.len(), 1, "copy.txt stays");
    // Suspended: the versions so far stay. (Last: moto 5.1 answers 500 to version
    // deletes in a suspended bucket that holds a delete marker.)
    s.set_versioning(&b, false).await.unwrap();
    assert_eq!(s.versioning(&b).await.unwrap(), Versioning::Suspended);
    let v = kept[0].info.version_id.as_deref().unwrap();
    assert_eq!(version_bytes(s, &b, "copy.txt", v).await, b"two");
    drop_bucket(s, &b).await;
}

/// An unknown version is `KeyNotFound` everywhere it is named; bad version ids
/// are refused before any request; a version is neither moved nor presigned for
/// PUT.
pub async fn missing_and_bad_versions_are_told(f: Fixture) {
    let Some(b) = versioned(&f).await else {
        return;
    };
    let s = &f.storage;
    s.upload_bytes(b.as_str(), "k", "x", UploadOptions::default())
        .await
        .unwrap();
    let ghost = "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd";
    let e = s.info_version(b.as_str(), "k", ghost).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    let o = DownloadOptions {
        version_id: Some(ghost.into()),
        ..Default::default()
    };
    let e = s.download_stream(b.as_str(), "k", o).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    let e = s
        .copy_object(
            b.as_str(),
            "k",
            b.as_str(),
            "k2",
            CopyOptions::default().version(ghost),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    assert!(!s.exists(b.as_str(), "k2").await.unwrap());
    for bad in ["", "has space", "new\nline"] {
        let e = s.info_version(b.as_str(), "k", bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        let e = s.delete_version(b.as_str(), "k", bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let e = s
        .move_object(
            b.as_str(),
            "k",
            b.as_str(),
            "m",
            CopyOptions::default().version("v"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = s
        .presign(
            b.as_str(),
            "k",
            PresignOptions::put(Duration::from_secs(60)).version("v"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    drop_bucket(s, &b).await;
}

/// A version id that is not there is never taken for the current object: engines
/// drop the id on a bucket that was never versioned (both SeaweedFS and moto
/// deleted the live object; SeaweedFS read it back), so deleting it fails and
/// the object stays, reading or copying it fails; on a versioned bucket deleting a
/// missing version fails too, while a delete marker still goes by its id.
pub async fn an_absent_version_is_never_the_current_object(f: Fixture) {
    let Some(b) = versioned(&f).await else {
        return;
    };
    let s = &f.storage;
    let plain = unique("stor-unver");
    s.create_bucket(&plain).await.unwrap();
    s.upload_bytes(plain.as_str(), "k", "keep", UploadOptions::default())
        .await
        .unwrap();
    // A well-formed id from another bucket, and one no engine gives.
    s.upload_bytes(b.as_str(), "k", "v1", UploadOptions::default())
        .await
        .unwrap();
    let other = s.info(b.as_str(), "k").await.unwrap().version_id.unwrap();
    for ghost in [other.as_str(), "nosuch"] {
        let e = s
            .delete_version(plain.as_str(), "k", ghost)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{ghost}: {e}");
        assert!(e.to_string().contains(ghost), "{e}");
        assert!(s.exists(plain.as_str(), "k").await.unwrap(), "{ghost}");
        // Not found, or (moto) an id the engine refuses: either way named.
        let told = |e: stor::Error| {
            assert!(
                matches!(e.kind(), ErrorKind::KeyNotFound | ErrorKind::InvalidInput),
                "{ghost}: {e}"
            );
            assert!(e.to_string().contains(ghost), "{e}");
        };
        told(
            s.info_version(plain.as_str(), "k", ghost)
                .await
                .unwrap_err(),
        );
        let o = DownloadOptions {
            version_id: Some(ghost.into()),
            ..Default::default()
        };
        told(s.download_stream(plain.as_str(), "k", o).await.unwrap_err());
        let copy = CopyOptions::default().version(ghost);
        told(
            s.copy_object(plain.as_str(), "k", plain.as_str(), "k2", copy)
                .await
                .unwrap_err(),
        );
        assert!(!s.exists(plain.as_str(), "k2").await.unwrap());
    }
    let kept = s.download_bytes(plain.as_str(), "k").await.unwrap();
    assert_eq!(&kept.data[..], b"keep");
    // Versioned: a missing id fails and deletes nothing; a marker goes by its id.
    let e = s
        .delete_version(b.as_str(), "k", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    s.delete(b.as_str(), "k").await.unwrap();
    let marker = all_versions(s, &b, "k")
        .await
        .into_iter()
        .find(|v| v.delete_marker)
        .expect("a delete leaves a marker");
    let id = marker.info.version_id.unwrap();
    s.delete_version(b.as_str(), "k", &id).await.unwrap();
    assert!(
        s.exists(b.as_str(), "k").await.unwrap(),
        "the marker is gone"
    );
    s.delete(plain.as_str(), "k").await.unwrap();
    s.delete_bucket(&plain).await.unwrap();
    drop_bucket(s, &b).await;
}

/// A purge of more than a page of versions (1003 of one key) removes them all: moto
/// ends a version listing early when its markers name versions just deleted (the
/// purge left 3 and said it was done).
pub async fn a_purge_of_more_than_a_page_removes_every_version(f: Fixture) {
    let Some(b) = versioned(&f).await else {
        return;
    };
    let s = &f.storage;
    for i in 0..1003 {
        s.upload_bytes(b.as_str(), "b", i.to_string(), UploadOptions::default())
            .await
            .unwrap();
    }
    s.upload_bytes(b.as_str(), "c", "keep", UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(all_versions(s, &b, "b").await.len(), 1003);
    let gone = s.delete_all_versions(b.as_str(), "b").await.unwrap();
    assert_eq!(gone.len(), 1003);
    assert!(gone.iter().all(|d| d.is_deleted()), "{gone:?}");
    assert!(all_versions(s, &b, "b").await.is_empty());
    assert_eq!(all_versions(s, &b, "").await.len(), 1, "only c is left");
    drop_bucket(s, &b).await;
}

/// A key's versions and delete markers list newest first as the engine orders
/// them, also when they were written within one second: SeaweedFS gives times to
/// the second, and sorting by time put every version before every marker.
pub async fn versions_and_markers_of_one_second_keep_their_order(f: Fixture) {
    let Some(b) = versioned(&f).await else {
        return;
    };
    let s = &f.storage;
    let mut ids = Vec::new();
    for (i, body) in ["a", "one", "big"].iter().enumerate() {
        s.upload_bytes(b.as_str(), "dm", *body, UploadOptions::default())
            .await
            .unwrap();
        ids.push(s.info(b.as_str(), "dm").await.unwrap().version_id.unwrap());
        if i < 2 {
            s.delete(b.as_str(), "dm").await.unwrap();
        }
    }
    let listed = all_versions(s, &b, "dm").await;
    if f.kind == Kind::Moto {
        // moto gives whole seconds and lists every version before every marker:
        // only the latest can be told.
        assert!(
            listed[0].is_latest && !listed[0].delete_marker,
            "{listed:#?}"
        );
        drop_bucket(s, &b).await;
        return;
    }
    let shape: Vec<(bool, bool)> = listed
        .iter()
        .map(|v| (v.delete_marker, v.is_latest))
        .collect();
    assert_eq!(
        shape,
        [
            (false, true),
            (true, false),
            (false, false),
            (true, false),
            (false, false)
        ],
        "{listed:#?}"
    );
    let versions: Vec<&str> = listed
        .iter()
        .filter(|v| !v.delete_marker)
        .map(|v| v.info.version_id.as_deref().unwrap())
        .collect();
    assert_eq!(versions, [&ids[2], &ids[1], &ids[0]]);
    drop_bucket(s, &b).await;
}

/// A version over the multipart threshold copies by parts (UploadPartCopy of that
/// version, not of the current object) and downloads in parallel ranges.
pub async fn a_large_version_copies_by_parts_and_downloads_in_ranges(f: Fixture) {
    let Some(b) = versioned(&f).await else {
        return;
    };
    let Some((s, _, _root)) = storage_and_backend(f.kind, |c| {
        c.multipart_threshold = 5 * MIB as u64;
        c.part_size = Some(5 * MIB as u64);
    })
    .await
    else {
        return;
    };
    let old = payload(11 * MIB, 7);
    s.upload_bytes(b.as_str(), "big", old.clone(), UploadOptions::default())
        .await
        .unwrap();
    let v1 = s.info(b.as_str(), "big").await.unwrap().version_id.unwrap();
    s.upload_bytes(
        b.as_str(),
        "big",
        payload(11 * MIB, 8),
        UploadOptions::default(),
    )
    .await
    .unwrap();
    let r = s
        .copy_object(
            b.as_str(),
            "big",
            b.as_str(),
            "old-big",
            CopyOptions::default().version(&v1),
        )
        .await
        .unwrap();
    assert_eq!(r.multipart, s.capabilities().part_copy);
    let got = s.download_bytes(b.as_str(), "old-big").await.unwrap();
    assert!(
        got.data.as_ref() == old.as_slice(),
        "the old version's bytes"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1");
    let o = DownloadOptions {
        version_id: Some(v1.clone()),
        ..Default::default()
    };
    let r = s
        .download_file_with(b.as_str(), "big", &path, o)
        .await
        .unwrap();
    assert!(std::fs::read(&path).unwrap() == old);
    assert!(
        r.checksum.is_some(),
        "verified against the version's own checksum"
    );
    drop_bucket(&s, &b).await;
}
