//! The pure diff: desired segments + observed kernel state -> changes.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    DesiredNet, LinkKind, NetChange, NetPlan, ObservedKind, ObservedLink, ObservedNet, PlanProblem, SegmentLink,
};

/// Linux's `IFNAMSIZ` is 16 bytes including the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// Computes the changes that make `observed` match `desired`.
///
/// Pure and deterministic. Only adds (see the module docs for the rules);
/// anything that would need a removal or a replacement becomes a
/// [`PlanProblem`]. The changes come out in [`NetChange::phase`] order, and
/// a link is set up at most once, ports before the bridge they belong to.
pub fn plan(desired: &DesiredNet, observed: &ObservedNet) -> NetPlan {
    let mut problems = Vec::new();

    // Pass 1: drop duplicates and decide, per segment, whether it can be
    // planned at all and whether its link has to be created. VLANs are
    // decided in desired order so a VLAN may sit on a bridge or an earlier
    // VLAN that this same plan creates.
    let mut seen = BTreeSet::new();
    let mut usable: Vec<Usable<'_>> = Vec::new();
    for seg in &desired.segments {
        if !seen.insert(seg.interface.as_str()) {
            problems.push(PlanProblem::DuplicateSegment {
                interface: seg.interface.clone(),
            });
            continue;
        }
        let will_exist = |name: &str| observed.link(name).is_some() || usable.iter().any(|u| u.seg.interface == name);
        match check_segment(seg, observed, will_exist) {
            Ok(existing) => usable.push(Usable { seg, existing }),
            Err(problem) => problems.push(problem),
        }
    }

    // Pass 2: changes per usable segment, gathered per phase.
    let mut creates = Vec::new();
    let mut vlans = Vec::new();
    let mut masters = Vec::new();
    let mut addresses = Vec::new();
    let mut port_ups = Vec::new();
    let mut link_ups = Vec::new();
    // port name -> bridge that claimed it first.
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();

    for u in &usable {
        let name = u.seg.interface.as_str();
        match (&u.seg.kind, u.existing) {
            (LinkKind::Bridge { .. }, None) => creates.push(NetChange::CreateBridge { name: name.to_owned() }),
            (LinkKind::Vlan { parent, id }, None) => vlans.push(NetChange::CreateVlan {
                name: name.to_owned(),
                parent: parent.clone(),
                id: *id,
            }),
            _ => {}
        }

        if let LinkKind::Bridge { ports } = &u.seg.kind {
            let mut own = BTreeSet::new();
            for port in ports {
                if !own.insert(port.as_str()) {
                    continue; // listed twice for the same bridge: harmless
                }
                if let Some(problem) = check_port(name, port, &usable, observed) {
                    problems.push(problem);
                    continue;
                }
                if let Some(other) = claimed.get(port.as_str()) {
                    problems.push(PlanProblem::PortConflict {
                        port: port.clone(),
                        bridge: (*other).to_owned(),
                        other: name.to_owned(),
                    });
                    continue;
                }
                claimed.insert(port, name);

                let port_now = observed.link(port);
                let enslaved_here = match (port_now, u.existing) {
                    (Some(p), Some(bridge)) => p.master == Some(bridge.index),
                    _ => false,
                };
                if !enslaved_here {
                    masters.push(NetChange::SetMaster {
                        port: port.clone(),
                        bridge: name.to_owned(),
                    });
                }
                if !port_now.is_some_and(|p| p.up) {
                    port_ups.push(port.clone());
                }
            }
        }

        let mut own = BTreeSet::new();
        for addr in &u.seg.addresses {
            if !own.insert(*addr) {
                continue;
            }
            let Some(link) = u.existing else {
                addresses.push(NetChange::AddAddress {
                    link: name.to_owned(),
                    addr: *addr,
                });
                continue;
            };
            if link.addresses.contains(addr) {
                continue;
            }
            // Same address, other prefix: the kernel would refuse (IPv6) or
            // add a second entry (IPv4); neither is what anyone wants, and
            // removing the old one is not ours to do.
            if let Some(found) = link.addresses.iter().find(|a| a.addr() == addr.addr()) {
                problems.push(PlanProblem::AddressPrefixMismatch {
                    link: name.to_owned(),
                    want: *addr,
                    found: *found,
                });
                continue;
            }
            addresses.push(NetChange::AddAddress {
                link: name.to_owned(),
                addr: *addr,
            });
        }

        if !u.existing.is_some_and(|l| l.up) {
            link_ups.push(name.to_owned());
        }
    }

    // A link can be both a port and a segment (a VLAN bridged into a
    // bridge): set it up once, at its first (port) position.
    let mut up_seen = BTreeSet::new();
    let ups = port_ups
        .into_iter()
        .chain(link_ups)
        .filter(|l| up_seen.insert(l.clone()))
        .map(|link| NetChange::SetUp { link });

    let changes = creates
        .into_iter()
        .chain(vlans)
        .chain(masters)
        .chain(addresses)
        .chain(ups)
        .collect();
    NetPlan { changes, problems }
}

