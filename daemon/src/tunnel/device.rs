//! EDGE: the WireGuard data plane. boringtun's `noise::Tunn` does the protocol
//! (no I/O); this module moves packets between a TUN interface and one UDP socket.
//!
//! Three threads, none of them on the daemon's async loop (so a busy tunnel never
//! delays a DHCP answer, and the loop never delays a packet):
//! - **outbound**: TUN → encrypt → UDP. The TUN has virtio-net offloads: one read
//!   returns a TCP super-packet of up to 64 KiB that `recv_multiple` splits into
//!   MTU-sized segments; the resulting datagrams leave in one `sendmmsg`.
//! - **inbound**: UDP → decrypt → TUN. Datagrams arrive by `recvmmsg` (up to
//!   [`BATCH`] per call); decrypted TCP segments of one flow are coalesced (GRO)
//!   into one write.
//! - **timers**: boringtun's timers (keepalives, rekeys, handshake retries) every
//!   [`TIMER_TICK`].
//!
//! Cryptokey routing, both ways: an outgoing packet goes to the peer whose allowed
//! IPs hold its destination (longest prefix), or is dropped; a decrypted packet
//! whose source is not in its peer's allowed IPs is dropped and counted. A peer's
//! endpoint follows the source of its latest authenticated packet (roaming).

use portable_atomic::AtomicU64;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmmsg, sendmmsg, sendmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use socket2::{Domain, Protocol, Socket, Type};
use tun_rs::{DeviceBuilder, GROTable, SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use super::uapi::PeerSnapshot;
use crate::config::WgKey;

/// Packets per batch (one `recvmmsg`/`sendmmsg`, one TUN super-packet).
pub const BATCH: usize = IDEAL_BATCH_SIZE;
/// How often boringtun's timers run.
pub const TIMER_TICK: Duration = Duration::from_millis(100);
/// How long a blocked thread waits before it looks at the stop flag.
const POLL_MS: u16 = 250;
/// WireGuard's data header + tag.
const OVERHEAD: usize = 32;
/// Largest TUN super-packet.
const MAX_TUN_READ: usize = 65535;
/// Most datagrams in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on
/// older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one UDP GSO send (it is one IP datagram until segmented).
const GSO_MAX_BYTES: usize = 65_000;

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The TUN interface could not be created or configured.
    #[error("TUN interface {name}")]
    Tun {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The UDP socket could not be opened.
    #[error("UDP socket on port {port}")]
    Udp {
        /// Port asked for (0: any).
        port: u16,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("starting the {what} thread")]
    Thread {
        /// Which.
        what: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// One peer as the device needs it (endpoint already resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Public key.
    pub public_key: WgKey,
    /// Preshared key.
    pub preshared_key: Option<WgKey>,
    /// Where to send; `None` until resolved or learned from the peer.
    pub endpoint: Option<SocketAddr>,
    /// Allowed IPs.
    pub allowed_ips: Vec<IpNet>,
    /// Persistent keepalive in seconds.
    pub persistent_keepalive: Option<u16>,
}

/// The device's configuration.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// TUN interface name.
    pub ifname: String,
    /// MTU of the TUN interface.
    pub mtu: u16,
    /// Our private key.
    pub private_key: WgKey,
    /// UDP port; `None` or 0: any.
    pub listen_port: Option<u16>,
    /// Peers.
    pub peers: Vec<PeerConfig>,
}

/// Packets dropped, by reason. Every malformed or unwanted input is counted,
/// never a panic.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams that are not WireGuard messages.
    pub rx_malformed: AtomicU64,
    /// Messages for no peer we know (unknown index or key).
    pub rx_unknown_peer: AtomicU64,
    /// Messages boringtun refused (bad tag, replay, wrong key, under load).
    pub rx_rejected: AtomicU64,
    /// Decrypted packets whose source is outside the peer's allowed IPs.
    pub rx_bad_source: AtomicU64,
    /// Outgoing packets with no peer for their destination.
    pub tx_no_route: AtomicU64,
    /// Outgoing packets for a peer without an endpoint.
    pub tx_no_endpoint: AtomicU64,
    /// I/O errors on the TUN or the socket.
    pub io_errors: AtomicU64,
}

