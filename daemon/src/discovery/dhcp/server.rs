//! The DHCPv4 server as a pure state machine (RFC 2131): bytes and the time in,
//! a reply, a lease event and evidence out. No clock, no sockets.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::MessageType;

use super::evidence::evidence_of;
use super::lease::{ClientKey, Lease, LeaseEvent};
use super::segment::{Availability, Counters, Segment, SegmentConfig};
use super::wire::{self, ClientMessage, RawOption, ReplyHeader};
use crate::classify::Evidence;
use crate::config::{MacAddr, SegmentId};
use crate::inventory::UnixTime;

/// The DHCP client port, where replies go.
pub const CLIENT_PORT: u16 = 68;
/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;

/// What to send, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The encoded BOOTREPLY.
    pub bytes: Vec<u8>,
    /// 255.255.255.255:68, or the client's `ciaddr`:68 when it has one (renewing,
    /// informing). Send it out of the segment's own socket.
    pub to: SocketAddrV4,
}

/// The outcome of one packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handled {
    /// A reply to send, if any.
    pub reply: Option<Reply>,
    /// What happened to a lease, if anything.
    pub event: Option<LeaseEvent>,
    /// The sender's `chaddr` and what its message says about it: present for
    /// every well-formed client message (possibly empty evidence).
    pub evidence: Option<(MacAddr, Evidence)>,
    /// This packet found the segment's pool empty.
    pub pool_exhausted: bool,
}

/// The DHCPv4 server for all segments.
#[derive(Debug, Clone, Default)]
pub struct DhcpServer {
    segments: BTreeMap<SegmentId, Segment>,
}

impl DhcpServer {
    /// A server for `segments`, with the stored `leases` that still fit the
    /// configuration (see [`DhcpServer::reconfigure`]); the others are dropped.
    /// Expired ones are kept until the next [`DhcpServer::handle_timeout`], which
    /// reports them.
    pub fn new(segments: Vec<SegmentConfig>, leases: Vec<Lease>) -> Self {
        let mut server = DhcpServer {
            segments: segments
                .into_iter()
                .map(|config| (config.id.clone(), Segment::new(config)))
                .collect(),
        };
        for lease in leases {
            if let Some(segment) = server.segments.get_mut(&lease.segment) {
                let _ = segment.restore(lease);
            }
        }
        server
    }

    /// Takes a new configuration. A lease is kept when its segment still exists,
    /// its address is inside the subnet and either its MAC's static address or in
    /// the pool and nobody's static address. Returns the leases dropped; pending
    /// offers are dropped too (clients retry).
    pub fn reconfigure(&mut self, segments: Vec<SegmentConfig>) -> Vec<Lease> {
        let mut old = std::mem::take(&mut self.segments);
        let mut dropped = Vec::new();
        for config in segments {
            let segment = match old.remove(&config.id) {
                Some(previous) => {
                    let (segment, gone) = previous.reconfigured(config);
                    dropped.extend(gone);
                    segment
                }
                None => Segment::new(config),
            };
            self.segments.insert(segment.config.id.clone(), segment);
        }
        for segment in old.values() {
            dropped.extend(segment.leases().cloned());
        }
        dropped
    }

    /// Handles one packet (a UDP payload) received on `segment` at `now`.
    /// Malformed packets are counted and dropped; a segment that is not
    /// configured gets nothing.
    pub fn handle(&mut self, segment: &SegmentId, packet: &[u8], now: UnixTime) -> Handled {
        let Some(seg) = self.segments.get_mut(segment) else {
            return Handled::default();
        };
        let msg = match wire::decode(packet) {
            Ok(msg) => msg,
            Err(_) => {
                seg.counters.malformed += 1;
                return Handled::default();
            }
        };
        let exhausted_before = seg.counters.pool_exhausted;
        let throttled_before = seg.counters.throttled;
        let (reply, event) = respond(seg, &msg, now);
        // A DISCOVER refused for the newcomers' rate tells nothing either: a
        // flood of forged MACs must not fill the inventory.
        let throttled = seg.counters.throttled > throttled_before;
        Handled {
            reply,
            event,
            evidence: (!throttled).then(|| (msg.mac, evidence_of(&msg.message))),
            pool_exhausted: seg.counters.pool_exhausted > exhausted_before,
        }
    }

