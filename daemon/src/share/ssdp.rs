//! PURE: the SSDP (UPnP/DIAL discovery) side of the share proxy. Packets and
//! time in, datagrams and pinholes out.
//!
//! SSDP is HTTP over UDP multicast (239.255.255.250:1900): devices announce
//! themselves (`NOTIFY ssdp:alive` / `ssdp:byebye`) and answer a control
//! point's `M-SEARCH` by unicast. Multicast relays fail on exactly that
//! unicast answer (the device cannot reach the control point in another
//! zone) and on the HTTP fetch of the description that follows. So, as for
//! mDNS, the proxy does not relay: it keeps what devices in a providing zone
//! announced (or answered to its own searches) for the search targets a
//! share names, answers a consuming zone's `M-SEARCH` itself (from the
//! router; the LOCATION stays the device's own), and opens a pinhole to the
//! LOCATION's port — only when that URL points at the device that sent it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::limits::{asker_zone, PerAddressRate, Throttle};
use super::proxy::{Action, SegmentInfo};
use super::rules::Sharing;
use crate::config::{MacAddr, Transport, ZoneId};
use crate::core::InventorySnapshot;
pub use crate::discovery::ssdp::wire::{location_endpoint, parse, Announcement, Message, SSDP_PORT, SSDP_V4};
use crate::firewall::Pinhole;
use crate::inventory::UnixTime;

/// Entries kept at most.
pub const MAX_ENTRIES: usize = 256;
/// Entries from one address at most.
const MAX_PER_ADDRESS: usize = 16;
/// Our own searches for one target on a segment, at most one per this many seconds.
const SEARCH_EVERY_SECS: i64 = 5;
/// Every shared target is searched for this often.
const BROWSE_EVERY_SECS: i64 = 60;
/// Searches answered per asking address per second.
const SEARCHES_PER_SECOND: u32 = 10;

/// What `bulkhead status` shows of the SSDP side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SsdpCounters {
    /// Datagrams received.
    pub received: u64,
    /// Not SSDP (dropped).
    pub malformed: u64,
    /// From an address no device holds (or a blocked one).
    pub unknown_sender: u64,
    /// LOCATION pointing at another host than the sender (left out).
    pub foreign_locations: u64,
    /// New entries refused because the cache was full.
    pub cache_full: u64,
    /// Searches refused over the per-address rate.
    pub rate_limited: u64,
    /// Answers sent to searches.
    pub answers: u64,
    /// Entries cached now.
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    segment: usize,
    provider: MacAddr,
    provider_zone: ZoneId,
    sender: IpAddr,
    announcement: Announcement,
    endpoint: (IpAddr, u16),
    seen: UnixTime,
}

impl Entry {
    fn expires(&self) -> UnixTime {
        self.seen.saturating_add(i64::from(self.announcement.max_age))
    }

    fn pinhole(&self) -> Pinhole {
        Pinhole {
            address: self.endpoint.0,
            transport: Transport::Tcp,
            port: self.endpoint.1,
        }
    }
}

/// The SSDP proxy. See the module documentation.
#[derive(Debug)]
pub struct SsdpProxy {
    sharing: Sharing,
    segments: Vec<SegmentInfo>,
    /// By (segment, lower-case USN).
    entries: BTreeMap<(usize, String), Entry>,
    last_search: Throttle<(usize, String)>,
    asked: PerAddressRate,
    last_browse: Option<UnixTime>,
    counters: SsdpCounters,
}

impl SsdpProxy {
    /// A proxy for `segments` sharing what `sharing` says.
    pub fn new(sharing: Sharing, segments: Vec<SegmentInfo>) -> SsdpProxy {
        SsdpProxy {
            sharing,
            segments,
            entries: BTreeMap::new(),
            last_search: Throttle::new(SEARCH_EVERY_SECS),
            asked: PerAddressRate::new(SEARCHES_PER_SECOND),
            last_browse: None,
            counters: SsdpCounters::default(),
        }
    }

    /// What it saw so far.
    pub fn counters(&self) -> SsdpCounters {
        SsdpCounters {
            entries: self.entries.len() as u64,
            ..self.counters
        }
    }

    /// The pinholes it holds into `address` (to open again after another
    /// part of the proxy closed every pinhole into it).
    pub fn reopen(&self, address: IpAddr) -> Vec<Action> {
        self.entries
            .values()
            .filter(|e| e.sender == address)
            .flat_map(|e| self.open(e))
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
        let Some(message) = parse(packet) else {
            self.counters.malformed += 1;
            return Vec::new();
        };
        match message {
            Message::Search { target } => self.on_search(segment, src, &target, inventory, now),
            Message::Notify {
                alive: false,
                announcement,
            } => self.on_byebye(segment, src, &announcement),
            Message::Notify {
                alive: true,
                announcement,
            }
            | Message::Response(announcement) => self.on_alive(segment, src, announcement, inventory, now),
        }
    }