/// Counters as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CounterValues {
    /// See [`Counters::rx_malformed`].
    pub rx_malformed: u64,
    /// See [`Counters::rx_unknown_peer`].
    pub rx_unknown_peer: u64,
    /// See [`Counters::rx_rejected`].
    pub rx_rejected: u64,
    /// See [`Counters::rx_bad_source`].
    pub rx_bad_source: u64,
    /// See [`Counters::tx_no_route`].
    pub tx_no_route: u64,
    /// See [`Counters::tx_no_endpoint`].
    pub tx_no_endpoint: u64,
    /// See [`Counters::io_errors`].
    pub io_errors: u64,
}

/// One peer's live state: what `wg show` reports, plus the monotonic times the
/// state machine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Keys, endpoint, allowed IPs, last handshake (wall clock) and transfer.
    pub wg: PeerSnapshot,
    /// Last completed handshake (monotonic).
    pub last_handshake_at: Option<Instant>,
    /// Last authenticated packet received.
    pub last_rx: Option<Instant>,
    /// Last data packet sent.
    pub last_tx: Option<Instant>,
}

struct Peer {
    config: PeerConfig,
    /// Our index for this peer: the upper 24 bits of boringtun's session indices.
    index: u32,
    tunn: Mutex<Tunn>,
    endpoint: Mutex<Option<SocketAddr>>,
    /// Milliseconds since the device started, +1 (0: never).
    last_rx_ms: AtomicU64,
    last_tx_ms: AtomicU64,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
}

impl Peer {
    fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn set_endpoint(&self, addr: SocketAddr) {
        let mut e = self.endpoint.lock().unwrap_or_else(PoisonError::into_inner);
        if *e != Some(addr) {
            *e = Some(addr);
        }
    }
    fn allows(&self, src: IpAddr) -> bool {
        self.config.allowed_ips.iter().any(|n| n.contains(&src))
    }
}

#[derive(Default)]
struct PeerTable {
    peers: Vec<Arc<Peer>>,
}

impl PeerTable {
    /// Longest-prefix match over allowed IPs.
    fn for_destination(&self, dst: IpAddr) -> Option<&Arc<Peer>> {
        self.peers
            .iter()
            .filter_map(|p| {
                p.config
                    .allowed_ips
                    .iter()
                    .filter(|n| n.contains(&dst))
                    .map(|n| n.prefix_len())
                    .max()
                    .map(|len| (len, p))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, p)| p)
    }
    fn by_index(&self, receiver_idx: u32) -> Option<&Arc<Peer>> {
        let index = receiver_idx >> 8;
        self.peers.iter().find(|p| p.index == index)
    }
    fn by_key(&self, key: &[u8; 32]) -> Option<&Arc<Peer>> {
        self.peers.iter().find(|p| &p.config.public_key.0 == key)
    }
}

struct Keys {
    secret: StaticSecret,
    public: PublicKey,
}

struct Shared {
    tun: SyncDevice,
    udp: UdpSocket,
    /// The socket is AF_INET6 and dual-stack (IPv4 peers as mapped addresses).
    udp_v6: bool,
    listen_port: u16,
    mtu: u16,
    started: Instant,
    keys: RwLock<Keys>,
    peers: RwLock<Arc<PeerTable>>,
    next_index: AtomicU64,
    stop: AtomicBool,
    /// UDP GSO (UDP_SEGMENT) works on this kernel and socket; cleared on the
    /// first refusal, then batches go out by `sendmmsg`.
    udp_gso: AtomicBool,
    counters: Counters,
}

