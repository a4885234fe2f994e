//! The server with `--runtime docker`: slugs run as containers of a stack image on the local
//! Docker engine (which `scripts/test` starts; elsewhere the tests say they were skipped), behind the same proxy, health checks and
//! rollouts as processes. The stack image is built here from the host's static busybox, since no
//! registry can be reached; the app is busybox's `httpd` serving files of the slug.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const STACK: &str = "drover-test-busybox:1";

/// Builds the stack image, or says why the calling test is skipped (`None`) where Docker cannot
/// run: `scripts/test` sets `DROVER_REQUIRE_DOCKER=1`, which makes that a failure instead.
fn build_stack_image() -> Option<()> {
    if let Some(why) = testkit::docker_skip() {
        eprintln!("skipped: {why}");
        return None;
    }
    testkit::busybox_image(STACK, "");
    Some(())
}

/// The ids of the containers of this server's data directory, running or not.
fn containers(drover: &Drover) -> Vec<String> {
    let label = format!("label=io.drover.root={}", drover.path("containers").display());
    let out = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &label]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

fn write_site(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/healthz"), "ok\n").unwrap();
    std::fs::write(dir.join("www/index.html"), format!("{version}\n")).unwrap();
    std::fs::write(
        dir.join("drover.yml"),
        "app: boxed\nprocesses:\n  web: exec httpd -f -p \"$PORT\" -h /app/www\nscale: {web: 2}\n\
         health: {path: /healthz, interval: 200ms, timeout: 1s, start_period: 5s}\n\
         deploy: {strategy: rolling, max_surge: 1, max_unavailable: 0, stop_grace: 2s}\n\
         pipeline:\n  test:\n    run: '[ \"$(pwd)\" = /app ] && test -f www/index.html && echo tested in the stack image'\n",
    )
    .unwrap();
}

