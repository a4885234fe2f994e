//! [`Masker`]: replaces secret values in log lines by `***`, line by line or as a stream that also
//! catches a value split across two consecutive lines.
//!
//! All forms of all values (see [`crate::forms`]) go into one Aho-Corasick automaton, so a line is
//! scanned once whatever the number of secrets. The automaton reports overlapping matches and the
//! masker hides their union: where two secrets overlap (`abcdef` and `defghi` in `abcdefghi`), a
//! leftmost-longest search would report only the first and leave `ghi` of the second in plain
//! sight. Each maximal run of masked bytes becomes one `***`.
//!
//! The stream keeps a line back only when its end is a proper prefix of some form, since only then
//! can the next line complete a secret that must be masked in both. The test is exact and cheap: it
//! walks the automaton over the end of the line, then asks whether the state reached still has
//! somewhere to go.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, Input, MatchKind};

use crate::forms::add_forms;
use crate::view::{DecodedView, Plus};

/// Values shorter than this many characters are not masked: `true`, `1234` or `dev` would turn
/// too many innocent log lines into `***` and hide nothing worth hiding. Their encoded forms are
/// not masked either.
pub const MIN_VALUE_CHARS: usize = 4;

const MASK: &str = "***";

/// Masks a fixed set of secret values in log lines.
///
/// Besides the value itself, it masks its base64 encodings (standard and URL-safe alphabets, with
/// and without padding, and the part of a longer base64 blob that encodes the value, at any
/// alignment) and its percent-encodings (any set of escaped characters, either hex case, `+` or
/// `%20` for a space). A value of several lines is also masked line by line.
///
/// Values shorter than [`MIN_VALUE_CHARS`] characters are ignored. A masker without values passes
/// lines through unchanged without scanning them.
#[derive(Clone)]
pub struct Masker {
    patterns: Option<Patterns>,
}

#[derive(Clone)]
struct Patterns {
    automaton: NFA,
    /// The state the automaton is in when no suffix of the input is a prefix of any pattern.
    start: StateID,
    /// `next_from_start[byte]`: where the automaton goes from `start` on `byte`.
    next_from_start: Vec<StateID>,
    /// `in_patterns[byte]`: whether some pattern holds `byte`, so a `%XX` escape that decodes to it
    /// may be part of a secret.
    in_patterns: [bool; 256],
}

impl Masker {
    /// Builds a masker for `values`, skipping those shorter than [`MIN_VALUE_CHARS`] characters.
    ///
    /// # Panics
    ///
    /// When the values add up to so many pattern bytes that the automaton would need more than
    /// 2^31 states (gigabytes of secrets).
    pub fn new(values: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut patterns = BTreeSet::new();
        for value in values {
            add_forms(value.as_ref(), &mut patterns);
        }
        if patterns.is_empty() {
            return Masker { patterns: None };
        }
        let automaton = NFA::builder()
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .expect("the automaton holds the forms of all secrets of an app");
        let start = automaton.start_state(Anchored::No).expect("a contiguous NFA supports unanchored searches");
        let next_from_start = (0..=u8::MAX).map(|byte| automaton.next_state(Anchored::No, start, byte)).collect();
        let mut in_patterns = [false; 256];
        for byte in patterns.iter().flat_map(|pattern| pattern.bytes()) {
            in_patterns[usize::from(byte)] = true;
        }
        Masker { patterns: Some(Patterns { automaton, start, next_from_start, in_patterns }) }
    }

    /// Whether this masker has no value to mask, so it returns every line unchanged.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_none()
    }

    /// Masks one complete line on its own; a value split across lines needs [`stream`](Self::stream).
    pub fn mask_line(&self, line: &str) -> String {
        match &self.patterns {
            None => line.to_owned(),
            Some(patterns) => patterns.mask(line, Split::NONE),
        }
    }

    /// Starts masking a stream of lines, such as one process's output.
    pub fn stream(&self) -> MaskStream<'_> {
        MaskStream { masker: self, held: None }
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n_patterns = self.patterns.as_ref().map_or(0, |patterns| patterns.automaton.patterns_len());
        f.debug_struct("Masker").field("n_patterns", &n_patterns).finish()
    }
}

impl Patterns {
    /// Masks everything in `line` that matches, and the parts of secrets split across lines.
    fn mask(&self, line: &str, split: Split) -> String {
        let bytes = line.as_bytes();
        let mut ranges: Vec<Range<usize>> = self.matches(bytes).collect();
        if split.head_end > 0 {
            ranges.push(0..split.head_end);
        }
        ranges.extend(split.tail_start.map(|start| start..line.len()));
        for plus in [Plus::Literal, Plus::Space] {
            if let Some(view) = DecodedView::decode(bytes, plus, &self.in_patterns) {
                ranges.extend(self.matches(&view.bytes).map(|range| view.origin_of(range)));
            }
        }
        replace(line, ranges)
    }

    fn matches<'h>(&'h self, haystack: &'h [u8]) -> impl Iterator<Item = Range<usize>> + 'h {
        self.automaton
            .try_find_overlapping_iter(Input::new(haystack))
            .expect("a standard automaton supports unanchored overlapping searches")
            .map(|found| found.range())
    }

    fn max_len(&self) -> usize {
        self.automaton.max_pattern_len()
    }

