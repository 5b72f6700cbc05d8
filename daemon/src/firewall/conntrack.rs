//! Cutting connections over ctnetlink, in-process.
//!
//! When a device changes zone (or is blocked, or released its address), its
//! conntrack entries go, so the next packet is judged by the new rules. That
//! used to be conntrack-tools' `conntrack -D` twice per address (`--orig-src`,
//! `--orig-dst`): two processes, two table dumps and one sendmsg and recv per
//! deleted entry. Here one call is one dump and as few datagrams of deletes as the
//! socket's receive buffer allows, on a `NETLINK_NETFILTER` socket:
//!
//! ```text
//! IPCTNL_MSG_CT_GET   NLM_F_DUMP, AF_INET / AF_INET6 / AF_UNSPEC for both
//!   <- one IPCTNL_MSG_CT_NEW per entry (NLM_F_MULTI) ..., NLMSG_DONE
//! IPCTNL_MSG_CT_DELETE  NLM_F_ACK, per entry whose ORIGINAL source or
//!                       destination is one of the addresses, many per datagram
//!   <- one NLMSG_ERROR per delete: 0, or -ENOENT (gone meanwhile: not an error)
//! ```
//!
//! The original tuple is what `--orig-src`/`--orig-dst` matched: it holds the
//! device's own address even when the entry is address-translated (the reply
//! tuple then holds the translation).
//!
//! A dump walks the kernel's whole conntrack hash table, which all namespaces
//! share, bucket by bucket under each bucket's lock: it costs about 13 ns per
//! bucket whatever the namespace holds (3.5 ms for this machine's 262,144
//! buckets; a router with 16,384 takes about 0.2 ms). That is nearly all of a
//! cut's cost, and why a call dumps once for all its addresses.
//!
//! What the kernel does with these messages (net/netfilter/nf_conntrack_netlink.c,
//! read at 6.18; the root tests check it on the running kernel):
//!
//! - A dump with family 0 and no attributes lists every entry of the socket's
//!   network namespace; a nonzero family lists those of that layer-3 protocol
//!   (`ctnetlink_start`, `ctnetlink_filter_match`).
//! - A DELETE with `CTA_TUPLE_ORIG` looks that exact tuple up in zone `CTA_ZONE`
//!   (0 when absent) and deletes what it finds, else ENOENT; with `CTA_ID` it also
//!   answers ENOENT when the entry found has another id (`ctnetlink_del_conntrack`;
//!   the id is `nf_ct_get_id`, a keyed hash of the entry's address and tuples). A DELETE without any tuple FLUSHES the table:
//!   [`encode_delete`] always writes one.
//! - The tuple parser wants the two addresses of the message's family,
//!   `CTA_PROTO_NUM`, and the protocol's own attributes: both ports for TCP, UDP,
//!   UDP-Lite, SCTP, DCCP and GRE (its keys), id, type and code for ICMP and
//!   ICMPv6, nothing more for the rest (`ctnetlink_parse_tuple_filter`,
//!   `nf_ct_port_nlattr_to_tuple`). A delete sends back exactly the attributes the
//!   dump gave, so every protocol works without this file knowing it.
//! - A zone applying to both directions is dumped as `CTA_ZONE`; one applying to
//!   the original direction only as `CTA_TUPLE_ZONE` inside `CTA_TUPLE_ORIG`; a
//!   reply-only zone does not matter to a lookup by the original tuple
//!   (`ctnetlink_dump_zone_id`, `ctnetlink_parse_tuple_zone`). Each is sent back
//!   where it was found.
//! - Messages of one datagram that is not a batch are processed one by one inside
//!   sendmsg(2) (`nfnetlink_rcv` → `netlink_rcv_skb`): a refused one does not stop
//!   the next, and every answer is queued before `send` returns.
//! - Answers count against the socket's receive buffer by their buffers' true
//!   size: 832 bytes per acknowledgement measured (kernel 6.18, x86_64: 256 fit
//!   the default 212,992 bytes), and what does not fit is dropped with ENOBUFS
//!   reported on the next recv. So a call raises the buffer for the deletes it
//!   has and sends as many per datagram as it holds answers for, with room to
//!   spare; answers lost anyway are handled by sending the unanswered deletes
//!   again, fewer at a time (a second delete of an entry answers ENOENT).
//!
//! The socket stays open between calls (see [`ConntrackNetlink`]).
//!
//! Numbers come from `linux/netfilter/nfnetlink.h` and
//! `linux/netfilter/nfnetlink_conntrack.h`; the encoder is tested byte for byte
//! against what `conntrack -D` (conntrack-tools 1.4.7) sent for the same entries,
//! and the parser against a dump captured from the kernel, both in a throwaway
//! namespace.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sockopt};

