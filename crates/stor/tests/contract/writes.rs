//! Contract cases of conditional writes and object tags (issue 17), on every store
//! whose capabilities say it has them.

use std::collections::BTreeMap;

use stor::{CopyOptions, ErrorKind, UploadOptions, WriteCondition};

use crate::common::{payload, storage_and_backend, Fixture, Kind};

const MIB: usize = 1024 * 1024;

/// A store like the fixture's whose threshold and parts are 5 MiB, so multipart
/// uploads and part copies show at test sizes; its bucket is the fixture's.
async fn small_parts(f: &Fixture) -> Option<(stor::Storage, Option<tempfile::TempDir>)> {
    let (s, _, root) = storage_and_backend(f.kind, |c| {
        c.multipart_threshold = 5 * MIB as u64;
        c.part_size = Some(5 * MIB as u64);
        c.max_concurrency = 2;
    })
    .await?;
    if !f.kind.is_s3() {
        s.create_bucket(&f.bucket).await.unwrap();
    }
    Some((s, root))
}

async fn content(s: &stor::Storage, b: &str, k: &str) -> Vec<u8> {
    s.download_bytes(b, k).await.unwrap().data.to_vec()
}

/// Create-only writes (If-None-Match: *) — one PUT, a multipart upload, a copy
/// and a multipart copy — never replace an object: the write fails as
/// `AlreadyExists` after one attempt and the object is as it was. On a new key
/// they write.
pub async fn create_only_writes_never_replace_an_object(f: Fixture) {
    if !f.storage.capabilities().conditional_writes {
        let e = f
            .storage
            .upload_bytes(
                f.bucket.as_str(),
                &f.key("x"),
                "x",
                UploadOptions::default().create_only(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        return;
    }
    let Some((s, _root)) = small_parts(&f).await else {
        return;
    };
    let b = f.bucket.as_str();
    let (key, big) = (f.key("kept"), payload(11 * MIB, 1));
    s.upload_bytes(b, &key, "original", UploadOptions::default())
        .await
        .unwrap();
    let create = || UploadOptions::default().create_only();
    let refused = [
        s.upload_bytes(b, &key, "second", create()).await,
        s.upload_bytes(b, &key, big.clone(), create()).await,
    ];
    for (how, r) in ["one PUT", "multipart"].iter().zip(refused) {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{how}: {e}");
        assert!(
            e.attempts() <= 1,
            "{how}: a failed condition is not retried: {e}"
        );
        assert!(e.to_string().contains("nothing was written"), "{how}: {e}");
    }
    // Copies onto it, small and by parts.
    s.upload_bytes(b, &f.key("big"), big.clone(), UploadOptions::default())
        .await
        .unwrap();
    for src in ["big", "kept"] {
        let e = s
            .copy_object(
                b,
                &f.key(src),
                b,
                &key,
                CopyOptions::default().create_only(),
            )
            .await;
        if src == "kept" {
            // A copy onto itself needs a replacement or a version: refused as input.
            assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
            continue;
        }
        assert_eq!(
            e.unwrap_err().kind(),
            ErrorKind::AlreadyExists,
            "copy of {src}"
        );
    }
    let small = f.key("small");
    s.upload_bytes(b, &small, "small one", UploadOptions::default())
        .await
        .unwrap();
    let e = s
        .copy_object(b, &small, b, &key, CopyOptions::default().create_only())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(content(&s, b, &key).await, b"original");
    assert!(
        s.list_uploads(b, &f.prefix).await.unwrap().is_empty(),
        "no upload left"
    );
    // On new keys each of them writes.
    let fresh = |n: &str| f.key(&format!("new/{n}"));
    s.upload_bytes(b, &fresh("put"), "p", create())
        .await
        .unwrap();
    let r = s
        .upload_bytes(b, &fresh("parts"), big.clone(), create())
        .await
        .unwrap();
    assert_eq!(r.multipart, s.capabilities().multipart);
    let copy = CopyOptions::default().create_only();
    s.copy_object(b, &small, b, &fresh("copy"), copy.clone())
        .await
        .unwrap();
    s.copy_object(b, &f.key("big"), b, &fresh("bigcopy"), copy)
        .await
        .unwrap();
    assert_eq!(content(&s, b, &fresh("parts")).await, big);
    assert_eq!(content(&s, b, &fresh("bigcopy")).await, big);
    assert_eq!(content(&s, b, &fresh("copy")).await, b"small one");
}

/// The server itself refuses a create-only completion of a multipart upload over
/// an object that exists (not a HEAD before it): the backend's own request, with
/// no engine in between, fails and the object stays.
pub async fn a_create_only_multipart_completion_is_refused_by_the_store(f: Fixture) {
    let Some(mp) = f.backend.multipart() else {
        return;
    };
    if !f.storage.capabilities().conditional_writes {
        return;
    }
    let (b, key) = (f.bucket.as_str(), f.key("exists"));
    f.storage
        .upload_bytes(b, &key, "there first", UploadOptions::default())
        .await
        .unwrap();
    let opts = UploadOptions::default();
    let id = mp.create_multipart(b, &key, &opts, None).await.unwrap();
    let body = stor::backend::Body::Bytes(payload(5 * MIB, 2).into());
    let part = mp.upload_part(b, &key, &id, 1, body, None).await.unwrap();
    let cond = WriteCondition::IfAbsent;
    let e = mp
        .complete_multipart_if(b, &key, &id, std::slice::from_ref(&part), None, Some(&cond))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::PreconditionFailed | ErrorKind::AlreadyExists
        ),
        "{e}"
    );
    assert_eq!(content(&f.storage, b, &key).await, b"there first");
    // If-Match with a wrong ETag likewise (moto 5.1 ignores If-Match here; AWS,
    // SeaweedFS and stor's own stores refuse).
    if f.kind != Kind::Moto {
        let stale = WriteCondition::IfMatch("0123456789abcdef0123456789abcdef".into());
        let e = mp
            .complete_multipart_if(b, &key, &id, &[part], None, Some(&stale))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
        assert_eq!(content(&f.storage, b, &key).await, b"there first");
    }
    mp.abort_multipart(b, &key, &id).await.unwrap();
}

