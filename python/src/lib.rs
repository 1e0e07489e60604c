//! `stor._stor`: the native half of the Python package `stor`. The Python half
//! (`python/stor/__init__.py`) is the original service's `StorageService` API; each
//! of its methods calls one function here, which starts the operation on stor's
//! Tokio runtime and returns an asyncio future (see `bridge.rs`).
//!
//! Only the library's public API is used: `stor::StorageService` holds the
//! process-wide `Storage`, as it does for Rust programs.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyDict, PyString};
use serde_json::{json, Value};
use stor::{
    CopyOptions, DownloadOptions, ErrorKind, ListOptions, PresignMethod, PresignOptions, Storage,
    StorageConfig,
};

mod bridge;
mod convert;
mod errors;
mod logging;

use bridge::{runtime, Bridge, Outcome};
use convert::Out;

/// Chunk size for reading and writing Python file objects.
const FILEOBJ_CHUNK: usize = 1024 * 1024;

/// The initialized service, or `NotInitialized` as a Python exception.
fn storage(py: Python<'_>) -> PyResult<Storage> {
    stor::StorageService::get().map_err(|e| errors::to_py(py, &e))
}

/// Starts `work(storage)` on the runtime; its asyncio future.
fn start<F, Fut>(py: Python<'_>, bridge: &Bound<'_, Bridge>, work: F) -> PyResult<Py<PyAny>>
where
    F: FnOnce(Storage) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let s = storage(py)?;
    bridge.get().spawn(py, work(s))
}

fn invalid(py: Python<'_>, e: stor::Error, op: &'static str) -> PyErr {
    errors::to_py(py, &e.with_op(op))
}

/// The bucket an operation on `bucket` (None: the default) is about, for results.
fn bucket_name(s: &Storage, bucket: &Option<String>) -> Option<String> {
    bucket.clone().or_else(|| s.config().default_bucket.clone())
}

// ------------------------------------------------------------------ service

/// Opens the store from config JSON and makes it the process-wide service.
#[pyfunction]
fn init_json(py: Python<'_>, config: &str) -> PyResult<()> {
    let cfg = StorageConfig::from_json_str(config).map_err(|e| errors::to_py(py, &e))?;
    init(py, cfg)
}

/// Opens the store from a config file and makes it the process-wide service.
#[pyfunction]
fn init_file(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    let cfg = StorageConfig::from_file(&path).map_err(|e| errors::to_py(py, &e))?;
    init(py, cfg)
}

fn init(py: Python<'_>, cfg: StorageConfig) -> PyResult<()> {
    // Opening the local store or building the S3 client does no network I/O;
    // the GIL is released meanwhile all the same.
    py.detach(|| runtime().block_on(stor::StorageService::init(cfg)))
        .map(|_| ())
        .map_err(|e| errors::to_py(py, &e))
}

#[pyfunction]
fn is_initialized() -> bool {
    stor::StorageService::is_initialized()
}

#[pyfunction]
fn shutdown(py: Python<'_>, bridge: &Bound<'_, Bridge>) -> PyResult<Py<PyAny>> {
    bridge.get().spawn(py, async {
        stor::StorageService::shutdown().await;
        Ok(Out::Json(Value::Null))
    })
}

#[pyfunction]
fn get_metrics(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let m = storage(py)?.metrics();
    Out::Json(serde_json::to_value(m).unwrap_or(Value::Null)).into_py(py)
}

#[pyfunction]
fn health_check(py: Python<'_>, bridge: &Bound<'_, Bridge>) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        let h = s.health().await;
        Ok(Out::Json(serde_json::to_value(h).unwrap_or(Value::Null)))
    })
}

// ------------------------------------------------------------------ objects

#[pyfunction]
#[pyo3(signature = (bridge, bucket, key, file_path, extra_args=None))]
fn upload_file(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
    file_path: PathBuf,
    extra_args: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let opts = convert::upload_options(extra_args).map_err(|e| invalid(py, e, "upload"))?;
    start(py, bridge, |s| async move {
        let r = s.upload_file(bucket.as_deref(), &key, &file_path, opts);
        r.await.map(|r| convert::uploaded(&r))
    })
}

#[pyfunction]
#[pyo3(signature = (bridge, bucket, key, data, extra_args=None))]
fn upload_bytes(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
    data: PyBackedBytes,
    extra_args: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let opts = convert::upload_options(extra_args).map_err(|e| invalid(py, e, "upload"))?;
    // No copy: the bytes object is kept alive until the upload is done.
    let data = Bytes::from_owner(data);
    start(py, bridge, |s| async move {
        let r = s.upload_bytes(bucket.as_deref(), &key, data, opts);
        r.await.map(|r| convert::uploaded(&r))
    })
}

