//! The pure planner: desired state and observed instances in, actions out.
//!
//! One function decides first deploys, rolling and blue-green rollouts, scaling, crash
//! replacement and recovery after a control-plane restart. It does no IO and reads no clock:
//! `now_ms` is an argument, so every decision is a table-driven test.

use model::{AppName, AppSpec, InstanceId, ProcessType, ReleaseId, Strategy};
use std::collections::{BTreeMap, BTreeSet};

/// What should run for one app.
#[derive(Debug, Clone)]
pub struct Desired {
    pub app: AppName,
    /// The target release and its spec; `None` means nothing should run.
    pub target: Option<(ReleaseId, AppSpec)>,
    /// Scale set by `drover scale`, overriding the spec's.
    pub scale: BTreeMap<ProcessType, u32>,
    pub rollout: Option<Rollout>,
}

/// A deploy in progress: the target release is new and not yet fully healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    pub deploy_id: u64,
    pub started_ms: u64,
    /// The release to go back to if this one fails.
    pub previous: Option<ReleaseId>,
}

/// One instance as the control plane sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: InstanceId,
    pub release: ReleaseId,
    pub process: ProcessType,
    pub routed: bool,
    pub draining_since_ms: Option<u64>,
    pub created_at_ms: u64,
    pub life: Life,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Life {
    /// Running (possibly restarting under its supervisor).
    Alive {
        /// Web: the proxy's health checks pass. Other processes: running.
        ready: bool,
        consecutive_failures: u32,
        restarts: u32,
        inflight: u64,
        last_error: Option<String>,
    },
    /// A stop is under way.
    Stopping,
    /// The runtime has no live instance for this record.
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start an instance of the target release; `routed` is false for a blue-green candidate.
    Start {
        process: ProcessType,
        routed: bool,
    },
    /// Send traffic to an instance (the proxy still waits for it to be healthy).
    Route {
        id: InstanceId,
    },
    /// Stop new traffic to an instance and let in-flight requests finish.
    Drain {
        id: InstanceId,
    },
    /// Drain an instance that failed its liveness check; a replacement starts at once.
    Evict {
        id: InstanceId,
        reason: String,
    },
    /// Stop a drained instance.
    Stop {
        id: InstanceId,
    },
    /// Drop the record of an instance that no longer runs.
    Forget {
        id: InstanceId,
    },
    Finish {
        deploy_id: u64,
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Went back to the previous release.
    RolledBack {
        to: ReleaseId,
        reason: String,
    },
    /// Failed with nothing to go back to.
    Failed {
        reason: String,
    },
}

/// Restarts of a new instance during a rollout that count as a crash loop.
pub const CRASH_LOOP_RESTARTS: u32 = 3;

/// Plans the next steps for one app.
pub fn plan(desired: &Desired, observed: &[Observed], now_ms: u64) -> Vec<Action> {
    let mut actions = Vec::new();
    let spec = desired.target.as_ref().map(|(_, spec)| spec);

    // Instances that take part in the count: alive and not draining.
    let mut counted: Vec<&Observed> = Vec::new();
    for inst in observed {
        match &inst.life {
            Life::Dead => actions.push(Action::Forget { id: inst.id.clone() }),
            Life::Stopping => {}
            Life::Alive { inflight, .. } => {
                if let Some(since) = inst.draining_since_ms {
                    let drain_timeout = spec.map_or(0, |s| millis(s.deploy.drain_timeout));
                    if *inflight == 0 || now_ms.saturating_sub(since) >= drain_timeout {
                        actions.push(Action::Stop { id: inst.id.clone() });
                    }
                } else if let Some(reason) = liveness_failure(inst, spec, now_ms) {
                    actions.push(Action::Evict { id: inst.id.clone(), reason });
                } else {
                    counted.push(inst);
                }
            }
        }
    }

    let Some((target, spec)) = &desired.target else {
        actions.extend(counted.iter().map(|inst| Action::Drain { id: inst.id.clone() }));
        return actions;
    };

    if let Some(rollout) = &desired.rollout {
        if let Some(reason) = rollout_failure(*target, spec, rollout, &counted, now_ms) {
            let outcome = match rollout.previous {
                Some(to) => Outcome::RolledBack { to, reason },
                None => Outcome::Failed { reason },
            };
            actions.push(Action::Finish { deploy_id: rollout.deploy_id, outcome });
            return actions;
        }
    }

    let processes: BTreeSet<&ProcessType> = spec.processes.keys().chain(counted.iter().map(|i| &i.process)).collect();
    let mut complete = true;
    for process in processes {
        let wanted = if spec.processes.contains_key(process) {
            desired.scale.get(process).copied().unwrap_or_else(|| spec.scale_of(process))
        } else {
            0
        };
        let (new, old): (Vec<&Observed>, Vec<&Observed>) =
            counted.iter().copied().filter(|i| &i.process == process).partition(|i| i.release == *target);
        let strategy = if process.is_web() {
            spec.deploy.strategy
        } else {
            Strategy::Rolling { max_surge: 1, max_unavailable: 0 }
        };
        let step = match strategy {
            Strategy::Rolling { max_surge, max_unavailable } => {
                rolling(process, wanted, &new, &old, max_surge, max_unavailable)
            }
            Strategy::BlueGreen => blue_green(process, wanted, &new, &old),
        };
        actions.extend(step);
        let all_ready = new.iter().all(|i| is_ready(i));
        complete &= new.len() == wanted as usize && all_ready && old.is_empty();
    }

    if let (Some(rollout), true) = (&desired.rollout, complete) {
        actions.push(Action::Finish { deploy_id: rollout.deploy_id, outcome: Outcome::Succeeded });
    }
    actions
}

fn is_ready(inst: &Observed) -> bool {
    matches!(inst.life, Life::Alive { ready: true, .. })
}

/// Why a web instance past its start period must be replaced: it failed `liveness_threshold`
/// health checks in a row.
/// A duration in milliseconds, saturating: a release stored before durations were bounded may
/// hold one too long for `u64`, which `as` would wrap (a deadline of 18446744073709552s became
/// 384 ms).
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn liveness_failure(inst: &Observed, spec: Option<&AppSpec>, now_ms: u64) -> Option<String> {
    let (Some(spec), Life::Alive { ready: false, consecutive_failures, last_error, .. }) = (spec, &inst.life) else {
        return None;
    };
    let past_start = now_ms.saturating_sub(inst.created_at_ms) >= millis(spec.health.start_period);
    if !inst.process.is_web() || !past_start || *consecutive_failures < spec.health.liveness_threshold {
        return None;
    }
    let why = last_error.as_deref().unwrap_or("no detail");
    Some(format!("failed {consecutive_failures} health checks in a row ({why})"))
}

/// Why the rollout of `target` has failed, if it has.
fn rollout_failure(
    target: ReleaseId,
    spec: &AppSpec,
    rollout: &Rollout,
    counted: &[&Observed],
    now_ms: u64,
) -> Option<String> {
    for inst in counted.iter().filter(|i| i.release == target) {
        if let Life::Alive { ready: false, restarts, last_error, .. } = &inst.life {
            if *restarts >= CRASH_LOOP_RESTARTS {
                let why = last_error.as_deref().unwrap_or("no exit status recorded");
                return Some(format!("instance {} of {target} crashed {restarts} times ({why})", inst.id));
            }
        }
    }
    let deadline = millis(spec.deploy.deadline);
    if now_ms.saturating_sub(rollout.started_ms) < deadline {
        return None;
    }
    let unready: Vec<&&Observed> = counted.iter().filter(|i| i.release == target && !is_ready(i)).collect();
    let detail = unready
        .iter()
        .find_map(|i| match &i.life {
            Life::Alive { last_error: Some(e), .. } => Some(format!(": {}: {e}", i.id)),
            _ => None,
        })
        .unwrap_or_default();
    Some(format!(
        "{target} was not healthy within {}s ({} instance(s) not ready){detail}",
        deadline / 1000,
        unready.len()
    ))
}

/// Instances to drain first: those not serving, then the newest.
fn drain_order<'a>(instances: &[&'a Observed]) -> Vec<&'a Observed> {
    let mut sorted: Vec<&Observed> = instances.to_vec();
    sorted.sort_by_key(|i| (is_ready(i), std::cmp::Reverse(i.created_at_ms)));
    sorted
}

