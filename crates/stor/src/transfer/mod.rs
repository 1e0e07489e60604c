//! The transfer engine: one generic implementation over the backend primitives.
//!
//! Uploads: one PUT up to `multipart_threshold`, else multipart — parts sent
//! concurrently (at most `max_concurrency` per transfer, and every request under the
//! client-wide request budget), each part retried on its own, completed in order,
//! and aborted on any failure *or cancellation* (an abort guard aborts the upload
//! if the future is dropped), so no multipart upload is left behind.
//!
//! Downloads: on backends that take ranges cheaply (S3), the first request reads the
//! first part and learns size and ETag; the rest is read by parallel ranged GETs
//! pinned to that ETag with If-Match, so an object replaced mid-download is an
//! error, never a mixed file. Every range resumes from the last byte received when
//! a connection breaks. Files are written to a temp file beside the target and
//! renamed only when complete.
//!
//! One module per engine — `upload`, `multipart`, `download`, `copy` — over the
//! core (`core.rs`) they are given; `parts` holds the part and range
//! arithmetic they share.

mod condition;
mod copy;
mod download;
mod multipart;
mod parts;
mod resume;
mod upload;

pub(crate) use crate::backend::multipart_of;
pub(crate) use copy::{copy, move_object};
pub(crate) use download::{download_to_file, download_to_memory, open_stream, FileTarget};
pub use multipart::wait_for_pending_aborts;
pub use parts::{
    copy_ranges, download_ranges, part_count, part_size, AUTO_PART_SIZE, MAX_DOWNLOAD_RANGE,
    MAX_OBJECT_SIZE,
};
pub(crate) use resume::absolute;
pub use resume::kept_for_resume;
pub(crate) use upload::{upload, Source};
