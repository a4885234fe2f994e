//! Running one build command with `sh -c`, streaming its output line by line.
//!
//! stdout and stderr share one pipe, so lines arrive in the order the command wrote them and a
//! single reader on the calling thread can hand them to a callback that need not be `Send`.
//!
//! The command runs in its own process group, which is killed once `sh` exits. Otherwise a
//! leftover background process (`server &`, a build daemon) would hold the pipe open, so the
//! build would never finish, and would outlive the build directory it runs in.
//!
//! With an app user ([`Steps::user`]), the command runs as that user, in a directory handed to
//! it for the command's time only: taken back before this returns, so whatever Drover does to
//! it afterwards (copy layers in, pack it) no process of the user can interfere with.

use crate::error::{io_error, ArtifactError};
use model::AppUser;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, PipeReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a running command's end, the cancel flag and the clock are looked at.
const TICK: Duration = Duration::from_millis(10);

/// How long a stopped command's process group has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a build's commands are run and stopped: as whom, for how long, until when.
#[derive(Debug, Clone, Copy, Default)]
pub struct Control<'a> {
    /// The app's own user (this process must be root); `None` runs the commands as this
    /// process's user.
    pub user: Option<AppUser>,
    /// All the build's commands together; the one running when it passes is stopped (SIGTERM to
    /// its process group, SIGKILL 5 s later) and the build fails saying so.
    pub timeout: Option<Duration>,
    /// Set by someone else to stop the build the same way.
    pub cancel: Option<&'a AtomicBool>,
}

/// Variables passed through from the server's own environment, so tools are found and
/// behave; everything else a build sees comes from the app's env. `HOME` is not among them: a
/// command gets an empty home of its own, so the operator's `~/.gitconfig`, `~/.npmrc` or
/// `pip.conf` (and credentials there) neither reach a build nor change what it makes behind
/// the cache key's back.
const SERVER_ENV: [&str; 2] = ["PATH", "LANG"];

/// Longer lines are handed over in pieces of this many bytes, so a command printing megabytes
/// without a newline cannot make us buffer all of it.
const MAX_LINE: u64 = 64 * 1024;

/// How a build's commands run: with what environment, as whom, and who hears of them.
pub(crate) struct Steps<'a> {
    /// Overrides [`SERVER_ENV`].
    pub env: &'a BTreeMap<String, String>,
    pub user: Option<AppUser>,
    pub limits: Limits<'a>,
    /// Gets each line of output (without the line ending; invalid UTF-8 replaced).
    pub on_line: &'a mut dyn FnMut(&str),
    /// Gets the shell's pid, which is also its process group's id, as soon as it started.
    pub on_spawn: &'a mut dyn FnMut(u32),
}

impl Steps<'_> {
    /// Runs `command` in `cwd` (a directory this process made) with stdin from `/dev/null`. The
    /// command's process group is killed, and `cwd` is this process's again, before this
    /// returns.
    pub(crate) fn run(&mut self, command: &str, cwd: &Path) -> Result<(), ArtifactError> {
        let Some(user) = self.user else {
            return self.run_as(command, cwd, None);
        };
        sandbox::hand_over(cwd, user).map_err(io_error("hand the build directory to the app user", cwd))?;
        let ran = self.run_as(command, cwd, Some(user));
        // Taken back even after a failure: the caller still removes (and may read) the tree.
        sandbox::take_back(cwd).map_err(io_error("take the build directory back from the app user", cwd))?;
        ran
    }

    fn run_as(&mut self, command: &str, cwd: &Path, user: Option<AppUser>) -> Result<(), ArtifactError> {
        let stopped = |stop| match stop {
            Stop::Cancelled => ArtifactError::Cancelled { command: command.to_owned() },
            Stop::TimedOut(timeout) => ArtifactError::TimedOut { command: command.to_owned(), timeout },
        };
        // Not started at all once the build is over.
        if let Some(stop) = self.limits.stop() {
            return Err(stopped(stop));
        }
        let (status, stop) = run(command, cwd, self.env, user, self.on_line, self.on_spawn, self.limits)?;
        match stop {
            Some(stop) => Err(stopped(stop)),
            None if status.success() => Ok(()),
            None => Err(ArtifactError::BuildFailed { command: command.to_owned(), status }),
        }
    }
}

