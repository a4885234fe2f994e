//! The data model of the `pipeline:` section of `drover.yml`, and the pure decisions on it.
//!
//! ```yaml
//! pipeline:
//!   test:
//!     run: python3 -m pytest --junitxml=$DROVER_REPORTS/junit.xml   # a string or a list
//!     timeout: 10m
//!   stages:
//!     - {name: preview, branches: ["*"], except: [main]}
//!     - {name: staging, branches: [main]}
//!     - {name: production, branches: [main], after: staging, approval: required}
//! ```
//!
//! `config` reads the YAML into these types (it owns positions and the YAML syntax, such as a
//! single `run:` string standing for a one-command list), parses each branch pattern with
//! [`BranchPattern::parse`] and then calls [`PipelineSpec::validate`], whose errors carry the
//! dotted path of the offending field so they can be reported at the right line. Everything here
//! is a function of its arguments: no IO, no clock.
//!
//! A branch name is only ever data: it is matched against patterns and turned into a preview
//! app's name by [`preview_app_name`], whose output is a valid [`AppName`] whatever the branch
//! holds, so it can never carry a shell metacharacter or a path separator onward.

use crate::AppName;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::time::Duration;

/// The `pipeline:` section: an optional test step, then the stages a branch deploys to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSpec {
    #[serde(default)]
    pub test: Option<TestSpec>,
    #[serde(default)]
    pub stages: Vec<StageSpec>,
}

/// `pipeline.test`: commands run in the built artifact before any stage deploys it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSpec {
    /// Run in order with `sh -c`; the first that fails fails the step.
    pub run: Vec<String>,
    /// For the whole step, all commands together.
    pub timeout: Duration,
}

impl TestSpec {
    /// The timeout when `drover.yml` gives none.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
}

/// One entry of `pipeline.stages`: which branches deploy to it, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSpec {
    /// A DNS label, unique within the pipeline.
    pub name: String,
    /// A branch deploys to this stage if it matches one of these...
    pub branches: Vec<BranchPattern>,
    /// ...and none of these.
    #[serde(default)]
    pub except: Vec<BranchPattern>,
    /// An earlier stage this one waits for: the same release must have deployed there first.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub approval: Approval,
    /// The extra host names of this stage's app, in place of those [`StageSpec::hosts`] derives
    /// from the app's `routing.hosts`.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
}

impl StageSpec {
    /// The extra host names this stage's app serves, given the app's own `routing.hosts`: the
    /// stage's `hosts:` when it has them; else `production` serves the app's hosts, a `preview`
    /// none (each branch is an app of its own, reached at its own `APP.DOMAIN`), and any other
    /// stage `STAGE.HOST` for each of them, e.g. `staging.shop.example.com`. A stage app never
    /// gets a copy of production's hosts, which production holds.
    pub fn hosts(&self, app_hosts: &[String]) -> Vec<String> {
        if let Some(hosts) = &self.hosts {
            return hosts.clone();
        }
        match self.name.as_str() {
            "production" => app_hosts.to_vec(),
            "preview" => Vec::new(),
            stage => app_hosts.iter().map(|host| format!("{stage}.{host}")).collect(),
        }
    }

    /// Whether `branch` deploys to this stage: it matches a pattern of `branches` and none of
    /// `except`.
    pub fn matches(&self, branch: &str) -> bool {
        self.branches.iter().any(|pattern| pattern.matches(branch))
            && !self.except.iter().any(|pattern| pattern.matches(branch))
    }
}

/// Whether a stage deploys as soon as it may, or waits for someone to approve it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Deploy without asking.
    #[default]
    None,
    /// Wait until a user approves the deploy to this stage.
    Required,
}

impl PipelineSpec {
    /// The stages `branch` deploys to, in declared order.
    pub fn stages_for(&self, branch: &str) -> Vec<&StageSpec> {
        self.stages.iter().filter(|stage| stage.matches(branch)).collect()
    }

