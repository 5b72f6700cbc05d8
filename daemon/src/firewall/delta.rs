//! PURE: the difference between two memberships as set-element changes, typed.
//!
//! Elements stay `MacAddr`/`Ipv4Addr`/`Ipv6Addr` until the edge that sends them:
//! [`render::delta_document`](super::render::delta_document) prints them for
//! nft's JSON, [`encode_batch`](super::netlink::encode_batch) writes their bytes
//! for nfnetlink. Nothing parses them back, so no element can be malformed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{SetKind, SetOwner};
use crate::config::{MacAddr, PortName, Transport, ZoneId};
use crate::policy::{Membership, ZoneMembers};

/// A way into one shared device: new connections to `address` on
/// `transport`/`port` (an element of a consuming zone's `share-<zone>-v4/v6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pinhole {
    /// The device offering the service.
    pub address: IpAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// The port.
    pub port: u16,
}

impl Pinhole {
    /// The element as nft's JSON writes it: `address . proto . port`.
    pub fn expression(&self) -> nftables::expr::Expression<'static> {
        use nftables::expr::Expression;
        use std::borrow::Cow;
        Expression::Named(nftables::expr::NamedExpression::Concat(vec![
            Expression::String(Cow::Owned(self.address.to_string())),
            Expression::String(Cow::Borrowed(self.transport.as_str())),
            Expression::Number(u32::from(self.port)),
        ]))
    }

    /// The key as the kernel stores a concatenation: each field in network
    /// byte order, padded to 4 bytes (`ipv4_addr . inet_proto . inet_service`).
    fn key_bytes(&self) -> Vec<u8> {
        let mut k = match self.address {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        k.extend_from_slice(&[self.transport.protocol_number(), 0, 0, 0]);
        k.extend_from_slice(&self.port.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    }
}

impl std::fmt::Display for Pinhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} . {} . {}", self.address, self.transport.as_str(), self.port)
    }
}

/// An `owner-of-v4` element as nft's JSON writes it: `address . MAC`.
pub fn owner_expression(address: IpAddr, mac: MacAddr) -> nftables::expr::Expression<'static> {
    use nftables::expr::Expression;
    use std::borrow::Cow;
    Expression::Named(nftables::expr::NamedExpression::Concat(vec![
        Expression::String(Cow::Owned(address.to_string())),
        Expression::String(Cow::Owned(mac.to_string())),
    ]))
}

/// A `ether_addr . ifname` element (a MAC bound to a bridge port), as nft's
/// JSON takes it.
pub fn port_expression(mac: MacAddr, port: PortName) -> nftables::expr::Expression<'static> {
    use nftables::expr::Expression;
    use std::borrow::Cow;
    Expression::Named(nftables::expr::NamedExpression::Concat(vec![
        Expression::String(Cow::Owned(mac.to_string())),
        Expression::String(Cow::Owned(port.to_string())),
    ]))
}

/// An `address . ether_addr` key as the kernel stores it: the address, then
/// the MAC padded to a multiple of 4 bytes.
fn owner_key(address: &[u8], mac: &MacAddr) -> Vec<u8> {
    let mut k = address.to_vec();
    k.extend_from_slice(&mac.0);
    k.extend_from_slice(&[0, 0]);
    k
}

/// The elements of one set: one key type per set, so a set's elements cannot be
/// of the wrong kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elements {
    /// `ether_addr` elements.
    Mac(Vec<MacAddr>),
    /// `ipv4_addr` elements.
    V4(Vec<Ipv4Addr>),
    /// `ipv6_addr` elements.
    V6(Vec<Ipv6Addr>),
    /// `ipv4_addr . inet_proto . inet_service` elements (IPv4 pinholes).
    Pinholes4(Vec<Pinhole>),
    /// `ipv6_addr . inet_proto . inet_service` elements (IPv6 pinholes).
    Pinholes6(Vec<Pinhole>),
    /// `ipv4_addr . ether_addr` elements (who holds an address).
    Owners4(Vec<(Ipv4Addr, MacAddr)>),
    /// `ipv6_addr . ether_addr` elements.
    Owners6(Vec<(Ipv6Addr, MacAddr)>),
    /// `ether_addr . ifname` elements (which port a MAC is bound to).
    Ports(Vec<(MacAddr, PortName)>),
}

