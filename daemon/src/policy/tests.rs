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

fn device_with(mac: MacAddr, ip_s: &str, ev: crate::classify::Evidence) -> Device {
    let mut d = Device::new(mac, 0);
    d.addresses.insert(ip(ip_s));
    d.evidence = ev;
    d
}

#[test]
fn classification_sits_between_pins_and_segment_defaults() {
    let cfg = config_with(
        MAIN,
        &[(
            "pins.toml",
            "[[devices]]\nmac = \"50:c7:bf:00:00:01\"\nzone = \"trusted\"\n\n[segment_zones]\niot = \"iot\"\n",
        )],
    );
    let cast = crate::classify::Evidence {
        mdns_services: ["_googlecast._tcp".to_string()].into(),
        txt: [("md".to_string(), "Chromecast".to_string())].into(),
        ..Default::default()
    };
    // High-confidence mDNS: out of quarantine into iot.
    let d = device_with(MacAddr([0xf4, 0xf5, 0xd8, 0, 0, 1]), "10.0.1.30", cast.clone());
    let z = zone_for(&cfg, &d);
    assert_eq!((z.zone.as_str(), z.reason), ("iot", ZoneReason::Classified));
    assert_eq!(classification(&cfg, &d).map(|m| m.class.as_str()), Some("media"));
    // A policy pin wins over the same evidence.
    let d = device_with(MacAddr([0x50, 0xc7, 0xbf, 0, 0, 1]), "10.0.1.31", cast.clone());
    assert_eq!(zone_for(&cfg, &d).reason, ZoneReason::PolicyOverride);
    // The homeowner's choice wins over everything.
    let mut d = device_with(MacAddr([0xf4, 0xf5, 0xd8, 0, 0, 2]), "10.0.1.32", cast);
    d.user_zone = Some(zid("guest"));
    assert_eq!(zone_for(&cfg, &d).zone.as_str(), "guest");
}

#[test]
fn a_placed_device_is_never_sent_back_by_what_it_stops_saying() {
    let cfg = default_config();
    let cast = crate::classify::Evidence {
        mdns_services: ["_googlecast._tcp".to_string()].into(),
        txt: [("md".to_string(), "Chromecast".to_string())].into(),
        ..Default::default()
    };
    // Placed in iot by its class, remembered as the core does.
    let mut d = device_with(MacAddr([0x02, 0, 0, 0, 0, 0x30]), "10.0.1.30", cast);
    assert_eq!(zone_for(&cfg, &d).zone.as_str(), "iot");
    d.placed_zone = Some(zid("iot"));
    // Its evidence no longer places it (a forged or changed announcement):
    // it stays in iot instead of going back to quarantine.
    d.evidence = crate::classify::Evidence {
        hostname: Some("nothing-to-see".into()),
        ..Default::default()
    };
    assert!(classification(&cfg, &d).is_none());
    let z = zone_for(&cfg, &d);
    assert_eq!((z.zone.as_str(), z.reason), ("iot", ZoneReason::Classified));
    // With no evidence at all, too; and the assessor agrees.
    d.evidence = Default::default();
    assert_eq!(zone_for(&cfg, &d).zone.as_str(), "iot");
    assert_eq!(Assessor::new(&cfg).assess(&d).0, zone_for(&cfg, &d));
    // The homeowner still decides; a zone the policy dropped is forgotten.
    d.user_zone = Some(zid("guest"));
    assert_eq!(zone_for(&cfg, &d).zone.as_str(), "guest");
    d.user_zone = None;
    d.placed_zone = Some(zid("gone"));
    assert_eq!(zone_for(&cfg, &d).reason, ZoneReason::Unknown);
}

#[test]
fn a_low_confidence_match_never_loosens_a_device() {
    let cfg = default_config();
    // Vendor-only (Wyze Labs OUI) camera rule: low confidence, zone iot. iot is
    // less restricted than quarantine, so the device stays in quarantine...
    let d = device_with(
        MacAddr([0x2c, 0xaa, 0x8e, 0, 0, 1]),
        "10.0.1.40",
        crate::classify::Evidence {
            hostname: Some("cam".into()),
            ..Default::default()
        },
    );
    let m = classification(&cfg, &d).expect("the vendor rule matches");
    assert_eq!(m.confidence, crate::classify::Confidence::Low);
    let z = zone_for(&cfg, &d);
    assert_eq!((z.zone.as_str(), z.reason), ("quarantine", ZoneReason::Unknown));
}

