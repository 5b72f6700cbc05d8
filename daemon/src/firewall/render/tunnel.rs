//! The tunnel's part of `table inet bulkhead`, rendered only when the ruleset
//! has a tunnel: its `tunnel-mark` prerouting chain (which LAN traffic is routed
//! through the tunnel), and the guards it adds to the inet base chains (input
//! drop, leak guard and MSS clamping at the top of `forward`, masquerade in
//! `postrouting`). Where each guard sits in its chain is decided by the caller
//! in `inet.rs`; the order within each is explained here.

use std::borrow::Cow;
use std::collections::BTreeSet;

use nftables::expr::{BinaryOperation, Expression, MetaKey, NamedExpression};
use nftables::stmt::{Mangle, Operator, Statement};
use nftables::types::{NfChainType, NfFamily, NfHook};

use super::sets::{domain_set_name, set_name, SetOwner};
use super::{has_mark, marks, prefix, ChainSpec};
use crate::config::ZoneId;
use crate::firewall::expr::*;
use crate::firewall::SetKind;
use crate::policy::{DesiredRuleset, TunnelRules};

/// In `input`, after `established`: the VPN's side may answer (established,
/// above) but never opens anything on the router.
pub(super) fn tunnel_input_guard(input: &mut ChainSpec, t: &TunnelRules) {
    input.rule(
        "tunnel-drop",
        vec![iifname_in(std::iter::once(&t.interface)), counter(), drop_()],
    );
}

/// The tunnel's rules at the top of `forward`, before the established fast path:
/// an established flow must not keep leaking after its route changed.
pub(super) fn tunnel_forward_guards(fwd: &mut ChainSpec, t: &TunnelRules) {
    // The kill switch's second wall (the first is the blackhole route under the
    // tunnel's in its routing table): marked traffic leaves by the tunnel or not
    // at all, whatever the routing tables say (a route someone else added, the
    // table emptied by hand).
    fwd.rule(
        "tunnel-leak-guard",
        vec![
            has_mark(marks::TUNNEL),
            op(meta(MetaKey::Oifname), Operator::NEQ, s(t.interface.clone())),
            counter(),
            drop_(),
        ],
    );
    // MSS clamping both ways: TCP through the tunnel must fit its MTU without
    // relying on ICMP "fragmentation needed" reaching the end hosts.
    for (family, overhead, name) in [("ipv4", 40u16, "v4"), ("ipv6", 60u16, "v6")] {
        let mss = u32::from(t.mtu.saturating_sub(overhead));
        for (dir, key) in [("out", MetaKey::Oifname), ("in", MetaKey::Iifname)] {
            fwd.rule(
                format!("tunnel-mss-{dir}-{name}"),
                vec![
                    eq(meta(key), s(t.interface.clone())),
                    eq(meta(MetaKey::Nfproto), s(family)),
                    syn_only(),
                    // nftables 0.6.3 swaps the two: `Operator::LT` serialises as
                    // ">" (checked against `nft list`; see the golden file).
                    op(tcp_mss(), Operator::LT, Expression::Number(mss)),
                    Statement::Mangle(Mangle {
                        key: tcp_mss(),
                        value: Expression::Number(mss),
                    }),
                ],
            );
        }
    }
}

