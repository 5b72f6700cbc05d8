//! Observer mode: client DHCP packets captured off the wire (AF_PACKET,
//! SOCK_DGRAM, so buffers start at the IPv4 header) while another server (e.g.
//! dnsmasq) hands out addresses. Pure parsing; the socket is in
//! `capture_socket`.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;

use super::evidence::evidence_of;
use super::server::SERVER_PORT;
use super::wire::{self, WireError};
use crate::classify::Evidence;
use crate::config::MacAddr;

/// Why a captured packet was not a client DHCP message. The caller counts these.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Shorter than an IPv4 header.
    #[error("{0} bytes is too short for an IPv4 header")]
    Short(usize),
    /// The version field is not 4.
    #[error("IP version {0}, not 4")]
    NotIpv4(u8),
    /// The header length is below 20 bytes or past the packet.
    #[error("bad IPv4 header length {0}")]
    HeaderLength(usize),
    /// The total length is below the header length or past the packet.
    #[error("bad IPv4 total length {0}")]
    TotalLength(usize),
    /// A fragment (more-fragments set or a non-zero offset).
    #[error("IPv4 fragment")]
    Fragment,
    /// Not UDP.
    #[error("IP protocol {0}, not UDP")]
    NotUdp(u8),
    /// The UDP length is below 8 or past the IP payload.
    #[error("bad UDP length {0}")]
    UdpLength(usize),
    /// Not sent to the DHCP server port.
    #[error("UDP destination port {0}, not 67")]
    NotServerPort(u16),
    /// `chaddr` names another device than the frame's sender: a forged
    /// message (or a scanner's fixed payload). It counts for nobody.
    #[error("chaddr {claimed} in a frame from {sender}")]
    Spoofed {
        /// The frame's source MAC.
        sender: MacAddr,
        /// The MAC the message claims.
        claimed: MacAddr,
    },
    /// The DHCP message itself is malformed.
    #[error("DHCP message: {source}")]
    Dhcp {
        /// Why.
        #[source]
        source: WireError,
    },
}

/// What a captured client packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPacket {
    /// The client's hardware address (`chaddr`).
    pub mac: MacAddr,
    /// The DHCP message type.
    pub kind: MessageType,
    /// What the message says about the device.
    pub evidence: Evidence,
    /// The address the client asks for (option 50) or already uses (`ciaddr`),
    /// if any. A claim, not a fact: the other server may refuse it.
    pub address: Option<Ipv4Addr>,
}

/// Parses an IPv4 packet carrying a client DHCP message (UDP to port 67).
pub fn parse_client_packet(ip_packet: &[u8]) -> Result<ClientPacket, CaptureError> {
    let payload = udp_payload(ip_packet)?;
    let msg = wire::decode(payload).map_err(|source| CaptureError::Dhcp { source })?;
    let ciaddr = msg.message.ciaddr();
    let address = msg.requested_ip().or((!ciaddr.is_unspecified()).then_some(ciaddr));
    Ok(ClientPacket {
        mac: msg.mac,
        kind: msg.kind,
        evidence: evidence_of(&msg.message),
        address,
    })
}

/// The UDP payload of a whole, unfragmented IPv4/UDP packet to port 67.
pub fn udp_payload(p: &[u8]) -> Result<&[u8], CaptureError> {
    udp_payload_to(p, SERVER_PORT)
}

/// The UDP payload of a whole, unfragmented IPv4/UDP packet to `want_port`.
pub fn udp_payload_to(p: &[u8], want_port: u16) -> Result<&[u8], CaptureError> {
    let [version_ihl, _tos, tl0, tl1, _id0, _id1, ff0, ff1, _ttl, protocol, ..] = *p else {
        return Err(CaptureError::Short(p.len()));
    };
    if p.len() < 20 {
        return Err(CaptureError::Short(p.len()));
    }
    if version_ihl >> 4 != 4 {
        return Err(CaptureError::NotIpv4(version_ihl >> 4));
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if ihl < 20 || ihl > p.len() {
        return Err(CaptureError::HeaderLength(ihl));
    }
    let total = usize::from(u16::from_be_bytes([tl0, tl1]));
    if total < ihl || total > p.len() {
        return Err(CaptureError::TotalLength(total));
    }
    if u16::from_be_bytes([ff0, ff1]) & 0x3fff != 0 {
        return Err(CaptureError::Fragment);
    }
    if protocol != 17 {
        return Err(CaptureError::NotUdp(protocol));
    }
    // Trailing bytes past `total` (Ethernet padding) are not part of the packet.
    let udp = p.get(ihl..total).ok_or(CaptureError::TotalLength(total))?;
    let [_sp0, _sp1, dp0, dp1, ul0, ul1, ..] = *udp else {
        return Err(CaptureError::UdpLength(udp.len()));
    };
    let udp_len = usize::from(u16::from_be_bytes([ul0, ul1]));
    if udp_len < 8 || udp_len > udp.len() {
        return Err(CaptureError::UdpLength(udp_len));
    }
    let port = u16::from_be_bytes([dp0, dp1]);
    if port != want_port {
        return Err(CaptureError::NotServerPort(port));
    }
    udp.get(8..udp_len).ok_or(CaptureError::UdpLength(udp_len))
}

/// The UDP payload of an IPv6 packet whose header is followed directly by a
/// UDP header to `port` (no extension headers).
pub fn udp6_payload_to(p: &[u8], port: u16) -> Option<&[u8]> {
    if p.first()? >> 4 != 6 || *p.get(6)? != 17 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]));
    let udp = p.get(40..40usize.checked_add(payload_len)?)?;
    let dst = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dst != port || udp_len < 8 || udp_len > udp.len() {
        return None;
    }
    udp.get(8..udp_len)
}