impl Shared {
    fn ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
    fn at(&self, ms: u64) -> Option<Instant> {
        (ms != 0).then(|| self.started + Duration::from_millis(ms - 1))
    }
    fn table(&self) -> Arc<PeerTable> {
        self.peers.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
    fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// The socket address to send to (IPv4 mapped on a dual-stack socket).
    /// `addr` as the socket takes it: IPv4 as a mapped address on the
    /// dual-stack socket; `None` for IPv6 on an IPv4-only one.
    fn socket_addr(&self, addr: SocketAddr) -> Option<SocketAddr> {
        match addr {
            SocketAddr::V4(a) if self.udp_v6 => Some(SocketAddr::V6(SocketAddrV6::new(
                a.ip().to_ipv6_mapped(),
                a.port(),
                0,
                0,
            ))),
            SocketAddr::V6(_) if !self.udp_v6 => None,
            other => Some(other),
        }
    }
    fn wire_addr(&self, addr: SocketAddr) -> Option<SockaddrStorage> {
        self.socket_addr(addr).map(SockaddrStorage::from)
    }
    fn send_one(&self, packet: &[u8], to: SocketAddr) {
        let Some(to) = self.socket_addr(to) else {
            self.count(&self.counters.io_errors);
            return;
        };
        if self.udp.send_to(packet, to).is_err() {
            self.count(&self.counters.io_errors);
        }
    }
    fn new_peer(&self, config: PeerConfig) -> Arc<Peer> {
        let index = u32::try_from(self.next_index.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff).unwrap_or(0);
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let tunn = Tunn::new(
            keys.secret.clone(),
            PublicKey::from(config.public_key.0),
            config.preshared_key.as_ref().map(|k| k.0),
            config.persistent_keepalive,
            index,
            None,
        );
        Arc::new(Peer {
            endpoint: Mutex::new(config.endpoint),
            config,
            index,
            tunn: Mutex::new(tunn),
            last_rx_ms: AtomicU64::new(0),
            last_tx_ms: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
        })
    }
}

/// A running tunnel device. Dropping it stops the threads and closes the TUN,
/// which removes the interface and with it its routes (the blackhole under them
/// stays: selected traffic goes nowhere).
pub struct TunnelDevice {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for TunnelDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelDevice")
            .field("listen_port", &self.shared.listen_port)
            .finish_non_exhaustive()
    }
}

fn open_tun(name: &str, mtu: u16) -> io::Result<SyncDevice> {
    // Offloads first (wireguard-go does the same); older kernels or TUN drivers
    // without IFF_VNET_HDR support get a plain device.
    let with_offload = DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .offload(true)
        .enable(true)
        .build_sync();
    match with_offload {
        Ok(d) => Ok(d),
        Err(e) => {
            tracing::warn!(error = %e, "TUN offloads unavailable; one packet per read");
            DeviceBuilder::new().name(name).mtu(mtu).enable(true).build_sync()
        }
    }
}

fn open_udp(port: u16) -> io::Result<(UdpSocket, bool)> {
    let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let v6 = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
        s.set_only_v6(false)?;
        s.bind(&any6.into())?;
        Ok(s)
    });
    let (socket, is_v6) = match v6 {
        Ok(s) => (s, true),
        // A kernel without IPv6 (some router builds): IPv4 only.
        Err(_) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
            (s, false)
        }
    };
    // Room for bursts while a thread is descheduled.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    Ok((socket.into(), is_v6))
}

impl TunnelDevice {
    /// Creates the TUN interface and the socket and starts the threads.
    pub fn start(config: &DeviceConfig) -> Result<TunnelDevice, DeviceError> {
        let tun = open_tun(&config.ifname, config.mtu).map_err(|source| DeviceError::Tun {
            name: config.ifname.clone(),
            source,
        })?;
        let port = config.listen_port.unwrap_or(0);
        let (udp, udp_v6) = open_udp(port).map_err(|source| DeviceError::Udp { port, source })?;
        let listen_port = udp
            .local_addr()
            .map(|a| a.port())
            .map_err(|source| DeviceError::Udp { port, source })?;
        let secret = StaticSecret::from(config.private_key.0);
        let public = PublicKey::from(&secret);
        let shared = Arc::new(Shared {
            tun,
            udp,
            udp_v6,
            listen_port,
            mtu: config.mtu,
            started: Instant::now(),
            keys: RwLock::new(Keys { secret, public }),
            peers: RwLock::new(Arc::new(PeerTable::default())),
            next_index: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            udp_gso: AtomicBool::new(true),
            counters: Counters::default(),
        });
        let mut device = TunnelDevice {
            shared,
            threads: Vec::new(),
        };
        device.set_peers(&config.peers);
        type Loop = fn(Arc<Shared>);
        let loops: [(&'static str, Loop); 3] = [
            ("wg-out", outbound_loop),
            ("wg-in", inbound_loop),
            ("wg-timers", timers_loop),
        ];
        for (name, body) in loops {
            let shared = device.shared.clone();
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(shared))
                .map_err(|source| DeviceError::Thread { what: name, source })?;
            device.threads.push(handle);
        }
        Ok(device)
    }

