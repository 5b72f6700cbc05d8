//! NFLOG: the packets the firewall's `log group N` statements copy to
//! userspace (over `NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_ULOG`). The
//! detection rules (`render/detect.rs`) sample refused connections this way;
//! [`crate::detect`] reads them.
//!
//! Numbers from the uapi header `linux/netfilter/nfnetlink_log.h`. The config
//! messages and the packet attributes' payloads are in network byte order;
//! netlink's own headers are in host order ([`super::nfnl`]).
//!
//! [`parse_datagram`] is PURE and checks every length; [`NflogSocket`] is the
//! edge: it binds the group, asks for the first bytes of each packet, and
//! reads batches.

use std::io;

use netlink_sys::Socket;
use tokio::io::unix::AsyncFd;

use super::nfnl::{self, MessageWriter, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;

const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_NLBUFSIZ: u16 = 3;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

const NFULA_PACKET_HDR: u16 = 1;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_PHYSINDEV: u16 = 6;
const NFULA_HWADDR: u16 = 8;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// How many bytes of each packet are copied: the IPv6 header (40) and a
/// TCP/UDP header's ports, with room for an extension header or two.
pub const COPY_BYTES: u16 = 128;

/// What a log rule copied: the rule's prefix, who sent it, the packet's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPacket {
    /// The rule's `log prefix` (ours: fixed strings, never network data).
    pub prefix: String,
    /// The Ethernet source, when the packet came in on Ethernet.
    pub source_mac: Option<[u8; 6]>,
    /// The ethertype (`0x0800` IPv4, `0x86dd` IPv6), from the packet header.
    pub ethertype: u16,
    /// The interface it came in on, if any.
    pub in_ifindex: Option<u32>,
    /// The bridge port it came in on, when a bridge-table rule logged it
    /// (`in_ifindex` is then the bridge).
    pub in_port_ifindex: Option<u32>,
    /// From the network header on, at most [`COPY_BYTES`].
    pub payload: Vec<u8>,
}

/// NFLOG errors.
#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    /// A socket call failed.
    #[error("{what}")]
    Io {
        /// The step.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the configuration (EBUSY: another program holds
    /// the group).
    #[error("the kernel refused to {what} (errno {errno}{hint})")]
    Refused {
        /// The step.
        what: &'static str,
        /// The errno.
        errno: i32,
        /// What it usually means.
        hint: &'static str,
    },
}

/// What one datagram held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The packets.
    pub packets: Vec<LoggedPacket>,
    /// Messages that were malformed (dropped and counted, never a panic).
    pub malformed: u64,
}

/// PURE: the logged packets of one datagram.
pub fn parse_datagram(datagram: &[u8]) -> Batch {
    let mut batch = Batch::default();
    for m in nfnl::messages(datagram) {
        let Ok(m) = m else {
            batch.malformed += 1;
            break;
        };
        if m.ty != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
            continue;
        }
        match parse_packet(m.payload) {
            Some(p) => batch.packets.push(p),
            None => batch.malformed += 1,
        }
    }
    batch
}

fn parse_packet(payload: &[u8]) -> Option<LoggedPacket> {
    let attrs = payload.get(nfnl::NFGENMSG_LEN..)?;
    let mut p = LoggedPacket {
        prefix: String::new(),
        source_mac: None,
        ethertype: 0,
        in_ifindex: None,
        in_port_ifindex: None,
        payload: Vec::new(),
    };
    for a in nfnl::attrs(attrs) {
        let a = a.ok()?;
        match a.ty {
            NFULA_PACKET_HDR => p.ethertype = u16::from_be_bytes(a.payload.get(..2)?.try_into().ok()?),
            NFULA_IFINDEX_INDEV => p.in_ifindex = Some(u32::from_be_bytes(a.payload.get(..4)?.try_into().ok()?)),
            NFULA_IFINDEX_PHYSINDEV => {
                p.in_port_ifindex = Some(u32::from_be_bytes(a.payload.get(..4)?.try_into().ok()?));
            }
            NFULA_HWADDR => {
                // struct nfulnl_msg_packet_hw { __be16 hw_addrlen; __u16 _pad; __u8 hw_addr[8]; }
                let len = u16::from_be_bytes(a.payload.get(..2)?.try_into().ok()?);
                if len == 6 {
                    p.source_mac = Some(a.payload.get(4..10)?.try_into().ok()?);
                }
            }
            NFULA_PAYLOAD => p.payload = a.payload.iter().take(usize::from(COPY_BYTES)).copied().collect(),
            NFULA_PREFIX => {
                let text = a.payload.split(|b| *b == 0).next().unwrap_or_default();
                p.prefix = String::from_utf8_lossy(text).into_owned();
            }
            _ => {}
        }
    }
    Some(p)
}