#[cfg(test)]
pub(crate) mod tests {
    use dhcproto::v4::DhcpOption;

    use super::*;
    use crate::discovery::dhcp::wire::tests::client_message;

    /// Wraps a DHCP message in UDP 68→67 and IPv4 0.0.0.0→255.255.255.255.
    pub(crate) fn frame(dhcp: &[u8]) -> Vec<u8> {
        let udp_len = (8 + dhcp.len()) as u16;
        let total = 20 + udp_len;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&68u16.to_be_bytes());
        p.extend_from_slice(&67u16.to_be_bytes());
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(dhcp);
        p
    }

    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    fn request() -> Vec<u8> {
        frame(&client_message(
            MessageType::Request,
            MAC,
            vec![
                DhcpOption::Hostname("cam".into()),
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 168, 1, 23)),
                DhcpOption::ClassIdentifier(b"udhcp 1.36".to_vec()),
            ],
        ))
    }

    #[test]
    fn parses_a_client_request() {
        let p = parse_client_packet(&request()).expect("valid");
        assert_eq!(p.mac, MacAddr(MAC));
        assert_eq!(p.kind, MessageType::Request);
        assert_eq!(p.address, Some(Ipv4Addr::new(192, 168, 1, 23)));
        assert_eq!(p.evidence.hostname.as_deref(), Some("cam"));
        assert_eq!(p.evidence.vendor_class.as_deref(), Some("udhcp 1.36"));
        // Ethernet padding after the IP packet is ignored.
        let mut padded = request();
        padded.extend_from_slice(&[0; 30]);
        assert_eq!(parse_client_packet(&padded).expect("valid"), p);
    }

    #[test]
    fn ciaddr_is_the_address_when_nothing_is_requested() {
        let mut dhcp = client_message(MessageType::Request, MAC, vec![]);
        dhcp[12..16].copy_from_slice(&[192, 168, 1, 40]);
        let p = parse_client_packet(&frame(&dhcp)).expect("valid");
        assert_eq!(p.address, Some(Ipv4Addr::new(192, 168, 1, 40)));
        let p = parse_client_packet(&frame(&client_message(MessageType::Discover, MAC, vec![]))).expect("valid");
        assert_eq!(p.address, None);
    }

    #[test]
    fn rejects_what_is_not_a_client_dhcp_packet() {
        let good = request();
        let with = |i: usize, v: u8| {
            let mut p = good.clone();
            p[i] = v;
            parse_client_packet(&p)
        };
        assert!(matches!(with(0, 0x65), Err(CaptureError::NotIpv4(6))));
        assert!(matches!(with(0, 0x44), Err(CaptureError::HeaderLength(16))));
        assert!(matches!(with(0, 0x4f), Err(CaptureError::UdpLength(_))));
        assert!(matches!(with(9, 6), Err(CaptureError::NotUdp(6))));
        assert!(matches!(with(6, 0x20), Err(CaptureError::Fragment)));
        assert!(matches!(with(7, 1), Err(CaptureError::Fragment)));
        assert!(matches!(with(23, 68), Err(CaptureError::NotServerPort(68))));
        assert!(matches!(with(2, 0xff), Err(CaptureError::TotalLength(_))));
        assert!(matches!(with(24, 0xff), Err(CaptureError::UdpLength(_))));
        assert!(matches!(
            with(28, 2),
            Err(CaptureError::Dhcp {
                source: WireError::NotRequest(2)
            })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let good = request();
        for len in 0..good.len() {
            assert!(parse_client_packet(&good[..len]).is_err(), "prefix of {len} bytes");
        }
        // Truncated DHCP messages in consistent IP/UDP headers: errors up to the
        // options, then whatever the options allow; never a panic.
        let dhcp = &good[28..];
        for len in 0..dhcp.len() {
            let r = parse_client_packet(&frame(&dhcp[..len]));
            assert!(len >= 243 || matches!(r, Err(CaptureError::Dhcp { .. })), "{len}");
        }
    }
}
