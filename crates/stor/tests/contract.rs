//! The backend contract: every case runs against memory, local, SeaweedFS and moto.
//! Run with real servers: `scripts/with-servers.sh cargo test -p stor --test contract`.

mod common;
#[path = "contract/post.rs"]
mod post;
#[path = "contract/versions.rs"]
mod versions;
#[path = "contract/writes.rs"]
mod writes;

contract!(
    upload_download_roundtrip_keeps_headers_and_metadata,
    empty_object,
    long_and_unicode_keys,
    keys_side_by_side_and_dot_segments,
    list_pages_at_exact_boundaries,
    list_with_delimiter_groups_common_prefixes,
    list_stream_covers_all_pages,
    missing_bucket_and_key_are_told_apart,
    delete_one_and_many_in_batches,
    copy_within_and_across_buckets,
    copy_onto_itself_is_refused,
    move_deletes_source_only_after_copy,
    move_of_missing_source_changes_nothing,
    download_file_is_atomic,
    upload_file_and_reader_multipart_roundtrip,
    cancelled_multipart_upload_is_aborted,
    presigned_urls_work_over_http,
    bad_input_is_refused_before_any_io,
    bucket_lifecycle,
    metrics_count_operations_and_bytes,
    if_match_pins_the_version_being_read,
    failed_multipart_upload_is_aborted,
    checksum_is_stored_and_verified,
    corrupted_object_fails_with_integrity_error_and_no_file,
    large_copy_uses_part_copies_and_keeps_headers,
    progress_counts_each_byte_once,
    object_replaced_during_parallel_download,
    cleanup_aborts_only_uploads_older_than_asked,
    native_checksums_are_checked_and_kept_by_the_server,
    objects_with_only_a_native_checksum_are_verified_against_it,
    batch_download_gets_what_is_there_when_the_listing_is_stale,
    a_source_changed_during_upload_leaves_the_previous_object,
    a_move_never_deletes_the_only_copy_whatever_the_engine_does_to_keys,
    an_upload_aborted_by_someone_else_says_so,
    keys_with_control_characters_list_and_read_back,
    completed_writes_are_announced_and_failed_ones_never,
    create_only_writes_never_replace_an_object,
    a_create_only_multipart_completion_is_refused_by_the_store,
    if_match_writes_only_over_the_version_read,
    racing_create_only_writers_have_one_winner,
    tags_are_set_read_replaced_and_kept_by_copies,
    versions_are_kept_listed_read_and_restored,
    missing_and_bad_versions_are_told,
    an_absent_version_is_never_the_current_object,
    a_purge_of_more_than_a_page_removes_every_version,
    versions_and_markers_of_one_second_keep_their_order,
    a_large_version_copies_by_parts_and_downloads_in_ranges,
    presigned_post_uploads_only_what_its_policy_allows,
);

mod cases {
    pub use crate::post::*;
    pub use crate::versions::*;
    pub use crate::writes::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use futures::{StreamExt, TryStreamExt};
    use stor::{
        CopyOptions, DownloadOptions, ErrorKind, ListOptions, PresignOptions, UploadOptions,
    };

    use aws_sdk_s3::operation::head_object::HeadObjectOutput;
    use stor::backend::s3::S3Backend;

    use crate::common::{
        http, http_with, payload, storage_and_backend, storage_with, unique, Fixture, Kind,
    };

    const MIB: usize = 1024 * 1024;

    /// A store like the fixture's with a 5 MiB threshold and part size, so multipart
    /// shows at test sizes; its bucket is the fixture's.
    async fn small_parts(
        f: &Fixture,
        concurrency: usize,
    ) -> Option<(stor::Storage, Option<tempfile::TempDir>)> {
        small_parts_and_backend(f, concurrency)
            .await
            .map(|(s, _, root)| (s, root))
    }

    /// [`small_parts`] with the store's backend.
    async fn small_parts_and_backend(
        f: &Fixture,
        concurrency: usize,
    ) -> Option<(
        stor::Storage,
        std::sync::Arc<dyn stor::backend::Backend>,
        Option<tempfile::TempDir>,
    )> {
        let (s, be, root) = storage_and_backend(f.kind, |c| {
            c.multipart_threshold = 5 * MIB as u64;
            c.part_size = Some(5 * MIB as u64);
            c.max_concurrency = concurrency;
        })
        .await?;
        if !f.kind.is_server() {
            s.create_bucket(&f.bucket).await.unwrap();
        }
        Some((s, be, root))
    }