    /// Checks what the types cannot: the test step has commands and a timeout, stage names are
    /// DNS labels and unique, every stage has a branch pattern, and `after` names an earlier
    /// stage. Returns the first problem in declaration order.
    ///
    /// Several stages may match the same branch (a branch can deploy to `staging` and then
    /// `production`); that is allowed, and so is a stage no branch can reach.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(test) = &self.test {
            if test.run.is_empty() {
                return Err(SpecError::test("run", "expected at least one command"));
            }
            if let Some(command_idx) = test.run.iter().position(|command| command.trim().is_empty()) {
                return Err(SpecError::test(&format!("run[{command_idx}]"), "the command is empty"));
            }
            if test.timeout.is_zero() {
                return Err(SpecError::test("timeout", "expected a duration longer than 0s, like 10m"));
            }
        }
        for (stage_idx, stage) in self.stages.iter().enumerate() {
            check_stage_name(&stage.name).map_err(|message| SpecError::stage(stage_idx, "name", message))?;
            if let Some(first_idx) = self.stages[..stage_idx].iter().position(|earlier| earlier.name == stage.name) {
                let message = format!("stage {:?} is already declared as stages[{first_idx}]", stage.name);
                return Err(SpecError::stage(stage_idx, "name", message));
            }
            if stage.branches.is_empty() {
                let message = r#"expected at least one branch pattern, like ["main"] or ["*"]"#.to_owned();
                return Err(SpecError::stage(stage_idx, "branches", message));
            }
            if let Some(after) = &stage.after {
                check_after(&self.stages, stage_idx, after)
                    .map_err(|message| SpecError::stage(stage_idx, "after", message))?;
            }
            if stage.name == "preview" && stage.hosts.as_ref().is_some_and(|hosts| !hosts.is_empty()) {
                let message = "a preview is an app per branch, so these hosts would be every branch's: \
                               previews answer at their own APP.DOMAIN"
                    .to_owned();
                return Err(SpecError::stage(stage_idx, "hosts", message));
            }
        }
        Ok(())
    }
}

/// The longest stage name: a DNS label.
const STAGE_NAME_MAX_LEN: usize = 63;

fn check_stage_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the stage name is empty".to_owned());
    }
    if name.len() > STAGE_NAME_MAX_LEN {
        return Err(format!("stage name {name:?} is longer than {STAGE_NAME_MAX_LEN} characters"));
    }
    let first_ok = name.starts_with(|c: char| c.is_ascii_lowercase());
    let rest_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !rest_ok || name.ends_with('-') {
        return Err(format!(
            "stage name {name:?} may only contain lowercase letters, digits and '-', and must start with a letter"
        ));
    }
    Ok(())
}

fn check_after(stages: &[StageSpec], stage_idx: usize, after: &str) -> Result<(), String> {
    if stages[stage_idx].name == after {
        return Err(format!("stage {after:?} cannot come after itself"));
    }
    if stages[..stage_idx].iter().any(|earlier| earlier.name == after) {
        return Ok(());
    }
    match stages[stage_idx + 1..].iter().position(|later| later.name == after) {
        Some(offset) => Err(format!(
            "stage {after:?} is declared later, as stages[{}]: `after` must name an earlier stage",
            stage_idx + 1 + offset
        )),
        None => {
            let names: Vec<String> = stages[..stage_idx].iter().map(|earlier| format!("{:?}", earlier.name)).collect();
            if names.is_empty() {
                return Err(format!("no stage named {after:?}: this is the first stage, so it cannot come after one"));
            }
            Err(format!("no stage named {after:?}; earlier stages are {}", names.join(", ")))
        }
    }
}

/// A problem with the `pipeline:` section, and the field it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The dotted path from the top of `drover.yml`, e.g. `pipeline.stages[2].after` or
    /// `pipeline.test.run[0]`, in the form `config` uses for its own field paths.
    pub field: String,
    /// The index into `stages` when the problem is with a stage.
    pub stage_idx: Option<usize>,
    pub message: String,
}

impl SpecError {
    fn test(field: &str, message: &str) -> Self {
        Self { field: format!("pipeline.test.{field}"), stage_idx: None, message: message.to_owned() }
    }

    fn stage(stage_idx: usize, field: &str, message: String) -> Self {
        Self { field: format!("pipeline.stages[{stage_idx}].{field}"), stage_idx: Some(stage_idx), message }
    }
}

/// A branch name pattern: `*` matches any run of characters (`/` included, so `feature/*`
/// matches `feature/a/b`), everything else matches itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BranchPattern(String);

/// Why a branch pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the branch pattern is empty")]
    Empty,
    /// Git does not allow the character in a branch name, so the pattern could never match.
    #[error("branch pattern {pattern:?} contains {found:?}, which no branch name can hold (only `*` is a wildcard)")]
    BadChar { pattern: String, found: char },
}

