//! The daemon's state and its one reconcile step, free of async and sockets so it
//! is tested with fake backends and explicit time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::{Config, MacAddr, SegmentId, ZoneId};
use crate::control::{DeviceView, Request, Response, StatusView};
use crate::dhcp::DhcpServer;
use crate::firewall::{self, error_chain, Applied, ApplyOutcome, ConntrackFlusher, NftBackend};
use crate::inventory::{Change, Event, Inventory, UnixTime};
use crate::policy::{desired_membership, desired_ruleset, device_entry, zone_for, DeviceEntry, Membership};
use crate::store::{Store, StoreError};

/// A device seen (lease, neighbour, packet) within this long counts as online.
/// The neighbour table re-confirms reachable devices every few minutes.
pub const ONLINE_SECS: UnixTime = 10 * 60;

/// Everything the daemon holds.
pub struct DaemonState {
    /// The config in force.
    pub config: Config,
    /// Ports of existing bridges, found by the net module.
    pub observed_bridge_ports: BTreeSet<String>,
    pub(super) store: Store,
    pub(super) inventory: Inventory,
    pub(super) applied: Option<Applied>,
    pub(super) nft: Box<dyn NftBackend + Send>,
    pub(super) conntrack: Box<dyn ConntrackFlusher + Send>,
    pub(super) full_applies: u64,
    pub(super) delta_applies: u64,
    pub(super) last_error: Option<String>,
    /// Identity suggestions already made (new MAC, known MAC), so each is made once.
    pub(super) suggested: BTreeSet<(MacAddr, MacAddr)>,
    /// Bulkhead's DHCP server (serving segments).
    pub(super) dhcp: DhcpServer,
    /// When each segment last raised "pool exhausted".
    pub(super) pool_alerted: BTreeMap<SegmentId, UnixTime>,
    /// Observer mode: bindings read from the other server's lease file last time.
    pub(super) observed: BTreeMap<IpAddr, MacAddr>,
    /// Malformed packets captured in observer mode.
    pub(super) capture_malformed: u64,
    /// New devices discovery did not track because the inventory was full.
    pub(super) untracked_new_devices: u64,
    /// Most devices discovery tracks ([`super::discovery::MAX_TRACKED_DEVICES`]).
    pub(super) max_tracked: usize,
    /// Cut connections without waiting (set while discovery reconciles: a lease
    /// or neighbour change must not stall the event loop on `conntrack`).
    pub(super) background_cuts: bool,
    /// How many events changed facts (a generation number for cheap "anything
    /// new?" checks).
    pub(super) facts_changed: u64,
    /// Alerts raised since start (the web UI's live updates watch it).
    pub(super) alerts_raised: u64,
    /// mDNS counters, as last reported by the browser.
    pub mdns_counters: Option<crate::mdns::MdnsCounters>,
    /// Addresses in the tunnel's domain sets, with when they expire.
    pub(super) domains: BTreeMap<(crate::config::DomainSetId, IpAddr), UnixTime>,
}

impl DaemonState {
    /// State from a config and an opened store (the inventory is loaded from it).
    pub fn new(
        config: Config,
        store: Store,
        nft: Box<dyn NftBackend + Send>,
        conntrack: Box<dyn ConntrackFlusher + Send>,
    ) -> Result<Self, StoreError> {
        let inventory = Inventory::from_devices(store.load_devices()?);
        let suggested = store
            .suggestions()?
            .into_iter()
            .map(|s| (s.new_mac, s.known_mac))
            .collect();
        let dhcp = DhcpServer::new(super::dhcp::dhcp_segments(&config), store.load_leases()?);
        Ok(DaemonState {
            dhcp,
            pool_alerted: BTreeMap::new(),
            observed: BTreeMap::new(),
            capture_malformed: 0,
            untracked_new_devices: 0,
            max_tracked: super::discovery::MAX_TRACKED_DEVICES,
            background_cuts: false,
            facts_changed: 0,
            alerts_raised: 0,
            mdns_counters: None,
            domains: BTreeMap::new(),
            config,
            observed_bridge_ports: BTreeSet::new(),
            store,
            inventory,
            applied: None,
            nft,
            conntrack,
            full_applies: 0,
            delta_applies: 0,
            last_error: None,
            suggested,
        })
    }

