//! The health state machine: consecutive probe results flip an instance between states.
//!
//! Modelled on pingora's health check: an instance becomes healthy after `healthy_threshold`
//! consecutive successes and unhealthy after `unhealthy_threshold` consecutive failures. A freshly
//! started instance gets `start_period` to come up: failures before its first success inside
//! that period are recorded but do not count towards unhealthy (it is not healthy either).

use model::HealthSpec;
use std::time::{Duration, Instant};

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not yet passed enough probes to receive traffic, and not yet failed enough to be called
    /// unhealthy.
    Starting,
    Healthy,
    Unhealthy,
}

/// The health of one instance, driven by [`HealthState::record`].
#[derive(Debug, Clone)]
pub struct HealthState {
    started: Instant,
    start_period: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    liveness_threshold: u32,
    status: Status,
    ever_passed: bool,
    consecutive_successes: u32,
    consecutive_failures: u32,
    probes: u64,
    last_error: Option<String>,
}

impl HealthState {
    /// A new instance started at `started`: not healthy until it passes its probes.
    pub fn starting(spec: &HealthSpec, started: Instant) -> Self {
        Self {
            started,
            start_period: spec.start_period,
            healthy_threshold: spec.healthy_threshold.max(1),
            unhealthy_threshold: spec.unhealthy_threshold.max(1),
            liveness_threshold: spec.liveness_threshold.max(1),
            status: Status::Starting,
            ever_passed: false,
            consecutive_successes: 0,
            consecutive_failures: 0,
            probes: 0,
            last_error: None,
        }
    }

    /// An instance known to have been healthy before we could watch it, e.g. one restored from
    /// disk after a restart. It keeps serving until probes say otherwise.
    pub fn assumed_healthy(spec: &HealthSpec, started: Instant) -> Self {
        Self { status: Status::Healthy, ever_passed: true, ..Self::starting(spec, started) }
    }

    /// Takes new thresholds without forgetting the results seen so far.
    pub fn set_spec(&mut self, spec: &HealthSpec) {
        self.start_period = spec.start_period;
        self.healthy_threshold = spec.healthy_threshold.max(1);
        self.unhealthy_threshold = spec.unhealthy_threshold.max(1);
        self.liveness_threshold = spec.liveness_threshold.max(1);
    }

    /// Records one probe result taken at `now`. Returns the new status if it changed.
    pub fn record(&mut self, result: Result<(), String>, now: Instant) -> Option<Status> {
        self.probes += 1;
        let before = self.status;
        match result {
            Ok(()) => self.record_success(),
            Err(reason) => self.record_failure(reason, now),
        }
        (self.status != before).then_some(self.status)
    }

    fn record_success(&mut self) {
        self.ever_passed = true;
        self.consecutive_failures = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
        self.last_error = None;
        if self.consecutive_successes >= self.healthy_threshold {
            self.status = Status::Healthy;
        }
    }

