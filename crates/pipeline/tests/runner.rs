//! The test step through its public API, with a real `sh`, real processes and real files.
//!
//! Each test gets its own temporary artifact and work directory. Nothing waits by sleeping:
//! cancellation is triggered by a line the command prints, and checks that a process is gone
//! poll `/proc` until a deadline that only turns a hang into a clear failure.

use pipeline::{run_tests, CommandStatus, ExitSummary, PipelineError, TestOutcome, TestStep};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// An artifact directory and a (not yet created) work directory.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("artifact")).unwrap();
        Self { dir }
    }

    fn artifact(&self) -> PathBuf {
        self.dir.path().join("artifact")
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn step(&self, commands: &[&str]) -> TestStep {
        TestStep {
            commands: commands.iter().map(|command| command.to_string()).collect(),
            env: BTreeMap::from([("APP_VAR".to_owned(), "from the app; $(not run)".to_owned())]),
            artifact_dir: self.artifact(),
            work_dir: self.work(),
            timeout: Duration::from_secs(600),
            user: None,
        }
    }

    /// Runs `step`, returning its outcome and every line it printed.
    fn run(&self, step: &TestStep) -> (TestOutcome, Vec<String>) {
        let mut lines = Vec::new();
        let outcome =
            run_tests(step, &mut |line| lines.push(line.to_owned()), &mut |_| {}, &AtomicBool::new(false)).unwrap();
        (outcome, lines)
    }

    /// The pid a command wrote to `$TMPDIR/NAME`.
    fn pid(&self, name: &str) -> u32 {
        let path = self.work().join("tmp").join(name);
        let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        text.trim().parse().unwrap()
    }
}

/// Whether process `pid` has exited (a zombie waiting for its parent counts as exited).
fn is_gone(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('Z' | 'X'))
}

/// Polls `condition` until it holds, failing if it has not by a generous deadline.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn command(step: &TestStep, command_idx: usize) -> String {
    step.commands[command_idx].clone()
}

const PASSING_REPORT: &str = r#"<testsuite name="unit"><testcase classname="app" name="works" time="0.5"/><testcase classname="app" name="later" time="1"><skipped message="todo"/></testcase></testsuite>"#;
const FAILING_REPORT: &str = r#"<testsuite name="unit"><testcase classname="app" name="works"/><testcase classname="app" name="breaks"><failure message="assert 1 == 2">trace</failure></testcase></testsuite>"#;

/// A command that writes `xml` to `$DROVER_REPORTS/relative`.
fn write_report(relative: &str, xml: &str) -> String {
    format!("mkdir -p \"$(dirname \"$DROVER_REPORTS/{relative}\")\" && cat > \"$DROVER_REPORTS/{relative}\" <<'EOF'\n{xml}\nEOF")
}

#[test]
fn output_lines_arrive_in_order() {
    let fixture = Fixture::new();
    let step = fixture.step(&[
        "echo one; echo two >&2; echo three",
        "printf 'no newline'",
        // stdin is /dev/null: `cat` ends at once instead of waiting for input.
        "cat; echo 'after cat'",
        "printf 'crlf\\r\\n\\n'",
    ]);
    let (outcome, lines) = fixture.run(&step);
    assert_eq!(lines, ["one", "two", "three", "no newline", "after cat", "crlf", ""]);
    assert_eq!(outcome.exit, ExitSummary::Succeeded);
    assert_eq!(outcome.report, None);
    assert!(outcome.report_files.is_empty() && outcome.report_errors.is_empty());
    assert!(outcome.passed());
}