/// Optimistic updates (If-Match): a write over the version that was read
/// succeeds; one over a version someone replaced meanwhile fails as
/// `PreconditionFailed` and changes nothing — one PUT, multipart, copies. A key
/// that holds nothing fails the condition too.
pub async fn if_match_writes_only_over_the_version_read(f: Fixture) {
    if !f.storage.capabilities().conditional_writes {
        return;
    }
    let Some((s, _root)) = small_parts(&f).await else {
        return;
    };
    let b = f.bucket.as_str();
    let key = f.key("doc");
    let v1 = s
        .upload_bytes(b, &key, "v1", UploadOptions::default())
        .await
        .unwrap();
    let etag1 = v1.etag.unwrap();
    // Someone else updates it.
    let v2 = s
        .upload_bytes(b, &key, "v2", UploadOptions::default())
        .await
        .unwrap();
    let etag2 = v2.etag.unwrap();
    let stale = || UploadOptions::default().if_match(&etag1);
    let big = payload(11 * MIB, 3);
    for (how, r) in [
        ("one PUT", s.upload_bytes(b, &key, "mine", stale()).await),
        (
            "multipart",
            s.upload_bytes(b, &key, big.clone(), stale()).await,
        ),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{how}: {e}");
        assert!(e.attempts() <= 1, "{how}: {e}");
    }
    s.upload_bytes(b, &f.key("src"), "copied", UploadOptions::default())
        .await
        .unwrap();
    let e = s
        .copy_object(
            b,
            &f.key("src"),
            b,
            &key,
            CopyOptions::default().if_match(&etag1),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert_eq!(content(&s, b, &key).await, b"v2");
    // Over the version read: written.
    let r = s
        .upload_bytes(
            b,
            &key,
            big.clone(),
            UploadOptions::default().if_match(&etag2),
        )
        .await
        .unwrap();
    assert_eq!(content(&s, b, &key).await, big);
    let r = s
        .copy_object(
            b,
            &f.key("src"),
            b,
            &key,
            CopyOptions::default().if_match(r.etag.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(content(&s, b, &key).await, b"copied");
    let r = s
        .upload_bytes(
            b,
            &key,
            "v4",
            UploadOptions::default().if_match(r.etag.unwrap()),
        )
        .await
        .unwrap();
    assert!(r.etag.is_some());
    assert_eq!(content(&s, b, &key).await, b"v4");
    // Nothing there: the condition fails (engines answer 412 or 404; stor says
    // PreconditionFailed for both).
    let e = s
        .upload_bytes(
            b,
            &f.key("absent"),
            "x",
            UploadOptions::default().if_match(&etag2),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
    assert!(!s.exists(b, &f.key("absent")).await.unwrap());
    assert!(s.list_uploads(b, &f.prefix).await.unwrap().is_empty());
}

/// Writers racing to create one key: exactly one wins, the others fail as
/// `AlreadyExists`, and the key holds the winner's bytes.
pub async fn racing_create_only_writers_have_one_winner(f: Fixture) {
    if !f.storage.capabilities().conditional_writes {
        return;
    }
    let b = f.bucket.clone();
    let key = f.key("lock");
    let tries = futures::future::join_all((0..8).map(|i| {
        let (s, b, key) = (f.storage.clone(), b.clone(), key.clone());
        async move {
            let body = format!("owner {i}");
            let r = s
                .upload_bytes(
                    b.as_str(),
                    &key,
                    body.clone(),
                    UploadOptions::default().create_only(),
                )
                .await;
            (body, r)
        }
    }))
    .await;
    let mut winners = Vec::new();
    for (body, r) in tries {
        match r {
            Ok(_) => winners.push(body),
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(content(&f.storage, &b, &key).await, winners[0].as_bytes());
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Tags set on upload (one PUT and multipart) read back; they are replaced and
/// removed; copies and moves keep them (also by parts) unless the copy replaces
/// the metadata, which replaces them too; bad tags are refused before any I/O.
pub async fn tags_are_set_read_replaced_and_kept_by_copies(f: Fixture) {
    let b = f.bucket.as_str();
    if !f.storage.capabilities().tags {
        let e = f.storage.tags(b, &f.key("x")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        return;
    }
    let Some((s, _root)) = small_parts(&f).await else {
        return;
    };
    let set = tags(&[
        ("team", "data eng"),
        ("tier", "hot"),
        ("path", "a/b:c@d+e=f"),
    ]);
    let opts = || {
        UploadOptions::default()
            .tag("team", "data eng")
            .tag("tier", "hot")
            .tag("path", "a/b:c@d+e=f")
    };
    let (small, big) = (f.key("small"), f.key("big"));
    let data = payload(11 * MIB, 5);
    s.upload_bytes(b, &small, "s", opts()).await.unwrap();
    let r = s.upload_bytes(b, &big, data.clone(), opts()).await.unwrap();
    assert_eq!(r.multipart, s.capabilities().multipart);
    assert_eq!(s.tags(b, &small).await.unwrap(), set);
    assert_eq!(s.tags(b, &big).await.unwrap(), set);
    // Copies keep them: one CopyObject, and by parts.
    for (src, dst) in [(&small, "copy-small"), (&big, "copy-big")] {
        s.copy_object(b, src, b, &f.key(dst), CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(s.tags(b, &f.key(dst)).await.unwrap(), set, "{dst}");
    }
    // A move keeps them, also onto an existing key (a copy that replaces headers).
    s.upload_bytes(b, &f.key("moved"), "old", UploadOptions::default())
        .await
        .unwrap();
    s.move_object(
        b,
        &f.key("copy-small"),
        b,
        &f.key("moved"),
        CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(s.tags(b, &f.key("moved")).await.unwrap(), set);
    // Replacing the metadata replaces the tags, by parts too.
    for (src, dst) in [(&small, "re-small"), (&big, "re-big")] {
        let replace = UploadOptions::default().tag("new", "1");
        let o = CopyOptions {
            replace: Some(replace),
            ..Default::default()
        };
        s.copy_object(b, src, b, &f.key(dst), o).await.unwrap();
        assert_eq!(
            s.tags(b, &f.key(dst)).await.unwrap(),
            tags(&[("new", "1")]),
            "{dst}"
        );
    }
    // Replaced, removed.
    s.put_tags(b, &small, tags(&[("k", "v")])).await.unwrap();
    assert_eq!(s.tags(b, &small).await.unwrap(), tags(&[("k", "v")]));
    s.delete_tags(b, &small).await.unwrap();
    assert!(s.tags(b, &small).await.unwrap().is_empty());
    assert_eq!(
        content(&s, b, &small).await,
        b"s",
        "tags leave the bytes alone"
    );
    // Missing objects; bad tags refused before any request.
    let e = s.tags(b, &f.key("absent")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    let e = s
        .put_tags(b, &f.key("absent"), tags(&[("k", "v")]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
    let eleven: BTreeMap<_, _> = (0..11)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    for bad in [
        eleven,
        tags(&[("a&b", "x")]),
        tags(&[("aws:x", "y")]),
        tags(&[("", "y")]),
    ] {
        let e = s.put_tags(b, &small, bad.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        let e = s
            .upload_bytes(
                b,
                &f.key("bad"),
                "x",
                UploadOptions {
                    tags: bad.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    assert!(!s.exists(b, &f.key("bad")).await.unwrap());
}
