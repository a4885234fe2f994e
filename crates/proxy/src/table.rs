//! The routing snapshot the request path reads, the per-backend state that outlives it, and the
//! check of an incoming table.
//!
//! [`validate`] never refuses a whole table: it takes out the hosts, backends or sites that
//! cannot be served (each named in a [`Rejection`]) and keeps the rest, so that one app's bad
//! entry never holds back routing updates for every other app.
//!
//! A [`Snapshot`] is immutable: the admin side builds a new one for every accepted
//! [`RouteTable`] and swaps it in with `arc-swap`. Per-backend state ([`BackendState`]: health,
//! in-flight and request counters) is shared between snapshots by instance id, so a backend that
//! stays in the table keeps its health and its counters, and a request that started under an old
//! snapshot still decrements the counter the new one reports.

use crate::upstream::Pool;
use health::HealthState;
use model::{AppName, Backend, BackendStatus, Balance, HealthSpec, InstanceId, RouteTable};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// A part of a routing table the proxy refused, and why. The rest of the table is served.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// The site the refused host, backend or site belongs to.
    pub app: AppName,
    /// What was refused, with the table path, e.g.
    /// `sites.b.hosts: "x.localhost" is already served by a`.
    pub reason: String,
}

/// Why a part of a routing table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TableError {
    #[error("sites.{app}: the app appears more than once in the table")]
    DuplicateSite { app: AppName },
    #[error("sites.{app}.hosts: empty host name")]
    EmptyHost { app: AppName },
    #[error("sites.{app}.hosts: {host:?} is not a host name without a port")]
    InvalidHost { app: AppName, host: String },
    #[error("sites.{second}.hosts: {host:?} is already served by {first}")]
    DuplicateHost { host: String, first: AppName, second: AppName },
    #[error("sites.{second}.backends: instance {id} is already a backend of {first}")]
    DuplicateBackend { id: InstanceId, first: AppName, second: AppName },
    #[error("sites.{app}.backends.{id}.health.interval: must be more than zero")]
    ZeroInterval { app: AppName, id: InstanceId },
    /// A probe period or timeout the timers cannot hold: `now + period` would overflow and panic
    /// the checker, taking the data plane down for a table built from an old stored release.
    #[error("sites.{app}.backends.{id}.health.{field}: must be at most {max:?}")]
    HealthTooLong { app: AppName, id: InstanceId, field: &'static str, max: std::time::Duration },
}

/// The longest probe interval and timeout the proxy takes: the ranges `drover.yml` allows.
const MAX_PROBE_INTERVAL: std::time::Duration = model::HealthSpec::INTERVAL_RANGE.max;
const MAX_PROBE_TIMEOUT: std::time::Duration = model::HealthSpec::TIMEOUT_RANGE.max;

impl TableError {
    /// The site the refused part belonged to.
    fn app(&self) -> &AppName {
        match self {
            TableError::DuplicateSite { app }
            | TableError::EmptyHost { app }
            | TableError::InvalidHost { app, .. }
            | TableError::ZeroInterval { app, .. }
            | TableError::HealthTooLong { app, .. } => app,
            TableError::DuplicateHost { second, .. } | TableError::DuplicateBackend { second, .. } => second,
        }
    }

    fn into_rejection(self) -> Rejection {
        Rejection { app: self.app().clone(), reason: self.to_string() }
    }
}

/// A table with its refused parts taken out, and what they were.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub table: RouteTable,
    pub rejected: Vec<Rejection>,
}

