//! Any key: the local store either refuses it (invalid) or stores and returns it
//! exactly, and nothing is ever written beside its root; a download path for it
//! never leaves the target directory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|key: &str| {
    let dir = std::path::Path::new("/srv/out");
    if let Ok(p) = stor::path_under(dir, key) {
        assert!(p.starts_with(dir) && p != dir);
        assert!(!p.components().any(|c| matches!(c, std::path::Component::ParentDir)));
    }
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = stor::Storage::new(stor::StorageConfig::local(&root)).await.unwrap();
        s.create_bucket("fuzz").await.unwrap();
        match s.upload_bytes("fuzz", key, key.as_bytes().to_vec(), Default::default()).await {
            Ok(_) => {
                let got = s.download_bytes("fuzz", key).await.unwrap();
                assert_eq!(got.data.as_ref(), key.as_bytes());
            }
            Err(e) => assert_eq!(e.kind(), stor::ErrorKind::InvalidInput),
        }
    });
    let beside: Vec<_> = std::fs::read_dir(outer.path()).unwrap().collect();
    assert_eq!(beside.len(), 1);
});