/// A segment that passed [`check_segment`].
struct Usable<'a> {
    seg: &'a SegmentLink,
    /// The link as it is now; `None` when the plan creates it.
    existing: Option<&'a ObservedLink>,
}

/// Decides whether a segment can be planned; `Ok(Some(link))` when its link
/// already exists (with the right kind), `Ok(None)` when it is to be created.
fn check_segment<'a>(
    seg: &SegmentLink,
    observed: &'a ObservedNet,
    will_exist: impl Fn(&str) -> bool,
) -> Result<Option<&'a ObservedLink>, PlanProblem> {
    let name = &seg.interface;
    let now = observed.link(name);
    match (&seg.kind, now) {
        (LinkKind::Existing, Some(link)) => Ok(Some(link)),
        (LinkKind::Existing, None) => Err(PlanProblem::MissingInterface {
            interface: name.clone(),
        }),
        (LinkKind::Bridge { .. }, Some(link)) => match link.kind {
            ObservedKind::Bridge => Ok(Some(link)),
            _ => Err(PlanProblem::WrongKind {
                interface: name.clone(),
                expected: "a bridge",
                found: link.kind.to_string(),
            }),
        },
        (LinkKind::Bridge { .. }, None) => {
            check_name(name)?;
            Ok(None)
        }
        (LinkKind::Vlan { parent, id }, now) => {
            if !(1..=4094).contains(id) {
                return Err(PlanProblem::InvalidVlanId {
                    vlan: name.clone(),
                    id: *id,
                });
            }
            match now {
                Some(link) => check_existing_vlan(name, parent, *id, link, observed).map(Some),
                None => {
                    check_name(name)?;
                    if !will_exist(parent) {
                        return Err(PlanProblem::MissingVlanParent {
                            vlan: name.clone(),
                            parent: parent.clone(),
                        });
                    }
                    Ok(None)
                }
            }
        }
    }
}

fn check_existing_vlan<'a>(
    name: &str,
    parent: &str,
    id: u16,
    link: &'a ObservedLink,
    observed: &ObservedNet,
) -> Result<&'a ObservedLink, PlanProblem> {
    let ObservedKind::Vlan {
        parent: found_parent,
        id: found_id,
    } = link.kind
    else {
        return Err(PlanProblem::WrongKind {
            interface: name.to_owned(),
            expected: "a VLAN",
            found: link.kind.to_string(),
        });
    };
    let found_parent_name = observed.link_by_index(found_parent).map(|l| l.name.as_str());
    if found_id == id && found_parent_name == Some(parent) {
        return Ok(link);
    }
    Err(PlanProblem::VlanMismatch {
        interface: name.to_owned(),
        parent: parent.to_owned(),
        id,
        found_parent: found_parent_name.map_or_else(|| format!("#{found_parent}"), str::to_owned),
        found_id,
    })
}

