//! One request's life, as named phases: check, route, pick upstream, forward (connect and send,
//! with retries), log.
//!
//! Each phase is its own function so that retries and error pages each have one home:
//! [`headers::check_request`] refuses malformed heads and says which host the request is for,
//! [`route`] maps the host to a site, [`pick_upstream`] chooses a healthy routed backend not yet
//! tried, [`forward`] sends the request and decides from the [`ForwardError`] whether another
//! backend may be tried, and [`log_request`] records the outcome at `debug`.
//!
//! Retries need the request again, and hyper consumes it on send. Only requests without a body
//! can be replayed; for those, the head is cloned before every attempt but the last, and only
//! when the site has more than one routed backend, so the common single-try path copies nothing.

use crate::balance;
use crate::body::{ProxyBody, UpstreamBody};
use crate::error::{BadHead, ErrorKind, ForwardError};
use crate::headers::{self, RequestIds};
use crate::table::{InflightGuard, SiteRoute, Snapshot};
use crate::upstream;
use arc_swap::ArcSwap;
use http::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// At most this many backends are tried for one request.
const MAX_ATTEMPTS: usize = 3;

/// What every connection shares: the routing table and the request id generator.
pub(crate) struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub request_ids: RequestIds,
    /// Worker threads, each with its own share of every backend's connection pool.
    pub workers: usize,
}

impl Shared {
    pub fn new(workers: usize) -> Self {
        Self { snapshot: ArcSwap::from_pointee(Snapshot::default()), request_ids: RequestIds::new(), workers }
    }
}

/// One client connection's context.
pub(crate) struct Conn {
    pub shared: Arc<Shared>,
    pub client: headers::Client,
}

/// Serves one request from a client. Never fails: every error becomes an error page.
pub(crate) async fn handle(conn: Arc<Conn>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = conn.shared.request_ids.for_request(request.headers());
    let log = RequestLog::start(&request);
    let snapshot = conn.shared.snapshot.load_full();
    let (host, site, first) = match check_route_and_pick(&snapshot, &request) {
        Ok(found) => found,
        Err((error, page)) => {
            let response = error_page(&error, &page, &request_id);
            log_request(&log, None, response.status(), 0, Some(&error));
            return Ok(response);
        }
    };
    let outcome = forward(&conn, site, first, request, host, &request_id).await;
    let (response, error) = match outcome.result {
        Ok(response) => (response, None),
        Err(error) => (error_page(&error, "", &request_id), Some(error)),
    };
    log_request(&log, Some(site), response.status(), outcome.attempts, error.as_ref());
    Ok(response)
}

/// Phases check, route and pick, done together because the error pages name the host, which
/// borrows from the request that [`forward`] then consumes. Returns the `Host` to send on.
fn check_route_and_pick<'s>(
    snapshot: &'s Snapshot,
    request: &Request<Incoming>,
) -> Result<(HeaderValue, &'s SiteRoute, usize), (ForwardError, String)> {
    let host = headers::check_request(request.version(), request.method(), request.uri(), request.headers())
        .map_err(|bad| (ForwardError::new(ErrorKind::BadHead(bad)), String::new()))?;
    let Some(routing_host) = headers::routing_host(&host) else {
        return Err((ForwardError::new(ErrorKind::BadHead(BadHead::MissingHost)), String::new()));
    };
    let Some(site) = route(snapshot, &routing_host) else {
        return Err((ForwardError::new(ErrorKind::UnknownHost), routing_host.into_owned()));
    };
    match pick_upstream(site, &Tried::default()) {
        Some(idx) => Ok((host, site, idx)),
        None => Err((ForwardError::new(ErrorKind::NoHealthyBackend), routing_host.into_owned())),
    }
}

/// Phase 1: the site that serves `host`.
fn route<'s>(snapshot: &'s Snapshot, host: &str) -> Option<&'s SiteRoute> {
    snapshot.site_for(host)
}

/// The backends already tried for one request, by index into `SiteRoute::routed`.
#[derive(Debug, Default)]
struct Tried {
    idx: [usize; MAX_ATTEMPTS],
    len: usize,
}

impl Tried {
    fn contains(&self, idx: usize) -> bool {
        self.idx[..self.len].contains(&idx)
    }

    fn push(&mut self, idx: usize) {
        if self.len < MAX_ATTEMPTS {
            self.idx[self.len] = idx;
            self.len += 1;
        }
    }
}

/// Phase 2: a routed, healthy backend of `site` not in `tried`, by the site's balance policy.
fn pick_upstream(site: &SiteRoute, tried: &Tried) -> Option<usize> {
    let start = site.next.fetch_add(1, Relaxed);
    balance::pick(
        site.balance,
        start,
        site.routed.len(),
        |idx| site.routed[idx].is_healthy() && !tried.contains(idx),
        |idx| site.routed[idx].inflight(),
    )
}

/// What phase 3 did: the response or the last error, and how many backends it tried.
struct Outcome {
    result: Result<Response<ProxyBody>, ForwardError>,
    attempts: usize,
}

/// The parts of the client's request that every attempt sends.
struct Head {
    method: Method,
    path_and_query: PathAndQuery,
    headers: HeaderMap,
}

impl Head {
    fn to_request(&self, body: UpstreamBody) -> Request<UpstreamBody> {
        Head { method: self.method.clone(), path_and_query: self.path_and_query.clone(), headers: self.headers.clone() }
            .into_request(body)
    }

    /// The request in origin form (`/path?query`): the connection already knows the backend.
    fn into_request(self, body: UpstreamBody) -> Request<UpstreamBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = Uri::from(self.path_and_query);
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers;
        request
    }
}

