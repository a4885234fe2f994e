//! The process backend end to end: real shims (the `drover-test-shim` binary) supervising real
//! `sh` apps in temporary directories. Waits poll with a deadline; the deadline only turns a hang
//! into a failure.

use logs::{LogRecord, ReadOptions, Stream};
use model::{AppName, InstanceId, ProcessType, ReleaseId};
use runtime::{
    Artifact, ExitCause, InstanceSpec, InstanceState, InstanceStatus, Isolation, ProcessRuntime, Runtime, RuntimeError,
};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// A data directory with instances, logs and a slug; kills every process it started on drop.
struct Fixture {
    dir: tempfile::TempDir,
    runtime: ProcessRuntime,
}

impl Fixture {
    fn new() -> Self {
        // Not under /tmp: the shim mounts a private tmpfs there, which would hide the slug.
        Self::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
    }

    fn new_in(base: &Path) -> Self {
        let dir = tempfile::Builder::new().prefix("runtime-").tempdir_in(base).unwrap();
        fs::create_dir(dir.path().join("slug")).unwrap();
        fs::write(dir.path().join("slug/Procfile"), "web: ./server\n").unwrap();
        let runtime = runtime_for(dir.path());
        Self { dir, runtime }
    }

    /// Another runtime object on the same directories, as a restarted control plane would make.
    fn new_runtime(&self) -> ProcessRuntime {
        runtime_for(self.dir.path())
    }

    fn slug(&self) -> PathBuf {
        self.dir.path().join("slug")
    }

    fn spec(&self, suffix: &str, command: &str) -> InstanceSpec {
        let app = AppName::parse("hello").unwrap();
        let process = ProcessType::web();
        let release = ReleaseId(3);
        InstanceSpec {
            id: InstanceId::new(&app, &process, release, suffix),
            app,
            release,
            process,
            command: command.to_owned(),
            env: BTreeMap::new(),
            port: None,
            artifact: Artifact::Slug(self.slug()),
            stop_grace: Duration::from_secs(5),
            sealed_env: Vec::new(),
            user: None,
        }
    }

    fn logs(&self, id: &InstanceId) -> Vec<LogRecord> {
        let options = ReadOptions { instance: Some(id.clone()), ..Default::default() };
        logs::read_app(&self.dir.path().join("logs"), &AppName::parse("hello").unwrap(), &options).unwrap()
    }

    fn has_line(&self, id: &InstanceId, stream: Stream, line: &str) -> bool {
        self.logs(id).iter().any(|record| record.stream == stream && record.line == line)
    }

    /// Waits for a line in the instance's log.
    fn wait_for_line(&self, id: &InstanceId, stream: Stream, line: &str) {
        wait_until(&format!("{stream:?} line {line:?}"), || self.has_line(id, stream, line));
    }

    fn shim_json(&self, id: &InstanceId) -> serde_json::Value {
        let path = self.dir.path().join("instances").join(id.as_str()).join("shim.json");
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    fn shim_pid(&self, id: &InstanceId) -> u32 {
        u32::try_from(self.shim_json(id)["shim_pid"].as_u64().unwrap()).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Whatever a failed test left running: every shim, and every process of an app.
        let Ok(entries) = fs::read_dir(self.dir.path().join("instances")) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let shim_pid = fs::read(entry.path().join("shim.json"))
                .ok()
                .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
                .and_then(|json| json["shim_pid"].as_u64())
                .and_then(|pid| u32::try_from(pid).ok());
            if let Some(pid) = shim_pid {
                // The pid is the shim's if its command line names this instance's directory.
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&id) {
                    kill(pid, libc::SIGKILL);
                }
            }
            for pid in processes_of(&id) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn runtime_for(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::new(dir.join("instances"), dir.join("logs"), PathBuf::from(env!("CARGO_BIN_EXE_drover-test-shim")))
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

async fn status_of(runtime: &ProcessRuntime, id: &InstanceId) -> Option<InstanceStatus> {
    runtime.list().await.unwrap().into_iter().find(|status| status.spec.id == *id)
}

/// Waits until `list` reports the instance in a state that satisfies `check`.
async fn wait_for_status(
    runtime: &ProcessRuntime,
    id: &InstanceId,
    what: &str,
    check: impl Fn(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = status_of(runtime, id).await.filter(|status| check(status)) {
            return status;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", status_of(runtime, id).await);
        tokio::time::sleep(POLL).await;
    }
}

/// `(state, ppid, session)` of a process from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some((fields[0].chars().next()?, fields[1].parse().ok()?, fields[3].parse().ok()?))
}

/// Alive: exists and is not a zombie.
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _, _)| state != 'Z' && state != 'X')
}

