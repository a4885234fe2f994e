//! Test fixtures: small hyper backends on 127.0.0.1:0, a proxy started in-process with its own
//! temp dir, an HTTP client, routing-table builders, and a deadline-bounded `wait_until`.

#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use model::{AppName, Backend, BackendStatus, Balance, HealthSpec, InstanceId, RouteTable, Site};
use proxy::{AdminClient, ProxyHandle, ProxyOptions};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Polls `check` until it holds. The deadline only turns a hang into a clear failure.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a test can see and steer in a backend.
#[derive(Debug)]
pub struct Control {
    pub healthy: AtomicBool,
    /// Requests served, health checks excluded.
    pub hits: AtomicU64,
    /// `/slow` requests wait for a permit here.
    pub gate: Semaphore,
    /// The body of the next `/stream` response.
    pub stream: Mutex<Option<mpsc::Receiver<Bytes>>>,
}

/// A small HTTP backend. Paths:
/// - `/health`: 200 or 503 after `control.healthy`;
/// - `/slow`: answers after the test adds a permit to `control.gate`;
/// - `/echo`: streams the request body back;
/// - `/stream`: streams what the test sends into `control.stream`;
/// - `/head`: the request as received: request line, every header (sorted), then the body;
/// - anything else: its name, with `x-seen-*` headers echoing what it received.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub control: Arc<Control>,
    task: Option<JoinHandle<()>>,
}

type BackendBody = BoxBody<Bytes, hyper::Error>;

