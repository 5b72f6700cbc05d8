//! PURE: from (policy, inventory) to desired state. No I/O here.
//!
//! `zone_for` decides one device's zone (with the reason, so the UI can say why);
//! `desired_membership` turns the whole inventory into set contents;
//! `desired_ruleset` turns the config into the structural part of the firewall.

mod dhcp;
mod net;

pub use dhcp::{dhcp_segments, observing_interfaces};
pub use net::{desired_net, existing_bridge_ports, link_facts};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::classify::{classify, placement, ClassMatch, ClassRule};
use crate::config::{Config, DomainSetId, MacAddr, PortName, RouterService, SegmentKind, ZoneId};
use crate::discovery::oui;
use crate::inventory::{Device, Inventory};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a device is in its zone, most authoritative first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZoneReason {
    /// The homeowner chose it (CLI or UI). Always wins.
    UserChoice,
    /// Pinned in a policy file's `[[devices]]`.
    PolicyOverride,
    /// A classification rule placed it, from its evidence.
    Classified,
    /// The device's segment sends new devices to this zone.
    SegmentDefault,
    /// Nobody knows it: the policy's `unknown_zone`.
    Unknown,
}

impl ZoneReason {
    /// The reason as serialised (kebab case), without going through serde.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserChoice => "user-choice",
            Self::PolicyOverride => "policy-override",
            Self::Classified => "classified",
            Self::SegmentDefault => "segment-default",
            Self::Unknown => "unknown",
        }
    }
}

/// A device's zone and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneDecision {
    /// The zone.
    pub zone: ZoneId,
    /// Why.
    pub reason: ZoneReason,
}

/// What the device is, from its evidence and MAC (whether or not it placed it).
pub fn classification(config: &Config, device: &Device) -> Option<ClassMatch> {
    classify(
        &config.policy.classify,
        &device.evidence,
        oui::lookup(&device.mac),
        oui::is_randomized(&device.mac),
    )
}

/// Decides a device's zone, most authoritative first: the homeowner's choice, a
/// policy pin, a classification (low confidence only towards a zone at least as
/// restricted as the fallback), the segment's default, the unknown zone. A
/// choice of a zone that no longer exists falls through to the next rule rather
/// than leaving the device zoneless.
pub fn zone_for(config: &Config, device: &Device) -> ZoneDecision {
    match unclassified_zone(config, device) {
        Unclassified::Final(decision) => decision,
        Unclassified::Fallback(fallback) => classified_zone(
            config,
            fallback,
            classification(config, device).as_ref(),
            device.placed_zone.as_ref(),
        ),
    }
}

/// [`zone_for`] and [`classification`] for many devices (the devices list):
/// each device is classified once, and one that has told nothing and whose MAC
/// names no vendor only against the rules that can hold for it.
pub struct Assessor<'c> {
    config: &'c Config,
    /// The rules that ask nothing but `randomized_mac`, in order: every other
    /// condition needs evidence or a vendor, so only these can hold for a device
    /// with neither (none of the shipped rules is one). A subset in the same order
    /// picks the same best rule, as the others cannot match.
    mac_only: Vec<&'c ClassRule>,
}

