//! The applier: observes the store, the runtime and the proxy, asks the planner what to do for
//! each app and does it.
//!
//! One `tick` is one pass of observe → plan → apply → publish routes. The same pass runs for the
//! first deploy, for every rollout step, for scaling and after a control-plane restart, when it
//! re-adopts whatever the runtime reports as running.
//!
//! Each app is planned and applied on its own, the apps of a pass concurrently: an error in one
//! app (a start the runtime refuses, a release that cannot be read) is recorded against that app,
//! as an `app.error` event and in its deploy's log, and the app is tried again after a back-off,
//! while every other app is planned, applied and routed as usual. Only what every app needs (the
//! runtime's and the proxy's view) fails a whole pass.
//!
//! Starts and stops run in the background, so a pass never waits on one: a slow start (a large
//! slug to unpack, a runtime that takes its time) delays neither the routes the pass publishes
//! nor any other app. An instance being started counts as alive and not ready; when its start
//! fails, the next pass records the error against its app, with the same back-off.

use crate::plan::{self, Action, Desired, Life, Observed, Outcome, Rollout};
use artifact::ArtifactStore;
use model::{AppName, Backend, BackendStatus, InstanceId, ProcessType, ReleaseId, RouteTable, Site};
use proxy::AdminClient;
use runtime::{InstanceSpec, InstanceState, InstanceStatus, Runtime};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use store::{AppState, DeployStatus, InstanceRow, Store};
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

/// The user `app`'s code runs as on this machine: its own when this process may switch users
/// (is root), else this process's (`None`). For instances, builds and tests alike.
pub fn app_user(store: &mut Store, app: &AppName) -> Result<Option<model::AppUser>, store::StoreError> {
    match sandbox::can_switch_users() {
        true => store.app_user(app).map(Some),
        false => Ok(None),
    }
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
    /// Instances whose start runs in the background; their records already exist.
    starting: Arc<Mutex<HashSet<InstanceId>>>,
    /// How the background starts end, for the next pass to record.
    started: (tokio::sync::mpsc::UnboundedSender<Started>, tokio::sync::mpsc::UnboundedReceiver<Started>),
    published: Option<Vec<Site>>,
    /// Where instances' logs are, so a purged app's go with it (`None`: left alone).
    logs_root: Option<std::path::PathBuf>,
    /// Apps whose last pass failed: what failed, and when to try again.
    failing: HashMap<AppName, Failing>,
    /// What the proxy last refused of each app's site, so each refusal is recorded once.
    refused: HashMap<AppName, String>,
}

/// How a background start ended.
#[derive(Debug)]
struct Started {
    app: AppName,
    id: InstanceId,
    deploy_id: Option<u64>,
    /// What failed, if it did.
    error: Option<String>,
}

/// An app whose last pass failed.
#[derive(Debug, Clone)]
struct Failing {
    error: String,
    /// Failed passes in a row.
    count: u32,
    retry_at_ms: u64,
}

impl Failing {
    /// The first retry comes after a pass interval; each failure doubles it, up to 10 s.
    fn backoff_ms(count: u32) -> u64 {
        (200u64 << count.min(6)).min(10_000)
    }
}