impl TestBackend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(Control {
            healthy: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            gate: Semaphore::new(0),
            stream: Mutex::new(None),
        });
        let name_for_task = name.to_owned();
        let control_for_task = Arc::clone(&control);
        let task = tokio::spawn(async move {
            // Dropping this set (when the task is aborted) drops every connection: a crash.
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let name = name_for_task.clone();
                let control = Arc::clone(&control_for_task);
                connections.spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| respond(name.clone(), Arc::clone(&control), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self { name: name.to_owned(), addr, control, task: Some(task) }
    }

    /// Kills the backend like `kill -9`: the port closes and open connections drop.
    pub async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn hits(&self) -> u64 {
        self.control.hits.load(SeqCst)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn respond(
    name: String,
    control: Arc<Control>,
    request: Request<Incoming>,
) -> Result<Response<BackendBody>, Infallible> {
    let text = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
        *response.status_mut() = status;
        response
    };
    if request.uri().path() == "/health" {
        return Ok(match control.healthy.load(SeqCst) {
            true => text(StatusCode::OK, "ok".into()),
            false => text(StatusCode::SERVICE_UNAVAILABLE, "sick".into()),
        });
    }
    control.hits.fetch_add(1, SeqCst);
    match request.uri().path() {
        "/slow" => {
            control.gate.acquire().await.unwrap().forget();
            Ok(text(StatusCode::OK, name))
        }
        "/echo" => Ok(Response::new(request.into_body().boxed())),
        "/head" => {
            let (parts, body) = request.into_parts();
            let mut lines: Vec<String> = parts
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
                .collect();
            lines.sort();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let head = format!("{} {} {:?}\n{}\n\n", parts.method, parts.uri, parts.version, lines.join("\n"));
            Ok(text(StatusCode::OK, head + &String::from_utf8_lossy(&body)))
        }
        "/stream" => {
            let receiver = control.stream.lock().unwrap().take().expect("the test set up a stream");
            let body = ChannelBody(receiver).map_err(|never| match never {}).boxed();
            Ok(Response::new(body))
        }
        _ => {
            let mut response = text(StatusCode::OK, name);
            for (seen, header) in [
                ("x-seen-for", "x-forwarded-for"),
                ("x-seen-proto", "x-forwarded-proto"),
                ("x-seen-host", "x-forwarded-host"),
                ("x-seen-request-id", "x-request-id"),
                ("x-seen-connection", "connection"),
                ("x-seen-secret", "x-hop-secret"),
            ] {
                if let Some(value) = request.headers().get(header) {
                    response.headers_mut().insert(seen, value.clone());
                }
            }
            Ok(response)
        }
    }
}

/// A body fed chunk by chunk through a channel.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// Request bodies the test client sends.
pub enum TestBody {
    Full(Option<Bytes>),
    Channel(ChannelBody),
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            TestBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            TestBody::Channel(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, TestBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            TestBody::Channel(_) => SizeHint::default(),
        }
    }
}

pub type Client = hyper_util::client::legacy::Client<HttpConnector, TestBody>;

pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// A response read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends a request through `proxy` for `host` and reads the whole answer.
pub async fn send(
    client: &Client,
    proxy: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Result<Answer, String> {
    let mut request = Request::builder().method(method).uri(format!("http://{proxy}{path}")).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.request(request.body(body).unwrap()).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
}

pub async fn get(client: &Client, proxy: SocketAddr, host: &str, path: &str) -> Result<Answer, String> {
    send(client, proxy, "GET", host, path, &[], TestBody::Full(None)).await
}

/// A proxy running in this test's runtime, with its own temp dir for socket and state file.
pub struct TestProxy {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin: AdminClient,
    handle: Option<ProxyHandle>,
}

impl TestProxy {
    pub async fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    async fn start_in(dir: tempfile::TempDir) -> Self {
        let opts = ProxyOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_socket: dir.path().join("admin.sock"),
            state_file: dir.path().join("routes.json"),
            threads: 0,
        };
        let handle = proxy::start(&opts).await.unwrap();
        let admin = AdminClient::new(opts.admin_socket.clone());
        Self { dir, addr: handle.local_addr(), admin, handle: Some(handle) }
    }

    /// Shuts the proxy down and starts a new one on the same state file.
    pub async fn restart(mut self) -> Self {
        self.shutdown().await;
        Self::start_in(self.dir).await
    }

    pub async fn shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown(Duration::from_secs(10)).await;
        }
    }

    pub fn take_handle(&mut self) -> ProxyHandle {
        self.handle.take().unwrap()
    }

    /// Puts a table the proxy must accept whole.
    pub async fn put(&self, table: &RouteTable) {
        let rejected = self.admin.put_routes(table).await.unwrap();
        assert!(rejected.is_empty(), "the proxy refused part of the table: {rejected:?}");
    }

    /// The table in the state file.
    pub fn saved_table(&self) -> RouteTable {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("routes.json")).unwrap()).unwrap()
    }

    pub async fn backend_status(&self, id: &str) -> BackendStatus {
        let status = self.admin.status().await.unwrap();
        status.backends.into_iter().find(|b| b.id.as_str() == id).unwrap_or_else(|| panic!("no backend {id}"))
    }

    /// Waits until the proxy's health verdict on backend `id` is `healthy`.
    pub async fn wait_health(&self, id: &str, healthy: bool) {
        wait_until(&format!("{id} healthy={healthy}"), || async { self.backend_status(id).await.healthy == healthy })
            .await;
    }

    pub async fn wait_inflight(&self, id: &str, inflight: u64) {
        wait_until(&format!("{id} inflight={inflight}"), || async {
            self.backend_status(id).await.inflight == inflight
        })
        .await;
    }
}

/// Health checks every 10 ms on `/health`, flipping on one result: fast tests.
pub fn quick_health() -> HealthSpec {
    HealthSpec {
        path: Some("/health".into()),
        interval: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        start_period: Duration::ZERO,
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        liveness_threshold: 10,
    }
}

/// One probe at start, then none for the rest of the test: only passive checks can demote.
pub fn probe_once() -> HealthSpec {
    HealthSpec { interval: Duration::from_secs(3600), ..quick_health() }
}

pub fn backend(id: &str, addr: SocketAddr, routed: bool, health: HealthSpec) -> Backend {
    Backend { id: InstanceId::parse(id).unwrap(), addr, routed, health }
}

pub fn site(app: &str, hosts: &[&str], balance: Balance, backends: Vec<Backend>) -> Site {
    Site { app: AppName::parse(app).unwrap(), hosts: hosts.iter().map(|h| h.to_string()).collect(), balance, backends }
}

pub fn table(generation: u64, sites: Vec<Site>) -> RouteTable {
    RouteTable { generation, sites }
}
