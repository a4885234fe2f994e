//! Keep-alive connections to backends: one small pool per backend, and sending a request.
//!
//! Each backend's [`BackendState`](crate::table::BackendState) owns its pool, so the request
//! path finds idle connections without hashing a pool key, and a backend that leaves the table
//! takes its connections with it. A connection is checked out for one request and returned
//! when the response body has been read to the end; a response abandoned mid-body closes its
//! connection instead, since the rest of the body would still be on the wire.
//!
//! Profiling showed hyper-util's legacy client spending about a fifth of the proxy's user time
//! per request on pool-key hashing, a spawned task per response to return the connection, and a
//! checkout/connect race; this pool does the same job without any of them.
//!
//! Idle connections are closed after [`IDLE_TICKS`] sweeps (about a second each), below the
//! 5 s keep-alive timeout common in app servers, so that a backend rarely closes a connection
//! just as the proxy reuses it. A connection the backend closed is noticed by its connection
//! task and skipped at checkout.

use crate::body::UpstreamBody;
use crate::error::{ErrorKind, ForwardError};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;

/// A backend that does not accept a connection within this time counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle connections kept per backend and worker; enough for the concurrency of one busy site.
const MAX_IDLE: usize = 1024;
/// Sweeps an idle connection survives.
const IDLE_TICKS: u32 = 4;

pub(crate) type Sender = SendRequest<UpstreamBody>;

struct Idle {
    sender: Sender,
    since: u32,
}

thread_local! {
    /// The worker this thread serves requests for; 0 outside worker threads.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `idx`, so it uses its own share of every pool.
pub(crate) fn set_worker(idx: usize) {
    WORKER.with(|worker| worker.set(idx));
}

/// One worker's idle connections, most recently used last. Aligned to a cache line so that
/// workers locking their own shares do not contend on a shared line.
#[derive(Default)]
#[repr(align(64))]
struct Share(Mutex<Vec<Idle>>);

impl Share {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One backend's idle keep-alive connections, in one share per worker: a connection is driven
/// by the runtime of the worker that opened it, so it is only reused by that worker, and the
/// lock on a share is only ever taken by its worker (and the sweeper, once a second).
pub(crate) struct Pool {
    shares: Box<[Share]>,
    /// Sweeps so far; the coarse clock idle connections are aged by.
    ticks: AtomicU32,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.idle_count()).finish()
    }
}

impl Pool {
    pub fn new(workers: usize) -> Self {
        Self { shares: (0..workers.max(1)).map(|_| Share::default()).collect(), ticks: AtomicU32::new(0) }
    }

    fn share(&self) -> &Share {
        &self.shares[WORKER.with(Cell::get) % self.shares.len()]
    }

    /// The most recently used connection that is still open.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.share().lock();
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response was read to the end.
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let since = self.ticks.load(Relaxed);
        let mut idle = self.share().lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, since });
        }
    }

    /// Advances the pool's clock and closes connections idle for too long or already closed.
    pub fn sweep(&self) {
        let now = self.ticks.fetch_add(1, Relaxed).wrapping_add(1);
        for share in &self.shares {
            share.lock().retain(|entry| !entry.sender.is_closed() && now.wrapping_sub(entry.since) < IDLE_TICKS);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.shares.iter().map(|share| share.lock().len()).sum()
    }
}

/// Sends `request` to the backend at `addr` over a pooled connection, or a new one if none is
/// idle. Returns the response and the connection, to go back to the pool when the response
/// body is done.
pub(crate) async fn send(
    pool: &Pool,
    addr: SocketAddr,
    mut request: Request<UpstreamBody>,
) -> Result<(Response<Incoming>, Sender), ForwardError> {
    loop {
        let (mut sender, reused) = match pool.take() {
            Some(sender) => (sender, true),
            None => (connect(addr).await?, false),
        };
        // A connection just returned may not have told hyper it is ready for the next request.
        if !sender.is_ready() && sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, sender)),
            Err(mut error) => match error.take_message() {
                // A reused connection closed before the request was written: nothing reached
                // the backend, so try the next connection. Each retry consumes a pooled
                // connection, so this ends at a fresh one at the latest.
                Some(unsent) if reused => request = unsent,
                Some(_) => return Err(ForwardError::new(ErrorKind::ConnectFailed).because(error.into_error())),
                None => return Err(ForwardError::new(ErrorKind::UpstreamBroken).because(error.into_error())),
            },
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<Sender, ForwardError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ForwardError::new(ErrorKind::ConnectFailed).because(error)),
        Err(_) => {
            let error =
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {CONNECT_TIMEOUT:?}"));
            return Err(ForwardError::new(ErrorKind::ConnectFailed).because(error));
        }
    };
    // Requests and responses are written whole; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ForwardError::new(ErrorKind::ConnectFailed).because(error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "backend connection closed with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A backend that answers every request on a connection with a fixed response, and counts
    /// the connections it accepted.
    async fn keep_alive_backend() -> (SocketAddr, std::sync::Arc<AtomicU32>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(AtomicU32::new(0));
        let counter = std::sync::Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<UpstreamBody> {
        let mut request = Request::new(UpstreamBody::Empty);
        request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("test"));
        request
    }

    async fn read_to_end(response: Response<Incoming>) -> bool {
        use http_body_util::BodyExt;
        use hyper::body::Body as _;
        let mut body = response.into_body();
        while body.frame().await.is_some() {}
        body.is_end_stream()
    }

    #[tokio::test]
    async fn reuses_a_returned_connection() {
        let (addr, accepted) = keep_alive_backend().await;
        let pool = Pool::new(1);
        for _ in 0..5 {
            let (response, sender) = send(&pool, addr, get()).await.unwrap();
            assert!(read_to_end(response).await);
            pool.put(sender);
        }
        assert_eq!(accepted.load(Relaxed), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn sweeps_close_idle_connections() {
        let (addr, accepted) = keep_alive_backend().await;
        let pool = Pool::new(1);
        let (response, sender) = send(&pool, addr, get()).await.unwrap();
        read_to_end(response).await;
        pool.put(sender);
        for _ in 0..IDLE_TICKS {
            pool.sweep();
        }
        assert_eq!(pool.idle_count(), 0);
        let (response, _sender) = send(&pool, addr, get()).await.unwrap();
        read_to_end(response).await;
        assert_eq!(accepted.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_failures() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = send(&Pool::new(1), addr, get()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::ConnectFailed);
    }
}
