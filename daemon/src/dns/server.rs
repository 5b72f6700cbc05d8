//! The resolver's sockets: one UDP socket and one TCP listener per listen
//! address, all on the daemon's runtime. The decisions are the resolver's
//! (`resolver.rs`, under a mutex never held across an await); this file only
//! moves bytes, forwards, and waits for the core to hold domain-set
//! addresses before an answer leaves.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::cache::AnswerSource;
use super::resolver::{Begin, Pending, Resolver};
use super::udp_batch;
use super::upstream::UpstreamGroup;
use super::wire::Transport;
use crate::core::ServiceRequest;
use crate::firewall::error_chain;
use crate::inventory::unix_now;
use crate::runtime::services::ServiceHandle;

/// Questions being forwarded at once; more are answered SERVFAIL at once
/// (a flood must not grow memory without bound).
const MAX_IN_FLIGHT: usize = 1024;
/// TCP connections at once, over all listeners.
const MAX_TCP: usize = 64;
/// TCP connections at once from one address: one device cannot take them all.
const MAX_TCP_PER_CLIENT: usize = 4;
/// A TCP connection idle this long is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What every socket task shares.
pub(super) struct Shared {
    pub(super) resolver: Mutex<Resolver>,
    pub(super) direct: UpstreamGroup,
    pub(super) tunnel: UpstreamGroup,
    /// Zones with their own upstreams.
    pub(super) zones: std::collections::BTreeMap<crate::config::ZoneId, UpstreamGroup>,
    pub(super) service: ServiceHandle,
    /// The lists as loaded (names, counts, errors, downloads).
    pub(super) lists: Mutex<Vec<super::ListStatus>>,
    /// Wakes the list refresher (`bulkhead dns refresh`).
    pub(super) refresh: tokio::sync::Notify,
    in_flight: Arc<Semaphore>,
    tcp: Arc<Semaphore>,
    tcp_per_client: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Shared {
    pub(super) fn new(
        resolver: Resolver,
        direct: UpstreamGroup,
        tunnel: UpstreamGroup,
        zones: std::collections::BTreeMap<crate::config::ZoneId, UpstreamGroup>,
        service: ServiceHandle,
        lists: Vec<super::ListStatus>,
    ) -> Self {
        Shared {
            resolver: Mutex::new(resolver),
            direct,
            tunnel,
            zones,
            service,
            lists: Mutex::new(lists),
            refresh: tokio::sync::Notify::new(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            tcp: Arc::new(Semaphore::new(MAX_TCP)),
            tcp_per_client: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Decides a batch of datagrams (`buffers[i][..len]` from `src`, for each
    /// `(i, len, src)`) under one taking of the locks.
    fn begin_batch(&self, buffers: &[Vec<u8>], received: &[(usize, usize, SocketAddr)]) -> Vec<(Begin, SocketAddr)> {
        // Lock order everywhere: the inventory, then the resolver.
        let (Ok(inventory), Ok(mut r)) = (self.service.inventory.read(), self.resolver.lock()) else {
            return Vec::new();
        };
        let (now, wall) = (Instant::now(), unix_wall());
        received
            .iter()
            .filter_map(|&(i, len, src)| {
                let packet = buffers.get(i)?.get(..len)?;
                Some((r.begin(packet, src, Transport::Udp, &inventory, now, wall), src))
            })
            .collect()
    }

    fn begin(&self, packet: &[u8], src: SocketAddr, transport: Transport) -> Begin {
        // Lock order everywhere: the inventory, then the resolver.
        let (Ok(inventory), Ok(mut r)) = (self.service.inventory.read(), self.resolver.lock()) else {
            return Begin::Drop;
        };
        r.begin(packet, src, transport, &inventory, Instant::now(), unix_wall())
    }

    /// Forwards one question and returns the client's answer, after the
    /// answer's domain-set addresses are held by the core. If they cannot be
    /// held, the client gets SERVFAIL: an answer whose addresses are not in
    /// their set would send the traffic out directly.
    async fn forward(&self, pending: Pending) -> Option<Vec<u8>> {
        let group = match super::resolver::answer_source(&pending.client) {
            AnswerSource::Tunnel => &self.tunnel,
            AnswerSource::Zone(zone) => self.zones.get(&zone).unwrap_or(&self.direct),
            AnswerSource::Default => &self.direct,
        };
        let id = (rand_core::OsRng.next_u32() & 0xffff) as u16;
        let query = pending.question.upstream_query(id);
        let upstream = group
            .ask(&query)
            .await
            .map(|(m, up)| (m, up.to_string()))
            .map_err(|e| error_chain(&e));
        if let Err(e) = &upstream {
            tracing::debug!(name = %pending.question.key.escape_debug(), error = %e, "no upstream answer");
        }
        let servfail = pending.question.response(hickory_proto::op::ResponseCode::ServFail);
        let limit = pending.question.payload_limit(pending.transport);
        let finished = {
            let mut r = self.resolver.lock().ok()?;
            r.finish(pending, upstream, Instant::now(), unix_wall())
        };
        if !self.hold(finished.holds).await {
            return super::wire::encode(&servfail, limit);
        }
        if let Some(c) = finished.to_cache {
            if let Ok(mut r) = self.resolver.lock() {
                r.commit(c, Instant::now());
            }
        }
        finished.reply
    }

    /// Asks the core to hold domain-set addresses; false if any was refused
    /// (the answer naming them must then not be sent).
    async fn hold(&self, holds: Vec<(crate::config::DomainSetId, Vec<std::net::IpAddr>, u32)>) -> bool {
        for (set, addresses, ttl_secs) in holds {
            let request = ServiceRequest::Hold {
                set: set.clone(),
                addresses,
                ttl_secs,
            };
            if let Err(e) = self.service.request(request).await {
                tracing::error!(set = %set, error = %e, "domain set addresses could not be held; answering SERVFAIL");
                return false;
            }
        }
        true
    }
}

/// The wall clock in Unix seconds, as the resolver takes it.
pub(super) fn unix_wall() -> u64 {
    u64::try_from(unix_now()).unwrap_or(0)
}

/// Serves one UDP socket until the task is aborted: the questions queued
/// are taken in one batch (`udp_batch.rs`), decided under one lock, and the
/// answers ready at once leave in one batch; forwarded questions and answers
/// waiting for domain-set holds go on in their own tasks.
pub(super) async fn serve_udp(shared: Arc<Shared>, socket: UdpSocket) {
    use std::os::fd::AsRawFd;
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut buffers = vec![vec![0u8; udp_batch::MAX_QUESTION]; udp_batch::BATCH];
    loop {
        let received = match socket
            .async_io(Interest::READABLE, || udp_batch::receive(fd, &mut buffers))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors of earlier sends surface here; never fatal.
                tracing::debug!(error = %e, "dns udp receive");
                continue;
            }
        };
        let decided = shared.begin_batch(&buffers, &received);
        let mut replies = Vec::with_capacity(decided.len());
        for (begin, src) in decided {
            match begin {
                Begin::Reply(bytes) => replies.push((bytes, src)),
                Begin::Drop => {}
                Begin::AfterHolds { reply, servfail, holds } => {
                    let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
                        if let Some(b) = servfail {
                            replies.push((b, src));
                        }
                        continue;
                    };
                    let shared = shared.clone();
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        let bytes = if shared.hold(holds).await {
                            Some(reply)
                        } else {
                            servfail
                        };
                        if let Some(b) = bytes {
                            let _ = socket.send_to(&b, src).await;
                        }
                        drop(permit);
                    });
                }
                Begin::Forward(pending) => {
                    let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
                        let m = pending.question.response(hickory_proto::op::ResponseCode::ServFail);
                        if let Some(b) = super::wire::encode(&m, 512) {
                            replies.push((b, src));
                        }
                        continue;
                    };
                    let shared = shared.clone();
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        if let Some(bytes) = shared.forward(pending).await {
                            let _ = socket.send_to(&bytes, src).await;
                        }
                        drop(permit);
                    });
                }
            }
        }
        send_all(&socket, &replies).await;
    }
}

