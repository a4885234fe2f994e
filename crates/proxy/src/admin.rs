//! The admin API on a unix socket, and the client the control plane uses to call it.
//!
//! Two calls, HTTP/1.1 with JSON bodies:
//! - `PUT /routes` with a [`RouteTable`]: refused with 409 if its generation is older than the
//!   one in force; otherwise checked by [`table::validate`], which takes out only what cannot be
//!   served (a host another site has, an empty host, a bad backend) and never the whole table.
//!   The rest is persisted to the state file, then swapped in, and the answer is 200 with
//!   `{"generation": N, "rejected": [{"app": "x", "reason": "..."}]}` naming what was left out.
//!   Only a body that is not a routing table at all gets a 400.
//! - `GET /status`: a [`ProxyStatus`] with health and counters of every backend in the table.
//!
//! Updates are serialized by one async mutex on this side only; the request path never sees it.
//! Persisting before swapping means the table on disk is never older than the one served, so a
//! restart cannot roll routing back.

use crate::checker::Checkers;
use crate::error::ProxyError;
use crate::forward::Shared;
use crate::state_file;
use crate::table::{self, NewBackends, Rejection, Snapshot};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use model::{ProxyStatus, RouteTable};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Mutex};

/// Largest routing table accepted, as JSON.
const MAX_TABLE_BYTES: usize = 64 << 20;
/// How long the client waits for the proxy to answer one call.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin side: applies tables and reports status.
pub(crate) struct Control {
    shared: Arc<Shared>,
    state_file: PathBuf,
    checkers: Mutex<Checkers>,
}

impl Control {
    pub fn new(shared: Arc<Shared>, state_file: PathBuf) -> Self {
        Self { shared, state_file, checkers: Mutex::new(Checkers::default()) }
    }

    /// Serves the table saved in the state file, if any. Its backends are assumed healthy.
    pub async fn restore(&self) -> anyhow::Result<()> {
        let path = self.state_file.clone();
        let loaded = tokio::task::spawn_blocking(move || state_file::load(&path)).await?;
        let table = match loaded {
            Ok(Some(table)) => table,
            Ok(None) => return Ok(()),
            Err(error) => {
                // Refusing to start would leave every app down until an operator steps in; an
                // empty table is fixed by the control plane's next update.
                tracing::error!(%error, "cannot restore the routing table; starting empty");
                return Ok(());
            }
        };
        let mut checkers = self.checkers.lock().await;
        // Only accepted tables are saved, so this refuses nothing unless the file was edited.
        let table::Accepted { table, rejected } = table::validate(table, &self.shared.snapshot.load());
        for rejection in &rejected {
            tracing::warn!(app = %rejection.app, reason = %rejection.reason, "saved routing table entry refused");
        }
        self.swap_in(&table, &mut checkers, NewBackends::AssumedHealthy);
        tracing::info!(generation = table.generation, sites = table.sites.len(), "routing table restored");
        Ok(())
    }

    fn swap_in(&self, table: &RouteTable, checkers: &mut Checkers, new_backends: NewBackends) {
        let previous = self.shared.snapshot.load();
        let snapshot = Arc::new(Snapshot::build(table, &previous, new_backends, self.shared.workers, Instant::now()));
        checkers.sync(&snapshot);
        self.shared.snapshot.store(snapshot);
    }

