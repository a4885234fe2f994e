//! The applier: observes the store, the runtime and the proxy, asks the planner what to do for
//! each app and does it.
//!
//! One `tick` is one pass of observe → plan → apply → publish routes. The same pass runs for the
//! first deploy, for every rollout step, for scaling and after a control-plane restart, when it
//! re-adopts whatever the runtime reports as running.

use crate::plan::{self, Action, Desired, Life, Observed, Outcome, Rollout};
use artifact::ArtifactStore;
use model::{AppName, Backend, BackendStatus, InstanceId, ProcessType, ReleaseId, RouteTable, Site};
use proxy::AdminClient;
use runtime::{InstanceSpec, InstanceState, InstanceStatus, Runtime};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use store::{DeployStatus, InstanceRow, Store};
use tracing::{info, warn};

/// What a secret is sealed under: the app, stage and name it belongs to, so a sealed value moved
/// to another key does not open.
pub fn secret_context(app: &AppName, stage: &str, key: &str) -> String {
    format!("secret;app={app};stage={stage};key={key}")
}

/// The secrets of `scope`, still sealed, for the runtime to open into a process.
pub fn sealed_secrets(store: &Store, scope: &model::VarScope) -> Result<Vec<runtime::SealedVar>, store::StoreError> {
    Ok(store
        .scoped_vars(&scope.app, &scope.stage)?
        .into_iter()
        .filter(|v| v.secret)
        .map(|v| runtime::SealedVar {
            context: secret_context(&scope.app, &v.stage, &v.key),
            name: v.key,
            sealed: v.value,
        })
        .collect())
}

