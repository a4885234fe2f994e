//! Running one build command with `sh -c`, streaming its output line by line.
//!
//! stdout and stderr share one pipe, so lines arrive in the order the command wrote them and a
//! single reader on the calling thread can hand them to a callback that need not be `Send`.
//!
//! The command runs in its own process group, which is killed once `sh` exits. Otherwise a
//! leftover background process (`server &`, a build daemon) would hold the pipe open, so the
//! build would never finish, and would outlive the build directory it runs in.

use crate::error::ArtifactError;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, PipeReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Variables passed through from the server's own environment, so tools are found and
/// behave; everything else a build sees comes from the app's env. `HOME` is not among them: a
/// command gets an empty home of its own, so the operator's `~/.gitconfig`, `~/.npmrc` or
/// `pip.conf` (and credentials there) neither reach a build nor change what it makes behind
/// the cache key's back.
const SERVER_ENV: [&str; 2] = ["PATH", "LANG"];

/// Longer lines are handed over in pieces of this many bytes, so a command printing megabytes
/// without a newline cannot make us buffer all of it.
const MAX_LINE: u64 = 64 * 1024;

/// Runs `command` in `cwd` with stdin from `/dev/null`, calling `on_line` with each line of its
/// output (without the line ending; invalid UTF-8 replaced). `env` overrides [`SERVER_ENV`].
/// `on_spawn` gets the shell's pid, which is also its process group's id, as soon as it started;
/// the group is killed before this returns.
pub(crate) fn run(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    on_line: &mut dyn FnMut(&str),
    on_spawn: &mut dyn FnMut(u32),
) -> Result<(), ArtifactError> {
    let spawn_error = |source| ArtifactError::Spawn { command: command.to_owned(), source };
    let (reader, writer) = io::pipe().map_err(spawn_error)?;
    // Removed when this returns, once the command's process group is gone.
    let home = tempfile::Builder::new().prefix("drover-build-home-").tempdir().map_err(spawn_error)?;
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
    let mut child = sh.spawn().map_err(spawn_error)?;
    // `sh` still owns our copies of the pipe's write end; the reader sees end-of-file only
    // once they are closed and every process holding the other copies has exited.
    drop(sh);
    let group = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in pid_t"));
    // Not reaped yet, so the pid (and the group id) still names this command.
    on_spawn(child.id());

    let (status, read) = std::thread::scope(|scope| {
        let waiter = scope.spawn(move || {
            let status = child.wait();
            // The group outlives `sh` only through leftover background processes, and its id
            // stays theirs while any of them lives. If none is left this finds no group; the
            // id being taken by a new group leader in the instant between is not guarded.
            let _ = killpg(group, Signal::SIGKILL);
            status
        });
        let read = stream_lines(reader, on_line);
        if read.is_err() {
            // Our end of the pipe failed; stop the command rather than wait for it blind.
            let _ = killpg(group, Signal::SIGKILL);
        }
        (waiter.join().expect("waiting for a child does not panic"), read)
    });
    let status = status.map_err(spawn_error)?;
    read.map_err(spawn_error)?;
    if !status.success() {
        return Err(ArtifactError::BuildFailed { command: command.to_owned(), status });
    }
    Ok(())
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
