//! The JSON shapes of the HTTP API, shared by the server and the CLI.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppView {
    pub name: String,
    pub url: String,
    /// The release that should run.
    pub target: Option<u64>,
    /// The last release that became fully healthy.
    pub stable: Option<u64>,
    pub scale: BTreeMap<String, u32>,
    pub instances: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseView {
    pub id: u64,
    pub digest: String,
    pub description: String,
    pub created_at_ms: u64,
    pub target: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    pub release: u64,
    pub process: String,
    pub port: Option<u16>,
    pub routed: bool,
    pub draining: bool,
    /// `running`, `restarting`, `exited` or `starting` (no runtime status yet).
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// The proxy's view; `None` for non-web processes.
    pub healthy: Option<bool>,
    pub inflight: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployView {
    pub id: u64,
    pub app: Option<String>,
    pub release: Option<u64>,
    pub previous: Option<u64>,
    /// `building`, `deploying`, `succeeded`, `failed` or `rolled-back`.
    pub status: String,
    pub message: String,
    pub url: Option<String>,
    pub log: Vec<LogLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub line: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub release: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub scale: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownRequest {
    /// Also stop every instance and the proxy.
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    pub ts_ms: u64,
    pub app: Option<String>,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStatus {
    pub pid: u32,
    pub api_addr: String,
    pub http_addr: String,
    pub apps: usize,
    pub instances: usize,
    /// Resident memory of the server process, in KiB.
    pub rss_kib: u64,
}

/// One ref update of a push, as git's post-receive hook reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub refname: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushRequest {
    pub updates: Vec<RefUpdate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResponse {
    /// Runs queued by the push.
    pub runs: Vec<u64>,
    /// Lines to show in the pusher's terminal.
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub id: u64,
    pub app: String,
    pub branch: String,
    pub commit: String,
    pub trigger: String,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed`, `cancelled`, `rejected` or
    /// `superseded`.
    pub status: String,
    pub message: String,
    pub digest: Option<String>,
    pub created_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// The stage a waiting run waits to deploy to.
    pub stage: Option<String>,
    /// The JUnit results of the run's test step, passed or not.
    pub tests: Option<serde_json::Value>,
    /// The steps so far, in the order they started.
    #[serde(default)]
    pub steps: Vec<StepView>,
    pub log: Vec<LogLine>,
}

/// One step of a run: `checkout`, `build`, `test`, `deploy`, `deploy:STAGE` or `approval:STAGE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepView {
    pub name: String,
    /// `running`, `waiting`, `succeeded`, `failed`, `cancelled` or `skipped`.
    pub status: String,
    /// A digest, a test summary, an error.
    pub message: String,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// Until now for a step that still runs or waits.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRequest {
    /// The clone URL Drover fetches from.
    pub url: String,
    /// `github`, `gitlab`, `gitea` or `bitbucket`: enables the webhook.
    pub provider: Option<String>,
    /// Poll the remote this often.
    pub poll_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceView {
    pub app: String,
    pub url: String,
    pub provider: Option<String>,
    /// Where the provider should send push events.
    pub webhook_url: Option<String>,
    /// The secret to configure at the provider (HMAC key, or GitLab's token).
    pub webhook_secret: Option<String>,
    pub poll_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigView {
    pub vars: BTreeMap<String, String>,
    /// Names only: secret values never leave the server.
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigRequest {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
    /// A pipeline stage the change is for; `None` for every stage.
    #[serde(default)]
    pub stage: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct SecretRequest {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub stage: Option<String>,
}

impl std::fmt::Debug for SecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRequest").field("key", &self.key).field("value", &"***").finish()
    }
}
