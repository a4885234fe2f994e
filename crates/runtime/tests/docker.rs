//! The Docker backend end to end, against the real engine (`scripts/test` starts `dockerd`; where
//! no engine answers, each test says it was skipped, unless `DROVER_REQUIRE_DOCKER=1`):
//! containers of a busybox image built here from the host's static busybox (there is no
//! registry to pull from), serving HTTP on a published loopback port. Waits poll with a
//! deadline; the deadline only turns a hang into a failure.

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use logs::{LogRecord, ReadOptions, Stream};
use model::{AppName, InstanceId, ProcessType, ReleaseId};
use runtime::{
    Artifact, DockerRuntime, ExitCause, InstanceSpec, InstanceState, Isolation, Runtime, RuntimeError, SealedVar,
};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IMAGE: &str = "drover-test-busybox:1";
const DEADLINE: Duration = Duration::from_secs(30);
const TOKEN: &str = "tok-docker-5e1f2a";

struct Fixture {
    dir: tempfile::TempDir,
    runtime: DockerRuntime,
}

impl Fixture {
    /// A runtime on a fresh directory, or `None` (with the reason printed) where Docker cannot
    /// run and the tests may be skipped.
    async fn new() -> Option<Self> {
        if let Some(why) = testkit::docker_skip() {
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("docker-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        fs::create_dir(dir.path().join("slug")).unwrap();
        let runtime = Self::runtime_for(dir.path()).await;
        testkit::busybox_image(IMAGE, "");
        Some(Self { dir, runtime })
    }

    async fn runtime_for(dir: &Path) -> DockerRuntime {
        DockerRuntime::connect(dir.join("instances"), dir.join("logs"))
            .await
            .expect("the Docker engine answers (scripts/test starts dockerd)")
            .with_stack_image(IMAGE.to_owned())
            .with_key_file(dir.join("secret.key"))
    }

    /// `suffix` made unique to this fixture: container names are global to the engine.
    fn spec(&self, suffix: &str, command: &str) -> InstanceSpec {
        let unique = self.dir.path().file_name().unwrap().to_string_lossy().to_lowercase();
        let suffix = format!(
            "{suffix}{}",
            unique.trim_start_matches("docker-").replace(|c: char| !c.is_ascii_alphanumeric(), "")
        );
        let suffix = suffix.as_str();
        let app = AppName::parse("hello").unwrap();
        let process = ProcessType::web();
        InstanceSpec {
            id: InstanceId::new(&app, &process, ReleaseId(2), suffix),
            app,
            release: ReleaseId(2),
            process,
            command: command.to_owned(),
            env: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            port: None,
            artifact: Artifact::Image(IMAGE.to_owned()),
            stop_grace: Duration::from_secs(1),
            sealed_env: Vec::new(),
            user: None,
        }
    }

    fn seal(&self, name: &str, value: &str) -> SealedVar {
        let keyring = secrets::Keyring::load_or_create(&self.dir.path().join("secret.key")).unwrap();
        let context = format!("test/{name}");
        SealedVar { name: name.to_owned(), sealed: keyring.seal(&context, value.as_bytes()), context }
    }

    fn lines(&self, id: &InstanceId) -> Vec<LogRecord> {
        let app = AppName::parse("hello").unwrap();
        let options = ReadOptions { tail: None, ..Default::default() };
        logs::read_app(&self.dir.path().join("logs"), &app, &options)
            .unwrap()
            .into_iter()
            .filter(|r| &r.instance == id)
            .collect()
    }

    fn wait_for_line(&self, id: &InstanceId, stream: Stream, text: &str) {
        wait("a log line", || self.lines(id).iter().any(|r| r.stream == stream && r.line == text));
    }

    async fn state(&self, runtime: &DockerRuntime, id: &InstanceId) -> InstanceState {
        let list = runtime.list().await.unwrap();
        list.into_iter().find(|s| &s.spec.id == id).map(|s| s.state).expect("listed")
    }
}

impl Drop for Fixture {
    /// Removes the containers of this fixture that a failed test left.
    fn drop(&mut self) {
        let label = format!("label=io.drover.root={}", self.dir.path().join("instances").display());
        let Ok(out) = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &label]).output() else {
            return;
        };
        let ids = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }
}

fn wait(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1).is_some_and(|status| status == "200").then_some(answer)
}

