//! The home's DNS resolver: a service beside the core (docs/ARCHITECTURE.md,
//! "DNS"). It reads the inventory through the services snapshot (who is asking)
//! and asks the core for one thing: domain-set addresses held for a while,
//! before the answer that names them is sent. It never writes nft, never
//! touches the store, and adds nothing to `DaemonState`.
//!
//! - `wire.rs`: questions in, answers out (hickory-proto), EDNS, truncation.
//! - `policy.rs`: client → device → zone → what its questions get.
//! - `local.rs`: the home's own names; private reverse lookups.
//! - `blocklist.rs`: hosts / domains / adblock lists, compact matcher.
//! - `cache.rs`: answers for their TTL, negative answers, bounded.
//! - `querylog.rs`: the last questions and per-device counts, in memory.
//! - `resolver.rs`: the decisions, pure (no sockets, no clock).
//! - `upstream/` (UDP, TCP, TLS, HTTPS, bootstrap), `server.rs`: the sockets.

pub mod blocklist;
pub mod cache;
pub mod daily;
pub mod daily_store;
pub mod fetch;
pub mod hit;
pub mod lists;
pub mod local;
pub mod policy;
pub mod querylog;
pub mod resolver;
mod server;
mod udp_batch;
pub mod upstream;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::config::{MacAddr, Upstream, UpstreamProtocol};
use crate::firewall::error_chain;
use crate::kernel_ids::MARK_TUNNEL;
use crate::runtime::services::ServiceHandle;
use blocklist::{Blocklists, ListId};
pub use lists::{load_blocklists, ListStatus};
pub use policy::DnsSettings;
use querylog::{DeviceCounts, LogFilter, QueryLogEntry};
use resolver::{Resolver, ResolverStats};
use server::Shared;
use upstream::{Health, UpstreamGroup};

/// Why the resolver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Not one listen address could be bound.
    #[error("the resolver could not listen anywhere: {0}")]
    NoListener(String),
}

/// `bulkhead dns`: the resolver's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// Where it listens.
    pub listening: Vec<SocketAddr>,
    /// Listen addresses that could not be bound, with why.
    pub not_listening: Vec<(SocketAddr, String)>,
    /// Direct upstreams and their health.
    pub upstreams: Vec<(Upstream, Health)>,
    /// Upstreams asked through the tunnel and their health.
    pub tunnel_upstreams: Vec<(Upstream, Health)>,
    /// Zones' own upstreams and their health.
    #[serde(default)]
    pub zone_upstreams: Vec<(crate::config::ZoneId, Upstream, Health)>,
    /// Counters.
    pub stats: ResolverStats,
    /// Cache entries, hits, misses.
    pub cache_entries: usize,
    /// Answers from the cache.
    pub cache_hits: u64,
    /// Questions the cache could not answer.
    pub cache_misses: u64,
    /// The lists.
    pub lists: Vec<ListStatus>,
    /// Bytes the lists' matcher holds.
    pub list_bytes: usize,
    /// Per device: questions and blocked today (local time).
    pub per_device: Vec<(MacAddr, DeviceCounts)>,
    /// Per device: its most asked names today, most first (devices whose
    /// questions are logged).
    #[serde(default)]
    pub top_today: Vec<(MacAddr, Vec<(String, u64)>)>,
}

/// Names listed per device as its most asked today.
const TOP_NAMES: usize = 10;
/// How often the day counts are written.
const DAYS_FLUSH: std::time::Duration = std::time::Duration::from_secs(3_600);

/// The day counts' database, if it opened.
struct DaysOnFlash {
    store: std::sync::Mutex<Option<daily_store::DailyStore>>,
    /// The last write failed (logged once until one succeeds).
    failing: std::sync::atomic::AtomicBool,
}

