//! The edges: talking to nf_tables and deleting conntrack entries. Small traits
//! so the reconcile logic is tested without root (the conntrack one is
//! [`ConntrackNetlink`](super::ConntrackNetlink)).

use std::net::IpAddr;

use nftables::helper::{self, NftablesError};
use nftables::schema::Nftables;
use nftables::types::NfFamily;

use super::netlink::{NetlinkError, NetlinkSetWriter};
use super::{render, MembershipDelta, TABLE};

/// Talks to the kernel's nftables.
pub trait NftBackend {
    /// Applies one JSON document as one transaction.
    fn apply(&self, doc: &Nftables<'_>) -> Result<(), NftablesError>;
    /// Lists our table of `family`.
    fn list_table(&self, family: NfFamily) -> Result<Nftables<'static>, NftablesError>;
    /// Applies set-element changes (all removals, then all additions) as one
    /// transaction; a delete of a missing element fails it. By default, as a JSON
    /// document through [`apply`](Self::apply).
    fn apply_delta(&self, delta: &MembershipDelta) -> Result<(), NftablesError> {
        self.apply(&render::delta_document(delta))
    }
    /// Gives our flowtable `name` over `devices` the `counter` flag, which
    /// nft's JSON cannot carry (see `render::offload`). By default nothing:
    /// a backend that never creates a flowtable has nothing to count.
    fn count_offloaded(&self, _name: &str, _devices: &[&str]) -> Result<(), NftablesError> {
        Ok(())
    }
}

/// A shared backend (tests keep a handle on a fake they gave the enforcer).
impl<T: NftBackend + ?Sized> NftBackend for std::sync::Arc<T> {
    fn apply(&self, doc: &Nftables<'_>) -> Result<(), NftablesError> {
        (**self).apply(doc)
    }
    fn list_table(&self, family: NfFamily) -> Result<Nftables<'static>, NftablesError> {
        (**self).list_table(family)
    }
    fn apply_delta(&self, delta: &MembershipDelta) -> Result<(), NftablesError> {
        (**self).apply_delta(delta)
    }
    fn count_offloaded(&self, name: &str, devices: &[&str]) -> Result<(), NftablesError> {
        (**self).count_offloaded(name, devices)
    }
}

/// The kernel's nftables as the daemon uses them: whole documents through the
/// `nft` binary, fed JSON on stdin (`nft -j -f -`), and set-element deltas
/// straight over nfnetlink in-process ([`NetlinkSetWriter`], no `nft` process).
#[derive(Debug, Clone)]
pub struct NftCli {
    /// Path or name of `nft`.
    pub program: String,
}

impl Default for NftCli {
    fn default() -> Self {
        NftCli { program: "nft".into() }
    }
}

impl NftBackend for NftCli {
    fn apply(&self, doc: &Nftables<'_>) -> Result<(), NftablesError> {
        let json = serde_json::to_string(doc).map_err(NftablesError::NftInvalidJson)?;
        helper::apply_ruleset_raw(&json, Some(&self.program), std::iter::empty::<&str>()).map(|_| ())
    }

    fn list_table(&self, family: NfFamily) -> Result<Nftables<'static>, NftablesError> {
        let fam = match family {
            NfFamily::Bridge => "bridge",
            _ => "inet",
        };
        helper::get_current_ruleset_with_args(Some(&self.program), ["list", "table", fam, TABLE])
    }

    /// Straight over nfnetlink, in-process: no `nft` process, no cache fetch and no
    /// socket close per move, which were nearly all of its cost (see `netlink`).
    fn apply_delta(&self, delta: &MembershipDelta) -> Result<(), NftablesError> {
        NetlinkSetWriter.apply(delta).map_err(NetlinkError::into_nftables_error)
    }

    fn count_offloaded(&self, name: &str, devices: &[&str]) -> Result<(), NftablesError> {
        NetlinkSetWriter
            .count_offloaded(name, devices)
            .map_err(NetlinkError::into_nftables_error)
    }
}

/// Removes conntrack entries, so a connection does not outlive the decision that
/// allowed it.
pub trait ConntrackFlusher {
    /// Deletes every entry with any of `addrs` as source or destination.
    fn flush(&self, addrs: &[IpAddr]) -> Result<usize, std::io::Error>;

    /// Deletes them without making the caller wait (discovery's address changes:
    /// the event loop must not stall on them). Errors are logged. The default
    /// waits.
    fn flush_detached(&self, addrs: Vec<IpAddr>) {
        if let Err(e) = self.flush(&addrs) {
            tracing::warn!(error = %e, "could not delete conntrack entries");
        }
    }
}
