//! SSDP as a discovery source: what devices say about themselves in UPnP —
//! the `SERVER` header of their announcements and answers, and the facts of
//! the device description their LOCATION points at (manufacturer, model,
//! device type, friendly name) — as evidence for classification.
//!
//! - `wire.rs` (pure): SSDP messages, parsed defensively (the share proxy
//!   uses it too).
//! - `description.rs` (pure): the few facts of a description.
//! - this file (the edge): per LAN interface, a socket bound to the SSDP
//!   group (only multicast reaches it: the share proxy keeps the unicast on
//!   1900) and a search socket on [`SEARCH_PORT`] whose answers come back
//!   unicast (the input chain's `lan-ssdp` rule lets them in), and a bounded
//!   HTTP GET of a description — only from the address that sent the
//!   LOCATION, once per hour per address, 64 KiB, a few seconds.

pub mod description;
pub mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::classify::{bounded, Evidence};
use wire::{location_endpoint, parse, Message, SSDP_PORT, SSDP_V4};

/// The port Bulkhead's own searches are sent from (their answers come back
/// to it; nothing else listens there).
pub const SEARCH_PORT: u16 = 1901;
/// A search for everything, this often.
const SEARCH_EVERY: Duration = Duration::from_secs(600);
/// One description per address at most this often.
const FETCH_EVERY: Duration = Duration::from_secs(3600);
/// Addresses remembered for [`FETCH_EVERY`].
const MAX_REMEMBERED: usize = 4096;
/// Descriptions fetched at once, at most.
const MAX_FETCHES: usize = 4;

/// What one device said over SSDP/UPnP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsdpObservation {
    /// The address it came from (and the description was fetched from).
    pub address: IpAddr,
    /// The LAN interface it arrived on.
    pub interface: String,
    /// `upnp` evidence.
    pub evidence: Evidence,
}

/// Why the watcher could not start on an interface.
#[derive(Debug, thiserror::Error)]
#[error("SSDP socket on {interface}")]
pub struct SsdpError {
    /// The interface.
    pub interface: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The running watcher; dropping it stops it.
pub struct SsdpWatcher {
    observations: mpsc::Receiver<SsdpObservation>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SsdpWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SsdpWatcher {
    /// Listens on each LAN `(interface, router address)`.
    pub fn start(lan: &[(String, Ipv4Addr)]) -> Result<SsdpWatcher, SsdpError> {
        let mut sockets = Vec::new();
        for (interface, router) in lan {
            let err = |source| SsdpError {
                interface: interface.clone(),
                source,
            };
            let group = socket(interface, *router, SocketAddr::from((SSDP_V4, SSDP_PORT)), true).map_err(err)?;
            let search = socket(
                interface,
                *router,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, SEARCH_PORT)),
                false,
            )
            .map_err(err)?;
            sockets.push((interface.clone(), Arc::new(group), Arc::new(search)));
        }
        let (tx, observations) = mpsc::channel(64);
        let task = tokio::spawn(run(sockets, tx));
        Ok(SsdpWatcher { observations, task })
    }

    /// The next observation (cancel-safe).
    pub async fn next(&mut self) -> Option<SsdpObservation> {
        self.observations.recv().await
    }
}

fn socket(interface: &str, router: Ipv4Addr, bind: SocketAddr, join: bool) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&bind.into())?;
    if join {
        s.join_multicast_v4(&SSDP_V4, &router)?;
    }
    s.set_multicast_if_v4(&router)?;
    s.set_multicast_loop_v4(false)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

type Sockets = Vec<(String, Arc<UdpSocket>, Arc<UdpSocket>)>;

