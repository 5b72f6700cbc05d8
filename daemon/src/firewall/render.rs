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

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use nftables::expr::{BinaryOperation, Expression, MetaKey, NamedExpression, Prefix};
use nftables::schema::{
    Chain, Element, NfCmd, NfListObject, NfObject, Nftables, Rule, Set, SetFlag, SetTypeValue, Table,
};
use nftables::stmt::{Mangle, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::expr::*;
use super::{MembershipDelta, SetKind, TABLE};
use crate::config::DomainSetId;
use crate::config::ZoneId;
use crate::policy::{DesiredRuleset, Membership, ServicePort, TunnelRules, ZoneRules};

/// Bulkhead's packet-mark bits (declared with the other kernel numbers in
/// [`crate::kernel_ids`]).
pub mod marks {
    pub use crate::kernel_ids::{MARK_BRIDGED as BRIDGED, MARK_TUNNEL as TUNNEL};
}

/// Name of a zone's set of a given kind, e.g. `iot_v4`.
pub fn set_name(zone: &ZoneId, kind: SetKind) -> String {
    format!("{zone}_{}", kind.suffix())
}

/// Whose elements a member set holds. Sets other than a zone's have a hyphen in
/// their name, which a zone name cannot contain, so they never collide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetOwner {
    /// A zone's sets: `<zone>_mac`, `<zone>_v4`, `<zone>_v6`.
    Zone(ZoneId),
    /// Devices the homeowner blocked: `blocked-mac` (both tables), `blocked-v4`,
    /// `blocked-v6`.
    Blocked,
    /// MACs whose traffic gets the tunnel mark: `tunnel-devices` (inet only).
    TunnelDevices,
    /// MACs whose traffic never gets it: `tunnel-exclude-devices` (inet only).
    TunnelExclude,
    /// One of the tunnel's domain sets: `dom_<name>_v4`, `dom_<name>_v6` (inet
    /// only). Its elements are not membership: services put them there with a
    /// lifetime (see [`Enforcer::hold`](super::Enforcer::hold)).
    DomainSet(DomainSetId),
}

impl From<ZoneId> for SetOwner {
    fn from(z: ZoneId) -> Self {
        SetOwner::Zone(z)
    }
}

impl SetOwner {
    /// The nft set's name for elements of `kind`.
    pub fn set_name(&self, kind: SetKind) -> String {
        match self {
            SetOwner::Zone(z) => set_name(z, kind),
            SetOwner::Blocked => format!("blocked-{}", kind.suffix()),
            SetOwner::TunnelDevices => "tunnel-devices".into(),
            SetOwner::TunnelExclude => "tunnel-exclude-devices".into(),
            SetOwner::DomainSet(id) => domain_set_name(id, kind == SetKind::V6),
        }
    }

    /// The families whose table holds this set: MAC sets of zones and blocked
    /// devices in both tables (the bridge table decides by MAC alone), address
    /// sets and the tunnel's sets (only `tunnel-mark`, in inet, reads them) in
    /// inet only.
    pub fn families(&self, kind: SetKind) -> &'static [NfFamily] {
        match self {
            SetOwner::TunnelDevices | SetOwner::TunnelExclude | SetOwner::DomainSet(_) => &[NfFamily::INet],
            SetOwner::Zone(_) | SetOwner::Blocked => set_families(kind),
        }
    }
}

/// Every member set the ruleset has, in creation order: each zone's three, the
/// blocked devices' three, and with a tunnel its two device sets.
pub fn member_sets(rs: &DesiredRuleset) -> Vec<(SetOwner, SetKind)> {
    let mut out: Vec<(SetOwner, SetKind)> = rs
        .zones
        .iter()
        .flat_map(|z| SetKind::ALL.map(|k| (SetOwner::Zone(z.id.clone()), k)))
        .collect();
    out.extend(SetKind::ALL.map(|k| (SetOwner::Blocked, k)));
    if rs.tunnel.is_some() {
        out.push((SetOwner::TunnelDevices, SetKind::Mac));
        out.push((SetOwner::TunnelExclude, SetKind::Mac));
    }
    out
}

fn set_type(kind: SetKind) -> nftables::schema::SetType {
    use nftables::schema::SetType::*;
    match kind {
        SetKind::Mac => EtherAddr,
        SetKind::V4 => Ipv4Addr,
        SetKind::V6 => Ipv6Addr,
    }
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
}

