//! Leases and what happens to them.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::{MacAddr, SegmentId};
use crate::inventory::UnixTime;

/// An address bound to a client on a segment, until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The segment it is on.
    pub segment: SegmentId,
    /// The client's hardware address (the latest one it used).
    pub mac: MacAddr,
    /// The client identifier (option 61) it sent, if any: then that, not the MAC,
    /// is the client's identity.
    pub client_id: Option<Vec<u8>>,
    /// The address.
    pub ip: Ipv4Addr,
    /// When the lease ends unless renewed.
    pub expires: UnixTime,
    /// The host name it sent (bounded, untrusted text).
    pub hostname: Option<String>,
}

impl Lease {
    /// Who holds it.
    pub(crate) fn holder(&self) -> ClientKey {
        ClientKey::new(self.client_id.as_deref(), self.mac)
    }
}

/// Something that happened to a lease. The integrator persists `Bound` leases
/// and forgets the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A lease was granted or extended (every ACK). It replaces any earlier lease
    /// of the same client on the same segment, and any earlier lease of its
    /// address.
    Bound(Lease),
    /// The client gave the lease back (DHCPRELEASE).
    Released(Lease),
    /// The lease ran out, or no longer fits the configuration.
    Expired(Lease),
    /// The client found the address already in use (DHCPDECLINE); any lease or
    /// offer for it is gone and the address rests for a while.
    Declined {
        /// The segment.
        segment: SegmentId,
        /// The declining client's hardware address.
        mac: MacAddr,
        /// The address it declined.
        ip: Ipv4Addr,
    },
}

/// A client's identity: its client identifier (option 61) when it sends one,
/// else its hardware address. A client that changes MAC but keeps its
/// identifier is the same client; two identifiers on one MAC are two clients.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ClientKey {
    /// Option 61's bytes.
    Id(Vec<u8>),
    /// `chaddr`.
    Mac(MacAddr),
}

impl ClientKey {
    pub(crate) fn new(client_id: Option<&[u8]>, mac: MacAddr) -> Self {
        match client_id {
            Some(id) if !id.is_empty() => ClientKey::Id(id.to_vec()),
            _ => ClientKey::Mac(mac),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_client_id_when_there_is_one() {
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        assert_eq!(ClientKey::new(Some(b"x"), a), ClientKey::new(Some(b"x"), b));
        assert_ne!(ClientKey::new(Some(b"x"), a), ClientKey::new(Some(b"y"), a));
        assert_eq!(ClientKey::new(Some(b""), a), ClientKey::new(None, a));
    }

    #[test]
    fn leases_round_trip_through_json() {
        let lease = Lease {
            segment: SegmentId::new("lan").expect("valid"),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            client_id: Some(vec![1, 2, 3]),
            ip: Ipv4Addr::new(10, 0, 1, 100),
            expires: 1_700_000_000,
            hostname: Some("tv\u{202e}".into()),
        };
        let json = serde_json::to_string(&lease).expect("serialize");
        assert_eq!(serde_json::from_str::<Lease>(&json).expect("deserialize"), lease);
    }
}
