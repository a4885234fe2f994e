//! Table tests for the planner: each case is instances in, actions out, rendered as text.

use super::*;
use std::time::Duration;

const APP: &str = "hello";

fn spec(strategy: Strategy, web: u32) -> AppSpec {
    let mut spec =
        AppSpec::new(AppName::parse(APP).unwrap(), [(ProcessType::web(), "python3 app.py".to_owned())].into());
    spec.scale = [(ProcessType::web(), web)].into();
    spec.deploy.strategy = strategy;
    spec.deploy.deadline = Duration::from_secs(60);
    spec.deploy.drain_timeout = Duration::from_secs(30);
    spec
}

/// `"v1 ready"`, `"v2 starting"`, `"v1 ready draining@100 inflight=2"`, `"v2 crashing"`, `"v1 dead"`.
fn inst(idx: usize, text: &str) -> Observed {
    let words: Vec<&str> = text.split_whitespace().collect();
    let release = ReleaseId(words[0][1..].parse().unwrap());
    let mut ready = false;
    let mut restarts = 0;
    let mut inflight = 0;
    let mut failures = 0;
    let mut draining_since_ms = None;
    let mut routed = true;
    let mut life_kind = "alive";
    for w in &words[1..] {
        match *w {
            "ready" => ready = true,
            "starting" => {}
            "crashing" => restarts = CRASH_LOOP_RESTARTS,
            "failing" => failures = 10,
            "unrouted" => routed = false,
            "dead" => life_kind = "dead",
            "stopping" => life_kind = "stopping",
            w if w.starts_with("draining@") => {
                draining_since_ms = Some(w["draining@".len()..].parse().unwrap());
                routed = false;
            }
            w if w.starts_with("inflight=") => inflight = w["inflight=".len()..].parse().unwrap(),
            other => panic!("unknown word {other}"),
        }
    }
    let life = match life_kind {
        "dead" => Life::Dead,
        "stopping" => Life::Stopping,
        _ => Life::Alive { ready, consecutive_failures: failures, restarts, inflight, last_error: None },
    };
    Observed {
        id: InstanceId::parse(&format!("i{idx}")).unwrap(),
        release,
        process: ProcessType::web(),
        routed,
        draining_since_ms,
        created_at_ms: idx as u64,
        life,
    }
}

