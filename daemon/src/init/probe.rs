//! Is another DHCP server on this link? A DHCPDISCOVER, broadcast (twice), and
//! a few seconds for an OFFER that answers it.
//!
//! Sent as a whole IPv4 packet from 0.0.0.0 on a packet socket: a UDP socket
//! would take a source address from another link (the WAN's), and servers
//! then answer there instead; and port 68 may belong to this machine's own
//! DHCP client. The answer, broadcast to port 68 because the DISCOVER asks
//! for broadcast, is read with the packet-socket capture the observer uses,
//! filtered to the link and port 68. The message is built and the answer read
//! by hand: a few fixed fields and options, nothing a hostile answer can drive.

use std::net::Ipv4Addr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::discovery::dhcp::{udp_payload_to, CaptureSocket, CAPTURE_BUFFER, CLIENT_PORT, SERVER_PORT};

/// DHCP's magic cookie.
const COOKIE: [u8; 4] = [99, 130, 83, 99];

/// A DHCPDISCOVER from `mac` with transaction `xid`, asking for a broadcast answer.
pub fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10] = 0x80; // flags: broadcast
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&COOKIE);
    m.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    m.extend_from_slice(&[55, 3, 1, 3, 6]); // mask, router, DNS
    m.push(255);
    m.resize(300, 0);
    m
}

/// `dhcp` in UDP 68 → 67 in IPv4 0.0.0.0 → 255.255.255.255 (UDP checksum
/// 0: none, which IPv4 allows).
pub fn ipv4_udp_broadcast(dhcp: &[u8]) -> Vec<u8> {
    let udp_len = 8 + dhcp.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 255]);
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    p.extend_from_slice(&SERVER_PORT.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(dhcp);
    p
}

/// The Internet checksum of `header`.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `packet` (an IPv4 packet) to the Ethernet broadcast address on
/// interface `ifindex` through the packet socket.
#[allow(unsafe_code)]
fn send_broadcast(socket: &Socket, ifindex: u32, packet: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value before the
    // fields below are set.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    to.sll_ifindex = i32::try_from(ifindex).map_err(std::io::Error::other)?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the fd is the open packet socket `socket` owns; the buffer and
    // the address are valid for the lengths given, which are their sizes.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The server identifier of an OFFER answering `xid`, if `payload` is one.
pub fn offer_server(payload: &[u8], xid: u32) -> Option<Ipv4Addr> {
    if payload.len() < 240 || payload[0] != 2 || payload[4..8] != xid.to_be_bytes() || payload[236..240] != COOKIE {
        return None;
    }
    let mut rest = &payload[240..];
    let (mut offer, mut server) = (false, None);
    while let [code, tail @ ..] = rest {
        match code {
            0 => rest = tail,
            255 => break,
            _ => {
                let (&len, tail) = tail.split_first()?;
                let data = tail.get(..usize::from(len))?;
                match (code, data) {
                    (53, [2]) => offer = true,
                    (54, [a, b, c, d]) => server = Some(Ipv4Addr::new(*a, *b, *c, *d)),
                    _ => {}
                }
                rest = &tail[usize::from(len)..];
            }
        }
    }
    // A server that leaves out its identifier still answered: say where from
    // (siaddr) rather than miss it.
    offer.then(|| server.unwrap_or_else(|| Ipv4Addr::new(payload[20], payload[21], payload[22], payload[23])))
}

/// Looks for another DHCP server on `interface` (which must be up). `mac`
/// goes in the DISCOVER's chaddr.
pub async fn other_dhcp_server(interface: &str, mac: [u8; 6], wait: Duration) -> std::io::Result<Option<Ipv4Addr>> {
    let capture = CaptureSocket::open_port(interface, CLIENT_PORT).map_err(std::io::Error::other)?;
    let xid = rand_core::RngCore::next_u32(&mut rand_core::OsRng);
    let ifindex = nix::net::if_::if_nametoindex(interface).map_err(std::io::Error::from)?;
    let protocol = Protocol::from(i32::from((libc::ETH_P_IP as u16).to_be()));
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(protocol))?;
    let message = ipv4_udp_broadcast(&discover(mac, xid));
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; CAPTURE_BUFFER];
    // Twice, a second apart: a lost first DISCOVER is not "no server".
    let mut sent = 0;
    loop {
        if sent < 2 {
            send_broadcast(&socket, ifindex, &message)?;
            sent += 1;
        }
        let resend = tokio::time::Instant::now() + wait / 2;
        let until = if sent < 2 { resend.min(deadline) } else { deadline };
        loop {
            match tokio::time::timeout_at(until, capture.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(len)) => {
                    let packet = buf.get(..len).unwrap_or(&buf);
                    if let Some(server) = udp_payload_to(packet, CLIENT_PORT)
                        .ok()
                        .and_then(|p| offer_server(p, xid))
                    {
                        return Ok(Some(server));
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OFFER as a server writes it (answering `xid`).
    fn offer(xid: u32, options: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 2;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[20..24].copy_from_slice(&[192, 0, 2, 9]);
        m.extend_from_slice(&COOKIE);
        m.extend_from_slice(options);
        m
    }

    #[test]
    fn an_offer_for_our_discover_names_its_server_anything_else_does_not() {
        let d = discover([2, 0, 0, 0, 0, 1], 7);
        assert_eq!(
            (d[0], d[10], &d[28..34], &d[236..240]),
            (1, 0x80, &[2u8, 0, 0, 0, 0, 1][..], &COOKIE[..])
        );
        assert_eq!(&d[240..243], &[53, 1, 1]);
        let server = Some(Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(
            offer_server(&offer(7, &[0, 53, 1, 2, 54, 4, 192, 168, 1, 1, 255]), 7),
            server
        );
        // No server identifier: siaddr.
        assert_eq!(
            offer_server(&offer(7, &[53, 1, 2, 255]), 7),
            Some(Ipv4Addr::new(192, 0, 2, 9))
        );
        // Another transaction, an ACK, our own DISCOVER, cut short, lying lengths.
        assert_eq!(offer_server(&offer(8, &[53, 1, 2, 255]), 7), None);
        assert_eq!(offer_server(&offer(7, &[53, 1, 5, 255]), 7), None);
        assert_eq!(offer_server(&d, 7), None);
        assert_eq!(offer_server(&offer(7, &[53, 1, 2])[..200], 7), None);
        assert_eq!(offer_server(&offer(7, &[53, 200, 2]), 7), None);
        assert_eq!(offer_server(&offer(7, &[53]), 7), None);
    }

    #[test]
    fn the_discover_goes_out_as_a_packet_the_capture_parser_reads() {
        let d = discover([2, 0, 0, 0, 0, 1], 9);
        let p = ipv4_udp_broadcast(&d);
        assert_eq!(checksum(&p[..20]), 0, "a header with its checksum sums to zero");
        assert_eq!(
            crate::discovery::dhcp::udp_payload_to(&p, SERVER_PORT).expect("udp"),
            &d[..]
        );
    }
}
