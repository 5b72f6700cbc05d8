//! One `[[segments]]` entry: its interface, kind, addresses, DHCP pool and
//! mode; and the address checks the other sections share.

use super::*;

pub(crate) fn validate_segment(s: &RawSegment, f: &dyn Fn(&str) -> String, rep: &mut Reporter<'_>) -> Option<Segment> {
    let mut ok = true;
    let id = SegmentId::new(s.name.get_ref())
        .map_err(|m| rep.at(s.name.span(), f("name"), m))
        .ok();
    if let Err(m) = check_ifname(s.interface.get_ref()) {
        rep.at(s.interface.span(), f("interface"), m);
        ok = false;
    }
    let kind = match s.kind.get_ref().as_str() {
        "existing" => Some(SegmentKind::Existing),
        "bridge" => {
            let ports = s.ports.as_ref().map(|p| p.get_ref().clone()).unwrap_or_default();
            for p in &ports {
                if let Err(m) = check_ifname(p) {
                    let span = s.ports.as_ref().map_or(s.kind.span(), |p| p.span());
                    rep.at(span, f("ports"), m);
                    ok = false;
                }
            }
            Some(SegmentKind::Bridge { ports })
        }
        "vlan" => match (&s.parent, &s.vlan_id) {
            (Some(parent), Some(id)) => {
                if let Err(m) = check_ifname(parent.get_ref()) {
                    rep.at(parent.span(), f("parent"), m);
                    ok = false;
                }
                match u16::try_from(*id.get_ref()) {
                    Ok(v) if (1..=4094).contains(&v) => Some(SegmentKind::Vlan {
                        parent: parent.get_ref().clone(),
                        id: v,
                    }),
                    _ => {
                        rep.at(id.span(), f("vlan_id"), "VLAN id must be between 1 and 4094");
                        None
                    }
                }
            }
            _ => {
                rep.at(s.kind.span(), f("kind"), "a vlan segment needs `parent` and `vlan_id`");
                None
            }
        },
        other => {
            rep.at(
                s.kind.span(),
                f("kind"),
                format!(
                    "unknown kind `{}` (expected existing, bridge or vlan)",
                    other.escape_debug()
                ),
            );
            None
        }
    };
    if let Some(k) = &kind {
        // A field for another kind is almost certainly a mistake; say so.
        if !matches!(k, SegmentKind::Bridge { .. }) {
            if let Some(p) = &s.ports {
                rep.at(p.span(), f("ports"), "`ports` only applies to kind = \"bridge\"");
                ok = false;
            }
        }
        if !matches!(k, SegmentKind::Vlan { .. }) {
            for (name, span) in [
                ("parent", s.parent.as_ref().map(|p| p.span())),
                ("vlan_id", s.vlan_id.as_ref().map(|p| p.span())),
            ] {
                if let Some(span) = span {
                    rep.at(span, f(name), format!("`{name}` only applies to kind = \"vlan\""));
                    ok = false;
                }
            }
        }
    }
    let ipv4 = match s.ipv4.get_ref().parse::<Ipv4Net>() {
        Ok(n) if n.addr() == n.network() || (n.prefix_len() < 31 && n.addr() == n.broadcast()) => {
            rep.at(
                s.ipv4.span(),
                f("ipv4"),
                "the router's address must be a host address of the subnet, e.g. 192.168.1.1/24",
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            rep.at(
                s.ipv4.span(),
                f("ipv4"),
                format!(
                    "`{}` is not an IPv4 address/prefix like 192.168.1.1/24",
                    s.ipv4.get_ref().escape_debug()
                ),
            );
            None
        }
    };
    let ipv6 = match &s.ipv6 {
        None => None,
        Some(v) => match v.get_ref().parse::<Ipv6Net>() {
            Ok(n) => Some(Some(n)),
            Err(_) => {
                rep.at(
                    v.span(),
                    f("ipv6"),
                    format!(
                        "`{}` is not an IPv6 address/prefix like fd00:1::1/64",
                        v.get_ref().escape_debug()
                    ),
                );
                None
            }
        },
    };
    let dhcp_pool = match (&s.dhcp_pool, ipv4) {
        (None, _) => Some(None),
        (Some(p), Some(net)) => match parse_pool(p.get_ref(), net) {
            Ok(r) => Some(Some(r)),
            Err(m) => {
                rep.at(p.span(), f("dhcp_pool"), m);
                None
            }
        },
        (Some(_), None) => None,
    };
    // Serve where a pool is given, unless told otherwise; observing and off need
    // no pool (another server hands out addresses, or nobody does).
    let pool_given = matches!(dhcp_pool, Some(Some(_)));
    let dhcp = match s.dhcp.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
        None if pool_given => Some(DhcpMode::Serve),
        None => Some(DhcpMode::Off),
        Some(("serve", span)) => {
            if !pool_given && dhcp_pool.is_some() {
                rep.at(span, f("dhcp"), "dhcp = \"serve\" needs a `dhcp_pool`");
                ok = false;
            }
            Some(DhcpMode::Serve)
        }
        Some(("observe", _)) => Some(DhcpMode::Observe),
        Some(("off", _)) => Some(DhcpMode::Off),
        Some((other, span)) => {
            rep.at(
                span,
                f("dhcp"),
                format!(
                    "unknown DHCP mode `{}` (expected serve, observe or off)",
                    other.escape_debug()
                ),
            );
            None
        }
    };
    match (id, kind, ipv4, s.ipv6.is_none() || ipv6.is_some(), dhcp_pool, dhcp) {
        (Some(id), Some(kind), Some(ipv4), true, Some(dhcp_pool), Some(dhcp)) if ok => Some(Segment {
            id,
            interface: s.interface.get_ref().clone(),
            kind,
            ipv4,
            ipv6: ipv6.flatten(),
            dhcp_pool,
            dhcp,
        }),
        _ => None,
    }
}

/// A DNS domain name: labels of ASCII letters, digits and hyphens.
/// Loopback, or the router's own address on a segment.
pub(crate) fn web_listen_allowed(ip: std::net::IpAddr, segments: &[Segment]) -> bool {
    ip.is_loopback()
        || segments.iter().any(|s| match ip {
            std::net::IpAddr::V4(v4) => s.ipv4.addr() == v4,
            std::net::IpAddr::V6(v6) => s.ipv6.is_some_and(|n| n.addr() == v6),
        })
}

pub(in crate::config) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(crate) fn parse_pool(s: &str, net: Ipv4Net) -> Result<Ipv4Range, String> {
    let bad = || format!("`{}` is not a range like 192.168.1.100-192.168.1.199", s.escape_debug());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
    let end: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
    if start > end {
        return Err("the pool's start is after its end".into());
    }
    let hosts = net.trunc();
    if !hosts.contains(&start) || !hosts.contains(&end) || start == hosts.network() || end == hosts.broadcast() {
        return Err(format!(
            "the pool must lie inside {hosts}, without its network and broadcast addresses"
        ));
    }
    if (start..=end).contains(&net.addr()) {
        return Err(format!("the pool contains the router's own address {}", net.addr()));
    }
    Ok(Ipv4Range { start, end })
}
