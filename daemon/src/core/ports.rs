//! Port binding in the core: which bridge port each known device is on, as
//! the bridges' forwarding tables say (the runtime feeds their changes), so
//! that the bridge table drops frames carrying a device's MAC from any other
//! port (`policy::Membership::port_bindings`).
//!
//! The binding follows the kernel: a MAC is bound to the port the bridge
//! learned it on. The guard runs before the bridge learns, so while a MAC is
//! bound, frames with it from elsewhere never move it; the binding ends only
//! when the bridge forgets the MAC on its port: the entry aged out (the
//! device was silent for the bridge's ageing time, 300 s by default), or the
//! port went down or left the bridge (the kernel flushes its entries). The
//! next port the MAC shows up on binds it, and if that is not where the
//! device was, the homeowner is told (a device that took a silent device's
//! MAC is seen then, not only the one that forged it while it was there).
//!
//! - Wi-Fi: a phone moves between the radios of one access point (band
//!   steering: two Wi-Fi ports of one bridge) while its entry on the old one
//!   lives on, and hostapd's frame that moves the entry would be dropped: a
//!   MAC learned on a Wi-Fi port is bound to all the Wi-Fi ports of that
//!   bridge. A station's frames carry the MAC it associated with, so taking
//!   another's means associating as it; a Wi-Fi device still cannot pose as
//!   a wired one, nor a wired one as it.
//! - A MAC may be on several bridges at once (a trunked access point or NAS
//!   on two VLANs): the book keeps one port per bridge, and the device is
//!   bound to all of them.
//! - Only devices Bulkhead knows are bound (a flood of invented MACs adds
//!   nothing to the sets); the book remembers where the bridges learned
//!   other MACs too, bounded, so a device met later is bound at once, and a
//!   known device is never left out because invented ones filled it.

use std::collections::{BTreeMap, HashMap};

use crate::alerts::{Alert, AlertKind};
use crate::config::{MacAddr, PortName, SegmentKind};
use crate::firewall::error_chain;
use crate::policy::device_entry;

use super::DaemonState;

/// Most MACs the book remembers (the inventory's bound, as large).
pub const MAX_LEARNED: usize = super::discovery::MAX_TRACKED_DEVICES;

/// Where the bridges learned each MAC, on the ports Bulkhead polices.
#[derive(Debug, Default)]
pub(super) struct PortBook {
    /// By MAC, by bridge (link index): the port.
    learned: HashMap<MacAddr, BTreeMap<u32, PortName>>,
    /// Where a known device was when a bridge forgot it, by bridge.
    left: HashMap<MacAddr, BTreeMap<u32, PortName>>,
    /// Learned MACs not remembered because the book was full.
    overflow: u64,
}

impl PortBook {
    /// MACs not remembered because the book was full, since start.
    pub(super) fn overflow(&self) -> u64 {
        self.overflow
    }
}

impl DaemonState {
    /// The bridge with link index `bridge` learned `mac` on `port`
    /// (`learned`), or forgot it there. Ports Bulkhead does not police are
    /// ignored.
    pub fn bridge_port(&mut self, bridge: u32, port: &str, mac: MacAddr, learned: bool) {
        let Some(port) = PortName::new(port).filter(|p| self.polices_port(p.as_str())) else {
            return;
        };
        let known = self.inventory.get(&mac).is_some();
        if learned {
            if !self.ports.learned.contains_key(&mac) && !self.room_in_book(known) {
                self.ports.overflow += 1;
                return;
            }
            self.ports.learned.entry(mac).or_default().insert(bridge, port);
            let was = self.ports.left.get_mut(&mac).and_then(|l| l.remove(&bridge));
            if let Some(was) = was.filter(|w| known && !self.port_group(bridge, port).contains(w)) {
                self.moved(mac, was, port);
            }
            self.rebind(mac);
        } else if self.ports.learned.get(&mac).and_then(|b| b.get(&bridge)) == Some(&port) {
            // (Forgotten on another port than the one learned last: stale
            // news, the move was told already.)
            if let Some(bridges) = self.ports.learned.get_mut(&mac) {
                bridges.remove(&bridge);
                if bridges.is_empty() {
                    self.ports.learned.remove(&mac);
                }
            }
            if known && self.ports.left.len() < MAX_LEARNED {
                self.ports.left.entry(mac).or_default().insert(bridge, port);
            }
            self.rebind(mac);
        }
    }

    /// The bridges' whole forwarding tables, read again (at start, after
    /// notifications were lost, after links changed): what the book holds
    /// and the tables do not was forgotten meanwhile (a missed forget must
    /// not keep a device bound to a port it left), the rest is learned.
    pub fn bridge_ports_read(&mut self, learned: &[(u32, String, MacAddr)]) {
        let present: std::collections::HashSet<(MacAddr, u32)> = learned.iter().map(|(b, _, m)| (*m, *b)).collect();
        let gone: Vec<(MacAddr, u32, PortName)> = self
            .ports
            .learned
            .iter()
            .flat_map(|(m, bridges)| bridges.iter().map(|(b, p)| (*m, *b, *p)))
            .filter(|(m, b, _)| !present.contains(&(*m, *b)))
            .collect();
        for (mac, bridge, port) in gone {
            self.bridge_port(bridge, port.as_str(), mac, false);
        }
        for (bridge, port, mac) in learned {
            self.bridge_port(*bridge, port, *mac, true);
        }
    }

