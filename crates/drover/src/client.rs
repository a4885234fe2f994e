//! The CLI's view of a running server: finding it, starting it, and calling its API.

use anyhow::{bail, Context};
use api::datadir::{DataDir, ServerInfo};
use api::wire::ErrorBody;
use runtime::procfs as procinfo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The running server's published info, if its process is alive.
pub fn running_server(data: &DataDir) -> Option<ServerInfo> {
    let info: ServerInfo = DataDir::read_json(&data.server_info())?;
    procinfo::is_alive(info.pid, info.start_time).then_some(info)
}

impl Client {
    /// Connects to the running server, or explains how to start one.
    pub fn connect(data: &DataDir) -> anyhow::Result<Self> {
        let Some(info) = running_server(data) else {
            bail!(
                "no Drover server runs for {} (start one with `drover server start` or `drover up`)",
                data.root().display()
            );
        };
        let bytes =
            std::fs::read(data.token()).with_context(|| format!("reading the API token {}", data.token().display()))?;
        let token = api::datadir::check_token(&data.token(), &bytes)?;
        Ok(Self {
            http: reqwest::Client::builder().no_proxy().build()?,
            base: format!("http://{}/api/v1", info.api_addr),
            token,
        })
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token)
    }

    /// Sends a request and decodes the JSON answer, turning `{"error": ...}` into an error.
    pub async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response = match request.send().await {
            Ok(response) => response,
            // The server went away (stopped, killed) after `connect` found it.
            Err(e) if e.is_connect() => bail!(
                "the Drover server at {} stopped answering: start it again with `drover server start`, then \
                 `drover events` tells what became of this request",
                self.base.trim_start_matches("http://").trim_end_matches("/api/v1")
            ),
            Err(e) => return Err(anyhow::Error::new(e).context("calling the Drover API")),
        };
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{message}");
        }
        serde_json::from_slice(&bytes).with_context(|| format!("decoding the API answer ({status})"))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::POST, path).json(body)).await
    }
}

/// Starts `drover server run` in its own session, unless one runs, and waits until it answers.
pub async fn start_server(data: &DataDir, flags: &crate::ServerFlags) -> anyhow::Result<ServerInfo> {
    if let Some(info) = running_server(data) {
        return Ok(info);
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data.root())
            .with_context(|| format!("creating {}", data.root().display()))?;
    }
    let log_path = data.server_log();
    let log = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&log_path)?
    };
    let log_start = log.metadata()?.len();
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg("--data-dir").arg(data.root()).arg("server").arg("run");
    for (flag, value) in [
        ("--http-addr", flags.http_addr.map(|a| a.to_string())),
        ("--api-addr", flags.api_addr.map(|a| a.to_string())),
        ("--domain", flags.domain.clone()),
        ("--upload-limit", flags.upload_limit.map(|l| l.to_string())),
        ("--push-limit", flags.push_limit.map(|l| l.to_string())),
        ("--runtime", flags.runtime.map(|r| r.as_str().to_owned())),
        ("--stack-image", flags.stack_image.clone()),
    ] {
        if let Some(value) = value {
            command.arg(flag).arg(value);
        }
    }
    command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe; the server gets its own session so it outlives this
    // terminal.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = command.spawn().context("starting the Drover server")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(info) = running_server(data) {
            if info.pid == child.id() {
                // Detach: the server lives on in its own session.
                std::thread::spawn(move || child.wait());
                return Ok(info);
            }
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.get(log_start as usize..).unwrap_or("").lines().rev().take(5).collect();
            let reason = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            bail!("the Drover server exited ({status}) while starting:\n{reason}");
        }
        if Instant::now() > deadline {
            bail!("the Drover server did not come up within 60s; see {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