fn environ(pid: u32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ")).ok().filter(|environ| !environ.is_empty())
}

/// Live processes that carry `DROVER_INSTANCE=<id>`.
fn processes_of(id: &str) -> Vec<u32> {
    let marker = format!("DROVER_INSTANCE={id}");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| alive(pid))
        .filter(|&pid| environ(pid).is_some_and(|env| env.split(|&b| b == 0).any(|item| item == marker.as_bytes())))
        .collect()
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid as i32, signal) };
}

/// The number after `prefix` in the instance's stdout, e.g. a pid the app printed.
fn printed_number(records: &[LogRecord], prefix: &str) -> u32 {
    records.iter().find_map(|record| record.line.strip_prefix(prefix)?.parse().ok()).unwrap()
}

#[tokio::test]
async fn start_runs_the_app_and_tags_its_logs() {
    let fixture = Fixture::new();
    let spec = fixture.spec("a1", r#"echo "hello from $DROVER_INSTANCE"; echo "to stderr" >&2; exec sleep 1000"#);
    let id = spec.id.clone();
    let status = fixture.runtime.start(spec.clone()).await.unwrap();
    assert_eq!(status.state, InstanceState::Running);
    assert_eq!(status.spec, spec);
    assert_eq!(status.restarts, 0);
    assert!(status.started_at > 0);
    let pid = status.pid.unwrap();
    assert!(alive(pid));

    fixture.wait_for_line(&id, Stream::Stdout, "hello from hello-web-v3-a1");
    fixture.wait_for_line(&id, Stream::Stderr, "to stderr");
    let records = fixture.logs(&id);
    assert!(records.iter().any(|r| r.stream == Stream::System && r.line.starts_with(&format!("started pid {pid} "))));
    for record in &records {
        assert_eq!(
            (&record.app, record.release, &record.instance, &record.process),
            (&spec.app, spec.release, &id, &spec.process)
        );
    }

    // The shim is detached: not our child, leader of its own session.
    let shim_pid = fixture.shim_pid(&id);
    let (_, shim_parent, shim_session) = stat(shim_pid).unwrap();
    assert_ne!(shim_parent, std::process::id());
    assert_eq!(shim_session, shim_pid);

    let listed = status_of(&fixture.runtime, &id).await.unwrap();
    assert_eq!((listed.state, listed.pid), (InstanceState::Running, Some(pid)));
    fixture.runtime.stop(&id).await.unwrap();
    assert!(!alive(pid));
    assert!(!alive(shim_pid));
}

#[tokio::test]
async fn env_port_and_private_dirs_reach_the_app() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec(
        "b2",
        r#"echo "port=$PORT greeting=$GREETING app=$DROVER_APP release=$DROVER_RELEASE process=$DROVER_PROCESS"
           echo "pwd=$(pwd)"
           touch "$HOME/h" "$TMPDIR/t" && echo "home and tmpdir writable"
           exec sleep 1000"#,
    );
    spec.env.insert("GREETING".to_owned(), "hi there".to_owned());
    spec.port = Some(45678);
    let id = spec.id.clone();
    fixture.runtime.start(spec).await.unwrap();

    fixture.wait_for_line(&id, Stream::Stdout, "home and tmpdir writable");
    assert!(fixture.has_line(&id, Stream::Stdout, "port=45678 greeting=hi there app=hello release=3 process=web"));
    let slug = fixture.slug().canonicalize().unwrap();
    assert!(fixture.has_line(&id, Stream::Stdout, &format!("pwd={}", slug.display())));
    fixture.runtime.stop(&id).await.unwrap();
}

