//! Sharing services across zones: a zone-aware mDNS proxy (see `proxy.rs`)
//! that opens pinholes to exactly what a shared device announced.
//!
//! A service beside the core: it reads the inventory snapshot (who sends,
//! in which zone), answers mDNS questions per segment, and asks the core to
//! hold pinholes (`ServiceRequest::Pinholes`) for the announcement's
//! lifetime. It writes no nft and touches no store.
//!
//! - `rules.rs` (pure): which zone may see which service type from which.
//! - `proxy.rs` (pure): the proxy's state machine (packets and time in,
//!   datagrams and pinholes out).
//! - this file: the sockets (one per segment, bound to its interface) and
//!   the task.

pub mod limits;
pub mod proxy;
pub mod rules;
pub mod ssdp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::core::ServiceRequest;
use crate::runtime::services::ServiceHandle;
pub use proxy::{Action, Proxy, ProxyCounters, SegmentInfo, MDNS_PORT, MDNS_V4};
pub use rules::Sharing;
pub use ssdp::{SsdpCounters, SsdpProxy, SSDP_PORT, SSDP_V4};

/// What the proxy is started with; a reload restarts it when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSettings {
    /// The `[[share]]` rules.
    pub rules: Vec<crate::config::ShareRule>,
    /// The segments (interface, subnet, the router's address on it).
    pub segments: Vec<(SegmentInfo, Ipv4Addr)>,
}

