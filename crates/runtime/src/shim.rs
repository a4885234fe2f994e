//! The shim: the small process that supervises one instance of the process backend.
//!
//! `drover shim --instance-dir DIR` calls [`run`]. The control plane starts it fully detached,
//! so it keeps running when the control plane exits or is killed. It reads `DIR/spec.json` and
//! then, until it is told to stop with SIGTERM:
//!
//! 1. runs `sh -c COMMAND` in its own process group, with the slug as working directory, in a
//!    private mount namespace when possible (see `isolation`);
//! 2. captures the app's stdout and stderr into the instance's log file, and adds
//!    [`Stream::System`](logs::Stream::System) lines for its own events;
//! 3. when the app exits, kills whatever is left of its process group and restarts it after an
//!    exponential backoff (100 ms doubling to 10 s, reset after 10 s of uptime);
//! 4. on SIGTERM or SIGINT, sends SIGTERM to the app's process group, waits up to the grace
//!    period, sends SIGKILL to what is left, records the final state and exits.
//!
//! Its state is in `DIR/shim.json`, replaced atomically on every change, so the control plane
//! can observe and re-adopt it without talking to it. The shim is single-threaded apart from
//! one thread per captured output stream; signals are taken synchronously with `sigtimedwait`,
//! so there are no signal handlers and no races between a signal and the supervision loop.

