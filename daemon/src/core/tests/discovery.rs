//! Discovery's facts in: a discovered device enforced and alerted, identity
//! suggestions and linking, neighbour sightings, the tracking limit, the
//! new-device alert.

use std::net::IpAddr;

use super::{applied, evidence, mac, stored_macs, zone, Harness};
use crate::alerts::AlertKind;
use crate::config::MacAddr;
use crate::control::{Request, Response};
use crate::inventory::{Change, Event};
use crate::testutil::{config_with, default_config, MAIN};

#[test]
fn a_discovered_device_is_enforced_at_once_and_raises_one_alert() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let m = mac(40);
    let ev = Event::Evidence {
        mac: m,
        evidence: evidence("<img src=x>\u{202e}", &[1, 3, 6]),
    };
    assert_eq!(h.state.observe(ev.clone(), 10), Change::Facts);
    let ip: IpAddr = "10.0.1.140".parse().expect("ip");
    assert_eq!(h.state.observe(Event::Address { mac: m, ip }, 11), Change::Facts);
    assert_eq!(
        h.state.observe(ev, 12),
        Change::SeenOnly,
        "repeat evidence is only a sighting"
    );
    let applied = h.state.enforcer.applied().expect("applied");
    assert_eq!(applied.membership, h.full_membership(), "incremental == full");
    let q = &applied.membership.zones[&zone("quarantine")];
    assert!(q.macs.contains(&m) && q.v4.contains(&"10.0.1.140".parse().expect("ip")));
    // Held while a rule may still recognise it, then said once.
    assert!(h.state.store.alerts(10).expect("alerts").is_empty());
    h.state.handle_timeout(11 + crate::core::discovery::JOIN_HOLD_SECS);
    let alerts = h.state.store.alerts(10).expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, crate::alerts::AlertKind::NewDeviceQuarantined);
    assert_eq!(h.state.enforcer.stats().full_applies, 1);
    // The hostile hostname is stored as data.
    let d = h.state.inventory.get(&m).expect("device");
    assert_eq!(d.evidence.hostname.as_deref(), Some("<img src=x>\u{202e}"));
}

#[test]
fn a_randomised_mac_like_a_known_device_is_only_suggested_until_linked() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let known = MacAddr([0x3c, 0x22, 0xfb, 1, 2, 3]);
    let fresh = MacAddr([0x5a, 0, 0, 0, 0, 1]);
    h.state.observe(
        Event::Evidence {
            mac: known,
            evidence: evidence("annas-phone", &[1, 121, 3, 6]),
        },
        1,
    );
    assert!(matches!(
        h.state.handle(
            Request::SetZone {
                mac: known,
                zone: zone("trusted")
            },
            2
        ),
        Response::Done { .. }
    ));
    h.state.observe(
        Event::Evidence {
            mac: fresh,
            evidence: evidence("annas-phone", &[1, 121, 3, 6]),
        },
        3,
    );
    let m = &h.state.enforcer.applied().expect("applied").membership;
    assert!(
        m.zones[&zone("quarantine")].macs.contains(&fresh),
        "never widened silently"
    );
    let s = h.state.store.suggestions().expect("suggestions");
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].new_mac, s[0].known_mac, s[0].accepted), (fresh, known, false));
    // Seeing it again does not suggest twice.
    h.state.observe(
        Event::Address {
            mac: fresh,
            ip: "10.0.1.150".parse().expect("ip"),
        },
        4,
    );
    let kinds: Vec<_> = h
        .state
        .store
        .alerts(10)
        .expect("a")
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == crate::alerts::AlertKind::IdentitySuggestion)
            .count(),
        1
    );
    let r = h.state.handle(
        Request::Link {
            new_mac: known,
            known_mac: fresh,
        },
        5,
    );
    assert!(matches!(r, Response::Error { .. }), "only suggested pairs link: {r:?}");
    let r = h.state.handle(
        Request::Link {
            new_mac: fresh,
            known_mac: known,
        },
        5,
    );
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    let m = &h.state.enforcer.applied().expect("applied").membership;
    assert!(m.zones[&zone("trusted")].macs.contains(&fresh));
    // One device: the old MAC is retired (inventory, sets, database, its
    // suggestion), the new one has its history.
    assert!(h.state.inventory.get(&known).is_none(), "the old MAC is retired");
    assert!(
        !m.zones.values().any(|z| z.macs.contains(&known)),
        "the old MAC left the sets"
    );
    assert_eq!(h.full_membership(), *m, "incremental == full");
    assert_eq!(h.state.inventory.get(&fresh).map(|d| d.first_seen), Some(1));
    assert!(h.state.store.suggestions().expect("s").is_empty());
    let stored = stored_macs(&h);
    assert!(stored.contains(&fresh) && !stored.contains(&known), "{stored:?}");
}