impl<R: Runtime> Reconciler<R> {
    pub fn new(
        store: Arc<Mutex<Store>>,
        runtime: Arc<R>,
        proxy: AdminClient,
        artifacts: Arc<ArtifactStore>,
        domain: String,
    ) -> Self {
        Self {
            store,
            runtime,
            proxy,
            artifacts,
            domain,
            stopping: Default::default(),
            starting: Default::default(),
            started: tokio::sync::mpsc::unbounded_channel(),
            published: None,
            logs_root: None,
            failing: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// Removes a purged app's logs from `root`, so a later app of the same name (a preview of a
    /// new branch with the same slug) starts with none of them.
    pub fn with_logs_root(mut self, root: std::path::PathBuf) -> Self {
        self.logs_root = Some(root);
        self
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store mutex is never poisoned: holders do not panic")
    }

    /// One pass of observe, plan, apply and publish.
    pub async fn tick(&mut self) -> Result<(), ReconcileError> {
        let starting = self.starting.lock().expect("never poisoned").clone();
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
        let deploys = self.finish_superseded(&apps, deploys, now);
        let failed_starts = self.record_starts();
        let due: Vec<&AppState> = apps
            .iter()
            .filter(|app| self.failing.get(&app.name).is_none_or(|failing| failing.retry_at_ms <= now))
            .collect();
        let observed = Observation {
            rows: &rows,
            deploys: &deploys,
            statuses: &statuses,
            proxy: &proxy_status,
            starting: &starting,
        };
        let passes = due.iter().map(|app| self.reconcile_app(app, &observed, now));
        let results = futures_util::future::join_all(passes).await;
        for (app, result) in due.into_iter().zip(results) {
            match result {
                Ok(()) if !failed_starts.contains_key(&app.name) => self.app_succeeded(&app.name),
                Ok(()) => {}
                Err(e) => self.app_failed(app, &deploys, &e.to_string(), now),
            }
        }
        for (app, error) in failed_starts {
            if let Some(app) = apps.iter().find(|a| a.name == app) {
                self.app_failed(app, &deploys, &error, now);
            }
        }
        self.publish_routes(now).await
    }

    /// Takes in how the background starts since the last pass ended: a line in the deploy's log
    /// for each, and the error of each app whose start failed (the last one, if several did).
    fn record_starts(&mut self) -> HashMap<AppName, String> {
        let mut failed = HashMap::new();
        while let Ok(started) = self.started.1.try_recv() {
            match started.error {
                None => self.note(started.deploy_id, &started.app, &format!("started {}", started.id)),
                Some(error) => {
                    failed.insert(started.app, error);
                }
            }
        }
        failed
    }

    /// Plans and applies one app: purges it once destroyed and drained, else makes its instances
    /// match its target.
    async fn reconcile_app(&self, app: &AppState, observed: &Observation<'_>, now: u64) -> Result<(), ReconcileError> {
        if app.destroyed && !observed.rows.iter().any(|r| r.app == app.name) {
            if self.store().purge_app(&app.name)? {
                info!(app = %app.name, "destroyed app removed");
                if let Some(root) = &self.logs_root {
                    let dir = logs::app_dir(root, &app.name);
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            warn!(app = %app.name, error = %e, "could not remove a destroyed app's logs");
                        }
                    }
                }
            }
            return Ok(());
        }
        let target = match app.target {
            Some(id) => Some((id, self.store().release(&app.name, id)?.spec)),
            None => None,
        };
        let rollout = observed
            .deploys
            .iter()
            .find(|d| d.app.as_ref() == Some(&app.name) && d.release == app.target)
            .map(|d| Rollout { deploy_id: d.id, started_ms: d.started_at_ms, previous: d.previous });
        let desired = Desired { app: app.name.clone(), target, scale: app.scale.clone(), rollout };
        let instances: Vec<Observed> = observed
            .rows
            .iter()
            .filter(|r| r.app == app.name)
            .map(|r| self.observe(r, observed.statuses.get(&r.id), observed.proxy.get(&r.id), observed.starting))
            .collect();
        for action in plan::plan(&desired, &instances, now) {
            self.apply(&app.name, &desired, action, now).await?;
        }
        Ok(())
    }

    /// Ends the rollouts of releases that are no longer their app's target (a config change, a
    /// rollback or another push made a newer release meanwhile), so nothing waits on them for
    /// ever; returns the deploys still active.
    fn finish_superseded(&self, apps: &[AppState], deploys: Vec<store::Deploy>, now: u64) -> Vec<store::Deploy> {
        let mut active = Vec::with_capacity(deploys.len());
        for deploy in deploys {
            let app = deploy.app.as_ref().and_then(|name| apps.iter().find(|a| &a.name == name));
            // Not released yet (still building), its app gone, or still the target: not superseded.
            let Some(app) = app.filter(|app| deploy.release.is_some() && app.target != deploy.release) else {
                active.push(deploy);
                continue;
            };
            let message = match app.target {
                Some(target) => format!("superseded by {target}"),
                None => "superseded: the app runs no release any more".to_owned(),
            };
            let app = &app.name;
            let store = self.store();
            let finished = store
                .finish_deploy(deploy.id, DeployStatus::Superseded, &message, now)
                .and_then(|()| store.append_deploy_log(deploy.id, &message))
                .and_then(|()| store.add_event(Some(app), "deploy.superseded", &message, now));
            match finished {
                Ok(()) => info!(app = %app, deploy = deploy.id, "deploy superseded"),
                Err(e) => warn!(app = %app, deploy = deploy.id, error = %e, "could not end a superseded deploy"),
            }
        }
        active
    }

