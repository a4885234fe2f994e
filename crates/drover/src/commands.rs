//! One function per CLI command, over the API client.

use crate::client::{self, Client};
use crate::terminal::{for_stderr, for_stdout};
use crate::{Command, ConfigCommand, RunCommand, SecretsCommand, ServerCommand, SourceCommand};
use anyhow::{bail, Context};
use api::datadir::DataDir;
use api::wire::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Output {
    pub json: bool,
}

impl Output {
    fn print_json<T: serde::Serialize>(&self, value: &T) {
        println!("{}", serde_json::to_string_pretty(value).expect("API types serialize"));
    }
}

pub async fn dispatch(command: Command, data: DataDir, out: Output) -> anyhow::Result<i32> {
    match command {
        Command::Up { dir, name, server } => {
            let info = client::start_server(&data, &server).await?;
            if !out.json {
                println!(
                    "drover server running (pid {}, api http://{}, apps on {})",
                    info.pid, info.api_addr, info.http_addr
                );
            }
            let dir = dir.unwrap_or_else(default_up_dir);
            deploy(&Client::connect(&data)?, &dir, name.as_deref(), true, Gate::RequireTests, &out).await
        }
        Command::Deploy { dir, name, no_wait, force } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let client = Client::connect(&data)?;
            let gate = if force { Gate::Forced } else { Gate::RequireTests };
            deploy(&client, &dir, name.as_deref(), !no_wait, gate, &out).await
        }
        Command::Apps => {
            let apps: Vec<AppView> = Client::connect(&data)?.get("/apps").await?;
            if out.json {
                out.print_json(&apps);
            } else {
                let rel = |r: Option<u64>| r.map(|r| format!("v{r}")).unwrap_or_else(|| "-".into());
                let rows = apps
                    .iter()
                    .map(|a| vec![a.name.clone(), rel(a.target), rel(a.stable), a.instances.to_string(), a.url.clone()])
                    .collect();
                print_table(&["APP", "RELEASE", "STABLE", "INSTANCES", "URL"], rows);
            }
            Ok(0)
        }
        Command::Ps { app } => {
            let app = resolve_app(app)?;
            let instances: Vec<InstanceView> = Client::connect(&data)?.get(&format!("/apps/{app}/ps")).await?;
            if out.json {
                out.print_json(&instances);
            } else {
                println!(
                    "{:<36} {:<8} {:<11} {:<8} {:<8} {:<9} {:<8}",
                    "INSTANCE", "RELEASE", "STATE", "PID", "PORT", "HEALTH", "RESTARTS"
                );
                for i in instances {
                    let health = match (i.healthy, i.draining) {
                        (_, true) => "draining",
                        (Some(true), _) => "healthy",
                        (Some(false), _) => "unhealthy",
                        (None, _) => "-",
                    };
                    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    println!(
                        "{:<36} {:<8} {:<11} {:<8} {:<8} {:<9} {:<8}",
                        i.id,
                        format!("v{}", i.release),
                        i.state,
                        opt(i.pid.map(|p| p.to_string())),
                        opt(i.port.map(|p| p.to_string())),
                        health,
                        i.restarts
                    );
                }
            }
            Ok(0)
        }
        Command::Releases { app } => {
            let app = resolve_app(app)?;
            let releases: Vec<ReleaseView> = Client::connect(&data)?.get(&format!("/apps/{app}/releases")).await?;
            if out.json {
                out.print_json(&releases);
            } else {
                println!("  {:<8} {:<20} DESCRIPTION", "RELEASE", "ARTIFACT");
                for r in releases {
                    let mark = if r.target { "*" } else { " " };
                    let digest = r.digest.strip_prefix("sha256:").map(|h| &h[..12]).unwrap_or(&r.digest);
                    println!("{mark} {:<8} sha256:{:<13} {}", format!("v{}", r.id), digest, for_stdout(&r.description));
                }
            }
            Ok(0)
        }
        Command::Rollback { release, app, no_wait } => {
            let app = resolve_app(app)?;
            let release = release.map(|r| parse_release(&r)).transpose()?;
            let client = Client::connect(&data)?;
            let view: DeployView = client.post(&format!("/apps/{app}/rollback"), &RollbackRequest { release }).await?;
            follow_deploy(&client, view, !no_wait, &out).await
        }
        Command::Scale { counts, app } => {
            let app = resolve_app(app)?;
            let mut scale = BTreeMap::new();
            for count in &counts {
                let (process, n) =
                    count.split_once('=').with_context(|| format!("{count:?}: expected PROCESS=COUNT, e.g. web=3"))?;
                let n: u32 = n.parse().with_context(|| format!("{count:?}: {n:?} is not a count"))?;
                scale.insert(process.to_owned(), n);
            }
            let view: AppView =
                Client::connect(&data)?.post(&format!("/apps/{app}/scale"), &ScaleRequest { scale }).await?;
            if out.json {
                out.print_json(&view);
            } else {
                let summary: Vec<String> = view.scale.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{}: scaling to {}", view.name, summary.join(" "));
            }
            Ok(0)
        }
        Command::Logs { app, follow, tail } => {
            let app = resolve_app(app)?;
            logs(&Client::connect(&data)?, &app, follow, tail, &out).await
        }
        Command::Events { app } => {
            let client = Client::connect(&data)?;
            let mut request = client.request(reqwest::Method::GET, "/events");
            if let Some(app) = app {
                request = request.query(&[("app", app)]);
            }
            let events: Vec<EventView> = client.send(request).await?;
            if out.json {
                out.print_json(&events);
            } else {
                for e in events {
                    let message = for_stdout(&e.message);
                    println!("{} {:<12} {:<20} {message}", format_ts(e.ts_ms), e.app.unwrap_or_default(), e.kind);
                }
            }
            Ok(0)
        }
        Command::Server(command) => server(command, &data, &out).await,
        Command::Runs { app } => {
            let client = Client::connect(&data)?;
            let mut request = client.request(reqwest::Method::GET, "/runs");
            if let Some(app) = app {
                request = request.query(&[("app", app)]);
            }
            let runs: Vec<RunView> = client.send(request).await?;
            if out.json {
                out.print_json(&runs);
            } else {
                let rows = runs
                    .iter()
                    .map(|r| {
                        let commit = r.commit[..9.min(r.commit.len())].to_owned();
                        vec![
                            r.id.to_string(),
                            r.app.clone(),
                            for_stdout(&r.branch).into_owned(),
                            commit,
                            r.status.clone(),
                            for_stdout(&r.message).into_owned(),
                        ]
                    })
                    .collect();
                print_table(&["RUN", "APP", "BRANCH", "COMMIT", "STATUS", "MESSAGE"], rows);
            }
            Ok(0)
        }
        Command::Run(RunCommand::Show { run }) => {
            let view: RunView = Client::connect(&data)?.get(&format!("/runs/{run}")).await?;
            if out.json {
                out.print_json(&view);
            } else {
                println!("run {} of {} on branch {:?} at {}", view.id, view.app, view.branch, view.commit);
                println!("status: {} ({})", view.status, for_stdout(&view.message));
                if let Some(digest) = &view.digest {
                    println!("artifact: {digest}");
                }
                if !view.steps.is_empty() {
                    println!("{:<24} {:<10} {:>8}  MESSAGE", "STEP", "STATUS", "TIME");
                    for step in &view.steps {
                        let time = format_duration(step.duration_ms);
                        println!("{:<24} {:<10} {time:>8}  {}", step.name, step.status, for_stdout(&step.message));
                    }
                }
                if let Some(tests) = &view.tests {
                    println!(
                        "tests: {} run, {} failed, {} errors, {} skipped, {} ms",
                        tests["tests"], tests["failures"], tests["errors"], tests["skipped"], tests["duration_ms"]
                    );
                    let cases = tests["cases"].as_array().map(Vec::as_slice).unwrap_or_default();
                    for case in cases {
                        let outcome = &case["outcome"];
                        if let Some(kind @ ("failed" | "error")) = outcome["kind"].as_str() {
                            let name = match (case["classname"].as_str(), case["name"].as_str()) {
                                (Some(class), Some(name)) if !class.is_empty() => format!("{class}.{name}"),
                                (_, name) => name.unwrap_or_default().to_owned(),
                            };
                            let message = outcome["message"].as_str().unwrap_or_default();
                            println!("  {kind}: {}: {}", for_stdout(&name), for_stdout(message));
                        }
                    }
                }
                for line in &view.log {
                    println!("  {}", for_stdout(&line.line));
                }
            }
            Ok(0)
        }
        Command::Secrets(SecretsCommand::List { app, stage }) => {
            let view = config_view(&data, &app, stage).await?;
            if out.json {
                out.print_json(&view.secrets);
            } else {
                for key in &view.secrets {
                    println!("{key}");
                }
            }
            Ok(0)
        }
        Command::Config(ConfigCommand::Show { app, stage }) => {
            let view = config_view(&data, &app, stage).await?;
            if out.json {
                out.print_json(&view);
            } else {
                for (key, value) in &view.vars {
                    println!("{key}={}", for_stdout(value));
                }
                for key in &view.secrets {
                    println!("{key}=*** (secret)");
                }
            }
            Ok(0)
        }
        Command::Config(ConfigCommand::Set { app, pairs, stage }) => {
            let mut request = ConfigRequest { stage, ..Default::default() };
            for pair in &pairs {
                let (key, value) = pair.split_once('=').with_context(|| format!("{pair:?}: expected KEY=VALUE"))?;
                request.set.insert(key.to_owned(), value.to_owned());
            }
            let client = Client::connect(&data)?;
            let deploy: Option<DeployView> = client.post(&format!("/apps/{app}/config"), &request).await?;
            config_changed(&client, deploy, &out).await
        }
        Command::Config(ConfigCommand::Unset { app, keys, stage }) => {
            let request = ConfigRequest { unset: keys, stage, ..Default::default() };
            let client = Client::connect(&data)?;
            let deploy: Option<DeployView> = client.post(&format!("/apps/{app}/config"), &request).await?;
            config_changed(&client, deploy, &out).await
        }
        Command::Secrets(SecretsCommand::Set { app, key, stage }) => {
            use std::io::Read;
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value).context("reading the secret from standard input")?;
            // One trailing newline is what `echo` adds, not part of the value.
            let value =
                value.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&value).to_owned();
            let client = Client::connect(&data)?;
            let deploy: Option<DeployView> =
                client.post(&format!("/apps/{app}/secrets"), &SecretRequest { key, value, stage }).await?;
            config_changed(&client, deploy, &out).await
        }
        Command::Source(command) => {
            let client = Client::connect(&data)?;
            let view: SourceView = match command {
                SourceCommand::Set { app, url, provider, poll } => {
                    let request = SourceRequest {
                        url,
                        provider,
                        poll_interval_ms: poll.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    };
                    client.post(&format!("/apps/{app}/source"), &request).await?
                }
                SourceCommand::Show { app } => client.get(&format!("/apps/{app}/source")).await?,
            };
            if out.json {
                out.print_json(&view);
            } else {
                println!("{}: {}", view.app, for_stdout(&view.url));
                if let (Some(url), Some(secret)) = (&view.webhook_url, &view.webhook_secret) {
                    println!("webhook: {url}\nsecret:  {secret}");
                }
                if let Some(ms) = view.poll_interval_ms {
                    println!("polled every {}s", ms / 1000);
                }
            }
            Ok(0)
        }
        Command::Run(RunCommand::Logs { run, follow }) => run_logs(&Client::connect(&data)?, run, follow, &out).await,
        Command::Approve { run } => decide(&Client::connect(&data)?, run, "approve", &out).await,
        Command::Reject { run } => decide(&Client::connect(&data)?, run, "reject", &out).await,
        Command::Cancel { run } => {
            let view: RunView =
                Client::connect(&data)?.post(&format!("/runs/{run}/cancel"), &serde_json::json!({})).await?;
            if out.json {
                out.print_json(&view);
            } else {
                println!("run {} {}", view.id, view.status);
            }
            Ok(0)
        }
        Command::GitRemote { app, remote } => {
            let app = resolve_app(app)?;
            let url = crate::credential::set_remote(&data, Path::new("."), &app, &remote)?;
            if out.json {
                out.print_json(&serde_json::json!({ "remote": remote, "url": url }));
            } else {
                println!("git remote {remote} → {url} (the token comes from drover as git's credential helper)");
                println!("push with: git push {remote} main");
            }
            Ok(0)
        }
        Command::Proxy { .. } | Command::Shim { .. } | Command::Hook { .. } | Command::GitCredential { .. } => {
            unreachable!("handled in main")
        }
    }
}

