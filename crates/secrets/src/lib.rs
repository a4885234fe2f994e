//! Secrets for Drover: values encrypted at rest, and masked in every log line.
//!
//! Two halves that share no state:
//!
//! - [`Keyring`] seals a secret value with XChaCha20-Poly1305 under a 32-byte key kept in a local
//!   key file, and opens it again as a [`SecretValue`], whose `Debug` and `Display` print `***`.
//!   The sealed bytes are opaque: the `store` crate persists them as a blob and never sees a
//!   plaintext.
//! - [`Masker`] replaces secret values, and the encodings of them a program is likely to print
//!   (base64, hex, percent- and backslash-escaped, with color codes in between), by `***` in log
//!   lines, one line at a time ([`Masker::mask_line`]) or as a stream that also catches a value
//!   split across any number of consecutive lines ([`Masker::stream`]). `tests/fuzz_masker.rs`
//!   checks that as a property: no character of any form of a secret gets through.
//!
//! **Invariants.** This crate does no IO other than reading and creating the key file: no tokio, no
//! SQLite, no network. It never logs, and no type of it prints a secret through `Debug` or
//! `Display`.

mod error;
mod forms;
mod keyring;
mod masker;
mod value;
mod view;

pub use error::SecretError;
pub use keyring::Keyring;
pub use masker::{MaskStream, Masker, MIN_VALUE_CHARS};
pub use value::SecretValue;
