//! The Docker backend: each instance is a container of the local Docker engine.
//!
//! `start` writes `ROOT/<id>/spec.json`, then creates and starts the container
//! `drover-<id>`, labelled with this runtime's root, the app, the release and the instance.
//! Docker keeps it running (restart policy `unless-stopped`, with its own backoff) and keeps it
//! through a restart of the control plane, so a new `DockerRuntime` on the same root re-adopts
//! it from `spec.json` and the engine's state, as the process backend does from `shim.json`.
//!
//! - **Artifacts.** An [`Artifact::Image`] runs as is. An [`Artifact::Slug`] runs in the
//!   runtime's stack image with the slug bind-mounted read-only at `/app`, its working
//!   directory (Heroku's slug-on-a-stack model), so the same slugs run on either backend.
//! - **Network.** Containers use the host's network, as process instances do: the app listens
//!   on `$PORT`, and the proxy and the health checks reach it on 127.0.0.1 directly. A published
//!   port would answer TCP health checks through docker-proxy before the app listens, and not
//!   reach an app bound to 127.0.0.1 at all.
//! - **Processes.** An init (`docker-init`) is the container's first process and passes signals
//!   to the app's whole process group; the image's entrypoint is replaced by `/bin/sh -c`.
//! - **Secrets.** They never go into the container's configuration, which the engine keeps on
//!   disk in plain text. They are written to a file in a 0700 directory of this user on a tmpfs
//!   (`/dev/shm`), mounted read-only into the container and sourced by the command's shell.
//! - **Logs.** The control plane pumps each container's output from the engine into the
//!   instance's log file, masking secrets. The engine buffers output while no pump runs (the
//!   control plane restarting); a new pump resumes after the last line written, by the
//!   engine's timestamp of it, saved in `ROOT/<id>/log.cursor` after each line. A crash between
//!   writing a line and saving the cursor repeats that line. Lines can be lost only at a crash
//!   in the middle of a line the engine split (over 16 KiB, its pieces share a timestamp), or of
//!   stdout and stderr lines the engine logged out of timestamp order; and beyond what the
//!   engine keeps (3 x 10 MiB per container) while no pump runs.
//! - **Stopping** is `docker stop` with the instance's grace period: SIGTERM to the app's
//!   process group, then SIGKILL; then the container is removed, its output being in the log.
//!   A `stopped` marker written first keeps "stopped on request" apart from "exited by itself"
//!   or "removed by someone else" across restarts.

use crate::disk;
use crate::starting::StartingSet;
use crate::{Artifact, ExitCause, InstanceSpec, InstanceState, InstanceStatus, Isolation, Runtime, RuntimeError};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig, HostConfigLogConfig, Mount,
    MountType, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use logs::{LogSource, LogWriter, Stream};
use model::InstanceId;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The label naming the runtime root a container belongs to; containers of other roots (other
/// Drover installations, anything else on the engine) are never touched.
const ROOT_LABEL: &str = "io.drover.root";
const INSTANCE_LABEL: &str = "io.drover.instance";
/// Where a slug is mounted in the stack image, and the secrets file in any container.
const APP_DIR: &str = "/app";
const SECRETS_PATH: &str = "/run/drover/secrets.env";
const SPEC_FILE: &str = "spec.json";
const STOPPED_FILE: &str = "stopped";
const CURSOR_FILE: &str = "log.cursor";
/// How often `list` looks for this root's containers that no instance knows (the first `list`
/// of a runtime always does).
const ORPHAN_SWEEP: Duration = Duration::from_secs(10);
/// A log pump that ended is started again for a running container at most this often.
const PUMP_RETRY: Duration = Duration::from_secs(5);
/// After this long without output, a line the masker holds back is written anyway.
const QUIET: Duration = Duration::from_millis(100);
/// How long `stop` waits for the log pump to write the container's last lines.
const PUMP_DRAIN: Duration = Duration::from_secs(5);

/// Runs instances as containers of the local Docker engine. See the module docs.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    root: PathBuf,
    logs_root: PathBuf,
    /// Where containers' secrets files are written: a directory on a tmpfs.
    secrets_dir: PathBuf,
    /// The image slugs run in.
    stack_image: Option<String>,
    key_file: Option<PathBuf>,
    /// The value of [`ROOT_LABEL`] on this runtime's containers.
    owner: String,
    /// Each instance's log pump, with when it was started.
    pumps: Mutex<HashMap<InstanceId, (JoinHandle<()>, Instant)>>,
    /// Instances whose `start` is in progress: `list` skips them, `remove` refuses them.
    starting: StartingSet,
    /// When `list` last looked for containers no instance knows.
    last_sweep: Mutex<Option<Instant>>,
}

