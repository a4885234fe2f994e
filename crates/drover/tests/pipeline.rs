//! The whole pipeline through `git push`: build, test inside the artifact, preview apps per
//! branch, staging, and production behind an approval, with the same artifact all the way.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const SECRET: &str = "tok-9f8e7d6c5b4a";

fn write_app(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-python");
    for file in ["app.py", "test_app.py"] {
        std::fs::copy(example.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(
        dir.join("drover.yml"),
        r#"app: shop
processes:
  web: python3 app.py
health: {path: /healthz, interval: 200ms, timeout: 1s, start_period: 5s}
pipeline:
  test:
    run:
      - echo "test sees $API_KEY"
      - python3 test_app.py
  stages:
    - {name: preview, branches: ["*"], except: [main]}
    - {name: staging, branches: [main]}
    - {name: production, branches: [main], after: staging, approval: required}
"#,
    )
    .unwrap();
}

/// A repository of the shop app, its drover.yml changed by `edit`, committed, with this server
/// as its `drover` remote.
fn shop_repo(drover: &Drover, edit: impl FnOnce(String) -> String) -> Repo {
    let repo = Repo::new();
    write_app(repo.path());
    let yaml = std::fs::read_to_string(repo.path().join("drover.yml")).unwrap();
    std::fs::write(repo.path().join("drover.yml"), edit(yaml)).unwrap();
    repo.commit_all("shop");
    let token = std::fs::read_to_string(drover.path("token")).unwrap();
    let url = format!("http://drover:{}@{}/git/shop.git", token.trim(), api_addr(drover));
    repo.ok(&["remote", "add", "drover", &url]);
    repo
}

/// Pushes `branch` and returns the id of the run it queued.
fn push(repo: &Repo, branch: &str) -> String {
    let out = repo.ok(&["push", "drover", branch]);
    let line = out
        .lines()
        .find(|l| l.contains("drover: run ") && l.contains(" queued "))
        .unwrap_or_else(|| panic!("no run in {out}"));
    let at = line.find("drover: run ").unwrap();
    line[at + "drover: run ".len()..].split_whitespace().next().unwrap().to_owned()
}

fn run_json(drover: &Drover, run: &str) -> serde_json::Value {
    drover.json(&["run", "show", run])
}

/// A run's steps as `name status`, in order; every step has its times and a duration.
fn steps(run: &serde_json::Value) -> Vec<String> {
    let steps = run["steps"].as_array().unwrap_or_else(|| panic!("no steps in {run}"));
    steps
        .iter()
        .map(|step| {
            assert!(step["started_at_ms"].is_u64() && step["duration_ms"].is_u64(), "{step}");
            let open = matches!(step["status"].as_str(), Some("running" | "waiting"));
            assert_eq!(step["finished_at_ms"].is_null(), open, "{step}");
            format!("{} {}", step["name"].as_str().unwrap(), step["status"].as_str().unwrap())
        })
        .collect()
}

/// The message of the run's step `name`.
fn step_message(run: &serde_json::Value, name: &str) -> String {
    let steps = run["steps"].as_array().unwrap();
    let step = steps.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no step {name} in {run}"));
    step["message"].as_str().unwrap().to_owned()
}

#[test]
fn push_test_preview_staging_approval_production() {
    let drover = Drover::new();
    drover.start();
    let mut child = drover
        .command(&["secrets", "set", "shop", "API_KEY"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    write!(child.stdin.take().unwrap(), "{SECRET}").unwrap();
    assert!(child.wait().unwrap().success());

    let repo = shop_repo(&drover, |yaml| yaml);

    // A feature branch: tested, then deployed to its own preview app.
    repo.ok(&["checkout", "--quiet", "-b", "feature/login"]);
    let run = push(&repo, "feature/login");
    let logs = drover.ok(&["run", "logs", &run, "-f"]);
    assert!(logs.contains("tests passed: 2 tests"), "{logs}");
    assert!(logs.contains("test sees ***") && !logs.contains(SECRET), "{logs}");
    assert!(logs.contains("stage preview: deploying"), "{logs}");
    for step in ["checkout", "build", "test", "deploy:preview"] {
        assert!(logs.contains(&format!("step {step} succeeded in ")), "no end of {step}: {logs}");
    }
    let green = run_json(&drover, &run);
    assert_eq!(green["tests"]["tests"], 2);
    assert_eq!(
        steps(&green),
        ["checkout succeeded", "build succeeded", "test succeeded", "deploy:preview succeeded"],
        "{green}"
    );
    assert_eq!(step_message(&green, "build"), green["digest"].as_str().unwrap());
    assert_eq!(step_message(&green, "test"), "2 tests, 0 failures, 0 skipped");
    assert_eq!(step_message(&green, "deploy:preview"), "v1 of feature-login-shop is live");
    let (status, body) = drover.get("feature-login-shop", "/");
    assert_eq!(status, 200, "{body}");

    // main: staging at once, production only after approval, with the same artifact. Staging
    // has a config var of its own.
    drover.ok(&["config", "set", "shop", "GREETING=staged", "--stage", "staging"]);
    assert_eq!(drover.json(&["config", "show", "shop", "--stage", "staging"])["vars"]["GREETING"], "staged");
    assert_eq!(drover.json(&["config", "show", "shop"])["vars"], serde_json::json!({}));
    repo.ok(&["checkout", "--quiet", "main"]);
    let run = push(&repo, "main");
    let logs = drover.ok(&["run", "logs", &run, "-f"]);
    assert!(logs.contains("stage staging: deploying"), "{logs}");
    let waiting = run_json(&drover, &run);
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["stage"], "production");
    assert_eq!(
        steps(&waiting),
        [
            "checkout succeeded",
            "build succeeded",
            "test succeeded",
            "deploy:staging succeeded",
            "approval:production waiting"
        ],
        "{waiting}"
    );
    // The same source as the feature branch: the build is a cache hit.
    assert!(step_message(&waiting, "build").starts_with("cached: inputs unchanged, sha256:"), "{waiting}");
    let table = drover.ok(&["run", "show", &run]);
    assert!(table.contains("STEP") && table.contains("approval:production"), "{table}");
    let (status, body) = drover.get("shop-staging", "/");
    assert_eq!(status, 200);
    assert!(body.contains("\"staged\""), "staging has its own config: {body}");
    assert_eq!(drover.get("shop", "/").0, 404, "production must wait for the approval");

    drover.ok(&["approve", &run]);
    let logs = drover.ok(&["run", "logs", &run, "-f"]);
    assert!(logs.contains("stage production: deploying"), "{logs}");
    let approved = run_json(&drover, &run);
    assert_eq!(
        steps(&approved)[4..],
        ["approval:production succeeded", "checkout succeeded", "deploy:production succeeded"],
        "{approved}"
    );
    let (status, body) = drover.get("shop", "/");
    assert_eq!(status, 200);
    assert!(body.contains("\"hello\""), "staging's config stays in staging: {body}");
    let staging = drover.json(&["releases", "shop-staging"]);
    let production = drover.json(&["releases", "shop"]);
    assert_eq!(staging[0]["digest"], production[0]["digest"], "production runs the artifact staging ran");

    // A red run on main deploys nothing: staging and production keep their releases.
    let broken = std::fs::read_to_string(repo.path().join("test_app.py"))
        .unwrap()
        .replace("self.assertEqual(page[\"greeting\"], \"hi\")", "self.assertEqual(page[\"greeting\"], \"bye\")");
    std::fs::write(repo.path().join("test_app.py"), broken).unwrap();
    repo.commit_all("break a test");
    let run = push(&repo, "main");
    let out = drover.run(&["run", "logs", &run, "-f"]);
    assert!(!out.status.success());
    let failed = run_json(&drover, &run);
    assert_eq!(failed["status"], "failed");
    assert!(failed["message"].as_str().unwrap().contains("tests failed: 2 tests, 1 failed"), "{failed}");
    assert!(failed["message"].as_str().unwrap().contains("test_root_shows_greeting_and_release"), "{failed}");
    assert_eq!(steps(&failed), ["checkout succeeded", "build succeeded", "test failed"], "{failed}");
    assert!(step_message(&failed, "test").starts_with("tests failed: 2 tests, 1 failed"), "{failed}");
    assert_eq!(failed["tests"]["failures"], 1, "the report of a red run is kept: {failed}");
    let table = drover.ok(&["run", "show", &run]);
    assert!(table.contains("failed: AppTest.test_root_shows_greeting_and_release"), "{table}");
    assert_eq!(drover.json(&["releases", "shop"]), production);
    assert_eq!(drover.json(&["releases", "shop-staging"]), staging);

    // Deleting the branch destroys its preview app.
    let out = repo.ok(&["push", "drover", "--delete", "feature/login"]);
    assert!(out.contains("preview app feature-login-shop destroyed"), "{out}");
    wait_until("the preview app to be removed", std::time::Duration::from_secs(30), || {
        let apps = drover.json(&["apps"]);
        !apps.as_array().unwrap().iter().any(|a| a["name"] == "feature-login-shop")
    });
    assert_eq!(drover.get("feature-login-shop", "/").0, 404);
    // Its logs went with it: a later app of that name starts with none of another's.
    assert!(!drover.path("logs/feature-login-shop").exists());
}

#[test]
fn a_failing_test_refuses_the_deploy_unless_forced() {
    let drover = Drover::new();
    drover.start();
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let tests = std::fs::read_to_string(dir.path().join("test_app.py")).unwrap();
    std::fs::write(dir.path().join("test_app.py"), tests.replace("\"v7\")", "\"v8\")")).unwrap();

    let out = drover.run(&["deploy", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tests failed"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(drover.json(&["apps"]), serde_json::json!([]));

    let out = drover.ok(&["deploy", "--force", dir.path().to_str().unwrap()]);
    assert!(out.contains("deployed shop v1"), "{out}");
    let events = drover.ok(&["events", "shop"]);
    assert!(events.contains("deploy.forced"), "{events}");
}

#[test]
fn a_cancelled_run_stops_its_tests_and_a_newer_push_supersedes_a_queued_one() {
    let drover = Drover::new();
    drover.start();
    // A marker unique to this test run, so leftovers of other runs cannot be mistaken for ours.
    let marker = format!("slow-test-{}", std::process::id());
    let repo = shop_repo(&drover, |yaml| yaml.replace("- python3 test_app.py", &format!("- sleep 600; echo {marker}")));
    let slow = push(&repo, "main");
    wait_until("the slow test to start", std::time::Duration::from_secs(60), || {
        let ps = std::process::Command::new("pgrep").args(["-f", &marker]).output().unwrap();
        !ps.stdout.is_empty()
    });

    // Two more pushes while the first runs: the second supersedes the first of them.
    std::fs::write(repo.path().join("a.txt"), "a").unwrap();
    repo.commit_all("a");
    let queued = push(&repo, "main");
    std::fs::write(repo.path().join("b.txt"), "b").unwrap();
    repo.commit_all("b");
    let newest = push(&repo, "main");
    assert_eq!(run_json(&drover, &queued)["status"], "superseded");
    assert_eq!(run_json(&drover, &newest)["status"], "queued", "one run per app at a time");

    // The queued run goes first: once the slow one ends it would start, and its own tests
    // carry the same marker.
    drover.ok(&["cancel", &newest]);
    drover.ok(&["cancel", &slow]);
    wait_until("the cancelled run's test processes to end", std::time::Duration::from_secs(30), || {
        let ps = std::process::Command::new("pgrep").args(["-f", &marker]).output().unwrap();
        ps.stdout.is_empty()
    });
    assert_eq!(run_json(&drover, &slow)["status"], "cancelled");
    assert_eq!(run_json(&drover, &newest)["status"], "cancelled");
}

#[test]
fn a_server_killed_during_a_test_leaves_no_test_process_behind() {
    let drover = Drover::new();
    drover.start();
    // The test step leaves a `sleep` in its process group and says where it is; the shell waits
    // for it, so the step runs until someone stops it.
    let pids = shared_dir();
    let (shell_file, sleep_file) = (pids.path().join("shell"), pids.path().join("sleep"));
    let slow = format!(
        "- sleep 300 & echo $! > {sleep}.tmp; mv {sleep}.tmp {sleep}; echo $$ > {shell}; wait",
        sleep = sleep_file.display(),
        shell = shell_file.display()
    );
    let repo = shop_repo(&drover, |yaml| yaml.replace("- python3 test_app.py", &slow));
    let run = push(&repo, "main");
    let read_pid = |path: &Path| std::fs::read_to_string(path).ok()?.trim().parse::<u32>().ok();
    wait_until("the slow test to start", Duration::from_secs(60), || {
        read_pid(&sleep_file).is_some() && read_pid(&shell_file).is_some()
    });
    let processes: Vec<(u32, u64)> = [&sleep_file, &shell_file]
        .into_iter()
        .map(|path| {
            let pid = read_pid(path).unwrap();
            (pid, runtime::procfs::start_time(pid).unwrap_or_else(|| panic!("test process {pid} is not running")))
        })
        .collect();

    let server = drover.server_pid();
    assert!(std::process::Command::new("kill").args(["-9", &server.to_string()]).status().unwrap().success());
    wait_until("the killed server to be gone", Duration::from_secs(10), || {
        runtime::procfs::stat(server).is_none_or(|stat| stat.is_dead())
    });
    // Nobody stops a dead server's test processes by themselves, nor removes its scratch files.
    for &(pid, start_time) in &processes {
        assert!(runtime::procfs::is_alive(pid, start_time), "test process {pid} ended with the server");
    }
    let scratch = |dir: &str| std::fs::read_dir(drover.path(dir)).unwrap().count();
    assert!(scratch("tmp") > 0, "the run's work directories are in tmp/");

    drover.start();
    assert_eq!((scratch("tmp"), scratch("artifacts/tmp")), (0, 0), "a restarted server clears the scratch dirs");
    wait_until("the test processes a dead server left to be killed", Duration::from_secs(30), || {
        processes.iter().all(|&(pid, start_time)| !runtime::procfs::is_alive(pid, start_time))
    });
    let failed = run_json(&drover, &run);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["message"].as_str().unwrap().contains("interrupted"), "{failed}");
    assert_eq!(steps(&failed), ["checkout succeeded", "build succeeded", "test failed"], "{failed}");
    assert_eq!(step_message(&failed, "test"), "interrupted by a server stop");
}

#[test]
fn a_stage_never_takes_over_an_app_that_is_not_its_own() {
    let drover = Drover::new();
    drover.start();
    // Apps deployed by hand whose names a stage of `shop` would pick.
    for (name, greeting) in [("prod-shop", "untouchable"), ("shop-staging", "mine")] {
        let app = app_dir(name, &format!("env: {{GREETING: {greeting}}}"));
        drover.ok(&["deploy", app.path().to_str().unwrap()]);
    }

    let repo = shop_repo(&drover, |yaml| yaml);
    let pushed = |branch: &str| {
        repo.ok(&["checkout", "--quiet", "-B", branch]);
        let run = push(&repo, branch);
        // Exits non-zero for a failed run, which is one of the cases.
        drover.run(&["run", "logs", &run, "-f"]);
        run_json(&drover, &run)
    };
    let preview_of = |run: &serde_json::Value| {
        // "vN of APP is live"
        let message = step_message(run, "deploy:preview");
        message.split(' ').nth(2).unwrap_or_else(|| panic!("{message}")).to_owned()
    };

    // Branch `prod` would be `prod-shop`, which is taken: the preview gets its hashed name.
    let prod = pushed("prod");
    assert_eq!(prod["status"], "succeeded", "{prod}");
    let preview = preview_of(&prod);
    assert!(preview.starts_with("prod-") && preview.ends_with("-shop") && preview != "prod-shop", "{preview}");
    let (_, body) = drover.get("prod-shop", "/");
    assert!(body.contains("untouchable"), "{body}");
    assert_eq!(drover.json(&["releases", "prod-shop"]).as_array().unwrap().len(), 1);

    // Two branches with the same plain name get two apps; deleting one leaves the other.
    let slash = preview_of(&pushed("feature/login"));
    let dash = preview_of(&pushed("feature-login"));
    assert_eq!(slash, "feature-login-shop");
    assert_ne!(dash, slash);
    repo.ok(&["checkout", "--quiet", "main"]);
    let out = repo.ok(&["push", "drover", "--delete", "feature-login"]);
    assert!(out.contains(&format!("preview app {dash} destroyed")), "{out}");
    let (status, _) = drover.get(&slash, "/");
    assert_eq!(status, 200);
    // A branch pushed again keeps its preview app.
    std::fs::write(repo.path().join("more.txt"), "more").unwrap();
    repo.commit_all("more");
    assert_eq!(preview_of(&pushed("prod")), preview);

    // Staging has no fallback name: the run fails, saying whose the app is.
    let main = pushed("main");
    assert_eq!(main["status"], "failed", "{main}");
    let message = main["message"].as_str().unwrap();
    assert!(
        message.contains("shop-staging is taken: an app of that name exists and belongs to no pipeline stage"),
        "{message}"
    );
    let (_, body) = drover.get("shop-staging", "/");
    assert!(body.contains("mine"), "{body}");
}

#[test]
fn issue_9_a_cancelled_build_is_stopped_with_its_processes_and_a_slow_one_times_out() {
    let drover = Drover::new();
    drover.start();
    let pids = shared_dir();
    let pid_file = pids.path().join("build");
    let slow = format!("build:\n  - echo $$ > {0}.tmp; mv {0}.tmp {0}; sleep 600\n", pid_file.display());
    let repo = shop_repo(&drover, |yaml| yaml.replace("pipeline:", &format!("{slow}pipeline:")));
    let run = push(&repo, "main");
    let read_pid = || std::fs::read_to_string(&pid_file).ok()?.trim().parse::<u32>().ok();
    wait_until("the slow build to start", Duration::from_secs(60), || read_pid().is_some());
    let pid = read_pid().unwrap();
    let start_time = runtime::procfs::start_time(pid).expect("the build step runs");

    drover.ok(&["cancel", &run]);
    wait_until("the cancelled build's process to be gone", Duration::from_secs(30), || {
        !runtime::procfs::is_alive(pid, start_time)
    });
    wait_until("the run to end", Duration::from_secs(30), || run_json(&drover, &run)["status"] == "cancelled");
    let cancelled = run_json(&drover, &run);
    assert_eq!(steps(&cancelled), ["checkout succeeded", "build cancelled"], "{cancelled}");

    // The same build with a timeout fails by itself, saying why.
    std::fs::remove_file(&pid_file).unwrap();
    let yaml = std::fs::read_to_string(repo.path().join("drover.yml")).unwrap();
    std::fs::write(repo.path().join("drover.yml"), format!("build_timeout: 2s\n{yaml}")).unwrap();
    repo.commit_all("a build timeout");
    let run = push(&repo, "main");
    wait_until("the timed-out run to fail", Duration::from_secs(60), || run_json(&drover, &run)["status"] == "failed");
    let failed = run_json(&drover, &run);
    assert_eq!(steps(&failed), ["checkout succeeded", "build failed"], "{failed}");
    assert!(step_message(&failed, "build").contains("build_timeout of 2s"), "{failed}");
    let pid = read_pid().unwrap();
    assert!(runtime::procfs::stat(pid).is_none_or(|stat| stat.is_dead()), "the timed-out step is gone");
}
