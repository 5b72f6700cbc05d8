//! Asking the upstream resolvers: UDP (TCP when the answer is truncated),
//! TCP, DNS over TLS (`tls.rs`: idle connections pooled) or DNS over HTTPS
//! (`doh.rs`: one HTTP/2 connection shared), in order of health, each with a
//! timeout, within one budget per question. Upstreams given by name find
//! their address through `dns.bootstrap` (`bootstrap.rs`).
//!
//! Every UDP question uses a fresh socket on a kernel-chosen port and a random
//! id, and only an answer from the upstream's address with that id and the
//! same question is taken (spoofed answers are ignored, not errors). Questions
//! of tunnelled devices go on sockets carrying the tunnel mark: the kernel
//! routes them by Bulkhead's table, through the tunnel or into its blackhole,
//! never out of the WAN. The same holds for their bootstrap questions and
//! their TLS and HTTP/2 connections.

pub mod bootstrap;
pub mod doh;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand_core::RngCore;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;

use crate::config::{Upstream, UpstreamProtocol};
use crate::firewall::error_chain;
pub use tls::{tls_client, TlsClient};

/// One try at one upstream.
const TRY_TIMEOUT: Duration = Duration::from_millis(1500);
/// All tries for one question.
const BUDGET: Duration = Duration::from_secs(4);
/// One bootstrap question (its answer and the connection must fit in one
/// try).
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_millis(600);

/// Why an upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No upstream is configured for this route.
    #[error("no upstream is configured")]
    NoneConfigured,
    /// Socket error (a blackhole route when the tunnel is down shows here).
    #[error("{upstream}: {source}")]
    Io {
        /// Which.
        upstream: Upstream,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{0}: no answer in time")]
    Timeout(Upstream),
    /// It answered SERVFAIL or REFUSED.
    #[error("{0}: answered SERVFAIL or REFUSED")]
    Refused(Upstream),
    /// An answer that could not be encoded/decoded.
    #[error("{0}: unreadable answer")]
    Garbled(Upstream),
    /// The TLS session could not be set up (certificate, handshake, no CA).
    #[error("{upstream}: TLS: {why}")]
    Tls {
        /// Which.
        upstream: Upstream,
        /// Why.
        why: String,
    },
    /// HTTP/2 failed, or its answer was not a DNS answer (DoH).
    #[error("{upstream}: HTTP: {why}")]
    Http {
        /// Which.
        upstream: Upstream,
        /// Why.
        why: String,
    },
    /// No bootstrap server gave the upstream's address.
    #[error("{upstream}: no address from the bootstrap servers: {why}")]
    Bootstrap {
        /// Which.
        upstream: Upstream,
        /// Why.
        why: String,
    },
    /// Every upstream failed; the last reason.
    #[error("every upstream failed; last: {0}")]
    AllFailed(Box<UpstreamError>),
}

/// The health of one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Health {
    /// Answers received.
    pub answered: u64,
    /// Failures.
    pub failed: u64,
    /// Failures in a row (0: healthy).
    pub failing: u32,
    /// The last answer's round trip, in milliseconds.
    pub last_rtt_ms: u32,
    /// Why the last failure failed (the whole chain), while failing.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The connections kept for one upstream.
#[derive(Default)]
struct Kept {
    /// Idle DNS-over-TLS connections.
    tls: tls::Pool<TlsStream<TcpStream>>,
    /// The HTTP/2 connection of a DoH upstream (held while connecting, so
    /// questions arriving meanwhile share the new one).
    h2: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("tls_idle", &self.tls.idle())
            .finish_non_exhaustive()
    }
}

/// A group of upstreams asked in order of health.
#[derive(Debug)]
pub struct UpstreamGroup {
    upstreams: Vec<Upstream>,
    mark: Option<u32>,
    tls: TlsClient,
    /// `tls` offering HTTP/2 (ALPN h2), for DoH.
    h2_tls: TlsClient,
    /// Plain DNS servers finding the upstreams given by name.
    bootstrap: Vec<Upstream>,
    addresses: bootstrap::Addresses,
    kept: Vec<Kept>,
    health: Mutex<Vec<Health>>,
}

