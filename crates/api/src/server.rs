//! `drover server run`: opens the state, starts (or re-adopts) the proxy, serves the API and
//! runs the reconcile loop until told to stop.

use crate::datadir::{DataDir, ProxyInfo, RuntimeKind, ServerInfo, Settings};
use anyhow::{bail, Context};
use artifact::ArtifactStore;
use deploy::reconciler::Reconciler;
use proxy::AdminClient;
use runtime::procfs as procinfo;
use runtime::{Backends, DockerRuntime, ProcessRuntime, Runtime};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// Settings given on the command line; each one replaces the saved value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub api_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub domain: Option<String>,
    pub upload_limit: Option<u64>,
    pub push_limit: Option<u64>,
    pub runtime: Option<crate::datadir::RuntimeKind>,
    pub stack_image: Option<String>,
}

pub struct ServerOptions {
    pub data: DataDir,
    pub overrides: Overrides,
    /// The `drover` executable, used to start the proxy and instance supervisors.
    pub exe: PathBuf,
}

/// Everything request handlers and the reconcile loop share.
pub(crate) struct Ctx {
    pub data: DataDir,
    pub settings: Settings,
    /// The address the API really listens on (the setting may say port 0).
    pub api_addr: SocketAddr,
    pub token: String,
    pub store: Arc<Mutex<Store>>,
    pub artifacts: Arc<ArtifactStore>,
    pub runtime: Arc<Backends>,
    pub proxy: AdminClient,
    /// Wakes the reconcile loop early, e.g. after a deploy was accepted.
    pub wake: Notify,
    pub shutdown: Notify,
    /// Wakes the run queue early, e.g. after a push.
    pub runs_wake: Notify,
    pub runs: crate::runs::RunControl,
    /// Seals secrets at rest (webhook secrets, app secrets).
    pub keyring: secrets::Keyring,
    /// Set once a full shutdown began, so the loop starts nothing more.
    pub stopping: AtomicBool,
    /// Held by the reconcile loop for each pass, so a full shutdown can wait for the pass in
    /// flight (which may be starting an instance) before it lists what to stop.
    pub tick_lock: tokio::sync::Mutex<()>,
    pub exe: PathBuf,
}

impl Ctx {
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store mutex is never poisoned: holders do not panic")
    }

    pub fn app_url(&self, app: &str) -> String {
        format!("http://{app}.{}:{}/", self.settings.domain, self.settings.http_addr.port())
    }
}

