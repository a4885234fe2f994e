//! Fuzz target `loader`: drover.yml and Procfile text, as a user (or an attacker with push
//! access) can write it, through [`config::parse_yaml`] and [`config::parse_procfile`].
//!
//! Drover's fuzz targets are plain tests (see issue 9): this one first replays every file of the
//! committed corpus in `fuzz/corpus/loader/` (seeds, and every input that ever failed), then
//! runs a bounded number of proptest cases that mutate the seeds (bit flips, insertions of bytes
//! and of YAML tokens, removals, truncation, splicing two seeds). `DROVER_FUZZ_CASES` sets the
//! number of cases (CI runs the default, a few seconds on 2 cores); failures are not persisted
//! to disk: a failing input is printed, and belongs in the corpus once fixed.
//!
//! What must hold for any input:
//! - no panic;
//! - an error names the file, a line and a column inside the text (`drover.yml:LINE:COL: ...`),
//!   and holds no control character (it is printed in the pusher's terminal);
//! - a spec that loads passes `AppSpec::validate` (so every duration is in range and the env
//!   and commands can be carried by `execve`), and survives the JSON round trip a release makes.

use config::{parse_procfile, parse_yaml, ConfigError};
use model::{AppName, AppSpec};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use std::path::Path;
use testkit::fuzz::{cases, Mutations};

/// Proptest cases when `DROVER_FUZZ_CASES` is unset.
const DEFAULT_CASES: u32 = 1500;

/// Tokens worth inserting: YAML syntax, values at or past a bound, names Drover reserves.
const TOKENS: &[&str] = &[
    "\n",
    "\n  ",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "|\n  ",
    ">\n  ",
    "#",
    "\t",
    "\r\n",
    "\u{feff}",
    "\\0",
    "\"\\0\"",
    "\0",
    "\u{7f}",
    "\u{1b}[31m",
    "é",
    "🦀",
    "~",
    "null",
    "true",
    "0x1F",
    "1e999",
    "-1",
    "0s",
    "0ms",
    "99ms",
    "1h",
    "25h",
    "18446744073709552s",
    "4000000000000000h",
    "99999999999999999999999h",
    "1.000000001s",
    "PORT",
    "DROVER_APP",
    "HOME",
    "env:\n  ",
    "health:\n  interval: ",
    "deploy:\n  deadline: ",
    "pipeline:\n  test:\n    run: ",
    "scale: {web: ",
    "processes:\n  ",
    "build:\n  - ",
    "inputs: [",
    "outputs: [",
    "../",
    "/etc/passwd",
    ".git",
    "app: ",
    "? ",
    "%YAML 1.2\n---\n",
    "---\n",
    "...\n",
];

/// How the seeds are mutated: YAML tokens three times as often as any other change.
const MUTATIONS: Mutations = Mutations {
    tokens: TOKENS,
    token_weight: 3,
    set_byte: true,
    max_insert: 8,
    max_remove: 16,
    max_splice: 64,
    block: None,
};

/// The corpus, in file name order.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let files = testkit::fuzz::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/loader"));
    assert!(files.len() >= 5, "the corpus has its seeds");
    files
}

/// Checks one input against both parsers; `Err` says which property failed.
fn check(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    match parse_yaml("drover.yml", &text) {
        Ok(spec) => check_spec(&spec)?,
        Err(err) => check_error(&err, "drover.yml", &text)?,
    }
    let name = AppName::parse("fuzz").expect("a valid name");
    match parse_procfile("Procfile", &text, name) {
        Ok(spec) => check_spec(&spec)?,
        Err(err) => check_error(&err, "Procfile", &text)?,
    }
    Ok(())
}

fn check_spec(spec: &AppSpec) -> Result<(), String> {
    spec.validate().map_err(|e| format!("a loaded spec does not validate: {e}"))?;
    let json = serde_json::to_string(spec).map_err(|e| format!("the spec does not serialize: {e}"))?;
    let again: AppSpec = serde_json::from_str(&json).map_err(|e| format!("the stored spec does not load: {e}"))?;
    if &again != spec {
        return Err(format!("the spec changes through JSON: {json}"));
    }
    Ok(())
}

