//! DHCPv4: the server state machine (pure), packet capture parsing for observer
//! mode, and dnsmasq lease files. (Filled in by the DHCP work.)

// TEMPORARY until the DHCP server lands (the integrator's placeholder).
use serde::{Deserialize, Serialize};

/// A DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Segment.
    pub segment: crate::config::SegmentId,
    /// Client MAC.
    pub mac: crate::config::MacAddr,
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// Address.
    pub ip: std::net::Ipv4Addr,
    /// Expiry.
    pub expires: crate::inventory::UnixTime,
    /// Host name.
    pub hostname: Option<String>,
}
