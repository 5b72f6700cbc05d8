//! DHCP in the running daemon: Bulkhead's server (the pure
//! [`DhcpServer`] of `discovery::dhcp`, driven here like the tunnel's state
//! machine), and per segment a capture socket read by its own task that hands
//! packets to the loop over a channel. A packet goes server → core (evidence,
//! lease stored and enforced) → reply: the ACK leaves only after the firewall
//! knows the lease.
//!
//! Serving segments receive on the capture socket too, not on the port-67
//! UDP socket (which only sends): a UDP socket cannot say which Ethernet
//! address sent a datagram, and a message counts only for the MAC that sent
//! it. One whose `chaddr` names another device is dropped and counted before
//! the server sees it ([`DaemonState::dhcp_spoofed`]). The capture sees
//! packets before the inet table does, so a blocked device's messages are
//! dropped here as the input chain drops them for other services.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::MacAddr;
use crate::config::SegmentId;
use crate::control::StatusView;
use crate::discovery::dhcp::{
    server_socket, udp_payload, wire, CaptureError, CaptureSocket, ClientPacket, DhcpServer, LeaseEvent,
};
use crate::firewall::error_chain;
use crate::inventory::UnixTime;
use crate::policy::{dhcp_segments, observing_interfaces};

use super::DaemonState;

/// The largest DHCP datagram read (BOOTP minimum is 576; options may go past).
const MAX_DATAGRAM: usize = 1500;

/// A packet for the state owner.
pub enum DhcpIn {
    /// A datagram to our server on a serving segment; answer on `socket`.
    Request {
        /// Segment.
        segment: SegmentId,
        /// Payload.
        bytes: Vec<u8>,
        /// The Ethernet source of the frame that carried it.
        sender: Option<MacAddr>,
        /// Where to answer.
        socket: Arc<UdpSocket>,
    },
    /// A client packet captured on an observing segment (or why it was dropped).
    Captured(Result<ClientPacket, CaptureError>),
}

/// What the loop hears from DHCP.
pub enum DhcpEvent {
    /// A packet from a socket task (boxed: it carries evidence).
    Packet(Box<DhcpIn>),
    /// Time to look at the observed lease file again.
    LeaseFileDue,
}

/// The server, the open sockets by interface, and the observed lease file.
pub struct DhcpIo {
    server: DhcpServer,
    open: BTreeMap<String, JoinHandle<()>>,
    tx: mpsc::Sender<DhcpIn>,
    rx: mpsc::Receiver<DhcpIn>,
    lease_file: LeaseFileWatch,
    lease_file_tick: tokio::time::Interval,
}

impl DhcpIo {
    /// The server for the config's serving segments, with the stored leases
    /// (expired ones end at the first tick). No socket is open yet: [`sync`](Self::sync).
    pub fn new(state: &DaemonState) -> anyhow::Result<Self> {
        use anyhow::Context;
        let leases = state.stored_leases().context("loading DHCP leases")?;
        let (tx, rx) = mpsc::channel(256);
        Ok(DhcpIo {
            server: DhcpServer::new(dhcp_segments(&state.config), leases),
            open: BTreeMap::new(),
            tx,
            rx,
            lease_file: LeaseFileWatch::default(),
            lease_file_tick: tokio::time::interval(std::time::Duration::from_secs(1)),
        })
    }

    /// The next event (cancel-safe; the sender is held here, so the channel
    /// never closes).
    pub async fn next(&mut self) -> DhcpEvent {
        tokio::select! {
            Some(msg) = self.rx.recv() => DhcpEvent::Packet(Box::new(msg)),
            _ = self.lease_file_tick.tick() => DhcpEvent::LeaseFileDue,
        }
    }

    /// Handles one event. A packet: the server decides, the core takes it in
    /// (and enforces any lease), then the reply, if any, is sent.
    pub async fn on_event(&mut self, event: DhcpEvent, state: &mut DaemonState, now: UnixTime) {
        let msg = match event {
            DhcpEvent::Packet(msg) => *msg,
            DhcpEvent::LeaseFileDue => return self.poll_lease_file(state, now),
        };
        match msg {
            DhcpIn::Request {
                segment,
                bytes,
                sender,
                socket,
            } => {
                if let (Some(sender), Some(claimed)) = (sender, wire::chaddr(&bytes)) {
                    if sender != claimed {
                        return state.dhcp_spoofed(sender, claimed, now);
                    }
                    if state.is_blocked(&sender) {
                        return;
                    }
                }
                let handled = self.server.handle(&segment, &bytes, now);
                if let Some(reply) = state.dhcp_handled(&segment, handled, now) {
                    if let Err(e) = socket.send_to(&reply.bytes, reply.to).await {
                        tracing::warn!(%segment, to = %reply.to, error = %e, "DHCP reply not sent");
                    }
                }
            }
            DhcpIn::Captured(packet) => state.captured(packet, now),
        }
    }

    /// Observer mode: the other server's lease file, if it changed.
    pub fn poll_lease_file(&mut self, state: &mut DaemonState, now: UnixTime) {
        self.lease_file.poll(state, now);
    }

    /// The wall clock jumped by `delta` seconds: leases keep the time they
    /// had left (persisted again with their new ends).
    pub fn clock_jumped(&mut self, state: &mut DaemonState, delta: i64) {
        let before = crate::inventory::unix_now().saturating_sub(delta);
        let moves = |t: UnixTime| crate::clock::deadline_moves(t, before);
        state.persist_leases(&self.server.shift_deadlines(delta, &moves));
    }