impl<'c> Assessor<'c> {
    /// Finds the MAC-only rules once.
    pub fn new(config: &'c Config) -> Assessor<'c> {
        let mac_only = config
            .policy
            .classify
            .iter()
            .filter(|r| r.conditions.asks_only_about_the_mac())
            .collect();
        Assessor { config, mac_only }
    }

    /// Exactly `(zone_for(config, device), classification(config, device))`.
    pub fn assess(&self, device: &Device) -> (ZoneDecision, Option<ClassMatch>) {
        let vendor = oui::lookup(&device.mac);
        let randomized = oui::is_randomized(&device.mac);
        let class = if device.evidence.is_empty() && vendor.is_none() {
            classify(self.mac_only.iter().copied(), &device.evidence, vendor, randomized)
        } else {
            classify(&self.config.policy.classify, &device.evidence, vendor, randomized)
        };
        let decision = match unclassified_zone(self.config, device) {
            Unclassified::Final(decision) => decision,
            Unclassified::Fallback(fallback) => {
                classified_zone(self.config, fallback, class.as_ref(), device.placed_zone.as_ref())
            }
        };
        (decision, class)
    }
}

/// A device's zone before its classification is looked at.
enum Unclassified {
    /// The zone, whatever the device's classification: the homeowner's choice,
    /// a policy pin, or no evidence and no vendor to classify by.
    Final(ZoneDecision),
    /// The zone unless a classification places the device elsewhere.
    Fallback(ZoneDecision),
}

fn unclassified_zone(config: &Config, device: &Device) -> Unclassified {
    let p = &config.policy;
    let known = |z: &ZoneId| p.zones.contains_key(z);
    if let Some(z) = device.user_zone.as_ref().filter(|z| known(z)) {
        return Unclassified::Final(ZoneDecision {
            zone: z.clone(),
            reason: ZoneReason::UserChoice,
        });
    }
    if let Some(z) = p
        .devices
        .get(&device.mac)
        .and_then(|o| o.zone.as_ref())
        .filter(|z| known(z))
    {
        return Unclassified::Final(ZoneDecision {
            zone: z.clone(),
            reason: ZoneReason::PolicyOverride,
        });
    }
    let segment = device
        .addresses
        .iter()
        .find_map(|a| config.segment_for_ip(*a))
        .map(|s| &s.id);
    let fallback = match segment.and_then(|s| p.segment_zones.get(s)) {
        Some(z) => ZoneDecision {
            zone: z.clone(),
            reason: ZoneReason::SegmentDefault,
        },
        None => ZoneDecision {
            zone: p.unknown_zone.clone(),
            reason: ZoneReason::Unknown,
        },
    };
    // Evidence-free devices (most of a large inventory) skip the rules.
    if device.evidence.is_empty() && oui::lookup(&device.mac).is_none() && device.placed_zone.is_none() {
        return Unclassified::Final(fallback);
    }
    Unclassified::Fallback(fallback)
}

/// The zone the classification places the device in; else the zone a rule
/// placed it in before (`placed`: evidence that no longer places it does
/// not send it back to the fallback — a packet can add evidence, never
/// demote a device); else the fallback.
fn classified_zone(
    config: &Config,
    fallback: ZoneDecision,
    class: Option<&ClassMatch>,
    placed: Option<&ZoneId>,
) -> ZoneDecision {
    match class.and_then(|m| placement(&config.policy, m, &fallback.zone)) {
        Some(zone) if zone != fallback.zone => ZoneDecision {
            zone,
            reason: ZoneReason::Classified,
        },
        Some(_) => fallback,
        None => match placed.filter(|z| **z != fallback.zone && config.policy.zones.contains_key(*z)) {
            Some(zone) => ZoneDecision {
                zone: zone.clone(),
                reason: ZoneReason::Classified,
            },
            None => fallback,
        },
    }
}

/// What one group of MAC + address sets holds (a zone's, or the blocked
/// devices').
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZoneMembers {
    /// Member MACs: the source-zone match (who is sending).
    pub macs: BTreeSet<MacAddr>,
    /// Member IPv4 addresses: the destination-zone match (who is reached).
    pub v4: BTreeSet<Ipv4Addr>,
    /// Member IPv6 addresses, enforced exactly like IPv4.
    pub v6: BTreeSet<Ipv6Addr>,
}

/// Every member set's contents. Every zone of the policy has an entry, empty or
/// not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// By zone.
    pub zones: BTreeMap<ZoneId, ZoneMembers>,
    /// Devices the homeowner blocked (they stay in their zone's sets too, so
    /// unblocking only deletes them from these).
    pub blocked: ZoneMembers,
    /// MACs whose traffic the tunnel takes: the policy's `tunnel.devices` and
    /// the homeowner's "through" choices, minus "never" choices. Empty without a
    /// tunnel.
    pub tunnel_devices: BTreeSet<MacAddr>,
    /// MACs that never go through the tunnel: the policy's
    /// `tunnel.exclude.devices` and "never" choices, minus "through" choices (the
    /// homeowner's choice wins over the policy, as a chosen zone does). Empty
    /// without a tunnel.
    pub tunnel_exclude: BTreeSet<MacAddr>,
    /// Which device holds each known IPv4 address: (address, its MAC). The
    /// bridge table drops ARP that claims one of these addresses from
    /// another MAC (`owner-of-v4`, with the addresses alone in `owned-v4`).
    pub v4_owners: BTreeSet<(Ipv4Addr, MacAddr)>,
    /// The same for IPv6 (`owned-v6`, `owner-of-v6`): IPv6 to the router
    /// from an address another device holds is dropped.
    pub v6_owners: BTreeSet<(Ipv6Addr, MacAddr)>,
    /// The bridge port each known device is on: (its MAC, the port). The
    /// bridge table drops frames with one of these MACs from any other port
    /// (`port-of`, with the MACs alone in `bound-mac`), before the bridge
    /// learns where the MAC is.
    pub port_bindings: BTreeSet<(MacAddr, PortName)>,
    /// The router's link-local addresses on the segments, as the kernel has
    /// them ([`LinkFacts::router_link_local`]): the address every device's
    /// IPv6 default route points at, which no neighbour advert may claim
    /// (the bridge set `router-v6`, with the configured
    /// [`DesiredRuleset::router_v6`]). Here, not in the ruleset, so the
    /// kernel making one (a moment after a link comes up) is an element
    /// delta, not a replace of the tables (which would empty the sets the
    /// kernel fills itself, the DNS-bypass guard's).
    pub router_link_local: BTreeSet<Ipv6Addr>,
}