/// An inventory for the tunnel config: mac(1) in trusted, mac(2) in iot (a
/// tunnel zone), mac(8) (policy-excluded) and mac(9) (policy-selected), each with
/// an address.
fn tunnel_home() -> Inventory {
    let mut inv = Inventory::default();
    for (n, a, z) in [
        (1, "10.0.1.11", "trusted"),
        (2, "10.0.2.12", "iot"),
        (8, "10.0.1.18", "trusted"),
        (9, "10.0.1.19", "trusted"),
    ] {
        inv.apply(
            &Event::ManualAdd {
                mac: mac(n),
                ip: Some(ip(a)),
            },
            0,
        );
        inv.apply(
            &Event::SetZone {
                mac: mac(n),
                zone: zid(z),
            },
            0,
        );
    }
    inv
}

fn routed(cfg: &Config, inv: &Inventory, n: u8) -> bool {
    let d = inv.get(&mac(n)).expect("device");
    tunnel_routed(cfg, d, &zone_for(cfg, d).zone)
}

#[test]
fn tunnel_device_sets_are_the_policy_and_the_homeowners_choices() {
    let cfg = crate::testutil::tunnel_config();
    let mut inv = tunnel_home();
    let m = desired_membership(&cfg, &inv);
    assert_eq!(m.tunnel_devices, [mac(9)].into(), "the policy's selection");
    assert_eq!(m.tunnel_exclude, [mac(8)].into(), "the policy's exclusion");
    assert!(routed(&cfg, &inv, 2), "iot is a tunnel zone");
    assert!(!routed(&cfg, &inv, 1) && !routed(&cfg, &inv, 8) && routed(&cfg, &inv, 9));

    // The homeowner's choices win over the policy, both ways, and each MAC is in
    // at most one of the two sets.
    for (n, route) in [(1, Some(true)), (2, Some(false)), (8, Some(true)), (9, Some(false))] {
        inv.apply(&Event::TunnelChoice { mac: mac(n), route }, 1);
    }
    let m = desired_membership(&cfg, &inv);
    assert_eq!(m.tunnel_devices, [mac(1), mac(8)].into());
    assert_eq!(m.tunnel_exclude, [mac(2), mac(9)].into());
    assert!(routed(&cfg, &inv, 1) && routed(&cfg, &inv, 8));
    assert!(
        !routed(&cfg, &inv, 2) && !routed(&cfg, &inv, 9),
        "never, even in a tunnel zone"
    );

    // Back to the policy: as at first.
    for n in [1, 2, 8, 9] {
        inv.apply(
            &Event::TunnelChoice {
                mac: mac(n),
                route: None,
            },
            2,
        );
    }
    assert_eq!(desired_membership(&cfg, &inv), desired_membership(&cfg, &tunnel_home()));

    // Policy devices not seen yet are in their sets already.
    let m = desired_membership(&cfg, &Inventory::default());
    assert_eq!((m.tunnel_devices, m.tunnel_exclude), ([mac(9)].into(), [mac(8)].into()));
}

#[test]
fn without_a_tunnel_choices_are_kept_but_route_nothing() {
    let cfg = default_config();
    let mut inv = tunnel_home();
    inv.apply(
        &Event::TunnelChoice {
            mac: mac(1),
            route: Some(true),
        },
        1,
    );
    let m = desired_membership(&cfg, &inv);
    assert!(m.tunnel_devices.is_empty() && m.tunnel_exclude.is_empty());
    assert!(!routed(&cfg, &inv, 1));
    let d = inv.get(&mac(1)).expect("device");
    assert_eq!(d.tunnel_choice, Some(true), "kept for when a tunnel is configured");
    assert_eq!(device_entry(&cfg, d).tunnel, None);
}

#[test]
fn a_blocked_device_stays_in_its_zone_and_joins_the_blocked_sets() {
    let cfg = default_config();
    let mut inv = tunnel_home();
    inv.apply(
        &Event::ManualAdd {
            mac: mac(2),
            ip: Some(ip("fd00:1::12")),
        },
        1,
    );
    let before = desired_membership(&cfg, &inv);
    inv.apply(
        &Event::Block {
            mac: mac(2),
            blocked: true,
        },
        2,
    );
    let m = desired_membership(&cfg, &inv);
    assert_eq!(m.zones, before.zones, "zone sets untouched");
    assert_eq!(m.blocked.macs, [mac(2)].into());
    assert_eq!(m.blocked.v4, ["10.0.2.12".parse().expect("v4")].into());
    assert_eq!(m.blocked.v6, ["fd00:1::12".parse().expect("v6")].into());
    // The incremental path agrees with the full one.
    let d = inv.get(&mac(2)).expect("device");
    let mut inc = before.clone();
    inc.remove_entry(&device_entry(&cfg, &tunnel_home_device(2)));
    inc.insert_entry(&device_entry(&cfg, d));
    assert_eq!(inc.blocked, m.blocked);
    // Unblocking restores exactly the state before.
    inv.apply(
        &Event::Block {
            mac: mac(2),
            blocked: false,
        },
        3,
    );
    assert_eq!(desired_membership(&cfg, &inv), before);
}

