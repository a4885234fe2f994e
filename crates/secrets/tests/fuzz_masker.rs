//! Fuzz target `fuzz_masker` (issue 9, finding 8): masking is a property, not a list of cases.
//!
//! A case is a secret and the lines of one stream. Every character of those lines is either one
//! of the [`SURROUNDING`] characters, which no form of any secret contains, or part of a form of
//! the secret: the plaintext or an encoding of it, possibly split across lines. So after masking,
//! nothing but surrounding characters and `***` may be left, and each line keeps exactly the
//! surrounding characters it had. That is stronger than "no line shows the plaintext": it also
//! fails when one piece of a split secret shows.
//!
//! The target first replays every file of `fuzz/corpus/fuzz_masker/` (the format is in
//! [`parse_corpus_file`]), then runs random cases: a secret of printable and special characters
//! (sometimes of several lines), in every form the masker knows (plain, base64, hex, base64 of hex)
//! and every escaping of that (none, percent, backslash, ANSI colors between the characters),
//! amid surrounding text, cut into lines at random places or one character per line. A failing
//! random case is printed in the corpus format, ready to be added to the corpus.
//!
//! `DROVER_FUZZ_CASES=100000 cargo test -p secrets --test fuzz_masker` runs longer.

use std::fmt::Write as _;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use secrets::Masker;

/// Characters that no form of a secret holds: the text around the secret in a case.
const SURROUNDING: [char; 4] = ['|', '~', '·', '—'];

/// A stream holds at most this many times as many lines as the longest form has bytes, and as
/// many bytes after its first line, as [`secrets::MaskStream`] documents. Random cases that need
/// more are skipped.
const HOLD_FACTOR: usize = 16;

/// How many random cases run when `DROVER_FUZZ_CASES` does not say.
const DEFAULT_CASES: u32 = 256;

/// Streams `lines` through a masker of `secrets` and checks the property in the module doc.
fn check_case(secrets: &[String], lines: &[String]) -> Result<(), String> {
    let masker = Masker::new(secrets);
    let mut stream = masker.stream();
    let mut output = Vec::new();
    for line in lines {
        output.extend(stream.push(line));
    }
    output.extend(stream.flush());
    if output.len() != lines.len() {
        return Err(format!("{} lines in, {} out: {output:?}", lines.len(), output.len()));
    }
    let surrounding = |text: &str| text.chars().filter(|ch| SURROUNDING.contains(ch)).collect::<String>();
    for (line, masked) in lines.iter().zip(&output) {
        if let Some(shown) = masked.chars().find(|&ch| ch != '*' && !SURROUNDING.contains(&ch)) {
            return Err(format!("{shown:?} of a secret shows in {masked:?} (from {line:?})"));
        }
        if surrounding(line) != surrounding(masked) {
            return Err(format!("{masked:?} lost text around the secret (from {line:?})"));
        }
    }
    // What the property implies, said the way the finding says it: neither a line nor the lines
    // read together show the plaintext or one of its forms.
    let joined = [output.concat(), output.join("\n")];
    for secret in secrets {
        for form in forms(secret) {
            if let Some(text) = output.iter().chain(&joined).find(|text| text.contains(&form)) {
                return Err(format!("{text:?} shows the form {form:?}"));
            }
        }
    }
    if let [line] = lines {
        let masked = masker.mask_line(line);
        if masked != output[0] {
            return Err(format!("mask_line gives {masked:?}, the stream {:?}", output[0]));
        }
    }
    Ok(())
}

/// The forms of `secret` that can show as they are, computed here rather than by the masker.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    let hex = [hex::encode(secret), hex::encode_upper(secret)];
    for bytes in [secret.as_bytes(), hex[0].as_bytes(), hex[1].as_bytes()] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(bytes));
        }
    }
    forms.extend(hex);
    forms
}

/// Reads a corpus file: `secret VALUE` lines (a following `secret+ TEXT` line adds a line break
/// and TEXT to the value), then `line TEXT` lines, the stream; `#` starts a comment. TEXT is taken
/// byte for byte, tabs and escape characters included.
fn parse_corpus_file(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut secrets, mut lines) = (Vec::<String>::new(), Vec::new());
    for row in text.lines() {
        let (kind, value) = row.split_once(' ').unwrap_or((row, ""));
        match kind {
            "secret" => secrets.push(value.to_owned()),
            "secret+" => {
                let secret = secrets.last_mut().expect("`secret+` continues a `secret`");
                secret.push('\n');
                secret.push_str(value);
            }
            "line" => lines.push(value.to_owned()),
            _ if row.starts_with('#') || row.is_empty() => {}
            _ => panic!("unknown corpus row {row:?}"),
        }
    }
    (secrets, lines)
}