    /// Ends expired leases (reported as [`LeaseEvent::Expired`]), stale offers
    /// and rested declines.
    pub fn handle_timeout(&mut self, now: UnixTime) -> Vec<LeaseEvent> {
        self.segments.values_mut().flat_map(|s| s.expire(now)).collect()
    }

    /// The wall clock jumped by `delta` seconds (an NTP step at boot on a
    /// router without a clock battery: months forward): every lease, offer
    /// and rest keeps the time it had left, instead of all leases ending at
    /// once (or lasting months). Only deadlines `moves` says were set on
    /// the old clock move. The leases, to persist again.
    pub fn shift_deadlines(&mut self, delta: i64, moves: &dyn Fn(UnixTime) -> bool) -> Vec<Lease> {
        for s in self.segments.values_mut() {
            s.shift_deadlines(delta, moves);
        }
        self.leases().cloned().collect()
    }

    /// When [`DhcpServer::handle_timeout`] next has work; `None` when nothing is
    /// pending.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        self.segments.values().filter_map(Segment::next_deadline).min()
    }

    /// All current leases, segment by segment (persist these).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.segments.values().flat_map(Segment::leases)
    }

    /// A segment's counters.
    pub fn counters(&self, segment: &SegmentId) -> Option<&Counters> {
        self.segments.get(segment).map(|s| &s.counters)
    }

    /// The configured segments.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentConfig> {
        self.segments.values().map(|s| &s.config)
    }
}

/// The reply and lease event for one well-formed message.
fn respond(seg: &mut Segment, msg: &ClientMessage, now: UnixTime) -> (Option<Reply>, Option<LeaseEvent>) {
    let c = &mut seg.counters;
    match msg.kind {
        MessageType::Discover => c.discovers += 1,
        MessageType::Request => c.requests += 1,
        MessageType::Release => c.releases += 1,
        MessageType::Decline => c.declines += 1,
        MessageType::Inform => c.informs += 1,
        _ => {
            c.ignored += 1;
            return (None, None);
        }
    }
    // Relay agents are not supported: their clients are on other links.
    if !msg.message.giaddr().is_unspecified() {
        c.ignored += 1;
        return (None, None);
    }
    let holder = ClientKey::new(msg.client_id(), msg.mac);
    let ours = msg.server_id().is_none_or(|id| id == seg.config.server_ip);
    match msg.kind {
        MessageType::Discover => (discover(seg, msg, holder, now), None),
        MessageType::Request => request(seg, msg, holder, now),
        MessageType::Release if ours => {
            let lease = seg.release(msg.message.ciaddr(), &holder);
            if lease.is_none() {
                seg.counters.ignored += 1;
            }
            (None, lease.map(LeaseEvent::Released))
        }
        MessageType::Decline if ours => match msg.requested_ip() {
            Some(ip) if seg.decline(ip, &holder, now) => {
                let event = LeaseEvent::Declined {
                    segment: seg.config.id.clone(),
                    mac: msg.mac,
                    ip,
                };
                (None, Some(event))
            }
            _ => {
                seg.counters.ignored += 1;
                (None, None)
            }
        },
        MessageType::Inform => {
            seg.counters.acks += 1;
            let ciaddr = msg.message.ciaddr();
            let reply = build(seg, msg, MessageType::Ack, ciaddr, Ipv4Addr::UNSPECIFIED, false);
            (Some(reply), None)
        }
        _ => {
            seg.counters.ignored += 1;
            (None, None)
        }
    }
}

/// An offer, if the client may have one now (see `Segment::admit_discover`:
/// newcomers are rate-limited, known clients never), from the free addresses
/// or else from an offer nobody took up.
fn discover(seg: &mut Segment, msg: &ClientMessage, holder: ClientKey, now: UnixTime) -> Option<Reply> {
    if !seg.admit_discover(&holder, msg.mac, now) {
        return None;
    }
    let chosen = seg
        .choose(&holder, msg.mac, msg.requested_ip(), now)
        .or_else(|| seg.reclaim_offer(&holder, now));
    let Some(ip) = chosen else {
        seg.counters.pool_exhausted += 1;
        return None;
    };
    seg.hold(ip, holder, now);
    seg.counters.offers += 1;
    Some(build(seg, msg, MessageType::Offer, Ipv4Addr::UNSPECIFIED, ip, true))
}

