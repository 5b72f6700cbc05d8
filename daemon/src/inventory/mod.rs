//! The device registry: the one place device facts live.
//!
//! Sources (the CLI now, DHCP/mDNS/neighbours later) change it only through
//! [`Inventory::apply`], which returns what changed so the caller can persist and
//! reconcile exactly that.

pub mod identity;
pub mod naming;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::classify::Evidence;
use crate::config::{MacAddr, ZoneId};

/// Seconds since the Unix epoch. Passed in, never read from a clock here.
pub type UnixTime = i64;

/// Seconds since the epoch, from the system clock (the one place we read it).
pub fn unix_now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One piece of equipment, keyed by MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Its MAC.
    pub mac: MacAddr,
    /// The homeowner's name for it, if any.
    pub name: Option<String>,
    /// The zone the homeowner chose, if any; it always wins.
    pub user_zone: Option<ZoneId>,
    /// Its current IP addresses.
    pub addresses: BTreeSet<IpAddr>,
    /// First time seen.
    pub first_seen: UnixTime,
    /// Last time seen.
    pub last_seen: UnixTime,
    /// What it told us about itself (DHCP, mDNS), kept for classification and
    /// shown to the homeowner.
    pub evidence: Evidence,
    /// Blocked by the homeowner: the router forwards nothing from or to it.
    pub blocked: bool,
    /// The homeowner's tunnel choice: through (`Some(true)`), never
    /// (`Some(false)`), or as the policy says (`None`).
    pub tunnel_choice: Option<bool>,
    /// The homeowner watches it: told when it goes offline and comes back.
    pub watched: bool,
    /// The zone a classification rule last placed it in. A device keeps it
    /// when its evidence later places it nowhere: a packet can add evidence,
    /// never send a placed device back to quarantine (or its segment's
    /// default). A rule placing it elsewhere, or the homeowner, still moves it.
    pub placed_zone: Option<ZoneId>,
    /// The bridge ports its MAC may come from, while it is on one: the port
    /// the kernel learned it on (the bridge's forwarding table) and, for a
    /// Wi-Fi port, the other radios of that bridge (a phone moves between
    /// bands). Never stored. Frames with its MAC from any other port are
    /// dropped (`policy::Membership::port_bindings`); empty: not bound.
    pub ports: Vec<crate::config::PortName>,
}

impl Device {
    /// A device seen for the first time at `now`.
    pub fn new(mac: MacAddr, now: UnixTime) -> Self {
        Device {
            mac,
            name: None,
            user_zone: None,
            addresses: BTreeSet::new(),
            first_seen: now,
            last_seen: now,
            evidence: Evidence::default(),
            blocked: false,
            tunnel_choice: None,
            watched: false,
            placed_zone: None,
            ports: Vec::new(),
        }
    }
}

