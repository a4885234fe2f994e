//! What an app declares: processes, build, env, scale, health and deploy policy.
//!
//! `config` builds an [`AppSpec`] from `drover.yml` or a `Procfile`; everything downstream takes
//! the validated spec. A release stores the spec it was built from, so rollback restores it.
//!
//! Every duration has a [`DurationRange`], checked by `config` at parse time (with the file,
//! line and field) and again by [`AppSpec::validate`]. Downstream code converts durations to
//! milliseconds, timers and deadlines, so an unbounded one (`deadline: 18446744073709552s`)
//! would wrap or overflow there; and some must not be 0, which would be a busy loop:
//!
//! | field | range | why |
//! |---|---|---|
//! | `health.interval` | 100ms to 1h | every backend is probed this often; less is a busy loop |
//! | `health.timeout` | 10ms to 10m | a probe that can never succeed, or one that never ends |
//! | `health.start_period` | 0 to 1h | even a slow JVM is up within the hour |
//! | `deploy.deadline` | 1s to 24h | a rollback that starts at once, or a deploy stuck for days |
//! | `deploy.drain_timeout` | 0 to 1h | 0 stops at once; long-lived connections get an hour |
//! | `deploy.stop_grace` | 0 to 1h | 0 is SIGKILL at once |
//! | `pipeline.test.timeout` | 1s to 6h | 6h is the job limit of GitHub Actions |
//! | `build_timeout` | 1s to 6h | the same for a build; the default is 30 minutes |

