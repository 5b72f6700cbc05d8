//! The discovery path of [`DaemonState`]: what DHCP, mDNS and the neighbour table
//! report becomes inventory events, enforced for just the device concerned, with
//! alerts for the homeowner (new device held in quarantine, device classified) and
//! identity suggestions for randomised MACs.

use std::collections::{BTreeMap, BTreeSet};

use crate::alerts::{Alert, AlertFacts, AlertKind, IdentitySuggestion};
use crate::config::MacAddr;
use crate::discovery::neigh::NeighbourUpdate;
use crate::firewall::error_chain;
use crate::inventory::identity::same_device_reasons;
use crate::inventory::{Change, Device, Event, UnixTime};
use crate::policy::{device_entry, zone_for, DeviceEntry, ZoneDecision, ZoneReason};
use crate::store::{Store, StoreError};

use super::DaemonState;

/// Most devices discovery adds to the inventory.
pub const MAX_TRACKED_DEVICES: usize = 8192;

/// How long a new device whose zone may still change is held before its
/// alert: long enough for its first mDNS or SSDP announcement (sent right
/// after its lease) to classify it, so one alert says "joined and was placed
/// in iot" instead of "held in quarantine" and then "recognised".
pub const JOIN_HOLD_SECS: UnixTime = 15;

/// What discovery remembers between events.
pub(super) struct DiscoveryBook {
    /// Identity suggestions already made (new MAC, known MAC), so each is made once.
    suggested: BTreeSet<(MacAddr, MacAddr)>,
    /// New devices whose "new device" alert waits for their first address (a
    /// DHCP request brings the device's evidence before its lease, and only the
    /// address says which segment, and so which zone, it joined).
    unannounced: BTreeSet<MacAddr>,
    /// Unannounced devices that have an address, with when they got it: a
    /// device whose zone may still change (held in quarantine, or in its
    /// segment's zone) is announced once it is classified or after
    /// [`JOIN_HOLD_SECS`], so joining and being recognised is one alert.
    holding: BTreeMap<MacAddr, UnixTime>,
    /// New devices not tracked because the inventory was full.
    untracked_new_devices: u64,
    /// Most devices discovery tracks ([`MAX_TRACKED_DEVICES`]; tests lower it).
    pub(super) max_tracked: usize,
}

impl DiscoveryBook {
    /// The suggestions made before (from the store).
    pub(super) fn load(store: &Store) -> Result<Self, StoreError> {
        Ok(DiscoveryBook {
            suggested: store
                .suggestions()?
                .into_iter()
                .map(|s| (s.new_mac, s.known_mac))
                .collect(),
            unannounced: BTreeSet::new(),
            holding: BTreeMap::new(),
            untracked_new_devices: 0,
            max_tracked: MAX_TRACKED_DEVICES,
        })
    }

    /// Whether the suggestion "`new_mac` is `known_mac`" was made.
    pub(super) fn was_suggested(&self, new_mac: MacAddr, known_mac: MacAddr) -> bool {
        self.suggested.contains(&(new_mac, known_mac))
    }

    /// New devices left untracked since start.
    pub(super) fn untracked_new_devices(&self) -> u64 {
        self.untracked_new_devices
    }
}