#[test]
fn the_environment_is_exactly_the_apps_plus_the_steps() {
    let fixture = Fixture::new();
    let mut step = fixture.step(&["env"]);
    step.env.insert("PATH".to_owned(), "/usr/bin:/bin".to_owned());
    let (outcome, lines) = fixture.run(&step);
    assert_eq!(outcome.exit, ExitSummary::Succeeded);
    let env: BTreeMap<&str, &str> = lines.iter().filter_map(|line| line.split_once('=')).collect();

    let work = std::path::absolute(fixture.work()).unwrap();
    let path_of = |path: PathBuf| path.to_str().unwrap().to_owned();
    let mut expected = BTreeMap::from([
        ("APP_VAR", "from the app; $(not run)".to_owned()),
        ("PATH", "/usr/bin:/bin".to_owned()),
        ("HOME", path_of(work.join("home"))),
        ("TMPDIR", path_of(work.join("tmp"))),
        ("DROVER_REPORTS", path_of(work.join("reports"))),
        // Set by the shell itself.
        ("PWD", path_of(std::path::absolute(fixture.artifact()).unwrap())),
    ]);
    let server_lang = std::env::var("LANG").ok();
    if let Some(lang) = &server_lang {
        expected.insert("LANG", lang.clone());
    }
    // A shell other than dash may add a few of its own.
    let shell_own = ["SHLVL", "_", "OLDPWD"];
    let actual: BTreeMap<&str, String> = env
        .iter()
        .filter(|(name, _)| !shell_own.contains(name))
        .map(|(name, value)| (*name, value.to_string()))
        .collect();
    assert_eq!(actual, expected);

    // The test process has variables of its own (cargo's, at least), and none of them leaked.
    let allowed: BTreeSet<&str> = expected.keys().copied().chain(shell_own).collect();
    let own: Vec<String> =
        std::env::vars().map(|(name, _)| name).filter(|name| !allowed.contains(name.as_str())).collect();
    assert!(!own.is_empty(), "the test process should have variables the step must not see");
    for name in &own {
        assert!(!env.contains_key(name.as_str()), "{name} leaked into the step");
    }

    // Without a PATH of its own, the app gets the server's.
    let step = fixture.step(&["echo \"$PATH\""]);
    let (_, lines) = fixture.run(&step);
    assert_eq!(lines, [std::env::var("PATH").unwrap()]);

    // The app's LANG wins, and HOME, TMPDIR and DROVER_REPORTS cannot be overridden.
    let mut step = fixture.step(&["echo \"$LANG $HOME\""]);
    step.env.insert("LANG".to_owned(), "fr_FR.UTF-8".to_owned());
    step.env.insert("HOME".to_owned(), "/root".to_owned());
    let (_, lines) = fixture.run(&step);
    assert_eq!(lines, [format!("fr_FR.UTF-8 {}", path_of(work.join("home")))]);
}

#[test]
fn a_failing_command_stops_the_rest() {
    let fixture = Fixture::new();
    let step = fixture.step(&["echo a", "echo b; exit 3", "echo c"]);
    let (outcome, lines) = fixture.run(&step);
    assert_eq!(lines, ["a", "b"]);
    assert_eq!(
        outcome.exit,
        ExitSummary::Failed { command_idx: 1, command: command(&step, 1), status: CommandStatus::Code(3) }
    );
    assert!(!outcome.passed());

    let step = fixture.step(&["kill -9 $$", "echo not reached"]);
    let (outcome, lines) = fixture.run(&step);
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(
        outcome.exit,
        ExitSummary::Failed { command_idx: 0, command: command(&step, 0), status: CommandStatus::Signal(9) }
    );
}

#[test]
fn junit_reports_written_to_drover_reports_are_merged() {
    let fixture = Fixture::new();
    let step = fixture.step(&[
        &write_report("junit.xml", PASSING_REPORT),
        &write_report(
            "nested/deeper/go.XML",
            r#"<testsuites><testsuite name="pkg"><testcase name="TestX" time="0.25"/></testsuite></testsuites>"#,
        ),
        "echo 'not a report' > \"$DROVER_REPORTS/notes.txt\"",
    ]);
    let (outcome, _) = fixture.run(&step);
    assert_eq!(outcome.exit, ExitSummary::Succeeded);
    assert_eq!(outcome.report_files, [PathBuf::from("junit.xml"), PathBuf::from("nested/deeper/go.XML")]);
    assert!(outcome.report_errors.is_empty(), "{:?}", outcome.report_errors);
    let report = outcome.report.as_ref().unwrap();
    assert_eq!((report.tests, report.failures, report.errors, report.skipped), (3, 0, 0, 1));
    assert_eq!(report.duration_ms, 1750);
    let names: Vec<&str> = report.cases.iter().map(|case| case.name.as_str()).collect();
    assert_eq!(names, ["works", "later", "TestX"]);
    assert!(outcome.passed());
}

#[test]
fn a_report_with_failures_fails_the_step_even_if_every_command_exits_0() {
    let fixture = Fixture::new();
    let step = fixture.step(&[&write_report("junit.xml", FAILING_REPORT), "true"]);
    let (outcome, _) = fixture.run(&step);
    assert_eq!(outcome.exit, ExitSummary::Succeeded);
    assert_eq!(outcome.report.as_ref().unwrap().failures, 1);
    assert!(!outcome.passed());
}

#[test]
fn reports_are_collected_when_a_command_fails() {
    let fixture = Fixture::new();
    let step = fixture.step(&[&format!("{}\nexit 1", write_report("junit.xml", FAILING_REPORT))]);
    let (outcome, _) = fixture.run(&step);
    assert!(matches!(outcome.exit, ExitSummary::Failed { status: CommandStatus::Code(1), .. }), "{:?}", outcome.exit);
    assert_eq!(outcome.report.as_ref().unwrap().failures, 1);
    assert!(!outcome.passed());
}