#[test]
fn linking_carries_every_decision_of_the_known_device_over() {
    let mut h = Harness::new(crate::testutil::tunnel_config());
    h.state.reconcile().expect("start");
    let known = MacAddr([0x3c, 0x22, 0xfb, 1, 2, 4]);
    let fresh = MacAddr([0x5a, 0, 0, 0, 0, 2]);
    h.state.observe(
        Event::Evidence {
            mac: known,
            evidence: evidence("kids-tablet", &[1, 121, 3, 6]),
        },
        1,
    );
    for req in [
        Request::Rename {
            mac: known,
            name: Some("Kids' tablet".into()),
        },
        Request::Watch {
            mac: known,
            watched: true,
        },
        Request::DeviceTunnel {
            mac: known,
            route: Some(true),
        },
        Request::SetZone {
            mac: known,
            zone: zone("iot"),
        },
    ] {
        let r = h.state.handle(req, 2);
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
    }
    h.state.observe(
        Event::Evidence {
            mac: fresh,
            evidence: evidence("kids-tablet", &[1, 121, 3, 6]),
        },
        50,
    );
    let r = h.state.handle(
        Request::Link {
            new_mac: fresh,
            known_mac: known,
        },
        60,
    );
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    let d = h.state.inventory.get(&fresh).expect("the device");
    assert_eq!(d.name.as_deref(), Some("Kids' tablet"));
    assert_eq!(d.user_zone, Some(zone("iot")));
    assert!(d.watched);
    assert_eq!(d.tunnel_choice, Some(true));
    assert_eq!(d.first_seen, 1);
    assert_eq!(h.state.snapshot().devices.len(), 1);
}

#[test]
fn neighbour_sightings_add_addresses_without_stealing_them() {
    use crate::discovery::neigh::NeighbourUpdate;
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let (a, b) = (mac(50), mac(51));
    let v6: IpAddr = "fd00:1::1234".parse().expect("ip");
    let present = |mac, ip| NeighbourUpdate::Present { ifindex: 3, mac, ip };
    assert_eq!(h.state.neighbour("br-lan", present(a, v6), 1), Change::Facts);
    assert_eq!(
        h.state.neighbour("br-lan", present(b, v6), 2),
        Change::None,
        "no stealing"
    );
    let other: IpAddr = "fd00:2::9".parse().expect("ip");
    assert_eq!(
        h.state.neighbour("br-lan", present(b, other), 2),
        Change::None,
        "not this link's subnet"
    );
    let m = &h.state.enforcer.applied().expect("applied").membership;
    assert!(m.zones[&zone("quarantine")]
        .v6
        .contains(&"fd00:1::1234".parse().expect("v6")));
    let gone = NeighbourUpdate::Gone {
        ifindex: 3,
        mac: None,
        ip: v6,
    };
    assert_eq!(h.state.neighbour("br-lan", gone, 3), Change::Facts);
    let m = &h.state.enforcer.applied().expect("applied").membership;
    assert!(m.zones[&zone("quarantine")].v6.is_empty());
    assert_eq!(m, &h.full_membership());
}

