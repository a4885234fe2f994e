//! Drover's durable state in SQLite: apps, releases, instances, deploys, pipeline runs and their
//! steps, and events.
//!
//! This is the only crate that writes SQL. Every write that changes more than one row runs in
//! one transaction, and the database runs in WAL mode, so a `kill -9` of the control plane leaves
//! either the old or the new state, never half of a release.

use model::{AppName, AppSpec, Digest, InstanceId, ProcessType, ReleaseId};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

mod hosts;
mod users;
pub use hosts::{own_host, ReleaseRefused};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored {what} is corrupt: {source}")]
    Corrupt { what: &'static str, source: serde_json::Error },
    #[error("no app named {0}")]
    NoApp(AppName),
    #[error("app {app} has no release {release}")]
    NoRelease { app: AppName, release: ReleaseId },
    /// The release would serve another app's host, or take over a pipeline stage's app.
    #[error(transparent)]
    Refused(#[from] ReleaseRefused),
    #[error("every one of the {} app users is given out", model::AppUser::COUNT)]
    NoAppUser,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A numbered, immutable release: an artifact digest plus the spec (config and env) it runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub app: AppName,
    pub id: ReleaseId,
    pub digest: Digest,
    pub spec: AppSpec,
    pub description: String,
    pub created_at_ms: u64,
}

/// What the reconciler should make true for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    pub name: AppName,
    /// The release that should run, if any.
    pub target: Option<ReleaseId>,
    /// The last release that became fully healthy; a failed deploy goes back to it.
    pub stable: Option<ReleaseId>,
    /// Scale set with `drover scale`; overrides the release's `scale:`.
    pub scale: BTreeMap<ProcessType, u32>,
    pub created_at_ms: u64,
    /// Being destroyed: once its instances are gone, the app and its history are removed.
    pub destroyed: bool,
}

/// The control plane's record of an instance it started: port and routing role.
/// What actually runs is the runtime's business; this row is what the control plane intended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRow {
    pub id: InstanceId,
    pub app: AppName,
    pub release: ReleaseId,
    pub process: ProcessType,
    pub port: Option<u16>,
    pub routed: bool,
    /// Set when the instance stopped receiving new requests.
    pub draining_since_ms: Option<u64>,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployStatus {
    Building,
    Deploying,
    Succeeded,
    Failed,
    RolledBack,
    /// A newer release of the app became its target before this one's rollout ended.
    Superseded,
}

impl DeployStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Building => "building",
            DeployStatus::Deploying => "deploying",
            DeployStatus::Succeeded => "succeeded",
            DeployStatus::Failed => "failed",
            DeployStatus::RolledBack => "rolled-back",
            DeployStatus::Superseded => "superseded",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "building" => DeployStatus::Building,
            "deploying" => DeployStatus::Deploying,
            "succeeded" => DeployStatus::Succeeded,
            "rolled-back" => DeployStatus::RolledBack,
            "superseded" => DeployStatus::Superseded,
            _ => DeployStatus::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, DeployStatus::Building | DeployStatus::Deploying)
    }
}

/// One request to change what runs: a build and rollout, a rollback, or a config change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    pub id: u64,
    pub app: Option<AppName>,
    pub release: Option<ReleaseId>,
    pub previous: Option<ReleaseId>,
    pub status: DeployStatus,
    pub message: String,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub ts_ms: u64,
    pub app: Option<AppName>,
    pub kind: String,
    pub message: String,
}

/// Where a pipeline run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// A newer push to the same branch replaced it before it started.
    Superseded,
    /// Built and tested; waits for someone to approve the deploy to `Run::stage`.
    Waiting,
    /// Someone refused the deploy it waited for.
    Rejected,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Superseded => "superseded",
            RunStatus::Waiting => "waiting",
            RunStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "cancelled" => RunStatus::Cancelled,
            "superseded" => RunStatus::Superseded,
            "waiting" => RunStatus::Waiting,
            "rejected" => RunStatus::Rejected,
            _ => RunStatus::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running | RunStatus::Waiting)
    }
}

/// One pipeline run: a commit of a branch going through build, test and release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    pub app: AppName,
    /// The branch name as pushed: data, never part of a command line.
    pub branch: String,
    pub commit: String,
    /// `push`, `webhook`, `poll` or `manual`.
    pub trigger: String,
    pub status: RunStatus,
    pub message: String,
    pub digest: Option<Digest>,
    pub created_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// The stage a waiting run waits to deploy to, or a resumed run starts from.
    pub stage: Option<String>,
    /// The test report of the run's artifact, as JSON.
    pub test_json: Option<String>,
}

const RUN_COLUMNS: &str =
    "id, app, branch, commit_sha, trigger, status, message, digest, created_at_ms, started_at_ms, \
                           finished_at_ms, stage, test_json";

fn row_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let digest: Option<String> = row.get(7)?;
    Ok(Run {
        id: row.get(0)?,
        app: AppName::parse(&row.get::<_, String>(1)?).map_err(|e| sql_err(1, e))?,
        branch: row.get(2)?,
        commit: row.get(3)?,
        trigger: row.get(4)?,
        status: RunStatus::parse(&row.get::<_, String>(5)?),
        message: row.get(6)?,
        digest: digest.map(|d| Digest::parse(&d)).transpose().map_err(|e| sql_err(7, e))?,
        created_at_ms: row.get(8)?,
        started_at_ms: row.get(9)?,
        finished_at_ms: row.get(10)?,
        stage: row.get(11)?,
        test_json: row.get(12)?,
    })
}

/// Where a step of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Running,
    /// An approval step: the run waits for `drover approve` or `drover reject`.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
    /// Nothing to do, e.g. a test step of an app that declares no tests.
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => StepStatus::Running,
            "waiting" => StepStatus::Waiting,
            "succeeded" => StepStatus::Succeeded,
            "cancelled" => StepStatus::Cancelled,
            "skipped" => StepStatus::Skipped,
            _ => StepStatus::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, StepStatus::Running | StepStatus::Waiting)
    }

    /// What an open step of a run that moved to `run` becomes; `None` while the run goes on.
    fn closed_by(run: RunStatus) -> Option<Self> {
        match run {
            RunStatus::Succeeded => Some(StepStatus::Succeeded),
            RunStatus::Cancelled | RunStatus::Superseded => Some(StepStatus::Cancelled),
            RunStatus::Failed | RunStatus::Rejected => Some(StepStatus::Failed),
            RunStatus::Queued | RunStatus::Running | RunStatus::Waiting => None,
        }
    }
}

/// One step of a run (`checkout`, `build`, `test`, `deploy:STAGE`, `approval:STAGE`), in the
/// order the steps started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStep {
    pub run: u64,
    /// 1, 2, ... within the run.
    pub seq: u64,
    pub name: String,
    pub status: StepStatus,
    pub started_at_ms: u64,
    /// `None` while the step runs or waits.
    pub finished_at_ms: Option<u64>,
    /// What came of it: a digest, a test summary, an error.
    pub message: String,
}

const STEP_COLUMNS: &str = "run, seq, name, status, started_at_ms, finished_at_ms, message";

