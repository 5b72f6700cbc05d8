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
//! next port the MAC shows up on binds it. A phone moves between the radios
//! of one access point (band steering: two Wi-Fi ports of one bridge) while
//! its entry on the old one lives on, and hostapd's frame that moves the
//! entry would be dropped: so a MAC learned on a Wi-Fi port is bound to all
//! the Wi-Fi ports of that bridge. What a MAC forged over Wi-Fi can do is
//! bounded by the radio itself (a station's frames carry the MAC it
//! associated with; taking another's means associating as it, which the
//! victim notices), and a Wi-Fi device still cannot pose as a wired one nor
//! a wired one as it. Only devices Bulkhead knows are
//! bound (a flood of invented MACs adds nothing to the sets); the book
//! remembers where the bridge learned other MACs, bounded, so a device met
//! later is bound at once.

use std::collections::HashMap;

use crate::config::{MacAddr, PortName, SegmentKind};
use crate::firewall::error_chain;
use crate::policy::device_entry;

use super::DaemonState;

/// Most MACs the book remembers (the inventory's bound, as large).
pub const MAX_LEARNED: usize = super::discovery::MAX_TRACKED_DEVICES;

/// Where the bridges learned each MAC, on the ports Bulkhead polices.
#[derive(Debug, Default)]
pub(super) struct PortBook {
    learned: HashMap<MacAddr, PortName>,
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
    /// The bridge learned `mac` on `port` (`learned`), or forgot it there.
    /// Ports Bulkhead does not police are ignored.
    pub fn bridge_port(&mut self, port: &str, mac: MacAddr, learned: bool) {
        let Some(port) = PortName::new(port).filter(|p| self.polices_port(p.as_str())) else {
            return;
        };
        if learned {
            if self.ports.learned.len() >= MAX_LEARNED && !self.ports.learned.contains_key(&mac) {
                self.ports.overflow += 1;
                return;
            }
            self.ports.learned.insert(mac, port);
            let group = self.port_group(port);
            self.bind_ports(mac, group);
        } else if self.ports.learned.get(&mac) == Some(&port) {
            // Forgotten on another port than the last one learned: stale news
            // (it moved, and the move was already told).
            self.ports.learned.remove(&mac);
            self.bind_ports(mac, Vec::new());
        }
    }

    /// The bridges' whole forwarding tables, read again (at start, after
    /// notifications were lost, after links changed): what the book holds
    /// and the tables do not was forgotten meanwhile (a missed forget must
    /// not keep a device bound to a port it left), the rest is learned.
    pub fn bridge_ports_read(&mut self, learned: &[(String, MacAddr)]) {
        let present: std::collections::HashSet<MacAddr> = learned.iter().map(|(_, m)| *m).collect();
        let gone: Vec<(MacAddr, PortName)> = self
            .ports
            .learned
            .iter()
            .filter(|(m, _)| !present.contains(m))
            .map(|(m, p)| (*m, *p))
            .collect();
        for (mac, _) in gone {
            self.ports.learned.remove(&mac);
            self.bind_ports(mac, Vec::new());
        }
        for (port, mac) in learned {
            self.bridge_port(port, *mac, true);
        }
    }

    /// The links changed (a radio came or went): every bound device's ports
    /// again, from where it was learned.
    pub fn rebind_ports(&mut self) {
        let learned: Vec<(MacAddr, PortName)> = self.ports.learned.iter().map(|(m, p)| (*m, *p)).collect();
        for (mac, port) in learned {
            let group = if self.polices_port(port.as_str()) {
                self.port_group(port)
            } else {
                self.ports.learned.remove(&mac);
                Vec::new()
            };
            self.bind_ports(mac, group);
        }
    }

    /// A device without a port (just met) takes the one the bridge learned
    /// its MAC on, so its first entry carries the binding.
    pub(super) fn port_for_new_device(&mut self, mac: MacAddr) {
        let unbound = self.inventory.get(&mac).is_some_and(|d| d.ports.is_empty());
        if let Some(port) = self.ports.learned.get(&mac).copied().filter(|_| unbound) {
            let group = self.port_group(port);
            self.inventory.set_ports(&mac, group);
        }
    }

    /// The ports a MAC learned on `port` may come from: that port, or all
    /// the Wi-Fi ports of its bridge if it is one (sorted).
    fn port_group(&self, port: PortName) -> Vec<PortName> {
        let wireless = &self.links.wireless_ports;
        match wireless.get(port.as_str()) {
            Some(bridge) => wireless
                .iter()
                .filter(|(_, b)| *b == bridge)
                .filter_map(|(p, _)| PortName::new(p))
                .filter(|p| self.polices_port(p.as_str()))
                .collect(),
            None => vec![port],
        }
    }

    /// Binds `mac` to `ports` (empty: unbinds it), if it is a known device,
    /// and enforces just that change.
    fn bind_ports(&mut self, mac: MacAddr, ports: Vec<PortName>) {
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
