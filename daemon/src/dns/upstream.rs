//! Asking the upstream resolvers: UDP (TCP when the answer is truncated),
//! TCP, or DNS over TLS, in order of health, each with a timeout, within one budget per
//! question.
//!
//! Every UDP question uses a fresh socket on a kernel-chosen port and a random
//! id, and only an answer from the upstream's address with that id and the
//! same question is taken (spoofed answers are ignored, not errors). Questions
//! of tunnelled devices go on sockets carrying the tunnel mark: the kernel
//! routes them by Bulkhead's table, through the tunnel or into its blackhole,
//! never out of the WAN.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::config::{Upstream, UpstreamProtocol};
use crate::firewall::error_chain;

/// One try at one upstream.
const TRY_TIMEOUT: Duration = Duration::from_millis(1500);
/// All tries for one question.
const BUDGET: Duration = Duration::from_secs(4);

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

/// How `tls://` upstreams are checked: the rustls client config built from
/// `dns.tls_ca_file`, or why there is none.
pub type TlsClient = Result<Arc<rustls::ClientConfig>, String>;

/// Builds the TLS client for `tls://` upstreams: certificates must chain to
/// the CA certificates in `ca_file` (PEM) and name the upstream's address.
pub fn tls_client(ca_file: &Path) -> TlsClient {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        // A CA the library cannot use is skipped, as the system's tools do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate", ca_file.display()));
    }
    // ring, not aws-lc: no cmake/nasm in the OpenWrt build, and ring is in the
    // binary already (boringtun). rustls 0.23.48 deprecates it for lacking
    // post-quantum key exchange; for questions to a resolver we accept that.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A group of upstreams asked in order of health.
#[derive(Debug)]
pub struct UpstreamGroup {
    upstreams: Vec<Upstream>,
    mark: Option<u32>,
    tls: TlsClient,
    health: Mutex<Vec<Health>>,
}

impl UpstreamGroup {
    /// `mark`: the packet mark for every socket (the tunnel's), if any;
    /// `tls`: for `tls://` upstreams.
    pub fn new(upstreams: Vec<Upstream>, mark: Option<u32>, tls: TlsClient) -> UpstreamGroup {
        let health = Mutex::new(vec![Health::default(); upstreams.len()]);
        UpstreamGroup {
            upstreams,
            mark,
            tls,
            health,
        }
    }

    /// The upstreams and their health.
    pub fn health(&self) -> Vec<(Upstream, Health)> {
        let health = self.health.lock().map(|h| h.clone()).unwrap_or_default();
        self.upstreams.iter().copied().zip(health).collect()
    }

    /// Asks `query` (its id is ours); the answer and who gave it.
    pub async fn ask(&self, query: &Message) -> Result<(Message, Upstream), UpstreamError> {
        if self.upstreams.is_empty() {
            return Err(UpstreamError::NoneConfigured);
        }
        let bytes = query.to_vec().map_err(|_| UpstreamError::Garbled(self.upstreams[0]))?;
        // Healthy first (fewest failures in a row), then configured order.
        let mut order: Vec<usize> = (0..self.upstreams.len()).collect();
        if let Ok(h) = self.health.lock() {
            order.sort_by_key(|&i| (h.get(i).map_or(0, |x| x.failing.min(3)), i));
        }
        let deadline = tokio::time::Instant::now() + BUDGET;
        let mut last = None;
        let mut fallback = None;
        for i in order {
            let up = self.upstreams[i];
            let started = Instant::now();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let attempt = tokio::time::timeout(left.min(TRY_TIMEOUT), self.try_one(up, query, &bytes)).await;
            let mut result = match attempt {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout(up)),
            };
            // SERVFAIL or REFUSED: this upstream cannot answer now; another
            // may (kept as the answer if none does).
            if let Ok(m) = &result {
                if matches!(
                    m.metadata.response_code,
                    hickory_proto::op::ResponseCode::ServFail | hickory_proto::op::ResponseCode::Refused
                ) {
                    fallback = result.ok().map(|m| (m, up));
                    result = Err(UpstreamError::Refused(up));
                }
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
                Ok(m) => return Ok((m, up)),
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
            last.unwrap_or(UpstreamError::Timeout(self.upstreams[0])),
        )))
    }

    async fn try_one(&self, up: Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        match up.protocol {
            UpstreamProtocol::Tcp => self.over_tcp(up, query, bytes).await,
            UpstreamProtocol::Tls => self.over_tls(up, query, bytes).await,
            UpstreamProtocol::Udp => {
                let answer = self.over_udp(up, query, bytes).await?;
                if answer.metadata.truncation {
                    self.over_tcp(up, query, bytes).await
                } else {
                    Ok(answer)
                }
            }
        }
    }

    fn socket(&self, up: Upstream, kind: Type, protocol: Protocol) -> Result<Socket, UpstreamError> {
        let io = |source| UpstreamError::Io { upstream: up, source };
        let socket = Socket::new(Domain::for_address(up.addr), kind, Some(protocol)).map_err(io)?;
        if let Some(mark) = self.mark {
            socket.set_mark(mark).map_err(io)?;
        }
        socket.set_nonblocking(true).map_err(io)?;
        Ok(socket)
    }

    async fn over_udp(&self, up: Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        let io = |source| UpstreamError::Io { upstream: up, source };
        let socket = self.socket(up, Type::DGRAM, Protocol::UDP)?;
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

    async fn connect_tcp(&self, up: Upstream) -> Result<TcpStream, UpstreamError> {
        let io = |source| UpstreamError::Io { upstream: up, source };
        let socket = self.socket(up, Type::STREAM, Protocol::TCP)?;
        match socket.connect(&up.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(io(e)),
        }
        let stream = TcpStream::from_std(std::net::TcpStream::from(socket)).map_err(io)?;
        stream.writable().await.map_err(io)?;
        if let Some(e) = stream.take_error().map_err(io)? {
            return Err(io(e));
        }
        Ok(stream)
    }

    async fn over_tcp(&self, up: Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        let mut stream = self.connect_tcp(up).await?;
        exchange(&mut stream, up, query, bytes).await
    }

    /// DNS over TLS: a connection per question for now (pooling is future
    /// work; the cache absorbs most questions). The certificate must be valid
    /// for the upstream's address (1.1.1.1, 9.9.9.9 and 8.8.8.8 carry theirs).
    async fn over_tls(&self, up: Upstream, query: &Message, bytes: &[u8]) -> Result<Message, UpstreamError> {
        let tls = self.tls.as_ref().map_err(|why| UpstreamError::Tls {
            upstream: up,
            why: why.clone(),
        })?;
        let stream = self.connect_tcp(up).await?;
        let name = rustls::pki_types::ServerName::IpAddress(up.addr.ip().into());
        let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| UpstreamError::Tls {
                upstream: up,
                why: e.to_string(),
            })?;
        exchange(&mut stream, up, query, bytes).await
    }
}

/// One length-prefixed question and its answer over a stream (RFC 7766).
async fn exchange<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    stream: &mut S,
    up: Upstream,
    query: &Message,
    bytes: &[u8],
) -> Result<Message, UpstreamError> {
    let io = |source| UpstreamError::Io { upstream: up, source };
    let len = u16::try_from(bytes.len()).map_err(|_| UpstreamError::Garbled(up))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(io)?;
    matching(query, &buf).ok_or(UpstreamError::Garbled(up))
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
