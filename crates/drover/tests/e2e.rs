//! End-to-end tests through the real `drover` binary: up, deploy, scale, rollback, automatic
//! rollback of broken releases, and bad input rejected before anything changes.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn up_deploys_the_example_from_a_fresh_data_dir() {
    let drover = Drover::new();
    let http = drover.http.to_string();
    let out = drover.ok(&["up", "--http-addr", &http, "--api-addr", "127.0.0.1:0"]);
    assert!(out.contains(&format!("deployed hello v1 at http://hello.localhost:{}/", drover.http.port())), "{out}");
    assert!(out.contains("artifact sha256:"), "the build step is shown: {out}");

    let (status, body) = drover.get("hello", "/");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["greeting"], "hello");
    assert_eq!(page["release"], "v1");

    drover.wait_settled("hello", 1, 2);
    let apps = drover.json(&["apps"]);
    assert_eq!(apps[0]["name"], "hello");
    assert_eq!(apps[0]["stable"], 1);

    // The token is private, and nothing but the health endpoint answers without it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(drover.path("token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(drover.path("server.json")).unwrap()).unwrap();
    let api = info["api_addr"].as_str().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (health, unauthorized) = rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let health = client.get(format!("http://{api}/healthz")).send().await.unwrap().status().as_u16();
        let apps = client.get(format!("http://{api}/api/v1/apps")).send().await.unwrap().status().as_u16();
        (health, apps)
    });
    assert_eq!((health, unauthorized), (200, 401));

    // Logs of every instance carry the app, release and instance.
    let logs = drover.ok(&["logs", "hello", "--tail", "50"]);
    assert!(logs.contains("listening on 127.0.0.1:"), "{logs}");
    assert!(logs.contains("hello-web-v1-"), "{logs}");

    // Same inputs, same digest, no rebuild.
    let again = drover.ok(&["deploy", "../../examples/hello-python"]);
    assert!(again.contains("cached: inputs unchanged"), "{again}");
    let releases = drover.json(&["releases", "hello"]);
    assert_eq!(releases[0]["digest"], releases[1]["digest"]);
}

