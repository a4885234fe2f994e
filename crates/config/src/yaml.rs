//! drover.yml: the YAML shape of an app, walked from a [`Node`] tree into a validated [`AppSpec`].
//!
//! Each value is checked where it is read, with its dotted path and position at hand, so every
//! rejection names the file, line, column and field. Checking stops at the first problem.
//! Absent and empty (`null`) optional fields both mean "use the default".
//!
//! The rules that are not about YAML live in `model`, which applies them to specs from
//! anywhere: each duration's range (`HealthSpec::INTERVAL_RANGE`, ...) and what may become a
//! process's environment or command line (`model::env`: no NUL byte, portable names, no name
//! Drover sets itself, size limits). This walker applies the same rules with positions, so a
//! spec it returns always passes [`AppSpec::validate`].

use crate::duration;
use crate::error::{field_segment, ConfigError};
use crate::node::{self, Node, Pos, Value};
use crate::suggest::did_you_mean;
use model::pipeline::{Approval, BranchPattern, PipelineSpec, StageSpec, TestSpec};
use model::{
    env, AppName, AppSpec, Balance, BuildStep, DeploySpec, DurationRange, DurationRangeError, HealthSpec, ProcessType,
    RoutingSpec, Strategy, BUILD_TIMEOUT_RANGE, DEFAULT_BUILD_TIMEOUT, TEST_TIMEOUT_RANGE,
};
use std::collections::BTreeMap;
use std::time::Duration;

const TOP_FIELDS: &[&str] = &[
    "app",
    "processes",
    "build",
    "dockerfile",
    "build_timeout",
    "env",
    "scale",
    "health",
    "deploy",
    "routing",
    "pipeline",
];
const BUILD_STEP_FIELDS: &[&str] = &["run", "inputs", "outputs"];
const PIPELINE_FIELDS: &[&str] = &["test", "stages"];
const TEST_FIELDS: &[&str] = &["run", "timeout"];
const STAGE_FIELDS: &[&str] = &["name", "branches", "except", "after", "approval", "hosts"];
const APPROVALS: &[(&str, Approval)] = &[("none", Approval::None), ("required", Approval::Required)];
const ROUTING_FIELDS: &[&str] = &["balance", "hosts"];
const BALANCES: &[(&str, Balance)] =
    &[("round-robin", Balance::RoundRobin), ("least-connections", Balance::LeastConnections)];
const HEALTH_FIELDS: &[&str] =
    &["path", "interval", "timeout", "start_period", "healthy_threshold", "unhealthy_threshold", "liveness_threshold"];
const DEPLOY_FIELDS: &[&str] = &["strategy", "max_surge", "max_unavailable", "deadline", "drain_timeout", "stop_grace"];
/// Deploy strategies by name; the rolling one's numbers are read separately.
const STRATEGIES: &[(&str, StrategyKind)] =
    &[("rolling", StrategyKind::Rolling), ("blue-green", StrategyKind::BlueGreen)];
/// Instances per process type are capped so that a typo (`scale: {web: 1000}`) cannot fork-bomb
/// the box.
const MAX_SCALE: u32 = 100;
/// `max_surge` and `max_unavailable` when a rolling deploy leaves them out, as in
/// [`DeploySpec::default`]: add one new instance at a time, never drop below the wanted count.
const DEFAULT_MAX_SURGE: u32 = 1;
const DEFAULT_MAX_UNAVAILABLE: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrategyKind {
    Rolling,
    BlueGreen,
}

/// Parses and validates the text of a drover.yml; `file` names it in errors.
pub(crate) fn parse(file: &str, text: &str) -> Result<AppSpec, ConfigError> {
    let root = node::parse(file, text)?;
    Doc { file, text }.spec(&root)
}

/// The file being walked: its name for errors, its text to quote scalars as written.
struct Doc<'t> {
    file: &'t str,
    text: &'t str,
}

/// A value in the document, with the path and key that lead to it.
#[derive(Clone)]
struct Field<'n> {
    /// Dotted path from the document root, e.g. `health.path` or `build[1]`.
    path: String,
    /// The key that names this field; empty for list items.
    name: String,
    /// Where the key is, to point at it when the key itself is wrong (unknown, misspelled).
    key_pos: Pos,
    node: &'n Node,
}

