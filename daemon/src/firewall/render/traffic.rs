//! Counting what each device sends and receives, per packet, in the forward
//! hook (see `crate::traffic`, which reads the counters).
//!
//! The zone rules decide on a flow's first packet and `established` accepts
//! the rest, so their set lookups cannot count a flow's bytes. These three
//! rules sit in front of `established`, match nothing and decide nothing:
//! each updates one dynamic set (an nftables meter) keyed by who and which
//! way, whose element carries a counter:
//!
//! - `traffic_out`: `ether saddr . oifname` for what enters from a LAN
//!   interface (the sending device's MAC, and where it goes: the WAN, the
//!   tunnel, another segment);
//! - `traffic_in_v4` / `traffic_in_v6`: `ip daddr . iifname` for what leaves
//!   into a LAN interface (the receiving address — the MAC is not known yet
//!   in the forward hook — and where it came from).
//!
//! An element idle for [`IDLE_SECS`] expires (IPv6 privacy addresses come
//! and go); a full set stops adding keys, it never drops a packet. A full
//! replace re-creates the table and so restarts the counts: the reader takes
//! a count that went down as a fresh one.

use std::borrow::Cow;
use std::collections::BTreeSet;

use nftables::expr::{Elem, Expression, MetaKey, NamedExpression};
use nftables::stmt::{Counter, Meter, Statement};

use super::ChainSpec;
use crate::firewall::expr::{iifname_in, meta, oifname_in, payload};

/// The meter of what devices send.
pub const OUT: &str = "traffic_out";
/// The meter of what IPv4 addresses on the LAN receive.
pub const IN_V4: &str = "traffic_in_v4";
/// The meter of what IPv6 addresses on the LAN receive.
pub const IN_V6: &str = "traffic_in_v6";
/// An element not updated for this long leaves its meter.
pub const IDLE_SECS: u32 = 3600;

/// The counting rules, for the forward chain in front of `established`.
pub(super) fn counting_rules(fwd: &mut ChainSpec, lan: &BTreeSet<String>) {
    fwd.rule(
        "count-from-devices",
        vec![
            iifname_in(lan),
            counted(OUT, payload("ether", "saddr"), meta(MetaKey::Oifname)),
        ],
    );
    fwd.rule(
        "count-to-devices-v4",
        vec![
            oifname_in(lan),
            counted(IN_V4, payload("ip", "daddr"), meta(MetaKey::Iifname)),
        ],
    );
    fwd.rule(
        "count-to-devices-v6",
        vec![
            oifname_in(lan),
            counted(IN_V6, payload("ip6", "daddr"), meta(MetaKey::Iifname)),
        ],
    );
}

/// `meter NAME { WHO . WHERE timeout 1h counter }`.
fn counted(name: &'static str, who: Expression<'static>, interface: Expression<'static>) -> Statement<'static> {
    Statement::Meter(Meter {
        name: Cow::Borrowed(name),
        key: Expression::Named(NamedExpression::Elem(Elem {
            val: Box::new(Expression::Named(NamedExpression::Concat(vec![who, interface]))),
            timeout: Some(IDLE_SECS),
            expires: None,
            comment: None,
            counter: None,
        })),
        stmt: Box::new(Statement::Counter(Counter::Anonymous(None))),
    })
}
