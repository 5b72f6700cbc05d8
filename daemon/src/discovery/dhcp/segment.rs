//! One segment's DHCP state: its configuration, leases, pending offers, declined
//! addresses, and the decisions about which address a client may have.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::lease::{ClientKey, Lease, LeaseEvent};
use crate::config::{Ipv4Range, MacAddr, SegmentId};
use crate::inventory::UnixTime;

/// How long an OFFER holds its address for the client (RFC 2131 leaves it to the
/// server; clients answer within seconds).
pub const OFFER_HOLD_SECS: i64 = 60;
/// How long a declined address rests before it is offered again.
pub const DECLINE_HOLD_SECS: i64 = 600;
/// Under pressure (less than a quarter of the pool free), an offer is held
/// only this long: addresses promised to clients that never ask for them
/// (a flood of forged DISCOVERs) come back quickly.
pub const OFFER_HOLD_UNDER_PRESSURE_SECS: i64 = 10;
/// Newcomers (clients with no lease, no static address, no pending offer and
/// no address before) get offers at this rate per segment, per second…
pub const NEWCOMERS_PER_SEC: u32 = 5;
/// …after a burst of this many. Known clients are never limited.
pub const NEWCOMER_BURST: u32 = 20;
/// Newcomers refused for the rate are remembered in a table of this many
/// slots (a MAC's slot is a hash of it; fixed memory, 96 KiB per serving
/// segment, allocated on the first refusal): a real client asks again with the
/// same MAC a few seconds later and is then answered, while a flood of forged
/// MACs never repeats one. A flood overwrites slots at its rate: at 1,000
/// forged DISCOVERs a second, a client retrying after 2 s still finds its slot
/// 89% of the time, and it retries again.
const THROTTLED_SLOTS: usize = 16_384;

/// What the server needs to know about one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    /// The segment.
    pub id: SegmentId,
    /// Its interface (for the socket; the state machine does not use it).
    pub interface: String,
    /// The router's address on it: server identifier, router and default DNS.
    pub server_ip: Ipv4Addr,
    /// The segment's subnet (the router's address with its prefix is fine).
    pub subnet: Ipv4Net,
    /// Addresses handed out dynamically. Only the part inside `subnet`, minus its
    /// network and broadcast addresses, the server's address and static
    /// addresses, is used.
    pub pool: Ipv4Range,
    /// Lease time in seconds.
    pub lease_secs: u32,
    /// Domain name (option 15), if any.
    pub domain: Option<String>,
    /// DNS servers (option 6); empty means the router itself.
    pub dns: Vec<Ipv4Addr>,
    /// Fixed addresses by MAC; they need not be inside the pool, only the subnet.
    pub static_leases: BTreeMap<MacAddr, Ipv4Addr>,
}

/// Per-segment message counters. One message can count twice: once by its type
/// and once as `ignored` when nothing came of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counters {
    /// DHCPDISCOVERs received.
    pub discovers: u64,
    /// DHCPOFFERs sent.
    pub offers: u64,
    /// DHCPREQUESTs received.
    pub requests: u64,
    /// DHCPACKs sent (to REQUESTs and INFORMs).
    pub acks: u64,
    /// DHCPNAKs sent.
    pub naks: u64,
    /// DHCPRELEASEs received.
    pub releases: u64,
    /// DHCPDECLINEs received.
    pub declines: u64,
    /// DHCPINFORMs received.
    pub informs: u64,
    /// Packets dropped because they are not a well-formed client message.
    pub malformed: u64,
    /// Well-formed messages nothing came of: relayed ones, server message types,
    /// releases and declines of addresses the client does not hold, requests for
    /// addresses we know nothing about.
    pub ignored: u64,
    /// DISCOVERs left unanswered because no address was free.
    pub pool_exhausted: u64,
    /// DISCOVERs of newcomers left unanswered for the rate (a flood).
    #[serde(default)]
    pub throttled: u64,
    /// Offers taken back from clients that never asked for them, to answer
    /// another client when no address was free.
    #[serde(default)]
    pub offers_reclaimed: u64,
}

