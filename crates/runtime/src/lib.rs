//! The Runtime trait and its process backend: supervised instances that outlive the control plane.
//!
//! [`Runtime`] is the one interface the deployer uses to start, stop, observe and forget
//! instances. It speaks only in domain terms ([`InstanceSpec`], [`InstanceStatus`]); how an
//! instance is kept alive is the backend's business. The first backend is [`ProcessRuntime`]:
//! every instance is a plain process group supervised by its own small [`shim`] process (the
//! Nomad `raw_exec` / containerd-shim idea). Docker, Swarm or Kubernetes backends come later
//! behind the same trait.
//!
//! **Invariants.**
//! - An instance survives the control plane: the shim is detached from it, and `start` reports
//!   success only once the shim's pid and start time are on disk, so a restarted control plane
//!   can find every instance again with [`Runtime::list`] (re-adoption), and never orphans one.
//! - Stopping is SIGTERM to the app's process group, a grace period, then SIGKILL.
//! - Logs are the `logs` crate's business: this crate only feeds it lines.

mod backoff;
mod disk;
pub mod docker;
mod error;
mod isolation;
mod process;
pub mod procfs;
mod sealed;
pub mod shim;
mod starting;

pub use docker::DockerRuntime;
pub use error::RuntimeError;
pub use process::ProcessRuntime;

use model::{AppName, InstanceId, ProcessType, ReleaseId};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// Everything needed to run one instance of one process type of one release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceSpec {
    pub id: InstanceId,
    pub app: AppName,
    pub release: ReleaseId,
    pub process: ProcessType,
    /// A command line, run with `sh -c`.
    pub command: String,
    /// The app's environment. The runtime adds `PORT` (if `port` is set), `DROVER_APP`,
    /// `DROVER_RELEASE`, `DROVER_INSTANCE` and `DROVER_PROCESS`, which win over entries of the
    /// same name here. The process runtime also sets `HOME` and `TMPDIR`, and `PATH` to its own
    /// if absent; a container keeps those of its image.
    pub env: BTreeMap<String, String>,
    /// Sets `$PORT`; the app is expected to listen on it.
    pub port: Option<u16>,
    /// What the instance runs: an unpacked slug or a container image.
    pub artifact: Artifact,
    /// Time between SIGTERM and SIGKILL when the instance stops.
    pub stop_grace: Duration,
    /// Secret environment variables, sealed. Only the supervisor opens them, into the app's
    /// environment; every log line of the app is masked for their values.
    pub sealed_env: Vec<SealedVar>,
    /// The app's own unprivileged user, or `None` to run it as the runtime's user. The process
    /// runtime must then be root: it switches to the user and hands it the instance's `HOME`
    /// and `TMPDIR`. A container has users of its own; the Docker runtime keeps its image's.
    pub user: Option<model::AppUser>,
}

/// What an instance runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Artifact {
    /// An unpacked slug directory, absolute: the working directory of the app's processes and
    /// treated as read-only (backends that can enforce it do). The process backend runs it in
    /// place; the Docker backend mounts it read-only at `/app` in its stack image.
    Slug(PathBuf),
    /// A container image, by id (`sha256:...`) or reference. Only container backends run it.
    Image(String),
}

/// One secret environment variable, sealed with the runtime's key file (see
/// [`ProcessRuntime::with_key_file`]) under `context`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedVar {
    pub name: String,
    pub context: String,
    pub sealed: Vec<u8>,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    /// The supervisor is up but has not started the app yet.
    Starting,
    /// The app is running.
    Running,
    /// The app exited and is restarted after a backoff delay.
    Restarting,
    /// A stop was requested; the app is within its grace period.
    Stopping,
    /// Nothing of the instance runs any more; the cause says why.
    Exited(ExitCause),
}

/// Why an instance is [`InstanceState::Exited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCause {
    /// It was stopped on request.
    Stopped,
    /// It could not be started at all (see `last_exit`).
    Failed,
    /// Its supervisor disappeared without stopping it (killed, machine crashed): the instance
    /// must be replaced.
    Lost,
}

/// How an instance is walled off from the rest of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// A plain process: it sees and may write whatever its user may.
    None,
    /// A private mount namespace in which the slug directory is read-only; with `private_tmp`,
    /// `/tmp` is also a private, empty tmpfs.
    MountNamespace { private_tmp: bool },
    /// A container: its own filesystem, process and network namespaces.
    Container,
}