/// Device `n` of [`tunnel_home`] with the IPv6 address the block test adds.
fn tunnel_home_device(n: u8) -> Device {
    let mut inv = tunnel_home();
    inv.apply(
        &Event::ManualAdd {
            mac: mac(n),
            ip: Some(ip("fd00:1::12")),
        },
        1,
    );
    inv.get(&mac(n)).expect("device").clone()
}

/// Rules that ask only about the MAC: the only kind that can hold for a device
/// without evidence and without a vendor.
const MAC_ONLY_RULES: &str = r#"
[[classify]]
id = "test-private-mac"
class = "phone"
zone = "guest"
confidence = "high"
source = "test"
match = { randomized_mac = true }

[[classify]]
id = "test-global-mac"
class = "desktop"
confidence = "low"
source = "test"
match = { randomized_mac = false }
"#;

#[test]
fn the_assessor_gives_exactly_zone_for_and_classification() {
    let pins = "[[devices]]\nmac = \"02:00:00:00:00:07\"\nzone = \"trusted\"\n\n[segment_zones]\niot = \"iot\"\n";
    let plain = config_with(MAIN, &[("pins.toml", pins)]);
    let mac_only = config_with(MAIN, &[("pins.toml", pins), ("60-mac.toml", MAC_ONLY_RULES)]);
    // A globally administered MAC whose prefix names no vendor.
    let unregistered = (0..=255u8)
        .map(|b| MacAddr([0x00, 0x00, b, 0xab, 0xcd, 0xef]))
        .find(|m| crate::discovery::oui::lookup(m).is_none())
        .expect("an unregistered prefix");
    let macs = [
        mac(1),                               // randomised
        mac(7),                               // randomised, pinned to trusted
        MacAddr([0x2c, 0xaa, 0x8e, 0, 0, 1]), // Wyze Labs (a vendor-only rule)
        MacAddr([0xf4, 0xf5, 0xd8, 0, 0, 1]), // Google
        unregistered,
    ];
    let cast = crate::classify::Evidence {
        mdns_services: ["_googlecast._tcp".to_string()].into(),
        txt: [("md".to_string(), "Chromecast".to_string())].into(),
        ..Default::default()
    };
    let named = crate::classify::Evidence {
        hostname: Some("cam".into()),
        ..Default::default()
    };
    let mut checked = 0;
    for cfg in [&plain, &mac_only] {
        let assessor = Assessor::new(cfg);
        for m in macs {
            for ev in [crate::classify::Evidence::default(), cast.clone(), named.clone()] {
                for addr in ["10.0.1.50", "10.0.2.50"] {
                    for user_zone in [None, Some(zid("guest")), Some(zid("gone"))] {
                        let mut d = device_with(m, addr, ev.clone());
                        d.user_zone = user_zone;
                        assert_eq!(
                            assessor.assess(&d),
                            (zone_for(cfg, &d), classification(cfg, &d)),
                            "{m} {addr} {:?} {ev:?}",
                            d.user_zone
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 5 * 3 * 2 * 3);
    // The MAC-only rules do classify evidence-free devices (so the shortcut has
    // something to get right), while the zone stays the fallback as before.
    let d = device_with(mac(1), "10.0.1.50", crate::classify::Evidence::default());
    let (zone, class) = Assessor::new(&mac_only).assess(&d);
    assert_eq!(class.map(|c| c.rule), Some("test-private-mac".to_string()));
    assert_eq!(zone.reason, ZoneReason::Unknown);
    let d = device_with(unregistered, "10.0.1.50", crate::classify::Evidence::default());
    let (_, class) = Assessor::new(&mac_only).assess(&d);
    assert_eq!(class.map(|c| c.rule), Some("test-global-mac".to_string()));
    let (_, class) = Assessor::new(&plain).assess(&d);
    assert_eq!(class, None);
}

#[test]
fn zone_reason_as_str_is_its_serialised_name() {
    for r in [
        ZoneReason::UserChoice,
        ZoneReason::PolicyOverride,
        ZoneReason::Classified,
        ZoneReason::SegmentDefault,
        ZoneReason::Unknown,
    ] {
        assert_eq!(
            serde_json::to_value(r).expect("json"),
            serde_json::Value::from(r.as_str())
        );
    }
}