impl UpstreamGroup {
    /// `mark`: the packet mark for every socket (the tunnel's), if any;
    /// `tls`: for `tls://` and `https://` upstreams; `bootstrap`: plain DNS
    /// servers asked for the address of upstreams given by name.
    pub fn new(upstreams: Vec<Upstream>, mark: Option<u32>, tls: TlsClient, bootstrap: Vec<Upstream>) -> UpstreamGroup {
        let health = Mutex::new(vec![Health::default(); upstreams.len()]);
        let kept = upstreams.iter().map(|_| Kept::default()).collect();
        UpstreamGroup {
            upstreams,
            mark,
            h2_tls: tls::with_h2(&tls),
            tls,
            bootstrap,
            addresses: bootstrap::Addresses::default(),
            kept,
            health,
        }
    }

    /// The upstreams and their health.
    pub fn health(&self) -> Vec<(Upstream, Health)> {
        let health = self.health.lock().map(|h| h.clone()).unwrap_or_default();
        self.upstreams.iter().cloned().zip(health).collect()
    }

    /// Asks `query` (its id is ours); the answer and who gave it.
    pub async fn ask(&self, query: &Message) -> Result<(Message, Upstream), UpstreamError> {
        let Some(first) = self.upstreams.first() else {
            return Err(UpstreamError::NoneConfigured);
        };
        let bytes = query.to_vec().map_err(|_| UpstreamError::Garbled(first.clone()))?;
        // Healthy first (fewest failures in a row), then configured order.
        let mut order: Vec<usize> = (0..self.upstreams.len()).collect();
        if let Ok(h) = self.health.lock() {
            order.sort_by_key(|&i| (h.get(i).map_or(0, |x| x.failing.min(3)), i));
        }
        let deadline = tokio::time::Instant::now() + BUDGET;
        let mut last = None;
        let mut fallback = None;
        for i in order {
            let up = &self.upstreams[i];
            let started = Instant::now();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let attempt = tokio::time::timeout(left.min(TRY_TIMEOUT), self.try_one(i, up, query, &bytes)).await;
            let mut result = match attempt {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout(up.clone())),
            };
            // SERVFAIL or REFUSED: this upstream cannot answer now; another
            // may (kept as the answer if none does).
            if let Ok(m) = &result {
                if matches!(
                    m.metadata.response_code,
                    hickory_proto::op::ResponseCode::ServFail | hickory_proto::op::ResponseCode::Refused
                ) {
                    fallback = result.ok().map(|m| (m, up.clone()));
                    result = Err(UpstreamError::Refused(up.clone()));
                }
            }
            // A server found by name that fails is looked up again next time
            // (it may have moved).
            if let (Err(_), Some(name)) = (&result, up.name.as_deref().filter(|_| up.by_bootstrap())) {
                self.addresses.forget(name);
            }
            if let Ok(mut h) = self.health.lock() {
                if let Some(h) = h.get_mut(i) {
                    match &result {
                        Ok(_) => {
                            h.answered += 1;
                            h.failing = 0;
                            h.last_error = None;
                            h.last_rtt_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
                        }
                        Err(e) => {
                            if h.failing == 0 {
                                tracing::warn!(error = %error_chain(e), "upstream failing");
                            }
                            h.failed += 1;
                            h.failing = h.failing.saturating_add(1);
                            h.last_error = Some(error_chain(e));
                        }
                    }
                }
            }
            match result {
                Ok(m) => return Ok((m, up.clone())),
                Err(e) => {
                    tracing::debug!(error = %e, "upstream failed");
                    last = Some(e);
                }
            }
        }
        if let Some(answer) = fallback {
            return Ok(answer);
        }
        Err(UpstreamError::AllFailed(Box::new(
            last.unwrap_or_else(|| UpstreamError::Timeout(first.clone())),
        )))
    }

    async fn try_one(&self, i: usize, up: &Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        // The TLS and HTTPS futures (handshakes, HTTP/2 state) are boxed:
        // inline they made every forwarded question's task as large as an
        // HTTP/2 exchange, plain UDP included — up to 1,024 of them at once
        // (the cache-miss benchmark's memory doubled).
        match up.protocol {
            UpstreamProtocol::Tls => Box::pin(self.over_tls(i, up, query, bytes)).await,
            UpstreamProtocol::Https => Box::pin(self.over_https(i, up, query, bytes)).await,
            UpstreamProtocol::Tcp | UpstreamProtocol::Udp => self.plain(up, query, bytes).await,
        }
    }

    /// Plain DNS to an address: UDP (TCP if truncated) or TCP.
    async fn plain(&self, up: &Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        if up.protocol == UpstreamProtocol::Tcp {
            return self.over_tcp(up, query, bytes).await;
        }
        let answer = self.over_udp(up, query, bytes).await?;
        if answer.metadata.truncation {
            self.over_tcp(up, query, bytes).await
        } else {
            Ok(answer)
        }
    }

    fn socket(&self, up: &Upstream, addr: SocketAddr, kind: Type, protocol: Protocol) -> Result<Socket, UpstreamError> {
        let io = |source| UpstreamError::Io {
            upstream: up.clone(),
            source,
        };
        let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol)).map_err(io)?;
        if let Some(mark) = self.mark {
            socket.set_mark(mark).map_err(io)?;
        }
        socket.set_nonblocking(true).map_err(io)?;
        Ok(socket)
    }

    async fn over_udp(&self, up: &Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        let io = |source| UpstreamError::Io {
            upstream: up.clone(),
            source,
        };
        let socket = self.socket(up, up.addr, Type::DGRAM, Protocol::UDP)?;
        let any: SocketAddr = match up.addr {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        socket.bind(&any.into()).map_err(io)?;
        let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(io)?;
        socket.connect(up.addr).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            if let Some(answer) = matching(query, &buf[..n]) {
                return Ok(answer);
            }
        }
    }

    async fn connect_tcp(&self, up: &Upstream, addr: SocketAddr) -> Result<TcpStream, UpstreamError> {
        let io = |source| UpstreamError::Io {
            upstream: up.clone(),
            source,
        };
        let socket = self.socket(up, addr, Type::STREAM, Protocol::TCP)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(io(e)),
        }
        let stream = TcpStream::from_std(std::net::TcpStream::from(socket)).map_err(io)?;
        // A question is one small write (HTTP/2: HEADERS then DATA): waiting
        // for the ACK of the first (Nagle) against the server's delayed ACK
        // cost 40 ms per question on a kept connection.
        stream.set_nodelay(true).map_err(io)?;
        stream.writable().await.map_err(io)?;
        if let Some(e) = stream.take_error().map_err(io)? {
            return Err(io(e));
        }
        Ok(stream)
    }

    async fn over_tcp(&self, up: &Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        let mut stream = self.connect_tcp(up, up.addr).await?;
        exchange(&mut stream, up, query, bytes).await
    }

    /// Where `up` is reached: its address, or for one given by name the
    /// address the bootstrap servers gave (kept for its TTL).
    async fn address(&self, up: &Upstream) -> Result<SocketAddr, UpstreamError> {
        let Some(name) = up.name.as_deref().filter(|_| up.by_bootstrap()) else {
            return Ok(up.addr);
        };
        if let Some(ip) = self.addresses.get(name, Instant::now()) {
            return Ok(SocketAddr::new(ip, up.addr.port()));
        }
        let failed = |why: String| UpstreamError::Bootstrap {
            upstream: up.clone(),
            why,
        };
        if self.bootstrap.is_empty() {
            return Err(failed("none is configured".into()));
        }
        // A, then AAAA only from a server that answered without an A record:
        // a silent server costs one BOOTSTRAP_TIMEOUT, within the try.
        let mut why = String::new();
        for server in &self.bootstrap {
            for qtype in [RecordType::A, RecordType::AAAA] {
                let id = (rand_core::OsRng.next_u32() & 0xffff) as u16;
                let question = bootstrap::question(name, qtype, id).map_err(&failed)?;
                let bytes = question.to_vec().map_err(|e| failed(e.to_string()))?;
                let answer = tokio::time::timeout(BOOTSTRAP_TIMEOUT, self.plain(server, &question, &bytes)).await;
                match answer {
                    Ok(Ok(answer)) => {
                        let (ips, keep) = bootstrap::addresses(&answer);
                        if let Some(ip) = bootstrap::usable(&ips, self.mark.is_some()) {
                            self.addresses.put(name, ip, keep, Instant::now());
                            tracing::debug!(upstream = %up, address = %ip, "found through the bootstrap servers");
                            return Ok(SocketAddr::new(ip, up.addr.port()));
                        }
                        why = format!(
                            "{server}: no usable A or AAAA record for {name} ({})",
                            answer.metadata.response_code
                        );
                    }
                    Ok(Err(e)) => {
                        why = error_chain(&e);
                        break;
                    }
                    Err(_) => {
                        why = format!("{server}: no answer in time");
                        break;
                    }
                }
            }
        }
        Err(failed(why))
    }

    /// A TLS session with `up` (at its address or the one found for its
    /// name), the certificate checked against its name (else its address).
    async fn connect_tls(&self, up: &Upstream, config: &TlsClient) -> Result<TlsStream<TcpStream>, UpstreamError> {
        let tls_error = |why: String| UpstreamError::Tls {
            upstream: up.clone(),
            why,
        };
        let config = config.as_ref().map_err(|why| tls_error(why.clone()))?;
        let addr = self.address(up).await?;
        let name = match &up.name {
            Some(_) => tls::server_name(up).map_err(tls_error)?,
            None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
        };
        let stream = self.connect_tcp(up, addr).await?;
        tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| tls_error(e.to_string()))
    }

    /// DNS over TLS on an idle connection of the pool if there is one, else
    /// (or if that one turns out dead: not a failure of the upstream) on a
    /// new one; the connection goes back to the pool after the answer.
    async fn over_tls(&self, i: usize, up: &Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        let pool = &self.kept[i].tls;
        if let Some(mut stream) = pool.take(Instant::now()) {
            match exchange(&mut stream, up, query, bytes).await {
                Ok(answer) => {
                    pool.put(stream, Instant::now());
                    return Ok(answer);
                }
                Err(e) => {
                    tracing::debug!(error = %error_chain(&e), "a kept DNS-over-TLS connection failed; asking on a new one")
                }
            }
        }
        let mut stream = self.connect_tls(up, &self.tls).await?;
        let answer = exchange(&mut stream, up, query, bytes).await?;
        pool.put(stream, Instant::now());
        Ok(answer)
    }

    /// A new HTTP/2 connection to a DoH upstream.
    async fn connect_h2(&self, up: &Upstream) -> Result<SendRequest<Full<Bytes>>, UpstreamError> {
        let http = |why: String| UpstreamError::Http {
            upstream: up.clone(),
            why,
        };
        let stream = self.connect_tls(up, &self.h2_tls).await?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
            return Err(http("the server did not agree to HTTP/2 (ALPN h2)".into()));
        }
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| http(error_chain(&e)))?;
        tokio::spawn(async move {
            // Ends when the group lets go of the sender, or the server closes.
            if let Err(e) = connection.await {
                tracing::debug!(error = %error_chain(&e), "DoH connection ended");
            }
        });
        Ok(sender)
    }

    /// The shared HTTP/2 connection (a new one if there is none, it closed,
    /// or `fresh`); whether it is one that was kept.
    async fn h2_sender(
        &self,
        i: usize,
        up: &Upstream,
        fresh: bool,
    ) -> Result<(SendRequest<Full<Bytes>>, bool), UpstreamError> {
        let mut slot = self.kept[i].h2.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !fresh && !s.is_closed()) {
            return Ok((sender.clone(), true));
        }
        *slot = None;
        let sender = self.connect_h2(up).await?;
        *slot = Some(sender.clone());
        Ok((sender, false))
    }

    /// DNS over HTTPS: a POST on the shared HTTP/2 connection; if that
    /// connection was kept and fails before an answer, once more on a new
    /// one (not a failure of the upstream).
    async fn over_https(
        &self,
        i: usize,
        up: &Upstream,
        query: &Message,
        bytes: &[u8],
    ) -> Result<Message, UpstreamError> {
        let http = |why: String| UpstreamError::Http {
            upstream: up.clone(),
            why,
        };
        let uri = doh::uri(up).map_err(http)?;
        let wire = doh::wire(bytes);
        let (mut sender, kept) = self.h2_sender(i, up, false).await?;
        let response = match sender
            .send_request(doh::request(&uri, wire.clone()).map_err(http)?)
            .await
        {
            Ok(r) => r,
            Err(e) if kept => {
                tracing::debug!(error = %error_chain(&e), "the kept DoH connection failed; asking on a new one");
                let (mut sender, _) = self.h2_sender(i, up, true).await?;
                sender
                    .send_request(doh::request(&uri, wire).map_err(http)?)
                    .await
                    .map_err(|e| http(error_chain(&e)))?
            }
            Err(e) => return Err(http(error_chain(&e))),
        };
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        doh::check_head(response.status().as_u16(), content_type.as_deref()).map_err(|e| http(e.to_string()))?;
        let body = Limited::new(response.into_body(), doh::MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| http(format!("reading the answer: {e}")))?
            .to_bytes();
        doh::answer(query, &body).map_err(|e| http(e.to_string()))
    }
}

