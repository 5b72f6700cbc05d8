//! The daemon's state and its one reconcile step, free of async and sockets so it
//! is tested with fake backends and explicit time.

mod dhcp;
mod discovery;
mod domains;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::alerts::{Alert, AlertKind};
use crate::config::{Config, MacAddr, SegmentId, ZoneId};
use crate::control::{DeviceView, Request, Response, StatusView, ZoneInfo};
use crate::discovery::dhcp::DhcpServer;
use crate::firewall::{self, error_chain, Applied, ApplyOutcome, ConntrackFlusher, NftBackend};
use crate::inventory::{Change, Event, Inventory, UnixTime};
use crate::policy::{
    desired_membership, desired_ruleset, device_entry, zone_for, DeviceEntry, Membership, ZoneMembers,
};
use crate::store::{Store, StoreError, WEB_PASSWORD_HASH};

/// A device seen (lease, neighbour, packet) within this long counts as online.
/// The neighbour table re-confirms reachable devices every few minutes.
pub const ONLINE_SECS: UnixTime = 10 * 60;

/// How often alerts are looked at for deletion by age.
const ALERT_PRUNE_EVERY_SECS: UnixTime = 3600;

/// The longest password hash accepted (an argon2id PHC string is ~100 bytes).
const MAX_PASSWORD_HASH: usize = 512;

