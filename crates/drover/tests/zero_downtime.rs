//! Zero downtime, measured: a bounded load of 16 concurrent keep-alive clients runs through
//! Drover's proxy while releases roll out and processes are killed; not one request may fail.

mod common;

use common::*;
use std::time::Duration;

/// Upper bound on requests per load run, so a run always ends.
const MAX_REQUESTS: u64 = 2_000_000;

fn assert_no_failures(load: Load, what: &str) {
    let (ok, failed, errors) = load.finish();
    assert!(ok > 0, "{what}: the load made no successful request");
    assert_eq!(failed, 0, "{what}: {failed} of {} requests failed, e.g. {errors:?}", ok + failed);
    eprintln!("{what}: {ok} requests, 0 failed");
}

#[test]
fn ten_rolling_deploys_and_ten_blue_green_switches_drop_nothing() {
    let drover = Drover::new();
    drover.start();
    let app = app_dir("zd", "scale: {web: 2}");
    drover.ok(&["deploy", app.path().to_str().unwrap()]);
    drover.wait_settled("zd", 1, 2);

    let load = Load::start(drover.http, "zd", 16, MAX_REQUESTS);
    wait_until("load to flow", Duration::from_secs(10), || load.ok() > 50);
    for i in 0..10 {
        write_config(app.path(), "zd", &format!("scale: {{web: 2}}\nenv: {{GREETING: rolling-{i}}}\ndeploy: {{strategy: rolling, max_surge: 1, max_unavailable: 0}}"));
        drover.ok(&["deploy", app.path().to_str().unwrap()]);
    }
    assert_no_failures(load, "10 rolling deploys");
    assert!(drover.get("zd", "/").1.contains("rolling-9"));

    let load = Load::start(drover.http, "zd", 16, MAX_REQUESTS);
    wait_until("load to flow", Duration::from_secs(10), || load.ok() > 50);
    for i in 0..10 {
        write_config(
            app.path(),
            "zd",
            &format!("scale: {{web: 2}}\nenv: {{GREETING: blue-green-{i}}}\ndeploy: {{strategy: blue-green}}"),
        );
        drover.ok(&["deploy", app.path().to_str().unwrap()]);
    }
    assert_no_failures(load, "10 blue-green switches");
    assert!(drover.get("zd", "/").1.contains("blue-green-9"));
    drover.wait_settled("zd", 21, 2);
}

/// No such process, or only its zombie is left.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn kill9(pid: u32) {
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
}

#[test]
fn killing_instances_and_the_server_drops_nothing() {
    let drover = Drover::new();
    drover.start();
    // Crashes are the shim's to restart here: a generous liveness threshold keeps a slow restart
    // on a loaded machine from being taken for a dead instance and replaced.
    let app = app_dir(
        "tough",
        "scale: {web: 3}\nhealth: {path: /healthz, interval: 200ms, timeout: 1s, start_period: 5s, liveness_threshold: 150}",
    );
    drover.ok(&["deploy", app.path().to_str().unwrap()]);
    drover.wait_settled("tough", 1, 3);
    let before: Vec<String> = drover.instances("tough").iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();

    let load = Load::start(drover.http, "tough", 16, MAX_REQUESTS);
    wait_until("load to flow", Duration::from_secs(10), || load.ok() > 50);
    for round in 0..5 {
        let instances = drover.instances("tough");
        let victim = &instances[round % instances.len()];
        kill9(victim["pid"].as_u64().unwrap() as u32);
        let id = victim["id"].as_str().unwrap().to_owned();
        wait_until("the killed instance to be restarted and healthy", Duration::from_secs(30), || {
            drover
                .instances("tough")
                .iter()
                .any(|i| i["id"] == id.as_str() && i["restarts"].as_u64() >= Some(1) && i["healthy"] == true)
        });
    }
    let served = load.ok();
    for _ in 0..3 {
        let server = drover.server_pid();
        kill9(server);
        // `kill` returns before the process is gone; a start before then would find it alive.
        wait_until("the killed server to be gone", Duration::from_secs(10), || gone(server));
        wait_until("traffic to keep flowing without a server", Duration::from_secs(10), || load.ok() > served + 100);
        drover.start();
        drover.wait_settled("tough", 1, 3);
    }
    assert_no_failures(load, "kill -9 of instances and of the server");

    // The restarted server re-adopted the same instances: nothing was replaced or orphaned.
    let after: Vec<String> = drover.instances("tough").iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(before, after);
    let shims = std::fs::read_dir(drover.path("instances")).unwrap().count();
    assert_eq!(shims, 3);
}