/// Finishes the steps of run `run` that still run or wait; returns how many there were.
fn close_open_steps(conn: &Connection, run: u64, status: StepStatus, message: &str, now_ms: u64) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE run_steps SET status = ?1, message = ?2, finished_at_ms = ?3 WHERE run = ?4 AND finished_at_ms IS NULL",
        params![status.as_str(), message, now_ms, run],
    )?)
}

fn row_step(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunStep> {
    Ok(RunStep {
        run: row.get(0)?,
        seq: row.get(1)?,
        name: row.get(2)?,
        status: StepStatus::parse(&row.get::<_, String>(3)?),
        started_at_ms: row.get(4)?,
        finished_at_ms: row.get(5)?,
        message: row.get(6)?,
    })
}

/// Whose stage an app is: a stage of a pipeline app's pipeline, and for previews one branch
/// (empty for other stages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOwner {
    pub pipeline_app: AppName,
    pub stage: String,
    pub branch: String,
}

/// The outcome of [`Store::claim_stage_app`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The app is the owner's: claimed now or before.
    Ours,
    /// The app is someone else's; says whose.
    Taken(String),
}

fn branch_note(branch: &str) -> String {
    if branch.is_empty() {
        String::new()
    } else {
        format!(" for branch {branch:?}")
    }
}

/// The process group of a build or test command, recorded from just after it started until it
/// is gone, so a server that died meanwhile can kill what it left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepGroup {
    /// The group's id: the pid of its leader, the command's shell.
    pub pgid: u32,
    /// The leader's start time, in clock ticks since boot (`/proc/PID/stat` field 22).
    pub leader_start_time: u64,
    /// The boot the group ran in: pids and start times mean nothing in another.
    pub boot_id: String,
    /// What ran, for logs: `build of shop`, `tests of shop (run 4)`.
    pub what: String,
    pub recorded_at_ms: u64,
}

/// A test record of an artifact: what was tested is what may ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub id: u64,
    pub digest: Digest,
    /// What produced it, e.g. `run 4` or `deploy 9`.
    pub source: String,
    pub passed: bool,
    pub report_json: Option<String>,
    pub created_at_ms: u64,
}

/// Where an app's code comes from besides `git push`: a remote repository that sends webhooks
/// or is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub app: AppName,
    pub url: String,
    /// `github`, `gitlab`, `gitea` or `bitbucket`, when webhooks are used.
    pub provider: Option<String>,
    /// The webhook secret, sealed by the caller; this crate never sees it in plain text.
    pub sealed_secret: Option<Vec<u8>>,
    pub poll_interval_ms: Option<u64>,
    /// Branch heads seen at the last poll.
    pub heads: BTreeMap<String, String>,
    pub polled_at_ms: Option<u64>,
}

/// A config var or secret of an app, for all stages (`stage` empty) or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppVar {
    pub stage: String,
    pub key: String,
    /// The plain value of a config var, or the sealed value of a secret.
    pub value: Vec<u8>,
    pub secret: bool,
}

pub struct Store {
    conn: Connection,
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE apps (
    name TEXT PRIMARY KEY,
    target INTEGER,
    stable INTEGER,
    scale_json TEXT NOT NULL DEFAULT '{}',
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE releases (
    app TEXT NOT NULL REFERENCES apps(name),
    id INTEGER NOT NULL,
    digest TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app, id)
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    release INTEGER NOT NULL,
    process TEXT NOT NULL,
    port INTEGER,
    routed INTEGER NOT NULL,
    draining_since_ms INTEGER,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE deploys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT,
    release INTEGER,
    previous INTEGER,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER
);
CREATE TABLE deploy_log (
    deploy INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (deploy, seq)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    app TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    digest TEXT,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER
);
CREATE INDEX runs_by_status ON runs (status, id);
CREATE TABLE run_log (
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (run, seq)
);
"#,
    r#"
CREATE TABLE sources (
    app TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    provider TEXT,
    secret BLOB,
    poll_interval_ms INTEGER,
    heads_json TEXT NOT NULL DEFAULT '{}',
    polled_at_ms INTEGER
);
CREATE TABLE deliveries (
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    app TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, id)
);
"#,
    r#"
CREATE TABLE app_vars (
    app TEXT NOT NULL,
    stage TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    secret INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app, stage, key)
);
"#,
    r#"
CREATE TABLE attestations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    passed INTEGER NOT NULL,
    report_json TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX attestations_by_digest ON attestations (digest, id);
ALTER TABLE runs ADD COLUMN stage TEXT;
ALTER TABLE runs ADD COLUMN test_json TEXT;
"#,
    r#"
ALTER TABLE apps ADD COLUMN destroyed INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
CREATE TABLE run_steps (
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    message TEXT NOT NULL,
    PRIMARY KEY (run, seq)
);
"#,
    r#"
CREATE TABLE step_groups (
    pgid INTEGER NOT NULL,
    leader_start_time INTEGER NOT NULL,
    boot_id TEXT NOT NULL,
    what TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (pgid, leader_start_time, boot_id)
);
"#,
    r#"
CREATE TABLE stage_apps (
    app TEXT PRIMARY KEY,
    pipeline_app TEXT NOT NULL,
    stage TEXT NOT NULL,
    branch TEXT NOT NULL
);
CREATE INDEX stage_apps_by_owner ON stage_apps (pipeline_app, stage, branch);
"#,
    r#"
CREATE TABLE host_claims (
    host TEXT PRIMARY KEY,
    app TEXT NOT NULL
);
CREATE INDEX host_claims_by_app ON host_claims (app);
"#,
    r#"
CREATE TABLE app_users (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL UNIQUE
);
"#,
];

fn parse_json<T: for<'de> Deserialize<'de>>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { what, source })
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain types always serialize")
}

/// An app name read from column `index`.
fn parse_app_name(index: usize, text: &str) -> Result<AppName> {
    AppName::parse(text).map_err(|e| StoreError::Sql(sql_err(index, e)))
}

fn sql_err<E: std::error::Error + Send + Sync + 'static>(index: usize, e: E) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
}

