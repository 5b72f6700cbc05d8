//! PURE: which changes of the other server's lease file to believe.
//!
//! In observer mode another server (dnsmasq) hands out addresses and writes
//! its lease file; it reads DHCP from a UDP socket and never compares
//! `chaddr` with the frame's source. So a forged RELEASE in the plug's name,
//! sent by the stranger, makes dnsmasq drop the plug's lease, and a forged
//! REQUEST binds another address to it — in the file. The capture beside
//! dnsmasq sees each client packet with its frame's source
//! ([`CaptureSocket`](super::CaptureSocket)), so a binding (address → MAC)
//! changes only as that MAC's own latest packet says: a new binding needs
//! its REQUEST for that address; a binding ends at its expiry, or after its
//! MAC's own RELEASE or DECLINE, or its REQUEST for another address.
//! Otherwise the believed binding stays as it was (counted). Renewals (same
//! address and MAC) and the first reading (the state at start) need
//! nothing. Names in the file are not read: the captured packets give them,
//! bound to their sender.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use dhcproto::v4::MessageType;

use super::ObservedLease;
use crate::config::MacAddr;
use crate::inventory::UnixTime;

/// How recent a MAC's own client packet must be to explain a change: dnsmasq
/// writes the file at its ACK, and the daemon reads it within a second.
pub const HEARD_WITHIN_SECS: UnixTime = 120;
/// Most MACs remembered (the oldest go first).
const MAX_HEARD: usize = 8192;

/// What a MAC's own client packets said lately: the address it last asked
/// for (REQUEST, or DISCOVER with option 50) and when it last let an
/// address go (RELEASE, DECLINE), kept apart so that one does not hide the
/// other (a RELEASE then a DISCOVER at boot). Other kinds (INFORM) change
/// nothing here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Spoke {
    asked: Option<(Ipv4Addr, UnixTime)>,
    let_go: Option<(Option<Ipv4Addr>, UnixTime)>,
    at: UnixTime,
}

/// See the module documentation.
#[derive(Debug, Default, Clone)]
pub struct LeaseGate {
    primed: bool,
    believed: BTreeMap<IpAddr, ObservedLease>,
    spoke: HashMap<MacAddr, Spoke>,
    ignored: u64,
}

/// Within the window, and not from the future (a clock that jumped back).
fn recent(at: UnixTime, now: UnixTime) -> bool {
    (0..HEARD_WITHIN_SECS).contains(&(now - at))
}

impl LeaseGate {
    /// `mac` sent a client packet of `kind` in its own name (its `chaddr`
    /// was the frame's source) at `now`, asking for or using `address`.
    pub fn heard(&mut self, mac: MacAddr, kind: MessageType, address: Option<Ipv4Addr>, now: UnixTime) {
        let said = match kind {
            MessageType::Request | MessageType::Discover => address.map(|a| Spoke {
                asked: Some((a, now)),
                ..Spoke::default()
            }),
            MessageType::Release | MessageType::Decline => Some(Spoke {
                let_go: Some((address, now)),
                ..Spoke::default()
            }),
            _ => None,
        };
        let Some(said) = said else { return };
        if self.spoke.len() >= MAX_HEARD && !self.spoke.contains_key(&mac) {
            // Only what is too old to matter goes: a flood of made-up MACs
            // cannot push out a real device's packet of a moment ago.
            self.spoke.retain(|_, s| recent(s.at, now));
            if self.spoke.len() >= MAX_HEARD {
                return;
            }
        }
        let entry = self.spoke.entry(mac).or_default();
        entry.asked = said.asked.or(entry.asked);
        entry.let_go = said.let_go.or(entry.let_go);
        entry.at = now;
    }

