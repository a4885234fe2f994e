//! The process: runtime, listeners, accept loops and graceful shutdown.
//!
//! [`run`] is what `drover proxy` calls: it builds the runtime, [`start`]s the proxy and waits
//! for SIGTERM or SIGINT. [`start`] is also how tests and embedders run a proxy inside their own
//! runtime. Shutdown stops accepting at once, lets open connections finish the request they are
//! serving (keep-alive connections close after it), and gives up after a grace period.

use crate::admin::{self, Control};
use crate::forward::{self, Conn, Shared};
use crate::headers;
use crate::ProxyOptions;
use anyhow::Context as _;
use http::HeaderValue;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A client that has not sent a full request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the proxy in the foreground until SIGTERM or SIGINT, then drains and returns.
pub fn run(opts: ProxyOptions) -> anyhow::Result<()> {
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("drover-proxy")
        .enable_all()
        .build()
        .context("building the proxy runtime")?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        let proxy = start(&opts).await?;
        tracing::info!(listen = %proxy.local_addr(), admin = %opts.admin_socket.display(), threads, "proxy started");
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
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProxyHandle {
    /// The address the proxy accepts HTTP on (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, waits up to `grace` for open requests to finish, removes the admin socket.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Every connection task holds a receiver, so this resolves when the last one is done.
        if tokio::time::timeout(grace, self.shutdown.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "requests still open after the grace period; dropping them"
            );
        }
        let _ = std::fs::remove_file(&self.admin_socket);
    }
}

/// Binds the listeners, restores the saved table and starts serving on the current runtime.
pub async fn start(opts: &ProxyOptions) -> anyhow::Result<ProxyHandle> {
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding {}", opts.listen))?;
    let local_addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let admin_listener = admin::bind(&opts.admin_socket).await?;
    let shared = Arc::new(Shared::new());
    let control = Arc::new(Control::new(Arc::clone(&shared), opts.state_file.clone()));
    control.restore().await?;
    let (shutdown, watcher) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(admin::serve(admin_listener, control, watcher.clone())),
        tokio::spawn(accept_loop(listener, shared, watcher)),
    ];
    Ok(ProxyHandle {
        local_addr,
        admin_socket: opts.admin_socket.clone(),
        shutdown,
        tasks,
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
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
        let ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an ip address is a valid header value");
        let conn = Arc::new(Conn {
            shared: Arc::clone(&shared),
            client: headers::Client { ip },
        });
        let http = Arc::clone(&http);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                forward::handle(Arc::clone(&conn), request)
            });
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
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
