//! Discovery benchmarks (root; builds its own namespaces, removes them after).
//!
//! 1. ACK → nft sets: in the discovering demo home, one host namespace takes a
//!    fresh MAC 50 times and joins with busybox udhcpc (a new device each time).
//!    On one clock (this process's `Instant`): an AF_PACKET socket in the host
//!    namespace timestamps the client's DISCOVER and REQUEST and the server's
//!    OFFER and ACK for that chaddr; a netlink socket in the router namespace,
//!    subscribed to the kernel's nf_tables notifications, timestamps the commit
//!    that put the MAC in a zone's `_mac` set and the one that put the leased
//!    address in its `_v4` set (`nft -j monitor new elements` runs beside it as a
//!    cross-check).
//! 2. DHCP exchanges per second, Bulkhead's server vs Debian's dnsmasq on the
//!    same bridge, alternating A B A B, four workloads (returning clients, the
//!    same with 1,000 more devices known, a burst of new devices, a new device
//!    per exchange with release). perfdhcp (kea) cannot be used: for DHCPv4 it
//!    always acts as a relay (giaddr = its own address, hops = 1, source port
//!    67), and Bulkhead's server ignores relayed messages by design. The load
//!    generator here is a client: broadcast DISCOVER/REQUEST from 0.0.0.0:68 on
//!    the host's eth0, each in an Ethernet frame from its own chaddr (a raw
//!    socket: Bulkhead counts a message only for the MAC that sent it), 16
//!    exchanges in flight, each with its own chaddr and xid.
//!
//! Only one DHCP server ever runs: the daemon is stopped before dnsmasq starts
//! and the other way round. The host namespace is compared before and after.
//!
//! Run: `cargo bench -p bulkhead --features demo --bench discovery` (figures in BENCHMARKS.md).

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::config::MacAddr;
use bulkhead::control::{Request, Response};
use bulkhead::demo::{DemoHome, HOSTS};
use bulkhead_netns::{HostSnapshot, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");

/// Joins measured in part 1.
const JOINS: usize = 50;
/// The host namespace that joins (lan segment, unknown device: quarantine).
const JOINER: &str = "stranger";
/// The host namespace the load generator runs in (same bridge as the server).
const LOADER: &str = "stranger";
/// Alternating rounds per server and workload in part 2.
const ROUNDS: usize = 5;
/// Length of one measured load run.
const RUN: Duration = Duration::from_secs(5);
/// Concurrent exchanges the load generator keeps in flight.
const WINDOW: usize = 16;
/// Returning clients in the lease-reuse workload (the pool has 100 addresses).
const RETURNING: usize = 64;
/// An exchange with no answer for this long is counted as lost and restarted.
const LOST_AFTER: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ stats

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn median(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn p95(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    let i = ((v.len() as f64) * 0.95).ceil() as usize;
    v.get(i.saturating_sub(1)).copied().unwrap_or(f64::NAN)
}

fn min(v: &[f64]) -> f64 {
    sorted(v.to_vec()).first().copied().unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    sorted(v.to_vec()).last().copied().unwrap_or(f64::NAN)
}

/// `a - b` in milliseconds, signed.
fn ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64() * 1e3
    } else {
        -((b - a).as_secs_f64() * 1e3)
    }
}

fn fmt_runs(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
}

// ------------------------------------------------------------------ DHCP wire

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
const RELEASE: u8 = 7;

/// What the benchmark needs of a DHCP message.
#[derive(Debug, Clone, Copy)]
struct Dhcp {
    op: u8,
    xid: u32,
    yiaddr: Ipv4Addr,
    chaddr: [u8; 6],
    kind: u8,
    server_id: Option<Ipv4Addr>,
}

fn parse_dhcp(p: &[u8]) -> Option<Dhcp> {
    if p.len() < 240 || p.get(236..240)? != MAGIC {
        return None;
    }
    let quad = |at: usize| -> Option<[u8; 4]> { p.get(at..at + 4)?.try_into().ok() };
    let mut d = Dhcp {
        op: *p.first()?,
        xid: u32::from_be_bytes(quad(4)?),
        yiaddr: Ipv4Addr::from(quad(16)?),
        chaddr: p.get(28..34)?.try_into().ok()?,
        kind: 0,
        server_id: None,
    };
    let mut i = 240;
    while let Some(&code) = p.get(i) {
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let len = usize::from(*p.get(i + 1)?);
                let val = p.get(i + 2..i + 2 + len)?;
                match code {
                    53 => d.kind = *val.first()?,
                    54 => d.server_id = val.try_into().ok().map(|b: [u8; 4]| Ipv4Addr::from(b)),
                    _ => {}
                }
                i += 2 + len;
            }
        }
    }
    Some(d)
}