fn rolling(
    process: &ProcessType,
    wanted: u32,
    new: &[&Observed],
    old: &[&Observed],
    max_surge: u32,
    max_unavailable: u32,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let wanted = wanted as usize;
    // Keep a traffic-less instance of the target release routed: the proxy gates it on health.
    actions.extend(new.iter().filter(|i| !i.routed && process.is_web()).map(|i| Action::Route { id: i.id.clone() }));

    let total = new.len() + old.len();
    let ceiling = if old.is_empty() { wanted } else { wanted + max_surge as usize };
    let n_start = wanted.saturating_sub(new.len()).min(ceiling.saturating_sub(total));
    actions.extend((0..n_start).map(|_| Action::Start { process: process.clone(), routed: true }));

    // Surplus instances of the target release (scale down).
    let surplus_new = new.len().saturating_sub(wanted);
    let new_by_drain = drain_order(new);
    let (drained_new, kept_new) = new_by_drain.split_at(surplus_new);
    actions.extend(drained_new.iter().map(|i| Action::Drain { id: i.id.clone() }));

    // Old instances: the ones not serving go at once; serving ones only while enough stay up.
    let ready_new = kept_new.iter().filter(|i| is_ready(i)).count();
    let ready_old = old.iter().filter(|i| is_ready(i)).count();
    let min_available = wanted.saturating_sub(max_unavailable as usize);
    let mut budget = (ready_new + ready_old).saturating_sub(min_available);
    for inst in drain_order(old) {
        if is_ready(inst) {
            if budget == 0 {
                break;
            }
            budget -= 1;
        }
        actions.push(Action::Drain { id: inst.id.clone() });
    }
    actions
}

fn blue_green(process: &ProcessType, wanted: u32, new: &[&Observed], old: &[&Observed]) -> Vec<Action> {
    let mut actions = Vec::new();
    let wanted = wanted as usize;
    let serving_old = old.iter().any(|i| i.routed);
    let n_start = wanted.saturating_sub(new.len());
    actions.extend((0..n_start).map(|_| Action::Start { process: process.clone(), routed: !serving_old }));

    let surplus_new = new.len().saturating_sub(wanted);
    let new_by_drain = drain_order(new);
    let (drained_new, kept_new) = new_by_drain.split_at(surplus_new);
    actions.extend(drained_new.iter().map(|i| Action::Drain { id: i.id.clone() }));

    let green_ready = kept_new.len() == wanted && kept_new.iter().all(|i| is_ready(i));
    if !serving_old || green_ready {
        // The switch: route all of green and drain all of blue in one step, which the applier
        // turns into a single routing-table swap.
        let mut green: Vec<&Observed> = kept_new.iter().copied().filter(|i| !i.routed).collect();
        green.sort_by_key(|i| i.created_at_ms);
        actions.extend(green.iter().map(|i| Action::Route { id: i.id.clone() }));
        actions.extend(old.iter().map(|i| Action::Drain { id: i.id.clone() }));
    }
    actions
}

#[cfg(test)]
mod tests;