impl Elements {
    /// Which kind of set holds them.
    pub fn kind(&self) -> SetKind {
        match self {
            Elements::Mac(_) => SetKind::Mac,
            Elements::V4(_) => SetKind::V4,
            Elements::V6(_) => SetKind::V6,
            Elements::Pinholes4(_) => SetKind::Pinholes4,
            Elements::Pinholes6(_) => SetKind::Pinholes6,
            Elements::Owners4(_) => SetKind::Owners4,
            Elements::Owners6(_) => SetKind::Owners6,
            Elements::Ports(_) => SetKind::Ports,
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Elements::Mac(v) => v.len(),
            Elements::V4(v) => v.len(),
            Elements::V6(v) => v.len(),
            Elements::Pinholes4(v) | Elements::Pinholes6(v) => v.len(),
            Elements::Owners4(v) => v.len(),
            Elements::Owners6(v) => v.len(),
            Elements::Ports(v) => v.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each element as nft prints it (for JSON documents and messages).
    pub fn texts(&self) -> Vec<String> {
        match self {
            Elements::Mac(v) => v.iter().map(ToString::to_string).collect(),
            Elements::V4(v) => v.iter().map(ToString::to_string).collect(),
            Elements::V6(v) => v.iter().map(ToString::to_string).collect(),
            Elements::Pinholes4(v) | Elements::Pinholes6(v) => v.iter().map(ToString::to_string).collect(),
            Elements::Owners4(v) => v.iter().map(|(a, m)| format!("{a} . {m}")).collect(),
            Elements::Owners6(v) => v.iter().map(|(a, m)| format!("{a} . {m}")).collect(),
            Elements::Ports(v) => v.iter().map(|(m, p)| format!("{m} . \"{p}\"")).collect(),
        }
    }

    /// Each element as an nft JSON expression.
    pub fn expressions(&self) -> Vec<nftables::expr::Expression<'static>> {
        match self {
            Elements::Pinholes4(v) | Elements::Pinholes6(v) => v.iter().map(Pinhole::expression).collect(),
            Elements::Owners4(v) => v.iter().map(|(a, m)| owner_expression((*a).into(), *m)).collect(),
            Elements::Owners6(v) => v.iter().map(|(a, m)| owner_expression((*a).into(), *m)).collect(),
            Elements::Ports(v) => v.iter().map(|(m, p)| port_expression(*m, *p)).collect(),
            _ => self
                .texts()
                .into_iter()
                .map(|t| nftables::expr::Expression::String(std::borrow::Cow::Owned(t)))
                .collect(),
        }
    }

    /// Pinholes split by family: (v4 elements, v6 elements).
    pub fn of_pinholes(pinholes: impl IntoIterator<Item = Pinhole>) -> (Elements, Elements) {
        let (v4, v6) = pinholes.into_iter().partition(|p| p.address.is_ipv4());
        (Elements::Pinholes4(v4), Elements::Pinholes6(v6))
    }

    /// Each element's key as the kernel stores it (network byte order).
    pub fn key_bytes(&self) -> Vec<Vec<u8>> {
        match self {
            Elements::Mac(v) => v.iter().map(|m| m.0.to_vec()).collect(),
            Elements::V4(v) => v.iter().map(|a| a.octets().to_vec()).collect(),
            Elements::V6(v) => v.iter().map(|a| a.octets().to_vec()).collect(),
            Elements::Pinholes4(v) | Elements::Pinholes6(v) => v.iter().map(Pinhole::key_bytes).collect(),
            // address . MAC, the MAC padded to 8 bytes: 4 + 8, or 16 + 8.
            Elements::Owners4(v) => v.iter().map(|(a, m)| owner_key(&a.octets(), m)).collect(),
            Elements::Owners6(v) => v.iter().map(|(a, m)| owner_key(&a.octets(), m)).collect(),
            // MAC (padded to 8) . the name NUL-padded to IFNAMSIZ: 24 bytes.
            Elements::Ports(v) => v
                .iter()
                .map(|(m, p)| {
                    let mut key = Vec::with_capacity(24);
                    key.extend_from_slice(&m.0);
                    key.extend_from_slice(&[0, 0]);
                    key.extend_from_slice(&p.key_bytes());
                    key
                })
                .collect(),
        }
    }

    /// Addresses split by family: (v4 elements, v6 elements), either possibly empty.
    pub fn of_addresses(addresses: impl IntoIterator<Item = IpAddr>) -> (Elements, Elements) {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for a in addresses {
            match a {
                IpAddr::V4(a) => v4.push(a),
                IpAddr::V6(a) => v6.push(a),
            }
        }
        (Elements::V4(v4), Elements::V6(v6))
    }

    fn extend(&mut self, more: Elements) {
        match (self, more) {
            (Elements::Mac(a), Elements::Mac(b)) => a.extend(b),
            (Elements::V4(a), Elements::V4(b)) => a.extend(b),
            (Elements::V6(a), Elements::V6(b)) => a.extend(b),
            (Elements::Pinholes4(a), Elements::Pinholes4(b)) => a.extend(b),
            (Elements::Pinholes6(a), Elements::Pinholes6(b)) => a.extend(b),
            (Elements::Owners4(a), Elements::Owners4(b)) => a.extend(b),
            (Elements::Owners6(a), Elements::Owners6(b)) => a.extend(b),
            (Elements::Ports(a), Elements::Ports(b)) => a.extend(b),
            // Unreachable by construction: the map key carries the kind.
            (this, other) => debug_assert_eq!(this.kind(), other.kind()),
        }
    }
}

/// Element changes per set: every removal, then every addition, each in (owner,
/// kind) order. The kind in the key is always its elements' kind (only
/// [`MembershipDelta::push`] inserts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    add: BTreeMap<(SetOwner, SetKind), Elements>,
    remove: BTreeMap<(SetOwner, SetKind), Elements>,
}

