//! JUnit XML test reports: parsing the common dialects into one [`TestReport`].
//!
//! There is no JUnit standard, only a family of similar files. This parser accepts what pytest
//! (`--junitxml`), Maven Surefire, node (`--test-reporter=junit`) and go-junit-report write: a
//! root `<testsuites>` or a single `<testsuite>`, suites nested in suites, test cases directly
//! under `<testsuites>` (node's top-level tests), and per case at most one outcome element of
//! `<failure>`, `<error>` and `<skipped>`, plus `<system-out>` / `<system-err>`. Elements it does
//! not know (`<properties>`, Surefire's `<flakyFailure>` and `<rerunFailure>`, ...) are skipped
//! with their contents.
//!
//! Counts are computed from the cases, never taken from `tests=` / `failures=` attributes, which
//! tools get wrong (and which a report cut short by a crash cannot have updated). The text kept
//! per case is bounded (see [`DETAIL_LIMIT`]), because reports are stored with the pipeline's
//! state and a test that prints megabytes must not make every page that lists them slow.
//!
//! It is a streaming parse with `quick-xml`: no DOM is built. It is lenient where tools are
//! sloppy (an unknown entity or a lone `&` is kept as written, an unparseable `time` counts as
//! zero) and strict where the file is broken (mismatched or unclosed tags), and its errors name
//! the file, line and column.

use crate::error::PipelineError;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use serde::{Deserialize, Serialize};

/// The most bytes of failure text (`detail`) kept per case: the first and the last half of it,
/// with a marker saying how much was left out in between.
///
/// Both ends matter: a Java stack trace names the failure at its start, pytest prints the failing
/// assertion at the end, and captured output is appended after both.
pub const DETAIL_LIMIT: usize = 8 * 1024;

/// The most bytes kept of a name, class name, suite name or message; longer ones are cut and
/// end in `…`.
pub const TEXT_LIMIT: usize = 1024;

/// All test cases of one or more report files, with counts computed from the cases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// Number of cases.
    pub tests: u32,
    /// Cases whose outcome is [`Outcome::Failed`].
    pub failures: u32,
    /// Cases whose outcome is [`Outcome::Error`].
    pub errors: u32,
    /// Cases whose outcome is [`Outcome::Skipped`].
    pub skipped: u32,
    /// The sum of the cases' durations. Time spent outside test cases (collection, suite
    /// setup) is not included.
    pub duration_ms: u64,
    /// The cases in the order they appear in the files.
    pub cases: Vec<TestCase>,
}

impl TestReport {
    /// A report of `cases`, counting them.
    pub fn from_cases(cases: Vec<TestCase>) -> Self {
        let mut report = Self::default();
        for case in cases {
            report.push(case);
        }
        report
    }

    /// Adds `other`'s cases after this report's, updating the counts.
    pub fn merge(&mut self, other: TestReport) {
        for case in other.cases {
            self.push(case);
        }
    }

    /// Whether no case failed or had an error. Skipped cases do not count against a report, and
    /// neither does having no cases at all.
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.errors == 0
    }

    fn push(&mut self, case: TestCase) {
        self.tests = self.tests.saturating_add(1);
        match case.outcome {
            Outcome::Passed => {}
            Outcome::Failed { .. } => self.failures = self.failures.saturating_add(1),
            Outcome::Error { .. } => self.errors = self.errors.saturating_add(1),
            Outcome::Skipped { .. } => self.skipped = self.skipped.saturating_add(1),
        }
        self.duration_ms = self.duration_ms.saturating_add(case.duration_ms);
        self.cases.push(case);
    }
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// The names of the enclosing `<testsuite>`s, outermost first, joined with ` > `; empty for
    /// a case directly under `<testsuites>`.
    pub suite: String,
    /// The `classname` attribute: a Java class, a Python module, a Go package, a test file.
    pub classname: String,
    pub name: String,
    /// The `time` attribute, in milliseconds; 0 when missing or not a number.
    pub duration_ms: u64,
    pub outcome: Outcome,
}