#[test]
fn unusable_reports_are_listed_and_fail_the_step() {
    let fixture = Fixture::new();
    // A valid report outside the reports directory, linked into it: it must not be read.
    let outside = fixture.dir.path().join("outside.xml");
    fs::write(&outside, PASSING_REPORT).unwrap();
    let link = format!("ln -s '{}' \"$DROVER_REPORTS/link.xml\"", outside.display());
    let step = fixture.step(&[
        &write_report("a-good.xml", PASSING_REPORT),
        &write_report("bad.xml", "<testsuite>\n<testcase name=\"x\">"),
        &link,
        "mkfifo \"$DROVER_REPORTS/fifo.xml\"",
        "printf '\\377' > \"$DROVER_REPORTS/latin1.xml\"",
    ]);
    let (outcome, _) = fixture.run(&step);
    assert_eq!(outcome.exit, ExitSummary::Succeeded);
    assert_eq!(outcome.report_files, [PathBuf::from("a-good.xml")]);
    assert_eq!(outcome.report.as_ref().unwrap().tests, 2);
    assert_eq!(
        outcome.report_errors,
        [
            "bad.xml:3:1: unexpected end of file: <testcase> is not closed",
            "fifo.xml: not a regular file",
            "latin1.xml: not UTF-8 (at byte 0); JUnit reports must be written in UTF-8",
            "link.xml: is a symbolic link; reports must be regular files",
        ]
    );
    assert!(!outcome.passed());
}

#[test]
fn a_timeout_kills_the_command_and_its_background_children() {
    let fixture = Fixture::new();
    let mut step = fixture.step(&[
        "sleep 600 & echo $! > \"$TMPDIR/bg.pid\"; echo $$ > \"$TMPDIR/sh.pid\"; echo started; sleep 600",
        "echo not reached",
    ]);
    step.timeout = Duration::from_secs(1);
    let (outcome, lines) = fixture.run(&step);
    assert_eq!(lines, ["started"]);
    assert_eq!(outcome.exit, ExitSummary::TimedOut { command_idx: 0, command: command(&step, 0) });
    assert!(!outcome.passed());
    let (background, shell) = (fixture.pid("bg.pid"), fixture.pid("sh.pid"));
    wait_until("the background sleep is gone", || is_gone(background));
    assert!(is_gone(shell));
}

#[test]
fn processes_left_behind_are_killed_when_the_shell_exits() {
    let fixture = Fixture::new();
    let step = fixture.step(&[
        // One holds the output pipe open, one does not; neither may outlive its command.
        "sleep 600 & echo $! > \"$TMPDIR/holds.pid\"; echo first",
        "sleep 600 >/dev/null 2>&1 & echo $! > \"$TMPDIR/quiet.pid\"; echo second",
    ]);
    let (outcome, lines) = fixture.run(&step);
    assert_eq!(lines, ["first", "second"]);
    assert_eq!(outcome.exit, ExitSummary::Succeeded);
    for name in ["holds.pid", "quiet.pid"] {
        let pid = fixture.pid(name);
        wait_until(&format!("{name} is gone"), || is_gone(pid));
    }
}

#[test]
fn cancelling_stops_the_running_command() {
    let fixture = Fixture::new();
    let step = fixture.step(&["echo $$ > \"$TMPDIR/sh.pid\"; echo ready; sleep 600", "touch \"$TMPDIR/second-ran\""]);
    let cancel = AtomicBool::new(false);
    let mut lines = Vec::new();
    let on_line = &mut |line: &str| {
        if line == "ready" {
            cancel.store(true, Ordering::Relaxed);
        }
        lines.push(line.to_owned());
    };
    let outcome = run_tests(&step, on_line, &mut |_| {}, &cancel).unwrap();
    assert_eq!(lines, ["ready"]);
    assert_eq!(outcome.exit, ExitSummary::Cancelled { command_idx: 0, command: command(&step, 0) });
    assert!(!fixture.work().join("tmp/second-ran").exists());
    let shell = fixture.pid("sh.pid");
    wait_until("the shell is gone", || is_gone(shell));

    // Cancelled before it starts, nothing runs.
    let fixture = Fixture::new();
    let step = fixture.step(&["touch \"$TMPDIR/ran\""]);
    let outcome = run_tests(&step, &mut |_| {}, &mut |_| {}, &AtomicBool::new(true)).unwrap();
    assert_eq!(outcome.exit, ExitSummary::Cancelled { command_idx: 0, command: command(&step, 0) });
    assert!(!fixture.work().join("tmp/ran").exists());
}