    /// Leases and offers that are due end.
    pub fn tick(&mut self, state: &mut DaemonState, now: UnixTime) {
        for event in self.server.handle_timeout(now) {
            state.lease_event(event, now);
        }
    }

    /// After a reload the core accepted: leases that no longer fit (a pool
    /// shrank, a segment stopped serving) end now, and their addresses leave
    /// the sets.
    pub fn reconfigure(&mut self, state: &mut DaemonState, now: UnixTime) {
        for lease in self.server.reconfigure(dhcp_segments(&state.config)) {
            state.lease_event(LeaseEvent::Expired(lease), now);
        }
    }

    /// The server's part of `bulkhead status`.
    pub fn fill_status(&self, status: &mut StatusView) {
        status.leases = self.server.leases().count();
        status.dhcp = self
            .server
            .segments()
            .filter_map(|s| self.server.counters(&s.id).map(|c| (s.id.clone(), *c)))
            .collect();
        status.dhcp_malformed += status.dhcp.iter().map(|(_, c)| c.malformed).sum::<u64>();
    }

    /// Opens what the config asks for and is not open yet; closes what it no
    /// longer asks for. An interface that does not exist yet is retried at the
    /// next link change.
    pub fn sync(&mut self, state: &DaemonState) {
        let tx = &self.tx;
        let serving: Vec<(SegmentId, String)> = self
            .server
            .segments()
            .map(|s| (s.id.clone(), s.interface.clone()))
            .collect();
        let observing = observing_interfaces(&state.config);
        let wanted: Vec<String> = serving
            .iter()
            .map(|(_, i)| i.clone())
            .chain(observing.iter().cloned())
            .collect();
        self.open.retain(|iface, task| {
            let keep = wanted.contains(iface);
            if !keep {
                task.abort();
            }
            keep
        });
        for (segment, iface) in serving {
            if self.open.contains_key(&iface) {
                continue;
            }
            match serving_sockets(&iface) {
                Ok((capture, sock)) => {
                    tracing::info!(%segment, interface = %iface, "DHCP server listening");
                    let task = tokio::spawn(serve(segment, capture, Arc::new(sock), tx.clone()));
                    self.open.insert(iface, task);
                }
                Err(e) => tracing::warn!(interface = %iface, error = %e, "DHCP server socket not open yet"),
            }
        }
        for iface in observing {
            if self.open.contains_key(&iface) {
                continue;
            }
            match CaptureSocket::open(&iface) {
                Ok(cap) => {
                    tracing::info!(interface = %iface, "observing DHCP clients");
                    let task = tokio::spawn(capture(cap, tx.clone()));
                    self.open.insert(iface, task);
                }
                Err(e) => tracing::warn!(interface = %iface, error = %error_chain(&e), "DHCP capture not open yet"),
            }
        }
    }
}

impl Drop for DhcpIo {
    fn drop(&mut self) {
        for task in self.open.values() {
            task.abort();
        }
    }
}

/// A serving segment's two sockets: the capture that receives (with each
/// frame's sender) and the port-67 UDP socket that sends replies. The UDP
/// socket is given a filter that drops everything it would receive, so
/// nothing queues on it unread.
fn serving_sockets(iface: &str) -> anyhow::Result<(CaptureSocket, UdpSocket)> {
    let udp = server_socket(iface)?;
    socket2::SockRef::from(&udp).attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])?;
    let capture = CaptureSocket::open(iface)?;
    Ok((capture, udp))
}

async fn serve(segment: SegmentId, capture: CaptureSocket, socket: Arc<UdpSocket>, tx: mpsc::Sender<DhcpIn>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match capture.recv_from_mac(&mut buf).await {
            Ok((n, sender)) => {
                // Not a whole UDP datagram to port 67 (the filter lets
                // little else through): nothing for the server.
                let Ok(payload) = udp_payload(buf.get(..n).unwrap_or_default()) else {
                    continue;
                };
                let msg = DhcpIn::Request {
                    segment: segment.clone(),
                    bytes: payload.to_vec(),
                    sender,
                    socket: socket.clone(),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(%segment, error = %e, "DHCP receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn capture(socket: CaptureSocket, tx: mpsc::Sender<DhcpIn>) {
    loop {
        match socket.recv_client_packet().await {
            Ok(p) => {
                if tx.send(DhcpIn::Captured(p)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(interface = socket.interface(), error = %e, "DHCP capture failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Observer mode: reads the other server's lease file when it changed.
#[derive(Default)]
struct LeaseFileWatch {
    last: Option<std::time::SystemTime>,
}

impl LeaseFileWatch {
    /// Checks the file (cheap: one stat) and feeds new contents to the state.
    fn poll(&mut self, state: &mut DaemonState, now: crate::inventory::UnixTime) {
        if observing_interfaces(&state.config).is_empty() {
            return;
        }
        let path = state.config.dhcp.observe_lease_file.clone();
        let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
            return;
        };
        if self.last == Some(modified) {
            return;
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                self.last = Some(modified);
                // Lease files hold device-supplied names: read as lossy text.
                let (leases, skipped) = crate::discovery::dhcp::parse_leases(&String::from_utf8_lossy(&bytes));
                if skipped > 0 {
                    tracing::debug!(skipped, file = %path.display(), "lease file lines skipped");
                }
                state.observed_leases(&leases, now);
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read the observed lease file"),
        }
    }
}