/// Milliseconds since the Unix epoch: the one place the reconciler reads the clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("state: {0}")]
    Store(#[from] store::StoreError),
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("proxy: {0}")]
    Proxy(#[from] proxy::ProxyError),
    #[error("artifact: {0}")]
    Artifact(#[from] artifact::ArtifactError),
    #[error("picking a free port: {0}")]
    Port(std::io::Error),
}

/// Carries out plans against a runtime backend and the proxy.
pub struct Reconciler<R: Runtime> {
    store: Arc<Mutex<Store>>,
    runtime: Arc<R>,
    proxy: AdminClient,
    artifacts: Arc<ArtifactStore>,
    /// Host suffix for app sites, e.g. `localhost` gives `hello.localhost`.
    domain: String,
    stopping: Arc<Mutex<HashSet<InstanceId>>>,
    published: Option<Vec<Site>>,
}

impl<R: Runtime> Reconciler<R> {
    pub fn new(
        store: Arc<Mutex<Store>>,
        runtime: Arc<R>,
        proxy: AdminClient,
        artifacts: Arc<ArtifactStore>,
        domain: String,
    ) -> Self {
        Self { store, runtime, proxy, artifacts, domain, stopping: Default::default(), published: None }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store mutex is never poisoned: holders do not panic")
    }

    /// One pass of observe, plan, apply and publish.
    pub async fn tick(&mut self) -> Result<(), ReconcileError> {
        let statuses: HashMap<InstanceId, InstanceStatus> =
            self.runtime.list().await?.into_iter().map(|s| (s.spec.id.clone(), s)).collect();
        let proxy_status: HashMap<InstanceId, BackendStatus> =
            self.proxy.status().await?.backends.into_iter().map(|b| (b.id.clone(), b)).collect();
        let now = now_ms();
        let (apps, rows, deploys) = {
            let store = self.store();
            (store.apps()?, store.instances()?, store.active_deploys()?)
        };

        self.stop_orphans(&statuses, &rows);
        for app in apps.iter().filter(|a| a.destroyed && !rows.iter().any(|r| r.app == a.name)) {
            if self.store().purge_app(&app.name)? {
                info!(app = %app.name, "destroyed app removed");
            }
        }

        for app in &apps {
            let target = match app.target {
                Some(id) => Some((id, self.store().release(&app.name, id)?.spec)),
                None => None,
            };
            let rollout = deploys
                .iter()
                .find(|d| d.app.as_ref() == Some(&app.name) && d.release == app.target)
                .map(|d| Rollout { deploy_id: d.id, started_ms: d.started_at_ms, previous: d.previous });
            let desired = Desired { app: app.name.clone(), target, scale: app.scale.clone(), rollout };
            let observed: Vec<Observed> = rows
                .iter()
                .filter(|r| r.app == app.name)
                .map(|r| self.observe(r, statuses.get(&r.id), proxy_status.get(&r.id)))
                .collect();
            let actions = plan::plan(&desired, &observed, now);
            for action in actions {
                self.apply(&app.name, &desired, action, now).await?;
            }
        }
        self.publish_routes().await
    }

    fn observe(&self, row: &InstanceRow, status: Option<&InstanceStatus>, health: Option<&BackendStatus>) -> Observed {
        let life = if self.stopping.lock().expect("never poisoned").contains(&row.id) {
            Life::Stopping
        } else {
            match status {
                None => Life::Dead,
                Some(s) if matches!(s.state, InstanceState::Exited(_)) => Life::Dead,
                Some(s) if s.state == InstanceState::Stopping => Life::Stopping,
                Some(s) => {
                    let running = s.state == InstanceState::Running;
                    let (ready, failures, inflight, last_error) = match (row.process.is_web(), health) {
                        (true, Some(h)) => {
                            (h.healthy && running, h.consecutive_failures, h.inflight, h.last_error.clone())
                        }
                        (true, None) => (false, 0, 0, None),
                        (false, _) => (running, 0, 0, None),
                    };
                    Life::Alive {
                        ready,
                        consecutive_failures: failures,
                        restarts: s.restarts,
                        inflight,
                        last_error: s.last_exit.clone().or(last_error),
                    }
                }
            }
        };
        Observed {
            id: row.id.clone(),
            release: row.release,
            process: row.process.clone(),
            routed: row.routed,
            draining_since_ms: row.draining_since_ms,
            created_at_ms: row.created_at_ms,
            life,
        }
    }

    /// Instances the runtime runs that the control plane has no record of (a crash between
    /// starting and recording): stop them, so nothing is orphaned.
    fn stop_orphans(&self, statuses: &HashMap<InstanceId, InstanceStatus>, rows: &[InstanceRow]) {
        let known: HashSet<&InstanceId> = rows.iter().map(|r| &r.id).collect();
        for id in statuses.keys().filter(|id| !known.contains(id)) {
            warn!(instance = %id, "stopping an instance with no record");
            self.spawn_stop(id.clone(), false);
        }
    }

    async fn apply(
        &mut self,
        app: &AppName,
        desired: &Desired,
        action: Action,
        now: u64,
    ) -> Result<(), ReconcileError> {
        let deploy_id = desired.rollout.map(|r| r.deploy_id);
        match action {
            Action::Start { process, routed } => {
                let (release, spec) = desired.target.as_ref().expect("the planner starts instances only for a target");
                let id = self.start(app, *release, spec, &process, routed, now).await?;
                self.note(deploy_id, app, &format!("started {id}"));
            }
            Action::Route { id } => {
                self.store().set_routed(&id, true)?;
                self.note(deploy_id, app, &format!("routed {id}"));
            }
            Action::Drain { id } => {
                self.store().start_draining(&id, now)?;
                self.note(deploy_id, app, &format!("draining {id}"));
            }
            Action::Evict { id, reason } => {
                let message = format!("replacing {id}: {reason}");
                self.store().start_draining(&id, now)?;
                self.store().add_event(Some(app), "instance.replaced", &message, now)?;
                self.note(deploy_id, app, &message);
            }
            Action::Stop { id } => {
                self.note(deploy_id, app, &format!("stopping {id}"));
                self.spawn_stop(id, true);
            }
            Action::Forget { id } => {
                self.store().delete_instance(&id)?;
                // The runtime may still hold files for it; a failure here is harmless.
                let _ = self.runtime.remove(&id).await;
                info!(app = %app, instance = %id, "instance is gone; forgot it");
            }
            Action::Finish { deploy_id, outcome } => self.finish(app, desired, deploy_id, outcome, now)?,
        }
        Ok(())
    }

    fn finish(
        &self,
        app: &AppName,
        desired: &Desired,
        deploy_id: u64,
        outcome: Outcome,
        now: u64,
    ) -> Result<(), ReconcileError> {
        let store = self.store();
        let release = desired.target.as_ref().map(|(r, _)| *r);
        match outcome {
            Outcome::Succeeded => {
                if let Some(release) = release {
                    store.set_stable(app, release)?;
                }
                let message = format!("{} is live", release.map(|r| r.to_string()).unwrap_or_default());
                store.finish_deploy(deploy_id, DeployStatus::Succeeded, &message, now)?;
                store.append_deploy_log(deploy_id, &message)?;
                store.add_event(Some(app), "deploy.succeeded", &message, now)?;
                info!(app = %app, deploy = deploy_id, "deploy finished");
            }
            Outcome::RolledBack { to, reason } => {
                store.set_target(app, Some(to))?;
                let message = format!("rolled back to {to}: {reason}");
                store.finish_deploy(deploy_id, DeployStatus::RolledBack, &message, now)?;
                store.append_deploy_log(deploy_id, &message)?;
                store.add_event(Some(app), "deploy.rolled-back", &message, now)?;
                warn!(app = %app, deploy = deploy_id, %reason, "deploy rolled back");
            }
            Outcome::Failed { reason } => {
                store.set_target(app, None)?;
                let message = format!("deploy failed: {reason}");
                store.finish_deploy(deploy_id, DeployStatus::Failed, &message, now)?;
                store.append_deploy_log(deploy_id, &message)?;
                store.add_event(Some(app), "deploy.failed", &message, now)?;
                warn!(app = %app, deploy = deploy_id, %reason, "deploy failed");
            }
        }
        Ok(())
    }

    fn note(&self, deploy_id: Option<u64>, app: &AppName, line: &str) {
        info!(app = %app, "{line}");
        if let Some(id) = deploy_id {
            if let Err(e) = self.store().append_deploy_log(id, line) {
                warn!(error = %e, "could not record deploy progress");
            }
        }
    }

    async fn start(
        &self,
        app: &AppName,
        release: ReleaseId,
        spec: &model::AppSpec,
        process: &ProcessType,
        routed: bool,
        now: u64,
    ) -> Result<InstanceId, ReconcileError> {
        let digest = self.store().release(app, release)?.digest;
        // An app built from a Dockerfile runs its image; any other its unpacked slug.
        let artifact = match spec.dockerfile {
            Some(_) => runtime::Artifact::Image(digest.to_string()),
            None => {
                let artifacts = self.artifacts.clone();
                let slug_dir = tokio::task::spawn_blocking(move || artifacts.unpacked(&digest))
                    .await
                    .expect("unpacking does not panic")?;
                runtime::Artifact::Slug(slug_dir)
            }
        };
        let id = InstanceId::new(app, process, release, &random_suffix());
        let port = if process.is_web() { Some(self.free_port()?) } else { None };
        let row = InstanceRow {
            id: id.clone(),
            app: app.clone(),
            release,
            process: process.clone(),
            port,
            routed,
            draining_since_ms: None,
            created_at_ms: now,
        };
        // The record is written before the start, so a crash in between leaves a record of a
        // dead instance (forgotten next pass), never an instance nobody knows about.
        self.store().insert_instance(&row)?;
        let env = spec.run_env();
        let sealed_env = sealed_secrets(&self.store(), &spec.var_scope())?;
        let instance = InstanceSpec {
            id: id.clone(),
            app: app.clone(),
            release,
            process: process.clone(),
            command: spec.processes.get(process).cloned().unwrap_or_default(),
            env,
            port,
            artifact,
            stop_grace: spec.deploy.stop_grace,
            sealed_env,
        };
        if let Err(e) = self.runtime.start(instance).await {
            self.store().delete_instance(&id)?;
            return Err(e.into());
        }
        Ok(id)
    }

    /// A loopback port no instance of ours holds.
    fn free_port(&self) -> Result<u16, ReconcileError> {
        let taken: HashSet<u16> = self.store().instances()?.iter().filter_map(|r| r.port).collect();
        for _ in 0..20 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(ReconcileError::Port)?;
            if !taken.contains(&port) {
                return Ok(port);
            }
        }
        Err(ReconcileError::Port(std::io::Error::other("no free port after 20 tries")))
    }

    /// Stops an instance in the background (stopping takes up to its grace period) and then
    /// removes its record, which takes it out of the routing table.
    fn spawn_stop(&self, id: InstanceId, has_record: bool) {
        if !self.stopping.lock().expect("never poisoned").insert(id.clone()) {
            return;
        }
        let runtime = self.runtime.clone();
        let store = self.store.clone();
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.stop(&id).await {
                warn!(instance = %id, error = %e, "stop failed");
            }
            let _ = runtime.remove(&id).await;
            if has_record {
                if let Err(e) = store.lock().expect("never poisoned").delete_instance(&id) {
                    warn!(instance = %id, error = %e, "could not delete instance record");
                }
            }
            stopping.lock().expect("never poisoned").remove(&id);
        });
    }

    /// The routing table implied by the records: every web instance with a port, routed or not,
    /// so the proxy health-checks candidates and counts in-flight requests of draining ones.
    fn sites(&self) -> Result<Vec<Site>, ReconcileError> {
        let store = self.store();
        let mut specs: HashMap<(AppName, ReleaseId), model::AppSpec> = HashMap::new();
        let mut by_app: BTreeMap<AppName, Vec<Backend>> = BTreeMap::new();
        for row in store.instances()? {
            let Some(port) = row.port else { continue };
            let key = (row.app.clone(), row.release);
            if !specs.contains_key(&key) {
                specs.insert(key.clone(), store.release(&row.app, row.release)?.spec);
            }
            by_app.entry(row.app.clone()).or_default().push(Backend {
                id: row.id.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                routed: row.routed,
                health: specs[&key].health.clone(),
            });
        }
        let mut sites = Vec::with_capacity(by_app.len());
        for (app, backends) in by_app {
            // Hosts and balancing follow the release the app is meant to run.
            let routing = match store.app(&app)?.target {
                Some(target) => store.release(&app, target)?.spec.routing,
                None => model::RoutingSpec::default(),
            };
            let mut hosts = vec![format!("{app}.{}", self.domain)];
            hosts.extend(routing.hosts);
            sites.push(Site { hosts, app, balance: routing.balance, backends });
        }
        Ok(sites)
    }

    async fn publish_routes(&mut self) -> Result<(), ReconcileError> {
        let sites = self.sites()?;
        if self.published.as_ref() == Some(&sites) {
            return Ok(());
        }
        let generation = self.store().next_counter("routes.generation")?;
        self.proxy.put_routes(&RouteTable { generation, sites: sites.clone() }).await?;
        self.published = Some(sites);
        Ok(())
    }
}

fn random_suffix() -> String {
    let n: u32 = rand::random();
    format!("{n:08x}")
}
