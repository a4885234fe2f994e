//! The one error type of this crate: what failed, and which key file or sealed value it was.

use std::io;
use std::path::PathBuf;

use crate::keyring::FORMAT_VERSION;

/// Errors from loading the key file and from opening a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Opening, reading or creating the key file failed in the operating system.
    #[error("cannot {action} key file {}", path.display())]
    KeyFileIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The key file is a directory, a device or a fifo.
    #[error("key file {} is not a regular file", path.display())]
    KeyFileNotRegular { path: PathBuf },
    /// The key file can be read or written by its group or by others.
    #[error("key file {} has mode {mode:03o}: group and others must have no access (chmod 600 it)", path.display())]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    /// The key file holds neither 32 raw bytes nor 64 hex digits.
    #[error("key file {} holds {len} bytes: expected 32 raw bytes or 64 hex digits", path.display())]
    KeyFileLength { path: PathBuf, len: u64 },
    /// The key file holds 64 characters, but not all of them are hex digits.
    #[error("key file {} holds 64 characters that are not all hex digits", path.display())]
    KeyFileHex { path: PathBuf },
    /// The sealed value is shorter than the header and tag that every sealed value has.
    #[error("sealed value for {context:?} is {len} bytes: too short to be a sealed value")]
    Truncated { context: String, len: usize },
    /// The sealed value was written in a format this version of Drover does not know.
    #[error("sealed value for {context:?} has format version {version}: this drover reads version {FORMAT_VERSION}")]
    UnknownVersion { context: String, version: u8 },
    /// Authentication failed. The AEAD cannot tell the causes apart: another key file, a value
    /// sealed for another context, or altered bytes.
    #[error("cannot decrypt the sealed value for {context:?}: it was sealed with another key file or for another context, or it was altered")]
    Decrypt { context: String },
}