impl DaemonState {
    /// A discovery source reports something: persist it, enforce just this
    /// device (and any that lost an address to it), alert. Never fails outward (a
    /// packet cannot be answered with an error); failures are logged and kept as
    /// the status's last error.
    pub fn observe(&mut self, event: Event, now: UnixTime) -> Change {
        let mac = event.mac();
        // A flood of invented MACs (DHCP starvation, a scanner) must not grow the
        // inventory and the sets without bound. Refusing to track more is fail
        // closed: a MAC in no set is treated as the unknown zone by the kernel.
        if self.inventory.get(&mac).is_none() && self.inventory.len() >= self.discovery.max_tracked {
            self.discovery.untracked_new_devices += 1;
            if self.discovery.untracked_new_devices == 1 {
                tracing::warn!(
                    limit = self.discovery.max_tracked,
                    "device limit reached; new devices stay untracked (quarantined by default)"
                );
            }
            return Change::None;
        }
        // Most events only say "seen again": the devices they touch are copied
        // before and classified only if facts changed (classification is the
        // costly part, and a returning client sends three events per exchange).
        let affected = self.affected_by(&event);
        let touched: Vec<Device> = affected.iter().filter_map(|m| self.inventory.get(m)).cloned().collect();
        // A write the store refuses is kept for later; the device is
        // enforced as found either way.
        let change = self.apply_event(&event, now);
        if change != Change::Facts {
            return change;
        }
        let before_decision = touched.iter().find(|d| d.mac == mac).map(|d| zone_for(&self.config, d));
        let before: Vec<DeviceEntry> = touched.iter().map(|d| device_entry(&self.config, d)).collect();
        let after = self.entries(&affected);
        self.enforcer.set_background_cuts(true);
        let result = self.reconcile_entries(&before, &after);
        self.enforcer.set_background_cuts(false);
        if let Err(e) = result {
            tracing::error!(error = %error_chain(&e), %mac, "could not enforce a discovered device");
        }
        if before_decision.is_none() {
            self.discovery.unannounced.insert(mac);
        }
        let decision = self.inventory.get(&mac).map(|d| zone_for(&self.config, d));
        if let Some(decision) = &decision {
            self.remember_placement(mac, decision);
        }
        if let (Some(device), Some(decision)) = (self.inventory.get(&mac), decision) {
            if self.discovery.unannounced.contains(&mac) {
                // One alert per new device, once its first address says where
                // it joined (and so which zone its segment gives it) and its
                // zone is settled: placed by a rule, a pin or the homeowner
                // at once; held, or in its segment's zone, once a rule places
                // it or the hold is over (the timer's pass) — a weak match
                // early on often firms up with the next announcement.
                if !device.addresses.is_empty() {
                    let joined = *self.discovery.holding.entry(mac).or_insert(now);
                    let settled = !matches!(decision.reason, ZoneReason::Unknown | ZoneReason::SegmentDefault);
                    if settled || now - joined >= JOIN_HOLD_SECS {
                        self.announce(mac, joined);
                    }
                }
            } else if before_decision.as_ref() != Some(&decision) {
                if let Some(alert) = placement_alert(mac, &decision, &self.config, device, now) {
                    self.raise(alert);
                }
            }
        }
        self.suggest_identity(mac, now);
        change
    }

    /// A neighbour-table update seen on `interface`. Only addresses inside that
    /// interface's segment count. A sighting never takes an address from another
    /// device (a DHCP lease does): answering ARP or NDP for someone else's address
    /// must not move that address into the answerer's zone. IPv6 entries that go
    /// away take the address with them (privacy addresses rotate); IPv4 ones do
    /// not (the lease says how long the address is the device's).
    pub fn neighbour(&mut self, interface: &str, update: NeighbourUpdate, now: UnixTime) -> Change {
        let in_segment = |ip: &std::net::IpAddr| {
            self.config
                .segment_for_ip(*ip)
                .is_some_and(|s| s.interface == interface)
        };
        match update {
            NeighbourUpdate::Present { mac, ip, .. } if in_segment(&ip) => match self.address_owner(&ip) {
                Some(owner) if owner != mac => {
                    tracing::debug!(%mac, %ip, %owner, "neighbour answers for another device's address; ignored");
                    Change::None
                }
                _ => self.observe(Event::Address { mac, ip }, now),
            },
            NeighbourUpdate::Gone { ip, .. } if ip.is_ipv6() && in_segment(&ip) => match self.address_owner(&ip) {
                Some(owner) => self.observe(Event::AddressGone { mac: owner, ip }, now),
                None => Change::None,
            },
            _ => Change::None,
        }
    }

    /// What an mDNS response said, as evidence for the device that sent it
    /// (the frame's source MAC, bound to its port by the bridge): never for
    /// a device it names by address or name. False when no device has that
    /// MAC (yet): the caller may try again once one has.
    pub fn mdns(&mut self, sender: MacAddr, evidence: &crate::classify::Evidence, now: UnixTime) -> bool {
        if self.inventory.get(&sender).is_none() {
            return false;
        }
        self.attach_evidence(sender, evidence, now)
    }

    /// What a device said over SSDP/UPnP, as evidence for the device
    /// holding the address it came from on that segment; false when no
    /// device holds it (yet).
    pub fn ssdp_seen(&mut self, observation: &crate::discovery::ssdp::SsdpObservation, now: UnixTime) -> bool {
        let ip = observation.address;
        let on_segment = self
            .config
            .segment_for_ip(ip)
            .is_some_and(|s| s.interface == observation.interface);
        let Some(mac) = on_segment.then(|| self.address_owner(&ip)).flatten() else {
            return false;
        };
        self.attach_evidence(mac, &observation.evidence, now)
    }

    /// Raises the one alert of a new device that joined at `joined`, as its
    /// zone is now.
    fn announce(&mut self, mac: MacAddr, joined: UnixTime) {
        self.discovery.unannounced.remove(&mac);
        self.discovery.holding.remove(&mac);
        let Some(device) = self.inventory.get(&mac) else { return };
        let decision = zone_for(&self.config, device);
        let class = crate::policy::classification(&self.config, device);
        self.raise(new_device_alert(mac, &decision, class.as_ref(), joined));
    }