#[tokio::test]
async fn crashing_app_is_restarted_with_backoff() {
    let fixture = Fixture::new();
    let spec = fixture.spec("c3", "echo run; exit 3");
    let id = spec.id.clone();
    fixture.runtime.start(spec).await.unwrap();

    let status = wait_for_status(&fixture.runtime, &id, "two restarts", |status| status.restarts >= 2).await;
    assert!(matches!(status.state, InstanceState::Running | InstanceState::Restarting), "{status:?}");
    assert_eq!(status.last_exit.as_deref(), Some("exited with code 3"));
    fixture.wait_for_line(&id, Stream::System, "restarting in 200 ms");
    assert!(fixture.has_line(&id, Stream::System, "exited with code 3"));
    assert!(fixture.has_line(&id, Stream::System, "restarting in 100 ms"));
    let runs = fixture.logs(&id).iter().filter(|r| r.stream == Stream::Stdout && r.line == "run").count();
    assert!(runs >= 2, "{runs} runs");

    fixture.runtime.stop(&id).await.unwrap();
    let status = status_of(&fixture.runtime, &id).await.unwrap();
    assert_eq!(status.state, InstanceState::Exited(ExitCause::Stopped));
}

#[tokio::test]
async fn stop_sends_sigterm_to_the_app() {
    let fixture = Fixture::new();
    let spec = fixture.spec("d4", r#"trap 'echo "got TERM"; exit 0' TERM; echo ready; sleep 1000 & wait"#);
    let id = spec.id.clone();
    let pid = fixture.runtime.start(spec).await.unwrap().pid.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "ready");

    fixture.runtime.stop(&id).await.unwrap();
    assert!(fixture.has_line(&id, Stream::Stdout, "got TERM"), "{:#?}", fixture.logs(&id));
    assert!(fixture.has_line(&id, Stream::System, "exited with code 0"));
    assert!(fixture.has_line(&id, Stream::System, "stopped"));
    assert!(!fixture.has_line(&id, Stream::System, "grace period over: sent SIGKILL"));
    assert!(!alive(pid));
    assert!(processes_of(id.as_str()).is_empty());
    let status = status_of(&fixture.runtime, &id).await.unwrap();
    assert_eq!(status.state, InstanceState::Exited(ExitCause::Stopped));
    assert_eq!(status.pid, None);
    assert_eq!(status.last_exit.as_deref(), Some("exited with code 0"));

    // Stopping again is harmless.
    fixture.runtime.stop(&id).await.unwrap();
}

#[tokio::test]
async fn app_ignoring_sigterm_is_killed_after_grace() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("e5", "trap '' TERM; echo ready; while :; do sleep 1; done");
    spec.stop_grace = Duration::from_millis(300);
    let id = spec.id.clone();
    let pid = fixture.runtime.start(spec).await.unwrap().pid.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "ready");

    fixture.runtime.stop(&id).await.unwrap();
    assert!(fixture.has_line(&id, Stream::System, "grace period over: sent SIGKILL"));
    assert!(fixture.has_line(&id, Stream::System, "killed by SIGKILL"));
    assert!(!alive(pid));
    assert!(processes_of(id.as_str()).is_empty());
    let status = status_of(&fixture.runtime, &id).await.unwrap();
    assert_eq!(status.state, InstanceState::Exited(ExitCause::Stopped));
    assert_eq!(status.last_exit.as_deref(), Some("killed by SIGKILL"));
}