/// Whether a client may have an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    /// It is already this client's (lease, offer or static address).
    Mine,
    /// Nobody has it and it is in the pool.
    Free,
    /// Someone else has it, it is reserved, resting after a decline, or the
    /// client has a static address elsewhere.
    Taken,
    /// In the subnet but outside the pool: not ours to give.
    OutsidePool,
    /// Not in the segment's subnet at all.
    WrongSubnet,
}

/// An address held for a client after an OFFER.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    holder: ClientKey,
    expires: UnixTime,
}

/// One segment's state.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) config: SegmentConfig,
    /// Usable part of the pool, as integers (inclusive), if any.
    usable: Option<(u32, u32)>,
    leases: BTreeMap<Ipv4Addr, Lease>,
    offers: BTreeMap<Ipv4Addr, Offer>,
    /// Declined addresses and until when they rest.
    declined: BTreeMap<Ipv4Addr, UnixTime>,
    /// The last holder of each address, so a returning client gets its old
    /// address back. Keyed by address, so bounded by the subnet.
    history: BTreeMap<Ipv4Addr, ClientKey>,
    /// The newcomers' rate: tokens left and the second they were counted at.
    newcomer_tokens: (u32, UnixTime),
    /// Newcomers refused for the rate, by slot, see [`THROTTLED_SLOTS`].
    throttled: Vec<Option<MacAddr>>,
    pub(crate) counters: Counters,
}