    /// Makes the kernel match config + inventory. On failure the kernel keeps its
    /// previous state (nft transactions are atomic) and `applied` is left as it was,
    /// so the next reconcile retries from the truth.
    pub fn reconcile(&mut self) -> Result<ApplyOutcome, firewall::FirewallError> {
        let ruleset = desired_ruleset(&self.config, &self.observed_bridge_ports);
        let membership = desired_membership(&self.config, &self.inventory);
        let result = firewall::reconcile(self.nft.as_ref(), self.applied.as_ref(), &ruleset, &membership);
        match &result {
            Ok(outcome) => {
                match outcome {
                    ApplyOutcome::FullReplace => self.full_applies += 1,
                    ApplyOutcome::Delta { .. } => self.delta_applies += 1,
                    ApplyOutcome::Unchanged => {}
                }
                let old = self.applied.take();
                self.last_error = None;
                let replaced = *outcome == ApplyOutcome::FullReplace;
                if let Some(old) = old {
                    // A structural change (a zone lost the internet or a reach) can
                    // forbid connections of devices that did not move: cut them all.
                    let everyone = old.ruleset != ruleset;
                    self.cut_connections(&old.membership, &membership, everyone);
                }
                self.applied = Some(Applied { ruleset, membership });
                if replaced {
                    // A full replace re-creates the domain sets empty.
                    self.reapply_domains();
                }
            }
            Err(e) => {
                let msg = error_chain(e);
                if matches!(e, firewall::FirewallError::Verify(_)) {
                    // The kernel took the document but does not hold what we meant:
                    // we no longer know what it holds, so the next reconcile must
                    // replace everything rather than patch with a delta.
                    self.applied = None;
                    tracing::error!(error = %msg, "firewall read-back differs; the next change replaces the tables");
                } else {
                    tracing::error!(error = %msg, "firewall apply failed; the previous rules stay in force");
                }
                self.last_error = Some(msg);
            }
        }
        result
    }

    /// A device that changed zone must not keep connections its new zone forbids:
    /// delete the conntrack entries of every address whose zone changed (a device
    /// moved, or an address moved to another device) or left the sets, so the next
    /// packet is judged by the new rules. Connections the new zone allows are
    /// picked up again mid-stream by conntrack. `everyone`: after a structural
    /// change, every address in the sets.
    fn cut_connections(&mut self, old: &Membership, new: &Membership, everyone: bool) {
        let zone_by_addr = |m: &Membership| -> BTreeMap<IpAddr, ZoneId> {
            m.zones
                .iter()
                .flat_map(|(z, mem)| {
                    mem.v4
                        .iter()
                        .map(|a| IpAddr::V4(*a))
                        .chain(mem.v6.iter().map(|a| IpAddr::V6(*a)))
                        .map(move |a| (a, z.clone()))
                })
                .collect()
        };
        let (before, after) = (zone_by_addr(old), zone_by_addr(new));
        let addrs: Vec<IpAddr> = before
            .iter()
            .filter(|(a, z)| everyone || after.get(a) != Some(z))
            .map(|(a, _)| *a)
            .collect();
        if addrs.is_empty() {
            return;
        }
        if self.background_cuts {
            self.conntrack.flush_detached(addrs);
            return;
        }
        match self.conntrack.flush(&addrs) {
            Ok(n) => tracing::info!(entries = n, addresses = addrs.len(), "cut connections of moved devices"),
            Err(e) => {
                let msg = format!("could not delete conntrack entries of moved devices: {e}");
                tracing::error!("{msg}");
                self.last_error = Some(msg);
            }
        }
    }

    /// Replaces the config (already validated) and reconciles. Settings that only
    /// take effect at start (store, control socket, web listeners) keep their
    /// running values, with a warning.
    pub fn replace_config(&mut self, mut config: Config) -> Result<ApplyOutcome, firewall::FirewallError> {
        let running = &self.config;
        if config.state_dir != running.state_dir
            || config.control_socket != running.control_socket
            || config.web != running.web
        {
            tracing::warn!(
                "state_dir, control_socket and web.listen change only on restart; keeping the running values"
            );
            config.state_dir = running.state_dir.clone();
            config.control_socket = running.control_socket.clone();
            config.web = running.web.clone();
        }
        let old = std::mem::replace(&mut self.config, config);
        match self.reconcile() {
            Ok(o) => {
                // Leases that no longer fit (a pool shrank, a segment stopped
                // serving) end now, and their addresses leave the sets.
                let now = super::unix_now();
                for lease in self.dhcp.reconfigure(super::dhcp::dhcp_segments(&self.config)) {
                    self.lease_event(crate::dhcp::LeaseEvent::Expired(lease), now);
                }
                Ok(o)
            }
            Err(e @ firewall::FirewallError::Nft { .. }) => {
                // nft refused the document: the kernel still holds the old rules;
                // keep the old config with them.
                self.config = old;
                Err(e)
            }
            // Applied but not verified: the kernel holds (most of) the new config.
            Err(e) => Err(e),
        }
    }

