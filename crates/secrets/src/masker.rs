//! [`Masker`]: replaces secret values in log lines by `***`, line by line or as a stream that also
//! catches a value split across any number of consecutive lines.
//!
//! All forms of all values (see [`crate::forms`]) go into one Aho-Corasick automaton, so a line is
//! scanned once whatever the number of secrets, plus once per decoded view of it (see
//! [`crate::view`]) when it holds escapes that could spell part of a secret. The automaton reports
//! overlapping matches and the masker hides their union: where two secrets overlap (`abcdef` and
//! `defghi` in `abcdefghi`), a leftmost-longest search would report only the first and leave `ghi`
//! of the second in plain sight. Each maximal run of masked bytes becomes one `***`.
//!
//! The stream joins the lines it holds back (without separators, as `echo ${S:0:5}; echo ${S:5}`
//! splits a value) and searches them as one text, so a match may cover any number of lines. It
//! holds a line back only while a match could still reach it: while the joined text, or one of its
//! decoded views, ends with a proper prefix of some form that starts in or before the line, or
//! with an escape that the next line could complete. The test is exact: walking the automaton over
//! the end of the text gives the longest suffix that is a prefix of some form, its depth in the
//! trie says where that suffix starts, and the trie says whether a form goes on past it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Range;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, Input, MatchKind};

use crate::forms::add_forms;
use crate::view::{Decoded, Decoding};

/// Values shorter than this many characters are not masked: `true`, `1234` or `dev` would turn
/// too many innocent log lines into `***` and hide nothing worth hiding. Their encoded forms are
/// not masked either.
pub const MIN_VALUE_CHARS: usize = 4;

const MASK: &str = "***";

/// How many lines, and how many bytes after the first, a stream may hold back, as a multiple of
/// the longest form's length. Every form split one character per line fits, even when each
/// character is escaped as `\u0041` or comes with a color code.
const HOLD_FACTOR: usize = 16;

/// Masks a fixed set of secret values in log lines.
///
/// Besides the value itself, it masks:
///
/// - its base64 encodings: standard and URL-safe alphabets, with and without padding, and the part
///   of a longer base64 blob that encodes the value, at any alignment;
/// - its hex encodings, in lower and in upper case, and the base64 encodings of those;
/// - any of these escaped: percent-encoded (any set of escaped characters, either hex case, `+` or
///   `%20` for a space), backslash-escaped (JSON's `\"`, `\\`, `\/`, `\n`, `\u00e9`, and
///   `\xNN`, `\u{...}`, `\UNNNNNNNN`), or with ANSI escape sequences (colors) between its
///   characters;
/// - for a value of several lines, each line of it on its own.
///
/// Not masked: hex in mixed case or with separators, an escaped form escaped again (JSON of a
/// percent-encoded value), and any other transformation of the value.
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
    /// Every other state the unanchored search can be in: a node of the patterns' trie.
    trie: HashMap<StateID, TrieNode>,
    /// `in_patterns[byte]`: whether some pattern holds `byte`, so an escape that decodes to it may
    /// be part of a secret.
    in_patterns: [bool; 256],
}

#[derive(Clone, Copy)]
struct TrieNode {
    /// The length of the pattern prefix the node stands for.
    depth: usize,
    /// Whether some pattern is longer than that prefix, so more input could go on with it.
    goes_on: bool,
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
        let mut in_patterns = [false; 256];
        for byte in patterns.iter().flat_map(|pattern| pattern.bytes()) {
            in_patterns[usize::from(byte)] = true;
        }
        let trie = trie_nodes(&automaton, &patterns);
        Masker { patterns: Some(Patterns { automaton, start, trie, in_patterns }) }
    }

    /// Whether this masker has no value to mask, so it returns every line unchanged.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_none()
    }

    /// Masks one complete line on its own; a value split across lines needs [`stream`](Self::stream).
    pub fn mask_line(&self, line: &str) -> String {
        match &self.patterns {
            None => line.to_owned(),
            Some(patterns) => replace(line, patterns.find(line.as_bytes()).0),
        }
    }

    /// Starts masking a stream of lines, such as one process's output.
    pub fn stream(&self) -> MaskStream<'_> {
        MaskStream { masker: self, held: VecDeque::new() }
    }

    /// Masks a whole text of any number of lines (a test report's message or captured output),
    /// as the stream masks them: a value split across its lines is masked too. The line breaks
    /// (`\n`) stay where they were.
    pub fn mask_text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        let mut stream = self.stream();
        let mut lines: Vec<String> = Vec::new();
        for line in text.split('\n') {
            lines.extend(stream.push(line));
        }
        lines.extend(stream.flush());
        lines.join("\n")
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n_patterns = self.patterns.as_ref().map_or(0, |patterns| patterns.automaton.patterns_len());
        f.debug_struct("Masker").field("n_patterns", &n_patterns).finish()
    }
}

