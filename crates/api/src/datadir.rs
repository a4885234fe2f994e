//! The layout of Drover's data directory, shared by the server and the CLI.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Root's data directory, unless told otherwise.
pub const ROOT_DATA_DIR: &str = "/var/lib/drover";

/// Where everything lives; by default `~/.local/share/drover` ([`ROOT_DATA_DIR`] for root).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// `$DROVER_DATA_DIR`, else `$XDG_DATA_HOME/drover`, else [`ROOT_DATA_DIR`] for root and
    /// `~/.local/share/drover` for anyone else. Root's apps run as users of their own, who
    /// must be able to pass through every directory above the data directory, and root's home
    /// is closed to them.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("DROVER_DATA_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(dir).join("drover");
        }
        if sandbox::can_switch_users() {
            return PathBuf::from(ROOT_DATA_DIR);
        }
        Self::home_default()
    }

    fn home_default() -> PathBuf {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".local/share/drover")
    }

    /// For a server that runs apps as their own users: refuses, with what to do, a data
    /// directory they cannot reach (a directory above it others may not enter), and root's
    /// default data directory while an earlier version's is still in root's home.
    pub fn check_reachable_by_apps(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.root == Path::new(ROOT_DATA_DIR) && !self.db().exists() {
            let earlier = Self::home_default();
            if earlier.join("state.db").exists() {
                anyhow::bail!(
                    "found the data directory of an earlier drover in {}; as root, drover now keeps its data in {ROOT_DATA_DIR}, where the apps' own users can reach their files: move it there (`mv {} {ROOT_DATA_DIR}`) or name it with --data-dir (it must then be somewhere they can reach)",
                    earlier.display(),
                    earlier.display()
                );
            }
        }
        let absolute = std::path::absolute(&self.root)?;
        for dir in absolute.ancestors().skip(1) {
            let mode = match std::fs::metadata(dir) {
                Ok(metadata) => metadata.permissions().mode(),
                // Made later, by this process, with a mode others may pass.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if mode & 0o001 == 0 {
                anyhow::bail!(
                    "the data directory {} is inside {} (mode {:o}), which others may not enter, so the apps' own users could not reach their files: use a data directory elsewhere (--data-dir or DROVER_DATA_DIR, e.g. {ROOT_DATA_DIR}) or let others pass through it (`chmod o+x {}`)",
                    self.root.display(),
                    dir.display(),
                    mode & 0o777,
                    dir.display()
                );
            }
        }
        Ok(())
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

/// The fewest characters an API token may have. A generated token has 64.
pub const MIN_TOKEN_LEN: usize = 32;

/// Reads a token file's content: surrounding white space is ignored; an empty or short token, or
/// one with white space or control characters inside, is refused naming the file, since an empty
/// token would let every request in.
pub fn check_token(path: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    let name = path.display();
    let Ok(text) = std::str::from_utf8(bytes) else {
        anyhow::bail!("the API token file {name} is not text: remove it and start the server again for a new token");
    };
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!(
            "the API token file {name} is empty: remove it and start the server again for a new token \
             (then `drover git-remote` sets up your git remotes again)"
        );
    }
    if token.len() < MIN_TOKEN_LEN {
        anyhow::bail!(
            "the API token in {name} has {} characters, fewer than the {MIN_TOKEN_LEN} required: remove the file \
             and start the server again for a new token",
            token.chars().count()
        );
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("the API token in {name} holds white space or control characters");
    }
    Ok(token.to_owned())
}

/// Creates `path` holding `content`, readable by this user only, atomically: a temporary file in
/// the same directory is written and synced, then linked to `path`, so a crash leaves either no
/// file or the whole one, never an empty file. Fails with `AlreadyExists` when `path` exists.
pub fn create_secret_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix: u64 = rand::random();
    let tmp = dir.join(format!(".{file_name}.{}.{suffix:016x}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()
    })();
    // `hard_link`, unlike `rename`, fails when `path` exists: a file made meanwhile wins.
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    std::fs::File::open(dir)?.sync_all()
}

/// Files of the data directory that stay as they are when it is tightened. `secret.key` is
/// checked by the keyring, which refuses a key others could read rather than quietly keeping it.
const KEEP_MODE: &[&str] = &["secret.key"];

/// Directories whose contents keep their modes: the artifact store sets its own (unpacked slugs
/// are read by apps' users and mounted into containers whose user may not be this one).
const KEEP_TREE: &[&str] = &["artifacts"];

/// Directories that apps' own users pass through (mode 0711: no listing) to what they were
/// given: their slug (`artifacts/unpacked/DIGEST`), their build and test directories (under
/// `artifacts/tmp` and `tmp`) and their instances' `HOME` and `TMPDIR` (`instances/ID/…`).
const TRAVERSED: &[&str] = &["", "artifacts", "tmp", "instances"];

