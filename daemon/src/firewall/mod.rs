//! The firewall: a pure ruleset model rendered to nft JSON, applied in one atomic
//! transaction, verified by reading back; membership changes as set-element deltas.
//! [`Enforcer`] is the one entry: everything that changes our tables goes
//! through [`Enforcer::enforce`] (or, for services' timed elements,
//! [`Enforcer::hold`]).
//!
//! Bulkhead owns exactly `table inet bulkhead` and `table bridge bulkhead` and never
//! touches any other table or flushes the ruleset. (At start it asks whether the
//! kernel has flowtables with a transaction that creates and deletes a table
//! `inet bulkhead-probe`: nothing of it is ever left.)

mod backend;
pub mod boot;
mod conntrack;
mod delta;
mod enforcer;
mod expr;
mod netlink;
pub mod nflog;
mod nfnl;
pub mod render;
pub(crate) mod verify;

pub use backend::{ConntrackFlusher, NftBackend, NftCli};
#[doc(hidden)]
pub use conntrack::fuzz_entry_conntrack_dump;
pub use conntrack::{Addrs, ConntrackError, ConntrackNetlink, CutReport, Dump, Entry, FlowCounters, Tuple, L4};
pub use delta::{diff_membership, Elements, MembershipDelta, Pinhole};
pub use enforcer::{
    addresses_to_cut, EnforceStats, Enforcer, Held, HoldError, MembershipChange, MAX_HELD_ADDRESSES, MAX_HELD_PINHOLES,
};
pub use netlink::{NetlinkError, NetlinkSetWriter};
pub use render::SetOwner;
pub use verify::{verify, VerifyError};

use crate::policy::{DesiredRuleset, Membership};

/// The name of both our tables.
pub const TABLE: &str = "bulkhead";

/// The three kinds of member sets (per zone, and for blocked devices; the
/// tunnel's device sets are MAC sets only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// `ether_addr`: decides the SOURCE zone of a packet.
    Mac,
    /// `ipv4_addr`: decides the DESTINATION zone of IPv4.
    V4,
    /// `ipv6_addr`: decides the DESTINATION zone of IPv6.
    V6,
    /// `ipv4_addr . inet_proto . inet_service`: a shared service's IPv4 pinholes.
    Pinholes4,
    /// `ipv6_addr . inet_proto . inet_service`: a shared service's IPv6 pinholes.
    Pinholes6,
    /// `ipv4_addr . ether_addr`: which device holds an address (ARP claims).
    Owners4,
    /// `ipv6_addr . ether_addr`: which device holds an IPv6 address.
    Owners6,
    /// `ether_addr . ifname`: which bridge port a device's MAC is bound to.
    Ports,
}

impl SetKind {
    /// The member kinds (a zone's and the blocked devices' sets), in
    /// set-creation order.
    pub const ALL: [SetKind; 3] = [SetKind::Mac, SetKind::V4, SetKind::V6];
    fn suffix(self) -> &'static str {
        match self {
            SetKind::Mac => "mac",
            SetKind::V4 | SetKind::Pinholes4 | SetKind::Owners4 => "v4",
            SetKind::V6 | SetKind::Pinholes6 | SetKind::Owners6 => "v6",
            SetKind::Ports => "port",
        }
    }
}

/// Errors of the firewall applier.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft` could not be run or rejected the document; the kernel kept the old state.
    #[error("nft rejected the {what} document")]
    Nft {
        /// Which document.
        what: &'static str,
        /// nft's complaint.
        #[source]
        source: nftables::helper::NftablesError,
    },
    /// The table read back differs from what was applied.
    #[error("the ruleset read back differs from what was applied")]
    Verify(#[source] VerifyError),
}

/// What the kernel holds, as far as we applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Structure.
    pub ruleset: DesiredRuleset,
    /// Set contents.
    pub membership: Membership,
}

/// How a reconcile changed the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Nothing to do.
    Unchanged,
    /// Set elements added/removed; rules untouched.
    Delta {
        /// Elements added.
        added: usize,
        /// Elements removed.
        removed: usize,
    },
    /// Both tables replaced in one transaction.
    FullReplace,
}

