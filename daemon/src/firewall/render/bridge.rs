//! `table bridge bulkhead`: traffic between two hosts on one segment bridge,
//! which never reaches the inet hooks, and (chain `input`) what hosts claim
//! to the router itself. The base chain `forward`: it marks every
//! frame it sees as bridged (so inet's `forward` leaves br_netfilter's copies
//! alone), drops blocked devices and rogue DHCP servers and routers, lets ARP,
//! neighbour discovery and group traffic through, then dispatches unicast to the
//! sender's zone by source MAC. Then one `from_<zone>` chain per zone. There is
//! no conntrack here, so every decision is stateless (see the comments by the
//! rules).

use nftables::expr::{BinaryOperation, Expression, MetaKey};
use nftables::stmt::{Mangle, Operator, Statement};
use nftables::types::{NfChainType, NfFamily, NfHook};

use super::detect::{
    sample_blocked, sample_bridge_refusal, sample_spoof, sample_spoof_ip, sample_spoof_ip_named, sample_spoof_named,
    sample_spoof_nd, sample_spoof_port,
};
use super::sets::{blocked_macs, pinhole_key, set_name, share_set_name, SetOwner};
use super::zones::zone_chain;
use super::{icmpv6_types, marks, num, prefix, ChainSpec};
use crate::firewall::expr::*;
use crate::firewall::SetKind;
use crate::policy::{DesiredRuleset, ZoneRules};

/// Between hosts: no router adverts (only the router advertises, from itself).
const BRIDGE_ND_TYPES: [&str; 3] = ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit"];
const ICMP_ERRORS_V6: [&str; 4] = [
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
];

