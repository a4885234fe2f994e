//! Issue 9: one app, one push or one bad input never hurts another. Each test is named after the
//! finding of the attack run it replays, through the real binary over loopback.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Whether user `nobody` can read `path`.
fn nobody_reads(path: &Path) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn issue_9_f3_an_empty_or_short_token_file_keeps_the_server_from_starting() {
    let drover = Drover::new();
    let http = drover.http.to_string();
    let start = ["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0"];
    for (content, says) in [("", "is empty"), ("\n", "is empty"), ("short", "fewer than the 32")] {
        std::fs::write(drover.path("token"), content).unwrap();
        let out = drover.run(&start);
        let error = stderr_of(&out);
        assert!(!out.status.success(), "started with token {content:?}");
        assert!(error.contains(&drover.path("token").display().to_string()) && error.contains(says), "{error}");
        assert!(!drover.path("server.json").exists());
    }
    // With the file gone, a new token is made, whole, readable by this user only.
    std::fs::remove_file(drover.path("token")).unwrap();
    drover.start();
    let token = std::fs::read_to_string(drover.path("token")).unwrap();
    assert_eq!(token.len(), 64, "{token:?}");
    assert_eq!(mode(&drover.path("token")), 0o600);
}

#[test]
fn issue_9_f5_the_data_dir_is_private_and_tightened_on_every_start() {
    let drover = Drover::new();
    drover.start();
    drover.ok(&["config", "set", "shop", "DATABASE_URL=postgres://u:hunter2@db/shop"]);
    let root = drover.data.path();
    // As an older version, or a careless copy, left it: readable by everyone.
    let loosen = std::process::Command::new("chmod").args(["-R", "go+rX"]).arg(root).status().unwrap();
    assert!(loosen.success());
    assert!(nobody_reads(&drover.path("state.db")), "the test must start from a readable state.db");
    drover.ok(&["server", "stop"]);
    // The secret key is not quietly kept: a key others could read is refused by name.
    let http = drover.http.to_string();
    let out = drover.run(&["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0"]);
    assert!(!out.status.success() && stderr_of(&out).contains("secret.key has mode 644"), "{}", stderr_of(&out));
    std::fs::set_permissions(drover.path("secret.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    drover.start();
    // Apps' own users pass through the root, `instances` and `tmp` to what was handed to them,
    // and list nothing.
    assert_eq!(mode(root), 0o711);
    for file in ["state.db", "token", "settings.json", "server.json", "server.log", "proxy.json"] {
        assert_eq!(mode(&drover.path(file)), 0o600, "{file}");
    }
    for (dir, expected) in [("logs", 0o700), ("instances", 0o711), ("tmp", 0o711)] {
        assert_eq!(mode(&drover.path(dir)), expected, "{dir}");
    }
    // The check that matters: another local user reads nothing, the config var included.
    for file in ["state.db", "token", "server.log"] {
        assert!(!nobody_reads(&drover.path(file)), "nobody can read {file}");
    }
}

#[test]
fn issue_9_f6_git_remote_pushes_with_the_token_in_no_command_line_and_no_file() {
    let drover = Drover::new();
    drover.start();
    let token = std::fs::read_to_string(drover.path("token")).unwrap().trim().to_owned();
    let repo = Repo::new();
    let app = app_dir("creds", "");
    for file in ["app.py", "drover.yml"] {
        std::fs::copy(app.path().join(file), repo.path().join(file)).unwrap();
    }
    repo.commit_all("creds");
    // A helper in the user's global config that would save any password it is told of.
    repo.ok(&["config", "--global", "credential.helper", "store"]);

    let out = drover.command(&["git-remote"]).current_dir(repo.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let url = repo.ok(&["remote", "get-url", "drover"]);
    assert!(url.trim().ends_with("/git/creds.git") && !url.contains(&token), "{url}");

    // Watch every process's command line while the push runs.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = std::thread::spawn({
        let watching = watching.clone();
        let token = token.clone();
        move || {
            let mut seen = Vec::new();
            let mut scans = 0u32;
            while watching.load(std::sync::atomic::Ordering::Relaxed) && scans < 100_000 {
                scans += 1;
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                        if String::from_utf8_lossy(&cmdline).contains(&token) {
                            seen.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
                        }
                    }
                }
            }
            seen
        }
    });
    let pushed = repo.git(&["push", "drover", "main"]);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&pushed.stdout), stderr_of(&pushed));
    assert!(pushed.status.success(), "{output}");
    assert!(output.contains("drover: run "), "{output}");
    assert!(seen.is_empty(), "the token was on a command line: {seen:?}");
    let config = std::fs::read_to_string(repo.path().join(".git/config")).unwrap();
    assert!(!config.contains(&token), "{config}");
    // The global `store` helper was neither asked nor told: nothing saved the token.
    let home = repo.ok(&["config", "--global", "--list", "--show-origin"]);
    let home_dir = home.lines().find_map(|l| l.strip_prefix("file:")).and_then(|l| l.split('\t').next()).unwrap();
    let credentials = Path::new(home_dir).parent().unwrap().join(".git-credentials");
    assert!(!credentials.exists(), "{}", std::fs::read_to_string(&credentials).unwrap_or_default());

    // The helper answers the running server's address only: not another host, and not the
    // remembered address once the server stopped (anyone could listen there then).
    let ask = |host: &str| {
        let mut child = drover
            .command(&["git-credential", "get"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        write!(child.stdin.take().unwrap(), "protocol=http\nhost={host}\n\n").unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let api = api_addr(&drover);
    assert!(ask(&api).contains(&format!("password={token}")));
    assert_eq!(ask("other-host.invalid"), "");
    drover.ok(&["server", "stop"]);
    assert_eq!(ask(&api), "", "a stopped server's address gets no token");
}

/// Deploys DIR by hand and returns the CLI's output, failing the test if the deploy failed.
/// Removes the artifact of `app`'s latest release, unpacked and packed, and returns where the
/// packed slug was.
fn remove_artifact(drover: &Drover, app: &str) -> std::path::PathBuf {
    let digest = drover.json(&["releases", app])[0]["digest"].as_str().unwrap().to_owned();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let unpacked = drover.path("artifacts/unpacked").join(hex);
    std::process::Command::new("chmod").args(["-R", "u+w"]).arg(&unpacked).status().unwrap();
    std::fs::remove_dir_all(&unpacked).unwrap();
    let slug = drover.path("artifacts/slugs").join(format!("{hex}.tar.gz"));
    std::fs::remove_file(&slug).unwrap();
    slug
}

fn deploy(drover: &Drover, dir: &Path) -> String {
    drover.ok(&["deploy", dir.to_str().unwrap()])
}

#[test]
fn issue_9_f1_a_host_is_one_apps_for_uploads_and_rollbacks() {
    let drover = Drover::new();
    drover.start();
    let shop = app_dir("shop", "routing: {hosts: [shop.example.com]}");
    deploy(&drover, shop.path());
    // Another app naming shop's host, or shop's own APP.DOMAIN, is refused before a build.
    let blog = app_dir("blog", "routing: {hosts: [shop.example.com]}");
    let out = drover.run(&["deploy", blog.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("shop.example.com is already served by app shop"), "{}", stderr_of(&out));
    write_config(blog.path(), "blog", "routing: {hosts: [shop.localhost]}");
    let out = drover.run(&["deploy", blog.path().to_str().unwrap()]);
    assert!(stderr_of(&out).contains("shop.localhost is already served by app shop"), "{}", stderr_of(&out));

    // shop lets go of its host; blog takes it; a rollback of shop to v1 cannot take it back.
    write_config(shop.path(), "shop", "");
    deploy(&drover, shop.path());
    write_config(blog.path(), "blog", "routing: {hosts: [shop.example.com]}");
    deploy(&drover, blog.path());
    assert_eq!(drover.get_host("shop.example.com", "/").0, 200);
    let deploys_before = drover.json(&["events", "shop"]).as_array().unwrap().len();
    let out = drover.run(&["rollback", "v1", "-a", "shop"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("shop.example.com is already served by app blog"), "{}", stderr_of(&out));
    let releases = drover.json(&["releases", "shop"]);
    assert_eq!(releases.as_array().unwrap().len(), 2, "a refused rollback makes no release: {releases}");
    assert_eq!(drover.json(&["events", "shop"]).as_array().unwrap().len(), deploys_before);
    // Both apps kept serving throughout.
    assert_eq!(drover.get("shop", "/").0, 200);
    assert_eq!(drover.get("blog", "/").0, 200);
}

/// A git repository of `app` with `yaml` as its drover.yml (plus the example's app and tests),
/// pushing to this server through `drover git-remote`.
fn pushed_repo(drover: &Drover, app: &str, yaml: &str) -> Repo {
    let repo = Repo::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-python");
    for file in ["app.py", "test_app.py"] {
        std::fs::copy(example.join(file), repo.path().join(file)).unwrap();
    }
    std::fs::write(repo.path().join("drover.yml"), yaml).unwrap();
    repo.commit_all(app);
    let out = drover.command(&["git-remote", "-a", app]).current_dir(repo.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    repo
}

/// Pushes `branch`, waits for the run it queued to end, and returns the run as JSON.
fn push_and_wait(drover: &Drover, repo: &Repo, branch: &str) -> serde_json::Value {
    let out = repo.ok(&["push", "drover", branch]);
    let run = run_id(&out[out.find("drover: run ").unwrap() + "drover: ".len()..]);
    let _ = drover.run(&["run", "logs", &run, "-f"]);
    drover.json(&["run", "show", &run])
}

const STAGED: &str = r#"app: shop
processes:
  web: python3 app.py
health: {path: /healthz, interval: 200ms, timeout: 1s, start_period: 5s}
routing: {hosts: [shop.example.com]}
pipeline:
  test:
    run: python3 test_app.py
  stages:
    - {name: staging, branches: [main]}
    - {name: production, branches: [main], after: staging}
"#;

#[test]
fn issue_9_f1_stage_apps_get_their_own_hosts_and_a_pushed_app_cannot_take_one() {
    let drover = Drover::new();
    drover.start();
    let shop = pushed_repo(&drover, "shop", STAGED);
    let run = push_and_wait(&drover, &shop, "main");
    assert_eq!(run["status"], "succeeded", "{run}");
    // Staging and production both live, each on its own host; routing was never frozen.
    assert_eq!(drover.get_host("shop.example.com", "/").0, 200);
    assert_eq!(drover.get_host("staging.shop.example.com", "/").0, 200);
    let staging = drover.json(&["releases", "shop-staging"]);
    assert_eq!(staging.as_array().unwrap().len(), 1, "{staging}");

    // A pushed app naming shop's host fails its own deploy, saying whose the host is...
    let thief = STAGED.replace("app: shop", "app: thief").replace("pipeline:", "unused:");
    let thief = thief.split("unused:").next().unwrap().to_owned();
    let repo = pushed_repo(&drover, "thief", &thief);
    let run = push_and_wait(&drover, &repo, "main");
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["message"].as_str().unwrap().contains("shop.example.com is already served by app shop"), "{run}");
    // ...and nothing else: shop serves, and a later deploy of another app goes live.
    assert_eq!(drover.get_host("shop.example.com", "/").0, 200);
    let other = app_dir("other", "");
    deploy(&drover, other.path());
    assert_eq!(drover.get("other", "/").0, 200);
    let refused = drover.json(&["events"]);
    assert!(!refused.to_string().contains("routes.refused"), "the proxy refused nothing: {refused}");
}

#[test]
fn issue_9_f12_a_stage_app_is_released_only_by_its_stage() {
    let drover = Drover::new();
    drover.start();
    let yaml = STAGED
        .replace("routing: {hosts: [shop.example.com]}\n", "")
        .replace("    - {name: production, branches: [main], after: staging}\n", "");
    let shop = pushed_repo(&drover, "shop", &yaml);
    let run = push_and_wait(&drover, &shop, "main");
    assert_eq!(run["status"], "succeeded", "{run}");
    let before = drover.json(&["releases", "shop-staging"]);

    // By hand: refused, naming the stage.
    let hand = app_dir("shop-staging", "");
    let out = drover.run(&["deploy", "--force", hand.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("is the staging app of shop's pipeline"), "{}", stderr_of(&out));
    // By a push to its own repository: the run fails, the stage app is untouched.
    let own = yaml
        .replace("app: shop", "app: shop-staging")
        .replace("    - {name: staging, branches: [main]}\n", "    - {name: production, branches: [main]}\n");
    let repo = pushed_repo(&drover, "shop-staging", &own);
    let run = push_and_wait(&drover, &repo, "main");
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["message"].as_str().unwrap().contains("released only by that stage"), "{run}");
    // Vars set on it directly would never reach its releases: refused, pointing at the stage.
    let out = drover.run(&["config", "set", "shop-staging", "LEVEL=debug"]);
    assert!(stderr_of(&out).contains("--stage staging"), "{}", stderr_of(&out));
    assert_eq!(drover.json(&["releases", "shop-staging"]), before);
    // The stage itself still can.
    drover.ok(&["config", "set", "shop", "--stage", "staging", "LEVEL=debug"]);
    wait_until("a staging release with the var", Duration::from_secs(60), || {
        drover.json(&["releases", "shop-staging"]).as_array().unwrap().len() == 2
    });
}

#[test]
fn issue_9_f2_a_broken_app_never_slows_an_unrelated_deploy() {
    let drover = Drover::new();
    drover.start();
    // The broken app sorts first, so a pass that stopped at its error would reach nothing else.
    let broken = app_dir("aaa-broken", "");
    deploy(&drover, broken.path());
    // Its artifact is lost, so no new instance of it can start.
    remove_artifact(&drover, "aaa-broken");
    drover.ok(&["scale", "web=3", "-a", "aaa-broken"]);
    wait_until("the broken app's error to be recorded", Duration::from_secs(30), || {
        drover.json(&["events", "aaa-broken"]).to_string().contains("app.error")
    });

    // An unrelated app deploys, is routed and serves while the broken one keeps failing.
    let fine = app_dir("zzz-fine", "scale: {web: 2}");
    let out = deploy(&drover, fine.path());
    assert!(out.contains("is live"), "{out}");
    drover.wait_settled("zzz-fine", 1, 2);
    assert_eq!(drover.get("zzz-fine", "/").0, 200);
    // The broken app's running instance still serves, and its error is its own.
    assert_eq!(drover.get("aaa-broken", "/").0, 200);
    let events = drover.json(&["events", "zzz-fine"]).to_string();
    assert!(!events.contains("app.error"), "{events}");
}

#[test]
fn issue_9_attack_a_deploy_superseded_by_a_newer_release_ends_instead_of_waiting_for_ever() {
    let drover = Drover::new();
    drover.start();
    // Slow to become healthy, so the first rollout is still going when config makes v2.
    let slow = app_dir("slow", "");
    let yaml = std::fs::read_to_string(slow.path().join("drover.yml")).unwrap();
    std::fs::write(
        slow.path().join("drover.yml"),
        yaml.replace("web: python3 app.py", "web: sleep 3; exec python3 app.py"),
    )
    .unwrap();
    let first = drover.json(&["deploy", "--no-wait", slow.path().to_str().unwrap()]);
    assert!(first["id"].is_u64(), "{first}");
    wait_until("release v1", Duration::from_secs(60), || {
        let out = drover.run(&["--json", "releases", "slow"]);
        out.status.success() && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["id"] == 1
    });
    drover.ok(&["config", "set", "slow", "LEVEL=debug"]);
    wait_until("the first deploy to end as superseded", Duration::from_secs(30), || {
        drover.json(&["events", "slow"]).to_string().contains(&"superseded by v2".to_string())
    });
    drover.wait_settled("slow", 2, 1);
    let events = drover.json(&["events", "slow"]).to_string();
    assert!(events.contains("deploy.superseded") && events.contains("deploy.succeeded"), "{events}");
}

#[test]
fn issue_9_f2_the_variables_of_an_app_must_fit_a_process_together() {
    let drover = Drover::new();
    drover.start();
    let value = "x".repeat(30_000);
    for idx in 0..8 {
        drover.ok(&["config", "set", "roomy", &format!("VAR_{idx}={value}")]);
    }
    // Each is fine alone; together with the others the ninth would not fit in an environment.
    let out = drover.run(&["config", "set", "roomy", &format!("VAR_8={value}")]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("more than 262144"), "{}", stderr_of(&out));
    let mut secret = drover.command(&["secrets", "set", "roomy", "BIG_SECRET"]);
    let mut child = secret.stdin(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success() && stderr_of(&out).contains("more than 262144"), "{}", stderr_of(&out));
    // Replacing a var with a smaller one still works.
    drover.ok(&["config", "set", "roomy", "VAR_0=small"]);
}

/// Says, for `$1` (where it runs: build, test or web), whatever of Drover's state or another
/// app's it could reach, and its uid.
const PROBE: &str = r#"
where=$1
for f in token secret.key state.db server.log settings.json; do
  cat "$DATA/$f" >/dev/null 2>&1 && echo "$where read $f"
done
ls "$DATA" >/dev/null 2>&1 && echo "$where listed the data dir"
ls "$DATA/logs" >/dev/null 2>&1 && echo "$where listed the logs"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$DATA/proxy.sock" 2>/dev/null \
  && echo "$where reached the proxy's admin socket"
for p in /proc/[0-9]*; do
  # The app that holds the secret sees it in its own processes; any other app must not.
  [ -z "$OTHER_APP_SECRET" ] && cat "$p/environ" 2>/dev/null | tr '\0' '\n' | grep -q '^OTHER_APP_SECRET=' \
    && echo "$where read another app's environ"
  # cargo puts CARGO in the environment of the tests, and so of the server they start.
  cat "$p/environ" 2>/dev/null | tr '\0' '\n' | grep -q '^CARGO=' && echo "$where read the server's environ"
done
echo "$where uid $(id -u)"
"#;

#[test]
fn issue_9_attack_apps_builds_and_tests_run_as_users_of_their_own_and_reach_nothing_of_drover() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: apps run as users of their own only when Drover is root");
        return;
    }
    let drover = Drover::new();
    drover.start();
    let data = drover.data.path().display().to_string();
    // The first app holds a value the second must not see in its environment.
    let deploy = |name: &str, env: &str| {
        let extra = format!(
            "build:\n  - sh probe.sh build\npipeline:\n  test:\n    run: sh probe.sh test\nenv:\n  DATA: {data}\n{env}"
        );
        let dir = app_dir(name, &extra);
        std::fs::write(dir.path().join("probe.sh"), PROBE).unwrap();
        let yaml = std::fs::read_to_string(dir.path().join("drover.yml")).unwrap();
        std::fs::write(
            dir.path().join("drover.yml"),
            yaml.replace("web: python3 app.py", "web: sh probe.sh web; exec python3 app.py"),
        )
        .unwrap();
        let out = drover.run(&["deploy", dir.path().to_str().unwrap()]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr_of(&out));
        assert!(out.status.success(), "{text}");
        text
    };
    let first = deploy("holder", "  OTHER_APP_SECRET: s3cret\n");
    let second = deploy("prober", "");
    let logs = |app: &str| drover.ok(&["logs", app, "--tail", "1000"]);
    wait_until("both apps' instances to probe", Duration::from_secs(30), || {
        logs("holder").contains("web uid") && logs("prober").contains("web uid")
    });
    let everything = format!("{first}\n{second}\n{}\n{}", logs("holder"), logs("prober"));
    for reached in ["read ", "listed", "reached", "environ"] {
        let hits: Vec<&str> =
            everything.lines().filter(|l| l.contains(reached) && !l.contains("uid")).take(10).collect();
        assert!(hits.is_empty(), "an app's code reached what is not its own: {hits:?}");
    }
    // Each app has one user of its own for its build, its tests and its instances.
    let uids = |text: &str| -> std::collections::BTreeSet<u32> {
        text.lines().filter_map(|l| l.split(" uid ").nth(1)).filter_map(|uid| uid.trim().parse().ok()).collect()
    };
    let (holder, prober) = (uids(&format!("{first}{}", logs("holder"))), uids(&format!("{second}{}", logs("prober"))));
    assert_eq!(holder.len(), 1, "{holder:?}\n{everything}");
    assert_eq!(prober.len(), 1, "{prober:?}\n{everything}");
    assert_ne!(holder, prober);
    assert!(holder.iter().chain(&prober).all(|&uid| uid >= 1_900_000_000), "{holder:?} {prober:?}");
    // The probes ran: as build, as test and as web, for both apps.
    for (text, app) in [(&first, "holder"), (&second, "prober")] {
        let all = format!("{text}{}", logs(app));
        for place in ["build uid", "test uid", "web uid"] {
            assert!(all.contains(place), "{app}: no {place:?} in {all}");
        }
    }
}

#[test]
fn issue_9_attack_a_start_that_hangs_delays_no_other_app_and_no_route() {
    let drover = Drover::new();
    drover.start();
    let stuck = app_dir("aaa-stuck", "");
    deploy(&drover, stuck.path());
    // Its next instance must unpack the slug again, and the slug is now a FIFO nobody writes
    // to: opening it blocks, as a file on a hung network mount would.
    let slug = remove_artifact(&drover, "aaa-stuck");
    let made = std::process::Command::new("mkfifo").arg(&slug).status().unwrap();
    assert!(made.success());
    drover.ok(&["scale", "web=2", "-a", "aaa-stuck"]);
    wait_until("the stuck start to begin", Duration::from_secs(30), || drover.instances("aaa-stuck").len() == 2);

    // While it hangs, another app deploys, is routed and serves, and the stuck app's running
    // instance keeps serving.
    let fine = app_dir("zzz-fine", "");
    let out = deploy(&drover, fine.path());
    assert!(out.contains("is live"), "{out}");
    assert_eq!(drover.get("zzz-fine", "/").0, 200);
    assert_eq!(drover.get("aaa-stuck", "/").0, 200);
    assert_eq!(drover.instances("aaa-stuck").len(), 2, "the stuck start is still under way");

    // Once the file answers (empty: not the slug), the start fails and is recorded against its
    // app alone; the FIFO is gone before it answers, so the retries fail at once.
    let writer = std::fs::OpenOptions::new().write(true).open(&slug).unwrap();
    std::fs::remove_file(&slug).unwrap();
    drop(writer);
    wait_until("the failed start to be recorded", Duration::from_secs(30), || {
        drover.json(&["events", "aaa-stuck"]).to_string().contains("app.error")
    });
    assert!(!drover.json(&["events", "zzz-fine"]).to_string().contains("app.error"));
}