fn create_private_dir(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Loads the saved settings, applies overrides and pins any port 0 to a concrete free port, so
/// later starts (and the proxy, which outlives us) agree on the address.
fn settings(data: &DataDir, overrides: &Overrides) -> anyhow::Result<Settings> {
    let mut settings: Settings = DataDir::read_json(&data.settings()).unwrap_or_default();
    if let Some(addr) = overrides.api_addr {
        settings.api_addr = addr;
    }
    if let Some(addr) = overrides.http_addr {
        settings.http_addr = addr;
    }
    if let Some(domain) = &overrides.domain {
        settings.domain = domain.clone();
    }
    if let Some(limit) = overrides.upload_limit {
        settings.upload_limit = limit;
    }
    if let Some(limit) = overrides.push_limit {
        settings.push_limit = limit;
    }
    if let Some(runtime) = overrides.runtime {
        settings.runtime = runtime;
    }
    if let Some(image) = &overrides.stack_image {
        settings.stack_image = Some(image.clone());
    }
    if settings.runtime == RuntimeKind::Docker && settings.stack_image.is_none() {
        bail!("the Docker runtime runs slugs in a stack image: name one with --stack-image IMAGE");
    }
    if settings.http_addr.port() == 0 {
        let listener = StdTcpListener::bind(settings.http_addr).context("picking a port for the proxy")?;
        settings.http_addr = listener.local_addr()?;
    }
    DataDir::write_json(&data.settings(), &settings, 0o600).context("saving settings.json")?;
    Ok(settings)
}

/// The runtime backends: always the process runtime; the Docker runtime when the settings choose
/// it, or when it has instances from an earlier start (so they are seen and stopped).
async fn backends(data: &DataDir, settings: &Settings, exe: &std::path::Path) -> anyhow::Result<Backends> {
    let process = ProcessRuntime::new(data.instances(), data.logs(), exe.to_owned()).with_key_file(data.secret_key());
    let backends = Backends::new(process);
    let wanted = settings.runtime == RuntimeKind::Docker;
    let has_instances = std::fs::read_dir(data.containers()).is_ok_and(|mut dir| dir.next().is_some());
    if !wanted && !has_instances {
        return Ok(backends);
    }
    match DockerRuntime::connect(data.containers(), data.logs()).await {
        Ok(docker) => {
            let mut docker = docker.with_key_file(data.secret_key());
            if let Some(image) = &settings.stack_image {
                docker = docker.with_stack_image(image.clone());
            }
            info!(slugs_in_docker = wanted, "Docker runtime connected");
            Ok(backends.with_docker(docker, wanted))
        }
        Err(e) if wanted => Err(anyhow::Error::new(e).context("the Docker runtime needs a running Docker engine")),
        Err(e) => {
            warn!(error = %format!("{:#}", anyhow::Error::new(e)), "cannot reach Docker; its instances from an earlier start are not managed");
            Ok(backends)
        }
    }
}

/// The API token: created on first start (random, 64 hex digits, 0600, written atomically), and
/// on later starts read and checked. An empty, short or unreadable token file is refused by name:
/// an empty token would let every request in, and the CLI and git remotes hold the old one.
fn token(data: &DataDir) -> anyhow::Result<String> {
    let path = data.token();
    match std::fs::read(&path) {
        Ok(bytes) => return crate::datadir::check_token(&path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot read the API token file {}: {e}", path.display()),
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match crate::datadir::create_secret_file(&path, token.as_bytes()) {
        Ok(()) => Ok(token),
        // Another server created it meanwhile: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading the API token file {}", path.display()))?;
            crate::datadir::check_token(&path, &bytes)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("creating the API token file {}", path.display()))),
    }
}

/// Makes sure a proxy serves `settings.http_addr`: re-adopts a live one, or starts one in its own
/// session so it outlives this server.
pub(crate) async fn ensure_proxy(data: &DataDir, settings: &Settings, exe: &std::path::Path) -> anyhow::Result<()> {
    let client = AdminClient::new(data.proxy_socket());
    if let Some(info) = DataDir::read_json::<ProxyInfo>(&data.proxy_info()) {
        // A live proxy on our address is re-adopted if it answers within a few seconds: one
        // slow answer on a loaded machine must not get a healthy data plane replaced.
        if procinfo::is_alive(info.pid, info.start_time) && info.listen == settings.http_addr {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && procinfo::is_alive(info.pid, info.start_time) {
                if client.status().await.is_ok() {
                    info!(pid = info.pid, "re-adopted the running proxy");
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            warn!(pid = info.pid, "the proxy does not answer; replacing it");
        }
        if procinfo::is_alive(info.pid, info.start_time) {
            // A proxy on another address, or one that does not answer: replace it, once it has
            // let go of its port.
            stop_proxy(&info).await;
        }
    }
    if let Err(e) = StdTcpListener::bind(settings.http_addr) {
        bail!(
            "cannot serve apps on {}: {e} (another program holds that port; choose another with `drover server start --http-addr 127.0.0.1:PORT`)",
            settings.http_addr
        );
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(data.proxy_log())?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("proxy")
        .arg("--listen")
        .arg(settings.http_addr.to_string())
        .arg("--admin-socket")
        .arg(data.proxy_socket())
        .arg("--state-file")
        .arg(data.proxy_state())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = command.spawn().context("starting the proxy")?;
    let pid = child.id();
    let start_time = procinfo::start_time(pid).context("the proxy exited at once; see proxy.log")?;
    DataDir::write_json(&data.proxy_info(), &ProxyInfo { pid, start_time, listen: settings.http_addr }, 0o600)?;
    // Reap the proxy if it exits while we live; after we die, init adopts it.
    std::thread::spawn(move || child.wait());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client.status().await.is_ok() {
            info!(pid, listen = %settings.http_addr, "proxy started");
            return Ok(());
        }
        if !procinfo::is_alive(pid, start_time) {
            bail!("the proxy exited while starting; see {}", data.proxy_log().display());
        }
        if Instant::now() > deadline {
            bail!("the proxy did not answer on {} within 10s", data.proxy_socket().display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends the proxy SIGTERM and waits (up to 15 s) until it has exited and let go of its port.
async fn stop_proxy(info: &ProxyInfo) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(info.pid as i32), nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while procinfo::is_alive(info.pid, info.start_time) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Empties `tmp/` and the artifact store's scratch directory; what cannot be removed is logged
/// and left for the next start.
fn clear_scratch(data: &DataDir, artifacts: &ArtifactStore) {
    if let Err(e) = artifacts.clear_scratch() {
        warn!(error = %format!("{e:#}"), "could not clear the artifact store's scratch directory");
    }
    if let Err(e) = artifact::clear_directory(&data.tmp()) {
        warn!(error = %e, "could not clear the data directory's tmp/");
    }
}

/// Runs the server until SIGTERM, SIGINT or a shutdown request.
pub async fn run(opts: ServerOptions) -> anyhow::Result<()> {
    let data = opts.data;
    // Whatever the server, the proxy it starts and their libraries create (the database and its
    // WAL, logs, sockets) is private unless made otherwise on purpose: the data directory's
    // root is open for apps' users to pass through, so a file's own mode is what keeps it.
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::umask(0o077) };
    if sandbox::can_switch_users() {
        data.check_reachable_by_apps()?;
    }
    for dir in [data.root().to_path_buf(), data.tmp(), data.instances(), data.logs()] {
        create_private_dir(&dir)?;
    }
    // Before anything is read: state, repos, logs and settings are this user's alone.
    data.tighten().with_context(|| format!("making the data directory {} private", data.root().display()))?;
    let settings = settings(&data, &opts.overrides)?;
    let token = token(&data)?;
    let mut store = Store::open(&data.db()).context("opening state.db")?;
    // State from before host claims: each app claims its hosts, the oldest release first.
    store.backfill_host_claims().context("claiming the hosts of existing apps")?;
    // Before anything is marked interrupted or started anew: a server killed with -9 left its
    // build and test commands running.
    if let Err(e) = crate::groups::kill_leftovers(&store).await {
        error!(error = %format!("{e:#}"), "could not kill the build and test processes a stopped server left");
    }
    let interrupted = store.fail_interrupted_builds(deploy::reconciler::now_ms())?;
    if interrupted > 0 {
        warn!(interrupted, "marked builds interrupted by the last stop as failed");
    }
    let keyring = secrets::Keyring::load_or_create(&data.secret_key()).context("loading the secret key")?;
    let artifacts = ArtifactStore::open(data.artifacts()).context("opening the artifact store")?;
    let runtime = backends(&data, &settings, &opts.exe).await?;
    ensure_proxy(&data, &settings, &opts.exe).await?;

    let listener = tokio::net::TcpListener::bind(settings.api_addr)
        .await
        .with_context(|| format!("cannot serve the API on {} (choose another with --api-addr)", settings.api_addr))?;
    let api_addr = listener.local_addr()?;
    // The API address is this data dir's own, so holding it means no other server runs here:
    // whatever is in the scratch directories was left by a server that died mid-build.
    clear_scratch(&data, &artifacts);
    let pid = std::process::id();
    let info = ServerInfo {
        pid,
        start_time: procinfo::start_time(pid).unwrap_or_default(),
        api_addr,
        http_addr: settings.http_addr,
        domain: settings.domain.clone(),
    };

    let ctx = Arc::new(Ctx {
        proxy: AdminClient::new(data.proxy_socket()),
        data: data.clone(),
        settings,
        api_addr,
        token,
        store: Arc::new(Mutex::new(store)),
        artifacts: Arc::new(artifacts),
        runtime: Arc::new(runtime),
        wake: Notify::new(),
        shutdown: Notify::new(),
        runs_wake: Notify::new(),
        runs: Default::default(),
        keyring,
        stopping: AtomicBool::new(false),
        tick_lock: tokio::sync::Mutex::new(()),
        exe: opts.exe,
    });
    let reconcile = tokio::spawn(reconcile_loop(ctx.clone()));
    // Test containers a killed server's image tests left running.
    crate::images::remove_test_containers(&ctx, None).await;
    // Before any push or fetch: what git processes of a killed server left in the repositories.
    crate::git::recover(&ctx).await;
    let runs = tokio::spawn(crate::runs::run_loop(ctx.clone()));
    let polls = tokio::spawn(crate::sources::poll_loop(ctx.clone()));
    DataDir::write_json(&data.server_info(), &info, 0o600)?;
    info!(api = %api_addr, http = %ctx.settings.http_addr, "drover server ready");

    let app = crate::routes::router(ctx.clone());
    let shutdown_ctx = ctx.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("signal handler installs");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = shutdown_ctx.shutdown.notified() => {}
            }
        })
        .await?;
    crate::runs::cancel_all(&ctx).await;
    reconcile.abort();
    runs.abort();
    polls.abort();
    let _ = std::fs::remove_file(data.server_info());
    info!("drover server stopped");
    Ok(())
}

async fn reconcile_loop(ctx: Arc<Ctx>) {
    let mut reconciler = Reconciler::new(
        ctx.store.clone(),
        ctx.runtime.clone(),
        AdminClient::new(ctx.data.proxy_socket()),
        ctx.artifacts.clone(),
        ctx.settings.domain.clone(),
    )
    .with_logs_root(ctx.data.logs());
    let mut failures = 0u32;
    loop {
        let pass = ctx.tick_lock.lock().await;
        if ctx.stopping.load(Ordering::SeqCst) {
            return;
        }
        let result = reconciler.tick().await;
        drop(pass);
        match result {
            Ok(()) => failures = 0,
            // Only a proxy that cannot be reached is replaced: one that answered, even with a
            // refusal, is alive, and restarting it would not change its answer.
            Err(deploy::reconciler::ReconcileError::Proxy(
                e @ (proxy::ProxyError::Connect { .. }
                | proxy::ProxyError::Timeout { .. }
                | proxy::ProxyError::Http { .. }),
            )) => {
                warn!(error = %e, "the proxy does not answer; restarting it");
                if let Err(e) = ensure_proxy(&ctx.data, &ctx.settings, &ctx.exe).await {
                    error!(error = %format!("{e:#}"), "could not restart the proxy");
                }
            }
            Err(e) => {
                failures += 1;
                // Repeated failures are logged once per streak, not every tick.
                if failures == 1 {
                    error!(error = %e, "reconcile failed");
                }
            }
        }
        tokio::select! {
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Stops every instance and the proxy, for `drover server stop --all`.
pub(crate) async fn stop_everything(ctx: &Ctx) {
    ctx.stopping.store(true, Ordering::SeqCst);
    // A pass in flight may be starting an instance: let it finish, so the list below has it.
    let _no_more_passes = ctx.tick_lock.lock().await;
    match ctx.runtime.list().await {
        Ok(instances) => {
            let stops = instances.iter().map(|s| ctx.runtime.stop(&s.spec.id));
            for (result, status) in futures_util::future::join_all(stops).await.into_iter().zip(&instances) {
                if let Err(e) = result {
                    warn!(instance = %status.spec.id, error = %e, "stop failed");
                }
            }
        }
        Err(e) => warn!(error = %e, "could not list instances"),
    }
    if let Some(info) = DataDir::read_json::<ProxyInfo>(&ctx.data.proxy_info()) {
        if procinfo::is_alive(info.pid, info.start_time) {
            stop_proxy(&info).await;
        }
        let _ = std::fs::remove_file(ctx.data.proxy_info());
    }
}