/// The corpus format of a case, for adding a failing random case to the corpus.
fn corpus_text(secret: &str, lines: &[String]) -> String {
    let mut text = String::new();
    let mut parts = secret.split('\n');
    writeln!(text, "secret {}", parts.next().unwrap_or_default()).unwrap();
    for part in parts {
        writeln!(text, "secret+ {part}").unwrap();
    }
    for line in lines {
        writeln!(text, "line {line}").unwrap();
    }
    text
}

#[test]
fn issue_9_f8_fuzz_masker_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/fuzz_masker");
    let files = testkit::fuzz::corpus(&dir);
    assert!(files.len() >= 5, "the corpus in {} has {} files", dir.display(), files.len());
    for (name, bytes) in files {
        let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"));
        let (secrets, lines) = parse_corpus_file(&text);
        assert!(!secrets.is_empty() && !lines.is_empty(), "{name} has no secret or no line");
        if let Err(failure) = check_case(&secrets, &lines) {
            panic!("{name}: {failure}");
        }
    }
}

/// The form a secret is printed in, before escaping.
#[derive(Clone, Copy, Debug)]
enum Inner {
    Plain,
    Base64 { url_safe: bool, padded: bool },
    Hex { upper: bool },
    Base64OfHex { upper: bool, url_safe: bool, padded: bool },
}

/// How the form is escaped when printed.
#[derive(Clone, Copy, Debug)]
enum Outer {
    Raw,
    Percent { plus_for_space: bool },
    Backslash,
    Ansi,
}

/// A random case before it is turned into lines; `choices` drive the encoders' random decisions
/// (which characters to escape, in which case, where to put a color code).
#[derive(Clone, Debug)]
struct Case {
    secret: String,
    inner: Inner,
    outer: Outer,
    choices: Vec<u8>,
    before: String,
    after: String,
    cuts: Vec<Index>,
    one_char_per_line: bool,
}

/// Cycles through a case's choices.
struct Choices<'c> {
    choices: &'c [u8],
    next: usize,
}

impl Choices<'_> {
    /// The next choice, modulo `n`.
    fn pick(&mut self, n: u8) -> u8 {
        let choice = self.choices[self.next % self.choices.len()];
        self.next += 1;
        choice % n
    }
}

impl Case {
    fn lines(&self) -> Vec<String> {
        let mut choices = Choices { choices: &self.choices, next: 0 };
        let form = self.inner_form();
        let escaped = match self.outer {
            Outer::Raw => form,
            Outer::Percent { plus_for_space } => percent(&form, plus_for_space, &mut choices),
            Outer::Backslash => backslash(&form, &mut choices),
            Outer::Ansi => ansi(&form, &mut choices),
        };
        let text = format!("{}{escaped}{}", self.before, self.after);
        let boundaries: Vec<usize> = text.char_indices().map(|(idx, _)| idx).skip(1).collect();
        let mut cuts: Vec<usize> = match self.one_char_per_line {
            true => boundaries,
            false if boundaries.is_empty() => Vec::new(),
            false => self.cuts.iter().map(|cut| *cut.get(&boundaries)).collect(),
        };
        cuts.sort_unstable();
        cuts.dedup();
        let mut lines = Vec::new();
        let mut start = 0;
        for end in cuts.into_iter().chain([text.len()]) {
            lines.extend(text[start..end].split('\n').map(str::to_owned));
            start = end;
        }
        lines
    }

    fn inner_form(&self) -> String {
        let engine = |url_safe: bool, padded: bool| match (url_safe, padded) {
            (false, true) => &STANDARD,
            (false, false) => &STANDARD_NO_PAD,
            (true, true) => &URL_SAFE,
            (true, false) => &URL_SAFE_NO_PAD,
        };
        let hex = |upper: bool| match upper {
            true => hex::encode_upper(&self.secret),
            false => hex::encode(&self.secret),
        };
        match self.inner {
            Inner::Plain => self.secret.clone(),
            Inner::Base64 { url_safe, padded } => engine(url_safe, padded).encode(&self.secret),
            Inner::Hex { upper } => hex(upper),
            Inner::Base64OfHex { upper, url_safe, padded } => engine(url_safe, padded).encode(hex(upper)),
        }
    }
}

/// Percent-encodes `form` as some encoder would: `%`, line breaks and (in a form body) `+` always,
/// any other character sometimes, each escape in either hex case.
fn percent(form: &str, plus_for_space: bool, choices: &mut Choices) -> String {
    let mut out = String::new();
    for ch in form.chars() {
        if plus_for_space && ch == ' ' && choices.pick(2) == 0 {
            out.push('+');
            continue;
        }
        let must = matches!(ch, '%' | '\n' | '\r') || (plus_for_space && ch == '+');
        if !must && choices.pick(3) != 0 {
            out.push(ch);
            continue;
        }
        for byte in ch.to_string().bytes() {
            match choices.pick(2) {
                0 => write!(out, "%{byte:02x}").unwrap(),
                _ => write!(out, "%{byte:02X}").unwrap(),
            }
        }
    }
    out
}