/// Uploads what a binary file object's `read()` yields, streamed: its reads run on
/// a blocking thread (taking the GIL for each chunk), never on the event loop.
#[pyfunction]
#[pyo3(signature = (bridge, bucket, key, fileobj, extra_args=None))]
fn upload_reader(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
    fileobj: Py<PyAny>,
    extra_args: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let opts = convert::upload_options(extra_args).map_err(|e| invalid(py, e, "upload"))?;
    start(py, bridge, |s| async move {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || loop {
            let chunk = Python::attach(|py| -> PyResult<Option<Bytes>> {
                let got = fileobj.bind(py).call_method1("read", (FILEOBJ_CHUNK,))?;
                let got: PyBackedBytes = got.extract()?;
                Ok((!got.is_empty()).then(|| Bytes::from_owner(got)))
            });
            let next = match chunk {
                Ok(Some(b)) => Ok(b),
                Ok(None) => break,
                Err(e) => Err(std::io::Error::other(format!("fileobj.read(): {e}"))),
            };
            let failed = next.is_err();
            if tx.blocking_send(next).is_err() || failed {
                break;
            }
        });
        let chunks =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let reader = tokio_util::io::StreamReader::new(chunks.boxed());
        let r = s.upload_reader(bucket.as_deref(), &key, reader, opts);
        r.await.map(|r| convert::uploaded(&r))
    })
}

#[pyfunction]
fn download_file(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
    file_path: PathBuf,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        let r = s.download_file(bucket.as_deref(), &key, &file_path).await?;
        Ok(convert::downloaded(&r, &file_path.to_string_lossy()))
    })
}

#[pyfunction]
fn download_bytes(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        let d = s.download_bytes(bucket.as_deref(), &key).await?;
        Ok(Out::Bytes(d.data))
    })
}

/// Streams an object into a binary file object's `write()` (on a blocking thread,
/// chunk by chunk), verified against its stored checksum as it goes.
#[pyfunction]
fn download_to_fileobj(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
    fileobj: Py<PyAny>,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        let started = std::time::Instant::now();
        let stream = s
            .download_stream(bucket.as_deref(), &key, DownloadOptions::default())
            .await?;
        let mut body = stream.body;
        let fileobj = std::sync::Arc::new(fileobj);
        let mut size = 0u64;
        // Network chunks are small: written in pieces of FILEOBJ_CHUNK, each one
        // GIL-held write() on a blocking thread.
        let mut piece = bytes::BytesMut::new();
        loop {
            let next = body.next().await.transpose()?;
            if let Some(chunk) = &next {
                size += chunk.len() as u64;
                piece.extend_from_slice(chunk);
                if piece.len() < FILEOBJ_CHUNK {
                    continue;
                }
            }
            if !piece.is_empty() {
                let data = piece.split().freeze();
                let f = fileobj.clone();
                tokio::task::spawn_blocking(move || {
                    Python::attach(|py| {
                        let data = pyo3::types::PyBytes::new(py, &data);
                        f.bind(py).call_method1("write", (data,)).map(|_| ())
                    })
                })
                .await
                .map_err(|e| stor::Error::new(ErrorKind::Other, e.to_string()))?
                .map_err(|e| {
                    stor::Error::new(ErrorKind::Io, format!("fileobj.write(): {e}"))
                        .with_op("download")
                })?;
            }
            if next.is_none() {
                break;
            }
        }
        Ok(Out::Json(json!({
            "success": true,
            "size": size,
            "elapsed": started.elapsed().as_secs_f64(),
        })))
    })
}

#[pyfunction]
fn delete_file(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        s.delete(bucket.as_deref(), &key).await?;
        Ok(Out::Json(json!({
            "success": true,
            "bucket": bucket_name(&s, &bucket),
            "key": key,
        })))
    })
}

#[pyfunction]
#[pyo3(signature = (bridge, bucket, prefix, max_keys, continuation_token=None))]
fn list_files(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    prefix: String,
    max_keys: u32,
    continuation_token: Option<String>,
) -> PyResult<Py<PyAny>> {
    // S3 answers at most 1000 keys a page whatever MaxKeys says; so does this,
    // with the token for the rest.
    let mut opts = ListOptions::default()
        .prefix(prefix)
        .max_keys(max_keys.clamp(1, 1000));
    opts.continuation_token = continuation_token;
    start(py, bridge, |s| async move {
        let page = s.list(bucket.as_deref(), opts).await?;
        Ok(convert::listed(&page))
    })
}

