//! The process backend's files in an instance directory, and how they are written.
//!
//! ```text
//! ROOT/<instance>/spec.json   what to run; written by the control plane before the shim starts
//! ROOT/<instance>/shim.json   the shim's identity and state; written by the shim, and by the
//!                             control plane only once the shim is gone
//! ROOT/<instance>/home/       the app's $HOME
//! ROOT/<instance>/tmp/        the app's $TMPDIR
//! ```
//!
//! These are on-disk formats of their own, converted from and to the API types at the edge, so
//! the public types can change without breaking instances started by an older `drover`. Every
//! write goes to a temporary file that is synced and renamed over the old one, so a reader (or a
//! crash) never sees half a file.

use crate::isolation::IsolationRequest;
use crate::{Artifact, InstanceSpec, Isolation, RuntimeError};
use model::{AppName, InstanceId, ProcessType, ReleaseId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const SPEC_FILE: &str = "spec.json";
pub(crate) const SHIM_FILE: &str = "shim.json";
pub(crate) const HOME_DIR: &str = "home";
pub(crate) const TMP_DIR: &str = "tmp";

/// `spec.json`: the instance spec plus what the shim needs to know about this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpecFile {
    pub id: InstanceId,
    pub app: AppName,
    pub release: ReleaseId,
    pub process: ProcessType,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub port: Option<u16>,
    pub slug_dir: PathBuf,
    pub stop_grace_ms: u64,
    /// Where the shim writes the app's log records.
    pub logs_root: PathBuf,
    /// Whether the shim should try to isolate the app.
    #[serde(default)]
    pub isolation: IsolationRequest,
    /// Secret variables, still sealed: the shim opens them with `key_file`.
    #[serde(default)]
    pub sealed_env: Vec<crate::SealedVar>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The user the app runs as; `None` (and in specs written before users) the shim's own.
    #[serde(default)]
    pub user: Option<model::AppUser>,
}

impl SpecFile {
    pub(crate) fn new(
        spec: &InstanceSpec,
        slug_dir: &Path,
        logs_root: &Path,
        isolation: IsolationRequest,
        key_file: Option<&Path>,
    ) -> Self {
        Self {
            id: spec.id.clone(),
            app: spec.app.clone(),
            release: spec.release,
            process: spec.process.clone(),
            command: spec.command.clone(),
            env: spec.env.clone(),
            port: spec.port,
            slug_dir: slug_dir.to_owned(),
            stop_grace_ms: u64::try_from(spec.stop_grace.as_millis()).unwrap_or(u64::MAX),
            logs_root: logs_root.to_owned(),
            isolation,
            sealed_env: spec.sealed_env.clone(),
            key_file: key_file.map(Path::to_owned),
            user: spec.user,
        }
    }

    pub(crate) fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }

    pub(crate) fn to_spec(&self) -> InstanceSpec {
        InstanceSpec {
            id: self.id.clone(),
            app: self.app.clone(),
            release: self.release,
            process: self.process.clone(),
            command: self.command.clone(),
            env: self.env.clone(),
            port: self.port,
            artifact: Artifact::Slug(self.slug_dir.clone()),
            stop_grace: self.stop_grace(),
            sealed_env: self.sealed_env.clone(),
            user: self.user,
        }
    }
}

/// The shim's view of its instance, as last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ShimState {
    /// The shim is up and has not started the app yet.
    Starting,
    Running,
    /// The app exited; the shim waits out a backoff delay.
    Restarting,
    /// SIGTERM received; the app is within its grace period.
    Stopping,
    /// Final: stopped on request.
    Stopped,
    /// Final: the app could not be started at all; see `error`.
    Failed,
}

/// `shim.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShimFile {
    pub shim_pid: u32,
    /// Field 22 of `/proc/<shim_pid>/stat`: with the pid, identifies the shim across pid reuse.
    pub shim_start_time: u64,
    pub state: ShimState,
    /// When the shim started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// The app's main process, which leads the app's process group. Kept after the app exits
    /// so that stragglers in its group can still be found.
    pub child_pid: Option<u32>,
    pub child_start_time: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub isolation: IsolationMode,
    /// Whether `/tmp` is a private tmpfs (only with `mount-namespace`).
    pub private_tmp: bool,
    /// Whether `/proc` shows the app only its own user's processes (only with
    /// `mount-namespace` and a user of its own).
    #[serde(default)]
    pub private_proc: bool,
    /// Why the shim failed, for [`ShimState::Failed`].
    pub error: Option<String>,
}

