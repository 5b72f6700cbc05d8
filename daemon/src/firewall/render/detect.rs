//! Sampling what the firewall refuses, for detection (`crate::detect`): a
//! `sample` rule just before a zone chain's `default-deny` (and before the
//! blocked devices' guards) copies the first bytes of a refused packet to
//! NFLOG, at most [`crate::policy::DetectSampling::per_second`] per sending
//! MAC (a meter) and [`GLOBAL_PER_SECOND`] per rule. The rule has no verdict:
//! the packet goes on to the drop that follows it.
//!
//! Cost: nothing on the fast path. Established flows and allowed connections
//! are accepted before these rules; only a packet already on its way to a drop
//! pays one meter lookup and, when sampled, one copy to userspace. A flood
//! from one device is sampled at its meter's rate, so it neither reaches
//! userspace in full nor crowds out other devices' samples (BENCHMARKS.md,
//! "Detection").
//!
//! The log prefix says where the refusal happened, `bh <where> <zone>`
//! (`where`: `in` the router's own ports, `fwd` routed, `br` within a segment
//! bridge, `blocked` a blocked device): fixed text from the policy's zone
//! names, never network data. [`parse_prefix`] reads it back.

use std::borrow::Cow;

use nftables::expr::{Expression, MetaKey};
use nftables::stmt::{Limit, Log, Meter, Statement};

use super::ChainSpec;
use crate::config::ZoneId;
use crate::firewall::expr::*;
use crate::policy::DetectSampling;

/// Packets per second one sampling rule passes to NFLOG, all senders
/// together (twice that in a burst): bounds the daemon's work in a storm from
/// many devices.
pub const GLOBAL_PER_SECOND: u32 = 200;

/// The prefix every sampling rule's log starts with.
pub const PREFIX_TAG: &str = "bh";

/// Where a refusal happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefusedAt {
    /// A connection to the router itself (a port its zone may not use).
    Router,
    /// A routed connection: to another segment or out of the WAN.
    Routed,
    /// Between two hosts on one segment bridge.
    Bridged,
    /// Anything from a device the homeowner blocked.
    Blocked,
}

impl RefusedAt {
    fn word(self) -> &'static str {
        match self {
            RefusedAt::Router => "in",
            RefusedAt::Routed => "fwd",
            RefusedAt::Bridged => "br",
            RefusedAt::Blocked => "blocked",
        }
    }
}

/// PURE: the sampling rule's `log prefix`, `bh <where> [<zone>]`.
pub fn log_prefix(at: RefusedAt, zone: Option<&ZoneId>) -> String {
    match zone {
        Some(z) => format!("{PREFIX_TAG} {} {z}", at.word()),
        None => format!("{PREFIX_TAG} {}", at.word()),
    }
}

/// PURE: a prefix read from NFLOG: where, and the sender's zone if named.
/// `None` for prefixes not ours.
pub fn parse_prefix(prefix: &str) -> Option<(RefusedAt, Option<ZoneId>)> {
    let mut words = prefix.split(' ');
    if words.next()? != PREFIX_TAG {
        return None;
    }
    let at = match words.next()? {
        "in" => RefusedAt::Router,
        "fwd" => RefusedAt::Routed,
        "br" => RefusedAt::Bridged,
        "blocked" => RefusedAt::Blocked,
        _ => return None,
    };
    let zone = match words.next() {
        Some(z) => Some(ZoneId::new(z).ok()?),
        None => None,
    };
    words.next().is_none().then_some((at, zone))
}