/// The depth of every node of the patterns' trie, found by walking each pattern from the
/// anchored start state. The unanchored start state shares its children, so the states an
/// unanchored search reaches are these nodes.
fn trie_nodes(automaton: &NFA, patterns: &BTreeSet<String>) -> HashMap<StateID, TrieNode> {
    let root = automaton.start_state(Anchored::Yes).expect("a contiguous NFA supports anchored searches");
    let mut nodes = HashMap::new();
    for pattern in patterns {
        let mut state = root;
        for (idx, &byte) in pattern.as_bytes().iter().enumerate() {
            state = automaton.next_state(Anchored::Yes, state, byte);
            let goes_on = idx + 1 < pattern.len();
            let node = nodes.entry(state).or_insert(TrieNode { depth: idx + 1, goes_on });
            node.goes_on |= goes_on;
        }
    }
    nodes
}

impl Patterns {
    /// The ranges of `text` that spell a secret, in the text itself or in one of its decoded views,
    /// and the views.
    fn find(&self, text: &[u8]) -> (Vec<Range<usize>>, [Decoded; 4]) {
        let mut ranges: Vec<Range<usize>> = self.matches(text).collect();
        let decoded = Decoding::ALL.map(|decoding| decoding.decode(text, &self.in_patterns));
        for view in decoded.iter().filter_map(|decoded| decoded.view.as_ref()) {
            ranges.extend(self.matches(&view.bytes).map(|range| view.origin_of(range)));
        }
        (ranges, decoded)
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

    /// Where the earliest match that more text after `text` could complete may start: the start of
    /// the longest suffix of `text`, or of one of its views, that is a proper prefix of a pattern,
    /// or of an escape that the end of `text` cuts short.
    fn open_from(&self, text: &[u8], decoded: &[Decoded; 4]) -> Option<usize> {
        let mut from = self.proper_prefix_start(text);
        for (decoding, decoded) in Decoding::ALL.iter().zip(decoded) {
            let in_view = match (&decoded.view, decoded.open) {
                (None, None) => None,
                (Some(view), open) => {
                    let end = open.map_or(view.bytes.len(), |open| open.view_start);
                    self.proper_prefix_start(&view.bytes[..end]).map(|idx| view.start_of(idx))
                }
                (None, Some(open)) => self.proper_prefix_start(&text[..open.line_start]),
            };
            let open_escape = decoded.open.filter(|_| decoding.open_escape_is_text()).map(|open| open.line_start);
            from = [from, in_view, open_escape].into_iter().flatten().min();
        }
        from
    }

    /// Where the longest suffix of `bytes` that is a proper prefix of some pattern starts.
    fn proper_prefix_start(&self, bytes: &[u8]) -> Option<usize> {
        // A proper prefix is shorter than the longest pattern, so only that much of the end of
        // the text matters.
        let mut tail_start = bytes.len().saturating_sub(self.max_len() - 1);
        loop {
            let state = bytes[tail_start..]
                .iter()
                .fold(self.start, |state, &byte| self.automaton.next_state(Anchored::No, state, byte));
            if state == self.start {
                return None;
            }
            let node = self.trie[&state];
            let suffix_start = bytes.len() - node.depth;
            if node.goes_on {
                return Some(suffix_start);
            }
            // The suffix is a whole pattern and no longer one starts with it, so it is masked and
            // done; a shorter suffix may still be a proper prefix of another pattern.
            tail_start = suffix_start + 1;
        }
    }

    /// How many lines the stream can hold at most, and how many bytes after the first.
    fn hold_limit(&self) -> usize {
        HOLD_FACTOR * self.max_len()
    }
}

/// Merges `ranges` into sorted, disjoint, non-empty runs.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_unstable_by_key(|range| range.start);
    let mut runs: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges.into_iter().filter(|range| !range.is_empty()) {
        match runs.last_mut() {
            Some(run) if range.start <= run.end => run.end = run.end.max(range.end),
            _ => runs.push(range),
        }
    }
    runs
}