/// The bridge table's chains, in creation order: `forward`, `input`, then
/// each zone's.
pub(super) fn bridge_chains(rs: &DesiredRuleset) -> Vec<ChainSpec> {
    use NfFamily::Bridge;
    let mut chains = Vec::new();
    // Priority -200 (the bridge family's `filter`): it must run before
    // br_netfilter's hook at 0, which steals the frames it passes to the inet
    // hooks and re-injects them after itself, so a chain at 0 registered later
    // would never see them.
    let mut fwd = ChainSpec::base(Bridge, "forward", NfChainType::Filter, NfHook::Forward, -200);
    if rs.bridge_ports.is_empty() {
        chains.push(fwd);
        return chains;
    }
    let ports = &rs.bridge_ports;
    fwd.rule(
        "mark-bridged",
        vec![Statement::Mangle(Mangle {
            key: meta(MetaKey::Mark),
            value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
                meta(MetaKey::Mark),
                Expression::Number(marks::BRIDGED),
            ]))),
        })],
    );
    // Blocked devices: no frame from them to another port, and no unicast to
    // them (a broadcast still reaches them; their answers do not get out).
    // Before the ARP/ND/group accepts below, so a blocked device cannot even
    // resolve its neighbours.
    if let Some(sampling) = &rs.detect {
        sample_blocked(
            &mut fwd,
            sampling,
            vec![iifname_in(ports), is_in(payload("ether", "saddr"), blocked_macs())],
        );
    }
    fwd.rule(
        "blocked-from",
        vec![
            iifname_in(ports),
            is_in(payload("ether", "saddr"), blocked_macs()),
            counter(),
            drop_(),
        ],
    );
    fwd.rule(
        "blocked-to",
        vec![
            iifname_in(ports),
            is_in(payload("ether", "daddr"), blocked_macs()),
            counter(),
            drop_(),
        ],
    );
    // Only the router serves addresses and routes: a device answering DHCP or
    // sending router adverts/redirects is trying to become the others' gateway.
    fwd.rule(
        "no-rogue-dhcp",
        vec![
            iifname_in(ports),
            is_in(payload("udp", "sport"), anon_set([num(67), num(547)])),
            counter(),
            drop_(),
        ],
    );
    fwd.rule(
        "no-rogue-ra",
        vec![
            iifname_in(ports),
            icmpv6_types(&["nd-router-advert", "nd-redirect"]),
            counter(),
            drop_(),
        ],
    );
    // ARP in which a device claims one of the router's addresses: it would
    // become the gateway of every device that believes it (a man in the
    // middle). The router's own ARP never crosses between ports, so any such
    // frame here is forged. Before the ARP accept below.
    if !rs.router_v4.is_empty() {
        let claims_router = || {
            vec![
                iifname_in(ports),
                is_in(
                    payload("arp", "saddr ip"),
                    anon_set(rs.router_v4.iter().map(|a| s(a.to_string()))),
                ),
            ]
        };
        if let Some(sampling) = &rs.detect {
            sample_spoof(&mut fwd, sampling, claims_router());
        }
        let mut guard = claims_router();
        guard.extend([counter(), drop_()]);
        fwd.rule("arp-claims-router", guard);
    }
    // ARP in which a device claims an address another device holds: see
    // [`claims_other_device`]. Before the ARP accept below.
    if let Some(sampling) = &rs.detect {
        sample_spoof_named(&mut fwd, sampling, "-device", claims_other_device(ports));
    }
    let mut guard = claims_other_device(ports);
    guard.extend([counter(), drop_()]);
    fwd.rule("arp-claims-device", guard);
    // Neighbour adverts that claim another device's address or one of the
    // router's: see [`nd_claims_chains`]. Before the ND accept below.
    fwd.rule("nd-claims", nd_claims_jump(ports));
    // Bridge conntrack (nf_conntrack_bridge) is missing from many kernels, this one
    // included, so same-bridge isolation is stateless. ARP and neighbour discovery
    // carry no payload to protect and must pass for any allowed pair to work at all.
    fwd.rule(
        "arp",
        vec![iifname_in(ports), eq(payload("ether", "type"), s("arp")), accept()],
    );
    fwd.rule(
        "icmpv6-nd",
        vec![iifname_in(ports), icmpv6_types(&BRIDGE_ND_TYPES), accept()],
    );
    // Broadcast and multicast (DHCP requests, mDNS, SSDP) reach every port of the
    // bridge; unicast is what zones decide. A group MAC must carry a group IP
    // destination: most stacks accept a unicast IP in a broadcast frame, which
    // would otherwise be a way around the zones.
    let group = || {
        op(
            Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                payload("ether", "daddr"),
                s("01:00:00:00:00:00"),
            ))),
            Operator::EQ,
            s("01:00:00:00:00:00"),
        )
    };
    fwd.rule(
        "group-non-ip",
        vec![
            iifname_in(ports),
            group(),
            op(payload("ether", "type"), Operator::NEQ, anon_set([s("ip"), s("ip6")])),
            accept(),
        ],
    );
    let mut v4_groups = vec![s("255.255.255.255"), prefix("224.0.0.0", 4)];
    v4_groups.extend(rs.lan_broadcasts.iter().map(|b| s(b.to_string())));
    fwd.rule(
        "group-ipv4",
        vec![
            iifname_in(ports),
            group(),
            is_in(payload("ip", "daddr"), anon_set(v4_groups)),
            accept(),
        ],
    );
    fwd.rule(
        "group-ipv6",
        vec![
            iifname_in(ports),
            group(),
            is_in(payload("ip6", "daddr"), anon_set([prefix("ff00::", 8)])),
            accept(),
        ],
    );
    for z in &rs.zones {
        fwd.rule(
            format!("from-{}", z.id),
            vec![
                iifname_in(ports),
                is_in(payload("ether", "saddr"), set_ref(&set_name(&z.id, SetKind::Mac))),
                goto(&zone_chain("from", &z.id)),
            ],
        );
    }
    for d in rs.segment_defaults.iter().filter(|d| !d.ports.is_empty()) {
        fwd.rule(
            format!("unknown-on-{}", d.interface),
            vec![iifname_in(&d.ports), goto(&zone_chain("from", &d.zone))],
        );
    }
    fwd.rule(
        "unknown-device",
        vec![iifname_in(ports), goto(&zone_chain("from", &rs.unknown_zone))],
    );
    chains.push(fwd);
    chains.push(bridge_input_chain(rs));
    chains.push(bridge_prerouting_chain(rs));
    chains.extend(nd_claims_chains(rs));

    for z in &rs.zones {
        chains.push(bridge_zone_chain(rs, z));
    }
    chains
}

