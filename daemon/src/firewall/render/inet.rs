//! `table inet bulkhead`'s base chains: `input` (what may talk to the router
//! itself), `forward` (what may cross it) and `postrouting` (NAT), with the
//! blocked devices' guards. Each base chain sends LAN traffic to a dispatch
//! chain, which picks the sender's zone chain (both in `zones.rs`). The tunnel's
//! rules in these chains come from `tunnel.rs`; where they sit is decided here.

use std::collections::BTreeSet;

use nftables::expr::{Expression, MetaKey, NamedExpression};
use nftables::stmt::Statement;
use nftables::types::{NfChainType, NfFamily, NfHook};

use super::detect::sample_blocked;
use super::dns::{dns_forward_guards, dns_redirect_chain};
use super::sets::{blocked_macs, SetOwner};
use super::tunnel::{
    tunnel_forward_guards, tunnel_input_guard, tunnel_mark_chain, tunnel_masquerade, tunnel_output_chain,
};
use super::zones::{zone_dispatch, zone_forward_chain, zone_input_chain, LAN_FORWARD, LAN_INPUT};
use super::{has_mark, icmpv6_types, marks, num, ChainSpec};
use crate::firewall::expr::*;
use crate::firewall::SetKind;
use crate::policy::{DesiredRuleset, DetectSampling};

/// Neighbour discovery with the router itself (router adverts included).
const ND_TYPES: [&str; 4] = [
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "nd-router-solicit",
    "nd-router-advert",
];

/// The inet table's chains, in creation order: `input`, its dispatch and each
/// zone's input chain; `forward`, its dispatch, the tunnel's `tunnel-mark` (with
/// a tunnel) and each zone's forward chain; `postrouting`. Creation order
/// decides no verdict (every chain exists before the first rule is added, and
/// base chains run by hook and priority); it is the order of the document and
/// of its golden files.
pub(super) fn inet_chains(rs: &DesiredRuleset) -> Vec<ChainSpec> {
    let lan = &rs.lan_interfaces;
    let wan = std::slice::from_ref(&rs.wan);
    let mut chains = Vec::new();

    chains.push(input_chain(rs));
    chains.push(zone_dispatch(rs, LAN_INPUT, "in"));
    for z in &rs.zones {
        chains.push(zone_input_chain(z, rs.detect.as_ref()));
    }

    chains.push(forward_chain(rs));
    chains.push(zone_dispatch(rs, LAN_FORWARD, "from"));
    // A zone that may reach the internet may reach it through the tunnel too
    // (which of its traffic does is the tunnel mark's business, not the zone's).
    let mut exits: Vec<String> = wan.to_vec();
    if let Some(t) = &rs.tunnel {
        exits.push(t.interface.clone());
        chains.push(tunnel_mark_chain(rs, t));
    }
    for z in &rs.zones {
        chains.push(zone_forward_chain(
            z,
            &exits,
            lan,
            rs.share_to.contains(&z.id),
            rs.detect.as_ref(),
        ));
    }

    if let Some(t) = &rs.tunnel {
        chains.push(tunnel_output_chain(t, &rs.wan));
    }
    if let Some(c) = rs.dns_guard.as_ref().and_then(|g| dns_redirect_chain(rs, g)) {
        chains.push(c);
    }
    chains.push(postrouting_chain(rs));
    chains
}

