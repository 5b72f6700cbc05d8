//! The flowtable: the kernel's fast path for established forwarded flows
//! (`nf_flow_table`, OpenWrt's "software flow offloading").
//!
//! A flow is put in the flowtable by a rule in `forward`, and from then on
//! its packets skip the rule walk: they are forwarded at the ingress of the
//! device they arrive on. So the rule only ever offloads what needs no more
//! judging:
//! - after the blocked devices' and the tunnel's guards, and only
//!   `established` flows (their first packet was judged by the zones, their
//!   answer came back): the flowtable never decides, it repeats a verdict;
//! - only between two different devices of the flowtable (the WAN and the
//!   segments' interfaces): what one bridge carries within itself, and what
//!   goes into the tunnel, keep their paths (the tunnel's interface is not a
//!   flowtable device, and a connection marked as tunnelled is left alone
//!   besides, so the kill switch's rules see every packet);
//! - TCP and UDP (the kernel offloads nothing else);
//! - never a port-forwarded connection (fw4's port forwards, hairpin NAT):
//!   `established-port-forwards` accepts those just before (`ct state
//!   established ct status dnat accept`): the device's address is only in
//!   their reply tuple, where the cut does not look, so a block must reach
//!   them by the rules.
//!
//! What ends an offloaded flow: deleting its conntrack entry, which is what
//! moving or blocking a device does already (`Enforcer::cut`); the kernel
//! tears the flow down at its next garbage-collection pass (every second)
//! and its next packet is judged by the rules again.
//!
//! Counting: the kernel adds offloaded packets to their connection's
//! counters (which the traffic service reads) only when the flowtable has
//! the `counter` flag, which nft's JSON (1.0.6) neither takes nor shows. The
//! enforcer sets it right after each replace, over netlink
//! (`NftBackend::count_offloaded`).

use std::borrow::Cow;

use nftables::expr::{BinaryOperation, Expression, MetaKey, NamedExpression};
use nftables::schema::{Chain, FlowTable, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Flow, Operator, SetOp, Statement};
use nftables::types::{NfFamily, NfHook};

use super::{marks, ChainSpec};
use crate::firewall::expr::*;
use crate::firewall::TABLE;
use crate::policy::{DesiredRuleset, FlowOffload};

/// The flowtable's name in `table inet bulkhead`.
pub const FLOWTABLE: &str = "offload";

/// The table the start-up probe creates and deletes in one transaction.
const PROBE_TABLE: &str = "bulkhead-probe";

/// `add flowtable inet bulkhead offload { hook ingress priority 0; devices = … }`.
pub(super) fn flowtable(off: &FlowOffload) -> NfObject<'static> {
    NfObject::CmdObject(NfCmd::Add(NfListObject::FlowTable(flowtable_spec(
        TABLE,
        FLOWTABLE,
        off.devices.iter().cloned(),
    ))))
}

fn flowtable_spec(
    table: &'static str,
    name: &'static str,
    devices: impl Iterator<Item = String>,
) -> FlowTable<'static> {
    FlowTable {
        family: NfFamily::INet,
        table: Cow::Borrowed(table),
        name: Cow::Borrowed(name),
        handle: None,
        hook: Some(NfHook::Ingress),
        // fw4's priority too ("filter"): where two flowtables share a device
        // the order does not matter, a flow is offloaded once.
        prio: Some(0),
        dev: Some(Cow::Owned(devices.map(Cow::Owned).collect())),
    }
}

/// In `forward`, just before `established` (see the module's text for why
/// there and what it leaves alone). A non-terminal statement: the packet
/// goes on to `established`'s accept.
pub(super) fn offload_rule(fwd: &mut ChainSpec, rs: &DesiredRuleset) {
    let Some(off) = &rs.offload else { return };
    // Every ordered pair of two different devices: `iifname . oifname`.
    let pairs = off.devices.iter().flat_map(|a| {
        off.devices
            .iter()
            .filter(move |b| *b != a)
            .map(move |b| Expression::Named(NamedExpression::Concat(vec![s(a.clone()), s(b.clone())])))
    });
    // Never a port-forwarded (or hairpinned) connection: the device's
    // address is only in its reply tuple, which the cut does not match, so
    // only the rules can end it when the device is blocked. Accepted here,
    // before the offload, as `established` would. (A rule, not `ct status &
    // dnat == 0` in the offload rule: nft lists that as an operator the
    // read-back cannot parse.)
    fwd.rule(
        "established-port-forwards",
        vec![
            ct_state(&["established"]),
            is_in(ct("status"), Expression::List(vec![s("dnat")])),
            accept(),
        ],
    );
    let mut stmts = vec![
        is_in(meta(MetaKey::L4proto), anon_set([s("tcp"), s("udp")])),
        ct_state(&["established"]),
        is_in(
            Expression::Named(NamedExpression::Concat(vec![
                meta(MetaKey::Iifname),
                meta(MetaKey::Oifname),
            ])),
            anon_set(pairs),
        ),
    ];
    if rs.tunnel.is_some() {
        // `ct mark & TUNNEL == 0`: never a tunnelled connection.
        stmts.push(op(
            Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                ct("mark"),
                Expression::Number(marks::TUNNEL),
            ))),
            Operator::EQ,
            Expression::Number(0),
        ));
    }
    stmts.push(Statement::Flow(Flow {
        op: SetOp::Add,
        flowtable: Cow::Owned(format!("@{FLOWTABLE}")),
    }));
    fwd.rule("offload", stmts);
}

/// PURE: the start-up probe. One transaction creates a table of its own with
/// a flowtable (on `lo`, which always exists) and a rule that offloads to
/// it, and deletes the table again: the kernel loads what flowtables need
/// (`nf_flow_table_inet`, `nft_flow_offload`) or refuses the whole
/// transaction, and either way nothing is left behind. Bulkhead's own tables
/// are not touched.
pub fn probe_document() -> Nftables<'static> {
    let add = |o| NfObject::CmdObject(NfCmd::Add(o));
    let table = Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(PROBE_TABLE),
        handle: None,
    };
    let chain = "forward";
    Nftables {
        objects: Cow::Owned(vec![
            add(NfListObject::Table(table.clone())),
            add(NfListObject::FlowTable(flowtable_spec(
                PROBE_TABLE,
                FLOWTABLE,
                std::iter::once("lo".to_string()),
            ))),
            add(NfListObject::Chain(Chain {
                family: NfFamily::INet,
                table: Cow::Borrowed(PROBE_TABLE),
                name: Cow::Borrowed(chain),
                newname: None,
                handle: None,
                _type: None,
                hook: None,
                prio: None,
                dev: None,
                policy: None,
            })),
            add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: Cow::Borrowed(PROBE_TABLE),
                chain: Cow::Borrowed(chain),
                expr: Cow::Owned(vec![Statement::Flow(Flow {
                    op: SetOp::Add,
                    flowtable: Cow::Owned(format!("@{FLOWTABLE}")),
                })]),
                handle: None,
                index: None,
                comment: None,
            })),
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table))),
        ]),
    }
}
