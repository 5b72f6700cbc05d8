//! Netlink plumbing shared by the in-process nfnetlink edges: nf_tables set
//! deltas ([`netlink`](super::netlink)) and conntrack cuts
//! ([`conntrack`](super::conntrack)).
//!
//! Numbers come from the uapi headers `linux/netlink.h` and
//! `linux/netfilter/nfnetlink.h` (the tests check them against the `libc`
//! crate). Netlink headers and attribute headers are in host byte order (the
//! router may be big-endian MIPS); payloads are whatever the subsystem says,
//! mostly network byte order.
//!
//! Writing is a [`MessageWriter`]; reading is [`messages`] and [`attrs`], which
//! check every length against what surrounds it and report a lie as an error
//! instead of reading past it (the kernel does not lie, but a parser that trusts
//! lengths is a parser that panics).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, PoisonError};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nix::sys::socket::{setsockopt, sockopt};

// linux/netlink.h
pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const NLMSG_ERROR: u16 = 0x2;
pub(super) const NLMSG_DONE: u16 = 0x3;
pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLA_HDRLEN: usize = 4;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// What is left of `nla_type` without the two flags (`NLA_TYPE_MASK`).
pub(super) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// linux/netfilter/nfnetlink.h
pub(super) const NFNETLINK_V0: u8 = 0;
/// `struct nfgenmsg`: family (u8), version (u8), res_id (__be16).
pub(super) const NFGENMSG_LEN: usize = 4;

/// Datagrams up to this size fit the default socket send buffer (`wmem_default`,
/// 208 KiB on Linux); larger ones raise it first (see [`grow_send_buffer`]).
pub(super) const DEFAULT_SNDBUF_FITS: usize = 64 * 1024;

pub(super) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// A nested attribute grew past what its u16 length can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NestTooLarge(pub usize);

/// Appends netlink messages and attributes to one buffer; lengths are patched in
/// when a message or nest is closed.
#[derive(Default)]
pub(super) struct MessageWriter {
    pub(super) buf: Vec<u8>,
}

impl MessageWriter {
    /// `struct nlmsghdr` + `struct nfgenmsg`; returns where the message starts.
    pub(super) fn begin_message(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, see end_message
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        // nfgenmsg.res_id is __be16 (the kernel still accepts host order from old nft).
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    pub(super) fn end_message(&mut self, start: usize) {
        // Everything appended is padded to 4 bytes, so the message is too. A whole
        // datagram is far below 4 GiB: its caller sends it in one sendmsg.
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// One attribute; `nla_len` counts the payload without its padding.
    pub(super) fn attr(&mut self, ty: u16, payload: &[u8]) {
        // The payloads here are names, keys and addresses, at most a few hundred bytes.
        let len = (NLA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    pub(super) fn begin_nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // nla_len, see end_nest
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    pub(super) fn end_nest(&mut self, start: usize) -> Result<(), NestTooLarge> {
        let len = self.buf.len() - start;
        let len16 = u16::try_from(len).map_err(|_| NestTooLarge(len))?;
        self.buf[start..start + 2].copy_from_slice(&len16.to_ne_bytes());
        Ok(())
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }
}

/// One netlink message of a datagram, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Message<'a> {
    pub(super) ty: u16,
    pub(super) flags: u16,
    pub(super) seq: u32,
    /// Everything after the 16-byte header, up to `nlmsg_len`.
    pub(super) payload: &'a [u8],
}

/// PURE: the messages of one datagram, in order. A header that does not fit, or
/// a length shorter than the header or longer than what is left, yields one error
/// and ends the walk: nothing after a lying length can be found.
pub(super) fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

/// See [`messages`].
pub(super) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let (Some(len), Some(ty), Some(flags), Some(seq)) =
            (u32_at(rest, 0), u16_at(rest, 4), u16_at(rest, 6), u32_at(rest, 8))
        else {
            return Some(Err("short message header"));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Some(Err("message length out of bounds"));
        }
        self.rest = rest.get(align4(len)..).unwrap_or_default();
        Some(Ok(Message {
            ty,
            flags,
            seq,
            payload: &rest[NLMSG_HDRLEN..len],
        }))
    }
}

/// Tests: an `NLMSG_ERROR` answer to message `seq` (error 0: an
/// acknowledgement) as the kernel sends it with NETLINK_CAP_ACK, for a message
/// of `len` bytes and type `ty`.
#[cfg(test)]
pub(crate) fn test_answer(error: i32, seq: u32, len: u32, ty: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&36u32.to_ne_bytes());
    b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    b.extend_from_slice(&0x100u16.to_ne_bytes()); // NLM_F_CAPPED
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&4242u32.to_ne_bytes());
    b.extend_from_slice(&error.to_ne_bytes());
    // The answered message's header: len, type, flags, seq, pid.
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&5u16.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// PURE: an `NLMSG_ERROR` payload, `struct nlmsgerr { int error; struct nlmsghdr
/// msg; }`: the error (0 for an acknowledgement, else a negative errno) and the
/// sequence number of the message answered, 8 bytes into its echoed header.
pub(super) fn nlmsgerr(payload: &[u8]) -> Result<(i32, u32), &'static str> {
    let error = u32_at(payload, 0).ok_or("short nlmsgerr")? as i32;
    let seq = u32_at(payload, 4 + 8).ok_or("short nlmsgerr")?;
    Ok((error, seq))
}