impl BranchPattern {
    /// Accepts any text a git branch name could match: not empty, and without whitespace,
    /// control characters or any of `~ ^ : ? [ \`, which git forbids in branch names. `?` and
    /// `[` are refused rather than taken literally because in a pattern they read as wildcards.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        let bad = |c: char| c.is_whitespace() || c.is_control() || "~^:?[\\".contains(c);
        if let Some(found) = pattern.chars().find(|c| bad(*c)) {
            return Err(PatternError::BadChar { pattern: pattern.to_owned(), found });
        }
        Ok(Self(pattern.to_owned()))
    }

    /// Whether the whole of `branch` matches the pattern.
    pub fn matches(&self, branch: &str) -> bool {
        glob_match(self.0.as_bytes(), branch.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BranchPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BranchPattern {
    type Error = PatternError;
    fn try_from(value: String) -> Result<Self, PatternError> {
        Self::parse(&value)
    }
}

impl From<BranchPattern> for String {
    fn from(value: BranchPattern) -> String {
        value.0
    }
}

/// Glob matching with `*` as the only wildcard, in time linear in the text for each star.
///
/// On a mismatch after a star, the star takes one more byte and matching resumes from just after
/// it; earlier stars never need to be revisited, because a later star can absorb anything an
/// earlier one would have. Working on bytes is sound for UTF-8: literal bytes only match the
/// same bytes, so a match never splits a character between a literal and the text.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pattern_idx, mut text_idx) = (0, 0);
    // The last star seen, and the text position its match currently ends at.
    let mut star: Option<(usize, usize)> = None;
    while text_idx < text.len() {
        match pattern.get(pattern_idx) {
            Some(b'*') => {
                star = Some((pattern_idx, text_idx));
                pattern_idx += 1;
            }
            Some(&byte) if byte == text[text_idx] => {
                pattern_idx += 1;
                text_idx += 1;
            }
            _ => match star {
                Some((star_idx, star_end)) => {
                    star = Some((star_idx, star_end + 1));
                    pattern_idx = star_idx + 1;
                    text_idx = star_end + 1;
                }
                None => return false,
            },
        }
    }
    pattern[pattern_idx..].iter().all(|&byte| byte == b'*')
}

/// The length of the hash that keeps shortened preview names apart.
const HASH_LEN: usize = 6;

/// The name of `app`'s preview app for `branch`: `<branch-slug>-<app>`, e.g. `feature/login`
/// of `hello` becomes `feature-login-hello`.
///
/// The slug is the branch lowercased, with every run of characters other than ASCII letters and
/// digits turned into one `-`, trimmed of `-` at either end. When that does not make a valid
/// name within [`AppName::MAX_LEN`] (too long, or a slug that is empty or starts with a digit)
/// the name becomes `<slug-prefix>-<hash>-<app>`: the slug is cut (and prefixed with `b` if it
/// does not start with a letter), `<hash>` is 6 hex digits of the SHA-256 of `app` and `branch`
/// so branches that share a prefix stay apart, and `app` itself is cut to 31 characters if it
/// is longer. Returns `None` only for an empty branch name.
///
/// Two branches that differ only in punctuation or case (`feature/login`, `Feature-Login`) get
/// the same name, and so can an app and another app's preview (`login` of app `hello` and app
/// `login-hello`): callers must check that a preview name is not taken by something else, and
/// then fall back to [`preview_app_name_hashed`].
pub fn preview_app_name(app: &AppName, branch: &str) -> Option<AppName> {
    if branch.is_empty() {
        return None;
    }
    let slug = slug(branch);
    let plain = format!("{slug}-{app}");
    if slug.starts_with(|c: char| c.is_ascii_lowercase()) && plain.len() <= AppName::MAX_LEN {
        return Some(
            AppName::parse(&plain).expect("a slug starting with a letter, '-' and an app name make an app name"),
        );
    }
    preview_app_name_hashed(app, branch)
}

/// The name of `app`'s preview app for `branch` with the hash always in it,
/// `<slug-prefix>-<hash>-<app>`: the name to use when [`preview_app_name`] is taken. Distinct
/// branches get distinct names but for a hash collision (6 hex digits). `None` for an empty
/// branch name.
pub fn preview_app_name_hashed(app: &AppName, branch: &str) -> Option<AppName> {
    if branch.is_empty() {
        return None;
    }
    let slug = slug(branch);
    let app = app.as_str();
    let mut hasher = Sha256::new();
    hasher.update(app.as_bytes());
    hasher.update([0]);
    hasher.update(branch.as_bytes());
    let hash: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    let hash = &hash[..HASH_LEN];

    // `b` for branch: a name must start with a letter.
    let prefix = if slug.starts_with(|c: char| c.is_ascii_lowercase()) { slug } else { format!("b{slug}") };
    // At least one character of the prefix must fit, so the name starts with a letter.
    let app_room = AppName::MAX_LEN - 1 - 1 - HASH_LEN - 1;
    let app = app[..app.len().min(app_room)].trim_end_matches('-');
    let prefix_room = AppName::MAX_LEN - app.len() - HASH_LEN - 2;
    let prefix = prefix[..prefix.len().min(prefix_room)].trim_end_matches('-');
    let name = format!("{prefix}-{hash}-{app}");
    Some(AppName::parse(&name).expect("a prefix starting with a letter, a hex hash and an app name make an app name"))
}

/// `branch` lowercased, each run of characters other than ASCII letters and digits turned into
/// one `-`, without `-` at either end. Only ASCII is kept, so byte and character lengths agree.
fn slug(branch: &str) -> String {
    let mut slug = String::with_capacity(branch.len());
    for c in branch.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let len = slug.trim_end_matches('-').len();
    slug.truncate(len);
    slug
}

#[cfg(test)]
mod tests;
