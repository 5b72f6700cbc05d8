//! The edges: talking to nf_tables and deleting conntrack entries. Small traits
//! so the reconcile logic is tested without root (the conntrack one is
//! [`ConntrackNetlink`](super::ConntrackNetlink)).

use std::net::IpAddr;

use nftables::helper::{self, NftablesError};
use nftables::schema::Nftables;
use nftables::types::NfFamily;

use super::netlink::{NetlinkError, NetlinkSetWriter};
use super::render::bridge::TargetClaimRule;
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
    /// Appends `rules` to the bridge table's `nd-claims` chain, which nft's
    /// JSON cannot say (see [`TargetClaimRule`]). By default nothing: a fake
    /// lists them itself ([`crate::testutil`]).
    fn guard_nd_claims(&self, _rules: &[TargetClaimRule]) -> Result<(), NftablesError> {
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
    fn guard_nd_claims(&self, rules: &[TargetClaimRule]) -> Result<(), NftablesError> {
        (**self).guard_nd_claims(rules)
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
    /// `nft -j -f -` with the document on stdin. Not the `nftables` crate's
    /// helper: it leaves nft's stderr to the daemon's, so the complaint went
    /// to the log unlabelled and never into the error (status, alerts).
    fn apply(&self, doc: &Nftables<'_>) -> Result<(), NftablesError> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let json = serde_json::to_string(doc).map_err(NftablesError::NftInvalidJson)?;
        let exec_error = |inner| NftablesError::NftExecution {
            program: self.program.clone().into(),
            inner,
        };
        let mut child = Command::new(&self.program)
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(exec_error)?;
        // nft reads the whole document before it writes anything.
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(json.as_bytes()).map_err(exec_error)?;
        }
        let output = child.wait_with_output().map_err(exec_error)?;
        if output.status.success() {
            return Ok(());
        }
        Err(NftablesError::NftFailed {
            program: self.program.clone().into(),
            hint: "applying ruleset".into(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
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

    fn guard_nd_claims(&self, rules: &[TargetClaimRule]) -> Result<(), NftablesError> {
        NetlinkSetWriter
            .guard_nd_claims(rules)
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