/// `input`: what may talk to the router itself.
fn input_chain(rs: &DesiredRuleset) -> ChainSpec {
    let lan = &rs.lan_interfaces;
    let wan = std::slice::from_ref(&rs.wan);
    let mut input = ChainSpec::base(NfFamily::INet, "input", NfChainType::Filter, NfHook::Input, 0);
    input.rule("loopback", vec![eq(meta(MetaKey::Iifname), s("lo")), accept()]);
    if !lan.is_empty() {
        // A blocked device gets no router service at all, DHCP and DNS included
        // (Bulkhead's DHCP server reads an ordinary UDP socket, behind this hook),
        // and not even neighbour discovery: before `established` so that its open
        // connections to the router end with the block, and before the mDNS and
        // ND accepts below. A set lookup, so blocking is an element delta.
        // Sampled first: a blocked device asking the router again and again
        // (DHCP, DNS, pings) is the commonest way it "keeps trying".
        if let Some(sampling) = &rs.detect {
            sample_blocked(
                &mut input,
                sampling,
                vec![iifname_in(lan), is_in(payload("ether", "saddr"), blocked_macs())],
            );
        }
        input.rule(
            "blocked",
            vec![
                iifname_in(lan),
                is_in(payload("ether", "saddr"), blocked_macs()),
                counter(),
                drop_(),
            ],
        );
    }
    // Replies first: the common case costs one rule.
    input.rule("established", vec![ct_state(&["established", "related"]), accept()]);
    input.rule("invalid", vec![ct_state(&["invalid"]), drop_()]);
    // IPv6 does not work at all without neighbour discovery, from any zone.
    input.rule("icmpv6-nd", vec![icmpv6_types(&ND_TYPES), accept()]);
    if !lan.is_empty() {
        // Discovery listens to every device, the unknown ones most of all: mDNS
        // announcements and answers reach the router's browser from any zone.
        // Only Bulkhead's browser listens on 5353, and it registers nothing, so
        // this opens no service to the zones (DHCP is a zone service because the
        // router answers it).
        input.rule(
            "lan-mdns",
            vec![iifname_in(lan), eq(payload("udp", "dport"), num(5353)), accept()],
        );
        // SSDP, like mDNS: discovery reads the devices' announcements, and
        // the answers to its own searches come back unicast to its search
        // port (conntrack cannot tie an answer to a search sent to a group);
        // with something shared, the share proxy takes consumers' searches
        // and the answers to its own on 1900. Only Bulkhead listens there.
        input.rule(
            "lan-ssdp",
            vec![
                iifname_in(lan),
                is_in(
                    payload("udp", "dport"),
                    anon_set([num(1900), num(crate::discovery::ssdp::SEARCH_PORT)]),
                ),
                accept(),
            ],
        );
        input.rule("lan", vec![iifname_in(lan), goto(LAN_INPUT)]);
    }
    if let Some(t) = &rs.tunnel {
        // After `established`: the VPN's side may answer, never open.
        tunnel_input_guard(&mut input, t);
    }
    if rs.police_wan_input {
        // The WAN's own address configuration (DHCPv4 renewals, DHCPv6 replies).
        input.rule(
            "wan-dhcp-client",
            vec![
                iifname_in(wan),
                is_in(payload("udp", "dport"), anon_set([num(68), num(546)])),
                accept(),
            ],
        );
        input.rule(
            "wan-icmp-echo",
            vec![
                iifname_in(wan),
                eq(payload("icmp", "type"), s("echo-request")),
                accept(),
            ],
        );
        input.rule("wan-drop", vec![iifname_in(wan), counter(), drop_()]);
    }
    input
}

