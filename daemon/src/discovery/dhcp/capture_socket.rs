//! Observer mode's socket: an AF_PACKET (SOCK_DGRAM) socket that receives only
//! incoming IPv4 UDP packets to port 67 on one interface, readable from tokio.
//! mDNS sender binding uses the same socket for UDP to port 5353, over IPv4
//! and over IPv6 ([`CaptureSocket::open_port_v6`]).
//!
//! The kernel does the selecting, with a classic BPF filter: the interface index
//! (ancillary load `SKF_AD_IFINDEX`; packet sockets ignore `SO_BINDTODEVICE`),
//! not outgoing (`SKF_AD_PKTTYPE`), IPv4, UDP, not a non-first fragment, UDP
//! destination port 67 (IPv6: UDP as the first next header, the port).
//! Packets queued before the filter was attached are drained. socket2 provides the packet domain and the filter without `unsafe`.
//!
//! The one `unsafe` block in this file registers the socket with tokio:
//! tokio 1.54 deprecated the safe `AsyncFd::new` as unsound for arbitrary `T`
//! and offers only `unsafe fn AsyncFd::register`, whose contract (the fd stays
//! open and the same while registered) a `socket2::Socket`, which owns its fd,
//! always meets. The alternatives were the deprecated function or passing the
//! packet socket off as a `tokio::net::UdpSocket`.
#![allow(unsafe_code)]

use std::io::{self, Read};

use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::capture::{parse_client_packet, CaptureError, ClientPacket};
use super::server::SERVER_PORT;

/// Receive buffer for [`CaptureSocket::recv_client_packet`]: an Ethernet MTU's
/// worth (DHCP messages are far smaller; a longer packet is cut and then
/// rejected by the parser).
pub const CAPTURE_BUFFER: usize = 2048;