use crate::env::{check_command, check_env_key, check_env_len, check_env_var};
use crate::{AppName, Balance, ProcessType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The values a duration field may take: `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

/// Why a duration is outside its [`DurationRange`]; the message reads `must be at most 24h`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationRangeError {
    #[error("must be at least {}", HumanDuration(*min))]
    TooShort { min: Duration },
    #[error("must be at most {}", HumanDuration(*max))]
    TooLong { max: Duration },
}

impl DurationRange {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    pub fn check(&self, value: Duration) -> Result<(), DurationRangeError> {
        if value < self.min {
            return Err(DurationRangeError::TooShort { min: self.min });
        }
        if value > self.max {
            return Err(DurationRangeError::TooLong { max: self.max });
        }
        Ok(())
    }
}

/// A duration as drover.yml spells it: `100ms`, `10m`, `24h`; `{:?}` for what has no unit.
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let units: [(u128, &str); 4] =
            [(3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"), (1_000_000, "ms")];
        if nanos == 0 {
            return f.write_str("0s");
        }
        match units.iter().find(|(unit, _)| nanos.is_multiple_of(*unit)) {
            Some((unit, suffix)) => write!(f, "{}{suffix}", nanos / unit),
            None => write!(f, "{:?}", self.0),
        }
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `pipeline.test.timeout`: the whole test step.
pub const TEST_TIMEOUT_RANGE: DurationRange = DurationRange::new(secs(1), secs(6 * 3600));

/// `build_timeout`: all build steps together, or the image build.
pub const BUILD_TIMEOUT_RANGE: DurationRange = DurationRange::new(secs(1), secs(6 * 3600));

/// The build timeout when `drover.yml` names none: twice Heroku's fixed 15 minutes.
pub const DEFAULT_BUILD_TIMEOUT: Duration = secs(30 * 60);

fn default_build_timeout() -> Duration {
    DEFAULT_BUILD_TIMEOUT
}

/// How often a source is polled (`drover source set --poll`): not a busy loop, and at least
/// once a day.
pub const POLL_INTERVAL_RANGE: DurationRange = DurationRange::new(secs(1), secs(24 * 3600));

/// A validated app description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: AppName,
    /// Command lines run with `sh -c`, Procfile-style. `web` gets `$PORT` and is routed.
    pub processes: BTreeMap<ProcessType, String>,
    /// Steps run in order in a clean copy of the source; the resulting tree is the artifact.
    pub build: Vec<BuildStep>,
    /// Build a container image from this Dockerfile (a path in the source) instead of a slug;
    /// the image is the artifact. Exclusive with `build`.
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// How long the build (every step, or the image build) may take before it is stopped.
    #[serde(default = "default_build_timeout")]
    pub build_timeout: Duration,
    pub env: BTreeMap<String, String>,
    /// Instances per process type. Types absent here run one instance.
    pub scale: BTreeMap<ProcessType, u32>,
    pub health: HealthSpec,
    pub deploy: DeploySpec,
    #[serde(default)]
    pub routing: RoutingSpec,
    /// Config vars set with `drover config set` when the release was made; they override `env`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Names of the app's secrets when the release was made. Their values are never part of a
    /// spec: they are sealed at rest and opened only into a process's environment.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// How pushes become releases: the test step and the stages.
    #[serde(default)]
    pub pipeline: crate::pipeline::PipelineSpec,
    /// Whose config vars and secrets this app takes, when it is a pipeline stage's app (such as
    /// `hello-staging`); `None` means its own.
    #[serde(default)]
    pub vars_from: Option<VarScope>,
}

/// The config vars and secrets of `app` for all stages, overlaid by those set for `stage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VarScope {
    pub app: AppName,
    /// Empty for the vars every stage shares.
    pub stage: String,
}

impl AppSpec {
    /// An app running `processes`, with everything else at its default: no build steps, no
    /// env, one instance per process, default health checks and a rolling deploy.
    pub fn new(name: AppName, processes: BTreeMap<ProcessType, String>) -> Self {
        Self {
            name,
            processes,
            build: Vec::new(),
            dockerfile: None,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            env: BTreeMap::new(),
            scale: BTreeMap::new(),
            health: HealthSpec::default(),
            deploy: DeploySpec::default(),
            routing: RoutingSpec::default(),
            config: BTreeMap::new(),
            secrets: Vec::new(),
            pipeline: crate::pipeline::PipelineSpec::default(),
            vars_from: None,
        }
    }

    /// The plain environment of the app's processes: `env` with `config` on top.
    pub fn run_env(&self) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        env.extend(self.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// Where this app's config vars and secrets come from.
    pub fn var_scope(&self) -> VarScope {
        self.vars_from.clone().unwrap_or_else(|| VarScope { app: self.name.clone(), stage: String::new() })
    }

    /// How many instances of `process` the spec asks for.
    pub fn scale_of(&self, process: &ProcessType) -> u32 {
        self.scale.get(process).copied().unwrap_or(1)
    }

    /// Checks what the types cannot, for a spec from anywhere (`config` checks the same while
    /// parsing, with positions): every duration within its range, every variable and command
    /// something `execve` can carry (see [`crate::env`]), and the pipeline's own rules.
    /// Returns the first problem.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        for (field, value, range) in self.durations() {
            range.check(value).map_err(|e| InvalidSpec::new(field.to_owned(), e.to_string()))?;
        }
        for (process, command) in &self.processes {
            check_command_text(command).map_err(|message| InvalidSpec::new(format!("processes.{process}"), message))?;
        }
        for (step_idx, step) in self.build.iter().enumerate() {
            check_command_text(&step.run).map_err(|message| InvalidSpec::new(format!("build[{step_idx}]"), message))?;
        }
        if let Some(test) = &self.pipeline.test {
            for (command_idx, command) in test.run.iter().enumerate() {
                check_command_text(command)
                    .map_err(|message| InvalidSpec::new(format!("pipeline.test.run[{command_idx}]"), message))?;
            }
        }
        for (section, vars) in [("env", &self.env), ("config", &self.config)] {
            for (key, value) in vars {
                check_env_var(key, value)
                    .map_err(|e| InvalidSpec::new(format!("{section}.{}", field_segment(key)), e.to_string()))?;
            }
        }
        let run_env = self.run_env();
        check_env_len(run_env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .map_err(|e| InvalidSpec::new("env".to_owned(), e.to_string()))?;
        for (secret_idx, name) in self.secrets.iter().enumerate() {
            check_env_key(name).map_err(|e| InvalidSpec::new(format!("secrets[{secret_idx}]"), e.to_string()))?;
        }
        self.pipeline.validate().map_err(|e| InvalidSpec::new(e.field, e.message))
    }

    /// Every duration of the spec: its field path, value and allowed range.
    pub fn durations(&self) -> Vec<(&'static str, Duration, DurationRange)> {
        let mut durations = vec![
            ("health.interval", self.health.interval, HealthSpec::INTERVAL_RANGE),
            ("health.timeout", self.health.timeout, HealthSpec::TIMEOUT_RANGE),
            ("health.start_period", self.health.start_period, HealthSpec::START_PERIOD_RANGE),
            ("deploy.deadline", self.deploy.deadline, DeploySpec::DEADLINE_RANGE),
            ("deploy.drain_timeout", self.deploy.drain_timeout, DeploySpec::DRAIN_TIMEOUT_RANGE),
            ("deploy.stop_grace", self.deploy.stop_grace, DeploySpec::STOP_GRACE_RANGE),
            ("build_timeout", self.build_timeout, BUILD_TIMEOUT_RANGE),
        ];
        if let Some(test) = &self.pipeline.test {
            durations.push(("pipeline.test.timeout", test.timeout, TEST_TIMEOUT_RANGE));
        }
        durations
    }
}

/// A problem [`AppSpec::validate`] found: the dotted path of the field, as `config` names it,
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSpec {
    pub field: String,
    pub message: String,
}

impl InvalidSpec {
    fn new(field: String, message: String) -> Self {
        Self { field, message }
    }
}

fn check_command_text(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("expected a command, found an empty string".to_owned());
    }
    check_command(command).map_err(|e| e.to_string())
}

