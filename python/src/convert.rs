//! Between stor's Rust types and the original service's Python shapes: the result
//! dicts, boto3-style `extra_args`, and times as the original printed them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString};
use serde_json::{json, Value};
use stor::{Encryption, ErrorKind, ListPage, ObjectInfo, TransferResult, UploadOptions};

/// A finished operation's value, built into a Python object on the loop's thread.
pub enum Out {
    /// A plain value: dicts, lists, strings, numbers, `None`.
    Json(Value),
    /// Bytes (download_fileobj without a file object).
    Bytes(Bytes),
}

impl Out {
    pub fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Out::Json(v) => json_to_py(py, &v).map(Bound::unbind),
            Out::Bytes(b) => Ok(PyBytes::new(py, &b).into_any().unbind()),
        }
    }
}

fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|i| json_to_py(py, i))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, v) in map {
                d.set_item(k, json_to_py(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// A time as the original's `datetime.isoformat()` of S3's UTC times:
/// `2026-11-26T12:00:00+00:00`.
pub fn iso_time(t: Option<SystemTime>) -> Value {
    match t {
        Some(t) => {
            let s = stor::format_time(t);
            Value::String(match s.strip_suffix('Z') {
                Some(head) => format!("{head}+00:00"),
                None => s,
            })
        }
        None => Value::Null,
    }
}

/// `upload_file` / `upload_fileobj`: the original's result.
pub fn uploaded(r: &TransferResult) -> Out {
    Out::Json(json!({
        "success": true,
        "attempt": r.attempts,
        "bucket": r.bucket,
        "key": r.key,
        "size": r.bytes,
        "etag": r.etag,
        "elapsed": r.elapsed.as_secs_f64(),
    }))
}

/// `download_file`: the original's result.
pub fn downloaded(r: &TransferResult, file_path: &str) -> Out {
    Out::Json(json!({
        "success": true,
        "size": r.bytes,
        "elapsed": r.elapsed.as_secs_f64(),
        "file_path": file_path,
    }))
}

/// `get_file_info`: user metadata only (stor's checksum entry is not the user's).
pub fn info(i: &ObjectInfo) -> Out {
    let metadata: BTreeMap<&str, &str> = i
        .metadata
        .iter()
        .filter(|(k, _)| !stor::checksum::is_reserved(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Out::Json(json!({
        "key": i.key,
        "size": i.size,
        "last_modified": iso_time(i.last_modified),
        "etag": i.etag,
        "content_type": i.content_type,
        "metadata": metadata,
    }))
}

/// `list_files`: one page, with the token for the next.
pub fn listed(page: &ListPage) -> Out {
    let files: Vec<Value> = page
        .objects
        .iter()
        .map(|o| {
            json!({
                "key": o.key,
                "size": o.size,
                "last_modified": iso_time(o.last_modified),
                "etag": o.etag,
            })
        })
        .collect();
    Out::Json(json!({
        "files": files,
        "is_truncated": page.is_truncated(),
        "next_continuation_token": page.next_continuation_token,
    }))
}

/// boto3's `ExtraArgs` names, as the original passed them through.
pub const EXTRA_ARGS: &[&str] = &[
    "ContentType",
    "Metadata",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "StorageClass",
    "ServerSideEncryption",
    "SSEKMSKeyId",
];

/// `extra_args` as upload options; an unknown or mistyped entry is `InvalidInput`
/// naming it (boto3 refuses unknown ExtraArgs too).
pub fn upload_options(extra: Option<&Bound<'_, PyDict>>) -> Result<UploadOptions, stor::Error> {
    let mut opts = UploadOptions::default();
    let Some(extra) = extra else {
        return Ok(opts);
    };
    let bad = |what: String| stor::Error::new(ErrorKind::InvalidInput, what);
    let text = |name: &str, v: &Bound<'_, PyAny>| {
        v.extract::<String>()
            .map_err(|_| bad(format!("extra_args[{name:?}] must be a str")))
    };
    let mut sse: Option<String> = None;
    let mut kms_key: Option<String> = None;
    for (k, v) in extra.iter() {
        let name: String = k
            .extract()
            .map_err(|_| bad("extra_args keys must be str".into()))?;
        match name.as_str() {
            "ContentType" => opts.content_type = Some(text(&name, &v)?),
            "CacheControl" => opts.cache_control = Some(text(&name, &v)?),
            "ContentDisposition" => opts.content_disposition = Some(text(&name, &v)?),
            "ContentEncoding" => opts.content_encoding = Some(text(&name, &v)?),
            "StorageClass" => opts.storage_class = Some(text(&name, &v)?),
            "ServerSideEncryption" => sse = Some(text(&name, &v)?),
            "SSEKMSKeyId" => kms_key = Some(text(&name, &v)?),
            "Metadata" => {
                let m = v.cast::<PyDict>().map_err(|_| {
                    bad("extra_args[\"Metadata\"] must be a dict of str to str".into())
                })?;
                for (mk, mv) in m.iter() {
                    let (Ok(mk), Ok(mv)) = (mk.extract::<String>(), mv.extract::<String>()) else {
                        return Err(bad(
                            "extra_args[\"Metadata\"] must be a dict of str to str".into()
                        ));
                    };
                    opts.metadata.insert(mk, mv);
                }
            }
            other => {
                return Err(bad(format!(
                    "extra_args: unknown key {other:?}; stor takes {}",
                    EXTRA_ARGS.join(", ")
                )))
            }
        }
    }
    opts.encryption = match (sse.as_deref(), kms_key) {
        (None, None) => None,
        (Some("AES256"), None) => Some(Encryption::Aes256),
        (Some("aws:kms"), key_id) => Some(Encryption::Kms { key_id }),
        (None, Some(_)) => {
            return Err(bad(
                "extra_args: SSEKMSKeyId needs ServerSideEncryption \"aws:kms\"".into(),
            ))
        }
        (Some(other), _) => {
            return Err(bad(format!(
                "extra_args[\"ServerSideEncryption\"]: {other:?} is not \"AES256\" or \"aws:kms\""
            )))
        }
    };
    Ok(opts)
}
