//! PURE: the difference between two memberships as set-element changes.

use std::collections::{BTreeMap, BTreeSet};

use super::{SetKind, SetOwner};
use crate::config::ZoneId;
use crate::policy::{Membership, ZoneMembers};

/// Element changes per member set (owner, kind). Elements are rendered text (a
/// MAC or an address printed by Rust, never text from the network).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Elements to add.
    pub add: BTreeMap<(SetOwner, SetKind), Vec<String>>,
    /// Elements to remove.
    pub remove: BTreeMap<(SetOwner, SetKind), Vec<String>>,
}

impl MembershipDelta {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add.values().all(Vec::is_empty) && self.remove.values().all(Vec::is_empty)
    }
    /// Number of elements added.
    pub fn added(&self) -> usize {
        self.add.values().map(Vec::len).sum()
    }
    /// Number of elements removed.
    pub fn removed(&self) -> usize {
        self.remove.values().map(Vec::len).sum()
    }

    fn put<T: Ord + ToString>(&mut self, owner: &SetOwner, kind: SetKind, old: &BTreeSet<T>, new: &BTreeSet<T>) {
        let add: Vec<String> = new.difference(old).map(ToString::to_string).collect();
        let rem: Vec<String> = old.difference(new).map(ToString::to_string).collect();
        if !add.is_empty() {
            self.add.insert((owner.clone(), kind), add);
        }
        if !rem.is_empty() {
            self.remove.insert((owner.clone(), kind), rem);
        }
    }

    fn put_members(&mut self, owner: &SetOwner, old: &ZoneMembers, new: &ZoneMembers) {
        self.put(owner, SetKind::Mac, &old.macs, &new.macs);
        self.put(owner, SetKind::V4, &old.v4, &new.v4);
        self.put(owner, SetKind::V6, &old.v6, &new.v6);
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
        SetKind::Mac,
        &old.tunnel_devices,
        &new.tunnel_devices,
    );
    d.put(
        &SetOwner::TunnelExclude,
        SetKind::Mac,
        &old.tunnel_exclude,
        &new.tunnel_exclude,
    );
    d
}