/// A key as a field path segment: plain words as they are, anything else quoted, as `config`
/// writes them (`env."A B"`).
fn field_segment(name: &str) -> String {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match plain {
        true => name.to_owned(),
        false => format!("{name:?}"),
    }
}

/// One build step: a command line run with `sh -c`.
///
/// A step with `inputs` is a cached layer, like a Dockerfile's `COPY requirements.txt` then
/// `RUN pip install`: it runs in a directory holding only its inputs, and what it leaves at its
/// `outputs` is kept under the hash of the inputs, the command and the env. A later build whose
/// inputs are unchanged (only app code changed) copies the outputs instead of running the
/// command. Paths are relative, made of plain components, and validated by `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BuildStepRepr")]
pub struct BuildStep {
    pub run: String,
    /// Files or directories the step reads; empty for a plain step that runs in the whole tree.
    pub inputs: Vec<String>,
    /// Files or directories the step produces; non-empty exactly when `inputs` is.
    pub outputs: Vec<String>,
}

impl BuildStep {
    /// A plain step: runs in the whole build tree, never cached on its own.
    pub fn command(run: impl Into<String>) -> Self {
        Self { run: run.into(), inputs: Vec::new(), outputs: Vec::new() }
    }

    /// Whether this step's outputs are cached by its inputs.
    pub fn is_layer(&self) -> bool {
        !self.inputs.is_empty()
    }
}

/// What a stored [`BuildStep`] may look like: releases made before layers existed hold a plain
/// command string.
#[derive(Deserialize)]
#[serde(untagged)]
enum BuildStepRepr {
    Command(String),
    Step {
        run: String,
        #[serde(default)]
        inputs: Vec<String>,
        #[serde(default)]
        outputs: Vec<String>,
    },
}

impl From<BuildStepRepr> for BuildStep {
    fn from(repr: BuildStepRepr) -> Self {
        match repr {
            BuildStepRepr::Command(run) => Self::command(run),
            BuildStepRepr::Step { run, inputs, outputs } => Self { run, inputs, outputs },
        }
    }
}

/// How the proxy reaches the app: balancing and extra host names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingSpec {
    pub balance: Balance,
    /// Host names served besides `APP.DOMAIN`, lowercase, without port.
    pub hosts: Vec<String>,
}

/// How the proxy decides an instance is ready, and when the reconciler replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// HTTP path to GET; `None` means a TCP connect check.
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures during this period after start do not count against the instance.
    pub start_period: Duration,
    /// Consecutive successes before an instance becomes ready.
    pub healthy_threshold: u32,
    /// Consecutive failures before a ready instance stops receiving traffic.
    pub unhealthy_threshold: u32,
    /// Consecutive failures after which the instance is replaced (liveness).
    pub liveness_threshold: u32,
}