/// A client message (BOOTREQUEST, broadcast flag set so that every server
/// answers by broadcast: the chaddrs are not the interface's MAC).
fn client_message(kind: u8, xid: u32, mac: [u8; 6], ciaddr: Ipv4Addr, options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10] = 0x80; // broadcast flag
    p[12..16].copy_from_slice(&ciaddr.octets());
    p[28..34].copy_from_slice(&mac);
    p[236..240].copy_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, kind]);
    for (code, val) in options {
        p.push(*code);
        p.push(val.len() as u8);
        p.extend_from_slice(val);
    }
    p.push(255);
    p.resize(p.len().max(300), 0);
    p
}

/// An IPv4 packet (as an AF_PACKET/SOCK_DGRAM socket gives it) carrying UDP
/// with source port 67 or 68: its DHCP message.
fn dhcp_in_ip(pkt: &[u8]) -> Option<Dhcp> {
    let first = *pkt.first()?;
    if first >> 4 != 4 || *pkt.get(9)? != 17 {
        return None;
    }
    let udp = pkt.get(usize::from(first & 0xf) * 4..)?;
    let sport = u16::from_be_bytes(udp.get(0..2)?.try_into().ok()?);
    if sport != 67 && sport != 68 {
        return None;
    }
    parse_dhcp(udp.get(8..)?)
}

// ------------------------------------------------------------------ part 1

/// A DHCP message seen on the host's eth0 (in or out).
struct Seen {
    at: Instant,
    msg: Dhcp,
}

/// Set elements as `nft -j monitor` printed them.
#[derive(Debug)]
struct Added {
    at: Instant,
    family: String,
    set: String,
    elements: Vec<String>,
}

/// A thread reading one blocking source until `stop`.
struct Watcher<T> {
    rx: Receiver<T>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    got: Vec<T>,
}

impl<T> Watcher<T> {
    fn drain(&mut self) {
        self.got.extend(self.rx.try_iter());
    }
}

impl<T> Drop for Watcher<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every DHCP message on the namespace's links, timestamped on arrival.
/// ETH_P_ALL: protocol-specific packet sockets do not see outgoing frames.
fn sniff(ns: &Netns) -> Result<Watcher<Seen>> {
    let proto = socket2::Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
    let sock = ns.run_in(|| socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::DGRAM, Some(proto)))??;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        while !flag.load(Ordering::SeqCst) {
            if let Ok(n) = (&sock).read(&mut buf) {
                let at = Instant::now();
                if let Some(msg) = buf.get(..n).and_then(dhcp_in_ip) {
                    if tx.send(Seen { at, msg }).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(Watcher {
        rx,
        stop,
        thread: Some(thread),
        got: Vec::new(),
    })
}

/// `nft -j monitor new elements` in the router namespace; its lines are
/// timestamped as they arrive (nft flushes after each event).
struct Monitor {
    child: Child,
    watcher: Watcher<Added>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // Ours: killed by its own handle, then reaped; the reader sees EOF.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.watcher.stop.store(true, Ordering::SeqCst);
    }
}

fn monitor(router: &Netns) -> Result<Monitor> {
    let mut child = router.run_in(|| {
        Command::new("nft")
            .args(["-j", "monitor", "new", "elements"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    })??;
    let Some(out) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("nft monitor: no stdout");
    };
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let at = Instant::now();
            let Ok(line) = line else { return };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let e = &v["add"]["element"];
            let mut elements = Vec::new();
            strings(&e["elem"], &mut elements);
            let added = Added {
                at,
                family: e["family"].as_str().unwrap_or_default().to_string(),
                set: e["name"].as_str().unwrap_or_default().to_string(),
                elements,
            };
            if tx.send(added).is_err() {
                return;
            }
        }
    });
    Ok(Monitor {
        child,
        watcher: Watcher {
            rx,
            stop,
            thread: Some(thread),
            got: Vec::new(),
        },
    })
}

/// The kernel's own notifications: a netlink socket in the router namespace
/// subscribed to NFNLGRP_NFTABLES, read by a thread of this process (no `nft`
/// process and pipe in between). Each NFT_MSG_NEWSETELEM gives the family, the
/// set and the keys added; elements are kept as raw key bytes.
fn nfnetlink(router: &Netns) -> Result<Watcher<AddedRaw>> {
    /// NFNLGRP_NFTABLES (linux/netfilter/nfnetlink.h).
    const NFTABLES_GROUP: u32 = 7;
    let sock = router.run_in(|| -> std::io::Result<netlink_sys::Socket> {
        let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)?;
        s.bind_auto()?;
        s.add_membership(NFTABLES_GROUP)?;
        s.set_rx_buf_sz(4 << 20)?;
        Ok(s)
    })??;
    socket2::SockRef::from(&sock).set_read_timeout(Some(Duration::from_millis(50)))?;
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while !flag.load(Ordering::SeqCst) {
            let Ok(n) = (&*socket2::SockRef::from(&sock)).read(&mut buf) else {
                continue;
            };
            let at = Instant::now();
            for added in parse_newsetelem(buf.get(..n).unwrap_or_default()) {
                if tx.send(AddedRaw { at, ..added }).is_err() {
                    return;
                }
            }
        }
    });
    Ok(Watcher {
        rx,
        stop,
        thread: Some(thread),
        got: Vec::new(),
    })
}

