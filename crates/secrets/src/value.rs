//! [`SecretValue`]: a decrypted secret that does not print itself and is wiped when dropped.

use std::fmt;

use zeroize::Zeroizing;

/// A plaintext secret. `Debug` and `Display` print `***`, and the bytes are overwritten with
/// zeros when the value is dropped.
///
/// The bytes are only reachable through [`expose`](Self::expose) and
/// [`expose_str`](Self::expose_str), so every place that uses the plaintext can be found by
/// searching for `expose`.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps a plaintext. A `String` or `Vec<u8>` is moved in without a copy.
    pub fn new(plaintext: impl Into<Vec<u8>>) -> Self {
        SecretValue(Zeroizing::new(plaintext.into()))
    }

    /// The plaintext bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The plaintext as text, or `None` when it is not UTF-8 (a secret can hold any bytes, since
    /// [`Keyring::seal`](crate::Keyring::seal) takes bytes).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_print_a_mask() {
        let value = SecretValue::new("hunter2secret");
        assert_eq!(format!("{value:?} {value} {value:#?} {value:>20}"), "*** *** *** ***");
        assert_eq!(value.expose(), b"hunter2secret");
        assert_eq!(value.expose_str(), Some("hunter2secret"));
        assert_eq!(SecretValue::new(vec![0xff, 0xfe]).expose_str(), None);
    }
}