#[test]
fn scale_and_rollback() {
    let drover = Drover::new();
    drover.start();
    let app = app_dir("shop", "env: {GREETING: one}");
    drover.ok(&["deploy", app.path().to_str().unwrap()]);
    write_config(app.path(), "shop", "env: {GREETING: two}");
    drover.ok(&["deploy", app.path().to_str().unwrap()]);
    assert!(drover.get("shop", "/").1.contains("\"two\""));

    drover.ok(&["scale", "web=3", "-a", "shop"]);
    drover.wait_settled("shop", 2, 3);

    let out = drover.ok(&["rollback", "-a", "shop"]);
    assert!(out.contains("deployed shop v3"), "{out}");
    drover.wait_settled("shop", 3, 3);
    let (_, body) = drover.get("shop", "/");
    assert!(body.contains("\"one\"") && body.contains("\"v3\""), "{body}");
    let releases = drover.json(&["releases", "shop"]);
    assert_eq!(releases[0]["description"], "rollback to v1");
    assert_eq!(releases[0]["digest"], releases[2]["digest"]);

    // Roll forward to v2 again.
    drover.ok(&["rollback", "v2", "-a", "shop"]);
    assert!(drover.get("shop", "/").1.contains("\"two\""));

    let bad = drover.run(&["scale", "worker=1", "-a", "shop"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("shop has no process type worker (it has: web)"));
}

#[test]
fn broken_releases_roll_back_and_the_old_one_keeps_serving() {
    let drover = Drover::new();
    drover.start();
    let app = app_dir("api", "");
    drover.ok(&["deploy", app.path().to_str().unwrap()]);
    drover.wait_settled("api", 1, 1);

    // A release whose web process crashes at once.
    let crashing = app_dir("api", "");
    std::fs::write(crashing.path().join("app.py"), "import sys\nsys.exit(3)\n").unwrap();
    let out = drover.run(&["deploy", crashing.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rolled back to v1") && stderr.contains("crashed"), "{stderr}");
    let (status, body) = drover.get("api", "/");
    assert_eq!(status, 200);
    assert!(body.contains("\"v1\""), "{body}");

    // A release that runs but never passes its health check.
    let unhealthy = app_dir("api", "deploy: {strategy: rolling, max_surge: 1, max_unavailable: 0, deadline: 3s}\nhealth: {path: /nope, interval: 200ms, timeout: 1s, start_period: 1s}");
    let out = drover.run(&["deploy", unhealthy.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rolled back to v1") && stderr.contains("not healthy within 3s"), "{stderr}");
    drover.wait_settled("api", 1, 1);
    assert!(drover.get("api", "/").1.contains("\"v1\""));
    let events = drover.ok(&["events", "api"]);
    assert_eq!(events.matches("deploy.rolled-back").count(), 2, "{events}");
}

#[test]
fn bad_input_is_rejected_before_anything_changes() {
    let drover = Drover::new();
    drover.start();

    let app = app_dir("good", "");
    std::fs::write(
        app.path().join("drover.yml"),
        "app: good\nprocesses:\n  web: python3 app.py\nhelth: {path: /healthz}\n",
    )
    .unwrap();
    let out = drover.run(&["deploy", app.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("drover.yml:4:1") && stderr.contains("health"), "{stderr}");

    std::fs::write(app.path().join("drover.yml"), "app: \"x;rm -rf ~\"\nprocesses:\n  web: python3 app.py\n").unwrap();
    let out = drover.run(&["deploy", app.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("drover.yml:1:"), "{stderr}");

    std::fs::write(
        app.path().join("drover.yml"),
        "app: good\nprocesses:\n  web: python3 app.py\nhealth: {path: healthz}\n",
    )
    .unwrap();
    let out = drover.run(&["deploy", app.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("health.path"), "{stderr}");

    // A symlink out of the app's directory is refused by name; it is sent as a link, not followed.
    write_config(app.path(), "good", "");
    std::os::unix::fs::symlink("/etc/passwd", app.path().join("passwd")).unwrap();
    let out = drover.run(&["deploy", app.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(r#""passwd" is a symlink to "/etc/passwd""#), "{stderr}");
    std::fs::remove_file(app.path().join("passwd")).unwrap();

    // A tarball with a path-traversal entry, posted straight to the API.
    let header = tar_header(b"../escape.txt");
    let mut archive = Vec::new();
    {
        let encoder = flate2_encoder(&mut archive);
        let mut builder = tar::Builder::new(encoder);
        builder.append(&header, &b"boom"[..]).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
    }
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(drover.path("server.json")).unwrap()).unwrap();
    let token = std::fs::read_to_string(drover.path("token")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, body) = rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let r = client
            .post(format!("http://{}/api/v1/deploys", info["api_addr"].as_str().unwrap()))
            .bearer_auth(token.trim())
            .body(archive)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(".."), "{body}");
    assert!(!drover.data.path().parent().unwrap().join("escape.txt").exists());

    // Nothing was created by any of it: no app, no instance, no leftover upload.
    assert_eq!(drover.json(&["apps"]), serde_json::json!([]));
    assert_eq!(std::fs::read_dir(drover.path("tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(drover.path("instances")).unwrap().count(), 0);
}

#[test]
fn a_taken_http_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let drover = Drover::new();
    let out =
        drover.run(&["server", "start", "--http-addr", &format!("127.0.0.1:{port}"), "--api-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot serve apps on 127.0.0.1:{port}")), "{stderr}");
    wait_until("no server left running", Duration::from_secs(10), || !drover.path("server.json").exists());
}

fn tar_header(path: &[u8]) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    // Write the raw name so the tar crate's own path checks do not refuse it.
    header.as_old_mut().name[..path.len()].copy_from_slice(path);
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    header
}

fn flate2_encoder(out: &mut Vec<u8>) -> flate2::write::GzEncoder<&mut Vec<u8>> {
    flate2::write::GzEncoder::new(out, flate2::Compression::fast())
}

#[test]
fn a_procfile_app_is_named_after_its_directory_and_logs_follow_live() {
    let drover = Drover::new();
    drover.start();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("Plain_App");
    std::fs::create_dir(&dir).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-python/app.py");
    std::fs::copy(example, dir.join("app.py")).unwrap();
    std::fs::write(dir.join("Procfile"), "# a Procfile-only app\nweb: python3 app.py\n").unwrap();
    let out = drover.ok(&["deploy", dir.to_str().unwrap()]);
    assert!(out.contains("deployed plain-app v1"), "{out}");

    let mut follower = drover
        .command(&["logs", "plain-app", "-f", "--tail", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l: &String| l.contains("GET /followed")) {
        assert!(std::time::Instant::now() < deadline, "no live log line; saw {seen:?}");
        drover.get("plain-app", "/followed");
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            seen.push(line);
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert!(seen.iter().any(|l| l.contains("plain-app-web-v1-") && l.contains("[stdout]")), "{seen:?}");

    // `drover up` inside an app directory deploys that app, not the bundled example.
    let out = drover.command(&["up"]).current_dir(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("deployed plain-app v2"), "{stdout}");

    // Output into a pipe whose reader is gone ends the command quietly, as `| head` would.
    for args in [&["events", "plain-app"][..], &["releases", "plain-app"], &["apps"]] {
        let mut child = drover
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

#[test]
fn an_instance_failing_liveness_is_replaced() {
    let drover = Drover::new();
    drover.start();
    let app = app_dir(
        "flaky",
        "health: {path: /healthz, interval: 200ms, timeout: 1s, start_period: 1s, unhealthy_threshold: 1, liveness_threshold: 3}",
    );
    // Healthy for its first five probes, then never again.
    std::fs::write(
        app.path().join("app.py"),
        r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
probes = 0
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        global probes
        probes += 1
        status = 200 if self.path != "/healthz" or probes <= 5 else 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .unwrap();
    drover.ok(&["deploy", app.path().to_str().unwrap()]);
    let first = drover.instances("flaky")[0]["id"].as_str().unwrap().to_owned();
    wait_until("the failing instance to be replaced", Duration::from_secs(60), || {
        drover.instances("flaky").iter().any(|i| i["id"] != first.as_str())
    });
    let events = drover.ok(&["events", "flaky"]);
    assert!(
        events.contains("instance.replaced") && events.contains(&first) && events.contains("health checks in a row"),
        "{events}"
    );
    // Stopping everything while replacements keep starting leaves no supervisor behind.
    drover.ok(&["server", "stop", "--all"]);
    let instances = drover.path("instances");
    let left = std::process::Command::new("pgrep").args(["-f", instances.to_str().unwrap()]).output().unwrap();
    assert!(left.stdout.is_empty(), "shims left running: {}", String::from_utf8_lossy(&left.stdout));
}

#[test]
fn extra_hosts_route_to_their_app_and_cannot_be_claimed_twice() {
    let drover = Drover::new();
    drover.start();
    let shop = app_dir("shop", "routing: {balance: round-robin, hosts: [shop.example.test]}");
    drover.ok(&["deploy", shop.path().to_str().unwrap()]);
    let (status, body) = drover.get_host("shop.example.test", "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"shop\""), "{body}");

    let thief = app_dir("thief", "routing: {hosts: [shop.example.test]}");
    let out = drover.run(&["deploy", thief.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("routing.hosts: shop.example.test is already served by app shop"), "{stderr}");
}

#[test]
fn the_node_example_deploys_blue_green() {
    let drover = Drover::new();
    drover.start();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-node");
    let out = drover.ok(&["deploy", example.to_str().unwrap()]);
    assert!(out.contains("deployed hello-node v1"), "{out}");
    let (status, body) = drover.get("hello-node", "/");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["greeting"], "hello from node");
    assert_eq!(page["release"], "v1");
}