    /// The UDP port the device listens on.
    pub fn listen_port(&self) -> u16 {
        self.shared.listen_port
    }

    /// The TUN interface's index.
    pub fn ifindex(&self) -> io::Result<u32> {
        self.shared.tun.if_index()
    }

    /// The TUN interface's MTU.
    pub fn mtu(&self) -> u16 {
        self.shared.mtu
    }

    /// Our public key.
    pub fn public_key(&self) -> WgKey {
        WgKey(
            self.shared
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .public
                .to_bytes(),
        )
    }

    /// Our private key (what UAPI's `get` reports; no file read).
    pub fn private_key(&self) -> WgKey {
        WgKey(
            self.shared
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .secret
                .to_bytes(),
        )
    }

    /// Replaces the private key; every session is dropped (new handshakes follow).
    pub fn set_private_key(&self, key: &WgKey) {
        let secret = StaticSecret::from(key.0);
        let public = PublicKey::from(&secret);
        {
            let mut keys = self.shared.keys.write().unwrap_or_else(PoisonError::into_inner);
            if keys.public.as_bytes() == public.as_bytes() {
                return;
            }
            keys.secret = secret.clone();
            keys.public = public;
        }
        for p in &self.shared.table().peers {
            p.tunn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_static_private(secret.clone(), public, None);
        }
    }

    /// Makes the peer set equal to `peers`. An unchanged peer is kept as it is
    /// (session, learned endpoint: a reload does not drop the tunnel). A changed
    /// one gets a new session; if only its endpoint or allowed IPs changed and it
    /// names no endpoint, it keeps the endpoint it had learned.
    pub fn set_peers(&mut self, peers: &[PeerConfig]) {
        let old = self.shared.table();
        let mut table = PeerTable::default();
        for config in peers {
            let peer = match old.by_key(&config.public_key.0) {
                Some(p) if p.config == *config => p.clone(),
                found => {
                    let fresh = self.shared.new_peer(config.clone());
                    let learned = found
                        .filter(|p| {
                            p.config.preshared_key == config.preshared_key
                                && p.config.persistent_keepalive == config.persistent_keepalive
                        })
                        .and_then(|p| p.endpoint());
                    if let (None, Some(e)) = (config.endpoint, learned) {
                        fresh.set_endpoint(e);
                    }
                    fresh
                }
            };
            table.peers.push(peer);
        }
        *self.shared.peers.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }

    /// Sets a peer's endpoint (after resolving its name again).
    pub fn set_endpoint(&self, public_key: &WgKey, endpoint: SocketAddr) {
        if let Some(p) = self.shared.table().by_key(&public_key.0) {
            p.set_endpoint(endpoint);
        }
    }

    /// Sends a handshake initiation to every peer with an endpoint now.
    pub fn handshake_now(&self) {
        let mut buf = [0u8; 256];
        for p in &self.shared.table().peers {
            let Some(ep) = p.endpoint() else { continue };
            let mut tunn = p.tunn.lock().unwrap_or_else(PoisonError::into_inner);
            if let TunnResult::WriteToNetwork(pkt) = tunn.format_handshake_initiation(&mut buf, false) {
                self.shared.send_one(pkt, ep);
            }
        }
    }