/// A socket bound to one NFLOG group, in the daemon's namespace.
pub struct NflogSocket {
    fd: AsyncFd<Socket>,
    buf: Vec<u8>,
    /// Times the kernel dropped packets because we were slow (ENOBUFS).
    pub overruns: u64,
}

impl NflogSocket {
    /// Binds `group` and asks for the first [`COPY_BYTES`] of each packet,
    /// delivered in small batches (up to 32 packets or 100 ms).
    pub fn bind(group: u16) -> Result<NflogSocket, NflogError> {
        let socket = nfnl::open_socket().map_err(|(what, source)| NflogError::Io { what, source })?;
        let _ = nfnl::grow_receive_buffer(&socket, 1 << 20);
        let mut seq = 1;
        let mut config = |what: &'static str, ty: u16, payload: &[u8]| -> Result<(), NflogError> {
            let mut w = MessageWriter::default();
            let start = w.begin_message(
                (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                libc::AF_UNSPEC as u8,
                group,
            );
            w.attr(ty, payload);
            w.end_message(start);
            seq += 1;
            exchange(&socket, &w.buf, what)
        };
        config("bind the NFLOG group", NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])?;
        let mut mode = u32::from(COPY_BYTES).to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        config("set the NFLOG copy mode", NFULA_CFG_MODE, &mode)?;
        config(
            "set the NFLOG buffer size",
            NFULA_CFG_NLBUFSIZ,
            &(64u32 * 1024).to_be_bytes(),
        )?;
        config("set the NFLOG flush timeout", NFULA_CFG_TIMEOUT, &10u32.to_be_bytes())?;
        config("set the NFLOG batch size", NFULA_CFG_QTHRESH, &32u32.to_be_bytes())?;
        // SAFETY: `AsyncFd::register` needs `as_raw_fd()` to be a valid, open
        // fd that stays the same while the `AsyncFd` holds it. `netlink_sys::Socket`
        // owns its fd (closed only when it drops, after deregistration inside
        // `AsyncFd`'s drop) and always returns that one; nothing hands it out.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| NflogError::Io {
            what: "registering the NFLOG socket",
            source: e.into(),
        })?;
        Ok(NflogSocket {
            fd,
            buf: vec![0; 128 * 1024],
            overruns: 0,
        })
    }

    /// The next datagram's packets (waits for one). An overrun is counted and
    /// reading goes on.
    pub async fn next(&mut self) -> Result<Batch, NflogError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(|source| NflogError::Io {
                what: "waiting for NFLOG packets",
                source,
            })?;
            let buf = &mut self.buf;
            match guard.try_io(|s| s.get_ref().recv(&mut &mut buf[..], 0)) {
                Ok(Ok(n)) => return Ok(parse_datagram(&self.buf[..n.min(self.buf.len())])),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => self.overruns += 1,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(source)) => {
                    return Err(NflogError::Io {
                        what: "reading NFLOG packets",
                        source,
                    })
                }
                Err(_would_block) => {}
            }
        }
    }
}