/// The `isolation` field of `shim.json`: "mount-namespace" or "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum IsolationMode {
    MountNamespace,
    None,
}

impl ShimFile {
    pub(crate) fn isolation(&self) -> Isolation {
        match self.isolation {
            IsolationMode::MountNamespace => Isolation::MountNamespace { private_tmp: self.private_tmp },
            IsolationMode::None => Isolation::None,
        }
    }
}

/// Reads a JSON file; `Ok(None)` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RuntimeError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RuntimeError::Io { action: "read", path: path.to_owned(), source }),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| RuntimeError::Corrupt { path: path.to_owned(), source })
}

/// The instances that have a directory under `root` (named by instance id; other entries are
/// ignored). None if `root` does not exist yet.
pub(crate) fn instance_ids(root: &Path) -> Result<Vec<InstanceId>, RuntimeError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RuntimeError::Io { action: "list", path: root.to_owned(), source }),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(RuntimeError::io("list", root))?;
        ids.extend(entry.file_name().to_str().and_then(|name| InstanceId::parse(name).ok()));
    }
    Ok(ids)
}

/// Replaces `path` with `value` as JSON, atomically and durably.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), RuntimeError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let bytes = serde_json::to_vec_pretty(value).expect("runtime files serialize: plain strings, numbers and maps");
    let mut file = File::create(&tmp).map_err(RuntimeError::io("create", &tmp))?;
    file.write_all(&bytes).map_err(RuntimeError::io("write", &tmp))?;
    file.sync_all().map_err(RuntimeError::io("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(RuntimeError::io("rename into place", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_file_round_trips_the_spec() {
        let spec = InstanceSpec {
            id: InstanceId::parse("hello-web-v3-a1").unwrap(),
            app: AppName::parse("hello").unwrap(),
            release: ReleaseId(3),
            process: ProcessType::web(),
            command: "exec ./server".to_owned(),
            env: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            port: Some(8080),
            artifact: Artifact::Slug(PathBuf::from("/srv/slugs/abc")),
            stop_grace: Duration::from_millis(2500),
            sealed_env: Vec::new(),
            user: None,
        };
        let slug_dir = Path::new("/srv/slugs/abc");
        let file = SpecFile::new(&spec, slug_dir, Path::new("/var/lib/drover/logs"), IsolationRequest::Off, None);
        let json = serde_json::to_string(&file).unwrap();
        let back: SpecFile = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_spec(), spec);
        assert_eq!(back.logs_root, Path::new("/var/lib/drover/logs"));
        assert_eq!(back.isolation, IsolationRequest::Off);
    }

    #[test]
    fn shim_file_uses_documented_names() {
        let file = ShimFile {
            shim_pid: 10,
            shim_start_time: 20,
            state: ShimState::Restarting,
            started_at_ms: 30,
            child_pid: Some(11),
            child_start_time: Some(21),
            restarts: 2,
            last_exit: Some("exited with code 1".to_owned()),
            isolation: IsolationMode::MountNamespace,
            private_tmp: true,
            private_proc: true,
            error: None,
        };
        let json: serde_json::Value = serde_json::to_value(&file).unwrap();
        assert_eq!(json["isolation"], "mount-namespace");
        assert_eq!(json["state"], "restarting");
        assert_eq!(json["shim_start_time"], 20);
        assert_eq!(serde_json::from_value::<ShimFile>(json).unwrap(), file);
    }

    #[test]
    fn write_json_replaces_and_read_json_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        assert_eq!(read_json::<u32>(&path).unwrap(), None);
        write_json(&path, &1u32).unwrap();
        write_json(&path, &2u32).unwrap();
        assert_eq!(read_json::<u32>(&path).unwrap(), Some(2));
        assert!(!dir.path().join("x.json.tmp").exists());
        fs::write(&path, b"{").unwrap();
        assert!(matches!(read_json::<u32>(&path), Err(RuntimeError::Corrupt { .. })));
    }
}
