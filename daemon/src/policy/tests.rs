use std::net::IpAddr;

use super::*;
use crate::inventory::{Event, Inventory};
use crate::testutil::{config_with, default_config, MAIN};

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn zid(s: &str) -> ZoneId {
    ZoneId::new(s).expect("zone id")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn precedence_user_then_policy_then_segment_then_unknown() {
    let pinned = "[[devices]]\nmac = \"02:00:00:00:00:02\"\nzone = \"trusted\"\n\n[segment_zones]\niot = \"iot\"\n";
    let cfg = config_with(MAIN, &[("pins.toml", pinned)]);
    let mut inv = Inventory::default();
    inv.apply(
        &Event::ManualAdd {
            mac: mac(1),
            ip: Some(ip("10.0.1.5")),
        },
        0,
    );
    inv.apply(
        &Event::ManualAdd {
            mac: mac(2),
            ip: Some(ip("10.0.2.6")),
        },
        0,
    );
    inv.apply(
        &Event::ManualAdd {
            mac: mac(3),
            ip: Some(ip("10.0.2.7")),
        },
        0,
    );
    inv.apply(
        &Event::ManualAdd {
            mac: mac(4),
            ip: Some(ip("10.0.2.8")),
        },
        0,
    );
    inv.apply(
        &Event::SetZone {
            mac: mac(4),
            zone: zid("guest"),
        },
        0,
    );
    let d = |n| zone_for(&cfg, inv.get(&mac(n)).expect("device"));
    assert_eq!(
        d(1),
        ZoneDecision {
            zone: zid("quarantine"),
            reason: ZoneReason::Unknown
        }
    );
    assert_eq!(
        d(2),
        ZoneDecision {
            zone: zid("trusted"),
            reason: ZoneReason::PolicyOverride
        }
    );
    assert_eq!(
        d(3),
        ZoneDecision {
            zone: zid("iot"),
            reason: ZoneReason::SegmentDefault
        }
    );
    assert_eq!(
        d(4),
        ZoneDecision {
            zone: zid("guest"),
            reason: ZoneReason::UserChoice
        }
    );
}

#[test]
fn a_user_zone_that_no_longer_exists_falls_through() {
    let cfg = default_config();
    let mut inv = Inventory::default();
    inv.apply(
        &Event::SetZone {
            mac: mac(1),
            zone: zid("attic"),
        },
        0,
    );
    assert_eq!(
        zone_for(&cfg, inv.get(&mac(1)).expect("device")).zone,
        zid("quarantine")
    );
}

#[test]
fn membership_holds_every_zone_and_both_families() {
    let cfg = default_config();
    let mut inv = Inventory::default();
    inv.apply(
        &Event::ManualAdd {
            mac: mac(1),
            ip: Some(ip("10.0.1.5")),
        },
        0,
    );
    inv.apply(
        &Event::ManualAdd {
            mac: mac(1),
            ip: Some(ip("fd00:1::5")),
        },
        0,
    );
    inv.apply(
        &Event::SetZone {
            mac: mac(1),
            zone: zid("iot"),
        },
        0,
    );
    let m = desired_membership(&cfg, &inv);
    assert_eq!(m.zones.len(), 4);
    let iot = &m.zones[&zid("iot")];
    assert!(iot.macs.contains(&mac(1)));
    assert_eq!(iot.v4.len(), 1);
    assert_eq!(iot.v6.len(), 1);
    assert_eq!(m.zone_of(&mac(1)), Some(&zid("iot")));
    assert!(m.zones[&zid("trusted")].macs.is_empty());
}

#[test]
fn ruleset_structure_from_default_policy() {
    let cfg = default_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    assert_eq!(rs.lan_interfaces.iter().collect::<Vec<_>>(), ["br-iot", "br-lan"]);
    assert_eq!(rs.bridge_ports.iter().collect::<Vec<_>>(), ["lan1", "lan2"]);
    let q = rs.zones.iter().find(|z| z.id == zid("quarantine")).expect("quarantine");
    assert!(!q.internet && q.reach.is_empty() && !q.ping_router);
    assert_eq!(
        q.services.iter().copied().collect::<Vec<_>>(),
        [
            ServicePort::Udp(53),
            ServicePort::Udp(67),
            ServicePort::Udp(547),
            ServicePort::Tcp(53)
        ]
    );
    let t = rs.zones.iter().find(|z| z.id == zid("trusted")).expect("trusted");
    assert!(
        t.services.contains(&ServicePort::Tcp(8080)),
        "web-ui port comes from web.listen"
    );
}