    async fn put_routes(&self, body: Incoming) -> Response<Full<Bytes>> {
        let bytes = match Limited::new(body, MAX_TABLE_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return text(StatusCode::BAD_REQUEST, format!("reading the table: {error}")),
        };
        let table: RouteTable = match serde_json::from_slice(&bytes) {
            Ok(table) => table,
            Err(error) => return text(StatusCode::BAD_REQUEST, format!("not a routing table: {error}")),
        };
        let mut checkers = self.checkers.lock().await;
        let current = self.shared.snapshot.load();
        if table.generation < current.generation {
            return text(
                StatusCode::CONFLICT,
                format!("generation {} is older than generation {} in force", table.generation, current.generation),
            );
        }
        // Contested hosts stay with the site serving them now, so validation needs the snapshot
        // in force, and no other update may swap one in meanwhile: `checkers` is held.
        let table::Accepted { table, rejected } = table::validate(table, &current);
        drop(current);
        let path = self.state_file.clone();
        let saved = {
            let table = table.clone();
            tokio::task::spawn_blocking(move || state_file::save(&path, &table)).await
        };
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("saving the table: {error}")),
            Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("saving the table: {error}")),
        }
        self.swap_in(&table, &mut checkers, NewBackends::Starting);
        tracing::info!(
            generation = table.generation,
            sites = table.sites.len(),
            rejected = rejected.len(),
            "routing table updated"
        );
        for rejection in &rejected {
            tracing::warn!(app = %rejection.app, reason = %rejection.reason, "routing table entry refused");
        }
        json(&RoutesAnswer { generation: table.generation, rejected })
    }

    fn status(&self) -> ProxyStatus {
        let snapshot = self.shared.snapshot.load();
        ProxyStatus {
            generation: snapshot.generation,
            backends: snapshot.backends.iter().map(|b| b.state.status()).collect(),
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match (request.method(), request.uri().path()) {
            (&Method::PUT, "/routes") => self.put_routes(request.into_body()).await,
            (&Method::GET, "/status") => json(&self.status()),
            (_, "/routes" | "/status") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".to_owned()),
            (_, path) => text(StatusCode::NOT_FOUND, format!("no admin endpoint {path}")),
        }
    }
}

/// The answer to `PUT /routes`: the generation now in force and what of it was left out.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RoutesAnswer {
    generation: u64,
    #[serde(default)]
    rejected: Vec<Rejection>,
}

fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).expect("admin answers always serialize");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// Binds the admin socket with mode 0600, replacing a stale socket file but never a live one.
pub(crate) async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context as _;
    use std::os::unix::fs::PermissionsExt as _;
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("{}: another proxy is listening on this admin socket", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale admin socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making admin socket {} private", path.display()))?;
    Ok(listener)
}

/// Accepts admin connections until `shutdown` fires.
pub(crate) async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<Option<Duration>>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let control = Arc::clone(&control);
                async move { Ok::<_, Infallible>(control.handle(request).await) }
            });
            if let Err(error) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(%error, "admin connection failed");
            }
        });
    }
}

/// Calls the admin API of a running proxy.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// Replaces the proxy's routing table. The proxy serves all of it but the parts it refused,
    /// which it returns: an empty list means the whole table is in force. Fails with
    /// [`ProxyError::StaleGeneration`] if the proxy already serves a newer generation.
    pub async fn put_routes(&self, table: &RouteTable) -> Result<Vec<Rejection>, ProxyError> {
        let body = serde_json::to_vec(table).expect("a route table always serializes");
        let (status, body) = self.call(Method::PUT, "/routes", Bytes::from(body)).await?;
        match status {
            s if s.is_success() => serde_json::from_slice::<RoutesAnswer>(&body)
                .map(|answer| answer.rejected)
                .map_err(|source| ProxyError::Decode { what: "routes", source }),
            StatusCode::CONFLICT => Err(ProxyError::StaleGeneration { message: lossy(&body) }),
            s => Err(ProxyError::Rejected { what: "routes", status: s.as_u16(), message: lossy(&body) }),
        }
    }

    /// The proxy's view of its backends.
    pub async fn status(&self) -> Result<ProxyStatus, ProxyError> {
        let (status, body) = self.call(Method::GET, "/status", Bytes::new()).await?;
        if !status.is_success() {
            return Err(ProxyError::Rejected { what: "status", status: status.as_u16(), message: lossy(&body) });
        }
        serde_json::from_slice(&body).map_err(|source| ProxyError::Decode { what: "status", source })
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes), ProxyError> {
        match tokio::time::timeout(CLIENT_TIMEOUT, self.call_untimed(method, path, body)).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::Timeout { socket: self.socket.clone(), timeout: CLIENT_TIMEOUT }),
        }
    }

    async fn call_untimed(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes), ProxyError> {
        let http_error = |source| ProxyError::Http { socket: self.socket.clone(), source };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ProxyError::Connect { socket: self.socket.clone(), source })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http_error)?;
        // Ends when the exchange is over and `sender` is dropped.
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "drover-proxy")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("method, path and fixed headers make a valid request");
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(http_error)?.to_bytes();
        Ok((status, body))
    }
}

fn lossy(body: &Bytes) -> String {
    String::from_utf8_lossy(body).trim().to_owned()
}
