//! PURE: what a sampled packet tried to reach, from its first bytes (IPv4 or
//! IPv6 header and the transport header's ports or ICMP type). Hostile
//! input: every offset is checked; what cannot be read is `None` (counted by
//! the caller), never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// The transport protocol of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP (the destination port is known).
    Tcp,
    /// UDP (the destination port is known).
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
    /// Anything else (its protocol number).
    Other(u8),
}

/// What a refused packet tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Its transport.
    pub transport: Transport,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port (TCP, UDP).
    pub dst_port: Option<u16>,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Reads an IPv4 or IPv6 packet's start.
pub fn parse(ip: &[u8]) -> Option<Attempt> {
    match ip.first()? >> 4 {
        4 => parse_v4(ip),
        6 => parse_v6(ip),
        _ => None,
    }
}

fn parse_v4(ip: &[u8]) -> Option<Attempt> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let proto = *ip.get(9)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
    // A later fragment carries no transport header.
    let fragment_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x1fff;
    let l4 = if fragment_offset == 0 { ip.get(ihl..) } else { None };
    Some(attempt(proto, src.into(), dst.into(), l4))
}

fn parse_v6(ip: &[u8]) -> Option<Attempt> {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
    let mut next = *ip.get(6)?;
    let mut at = 40;
    // Walk a few extension headers (hop-by-hop, routing, destination options);
    // a fragment header ends the walk unless it is the first fragment.
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                let len = (usize::from(*ip.get(at + 1)?) + 1) * 8;
                next = *ip.get(at)?;
                at += len;
            }
            44 => {
                let offset = u16::from_be_bytes([*ip.get(at + 2)?, *ip.get(at + 3)?]) >> 3;
                next = *ip.get(at)?;
                at += 8;
                if offset != 0 {
                    return Some(attempt(next, src.into(), dst.into(), None));
                }
            }
            _ => break,
        }
    }
    Some(attempt(next, src.into(), dst.into(), ip.get(at..)))
}

fn attempt(proto: u8, src: IpAddr, dst: IpAddr, l4: Option<&[u8]>) -> Attempt {
    let port = || Some(u16::from_be_bytes([*l4?.get(2)?, *l4?.get(3)?]));
    let (transport, dst_port) = match proto {
        TCP => (Transport::Tcp, port()),
        UDP => (Transport::Udp, port()),
        ICMP | ICMPV6 => (Transport::Icmp, None),
        other => (Transport::Other(other), None),
    };
    Attempt {
        transport,
        src,
        dst,
        dst_port,
    }
}

#[cfg(test)]
pub(crate) fn tcp_syn_v4(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, TCP, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_over_ipv4_gives_its_port() {
        let a = parse(&tcp_syn_v4([10, 0, 1, 20], [10, 0, 1, 10], 22)).expect("parses");
        assert_eq!(a.transport, Transport::Tcp);
        assert_eq!(a.src, IpAddr::from([10, 0, 1, 20]));
        assert_eq!(a.dst, IpAddr::from([10, 0, 1, 10]));
        assert_eq!(a.dst_port, Some(22));
    }

    #[test]
    fn udp_over_ipv6_after_a_hop_by_hop_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        p.extend_from_slice(&[UDP, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, 8 bytes
        p.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35, 0, 8, 0, 0]);
        let a = parse(&p).expect("parses");
        assert_eq!(a.transport, Transport::Udp);
        assert_eq!(a.dst_port, Some(53));
    }

    #[test]
    fn short_or_odd_packets_never_panic() {
        let good = tcp_syn_v4([10, 0, 1, 20], [10, 0, 1, 10], 22);
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x41]), None, "IHL below 5");
        let mut v6 = vec![0x60; 40];
        v6[6] = 0; // hop-by-hop with a length past the end
        v6.extend_from_slice(&[0, 255]);
        let _ = parse(&v6);
        // A later fragment: no port.
        let mut frag = good.clone();
        frag[6] = 0x00;
        frag[7] = 0x10;
        assert_eq!(parse(&frag).and_then(|a| a.dst_port), None);
    }
}
