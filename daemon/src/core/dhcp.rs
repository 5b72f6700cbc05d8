//! The DHCP path of [`DaemonState`]: Bulkhead's own server on serving segments,
//! and capture + lease-file reading on observing ones. Every lease is enforced
//! (the device's MAC and address in its zone's sets) BEFORE the ACK leaves, so a
//! device never holds an address the firewall does not know.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::alerts::{Alert, AlertKind};
use crate::config::{Config, DhcpMode, MacAddr, SegmentId};
use crate::discovery::dhcp::{
    CaptureError, ClientPacket, Counters, DhcpServer, Lease, LeaseEvent, ObservedLease, Reply,
};
use crate::firewall::error_chain;
use crate::inventory::{Event, UnixTime};
use crate::policy::dhcp_segments;

use super::DaemonState;

/// How often one segment's "pool exhausted" alert may repeat.
const POOL_ALERT_EVERY_SECS: UnixTime = 3600;

/// Bulkhead's DHCP server (serving segments) and observer mode's bookkeeping.
pub(super) struct DhcpHost {
    /// The server's state machine.
    server: DhcpServer,
    /// When each segment last raised "pool exhausted".
    pool_alerted: BTreeMap<SegmentId, UnixTime>,
    /// Observer mode: bindings read from the other server's lease file last time.
    observed: BTreeMap<IpAddr, MacAddr>,
    /// Malformed packets captured in observer mode.
    capture_malformed: u64,
}

impl DhcpHost {
    /// The server for `config`'s serving segments, with the stored leases.
    pub(super) fn new(config: &Config, leases: Vec<Lease>) -> Self {
        DhcpHost {
            server: DhcpServer::new(dhcp_segments(config), leases),
            pool_alerted: BTreeMap::new(),
            observed: BTreeMap::new(),
            capture_malformed: 0,
        }
    }

    /// A new config: leases that no longer fit end (as expiries).
    pub(super) fn reconfigure(&mut self, config: &Config) -> Vec<LeaseEvent> {
        self.server
            .reconfigure(dhcp_segments(config))
            .into_iter()
            .map(LeaseEvent::Expired)
            .collect()
    }

    /// Leases held.
    pub(super) fn lease_count(&self) -> usize {
        self.server.leases().count()
    }

    /// Malformed packets dropped: all serving segments and observer capture.
    pub(super) fn malformed(&self) -> u64 {
        self.counters().iter().map(|(_, c)| c.malformed).sum::<u64>() + self.capture_malformed
    }

    /// Per serving segment, the server's counters.
    pub(super) fn counters(&self) -> Vec<(SegmentId, Counters)> {
        self.server
            .segments()
            .filter_map(|s| self.server.counters(&s.id).map(|c| (s.id.clone(), *c)))
            .collect()
    }
}

impl DaemonState {
    /// One datagram to port 67 on a serving segment. Returns the reply to send,
    /// after the lease it grants is stored and enforced.
    pub fn dhcp_packet(&mut self, segment: &SegmentId, bytes: &[u8], now: UnixTime) -> Option<Reply> {
        let exhausted_before = self.dhcp.server.counters(segment).map_or(0, |c| c.pool_exhausted);
        let handled = self.dhcp.server.handle(segment, bytes, now);
        if let Some((mac, evidence)) = handled.evidence {
            self.observe(
                Event::Evidence {
                    mac,
                    evidence: Box::new(evidence),
                },
                now,
            );
        }
        if let Some(event) = handled.event {
            self.lease_event(event, now);
        }
        if self.dhcp.server.counters(segment).map_or(0, |c| c.pool_exhausted) > exhausted_before {
            self.pool_exhausted(segment, now);
        }
        handled.reply
    }

    /// Expires leases and offers that are due.
    pub fn dhcp_timeout(&mut self, now: UnixTime) {
        for event in self.dhcp.server.handle_timeout(now) {
            self.lease_event(event, now);
        }
    }

