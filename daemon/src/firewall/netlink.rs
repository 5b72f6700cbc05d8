//! Set-element deltas straight over nfnetlink: in-process, one batch, one
//! transaction.
//!
//! Moving a device between zones changes a handful of set elements. Piping a JSON
//! document to `nft` for that costs 20 to 30 ms: a process spawn, nft's own cache
//! fetch (it lists our table, every set element included, before it sends
//! anything), and on exit the close of its netlink socket, which waits for an RCU
//! grace period. The kernel itself takes microseconds, so this module encodes the
//! same changes as [`render::delta_document`](super::render::delta_document)
//! (deletes first, then adds; MAC sets in both tables, address sets in `inet`
//! only) as nf_tables netlink messages and sends them on a `NETLINK_NETFILTER`
//! socket as ONE batch:
//!
//! ```text
//! NFNL_MSG_BATCH_BEGIN          res_id = NFNL_SUBSYS_NFTABLES
//!   NFT_MSG_DELSETELEM  ...     one per set and family (more if it exceeds 64 KiB)
//!   NFT_MSG_NEWSETELEM  ...     NLM_F_CREATE without NLM_F_EXCL: re-adding is fine
//! NFNL_MSG_BATCH_END
//! ```
//!
//! The kernel runs a batch as one transaction: if any message fails (deleting an
//! element that is not there, say), it aborts all of them and reports the error.
//! [`Enforcer::enforce`](super::Enforcer::enforce) then replaces the tables, which is always correct.
//!
//! Numbers come from the uapi headers `linux/netlink.h`,
//! `linux/netfilter/nfnetlink.h` and `linux/netfilter/nf_tables.h`; the tests check
//! them against the `libc` crate and the encoding against bytes nft 1.0.6 sent for
//! the same change (captured with strace in a throwaway namespace).
//!
//! The socket lives in the calling thread's network namespace and stays open
//! between calls: see [`NetlinkSetWriter`] for why.
//!
//! Netlink headers and attribute headers are in host byte order (the router may be
//! big-endian MIPS), element keys in network byte order, as nft stores them.

use std::collections::BTreeSet;
use std::io;

use std::sync::Mutex;

use netlink_sys::{Socket, SocketAddr};
use nftables::helper::NftablesError;
use nftables::types::NfFamily;
use nix::errno::Errno;

use super::nfnl::{
    self, align4, grow_send_buffer, messages, nlmsgerr, KeptSocket, MessageWriter, NestTooLarge, DEFAULT_SNDBUF_FITS,
    NLA_HDRLEN, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};
use super::render::bridge::TargetClaimRule;
#[cfg(test)]
use super::Elements;

mod nd_claims;
use super::{MembershipDelta, SetKind, TABLE};
pub use nd_claims::encode_nd_claim_rules;

// linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NLMSG_MIN_TYPE`.
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

// linux/netfilter.h
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFPROTO_BRIDGE: u8 = 7;

// linux/netfilter/nf_tables.h
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_MSG_NEWFLOWTABLE: u16 = 22;
const NFTA_FLOWTABLE_TABLE: u16 = 1;
const NFTA_FLOWTABLE_NAME: u16 = 2;
const NFTA_FLOWTABLE_HOOK: u16 = 3;
const NFTA_FLOWTABLE_FLAGS: u16 = 7;
const NFTA_FLOWTABLE_HOOK_NUM: u16 = 1;
const NFTA_FLOWTABLE_HOOK_PRIORITY: u16 = 2;
const NFTA_FLOWTABLE_HOOK_DEVS: u16 = 3;
const NFTA_DEVICE_NAME: u16 = 1;
/// `enum nf_flowtable_flags`.
const NF_FLOWTABLE_COUNTER: u32 = 0x2;
// linux/netfilter.h
const NF_NETDEV_INGRESS: u32 = 0;

/// An attribute's length is a u16, headers included: a message whose elements
/// would overflow it is split into several messages of the same batch.
const MAX_NEST_LEN: usize = u16::MAX as usize;

/// Answers are single acknowledgements, 36 bytes each (see `set_cap_ack`).
const RECV_BUF_LEN: usize = 8 * 1024;

