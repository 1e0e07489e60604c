//! stor's errors as the Python exceptions of `stor.errors`: one class per
//! `ErrorKind` under `StorError`, carrying `code`, `retryable`, `attempts` and
//! where it happened.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// The exception for `e`, built on the calling (GIL-holding) thread.
pub fn to_py(py: Python<'_>, e: &stor::Error) -> PyErr {
    match build(py, e) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

fn build<'py>(py: Python<'py>, e: &stor::Error) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import("stor.errors").map(Bound::unbind))?;
    let module = module.bind(py);
    // The variant's name is the class's (ErrorKind is non-exhaustive: a kind
    // added later falls back to the base class until it gets one).
    let kind = format!("{:?}", e.kind());
    let class = match module.getattr(kind.as_str()) {
        Ok(c) => c,
        Err(_) => module.getattr("StorError")?,
    };
    let kw = PyDict::new(py);
    kw.set_item("kind", &kind)?;
    kw.set_item("code", e.code().unwrap_or(&kind))?;
    kw.set_item("retryable", e.is_retryable())?;
    kw.set_item("attempts", e.attempts())?;
    kw.set_item("status", e.status())?;
    kw.set_item("operation", e.operation())?;
    kw.set_item("bucket", e.bucket())?;
    kw.set_item("key", e.key())?;
    class.call((e.to_string(),), Some(&kw))
}