/// Something that happened to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Added by hand (`bulkhead device add`), optionally with an address.
    ManualAdd {
        /// The device.
        mac: MacAddr,
        /// An address it uses.
        ip: Option<IpAddr>,
    },
    /// The homeowner put it in a zone.
    SetZone {
        /// The device.
        mac: MacAddr,
        /// The zone.
        zone: ZoneId,
    },
    /// The homeowner named it (`None` forgets the name).
    Rename {
        /// The device.
        mac: MacAddr,
        /// The name (already checked: see `control::MAX_DEVICE_NAME`).
        name: Option<String>,
    },
    /// The homeowner blocked or unblocked it.
    Block {
        /// The device.
        mac: MacAddr,
        /// Blocked?
        blocked: bool,
    },
    /// The homeowner watches it (or stops): told when it goes offline and
    /// comes back.
    Watch {
        /// The device.
        mac: MacAddr,
        /// Watched?
        watched: bool,
    },
    /// The homeowner's tunnel choice for it.
    TunnelChoice {
        /// The device.
        mac: MacAddr,
        /// Through, never, or as the policy says (`None`).
        route: Option<bool>,
    },
    /// Traffic or a lease showed the device is present.
    Seen {
        /// The device.
        mac: MacAddr,
    },
    /// A source saw the device use an address (DHCP lease, neighbour table,
    /// another server's lease file). Creates the device if new.
    Address {
        /// The device.
        mac: MacAddr,
        /// The address.
        ip: IpAddr,
    },
    /// The device no longer holds an address (lease released or expired,
    /// neighbour entry gone).
    AddressGone {
        /// The device.
        mac: MacAddr,
        /// The address.
        ip: IpAddr,
    },
    /// Something the device told us about itself. Creates the device if new.
    Evidence {
        /// The device.
        mac: MacAddr,
        /// The evidence (merged into what is known).
        evidence: Box<Evidence>,
    },
    /// The homeowner forgets it: everything known and decided about it goes;
    /// if it shows up again it is a new device.
    Forget {
        /// The device.
        mac: MacAddr,
    },
    /// The homeowner says `into` (a new private MAC) is the device known as
    /// `from`: `into` takes over its decisions (name, zone, block, watch,
    /// tunnel choice) and its history (first seen), and `from` is retired.
    Merge {
        /// The known device's old MAC (retired).
        from: MacAddr,
        /// Its new MAC (the device from now on).
        into: MacAddr,
    },
}

impl Event {
    /// The device the event is about.
    pub fn mac(&self) -> MacAddr {
        match self {
            Event::ManualAdd { mac, .. }
            | Event::SetZone { mac, .. }
            | Event::Rename { mac, .. }
            | Event::Block { mac, .. }
            | Event::Watch { mac, .. }
            | Event::TunnelChoice { mac, .. }
            | Event::Seen { mac }
            | Event::Address { mac, .. }
            | Event::AddressGone { mac, .. }
            | Event::Evidence { mac, .. }
            | Event::Forget { mac } => *mac,
            Event::Merge { into, .. } => *into,
        }
    }

    /// The address the event gives to its device, if any (whoever held it loses it).
    pub fn claimed_address(&self) -> Option<IpAddr> {
        match self {
            Event::ManualAdd { ip, .. } => *ip,
            Event::Address { ip, .. } => Some(*ip),
            _ => None,
        }
    }
}

/// What an event changed.
/// Ordered: a larger change includes the smaller ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Nothing.
    None,
    /// Only the last-seen time (cheap; persisted lazily).
    SeenOnly,
    /// Facts the firewall or the homeowner care about (persist now, reconcile).
    Facts,
}

/// All known devices, with two indexes so that no packet costs a pass over
/// them: which device holds each address, and which devices gave each DHCP
/// host name (the identity check compares only devices of one name).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    devices: BTreeMap<MacAddr, Device>,
    /// The one device holding each address.
    owners: HashMap<IpAddr, MacAddr>,
    /// Devices by their DHCP host name (non-empty names only).
    by_hostname: HashMap<String, BTreeSet<MacAddr>>,
    /// Devices whose facts changed since [`Inventory::take_touched`] was last
    /// called (what services must look at again).
    touched: Touched,
}

/// Which devices changed since the last look.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Touched {
    /// Everything may have (a new inventory, a new config).
    #[default]
    All,
    /// These.
    Some(BTreeSet<MacAddr>),
}

impl Touched {
    fn add(&mut self, mac: MacAddr) {
        if let Touched::Some(set) = self {
            set.insert(mac);
        }
    }
}

impl Inventory {
    /// An inventory holding these devices (as loaded from the store). An
    /// address two stored devices hold (a store written before the owner's
    /// loss was saved) stays with the one seen last.
    pub fn from_devices(devices: impl IntoIterator<Item = Device>) -> Self {
        let mut inv = Inventory::default();
        let mut devices: Vec<Device> = devices.into_iter().collect();
        devices.sort_by_key(|d| d.last_seen);
        for d in devices {
            for ip in &d.addresses {
                if let Some(previous) = inv.owners.insert(*ip, d.mac) {
                    if let Some(p) = inv.devices.get_mut(&previous) {
                        p.addresses.remove(ip);
                    }
                }
            }
            inv.index_hostname(d.mac, d.evidence.hostname.as_ref());
            inv.devices.insert(d.mac, d);
        }
        inv
    }

