//! Who is online: a device heard from within [`ONLINE_SECS`]. The pass runs
//! on the core's timer; a device whose presence flipped is touched (services
//! see it in their snapshot: Home Assistant's `device_tracker`) and returned,
//! so the core can tell the homeowner about the devices they watch.

use std::collections::BTreeSet;

use crate::alerts::{Alert, AlertFacts, AlertKind};
use crate::config::MacAddr;
use crate::inventory::{Inventory, UnixTime};

use super::{DaemonState, ONLINE_SECS};

impl DaemonState {
    /// Presence flips found by the timer's pass: services see them through
    /// the touched devices; the homeowner is told about the devices they
    /// watch (`device-offline`, `device-back`; a flapping device is one
    /// alert of each with a count, see [`crate::alerts::AlertKind::dedup_secs`]).
    pub(super) fn on_presence_flips(&mut self, flips: &[PresenceFlip], now: UnixTime) {
        for f in flips {
            if !self.inventory.get(&f.mac).is_some_and(|d| d.watched) {
                continue;
            }
            let (kind, minutes) = if f.online {
                (AlertKind::DeviceBack, None)
            } else {
                (AlertKind::DeviceOffline, Some((now - f.last_seen).max(0) / 60))
            };
            let facts = AlertFacts {
                minutes,
                ..AlertFacts::default()
            };
            self.raise(Alert::about(now, kind, f.mac, facts));
        }
    }
}

/// A presence flip found by a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceFlip {
    /// The device.
    pub mac: MacAddr,
    /// Online now (it came back), or not (it went silent).
    pub online: bool,
    /// When it was last heard from.
    pub last_seen: UnixTime,
}

/// The devices online as of the last pass.
#[derive(Debug, Default)]
pub struct Presence {
    online: BTreeSet<MacAddr>,
    /// No pass yet: the first one only learns (no flips at start).
    started: bool,
}

impl Presence {
    /// Online as of the last pass.
    pub fn is_online(&self, mac: &MacAddr) -> bool {
        self.online.contains(mac)
    }

    /// Looks at every device (O(devices), on the timer) and returns the flips
    /// since the last pass, touching their devices. The first pass returns none:
    /// after a restart, "came back" would be noise.
    pub fn pass(&mut self, inventory: &mut Inventory, now: UnixTime) -> Vec<PresenceFlip> {
        let online: BTreeSet<MacAddr> = inventory
            .devices()
            .filter(|d| now - d.last_seen < ONLINE_SECS)
            .map(|d| d.mac)
            .collect();
        let mut flips = Vec::new();
        for mac in online.symmetric_difference(&self.online) {
            let last_seen = inventory.get(mac).map_or(0, |d| d.last_seen);
            flips.push(PresenceFlip {
                mac: *mac,
                online: online.contains(mac),
                last_seen,
            });
        }
        for f in &flips {
            inventory.touch(f.mac);
        }
        self.online = online;
        if !self.started {
            self.started = true;
            return Vec::new();
        }
        // A forgotten device is not "offline".
        flips.retain(|f| f.online || inventory.get(&f.mac).is_some());
        flips
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Event;

    fn seen(inv: &mut Inventory, last: u8, now: UnixTime) -> MacAddr {
        let mac = MacAddr([2, 0, 0, 0, 0, last]);
        let ip = std::net::IpAddr::from([10, 0, 3, last]);
        inv.apply(&Event::Address { mac, ip }, now);
        mac
    }

    #[test]
    fn flips_are_reported_once_and_not_at_the_first_pass() {
        let mut inv = Inventory::default();
        let camera = seen(&mut inv, 1, 1000);
        let mut p = Presence::default();
        assert!(p.pass(&mut inv, 1000).is_empty(), "first pass only learns");
        assert!(p.is_online(&camera));
        assert!(p.pass(&mut inv, 1000 + ONLINE_SECS - 1).is_empty());
        let flips = p.pass(&mut inv, 1000 + ONLINE_SECS);
        assert_eq!(
            flips,
            vec![PresenceFlip {
                mac: camera,
                online: false,
                last_seen: 1000
            }]
        );
        assert!(!p.is_online(&camera));
        assert!(p.pass(&mut inv, 1000 + ONLINE_SECS + 10).is_empty(), "reported once");
        let now = 5000;
        seen(&mut inv, 1, now);
        let flips = p.pass(&mut inv, now);
        assert_eq!(flips.len(), 1);
        assert!(flips[0].online);
        match inv.take_touched() {
            crate::inventory::Touched::Some(macs) => assert!(macs.contains(&camera)),
            crate::inventory::Touched::All => {}
        }
    }
}