use crate::backoff::Backoff;
use crate::disk::{self, IsolationMode, ShimFile, ShimState, SpecFile};
use crate::isolation::{self, ChildSetup};
use crate::{procfs, RuntimeError};
use logs::{LogSource, LogWriter, Stream};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use secrets::Masker;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// `PATH` for apps when neither their environment nor the shim's has one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long to wait for the output threads to drain after an app exits. They normally finish
/// at once; they can only hang if the app handed its output to a process outside its group.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often to look for processes left in the app's group while waiting for them to exit.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Why the shim could not supervise its instance.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Signals are taken synchronously, which only works if every thread blocks them, so the
    /// shim must run before anything (such as a tokio runtime) starts threads.
    #[error("the shim must be started before any other thread (found {threads} threads)")]
    Threaded { threads: usize },
    #[error("cannot set up signal handling")]
    Signals(#[source] Errno),
    #[error("{} has no spec.json", dir.display())]
    NoSpec { dir: PathBuf },
    #[error(transparent)]
    Files(#[from] RuntimeError),
    #[error("cannot open the instance log")]
    Log(#[from] logs::LogError),
    #[error("cannot {action}")]
    Setup {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the instance's secrets")]
    Secrets(#[source] crate::sealed::OpenError),
    /// The app could not be started the first time; the instance is marked failed.
    #[error("cannot start the app")]
    Spawn(#[source] io::Error),
}

/// Supervises the instance in `instance_dir` until it is stopped; see the module docs.
///
/// Must be called from the process's only thread (before any runtime starts), and should be
/// the process's whole job: it blocks SIGTERM, SIGINT and SIGCHLD for the process. Returns
/// `Ok` after a requested stop.
pub fn run(instance_dir: &Path) -> Result<(), ShimError> {
    match procfs::own_thread_count() {
        Some(1) | None => {}
        Some(threads) => return Err(ShimError::Threaded { threads }),
    }
    let signals = supervised_signals();
    for signal in signals.iter() {
        // An ignored SIGCHLD (inherited from whoever started the shim) would make the kernel
        // reap the app behind the shim's back, and an ignored SIGTERM could not be waited for.
        // SAFETY: installs the default disposition, no handler code.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }.map_err(ShimError::Signals)?;
    }
    signals.thread_block().map_err(ShimError::Signals)?;

    let dir = instance_dir
        .canonicalize()
        .map_err(|source| ShimError::Setup { action: "resolve the instance directory", source })?;
    let spec: SpecFile = disk::read_json(&dir.join(disk::SPEC_FILE))?.ok_or(ShimError::NoSpec { dir: dir.clone() })?;
    let mut shim = Shim::start(dir, spec, signals)?;
    shim.supervise()
}

/// Creates the app's `HOME` or `TMPDIR`, empty and its user's alone (0700): handed to the app's
/// user when it has one. Instance directories are never reused, so it cannot exist yet.
fn create_private_dir(path: &Path, user: Option<model::AppUser>) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(path)?;
    match user {
        Some(user) => sandbox::hand_over(path, user),
        None => Ok(()),
    }
}

/// The signals the shim takes with `sigtimedwait` instead of letting them act.
fn supervised_signals() -> SigSet {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGCHLD);
    signals
}

struct Shim {
    dir: PathBuf,
    spec: SpecFile,
    signals: SigSet,
    state: ShimFile,
    log: Arc<LogWriter>,
    /// Masks the values of the instance's secrets in everything it logs.
    masker: Arc<Masker>,
    env: BTreeMap<String, String>,
    setup: ChildSetup,
}

/// One run of the app.
struct App {
    child: Child,
    pid: u32,
    started: Instant,
    /// One message per output thread when it reaches the end of its pipe.
    drained: mpsc::Receiver<()>,
    n_readers: usize,
}

/// How watching a running app ended.
enum Watch {
    Exited { uptime: Duration },
    StopRequested,
}

impl Shim {
    /// Records the shim's identity, then prepares everything the app needs. Until the app has
    /// started, any failure marks the instance failed in `shim.json`.
    fn start(dir: PathBuf, spec: SpecFile, signals: SigSet) -> Result<Self, ShimError> {
        let shim_start_time = procfs::own_start_time().ok_or_else(|| ShimError::Setup {
            action: "read the shim's start time from /proc/self/stat",
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        let mut state = ShimFile {
            shim_pid: std::process::id(),
            shim_start_time,
            state: ShimState::Starting,
            started_at_ms: logs::now_millis(),
            child_pid: None,
            child_start_time: None,
            restarts: 0,
            last_exit: None,
            isolation: IsolationMode::None,
            private_tmp: false,
            private_proc: false,
            error: None,
        };
        disk::write_json(&dir.join(disk::SHIM_FILE), &state)?;

        let prepared = Self::prepare(&dir, &spec);
        let (log, masker, env, setup) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                state.state = ShimState::Failed;
                state.error = Some(error_chain(&error));
                disk::write_json(&dir.join(disk::SHIM_FILE), &state)?;
                return Err(error);
            }
        };
        Ok(Self { dir, spec, signals, state, log: Arc::new(log), masker: Arc::new(masker), env, setup })
    }

    fn prepare(
        dir: &Path,
        spec: &SpecFile,
    ) -> Result<(LogWriter, Masker, BTreeMap<String, String>, ChildSetup), ShimError> {
        let source = LogSource {
            app: spec.app.clone(),
            release: spec.release,
            instance: spec.id.clone(),
            process: spec.process.clone(),
        };
        let log = LogWriter::open(&spec.logs_root, source)?;
        let home = dir.join(disk::HOME_DIR);
        let tmp = dir.join(disk::TMP_DIR);
        for private in [&home, &tmp] {
            create_private_dir(private, spec.user)
                .map_err(|source| ShimError::Setup { action: "create HOME and TMPDIR", source })?;
        }
        let mut env = app_env(spec, std::env::var("PATH").ok(), &home, &tmp);
        let secrets = open_secrets(spec)?;
        let masker = Masker::new(secrets.iter().map(|(_, value)| value.as_str()));
        // Secrets never override what Drover itself sets (PORT, DROVER_*, HOME, TMPDIR).
        for (name, value) in secrets {
            env.entry(name).or_insert(value);
        }
        let setup = ChildSetup::plan(spec.isolation, &spec.slug_dir, dir, spec.user)
            .map_err(|source| ShimError::Setup { action: "prepare the slug directory", source })?;
        Ok((log, masker, env, setup))
    }

    fn supervise(&mut self) -> Result<(), ShimError> {
        let mut backoff = Backoff::new();
        let mut first = true;
        loop {
            let delay = match self.spawn() {
                Ok(mut app) => match self.watch(&mut app) {
                    Watch::Exited { uptime } => backoff.delay_after(uptime),
                    Watch::StopRequested => {
                        self.stop(Some(app));
                        return Ok(());
                    }
                },
                Err(error) if first => {
                    let reason = format!("cannot start: {error}");
                    self.note(&reason);
                    self.state.state = ShimState::Failed;
                    self.state.error = Some(reason);
                    self.save();
                    return Err(ShimError::Spawn(error));
                }
                Err(error) => {
                    let reason = format!("cannot start: {error}");
                    self.note(&reason);
                    self.state.last_exit = Some(reason);
                    backoff.delay_after(Duration::ZERO)
                }
            };
            first = false;
            self.state.state = ShimState::Restarting;
            self.save();
            self.note(&format!("restarting in {} ms", delay.as_millis()));
            if self.stop_requested_within(delay) {
                self.stop(None);
                return Ok(());
            }
            self.state.restarts += 1;
        }
    }

    /// Starts the app and its output threads, and records it as running.
    fn spawn(&mut self) -> io::Result<App> {
        let (report_read, report_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&self.spec.command)
            .current_dir(&self.spec.slug_dir)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let setup = self.setup.clone();
        let report_fd = report_write.as_raw_fd();
        // SAFETY: `apply` only makes async-signal-safe system calls on data prepared before the
        // fork, and `report_write` stays open until `spawn` has returned.
        unsafe { command.pre_exec(move || setup.apply(report_fd)) };
        let mut child = command.spawn()?;
        drop(report_write);
        let mut report = [0u8];
        // The byte was written before `exec`, and `spawn` returns only after `exec`.
        let report = match File::from(report_read).read(&mut report) {
            Ok(1) => report[0],
            _ => 0,
        };
        let outcome = isolation::outcome(report);

        let pid = child.id();
        let mut description = match outcome.mode {
            IsolationMode::MountNamespace => "mount namespace, read-only slug".to_owned(),
            IsolationMode::None => "none".to_owned(),
        };
        if outcome.private_tmp {
            description.push_str(", private /tmp");
        }
        if outcome.private_proc {
            description.push_str(", private /proc");
        }
        let user = match self.spec.user {
            Some(user) => format!("app user {}", user.uid),
            None => "drover's own user".to_owned(),
        };
        // Before the output threads start, so the log reads in order; the pipes hold the app's
        // first output meanwhile.
        self.note(&format!("started pid {pid} as {user} (isolation: {description})"));

        let (done, drained) = mpsc::channel();
        let outputs: [(Stream, Option<Box<dyn Read + Send>>); 2] = [
            (Stream::Stdout, child.stdout.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>)),
            (Stream::Stderr, child.stderr.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>)),
        ];
        let mut n_readers = 0;
        for (stream, pipe) in outputs {
            let Some(pipe) = pipe else { continue };
            let log = Arc::clone(&self.log);
            let masker = Arc::clone(&self.masker);
            let done = done.clone();
            let reader = thread::Builder::new().name(format!("{stream:?}").to_lowercase()).spawn(move || {
                let masks = std::cell::RefCell::new(masker.stream());
                let captured = log.capture_transformed(
                    stream,
                    pipe,
                    |line| masks.borrow_mut().push(line),
                    || masks.borrow_mut().flush(),
                );
                if let Err(error) = captured {
                    tracing::warn!(error = %error, "cannot capture app output");
                }
                // The receiver is gone only if the shim stopped waiting for this app.
                let _ = done.send(());
            });
            match reader {
                Ok(_) => n_readers += 1,
                Err(error) => {
                    // Without a reader the app would block on a full pipe: do not run it.
                    kill_group(pid, Signal::SIGKILL);
                    let _ = child.wait();
                    return Err(error);
                }
            }
        }

        // Last: once `shim.json` names the app, `start` may report success.
        self.state.state = ShimState::Running;
        self.state.child_pid = Some(pid);
        self.state.child_start_time = procfs::stat(pid).map(|stat| stat.start_time);
        self.state.isolation = outcome.mode;
        self.state.private_tmp = outcome.private_tmp;
        self.state.private_proc = outcome.private_proc;
        self.save();
        Ok(App { child, pid, started: Instant::now(), drained, n_readers })
    }

    /// Waits until the app exits or a stop is requested.
    fn watch(&mut self, app: &mut App) -> Watch {
        loop {
            match wait_signal(&self.signals, Duration::from_secs(1)) {
                Some(Signal::SIGTERM | Signal::SIGINT) => return Watch::StopRequested,
                // SIGCHLD, or the periodic check in case a SIGCHLD was merged with another.
                _ if has_exited(app.pid) => break,
                _ => {}
            }
        }
        let uptime = app.started.elapsed();
        // The exited main process is not reaped yet, so its pid (the group id) cannot have been
        // reused: the group is certainly still the app's.
        kill_group(app.pid, Signal::SIGKILL);
        let status = reap(app);
        let description = describe(status);
        self.note(&description);
        self.state.last_exit = Some(description);
        Watch::Exited { uptime }
    }

    /// Whether SIGTERM or SIGINT arrives within `delay`.
    fn stop_requested_within(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Some(Signal::SIGTERM | Signal::SIGINT) = wait_signal(&self.signals, left) {
                return true;
            }
        }
    }

    /// Stops the app (if running): SIGTERM to its group, the grace period, SIGKILL to what is
    /// left. Then records the final state.
    fn stop(&mut self, app: Option<App>) {
        self.state.state = ShimState::Stopping;
        self.save();
        if let Some(mut app) = app {
            let grace = self.spec.stop_grace();
            self.note(&format!("stopping: sent SIGTERM, grace period {} ms", grace.as_millis()));
            kill_group(app.pid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while !has_exited(app.pid) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // SIGCHLD ends the wait early; a repeated SIGTERM changes nothing.
                wait_signal(&self.signals, left.min(Duration::from_millis(100)));
            }
            // Other processes of the group may still be finishing their own shutdown.
            while !procfs::group_members(app.pid).is_empty() && Instant::now() < deadline {
                thread::sleep(GROUP_POLL.min(deadline.saturating_duration_since(Instant::now())));
            }
            if !procfs::group_members(app.pid).is_empty() {
                self.note("grace period over: sent SIGKILL");
                // The main process is not reaped yet, so the group id is still the app's.
                kill_group(app.pid, Signal::SIGKILL);
            }
            let status = reap(&mut app);
            let description = describe(status);
            self.note(&description);
            self.state.last_exit = Some(description);
        }
        self.state.state = ShimState::Stopped;
        self.save();
        self.note("stopped");
    }

    /// Writes `shim.json`. A failure is noted in the log but does not stop supervision: the
    /// app matters more than the control plane's view of it.
    fn save(&self) {
        if let Err(error) = disk::write_json(&self.dir.join(disk::SHIM_FILE), &self.state) {
            self.note(&format!("cannot record state: {}", error_chain(&error)));
        }
    }

    /// Adds a system line to the instance's log.
    fn note(&self, message: &str) {
        if let Err(error) = self.log.write_system(message) {
            // The shim's stderr goes nowhere by default; this is for a debugging subscriber.
            tracing::warn!(error = %error, message, "cannot write to the instance log");
        }
    }
}