/// What `spec.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct SpecFile {
    spec: InstanceSpec,
    created_at_ms: u64,
}

impl DockerRuntime {
    /// Connects to the engine on its local socket (`DOCKER_HOST` or `/var/run/docker.sock`) and
    /// agrees on an API version. Instances' files go under `root`, their logs under `logs_root`.
    pub async fn connect(root: PathBuf, logs_root: PathBuf) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|source| RuntimeError::Docker { action: "connect to the engine".to_owned(), source })?
            .negotiate_version()
            .await
            .map_err(|source| RuntimeError::Docker { action: "reach the engine".to_owned(), source })?;
        let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
        let root = absolute(root);
        let owner = root.display().to_string();
        let secrets_dir = Path::new("/dev/shm").join(format!("drover-{}", short_hash(&owner)));
        let inner = Inner {
            docker,
            root,
            logs_root: absolute(logs_root),
            secrets_dir,
            stack_image: None,
            key_file: None,
            owner,
            pumps: Mutex::new(HashMap::new()),
            starting: StartingSet::default(),
            last_sweep: Mutex::new(None),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The image that slugs run in; it needs `/bin/sh` and whatever the slugs' commands use.
    pub fn with_stack_image(self, image: String) -> Self {
        self.map_inner(|inner| inner.stack_image = Some(image))
    }

    /// The key file that opens instances' sealed variables (see [`crate::SealedVar`]).
    pub fn with_key_file(self, key_file: PathBuf) -> Self {
        self.map_inner(|inner| inner.key_file = Some(key_file))
    }

    fn map_inner(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::into_inner(self.inner).expect("configured before it is shared");
        change(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    /// The image slugs run in, if one is configured.
    pub fn stack_image(&self) -> Option<&str> {
        self.inner.stack_image.as_deref()
    }

    /// The engine this runtime talks to.
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// Whether this runtime has (or had, until removed) the instance `id`.
    pub fn knows(&self, id: &InstanceId) -> bool {
        self.inner.root.join(id.as_str()).is_dir()
    }

    /// The name of an instance's container.
    pub fn container_name(id: &InstanceId) -> String {
        format!("drover-{id}")
    }
}

impl Runtime for DockerRuntime {
    async fn start(&self, spec: InstanceSpec) -> Result<InstanceStatus, RuntimeError> {
        let inner = &self.inner;
        let (image, slug) = inner.validate(&spec)?;
        let _starting = inner.starting.claim(&spec.id)?;
        let dir = inner.root.join(spec.id.as_str());
        fs::create_dir_all(&inner.root).map_err(RuntimeError::io("create", &inner.root))?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists { id: spec.id });
            }
            Err(source) => return Err(RuntimeError::Io { action: "create", path: dir, source }),
        }
        let file = SpecFile { spec: spec.clone(), created_at_ms: logs::now_millis() };
        let started = async {
            disk::write_json(&dir.join(SPEC_FILE), &file)?;
            inner.create_and_start(&spec, image, slug).await
        };
        match started.await {
            Ok(()) => {
                inner.ensure_pump(&spec);
                tracing::info!(app = %spec.app, release = %spec.release, instance = %spec.id, "container started");
                inner.status(&file).await
            }
            Err(error) => {
                tracing::warn!(instance = %spec.id, error = %error, "container failed to start");
                inner.discard(&spec.id).await;
                Err(error)
            }
        }
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let file = inner.read_spec(id)?;
        let dir = inner.root.join(id.as_str());
        fs::write(dir.join(STOPPED_FILE), b"").map_err(RuntimeError::io("write", dir.join(STOPPED_FILE)))?;
        let grace = i32::try_from(file.spec.stop_grace.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(grace).build();
        // The engine answers once the container has stopped, which may take the whole grace.
        let docker = inner.docker.clone().with_timeout(file.spec.stop_grace + Duration::from_secs(60));
        match docker.stop_container(&Self::container_name(id), Some(options)).await {
            Ok(()) => {}
            Err(error) if is_status(&error, &[304, 404]) => {}
            Err(source) => return Err(RuntimeError::Docker { action: format!("stop container of {id}"), source }),
        }
        let pump = inner.pumps.lock().expect("never poisoned").remove(id);
        if let Some((pump, _)) = pump {
            // The engine ends the log stream once the container has stopped.
            if tokio::time::timeout(PUMP_DRAIN, pump).await.is_err() {
                tracing::warn!(instance = %id, "log pump did not finish after the container stopped");
            }
        }
        // The output is in the log now; the engine keeps no stopped containers of ours. The
        // `stopped` marker says what became of it.
        let options = RemoveContainerOptionsBuilder::default().build();
        match inner.docker.remove_container(&Self::container_name(id), Some(options)).await {
            Ok(()) => {}
            Err(error) if is_status(&error, &[404]) => {}
            Err(source) => return Err(RuntimeError::Docker { action: format!("remove container of {id}"), source }),
        }
        inner.remove_secrets_file(id);
        tracing::info!(instance = %id, "container stopped and removed");
        Ok(())
    }

    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let inner = &self.inner;
        // Listing every container is the engine's dearest call; orphans are rare and can wait.
        let sweep = {
            let mut last = inner.last_sweep.lock().expect("never poisoned");
            let due = last.is_none_or(|at| at.elapsed() >= ORPHAN_SWEEP);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if sweep {
            inner.remove_orphans().await?;
        }
        let mut statuses = Vec::new();
        for id in disk::instance_ids(&inner.root)? {
            if inner.is_starting(&id) {
                continue;
            }
            let file = match inner.read_spec(&id) {
                Ok(file) => file,
                Err(RuntimeError::NotFound { .. }) => continue,
                Err(error) => {
                    tracing::warn!(instance = %id, error = %error, "skipping unreadable instance");
                    continue;
                }
            };
            let status = inner.status(&file).await?;
            if matches!(status.state, InstanceState::Running | InstanceState::Restarting | InstanceState::Starting) {
                inner.ensure_pump(&file.spec);
            }
            statuses.push(status);
        }
        statuses.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        Ok(statuses)
    }

    async fn remove(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        if inner.is_starting(id) {
            return Err(RuntimeError::StillRunning { id: id.clone() });
        }
        let file = inner.read_spec(id)?;
        let status = inner.status(&file).await?;
        if !matches!(status.state, InstanceState::Exited(_)) {
            return Err(RuntimeError::StillRunning { id: id.clone() });
        }
        inner.discard(id).await;
        tracing::info!(instance = %id, "instance removed");
        Ok(())
    }
}