/// Why `port` cannot be enslaved to `bridge`, if it cannot.
fn check_port(bridge: &str, port: &str, usable: &[Usable<'_>], observed: &ObservedNet) -> Option<PlanProblem> {
    let invalid = |reason| {
        Some(PlanProblem::InvalidPort {
            bridge: bridge.to_owned(),
            port: port.to_owned(),
            reason,
        })
    };
    if port == bridge {
        return invalid("a bridge cannot be its own port");
    }
    // The kernel refuses bridges inside bridges (ELOOP); say so up front.
    let desired_bridge = usable
        .iter()
        .any(|u| u.seg.interface == port && matches!(u.seg.kind, LinkKind::Bridge { .. }));
    let observed_bridge = observed.link(port).is_some_and(|l| l.kind == ObservedKind::Bridge);
    if desired_bridge || observed_bridge {
        return invalid("it is a bridge");
    }
    let created_by_plan = usable.iter().any(|u| u.seg.interface == port && u.existing.is_none());
    if observed.link(port).is_none() && !created_by_plan {
        return Some(PlanProblem::MissingPort {
            bridge: bridge.to_owned(),
            port: port.to_owned(),
        });
    }
    None
}

/// The kernel's rules for interface names (`dev_valid_name`).
fn check_name(name: &str) -> Result<(), PlanProblem> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved")
    } else if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PlanProblem::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Applies a plan to an observed state in memory, the way the kernel would.
/// Used by [`super::MemoryNet`] and by the tests to check idempotence.
/// Returns `Err(name)` when a change refers to a link that does not exist,
/// `Ok(false)` for "already exists".
pub(super) fn simulate(observed: &mut ObservedNet, change: &NetChange) -> Result<bool, String> {
    let next_index = observed.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
    let index_of = |o: &ObservedNet, name: &str| o.link(name).map(|l| l.index).ok_or_else(|| name.to_owned());
    let new_link = |name: &str, kind| ObservedLink {
        name: name.to_owned(),
        index: next_index,
        kind,
        master: None,
        up: false,
        addresses: Vec::new(),
    };
    match change {
        NetChange::CreateBridge { name } => {
            if observed.link(name).is_some() {
                return Ok(false);
            }
            observed.links.push(new_link(name, ObservedKind::Bridge));
        }
        NetChange::CreateVlan { name, parent, id } => {
            if observed.link(name).is_some() {
                return Ok(false);
            }
            let parent = index_of(observed, parent)?;
            let kind = ObservedKind::Vlan { parent, id: *id };
            observed.links.push(new_link(name, kind));
        }
        NetChange::SetMaster { port, bridge } => {
            let bridge = index_of(observed, bridge)?;
            link_mut(observed, port)?.master = Some(bridge);
        }
        NetChange::AddAddress { link, addr } => {
            let link = link_mut(observed, link)?;
            if link.addresses.iter().any(|a| a.addr() == addr.addr()) {
                return Ok(false);
            }
            link.addresses.push(*addr);
        }
        NetChange::SetUp { link } => link_mut(observed, link)?.up = true,
    }
    Ok(true)
}

