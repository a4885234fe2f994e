//! The error type of the `logs` crate: which file operation failed, and on which path.

use std::io;
use std::path::PathBuf;

/// Why logs could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation on a log file or directory failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The blocking task that reads files for [`crate::follow`] panicked or was cancelled.
    #[error("log reader task failed")]
    Reader(#[source] tokio::task::JoinError),
}

impl LogError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
