//! Whole Ethernet frames out of one interface, with any source MAC: what a
//! compromised device with root can send, for tests of forged sources (a DHCP
//! flood with a fresh MAC per frame, a frame in another device's name).
//!
//! One `unsafe` block: `sendto` with a `sockaddr_ll`, which neither socket2 nor
//! nix can build safely.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

/// An AF_PACKET raw socket that sends on one interface (of the calling
/// thread's network namespace).
pub struct RawSender {
    socket: Socket,
    ifindex: i32,
}

impl RawSender {
    /// Opens it on `ifname`. Needs CAP_NET_RAW.
    pub fn open(ifname: &str) -> io::Result<RawSender> {
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)?;
        // Protocol 0: send only, receive nothing.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        Ok(RawSender {
            socket,
            ifindex: i32::try_from(ifindex).map_err(io::Error::other)?,
        })
    }

    /// Sends one frame (destination, source, EtherType, payload) as given.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is valid before the
        // fields below are set.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        if let Some(dst) = frame.get(..6) {
            to.sll_addr[..6].copy_from_slice(dst);
        }
        // SAFETY: the fd is the open socket this sender owns; the buffer and
        // the address are valid for the lengths given, which are their sizes.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// An Ethernet broadcast frame from `src` carrying `payload` as UDP
/// `sport` → `dport` in IPv4 0.0.0.0 → 255.255.255.255 (a DHCP client's).
pub fn udp_broadcast_frame(src: [u8; 6], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
    let mut sum: u32 = f[ip_start..ip_start + 20]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[ip_start + 10..ip_start + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame from `src` to `dst` carrying an IPv6 neighbour
/// advertisement (RFC 4861 section 4.4) from `from` to `to`, hop limit 255,
/// that says `target` is at `target_mac` (its target link-layer address
/// option). `flags`: 0x20 override, 0x40 solicited, 0x80 router.
#[allow(clippy::too_many_arguments)]
pub fn neighbour_advert_frame(
    src: [u8; 6],
    dst: [u8; 6],
    from: std::net::Ipv6Addr,
    to: std::net::Ipv6Addr,
    flags: u8,
    target: std::net::Ipv6Addr,
    target_mac: [u8; 6],
) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, flags, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&target_mac);
    // Checksum over the pseudo-header (source, destination, length, next
    // header 58) and the message.
    let mut pseudo = Vec::with_capacity(40 + icmp.len());
    pseudo.extend_from_slice(&from.octets());
    pseudo.extend_from_slice(&to.octets());
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&icmp);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&from.octets());
    f.extend_from_slice(&to.octets());
    f.extend_from_slice(&icmp);
    f
}