/// Why the capture socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CaptureSocketError {
    /// The interface does not exist (in this network namespace).
    #[error("interface {interface}: {source}")]
    Interface {
        /// Its name.
        interface: String,
        /// The lookup's error.
        #[source]
        source: nix::Error,
    },
    /// A socket call failed (`what` names it).
    #[error("capture socket on {interface}: {what}: {source}")]
    Socket {
        /// The interface.
        interface: String,
        /// The failing step.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A capture socket for DHCP client packets on one interface.
#[derive(Debug)]
pub struct CaptureSocket {
    fd: AsyncFd<Socket>,
    interface: String,
}

impl CaptureSocket {
    /// Opens it. Needs CAP_NET_RAW and a tokio runtime (with I/O) to be
    /// running; the socket belongs to the calling thread's network namespace.
    pub fn open(interface: &str) -> Result<Self, CaptureSocketError> {
        Self::open_port(interface, SERVER_PORT)
    }

    /// Opens one for incoming IPv4 UDP packets to `port` (68: what DHCP
    /// servers send clients, for `bulkhead init`'s look for another server).
    pub fn open_port(interface: &str, port: u16) -> Result<Self, CaptureSocketError> {
        Self::open_filtered(interface, port, Family::V4)
    }

    /// Opens one for incoming IPv6 UDP packets to `port` whose UDP header
    /// follows the IPv6 header (no extension headers: mDNS has none).
    pub fn open_port_v6(interface: &str, port: u16) -> Result<Self, CaptureSocketError> {
        Self::open_filtered(interface, port, Family::V6)
    }

    fn open_filtered(interface: &str, port: u16, family: Family) -> Result<Self, CaptureSocketError> {
        let ifindex = nix::net::if_::if_nametoindex(interface).map_err(|source| CaptureSocketError::Interface {
            interface: interface.to_string(),
            source,
        })?;
        let fail = |what: &'static str| {
            let interface = interface.to_string();
            move |source| CaptureSocketError::Socket {
                interface,
                what,
                source,
            }
        };
        // The protocol is in network byte order; ETH_P_IP(V6) fit in u16.
        let ethertype = match family {
            Family::V4 => libc::ETH_P_IP as u16,
            Family::V6 => libc::ETH_P_IPV6 as u16,
        };
        let protocol = Protocol::from(i32::from(ethertype.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(protocol)).map_err(fail("socket"))?;
        socket.set_nonblocking(true).map_err(fail("non-blocking"))?;
        let program: Vec<SockFilter> = filter_program(ifindex, port, family)
            .iter()
            .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
            .collect();
        socket.attach_filter(&program).map_err(fail("attach filter"))?;
        drain(&socket).map_err(fail("drain"))?;
        // SAFETY: `AsyncFd::register` needs `as_raw_fd()` to be a valid, open fd
        // that stays open and the same for as long as the `AsyncFd` holds it.
        // `socket2::Socket` owns its fd (closed only when the Socket drops, which
        // happens after deregistration, inside `AsyncFd`'s drop), and its
        // `as_raw_fd` always returns that one fd. Nothing here hands the fd out.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| fail("register with tokio")(e.into()))?;
        Ok(CaptureSocket {
            fd,
            interface: interface.to_string(),
        })
    }

    /// The interface it captures on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Waits for the next packet and copies it (from the IP header on) into
    /// `buf`; returns its length, cut to `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                let mut socket: &Socket = inner.get_ref();
                socket.read(buf)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits for the next packet, copies it (from the IPv4 header on) into
    /// `buf` and says which Ethernet address sent the frame (None when the
    /// link has no 6-byte addresses).
    pub async fn recv_from_mac(&self, buf: &mut [u8]) -> io::Result<(usize, Option<crate::config::MacAddr>)> {
        use std::os::fd::AsRawFd;
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                nix::sys::socket::recvfrom::<nix::sys::socket::LinkAddr>(inner.get_ref().as_raw_fd(), buf)
                    .map_err(io::Error::from)
            }) {
                Ok(result) => {
                    let (len, from) = result?;
                    let mac = from.and_then(|a| a.addr()).map(crate::config::MacAddr);
                    return Ok((len, mac));
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// Waits for the next packet and parses it. The outer error is the
    /// socket's; the inner one a packet to count and drop.
    /// The packet counts only for the MAC that sent the frame: a `chaddr`
    /// naming another device is [`CaptureError::Spoofed`].
    pub async fn recv_client_packet(&self) -> io::Result<Result<ClientPacket, CaptureError>> {
        let mut buf = [0u8; CAPTURE_BUFFER];
        let (len, sender) = self.recv_from_mac(&mut buf).await?;
        let packet = parse_client_packet(buf.get(..len).unwrap_or(&buf));
        Ok(match (packet, sender) {
            (Ok(p), Some(sender)) if p.mac != sender => Err(CaptureError::Spoofed { sender, claimed: p.mac }),
            (packet, _) => packet,
        })
    }
}

/// Reads and drops what arrived before the filter was attached (bounded, so a
/// busy link cannot keep this going).
fn drain(socket: &Socket) -> io::Result<()> {
    let mut buf = [0u8; 64];
    let mut socket = socket;
    for _ in 0..100_000 {
        match socket.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
const LDX_B_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH
const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// Ancillary data offsets (SKF_AD_OFF + SKF_AD_*), as the u32 the loads take.
const AD_PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
const AD_IFINDEX: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_IFINDEX) as u32;
/// `PACKET_OUTGOING`: sent by this host.
const PACKET_OUTGOING: u32 = 4;

/// Which IP packets a capture socket takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The filter. Offsets are from the IP header (SOCK_DGRAM). Every failed
/// check jumps to the final `ret #0`.
fn filter_program(ifindex: u32, port: u16, family: Family) -> Vec<Insn> {
    // (code, k, jump to drop when the comparison is true / false / never)
    enum Drop {
        IfTrue,
        IfFalse,
        No,
    }
    let mut steps: Vec<(u16, u32, Drop)> = vec![
        (LD_W_ABS, AD_IFINDEX, Drop::No),
        (JEQ_K, ifindex, Drop::IfFalse),
        (LD_W_ABS, AD_PKTTYPE, Drop::No),
        (JEQ_K, PACKET_OUTGOING, Drop::IfTrue),
        (LD_B_ABS, 0, Drop::No),
        (ALU_AND_K, 0xf0, Drop::No),
    ];
    match family {
        Family::V4 => steps.extend([
            (JEQ_K, 0x40, Drop::IfFalse),
            (LD_B_ABS, 9, Drop::No),
            (JEQ_K, 17, Drop::IfFalse),
            (LD_H_ABS, 6, Drop::No),
            (JSET_K, 0x1fff, Drop::IfTrue),
            (LDX_B_MSH, 0, Drop::No),
            (LD_H_IND, 2, Drop::No),
            (JEQ_K, u32::from(port), Drop::IfFalse),
        ]),
        // Fixed 40-byte header; next header 17 (UDP) at 6, its destination
        // port at 40 + 2.
        Family::V6 => steps.extend([
            (JEQ_K, 0x60, Drop::IfFalse),
            (LD_B_ABS, 6, Drop::No),
            (JEQ_K, 17, Drop::IfFalse),
            (LD_H_ABS, 42, Drop::No),
            (JEQ_K, u32::from(port), Drop::IfFalse),
        ]),
    }
    let accept = steps.len();
    let drop = accept + 1;
    let mut program: Vec<Insn> = steps
        .iter()
        .enumerate()
        .map(|(i, (code, k, d))| {
            // Relative jump to the drop instruction; the program is tiny.
            let to_drop = u8::try_from(drop - i - 1).unwrap_or(u8::MAX);
            let (jt, jf) = match d {
                Drop::IfTrue => (to_drop, 0),
                Drop::IfFalse => (0, to_drop),
                Drop::No => (0, 0),
            };
            Insn {
                code: *code,
                jt,
                jf,
                k: *k,
            }
        })
        .collect();
    program.push(Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: 0x0004_0000,
    });
    program.push(Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    });
    program
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::dhcp::capture::tests::frame;
    use crate::discovery::dhcp::wire::tests::client_message;
    use dhcproto::v4::MessageType;

    /// A classic BPF interpreter for the instructions above, with the kernel's
    /// rule that an out-of-bounds load ends the program with 0 (drop).
    fn run(program: &[Insn], packet: &[u8], ifindex: u32, pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |at: u32, size: usize| -> Option<u32> {
            match at {
                AD_IFINDEX => Some(ifindex),
                AD_PKTTYPE => Some(pkttype),
                _ => {
                    let at = usize::try_from(at).ok()?;
                    let bytes = packet.get(at..at + size)?;
                    Some(bytes.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b)))
                }
            }
        };
        loop {
            let i = program[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => match load(i.k, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_ABS => match load(i.k, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_B_ABS => match load(i.k, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_IND => match load(x + i.k, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LDX_B_MSH => match load(i.k, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                ALU_AND_K => a &= i.k,
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_filter_keeps_incoming_dhcp_client_packets_on_the_interface_only() {
        let program = filter_program(7, SERVER_PORT, Family::V4);
        let good = frame(&client_message(MessageType::Discover, [2, 0, 0, 0, 0, 1], vec![]));
        assert_ne!(run(&program, &good, 7, 0), 0);
        assert_ne!(run(&program, &good, 7, 1), 0, "broadcast packet type");
        assert_eq!(run(&program, &good, 8, 0), 0, "other interface");
        assert_eq!(run(&program, &good, 7, PACKET_OUTGOING), 0, "our own");
        let with = |i: usize, v: u8| {
            let mut p = good.clone();
            p[i] = v;
            run(&program, &p, 7, 0)
        };
        assert_eq!(with(0, 0x60), 0, "IPv6");
        assert_eq!(with(9, 6), 0, "TCP");
        assert_eq!(with(23, 68), 0, "to the client port");
        assert_eq!(with(7, 1), 0, "non-first fragment");
        assert_ne!(with(6, 0x40), 0, "don't-fragment is fine");
        // IP options: the UDP header moves and the filter follows it.
        let mut opts = good[..20].to_vec();
        opts[0] = 0x46;
        opts.extend_from_slice(&[1, 1, 1, 0]);
        opts.extend_from_slice(&good[20..]);
        assert_ne!(run(&program, &opts, 7, 0), 0);
        for len in 0..24 {
            assert_eq!(run(&program, &good[..len], 7, 0), 0, "{len} bytes");
        }
    }

    #[test]
    fn the_v6_filter_keeps_incoming_udp_to_the_port_on_the_interface_only() {
        let program = filter_program(3, 5353, Family::V6);
        let mut good = vec![0x60, 0, 0, 0, 0, 12, 17, 255];
        good.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        good.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb]);
        good.extend_from_slice(&[0x14, 0xe9, 0x14, 0xe9, 0, 12, 0, 0, 0, 0, 0, 0]);
        assert_ne!(run(&program, &good, 3, 2), 0, "multicast to 5353");
        assert_eq!(run(&program, &good, 4, 2), 0, "other interface");
        assert_eq!(run(&program, &good, 3, PACKET_OUTGOING), 0, "our own");
        let with = |i: usize, v: u8| {
            let mut p = good.clone();
            p[i] = v;
            run(&program, &p, 3, 2)
        };
        assert_eq!(with(0, 0x45), 0, "IPv4");
        assert_eq!(with(6, 0), 0, "an extension header first");
        assert_eq!(with(43, 0xea), 0, "another port");
        for len in 0..44 {
            assert_eq!(run(&program, &good[..len], 3, 2), 0, "{len} bytes");
        }
    }
}