/// ARP in which a device claims an address another device holds (a DHCP
/// lease, a neighbour sighting): whoever believes it sends that device's
/// traffic to the claimant (a man in the middle inside the segment). Only
/// addresses somebody holds are policed (`owned-v4`), so a device Bulkhead
/// does not know yet, and ARP probes from 0.0.0.0, pass; a holder's own ARP
/// matches its pair in `owner-of-v4`.
fn claims_other_device(ports: &std::collections::BTreeSet<String>) -> Vec<Statement<'static>> {
    vec![
        iifname_in(ports),
        eq(payload("ether", "type"), s("arp")),
        is_in(
            payload("arp", "saddr ip"),
            set_ref(&SetOwner::AddressOwners.set_name(SetKind::V4)),
        ),
        op(
            Expression::Named(nftables::expr::NamedExpression::Concat(vec![
                payload("arp", "saddr ip"),
                payload("arp", "saddr ether"),
            ])),
            Operator::NEQ,
            set_ref(&SetOwner::AddressOwners.set_name(SetKind::Owners4)),
        ),
    ]
}

/// `input` (priority -200, as `forward`): frames from a port that the bridge
/// delivers to the router itself — its own ARP table, its services (DNS,
/// DHCP renewals, mDNS and SSDP announcements that discovery and the share
/// proxy read), and everything it routes. `forward` never sees them.
/// - An ARP claim of another device's address, as in `forward`: the router
///   would send that device's answers from the internet to the claimant.
/// - IPv4 to the router's own addresses, to a group or broadcast, from an
///   address another device holds: what the router believes of a device by
///   its address (its DNS policy, its mDNS and SSDP evidence, a DHCP
///   renewal) must come from that device's own MAC. Routed traffic (to
///   anywhere else) is left alone: its zone is decided by the MAC already,
///   and the check would cost two lookups per forwarded packet.
fn bridge_input_chain(rs: &DesiredRuleset) -> ChainSpec {
    let mut input = ChainSpec::base(NfFamily::Bridge, "input", NfChainType::Filter, NfHook::Input, -200);
    let ports = &rs.bridge_ports;
    if ports.is_empty() {
        return input;
    }
    if let Some(sampling) = &rs.detect {
        sample_spoof_named(&mut input, sampling, "-device", claims_other_device(ports));
    }
    let mut guard = claims_other_device(ports);
    guard.extend([counter(), drop_()]);
    input.rule("arp-claims-device", guard);

    let mut to_router: Vec<Expression<'static>> = rs.router_v4.iter().map(|a| s(a.to_string())).collect();
    to_router.extend([s("255.255.255.255"), prefix("224.0.0.0", 4)]);
    to_router.extend(rs.lan_broadcasts.iter().map(|b| s(b.to_string())));
    let claims_v4 = claims_address(ports, "ip", to_router, SetKind::V4, SetKind::Owners4);
    if let Some(sampling) = &rs.detect {
        sample_spoof_ip(&mut input, sampling, claims_v4.clone());
    }
    let mut guard = claims_v4;
    guard.extend([counter(), drop_()]);
    input.rule("ip-claims-device", guard);
    // The same for IPv6: to the router's segment addresses, its link-local
    // ones (fe80::/10 delivered here is the router's) and groups. Duplicate
    // address detection comes from `::`, which nobody holds.
    let mut to_router6: Vec<Expression<'static>> = rs.router_v6.iter().map(|a| s(a.to_string())).collect();
    to_router6.extend([prefix("fe80::", 10), prefix("ff00::", 8)]);
    let claims_v6 = claims_address(ports, "ip6", to_router6, SetKind::V6, SetKind::Owners6);
    if let Some(sampling) = &rs.detect {
        sample_spoof_ip_named(&mut input, sampling, "6", claims_v6.clone());
    }
    let mut guard = claims_v6;
    guard.extend([counter(), drop_()]);
    input.rule("ip6-claims-device", guard);
    // A neighbour advert to the router claiming a device's address (its
    // answers from the internet would go to the claimant) or the router's.
    input.rule("nd-claims", nd_claims_jump(ports));
    input
}

