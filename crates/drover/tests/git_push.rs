//! `git push` to Drover with the real git client over smart HTTP: a push queues a run that
//! builds and deploys; bad pushes are refused with a clear message and change nothing.

mod common;

use common::*;
use std::process::Command;

fn remote(drover: &Drover, app: &str, token: &str) -> String {
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(drover.path("server.json")).unwrap()).unwrap();
    format!("http://drover:{token}@{}/git/{app}.git", info["api_addr"].as_str().unwrap())
}

fn token(drover: &Drover) -> String {
    std::fs::read_to_string(drover.path("token")).unwrap().trim().to_owned()
}

fn run_id(push_output: &str) -> String {
    let at = push_output.find("drover: run ").unwrap_or_else(|| panic!("no run in: {push_output}"));
    push_output[at + "drover: run ".len()..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_push_to_main_builds_and_deploys_and_bad_pushes_are_refused() {
    let drover = Drover::new();
    drover.start();
    let repo = Repo::new();
    let app = app_dir("pushed", "env: {GREETING: pushed}");
    for file in ["app.py", "drover.yml"] {
        std::fs::copy(app.path().join(file), repo.path().join(file)).unwrap();
    }
    repo.commit_all("first; $(touch pwned)");
    repo.ok(&["remote", "add", "drover", &remote(&drover, "pushed", &token(&drover))]);

    let out = repo.ok(&["push", "drover", "main"]);
    assert!(out.contains("queued for branch \"main\""), "{out}");
    let run = run_id(&out);
    let logs = drover.ok(&["run", "logs", &run, "-f"]);
    assert!(logs.contains("is live") && logs.contains("run succeeded"), "{logs}");
    let shown = drover.json(&["run", "show", &run]);
    let steps: Vec<String> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {} {}", s["name"].as_str().unwrap(), s["status"].as_str().unwrap(), s["message"]))
        .collect();
    assert_eq!(
        steps[2..],
        ["test skipped \"no tests declared\"", "deploy succeeded \"v1 of pushed is live\""],
        "{shown}"
    );
    let (status, body) = drover.get("pushed", "/");
    assert_eq!(status, 200);
    assert!(body.contains("\"pushed\""), "{body}");

    // A branch whose name is full of shell syntax is only data.
    let branch = "feature/x;touch${IFS}pwned$(touch${IFS}pwned)";
    repo.ok(&["checkout", "--quiet", "-b", branch]);
    std::fs::write(repo.path().join("extra.txt"), "x").unwrap();
    repo.commit_all("branch");
    let out = repo.ok(&["push", "drover", branch]);
    let run = run_id(&out);
    let logs = drover.ok(&["run", "logs", &run, "-f"]);
    assert!(logs.contains("deploys nowhere"), "{logs}");
    for dir in [repo.path(), drover.data.path(), &drover.data.path().join("repos/pushed.git")] {
        assert!(!dir.join("pwned").exists(), "a branch name ran as a command in {}", dir.display());
    }

    // A commit without drover.yml or Procfile is refused, with the reason in the push output.
    repo.ok(&["rm", "--quiet", "drover.yml"]);
    repo.commit_all("no config");
    let out = repo.git(&["push", "drover", "HEAD:refs/heads/bare"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("no drover.yml or Procfile"), "{text}");

    // A malformed drover.yml is refused with its file, line and column.
    std::fs::write(repo.path().join("drover.yml"), "app: pushed\nprocesses:\n  web: python3 app.py\nhelth: {}\n")
        .unwrap();
    repo.commit_all("bad config");
    let out = repo.git(&["push", "drover", "HEAD:refs/heads/bad"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("drover.yml:4:1"), "{text}");
    let branches = Command::new("git")
        .args(["--git-dir", drover.path("repos/pushed.git").to_str().unwrap(), "branch", "--list"])
        .output()
        .unwrap();
    let branches = String::from_utf8_lossy(&branches.stdout);
    assert!(!branches.contains("bad") && !branches.contains("bare"), "refused branches were stored: {branches}");

    // Tags start nothing; deleting a branch is acknowledged.
    repo.ok(&["checkout", "--quiet", "main"]);
    repo.ok(&["tag", "v1.0"]);
    let out = repo.ok(&["push", "drover", "v1.0"]);
    assert!(out.contains("tags start no run"), "{out}");
    let out = repo.ok(&["push", "drover", "--delete", branch]);
    assert!(out.contains("deleted"), "{out}");

    // Force-pushing main to an older commit runs it again.
    std::fs::write(repo.path().join("more.txt"), "more").unwrap();
    repo.commit_all("more");
    repo.ok(&["push", "drover", "main"]);
    repo.ok(&["reset", "--quiet", "--hard", "HEAD~1"]);
    let out = repo.ok(&["push", "--force", "drover", "main"]);
    let run = run_id(&out);
    drover.ok(&["run", "logs", &run, "-f"]);

    let runs = drover.json(&["runs", "pushed"]);
    assert!(
        runs.as_array().unwrap().iter().all(|r| r["status"] == "succeeded" || r["status"] == "superseded"),
        "{runs}"
    );
}

#[test]
fn pushes_need_the_token_and_respect_the_size_limit() {
    let drover = Drover::new();
    let http = drover.http.to_string();
    drover.ok(&["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0", "--push-limit", "1000000"]);
    let repo = Repo::new();
    let app = app_dir("big", "");
    for file in ["app.py", "drover.yml"] {
        std::fs::copy(app.path().join(file), repo.path().join(file)).unwrap();
    }
    repo.commit_all("first");

    repo.ok(&["remote", "add", "wrong", &remote(&drover, "big", "not-the-token")]);
    let out = repo.git(&["push", "wrong", "main"]);
    assert!(!out.status.success());
    assert!(!drover.path("repos/big.git/refs/heads/main").exists());

    // Incompressible data well over the 1 MB limit.
    let mut noise = Vec::with_capacity(3_000_000);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while noise.len() < 3_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(repo.path().join("noise.bin"), noise).unwrap();
    repo.commit_all("big");
    repo.ok(&["remote", "add", "drover", &remote(&drover, "big", &token(&drover))]);
    let out = repo.git(&["push", "drover", "main"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("413"), "{text}");
    assert!(!drover.path("repos/big.git/refs/heads/main").exists());
    let objects = Command::new("git")
        .args(["--git-dir", drover.path("repos/big.git").to_str().unwrap(), "count-objects"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&objects.stdout).starts_with("0 objects"),
        "{}",
        String::from_utf8_lossy(&objects.stdout)
    );
}

#[test]
fn a_push_changing_only_app_code_reuses_the_dependency_layer() {
    let drover = Drover::new();
    drover.start();
    let outside = tempfile::tempdir().unwrap();
    let installs = outside.path().join("installs.log");
    let repo = Repo::new();
    let build = format!(
        "build:\n  - run: echo install >> {}; mkdir vendor && cp requirements.txt vendor/\n    inputs: [requirements.txt]\n    outputs: [vendor]\n  - test -f vendor/requirements.txt",
        installs.display()
    );
    let app = app_dir("layered", &build);
    for file in ["app.py", "drover.yml"] {
        std::fs::copy(app.path().join(file), repo.path().join(file)).unwrap();
    }
    std::fs::write(repo.path().join("requirements.txt"), "flask==3.0\n").unwrap();
    repo.commit_all("first");
    repo.ok(&["remote", "add", "drover", &remote(&drover, "layered", &token(&drover))]);
    let pushed_logs = |what: &str| {
        let out = repo.ok(&["push", "drover", "main"]);
        let logs = drover.ok(&["run", "logs", &run_id(&out), "-f"]);
        assert!(logs.contains("run succeeded"), "{what}: {logs}");
        logs
    };
    let installs_run = || std::fs::read_to_string(&installs).unwrap().lines().count();

    let logs = pushed_logs("first push");
    assert!(logs.contains("step 1: stored layer sha256:"), "{logs}");
    assert_eq!(installs_run(), 1);

    // Only app code changed: a new artifact, but the install step does not run again.
    let code = std::fs::read_to_string(repo.path().join("app.py")).unwrap();
    std::fs::write(repo.path().join("app.py"), format!("{code}\n# a change to the app only\n")).unwrap();
    repo.commit_all("app code");
    let logs = pushed_logs("app code push");
    assert!(logs.contains("step 1: reused layer sha256:") && logs.contains("1 cached layer(s) reused"), "{logs}");
    assert_eq!(installs_run(), 1);

    // A changed manifest installs again.
    std::fs::write(repo.path().join("requirements.txt"), "flask==3.1\n").unwrap();
    repo.commit_all("deps");
    pushed_logs("manifest push");
    assert_eq!(installs_run(), 2);
}