/// SELECTING (our server identifier and option 50), INIT-REBOOT (option 50, no
/// server identifier, no `ciaddr`) or RENEWING/REBINDING (`ciaddr`).
fn request(
    seg: &mut Segment,
    msg: &ClientMessage,
    holder: ClientKey,
    now: UnixTime,
) -> (Option<Reply>, Option<LeaseEvent>) {
    let ciaddr = msg.message.ciaddr();
    let ip = match (msg.server_id(), msg.requested_ip()) {
        (Some(id), _) if id != seg.config.server_ip => {
            // The client took another server's offer.
            seg.forget_offer(&holder);
            return (None, None);
        }
        (Some(_), Some(ip)) => ip,
        (None, Some(ip)) if ciaddr.is_unspecified() => ip,
        _ if !ciaddr.is_unspecified() => ciaddr,
        _ => {
            seg.counters.ignored += 1;
            return (None, None);
        }
    };
    match seg.availability(ip, &holder, msg.mac, now) {
        // Authoritative: a free pool address the client asks for is granted
        // even without a record (e.g. after the lease store was lost).
        Availability::Mine | Availability::Free => {
            let lease = seg.bind(ip, holder, msg.mac, msg.hostname().map(str::to_string), now);
            seg.counters.acks += 1;
            let reply = build(seg, msg, MessageType::Ack, ciaddr, ip, true);
            (Some(reply), Some(LeaseEvent::Bound(lease)))
        }
        Availability::Taken | Availability::OutsidePool | Availability::WrongSubnet => {
            seg.counters.naks += 1;
            (Some(nak(seg, msg)), None)
        }
    }
}

/// An OFFER or ACK (with the lease times when `lease`), to the broadcast address
/// or `ciaddr`.
fn build(
    seg: &Segment,
    msg: &ClientMessage,
    kind: MessageType,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    lease: bool,
) -> Reply {
    let cfg = &seg.config;
    let first = [
        RawOption::new(53, [u8::from(kind)]),
        RawOption::new(54, cfg.server_ip.octets()),
    ];
    let mut rest = Vec::new();
    if lease {
        let secs = cfg.lease_secs;
        rest.push(RawOption::new(51, secs.to_be_bytes()));
        if secs != u32::MAX {
            rest.push(RawOption::new(58, (secs / 2).to_be_bytes()));
            let t2 = u32::try_from(u64::from(secs) * 7 / 8).unwrap_or(u32::MAX);
            rest.push(RawOption::new(59, t2.to_be_bytes()));
        }
    }
    rest.push(RawOption::new(1, cfg.subnet.netmask().octets()));
    rest.push(RawOption::new(3, cfg.server_ip.octets()));
    let dns: Vec<u8> = if cfg.dns.is_empty() {
        cfg.server_ip.octets().to_vec()
    } else {
        cfg.dns.iter().take(63).flat_map(|d| d.octets()).collect()
    };
    rest.push(RawOption::new(6, dns));
    if let Some(domain) = cfg.domain.as_deref().filter(|d| !d.is_empty() && d.len() <= 255) {
        rest.push(RawOption::new(15, domain.as_bytes()));
    }
    rest.push(RawOption::new(28, cfg.subnet.broadcast().octets()));
    if let Some(id) = msg.client_id() {
        // RFC 6842: echo the client identifier.
        rest.push(RawOption::new(61, id));
    }
    let header = ReplyHeader::to(msg, ciaddr, yiaddr);
    Reply {
        bytes: wire::encode_reply(&header, &first, &rest, &msg.requested_params()),
        to: destination(ciaddr),
    }
}

fn nak(seg: &Segment, msg: &ClientMessage) -> Reply {
    let first = [
        RawOption::new(53, [u8::from(MessageType::Nak)]),
        RawOption::new(54, seg.config.server_ip.octets()),
    ];
    let mut rest = vec![RawOption::new(56, &b"requested address not available"[..])];
    if let Some(id) = msg.client_id() {
        rest.push(RawOption::new(61, id));
    }
    let header = ReplyHeader::to(msg, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
    Reply {
        bytes: wire::encode_reply(&header, &first, &rest, &[]),
        to: destination(Ipv4Addr::UNSPECIFIED),
    }
}

fn destination(ciaddr: Ipv4Addr) -> SocketAddrV4 {
    if ciaddr.is_unspecified() {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
    } else {
        SocketAddrV4::new(ciaddr, CLIENT_PORT)
    }
}

#[cfg(test)]
mod tests;
