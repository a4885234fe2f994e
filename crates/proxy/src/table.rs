//! The routing snapshot the request path reads, and the per-backend state that outlives it.
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

/// Why a routing table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TableError {
    #[error("sites.{app}.hosts: empty host name")]
    EmptyHost { app: AppName },
    #[error("sites.{second}.hosts: {host:?} is already served by {first}")]
    DuplicateHost { host: String, first: AppName, second: AppName },
    #[error("sites.{app}.backends: instance {id} appears twice in the table")]
    DuplicateBackend { app: AppName, id: InstanceId },
    #[error("sites.{app}.backends.{id}.health.interval: must be more than zero")]
    ZeroInterval { app: AppName, id: InstanceId },
}

/// Checks a table and normalizes its host names (lowercase, no trailing dot).
pub(crate) fn validate(mut table: RouteTable) -> Result<RouteTable, TableError> {
    let mut hosts: HashMap<String, AppName> = HashMap::new();
    let mut ids = HashSet::new();
    for site in &mut table.sites {
        for host in &mut site.hosts {
            let normalized = host.trim().trim_end_matches('.').to_ascii_lowercase();
            if normalized.is_empty() {
                return Err(TableError::EmptyHost { app: site.app.clone() });
            }
            if let Some(first) = hosts.insert(normalized.clone(), site.app.clone()) {
                return Err(TableError::DuplicateHost { host: normalized, first, second: site.app.clone() });
            }
            *host = normalized;
        }
        for backend in &site.backends {
            if !ids.insert(backend.id.clone()) {
                return Err(TableError::DuplicateBackend { app: site.app.clone(), id: backend.id.clone() });
            }
            if backend.health.interval.is_zero() {
                return Err(TableError::ZeroInterval { app: site.app.clone(), id: backend.id.clone() });
            }
        }
    }
    Ok(table)
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
    /// Builds the snapshot for a validated `table`, reusing the state of backends that `previous`
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

    /// Validates a table of `sites` and renders the outcome as the normalized hosts or the error.
    fn check(sites: Vec<Site>, expected: &str) {
        let table = RouteTable { generation: 1, sites };
        let rendered = match validate(table) {
            Ok(table) => table.sites.iter().map(|s| s.hosts.join(",")).collect::<Vec<_>>().join(" | "),
            Err(err) => err.to_string(),
        };
        assert_eq!(rendered, expected);
    }

    #[test]
    fn validate_normalizes_hosts_and_rejects_conflicts() {
        check(vec![site("a", &["A.Localhost.", " b.localhost"], vec![])], "a.localhost,b.localhost");
        check(vec![site("a", &[""], vec![])], "sites.a.hosts: empty host name");
        check(
            vec![site("a", &["x.localhost"], vec![]), site("b", &["X.localhost"], vec![])],
            r#"sites.b.hosts: "x.localhost" is already served by a"#,
        );
        check(
            vec![
                site("a", &["a"], vec![backend("a-web-v1-x", 1, true)]),
                site("b", &["b"], vec![backend("a-web-v1-x", 2, true)]),
            ],
            "sites.b.backends: instance a-web-v1-x appears twice in the table",
        );
        let mut zero = backend("a-web-v1-x", 1, true);
        zero.health.interval = std::time::Duration::ZERO;
        check(
            vec![site("a", &["a"], vec![zero])],
            "sites.a.backends.a-web-v1-x.health.interval: must be more than zero",
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