fn check_error(err: &ConfigError, file: &str, text: &str) -> Result<(), String> {
    let message = err.to_string();
    let Some(at) = err.position() else {
        return Err(format!("an error about the text has no position: {message}"));
    };
    if at.file != file || !message.starts_with(&format!("{file}:{}:{}: ", at.line, at.column)) {
        return Err(format!("the error does not start with {file}:LINE:COL: {message:?}"));
    }
    // A position one past the last line is where an unexpected end is reported. YAML also
    // breaks lines at a lone `\r`; a Procfile only at `\n` (and drops the `\r` of `\r\n`).
    let normalized = match file {
        "Procfile" => text.replace("\r\n", "\n"),
        _ => text.replace("\r\n", "\n").replace('\r', "\n"),
    };
    let lines: Vec<&str> = normalized.split('\n').collect();
    let line_len =
        usize::try_from(at.line).ok().and_then(|line| lines.get(line.checked_sub(1)?)).map(|line| line.chars().count());
    let column_ok = line_len.is_none_or(|len| at.column <= len as u64 + 1);
    if at.line == 0 || at.column == 0 || at.line > lines.len() as u64 + 1 || !column_ok {
        return Err(format!("the position is outside the text ({} lines): {message:?}", lines.len()));
    }
    if let Some(c) = message.chars().find(|c| c.is_control()) {
        return Err(format!("the error holds the control character {c:?}: {message:?}"));
    }
    Ok(())
}

#[test]
fn loader_corpus_replays() {
    for (name, bytes) in corpus() {
        if let Err(problem) = check(&bytes) {
            panic!("corpus file {name}: {problem}");
        }
    }
}

#[test]
fn loader_survives_mutated_seeds() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, bytes)| bytes).collect();
    let config = ProptestConfig { cases: cases(DEFAULT_CASES), failure_persistence: None, ..ProptestConfig::default() };
    let strategy = (0..seeds.len(), prop::collection::vec(MUTATIONS.strategy(), 1..6));
    let result = TestRunner::new(config).run(&strategy, |(seed_idx, mutations)| {
        let input = MUTATIONS.apply(&seeds, seeds[seed_idx].clone(), &mutations);
        check(&input)
            .map_err(|problem| TestCaseError::fail(format!("{problem}\ninput: {:?}", String::from_utf8_lossy(&input))))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// Structured inputs: a valid document with one field set to a generated value, so that the
/// checks on values (durations, env, paths, counts) are reached far more often than by
/// mutation alone.
#[test]
fn loader_survives_generated_fields() {
    let field = prop_oneof![
        Just("health:\n  interval: "),
        Just("health:\n  timeout: "),
        Just("health:\n  start_period: "),
        Just("deploy:\n  deadline: "),
        Just("deploy:\n  drain_timeout: "),
        Just("deploy:\n  stop_grace: "),
        Just("pipeline:\n  test:\n    run: t\n    timeout: "),
        Just("scale:\n  web: "),
        Just("env:\n  A: "),
        Just("env:\n  "),
        Just("build:\n  - "),
        Just("build:\n  - {run: make, outputs: [out], inputs: "),
        Just("health:\n  path: "),
        Just("routing:\n  hosts:\n    - "),
    ];
    let number = prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{1,30}(\\.[0-9]{1,12})?",
    ];
    let value = prop_oneof![
        (number, prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just(""), Just("d")])
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        "\"[ -~\\x00-\\x1f\\x7f\u{80}-\u{10ffff}]{0,12}\"",
        "[A-Za-z0-9_=./ -]{0,12}",
        prop::sample::select(TOKENS).prop_map(str::to_owned),
    ];
    let config =
        ProptestConfig { cases: cases(DEFAULT_CASES) / 3 + 1, failure_persistence: None, ..ProptestConfig::default() };
    let result = TestRunner::new(config).run(&(field, value), |(field, value)| {
        let input = format!("app: hello\nprocesses:\n  web: ./server\n{field}{value}\n");
        check(input.as_bytes()).map_err(|problem| TestCaseError::fail(format!("{problem}\ninput: {input:?}")))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