/// Normalizes a table's host names (lowercase, no trailing dot) and takes out what cannot be
/// served, so that one bad site never holds back the others:
/// - a site whose app already appeared earlier in the table: the later one;
/// - an empty host, or one that is not a host name (a port, a path, spaces): that host;
/// - a host of more than one site: kept by the site that serves it in `current` (the snapshot
///   in force), else by the first of them in table order, and dropped from the others;
/// - a backend whose health check interval is zero: that backend (its checker would spin);
/// - a backend id in more than one place: kept where `current` has it (same app), else the
///   first in table order.
///
/// Backends are dropped one by one rather than with their site, so that an app keeps serving
/// from its good instances; a site that lost all its hosts still has its backends checked.
pub(crate) fn validate(table: RouteTable, current: &Snapshot) -> Accepted {
    let mut rejected = Vec::new();
    let mut apps = HashSet::new();
    let mut sites = Vec::with_capacity(table.sites.len());
    for mut site in table.sites {
        if !apps.insert(site.app.clone()) {
            rejected.push(TableError::DuplicateSite { app: site.app }.into_rejection());
            continue;
        }
        let mut hosts: Vec<String> = Vec::with_capacity(site.hosts.len());
        for host in site.hosts.drain(..) {
            let normalized = host.trim().trim_end_matches('.').to_ascii_lowercase();
            if normalized.is_empty() {
                rejected.push(TableError::EmptyHost { app: site.app.clone() }.into_rejection());
            } else if !is_host_name(&normalized) {
                rejected.push(TableError::InvalidHost { app: site.app.clone(), host }.into_rejection());
            } else if !hosts.contains(&normalized) {
                hosts.push(normalized);
            }
        }
        site.hosts = hosts;
        let mut backends = Vec::with_capacity(site.backends.len());
        for backend in site.backends.drain(..) {
            let app = site.app.clone();
            let health = &backend.health;
            let refused = if health.interval.is_zero() {
                Some(TableError::ZeroInterval { app, id: backend.id.clone() })
            } else if health.interval > MAX_PROBE_INTERVAL {
                Some(TableError::HealthTooLong {
                    app,
                    id: backend.id.clone(),
                    field: "interval",
                    max: MAX_PROBE_INTERVAL,
                })
            } else if health.timeout > MAX_PROBE_TIMEOUT {
                Some(TableError::HealthTooLong {
                    app,
                    id: backend.id.clone(),
                    field: "timeout",
                    max: MAX_PROBE_TIMEOUT,
                })
            } else {
                None
            };
            match refused {
                Some(error) => rejected.push(error.into_rejection()),
                None => backends.push(backend),
            }
        }
        site.backends = backends;
        sites.push(site);
    }

    // Who keeps each contested host and backend id: the site that has it now, else the first.
    let current_backends: HashMap<&InstanceId, &AppName> =
        current.backends.iter().map(|b| (&b.state.id, &b.state.app)).collect();
    let mut host_owner: HashMap<String, usize> = HashMap::new();
    let mut backend_owner: HashMap<InstanceId, usize> = HashMap::new();
    for (site_idx, site) in sites.iter().enumerate() {
        for host in &site.hosts {
            let serving = current.site_for(host).map(|s| &s.app);
            claim(&mut host_owner, host.clone(), site_idx, |idx| serving == Some(&sites[idx].app));
        }
        for backend in &site.backends {
            let serving = current_backends.get(&backend.id).copied();
            claim(&mut backend_owner, backend.id.clone(), site_idx, |idx| serving == Some(&sites[idx].app));
        }
    }

    let apps: Vec<AppName> = sites.iter().map(|s| s.app.clone()).collect();
    let mut kept_backends = HashSet::new();
    for (site_idx, site) in sites.iter_mut().enumerate() {
        site.hosts.retain(|host| {
            let owner = host_owner[host.as_str()];
            if owner != site_idx {
                let error = TableError::DuplicateHost {
                    host: host.clone(),
                    first: apps[owner].clone(),
                    second: apps[site_idx].clone(),
                };
                rejected.push(error.into_rejection());
            }
            owner == site_idx
        });
        site.backends.retain(|backend| {
            let owner = backend_owner[&backend.id];
            // A backend listed twice in its own site is kept once.
            let keep = owner == site_idx && kept_backends.insert(backend.id.clone());
            if !keep {
                let error = TableError::DuplicateBackend {
                    id: backend.id.clone(),
                    first: apps[owner].clone(),
                    second: apps[site_idx].clone(),
                };
                rejected.push(error.into_rejection());
            }
            keep
        });
    }
    Accepted { table: RouteTable { generation: table.generation, sites }, rejected }
}

/// Records that site `site_idx` wants `key`: the first claimant keeps it unless a later one
/// `is_current` (serves it in the snapshot in force).
fn claim<K: std::hash::Hash + Eq>(
    owners: &mut HashMap<K, usize>,
    key: K,
    site_idx: usize,
    is_current: impl Fn(usize) -> bool,
) {
    match owners.entry(key) {
        std::collections::hash_map::Entry::Vacant(entry) => {
            entry.insert(site_idx);
        }
        std::collections::hash_map::Entry::Occupied(mut entry) => {
            if !is_current(*entry.get()) && is_current(site_idx) {
                entry.insert(site_idx);
            }
        }
    }
}

/// Whether `host` (already lowercase) is what a request's host can be once its port is
/// stripped: a valid URI host (a name, an IPv4 address or a bracketed IPv6 literal), no port.
fn is_host_name(host: &str) -> bool {
    match http::uri::Authority::try_from(host) {
        Ok(authority) => authority.host() == host && authority.port().is_none(),
        Err(_) => false,
    }
}