impl Inner {
    /// The image to run and the slug to mount, or why the spec cannot run here.
    fn validate<'a>(&'a self, spec: &'a InstanceSpec) -> Result<(&'a str, Option<&'a Path>), RuntimeError> {
        let invalid = |reason: String| RuntimeError::InvalidSpec { id: spec.id.clone(), reason };
        crate::process::validate_command_and_env(spec)?;
        if !spec.sealed_env.is_empty() && self.key_file.is_none() {
            return Err(invalid("it has sealed variables but the runtime has no key file".to_owned()));
        }
        match &spec.artifact {
            Artifact::Image(image) if image.trim().is_empty() => Err(invalid("the image name is empty".to_owned())),
            Artifact::Image(image) => Ok((image, None)),
            Artifact::Slug(dir) => {
                let Some(stack) = &self.stack_image else {
                    return Err(invalid("a slug needs a stack image to run in, and none is configured".to_owned()));
                };
                if !dir.is_absolute() || !dir.is_dir() {
                    return Err(invalid(format!("slug directory {} is not an existing absolute path", dir.display())));
                }
                Ok((stack, Some(dir)))
            }
        }
    }

    async fn create_and_start(
        &self,
        spec: &InstanceSpec,
        image: &str,
        slug: Option<&Path>,
    ) -> Result<(), RuntimeError> {
        let docker_error = |action: &str| {
            let action = format!("{action} container of {}", spec.id);
            move |source| RuntimeError::Docker { action, source }
        };
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend([
            format!("DROVER_APP={}", spec.app),
            format!("DROVER_RELEASE={}", spec.release),
            format!("DROVER_INSTANCE={}", spec.id),
            format!("DROVER_PROCESS={}", spec.process),
            // The init process passes a stop's SIGTERM to the app's whole process group.
            "TINI_KILL_PROCESS_GROUP=1".to_owned(),
        ]);
        if let Some(port) = spec.port {
            env.push(format!("PORT={port}"));
        }
        // A bind mount whose source is gone (the secrets file after a reboot) fails the start,
        // instead of the engine making an empty directory in its place.
        let bind = |source: &Path, target: &str| Mount {
            target: Some(target.to_owned()),
            source: Some(source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        };
        let mut mounts = Vec::new();
        if let Some(slug) = slug {
            mounts.push(bind(slug, APP_DIR));
        }
        // The image's own entrypoint is not put in front of the command: `sh -c` runs it.
        let args = if spec.sealed_env.is_empty() {
            vec![spec.command.clone()]
        } else {
            let file = self.write_secrets_file(spec)?;
            mounts.push(bind(&file, SECRETS_PATH));
            // `set -a` exports what the file assigns; the app's own command then runs as usual.
            let script = format!("set -a; . {SECRETS_PATH}; set +a; exec /bin/sh -c \"$1\"");
            vec![script, "sh".to_owned(), spec.command.clone()]
        };
        let labels = HashMap::from([
            (ROOT_LABEL.to_owned(), self.owner.clone()),
            (INSTANCE_LABEL.to_owned(), spec.id.to_string()),
            ("io.drover.app".to_owned(), spec.app.to_string()),
            ("io.drover.release".to_owned(), spec.release.to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
            cmd: Some(args),
            env: Some(env),
            labels: Some(labels),
            working_dir: slug.map(|_| APP_DIR.to_owned()),
            stop_timeout: Some(i64::try_from(spec.stop_grace.as_secs()).unwrap_or(i64::MAX)),
            host_config: Some(HostConfig {
                // The host's network, as a process instance has: the app listens on $PORT of
                // the host's loopback, where the proxy and the health checks reach it directly.
                // (A published port answers TCP checks through docker-proxy even before the app
                // listens, and an app bound to 127.0.0.1 could not be reached through it.)
                network_mode: Some("host".to_owned()),
                init: Some(true),
                mounts: Some(mounts),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                // The engine keeps a bounded copy: what a control plane that is down for long
                // misses beyond it is lost.
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".to_owned()),
                    config: Some(HashMap::from([
                        ("max-size".to_owned(), "10m".to_owned()),
                        ("max-file".to_owned(), "3".to_owned()),
                    ])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = DockerRuntime::container_name(&spec.id);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker.create_container(Some(options), body).await.map_err(docker_error("create"))?;
        self.docker.start_container(&name, None).await.map_err(docker_error("start"))?;
        Ok(())
    }

    /// Writes `KEY='value'` lines for the instance's opened secrets to a new file in the
    /// runtime's tmpfs directory and returns its path. The directory is this process's own, mode
    /// 0700, so only its user reaches the file; the file is 0644 so that a container whose image
    /// runs as another user can still read it through the mount.
    fn write_secrets_file(&self, spec: &InstanceSpec) -> Result<PathBuf, RuntimeError> {
        let opened = crate::sealed::open(self.key_file.as_deref(), &spec.sealed_env)
            .map_err(|error| RuntimeError::StartFailed { id: spec.id.clone(), reason: chain(&error) })?;
        let text = env_file_text(&opened);
        let dir = &self.secrets_dir;
        private_dir(dir)?;
        let path = dir.join(format!("{}.env", spec.id));
        let _ = fs::remove_file(&path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(RuntimeError::io("create", &path))?;
        file.write_all(text.as_bytes()).map_err(RuntimeError::io("write", &path))?;
        Ok(path)
    }

    fn remove_secrets_file(&self, id: &InstanceId) {
        let path = self.secrets_dir.join(format!("{id}.env"));
        if let Err(error) = fs::remove_file(&path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), %error, "cannot remove a secrets file");
            }
        }
    }

    /// Removes everything of an instance but its logs: container, pump, secrets file, directory.
    async fn discard(&self, id: &InstanceId) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(&DockerRuntime::container_name(id), Some(options)).await {
            Ok(()) => {}
            Err(error) if is_status(&error, &[404]) => {}
            Err(error) => tracing::warn!(instance = %id, %error, "cannot remove container"),
        }
        if let Some((pump, _)) = self.pumps.lock().expect("never poisoned").remove(id) {
            pump.abort();
        }
        self.remove_secrets_file(id);
        let dir = self.root.join(id.as_str());
        if let Err(error) = fs::remove_dir_all(&dir) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %error, "cannot remove instance directory");
            }
        }
    }

    /// Force-removes this root's containers that have no instance directory: what a start or a
    /// remove interrupted half-way left behind.
    async fn remove_orphans(&self) -> Result<(), RuntimeError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{ROOT_LABEL}={}", self.owner)])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|source| RuntimeError::Docker { action: "list containers".to_owned(), source })?;
        for container in containers {
            let Some(id) = container.labels.as_ref().and_then(|labels| labels.get(INSTANCE_LABEL)) else { continue };
            let Ok(id) = InstanceId::parse(id) else { continue };
            if self.is_starting(&id) || self.root.join(id.as_str()).is_dir() {
                continue;
            }
            tracing::warn!(instance = %id, "removing a container no instance knows");
            self.discard(&id).await;
        }
        Ok(())
    }

    fn read_spec(&self, id: &InstanceId) -> Result<SpecFile, RuntimeError> {
        disk::read_json(&self.root.join(id.as_str()).join(SPEC_FILE))?
            .ok_or_else(|| RuntimeError::NotFound { id: id.clone() })
    }

    async fn inspect(&self, id: &InstanceId) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let name = DockerRuntime::container_name(id);
        match self.docker.inspect_container(&name, None::<InspectContainerOptions>).await {
            Ok(response) => Ok(Some(response)),
            Err(error) if is_status(&error, &[404]) => Ok(None),
            Err(source) => Err(RuntimeError::Docker { action: format!("inspect container of {id}"), source }),
        }
    }

    /// What the engine says of an instance, read with whether it was stopped on request.
    async fn status(&self, file: &SpecFile) -> Result<InstanceStatus, RuntimeError> {
        let spec = &file.spec;
        let inspected = self.inspect(&spec.id).await?;
        // Read after the engine answered: a stop that began meanwhile is then seen.
        let stopped = self.root.join(spec.id.as_str()).join(STOPPED_FILE).exists();
        let container_state = inspected.as_ref().and_then(|c| c.state.clone()).unwrap_or_default();
        let restarts = inspected.as_ref().and_then(|c| c.restart_count).map_or(0, |n| u32::try_from(n).unwrap_or(0));
        let status = container_state.status;
        let state = match (inspected.is_some(), status, stopped) {
            (false, _, true) => InstanceState::Exited(ExitCause::Stopped),
            (false, _, false) => InstanceState::Exited(ExitCause::Lost),
            // `list` skips starts in progress, so a container that was never started is what a
            // start cut short left: it will not start by itself.
            (true, Some(ContainerStateStatusEnum::CREATED), false) => InstanceState::Exited(ExitCause::Failed),
            (true, Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::PAUSED), false) => {
                InstanceState::Running
            }
            (true, Some(ContainerStateStatusEnum::RESTARTING), false) => InstanceState::Restarting,
            (true, Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING), true) => {
                InstanceState::Stopping
            }
            (true, _, true) => InstanceState::Exited(ExitCause::Stopped),
            // Exited by itself and not restarted, or removed by someone else: replace it.
            (true, _, false) => InstanceState::Exited(ExitCause::Lost),
        };
        let pid = match state {
            InstanceState::Running | InstanceState::Stopping => {
                container_state.pid.and_then(|pid| u32::try_from(pid).ok()).filter(|&pid| pid > 0)
            }
            _ => None,
        };
        // The engine keeps the last exit code while it waits to restart and once it gave up.
        let never_started = container_state.status == Some(ContainerStateStatusEnum::CREATED);
        let last_exit = match (&state, container_state.exit_code) {
            _ if inspected.is_none() => Some("the container is gone".to_owned()),
            _ if never_started => Some("the container was created but never started".to_owned()),
            (InstanceState::Restarting | InstanceState::Exited(_), Some(code)) => {
                Some(format!("exited with code {code}"))
            }
            _ => None,
        };
        Ok(InstanceStatus {
            spec: spec.clone(),
            state,
            pid,
            restarts,
            started_at: file.created_at_ms,
            last_exit,
            isolation: Isolation::Container,
        })
    }

    fn is_starting(&self, id: &InstanceId) -> bool {
        self.starting.contains(id)
    }

    /// Starts the instance's log pump unless one is running.
    fn ensure_pump(self: &Arc<Self>, spec: &InstanceSpec) {
        let mut pumps = self.pumps.lock().expect("never poisoned");
        // A pump still running, or one that ended soon after it started (the engine refused the
        // stream, the secrets cannot be opened): not again on every pass.
        if pumps.get(&spec.id).is_some_and(|(pump, started)| !pump.is_finished() || started.elapsed() < PUMP_RETRY) {
            return;
        }
        // A stop in progress drains the pump it has; a new one would copy lines twice.
        if self.root.join(spec.id.as_str()).join(STOPPED_FILE).exists() {
            return;
        }
        let inner = Arc::clone(self);
        let spec = spec.clone();
        let id = spec.id.clone();
        pumps.insert(id, (tokio::spawn(async move { inner.pump(spec).await }), Instant::now()));
    }

    /// Copies the container's output into the instance's log, masked, from after the last line
    /// an earlier pump wrote, until the container stops.
    async fn pump(&self, spec: InstanceSpec) {
        let source = LogSource {
            app: spec.app.clone(),
            release: spec.release,
            instance: spec.id.clone(),
            process: spec.process.clone(),
        };
        let writer = match LogWriter::open(&self.logs_root, source) {
            Ok(writer) => writer,
            Err(error) => {
                tracing::warn!(instance = %spec.id, %error, "cannot open the instance's log; its output is not captured");
                return;
            }
        };
        let secrets = match crate::sealed::open(self.key_file.as_deref(), &spec.sealed_env) {
            Ok(secrets) => secrets,
            Err(error) => {
                // Without the values nothing could be masked: capture nothing rather than leak.
                let _ = writer.write_system(&format!("output not captured: {}", chain(&error)));
                return;
            }
        };
        let masker = secrets::Masker::new(secrets.iter().map(|(_, value)| value.as_str()));
        let mut channels = [Channel::new(Stream::Stdout, &masker), Channel::new(Stream::Stderr, &masker)];
        let cursor_path = self.root.join(spec.id.as_str()).join(CURSOR_FILE);
        let mut cursor = Cursor::load(&cursor_path);
        let resume_after = cursor.nanos;
        let mut last_seen = resume_after;
        let since = i32::try_from(resume_after / 1_000_000_000).unwrap_or(0);
        let options =
            LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).timestamps(true).since(since).build();
        let mut output = self.docker.logs(&DockerRuntime::container_name(&spec.id), Some(options));
        loop {
            let item = match tokio::time::timeout(QUIET, output.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => {
                    // Quiet: a line held back in case it ends with half a secret goes out now.
                    for channel in &mut channels {
                        channel.flush(&writer);
                    }
                    cursor.set(last_seen);
                    continue;
                }
            };
            let (stream, message) = match item {
                Ok(LogOutput::StdOut { message }) => (Stream::Stdout, message),
                Ok(LogOutput::StdErr { message }) => (Stream::Stderr, message),
                Ok(_) => continue,
                Err(error) => {
                    tracing::debug!(instance = %spec.id, %error, "log stream ended");
                    break;
                }
            };
            let text = String::from_utf8_lossy(&message);
            let (stamp, line) = text.split_once(' ').unwrap_or(("", &text));
            let Some(nanos) = parse_timestamp(stamp) else { continue };
            if nanos <= resume_after {
                continue;
            }
            // Stdout and stderr reach the engine's log in nearly, not exactly, timestamp order.
            last_seen = last_seen.max(nanos);
            let line = line.strip_suffix('\n').unwrap_or(line);
            let line = line.strip_suffix('\r').unwrap_or(line);
            channels[usize::from(stream == Stream::Stderr)].push(line, nanos, &writer);
            // Everything before the oldest line still held back is in the log.
            let held = channels.iter().filter_map(|channel| channel.pending.front()).min();
            cursor.set(held.map_or(last_seen, |oldest| (oldest - 1).min(last_seen)));
        }
        for channel in &mut channels {
            channel.flush(&writer);
        }
        cursor.set(last_seen);
    }
}

