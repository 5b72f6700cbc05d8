//! The LAN's zone chains in `table inet bulkhead`: the dispatch chains
//! (`lan-input`, `lan-forward`) that send a packet to its sender's zone, and
//! each zone's `in_<zone>` (router services) and `from_<zone>` (other zones,
//! the internet) chains. Every zone chain ends in an explicit `drop`, so a packet
//! that entered one never falls back to its base chain's accept policy.

use std::collections::BTreeSet;

use nftables::types::NfFamily;

use super::detect::{sample_zone_refusal, RefusedAt};
use super::sets::{pinhole_key, set_name, share_set_name};
use super::{num, ChainSpec};
use crate::config::ZoneId;
use crate::firewall::expr::*;
use crate::firewall::SetKind;
use crate::policy::{DesiredRuleset, DetectSampling, ServicePort, ZoneRules};

/// Dispatch chains. The hyphen keeps them apart from zone chains (`in_<zone>`,
/// `from_<zone>`): zone names cannot contain one, so a zone named `lan` is fine.
pub(super) const LAN_INPUT: &str = "lan-input";
pub(super) const LAN_FORWARD: &str = "lan-forward";

/// A LAN dispatch chain: the sender's MAC picks its zone's `<prefix>_<zone>`
/// chain; a MAC in no set goes to its segment's default zone, else the unknown
/// zone. Input and forward dispatch the same way, to different chains.
pub(super) fn zone_dispatch(rs: &DesiredRuleset, name: &str, prefix: &str) -> ChainSpec {
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

/// A zone's chain: `in_<zone>` (inet input), `from_<zone>` (inet forward, and
/// the bridge table's zone chains).
pub(super) fn zone_chain(prefix: &str, z: &ZoneId) -> String {
    format!("{prefix}_{z}")
}

/// A zone's `in_<zone>` chain: the router services its members may use.
pub(super) fn zone_input_chain(z: &ZoneRules, sampling: Option<&DetectSampling>) -> ChainSpec {
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
    if let Some(sampling) = sampling.filter(|_| z.detect) {
        sample_zone_refusal(&mut c, sampling, RefusedAt::Router, &z.id);
    }
    c.rule("default-deny", vec![counter(), drop_()]);
    c
}

/// A zone's `from_<zone>` chain in inet: the zones its members may reach, and
/// the internet (`wan`: the WAN and, with a tunnel, the tunnel's interface).
pub(super) fn zone_forward_chain(
    z: &ZoneRules,
    wan: &[String],
    lan: &BTreeSet<String>,
    shared_to: bool,
    sampling: Option<&DetectSampling>,
) -> ChainSpec {
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
    // Services shared to this zone: new connections to exactly the address,
    // protocol and port a shared device announced (the share proxy holds
    // them while the announcement lives). Answers come back as `established`.
    // Into the LAN only, like the zone targets above.
    if shared_to && !lan.is_empty() {
        for v6 in [false, true] {
            c.rule(
                format!("shared-{}", if v6 { "v6" } else { "v4" }),
                vec![
                    oifname_in(lan),
                    is_in(pinhole_key(v6, true), set_ref(&share_set_name(&z.id, v6))),
                    accept(),
                ],
            );
        }
    }
    if let Some(sampling) = sampling.filter(|_| z.detect) {
        sample_zone_refusal(&mut c, sampling, RefusedAt::Routed, &z.id);
    }
    c.rule("default-deny", vec![counter(), drop_()]);
    c
}