impl Membership {
    /// The addresses of [`Membership::v4_owners`].
    pub fn owned_v4(&self) -> BTreeSet<Ipv4Addr> {
        self.v4_owners.iter().map(|(a, _)| *a).collect()
    }

    /// The addresses of [`Membership::v6_owners`].
    pub fn owned_v6(&self) -> BTreeSet<Ipv6Addr> {
        self.v6_owners.iter().map(|(a, _)| *a).collect()
    }

    /// The MACs of [`Membership::port_bindings`].
    pub fn bound_macs(&self) -> BTreeSet<MacAddr> {
        self.port_bindings.iter().map(|(m, _)| *m).collect()
    }

    /// The zone whose sets hold `mac`, if any.
    pub fn zone_of(&self, mac: &MacAddr) -> Option<&ZoneId> {
        self.zones.iter().find(|(_, m)| m.macs.contains(mac)).map(|(z, _)| z)
    }
}

/// What one device puts in the member sets. Entries of different devices never
/// share an element (a MAC is one device; an address belongs to one device), so a
/// change to a few devices is exactly "remove their old entries, insert the new".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Its zone.
    pub zone: ZoneId,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its addresses.
    pub addresses: BTreeSet<IpAddr>,
    /// Blocked by the homeowner: MAC and addresses in the blocked sets too.
    pub blocked: bool,
    /// In `tunnel-devices` (`Some(true)`), `tunnel-exclude-devices`
    /// (`Some(false)`) or neither; always `None` without a tunnel.
    pub tunnel: Option<bool>,
    /// The bridge ports its MAC may come from (empty: not bound).
    pub ports: Vec<PortName>,
}

/// One device's entry.
pub fn device_entry(config: &Config, device: &Device) -> DeviceEntry {
    DeviceEntry {
        zone: zone_for(config, device).zone,
        mac: device.mac,
        addresses: device.addresses.clone(),
        blocked: device.blocked,
        tunnel: tunnel_set_of(config, &device.mac, device.tunnel_choice),
        ports: device.ports.clone(),
    }
}

/// Which tunnel device set a MAC belongs in: the homeowner's choice, else the
/// policy's exclusion, else the policy's selection. None without a tunnel.
fn tunnel_set_of(config: &Config, mac: &MacAddr, choice: Option<bool>) -> Option<bool> {
    config.tunnel.as_ref()?;
    let sel = &config.policy.tunnel;
    choice.or_else(|| {
        if sel.exclude_devices.contains(mac) {
            Some(false)
        } else if sel.devices.contains(mac) {
            Some(true)
        } else {
            None
        }
    })
}