async fn server(command: ServerCommand, data: &DataDir, out: &Output) -> anyhow::Result<i32> {
    match command {
        ServerCommand::Start(flags) => {
            let info = client::start_server(data, &flags).await?;
            if out.json {
                out.print_json(&info);
            } else {
                println!(
                    "drover server running (pid {}, api http://{}, apps on {})",
                    info.pid, info.api_addr, info.http_addr
                );
            }
            Ok(0)
        }
        ServerCommand::Stop { all } => {
            let Some(info) = client::running_server(data) else {
                if !out.json {
                    println!("no Drover server runs");
                }
                return Ok(0);
            };
            let client = Client::connect(data)?;
            let response =
                client.request(reqwest::Method::POST, "/server/shutdown").json(&ShutdownRequest { all }).send().await?;
            if !response.status().is_success() {
                bail!("the server refused to stop: {}", response.status());
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while runtime::procfs::is_alive(info.pid, info.start_time) {
                if std::time::Instant::now() > deadline {
                    bail!("the server (pid {}) did not stop within 60s", info.pid);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !out.json {
                println!("drover server stopped{}", if all { ", with its apps and proxy" } else { "" });
            }
            Ok(0)
        }
        ServerCommand::Status => {
            let Some(_) = client::running_server(data) else {
                if out.json {
                    println!("null");
                } else {
                    println!("no Drover server runs for {}", data.root().display());
                }
                return Ok(3);
            };
            let status: ServerStatus = Client::connect(data)?.get("/server").await?;
            if out.json {
                out.print_json(&status);
            } else {
                println!(
                    "drover server running: pid {}, api http://{}, apps on {}, {} app(s), {} instance(s), {} KiB resident",
                    status.pid, status.api_addr, status.http_addr, status.apps, status.instances, status.rss_kib
                );
            }
            Ok(0)
        }
        ServerCommand::Run(_) => unreachable!("handled in main"),
    }
}

/// The bundled example: `examples/hello-python` under the current directory, else in the
/// source tree this binary was built from.
/// Widest a column other than the last may be; longer cells (a 200-character branch name) are
/// cut with `…` so the table stays readable. `--json` has the whole values.
const MAX_CELL: usize = 40;

/// Prints `rows` under `headers`, each column as wide as its widest cell (up to [`MAX_CELL`]),
/// the last column unpadded and uncut.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let cut = |cell: &str| match cell.chars().count() > MAX_CELL {
        true => format!("{}…", cell.chars().take(MAX_CELL - 1).collect::<String>()),
        false => cell.to_owned(),
    };
    let last = headers.len() - 1;
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.iter().enumerate().map(|(i, cell)| if i < last { cut(cell) } else { cell.clone() }).collect())
        .collect();
    let widths: Vec<usize> = (0..last)
        .map(|i| rows.iter().map(|row| row[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < last {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                text.push_str(cell);
            }
        }
        println!("{}", text.trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// An app's config vars and secret names, shared by all stages or for `stage`.
async fn config_view(data: &DataDir, app: &str, stage: Option<String>) -> anyhow::Result<ConfigView> {
    let client = Client::connect(data)?;
    let mut request = client.request(reqwest::Method::GET, &format!("/apps/{app}/config"));
    if let Some(stage) = stage {
        request = request.query(&[("stage", stage)]);
    }
    client.send(request).await
}

/// What `drover up` deploys without a directory: the app in the current directory if there is
/// one, else the bundled example.
fn default_up_dir() -> PathBuf {
    let here = Path::new(".");
    if here.join("drover.yml").is_file() || here.join("Procfile").is_file() {
        return here.to_owned();
    }
    default_example()
}

fn default_example() -> PathBuf {
    let here = PathBuf::from("examples/hello-python");
    if here.join("drover.yml").exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-python")
}

/// The app named on the command line, else the one in `./drover.yml`.
fn resolve_app(app: Option<String>) -> anyhow::Result<String> {
    if let Some(app) = app {
        return Ok(app);
    }
    match config::load_dir(Path::new("."), None) {
        Ok(spec) => Ok(spec.name.to_string()),
        Err(_) => bail!("no app given and no usable drover.yml here: pass the app name"),
    }
}

/// The directory's name as an app name (`My_App` gives `my-app`), if it makes a valid one.
fn dir_app_name(dir: &Path) -> Option<String> {
    let base = dir.canonicalize().ok()?.file_name()?.to_string_lossy().to_lowercase();
    let name: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = name.trim_matches('-').to_owned();
    model::AppName::parse(&name).ok().map(|n| n.to_string())
}

fn parse_release(text: &str) -> anyhow::Result<u64> {
    text.trim_start_matches('v').parse().with_context(|| format!("{text:?} is not a release such as v3"))
}

/// Packs `dir` as a gzip'd tarball, leaving out version-control metadata. Symlinks stay links,
/// as `git push` keeps them; the server refuses one that points out of the tree.
fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir { builder.append_dir_all(&name, &path) } else { builder.append_path_with_name(&path, &name) }
            .with_context(|| format!("packing {}", path.display()))?;
    }
    Ok(builder.into_inner()?.finish()?)
}

/// Whether a deploy must pass the app's tests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    RequireTests,
    Forced,
}

async fn deploy(
    client: &Client,
    dir: &Path,
    name: Option<&str>,
    wait: bool,
    gate: Gate,
    out: &Output,
) -> anyhow::Result<i32> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    // A Procfile-only app is named after its directory unless --name says otherwise.
    let derived = dir_app_name(dir);
    let name = name.or(derived.as_deref());
    let body = pack(dir)?;
    if !out.json {
        println!("uploading {} ({} KiB)", dir.display(), body.len().div_ceil(1024));
    }
    let mut request = client.request(reqwest::Method::POST, "/deploys").body(body);
    if let Some(name) = name {
        request = request.query(&[("name", name)]);
    }
    if gate == Gate::Forced {
        request = request.query(&[("force", "true")]);
    }
    let view: DeployView = client.send(request).await.with_context(|| format!("deploying {}", dir.display()))?;
    follow_deploy(client, view, wait, out).await
}

