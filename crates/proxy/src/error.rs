//! Errors: [`ProxyError`] for users of the admin client, [`ForwardError`] inside the data plane.
//!
//! A forwarding error records, like pingora's, which side is at fault and whether retrying the
//! request on another backend is safe, so the retry decision and the error page each have one
//! home instead of being re-derived at every call site.

use http::StatusCode;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a call to the proxy's admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot reach proxy admin socket {}: {source}", socket.display())]
    Connect { socket: PathBuf, source: std::io::Error },
    #[error("proxy admin socket {}: {source}", socket.display())]
    Http { socket: PathBuf, source: hyper::Error },
    #[error("proxy admin socket {}: no answer within {timeout:?}", socket.display())]
    Timeout { socket: PathBuf, timeout: Duration },
    #[error("proxy kept its routes: {message}")]
    StaleGeneration { message: String },
    #[error("proxy rejected {what}: {status}: {message}")]
    Rejected { what: &'static str, status: u16, message: String },
    #[error("proxy answered {what} with bad json: {source}")]
    Decode { what: &'static str, source: serde_json::Error },
}

/// Which party a forwarding error is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The client: a bad or unroutable request.
    Downstream,
    /// The backend: refused, reset or broken.
    Upstream,
    /// Drover itself: nothing healthy to send to, or a bug.
    Internal,
}

/// Whether the failed attempt may be repeated on another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Nothing reached the backend; any request whose body we still hold may be retried.
    Safe,
    /// The backend may have seen the request; only idempotent requests may be retried.
    IfIdempotent,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The request head is malformed or ambiguous; it is refused before routing.
    BadHead(BadHead),
    UnknownHost,
    NoHealthyBackend,
    ConnectFailed,
    UpstreamBroken,
    BadUpgrade,
}

/// What is wrong with a request head the proxy refuses (see [`crate::headers::check_request`]).
/// Each of these is a way for the proxy and the backend to read one request differently, so
/// the proxy answers instead of guessing, and closes the connection after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHead {
    /// HTTP/1.1 without a `Host` header, or no host to route by at all.
    MissingHost,
    /// More than one `Host` header.
    DuplicateHost,
    /// A `Host` that is not `host[:port]`.
    InvalidHost,
    /// An absolute-form target with userinfo or a scheme other than http(s).
    InvalidTarget,
    /// `chunked` applied more than once.
    ChunkedTwice,
    /// A transfer coding other than `chunked`: the proxy would pass on a body it cannot decode.
    UnsupportedCoding,
    /// `CONNECT`: the proxy does not open tunnels to arbitrary authorities.
    Connect,
}

impl BadHead {
    fn status(self) -> StatusCode {
        match self {
            BadHead::UnsupportedCoding | BadHead::Connect => StatusCode::NOT_IMPLEMENTED,
            BadHead::MissingHost
            | BadHead::DuplicateHost
            | BadHead::InvalidHost
            | BadHead::InvalidTarget
            | BadHead::ChunkedTwice => StatusCode::BAD_REQUEST,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            BadHead::MissingHost => "missing host header",
            BadHead::DuplicateHost => "more than one host header",
            BadHead::InvalidHost => "host header is not a valid host[:port]",
            BadHead::InvalidTarget => "request target is not an http uri without userinfo",
            BadHead::ChunkedTwice => "chunked transfer coding applied more than once",
            BadHead::UnsupportedCoding => "transfer coding other than chunked is not supported",
            BadHead::Connect => "connect is not supported",
        }
    }
}

/// A failure while forwarding one request.
#[derive(Debug)]
pub(crate) struct ForwardError {
    pub kind: ErrorKind,
    pub side: Side,
    pub retry: Retry,
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ForwardError {
    pub fn new(kind: ErrorKind) -> Self {
        let (side, retry) = match kind {
            ErrorKind::BadHead(_) | ErrorKind::UnknownHost => (Side::Downstream, Retry::Never),
            ErrorKind::NoHealthyBackend => (Side::Internal, Retry::Never),
            ErrorKind::ConnectFailed => (Side::Upstream, Retry::Safe),
            ErrorKind::UpstreamBroken => (Side::Upstream, Retry::IfIdempotent),
            ErrorKind::BadUpgrade => (Side::Upstream, Retry::Never),
        };
        Self { kind, side, retry, cause: None }
    }

    pub fn because(mut self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Whether this failure allows another attempt for a request that can be replayed.
    pub fn allows_retry(&self, idempotent: bool) -> bool {
        match self.retry {
            Retry::Safe => true,
            Retry::IfIdempotent => idempotent,
            Retry::Never => false,
        }
    }

    /// The status code of the error page.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadHead(bad) => bad.status(),
            ErrorKind::UnknownHost => StatusCode::NOT_FOUND,
            ErrorKind::NoHealthyBackend => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ConnectFailed | ErrorKind::UpstreamBroken | ErrorKind::BadUpgrade => StatusCode::BAD_GATEWAY,
        }
    }

    /// The error page's text; `host` is the normalized host the request asked for.
    pub fn page(&self, host: &str) -> String {
        match self.kind {
            ErrorKind::BadHead(bad) => format!("{}\n", bad.describe()),
            ErrorKind::UnknownHost => format!("no app for host {host}\n"),
            ErrorKind::NoHealthyBackend => format!("no healthy instance for {host}\n"),
            ErrorKind::ConnectFailed | ErrorKind::UpstreamBroken | ErrorKind::BadUpgrade => {
                "upstream error\n".to_owned()
            }
        }
    }
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::BadHead(bad) => bad.describe(),
            ErrorKind::UnknownHost => "no site for host",
            ErrorKind::NoHealthyBackend => "no healthy backend",
            ErrorKind::ConnectFailed => "cannot connect to backend",
            ErrorKind::UpstreamBroken => "backend failed before answering",
            ErrorKind::BadUpgrade => "backend switched protocols unasked",
        };
        f.write_str(what)?;
        let mut cause = self.cause.as_deref().map(|c| c as &dyn std::error::Error);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_side_retry_and_status() {
        let table = [
            (ErrorKind::BadHead(BadHead::MissingHost), Side::Downstream, false, false, 400),
            (ErrorKind::BadHead(BadHead::UnsupportedCoding), Side::Downstream, false, false, 501),
            (ErrorKind::UnknownHost, Side::Downstream, false, false, 404),
            (ErrorKind::NoHealthyBackend, Side::Internal, false, false, 503),
            (ErrorKind::ConnectFailed, Side::Upstream, true, true, 502),
            (ErrorKind::UpstreamBroken, Side::Upstream, false, true, 502),
            (ErrorKind::BadUpgrade, Side::Upstream, false, false, 502),
        ];
        for (kind, side, retry_post, retry_get, status) in table {
            let err = ForwardError::new(kind);
            assert_eq!(err.side, side, "{kind:?}");
            assert_eq!(err.allows_retry(false), retry_post, "{kind:?}");
            assert_eq!(err.allows_retry(true), retry_get, "{kind:?}");
            assert_eq!(err.status().as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn display_walks_the_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = ForwardError::new(ErrorKind::ConnectFailed).because(io);
        assert_eq!(err.to_string(), "cannot connect to backend: connection refused");
        assert_eq!(ForwardError::new(ErrorKind::UnknownHost).page("a.localhost"), "no app for host a.localhost\n");
    }
}