#[test]
fn slugs_run_as_containers_roll_out_without_a_failed_request_and_stop_with_the_server() {
    let Some(()) = build_stack_image() else { return };
    let drover = Drover::new();
    let http = drover.http.to_string();
    let start = ["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0"];
    let out = drover.run(&[&start[..], &["--runtime", "docker"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--stack-image"), "{stderr}");
    drover.ok(&[&start[..], &["--runtime", "docker", "--stack-image", STACK]].concat());

    let app = tempfile::tempdir().unwrap();
    write_site(app.path(), "v1");
    let out = drover.ok(&["deploy", app.path().to_str().unwrap()]);
    // The tests ran where the release runs: in the stack image, the slug at /app.
    assert!(out.contains("deployed boxed v1") && out.contains("tested in the stack image"), "{out}");
    drover.wait_settled("boxed", 1, 2);
    assert_eq!(drover.get("boxed", "/").1, "v1\n");
    assert_eq!(containers(&drover).len(), 2);

    // A rolling deploy under load: new containers become healthy before old ones drain.
    let load = Load::start(drover.http, "boxed", 8, 1_000_000);
    wait_until("load to flow", Duration::from_secs(10), || load.ok() > 50);
    write_site(app.path(), "v2");
    drover.ok(&["deploy", app.path().to_str().unwrap()]);
    drover.wait_settled("boxed", 2, 2);
    let (ok, failed, errors) = load.finish();
    assert!(ok > 0 && failed == 0, "{failed} of {} requests failed, e.g. {errors:?}", ok + failed);
    eprintln!("rolling deploy of containers: {ok} requests, 0 failed");
    assert_eq!(drover.get("boxed", "/").1, "v2\n");
    // The old containers are stopped and removed, not left behind.
    wait_until("old containers to be removed", Duration::from_secs(30), || containers(&drover).len() == 2);

    // A killed server is no harm: the containers keep serving, and a new server adopts them.
    let before: Vec<String> = drover.instances("boxed").iter().map(|i| i["id"].to_string()).collect();
    let server = drover.server_pid();
    assert!(std::process::Command::new("kill").args(["-9", &server.to_string()]).status().unwrap().success());
    wait_until("the killed server to be gone", Duration::from_secs(10), || {
        runtime::procfs::stat(server).is_none_or(|stat| stat.is_dead())
    });
    assert_eq!(drover.get("boxed", "/").1, "v2\n");
    drover.start();
    drover.wait_settled("boxed", 2, 2);
    let after: Vec<String> = drover.instances("boxed").iter().map(|i| i["id"].to_string()).collect();
    assert_eq!(before, after, "the same containers after the restart");

    drover.ok(&["server", "stop", "--all"]);
    assert_eq!(containers(&drover), Vec::<String>::new(), "containers left after `server stop --all`");
}

fn write_image_app(dir: &Path, version: &str, test: &str) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/healthz"), "ok\n").unwrap();
    std::fs::write(dir.join("www/index.html"), format!("{version}\n")).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {STACK}\nCOPY www /www\n")).unwrap();
    let junit = r#"<testsuite name="site" tests="1" failures="0"><testcase classname="www" name="index"/></testsuite>"#;
    std::fs::write(
        dir.join("drover.yml"),
        format!(
            "app: imaged\ndockerfile: Dockerfile\nprocesses:\n  web: exec httpd -f -p \"$PORT\" -h /www\n\
             health: {{path: /healthz, interval: 200ms, timeout: 1s, start_period: 5s}}\n\
             pipeline:\n  test:\n    run:\n      - {test}\n      - echo '{junit}' > \"$DROVER_REPORTS/junit.xml\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_dockerfile_app_is_built_tested_inside_its_image_and_deployed() {
    let Some(()) = build_stack_image() else { return };
    let drover = Drover::new();
    let http = drover.http.to_string();
    let start = ["server", "start", "--http-addr", &http, "--api-addr", "127.0.0.1:0", "--runtime", "docker"];
    drover.ok(&[&start[..], &["--stack-image", STACK]].concat());
    let mut secret =
        drover.command(&["secrets", "set", "imaged", "TOKEN"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut secret.stdin.take().unwrap(), b"tok-image-7c2e").unwrap();
    assert!(secret.wait().unwrap().success());

    let app = tempfile::tempdir().unwrap();
    let in_image = r#"test -f /www/index.html && echo "in the image with $TOKEN""#;
    write_image_app(app.path(), "image v1", in_image);
    let out = drover.ok(&["deploy", app.path().to_str().unwrap()]);
    assert!(out.contains("in the image with ***") && !out.contains("tok-image-7c2e"), "{out}");
    assert!(out.contains("tests passed: 1 tests") && out.contains("deployed imaged v1"), "{out}");
    drover.wait_settled("imaged", 1, 1);
    assert_eq!(drover.get("imaged", "/").1, "image v1\n");
    // The release is the image, by id.
    let digest = drover.json(&["releases", "imaged"])[0]["digest"].as_str().unwrap().to_owned();
    let images = std::process::Command::new("docker").args(["images", "-q", "--no-trunc", "drover/imaged"]).output();
    assert!(String::from_utf8_lossy(&images.unwrap().stdout).contains(&digest), "{digest}");

    // The same inputs build nothing; a red test in the image deploys nothing.
    let out = drover.ok(&["deploy", app.path().to_str().unwrap()]);
    assert!(out.contains("cached: inputs unchanged"), "{out}");
    write_image_app(app.path(), "image v3", "test -f /www/missing.html");
    let out = drover.run(&["deploy", app.path().to_str().unwrap()]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(drover.get("imaged", "/").1, "image v1\n");
    // A test that outlives its timeout is stopped, and so is its container.
    write_image_app(app.path(), "image v4", "sleep 300");
    let yaml = std::fs::read_to_string(app.path().join("drover.yml")).unwrap();
    std::fs::write(app.path().join("drover.yml"), yaml.replace("  test:\n", "  test:\n    timeout: 2s\n")).unwrap();
    let out = drover.run(&["deploy", app.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("timed out"), "{text}");

    let label = format!("label=io.drover.test={}", drover.data.path().display());
    let left = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &label]).output().unwrap();
    assert!(left.stdout.is_empty(), "test containers left: {}", String::from_utf8_lossy(&left.stdout));
    drover.ok(&["server", "stop", "--all"]);
    assert_eq!(containers(&drover), Vec::<String>::new());
}