#[tokio::test]
async fn killing_the_shim_takes_the_app_down_and_stop_cleans_up() {
    let fixture = Fixture::new();
    let spec = fixture.spec("f6", r#"sleep 1000 & echo "background=$!"; wait"#);
    let id = spec.id.clone();
    let pid = fixture.runtime.start(spec).await.unwrap().pid.unwrap();
    wait_until("the background pid", || fixture.logs(&id).iter().any(|r| r.line.starts_with("background=")));
    let background = printed_number(&fixture.logs(&id), "background=");

    kill(fixture.shim_pid(&id), libc::SIGKILL);
    let status = wait_for_status(&fixture.runtime, &id, "a lost instance", |status| {
        status.state == InstanceState::Exited(ExitCause::Lost)
    })
    .await;
    assert_eq!(status.pid, None);
    // The app's main process has the parent-death signal...
    wait_until("the app's main process to die with its shim", || !alive(pid));
    // ...but what it forked does not, so it lingers until the instance is stopped.
    assert!(alive(background));

    fixture.runtime.stop(&id).await.unwrap();
    assert!(!alive(background));
    assert!(processes_of(id.as_str()).is_empty());
    let status = status_of(&fixture.runtime, &id).await.unwrap();
    assert_eq!(status.state, InstanceState::Exited(ExitCause::Stopped));

    fixture.runtime.remove(&id).await.unwrap();
    assert!(status_of(&fixture.runtime, &id).await.is_none());
    assert!(!fixture.logs(&id).is_empty(), "logs outlive the instance");
    assert!(matches!(fixture.runtime.remove(&id).await, Err(RuntimeError::NotFound { .. })));
}

#[tokio::test]
async fn a_new_runtime_object_readopts_running_instances() {
    let fixture = Fixture::new();
    let first = fixture.spec("g7", "echo ready; exec sleep 1000");
    let second = fixture.spec("h8", "echo ready; exec sleep 1000");
    let first_pid = fixture.runtime.start(first.clone()).await.unwrap().pid.unwrap();
    let second_pid = fixture.runtime.start(second.clone()).await.unwrap().pid.unwrap();

    // The control plane restarts: a new runtime object that shares nothing with the first but
    // the data directory.
    let restarted = fixture.new_runtime();
    let listed = restarted.list().await.unwrap();
    let got: Vec<(&InstanceId, InstanceState, Option<u32>)> =
        listed.iter().map(|status| (&status.spec.id, status.state, status.pid)).collect();
    assert_eq!(
        got,
        [(&first.id, InstanceState::Running, Some(first_pid)), (&second.id, InstanceState::Running, Some(second_pid))]
    );
    assert_eq!(listed[0].spec, first);

    restarted.stop(&first.id).await.unwrap();
    assert!(!alive(first_pid));
    assert!(alive(second_pid));
    let status = status_of(&fixture.runtime, &first.id).await.unwrap();
    assert_eq!(status.state, InstanceState::Exited(ExitCause::Stopped));
    restarted.stop(&second.id).await.unwrap();
}

const ISOLATION_PROBE: &str = r#"
    if echo x > ./written 2>/dev/null; then echo cwd-writable; else echo cwd-read-only; fi
    echo x > "/tmp/$MARKER" && echo tmp-writable
    echo x > "$HOME/ok" && echo home-writable
    exec sleep 1000"#;

#[tokio::test]
async fn slug_is_read_only_and_tmp_private_when_isolated() {
    let fixture = Fixture::new();
    let marker = format!("drover-test-{}", fixture.dir.path().file_name().unwrap().to_string_lossy());
    let mut spec = fixture.spec("i9", ISOLATION_PROBE);
    spec.env.insert("MARKER".to_owned(), marker.clone());
    let id = spec.id.clone();
    let status = fixture.runtime.start(spec).await.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "home-writable");
    assert!(fixture.has_line(&id, Stream::Stdout, "tmp-writable"));
    let on_host = Path::new("/tmp").join(&marker);

    match status.isolation {
        Isolation::MountNamespace { private_tmp } => {
            assert_eq!(fixture.shim_json(&id)["isolation"], "mount-namespace");
            assert!(fixture.has_line(&id, Stream::Stdout, "cwd-read-only"));
            assert!(!fixture.slug().join("written").exists());
            assert_eq!(on_host.exists(), !private_tmp);
        }
        Isolation::None => {
            // Degraded (no privilege for namespaces here): a plain process, as recorded.
            assert_eq!(fixture.shim_json(&id)["isolation"], "none");
            assert!(fixture.has_line(&id, Stream::Stdout, "cwd-writable"));
        }
        Isolation::Container => panic!("the process runtime made a container"),
    }
    let _ = fs::remove_file(on_host);
    fixture.runtime.stop(&id).await.unwrap();
}

