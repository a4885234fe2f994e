//! The process backend: each instance is a process group supervised by its own shim.
//!
//! `start` writes `ROOT/<id>/spec.json` and launches `SHIM_EXE shim --instance-dir ROOT/<id>`
//! detached from the control plane: the launched process forks once more and exits, so the shim
//! is neither a child nor a descendant of the control plane, runs in its own session with its
//! standard streams on `/dev/null`, and survives the control plane being killed, even together
//! with all its descendants. (The intermediate process is reaped by `start` right away.) `start`
//! returns once the shim has recorded its pid, its start time and the app's pid in `shim.json`.
//!
//! Everything else reads `shim.json` and `/proc`: a shim is alive if its pid exists, is not a
//! zombie, and has the recorded start time. That is all a new `ProcessRuntime` needs to re-adopt
//! the instances of a previous control plane.

use crate::disk::{self, ShimFile, ShimState, SpecFile};
use crate::isolation::IsolationRequest;
use crate::starting::StartingSet;
use crate::{
    procfs, Artifact, ExitCause, InstanceSpec, InstanceState, InstanceStatus, Isolation, Runtime, RuntimeError,
};
use model::InstanceId;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `start` waits for the shim to start the app.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` gives the shim beyond the instance's grace period to finish on its own.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How long to wait for processes to disappear after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often to look at `/proc` or `shim.json` while waiting.
const POLL: Duration = Duration::from_millis(10);

/// Runs instances as supervised process groups on this machine. See the module docs.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
    isolation: IsolationRequest,
    /// Opens instances' sealed variables; passed to each shim.
    key_file: Option<PathBuf>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    logs_root: PathBuf,
    shim_exe: PathBuf,
    /// Instances whose `start` is in progress in this process: `list` does not report them
    /// half-made, and `remove` does not pull their directory away.
    starting: StartingSet,
}

impl ProcessRuntime {
    /// A runtime keeping instance directories under `root` (e.g. `DATA/instances`), writing
    /// app logs under `logs_root`, and running `shim_exe shim --instance-dir DIR` (the `drover`
    /// binary) as each instance's supervisor. Relative paths are made absolute now, since the
    /// shim runs in `/`.
    ///
    /// Apps are isolated in a private mount namespace where the kernel allows it; see
    /// [`ProcessRuntime::without_isolation`].
    pub fn new(root: PathBuf, logs_root: PathBuf, shim_exe: PathBuf) -> Self {
        let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
        let inner = Inner {
            root: absolute(root),
            logs_root: absolute(logs_root),
            shim_exe: absolute(shim_exe),
            starting: StartingSet::default(),
        };
        Self { inner: Arc::new(inner), isolation: IsolationRequest::BestEffort, key_file: None }
    }

    /// The same runtime, but apps it starts from now on run as plain processes, never in a
    /// mount namespace (for hosts where namespaces misbehave).
    pub fn without_isolation(self) -> Self {
        Self { isolation: IsolationRequest::Off, ..self }
    }

    /// The key file that opens instances' sealed variables (see [`crate::SealedVar`]).
    pub fn with_key_file(self, key_file: PathBuf) -> Self {
        Self { key_file: Some(key_file), ..self }
    }

    /// The directory holding the instances' runtime files.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn launch(
        &self,
        spec: &InstanceSpec,
        dir: &Path,
        launched: &mut Option<ShimProcess>,
    ) -> Result<InstanceStatus, RuntimeError> {
        let spec_file =
            SpecFile::new(spec, slug_dir(spec)?, &self.inner.logs_root, self.isolation, self.key_file.as_deref());
        disk::write_json(&dir.join(disk::SPEC_FILE), &spec_file)?;
        let shim = spawn_shim(&spec.id, &self.inner.shim_exe, dir).await?;
        *launched = Some(shim);
        let start_failed = |reason: String| RuntimeError::StartFailed { id: spec.id.clone(), reason };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Liveness first: a shim that reports and then exits has reported by the time it is
            // seen dead.
            let alive = shim.is_alive();
            let shim_file: Option<ShimFile> = disk::read_json(&dir.join(disk::SHIM_FILE))?;
            match shim_file {
                Some(file) if file.state == ShimState::Failed => {
                    return Err(start_failed(file.error.unwrap_or_else(|| "the shim gave up".to_owned())));
                }
                Some(file) if file.child_pid.is_some() => {
                    return Ok(status(spec_file.to_spec(), Some(&file), file.is_alive()));
                }
                _ if !alive => return Err(start_failed("the shim exited before starting the app".to_owned())),
                _ if Instant::now() >= deadline => {
                    return Err(start_failed(format!("the shim did not start the app within {START_TIMEOUT:?}")));
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}

impl Runtime for ProcessRuntime {
    async fn start(&self, spec: InstanceSpec) -> Result<InstanceStatus, RuntimeError> {
        validate(&spec)?;
        let _starting = self.inner.starting.claim(&spec.id)?;
        let dir = self.inner.instance_dir(&spec.id);
        fs::create_dir_all(&self.inner.root).map_err(RuntimeError::io("create", &self.inner.root))?;
        // Apps with users of their own pass through both to reach their HOME and TMPDIR; no
        // one but root may list or change them.
        set_traverse_only(&self.inner.root)?;
        match fs::create_dir(&dir) {
            Ok(()) => set_traverse_only(&dir)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists { id: spec.id });
            }
            Err(source) => return Err(RuntimeError::Io { action: "create", path: dir, source }),
        }
        let mut launched = None;
        match self.launch(&spec, &dir, &mut launched).await {
            Ok(status) => {
                tracing::info!(app = %spec.app, release = %spec.release, instance = %spec.id, pid = ?status.pid, "instance started");
                Ok(status)
            }
            Err(error) => {
                tracing::warn!(app = %spec.app, release = %spec.release, instance = %spec.id, error = %error, "instance failed to start");
                let id = spec.id.clone();
                blocking(move || abandon(&id, &dir, launched)).await;
                Err(error)
            }
        }
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        let inner = Arc::clone(&self.inner);
        let found = {
            let id = id.clone();
            blocking(move || inner.read_instance(&id)).await?
        };
        let (spec, shim) = found;
        let Some(shim) = shim else {
            // The shim never recorded itself, so there is nothing known to stop.
            return Ok(());
        };
        if shim.is_alive() {
            let grace = spec.as_ref().map_or(Duration::from_secs(10), SpecFile::stop_grace);
            tracing::info!(instance = %id, shim_pid = shim.shim_pid, "stopping instance");
            signal(shim.shim_pid, Signal::SIGTERM);
            if !wait_until_dead(&shim, grace + STOP_MARGIN).await {
                tracing::warn!(instance = %id, shim_pid = shim.shim_pid, "shim did not stop in time, killing it");
                signal(shim.shim_pid, Signal::SIGKILL);
                if !wait_until_dead(&shim, KILL_TIMEOUT).await {
                    return Err(RuntimeError::StillRunning { id: id.clone() });
                }
            }
        }
        let dir = self.inner.instance_dir(id);
        let id = id.clone();
        blocking(move || {
            kill_stragglers(&id, &shim);
            mark_stopped(&dir)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.list()).await
    }

    async fn remove(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        let inner = Arc::clone(&self.inner);
        let id = id.clone();
        blocking(move || inner.remove(&id)).await
    }
}

impl Inner {
    fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.root.join(id.as_str())
    }

    fn is_starting(&self, id: &InstanceId) -> bool {
        self.starting.contains(id)
    }

    /// The instance's files; `NotFound` if it has no directory.
    fn read_instance(&self, id: &InstanceId) -> Result<(Option<SpecFile>, Option<ShimFile>), RuntimeError> {
        let dir = self.instance_dir(id);
        if !dir.is_dir() {
            return Err(RuntimeError::NotFound { id: id.clone() });
        }
        let spec = disk::read_json(&dir.join(disk::SPEC_FILE))?;
        let shim = disk::read_json(&dir.join(disk::SHIM_FILE))?;
        Ok((spec, shim))
    }

    fn list(&self) -> Result<Vec<InstanceStatus>, RuntimeError> {
        let mut statuses = Vec::new();
        for id in disk::instance_ids(&self.root)? {
            if self.is_starting(&id) {
                continue;
            }
            match self.read_instance(&id) {
                Ok((Some(spec), shim)) => {
                    let alive = shim.as_ref().is_some_and(ShimFile::is_alive);
                    statuses.push(status(spec.to_spec(), shim.as_ref(), alive));
                }
                // A directory without a spec is a start that died before writing it.
                Ok((None, _)) => {
                    tracing::debug!(instance = %id, "skipping instance directory without spec.json")
                }
                // Removed while listing.
                Err(RuntimeError::NotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(instance = %id, error = %error, "skipping unreadable instance")
                }
            }
        }
        statuses.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        Ok(statuses)
    }

    fn remove(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        if self.is_starting(id) {
            return Err(RuntimeError::StillRunning { id: id.clone() });
        }
        let (_, shim) = self.read_instance(id)?;
        if let Some(shim) = &shim {
            if shim.is_alive() {
                return Err(RuntimeError::StillRunning { id: id.clone() });
            }
            kill_stragglers(id, shim);
        }
        let dir = self.instance_dir(id);
        fs::remove_dir_all(&dir).map_err(RuntimeError::io("remove", &dir))?;
        tracing::info!(instance = %id, "instance removed");
        Ok(())
    }
}

impl ShimFile {
    fn is_alive(&self) -> bool {
        procfs::is_alive(self.shim_pid, self.shim_start_time)
    }
}

/// The shim process as learned when launching it, before it has written `shim.json`.
#[derive(Debug, Clone, Copy)]
struct ShimProcess {
    pid: u32,
    /// `None` if it was already gone when looked at.
    start_time: Option<u64>,
}

impl ShimProcess {
    fn is_alive(&self) -> bool {
        self.start_time.is_some_and(|start_time| procfs::is_alive(self.pid, start_time))
    }
}

/// Rejects specs that cannot run, before anything is created.
fn validate(spec: &InstanceSpec) -> Result<(), RuntimeError> {
    validate_command_and_env(spec)?;
    slug_dir(spec).map(drop)
}

/// Rejects a command or environment that no backend can run: empty, or with NUL bytes or
/// malformed variable names.
pub(crate) fn validate_command_and_env(spec: &InstanceSpec) -> Result<(), RuntimeError> {
    let invalid = |reason: String| Err(RuntimeError::InvalidSpec { id: spec.id.clone(), reason });
    if spec.command.trim().is_empty() {
        return invalid("the command is empty".to_owned());
    }
    if spec.command.contains('\0') {
        return invalid("the command contains a NUL byte".to_owned());
    }
    for (name, value) in &spec.env {
        if name.is_empty() || name.contains(['=', '\0']) {
            return invalid(format!("environment variable name {name:?} is empty or contains '=' or NUL"));
        }
        if value.contains('\0') {
            return invalid(format!("environment variable {name} contains a NUL byte"));
        }
    }
    Ok(())
}

/// The slug an instance runs from: an existing directory, by absolute path.
/// Mode 0711: others may pass through to what they know the name of, nothing more.
fn set_traverse_only(dir: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).map_err(RuntimeError::io("set permissions on", dir))
}

fn slug_dir(spec: &InstanceSpec) -> Result<&Path, RuntimeError> {
    let invalid = |reason: String| Err(RuntimeError::InvalidSpec { id: spec.id.clone(), reason });
    let slug_dir = match &spec.artifact {
        Artifact::Slug(dir) => dir,
        Artifact::Image(image) => {
            return invalid(format!("image {image} needs a container runtime; the process runtime runs slugs"))
        }
    };
    if !slug_dir.is_absolute() {
        return invalid(format!("slug directory {} is not an absolute path", slug_dir.display()));
    }
    if !slug_dir.is_dir() {
        return invalid(format!("slug directory {} does not exist or is not a directory", slug_dir.display()));
    }
    Ok(slug_dir)
}

/// What an instance's files say, given whether its shim is alive.
fn status(spec: InstanceSpec, shim: Option<&ShimFile>, shim_alive: bool) -> InstanceStatus {
    let Some(shim) = shim else {
        return InstanceStatus {
            spec,
            state: InstanceState::Exited(ExitCause::Failed),
            pid: None,
            restarts: 0,
            started_at: 0,
            last_exit: Some("the shim never recorded itself".to_owned()),
            isolation: Isolation::None,
        };
    };
    let state = match (shim.state, shim_alive) {
        (ShimState::Stopped, _) => InstanceState::Exited(ExitCause::Stopped),
        (ShimState::Failed, _) => InstanceState::Exited(ExitCause::Failed),
        (_, false) => InstanceState::Exited(ExitCause::Lost),
        (ShimState::Starting, true) => InstanceState::Starting,
        (ShimState::Running, true) => InstanceState::Running,
        (ShimState::Restarting, true) => InstanceState::Restarting,
        (ShimState::Stopping, true) => InstanceState::Stopping,
    };
    let pid = match state {
        InstanceState::Running | InstanceState::Stopping => shim.child_pid,
        _ => None,
    };
    InstanceStatus {
        spec,
        state,
        pid,
        restarts: shim.restarts,
        started_at: shim.started_at_ms,
        last_exit: shim.last_exit.clone().or_else(|| shim.error.clone()),
        isolation: shim.isolation(),
    }
}

/// Launches the shim detached and returns its pid. The launched process only forks the shim
/// and exits; it is reaped here.
async fn spawn_shim(id: &InstanceId, shim_exe: &Path, dir: &Path) -> Result<ShimProcess, RuntimeError> {
    let start_failed = |reason: String| RuntimeError::StartFailed { id: id.clone(), reason };
    let (pid_read, pid_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| RuntimeError::Io {
        action: "create a pipe for",
        path: dir.to_owned(),
        source: errno.into(),
    })?;
    let mut command = tokio::process::Command::new(shim_exe);
    command
        .arg("shim")
        .arg("--instance-dir")
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid_fd = pid_write.as_raw_fd();
    // SAFETY: `detach` only makes async-signal-safe calls (fork, setsid, write, _exit), and
    // `pid_write` stays open until `spawn` has returned.
    unsafe { command.pre_exec(move || detach(pid_fd)) };
    let mut intermediate =
        command.spawn().map_err(|error| start_failed(format!("cannot run {}: {error}", shim_exe.display())))?;
    drop(pid_write);
    let exit = intermediate
        .wait()
        .await
        .map_err(|error| start_failed(format!("cannot wait for the shim launcher: {error}")))?;
    if !exit.success() {
        return Err(start_failed(format!("the shim launcher failed: {exit}")));
    }
    let mut pid = [0u8; 4];
    File::from(pid_read)
        .read_exact(&mut pid)
        .map_err(|error| start_failed(format!("cannot learn the shim's pid: {error}")))?;
    let pid = u32::from_ne_bytes(pid);
    Ok(ShimProcess { pid, start_time: procfs::stat(pid).map(|stat| stat.start_time) })
}

/// Runs between fork and exec of the shim launcher: forks the shim, which starts a new session
/// and goes on to exec, while the launcher reports the shim's pid and exits.
fn detach(pid_fd: RawFd) -> io::Result<()> {
    // SAFETY: fork, setsid, write and _exit are async-signal-safe; `pid` is a live stack value.
    unsafe {
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => match libc::setsid() {
                -1 => Err(io::Error::last_os_error()),
                _ => Ok(()),
            },
            pid => {
                let pid = pid.to_ne_bytes();
                libc::write(pid_fd, pid.as_ptr().cast(), pid.len());
                libc::_exit(0)
            }
        }
    }
}

/// Cleans up after a failed start: kills whatever was launched and deletes the directory, so a
/// failed start leaves no process and no half-made instance (its log lines stay).
fn abandon(id: &InstanceId, dir: &Path, launched: Option<ShimProcess>) {
    let shim: Option<ShimFile> = disk::read_json(&dir.join(disk::SHIM_FILE)).ok().flatten();
    if let Some(launched) = launched {
        if launched.is_alive() {
            signal(launched.pid, Signal::SIGKILL);
            let deadline = Instant::now() + KILL_TIMEOUT;
            while launched.is_alive() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
    }
    if let Some(shim) = &shim {
        kill_stragglers(id, shim);
    }
    if let Err(error) = fs::remove_dir_all(dir) {
        tracing::warn!(instance = %id, error = %error, "cannot remove the directory of a failed instance");
    }
}

/// Kills what is left of the app's process group once its shim is gone: processes the app
/// forked do not inherit its parent-death signal. The group id is only trusted while the group
/// provably belongs to this instance (its leader with the recorded start time, or a member
/// with `DROVER_INSTANCE` set to this instance), since a group id can be reused once the
/// group is empty.
fn kill_stragglers(id: &InstanceId, shim: &ShimFile) {
    let Some(pgid) = shim.child_pid else { return };
    let members = procfs::group_members(pgid);
    let marker = format!("DROVER_INSTANCE={id}");
    let leader_is_ours =
        |pid: u32| pid == pgid && shim.child_start_time.is_some_and(|start| procfs::is_alive(pid, start));
    let ours = members.iter().any(|&pid| leader_is_ours(pid) || procfs::environ_contains(pid, &marker));
    if !ours {
        return;
    }
    tracing::info!(instance = %id, pgid, n_processes = members.len(), "killing processes left by the instance");
    let Ok(raw_pgid) = i32::try_from(pgid) else {
        return;
    };
    match killpg(Pid::from_raw(raw_pgid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => {
            tracing::warn!(instance = %id, pgid, %error, "cannot kill leftover processes")
        }
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    while !procfs::group_members(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
}

/// Records a stop in `shim.json` if the shim could not (it was killed, or was already dead).
fn mark_stopped(dir: &Path) -> Result<(), RuntimeError> {
    let path = dir.join(disk::SHIM_FILE);
    let Some(mut shim) = disk::read_json::<ShimFile>(&path)? else {
        return Ok(());
    };
    if matches!(shim.state, ShimState::Stopped | ShimState::Failed) {
        return Ok(());
    }
    shim.state = ShimState::Stopped;
    disk::write_json(&path, &shim)
}

/// Sends `signal` to process `pid`; a process that is already gone is fine.
fn signal(pid: u32, signal: Signal) {
    let Ok(raw_pid) = i32::try_from(pid) else {
        return;
    };
    match kill(Pid::from_raw(raw_pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => {
            tracing::warn!(pid, %error, signal = signal.as_str(), "cannot signal process")
        }
    }
}

async fn wait_until_dead(shim: &ShimFile, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while shim.is_alive() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// Runs file and `/proc` work on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::IsolationMode;
    use model::{AppName, ProcessType, ReleaseId};
    use std::collections::BTreeMap;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            id: InstanceId::parse("hello-web-v1-a").unwrap(),
            app: AppName::parse("hello").unwrap(),
            release: ReleaseId(1),
            process: ProcessType::web(),
            command: "true".to_owned(),
            env: BTreeMap::new(),
            port: None,
            artifact: Artifact::Slug(PathBuf::from("/")),
            stop_grace: Duration::from_secs(1),
            sealed_env: Vec::new(),
            user: None,
        }
    }

    fn shim(state: ShimState) -> ShimFile {
        ShimFile {
            shim_pid: 10,
            shim_start_time: 20,
            state,
            started_at_ms: 30,
            child_pid: Some(11),
            child_start_time: Some(21),
            restarts: 4,
            last_exit: Some("exited with code 1".to_owned()),
            isolation: IsolationMode::MountNamespace,
            private_tmp: false,
            private_proc: false,
            error: None,
        }
    }

    #[test]
    fn status_follows_shim_state_and_liveness() {
        use ExitCause::*;
        use InstanceState::*;
        let table = [
            (ShimState::Starting, true, Starting, None),
            (ShimState::Running, true, Running, Some(11)),
            (ShimState::Restarting, true, Restarting, None),
            (ShimState::Stopping, true, Stopping, Some(11)),
            (ShimState::Stopped, true, Exited(Stopped), None),
            (ShimState::Running, false, Exited(Lost), None),
            (ShimState::Restarting, false, Exited(Lost), None),
            (ShimState::Stopping, false, Exited(Lost), None),
            (ShimState::Stopped, false, Exited(Stopped), None),
            (ShimState::Failed, false, Exited(Failed), None),
        ];
        for (shim_state, alive, expected, pid) in table {
            let got = status(spec(), Some(&shim(shim_state)), alive);
            assert_eq!((got.state, got.pid), (expected, pid), "{shim_state:?} alive={alive}");
            assert_eq!(got.restarts, 4);
            assert_eq!(got.isolation, Isolation::MountNamespace { private_tmp: false });
        }
        let never = status(spec(), None, false);
        assert_eq!(never.state, Exited(Failed));
    }

    #[test]
    fn validate_rejects_unrunnable_specs() {
        let env = |name: &str, value: &str| BTreeMap::from([(name.to_owned(), value.to_owned())]);
        let table = [
            (spec(), true),
            (InstanceSpec { command: " ".to_owned(), ..spec() }, false),
            (InstanceSpec { command: "a\0b".to_owned(), ..spec() }, false),
            (InstanceSpec { env: env("A=B", "x"), ..spec() }, false),
            (InstanceSpec { env: env("", "x"), ..spec() }, false),
            (InstanceSpec { env: env("A", "x\0"), ..spec() }, false),
            (InstanceSpec { artifact: Artifact::Slug(PathBuf::from("relative")), ..spec() }, false),
            (InstanceSpec { artifact: Artifact::Slug(PathBuf::from("/definitely/not/here")), ..spec() }, false),
            (InstanceSpec { artifact: Artifact::Image("busybox".to_owned()), ..spec() }, false),
        ];
        for (spec, ok) in table {
            assert_eq!(validate(&spec).is_ok(), ok, "{spec:?}");
        }
    }
}
