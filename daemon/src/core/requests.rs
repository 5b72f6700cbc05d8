//! The control protocol's requests (CLI and web UI alike: a UI action is a CLI
//! action). [`DaemonState::handle`] dispatches, one line per request; each
//! decision is an inventory event enforced for the devices it touches
//! ([`DaemonState::change`]).

use std::net::IpAddr;

use crate::alerts::IdentitySuggestion;
use crate::config::{DomainSetId, MacAddr, ZoneId};
use crate::control::{Request, Response};
use crate::firewall::error_chain;
use crate::inventory::{Event, UnixTime};
use crate::policy::{zone_for, ZoneReason};
use crate::store::StoreError;

use super::DaemonState;

/// A store answer as a response.
fn answer<T>(result: Result<T, StoreError>, ok: impl FnOnce(T) -> Response) -> Response {
    match result {
        Ok(v) => ok(v),
        Err(e) => Response::Error {
            message: error_chain(&e),
        },
    }
}

impl DaemonState {
    /// Handles one control request.
    pub fn handle(&mut self, req: Request, now: UnixTime) -> Response {
        match req {
            Request::Devices => Response::Devices {
                devices: self.device_views(now),
            },
            Request::Status => Response::Status(self.status()),
            Request::Zones => Response::Zones {
                zones: self.zone_infos(),
            },
            Request::Alerts { limit } => answer(
                self.store.alerts(limit.min(crate::store::MAX_ALERTS as usize)),
                |mut alerts| {
                    for a in &mut alerts {
                        a.render(&|m| self.device_name(m));
                    }
                    Response::Alerts { alerts }
                },
            ),
            Request::AckAlerts { ids } => self.acknowledge_alerts(ids.as_deref()),
            Request::Suggestions => answer(self.store.suggestions(), |suggestions| Response::Suggestions {
                suggestions,
            }),
            Request::SetZone { mac, zone } => self.set_zone(mac, zone, now),
            Request::Approve { mac, zone } => self.approve(mac, zone, now),
            Request::Link { new_mac, known_mac } => self.link(new_mac, known_mac, now),
            Request::AddDevice { mac, ip } => self.add_device(mac, ip, now),
            Request::Rename { mac, name } => self.rename(mac, name.as_deref(), now),
            Request::Block { mac, blocked } => self.block(mac, blocked, now),
            Request::Watch { mac, watched } => self.watch(mac, watched, now),
            Request::Sharing => Response::Sharing {
                sharing: self.sharing_info(),
            },
            Request::Share { preset, from, to, on } => self.set_share(&preset, &from, &to, on),
            Request::Forget { mac } => self.forget(mac, now),
            Request::DeviceTunnel { mac, route } => self.device_tunnel(mac, route, now),
            Request::DomainAdd {
                set,
                addresses,
                ttl_secs,
            } => self.domain_add(&set, &addresses, ttl_secs, now),
            Request::Auth => self.credentials.auth(),
            Request::SetPasswordHash { hash } => self.credentials.set_password_hash(&mut self.store, hash),
            Request::ResetPassword => self.credentials.reset(&mut self.store),
            Request::Tunnel => Response::Error {
                message: "the tunnel's state is kept by the daemon loop".into(),
            },
            Request::DnsStatus | Request::DnsLog { .. } | Request::DnsTest { .. } | Request::DnsRefresh => {
                Response::Error {
                    message: "the resolver is off (dns.enabled = false)".into(),
                }
            }
            // The runtime answers it when detection runs.
            Request::Detect { .. } => Response::Detect { report: None },
            // The runtime answers it when counting runs.
            Request::Traffic { .. } => Response::Traffic { report: None },
            Request::NotifyStatus => Response::Notify { status: None },
            Request::NotifyTest { .. } => Response::Error {
                message: "no notification channel is configured ([notify] in bulkhead.toml)".into(),
            },
        }
    }

    /// Acknowledges the given alerts (all with `None`).
    fn acknowledge_alerts(&mut self, ids: Option<&[i64]>) -> Response {
        match self.store.acknowledge_alerts(ids) {
            Ok(n) => {
                if n > 0 {
                    self.alerts_changed += 1;
                }
                Response::Acknowledged { count: n }
            }
            Err(e) => Response::Error {
                message: error_chain(&e),
            },
        }
    }

    /// `bulkhead device set-zone MAC ZONE`: the homeowner's choice, always wins.
    fn set_zone(&mut self, mac: MacAddr, zone: ZoneId, now: UnixTime) -> Response {
        if !self.config.policy.zones.contains_key(&zone) {
            let known: Vec<_> = self.config.policy.zones.keys().map(|z| z.to_string()).collect();
            return Response::Error {
                message: format!("unknown zone `{zone}` (zones: {})", known.join(", ")),
            };
        }
        let done = format!("{mac} is now in zone {zone}");
        self.change(&Event::SetZone { mac, zone }, now, done)
    }