/// The app's environment: the spec's, plus what Drover defines, which wins.
fn app_env(spec: &SpecFile, shim_path: Option<String>, home: &Path, tmp: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), shim_path.unwrap_or_else(|| DEFAULT_PATH.to_owned()));
    env.extend(spec.env.clone());
    if let Some(port) = spec.port {
        env.insert("PORT".to_owned(), port.to_string());
    }
    env.insert("DROVER_APP".to_owned(), spec.app.to_string());
    env.insert("DROVER_RELEASE".to_owned(), spec.release.0.to_string());
    env.insert("DROVER_INSTANCE".to_owned(), spec.id.to_string());
    env.insert("DROVER_PROCESS".to_owned(), spec.process.to_string());
    env.insert("HOME".to_owned(), home.to_string_lossy().into_owned());
    env.insert("TMPDIR".to_owned(), tmp.to_string_lossy().into_owned());
    env
}

/// Waits up to `timeout` for one of `signals` (which must be blocked).
fn wait_signal(signals: &SigSet, timeout: Duration) -> Option<Signal> {
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below one billion, so it fits a c_long on every platform.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the set and timeout are valid for the call; the siginfo out-pointer may be null.
    let signal = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
    Signal::try_from(signal).ok()
}

/// Whether process `pid`, a child of this process, has exited. Does not reap it, so its pid
/// stays reserved (and its process group identifiable) until [`reap`].
fn has_exited(pid: u32) -> bool {
    // SAFETY: all-zero is a valid siginfo_t, and waitid fills it or leaves si_pid 0.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer.
    let result = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: waitid succeeded, so si_pid is initialised (0 if the child is still running).
    result != 0 || unsafe { info.si_pid() } != 0
}