    /// Whether the end of `line` is a proper prefix of some pattern, so the next line could
    /// complete it.
    fn ends_with_proper_prefix(&self, line: &[u8]) -> bool {
        // A proper prefix is shorter than the longest pattern, so only that much of the end of
        // the line matters.
        let tail = &line[line.len().saturating_sub(self.max_len() - 1)..];
        let state = tail.iter().fold(self.start, |state, &byte| self.automaton.next_state(Anchored::No, state, byte));
        if state == self.start {
            return false;
        }
        // The state stands for the longest suffix of the line that is a prefix of some pattern,
        // and its failure chain for the shorter ones. If one of them is a proper prefix, it has a
        // continuation, so some byte leads somewhere else than from the start state. If none is,
        // every transition falls back to where the start state goes.
        (0..=u8::MAX)
            .any(|byte| self.automaton.next_state(Anchored::No, state, byte) != self.next_from_start[usize::from(byte)])
    }

    /// Finds a pattern that starts in `first` and ends in `second`: the part of `first` it covers
    /// starts at the returned `.0`, the part of `second` it covers ends at `.1`. Of several such
    /// patterns, the union is returned.
    fn straddle(&self, first: &[u8], second: &[u8]) -> Option<(usize, usize)> {
        let keep = self.max_len() - 1;
        let tail_start = first.len().saturating_sub(keep);
        let head_end = second.len().min(keep);
        let mut joined = Vec::with_capacity(first.len() - tail_start + head_end);
        joined.extend_from_slice(&first[tail_start..]);
        joined.extend_from_slice(&second[..head_end]);
        let junction = first.len() - tail_start;
        self.matches(&joined).filter(|range| range.start < junction && range.end > junction).fold(
            None,
            |union, range| {
                let (start, end) = (tail_start + range.start, range.end - junction);
                Some(union.map_or((start, end), |(first_start, last_end)| (start.min(first_start), end.max(last_end))))
            },
        )
    }
}

/// The parts of a line that belong to a secret split across it and a neighbouring line.
#[derive(Clone, Copy)]
struct Split {
    /// The line starts with the end of a secret, up to this byte offset (0 for none).
    head_end: usize,
    /// The line ends with the start of a secret, from this byte offset.
    tail_start: Option<usize>,
}

impl Split {
    const NONE: Split = Split { head_end: 0, tail_start: None };
}

/// Replaces each maximal run of bytes covered by `ranges` by `***`.
fn replace(line: &str, mut ranges: Vec<Range<usize>>) -> String {
    if ranges.is_empty() {
        return line.to_owned();
    }
    // Patterns are UTF-8, so their matches start and end on character boundaries. Widening to the
    // nearest boundaries costs nothing and keeps the output UTF-8 even if that reasoning were
    // wrong.
    for range in &mut ranges {
        while !line.is_char_boundary(range.start) {
            range.start -= 1;
        }
        while !line.is_char_boundary(range.end) {
            range.end += 1;
        }
    }
    ranges.sort_unstable_by_key(|range| range.start);
    let mut runs: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges.into_iter().filter(|range| !range.is_empty()) {
        match runs.last_mut() {
            Some(run) if range.start <= run.end => run.end = run.end.max(range.end),
            _ => runs.push(range),
        }
    }
    let mut masked = String::with_capacity(line.len());
    let mut copied = 0;
    for run in runs {
        masked.push_str(&line[copied..run.start]);
        masked.push_str(MASK);
        copied = run.end;
    }
    masked.push_str(&line[copied..]);
    masked
}

/// Masks a stream of lines in order, including a secret split across two consecutive lines (as
/// `echo ${S:0:5}; echo ${S:5}` prints it).
///
/// [`push`](Self::push) returns the lines that are ready, masked. A line is held back only while
/// its end could be the first part of a secret, until the next line shows whether it is; so lines
/// come out in order, at most one line late. [`flush`](Self::flush) returns the held line, if
/// any: call it at the end of the stream, and when a live stream goes quiet, so its last line is
/// not kept from the reader.
///
/// When a secret is split, the part at the end of the first line and the part at the start of the
/// second line each become `***`.
pub struct MaskStream<'m> {
    masker: &'m Masker,
    held: Option<Held>,
}

struct Held {
    line: String,
    /// The line starts with the end of a secret that began on the line before, up to here.
    head_end: usize,
}

impl MaskStream<'_> {
    /// Takes the next line (without its line ending) and returns the lines now ready, masked: none,
    /// one, or two when this line releases the held one.
    pub fn push(&mut self, line: &str) -> Vec<String> {
        let Some(patterns) = &self.masker.patterns else {
            return vec![line.to_owned()];
        };
        let mut ready = Vec::with_capacity(2);
        let mut next_head_end = 0;
        if let Some(held) = self.held.take() {
            let mut split = Split { head_end: held.head_end, tail_start: None };
            if let Some((tail_start, head_end)) = patterns.straddle(held.line.as_bytes(), line.as_bytes()) {
                split.tail_start = Some(tail_start);
                next_head_end = head_end;
            }
            ready.push(patterns.mask(&held.line, split));
        }
        match patterns.ends_with_proper_prefix(line.as_bytes()) {
            true => self.held = Some(Held { line: line.to_owned(), head_end: next_head_end }),
            false => ready.push(patterns.mask(line, Split { head_end: next_head_end, tail_start: None })),
        }
        ready
    }

    /// Returns the held line, masked, if there is one. The stream can go on afterwards; a secret
    /// split across the flushed line and the next one is then not masked.
    pub fn flush(&mut self) -> Vec<String> {
        match (&self.masker.patterns, self.held.take()) {
            (Some(patterns), Some(held)) => {
                vec![patterns.mask(&held.line, Split { head_end: held.head_end, tail_start: None })]
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for MaskStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The held line may hold the first part of a secret, so only its presence is shown.
        f.debug_struct("MaskStream").field("masker", self.masker).field("holding", &self.held.is_some()).finish()
    }
}
