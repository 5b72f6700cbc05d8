//! The named sets: which exist, in which table, under which name, with which
//! elements. Rules only ever refer to a set by name (`@<name>`); membership is
//! the sets' elements, so moving, blocking or tunnelling a device is an element
//! delta and never a rule change.

use std::collections::BTreeSet;

use nftables::expr::Expression;
use nftables::types::NfFamily;

use crate::config::{DomainSetId, ZoneId};
use crate::firewall::expr::{s, set_ref};
use crate::firewall::SetKind;
use crate::policy::{DesiredRuleset, Membership};

/// Name of a zone's set of a given kind, e.g. `iot_v4`.
pub fn set_name(zone: &ZoneId, kind: SetKind) -> String {
    format!("{zone}_{}", kind.suffix())
}

/// Whose elements a member set holds. Sets other than a zone's have a hyphen in
/// their name, which a zone name cannot contain, so they never collide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetOwner {
    /// A zone's sets: `<zone>_mac`, `<zone>_v4`, `<zone>_v6`.
    Zone(ZoneId),
    /// Devices the homeowner blocked: `blocked-mac` (both tables), `blocked-v4`,
    /// `blocked-v6`.
    Blocked,
    /// MACs whose traffic gets the tunnel mark: `tunnel-devices` (inet only).
    TunnelDevices,
    /// MACs whose traffic never gets it: `tunnel-exclude-devices` (inet only).
    TunnelExclude,
    /// One of the tunnel's domain sets: `dom_<name>_v4`, `dom_<name>_v6` (inet
    /// only). Its elements are not membership: services put them there with a
    /// lifetime (see [`Enforcer::hold`](crate::firewall::Enforcer::hold)).
    DomainSet(DomainSetId),
    /// A consuming zone's pinholes into shared devices: `share-<zone>-v4`,
    /// `share-<zone>-v6` (address . protocol . port; both tables: the bridge
    /// table lets them through between ports of one segment). Held by the
    /// enforcer for the share proxy, not membership.
    Share(ZoneId),
    /// Who holds each known IPv4 address, in the bridge table: `owned-v4`
    /// (the addresses) and `owner-of-v4` (address . MAC). ARP claiming an
    /// owned address from another MAC is dropped.
    AddressOwners,
    /// Which bridge port each known device is on, in the bridge table:
    /// `bound-mac` (the MACs) and `port-of` (MAC . port). A frame with a
    /// bound MAC from another port is dropped.
    PortBindings,
    /// The router's link-local addresses in the bridge table's `router-v6`
    /// (which also holds the configured ones: the full replace writes
    /// both, deltas change only these).
    RouterLinkLocal,
}

impl From<ZoneId> for SetOwner {
    fn from(z: ZoneId) -> Self {
        SetOwner::Zone(z)
    }
}

impl SetOwner {
    /// The nft set's name for elements of `kind`.
    pub fn set_name(&self, kind: SetKind) -> String {
        match self {
            SetOwner::Zone(z) => set_name(z, kind),
            SetOwner::Blocked => format!("blocked-{}", kind.suffix()),
            SetOwner::TunnelDevices => "tunnel-devices".into(),
            SetOwner::TunnelExclude => "tunnel-exclude-devices".into(),
            SetOwner::DomainSet(id) => domain_set_name(id, kind == SetKind::V6),
            SetOwner::Share(zone) => share_set_name(zone, kind == SetKind::Pinholes6),
            SetOwner::AddressOwners if matches!(kind, SetKind::Owners4 | SetKind::Owners6) => {
                format!("owner-of-{}", kind.suffix())
            }
            SetOwner::AddressOwners => format!("owned-{}", kind.suffix()),
            SetOwner::PortBindings if kind == SetKind::Ports => "port-of".into(),
            SetOwner::PortBindings => "bound-mac".into(),
            SetOwner::RouterLinkLocal => super::bridge::ROUTER_V6_SET.into(),
        }
    }

    /// The families whose table holds this set: MAC sets of zones and blocked
    /// devices in both tables (the bridge table decides by MAC alone), address
    /// sets and the tunnel's sets (only `tunnel-mark`, in inet, reads them) in
    /// inet only.
    pub fn families(&self, kind: SetKind) -> &'static [NfFamily] {
        match self {
            SetOwner::TunnelDevices | SetOwner::TunnelExclude | SetOwner::DomainSet(_) => &[NfFamily::INet],
            SetOwner::Zone(_) | SetOwner::Blocked | SetOwner::Share(_) => set_families(kind),
            SetOwner::AddressOwners | SetOwner::PortBindings | SetOwner::RouterLinkLocal => &[NfFamily::Bridge],
        }
    }
}

/// Every member set the ruleset has, in creation order: each zone's three, the
/// blocked devices' three, and with a tunnel its two device sets.
pub fn member_sets(rs: &DesiredRuleset) -> Vec<(SetOwner, SetKind)> {
    let mut out: Vec<(SetOwner, SetKind)> = rs
        .zones
        .iter()
        .flat_map(|z| SetKind::ALL.map(|k| (SetOwner::Zone(z.id.clone()), k)))
        .collect();
    out.extend(SetKind::ALL.map(|k| (SetOwner::Blocked, k)));
    if rs.tunnel.is_some() {
        out.push((SetOwner::TunnelDevices, SetKind::Mac));
        out.push((SetOwner::TunnelExclude, SetKind::Mac));
    }
    out.push((SetOwner::AddressOwners, SetKind::V4));
    out.push((SetOwner::AddressOwners, SetKind::Owners4));
    out.push((SetOwner::AddressOwners, SetKind::V6));
    out.push((SetOwner::AddressOwners, SetKind::Owners6));
    out.push((SetOwner::PortBindings, SetKind::Mac));
    out.push((SetOwner::PortBindings, SetKind::Ports));
    out
}