    /// Every peer's state.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let wall = SystemTime::now();
        self.shared
            .table()
            .peers
            .iter()
            .map(|p| {
                let (since_handshake, ..) = p.tunn.lock().unwrap_or_else(PoisonError::into_inner).stats();
                PeerStatus {
                    wg: PeerSnapshot {
                        public_key: p.config.public_key.clone(),
                        preshared_key: p.config.preshared_key.clone(),
                        endpoint: p.endpoint(),
                        allowed_ips: p.config.allowed_ips.clone(),
                        persistent_keepalive: p.config.persistent_keepalive,
                        last_handshake: since_handshake.and_then(|d| wall.checked_sub(d)),
                        rx_bytes: p.rx_bytes.load(Ordering::Relaxed),
                        tx_bytes: p.tx_bytes.load(Ordering::Relaxed),
                    },
                    last_handshake_at: since_handshake.and_then(|d| now.checked_sub(d)),
                    last_rx: self.shared.at(p.last_rx_ms.load(Ordering::Relaxed)),
                    last_tx: self.shared.at(p.last_tx_ms.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }

    /// The drop counters.
    pub fn counters(&self) -> CounterValues {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterValues {
            rx_malformed: l(&c.rx_malformed),
            rx_unknown_peer: l(&c.rx_unknown_peer),
            rx_rejected: l(&c.rx_rejected),
            rx_bad_source: l(&c.rx_bad_source),
            tx_no_route: l(&c.tx_no_route),
            tx_no_endpoint: l(&c.tx_no_endpoint),
            io_errors: l(&c.io_errors),
        }
    }
}

impl Drop for TunnelDevice {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Waits until `fd` is readable or [`POLL_MS`] passed. False on timeout.
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(POLL_MS)), Ok(n) if n > 0)
}

fn outbound_loop(shared: Arc<Shared>) {
    let seg = usize::from(shared.mtu).max(1280) + 64;
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_TUN_READ];
    let mut plain: Vec<Vec<u8>> = vec![vec![0u8; seg]; BATCH];
    let mut sizes = vec![0usize; BATCH];
    let mut sealed: Vec<Vec<u8>> = vec![vec![0u8; seg + OVERHEAD + 148]; BATCH];
    let mut lens = vec![0usize; BATCH];
    let mut dests: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    while !shared.stop.load(Ordering::Relaxed) {
        if !readable(shared.tun.as_fd()) {
            continue;
        }
        let n = match shared.tun.recv_multiple(&mut original, &mut plain, &mut sizes, 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                shared.count(&shared.counters.io_errors);
                continue;
            }
        };
        let table = shared.table();
        let now = shared.ms();
        dests.clear();
        let mut k = 0;
        for i in 0..n {
            let packet = &plain[i][..sizes[i]];
            let Some(dst) = Tunn::dst_address(packet) else {
                shared.count(&shared.counters.tx_no_route);
                continue;
            };
            let Some(peer) = table.for_destination(dst) else {
                shared.count(&shared.counters.tx_no_route);
                continue;
            };
            let endpoint = peer.endpoint();
            let result = peer
                .tunn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .encapsulate(packet, &mut sealed[k]);
            if let TunnResult::WriteToNetwork(out) = result {
                let len = out.len();
                peer.tx_bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
                peer.last_tx_ms.store(now, Ordering::Relaxed);
                match endpoint.and_then(|e| shared.wire_addr(e)) {
                    Some(to) => {
                        lens[k] = len;
                        dests.push(Some(to));
                        k += 1;
                    }
                    None => shared.count(&shared.counters.tx_no_endpoint),
                }
            }
        }
        if k > 0 {
            if shared.udp_gso.load(Ordering::Relaxed) {
                send_gso(&shared, &sealed[..k], &lens[..k], &dests);
            } else {
                send_batch(&shared, &sealed[..k], &lens[..k], &dests);
            }
        }
    }
}

