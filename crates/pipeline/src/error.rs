//! The crate's error type.
//!
//! Every variant says what failed and where: the report file and position, the path, or the
//! test command. Underlying IO errors are kept as the `source`, not repeated in the message, so
//! `anyhow`'s `{:#}` prints each cause once.

use std::io;
use std::path::{Path, PathBuf};

/// Why parsing a report or running a test step failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A JUnit report is not well-formed XML or not shaped like JUnit.
    ///
    /// `line` and `column` are 1-based (columns count characters, as editors do); `offset` is
    /// the same place as a byte offset into the file.
    #[error("{file}:{line}:{column}: {message}")]
    Junit { file: String, line: u64, column: u64, offset: u64, message: String },
    /// A filesystem operation on `path` failed; `action` is e.g. "create directory" or "read".
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A test command could not be started, watched or waited for; `action` says which.
    ///
    /// A command that runs and fails is not an error: it is an
    /// [`ExitSummary::Failed`](crate::ExitSummary::Failed).
    #[error("cannot {action} test command {command:?}")]
    Command {
        action: &'static str,
        command: String,
        #[source]
        source: io::Error,
    },
}

/// Wraps an IO error with what was being done to which path, for `map_err`.
pub(crate) fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PipelineError + 'a {
    move |source| PipelineError::Io { action, path: path.to_owned(), source }
}
