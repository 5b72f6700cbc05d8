//! Reading links and addresses from the kernel into [`ObservedNet`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use super::{NetError, ObservedKind, ObservedLink, ObservedNet};

/// Dumps every link and address of the handle's network namespace.
pub async fn observe(handle: &Handle) -> Result<ObservedNet, NetError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| NetError::Observe {
            what: "links",
            source: Box::new(e),
        })?;
    let addresses: Vec<AddressMessage> =
        handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::Observe {
                what: "addresses",
                source: Box::new(e),
            })?;
    Ok(observed_from_messages(&links, &addresses))
}

/// Builds an [`ObservedNet`] from dumped messages. Pure, so it can be tested
/// with hand-made messages. Links without a name and addresses of unknown
/// links or families are skipped: they cannot be planned against anyway.
pub fn observed_from_messages(links: &[LinkMessage], addresses: &[AddressMessage]) -> ObservedNet {
    let mut by_index: BTreeMap<u32, Vec<IpNet>> = BTreeMap::new();
    for msg in addresses {
        if let Some(net) = parse_address(msg) {
            by_index.entry(msg.header.index).or_default().push(net);
        }
    }
    let links = links
        .iter()
        .filter_map(parse_link)
        .map(|mut link| {
            link.addresses = by_index.remove(&link.index).unwrap_or_default();
            link
        })
        .collect();
    ObservedNet { links }
}

/// One link message to an [`ObservedLink`] without addresses; `None` when
/// it carries no name.
pub(super) fn parse_link(msg: &LinkMessage) -> Option<ObservedLink> {
    let mut name = None;
    let mut master = None;
    let mut lower = None;
    let mut info_kind = None;
    let mut vlan_id = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Controller(i) => master = Some(*i),
            LinkAttribute::Link(i) => lower = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => info_kind = Some(k.clone()),
                        LinkInfo::Data(InfoData::Vlan(data)) => {
                            vlan_id = data.iter().find_map(|d| match d {
                                InfoVlan::Id(id) => Some(*id),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let kind = match (info_kind, lower, vlan_id) {
        (Some(InfoKind::Bridge), _, _) => ObservedKind::Bridge,
        (Some(InfoKind::Vlan), Some(parent), Some(id)) => ObservedKind::Vlan { parent, id },
        (kind, _, _) => ObservedKind::Other(kind.map(|k| k.to_string())),
    };
    Some(ObservedLink {
        name: name?,
        index: msg.header.index,
        kind,
        // The kernel sends IFLA_MASTER only when there is one, but 0 would
        // mean "none" too.
        master: master.filter(|&m| m != 0),
        up: msg.header.flags.contains(LinkFlags::Up),
        addresses: Vec::new(),
    })
}

/// One address message to the link's own address and prefix.
fn parse_address(msg: &AddressMessage) -> Option<IpNet> {
    let mut address = None;
    let mut local = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Local(a) => local = Some(*a),
            _ => {}
        }
    }
    // IPv4: IFA_LOCAL is the interface's address and IFA_ADDRESS the peer
    // on point-to-point links. IPv6 sends only IFA_ADDRESS (IFA_LOCAL too,
    // for peer addresses, and then it is the local one as well).
    let ip: IpAddr = match msg.header.family {
        AddressFamily::Inet | AddressFamily::Inet6 => local.or(address)?,
        _ => return None,
    };
    IpNet::new(ip, msg.header.prefix_len).ok()
}

/// The bridge ports that are Wi-Fi interfaces (cfg80211 gives them a
/// `phy80211` link in sysfs), with their bridge's index. Read from this
/// process's sysfs: the daemon runs in the router's own namespace.
pub fn wireless_ports(observed: &ObservedNet) -> BTreeMap<String, u32> {
    observed
        .links
        .iter()
        .filter_map(|l| Some((l, l.master?)))
        .filter(|(_, master)| {
            observed
                .link_by_index(*master)
                .is_some_and(|b| b.kind == super::ObservedKind::Bridge)
        })
        .filter(|(l, _)| {
            std::path::Path::new("/sys/class/net")
                .join(&l.name)
                .join("phy80211")
                .exists()
        })
        .map(|(l, master)| (l.name.clone(), master))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{BridgeStpState, InfoBridge};
    use rtnetlink::{AddressMessageBuilder, LinkBridge, LinkMessageBuilder, LinkUnspec};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn links_and_addresses_from_messages() {
        let mut bridge = LinkMessageBuilder::<LinkBridge>::new("br-iot")
            .append_info_data(InfoBridge::StpState(BridgeStpState::Disabled))
            .up()
            .build();
        bridge.header.index = 5;
        let mut port = LinkUnspec::new_with_name("eth1").controller(5).build();
        port.header.index = 3;
        let nameless = LinkMessage::default();

        let v4 = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(5)
            .address(Ipv4Addr::new(10, 0, 1, 1), 24)
            .build();
        let v6 = AddressMessageBuilder::<Ipv6Addr>::new()
            .index(5)
            .address("fd00:1::1".parse().expect("literal"), 64)
            .build();
        let orphan = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(99)
            .address(Ipv4Addr::new(10, 9, 9, 9), 8)
            .build();

        let observed = observed_from_messages(&[bridge, port, nameless], &[v4, v6, orphan]);
        assert_eq!(
            observed,
            ObservedNet {
                links: vec![
                    ObservedLink {
                        name: "br-iot".into(),
                        index: 5,
                        kind: ObservedKind::Bridge,
                        master: None,
                        up: true,
                        addresses: vec![
                            "10.0.1.1/24".parse().expect("literal"),
                            "fd00:1::1/64".parse().expect("literal"),
                        ],
                    },
                    ObservedLink {
                        name: "eth1".into(),
                        index: 3,
                        kind: ObservedKind::Other(None),
                        master: Some(5),
                        up: false,
                        addresses: vec![],
                    },
                ]
            }
        );
    }
}