/// One attribute, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attr<'a> {
    /// `nla_type` without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` (kernels
    /// before 5.2 set no nested flag, so nesting is the caller's knowledge).
    pub(super) ty: u16,
    /// `nla_len` bytes minus the header; padding excluded.
    pub(super) payload: &'a [u8],
}

/// PURE: the attributes packed in `b`, as the kernel's `nla_for_each_attr` sees
/// them. A length shorter than the header or longer than what is left, or a tail
/// too short for a header, yields one error and ends the walk.
pub(super) fn attrs(b: &[u8]) -> Attrs<'_> {
    Attrs { rest: b }
}

/// See [`attrs`].
#[derive(Debug, Clone)]
pub(super) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let (Some(len), Some(ty)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            return Some(Err("short attribute header"));
        };
        let len = usize::from(len);
        if len < NLA_HDRLEN || len > rest.len() {
            return Some(Err("attribute length out of bounds"));
        }
        // The last attribute's padding may be missing: the walk just ends.
        self.rest = rest.get(align4(len)..).unwrap_or_default();
        Some(Ok(Attr {
            ty: ty & NLA_TYPE_MASK,
            payload: &rest[NLA_HDRLEN..len],
        }))
    }
}

/// A `NETLINK_NETFILTER` socket in the calling thread's network namespace, bound
/// to a kernel-chosen port, with `NETLINK_CAP_ACK` (an error answer then echoes
/// only the refused message's header, not its body), non-blocking. Errors name
/// the step.
///
/// Non-blocking because the kernel answers a batch or a delete inside
/// sendmsg(2), and produces each part of a dump while the previous one is read:
/// an answer that is not there when read is one that will not come, and an
/// error beats a daemon stuck in recv (nft relies on the same).
pub(super) fn open_socket() -> Result<Socket, (&'static str, io::Error)> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| ("opening a NETLINK_NETFILTER socket", e))?;
    socket.bind_auto().map_err(|e| ("binding the netlink socket", e))?;
    socket.set_cap_ack(true).map_err(|e| ("setting NETLINK_CAP_ACK", e))?;
    socket
        .set_non_blocking(true)
        .map_err(|e| ("making the netlink socket non-blocking", e))?;
    Ok(socket)
}