/// Backslash-escapes `form` as JSON, Python or Rust's `Debug` would, mixing their styles.
fn backslash(form: &str, choices: &mut Choices) -> String {
    let mut out = String::new();
    for ch in form.chars() {
        let short = match ch {
            '"' => Some('"'),
            '\\' => Some('\\'),
            '/' => Some('/'),
            '\'' => Some('\''),
            '\n' => Some('n'),
            '\r' => Some('r'),
            '\t' => Some('t'),
            _ => None,
        };
        let must = matches!(ch, '"' | '\\') || ch.is_control();
        match (choices.pick(5), short) {
            (0, Some(short)) => write!(out, "\\{short}").unwrap(),
            (0 | 1, _) if !must => out.push(ch),
            (2, _) => {
                for byte in ch.to_string().bytes() {
                    write!(out, "\\x{byte:02x}").unwrap();
                }
            }
            (3, _) => write!(out, "\\u{{{:X}}}", u32::from(ch)).unwrap(),
            (4, _) => write!(out, "\\U{:08x}", u32::from(ch)).unwrap(),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    match choices.pick(2) {
                        0 => write!(out, "\\u{unit:04x}").unwrap(),
                        _ => write!(out, "\\u{unit:04X}").unwrap(),
                    }
                }
            }
        }
    }
    out
}

/// Puts ANSI escape sequences between some characters of `form` (not next to a line break, where
/// they would be outside every line of the secret).
fn ansi(form: &str, choices: &mut Choices) -> String {
    const SEQUENCES: [&str; 6] =
        ["\x1b[0m", "\x1b[31m", "\x1b[1;32m", "\x1b[38;5;208m", "\x1b]8;;http://x/y\x1b\\", "\x1b(B"];
    let chars: Vec<char> = form.chars().collect();
    let mut out = String::new();
    for (idx, &ch) in chars.iter().enumerate() {
        let inside = idx > 0 && ch != '\n' && chars[idx - 1] != '\n';
        if inside && choices.pick(3) == 0 {
            out.push_str(SEQUENCES[usize::from(choices.pick(6))]);
        }
        out.push(ch);
    }
    out
}

fn secret_line() -> impl Strategy<Value = String> {
    let printable: Vec<char> = (' '..='~').filter(|ch| *ch != '*' && !SURROUNDING.contains(ch)).collect();
    let printable = prop::sample::select(printable);
    let special = prop::sample::select(vec!['\t', 'é', 'ß', '€', '😀', '中']);
    prop::collection::vec(prop_oneof![6 => printable, 1 => special], secrets::MIN_VALUE_CHARS..=24)
        .prop_map(|chars| chars.into_iter().collect())
}

fn case() -> impl Strategy<Value = Case> {
    let secret = prop_oneof![
        4 => secret_line(),
        1 => prop::collection::vec(secret_line(), 2..=3).prop_map(|lines| lines.join("\n")),
    ];
    let inner = prop_oneof![
        Just(Inner::Plain),
        (any::<bool>(), any::<bool>()).prop_map(|(url_safe, padded)| Inner::Base64 { url_safe, padded }),
        any::<bool>().prop_map(|upper| Inner::Hex { upper }),
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(upper, url_safe, padded)| Inner::Base64OfHex {
            upper,
            url_safe,
            padded
        }),
    ];
    let outer = prop_oneof![
        Just(Outer::Raw),
        any::<bool>().prop_map(|plus_for_space| Outer::Percent { plus_for_space }),
        Just(Outer::Backslash),
        Just(Outer::Ansi),
    ];
    let around = || prop::collection::vec(prop::sample::select(SURROUNDING.to_vec()), 0..4).prop_map(String::from_iter);
    (
        secret,
        inner,
        outer,
        prop::collection::vec(any::<u8>(), 1..32),
        around(),
        around(),
        prop::collection::vec(any::<Index>(), 0..12),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(secret, inner, outer, choices, before, after, cuts, one_char_per_line)| Case {
            secret,
            inner,
            outer,
            choices,
            before,
            after,
            cuts,
            one_char_per_line,
        })
}

fn config() -> Config {
    Config { cases: testkit::fuzz::cases(DEFAULT_CASES), failure_persistence: None, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn issue_9_f8_fuzz_masker_no_form_of_a_secret_shows(case in case()) {
        let lines = case.lines();
        let bound = HOLD_FACTOR * forms(&case.secret).iter().map(String::len).max().unwrap_or(0);
        prop_assume!(lines.len() <= bound && lines.iter().map(String::len).sum::<usize>() <= bound);
        let checked = check_case(std::slice::from_ref(&case.secret), &lines);
        prop_assert!(checked.is_ok(), "{}\nas a corpus file:\n{}", checked.unwrap_err(), corpus_text(&case.secret, &lines));
    }
}