/// Errors of a set-element delta sent over netlink. Display texts name the step;
/// `source` holds the OS error.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// One set's elements do not fit a netlink attribute even after splitting.
    #[error("a set-element list of {0} bytes does not fit a netlink attribute")]
    TooLarge(usize),
    /// The socket could not be opened, configured, written or read.
    #[error("{what}")]
    Io {
        /// The step that failed.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a message, so it aborted the whole batch: nothing changed.
    #[error("the kernel refused the batch at: {what}")]
    Refused {
        /// What the refused message does, or "the batch as a whole".
        what: String,
        /// The kernel's error.
        #[source]
        errno: Errno,
    },
    /// Some messages got no answer. Cannot happen with a working kernel (it answers
    /// every batch before `send` returns); reported instead of waiting forever.
    #[error("the kernel answered {answered} of {sent} messages")]
    Unanswered {
        /// Answers received.
        answered: usize,
        /// Messages that asked for one.
        sent: usize,
    },
    /// An answer that is not a well-formed netlink message.
    #[error("malformed netlink answer: {0}")]
    Malformed(&'static str),
}

impl NetlinkError {
    /// As the error type of [`NftBackend`](super::NftBackend), which predates this
    /// path: `NftFailed` with program `netlink`. The full error text goes into
    /// `hint` (that is what `NftFailed` displays) and `stderr`.
    pub fn into_nftables_error(self) -> NftablesError {
        let text = super::error_chain(&self);
        NftablesError::NftFailed {
            program: "netlink".into(),
            hint: format!("applying a set delta: {text}"),
            stdout: String::new(),
            stderr: text,
        }
    }
}

impl From<NestTooLarge> for NetlinkError {
    fn from(e: NestTooLarge) -> Self {
        NetlinkError::TooLarge(e.0)
    }
}

/// One set-element message of a batch, kept so that an error can say what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMessage {
    /// Its sequence number; the kernel's answer carries it.
    pub seq: u32,
    /// What it does, e.g. `delete 1 element from bridge bulkhead iot_mac`.
    pub what: String,
}

/// An encoded batch: the bytes to send and what each message in it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// BATCH_BEGIN, the set-element messages, BATCH_END: one datagram.
    pub bytes: Vec<u8>,
    /// Sequence number of BATCH_BEGIN; a failed commit is reported against it.
    pub begin_seq: u32,
    /// The set-element messages, in order; each asks for an acknowledgement.
    pub messages: Vec<BatchMessage>,
}

impl Batch {
    /// The first sequence number after this batch's (BATCH_END's plus one).
    fn next_seq(&self) -> u32 {
        let used = u32::try_from(self.messages.len() + 2).unwrap_or(u32::MAX);
        self.begin_seq.wrapping_add(used)
    }

    /// What the message with sequence number `seq` does.
    fn describe(&self, seq: u32) -> String {
        if seq == self.begin_seq {
            // Refused as a whole: no CAP_NET_ADMIN at the start, or a failed commit.
            return "the batch as a whole".into();
        }
        self.messages
            .iter()
            .find(|m| m.seq == seq)
            .map_or_else(|| format!("unknown message {seq}"), |m| m.what.clone())
    }
}

