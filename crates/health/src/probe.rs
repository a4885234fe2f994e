//! Probes: one HTTP GET or one TCP connect against an instance, bounded by a timeout.
//!
//! Each probe opens a fresh connection and closes it, like a client arriving for the first time
//! would, so a wedged accept loop is caught as well as a failing handler. Results are reduced to
//! `Ok(())` or a short reason meant for an operator (`BackendStatus::last_error`).

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// GETs `path` on `addr` with `Host: host`; 2xx and 3xx answers pass.
pub async fn http_probe(addr: SocketAddr, path: &str, host: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, http_get_status(addr, path, host)).await {
        Ok(Ok(status)) if status.is_success() || status.is_redirection() => Ok(()),
        Ok(Ok(status)) => Err(format!("GET {path} answered {status}")),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!("GET {path} timed out after {timeout:?}")),
    }
}

async fn http_get_status(addr: SocketAddr, path: &str, host: &str) -> Result<hyper::StatusCode, String> {
    let stream = connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake with {addr}: {e}"))?;
    // The connection task ends by itself: the request says `Connection: close`, and dropping
    // `sender` and the response closes it otherwise.
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(HOST, host)
        .header(USER_AGENT, "drover-health")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad health check request for {path:?}: {e}"))?;
    let response = sender.send_request(request).await.map_err(|e| format!("GET {path}: {e}"))?;
    Ok(response.status())
}

/// Passes if a TCP connection to `addr` opens within `timeout`.
pub async fn tcp_probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, connect(addr)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!("connect to {addr} timed out after {timeout:?}")),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    // Probes are tiny request/response exchanges; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot HTTP server that answers every connection with `response` and records the
    /// request head it received.
    async fn canned_server(response: &'static str) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (heads, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf[len..]).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    len += n;
                }
                let _ = heads.send(String::from_utf8_lossy(&buf[..len]).into_owned()).await;
                stream.write_all(response.as_bytes()).await.unwrap();
            }
        });
        (addr, rx)
    }

    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_3xx_and_sends_host() {
        for response in [
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ] {
            let (addr, mut heads) = canned_server(response).await;
            assert_eq!(http_probe(addr, "/up", "hello.localhost", SECOND).await, Ok(()), "{response}");
            let head = heads.recv().await.unwrap().to_lowercase();
            assert!(head.starts_with("get /up http/1.1\r\n"), "{head}");
            assert!(head.contains("host: hello.localhost\r\n"), "{head}");
        }
    }

    #[tokio::test]
    async fn http_probe_fails_on_5xx_with_status_in_reason() {
        let (addr, _heads) =
            canned_server("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        let err = http_probe(addr, "/up", "h", SECOND).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[tokio::test]
    async fn http_probe_fails_on_closed_port_and_garbage() {
        let err = http_probe(closed_port().await, "/", "h", SECOND).await.unwrap_err();
        assert!(err.starts_with("connect to 127.0.0.1:"), "{err}");
        let (addr, _heads) = canned_server("not http at all\r\n\r\n").await;
        assert!(http_probe(addr, "/", "h", SECOND).await.is_err());
    }

    #[tokio::test]
    async fn http_probe_times_out_on_a_silent_server() {
        // Accepts (the kernel does, through the backlog) but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let err = http_probe(addr, "/", "h", Duration::from_millis(50)).await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        drop(listener);
    }

    #[tokio::test]
    async fn tcp_probe_sees_open_and_closed_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(tcp_probe(listener.local_addr().unwrap(), SECOND).await, Ok(()));
        let err = tcp_probe(closed_port().await, SECOND).await.unwrap_err();
        assert!(err.contains("connect to"), "{err}");
    }
}
