//! PURE: the difference between two memberships as set-element changes.

use std::collections::BTreeMap;

use super::SetKind;
use crate::config::ZoneId;
use crate::policy::Membership;

/// Element changes per (zone, set kind). Elements are rendered text (a MAC or an
/// address printed by Rust, never text from the network).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Elements to add.
    pub add: BTreeMap<(ZoneId, SetKind), Vec<String>>,
    /// Elements to remove.
    pub remove: BTreeMap<(ZoneId, SetKind), Vec<String>>,
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
}

fn strings<T: ToString>(it: impl Iterator<Item = T>) -> Vec<String> {
    it.map(|x| x.to_string()).collect()
}

/// `old` -> `new`. Zones missing on one side count as empty.
pub fn diff_membership(old: &Membership, new: &Membership) -> MembershipDelta {
    let mut d = MembershipDelta::default();
    let empty = Default::default();
    let zones: std::collections::BTreeSet<&ZoneId> = old.zones.keys().chain(new.zones.keys()).collect();
    for z in zones {
        let o = old.zones.get(z).unwrap_or(&empty);
        let n = new.zones.get(z).unwrap_or(&empty);
        let mut put = |kind, add: Vec<String>, rem: Vec<String>| {
            if !add.is_empty() {
                d.add.insert((z.clone(), kind), add);
            }
            if !rem.is_empty() {
                d.remove.insert((z.clone(), kind), rem);
            }
        };
        put(
            SetKind::Mac,
            strings(n.macs.difference(&o.macs)),
            strings(o.macs.difference(&n.macs)),
        );
        put(
            SetKind::V4,
            strings(n.v4.difference(&o.v4)),
            strings(o.v4.difference(&n.v4)),
        );
        put(
            SetKind::V6,
            strings(n.v6.difference(&o.v6)),
            strings(o.v6.difference(&n.v6)),
        );
    }
    d
}
