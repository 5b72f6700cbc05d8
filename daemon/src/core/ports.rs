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
//! next port the MAC shows up on binds it. Only devices Bulkhead knows are
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
            self.bind_port(mac, Some(port));
        } else if self.ports.learned.get(&mac) == Some(&port) {
            // Forgotten on another port than the last one learned: stale news
            // (it moved, and the move was already told).
            self.ports.learned.remove(&mac);
            self.bind_port(mac, None);
        }
    }

    /// A device without a port (just met) takes the one the bridge learned
    /// its MAC on, so its first entry carries the binding.
    pub(super) fn port_for_new_device(&mut self, mac: MacAddr) {
        let unbound = self.inventory.get(&mac).is_some_and(|d| d.port.is_none());
        if let Some(port) = self.ports.learned.get(&mac).copied().filter(|_| unbound) {
            self.inventory.set_port(&mac, Some(port));
        }
    }

    /// Binds `mac` to `port` (None: unbinds it), if it is a known device,
    /// and enforces just that change.
    fn bind_port(&mut self, mac: MacAddr, port: Option<PortName>) {
        let Some(device) = self.inventory.get(&mac) else { return };
        if device.port == port {
            return;
        }
        let before = [device_entry(&self.config, device)];
        self.inventory.set_port(&mac, port);
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