/// How a test case ended.
///
/// `message` is the element's `message` attribute, else its `type`, else the first line of its
/// text. `detail` is the element's text (a stack trace, an assertion diff), followed by the
/// case's `<system-out>` and `<system-err>` under `--- system-out ---` / `--- system-err ---`
/// headers, bounded to [`DETAIL_LIMIT`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    /// An assertion failed (`<failure>`).
    Failed {
        message: String,
        detail: String,
    },
    /// The test could not run to completion: an unexpected exception, a fixture that failed, a
    /// build error (`<error>`).
    Error {
        message: String,
        detail: String,
    },
    /// The test was skipped, or is expected to fail (`<skipped>`).
    Skipped {
        message: String,
    },
}

/// Parses one JUnit XML file. `file_name` is only used in error messages.
///
/// Errors name the file and the line and column of the problem: malformed XML, a root element
/// that is neither `<testsuites>` nor `<testsuite>`, a file that ends inside an element, an empty
/// file.
pub fn parse(file_name: &str, xml: &str) -> Result<TestReport, PipelineError> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    // Some generators write a raw `&` in a message or stack trace; keeping it as text loses
    // nothing, while rejecting the report would hide every result in it.
    config.allow_dangling_amp = true;
    config.check_end_names = true;
    let mut parser = Parser {
        file: file_name,
        xml,
        root_seen: false,
        stack: Vec::new(),
        suites: Vec::new(),
        case: None,
        cases: Vec::new(),
    };
    loop {
        let offset = position(reader.buffer_position());
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(error) => return Err(parser.error(position(reader.error_position()), error.to_string())),
        };
        match event {
            Event::Start(start) => parser.open(&start, offset)?,
            Event::Empty(start) => {
                parser.open(&start, offset)?;
                parser.close();
            }
            Event::End(_) => parser.close(),
            Event::Text(text) => parser.text(&text.xml10_content()),
            Event::CData(text) => parser.text(&text.xml10_content()),
            Event::GeneralRef(reference) => parser.reference(&reference, offset)?,
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some((_, name)) = parser.stack.last() {
        let message = format!("unexpected end of file: <{name}> is not closed");
        return Err(parser.error(xml.len(), message));
    }
    if !parser.root_seen {
        return Err(parser.error(0, "the file has no <testsuites> or <testsuite> element".to_owned()));
    }
    Ok(TestReport::from_cases(parser.cases))
}

fn position(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

/// What an open element means to the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Suites,
    Suite,
    Case,
    /// `<failure>`, `<error>` or `<skipped>` of the current case. Its text is kept only if it
    /// decides the case's outcome (`kept`), not if an earlier element already did.
    Result {
        kept: bool,
    },
    /// `<system-out>` or `<system-err>` of the current case.
    Output,
    /// Anything else, with everything inside it.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResultKind {
    Failure,
    Error,
    Skipped,
}

/// A `<failure>`, `<error>` or `<skipped>` being read.
struct PendingResult {
    kind: ResultKind,
    /// The `message` attribute, else the `type` attribute, possibly empty.
    message: String,
    text: String,
}

/// A `<testcase>` being read.
struct PendingCase {
    suite: String,
    classname: String,
    name: String,
    duration_ms: u64,
    result: Option<PendingResult>,
    /// `(element name, text)` of each `<system-out>` / `<system-err>`, in order.
    outputs: Vec<(&'static str, String)>,
}

struct Parser<'a> {
    file: &'a str,
    xml: &'a str,
    /// Whether the root element has been opened; the document may not have a second one.
    root_seen: bool,
    /// The open elements and their names, outermost first.
    stack: Vec<(Element, String)>,
    /// The names of the open `<testsuite>`s, outermost first.
    suites: Vec<String>,
    case: Option<PendingCase>,
    cases: Vec<TestCase>,
}

