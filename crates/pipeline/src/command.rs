//! Running one test command with `sh -c` under a deadline and a cancel flag, streaming its
//! output line by line.
//!
//! stdout and stderr share one pipe, so lines arrive in the order the command wrote them, and
//! the calling thread reads it itself, so the callback need not be `Send`. The same thread
//! watches the clock and the cancel flag between reads (a `poll` with a short timeout), so no
//! helper thread is needed and none can be left behind.
//!
//! The command runs in its own process group. Its leader (`sh`) is not reaped until the group
//! has been killed: while the leader is a zombie its pid, and so the group id, cannot be reused,
//! so `killpg` can never hit an unrelated group. Once `sh` exits, whatever is left in the group
//! (a `server &` a test forgot to stop) is killed at once; otherwise it would hold the output
//! pipe open and the step would never end. Stopping on timeout or cancel is SIGTERM to the
//! group, a grace period for the leader to exit, then SIGKILL.

use crate::error::PipelineError;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, PipeReader, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the clock, the cancel flag and the leader are checked while the command is quiet.
const TICK: Duration = Duration::from_millis(10);

/// How long output may stay open after the group is gone. Only a process that left the group
/// (`setsid`, a double-forking daemon) can still hold the pipe; we stop reading rather than
/// wait for it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Longer lines are handed over in pieces of this many bytes, so a command printing megabytes
/// without a newline cannot make us buffer all of it.
const MAX_LINE: usize = 64 * 1024;

/// How a command ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The command exited by itself (or was killed by someone else).
    Exited(ExitStatus),
    /// The deadline passed; the command was stopped.
    TimedOut,
    /// The cancel flag was set; the command was stopped.
    Cancelled,
}

/// What a command runs with.
pub(crate) struct Invocation<'a> {
    pub command: &'a str,
    pub cwd: &'a Path,
    /// The whole environment: nothing of the server's is inherited.
    pub env: &'a BTreeMap<String, OsString>,
    /// `None` for no deadline.
    pub deadline: Option<Instant>,
    /// Between SIGTERM and SIGKILL when stopping.
    pub grace: Duration,
    /// Who runs the command; `None` is this process's user.
    pub user: Option<model::AppUser>,
}

/// Runs `invocation.command` with `sh -c` and stdin from `/dev/null`, calling `on_line` with each
/// line of its output (without the line ending; invalid UTF-8 replaced). `on_spawn` gets the
/// shell's pid, which is also its process group's id, as soon as it started; the group is killed
/// and its leader reaped before this returns.
pub(crate) fn run(
    invocation: &Invocation<'_>,
    on_line: &mut dyn FnMut(&str),
    on_spawn: &mut dyn FnMut(u32),
    cancel: &AtomicBool,
) -> Result<Ending, PipelineError> {
    let command = invocation.command;
    let error =
        |action: &'static str| move |source| PipelineError::Command { action, command: command.to_owned(), source };
    let (reader, writer) = io::pipe().map_err(error("create a pipe for"))?;
    // An absolute path: the app's env may set a PATH in which `sh` is not found.
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(command)
        .current_dir(invocation.cwd)
        .env_clear()
        .envs(invocation.env)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(error("create a pipe for"))?)
        .stderr(writer)
        .process_group(0);
    if let Some(user) = invocation.user {
        // SAFETY: become_user makes only raw system calls on a copied value.
        unsafe { std::os::unix::process::CommandExt::pre_exec(&mut sh, move || sandbox::become_user(user)) };
    }
    let child = sh.spawn().map_err(error("start"))?;
    // `sh` still owns our copies of the pipe's write end; the reader sees end-of-file only once
    // they are closed and every process holding the other copies has exited.
    drop(sh);
    let mut group = Group::new(child);
    on_spawn(group.child.id());
    tracing::debug!(pid = group.leader.as_raw(), command, "test command started");
    let ending = watch(&mut group, reader, invocation, on_line, cancel).map_err(error("watch"))?;
    let status = group.reap().map_err(error("wait for"))?;
    tracing::debug!(pid = group.leader.as_raw(), command, ?ending, %status, "test command ended");
    Ok(match ending {
        Some(ending) => ending,
        None => Ending::Exited(status),
    })
}

/// The running command's process group. Dropping it kills the group and reaps the leader, so no
/// early return or panic (in `on_line`, say) can leave processes behind.
struct Group {
    child: Child,
    leader: Pid,
    reaped: bool,
}

impl Group {
    fn new(child: Child) -> Self {
        let leader = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in pid_t"));
        Self { child, leader, reaped: false }
    }

    /// Signals every process in the group. The group exists while the unreaped leader does.
    fn signal(&self, signal: Signal) {
        if let Err(errno) = killpg(self.leader, signal) {
            tracing::debug!(pid = self.leader.as_raw(), %errno, ?signal, "cannot signal test command's group");
        }
    }

    /// Whether the leader has exited, without reaping it.
    fn leader_exited(&self) -> bool {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        loop {
            match waitid(Id::Pid(self.leader), flags) {
                Ok(WaitStatus::StillAlive) => return false,
                Err(Errno::EINTR) => continue,
                // Exited, or an error that means it cannot be waited for any more; `reap` will
                // say which.
                Ok(_) | Err(_) => return true,
            }
        }
    }