impl DataDir {
    /// Makes the data directory private: every file and directory below it without group or
    /// other permissions (except what [`KEEP_MODE`] and [`KEEP_TREE`] name), but for the
    /// directories apps' users pass through, which others may enter and not list
    /// ([`TRAVERSED`], and each instance's directory). Run on every start, so a directory made
    /// by an older version, copied or loosened by hand is tightened before any state is read.
    pub fn tighten(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root)?;
        self.tighten_entries()?;
        let traverse_only = |path: &Path| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711));
        for dir in TRAVERSED {
            let path = self.root.join(dir);
            match std::fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.is_dir() => traverse_only(&path)?,
                _ => {}
            }
        }
        if let Ok(instances) = std::fs::read_dir(self.instances()) {
            for entry in instances {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    traverse_only(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    fn tighten_entries(&self) -> std::io::Result<()> {
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if KEEP_MODE.contains(&name.as_ref()) {
                continue;
            }
            let path = entry.path();
            if KEEP_TREE.contains(&name.as_ref()) {
                strip_group_and_other(&path)?;
                continue;
            }
            tighten_tree(&path)?;
        }
        Ok(())
    }
}

/// Removes group and other permissions from `path` and, for a directory, everything below it.
/// Symbolic links are not followed.
fn tighten_tree(path: &Path) -> std::io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Something removed meanwhile (a finished run's scratch) needs no tightening.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    strip_group_and_other(path)?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten_tree(&entry?.path())?;
        }
    }
    Ok(())
}

fn strip_group_and_other(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::symlink_metadata(path)?;
    let mode = metadata.permissions().mode();
    if metadata.file_type().is_symlink() || mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn issue_9_f3_empty_short_or_odd_tokens_are_refused_by_name() {
        let path = Path::new("/data/token");
        for (content, says) in [
            (&b""[..], "is empty"),
            (b"  \n", "is empty"),
            (b"abc", "fewer than the 32"),
            (b"0123456789abcdef0123456789abcde", "fewer than the 32"),
            (b"0123456789abcdef 0123456789abcdef", "white space"),
            (b"\xff\xfe0123456789abcdef0123456789abcdef", "not text"),
        ] {
            let error = check_token(path, content).unwrap_err().to_string();
            assert!(error.contains("/data/token") && error.contains(says), "{content:?}: {error}");
        }
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(check_token(path, format!("{token}\n").as_bytes()).unwrap(), token);
    }

    #[test]
    fn issue_9_f3_secret_files_are_created_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        create_secret_file(&path, b"first").unwrap();
        let error = create_secret_file(&path, b"second").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["token"]);
    }

    #[test]
    fn issue_9_f5_tighten_makes_everything_private_but_what_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let root = data.root();
        std::fs::create_dir_all(root.join("repos/app.git/objects")).unwrap();
        std::fs::create_dir_all(root.join("artifacts/unpacked/abc")).unwrap();
        std::fs::write(root.join("state.db"), "x").unwrap();
        std::fs::write(root.join("repos/app.git/config"), "x").unwrap();
        std::fs::write(root.join("secret.key"), "x").unwrap();
        std::fs::write(root.join("artifacts/unpacked/abc/app.py"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let mode = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
        let set = |p: &str, m: u32| std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap();
        for (p, m) in [
            ("", 0o755),
            ("state.db", 0o644),
            ("repos", 0o755),
            ("repos/app.git/objects", 0o777),
            ("repos/app.git/config", 0o666),
            ("secret.key", 0o644),
            ("artifacts", 0o755),
            ("artifacts/unpacked/abc/app.py", 0o444),
        ] {
            set(p, m);
        }
        std::fs::create_dir_all(root.join("instances/app-web-v1-x/home")).unwrap();
        set("instances/app-web-v1-x/home", 0o755);
        std::fs::write(root.join("instances/app-web-v1-x/spec.json"), "x").unwrap();
        set("instances/app-web-v1-x/spec.json", 0o644);
        data.tighten().unwrap();
        // Apps' users pass through, and cannot list.
        assert_eq!(mode(""), 0o711);
        assert_eq!(mode("instances"), 0o711);
        assert_eq!(mode("instances/app-web-v1-x"), 0o711);
        assert_eq!(mode("instances/app-web-v1-x/home"), 0o700);
        assert_eq!(mode("instances/app-web-v1-x/spec.json"), 0o600);
        assert_eq!(mode("state.db"), 0o600);
        assert_eq!(mode("repos"), 0o700);
        assert_eq!(mode("repos/app.git/objects"), 0o700);
        assert_eq!(mode("repos/app.git/config"), 0o600);
        assert_eq!(mode("artifacts"), 0o711);
        // Kept: the keyring refuses a loose key itself; unpacked slugs are read inside containers.
        assert_eq!(mode("secret.key"), 0o644);
        assert_eq!(mode("artifacts/unpacked/abc/app.py"), 0o444);
        // A link is not followed.
        assert_eq!(std::fs::metadata("/etc/passwd").unwrap().permissions().mode() & 0o777, 0o644);
    }
}