async fn run(sockets: Sockets, tx: mpsc::Sender<SsdpObservation>) {
    let (rx_tx, mut rx) = mpsc::channel::<(String, SocketAddr, Vec<u8>)>(256);
    let mut readers = Vec::new();
    for (interface, group, search) in &sockets {
        for s in [group.clone(), search.clone()] {
            let (tx, interface) = (rx_tx.clone(), interface.clone());
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.recv_from(&mut buf).await {
                        Ok((n, src)) => {
                            if tx.send((interface.clone(), src, buf[..n].to_vec())).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }));
        }
    }
    let _stop = Readers(readers);
    let search =
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: ssdp:all\r\n\r\n";
    let mut every = tokio::time::interval(SEARCH_EVERY);
    let mut fetched: BTreeMap<IpAddr, Instant> = BTreeMap::new();
    let (done_tx, mut done) = mpsc::channel::<()>(MAX_FETCHES);
    let mut in_flight = 0usize;
    loop {
        tokio::select! {
            _ = every.tick() => {
                for (_, _, s) in &sockets {
                    let _ = s.send_to(search, SocketAddr::from((SSDP_V4, SSDP_PORT))).await;
                }
            }
            Some(()) = done.recv() => in_flight = in_flight.saturating_sub(1),
            Some((interface, src, packet)) = rx.recv() => {
                let announcement = match parse(&packet) {
                    Some(Message::Notify { alive: true, announcement } | Message::Response(announcement)) => announcement,
                    _ => continue,
                };
                let now = Instant::now();
                if fetched.get(&src.ip()).is_some_and(|at| now.duration_since(*at) < FETCH_EVERY) {
                    continue;
                }
                if fetched.len() >= MAX_REMEMBERED {
                    fetched.retain(|_, at| now.duration_since(*at) < FETCH_EVERY);
                    if fetched.len() >= MAX_REMEMBERED {
                        continue;
                    }
                }
                let mut evidence = Evidence::default();
                if let Some(server) = &announcement.server {
                    evidence.upnp.insert("server".into(), bounded(server.as_bytes()));
                }
                // The description only from the device that points at it.
                let target = announcement
                    .location
                    .as_deref()
                    .and_then(|l| Some((location_endpoint(l)?, location_path(l)?)))
                    .filter(|((ip, _), _)| *ip == src.ip());
                if target.is_some() && in_flight >= MAX_FETCHES {
                    // Busy: try with its next announcement.
                    continue;
                }
                fetched.insert(src.ip(), now);
                let (tx, done_tx) = (tx.clone(), done_tx.clone());
                let Some(((ip, port), path)) = target else {
                    if !evidence.upnp.is_empty() {
                        let _ = tx.send(SsdpObservation { address: src.ip(), interface, evidence }).await;
                    }
                    continue;
                };
                in_flight += 1;
                tokio::spawn(async move {
                    match fetch(SocketAddr::new(ip, port), &path).await {
                        Ok(body) => evidence.upnp.extend(description::parse_description(&body)),
                        Err(e) => tracing::debug!(%ip, error = %e, "UPnP description not fetched"),
                    }
                    if !evidence.upnp.is_empty() {
                        let _ = tx.send(SsdpObservation { address: ip, interface, evidence }).await;
                    }
                    let _ = done_tx.send(()).await;
                });
            }
        }
    }
}

struct Readers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for r in &self.0 {
            r.abort();
        }
    }
}

/// The path of an `http://host:port/path` LOCATION: printable, no spaces,
/// at most 256 bytes.
pub fn location_path(location: &str) -> Option<String> {
    let rest = location.strip_prefix("http://")?;
    let path = &rest[rest.find('/')?..];
    (path.len() <= 256 && path.bytes().all(|b| b.is_ascii_graphic())).then(|| path.to_string())
}

/// `GET path` from `addr`, HTTP/1.0: the body of a 200 answer, at most
/// [`description::MAX_DESCRIPTION`] bytes, within 4 seconds in all.
async fn fetch(addr: SocketAddr, path: &str) -> std::io::Result<Vec<u8>> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: bulkhead\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut got = Vec::new();
        let limit = description::MAX_DESCRIPTION as u64 + 8192;
        stream.take(limit).read_to_end(&mut got).await?;
        let split = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no end of headers"))?;
        let status = got.split(|b| *b == b'\n').next().unwrap_or_default();
        if !(status.starts_with(b"HTTP/1.") && status.get(9..12) == Some(b"200")) {
            return Err(std::io::Error::other("not a 200 answer"));
        }
        Ok(got[split + 4..].to_vec())
    };
    tokio::time::timeout(Duration::from_secs(4), work)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_paths_are_bounded_and_printable() {
        assert_eq!(
            location_path("http://10.0.2.10:8200/rootDesc.xml").as_deref(),
            Some("/rootDesc.xml")
        );
        assert_eq!(location_path("http://10.0.2.10:8200"), None);
        assert_eq!(location_path("http://10.0.2.10/a b"), None);
        assert_eq!(location_path(&format!("http://10.0.2.10/{}", "a".repeat(300))), None);
    }
}
