//! The proxy end to end: real HTTP over 127.0.0.1 between a test client, a proxy started
//! in-process and small hyper backends, all on ports the kernel picks.

mod support;

use bytes::Bytes;
use model::Balance;
use proxy::ProxyError;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Counts which backend answered each of `n` sequential GETs.
async fn spread(client: &Client, proxy: &TestProxy, host: &str, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let answer = get(client, proxy.addr, host, "/").await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        *counts.entry(answer.body).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_answers_404_for_unknown_hosts() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![
                site(
                    "a",
                    &["a.localhost", "www.a.localhost"],
                    Balance::RoundRobin,
                    vec![backend("a-1", a.addr, true, quick_health())],
                ),
                site("b", &["b.localhost"], Balance::RoundRobin, vec![backend("b-1", b.addr, true, quick_health())]),
            ],
        ))
        .await;
    proxy.wait_health("a-1", true).await;
    proxy.wait_health("b-1", true).await;
    let client = client();
    for (host, expected) in [("a.localhost", "a"), ("WWW.A.localhost:8080", "a"), ("b.localhost", "b")] {
        let answer = get(&client, proxy.addr, host, "/").await.unwrap();
        assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, expected), "{host}");
    }
    let unknown = get(&client, proxy.addr, "c.localhost:80", "/").await.unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, "no app for host c.localhost\n");
    assert!(unknown.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    let backends = [TestBackend::start("r0").await, TestBackend::start("r1").await, TestBackend::start("r2").await];
    let proxy = TestProxy::start().await;
    let routed = backends.iter().map(|b| backend(&b.name, b.addr, true, quick_health())).collect();
    proxy.put(&table(1, vec![site("r", &["r.localhost"], Balance::RoundRobin, routed)])).await;
    for b in &backends {
        proxy.wait_health(&b.name, true).await;
    }
    let client = client();
    assert_eq!(spread(&client, &proxy, "r.localhost", 30).await, counts(&[("r0", 10), ("r1", 10), ("r2", 10)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_the_busy_backend() {
    let busy = TestBackend::start("l0").await;
    let idle = TestBackend::start("l1").await;
    let proxy = TestProxy::start().await;
    // First only l0 is routed, so the slow request lands there; then both are.
    let only_busy =
        vec![backend("l0", busy.addr, true, quick_health()), backend("l1", idle.addr, false, quick_health())];
    proxy.put(&table(1, vec![site("l", &["l.localhost"], Balance::LeastConnections, only_busy)])).await;
    proxy.wait_health("l0", true).await;
    proxy.wait_health("l1", true).await;
    let client = client();
    let slow = tokio::spawn({
        let client = client.clone();
        let addr = proxy.addr;
        async move { get(&client, addr, "l.localhost", "/slow").await }
    });
    proxy.wait_inflight("l0", 1).await;
    let both = vec![backend("l0", busy.addr, true, quick_health()), backend("l1", idle.addr, true, quick_health())];
    proxy.put(&table(2, vec![site("l", &["l.localhost"], Balance::LeastConnections, both)])).await;
    assert_eq!(spread(&client, &proxy, "l.localhost", 10).await, counts(&[("l1", 10)]));
    busy.control.gate.add_permits(1);
    assert_eq!(slow.await.unwrap().unwrap().body, "l0");
    proxy.wait_inflight("l0", 0).await;
    // With nothing in flight, ties spread over both again.
    assert_eq!(spread(&client, &proxy, "l.localhost", 10).await, counts(&[("l0", 5), ("l1", 5)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backend_is_excluded_then_included_again() {
    let steady = TestBackend::start("h0").await;
    let flaky = TestBackend::start("h1").await;
    let proxy = TestProxy::start().await;
    let backends =
        vec![backend("h0", steady.addr, true, quick_health()), backend("h1", flaky.addr, true, quick_health())];
    proxy.put(&table(1, vec![site("h", &["h.localhost"], Balance::RoundRobin, backends)])).await;
    proxy.wait_health("h0", true).await;
    proxy.wait_health("h1", true).await;
    let client = client();

    flaky.control.healthy.store(false, SeqCst);
    proxy.wait_health("h1", false).await;
    let status = proxy.backend_status("h1").await;
    assert!(status.last_error.as_deref().unwrap_or("").contains("503"), "{status:?}");
    assert_eq!(spread(&client, &proxy, "h.localhost", 10).await, counts(&[("h0", 10)]));

    flaky.control.healthy.store(true, SeqCst);
    proxy.wait_health("h1", true).await;
    assert_eq!(spread(&client, &proxy, "h.localhost", 10).await, counts(&[("h0", 5), ("h1", 5)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_503_when_no_instance_is_healthy() {
    let sick = TestBackend::start("s0").await;
    sick.control.healthy.store(false, SeqCst);
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![site(
                "s",
                &["s.localhost"],
                Balance::RoundRobin,
                vec![backend("s0", sick.addr, true, quick_health())],
            )],
        ))
        .await;
    wait_until("s0 probed", || async { proxy.backend_status("s0").await.probes > 0 }).await;
    let answer = get(&client(), proxy.addr, "s.localhost", "/").await.unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body, "no healthy instance for s.localhost\n");
    assert_eq!(sick.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_another_backend_when_a_port_is_closed() {
    let alive = TestBackend::start("c0").await;
    let mut dead = TestBackend::start("c1").await;
    let proxy = TestProxy::start().await;
    let backends = vec![backend("c0", alive.addr, true, probe_once()), backend("c1", dead.addr, true, probe_once())];
    proxy.put(&table(1, vec![site("c", &["c.localhost"], Balance::RoundRobin, backends)])).await;
    proxy.wait_health("c0", true).await;
    proxy.wait_health("c1", true).await;
    dead.kill().await;

    let client = client();
    let mut failed = Vec::new();
    for _ in 0..200 {
        match get(&client, proxy.addr, "c.localhost", "/").await {
            Ok(answer) if answer.status == 200 => assert_eq!(answer.body, "c0"),
            other => failed.push(other),
        }
    }
    assert!(failed.is_empty(), "{} failed GETs, first: {:?}", failed.len(), failed.first());
    // No probe ran after the kill: the passive check alone took c1 out of rotation.
    let status = proxy.backend_status("c1").await;
    assert!(!status.healthy, "{status:?}");
    assert!(status.last_error.as_deref().unwrap_or("").contains("connect"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_fails_no_get() {
    let alive = TestBackend::start("k0").await;
    let mut doomed = TestBackend::start("k1").await;
    let proxy = TestProxy::start().await;
    let backends = vec![backend("k0", alive.addr, true, probe_once()), backend("k1", doomed.addr, true, probe_once())];
    proxy.put(&table(1, vec![site("k", &["k.localhost"], Balance::RoundRobin, backends)])).await;
    proxy.wait_health("k0", true).await;
    proxy.wait_health("k1", true).await;

    let client = client();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, addr, done, failed) = (client.clone(), proxy.addr, Arc::clone(&done), Arc::clone(&failed));
        workers.push(tokio::spawn(async move {
            for _ in 0..100 {
                match get(&client, addr, "k.localhost", "/").await {
                    Ok(answer) if answer.status == 200 => {}
                    _ => {
                        failed.fetch_add(1, SeqCst);
                    }
                }
                done.fetch_add(1, SeqCst);
            }
        }));
    }
    wait_until("some load went through", || async { done.load(SeqCst) >= 200 }).await;
    doomed.kill().await;
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!((done.load(SeqCst), failed.load(SeqCst)), (800, 0));
    assert!(doomed.hits() > 0 && alive.hits() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_backend_finishes_its_request_and_reports_inflight() {
    let old = TestBackend::start("d0").await;
    let new = TestBackend::start("d1").await;
    let proxy = TestProxy::start().await;
    let blue = vec![backend("d0", old.addr, true, quick_health()), backend("d1", new.addr, false, quick_health())];
    proxy.put(&table(1, vec![site("d", &["d.localhost"], Balance::RoundRobin, blue)])).await;
    proxy.wait_health("d0", true).await;
    proxy.wait_health("d1", true).await;
    let client = client();
    let slow = tokio::spawn({
        let client = client.clone();
        let addr = proxy.addr;
        async move { get(&client, addr, "d.localhost", "/slow").await }
    });
    proxy.wait_inflight("d0", 1).await;

    let green = vec![backend("d0", old.addr, false, quick_health()), backend("d1", new.addr, true, quick_health())];
    proxy.put(&table(2, vec![site("d", &["d.localhost"], Balance::RoundRobin, green)])).await;
    assert_eq!(spread(&client, &proxy, "d.localhost", 5).await, counts(&[("d1", 5)]));
    assert_eq!(proxy.backend_status("d0").await.inflight, 1);

    old.control.gate.add_permits(1);
    let answer = slow.await.unwrap().unwrap();
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "d0"));
    proxy.wait_inflight("d0", 0).await;
    let status = proxy.backend_status("d0").await;
    assert_eq!((status.requests, status.healthy), (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_forwarded_headers_and_request_id() {
    let app = TestBackend::start("f0").await;
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![site("f", &["f.localhost"], Balance::RoundRobin, vec![backend("f0", app.addr, true, quick_health())])],
        ))
        .await;
    proxy.wait_health("f0", true).await;
    let client = client();

    let fresh = get(&client, proxy.addr, "f.localhost:8080", "/").await.unwrap();
    assert_eq!(fresh.header("x-seen-for"), Some("127.0.0.1"));
    assert_eq!(fresh.header("x-seen-proto"), Some("http"));
    assert_eq!(fresh.header("x-seen-host"), Some("f.localhost:8080"));
    let id = fresh.header("x-request-id").expect("the proxy returns a request id");
    assert_eq!(fresh.header("x-seen-request-id"), Some(id));
    let again = get(&client, proxy.addr, "f.localhost", "/").await.unwrap();
    assert_ne!(again.header("x-request-id"), Some(id), "request ids repeat");

    let headers = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-request-id", "from-client"),
        ("connection", "x-hop-secret"),
        ("x-hop-secret", "do not forward"),
    ];
    let chained = send(&client, proxy.addr, "GET", "f.localhost", "/", &headers, TestBody::Full(None)).await.unwrap();
    // The proxy is the first hop, so a client's X-Forwarded-For is replaced, not extended.
    assert_eq!(chained.header("x-seen-for"), Some("127.0.0.1"));
    assert_eq!(chained.header("x-seen-request-id"), Some("from-client"));
    assert_eq!(chained.header("x-request-id"), Some("from-client"));
    assert_eq!(chained.header("x-seen-secret"), None);
}

/// A raw TCP backend that accepts an upgrade and echoes bytes, like a WebSocket echo server.
async fn upgrade_echo_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await.to_lowercase();
                if head.starts_with("get /health") {
                    let _ =
                        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    return;
                }
                assert!(head.contains("upgrade: echo"), "{head}");
                stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                    .await
                    .unwrap();
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A raw TCP backend that passes health checks but hangs up on every other request unanswered.
async fn hang_up_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await.to_lowercase();
                if head.starts_with("get /health") {
                    let _ =
                        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_502_when_the_backend_fails_and_no_retry_is_possible() {
    let broken = hang_up_backend().await;
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![site("x", &["x.localhost"], Balance::RoundRobin, vec![backend("x0", broken, true, quick_health())])],
        ))
        .await;
    proxy.wait_health("x0", true).await;
    let client = client();
    for method in ["GET", "POST"] {
        let body = TestBody::Full(Some(Bytes::from_static(b"payload")));
        let answer = send(&client, proxy.addr, method, "x.localhost", "/", &[], body).await.unwrap();
        assert_eq!((answer.status.as_u16(), answer.body.as_str()), (502, "upstream error\n"), "{method}");
        assert!(answer.header("x-request-id").is_some());
    }
    // A broken response is not a refused connection: the backend stays in rotation.
    assert!(proxy.backend_status("x0").await.healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_tunnel_bytes_both_ways() {
    let echo = upgrade_echo_backend().await;
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![site("w", &["w.localhost"], Balance::RoundRobin, vec![backend("w0", echo, true, quick_health())])],
        ))
        .await;
    proxy.wait_health("w0", true).await;

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /socket HTTP/1.1\r\nhost: w.localhost\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await.to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    for message in [&b"ping"[..], b"second message"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
    // An open tunnel counts as in flight, so draining waits for it.
    assert_eq!(proxy.backend_status("w0").await.inflight, 1);
    drop(stream);
    proxy.wait_inflight("w0", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    let app = TestBackend::start("b0").await;
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![site("b", &["b.localhost"], Balance::RoundRobin, vec![backend("b0", app.addr, true, quick_health())])],
        ))
        .await;
    proxy.wait_health("b0", true).await;
    let client = client();
    let start_request = |path: &'static str, body: TestBody| {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", proxy.addr))
            .header("host", "b.localhost")
            .body(body)
            .unwrap();
        client.request(request)
    };

    // Request body: each chunk comes back before the next one is sent, so neither the proxy nor
    // anything else waits for the whole body.
    let (chunks, receiver) = tokio::sync::mpsc::channel(1);
    let response = start_request("/echo", TestBody::Channel(ChannelBody(receiver)));
    let sender = tokio::spawn(async move {
        chunks.send(Bytes::from_static(b"one ")).await.unwrap();
        chunks
    });
    let mut body = response.await.unwrap().into_body();
    let chunks = sender.await.unwrap();
    assert_eq!(next_data(&mut body).await, "one ");
    chunks.send(Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(next_data(&mut body).await, "two");
    drop(chunks);
    assert!(http_body_util::BodyExt::frame(&mut body).await.is_none());

    // Response body: the first chunk arrives while the backend still holds the second.
    let (chunks, receiver) = tokio::sync::mpsc::channel(1);
    *app.control.stream.lock().unwrap() = Some(receiver);
    chunks.send(Bytes::from_static(b"first")).await.unwrap();
    let mut body = start_request("/stream", TestBody::Full(None)).await.unwrap().into_body();
    assert_eq!(next_data(&mut body).await, "first");
    chunks.send(Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(next_data(&mut body).await, "second");
    drop(chunks);
    assert!(http_body_util::BodyExt::frame(&mut body).await.is_none());
}

async fn next_data(body: &mut hyper::body::Incoming) -> String {
    loop {
        let frame = http_body_util::BodyExt::frame(body).await.expect("body ended early").unwrap();
        if let Ok(data) = frame.into_data() {
            return String::from_utf8(data.to_vec()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_proxy_serves_the_saved_table_at_once() {
    let app = TestBackend::start("p0").await;
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            4,
            vec![site("p", &["p.localhost"], Balance::RoundRobin, vec![backend("p0", app.addr, true, probe_once())])],
        ))
        .await;
    proxy.wait_health("p0", true).await;

    let proxy = proxy.restart().await;
    // No waiting for a probe: the restored backend is trusted until checks say otherwise.
    let answer = get(&client(), proxy.addr, "p.localhost", "/").await.unwrap();
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "p0"));
    assert_eq!(proxy.admin.status().await.unwrap().generation, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keeps_newer_generations_and_refuses_what_is_not_a_table() {
    let app = TestBackend::start("g0").await;
    let proxy = TestProxy::start().await;
    let sites =
        |host: &str| vec![site("g", &[host], Balance::RoundRobin, vec![backend("g0", app.addr, true, quick_health())])];
    proxy.put(&table(5, sites("g5.localhost"))).await;

    let stale = proxy.admin.put_routes(&table(3, sites("g3.localhost"))).await;
    assert!(matches!(stale, Err(ProxyError::StaleGeneration { .. })), "{stale:?}");
    assert_eq!(proxy.admin.status().await.unwrap().generation, 5);
    proxy.wait_health("g0", true).await;
    let client = client();
    assert_eq!(get(&client, proxy.addr, "g5.localhost", "/").await.unwrap().status, 200);
    assert_eq!(get(&client, proxy.addr, "g3.localhost", "/").await.unwrap().status, 404);

    // The same generation again is a no-op replay, not an error.
    proxy.put(&table(5, sites("g5.localhost"))).await;

    // A body that is not a routing table at all is the only thing refused whole.
    let mut admin = tokio::net::UnixStream::connect(proxy.dir.path().join("admin.sock")).await.unwrap();
    admin
        .write_all(b"PUT /routes HTTP/1.1\r\nhost: p\r\ncontent-length: 1\r\nconnection: close\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = String::new();
    admin.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("not a routing table"), "{answer}");
    assert_eq!(proxy.admin.status().await.unwrap().generation, 5);
    assert_eq!(proxy.saved_table().generation, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f1_a_duplicated_host_is_refused_alone_and_the_rest_of_the_table_applies() {
    let a = TestBackend::start("a1").await;
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let proxy = TestProxy::start().await;
    let site_a = || site("a", &["a.localhost"], Balance::RoundRobin, vec![backend("a1", a.addr, true, quick_health())]);
    proxy
        .put(&table(
            1,
            vec![
                site_a(),
                site("b", &["b.localhost"], Balance::RoundRobin, vec![backend("b1", b1.addr, true, quick_health())]),
            ],
        ))
        .await;

    // App c claims a's host, and comes first in the table; meanwhile app b moves to a new
    // instance. Only c's claim is refused: a keeps its host, and b's update goes through.
    let update = table(
        2,
        vec![
            site("c", &["A.localhost", "c.localhost"], Balance::RoundRobin, vec![]),
            site_a(),
            site(
                "b",
                &["b.localhost"],
                Balance::RoundRobin,
                vec![backend("b1", b1.addr, false, quick_health()), backend("b2", b2.addr, true, quick_health())],
            ),
        ],
    );
    let rejected = proxy.admin.put_routes(&update).await.unwrap();
    let rendered: Vec<String> = rejected.iter().map(|r| format!("{}: {}", r.app, r.reason)).collect();
    assert_eq!(rendered, [r#"c: sites.c.hosts: "a.localhost" is already served by a"#]);
    assert_eq!(proxy.admin.status().await.unwrap().generation, 2);
    proxy.wait_health("a1", true).await;
    proxy.wait_health("b2", true).await;
    let client = client();
    assert_eq!(spread(&client, &proxy, "b.localhost", 4).await, counts(&[("b2", 4)]));
    assert_eq!(spread(&client, &proxy, "a.localhost", 2).await, counts(&[("a1", 2)]));
    assert_eq!(get(&client, proxy.addr, "c.localhost", "/").await.unwrap().status, 503);

    // The state file holds what is served, not what was asked for.
    let saved = proxy.saved_table();
    let hosts: Vec<String> = saved.sites.iter().map(|s| format!("{}={}", s.app, s.hosts.join(","))).collect();
    assert_eq!(
        (saved.generation, hosts),
        (2, vec!["c=c.localhost".into(), "a=a.localhost".into(), "b=b.localhost".into()])
    );
    let proxy = proxy.restart().await;
    assert_eq!(spread(&client, &proxy, "a.localhost", 2).await, counts(&[("a1", 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_socket_is_private_and_a_live_one_is_not_stolen() {
    use std::os::unix::fs::PermissionsExt as _;
    let proxy = TestProxy::start().await;
    let socket = proxy.dir.path().join("admin.sock");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    let second = proxy::start(&proxy::ProxyOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_socket: socket.clone(),
        state_file: proxy.dir.path().join("other.json"),
        threads: 1,
    })
    .await
    .unwrap_err();
    assert!(second.to_string().contains("another proxy is listening"), "{second:#}");
    assert!(proxy.admin.status().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_in_use_is_an_error() {
    let proxy = TestProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let second = proxy::start(&proxy::ProxyOptions {
        listen: proxy.addr,
        admin_socket: dir.path().join("admin.sock"),
        state_file: dir.path().join("routes.json"),
        threads: 2,
    })
    .await
    .unwrap_err();
    assert!(format!("{second:#}").contains("in use"), "{second:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = TestBackend::start("q0").await;
    let mut proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![site("q", &["q.localhost"], Balance::RoundRobin, vec![backend("q0", app.addr, true, quick_health())])],
        ))
        .await;
    proxy.wait_health("q0", true).await;
    let client = client();
    let slow = tokio::spawn({
        let client = client.clone();
        let addr = proxy.addr;
        async move { get(&client, addr, "q.localhost", "/slow").await }
    });
    proxy.wait_inflight("q0", 1).await;
    let handle = proxy.take_handle();
    let shutdown = tokio::spawn(handle.shutdown(std::time::Duration::from_secs(10)));
    wait_until("the proxy stops accepting", || async { TcpStream::connect(proxy.addr).await.is_err() }).await;
    app.control.gate.add_permits(1);
    let answer = slow.await.unwrap().unwrap();
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "q0"));
    shutdown.await.unwrap();
}

/// A response read from a raw connection: the status, the head as text, and the body.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: String,
    /// Every response on the connection, in case the proxy answered more than one.
    responses: usize,
}

/// Writes `request` to the proxy byte for byte, and reads until the proxy closes the connection.
async fn raw(proxy: std::net::SocketAddr, request: &[u8]) -> RawAnswer {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // The deadline only turns a proxy that keeps the connection open into a clear failure. A
    // reset after a refused request still leaves what was read in `answer`.
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the proxy kept the connection open after {:?}", String::from_utf8_lossy(request));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    RawAnswer {
        status,
        head: head.to_lowercase(),
        body: body.to_owned(),
        responses: answer.matches("HTTP/1.1 ").count(),
    }
}

/// A proxy routing `a.localhost` to backend `a0` and `b.localhost` to `b0`, both healthy.
async fn two_sites() -> (TestProxy, TestBackend, TestBackend) {
    let a = TestBackend::start("a0").await;
    let b = TestBackend::start("b0").await;
    let proxy = TestProxy::start().await;
    proxy
        .put(&table(
            1,
            vec![
                site("a", &["a.localhost"], Balance::RoundRobin, vec![backend("a0", a.addr, true, quick_health())]),
                site("b", &["b.localhost"], Balance::RoundRobin, vec![backend("b0", b.addr, true, quick_health())]),
            ],
        ))
        .await;
    proxy.wait_health("a0", true).await;
    proxy.wait_health("b0", true).await;
    (proxy, a, b)
}

/// The header lines of the request the backend's `/head` saw.
fn seen_lines(body: &str) -> Vec<&str> {
    body.split("\n\n").next().unwrap().lines().skip(1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_absolute_form_uri_authority_replaces_host() {
    let (proxy, a, b) = two_sites().await;
    for (target, host) in
        [("http://a.localhost/head", "a.localhost"), ("http://A.localhost:8080/head", "A.localhost:8080")]
    {
        let request = format!("GET {target} HTTP/1.1\r\nhost: b.localhost\r\nconnection: close\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.body.starts_with("GET /head HTTP/1.1\n"), "{answer:?}");
        let lines = seen_lines(&answer.body);
        let hosts: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("host:")).collect();
        assert_eq!(hosts, [format!("host: {host}")], "{answer:?}");
        assert!(lines.contains(&format!("x-forwarded-host: {host}").as_str()), "{answer:?}");
    }
    // HTTP/1.0 needs no Host: the target's authority is the host.
    let answer = raw(proxy.addr, b"GET http://a.localhost/head HTTP/1.0\r\n\r\n").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(seen_lines(&answer.body).contains(&"host: a.localhost"), "{answer:?}");
    assert_eq!((a.hits(), b.hits()), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_more_than_one_host_header_is_400() {
    let (proxy, a, b) = two_sites().await;
    for hosts in ["host: a.localhost\r\nhost: b.localhost", "host: a.localhost\r\nhost: a.localhost"] {
        for target in ["/head", "http://a.localhost/head"] {
            let request = format!("GET {target} HTTP/1.1\r\n{hosts}\r\n\r\n");
            let answer = raw(proxy.addr, request.as_bytes()).await;
            assert_eq!((answer.status, answer.body.as_str()), (400, "more than one host header\n"), "{request:?}");
            assert!(answer.head.contains("connection: close"), "{answer:?}");
        }
    }
    assert_eq!((a.hits(), b.hits()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_http_1_1_request_without_host_is_400() {
    let (proxy, a, _b) = two_sites().await;
    for request in [&b"GET /head HTTP/1.1\r\n\r\n"[..], b"GET http://a.localhost/head HTTP/1.1\r\n\r\n"] {
        let answer = raw(proxy.addr, request).await;
        assert_eq!((answer.status, answer.body.as_str()), (400, "missing host header\n"), "{answer:?}");
    }
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_host_that_is_not_a_valid_authority_is_400() {
    let (proxy, a, _b) = two_sites().await;
    for host in ["a.localhost/x", "a.localhost:http", "user@a.localhost", "a.localhost:1:2", "a.localhost?", "[::1"] {
        let request = format!("GET /head HTTP/1.1\r\nhost: {host}\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!((answer.status, answer.body.as_str()), (400, "host header is not a valid host[:port]\n"), "{host}");
    }
    for target in ["http://user@a.localhost/head", "ftp://a.localhost/head"] {
        let request = format!("GET {target} HTTP/1.1\r\nhost: a.localhost\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(answer.status, 400, "{target}: {answer:?}");
    }
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_conflicting_content_lengths_are_400_and_a_repeated_one_is_sent_once() {
    let (proxy, a, _b) = two_sites().await;
    // Refused by hyper before the proxy sees them.
    for lengths in ["content-length: 3\r\ncontent-length: 4", "content-length: 3, 3", "content-length: +3"] {
        let request = format!("POST /head HTTP/1.1\r\nhost: a.localhost\r\n{lengths}\r\n\r\nabc");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(answer.status, 400, "{lengths}: {answer:?}");
    }
    assert_eq!(a.hits(), 0);
    let request = b"POST /head HTTP/1.1\r\nhost: a.localhost\r\ncontent-length: 3\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc";
    let answer = raw(proxy.addr, request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let lengths: Vec<&str> = seen_lines(&answer.body).into_iter().filter(|l| l.starts_with("content-length")).collect();
    assert_eq!(lengths, ["content-length: 3"]);
    assert!(answer.body.ends_with("\n\nabc"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_content_length_with_chunked_is_framed_by_chunked_and_smuggles_nothing() {
    let (proxy, a, _b) = two_sites().await;
    // By Content-Length the body would run into the second request; by Transfer-Encoding, which
    // wins, the body is "abc" and the second request follows it on the same connection.
    let request =
        b"POST /head HTTP/1.1\r\nhost: a.localhost\r\ncontent-length: 30\r\ntransfer-encoding: chunked\r\n\r\n\
3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a.localhost\r\n\r\n";
    let answer = raw(proxy.addr, request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.ends_with("\n\nabc"), "{answer:?}");
    let lines = seen_lines(&answer.body);
    assert!(!lines.iter().any(|l| l.starts_with("content-length")), "{answer:?}");
    // The connection closed after the first answer: the request behind it was never read.
    assert_eq!((answer.responses, a.hits()), (1, 1), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_transfer_encoding_other_than_one_chunked_is_refused() {
    let (proxy, a, _b) = two_sites().await;
    let table = [
        // hyper: the last coding is not chunked, or HTTP/1.0.
        ("HTTP/1.1", "transfer-encoding: gzip", 400),
        ("HTTP/1.1", "transfer-encoding: chunked\r\ntransfer-encoding: gzip", 400),
        ("HTTP/1.0", "transfer-encoding: chunked", 400),
        // The proxy: a coding it would pass on undecoded, or chunked twice.
        ("HTTP/1.1", "transfer-encoding: gzip, chunked", 501),
        ("HTTP/1.1", "transfer-encoding: gzip\r\ntransfer-encoding: chunked", 501),
        ("HTTP/1.1", "transfer-encoding: chunked, chunked", 400),
    ];
    for (version, coding, status) in table {
        let request = format!("POST /head {version}\r\nhost: a.localhost\r\n{coding}\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(answer.status, status, "{version} {coding}: {answer:?}");
    }
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_hop_by_hop_headers_and_those_named_in_connection_are_not_forwarded() {
    let (proxy, _a, _b) = two_sites().await;
    let request = b"POST /head HTTP/1.1\r\nhost: a.localhost\r\n\
connection: close, x-hop-secret, host, content-length, x-forwarded-for\r\nconnection: x-other\r\n\
x-hop-secret: 1\r\nx-other: 2\r\nkeep-alive: timeout=5\r\nte: trailers\r\ntrailer: x-sum\r\n\
proxy-connection: keep-alive\r\nupgrade: h2c\r\nx-forwarded-for: 203.0.113.7\r\ncontent-length: 3\r\n\r\nabc";
    let answer = raw(proxy.addr, request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let mut names: Vec<&str> = seen_lines(&answer.body).iter().map(|l| l.split(':').next().unwrap()).collect();
    names.dedup();
    assert_eq!(
        names,
        ["content-length", "host", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-request-id"],
        "{answer:?}"
    );
    let lines = seen_lines(&answer.body);
    for line in ["content-length: 3", "host: a.localhost", "x-forwarded-for: 127.0.0.1"] {
        assert!(lines.contains(&line), "{line}: {answer:?}");
    }
    assert!(answer.body.ends_with("\n\nabc"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_client_forwarding_headers_are_overwritten_not_trusted() {
    let (proxy, _a, _b) = two_sites().await;
    let client = client();
    let headers = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=203.0.113.7;proto=https"),
        ("x-real-ip", "203.0.113.7"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-ssl", "on"),
        ("x-forwarded-scheme", "https"),
        ("x-request-id", "not an id"),
    ];
    let answer =
        send(&client, proxy.addr, "GET", "a.localhost", "/head", &headers, TestBody::Full(None)).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let id = answer.header("x-request-id").unwrap().to_owned();
    assert_ne!(id, "not an id");
    let expected = format!(
        "host: a.localhost
x-forwarded-for: 127.0.0.1
x-forwarded-host: a.localhost
x-forwarded-proto: http
x-request-id: {id}"
    );
    assert_eq!(seen_lines(&answer.body).join("\n"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_underscore_and_client_ip_headers_never_reach_the_app() {
    let (proxy, a, _b) = two_sites().await;
    // CGI and WSGI servers map `_` and `-` to the same variable: these three would reach the app
    // as `HTTP_X_REAL_IP`, and joined to the proxy's own `X-Forwarded-For` and `-Proto`.
    let request = b"GET /head HTTP/1.1\r\nhost: a.localhost\r\n\
X_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nX_Forwarded_Proto: https\r\nX-Forwarded_Host: evil\r\n\
True-Client-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\n\
X-Forwarded-Server: evil\r\nX-Forwarded-Uri: /admin\r\nX-Cluster-Client-IP: 6.6.6.6\r\n\
CF-Connecting-IP: 6.6.6.6\r\nFastly-Client-IP: 6.6.6.6\r\nClient-IP: 6.6.6.6\r\n\
X-App-Token: kept\r\nconnection: close\r\n\r\n";
    let answer = raw(proxy.addr, request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let lines = seen_lines(&answer.body);
    let id = lines.iter().find_map(|l| l.strip_prefix("x-request-id: ")).expect("the proxy sets an id");
    let expected = format!(
        "host: a.localhost
x-app-token: kept
x-forwarded-for: 127.0.0.1
x-forwarded-host: a.localhost
x-forwarded-proto: http
x-request-id: {id}"
    );
    assert_eq!(lines.join("\n"), expected, "{answer:?}");
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_control_characters_and_malformed_fields_in_the_head_are_400() {
    let (proxy, a, _b) = two_sites().await;
    // All refused by hyper's parser; these prove it rather than assume it.
    let fields: [&[u8]; 9] = [
        b"x-a: a\0b",
        b"x-a: a\x7fb",
        b"x-a: a\rb",
        b"x-a: a\nb",
        b"x-a: a\r\n b",
        b"x-a : b",
        b"x(a): b",
        b"x\x01a: b",
        b": b",
    ];
    for field in fields {
        let mut request = b"GET /head HTTP/1.1\r\nhost: a.localhost\r\n".to_vec();
        request.extend_from_slice(field);
        request.extend_from_slice(b"\r\n\r\n");
        let answer = raw(proxy.addr, &request).await;
        assert_eq!(answer.status, 400, "{:?}: {answer:?}", String::from_utf8_lossy(field));
    }
    // Bytes above 0x7f are obs-text, which field values may carry: passed on as they are.
    let answer =
        raw(proxy.addr, b"GET /head HTTP/1.1\r\nhost: a.localhost\r\nx-a: caf\xe9\r\nconnection: close\r\n\r\n").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_f7_connect_is_501() {
    let (proxy, a, _b) = two_sites().await;
    let answer = raw(proxy.addr, b"CONNECT a.localhost:443 HTTP/1.1\r\nhost: a.localhost:443\r\n\r\n").await;
    assert_eq!((answer.status, answer.body.as_str()), (501, "connect is not supported\n"), "{answer:?}");
    assert_eq!(a.hits(), 0);
}