/// `prerouting` (priority -200): every frame from a port, before the bridge
/// learns where its source MAC is (learning happens after this hook) and
/// before it is forwarded or delivered to the router. A frame whose source
/// is a known device's MAC, from another port than the one that device is
/// on, is forged (a device posing as another to take its traffic, its zone
/// or its lease): it is dropped, so the bridge never moves the MAC to the
/// forger's port. The binding follows the bridge's forwarding table, read
/// by the daemon: a device that leaves its port (link down, unplugged, 300 s
/// silent) is released, and the port it shows up on next binds it.
fn bridge_prerouting_chain(rs: &DesiredRuleset) -> ChainSpec {
    let mut pre = ChainSpec::base(
        NfFamily::Bridge,
        "prerouting",
        NfChainType::Filter,
        NfHook::Prerouting,
        -200,
    );
    let ports = &rs.bridge_ports;
    let posing = || {
        vec![
            iifname_in(ports),
            is_in(
                payload("ether", "saddr"),
                set_ref(&SetOwner::PortBindings.set_name(SetKind::Mac)),
            ),
            op(
                Expression::Named(nftables::expr::NamedExpression::Concat(vec![
                    payload("ether", "saddr"),
                    meta(MetaKey::Iifname),
                ])),
                Operator::NEQ,
                set_ref(&SetOwner::PortBindings.set_name(SetKind::Ports)),
            ),
        ]
    };
    if let Some(sampling) = &rs.detect {
        sample_spoof_port(&mut pre, sampling, posing());
    }
    let mut guard = posing();
    guard.extend([counter(), drop_()]);
    pre.rule("mac-on-other-port", guard);
    pre
}

/// The chain the neighbour-advert guards live in ([`ND_CLAIM_RULES`], added
/// over netlink right after the full replace).
pub const ND_CLAIMS_CHAIN: &str = "nd-claims";
/// The one rule the document puts in [`ND_CLAIMS_CHAIN`]: every advert
/// reaching it is dropped until the netlink batch replaces it with the
/// guards. A daemon killed between nft's transaction and that batch leaves
/// adverts between ports dropped (IPv6 neighbours stop resolving) until it
/// is back — closed, not open.
pub const ND_GUARDS_PENDING: &str = "guards-pending";
/// Where an advert claiming a device's address goes: sampled, counted, dropped.
pub const ND_CLAIM_DEVICE_CHAIN: &str = "nd-claim-device";
/// Where an advert claiming one of the router's addresses goes.
pub const ND_CLAIM_ROUTER_CHAIN: &str = "nd-claim-router";
/// The router's own IPv6 addresses on the segments, link-local ones
/// included (bridge table).
pub const ROUTER_V6_SET: &str = "router-v6";

/// One rule of [`ND_CLAIMS_CHAIN`]: the advert's target address (the ICMPv6
/// body's bytes 8 to 24) is in `claimed`, and (with `owners`) the pair
/// target . sender MAC is not: `goto` the chain that drops it.
///
/// nft 1.0.6 (Debian 12; OpenWrt 23.05) has no name for the target
/// (`icmpv6 taddr` came later), and its evaluator refuses to look a raw
/// `@th,64,128` up in an `ipv6_addr` set ("datatype mismatch"), while its
/// JSON cannot declare the `typeof` set it would accept. The kernel checks
/// only lengths: the same 16 bytes are looked up in the very sets the ARP
/// and IP guards use, so the owners stay one membership. So these two rules
/// are encoded as netlink messages by the daemon (`netlink::nd_claims`),
/// in their own chain, which the document creates holding only
/// [`ND_GUARDS_PENDING`] (drop): one netlink batch flushes it and adds
/// them, so the chain is never open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetClaimRule {
    /// The rule's name (its comment, as every rule's).
    pub name: &'static str,
    /// The addresses that may not be claimed (by anyone else).
    pub claimed: &'static str,
    /// Target . MAC pairs that may claim them; `None`: nobody may.
    pub owners: Option<&'static str>,
    /// Where a claim goes.
    pub goto: &'static str,
}