    /// Lease-file changes not believed so far.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Takes a new reading of the file (unexpired, observed-segment leases
    /// only) and returns the bindings to act on: the believed ones.
    pub fn read(&mut self, current: &[ObservedLease], now: UnixTime) -> Vec<ObservedLease> {
        let current: BTreeMap<IpAddr, &ObservedLease> = current.iter().map(|l| (l.ip, l)).collect();
        if !self.primed {
            self.primed = true;
            self.believed = current.into_iter().map(|(ip, l)| (ip, l.clone())).collect();
            return self.believed.values().cloned().collect();
        }
        let spoke = |mac: &MacAddr| self.spoke.get(mac).copied().unwrap_or_default();
        // The MAC asked for this address itself.
        let asked = |mac: &MacAddr, ip: &IpAddr| {
            spoke(mac)
                .asked
                .is_some_and(|(a, at)| IpAddr::V4(a) == *ip && recent(at, now))
        };
        // The MAC let this address go itself (or asked for another).
        let let_go = |mac: &MacAddr, ip: &IpAddr| {
            let s = spoke(mac);
            s.let_go
                .is_some_and(|(a, at)| a.is_none_or(|a| IpAddr::V4(a) == *ip) && recent(at, now))
                || s.asked.is_some_and(|(a, at)| IpAddr::V4(a) != *ip && recent(at, now))
        };
        let mut next: BTreeMap<IpAddr, ObservedLease> = BTreeMap::new();
        let mut ignored = 0;
        for (ip, old) in &self.believed {
            let ended = old.expires.is_some_and(|t| t <= now) || let_go(&old.mac, ip);
            match current.get(ip) {
                // The same binding: an end moved later is believed; moved
                // earlier only on the MAC's own REQUEST (a forged renewal
                // asking for 120 s would otherwise end it for a taker).
                Some(new) if new.mac == old.mac => {
                    let mut kept = (*new).clone();
                    if !asked(&new.mac, ip) {
                        kept.expires = later(old.expires, new.expires);
                    }
                    next.insert(*ip, kept);
                }
                Some(new) if ended && asked(&new.mac, ip) => {
                    next.insert(*ip, (*new).clone());
                }
                None if ended => {}
                _ => {
                    ignored += 1;
                    if old.expires.is_none_or(|t| t > now) {
                        next.insert(*ip, old.clone());
                    }
                }
            }
        }
        for (ip, new) in &current {
            if self.believed.contains_key(ip) {
                continue;
            }
            if asked(&new.mac, ip) {
                next.insert(*ip, (*new).clone());
            } else {
                ignored += 1;
            }
        }
        self.ignored += ignored;
        self.believed = next;
        self.believed.values().cloned().collect()
    }
}