    fn app_succeeded(&mut self, app: &AppName) {
        if let Some(failing) = self.failing.remove(app) {
            info!(app = %app, after = failing.count, "app reconciles again");
        }
    }

    /// Records a failed pass against `app` alone: an event and a line in its deploy's log when
    /// the error is new, and a later retry.
    fn app_failed(&mut self, app: &AppState, deploys: &[store::Deploy], error: &str, now: u64) {
        let error = error.to_owned();
        let count = self.failing.get(&app.name).map_or(0, |f| f.count) + 1;
        let retry_at_ms = now + Failing::backoff_ms(count);
        let new = self.failing.get(&app.name).is_none_or(|f| f.error != error);
        self.failing.insert(app.name.clone(), Failing { error: error.clone(), count, retry_at_ms });
        if !new {
            return;
        }
        warn!(app = %app.name, %error, "reconciling the app failed; other apps carry on");
        let deploy = deploys.iter().find(|d| d.app.as_ref() == Some(&app.name) && d.release == app.target);
        self.note(deploy.map(|d| d.id), &app.name, &format!("error: {error}"));
        if let Err(e) = self.store().add_event(Some(&app.name), "app.error", &error, now) {
            warn!(app = %app.name, error = %e, "could not record the app's error");
        }
    }
    fn observe(
        &self,
        row: &InstanceRow,
        status: Option<&InstanceStatus>,
        health: Option<&BackendStatus>,
        starting: &HashSet<InstanceId>,
    ) -> Observed {
        let life = if self.stopping.lock().expect("never poisoned").contains(&row.id) {
            Life::Stopping
        } else if starting.contains(&row.id) && status.is_none_or(|s| s.state != InstanceState::Running) {
            // Not running yet, and not lost either: its start is under way.
            Life::Alive { ready: false, consecutive_failures: 0, restarts: 0, inflight: 0, last_error: None }
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

    async fn apply(&self, app: &AppName, desired: &Desired, action: Action, now: u64) -> Result<(), ReconcileError> {
        let deploy_id = desired.rollout.map(|r| r.deploy_id);
        match action {
            Action::Start { process, routed } => {
                let (release, spec) = desired.target.as_ref().expect("the planner starts instances only for a target");
                self.spawn_start(app, *release, spec, &process, routed, now, deploy_id)?;
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

    /// Records a new instance and starts it in the background; how the start ended is recorded
    /// by the next pass. The record comes first, so a crash in between leaves a record of a dead
    /// instance (forgotten next pass), never an instance nobody knows about.
    #[allow(clippy::too_many_arguments)]
    fn spawn_start(
        &self,
        app: &AppName,
        release: ReleaseId,
        spec: &model::AppSpec,
        process: &ProcessType,
        routed: bool,
        now: u64,
        deploy_id: Option<u64>,
    ) -> Result<(), ReconcileError> {
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
        let (env, sealed_env, user, digest) = {
            let mut store = self.store();
            let sealed_env = sealed_secrets(&store, &spec.var_scope())?;
            let user = app_user(&mut store, app)?;
            let digest = store.release(app, release).map(|r| r.digest);
            store.insert_instance(&row)?;
            (spec.run_env(), sealed_env, user, digest)
        };
        self.starting.lock().expect("never poisoned").insert(id.clone());
        let (runtime, store, artifacts, starting) =
            (self.runtime.clone(), self.store.clone(), self.artifacts.clone(), self.starting.clone());
        let done = self.started.0.clone();
        let (app, process, spec) = (app.clone(), process.clone(), spec.clone());
        tokio::spawn(async move {
            let started = async {
                // An app built from a Dockerfile runs its image; any other its unpacked slug.
                let digest = digest?;
                let artifact = match spec.dockerfile {
                    Some(_) => runtime::Artifact::Image(digest.to_string()),
                    None => {
                        let slug_dir = tokio::task::spawn_blocking(move || artifacts.unpacked(&digest))
                            .await
                            .expect("unpacking does not panic")?;
                        runtime::Artifact::Slug(slug_dir)
                    }
                };
                let instance = InstanceSpec {
                    id: id.clone(),
                    app: app.clone(),
                    release,
                    command: spec.processes.get(&process).cloned().unwrap_or_default(),
                    process,
                    env,
                    port,
                    artifact,
                    stop_grace: spec.deploy.stop_grace,
                    sealed_env,
                    user,
                };
                runtime.start(instance).await?;
                Ok::<(), ReconcileError>(())
            }
            .await;
            let error = match started {
                Ok(()) => None,
                Err(e) => {
                    if let Err(e) = store.lock().expect("never poisoned").delete_instance(&id) {
                        warn!(instance = %id, error = %e, "could not delete a failed instance's record");
                    }
                    Some(e.to_string())
                }
            };
            starting.lock().expect("never poisoned").remove(&id);
            // The receiver lives as long as the reconciler; without it nobody records anything.
            let _ = done.send(Started { app, id, deploy_id, error });
        });
        Ok(())
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
    /// An app serves `APP.DOMAIN` and those extra hosts of its target release that it holds the
    /// claim of (see `store::hosts`). An app whose release cannot be read is left out, with a
    /// warning, rather than keeping every other app's routes from being published.
    fn sites(&self) -> Result<Vec<Site>, ReconcileError> {
        let store = self.store();
        let claims = store.host_claims()?;
        let mut specs: HashMap<(AppName, ReleaseId), model::AppSpec> = HashMap::new();
        let mut by_app: BTreeMap<AppName, Vec<Backend>> = BTreeMap::new();
        let mut unreadable: HashSet<AppName> = HashSet::new();
        for row in store.instances()? {
            let Some(port) = row.port else { continue };
            let key = (row.app.clone(), row.release);
            if !specs.contains_key(&key) {
                match store.release(&row.app, row.release) {
                    Ok(release) => specs.insert(key.clone(), release.spec),
                    Err(e) => {
                        if unreadable.insert(row.app.clone()) {
                            warn!(app = %row.app, error = %e, "cannot read a release; its site is left out");
                        }
                        continue;
                    }
                };
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
            if unreadable.contains(&app) {
                continue;
            }
            // Hosts and balancing follow the release the app is meant to run.
            let target = store.app(&app).and_then(|state| state.target.map(|t| store.release(&app, t)).transpose());
            let routing = match target {
                Ok(Some(release)) => release.spec.routing,
                Ok(None) => model::RoutingSpec::default(),
                Err(e) => {
                    warn!(app = %app, error = %e, "cannot read the app's target; its site is left out");
                    continue;
                }
            };
            let mut hosts = vec![store::own_host(&app, &self.domain)];
            hosts.extend(routing.hosts.into_iter().filter(|host| claims.get(host) == Some(&app)));
            sites.push(Site { hosts, app, balance: routing.balance, backends });
        }
        Ok(sites)
    }

    async fn publish_routes(&mut self, now: u64) -> Result<(), ReconcileError> {
        let sites = self.sites()?;
        if self.published.as_ref() == Some(&sites) {
            return Ok(());
        }
        let generation = self.store().next_counter("routes.generation")?;
        let rejected = self.proxy.put_routes(&RouteTable { generation, sites: sites.clone() }).await?;
        self.published = Some(sites);
        self.record_refusals(rejected, now);
        Ok(())
    }

    /// Records what the proxy refused of the table, against the app it belongs to, once per
    /// refusal; the rest of the table is live.
    fn record_refusals(&mut self, rejected: Vec<proxy::Rejection>, now: u64) {
        let mut current: HashMap<AppName, String> = HashMap::new();
        for rejection in rejected {
            let reasons = current.entry(rejection.app).or_default();
            if !reasons.is_empty() {
                reasons.push_str("; ");
            }
            reasons.push_str(&rejection.reason);
        }
        for (app, reason) in &current {
            if self.refused.get(app) == Some(reason) {
                continue;
            }
            warn!(app = %app, %reason, "the proxy refused part of the app's routes");
            let message = format!("the proxy refused part of its routes: {reason}");
            if let Err(e) = self.store().add_event(Some(app), "routes.refused", &message, now) {
                warn!(app = %app, error = %e, "could not record the refusal");
            }
        }
        self.refused = current;
    }
}

/// What one pass observed, shared by every app's plan.
struct Observation<'a> {
    rows: &'a [InstanceRow],
    deploys: &'a [store::Deploy],
    statuses: &'a HashMap<InstanceId, InstanceStatus>,
    proxy: &'a HashMap<InstanceId, BackendStatus>,
    /// The starts under way when the pass began, before the runtime was asked what runs: one
    /// that ends meanwhile is still seen as starting, never as lost.
    starting: &'a HashSet<InstanceId>,
}

fn random_suffix() -> String {
    let n: u32 = rand::random();
    format!("{n:08x}")
}