/// Phase 3: sends the request to `first`, then to other backends while the failure allows it.
async fn forward(
    conn: &Conn,
    site: &SiteRoute,
    first: usize,
    request: Request<Incoming>,
    host: HeaderValue,
    request_id: &HeaderValue,
) -> Outcome {
    let (mut parts, body) = request.into_parts();
    let upgrade = headers::requested_upgrade(&parts.headers);
    let downstream_upgrade = match upgrade {
        Some(_) => parts.extensions.remove::<OnUpgrade>(),
        None => None,
    };
    headers::to_upstream(&mut parts.headers, &conn.client, request_id, upgrade.as_ref(), host);
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
    let replayable = body.is_end_stream();
    let (mut body, max_attempts) = match replayable {
        true => (Some(UpstreamBody::Empty), site.routed.len().clamp(1, MAX_ATTEMPTS)),
        false => (Some(UpstreamBody::Streamed(body)), 1),
    };
    let path_and_query = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut head = Some(Head { method: parts.method, path_and_query, headers: parts.headers });
    let mut downstream_upgrade = downstream_upgrade;

    let mut tried = Tried::default();
    let mut idx = first;
    loop {
        tried.push(idx);
        let guard = InflightGuard::new(Arc::clone(&site.routed[idx]));
        let last = tried.len >= max_attempts;
        let request = match last {
            true => {
                let body = body.take().expect("the body is sent on the last attempt only");
                head.take().expect("the head is moved on the last attempt only").into_request(body)
            }
            false => head.as_ref().expect("the head is kept until the last attempt").to_request(UpstreamBody::Empty),
        };
        let backend = guard.backend();
        let error = match upstream::send(&backend.pool, backend.addr, request).await {
            Ok((response, connection)) => {
                let result = into_downstream(response, connection, guard, downstream_upgrade.take(), request_id);
                return Outcome { result, attempts: tried.len };
            }
            Err(error) => error,
        };
        if error.kind == ErrorKind::ConnectFailed {
            // Passive health check: a refused connection is as telling as a failed probe, and
            // reacting now moves traffic away before the next probe is due.
            guard.backend().record(Err(error.to_string()), Instant::now());
        }
        drop(guard);
        // Only replayable requests get `max_attempts > 1`, so `last` covers streamed bodies.
        if last || !error.allows_retry(idempotent) {
            return Outcome { result: Err(error), attempts: tried.len };
        }
        idx = match pick_upstream(site, &tried) {
            Some(next) => next,
            None => return Outcome { result: Err(error), attempts: tried.len },
        };
    }
}

/// Turns the backend's response into the client's; a `101` starts a byte tunnel.
fn into_downstream(
    response: Response<Incoming>,
    connection: upstream::Sender,
    guard: InflightGuard,
    downstream_upgrade: Option<OnUpgrade>,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, ForwardError> {
    let (mut parts, body) = response.into_parts();
    if parts.status != StatusCode::SWITCHING_PROTOCOLS {
        headers::to_downstream(&mut parts.headers, false, request_id);
        return Ok(Response::from_parts(parts, ProxyBody::upstream(body, guard, connection)));
    }
    let (Some(downstream), Some(upstream)) = (downstream_upgrade, parts.extensions.remove::<OnUpgrade>()) else {
        return Err(ForwardError::new(ErrorKind::BadUpgrade));
    };
    // The connection now belongs to the tunnel; it never goes back to the pool.
    drop(connection);
    tokio::spawn(tunnel(downstream, upstream, guard));
    headers::to_downstream(&mut parts.headers, true, request_id);
    Ok(Response::from_parts(parts, ProxyBody::empty()))
}

/// Copies bytes both ways between an upgraded client and backend connection. The guard keeps
/// the backend's in-flight count up while the tunnel is open, so draining waits for it.
async fn tunnel(downstream: OnUpgrade, upstream: OnUpgrade, guard: InflightGuard) {
    let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(instance = %guard.backend().id, %error, "upgrade failed");
            return;
        }
    };
    let mut downstream = TokioIo::new(downstream);
    let mut upstream = TokioIo::new(upstream);
    if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(instance = %guard.backend().id, %error, "tunnel closed with an error");
    }
}

fn error_page(error: &ForwardError, host: &str, request_id: &HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(error.page(host)));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(headers::X_REQUEST_ID.clone(), request_id.clone());
    if let ErrorKind::BadHead(_) = error.kind {
        // The client and the proxy disagree about this request's framing or target, so
        // whatever follows it on the connection cannot be trusted either.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// What the log phase needs from the request, captured only when `debug` is on.
struct RequestLog {
    request: Option<(Method, Uri)>,
}

impl RequestLog {
    fn start(request: &Request<Incoming>) -> Self {
        let request =
            tracing::enabled!(tracing::Level::DEBUG).then(|| (request.method().clone(), request.uri().clone()));
        Self { request }
    }
}

/// Phase 4: one `debug` line per request, never higher.
fn log_request(
    log: &RequestLog,
    site: Option<&SiteRoute>,
    status: StatusCode,
    attempts: usize,
    error: Option<&ForwardError>,
) {
    let Some((method, uri)) = &log.request else {
        return;
    };
    tracing::debug!(
        %method,
        %uri,
        app = site.map(|s| s.app.as_str()),
        status = status.as_u16(),
        attempts,
        error = error.map(tracing::field::display),
        side = error.map(|e| tracing::field::debug(e.side)),
        "request"
    );
}