impl ShareSettings {
    /// None when nothing is shared (or there is no segment).
    pub fn from_config(config: &crate::config::Config) -> Option<ShareSettings> {
        if config.policy.shares.is_empty() || config.segments.is_empty() {
            return None;
        }
        Some(ShareSettings {
            rules: config.policy.shares.clone(),
            segments: config
                .segments
                .iter()
                .map(|s| {
                    (
                        SegmentInfo {
                            interface: s.interface.clone(),
                            ipv4: s.ipv4.trunc(),
                        },
                        s.ipv4.addr(),
                    )
                })
                .collect(),
        })
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// A segment's mDNS or SSDP socket.
    #[error("{what} socket on {interface}")]
    Socket {
        /// mDNS or SSDP.
        what: &'static str,
        /// The segment's interface.
        interface: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What `bulkhead status` shows of the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShareStatus {
    /// The mDNS side's counters.
    pub counters: ProxyCounters,
    /// The SSDP side's counters.
    #[serde(default)]
    pub ssdp: SsdpCounters,
    /// The shared instances in the cache.
    pub shared: Vec<SharedService>,
}

/// One shared instance, as `bulkhead status` and the device page show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedService {
    /// Service type, `_googlecast._tcp`.
    pub service: String,
    /// Instance name as announced (network input: hostile).
    pub instance: String,
    /// The device's address it came from.
    pub address: IpAddr,
    /// Its announced port.
    pub port: u16,
    /// The device's zone.
    pub zone: String,
    /// The zones it is shared to.
    pub to: Vec<String>,
}

/// The running proxy; dropping it stops the task and closes the sockets.
pub struct ShareService {
    settings: ShareSettings,
    status: Arc<Mutex<ShareStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ShareService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShareService {
    /// Binds a socket per segment and starts the task.
    pub fn start(settings: ShareSettings, handle: ServiceHandle) -> Result<ShareService, ShareError> {
        let mut sockets = Vec::new();
        for (seg, router) in &settings.segments {
            for (what, group, port) in [("mDNS", MDNS_V4, MDNS_PORT), ("SSDP", SSDP_V4, SSDP_PORT)] {
                let socket =
                    group_socket(&seg.interface, *router, group, port).map_err(|source| ShareError::Socket {
                        what,
                        interface: seg.interface.clone(),
                        source,
                    })?;
                sockets.push(Arc::new(socket));
            }
        }
        let status = Arc::new(Mutex::new(ShareStatus::default()));
        let proxy = Proxy::new(
            Sharing::new(settings.rules.clone()),
            settings.segments.iter().map(|(s, _)| s.clone()).collect(),
        );
        let ssdp = SsdpProxy::new(
            Sharing::new(settings.rules.clone()),
            settings.segments.iter().map(|(s, _)| s.clone()).collect(),
        );
        let routers: Vec<IpAddr> = settings.segments.iter().map(|(_, r)| IpAddr::V4(*r)).collect();
        let task = tokio::spawn(run(proxy, ssdp, sockets, routers, handle, status.clone()));
        tracing::info!(
            shares = settings.rules.len(),
            segments = settings.segments.len(),
            "share proxy running"
        );
        Ok(ShareService { settings, status, task })
    }

    /// What it was started with.
    pub fn settings(&self) -> &ShareSettings {
        &self.settings
    }

    /// Its counters and cache.
    pub fn status(&self) -> ShareStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A UDP socket on `port` bound to `interface`, in `group` there (mDNS,
/// SSDP); our own datagrams do not loop back to the router's other
/// listeners (the discovery browser must not take the proxy's answers for a
/// device's).
fn group_socket(interface: &str, router: Ipv4Addr, group: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.join_multicast_v4(&group, &router)?;
    s.set_multicast_if_v4(&router)?;
    s.set_multicast_loop_v4(false)?;
    s.set_multicast_ttl_v4(255)?;
    s.set_ttl_v4(255)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Sockets come in pairs per segment: `2 * segment` mDNS, `2 * segment + 1` SSDP.
async fn run(
    mut proxy: Proxy,
    mut ssdp: SsdpProxy,
    sockets: Vec<Arc<UdpSocket>>,
    routers: Vec<IpAddr>,
    handle: ServiceHandle,
    status: Arc<Mutex<ShareStatus>>,
) {
    let (tx, mut rx) = mpsc::channel::<(usize, SocketAddr, Vec<u8>)>(256);
    let mut readers = Vec::new();
    for (i, s) in sockets.iter().enumerate() {
        let (s, tx) = (s.clone(), tx.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 9000];
            loop {
                match s.recv_from(&mut buf).await {
                    Ok((n, src)) => {
                        if tx.send((i, src, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "mDNS receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    let _abort = AbortOnDrop(readers);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut listed: Option<u64> = None;
    loop {
        // Each action with its side (true: SSDP): SSDP's sends go to its
        // sockets.
        let mut queue: Vec<(bool, Action)> = tokio::select! {
            Some((socket, src, packet)) = rx.recv() => {
                // The router's own (the discovery browser's) questions.
                if routers.contains(&src.ip()) {
                    continue;
                }
                let now = crate::inventory::unix_now();
                let (segment, is_ssdp) = (socket / 2, socket % 2 == 1);
                let Ok(inv) = handle.inventory.read() else { return };
                let actions = if is_ssdp {
                    ssdp.on_packet(segment, src, &packet, &inv, now)
                } else {
                    proxy.on_packet(segment, src, &packet, &inv, now)
                };
                actions.into_iter().map(|a| (is_ssdp, a)).collect()
            }
            _ = tick.tick() => {
                let now = crate::inventory::unix_now();
                let Ok(inv) = handle.inventory.read() else { return };
                let mdns = proxy.tick(&inv, now).into_iter().map(|a| (false, a));
                mdns.chain(ssdp.tick(&inv, now).into_iter().map(|a| (true, a))).collect()
            }
        };
        // A close from one side re-opens what the other still holds into
        // that address.
        let mut reopened = Vec::new();
        for (from_ssdp, a) in &queue {
            if let Action::Close { address } = a {
                if *from_ssdp {
                    reopened.extend(proxy.reopen(*address).into_iter().map(|x| (false, x)));
                } else {
                    reopened.extend(ssdp.reopen(*address).into_iter().map(|x| (true, x)));
                }
            }
        }
        queue.extend(reopened);
        for (from_ssdp, action) in queue {
            match action {
                Action::Send { segment, to, packet } => {
                    if let Some(s) = sockets.get(2 * segment + usize::from(from_ssdp)) {
                        if let Err(e) = s.send_to(&packet, to).await {
                            tracing::debug!(error = %e, %to, "mDNS send failed");
                        }
                    }
                }
                Action::Open {
                    zone,
                    pinholes,
                    ttl_secs,
                } => {
                    let n = pinholes.len();
                    let request = ServiceRequest::Pinholes {
                        zone: zone.clone(),
                        pinholes,
                        ttl_secs,
                    };
                    match handle.request(request).await {
                        Ok(crate::core::ServiceReply::Held(held)) if held.fresh > 0 => {
                            tracing::info!(%zone, pinholes = n, fresh = held.fresh, "pinholes opened");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(%zone, pinholes = n, error = %e, "could not open pinholes"),
                    }
                }
                Action::Close { address } => match handle.request(ServiceRequest::ClosePinholes { address }).await {
                    Ok(_) => tracing::info!(%address, "pinholes closed"),
                    Err(e) => tracing::warn!(%address, error = %e, "could not close pinholes"),
                },
            }
        }
        if let Ok(mut s) = status.lock() {
            s.counters = proxy.counters();
            s.ssdp = ssdp.counters();
            // The list only when it changed: not a copy of the cache per datagram.
            if listed != Some(proxy.revision()) {
                s.shared = proxy.shared();
                listed = Some(proxy.revision());
            }
        }
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests;