    /// `bulkhead device add MAC [--ip IP]`.
    fn add_device(&mut self, mac: MacAddr, ip: Option<IpAddr>, now: UnixTime) -> Response {
        if let Some(ip) = ip {
            if self.config.segment_for_ip(ip).is_none() {
                return Response::Error {
                    message: format!("{ip} is not in any segment's subnet"),
                };
            }
        }
        self.change(&Event::ManualAdd { mac, ip }, now, format!("{mac} added"))
    }

    /// `bulkhead device block|unblock MAC`.
    fn block(&mut self, mac: MacAddr, blocked: bool, now: UnixTime) -> Response {
        let done = if blocked {
            format!("{mac} is blocked: the router forwards nothing from or to it and answers it nothing")
        } else {
            format!("{mac} is unblocked")
        };
        self.change(&Event::Block { mac, blocked }, now, done)
    }

    /// The homeowner watches a device, or stops.
    fn watch(&mut self, mac: MacAddr, watched: bool, now: UnixTime) -> Response {
        if !self.knows(&mac) {
            return Response::Error {
                message: format!("no device {mac}"),
            };
        }
        let done = if watched {
            format!("{mac} is watched: you will be told when it goes offline and when it is back")
        } else {
            format!("{mac} is no longer watched")
        };
        self.change(&Event::Watch { mac, watched }, now, done)
    }

    /// `bulkhead device forget MAC`: the device's set entries go with it (it
    /// is an unknown device again if it shows up).
    fn forget(&mut self, mac: MacAddr, now: UnixTime) -> Response {
        if !self.knows(&mac) {
            return Response::Error {
                message: format!("no device {mac}"),
            };
        }
        let done = format!("{mac} is forgotten: if it comes back, it is a new device and waits in quarantine");
        self.change(&Event::Forget { mac }, now, done)
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

    /// `bulkhead device approve MAC [ZONE]`.
    fn approve(&mut self, mac: MacAddr, zone: Option<ZoneId>, now: UnixTime) -> Response {
        let p = &self.config.policy;
        let suggested = self
            .inventory
            .get(&mac)
            .map(|d| zone_for(&self.config, d))
            .filter(|d| d.reason == ZoneReason::Classified)
            .map(|d| d.zone);
        let Some(zone) = zone.or(suggested).or_else(|| p.approved_zone.clone()) else {
            return Response::Error {
                message: format!(
                    "say which zone: bulkhead device approve {mac} ZONE (no classification suggests one, and the policy sets no approved_zone)"
                ),
            };
        };
        self.set_zone(mac, zone, now)
    }

    /// `bulkhead device link NEW KNOWN`: accept an identity suggestion.
    fn link(&mut self, new_mac: MacAddr, known_mac: MacAddr, now: UnixTime) -> Response {
        if !self.discovery.was_suggested(new_mac, known_mac) {
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
        let suggestion = IdentitySuggestion {
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
        // One device from now on: the new MAC takes the known one's decisions
        // and history, the old entry is retired (its set entries go in the
        // same firewall change), and the zone it had becomes the new MAC's.
        let done = format!("{new_mac} is {known_mac} from now on: its name, zone and choices moved over");
        if let Response::Error { message } = self.change(
            &Event::Merge {
                from: known_mac,
                into: new_mac,
            },
            now,
            done.clone(),
        ) {
            return Response::Error { message };
        }
        match self.set_zone(new_mac, zone, now) {
            Response::Done { .. } => Response::Done { message: done },
            other => other,
        }
    }

    /// `bulkhead vpn domain-add SET ADDR… --ttl`: the same path a service (the
    /// DNS resolver) takes, [`DaemonState::service_request`].
    fn domain_add(&mut self, set: &DomainSetId, addresses: &[IpAddr], ttl_secs: u32, now: UnixTime) -> Response {
        let request = super::ServiceRequest::Hold {
            set: set.clone(),
            addresses: addresses.to_vec(),
            ttl_secs,
        };
        match self.service_request(request, now) {
            Ok(super::services::ServiceReply::Held(held)) => Response::Done {
                message: format!(
                    "{} address(es) in domain set {set} for {ttl_secs} s ({} new)",
                    held.given, held.fresh
                ),
            },
            Ok(
                super::services::ServiceReply::Raised { .. }
                | super::services::ServiceReply::Updated
                | super::services::ServiceReply::Commanded,
            ) => Response::Error {
                message: "not a domain set request".into(),
            },
            Err(e) => Response::Error {
                message: error_chain(&e),
            },
        }
    }
}