/// Runs `exchange` on the socket kept in `slot` if it belongs to this thread's
/// namespace, else on a new one, with the socket's next sequence number;
/// `exchange` returns its result and the next number after the ones it used.
/// After a clean exchange the socket is kept; after an error it is closed
/// (answers may still be queued on it, and a fresh socket is simpler than
/// draining). `io_error` turns a failed step into the caller's error.
pub(super) fn with_kept_socket<T, E>(
    slot: &Mutex<Option<KeptSocket>>,
    io_error: impl Fn(&'static str, io::Error) -> E,
    exchange: impl FnOnce(&Socket, u32) -> Result<(T, u32), E>,
) -> Result<T, E> {
    let lock = || slot.lock().unwrap_or_else(PoisonError::into_inner);
    let netns = current_netns().map_err(|e| io_error("identifying the network namespace", e))?;
    let taken = lock().take_if(|k| k.netns == netns);
    let (socket, seq) = match taken {
        Some(k) => (k.socket, k.next_seq),
        None => (open_socket().map_err(|(what, e)| io_error(what, e))?, 1),
    };
    let (value, next_seq) = exchange(&socket, seq)?;
    let ours = KeptSocket {
        netns,
        socket,
        next_seq,
    };
    let closed = {
        let mut kept = lock();
        match kept.as_ref() {
            // Another call kept one for this namespace meanwhile: ours goes.
            Some(k) if k.netns == netns => Some(ours),
            // Nothing, or another namespace's (which goes).
            _ => kept.replace(ours),
        }
    };
    // Outside the lock: the close may wait (see [`KeptSocket`]).
    drop(closed);
    Ok(value)
}

/// A socket kept for the next call, the namespace it was opened in, and its next
/// sequence number: numbers keep counting on a kept socket, so an answer can never
/// be taken for one to an earlier request.
///
/// Why keep one: closing a nfnetlink socket right after an nf_tables transaction
/// waits for an RCU grace period (nf_tables flushes its deferred cleanup on
/// NETLINK_URELEASE, whichever subsystem the socket spoke to): 5 to 30 ms
/// measured. The kept socket holds a reference to its namespace, so a deleted
/// namespace lingers until the next call from elsewhere or the process exits.
pub(super) struct KeptSocket {
    /// (st_dev, st_ino) of the namespace: unique while the socket keeps it alive.
    pub(super) netns: (u64, u64),
    pub(super) socket: Socket,
    pub(super) next_seq: u32,
}

/// The calling thread's network namespace (threads can differ: setns).
pub(super) fn current_netns() -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((meta.dev(), meta.ino()))
}

/// Raises the socket's send buffer to `bytes`: `SO_SNDBUFFORCE` (needs
/// CAP_NET_ADMIN, which a firewall daemon has) ignores `wmem_max`; `SO_SNDBUF` is
/// the fallback, capped by it. The kernel refuses (EMSGSIZE) a datagram larger
/// than the send buffer.
pub(super) fn grow_send_buffer(socket: &Socket, bytes: usize) -> io::Result<()> {
    setsockopt(socket, sockopt::SndBufForce, &bytes)
        .or_else(|_| setsockopt(socket, sockopt::SndBuf, &bytes))
        .map_err(io::Error::from)
}