/// PURE: encodes `delta` as one nf_tables batch, sequence numbers from `first_seq`.
///
/// Same order as the JSON delta document: every removal, then every addition; per
/// (owner, kind), the `inet` table then (MAC sets of zones and blocked devices)
/// the `bridge` table.
pub fn encode_batch(delta: &MembershipDelta, first_seq: u32) -> Result<Batch, NetlinkError> {
    encode_in_batch(first_seq, |w, seq, messages| {
        for (is_add, owner, elems) in delta.changes() {
            let (msg, flags, verb) = if is_add {
                (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, "add")
            } else {
                (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK, "delete")
            };
            let kind = elems.kind();
            let set = owner.set_name(kind);
            let keys = elems.key_bytes();
            for family in owner.families(kind) {
                let (nfproto, fam) = match family {
                    NfFamily::Bridge => (NFPROTO_BRIDGE, "bridge"),
                    _ => (NFPROTO_INET, "inet"),
                };
                for chunk in keys.chunks(elements_per_message(kind)) {
                    *seq = seq.wrapping_add(1);
                    let m = w.begin_message((NFNL_SUBSYS_NFTABLES << 8) | msg, flags, *seq, nfproto, 0);
                    w.attr(NFTA_SET_ELEM_LIST_TABLE, &nul_terminated(TABLE));
                    w.attr(NFTA_SET_ELEM_LIST_SET, &nul_terminated(&set));
                    let list = w.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
                    for key in chunk {
                        let elem = w.begin_nest(NFTA_LIST_ELEM);
                        let k = w.begin_nest(NFTA_SET_ELEM_KEY);
                        w.attr(NFTA_DATA_VALUE, key);
                        w.end_nest(k)?;
                        w.end_nest(elem)?;
                    }
                    w.end_nest(list)?;
                    w.end_message(m);
                    let n = chunk.len();
                    let (prep, plural) = (if is_add { "to" } else { "from" }, if n == 1 { "" } else { "s" });
                    messages.push(BatchMessage {
                        seq: *seq,
                        what: format!("{verb} {n} element{plural} {prep} {fam} {TABLE} {set}"),
                    });
                }
            }
        }
        Ok(())
    })
}

/// PURE: the batch that gives `inet bulkhead`'s flowtable the `counter` flag
/// (offloaded packets are added to their connection's counters, which the
/// traffic service reads). nft's JSON cannot say it; the kernel takes it as
/// an update of the existing flowtable, which must name the same hook,
/// priority and devices (an update adds the devices it names).
pub fn encode_flowtable_counter(name: &str, devices: &[&str], first_seq: u32) -> Result<Batch, NetlinkError> {
    encode_in_batch(first_seq, |w, seq, messages| {
        *seq = seq.wrapping_add(1);
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
        let m = w.begin_message(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWFLOWTABLE,
            flags,
            *seq,
            NFPROTO_INET,
            0,
        );
        w.attr(NFTA_FLOWTABLE_TABLE, &nul_terminated(TABLE));
        w.attr(NFTA_FLOWTABLE_NAME, &nul_terminated(name));
        let hook = w.begin_nest(NFTA_FLOWTABLE_HOOK);
        w.attr(NFTA_FLOWTABLE_HOOK_NUM, &NF_NETDEV_INGRESS.to_be_bytes());
        w.attr(NFTA_FLOWTABLE_HOOK_PRIORITY, &0u32.to_be_bytes());
        let devs = w.begin_nest(NFTA_FLOWTABLE_HOOK_DEVS);
        for d in devices {
            w.attr(NFTA_DEVICE_NAME, &nul_terminated(d));
        }
        w.end_nest(devs)?;
        w.end_nest(hook)?;
        w.attr(NFTA_FLOWTABLE_FLAGS, &NF_FLOWTABLE_COUNTER.to_be_bytes());
        w.end_message(m);
        messages.push(BatchMessage {
            seq: *seq,
            what: format!("set the counter flag of inet {TABLE} flowtable {name}"),
        });
        Ok(())
    })
}