/// How backends that are new to the proxy start out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewBackends {
    /// Not routed until they pass their health checks: the normal case for a table update.
    Starting,
    /// Routed at once: the table was restored from disk after a restart, and its backends were
    /// serving when it was written. Probes and passive checks demote the dead ones.
    AssumedHealthy,
}

/// One backend's live state, shared by every snapshot that contains it.
#[derive(Debug)]
pub(crate) struct BackendState {
    pub id: InstanceId,
    pub app: AppName,
    pub addr: SocketAddr,
    healthy: AtomicBool,
    inflight: AtomicU64,
    requests: AtomicU64,
    /// Held only to record a result or read status, never across an await.
    health: Mutex<HealthState>,
    /// Idle keep-alive connections to this backend.
    pub pool: Pool,
}

impl BackendState {
    fn new(backend: &Backend, app: &AppName, new_backends: NewBackends, workers: usize, now: Instant) -> Self {
        let health = match new_backends {
            NewBackends::Starting => HealthState::starting(&backend.health, now),
            NewBackends::AssumedHealthy => HealthState::assumed_healthy(&backend.health, now),
        };
        Self {
            id: backend.id.clone(),
            app: app.clone(),
            addr: backend.addr,
            healthy: AtomicBool::new(health.is_healthy()),
            inflight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            health: Mutex::new(health),
            pool: Pool::new(workers),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    pub fn inflight(&self) -> u64 {
        self.inflight.load(Relaxed)
    }

    /// Records a probe result, active or passive, and publishes the verdict to the request path.
    pub fn record(&self, result: Result<(), String>, now: Instant) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(status) = health.record(result, now) else {
            return;
        };
        self.healthy.store(health.is_healthy(), Relaxed);
        match status {
            health::Status::Healthy => {
                tracing::info!(instance = %self.id, addr = %self.addr, "backend healthy")
            }
            health::Status::Unhealthy => tracing::warn!(
                instance = %self.id,
                addr = %self.addr,
                error = health.last_error().unwrap_or(""),
                "backend unhealthy"
            ),
            health::Status::Starting => {}
        }
    }

    fn set_spec(&self, spec: &HealthSpec) {
        self.health.lock().unwrap_or_else(PoisonError::into_inner).set_spec(spec);
    }

    pub fn status(&self) -> BackendStatus {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        BackendStatus {
            id: self.id.clone(),
            app: self.app.clone(),
            healthy: health.is_healthy(),
            probes: health.probes(),
            consecutive_failures: health.consecutive_failures(),
            inflight: self.inflight.load(Relaxed),
            requests: self.requests.load(Relaxed),
            last_error: health.last_error().map(str::to_owned),
        }
    }
}

/// Counts a request against a backend for as long as it lives: from the pick until the
/// response body has been sent or the upgraded connection closed.
#[derive(Debug)]
pub(crate) struct InflightGuard(Arc<BackendState>);

impl InflightGuard {
    pub fn new(backend: Arc<BackendState>) -> Self {
        backend.inflight.fetch_add(1, Relaxed);
        Self(backend)
    }

    pub fn backend(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
        self.0.requests.fetch_add(1, Relaxed);
    }
}

/// One site as the request path sees it.
#[derive(Debug)]
pub(crate) struct SiteRoute {
    pub app: AppName,
    pub balance: Balance,
    /// Only the backends with `routed: true`; health is checked per request.
    pub routed: Vec<Arc<BackendState>>,
    /// Where the next pick starts, so that round-robin rotates and ties spread.
    pub next: AtomicUsize,
}

/// A backend of the table with what its health checker needs.
#[derive(Debug, Clone)]
pub(crate) struct TableBackend {
    pub state: Arc<BackendState>,
    pub health: HealthSpec,
    /// The `Host` header for HTTP probes: the site's first host name.
    pub probe_host: String,
}

/// FNV-1a, for the host lookup on every request. Host names are short and the map is built from
/// the control plane's table, so a keyed hash (SipHash) would cost more and protect nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An immutable routing table, ready for lookups.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub generation: u64,
    hosts: HashMap<Box<str>, usize, std::hash::BuildHasherDefault<Fnv>>,
    pub sites: Vec<SiteRoute>,
    /// Every backend in the table, routed or not, in table order.
    pub backends: Vec<TableBackend>,
}

