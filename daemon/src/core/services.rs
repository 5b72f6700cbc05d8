//! The seat for services: the DNS resolver next, then the share proxy,
//! detection and notifiers. A service is its own module and task; it never
//! writes nft, never touches the store and never adds fields here. Its whole
//! interface with the core is:
//!
//! - **Read**: an [`InventorySnapshot`] (every device with its zone as enforced,
//!   addresses, name, block and tunnel routing; the domain sets in force),
//!   shared with the services. After each loop turn the runtime patches it
//!   with the devices whose facts changed ([`DaemonState::take_touched`],
//!   [`DaemonState::device_snapshot`]: O(changed), never a pass over every
//!   device per DHCP packet) and rebuilds it whole only when everything may
//!   have changed (a new config: [`DaemonState::snapshot`]).
//! - **Ask**: a [`ServiceRequest`] through [`DaemonState::service_request`]: set
//!   elements with a lifetime (`Hold`: a DNS answer's addresses in a domain set
//!   for its TTL; the enforcer restores them after a table replace and deletes
//!   them when due), or an alert for the homeowner (`Alert`).
//!
//! Snapshots are plain data (no references into the core): a service reads
//! the shared one under a read lock on its own task, briefly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::alerts::Alert;
use crate::config::{DomainSetId, MacAddr, ZoneId};
use crate::firewall::{error_chain, Held, HoldError};
use crate::inventory::UnixTime;
use crate::policy::{tunnel_routed, Assessor};

use super::DaemonState;

/// One device as services see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// Its MAC.
    pub mac: MacAddr,
    /// The homeowner's name for it (or the policy's), if any.
    pub name: Option<String>,
    /// The host name it gave in DHCP, if any (network input: hostile).
    pub hostname: Option<String>,
    /// Its zone.
    pub zone: ZoneId,
    /// Its addresses.
    pub addresses: BTreeSet<IpAddr>,
    /// Blocked by the homeowner.
    pub blocked: bool,
    /// Its internet traffic goes through the tunnel.
    pub tunnel_routed: bool,
    /// In the zone of unknown devices (waiting for the homeowner).
    pub quarantined: bool,
    /// What it is, by the best classification rule (e.g. "camera").
    pub class: Option<String>,
    /// The vendor its MAC prefix names.
    pub vendor: Option<String>,
    /// When it was last heard from.
    pub last_seen: UnixTime,
    /// Heard from within [`super::ONLINE_SECS`], as of the core's last
    /// presence pass (every tick; a flip touches the device).
    pub online: bool,
    /// The homeowner watches it.
    pub watched: bool,
}

impl DeviceSnapshot {
    /// What it is called ([`crate::inventory::naming`]; the snapshot holds no
    /// mDNS names); `None`: nothing names it.
    pub fn best_name(&self) -> Option<String> {
        crate::inventory::naming::best_name(crate::inventory::naming::NameParts {
            homeowner: self.name.as_deref(),
            hostname: self.hostname.as_deref(),
            mdns_name: None,
            vendor: self.vendor.as_deref(),
            class: self.class.as_deref(),
        })
    }
}

/// The router itself as services see it (Home Assistant's router entities).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterSnapshot {
    /// The tunnel's state (`down`, `connecting`, `up`, `error`); `None`
    /// when no tunnel is configured.
    pub tunnel: Option<String>,
    /// Alerts the homeowner has not acknowledged.
    pub open_alerts: u64,
}

/// The inventory and the policy's answers for it, at one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventorySnapshot {
    /// [`DaemonState::facts_changed`] when it was taken.
    pub generation: u64,
    /// Every device, by MAC.
    pub devices: BTreeMap<MacAddr, DeviceSnapshot>,
    /// Which device holds each address.
    pub by_address: BTreeMap<IpAddr, MacAddr>,
    /// The zone of devices nobody knows (a client with no device is treated so).
    pub unknown_zone: Option<ZoneId>,
    /// The tunnel's domain sets in force (where `Hold` may put addresses).
    pub domain_sets: BTreeSet<DomainSetId>,
}