#[test]
fn an_address_taken_over_leaves_the_former_holder_on_disk_too() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let (old, new) = (mac(60), mac(61));
    let ip: IpAddr = "10.0.1.60".parse().expect("ip");
    h.state.observe(Event::Address { mac: old, ip }, 1);
    h.state.observe(Event::Address { mac: new, ip }, 2);
    // What a restart loads: the address only with its new holder.
    let stored = h.state.store.load_devices().expect("load");
    let holders: Vec<MacAddr> = stored
        .iter()
        .filter(|d| d.addresses.contains(&ip))
        .map(|d| d.mac)
        .collect();
    assert_eq!(holders, [new]);
    let m = &h.state.enforcer.applied().expect("applied").membership;
    assert_eq!(m, &h.full_membership());
}

#[test]
fn discovery_stops_tracking_new_devices_at_the_limit_and_fails_closed() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    h.state.discovery.max_tracked = 3;
    for n in 0..5 {
        h.state.observe(
            Event::Evidence {
                mac: mac(100 + n),
                evidence: evidence("flood", &[1]),
            },
            1,
        );
    }
    assert_eq!(h.state.inventory.len(), 3);
    assert_eq!(h.state.discovery.untracked_new_devices(), 2);
    // Known devices still update; the homeowner can still add by hand.
    assert_eq!(
        h.state.observe(
            Event::Address {
                mac: mac(100),
                ip: "10.0.1.160".parse().expect("ip")
            },
            2
        ),
        Change::Facts
    );
}

#[test]
fn a_new_device_gets_one_alert_once_its_address_says_where_it_joined() {
    let config = config_with(MAIN, &[("seg.toml", "[segment_zones]\niot = \"iot\"\n")]);
    let mut h = Harness::new(config);
    h.state.reconcile().expect("start");
    let m = mac(70);
    // The DHCP request's evidence comes first: no segment yet, no alert yet.
    h.state.observe(
        Event::Evidence {
            mac: m,
            evidence: evidence("plug", &[1, 3]),
        },
        1,
    );
    assert!(h.state.store.alerts(10).expect("a").is_empty());
    h.state.observe(
        Event::Address {
            mac: m,
            ip: "10.0.2.70".parse().expect("ip"),
        },
        2,
    );
    h.state.observe(
        Event::Address {
            mac: m,
            ip: "10.0.2.71".parse().expect("ip"),
        },
        3,
    );
    assert!(h.state.store.alerts(10).expect("a").is_empty(), "held for a rule");
    h.state.handle_timeout(2 + crate::core::discovery::JOIN_HOLD_SECS);
    let alerts = h.state.store.alerts(10).expect("a");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::NewDevice);
    assert_eq!(alerts[0].mac, Some(m));
    assert_eq!(alerts[0].at, 2, "stamped when it joined");
    assert_eq!(
        alerts[0].message, "plug joined and was placed in iot (the zone of the network it joined)",
        "named by its host name, no MAC or command in the sentence"
    );

    // On a segment without a zone of its own: quarantined, one alert.
    let q = mac(71);
    h.state.observe(
        Event::Address {
            mac: q,
            ip: "10.0.1.71".parse().expect("ip"),
        },
        4,
    );
    h.state.handle_timeout(4 + crate::core::discovery::JOIN_HOLD_SECS);
    let kinds: Vec<AlertKind> = h.state.store.alerts(10).expect("a").iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [AlertKind::NewDeviceQuarantined, AlertKind::NewDevice]);
}