/// The later of two ends (`None`: never).
fn later(a: Option<UnixTime>, b: Option<UnixTime>) -> Option<UnixTime> {
    Some(a?.max(b?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUG: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const STRANGER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 2]);

    fn lease(mac: MacAddr, ip: &str, expires: UnixTime) -> ObservedLease {
        ObservedLease {
            mac,
            ip: ip.parse().expect("ip"),
            expires: Some(expires),
            hostname: None,
            client_id: None,
        }
    }

    fn v4(ip: &str) -> Option<Ipv4Addr> {
        Some(ip.parse().expect("ip"))
    }

    #[test]
    fn a_binding_changes_only_as_its_own_mac_said() {
        let mut gate = LeaseGate::default();
        let plug = lease(PLUG, "10.0.1.20", 1000);
        assert_eq!(
            gate.read(std::slice::from_ref(&plug), 10),
            vec![plug.clone()],
            "the state at start"
        );
        // The plug renewed a moment ago (its REQUEST for its address); a
        // forged RELEASE in its name follows: dnsmasq drops the lease, the
        // gate does not.
        gate.heard(PLUG, MessageType::Request, v4("10.0.1.20"), 11);
        assert_eq!(gate.read(&[], 12), vec![plug.clone()]);
        // A forged REQUEST binding a second address to it: not believed.
        let second = lease(PLUG, "10.0.1.77", 1000);
        assert_eq!(gate.read(&[plug.clone(), second.clone()], 13), vec![plug.clone()]);
        assert_eq!(gate.ignored(), 2);
        // A renewal needs nothing.
        let renewed = lease(PLUG, "10.0.1.20", 2000);
        assert_eq!(gate.read(std::slice::from_ref(&renewed), 14), vec![renewed.clone()]);
        // The plug itself moves to .77: the new binding, and the old one ends.
        gate.heard(PLUG, MessageType::Request, v4("10.0.1.77"), 15);
        assert_eq!(gate.read(std::slice::from_ref(&second), 16), vec![second.clone()]);
        // Its own RELEASE ends it.
        gate.heard(PLUG, MessageType::Release, v4("10.0.1.77"), 17);
        assert_eq!(gate.read(&[], 18), Vec::new());
    }

    #[test]
    fn a_lease_ends_at_its_expiry_and_old_packets_explain_nothing() {
        let mut gate = LeaseGate::default();
        let plug = lease(PLUG, "10.0.1.20", 1000);
        gate.read(std::slice::from_ref(&plug), 1);
        gate.heard(PLUG, MessageType::Release, v4("10.0.1.20"), 2);
        assert_eq!(
            gate.read(std::slice::from_ref(&plug), 3),
            vec![plug.clone()],
            "still in the file"
        );
        gate.heard(PLUG, MessageType::Request, v4("10.0.1.20"), 4);
        assert_eq!(
            gate.read(&[], 4 + HEARD_WITHIN_SECS),
            vec![plug.clone()],
            "heard too long ago"
        );
        assert_eq!(gate.read(&[], 1000), Vec::new(), "ran out");
    }

    #[test]
    fn a_forged_short_renewal_does_not_bring_the_end_closer() {
        let mut gate = LeaseGate::default();
        let plug = lease(PLUG, "10.0.1.20", 40_000);
        gate.read(std::slice::from_ref(&plug), 1);
        let shortened = lease(PLUG, "10.0.1.20", 130);
        assert_eq!(gate.read(std::slice::from_ref(&shortened), 10), vec![plug.clone()]);
        let infinite = ObservedLease {
            expires: None,
            ..plug.clone()
        };
        let mut gate = LeaseGate::default();
        gate.read(std::slice::from_ref(&infinite), 1);
        assert_eq!(gate.read(std::slice::from_ref(&shortened), 10), vec![infinite]);
        // Its own REQUEST may shorten it.
        let mut gate = LeaseGate::default();
        gate.read(std::slice::from_ref(&plug), 1);
        gate.heard(PLUG, MessageType::Request, v4("10.0.1.20"), 5);
        assert_eq!(gate.read(std::slice::from_ref(&shortened), 10), vec![shortened]);
    }

    #[test]
    fn an_inform_hides_nothing_and_a_clock_jump_explains_nothing() {
        let mut gate = LeaseGate::default();
        gate.read(&[], 1);
        gate.heard(PLUG, MessageType::Request, v4("10.0.1.20"), 100);
        gate.heard(PLUG, MessageType::Inform, v4("10.0.1.20"), 100);
        let plug = lease(PLUG, "10.0.1.20", 1000);
        assert_eq!(gate.read(std::slice::from_ref(&plug), 101), vec![plug.clone()]);
        // Packets "from the future" (the clock went back) do not count.
        let mut gate = LeaseGate::default();
        gate.read(&[], 1);
        gate.heard(PLUG, MessageType::Request, v4("10.0.1.20"), 5000);
        assert_eq!(gate.read(std::slice::from_ref(&plug), 101), Vec::new());
    }

    #[test]
    fn an_address_passes_to_another_mac_only_when_the_holder_let_go() {
        let mut gate = LeaseGate::default();
        let plug = lease(PLUG, "10.0.1.20", 1000);
        gate.read(std::slice::from_ref(&plug), 1);
        let taken = lease(STRANGER, "10.0.1.20", 1000);
        gate.heard(STRANGER, MessageType::Request, v4("10.0.1.20"), 2);
        assert_eq!(
            gate.read(std::slice::from_ref(&taken), 3),
            vec![plug.clone()],
            "the plug never let go"
        );
        gate.heard(PLUG, MessageType::Release, v4("10.0.1.20"), 4);
        gate.heard(STRANGER, MessageType::Request, v4("10.0.1.20"), 4);
        assert_eq!(gate.read(std::slice::from_ref(&taken), 5), vec![taken]);
    }
}
