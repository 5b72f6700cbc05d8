//! The DNS guards (`dns.bypass`): LAN devices use Bulkhead's resolver or none.
//!
//! - `dns-redirect` (nat prerouting, dstnat priority): IPv4 port 53 from a LAN
//!   segment to any address but the router's is redirected to the router, so
//!   a device with a hard-coded 8.8.8.8 gets Bulkhead's answers (policy,
//!   blocklists, domain sets) without knowing. Only IPv4: an IPv6 redirect
//!   would pick an address of the interface the resolver may not listen on,
//!   so IPv6 port 53 elsewhere is refused instead (below).
//! - in `forward`, before the zones decide: port 53 to another server (IPv6
//!   always, IPv4 in refuse mode), DNS over TLS and QUIC (853) and HTTPS to
//!   known DoH servers are rejected, so the device fails over to the router
//!   at once instead of timing out.
//! - every guard puts the sender's MAC in the dynamic set `dns_bypass` (for an
//!   hour): the daemon reads it and tells the homeowner once per device,
//!   whatever the number of packets.

use nftables::expr::Expression;
use nftables::stmt::{SetOp, Statement, NAT};
use nftables::types::{NfChainType, NfFamily, NfHook};

use super::{num, prefix, ChainSpec};
use crate::firewall::expr::*;
use crate::policy::{DesiredRuleset, DnsGuard};

/// Priority of `dns-redirect`: NF_IP_PRI_NAT_DST (dstnat), where fw4 and
/// everyone else redirects.
const DSTNAT: i32 = -100;

/// `tcp` or `udp`.
fn tcp_or_udp() -> Statement<'static> {
    is_in(
        Expression::Named(nftables::expr::NamedExpression::Meta(nftables::expr::Meta {
            key: nftables::expr::MetaKey::L4proto,
        })),
        anon_set([s("tcp"), s("udp")]),
    )
}

fn reject() -> Statement<'static> {
    Statement::Reject(None)
}

/// The dynamic set of MACs that tried to go around the resolver.
pub const BYPASS_SET: &str = "dns_bypass";
/// How long a MAC stays in [`BYPASS_SET`] after its last try, in seconds.
pub const BYPASS_MEMORY_SECS: u32 = 3600;

/// `update @dns_bypass { ether saddr }`: the sender is remembered.
fn remember_sender() -> Statement<'static> {
    Statement::Set(nftables::stmt::Set {
        op: SetOp::Update,
        elem: payload("ether", "saddr"),
        set: std::borrow::Cow::Owned(format!("@{BYPASS_SET}")),
    })
}

/// The redirect chain, when IPv4 DNS is redirected.
pub(super) fn dns_redirect_chain(rs: &DesiredRuleset, g: &DnsGuard) -> Option<ChainSpec> {
    if !g.redirect_v4 || rs.lan_interfaces.is_empty() || g.router_v4.is_empty() {
        return None;
    }
    let mut c = ChainSpec::base(
        NfFamily::INet,
        "dns-redirect",
        NfChainType::NAT,
        NfHook::Prerouting,
        DSTNAT,
    );
    guard(
        &mut c,
        "dns-to-router",
        vec![
            iifname_in(&rs.lan_interfaces),
            eq(meta(nftables::expr::MetaKey::Nfproto), s("ipv4")),
            op(
                payload("ip", "daddr"),
                nftables::stmt::Operator::NEQ,
                anon_set(g.router_v4.iter().map(|a| s(a.to_string()))),
            ),
            tcp_or_udp(),
            eq(payload("th", "dport"), num(53)),
        ],
        Statement::Redirect(Some(NAT {
            addr: None,
            family: None,
            port: Some(num(53)),
            flags: None,
        })),
    );
    Some(c)
}

/// The forward guards; the caller puts them after `invalid` and before the
/// zones' dispatch (every LAN device, whatever its zone).
pub(super) fn dns_forward_guards(fwd: &mut ChainSpec, rs: &DesiredRuleset, g: &DnsGuard) {
    let lan = &rs.lan_interfaces;
    if lan.is_empty() {
        return;
    }
    let mut plain = vec![iifname_in(lan)];
    if g.redirect_v4 {
        // IPv4 was redirected before routing; what reaches forward is IPv6.
        plain.push(eq(meta(nftables::expr::MetaKey::Nfproto), s("ipv6")));
    }
    plain.extend([tcp_or_udp(), eq(payload("th", "dport"), num(53))]);
    guard(fwd, "dns-elsewhere", plain, reject());
    guard(
        fwd,
        "dns-over-tls",
        vec![iifname_in(lan), tcp_or_udp(), eq(payload("th", "dport"), num(853))],
        reject(),
    );
    let nets = |items: Vec<(String, u32)>| anon_set(items.iter().map(|(a, l)| prefix(a, *l)));
    for (name, field, list) in [
        (
            "doh-v4",
            "ip",
            g.doh_v4
                .iter()
                .map(|n| (n.addr().to_string(), u32::from(n.prefix_len())))
                .collect::<Vec<_>>(),
        ),
        (
            "doh-v6",
            "ip6",
            g.doh_v6
                .iter()
                .map(|n| (n.addr().to_string(), u32::from(n.prefix_len())))
                .collect(),
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        guard(
            fwd,
            name,
            vec![
                iifname_in(lan),
                is_in(payload(field, "daddr"), nets(list)),
                eq(payload("th", "dport"), num(443)),
            ],
            reject(),
        );
    }
}

/// One guard as two rules with the same match: `NAME-seen` puts the sender
/// in `dns_bypass`, `NAME` counts and acts. Apart, because a full dynamic set
/// ends the rule that updates it (the kernel's NFT_BREAK): in one rule,
/// 1,024 forged MACs would switch every guard off for an hour.
fn guard(chain: &mut ChainSpec, name: &str, matches: Vec<Statement<'static>>, verdict: Statement<'static>) {
    let mut seen = matches.clone();
    seen.push(remember_sender());
    chain.rule(format!("{name}-seen"), seen);
    let mut act = matches;
    act.extend([counter(), verdict]);
    chain.rule(name, act);
}