/// The rules of [`ND_CLAIMS_CHAIN`], in order: the router's addresses
/// first (nobody may claim them), then the devices' (only their holder).
pub const ND_CLAIM_RULES: [TargetClaimRule; 2] = [
    TargetClaimRule {
        name: "claims-router",
        claimed: ROUTER_V6_SET,
        owners: None,
        goto: ND_CLAIM_ROUTER_CHAIN,
    },
    TargetClaimRule {
        name: "claims-device",
        claimed: "owned-v6",
        owners: Some("owner-of-v6"),
        goto: ND_CLAIM_DEVICE_CHAIN,
    },
];

/// `flush chain bridge bulkhead nd-claims`: the placeholder out, where
/// netlink cannot put the guards in.
pub fn nd_claims_flush() -> nftables::schema::Nftables<'static> {
    use nftables::schema::{Chain, FlushObject, NfCmd, NfObject, Nftables};
    Nftables {
        objects: vec![NfObject::CmdObject(NfCmd::Flush(FlushObject::Chain(Chain {
            family: NfFamily::Bridge,
            table: crate::firewall::TABLE.into(),
            name: ND_CLAIMS_CHAIN.into(),
            ..Chain::default()
        })))]
        .into(),
    }
}

/// `icmpv6 type nd-neighbor-advert jump nd-claims`, from a port.
fn nd_claims_jump(ports: &std::collections::BTreeSet<String>) -> Vec<Statement<'static>> {
    vec![
        iifname_in(ports),
        icmpv6_types(&["nd-neighbor-advert"]),
        jump(ND_CLAIMS_CHAIN),
    ]
}

/// A neighbour advertisement names a target address and (in its option) the
/// MAC that has it; whoever believes it sends that address's traffic there.
/// An advert claiming one of the router's addresses (its link-local one is
/// every device's IPv6 gateway) or an address another device holds is
/// dropped, in `forward` (to other devices) and `input` (to the router), and
/// sampled for a spoofing alert. Devices' link-local addresses are not
/// held by anyone (see `discovery::neigh`), so claims of those pass.
fn nd_claims_chains(rs: &DesiredRuleset) -> Vec<ChainSpec> {
    let mut check = ChainSpec::new(NfFamily::Bridge, ND_CLAIMS_CHAIN);
    check.rule(ND_GUARDS_PENDING, vec![counter(), drop_()]);
    check.netlink_rules = ND_CLAIM_RULES.iter().map(|r| r.name).collect();
    let mut out = vec![check];
    for (chain, suffix) in [(ND_CLAIM_ROUTER_CHAIN, "-router"), (ND_CLAIM_DEVICE_CHAIN, "-device")] {
        let mut c = ChainSpec::new(NfFamily::Bridge, chain);
        if let Some(sampling) = &rs.detect {
            sample_spoof_nd(&mut c, sampling, suffix);
        }
        c.rule("drop", vec![counter(), drop_()]);
        out.push(c);
    }
    out
}

/// Packets of `family` (`ip` or `ip6`) to one of `to_router` whose source
/// address somebody holds (`owned`), from another MAC than the holder's
/// (`owners`: address . MAC).
fn claims_address(
    ports: &std::collections::BTreeSet<String>,
    family: &'static str,
    to_router: Vec<Expression<'static>>,
    owned: SetKind,
    owners: SetKind,
) -> Vec<Statement<'static>> {
    vec![
        iifname_in(ports),
        eq(payload("ether", "type"), s(family)),
        is_in(payload(family, "daddr"), anon_set(to_router)),
        is_in(
            payload(family, "saddr"),
            set_ref(&SetOwner::AddressOwners.set_name(owned)),
        ),
        op(
            Expression::Named(nftables::expr::NamedExpression::Concat(vec![
                payload(family, "saddr"),
                payload("ether", "saddr"),
            ])),
            Operator::NEQ,
            set_ref(&SetOwner::AddressOwners.set_name(owners)),
        ),
    ]
}