#[tokio::test]
async fn issue_9_an_app_with_a_user_of_its_own_reaches_nothing_of_root_or_of_other_processes() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running an app as another user needs root");
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Somewhere every directory above lets others pass, as the server demands of its data
    // directory (a checkout, and its target directory, may be inside a private one); and not
    // under /tmp, which the shim replaces with a private tmpfs.
    let fixture = Fixture::new_in(Path::new("/var/tmp"));
    // As the server's data directory: others pass through, and list nothing.
    fs::set_permissions(fixture.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let token = fixture.dir.path().join("token");
    fs::write(&token, "root's").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    // This test process stands for the server, or for another app: root's, with an environment.
    let other = std::process::id();
    let probe = format!(
        r#"
    id -u
    cat {token} 2>/dev/null || echo token-denied
    cat /proc/{other}/environ >/dev/null 2>&1 && echo environ-read || echo environ-denied
    if [ -e /proc/{other} ]; then echo other-visible; else echo other-hidden; fi
    if echo x > ./written 2>/dev/null; then echo cwd-writable; else echo cwd-read-only; fi
    echo x > "$HOME/ok" && echo x > "$TMPDIR/ok" && echo home-writable
    exec sleep 1000"#,
        token = token.display()
    );
    let user = model::AppUser::numbered(44).unwrap();
    let mut spec = fixture.spec("u9", &probe);
    spec.user = Some(user);
    let id = spec.id.clone();
    fixture.runtime.start(spec).await.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "home-writable");
    let out: Vec<String> =
        fixture.logs(&id).into_iter().filter(|r| r.stream == Stream::Stdout).map(|r| r.line).collect();
    let private_proc = fixture.shim_json(&id)["private_proc"] == true;
    let expected_other = if private_proc { "other-hidden" } else { "other-visible" };
    assert_eq!(
        out,
        [&user.uid.to_string(), "token-denied", "environ-denied", expected_other, "cwd-read-only", "home-writable"],
    );
    // Isolated here (root, a kernel with per-mount proc options): /proc is the app's own.
    if fixture.shim_json(&id)["isolation"] == "mount-namespace" {
        assert!(private_proc, "{}", fixture.shim_json(&id));
    }
    let system: Vec<String> =
        fixture.logs(&id).into_iter().filter(|r| r.stream == Stream::System).map(|r| r.line).collect();
    assert!(system.iter().any(|l| l.contains(&format!("as app user {}", user.uid))), "{system:?}");
    for dir in ["home", "tmp"] {
        let metadata = fs::metadata(fixture.dir.path().join("instances").join(id.as_str()).join(dir)).unwrap();
        assert_eq!((metadata.uid(), metadata.mode() & 0o777), (user.uid, 0o700), "{dir}");
    }
    fixture.runtime.stop(&id).await.unwrap();
}

#[tokio::test]
async fn without_isolation_the_app_is_a_plain_process() {
    let fixture = Fixture::new();
    let runtime = fixture.new_runtime().without_isolation();
    let marker = format!("drover-test-{}", fixture.dir.path().file_name().unwrap().to_string_lossy());
    let mut spec = fixture.spec("j10", ISOLATION_PROBE);
    spec.env.insert("MARKER".to_owned(), marker.clone());
    let id = spec.id.clone();
    let status = runtime.start(spec).await.unwrap();
    assert_eq!(status.isolation, Isolation::None);
    assert_eq!(fixture.shim_json(&id)["isolation"], "none");
    fixture.wait_for_line(&id, Stream::Stdout, "home-writable");
    assert!(fixture.has_line(&id, Stream::Stdout, "cwd-writable"));
    assert!(fixture.slug().join("written").exists());
    let on_host = Path::new("/tmp").join(&marker);
    assert!(on_host.exists());
    fs::remove_file(on_host).unwrap();
    runtime.stop(&id).await.unwrap();
}