impl Segment {
    pub(crate) fn new(config: SegmentConfig) -> Self {
        let usable = usable_range(&config);
        Segment {
            config,
            usable,
            leases: BTreeMap::new(),
            offers: BTreeMap::new(),
            declined: BTreeMap::new(),
            history: BTreeMap::new(),
            newcomer_tokens: (NEWCOMER_BURST, 0),
            throttled: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// PURE decision for a DISCOVER: whether this client may get an offer
    /// now. Known clients always may; a newcomer spends one of the segment's
    /// tokens, or is refused (remembered, so its retry is answered).
    pub(crate) fn admit_discover(&mut self, holder: &ClientKey, mac: MacAddr, now: UnixTime) -> bool {
        let known = self.static_for(mac).is_some()
            || self.lease_of(holder).is_some()
            || self.offer_of(holder, now).is_some()
            || self.history.values().any(|h| h == holder);
        if known {
            return true;
        }
        let (tokens, at) = self.newcomer_tokens;
        let refill = u32::try_from((now - at).max(0))
            .unwrap_or(u32::MAX)
            .saturating_mul(NEWCOMERS_PER_SEC);
        let tokens = tokens.saturating_add(refill).min(NEWCOMER_BURST);
        if tokens > 0 {
            self.newcomer_tokens = (tokens - 1, now);
            return true;
        }
        self.newcomer_tokens = (0, now);
        if self.throttled.is_empty() {
            self.throttled = vec![None; THROTTLED_SLOTS];
        }
        let slot = throttled_slot(mac);
        if self.throttled[slot] == Some(mac) {
            // It asked again: a real client (a forged flood never repeats a MAC).
            self.throttled[slot] = None;
            return true;
        }
        self.throttled[slot] = Some(mac);
        self.counters.throttled += 1;
        false
    }

    /// No address is free: take back the offer that has waited longest for
    /// its REQUEST (offers are not leases; RFC 2131 4.3.1 lets a server reuse
    /// an address it offered) and give it to `holder`. A flood of forged
    /// DISCOVERs can then never hold the whole pool.
    pub(crate) fn reclaim_offer(&mut self, holder: &ClientKey, now: UnixTime) -> Option<Ipv4Addr> {
        let (ip, _) = self
            .offers
            .iter()
            .filter(|(_, o)| o.holder != *holder && o.expires > now)
            .min_by_key(|(_, o)| o.expires)?;
        let ip = *ip;
        self.offers.remove(&ip);
        self.counters.offers_reclaimed += 1;
        Some(ip)
    }

    /// Less than a quarter of the pool is free (leases, offers and rests
    /// counted).
    fn under_pressure(&self, now: UnixTime) -> bool {
        let Some((start, end)) = self.usable else { return false };
        let size = u64::from(end - start) + 1;
        let used = self.leases.values().filter(|l| l.expires > now).count()
            + self.offers.values().filter(|o| o.expires > now).count()
            + self.declined.values().filter(|u| **u > now).count();
        (used as u64).saturating_mul(4) >= size.saturating_mul(3)
    }

    /// The same segment under a new configuration: leases that still fit are
    /// kept (returned: the ones that did not), offers are dropped, declined
    /// addresses, history and counters are kept.
    pub(crate) fn reconfigured(self, config: SegmentConfig) -> (Self, Vec<Lease>) {
        let mut next = Segment::new(config);
        next.declined = self.declined;
        next.history = self.history;
        next.counters = self.counters;
        let mut dropped = Vec::new();
        for lease in self.leases.into_values() {
            if let Err(lease) = next.restore(lease) {
                dropped.push(lease);
            }
        }
        (next, dropped)
    }

    pub(crate) fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Takes a lease from the store (or the previous configuration) if it fits:
    /// right segment, inside the subnet, not the server's address, and either its
    /// MAC's static address or inside the pool and nobody's static address. The
    /// later-expiring lease wins when two share an address or a client.
    pub(crate) fn restore(&mut self, lease: Lease) -> Result<(), Lease> {
        if !self.fits(&lease) {
            return Err(lease);
        }
        let holder = lease.holder();
        let beaten = |other: &Lease| other.expires > lease.expires;
        if self.leases.get(&lease.ip).is_some_and(beaten)
            || self.leases.values().any(|l| l.holder() == holder && beaten(l))
        {
            return Err(lease);
        }
        self.leases.retain(|_, l| l.holder() != holder);
        self.history.insert(lease.ip, holder);
        self.leases.insert(lease.ip, lease);
        Ok(())
    }

    fn fits(&self, lease: &Lease) -> bool {
        if lease.segment != self.config.id || !self.host_address(lease.ip) {
            return false;
        }
        match (self.static_for(lease.mac), self.static_owner(lease.ip)) {
            (Some(ip), _) => ip == lease.ip,
            (None, Some(_)) => false,
            (None, None) => self.in_pool(lease.ip),
        }
    }

    /// Inside the subnet, not its network/broadcast address, not the server's.
    fn host_address(&self, ip: Ipv4Addr) -> bool {
        let net = self.config.subnet;
        let edge = net.prefix_len() < 31 && (ip == net.network() || ip == net.broadcast());
        net.contains(&ip) && !edge && ip != self.config.server_ip
    }

    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.usable.is_some_and(|(start, end)| (start..=end).contains(&ip))
    }

    fn static_for(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.config.static_leases.get(&mac).copied()
    }

    fn static_owner(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.config
            .static_leases
            .iter()
            .find(|(_, s)| **s == ip)
            .map(|(mac, _)| *mac)
    }

    /// The client's lease (expired or not, until the timeout removes it).
    pub(crate) fn lease_of(&self, holder: &ClientKey) -> Option<&Lease> {
        self.leases.values().find(|l| l.holder() == *holder)
    }

    fn offer_of(&self, holder: &ClientKey, now: UnixTime) -> Option<Ipv4Addr> {
        self.offers
            .iter()
            .find(|(_, o)| o.holder == *holder && o.expires > now)
            .map(|(ip, _)| *ip)
    }

    /// May the client (`holder`, sending from `mac`) have `ip`?
    pub(crate) fn availability(&self, ip: Ipv4Addr, holder: &ClientKey, mac: MacAddr, now: UnixTime) -> Availability {
        if !self.config.subnet.contains(&ip) {
            return Availability::WrongSubnet;
        }
        if !self.host_address(ip) {
            return Availability::Taken;
        }
        match (self.static_for(mac), self.static_owner(ip)) {
            (Some(s), _) if s == ip => return Availability::Mine,
            (Some(_), _) => return Availability::Taken,
            (None, Some(_)) => return Availability::Taken,
            (None, None) => {}
        }
        if let Some(lease) = self.leases.get(&ip) {
            if lease.holder() == *holder {
                return Availability::Mine;
            }
            if lease.expires > now {
                return Availability::Taken;
            }
        }
        if let Some(offer) = self.offers.get(&ip).filter(|o| o.expires > now) {
            return if offer.holder == *holder {
                Availability::Mine
            } else {
                Availability::Taken
            };
        }
        if self.declined.get(&ip).is_some_and(|until| *until > now) {
            return Availability::Taken;
        }
        if self.in_pool(ip) {
            Availability::Free
        } else {
            Availability::OutsidePool
        }
    }

    /// The address to offer a discovering client: its static address, its
    /// binding, its pending offer, its previous address, the address it asks for,
    /// the first free one (preferring addresses nobody had before). `None` when
    /// the pool is exhausted.
    pub(crate) fn choose(
        &self,
        holder: &ClientKey,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        now: UnixTime,
    ) -> Option<Ipv4Addr> {
        if let Some(ip) = self.static_for(mac) {
            return Some(ip);
        }
        if let Some(lease) = self.lease_of(holder) {
            return Some(lease.ip);
        }
        if let Some(ip) = self.offer_of(holder, now) {
            return Some(ip);
        }
        let free = |ip: &Ipv4Addr| self.availability(*ip, holder, mac, now) == Availability::Free;
        let previous = self.history.iter().find(|(_, h)| *h == holder).map(|(ip, _)| *ip);
        previous
            .filter(free)
            .or(requested.filter(free))
            .or_else(|| self.first_free(now, true))
            .or_else(|| self.first_free(now, false))
    }

    /// The lowest free pool address; with `fresh`, skipping addresses somebody
    /// held before. Costs O(n log n) in the number of used addresses, not the
    /// pool size.
    fn first_free(&self, now: UnixTime, fresh: bool) -> Option<Ipv4Addr> {
        let (start, end) = self.usable?;
        let mut used: BTreeSet<u32> = BTreeSet::new();
        used.insert(self.config.server_ip.into());
        used.extend(self.config.static_leases.values().map(|ip| u32::from(*ip)));
        used.extend(
            self.leases
                .iter()
                .filter(|(_, l)| l.expires > now)
                .map(|(ip, _)| u32::from(*ip)),
        );
        used.extend(
            self.offers
                .iter()
                .filter(|(_, o)| o.expires > now)
                .map(|(ip, _)| u32::from(*ip)),
        );
        used.extend(
            self.declined
                .iter()
                .filter(|(_, u)| **u > now)
                .map(|(ip, _)| u32::from(*ip)),
        );
        if fresh {
            used.extend(self.history.keys().map(|ip| u32::from(*ip)));
        }
        let mut candidate = u64::from(start);
        for u in used.range(start..=end) {
            if u64::from(*u) == candidate {
                candidate += 1;
            } else {
                break;
            }
        }
        u32::try_from(candidate).ok().filter(|c| *c <= end).map(Ipv4Addr::from)
    }

    /// Holds `ip` for the client for [`OFFER_HOLD_SECS`], or
    /// [`OFFER_HOLD_UNDER_PRESSURE_SECS`] when the pool is nearly used up
    /// (dropping any other offer it had).
    pub(crate) fn hold(&mut self, ip: Ipv4Addr, holder: ClientKey, now: UnixTime) {
        self.offers.retain(|_, o| o.holder != holder);
        let hold = if self.under_pressure(now) {
            OFFER_HOLD_UNDER_PRESSURE_SECS
        } else {
            OFFER_HOLD_SECS
        };
        self.offers.insert(
            ip,
            Offer {
                holder,
                expires: now.saturating_add(hold),
            },
        );
    }

    /// Forgets the client's pending offer (it chose another server).
    pub(crate) fn forget_offer(&mut self, holder: &ClientKey) {
        self.offers.retain(|_, o| o.holder != *holder);
    }

    /// Binds `ip` to the client for the lease time; its other lease and offers
    /// on this segment go. The host name is kept from before when not sent.
    pub(crate) fn bind(
        &mut self,
        ip: Ipv4Addr,
        holder: ClientKey,
        mac: MacAddr,
        hostname: Option<String>,
        now: UnixTime,
    ) -> Lease {
        let previous = self.lease_of(&holder).and_then(|l| l.hostname.clone());
        self.leases.retain(|_, l| l.holder() != holder);
        self.offers.retain(|_, o| o.holder != holder);
        self.offers.remove(&ip);
        self.declined.remove(&ip);
        let client_id = match &holder {
            ClientKey::Id(id) => Some(id.clone()),
            ClientKey::Mac(_) => None,
        };
        let lease = Lease {
            segment: self.config.id.clone(),
            mac,
            client_id,
            ip,
            expires: now.saturating_add(i64::from(self.config.lease_secs)),
            hostname: hostname.or(previous),
        };
        self.history.insert(ip, holder);
        self.leases.insert(ip, lease.clone());
        lease
    }

    /// Ends the client's lease on `ip`, if it holds it.
    pub(crate) fn release(&mut self, ip: Ipv4Addr, holder: &ClientKey) -> Option<Lease> {
        if self.leases.get(&ip)?.holder() != *holder {
            return None;
        }
        self.leases.remove(&ip)
    }

    /// The client says `ip` is in use by someone else: if it was offered or
    /// bound to this client, both go and the address rests. Returns whether it was.
    pub(crate) fn decline(&mut self, ip: Ipv4Addr, holder: &ClientKey, now: UnixTime) -> bool {
        let leased = self.leases.get(&ip).is_some_and(|l| l.holder() == *holder);
        let offered = self.offers.get(&ip).is_some_and(|o| o.holder == *holder);
        if !leased && !offered {
            return false;
        }
        if leased {
            self.leases.remove(&ip);
        }
        self.offers.remove(&ip);
        self.history.remove(&ip);
        self.declined.insert(ip, now.saturating_add(DECLINE_HOLD_SECS));
        true
    }

    /// Removes expired leases (returned as events), stale offers and rested
    /// declines.
    pub(crate) fn expire(&mut self, now: UnixTime) -> Vec<LeaseEvent> {
        self.offers.retain(|_, o| o.expires > now);
        self.declined.retain(|_, until| *until > now);
        let expired: Vec<Ipv4Addr> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(ip, _)| *ip)
            .collect();
        expired
            .into_iter()
            .filter_map(|ip| self.leases.remove(&ip))
            .map(LeaseEvent::Expired)
            .collect()
    }

