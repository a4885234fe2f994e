//! Decoded views of a log line, so the masker finds an escaped secret with the same patterns as
//! the plain one, whichever characters the encoder escaped and in whichever hex case:
//!
//! - percent-escapes (`%2F` or `%2f`, and `+` for a space in a form body), as URLs print them;
//! - backslash escapes: JSON's (`\"`, `\\`, `\/`, `\n`, `\u00e9`, surrogate pairs), and the
//!   `\'`, `\xNN`, `\u{...}` and `\UNNNNNNNN` of Python, JavaScript and Rust's `Debug`;
//! - ANSI escape sequences removed (colors, cursor moves, OSC titles and hyperlinks), so a secret
//!   printed with color codes between its characters reads as one.
//!
//! These are not parsers of URLs or JSON documents: a log line is any text, and an escape can
//! appear anywhere in it, so each view decodes every escape it recognises and leaves every other
//! byte as it is. The views do not compose: a secret both percent-encoded and then JSON-escaped is
//! not found.
//!
//! A view keeps, for each decoded byte, the span of the line it came from, so a match in the view
//! masks exactly the escapes that spell the secret in the line, and the color codes between them.
//! A view also says where the line ends in an escape that more input could complete (`%4`, `\u00`,
//! `ESC [ 3`): the masker's stream then waits for the next line before it lets the line go.

use std::ops::Range;

/// How a `+` in the line is read by the percent decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plus {
    /// As a plus sign, like in a path or in most query strings.
    Literal,
    /// As a space, like in an HTML form body (`application/x-www-form-urlencoded`).
    Space,
}

/// One way of decoding a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoding {
    Percent(Plus),
    Backslash,
    Ansi,
}

/// A line with its escapes decoded.
pub(crate) struct DecodedView {
    pub(crate) bytes: Vec<u8>,
    /// `spans[i]`: the bytes of the line that decoded byte `i` came from, the whole escape for a
    /// decoded one (shared by all bytes of a multi-byte character).
    spans: Vec<Range<usize>>,
}

/// An escape at the end of a line that the next bytes could complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Open {
    /// Where the escape starts in the line.
    pub(crate) line_start: usize,
    /// Where it starts in the view, if there is one (its bytes are in the view as they are).
    pub(crate) view_start: usize,
}

/// What decoding a line gave.
pub(crate) struct Decoded {
    /// The view, or `None` when no escape in the line decodes to a byte for which `wanted` is true
    /// (or, for ANSI, when there is no escape sequence to remove). Such a view is not worth
    /// building: a match in it covers only bytes that are the same in the line, where the search
    /// already found it.
    pub(crate) view: Option<DecodedView>,
    pub(crate) open: Option<Open>,
}

enum Token {
    /// One byte of the line, as it is.
    Literal,
    /// An escape of `len` bytes that decodes to `bytes`.
    Decoded { len: usize, bytes: Vec<u8> },
    /// An escape sequence of `len` bytes that stands for nothing in the text.
    Removed { len: usize },
    /// The start of an escape that the end of the line cuts short.
    Open,
}

impl Decoding {
    pub(crate) const ALL: [Decoding; 4] =
        [Decoding::Percent(Plus::Literal), Decoding::Percent(Plus::Space), Decoding::Backslash, Decoding::Ansi];

    /// Whether an escape left open at the end of a line could itself be the first byte of a
    /// secret. An ANSI sequence decodes to nothing, so it can only interrupt one.
    pub(crate) fn open_escape_is_text(self) -> bool {
        self != Decoding::Ansi
    }

    fn starts_escape(self, byte: u8) -> bool {
        match self {
            Decoding::Percent(Plus::Literal) => byte == b'%',
            Decoding::Percent(Plus::Space) => byte == b'%' || byte == b'+',
            Decoding::Backslash => byte == b'\\',
            Decoding::Ansi => byte == ESC,
        }
    }

    /// Decodes `line`; see [`Decoded`] for when there is no view.
    pub(crate) fn decode(self, line: &[u8], wanted: &[bool; 256]) -> Decoded {
        if !line.iter().any(|&byte| self.starts_escape(byte)) {
            return Decoded { view: None, open: None };
        }
        let mut view = DecodedView { bytes: Vec::with_capacity(line.len()), spans: Vec::with_capacity(line.len()) };
        let mut worth_it = false;
        let mut open = None;
        let mut idx = 0;
        while idx < line.len() {
            match self.token(line, idx) {
                Token::Literal => {
                    view.bytes.push(line[idx]);
                    view.spans.push(idx..idx + 1);
                    idx += 1;
                }
                Token::Decoded { len, bytes } => {
                    worth_it |= bytes.iter().any(|&byte| wanted[usize::from(byte)]);
                    for byte in bytes {
                        view.bytes.push(byte);
                        view.spans.push(idx..idx + len);
                    }
                    idx += len;
                }
                Token::Removed { len } => {
                    worth_it = true;
                    idx += len;
                }
                Token::Open => {
                    open = Some(Open { line_start: idx, view_start: view.bytes.len() });
                    view.bytes.extend_from_slice(&line[idx..]);
                    view.spans.extend((idx..line.len()).map(|at| at..at + 1));
                    break;
                }
            }
        }
        match worth_it {
            true => Decoded { view: Some(view), open },
            false => Decoded { view: None, open: open.map(|open| Open { view_start: open.line_start, ..open }) },
        }
    }