#[test]
fn a_dhcp_message_in_another_devices_name_changes_nothing_and_is_said_once() {
    use crate::discovery::dhcp::CaptureError;
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let (victim, sender) = (mac(41), mac(42));
    h.state.observe(
        Event::Evidence {
            mac: victim,
            evidence: evidence("HS105", &[1, 3, 6]),
        },
        1,
    );
    let devices_before = h.state.snapshot().devices.len();
    let before = h.state.inventory.get(&victim).cloned();
    // Served (the runtime's check) and observed (the capture's) alike.
    h.state.dhcp_spoofed(sender, victim, 10);
    h.state.captured(
        Err(CaptureError::Spoofed {
            sender,
            claimed: victim,
        }),
        11,
    );
    h.state.dhcp_spoofed(sender, mac(43), 12);
    assert_eq!(
        h.state.inventory.get(&victim).cloned(),
        before,
        "the victim is untouched"
    );
    assert_eq!(
        h.state.snapshot().devices.len(),
        devices_before,
        "no device for the sender or a claimed MAC"
    );
    let spoofing: Vec<_> = h
        .state
        .store
        .alerts(10)
        .expect("alerts")
        .into_iter()
        .filter(|a| a.kind == AlertKind::Spoofing)
        .collect();
    assert_eq!(spoofing.len(), 1, "one alert per sender: {spoofing:?}");
    assert_eq!((spoofing[0].mac, spoofing[0].count), (Some(sender), 3));
    assert!(
        spoofing[0]
            .message
            .starts_with("02:00:00:00:00:2a sent a DHCP message in the name of"),
        "{}",
        spoofing[0].message
    );
    let Response::Status(status) = h.state.handle(Request::Status, 13) else {
        panic!("status")
    };
    assert_eq!(status.dhcp_spoofed, 3);
}

#[test]
fn stale_private_macs_nobody_decided_about_are_forgotten_with_one_summary() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let day = 86_400;
    let private_old = MacAddr([0x5a, 0, 0, 0, 0, 10]);
    let private_old_named = MacAddr([0x5a, 0, 0, 0, 0, 11]);
    let private_recent = MacAddr([0x5a, 0, 0, 0, 0, 12]);
    let vendor_old = MacAddr([0x3c, 0x22, 0xfb, 0, 0, 13]);
    for m in [private_old, private_old_named, vendor_old] {
        h.state.observe(
            Event::Evidence {
                mac: m,
                evidence: evidence("someones-phone", &[1, 3, 6]),
            },
            1,
        );
    }
    assert!(matches!(
        h.state.handle(
            Request::Rename {
                mac: private_old_named,
                name: Some("Grandma's phone".into())
            },
            2
        ),
        Response::Done { .. }
    ));
    h.state.observe(
        Event::Evidence {
            mac: private_recent,
            evidence: evidence("someones-phone", &[1, 3, 6]),
        },
        20 * day,
    );
    // Not yet: 30 days have not passed for anyone.
    assert_eq!(h.state.forget_stale_private_macs(30 * day), 0);
    assert_eq!(h.state.forget_stale_private_macs(31 * day + 2), 1);
    assert!(h.state.inventory.get(&private_old).is_none(), "forgotten");
    for kept in [private_old_named, private_recent, vendor_old] {
        assert!(h.state.inventory.get(&kept).is_some(), "{kept} kept");
    }
    let m = &h.state.enforcer.applied().expect("applied").membership;
    assert!(!m.zones.values().any(|z| z.macs.contains(&private_old)));
    assert_eq!(h.full_membership(), *m, "incremental == full");
    let summaries: Vec<_> = h
        .state
        .store
        .alerts(20)
        .expect("alerts")
        .into_iter()
        .filter(|a| a.kind == AlertKind::DevicesForgotten)
        .collect();
    assert_eq!(summaries.len(), 1);
    assert!(
        summaries[0].message.contains(&private_old.to_string()),
        "{}",
        summaries[0].message
    );

    // 0: never.
    let never = config_with(&format!("{MAIN}\n[devices]\nforget_private_after_days = 0\n"), &[]);
    let mut h = Harness::new(never);
    h.state.reconcile().expect("start");
    h.state.observe(
        Event::Evidence {
            mac: private_old,
            evidence: evidence("someones-phone", &[1, 3, 6]),
        },
        1,
    );
    assert_eq!(h.state.forget_stale_private_macs(1000 * day), 0);
}

/// A rule that recognises `_testcast._tcp` announcers as media devices for
/// the iot zone.
const CAST_RULE: &str = r#"
[[classify]]
id = "test-cast"
class = "media"
zone = "iot"
confidence = "high"
source = "test"
match = { mdns_service = ["_testcast._tcp"] }
"#;

fn casting(name: &str) -> Box<crate::classify::Evidence> {
    Box::new(crate::classify::Evidence {
        mdns_services: ["_testcast._tcp".to_string()].into(),
        mdns_names: [format!("{name}.local")].into(),
        ..Default::default()
    })
}

