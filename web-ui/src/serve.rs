//! Serving the UI on a TCP listener with the limits a small router needs.
//! `axum::serve` sets no timer, so hyper's header read timeout never runs: a
//! client that opens connections and sends nothing (or a header a byte at a
//! time) would hold them, and their buffers and file descriptors, for ever —
//! the daemon's descriptors, shared with DHCP and DNS. This accept loop caps
//! connections in all and per client, closes a connection whose request head
//! (or next request, when idle between requests) does not arrive in time, and
//! bounds the head's size. The request body's deadline and size are the
//! router's ([`crate::Limits`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;

/// How many connections, how long and how large a request head may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open connections at most; beyond, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Open connections at most from one client (an IPv4 address, an IPv6
    /// /64); beyond, new ones are closed at once.
    pub max_connections_per_client: usize,
    /// A request's head (line and headers) must arrive within this long, and
    /// an idle kept-alive connection closes after it.
    pub header_read_timeout: Duration,
    /// A request's head may be at most this large (at least 8 KiB).
    pub max_head_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            // A browser opens up to 6 connections, plus one event stream per
            // tab (at most crate::app::MAX_EVENT_STREAMS in all).
            max_connections: 64,
            max_connections_per_client: 24,
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
        }
    }
}

/// Connections open per client.
struct ClientSlots {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One connection's place in [`ClientSlots`], given back when dropped.
struct ClientSlot {
    slots: Arc<ClientSlots>,
    client: IpAddr,
}

impl ClientSlots {
    fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let client = crate::auth::client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(client).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Serves `router` (made by [`crate::router`]) on `listener` until the task is
/// dropped, within `limits`.
pub async fn serve_listener(listener: TcpListener, router: Router, limits: ServeLimits) -> io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients = Arc::new(ClientSlots {
        open: Mutex::new(HashMap::new()),
        max: limits.max_connections_per_client.max(1),
    });
    loop {
        let permit = total
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("the connection limit closed"))?;
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors or memory, or a connection that died in the
            // backlog: wait a moment rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Dropping the stream closes it.
        let Some(slot) = clients.claim(peer.ip()) else {
            continue;
        };
        tokio::spawn(serve_connection(stream, peer, router.clone(), limits, (permit, slot)));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServeLimits,
    _held: (OwnedSemaphorePermit, ClientSlot),
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        // The peer address feeds the login rate limiter.
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192));
    // A connection that fails (timed out, reset, malformed) just ends.
    let _ = http.serve_connection(TokioIo::new(stream), service).await;
}