impl ChainSpec {
    fn new(family: NfFamily, name: impl Into<String>) -> Self {
        ChainSpec {
            family,
            name: name.into(),
            base: None,
            rules: Vec::new(),
        }
    }
    fn base(family: NfFamily, name: &str, ty: NfChainType, hook: NfHook, prio: i32) -> Self {
        ChainSpec {
            family,
            name: name.into(),
            base: Some((ty, hook, prio)),
            rules: Vec::new(),
        }
    }
    fn rule(&mut self, name: impl Into<String>, stmts: Vec<Statement<'static>>) {
        self.rules.push(NamedRule {
            name: name.into(),
            stmts,
        });
    }
}

/// Every chain of both tables, in creation order.
pub fn chains(rs: &DesiredRuleset) -> Vec<ChainSpec> {
    let mut out = inet_chains(rs);
    out.extend(bridge_chains(rs));
    out
}

/// Dispatch chains. The hyphen keeps them apart from zone chains (`in_<zone>`,
/// `from_<zone>`): zone names cannot contain one, so a zone named `lan` is fine.
const LAN_INPUT: &str = "lan-input";
const LAN_FORWARD: &str = "lan-forward";

/// A LAN dispatch chain: the sender's MAC picks its zone's `<prefix>_<zone>`
/// chain; a MAC in no set goes to its segment's default zone, else the unknown
/// zone. Input and forward dispatch the same way, to different chains.
fn zone_dispatch(rs: &DesiredRuleset, name: &str, prefix: &str) -> ChainSpec {
    let mut c = ChainSpec::new(NfFamily::INet, name);
    for z in &rs.zones {
        c.rule(
            format!("from-{}", z.id),
            vec![
                is_in(payload("ether", "saddr"), set_ref(&set_name(&z.id, SetKind::Mac))),
                goto(&zone_chain(prefix, &z.id)),
            ],
        );
    }
    for d in &rs.segment_defaults {
        c.rule(
            format!("unknown-on-{}", d.interface),
            vec![
                iifname_in(std::slice::from_ref(&d.interface)),
                goto(&zone_chain(prefix, &d.zone)),
            ],
        );
    }
    c.rule("unknown-device", vec![goto(&zone_chain(prefix, &rs.unknown_zone))]);
    c
}

fn zone_chain(prefix: &str, z: &ZoneId) -> String {
    format!("{prefix}_{z}")
}

fn inet_chains(rs: &DesiredRuleset) -> Vec<ChainSpec> {
    use NfFamily::INet;
    let lan = &rs.lan_interfaces;
    let wan = std::slice::from_ref(&rs.wan);
    let mut chains = Vec::new();

    // --- input: what may talk to the router itself.
    let mut input = ChainSpec::base(INet, "input", NfChainType::Filter, NfHook::Input, 0);
    input.rule("loopback", vec![eq(meta(MetaKey::Iifname), s("lo")), accept()]);
    if !lan.is_empty() {
        // A blocked device gets no router service at all, DHCP and DNS included
        // (Bulkhead's DHCP server reads an ordinary UDP socket, behind this hook),
        // and not even neighbour discovery: before `established` so that its open
        // connections to the router end with the block, and before the mDNS and
        // ND accepts below. A set lookup, so blocking is an element delta.
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
        input.rule("lan", vec![iifname_in(lan), goto(LAN_INPUT)]);
    }
    if let Some(t) = &rs.tunnel {
        // The VPN's side may answer (established, above) but never opens
        // anything on the router.
        input.rule(
            "tunnel-drop",
            vec![iifname_in(std::iter::once(&t.interface)), counter(), drop_()],
        );
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
    chains.push(input);

    chains.push(zone_dispatch(rs, LAN_INPUT, "in"));

    for z in &rs.zones {
        chains.push(zone_input_chain(z));
    }

    // --- forward: what may cross the router.
    let mut fwd = ChainSpec::base(INet, "forward", NfChainType::Filter, NfHook::Forward, 0);
    if let Some(t) = &rs.tunnel {
        tunnel_forward_guards(&mut fwd, t);
    }
    if !lan.is_empty() {
        blocked_forward_guards(&mut fwd, lan);
    }
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
    chains.push(fwd);

    chains.push(zone_dispatch(rs, LAN_FORWARD, "from"));

    // A zone that may reach the internet may reach it through the tunnel too
    // (which of its traffic does is the tunnel mark's business, not the zone's).
    let mut exits: Vec<String> = wan.to_vec();
    if let Some(t) = &rs.tunnel {
        exits.push(t.interface.clone());
        chains.push(tunnel_mark_chain(rs, t));
    }
    for z in &rs.zones {
        chains.push(zone_forward_chain(z, &exits, lan));
    }

    // --- NAT: IPv4 leaves by the WAN under the router's address.
    let mut post = ChainSpec::base(INet, "postrouting", NfChainType::NAT, NfHook::Postrouting, 100);
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
        // Both families: the VPN routes only the address it gave us.
        post.rule(
            "tunnel-masquerade",
            vec![oifname_in(std::iter::once(&t.interface)), Statement::Masquerade(None)],
        );
    }
    chains.push(post);
    chains
}

