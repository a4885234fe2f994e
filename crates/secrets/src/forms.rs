//! The forms in which a secret value can show up in a log line, as literal patterns for the
//! masker: the value itself, its base64 encodings, its hex encodings (lower and upper case) and
//! the base64 encodings of those.
//!
//! Escaped forms are not listed: percent-encoding, JSON and other backslash escapes, and ANSI
//! color codes between the characters come in too many variants (which characters are escaped, in
//! which hex case). The masker decodes the line instead (see [`crate::view`]), which covers them
//! all with these same patterns, and so also the escaped forms of the base64 and hex forms.
//!
//! Not covered: hex in mixed case, hex with separators (`de:ad`, `0xde 0xad`), hex of a base64
//! form, and any other encoding or transformation (reversed, compressed, encrypted).

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
    add_base64_forms(value.as_bytes(), patterns);
    // As `xxd -p` or a program's hex encoder prints it. Hex inside a longer hex blob is the same
    // string, since each byte owns its two digits; `xxd -p` wraps lines, which the stream joins.
    for hex in [hex::encode(value), hex::encode_upper(value)] {
        add_base64_forms(hex.as_bytes(), patterns);
        patterns.insert(hex);
    }
}

fn add_base64_forms(bytes: &[u8], patterns: &mut BTreeSet<String>) {
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
        // middle "hYmNk"); url-safe is the same for these bytes. Its hex has no letters, so lower
        // and upper case are one form, "61626364", with its own base64 forms.
        check(
            "abcd",
            &[
                "2MTYyNjM2N",
                "61626364",
                "FiY2",
                "NjE2MjYzNj",
                "NjE2MjYzNjQ",
                "NjE2MjYzNjQ=",
                "YWJjZ",
                "YWJjZA",
                "YWJjZA==",
                "YxNjI2MzY0",
                "abcd",
                "hYmNk",
            ],
        );
        // `>?>?` encodes with `+` and `/`, which differ between the two alphabets; its hex has
        // letters, so both cases are forms.
        check(
            ">?>?",
            &[
                "+Pz4/",
                "-Pz4_",
                "3E3F3E3F",
                "3e3f3e3f",
                "4/Pj",
                "4_Pj",
                ">?>?",
                "M0UzRjNFM0",
                "M0UzRjNFM0Y",
                "M0UzRjNFM0Y=",
                "M2UzZjNlM2",
                "M2UzZjNlM2Y",
                "M2UzZjNlM2Y=",
                "NFM0YzRTNG",
                "NlM2YzZTNm",
                "Pj8+P",
                "Pj8+Pw",
                "Pj8+Pw==",
                "Pj8-P",
                "Pj8-Pw",
                "Pj8-Pw==",
                "zRTNGM0UzR",
                "zZTNmM2UzZ",
            ],
        );
    }

    #[test]
    fn a_value_of_several_lines_also_masks_each_line() {
        let mut forms = BTreeSet::new();
        add_forms("ab\ncdef\r\nghij", &mut forms);
        let mut expected = BTreeSet::new();
        // "ab" is too short to be masked on its own.
        for part in ["ab\ncdef\r\nghij", "cdef", "ghij"] {
            add_forms_of_part(part, &mut expected);
        }
        assert_eq!(forms, expected);
    }
}