/// Set elements as the kernel announced them.
#[derive(Debug, Clone)]
struct AddedRaw {
    at: Instant,
    /// NFPROTO_INET = 1, NFPROTO_BRIDGE = 7.
    family: u8,
    set: String,
    keys: Vec<Vec<u8>>,
}

/// Netlink attributes: (type without flags, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        let (Some(payload), true) = (b.get(4..len), len >= 4) else {
            break;
        };
        out.push((kind, payload));
        b = b.get((len + 3) & !3..).unwrap_or_default();
    }
    out
}

/// NFT_MSG_NEWSETELEM messages in a datagram (nlmsghdr + nfgenmsg + attributes:
/// LIST_SET = 2, LIST_ELEMENTS = 3 > LIST_ELEM = 1 > ELEM_KEY = 1 > DATA_VALUE = 1).
fn parse_newsetelem(mut b: &[u8]) -> Vec<AddedRaw> {
    const NEWSETELEM: u16 = (10 << 8) | 12;
    let mut out = Vec::new();
    while b.len() >= 20 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        let Some(msg) = b.get(16..len) else { break };
        if kind == NEWSETELEM && msg.len() >= 4 {
            let mut added = AddedRaw {
                at: Instant::now(),
                family: msg[0],
                set: String::new(),
                keys: Vec::new(),
            };
            for (t, v) in attrs(&msg[4..]) {
                match t {
                    2 => added.set = String::from_utf8_lossy(v).trim_end_matches('\0').to_string(),
                    3 => {
                        for (_, elem) in attrs(v) {
                            for (_, key) in attrs(elem).into_iter().filter(|(t, _)| *t == 1) {
                                for (_, value) in attrs(key).into_iter().filter(|(t, _)| *t == 1) {
                                    added.keys.push(value.to_vec());
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            out.push(added);
        }
        b = b.get((len + 3) & !3..).unwrap_or_default();
    }
    out
}

fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// A row of the part-1 table: its label and the interval it shows.
type Column = (&'static str, fn(&Join) -> f64);

/// One join, in milliseconds between events on the bench's clock.
struct Join {
    /// Address in the zone's `_v4` set − ACK at the client (kernel notification).
    v4_minus_ack: f64,
    /// MAC in the zone's `_mac` set − ACK at the client (kernel notification).
    mac_minus_ack: f64,
    /// Both in their sets (the later of the two) − ACK at the client.
    set_minus_ack: f64,
    /// Both in their sets − the client's first DISCOVER.
    set_minus_discover: f64,
    /// The same address commit as `nft -j monitor` reports it − ACK.
    monitor_v4_minus_ack: f64,
    ack_minus_discover: f64,
    offer_minus_discover: f64,
    request_minus_offer: f64,
    ack_minus_request: f64,
}

struct Part1 {
    joins: Vec<Join>,
    zone_sets: String,
}

fn part1() -> Result<Part1> {
    let demo = DemoHome::build_discovering(Path::new(BIN), &[])?;
    demo.start_daemon()?;
    let host = HOSTS.iter().find(|h| h.name == JOINER).context("joiner")?;
    let ns = demo.home.ns(JOINER)?;
    let mut mon = monitor(demo.home.router())?;
    let mut nl = nfnetlink(demo.home.router())?;
    let mut sniffer = sniff(ns)?;
    // Join 0 is a warm-up: it proves every watcher sees its events.
    std::thread::sleep(Duration::from_millis(300));
    let mut joins = Vec::new();
    let mut zone_sets = std::collections::BTreeSet::new();
    for i in 0..=JOINS {
        // A new device each time; 50 joins fit the 100-address pool.
        let mac = [0x02, 0xbe, 0, 0, 0x10, i as u8];
        let mac_text = MacAddr(mac).to_string();
        ns.ip_batch(&[
            "link set eth0 down".to_string(),
            format!("link set eth0 address {mac_text}"),
            "link set eth0 up".to_string(),
        ])?;
        let start = Instant::now();
        let ip = demo.join(host)?;
        let ip_text = ip.to_string();
        // The commits and the ACK are in by now or within moments.
        let deadline = Instant::now() + Duration::from_secs(3);
        let (seen, kernel, monitor_v4) = loop {
            sniffer.drain();
            nl.drain();
            mon.watcher.drain();
            let seen = |kind: u8| {
                sniffer
                    .got
                    .iter()
                    .find(|s| s.at >= start && s.msg.chaddr == mac && s.msg.kind == kind)
                    .map(|s| s.at)
            };
            let kernel = |suffix: &str, key: &[u8]| {
                nl.got
                    .iter()
                    .find(|a| {
                        a.at >= start && a.family == 1 && a.set.ends_with(suffix) && a.keys.iter().any(|k| k == key)
                    })
                    .map(|a| (a.at, a.set.clone()))
            };
            let monitor_v4 = mon
                .watcher
                .got
                .iter()
                .find(|a| {
                    a.at >= start && a.family == "inet" && a.set.ends_with("_v4") && a.elements.contains(&ip_text)
                })
                .map(|a| a.at);
            let seen = [seen(DISCOVER), seen(OFFER), seen(REQUEST), seen(ACK)];
            let kernel = [kernel("_mac", &mac), kernel("_v4", &ip.octets())];
            if let ([Some(d), Some(o), Some(r), Some(a)], [Some(m), Some(v)], Some(mv)) = (seen, &kernel, monitor_v4) {
                break ([d, o, r, a], [m.clone(), v.clone()], mv);
            }
            if Instant::now() > deadline {
                bail!(
                    "join {i} ({mac_text} -> {ip}), ms after the start: DISCOVER, OFFER, REQUEST, ACK {:?}; \
                     MAC and address in sets (kernel) {:?}; address (nft monitor) {:?} — not all seen within 3 s",
                    seen.map(|t| t.map(|t| ms(t, start))),
                    kernel.map(|k| k.map(|k| ms(k.0, start))),
                    monitor_v4.map(|t| ms(t, start)),
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let [discover, offer, request, ack] = seen;
        let [mac_in, v4_in] = kernel;
        // Cross-check against the kernel's listing: the address is in that set.
        let listed = demo
            .home
            .router()
            .exec(&["nft", "list", "set", "inet", "bulkhead", &v4_in.1])?;
        ensure!(
            String::from_utf8_lossy(&listed.stdout).contains(&ip_text),
            "{ip} announced in {} but not listed there",
            v4_in.1
        );
        sniffer.got.clear();
        nl.got.clear();
        mon.watcher.got.clear();
        if i == 0 {
            continue;
        }
        zone_sets.insert(format!("{} + {}", mac_in.1, v4_in.1));
        let set = mac_in.0.max(v4_in.0);
        joins.push(Join {
            v4_minus_ack: ms(v4_in.0, ack),
            mac_minus_ack: ms(mac_in.0, ack),
            set_minus_ack: ms(set, ack),
            set_minus_discover: ms(set, discover),
            monitor_v4_minus_ack: ms(monitor_v4, ack),
            ack_minus_discover: ms(ack, discover),
            offer_minus_discover: ms(offer, discover),
            request_minus_offer: ms(request, offer),
            ack_minus_request: ms(ack, request),
        });
    }
    drop(sniffer);
    drop(nl);
    drop(mon);
    demo.stop_daemon()?;
    Ok(Part1 {
        joins,
        zone_sets: zone_sets.into_iter().collect::<Vec<_>>().join(", "),
    })
}

// ------------------------------------------------------------------ part 2

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// 64 returning clients (fixed MACs), each exchange a full DORA that
    /// re-binds the client's existing lease. State is kept across rounds.
    Returning,
    /// The same 64 returning clients with 1,000 more devices in Bulkhead's
    /// inventory (made by a flood of DISCOVERs from new MACs beforehand).
    ReturningCrowd,
    /// 90 new devices at once (DORA each, 16 in flight), from an empty
    /// inventory and lease table: time until the last ACK.
    NewBurst,
    /// A new MAC for every exchange, released right after its ACK so the
    /// 100-address pool never runs out. Empty inventory at each round start.
    NewRelease,
}

impl Workload {
    fn describe(self) -> &'static str {
        match self {
            Workload::Returning => "returning clients: 64 MACs, DORA re-binds the lease (5 s runs)",
            Workload::ReturningCrowd => "the same, 1,000 more devices known to Bulkhead (5 s runs)",
            Workload::NewBurst => "burst of 90 new devices: DORA each, empty inventory (time to the last ACK)",
            Workload::NewRelease => "new device per exchange: DORA + RELEASE (5 s runs)",
        }
    }

    /// Each round starts from no leases and no devices, for both servers.
    fn fresh(self) -> bool {
        !matches!(self, Workload::Returning | Workload::ReturningCrowd)
    }

    fn cap(self) -> Option<u64> {
        (self == Workload::NewBurst).then_some(BURST)
    }
}

/// Devices added to Bulkhead's inventory for the crowd workload.
const CROWD: u32 = 1000;

/// New devices in the burst workload (the pool has 100 addresses; the
/// readiness probe takes one more).
const BURST: u64 = 90;

#[derive(Debug, Clone, Copy, Default)]
struct Load {
    secs: f64,
    completed: u64,
    offers: u64,
    naks: u64,
    lost: u64,
    stray: u64,
    /// CPU seconds the server (and its reaped children) used during the run.
    server_cpu: f64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.completed as f64 / self.secs
    }

    fn cpu_us_per_exchange(&self) -> f64 {
        self.server_cpu * 1e6 / self.completed.max(1) as f64
    }
}

#[derive(Clone, Copy)]
enum Stage {
    Discovering,
    Requesting,
}

struct Slot {
    mac: [u8; 6],
    xid: u32,
    stage: Stage,
    sent: Instant,
}

/// The client side of the load test, run inside the host namespace.
struct Loader {
    /// Receives the servers' broadcast answers.
    sock: UdpSocket,
    /// Sends each message in a frame from its own chaddr, as that many real
    /// clients would: Bulkhead ignores a message whose chaddr is not its
    /// sender's MAC.
    raw: bulkhead_netns::raw::RawSender,
    workload: Workload,
    /// Distinguishes MACs of different runs in the new-device workloads.
    run: u16,
    next_client: u32,
    next_xid: u32,
    started: u64,
    slots: Vec<Option<Slot>>,
    by_xid: HashMap<u32, usize>,
    last_ack: Option<Instant>,
    /// Whether a completed exchange starts the slot's next one (not during the
    /// readiness probe).
    chain: bool,
    stats: Load,
}

const TO_SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
const PARAMS: &[u8] = &[1, 3, 6, 15, 28, 51];

impl Loader {
    fn open(workload: Workload, run: u16) -> std::io::Result<Loader> {
        // As a client without an address does: from 0.0.0.0:68, out of eth0.
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        raw.set_reuse_address(true)?;
        raw.set_broadcast(true)?;
        raw.bind_device(Some(b"eth0"))?;
        raw.set_recv_buffer_size(1 << 20)?;
        raw.bind(&SocketAddr::from(([0, 0, 0, 0], 68)).into())?;
        let sock: UdpSocket = raw.into();
        sock.set_read_timeout(Some(Duration::from_millis(5)))?;
        Ok(Loader {
            sock,
            raw: bulkhead_netns::raw::RawSender::open("eth0")?,
            workload,
            run,
            next_client: 0,
            next_xid: u32::from(run) << 20,
            started: 0,
            slots: (0..WINDOW).map(|_| None).collect(),
            by_xid: HashMap::new(),
            last_ack: None,
            chain: true,
            stats: Load::default(),
        })
    }

    fn mac_for(&mut self, slot: usize) -> [u8; 6] {
        let n = self.next_client;
        self.next_client += 1;
        let r = self.run.to_be_bytes()[1];
        let b = n.to_be_bytes();
        match self.workload {
            // Slot s takes clients s, s+W, s+2W… (mod 64): no client is in two
            // exchanges at once.
            Workload::Returning | Workload::ReturningCrowd => {
                let k = (slot + WINDOW * (n as usize / WINDOW)) % RETURNING;
                [0x02, 0xb0, 0, 0, 0, k as u8]
            }
            Workload::NewBurst => [0x02, 0xb2, r, b[1], b[2], b[3]],
            Workload::NewRelease => [0x02, 0xb1, r, b[1], b[2], b[3]],
        }
    }

    fn send(&self, p: &[u8]) -> std::io::Result<()> {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(p.get(28..34).ok_or_else(|| std::io::Error::other("short message"))?);
        let port = TO_SERVER.port();
        self.raw
            .send(&bulkhead_netns::raw::udp_broadcast_frame(mac, 68, port, p))
    }

    fn idle(&mut self, slot: usize) {
        if let Some(Some(s)) = self.slots.get_mut(slot).map(Option::take) {
            self.by_xid.remove(&s.xid);
        }
    }

    /// Starts a new exchange (a DISCOVER) in `slot`, unless the workload's
    /// number of exchanges is reached (the slot goes idle).
    fn discover(&mut self, slot: usize) -> std::io::Result<()> {
        self.idle(slot);
        if self.workload.cap().is_some_and(|cap| self.started >= cap) {
            return Ok(());
        }
        let mac = self.mac_for(slot);
        self.next_xid = self.next_xid.wrapping_add(1);
        let xid = self.next_xid;
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Slot {
                mac,
                xid,
                stage: Stage::Discovering,
                sent: Instant::now(),
            });
        }
        self.by_xid.insert(xid, slot);
        self.started += 1;
        self.send(&client_message(
            DISCOVER,
            xid,
            mac,
            Ipv4Addr::UNSPECIFIED,
            &[(55, PARAMS)],
        ))
    }

    /// Handles one reply.
    fn reply(&mut self, d: Dhcp) -> std::io::Result<()> {
        let Some(&slot) = self.by_xid.get(&d.xid) else {
            self.stats.stray += 1;
            return Ok(());
        };
        let Some((mac, xid, stage)) = self
            .slots
            .get(slot)
            .and_then(Option::as_ref)
            .map(|s| (s.mac, s.xid, s.stage))
        else {
            return Ok(());
        };
        if d.op != 2 || d.chaddr != mac {
            self.stats.stray += 1;
            return Ok(());
        }
        let sid = d.server_id.unwrap_or(Ipv4Addr::UNSPECIFIED).octets();
        match (stage, d.kind) {
            (Stage::Discovering, OFFER) => {
                self.stats.offers += 1;
                let req = client_message(
                    REQUEST,
                    xid,
                    mac,
                    Ipv4Addr::UNSPECIFIED,
                    &[(50, &d.yiaddr.octets()), (54, &sid), (55, PARAMS)],
                );
                if let Some(Some(s)) = self.slots.get_mut(slot) {
                    s.stage = Stage::Requesting;
                    s.sent = Instant::now();
                }
                self.send(&req)
            }
            (Stage::Requesting, ACK) => {
                self.stats.completed += 1;
                self.last_ack = Some(Instant::now());
                if self.workload == Workload::NewRelease {
                    self.next_xid = self.next_xid.wrapping_add(1);
                    self.send(&client_message(RELEASE, self.next_xid, mac, d.yiaddr, &[(54, &sid)]))?;
                }
                if self.chain {
                    self.discover(slot)
                } else {
                    self.idle(slot);
                    Ok(())
                }
            }
            (_, NAK) => {
                self.stats.naks += 1;
                self.discover(slot)
            }
            _ => {
                self.stats.stray += 1;
                Ok(())
            }
        }
    }

    fn pump(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        match self.sock.recv_from(buf) {
            Ok((n, _)) => {
                if let Some(d) = buf.get(..n).and_then(parse_dhcp) {
                    self.reply(d)?;
                }
                Ok(())
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn expire(&mut self) -> std::io::Result<()> {
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            let late = self
                .slots
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|s| now - s.sent > LOST_AFTER);
            if late {
                self.stats.lost += 1;
                self.discover(slot)?;
            }
        }
        Ok(())
    }

    /// One exchange must complete before the clock starts (the server is up).
    fn wait_ready(&mut self) -> std::io::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 1500];
        let mut ready = false;
        self.chain = false;
        while !ready && Instant::now() < deadline {
            self.discover(0)?;
            let retry = Instant::now() + Duration::from_millis(200);
            while !ready && Instant::now() < retry {
                self.pump(&mut buf)?;
                ready = self.stats.completed > 0;
            }
        }
        for slot in 0..self.slots.len() {
            self.idle(slot);
        }
        self.started = 0;
        self.chain = true;
        self.stats = Load::default();
        Ok(ready)
    }

    fn run(&mut self, length: Duration) -> std::io::Result<Load> {
        let mut buf = vec![0u8; 1500];
        let start = Instant::now();
        for slot in 0..WINDOW {
            self.discover(slot)?;
        }
        let mut next_expiry = start + Duration::from_millis(50);
        while start.elapsed() < length && self.slots.iter().any(Option::is_some) {
            self.pump(&mut buf)?;
            if Instant::now() >= next_expiry {
                self.expire()?;
                next_expiry = Instant::now() + Duration::from_millis(50);
            }
        }
        self.stats.secs = match self.workload.cap() {
            Some(_) => self.last_ack.map_or(f64::NAN, |t| (t - start).as_secs_f64()),
            None => start.elapsed().as_secs_f64(),
        };
        Ok(self.stats)
    }
}

/// Sends `n` DISCOVERs from new MACs (one per millisecond, answers ignored):
/// each makes a new device in Bulkhead's inventory.
fn flood(ns: &Netns, from: u32, n: u32) -> Result<()> {
    ns.run_in(|| -> Result<()> {
        let l = Loader::open(Workload::Returning, 0).context("flood socket")?;
        let mut buf = vec![0u8; 1500];
        for i in from..from + n {
            let b = i.to_be_bytes();
            let mac = [0x02, 0xb3, b[0], b[1], b[2], b[3]];
            l.send(&client_message(
                DISCOVER,
                0x7000_0000 | i,
                mac,
                Ipv4Addr::UNSPECIFIED,
                &[(55, PARAMS)],
            ))?;
            while l.sock.recv_from(&mut buf).is_ok() {}
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })?
}

/// CPU seconds used by a process and its reaped children (/proc/PID/stat).
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("/proc stat")?;
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After the command: state, ppid, … utime is field 14, cstime field 17.
    let ticks: f64 = f.get(10..14).context("/proc stat fields")?.iter().sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok(ticks / hz)
}

fn load(ns: &Netns, workload: Workload, run: u16, server: u32) -> Result<Load> {
    ns.run_in(|| -> Result<Load> {
        let mut l = Loader::open(workload, run).context("load generator socket")?;
        ensure!(l.wait_ready()?, "no DHCP server answered within 10 s");
        let cpu0 = cpu_secs(server)?;
        let mut r = l.run(RUN)?;
        r.server_cpu = cpu_secs(server)? - cpu0;
        Ok(r)
    })?
}

/// Bulkhead's own counters for the lan segment, devices, untracked devices.
fn bulkhead_counters(demo: &DemoHome) -> Result<(bulkhead::discovery::dhcp::Counters, usize, u64)> {
    let Response::Status(st) = demo.call(Request::Status)? else {
        bail!("unexpected answer")
    };
    let c = st
        .dhcp
        .iter()
        .find(|(s, _)| s.as_str() == "lan")
        .map(|(_, c)| *c)
        .unwrap_or_default();
    Ok((c, st.devices, st.untracked_new_devices))
}

struct Dnsmasq<'a> {
    router: &'a Netns,
    pid: Option<u32>,
}

impl Drop for Dnsmasq<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = self.router.stop_tracked(pid);
        }
    }
}