    /// The devices whose facts changed since the last call (and forgets them).
    pub fn take_touched(&mut self) -> Touched {
        std::mem::replace(&mut self.touched, Touched::Some(BTreeSet::new()))
    }

    /// The wall clock jumped by `delta` seconds: first- and last-seen times
    /// taken on the old clock during this run (`since` to `until`) move with
    /// it, so nobody looks offline or new because of the jump. Times outside,
    /// from a previous run's clock, stay.
    pub fn shift_times(&mut self, since: UnixTime, until: UnixTime, delta: i64) {
        let moves = |t: UnixTime| (since..=until).contains(&t);
        for d in self.devices.values_mut() {
            if moves(d.first_seen) {
                d.first_seen = d.first_seen.saturating_add(delta);
            }
            if moves(d.last_seen) {
                d.last_seen = d.last_seen.saturating_add(delta);
            }
        }
    }

    /// This device must be looked at again though its facts did not change
    /// (it went offline or came back).
    pub fn touch(&mut self, mac: MacAddr) {
        self.touched.add(mac);
    }

    /// Everything must be looked at again (the config changed).
    pub fn touch_all(&mut self) {
        self.touched = Touched::All;
    }

    /// Remembers the zone a rule placed `mac` in (see
    /// [`Device::placed_zone`]); true if that changed it.
    pub fn set_placed_zone(&mut self, mac: &MacAddr, zone: &ZoneId) -> bool {
        match self.devices.get_mut(mac) {
            Some(d) if d.placed_zone.as_ref() != Some(zone) => {
                d.placed_zone = Some(zone.clone());
                self.touched.add(*mac);
                true
            }
            _ => false,
        }
    }

    /// Records the bridge ports `mac` may come from (empty: it left its
    /// port); true if that changed them. Not a fact to store: the forwarding
    /// table says it again after a restart.
    pub fn set_ports(&mut self, mac: &MacAddr, ports: Vec<crate::config::PortName>) -> bool {
        match self.devices.get_mut(mac) {
            Some(d) if d.ports != ports => {
                d.ports = ports;
                self.touched.add(*mac);
                true
            }
            _ => false,
        }
    }

    /// The device holding `ip`.
    pub fn owner_of(&self, ip: &IpAddr) -> Option<MacAddr> {
        self.owners.get(ip).copied()
    }