    fn on_alive(
        &mut self,
        segment: usize,
        src: SocketAddr,
        announcement: Announcement,
        inventory: &InventorySnapshot,
        now: UnixTime,
    ) -> Vec<Action> {
        let Some(device) = inventory.device_at(src.ip()).filter(|d| !d.blocked) else {
            self.counters.unknown_sender += 1;
            return Vec::new();
        };
        if self
            .sharing
            .ssdp_consumers(&announcement.target.to_ascii_lowercase(), &device.zone)
            .is_empty()
        {
            return Vec::new();
        }
        let endpoint = announcement.location.as_deref().and_then(location_endpoint);
        let Some(endpoint) = endpoint.filter(|(ip, _)| *ip == src.ip() || device.addresses.contains(ip)) else {
            self.counters.foreign_locations += 1;
            return Vec::new();
        };
        let key = (segment, announcement.usn.to_ascii_lowercase());
        let previous = self.entries.get(&key).cloned();
        if previous.is_none() {
            let from_sender = self.entries.values().filter(|e| e.sender == src.ip()).count();
            if self.entries.len() >= MAX_ENTRIES || from_sender >= MAX_PER_ADDRESS {
                self.counters.cache_full += 1;
                return Vec::new();
            }
        }
        let entry = Entry {
            segment,
            provider: device.mac,
            provider_zone: device.zone.clone(),
            sender: src.ip(),
            announcement,
            endpoint,
            seen: now,
        };
        let mut actions = Vec::new();
        if let Some(p) = previous.filter(|p| p.endpoint != entry.endpoint || p.provider_zone != entry.provider_zone) {
            actions.push(Action::Close { address: p.sender });
        }
        actions.extend(self.open(&entry));
        self.entries.insert(key, entry);
        actions
    }

    fn on_byebye(&mut self, segment: usize, src: SocketAddr, announcement: &Announcement) -> Vec<Action> {
        let key = (segment, announcement.usn.to_ascii_lowercase());
        // Only from the device that announced it.
        if self.entries.get(&key).is_none_or(|e| e.sender != src.ip()) {
            return Vec::new();
        }
        self.entries.remove(&key);
        self.retire(src.ip())
    }

    /// Pinholes for every zone the entry is shared to (its LOCATION's port).
    fn open(&self, e: &Entry) -> Vec<Action> {
        self.sharing
            .ssdp_consumers(&e.announcement.target.to_ascii_lowercase(), &e.provider_zone)
            .into_iter()
            .map(|zone| Action::Open {
                zone: zone.clone(),
                pinholes: vec![e.pinhole()],
                ttl_secs: e.announcement.max_age,
            })
            .collect()
    }

    /// Close everything into `address`, then open again what its other
    /// entries still hold.
    fn retire(&self, address: IpAddr) -> Vec<Action> {
        let mut actions = vec![Action::Close { address }];
        actions.extend(self.reopen(address));
        actions
    }

    fn on_search(
        &mut self,
        segment: usize,
        src: SocketAddr,
        target: &str,
        inventory: &InventorySnapshot,
        now: UnixTime,
    ) -> Vec<Action> {
        let Some(zone) = asker_zone(inventory, src.ip()) else {
            return Vec::new();
        };
        if !self.sharing.shares_to(&zone) {
            return Vec::new();
        }
        if self.asked.over(src.ip(), now) {
            self.counters.rate_limited += 1;
            return Vec::new();
        }
        let all = target == "ssdp:all";
        let mut actions = Vec::new();
        let mut answered_any = false;
        let answers: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.segment != segment && (all || e.announcement.target.eq_ignore_ascii_case(target)))
            .filter(|e| {
                self.sharing
                    .ssdp_consumers(&e.announcement.target.to_ascii_lowercase(), &e.provider_zone)
                    .contains(&zone)
            })
            .map(|e| {
                let a = &e.announcement;
                let left = u32::try_from(e.expires().saturating_sub(now)).unwrap_or(0).max(1);
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age={left}\r\nEXT:\r\nLOCATION: {}\r\n",
                    a.location.as_deref().unwrap_or_default()
                );
                if let Some(s) = &a.server {
                    r.push_str(&format!("SERVER: {s}\r\n"));
                }
                r.push_str(&format!("ST: {}\r\nUSN: {}\r\n\r\n", a.target, a.usn));
                r
            })
            .collect();
        for r in answers {
            answered_any = true;
            self.counters.answers += 1;
            actions.push(Action::Send {
                segment,
                to: src,
                packet: r.into_bytes(),
            });
        }
        // Nothing cached for a shared target: search the other segments.
        if !answered_any {
            let targets: Vec<String> = self
                .sharing
                .ssdp_targets()
                .into_iter()
                .filter(|t| all || t.as_str() == target)
                .cloned()
                .collect();
            for t in targets {
                actions.extend(self.search(&t, Some(segment), now));
            }
        }
        actions
    }

    /// Our own M-SEARCH for `target` on every segment but `except`.
    fn search(&mut self, target: &str, except: Option<usize>, now: UnixTime) -> Vec<Action> {
        let packet = format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {target}\r\n\r\n"
        )
        .into_bytes();
        let mut out = Vec::new();
        for segment in (0..self.segments.len()).filter(|s| Some(*s) != except) {
            if !self.last_search.due((segment, target.to_string()), now) {
                continue;
            }
            out.push(Action::Send {
                segment,
                to: SocketAddr::from((SSDP_V4, SSDP_PORT)),
                packet: packet.clone(),
            });
        }
        out
    }

    /// Time passes: entries past their max-age, or whose device left its
    /// zone or address or was blocked, are retired; shared targets are
    /// searched for now and then.
    pub fn tick(&mut self, inventory: &InventorySnapshot, now: UnixTime) -> Vec<Action> {
        let mut actions = Vec::new();
        let stale: Vec<(usize, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.expires() <= now || super::limits::provider_gone(inventory, &e.provider, &e.provider_zone, &e.sender)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(gone) = self.entries.remove(&k) {
                actions.extend(self.retire(gone.sender));
            }
        }
        if self
            .last_browse
            .is_none_or(|at| now.saturating_sub(at) >= BROWSE_EVERY_SECS)
        {
            self.last_browse = Some(now);
            let targets: Vec<String> = self.sharing.ssdp_targets().into_iter().cloned().collect();
            for t in targets {
                actions.extend(self.search(&t, None, now));
            }
        }
        actions
    }
}