impl InventorySnapshot {
    /// Puts one device's new state in (or takes it out: `None`), keeping the
    /// address index right when an address moved between devices.
    pub fn patch(&mut self, mac: MacAddr, device: Option<DeviceSnapshot>) {
        if let Some(old) = self.devices.remove(&mac) {
            for a in &old.addresses {
                if self.by_address.get(a) == Some(&mac) {
                    self.by_address.remove(a);
                }
            }
        }
        if let Some(d) = device {
            for a in &d.addresses {
                self.by_address.insert(*a, mac);
            }
            self.devices.insert(mac, d);
        }
    }

    /// One trusted device at 10.0.1.10 (the DNS fuzz target's client).
    pub fn fuzz_sample() -> InventorySnapshot {
        let mac = MacAddr([2, 0, 0, 0, 0, 10]);
        let ip = IpAddr::from([10, 0, 1, 10]);
        let zone = ZoneId::new("trusted").unwrap_or_else(|_| unreachable!("a valid zone name"));
        InventorySnapshot {
            generation: 1,
            devices: [(
                mac,
                DeviceSnapshot {
                    mac,
                    name: Some("<b>laptop</b>".into()),
                    hostname: None,
                    zone,
                    addresses: [ip].into(),
                    blocked: false,
                    tunnel_routed: false,
                    quarantined: false,
                    class: Some("laptop".into()),
                    vendor: None,
                    last_seen: 0,
                    online: true,
                    watched: false,
                },
            )]
            .into(),
            by_address: [(ip, mac)].into(),
            unknown_zone: None,
            domain_sets: BTreeSet::new(),
        }
    }

    /// The device holding `ip` (a DNS client's source address), if any.
    pub fn device_at(&self, ip: IpAddr) -> Option<&DeviceSnapshot> {
        self.by_address.get(&ip).and_then(|mac| self.devices.get(mac))
    }
}

/// What a service asks of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceRequest {
    /// Put `addresses` in domain set `set` for `ttl_secs` (a held address keeps
    /// the later deadline).
    Hold {
        /// The domain set (tunnel.domain_sets in the policy).
        set: DomainSetId,
        /// The addresses.
        addresses: Vec<IpAddr>,
        /// How long they stay.
        ttl_secs: u32,
    },
    /// Open `pinholes` (a shared device's announced ports) to zone `zone`
    /// for `ttl_secs` (its announcement's lifetime).
    Pinholes {
        /// The consuming zone (`[[share]]`'s `to`).
        zone: ZoneId,
        /// The device's address, protocol and ports.
        pinholes: Vec<crate::firewall::Pinhole>,
        /// How long they stay open.
        ttl_secs: u32,
    },
    /// Close every pinhole into `address` (the device said goodbye).
    ClosePinholes {
        /// The shared device's address.
        address: IpAddr,
    },
    /// Tell the homeowner.
    Alert(Alert),
    /// A raised alert's situation grew (a scan goes on): its text is
    /// rewritten in place rather than a new alert raised.
    UpdateAlert {
        /// The alert's id ([`ServiceReply::Raised`]).
        id: i64,
        /// The new text.
        message: String,
    },
    /// The homeowner's decision, relayed by a service (Home Assistant's
    /// buttons over MQTT, when the config allows it): the same path as the
    /// CLI's and the web UI's.
    Homeowner(HomeownerCommand),
}

/// What a homeowner may decide from outside the web UI and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeownerCommand {
    /// Release a device from quarantine into the zone its classification
    /// suggests (else the policy's `approved_zone`).
    Approve(MacAddr),
    /// Block (`true`) or unblock a device.
    Block(MacAddr, bool),
}

/// Why the core did not do what a service asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The addresses could not be held.
    #[error(transparent)]
    Hold(#[from] HoldError),
    /// The homeowner's command was refused (no such device, not quarantined…).
    #[error("{0}")]
    Refused(String),
}

/// What the core did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceReply {
    /// The addresses are held.
    Held(Held),
    /// The alert is stored under this id (0: it could not be stored).
    Raised {
        /// Its id.
        id: i64,
    },
    /// The alert's text was rewritten (or it is gone).
    Updated,
    /// The homeowner's command is in force.
    Commanded,
}