    fn token(self, line: &[u8], idx: usize) -> Token {
        match self {
            Decoding::Percent(plus) => percent_token(line, idx, plus),
            Decoding::Backslash => backslash_token(line, idx),
            Decoding::Ansi => ansi_token(line, idx),
        }
    }
}

impl DecodedView {
    /// The span of the line that decodes to `range` of the view (not empty).
    pub(crate) fn origin_of(&self, range: Range<usize>) -> Range<usize> {
        self.spans[range.start].start..self.spans[range.end - 1].end
    }

    /// Where decoded byte `idx` starts in the line.
    pub(crate) fn start_of(&self, idx: usize) -> usize {
        self.spans[idx].start
    }

    /// Whether `offset` of the line falls inside an escape, so the line cannot be cut there
    /// without changing how the bytes after it decode.
    pub(crate) fn cuts_escape(&self, offset: usize) -> bool {
        let after = self.spans.partition_point(|span| span.start < offset);
        after > 0 && self.spans[after - 1].end > offset
    }
}

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

fn percent_token(line: &[u8], idx: usize, plus: Plus) -> Token {
    match line[idx] {
        b'%' => match hex_digits(line, idx + 1, 2) {
            Hex::Value(value) => Token::Decoded { len: 3, bytes: vec![byte(value)] },
            Hex::Cut => Token::Open,
            Hex::Invalid => Token::Literal,
        },
        b'+' if plus == Plus::Space => Token::Decoded { len: 1, bytes: vec![b' '] },
        _ => Token::Literal,
    }
}

fn backslash_token(line: &[u8], idx: usize) -> Token {
    if line[idx] != b'\\' {
        return Token::Literal;
    }
    let simple = |byte: u8| Token::Decoded { len: 2, bytes: vec![byte] };
    match line.get(idx + 1) {
        None => Token::Open,
        Some(&byte @ (b'"' | b'\\' | b'/' | b'\'')) => simple(byte),
        Some(b'b') => simple(0x08),
        Some(b'f') => simple(0x0c),
        Some(b'n') => simple(b'\n'),
        Some(b'r') => simple(b'\r'),
        Some(b't') => simple(b'\t'),
        Some(b'x') => match hex_digits(line, idx + 2, 2) {
            Hex::Value(value) => Token::Decoded { len: 4, bytes: vec![byte(value)] },
            Hex::Cut => Token::Open,
            Hex::Invalid => Token::Literal,
        },
        Some(b'U') => match hex_digits(line, idx + 2, 8) {
            Hex::Value(value) => char_token(10, value),
            Hex::Cut => Token::Open,
            Hex::Invalid => Token::Literal,
        },
        Some(b'u') if line.get(idx + 2) == Some(&b'{') => braced_token(line, idx),
        Some(b'u') => match hex_digits(line, idx + 2, 4) {
            Hex::Value(high @ 0xd800..=0xdbff) => surrogate_pair_token(line, idx, high),
            Hex::Value(value) => char_token(6, value),
            Hex::Cut => Token::Open,
            Hex::Invalid => Token::Literal,
        },
        Some(_) => Token::Literal,
    }
}

/// `\u{1F600}`: one to six hex digits in braces (Rust's `Debug`, JavaScript).
fn braced_token(line: &[u8], idx: usize) -> Token {
    let digits_start = idx + 3;
    let n_digits =
        line[digits_start.min(line.len())..].iter().take(7).take_while(|byte| byte.is_ascii_hexdigit()).count();
    let close = digits_start + n_digits;
    match line.get(close) {
        None if n_digits <= 6 => Token::Open,
        Some(b'}') if (1..=6).contains(&n_digits) => match hex_digits(line, digits_start, n_digits) {
            Hex::Value(value) => char_token(close + 1 - idx, value),
            _ => Token::Literal,
        },
        _ => Token::Literal,
    }
}

