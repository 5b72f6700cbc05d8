//! PURE: `DesiredRuleset` + `Membership` -> one nft JSON document.
//!
//! Two tables, both Bulkhead's own: `inet bulkhead` (routed traffic, input, NAT)
//! and `bridge bulkhead` (traffic between two hosts on one segment bridge, which
//! never reaches the inet hooks). Every rule carries a comment that names it; the
//! verifier reads the table back and compares those names in order.
//!
//! Zones are dispatched by SOURCE MAC and DESTINATION address:
//! - who sends: `ether saddr @<zone>_mac` -> that zone's chain. A MAC in no set falls
//!   through to the unknown zone's chain, so a device Bulkhead has never heard of is
//!   quarantined by the kernel on its first packet, before the daemon knows it.
//! - who is reached: `ip daddr @<zone>_v4` / `ip6 daddr @<zone>_v6`.
//!
//! Per-packet cost is a fixed number of hash-set lookups per zone, independent of
//! the number of devices.
//!
//! Our base chains have policy ACCEPT and every decision for our interfaces ends in
//! an explicit verdict: on OpenWrt, fw4's chains sit on the same hooks, and a DROP
//! policy here would silently cut interfaces Bulkhead does not manage (the admin's
//! own, say). Each zone chain ends in an explicit `drop`, so a packet that entered
//! one never falls back to the base chain's accept.
//!
//! The document is built in a fixed order, and the order is part of the contract
//! (the golden files under `golden/` pin it byte for byte):
//! 1. both tables, each `add`ed, `delete`d and `add`ed again ([`full_document`]);
//! 2. the member sets ([`member_sets`]), then the tunnel's domain sets, empty;
//! 3. every chain of both tables ([`chains`]): inet's, then the bridge table's;
//! 4. every rule, chain by chain, in the order it is matched.
//!
//! Only the last one decides verdicts: within a chain the first matching rule
//! wins, so each rule that must come before another says why next to it. The
//! chains are rendered by family, one file each:
//! - `sets.rs`: set names and elements ([`SetOwner`], [`member_sets`], [`elements`]);
//! - `inet.rs`: inet's base chains `input`, `forward`, `postrouting`, with the
//!   blocked devices' guards;
//! - `zones.rs`: the LAN dispatch chains and each zone's inet chains;
//! - `tunnel.rs`: the tunnel's `tunnel-mark` chain and its guards in inet's base
//!   chains;
//! - `offload.rs`: the flowtable and `forward`'s rule that fills it;
//! - `bridge.rs`: `table bridge bulkhead`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use nftables::expr::{BinaryOperation, Expression, MetaKey, NamedExpression, Prefix};
use nftables::schema::{Chain, Element, NfCmd, NfListObject, NfObject, Nftables, Rule, Set, SetFlag, Table};
use nftables::stmt::{Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::expr::*;
use super::{MembershipDelta, SetKind, TABLE};
use crate::config::DomainSetId;
use crate::policy::{DesiredRuleset, Membership};

pub mod bridge;
pub mod detect;
pub mod dns;
mod inet;
pub mod offload;
mod sets;
mod tunnel;
mod zones;

use sets::set_type;
pub use sets::{domain_set_name, elements, member_sets, set_families, set_name, share_set_name, SetOwner};

/// Bulkhead's packet-mark bits (declared with the other kernel numbers in
/// [`crate::kernel_ids`]).
pub mod marks {
    pub use crate::kernel_ids::{MARK_BRIDGED as BRIDGED, MARK_TUNNEL as TUNNEL};
}

/// One rule as we mean it: statements and the comment that names it.
#[derive(Debug, Clone)]
pub struct NamedRule {
    /// The name, unique within its chain; it is the rule's nft comment.
    pub name: String,
    /// The statements.
    pub stmts: Vec<Statement<'static>>,
}

/// A chain as we mean it.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// Table family.
    pub family: NfFamily,
    /// Chain name.
    pub name: String,
    /// For base chains: (type, hook, priority).
    pub base: Option<(NfChainType, NfHook, i32)>,
    /// Rules in order.
    pub rules: Vec<NamedRule>,
    /// Names of the rules added over netlink after the document, in place
    /// of `rules` (the document's are a closed placeholder the same netlink
    /// batch flushes; see [`bridge::TargetClaimRule`]): the read-back
    /// expects them.
    pub netlink_rules: Vec<&'static str>,
}

