//! One transfer (`cp` or `mv` of one file, stdin), with a progress bar on a
//! terminal that counts bytes as they are sent or received.

use std::path::Path;

use stor::{DownloadOptions, Storage, TransferResult, UploadOptions};

use crate::output::Output;
use crate::progress::Ui;

/// Uploads a file; the library reports its bytes as they are read to be sent.
pub async fn upload_file(
    out: &Output,
    store: &Storage,
    bucket: &str,
    key: &str,
    path: &Path,
    opts: UploadOptions,
) -> stor::Result<TransferResult> {
    let ui = Ui::one(out, std::fs::metadata(path).ok().map(|m| m.len()));
    let r = store
        .upload_file(bucket, key, path, opts.progress(ui.progress()))
        .await;
    ui.clear();
    say_resumed(out, "sent", r.as_ref().ok());
    r
}

/// Uploads stdin. The library reports a stream's parts only once stored: the bar
/// counts the bytes read instead (of `--expected-size`, when given).
pub async fn upload_stdin(
    out: &Output,
    store: &Storage,
    bucket: &str,
    key: &str,
    opts: UploadOptions,
) -> stor::Result<TransferResult> {
    let ui = Ui::one(out, opts.expected_size);
    let stdin = ui.reading(tokio::io::stdin());
    let r = store.upload_reader(bucket, key, stdin, opts).await;
    ui.clear();
    r
}

/// Downloads an object (or `version` of it) to a file; the library reports bytes
/// as they arrive.
pub async fn download_file(
    out: &Output,
    store: &Storage,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    target: &Path,
    no_resume: bool,
) -> stor::Result<TransferResult> {
    let ui = Ui::one(out, None);
    let opts = DownloadOptions {
        progress: Some(ui.progress()),
        version_id: version.map(str::to_owned),
        no_resume,
        ..Default::default()
    };
    let r = store.download_file_with(bucket, key, target, opts).await;
    ui.clear();
    say_resumed(out, "received", r.as_ref().ok());
    r
}

/// Says how much of a resumed transfer an interrupted run had already done, and
/// how much went over the wire this time (nothing for one that started fresh).
fn say_resumed(out: &Output, verb: &str, r: Option<&TransferResult>) {
    if let Some(r) = r.filter(|r| r.resumed > 0) {
        out.note(&format!(
            "resumed: {} of {} bytes were done by an interrupted run; {} {}",
            r.resumed,
            r.bytes,
            r.bytes - r.resumed,
            verb
        ));
    }
}