    /// Applies an inventory event, persisting what changed.
    pub fn apply_event(&mut self, event: &Event, now: UnixTime) -> Result<Change, StoreError> {
        let change = self.inventory.apply(event, now);
        let mac = event.mac();
        match change {
            Change::Facts => {
                self.facts_changed += 1;
                // The homeowner's decisions are forced to disk; what discovery
                // learns is written at once but not fsync'd (it is re-learned).
                let decision = matches!(
                    event,
                    Event::SetZone { .. } | Event::Rename { .. } | Event::ManualAdd { .. }
                );
                if let Some(d) = self.inventory.get(&mac) {
                    if decision {
                        self.store.save_device(d)?;
                    } else {
                        self.store.save_discovered(d)?;
                    }
                }
                // Another device may have lost an address to this one.
                if let Some(ip) = event.claimed_address() {
                    let losers: Vec<_> = self
                        .inventory
                        .devices()
                        .filter(|d| d.mac != mac && d.addresses.contains(&ip))
                        .cloned()
                        .collect();
                    for d in losers {
                        self.store.save_discovered(&d)?;
                    }
                }
            }
            Change::SeenOnly => self.store.note_seen(mac, now),
            Change::None => {}
        }
        Ok(change)
    }

    /// Handles one control request.
    pub fn handle(&mut self, req: Request, now: UnixTime) -> Response {
        match req {
            Request::DomainAdd {
                set,
                addresses,
                ttl_secs,
            } => self.add_domain_addresses(&set, &addresses, ttl_secs, now),
            Request::Tunnel => Response::Error {
                message: "the tunnel's state is kept by the daemon loop".into(),
            },
            // Issue 5 (web UI): implemented by the daemon-state and web work.
            Request::Rename { .. }
            | Request::Block { .. }
            | Request::DeviceTunnel { .. }
            | Request::Zones
            | Request::AckAlerts { .. }
            | Request::Auth
            | Request::SetPasswordHash { .. } => Response::Error {
                message: "not implemented yet".into(),
            },
            Request::Devices => Response::Devices {
                devices: self.device_views(now),
            },
            Request::Status => Response::Status(StatusView {
                devices: self.inventory.len(),
                zones: self.config.policy.zones.keys().cloned().collect(),
                full_applies: self.full_applies,
                delta_applies: self.delta_applies,
                last_error: self.last_error.clone(),
                leases: self.dhcp.leases().count(),
                dhcp_malformed: self
                    .dhcp
                    .segments()
                    .filter_map(|s| self.dhcp.counters(&s.id))
                    .map(|c| c.malformed)
                    .sum::<u64>()
                    + self.capture_malformed,
                dhcp: self
                    .dhcp
                    .segments()
                    .filter_map(|s| self.dhcp.counters(&s.id).map(|c| (s.id.clone(), *c)))
                    .collect(),
                mdns: self.mdns_counters,
                untracked_new_devices: self.untracked_new_devices,
            }),
            Request::SetZone { mac, zone } => {
                if !self.config.policy.zones.contains_key(&zone) {
                    let known: Vec<_> = self.config.policy.zones.keys().map(|z| z.to_string()).collect();
                    return Response::Error {
                        message: format!("unknown zone `{zone}` (zones: {})", known.join(", ")),
                    };
                }
                self.change(
                    &Event::SetZone {
                        mac,
                        zone: zone.clone(),
                    },
                    now,
                    format!("{mac} is now in zone {zone}"),
                )
            }
            Request::Approve { mac, zone } => self.approve(mac, zone, now),
            Request::Alerts { limit } => match self.store.alerts(limit.min(crate::store::MAX_ALERTS as usize)) {
                Ok(alerts) => Response::Alerts { alerts },
                Err(e) => Response::Error {
                    message: error_chain(&e),
                },
            },
            Request::Suggestions => match self.store.suggestions() {
                Ok(suggestions) => Response::Suggestions { suggestions },
                Err(e) => Response::Error {
                    message: error_chain(&e),
                },
            },
            Request::Link { new_mac, known_mac } => self.link(new_mac, known_mac, now),
            Request::AddDevice { mac, ip } => {
                if let Some(ip) = ip {
                    if self.config.segment_for_ip(ip).is_none() {
                        return Response::Error {
                            message: format!("{ip} is not in any segment's subnet"),
                        };
                    }
                }
                self.change(&Event::ManualAdd { mac, ip }, now, format!("{mac} added"))
            }
        }
    }

