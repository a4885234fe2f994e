//! The test step: the app's test commands, run inside the exact artifact that will deploy.
//!
//! Tests run against the unpacked, read-only artifact, not the source tree, so what passed is
//! byte for byte what ships. The commands get a clean environment: the app's env, a `PATH`, a
//! `LANG`, and `HOME`, `TMPDIR` and `DROVER_REPORTS` pointing into a work directory that belongs
//! to this run; nothing else of the server's environment (its secrets, its tokens) is visible.
//!
//! The step passes when every command exits 0 **and** the JUnit reports found under
//! `$DROVER_REPORTS` (if any) have no failures or errors, and all of them could be read. A test
//! runner that exits 0 although its report lists failures (some do when told to ignore
//! failures, or when a wrapper script swallows the exit code) still fails the step: the report
//! is what users read, so it must agree with the verdict.

use crate::command::{self, Ending, Invocation};
use crate::error::{io_error, PipelineError};
use crate::junit::TestReport;
use crate::reports;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a stopped command's process group has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The `PATH` when neither the app's env nor the server has one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What to run, where, and for how long.
#[derive(Debug, Clone)]
pub struct TestStep {
    /// Run in order with `sh -c`, each in its own process group; the first that fails ends the
    /// step. These are the app author's own commands: nothing else (a branch name, a commit
    /// message) may ever be put into them.
    pub commands: Vec<String>,
    /// The app's environment. `PATH` and `LANG` from here win over the server's; `HOME`,
    /// `TMPDIR` and `DROVER_REPORTS` are always set by the step.
    pub env: BTreeMap<String, String>,
    /// The unpacked artifact, read-only; the commands' working directory. It is never written.
    pub artifact_dir: PathBuf,
    /// A fresh writable directory that belongs to this run. `reports/` (`$DROVER_REPORTS`),
    /// `tmp/` (`$TMPDIR`) and `home/` (`$HOME`) are created inside it. The caller removes it.
    pub work_dir: PathBuf,
    /// For the whole step, all commands together.
    pub timeout: Duration,
    /// The app's own user (this process must be root), or `None` to run the commands as this
    /// process's user. `work_dir` is handed to the user while the commands run and taken back
    /// before the reports in it are read.
    pub user: Option<model::AppUser>,
}

/// How a test step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestOutcome {
    pub exit: ExitSummary,
    /// Every `*.xml` file under `reports/`, recursively, merged in path order; `None` if there
    /// were none (or none could be read). Collected however the commands ended, so a timed-out
    /// run still shows the results written before it was stopped.
    pub report: Option<TestReport>,
    /// The files merged into `report`, relative to `work_dir/reports`, in path order.
    pub report_files: Vec<PathBuf>,
    /// Why some `*.xml` files could not be used (malformed XML with its position, a symbolic
    /// link, not UTF-8, too large), each naming the file. Any of these fails the step.
    pub report_errors: Vec<String>,
}

impl TestOutcome {
    /// Whether the step passed: every command exited 0, no report file was unusable, and the
    /// report (if there is one) has no failures or errors.
    ///
    /// Note that a report with failures fails the step even if every command exited 0.
    pub fn passed(&self) -> bool {
        self.exit == ExitSummary::Succeeded
            && self.report_errors.is_empty()
            && self.report.as_ref().is_none_or(TestReport::passed)
    }
}

/// How the commands of a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitSummary {
    /// Every command exited 0.
    Succeeded,
    /// Command `command_idx` (0-based) did not exit 0; the commands after it did not run.
    Failed { command_idx: usize, command: String, status: CommandStatus },
    /// The step's timeout passed while command `command_idx` ran (or before it started); it was
    /// stopped and the rest did not run.
    TimedOut { command_idx: usize, command: String },
    /// The cancel flag was set while command `command_idx` ran (or before it started); it was
    /// stopped and the rest did not run.
    Cancelled { command_idx: usize, command: String },
}