impl ChainSpec {
    fn new(family: NfFamily, name: impl Into<String>) -> Self {
        ChainSpec {
            family,
            name: name.into(),
            base: None,
            rules: Vec::new(),
            netlink_rules: Vec::new(),
        }
    }
    fn base(family: NfFamily, name: &str, ty: NfChainType, hook: NfHook, prio: i32) -> Self {
        ChainSpec {
            family,
            name: name.into(),
            base: Some((ty, hook, prio)),
            rules: Vec::new(),
            netlink_rules: Vec::new(),
        }
    }
    fn rule(&mut self, name: impl Into<String>, stmts: Vec<Statement<'static>>) {
        self.rules.push(NamedRule {
            name: name.into(),
            stmts,
        });
    }
}

/// Every chain of both tables, in creation order: the inet table's, then the
/// bridge table's.
pub fn chains(rs: &DesiredRuleset) -> Vec<ChainSpec> {
    let mut out = inet::inet_chains(rs);
    out.extend(bridge::bridge_chains(rs));
    out
}

// Small constructors the chain files share (the generic ones are in `expr`).

/// `icmpv6 type { <types> }` (inet's `input` and the bridge table).
fn icmpv6_types(types: &[&'static str]) -> Statement<'static> {
    is_in(payload("icmpv6", "type"), anon_set(types.iter().map(|t| s(*t))))
}

/// `<addr>/<len>` (tunnel destinations, the bridge table's group addresses).
fn prefix(addr: &str, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(addr)),
        len,
    }))
}

/// `meta mark & <bit> == <bit>` (see [`marks`]).
fn has_mark(bit: u32) -> Statement<'static> {
    op(
        Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            meta(MetaKey::Mark),
            Expression::Number(bit),
        ))),
        Operator::EQ,
        Expression::Number(bit),
    )
}

/// A port number.
fn num(n: u16) -> Expression<'static> {
    Expression::Number(u32::from(n))
}

/// One of our two tables.
fn table(family: NfFamily) -> Table<'static> {
    Table {
        family,
        name: Cow::Borrowed(TABLE),
        handle: None,
    }
}

/// The full-replace document: for each of our two tables, `add` (so the delete
/// cannot fail on a first start), `delete`, then re-create sets (with their
/// elements), chains and rules. nft applies the whole document as ONE kernel
/// transaction: either all of it lands or none of it, and no packet ever sees the
/// table missing or half-built.
pub fn full_document(rs: &DesiredRuleset, m: &Membership) -> Nftables<'static> {
    full_document_holding(rs, m, &Holdings::default())
}

/// What the daemon holds for services, by set: a replace document creates
/// those sets holding it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Addresses in the tunnel's domain sets.
    pub domains: BTreeMap<DomainSetId, Vec<std::net::IpAddr>>,
    /// Pinholes into shared devices, by consuming zone.
    pub pinholes: BTreeMap<crate::config::ZoneId, Vec<super::Pinhole>>,
}