    /// `bulkhead device approve MAC [ZONE]`.
    fn approve(&mut self, mac: MacAddr, zone: Option<ZoneId>, now: UnixTime) -> Response {
        let p = &self.config.policy;
        let suggested = self
            .inventory
            .get(&mac)
            .map(|d| zone_for(&self.config, d))
            .filter(|d| d.reason == crate::policy::ZoneReason::Classified)
            .map(|d| d.zone);
        let Some(zone) = zone.or(suggested).or_else(|| p.approved_zone.clone()) else {
            return Response::Error {
                message: format!(
                    "say which zone: bulkhead device approve {mac} ZONE (no classification suggests one, and the policy sets no approved_zone)"
                ),
            };
        };
        self.handle(Request::SetZone { mac, zone }, now)
    }

    /// `bulkhead device link NEW KNOWN`: accept an identity suggestion.
    fn link(&mut self, new_mac: MacAddr, known_mac: MacAddr, now: UnixTime) -> Response {
        if !self.suggested.contains(&(new_mac, known_mac)) {
            return Response::Error {
                message: format!("there is no suggestion that {new_mac} is {known_mac} (see bulkhead suggestions)"),
            };
        }
        let Some(known) = self.inventory.get(&known_mac) else {
            return Response::Error {
                message: format!("{known_mac} is not a known device"),
            };
        };
        let zone = zone_for(&self.config, known).zone;
        let name = known.name.clone();
        if let Some(name) = name {
            if let Err(e) = self.apply_event(&Event::Rename { mac: new_mac, name }, now) {
                return Response::Error {
                    message: format!("not saved: {}", error_chain(&e)),
                };
            }
        }
        let suggestion = crate::alerts::IdentitySuggestion {
            new_mac,
            known_mac,
            at: now,
            reasons: Vec::new(),
            accepted: true,
        };
        if let Err(e) = self.store.save_suggestion(&suggestion) {
            return Response::Error {
                message: format!("not saved: {}", error_chain(&e)),
            };
        }
        self.handle(Request::SetZone { mac: new_mac, zone }, now)
    }

    pub(super) fn change(&mut self, event: &Event, now: UnixTime, done: String) -> Response {
        let affected = self.affected_by(event);
        let before = self.entries(&affected);
        if let Err(e) = self.apply_event(event, now) {
            return Response::Error {
                message: format!("not saved: {}", error_chain(&e)),
            };
        }
        let after = self.entries(&affected);
        match self.reconcile_entries(&before, &after) {
            Ok(_) => Response::Done { message: done },
            Err(e) => Response::Error {
                message: format!("saved, but the firewall refused it: {}", error_chain(&e)),
            },
        }
    }

    /// The devices whose set entries an event can change: its own, and for a new
    /// address, the device that held it until now.
    pub(super) fn affected_by(&self, event: &Event) -> Vec<MacAddr> {
        let mut macs = vec![event.mac()];
        if let Some(ip) = event.claimed_address() {
            macs.extend(
                self.inventory
                    .devices()
                    .filter(|d| d.addresses.contains(&ip))
                    .map(|d| d.mac),
            );
        }
        macs.sort();
        macs.dedup();
        macs
    }

    pub(super) fn entries(&self, macs: &[MacAddr]) -> Vec<DeviceEntry> {
        macs.iter()
            .filter_map(|m| self.inventory.get(m))
            .map(|d| device_entry(&self.config, d))
            .collect()
    }

