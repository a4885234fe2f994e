//! [`Keyring`]: the key file, and sealing and opening values with XChaCha20-Poly1305.
//!
//! A sealed value is laid out as
//!
//! ```text
//! version (1 byte, = 1) | nonce (24 bytes, random) | ciphertext | tag (16 bytes)
//! ```
//!
//! The associated data is the version byte followed by the caller's context (for example
//! `app=hello;stage=staging;key=DB_PASSWORD`), so a sealed value copied to another app, stage or
//! key fails to open instead of silently becoming that other secret. The nonce is random: 24 bytes
//! make a collision negligible however many values one key seals, so no counter has to be kept.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::{SecretError, SecretValue};

/// The first byte of every sealed value; bump it when the layout or the cipher changes.
pub(crate) const FORMAT_VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// The key that seals and opens secret values, loaded from a key file.
///
/// `Debug` prints no key material. The key is wiped from memory when the keyring is dropped.
#[derive(Clone)]
pub struct Keyring {
    cipher: XChaCha20Poly1305,
}

impl Keyring {
    /// Loads the key file at `path`, or creates it if it does not exist.
    ///
    /// A new key file holds 32 random bytes as 64 hex digits and a newline, is created with mode
    /// 0600 and is synced to disk, together with its directory, before this returns. It is written
    /// under a temporary name and then linked into place, so a crash never leaves a half-written
    /// key file, and when two processes race, both end up with the same key. The directory must
    /// exist.
    ///
    /// An existing key file may hold 32 raw bytes or 64 hex digits (surrounding whitespace is
    /// ignored). It is refused when its group or others have any access to it, since anyone who
    /// reads it can read every secret.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        match File::open(path) {
            Ok(file) => load(path, file),
            Err(source) if source.kind() == io::ErrorKind::NotFound => create(path),
            Err(source) => Err(io_error("open", path)(source)),
        }
    }

    /// Encrypts `plaintext` for `context`. Only [`open`](Self::open) with the same context and key
    /// gets it back. Sealing the same plaintext twice gives different bytes.
    ///
    /// # Panics
    ///
    /// When the operating system's random number generator fails, which a working Linux never
    /// does.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let aad = associated_data(context);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: &aad })
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut sealed = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts a value sealed by [`seal`](Self::seal) for the same `context`.
    ///
    /// Fails when the bytes are too short, carry an unknown format version, or do not
    /// authenticate: another key, another context, or altered bytes.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<SecretValue, SecretError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(SecretError::Truncated { context: context.to_owned(), len: sealed.len() });
        }
        let (header, ciphertext) = sealed.split_at(HEADER_LEN);
        let (version, nonce) = header.split_at(1);
        if version[0] != FORMAT_VERSION {
            return Err(SecretError::UnknownVersion { context: context.to_owned(), version: version[0] });
        }
        let nonce = XNonce::try_from(nonce).expect("the header holds exactly one nonce");
        let aad = associated_data(context);
        let plaintext = self
            .cipher
            .decrypt(&nonce, Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| SecretError::Decrypt { context: context.to_owned() })?;
        Ok(SecretValue::new(plaintext))
    }

    fn from_key(key: &[u8; KEY_LEN]) -> Self {
        let cipher = XChaCha20Poly1305::new_from_slice(key).expect("the key is 32 bytes");
        Keyring { cipher }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

/// The version byte is authenticated too, so a future format cannot be confused with this one.
fn associated_data(context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + context.len());
    aad.push(FORMAT_VERSION);
    aad.extend_from_slice(context.as_bytes());
    aad
}

fn load(path: &Path, file: File) -> Result<Keyring, SecretError> {
    // The checks use the opened file's metadata, not the path's, so the file checked is the file
    // read even if the path is swapped in between.
    let metadata = file.metadata().map_err(io_error("inspect", path))?;
    if !metadata.is_file() {
        return Err(SecretError::KeyFileNotRegular { path: path.to_owned() });
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::KeyFilePermissions { path: path.to_owned(), mode });
    }
    // Read one byte more than the longest valid content (64 hex digits, a newline and some
    // whitespace), so a large file is refused without reading it all.
    let mut content = Zeroizing::new(Vec::with_capacity(129));
    file.take(129).read_to_end(&mut content).map_err(io_error("read", path))?;
    let key = parse_key(&content).map_err(|reason| match reason {
        KeyFormat::Length => SecretError::KeyFileLength { path: path.to_owned(), len: metadata.len() },
        KeyFormat::Hex => SecretError::KeyFileHex { path: path.to_owned() },
    })?;
    Ok(Keyring::from_key(&key))
}

enum KeyFormat {
    Length,
    Hex,
}

fn parse_key(content: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyFormat> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if content.len() == KEY_LEN {
        key.copy_from_slice(content);
        return Ok(key);
    }
    let digits = content.trim_ascii();
    if digits.len() != 2 * KEY_LEN {
        return Err(KeyFormat::Length);
    }
    hex::decode_to_slice(digits, &mut key[..]).map_err(|_| KeyFormat::Hex)?;
    Ok(key)
}

fn create(path: &Path) -> Result<Keyring, SecretError> {
    let key = Zeroizing::new(
        <[u8; KEY_LEN]>::try_generate().map_err(|source| io_error("create", path)(io::Error::other(source)))?,
    );
    let mut content = Zeroizing::new([0u8; 2 * KEY_LEN + 1]);
    hex::encode_to_slice(&key[..], &mut content[..2 * KEY_LEN]).expect("64 bytes hold 32 bytes as hex");
    content[2 * KEY_LEN] = b'\n';

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = temporary_path(path);
    write_new(&tmp, &content[..]).map_err(io_error("create", path))?;
    // `hard_link` fails when `path` exists, unlike `rename`: a key file created meanwhile by
    // another process wins, and this process loads it instead of overwriting it.
    let linked = std::fs::hard_link(&tmp, path);
    // The temporary name goes away in every case. Failing to remove it leaves a 0600 file behind,
    // which is not worth failing for.
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(io_error("sync the directory of", path))?;
            Ok(Keyring::from_key(&key))
        }
        Err(source) if source.kind() == io::ErrorKind::AlreadyExists => {
            let file = File::open(path).map_err(io_error("open", path))?;
            load(path, file)
        }
        Err(source) => Err(io_error("create", path)(source)),
    }
}

/// A name next to `path`, unique to this process and this call.
fn temporary_path(path: &Path) -> PathBuf {
    let suffix = u64::generate();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{suffix:016x}", std::process::id()));
    path.with_file_name(name)
}

fn write_new(path: &Path, content: &[u8]) -> io::Result<()> {
    // `mode` is applied at creation, so the key is never readable by others, not even briefly.
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let written = file.write_all(content).and_then(|()| file.sync_all());
    if written.is_err() {
        // This call created the file, so it removes it; the write error is the one worth reporting.
        let _ = std::fs::remove_file(path);
    }
    written
}

fn io_error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> SecretError + 'p {
    move |source| SecretError::KeyFileIo { action, path: path.to_owned(), source }
}