    /// The timer's pass: new devices held past [`JOIN_HOLD_SECS`] are
    /// announced as they are (held in quarantine, in their segment's zone).
    pub(super) fn announce_held_joins(&mut self, now: UnixTime) {
        let due: Vec<(MacAddr, UnixTime)> = self
            .discovery
            .holding
            .iter()
            .filter(|(_, joined)| now - **joined >= JOIN_HOLD_SECS)
            .map(|(m, j)| (*m, *j))
            .collect();
        for (mac, joined) in due {
            self.announce(mac, joined);
        }
    }

    /// A rule placed `mac` (`decision`, in a zone other than its fallback): remembered,
    /// and stored, so that evidence that later places it nowhere does not
    /// send it back to quarantine (`Device::placed_zone`).
    fn remember_placement(&mut self, mac: MacAddr, decision: &crate::policy::ZoneDecision) {
        if decision.reason != ZoneReason::Classified || !self.inventory.set_placed_zone(&mac, &decision.zone) {
            return;
        }
        if let Some(device) = self.inventory.get(&mac) {
            if let Err(e) = self.store.save_discovered(device) {
                tracing::error!(error = %error_chain(&e), %mac, "could not store where a rule placed a device");
            }
        }
    }

    /// What a device announced about itself becomes its evidence; true.
    fn attach_evidence(&mut self, mac: MacAddr, evidence: &crate::classify::Evidence, now: UnixTime) -> bool {
        self.observe(
            Event::Evidence {
                mac,
                evidence: Box::new(evidence.clone()),
            },
            now,
        );
        true
    }

    /// The device holding an address.
    pub fn address_owner(&self, ip: &std::net::IpAddr) -> Option<MacAddr> {
        self.inventory.owner_of(ip)
    }

    /// If `mac` is a new randomised MAC that looks like a known device, records
    /// the suggestion (once per pair) for the homeowner. Never changes zones.
    fn suggest_identity(&mut self, mac: MacAddr, now: UnixTime) {
        let Some(new) = self.inventory.get(&mac) else { return };
        if new.user_zone.is_some() || !mac.is_locally_administered() {
            return;
        }
        // Only devices of the same DHCP host name can be the same device.
        let Some(hostname) = new.evidence.hostname.as_deref() else {
            return;
        };
        let found: Vec<(MacAddr, Vec<String>)> = self
            .inventory
            .with_hostname(hostname)
            .filter(|known| !self.discovery.suggested.contains(&(mac, known.mac)))
            .filter_map(|known| same_device_reasons(new, known).map(|r| (known.mac, r)))
            .collect();
        for (known_mac, reasons) in found {
            let suggestion = IdentitySuggestion {
                new_mac: mac,
                known_mac,
                at: now,
                reasons: reasons.clone(),
                accepted: false,
            };
            if let Err(e) = self.store.save_suggestion(&suggestion) {
                tracing::error!(error = %error_chain(&e), "could not store an identity suggestion");
                continue;
            }
            self.discovery.suggested.insert((mac, known_mac));
            self.raise(Alert::about(
                now,
                AlertKind::IdentitySuggestion,
                mac,
                AlertFacts {
                    other: Some(known_mac),
                    reasons,
                    ..AlertFacts::default()
                },
            ));
        }
    }
}

/// The one alert for a new device: held in quarantine, or placed (by a rule,
/// its segment, a policy pin, the homeowner).
fn new_device_alert(
    mac: MacAddr,
    decision: &ZoneDecision,
    class: Option<&crate::classify::ClassMatch>,
    at: UnixTime,
) -> Alert {
    let kind = match decision.reason {
        ZoneReason::Unknown => AlertKind::NewDeviceQuarantined,
        _ => AlertKind::NewDevice,
    };
    let facts = AlertFacts {
        zone: Some(decision.zone.to_string()),
        placed_by: Some(decision.reason.as_str().to_string()),
        class: class.map(|c| c.class.as_str().to_string()),
        rule: class.map(|c| c.rule.clone()),
        suggested_zone: (decision.reason == ZoneReason::Unknown)
            .then(|| class.and_then(|c| c.zone.as_ref()).map(ToString::to_string))
            .flatten(),
        ..AlertFacts::default()
    };
    Alert::about(at, kind, mac, facts)
}

/// The alert for a known device whose placement changed, if it deserves one.
fn placement_alert(
    mac: MacAddr,
    after: &ZoneDecision,
    config: &crate::config::Config,
    device: &crate::inventory::Device,
    now: UnixTime,
) -> Option<Alert> {
    if after.reason != ZoneReason::Classified {
        return None;
    }
    let class = crate::policy::classification(config, device);
    Some(Alert::about(
        now,
        AlertKind::DeviceClassified,
        mac,
        AlertFacts {
            zone: Some(after.zone.to_string()),
            placed_by: Some(after.reason.as_str().to_string()),
            class: class.as_ref().map(|c| c.class.as_str().to_string()),
            rule: class.map(|c| c.rule),
            ..AlertFacts::default()
        },
    ))
}
