//! PURE: the mDNS proxy's state machine. Packets and time in, actions out
//! (datagrams to send on a segment, pinholes to open or close); no sockets.
//!
//! A proxy, not a reflector: it keeps its own cache of the shared services
//! devices announced in their segment, and ANSWERS questions asked in other
//! segments from it, only for the zones each service is shared to. It never
//! forwards a packet, never carries a question from one segment to another
//! (it asks providers itself, as any querier does), never answers in the
//! provider's own segment (the device answers there itself: no echo), and
//! never claims a name of its own, so there is nothing to conflict with.
//!
//! Evidence is bound to the sender: an announcement counts only from an
//! address the inventory knows, for that device's zone, and only the
//! sender's own addresses go into the address records (a plug cannot
//! announce "the printer is at the laptop's address" and open a pinhole to
//! the laptop).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use ipnet::Ipv4Net;

use super::limits::{asker_zone, PerAddressRate, Throttle};
use super::rules::Sharing;
use crate::config::{MacAddr, ServiceType, ZoneId};
use crate::core::InventorySnapshot;
use crate::firewall::Pinhole;
use crate::inventory::UnixTime;

/// mDNS's port.
pub const MDNS_PORT: u16 = 5353;
/// mDNS's IPv4 group.
pub const MDNS_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// At most this many shared instances cached (a flood of announcements
/// cannot grow memory or the pinhole sets).
pub const MAX_INSTANCES: usize = 256;
/// At most this many from one address.
pub const MAX_INSTANCES_PER_ADDRESS: usize = 16;
/// TXT data kept per instance, bytes.
const MAX_TXT_BYTES: usize = 1024;
/// Legacy unicast answers carry at most this TTL (RFC 6762 6.7).
const LEGACY_TTL: u32 = 10;
/// An instance lives at most this long without a refresh (avahi's PTR TTL).
const MAX_TTL: u32 = 4500;
/// Our own questions on a segment for one type, at most one per this many
/// seconds.
const QUERY_EVERY_SECS: i64 = 5;
/// Shared types are asked for in every segment this often, so services that
/// were announced before Bulkhead started are found.
const BROWSE_EVERY_SECS: i64 = 60;
/// Questions answered per asking address per second, at most.
const QUESTIONS_PER_SECOND: u32 = 20;
/// Instances in one answer, at most (one datagram).
const MAX_INSTANCES_PER_ANSWER: usize = 8;

/// One segment the proxy serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its interface (the socket is bound to it).
    pub interface: String,
    /// Its IPv4 subnet (which devices are on it).
    pub ipv4: Ipv4Net,
}

/// What the proxy wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `packet` on segment `segment` (its index) to `to`.
    Send {
        /// The segment's index.
        segment: usize,
        /// The group or a querier.
        to: SocketAddr,
        /// The mDNS message.
        packet: Vec<u8>,
    },
    /// Open `pinholes` to `zone` for `ttl_secs`.
    Open {
        /// The consuming zone.
        zone: ZoneId,
        /// Into the shared device.
        pinholes: Vec<Pinhole>,
        /// The announcement's lifetime.
        ttl_secs: u32,
    },
    /// Close every pinhole into `address`.
    Close {
        /// The shared device's address.
        address: IpAddr,
    },
}

/// What the proxy saw, for `bulkhead status` and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxyCounters {
    /// Datagrams received.
    pub received: u64,
    /// Not a DNS message (dropped).
    pub malformed: u64,
    /// Announcements from an address no device holds, or a blocked one.
    pub unknown_sender: u64,
    /// Address records naming another device's address (left out).
    pub foreign_addresses: u64,
    /// New instances refused because the cache was full.
    pub cache_full: u64,
    /// Questions refused over the per-address rate.
    pub rate_limited: u64,
    /// Answers sent.
    pub answers: u64,
    /// Unsolicited announcements (and goodbyes) sent.
    pub announcements: u64,
    /// Shared instances in the cache now.
    pub instances: u64,
}