use super::nfnl::{
    self, attrs, current_netns, grow_receive_buffer, grow_send_buffer, messages, nlmsgerr, KeptSocket, MessageWriter,
    NestTooLarge, DEFAULT_SNDBUF_FITS, NFGENMSG_LEN, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use super::{error_chain, ConntrackFlusher};

// linux/socket.h (what nfgenmsg.nfgen_family holds for conntrack)
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

// linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_CTNETLINK: u16 = 1;

// linux/netfilter/nfnetlink_conntrack.h: enum cntl_msg_types
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;

const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_ZONE: u16 = 18;
// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;

const CT_GET: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
const CT_NEW: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
const CT_DELETE: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;

/// What one acknowledgement is budgeted in the receive buffer: 832 bytes
/// measured, rounded up for other kernels and architectures.
const ACK_TRUESIZE: usize = 1024;

/// Deletes per datagram at most: 2,048 answers want a 2 MiB receive buffer, and
/// 2,048 IPv6 deletes (112 bytes each with a zone and an id) a 224 KiB datagram.
const MAX_DELETES_PER_DATAGRAM: usize = 2048;

/// A dump's parts are at most 32 KiB (the kernel sizes them by the reader's
/// buffer, capped there); answers to deletes are 36 bytes each.
const RECV_BUF_LEN: usize = 64 * 1024;

/// Sending the unanswered deletes again, fewer each time, gives up after this
/// many rounds (answers are only lost if the budget above is wrong).
const MAX_RESENDS: usize = 16;

/// Errors of a cut. Display texts name the step; `source` holds the OS or
/// kernel error.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The socket could not be opened, configured, written or read.
    #[error("{what}")]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the dump request (EPERM without CAP_NET_ADMIN, say).
    #[error("the kernel refused to list the conntrack table")]
    DumpRefused(#[source] Errno),
    /// The dump's answers stopped before its end marker.
    #[error("the conntrack table listing ended without its end marker")]
    DumpUnfinished,
    /// Some deletes were refused for another reason than the entry being gone;
    /// the others went through.
    #[error("the kernel refused {refused} of {sent} conntrack deletes ({deleted} deleted), the first for {first}")]
    Refused {
        /// Deletes sent.
        sent: usize,
        /// Entries deleted.
        deleted: usize,
        /// Deletes refused.
        refused: usize,
        /// The first refused entry.
        first: String,
        /// Its error.
        #[source]
        errno: Errno,
    },
    /// Some deletes got no answer, even sent again one by one.
    #[error("the kernel answered {answered} of {sent} conntrack deletes")]
    Unanswered {
        /// Deletes answered.
        answered: usize,
        /// Deletes sent.
        sent: usize,
    },
    /// An answer that is not a well-formed netlink message.
    #[error("malformed netlink answer: {0}")]
    Malformed(&'static str),
    /// A delete message that does not fit a netlink attribute (cannot happen:
    /// tuples have a fixed size).
    #[error("a conntrack delete of {0} bytes does not fit a netlink attribute")]
    TooLarge(usize),
}

impl From<NestTooLarge> for ConntrackError {
    fn from(e: NestTooLarge) -> Self {
        ConntrackError::TooLarge(e.0)
    }
}

impl ConntrackError {
    /// As the error type of [`ConntrackFlusher`], which predates this path: the
    /// OS error's kind where there is one, the whole chain as the message.
    pub fn into_io_error(self) -> io::Error {
        let kind = match &self {
            ConntrackError::Io { source, .. } => source.kind(),
            ConntrackError::DumpRefused(errno) | ConntrackError::Refused { errno, .. } => {
                io::Error::from(*errno).kind()
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error_chain(&self))
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ConntrackError {
    move |source| ConntrackError::Io { what, source }
}

/// The two addresses of a tuple, of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addrs {
    /// `CTA_IP_V4_SRC`, `CTA_IP_V4_DST`.
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
    },
    /// `CTA_IP_V6_SRC`, `CTA_IP_V6_DST`.
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
    },
}

impl Addrs {
    fn family(&self) -> u8 {
        match self {
            Addrs::V4 { .. } => AF_INET,
            Addrs::V6 { .. } => AF_INET6,
        }
    }
}

/// What a tuple holds beyond addresses and protocol number: exactly the
/// attributes the kernel dumped for it, so a delete can send them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4 {
    /// `CTA_PROTO_SRC_PORT`, `CTA_PROTO_DST_PORT` (TCP, UDP, UDP-Lite, SCTP,
    /// DCCP; GRE's keys).
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// `CTA_PROTO_ICMP_ID`, `_TYPE`, `_CODE`.
    Icmp {
        /// Echo identifier.
        id: u16,
        /// ICMP type.
        ty: u8,
        /// ICMP code.
        code: u8,
    },
    /// `CTA_PROTO_ICMPV6_ID`, `_TYPE`, `_CODE`.
    Icmpv6 {
        /// Echo identifier.
        id: u16,
        /// ICMPv6 type.
        ty: u8,
        /// ICMPv6 code.
        code: u8,
    },
    /// Nothing (protocols conntrack tracks by addresses alone).
    None,
}

/// An entry's original-direction tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    /// Source and destination.
    pub addrs: Addrs,
    /// IP protocol number, `CTA_PROTO_NUM`.
    pub proto: u8,
    /// Ports, ICMP fields or nothing.
    pub l4: L4,
    /// `CTA_TUPLE_ZONE`: a zone of the original direction only.
    pub zone: Option<u16>,
}

