//! The tunnel's routing: Bulkhead's own table, the fwmark rules that send
//! selected traffic to it, the default route through the tunnel and the
//! blackhole under it (the kill switch).
//!
//! ```text
//! TunnelRouting ─> plan() (pure) ─> DesiredRouting ─┐
//!                                                   ├─> diff() (pure) ─> [RoutingChange] ─> apply()
//!                              observe() ─> ObservedRouting ─┘
//! ```
//!
//! While a tunnel is configured the kernel holds, for IPv4 and IPv6 alike:
//!
//! * `fwmark MARK_TUNNEL/MARK_TUNNEL lookup ROUTE_TABLE priority RULE_PRIORITY`
//!   — both families always, so that IPv6 traffic of a selected device cannot
//!   leave through the main table when the tunnel has no IPv6 address;
//! * `blackhole default metric BLACKHOLE_METRIC` in [`ROUTE_TABLE`], always;
//! * `default dev <tun>` in [`ROUTE_TABLE`] while the TUN device exists and the
//!   tunnel has an address of that family.
//!
//! When the TUN device vanishes (the daemon died) the kernel drops its routes
//! by itself and the blackhole is left: selected traffic goes nowhere rather
//! than out through the WAN.
//!
//! # What Bulkhead may change
//!
//! Bulkhead owns [`ROUTE_TABLE`] outright: every route in it that the plan does
//! not want is deleted. Of the rules it owns only those with priority
//! [`RULE_PRIORITY`], fwmark and mask [`MARK_TUNNEL`] and table [`ROUTE_TABLE`];
//! no other rule and no other table is ever touched.
//!
//! # Order
//!
//! An empty table makes a rule fall through to the next one (the main table),
//! which would leak selected traffic. So [`diff`] orders changes as: rules
//! removed, blackholes added, stale routes removed, tunnel routes added, rules
//! added. A fresh setup has the blackhole before the rule exists; a removal
//! takes the rule away before the table empties; a changed TUN ifindex is
//! covered by the blackhole while its route is swapped.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use crate::kernel_ids::{BLACKHOLE_METRIC, MARK_TUNNEL, ROUTE_TABLE, RULE_PRIORITY};

/// Metric of the IPv4 default route through the tunnel.
pub const TUNNEL_METRIC_V4: u32 = 0;

/// Metric of the IPv6 default route through the tunnel. IPv6 has no metric 0:
/// the kernel turns a requested 0 into 1024 (`IP6_RT_PRIO_USER`), so asking
/// for 0 would never match what it reports back.
pub const TUNNEL_METRIC_V6: u32 = 1024;

// From asm-generic/errno-base.h, which every Linux architecture shares.
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EEXIST: i32 = 17;

