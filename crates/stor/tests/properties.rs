//! Property tests of the validators and mappings that guard every request: they
//! agree with an independent statement of the rules on arbitrary input, never
//! panic, and keys never reach outside a directory or the local store's root.
//! (The same functions are fuzz targets under `fuzz/`.)

use std::collections::BTreeMap;
use std::path::{Component, Path};

use proptest::prelude::*;
use stor::error::parse_error_body;
use stor::{path_under, validate_bucket, validate_key, ErrorKind, UploadOptions};

/// S3's bucket naming rules, written out independently of `validate_bucket`.
fn bucket_ok(n: &str) -> bool {
    let b = n.as_bytes();
    let ip = n.split('.').count() == 4 && n.split('.').all(|p| p.parse::<u8>().is_ok());
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !n.contains("..")
        && !n.contains(".-")
        && !n.contains("-.")
        && !ip
        && !["xn--", "sthree-", "amzn-s3-demo-"]
            .iter()
            .any(|p| n.starts_with(p))
        && !["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|s| n.ends_with(s))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn bucket_names_follow_every_s3_rule(name in r"[a-z0-9.\-]{0,66}|\PC{0,70}|xn--[a-z]{0,5}|[0-9]{1,3}(\.[0-9]{1,3}){3}") {
        let got = validate_bucket(&name);
        prop_assert_eq!(got.is_ok(), bucket_ok(&name), "{:?}: {:?}", name, got);
        if let Err(e) = got {
            prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
            prop_assert!(e.to_string().contains("bucket name"));
        }
    }

    #[test]
    fn keys_are_1_to_1024_bytes_of_anything(key in r"\PC{0,300}|.{1000,1030}") {
        let got = validate_key(&key);
        prop_assert_eq!(got.is_ok(), !key.is_empty() && key.len() <= 1024, "{} bytes", key.len());
    }

    #[test]
    fn paths_under_a_directory_stay_under_it(rel in r"(\.\.|\.|/|[a-z]{1,3}|%2e|\\){0,8}") {
        let dir = Path::new("/srv/out");
        if let Ok(p) = path_under(dir, &rel) {
            prop_assert!(p.starts_with(dir), "{rel:?} -> {p:?}");
            prop_assert!(p.components().all(|c| !matches!(c, Component::ParentDir)), "{rel:?} -> {p:?}");
            prop_assert!(p != dir, "{rel:?} names the directory itself");
        }
    }

    #[test]
    fn error_bodies_never_panic_and_stay_short(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let (code, msg) = parse_error_body(&body);
        if let Some(c) = code {
            prop_assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_'));
        }
        if let Some(m) = msg {
            prop_assert!(m.chars().count() <= 201);
        }
    }

    #[test]
    fn s3_error_documents_round_trip(code in "[A-Za-z]{1,30}", msg in "[ -~]{0,150}") {
        let esc = msg.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let body = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{esc}</Message></Error>");
        let (c, m) = parse_error_body(body.as_bytes());
        prop_assert_eq!(c.as_deref(), Some(code.as_str()));
        let want = msg.trim();
        prop_assert_eq!(m.as_deref(), (!want.is_empty()).then_some(want));
    }

    #[test]
    fn status_codes_classify_as_the_retry_rules_say(status in 100u16..600) {
        let k = ErrorKind::from_s3(None, Some(status));
        let e = stor::Error::new(k, "x");
        let retry = matches!(status, 408 | 429 | 500 | 502 | 503 | 504);
        prop_assert_eq!(e.is_retryable(), retry, "{} -> {:?}", status, k);
    }

    #[test]
    fn metadata_with_control_characters_is_refused(v in r"[a-z]{0,5}[\r\n\x00-\x1f][a-z]{0,5}") {
        let opts = UploadOptions::default().metadata("note", v.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let s = rt.block_on(stor::Storage::new(stor::StorageConfig::memory())).unwrap();
        rt.block_on(s.create_bucket("props")).unwrap();
        let e = rt.block_on(s.upload_bytes("props", "k", "v", opts)).unwrap_err();
        prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
        prop_assert!(!rt.block_on(s.exists("props", "k")).unwrap(), "nothing written");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any valid key — "../", absolute, NUL-free control characters, unicode — is
    /// stored and read back inside the local store's root, and nothing appears
    /// beside the root.
    #[test]
    fn local_store_keys_never_leave_the_root(keys in proptest::collection::vec(r"(\.\./|/|\.|[a-z]|é|\\|%2F|\x01){1,12}", 1..6)) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let s = rt.block_on(stor::Storage::new(stor::StorageConfig::local(&root))).unwrap();
        rt.block_on(s.create_bucket("keys")).unwrap();
        let mut want = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let body = format!("{i}:{k}");
            rt.block_on(s.upload_bytes("keys", k, body.clone(), UploadOptions::default())).unwrap();
            want.insert(k.clone(), body);
        }
        for (k, body) in &want {
            let got = rt.block_on(s.download_bytes("keys", k)).unwrap();
            prop_assert_eq!(got.data.as_ref(), body.as_bytes());
        }
        let beside: Vec<_> = std::fs::read_dir(outer.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(beside, vec![std::ffi::OsString::from("root")]);
    }
}
