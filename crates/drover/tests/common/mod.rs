//! Test harness: runs the real `drover` binary against its own data directory and talks HTTP to
//! what it serves over loopback. Everything it starts is stopped when the harness is dropped.

#![allow(dead_code)]

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const EXE: &str = env!("CARGO_BIN_EXE_drover");

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// Polls `cond` until it holds; the deadline only turns a hang into a clear failure.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Drover {
    pub data: tempfile::TempDir,
    pub http: SocketAddr,
}

impl Drover {
    pub fn new() -> Self {
        Self { data: tempfile::tempdir().unwrap(), http: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())) }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(EXE);
        cmd.arg("--data-dir").arg(self.data.path()).args(args).env_remove("DROVER_DATA_DIR");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "drover {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    pub fn start(&self) {
        let http = self.http.to_string();
        self.ok(&["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0"]);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.data.path().join(name)
    }

    pub fn server_pid(&self) -> u32 {
        let info: Value = serde_json::from_slice(&std::fs::read(self.path("server.json")).unwrap()).unwrap();
        info["pid"].as_u64().unwrap() as u32
    }

    pub fn instances(&self, app: &str) -> Vec<Value> {
        self.json(&["ps", app]).as_array().unwrap().clone()
    }

    /// Waits until `app` has exactly `n` healthy, routed instances of `release` and nothing else.
    pub fn wait_settled(&self, app: &str, release: u64, n: usize) {
        wait_until(&format!("{app} to settle at {n} instance(s) of v{release}"), Duration::from_secs(60), || {
            let all = self.instances(app);
            all.len() == n && all.iter().all(|i| i["release"] == release && i["healthy"] == true && i["routed"] == true)
        });
    }

    /// GET through Drover's proxy with the app's Host header.
    pub fn get(&self, app: &str, path: &str) -> (u16, String) {
        self.get_host(&format!("{app}.localhost"), path)
    }

    /// GET through Drover's proxy with the given Host header.
    pub fn get_host(&self, host: &str, path: &str) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let r = client.get(format!("http://{}{path}", self.http)).header("host", host).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        // A server killed by the test is started again so it can stop everything it knows.
        if self.run(&["server", "stop", "--all"]).status.success() && !self.path("proxy.json").exists() {
            return;
        }
        let _ = self.run(&["server", "start"]);
        let _ = self.run(&["server", "stop", "--all"]);
    }
}

/// A directory outside Drover's that an app's own code (its build steps, tests and instances,
/// which run as the app's user when the tests run as root) may write, for a test's witness
/// files: sticky and open to all, like `/tmp`.
pub fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// Writes an app directory from the bundled example, with fast health checks and `extra` YAML.
pub fn app_dir(name: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-python/app.py");
    std::fs::copy(example, dir.path().join("app.py")).unwrap();
    write_config(dir.path(), name, extra);
    dir
}

pub fn write_config(dir: &Path, name: &str, extra: &str) {
    let health = if extra.contains("health:") {
        ""
    } else {
        "health: {path: /healthz, interval: 200ms, timeout: 1s, start_period: 5s}\n"
    };
    let yaml = format!("app: {name}\nprocesses:\n  web: python3 app.py\n{extra}\n{health}");
    std::fs::write(dir.join("drover.yml"), yaml).unwrap();
}

/// Counts of a bounded load run.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub errors: std::sync::Mutex<Vec<String>>,
}

/// A load client: `connections` concurrent keep-alive clients GET / through the proxy until
/// stopped, or until `max_requests` in total, whichever comes first.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub stats: Arc<LoadStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(http: SocketAddr, app: &str, connections: usize, max_requests: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoadStats::default());
        let host = format!("{app}.localhost");
        let thread = std::thread::spawn({
            let stop = stop.clone();
            let stats = stats.clone();
            move || {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for _ in 0..connections {
                        let (stop, stats, host) = (stop.clone(), stats.clone(), host.clone());
                        tasks.push(tokio::spawn(async move {
                            let client =
                                reqwest::Client::builder().no_proxy().pool_max_idle_per_host(1).build().unwrap();
                            let done = |s: &LoadStats| {
                                s.ok.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed) >= max_requests
                            };
                            while !stop.load(Ordering::Relaxed) && !done(&stats) {
                                let result = client
                                    .get(format!("http://{http}/"))
                                    .header("host", &host)
                                    .timeout(Duration::from_secs(30))
                                    .send()
                                    .await;
                                match result {
                                    Ok(r) if r.status().is_success() => {
                                        let _ = r.bytes().await;
                                        stats.ok.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Ok(r) => {
                                        let status = r.status();
                                        let body = r.text().await.unwrap_or_default();
                                        stats.failed.fetch_add(1, Ordering::Relaxed);
                                        stats.errors.lock().unwrap().push(format!("{status}: {body}"));
                                    }
                                    Err(e) => {
                                        stats.failed.fetch_add(1, Ordering::Relaxed);
                                        stats.errors.lock().unwrap().push(format!("{e:?}"));
                                    }
                                }
                            }
                        }));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            }
        });
        Self { stop, stats, thread: Some(thread) }
    }

    pub fn ok(&self) -> u64 {
        self.stats.ok.load(Ordering::Relaxed)
    }

    /// Stops the load and returns (ok, failed, first errors).
    pub fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let errors = self.stats.errors.lock().unwrap().iter().take(5).cloned().collect();
        (self.stats.ok.load(Ordering::Relaxed), self.stats.failed.load(Ordering::Relaxed), errors)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A git work tree with its own HOME and identity, for pushing to Drover or to a test remote.
pub struct Repo {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let repo = Self { dir: tempfile::tempdir().unwrap(), home: tempfile::tempdir().unwrap() };
        repo.ok(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    pub fn git(&self, args: &[&str]) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test; rm -rf ~")
            .env("GIT_AUTHOR_EMAIL", "t@example.test")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "t@example.test")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.git(args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "git {args:?} failed: {text}");
        text
    }

    pub fn commit_all(&self, message: &str) {
        self.ok(&["add", "-A"]);
        self.ok(&["commit", "--quiet", "-m", message]);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The running server's API address.
pub fn api_addr(drover: &Drover) -> String {
    let info: Value = serde_json::from_slice(&std::fs::read(drover.path("server.json")).unwrap()).unwrap();
    info["api_addr"].as_str().unwrap().to_owned()
}

/// The first `run N` a push or webhook answer mentions.
pub fn run_id(output: &str) -> String {
    let at = output.find("run ").unwrap_or_else(|| panic!("no run in: {output}"));
    output[at + "run ".len()..].split_whitespace().next().unwrap().to_owned()
}
