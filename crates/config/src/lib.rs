//! An app's configuration: `drover.yml`, or a `Procfile` when there is none, parsed into a
//! validated [`model::AppSpec`].
//!
//! This crate owns the file formats and their error messages, and nothing after: it does no IO
//! beyond reading the two files in [`load_dir`], and knows nothing of releases, processes or the
//! proxy. Everything downstream takes the `AppSpec`, never the YAML.
//!
//! Every rejection says where: `drover.yml:14:7: health.path: expected a path starting with "/"`.
//! To get positions for semantic problems too (a bad app name, not only broken YAML), the YAML
//! is read into a tree of located nodes (`node`) and then walked field by field (`yaml`).
//!
//! The drover.yml shape (all but `app` and `processes` optional):
//!
//! ```yaml
//! app: hello
//! processes:                 # Procfile-style; `web` gets $PORT and is routed by the proxy
//!   web: python3 app.py
//!   worker: python3 worker.py
//! build:                     # a command or a list of steps
//!   - run: pip install -r requirements.txt --target .deps
//!     inputs: [requirements.txt]   # a cached layer: reused while its inputs are unchanged
//!     outputs: [.deps]
//!   - python3 -m compileall -q .
//! build_timeout: 30m         # every step together, or the image build; 1s to 6h
//! env: {GREETING: hello}     # numbers and booleans are kept as written; not PORT, HOME,
//!                            # TMPDIR or DROVER_*, which drover sets
//! scale: {web: 2}            # 0 to 100 per declared process; 1 when absent
//! health: {path: /healthz, interval: 1s, timeout: 1s, start_period: 10s,
//!          healthy_threshold: 1, unhealthy_threshold: 2, liveness_threshold: 10}
//! deploy: {strategy: rolling, max_surge: 1, max_unavailable: 0,
//!          deadline: 60s, drain_timeout: 30s, stop_grace: 10s}
//! routing: {balance: least-connections, hosts: [shop.example.com]}
//! pipeline:                  # how a push becomes releases
//!   test: {run: python3 -m unittest, timeout: 10m}
//!   stages:
//!     - {name: preview, branches: ["*"], except: [main]}
//!     - {name: staging, branches: [main]}
//!     - {name: production, branches: [main], after: staging, approval: required}
//! ```
//!
//! Every duration has a range, documented in `model::spec` (`health.interval` from 100ms to 1h,
//! `deploy.deadline` from 1s to 24h, ...), and is refused outside it with the field's bound:
//! `drover.yml:7:13: deploy.deadline: must be at most 24h`. Env entries and commands are checked
//! by `model::env` for what a process can carry (no NUL byte, portable names, size limits). A
//! spec this crate returns passes [`model::AppSpec::validate`].

mod duration;
mod error;
mod node;
mod procfile;
mod suggest;
#[cfg(test)]
mod tests;
mod yaml;

pub use error::{ConfigError, Position};

use model::{AppName, AppSpec};
use std::io;
use std::path::Path;

/// Parses a duration as drover.yml writes it (`500ms`, `1.5s`, `2m`, `1h`) and checks it against
/// `range`: the one parser of durations for every file and flag.
pub fn parse_duration(text: &str, range: model::DurationRange) -> Result<std::time::Duration, String> {
    let too_long = || format!("{text:?}: {}", model::DurationRangeError::TooLong { max: range.max });
    let duration = match duration::parse(text) {
        Ok(duration) => duration,
        Err(duration::Unparsed::Malformed) => return Err(format!("{text:?}: expected {}", duration::EXPECTED)),
        Err(duration::Unparsed::TooLong) => return Err(too_long()),
    };
    range.check(duration).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(duration)
}

/// The file that describes an app, at the root of its source.
pub const DROVER_YML: &str = "drover.yml";
/// The file read when there is no drover.yml.
pub const PROCFILE: &str = "Procfile";

/// Loads `dir/drover.yml`, or else `dir/Procfile`.
///
/// A drover.yml names the app itself; with only a Procfile, the app is named `fallback_name`,
/// and it is an error if there is none. A Procfile next to a drover.yml is ignored.
///
/// Errors about a file's contents name it relative to `dir` (`drover.yml:3:5: ...`), so they
/// read the same for a local checkout and a build directory.
pub fn load_dir(dir: &Path, fallback_name: Option<&AppName>) -> Result<AppSpec, ConfigError> {
    if let Some(text) = read_if_exists(&dir.join(DROVER_YML))? {
        return parse_yaml(DROVER_YML, &text);
    }
    let procfile = dir.join(PROCFILE);
    let Some(text) = read_if_exists(&procfile)? else {
        return Err(ConfigError::NotFound { dir: dir.to_owned() });
    };
    let Some(name) = fallback_name else {
        return Err(ConfigError::NoAppName { procfile });
    };
    parse_procfile(PROCFILE, &text, name.clone())
}

/// Parses the text of a drover.yml; `file` is the name used in errors, e.g. `drover.yml`.
pub fn parse_yaml(file: &str, text: &str) -> Result<AppSpec, ConfigError> {
    yaml::parse(file, text)
}

/// Parses the text of a Procfile into a spec named `name` with default build, env, scale,
/// health and deploy settings; `file` is the name used in errors.
pub fn parse_procfile(file: &str, text: &str, name: AppName) -> Result<AppSpec, ConfigError> {
    procfile::parse(file, text, name)
}

fn read_if_exists(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read { path: path.to_owned(), source }),
    }
}