/// `\ud83d\ude00`: a high surrogate must be followed by a low one to make a character; a lone
/// surrogate is left as it is.
fn surrogate_pair_token(line: &[u8], idx: usize, high: u32) -> Token {
    let low_start = idx + 6;
    let rest = &line[low_start.min(line.len())..];
    let marker_len = rest.len().min(2);
    if rest[..marker_len] != b"\\u"[..marker_len] {
        return Token::Literal;
    }
    if marker_len < 2 {
        return Token::Open;
    }
    match hex_digits(line, low_start + 2, 4) {
        Hex::Value(low @ 0xdc00..=0xdfff) => char_token(12, 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)),
        Hex::Cut => Token::Open,
        Hex::Value(_) | Hex::Invalid => Token::Literal,
    }
}

fn char_token(len: usize, value: u32) -> Token {
    match char::from_u32(value) {
        Some(ch) => Token::Decoded { len, bytes: ch.to_string().into_bytes() },
        None => Token::Literal,
    }
}

fn ansi_token(line: &[u8], idx: usize) -> Token {
    if line[idx] != ESC {
        return Token::Literal;
    }
    match line.get(idx + 1) {
        None => Token::Open,
        // CSI: parameter bytes, intermediate bytes, one final byte (`ESC [ 1 ; 31 m`).
        Some(b'[') => {
            let params =
                idx + 2 + line[(idx + 2).min(line.len())..].iter().take_while(|b| (0x30..=0x3f).contains(*b)).count();
            let end = params + line[params.min(line.len())..].iter().take_while(|b| (0x20..=0x2f).contains(*b)).count();
            match line.get(end) {
                None => Token::Open,
                Some(0x40..=0x7e) => Token::Removed { len: end + 1 - idx },
                Some(_) => Token::Literal,
            }
        }
        // OSC: a window title or a hyperlink, up to BEL or `ESC \`.
        Some(b']') => {
            let payload = &line[idx + 2..];
            let end = payload.iter().enumerate().find_map(|(at, &byte)| match byte {
                BEL => Some(at + 1),
                ESC if payload.get(at + 1) == Some(&b'\\') => Some(at + 2),
                _ => None,
            });
            match end {
                Some(len) => Token::Removed { len: 2 + len },
                None => Token::Open,
            }
        }
        // `ESC ( B` and the like: intermediate bytes, then one final byte.
        Some(0x20..=0x2f) => match line.get(idx + 2) {
            None => Token::Open,
            Some(0x30..=0x7e) => Token::Removed { len: 3 },
            Some(_) => Token::Literal,
        },
        // Two-byte sequences: `ESC 7`, `ESC M`, `ESC c`.
        Some(0x30..=0x7e) => Token::Removed { len: 2 },
        Some(_) => Token::Literal,
    }
}

enum Hex {
    Value(u32),
    /// The line ends before all the digits, and those before its end are hex.
    Cut,
    Invalid,
}

/// Reads exactly `n` hex digits at `start` (at most 8).
fn hex_digits(line: &[u8], start: usize, n: usize) -> Hex {
    let available = &line[start.min(line.len())..];
    let digits = &available[..available.len().min(n)];
    match digits.iter().map(|&byte| char::from(byte).to_digit(16)).collect::<Option<Vec<u32>>>() {
        None => Hex::Invalid,
        Some(values) if values.len() < n => Hex::Cut,
        Some(values) => Hex::Value(values.into_iter().fold(0, |value, digit| value << 4 | digit)),
    }
}