/// The homeowner's blocked MACs (the input, forward and bridge rules share it).
fn blocked_macs() -> Expression<'static> {
    set_ref(&SetOwner::Blocked.set_name(SetKind::Mac))
}

/// Blocked devices, near the top of `forward`: nothing from them (by source MAC,
/// as zones are decided) and nothing to them (by address: the WAN's answers and
/// other zones' connections carry no MAC of theirs). Before `established`, so
/// the block ends flows already running; after the tunnel's leak guard, which
/// stays the first rule (both only drop, so their order changes no verdict, only
/// which counter counts). Still a blocked device keeps its zone's set entries:
/// unblocking is a delete from these sets and nothing else.
fn blocked_forward_guards(fwd: &mut ChainSpec, lan: &BTreeSet<String>) {
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

/// Name of a domain set's nft set, e.g. `dom_streaming_v4`.
pub fn domain_set_name(id: &DomainSetId, v6: bool) -> String {
    format!("dom_{id}_{}", if v6 { "v6" } else { "v4" })
}

/// The tunnel's rules at the top of `forward`, before the established fast path:
/// an established flow must not keep leaking after its route changed.
fn tunnel_forward_guards(fwd: &mut ChainSpec, t: &TunnelRules) {
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

fn mark_for_tunnel() -> Vec<Statement<'static>> {
    vec![
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
fn tunnel_mark_chain(rs: &DesiredRuleset, t: &TunnelRules) -> ChainSpec {
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

const ND_TYPES: [&str; 4] = [
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "nd-router-solicit",
    "nd-router-advert",
];
/// Between hosts: no router adverts (only the router advertises, from itself).
const BRIDGE_ND_TYPES: [&str; 3] = ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit"];
const ICMP_ERRORS_V6: [&str; 4] = [
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
];

fn icmpv6_types(types: &[&'static str]) -> Statement<'static> {
    is_in(payload("icmpv6", "type"), anon_set(types.iter().map(|t| s(*t))))
}

fn prefix(addr: &str, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(addr)),
        len,
    }))
}

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

fn num(n: u16) -> Expression<'static> {
    Expression::Number(u32::from(n))
}

fn zone_input_chain(z: &ZoneRules) -> ChainSpec {
    let mut c = ChainSpec::new(NfFamily::INet, zone_chain("in", &z.id));
    let udp: Vec<u16> = z
        .services
        .iter()
        .filter_map(|p| if let ServicePort::Udp(n) = p { Some(*n) } else { None })
        .collect();
    let tcp: Vec<u16> = z
        .services
        .iter()
        .filter_map(|p| if let ServicePort::Tcp(n) = p { Some(*n) } else { None })
        .collect();
    if !udp.is_empty() {
        c.rule(
            "services-udp",
            vec![
                is_in(payload("udp", "dport"), anon_set(udp.into_iter().map(num))),
                accept(),
            ],
        );
    }
    if !tcp.is_empty() {
        c.rule(
            "services-tcp",
            vec![
                is_in(payload("tcp", "dport"), anon_set(tcp.into_iter().map(num))),
                accept(),
            ],
        );
    }
    if z.ping_router {
        c.rule(
            "ping-v4",
            vec![eq(payload("icmp", "type"), s("echo-request")), accept()],
        );
        c.rule(
            "ping-v6",
            vec![eq(payload("icmpv6", "type"), s("echo-request")), accept()],
        );
    }
    c.rule("default-deny", vec![counter(), drop_()]);
    c
}

fn zone_forward_chain(z: &ZoneRules, wan: &[String], lan: &BTreeSet<String>) -> ChainSpec {
    let mut c = ChainSpec::new(NfFamily::INet, zone_chain("from", &z.id));
    // `oifname` too: an address that ended up in a zone's set but lives outside
    // the home must not become a way out to the internet. (No LAN interfaces:
    // no zone member to reach.)
    for t in z.targets().into_iter().filter(|_| !lan.is_empty()) {
        c.rule(
            format!("to-{t}-v4"),
            vec![
                oifname_in(lan),
                is_in(payload("ip", "daddr"), set_ref(&set_name(t, SetKind::V4))),
                accept(),
            ],
        );
        c.rule(
            format!("to-{t}-v6"),
            vec![
                oifname_in(lan),
                is_in(payload("ip6", "daddr"), set_ref(&set_name(t, SetKind::V6))),
                accept(),
            ],
        );
    }
    if z.internet {
        c.rule("to-internet", vec![oifname_in(wan), accept()]);
    }
    c.rule("default-deny", vec![counter(), drop_()]);
    c
}

fn bridge_chains(rs: &DesiredRuleset) -> Vec<ChainSpec> {
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

    for z in &rs.zones {
        let mut c = ChainSpec::new(Bridge, zone_chain("from", &z.id));
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
        for other in rs
            .zones
            .iter()
            .filter(|o| o.id != z.id && o.reach.contains(&z.id) && !targets.contains(&&o.id))
        {
            let to = is_in(payload("ether", "daddr"), set_ref(&set_name(&other.id, SetKind::Mac)));
            let bare_syn = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                payload("tcp", "flags"),
                Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![s("syn"), s("ack")]))),
            )));
            c.rule(
                format!("answer-{}-tcp", other.id),
                vec![to.clone(), op(bare_syn, Operator::NEQ, s("syn")), accept()],
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
        c.rule("default-deny", vec![counter(), drop_()]);
        chains.push(c);
    }
    chains
}