/// BATCH_BEGIN, what `fill` writes (it numbers its messages from the
/// sequence number it is given and lists them), BATCH_END.
fn encode_in_batch(
    first_seq: u32,
    fill: impl FnOnce(&mut MessageWriter, &mut u32, &mut Vec<BatchMessage>) -> Result<(), NetlinkError>,
) -> Result<Batch, NetlinkError> {
    let mut w = MessageWriter::default();
    let mut seq = first_seq;
    let mut messages = Vec::new();
    let begin = w.begin_message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_message(begin);
    fill(&mut w, &mut seq, &mut messages)?;
    seq = seq.wrapping_add(1);
    let end = w.begin_message(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_message(end);
    Ok(Batch {
        bytes: w.buf,
        begin_seq: first_seq,
        messages,
    })
}

/// How many elements of `kind` fit one NFTA_SET_ELEM_LIST_ELEMENTS attribute.
fn elements_per_message(kind: SetKind) -> usize {
    let key_len = match kind {
        SetKind::Mac => 6,
        SetKind::V4 => 4,
        SetKind::V6 => 16,
        // address . proto . port, each field padded to 4 bytes.
        SetKind::Pinholes4 => 12,
        SetKind::Pinholes6 => 24,
        // address . MAC (padded).
        SetKind::Owners4 => 12,
        SetKind::Owners6 => 24,
        // MAC (padded) . interface name (IFNAMSIZ).
        SetKind::Ports => 24,
    };
    // NFTA_LIST_ELEM { NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE key } }: three headers.
    let per_element = 3 * NLA_HDRLEN + align4(key_len);
    (MAX_NEST_LEN - NLA_HDRLEN) / per_element
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// Applies membership deltas over a `NETLINK_NETFILTER` socket in the network
/// namespace of the calling thread.
///
/// The socket is kept open between calls (one per process, reopened when a call
/// comes from another namespace; see [`KeptSocket`]): closing it right after a
/// transaction would wait 5 to 30 ms, most of a move's cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetlinkSetWriter;

impl NetlinkSetWriter {
    /// Sends `delta` as one batch and waits for the kernel's verdict on every
    /// message. On error the kernel has changed nothing.
    pub fn apply(&self, delta: &MembershipDelta) -> Result<(), NetlinkError> {
        if delta.is_empty() {
            return Ok(());
        }
        send(|first_seq| encode_batch(delta, first_seq))
    }

    /// Gives the flowtable `name` the `counter` flag (see
    /// [`encode_flowtable_counter`]); on error nothing changed.
    pub fn count_offloaded(&self, name: &str, devices: &[&str]) -> Result<(), NetlinkError> {
        send(|first_seq| encode_flowtable_counter(name, devices, first_seq))
    }

    /// Appends the neighbour-advert guards to the bridge table's empty
    /// `nd-claims` chain (see [`nd_claims`]); on error nothing changed.
    pub fn guard_nd_claims(&self, rules: &[TargetClaimRule]) -> Result<(), NetlinkError> {
        send(|first_seq| encode_nd_claim_rules(rules, first_seq))
    }
}

/// Encodes one batch from the kept socket's next sequence number, sends it
/// and waits for every answer.
fn send(encode: impl FnOnce(u32) -> Result<Batch, NetlinkError>) -> Result<(), NetlinkError> {
    let io_error = |what: &'static str, source| NetlinkError::Io {
        what: what.to_string(),
        source,
    };
    nfnl::with_kept_socket(&KEPT, io_error, |socket, first_seq| {
        let batch = encode(first_seq)?;
        exchange(socket, &batch)?;
        Ok(((), batch.next_seq()))
    })
}

static KEPT: Mutex<Option<KeptSocket>> = Mutex::new(None);

fn io_err(what: &str) -> impl FnOnce(io::Error) -> NetlinkError + '_ {
    move |source| NetlinkError::Io {
        what: what.to_string(),
        source,
    }
}

/// Sends `batch` and reads the answers until every message is acknowledged.
fn exchange(socket: &Socket, batch: &Batch) -> Result<(), NetlinkError> {
    if batch.bytes.len() > DEFAULT_SNDBUF_FITS {
        // The kernel refuses (EMSGSIZE) a datagram larger than the send buffer, and
        // a batch cannot be split across datagrams.
        grow_send_buffer(socket, batch.bytes.len()).map_err(io_err("raising the socket send buffer"))?;
    }
    let kernel = SocketAddr::new(0, 0);
    let sent = socket
        .send_to(&batch.bytes, &kernel, 0)
        .map_err(io_err("sending the batch"))?;
    if sent != batch.bytes.len() {
        return Err(NetlinkError::Io {
            what: format!("sending the batch: {sent} of {} bytes sent", batch.bytes.len()),
            source: io::ErrorKind::WriteZero.into(),
        });
    }
    let mut pending: BTreeSet<u32> = batch.messages.iter().map(|m| m.seq).collect();
    let mut buf = Vec::with_capacity(RECV_BUF_LEN);
    while !pending.is_empty() {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(_) => check_answers(&buf, batch, &mut pending)?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(NetlinkError::Unanswered {
                    answered: batch.messages.len() - pending.len(),
                    sent: batch.messages.len(),
                })
            }
            Err(e) => return Err(io_err("reading the kernel's answers")(e)),
        }
    }
    Ok(())
}