impl<'n> Field<'n> {
    fn entry(parent: &Field<'_>, name: String, key_pos: Pos, node: &'n Node) -> Self {
        let segment = field_segment(&name);
        let path = if parent.path.is_empty() { segment } else { format!("{}.{segment}", parent.path) };
        Self { path, name, key_pos, node }
    }

    fn item(parent: &Field<'_>, idx: usize, node: &'n Node) -> Self {
        Self { path: format!("{}[{idx}]", parent.path), name: String::new(), key_pos: node.pos, node }
    }
}

/// The entries of a mapping with a fixed set of fields, all known to be valid names.
struct Record<'n> {
    entries: Vec<Field<'n>>,
}

impl<'n> Record<'n> {
    /// The field if present, even when empty.
    fn get(&self, name: &str) -> Option<&Field<'n>> {
        self.entries.iter().find(|field| field.name == name)
    }

    /// The field if present with a value other than `null`.
    fn given(&self, name: &str) -> Option<&Field<'n>> {
        self.get(name).filter(|field| !matches!(field.node.value, Value::Null))
    }
}

impl Doc<'_> {
    fn spec(&self, root: &Node) -> Result<AppSpec, ConfigError> {
        if !matches!(root.value, Value::Map(_)) {
            return Err(ConfigError::Malformed {
                at: root.pos.in_file(self.file),
                message: format!("expected a mapping with `app` and `processes`, found {}", root.describe(self.text)),
            });
        }
        let root = Field { path: String::new(), name: String::new(), key_pos: root.pos, node: root };
        let record = self.record(&root, TOP_FIELDS)?;

        let name = match record.get("app") {
            Some(field) => self.app_name(field)?,
            None => return Err(self.missing(&root, "app")),
        };
        let processes = match record.get("processes") {
            Some(field) => self.processes(field)?,
            None => return Err(self.missing(&root, "processes")),
        };
        let build = match record.given("build") {
            Some(field) => self.build(field)?,
            None => Vec::new(),
        };
        let dockerfile = match record.given("dockerfile") {
            Some(field) if !build.is_empty() => {
                return Err(self.at_key(
                    field,
                    "an app is built either by `build:` steps or from a Dockerfile, not both".to_owned(),
                ))
            }
            Some(field) => {
                let mut paths = self.tree_paths(field)?;
                if paths.len() != 1 {
                    return Err(self.expected(field, "the path of one Dockerfile"));
                }
                paths.pop()
            }
            None => None,
        };
        let build_timeout = match record.given("build_timeout") {
            Some(field) => self.duration(field, BUILD_TIMEOUT_RANGE)?,
            None => DEFAULT_BUILD_TIMEOUT,
        };
        let env = match record.given("env") {
            Some(field) => self.env(field)?,
            None => BTreeMap::new(),
        };
        let scale = match record.given("scale") {
            Some(field) => self.scale(field, &processes)?,
            None => BTreeMap::new(),
        };
        let health = match record.given("health") {
            Some(field) if !processes.contains_key(&ProcessType::web()) => {
                return Err(self.at_key(
                    field,
                    "health checks apply to the `web` process, but there is no `web` process".to_owned(),
                ));
            }
            Some(field) => self.health(field)?,
            None => HealthSpec::default(),
        };
        let deploy = match record.given("deploy") {
            Some(field) => self.deploy(field)?,
            None => DeploySpec::default(),
        };
        let routing = match record.given("routing") {
            Some(field) => self.routing(field)?,
            None => RoutingSpec::default(),
        };
        let pipeline = match record.given("pipeline") {
            Some(field) => self.pipeline(field)?,
            None => PipelineSpec::default(),
        };
        Ok(AppSpec {
            name,
            processes,
            build,
            dockerfile,
            build_timeout,
            env,
            scale,
            health,
            deploy,
            routing,
            config: BTreeMap::new(),
            secrets: Vec::new(),
            pipeline,
            vars_from: None,
        })
    }

    fn pipeline(&self, field: &Field<'_>) -> Result<PipelineSpec, ConfigError> {
        let record = self.record(field, PIPELINE_FIELDS)?;
        let mut pipeline = PipelineSpec::default();
        let test_field = record.given("test");
        if let Some(test) = test_field {
            let test_record = self.record(test, TEST_FIELDS)?;
            let run = match test_record.given("run") {
                Some(run) => self.commands(run)?,
                None => return Err(self.missing(test, "run")),
            };
            let timeout = match test_record.given("timeout") {
                Some(timeout) => self.duration(timeout, TEST_TIMEOUT_RANGE)?,
                None => TestSpec::DEFAULT_TIMEOUT,
            };
            pipeline.test = Some(TestSpec { run, timeout });
        }
        let mut stage_fields = Vec::new();
        if let Some(stages) = record.given("stages") {
            let Value::Seq(items) = &stages.node.value else {
                return Err(self.expected(stages, "a list of stages"));
            };
            for (idx, item) in items.iter().enumerate() {
                let item = Field::item(stages, idx, item);
                let stage = self.record(&item, STAGE_FIELDS)?;
                let name = match stage.given("name") {
                    Some(name) => self.string(name, "a stage name")?.to_owned(),
                    None => return Err(self.missing(&item, "name")),
                };
                let branches = match stage.given("branches") {
                    Some(list) => self.patterns(list)?,
                    None => return Err(self.missing(&item, "branches")),
                };
                let except = stage.given("except").map(|list| self.patterns(list)).transpose()?.unwrap_or_default();
                let after =
                    stage.given("after").map(|a| self.string(a, "a stage name")).transpose()?.map(str::to_owned);
                let approval = match stage.given("approval") {
                    Some(approval) => self.one_of(approval, "approval", APPROVALS)?,
                    None => Approval::None,
                };
                let hosts = stage.given("hosts").map(|hosts| self.hosts(hosts)).transpose()?;
                pipeline.stages.push(StageSpec { name, branches, except, after, approval, hosts });
                stage_fields.push(item);
            }
        }
        if let Err(e) = pipeline.validate() {
            // Point at the stage or test step the problem is in.
            let at = match e.stage_idx {
                Some(idx) => stage_fields.get(idx).unwrap_or(field),
                None => test_field.unwrap_or(field),
            };
            return Err(self.error(at.node.pos, &e.field, e.message));
        }
        Ok(pipeline)
    }

    /// A list of branch patterns such as `[main, "feature/*"]`.
    fn patterns(&self, field: &Field<'_>) -> Result<Vec<BranchPattern>, ConfigError> {
        let Value::Seq(items) = &field.node.value else {
            return Err(self.expected(field, "a list of branch patterns"));
        };
        items
            .iter()
            .enumerate()
            .map(|(idx, item)| {
                let item = Field::item(field, idx, item);
                let text = self.string(&item, "a branch pattern")?;
                BranchPattern::parse(text).map_err(|e| self.at_value(&item, e.to_string()))
            })
            .collect()
    }

    fn routing(&self, field: &Field<'_>) -> Result<RoutingSpec, ConfigError> {
        let record = self.record(field, ROUTING_FIELDS)?;
        let mut routing = RoutingSpec::default();
        if let Some(field) = record.given("balance") {
            routing.balance = self.one_of(field, "balance", BALANCES)?;
        }
        if let Some(hosts) = record.given("hosts") {
            routing.hosts = self.hosts(hosts)?;
        }
        Ok(routing)
    }

    /// A list of distinct host names, as `routing.hosts` and a stage's `hosts` take them.
    fn hosts(&self, field: &Field<'_>) -> Result<Vec<String>, ConfigError> {
        let Value::Seq(items) = &field.node.value else {
            return Err(self.expected(field, "a list of host names"));
        };
        let mut hosts: Vec<String> = Vec::new();
        for (idx, item) in items.iter().enumerate() {
            let item = Field::item(field, idx, item);
            let host = self.string(&item, "a host name")?;
            if !is_host_name(host) {
                return Err(self.at_value(
                    &item,
                    format!(
                        "{host:?} is not a lowercase host name such as `shop.example.com` (no port, scheme or path)"
                    ),
                ));
            }
            if hosts.iter().any(|h| h == host) {
                return Err(self.at_value(&item, format!("{host:?} is listed twice")));
            }
            hosts.push(host.to_owned());
        }
        Ok(hosts)
    }

    fn app_name(&self, field: &Field<'_>) -> Result<AppName, ConfigError> {
        let name = self.string(field, "an app name")?;
        AppName::parse(name).map_err(|err| self.at_value(field, err.to_string()))
    }

    fn processes(&self, field: &Field<'_>) -> Result<BTreeMap<ProcessType, String>, ConfigError> {
        let entries = self.entries(field)?;
        if entries.is_empty() {
            return Err(self.at_value(field, "expected at least one process, like `web: ./server`".to_owned()));
        }
        let mut processes = BTreeMap::new();
        for entry in &entries {
            let process = ProcessType::parse(&entry.name).map_err(|err| self.at_key(entry, err.to_string()))?;
            processes.insert(process, self.command(entry)?);
        }
        Ok(processes)
    }

    /// `build:`: a command, or a list of steps, each a command or a cached layer
    /// `{run, inputs, outputs}`.
    fn build(&self, field: &Field<'_>) -> Result<Vec<BuildStep>, ConfigError> {
        match &field.node.value {
            Value::Str(_) => Ok(vec![BuildStep::command(self.command(field)?)]),
            Value::Seq(items) => {
                items.iter().enumerate().map(|(idx, item)| self.build_step(&Field::item(field, idx, item))).collect()
            }
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Map(_) => {
                Err(self.expected(field, "a command or a list of build steps"))
            }
        }
    }

    fn build_step(&self, field: &Field<'_>) -> Result<BuildStep, ConfigError> {
        if !matches!(field.node.value, Value::Map(_)) {
            return Ok(BuildStep::command(self.command(field)?));
        }
        let record = self.record(field, BUILD_STEP_FIELDS)?;
        let run = match record.given("run") {
            Some(run) => self.command(run)?,
            None => return Err(self.missing(field, "run")),
        };
        let (inputs, outputs) = match (record.given("inputs"), record.given("outputs")) {
            (None, None) => return Ok(BuildStep::command(run)),
            (Some(_), None) => return Err(self.missing(field, "outputs")),
            (None, Some(outputs)) => {
                return Err(self.at_key(
                    outputs,
                    "a step with outputs needs `inputs`: its outputs are cached by the hash of its inputs".to_owned(),
                ))
            }
            (Some(inputs), Some(outputs)) => (inputs, outputs),
        };
        let input_paths = self.tree_paths(inputs)?;
        let output_paths = self.tree_paths(outputs)?;
        for (idx, output) in output_paths.iter().enumerate() {
            if let Some(input) = input_paths.iter().find(|input| overlaps(input, output)) {
                let item = self.item_of(outputs, idx);
                return Err(self.at_value(
                    &item,
                    format!("{output:?} overlaps input {input:?}: outputs are added to the tree, next to the inputs"),
                ));
            }
        }
        Ok(BuildStep { run, inputs: input_paths, outputs: output_paths })
    }

    /// A path or a list of paths inside the build tree: relative, plain components, no `.git`,
    /// none listed twice or inside another. A trailing `/` is dropped.
    fn tree_paths(&self, field: &Field<'_>) -> Result<Vec<String>, ConfigError> {
        let count = match &field.node.value {
            Value::Str(_) => 1,
            Value::Seq(items) if items.is_empty() => {
                return Err(self.at_value(field, "expected at least one path, found an empty list".to_owned()))
            }
            Value::Seq(items) => items.len(),
            _ => return Err(self.expected(field, "a path or a list of paths")),
        };
        let mut paths: Vec<String> = Vec::with_capacity(count);
        for idx in 0..count {
            let item = self.item_of(field, idx);
            let text = self.string(&item, "a path")?;
            let path = text.strip_suffix('/').unwrap_or(text);
            if path.chars().any(char::is_control) {
                return Err(self.at_value(&item, format!("{text:?} holds a control character: expected a plain path")));
            }
            if path.starts_with('/') {
                return Err(self.at_value(&item, format!("{text:?} is absolute: expected a path relative to the app")));
            }
            if let Some(part) = path.split('/').find(|part| matches!(*part, "" | "." | ".." | ".git")) {
                let why =
                    if part.is_empty() { "an empty component".to_owned() } else { format!("a `{part}` component") };
                return Err(self.at_value(&item, format!("{text:?} has {why}: expected a plain relative path")));
            }
            if let Some(other) = paths.iter().find(|other| overlaps(other, path)) {
                return Err(self.at_value(&item, format!("{text:?} overlaps {other:?}, listed before it")));
            }
            paths.push(path.to_owned());
        }
        Ok(paths)
    }

    /// Item `idx` of a list field, or the field itself when it is a single scalar.
    fn item_of<'n>(&self, field: &Field<'n>, idx: usize) -> Field<'n> {
        match &field.node.value {
            Value::Seq(items) => Field::item(field, idx, &items[idx]),
            _ => field.clone(),
        }
    }

    /// A list of commands, such as `pipeline.test.run`: one command or a list of them.
    fn commands(&self, field: &Field<'_>) -> Result<Vec<String>, ConfigError> {
        match &field.node.value {
            Value::Str(_) => Ok(vec![self.command(field)?]),
            Value::Seq(items) => {
                items.iter().enumerate().map(|(idx, item)| self.command(&Field::item(field, idx, item))).collect()
            }
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Map(_) => {
                Err(self.expected(field, "a command or a list of commands"))
            }
        }
    }

    /// A shell command line; surrounding whitespace (such as the newline a `|` block leaves) is
    /// dropped. It must be something `execve` can carry ([`env::check_command`]).
    fn command(&self, field: &Field<'_>) -> Result<String, ConfigError> {
        let command = self.string(field, "a command")?.trim();
        if command.is_empty() {
            return Err(self.at_value(field, "expected a command, found an empty string".to_owned()));
        }
        env::check_command(command).map_err(|e| self.at_value(field, e.to_string()))?;
        Ok(command.to_owned())
    }

    /// `env:`, checked with [`env::check_env_var`]: a bad name is reported at the key, a bad
    /// value at the value, and too much altogether at `env`.
    fn env(&self, field: &Field<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut vars = BTreeMap::new();
        for entry in self.entries(field)? {
            env::check_env_key(&entry.name).map_err(|e| self.at_key(&entry, e.to_string()))?;
            let value = entry.node.scalar_text(self.text).ok_or_else(|| self.expected(&entry, "a string"))?;
            env::check_env_var(&entry.name, &value).map_err(|e| self.at_value(&entry, e.to_string()))?;
            vars.insert(entry.name, value);
        }
        env::check_env_len(vars.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .map_err(|e| self.at_key(field, e.to_string()))?;
        Ok(vars)
    }

    fn scale(
        &self,
        field: &Field<'_>,
        processes: &BTreeMap<ProcessType, String>,
    ) -> Result<BTreeMap<ProcessType, u32>, ConfigError> {
        let declared: Vec<&str> = processes.keys().map(ProcessType::as_str).collect();
        let mut scale = BTreeMap::new();
        for entry in self.entries(field)? {
            let process = ProcessType::parse(&entry.name).ok().filter(|process| processes.contains_key(process));
            let Some(process) = process else {
                return Err(self.at_key(
                    &entry,
                    format!(
                        "not a declared process{} (declared: {})",
                        did_you_mean(&entry.name, &declared),
                        declared.join(", ")
                    ),
                ));
            };
            scale.insert(process, self.count(&entry, 0, MAX_SCALE)?);
        }
        Ok(scale)
    }

    fn health(&self, field: &Field<'_>) -> Result<HealthSpec, ConfigError> {
        let record = self.record(field, HEALTH_FIELDS)?;
        let mut health = HealthSpec::default();
        if let Some(field) = record.given("path") {
            health.path = Some(self.health_path(field)?);
        }
        if let Some(field) = record.given("interval") {
            health.interval = self.duration(field, HealthSpec::INTERVAL_RANGE)?;
        }
        if let Some(field) = record.given("timeout") {
            health.timeout = self.duration(field, HealthSpec::TIMEOUT_RANGE)?;
        }
        if let Some(field) = record.given("start_period") {
            health.start_period = self.duration(field, HealthSpec::START_PERIOD_RANGE)?;
        }
        if let Some(field) = record.given("healthy_threshold") {
            health.healthy_threshold = self.count(field, 1, u32::MAX)?;
        }
        if let Some(field) = record.given("unhealthy_threshold") {
            health.unhealthy_threshold = self.count(field, 1, u32::MAX)?;
        }
        if let Some(field) = record.given("liveness_threshold") {
            health.liveness_threshold = self.count(field, 1, u32::MAX)?;
        }
        Ok(health)
    }

    /// An HTTP path; it ends up in a request line, so it must be one token starting with "/".
    fn health_path(&self, field: &Field<'_>) -> Result<String, ConfigError> {
        let path = self.string(field, "a path like /healthz")?;
        if !path.starts_with('/') {
            return Err(self.at_value(field, r#"expected a path starting with "/""#.to_owned()));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.at_value(field, "expected a path without whitespace".to_owned()));
        }
        Ok(path.to_owned())
    }

    fn deploy(&self, field: &Field<'_>) -> Result<DeploySpec, ConfigError> {
        let record = self.record(field, DEPLOY_FIELDS)?;
        let mut deploy = DeploySpec::default();
        let strategy = match record.given("strategy") {
            Some(field) => self.one_of(field, "strategy", STRATEGIES)?,
            None => StrategyKind::Rolling,
        };
        let max_surge = record.given("max_surge");
        let max_unavailable = record.given("max_unavailable");
        deploy.strategy = match strategy {
            StrategyKind::Rolling => {
                let surge = max_surge.map(|field| self.count(field, 0, u32::MAX)).transpose()?;
                let unavailable = max_unavailable.map(|field| self.count(field, 0, u32::MAX)).transpose()?;
                let surge = surge.unwrap_or(DEFAULT_MAX_SURGE);
                let unavailable = unavailable.unwrap_or(DEFAULT_MAX_UNAVAILABLE);
                if surge == 0 && unavailable == 0 {
                    let culprit = max_surge.or(max_unavailable).unwrap_or(field);
                    return Err(self.at_value(
                        culprit,
                        "max_surge and max_unavailable are both 0, so a rolling deploy cannot replace any instance"
                            .to_owned(),
                    ));
                }
                Strategy::Rolling { max_surge: surge, max_unavailable: unavailable }
            }
            StrategyKind::BlueGreen => {
                if let Some(field) = max_surge.or(max_unavailable) {
                    return Err(self.at_key(field, "only valid with strategy `rolling`, not `blue-green`".to_owned()));
                }
                Strategy::BlueGreen
            }
        };
        if let Some(field) = record.given("deadline") {
            deploy.deadline = self.duration(field, DeploySpec::DEADLINE_RANGE)?;
        }
        if let Some(field) = record.given("drain_timeout") {
            deploy.drain_timeout = self.duration(field, DeploySpec::DRAIN_TIMEOUT_RANGE)?;
        }
        if let Some(field) = record.given("stop_grace") {
            deploy.stop_grace = self.duration(field, DeploySpec::STOP_GRACE_RANGE)?;
        }
        Ok(deploy)
    }

    /// The entries of a mapping whose fields are fixed; an unknown field is an error.
    fn record<'n>(&self, field: &Field<'n>, known: &[&str]) -> Result<Record<'n>, ConfigError> {
        let entries = self.entries(field)?;
        if let Some(unknown) = entries.iter().find(|entry| !known.contains(&entry.name.as_str())) {
            return Err(self.at_key(
                unknown,
                format!("unknown field{} (expected one of: {})", did_you_mean(&unknown.name, known), known.join(", ")),
            ));
        }
        Ok(Record { entries })
    }

    /// The entries of a mapping (`null` reads as an empty one), keyed by scalars, without
    /// duplicates.
    fn entries<'n>(&self, field: &Field<'n>) -> Result<Vec<Field<'n>>, ConfigError> {
        let pairs = match &field.node.value {
            Value::Map(pairs) => pairs.as_slice(),
            Value::Null => &[],
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Seq(_) => {
                return Err(self.expected(field, "a mapping"));
            }
        };
        let mut entries: Vec<Field<'n>> = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let Some(name) = key.scalar_text(self.text) else {
                return Err(self.error(
                    key.pos,
                    &field.path,
                    format!("expected a name as key, found {}", key.describe(self.text)),
                ));
            };
            let entry = Field::entry(field, name, key.pos, value);
            if let Some(first) = entries.iter().find(|first| first.name == entry.name) {
                return Err(self.at_key(&entry, format!("duplicate key, first defined on line {}", first.key_pos.line)));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn string<'n>(&self, field: &Field<'n>, what: &str) -> Result<&'n str, ConfigError> {
        match &field.node.value {
            Value::Str(value) => Ok(value),
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Seq(_) | Value::Map(_) => {
                Err(self.expected(field, what))
            }
        }
    }

    /// A whole number in `min..=max`.
    fn count(&self, field: &Field<'_>, min: u32, max: u32) -> Result<u32, ConfigError> {
        if let Value::Int(value) = field.node.value {
            if let Some(count) = u32::try_from(value).ok().filter(|count| (min..=max).contains(count)) {
                return Ok(count);
            }
        }
        let what = match max {
            u32::MAX => format!("a whole number, {min} or more"),
            _ => format!("a whole number from {min} to {max}"),
        };
        Err(self.expected(field, &what))
    }

    /// A duration within the field's `range` (see the table in `model::spec`): downstream it
    /// becomes milliseconds, timers and deadlines, where a huge value would wrap or overflow,
    /// and 0 would make a busy loop of an interval.
    fn duration(&self, field: &Field<'_>, range: DurationRange) -> Result<Duration, ConfigError> {
        let parsed = match &field.node.value {
            Value::Str(text) => duration::parse(text),
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Seq(_) | Value::Map(_) => {
                Err(duration::Unparsed::Malformed)
            }
        };
        let duration = match parsed {
            Ok(duration) => duration,
            Err(duration::Unparsed::Malformed) => return Err(self.expected(field, duration::EXPECTED)),
            Err(duration::Unparsed::TooLong) => {
                let too_long = DurationRangeError::TooLong { max: range.max };
                return Err(self.at_value(field, too_long.to_string()));
            }
        };
        range.check(duration).map_err(|e| self.at_value(field, e.to_string()))?;
        Ok(duration)
    }

    /// One of a fixed set of words, as the value it stands for.
    fn one_of<T: Copy>(&self, field: &Field<'_>, what: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let value = self.string(field, &format!("one of: {}", names.join(", ")))?;
        match choices.iter().find(|(name, _)| *name == value) {
            Some((_, choice)) => Ok(*choice),
            None => Err(self.at_value(
                field,
                format!(
                    "unknown {what} {value:?}{} (expected one of: {})",
                    did_you_mean(value, &names),
                    names.join(", ")
                ),
            )),
        }
    }

    fn missing(&self, parent: &Field<'_>, name: &str) -> ConfigError {
        let path = if parent.path.is_empty() { name.to_owned() } else { format!("{}.{name}", parent.path) };
        self.error(parent.node.pos, &path, "required field is missing".to_owned())
    }

    fn expected(&self, field: &Field<'_>, what: &str) -> ConfigError {
        self.at_value(field, format!("expected {what}, found {}", field.node.describe(self.text)))
    }

    /// An error about a field's value, located at the value.
    fn at_value(&self, field: &Field<'_>, message: String) -> ConfigError {
        self.error(field.node.pos, &field.path, message)
    }

    /// An error about a field's key (unknown, misspelled, not allowed here), located at the key.
    fn at_key(&self, field: &Field<'_>, message: String) -> ConfigError {
        self.error(field.key_pos, &field.path, message)
    }

    fn error(&self, pos: Pos, path: &str, message: String) -> ConfigError {
        let at = pos.in_file(self.file);
        // Only the document itself has an empty path, and what is wrong with it is its shape.
        match path {
            "" => ConfigError::Malformed { at, message },
            _ => ConfigError::Invalid { at, field: path.to_owned(), message },
        }
    }
}

/// A DNS name in lowercase: dot-separated labels of letters, digits and inner hyphens.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Whether one relative path is the other or inside it.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |inner: &str, outer: &str| inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/'));
    a == b || inside(a, b) || inside(b, a)
}