/// Sends a batch with UDP GSO: each run of datagrams for one destination, all of
/// one size but the last (which may be shorter), leaves in one `sendmsg` with a
/// UDP_SEGMENT control message (the kernel segments it, gathered from the
/// buffers without a copy). A TUN super-packet split into MTU-sized segments is
/// such a run. If the kernel refuses GSO, it is turned off for good and the rest
/// of the batch goes by `sendmmsg`.
fn send_gso(shared: &Shared, bufs: &[Vec<u8>], lens: &[usize], dests: &[Option<SockaddrStorage>]) {
    let mut iov = [io::IoSlice::new(&[]); GSO_MAX_SEGMENTS];
    let mut i = 0;
    while i < bufs.len() {
        let size = lens[i];
        let mut j = i + 1;
        let mut total = size;
        while j < bufs.len()
            && j - i < GSO_MAX_SEGMENTS
            && dests[j] == dests[i]
            && lens[j] <= size
            && total + lens[j] <= GSO_MAX_BYTES
        {
            total += lens[j];
            j += 1;
            if lens[j - 1] < size {
                break;
            }
        }
        for (slot, (b, &l)) in iov.iter_mut().zip(bufs[i..j].iter().zip(&lens[i..j])) {
            *slot = io::IoSlice::new(&b[..l]);
        }
        let segment = u16::try_from(size).unwrap_or(u16::MAX);
        let gso = [ControlMessage::UdpGsoSegments(&segment)];
        let cmsgs: &[ControlMessage<'_>] = if j - i > 1 { &gso } else { &[] };
        let result = loop {
            match sendmsg(
                shared.udp.as_raw_fd(),
                &iov[..j - i],
                cmsgs,
                MsgFlags::empty(),
                dests[i].as_ref(),
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        match result {
            Ok(_) => {}
            Err(
                nix::errno::Errno::EIO
                | nix::errno::Errno::EINVAL
                | nix::errno::Errno::ENOPROTOOPT
                | nix::errno::Errno::EOPNOTSUPP,
            ) if j - i > 1 => {
                tracing::warn!("UDP GSO refused by the kernel; sending datagrams one by one");
                shared.udp_gso.store(false, Ordering::Relaxed);
                send_batch(shared, &bufs[i..], &lens[i..], &dests[i..]);
                return;
            }
            // No route to that endpoint, say: the run is lost, the rest goes.
            Err(_) => shared.count(&shared.counters.io_errors),
        }
        i = j;
    }
}

fn send_batch(shared: &Shared, bufs: &[Vec<u8>], lens: &[usize], dests: &[Option<SockaddrStorage>]) {
    let slices: Vec<[io::IoSlice<'_>; 1]> = bufs
        .iter()
        .zip(lens)
        .map(|(b, &l)| [io::IoSlice::new(&b[..l])])
        .collect();
    let mut sent = 0;
    while sent < slices.len() {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len() - sent, None);
        let result = sendmmsg(
            shared.udp.as_raw_fd(),
            &mut headers,
            &slices[sent..],
            &dests[sent..],
            [],
            MsgFlags::empty(),
        );
        match result {
            Ok(r) => {
                let n = r.count();
                if n == 0 {
                    break;
                }
                sent += n;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                // Skip the datagram the kernel refused (no route to that
                // endpoint, say); the rest of the batch still goes.
                shared.count(&shared.counters.io_errors);
                sent += 1;
            }
        }
    }
}

/// One received datagram's place in the batch.
struct Received {
    len: usize,
    from: SocketAddr,
}

fn canonical(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = addr.as_sockaddr_in6() {
        let a = SocketAddrV6::from(*a);
        return Some(match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, a.port())),
            None => SocketAddr::V6(a),
        });
    }
    addr.as_sockaddr_in().map(|a| SocketAddr::V4((*a).into()))
}