/// Prints a deploy's progress until it finishes; exit code 0 only if it succeeded.
async fn follow_deploy(client: &Client, mut view: DeployView, wait: bool, out: &Output) -> anyhow::Result<i32> {
    let mut seen = 0;
    loop {
        if !out.json {
            for line in &view.log {
                println!("  {}", for_stdout(&line.line));
            }
            std::io::stdout().flush()?;
        }
        seen = view.log.last().map_or(seen, |l| l.seq);
        let finished = !matches!(view.status.as_str(), "building" | "deploying");
        if finished || !wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        view = client.get(&format!("/deploys/{}?after={seen}", view.id)).await?;
    }
    if out.json {
        out.print_json(&view);
    }
    match view.status.as_str() {
        "succeeded" => {
            if !out.json {
                println!(
                    "deployed {} v{} at {}",
                    view.app.unwrap_or_default(),
                    view.release.unwrap_or(0),
                    view.url.unwrap_or_default()
                );
            }
            Ok(0)
        }
        "building" | "deploying" => {
            if !out.json {
                println!("deploy {} is {}; follow it with `drover events`", view.id, view.status);
            }
            Ok(0)
        }
        _ => {
            eprintln!("error: deploy {} {}: {}", view.id, view.status, for_stderr(&view.message));
            Ok(1)
        }
    }
}

