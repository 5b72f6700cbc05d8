//! PURE: what the config wants of the kernel's links and addresses
//! ([`desired_net`]), and which bridge ports the bridge table must police
//! ([`existing_bridge_ports`], from what the kernel holds).

use std::collections::BTreeSet;

use crate::config::{Config, SegmentKind};
use crate::net;

/// What the config wants of links and addresses.
pub fn desired_net(config: &Config) -> net::DesiredNet {
    net::DesiredNet {
        segments: config
            .segments
            .iter()
            .map(|s| net::SegmentLink {
                interface: s.interface.clone(),
                kind: match &s.kind {
                    SegmentKind::Existing => net::LinkKind::Existing,
                    SegmentKind::Bridge { ports } => net::LinkKind::Bridge { ports: ports.clone() },
                    SegmentKind::Vlan { parent, id } => net::LinkKind::Vlan {
                        parent: parent.clone(),
                        id: *id,
                    },
                },
                addresses: std::iter::once(ipnet::IpNet::V4(s.ipv4))
                    .chain(s.ipv6.map(ipnet::IpNet::V6))
                    .collect(),
            })
            .collect(),
    }
}

/// What the firewall's structure needs to know of the links `observed` now
/// (`flowtables`: the kernel took one when probed at start).
pub fn link_facts(config: &Config, observed: &net::ObservedNet, flowtables: bool) -> super::LinkFacts {
    super::LinkFacts {
        bridge_ports: existing_bridge_ports(config, observed),
        // Only the links the firewall names: others coming and going change
        // nothing.
        present: observed
            .links
            .iter()
            .filter(|l| l.name == config.wan_interface || config.segments.iter().any(|s| s.interface == l.name))
            .map(|l| (l.name.clone(), l.index))
            .collect(),
        flowtables,
        // Which ports are radios is read from sysfs by the runtime.
        wireless_ports: Default::default(),
        router_link_local: observed
            .links
            .iter()
            .filter(|l| config.segments.iter().any(|s| s.interface == l.name))
            .flat_map(|l| &l.addresses)
            .filter_map(|a| match a.addr() {
                std::net::IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
                _ => None,
            })
            .collect(),
    }
}

/// Ports of segment interfaces that are bridges Bulkhead did not create (OpenWrt's
/// br-lan): the bridge table must police them too.
pub fn existing_bridge_ports(config: &Config, observed: &net::ObservedNet) -> BTreeSet<String> {
    let mut ports = BTreeSet::new();
    for s in config.segments.iter().filter(|s| s.kind == SegmentKind::Existing) {
        if let Some(br) = observed
            .link(&s.interface)
            .filter(|l| l.kind == net::ObservedKind::Bridge)
        {
            ports.extend(
                observed
                    .links
                    .iter()
                    .filter(|l| l.master == Some(br.index))
                    .map(|l| l.name.clone()),
            );
        }
    }
    ports
}
