//! Read-back verification: after a full replace, the tables in the kernel must hold
//! exactly the chains, rules (by name, in order) and set elements we meant.

use std::collections::{BTreeMap, BTreeSet};

use nftables::expr::Expression;
use nftables::schema::{NfListObject, NfObject, Nftables};
use nftables::types::NfFamily;

use super::render::{chains, elements, member_sets};
use super::TABLE;
use crate::policy::{DesiredRuleset, Membership};

/// What differs between the meant and the read-back tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct VerifyError(pub Vec<String>);

type Key = (String, String); // (family, name)

fn fam(f: NfFamily) -> String {
    format!("{f:?}").to_lowercase()
}

fn elem_text(e: &Expression<'_>) -> String {
    match e {
        Expression::String(s) => s.to_string(),
        Expression::Number(n) => n.to_string(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Compares the read-back `listed` documents with the desired state.
pub fn verify(rs: &DesiredRuleset, m: &Membership, listed: &[Nftables<'_>]) -> Result<(), VerifyError> {
    verify_with(rs, m, listed, NetlinkRules::Added)
}

/// Where the rules added over netlink after the document stand (see
/// [`ChainSpec::netlink_rules`](super::render::ChainSpec)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetlinkRules {
    /// In place of the document's placeholder.
    Added,
    /// Netlink could not add them and the placeholder was flushed with nft
    /// (no NETLINK_NETFILTER, as under qemu-user): the chain is empty.
    Absent,
    /// Neither: the document's closed placeholder is still there.
    Pending,
}

/// [`verify`], with the netlink-added rules as `netlink` says (where
/// netlink could not add them, the rest of the tables must still be what
/// we meant).
pub fn verify_with(
    rs: &DesiredRuleset,
    m: &Membership,
    listed: &[Nftables<'_>],
    netlink: NetlinkRules,
) -> Result<(), VerifyError> {
    let mut got_rules: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let mut got_chains: BTreeSet<Key> = BTreeSet::new();
    let mut got_sets: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
    let mut got_flowtables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for doc in listed {
        for o in doc.objects.iter() {
            let NfObject::ListObject(o) = o else { continue };
            match o {
                NfListObject::Chain(c) if c.table == TABLE => {
                    got_chains.insert((fam(c.family), c.name.to_string()));
                }
                NfListObject::Rule(r) if r.table == TABLE => {
                    let name = r.comment.as_deref().unwrap_or("<no comment>").to_string();
                    got_rules
                        .entry((fam(r.family), r.chain.to_string()))
                        .or_default()
                        .push(name);
                }
                NfListObject::FlowTable(f) if f.table == TABLE => {
                    let devices = f.dev.as_deref().unwrap_or(&[]).iter().map(|d| d.to_string()).collect();
                    got_flowtables.insert(f.name.to_string(), devices);
                }
                NfListObject::Set(s) if s.table == TABLE => {
                    let elems = s.elem.as_deref().unwrap_or(&[]).iter().map(elem_text).collect();
                    got_sets.insert((fam(s.family), s.name.to_string()), elems);
                }
                _ => {}
            }
        }
    }
    let mut problems = Vec::new();
    let mut want_chains = BTreeSet::new();
    for c in chains(rs) {
        let key = (fam(c.family), c.name.clone());
        want_chains.insert(key.clone());
        let document = c.rules.iter().map(|r| r.name.clone());
        let want: Vec<String> = match netlink {
            _ if c.netlink_rules.is_empty() => document.collect(),
            NetlinkRules::Added => c.netlink_rules.iter().map(|n| n.to_string()).collect(),
            NetlinkRules::Absent => Vec::new(),
            NetlinkRules::Pending => document.collect(),
        };
        let got = got_rules.remove(&key).unwrap_or_default();
        if want != got {
            problems.push(format!(
                "chain {} {}: rules {:?}, expected {:?}",
                key.0, key.1, got, want
            ));
        }
    }
    for extra in got_chains.difference(&want_chains) {
        problems.push(format!("unexpected chain {} {}", extra.0, extra.1));
    }
    for missing in want_chains.difference(&got_chains) {
        problems.push(format!("missing chain {} {}", missing.0, missing.1));
    }
    for (owner, kind) in member_sets(rs) {
        let want: BTreeSet<String> = elements(m, &owner, kind).iter().map(elem_text).collect();
        for f in owner.families(kind) {
            let key = (fam(*f), owner.set_name(kind));
            match got_sets.remove(&key) {
                None => problems.push(format!("missing set {} {}", key.0, key.1)),
                Some(got) if got != want => problems.push(format!(
                    "set {} {}: {} elements, expected {} (differ: {:?})",
                    key.0,
                    key.1,
                    got.len(),
                    want.len(),
                    got.symmetric_difference(&want).take(5).collect::<Vec<_>>()
                )),
                Some(_) => {}
            }
        }
    }
    let want: BTreeSet<String> = super::render::router_v6_elements(rs, m).iter().map(elem_text).collect();
    let key = (fam(NfFamily::Bridge), super::render::bridge::ROUTER_V6_SET.to_string());
    match got_sets.remove(&key) {
        None => problems.push(format!("missing set {} {}", key.0, key.1)),
        Some(got) if got != want => problems.push(format!("set {} {}: {got:?}, expected {want:?}", key.0, key.1)),
        Some(_) => {}
    }
    // Domain sets: they must exist; their elements are the daemon's to manage
    // (restored right after a full replace), not part of the document.
    for d in rs.tunnel.iter().flat_map(|t| t.domain_sets.iter()) {
        for v6 in [false, true] {
            let key = (fam(NfFamily::INet), super::render::domain_set_name(d, v6));
            if got_sets.remove(&key).is_none() {
                problems.push(format!("missing set {} {}", key.0, key.1));
            }
        }
    }
    // Pinhole sets: the same (the share proxy's, held by the daemon).
    for zone in &rs.share_to {
        for v6 in [false, true] {
            for f in [NfFamily::INet, NfFamily::Bridge] {
                let key = (fam(f), super::render::share_set_name(zone, v6));
                if got_sets.remove(&key).is_none() {
                    problems.push(format!("missing set {} {}", key.0, key.1));
                }
            }
        }
    }
    if rs.dns_guard.is_some() {
        // Its elements are the kernel's (senders the guards saw).
        let key = (fam(NfFamily::INet), super::render::dns::BYPASS_SET.to_string());
        if got_sets.remove(&key).is_none() {
            problems.push(format!("missing set {} {}", key.0, key.1));
        }
    }
    // The flowtable, over exactly the devices meant (the kernel drops a
    // device that went away).
    let want_flowtable = rs.offload.as_ref().map(|o| o.devices.clone());
    match (want_flowtable, got_flowtables.remove(super::render::offload::FLOWTABLE)) {
        (Some(want), Some(got)) if want != got => {
            problems.push(format!("flowtable devices {got:?}, expected {want:?}"));
        }
        (Some(_), None) => problems.push("missing flowtable".into()),
        (None, Some(_)) => problems.push(format!("unexpected flowtable {}", super::render::offload::FLOWTABLE)),
        _ => {}
    }
    for name in got_flowtables.into_keys() {
        problems.push(format!("unexpected flowtable {name}"));
    }
    for (k, _) in got_sets {
        problems.push(format!("unexpected set {} {}", k.0, k.1));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(VerifyError(problems))
    }
}