/// dnsmasq on br-lan with the same pool (10.0.1.100-199) and lease time (12 h)
/// as Bulkhead's lan segment, authoritative like Bulkhead, no ICMP probe
/// before an offer (Bulkhead does not probe either); DHCP logging as shipped,
/// to a file instead of the host's syslog.
fn start_dnsmasq(demo: &DemoHome, fresh: bool) -> Result<Dnsmasq<'_>> {
    ensure!(
        demo.daemon_pid().is_none(),
        "refusing to start dnsmasq while Bulkhead serves"
    );
    let leases = demo.dir.join("dnsmasq.leases");
    if fresh {
        let _ = std::fs::remove_file(&leases);
    }
    let log = format!("--log-facility={}", demo.dir.join("dnsmasq-dhcp.log").display());
    let pid = demo.start_dnsmasq(
        "10.0.1.100,10.0.1.199,12h",
        &leases,
        &["--dhcp-authoritative", "--no-ping", &log],
    )?;
    Ok(Dnsmasq {
        router: demo.home.router(),
        pid: Some(pid),
    })
}

struct Round {
    bulkhead: Load,
    dnsmasq: Load,
    /// Bulkhead's counters over its run: NAKs, DISCOVERs left unanswered for
    /// lack of an address; devices and untracked devices after it.
    bh_naks: u64,
    bh_exhausted: u64,
    bh_devices: usize,
    bh_untracked: u64,
}