    /// Reconciles a change to a few devices in time proportional to them, not to
    /// the inventory: their old entries out, their new ones in, as one set delta.
    /// Anything else (no applied state yet, a structure change) takes the general
    /// path.
    pub fn reconcile_entries(
        &mut self,
        before: &[DeviceEntry],
        after: &[DeviceEntry],
    ) -> Result<ApplyOutcome, firewall::FirewallError> {
        let ruleset = desired_ruleset(&self.config, &self.observed_bridge_ports);
        let Some(applied) = self.applied.as_mut().filter(|a| a.ruleset == ruleset) else {
            return self.reconcile();
        };
        let old = Membership::of_entries(&applied.membership, before);
        let new = Membership::of_entries(&applied.membership, after);
        let delta = firewall::diff_membership(&old, &new);
        if delta.is_empty() {
            return Ok(ApplyOutcome::Unchanged);
        }
        if let Err(e) = self.nft.apply_delta(&delta) {
            tracing::warn!(error = %error_chain(&e), "set delta refused; replacing the tables instead");
            self.applied = None;
            return self.reconcile();
        }
        for e in before {
            applied.membership.remove_entry(e);
        }
        for e in after {
            applied.membership.insert_entry(e);
        }
        self.delta_applies += 1;
        self.last_error = None;
        self.cut_connections(&old, &new, false);
        Ok(ApplyOutcome::Delta {
            added: delta.added(),
            removed: delta.removed(),
        })
    }

    /// Devices per zone, from the applied sets (no classification work: this runs
    /// after every event).
    pub fn zone_counts(&self) -> Vec<(String, usize)> {
        self.config
            .policy
            .zones
            .keys()
            .map(|z| {
                let n = self
                    .applied
                    .as_ref()
                    .and_then(|a| a.membership.zones.get(z))
                    .map_or(0, |m| m.macs.len());
                (z.to_string(), n)
            })
            .collect()
    }

    /// Generation of the inventory's facts: grows whenever an event changed them.
    pub fn facts_changed(&self) -> u64 {
        self.facts_changed
    }

    /// Number of devices known.
    pub fn device_count(&self) -> usize {
        self.inventory.len()
    }

