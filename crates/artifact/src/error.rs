//! The crate's error type.
//!
//! Every variant says what failed and where: the file, the tarball entry or the build command.
//! Underlying IO errors are kept as the `source`, not repeated in the message, so
//! `anyhow`'s `{:#}` prints each cause once.

use model::Digest;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// Why an artifact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A filesystem operation on `path` failed; `action` is e.g. "read" or "create directory".
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The gzip or tar stream is malformed, truncated or could not be read.
    #[error("cannot read tarball")]
    Tarball {
        #[source]
        source: io::Error,
    },
    #[error("tarball entry {path:?}: absolute paths are not allowed")]
    AbsolutePath { path: String },
    #[error("tarball entry {path:?}: `..` components are not allowed")]
    ParentDir { path: String },
    #[error("tarball entry {path:?}: file has an empty path")]
    EmptyPath { path: String },
    #[error("tarball entry {path:?} is a hard link: hard links are not allowed")]
    HardLink { path: String },
    #[error("tarball entry {path:?} is a symlink to {target:?}: a link must be relative and stay inside the tree")]
    LinkOutside { path: String, target: String },
    /// An entry would be written at or below a symlink an earlier entry made.
    #[error("tarball entry {path:?} would be written through the symlink {link:?}")]
    ThroughLink { path: String, link: String },
    #[error("tarball entry {path:?} is a symlink where another entry already is")]
    LinkOverEntry { path: String },
    /// Devices, fifos, sparse files and entry types we do not know.
    #[error("tarball entry {path:?} is a {kind}: only files, directories and symlinks are allowed")]
    SpecialEntry { path: String, kind: String },
    #[error("tarball entry {path:?}: unpacked size exceeds the limit of {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("cannot unpack into {}: it exists and is not an empty directory", path.display())]
    DestNotEmpty { path: PathBuf },
    /// A source or build tree holds something other than files, directories and symlinks.
    #[error(
        "{} is a {kind}: only files, directories and symlinks are allowed in a source or build tree",
        path.display()
    )]
    UnsupportedFile { path: PathBuf, kind: &'static str },
    #[error(
        "{} is a symlink to {}: a link must be relative and stay inside the source or build tree",
        path.display(), target.display()
    )]
    LinkOutsideTree { path: PathBuf, target: PathBuf },
    #[error("cannot run build command {command:?}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("build command {command:?} failed: {status}")]
    BuildFailed { command: String, status: ExitStatus },
    #[error("the build was cancelled while {command:?} ran")]
    Cancelled { command: String },
    #[error("the build took longer than its build_timeout of {}s: {command:?} was stopped", timeout.as_secs())]
    TimedOut { command: String, timeout: std::time::Duration },
    /// `step` is the step's number in `build:`, from 1.
    #[error("build step {step}: input {path:?} does not exist in the source tree")]
    LayerInputMissing { step: usize, path: String },
    #[error("build step {step}: {command:?} left no output {path:?}")]
    LayerOutputMissing { step: usize, command: String, path: String },
    #[error(
        "build step {step}: output {path:?} is already in the build tree; a cached step adds its outputs, \
         so remove {path:?} from the source (or from what earlier steps make)"
    )]
    LayerOutputExists { step: usize, path: String },
    #[error("slug {digest} not found")]
    NotFound { digest: Digest },
    #[error("slug {digest} is corrupt: its tarball hashes to {actual}")]
    DigestMismatch { digest: Digest, actual: Digest },
}

/// Wraps an IO error with what was being done to which path, for `map_err`.
pub(crate) fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArtifactError + 'a {
    move |source| ArtifactError::Io { action, path: path.to_owned(), source }
}