    fn record_failure(&mut self, reason: String, now: Instant) {
        self.consecutive_successes = 0;
        self.last_error = Some(reason);
        // A slow start is not a failure: until the first success, the start period is grace.
        let in_grace = !self.ever_passed && now.saturating_duration_since(self.started) < self.start_period;
        if in_grace {
            return;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures >= self.unhealthy_threshold {
            self.status = Status::Unhealthy;
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether the instance should receive traffic.
    pub fn is_healthy(&self) -> bool {
        self.status == Status::Healthy
    }

    /// Failures in a row that counted (those in the start grace period do not).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Probe results recorded so far; 0 means never checked.
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// The reason of the latest failure, cleared by a success.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Whether failures have gone on long enough that the instance should be replaced.
    pub fn needs_replacement(&self) -> bool {
        self.consecutive_failures >= self.liveness_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `events` through a state machine and renders the status after each one.
    ///
    /// `spec` is `start_period/healthy/unhealthy` in seconds and counts, e.g. `"10/2/3"`.
    /// `events` are `T+` (success at second T) or `T-` (failure at second T). The rendering is
    /// one letter per event (`S`tarting, `H`ealthy, `U`nhealthy), then the final counters.
    /// `initial` picks the constructor: `S` for [`HealthState::starting`], `H` for
    /// [`HealthState::assumed_healthy`].
    fn check(initial: char, spec: &str, events: &str, expected: &str) {
        let parts: Vec<u64> = spec.split('/').map(|p| p.parse().unwrap()).collect();
        let spec = HealthSpec {
            start_period: Duration::from_secs(parts[0]),
            healthy_threshold: parts[1] as u32,
            unhealthy_threshold: parts[2] as u32,
            liveness_threshold: 5,
            ..HealthSpec::default()
        };
        let t0 = Instant::now();
        let mut state = match initial {
            'S' => HealthState::starting(&spec, t0),
            'H' => HealthState::assumed_healthy(&spec, t0),
            other => panic!("unknown initial state {other:?}"),
        };
        let mut rendered = String::new();
        for event in events.split_whitespace() {
            let (secs, outcome) = event.split_at(event.len() - 1);
            let now = t0 + Duration::from_secs(secs.parse().unwrap());
            let result = match outcome {
                "+" => Ok(()),
                "-" => Err(format!("failed at {secs}")),
                other => panic!("unknown outcome {other:?}"),
            };
            state.record(result, now);
            rendered.push(match state.status() {
                Status::Starting => 'S',
                Status::Healthy => 'H',
                Status::Unhealthy => 'U',
            });
        }
        let summary = format!(
            "{rendered} fails={} probes={} err={:?} replace={}",
            state.consecutive_failures(),
            state.probes(),
            state.last_error(),
            state.needs_replacement()
        );
        assert_eq!(summary, expected, "events: {events}");
    }

    #[test]
    fn becomes_healthy_after_threshold_successes() {
        check('S', "0/1/1", "0+", "H fails=0 probes=1 err=None replace=false");
        check('S', "0/3/1", "0+ 1+ 2+", "SSH fails=0 probes=3 err=None replace=false");
        check('S', "0/3/5", "0+ 1+ 2- 3+ 4+ 5+", "SSSSSH fails=0 probes=6 err=None replace=false");
    }

    #[test]
    fn becomes_unhealthy_after_threshold_failures() {
        check('S', "0/1/2", "0+ 1- 2-", r#"HHU fails=2 probes=3 err=Some("failed at 2") replace=false"#);
        check('S', "0/1/3", "0+ 1- 2- 3+ 4- 5-", r#"HHHHHH fails=2 probes=6 err=Some("failed at 5") replace=false"#);
        check('S', "0/1/1", "0+ 1-", r#"HU fails=1 probes=2 err=Some("failed at 1") replace=false"#);
    }

    #[test]
    fn recovers_after_threshold_successes() {
        check('S', "0/2/1", "0+ 1+ 2- 3+ 4+", "SHUUH fails=0 probes=5 err=None replace=false");
    }

    #[test]
    fn start_period_forgives_failures_before_first_success() {
        check('S', "10/1/1", "0- 5- 9-", r#"SSS fails=0 probes=3 err=Some("failed at 9") replace=false"#);
        check('S', "10/1/1", "0- 9- 10-", r#"SSU fails=1 probes=3 err=Some("failed at 10") replace=false"#);
        check('S', "10/1/2", "0- 9- 10- 11-", r#"SSSU fails=2 probes=4 err=Some("failed at 11") replace=false"#);
        check('S', "10/1/2", "0- 3+", "SH fails=0 probes=2 err=None replace=false");
    }

    #[test]
    fn start_period_ends_at_first_success() {
        check('S', "10/1/1", "0+ 1-", r#"HU fails=1 probes=2 err=Some("failed at 1") replace=false"#);
        check('S', "10/2/1", "0+ 1-", r#"SU fails=1 probes=2 err=Some("failed at 1") replace=false"#);
    }

    #[test]
    fn assumed_healthy_serves_until_probes_fail() {
        check('H', "10/1/2", "0-", r#"H fails=1 probes=1 err=Some("failed at 0") replace=false"#);
        check('H', "10/1/2", "0- 1-", r#"HU fails=2 probes=2 err=Some("failed at 1") replace=false"#);
        check('H', "10/1/2", "0- 1+", "HH fails=0 probes=2 err=None replace=false");
    }

    #[test]
    fn long_failure_asks_for_replacement() {
        check('S', "0/1/2", "0- 1- 2- 3- 4-", r#"SUUUU fails=5 probes=5 err=Some("failed at 4") replace=true"#);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        check('S', "0/0/0", "0+ 1-", r#"HU fails=1 probes=2 err=Some("failed at 1") replace=false"#);
    }
}