/// Whether a device's internet traffic goes through the tunnel, as the UI says
/// it: its own choice, else the device and zone selectors of the policy.
/// Destinations and domain sets do not make a device "routed" (they route some
/// of everyone's traffic). False without a tunnel.
/// `zone` is the device's zone (`zone_for`), passed in because the caller has it.
pub fn tunnel_routed(config: &Config, device: &Device, zone: &ZoneId) -> bool {
    match tunnel_set_of(config, &device.mac, device.tunnel_choice) {
        Some(through) => through,
        None => config.tunnel.is_some() && config.policy.tunnel.zones.contains(zone),
    }
}

fn insert_members(m: &mut ZoneMembers, e: &DeviceEntry) {
    m.macs.insert(e.mac);
    for a in &e.addresses {
        match a {
            IpAddr::V4(v4) => m.v4.insert(*v4),
            IpAddr::V6(v6) => m.v6.insert(*v6),
        };
    }
}

fn remove_members(m: &mut ZoneMembers, e: &DeviceEntry) {
    m.macs.remove(&e.mac);
    for a in &e.addresses {
        match a {
            IpAddr::V4(v4) => m.v4.remove(v4),
            IpAddr::V6(v6) => m.v6.remove(v6),
        };
    }
}

impl Membership {
    /// Adds a device's elements (zone sets only for a zone the policy has).
    pub fn insert_entry(&mut self, e: &DeviceEntry) {
        if let Some(m) = self.zones.get_mut(&e.zone) {
            insert_members(m, e);
        }
        for a in &e.addresses {
            match a {
                IpAddr::V4(v4) => self.v4_owners.insert((*v4, e.mac)),
                IpAddr::V6(v6) => self.v6_owners.insert((*v6, e.mac)),
            };
        }
        for port in &e.ports {
            self.port_bindings.insert((e.mac, *port));
        }
        if e.blocked {
            insert_members(&mut self.blocked, e);
        }
        match e.tunnel {
            Some(true) => self.tunnel_devices.insert(e.mac),
            Some(false) => self.tunnel_exclude.insert(e.mac),
            None => false,
        };
    }

    /// Removes a device's elements.
    pub fn remove_entry(&mut self, e: &DeviceEntry) {
        if let Some(m) = self.zones.get_mut(&e.zone) {
            remove_members(m, e);
        }
        for a in &e.addresses {
            match a {
                IpAddr::V4(v4) => self.v4_owners.remove(&(*v4, e.mac)),
                IpAddr::V6(v6) => self.v6_owners.remove(&(*v6, e.mac)),
            };
        }
        for port in &e.ports {
            self.port_bindings.remove(&(e.mac, *port));
        }
        if e.blocked {
            remove_members(&mut self.blocked, e);
        }
        match e.tunnel {
            Some(true) => self.tunnel_devices.remove(&e.mac),
            Some(false) => self.tunnel_exclude.remove(&e.mac),
            None => false,
        };
    }

    /// A membership holding only these entries (every zone present, like the
    /// full one), for diffing a few devices without touching the rest.
    pub fn of_entries(like: &Membership, entries: &[DeviceEntry]) -> Membership {
        let mut m = Membership {
            zones: like.zones.keys().map(|z| (z.clone(), ZoneMembers::default())).collect(),
            ..Default::default()
        };
        for e in entries {
            m.insert_entry(e);
        }
        m
    }
}