/// Linux's `IFNAMSIZ` is 16 bytes including the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// What the tunnel's routing depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelRouting {
    /// The TUN device's ifindex while it exists, `None` before it is created
    /// (or after it is gone): then only the blackhole is there.
    pub tunnel_ifindex: Option<u32>,
    /// The tunnel has an IPv4 address: route IPv4 through it.
    pub ipv4: bool,
    /// The tunnel has an IPv6 address: route IPv6 through it.
    pub ipv6: bool,
}

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    fn address_family(self) -> AddressFamily {
        match self {
            Self::V4 => AddressFamily::Inet,
            Self::V6 => AddressFamily::Inet6,
        }
    }

    fn ip_version(self) -> IpVersion {
        match self {
            Self::V4 => IpVersion::V4,
            Self::V6 => IpVersion::V6,
        }
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn default_net(self) -> IpNet {
        match self {
            Self::V4 => IpNet::V4(Ipv4Net::default()),
            Self::V6 => IpNet::V6(Ipv6Net::default()),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// What a route in [`ROUTE_TABLE`] does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// `blackhole`: drop.
    Blackhole,
    /// Unicast straight out of a device, no gateway (`dev <ifindex>`).
    Device(u32),
    /// Anything else found in the table (someone else's, or an older
    /// Bulkhead's); only ever deleted, so it keeps what deletion needs.
    Other {
        /// The raw route type (`RTN_*`).
        kind: u8,
        /// Output interface, if any.
        oif: Option<u32>,
        /// Gateway, if any.
        gateway: Option<IpAddr>,
    },
}

/// One route in [`ROUTE_TABLE`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRoute {
    /// Destination prefix (its family is the route's).
    pub destination: IpNet,
    /// What it does.
    pub kind: RouteKind,
    /// Its metric (`RTA_PRIORITY`; IPv4 reports none for 0).
    pub metric: u32,
}

impl TableRoute {
    /// The route's family.
    pub fn family(&self) -> Family {
        match self.destination {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// `blackhole default metric BLACKHOLE_METRIC`.
    pub fn blackhole(family: Family) -> Self {
        Self {
            destination: family.default_net(),
            kind: RouteKind::Blackhole,
            metric: BLACKHOLE_METRIC,
        }
    }

    /// `default dev <ifindex>` with the family's tunnel metric.
    pub fn via_tunnel(family: Family, ifindex: u32) -> Self {
        Self {
            destination: family.default_net(),
            kind: RouteKind::Device(ifindex),
            metric: match family {
                Family::V4 => TUNNEL_METRIC_V4,
                Family::V6 => TUNNEL_METRIC_V6,
            },
        }
    }
}

impl fmt::Display for TableRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dst = if self.destination.prefix_len() == 0 {
            "default".to_owned()
        } else {
            self.destination.to_string()
        };
        match &self.kind {
            RouteKind::Blackhole => write!(f, "blackhole {dst}")?,
            RouteKind::Device(index) => write!(f, "{dst} dev #{index}")?,
            RouteKind::Other { kind, oif, gateway } => {
                write!(f, "{dst} type {kind}")?;
                if let Some(gw) = gateway {
                    write!(f, " via {gw}")?;
                }
                if let Some(oif) = oif {
                    write!(f, " dev #{oif}")?;
                }
            }
        }
        write!(f, " metric {} table {ROUTE_TABLE}", self.metric)
    }
}

/// What the kernel should hold; made by [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredRouting {
    /// Families that get the fwmark rule.
    pub rules: BTreeSet<Family>,
    /// The whole content of [`ROUTE_TABLE`].
    pub routes: BTreeSet<TableRoute>,
}

/// Our part of the kernel's routing, as read by [`observe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedRouting {
    /// The family of each of our rules found (a family twice if the kernel
    /// holds two rules that both count as ours).
    pub rules: Vec<Family>,
    /// Every route in [`ROUTE_TABLE`].
    pub routes: Vec<TableRoute>,
}

impl From<&DesiredRouting> for ObservedRouting {
    /// What [`observe`] returns once `desired` is in place.
    fn from(desired: &DesiredRouting) -> Self {
        Self {
            rules: desired.rules.iter().copied().collect(),
            routes: desired.routes.iter().cloned().collect(),
        }
    }
}

/// One change to the kernel's routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingChange {
    /// Add the fwmark rule for a family.
    AddRule(Family),
    /// Delete one fwmark rule of a family.
    DeleteRule(Family),
    /// Add a route to [`ROUTE_TABLE`].
    AddRoute(TableRoute),
    /// Delete a route from [`ROUTE_TABLE`].
    DeleteRoute(TableRoute),
}

impl RoutingChange {
    /// Position in the order changes must run in; see the module docs.
    pub fn phase(&self) -> u8 {
        match self {
            Self::DeleteRule(_) => 0,
            Self::AddRoute(TableRoute {
                kind: RouteKind::Blackhole,
                ..
            }) => 1,
            Self::DeleteRoute(_) => 2,
            Self::AddRoute(_) => 3,
            Self::AddRule(_) => 4,
        }
    }
}

impl fmt::Display for RoutingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = RuleDisplay;
        match self {
            Self::AddRule(family) => write!(f, "add {family} rule {rule}"),
            Self::DeleteRule(family) => write!(f, "delete {family} rule {rule}"),
            Self::AddRoute(route) => write!(f, "add route {route}"),
            Self::DeleteRoute(route) => write!(f, "delete route {route}"),
        }
    }
}