    /// When [`Segment::expire`] next has something to do.
    /// The wall clock jumped by `delta` seconds: every deadline moves with
    /// it, so what was left of each lease, offer and rest stays left.
    /// Only the deadlines `moves` says were set on the old clock.
    pub(crate) fn shift_deadlines(&mut self, delta: i64, moves: &dyn Fn(UnixTime) -> bool) {
        for l in self.leases.values_mut().filter(|l| moves(l.expires)) {
            l.expires = l.expires.saturating_add(delta);
        }
        for o in self.offers.values_mut().filter(|o| moves(o.expires)) {
            o.expires = o.expires.saturating_add(delta);
        }
        for until in self.declined.values_mut().filter(|u| moves(**u)) {
            *until = until.saturating_add(delta);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<UnixTime> {
        let leases = self.leases.values().map(|l| l.expires);
        let offers = self.offers.values().map(|o| o.expires);
        let declined = self.declined.values().copied();
        leases.chain(offers).chain(declined).min()
    }
}

/// The pool, cut to the subnet's host addresses.
fn usable_range(config: &SegmentConfig) -> Option<(u32, u32)> {
    let net = config.subnet;
    let (mut low, mut high) = (u32::from(net.network()), u32::from(net.broadcast()));
    if net.prefix_len() < 31 {
        low += 1;
        high -= 1;
    }
    let start = u32::from(config.pool.start).max(low);
    let end = u32::from(config.pool.end).min(high);
    (start <= end).then_some((start, end))
}

/// A MAC's slot in the table of refused newcomers (FNV-1a).
fn throttled_slot(mac: MacAddr) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in mac.0 {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % THROTTLED_SLOTS
}