/// The statements that sample: per-sender meter, per-rule limit, log.
/// `meter` names the meter (one per rule: nft refuses two rules sharing one).
fn sample(sampling: &DetectSampling, meter: String, prefix: String) -> Vec<Statement<'static>> {
    vec![
        Statement::Meter(Meter {
            name: Cow::Owned(meter),
            key: payload("ether", "saddr"),
            stmt: Box::new(Statement::Limit(Limit {
                rate: sampling.per_second,
                rate_unit: None,
                per: Some(Cow::Borrowed("second")),
                burst: Some(sampling.per_second.saturating_mul(2)),
                burst_unit: None,
                inv: None,
            })),
        }),
        Statement::Limit(Limit {
            rate: GLOBAL_PER_SECOND,
            rate_unit: None,
            per: Some(Cow::Borrowed("second")),
            burst: Some(GLOBAL_PER_SECOND * 2),
            burst_unit: None,
            inv: None,
        }),
        Statement::Log(Some(Log {
            prefix: Some(Cow::Owned(prefix)),
            group: Some(u32::from(sampling.group)),
            snaplen: Some(u32::from(crate::firewall::nflog::COPY_BYTES)),
            queue_threshold: None,
            level: None,
            flags: None,
        })),
    ]
}

/// Only unicast: broadcast and multicast a zone may not use (SSDP to the
/// router, NetBIOS broadcasts) are chatter, not attempts.
fn unicast() -> Statement<'static> {
    eq(meta(MetaKey::Pkttype), s("unicast"))
}

/// A zone chain's `sample` rule (inet `in_<zone>`, `from_<zone>`), before its
/// `default-deny`. Only new connections get there: established flows were
/// accepted in the base chain.
pub(super) fn sample_zone_refusal(c: &mut ChainSpec, sampling: &DetectSampling, at: RefusedAt, zone: &ZoneId) {
    let mut stmts = vec![unicast()];
    stmts.extend(sample(
        sampling,
        format!("detect_{}", c.name),
        log_prefix(at, Some(zone)),
    ));
    c.rule("sample", stmts);
}

/// The bridge table's `sample` rule in `from_<zone>`. Without conntrack on the
/// bridge a refused UDP datagram may be an ANSWER to a device that may reach
/// this zone (see `bridge.rs`), which is no attempt; so only what opens
/// something is sampled: a bare TCP SYN and an ICMP/ICMPv6 echo request.
pub(super) fn sample_bridge_refusal(c: &mut ChainSpec, sampling: &DetectSampling, zone: &ZoneId) {
    let prefix = log_prefix(RefusedAt::Bridged, Some(zone));
    let bare_syn = Expression::BinaryOperation(Box::new(nftables::expr::BinaryOperation::AND(
        payload("tcp", "flags"),
        Expression::BinaryOperation(Box::new(nftables::expr::BinaryOperation::OR(vec![s("syn"), s("ack")]))),
    )));
    let mut syn = vec![eq(bare_syn, s("syn"))];
    syn.extend(sample(sampling, format!("detect_{}_syn", c.name), prefix.clone()));
    c.rule("sample-syn", syn);
    let mut ping = vec![eq(payload("icmp", "type"), s("echo-request"))];
    ping.extend(sample(sampling, format!("detect_{}_ping", c.name), prefix.clone()));
    c.rule("sample-ping", ping);
    let mut ping6 = vec![eq(payload("icmpv6", "type"), s("echo-request"))];
    ping6.extend(sample(sampling, format!("detect_{}_ping6", c.name), prefix));
    c.rule("sample-ping6", ping6);
}

/// The prefix of the sample before the guard against ARP that claims one of
/// the router's addresses (a device making itself the others' gateway).
/// Not a [`RefusedAt`]: it is no connection attempt, and detection raises a
/// spoofing alert for it directly.
pub const SPOOF_ARP_PREFIX: &str = "bh spoof arp";

/// The NFLOG prefix of IPv4 or IPv6 sent to the router from an address
/// another device holds (the sample carries the IP header: its source is
/// the address claimed).
pub const SPOOF_IP_PREFIX: &str = "bh spoof ip";

/// The NFLOG prefix of a neighbour advertisement claiming another device's
/// IPv6 address or one of the router's (the sample carries the IPv6 header
/// and the ICMPv6 body: its target is the address claimed).
pub const SPOOF_ND_PREFIX: &str = "bh spoof nd";

/// The NFLOG prefix of a frame whose source MAC is bound to another port
/// (its in-interface is the port it came from).
pub const SPOOF_PORT_PREFIX: &str = "bh spoof port";

