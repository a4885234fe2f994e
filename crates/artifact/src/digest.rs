//! Hashing: the build cache key of a source tree, and sha256 of slug bytes as they stream.
//!
//! The cache key is a sha256 over a length-prefixed encoding of the tree and the build inputs,
//! so no two different inputs share an encoding (a path cannot run into the next path, a
//! command into the env).

use crate::error::{io_error, ArtifactError};
use crate::tree::{Entry, Kind};
use model::{BuildStep, Digest};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What an input digest keys; each has its own version tag, bumped whenever the encoding below
/// changes, so old entries are simply never hit and a layer key never equals a build key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// A whole build: the source tree and every step.
    Build,
    /// One cached layer: its inputs only, and its own step.
    Layer,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Build => b"drover build input v2\0",
            Purpose::Layer => b"drover layer input v1\0",
        }
    }
}

/// Hashes the walked `entries` of `src` (paths, exec bits, contents) with the build steps
/// (commands, inputs, outputs) and env. Modification times, owners and other mode bits do not
/// count.
pub(crate) fn input(
    purpose: Purpose,
    src: &Path,
    entries: &[Entry],
    build: &[BuildStep],
    env: &BTreeMap<String, String>,
) -> Result<Digest, ArtifactError> {
    let mut hasher = Sha256::new();
    hasher.update(purpose.tag());
    put_len(&mut hasher, entries.len());
    for entry in entries {
        let tag: &[u8] = match entry.kind {
            Kind::Dir => b"d",
            Kind::File { exec: false } => b"f",
            Kind::File { exec: true } => b"x",
            Kind::Symlink { .. } => b"l",
        };
        hasher.update(tag);
        put_bytes(&mut hasher, entry.rel.as_os_str().as_bytes());
        match &entry.kind {
            Kind::File { .. } => {
                let path = src.join(&entry.rel);
                let file = File::open(&path).map_err(io_error("open", &path))?;
                hasher.update(sha256(file).map_err(io_error("read", &path))?);
            }
            Kind::Symlink { target } => put_bytes(&mut hasher, target.as_os_str().as_bytes()),
            Kind::Dir => {}
        }
    }
    put_len(&mut hasher, build.len());
    for step in build {
        put_bytes(&mut hasher, step.run.as_bytes());
        for paths in [&step.inputs, &step.outputs] {
            put_len(&mut hasher, paths.len());
            for path in paths {
                put_bytes(&mut hasher, path.as_bytes());
            }
        }
    }
    put_len(&mut hasher, env.len());
    for (key, value) in env {
        put_bytes(&mut hasher, key.as_bytes());
        put_bytes(&mut hasher, value.as_bytes());
    }
    Ok(Digest::from_sha256(&hasher.finalize().into()))
}

fn put_len(hasher: &mut Sha256, len: usize) {
    hasher.update((len as u64).to_le_bytes());
}

fn put_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    put_len(hasher, bytes.len());
    hasher.update(bytes);
}

/// The sha256 of everything `reader` yields.
pub(crate) fn sha256(mut reader: impl Read) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    io::copy(&mut reader, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// A writer that hashes and counts the bytes passing through it.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), len: 0 }
    }

    /// The inner writer, the digest of what was written and its length in bytes.
    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_sha256(&self.hasher.finalize().into()), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