impl Snapshot {
    /// Builds the snapshot for a [`validate`]d `table`, reusing the state of backends that `previous`
    /// already knows (same id, app and address). New backends get a pool share per worker.
    pub fn build(
        table: &RouteTable,
        previous: &Snapshot,
        new_backends: NewBackends,
        workers: usize,
        now: Instant,
    ) -> Snapshot {
        let known: HashMap<&InstanceId, &Arc<BackendState>> =
            previous.backends.iter().map(|b| (&b.state.id, &b.state)).collect();
        let mut snapshot = Snapshot { generation: table.generation, ..Snapshot::default() };
        for site in &table.sites {
            let mut routed = Vec::new();
            for backend in &site.backends {
                let state = match known.get(&backend.id) {
                    Some(state) if state.addr == backend.addr && state.app == site.app => {
                        state.set_spec(&backend.health);
                        Arc::clone(state)
                    }
                    _ => Arc::new(BackendState::new(backend, &site.app, new_backends, workers, now)),
                };
                if backend.routed {
                    routed.push(Arc::clone(&state));
                }
                snapshot.backends.push(TableBackend {
                    state,
                    health: backend.health.clone(),
                    probe_host: site.hosts.first().cloned().unwrap_or_else(|| "localhost".to_owned()),
                });
            }
            let site_idx = snapshot.sites.len();
            for host in &site.hosts {
                snapshot.hosts.insert(host.as_str().into(), site_idx);
            }
            snapshot.sites.push(SiteRoute {
                app: site.app.clone(),
                balance: site.balance,
                routed,
                next: AtomicUsize::new(0),
            });
        }
        snapshot
    }