#[test]
fn joining_and_being_recognised_within_the_hold_is_one_alert_and_acting_settles_it() {
    let hold = crate::core::discovery::JOIN_HOLD_SECS;
    let config = config_with(MAIN, &[("cast.toml", CAST_RULE)]);
    let mut h = Harness::new(config);
    h.state.reconcile().expect("start");
    // The cast device leases (nothing says what it is), then announces itself
    // over mDNS a few seconds later: one alert, "joined and was placed".
    let tv = mac(80);
    h.state.observe(
        Event::Address {
            mac: tv,
            ip: "10.0.1.80".parse().expect("ip"),
        },
        100,
    );
    h.state.observe(
        Event::Evidence {
            mac: tv,
            evidence: casting("Den-TV"),
        },
        103,
    );
    h.state.handle_timeout(100 + hold);
    let alerts = h.state.store.alerts(10).expect("a");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::NewDevice);
    assert_eq!(alerts[0].facts.zone.as_deref(), Some("iot"));
    assert_eq!(alerts[0].facts.rule.as_deref(), Some("test-cast"));
    assert_eq!(
        alerts[0].message,
        "Den-TV joined and was placed in iot (recognised as a media device by rule test-cast)"
    );

    // A stranger is held, said once after the hold; recognised later, it is
    // a second event with its own alert.
    let late = mac(81);
    h.state.observe(
        Event::Address {
            mac: late,
            ip: "10.0.1.81".parse().expect("ip"),
        },
        200,
    );
    h.state.handle_timeout(200 + hold - 1);
    assert_eq!(h.state.store.alerts(10).expect("a").len(), 1, "still held");
    h.state.handle_timeout(200 + hold);
    let newest = &h.state.store.alerts(10).expect("a")[0];
    assert_eq!(
        (newest.kind, newest.mac, newest.acknowledged),
        (AlertKind::NewDeviceQuarantined, Some(late), false)
    );
    assert_eq!(
        newest.message,
        "02:00:00:00:00:51 joined and waits in quarantine until you approve it"
    );
    let held_id = newest.id;
    h.state.observe(
        Event::Evidence {
            mac: late,
            evidence: casting("Late-TV"),
        },
        300,
    );
    let newest = &h.state.store.alerts(10).expect("a")[0];
    assert_eq!(newest.kind, AlertKind::DeviceClassified);
    assert_eq!(
        newest.message,
        "Late-TV was recognised as a media device by rule test-cast and placed in iot"
    );
    // Read later, the held alert names the device as it is called now.
    let Response::Alerts { alerts } = h.state.handle(Request::Alerts { limit: 10 }, 301) else {
        panic!("alerts")
    };
    let held = alerts.iter().find(|a| a.id == held_id).expect("held alert");
    assert!(held.message.starts_with("Late-TV joined"), "{}", held.message);

    // Acting is acknowledging: the homeowner's zone choice settles the
    // device's placement alerts, and only its own.
    let unseen = |h: &Harness| {
        h.state
            .store
            .alerts(10)
            .expect("a")
            .iter()
            .filter(|a| !a.acknowledged)
            .map(|a| (a.mac, a.kind))
            .collect::<Vec<_>>()
    };
    assert_eq!(unseen(&h).len(), 3);
    let done = h.state.handle(
        Request::SetZone {
            mac: late,
            zone: zone("trusted"),
        },
        302,
    );
    assert!(matches!(done, Response::Done { .. }), "{done:?}");
    assert_eq!(unseen(&h), [(Some(tv), AlertKind::NewDevice)]);
}