/// Replaces each maximal run of bytes covered by `ranges` by `***`.
fn replace(line: &str, mut ranges: Vec<Range<usize>>) -> String {
    if ranges.is_empty() {
        return line.to_owned();
    }
    // Patterns are UTF-8 and escapes ASCII, so matches start and end on character boundaries.
    // Widening to the nearest boundaries costs nothing and keeps the output UTF-8 even if that
    // reasoning were wrong.
    for range in &mut ranges {
        while !line.is_char_boundary(range.start) {
            range.start -= 1;
        }
        while !line.is_char_boundary(range.end) {
            range.end += 1;
        }
    }
    let mut masked = String::with_capacity(line.len());
    let mut copied = 0;
    for run in merge(ranges) {
        masked.push_str(&line[copied..run.start]);
        masked.push_str(MASK);
        copied = run.end;
    }
    masked.push_str(&line[copied..]);
    masked
}

/// Masks a stream of lines in order, including a secret split across consecutive lines (as
/// `echo ${S:0:5}; echo ${S:5}` or `fold -w 8` print it), in any of the forms [`Masker`] masks.
///
/// [`push`](Self::push) returns the lines that are ready, masked, in order, each once. A line is
/// held back only while a secret could still start in it or before it and go on in the next line;
/// that includes a line that ends in an escape the next line could complete (`%`, `\`, `\u00`,
/// `ESC [`). [`flush`](Self::flush) returns the held lines: call it at the end of the stream, and
/// when a live stream goes quiet, so its last lines are not kept from the reader.
///
/// When a secret is split, its part in each line becomes `***`; an empty line in between counts
/// as one of the lines it is split across.
///
/// The stream holds at most 16 times as many lines as the longest form has bytes, and as many
/// bytes after the first line it holds. That fits every form split one character per line. A
/// secret spread over more lines than that, for instance with that many empty lines in between,
/// can show: the oldest line goes out once the bound is reached, masked as far as the lines seen
/// so far tell.
pub struct MaskStream<'m> {
    masker: &'m Masker,
    held: VecDeque<Held>,
}

struct Held {
    line: String,
    /// The parts of the line known to belong to a secret, from the searches so far.
    masked: Vec<Range<usize>>,
}

impl MaskStream<'_> {
    /// Takes the next line (without its line ending) and returns the lines now ready, masked: none,
    /// this one, or some held ones with or without this one.
    pub fn push(&mut self, line: &str) -> Vec<String> {
        let Some(patterns) = &self.masker.patterns else {
            return vec![line.to_owned()];
        };
        self.held.push_back(Held { line: line.to_owned(), masked: Vec::new() });
        let joined: String = self.held.iter().map(|held| held.line.as_str()).collect();
        let (found, decoded) = patterns.find(joined.as_bytes());
        let mut ends = Vec::with_capacity(self.held.len());
        let mut line_start = 0;
        for held in &mut self.held {
            let line_end = line_start + held.line.len();
            held.masked.extend(found.iter().filter_map(|range| {
                let (start, end) = (range.start.max(line_start), range.end.min(line_end));
                (start < end).then(|| start - line_start..end - line_start)
            }));
            held.masked = merge(std::mem::take(&mut held.masked));
            ends.push(line_end);
            line_start = line_end;
        }

        // Lines that end before any match still to come could start are done...
        let open_from = patterns.open_from(joined.as_bytes(), &decoded);
        let mut n_ready = ends.iter().take_while(|&&end| open_from.is_none_or(|from| end <= from)).count();
        // ...unless the cut after them falls inside an escape: the joined text would then decode
        // differently from where the rest starts (`\\` cut in two turns `\\u0041` into `\u0041`).
        let cuts_escape =
            |end: usize| decoded.iter().filter_map(|decoded| decoded.view.as_ref()).any(|view| view.cuts_escape(end));
        while n_ready > 0 && cuts_escape(ends[n_ready - 1]) {
            n_ready -= 1;
        }
        let mut ready: Vec<String> = self.held.drain(..n_ready).map(Held::into_masked).collect();
        // Bounded memory and delay, at the price of what is described on the type.
        let limit = patterns.hold_limit();
        while self.held.len() > limit || self.held.iter().skip(1).map(|held| held.line.len()).sum::<usize>() > limit {
            ready.extend(self.held.pop_front().map(Held::into_masked));
        }
        ready
    }

    /// Returns the held lines, masked. The stream can go on afterwards; a secret split across the
    /// flushed lines and the next one is then not masked in the next one.
    pub fn flush(&mut self) -> Vec<String> {
        self.held.drain(..).map(Held::into_masked).collect()
    }
}

impl Held {
    fn into_masked(self) -> String {
        replace(&self.line, self.masked)
    }
}

impl fmt::Debug for MaskStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The held lines may hold the first part of a secret, so only their number is shown.
        f.debug_struct("MaskStream").field("masker", self.masker).field("n_held", &self.held.len()).finish()
    }
}