/// Our rule, as `ip rule` would print its selector and action.
struct RuleDisplay;

impl fmt::Display for RuleDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fwmark {MARK_TUNNEL:#x}/{MARK_TUNNEL:#x} lookup {ROUTE_TABLE} priority {RULE_PRIORITY}"
        )
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingReport {
    /// Changes the kernel made.
    pub applied: Vec<RoutingChange>,
    /// Changes the kernel found already made: "exists" on an add, "no such"
    /// on a delete (someone got there first; counted as success).
    pub already: Vec<RoutingChange>,
}

impl RoutingReport {
    /// True when the kernel was changed.
    pub fn changed(&self) -> bool {
        !self.applied.is_empty()
    }
}

/// Errors from reading or changing the tunnel's routing.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// Dumping rules or routes failed.
    #[error("cannot read {what} from the kernel")]
    Observe {
        /// `"IPv4 rules"`, `"IPv6 routes"`, ….
        what: &'static str,
        /// The netlink error.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// One change failed; the ones before it stay (netlink has no
    /// transactions). Reconciling again resumes from there.
    #[error("cannot {change} (after {n} change(s) made)", n = .done.applied.len())]
    Apply {
        /// The change that failed.
        change: Box<RoutingChange>,
        /// What had been done before it.
        done: Box<RoutingReport>,
        /// The kernel's answer.
        #[source]
        source: Box<rtnetlink::Error>,
    },
}

/// The kernel state for a configured tunnel (`Some`) or for none (`None`:
/// nothing of ours at all). Pure.
pub fn plan(tunnel: Option<&TunnelRouting>) -> DesiredRouting {
    let Some(tunnel) = tunnel else {
        return DesiredRouting::default();
    };
    let mut desired = DesiredRouting::default();
    for family in Family::BOTH {
        desired.rules.insert(family);
        desired.routes.insert(TableRoute::blackhole(family));
    }
    if let Some(index) = tunnel.tunnel_ifindex {
        if tunnel.ipv4 {
            desired.routes.insert(TableRoute::via_tunnel(Family::V4, index));
        }
        if tunnel.ipv6 {
            desired.routes.insert(TableRoute::via_tunnel(Family::V6, index));
        }
    }
    desired
}

/// The changes that make `observed` into `desired`, in [`RoutingChange::phase`]
/// order. Pure; empty when they already match.
pub fn diff(observed: &ObservedRouting, desired: &DesiredRouting) -> Vec<RoutingChange> {
    let mut changes = Vec::new();
    for family in Family::BOTH {
        let have = observed.rules.iter().filter(|&&f| f == family).count();
        if desired.rules.contains(&family) {
            if have == 0 {
                changes.push(RoutingChange::AddRule(family));
            }
        } else {
            changes.extend(std::iter::repeat_n(RoutingChange::DeleteRule(family), have));
        }
    }
    let mut seen = BTreeSet::new();
    for route in &observed.routes {
        if !desired.routes.contains(route) && seen.insert(route) {
            changes.push(RoutingChange::DeleteRoute(route.clone()));
        }
    }
    for route in &desired.routes {
        if !observed.routes.contains(route) {
            changes.push(RoutingChange::AddRoute(route.clone()));
        }
    }
    // Stable: within a phase, IPv4 before IPv6 and observed order.
    changes.sort_by_key(RoutingChange::phase);
    changes
}