/// Raises the socket's receive buffer to `bytes`, as [`grow_send_buffer`] does
/// the send buffer, and returns what the kernel then counts against (the
/// kernel doubles what it is given, for its bookkeeping). Answers that do not
/// fit are dropped, and the socket reports ENOBUFS.
pub(super) fn grow_receive_buffer(socket: &Socket, bytes: usize) -> io::Result<usize> {
    setsockopt(socket, sockopt::RcvBufForce, &bytes)
        .or_else(|_| setsockopt(socket, sockopt::RcvBuf, &bytes))
        .map_err(io::Error::from)?;
    nix::sys::socket::getsockopt(socket, sockopt::RcvBuf).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers above, against the `libc` crate's copy of the headers.
    #[test]
    fn constants_match_libc() {
        let c = |x: libc::c_int| x as u16;
        assert_eq!(NLMSG_HDRLEN, std::mem::size_of::<libc::nlmsghdr>());
        assert_eq!(NLMSG_ERROR, c(libc::NLMSG_ERROR));
        assert_eq!(NLMSG_DONE, c(libc::NLMSG_DONE));
        assert_eq!(NLM_F_REQUEST, c(libc::NLM_F_REQUEST));
        assert_eq!(NLM_F_ACK, c(libc::NLM_F_ACK));
        assert_eq!(NLM_F_DUMP, c(libc::NLM_F_DUMP));
        assert_eq!(NLM_F_CREATE, c(libc::NLM_F_CREATE));
        assert_eq!(NLA_HDRLEN, std::mem::size_of::<libc::nlattr>());
        assert_eq!(NLA_F_NESTED, c(libc::NLA_F_NESTED));
        assert_eq!(NLA_F_NET_BYTEORDER, c(libc::NLA_F_NET_BYTEORDER));
        assert_eq!(NLA_TYPE_MASK, c(libc::NLA_TYPE_MASK));
        assert_eq!(NFNETLINK_V0, c(libc::NFNETLINK_V0) as u8);
    }

    fn attr(len: u16, ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = len.to_ne_bytes().to_vec();
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn attributes_are_walked_with_padding_and_flags_masked() {
        let mut b = attr(5, 1, &[7, 0, 0, 0]); // one byte and its padding
        b.extend(attr(8, 2 | NLA_F_NESTED, &[4, 0, 3, 0]));
        b.extend(attr(6, 3 | NLA_F_NET_BYTEORDER, &[0, 80])); // last: padding missing
        let got: Vec<_> = attrs(&b).collect();
        assert_eq!(
            got,
            [
                Ok(Attr {
                    ty: 1,
                    payload: &[7][..]
                }),
                Ok(Attr {
                    ty: 2,
                    payload: &[4, 0, 3, 0][..]
                }),
                Ok(Attr {
                    ty: 3,
                    payload: &[0, 80][..]
                }),
            ]
        );
    }

    #[test]
    fn lying_attribute_lengths_end_the_walk_with_one_error() {
        let good = attr(8, 1, &[1, 2, 3, 4]);
        for (b, what) in [
            ([&good[..], &attr(3, 2, &[]), &good].concat(), "shorter than its header"),
            (
                [&good[..], &attr(200, 2, &[1, 2, 3, 4]), &good].concat(),
                "longer than what is left",
            ),
            ([&good[..], &[8, 0]].concat(), "a tail too short for a header"),
        ] {
            let got: Vec<_> = attrs(&b).collect();
            assert_eq!(got.len(), 2, "{what}: {got:?}");
            assert!(got[0].is_ok() && got[1].is_err(), "{what}: {got:?}");
        }
        assert_eq!(attrs(&[]).count(), 0);
    }

    #[test]
    fn lying_message_lengths_end_the_walk_with_one_error() {
        let msg = |len: u32, seq: u32| {
            let mut b = len.to_ne_bytes().to_vec();
            b.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
            b.extend_from_slice(&0u16.to_ne_bytes());
            b.extend_from_slice(&seq.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&[0; 4]);
            b
        };
        let two = [msg(20, 1), msg(20, 2)].concat();
        let seqs: Vec<_> = messages(&two).map(|m| m.map(|m| (m.seq, m.payload.len()))).collect();
        assert_eq!(seqs, [Ok((1, 4)), Ok((2, 4))]);
        for bad in [msg(12, 2), msg(400, 2), msg(20, 2)[..10].to_vec()] {
            let b = [msg(20, 1), bad].concat();
            let got: Vec<_> = messages(&b).collect();
            assert_eq!(got.len(), 2, "{got:?}");
            assert!(got[0].is_ok() && got[1].is_err(), "{got:?}");
        }
    }
}