#[pyfunction]
fn get_file_info(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        let i = s.info(bucket.as_deref(), &key).await?;
        Ok(convert::info(&i))
    })
}

#[pyfunction]
#[pyo3(signature = (bridge, src_bucket, src_key, dst_bucket, dst_key, delete_source))]
fn copy_file(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    src_bucket: Option<String>,
    src_key: String,
    dst_bucket: Option<String>,
    dst_key: String,
    delete_source: bool,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        let (sb, db) = (src_bucket.as_deref(), dst_bucket.as_deref());
        let r = if delete_source {
            s.move_object(sb, &src_key, db, &dst_key, CopyOptions::default())
                .await?
        } else {
            s.copy_object(sb, &src_key, db, &dst_key, CopyOptions::default())
                .await?
        };
        Ok(Out::Json(json!({
            "success": true,
            "src_bucket": bucket_name(&s, &src_bucket),
            "src_key": src_key,
            "dst_bucket": bucket_name(&s, &dst_bucket),
            "dst_key": dst_key,
            "size": r.bytes,
            "etag": r.etag,
        })))
    })
}

/// A presigned URL. Signing needs no I/O once credentials are at hand, so the work
/// is polled once right here: the URL comes back as a `str` at once, and only a
/// first call that must fetch credentials returns a future.
#[pyfunction]
fn generate_presigned_url(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: Option<String>,
    key: String,
    expiration: u64,
    method: &str,
) -> PyResult<Py<PyAny>> {
    let method = match method.to_ascii_lowercase().as_str() {
        "get" | "get_object" => PresignMethod::Get,
        "put" | "put_object" => PresignMethod::Put,
        other => {
            let e = stor::Error::new(
                ErrorKind::InvalidInput,
                format!("method {other:?}: presigned URLs are for \"GET\" or \"PUT\""),
            );
            return Err(invalid(py, e, "presign"));
        }
    };
    let opts = PresignOptions {
        method,
        expires_in: Duration::from_secs(expiration),
        content_type: None,
        version_id: None,
    };
    let s = storage(py)?;
    let mut work = Box::pin(async move { s.presign(bucket.as_deref(), &key, opts).await });
    let polled = {
        let _rt = runtime().enter();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        pin!(&mut work).poll(&mut cx)
    };
    match polled {
        Poll::Ready(Ok(url)) => Ok(PyString::new(py, &url).into_any().unbind()),
        Poll::Ready(Err(e)) => Err(errors::to_py(py, &e)),
        Poll::Pending => bridge.get().spawn(py, async move {
            work.await.map(|u| Out::Json(Value::String(u)))
        }),
    }
}

// ------------------------------------------------------------------ buckets

#[pyfunction]
fn create_bucket(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: String,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        s.create_bucket(&bucket).await?;
        Ok(Out::Json(json!({"success": true, "bucket": bucket})))
    })
}

#[pyfunction]
fn bucket_exists(
    py: Python<'_>,
    bridge: &Bound<'_, Bridge>,
    bucket: String,
) -> PyResult<Py<PyAny>> {
    start(py, bridge, |s| async move {
        Ok(Out::Json(Value::Bool(s.bucket_exists(&bucket).await?)))
    })
}

#[pymodule]
fn _stor(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    m.add_class::<Bridge>()?;
    m.add_function(wrap_pyfunction!(init_json, m)?)?;
    m.add_function(wrap_pyfunction!(init_file, m)?)?;
    m.add_function(wrap_pyfunction!(is_initialized, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(get_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(health_check, m)?)?;
    m.add_function(wrap_pyfunction!(upload_file, m)?)?;
    m.add_function(wrap_pyfunction!(upload_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(upload_reader, m)?)?;
    m.add_function(wrap_pyfunction!(download_file, m)?)?;
    m.add_function(wrap_pyfunction!(download_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(download_to_fileobj, m)?)?;
    m.add_function(wrap_pyfunction!(delete_file, m)?)?;
    m.add_function(wrap_pyfunction!(list_files, m)?)?;
    m.add_function(wrap_pyfunction!(get_file_info, m)?)?;
    m.add_function(wrap_pyfunction!(copy_file, m)?)?;
    m.add_function(wrap_pyfunction!(generate_presigned_url, m)?)?;
    m.add_function(wrap_pyfunction!(create_bucket, m)?)?;
    m.add_function(wrap_pyfunction!(bucket_exists, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