/// `forward`: what may cross the router.
fn forward_chain(rs: &DesiredRuleset) -> ChainSpec {
    let lan = &rs.lan_interfaces;
    let mut fwd = ChainSpec::base(NfFamily::INet, "forward", NfChainType::Filter, NfHook::Forward, 0);
    if let Some(t) = &rs.tunnel {
        tunnel_forward_guards(&mut fwd, t);
    }
    if !lan.is_empty() {
        blocked_forward_guards(&mut fwd, lan, rs.detect.as_ref());
    }
    // Established TCP/UDP flows between two flowtable devices go to the
    // kernel's fast path from here on (when there is a flowtable): after the
    // guards above, so a blocked device's flow is never sped up, and before
    // `established`, which accepts the packet itself.
    super::offload::offload_rule(&mut fwd, rs);
    // Replies and established flows first: this is the per-packet fast path. Zone
    // decisions are taken on a connection's first packet; moving a device deletes
    // its conntrack entries so an old decision does not outlive the move.
    fwd.rule("established", vec![ct_state(&["established", "related"]), accept()]);
    if !lan.is_empty() {
        // Where br_netfilter is loaded (bridge-nf-call-iptables=1, the default on
        // many distributions), frames bridged WITHIN one segment also pass these
        // inet hooks, with the bridge as both in and out interface. They are
        // decided by `table bridge bulkhead`, which sees them either way (and
        // marks them); judging them here too would drop neighbour discovery and
        // multicast. Without the mark it is a packet the router ROUTES back into
        // the bridge it came from (sent to the router's MAC): that one is judged
        // by zone like any other, or a device could hairpin around the bridge
        // table.
        let same_segment = lan
            .iter()
            .map(|l| Expression::Named(NamedExpression::Concat(vec![s(l.clone()), s(l.clone())])));
        fwd.rule(
            "same-segment",
            vec![
                has_mark(marks::BRIDGED),
                is_in(
                    Expression::Named(NamedExpression::Concat(vec![
                        meta(MetaKey::Iifname),
                        meta(MetaKey::Oifname),
                    ])),
                    anon_set(same_segment),
                ),
                accept(),
            ],
        );
    }
    fwd.rule("invalid", vec![ct_state(&["invalid"]), drop_()]);
    if let Some(g) = &rs.dns_guard {
        // New connections only (after `established`), every zone alike.
        dns_forward_guards(&mut fwd, rs, g);
    }
    if !lan.is_empty() {
        fwd.rule("lan", vec![iifname_in(lan), goto(LAN_FORWARD)]);
        // Nothing from elsewhere (the WAN, other interfaces) opens connections into
        // our segments. With IPv6 there is no NAT to hide behind, so this matters.
        // Except port forwards another firewall set up (fw4's DNAT rules).
        fwd.rule(
            "port-forwards",
            vec![
                oifname_in(lan),
                is_in(ct("status"), Expression::List(vec![s("dnat")])),
                accept(),
            ],
        );
        fwd.rule("into-lan", vec![oifname_in(lan), counter(), drop_()]);
    }
    fwd
}

/// Blocked devices, near the top of `forward`: nothing from them (by source MAC,
/// as zones are decided) and nothing to them (by address: the WAN's answers and
/// other zones' connections carry no MAC of theirs). Before `established`, so
/// the block ends flows already running; after the tunnel's leak guard, which
/// stays the first rule (both only drop, so their order changes no verdict, only
/// which counter counts). Still a blocked device keeps its zone's set entries:
/// unblocking is a delete from these sets and nothing else.
fn blocked_forward_guards(fwd: &mut ChainSpec, lan: &BTreeSet<String>, sampling: Option<&DetectSampling>) {
    if let Some(sampling) = sampling {
        sample_blocked(
            fwd,
            sampling,
            vec![iifname_in(lan), is_in(payload("ether", "saddr"), blocked_macs())],
        );
    }
    fwd.rule(
        "blocked-from",
        vec![
            iifname_in(lan),
            is_in(payload("ether", "saddr"), blocked_macs()),
            counter(),
            drop_(),
        ],
    );
    fwd.rule(
        "blocked-to-v4",
        vec![
            is_in(
                payload("ip", "daddr"),
                set_ref(&SetOwner::Blocked.set_name(SetKind::V4)),
            ),
            counter(),
            drop_(),
        ],
    );
    fwd.rule(
        "blocked-to-v6",
        vec![
            is_in(
                payload("ip6", "daddr"),
                set_ref(&SetOwner::Blocked.set_name(SetKind::V6)),
            ),
            counter(),
            drop_(),
        ],
    );
}

/// `postrouting`: NAT. IPv4 leaves by the WAN under the router's address.
fn postrouting_chain(rs: &DesiredRuleset) -> ChainSpec {
    let lan = &rs.lan_interfaces;
    let wan = std::slice::from_ref(&rs.wan);
    let mut post = ChainSpec::base(
        NfFamily::INet,
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        100,
    );
    // Rules naming the LAN interfaces exist only when there are some: nft
    // refuses an empty anonymous set (a router being set up has no segments).
    if !lan.is_empty() {
        post.rule(
            "masquerade",
            vec![
                iifname_in(lan),
                eq(meta(MetaKey::Nfproto), s("ipv4")),
                oifname_in(wan),
                Statement::Masquerade(None),
            ],
        );
    }
    if let Some(t) = &rs.tunnel {
        tunnel_masquerade(&mut post, t);
    }
    post
}