impl HealthSpec {
    /// Each backend is probed this often: never a busy loop, at least once an hour.
    pub const INTERVAL_RANGE: DurationRange = DurationRange::new(Duration::from_millis(100), secs(3600));
    pub const TIMEOUT_RANGE: DurationRange = DurationRange::new(Duration::from_millis(10), secs(600));
    pub const START_PERIOD_RANGE: DurationRange = DurationRange::new(Duration::ZERO, secs(3600));
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            path: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            start_period: Duration::from_secs(10),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
            liveness_threshold: 10,
        }
    }
}

/// How a new release replaces the running one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    pub strategy: Strategy,
    /// If the new release is not fully healthy within this time, the deploy rolls back.
    pub deadline: Duration,
    /// How long a draining instance may finish in-flight requests before it is stopped.
    pub drain_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when an instance stops.
    pub stop_grace: Duration,
}

impl DeploySpec {
    pub const DEADLINE_RANGE: DurationRange = DurationRange::new(secs(1), secs(24 * 3600));
    pub const DRAIN_TIMEOUT_RANGE: DurationRange = DurationRange::new(Duration::ZERO, secs(3600));
    pub const STOP_GRACE_RANGE: DurationRange = DurationRange::new(Duration::ZERO, secs(3600));
}

impl Default for DeploySpec {
    fn default() -> Self {
        Self {
            strategy: Strategy::Rolling { max_surge: 1, max_unavailable: 0 },
            deadline: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Strategy {
    /// Replace instances a few at a time.
    Rolling { max_surge: u32, max_unavailable: u32 },
    /// Start the whole new set, switch the proxy at once, drain the old set.
    BlueGreen,
}

#[cfg(test)]
mod tests {
    use super::*;

    type SetDuration = fn(&mut AppSpec, Duration);
    type Change = fn(&mut AppSpec);

    fn hello() -> AppSpec {
        let processes = BTreeMap::from([(ProcessType::web(), "./server".to_owned())]);
        AppSpec::new(AppName::parse("hello").unwrap(), processes)
    }

    fn verdict(spec: &AppSpec) -> String {
        match spec.validate() {
            Ok(()) => "ok".to_owned(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn issue_9_f11_every_duration_has_an_upper_bound() {
        let mut spec = hello();
        spec.pipeline.test = Some(crate::pipeline::TestSpec { run: vec!["make test".to_owned()], timeout: secs(600) });
        assert_eq!(verdict(&spec), "ok", "the defaults are valid");
        assert_eq!(spec.durations().len(), 8);
        let setters: [(&str, SetDuration); 8] = [
            ("health.interval", |s, d| s.health.interval = d),
            ("health.timeout", |s, d| s.health.timeout = d),
            ("health.start_period", |s, d| s.health.start_period = d),
            ("deploy.deadline", |s, d| s.deploy.deadline = d),
            ("deploy.drain_timeout", |s, d| s.deploy.drain_timeout = d),
            ("deploy.stop_grace", |s, d| s.deploy.stop_grace = d),
            ("pipeline.test.timeout", |s, d| s.pipeline.test.as_mut().unwrap().timeout = d),
            ("build_timeout", |s, d| s.build_timeout = d),
        ];
        for (field, set) in setters {
            let (_, _, range) = *spec.durations().iter().find(|(name, _, _)| *name == field).unwrap();
            for (value, expected) in [
                (range.min, "ok".to_owned()),
                (range.max, "ok".to_owned()),
                (range.max + Duration::from_nanos(1), format!("{field}: must be at most {}", HumanDuration(range.max))),
                // The attack run's values: 4e15 hours, and a deadline whose milliseconds wrap u64.
                (secs(4_000_000_000_000_000 * 3600), format!("{field}: must be at most {}", HumanDuration(range.max))),
                (secs(18_446_744_073_709_552), format!("{field}: must be at most {}", HumanDuration(range.max))),
                (Duration::MAX, format!("{field}: must be at most {}", HumanDuration(range.max))),
            ] {
                let mut changed = spec.clone();
                set(&mut changed, value);
                assert_eq!(verdict(&changed), expected, "{field} = {value:?}");
            }
            if !range.min.is_zero() {
                let mut changed = spec.clone();
                set(&mut changed, range.min - Duration::from_nanos(1));
                assert_eq!(verdict(&changed), format!("{field}: must be at least {}", HumanDuration(range.min)));
            }
        }
    }

    #[test]
    fn issue_9_f11_no_bound_wraps_as_milliseconds() {
        let ranges = [
            HealthSpec::INTERVAL_RANGE,
            HealthSpec::TIMEOUT_RANGE,
            HealthSpec::START_PERIOD_RANGE,
            DeploySpec::DEADLINE_RANGE,
            DeploySpec::DRAIN_TIMEOUT_RANGE,
            DeploySpec::STOP_GRACE_RANGE,
            TEST_TIMEOUT_RANGE,
        ];
        for range in ranges {
            assert!(range.min <= range.max);
            // Milliseconds since the epoch plus any bound must stay far from u64::MAX.
            assert!(range.max.as_millis() < 1 << 40, "{range:?}");
        }
    }

    #[test]
    fn durations_print_as_drover_yml_spells_them() {
        let table = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(100), "100ms"),
            (secs(1), "1s"),
            (secs(90), "90s"),
            (secs(600), "10m"),
            (secs(24 * 3600), "24h"),
            (Duration::from_micros(1500), "1.5ms"),
        ];
        for (duration, expected) in table {
            assert_eq!(HumanDuration(duration).to_string(), expected);
        }
    }

    #[test]
    fn issue_9_f2_validate_refuses_what_execve_cannot_carry() {
        let table: [(Change, &str); 8] = [
            (
                |s| drop(s.env.insert("A".to_owned(), "x\0y".to_owned())),
                "env.A: the value holds a NUL byte, which no process environment can carry",
            ),
            (
                |s| drop(s.env.insert("A B".to_owned(), "x".to_owned())),
                r#"env."A B": "A B" is not a variable name: expected letters, digits and `_`, not starting with a digit"#,
            ),
            (
                |s| drop(s.config.insert("PORT".to_owned(), "1".to_owned())),
                "config.PORT: PORT is reserved: drover sets it to the port the proxy routes to",
            ),
            (
                |s| s.secrets.push("DROVER_X".to_owned()),
                "secrets[0]: DROVER_X is reserved: drover sets the variables starting with DROVER_",
            ),
            (
                |s| drop(s.processes.insert(ProcessType::web(), "a\0b".to_owned())),
                "processes.web: the command holds a NUL byte, which no command line can carry",
            ),
            (|s| s.build.push(BuildStep::command(" ")), "build[0]: expected a command, found an empty string"),
            (
                |s| {
                    s.pipeline.test = Some(crate::pipeline::TestSpec { run: vec!["t\0".to_owned()], timeout: secs(60) })
                },
                "pipeline.test.run[0]: the command holds a NUL byte, which no command line can carry",
            ),
            (
                |s| {
                    for idx in 0..9 {
                        s.env.insert(format!("K{idx}"), "v".repeat(crate::env::MAX_VALUE_LEN));
                    }
                },
                "env: the variables take 294948 bytes together, more than 262144",
            ),
        ];
        for (change, expected) in table {
            let mut spec = hello();
            change(&mut spec);
            assert_eq!(verdict(&spec), expected);
        }
    }

    #[test]
    fn build_steps_read_old_command_strings_and_new_layers() {
        let steps: Vec<BuildStep> = serde_json::from_str(
            r#"["make", {"run": "pip install", "inputs": ["requirements.txt"], "outputs": [".deps"]}]"#,
        )
        .unwrap();
        assert_eq!(steps[0], BuildStep::command("make"));
        assert!(!steps[0].is_layer());
        assert_eq!(steps[1].inputs, ["requirements.txt"]);
        assert!(steps[1].is_layer());
        let again: Vec<BuildStep> = serde_json::from_str(&serde_json::to_string(&steps).unwrap()).unwrap();
        assert_eq!(again, steps);
    }
}