/// The inventory as set contents.
pub fn desired_membership(config: &Config, inventory: &Inventory) -> Membership {
    let zones: BTreeMap<ZoneId, ZoneMembers> = config
        .policy
        .zones
        .keys()
        .map(|z| (z.clone(), ZoneMembers::default()))
        .collect();
    let mut m = Membership {
        zones,
        ..Default::default()
    };
    // The policy's tunnel devices are in their sets from the start, seen or not
    // (a device's entry puts them there again once it is known, which is the
    // same element).
    if config.tunnel.is_some() {
        let sel = &config.policy.tunnel;
        m.tunnel_exclude.extend(sel.exclude_devices.iter().copied());
        m.tunnel_devices
            .extend(sel.devices.iter().filter(|d| !sel.exclude_devices.contains(d)).copied());
    }
    for device in inventory.devices() {
        // The device's own entry decides its MAC's tunnel set (its choice wins).
        m.tunnel_devices.remove(&device.mac);
        m.tunnel_exclude.remove(&device.mac);
        m.insert_entry(&device_entry(config, device));
    }
    m
}

/// A transport port the router listens on for a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ServicePort {
    /// UDP port.
    Udp(u16),
    /// TCP port.
    Tcp(u16),
}

/// One zone's structural rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneRules {
    /// The zone.
    pub id: ZoneId,
    /// May open connections out of the WAN.
    pub internet: bool,
    /// Zones it may open connections to (not including itself).
    pub reach: BTreeSet<ZoneId>,
    /// May open connections to its own members.
    pub intra_zone: bool,
    /// Router ports it may use.
    pub services: BTreeSet<ServicePort>,
    /// May ping the router (every zone but the unknown one).
    pub ping_router: bool,
    /// What it is refused is sampled for detection.
    pub detect: bool,
}

/// The structural part of the firewall: everything but set contents. Changing it
/// means a full atomic table replace; membership changes never do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredRuleset {
    /// Uplink interface.
    pub wan: String,
    /// Whether Bulkhead drops unsolicited input on the WAN (off when fw4 does it).
    pub police_wan_input: bool,
    /// The LAN segments' interfaces (bridges, VLANs, existing links).
    pub lan_interfaces: BTreeSet<String>,
    /// Ports of the segment bridges: where `table bridge bulkhead` applies.
    pub bridge_ports: BTreeSet<String>,
    /// Per zone, in name order.
    pub zones: Vec<ZoneRules>,
    /// Where devices in no set are treated as belonging.
    pub unknown_zone: ZoneId,
    /// Segments whose unknown devices start in another zone than `unknown_zone`
    /// (`segment_zones`), so the kernel treats a MAC it has never seen there the
    /// same way `zone_for` would.
    pub segment_defaults: Vec<SegmentDefault>,
    /// Each segment's IPv4 broadcast address: broadcast frames may carry it.
    pub lan_broadcasts: BTreeSet<Ipv4Addr>,
    /// The router's own IPv4 address on each segment: no device may claim
    /// one in ARP (the gateway every device sends its traffic to).
    pub router_v4: BTreeSet<Ipv4Addr>,
    /// The router's own IPv6 address on each segment that has one (besides
    /// its link-local addresses).
    pub router_v6: BTreeSet<Ipv6Addr>,
    /// The WireGuard tunnel's selectors and guards, when a tunnel is configured.
    pub tunnel: Option<TunnelRules>,
    /// DNS bypass protection, when the resolver runs and it is on.
    pub dns_guard: Option<DnsGuard>,
    /// Sampling of refused connections for detection (none when off).
    pub detect: Option<DetectSampling>,
    /// Zones some service is shared to (`[[share]]`'s `to`): each has the
    /// pinhole sets `share-<zone>-v4/v6`, filled by the share proxy.
    pub share_to: BTreeSet<ZoneId>,
    /// Zones offering shared services (`[[share]]`'s `from`): their bridge
    /// chains let pinholed devices answer.
    pub share_from: BTreeSet<ZoneId>,
    /// The kernel's flowtable fast path for established forwarded flows,
    /// when the config wants it, the kernel has it and its devices exist.
    pub offload: Option<FlowOffload>,
}

/// A flowtable for established flows routed between these devices (the
/// WAN and the segments' interfaces that exist now: the kernel refuses a
/// flowtable naming a device it does not have). It decides no verdict: a
/// flow is offloaded only after the rules accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowOffload {
    /// Interface names, at least two.
    pub devices: BTreeSet<String>,
}

