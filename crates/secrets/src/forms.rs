//! The forms in which a secret value can show up in a log line, as literal patterns for the
//! masker: the value itself and its base64 encodings.
//!
//! Percent-encoded forms are not listed: there are too many encoders, each with its own set of
//! characters left alone and its own hex case. The masker decodes the line instead (see
//! [`crate::view`]), which covers them all with these same patterns.

use std::collections::BTreeSet;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::masker::MIN_VALUE_CHARS;

/// Adds the patterns for `value` to `patterns`: nothing when it is shorter than
/// [`MIN_VALUE_CHARS`], and for a value of several lines, also the patterns of each line, since a
/// log line can never hold the whole value.
pub(crate) fn add_forms(value: &str, patterns: &mut BTreeSet<String>) {
    add_forms_of_part(value, patterns);
    if value.contains(['\n', '\r']) {
        for line in value.lines() {
            add_forms_of_part(line, patterns);
        }
    }
}

fn add_forms_of_part(value: &str, patterns: &mut BTreeSet<String>) {
    if value.chars().count() < MIN_VALUE_CHARS {
        return;
    }
    patterns.insert(value.to_owned());
    let bytes = value.as_bytes();
    for (padded, unpadded) in [(&STANDARD, &STANDARD_NO_PAD), (&URL_SAFE, &URL_SAFE_NO_PAD)] {
        // The value encoded on its own, as `printf %s "$S" | base64` prints it.
        patterns.insert(padded.encode(bytes));
        patterns.insert(unpadded.encode(bytes));
        // The value inside a longer blob starts at a byte offset that is 0, 1 or 2 modulo 3. Each
        // alignment encodes it differently, and the characters at either end also depend on the
        // neighbouring bytes. The characters in between depend only on the value, so that stable
        // middle is the pattern.
        for alignment in 0..3 {
            let mut aligned = vec![0u8; alignment];
            aligned.extend_from_slice(bytes);
            let encoded = unpadded.encode(&aligned);
            // Character `k` encodes bits `6k..6k + 6` of the blob; the value owns bits
            // `8 * alignment..8 * (alignment + len)`.
            let first = (8 * alignment).div_ceil(6);
            let end = 8 * (alignment + bytes.len()) / 6;
            if end >= first + MIN_VALUE_CHARS {
                patterns.insert(encoded[first..end].to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, expected: &[&str]) {
        let mut patterns = BTreeSet::new();
        add_forms(value, &mut patterns);
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        assert_eq!(patterns, expected, "forms of {value:?}");
    }

    #[test]
    fn forms() {
        check("abc", &[]);
        // Computed independently with Python's base64 module. `abcd` encodes to "YWJjZA==", at
        // alignment 1 to "AGFiY2Q" (stable middle "FiY2") and at alignment 2 to "AABhYmNk" (stable
        // middle "hYmNk"); url-safe is the same for these bytes.
        check("abcd", &["FiY2", "YWJjZ", "YWJjZA", "YWJjZA==", "abcd", "hYmNk"]);
        // `>?>?` encodes with `+` and `/`, which differ between the two alphabets.
        check(
            ">?>?",
            &["+Pz4/", "-Pz4_", "4/Pj", "4_Pj", ">?>?", "Pj8+P", "Pj8+Pw", "Pj8+Pw==", "Pj8-P", "Pj8-Pw", "Pj8-Pw=="],
        );
        // A value of several lines also masks each of its lines on its own.
        check(
            "ab\ncdef",
            &[
                "FiCmNkZW",
                "NkZW",
                "Y2RlZ",
                "Y2RlZg",
                "Y2RlZg==",
                "YWIKY2RlZ",
                "YWIKY2RlZg",
                "YWIKY2RlZg==",
                "ab\ncdef",
                "cdef",
                "hYgpjZGVm",
                "jZGVm",
            ],
        );
    }
}