/// One output stream of a container on its way to the log: masked, with the engine's
/// timestamps of the lines the masker still holds back.
struct Channel<'m> {
    stream: Stream,
    masks: secrets::MaskStream<'m>,
    pending: VecDeque<u64>,
}

impl<'m> Channel<'m> {
    fn new(stream: Stream, masker: &'m secrets::Masker) -> Self {
        Self { stream, masks: masker.stream(), pending: VecDeque::new() }
    }

    /// The masker returns lines in order, each once: each returned line is the oldest pending.
    fn push(&mut self, line: &str, nanos: u64, writer: &LogWriter) {
        self.pending.push_back(nanos);
        let ready = self.masks.push(line);
        self.write(ready, writer);
    }

    fn flush(&mut self, writer: &LogWriter) {
        let ready = self.masks.flush();
        self.write(ready, writer);
    }

    fn write(&mut self, lines: Vec<String>, writer: &LogWriter) {
        for line in lines {
            self.pending.pop_front();
            if let Err(error) = writer.write_line(self.stream, line.as_bytes()) {
                tracing::warn!(%error, "cannot write a log line");
            }
        }
    }
}

/// How far an instance's log has been copied: the engine's timestamp of the last line, in
/// nanoseconds since the epoch, saved to a file after each line.
struct Cursor {
    path: PathBuf,
    nanos: u64,
}