#[test]
fn devices_are_bound_to_the_bridge_port_they_are_on() {
    use crate::config::PortName;
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let (known, later) = (mac(60), mac(61));
    let lan1 = PortName::new("lan1").expect("name");
    let lan2 = PortName::new("lan2").expect("name");
    let v4 = |n: u8| -> IpAddr { format!("10.0.1.{n}").parse().expect("ip") };
    h.state.observe(Event::Address { mac: known, ip: v4(60) }, 1);
    // Learned on a port: bound, as an element delta.
    h.state.bridge_port(3, "lan1", known, true);
    assert!(applied(&h).port_bindings.contains(&(known, lan1)));
    // A port the bridge table does not police says nothing.
    h.state.bridge_port(3, "wan0", known, true);
    assert!(applied(&h).port_bindings.contains(&(known, lan1)));
    // Forgotten on another port than its own: stale news, still bound.
    h.state.bridge_port(3, "lan2", known, false);
    assert!(applied(&h).port_bindings.contains(&(known, lan1)));
    // Forgotten on its port (aged out, link down): released.
    h.state.bridge_port(3, "lan1", known, false);
    assert!(applied(&h).port_bindings.is_empty());
    // The next port it shows up on binds it.
    h.state.bridge_port(3, "lan2", known, true);
    assert_eq!(
        applied(&h).port_bindings.iter().copied().collect::<Vec<_>>(),
        [(known, lan2)]
    );
    // A MAC Bulkhead does not know is remembered, not bound; once met, its
    // first entry carries the binding.
    h.state.bridge_port(3, "lan1", later, true);
    assert!(!applied(&h).bound_macs().contains(&later));
    h.state.observe(Event::Address { mac: later, ip: v4(61) }, 2);
    assert!(applied(&h).port_bindings.contains(&(later, lan1)));
    assert_eq!(applied(&h), &h.full_membership());
    assert_eq!(h.state.status().port_bound_devices, 2);
    // The tables read again (notifications were lost): what they no longer
    // hold was forgotten meanwhile, and is let go.
    h.state.bridge_ports_read(&[(3, "lan1".to_string(), later)]);
    assert_eq!(
        applied(&h).port_bindings.iter().copied().collect::<Vec<_>>(),
        [(later, lan1)]
    );
}

#[test]
fn a_device_on_wifi_may_come_from_any_radio_of_its_bridge() {
    use crate::config::PortName;
    let mut h = Harness::new(default_config());
    for radio in ["phy0-ap0", "phy1-ap0", "phy9-ap0"] {
        h.state.links.bridge_ports.insert(radio.into());
    }
    // Two radios of one bridge, one of another.
    h.state.links.wireless_ports = [("phy0-ap0".into(), 7), ("phy1-ap0".into(), 7), ("phy9-ap0".into(), 8)].into();
    h.state.reconcile().expect("start");
    let (phone, laptop) = (mac(70), mac(71));
    let name = |n: &str| PortName::new(n).expect("name");
    for (m, ip) in [(phone, "10.0.1.70"), (laptop, "10.0.1.71")] {
        h.state.observe(
            Event::Address {
                mac: m,
                ip: ip.parse().expect("ip"),
            },
            1,
        );
    }
    h.state.bridge_port(7, "phy0-ap0", phone, true);
    h.state.bridge_port(3, "lan1", laptop, true);
    let bindings = |h: &Harness, m: MacAddr| -> Vec<PortName> {
        applied(h)
            .port_bindings
            .iter()
            .filter(|(x, _)| *x == m)
            .map(|(_, p)| *p)
            .collect()
    };
    // Band steering moves the phone between the radios of its access point:
    // both are its ports; another bridge's radio and the wired ports are not.
    assert_eq!(bindings(&h, phone), [name("phy0-ap0"), name("phy1-ap0")]);
    assert_eq!(bindings(&h, laptop), [name("lan1")], "a wired port is its own");
    // A radio goes away: the phone may come from what is left.
    h.state.links.wireless_ports.remove("phy1-ap0");
    h.state.rebind_ports();
    assert_eq!(bindings(&h, phone), [name("phy0-ap0")]);
    assert_eq!(applied(&h), &h.full_membership());
}