impl DesiredRuleset {
    /// Whether `other` decides every packet as this one does: the same but
    /// for the flowtable, which only speeds up what the rules accepted.
    /// A change of structure that decides differently cuts every
    /// connection; one that only speeds up does not.
    pub fn decides_as(&self, other: &DesiredRuleset) -> bool {
        let strip = |r: &DesiredRuleset| DesiredRuleset {
            offload: None,
            ..r.clone()
        };
        strip(self) == strip(other)
    }
}

/// What the kernel has that the firewall's structure depends on, read by
/// the runtime: the ports of bridges Bulkhead did not make, which links
/// exist, and whether the kernel has flowtables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// Ports of existing bridges (see [`existing_bridge_ports`]).
    pub bridge_ports: BTreeSet<String>,
    /// The WAN's and the segments' links that exist now, with their
    /// indexes (a link deleted and made again under its name is another
    /// device to the kernel's flowtable).
    pub present: BTreeMap<String, u32>,
    /// The kernel took a flowtable (probed once at start).
    pub flowtables: bool,
    /// The link-local IPv6 addresses of the segments' interfaces (the kernel
    /// makes them when a link comes up, so they are read, not configured).
    pub router_link_local: BTreeSet<Ipv6Addr>,
    /// Bridge ports that are Wi-Fi interfaces, with their bridge's link
    /// index: a device's MAC may come from any radio of its bridge.
    pub wireless_ports: BTreeMap<String, u32>,
}

/// [`desired_ruleset`] for the kernel as `facts` describe it: the observed
/// bridge ports policed, and the flowtable over the devices that exist.
pub fn desired_ruleset_for(config: &Config, facts: &LinkFacts) -> DesiredRuleset {
    let mut rs = desired_ruleset(config, &facts.bridge_ports);
    if config.flow_offload && facts.flowtables && !rs.lan_interfaces.is_empty() {
        let devices: BTreeSet<String> = std::iter::once(&rs.wan)
            .chain(&rs.lan_interfaces)
            .filter(|d| facts.present.contains_key(*d))
            .cloned()
            .collect();
        // Without the WAN there is nothing to speed up for most traffic,
        // and one device makes no pair.
        if devices.len() >= 2 && devices.contains(&rs.wan) {
            rs.offload = Some(FlowOffload { devices });
        }
    }
    rs
}

/// Where and how fast refused packets are sampled to userspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DetectSampling {
    /// The NFLOG group.
    pub group: u16,
    /// Packets per device per second (twice that in a burst).
    pub per_second: u32,
}

/// What stops LAN devices from using another resolver than Bulkhead's
/// (`dns.bypass`): plain IPv4 DNS to any other server is answered by the
/// router (redirect) or refused; plain IPv6 DNS to another server, DNS over
/// TLS/QUIC (853) and HTTPS to known DoH servers are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsGuard {
    /// IPv4 port 53 to another server is redirected to the router (else refused).
    pub redirect_v4: bool,
    /// The router's own IPv4 segment addresses (already the resolver).
    pub router_v4: BTreeSet<Ipv4Addr>,
    /// Known DoH servers, IPv4.
    pub doh_v4: BTreeSet<Ipv4Net>,
    /// Known DoH servers, IPv6.
    pub doh_v6: BTreeSet<Ipv6Net>,
}

/// The DNS guard the config asks for.
fn dns_guard(config: &Config) -> Option<DnsGuard> {
    if !config.dns.enabled || config.dns.bypass == crate::config::BypassMode::Off || config.segments.is_empty() {
        return None;
    }
    let mut doh_v4 = BTreeSet::new();
    let mut doh_v6 = BTreeSet::new();
    for n in config.dns.doh_servers.iter().chain(&config.policy.doh_servers) {
        match n {
            ipnet::IpNet::V4(v4) => doh_v4.insert(v4.trunc()),
            ipnet::IpNet::V6(v6) => doh_v6.insert(v6.trunc()),
        };
    }
    Some(DnsGuard {
        redirect_v4: config.dns.bypass == crate::config::BypassMode::Redirect,
        router_v4: config.segments.iter().map(|s| s.ipv4.addr()).collect(),
        doh_v4,
        doh_v6,
    })
}