fn row_release(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, u64, String, String, String, u64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn row_instance(row: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRow> {
    Ok(InstanceRow {
        id: InstanceId::parse(&row.get::<_, String>(0)?).map_err(|e| sql_err(0, e))?,
        app: AppName::parse(&row.get::<_, String>(1)?).map_err(|e| sql_err(1, e))?,
        release: ReleaseId(row.get(2)?),
        process: ProcessType::parse(&row.get::<_, String>(3)?).map_err(|e| sql_err(3, e))?,
        port: row.get(4)?,
        routed: row.get(5)?,
        draining_since_ms: row.get(6)?,
        created_at_ms: row.get(7)?,
    })
}

fn row_deploy(row: &rusqlite::Row<'_>) -> rusqlite::Result<Deploy> {
    let app: Option<String> = row.get(1)?;
    Ok(Deploy {
        id: row.get(0)?,
        app: app.map(|a| AppName::parse(&a)).transpose().map_err(|e| sql_err(1, e))?,
        release: row.get::<_, Option<u64>>(2)?.map(ReleaseId),
        previous: row.get::<_, Option<u64>>(3)?.map(ReleaseId),
        status: DeployStatus::parse(&row.get::<_, String>(4)?),
        message: row.get(5)?,
        started_at_ms: row.get(6)?,
        finished_at_ms: row.get(7)?,
    })
}

const DEPLOY_COLUMNS: &str = "id, app, release, previous, status, message, started_at_ms, finished_at_ms";
const INSTANCE_COLUMNS: &str = "id, app, release, process, port, routed, draining_since_ms, created_at_ms";

impl Store {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = conn.transaction()?;
        for (idx, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", idx + 1)?;
        }
        tx.commit()?;
        Ok(Self { conn })
    }

    // ----- apps -----

    pub fn apps(&self) -> Result<Vec<AppState>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, target, stable, scale_json, created_at_ms, destroyed FROM apps ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<u64>>(1)?,
                r.get::<_, Option<u64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u64>(4)?,
                r.get::<_, bool>(5)?,
            ))
        })?;
        let mut apps = Vec::new();
        for row in rows {
            let (name, target, stable, scale, created_at_ms, destroyed) = row?;
            apps.push(AppState {
                name: AppName::parse(&name).map_err(|e| sql_err(0, e))?,
                target: target.map(ReleaseId),
                stable: stable.map(ReleaseId),
                scale: parse_json("app scale", &scale)?,
                created_at_ms,
                destroyed,
            });
        }
        Ok(apps)
    }

    pub fn app(&self, name: &AppName) -> Result<AppState> {
        self.apps()?.into_iter().find(|a| &a.name == name).ok_or_else(|| StoreError::NoApp(name.clone()))
    }

    pub fn set_scale(&self, name: &AppName, scale: &BTreeMap<ProcessType, u32>) -> Result<()> {
        let n = self
            .conn
            .execute("UPDATE apps SET scale_json = ?1 WHERE name = ?2", params![to_json(scale), name.as_str()])?;
        if n == 0 {
            return Err(StoreError::NoApp(name.clone()));
        }
        Ok(())
    }

    /// Points the app at `target`, e.g. when a failed deploy goes back to the stable release.
    pub fn set_target(&self, name: &AppName, target: Option<ReleaseId>) -> Result<()> {
        self.conn
            .execute("UPDATE apps SET target = ?1 WHERE name = ?2", params![target.map(|r| r.0), name.as_str()])?;
        Ok(())
    }

    /// Stops the app for good: nothing should run, and once nothing does, [`Store::purge_app`]
    /// removes it.
    pub fn destroy_app(&self, name: &AppName) -> Result<()> {
        self.conn.execute("UPDATE apps SET target = NULL, destroyed = 1 WHERE name = ?1", [name.as_str()])?;
        Ok(())
    }

    /// Removes a destroyed app with its releases and vars, in one transaction, if no instance
    /// of it is left. Returns whether it did.
    pub fn purge_app(&mut self, name: &AppName) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let left: u64 = tx.query_row("SELECT COUNT(*) FROM instances WHERE app = ?1", [name.as_str()], |r| r.get(0))?;
        let destroyed: bool = tx
            .query_row("SELECT destroyed FROM apps WHERE name = ?1", [name.as_str()], |r| r.get(0))
            .optional()?
            .unwrap_or(false);
        if left > 0 || !destroyed {
            return Ok(false);
        }
        tx.execute("DELETE FROM releases WHERE app = ?1", [name.as_str()])?;
        tx.execute("DELETE FROM app_vars WHERE app = ?1", [name.as_str()])?;
        tx.execute("DELETE FROM host_claims WHERE app = ?1", [name.as_str()])?;
        tx.execute("DELETE FROM apps WHERE name = ?1", [name.as_str()])?;
        tx.commit()?;
        Ok(true)
    }

    pub fn set_stable(&self, name: &AppName, stable: ReleaseId) -> Result<()> {
        self.conn.execute("UPDATE apps SET stable = ?1 WHERE name = ?2", params![stable.0, name.as_str()])?;
        Ok(())
    }

    // ----- releases -----

    /// Creates the app if needed, adds the next numbered release and makes it the target, in one
    /// transaction, with the hosts it serves claimed (apps answer at `APP.DOMAIN`). Refused
    /// ([`StoreError::Refused`]) when the release would serve another app's host or take over a
    /// pipeline stage's app; see the `hosts` module. Returns the new release.
    pub fn create_release(
        &mut self,
        spec: &AppSpec,
        digest: &Digest,
        description: &str,
        now_ms: u64,
        domain: &str,
    ) -> Result<Release> {
        let tx = self.conn.transaction()?;
        hosts::check(&tx, spec, domain)?;
        hosts::claim(&tx, spec)?;
        tx.execute(
            "INSERT OR IGNORE INTO apps (name, created_at_ms) VALUES (?1, ?2)",
            params![spec.name.as_str(), now_ms],
        )?;
        let next: u64 =
            tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM releases WHERE app = ?1", [spec.name.as_str()], |r| {
                r.get(0)
            })?;
        tx.execute(
            "INSERT INTO releases (app, id, digest, spec_json, description, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![spec.name.as_str(), next, digest.as_str(), to_json(spec), description, now_ms],
        )?;
        tx.execute("UPDATE apps SET target = ?1, destroyed = 0 WHERE name = ?2", params![next, spec.name.as_str()])?;
        tx.commit()?;
        Ok(Release {
            app: spec.name.clone(),
            id: ReleaseId(next),
            digest: digest.clone(),
            spec: spec.clone(),
            description: description.to_owned(),
            created_at_ms: now_ms,
        })
    }

    pub fn releases(&self, app: &AppName) -> Result<Vec<Release>> {
        let mut stmt = self.conn.prepare(
            "SELECT app, id, digest, spec_json, description, created_at_ms FROM releases WHERE app = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([app.as_str()], row_release)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(Self::release_from_row(row?)?);
        }
        Ok(out)
    }

    pub fn release(&self, app: &AppName, id: ReleaseId) -> Result<Release> {
        let row = self
            .conn
            .query_row(
                "SELECT app, id, digest, spec_json, description, created_at_ms FROM releases WHERE app = ?1 AND id = ?2",
                params![app.as_str(), id.0],
                row_release,
            )
            .optional()?;
        match row {
            Some(row) => Self::release_from_row(row),
            None => Err(StoreError::NoRelease { app: app.clone(), release: id }),
        }
    }

    fn release_from_row(
        (app, id, digest, spec, description, created_at_ms): (String, u64, String, String, String, u64),
    ) -> Result<Release> {
        Ok(Release {
            app: AppName::parse(&app).map_err(|e| sql_err(0, e))?,
            id: ReleaseId(id),
            digest: Digest::parse(&digest).map_err(|e| sql_err(2, e))?,
            spec: parse_json("release spec", &spec)?,
            description,
            created_at_ms,
        })
    }

    // ----- instances -----

    pub fn insert_instance(&self, row: &InstanceRow) -> Result<()> {
        self.conn.execute(
            &format!("INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                row.id.as_str(),
                row.app.as_str(),
                row.release.0,
                row.process.as_str(),
                row.port,
                row.routed,
                row.draining_since_ms,
                row.created_at_ms
            ],
        )?;
        Ok(())
    }

    pub fn instances(&self) -> Result<Vec<InstanceRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY app, process, created_at_ms"))?;
        let rows = stmt.query_map([], row_instance)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_routed(&self, id: &InstanceId, routed: bool) -> Result<()> {
        self.conn.execute("UPDATE instances SET routed = ?1 WHERE id = ?2", params![routed, id.as_str()])?;
        Ok(())
    }

    /// Takes the instance out of routing and remembers when draining began.
    pub fn start_draining(&self, id: &InstanceId, now_ms: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE instances SET routed = 0, draining_since_ms = COALESCE(draining_since_ms, ?1) WHERE id = ?2",
            params![now_ms, id.as_str()],
        )?;
        Ok(())
    }

    pub fn delete_instance(&self, id: &InstanceId) -> Result<()> {
        self.conn.execute("DELETE FROM instances WHERE id = ?1", [id.as_str()])?;
        Ok(())
    }

    // ----- deploys -----

    pub fn create_deploy(&self, app: Option<&AppName>, message: &str, now_ms: u64) -> Result<u64> {
        self.conn.execute(
            "INSERT INTO deploys (app, status, message, started_at_ms) VALUES (?1, 'building', ?2, ?3)",
            params![app.map(|a| a.as_str()), message, now_ms],
        )?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    /// Records which release a deploy rolls out, once the release exists.
    pub fn deploy_released(
        &self,
        id: u64,
        app: &AppName,
        release: ReleaseId,
        previous: Option<ReleaseId>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE deploys SET app = ?1, release = ?2, previous = ?3, status = 'deploying' WHERE id = ?4",
            params![app.as_str(), release.0, previous.map(|p| p.0), id],
        )?;
        Ok(())
    }

    pub fn finish_deploy(&self, id: u64, status: DeployStatus, message: &str, now_ms: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE deploys SET status = ?1, message = ?2, finished_at_ms = ?3 WHERE id = ?4 AND finished_at_ms IS NULL",
            params![status.as_str(), message, now_ms, id],
        )?;
        Ok(())
    }

    pub fn deploy(&self, id: u64) -> Result<Option<Deploy>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = ?1"), [id], row_deploy)
            .optional()?)
    }

    /// Deploys that are rolling out a release right now.
    pub fn active_deploys(&self) -> Result<Vec<Deploy>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE status = 'deploying' ORDER BY id"))?;
        let rows = stmt.query_map([], row_deploy)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deploys left building by a control plane that died: their upload is gone, so they failed.
    pub fn fail_interrupted_builds(&self, now_ms: u64) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE deploys SET status = 'failed', message = 'interrupted: the server stopped during the build', finished_at_ms = ?1 WHERE status = 'building'",
            [now_ms],
        )?)
    }

    pub fn append_deploy_log(&self, id: u64, line: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO deploy_log (deploy, seq, line) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM deploy_log WHERE deploy = ?1), ?2)",
            params![id, line],
        )?;
        Ok(())
    }

    /// Log lines of a deploy after sequence number `after`, with their sequence numbers.
    pub fn deploy_log(&self, id: u64, after: u64) -> Result<Vec<(u64, String)>> {
        let mut stmt =
            self.conn.prepare("SELECT seq, line FROM deploy_log WHERE deploy = ?1 AND seq > ?2 ORDER BY seq")?;
        let rows = stmt.query_map(params![id, after], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- pipeline runs -----

    /// Queues a run and supersedes the queued (not yet started) runs of the same branch, in one
    /// transaction. Returns the new run's id and the ids it superseded.
    pub fn queue_run(
        &mut self,
        app: &AppName,
        branch: &str,
        commit: &str,
        trigger: &str,
        now_ms: u64,
    ) -> Result<(u64, Vec<u64>)> {
        let tx = self.conn.transaction()?;
        let superseded: Vec<u64> = {
            let mut stmt =
                tx.prepare("SELECT id FROM runs WHERE app = ?1 AND branch = ?2 AND status IN ('queued', 'waiting')")?;
            let ids = stmt.query_map(params![app.as_str(), branch], |r| r.get(0))?;
            ids.collect::<rusqlite::Result<_>>()?
        };
        tx.execute(
            "UPDATE runs SET status = 'superseded', message = 'superseded by a newer push', finished_at_ms = ?3
             WHERE app = ?1 AND branch = ?2 AND status IN ('queued', 'waiting')",
            params![app.as_str(), branch, now_ms],
        )?;
        for &run in &superseded {
            close_open_steps(&tx, run, StepStatus::Cancelled, "superseded by a newer push", now_ms)?;
        }
        tx.execute(
            "INSERT INTO runs (app, branch, commit_sha, trigger, status, message, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, 'queued', 'queued', ?5)",
            params![app.as_str(), branch, commit, trigger, now_ms],
        )?;
        let id = tx.last_insert_rowid() as u64;
        tx.commit()?;
        Ok((id, superseded))
    }

    pub fn run(&self, id: u64) -> Result<Option<Run>> {
        Ok(self.conn.query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), [id], row_run).optional()?)
    }

    /// The newest run of one branch of an app, whatever its status.
    pub fn latest_run_of_branch(&self, app: &AppName, branch: &str) -> Result<Option<Run>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE app = ?1 AND branch = ?2 ORDER BY id DESC LIMIT 1"),
                params![app.as_str(), branch],
                row_run,
            )
            .optional()?)
    }

    /// The newest runs, of one app or of all.
    pub fn runs(&self, app: Option<&AppName>, limit: usize) -> Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR app = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![app.map(|a| a.as_str()), limit as i64], row_run)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The oldest queued run of an app that has no run in progress.
    pub fn next_queued_run(&self) -> Result<Option<Run>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs r WHERE status = 'queued'
                     AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.app = r.app AND o.status = 'running')
                     ORDER BY id LIMIT 1"
                ),
                [],
                row_run,
            )
            .optional()?)
    }

    /// Replaces the message of a run that is running, e.g. with the step it is in.
    pub fn set_running_run_message(&self, id: u64, message: &str) -> Result<()> {
        self.conn.execute("UPDATE runs SET message = ?1 WHERE id = ?2 AND status = 'running'", params![message, id])?;
        Ok(())
    }

    pub fn count_running_runs(&self) -> Result<usize> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM runs WHERE status = 'running'", [], |r| r.get(0))?)
    }

    /// Moves a run to `status`; only an unfinished run changes, so a cancel cannot be undone by
    /// a step finishing late. A run that ends closes its open steps (a cancelled run's as
    /// cancelled, a failed or rejected run's as failed) with `message`, in the same transaction.
    /// Returns whether it changed.
    pub fn set_run_status(&self, id: u64, status: RunStatus, message: &str, now_ms: u64) -> Result<bool> {
        let tx = self.conn.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE runs SET status = ?1, message = ?2,
                started_at_ms = CASE WHEN ?1 = 'running' THEN ?3 ELSE started_at_ms END,
                finished_at_ms = CASE WHEN ?1 IN ('queued', 'running') THEN NULL ELSE ?3 END
             WHERE id = ?4 AND status IN ('queued', 'running', 'waiting')",
            params![status.as_str(), message, now_ms, id],
        )?;
        if n > 0 {
            if let Some(closed) = StepStatus::closed_by(status) {
                close_open_steps(&tx, id, closed, message, now_ms)?;
            }
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Adds step `name` to run `id` with `status`: `Running` or `Waiting` for a step that begins
    /// now, a finished status for one that is over as it is recorded (a skipped step). Steps
    /// are only added to a running run, so a run that was cancelled or failed meanwhile gets no
    /// step that nothing would finish; `None` then. Returns the step's number.
    pub fn add_run_step(
        &self,
        id: u64,
        name: &str,
        status: StepStatus,
        message: &str,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        let finished_at_ms = status.is_finished().then_some(now_ms);
        Ok(self
            .conn
            .query_row(
                "INSERT INTO run_steps (run, seq, name, status, started_at_ms, finished_at_ms, message)
                 SELECT ?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_steps WHERE run = ?1), ?2, ?3, ?4, ?5, ?6
                 WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND status = 'running')
                 RETURNING seq",
                params![id, name, status.as_str(), now_ms, finished_at_ms, message],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Finishes step `seq` of run `id`. Only an open step changes, so a step closed by a cancel
    /// stays cancelled. Returns whether it changed.
    pub fn finish_run_step(&self, id: u64, seq: u64, status: StepStatus, message: &str, now_ms: u64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE run_steps SET status = ?1, message = ?2, finished_at_ms = ?3
             WHERE run = ?4 AND seq = ?5 AND finished_at_ms IS NULL",
            params![status.as_str(), message, now_ms, id, seq],
        )?;
        Ok(n > 0)
    }

    /// Finishes every open step of run `id`, e.g. the approval it waited for. Returns how many.
    pub fn finish_open_run_steps(&self, id: u64, status: StepStatus, message: &str, now_ms: u64) -> Result<usize> {
        close_open_steps(&self.conn, id, status, message, now_ms)
    }

    /// The steps of run `id`, in the order they started.
    pub fn run_steps(&self, id: u64) -> Result<Vec<RunStep>> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {STEP_COLUMNS} FROM run_steps WHERE run = ?1 ORDER BY seq"))?;
        let rows = stmt.query_map([id], row_step)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_run_stage(&self, id: u64, stage: Option<&str>) -> Result<()> {
        self.conn.execute("UPDATE runs SET stage = ?1 WHERE id = ?2", params![stage, id])?;
        Ok(())
    }

    pub fn set_run_tests(&self, id: u64, test_json: &str) -> Result<()> {
        self.conn.execute("UPDATE runs SET test_json = ?1 WHERE id = ?2", params![test_json, id])?;
        Ok(())
    }

    pub fn record_attestation(
        &self,
        digest: &Digest,
        source: &str,
        passed: bool,
        report_json: Option<&str>,
        now_ms: u64,
    ) -> Result<u64> {
        self.conn.execute(
            "INSERT INTO attestations (digest, source, passed, report_json, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![digest.as_str(), source, passed, report_json, now_ms],
        )?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    /// The newest passing test record of `digest`, if any.
    pub fn passing_attestation(&self, digest: &Digest) -> Result<Option<Attestation>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, digest, source, passed, report_json, created_at_ms FROM attestations
                 WHERE digest = ?1 AND passed = 1 ORDER BY id DESC LIMIT 1",
                [digest.as_str()],
                |r| {
                    Ok(Attestation {
                        id: r.get(0)?,
                        digest: Digest::parse(&r.get::<_, String>(1)?).map_err(|e| sql_err(1, e))?,
                        source: r.get(2)?,
                        passed: r.get(3)?,
                        report_json: r.get(4)?,
                        created_at_ms: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_run_digest(&self, id: u64, digest: &Digest) -> Result<()> {
        self.conn.execute("UPDATE runs SET digest = ?1 WHERE id = ?2", params![digest.as_str(), id])?;
        Ok(())
    }

    /// Runs left running by a control plane that died are failed, never left running forever,
    /// and so are the steps they were in. Approval steps of waiting runs keep waiting.
    pub fn fail_interrupted_runs(&self, now_ms: u64) -> Result<usize> {
        let tx = self.conn.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE runs SET status = 'failed', message = 'interrupted: the server stopped during the run', finished_at_ms = ?1
             WHERE status = 'running'",
            [now_ms],
        )?;
        tx.execute(
            "UPDATE run_steps SET status = 'failed', message = 'interrupted by a server stop', finished_at_ms = ?1
             WHERE status = 'running' AND finished_at_ms IS NULL",
            [now_ms],
        )?;
        tx.commit()?;
        Ok(n)
    }

    pub fn append_run_log(&self, id: u64, line: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO run_log (run, seq, line) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_log WHERE run = ?1), ?2)",
            params![id, line],
        )?;
        Ok(())
    }

    pub fn run_log(&self, id: u64, after: u64) -> Result<Vec<(u64, String)>> {
        let mut stmt = self.conn.prepare("SELECT seq, line FROM run_log WHERE run = ?1 AND seq > ?2 ORDER BY seq")?;
        let rows = stmt.query_map(params![id, after], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- build and test process groups -----

    pub fn record_step_group(&self, group: &StepGroup) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO step_groups (pgid, leader_start_time, boot_id, what, recorded_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![group.pgid, group.leader_start_time, group.boot_id, group.what, group.recorded_at_ms],
        )?;
        Ok(())
    }

    pub fn forget_step_group(&self, group: &StepGroup) -> Result<()> {
        self.conn.execute(
            "DELETE FROM step_groups WHERE pgid = ?1 AND leader_start_time = ?2 AND boot_id = ?3",
            params![group.pgid, group.leader_start_time, group.boot_id],
        )?;
        Ok(())
    }

    /// The recorded groups, oldest first.
    pub fn step_groups(&self) -> Result<Vec<StepGroup>> {
        let mut stmt = self.conn.prepare(
            "SELECT pgid, leader_start_time, boot_id, what, recorded_at_ms FROM step_groups ORDER BY recorded_at_ms, pgid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StepGroup {
                pgid: r.get(0)?,
                leader_start_time: r.get(1)?,
                boot_id: r.get(2)?,
                what: r.get(3)?,
                recorded_at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- the apps of pipeline stages -----

    /// Claims `app` for a stage of `owner.pipeline_app`'s pipeline (and, for previews, one
    /// branch), in one transaction. An app claimed by the same owner before is theirs again; one
    /// claimed by another owner, or existing without a claim (deployed by hand, or the app of
    /// another pipeline), is not taken.
    pub fn claim_stage_app(&mut self, app: &AppName, owner: &StageOwner) -> Result<Claim> {
        let tx = self.conn.transaction()?;
        let claimed: Option<(String, String, String)> = tx
            .query_row("SELECT pipeline_app, stage, branch FROM stage_apps WHERE app = ?1", [app.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let claim = match claimed {
            Some((pipeline_app, stage, branch)) => {
                let same =
                    pipeline_app == owner.pipeline_app.as_str() && stage == owner.stage && branch == owner.branch;
                if same {
                    Claim::Ours
                } else {
                    Claim::Taken(format!("it is the {stage} app of {pipeline_app}{}", branch_note(&branch)))
                }
            }
            None => {
                let live: bool = tx
                    .query_row("SELECT destroyed = 0 FROM apps WHERE name = ?1", [app.as_str()], |r| r.get(0))
                    .optional()?
                    .unwrap_or(false);
                if live {
                    Claim::Taken("an app of that name exists and belongs to no pipeline stage".to_owned())
                } else {
                    tx.execute(
                        "INSERT INTO stage_apps (app, pipeline_app, stage, branch) VALUES (?1, ?2, ?3, ?4)",
                        params![app.as_str(), owner.pipeline_app.as_str(), owner.stage, owner.branch],
                    )?;
                    Claim::Ours
                }
            }
        };
        tx.commit()?;
        Ok(claim)
    }

    /// The app claimed for `owner`, if any.
    pub fn stage_app(&self, owner: &StageOwner) -> Result<Option<AppName>> {
        let name: Option<String> = self
            .conn
            .query_row(
                "SELECT app FROM stage_apps WHERE pipeline_app = ?1 AND stage = ?2 AND branch = ?3",
                params![owner.pipeline_app.as_str(), owner.stage, owner.branch],
                |r| r.get(0),
            )
            .optional()?;
        name.map(|name| AppName::parse(&name).map_err(|e| StoreError::Sql(sql_err(0, e)))).transpose()
    }

    /// Whose stage `app` is, if a pipeline stage claimed it.
    pub fn stage_owner(&self, app: &AppName) -> Result<Option<StageOwner>> {
        let owner: Option<(String, String, String)> = self
            .conn
            .query_row("SELECT pipeline_app, stage, branch FROM stage_apps WHERE app = ?1", [app.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        owner
            .map(|(pipeline_app, stage, branch)| {
                Ok(StageOwner { pipeline_app: parse_app_name(0, &pipeline_app)?, stage, branch })
            })
            .transpose()
    }

    /// Lets go of a stage's app, when it is destroyed.
    pub fn release_stage_app(&self, app: &AppName) -> Result<()> {
        self.conn.execute("DELETE FROM stage_apps WHERE app = ?1", [app.as_str()])?;
        Ok(())
    }

    // ----- sources and webhook deliveries -----

    pub fn set_source(&self, source: &Source) -> Result<()> {
        self.conn.execute(
            "INSERT INTO sources (app, url, provider, secret, poll_interval_ms, heads_json, polled_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(app) DO UPDATE SET url = ?2, provider = ?3, secret = ?4, poll_interval_ms = ?5,
                heads_json = ?6, polled_at_ms = ?7",
            params![
                source.app.as_str(),
                source.url,
                source.provider,
                source.sealed_secret,
                source.poll_interval_ms,
                to_json(&source.heads),
                source.polled_at_ms
            ],
        )?;
        Ok(())
    }

    pub fn sources(&self) -> Result<Vec<Source>> {
        let mut stmt = self.conn.prepare(
            "SELECT app, url, provider, secret, poll_interval_ms, heads_json, polled_at_ms FROM sources ORDER BY app",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
                r.get::<_, Option<u64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<u64>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (app, url, provider, sealed_secret, poll_interval_ms, heads, polled_at_ms) = row?;
            out.push(Source {
                app: AppName::parse(&app).map_err(|e| sql_err(0, e))?,
                url,
                provider,
                sealed_secret,
                poll_interval_ms,
                heads: parse_json("source heads", &heads)?,
                polled_at_ms,
            });
        }
        Ok(out)
    }

    pub fn source(&self, app: &AppName) -> Result<Option<Source>> {
        Ok(self.sources()?.into_iter().find(|s| &s.app == app))
    }

    /// Records a webhook delivery; false if this provider's delivery id was seen before.
    pub fn record_delivery(&self, provider: &str, id: &str, app: &AppName, now_ms: u64) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO deliveries (provider, id, app, received_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![provider, id, app.as_str(), now_ms],
        )?;
        Ok(n > 0)
    }

    // ----- config vars and secrets -----

    /// Sets and unsets vars of an app in one transaction.
    pub fn update_vars(
        &mut self,
        app: &AppName,
        set: &[AppVar],
        unset: &[(String, String)],
        now_ms: u64,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for var in set {
            tx.execute(
                "INSERT INTO app_vars (app, stage, key, value, secret, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(app, stage, key) DO UPDATE SET value = ?4, secret = ?5, updated_at_ms = ?6",
                params![app.as_str(), var.stage, var.key, var.value, var.secret, now_ms],
            )?;
        }
        for (stage, key) in unset {
            tx.execute(
                "DELETE FROM app_vars WHERE app = ?1 AND stage = ?2 AND key = ?3",
                params![app.as_str(), stage, key],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The vars of `app` every stage shares, overlaid by those set for `stage` (same key: the
    /// stage's wins).
    pub fn scoped_vars(&self, app: &AppName, stage: &str) -> Result<Vec<AppVar>> {
        let mut by_key: BTreeMap<String, AppVar> = BTreeMap::new();
        for var in self.vars(app)? {
            if var.stage.is_empty() || var.stage == stage {
                let shared = var.stage.is_empty();
                if !(shared && by_key.contains_key(&var.key)) {
                    by_key.insert(var.key.clone(), var);
                }
            }
        }
        Ok(by_key.into_values().collect())
    }

    pub fn vars(&self, app: &AppName) -> Result<Vec<AppVar>> {
        let mut stmt =
            self.conn.prepare("SELECT stage, key, value, secret FROM app_vars WHERE app = ?1 ORDER BY stage, key")?;
        let rows = stmt.query_map([app.as_str()], |r| {
            Ok(AppVar { stage: r.get(0)?, key: r.get(1)?, value: r.get(2)?, secret: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ----- events and counters -----

    pub fn add_event(&self, app: Option<&AppName>, kind: &str, message: &str, now_ms: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO events (ts_ms, app, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms, app.map(|a| a.as_str()), kind, message],
        )?;
        Ok(())
    }

    pub fn events(&self, app: Option<&AppName>, limit: usize) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, ts_ms, app, kind, message FROM events WHERE (?1 IS NULL OR app = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![app.map(|a| a.as_str()), limit as i64], |r| {
            let app: Option<String> = r.get(2)?;
            Ok(Event {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                app: app.map(|a| AppName::parse(&a)).transpose().map_err(|e| sql_err(2, e))?,
                kind: r.get(3)?,
                message: r.get(4)?,
            })
        })?;
        let mut events: Vec<Event> = rows.collect::<rusqlite::Result<_>>()?;
        events.reverse();
        Ok(events)
    }

    /// Increments and returns a named counter (e.g. the routing table generation).
    pub fn next_counter(&self, key: &str) -> Result<u64> {
        Ok(self.conn.query_row(
            "INSERT INTO meta (key, value) VALUES (?1, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1 RETURNING value",
            [key],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> AppSpec {
        AppSpec::new(AppName::parse(name).unwrap(), [(ProcessType::web(), "python3 app.py".to_owned())].into())
    }

    #[test]
    fn a_stage_app_is_claimed_once_and_never_over_an_app_that_is_not_a_stage() {
        let mut store = Store::open_in_memory().unwrap();
        let name = |n: &str| AppName::parse(n).unwrap();
        let owner = |stage: &str, branch: &str| StageOwner {
            pipeline_app: name("shop"),
            stage: stage.to_owned(),
            branch: branch.to_owned(),
        };
        let login = owner("preview", "feature/login");
        assert_eq!(store.claim_stage_app(&name("feature-login-shop"), &login).unwrap(), Claim::Ours);
        assert_eq!(store.claim_stage_app(&name("feature-login-shop"), &login).unwrap(), Claim::Ours);
        assert_eq!(store.stage_app(&login).unwrap(), Some(name("feature-login-shop")));
        assert_eq!(
            store.claim_stage_app(&name("feature-login-shop"), &owner("preview", "feature-login")).unwrap(),
            Claim::Taken("it is the preview app of shop for branch \"feature/login\"".to_owned())
        );
        store.create_release(&spec("shop-staging"), &Digest::from_sha256(&[1; 32]), "by hand", 1, "localhost").unwrap();
        assert_eq!(
            store.claim_stage_app(&name("shop-staging"), &owner("staging", "")).unwrap(),
            Claim::Taken("an app of that name exists and belongs to no pipeline stage".to_owned())
        );
        store.release_stage_app(&name("feature-login-shop")).unwrap();
        assert_eq!(store.stage_app(&login).unwrap(), None);
    }

    #[test]
    fn releases_are_numbered_per_app_and_become_target() {
        let mut store = Store::open_in_memory().unwrap();
        let d = Digest::from_sha256(&[1; 32]);
        let r1 = store.create_release(&spec("hello"), &d, "first", 1, "localhost").unwrap();
        let r2 = store.create_release(&spec("hello"), &d, "second", 2, "localhost").unwrap();
        let other = store.create_release(&spec("other"), &d, "first", 3, "localhost").unwrap();
        assert_eq!((r1.id, r2.id, other.id), (ReleaseId(1), ReleaseId(2), ReleaseId(1)));
        let app = store.app(&AppName::parse("hello").unwrap()).unwrap();
        assert_eq!(app.target, Some(ReleaseId(2)));
        assert_eq!(app.stable, None);
        let releases = store.releases(&app.name).unwrap();
        assert_eq!(releases.iter().map(|r| r.id.0).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(store.release(&app.name, ReleaseId(1)).unwrap().spec, spec("hello"));
        assert!(matches!(store.release(&app.name, ReleaseId(9)), Err(StoreError::NoRelease { .. })));
    }

    #[test]
    fn newer_pushes_supersede_queued_runs_of_their_branch_only() {
        let mut store = Store::open_in_memory().unwrap();
        let app = AppName::parse("hello").unwrap();
        let (first, _) = store.queue_run(&app, "main", "aaa", "push", 1).unwrap();
        let (other, _) = store.queue_run(&app, "feature/x", "bbb", "push", 2).unwrap();
        assert!(store.set_run_status(first, RunStatus::Running, "building", 3).unwrap());
        let (second, superseded) = store.queue_run(&app, "main", "ccc", "push", 4).unwrap();
        assert!(superseded.is_empty(), "a running run is not superseded");
        let (third, superseded) = store.queue_run(&app, "main", "ddd", "push", 5).unwrap();
        assert_eq!(superseded, vec![second]);
        assert_eq!(store.run(second).unwrap().unwrap().status, RunStatus::Superseded);
        // One run per app at a time: nothing else of hello starts while `first` runs.
        assert_eq!(store.next_queued_run().unwrap(), None);
        assert!(store.set_run_status(first, RunStatus::Succeeded, "done", 6).unwrap());
        assert!(!store.set_run_status(first, RunStatus::Failed, "late", 7).unwrap(), "finished runs stay finished");
        assert_eq!(store.next_queued_run().unwrap().map(|r| r.id), Some(other));
        assert!(store.set_run_status(other, RunStatus::Running, "x", 8).unwrap());
        assert_eq!(store.fail_interrupted_runs(9).unwrap(), 1);
        assert_eq!(store.next_queued_run().unwrap().map(|r| r.id), Some(third));
        store.append_run_log(third, "a").unwrap();
        store.append_run_log(third, "b").unwrap();
        assert_eq!(store.run_log(third, 1).unwrap(), vec![(2, "b".to_owned())]);
    }

    #[test]
    fn steps_are_recorded_in_order_and_never_left_open_by_a_finished_run() {
        let mut store = Store::open_in_memory().unwrap();
        let app = AppName::parse("hello").unwrap();
        let render = |store: &Store, run: u64| -> Vec<String> {
            let steps = store.run_steps(run).unwrap();
            steps
                .iter()
                .map(|s| {
                    let end = s.finished_at_ms.map_or("-".to_owned(), |t| t.to_string());
                    format!("{} {} {} {}..{end} {}", s.seq, s.name, s.status.as_str(), s.started_at_ms, s.message)
                })
                .collect()
        };

        // A queued run gets no steps: nothing would finish them.
        let (green, _) = store.queue_run(&app, "main", "aaa", "push", 1).unwrap();
        assert_eq!(store.add_run_step(green, "checkout", StepStatus::Running, "", 2).unwrap(), None);
        store.set_run_status(green, RunStatus::Running, "checking out", 2).unwrap();
        let checkout = store.add_run_step(green, "checkout", StepStatus::Running, "", 3).unwrap().unwrap();
        assert!(store.finish_run_step(green, checkout, StepStatus::Succeeded, "", 4).unwrap());
        assert!(!store.finish_run_step(green, checkout, StepStatus::Failed, "late", 5).unwrap(), "finished once");
        store.add_run_step(green, "test", StepStatus::Skipped, "no tests declared", 5).unwrap();
        store.add_run_step(green, "approval:production", StepStatus::Waiting, "", 6).unwrap();
        store.set_run_status(green, RunStatus::Waiting, "waiting", 6).unwrap();
        assert_eq!(
            render(&store, green),
            [
                "1 checkout succeeded 3..4 ",
                "2 test skipped 5..5 no tests declared",
                "3 approval:production waiting 6..- ",
            ]
        );
        // Approved: the approval succeeds and the run goes on where it waited.
        assert_eq!(store.finish_open_run_steps(green, StepStatus::Succeeded, "approved", 7).unwrap(), 1);
        store.set_run_status(green, RunStatus::Queued, "approved", 7).unwrap();
        store.set_run_status(green, RunStatus::Running, "resumed", 8).unwrap();
        let deploy = store.add_run_step(green, "deploy:production", StepStatus::Running, "", 9).unwrap().unwrap();
        assert_eq!(deploy, 4);
        store.finish_run_step(green, deploy, StepStatus::Succeeded, "v1 of hello is live", 10).unwrap();
        store.set_run_status(green, RunStatus::Succeeded, "live", 10).unwrap();
        assert_eq!(render(&store, green)[2], "3 approval:production succeeded 6..7 approved");

        // A cancelled run's step is cancelled, and a late finish does not undo it.
        let (cancelled, _) = store.queue_run(&app, "main", "bbb", "push", 11).unwrap();
        store.set_run_status(cancelled, RunStatus::Running, "x", 12).unwrap();
        let test = store.add_run_step(cancelled, "test", StepStatus::Running, "", 12).unwrap().unwrap();
        store.set_run_status(cancelled, RunStatus::Cancelled, "cancelled", 13).unwrap();
        assert!(!store.finish_run_step(cancelled, test, StepStatus::Failed, "tests failed", 14).unwrap());
        assert_eq!(render(&store, cancelled), ["1 test cancelled 12..13 cancelled"]);
        assert_eq!(store.add_run_step(cancelled, "deploy", StepStatus::Running, "", 14).unwrap(), None);

        // A newer push supersedes a waiting run and cancels the approval it waited for.
        let (waiting, _) = store.queue_run(&app, "main", "ccc", "push", 15).unwrap();
        store.set_run_status(waiting, RunStatus::Running, "x", 15).unwrap();
        store.add_run_step(waiting, "approval:production", StepStatus::Waiting, "", 16).unwrap();
        store.set_run_status(waiting, RunStatus::Waiting, "waiting", 16).unwrap();
        // A server stop interrupts running steps, not waiting ones.
        let (interrupted, _) = store.queue_run(&app, "feature", "ddd", "push", 17).unwrap();
        store.set_run_status(interrupted, RunStatus::Running, "x", 17).unwrap();
        store.add_run_step(interrupted, "build", StepStatus::Running, "", 18).unwrap();
        assert_eq!(store.fail_interrupted_runs(19).unwrap(), 1);
        assert_eq!(render(&store, interrupted), ["1 build failed 18..19 interrupted by a server stop"]);
        assert_eq!(render(&store, waiting), ["1 approval:production waiting 16..- "]);
        store.queue_run(&app, "main", "eee", "push", 20).unwrap();
        assert_eq!(render(&store, waiting), ["1 approval:production cancelled 16..20 superseded by a newer push"]);
    }

    #[test]
    fn step_groups_are_kept_until_forgotten() {
        let store = Store::open_in_memory().unwrap();
        let group = |pgid: u32, what: &str, at: u64| StepGroup {
            pgid,
            leader_start_time: 1000 + u64::from(pgid),
            boot_id: "boot".to_owned(),
            what: what.to_owned(),
            recorded_at_ms: at,
        };
        store.record_step_group(&group(7, "build of a", 2)).unwrap();
        store.record_step_group(&group(5, "tests of b", 1)).unwrap();
        // Recorded twice (it cannot be, but a retry must not fail): one row.
        store.record_step_group(&group(7, "build of a", 2)).unwrap();
        assert_eq!(store.step_groups().unwrap(), [group(5, "tests of b", 1), group(7, "build of a", 2)]);
        store.forget_step_group(&group(5, "tests of b", 1)).unwrap();
        // Another boot's group of the same id is another group.
        store.forget_step_group(&StepGroup { boot_id: "other".to_owned(), ..group(7, "build of a", 2) }).unwrap();
        assert_eq!(store.step_groups().unwrap(), [group(7, "build of a", 2)]);
    }

    #[test]
    fn a_stage_var_overrides_the_shared_one_only_in_its_stage() {
        let mut store = Store::open_in_memory().unwrap();
        let app = AppName::parse("shop").unwrap();
        let var = |stage: &str, key: &str, value: &str| AppVar {
            stage: stage.to_owned(),
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            secret: false,
        };
        let set =
            [var("", "A", "shared"), var("", "B", "shared"), var("staging", "A", "staged"), var("prod", "C", "p")];
        store.update_vars(&app, &set, &[], 1).unwrap();
        let render = |stage: &str| -> Vec<String> {
            let vars = store.scoped_vars(&app, stage).unwrap();
            vars.iter().map(|v| format!("{}={}", v.key, String::from_utf8_lossy(&v.value))).collect()
        };
        assert_eq!(render(""), ["A=shared", "B=shared"]);
        assert_eq!(render("staging"), ["A=staged", "B=shared"]);
        assert_eq!(render("prod"), ["A=shared", "B=shared", "C=p"]);
    }

    #[test]
    fn a_destroyed_app_is_purged_only_once_its_instances_are_gone() {
        let mut store = Store::open_in_memory().unwrap();
        let app = AppName::parse("hello").unwrap();
        store.create_release(&spec("hello"), &Digest::from_sha256(&[1; 32]), "first", 1, "localhost").unwrap();
        let id = InstanceId::new(&app, &ProcessType::web(), ReleaseId(1), "a");
        let row = InstanceRow {
            id: id.clone(),
            app: app.clone(),
            release: ReleaseId(1),
            process: ProcessType::web(),
            port: None,
            routed: true,
            draining_since_ms: None,
            created_at_ms: 1,
        };
        store.insert_instance(&row).unwrap();
        assert!(!store.purge_app(&app).unwrap(), "not destroyed");
        store.destroy_app(&app).unwrap();
        assert_eq!(store.app(&app).unwrap().target, None);
        assert!(!store.purge_app(&app).unwrap(), "an instance is left");
        store.delete_instance(&id).unwrap();
        assert!(store.purge_app(&app).unwrap());
        assert!(matches!(store.app(&app), Err(StoreError::NoApp(_))));
        assert!(store.releases(&app).unwrap().is_empty());
    }

    #[test]
    fn instances_drain_and_deploy_logs_are_ordered() {
        let store = Store::open_in_memory().unwrap();
        let app = AppName::parse("hello").unwrap();
        let id = InstanceId::new(&app, &ProcessType::web(), ReleaseId(1), "abcd");
        let row = InstanceRow {
            id: id.clone(),
            app: app.clone(),
            release: ReleaseId(1),
            process: ProcessType::web(),
            port: Some(4000),
            routed: true,
            draining_since_ms: None,
            created_at_ms: 5,
        };
        store.insert_instance(&row).unwrap();
        store.start_draining(&id, 10).unwrap();
        store.start_draining(&id, 20).unwrap();
        let got = store.instances().unwrap();
        assert_eq!(got[0].draining_since_ms, Some(10));
        assert!(!got[0].routed);

        let deploy = store.create_deploy(None, "upload", 1).unwrap();
        store.append_deploy_log(deploy, "one").unwrap();
        store.append_deploy_log(deploy, "two").unwrap();
        assert_eq!(store.deploy_log(deploy, 1).unwrap(), vec![(2, "two".to_owned())]);
        assert_eq!(store.next_counter("gen").unwrap(), 1);
        assert_eq!(store.next_counter("gen").unwrap(), 2);
        assert_eq!(store.fail_interrupted_builds(3).unwrap(), 1);
        assert_eq!(store.deploy(deploy).unwrap().unwrap().status, DeployStatus::Failed);
    }
}
