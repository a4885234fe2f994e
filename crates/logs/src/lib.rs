//! Log records tagged with app, release and instance: capture, storage, reading, tailing.
//!
//! Every line an instance prints is stored as one [`LogRecord`] (a JSON object on its own line)
//! in `LOGS_ROOT/<app>/<instance>.log` (and, once that grew to [`MAX_SEGMENT_BYTES`], the older
//! records in `<instance>.log.1`), together with the app, release, instance, process type
//! and stream it came from, so a search index can be built later without re-parsing anything.
//!
//! - [`LogWriter`] appends records for one instance; the runtime's supervisor uses it to capture
//!   an app's stdout and stderr, and [`system`] lets the control plane add its own events.
//! - [`read_app`] returns an app's records merged across instances by timestamp.
//! - [`follow`] tails every instance file of an app, including files that appear later.
//!
//! **Invariants.** Each record is written with a single `write` on a file opened with
//! `O_APPEND`, so the supervisor and the control plane can append to the same file without
//! interleaving. Readers only consume complete lines, so a record being written is never seen
//! half-way. This crate knows nothing of processes: it reads bytes and writes files.

mod error;
mod follow;
mod reader;
mod record;
mod writer;

pub use error::LogError;
pub use follow::{follow, Follow, POLL_INTERVAL};
pub use reader::{read_app, ReadOptions};
pub use record::{now_millis, LogRecord, LogSource, Stream};
pub use writer::{
    app_dir, append, instance_log_path, rotated_log_path, system, LogWriter, MAX_LINE_BYTES, MAX_SEGMENT_BYTES,
};