/// `output`: the router's own packets with the tunnel mark (the resolver's
/// questions for tunnelled devices) leave by the tunnel or not at all — the
/// same second wall as `tunnel-leak-guard` in `forward`, for what the router
/// itself sends. And what the kernel sends on its own for a tunnelled flow
/// (an ICMP error for a late answer to a closed socket, a "packet too big")
/// carries no packet mark: it is recognised by its connection's mark (set by
/// `tunnel-ct-mark` here and in `tunnel-mark`) and never leaves by the WAN.
/// The e2e kill-switch test caught exactly that: port-unreachables for late
/// DNS answers, sent to the VPN's resolver in clear.
pub(super) fn tunnel_output_chain(t: &TunnelRules, wan: &str) -> ChainSpec {
    let mut out = ChainSpec::base(NfFamily::INet, "output", NfChainType::Filter, NfHook::Output, 0);
    out.rule("tunnel-ct-mark", vec![has_mark(marks::TUNNEL), remember_in_conntrack()]);
    out.rule(
        "tunnel-related-guard",
        vec![
            has_ct_mark(marks::TUNNEL),
            eq(meta(MetaKey::Oifname), s(wan.to_string())),
            counter(),
            drop_(),
        ],
    );
    out.rule(
        "tunnel-leak-guard",
        vec![
            has_mark(marks::TUNNEL),
            op(meta(MetaKey::Oifname), Operator::NEQ, s(t.interface.clone())),
            counter(),
            drop_(),
        ],
    );
    out
}

/// In `postrouting`, after the WAN's masquerade. Both families: the VPN routes
/// only the address it gave us.
pub(super) fn tunnel_masquerade(post: &mut ChainSpec, t: &TunnelRules) {
    post.rule(
        "tunnel-masquerade",
        vec![oifname_in(std::iter::once(&t.interface)), Statement::Masquerade(None)],
    );
}

fn tcp_mss() -> Expression<'static> {
    Expression::Named(NamedExpression::TcpOption(nftables::expr::TcpOption {
        name: Cow::Borrowed("maxseg"),
        field: Some(Cow::Borrowed("size")),
    }))
}

/// `tcp flags & (syn | rst) == syn`.
fn syn_only() -> Statement<'static> {
    op(
        Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            payload("tcp", "flags"),
            Expression::List(vec![s("syn"), s("rst")]),
        ))),
        Operator::EQ,
        s("syn"),
    )
}

/// `ct mark set ct mark | TUNNEL`: the connection remembers it is tunnelled.
fn remember_in_conntrack() -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: ct("mark"),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            ct("mark"),
            Expression::Number(marks::TUNNEL),
        ]))),
    })
}

/// `ct mark & <bit> == <bit>`.
fn has_ct_mark(bit: u32) -> Statement<'static> {
    op(
        Expression::BinaryOperation(Box::new(BinaryOperation::AND(ct("mark"), Expression::Number(bit)))),
        Operator::EQ,
        Expression::Number(bit),
    )
}

fn mark_for_tunnel() -> Vec<Statement<'static>> {
    vec![
        remember_in_conntrack(),
        Statement::Mangle(Mangle {
            key: meta(MetaKey::Mark),
            value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
                meta(MetaKey::Mark),
                Expression::Number(marks::TUNNEL),
            ]))),
        }),
        Statement::Return(None),
    ]
}

fn nets<T: ToString>(items: impl IntoIterator<Item = T>) -> Expression<'static> {
    anon_set(items.into_iter().map(|n| {
        let text = n.to_string();
        match text.split_once('/') {
            Some((addr, len)) => prefix(addr, len.parse().unwrap_or(32)),
            None => s(text),
        }
    }))
}