impl Parser<'_> {
    fn open(&mut self, start: &BytesStart<'_>, offset: usize) -> Result<(), PipelineError> {
        let name = start.local_name().as_ref().to_owned();
        let parent = self.stack.last().map(|(element, _)| *element);
        let element = match (parent, name.as_str()) {
            (None, _) if self.root_seen => {
                return Err(self.error(offset, format!("a second root element <{name}>: expected only one")));
            }
            (None, "testsuites") => Element::Suites,
            (None | Some(Element::Suites | Element::Suite), "testsuite") => {
                let suite = self.attribute(start, "name", offset)?;
                self.suites.push(bounded(&suite, TEXT_LIMIT));
                Element::Suite
            }
            (None, _) => {
                let message = format!("expected <testsuites> or <testsuite> as the root element, found <{name}>");
                return Err(self.error(offset, message));
            }
            (Some(Element::Suites | Element::Suite), "testcase") => {
                self.case = Some(self.pending_case(start, offset)?);
                Element::Case
            }
            (Some(Element::Case), "failure" | "error" | "skipped") => {
                let kind = match name.as_str() {
                    "failure" => ResultKind::Failure,
                    "error" => ResultKind::Error,
                    _ => ResultKind::Skipped,
                };
                let mut message = self.attribute(start, "message", offset)?;
                if message.trim().is_empty() {
                    message = self.attribute(start, "type", offset)?;
                }
                let case = self.case.as_mut().expect("a Case element always has a pending case");
                // The first failure or error decides; a skip only counts if nothing failed.
                let kept = match &case.result {
                    None => true,
                    Some(result) => result.kind == ResultKind::Skipped && kind != ResultKind::Skipped,
                };
                if kept {
                    case.result = Some(PendingResult { kind, message, text: String::new() });
                }
                Element::Result { kept }
            }
            (Some(Element::Case), "system-out" | "system-err") => {
                let header = if name == "system-out" { "system-out" } else { "system-err" };
                let case = self.case.as_mut().expect("a Case element always has a pending case");
                case.outputs.push((header, String::new()));
                Element::Output
            }
            _ => Element::Ignored,
        };
        self.root_seen = true;
        self.stack.push((element, name));
        Ok(())
    }

    fn close(&mut self) {
        // Unmatched end tags are rejected by the reader, so the stack is never empty here.
        let Some((element, _)) = self.stack.pop() else { return };
        match element {
            Element::Suite => {
                self.suites.pop();
            }
            Element::Case => {
                let case = self.case.take().expect("a Case element always has a pending case");
                self.cases.push(case.finish());
            }
            Element::Suites | Element::Result { .. } | Element::Output | Element::Ignored => {}
        }
    }

    fn text(&mut self, text: &str) {
        let Some((element, _)) = self.stack.last() else { return };
        let Some(case) = self.case.as_mut() else { return };
        match element {
            Element::Result { kept: true } => {
                if let Some(result) = case.result.as_mut() {
                    result.text.push_str(text);
                }
            }
            Element::Output => {
                if let Some((_, output)) = case.outputs.last_mut() {
                    output.push_str(text);
                }
            }
            _ => {}
        }
    }

    /// An entity or character reference in text: `&lt;`, `&#10;`, `&#x1F600;`.
    fn reference(&mut self, reference: &BytesRef<'_>, offset: usize) -> Result<(), PipelineError> {
        match reference.resolve_char_ref() {
            Ok(Some(c)) => self.text(c.encode_utf8(&mut [0; 4])),
            Ok(None) => match resolve_predefined_entity(reference) {
                Some(text) => self.text(text),
                // An entity declared in a DTD we do not read: keep it as written.
                None => self.text(&format!("&{};", &**reference)),
            },
            Err(error) => return Err(self.error(offset, format!("&{};: {error}", &**reference))),
        }
        Ok(())
    }

    fn pending_case(&self, start: &BytesStart<'_>, offset: usize) -> Result<PendingCase, PipelineError> {
        let suite = self.suites.iter().filter(|name| !name.is_empty()).cloned().collect::<Vec<_>>().join(" > ");
        Ok(PendingCase {
            suite: bounded(&suite, TEXT_LIMIT),
            classname: bounded(&self.attribute(start, "classname", offset)?, TEXT_LIMIT),
            name: bounded(&self.attribute(start, "name", offset)?, TEXT_LIMIT),
            duration_ms: duration_ms(&self.attribute(start, "time", offset)?),
            result: None,
            outputs: Vec::new(),
        })
    }

    /// The value of attribute `key`, with references resolved; empty if it is missing.
    fn attribute(&self, start: &BytesStart<'_>, key: &str, offset: usize) -> Result<String, PipelineError> {
        let attribute = match start.try_get_attribute(key) {
            Ok(Some(attribute)) => attribute,
            Ok(None) => return Ok(String::new()),
            Err(error) => {
                // Positions in attribute errors count from just after the tag's `<`.
                let at = match error {
                    AttrError::ExpectedEq(at)
                    | AttrError::ExpectedValue(at)
                    | AttrError::UnquotedValue(at)
                    | AttrError::ExpectedQuote(at, _)
                    | AttrError::Duplicated(at, _) => offset + 1 + at,
                };
                let message = error.to_string();
                let message = message.split_once(": ").map_or(message.as_str(), |(_, rest)| rest);
                return Err(self.error(at, format!("<{}>: {message}", start.local_name().as_ref())));
            }
        };
        // An unknown entity in a value is kept as written rather than failing the report.
        let value = attribute.normalized_value(XmlVersion::Implicit1_0).unwrap_or_else(|_| attribute.value.clone());
        Ok(value.into_owned())
    }

    /// An error at byte `offset` of the file.
    fn error(&self, offset: usize, message: String) -> PipelineError {
        let offset = offset.min(self.xml.len());
        let mut boundary = offset;
        while !self.xml.is_char_boundary(boundary) {
            boundary -= 1;
        }
        let before = &self.xml[..boundary];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        PipelineError::Junit {
            file: self.file.to_owned(),
            line: line as u64,
            column: column as u64,
            offset: offset as u64,
            message,
        }
    }
}