/// One shared service instance, as its device announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instance {
    segment: usize,
    provider: MacAddr,
    provider_zone: ZoneId,
    sender: IpAddr,
    service: ServiceType,
    name: Name,
    host: Name,
    port: u16,
    txt: Option<TXT>,
    addresses: Vec<IpAddr>,
    ttl: u32,
    seen: UnixTime,
}

impl Instance {
    fn expires(&self) -> UnixTime {
        self.seen.saturating_add(i64::from(self.ttl))
    }

    /// Its records, TTLs as given (0: goodbye), cache-flush on the unique
    /// ones when multicast.
    fn records(&self, ttl: u32, flush: bool) -> (Record, Vec<Record>) {
        let ptr = Record::from_rdata(service_name(&self.service), ttl, RData::PTR(PTR(self.name.clone())));
        let mut extra = vec![Record::from_rdata(
            self.name.clone(),
            ttl,
            RData::SRV(SRV::new(0, 0, self.port, self.host.clone())),
        )];
        if let Some(txt) = &self.txt {
            extra.push(Record::from_rdata(self.name.clone(), ttl, RData::TXT(txt.clone())));
        }
        for a in &self.addresses {
            extra.push(address_record(&self.host, ttl, *a));
        }
        for r in &mut extra {
            r.mdns_cache_flush = flush;
        }
        (ptr, extra)
    }
}

/// `_googlecast._tcp.local.`
fn service_name(t: &ServiceType) -> Name {
    Name::from_ascii(format!("{}.local.", t.as_str())).unwrap_or_else(|_| Name::root())
}

fn services_meta() -> Name {
    Name::from_ascii("_services._dns-sd._udp.local.").unwrap_or_else(|_| Name::root())
}