impl DaemonState {
    /// The whole inventory as services see it. O(devices): only when
    /// everything may have changed; otherwise [`DaemonState::device_snapshot`]
    /// for the devices [`DaemonState::take_touched`] names.
    pub fn snapshot(&self) -> InventorySnapshot {
        let assessor = Assessor::new(&self.config);
        let mut devices = BTreeMap::new();
        let mut by_address = BTreeMap::new();
        for d in self.inventory.devices() {
            by_address.extend(d.addresses.iter().map(|a| (*a, d.mac)));
            devices.insert(d.mac, self.device_view_for_services(&assessor, d));
        }
        InventorySnapshot {
            generation: self.facts_changed,
            devices,
            by_address,
            unknown_zone: Some(self.config.policy.unknown_zone.clone()),
            domain_sets: self
                .enforcer
                .applied()
                .and_then(|a| a.ruleset.tunnel.as_ref())
                .map(|t| t.domain_sets.clone())
                .unwrap_or_default(),
        }
    }

    /// Alerts not acknowledged (a store query: call it when
    /// [`DaemonState::alerts_changed`] moved; 0 with the error logged if the
    /// store cannot answer).
    pub fn open_alerts(&self) -> u64 {
        self.store.open_alerts().unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "could not count open alerts");
            0
        })
    }

    /// One device as services see it (`None`: no such device).
    pub fn device_snapshot(&self, mac: &MacAddr) -> Option<DeviceSnapshot> {
        let d = self.inventory.get(mac)?;
        Some(self.device_view_for_services(&Assessor::new(&self.config), d))
    }

    /// The devices whose facts changed since the last call (all of them after
    /// a new config or at start).
    pub fn take_touched(&mut self) -> crate::inventory::Touched {
        self.inventory.take_touched()
    }

    fn device_view_for_services(&self, assessor: &Assessor<'_>, d: &crate::inventory::Device) -> DeviceSnapshot {
        let (decision, class) = assessor.assess(d);
        let name = d
            .name
            .clone()
            .or_else(|| self.config.policy.devices.get(&d.mac).and_then(|o| o.name.clone()));
        DeviceSnapshot {
            mac: d.mac,
            name,
            hostname: d.evidence.hostname.clone(),
            tunnel_routed: tunnel_routed(&self.config, d, &decision.zone),
            quarantined: decision.zone == self.config.policy.unknown_zone,
            zone: decision.zone,
            addresses: d.addresses.clone(),
            blocked: d.blocked,
            class: class.map(|c| c.class.to_string()),
            vendor: crate::discovery::oui::lookup(&d.mac).map(str::to_string),
            last_seen: d.last_seen,
            online: self.presence.is_online(&d.mac),
            watched: d.watched,
        }
    }

    /// A service's request, enforced (or refused with why).
    pub fn service_request(&mut self, request: ServiceRequest, now: UnixTime) -> Result<ServiceReply, ServiceError> {
        match request {
            ServiceRequest::Hold {
                set,
                addresses,
                ttl_secs,
            } => self
                .enforcer
                .hold(&set, &addresses, ttl_secs, now)
                .map(ServiceReply::Held)
                .map_err(ServiceError::from),
            ServiceRequest::Pinholes {
                zone,
                pinholes,
                ttl_secs,
            } => self
                .enforcer
                .hold_pinholes(&zone, &pinholes, ttl_secs, now)
                .map(ServiceReply::Held)
                .map_err(ServiceError::from),
            ServiceRequest::ClosePinholes { address } => {
                let closed = self.enforcer.close_pinholes(address);
                Ok(ServiceReply::Held(Held {
                    given: closed,
                    fresh: 0,
                }))
            }
            ServiceRequest::Alert(alert) => Ok(ServiceReply::Raised { id: self.raise(alert) }),
            ServiceRequest::UpdateAlert { id, message } => {
                self.update_alert(id, &message);
                Ok(ServiceReply::Updated)
            }
            ServiceRequest::Homeowner(command) => {
                // Only devices it knows: a command must not create a decision
                // for a MAC that never showed up (the CLI may; a broker may not).
                let (HomeownerCommand::Approve(mac) | HomeownerCommand::Block(mac, _)) = command;
                if !self.knows(&mac) {
                    return Err(ServiceError::Refused(format!("no device {mac}")));
                }
                let request = match command {
                    HomeownerCommand::Approve(mac) => crate::control::Request::Approve { mac, zone: None },
                    HomeownerCommand::Block(mac, blocked) => crate::control::Request::Block { mac, blocked },
                };
                match self.handle(request, now) {
                    crate::control::Response::Error { message } => Err(ServiceError::Refused(message)),
                    _ => Ok(ServiceReply::Commanded),
                }
            }
        }
    }
}