/// The firewall's half of the tunnel: which LAN traffic gets the tunnel mark, and
/// the interface that marked traffic may leave by. All static data from the config
/// and policy; the domain sets' addresses and the selected and excluded devices
/// (policy and homeowner's choices, see [`Membership`]) are elements, not
/// structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelRules {
    /// The tunnel interface.
    pub interface: String,
    /// Its MTU (MSS clamping).
    pub mtu: u16,
    /// Zones whose members (by MAC set) are selected.
    pub zones: BTreeSet<ZoneId>,
    /// The other zones (their MACs stop the segment-default rules below).
    pub other_zones: BTreeSet<ZoneId>,
    /// Segment interfaces whose never-seen devices default to a selected zone.
    pub default_interfaces: BTreeSet<String>,
    /// Selected IPv4 destinations.
    pub destinations_v4: BTreeSet<Ipv4Net>,
    /// Selected IPv6 destinations.
    pub destinations_v6: BTreeSet<Ipv6Net>,
    /// Selected domain sets (named nft sets `dom_<name>_v4`/`_v6`).
    pub domain_sets: BTreeSet<DomainSetId>,
    /// IPv4 destinations always reached directly.
    pub exclude_v4: BTreeSet<Ipv4Net>,
    /// IPv6 destinations always reached directly.
    pub exclude_v6: BTreeSet<Ipv6Net>,
    /// The LAN's own IPv4 networks: never marked (traffic between segments and to
    /// the router stays home).
    pub local_v4: BTreeSet<Ipv4Net>,
    /// The LAN's own IPv6 networks.
    pub local_v6: BTreeSet<Ipv6Net>,
}

/// The tunnel part of the desired ruleset (None without a `[tunnel]`).
fn tunnel_rules(config: &Config) -> Option<TunnelRules> {
    let t = config.tunnel.as_ref()?;
    let sel = &config.policy.tunnel;
    let p = &config.policy;
    let (mut destinations_v4, mut destinations_v6) = (BTreeSet::new(), BTreeSet::new());
    for n in &sel.destinations {
        match n {
            IpNet::V4(n) => destinations_v4.insert(*n),
            IpNet::V6(n) => destinations_v6.insert(*n),
        };
    }
    let (mut exclude_v4, mut exclude_v6) = (BTreeSet::new(), BTreeSet::new());
    for n in &sel.exclude_destinations {
        match n {
            IpNet::V4(n) => exclude_v4.insert(*n),
            IpNet::V6(n) => exclude_v6.insert(*n),
        };
    }
    // The endpoints' own addresses are never sent into the tunnel: the router's
    // handshakes are not marked anyway, but a LAN device talking to the VPN
    // server directly must not loop through it.
    for peer in &t.peers {
        if let Some(ip) = peer.endpoint.as_ref().and_then(|e| e.host.parse::<IpAddr>().ok()) {
            match ip {
                IpAddr::V4(a) => exclude_v4.insert(Ipv4Net::from(a)),
                IpAddr::V6(a) => exclude_v6.insert(Ipv6Net::from(a)),
            };
        }
    }
    let default_interfaces = config
        .segments
        .iter()
        .filter(|s| p.segment_zones.get(&s.id).is_some_and(|z| sel.zones.contains(z)))
        .map(|s| s.interface.clone())
        .collect();
    Some(TunnelRules {
        interface: t.interface.clone(),
        mtu: t.mtu,
        zones: sel.zones.clone(),
        other_zones: p.zones.keys().filter(|z| !sel.zones.contains(*z)).cloned().collect(),
        default_interfaces,
        destinations_v4,
        destinations_v6,
        domain_sets: sel.domain_sets.clone(),
        exclude_v4,
        exclude_v6,
        local_v4: config.segments.iter().map(|s| s.ipv4.trunc()).collect(),
        local_v6: config
            .segments
            .iter()
            .filter_map(|s| s.ipv6.map(|n| n.trunc()))
            .collect(),
    })
}

