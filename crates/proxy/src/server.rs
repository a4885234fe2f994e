//! The process: worker threads, listeners, accept loops and graceful shutdown.
//!
//! Requests are served by `threads` workers, each a thread with its own single-threaded tokio
//! runtime and its own listening socket on the same address (`SO_REUSEPORT`, the kernel spreads
//! connections), like nginx workers: a request is served start to finish on one thread, with no
//! handoff between threads, and each worker keeps its own upstream connections (see
//! [`upstream`](crate::upstream)). Measured against one multi-threaded runtime with the same
//! worker count, this spent less CPU per request. The admin API, health checks and pool sweeps
//! run on the caller's runtime, away from the request path.
//!
//! [`run`] is what `drover proxy` calls: it [`start`]s the proxy and waits for SIGTERM or SIGINT.
//! [`start`] is also how tests and embedders run a proxy. Shutdown stops accepting at once, lets
//! open connections finish the request they are serving (keep-alive connections close after
//! it), and gives up after a grace period.

use crate::admin::{self, Control};
use crate::forward::{self, Conn, Shared};
use crate::headers;
use crate::upstream;
use crate::ProxyOptions;
use anyhow::Context as _;
use http::HeaderValue;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A client that has not sent a full request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pending connections the kernel queues per worker before the proxy accepts them.
const LISTEN_BACKLOG: u32 = 1024;

/// The shutdown signal: `None` while serving, then the grace period open requests get.
type Shutdown = watch::Receiver<Option<Duration>>;

/// Runs the proxy in the foreground until SIGTERM or SIGINT, then drains and returns.
pub fn run(opts: ProxyOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("drover-proxy-control")
        .enable_all()
        .build()
        .context("building the proxy's control runtime")?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        let proxy = start(&opts).await?;
        tracing::info!(
            listen = %proxy.local_addr(),
            admin = %opts.admin_socket.display(),
            workers = proxy.workers.len(),
            "proxy started"
        );
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("proxy stopping");
        proxy.shutdown(SHUTDOWN_GRACE).await;
        Ok(())
    })
}

/// A running proxy, started by [`start`].
#[derive(Debug)]
pub struct ProxyHandle {
    local_addr: SocketAddr,
    admin_socket: PathBuf,
    shutdown: watch::Sender<Option<Duration>>,
    /// Admin API and pool sweeps, on the runtime that called [`start`].
    tasks: Vec<JoinHandle<()>>,
    /// One per worker thread; fires when the worker has drained and stopped.
    workers: Vec<oneshot::Receiver<()>>,
}

impl ProxyHandle {
    /// The address the proxy accepts HTTP on (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, waits up to `grace` for open requests to finish, removes the admin socket.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(Some(grace));
        for task in self.tasks {
            let _ = task.await;
        }
        for worker in self.workers {
            let _ = worker.await;
        }
        let _ = std::fs::remove_file(&self.admin_socket);
    }
}

/// Binds the listeners, restores the saved table and starts the workers. The admin API, health
/// checks and pool sweeps run on the current runtime.
pub async fn start(opts: &ProxyOptions) -> anyhow::Result<ProxyHandle> {
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listeners = bind_workers(opts.listen, threads)?;
    let local_addr = listeners[0].local_addr().context("reading the listen address")?;
    let admin_listener = admin::bind(&opts.admin_socket).await?;
    let shared = Arc::new(Shared::new(threads));
    let control = Arc::new(Control::new(Arc::clone(&shared), opts.state_file.clone()));
    control.restore().await?;
    let (shutdown, watcher) = watch::channel(None);
    let mut workers = Vec::with_capacity(threads);
    for (idx, listener) in listeners.into_iter().enumerate() {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("building a worker runtime")?;
        let (done, finished) = oneshot::channel();
        let (shared, watcher) = (Arc::clone(&shared), watcher.clone());
        std::thread::Builder::new()
            .name(format!("drover-proxy-{idx}"))
            .spawn(move || worker(idx, runtime, listener, shared, watcher, done))
            .context("starting a worker thread")?;
        workers.push(finished);
    }
    let tasks = vec![
        tokio::spawn(admin::serve(admin_listener, control, watcher.clone())),
        tokio::spawn(sweep_loop(shared, watcher)),
    ];
    Ok(ProxyHandle { local_addr, admin_socket: opts.admin_socket.clone(), shutdown, tasks, workers })
}

/// One listening socket per worker, all on the same address. With port 0 the first socket
/// picks the port and the others join it.
fn bind_workers(listen: SocketAddr, threads: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    // `SO_REUSEPORT` would let these sockets share the port with another proxy left running;
    // a plain bind first makes that an error, as it would be without it.
    let probe = new_socket(listen)?;
    probe.bind(listen).with_context(|| format!("binding {listen}"))?;
    let addr = probe.local_addr().context("reading the listen address")?;
    drop(probe);
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads {
        let socket = new_socket(addr)?;
        socket.set_reuseport(true).context("setting SO_REUSEPORT")?;
        socket.bind(addr).with_context(|| format!("binding {addr}"))?;
        let listener = socket.listen(LISTEN_BACKLOG).with_context(|| format!("listening on {addr}"))?;
        // Registered with the caller's runtime by `listen`; the worker registers it with its own.
        listeners.push(listener.into_std().context("handing the listener to a worker")?);
    }
    Ok(listeners)
}

fn new_socket(addr: SocketAddr) -> anyhow::Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .with_context(|| format!("creating a socket for {addr}"))?;
    // Lets a restarted proxy bind while connections of the old one linger in TIME_WAIT.
    socket.set_reuseaddr(true).context("setting SO_REUSEADDR")?;
    Ok(socket)
}

fn worker(
    idx: usize,
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    done: oneshot::Sender<()>,
) {
    upstream::set_worker(idx);
    runtime.block_on(async {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(worker = idx, %error, "worker cannot use its listener");
                return;
            }
        };
        // Every connection task holds a receiver, so `closed` resolves when the last one ends.
        let (open, tracker) = watch::channel(());
        accept_loop(listener, shared, shutdown.clone(), tracker).await;
        let grace = shutdown.borrow().unwrap_or_default();
        if tokio::time::timeout(grace, open.closed()).await.is_err() {
            tracing::warn!(worker = idx, ?grace, "requests still open after the grace period; dropping them");
        }
    });
    // Dropping the runtime ends what is left: open tunnels and idle upstream connections.
    drop(runtime);
    let _ = done.send(());
}

/// Ages every backend's idle connections once a second and closes the stale ones.
async fn sweep_loop(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        for backend in &shared.snapshot.load().backends {
            backend.state.pool.sweep();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: Shutdown, tracker: watch::Receiver<()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    let http = Arc::new(http);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let ip = HeaderValue::from_str(&peer.ip().to_string()).expect("an ip address is a valid header value");
        let conn = Arc::new(Conn { shared: Arc::clone(&shared), client: headers::Client { ip } });
        let http = Arc::clone(&http);
        let mut shutdown = shutdown.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            let _tracker = tracker;
            let service = hyper::service::service_fn(move |request| forward::handle(Arc::clone(&conn), request));
            let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "client connection closed with an error");
            }
        });
    }
}