impl Cursor {
    fn load(path: &Path) -> Self {
        let nanos = fs::read_to_string(path).ok().and_then(|text| text.trim().parse().ok()).unwrap_or(0);
        Self { path: path.to_owned(), nanos }
    }

    /// Saves `nanos` as the point to resume after, if it moved.
    fn set(&mut self, nanos: u64) {
        if nanos != self.nanos {
            self.nanos = nanos;
            self.save();
        }
    }

    fn save(&self) {
        let tmp = self.path.with_extension("tmp");
        let written = fs::write(&tmp, self.nanos.to_string()).and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(error) = written {
            // The instance was removed meanwhile, or the disk is full: lines may repeat later.
            tracing::debug!(path = %self.path.display(), %error, "cannot save the log cursor");
        }
    }
}

/// `NAME='value'` lines for `vars`, quoted for `sh`: what a container's shell sources, with
/// `set -a`, to get its secrets.
pub fn env_file_text(vars: &[(String, String)]) -> String {
    vars.iter().map(|(name, value)| format!("{name}={}\n", sh_quote(value))).collect()
}

/// `text` as one single-quoted `sh` word, whatever it holds.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Makes `dir` a directory only this process's user can enter (mode 0700), or checks that it
/// already is one: a directory someone else made (or a link) in a shared place such as
/// `/dev/shm` is refused, since its owner could swap the files in it.
fn private_dir(dir: &Path) -> Result<(), RuntimeError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(RuntimeError::Io { action: "create", path: dir.to_owned(), source }),
    }
    let metadata = fs::symlink_metadata(dir).map_err(RuntimeError::io("inspect", dir))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !metadata.is_dir() || metadata.uid() != euid || metadata.permissions().mode() & 0o077 != 0 {
        return Err(RuntimeError::Io {
            action: "use as the private secrets directory",
            path: dir.to_owned(),
            source: io::Error::new(
                io::ErrorKind::PermissionDenied,
                "it is not a directory of this user with mode 0700",
            ),
        });
    }
    Ok(())
}

/// Whether the engine answered with one of `codes` (304 not modified, 404 no such container).
fn is_status(error: &bollard::errors::Error, codes: &[u16]) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

/// An RFC 3339 UTC timestamp as the engine writes them (`2026-11-25T15:30:01.123456789Z`, the
/// fraction of any length or absent), in nanoseconds since the epoch.
fn parse_timestamp(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.splitn(3, ':').map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().ok()? };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000_000) + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A short hex name for a path that stays the same across builds of Drover (64-bit FNV-1a), to
/// keep several roots' secrets apart.
fn short_hash(text: &str) -> String {
    let hash = text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_timestamps_parse_to_nanoseconds() {
        let table = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:01.5Z", Some(1_500_000_000)),
            ("2026-11-25T15:30:01.123456789Z", Some(1_795_620_601_123_456_789)),
            ("2000-02-29T00:00:00.000000001Z", Some(951_782_400_000_000_001)),
            ("2026-11-25T15:30:01", None),
            ("2026-11-25T15:30:01.1234567891Z", None),
            ("garbage", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse_timestamp(text), expected, "{text}");
        }
    }
}