#[test]
fn each_command_reports_its_process_group_as_it_starts() {
    let fixture = Fixture::new();
    // Field 5 of /proc/PID/stat is the process group; `(sh)` has no space in it.
    let report = "echo $$ $(cut -d' ' -f5 /proc/$$/stat)";
    let step = fixture.step(&[report, report]);
    let (mut lines, mut spawned) = (Vec::new(), Vec::new());
    let outcome = run_tests(
        &step,
        &mut |line| lines.push(line.to_owned()),
        &mut |pid| spawned.push(format!("{pid} {pid}")),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(outcome.passed(), "{outcome:?}");
    assert_eq!(lines, spawned, "each command's shell leads its group, and is what on_spawn names");
}

/// Names, sizes and modification times of everything under `dir`.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        entries.push((entry.path(), metadata.len(), metadata.modified().unwrap()));
        if metadata.is_dir() {
            entries.extend(snapshot(&entry.path()));
        }
    }
    entries.sort();
    entries
}

#[test]
fn the_artifact_is_the_working_directory_and_is_not_written() {
    let fixture = Fixture::new();
    let artifact = fixture.artifact();
    fs::create_dir(artifact.join("tests")).unwrap();
    fs::write(artifact.join("tests/data.txt"), "shipped data\n").unwrap();
    for (path, mode) in
        [(artifact.join("tests/data.txt"), 0o444), (artifact.join("tests"), 0o555), (artifact.clone(), 0o555)]
    {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = snapshot(&artifact);

    let step = fixture.step(&[
        "cat tests/data.txt",
        "echo scratch > \"$TMPDIR/scratch\" && cat \"$TMPDIR/scratch\"",
        "echo rc > \"$HOME/.testrc\" && cat ~/.testrc",
        &write_report("junit.xml", PASSING_REPORT),
    ]);
    let (outcome, lines) = fixture.run(&step);
    assert_eq!(lines, ["shipped data", "scratch", "rc"]);
    assert!(outcome.passed(), "{outcome:?}");
    assert_eq!(snapshot(&artifact), before);

    for path in [artifact.clone(), artifact.join("tests")] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_missing_artifact_is_an_error_before_anything_runs() {
    let fixture = Fixture::new();
    let mut step = fixture.step(&["touch \"$TMPDIR/ran\""]);
    step.artifact_dir = fixture.dir.path().join("missing");
    let error = run_tests(&step, &mut |_| {}, &mut |_| {}, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(error, PipelineError::Io { action: "open artifact directory", .. }), "{error:?}");
    assert!(error.to_string().starts_with("cannot open artifact directory /"), "{error}");
    assert!(!fixture.work().join("tmp/ran").exists());
}

#[test]
fn an_empty_step_passes() {
    let fixture = Fixture::new();
    let (outcome, lines) = fixture.run(&fixture.step(&[]));
    assert!(lines.is_empty());
    assert_eq!(outcome.exit, ExitSummary::Succeeded);
    assert!(outcome.passed());
}

#[test]
fn issue_9_commands_run_as_the_app_user_whose_reports_are_read_only_once_taken_back() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running tests as another user needs root");
        return;
    }
    let fixture = Fixture::new();
    // The server's scratch directory is 0711: an app user passes through to its own work dir.
    fs::set_permissions(fixture.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let private = fixture.dir.path().join("token");
    fs::write(&private, "root's").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    let user = model::AppUser::numbered(43).unwrap();
    let mut step = fixture.step(&[
        &format!("id -u; cat {} || echo denied; touch not-written || echo read-only", private.display()),
        &write_report("a.xml", r#"<testsuite name="s" tests="1"><testcase name="t"/></testsuite>"#),
    ]);
    step.user = Some(user);
    let (outcome, lines) = fixture.run(&step);
    assert!(outcome.passed(), "{outcome:?} {lines:?}");
    assert_eq!(lines[0], user.uid.to_string(), "{lines:?}");
    assert!(lines.contains(&"denied".to_owned()) && lines.contains(&"read-only".to_owned()), "{lines:?}");
    assert_eq!(outcome.report.unwrap().tests, 1);
    // Taken back before the reports were read: root's, and nobody else may write.
    use std::os::unix::fs::MetadataExt;
    for rel in ["", "reports", "reports/a.xml", "home"] {
        let metadata = fs::symlink_metadata(fixture.work().join(rel)).unwrap();
        assert_eq!((metadata.uid(), metadata.mode() & 0o022), (0, 0), "{rel}");
    }
}