/// A fresh one-time setup token: 128 bits from the OS, as eight groups of four
/// lower-case hex digits (`3f9a-0c1b-…`), easy to read off a console and type.
/// None (logged) if the OS has no randomness to give.
fn new_setup_token() -> Option<String> {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    if let Err(e) = rand_core::OsRng.try_fill_bytes(&mut bytes) {
        tracing::error!(error = %e, "no randomness for the web UI setup token; restart to try again");
        return None;
    }
    let hex: Vec<String> = bytes.chunks(2).map(|c| format!("{:02x}{:02x}", c[0], c[1])).collect();
    Some(hex.join("-"))
}

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
    /// Most devices discovery tracks ([`discovery::MAX_TRACKED_DEVICES`]).
    pub(super) max_tracked: usize,
    /// Cut connections without waiting (set while discovery reconciles: a lease
    /// or neighbour change must not stall the event loop on `conntrack`).
    pub(super) background_cuts: bool,
    /// How many events changed facts (a generation number for cheap "anything
    /// new?" checks).
    pub(super) facts_changed: u64,
    /// Alerts raised or acknowledged since start (the web UI's live updates
    /// watch it).
    pub(super) alerts_raised: u64,
    /// An apply failed and its alert was raised; cleared by the next success,
    /// so a run of failures makes one alert.
    pub(super) apply_failing: bool,
    /// New devices whose "new device" alert waits for their first address (a
    /// DHCP request brings the device's evidence before its lease, and only the
    /// address says which segment, and so which zone, it joined).
    pub(super) unannounced: BTreeSet<MacAddr>,
    /// When old alerts were last deleted.
    pub(super) alerts_pruned_at: Option<UnixTime>,
    /// The web UI's password hash (argon2id PHC string, opaque here), if set.
    pub(super) password_hash: Option<String>,
    /// While no password is set: the one-time token that lets the first visitor
    /// of the web UI set one (printed at start, `bulkhead setup-token`).
    pub(super) setup_token: Option<String>,
    /// The wall clock, for what happens outside any timed event (a firewall
    /// apply at start or on reload); tests replace it.
    pub(super) wall_clock: fn() -> UnixTime,
    /// mDNS counters, as last reported by the browser.
    pub mdns_counters: Option<crate::discovery::mdns::MdnsCounters>,
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
        let dhcp = DhcpServer::new(crate::policy::dhcp_segments(&config), store.load_leases()?);
        let password_hash = store.setting(WEB_PASSWORD_HASH)?;
        let setup_token = if password_hash.is_none() {
            new_setup_token()
        } else {
            None
        };
        Ok(DaemonState {
            apply_failing: false,
            unannounced: BTreeSet::new(),
            alerts_pruned_at: None,
            password_hash,
            setup_token,
            wall_clock: crate::inventory::unix_now,
            dhcp,
            pool_alerted: BTreeMap::new(),
            observed: BTreeMap::new(),
            capture_malformed: 0,
            untracked_new_devices: 0,
            max_tracked: discovery::MAX_TRACKED_DEVICES,
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
                self.apply_succeeded();
                let replaced = *outcome == ApplyOutcome::FullReplace;
                if let Some(old) = old {
                    // A structural change (a zone lost the internet or a reach) can
                    // forbid connections of devices that did not move: cut them all.
                    let everyone = old.ruleset != ruleset;
                    let rerouted = self.addresses_of(
                        old.membership
                            .tunnel_devices
                            .symmetric_difference(&membership.tunnel_devices)
                            .chain(
                                old.membership
                                    .tunnel_exclude
                                    .symmetric_difference(&membership.tunnel_exclude),
                            ),
                    );
                    self.cut_connections(&old.membership, &membership, everyone, &rerouted);
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
                self.apply_failed(&msg);
                self.last_error = Some(msg);
            }
        }
        result
    }

    /// A device that changed zone must not keep connections its new zone forbids:
    /// delete the conntrack entries of every address whose zone or block changed
    /// (a device moved, or an address moved to another device) or left the sets,
    /// so the next packet is judged by the new rules. Connections the new zone
    /// allows are picked up again mid-stream by conntrack. `everyone`: after a
    /// structural change, every address in the sets. `rerouted`: addresses of
    /// devices whose tunnel set changed (their flows were address-translated for
    /// the old way out and would die there, or leave by the old way).
    fn cut_connections(&mut self, old: &Membership, new: &Membership, everyone: bool, rerouted: &[IpAddr]) {
        fn addrs(m: &ZoneMembers) -> impl Iterator<Item = IpAddr> + '_ {
            m.v4.iter()
                .map(|a| IpAddr::V4(*a))
                .chain(m.v6.iter().map(|a| IpAddr::V6(*a)))
        }
        let verdicts = |m: &Membership| -> BTreeMap<IpAddr, (ZoneId, bool)> {
            let blocked: BTreeSet<IpAddr> = addrs(&m.blocked).collect();
            m.zones
                .iter()
                .flat_map(|(z, mem)| addrs(mem).map(move |a| (a, z.clone())))
                .map(|(a, z)| (a, (z, blocked.contains(&a))))
                .collect()
        };
        let (before, after) = (verdicts(old), verdicts(new));
        let addrs: Vec<IpAddr> = before
            .iter()
            .filter(|(a, v)| everyone || after.get(a) != Some(v))
            .map(|(a, _)| *a)
            .chain(rerouted.iter().copied())
            .collect::<BTreeSet<IpAddr>>()
            .into_iter()
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

    /// The addresses the inventory knows for these MACs.
    fn addresses_of<'a>(&self, macs: impl Iterator<Item = &'a MacAddr>) -> Vec<IpAddr> {
        macs.filter_map(|m| self.inventory.get(m))
            .flat_map(|d| d.addresses.iter().copied())
            .collect()
    }

    /// A firewall apply failed for good (after any fallback): one alert for a
    /// run of failures.
    pub(super) fn apply_failed(&mut self, error: &str) {
        if self.apply_failing {
            return;
        }
        self.apply_failing = true;
        let at = (self.wall_clock)();
        self.raise(Alert {
            id: 0,
            at,
            kind: AlertKind::ApplyFailed,
            mac: None,
            message: format!(
                "The firewall refused a change; the rules in force before it stay in force. \
                 Bulkhead retries with the next change. Error: {error}"
            ),
            acknowledged: false,
        });
    }

    /// A firewall apply went through: the next failure alerts again.
    fn apply_succeeded(&mut self) {
        self.apply_failing = false;
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
                let now = (self.wall_clock)();
                for lease in self.dhcp.reconfigure(crate::policy::dhcp_segments(&self.config)) {
                    self.lease_event(crate::discovery::dhcp::LeaseEvent::Expired(lease), now);
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
                    Event::SetZone { .. }
                        | Event::Rename { .. }
                        | Event::ManualAdd { .. }
                        | Event::Block { .. }
                        | Event::TunnelChoice { .. }
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
            Request::Rename { mac, name } => self.rename(mac, name.as_deref(), now),
            Request::Block { mac, blocked } => {
                let done = if blocked {
                    format!("{mac} is blocked: the router forwards nothing from or to it and answers it nothing")
                } else {
                    format!("{mac} is unblocked")
                };
                self.change(&Event::Block { mac, blocked }, now, done)
            }
            Request::DeviceTunnel { mac, route } => self.device_tunnel(mac, route, now),
            Request::Zones => Response::Zones {
                zones: self.zone_infos(),
            },
            Request::AckAlerts { ids } => match self.store.acknowledge_alerts(ids.as_deref()) {
                Ok(n) => {
                    if n > 0 {
                        self.alerts_raised += 1;
                    }
                    // The web backend reads the leading number: keep it first.
                    Response::Done {
                        message: format!("{n} alert(s) acknowledged"),
                    }
                }
                Err(e) => Response::Error {
                    message: error_chain(&e),
                },
            },
            Request::Auth => Response::Auth {
                password_hash: self.password_hash.clone(),
                setup_token: self.setup_token.clone(),
            },
            Request::SetPasswordHash { hash } => self.set_password_hash(hash),
            Request::ResetPassword => self.reset_password(),
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

    /// The homeowner names a device (`None` or blank forgets the name).
    fn rename(&mut self, mac: MacAddr, name: Option<&str>, now: UnixTime) -> Response {
        let name = match crate::control::check_device_name(name) {
            Ok(n) => n,
            Err(message) => return Response::Error { message },
        };
        if !self.knows(&mac) {
            return Response::Error {
                message: format!("no device {mac}"),
            };
        }
        let done = match &name {
            Some(n) => format!("{mac} is now called {n}"),
            None => format!("{mac} has no name of yours any more"),
        };
        self.change(&Event::Rename { mac, name }, now, done)
    }

    /// The homeowner's tunnel choice for one device: an element move between the
    /// tunnel's device sets, never a structural change.
    fn device_tunnel(&mut self, mac: MacAddr, route: Option<bool>, now: UnixTime) -> Response {
        let configured = self.config.tunnel.is_some();
        if route == Some(true) && !configured {
            return Response::Error {
                message: format!(
                    "no tunnel is configured, so {mac} cannot go through one (add [tunnel] to bulkhead.toml, \
                     e.g. with `bulkhead vpn import FILE`)"
                ),
            };
        }
        let done = match route {
            Some(true) => format!("{mac} now goes through the tunnel"),
            Some(false) => format!("{mac} never goes through the tunnel"),
            None => format!("{mac} goes through the tunnel as the policy says"),
        };
        let note = if configured || route.is_none() {
            ""
        } else {
            " (kept for when a tunnel is configured)"
        };
        self.change(&Event::TunnelChoice { mac, route }, now, format!("{done}{note}"))
    }

    /// Every zone of the policy (in its order), with its members as enforced.
    pub fn zone_infos(&self) -> Vec<ZoneInfo> {
        let p = &self.config.policy;
        let service_name = |s: &crate::config::RouterService| match serde_json::to_value(s) {
            Ok(serde_json::Value::String(name)) => name,
            _ => format!("{s:?}"),
        };
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
                members: self
                    .applied
                    .as_ref()
                    .and_then(|a| a.membership.zones.get(&z.id))
                    .map(|m| m.macs.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Stores the web UI's new password hash (durably) and spends the setup
    /// token. The hash is opaque here; it is checked only for being a PHC
    /// string of sane size.
    fn set_password_hash(&mut self, hash: String) -> Response {
        let phc_like =
            hash.starts_with('$') && hash.len() <= MAX_PASSWORD_HASH && hash.bytes().all(|b| b.is_ascii_graphic());
        if !phc_like {
            return Response::Error {
                message: "not a password hash (expected an argon2id PHC string)".into(),
            };
        }
        if let Err(e) = self.store.set_setting(WEB_PASSWORD_HASH, Some(&hash)) {
            return Response::Error {
                message: format!("not saved: {}", error_chain(&e)),
            };
        }
        self.password_hash = Some(hash);
        self.setup_token = None;
        tracing::info!("web UI password set");
        Response::Done {
            message: "web UI password set".into(),
        }
    }

    /// `bulkhead reset-password`: forgets the hash and makes a new setup token.
    fn reset_password(&mut self) -> Response {
        if let Err(e) = self.store.set_setting(WEB_PASSWORD_HASH, None) {
            return Response::Error {
                message: format!("not saved: {}", error_chain(&e)),
            };
        }
        self.password_hash = None;
        self.setup_token = new_setup_token();
        tracing::info!("web UI password forgotten; a new setup token was made");
        Response::Done {
            message: "web UI password forgotten: set a new one in the web UI with the setup token".into(),
        }
    }

    /// The one-time setup token, while no web UI password is set.
    pub fn setup_token(&self) -> Option<&str> {
        self.setup_token.as_deref()
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
            if let Err(e) = self.apply_event(
                &Event::Rename {
                    mac: new_mac,
                    name: Some(name),
                },
                now,
            ) {
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
            self.apply_succeeded();
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
        self.apply_succeeded();
        let rerouted: Vec<IpAddr> = before
            .iter()
            .filter(|b| after.iter().any(|a| a.mac == b.mac && a.tunnel != b.tunnel))
            .flat_map(|b| b.addresses.iter().copied())
            .collect();
        self.cut_connections(&old, &new, false, &rerouted);
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

    /// Every device as the CLI shows it.
    pub fn device_views(&self, now: UnixTime) -> Vec<DeviceView> {
        // One classification per device for both the zone and the class.
        let assessor = crate::policy::Assessor::new(&self.config);
        self.inventory
            .devices()
            .map(|d| {
                let (decision, class) = assessor.assess(d);
                let tunnel_routed = crate::policy::tunnel_routed(&self.config, d, &decision.zone);
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
                    vendor: crate::discovery::oui::lookup(&d.mac).map(str::to_string),
                    randomized: crate::discovery::oui::is_randomized(&d.mac),
                    class,
                    evidence: d.evidence.clone(),
                    blocked: d.blocked,
                    tunnel_choice: d.tunnel_choice,
                    tunnel_routed,
                }
            })
            .collect()
    }

    /// Periodic work: batched store writes, expired domain-set addresses, alerts
    /// older than [`crate::store::ALERT_MAX_AGE_SECS`] (looked for hourly).
    pub fn handle_timeout(&mut self, now: UnixTime) {
        self.expire_domains(now);
        if self
            .alerts_pruned_at
            .is_none_or(|at| now - at >= ALERT_PRUNE_EVERY_SECS)
        {
            self.alerts_pruned_at = Some(now);
            match self.store.prune_alerts(now) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(alerts = n, "deleted old alerts");
                    self.alerts_raised += 1;
                }
                Err(e) => tracing::warn!(error = %error_chain(&e), "could not delete old alerts"),
            }
        }
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
        refuse_deltas: Arc<AtomicBool>,
    }

    impl Harness {
        fn new(config: Config) -> Harness {
            Harness::with_store(config, Store::in_memory(0).expect("store"))
        }
        fn with_store(config: Config, store: Store) -> Harness {
            let cut = FakeConntrack::default();
            let nft = ListingNft::default();
            let refuse_full = nft.refuse_full.clone();
            let refuse_deltas = nft.refuse_deltas.clone();
            let mut state = DaemonState::new(config, store, Box::new(nft), Box::new(cut.clone())).expect("state");
            state.wall_clock = || 1_000_000;
            Harness {
                state,
                cut,
                refuse_full,
                refuse_deltas,
            }
        }
        fn full_membership(&self) -> Membership {
            desired_membership(&self.state.config, &self.state.inventory)
        }
    }

    /// FakeNft whose listing follows the last full document; can be told to
    /// refuse full documents as nft would refuse a bad one, and set deltas as the
    /// kernel would refuse one for an element that is not there.
    #[derive(Default)]
    struct ListingNft {
        inner: FakeNft,
        refuse_full: Arc<AtomicBool>,
        refuse_deltas: Arc<AtomicBool>,
    }

    impl NftBackend for ListingNft {
        fn apply(&self, doc: &nftables::schema::Nftables<'_>) -> Result<(), nftables::helper::NftablesError> {
            let json = serde_json::to_string(doc).expect("json");
            if !json.contains("\"table\":{") && self.refuse_deltas.load(Ordering::SeqCst) {
                return Err(nftables::helper::NftablesError::NftFailed {
                    program: "netlink".into(),
                    hint: "applying a set delta: the kernel refused the batch".into(),
                    stdout: String::new(),
                    stderr: "ENOENT".into(),
                });
            }
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
        use crate::discovery::neigh::NeighbourUpdate;
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

    /// A harness with mac(1) (trusted, 10.0.1.10) and mac(2) (iot, 10.0.2.20),
    /// applied.
    fn home(config: Config) -> Harness {
        let mut h = Harness::new(config);
        h.state.reconcile().expect("start");
        for (m, ip, z) in [(1, "10.0.1.10", "trusted"), (2, "10.0.2.20", "iot")] {
            let add = Request::AddDevice {
                mac: mac(m),
                ip: Some(ip.parse().expect("ip")),
            };
            assert!(matches!(h.state.handle(add, 1), Response::Done { .. }));
            let set = Request::SetZone {
                mac: mac(m),
                zone: zone(z),
            };
            assert!(matches!(h.state.handle(set, 1), Response::Done { .. }));
        }
        h.cut.0.lock().expect("lock").clear();
        h
    }

    fn done(r: Response) -> String {
        match r {
            Response::Done { message } => message,
            other => panic!("expected done, got {other:?}"),
        }
    }

    fn refused(r: Response) -> String {
        match r {
            Response::Error { message } => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn view(h: &Harness, m: MacAddr) -> DeviceView {
        h.state
            .device_views(2)
            .into_iter()
            .find(|d| d.mac == m)
            .expect("device view")
    }

    fn applied(h: &Harness) -> &Membership {
        &h.state.applied.as_ref().expect("applied").membership
    }

    fn stored(h: &Harness, m: MacAddr) -> crate::inventory::Device {
        h.state
            .store
            .load_devices()
            .expect("load")
            .into_iter()
            .find(|d| d.mac == m)
            .expect("stored")
    }

    #[test]
    fn rename_checks_the_name_persists_it_and_touches_no_rule() {
        let mut h = home(default_config());
        let deltas = h.state.delta_applies;
        let msg = refused(h.state.handle(
            Request::Rename {
                mac: mac(9),
                name: Some("x".into()),
            },
            2,
        ));
        assert!(msg.contains("no device"), "{msg}");
        let r = h.state.handle(
            Request::Rename {
                mac: mac(1),
                name: Some("  Küche <TV>  ".into()),
            },
            2,
        );
        assert!(done(r).contains("Küche <TV>"));
        assert_eq!(view(&h, mac(1)).name.as_deref(), Some("Küche <TV>"), "trimmed");
        assert_eq!(stored(&h, mac(1)).name.as_deref(), Some("Küche <TV>"));
        for bad in ["a\nb", "a\u{202e}b", &"x".repeat(crate::control::MAX_DEVICE_NAME + 1)] {
            refused(h.state.handle(
                Request::Rename {
                    mac: mac(1),
                    name: Some(bad.to_string()),
                },
                3,
            ));
        }
        assert_eq!(
            view(&h, mac(1)).name.as_deref(),
            Some("Küche <TV>"),
            "refusals change nothing"
        );
        done(h.state.handle(
            Request::Rename {
                mac: mac(1),
                name: Some("   ".into()),
            },
            4,
        ));
        assert_eq!(view(&h, mac(1)).name, None, "blank forgets");
        assert_eq!(stored(&h, mac(1)).name, None);
        assert_eq!(h.state.delta_applies, deltas, "a name is not enforced");
    }

    #[test]
    fn block_is_a_delta_cuts_the_devices_connections_and_unblock_restores_the_zone() {
        let mut h = home(default_config());
        let before = applied(&h).clone();
        let msg = done(h.state.handle(
            Request::Block {
                mac: mac(2),
                blocked: true,
            },
            2,
        ));
        assert!(msg.contains("blocked"), "{msg}");
        assert_eq!(h.state.full_applies, 1, "no structural change");
        let m = applied(&h);
        assert_eq!(m, &h.full_membership(), "incremental == full");
        assert_eq!(m.zones, before.zones, "still in its zone");
        assert_eq!(m.blocked.macs, [mac(2)].into());
        assert_eq!(m.blocked.v4, ["10.0.2.20".parse().expect("v4")].into());
        assert_eq!(
            *h.cut.0.lock().expect("lock"),
            vec!["10.0.2.20".parse::<IpAddr>().expect("ip")],
            "only the blocked device's connections are cut"
        );
        assert!(view(&h, mac(2)).blocked && !view(&h, mac(1)).blocked);
        assert!(stored(&h, mac(2)).blocked, "persisted");
        // Blocking again changes nothing.
        let deltas = h.state.delta_applies;
        done(h.state.handle(
            Request::Block {
                mac: mac(2),
                blocked: true,
            },
            3,
        ));
        assert_eq!(h.state.delta_applies, deltas);
        done(h.state.handle(
            Request::Block {
                mac: mac(2),
                blocked: false,
            },
            4,
        ));
        assert_eq!(applied(&h), &before, "back to its zone's access, nothing else");
        assert!(!view(&h, mac(2)).blocked && !stored(&h, mac(2)).blocked);
        assert_eq!(h.state.full_applies, 1);
        // A decision about a MAC not seen yet is kept for when it shows up.
        done(h.state.handle(
            Request::Block {
                mac: mac(7),
                blocked: true,
            },
            5,
        ));
        assert!(applied(&h).blocked.macs.contains(&mac(7)));
    }

    #[test]
    fn a_tunnel_choice_needs_a_tunnel_to_go_through() {
        let mut h = home(default_config());
        let msg = refused(h.state.handle(
            Request::DeviceTunnel {
                mac: mac(1),
                route: Some(true),
            },
            2,
        ));
        assert!(msg.contains("no tunnel is configured"), "{msg}");
        let msg = done(h.state.handle(
            Request::DeviceTunnel {
                mac: mac(1),
                route: Some(false),
            },
            2,
        ));
        assert!(msg.contains("kept for when a tunnel is configured"), "{msg}");
        let v = view(&h, mac(1));
        assert_eq!((v.tunnel_choice, v.tunnel_routed), (Some(false), false));
    }

    #[test]
    fn tunnel_choices_are_set_moves_that_cut_only_that_device() {
        let mut h = home(crate::testutil::tunnel_config());
        assert!(view(&h, mac(2)).tunnel_routed, "iot is a tunnel zone");
        assert!(!view(&h, mac(1)).tunnel_routed);
        let full = h.state.full_applies;
        done(h.state.handle(
            Request::DeviceTunnel {
                mac: mac(1),
                route: Some(true),
            },
            2,
        ));
        assert_eq!(h.state.full_applies, full, "a delta, not a table replace");
        let m = applied(&h);
        assert_eq!(m, &h.full_membership());
        assert!(m.tunnel_devices.contains(&mac(1)) && !m.tunnel_exclude.contains(&mac(1)));
        assert_eq!(
            *h.cut.0.lock().expect("lock"),
            vec!["10.0.1.10".parse::<IpAddr>().expect("ip")],
            "the rerouted device's connections only"
        );
        let v = view(&h, mac(1));
        assert_eq!((v.tunnel_choice, v.tunnel_routed), (Some(true), true));
        assert_eq!(stored(&h, mac(1)).tunnel_choice, Some(true));

        done(h.state.handle(
            Request::DeviceTunnel {
                mac: mac(2),
                route: Some(false),
            },
            3,
        ));
        assert!(applied(&h).tunnel_exclude.contains(&mac(2)));
        let v = view(&h, mac(2));
        assert_eq!(
            (v.tunnel_choice, v.tunnel_routed),
            (Some(false), false),
            "never beats the zone"
        );

        for m in [mac(1), mac(2)] {
            done(h.state.handle(Request::DeviceTunnel { mac: m, route: None }, 4));
        }
        let m = applied(&h);
        assert!(!m.tunnel_devices.contains(&mac(1)) && !m.tunnel_exclude.contains(&mac(2)));
        assert_eq!(m.tunnel_devices, [mac(9)].into(), "the policy's own device stays");
        assert!(view(&h, mac(2)).tunnel_routed && !view(&h, mac(1)).tunnel_routed);
        assert_eq!(h.state.full_applies, full);
    }

    #[test]
    fn zones_list_the_policy_with_members_as_enforced() {
        let h = home(crate::testutil::tunnel_config());
        let Response::Zones { zones } = ({
            let mut h = h;
            h.state.handle(Request::Zones, 2)
        }) else {
            panic!("zones")
        };
        let ids: Vec<&str> = zones.iter().map(|z| z.id.as_str()).collect();
        assert_eq!(ids, ["guest", "iot", "quarantine", "trusted"]);
        let by_id = |id: &str| zones.iter().find(|z| z.id.as_str() == id).expect("zone");
        assert_eq!(by_id("iot").members, [mac(2)]);
        assert_eq!(by_id("trusted").members, [mac(1)]);
        assert!(by_id("iot").tunnel && !by_id("trusted").tunnel);
        assert!(by_id("quarantine").is_unknown_zone && !by_id("quarantine").internet);
        assert!(by_id("trusted").internet && by_id("trusted").router_services.iter().any(|s| s == "dns"));
        assert!(!by_id("iot").description.is_empty());
    }

    #[test]
    fn acknowledging_answers_the_count_first() {
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        for n in 0..3 {
            h.state.observe(
                Event::Address {
                    mac: mac(60 + n),
                    ip: format!("10.0.1.{}", 60 + n).parse().expect("ip"),
                },
                10,
            );
        }
        let alerts = h.state.store.alerts(10).expect("alerts");
        assert_eq!(alerts.len(), 3);
        let generation = h.state.alerts_raised;
        let msg = done(h.state.handle(
            Request::AckAlerts {
                ids: Some(vec![alerts[0].id]),
            },
            11,
        ));
        assert_eq!(msg, "1 alert(s) acknowledged");
        assert!(h.state.alerts_raised > generation, "live update");
        let msg = done(h.state.handle(Request::AckAlerts { ids: None }, 12));
        assert_eq!(msg, "2 alert(s) acknowledged");
        let msg = done(h.state.handle(Request::AckAlerts { ids: None }, 13));
        assert_eq!(msg, "0 alert(s) acknowledged");
        let Response::Alerts { alerts } = h.state.handle(Request::Alerts { limit: 10 }, 14) else {
            panic!("alerts")
        };
        assert!(alerts.iter().all(|a| a.acknowledged));
    }

    #[test]
    fn old_alerts_leave_with_the_hourly_prune() {
        let mut h = Harness::new(default_config());
        let day = 24 * 3600;
        h.state.raise(Alert {
            id: 0,
            at: 0,
            kind: AlertKind::TunnelUp,
            mac: None,
            message: "old".into(),
            acknowledged: false,
        });
        h.state.handle_timeout(30 * day);
        assert_eq!(h.state.store.alerts(10).expect("a").len(), 1, "30 days are kept");
        h.state.handle_timeout(30 * day + 10);
        assert_eq!(h.state.store.alerts(10).expect("a").len(), 1, "looked at hourly");
        h.state.handle_timeout(30 * day + 3600);
        assert!(h.state.store.alerts(10).expect("a").is_empty());
    }

    fn apply_failed_alerts(h: &Harness) -> usize {
        h.state
            .store
            .alerts(100)
            .expect("alerts")
            .iter()
            .filter(|a| a.kind == AlertKind::ApplyFailed)
            .count()
    }

    #[test]
    fn a_failing_firewall_raises_one_alert_until_it_works_again() {
        let mut h = home(default_config());
        h.refuse_deltas.store(true, Ordering::SeqCst);
        h.refuse_full.store(true, Ordering::SeqCst);
        let msg = refused(h.state.handle(
            Request::SetZone {
                mac: mac(1),
                zone: zone("guest"),
            },
            2,
        ));
        assert!(msg.contains("firewall refused"), "{msg}");
        assert_eq!(apply_failed_alerts(&h), 1);
        let alert = &h.state.store.alerts(1).expect("alerts")[0];
        assert!(
            alert.message.contains("Could not process rule"),
            "error chain: {}",
            alert.message
        );
        assert_eq!(alert.at, 1_000_000, "the wall clock");
        // More failures (a delta path and a full one): no more alerts.
        refused(h.state.handle(
            Request::Block {
                mac: mac(2),
                blocked: true,
            },
            3,
        ));
        assert!(h.state.reconcile().is_err());
        assert_eq!(apply_failed_alerts(&h), 1, "not repeated while failing");
        // It works again (the full replace the failures left owed), and the next
        // failure alerts again. A refused delta that a full replace repairs is
        // no failure.
        h.refuse_full.store(false, Ordering::SeqCst);
        assert_eq!(h.state.reconcile().expect("works"), ApplyOutcome::FullReplace);
        done(h.state.handle(
            Request::SetZone {
                mac: mac(2),
                zone: zone("guest"),
            },
            4,
        ));
        assert_eq!(apply_failed_alerts(&h), 1);
        h.refuse_full.store(true, Ordering::SeqCst);
        refused(h.state.handle(
            Request::SetZone {
                mac: mac(2),
                zone: zone("iot"),
            },
            5,
        ));
        assert_eq!(apply_failed_alerts(&h), 2, "re-armed by the success");
    }

    #[test]
    fn a_refused_delta_that_a_table_replace_repairs_is_no_failure() {
        let mut h = home(default_config());
        h.refuse_deltas.store(true, Ordering::SeqCst);
        let full = h.state.full_applies;
        done(h.state.handle(
            Request::Block {
                mac: mac(1),
                blocked: true,
            },
            2,
        ));
        assert_eq!(h.state.full_applies, full + 1, "the delta fell back to a replace");
        assert_eq!(applied(&h), &h.full_membership());
        assert_eq!(apply_failed_alerts(&h), 0, "the kernel holds what was meant");
        assert!(h.state.last_error.is_none());
    }

    fn is_token(t: &str) -> bool {
        let groups: Vec<&str> = t.split('-').collect();
        groups.len() == 8
            && groups
                .iter()
                .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

    #[test]
    fn the_setup_token_lives_until_a_password_is_set_and_returns_with_a_reset() {
        let dir = std::env::temp_dir().join(format!("bulkhead-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
        let Response::Auth {
            password_hash: None,
            setup_token: Some(token),
        } = h.state.handle(Request::Auth, 1)
        else {
            panic!("a new router has a token and no password")
        };
        assert!(is_token(&token), "{token}");
        let other = Harness::new(default_config());
        assert_ne!(other.state.setup_token(), Some(token.as_str()), "random");

        for bad in ["", "hunter2 hunter2", "plain", &format!("${}", "a".repeat(600))] {
            refused(h.state.handle(Request::SetPasswordHash { hash: bad.into() }, 2));
        }
        assert_eq!(h.state.setup_token(), Some(token.as_str()), "a refusal spends nothing");
        done(h.state.handle(Request::SetPasswordHash { hash: HASH.into() }, 2));
        assert_eq!(
            h.state.handle(Request::Auth, 3),
            Response::Auth {
                password_hash: Some(HASH.into()),
                setup_token: None
            }
        );
        drop(h);

        // A restart keeps the password, and makes no token.
        let mut h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
        assert_eq!(h.state.setup_token(), None);
        assert_eq!(h.state.password_hash.as_deref(), Some(HASH));

        done(h.state.handle(Request::ResetPassword, 4));
        let Response::Auth {
            password_hash: None,
            setup_token: Some(fresh),
        } = h.state.handle(Request::Auth, 5)
        else {
            panic!("a reset makes a token")
        };
        assert!(is_token(&fresh) && fresh != token);
        drop(h);
        let h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
        assert_eq!(h.state.password_hash, None, "the reset is on disk");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_device_gets_one_alert_once_its_address_says_where_it_joined() {
        let config = config_with(MAIN, &[("seg.toml", "[segment_zones]\niot = \"iot\"\n")]);
        let mut h = Harness::new(config);
        h.state.reconcile().expect("start");
        let m = mac(70);
        // The DHCP request's evidence comes first: no segment yet, no alert yet.
        h.state.observe(
            Event::Evidence {
                mac: m,
                evidence: evidence("plug", &[1, 3]),
            },
            1,
        );
        assert!(h.state.store.alerts(10).expect("a").is_empty());
        h.state.observe(
            Event::Address {
                mac: m,
                ip: "10.0.2.70".parse().expect("ip"),
            },
            2,
        );
        h.state.observe(
            Event::Address {
                mac: m,
                ip: "10.0.2.71".parse().expect("ip"),
            },
            3,
        );
        let alerts = h.state.store.alerts(10).expect("a");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::NewDevice);
        assert_eq!(alerts[0].mac, Some(m));
        assert!(
            alerts[0].message.contains("zone iot (its segment's zone)"),
            "{}",
            alerts[0].message
        );

        // On a segment without a zone of its own: quarantined, one alert.
        let q = mac(71);
        h.state.observe(
            Event::Address {
                mac: q,
                ip: "10.0.1.71".parse().expect("ip"),
            },
            4,
        );
        let kinds: Vec<AlertKind> = h.state.store.alerts(10).expect("a").iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::NewDeviceQuarantined, AlertKind::NewDevice]);
    }

    /// Timing harness for the devices list (the web bench's inventory: 1,000
    /// locally administered MACs, one IPv6 address each, three in four named, no
    /// evidence). Run: `cargo test --release -p bulkhead --lib -- --ignored --nocapture device_views_timing`.
    #[test]
    #[ignore = "timing, not a check"]
    fn device_views_timing() {
        let mut h = Harness::new(default_config());
        h.state.reconcile().expect("start");
        for i in 0..1000usize {
            let mac = MacAddr([0x02, 0xbe, 0, 0, (i >> 8) as u8, i as u8]);
            let ip = format!("fd00:1::be:{i:x}").parse().ok();
            h.state.handle(Request::AddDevice { mac, ip }, 1);
            if i % 4 != 0 {
                let name = format!("device {i} in the {} room", ["living", "kitchen", "attic"][i % 3]);
                h.state.handle(Request::Rename { mac, name: Some(name) }, 1);
            }
        }
        let rounds = 200;
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..rounds {
            n += std::hint::black_box(h.state.device_views(2)).len();
        }
        let views = t.elapsed() / rounds;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            let v = h.state.device_views(2);
            n += std::hint::black_box(v.iter().map(crate::runtime::web_backend::summary).collect::<Vec<_>>()).len();
        }
        let both = t.elapsed() / rounds;
        eprintln!("device_views: {views:?}, with summaries: {both:?} ({n} rows)");
    }
}

#[cfg(test)]
mod netns_test;