impl MembershipDelta {
    /// Adds (`add`) or removes `elements` in `owner`'s set of their kind; empty
    /// element lists are left out.
    pub fn push(&mut self, add: bool, owner: SetOwner, elements: Elements) {
        if elements.is_empty() {
            return;
        }
        let side = if add { &mut self.add } else { &mut self.remove };
        match side.entry((owner, elements.kind())) {
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().extend(elements),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(elements);
            }
        }
    }

    /// The changes in the order they are sent: `(add, owner, elements)`, every
    /// removal first (a moved element leaves its old set before it joins the
    /// new one, in the same transaction).
    pub fn changes(&self) -> impl Iterator<Item = (bool, &SetOwner, &Elements)> + '_ {
        let removals = self.remove.iter().map(|((owner, _), e)| (false, owner, e));
        removals.chain(self.add.iter().map(|((owner, _), e)| (true, owner, e)))
    }

    /// True when nothing changes ([`push`](Self::push) keeps no empty list).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
    /// Number of elements added.
    pub fn added(&self) -> usize {
        self.add.values().map(Elements::len).sum()
    }
    /// Number of elements removed.
    pub fn removed(&self) -> usize {
        self.remove.values().map(Elements::len).sum()
    }

    /// `old` -> `new` for one set: what only `new` has is added, what only
    /// `old` has is removed.
    fn put<T: Ord + Copy>(
        &mut self,
        owner: &SetOwner,
        old: &BTreeSet<T>,
        new: &BTreeSet<T>,
        typed: fn(Vec<T>) -> Elements,
    ) {
        self.push(true, owner.clone(), typed(new.difference(old).copied().collect()));
        self.push(false, owner.clone(), typed(old.difference(new).copied().collect()));
    }

    fn put_members(&mut self, owner: &SetOwner, old: &ZoneMembers, new: &ZoneMembers) {
        self.put(owner, &old.macs, &new.macs, Elements::Mac);
        self.put(owner, &old.v4, &new.v4, Elements::V4);
        self.put(owner, &old.v6, &new.v6, Elements::V6);
    }
}

/// `old` -> `new`. Zones missing on one side count as empty.
pub fn diff_membership(old: &Membership, new: &Membership) -> MembershipDelta {
    let mut d = MembershipDelta::default();
    let empty = ZoneMembers::default();
    let zones: BTreeSet<&ZoneId> = old.zones.keys().chain(new.zones.keys()).collect();
    for z in zones {
        let o = old.zones.get(z).unwrap_or(&empty);
        let n = new.zones.get(z).unwrap_or(&empty);
        d.put_members(&SetOwner::Zone(z.clone()), o, n);
    }
    d.put_members(&SetOwner::Blocked, &old.blocked, &new.blocked);
    d.put(
        &SetOwner::TunnelDevices,
        &old.tunnel_devices,
        &new.tunnel_devices,
        Elements::Mac,
    );
    d.put(
        &SetOwner::TunnelExclude,
        &old.tunnel_exclude,
        &new.tunnel_exclude,
        Elements::Mac,
    );
    d.put(&SetOwner::AddressOwners, &old.owned_v4(), &new.owned_v4(), Elements::V4);
    d.put(
        &SetOwner::AddressOwners,
        &old.v4_owners,
        &new.v4_owners,
        Elements::Owners4,
    );
    d.put(&SetOwner::AddressOwners, &old.owned_v6(), &new.owned_v6(), Elements::V6);
    d.put(
        &SetOwner::RouterLinkLocal,
        &old.router_link_local,
        &new.router_link_local,
        Elements::V6,
    );
    d.put(
        &SetOwner::AddressOwners,
        &old.v6_owners,
        &new.v6_owners,
        Elements::Owners6,
    );
    d.put(
        &SetOwner::PortBindings,
        &old.bound_macs(),
        &new.bound_macs(),
        Elements::Mac,
    );
    d.put(
        &SetOwner::PortBindings,
        &old.port_bindings,
        &new.port_bindings,
        Elements::Ports,
    );
    d
}