/// Sends `replies` in batches; what the socket's buffer cannot take at once
/// waits for room, one by one.
async fn send_all(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) {
    use std::os::fd::AsRawFd;
    let mut left = replies;
    while !left.is_empty() {
        match socket.try_io(Interest::WRITABLE, || udp_batch::send(socket.as_raw_fd(), left)) {
            Ok(0) => break,
            Ok(n) => left = &left[n.min(left.len())..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                for (bytes, to) in left {
                    let _ = socket.send_to(bytes, *to).await;
                }
                return;
            }
            Err(e) => {
                // An unreachable client must not cost the others their
                // answers: the one that failed is skipped.
                tracing::debug!(error = %e, "dns udp send");
                left = &left[1..];
            }
        }
    }
}

/// Accepts TCP connections until the task is aborted.
pub(super) async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over a cap: the connection is closed at once.
        let Ok(permit) = shared.tcp.clone().try_acquire_owned() else {
            continue;
        };
        let admitted = shared.tcp_per_client.lock().is_ok_and(|mut m| {
            let n = m.entry(src.ip()).or_insert(0);
            *n += 1;
            *n <= MAX_TCP_PER_CLIENT
        });
        let shared = shared.clone();
        tokio::spawn(async move {
            if admitted {
                if let Err(e) = serve_connection(&shared, stream, src).await {
                    tracing::debug!(error = %e, client = %src, "dns tcp connection ended");
                }
            }
            if let Ok(mut m) = shared.tcp_per_client.lock() {
                if let Some(n) = m.get_mut(&src.ip()) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(&src.ip());
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection(shared: &Shared, mut stream: TcpStream, src: SocketAddr) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let reply = match shared.begin(&packet, src, Transport::Tcp) {
            Begin::Reply(bytes) => Some(bytes),
            Begin::Drop => return Ok(()),
            Begin::AfterHolds { reply, servfail, holds } => {
                if shared.hold(holds).await {
                    Some(reply)
                } else {
                    servfail
                }
            }
            Begin::Forward(pending) => shared.forward(pending).await,
        };
        let Some(reply) = reply else { return Ok(()) };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