/// A segment whose unknown devices go to a zone of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentDefault {
    /// The segment's interface.
    pub interface: String,
    /// Its bridge ports (where the bridge table sees its frames).
    pub ports: BTreeSet<String>,
    /// The zone.
    pub zone: ZoneId,
}

impl ZoneRules {
    /// Zones this zone may open connections to, itself included when intra-zone
    /// traffic is allowed, in name order.
    pub fn targets(&self) -> Vec<&ZoneId> {
        let mut t: Vec<&ZoneId> = self.reach.iter().collect();
        if self.intra_zone {
            t.push(&self.id);
        }
        t.sort();
        t
    }
}

fn service_ports(s: RouterService, web_port: Option<u16>) -> Vec<ServicePort> {
    match s {
        RouterService::Dns => vec![ServicePort::Udp(53), ServicePort::Tcp(53)],
        RouterService::Dhcp => vec![ServicePort::Udp(67), ServicePort::Udp(547)],
        RouterService::Ntp => vec![ServicePort::Udp(123)],
        RouterService::WebUi => web_port.map(ServicePort::Tcp).into_iter().collect(),
        RouterService::Ssh => vec![ServicePort::Tcp(22)],
        RouterService::AdminWeb => vec![ServicePort::Tcp(80), ServicePort::Tcp(443)],
    }
}

/// The config as firewall structure. `extra_bridge_ports` are the observed ports of
/// bridges Bulkhead did not create (kind = "existing"), found by the net module.
pub fn desired_ruleset(config: &Config, extra_bridge_ports: &BTreeSet<String>) -> DesiredRuleset {
    let p = &config.policy;
    let zones = p
        .zones
        .values()
        .map(|z| ZoneRules {
            id: z.id.clone(),
            internet: z.internet,
            reach: z.reach_zones.iter().filter(|r| **r != z.id).cloned().collect(),
            intra_zone: z.intra_zone || z.reach_zones.contains(&z.id),
            services: z
                .router_services
                .iter()
                .flat_map(|s| service_ports(*s, config.web_port()))
                .collect(),
            ping_router: z.id != p.unknown_zone,
            detect: z.detect && config.detect.enabled,
        })
        .collect();
    let mut bridge_ports: BTreeSet<String> = extra_bridge_ports.clone();
    let mut segment_defaults = Vec::new();
    for s in &config.segments {
        let ports: BTreeSet<String> = match &s.kind {
            SegmentKind::Bridge { ports } => ports.iter().cloned().collect(),
            // Observed ports of existing bridges are not reported per bridge yet, so
            // there a segment default applies to routed traffic only.
            _ => BTreeSet::new(),
        };
        bridge_ports.extend(ports.iter().cloned());
        if let Some(zone) = p.segment_zones.get(&s.id).filter(|z| **z != p.unknown_zone) {
            segment_defaults.push(SegmentDefault {
                interface: s.interface.clone(),
                ports,
                zone: zone.clone(),
            });
        }
    }
    DesiredRuleset {
        wan: config.wan_interface.clone(),
        police_wan_input: config.police_wan_input,
        lan_interfaces: config.segments.iter().map(|s| s.interface.clone()).collect(),
        bridge_ports,
        zones,
        unknown_zone: p.unknown_zone.clone(),
        segment_defaults,
        lan_broadcasts: config.segments.iter().map(|s| s.ipv4.broadcast()).collect(),
        router_v4: config.segments.iter().map(|s| s.ipv4.addr()).collect(),
        router_v6: config
            .segments
            .iter()
            .filter_map(|s| s.ipv6.map(|n| n.addr()))
            .collect(),
        tunnel: tunnel_rules(config),
        dns_guard: dns_guard(config),
        share_to: p.shares.iter().flat_map(|r| r.to.iter().cloned()).collect(),
        share_from: p.shares.iter().flat_map(|r| r.from.iter().cloned()).collect(),
        detect: config.detect.enabled.then_some(DetectSampling {
            group: config.detect.nflog_group,
            per_second: config.detect.samples_per_second,
        }),
        offload: None,
    }
}

#[cfg(test)]
mod tests;