/// One length-prefixed question and its answer over a stream (RFC 7766).
async fn exchange<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    stream: &mut S,
    up: &Upstream,
    query: &Message,
    bytes: &[u8],
) -> Result<Message, UpstreamError> {
    let io = |source| UpstreamError::Io {
        upstream: up.clone(),
        source,
    };
    let len = u16::try_from(bytes.len()).map_err(|_| UpstreamError::Garbled(up.clone()))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(io)?;
    matching(query, &buf).ok_or_else(|| UpstreamError::Garbled(up.clone()))
}

/// The answer in `packet` if it answers `query` (same id, a response, the
/// same question), else `None`.
fn matching(query: &Message, packet: &[u8]) -> Option<Message> {
    let answer = Message::from_vec(packet).ok()?;
    let same_question = match (answer.queries.first(), query.queries.first()) {
        (Some(a), Some(q)) => {
            a.query_type() == q.query_type() && a.query_class() == q.query_class() && a.name() == q.name()
        }
        _ => false,
    };
    (answer.metadata.id == query.metadata.id
        && answer.metadata.message_type == hickory_proto::op::MessageType::Response
        && answer.metadata.op_code == hickory_proto::op::OpCode::Query
        && same_question)
        .then_some(answer)
}

#[cfg(test)]
mod future_size {
    use super::*;

    /// Every forwarded question is a task holding this future (up to 1,024
    /// at once): the TLS and HTTPS branches must stay boxed.
    #[test]
    fn a_forwarded_questions_future_stays_small() {
        let group = UpstreamGroup::new(Vec::new(), None, Err(String::new()), Vec::new());
        let query = Message::new(
            1,
            hickory_proto::op::MessageType::Query,
            hickory_proto::op::OpCode::Query,
        );
        let size = std::mem::size_of_val(&group.ask(&query));
        eprintln!("ask future: {size} bytes");
        assert!(size < 2_048, "the future of UpstreamGroup::ask is {size} bytes");
    }
}