fn receive_batch(shared: &Shared, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> nix::Result<()> {
    out.clear();
    let mut slices: Vec<[io::IoSliceMut<'_>; 1]> = bufs.iter_mut().map(|b| [io::IoSliceMut::new(&mut b[..])]).collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
    let results = recvmmsg(
        shared.udp.as_raw_fd(),
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    for r in results {
        if let Some(from) = r.address.and_then(canonical) {
            out.push(Received { len: r.bytes, from });
        }
    }
    Ok(())
}

fn inbound_loop(shared: Arc<Shared>) {
    let cap = usize::from(shared.mtu).max(1280) + 256;
    let mut datagrams: Vec<Vec<u8>> = vec![vec![0u8; cap]; BATCH];
    let mut received: Vec<Received> = Vec::with_capacity(BATCH);
    let mut to_tun: Vec<Vec<u8>> = vec![vec![0u8; VIRTIO_NET_HDR_LEN + cap]; BATCH];
    let mut scratch = vec![0u8; cap + OVERHEAD + 148];
    let mut gro = GROTable::default();
    while !shared.stop.load(Ordering::Relaxed) {
        if !readable(shared.udp.as_fd()) {
            continue;
        }
        match receive_batch(&shared, &mut datagrams, &mut received) {
            Ok(()) => {}
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                shared.count(&shared.counters.io_errors);
                continue;
            }
        }
        let table = shared.table();
        let now = shared.ms();
        let mut m = 0;
        for (i, r) in received.iter().enumerate() {
            let datagram = &datagrams[i][..r.len];
            let Some(peer) = find_peer(&shared, &table, datagram) else {
                continue;
            };
            let buf = &mut to_tun[m];
            buf.resize(VIRTIO_NET_HDR_LEN + cap, 0);
            let mut tunn = peer.tunn.lock().unwrap_or_else(PoisonError::into_inner);
            match tunn.decapsulate(Some(r.from.ip()), datagram, &mut buf[VIRTIO_NET_HDR_LEN..]) {
                TunnResult::WriteToNetwork(reply) => {
                    // A handshake answer or cookie; then whatever was queued
                    // waiting for the session.
                    shared.send_one(reply, r.from);
                    while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], &mut scratch) {
                        shared.send_one(queued, r.from);
                    }
                    peer.set_endpoint(r.from);
                    peer.last_rx_ms.store(now, Ordering::Relaxed);
                }
                TunnResult::WriteToTunnelV4(packet, src) => {
                    let len = packet.len();
                    accept_inner(&shared, &peer, IpAddr::V4(src), len, r.from, now, &mut m, buf);
                }
                TunnResult::WriteToTunnelV6(packet, src) => {
                    let len = packet.len();
                    accept_inner(&shared, &peer, IpAddr::V6(src), len, r.from, now, &mut m, buf);
                }
                TunnResult::Done => {
                    peer.set_endpoint(r.from);
                    peer.last_rx_ms.store(now, Ordering::Relaxed);
                }
                TunnResult::Err(_) => shared.count(&shared.counters.rx_rejected),
            }
        }
        if m > 0
            && shared
                .tun
                .send_multiple(&mut gro, &mut to_tun[..m], VIRTIO_NET_HDR_LEN)
                .is_err()
        {
            shared.count(&shared.counters.io_errors);
        }
    }
}

/// A decrypted packet: checked against the peer's allowed IPs, then queued for the
/// TUN (an empty one is a keepalive: it only proves the peer is alive).
#[allow(clippy::too_many_arguments)]
fn accept_inner(
    shared: &Shared,
    peer: &Peer,
    src: IpAddr,
    len: usize,
    from: SocketAddr,
    now: u64,
    m: &mut usize,
    buf: &mut Vec<u8>,
) {
    peer.set_endpoint(from);
    peer.last_rx_ms.store(now, Ordering::Relaxed);
    if len == 0 {
        return;
    }
    if !peer.allows(src) {
        shared.count(&shared.counters.rx_bad_source);
        return;
    }
    peer.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
    buf.truncate(VIRTIO_NET_HDR_LEN + len);
    *m += 1;
}

fn find_peer(shared: &Shared, table: &PeerTable, datagram: &[u8]) -> Option<Arc<Peer>> {
    let found = match Tunn::parse_incoming_packet(datagram) {
        Err(_) => {
            shared.count(&shared.counters.rx_malformed);
            return None;
        }
        Ok(Packet::HandshakeInit(init)) => {
            let keys = shared.keys.read().unwrap_or_else(PoisonError::into_inner);
            parse_handshake_anon(&keys.secret, &keys.public, &init)
                .ok()
                .and_then(|half| table.by_key(&half.peer_static_public).cloned())
        }
        Ok(Packet::HandshakeResponse(r)) => table.by_index(r.receiver_idx).cloned(),
        Ok(Packet::PacketCookieReply(c)) => table.by_index(c.receiver_idx).cloned(),
        Ok(Packet::PacketData(d)) => table.by_index(d.receiver_idx).cloned(),
    };
    if found.is_none() {
        shared.count(&shared.counters.rx_unknown_peer);
    }
    found
}

fn timers_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 256];
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(TIMER_TICK);
        for p in &shared.table().peers {
            let endpoint = p.endpoint();
            let mut tunn = p.tunn.lock().unwrap_or_else(PoisonError::into_inner);
            if let TunnResult::WriteToNetwork(pkt) = tunn.update_timers(&mut buf) {
                match endpoint {
                    Some(ep) => shared.send_one(pkt, ep),
                    None => shared.count(&shared.counters.tx_no_endpoint),
                }
            }
        }
    }
}