impl PendingCase {
    fn finish(self) -> TestCase {
        let outcome = match self.result {
            None => Outcome::Passed,
            Some(result) => {
                let text = trim_blank_lines(&result.text);
                let message = match result.message.trim() {
                    "" => text.lines().next().unwrap_or("").trim(),
                    message => message,
                };
                let message = bounded(message, TEXT_LIMIT);
                let mut detail = text.to_owned();
                for (header, output) in &self.outputs {
                    let output = trim_blank_lines(output);
                    if output.is_empty() {
                        continue;
                    }
                    if !detail.is_empty() {
                        detail.push_str("\n\n");
                    }
                    detail.push_str(&format!("--- {header} ---\n{output}"));
                }
                let detail = bounded_middle(&detail, DETAIL_LIMIT);
                match result.kind {
                    ResultKind::Failure => Outcome::Failed { message, detail },
                    ResultKind::Error => Outcome::Error { message, detail },
                    ResultKind::Skipped => Outcome::Skipped { message },
                }
            }
        };
        TestCase {
            suite: self.suite,
            classname: self.classname,
            name: self.name,
            duration_ms: self.duration_ms,
            outcome,
        }
    }
}

/// Seconds as JUnit writes them (`0.003`, `12`, and from some Surefire versions `1,234.5` or
/// `0,003` in the build machine's locale) as whole milliseconds, rounded; 0 if unreadable.
fn duration_ms(time: &str) -> u64 {
    let time = time.trim();
    let time = if time.contains('.') { time.replace(',', "") } else { time.replace(',', ".") };
    match time.parse::<f64>() {
        // `as` saturates: a nonsense huge value becomes u64::MAX rather than wrapping.
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => (seconds * 1000.0).round() as u64,
        _ => 0,
    }
}

/// `text` without leading blank lines and trailing whitespace. Leading spaces of the first
/// non-blank line are kept: they are indentation, as in the lines after it.
fn trim_blank_lines(text: &str) -> &str {
    let text = text.trim_end();
    let first_visible = text.find(|c: char| !c.is_whitespace()).unwrap_or(text.len());
    let line_start = text[..first_visible].rfind('\n').map_or(0, |newline| newline + 1);
    &text[line_start..]
}

/// The largest char boundary in `text` at or before `index`.
fn floor_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The smallest char boundary in `text` at or after `index`.
fn ceil_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

/// `text`, cut to at most `limit` bytes (on a char boundary) with `…` at the end if it was cut.
fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let ellipsis = "…";
    let end = floor_boundary(text, limit - ellipsis.len());
    format!("{}{ellipsis}", &text[..end])
}

/// `text`, or if longer than `limit` bytes its start and end with a marker in between saying how
/// many bytes were left out; the result is at most `limit` bytes.
fn bounded_middle(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    // The marker's length depends on the number in it; reserve room for the longest.
    let marker_room = "\n[… 18446744073709551615 bytes left out …]\n".len();
    let keep = limit.saturating_sub(marker_room) / 2;
    let head_end = floor_boundary(text, keep);
    let tail_start = ceil_boundary(text, text.len() - keep);
    let left_out = tail_start - head_end;
    format!("{}\n[… {left_out} bytes left out …]\n{}", &text[..head_end], &text[tail_start..])
}

#[cfg(test)]
mod tests;