/// PURE: reads one datagram of answers. Acknowledged sequence numbers leave
/// `pending`; the first error fails the whole call, since the kernel then aborted
/// the whole batch. Anything that is not an `NLMSG_ERROR` is skipped.
fn check_answers(datagram: &[u8], batch: &Batch, pending: &mut BTreeSet<u32>) -> Result<(), NetlinkError> {
    for m in messages(datagram) {
        let m = m.map_err(NetlinkError::Malformed)?;
        if m.ty == NLMSG_ERROR {
            let (error, seq) = nlmsgerr(m.payload).map_err(NetlinkError::Malformed)?;
            if error != 0 {
                return Err(NetlinkError::Refused {
                    what: batch.describe(seq),
                    errno: Errno::from_raw(error.wrapping_neg()),
                });
            }
            pending.remove(&seq);
        }
    }
    Ok(())
}

#[cfg(test)]
mod netns_test;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::Ipv6Addr;

    use super::*;
    use crate::config::{MacAddr, ZoneId};
    use crate::firewall::nfnl::{u16_at, u32_at, NLA_F_NESTED, NLMSG_HDRLEN};

    pub(super) fn zone(z: &str) -> ZoneId {
        ZoneId::new(z).expect("zone id")
    }

    /// Typed elements of `kind` from their text (test data, so a typo panics).
    fn elements(kind: SetKind, texts: &[&str]) -> Elements {
        match kind {
            SetKind::Mac => Elements::Mac(texts.iter().map(|t| t.parse().expect("mac")).collect()),
            SetKind::V4 => Elements::V4(texts.iter().map(|t| t.parse().expect("v4")).collect()),
            SetKind::V6 => Elements::V6(texts.iter().map(|t| t.parse().expect("v6")).collect()),
            SetKind::Pinholes4 | SetKind::Pinholes6 | SetKind::Owners4 | SetKind::Owners6 | SetKind::Ports => {
                unreachable!("zone member sets only")
            }
        }
    }

    pub(super) fn delta(remove: &[(&str, SetKind, &[&str])], add: &[(&str, SetKind, &[&str])]) -> MembershipDelta {
        let mut d = MembershipDelta::default();
        for (is_add, side) in [(false, remove), (true, add)] {
            for (z, k, e) in side {
                d.push(is_add, zone(z).into(), elements(*k, e));
            }
        }
        d
    }

    /// An attribute as parsed back: nested ones by the NLA_F_NESTED flag.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Attr {
        Leaf(u16, Vec<u8>),
        Nest(u16, Vec<Attr>),
    }

    /// A message as parsed back, and its bytes.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Msg {
        ty: u16,
        flags: u16,
        seq: u32,
        nfgenmsg: Vec<u8>,
        attrs: Vec<Attr>,
        raw: Vec<u8>,
    }

    /// Splits a batch into messages, checking every length on the way.
    fn parse_batch(mut b: &[u8]) -> Vec<Msg> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = u32_at(b, 0).expect("header") as usize;
            assert!(
                len >= NLMSG_HDRLEN + 4 && len <= b.len(),
                "message length {len} of {}",
                b.len()
            );
            assert_eq!(len % 4, 0, "messages end aligned");
            out.push(Msg {
                ty: u16_at(b, 4).expect("type"),
                flags: u16_at(b, 6).expect("flags"),
                seq: u32_at(b, 8).expect("seq"),
                nfgenmsg: b[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].to_vec(),
                attrs: parse_attrs(&b[NLMSG_HDRLEN + 4..len]),
                raw: b[..len].to_vec(),
            });
            b = &b[len..];
        }
        out
    }

    fn parse_attrs(mut b: &[u8]) -> Vec<Attr> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = u16_at(b, 0).expect("nla_len") as usize;
            let ty = u16_at(b, 2).expect("nla_type");
            assert!(
                len >= NLA_HDRLEN && len <= b.len(),
                "attribute length {len} of {}",
                b.len()
            );
            let payload = &b[NLA_HDRLEN..len];
            out.push(if ty & NLA_F_NESTED != 0 {
                Attr::Nest(ty & !NLA_F_NESTED, parse_attrs(payload))
            } else {
                Attr::Leaf(ty, payload.to_vec())
            });
            b = &b[align4(len).min(b.len())..];
        }
        out
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// What nft 1.0.6 sent (kernel 6.18, x86_64) for this file, one line per
    /// message, captured in a throwaway namespace with
    /// `strace -e trace=sendmsg -e write=3 -xx nft -f batch.nft`:
    ///
    /// ```text
    /// delete element inet bulkhead iot_mac { 02:00:00:00:00:02 }
    /// delete element bridge bulkhead iot_mac { 02:00:00:00:00:02 }
    /// delete element inet bulkhead iot_v4 { 10.0.2.20 }
    /// add element inet bulkhead guest_mac { 02:00:00:00:00:02, 02:42:ab:cd:ef:01 }
    /// add element bridge bulkhead guest_mac { 02:00:00:00:00:02, 02:42:ab:cd:ef:01 }
    /// add element inet bulkhead guest_v6 { fd00:1::10 }
    /// ```
    const NFT_CAPTURE: [&str; 8] = [
        "140000001000010000000000000000000000000a",
        "480000000e0a01000100000000000000010000000d00010062756c6b68656164000000000c000200696f745f6d6163001800038014000180100001800a0001000200000000020000",
        "480000000e0a01000200000000000000070000000d00010062756c6b68656164000000000c000200696f745f6d6163001800038014000180100001800a0001000200000000020000",
        "440000000e0a01000300000000000000010000000d00010062756c6b68656164000000000b000200696f745f7634000014000380100001800c000180080001000a000214",
        "680000000c0a01040400000000000000010000000d00010062756c6b68656164000000000e00020067756573745f6d616300000008000400000000022c00038014000180100001800a000100020000000002000014000280100001800a0001000242abcdef010000",
        "680000000c0a01040500000000000000070000000d00010062756c6b68656164000000000e00020067756573745f6d616300000008000400000000062c00038014000180100001800a000100020000000002000014000280100001800a0001000242abcdef010000",
        "5c0000000c0a01040600000000000000010000000d00010062756c6b68656164000000000d00020067756573745f7636000000000800040000000004200003801c0001801800018014000100fd000001000000000000000000000010",
        "140000001100010007000000000000000000000a",
    ];

    fn capture_delta() -> MembershipDelta {
        delta(
            &[
                ("iot", SetKind::Mac, &["02:00:00:00:00:02"]),
                ("iot", SetKind::V4, &["10.0.2.20"]),
            ],
            &[
                ("guest", SetKind::Mac, &["02:00:00:00:00:02", "02:42:ab:cd:ef:01"]),
                ("guest", SetKind::V6, &["fd00:1::10"]),
            ],
        )
    }

    /// nft's messages differ from ours in three ways the kernel does not care
    /// about, undone here: nft asks for no acknowledgements; its NEWSETELEM carries
    /// NFTA_SET_ELEM_LIST_SET_ID (4), which only matters for a set created in the
    /// same batch; and libnftnl numbers the list's elements 1, 2, 3... where the
    /// header names them all NFTA_LIST_ELEM (1) and the kernel ignores the type.
    fn normalize_nft(mut m: Msg) -> Msg {
        if m.ty >> 8 == NFNL_SUBSYS_NFTABLES {
            m.flags |= NLM_F_ACK;
            m.raw[6..8].copy_from_slice(&m.flags.to_ne_bytes());
        }
        m.attrs.retain(|a| !matches!(a, Attr::Leaf(4, _)));
        for a in &mut m.attrs {
            if let Attr::Nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems) = a {
                for e in elems {
                    if let Attr::Nest(ty, _) = e {
                        *ty = NFTA_LIST_ELEM;
                    }
                }
            }
        }
        m
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn batch_is_what_nft_sends() {
        let ours = encode_batch(&capture_delta(), 0).expect("encode");
        let nft = hex(&NFT_CAPTURE.concat());
        let (ours_msgs, nft_msgs) = (parse_batch(&ours.bytes), parse_batch(&nft));
        assert_eq!(ours_msgs.len(), nft_msgs.len());
        for (o, n) in ours_msgs.into_iter().zip(nft_msgs) {
            let n = normalize_nft(n);
            if o.ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM {
                // Batch begin/end and deletes: byte for byte (nft sends no SET_ID
                // with deletes, and each has one element).
                assert_eq!(o.raw, n.raw, "message {}", o.seq);
            }
            let strip = |m: Msg| Msg { raw: Vec::new(), ..m };
            assert_eq!(strip(o), strip(n));
        }
        let what: Vec<_> = ours.messages.iter().map(|m| (m.seq, m.what.as_str())).collect();
        assert_eq!(
            what,
            [
                (1, "delete 1 element from inet bulkhead iot_mac"),
                (2, "delete 1 element from bridge bulkhead iot_mac"),
                (3, "delete 1 element from inet bulkhead iot_v4"),
                (4, "add 2 elements to inet bulkhead guest_mac"),
                (5, "add 2 elements to bridge bulkhead guest_mac"),
                (6, "add 1 element to inet bulkhead guest_v6"),
            ]
        );
        assert_eq!((ours.begin_seq, ours.next_seq()), (0, 8));
    }

    /// The numbers above, against the `libc` crate's copy of the headers.
    #[test]
    fn constants_match_libc() {
        let c = |x: libc::c_int| x as u16;
        assert_eq!(NFNL_SUBSYS_NFTABLES, c(libc::NFNL_SUBSYS_NFTABLES));
        assert_eq!(NFNL_MSG_BATCH_BEGIN, c(libc::NFNL_MSG_BATCH_BEGIN));
        assert_eq!(NFNL_MSG_BATCH_END, c(libc::NFNL_MSG_BATCH_END));
        assert_eq!(NFT_MSG_NEWSETELEM, c(libc::NFT_MSG_NEWSETELEM));
        assert_eq!(NFT_MSG_DELSETELEM, c(libc::NFT_MSG_DELSETELEM));
        assert_eq!(NFPROTO_INET as u16, c(libc::NFPROTO_INET));
        assert_eq!(NFPROTO_BRIDGE as u16, c(libc::NFPROTO_BRIDGE));
        assert_eq!(NFPROTO_UNSPEC as u16, c(libc::NFPROTO_UNSPEC));
    }

    #[test]
    fn large_deltas_are_split_into_messages_that_fit() {
        let v6: Vec<Ipv6Addr> = (0..10_000u32)
            .map(|i| Ipv6Addr::from(0xfd00_0001_0000_0000_0000_0000_0000_0000u128 + u128::from(i)))
            .collect();
        let macs: Vec<MacAddr> = (0..10_000u32)
            .map(|i| {
                let b = i.to_be_bytes();
                MacAddr([2, 0x42, b[0], b[1], b[2], b[3]])
            })
            .collect();
        let mut d = MembershipDelta::default();
        d.push(true, zone("iot").into(), Elements::V6(v6));
        d.push(false, zone("guest").into(), Elements::Mac(macs));
        let batch = encode_batch(&d, 1).expect("encode");
        let msgs = parse_batch(&batch.bytes);
        let mut counted = BTreeMap::<(u8, u16), usize>::new();
        for m in &msgs[1..msgs.len() - 1] {
            let Some(Attr::Nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems)) = m.attrs.get(2) else {
                panic!("no element list in {m:?}")
            };
            *counted.entry((m.nfgenmsg[0], m.ty & 0xff)).or_default() += elems.len();
        }
        assert_eq!(
            counted,
            BTreeMap::from([
                ((NFPROTO_INET, NFT_MSG_NEWSETELEM), 10_000),
                ((NFPROTO_INET, NFT_MSG_DELSETELEM), 10_000),
                ((NFPROTO_BRIDGE, NFT_MSG_DELSETELEM), 10_000),
            ])
        );
        // 10,000 MACs take 200,000 bytes: 4 messages per table; IPv6 keys 5.
        assert_eq!(batch.messages.len(), 4 + 4 + 5);
        assert_eq!(msgs.len(), batch.messages.len() + 2);
        assert_eq!(
            batch.messages[0].what,
            "delete 3276 elements from inet bulkhead guest_mac"
        );
    }

    /// An `NLMSG_ERROR` answer to message `seq` (error 0: an acknowledgement).
    fn answer(error: i32, seq: u32) -> Vec<u8> {
        crate::firewall::nfnl::test_answer(error, seq, 72, 0x0a0e)
    }

    #[test]
    fn answers_acknowledge_or_refuse() {
        let batch = encode_batch(&capture_delta(), 10).expect("encode");
        let mut pending: BTreeSet<u32> = batch.messages.iter().map(|m| m.seq).collect();
        assert_eq!(pending, BTreeSet::from([11, 12, 13, 14, 15, 16]));
        // Several answers in one datagram, in any order.
        let both = [answer(0, 12), answer(0, 11)].concat();
        check_answers(&both, &batch, &mut pending).expect("acks");
        assert_eq!(pending, BTreeSet::from([13, 14, 15, 16]));

        let err = check_answers(&answer(-libc::ENOENT, 13), &batch, &mut pending).expect_err("refused");
        assert!(matches!(
            err,
            NetlinkError::Refused {
                errno: Errno::ENOENT,
                ..
            }
        ));
        let text = err.into_nftables_error().to_string();
        assert!(
            text.contains("the kernel refused the batch at: delete 1 element from inet bulkhead iot_v4: ENOENT"),
            "{text}"
        );

        let err = check_answers(&answer(-libc::ENOMEM, 10), &batch, &mut pending).expect_err("commit");
        assert!(err.to_string().contains("the batch as a whole"), "{err}");

        assert!(matches!(
            check_answers(&answer(0, 1)[..20], &batch, &mut pending),
            Err(NetlinkError::Malformed(_))
        ));
    }

    #[test]
    fn an_empty_delta_sends_nothing() {
        // No socket is opened (this passes without root).
        NetlinkSetWriter
            .apply(&MembershipDelta::default())
            .expect("nothing to do");
    }

    /// What `nft add flowtable inet bulkhead offload { hook ingress priority
    /// 0; devices = { br-lan, wan0 }; counter; }` sends: the table, the
    /// name, the hook (ingress, priority 0, the devices) and the counter flag,
    /// as an update (NLM_F_CREATE, no NLM_F_EXCL) inside one batch.
    #[test]
    fn the_counter_flag_is_a_flowtable_update() {
        let batch = encode_flowtable_counter("offload", &["br-lan", "wan0"], 40).expect("encode");
        let msgs = parse_batch(&batch.bytes);
        assert_eq!(msgs.len(), 3);
        assert_eq!((msgs[0].ty, msgs[0].seq), (NFNL_MSG_BATCH_BEGIN, 40));
        assert_eq!((msgs[2].ty, msgs[2].seq), (NFNL_MSG_BATCH_END, 42));
        let m = &msgs[1];
        assert_eq!(m.ty, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWFLOWTABLE);
        assert_eq!(m.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, "an update, not EXCL");
        assert_eq!(m.nfgenmsg[0], NFPROTO_INET);
        let name = |s: &str| [s.as_bytes(), &[0]].concat();
        assert_eq!(
            m.attrs,
            vec![
                Attr::Leaf(NFTA_FLOWTABLE_TABLE, name("bulkhead")),
                Attr::Leaf(NFTA_FLOWTABLE_NAME, name("offload")),
                Attr::Nest(
                    NFTA_FLOWTABLE_HOOK,
                    vec![
                        Attr::Leaf(NFTA_FLOWTABLE_HOOK_NUM, vec![0, 0, 0, 0]),
                        Attr::Leaf(NFTA_FLOWTABLE_HOOK_PRIORITY, vec![0, 0, 0, 0]),
                        Attr::Nest(
                            NFTA_FLOWTABLE_HOOK_DEVS,
                            vec![
                                Attr::Leaf(NFTA_DEVICE_NAME, name("br-lan")),
                                Attr::Leaf(NFTA_DEVICE_NAME, name("wan0")),
                            ]
                        ),
                    ]
                ),
                Attr::Leaf(NFTA_FLOWTABLE_FLAGS, vec![0, 0, 0, 2]),
            ]
        );
        assert_eq!(
            batch.describe(41),
            "set the counter flag of inet bulkhead flowtable offload"
        );
    }
}
