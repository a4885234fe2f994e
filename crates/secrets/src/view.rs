//! Percent-decoded views of a log line, so the masker finds a URL-encoded secret with the same
//! patterns as the plain one, whichever characters the encoder escaped and in whichever hex case.
//!
//! A view keeps, for each decoded byte, where it came from in the line, so a match in the view
//! masks exactly the escapes that spell the secret in the line.

use std::ops::Range;

/// How a `+` in the line is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plus {
    /// As a plus sign, like in a path or in most query strings.
    Literal,
    /// As a space, like in an HTML form body (`application/x-www-form-urlencoded`).
    Space,
}

/// A line with its `%XX` escapes decoded.
pub(crate) struct DecodedView {
    pub(crate) bytes: Vec<u8>,
    /// `origin[i]` is where decoded byte `i` starts in the line; one more entry holds the line's
    /// length, so decoded byte `i` spans `origin[i]..origin[i + 1]`.
    origin: Vec<usize>,
}

impl DecodedView {
    /// Decodes `line`, or returns `None` when no escape (nor `+` read as a space) decodes to a byte
    /// for which `wanted` is true. A view of such a line is not worth building: a match in it
    /// covers only bytes that are the same in the line, where the search already found it.
    pub(crate) fn decode(line: &[u8], plus: Plus, wanted: &[bool; 256]) -> Option<DecodedView> {
        let wanted_escape = line.iter().enumerate().any(|(idx, &byte)| match byte {
            b'%' => line.get(idx + 1..idx + 3).and_then(hex_byte).is_some_and(|byte| wanted[usize::from(byte)]),
            b'+' => plus == Plus::Space && wanted[usize::from(b' ')],
            _ => false,
        });
        if !wanted_escape {
            return None;
        }
        let mut bytes = Vec::with_capacity(line.len());
        let mut origin = Vec::with_capacity(line.len() + 1);
        let mut idx = 0;
        while idx < line.len() {
            origin.push(idx);
            let (byte, len) = match line[idx] {
                b'%' => line.get(idx + 1..idx + 3).and_then(hex_byte).map_or((b'%', 1), |byte| (byte, 3)),
                b'+' if plus == Plus::Space => (b' ', 1),
                byte => (byte, 1),
            };
            bytes.push(byte);
            idx += len;
        }
        origin.push(line.len());
        Some(DecodedView { bytes, origin })
    }

    /// The span of the line that decodes to `range` of the view.
    pub(crate) fn origin_of(&self, range: Range<usize>) -> Range<usize> {
        self.origin[range.start]..self.origin[range.end]
    }
}

fn hex_byte(digits: &[u8]) -> Option<u8> {
    let digit = |byte: u8| char::from(byte).to_digit(16);
    Some(u8::try_from(digit(digits[0])? * 16 + digit(digits[1])?).expect("two hex digits make a byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [bool; 256] = [true; 256];

    fn check(line: &str, plus: Plus, expected: Option<&str>) {
        let view = DecodedView::decode(line.as_bytes(), plus, &ALL);
        let decoded = view.as_ref().map(|view| String::from_utf8_lossy(&view.bytes).into_owned());
        assert_eq!(decoded.as_deref(), expected, "{line:?} with {plus:?}");
        let Some(view) = view else { return };
        // Every decoded byte maps back to a span of the line that decodes to it alone.
        for idx in 0..view.bytes.len() {
            let span = &line.as_bytes()[view.origin_of(idx..idx + 1)];
            let again = DecodedView::decode(span, plus, &ALL).map_or(span.to_vec(), |view| view.bytes);
            assert_eq!(again, [view.bytes[idx]], "{line:?} byte {idx}");
        }
    }

    #[test]
    fn decode() {
        check("plain line", Plus::Literal, None);
        check("a+b", Plus::Literal, None);
        check("a+b", Plus::Space, Some("a b"));
        check("100% sure, %zz, %4", Plus::Literal, None);
        check("q=a%20b%26c%2fd%2Be", Plus::Literal, Some("q=a b&c/d+e"));
        check("q=a+b%2Bc", Plus::Space, Some("q=a b+c"));
        check("%%41%4", Plus::Literal, Some("%A%4"));
        check("caf%C3%A9 café", Plus::Literal, Some("café café"));
    }

    #[test]
    fn no_view_without_wanted_escapes() {
        let mut slash = [false; 256];
        slash[usize::from(b'/')] = true;
        let mut space = slash;
        space[usize::from(b' ')] = true;
        let cases = [
            ("user=alice%40example.com", Plus::Literal, &slash, false),
            ("user=alice%40example.com%2fx", Plus::Literal, &slash, true),
            ("a+b", Plus::Space, &slash, false),
            ("a+b", Plus::Space, &space, true),
            ("a+b", Plus::Literal, &space, false),
        ];
        for (line, plus, wanted, expected) in cases {
            assert_eq!(DecodedView::decode(line.as_bytes(), plus, wanted).is_some(), expected, "{line:?} {plus:?}");
        }
    }
}