impl DaysOnFlash {
    /// Opens the database and adds today's and yesterday's counts to the
    /// resolver's. A database that cannot be opened or read is logged: the
    /// counts then live in memory only.
    fn open(path: Option<&std::path::Path>, resolver: &mut Resolver) -> DaysOnFlash {
        let store = path.and_then(|p| match daily_store::DailyStore::open(p) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "DNS day counts will not survive a restart");
                None
            }
        });
        let today = resolver.day_of(server::unix_wall());
        // Counts that could not be read back are not written over either: a
        // flush would replace today's row with what was counted since.
        let store = store.and_then(|s| match s.load(today - 1) {
            Ok(rows) => {
                resolver.daily_mut().restore(rows);
                Some(s)
            }
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "DNS day counts could not be read; kept in memory only");
                None
            }
        });
        DaysOnFlash {
            store: std::sync::Mutex::new(store),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Writes what changed since the last flush (one transaction). A failed
    /// write is logged and its rows are tried again at the next flush.
    fn flush(&self, shared: &Shared) {
        use std::sync::atomic::Ordering;
        let Ok(mut store) = self.store.lock() else { return };
        let now = server::unix_wall();
        // Lock order: the store, then the resolver (never the other way).
        let (rows, today) = match shared.resolver.lock() {
            Ok(mut r) => (r.daily_mut().take_changed(), r.day_of(now)),
            Err(_) => return,
        };
        // No store: nothing to write (the counts stay bounded in memory).
        let Some(store) = store.as_mut() else { return };
        if rows.is_empty() {
            return;
        }
        match store.save(&rows, today) {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %error_chain(&e), "DNS day counts not written; tried again at each flush");
                }
                if let Ok(mut r) = shared.resolver.lock() {
                    r.daily_mut().mark_changed(&rows);
                }
            }
        }
    }

    /// Flushes once an hour (off the runtime's thread: SQLite blocks).
    async fn flush_loop(self: Arc<Self>, shared: Arc<Shared>) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + DAYS_FLUSH, DAYS_FLUSH);
        loop {
            tick.tick().await;
            let (days, shared) = (self.clone(), shared.clone());
            let _ = tokio::task::spawn_blocking(move || days.flush(&shared)).await;
        }
    }
}

/// The running resolver.
pub struct DnsService {
    days: Arc<DaysOnFlash>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    listening: Vec<SocketAddr>,
    not_listening: Vec<(SocketAddr, String)>,
    settings: DnsSettings,
}

impl Drop for DnsService {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // What was counted since the last flush (nothing after `stop`).
        self.days.flush(&self.shared);
    }
}

