//! What the CLI and the web UI are shown: devices with their zone and why,
//! zones with their members as enforced, counters. Read-only.

use crate::config::{MacAddr, RouterService};
use crate::control::{DeviceView, StatusView, ZoneInfo};
use crate::discovery::oui;
use crate::inventory::naming::{best_name, NameParts};
use crate::inventory::UnixTime;
use crate::policy::{tunnel_routed, Assessor};

use super::DaemonState;

/// A device seen (lease, neighbour, packet) within this long counts as online.
/// The neighbour table re-confirms reachable devices every few minutes.
pub const ONLINE_SECS: UnixTime = 10 * 60;

impl DaemonState {
    /// What a device is called now ([`crate::inventory::naming`]); `None`
    /// when nothing names it (show its MAC) or it is not known.
    pub fn device_name(&self, mac: &MacAddr) -> Option<String> {
        let d = self.inventory.get(mac)?;
        let class = crate::policy::classification(&self.config, d);
        best_name(NameParts {
            homeowner: d
                .name
                .as_deref()
                .or_else(|| self.config.policy.devices.get(mac).and_then(|o| o.name.as_deref())),
            hostname: d.evidence.hostname.as_deref(),
            mdns_name: d
                .evidence
                .mdns_names
                .iter()
                .map(String::as_str)
                .find(|n| !n.trim().is_empty()),
            vendor: oui::lookup(mac),
            class: class.as_ref().map(|c| c.class.as_str()),
        })
    }

    /// Whether a known device announced this mDNS service type (`_x._tcp`).
    pub fn announces_service(&self, mac: &MacAddr, service: &str) -> bool {
        self.inventory
            .get(mac)
            .is_some_and(|d| d.evidence.mdns_services.contains(service))
    }

    /// Every device as the CLI shows it.
    pub fn device_views(&self, now: UnixTime) -> Vec<DeviceView> {
        // One classification per device for both the zone and the class.
        let assessor = Assessor::new(&self.config);
        self.inventory
            .devices()
            .map(|d| {
                let (decision, class) = assessor.assess(d);
                let tunnel_routed = tunnel_routed(&self.config, d, &decision.zone);
                DeviceView {
                    mac: d.mac,
                    name: d
                        .name
                        .clone()
                        .or_else(|| self.config.policy.devices.get(&d.mac).and_then(|o| o.name.clone())),
                    quarantined: decision.zone == self.config.policy.unknown_zone,
                    zone: decision.zone,
                    reason: decision.reason,
                    addresses: d.addresses.iter().copied().collect(),
                    first_seen: d.first_seen,
                    last_seen: d.last_seen,
                    online: now - d.last_seen < ONLINE_SECS,
                    vendor: oui::lookup(&d.mac).map(str::to_string),
                    randomized: oui::is_randomized(&d.mac),
                    class,
                    evidence: d.evidence.clone(),
                    blocked: d.blocked,
                    watched: d.watched,
                    tunnel_choice: d.tunnel_choice,
                    tunnel_routed,
                }
            })
            .collect()
    }

    /// Every zone of the policy (in its order), with its members as enforced.
    pub fn zone_infos(&self) -> Vec<ZoneInfo> {
        let p = &self.config.policy;
        let service_name = |s: &RouterService| match serde_json::to_value(s) {
            Ok(serde_json::Value::String(name)) => name,
            _ => format!("{s:?}"),
        };
        let applied = self.enforcer.applied();
        p.zones
            .values()
            .map(|z| ZoneInfo {
                id: z.id.clone(),
                description: z.description.clone(),
                internet: z.internet,
                reach_zones: z.reach_zones.iter().filter(|r| **r != z.id).cloned().collect(),
                router_services: z.router_services.iter().map(service_name).collect(),
                intra_zone: z.intra_zone || z.reach_zones.contains(&z.id),
                is_unknown_zone: z.id == p.unknown_zone,
                tunnel: self.config.tunnel.is_some() && p.tunnel.zones.contains(&z.id),
                members: applied
                    .and_then(|a| a.membership.zones.get(&z.id))
                    .map(|m| m.macs.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Devices per zone, from the applied sets (no classification work: this runs
    /// after every event).
    pub fn zone_counts(&self) -> Vec<(String, usize)> {
        let applied = self.enforcer.applied();
        self.config
            .policy
            .zones
            .keys()
            .map(|z| {
                let n = applied
                    .and_then(|a| a.membership.zones.get(z))
                    .map_or(0, |m| m.macs.len());
                (z.to_string(), n)
            })
            .collect()
    }

    /// The homeowner's per-device tunnel choices, as `mac (name)` lines:
    /// (through the tunnel, never through it).
    pub fn tunnel_choices(&self) -> (Vec<String>, Vec<String>) {
        let mut through = Vec::new();
        let mut never = Vec::new();
        for d in self.inventory.devices() {
            let label = match &d.name {
                Some(n) => format!("{} ({})", d.mac, n.escape_debug()),
                None => d.mac.to_string(),
            };
            match d.tunnel_choice {
                Some(true) => through.push(label),
                Some(false) => never.push(label),
                None => {}
            }
        }
        (through, never)
    }

    /// Number of devices known.
    pub fn device_count(&self) -> usize {
        self.inventory.len()
    }

    /// `bulkhead status`: counts and the last error. The DHCP server's and
    /// mDNS browser's counters are the runtime's (it drives them) and left for
    /// it to fill in.
    pub fn status(&self) -> StatusView {
        let enforced = self.enforcer.stats();
        StatusView {
            devices: self.inventory.len(),
            zones: self.config.policy.zones.keys().cloned().collect(),
            full_applies: enforced.full_applies,
            delta_applies: enforced.delta_applies,
            last_error: enforced.last_error.clone(),
            leases: 0,
            dhcp_malformed: self.dhcp.capture_malformed(),
            dhcp_spoofed: self.dhcp.spoofed(),
            dhcp_lease_changes_ignored: self.dhcp.lease_changes_ignored(),
            dhcp: Vec::new(),
            mdns: None,
            untracked_new_devices: self.discovery.untracked_new_devices(),
            port_bound_devices: self.inventory.devices().filter(|d| !d.ports.is_empty()).count(),
            port_book_overflow: self.ports.overflow(),
            share: None,
        }
    }
}