/// A `sample-spoof-port` rule before the port-binding guard.
pub(super) fn sample_spoof_port(c: &mut ChainSpec, sampling: &DetectSampling, matches: Vec<Statement<'static>>) {
    sample_claim(c, sampling, "port", "", SPOOF_PORT_PREFIX, matches);
}

/// A `sample-spoof-nd<suffix>` rule in a chain that only claims reach (so it
/// matches everything), before its drop.
pub(super) fn sample_spoof_nd(c: &mut ChainSpec, sampling: &DetectSampling, suffix: &str) {
    sample_claim(c, sampling, "nd", suffix, SPOOF_ND_PREFIX, Vec::new());
}

/// A `sample-spoof` rule before a spoofing guard (`matches` select what the
/// guard drops).
pub(super) fn sample_spoof(c: &mut ChainSpec, sampling: &DetectSampling, matches: Vec<Statement<'static>>) {
    sample_spoof_named(c, sampling, "", matches);
}

/// [`sample_spoof`] for a second guard in the same chain: its own rule name
/// and meter (`suffix`; nft refuses two rules sharing one meter).
pub(super) fn sample_spoof_named(
    c: &mut ChainSpec,
    sampling: &DetectSampling,
    suffix: &str,
    matches: Vec<Statement<'static>>,
) {
    sample_claim(c, sampling, "arp", suffix, SPOOF_ARP_PREFIX, matches);
}

/// A `sample-spoof-ip` rule before the IPv4 source guard.
pub(super) fn sample_spoof_ip(c: &mut ChainSpec, sampling: &DetectSampling, matches: Vec<Statement<'static>>) {
    sample_spoof_ip_named(c, sampling, "", matches);
}

/// [`sample_spoof_ip`] with its own rule name and meter (`suffix`): `6` for
/// the IPv6 guard (the sample carries the IPv6 header).
pub(super) fn sample_spoof_ip_named(
    c: &mut ChainSpec,
    sampling: &DetectSampling,
    suffix: &str,
    matches: Vec<Statement<'static>>,
) {
    sample_claim(c, sampling, "ip", suffix, SPOOF_IP_PREFIX, matches);
}

/// `sample-spoof-<what><suffix>`: `matches`, then the per-sender meter and
/// the NFLOG sample with `prefix`.
fn sample_claim(
    c: &mut ChainSpec,
    sampling: &DetectSampling,
    what: &str,
    suffix: &str,
    prefix: &str,
    matches: Vec<Statement<'static>>,
) {
    let meter_suffix = if what == "arp" {
        suffix.to_string()
    } else {
        format!("_{what}{suffix}")
    };
    let mut stmts = matches;
    stmts.extend(sample(
        sampling,
        format!("detect_{}_spoof{}", c.name, meter_suffix).replace('-', "_"),
        prefix.to_string(),
    ));
    c.rule(format!("sample-spoof-{what}{suffix}"), stmts);
}

/// A `sample-blocked` rule before a chain's `blocked-from` guard: everything
/// a blocked device sends (DHCP broadcasts included: that is trying too).
pub(super) fn sample_blocked(c: &mut ChainSpec, sampling: &DetectSampling, match_blocked: Vec<Statement<'static>>) {
    let mut stmts = match_blocked;
    stmts.extend(sample(
        sampling,
        format!("detect_{}_blocked", c.name),
        log_prefix(RefusedAt::Blocked, None),
    ));
    c.rule("sample-blocked", stmts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip_and_foreign_ones_are_not_ours() {
        let iot = ZoneId::new("iot").expect("zone");
        for at in [RefusedAt::Router, RefusedAt::Routed, RefusedAt::Bridged] {
            assert_eq!(parse_prefix(&log_prefix(at, Some(&iot))), Some((at, Some(iot.clone()))));
        }
        assert_eq!(
            parse_prefix(&log_prefix(RefusedAt::Blocked, None)),
            Some((RefusedAt::Blocked, None))
        );
        for foreign in [
            "",
            "bh",
            "bh x iot",
            "fw4 in iot",
            "bh in iot extra",
            "bh in Bad-Zone!",
            SPOOF_ARP_PREFIX,
        ] {
            assert_eq!(parse_prefix(foreign), None, "{foreign:?}");
        }
    }
}