    /// Persists and enforces one lease change.
    pub(super) fn lease_event(&mut self, event: LeaseEvent, now: UnixTime) {
        match event {
            LeaseEvent::Bound(lease) => {
                if let Err(e) = self.store.save_lease(&lease) {
                    tracing::error!(error = %error_chain(&e), "could not store a lease");
                }
                self.observe(
                    Event::Address {
                        mac: lease.mac,
                        ip: IpAddr::V4(lease.ip),
                    },
                    now,
                );
            }
            LeaseEvent::Released(lease) | LeaseEvent::Expired(lease) => {
                if let Err(e) = self.store.delete_lease(&lease.segment, lease.ip) {
                    tracing::error!(error = %error_chain(&e), "could not forget a lease");
                }
                self.observe(
                    Event::AddressGone {
                        mac: lease.mac,
                        ip: IpAddr::V4(lease.ip),
                    },
                    now,
                );
            }
            LeaseEvent::Declined { segment, mac, ip } => {
                tracing::warn!(%segment, %mac, %ip, "client declined an address (someone else uses it)");
                if let Err(e) = self.store.delete_lease(&segment, ip) {
                    tracing::error!(error = %error_chain(&e), "could not forget a lease");
                }
            }
        }
    }

    fn pool_exhausted(&mut self, segment: &SegmentId, now: UnixTime) {
        let last = self.dhcp.pool_alerted.get(segment).copied();
        if last.is_some_and(|t| now - t < POOL_ALERT_EVERY_SECS) {
            return;
        }
        self.dhcp.pool_alerted.insert(segment.clone(), now);
        self.raise(Alert {
            id: 0,
            acknowledged: false,
            at: now,
            kind: AlertKind::PoolExhausted,
            mac: None,
            message: format!("segment {segment} has no free address left in its DHCP pool"),
        });
    }

    /// Observer mode: a client packet captured on an observing segment, or
    /// why it was dropped (counted).
    pub fn captured(&mut self, packet: Result<ClientPacket, CaptureError>, now: UnixTime) {
        let packet = match packet {
            Ok(p) => p,
            Err(e) => {
                self.dhcp.capture_malformed += 1;
                tracing::debug!(error = %e, "captured DHCP packet dropped");
                return;
            }
        };
        self.observe(
            Event::Evidence {
                mac: packet.mac,
                evidence: Box::new(packet.evidence),
            },
            now,
        );
    }

    /// Observer mode: the other server's lease file, read again. New bindings
    /// become addresses; bindings that vanished (released, expired) are removed.
    /// Only addresses inside an observing segment count.
    pub fn observed_leases(&mut self, leases: &[ObservedLease], now: UnixTime) {
        let observing = |ip: &IpAddr| {
            self.config
                .segment_for_ip(*ip)
                .is_some_and(|s| s.dhcp == DhcpMode::Observe)
        };
        let current: BTreeMap<IpAddr, crate::config::MacAddr> = leases
            .iter()
            .filter(|l| observing(&l.ip) && l.expires.is_none_or(|t| t > now))
            .map(|l| (l.ip, l.mac))
            .collect();
        let gone: Vec<(IpAddr, crate::config::MacAddr)> = self
            .dhcp
            .observed
            .iter()
            .filter(|(ip, mac)| current.get(ip) != Some(mac))
            .map(|(ip, mac)| (*ip, *mac))
            .collect();
        for (ip, mac) in gone {
            self.observe(Event::AddressGone { mac, ip }, now);
        }
        for l in leases.iter().filter(|l| current.get(&l.ip) == Some(&l.mac)) {
            if let Some(h) = &l.hostname {
                let evidence = crate::classify::Evidence {
                    hostname: Some(h.clone()),
                    client_id: l.client_id.clone(),
                    ..Default::default()
                };
                self.observe(
                    Event::Evidence {
                        mac: l.mac,
                        evidence: Box::new(evidence),
                    },
                    now,
                );
            }
            self.observe(Event::Address { mac: l.mac, ip: l.ip }, now);
        }
        self.dhcp.observed = current;
    }

    /// Segments Bulkhead serves, with their interfaces.
    pub fn serving_segments(&self) -> Vec<(SegmentId, String)> {
        self.dhcp
            .server
            .segments()
            .map(|s| (s.id.clone(), s.interface.clone()))
            .collect()
    }

    /// Interfaces of observing segments.
    pub fn observing_interfaces(&self) -> BTreeSet<String> {
        self.config
            .segments
            .iter()
            .filter(|s| s.dhcp == DhcpMode::Observe)
            .map(|s| s.interface.clone())
            .collect()
    }
}