fn link_mut<'a>(observed: &'a mut ObservedNet, name: &str) -> Result<&'a mut ObservedLink, String> {
    observed
        .links
        .iter_mut()
        .find(|l| l.name == name)
        .ok_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    /// Lets tests write addresses as literals.
    fn net(s: &str) -> IpNet {
        s.parse().expect("valid test address")
    }

    fn bridge_segment() -> DesiredNet {
        DesiredNet {
            segments: vec![SegmentLink {
                interface: "br-iot".into(),
                kind: LinkKind::Bridge {
                    ports: vec!["eth1".into(), "wlan1".into()],
                },
                addresses: vec![net("10.0.1.1/24"), net("fd00:1::1/64")],
            }],
        }
    }

    fn link(name: &str, index: u32, kind: ObservedKind) -> ObservedLink {
        ObservedLink {
            name: name.into(),
            index,
            kind,
            master: None,
            up: false,
            addresses: Vec::new(),
        }
    }

    fn fresh() -> ObservedNet {
        ObservedNet {
            links: vec![
                link("lo", 1, ObservedKind::Other(None)),
                link("eth0", 2, ObservedKind::Other(None)),
                link("eth1", 3, ObservedKind::Other(None)),
                link("wlan1", 4, ObservedKind::Other(None)),
            ],
        }
    }

    /// Runs the plan against the observed state in memory.
    fn run(observed: &mut ObservedNet, plan: &NetPlan) {
        for change in &plan.changes {
            simulate(observed, change).expect("plan refers only to existing links");
        }
    }

    fn set_up(link: &str) -> NetChange {
        NetChange::SetUp { link: link.into() }
    }

    #[test]
    fn fresh_system_gets_full_plan_in_order() {
        let p = plan(&bridge_segment(), &fresh());
        assert_eq!(p.problems, vec![]);
        assert_eq!(
            p.changes,
            vec![
                NetChange::CreateBridge { name: "br-iot".into() },
                NetChange::SetMaster {
                    port: "eth1".into(),
                    bridge: "br-iot".into()
                },
                NetChange::SetMaster {
                    port: "wlan1".into(),
                    bridge: "br-iot".into()
                },
                NetChange::AddAddress {
                    link: "br-iot".into(),
                    addr: net("10.0.1.1/24")
                },
                NetChange::AddAddress {
                    link: "br-iot".into(),
                    addr: net("fd00:1::1/64")
                },
                set_up("eth1"),
                set_up("wlan1"),
                set_up("br-iot"),
            ]
        );
        let phases: Vec<u8> = p.changes.iter().map(NetChange::phase).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    }

    #[test]
    fn correct_system_gets_empty_plan() {
        let mut observed = fresh();
        observed.links.push(ObservedLink {
            up: true,
            addresses: vec![net("10.0.1.1/24"), net("fd00:1::1/64"), net("fe80::1/64")],
            ..link("br-iot", 9, ObservedKind::Bridge)
        });
        for port in ["eth1", "wlan1"] {
            let l = link_mut(&mut observed, port).expect("test link");
            l.master = Some(9);
            l.up = true;
        }
        let p = plan(&bridge_segment(), &observed);
        assert_eq!(p, NetPlan::default());
    }

    #[test]
    fn plan_is_idempotent() {
        let desired = DesiredNet {
            segments: vec![
                SegmentLink {
                    interface: "eth0.10".into(),
                    kind: LinkKind::Vlan {
                        parent: "eth0".into(),
                        id: 10,
                    },
                    addresses: vec![],
                },
                SegmentLink {
                    interface: "eth0".into(),
                    kind: LinkKind::Existing,
                    addresses: vec![net("192.168.1.1/24")],
                },
                SegmentLink {
                    interface: "br-iot".into(),
                    kind: LinkKind::Bridge {
                        ports: vec!["eth0.10".into(), "wlan1".into()],
                    },
                    addresses: vec![net("10.0.1.1/24"), net("fd00:1::1/64")],
                },
            ],
        };
        let mut observed = fresh();
        let first = plan(&desired, &observed);
        assert_eq!(first.problems, vec![]);
        assert!(!first.is_empty());
        run(&mut observed, &first);
        let second = plan(&desired, &observed);
        assert_eq!(second, NetPlan::default());
        // Replaying the stale first plan only hits "already exists".
        for change in &first.changes {
            let changed = simulate(&mut observed, change).expect("links exist");
            if matches!(
                change,
                NetChange::CreateBridge { .. } | NetChange::CreateVlan { .. } | NetChange::AddAddress { .. }
            ) {
                assert!(!changed, "{change} should be 'already exists'");
            }
        }
        assert_eq!(plan(&desired, &observed), NetPlan::default());
    }

    #[test]
    fn vlan_bridged_into_bridge_is_created_first_and_set_up_once() {
        let desired = DesiredNet {
            segments: vec![
                SegmentLink {
                    interface: "br-iot".into(),
                    kind: LinkKind::Bridge {
                        ports: vec!["eth0.10".into()],
                    },
                    addresses: vec![],
                },
                SegmentLink {
                    interface: "eth0.10".into(),
                    kind: LinkKind::Vlan {
                        parent: "eth0".into(),
                        id: 10,
                    },
                    addresses: vec![],
                },
            ],
        };
        let p = plan(&desired, &fresh());
        assert_eq!(p.problems, vec![]);
        assert_eq!(
            p.changes,
            vec![
                NetChange::CreateBridge { name: "br-iot".into() },
                NetChange::CreateVlan {
                    name: "eth0.10".into(),
                    parent: "eth0".into(),
                    id: 10
                },
                NetChange::SetMaster {
                    port: "eth0.10".into(),
                    bridge: "br-iot".into()
                },
                set_up("eth0.10"),
                set_up("br-iot"),
            ]
        );
    }

    #[test]
    fn vlan_on_a_bridge_created_by_the_same_plan() {
        let desired = DesiredNet {
            segments: vec![
                SegmentLink {
                    interface: "br-trunk".into(),
                    kind: LinkKind::Bridge { ports: vec![] },
                    addresses: vec![],
                },
                SegmentLink {
                    interface: "br-trunk.20".into(),
                    kind: LinkKind::Vlan {
                        parent: "br-trunk".into(),
                        id: 20,
                    },
                    addresses: vec![net("10.0.20.1/24")],
                },
            ],
        };
        let p = plan(&desired, &fresh());
        assert_eq!(p.problems, vec![]);
        assert_eq!(p.changes[0].phase(), 0);
        assert_eq!(
            p.changes[1],
            NetChange::CreateVlan {
                name: "br-trunk.20".into(),
                parent: "br-trunk".into(),
                id: 20
            }
        );
    }

    #[test]
    fn existing_vlan_with_other_id_is_a_problem_not_a_change() {
        let mut observed = fresh();
        observed
            .links
            .push(link("eth0.10", 7, ObservedKind::Vlan { parent: 2, id: 11 }));
        let desired = DesiredNet {
            segments: vec![SegmentLink {
                interface: "eth0.10".into(),
                kind: LinkKind::Vlan {
                    parent: "eth0".into(),
                    id: 10,
                },
                addresses: vec![net("10.0.10.1/24")],
            }],
        };
        let p = plan(&desired, &observed);
        assert!(p.is_empty());
        assert_eq!(
            p.problems,
            vec![PlanProblem::VlanMismatch {
                interface: "eth0.10".into(),
                parent: "eth0".into(),
                id: 10,
                found_parent: "eth0".into(),
                found_id: 11,
            }]
        );
    }

    #[test]
    fn vlan_with_missing_parent_or_bad_id_is_a_problem() {
        let desired = DesiredNet {
            segments: vec![
                SegmentLink {
                    interface: "eth9.10".into(),
                    kind: LinkKind::Vlan {
                        parent: "eth9".into(),
                        id: 10,
                    },
                    addresses: vec![],
                },
                SegmentLink {
                    interface: "eth0.0".into(),
                    kind: LinkKind::Vlan {
                        parent: "eth0".into(),
                        id: 0,
                    },
                    addresses: vec![],
                },
            ],
        };
        let p = plan(&desired, &fresh());
        assert!(p.is_empty());
        assert_eq!(
            p.problems,
            vec![
                PlanProblem::MissingVlanParent {
                    vlan: "eth9.10".into(),
                    parent: "eth9".into()
                },
                PlanProblem::InvalidVlanId {
                    vlan: "eth0.0".into(),
                    id: 0
                },
            ]
        );
    }

    #[test]
    fn port_enslaved_to_another_bridge_is_moved() {
        let mut observed = fresh();
        observed.links.push(ObservedLink {
            up: true,
            addresses: vec![net("10.0.1.1/24"), net("fd00:1::1/64")],
            ..link("br-iot", 9, ObservedKind::Bridge)
        });
        observed.links.push(link("br-other", 10, ObservedKind::Bridge));
        for (port, master) in [("eth1", 9), ("wlan1", 10)] {
            let l = link_mut(&mut observed, port).expect("test link");
            l.master = Some(master);
            l.up = true;
        }
        let p = plan(&bridge_segment(), &observed);
        assert_eq!(p.problems, vec![]);
        assert_eq!(
            p.changes,
            vec![NetChange::SetMaster {
                port: "wlan1".into(),
                bridge: "br-iot".into()
            }]
        );
    }

    #[test]
    fn missing_existing_interface_is_an_error_entry() {
        let desired = DesiredNet {
            segments: vec![
                SegmentLink {
                    interface: "lan9".into(),
                    kind: LinkKind::Existing,
                    addresses: vec![net("192.168.9.1/24")],
                },
                SegmentLink {
                    interface: "eth0".into(),
                    kind: LinkKind::Existing,
                    addresses: vec![net("192.168.1.1/24")],
                },
            ],
        };
        let p = plan(&desired, &fresh());
        assert_eq!(
            p.problems,
            vec![PlanProblem::MissingInterface {
                interface: "lan9".into()
            }]
        );
        // The other segment still goes ahead.
        assert_eq!(
            p.changes,
            vec![
                NetChange::AddAddress {
                    link: "eth0".into(),
                    addr: net("192.168.1.1/24")
                },
                set_up("eth0"),
            ]
        );
    }

    #[test]
    fn name_taken_by_other_kind_is_a_problem() {
        let desired = bridge_segment();
        let mut observed = fresh();
        observed
            .links
            .push(link("br-iot", 9, ObservedKind::Other(Some("dummy".into()))));
        let p = plan(&desired, &observed);
        assert!(p.is_empty());
        assert_eq!(
            p.problems,
            vec![PlanProblem::WrongKind {
                interface: "br-iot".into(),
                expected: "a bridge",
                found: "a dummy link".into(),
            }]
        );
    }

    #[test]
    fn extra_addresses_are_kept_and_prefix_mismatch_is_reported() {
        let mut observed = fresh();
        let eth0 = link_mut(&mut observed, "eth0").expect("test link");
        eth0.up = true;
        eth0.addresses = vec![net("192.168.1.1/16"), net("203.0.113.7/24")];
        let desired = DesiredNet {
            segments: vec![SegmentLink {
                interface: "eth0".into(),
                kind: LinkKind::Existing,
                addresses: vec![net("192.168.1.1/24"), net("fd00::1/64")],
            }],
        };
        let p = plan(&desired, &observed);
        assert_eq!(
            p.changes,
            vec![NetChange::AddAddress {
                link: "eth0".into(),
                addr: net("fd00::1/64")
            }]
        );
        assert_eq!(
            p.problems,
            vec![PlanProblem::AddressPrefixMismatch {
                link: "eth0".into(),
                want: net("192.168.1.1/24"),
                found: net("192.168.1.1/16"),
            }]
        );
    }

    #[test]
    fn port_problems() {
        let desired = DesiredNet {
            segments: vec![
                SegmentLink {
                    interface: "br-a".into(),
                    kind: LinkKind::Bridge {
                        ports: vec!["eth1".into(), "br-a".into(), "ghost".into()],
                    },
                    addresses: vec![],
                },
                SegmentLink {
                    interface: "br-b".into(),
                    kind: LinkKind::Bridge {
                        ports: vec!["eth1".into(), "br-a".into()],
                    },
                    addresses: vec![],
                },
            ],
        };
        let p = plan(&desired, &fresh());
        assert_eq!(
            p.problems,
            vec![
                PlanProblem::InvalidPort {
                    bridge: "br-a".into(),
                    port: "br-a".into(),
                    reason: "a bridge cannot be its own port"
                },
                PlanProblem::MissingPort {
                    bridge: "br-a".into(),
                    port: "ghost".into()
                },
                PlanProblem::PortConflict {
                    port: "eth1".into(),
                    bridge: "br-a".into(),
                    other: "br-b".into()
                },
                PlanProblem::InvalidPort {
                    bridge: "br-b".into(),
                    port: "br-a".into(),
                    reason: "it is a bridge"
                },
            ]
        );
        let masters: Vec<_> = p
            .changes
            .iter()
            .filter(|c| matches!(c, NetChange::SetMaster { .. }))
            .collect();
        assert_eq!(
            masters,
            vec![&NetChange::SetMaster {
                port: "eth1".into(),
                bridge: "br-a".into()
            }]
        );
    }

    #[test]
    fn duplicates_and_bad_names() {
        let seg = |name: &str| SegmentLink {
            interface: name.into(),
            kind: LinkKind::Bridge { ports: vec![] },
            addresses: vec![],
        };
        let desired = DesiredNet {
            segments: vec![seg("br-ok"), seg("br-ok"), seg("this-name-is-too-long"), seg("br/x")],
        };
        let p = plan(&desired, &fresh());
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        assert!(matches!(p.problems[0], PlanProblem::DuplicateSegment { .. }));
        assert!(matches!(p.problems[1], PlanProblem::InvalidName { .. }));
        assert!(matches!(p.problems[2], PlanProblem::InvalidName { .. }));
        assert_eq!(
            p.changes,
            vec![NetChange::CreateBridge { name: "br-ok".into() }, set_up("br-ok")]
        );
    }

    #[test]
    fn empty_desired_changes_nothing() {
        assert_eq!(plan(&DesiredNet::default(), &fresh()), NetPlan::default());
    }
}