/// Reads our rules (both families) and every route in [`ROUTE_TABLE`].
pub async fn observe(handle: &Handle) -> Result<ObservedRouting, RoutingError> {
    let mut observed = ObservedRouting::default();
    for family in Family::BOTH {
        let rules: Vec<RuleMessage> = handle
            .rule()
            .get(family.ip_version())
            .execute()
            .try_collect()
            .await
            .map_err(|e| RoutingError::Observe {
                what: match family {
                    Family::V4 => "IPv4 rules",
                    Family::V6 => "IPv6 rules",
                },
                source: Box::new(e),
            })?;
        observed
            .rules
            .extend(rules.iter().filter(|r| is_our_rule(r)).map(|_| family));

        let query = match family {
            Family::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            Family::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let routes: Vec<RouteMessage> =
            handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(|e| RoutingError::Observe {
                    what: match family {
                        Family::V4 => "IPv4 routes",
                        Family::V6 => "IPv6 routes",
                    },
                    source: Box::new(e),
                })?;
        observed.routes.extend(
            routes
                .iter()
                .filter(|r| route_table(r) == ROUTE_TABLE)
                .filter_map(parse_route),
        );
    }
    Ok(observed)
}

/// Runs the changes in the order given ([`diff`] sorts them). "Exists" on an
/// add and "no such" on a delete count as success. Stops at the first failure.
pub async fn apply(handle: &Handle, changes: &[RoutingChange]) -> Result<RoutingReport, RoutingError> {
    let mut report = RoutingReport::default();
    for change in changes {
        match apply_one(handle, change).await {
            Ok(true) => {
                tracing::info!(%change, "tunnel routing: applied");
                report.applied.push(change.clone());
            }
            Ok(false) => {
                tracing::debug!(%change, "tunnel routing: already so");
                report.already.push(change.clone());
            }
            Err(source) => {
                tracing::warn!(%change, error = %source, "tunnel routing: change failed");
                return Err(RoutingError::Apply {
                    change: Box::new(change.clone()),
                    done: Box::new(report),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(report)
}

/// Observes, diffs and applies.
pub async fn reconcile(handle: &Handle, desired: &DesiredRouting) -> Result<RoutingReport, RoutingError> {
    let observed = observe(handle).await?;
    apply(handle, &diff(&observed, desired)).await
}

/// Removes our rules and everything in [`ROUTE_TABLE`] (tunnel removed from
/// the config).
pub async fn remove_all(handle: &Handle) -> Result<RoutingReport, RoutingError> {
    reconcile(handle, &DesiredRouting::default()).await
}

/// Sets `net.ipv4.conf.<ifname>.rp_filter` to 2 (loose) for the calling
/// thread's network namespace. Loose is needed on the tunnel: replies come
/// in on it for sources the main table routes elsewhere.
/// `net.ipv4.conf.all.rp_filter` is left alone (the kernel uses the maximum
/// of `all` and the interface's value, so a strict `all` still wins; that is
/// the system's choice to make).
pub fn set_loose_rp_filter(ifname: &str) -> io::Result<()> {
    validate_ifname(ifname)?;
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{ifname}/rp_filter"), "2\n")
}

/// Refuses names that are not interface names, so that the path built from
/// one stays inside `/proc/sys/net/ipv4/conf/`.
fn validate_ifname(name: &str) -> io::Result<()> {
    let invalid = |reason: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?}: {reason}"));
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        return Err(invalid("interface names are 1 to 15 bytes"));
    }
    if name == "." || name == ".." || name == "all" || name == "default" {
        return Err(invalid("not an interface name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err(invalid("only letters, digits and - _ . @ are accepted"));
    }
    Ok(())
}

async fn apply_one(handle: &Handle, change: &RoutingChange) -> Result<bool, rtnetlink::Error> {
    let (result, benign) = match change {
        RoutingChange::AddRule(family) => {
            let mut request = handle.rule().add();
            *request.message_mut() = rule_message(*family);
            (request.execute().await, [EEXIST, EEXIST])
        }
        RoutingChange::DeleteRule(family) => (
            handle.rule().del(rule_message(*family)).execute().await,
            [ENOENT, ESRCH],
        ),
        RoutingChange::AddRoute(route) => (
            handle.route().add(route_message(route, false)).execute().await,
            [EEXIST, EEXIST],
        ),
        RoutingChange::DeleteRoute(route) => (
            handle.route().del(route_message(route, true)).execute().await,
            [ENOENT, ESRCH],
        ),
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if errno(&e).is_some_and(|n| benign.contains(&n)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `fwmark MARK_TUNNEL/MARK_TUNNEL lookup ROUTE_TABLE priority RULE_PRIORITY`.
/// The same message adds and deletes: the kernel deletes the first rule that
/// matches every field given.
fn rule_message(family: Family) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family.address_family();
    // rtnetlink's RuleAddRequest leaves the action Unspec, which the kernel
    // accepts but then fails every lookup through the rule with EINVAL.
    msg.header.action = RuleAction::ToTable;
    // Tables above 255 only fit the attribute; the header says "unspec".
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.attributes = vec![
        RuleAttribute::Table(ROUTE_TABLE),
        RuleAttribute::Priority(RULE_PRIORITY),
        RuleAttribute::FwMark(MARK_TUNNEL),
        RuleAttribute::FwMask(MARK_TUNNEL),
    ];
    msg
}

/// True for a rule that is ours by priority, fwmark, mask and table.
fn is_our_rule(msg: &RuleMessage) -> bool {
    let mut priority = 0;
    let mut mark = 0;
    let mut mask = None;
    let mut table = u32::from(msg.header.table);
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::FwMark(m) => mark = *m,
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    // The kernel omits FRA_FWMASK when it is all ones.
    let mask = mask.unwrap_or(u32::MAX);
    priority == RULE_PRIORITY && mark == MARK_TUNNEL && mask == MARK_TUNNEL && table == ROUTE_TABLE
}

/// The route's table: `RTA_TABLE` if present (always, in dumps), else the
/// header's byte.
fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

/// A dumped route of [`ROUTE_TABLE`] as a [`TableRoute`]; `None` for families
/// other than IPv4/IPv6 or a malformed prefix.
fn parse_route(msg: &RouteMessage) -> Option<TableRoute> {
    let family = match msg.header.address_family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let mut destination = None;
    let mut oif = None;
    let mut gateway = None;
    let mut metric = 0;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => destination = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    let destination = match destination {
        Some(ip) => IpNet::new(ip, msg.header.destination_prefix_length).ok()?,
        None if msg.header.destination_prefix_length == 0 => family.default_net(),
        None => return None,
    };
    let kind = match (msg.header.kind, oif, gateway) {
        (RouteType::BlackHole, _, None) => RouteKind::Blackhole,
        (RouteType::Unicast, Some(index), None) => RouteKind::Device(index),
        (kind, oif, gateway) => RouteKind::Other {
            kind: kind.into(),
            oif,
            gateway,
        },
    };
    Some(TableRoute {
        destination,
        kind,
        metric,
    })
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The netlink message that adds (or, with `delete`, deletes) `route`.
fn route_message(route: &TableRoute, delete: bool) -> RouteMessage {
    let family = route.family();
    let mut msg = match family {
        Family::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        Family::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
    };
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.destination_prefix_length = route.destination.prefix_len();
    msg.attributes.push(RouteAttribute::Table(ROUTE_TABLE));
    if route.destination.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route.destination.network().into()));
    }
    msg.attributes.push(RouteAttribute::Priority(route.metric));
    match &route.kind {
        RouteKind::Blackhole => msg.header.kind = RouteType::BlackHole,
        RouteKind::Device(index) => {
            msg.header.kind = RouteType::Unicast;
            // What `ip route add default dev X` asks for: no gateway, so
            // the destination is on the link.
            if family == Family::V4 {
                msg.header.scope = RouteScope::Link;
            }
            msg.attributes.push(RouteAttribute::Oif(*index));
        }
        RouteKind::Other { kind, oif, gateway } => {
            msg.header.kind = RouteType::from(*kind);
            if let Some(oif) = oif {
                msg.attributes.push(RouteAttribute::Oif(*oif));
            }
            if let Some(gw) = gateway {
                msg.attributes.push(RouteAttribute::Gateway((*gw).into()));
            }
        }
    }
    if delete {
        // Match whatever protocol and scope the route was added with.
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
    }
    msg
}

/// The positive errno of a kernel refusal, if it was one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(-msg.raw_code()),
        _ => None,
    }
}

#[cfg(test)]
mod netns_test;

#[cfg(test)]
mod tests {
    use super::*;

    fn up(index: u32) -> TunnelRouting {
        TunnelRouting {
            tunnel_ifindex: Some(index),
            ipv4: true,
            ipv6: true,
        }
    }

    #[test]
    fn plan_for_a_running_tunnel() {
        let desired = plan(Some(&up(7)));
        assert_eq!(desired.rules, BTreeSet::from([Family::V4, Family::V6]));
        assert_eq!(
            desired.routes,
            BTreeSet::from([
                TableRoute::blackhole(Family::V4),
                TableRoute::blackhole(Family::V6),
                TableRoute::via_tunnel(Family::V4, 7),
                TableRoute::via_tunnel(Family::V6, 7),
            ])
        );
    }

    #[test]
    fn rules_and_blackholes_for_both_families_whatever_the_tunnel_has() {
        let v4_only = plan(Some(&TunnelRouting { ipv6: false, ..up(7) }));
        assert_eq!(v4_only.rules, BTreeSet::from([Family::V4, Family::V6]));
        assert!(v4_only.routes.contains(&TableRoute::blackhole(Family::V6)));
        assert!(!v4_only.routes.contains(&TableRoute::via_tunnel(Family::V6, 7)));
        assert!(v4_only.routes.contains(&TableRoute::via_tunnel(Family::V4, 7)));

        let no_device = plan(Some(&TunnelRouting {
            tunnel_ifindex: None,
            ..up(7)
        }));
        assert_eq!(no_device.rules.len(), 2);
        assert_eq!(
            no_device.routes,
            BTreeSet::from([TableRoute::blackhole(Family::V4), TableRoute::blackhole(Family::V6)])
        );
        assert_eq!(plan(None), DesiredRouting::default());
    }

    #[test]
    fn fresh_setup_puts_blackholes_first_and_rules_last() {
        let changes = diff(&ObservedRouting::default(), &plan(Some(&up(7))));
        assert_eq!(
            changes,
            vec![
                RoutingChange::AddRoute(TableRoute::blackhole(Family::V4)),
                RoutingChange::AddRoute(TableRoute::blackhole(Family::V6)),
                RoutingChange::AddRoute(TableRoute::via_tunnel(Family::V4, 7)),
                RoutingChange::AddRoute(TableRoute::via_tunnel(Family::V6, 7)),
                RoutingChange::AddRule(Family::V4),
                RoutingChange::AddRule(Family::V6),
            ]
        );
    }

    #[test]
    fn diff_of_desired_against_itself_is_empty() {
        for tunnel in [
            None,
            Some(up(7)),
            Some(TunnelRouting {
                tunnel_ifindex: None,
                ..up(7)
            }),
            Some(TunnelRouting { ipv4: false, ..up(3) }),
        ] {
            let desired = plan(tunnel.as_ref());
            assert_eq!(diff(&ObservedRouting::from(&desired), &desired), vec![], "{tunnel:?}");
        }
    }

    #[test]
    fn removal_takes_rules_first_then_every_route_of_the_table() {
        let mut observed = ObservedRouting::from(&plan(Some(&up(7))));
        let stray = TableRoute {
            destination: "10.9.0.0/16".parse().expect("literal"),
            kind: RouteKind::Other {
                kind: 1,
                oif: Some(2),
                gateway: Some("10.0.0.1".parse().expect("literal")),
            },
            metric: 5,
        };
        observed.routes.push(stray.clone());
        let changes = diff(&observed, &plan(None));
        assert_eq!(
            &changes[..2],
            &[
                RoutingChange::DeleteRule(Family::V4),
                RoutingChange::DeleteRule(Family::V6)
            ]
        );
        let deleted: BTreeSet<_> = changes[2..]
            .iter()
            .map(|c| match c {
                RoutingChange::DeleteRoute(r) => r.clone(),
                other => panic!("unexpected {other}"),
            })
            .collect();
        let mut all: BTreeSet<_> = plan(Some(&up(7))).routes;
        all.insert(stray);
        assert_eq!(deleted, all);
    }

    #[test]
    fn duplicate_rules_are_all_deleted() {
        let observed = ObservedRouting {
            rules: vec![Family::V6, Family::V6],
            routes: vec![],
        };
        assert_eq!(
            diff(&observed, &plan(None)),
            vec![
                RoutingChange::DeleteRule(Family::V6),
                RoutingChange::DeleteRule(Family::V6)
            ]
        );
        // Wanted: one is enough, none is added.
        let wanted = diff(&observed, &plan(Some(&up(1))));
        assert!(!wanted.contains(&RoutingChange::AddRule(Family::V6)));
        assert!(wanted.contains(&RoutingChange::AddRule(Family::V4)));
    }

    #[test]
    fn ifindex_change_swaps_the_tunnel_routes_under_the_blackhole() {
        let observed = ObservedRouting::from(&plan(Some(&up(7))));
        let changes = diff(&observed, &plan(Some(&up(9))));
        assert_eq!(
            changes,
            vec![
                RoutingChange::DeleteRoute(TableRoute::via_tunnel(Family::V4, 7)),
                RoutingChange::DeleteRoute(TableRoute::via_tunnel(Family::V6, 7)),
                RoutingChange::AddRoute(TableRoute::via_tunnel(Family::V4, 9)),
                RoutingChange::AddRoute(TableRoute::via_tunnel(Family::V6, 9)),
            ]
        );
    }

    #[test]
    fn device_gone_leaves_only_blackholes() {
        // The kernel already dropped the routes of the vanished device.
        let mut observed = ObservedRouting::from(&plan(Some(&up(7))));
        observed.routes.retain(|r| r.kind == RouteKind::Blackhole);
        let changes = diff(
            &observed,
            &plan(Some(&TunnelRouting {
                tunnel_ifindex: None,
                ..up(7)
            })),
        );
        assert_eq!(changes, vec![]);
    }

    #[test]
    fn rule_message_identity() {
        let msg = rule_message(Family::V6);
        assert!(is_our_rule(&msg));
        assert_eq!(msg.header.action, RuleAction::ToTable);
        let mut other = msg.clone();
        other.attributes = vec![
            RuleAttribute::Priority(RULE_PRIORITY),
            RuleAttribute::FwMark(0x100),
            RuleAttribute::Table(100),
        ];
        assert!(!is_our_rule(&other));
        // No FRA_FWMASK means all ones.
        let mut unmasked = msg.clone();
        unmasked.attributes.retain(|a| !matches!(a, RuleAttribute::FwMask(_)));
        assert!(!is_our_rule(&unmasked));
    }

    #[test]
    fn route_messages_round_trip() {
        let routes = [
            TableRoute::blackhole(Family::V4),
            TableRoute::blackhole(Family::V6),
            TableRoute::via_tunnel(Family::V4, 4),
            TableRoute::via_tunnel(Family::V6, 4),
            TableRoute {
                destination: "fd00:9::/48".parse().expect("literal"),
                kind: RouteKind::Other {
                    kind: 1,
                    oif: Some(3),
                    gateway: Some("fe80::1".parse().expect("literal")),
                },
                metric: 20,
            },
        ];
        for route in routes {
            let msg = route_message(&route, false);
            assert_eq!(route_table(&msg), ROUTE_TABLE);
            assert_eq!(parse_route(&msg), Some(route.clone()), "{route}");
            assert_eq!(parse_route(&route_message(&route, true)), Some(route.clone()));
        }
    }

    #[test]
    fn ifname_validation() {
        for good in ["t0", "wg-bulkhead", "eth0.10", "a_b@c"] {
            assert!(validate_ifname(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "all",
            "default",
            "../../x",
            "a/b",
            "x y",
            "sixteen-chars-xx",
        ] {
            assert!(validate_ifname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn change_display_names_the_operation() {
        assert_eq!(
            RoutingChange::AddRoute(TableRoute::blackhole(Family::V4)).to_string(),
            "add route blackhole default metric 4294967295 table 25192"
        );
        assert_eq!(
            RoutingChange::DeleteRule(Family::V6).to_string(),
            "delete IPv6 rule fwmark 0x20000000/0x20000000 lookup 25192 priority 10200"
        );
    }
}