    pub async fn upload_download_roundtrip_keeps_headers_and_metadata(f: Fixture) {
        let s = &f.storage;
        let key = f.key("doc.json");
        let body = br#"{"headline":"rates","lang":"ko"}"#.to_vec();
        let opts = UploadOptions::default()
            .metadata("source", "crawler")
            .metadata("title", "금리 뉴스 — ünïcödé")
            .cache_control("max-age=60")
            .content_disposition("attachment; filename=\"doc.json\"");
        let put = s
            .upload_bytes(f.bucket.as_str(), &key, body.clone(), opts)
            .await
            .unwrap();
        assert_eq!(put.bytes, body.len() as u64);
        assert!(put.etag.is_some());
        assert!(put.attempts >= 1);

        let info = s.info(f.bucket.as_str(), &key).await.unwrap();
        assert_eq!(info.size, body.len() as u64);
        assert_eq!(info.etag, put.etag);
        // Guessed from the key's extension.
        assert_eq!(info.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            info.metadata.get("source").map(String::as_str),
            Some("crawler")
        );
        assert_eq!(
            info.metadata.get("title").map(String::as_str),
            Some("금리 뉴스 — ünïcödé")
        );
        assert_eq!(info.cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(
            info.content_disposition.as_deref(),
            Some("attachment; filename=\"doc.json\"")
        );
        assert!(info.last_modified.is_some());
        // The user's metadata only: stor's checksum is a field of its own, in
        // `info` and in listings that carry metadata (the local store's).
        assert_eq!(info.metadata.len(), 2, "{:?}", info.metadata);
        assert!(info.checksum.is_some(), "{info:?}");
        let page = s
            .list(
                f.bucket.as_str(),
                ListOptions::default().prefix(key.clone()),
            )
            .await
            .unwrap();
        let listed = page.objects.iter().find(|o| o.key == key).unwrap();
        assert!(
            listed.metadata.keys().all(|k| !stor::is_reserved(k)),
            "{listed:?}"
        );
        assert!(listed.metadata.is_empty() || listed.checksum.is_some());

        let got = s.download_bytes(f.bucket.as_str(), &key).await.unwrap();
        assert_eq!(got.data.as_ref(), body.as_slice());
        assert_eq!(got.result.bytes, body.len() as u64);

        // A range, and a stream.
        let part = s
            .download_stream(
                f.bucket.as_str(),
                &key,
                DownloadOptions {
                    range: Some(stor::ByteRange { start: 2, end: 12 }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(part.content_length, 10);
        assert_eq!(part.collect().await.unwrap().as_ref(), &body[2..12]);

        // An explicit Content-Type wins over the guess.
        let key2 = f.key("report.pdf");
        s.upload_bytes(
            f.bucket.as_str(),
            &key2,
            "x",
            UploadOptions::default().content_type("text/plain"),
        )
        .await
        .unwrap();
        let info2 = s.info(f.bucket.as_str(), &key2).await.unwrap();
        assert_eq!(info2.content_type.as_deref(), Some("text/plain"));
    }

    pub async fn empty_object(f: Fixture) {
        let s = &f.storage;
        let key = f.key("empty");
        let put = s
            .upload_bytes(
                f.bucket.as_str(),
                &key,
                Vec::new(),
                UploadOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(put.bytes, 0);
        assert_eq!(s.info(f.bucket.as_str(), &key).await.unwrap().size, 0);
        let got = s.download_bytes(f.bucket.as_str(), &key).await.unwrap();
        assert!(got.data.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.bin");
        s.download_file(f.bucket.as_str(), &key, &path)
            .await
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // An empty file uploads as an empty object too.
        let src = dir.path().join("zero");
        std::fs::write(&src, b"").unwrap();
        let put = s
            .upload_file(
                f.bucket.as_str(),
                &f.key("zero"),
                &src,
                UploadOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(put.bytes, 0);
        assert!(!put.multipart);
    }

    pub async fn long_and_unicode_keys(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let mut keys = vec![
            f.key("with space and %percent% + plus & amp"),
            f.key("유니코드/キー/ключ/🚀.txt"),
            f.key("tilde~quote'paren(1)=eq;semi"),
        ];
        // 1024 bytes in all. SeaweedFS caps each path segment at 255 bytes, so there
        // the long key is cut into segments; elsewhere it is one 1000+ byte segment.
        let fill = 1024 - f.prefix.len();
        let long = if f.kind.keeps_keys_exactly() {
            format!("{}{}", f.prefix, "k".repeat(fill))
        } else {
            let mut k = f.prefix.clone();
            while k.len() < 1024 {
                let n = (1024 - k.len()).min(200);
                k.push_str(&"s".repeat(n - 1));
                k.push('/');
            }
            k.pop();
            k.push('z');
            k
        };
        assert_eq!(long.len(), 1024);
        keys.push(long);
        for (i, k) in keys.iter().enumerate() {
            let data = payload(100 + i, i as u64);
            s.upload_bytes(b, k, data.clone(), UploadOptions::default())
                .await
                .unwrap();
            assert_eq!(
                s.download_bytes(b, k).await.unwrap().data.as_ref(),
                data.as_slice(),
                "{k}"
            );
            assert_eq!(s.info(b, k).await.unwrap().key, *k);
        }
        let listed: Vec<String> = s
            .list_stream(b, ListOptions::default().prefix(f.prefix.clone()))
            .map_ok(|o| o.key)
            .try_collect()
            .await
            .unwrap();
        let mut want = keys.clone();
        want.sort();
        assert_eq!(listed, want);
        // 1025 bytes is refused before any I/O.
        let too_long = format!("{}{}", f.prefix, "k".repeat(fill + 1));
        let err = s
            .upload_bytes(b, &too_long, "x", UploadOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    pub async fn keys_side_by_side_and_dot_segments(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        // "a" and "a/b" coexist: the store is not a filesystem.
        s.upload_bytes(b, &f.key("a"), "file a", UploadOptions::default())
            .await
            .unwrap();
        s.upload_bytes(b, &f.key("a/b"), "file a/b", UploadOptions::default())
            .await
            .unwrap();
        assert_eq!(
            s.download_bytes(b, &f.key("a"))
                .await
                .unwrap()
                .data
                .as_ref(),
            b"file a"
        );
        assert_eq!(
            s.download_bytes(b, &f.key("a/b"))
                .await
                .unwrap()
                .data
                .as_ref(),
            b"file a/b"
        );
        if f.kind.keeps_keys_exactly() {
            // ".." and "//" are ordinary key bytes, unless the store's own rules
            // refuse them before any I/O (Azure drops dot segments from names).
            let rules = s.capabilities().names;
            let mut kept = Vec::new();
            for k in ["x/../y", "x//y", "..", "./z"] {
                let key = f.key(k);
                if let Err(want) = rules.key(&key) {
                    let e = s
                        .upload_bytes(b, &key, k, UploadOptions::default())
                        .await
                        .unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{k}: {e}");
                    assert!(e.message().contains(want.message()), "{e}");
                    continue;
                }
                kept.push(key.clone());
                s.upload_bytes(b, &key, k, UploadOptions::default())
                    .await
                    .unwrap();
                assert_eq!(
                    s.download_bytes(b, &key).await.unwrap().data.as_ref(),
                    k.as_bytes()
                );
            }
            let listed: Vec<String> = s
                .list_stream(b, ListOptions::default().prefix(f.key("x")))
                .map_ok(|o| o.key)
                .try_collect()
                .await
                .unwrap();
            // Byte order: '.' (0x2E) sorts before '/' (0x2F).
            kept.retain(|k| k.starts_with(&f.key("x")));
            assert_eq!(listed, kept);
        }
    }

    pub async fn list_pages_at_exact_boundaries(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let keys: Vec<String> = (0..6).map(|i| f.key(&format!("k{i}"))).collect();
        for k in &keys {
            s.upload_bytes(b, k, k.clone(), UploadOptions::default())
                .await
                .unwrap();
        }
        // Exactly one full page: no continuation.
        let page = s
            .list(
                b,
                ListOptions::default().prefix(f.prefix.clone()).max_keys(6),
            )
            .await
            .unwrap();
        assert_eq!(page.objects.len(), 6);
        assert!(
            !page.is_truncated(),
            "a full last page must not promise more"
        );
        // Pages of 3: exactly two, the second the last.
        let p1 = s
            .list(
                b,
                ListOptions::default().prefix(f.prefix.clone()).max_keys(3),
            )
            .await
            .unwrap();
        assert_eq!(p1.objects.len(), 3);
        let tok = p1.next_continuation_token.clone().expect("more pages");
        let p2 = s
            .list(
                b,
                ListOptions::default()
                    .prefix(f.prefix.clone())
                    .max_keys(3)
                    .continuation_token(tok),
            )
            .await
            .unwrap();
        let got: Vec<String> = p1
            .objects
            .iter()
            .chain(&p2.objects)
            .map(|o| o.key.clone())
            .collect();
        assert_eq!(got, keys);
        assert!(!p2.is_truncated());
        // Pages of 4: 4 then 2.
        let p1 = s
            .list(
                b,
                ListOptions::default().prefix(f.prefix.clone()).max_keys(4),
            )
            .await
            .unwrap();
        assert_eq!(p1.objects.len(), 4);
        let p2 = s
            .list(
                b,
                ListOptions::default()
                    .prefix(f.prefix.clone())
                    .max_keys(4)
                    .continuation_token(p1.next_continuation_token.unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(p2.objects.len(), 2);
        assert!(p2.next_continuation_token.is_none());
        // Listings report size and ETag.
        assert_eq!(p2.objects[1].size, keys[5].len() as u64);
        assert!(p2.objects[1].etag.is_some());
        // max_keys above 1000 is refused with a pointer to list_stream.
        let err = s
            .list(b, ListOptions::default().max_keys(1001))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    pub async fn list_with_delimiter_groups_common_prefixes(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        for k in ["a.txt", "dir1/x", "dir1/y", "dir2/sub/z", "e.txt"] {
            s.upload_bytes(b, &f.key(k), "v", UploadOptions::default())
                .await
                .unwrap();
        }
        let page = s
            .list(
                b,
                ListOptions::default()
                    .prefix(f.prefix.clone())
                    .delimiter("/"),
            )
            .await
            .unwrap();
        let objs: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objs, [f.key("a.txt"), f.key("e.txt")]);
        assert_eq!(page.common_prefixes, [f.key("dir1/"), f.key("dir2/")]);
        let sub = s
            .list(
                b,
                ListOptions::default().prefix(f.key("dir2/")).delimiter("/"),
            )
            .await
            .unwrap();
        assert!(sub.objects.is_empty());
        assert_eq!(sub.common_prefixes, [f.key("dir2/sub/")]);
    }

    pub async fn list_stream_covers_all_pages(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let mut keys: Vec<String> = (0..25).map(|i| f.key(&format!("{i:02}"))).collect();
        futures::future::try_join_all(
            keys.iter()
                .map(|k| s.upload_bytes(b, k, "v", UploadOptions::default())),
        )
        .await
        .unwrap();
        keys.sort();
        let listed: Vec<String> = s
            .list_stream(
                b,
                ListOptions::default().prefix(f.prefix.clone()).max_keys(7),
            )
            .map_ok(|o| o.key)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed, keys);
    }

    pub async fn missing_bucket_and_key_are_told_apart(f: Fixture) {
        let s = &f.storage;
        let nob = unique("stor-nobucket");
        let key = f.key("nothing-here");
        let e = s.info(f.bucket.as_str(), &key).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
        assert!(e.is_not_found());
        assert!(!e.is_retryable());
        assert_eq!(e.attempts(), 1, "not-found is never retried: {e}");
        let e = s.download_bytes(f.bucket.as_str(), &key).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
        assert!(e.to_string().contains(&key), "the error names the key: {e}");
        let e = s.info(nob.as_str(), "k").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
        let e = s.download_bytes(nob.as_str(), "k").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
        let e = s
            .list(nob.as_str(), ListOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
        let e = s
            .upload_bytes(nob.as_str(), "k", "x", UploadOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
        assert_eq!(e.attempts(), 1);
    }

    pub async fn delete_one_and_many_in_batches(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let k = f.key("one");
        s.upload_bytes(b, &k, "1", UploadOptions::default())
            .await
            .unwrap();
        s.delete(b, &k).await.unwrap();
        assert!(!s.exists(b, &k).await.unwrap());
        // Deleting what is not there succeeds, as in S3.
        s.delete(b, &k).await.unwrap();

        // 1003 keys: two batches (1000 + 3).
        let keys: Vec<String> = (0..1003).map(|i| f.key(&format!("m/{i:04}"))).collect();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        futures::future::try_join_all(keys.iter().map(|k| {
            let sem = sem.clone();
            async move {
                let _p = sem.acquire().await.unwrap();
                s.upload_bytes(b, k, "x", UploadOptions::default()).await
            }
        }))
        .await
        .unwrap();
        let mut to_delete = keys.clone();
        to_delete.push(f.key("m/never-existed"));
        let results = s.delete_many(b, &to_delete).await.unwrap();
        assert_eq!(results.len(), 1004);
        assert!(
            results.iter().all(|r| r.is_deleted()),
            "{:?}",
            results.iter().find(|r| !r.is_deleted())
        );
        let left: Vec<_> = s
            .list_stream(b, ListOptions::default().prefix(f.key("m/")))
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        assert!(left.is_empty(), "{} objects survived", left.len());
    }

    pub async fn copy_within_and_across_buckets(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let src = f.key("src.json");
        let data = payload(3000, 7);
        s.upload_bytes(
            b,
            &src,
            data.clone(),
            UploadOptions::default().metadata("m", "v"),
        )
        .await
        .unwrap();
        let dst = f.key("copies/dst.json");
        let r = s
            .copy_object(b, &src, b, &dst, CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(r.bytes, 3000);
        assert_eq!(
            s.download_bytes(b, &dst).await.unwrap().data.as_ref(),
            data.as_slice()
        );
        let info = s.info(b, &dst).await.unwrap();
        assert_eq!(info.metadata.get("m").map(String::as_str), Some("v"));
        assert_eq!(info.content_type.as_deref(), Some("application/json"));

        // Replace metadata on copy.
        let dst2 = f.key("copies/replaced");
        let opts = CopyOptions {
            replace: Some(
                UploadOptions::default()
                    .content_type("text/plain")
                    .metadata("n", "w"),
            ),
            ..Default::default()
        };
        s.copy_object(b, &src, b, &dst2, opts).await.unwrap();
        let info = s.info(b, &dst2).await.unwrap();
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        assert_eq!(info.metadata.get("n").map(String::as_str), Some("w"));
        assert!(!info.metadata.contains_key("m"));

        // Across buckets.
        let other = unique("stor-other");
        s.create_bucket(&other).await.unwrap();
        s.copy_object(b, &src, other.as_str(), "x/y", CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(
            s.download_bytes(other.as_str(), "x/y")
                .await
                .unwrap()
                .data
                .as_ref(),
            data.as_slice()
        );
        s.delete(other.as_str(), "x/y").await.unwrap();
        s.delete_bucket(&other).await.unwrap();
        // The source is untouched.
        assert!(s.exists(b, &src).await.unwrap());
    }

    pub async fn copy_onto_itself_is_refused(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let k = f.key("self");
        s.upload_bytes(b, &k, "same", UploadOptions::default())
            .await
            .unwrap();
        let e = s
            .copy_object(b, &k, b, &k, CopyOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("onto itself"), "{e}");
        let e = s
            .move_object(b, &k, b, &k, CopyOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            s.download_bytes(b, &k).await.unwrap().data.as_ref(),
            b"same"
        );
        // With replaced metadata, copying onto itself is how S3 edits metadata.
        let opts = CopyOptions {
            replace: Some(UploadOptions::default().metadata("edited", "yes")),
            ..Default::default()
        };
        s.copy_object(b, &k, b, &k, opts).await.unwrap();
        let info = s.info(b, &k).await.unwrap();
        assert_eq!(info.metadata.get("edited").map(String::as_str), Some("yes"));
        assert_eq!(
            s.download_bytes(b, &k).await.unwrap().data.as_ref(),
            b"same"
        );
    }

    pub async fn move_deletes_source_only_after_copy(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let (src, dst) = (f.key("mv/src"), f.key("mv/dst"));
        s.upload_bytes(b, &src, "moving", UploadOptions::default())
            .await
            .unwrap();
        let r = s
            .move_object(b, &src, b, &dst, CopyOptions::default())
            .await
            .unwrap();
        assert_eq!(r.bytes, 6);
        assert!(!s.exists(b, &src).await.unwrap());
        assert_eq!(
            s.download_bytes(b, &dst).await.unwrap().data.as_ref(),
            b"moving"
        );
        // Move into a bucket that does not exist: the copy fails, the source stays.
        let e = s
            .move_object(
                b,
                &dst,
                unique("stor-nobucket").as_str(),
                "x",
                CopyOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
        assert!(
            s.exists(b, &dst).await.unwrap(),
            "a failed move must keep its source"
        );
    }

    pub async fn move_of_missing_source_changes_nothing(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let e = s
            .move_object(
                b,
                &f.key("ghost"),
                b,
                &f.key("target"),
                CopyOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
        assert!(!s.exists(b, &f.key("target")).await.unwrap());
    }

    pub async fn download_file_is_atomic(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        // A failed download leaves neither the target nor a temp file.
        let e = s
            .download_file(b, &f.key("missing"), &path)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left behind"
        );
        // A failed download does not touch an existing file.
        std::fs::write(&path, b"precious").unwrap();
        s.download_file(b, &f.key("missing"), &path)
            .await
            .unwrap_err();
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        // A successful one replaces it whole.
        let data = payload(100_000, 3);
        s.upload_bytes(b, &f.key("obj"), data.clone(), UploadOptions::default())
            .await
            .unwrap();
        let r = s.download_file(b, &f.key("obj"), &path).await.unwrap();
        assert_eq!(r.bytes, 100_000);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // With the permissions any new file gets (0666 less the umask), not the
        // temp file's private 0600.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
        let reference = tempfile::tempdir().unwrap().keep().join("reference");
        std::fs::write(&reference, b"x").unwrap();
        std::fs::remove_file(&path).unwrap();
        s.download_file(b, &f.key("obj"), &path).await.unwrap();
        assert_eq!(mode(&path), mode(&reference), "a fresh download's mode");
        std::fs::remove_dir_all(reference.parent().unwrap()).unwrap();
        // A directory as target is a clear error.
        let e = s
            .download_file(b, &f.key("obj"), dir.path())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // A missing parent directory is an I/O error naming it, and nothing is created.
        let e = s
            .download_file(b, &f.key("obj"), dir.path().join("no/such/dir/x"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert_eq!(e.attempts(), 0, "local disk errors are not retried");
    }

    pub async fn upload_file_and_reader_multipart_roundtrip(f: Fixture) {
        let Some((s, _root)) = small_parts(&f, 3).await else {
            return;
        };
        let b = f.bucket.as_str();
        let dir = tempfile::tempdir().unwrap();
        // 11 MiB + 1 byte: parts of 5, 5, 1 MiB and a 1-byte tail would be 4 parts
        // at 5 MiB... here 3 parts, the last 1 MiB + 1 byte.
        let data = payload(11 * MIB + 1, 11);
        let src = dir.path().join("big.bin");
        std::fs::write(&src, &data).unwrap();
        let r = s
            .upload_file(b, &f.key("big.bin"), &src, UploadOptions::default())
            .await
            .unwrap();
        assert_eq!(r.bytes, data.len() as u64);
        // The capability value decides: parts wherever the store has them.
        let caps = s.capabilities();
        assert_eq!(r.multipart, caps.multipart);
        // S3's ETag of a multipart object counts its parts; a GCS generation or
        // an Azure ETag does not.
        if caps.multipart && !matches!(f.kind, Kind::Gcs | Kind::Azurite) {
            assert!(
                r.etag.as_deref().unwrap().ends_with("-3"),
                "3 parts: {:?}",
                r.etag
            );
        }
        let out = dir.path().join("back.bin");
        let d = s.download_file(b, &f.key("big.bin"), &out).await.unwrap();
        assert_eq!(d.bytes, data.len() as u64);
        assert!(
            std::fs::read(&out).unwrap() == data,
            "downloaded bytes differ"
        );

        // Exactly at the threshold: one PUT. One byte over: multipart.
        let at = payload(5 * MIB, 12);
        let r = s
            .upload_bytes(b, &f.key("at"), at.clone(), UploadOptions::default())
            .await
            .unwrap();
        assert!(!r.multipart);
        let over = payload(5 * MIB + 1, 13);
        let r = s
            .upload_bytes(b, &f.key("over"), over.clone(), UploadOptions::default())
            .await
            .unwrap();
        assert_eq!(r.multipart, s.capabilities().multipart);
        assert!(
            s.download_bytes(b, &f.key("over"))
                .await
                .unwrap()
                .data
                .as_ref()
                == over.as_slice()
        );

        // A reader of unknown length, multipart past the threshold.
        let stream_data = payload(12 * MIB + 7, 14);
        let reader = std::io::Cursor::new(stream_data.clone());
        let r = s
            .upload_reader(
                b,
                &f.key("stream.bin"),
                reader,
                UploadOptions::default().metadata("k", "v"),
            )
            .await
            .unwrap();
        assert_eq!(r.bytes, stream_data.len() as u64);
        assert_eq!(r.multipart, s.capabilities().multipart);
        let got = s.download_bytes(b, &f.key("stream.bin")).await.unwrap();
        assert!(
            got.data.as_ref() == stream_data.as_slice(),
            "streamed upload differs"
        );
        assert_eq!(got.info.metadata.get("k").map(String::as_str), Some("v"));
        // A short reader is one PUT.
        let r = s
            .upload_reader(
                b,
                &f.key("small-stream"),
                std::io::Cursor::new(b"tiny".to_vec()),
                UploadOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!((r.bytes, r.multipart), (4, false));
        // Nothing left half-way.
        let pending = s
            .abort_stale_uploads(b, &f.prefix, Duration::ZERO)
            .await
            .unwrap();
        assert!(
            pending.is_empty(),
            "leftover multipart uploads: {pending:?}"
        );
    }

    /// A source that yields `left` bytes, then stalls forever or fails.
    struct Source {
        left: usize,
        fail: bool,
    }
    impl tokio::io::AsyncRead for Source {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.left == 0 {
                return match self.fail {
                    true => std::task::Poll::Ready(Err(std::io::Error::other("source broke"))),
                    false => std::task::Poll::Pending,
                };
            }
            let n = self.left.min(buf.remaining()).min(64 * 1024);
            buf.put_slice(&vec![7u8; n]);
            self.left -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    pub async fn cancelled_multipart_upload_is_aborted(f: Fixture) {
        if !f.storage.capabilities().multipart {
            return; // the local store writes whole objects; nothing to abort
        }
        let Some((s, _root)) = small_parts(&f, 10).await else {
            return;
        };
        let b = f.bucket.as_str();
        let key = f.key("cancelled");
        // 16 MiB arrive (the threshold is passed, parts go up), then the source stalls.
        let upload = s.upload_reader(
            b,
            &key,
            Source {
                left: 16 * MIB,
                fail: false,
            },
            UploadOptions::default(),
        );
        assert!(tokio::time::timeout(Duration::from_secs(3), upload)
            .await
            .is_err());
        // Dropping the future aborted the upload: none remains, no object appeared.
        // The abort runs in a task spawned on drop: give it a moment.
        for _ in 0..50 {
            if s.list_uploads(b, &key).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pending = s.list_uploads(b, &key).await.unwrap();
        assert!(pending.is_empty(), "cancellation left {pending:?}");
        assert!(!s.exists(b, &key).await.unwrap());
    }

    pub async fn presigned_urls_work_over_http(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let key = f.key("shared report.txt");
        if !s.capabilities().presign {
            let e = s
                .presign(b, &key, PresignOptions::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            return;
        }
        // A browser uploads with a presigned PUT that pins the Content-Type (Azure
        // also wants to be told the upload makes a block blob)...
        let put_url = s
            .presign(
                b,
                &key,
                PresignOptions::put(Duration::from_secs(600)).content_type("text/plain"),
            )
            .await
            .unwrap();
        let mut headers = vec![("Content-Type", "text/plain")];
        if f.kind == Kind::Azurite {
            headers.push(("x-ms-blob-type", "BlockBlob"));
        }
        if f.kind == Kind::Gcs {
            // fake-gcs-server has no XML API PUT to take a signed URL's upload;
            // the PUT URL's form is checked by Google's V4 vectors ("Simple PUT").
            assert!(put_url.contains("X-Goog-SignedHeaders=content-type%3Bhost"));
            s.upload_bytes(b, &key, "from the browser", UploadOptions::default())
                .await
                .unwrap();
        } else {
            let (status, text) = http_with("PUT", &put_url, &headers, b"from the browser").await;
            assert!(matches!(status, 200 | 201), "{status} {text}");
        }
        assert_eq!(
            s.download_bytes(b, &key).await.unwrap().data.as_ref(),
            b"from the browser"
        );
        // ...and downloads with a presigned GET (default expiry 1 h).
        let get_url = s.presign(b, &key, PresignOptions::default()).await.unwrap();
        let (expiry, tampered) = match f.kind {
            Kind::Gcs => ("X-Goog-Expires=3600", "X-Goog-Expires=3601"),
            Kind::Azurite => ("sp=r&", "sp=rw&"),
            _ => ("X-Amz-Expires=3600", "X-Amz-Expires=3601"),
        };
        assert!(get_url.contains(expiry), "{get_url}");
        assert_eq!(
            http("GET", &get_url, None, b"").await,
            (200, "from the browser".into())
        );
        if f.kind.checks_signatures() {
            // A tampered URL is refused, and a GET URL cannot PUT.
            let bad = get_url.replace(expiry, tampered);
            assert_eq!(
                http("GET", &bad, None, b"").await.0,
                403,
                "tampered URL accepted"
            );
            assert_eq!(
                http_with("PUT", &get_url, &headers, b"evil").await.0,
                403,
                "GET URL could PUT"
            );
            assert_eq!(
                s.download_bytes(b, &key).await.unwrap().data.as_ref(),
                b"from the browser"
            );
        }
        // Expiry bounds are checked before signing.
        for secs in [0, 604_801] {
            let e = s
                .presign(b, &key, PresignOptions::get(Duration::from_secs(secs)))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{secs}");
        }
        assert!(s
            .presign(b, &key, PresignOptions::get(Duration::from_secs(604_800)))
            .await
            .is_ok());
    }

    pub async fn bad_input_is_refused_before_any_io(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let cases: Vec<(&str, stor::Error)> = vec![
            (
                "bucket",
                s.upload_bytes("Bad_Bucket", "k", "x", UploadOptions::default())
                    .await
                    .unwrap_err(),
            ),
            (
                "empty key",
                s.upload_bytes(b, "", "x", UploadOptions::default())
                    .await
                    .unwrap_err(),
            ),
            ("long key", s.info(b, &"k".repeat(1025)).await.unwrap_err()),
            (
                "meta crlf",
                s.upload_bytes(
                    b,
                    &f.key("m"),
                    "x",
                    UploadOptions::default().metadata("a", "b\r\nX-Evil: 1"),
                )
                .await
                .unwrap_err(),
            ),
            (
                "meta big",
                s.upload_bytes(
                    b,
                    &f.key("m"),
                    "x",
                    UploadOptions::default().metadata("big", "v".repeat(2100)),
                )
                .await
                .unwrap_err(),
            ),
            (
                "ctype",
                s.upload_bytes(
                    b,
                    &f.key("m"),
                    "x",
                    UploadOptions::default().content_type("text/plain\nX: y"),
                )
                .await
                .unwrap_err(),
            ),
            (
                "meta name",
                s.upload_bytes(
                    b,
                    &f.key("m"),
                    "x",
                    UploadOptions::default().metadata("bad name", "v"),
                )
                .await
                .unwrap_err(),
            ),
        ];
        for (what, e) in cases {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
            assert_eq!(e.attempts(), 0, "{what}: no request was made");
        }
        assert!(
            !s.exists(b, &f.key("m")).await.unwrap(),
            "nothing was written"
        );
        let mut meta = BTreeMap::new();
        meta.insert("ok".to_string(), "fine".to_string());
        s.upload_bytes(
            b,
            &f.key("m"),
            "x",
            UploadOptions::default().metadata_map(meta),
        )
        .await
        .unwrap();
        // No default bucket configured.
        let e = s.info(None, "k").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("default_bucket"), "{e}");
    }

    pub async fn bucket_lifecycle(f: Fixture) {
        let s = &f.storage;
        let name = unique("stor-lifecycle");
        assert!(!s.bucket_exists(&name).await.unwrap());
        s.create_bucket(&name).await.unwrap();
        assert!(s.bucket_exists(&name).await.unwrap());
        assert!(s.list_buckets().await.unwrap().contains(&name));
        match s.create_bucket(&name).await {
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
            // AWS (and moto) answer 200 to re-creating your own bucket in us-east-1.
            Ok(()) => assert!(
                f.kind.is_s3(),
                "embedded stores must refuse a second create"
            ),
        }
        s.upload_bytes(name.as_str(), "k", "v", UploadOptions::default())
            .await
            .unwrap();
        match s.delete_bucket(&name).await {
            Err(e) => assert_eq!(e.kind(), ErrorKind::BucketNotEmpty, "{e}"),
            // SeaweedFS deletes a bucket with its objects; S3 and the others refuse.
            Ok(()) => {
                assert_eq!(
                    f.kind,
                    Kind::SeaweedFs,
                    "only SeaweedFS deletes non-empty buckets"
                );
                s.create_bucket(&name).await.unwrap();
            }
        }
        s.delete(name.as_str(), "k").await.unwrap();
        s.delete_bucket(&name).await.unwrap();
        assert!(!s.bucket_exists(&name).await.unwrap());
        let e = s.delete_bucket(&name).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BucketNotFound, "{e}");
        // The health check sees a working store.
        let h = s.health().await;
        assert!(h.healthy, "{h:?}");
    }

    pub async fn if_match_pins_the_version_being_read(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let key = f.key("versioned");
        let v1 = s
            .upload_bytes(b, &key, "version one", UploadOptions::default())
            .await
            .unwrap();
        let pinned = DownloadOptions {
            if_match: v1.etag.clone(),
            ..Default::default()
        };
        let got = s.download_stream(b, &key, pinned.clone()).await.unwrap();
        assert_eq!(got.collect().await.unwrap().as_ref(), b"version one");
        // The object is replaced: a read pinned to the old version is refused.
        s.upload_bytes(b, &key, "version two!", UploadOptions::default())
            .await
            .unwrap();
        let e = s.download_stream(b, &key, pinned).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
        assert_eq!(e.attempts(), 1, "a changed object is not retried");
    }

    pub async fn failed_multipart_upload_is_aborted(f: Fixture) {
        let Some((s, _root)) = small_parts(&f, 10).await else {
            return;
        };
        let b = f.bucket.as_str();
        let key = f.key("half-way");
        // Two parts' worth arrive, then the source fails: the upload must not complete
        // and, on S3, must be aborted before the call returns.
        let e = s
            .upload_reader(
                b,
                &key,
                Source {
                    left: 12 * MIB,
                    fail: true,
                },
                UploadOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(
            !s.exists(b, &key).await.unwrap(),
            "no object from a failed upload"
        );
        let pending = s.list_uploads(b, &key).await.unwrap();
        assert!(
            pending.is_empty(),
            "the failed upload was left behind: {pending:?}"
        );
    }

    pub async fn metrics_count_operations_and_bytes(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let before = s.metrics();
        s.upload_bytes(b, &f.key("m1"), vec![1u8; 1000], UploadOptions::default())
            .await
            .unwrap();
        s.download_bytes(b, &f.key("m1")).await.unwrap();
        s.info(b, &f.key("missing")).await.unwrap_err();
        let after = s.metrics();
        assert_eq!(after.operations - before.operations, 3);
        assert_eq!(after.successes - before.successes, 2);
        assert_eq!(after.failures - before.failures, 1);
        assert_eq!(after.bytes_uploaded - before.bytes_uploaded, 1000);
        assert_eq!(after.bytes_downloaded - before.bytes_downloaded, 1000);
        assert_eq!(after.operations, after.successes + after.failures);
        assert!(after.last_operation.is_some());
    }

    fn crc(data: &[u8]) -> String {
        stor::ChecksumAlgorithm::Crc64nvme
            .of(data)
            .unwrap()
            .encoded()
    }

    fn leftovers(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    pub async fn checksum_is_stored_and_verified(f: Fixture) {
        let Some((s, _root)) = small_parts(&f, 3).await else {
            return;
        };
        let b = f.bucket.as_str();
        let dir = tempfile::tempdir().unwrap();
        // One PUT from bytes, multipart from a file: both store the full-object CRC.
        let small = payload(1000, 1);
        let big = payload(11 * MIB + 3, 2);
        let path = dir.path().join("big.bin");
        std::fs::write(&path, &big).unwrap();
        let r1 = s
            .upload_bytes(b, &f.key("small"), small.clone(), UploadOptions::default())
            .await
            .unwrap();
        let r2 = s
            .upload_file(b, &f.key("big"), &path, UploadOptions::default())
            .await
            .unwrap();
        for (key, data, r) in [("small", &small, &r1), ("big", &big, &r2)] {
            let want = format!("crc64nvme:{}", crc(data));
            assert_eq!(r.checksum.as_deref(), Some(want.as_str()), "{key}");
            let info = s.info(b, &f.key(key)).await.unwrap();
            // Kept apart from the user's metadata, which other tools iterate.
            assert_eq!(
                info.checksum,
                Some((stor::ChecksumAlgorithm::Crc64nvme, crc(data))),
                "{key}: {:?}",
                info
            );
            assert!(
                !info.metadata.keys().any(|k| k.starts_with("stor-")),
                "{info:?}"
            );
            // Every way down verifies it.
            let out = dir.path().join(format!("{key}.out"));
            let d = s.download_file(b, &f.key(key), &out).await.unwrap();
            assert_eq!(d.checksum.as_deref(), Some(want.as_str()));
            assert!(std::fs::read(&out).unwrap() == *data);
            let m = s.download_bytes(b, &f.key(key)).await.unwrap();
            assert_eq!(m.result.checksum.as_deref(), Some(want.as_str()));
            let st = s
                .download_stream(b, &f.key(key), DownloadOptions::default())
                .await
                .unwrap();
            assert!(st.collect().await.unwrap().as_ref() == data.as_slice());
        }
        // CRC32C when configured.
        let (s32, _r) = crate::common::storage_with(f.kind, |c| {
            c.checksum = stor::ChecksumAlgorithm::Crc32c;
        })
        .await
        .unwrap();
        if !f.kind.is_server() {
            s32.create_bucket(b).await.unwrap();
        }
        s32.upload_bytes(b, &f.key("c"), small.clone(), UploadOptions::default())
            .await
            .unwrap();
        let info = s32.info(b, &f.key("c")).await.unwrap();
        let want = stor::ChecksumAlgorithm::Crc32c
            .of(&small)
            .unwrap()
            .encoded();
        assert_eq!(
            info.checksum,
            Some((stor::ChecksumAlgorithm::Crc32c, want.clone()))
        );
        assert!(info.metadata.is_empty(), "{:?}", info.metadata);
        let d = s32.download_bytes(b, &f.key("c")).await.unwrap();
        assert_eq!(d.result.checksum, Some(format!("crc32c:{want}")));
    }

    pub async fn corrupted_object_fails_with_integrity_error_and_no_file(f: Fixture) {
        let Some((s, be, _root)) = small_parts_and_backend(&f, 3).await else {
            return;
        };
        let b = f.bucket.as_str();
        // The stored bytes differ in one byte from those the checksum was taken of:
        // what a bit flip at rest or in transit looks like to the reader. Stored
        // through the backend, below the layer that computes checksums.
        for len in [4096, 12 * MIB] {
            let good = payload(len, 3);
            let mut bad = good.clone();
            bad[len / 2] ^= 0x01;
            let key = f.key(&format!("flipped-{len}"));
            let mut meta = BTreeMap::new();
            meta.insert("stor-crc64nvme".to_owned(), crc(&good));
            let opts = UploadOptions::default().metadata_map(meta);
            be.put_object(b, &key, stor::backend::Body::Bytes(bad.into()), &opts)
                .await
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out.bin");
            let e = s.download_file(b, &key, &out).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
            assert!(e.to_string().contains("checksum"), "{e}");
            assert!(!out.exists(), "no destination file");
            assert!(
                leftovers(dir.path()).is_empty(),
                "{:?}",
                leftovers(dir.path())
            );
            let e = s.download_bytes(b, &key).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
            let st = s
                .download_stream(b, &key, DownloadOptions::default())
                .await
                .unwrap();
            let e = st.collect().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
            // Never retried: the stored object is what it is.
            assert_eq!(s.metrics().retries, 0);
        }
    }

    pub async fn large_copy_uses_part_copies_and_keeps_headers(f: Fixture) {
        let Some((s, _root)) = small_parts(&f, 3).await else {
            return;
        };
        let b = f.bucket.as_str();
        let data = payload(12 * MIB + 5, 4);
        let opts = UploadOptions::default()
            .content_type("video/mp4")
            .metadata("origin", "camera-7")
            .cache_control("max-age=600");
        s.upload_bytes(b, &f.key("src.mp4"), data.clone(), opts)
            .await
            .unwrap();
        let r = s
            .copy_object(
                b,
                &f.key("src.mp4"),
                b,
                &f.key("dst.mp4"),
                CopyOptions::default(),
            )
            .await
            .unwrap();
        // Over the threshold where the store copies parts: three UploadPartCopy
        // parts of 5, 5 and 2 MiB.
        assert_eq!(r.multipart, s.capabilities().part_copy);
        assert_eq!(r.bytes, data.len() as u64);
        if s.capabilities().part_copy {
            assert!(r.etag.as_deref().unwrap().ends_with("-3"), "{:?}", r.etag);
        }
        let info = s.info(b, &f.key("dst.mp4")).await.unwrap();
        assert_eq!(info.content_type.as_deref(), Some("video/mp4"));
        assert_eq!(info.cache_control.as_deref(), Some("max-age=600"));
        assert_eq!(
            info.metadata.get("origin").map(String::as_str),
            Some("camera-7")
        );
        assert_eq!(
            info.checksum,
            Some((stor::ChecksumAlgorithm::Crc64nvme, crc(&data)))
        );
        let got = s.download_bytes(b, &f.key("dst.mp4")).await.unwrap();
        assert!(got.data.as_ref() == data.as_slice());
        assert!(got.result.checksum.is_some(), "verified after the copy");
        // Replacing the metadata keeps the checksum (the bytes are the same).
        let replace = UploadOptions::default().metadata("origin", "edited");
        s.copy_object(
            b,
            &f.key("dst.mp4"),
            b,
            &f.key("dst2.mp4"),
            CopyOptions {
                replace: Some(replace),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let info = s.info(b, &f.key("dst2.mp4")).await.unwrap();
        assert_eq!(
            info.metadata.get("origin").map(String::as_str),
            Some("edited")
        );
        assert_eq!(
            info.checksum,
            Some((stor::ChecksumAlgorithm::Crc64nvme, crc(&data)))
        );
        // A missing source writes nothing.
        let e = s
            .copy_object(b, &f.key("nope"), b, &f.key("dst3"), CopyOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::KeyNotFound, "{e}");
        assert!(!s.exists(b, &f.key("dst3")).await.unwrap());
        if s.capabilities().multipart {
            let pending = s
                .abort_stale_uploads(b, &f.prefix, Duration::ZERO)
                .await
                .unwrap();
            assert!(pending.is_empty(), "no upload left behind: {pending:?}");
        }
    }

    pub async fn progress_counts_each_byte_once(f: Fixture) {
        use std::sync::{Arc, Mutex};
        let Some((s, _root)) = small_parts(&f, 3).await else {
            return;
        };
        let b = f.bucket.as_str();
        let data = payload(12 * MIB + 1, 5);
        let seen = Arc::new(Mutex::new(Vec::<(u64, Option<u64>)>::new()));
        let rec = seen.clone();
        let progress = stor::Progress::new(move |d, t| rec.lock().unwrap().push((d, t)));
        let total = Some(data.len() as u64);
        let check = |what: &str| {
            let v = std::mem::take(&mut *seen.lock().unwrap());
            assert!(!v.is_empty(), "{what}: no progress");
            assert!(v.windows(2).all(|w| w[0].0 <= w[1].0), "{what}: went back");
            assert_eq!(*v.last().unwrap(), (data.len() as u64, total), "{what}");
            assert!(v.iter().all(|(_, t)| *t == total), "{what}: total");
        };
        s.upload_bytes(
            b,
            &f.key("p"),
            data.clone(),
            UploadOptions::default().progress(progress.clone()),
        )
        .await
        .unwrap();
        check("upload");
        let dir = tempfile::tempdir().unwrap();
        let opts = DownloadOptions {
            progress: Some(progress.clone()),
            ..Default::default()
        };
        s.download_file_with(b, &f.key("p"), dir.path().join("p"), opts.clone())
            .await
            .unwrap();
        check("download");
        let st = s.download_stream(b, &f.key("p"), opts).await.unwrap();
        st.collect().await.unwrap();
        check("stream");
    }

    pub async fn object_replaced_during_parallel_download(f: Fixture) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // One range at a time, so the replacement lands between ranges.
        let Some((s, _root)) = small_parts(&f, 1).await else {
            return;
        };
        let b = f.bucket.as_str();
        let key = f.key("moving");
        let v1 = payload(15 * MIB, 6);
        let v2 = payload(15 * MIB, 7);
        s.upload_bytes(b, &key, v1.clone(), UploadOptions::default())
            .await
            .unwrap();
        let replaced = Arc::new(AtomicBool::new(false));
        // On a server, the replacement is one PUT (the default threshold is 100
        // MiB): fake-gcs-server keeps the old generation when a compose replaces
        // an object, where GCS gives it a new one. (Embedded stores are one per
        // handle, so there the same handle replaces it.)
        let replacer = if f.kind.is_server() {
            f.storage.clone()
        } else {
            s.clone()
        };
        let (s2, k2, b2, r2) = (replacer, key.clone(), b.to_owned(), replaced.clone());
        let v2c = v2.clone();
        // Once the first 5 MiB range is in, the object is replaced (synchronously,
        // from the progress callback).
        let progress = stor::Progress::new(move |done, _| {
            if done >= 5 * MIB as u64 && !r2.swap(true, Ordering::SeqCst) {
                let (s2, k2, b2, v2c) = (s2.clone(), k2.clone(), b2.clone(), v2c.clone());
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async move {
                        s2.upload_bytes(b2.as_str(), &k2, v2c, UploadOptions::default())
                            .await
                            .unwrap();
                    })
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("moving.bin");
        let opts = DownloadOptions {
            progress: Some(progress),
            ..Default::default()
        };
        let res = s.download_file_with(b, &key, &out, opts).await;
        assert!(replaced.load(Ordering::SeqCst), "the replacement ran");
        match res {
            Err(e) => {
                assert!(s.capabilities().parallel_ranges, "{e}");
                assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
                assert!(!out.exists(), "no mixed file");
                assert!(leftovers(dir.path()).is_empty());
            }
            Ok(_) => {
                // One GET reads a consistent snapshot: the old version whole.
                assert!(
                    !s.capabilities().parallel_ranges,
                    "parallel ranges are pinned and must notice"
                );
                let got = std::fs::read(&out).unwrap();
                assert!(got == v1, "a whole version, never a mix");
            }
        }
        // The new version downloads whole.
        let got = s.download_bytes(b, &key).await.unwrap();
        assert!(got.data.as_ref() == v2.as_slice());
    }

    pub async fn cleanup_aborts_only_uploads_older_than_asked(f: Fixture) {
        if f.kind != Kind::SeaweedFs {
            // Embedded stores have no multipart uploads; moto reports every upload
            // as initiated on 2010-11-10, so every one is "old" there.
            return;
        }
        let s = &f.storage;
        let b = f.bucket.as_str();
        let be = f.backend.multipart().expect("S3 has multipart uploads");
        let old = be
            .create_multipart(b, &f.key("left/a"), &UploadOptions::default(), None)
            .await
            .unwrap();
        let other = be
            .create_multipart(b, &f.key("elsewhere"), &UploadOptions::default(), None)
            .await
            .unwrap();
        // Fresh uploads are not "older than an hour": nothing is aborted.
        let none = s
            .abort_stale_uploads(b, &f.key("left/"), Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(
            be.list_multipart_uploads(b, &f.key("left/"))
                .await
                .unwrap()
                .len(),
            1
        );
        // Older than 0 s, under the prefix: exactly that one.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let done = s
            .abort_stale_uploads(b, &f.key("left/"), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(done[0].upload_id, old);
        assert!(be
            .list_multipart_uploads(b, &f.key("left/"))
            .await
            .unwrap()
            .is_empty());
        let rest = be
            .list_multipart_uploads(b, &f.key("elsewhere"))
            .await
            .unwrap();
        assert_eq!(rest.len(), 1, "outside the prefix, untouched");
        be.abort_multipart(b, &f.key("elsewhere"), &other)
            .await
            .unwrap();
    }

    /// The fixture's S3 server through the SDK directly, configured like stor's.
    async fn raw_s3(kind: Kind, tweak: impl Fn(&mut stor::StorageConfig)) -> S3Backend {
        let mut cfg = crate::common::s3_config(&crate::common::endpoint(kind).unwrap());
        tweak(&mut cfg);
        S3Backend::new(&cfg).await.unwrap()
    }

    /// HEAD in checksum mode: what the server keeps.
    async fn head_with_checksums(raw: &S3Backend, b: &str, key: &str) -> HeadObjectOutput {
        let req = raw.client().head_object().bucket(b).key(key);
        let req = req.checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled);
        req.send().await.unwrap()
    }

    /// With `native_checksums`, uploads carry S3's own checksum headers: a single
    /// PUT, a multipart file (FULL_OBJECT, parts checksummed) and a stream over
    /// the threshold, whose checksum exists only at its end. Where the engine keeps
    /// them (SeaweedFS), HEAD with checksum mode returns exactly stor's CRC64NVME;
    /// moto takes the headers but keeps no CRC64NVME: there the uploads must simply
    /// work and read back verified.
    pub async fn native_checksums_are_checked_and_kept_by_the_server(f: Fixture) {
        if !f.kind.is_s3() {
            return; // nothing native to send to
        }
        let tweak = |c: &mut stor::StorageConfig| {
            c.multipart_threshold = 5 * MIB as u64;
            c.part_size = Some(5 * MIB as u64);
            c.native_checksums = Some(true);
        };
        let (s, _) = storage_with(f.kind, tweak).await.unwrap();
        let raw = raw_s3(f.kind, tweak).await;
        let b = f.bucket.as_str();
        let dir = tempfile::tempdir().unwrap();

        let small = payload(1000, 1);
        let big = payload(12 * MIB + 3, 2);
        let file = dir.path().join("big.bin");
        std::fs::write(&file, &big).unwrap();
        let (k1, k2, k3) = (f.key("n-small"), f.key("n-file"), f.key("n-stream"));
        let r1 = s
            .upload_bytes(b, &k1, small.clone(), UploadOptions::default())
            .await
            .unwrap();
        let r2 = s
            .upload_file(b, &k2, &file, UploadOptions::default())
            .await
            .unwrap();
        assert!(r2.multipart);
        let reader = std::io::Cursor::new(big.clone());
        let r3 = s
            .upload_reader(b, &k3, reader, UploadOptions::default())
            .await
            .unwrap();
        assert!(r3.multipart);
        let want = |data: &[u8]| stor::ChecksumAlgorithm::Crc64nvme.of(data).unwrap();
        for (r, data) in [(&r1, &small), (&r2, &big), (&r3, &big)] {
            assert_eq!(r.checksum, Some(want(data).label()), "reported");
        }
        for (key, data) in [(&k1, &small), (&k2, &big), (&k3, &big)] {
            let head = head_with_checksums(&raw, b, key).await;
            if f.kind == Kind::SeaweedFs {
                let native = head.checksum_crc64_nvme();
                assert_eq!(native, Some(want(data).encoded().as_str()), "{key}");
            }
            // And stor still reads each back verified.
            let got = s.download_bytes(b, key).await.unwrap();
            assert_eq!(&got.data[..], &data[..]);
        }
    }

    /// An object without a stor checksum — a stream that went up in parts (its
    /// checksum exists only at the end, too late for metadata), or one another
    /// client put with the SDK's CRC32 — is verified against the full-object
    /// checksum the server keeps, by every kind of download (parallel ranges to a
    /// file, memory, a whole-object stream), where native checksums are on. What
    /// stor reports as verified must be exactly what the server keeps.
    pub async fn objects_with_only_a_native_checksum_are_verified_against_it(f: Fixture) {
        if !f.kind.is_s3() {
            return; // no S3-native checksums
        }
        let tweak = |c: &mut stor::StorageConfig| {
            c.multipart_threshold = 5 * MIB as u64;
            c.part_size = Some(5 * MIB as u64);
            c.native_checksums = Some(true);
        };
        let (s, _) = storage_with(f.kind, tweak).await.unwrap();
        let (plain, _) = storage_with(f.kind, |c| c.native_checksums = Some(false))
            .await
            .unwrap();
        let raw = raw_s3(f.kind, tweak).await;
        let b = f.bucket.as_str();
        let dir = tempfile::tempdir().unwrap();

        let streamed = payload(12 * MIB + 7, 5);
        let k1 = f.key("native-stream");
        s.upload_reader(
            b,
            &k1,
            std::io::Cursor::new(streamed.clone()),
            UploadOptions::default(),
        )
        .await
        .unwrap();
        let foreign = payload(11 * MIB + 1, 6);
        let k2 = f.key("native-foreign");
        raw.client()
            .put_object()
            .bucket(b)
            .key(k2.as_str())
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .body(foreign.clone().into())
            .send()
            .await
            .unwrap();

        for (key, data) in [(&k1, &streamed), (&k2, &foreign)] {
            let info = s.info(b, key).await.unwrap();
            assert!(
                info.checksum.is_none(),
                "{key}: no stor checksum: {:?}",
                info
            );
            // What the server keeps, asked directly.
            let head = head_with_checksums(&raw, b, key).await;
            use stor::ChecksumAlgorithm as A;
            let sent = [
                (A::Crc64nvme, head.checksum_crc64_nvme()),
                (A::Crc32c, head.checksum_crc32_c()),
                (A::Crc32, head.checksum_crc32()),
            ]
            .into_iter()
            .find_map(|(a, v)| Some((a, v?)));
            // Only a well-formed full-object value can be verified (moto sends a
            // 32-byte "CRC64NVME" for multipart uploads: stor must then claim nothing).
            let kept = sent.filter(|(a, v)| a.fits(v) && !v.contains('-'));
            if f.kind == Kind::SeaweedFs {
                assert!(
                    kept.is_some(),
                    "{key}: SeaweedFS keeps a full-object checksum"
                );
            }
            if let Some((algo, v)) = kept {
                let ours = algo.of(data).unwrap().encoded();
                assert_eq!(v, ours, "{key}: the server kept our bytes' CRC");
            }
            let kept = kept.map(|(a, v)| format!("{}:{v}", a.name()));

            let out = dir.path().join("native.out");
            let r = s.download_file(b, key, &out).await.unwrap();
            assert!(std::fs::read(&out).unwrap() == *data, "{key}");
            assert_eq!(
                r.checksum, kept,
                "{key}: file (parallel ranges) verified natively"
            );
            let got = s.download_bytes(b, key).await.unwrap();
            assert!(got.data == *data, "{key}");
            assert_eq!(got.result.checksum, kept, "{key}: memory download");
            let streamed_back = s
                .download_stream(b, key, DownloadOptions::default())
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert!(streamed_back == *data, "{key}: stream");
            // Without native checksums nothing is asked for, nothing claimed.
            let r = plain.download_bytes(b, key).await.unwrap();
            assert_eq!(r.result.checksum, None, "{key}");
        }
    }

    /// A prefix downloaded into a tree: every directory made, every object
    /// verified. The sizes the listing told steer how each object is fetched (one
    /// plain GET for those that fit in a part), so objects replaced between the
    /// listing and their download — grown past a part, or shrunk into one — must
    /// still arrive whole and current.
    pub async fn batch_download_gets_what_is_there_when_the_listing_is_stale(f: Fixture) {
        let Some((s, _root)) = small_parts(&f, 4).await else {
            return;
        };
        let b = f.bucket.as_str();
        let prefix = f.key("tree/");
        let put = |key: &str, data: Vec<u8>| {
            let (s, key) = (s.clone(), format!("{prefix}{key}"));
            async move {
                s.upload_bytes(b, &key, data, UploadOptions::default())
                    .await
                    .unwrap();
            }
        };
        put("a/grows", payload(1000, 1)).await;
        put("a/b/same", payload(70_000, 2)).await;
        put("c/shrinks", payload(12 * MIB, 3)).await;
        put("empty", Vec::new()).await;
        let out = tempfile::tempdir().unwrap();
        let items: Vec<_> = s
            .plan_download(b, &prefix, out.path())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.unwrap())
            .collect();
        assert_eq!(items.len(), 4);
        // Replaced after the listing.
        let grown = payload(11 * MIB + 5, 4);
        let shrunk = payload(3000, 5);
        put("a/grows", grown.clone()).await;
        put("c/shrinks", shrunk.clone()).await;

        let done: Vec<_> = s
            .download_many(b, items, stor::BatchOptions::default())
            .collect()
            .await;
        for o in &done {
            let r = o
                .result
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", o.item.key));
            if r.bytes > 0 {
                assert!(r.checksum.is_some(), "{}: verified", o.item.key);
            }
        }
        let read = |rel: &str| std::fs::read(out.path().join(rel)).unwrap();
        assert!(read("a/grows") == grown, "grown past a part: whole");
        assert!(read("a/b/same") == payload(70_000, 2));
        assert!(read("c/shrinks") == shrunk);
        assert!(read("empty").is_empty());
    }

    /// Check before commit: a file that changes while it uploads (rewritten in the
    /// middle with size and modification time kept, grown, shrunk) fails with an
    /// integrity error before anything is committed, in one PUT and in parts; the
    /// previous object stays whole and no multipart upload is left.
    pub async fn a_source_changed_during_upload_leaves_the_previous_object(f: Fixture) {
        use std::os::unix::fs::FileExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let Some((parts, _root)) = small_parts(&f, 2).await else {
            return;
        };
        let b = f.bucket.as_str();
        let dir = tempfile::tempdir().unwrap();
        for (store, size) in [(&f.storage, 3 * MIB), (&parts, 12 * MIB)] {
            for change in ["rewrite", "grow", "shrink"] {
                let key = f.key(&format!("changing/{change}-{size}"));
                let before = payload(1000, 1);
                store
                    .upload_bytes(b, &key, before.clone(), UploadOptions::default())
                    .await
                    .unwrap();
                let path = dir.path().join(format!("{change}-{size}"));
                std::fs::write(&path, payload(size, 2)).unwrap();
                let fired = std::sync::Arc::new(AtomicBool::new(false));
                let (p, fire) = (path.clone(), fired.clone());
                let progress = stor::Progress::new(move |done, _| {
                    if done < 512 * 1024 || fire.swap(true, Ordering::SeqCst) {
                        return;
                    }
                    let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                    let mtime = file.metadata().unwrap().modified().unwrap();
                    match change {
                        "rewrite" => {
                            file.write_all_at(b"8 bytes!", (size / 2) as u64).unwrap();
                            file.set_modified(mtime).unwrap();
                        }
                        "grow" => file.write_all_at(b"more", size as u64).unwrap(),
                        _ => file.set_len((size / 3) as u64).unwrap(),
                    }
                });
                let opts = UploadOptions {
                    progress: Some(progress),
                    ..UploadOptions::default()
                };
                let e = store.upload_file(b, &key, &path, opts).await.unwrap_err();
                assert!(
                    fired.load(Ordering::SeqCst),
                    "the file was changed mid-upload"
                );
                assert_eq!(e.kind(), ErrorKind::Integrity, "{change} {size}: {e}");
                assert!(
                    e.to_string()
                        .contains("changed while it was being uploaded"),
                    "{e}"
                );
                assert_eq!(e.attempts(), 1, "a changed source is not retried: {e}");
                let now = store.download_bytes(b, &key).await.unwrap();
                assert_eq!(
                    now.data.as_ref(),
                    &before[..],
                    "{change} {size}: the previous object"
                );
                let pending = store.list_uploads(b, &key).await.unwrap();
                assert!(pending.is_empty(), "{change} {size}: {pending:?}");
            }
        }
    }

    /// A move deletes its source only with proof that the destination is another
    /// stored object: onto a key the engine folds into the source's (SeaweedFS
    /// stores `m//big` as `m/big`), nothing is deleted; onto an existing other
    /// object, the move happens; onto its own key with new headers, the object is
    /// kept with them. Small and part-copied (multipart-sized) objects alike.
    pub async fn a_move_never_deletes_the_only_copy_whatever_the_engine_does_to_keys(f: Fixture) {
        let Some((parts, _root)) = small_parts(&f, 4).await else {
            return;
        };
        let b = f.bucket.as_str();
        for (size, tag) in [(1000, "small"), (6 * MIB + 1, "big")] {
            let data = payload(size, 7);
            let src = f.key(&format!("m/{tag}"));
            let folded = f.key(&format!("m//{tag}"));
            let s = &parts;
            s.upload_bytes(b, &src, data.clone(), UploadOptions::default())
                .await
                .unwrap();
            // Onto a key that may name the same stored object, with new metadata:
            // a refused move must not have applied it.
            let tagged = CopyOptions {
                replace: Some(UploadOptions::default().metadata("tagged", "yes")),
                ..CopyOptions::default()
            };
            let res = s.move_object(b, &src, b, &folded, tagged).await;
            if f.kind.keeps_keys_exactly() {
                res.unwrap();
                assert!(!s.exists(b, &src).await.unwrap(), "{tag}: moved");
                s.move_object(b, &folded, b, &src, CopyOptions::default())
                    .await
                    .unwrap();
            } else {
                let e = res.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{tag}: {e}");
                assert!(e.to_string().contains("same stored object"), "{e}");
            }
            let now = s.download_bytes(b, &src).await.unwrap();
            assert_eq!(now.data.as_ref(), &data[..], "{tag}: the only copy is kept");
            if !f.kind.keeps_keys_exactly() {
                let info = s.info(b, &src).await.unwrap();
                assert!(!info.metadata.contains_key("tagged"), "{tag}: {info:?}");
            }
            // Onto an existing, different object: it is replaced, the source goes,
            // and the proof's marker is not shown as user metadata.
            let other = f.key(&format!("m/other-{tag}"));
            s.upload_bytes(b, &other, "old", UploadOptions::default())
                .await
                .unwrap();
            s.move_object(b, &src, b, &other, CopyOptions::default())
                .await
                .unwrap();
            assert!(!s.exists(b, &src).await.unwrap(), "{tag}");
            let got = s.download_bytes(b, &other).await.unwrap();
            assert_eq!(got.data.as_ref(), &data[..], "{tag}");
            let info = s.info(b, &other).await.unwrap();
            assert!(!info.metadata.contains_key(stor::MOVE_MARKER), "{info:?}");
            // Onto itself with new headers: a metadata replacement, nothing deleted.
            let retag = CopyOptions {
                replace: Some(
                    UploadOptions::default()
                        .content_type("text/plain")
                        .metadata("stage", "done"),
                ),
                ..Default::default()
            };
            s.move_object(b, &other, b, &other, retag).await.unwrap();
            let info = s.info(b, &other).await.unwrap();
            assert_eq!(info.content_type.as_deref(), Some("text/plain"), "{tag}");
            assert_eq!(info.metadata.get("stage").map(String::as_str), Some("done"));
            let got = s.download_bytes(b, &other).await.unwrap();
            assert_eq!(got.data.as_ref(), &data[..], "{tag}: verified after retag");
            // Onto itself without new headers: refused, kept.
            let e = s
                .move_object(b, &other, b, &other, CopyOptions::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(s.exists(b, &other).await.unwrap());
        }
    }

    /// A multipart upload that another process aborts (`stor cleanup`) fails as
    /// cancelled, saying so — not "key not found" — and leaves nothing.
    pub async fn an_upload_aborted_by_someone_else_says_so(f: Fixture) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let caps = f.storage.capabilities();
        if !caps.multipart {
            return; // the local store takes one request per object
        }
        if !caps.listed_uploads {
            // Azure keeps no upload another process could find and abort: its
            // uncommitted blocks belong to no upload (Azure drops them after a week).
            return;
        }
        let Some((s, _root)) = small_parts(&f, 1).await else {
            return;
        };
        let b = f.bucket.clone();
        let key = f.key("aborted/big.bin");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        std::fs::write(&path, payload(25 * MIB, 9)).unwrap();
        // Another handle on the same store (on S3, the same server).
        let other = s.clone();
        let fired = std::sync::Arc::new(AtomicBool::new(false));
        let (fire, bk, kk) = (fired.clone(), b.clone(), key.clone());
        let progress = stor::Progress::new(move |done, _| {
            if done > 0 && !fire.swap(true, Ordering::SeqCst) {
                let (other, b, k) = (other.clone(), bk.clone(), kk.clone());
                tokio::spawn(async move {
                    other
                        .abort_stale_uploads(b.as_str(), &k, Duration::ZERO)
                        .await
                        .unwrap();
                });
            }
        });
        let opts = UploadOptions::default().progress(progress);
        let e = s
            .upload_file(b.as_str(), &key, &path, opts)
            .await
            .unwrap_err();
        assert!(fired.load(Ordering::SeqCst));
        if f.kind == Kind::Moto {
            // moto answers a part of an aborted upload with a bare 500, not
            // NoSuchUpload: nothing tells it apart from a server failure.
            assert!(e.is_retryable() || e.kind() == ErrorKind::Cancelled, "{e}");
        } else {
            assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
            assert!(e.to_string().contains("aborted by someone else"), "{e}");
        }
        assert!(!s.exists(b.as_str(), &key).await.unwrap());
    }

    /// Keys holding control characters (valid in S3 keys, not in XML 1.0) list,
    /// group and read back exactly: listings ask for URL-encoded keys.
    pub async fn keys_with_control_characters_list_and_read_back(f: Fixture) {
        let s = &f.storage;
        let b = f.bucket.as_str();
        let all = [
            "a\u{1b}[2Jb",
            "bell\u{7}",
            "del\u{7f}x",
            "dir\u{1}/in",
            "pct%41%",
            "plus+ sp",
        ];
        // A store whose own rules refuse control characters (Azure: its XML
        // listings cannot carry them) says so before any I/O; the rest round-trip.
        let rules = s.capabilities().names;
        let mut names = Vec::new();
        for n in all {
            if rules.key(&f.key(n)).is_ok() {
                names.push(n);
                continue;
            }
            let e = s
                .upload_bytes(b, &f.key(n), "x", UploadOptions::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{n:?}: {e}");
            assert_eq!(e.status(), None, "refused before any request: {e}");
        }
        assert!(names.len() >= 2, "{names:?}");
        for (i, n) in names.iter().enumerate() {
            s.upload_bytes(b, &f.key(n), vec![i as u8; 3], UploadOptions::default())
                .await
                .unwrap();
        }
        let listed: Vec<String> = s
            .list_stream(b, ListOptions::default().prefix(f.prefix.clone()))
            .map_ok(|o| o.key)
            .try_collect()
            .await
            .unwrap();
        let mut want: Vec<String> = names.iter().map(|n| f.key(n)).collect();
        want.sort();
        assert_eq!(listed, want);
        let page = s
            .list(
                b,
                ListOptions::default()
                    .prefix(f.prefix.clone())
                    .delimiter("/"),
            )
            .await
            .unwrap();
        let dirs = if names.contains(&"dir\u{1}/in") {
            vec![f.key("dir\u{1}/")]
        } else {
            vec![]
        };
        assert_eq!(page.common_prefixes, dirs);
        for (i, n) in names.iter().enumerate() {
            let got = s.download_bytes(b, &f.key(n)).await.unwrap();
            assert_eq!(got.data.as_ref(), &[i as u8; 3], "{n:?}");
        }
        let deleted = s.delete_many(b, &want).await.unwrap();
        assert!(deleted.iter().all(|d| d.error.is_none()), "{deleted:?}");
        assert!(s
            .list(b, ListOptions::default().prefix(f.prefix.clone()))
            .await
            .unwrap()
            .objects
            .is_empty());
    }

    /// Subscribers hear of every completed put, copy, move and delete, after it
    /// completed, with size, ETag and user metadata — and never of a failed write;
    /// one that falls behind loses the oldest events, counted, and blocks nothing.
    pub async fn completed_writes_are_announced_and_failed_ones_never(f: Fixture) {
        use stor::WriteKind;
        let s = &f.storage;
        let b = f.bucket.as_str();
        let mut events = s.subscribe();
        let (k, k2, k3) = (f.key("ev/a.json"), f.key("ev/b.json"), f.key("ev/c.json"));
        let opts = UploadOptions::default().metadata("source", "crawler");
        let put = s.upload_bytes(b, &k, "{}", opts).await.unwrap();
        s.copy_object(b, &k, b, &k2, CopyOptions::default())
            .await
            .unwrap();
        s.move_object(b, &k2, b, &k3, CopyOptions::default())
            .await
            .unwrap();
        // A failed write: no event.
        let missing = unique("stor-nobucket");
        s.upload_bytes(missing.as_str(), "x", "x", UploadOptions::default())
            .await
            .unwrap_err();
        s.delete(b, &k).await.unwrap();
        s.delete_many(b, std::slice::from_ref(&k3)).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..5 {
            match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
                Ok(Some(e)) => got.push(e),
                other => panic!("after {got:?}: {other:?}"),
            }
        }
        let kinds: Vec<_> = got.iter().map(|e| (e.kind, e.key.clone())).collect();
        assert_eq!(
            kinds,
            [
                (WriteKind::Put, k.clone()),
                (WriteKind::Copy, k2.clone()),
                (WriteKind::Move, k3.clone()),
                (WriteKind::Delete, k.clone()),
                (WriteKind::Delete, k3.clone()),
            ]
        );
        assert_eq!(got[0].size, Some(2));
        assert_eq!(got[0].etag, put.etag);
        assert_eq!(
            got[0].metadata.get("source").map(String::as_str),
            Some("crawler")
        );
        assert!(got[0].metadata.keys().all(|k| !k.starts_with("stor-")));
        assert_eq!(got[2].source, Some((f.bucket.clone(), k2.clone())));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), events.next())
                .await
                .is_err(),
            "the failed upload was never announced"
        );
        if f.kind.is_s3() {
            return; // the overflow below is thousands of requests: embedded stores only
        }
        // A subscriber that never reads: writes go on; the oldest events are dropped.
        let mut idle = s.subscribe();
        let n = stor::events::QUEUE + 100;
        for i in 0..n {
            s.upload_bytes(
                b,
                &f.key(&format!("ev/many/{i}")),
                "x",
                UploadOptions::default(),
            )
            .await
            .unwrap();
        }
        let first = idle.next().await.unwrap();
        assert_eq!(idle.dropped(), 100, "{first:?}");
    }
}