/// Opens the instance's sealed variables with the runtime's key file.
fn open_secrets(spec: &SpecFile) -> Result<Vec<(String, String)>, ShimError> {
    crate::sealed::open(spec.key_file.as_deref(), &spec.sealed_env).map_err(ShimError::Secrets)
}

/// Reaps the app's main process and waits (a bounded time) for its output to be captured.
fn reap(app: &mut App) -> Option<ExitStatus> {
    let status = app.child.wait().ok();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for _ in 0..app.n_readers {
        let left = deadline.saturating_duration_since(Instant::now());
        if app.drained.recv_timeout(left).is_err() {
            break;
        }
    }
    status
}

/// Sends `signal` to process group `pgid`; a group that is already gone is fine.
fn kill_group(pgid: u32, signal: Signal) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => tracing::warn!(%pgid, %error, "cannot signal the app's process group"),
    }
}

/// "exited with code 3", "killed by SIGKILL".
fn describe(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "exited (status unknown)".to_owned();
    };
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(signal) => match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {}", signal.as_str()),
            Err(_) => format!("killed by signal {signal}"),
        },
        None => "exited".to_owned(),
    }
}

/// An error and its sources on one line: "a: b: c".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::IsolationRequest;
    use model::{AppName, InstanceId, ProcessType, ReleaseId};

    #[test]
    fn app_env_adds_drover_variables_which_win() {
        let spec = SpecFile {
            id: InstanceId::parse("hello-web-v3-a1").unwrap(),
            app: AppName::parse("hello").unwrap(),
            release: ReleaseId(3),
            process: ProcessType::web(),
            command: "true".to_owned(),
            env: BTreeMap::from([
                ("GREETING".to_owned(), "hi".to_owned()),
                ("PORT".to_owned(), "1".to_owned()),
                ("PATH".to_owned(), "/opt/app/bin".to_owned()),
            ]),
            port: Some(5000),
            slug_dir: PathBuf::from("/slug"),
            stop_grace_ms: 1000,
            logs_root: PathBuf::from("/logs"),
            isolation: IsolationRequest::BestEffort,
            sealed_env: Vec::new(),
            key_file: None,
            user: None,
        };
        let env = app_env(&spec, Some("/usr/bin".to_owned()), Path::new("/i/home"), Path::new("/i/tmp"));
        let expected = [
            ("DROVER_APP", "hello"),
            ("DROVER_INSTANCE", "hello-web-v3-a1"),
            ("DROVER_PROCESS", "web"),
            ("DROVER_RELEASE", "3"),
            ("GREETING", "hi"),
            ("HOME", "/i/home"),
            ("PATH", "/opt/app/bin"),
            ("PORT", "5000"),
            ("TMPDIR", "/i/tmp"),
        ];
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);

        let spec = SpecFile { env: BTreeMap::new(), port: None, ..spec };
        let env = app_env(&spec, None, Path::new("/i/home"), Path::new("/i/tmp"));
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert!(!env.contains_key("PORT"));
    }

    #[test]
    fn exit_statuses_read_like_sentences() {
        let table = [
            (Some(ExitStatus::from_raw(0)), "exited with code 0"),
            (Some(ExitStatus::from_raw(3 << 8)), "exited with code 3"),
            (Some(ExitStatus::from_raw(9)), "killed by SIGKILL"),
            (Some(ExitStatus::from_raw(15)), "killed by SIGTERM"),
            (None, "exited (status unknown)"),
        ];
        for (status, expected) in table {
            assert_eq!(describe(status), expected);
        }
    }
}
