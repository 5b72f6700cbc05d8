//! The DHCP path of [`DaemonState`]: what Bulkhead's own server decided on a
//! serving segment (the runtime drives the pure server and hands its outcome
//! here before the reply leaves), and capture + lease-file reading on observing
//! ones. Every lease is enforced (the device's MAC and address in its zone's
//! sets) BEFORE the ACK leaves, so a device never holds an address the firewall
//! does not know.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::alerts::{Alert, AlertFacts, AlertKind};
use crate::config::{DhcpMode, MacAddr, SegmentId};
use crate::discovery::dhcp::{CaptureError, ClientPacket, Handled, Lease, LeaseEvent, ObservedLease, Reply};
use crate::firewall::error_chain;
use crate::inventory::{Event, UnixTime};
use crate::store::StoreError;

use super::DaemonState;

/// How often one segment's "pool exhausted" alert may repeat.
const POOL_ALERT_EVERY_SECS: UnixTime = 3600;

/// What the core remembers of DHCP: pool alerts and observer mode's
/// bookkeeping. Bulkhead's own server is a discovery source the runtime drives
/// ([`DhcpServer`](crate::discovery::dhcp::DhcpServer)); the core takes what it
/// decided ([`DaemonState::dhcp_handled`], [`DaemonState::lease_event`]).
#[derive(Default)]
pub(super) struct DhcpBook {
    /// When each segment last raised "pool exhausted".
    pool_alerted: BTreeMap<SegmentId, UnixTime>,
    /// Observer mode: bindings read from the other server's lease file last time.
    observed: BTreeMap<IpAddr, MacAddr>,
    /// Observer mode: which lease-file changes to believe.
    lease_gate: crate::discovery::dhcp::LeaseGate,
    /// Malformed packets captured in observer mode.
    capture_malformed: u64,
    /// DHCP messages whose `chaddr` was not their sender's MAC (served and
    /// observed segments alike).
    spoofed: u64,
}

impl DhcpBook {
    /// Malformed packets captured in observer mode.
    pub(super) fn capture_malformed(&self) -> u64 {
        self.capture_malformed
    }

    /// Forged DHCP messages dropped.
    pub(super) fn spoofed(&self) -> u64 {
        self.spoofed
    }

    /// Observer mode: lease-file changes not believed.
    pub(super) fn lease_changes_ignored(&self) -> u64 {
        self.lease_gate.ignored()
    }
}

impl DaemonState {
    /// What Bulkhead's DHCP server made of one packet, taken in BEFORE its
    /// reply leaves: the evidence, the lease change (stored and enforced, so a
    /// device never holds an address the firewall does not know), a pool alert.
    /// Returns the reply to send.
    pub fn dhcp_handled(&mut self, segment: &SegmentId, handled: Handled, now: UnixTime) -> Option<Reply> {
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
        if handled.pool_exhausted {
            self.pool_exhausted(segment, now);
        }
        handled.reply
    }

    /// The leases stored for Bulkhead's server (its state after a restart).
    pub fn stored_leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.store.load_leases()
    }

    /// Stores leases again as they are (their ends moved with a clock jump);
    /// nothing else changes.
    pub fn persist_leases(&mut self, leases: &[Lease]) {
        for lease in leases {
            if let Err(e) = self.store.save_lease(lease) {
                tracing::error!(error = %error_chain(&e), "could not store a lease");
            }
        }
    }

    /// Persists and enforces one lease change.
    pub fn lease_event(&mut self, event: LeaseEvent, now: UnixTime) {
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
        self.raise(Alert::new(
            now,
            AlertKind::PoolExhausted,
            None,
            format!("segment {segment} has no free address left in its DHCP pool"),
        ));
    }

    /// A DHCP message whose `chaddr` is not the MAC of the frame that carried
    /// it: someone speaking for another device (a forged DISCOVER to move it,
    /// a RELEASE to evict it, a scanner's fixed payload). It counts for no
    /// device — no evidence, no lease, no new device — and is counted; one
    /// `spoofing` alert per sender an hour names who sent it.
    pub fn dhcp_spoofed(&mut self, sender: MacAddr, claimed: MacAddr, now: UnixTime) {
        self.dhcp.spoofed += 1;
        tracing::warn!(%sender, %claimed, "DHCP message in another device's name dropped");
        self.raise(Alert::about(
            now,
            AlertKind::Spoofing,
            sender,
            AlertFacts {
                other: Some(claimed),
                ..AlertFacts::default()
            },
        ));
    }

    /// Whether the homeowner blocked this device (it gets no DHCP answer).
    pub fn is_blocked(&self, mac: &MacAddr) -> bool {
        self.inventory.get(mac).is_some_and(|d| d.blocked)
    }

    /// Observer mode: a client packet captured on an observing segment, or
    /// why it was dropped (counted).
    pub fn captured(&mut self, packet: Result<ClientPacket, CaptureError>, now: UnixTime) {
        let packet = match packet {
            Ok(p) => p,
            Err(CaptureError::Spoofed { sender, claimed }) => return self.dhcp_spoofed(sender, claimed, now),
            Err(e) => {
                self.dhcp.capture_malformed += 1;
                tracing::debug!(error = %e, "captured DHCP packet dropped");
                return;
            }
        };
        // The MAC spoke in its own name: its lease may change now.
        self.dhcp.lease_gate.heard(packet.mac, packet.kind, packet.address, now);
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
    /// Only addresses inside an observing segment count, and a change only
    /// once the MAC it is for sent a client packet itself
    /// ([`LeaseGate`](crate::discovery::dhcp::LeaseGate): the other server
    /// believes forged ones).
    pub fn observed_leases(&mut self, leases: &[ObservedLease], now: UnixTime) {
        let observing = |ip: &IpAddr| {
            self.config
                .segment_for_ip(*ip)
                .is_some_and(|s| s.dhcp == DhcpMode::Observe)
        };
        let read: Vec<ObservedLease> = leases
            .iter()
            .filter(|l| observing(&l.ip) && l.expires.is_none_or(|t| t > now))
            .cloned()
            .collect();
        let leases = self.dhcp.lease_gate.read(&read, now);
        let leases = leases.as_slice();
        let current: BTreeMap<IpAddr, crate::config::MacAddr> = leases.iter().map(|l| (l.ip, l.mac)).collect();
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
        // Names are not read from the file: the captured packets give them,
        // bound to their sender.
        for l in leases.iter().filter(|l| current.get(&l.ip) == Some(&l.mac)) {
            self.observe(Event::Address { mac: l.mac, ip: l.ip }, now);
        }
        self.dhcp.observed = current;
    }
}
