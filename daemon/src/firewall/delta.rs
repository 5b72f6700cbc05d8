//! PURE: the difference between two memberships as set-element changes, typed.
//!
//! Elements stay `MacAddr`/`Ipv4Addr`/`Ipv6Addr` until the edge that sends them:
//! [`render::delta_document`](super::render::delta_document) prints them for
//! nft's JSON, [`encode_batch`](super::netlink::encode_batch) writes their bytes
//! for nfnetlink. Nothing parses them back, so no element can be malformed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{SetKind, SetOwner};
use crate::config::{MacAddr, ZoneId};
use crate::policy::{Membership, ZoneMembers};

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
}

impl Elements {
    /// Which kind of set holds them.
    pub fn kind(&self) -> SetKind {
        match self {
            Elements::Mac(_) => SetKind::Mac,
            Elements::V4(_) => SetKind::V4,
            Elements::V6(_) => SetKind::V6,
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Elements::Mac(v) => v.len(),
            Elements::V4(v) => v.len(),
            Elements::V6(v) => v.len(),
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
        }
    }

    /// Each element's key as the kernel stores it (network byte order).
    pub fn key_bytes(&self) -> Vec<Vec<u8>> {
        match self {
            Elements::Mac(v) => v.iter().map(|m| m.0.to_vec()).collect(),
            Elements::V4(v) => v.iter().map(|a| a.octets().to_vec()).collect(),
            Elements::V6(v) => v.iter().map(|a| a.octets().to_vec()).collect(),
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
    d
}