/// Approves or rejects the deploy a waiting run waits for.
async fn decide(client: &Client, run: u64, verb: &str, out: &Output) -> anyhow::Result<i32> {
    let view: RunView = client.post(&format!("/runs/{run}/{verb}"), &serde_json::json!({})).await?;
    if out.json {
        out.print_json(&view);
    } else {
        println!("run {}: {}", view.id, for_stdout(&view.message));
    }
    Ok(0)
}

/// After a config change: follows the new release's rollout, if the app runs one.
async fn config_changed(client: &Client, deploy: Option<DeployView>, out: &Output) -> anyhow::Result<i32> {
    match deploy {
        Some(view) => follow_deploy(client, view, true, out).await,
        None => {
            if !out.json {
                println!("saved; the app's next release will use it");
            }
            Ok(0)
        }
    }
}

/// Prints a run's log, following it until the run ends with `follow`; exit code 0 only if the
/// run succeeded (or is still going without `follow`).
async fn run_logs(client: &Client, run: u64, follow: bool, out: &Output) -> anyhow::Result<i32> {
    let mut seen = 0;
    loop {
        let view: RunView = client.get(&format!("/runs/{run}?after={seen}")).await?;
        for line in &view.log {
            if out.json {
                println!("{}", serde_json::to_string(line).expect("log lines serialize"));
            } else {
                println!("{}", for_stdout(&line.line));
            }
            seen = line.seq;
        }
        std::io::stdout().flush()?;
        let finished = !matches!(view.status.as_str(), "queued" | "running");
        if finished || !follow {
            // A run waiting for approval stopped where it should; only an ended run that did
            // not succeed is a failure.
            let failed = finished && !matches!(view.status.as_str(), "succeeded" | "waiting");
            return Ok(if failed { 1 } else { 0 });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn logs(client: &Client, app: &str, follow: bool, tail: usize, out: &Output) -> anyhow::Result<i32> {
    use futures_util::StreamExt;
    let request = client
        .request(reqwest::Method::GET, &format!("/apps/{app}/logs"))
        .query(&[("tail", tail.to_string()), ("follow", follow.to_string())]);
    let response = request.send().await?;
    if !response.status().is_success() {
        let body: ErrorBody = response.json().await.unwrap_or(ErrorBody { error: "logs unavailable".into() });
        bail!("{}", body.error);
    }
    let mut stream = response.bytes_stream();
    let mut pending = Vec::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let mut lock = stdout.lock();
            if out.json {
                lock.write_all(&line)?;
            } else if let Ok(record) = serde_json::from_slice::<logs::LogRecord>(&line) {
                writeln!(
                    lock,
                    "{} {}[{}]: {}",
                    format_ts(record.ts),
                    record.instance,
                    format!("{:?}", record.stream).to_lowercase(),
                    for_stdout(&record.line)
                )?;
            }
            lock.flush()?;
        }
    }
    Ok(0)
}

/// `0.42s`, `12.30s`, `3m07s`, `1h02m`: short, for a table column.
fn format_duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{}.{:02}s", secs, (ms % 1000) / 10),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs / 60) % 60),
    }
}

/// `HH:MM:SS.mmm` UTC, enough to read a log.
fn format_ts(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}:{:02}.{:03}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fit_a_column() {
        let table = [(0, "0.00s"), (420, "0.42s"), (12_305, "12.30s"), (187_000, "3m07s"), (3_720_000, "1h02m")];
        for (ms, expected) in table {
            assert_eq!(format_duration(ms), expected, "{ms} ms");
        }
    }
}