fn address_record(name: &Name, ttl: u32, a: IpAddr) -> Record {
    let data = match a {
        IpAddr::V4(v4) => RData::A(v4.into()),
        IpAddr::V6(v6) => RData::AAAA(v6.into()),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

fn key(name: &Name) -> String {
    name.to_lowercase().to_ascii()
}

/// The proxy. See the module documentation.
#[derive(Debug)]
pub struct Proxy {
    sharing: Sharing,
    segments: Vec<SegmentInfo>,
    /// By (provider segment, lower-case instance name).
    instances: BTreeMap<(usize, String), Instance>,
    last_query: Throttle<(usize, ServiceType)>,
    last_multicast: BTreeMap<(usize, String), UnixTime>,
    asked: PerAddressRate,
    last_browse: Option<UnixTime>,
    counters: ProxyCounters,
    /// Moves when the cache's content changes (what [`Proxy::shared`] lists).
    revision: u64,
}

impl Proxy {
    /// A proxy for `segments` sharing what `sharing` says.
    pub fn new(sharing: Sharing, segments: Vec<SegmentInfo>) -> Proxy {
        Proxy {
            sharing,
            segments,
            instances: BTreeMap::new(),
            last_query: Throttle::new(QUERY_EVERY_SECS),
            last_multicast: BTreeMap::new(),
            asked: PerAddressRate::new(QUESTIONS_PER_SECOND),
            last_browse: None,
            counters: ProxyCounters::default(),
            revision: 0,
        }
    }

    /// Moves whenever [`Proxy::shared`] would list something else.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// What it saw so far.
    pub fn counters(&self) -> ProxyCounters {
        ProxyCounters {
            instances: self.instances.len() as u64,
            ..self.counters
        }
    }

    /// The shared instances cached, for the status and the device page.
    pub fn shared(&self) -> Vec<super::SharedService> {
        self.instances
            .values()
            .map(|i| super::SharedService {
                service: i.service.to_string(),
                instance: i
                    .name
                    .iter()
                    .next()
                    .map(|label| String::from_utf8_lossy(label).into_owned())
                    .unwrap_or_default(),
                address: i.sender,
                port: i.port,
                zone: i.provider_zone.to_string(),
                to: self
                    .sharing
                    .consumers(&i.service, &i.provider_zone)
                    .into_iter()
                    .map(ToString::to_string)
                    .collect(),
            })
            .collect()
    }

    /// The pinholes it holds into `address` (to open again after another
    /// part of the proxy closed every pinhole into it).
    pub fn reopen(&self, address: IpAddr) -> Vec<Action> {
        self.instances
            .values()
            .filter(|i| i.sender == address)
            .flat_map(|i| self.open(i))
            .collect()
    }

    /// One datagram that arrived on segment `segment` from `src`.
    pub fn on_packet(
        &mut self,
        segment: usize,
        src: SocketAddr,
        packet: &[u8],
        inventory: &InventorySnapshot,
        now: UnixTime,
    ) -> Vec<Action> {
        self.counters.received += 1;
        if segment >= self.segments.len() {
            return Vec::new();
        }
        let Ok(msg) = Message::from_vec(packet) else {
            self.counters.malformed += 1;
            return Vec::new();
        };
        if msg.metadata.op_code != OpCode::Query {
            return Vec::new();
        }
        match msg.metadata.message_type {
            MessageType::Response => self.on_response(segment, src, &msg, inventory, now),
            MessageType::Query => self.on_question(segment, src, &msg, inventory, now),
        }
    }

    fn on_response(
        &mut self,
        segment: usize,
        src: SocketAddr,
        msg: &Message,
        inventory: &InventorySnapshot,
        now: UnixTime,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(device) = inventory.device_at(src.ip()).filter(|d| !d.blocked) else {
            self.counters.unknown_sender += 1;
            return actions;
        };
        let records: Vec<&Record> = msg.answers.iter().chain(msg.additionals.iter()).collect();
        for r in &records {
            let RData::PTR(PTR(instance_name)) = &r.data else {
                continue;
            };
            let Some(service) = self.shared_type_of(&r.name) else {
                continue;
            };
            if self.sharing.consumers(&service, &device.zone).is_empty() {
                continue;
            }
            // The instance must be of this type: `<label>.<type>.local.`.
            if instance_name.num_labels() != r.name.num_labels() + 1 || instance_name.base_name() != r.name {
                self.counters.malformed += 1;
                continue;
            }
            let k = (segment, key(instance_name));
            if r.ttl == 0 {
                // Goodbye, only from the device that announced it.
                if self.instances.get(&k).is_some_and(|i| i.provider == device.mac) {
                    if let Some(gone) = self.instances.remove(&k) {
                        self.revision += 1;
                        actions.extend(self.retire(gone, inventory, now));
                    }
                }
                continue;
            }
            let Some(srv) = records.iter().find_map(|x| match &x.data {
                RData::SRV(srv) if x.name == *instance_name && x.ttl > 0 => Some((srv, x.ttl)),
                _ => None,
            }) else {
                continue;
            };
            let (srv, srv_ttl) = srv;
            let txt = records.iter().find_map(|x| match &x.data {
                RData::TXT(t) if x.name == *instance_name => Some(t.clone()),
                _ => None,
            });
            let txt = txt.filter(|t| t.txt_data.iter().map(|d| d.len() + 1).sum::<usize>() <= MAX_TXT_BYTES);
            let mut addresses = BTreeSet::new();
            for x in &records {
                let a: IpAddr = match &x.data {
                    RData::A(a) if x.name == srv.target => IpAddr::V4(a.0),
                    RData::AAAA(a) if x.name == srv.target => IpAddr::V6(a.0),
                    _ => continue,
                };
                if a == src.ip() || device.addresses.contains(&a) {
                    addresses.insert(a);
                } else {
                    self.counters.foreign_addresses += 1;
                }
            }
            if addresses.is_empty() {
                addresses.insert(src.ip());
            }
            let fresh = Instance {
                segment,
                provider: device.mac,
                provider_zone: device.zone.clone(),
                sender: src.ip(),
                service: service.clone(),
                name: instance_name.clone(),
                host: srv.target.clone(),
                port: srv.port,
                txt,
                addresses: addresses.into_iter().take(4).collect(),
                ttl: srv_ttl.min(r.ttl).clamp(1, MAX_TTL),
                seen: now,
            };
            let previous = self.instances.get(&k).cloned();
            if previous.is_none() {
                let from_sender = self.instances.values().filter(|i| i.sender == src.ip()).count();
                if self.instances.len() >= MAX_INSTANCES || from_sender >= MAX_INSTANCES_PER_ADDRESS {
                    self.counters.cache_full += 1;
                    continue;
                }
            }
            let changed = previous.as_ref().is_none_or(|p| {
                (p.port, &p.host, &p.addresses, &p.txt, &p.provider_zone)
                    != (
                        fresh.port,
                        &fresh.host,
                        &fresh.addresses,
                        &fresh.txt,
                        &fresh.provider_zone,
                    )
            });
            if let Some(p) = previous.filter(|p| p.sender != fresh.sender || p.provider_zone != fresh.provider_zone) {
                actions.push(Action::Close { address: p.sender });
            }
            actions.extend(self.open(&fresh));
            if changed {
                self.revision += 1;
                actions.extend(self.announce(&fresh, fresh.ttl, inventory, now));
            }
            self.instances.insert(k, fresh);
        }
        actions
    }

    /// The shared type a PTR owner name is (`_googlecast._tcp.local.`).
    fn shared_type_of(&self, name: &Name) -> Option<ServiceType> {
        let text = key(name);
        let t = text.strip_suffix(".local.")?;
        let t = ServiceType::new(t).ok()?;
        self.sharing.service_types().contains(&t).then_some(t)
    }

    /// Pinholes for every zone the instance is shared to.
    fn open(&self, i: &Instance) -> Vec<Action> {
        self.sharing
            .consumers(&i.service, &i.provider_zone)
            .into_iter()
            .map(|zone| Action::Open {
                zone: zone.clone(),
                pinholes: i
                    .addresses
                    .iter()
                    .flat_map(|a| self.sharing.pinholes(&i.service, &i.provider_zone, zone, *a, i.port))
                    .collect(),
                ttl_secs: i.ttl,
            })
            .collect()
    }

    /// An instance left: goodbyes where it was announced, its pinholes
    /// closed (and those of the device's other instances opened again).
    fn retire(&mut self, gone: Instance, inventory: &InventorySnapshot, now: UnixTime) -> Vec<Action> {
        let mut actions = self.announce(&gone, 0, inventory, now);
        actions.push(Action::Close { address: gone.sender });
        let others: Vec<Instance> = self
            .instances
            .values()
            .filter(|i| i.sender == gone.sender)
            .cloned()
            .collect();
        for i in &others {
            actions.extend(self.open(i));
        }
        actions
    }

    /// The segments where a zone the instance is shared to has a device,
    /// other than the provider's own.
    fn consumer_segments(&self, i: &Instance, inventory: &InventorySnapshot) -> BTreeSet<usize> {
        let zones = self.sharing.consumers(&i.service, &i.provider_zone);
        let mut out = BTreeSet::new();
        for d in inventory
            .devices
            .values()
            .filter(|d| zones.contains(&d.zone) && !d.blocked)
        {
            for a in &d.addresses {
                let IpAddr::V4(v4) = a else { continue };
                if let Some(s) = self.segments.iter().position(|s| s.ipv4.contains(v4)) {
                    if s != i.segment {
                        out.insert(s);
                    }
                }
            }
        }
        out
    }

    /// An unsolicited announcement (or goodbye, `ttl` 0) on the consumer
    /// segments.
    fn announce(&mut self, i: &Instance, ttl: u32, inventory: &InventorySnapshot, now: UnixTime) -> Vec<Action> {
        let (ptr, extra) = i.records(ttl, true);
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = true;
        m.add_answer(ptr);
        m.add_answers(extra);
        let Ok(packet) = m.to_vec() else { return Vec::new() };
        let mut out = Vec::new();
        for segment in self.consumer_segments(i, inventory) {
            self.last_multicast.insert((segment, key(&i.name)), now);
            self.counters.announcements += 1;
            out.push(Action::Send {
                segment,
                to: SocketAddr::from((MDNS_V4, MDNS_PORT)),
                packet: packet.clone(),
            });
        }
        out
    }

    fn on_question(
        &mut self,
        segment: usize,
        src: SocketAddr,
        msg: &Message,
        inventory: &InventorySnapshot,
        now: UnixTime,
    ) -> Vec<Action> {
        let Some(zone) = asker_zone(inventory, src.ip()) else {
            return Vec::new();
        };
        // Nothing is shared to this zone: no answer, and no rate spent.
        if !self.sharing.shares_to(&zone) || msg.queries.is_empty() {
            return Vec::new();
        }
        if self.asked.over(src.ip(), now) {
            self.counters.rate_limited += 1;
            return Vec::new();
        }
        let legacy = src.port() != MDNS_PORT;
        let unicast = legacy || msg.queries.iter().any(|q| q.mdns_unicast_response);
        let visible: Vec<&Instance> = self
            .instances
            .values()
            .filter(|i| i.segment != segment && self.sharing.allows(&i.service, &i.provider_zone, &zone))
            .collect();
        // Known answers (RFC 6762 7.1): a PTR the querier holds with at
        // least half its TTL left is not repeated.
        let known: BTreeSet<String> = msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(PTR(target)) => visible
                    .iter()
                    .find(|i| i.name == *target && r.ttl >= i.ttl / 2)
                    .map(|i| key(&i.name)),
                _ => None,
            })
            .collect();
        let mut answers: Vec<Record> = Vec::new();
        let mut additionals: Vec<Record> = Vec::new();
        let mut named: BTreeSet<String> = BTreeSet::new();
        let mut ask_for: BTreeSet<ServiceType> = BTreeSet::new();
        let shared_types: Vec<ServiceType> = self.sharing.service_types().into_iter().cloned().collect();
        let ttl_of = |i: &Instance| {
            let left = u32::try_from(i.expires().saturating_sub(now)).unwrap_or(0).max(1);
            if legacy {
                left.min(LEGACY_TTL)
            } else {
                left
            }
        };
        for q in &msg.queries {
            if q.query_class != DNSClass::IN && q.query_class != DNSClass::ANY {
                continue;
            }
            let any = q.query_type == RecordType::ANY;
            if q.name == services_meta() && (any || q.query_type == RecordType::PTR) {
                let types: BTreeSet<&ServiceType> = visible.iter().map(|i| &i.service).collect();
                for t in types {
                    let ttl = if legacy { LEGACY_TTL } else { 4500 };
                    answers.push(Record::from_rdata(
                        q.name.clone(),
                        ttl,
                        RData::PTR(PTR(service_name(t))),
                    ));
                }
                continue;
            }
            if any || q.query_type == RecordType::PTR {
                if let Some(t) = shared_types.iter().find(|t| service_name(t) == q.name) {
                    let of_type: Vec<&&Instance> = visible.iter().filter(|i| &i.service == t).collect();
                    if of_type.is_empty() {
                        ask_for.insert(t.clone());
                    }
                    for i in of_type.into_iter().take(MAX_INSTANCES_PER_ANSWER) {
                        if known.contains(&key(&i.name)) || !named.insert(key(&i.name)) {
                            continue;
                        }
                        let (ptr, extra) = i.records(ttl_of(i), !legacy);
                        answers.push(ptr);
                        additionals.extend(extra);
                    }
                    continue;
                }
            }
            // Questions about one instance (SRV, TXT) or its host (A, AAAA).
            for i in visible.iter().take(MAX_INSTANCES) {
                let (_, extra) = i.records(ttl_of(i), !legacy);
                for r in extra {
                    let wanted = r.name == q.name && (any || r.record_type() == q.query_type);
                    if wanted && !answers.contains(&r) {
                        answers.push(r);
                    }
                }
            }
        }
        let mut actions = Vec::new();
        if !answers.is_empty() {
            // RFC 6762 6: a record is multicast on a link at most once a second.
            let first = key(&answers[0].name);
            let recently = self
                .last_multicast
                .get(&(segment, first.clone()))
                .is_some_and(|at| *at == now);
            if unicast || !recently {
                let mut m = Message::new(
                    if legacy { msg.metadata.id } else { 0 },
                    MessageType::Response,
                    OpCode::Query,
                );
                m.metadata.authoritative = true;
                if legacy {
                    // Legacy resolvers match the question (RFC 6762 6.7).
                    for q in &msg.queries {
                        let mut echo = Query::query(q.name.clone(), q.query_type);
                        echo.query_class = DNSClass::IN;
                        m.add_query(echo);
                    }
                }
                additionals.retain(|r| !answers.contains(r));
                m.add_answers(answers);
                m.add_additionals(additionals);
                if let Ok(packet) = m.to_vec() {
                    let to = if legacy {
                        src
                    } else if unicast {
                        SocketAddr::new(src.ip(), MDNS_PORT)
                    } else {
                        self.last_multicast.insert((segment, first), now);
                        SocketAddr::from((MDNS_V4, MDNS_PORT))
                    };
                    self.counters.answers += 1;
                    actions.push(Action::Send { segment, to, packet });
                }
            }
        }
        for t in ask_for {
            actions.extend(self.ask(&t, Some(segment), now));
        }
        actions
    }

    /// Our own question for `t` on every segment but `except`, each at most
    /// once per [`QUERY_EVERY_SECS`].
    fn ask(&mut self, t: &ServiceType, except: Option<usize>, now: UnixTime) -> Vec<Action> {
        let segments: Vec<usize> = (0..self.segments.len()).filter(|s| Some(*s) != except).collect();
        self.ask_on(t, &segments, now)
    }

    /// Our own question for `t` on `segments`, each at most once per
    /// [`QUERY_EVERY_SECS`].
    fn ask_on(&mut self, t: &ServiceType, segments: &[usize], now: UnixTime) -> Vec<Action> {
        let mut m = Message::new(0, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(service_name(t), RecordType::PTR));
        let Ok(packet) = m.to_vec() else { return Vec::new() };
        let mut out = Vec::new();
        for &segment in segments {
            if !self.last_query.due((segment, t.clone()), now) {
                continue;
            }
            out.push(Action::Send {
                segment,
                to: SocketAddr::from((MDNS_V4, MDNS_PORT)),
                packet: packet.clone(),
            });
        }
        out
    }

    /// Time passes: instances past their TTL, or whose device left its
    /// zone, went away or was blocked, are retired; those past half their
    /// life are asked for again (as a querier refreshes its cache); every
    /// shared type is browsed for now and then.
    pub fn tick(&mut self, inventory: &InventorySnapshot, now: UnixTime) -> Vec<Action> {
        let mut actions = Vec::new();
        let stale: Vec<(usize, String)> = self
            .instances
            .iter()
            .filter(|(_, i)| {
                i.expires() <= now || super::limits::provider_gone(inventory, &i.provider, &i.provider_zone, &i.sender)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(gone) = self.instances.remove(&k) {
                self.revision += 1;
                actions.extend(self.retire(gone, inventory, now));
            }
        }
        let refresh: BTreeSet<(usize, ServiceType)> = self
            .instances
            .values()
            .filter(|i| now.saturating_sub(i.seen) * 2 >= i64::from(i.ttl))
            .map(|i| (i.segment, i.service.clone()))
            .collect();
        for (segment, t) in refresh {
            actions.extend(self.ask_on(&t, &[segment], now));
        }
        if self
            .last_browse
            .is_none_or(|at| now.saturating_sub(at) >= BROWSE_EVERY_SECS)
        {
            self.last_browse = Some(now);
            let types: Vec<ServiceType> = self.sharing.service_types().into_iter().cloned().collect();
            for t in types {
                actions.extend(self.ask(&t, None, now));
            }
        }
        self.last_multicast.retain(|_, at| now.saturating_sub(*at) < 2);
        actions
    }
}
