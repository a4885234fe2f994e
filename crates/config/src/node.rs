//! A YAML document as a tree of nodes that each remember where they are in the file.
//!
//! This is the only module that talks to `serde-saphyr`. Deserializing straight into typed
//! structs would report type errors with a line and column but without the field path, and
//! semantic errors (a bad app name, a path without "/") with neither. So the document is first
//! read into this small tree, every node wrapped in [`serde_saphyr::Spanned`], and `yaml` walks
//! it with the path and position of every key and value at hand.

use crate::error::{ConfigError, Position};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};
use std::fmt;
use std::ops::Range;

/// A 1-based line and column (in characters), as `serde-saphyr` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub fn in_file(self, file: &str) -> Position {
        Position { file: file.to_owned(), line: self.line, column: self.column }
    }
}

impl From<serde_saphyr::Location> for Pos {
    fn from(location: serde_saphyr::Location) -> Self {
        Self { line: location.line(), column: location.column() }
    }
}

/// A YAML node and where it is in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    /// Where the node is used; for an alias (`*a`) that is the alias, not the anchor, because
    /// the alias is where the value takes on the meaning that may be wrong.
    pub pos: Pos,
    /// Byte range of the node's definition in the source, to recover a scalar as written.
    source: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order. Duplicate keys are kept so that the walker can report them with
    /// their field path.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A scalar as text: a string as decoded, a number or boolean exactly as written, so that
    /// `VERSION: 1.10` stays "1.10" instead of becoming "1.1". `None` for null and collections.
    pub fn scalar_text(&self, text: &str) -> Option<String> {
        let as_written = || self.source.clone().and_then(|range| text.get(range)).map(str::to_owned);
        match &self.value {
            Value::Str(value) => Some(value.clone()),
            Value::Bool(value) => Some(as_written().unwrap_or_else(|| value.to_string())),
            Value::Int(value) => Some(as_written().unwrap_or_else(|| value.to_string())),
            Value::Float(value) => Some(as_written().unwrap_or_else(|| value.to_string())),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// Describes the node for "expected X, found Y" messages.
    pub fn describe(&self, text: &str) -> String {
        match &self.value {
            Value::Null => "nothing".to_owned(),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
            Value::Str(value) => format!("{value:?}"),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => self.scalar_text(text).unwrap_or_default(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        let span = spanned.defined.span();
        let source = match (span.byte_offset(), span.byte_len()) {
            (Some(start), Some(len)) => {
                usize::try_from(start).ok().zip(usize::try_from(len).ok()).map(|(start, len)| start..start + len)
            }
            _ => None,
        };
        Ok(Self { value: spanned.value, pos: spanned.referenced.into(), source })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Int(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Int(value.into()))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Value, E> {
        Ok(Value::Int(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::Str(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::Str(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// Reads one YAML document into a tree of nodes; `file` names it in errors.
pub(crate) fn parse(file: &str, text: &str) -> Result<Node, ConfigError> {
    let options = serde_saphyr::options! {
        // Duplicates reach the walker, which reports them with their field path.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        // YAML 1.1 reads `on`, `y` and `no` as booleans, which would turn an env value `no`
        // into "false" and a key `y` into `true`. Only `true` and `false` are booleans here.
        strict_booleans: true,
        // `.nan` is a fine env value; it is kept as written like any other number.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        emit_comments: false,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|err| {
        let err = err.without_snippet();
        // Messages come from the parser; keep control characters out of the user's terminal.
        let message: String =
            UserMessageFormatter.format_message(err).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        // The parser's budget (against alias bombs) reports in its own debug notation.
        let message = match message.contains("limits breached") {
            true => "the document is larger or more deeply nested than a drover.yml can be (too many nodes or \
                     aliases)"
                .to_owned(),
            false => message,
        };
        let pos = err.location().map_or(Pos { line: 1, column: 1 }, Pos::from);
        ConfigError::Malformed { at: pos.in_file(file), message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders a tree as `line:column=value` so that positions are checked along with values.
    fn render(node: &Node, text: &str) -> String {
        let at = format!("{}:{}=", node.pos.line, node.pos.column);
        match &node.value {
            Value::Seq(items) => {
                let items: Vec<String> = items.iter().map(|item| render(item, text)).collect();
                format!("{at}[{}]", items.join(", "))
            }
            Value::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(key, value)| format!("{}: {}", render(key, text), render(value, text)))
                    .collect();
                format!("{at}{{{}}}", entries.join(", "))
            }
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) => {
                format!("{at}{}", node.describe(text))
            }
        }
    }

    fn check(text: &str, expected: &str) {
        let actual = match parse("t.yml", text) {
            Ok(node) => render(&node, text),
            Err(err) => err.to_string(),
        };
        assert_eq!(actual, expected, "input: {text:?}");
    }

    #[test]
    fn trees_carry_positions() {
        let table = [
            ("a: b\n", r#"1:1={1:1="a": 1:4="b"}"#),
            ("", "1:1=nothing"),
            ("- 1\n- x\n", r#"1:1=[1:3=1, 2:3="x"]"#),
            // Numbers keep their spelling; only `true`/`false` are booleans.
            (
                "{v: 1.10, h: 0x1F, b: no, t: true}",
                r#"1:1={1:2="v": 1:5=1.10, 1:11="h": 1:14=0x1F, 1:20="b": 1:23="no", 1:27="t": 1:30=true}"#,
            ),
            // Duplicates are passed through for the walker to report.
            ("a: 1\na: 2\n", r#"1:1={1:1="a": 1:4=1, 2:1="a": 2:4=2}"#),
            // An alias is located where it is used.
            ("a: &x 5\nb: *x\n", r#"1:1={1:1="a": 1:7=5, 2:1="b": 2:4=5}"#),
            // Columns count characters, not bytes.
            ("é: ü\n", r#"1:1={1:1="é": 1:4="ü"}"#),
        ];
        for (text, expected) in table {
            check(text, expected);
        }
    }

    #[test]
    fn syntax_errors_have_positions() {
        let table = [
            ("a: [1, 2\n", "t.yml:1:4: unclosed bracket '['"),
            ("a: b: c\n", "t.yml:1:5: mapping values are not allowed in this context"),
            ("a:\n\tb: c\n", "t.yml:2:2: tabs disallowed within this context (block indentation)"),
        ];
        for (text, expected) in table {
            check(text, expected);
        }
    }
}
