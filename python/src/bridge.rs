//! Rust futures as asyncio futures, one bridge per event loop.
//!
//! Each call creates an `asyncio.Future` on the caller's loop and spawns the Rust
//! future on stor's Tokio runtime. When it finishes, the worker thread pushes the
//! plain Rust result onto the bridge's queue and, if the queue was empty, wakes the
//! loop through an eventfd the loop watches (`loop.add_reader`). The loop's thread
//! then drains the queue: it builds the Python results and completes the futures.
//!
//! Why not `pyo3_async_runtimes::future_into_py`: it completes each future from a
//! `spawn_blocking` thread that takes the GIL and calls `call_soon_threadsafe`, a
//! thread hop, a GIL handover and a loop wake-up per operation. Here Tokio workers
//! never take the GIL, and a burst of completions (64 uploads in flight) costs one
//! wake-up and one GIL-held pass over the results.

use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;

use crate::convert::Out;

/// What an operation ends with: a Python value to build, or stor's error.
pub type Outcome = Result<Out, stor::Error>;

/// stor's Tokio runtime, shared by every loop and thread of the process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("stor")
            .enable_all()
            .build()
            .expect("cannot start the Tokio runtime")
    })
}

struct Shared {
    done: Mutex<Vec<(Py<PyAny>, Outcome)>>,
    wake: OwnedFd,
}

impl Shared {
    fn complete(&self, fut: Py<PyAny>, outcome: Outcome) {
        let was_empty = {
            let mut q = self.done.lock().unwrap_or_else(|p| p.into_inner());
            q.push((fut, outcome));
            q.len() == 1
        };
        if was_empty {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd. It cannot block
            // (EFD_NONBLOCK) and fails only when the counter would overflow, i.e.
            // when a wake-up is pending anyway.
            unsafe {
                libc::write(
                    self.wake.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                );
            }
        }
    }
}

/// The bridge of one event loop (made by `stor._bridge()`, which registers
/// [`Bridge::drain`] as the reader of [`Bridge::fileno`]).
#[pyclass(frozen, module = "stor._stor")]
pub struct Bridge {
    shared: Arc<Shared>,
    event_loop: Py<PyAny>,
}

#[pymethods]
impl Bridge {
    #[new]
    fn new(event_loop: Py<PyAny>) -> PyResult<Bridge> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(PyOSError::new_err(format!(
                "eventfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Bridge {
            // SAFETY: fd is a new descriptor that nothing else owns.
            shared: Arc::new(Shared {
                done: Mutex::new(Vec::new()),
                wake: unsafe { OwnedFd::from_raw_fd(fd) },
            }),
            event_loop,
        })
    }

    /// The descriptor the loop watches for finished operations.
    fn fileno(&self) -> i32 {
        self.shared.wake.as_raw_fd()
    }

    /// Completes the futures of every finished operation (the loop's reader callback).
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; non-blocking.
        unsafe {
            libc::read(
                self.shared.wake.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            );
        }
        let done = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|p| p.into_inner()));
        // Every future gets its result, whatever happens to another's.
        for (fut, outcome) in done {
            if let Err(e) = complete(fut.bind(py), outcome) {
                e.print(py);
            }
        }
        Ok(())
    }
}

/// Sets the outcome on an asyncio future, unless it was cancelled meanwhile.
fn complete(fut: &Bound<'_, PyAny>, outcome: Outcome) -> PyResult<()> {
    let py = fut.py();
    if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(()); // cancelled while it ran
    }
    let value = outcome
        .map_err(|e| crate::errors::to_py(py, &e))
        .and_then(|out| out.into_py(py));
    match value {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,))?,
        Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.value(py),))?,
    };
    Ok(())
}

/// Cancels the Rust side when the asyncio future is cancelled (its done callback).
#[pyclass(frozen, module = "stor._stor")]
struct Abort(tokio::task::AbortHandle);

#[pymethods]
impl Abort {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut
            .call_method0(intern!(fut.py(), "cancelled"))?
            .is_truthy()?
        {
            self.0.abort();
        }
        Ok(())
    }
}

impl Bridge {
    /// Runs `work` on the runtime; returns the asyncio future of its outcome.
    pub fn spawn<F>(&self, py: Python<'_>, work: F) -> PyResult<Py<PyAny>>
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        let fut = self
            .event_loop
            .bind(py)
            .call_method0(intern!(py, "create_future"))?;
        let shared = self.shared.clone();
        let handle = fut.clone().unbind();
        let task = runtime().spawn(async move {
            let outcome = work.await;
            shared.complete(handle, outcome);
        });
        fut.call_method1(
            intern!(py, "add_done_callback"),
            (Abort(task.abort_handle()),),
        )?;
        Ok(fut.unbind())
    }
}