    /// Every device as the CLI shows it.
    pub fn device_views(&self, now: UnixTime) -> Vec<DeviceView> {
        self.inventory
            .devices()
            .map(|d| {
                let decision = zone_for(&self.config, d);
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
                    vendor: crate::vendor::lookup(&d.mac).map(str::to_string),
                    randomized: crate::vendor::is_randomized(&d.mac),
                    class: crate::policy::classification(&self.config, d),
                    evidence: d.evidence.clone(),
                    // Issue 5: filled by the block / per-device tunnel work.
                    blocked: false,
                    tunnel_choice: None,
                    tunnel_routed: false,
                }
            })
            .collect()
    }

    /// Periodic work: batched store writes.
    pub fn handle_timeout(&mut self, now: UnixTime) {
        self.expire_domains(now);
        if let Err(e) = self.store.flush_if_due(now) {
            tracing::warn!(error = %error_chain(&e), "could not write last-seen times");
        }
    }

    /// Before exiting: write what is buffered. Rules stay in the kernel.
    pub fn shutdown(&mut self, now: UnixTime) {
        if let Err(e) = self.store.flush(now) {
            tracing::warn!(error = %error_chain(&e), "could not write last-seen times at shutdown");
        }
    }

    /// The device for a MAC, if known (tests, UI).
    pub fn knows(&self, mac: &MacAddr) -> bool {
        self.inventory.get(mac).is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::policy::desired_ruleset;
    use crate::testutil::{config_with, default_config, listing_of, FakeNft, MAIN};

    /// Records the addresses it was asked to cut.
    #[derive(Clone, Default)]
    struct FakeConntrack(Arc<Mutex<Vec<IpAddr>>>);

    impl ConntrackFlusher for FakeConntrack {
        fn flush(&self, addrs: &[IpAddr]) -> Result<usize, std::io::Error> {
            self.0.lock().expect("lock").extend_from_slice(addrs);
            Ok(addrs.len())
        }
    }

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn zone(z: &str) -> ZoneId {
        ZoneId::new(z).expect("zone")
    }

    /// A state whose fake nft "holds" whatever full document it was given last.
    struct Harness {
        state: DaemonState,
        cut: FakeConntrack,
        refuse_full: Arc<AtomicBool>,
    }

    impl Harness {
        fn new(config: Config) -> Harness {
            let cut = FakeConntrack::default();
            let nft = ListingNft::default();
            let refuse_full = nft.refuse_full.clone();
            let store = Store::in_memory(0).expect("store");
            let state = DaemonState::new(config, store, Box::new(nft), Box::new(cut.clone())).expect("state");
            Harness {
                state,
                cut,
                refuse_full,
            }
        }
        fn full_membership(&self) -> Membership {
            desired_membership(&self.state.config, &self.state.inventory)
        }
    }

    /// FakeNft whose listing follows the last full document; can be told to
    /// refuse full documents as nft would refuse a bad one.
    #[derive(Default)]
    struct ListingNft {
        inner: FakeNft,
        refuse_full: Arc<AtomicBool>,
    }

    impl NftBackend for ListingNft {
        fn apply(&self, doc: &nftables::schema::Nftables<'_>) -> Result<(), nftables::helper::NftablesError> {
            let json = serde_json::to_string(doc).expect("json");
            if json.contains("\"table\":{") {
                if self.refuse_full.load(Ordering::SeqCst) {
                    return Err(nftables::helper::NftablesError::NftFailed {
                        program: "nft".into(),
                        hint: "applying ruleset".into(),
                        stdout: String::new(),
                        stderr: "Error: Could not process rule".into(),
                    });
                }
                let owned: nftables::schema::Nftables<'static> = serde_json::from_str(&json).expect("reparse");
                *self.inner.listing.borrow_mut() = Some(listing_of(&owned));
            }
            self.inner.apply(doc)
        }
        fn list_table(
            &self,
            family: nftables::types::NfFamily,
        ) -> Result<nftables::schema::Nftables<'static>, nftables::helper::NftablesError> {
            self.inner.list_table(family)
        }
    }

    #[test]
    fn single_device_changes_take_the_incremental_path_and_match_a_full_recompute() {
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        let steps = [
            Request::AddDevice {
                mac: mac(1),
                ip: Some("10.0.1.10".parse().expect("ip")),
            },
            Request::AddDevice {
                mac: mac(1),
                ip: Some("fd00:1::10".parse().expect("ip")),
            },
            Request::SetZone {
                mac: mac(1),
                zone: zone("trusted"),
            },
            Request::AddDevice {
                mac: mac(2),
                ip: Some("10.0.2.20".parse().expect("ip")),
            },
            Request::SetZone {
                mac: mac(2),
                zone: zone("iot"),
            },
            // The address moves from device 2 to device 3.
            Request::AddDevice {
                mac: mac(3),
                ip: Some("10.0.2.20".parse().expect("ip")),
            },
            Request::SetZone {
                mac: mac(1),
                zone: zone("guest"),
            },
        ];
        for (i, req) in steps.into_iter().enumerate() {
            let resp = h.state.handle(req, i as i64);
            assert!(matches!(resp, Response::Done { .. }), "{resp:?}");
            let applied = h.state.applied.as_ref().expect("applied");
            assert_eq!(applied.membership, h.full_membership(), "step {i}: incremental != full");
        }
        assert_eq!(h.state.full_applies, 1, "only the start-up apply is a full replace");
        assert!(h.state.delta_applies >= 6);
        let cut = h.cut.0.lock().expect("lock").clone();
        // Device 1 moved (quarantine -> trusted -> guest): both its addresses cut;
        // 10.0.2.20 moved from device 2 (iot) to device 3 (quarantine): cut.
        assert!(cut.contains(&"10.0.1.10".parse().expect("ip")), "{cut:?}");
        assert!(cut.contains(&"fd00:1::10".parse().expect("ip")), "{cut:?}");
        assert!(cut.contains(&"10.0.2.20".parse().expect("ip")), "{cut:?}");
    }

    #[test]
    fn a_config_nft_refuses_leaves_the_old_one_in_force() {
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        let before = h.state.config.clone();
        h.refuse_full.store(true, Ordering::SeqCst);
        let new = config_with(MAIN, &[("seg.toml", "[segment_zones]\niot = \"iot\"\n")]);
        assert!(h.state.replace_config(new).is_err());
        assert_eq!(h.state.config, before);
        assert_eq!(
            h.state.applied.as_ref().expect("applied").ruleset,
            desired_ruleset(&before, &Default::default())
        );
    }

    fn evidence(host: &str, params: &[u8]) -> Box<crate::classify::Evidence> {
        Box::new(crate::classify::Evidence {
            hostname: Some(host.into()),
            dhcp_params: Some(params.to_vec()),
            ..Default::default()
        })
    }

    #[test]
    fn a_discovered_device_is_enforced_at_once_and_raises_one_alert() {
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        let m = mac(40);
        let ev = Event::Evidence {
            mac: m,
            evidence: evidence("<img src=x>\u{202e}", &[1, 3, 6]),
        };
        assert_eq!(h.state.observe(ev.clone(), 10), Change::Facts);
        let ip: IpAddr = "10.0.1.140".parse().expect("ip");
        assert_eq!(h.state.observe(Event::Address { mac: m, ip }, 11), Change::Facts);
        assert_eq!(
            h.state.observe(ev, 12),
            Change::SeenOnly,
            "repeat evidence is only a sighting"
        );
        let applied = h.state.applied.as_ref().expect("applied");
        assert_eq!(applied.membership, h.full_membership(), "incremental == full");
        let q = &applied.membership.zones[&zone("quarantine")];
        assert!(q.macs.contains(&m) && q.v4.contains(&"10.0.1.140".parse().expect("ip")));
        let alerts = h.state.store.alerts(10).expect("alerts");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, crate::alerts::AlertKind::NewDeviceQuarantined);
        assert_eq!(h.state.full_applies, 1);
        // The hostile hostname is stored as data.
        let d = h.state.inventory.get(&m).expect("device");
        assert_eq!(d.evidence.hostname.as_deref(), Some("<img src=x>\u{202e}"));
    }

    #[test]
    fn approve_uses_the_named_zone_or_the_policy_default_and_wins() {
        let mut config = default_config();
        config.policy.approved_zone = Some(zone("trusted"));
        let mut h = Harness::new(config);
        h.state.reconcile().expect("start");
        let (a, b) = (mac(41), mac(42));
        for m in [a, b] {
            h.state.observe(
                Event::Evidence {
                    mac: m,
                    evidence: evidence("x", &[1]),
                },
                1,
            );
        }
        let r = h.state.handle(Request::Approve { mac: a, zone: None }, 2);
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
        let r = h.state.handle(
            Request::Approve {
                mac: b,
                zone: Some(zone("iot")),
            },
            2,
        );
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
        let m = &h.state.applied.as_ref().expect("applied").membership;
        assert!(m.zones[&zone("trusted")].macs.contains(&a));
        assert!(m.zones[&zone("iot")].macs.contains(&b));
        h.state.config.policy.approved_zone = None;
        let r = h.state.handle(
            Request::Approve {
                mac: mac(43),
                zone: None,
            },
            3,
        );
        assert!(matches!(r, Response::Error { .. }), "no zone to approve into: {r:?}");
    }

    #[test]
    fn a_randomised_mac_like_a_known_device_is_only_suggested_until_linked() {
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        let known = MacAddr([0x3c, 0x22, 0xfb, 1, 2, 3]);
        let fresh = MacAddr([0x5a, 0, 0, 0, 0, 1]);
        h.state.observe(
            Event::Evidence {
                mac: known,
                evidence: evidence("annas-phone", &[1, 121, 3, 6]),
            },
            1,
        );
        assert!(matches!(
            h.state.handle(
                Request::SetZone {
                    mac: known,
                    zone: zone("trusted")
                },
                2
            ),
            Response::Done { .. }
        ));
        h.state.observe(
            Event::Evidence {
                mac: fresh,
                evidence: evidence("annas-phone", &[1, 121, 3, 6]),
            },
            3,
        );
        let m = &h.state.applied.as_ref().expect("applied").membership;
        assert!(
            m.zones[&zone("quarantine")].macs.contains(&fresh),
            "never widened silently"
        );
        let s = h.state.store.suggestions().expect("suggestions");
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].new_mac, s[0].known_mac, s[0].accepted), (fresh, known, false));
        // Seeing it again does not suggest twice.
        h.state.observe(
            Event::Address {
                mac: fresh,
                ip: "10.0.1.150".parse().expect("ip"),
            },
            4,
        );
        let kinds: Vec<_> = h
            .state
            .store
            .alerts(10)
            .expect("a")
            .into_iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == crate::alerts::AlertKind::IdentitySuggestion)
                .count(),
            1
        );
        let r = h.state.handle(
            Request::Link {
                new_mac: known,
                known_mac: fresh,
            },
            5,
        );
        assert!(matches!(r, Response::Error { .. }), "only suggested pairs link: {r:?}");
        let r = h.state.handle(
            Request::Link {
                new_mac: fresh,
                known_mac: known,
            },
            5,
        );
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
        let m = &h.state.applied.as_ref().expect("applied").membership;
        assert!(m.zones[&zone("trusted")].macs.contains(&fresh));
        assert!(h.state.store.suggestions().expect("s")[0].accepted);
    }

    #[test]
    fn neighbour_sightings_add_addresses_without_stealing_them() {
        use crate::neigh::NeighbourUpdate;
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        let (a, b) = (mac(50), mac(51));
        let v6: IpAddr = "fd00:1::1234".parse().expect("ip");
        let present = |mac, ip| NeighbourUpdate::Present { ifindex: 3, mac, ip };
        assert_eq!(h.state.neighbour("br-lan", present(a, v6), 1), Change::Facts);
        assert_eq!(
            h.state.neighbour("br-lan", present(b, v6), 2),
            Change::None,
            "no stealing"
        );
        let other: IpAddr = "fd00:2::9".parse().expect("ip");
        assert_eq!(
            h.state.neighbour("br-lan", present(b, other), 2),
            Change::None,
            "not this link's subnet"
        );
        let m = &h.state.applied.as_ref().expect("applied").membership;
        assert!(m.zones[&zone("quarantine")]
            .v6
            .contains(&"fd00:1::1234".parse().expect("v6")));
        let gone = NeighbourUpdate::Gone {
            ifindex: 3,
            mac: None,
            ip: v6,
        };
        assert_eq!(h.state.neighbour("br-lan", gone, 3), Change::Facts);
        let m = &h.state.applied.as_ref().expect("applied").membership;
        assert!(m.zones[&zone("quarantine")].v6.is_empty());
        assert_eq!(m, &h.full_membership());
    }

    #[test]
    fn discovery_stops_tracking_new_devices_at_the_limit_and_fails_closed() {
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        h.state.max_tracked = 3;
        for n in 0..5 {
            h.state.observe(
                Event::Evidence {
                    mac: mac(100 + n),
                    evidence: evidence("flood", &[1]),
                },
                1,
            );
        }
        assert_eq!(h.state.inventory.len(), 3);
        assert_eq!(h.state.untracked_new_devices, 2);
        // Known devices still update; the homeowner can still add by hand.
        assert_eq!(
            h.state.observe(
                Event::Address {
                    mac: mac(100),
                    ip: "10.0.1.160".parse().expect("ip")
                },
                2
            ),
            Change::Facts
        );
    }

    #[test]
    fn domain_sets_take_named_sets_only_expire_and_survive_full_replaces() {
        use crate::config::DomainSetId;
        let mut h = Harness::new(crate::testutil::tunnel_config());
        h.state.reconcile().expect("apply");
        let set = DomainSetId::new("streaming").expect("id");
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        let add = |set: &DomainSetId, ttl_secs| Request::DomainAdd {
            set: set.clone(),
            addresses: vec![ip],
            ttl_secs,
        };
        let other = DomainSetId::new("other").expect("id");
        assert!(matches!(h.state.handle(add(&other, 60), 100), Response::Error { .. }));
        assert!(matches!(h.state.handle(add(&set, 0), 100), Response::Error { .. }));
        assert!(matches!(h.state.handle(add(&set, 60), 100), Response::Done { .. }));
        assert_eq!(h.state.domains.get(&(set.clone(), ip)), Some(&160));
        // A longer TTL extends it; a shorter one does not shorten it.
        h.state.handle(add(&set, 100), 110);
        h.state.handle(add(&set, 5), 120);
        assert_eq!(h.state.domains.get(&(set.clone(), ip)), Some(&210));
        // A full replace empties the kernel's sets: the state puts them back.
        h.state.applied = None;
        assert_eq!(h.state.reconcile().expect("apply"), ApplyOutcome::FullReplace);
        assert_eq!(h.state.domains.len(), 1);
        h.state.handle_timeout(209);
        assert_eq!(h.state.domains.len(), 1);
        h.state.handle_timeout(210);
        assert!(h.state.domains.is_empty(), "expired");
        // The document names the set and the address, nothing else.
        let doc = crate::firewall::render::domain_elements_document(
            true,
            &[("dom_streaming_v4".to_string(), vec![ip.to_string()])]
                .into_iter()
                .collect(),
        );
        let json = serde_json::to_string(&doc).expect("json");
        assert!(
            json.contains("\"dom_streaming_v4\"") && json.contains("198.51.100.7"),
            "{json}"
        );
    }
}