fn part2(demo: &DemoHome, workload: Workload, run: &mut u16) -> Result<Vec<Round>> {
    let ns = demo.home.ns(LOADER)?;
    let state = demo.dir.join("state");
    let mut rounds = Vec::new();
    if workload == Workload::ReturningCrowd {
        demo.start_daemon()?;
        let target = bulkhead_counters(demo)?.1 + CROWD as usize;
        let (mut sent, mut settled) = (0, 0);
        // A DISCOVER the daemon's socket dropped under the flood is sent again
        // from another new MAC; the count is checked once the daemon is idle.
        for _ in 0..10 {
            let devices = bulkhead_counters(demo)?.1;
            if devices >= target {
                break;
            }
            if devices == settled || sent == 0 {
                let missing = (target - devices) as u32;
                flood(ns, sent, missing)?;
                sent += missing;
            }
            settled = devices;
            std::thread::sleep(Duration::from_secs(1));
        }
        let devices = bulkhead_counters(demo)?.1;
        ensure!(devices >= target, "{devices} devices after the flood, wanted {target}");
        demo.stop_daemon()?;
    }
    for r in 0..ROUNDS {
        if workload.fresh() {
            let _ = std::fs::remove_dir_all(&state);
        }
        let pid = demo.start_daemon()?;
        let before = bulkhead_counters(demo)?;
        *run += 1;
        let bulkhead = load(ns, workload, *run, pid)?;
        let after = bulkhead_counters(demo)?;
        demo.stop_daemon()?;
        let dnsmasq = {
            let d = start_dnsmasq(demo, workload.fresh())?;
            *run += 1;
            load(ns, workload, *run, d.pid.context("dnsmasq pid")?)?
        };
        eprintln!(
            "  {workload:?} round {}: Bulkhead {:.0}/s, dnsmasq {:.0}/s",
            r + 1,
            bulkhead.rate(),
            dnsmasq.rate()
        );
        rounds.push(Round {
            bulkhead,
            dnsmasq,
            bh_naks: after.0.naks - before.0.naks,
            bh_exhausted: after.0.pool_exhausted - before.0.pool_exhausted,
            bh_devices: after.1,
            bh_untracked: after.2,
        });
    }
    Ok(rounds)
}