/// Replaces both tables in one transaction, then reads them back and compares.
fn full_replace(
    nft: &dyn NftBackend,
    ruleset: &DesiredRuleset,
    membership: &Membership,
    held: &render::Holdings,
) -> Result<(), FirewallError> {
    nft.apply(&render::full_document_holding(ruleset, membership, held))
        .map_err(|source| FirewallError::Nft { what: "full", source })?;
    if let Some(off) = &ruleset.offload {
        // Not part of the transaction (nft's JSON cannot say it): until
        // this lands, offloaded packets go uncounted; without it they stay
        // uncounted, which is worth a warning, not an undone replace.
        let devices: Vec<&str> = off.devices.iter().map(String::as_str).collect();
        if let Err(e) = nft.count_offloaded(render::offload::FLOWTABLE, &devices) {
            tracing::warn!(error = %error_chain(&e), "the flowtable does not count: offloaded traffic is missing from the traffic counts");
        }
    }
    // Not part of the transaction either (nft cannot load these rules):
    // until they land, the document's placeholder drops every neighbour
    // advert between ports (closed, not open, if the daemon dies here).
    // Where netlink cannot add them (no NETLINK_NETFILTER, as under
    // qemu-user), the placeholder is flushed with nft and the rest of the
    // tables is in force, the adverts unchecked: said every time, not a
    // refused apply.
    let guarded = if ruleset.bridge_ports.is_empty() {
        verify::NetlinkRules::Added
    } else {
        guard_nd_claims(nft).map_err(|source| FirewallError::Nft {
            what: "neighbour-advert guards",
            source,
        })?
    };
    let inet = nft
        .list_table(nftables::types::NfFamily::INet)
        .map_err(|source| FirewallError::Nft { what: "list", source })?;
    let bridge = nft
        .list_table(nftables::types::NfFamily::Bridge)
        .map_err(|source| FirewallError::Nft { what: "list", source })?;
    verify::verify_with(ruleset, membership, &[inet, bridge], guarded).map_err(FirewallError::Verify)
}

/// Replaces the `nd-claims` placeholder with the neighbour-advert guards
/// over netlink. Only where this process cannot open a NETLINK_NETFILTER
/// socket at all (qemu-user: "Protocol not supported") is the placeholder
/// flushed with nft instead (the adverts go unchecked; failing that, it
/// stays and they stay dropped). Any other error — the kernel refused the
/// batch, an answer went missing — is the apply's error: the placeholder
/// stays (closed) and the apply is tried again, as for any failed apply.
pub(crate) fn guard_nd_claims(nft: &dyn NftBackend) -> Result<verify::NetlinkRules, nftables::helper::NftablesError> {
    let Err(e) = nft.guard_nd_claims(&render::bridge::ND_CLAIM_RULES) else {
        return Ok(verify::NetlinkRules::Added);
    };
    // The error crossed `NftBackend` as text; the OS's words for
    // EPROTONOSUPPORT and EAFNOSUPPORT, from opening the socket.
    let text = error_chain(&e);
    let no_socket = text.contains("Protocol not supported") || text.contains("Address family not supported");
    if !no_socket {
        return Err(e);
    }
    tracing::error!(error = %text, "the neighbour-advert guards cannot be added here (no NETLINK_NETFILTER); neighbour adverts go unchecked");
    match nft.apply(&render::bridge::nd_claims_flush()) {
        Ok(()) => Ok(verify::NetlinkRules::Absent),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "nor could their placeholder be flushed; neighbour adverts between ports are dropped");
            Ok(verify::NetlinkRules::Pending)
        }
    }
}

/// Whether this kernel has flowtables: applies [`render::offload::probe_document`]
/// (a table of its own, created and deleted in one transaction). An error
/// says why not.
pub fn probe_flowtables(nft: &dyn NftBackend) -> Result<(), FirewallError> {
    nft.apply(&render::offload::probe_document())
        .map_err(|source| FirewallError::Nft {
            what: "flowtable probe",
            source,
        })
}

/// Formats an error with all its sources, `a: b: c`. nft's own complaint (its
/// stderr, which the `nftables` crate keeps out of its message) is added, so
/// the status and the alert say what nft refused.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if !s.is_empty() {
            s.push_str(": ");
        }
        let text = c.to_string();
        s.push_str(&text);
        if let Some(nftables::helper::NftablesError::NftFailed { stderr, .. }) =
            c.downcast_ref::<nftables::helper::NftablesError>()
        {
            let stderr = stderr.trim();
            if !stderr.is_empty() && !text.contains(stderr) {
                s.push_str(": ");
                s.push_str(stderr);
            }
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod netns_test;
#[cfg(test)]
mod tests;