/// What a backend knows about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub spec: InstanceSpec,
    pub state: InstanceState,
    /// The app's main process while it is running.
    pub pid: Option<u32>,
    /// How many times the app was restarted after exiting.
    pub restarts: u32,
    /// When the instance was started, in milliseconds since the Unix epoch.
    pub started_at: u64,
    /// How the app last ended, e.g. "exited with code 1" or "killed by SIGKILL".
    pub last_exit: Option<String>,
    pub isolation: Isolation,
}

/// Runs instances on this machine.
pub trait Runtime: Send + Sync + 'static {
    /// Starts an instance and returns once it is supervised and its supervisor's identity is
    /// persisted. Fails without leaving anything running if the spec is unusable or the
    /// instance cannot be started.
    fn start(&self, spec: InstanceSpec) -> impl Future<Output = Result<InstanceStatus, RuntimeError>> + Send;

    /// Stops an instance gracefully: SIGTERM to all its processes, its grace period, then
    /// SIGKILL. Returns when nothing of it runs any more. Stopping an exited instance cleans up
    /// whatever it left running and succeeds.
    fn stop(&self, id: &InstanceId) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Every instance this backend knows on this machine, alive or exited but not yet removed.
    /// This is how a restarted control plane re-adopts its instances.
    fn list(&self) -> impl Future<Output = Result<Vec<InstanceStatus>, RuntimeError>> + Send;

    /// Forgets an exited instance: its runtime files go, its logs stay.
    fn remove(&self, id: &InstanceId) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}

/// The backends of one machine behind one [`Runtime`]: the process runtime, and the Docker
/// runtime when an engine is configured. New slug instances go to the preferred one, images to
/// Docker. Every other call goes to the backend that has the instance, and `list` covers both,
/// so instances started before the preference changed are still seen, stopped and removed.
#[derive(Clone)]
pub struct Backends {
    process: ProcessRuntime,
    docker: Option<DockerRuntime>,
    slugs_in_docker: bool,
}

impl Backends {
    /// Slugs run as processes; images cannot run without [`Backends::with_docker`].
    pub fn new(process: ProcessRuntime) -> Self {
        Self { process, docker: None, slugs_in_docker: false }
    }

    /// Adds the Docker backend; with `slugs_in_docker`, new slug instances run in containers
    /// of its stack image too.
    pub fn with_docker(self, docker: DockerRuntime, slugs_in_docker: bool) -> Self {
        Self { docker: Some(docker), slugs_in_docker, ..self }
    }

    /// The stack image new slug instances run in, when they run as containers; `None` when
    /// they run as processes.
    pub fn slug_stack_image(&self) -> Option<&str> {
        self.docker.as_ref().filter(|_| self.slugs_in_docker).and_then(DockerRuntime::stack_image)
    }

    /// The Docker backend, if the server has one.
    pub fn docker(&self) -> Option<&DockerRuntime> {
        self.docker.as_ref()
    }

    /// The Docker backend if it has instance `id`.
    fn docker_of(&self, id: &InstanceId) -> Option<&DockerRuntime> {
        self.docker.as_ref().filter(|docker| docker.knows(id))
    }
}

impl Runtime for Backends {
    async fn start(&self, spec: InstanceSpec) -> Result<InstanceStatus, RuntimeError> {
        let to_docker = matches!(spec.artifact, Artifact::Image(_)) || self.slugs_in_docker;
        match (&self.docker, to_docker) {
            (Some(docker), true) => docker.start(spec).await,
            (None, true) => Err(RuntimeError::InvalidSpec {
                id: spec.id.clone(),
                reason: "an image needs the Docker runtime, and this server runs without one".to_owned(),
            }),
            (_, false) => self.process.start(spec).await,
        }
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        match self.docker_of(id) {
            Some(docker) => docker.stop(id).await,
            None => self.process.stop(id).await,
        }
    }

    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let mut all = self.process.list().await?;
        if let Some(docker) = &self.docker {
            all.extend(docker.list().await?);
        }
        all.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        Ok(all)
    }

    async fn remove(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        match self.docker_of(id) {
            Some(docker) => docker.remove(id).await,
            None => self.process.remove(id).await,
        }
    }
}