// ------------------------------------------------------------------ main

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("discovery: benchmark");
        return Ok(());
    }
    ensure!(
        bulkhead_netns::is_root(),
        "the discovery benchmark builds network namespaces: run as root"
    );
    for tool in ["dnsmasq", "busybox", "nft"] {
        ensure!(bulkhead::demo::have(tool), "`{tool}` is missing");
    }
    let host_before = HostSnapshot::take()?;
    let t0 = Instant::now();

    eprintln!("part 1: {JOINS} joins, ACK -> nft sets");
    let p1 = part1()?;
    eprintln!("part 2: DHCP exchanges/s, Bulkhead vs dnsmasq, {ROUNDS} alternating rounds per workload");
    let workloads = [
        Workload::Returning,
        Workload::ReturningCrowd,
        Workload::NewBurst,
        Workload::NewRelease,
    ];
    let mut results = Vec::new();
    {
        let demo = DemoHome::build_discovering(Path::new(BIN), &[])?;
        let mut run = 0;
        for w in workloads {
            results.push((w, part2(&demo, w, &mut run)?));
        }
    }

    let col = |f: fn(&Join) -> f64| p1.joins.iter().map(f).collect::<Vec<_>>();
    println!(
        "\n## DHCP ACK -> nft sets ({} joins, busybox udhcpc, a new MAC each; sets: {})\n",
        p1.joins.len(),
        p1.zone_sets
    );
    println!("| interval (one clock) | median | p95 | min | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let rows: [Column; 9] = [
        ("**address in `_v4` set − ACK at client**", |j| j.v4_minus_ack),
        ("MAC in `_mac` set − ACK at client", |j| j.mac_minus_ack),
        ("both in sets − ACK at client", |j| j.set_minus_ack),
        ("**both in sets − DISCOVER sent**", |j| j.set_minus_discover),
        ("address in set per `nft -j monitor` − ACK at client", |j| {
            j.monitor_v4_minus_ack
        }),
        ("ACK at client − DISCOVER sent", |j| j.ack_minus_discover),
        ("OFFER at client − DISCOVER sent (server)", |j| j.offer_minus_discover),
        ("REQUEST sent − OFFER at client (udhcpc)", |j| j.request_minus_offer),
        ("ACK at client − REQUEST sent (server)", |j| j.ack_minus_request),
    ];
    for (name, f) in rows {
        let v = col(f);
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            median(&v),
            p95(&v),
            min(&v),
            max(&v)
        );
    }
    println!(
        "\nAddress in its set before the client had the ACK: {} of {} joins.",
        p1.joins.iter().filter(|j| j.v4_minus_ack < 0.0).count(),
        p1.joins.len()
    );

    println!(
        "\n## DHCP 4-way exchanges per second, Bulkhead vs dnsmasq {} ({ROUNDS} alternating rounds, {WINDOW} exchanges in flight)\n",
        dnsmasq_version()
    );
    println!("| workload | Bulkhead median | dnsmasq median | ratio | Bulkhead CPU/exchange | dnsmasq CPU/exchange | Bulkhead runs | dnsmasq runs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for (w, rounds) in &results {
        let b: Vec<f64> = rounds.iter().map(|r| r.bulkhead.rate()).collect();
        let d: Vec<f64> = rounds.iter().map(|r| r.dnsmasq.rate()).collect();
        let bc: Vec<f64> = rounds.iter().map(|r| r.bulkhead.cpu_us_per_exchange()).collect();
        let dc: Vec<f64> = rounds.iter().map(|r| r.dnsmasq.cpu_us_per_exchange()).collect();
        println!(
            "| {} | {:.0}/s | {:.0}/s | {:.3} | {:.0} µs | {:.0} µs | {} | {} |",
            w.describe(),
            median(&b),
            median(&d),
            median(&b) / median(&d),
            median(&bc),
            median(&dc),
            fmt_runs(&b),
            fmt_runs(&d)
        );
    }
    println!(
        "\nPer run, as the client saw it (completed exchanges, lost = no answer within 1 s, NAKs, stray replies) and Bulkhead's own counters over its run.\n"
    );
    println!("| workload | round | server | completed | secs | lost | NAKs | stray | server NAKs | pool exhausted | devices after | untracked |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (w, rounds) in &results {
        for (i, r) in rounds.iter().enumerate() {
            let b = &r.bulkhead;
            println!(
                "| {w:?} | {} | Bulkhead | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                b.completed,
                b.secs,
                b.lost,
                b.naks,
                b.stray,
                r.bh_naks,
                r.bh_exhausted,
                r.bh_devices,
                r.bh_untracked
            );
            let d = &r.dnsmasq;
            println!(
                "| {w:?} | {} | dnsmasq | {} | {:.2} | {} | {} | {} | | | | |",
                i + 1,
                d.completed,
                d.secs,
                d.lost,
                d.naks,
                d.stray
            );
        }
    }
    println!("\ntotal time: {:.0} s", t0.elapsed().as_secs_f64());

    let host_after = HostSnapshot::take()?;
    if let Some(diff) = host_before.diff(&host_after) {
        bail!("the host namespace changed during the benchmark:\n{diff}");
    }
    Ok(())
}

fn dnsmasq_version() -> String {
    Command::new("dnsmasq")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default()
}
