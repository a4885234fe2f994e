//! The error type of the `runtime` crate.

use model::InstanceId;
use std::io;
use std::path::PathBuf;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("instance {id} already exists")]
    AlreadyExists { id: InstanceId },
    #[error("instance {id} not found")]
    NotFound { id: InstanceId },
    #[error("instance {id} is still running")]
    StillRunning { id: InstanceId },
    /// The spec cannot be run; nothing was started.
    #[error("instance {id}: {reason}")]
    InvalidSpec { id: InstanceId, reason: String },
    /// The instance did not come up; nothing of it is left running.
    #[error("instance {id} failed to start: {reason}")]
    StartFailed { id: InstanceId, reason: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The Docker engine refused or failed a request.
    #[error("docker: cannot {action}")]
    Docker {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot parse {}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl RuntimeError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