/// Which sets exist in which family: MAC sets in both tables (the bridge table
/// decides by MAC alone), address sets only in inet.
pub fn set_families(kind: SetKind) -> &'static [NfFamily] {
    match kind {
        SetKind::Mac => &[NfFamily::INet, NfFamily::Bridge],
        SetKind::V4 | SetKind::V6 => &[NfFamily::INet],
    }
}

/// The elements of one member set, as nft expressions.
pub fn elements(m: &Membership, owner: &SetOwner, kind: SetKind) -> Vec<Expression<'static>> {
    let macs = |set: &BTreeSet<crate::config::MacAddr>| set.iter().map(|x| s(x.to_string())).collect();
    let members = match owner {
        SetOwner::Zone(zone) => match m.zones.get(zone) {
            Some(z) => z,
            None => return Vec::new(),
        },
        SetOwner::Blocked => &m.blocked,
        SetOwner::TunnelDevices => {
            return if kind == SetKind::Mac {
                macs(&m.tunnel_devices)
            } else {
                Vec::new()
            }
        }
        // Held by the enforcer, not part of the membership.
        SetOwner::DomainSet(_) => return Vec::new(),
        SetOwner::TunnelExclude => {
            return if kind == SetKind::Mac {
                macs(&m.tunnel_exclude)
            } else {
                Vec::new()
            }
        }
    };
    match kind {
        SetKind::Mac => macs(&members.macs),
        SetKind::V4 => members.v4.iter().map(|x| s(x.to_string())).collect(),
        SetKind::V6 => members.v6.iter().map(|x| s(x.to_string())).collect(),
    }
}

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
    let mut objs: Vec<NfObject<'static>> = Vec::new();
    let add = |o| NfObject::CmdObject(NfCmd::Add(o));
    for fam in [NfFamily::INet, NfFamily::Bridge] {
        objs.push(add(NfListObject::Table(table(fam))));
        objs.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(table(fam)))));
        objs.push(add(NfListObject::Table(table(fam))));
    }
    for (owner, kind) in member_sets(rs) {
        for fam in owner.families(kind) {
            let elem = elements(m, &owner, kind);
            objs.push(add(NfListObject::Set(Box::new(Set {
                family: *fam,
                table: Cow::Borrowed(TABLE),
                name: Cow::Owned(owner.set_name(kind)),
                handle: None,
                set_type: SetTypeValue::Single(set_type(kind)),
                policy: None,
                flags: None::<HashSet<SetFlag>>,
                elem: (!elem.is_empty()).then(|| Cow::Owned(elem)),
                timeout: None,
                gc_interval: None,
                size: None,
                comment: None,
            }))));
        }
    }
    // Domain sets start empty on every full replace; the daemon adds back the
    // addresses it still holds right after, and expires them itself (no kernel
    // timeouts: `add` does not refresh an element's timeout on the kernels
    // OpenWrt ships, and the daemon must know what the set holds).
    for d in rs.tunnel.iter().flat_map(|t| t.domain_sets.iter()) {
        for v6 in [false, true] {
            objs.push(add(NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: Cow::Borrowed(TABLE),
                name: Cow::Owned(domain_set_name(d, v6)),
                handle: None,
                set_type: SetTypeValue::Single(set_type(if v6 { SetKind::V6 } else { SetKind::V4 })),
                policy: None,
                flags: None::<HashSet<SetFlag>>,
                elem: None,
                timeout: None,
                gc_interval: None,
                size: None,
                comment: None,
            }))));
        }
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
                elem: Cow::Owned(elems.texts().into_iter().map(s).collect()),
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
