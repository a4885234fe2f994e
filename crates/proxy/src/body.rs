//! Body types for both directions, as plain enums so that no body is boxed per request.
//!
//! Bodies stream: frames are passed on as they arrive, never collected. The response body
//! carries the backend's [`InflightGuard`], so a request counts as in flight until its last byte
//! has been handed to the client (or the client went away), which is what draining waits for.
//! It also carries the upstream connection, which goes back to the backend's pool when the body
//! was read to the end, and is closed otherwise.

use crate::table::InflightGuard;
use crate::upstream::Sender;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The body sent upstream.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// The client's body, streamed through.
    Streamed(Incoming),
    /// No body: the client sent none, and this request can be replayed on another backend.
    Empty,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Streamed(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Streamed(body) => body.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Streamed(body) => body.size_hint(),
            UpstreamBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The body sent to the client.
#[derive(Debug)]
pub(crate) enum ProxyBody {
    /// A backend's response, streamed through, counted against the backend until done.
    Upstream {
        body: Incoming,
        guard: InflightGuard,
        /// The connection the response arrives on, until it is returned or closed.
        connection: Option<Sender>,
        /// Whether the backend's body has been read to the end.
        finished: bool,
    },
    /// A page made by the proxy itself (errors), or nothing.
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Local(None)
    }

    pub fn text(text: String) -> Self {
        ProxyBody::Local(Some(Bytes::from(text)))
    }

    pub fn upstream(body: Incoming, guard: InflightGuard, connection: Sender) -> Self {
        ProxyBody::Upstream { body, guard, connection: Some(connection), finished: false }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        let ProxyBody::Upstream { body, guard, connection, finished } = self else { return };
        if !*finished && !body.is_end_stream() {
            return;
        }
        let Some(mut connection) = connection.take() else { return };
        if connection.is_ready() {
            guard.backend().pool.put(connection);
            return;
        }
        // Usually hyper has marked the connection ready by now. If not (the client's request
        // body is still being sent, say), it joins the pool only once it is: a request must
        // never wait behind another one's upload.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let backend = Arc::clone(guard.backend());
        runtime.spawn(async move {
            if connection.ready().await.is_ok() {
                backend.pool.put(connection);
            }
        });
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream { body, finished, .. } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                // hyper stops polling once `is_end_stream` holds, so both ends are watched.
                if matches!(frame, Poll::Ready(None)) || body.is_end_stream() {
                    *finished = true;
                }
                frame
            }
            ProxyBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Local(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