#[test]
fn a_mac_on_two_bridges_is_bound_on_both_and_a_move_is_told() {
    use crate::config::PortName;
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let ap = mac(80);
    let name = |n: &str| PortName::new(n).expect("name");
    h.state.observe(
        Event::Address {
            mac: ap,
            ip: "10.0.1.80".parse().expect("ip"),
        },
        1,
    );
    // A trunked access point: its MAC on a port of each of two bridges.
    h.state.bridge_port(3, "lan1", ap, true);
    h.state.bridge_port(4, "lan2", ap, true);
    let bound = |h: &Harness| -> Vec<PortName> {
        applied(h)
            .port_bindings
            .iter()
            .filter(|(m, _)| *m == ap)
            .map(|(_, p)| *p)
            .collect()
    };
    assert_eq!(bound(&h), [name("lan1"), name("lan2")]);
    // Reading the tables again does not flip between the two.
    h.state
        .bridge_ports_read(&[(3, "lan1".into(), ap), (4, "lan2".into(), ap)]);
    assert_eq!(bound(&h), [name("lan1"), name("lan2")]);
    // Silent on bridge 3, forgotten there; it shows up on another port of
    // it: bound there, and the homeowner is told (moved, or its MAC taken).
    let spoofing = |h: &mut Harness| {
        let Response::Alerts { alerts } = h.state.handle(Request::Alerts { limit: 50 }, 2) else {
            panic!("alerts")
        };
        alerts
            .into_iter()
            .filter(|a| a.kind == AlertKind::Spoofing)
            .collect::<Vec<_>>()
    };
    h.state.bridge_port(3, "lan1", ap, false);
    assert_eq!(bound(&h), [name("lan2")]);
    h.state.bridge_port(3, "lan2", ap, true);
    let told = spoofing(&mut h);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].message.contains("port lan2") && told[0].message.contains("port lan1"),
        "{}",
        told[0].message
    );
    // Back where it was after being forgotten: nothing to tell.
    h.state.bridge_port(4, "lan2", ap, false);
    h.state.bridge_port(4, "lan2", ap, true);
    assert_eq!(spoofing(&mut h).len(), 1);
}

#[test]
fn invented_macs_never_crowd_a_known_device_out_of_the_book() {
    use crate::config::PortName;
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    for n in 0..crate::core::ports::MAX_LEARNED as u32 {
        let b = n.to_be_bytes();
        h.state
            .bridge_port(3, "lan1", MacAddr([0x02, 0xee, b[0], b[1], b[2], b[3]]), true);
    }
    assert_eq!(h.state.status().port_book_overflow, 0);
    h.state.bridge_port(3, "lan1", MacAddr([0x02, 0xef, 0, 0, 0, 1]), true);
    assert_eq!(h.state.status().port_book_overflow, 1, "an invented one is turned away");
    let known = mac(90);
    h.state.observe(
        Event::Address {
            mac: known,
            ip: "10.0.1.90".parse().expect("ip"),
        },
        1,
    );
    h.state.bridge_port(3, "lan2", known, true);
    assert!(applied(&h)
        .port_bindings
        .contains(&(known, PortName::new("lan2").expect("name"))));
    assert_eq!(h.state.status().port_book_overflow, 1);
}

#[test]
fn mdns_evidence_counts_only_for_the_device_that_sent_it() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let (laptop, plug, unknown) = (mac(60), mac(61), mac(62));
    h.state.observe(
        Event::Address {
            mac: laptop,
            ip: "10.0.1.160".parse().expect("ip"),
        },
        1,
    );
    h.state.observe(
        Event::Address {
            mac: plug,
            ip: "10.0.1.161".parse().expect("ip"),
        },
        1,
    );
    let has_cast = |h: &Harness, m: MacAddr| {
        h.state
            .inventory
            .get(&m)
            .is_some_and(|d| d.evidence.mdns_services.contains("_testcast._tcp"))
    };
    // The plug's response (whatever address or name it gives) is the plug's.
    assert!(h.state.mdns(plug, &casting("annas-laptop"), 2));
    assert!(has_cast(&h, plug) && !has_cast(&h, laptop));
    // A MAC no device has: nothing, no phantom device.
    assert!(!h.state.mdns(unknown, &casting("x"), 3));
    assert!(h.state.inventory.get(&unknown).is_none());
}
