//! Text from apps, builds and users, made safe to print on a terminal.
//!
//! Log lines, build and test output, run step messages, test names, release descriptions and
//! server error messages are written by whoever controls an app or a push. Printed as they are, an
//! `ESC [ 2 J` clears the reader's screen, an OSC sequence retitles the window or hides a link, a
//! `\r` or a cursor move overwrites what came before, and a right-to-left override reorders what
//! follows (issue 9, finding 9). [`render`] turns each such character into visible text instead:
//!
//! - C0 controls and DEL in caret notation, as `cat -v` shows them: ESC is `^[`, `\r` is `^M`, DEL
//!   is `^?`. Tab and line feed stay: they only move to the next column or line.
//! - C1 controls (U+0080 to U+009F; U+009B is an 8-bit CSI) and the bidirectional formatting
//!   characters (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) as `\u{9b}`.
//!
//! Only output to a terminal is rendered ([`for_stdout`], [`for_stderr`]): written to a pipe or a
//! file, the text stays byte for byte what the app printed, as `cat` and `grep` expect, and
//! `--json` output is whatever serde_json writes, which escapes C0 controls. A caret in the text
//! itself (`^[` typed as two characters) looks like a rendered control; that is the price of a
//! readable notation, the same as with `cat -v`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// `text` as it should appear on standard output: rendered with [`render`] if that is a
/// terminal, as it is otherwise.
pub fn for_stdout(text: &str) -> Cow<'_, str> {
    static IS_TERMINAL: OnceLock<bool> = OnceLock::new();
    match *IS_TERMINAL.get_or_init(|| std::io::stdout().is_terminal()) {
        true => render(text),
        false => Cow::Borrowed(text),
    }
}

/// `text` as it should appear on standard error: rendered with [`render`] if that is a terminal,
/// as it is otherwise.
pub fn for_stderr(text: &str) -> Cow<'_, str> {
    static IS_TERMINAL: OnceLock<bool> = OnceLock::new();
    match *IS_TERMINAL.get_or_init(|| std::io::stderr().is_terminal()) {
        true => render(text),
        false => Cow::Borrowed(text),
    }
}

/// `text` with every character that a terminal would act on, rather than show, written out
/// visibly (see the module doc). Text without such characters is returned as it is.
pub fn render(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut rendered = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        match ch {
            _ if !acts_on_terminal(ch) => rendered.push(ch),
            '\u{7f}' => rendered.push_str("^?"),
            '\0'..='\u{1f}' => {
                rendered.push('^');
                rendered.push(char::from(b'@' + u8::try_from(ch).expect("a C0 control is one byte")));
            }
            _ => write!(rendered, "\\u{{{:x}}}", u32::from(ch)).expect("writing to a String cannot fail"),
        }
    }
    Cow::Owned(rendered)
}

/// Whether a terminal would act on `ch` instead of showing it.
fn acts_on_terminal(ch: char) -> bool {
    match ch {
        '\t' | '\n' => false,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_9_f9_control_characters_are_rendered_visibly() {
        let table = [
            ("plain text, ünïcode, 😀", "plain text, ünïcode, 😀"),
            ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
            // Colors, clearing the screen, a window title, a hidden hyperlink.
            ("\x1b[31mred\x1b[0m", "^[[31mred^[[0m"),
            ("\x1b[2J\x1b[H", "^[[2J^[[H"),
            ("\x1b]0;pwned\x07", "^[]0;pwned^G"),
            ("\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "^[]8;;http://evil/^[\\click^[]8;;^[\\"),
            // Overwriting the line, backspaces, NUL, DEL.
            ("ok\rFAIL", "ok^MFAIL"),
            ("abc\x08\x08x", "abc^H^Hx"),
            ("\0\x7f", "^@^?"),
            ("\x1f", "^_"),
            // An 8-bit CSI and other C1 controls.
            ("\u{9b}31m \u{85} \u{80}", "\\u{9b}31m \\u{85} \\u{80}"),
            // A right-to-left override that would show `exe.txt` as `txt.exe`.
            ("file\u{202e}txt.exe", "file\\u{202e}txt.exe"),
            ("\u{2066}\u{2069}\u{200f}\u{61c}", "\\u{2066}\\u{2069}\\u{200f}\\u{61c}"),
        ];
        for (text, expected) in table {
            assert_eq!(render(text), expected, "{text:?}");
        }
    }

    #[test]
    fn issue_9_f9_text_without_controls_is_not_copied() {
        assert!(matches!(render("nothing to do here"), Cow::Borrowed(_)));
    }
}
