//! The layout of Drover's data directory, shared by the server and the CLI.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where everything lives; by default `~/.local/share/drover`.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `$DROVER_DATA_DIR`, else `$XDG_DATA_HOME/drover`, else `~/.local/share/drover`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("DROVER_DATA_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(dir).join("drover");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".local/share/drover")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("state.db")
    }
    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }
    /// The Docker runtime's instance files.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// Bare git repositories, one per app, for `git push`.
    pub fn repos(&self) -> PathBuf {
        self.root.join("repos")
    }
    /// The key that seals secrets at rest (0600).
    pub fn secret_key(&self) -> PathBuf {
        self.root.join("secret.key")
    }
    pub fn token(&self) -> PathBuf {
        self.root.join("token")
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }
    pub fn server_info(&self) -> PathBuf {
        self.root.join("server.json")
    }
    pub fn server_log(&self) -> PathBuf {
        self.root.join("server.log")
    }
    pub fn proxy_info(&self) -> PathBuf {
        self.root.join("proxy.json")
    }
    pub fn proxy_log(&self) -> PathBuf {
        self.root.join("proxy.log")
    }
    pub fn proxy_socket(&self) -> PathBuf {
        self.root.join("proxy.sock")
    }
    pub fn proxy_state(&self) -> PathBuf {
        self.root.join("proxy-routes.json")
    }

    pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes `value` as JSON to `path` atomically (temp file, fsync, rename) with mode `mode`.
    pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(value).expect("settings always serialize"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Choices made at first start and kept for later starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub api_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Apps answer at `APP.DOMAIN`.
    pub domain: String,
    /// Largest accepted source upload, in bytes.
    pub upload_limit: u64,
    /// Largest accepted `git push`, in bytes.
    #[serde(default = "default_push_limit")]
    pub push_limit: u64,
    /// Where new slug instances run.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// The image slugs run in under the Docker runtime.
    #[serde(default)]
    pub stack_image: Option<String>,
}

/// The backend new slug instances run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Supervised processes (`drover shim`), the embedded default.
    #[default]
    Process,
    /// Containers of the local Docker engine, the slug mounted in the stack image.
    Docker,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Docker => "docker",
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "process" => Ok(Self::Process),
            "docker" => Ok(Self::Docker),
            other => Err(format!("{other:?}: expected `process` or `docker`")),
        }
    }
}

fn default_push_limit() -> u64 {
    100 * 1024 * 1024
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            domain: "localhost".to_owned(),
            upload_limit: 200 * 1024 * 1024,
            push_limit: default_push_limit(),
            runtime: RuntimeKind::Process,
            stack_image: None,
        }
    }
}

/// What a running server publishes about itself, for the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub pid: u32,
    /// The process start time (clock ticks since boot), so a reused pid is not mistaken for it.
    pub start_time: u64,
    pub api_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub domain: String,
}

/// What the server records about the proxy process it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyInfo {
    pub pid: u32,
    pub start_time: u64,
    pub listen: SocketAddr,
}