    /// The site serving `host`, which must already be normalized (lowercase, no port).
    pub fn site_for(&self, host: &str) -> Option<&SiteRoute> {
        self.hosts.get(host).map(|&idx| &self.sites[idx])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Site;

    fn backend(id: &str, port: u16, routed: bool) -> Backend {
        Backend {
            id: InstanceId::parse(id).unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            routed,
            health: HealthSpec::default(),
        }
    }

    fn site(app: &str, hosts: &[&str], backends: Vec<Backend>) -> Site {
        Site {
            app: AppName::parse(app).unwrap(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            balance: Balance::RoundRobin,
            backends,
        }
    }

    /// Validates a table of `sites` against the snapshot built from `current` and renders what
    /// was kept, one `app [hosts] (backends)` per site, then each rejection as `app: reason`.
    fn check(current: Vec<Site>, sites: Vec<Site>, expected: &str) {
        let current = RouteTable { generation: 1, sites: current };
        let current = Snapshot::build(&current, &Snapshot::default(), NewBackends::Starting, 1, Instant::now());
        let accepted = validate(RouteTable { generation: 2, sites }, &current);
        assert_eq!(accepted.table.generation, 2);
        let mut lines: Vec<String> = accepted
            .table
            .sites
            .iter()
            .map(|s| {
                let ids: Vec<&str> = s.backends.iter().map(|b| b.id.as_str()).collect();
                format!("{} [{}] ({})", s.app, s.hosts.join(","), ids.join(","))
            })
            .collect();
        lines.extend(accepted.rejected.iter().map(|r| format!("{}: {}", r.app, r.reason)));
        assert_eq!(lines.join("\n"), expected.trim());
    }

    #[test]
    fn validate_normalizes_hosts() {
        check(
            vec![],
            vec![site("a", &["A.Localhost.", " b.localhost", "a.localhost", "[::1]"], vec![])],
            "a [a.localhost,b.localhost,[::1]] ()",
        );
    }

    #[test]
    fn validate_drops_bad_hosts_and_keeps_the_rest_of_the_site() {
        check(
            vec![],
            vec![
                site("a", &["", "a.localhost:8080", "a/b", "a b", "a"], vec![backend("a-1", 1, true)]),
                site("b", &["b"], vec![]),
            ],
            r#"
a [a] (a-1)
b [b] ()
a: sites.a.hosts: empty host name
a: sites.a.hosts: "a.localhost:8080" is not a host name without a port
a: sites.a.hosts: "a/b" is not a host name without a port
a: sites.a.hosts: "a b" is not a host name without a port"#,
        );
    }

    #[test]
    fn validate_gives_a_contested_host_to_its_current_site_else_the_first() {
        let contested = || vec![site("a", &["x.localhost", "a"], vec![]), site("b", &["X.localhost", "b"], vec![])];
        check(
            vec![],
            contested(),
            r#"
a [x.localhost,a] ()
b [b] ()
b: sites.b.hosts: "x.localhost" is already served by a"#,
        );
        check(
            vec![site("b", &["x.localhost"], vec![])],
            contested(),
            r#"
a [a] ()
b [x.localhost,b] ()
a: sites.a.hosts: "x.localhost" is already served by b"#,
        );
        // A site that loses its only host stays, so its backends are still health-checked.
        check(
            vec![],
            vec![site("a", &["x"], vec![]), site("b", &["x"], vec![backend("b-1", 2, true)])],
            r#"
a [x] ()
b [] (b-1)
b: sites.b.hosts: "x" is already served by a"#,
        );
    }

    #[test]
    fn validate_drops_bad_backends_and_duplicate_sites() {
        let mut zero = backend("a-2", 2, true);
        zero.health.interval = std::time::Duration::ZERO;
        check(
            vec![],
            vec![
                site("a", &["a"], vec![backend("a-1", 1, true), zero, backend("a-1", 1, true)]),
                site("b", &["b"], vec![backend("a-1", 3, true), backend("b-1", 4, true)]),
                site("a", &["c"], vec![]),
            ],
            "
a [a] (a-1)
b [b] (b-1)
a: sites.a.backends.a-2.health.interval: must be more than zero
a: sites.a: the app appears more than once in the table
a: sites.a.backends: instance a-1 is already a backend of a
b: sites.b.backends: instance a-1 is already a backend of a",
        );
        check(
            vec![site("b", &["b"], vec![backend("x-1", 3, true)])],
            vec![site("a", &["a"], vec![backend("x-1", 1, true)]), site("b", &["b"], vec![backend("x-1", 3, true)])],
            "
a [a] ()
b [b] (x-1)
a: sites.a.backends: instance x-1 is already a backend of b",
        );
    }

    #[test]
    fn issue_9_f11_a_probe_period_the_timers_cannot_hold_drops_that_backend_alone() {
        let mut slow = backend("a-2", 2, true);
        slow.health.interval = std::time::Duration::from_secs(4 * 3600 * 1_000_000_000_000_000);
        let mut patient = backend("a-3", 3, true);
        patient.health.timeout = std::time::Duration::from_secs(3601);
        check(
            vec![],
            vec![site("a", &["a"], vec![backend("a-1", 1, true), slow, patient])],
            "
a [a] (a-1)
a: sites.a.backends.a-2.health.interval: must be at most 3600s
a: sites.a.backends.a-3.health.timeout: must be at most 600s",
        );
    }

    #[test]
    fn build_keeps_state_of_known_backends_only() {
        let now = Instant::now();
        let first = RouteTable {
            generation: 1,
            sites: vec![site("a", &["a.localhost"], vec![backend("a-1", 1, true), backend("a-2", 2, true)])],
        };
        let one = Snapshot::build(&first, &Snapshot::default(), NewBackends::Starting, 1, now);
        one.backends[0].state.record(Ok(()), now);
        let _guard = InflightGuard::new(Arc::clone(&one.backends[1].state));

        let second = RouteTable {
            generation: 2,
            sites: vec![site(
                "a",
                &["a.localhost"],
                vec![backend("a-1", 1, false), backend("a-2", 3, true), backend("a-3", 4, true)],
            )],
        };
        let two = Snapshot::build(&second, &one, NewBackends::Starting, 1, now);
        let rendered: Vec<String> = two
            .backends
            .iter()
            .map(|b| {
                let status = b.state.status();
                format!(
                    "{} healthy={} probes={} inflight={}",
                    status.id, status.healthy, status.probes, status.inflight
                )
            })
            .collect();
        // a-1 keeps its passed probe although it is no longer routed; a-2 moved to another port,
        // so it is a new backend and the old one's in-flight request is not counted against it.
        assert_eq!(
            rendered,
            [
                "a-1 healthy=true probes=1 inflight=0",
                "a-2 healthy=false probes=0 inflight=0",
                "a-3 healthy=false probes=0 inflight=0"
            ]
        );
        assert!(Arc::ptr_eq(&one.backends[0].state, &two.backends[0].state));
        let routed: Vec<&str> = two.sites[0].routed.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(routed, ["a-2", "a-3"]);
        assert_eq!(two.site_for("a.localhost").map(|s| s.app.as_str()), Some("a"));
        assert!(two.site_for("b.localhost").is_none());
    }

    #[test]
    fn restored_backends_start_healthy() {
        let table = RouteTable { generation: 7, sites: vec![site("a", &["a"], vec![backend("a-1", 1, true)])] };
        let snapshot = Snapshot::build(&table, &Snapshot::default(), NewBackends::AssumedHealthy, 1, Instant::now());
        assert!(snapshot.backends[0].state.is_healthy());
        assert_eq!(snapshot.generation, 7);
    }
}