impl Tuple {
    /// The source address.
    pub fn src(&self) -> IpAddr {
        match self.addrs {
            Addrs::V4 { src, .. } => src.into(),
            Addrs::V6 { src, .. } => src.into(),
        }
    }

    /// The destination address.
    pub fn dst(&self) -> IpAddr {
        match self.addrs {
            Addrs::V4 { dst, .. } => dst.into(),
            Addrs::V6 { dst, .. } => dst.into(),
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (src, dst) = (self.src(), self.dst());
        match (self.proto, self.l4) {
            (6, L4::Ports { src: s, dst: d }) => write!(f, "tcp {src} {s} -> {dst} {d}"),
            (17, L4::Ports { src: s, dst: d }) => write!(f, "udp {src} {s} -> {dst} {d}"),
            (p, L4::Ports { src: s, dst: d }) => write!(f, "proto {p} {src} {s} -> {dst} {d}"),
            (_, L4::Icmp { id, ty, code }) => write!(f, "icmp {src} -> {dst} type {ty} code {code} id {id}"),
            (_, L4::Icmpv6 { id, ty, code }) => write!(f, "icmpv6 {src} -> {dst} type {ty} code {code} id {id}"),
            (p, L4::None) => write!(f, "proto {p} {src} -> {dst}"),
        }?;
        match self.zone {
            Some(z) => write!(f, " (original zone {z})"),
            None => Ok(()),
        }
    }
}

/// One conntrack entry: what it takes to delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The original-direction tuple.
    pub orig: Tuple,
    /// `CTA_ZONE`: a zone of both directions (absent: the default zone 0).
    pub zone: Option<u16>,
    /// `CTA_ID`, sent back: the kernel refuses (ENOENT) a delete whose id is not
    /// the entry's, so a newer entry that took the same tuple after the dump
    /// (admitted by the new rules) is left alone, unless it also took the old
    /// one's memory: the id hashes the entry's address and tuples.
    pub id: Option<u32>,
    /// `CTA_MARK`: the connection's mark (the tunnel's bit says it went
    /// through the tunnel).
    pub mark: Option<u32>,
    /// `CTA_COUNTERS_ORIG` / `CTA_COUNTERS_REPLY`, with
    /// `net.netfilter.nf_conntrack_acct` on when the entry was made.
    pub counters: Option<FlowCounters>,
}

/// A connection's accounting: (packets, bytes) each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowCounters {
    /// What its originator sent.
    pub orig: (u64, u64),
    /// What the other end sent back.
    pub reply: (u64, u64),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.orig)?;
        match self.zone {
            Some(z) => write!(f, " (zone {z})"),
            None => Ok(()),
        }
    }
}

/// What a dump held, and what of it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// The entries read and kept (a cut keeps those of its addresses only: a
    /// router's table can hold tens of thousands).
    pub entries: Vec<Entry>,
    /// Entries read, kept or not.
    pub listed: usize,
    /// Attributes skipped for a wrong length (`CTA_IP_V4_SRC` of 3 bytes), or an
    /// attribute list cut short by one whose length runs past its parent.
    pub malformed: usize,
    /// Entries left out: a malformed attribute on the way to its tuple, zone or
    /// id, an incomplete tuple, or a family other than IPv4 and IPv6.
    pub unreadable: usize,
}

/// PURE: the request for a dump of `family`'s entries (`AF_UNSPEC`: all).
fn encode_dump_request(family: u8, seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::default();
    let m = w.begin_message(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family, 0);
    w.end_message(m);
    w.buf
}