#[tokio::test]
async fn bad_requests_are_rejected_without_side_effects() {
    let fixture = Fixture::new();
    let runtime = &fixture.runtime;

    let mut missing_slug = fixture.spec("k11", "true");
    missing_slug.artifact = Artifact::Slug(fixture.dir.path().join("no-such-slug"));
    assert!(matches!(runtime.start(missing_slug).await, Err(RuntimeError::InvalidSpec { .. })));
    assert!(runtime.list().await.unwrap().is_empty());

    let spec = fixture.spec("l12", "exec sleep 1000");
    runtime.start(spec.clone()).await.unwrap();
    assert!(matches!(runtime.start(spec.clone()).await, Err(RuntimeError::AlreadyExists { .. })));
    assert!(matches!(runtime.remove(&spec.id).await, Err(RuntimeError::StillRunning { .. })));
    let unknown = InstanceId::parse("hello-web-v3-nope").unwrap();
    assert!(matches!(runtime.stop(&unknown).await, Err(RuntimeError::NotFound { .. })));
    runtime.stop(&spec.id).await.unwrap();
    runtime.remove(&spec.id).await.unwrap();

    let broken = ProcessRuntime::new(
        fixture.dir.path().join("instances"),
        fixture.dir.path().join("logs"),
        fixture.dir.path().join("no-such-shim"),
    );
    let spec = fixture.spec("m13", "exec sleep 1000");
    assert!(matches!(broken.start(spec.clone()).await, Err(RuntimeError::StartFailed { .. })));
    assert!(!fixture.dir.path().join("instances").join(spec.id.as_str()).exists());
    assert!(runtime.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn sealed_secrets_reach_the_app_and_never_its_logs_or_disk() {
    let fx = Fixture::new();
    let key_file = fx.dir.path().join("secret.key");
    let keyring = secrets::Keyring::load_or_create(&key_file).unwrap();
    let secret = "hunter2-correct-horse";
    let sealed = keyring.seal("secret;app=hello;key=DB_PASSWORD", secret.as_bytes());
    let runtime = runtime_for(fx.dir.path()).with_key_file(key_file);
    let mut spec = fx.spec(
        "sec1",
        // Plain, base64, and split across two lines, then a marker line to wait for.
        r#"echo "plain=$DB_PASSWORD"; printf %s "$DB_PASSWORD" | base64; echo "${DB_PASSWORD%%-*}"; echo "-${DB_PASSWORD#*-}"; echo done; sleep 600"#,
    );
    spec.sealed_env = vec![runtime::SealedVar {
        name: "DB_PASSWORD".to_owned(),
        context: "secret;app=hello;key=DB_PASSWORD".to_owned(),
        sealed,
    }];
    let id = spec.id.clone();
    runtime.start(spec).await.unwrap();
    fx.wait_for_line(&id, Stream::Stdout, "done");
    let lines: Vec<String> = fx.logs(&id).into_iter().filter(|r| r.stream == Stream::Stdout).map(|r| r.line).collect();
    assert_eq!(lines[0], "plain=***");
    assert!(lines.iter().all(|l| !l.contains(secret) && !l.contains("aHVudGVyMi1jb3JyZWN0LWhvcnNl")), "{lines:?}");
    assert_eq!(lines[2..4], ["***", "***"], "{lines:?}");

    // The app really got the value, and nothing under the data dir holds it in plain text.
    let pid = status_of(&runtime, &id).await.unwrap().pid.unwrap();
    let wanted = format!("DB_PASSWORD={secret}");
    let has_secret = |p: u32| environ(p).unwrap_or_default().split(|b| *b == 0).any(|e| e == wanted.as_bytes());
    let in_env = has_secret(pid) || processes_of(id.as_str()).into_iter().any(has_secret);
    assert!(in_env, "the app's environment has the secret");
    let grep = std::process::Command::new("grep").args(["-r", "-l", secret]).arg(fx.dir.path()).output().unwrap();
    assert!(grep.stdout.is_empty(), "plain text secret on disk: {}", String::from_utf8_lossy(&grep.stdout));
    runtime.stop(&id).await.unwrap();
}