fn byte(value: u32) -> u8 {
    u8::try_from(value).expect("two hex digits make a byte")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [bool; 256] = [true; 256];

    /// Decodes `line` and compares the view (`None` for no view) and where an open escape starts.
    fn check(decoding: Decoding, line: &str, expected: Option<&str>, open: Option<usize>) {
        let decoded = decoding.decode(line.as_bytes(), &ALL);
        let view = decoded.view.as_ref().map(|view| String::from_utf8_lossy(&view.bytes).into_owned());
        assert_eq!(view.as_deref(), expected, "{line:?} with {decoding:?}");
        assert_eq!(decoded.open.map(|open| open.line_start), open, "open escape of {line:?} with {decoding:?}");
        let Some(view) = decoded.view else { return };
        // Every decoded byte maps back to a span of the line that decodes to it, alone or with the
        // other bytes of its character.
        for idx in 0..view.bytes.len() {
            let span = view.origin_of(idx..idx + 1);
            let again = decoding.decode(&line.as_bytes()[span.clone()], &ALL);
            let again = again.view.map_or(line.as_bytes()[span].to_vec(), |view| view.bytes);
            assert!(again.contains(&view.bytes[idx]), "{line:?} byte {idx}");
        }
    }

    #[test]
    fn percent() {
        let literal = Decoding::Percent(Plus::Literal);
        let space = Decoding::Percent(Plus::Space);
        check(literal, "plain line", None, None);
        check(literal, "a+b", None, None);
        check(space, "a+b", Some("a b"), None);
        check(literal, "100% sure, %zz, %4x", None, None);
        check(literal, "q=a%20b%26c%2fd%2Be", Some("q=a b&c/d+e"), None);
        check(space, "q=a+b%2Bc", Some("q=a b+c"), None);
        check(literal, "%%41%4", Some("%A%4"), Some(4));
        check(literal, "caf%C3%A9 café", Some("café café"), None);
        // A line that ends in an escape more input could complete.
        check(literal, "100%", None, Some(3));
        check(literal, "pw=my%2", None, Some(5));
        check(literal, "pw=%41%2", Some("pw=A%2"), Some(6));
    }

    #[test]
    fn backslash() {
        let json = Decoding::Backslash;
        check(json, "plain line", None, None);
        check(json, r#"{"pw":"a\"b\\c\/d"}"#, Some(r#"{"pw":"a"b\c/d"}"#), None);
        check(json, r"line\none\ttab\r\b\f", Some("line\none\ttab\r\u{8}\u{c}"), None);
        check(json, r"\u00e9\u00C9 \xe9 \u{e9} \U000000e9", Some("éÉ \u{fffd} é é"), None);
        check(json, r"\ud83d\ude00 \u{1F600}", Some("😀 😀"), None);
        // A lone surrogate, unknown escapes and bad digits stay as they are.
        check(json, r"\ud83d! \ude00 \q \u12 \xg", None, None);
        check(json, r"\ud83d\u0041", Some(r"\ud83dA"), None);
        check(json, r"\u{110000} \u{} \u{1234567}", None, None);
        // Escapes cut short by the end of the line.
        check(json, r"a\", None, Some(1));
        check(json, r"a\u00", None, Some(1));
        check(json, r"a\x4", None, Some(1));
        check(json, r"a\u{1F6", None, Some(1));
        check(json, r"a\U0001F6", None, Some(1));
        check(json, r"a\ud83d", None, Some(1));
        check(json, r"a\ud83d\", None, Some(1));
        check(json, r"a\ud83d\ude0", None, Some(1));
        check(json, r"\\\", Some(r"\\"), Some(2));
    }

    #[test]
    fn ansi() {
        let ansi = Decoding::Ansi;
        check(ansi, "plain line", None, None);
        check(ansi, "\x1b[31mred\x1b[0m \x1b[1;38;5;208mbold\x1b[m", Some("red bold"), None);
        check(ansi, "a\x1b]0;title\x07b\x1b]8;;http://x\x1b\\c", Some("abc"), None);
        check(ansi, "a\x1b(Bb\x1b7c\x1bMd", Some("abcd"), None);
        // Not a sequence: left as it is.
        check(ansi, "a\x1b\x01b", None, None);
        // Cut short by the end of the line.
        check(ansi, "a\x1b", None, Some(1));
        check(ansi, "a\x1b[1;3", None, Some(1));
        check(ansi, "a\x1b]0;tit", None, Some(1));
        check(ansi, "\x1b[0ma\x1b[", Some("a\x1b["), Some(5));
    }

    #[test]
    fn no_view_without_wanted_escapes() {
        let mut slash = [false; 256];
        slash[usize::from(b'/')] = true;
        let mut space = slash;
        space[usize::from(b' ')] = true;
        let cases = [
            ("user=alice%40example.com", Decoding::Percent(Plus::Literal), &slash, false),
            ("user=alice%40example.com%2fx", Decoding::Percent(Plus::Literal), &slash, true),
            ("a+b", Decoding::Percent(Plus::Space), &slash, false),
            ("a+b", Decoding::Percent(Plus::Space), &space, true),
            ("a+b", Decoding::Percent(Plus::Literal), &space, false),
            (r"a\n\u0041", Decoding::Backslash, &slash, false),
            (r"a\n\/", Decoding::Backslash, &slash, true),
            // Removing a color code can join the parts of a secret, whatever they are.
            ("a\x1b[0mb", Decoding::Ansi, &slash, true),
        ];
        for (line, decoding, wanted, expected) in cases {
            assert_eq!(decoding.decode(line.as_bytes(), wanted).view.is_some(), expected, "{line:?} {decoding:?}");
        }
    }

    #[test]
    fn cuts_escape() {
        let decoded = Decoding::Percent(Plus::Literal).decode(b"a%41b", &ALL);
        let view = decoded.view.unwrap();
        let cuts: Vec<bool> = (0..=5).map(|offset| view.cuts_escape(offset)).collect();
        assert_eq!(cuts, [false, false, true, true, false, false]);
    }
}