/// Sends one config message and reads its acknowledgement.
fn exchange(socket: &Socket, msg: &[u8], what: &'static str) -> Result<(), NflogError> {
    socket.send(msg, 0).map_err(|source| NflogError::Io { what, source })?;
    let mut buf = vec![0u8; 8192];
    // The socket is non-blocking: the kernel answers inside sendmsg.
    let n = socket
        .recv(&mut &mut buf[..], 0)
        .map_err(|source| NflogError::Io { what, source })?;
    for m in nfnl::messages(&buf[..n.min(buf.len())]) {
        let m = m.map_err(|e| NflogError::Io {
            what,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        if m.ty == NLMSG_ERROR {
            let (errno, _) = nfnl::nlmsgerr(m.payload).map_err(|e| NflogError::Io {
                what,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?;
            if errno != 0 {
                let hint = match -errno {
                    libc::EBUSY => ": another program holds this NFLOG group; choose another [detect] nflog_group",
                    libc::EPERM => ": needs CAP_NET_ADMIN",
                    _ => "",
                };
                return Err(NflogError::Refused {
                    what,
                    errno: -errno,
                    hint,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = (4 + payload.len()) as u16;
        let mut b = len.to_ne_bytes().to_vec();
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(payload);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b
    }

    fn message(attrs: &[u8]) -> Vec<u8> {
        let len = (16 + 4 + attrs.len()) as u32;
        let mut b = len.to_ne_bytes().to_vec();
        b.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET).to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&[2, 0, 0, 7]); // AF_INET, v0, group 7
        b.extend_from_slice(attrs);
        // Messages start 4-aligned (the length does not count the padding).
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b
    }

    /// A packet message as nfnetlink_log builds it.
    pub(crate) fn logged(prefix: &str, mac: [u8; 6], ip_packet: &[u8]) -> Vec<u8> {
        let mut a = attr(NFULA_PACKET_HDR, &[0x08, 0x00, 1, 0]);
        let mut prefix = prefix.as_bytes().to_vec();
        prefix.push(0);
        a.extend(attr(NFULA_PREFIX, &prefix));
        a.extend(attr(NFULA_IFINDEX_INDEV, &3u32.to_be_bytes()));
        let mut hw = vec![0, 6, 0, 0];
        hw.extend_from_slice(&mac);
        hw.extend_from_slice(&[0, 0]);
        a.extend(attr(NFULA_HWADDR, &hw));
        a.extend(attr(NFULA_PAYLOAD, ip_packet));
        message(&a)
    }

    #[test]
    fn a_logged_packet_is_read_with_its_prefix_mac_and_payload() {
        let dgram = [
            logged("bh fwd iot", [2, 0, 0, 0, 0, 0x20], &[0x45, 0, 0, 20]),
            logged("bh in iot", [2, 0, 0, 0, 0, 0x21], &[0x45]),
        ]
        .concat();
        let b = parse_datagram(&dgram);
        assert_eq!(b.malformed, 0);
        assert_eq!(b.packets.len(), 2);
        assert_eq!(b.packets[0].prefix, "bh fwd iot");
        assert_eq!(b.packets[0].source_mac, Some([2, 0, 0, 0, 0, 0x20]));
        assert_eq!(b.packets[0].ethertype, 0x0800);
        assert_eq!(b.packets[0].in_ifindex, Some(3));
        assert_eq!(b.packets[0].payload, vec![0x45, 0, 0, 20]);
        assert_eq!(b.packets[1].prefix, "bh in iot");
        assert_eq!(b.packets[0].in_port_ifindex, None, "not from the bridge table");
    }

    #[test]
    fn a_bridge_table_sample_names_the_port_it_came_in_on() {
        // nfnetlink_log for the bridge family: the in-device is the bridge,
        // the physical in-device the port.
        let mut a = attr(NFULA_PACKET_HDR, &[0x08, 0x06, 0, 0]);
        a.extend(attr(NFULA_PREFIX, b"bh spoof port\0"));
        a.extend(attr(NFULA_IFINDEX_INDEV, &4u32.to_be_bytes()));
        a.extend(attr(NFULA_IFINDEX_PHYSINDEV, &9u32.to_be_bytes()));
        let b = parse_datagram(&message(&a));
        assert_eq!(b.malformed, 0);
        assert_eq!(b.packets[0].in_ifindex, Some(4));
        assert_eq!(b.packets[0].in_port_ifindex, Some(9));
    }

    #[test]
    fn malformed_messages_are_counted_not_trusted() {
        let good = logged("bh fwd iot", [2, 0, 0, 0, 0, 1], &[0x45]);
        // An attribute that claims more than there is.
        let bad = message(&[0xff, 0x00, 9, 0, 1, 2]);
        let b = parse_datagram(&[good.clone(), bad, good.clone()].concat());
        assert_eq!(b.packets.len(), 2);
        assert_eq!(b.malformed, 1);
        // Every truncation of a good message: never a panic.
        for n in 0..good.len() {
            let _ = parse_datagram(&good[..n]);
        }
    }
}