    /// Kills what is left of the group and reaps the leader.
    fn reap(&mut self) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGKILL);
        self.reaped = true;
        self.child.wait()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Streams the output until the leader has exited and the output is closed (or has stayed open
/// for [`DRAIN_TIMEOUT`] after that), stopping the group on timeout or cancel. Returns why the
/// command was stopped, or `None` if it exited by itself.
fn watch(
    group: &mut Group,
    mut reader: PipeReader,
    invocation: &Invocation<'_>,
    on_line: &mut dyn FnMut(&str),
    cancel: &AtomicBool,
) -> io::Result<Option<Ending>> {
    let mut lines = LineBuffer::default();
    let mut buf = vec![0; 64 * 1024];
    let mut output_open = true;
    let mut leader_exited_at: Option<Instant> = None;
    let mut stopping: Option<(Ending, Instant)> = None;
    let mut killed = false;
    loop {
        if output_open {
            let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::try_from(TICK).expect("the tick fits a poll timeout")) {
                Ok(0) | Err(Errno::EINTR) => {}
                Ok(_) => match reader.read(&mut buf) {
                    Ok(0) => output_open = false,
                    Ok(n) => lines.push(&buf[..n], on_line),
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                },
                Err(errno) => return Err(errno.into()),
            }
        } else if leader_exited_at.is_none() {
            // The command closed its output but runs on: only the clock and the flag can change.
            std::thread::sleep(TICK);
        }

        let now = Instant::now();
        if leader_exited_at.is_none() && group.leader_exited() {
            // Whatever is left of the group is not needed and would hold the output open.
            group.signal(Signal::SIGKILL);
            leader_exited_at = Some(now);
        }
        match leader_exited_at {
            Some(_) if !output_open => break,
            Some(exited_at) => {
                if now.duration_since(exited_at) >= DRAIN_TIMEOUT {
                    tracing::warn!(
                        pid = group.leader.as_raw(),
                        command = invocation.command,
                        "a process that left the test command's process group still holds its output; not reading it"
                    );
                    break;
                }
            }
            None => match &stopping {
                None => {
                    let ending = if cancel.load(Ordering::Relaxed) {
                        Some(Ending::Cancelled)
                    } else if invocation.deadline.is_some_and(|deadline| now >= deadline) {
                        Some(Ending::TimedOut)
                    } else {
                        None
                    };
                    if let Some(ending) = ending {
                        group.signal(Signal::SIGTERM);
                        stopping = Some((ending, now));
                    }
                }
                Some((_, since)) => {
                    if !killed && now.duration_since(*since) >= invocation.grace {
                        group.signal(Signal::SIGKILL);
                        killed = true;
                    }
                }
            },
        }
    }
    lines.finish(on_line);
    Ok(stopping.map(|(ending, _)| ending))
}

/// Splits a byte stream into lines.
#[derive(Default)]
struct LineBuffer {
    partial: Vec<u8>,
}

impl LineBuffer {
    /// Hands every complete line in `partial + bytes` to `on_line`, keeping the rest. A line
    /// longer than [`MAX_LINE`] is handed over in pieces of that many bytes.
    fn push(&mut self, bytes: &[u8], on_line: &mut dyn FnMut(&str)) {
        let mut segments = bytes.split(|&byte| byte == b'\n').peekable();
        while let Some(segment) = segments.next() {
            self.partial.extend_from_slice(segment);
            while self.partial.len() > MAX_LINE {
                let rest = self.partial.split_off(MAX_LINE);
                emit_line(&self.partial, on_line);
                self.partial = rest;
            }
            // Every segment but the last ended in a newline.
            if segments.peek().is_some() {
                self.emit(on_line);
            }
        }
    }

    /// Hands over the last line if the output did not end with a newline.
    fn finish(&mut self, on_line: &mut dyn FnMut(&str)) {
        if !self.partial.is_empty() {
            self.emit(on_line);
        }
    }

    fn emit(&mut self, on_line: &mut dyn FnMut(&str)) {
        if self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        emit_line(&self.partial, on_line);
        self.partial.clear();
    }
}

fn emit_line(line: &[u8], on_line: &mut dyn FnMut(&str)) {
    on_line(&String::from_utf8_lossy(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let table: [(&[&[u8]], &[&str]); 7] = [
            (&[b"a\nb\n"], &["a", "b"]),
            (&[b"a", b"b\nc"], &["ab", "c"]),
            (&[b"crlf\r\n", b"\r\n"], &["crlf", ""]),
            (&[b"\n\n"], &["", ""]),
            (&[b""], &[]),
            (&[b"caf\xc3", b"\xa9\n"], &["café"]),
            (&[b"bad \xff\n"], &["bad \u{fffd}"]),
        ];
        for (chunks, expected) in table {
            let mut lines = Vec::new();
            let mut buffer = LineBuffer::default();
            for chunk in chunks {
                buffer.push(chunk, &mut |line| lines.push(line.to_owned()));
            }
            buffer.finish(&mut |line| lines.push(line.to_owned()));
            assert_eq!(lines, expected, "{chunks:?}");
        }
    }

    #[test]
    fn long_lines_come_in_pieces() {
        let mut lines = Vec::new();
        let mut buffer = LineBuffer::default();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        for chunk in long.chunks(1000) {
            buffer.push(chunk, &mut |line| lines.push(line.len()));
        }
        buffer.push(b"\nshort\n", &mut |line| lines.push(line.len()));
        // In one chunk, and exactly as long as the limit.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        exact.extend_from_slice(&vec![b'z'; MAX_LINE * 3]);
        buffer.push(&exact, &mut |line| lines.push(line.len()));
        buffer.finish(&mut |line| lines.push(line.len()));
        assert_eq!(lines, [MAX_LINE, MAX_LINE, 10, 5, MAX_LINE, MAX_LINE, MAX_LINE, MAX_LINE]);
    }
}