/// This test's containers that the engine still has.
async fn containers_of(runtime: &DockerRuntime, dir: &Path) -> usize {
    let filters =
        HashMap::from([("label".to_owned(), vec![format!("io.drover.root={}", dir.join("instances").display())])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    runtime.docker().list_containers(Some(options)).await.unwrap().len()
}

/// A web server that logs a numbered tick every 50 ms, and its secret once.
const TICKING_SERVER: &str = "echo \"token is $TOKEN\"; \
    (i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done) & \
    mkdir -p /tmp/www && echo \"$GREETING\" > /tmp/www/healthz && exec httpd -f -p \"$PORT\" -h /tmp/www";

fn ticks(records: &[LogRecord]) -> Vec<u64> {
    records.iter().filter_map(|r| r.line.strip_prefix("tick ")?.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_serves_is_re_adopted_without_losing_a_line_and_stops() {
    let Some(fixture) = Fixture::new().await else { return };
    let port = free_port();
    let mut spec = fixture.spec("a1", TICKING_SERVER);
    spec.port = Some(port);
    spec.sealed_env = vec![fixture.seal("TOKEN", TOKEN)];
    let id = spec.id.clone();

    // A control plane of its own, on a tokio runtime that is dropped below, as a killed server
    // would be: its log pump stops mid-stream.
    let dir = fixture.dir.path().to_owned();
    let (status, first) = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let runtime = Fixture::runtime_for(&dir).await;
            let status = runtime.start(spec).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            (status, runtime)
        })
    })
    .join()
    .unwrap();
    drop(first);
    assert_eq!(status.state, InstanceState::Running);
    assert_eq!(status.isolation, Isolation::Container);
    assert!(status.pid.is_some());

    wait("the server to answer", || get(port, "/healthz").is_some_and(|answer| answer.ends_with("hi\n")));
    fixture.wait_for_line(&id, Stream::Stdout, "token is ***");
    let before = ticks(&fixture.lines(&id)).len();

    // The secret is neither in the log nor in the engine's record of the container.
    let name = DockerRuntime::container_name(&id);
    let inspected = fixture.runtime.docker().inspect_container(&name, None::<InspectContainerOptions>).await.unwrap();
    let config = serde_json::to_string(&inspected).unwrap();
    assert!(!config.contains(TOKEN), "the container's config holds the secret");

    // A new control plane re-adopts the container and copies what it printed meanwhile.
    assert_eq!(fixture.state(&fixture.runtime, &id).await, InstanceState::Running);
    wait("ticks after re-adoption", || ticks(&fixture.lines(&id)).len() > before + 10);
    fixture.runtime.stop(&id).await.unwrap();
    let ticks = ticks(&fixture.lines(&id));
    let expected: Vec<u64> = (1..=ticks.len() as u64).collect();
    assert_eq!(ticks, expected, "every tick once, in order");
    let all = fixture.lines(&id);
    assert!(all.iter().all(|r| !r.line.contains(TOKEN)), "a log line holds the secret");

    assert_eq!(fixture.state(&fixture.runtime, &id).await, InstanceState::Exited(ExitCause::Stopped));
    assert!(get(port, "/healthz").is_none());
    fixture.runtime.remove(&id).await.unwrap();
    assert!(fixture.runtime.list().await.unwrap().is_empty());
    assert_eq!(containers_of(&fixture.runtime, fixture.dir.path()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slug_runs_read_only_in_the_stack_image_and_is_restarted_when_it_exits() {
    let Some(fixture) = Fixture::new().await else { return };
    fs::write(fixture.dir.path().join("slug/hello.txt"), "from the slug\n").unwrap();
    let mut spec = fixture.spec("s1", "cat hello.txt; touch written 2>/dev/null || echo read-only; sleep 0.2; exit 3");
    spec.artifact = Artifact::Slug(fixture.dir.path().join("slug"));
    let id = spec.id.clone();
    fixture.runtime.start(spec).await.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "from the slug");
    fixture.wait_for_line(&id, Stream::Stdout, "read-only");
    assert!(!fixture.dir.path().join("slug/written").exists());

    // The engine restarts it after each exit, and says how often and (between runs) why.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = fixture.runtime.list().await.unwrap().remove(0);
        if status.restarts >= 2 && status.last_exit.as_deref() == Some("exited with code 3") {
            break;
        }
        assert!(Instant::now() < deadline, "no restarts with their exit code: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fixture.runtime.stop(&id).await.unwrap();
    fixture.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sends_sigterm_to_the_apps_process_group() {
    let Some(fixture) = Fixture::new().await else { return };
    // The app is a child of the command's shell, which waits for it on SIGTERM. Were only the
    // container's first process signalled (no init), the shell would wait for an app that never
    // heard of the stop, until the grace ran out and SIGKILL ended both silently.
    let app = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let spec = fixture.spec("t1", &format!("trap wait TERM; sh -c \"{app}\" & wait; echo after"));
    let id = spec.id.clone();
    fixture.runtime.start(spec).await.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "ready");
    fixture.runtime.stop(&id).await.unwrap();
    assert!(fixture.lines(&id).iter().any(|r| r.line == "got TERM"), "{:?}", fixture.lines(&id));
    fixture.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_its_own_user_and_entrypoint_runs_the_command_with_its_secrets() {
    let Some(fixture) = Fixture::new().await else { return };
    let image = "drover-test-busybox-user:1";
    let context = tempfile::tempdir().unwrap();
    testkit::docker_build(context.path(), &format!("FROM {IMAGE}\nUSER 1000\nENTRYPOINT [\"/bin/false\"]\n"), image);
    let mut spec = fixture.spec("u1", "echo \"uid $(id -u) sees $TOKEN\"; sleep 30");
    spec.artifact = Artifact::Image(image.to_owned());
    spec.sealed_env = vec![fixture.seal("TOKEN", TOKEN)];
    let id = spec.id.clone();
    fixture.runtime.start(spec).await.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "uid 1000 sees ***");
    fixture.runtime.stop(&id).await.unwrap();
    fixture.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_kills_what_ignores_sigterm_after_the_grace_period() {
    let Some(fixture) = Fixture::new().await else { return };
    let spec = fixture.spec("g1", "trap '' TERM; echo ready; while true; do sleep 1; done");
    let id = spec.id.clone();
    fixture.runtime.start(spec).await.unwrap();
    fixture.wait_for_line(&id, Stream::Stdout, "ready");
    assert!(matches!(fixture.runtime.remove(&id).await, Err(RuntimeError::StillRunning { .. })));
    fixture.runtime.stop(&id).await.unwrap();
    assert_eq!(fixture.state(&fixture.runtime, &id).await, InstanceState::Exited(ExitCause::Stopped));
    fixture.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_and_leave_nothing() {
    let Some(fixture) = Fixture::new().await else { return };
    let mut no_image = fixture.spec("b1", "true");
    no_image.artifact = Artifact::Image("drover-no-such-image:404".to_owned());
    let error = fixture.runtime.start(no_image).await.unwrap_err();
    assert!(matches!(error, RuntimeError::Docker { .. }), "{error:?}");

    let mut missing_slug = fixture.spec("b2", "true");
    missing_slug.artifact = Artifact::Slug(PathBuf::from("/definitely/not/here"));
    assert!(matches!(fixture.runtime.start(missing_slug).await, Err(RuntimeError::InvalidSpec { .. })));
    let no_stack = DockerRuntime::connect(fixture.dir.path().join("instances"), fixture.dir.path().join("logs"));
    let mut slug = fixture.spec("b3", "true");
    slug.artifact = Artifact::Slug(fixture.dir.path().join("slug"));
    assert!(matches!(no_stack.await.unwrap().start(slug).await, Err(RuntimeError::InvalidSpec { .. })));

    assert!(fixture.runtime.list().await.unwrap().is_empty());
    assert_eq!(containers_of(&fixture.runtime, fixture.dir.path()).await, 0);
    let leftovers: Vec<_> = fs::read_dir(fixture.dir.path().join("instances")).map_or(Vec::new(), |d| d.collect());
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_container_no_instance_knows_is_removed() {
    let Some(fixture) = Fixture::new().await else { return };
    // What a start or a remove cut short could leave: a labelled container without spec.json.
    let stray = fixture.spec("o1", "true").id;
    let root = format!("io.drover.root={}", fixture.dir.path().join("instances").display());
    let out = std::process::Command::new("docker")
        .args(["create", "--name", &DockerRuntime::container_name(&stray), "--label", &root])
        .args(["--label", &format!("io.drover.instance={stray}"), IMAGE, "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(containers_of(&fixture.runtime, fixture.dir.path()).await, 1);
    // A container of another root with the same labels otherwise is never touched.
    let other = tempfile::tempdir().unwrap();
    let foreign = Fixture::runtime_for(other.path()).await;
    assert!(foreign.list().await.unwrap().is_empty());
    assert_eq!(containers_of(&fixture.runtime, fixture.dir.path()).await, 1);

    assert!(Fixture::runtime_for(fixture.dir.path()).await.list().await.unwrap().is_empty());
    assert_eq!(containers_of(&fixture.runtime, fixture.dir.path()).await, 0);
}