/// The links a reload retires: VLANs and bridges Bulkhead created for
/// segments of the `old` config that the `new` one no longer has, as the
/// kernel holds them now (a link of the same name that is not what Bulkhead
/// made — another kind, another parent or VLAN id — is never touched, nor is
/// any `Existing` segment's link). Pure; the caller deletes them after the
/// firewall stopped naming them.
pub fn retired_links(old: &DesiredNet, new: &DesiredNet, observed: &ObservedNet) -> Vec<(String, u32)> {
    let wanted: BTreeSet<&str> = new.segments.iter().map(|s| s.interface.as_str()).collect();
    old.segments
        .iter()
        .filter(|s| !wanted.contains(s.interface.as_str()))
        .filter_map(|s| {
            let link = observed.link(&s.interface)?;
            let ours = match (&s.kind, &link.kind) {
                (LinkKind::Bridge { .. }, ObservedKind::Bridge) => true,
                (LinkKind::Vlan { parent, id }, ObservedKind::Vlan { parent: p, id: i }) => {
                    *id == *i && observed.link_by_index(*p).is_some_and(|l| l.name == *parent)
                }
                _ => false,
            };
            ours.then(|| (link.name.clone(), link.index))
        })
        .collect()
}

#[cfg(test)]
mod retired_tests {
    use super::*;
    use crate::net::SegmentLink;