impl fmt::Display for ExitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeeded => f.write_str("every test command succeeded"),
            Self::Failed { command, status, .. } => write!(f, "test command {command:?} failed: {status}"),
            Self::TimedOut { command, .. } => write!(f, "test command {command:?} timed out"),
            Self::Cancelled { command, .. } => write!(f, "test command {command:?} was cancelled"),
        }
    }
}

/// How a command that failed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// It exited with this code (not 0).
    Code(i32),
    /// It was killed by this signal, and not by us.
    Signal(i32),
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(name) => write!(f, "killed by signal {signal} ({name})"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
        }
    }
}

/// Runs the step's commands in order inside `step.artifact_dir`, streaming every line they print
/// (stdout and stderr merged, in order) to `on_line`, then reads the JUnit reports they left in
/// `$DROVER_REPORTS`.
///
/// Stops at the first command that fails. When `step.timeout` passes or `cancel` becomes true,
/// the running command's process group gets SIGTERM, then SIGKILL 5 s later. Processes a command
/// leaves running in its group are killed when its shell exits. Blocks until all of that is
/// done: call it from a blocking task.
///
/// Each command's process group is led by its shell; `on_spawn` gets the shell's pid (the
/// group's id) as soon as it started, so a caller can record the group and kill it should the
/// caller die. The group is killed before the next command starts and before this returns.
///
/// Errors are for a step that could not be run at all (the artifact directory is missing, the
/// work directory cannot be created, `sh` cannot be started). Commands that fail and reports
/// that are malformed are part of the [`TestOutcome`].
pub fn run_tests(
    step: &TestStep,
    on_line: &mut dyn FnMut(&str),
    on_spawn: &mut dyn FnMut(u32),
    cancel: &AtomicBool,
) -> Result<TestOutcome, PipelineError> {
    run_with_grace(step, on_line, on_spawn, cancel, STOP_GRACE)
}

pub(crate) fn run_with_grace(
    step: &TestStep,
    on_line: &mut dyn FnMut(&str),
    on_spawn: &mut dyn FnMut(u32),
    cancel: &AtomicBool,
    grace: Duration,
) -> Result<TestOutcome, PipelineError> {
    let started = Instant::now();
    let artifact_dir = std::path::absolute(&step.artifact_dir).map_err(io_error("resolve", &step.artifact_dir))?;
    let metadata = fs::metadata(&artifact_dir).map_err(io_error("open artifact directory", &artifact_dir))?;
    if !metadata.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
        return Err(io_error("open artifact directory", &artifact_dir)(source));
    }
    let work_dir = std::path::absolute(&step.work_dir).map_err(io_error("resolve", &step.work_dir))?;
    let reports_dir = work_dir.join("reports");
    let tmp_dir = work_dir.join("tmp");
    let home_dir = work_dir.join("home");
    for dir in [&reports_dir, &tmp_dir, &home_dir] {
        fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    }
    let env = environment(&step.env, &reports_dir, &tmp_dir, &home_dir);
    if let Some(user) = step.user {
        sandbox::hand_over(&work_dir, user).map_err(io_error("hand to the app user", &work_dir))?;
    }

    // No deadline if the timeout is too large to add to a clock reading.
    let deadline = started.checked_add(step.timeout);
    let mut exit = ExitSummary::Succeeded;
    for (command_idx, command) in step.commands.iter().enumerate() {
        let command = command.clone();
        if cancel.load(Ordering::Relaxed) {
            exit = ExitSummary::Cancelled { command_idx, command };
            break;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            exit = ExitSummary::TimedOut { command_idx, command };
            break;
        }
        let invocation =
            Invocation { command: &command, cwd: &artifact_dir, env: &env, deadline, grace, user: step.user };
        let status = match command::run(&invocation, on_line, on_spawn, cancel)? {
            Ending::Exited(status) => status,
            Ending::TimedOut => {
                exit = ExitSummary::TimedOut { command_idx, command };
                break;
            }
            Ending::Cancelled => {
                exit = ExitSummary::Cancelled { command_idx, command };
                break;
            }
        };
        if status.success() {
            continue;
        }
        let status = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(code), _) => CommandStatus::Code(code),
            (None, Some(signal)) => CommandStatus::Signal(signal),
            // Neither an exit code nor a signal: only stopped or continued children have
            // neither, and `wait` does not report those.
            (None, None) => CommandStatus::Code(-1),
        };
        exit = ExitSummary::Failed { command_idx, command, status };
        break;
    }

    if step.user.is_some() {
        // Before reading: a process of the user still running could otherwise swap a report
        // for a link to one of root's files between the check and the read.
        sandbox::take_back(&work_dir).map_err(io_error("take back from the app user", &work_dir))?;
    }
    let found = reports::collect(&reports_dir);
    tracing::debug!(
        exit = %exit,
        n_report_files = found.files.len(),
        n_report_errors = found.problems.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "test step finished"
    );
    Ok(TestOutcome { exit, report: found.report, report_files: found.files, report_errors: found.problems })
}

