//! Serving on a real socket: keep-alive, slow and silent clients, oversized
//! heads, connection caps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_web::serve::{serve_listener, ServeLimits};
use bulkhead_web::testing::FakeBackend;
use bulkhead_web::{router, WebSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The UI served on a loopback port (answering to that address).
async fn served(limits: ServeLimits) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let settings = WebSettings {
        allowed_hosts: vec![addr.to_string()],
    };
    let app = router(Arc::new(FakeBackend::demo()), settings);
    (addr, tokio::spawn(serve_listener(listener, app, limits)))
}

/// Whether the server closes `s` within `d` (answers before that are read
/// and skipped).
async fn closed_within(s: &mut TcpStream, d: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a GET and reads the answer's status line (and the rest of the
/// answer, by its Content-Length).
async fn status_of(s: &mut TcpStream, addr: SocketAddr, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed mid-answer");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if body.len() >= length {
            return head.lines().next().unwrap_or("").to_string();
        }
    }
}

#[tokio::test]
async fn requests_are_answered() {
    let (addr, server) = served(ServeLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(status_of(&mut s, addr, "/healthz").await, "HTTP/1.1 200 OK");
    // Kept alive: a second request on the same connection.
    assert_eq!(status_of(&mut s, addr, "/").await, "HTTP/1.1 303 See Other");
    server.abort();
}

#[tokio::test]
async fn a_silent_or_slow_client_is_dropped() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let (addr, server) = served(limits).await;
    // Sends nothing.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // Sends a head that never ends.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: ").await.expect("write");
    // Idle after one request.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(status_of(&mut idle, addr, "/healthz").await, "HTTP/1.1 200 OK");
    for (what, s) in [("silent", &mut silent), ("slow", &mut slow), ("idle", &mut idle)] {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "{what} connection still open"
        );
    }
    server.abort();
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let (addr, server) = served(ServeLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let big = "x".repeat(64 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Big: {big}\r\n\r\n");
    // The server may close before taking it all.
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.abort();
}

#[tokio::test]
async fn connections_per_client_are_capped() {
    let limits = ServeLimits {
        max_connections_per_client: 2,
        ..ServeLimits::default()
    };
    let (addr, server) = served(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(status_of(&mut s, addr, "/healthz").await, "HTTP/1.1 200 OK");
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "a third connection from one client is closed"
    );
    // One closes: there is room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(status_of(&mut again, addr, "/healthz").await, "HTTP/1.1 200 OK");
    server.abort();
}

#[tokio::test]
async fn connections_in_all_are_capped() {
    let limits = ServeLimits {
        max_connections: 2,
        ..ServeLimits::default()
    };
    let (addr, server) = served(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(status_of(&mut s, addr, "/healthz").await, "HTTP/1.1 200 OK");
        held.push(s);
    }
    // The third waits in the backlog, unanswered…
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    third.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf))
            .await
            .is_err(),
        "answered beyond the cap"
    );
    // …until another closes.
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("answered once there is room")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
    server.abort();
}