    /// The devices that gave `hostname` in DHCP.
    pub fn with_hostname<'a>(&'a self, hostname: &str) -> impl Iterator<Item = &'a Device> + 'a {
        self.by_hostname
            .get(hostname)
            .into_iter()
            .flatten()
            .filter_map(|mac| self.devices.get(mac))
    }

    fn index_hostname(&mut self, mac: MacAddr, hostname: Option<&String>) {
        if let Some(h) = hostname.filter(|h| !h.is_empty()) {
            self.by_hostname.entry(h.clone()).or_default().insert(mac);
        }
    }

    fn unindex_hostname(&mut self, mac: MacAddr, hostname: Option<&String>) {
        if let Some(h) = hostname {
            if let Some(macs) = self.by_hostname.get_mut(h) {
                macs.remove(&mac);
                if macs.is_empty() {
                    self.by_hostname.remove(h);
                }
            }
        }
    }

    /// All devices in MAC order.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// One device.
    pub fn get(&self, mac: &MacAddr) -> Option<&Device> {
        self.devices.get(mac)
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Applies an event at time `now`.
    pub fn apply(&mut self, event: &Event, now: UnixTime) -> Change {
        let change = self.apply_inner(event, now);
        if change == Change::Facts {
            self.touched.add(event.mac());
        }
        change
    }

    fn apply_inner(&mut self, event: &Event, now: UnixTime) -> Change {
        match event {
            Event::ManualAdd { mac, ip } => {
                let mut change = self.ensure(*mac, now);
                match ip {
                    Some(ip) => change = change.max(self.claim(*mac, *ip, now)),
                    None => {
                        if let Some(d) = self.devices.get_mut(mac) {
                            d.last_seen = d.last_seen.max(now);
                        }
                    }
                }
                change
            }
            Event::Address { mac, ip } => {
                let change = self.ensure(*mac, now);
                change.max(self.claim(*mac, *ip, now))
            }
            Event::AddressGone { mac, ip } => match self.devices.get_mut(mac) {
                Some(d) => {
                    if d.addresses.remove(ip) {
                        self.owners.remove(ip);
                        Change::Facts
                    } else {
                        Change::None
                    }
                }
                None => Change::None,
            },
            Event::Evidence { mac, evidence } => {
                let change = self.ensure(*mac, now);
                let Some(d) = self.devices.get_mut(mac) else {
                    return change;
                };
                let seen = if d.last_seen < now {
                    d.last_seen = now;
                    Change::SeenOnly
                } else {
                    Change::None
                };
                let hostname_before = d.evidence.hostname.clone();
                if !d.evidence.merge(evidence) {
                    return change.max(seen);
                }
                if d.evidence.hostname != hostname_before {
                    let hostname = d.evidence.hostname.clone();
                    self.unindex_hostname(*mac, hostname_before.as_ref());
                    self.index_hostname(*mac, hostname.as_ref());
                }
                Change::Facts
            }
            Event::SetZone { mac, zone } => {
                let d = self.devices.entry(*mac).or_insert_with(|| Device::new(*mac, now));
                if d.user_zone.as_ref() == Some(zone) {
                    return Change::None;
                }
                d.user_zone = Some(zone.clone());
                Change::Facts
            }
            Event::Rename { mac, name } => match self.devices.get_mut(mac) {
                Some(d) if d.name != *name => {
                    d.name.clone_from(name);
                    Change::Facts
                }
                _ => Change::None,
            },
            // Like a chosen zone, a decision about a MAC not seen yet is kept
            // for when it shows up.
            Event::Block { mac, blocked } => {
                if !*blocked && !self.devices.contains_key(mac) {
                    return Change::None;
                }
                let d = self.devices.entry(*mac).or_insert_with(|| Device::new(*mac, now));
                if d.blocked == *blocked {
                    return Change::None;
                }
                d.blocked = *blocked;
                Change::Facts
            }
            Event::Watch { mac, watched } => match self.devices.get_mut(mac) {
                Some(d) if d.watched != *watched => {
                    d.watched = *watched;
                    Change::Facts
                }
                _ => Change::None,
            },
            Event::TunnelChoice { mac, route } => {
                if route.is_none() && !self.devices.contains_key(mac) {
                    return Change::None;
                }
                let d = self.devices.entry(*mac).or_insert_with(|| Device::new(*mac, now));
                if d.tunnel_choice == *route {
                    return Change::None;
                }
                d.tunnel_choice = *route;
                Change::Facts
            }
            Event::Seen { mac } => match self.devices.get_mut(mac) {
                Some(d) if d.last_seen < now => {
                    d.last_seen = now;
                    Change::SeenOnly
                }
                _ => Change::None,
            },
            Event::Merge { from, into } => {
                if from == into || !self.devices.contains_key(into) {
                    return Change::None;
                }
                let Some(old) = self.remove(from) else {
                    return Change::None;
                };
                let Some(d) = self.devices.get_mut(into) else {
                    return Change::None;
                };
                // The homeowner's decisions win over what the new MAC has.
                d.name = old.name.or(d.name.take());
                d.user_zone = old.user_zone.or(d.user_zone.take());
                d.blocked |= old.blocked;
                d.watched |= old.watched;
                d.tunnel_choice = old.tunnel_choice.or(d.tunnel_choice);
                d.first_seen = d.first_seen.min(old.first_seen);
                Change::Facts
            }
            Event::Forget { mac } => match self.remove(mac) {
                Some(_) => Change::Facts,
                None => Change::None,
            },
        }
    }

    /// Takes a device out, with its addresses and host name from the indexes.
    fn remove(&mut self, mac: &MacAddr) -> Option<Device> {
        let d = self.devices.remove(mac)?;
        for ip in &d.addresses {
            if self.owners.get(ip) == Some(mac) {
                self.owners.remove(ip);
            }
        }
        self.unindex_hostname(*mac, d.evidence.hostname.as_ref());
        Some(d)
    }

    /// Creates the device if it is new.
    fn ensure(&mut self, mac: MacAddr, now: UnixTime) -> Change {
        if self.devices.contains_key(&mac) {
            return Change::None;
        }
        self.devices.insert(mac, Device::new(mac, now));
        Change::Facts
    }

    /// Gives `ip` to `mac` (an address belongs to one device: whoever had it
    /// before loses it) and marks the device seen.
    fn claim(&mut self, mac: MacAddr, ip: IpAddr, now: UnixTime) -> Change {
        let mut change = Change::None;
        if let Some(other) = self.owners.get(&ip).copied().filter(|o| *o != mac) {
            if self.devices.get_mut(&other).is_some_and(|o| o.addresses.remove(&ip)) {
                change = Change::Facts;
                self.touched.add(other);
            }
        }
        if let Some(d) = self.devices.get_mut(&mac) {
            self.owners.insert(ip, mac);
            if d.addresses.insert(ip) {
                change = Change::Facts;
            } else if d.last_seen < now {
                change = change.max(Change::SeenOnly);
            }
            d.last_seen = d.last_seen.max(now);
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn an_address_moves_between_devices() {
        let mut inv = Inventory::default();
        let ip: IpAddr = "10.0.1.5".parse().expect("ip");
        assert_eq!(
            inv.apply(
                &Event::ManualAdd {
                    mac: mac(1),
                    ip: Some(ip)
                },
                10
            ),
            Change::Facts
        );
        assert_eq!(
            inv.apply(
                &Event::ManualAdd {
                    mac: mac(1),
                    ip: Some(ip)
                },
                11
            ),
            Change::SeenOnly
        );
        assert_eq!(
            inv.apply(
                &Event::ManualAdd {
                    mac: mac(2),
                    ip: Some(ip)
                },
                12
            ),
            Change::Facts
        );
        assert!(inv.get(&mac(1)).expect("dev").addresses.is_empty());
        assert!(inv.get(&mac(2)).expect("dev").addresses.contains(&ip));
    }

    /// The indexes agree with a pass over every device after any sequence of
    /// events (what they replace).
    fn assert_indexes_agree(inv: &Inventory) {
        for d in inv.devices() {
            for ip in &d.addresses {
                assert_eq!(inv.owner_of(ip), Some(d.mac), "{ip}");
            }
            if let Some(h) = d.evidence.hostname.as_deref().filter(|h| !h.is_empty()) {
                assert!(inv.with_hostname(h).any(|o| o.mac == d.mac), "{h}");
            }
        }
        let held: usize = inv.devices().map(|d| d.addresses.len()).sum();
        assert_eq!(inv.owners.len(), held, "no stale owner");
        for (h, macs) in &inv.by_hostname {
            for m in macs {
                let d = inv.get(m).expect("indexed device exists");
                assert_eq!(d.evidence.hostname.as_deref(), Some(h.as_str()), "stale name");
            }
        }
    }

    #[test]
    fn addresses_and_host_names_are_indexed() {
        let mut inv = Inventory::default();
        let ip: IpAddr = "10.0.1.7".parse().expect("ip");
        let named = |mac, name: &str| Event::Evidence {
            mac,
            evidence: Box::new(Evidence {
                hostname: Some(name.into()),
                ..Default::default()
            }),
        };
        inv.apply(&Event::Address { mac: mac(1), ip }, 1);
        assert_eq!(inv.owner_of(&ip), Some(mac(1)));
        inv.apply(&Event::Address { mac: mac(2), ip }, 2);
        assert_eq!(inv.owner_of(&ip), Some(mac(2)), "the claim moves the owner");
        inv.apply(&Event::AddressGone { mac: mac(1), ip }, 3);
        assert_eq!(
            inv.owner_of(&ip),
            Some(mac(2)),
            "a former holder's gone changes nothing"
        );
        inv.apply(&named(mac(1), "phone"), 4);
        inv.apply(&named(mac(2), "phone"), 4);
        assert_eq!(inv.with_hostname("phone").count(), 2);
        inv.apply(&named(mac(2), "tablet"), 5);
        let phones: Vec<MacAddr> = inv.with_hostname("phone").map(|d| d.mac).collect();
        assert_eq!(phones, [mac(1)], "a renamed device leaves its old name");
        assert_indexes_agree(&inv);
        inv.apply(&Event::AddressGone { mac: mac(2), ip }, 6);
        assert_eq!(inv.owner_of(&ip), None);
        assert_indexes_agree(&inv);
    }

    #[test]
    fn a_stored_address_two_devices_hold_stays_with_the_one_seen_last() {
        let ip: IpAddr = "10.0.1.9".parse().expect("ip");
        let mut old = Device::new(mac(1), 1);
        old.addresses.insert(ip);
        let mut recent = Device::new(mac(2), 1);
        recent.last_seen = 50;
        recent.addresses.insert(ip);
        for order in [vec![old.clone(), recent.clone()], vec![recent, old]] {
            let inv = Inventory::from_devices(order);
            assert_eq!(inv.owner_of(&ip), Some(mac(2)));
            assert!(inv.get(&mac(1)).expect("dev").addresses.is_empty());
            assert_indexes_agree(&inv);
        }
    }

    #[test]
    fn sources_create_devices_and_evidence_accumulates() {
        let mut inv = Inventory::default();
        let ip: IpAddr = "fd00:1::5".parse().expect("ip");
        assert_eq!(inv.apply(&Event::Address { mac: mac(3), ip }, 5), Change::Facts);
        assert_eq!(inv.apply(&Event::Address { mac: mac(3), ip }, 6), Change::SeenOnly);
        let ev = Evidence {
            hostname: Some("plug".into()),
            ..Default::default()
        };
        let e = Event::Evidence {
            mac: mac(3),
            evidence: Box::new(ev.clone()),
        };
        assert_eq!(inv.apply(&e, 7), Change::Facts);
        assert_eq!(
            inv.apply(&e, 8),
            Change::SeenOnly,
            "same evidence again is only a sighting"
        );
        assert_eq!(inv.get(&mac(3)).expect("dev").evidence, ev);
        assert_eq!(inv.apply(&Event::AddressGone { mac: mac(3), ip }, 9), Change::Facts);
        assert_eq!(inv.apply(&Event::AddressGone { mac: mac(3), ip }, 9), Change::None);
        assert!(inv.get(&mac(3)).expect("dev").addresses.is_empty());
    }

    #[test]
    fn set_zone_is_idempotent_and_seen_is_cheap() {
        let mut inv = Inventory::default();
        let z = ZoneId::new("iot").expect("id");
        assert_eq!(
            inv.apply(
                &Event::SetZone {
                    mac: mac(1),
                    zone: z.clone()
                },
                1
            ),
            Change::Facts
        );
        assert_eq!(inv.apply(&Event::SetZone { mac: mac(1), zone: z }, 2), Change::None);
        assert_eq!(inv.apply(&Event::Seen { mac: mac(1) }, 3), Change::SeenOnly);
        assert_eq!(inv.apply(&Event::Seen { mac: mac(9) }, 3), Change::None);
    }
}