/// A zone's bridge chain, `from_<zone>` in `table bridge bulkhead`: what a member
/// may send to hosts on its own segment bridge.
fn bridge_zone_chain(rs: &DesiredRuleset, z: &ZoneRules) -> ChainSpec {
    let mut c = ChainSpec::new(NfFamily::Bridge, zone_chain("from", &z.id));
    let targets = z.targets();
    for t in &targets {
        c.rule(
            format!("to-{t}"),
            vec![
                is_in(payload("ether", "daddr"), set_ref(&set_name(t, SetKind::Mac))),
                accept(),
            ],
        );
    }
    // Zones that may open connections to this one get their answers without
    // conntrack: TCP segments other than a bare SYN, ICMP replies and errors. A
    // device here still cannot OPEN a TCP connection to them. UDP answers are
    // not told apart from requests and stay blocked: put devices that must
    // answer UDP on their own segment, where conntrack decides.
    let bare_syn = || {
        Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            payload("tcp", "flags"),
            Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![s("syn"), s("ack")]))),
        )))
    };
    // Services shared to this zone, on the same bridge: frames to exactly the
    // address, protocol and port a shared device announced.
    if rs.share_to.contains(&z.id) {
        for v6 in [false, true] {
            c.rule(
                format!("shared-{}", if v6 { "v6" } else { "v4" }),
                vec![
                    is_in(pinhole_key(v6, true), set_ref(&share_set_name(&z.id, v6))),
                    accept(),
                ],
            );
        }
    }
    // A shared device answers the zones it is shared to, statelessly as
    // below: TCP other than a bare SYN, from the very address and port of a
    // pinhole, to a member of that zone. It cannot open anything there.
    let providing = rs.share_from.contains(&z.id);
    for consumer in rs.share_to.iter().filter(|c| providing && **c != z.id) {
        for v6 in [false, true] {
            c.rule(
                format!("answer-shared-{consumer}-{}", if v6 { "v6" } else { "v4" }),
                vec![
                    is_in(payload("ether", "daddr"), set_ref(&set_name(consumer, SetKind::Mac))),
                    is_in(pinhole_key(v6, false), set_ref(&share_set_name(consumer, v6))),
                    op(bare_syn(), Operator::NEQ, s("syn")),
                    accept(),
                ],
            );
        }
    }
    for other in rs
        .zones
        .iter()
        .filter(|o| o.id != z.id && o.reach.contains(&z.id) && !targets.contains(&&o.id))
    {
        let to = is_in(payload("ether", "daddr"), set_ref(&set_name(&other.id, SetKind::Mac)));
        c.rule(
            format!("answer-{}-tcp", other.id),
            vec![to.clone(), op(bare_syn(), Operator::NEQ, s("syn")), accept()],
        );
        let icmp4 = [
            "echo-reply",
            "destination-unreachable",
            "time-exceeded",
            "parameter-problem",
        ];
        c.rule(
            format!("answer-{}-icmp", other.id),
            vec![
                to.clone(),
                is_in(payload("icmp", "type"), anon_set(icmp4.iter().map(|t| s(*t)))),
                accept(),
            ],
        );
        let mut icmp6: Vec<&'static str> = ICMP_ERRORS_V6.to_vec();
        icmp6.push("echo-reply");
        c.rule(
            format!("answer-{}-icmpv6", other.id),
            vec![to, icmpv6_types(&icmp6), accept()],
        );
    }
    if let Some(sampling) = rs.detect.as_ref().filter(|_| z.detect) {
        sample_bridge_refusal(&mut c, sampling, &z.id);
    }
    c.rule("default-deny", vec![counter(), drop_()]);
    c
}