/// [`full_document`] with the domain sets created holding `held` (what the
/// daemon holds for services): the sets are never empty between the replace
/// and a later delta, so no selected traffic slips out directly meanwhile.
pub fn full_document_holding(rs: &DesiredRuleset, m: &Membership, held: &Holdings) -> Nftables<'static> {
    let mut objs: Vec<NfObject<'static>> = Vec::new();
    let add = |o| NfObject::CmdObject(NfCmd::Add(o));
    for fam in [NfFamily::INet, NfFamily::Bridge] {
        objs.push(add(NfListObject::Table(table(fam))));
        objs.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table(fam)))));
        objs.push(add(NfListObject::Table(table(fam))));
    }
    for (owner, kind) in member_sets(rs) {
        for fam in owner.families(kind) {
            objs.push(plain_set(*fam, owner.set_name(kind), kind, elements(m, &owner, kind)));
        }
    }
    // The router's IPv6 addresses, which no neighbour advert may claim
    // (`bridge::ND_CLAIM_RULES`).
    objs.push(plain_set(
        NfFamily::Bridge,
        bridge::ROUTER_V6_SET.to_string(),
        SetKind::V6,
        router_v6_elements(rs, m),
    ));
    // Domain sets are created holding what the daemon holds (in the same
    // transaction), and the daemon expires them itself (no kernel timeouts:
    // `add` does not refresh an element's timeout on the kernels OpenWrt
    // ships, and the daemon must know what the set holds).
    for d in rs.tunnel.iter().flat_map(|t| t.domain_sets.iter()) {
        for v6 in [false, true] {
            let elem: Vec<Expression<'static>> = held
                .domains
                .get(d)
                .into_iter()
                .flatten()
                .filter(|ip| ip.is_ipv6() == v6)
                .map(|ip| Expression::String(Cow::Owned(ip.to_string())))
                .collect();
            let kind = if v6 { SetKind::V6 } else { SetKind::V4 };
            objs.push(plain_set(NfFamily::INet, domain_set_name(d, v6), kind, elem));
        }
    }
    // Pinhole sets, likewise held by the daemon (for the share proxy), in
    // both tables.
    for zone in &rs.share_to {
        for kind in [SetKind::Pinholes4, SetKind::Pinholes6] {
            let elem: Vec<Expression<'static>> = held
                .pinholes
                .get(zone)
                .into_iter()
                .flatten()
                .filter(|p| p.address.is_ipv6() == (kind == SetKind::Pinholes6))
                .map(super::Pinhole::expression)
                .collect();
            let owner = SetOwner::Share(zone.clone());
            for fam in owner.families(kind) {
                objs.push(plain_set(*fam, owner.set_name(kind), kind, elem.clone()));
            }
        }
    }
    if rs.dns_guard.is_some() {
        // Filled by the guards' rules (the kernel's elements, never ours).
        objs.push(add(NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: Cow::Borrowed(TABLE),
            name: Cow::Borrowed(dns::BYPASS_SET),
            handle: None,
            set_type: set_type(SetKind::Mac),
            policy: None,
            // Only `timeout`: nft 1.0.6 (Debian 12, OpenWrt 23) refuses "dynamic" in
            // JSON, and a timeout set takes updates from the packet path anyway.
            flags: Some([SetFlag::Timeout].into_iter().collect()),
            elem: None,
            timeout: Some(dns::BYPASS_MEMORY_SECS),
            gc_interval: None,
            size: Some(1024),
            comment: None,
        }))));
    }
    if let Some(off) = &rs.offload {
        // Before the chains: `forward`'s offload rule names it.
        objs.push(offload::flowtable(off));
    }
    let chains = chains(rs);
    for c in &chains {
        let (ty, hook, prio) = match c.base {
            Some((t, h, p)) => (Some(t), Some(h), Some(p)),
            None => (None, None, None),
        };
        objs.push(add(NfListObject::Chain(Chain {
            family: c.family,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(c.name.clone()),
            newname: None,
            handle: None,
            _type: ty,
            hook,
            prio,
            dev: None,
            policy: c.base.map(|_| NfChainPolicy::Accept),
        })));
    }
    for c in chains {
        for r in c.rules {
            objs.push(add(NfListObject::Rule(Rule {
                family: c.family,
                table: Cow::Borrowed(TABLE),
                chain: Cow::Owned(c.name.clone()),
                expr: Cow::Owned(r.stmts),
                handle: None,
                index: None,
                comment: Some(Cow::Owned(r.name)),
            })));
        }
    }
    Nftables {
        objects: Cow::Owned(objs),
    }
}

/// The elements of [`bridge::ROUTER_V6_SET`]: the segments' configured
/// addresses and the link-local ones the kernel made.
pub fn router_v6_elements(rs: &DesiredRuleset, m: &Membership) -> Vec<Expression<'static>> {
    rs.router_v6
        .iter()
        .chain(&m.router_link_local)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|a| s(a.to_string()))
        .collect()
}

/// `add set` of one of our plain sets (no flags, no kernel timeouts), with
/// its elements.
fn plain_set(family: NfFamily, name: String, kind: SetKind, elem: Vec<Expression<'static>>) -> NfObject<'static> {
    NfObject::CmdObject(NfCmd::Add(NfListObject::Set(Box::new(Set {
        family,
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(name),
        handle: None,
        set_type: set_type(kind),
        policy: None,
        flags: None::<HashSet<SetFlag>>,
        elem: (!elem.is_empty()).then_some(Cow::Owned(elem)),
        timeout: None,
        gc_interval: None,
        size: None,
        comment: None,
    }))))
}

/// The membership-change document: deletes then adds of set elements, one
/// transaction, no rule touched.
pub fn delta_document(delta: &MembershipDelta) -> Nftables<'static> {
    let mut objs = Vec::new();
    for (is_add, owner, elems) in delta.changes() {
        for fam in owner.families(elems.kind()) {
            let el = Element {
                family: *fam,
                table: Cow::Borrowed(TABLE),
                name: Cow::Owned(owner.set_name(elems.kind())),
                elem: Cow::Owned(elems.expressions()),
            };
            let obj = NfListObject::Element(el);
            objs.push(NfObject::CmdObject(if is_add {
                NfCmd::Add(obj)
            } else {
                NfCmd::Delete(obj)
            }));
        }
    }
    Nftables {
        objects: Cow::Owned(objs),
    }
}
