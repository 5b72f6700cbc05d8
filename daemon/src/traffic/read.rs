//! PURE: the connections conntrack lists, as flow readings: who talked to
//! whom, through the tunnel or not, and how much each way so far.
//! Connections without counters (made before accounting was switched on)
//! are skipped and counted.

use std::net::IpAddr;

use crate::firewall::{Entry, Tuple};

/// One connection's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowReading {
    /// Which connection: its original tuple and the kernel's id (a new
    /// connection on the same tuple has another id, and starts from zero).
    pub key: (Tuple, Option<u32>),
    /// The originator's address.
    pub src: IpAddr,
    /// The address it opened the connection to.
    pub dst: IpAddr,
    /// It went through the tunnel (the connection carries the tunnel's mark).
    pub tunnel: bool,
    /// (packets, bytes) the originator sent.
    pub orig: (u64, u64),
    /// (packets, bytes) the other end sent back.
    pub reply: (u64, u64),
}

/// The readings of a dump, and how many entries had no counters.
pub fn flows(entries: &[Entry], tunnel_mark: u32) -> (Vec<FlowReading>, usize) {
    let mut out = Vec::with_capacity(entries.len());
    let mut uncounted = 0;
    for e in entries {
        let Some(c) = e.counters else {
            uncounted += 1;
            continue;
        };
        out.push(FlowReading {
            key: (e.orig, e.id),
            src: e.orig.src(),
            dst: e.orig.dst(),
            tunnel: e.mark.is_some_and(|m| m & tunnel_mark == tunnel_mark),
            orig: c.orig,
            reply: c.reply,
        });
    }
    (out, uncounted)
}
