//! `git push` to Drover with the real git client over smart HTTP: a push queues a run that
//! builds and deploys; bad pushes are refused with a clear message and change nothing; a push
//! cut off by a `kill -9` of the server leaves no git behind and loses no run; git on pushed
//! data never uses the operator's git configuration.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// `data` as a git pkt-line.
fn pkt_line(data: &str) -> Vec<u8> {
    format!("{:04x}{data}", data.len() + 4).into_bytes()
}

/// POSTs `body` to the smart-HTTP endpoint `path` of the server's git remote, with the API
/// token and the given `Content-Encoding`; returns the status and the answer.
fn post_git(drover: &Drover, path: &str, content_type: &str, encoding: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let url = format!("http://{}/git/{path}", api_addr(drover));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let answer = client
            .post(url)
            .basic_auth("drover", Some(token(drover)))
            .header("content-type", content_type)
            .header("content-encoding", encoding)
            .body(body)
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.bytes().await.unwrap().to_vec())
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn issue_9_f4_push_limit_counts_the_inflated_body() {
    let drover = Drover::new();
    let http = drover.http.to_string();
    let limit = 1_000_000;
    let limit_flag = limit.to_string();
    drover.ok(&["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0", "--push-limit", &limit_flag]);
    let repo = pushed_repo(&drover, "bomb");
    let first = head(&repo);
    let bare = drover.path("repos/bomb.git");
    let stored = || {
        let git = |args: &[&str]| {
            let out = Command::new("git").arg("--git-dir").arg(&bare).args(args).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let packs: Vec<String> = std::fs::read_dir(bare.join("objects/pack"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        format!("{}main {}packs {packs:?}", git(&["count-objects", "-v"]), git(&["rev-parse", "main"]))
    };
    let before = stored();

    // A push of 3 MB of zeros, stored uncompressed in its pack, gzipped to a few kilobytes.
    std::fs::write(repo.path().join("zeros.bin"), vec![0u8; 3_000_000]).unwrap();
    repo.commit_all("zeros");
    let second = head(&repo);
    let mut pack_objects = Command::new("git")
        .args(["-c", "pack.compression=0", "pack-objects", "--stdout", "--revs", "--window=0", "-q"])
        .current_dir(repo.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        write!(pack_objects.stdin.take().unwrap(), "{second}\n^{first}\n").unwrap();
    }
    let pack = pack_objects.wait_with_output().unwrap();
    assert!(pack.status.success() && pack.stdout.len() > 3 * limit, "pack of {} bytes", pack.stdout.len());
    let mut request = pkt_line(&format!("{first} {second} refs/heads/main\0report-status\n"));
    request.extend_from_slice(b"0000");
    request.extend_from_slice(&pack.stdout);
    let bomb = gzip(&request);
    assert!(bomb.len() < limit / 10, "gzipped to {} bytes", bomb.len());

    let (status, answer) =
        post_git(&drover, "bomb.git/git-receive-pack", "application/x-git-receive-pack-request", "gzip", bomb);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("nothing was stored"), "{answer}");
    assert_eq!(stored(), before, "the refused push stored something");

    // Fetches stay gzipped as git clients send them: git reads the inflated request.
    let mut fetch = pkt_line(&format!("want {first}\n"));
    fetch.extend_from_slice(b"0000");
    fetch.extend_from_slice(&pkt_line("done\n"));
    let (status, answer) =
        post_git(&drover, "bomb.git/git-upload-pack", "application/x-git-upload-pack-request", "gzip", gzip(&fetch));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert!(answer.starts_with(b"0008NAK\n") && answer.windows(4).any(|w| w == b"PACK"), "{answer:?}");

    // Any other encoding is refused before git sees it.
    let (status, answer) =
        post_git(&drover, "bomb.git/git-upload-pack", "application/x-git-upload-pack-request", "br", fetch);
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(stored(), before);
}

#[test]
fn a_push_changing_only_app_code_reuses_the_dependency_layer() {
    let drover = Drover::new();
    drover.start();
    let outside = shared_dir();
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

/// A repository of one commit of app `name`, with `drover` as its remote; its first push went
/// through (which creates Drover's repository).
fn pushed_repo(drover: &Drover, name: &str) -> Repo {
    let repo = Repo::new();
    let app = app_dir(name, "");
    for file in ["app.py", "drover.yml"] {
        std::fs::copy(app.path().join(file), repo.path().join(file)).unwrap();
    }
    repo.commit_all("first");
    repo.ok(&["remote", "add", "drover", &remote(drover, name, &token(drover))]);
    let out = repo.ok(&["push", "drover", "main"]);
    assert!(out.contains("queued for branch \"main\""), "{out}");
    repo
}

fn head(repo: &Repo) -> String {
    repo.ok(&["rev-parse", "HEAD"]).trim().to_owned()
}

fn kill_server(drover: &Drover) {
    let server = drover.server_pid();
    assert!(Command::new("kill").args(["-9", &server.to_string()]).status().unwrap().success());
    wait_until("the killed server to be gone", Duration::from_secs(10), || {
        runtime::procfs::stat(server).is_none_or(|stat| stat.is_dead())
    });
}

/// The live processes working on Drover's repository `bare`: their working directory is in
/// it, their command line names it, or they are the `git http-backend` serving it.
fn repo_processes(bare: &Path) -> Vec<String> {
    let app_path = format!("PATH_INFO=/{}/", bare.file_name().unwrap().to_str().unwrap());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || runtime::procfs::stat(pid).is_none_or(|stat| stat.is_dead()) {
            continue;
        }
        let proc = entry.path();
        let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd_in_repo = std::fs::read_link(proc.join("cwd")).is_ok_and(|cwd| cwd.starts_with(bare));
        let serves_repo = std::fs::read(proc.join("environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|item| item.starts_with(app_path.as_bytes())));
        if cwd_in_repo || serves_repo || cmdline.contains(bare.to_str().unwrap()) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Quarantine directories of pushes in progress (or of pushes killed in progress).
fn quarantines(bare: &Path) -> Vec<String> {
    std::fs::read_dir(bare.join("objects"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("tmp_objdir-incoming-") || name.starts_with("incoming-"))
        .collect()
}

#[test]
fn issue_9_f4_kill_9_during_push_leaves_no_git_process() {
    let drover = Drover::new();
    drover.start();
    let repo = pushed_repo(&drover, "killed");
    std::fs::write(repo.path().join("more.txt"), "more").unwrap();
    repo.commit_all("second");
    let bare = drover.path("repos/killed.git");
    // The next push stops in its quarantine, with `receive-pack` checking the pushed commits:
    // git reads `info/grafts` when it parses them, and opening a FIFO without a writer blocks.
    let grafts = bare.join("info/grafts");
    std::fs::create_dir_all(bare.join("info")).unwrap();
    assert!(Command::new("mkfifo").arg(&grafts).status().unwrap().success());
    std::thread::scope(|scope| {
        let push = scope.spawn(|| repo.git(&["push", "drover", "main"]));
        wait_until("the push to block in its quarantine", Duration::from_secs(60), || {
            !quarantines(&bare).is_empty() && !repo_processes(&bare).is_empty()
        });
        kill_server(&drover);
        assert!(!push.join().unwrap().status.success(), "the push cannot succeed without its server");
    });
    // `git http-backend` dies with the server; what it started is blocked until the next start.
    wait_until("git http-backend to die with the server", Duration::from_secs(10), || {
        repo_processes(&bare).iter().all(|p| !p.contains("http-backend"))
    });
    std::fs::remove_file(&grafts).unwrap();

    drover.start();
    assert_eq!(quarantines(&bare), Vec::<String>::new(), "a restarted server removes quarantines");
    wait_until("no git process of the repository to be left", Duration::from_secs(30), || {
        repo_processes(&bare).is_empty()
    });
    // The restarted server listens on a new port.
    repo.ok(&["remote", "set-url", "drover", &remote(&drover, "killed", &token(&drover))]);
    let out = repo.ok(&["push", "drover", "main"]);
    assert!(!out.contains("Everything up-to-date") && out.contains("queued for branch \"main\""), "{out}");
    let run = drover.json(&["run", "show", &run_id(&out)]);
    assert_eq!(run["commit"], head(&repo), "{run}");
}

#[test]
fn issue_9_f4_push_stored_without_a_run_is_queued_on_restart() {
    let drover = Drover::new();
    drover.start();
    let repo = pushed_repo(&drover, "stored");
    std::fs::write(repo.path().join("more.txt"), "more").unwrap();
    repo.commit_all("second");
    let bare = drover.path("repos/stored.git");
    // An operator's hook that stops the push just after the branch moved, before Drover's
    // post-receive hook can queue its run: where a `kill -9` of the server leaves a push.
    let outside = tempfile::tempdir().unwrap();
    let moved = outside.path().join("moved");
    let hook = bare.join("hooks/reference-transaction");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\n[ \"$1\" = committed ] || exit 0\ntouch '{}'\nexec sleep 300\n", moved.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::thread::scope(|scope| {
        let push = scope.spawn(|| repo.git(&["push", "drover", "main"]));
        wait_until("the push to move the branch", Duration::from_secs(60), || moved.exists());
        kill_server(&drover);
        push.join().unwrap();
    });
    std::fs::remove_file(&hook).unwrap();
    let stored = Command::new("git")
        .args(["--git-dir", bare.to_str().unwrap(), "rev-parse", "refs/heads/main"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&stored.stdout).trim(), head(&repo), "the branch moved before the kill");

    drover.start();
    wait_until("no git process of the repository to be left", Duration::from_secs(30), || {
        repo_processes(&bare).is_empty()
    });
    let runs = drover.json(&["runs", "stored"]);
    let of_head: Vec<&serde_json::Value> =
        runs.as_array().unwrap().iter().filter(|r| r["commit"] == head(&repo).as_str()).collect();
    assert_eq!(of_head.len(), 1, "the stored push gets one run: {runs}");
    assert_eq!(of_head[0]["branch"], "main");
    let logs = drover.ok(&["run", "logs", &of_head[0]["id"].to_string(), "-f"]);
    assert!(logs.contains("its run was not queued") && logs.contains("run succeeded"), "{logs}");

    // A second start finds the run and queues nothing more.
    drover.ok(&["server", "stop"]);
    drover.start();
    let runs = drover.json(&["runs", "stored"]);
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
}

#[test]
fn issue_9_f13_checkout_runs_no_filter_or_hook_of_the_operators_git_config() {
    // The operator's git configuration names a filter driver and a hooks directory, in the
    // global config file and in `GIT_CONFIG_*` variables; each would leave a marker.
    let home = tempfile::tempdir().unwrap();
    let marker = |name: &str| home.path().join(name);
    let hooks = home.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    for hook in ["pre-receive", "post-receive"] {
        use std::os::unix::fs::PermissionsExt;
        let path = hooks.join(hook);
        std::fs::write(&path, format!("#!/bin/sh\ntouch '{}'\n", marker("hook-ran").display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let gitconfig = home.path().join(".gitconfig");
    std::fs::write(
        &gitconfig,
        format!(
            "[filter \"evil\"]\n\tsmudge = \"touch '{}'; cat\"\n\tclean = cat\n[core]\n\thooksPath = {}\n",
            marker("global-filter-ran").display(),
            hooks.display()
        ),
    )
    .unwrap();
    let drover = Drover::new();
    let http = drover.http.to_string();
    let out = drover
        .command(&["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env("GIT_CONFIG_GLOBAL", &gitconfig)
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "filter.fromenv.smudge")
        .env("GIT_CONFIG_VALUE_0", format!("touch '{}'; cat", marker("env-filter-ran").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let repo = Repo::new();
    let app = app_dir("filtered", "");
    for file in ["app.py", "drover.yml"] {
        std::fs::copy(app.path().join(file), repo.path().join(file)).unwrap();
    }
    std::fs::write(repo.path().join(".gitattributes"), "*.py filter=evil\ndrover.yml filter=fromenv\n").unwrap();
    repo.commit_all("names the operator's filters");
    repo.ok(&["remote", "add", "drover", &remote(&drover, "filtered", &token(&drover))]);
    let out = repo.ok(&["push", "drover", "main"]);
    assert!(out.contains("queued for branch \"main\""), "Drover's own hooks ran: {out}");
    let logs = drover.ok(&["run", "logs", &run_id(&out), "-f"]);
    assert!(logs.contains("run succeeded"), "{logs}");
    for name in ["global-filter-ran", "env-filter-ran", "hook-ran"] {
        assert!(!marker(name).exists(), "{name}: git used the operator's configuration");
    }
}