/// The commands' whole environment: the app's, plus `PATH` and `LANG` from the server when the
/// app has none, plus the step's own directories.
fn environment(
    app_env: &BTreeMap<String, String>,
    reports_dir: &Path,
    tmp_dir: &Path,
    home_dir: &Path,
) -> BTreeMap<String, OsString> {
    let mut env: BTreeMap<String, OsString> =
        app_env.iter().map(|(key, value)| (key.clone(), OsString::from(value))).collect();
    if !env.contains_key("PATH") {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
        env.insert("PATH".to_owned(), path);
    }
    if !env.contains_key("LANG") {
        if let Some(lang) = std::env::var_os("LANG") {
            env.insert("LANG".to_owned(), lang);
        }
    }
    env.insert("HOME".to_owned(), home_dir.into());
    env.insert("TMPDIR".to_owned(), tmp_dir.into());
    env.insert("DROVER_REPORTS".to_owned(), reports_dir.into());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let artifact_dir = dir.path().join("artifact");
        fs::create_dir(&artifact_dir).unwrap();
        let step = TestStep {
            // Ignored signals stay ignored in children, so neither the shell nor `sleep` stops
            // on SIGTERM; `ready` says the trap is in place.
            commands: vec!["trap '' TERM; echo ready; sleep 600; echo not reached".to_owned()],
            env: BTreeMap::new(),
            artifact_dir,
            work_dir: dir.path().join("work"),
            timeout: Duration::from_secs(3600),
            user: None,
        };
        let cancel = AtomicBool::new(false);
        let mut lines = Vec::new();
        let outcome = run_with_grace(
            &step,
            &mut |line| {
                if line == "ready" {
                    cancel.store(true, Ordering::Relaxed);
                }
                lines.push(line.to_owned());
            },
            &mut |_| {},
            &cancel,
            Duration::from_millis(50),
        )
        .unwrap();
        assert_eq!(lines, ["ready"]);
        assert_eq!(outcome.exit, ExitSummary::Cancelled { command_idx: 0, command: step.commands[0].clone() });
        assert!(!outcome.passed());
    }

    #[test]
    fn statuses_read_well() {
        let table = [
            (CommandStatus::Code(3), "exit code 3"),
            (CommandStatus::Signal(9), "killed by signal 9 (SIGKILL)"),
            (CommandStatus::Signal(200), "killed by signal 200"),
        ];
        for (status, expected) in table {
            assert_eq!(status.to_string(), expected);
        }
        let failed =
            ExitSummary::Failed { command_idx: 1, command: "make test".to_owned(), status: CommandStatus::Code(2) };
        assert_eq!(failed.to_string(), r#"test command "make test" failed: exit code 2"#);
        let json = serde_json::to_string(&failed).unwrap();
        assert_eq!(json, r#"{"kind":"failed","command_idx":1,"command":"make test","status":{"code":2}}"#);
        assert_eq!(serde_json::from_str::<ExitSummary>(&json).unwrap(), failed);
    }
}