impl DnsService {
    /// Stops serving and writes the day counts off the runtime's thread
    /// (SQLite waits for the flash). Dropping it does the same on the
    /// calling thread.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        let (days, shared) = (self.days.clone(), self.shared.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || days.flush(&shared)).await {
            tracing::warn!(error = %e, "writing the DNS day counts");
        }
    }

    /// Binds every listen address (those that fail are reported, the others
    /// serve) and starts serving. `lists` from [`load_blocklists`].
    pub fn start(
        settings: DnsSettings,
        lists: (Blocklists, Vec<ListStatus>),
        service: ServiceHandle,
    ) -> Result<DnsService, DnsError> {
        let listen = settings.dns.listen.clone();
        let uses_tls = settings
            .dns
            .upstreams
            .iter()
            .chain(&settings.dns.tunnel_upstreams)
            .chain(settings.zones.values().flat_map(|(_, z)| z.upstreams.iter()))
            .any(|u| matches!(u.protocol, UpstreamProtocol::Tls | UpstreamProtocol::Https));
        let tls = if uses_tls {
            upstream::tls_client(&settings.dns.tls_ca_file)
        } else {
            Err("no tls:// or https:// upstream is configured".to_string())
        };
        if let (true, Err(e)) = (uses_tls, &tls) {
            tracing::error!(error = %e, "DNS-over-TLS/HTTPS upstreams cannot be checked; they will fail");
        }
        let bootstrap = settings.dns.bootstrap.clone();
        let direct = UpstreamGroup::new(settings.dns.upstreams.clone(), None, tls.clone(), bootstrap.clone());
        let fetch_tls = match (&tls, settings.dns.blocklists.iter().any(|b| b.url.is_some())) {
            (Ok(t), _) => Some(t.clone()),
            (Err(_), true) => upstream::tls_client(&settings.dns.tls_ca_file).ok(),
            (Err(_), false) => None,
        };
        // A loopback upstream (a local stub such as stubby) is reached by the
        // local table whatever the mark, and forwards by the WAN: never one
        // for tunnelled devices — nor a loopback bootstrap server. The others
        // (bootstrap questions included) carry the tunnel's mark.
        let not_loopback = |list: &[Upstream]| -> Vec<Upstream> {
            list.iter().filter(|u| !u.addr.ip().is_loopback()).cloned().collect()
        };
        let through_tunnel = not_loopback(if settings.dns.tunnel_upstreams.is_empty() {
            &settings.dns.upstreams
        } else {
            &settings.dns.tunnel_upstreams
        });
        let tunnel = UpstreamGroup::new(through_tunnel, Some(MARK_TUNNEL), tls.clone(), not_loopback(&bootstrap));
        let zones = settings
            .zones
            .iter()
            .filter(|(_, (_, z))| !z.upstreams.is_empty())
            .map(|(id, (_, z))| {
                let group = UpstreamGroup::new(z.upstreams.clone(), None, tls.clone(), bootstrap.clone());
                (id.clone(), group)
            })
            .collect();
        let (matcher, list_status) = lists;
        let mut resolver = Resolver::new(settings.clone(), matcher);
        let days = DaysOnFlash::open(settings.days_file.as_deref(), &mut resolver);
        let shared = Arc::new(Shared::new(resolver, direct, tunnel, zones, service, list_status));
        let mut tasks = Vec::new();
        let mut listening = Vec::new();
        let mut not_listening = Vec::new();
        for addr in listen {
            match bind(addr) {
                Ok((udp, tcp)) => {
                    tasks.push(tokio::spawn(server::serve_udp(shared.clone(), udp)));
                    tasks.push(tokio::spawn(server::serve_tcp(shared.clone(), tcp)));
                    listening.push(addr);
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "the resolver cannot listen here");
                    not_listening.push((addr, e.to_string()));
                }
            }
        }
        if listening.is_empty() && !not_listening.is_empty() {
            let why = not_listening
                .iter()
                .map(|(a, e)| format!("{a}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(DnsError::NoListener(why));
        }
        tracing::info!(addresses = ?listening, "resolver listening");
        if settings.dns.blocklists.iter().any(|b| b.url.is_some()) {
            tasks.push(tokio::spawn(lists::refresh_loop(
                shared.clone(),
                settings.clone(),
                fetch_tls,
            )));
        }
        let days = Arc::new(days);
        tasks.push(tokio::spawn(days.clone().flush_loop(shared.clone())));
        Ok(DnsService {
            days,
            shared,
            tasks,
            listening,
            not_listening,
            settings,
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// The resolver's state.
    pub fn status(&self) -> DnsStatus {
        let mut lists = self.shared.lists.lock().map(|l| l.clone()).unwrap_or_default();
        let (stats, cache, per_device, top_today, list_bytes) = match self.shared.resolver.lock() {
            Ok(mut r) => {
                let (s, c) = r.stats();
                let today = r.day_of(server::unix_wall());
                let per: Vec<_> = r
                    .daily()
                    .day(today)
                    .map(|(m, d)| {
                        let counts = DeviceCounts {
                            queries: d.queries,
                            blocked: d.blocked,
                        };
                        let top = d
                            .most_asked(TOP_NAMES)
                            .into_iter()
                            .map(|(n, c)| (n.to_string(), c))
                            .collect();
                        ((*m, counts), (*m, top))
                    })
                    .collect();
                let (per, top): (Vec<_>, Vec<_>) = per.into_iter().unzip();
                for (name, n) in r.blocked_by_list() {
                    if let Some(l) = lists.iter_mut().find(|l| l.name == name) {
                        l.blocked = n;
                    }
                }
                (s, c, per, top, r.blocklists().0.heap_bytes())
            }
            Err(_) => Default::default(),
        };
        DnsStatus {
            listening: self.listening.clone(),
            not_listening: self.not_listening.clone(),
            upstreams: self.shared.direct.health(),
            tunnel_upstreams: self.shared.tunnel.health(),
            zone_upstreams: self
                .shared
                .zones
                .iter()
                .flat_map(|(zone, g)| g.health().into_iter().map(move |(u, h)| (zone.clone(), u, h)))
                .collect(),
            stats,
            cache_entries: cache.entries,
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            lists,
            list_bytes,
            per_device,
            top_today,
        }
    }

    /// Downloads the URL lists now (`bulkhead dns refresh`).
    pub fn refresh_lists(&self) {
        self.shared.refresh.notify_one();
    }

    /// The query log, newest first.
    pub fn log(&self, filter: &LogFilter) -> Vec<QueryLogEntry> {
        self.shared
            .resolver
            .lock()
            .map(|r| r.log().read(filter))
            .unwrap_or_default()
    }

    /// What a device would get for `name`, and why (nothing is asked upstream).
    pub fn explain(&self, name: &str, from: Option<IpAddr>) -> Result<String, String> {
        // Lock order everywhere: the inventory, then the resolver.
        let inventory = self
            .shared
            .service
            .inventory
            .read()
            .map_err(|_| "inventory unavailable".to_string())?;
        let resolver = self
            .shared
            .resolver
            .lock()
            .map_err(|_| "resolver unavailable".to_string())?;
        Ok(resolver.explain(&inventory, name, from.unwrap_or(IpAddr::from([127, 0, 0, 1]))))
    }
}

/// Binds even before the address is usable (IP_FREEBIND): at start an IPv6
/// segment address is still tentative (duplicate address detection) and a
/// bridge Bulkhead just created may not carry its address yet; the socket
/// receives as soon as it does.
fn freebind(socket: &socket2::Socket, addr: SocketAddr) -> std::io::Result<()> {
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)
    } else {
        socket.set_freebind_v4(true)
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let udp = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    freebind(&udp, addr)?;
    // Bursts of questions must not be dropped by the kernel before we read
    // them (hickory-dns #2613 measured loss with the default buffer).
    let _ = udp.set_recv_buffer_size(1 << 20);
    udp.set_nonblocking(true)?;
    udp.bind(&addr.into())?;
    let udp = tokio::net::UdpSocket::from_std(udp.into())?;
    let tcp = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    freebind(&tcp, addr)?;
    tcp.set_reuse_address(true)?;
    tcp.set_nonblocking(true)?;
    tcp.bind(&addr.into())?;
    tcp.listen(128)?;
    let tcp = tokio::net::TcpListener::from_std(tcp.into())?;
    Ok((udp, tcp))
}

/// The fuzz target `dns_query`: after a 2-byte length N, N bytes as a
/// client's datagram (and as a TCP message), the rest as the upstream's
/// answer, through the whole chain. Whatever is sent back must parse, carry
/// the client's id and fit the transport's size.
pub fn fuzz_entry_query(data: &[u8]) {
    use std::time::Instant;
    let [hi, lo, rest @ ..] = data else { return };
    let cut = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
    let (packet, upstream) = rest.split_at(cut);
    let mut settings = DnsSettings::fuzz_sample();
    settings.dns.upstreams = vec![Upstream::plain(
        SocketAddr::from(([192, 0, 2, 53], 53)),
        UpstreamProtocol::Udp,
    )];
    let lists = Blocklists::build(vec![(ListId(0), blocklist::parse_list("ads.example\n"))]);
    let mut r = Resolver::new(settings, lists);
    let snapshot = crate::core::InventorySnapshot::fuzz_sample();
    let now = Instant::now();
    for transport in [wire::Transport::Udp, wire::Transport::Tcp] {
        // What the client said it takes (512 without EDNS, at most 1232 over UDP).
        let limit = wire::Question::parse(packet).map_or(512, |q| q.payload_limit(transport));
        let src = SocketAddr::from(([10, 0, 1, 10], 5353));
        match r.begin(packet, src, transport, &snapshot, now, 0) {
            resolver::Begin::Reply(bytes) => check_reply(packet, &bytes, limit),
            resolver::Begin::AfterHolds { reply, .. } => check_reply(packet, &reply, limit),
            resolver::Begin::Drop => {}
            resolver::Begin::Forward(pending) => {
                let answer = hickory_proto::op::Message::from_vec(upstream).map(|m| (m, "fuzz".to_string()));
                let done = r.finish(pending, answer.map_err(|e| e.to_string()), now, 0);
                if let Some(bytes) = done.reply {
                    check_reply(packet, &bytes, limit);
                }
                if let Some(c) = done.to_cache {
                    r.commit(c, now);
                }
            }
        }
    }
}

fn check_reply(packet: &[u8], bytes: &[u8], limit: usize) {
    let reply = hickory_proto::op::Message::from_vec(bytes).expect("every reply parses");
    assert!(
        bytes.len() <= limit,
        "a reply of {} bytes over the client's {limit}",
        bytes.len()
    );
    if let [a, b, ..] = packet {
        assert_eq!(reply.metadata.id, u16::from_be_bytes([*a, *b]), "the client's id");
    }
}

/// The whole error chain of a DNS error, for logs and alerts.
pub fn describe(e: &DnsError) -> String {
    error_chain(e)
}