/// Prerouting (mangle priority, before the routing decision): which LAN traffic
/// gets the tunnel mark. Order matters, first match wins:
/// 1. not from a LAN segment, or to the LAN itself / link-local / multicast /
///    broadcast: never (traffic that stays home, DHCP, mDNS);
/// 2. exclusions (devices: set `tunnel-exclude-devices`, destinations): never;
/// 3. selected destinations, then domain sets: marked, from any device;
/// 4. selected devices (set `tunnel-devices`), then members of selected zones
///    (by MAC set): marked;
/// 5. members of other zones: not marked;
/// 6. a MAC in no set on a segment whose default zone is selected: marked (a
///    camera not yet discovered on the IoT segment must not leak either).
pub(super) fn tunnel_mark_chain(rs: &DesiredRuleset, t: &TunnelRules) -> ChainSpec {
    let mut c = ChainSpec::base(
        NfFamily::INet,
        "tunnel-mark",
        NfChainType::Filter,
        NfHook::Prerouting,
        -150,
    );
    // Rendered whenever there is a LAN, even if the policy selects nothing: the
    // homeowner's per-device choices are elements of `tunnel-devices` and
    // `tunnel-exclude-devices`, and a choice must never need a structural change
    // (which would cut every connection of the home).
    if rs.lan_interfaces.is_empty() {
        return c;
    }
    c.rule(
        "not-from-lan",
        vec![
            op(
                meta(MetaKey::Iifname),
                Operator::NEQ,
                anon_set(rs.lan_interfaces.iter().map(|l| s(l.clone()))),
            ),
            Statement::Return(None),
        ],
    );
    let mut local_v4: Vec<String> = t.local_v4.iter().map(|n| n.to_string()).collect();
    local_v4.extend(["127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32"].map(String::from));
    c.rule(
        "stays-home-v4",
        vec![is_in(payload("ip", "daddr"), nets(local_v4)), Statement::Return(None)],
    );
    let mut local_v6: Vec<String> = t.local_v6.iter().map(|n| n.to_string()).collect();
    local_v6.extend(["::1/128", "fe80::/10", "ff00::/8"].map(String::from));
    c.rule(
        "stays-home-v6",
        vec![is_in(payload("ip6", "daddr"), nets(local_v6)), Statement::Return(None)],
    );
    c.rule(
        "excluded-devices",
        vec![
            is_in(
                payload("ether", "saddr"),
                set_ref(&SetOwner::TunnelExclude.set_name(SetKind::Mac)),
            ),
            Statement::Return(None),
        ],
    );
    if !t.exclude_v4.is_empty() {
        c.rule(
            "excluded-v4",
            vec![
                is_in(payload("ip", "daddr"), nets(&t.exclude_v4)),
                Statement::Return(None),
            ],
        );
    }
    if !t.exclude_v6.is_empty() {
        c.rule(
            "excluded-v6",
            vec![
                is_in(payload("ip6", "daddr"), nets(&t.exclude_v6)),
                Statement::Return(None),
            ],
        );
    }
    let marked = |mut m: Vec<Statement<'static>>| {
        m.extend(mark_for_tunnel());
        m
    };
    if !t.destinations_v4.is_empty() {
        c.rule(
            "destinations-v4",
            marked(vec![is_in(payload("ip", "daddr"), nets(&t.destinations_v4))]),
        );
    }
    if !t.destinations_v6.is_empty() {
        c.rule(
            "destinations-v6",
            marked(vec![is_in(payload("ip6", "daddr"), nets(&t.destinations_v6))]),
        );
    }
    for d in &t.domain_sets {
        c.rule(
            format!("domains-{d}-v4"),
            marked(vec![is_in(payload("ip", "daddr"), set_ref(&domain_set_name(d, false)))]),
        );
        c.rule(
            format!("domains-{d}-v6"),
            marked(vec![is_in(payload("ip6", "daddr"), set_ref(&domain_set_name(d, true)))]),
        );
    }
    c.rule(
        "devices",
        marked(vec![is_in(
            payload("ether", "saddr"),
            set_ref(&SetOwner::TunnelDevices.set_name(SetKind::Mac)),
        )]),
    );
    let known: BTreeSet<&ZoneId> = rs.zones.iter().map(|z| &z.id).collect();
    for z in t.zones.iter().filter(|z| known.contains(z)) {
        c.rule(
            format!("zone-{z}"),
            marked(vec![is_in(
                payload("ether", "saddr"),
                set_ref(&set_name(z, SetKind::Mac)),
            )]),
        );
    }
    if !t.default_interfaces.is_empty() {
        for z in t.other_zones.iter().filter(|z| known.contains(z)) {
            c.rule(
                format!("zone-{z}-direct"),
                vec![
                    is_in(payload("ether", "saddr"), set_ref(&set_name(z, SetKind::Mac))),
                    Statement::Return(None),
                ],
            );
        }
        c.rule("segment-defaults", marked(vec![iifname_in(&t.default_interfaces)]));
    }
    c
}
