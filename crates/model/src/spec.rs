//! What an app declares: processes, build, env, scale, health and deploy policy.
//!
//! `config` builds an [`AppSpec`] from `drover.yml` or a `Procfile`; everything downstream takes
//! the validated spec. A release stores the spec it was built from, so rollback restores it.

use crate::{AppName, Balance, ProcessType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

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
    use super::BuildStep;

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