    /// The links changed (a radio came or went, a port stopped being
    /// policed): every bound device's ports again, from where it was learned.
    pub fn rebind_ports(&mut self) {
        let policed = |s: &Self, p: &PortName| s.polices_port(p.as_str());
        let stale: Vec<(MacAddr, u32)> = self
            .ports
            .learned
            .iter()
            .flat_map(|(m, bridges)| bridges.iter().map(|(b, p)| (*m, *b, *p)))
            .filter(|(_, _, p)| !policed(self, p))
            .map(|(m, b, _)| (m, b))
            .collect();
        for (mac, bridge) in stale {
            if let Some(bridges) = self.ports.learned.get_mut(&mac) {
                bridges.remove(&bridge);
            }
        }
        self.ports.learned.retain(|_, bridges| !bridges.is_empty());
        let macs: Vec<MacAddr> = self.inventory.devices().map(|d| d.mac).collect();
        for mac in macs {
            self.rebind(mac);
        }
    }

    /// A device without a port (just met) takes the ones the bridges learned
    /// its MAC on, so its first entry carries the binding.
    pub(super) fn port_for_new_device(&mut self, mac: MacAddr) {
        if self.inventory.get(&mac).is_some_and(|d| d.ports.is_empty()) {
            let ports = self.ports_of(mac);
            self.inventory.set_ports(&mac, ports);
        }
    }

    /// Whether the book may take one more MAC: it has room, or `known` (a
    /// device Bulkhead knows) and a MAC nobody knows can make room for it.
    fn room_in_book(&mut self, known: bool) -> bool {
        if self.ports.learned.len() < MAX_LEARNED {
            return true;
        }
        if !known {
            return false;
        }
        let unknown = self
            .ports
            .learned
            .keys()
            .find(|m| self.inventory.get(m).is_none())
            .copied();
        unknown.is_some_and(|m| self.ports.learned.remove(&m).is_some())
    }

    /// Every port `mac` may come from: on each bridge that learned it, the
    /// port (or that bridge's radios), sorted.
    fn ports_of(&self, mac: MacAddr) -> Vec<PortName> {
        let mut ports: Vec<PortName> = self
            .ports
            .learned
            .get(&mac)
            .into_iter()
            .flatten()
            .flat_map(|(bridge, port)| self.port_group(*bridge, *port))
            .collect();
        ports.sort();
        ports.dedup();
        ports
    }

    /// The ports a MAC learned on `port` of `bridge` may come from: that
    /// port, or all the policed Wi-Fi ports of that bridge if it is one.
    fn port_group(&self, bridge: u32, port: PortName) -> Vec<PortName> {
        let wireless = &self.links.wireless_ports;
        if !wireless.contains_key(port.as_str()) {
            return vec![port];
        }
        wireless
            .iter()
            .filter(|(_, b)| **b == bridge)
            .filter_map(|(p, _)| PortName::new(p))
            .filter(|p| self.polices_port(p.as_str()))
            .collect()
    }

    /// Binds `mac` to the ports the book has for it (none: unbinds it), if
    /// it is a known device, and enforces just that change.
    fn rebind(&mut self, mac: MacAddr) {
        let ports = self.ports_of(mac);
        let Some(device) = self.inventory.get(&mac) else { return };
        if device.ports == ports {
            return;
        }
        let before = [device_entry(&self.config, device)];
        self.inventory.set_ports(&mac, ports);
        let after = self.entries(&[mac]);
        if let Err(e) = self.reconcile_entries(&before, &after) {
            tracing::error!(error = %error_chain(&e), %mac, "could not bind a device to its bridge port");
        }
    }

    /// A known device's MAC showed up on another port than the one it was
    /// on when the bridge forgot it: moved, or taken while it was silent.
    fn moved(&mut self, mac: MacAddr, was: PortName, now_on: PortName) {
        let name = self
            .device_name(&mac)
            .map_or_else(|| mac.to_string(), |n| format!("{n} ({mac})"));
        let text = format!(
            "{name}'s MAC now comes from port {now_on}; the router last saw it on port {was}. If it was not moved \
             there, a device on {now_on} took its MAC while it was silent."
        );
        let now = (self.wall_clock)();
        self.raise(Alert::new(now, AlertKind::Spoofing, None, text));
    }

    /// Whether `port` is one the bridge table polices: a port of a bridge
    /// Bulkhead made, or of an existing bridge it serves.
    fn polices_port(&self, port: &str) -> bool {
        self.links.bridge_ports.contains(port)
            || self
                .config
                .segments
                .iter()
                .any(|s| matches!(&s.kind, SegmentKind::Bridge { ports } if ports.iter().any(|p| p == port)))
    }
}