/// When a build must stop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits<'a> {
    /// When the build's time is up, and its whole timeout.
    pub deadline: Option<(Instant, Duration)>,
    pub cancel: Option<&'a AtomicBool>,
}

impl Limits<'_> {
    /// Whether the build must stop now, and why.
    fn stop(&self) -> Option<Stop> {
        if self.cancel.is_some_and(|cancel| cancel.load(Ordering::Relaxed)) {
            return Some(Stop::Cancelled);
        }
        match self.deadline {
            Some((deadline, timeout)) if Instant::now() >= deadline => Some(Stop::TimedOut(timeout)),
            _ => None,
        }
    }
}

/// Why a command was stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Cancelled,
    TimedOut(Duration),
}

/// Runs `command` and returns how it exited, and why it was stopped if `limits` said so while
/// it ran.
fn run(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    user: Option<AppUser>,
    on_line: &mut dyn FnMut(&str),
    on_spawn: &mut dyn FnMut(u32),
    limits: Limits<'_>,
) -> Result<(ExitStatus, Option<Stop>), ArtifactError> {
    let spawn_error = |source| ArtifactError::Spawn { command: command.to_owned(), source };
    let (reader, writer) = io::pipe().map_err(spawn_error)?;
    // Removed when this returns, once the command's process group is gone.
    let home = tempfile::Builder::new().prefix("drover-build-home-").tempdir().map_err(spawn_error)?;
    if let Some(user) = user {
        // Empty and just made: nobody can have put anything in it to follow.
        sandbox::hand_over(home.path(), user).map_err(spawn_error)?;
    }
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(spawn_error)?)
        .stderr(writer)
        .process_group(0);
    for key in SERVER_ENV {
        if let Some(value) = std::env::var_os(key) {
            sh.env(key, value);
        }
    }
    sh.envs(env);
    if let Some(user) = user {
        // SAFETY: become_user makes only raw system calls on a copied value.
        unsafe { sh.pre_exec(move || sandbox::become_user(user)) };
    }
    let mut child = sh.spawn().map_err(spawn_error)?;
    // `sh` still owns our copies of the pipe's write end; the reader sees end-of-file only
    // once they are closed and every process holding the other copies has exited.
    drop(sh);
    let group = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in pid_t"));
    // Not reaped yet, so the pid (and the group id) still names this command.
    on_spawn(child.id());

    let (status, read) = std::thread::scope(|scope| {
        let waiter = scope.spawn(move || {
            let ended = watch(&mut child, group, limits);
            // The group outlives `sh` only through leftover background processes, and its id
            // stays theirs while any of them lives. If none is left this finds no group; the
            // id being taken by a new group leader in the instant between is not guarded.
            let _ = killpg(group, Signal::SIGKILL);
            ended
        });
        let read = stream_lines(reader, on_line);
        if read.is_err() {
            // Our end of the pipe failed; stop the command rather than wait for it blind.
            let _ = killpg(group, Signal::SIGKILL);
        }
        (waiter.join().expect("waiting for a child does not panic"), read)
    });
    let ended = status.map_err(spawn_error)?;
    read.map_err(spawn_error)?;
    Ok(ended)
}

/// Waits for `child` to exit, stopping its group (SIGTERM, then SIGKILL after [`STOP_GRACE`])
/// as soon as `limits` say so.
fn watch(child: &mut Child, group: Pid, limits: Limits<'_>) -> io::Result<(ExitStatus, Option<Stop>)> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, None));
        }
        if let Some(why) = limits.stop() {
            let _ = killpg(group, Signal::SIGTERM);
            let killed_at = Instant::now() + STOP_GRACE;
            while child.try_wait()?.is_none() && Instant::now() < killed_at {
                std::thread::sleep(TICK);
            }
            let _ = killpg(group, Signal::SIGKILL);
            return Ok((child.wait()?, Some(why)));
        }
        std::thread::sleep(TICK);
    }
}

fn stream_lines(reader: PipeReader, on_line: &mut dyn FnMut(&str)) -> io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        on_line(&String::from_utf8_lossy(&line));
    }
}