/// PURE: reads one datagram of the answer to dump request `seq` into `dump`,
/// keeping the entries `keep` wants. Returns whether it held the end marker.
/// Messages with another sequence number or type are skipped; an entry that
/// cannot be read is counted in `dump.unreadable`; a message whose length lies
/// ends the answer with an error.
fn read_dump(
    datagram: &[u8],
    seq: u32,
    dump: &mut Dump,
    keep: impl Fn(&Entry) -> bool,
) -> Result<bool, ConntrackError> {
    for m in messages(datagram) {
        let m = m.map_err(ConntrackError::Malformed)?;
        if m.seq != seq {
            continue;
        }
        match m.ty {
            CT_NEW => match parse_entry(m.payload, &mut dump.malformed) {
                Some(e) => {
                    dump.listed += 1;
                    if keep(&e) {
                        dump.entries.push(e);
                    }
                }
                None => dump.unreadable += 1,
            },
            NLMSG_DONE => {
                // Its payload is the dump's result, an int: 0, or a negative errno.
                let error = nfnl::u32_at(m.payload, 0).map_or(0, |e| e as i32);
                if error < 0 {
                    return Err(ConntrackError::DumpRefused(Errno::from_raw(error.wrapping_neg())));
                }
                return Ok(true);
            }
            NLMSG_ERROR => {
                let (error, _) = nlmsgerr(m.payload).map_err(ConntrackError::Malformed)?;
                if error != 0 {
                    return Err(ConntrackError::DumpRefused(Errno::from_raw(error.wrapping_neg())));
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// PURE: one `IPCTNL_MSG_CT_NEW` of a dump (after the netlink header): its
/// original tuple, zone and id. `None` when it cannot be read safely; every
/// malformed attribute met is counted in `malformed`.
fn parse_entry(payload: &[u8], malformed: &mut usize) -> Option<Entry> {
    let (Some(&family), Some(list)) = (payload.first(), payload.get(NFGENMSG_LEN..)) else {
        *malformed += 1;
        return None;
    };
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let before = *malformed;
    let (mut orig, mut zone, mut id, mut mark) = (None, None, None, None);
    let (mut counted_orig, mut counted_reply) = (None, None);
    for a in attrs(list) {
        let Ok(a) = a else {
            *malformed += 1;
            break;
        };
        match a.ty {
            CTA_TUPLE_ORIG => orig = parse_tuple(a.payload, family, malformed),
            CTA_ZONE => zone = fixed::<2>(a.payload, malformed).map(u16::from_be_bytes),
            CTA_ID => id = fixed::<4>(a.payload, malformed).map(u32::from_be_bytes),
            CTA_MARK => mark = fixed::<4>(a.payload, malformed).map(u32::from_be_bytes),
            CTA_COUNTERS_ORIG => counted_orig = parse_counters(a.payload, malformed),
            CTA_COUNTERS_REPLY => counted_reply = parse_counters(a.payload, malformed),
            _ => {}
        }
    }
    // A skipped attribute may have been the zone, or a second copy of anything:
    // deleting on a guess could miss, or hit the wrong zone's entry.
    if *malformed != before {
        return None;
    }
    let counters = match (counted_orig, counted_reply) {
        (Some(orig), Some(reply)) => Some(FlowCounters { orig, reply }),
        _ => None,
    };
    Some(Entry {
        orig: orig?,
        zone,
        id,
        mark,
        counters,
    })
}

/// PURE: a `CTA_COUNTERS_*` nest: (packets, bytes), both 64-bit.
fn parse_counters(b: &[u8], malformed: &mut usize) -> Option<(u64, u64)> {
    let (mut packets, mut bytes) = (None, None);
    for a in attrs(b) {
        let Ok(a) = a else {
            *malformed += 1;
            return None;
        };
        match a.ty {
            CTA_COUNTERS_PACKETS => packets = fixed::<8>(a.payload, malformed).map(u64::from_be_bytes),
            CTA_COUNTERS_BYTES => bytes = fixed::<8>(a.payload, malformed).map(u64::from_be_bytes),
            _ => {}
        }
    }
    Some((packets?, bytes?))
}

/// PURE: a `CTA_TUPLE_ORIG` nest of a `family` entry. `None` unless it reads
/// cleanly and completely.
fn parse_tuple(b: &[u8], family: u8, malformed: &mut usize) -> Option<Tuple> {
    let before = *malformed;
    let (mut src, mut dst) = (None, None);
    let mut proto = None;
    let mut zone = None;
    // Ports, ICMP id/type/code, ICMPv6 id/type/code, as found.
    let (mut sport, mut dport) = (None, None);
    let mut icmp: [(Option<u16>, Option<u8>, Option<u8>); 2] = [(None, None, None); 2];
    let v6 = family == AF_INET6;
    for a in attrs(b) {
        let Ok(a) = a else {
            *malformed += 1;
            break;
        };
        match a.ty {
            CTA_TUPLE_IP => {
                for ip in attrs(a.payload) {
                    let Ok(ip) = ip else {
                        *malformed += 1;
                        break;
                    };
                    let addr = |m: &mut usize| -> Option<IpAddr> {
                        if v6 {
                            fixed::<16>(ip.payload, m).map(|o| Ipv6Addr::from(o).into())
                        } else {
                            fixed::<4>(ip.payload, m).map(|o| Ipv4Addr::from(o).into())
                        }
                    };
                    match (ip.ty, v6) {
                        (CTA_IP_V4_SRC, false) | (CTA_IP_V6_SRC, true) => src = addr(malformed),
                        (CTA_IP_V4_DST, false) | (CTA_IP_V6_DST, true) => dst = addr(malformed),
                        // The other family's addresses in this family's entry.
                        (CTA_IP_V4_SRC..=CTA_IP_V6_DST, _) => *malformed += 1,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in attrs(a.payload) {
                    let Ok(p) = p else {
                        *malformed += 1;
                        break;
                    };
                    let u16_be = |m: &mut usize| fixed::<2>(p.payload, m).map(u16::from_be_bytes);
                    let u8_ = |m: &mut usize| fixed::<1>(p.payload, m).map(|[b]| b);
                    match p.ty {
                        CTA_PROTO_NUM => proto = u8_(malformed),
                        CTA_PROTO_SRC_PORT => sport = u16_be(malformed),
                        CTA_PROTO_DST_PORT => dport = u16_be(malformed),
                        CTA_PROTO_ICMP_ID => icmp[0].0 = u16_be(malformed),
                        CTA_PROTO_ICMP_TYPE => icmp[0].1 = u8_(malformed),
                        CTA_PROTO_ICMP_CODE => icmp[0].2 = u8_(malformed),
                        CTA_PROTO_ICMPV6_ID => icmp[1].0 = u16_be(malformed),
                        CTA_PROTO_ICMPV6_TYPE => icmp[1].1 = u8_(malformed),
                        CTA_PROTO_ICMPV6_CODE => icmp[1].2 = u8_(malformed),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => zone = fixed::<2>(a.payload, malformed).map(u16::from_be_bytes),
            _ => {}
        }
    }
    if *malformed != before {
        return None;
    }
    let addrs = match (src?, dst?) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Addrs::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => Addrs::V6 { src, dst },
        _ => return None,
    };
    const NONE3: (Option<u16>, Option<u8>, Option<u8>) = (None, None, None);
    // Exactly one complete kind of layer-4 fields, or none at all: anything else
    // would make the kernel refuse the delete (EINVAL), or look up another tuple.
    let l4 = match ((sport, dport), icmp) {
        ((Some(src), Some(dst)), [NONE3, NONE3]) => L4::Ports { src, dst },
        ((None, None), [(Some(id), Some(ty), Some(code)), NONE3]) => L4::Icmp { id, ty, code },
        ((None, None), [NONE3, (Some(id), Some(ty), Some(code))]) => L4::Icmpv6 { id, ty, code },
        ((None, None), [NONE3, NONE3]) => L4::None,
        _ => return None,
    };
    Some(Tuple {
        addrs,
        proto: proto?,
        l4,
        zone,
    })
}

/// An attribute payload of exactly `N` bytes; anything else is counted.
fn fixed<const N: usize>(payload: &[u8], malformed: &mut usize) -> Option<[u8; N]> {
    let got = payload.try_into().ok();
    if got.is_none() {
        *malformed += 1;
    }
    got
}

/// PURE: appends one `IPCTNL_MSG_CT_DELETE` of `entry` to `w`, asking for an
/// acknowledgement. It always carries the tuple: without one, the kernel would
/// flush the whole table.
fn encode_delete(w: &mut MessageWriter, entry: &Entry, seq: u32) -> Result<(), NestTooLarge> {
    let t = &entry.orig;
    let m = w.begin_message(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, t.addrs.family(), 0);
    let orig = w.begin_nest(CTA_TUPLE_ORIG);
    let ip = w.begin_nest(CTA_TUPLE_IP);
    match t.addrs {
        Addrs::V4 { src, dst } => {
            w.attr(CTA_IP_V4_SRC, &src.octets());
            w.attr(CTA_IP_V4_DST, &dst.octets());
        }
        Addrs::V6 { src, dst } => {
            w.attr(CTA_IP_V6_SRC, &src.octets());
            w.attr(CTA_IP_V6_DST, &dst.octets());
        }
    }
    w.end_nest(ip)?;
    let proto = w.begin_nest(CTA_TUPLE_PROTO);
    w.attr(CTA_PROTO_NUM, &[t.proto]);
    match t.l4 {
        L4::Ports { src, dst } => {
            w.attr(CTA_PROTO_SRC_PORT, &src.to_be_bytes());
            w.attr(CTA_PROTO_DST_PORT, &dst.to_be_bytes());
        }
        L4::Icmp { id, ty, code } => {
            w.attr(CTA_PROTO_ICMP_ID, &id.to_be_bytes());
            w.attr(CTA_PROTO_ICMP_TYPE, &[ty]);
            w.attr(CTA_PROTO_ICMP_CODE, &[code]);
        }
        L4::Icmpv6 { id, ty, code } => {
            w.attr(CTA_PROTO_ICMPV6_ID, &id.to_be_bytes());
            w.attr(CTA_PROTO_ICMPV6_TYPE, &[ty]);
            w.attr(CTA_PROTO_ICMPV6_CODE, &[code]);
        }
        L4::None => {}
    }
    w.end_nest(proto)?;
    if let Some(z) = t.zone {
        w.attr(CTA_TUPLE_ZONE, &z.to_be_bytes());
    }
    w.end_nest(orig)?;
    if let Some(z) = entry.zone {
        w.attr(CTA_ZONE, &z.to_be_bytes());
    }
    if let Some(id) = entry.id {
        w.attr(CTA_ID, &id.to_be_bytes());
    }
    w.end_message(m);
    Ok(())
}

/// How the deletes went so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    deleted: usize,
    vanished: usize,
    refused: usize,
    /// The first refused delete: which entry, and why.
    first_refusal: Option<(usize, Errno)>,
}

/// PURE: reads one datagram of answers to deletes. `pending` maps a sequence
/// number to its entry's index; an answered one leaves it and is tallied.
/// Answers to anything else are skipped.
fn read_acks(datagram: &[u8], pending: &mut BTreeMap<u32, usize>, tally: &mut Tally) -> Result<(), ConntrackError> {
    for m in messages(datagram) {
        let m = m.map_err(ConntrackError::Malformed)?;
        if m.ty != NLMSG_ERROR {
            continue;
        }
        let (error, seq) = nlmsgerr(m.payload).map_err(ConntrackError::Malformed)?;
        let Some(index) = pending.remove(&seq) else {
            continue;
        };
        match error {
            0 => tally.deleted += 1,
            e if e == -libc::ENOENT => tally.vanished += 1,
            e => {
                tally.refused += 1;
                tally
                    .first_refusal
                    .get_or_insert((index, Errno::from_raw(e.wrapping_neg())));
            }
        }
    }
    Ok(())
}

/// What one cut did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Entries listed (of the addresses' families).
    pub listed: usize,
    /// Entries of the addresses, deleted.
    pub deleted: usize,
    /// Entries of the addresses gone before their delete arrived (ENOENT): ended
    /// meanwhile, or cut by someone else.
    pub vanished: usize,
    /// Malformed attributes in the dump (see [`Dump::malformed`]).
    pub malformed: usize,
    /// Entries of the dump that could not be read, so were not considered.
    pub unreadable: usize,
    /// sendmsg calls the deletes took.
    pub datagrams: usize,
}

/// Deletes conntrack entries over ctnetlink, in the network namespace of the
/// calling thread.
///
/// Its socket is kept open between calls, as [`NetlinkSetWriter`]'s is and for
/// the same reason (see [`KeptSocket`]): the enforcer cuts right after it applied
/// a set delta, and closing the socket then would wait 8 to 23 ms (measured) for
/// nf_tables' deferred cleanup. One socket, for the namespace of the last call;
/// a call that finds it taken (a cut running on another thread) opens its own.
///
/// [`NetlinkSetWriter`]: super::NetlinkSetWriter
#[derive(Debug, Clone, Copy, Default)]
pub struct ConntrackNetlink;

/// See [`ConntrackNetlink`].
static KEPT: Mutex<Option<KeptSocket>> = Mutex::new(None);

impl ConntrackNetlink {
    /// Deletes every entry whose original source or destination is one of
    /// `addrs`.
    pub fn cut(&self, addrs: &[IpAddr]) -> Result<CutReport, ConntrackError> {
        if addrs.is_empty() {
            return Ok(CutReport::default());
        }
        let wanted: HashSet<IpAddr> = addrs.iter().copied().collect();
        let family = match (wanted.iter().any(IpAddr::is_ipv4), wanted.iter().any(IpAddr::is_ipv6)) {
            (true, false) => AF_INET,
            (false, true) => AF_INET6,
            _ => AF_UNSPEC,
        };
        with_socket(|socket, seq| {
            let doomed = |e: &Entry| wanted.contains(&e.orig.src()) || wanted.contains(&e.orig.dst());
            let mut dump = dump_on(socket, family, seq, doomed)?;
            // A dump that restarted (the hash table was resized meanwhile) can
            // list an entry twice.
            dump.entries.sort_unstable();
            dump.entries.dedup();
            let doomed = dump.entries;
            let mut report = CutReport {
                listed: dump.listed,
                malformed: dump.malformed,
                unreadable: dump.unreadable,
                ..CutReport::default()
            };
            let mut next_seq = seq.wrapping_add(1);
            if !doomed.is_empty() {
                let done = delete_on(socket, &doomed, next_seq)?;
                report.deleted = done.tally.deleted;
                report.vanished = done.tally.vanished;
                report.datagrams = done.datagrams;
                next_seq = done.next_seq;
            }
            Ok((report, next_seq))
        })
    }

    /// Lists the entries of `family` (`libc::AF_INET`, `libc::AF_INET6`, or
    /// `libc::AF_UNSPEC` for all).
    pub fn dump(&self, family: u8) -> Result<Dump, ConntrackError> {
        with_socket(|socket, seq| Ok((dump_on(socket, family, seq, |_| true)?, seq.wrapping_add(1))))
    }
}

/// [`nfnl::with_kept_socket`] on this edge's own kept socket.
fn with_socket<T>(
    exchange: impl FnOnce(&Socket, u32) -> Result<(T, u32), ConntrackError>,
) -> Result<T, ConntrackError> {
    nfnl::with_kept_socket(&KEPT, |what, source| ConntrackError::Io { what, source }, exchange)
}

impl ConntrackFlusher for ConntrackNetlink {
    fn flush(&self, addrs: &[IpAddr]) -> Result<usize, io::Error> {
        let report = self.cut(addrs).map_err(ConntrackError::into_io_error)?;
        log_report(&report);
        Ok(report.deleted)
    }

    /// Cuts on a thread, so the event loop does not wait for the dump. Calls that
    /// come while a thread is cutting for the same namespace hand it their
    /// addresses instead of starting another: a burst of releases costs a few
    /// table walks, not one each.
    fn flush_detached(&self, addrs: Vec<IpAddr>) {
        if addrs.is_empty() {
            return;
        }
        let netns = match current_netns() {
            Ok(netns) => netns,
            Err(e) => {
                tracing::warn!(error = %e, "could not identify the network namespace; connections not cut");
                return;
            }
        };
        {
            let mut queued = queued();
            if let Some(waiting) = queued.get_mut(&netns) {
                waiting.extend(addrs);
                return;
            }
            queued.insert(netns, addrs);
        }
        // A thread of this process starts in the caller's network namespace
        // (clone(2) copies the calling thread's), so the cut happens where the
        // caller lives.
        let spawned = std::thread::Builder::new()
            .name("conntrack-cut".into())
            .spawn(move || cut_queued(netns));
        if let Err(e) = spawned {
            queued().remove(&netns);
            tracing::warn!(error = %e, "could not start the conntrack thread; connections not cut");
        }
    }
}

/// Addresses waiting for a detached cut, per network namespace. A namespace has
/// an entry exactly while a thread cuts for it (see
/// [`ConntrackNetlink::flush_detached`]).
static QUEUED: Mutex<BTreeMap<(u64, u64), Vec<IpAddr>>> = Mutex::new(BTreeMap::new());

fn queued() -> MutexGuard<'static, BTreeMap<(u64, u64), Vec<IpAddr>>> {
    // Every change to the map is one insert, extend, take or remove.
    QUEUED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A detached cut's thread, in namespace `netns`: cuts what is queued for it
/// until nothing is, then removes the namespace's entry (under the same lock
/// as the check, so an address queued meanwhile is either taken here or starts
/// a new thread).
fn cut_queued(netns: (u64, u64)) {
    /// Removes the entry if the thread unwinds, so later calls start a new one.
    struct Unqueue((u64, u64));
    impl Drop for Unqueue {
        fn drop(&mut self) {
            if std::thread::panicking() {
                queued().remove(&self.0);
            }
        }
    }
    let _unqueue = Unqueue(netns);
    loop {
        let addrs = {
            let mut queued = queued();
            match queued.get_mut(&netns) {
                Some(waiting) if !waiting.is_empty() => std::mem::take(waiting),
                _ => {
                    queued.remove(&netns);
                    return;
                }
            }
        };
        #[cfg(test)]
        {
            *detached_walks().entry(netns).or_default() += 1;
        }
        match ConntrackNetlink.cut(&addrs) {
            Ok(report) => log_report(&report),
            Err(e) => tracing::warn!(error = %error_chain(&e), "could not delete conntrack entries"),
        }
    }
}

/// Tests: how many cuts detached threads ran, per namespace.
#[cfg(test)]
fn detached_walks() -> MutexGuard<'static, BTreeMap<(u64, u64), usize>> {
    static WALKS: Mutex<BTreeMap<(u64, u64), usize>> = Mutex::new(BTreeMap::new());
    WALKS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn log_report(r: &CutReport) {
    tracing::debug!(
        deleted = r.deleted,
        vanished = r.vanished,
        listed = r.listed,
        datagrams = r.datagrams,
        "cut connections"
    );
    if r.malformed > 0 || r.unreadable > 0 {
        tracing::warn!(
            malformed_attributes = r.malformed,
            unreadable_entries = r.unreadable,
            "parts of the conntrack listing could not be read; their entries were left alone"
        );
    }
}

/// Reads one datagram into `buf`; `None` when none is waiting. A datagram larger
/// than the buffer (MSG_TRUNC tells its real size) is an error.
fn recv(socket: &Socket, buf: &mut Vec<u8>) -> Result<Option<()>, io::Error> {
    buf.clear();
    match socket.recv(buf, libc::MSG_TRUNC) {
        Ok(n) if n > buf.capacity() => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {n}-byte answer did not fit {} bytes", buf.capacity()),
        )),
        Ok(_) => Ok(Some(())),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

fn send(socket: &Socket, bytes: &[u8]) -> Result<(), ConntrackError> {
    let sent = socket
        .send_to(bytes, &SocketAddr::new(0, 0), 0)
        .map_err(io_err("sending to ctnetlink"))?;
    if sent != bytes.len() {
        return Err(ConntrackError::Io {
            what: "sending to ctnetlink: short write",
            source: io::ErrorKind::WriteZero.into(),
        });
    }
    Ok(())
}

/// Lists `family`'s entries on `socket`, request number `seq`, keeping those
/// `keep` wants.
fn dump_on(socket: &Socket, family: u8, seq: u32, keep: impl Fn(&Entry) -> bool) -> Result<Dump, ConntrackError> {
    send(socket, &encode_dump_request(family, seq))?;
    let mut dump = Dump::default();
    let mut buf = Vec::with_capacity(RECV_BUF_LEN);
    loop {
        match recv(socket, &mut buf).map_err(io_err("reading the conntrack table"))? {
            Some(()) => {
                if read_dump(&buf, seq, &mut dump, &keep)? {
                    return Ok(dump);
                }
            }
            None => return Err(ConntrackError::DumpUnfinished),
        }
    }
}

/// What [`delete_on`] did.
#[derive(Debug)]
struct Deleted {
    tally: Tally,
    /// sendmsg calls.
    datagrams: usize,
    /// The first sequence number not used.
    next_seq: u32,
}

/// Deletes `entries` on `socket`, sequence numbers from `first_seq`, as many per
/// datagram as the receive buffer holds answers for. Refusals other than ENOENT
/// do not stop the others, and fail the call at the end.
fn delete_on(socket: &Socket, entries: &[Entry], first_seq: u32) -> Result<Deleted, ConntrackError> {
    let mut per_datagram = deletes_per_datagram(socket, entries.len());
    let mut seq = first_seq;
    let mut tally = Tally::default();
    let mut datagrams = 0;
    let mut todo: Vec<usize> = (0..entries.len()).collect();
    let mut resends = 0;
    let mut buf = Vec::with_capacity(RECV_BUF_LEN);
    let mut grown_to = DEFAULT_SNDBUF_FITS;
    while !todo.is_empty() {
        let chunk: Vec<usize> = todo.drain(..per_datagram.min(todo.len())).collect();
        let mut w = MessageWriter::default();
        let mut pending = BTreeMap::new();
        for &i in &chunk {
            encode_delete(&mut w, &entries[i], seq)?;
            pending.insert(seq, i);
            seq = seq.wrapping_add(1);
        }
        if w.buf.len() > grown_to {
            grow_send_buffer(socket, w.buf.len()).map_err(io_err("raising the socket send buffer"))?;
            grown_to = w.buf.len();
        }
        send(socket, &w.buf)?;
        datagrams += 1;
        let mut lost = false;
        while !pending.is_empty() {
            match recv(socket, &mut buf) {
                Ok(Some(())) => read_acks(&buf, &mut pending, &mut tally)?,
                Ok(None) => break,
                // Answers that did not fit were dropped; the rest are still queued.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
                Err(e) => return Err(io_err("reading the kernel's answers")(e)),
            }
        }
        if !pending.is_empty() {
            if !lost || resends == MAX_RESENDS {
                return Err(ConntrackError::Unanswered {
                    answered: tally.deleted + tally.vanished + tally.refused,
                    sent: entries.len(),
                });
            }
            // Their deletes may or may not have happened: send them again, fewer
            // at a time (a second delete of a deleted entry answers ENOENT).
            resends += 1;
            per_datagram = (per_datagram / 2).max(1);
            tracing::debug!(
                unanswered = pending.len(),
                per_datagram,
                "conntrack answers were dropped; resending"
            );
            let again: Vec<usize> = pending.into_values().collect();
            todo.splice(0..0, again);
        }
    }
    if let Some((index, errno)) = tally.first_refusal {
        return Err(ConntrackError::Refused {
            sent: entries.len(),
            deleted: tally.deleted,
            refused: tally.refused,
            first: entries[index].to_string(),
            errno,
        });
    }
    Ok(Deleted {
        tally,
        datagrams,
        next_seq: seq,
    })
}

/// How many deletes one datagram may carry: as many as the receive buffer,
/// raised for `n` answers if need be, holds answers for.
fn deletes_per_datagram(socket: &Socket, n: usize) -> usize {
    let want = n.min(MAX_DELETES_PER_DATAGRAM) * ACK_TRUESIZE;
    let have = getsockopt(socket, sockopt::RcvBuf).unwrap_or(0);
    let room = if have >= want {
        have
    } else {
        grow_receive_buffer(socket, want).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "could not raise the netlink receive buffer");
            have
        })
    };
    (room / ACK_TRUESIZE).clamp(1, MAX_DELETES_PER_DATAGRAM)
}

/// Reads `data` as one datagram of a dump and checks that every entry read
/// encodes into a delete that reads back as the same entry. For
/// `fuzz/fuzz_targets/conntrack_dump.rs` and a stable test over a deterministic
/// corpus; panics only on a real bug.
#[doc(hidden)]
pub fn fuzz_entry_conntrack_dump(data: &[u8]) {
    let mut dump = Dump::default();
    let _ = read_dump(data, 1, &mut dump, |_| true);
    for e in &dump.entries {
        let mut w = MessageWriter::default();
        assert!(encode_delete(&mut w, e, 1).is_ok(), "{e}");
        let mut malformed = 0;
        let back = w
            .buf
            .get(nfnl::NLMSG_HDRLEN..)
            .and_then(|m| parse_entry(m, &mut malformed));
        // A delete names the connection (tuple, zone, id); its mark and
        // counters are not part of it.
        let named = Entry {
            mark: None,
            counters: None,
            ..*e
        };
        assert_eq!(back.as_ref(), Some(&named));
        assert_eq!(malformed, 0);
    }
}

#[cfg(test)]
mod tests;