pub(super) fn set_type(kind: SetKind) -> nftables::schema::SetTypeValue<'static> {
    use nftables::schema::SetType::*;
    use nftables::schema::SetTypeValue::{Concatenated, Single};
    match kind {
        SetKind::Mac => Single(EtherAddr),
        SetKind::V4 => Single(Ipv4Addr),
        SetKind::V6 => Single(Ipv6Addr),
        SetKind::Pinholes4 => Concatenated(std::borrow::Cow::Borrowed(&[Ipv4Addr, InetProto, InetService])),
        SetKind::Pinholes6 => Concatenated(std::borrow::Cow::Borrowed(&[Ipv6Addr, InetProto, InetService])),
        SetKind::Owners4 => Concatenated(std::borrow::Cow::Borrowed(&[Ipv4Addr, EtherAddr])),
        SetKind::Owners6 => Concatenated(std::borrow::Cow::Borrowed(&[Ipv6Addr, EtherAddr])),
        SetKind::Ports => Concatenated(std::borrow::Cow::Borrowed(&[EtherAddr, Ifname])),
    }
}

/// Which sets exist in which family: MAC sets in both tables (the bridge table
/// decides by MAC alone), address sets only in inet.
pub fn set_families(kind: SetKind) -> &'static [NfFamily] {
    match kind {
        SetKind::Mac | SetKind::Pinholes4 | SetKind::Pinholes6 => &[NfFamily::INet, NfFamily::Bridge],
        SetKind::Owners4 | SetKind::Owners6 | SetKind::Ports => &[NfFamily::Bridge],
        SetKind::V4 | SetKind::V6 => &[NfFamily::INet],
    }
}

/// The elements of one member set, as nft expressions.
pub fn elements(m: &Membership, owner: &SetOwner, kind: SetKind) -> Vec<Expression<'static>> {
    let macs = |set: &BTreeSet<crate::config::MacAddr>| set.iter().map(|x| s(x.to_string())).collect();
    let members = match owner {
        SetOwner::Zone(zone) => match m.zones.get(zone) {
            Some(z) => z,
            None => return Vec::new(),
        },
        SetOwner::Blocked => &m.blocked,
        SetOwner::TunnelDevices => {
            return if kind == SetKind::Mac {
                macs(&m.tunnel_devices)
            } else {
                Vec::new()
            }
        }
        // Held by the enforcer, not part of the membership.
        SetOwner::DomainSet(_) | SetOwner::Share(_) => return Vec::new(),
        SetOwner::AddressOwners => {
            return match kind {
                SetKind::V4 => m.owned_v4().iter().map(|a| s(a.to_string())).collect(),
                SetKind::V6 => m.owned_v6().iter().map(|a| s(a.to_string())).collect(),
                SetKind::Owners4 => m
                    .v4_owners
                    .iter()
                    .map(|(a, mac)| crate::firewall::delta::owner_expression((*a).into(), *mac))
                    .collect(),
                SetKind::Owners6 => m
                    .v6_owners
                    .iter()
                    .map(|(a, mac)| crate::firewall::delta::owner_expression((*a).into(), *mac))
                    .collect(),
                _ => Vec::new(),
            }
        }
        // Written with the configured addresses by `render::router_v6_elements`.
        SetOwner::RouterLinkLocal => return Vec::new(),
        SetOwner::PortBindings => {
            return match kind {
                SetKind::Mac => macs(&m.bound_macs()),
                SetKind::Ports => m
                    .port_bindings
                    .iter()
                    .map(|(mac, port)| crate::firewall::delta::port_expression(*mac, *port))
                    .collect(),
                _ => Vec::new(),
            }
        }
        SetOwner::TunnelExclude => {
            return if kind == SetKind::Mac {
                macs(&m.tunnel_exclude)
            } else {
                Vec::new()
            }
        }
    };
    match kind {
        SetKind::Mac => macs(&members.macs),
        SetKind::V4 => members.v4.iter().map(|x| s(x.to_string())).collect(),
        SetKind::V6 => members.v6.iter().map(|x| s(x.to_string())).collect(),
        SetKind::Pinholes4 | SetKind::Pinholes6 | SetKind::Owners4 | SetKind::Owners6 | SetKind::Ports => Vec::new(),
    }
}

/// Name of a consuming zone's pinhole set, e.g. `share-trusted-v4`.
pub fn share_set_name(zone: &ZoneId, v6: bool) -> String {
    format!("share-{zone}-{}", if v6 { "v6" } else { "v4" })
}

/// `<address> . <l4 protocol> . <port>` of a packet, for the pinhole sets:
/// `daddr`/`dport` for a connection into the shared device, `saddr`/`sport`
/// for its answers.
pub(super) fn pinhole_key(v6: bool, to_device: bool) -> Expression<'static> {
    let (addr, port) = if to_device {
        ("daddr", "dport")
    } else {
        ("saddr", "sport")
    };
    Expression::Named(nftables::expr::NamedExpression::Concat(vec![
        crate::firewall::expr::payload(if v6 { "ip6" } else { "ip" }, addr),
        crate::firewall::expr::meta(nftables::expr::MetaKey::L4proto),
        crate::firewall::expr::payload("th", port),
    ]))
}

/// Name of a domain set's nft set, e.g. `dom_streaming_v4`.
pub fn domain_set_name(id: &DomainSetId, v6: bool) -> String {
    format!("dom_{id}_{}", if v6 { "v6" } else { "v4" })
}

/// The homeowner's blocked MACs (the input, forward and bridge rules share it).
pub(super) fn blocked_macs() -> Expression<'static> {
    set_ref(&SetOwner::Blocked.set_name(SetKind::Mac))
}