    fn seg(interface: &str, kind: LinkKind) -> SegmentLink {
        SegmentLink {
            interface: interface.into(),
            kind,
            addresses: Vec::new(),
        }
    }

    fn link(name: &str, index: u32, kind: ObservedKind) -> ObservedLink {
        ObservedLink {
            name: name.into(),
            index,
            kind,
            master: None,
            up: true,
            addresses: Vec::new(),
        }
    }

    #[test]
    fn only_what_bulkhead_made_for_a_dropped_segment_is_retired() {
        let vlan = |id| LinkKind::Vlan {
            parent: "trunk".into(),
            id,
        };
        let old = DesiredNet {
            segments: vec![
                seg("trunk", LinkKind::Existing),
                seg("trunk.20", vlan(20)),
                seg("trunk.30", vlan(30)),
                seg("br-guest", LinkKind::Bridge { ports: vec![] }),
                seg("eth9", LinkKind::Existing),
                seg("trunk.40", vlan(40)),
            ],
        };
        let new = DesiredNet {
            segments: vec![seg("trunk", LinkKind::Existing), seg("trunk.20", vlan(20))],
        };
        let observed = ObservedNet {
            links: vec![
                link("trunk", 2, ObservedKind::Other(Some("veth".into()))),
                link("trunk.20", 3, ObservedKind::Vlan { parent: 2, id: 20 }),
                link("trunk.30", 4, ObservedKind::Vlan { parent: 2, id: 30 }),
                link("br-guest", 5, ObservedKind::Bridge),
                link("eth9", 6, ObservedKind::Other(None)),
                // Someone else's link of that name: VLAN 41, not 40.
                link("trunk.40", 7, ObservedKind::Vlan { parent: 2, id: 41 }),
            ],
        };
        assert_eq!(
            retired_links(&old, &new, &observed),
            [("trunk.30".to_string(), 4), ("br-guest".to_string(), 5)]
        );
        assert!(retired_links(&new, &new, &observed).is_empty());
    }
}