fn render(actions: &[Action]) -> String {
    actions
        .iter()
        .map(|a| match a {
            Action::Start { process, routed: true } => format!("start {process}"),
            Action::Start { process, routed: false } => format!("start {process} unrouted"),
            Action::Route { id } => format!("route {id}"),
            Action::Drain { id } => format!("drain {id}"),
            Action::Evict { id, .. } => format!("evict {id}"),
            Action::Stop { id } => format!("stop {id}"),
            Action::Forget { id } => format!("forget {id}"),
            Action::Finish { outcome: Outcome::Succeeded, .. } => "finish ok".to_owned(),
            Action::Finish { outcome: Outcome::RolledBack { to, .. }, .. } => format!("rollback to {to}"),
            Action::Finish { outcome: Outcome::Failed { .. }, .. } => "failed".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct Case {
    name: &'static str,
    strategy: Strategy,
    web: u32,
    /// Target release number; 0 means no target.
    target: u64,
    rollout: bool,
    now_ms: u64,
    instances: &'static [&'static str],
    expect: &'static str,
}

const ROLLING: Strategy = Strategy::Rolling { max_surge: 1, max_unavailable: 0 };
const BLUE_GREEN: Strategy = Strategy::BlueGreen;

fn check(case: &Case) {
    let spec = spec(case.strategy, case.web);
    let desired = Desired {
        app: spec.name.clone(),
        target: (case.target > 0).then(|| (ReleaseId(case.target), spec.clone())),
        scale: BTreeMap::new(),
        rollout: case.rollout.then_some(Rollout { deploy_id: 7, started_ms: 0, previous: Some(ReleaseId(1)) }),
    };
    let observed: Vec<Observed> = case.instances.iter().enumerate().map(|(i, t)| inst(i, t)).collect();
    let got = render(&plan(&desired, &observed, case.now_ms));
    assert_eq!(got, case.expect, "case {:?}", case.name);
}

macro_rules! case {
    ($name:expr, $strategy:expr, web = $web:expr, target = $target:expr, rollout = $rollout:expr, now = $now:expr, [$($inst:expr),*] => $expect:expr) => {
        Case { name: $name, strategy: $strategy, web: $web, target: $target, rollout: $rollout, now_ms: $now, instances: &[$($inst),*], expect: $expect }
    };
}

#[test]
fn plans() {
    let cases = [
        case!("first deploy starts all", ROLLING, web = 2, target = 1, rollout = true, now = 0, [] => "start web, start web"),
        case!("first deploy waits for health", ROLLING, web = 2, target = 1, rollout = true, now = 5, ["v1 starting", "v1 ready"] => ""),
        case!("first deploy finishes", ROLLING, web = 2, target = 1, rollout = true, now = 5, ["v1 ready", "v1 ready"] => "finish ok"),
        case!("rolling surges one", ROLLING, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready"] => "start web"),
        case!("rolling holds old while new starts", ROLLING, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready", "v2 starting"] => ""),
        case!("rolling drains one old when new ready", ROLLING, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready", "v2 ready"] => "drain i1"),
        case!("rolling starts next", ROLLING, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready draining@5 inflight=1", "v2 ready"] => "start web"),
        case!("drained instance stops at zero inflight", ROLLING, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready draining@5", "v2 ready", "v2 starting"] => "stop i1"),
        case!("drain timeout stops anyway", ROLLING, web = 1, target = 2, rollout = false, now = 40_000, ["v1 ready draining@5 inflight=3", "v2 ready"] => "stop i0"),
        case!("rolling finishes", ROLLING, web = 2, target = 2, rollout = true, now = 5, ["v2 ready", "v2 ready", "v1 stopping"] => "finish ok"),
        case!("unavailable-first rolling", Strategy::Rolling { max_surge: 0, max_unavailable: 1 }, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready"] => "drain i1"),
        case!("crash loop rolls back", ROLLING, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready", "v2 crashing"] => "rollback to v1"),
        case!("deadline rolls back", ROLLING, web = 2, target = 2, rollout = true, now = 60_000, ["v1 ready", "v1 ready", "v2 starting"] => "rollback to v1"),
        case!("after rollback the failed release drains", ROLLING, web = 2, target = 1, rollout = false, now = 5, ["v1 ready", "v1 ready", "v2 starting"] => "drain i2"),
        case!("dead instance is forgotten and replaced", ROLLING, web = 2, target = 1, rollout = false, now = 5, ["v1 ready", "v1 dead"] => "forget i1, start web"),
        case!("liveness failure replaces", ROLLING, web = 1, target = 1, rollout = false, now = 20_000, ["v1 failing"] => "evict i0, start web"),
        case!("liveness waits for start period", ROLLING, web = 1, target = 1, rollout = false, now = 5, ["v1 failing"] => ""),
        case!("scale down drains unready then newest", ROLLING, web = 1, target = 1, rollout = false, now = 5, ["v1 ready", "v1 ready", "v1 starting"] => "drain i2, drain i1"),
        case!("no target drains everything", ROLLING, web = 1, target = 0, rollout = false, now = 5, ["v1 ready"] => "drain i0"),
        case!("blue-green starts the full set unrouted", BLUE_GREEN, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready"] => "start web unrouted, start web unrouted"),
        case!("blue-green waits for all green", BLUE_GREEN, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready", "v2 ready unrouted", "v2 starting unrouted"] => ""),
        case!("blue-green switches at once", BLUE_GREEN, web = 2, target = 2, rollout = true, now = 5, ["v1 ready", "v1 ready", "v2 ready unrouted", "v2 ready unrouted"] => "route i2, route i3, drain i0, drain i1"),
        case!("blue-green first deploy routes", BLUE_GREEN, web = 1, target = 1, rollout = true, now = 5, [] => "start web"),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn rollback_reason_names_the_deadline() {
    let spec = spec(ROLLING, 1);
    let desired = Desired {
        app: spec.name.clone(),
        target: Some((ReleaseId(2), spec.clone())),
        scale: BTreeMap::new(),
        rollout: Some(Rollout { deploy_id: 1, started_ms: 0, previous: None }),
    };
    let actions = plan(&desired, &[inst(0, "v2 starting")], 61_000);
    match &actions[..] {
        [Action::Finish { outcome: Outcome::Failed { reason }, .. }] => {
            assert_eq!(reason, "v2 was not healthy within 60s (1 instance(s) not ready)")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn issue_9_f11_a_deadline_too_long_for_milliseconds_does_not_wrap() {
    // A release stored before durations were bounded: 18446744073709552s is 384 ms once wrapped.
    let mut spec = spec(ROLLING, 1);
    spec.deploy.deadline = Duration::from_secs(18_446_744_073_709_552);
    spec.deploy.drain_timeout = Duration::from_secs(18_446_744_073_709_552);
    let desired = Desired {
        app: spec.name.clone(),
        target: Some((ReleaseId(2), spec.clone())),
        scale: BTreeMap::new(),
        rollout: Some(Rollout { deploy_id: 1, started_ms: 0, previous: None }),
    };
    assert_eq!(render(&plan(&desired, &[inst(0, "v2 starting")], 61_000)), "");
    // A draining instance with requests in flight waits too, rather than being stopped at once.
    let draining = [inst(0, "v2 ready"), inst(1, "v1 ready draining@0 inflight=1")];
    assert_eq!(render(&plan(&desired, &draining, 61_000)), "finish ok");
}
