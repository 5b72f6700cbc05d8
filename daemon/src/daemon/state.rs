//! The daemon's state and its one reconcile step, free of async and sockets so it
//! is tested with fake backends and explicit time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::{Config, MacAddr, ZoneId};
use crate::control::{DeviceView, Request, Response, StatusView};
use crate::firewall::{self, error_chain, Applied, ApplyOutcome, ConntrackFlusher, NftBackend};
use crate::inventory::{Change, Event, Inventory, UnixTime};
use crate::policy::{desired_membership, desired_ruleset, zone_for, Membership};
use crate::store::{Store, StoreError};

/// Everything the daemon holds.
pub struct DaemonState {
    /// The config in force.
    pub config: Config,
    /// Ports of existing bridges, found by the net module.
    pub observed_bridge_ports: BTreeSet<String>,
    store: Store,
    inventory: Inventory,
    applied: Option<Applied>,
    nft: Box<dyn NftBackend + Send>,
    conntrack: Box<dyn ConntrackFlusher + Send>,
    full_applies: u64,
    delta_applies: u64,
    last_error: Option<String>,
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
        Ok(DaemonState {
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
                if let Some(old) = old {
                    // A structural change (a zone lost the internet or a reach) can
                    // forbid connections of devices that did not move: cut them all.
                    let everyone = old.ruleset != ruleset;
                    self.cut_connections(&old.membership, &membership, everyone);
                }
                self.applied = Some(Applied { ruleset, membership });
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
            Ok(o) => Ok(o),
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
        let mac = match event {
            Event::ManualAdd { mac, .. }
            | Event::SetZone { mac, .. }
            | Event::Rename { mac, .. }
            | Event::Seen { mac } => *mac,
        };
        match change {
            Change::Facts => {
                if let Some(d) = self.inventory.get(&mac) {
                    self.store.save_device(d)?;
                }
                // Another device may have lost an address to this one.
                if let Event::ManualAdd { ip: Some(ip), .. } = event {
                    let losers: Vec<_> = self
                        .inventory
                        .devices()
                        .filter(|d| d.mac != mac && d.addresses.contains(ip))
                        .cloned()
                        .collect();
                    for d in losers {
                        self.store.save_device(&d)?;
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
            Request::Devices => Response::Devices {
                devices: self.device_views(),
            },
            Request::Status => Response::Status(StatusView {
                devices: self.inventory.len(),
                zones: self.config.policy.zones.keys().cloned().collect(),
                full_applies: self.full_applies,
                delta_applies: self.delta_applies,
                last_error: self.last_error.clone(),
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

    fn change(&mut self, event: &Event, now: UnixTime, done: String) -> Response {
        if let Err(e) = self.apply_event(event, now) {
            return Response::Error {
                message: format!("not saved: {}", error_chain(&e)),
            };
        }
        match self.reconcile() {
            Ok(_) => Response::Done { message: done },
            Err(e) => Response::Error {
                message: format!("saved, but the firewall refused it: {}", error_chain(&e)),
            },
        }
    }

    /// Every device as the CLI shows it.
    pub fn device_views(&self) -> Vec<DeviceView> {
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
                    zone: decision.zone,
                    reason: decision.reason,
                    addresses: d.addresses.iter().copied().collect(),
                    first_seen: d.first_seen,
                    last_seen: d.last_seen,
                }
            })
            .collect()
    }

    /// Periodic work: batched store writes.
    pub fn handle_timeout(&mut self, now: UnixTime) {
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
