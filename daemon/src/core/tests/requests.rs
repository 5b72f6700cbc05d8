//! The homeowner's requests: approve, rename, block, tunnel choices, the zones
//! list, acknowledging alerts; and old alerts' prune.

use std::net::IpAddr;

use super::{applied, done, evidence, home, mac, refused, stored, stored_macs, view, zone, Harness};
use crate::alerts::{Alert, AlertKind};
use crate::control::{Request, Response};
use crate::inventory::Event;
use crate::testutil::default_config;

#[test]
fn approve_uses_the_named_zone_or_the_policy_default_and_wins() {
    let mut config = default_config();
    config.policy.approved_zone = Some(zone("trusted"));
    let mut h = Harness::new(config);
    h.state.reconcile().expect("start");
    let (a, b) = (mac(41), mac(42));
    for m in [a, b] {
        h.state.observe(
            Event::Evidence {
                mac: m,
                evidence: evidence("x", &[1]),
            },
            1,
        );
    }
    let r = h.state.handle(Request::Approve { mac: a, zone: None }, 2);
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    let r = h.state.handle(
        Request::Approve {
            mac: b,
            zone: Some(zone("iot")),
        },
        2,
    );
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    let m = &h.state.enforcer.applied().expect("applied").membership;
    assert!(m.zones[&zone("trusted")].macs.contains(&a));
    assert!(m.zones[&zone("iot")].macs.contains(&b));
    h.state.config.policy.approved_zone = None;
    let r = h.state.handle(
        Request::Approve {
            mac: mac(43),
            zone: None,
        },
        3,
    );
    assert!(matches!(r, Response::Error { .. }), "no zone to approve into: {r:?}");
}

#[test]
fn rename_checks_the_name_persists_it_and_touches_no_rule() {
    let mut h = home(default_config());
    let deltas = h.state.enforcer.stats().delta_applies;
    let msg = refused(h.state.handle(
        Request::Rename {
            mac: mac(9),
            name: Some("x".into()),
        },
        2,
    ));
    assert!(msg.contains("no device"), "{msg}");
    let r = h.state.handle(
        Request::Rename {
            mac: mac(1),
            name: Some("  Küche <TV>  ".into()),
        },
        2,
    );
    assert!(done(r).contains("Küche <TV>"));
    assert_eq!(view(&h, mac(1)).name.as_deref(), Some("Küche <TV>"), "trimmed");
    assert_eq!(stored(&h, mac(1)).name.as_deref(), Some("Küche <TV>"));
    for bad in ["a\nb", "a\u{202e}b", &"x".repeat(crate::control::MAX_DEVICE_NAME + 1)] {
        refused(h.state.handle(
            Request::Rename {
                mac: mac(1),
                name: Some(bad.to_string()),
            },
            3,
        ));
    }
    assert_eq!(
        view(&h, mac(1)).name.as_deref(),
        Some("Küche <TV>"),
        "refusals change nothing"
    );
    done(h.state.handle(
        Request::Rename {
            mac: mac(1),
            name: Some("   ".into()),
        },
        4,
    ));
    assert_eq!(view(&h, mac(1)).name, None, "blank forgets");
    assert_eq!(stored(&h, mac(1)).name, None);
    assert_eq!(h.state.enforcer.stats().delta_applies, deltas, "a name is not enforced");
}

#[test]
fn block_is_a_delta_cuts_the_devices_connections_and_unblock_restores_the_zone() {
    let mut h = home(default_config());
    let before = applied(&h).clone();
    let msg = done(h.state.handle(
        Request::Block {
            mac: mac(2),
            blocked: true,
        },
        2,
    ));
    assert!(msg.contains("blocked"), "{msg}");
    assert_eq!(h.state.enforcer.stats().full_applies, 1, "no structural change");
    let m = applied(&h);
    assert_eq!(m, &h.full_membership(), "incremental == full");
    assert_eq!(m.zones, before.zones, "still in its zone");
    assert_eq!(m.blocked.macs, [mac(2)].into());
    assert_eq!(m.blocked.v4, ["10.0.2.20".parse().expect("v4")].into());
    assert_eq!(
        *h.cut.0.lock().expect("lock"),
        vec!["10.0.2.20".parse::<IpAddr>().expect("ip")],
        "only the blocked device's connections are cut"
    );
    assert!(view(&h, mac(2)).blocked && !view(&h, mac(1)).blocked);
    assert!(stored(&h, mac(2)).blocked, "persisted");
    // Blocking again changes nothing.
    let deltas = h.state.enforcer.stats().delta_applies;
    done(h.state.handle(
        Request::Block {
            mac: mac(2),
            blocked: true,
        },
        3,
    ));
    assert_eq!(h.state.enforcer.stats().delta_applies, deltas);
    done(h.state.handle(
        Request::Block {
            mac: mac(2),
            blocked: false,
        },
        4,
    ));
    assert_eq!(applied(&h), &before, "back to its zone's access, nothing else");
    assert!(!view(&h, mac(2)).blocked && !stored(&h, mac(2)).blocked);
    assert_eq!(h.state.enforcer.stats().full_applies, 1);
    // A decision about a MAC not seen yet is kept for when it shows up.
    done(h.state.handle(
        Request::Block {
            mac: mac(7),
            blocked: true,
        },
        5,
    ));
    assert!(applied(&h).blocked.macs.contains(&mac(7)));
}

#[test]
fn forgetting_a_device_takes_it_out_of_the_sets_the_store_and_the_snapshot() {
    let mut h = home(default_config());
    h.state.take_touched();
    let msg = refused(h.state.handle(Request::Forget { mac: mac(9) }, 2));
    assert!(msg.contains("no device"), "{msg}");
    done(h.state.handle(
        Request::Block {
            mac: mac(2),
            blocked: true,
        },
        2,
    ));
    h.state.take_touched();
    let msg = done(h.state.handle(Request::Forget { mac: mac(2) }, 3));
    assert!(msg.contains("forgotten"), "{msg}");
    assert!(!h.state.knows(&mac(2)));
    let m = applied(&h);
    assert_eq!(m, &h.full_membership(), "incremental == full");
    assert!(m.blocked.macs.is_empty(), "its block went with it");
    assert!(!m.zones.values().any(|z| z.macs.contains(&mac(2))), "in no zone's set");
    assert!(!stored_macs(&h).contains(&mac(2)), "gone from the store");
    assert!(
        matches!(h.state.take_touched(), crate::inventory::Touched::Some(t) if t.contains(&mac(2))),
        "services are told (the snapshot patch removes it)"
    );
    assert_eq!(h.state.device_snapshot(&mac(2)), None);
    // If it shows up again, it is a new device.
    h.state.apply_event(
        &Event::Address {
            mac: mac(2),
            ip: "10.0.2.20".parse().expect("ip"),
        },
        4,
    );
    let again = view(&h, mac(2));
    assert!(!again.blocked && again.first_seen == 4, "{again:?}");
}

#[test]
fn a_tunnel_choice_needs_a_tunnel_to_go_through() {
    let mut h = home(default_config());
    let msg = refused(h.state.handle(
        Request::DeviceTunnel {
            mac: mac(1),
            route: Some(true),
        },
        2,
    ));
    assert!(msg.contains("no tunnel is configured"), "{msg}");
    let msg = done(h.state.handle(
        Request::DeviceTunnel {
            mac: mac(1),
            route: Some(false),
        },
        2,
    ));
    assert!(msg.contains("kept for when a tunnel is configured"), "{msg}");
    let v = view(&h, mac(1));
    assert_eq!((v.tunnel_choice, v.tunnel_routed), (Some(false), false));
}

#[test]
fn tunnel_choices_are_set_moves_that_cut_only_that_device() {
    let mut h = home(crate::testutil::tunnel_config());
    assert!(view(&h, mac(2)).tunnel_routed, "iot is a tunnel zone");
    assert!(!view(&h, mac(1)).tunnel_routed);
    let full = h.state.enforcer.stats().full_applies;
    done(h.state.handle(
        Request::DeviceTunnel {
            mac: mac(1),
            route: Some(true),
        },
        2,
    ));
    assert_eq!(
        h.state.enforcer.stats().full_applies,
        full,
        "a delta, not a table replace"
    );
    let m = applied(&h);
    assert_eq!(m, &h.full_membership());
    assert!(m.tunnel_devices.contains(&mac(1)) && !m.tunnel_exclude.contains(&mac(1)));
    assert_eq!(
        *h.cut.0.lock().expect("lock"),
        vec!["10.0.1.10".parse::<IpAddr>().expect("ip")],
        "the rerouted device's connections only"
    );
    let v = view(&h, mac(1));
    assert_eq!((v.tunnel_choice, v.tunnel_routed), (Some(true), true));
    assert_eq!(stored(&h, mac(1)).tunnel_choice, Some(true));

    done(h.state.handle(
        Request::DeviceTunnel {
            mac: mac(2),
            route: Some(false),
        },
        3,
    ));
    assert!(applied(&h).tunnel_exclude.contains(&mac(2)));
    let v = view(&h, mac(2));
    assert_eq!(
        (v.tunnel_choice, v.tunnel_routed),
        (Some(false), false),
        "never beats the zone"
    );

    for m in [mac(1), mac(2)] {
        done(h.state.handle(Request::DeviceTunnel { mac: m, route: None }, 4));
    }
    let m = applied(&h);
    assert!(!m.tunnel_devices.contains(&mac(1)) && !m.tunnel_exclude.contains(&mac(2)));
    assert_eq!(m.tunnel_devices, [mac(9)].into(), "the policy's own device stays");
    assert!(view(&h, mac(2)).tunnel_routed && !view(&h, mac(1)).tunnel_routed);
    assert_eq!(h.state.enforcer.stats().full_applies, full);
}

#[test]
fn zones_list_the_policy_with_members_as_enforced() {
    let h = home(crate::testutil::tunnel_config());
    let Response::Zones { zones } = ({
        let mut h = h;
        h.state.handle(Request::Zones, 2)
    }) else {
        panic!("zones")
    };
    let ids: Vec<&str> = zones.iter().map(|z| z.id.as_str()).collect();
    assert_eq!(ids, ["guest", "iot", "quarantine", "trusted"]);
    let by_id = |id: &str| zones.iter().find(|z| z.id.as_str() == id).expect("zone");
    assert_eq!(by_id("iot").members, [mac(2)]);
    assert_eq!(by_id("trusted").members, [mac(1)]);
    assert!(by_id("iot").tunnel && !by_id("trusted").tunnel);
    assert!(by_id("quarantine").is_unknown_zone && !by_id("quarantine").internet);
    assert!(by_id("trusted").internet && by_id("trusted").router_services.iter().any(|s| s == "dns"));
    assert!(!by_id("iot").description.is_empty());
}

#[test]
fn acknowledging_answers_the_count_as_a_number() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    for n in 0..3 {
        h.state.observe(
            Event::Address {
                mac: mac(60 + n),
                ip: format!("10.0.1.{}", 60 + n).parse().expect("ip"),
            },
            10,
        );
    }
    h.state.handle_timeout(10 + crate::core::discovery::JOIN_HOLD_SECS);
    let alerts = h.state.store.alerts(10).expect("alerts");
    assert_eq!(alerts.len(), 3);
    let generation = h.state.alerts_changed;
    let acked = h.state.handle(
        Request::AckAlerts {
            ids: Some(vec![alerts[0].id]),
        },
        11,
    );
    assert_eq!(acked, Response::Acknowledged { count: 1 });
    assert!(h.state.alerts_changed > generation, "live update");
    let acked = h.state.handle(Request::AckAlerts { ids: None }, 12);
    assert_eq!(acked, Response::Acknowledged { count: 2 });
    let acked = h.state.handle(Request::AckAlerts { ids: None }, 13);
    assert_eq!(acked, Response::Acknowledged { count: 0 });
    let Response::Alerts { alerts } = h.state.handle(Request::Alerts { limit: 10 }, 14) else {
        panic!("alerts")
    };
    assert!(alerts.iter().all(|a| a.acknowledged));
}

#[test]
fn old_alerts_leave_with_the_hourly_prune() {
    let mut h = Harness::new(default_config());
    let day = 24 * 3600;
    h.state.raise(Alert::new(0, AlertKind::TunnelUp, None, "old".into()));
    h.state.handle_timeout(30 * day);
    assert_eq!(h.state.store.alerts(10).expect("a").len(), 1, "30 days are kept");
    h.state.handle_timeout(30 * day + 10);
    assert_eq!(h.state.store.alerts(10).expect("a").len(), 1, "looked at hourly");
    h.state.handle_timeout(30 * day + 3600);
    assert!(h.state.store.alerts(10).expect("a").is_empty());
}

#[test]
fn a_watched_device_going_offline_and_back_is_told_and_flapping_is_counted() {
    let mut h = home(default_config());
    let (cam, other) = (mac(51), mac(52));
    for m in [cam, other] {
        h.state.observe(
            Event::Address {
                mac: m,
                ip: IpAddr::from([10, 0, 1, m.0[5]]),
            },
            1000,
        );
    }
    h.state.handle_timeout(1000); // the first pass only learns
    done(h.state.handle(
        Request::Watch {
            mac: cam,
            watched: true,
        },
        1001,
    ));
    assert!(h.state.snapshot().devices[&cam].watched);
    refused(h.state.handle(
        Request::Watch {
            mac: mac(99),
            watched: true,
        },
        1001,
    ));
    let told = |h: &Harness, kind: AlertKind| -> Vec<Alert> {
        h.state
            .store
            .alerts(50)
            .expect("alerts")
            .into_iter()
            .filter(|a| a.kind == kind)
            .collect()
    };
    let silent = 1000 + crate::core::ONLINE_SECS;
    h.state.handle_timeout(silent);
    let offline = told(&h, AlertKind::DeviceOffline);
    assert_eq!(offline.len(), 1, "only the watched one: {offline:?}");
    assert_eq!(offline[0].mac, Some(cam));
    assert!(offline[0].message.contains("went offline"), "{}", offline[0].message);
    assert!(!h.state.snapshot().devices[&cam].online);
    // Back, then gone again within the hour: one alert of each, counted.
    h.state.observe(
        Event::Address {
            mac: cam,
            ip: IpAddr::from([10, 0, 1, 51]),
        },
        silent + 10,
    );
    h.state.handle_timeout(silent + 10);
    assert_eq!(told(&h, AlertKind::DeviceBack).len(), 1);
    h.state.handle_timeout(silent + 10 + crate::core::ONLINE_SECS);
    let offline = told(&h, AlertKind::DeviceOffline);
    assert_eq!((offline.len(), offline[0].count), (1, 2), "{offline:?}");
    // Unwatched: nothing more.
    done(h.state.handle(
        Request::Watch {
            mac: cam,
            watched: false,
        },
        silent + 700,
    ));
    h.state.observe(
        Event::Address {
            mac: cam,
            ip: IpAddr::from([10, 0, 1, 51]),
        },
        silent + 800,
    );
    h.state.handle_timeout(silent + 800);
    assert_eq!(told(&h, AlertKind::DeviceBack)[0].count, 1);
}

/// The store's disk fills up (SQLite's own "database or disk is full",
/// through a page cap): a decision is still in force and answered as such,
/// the homeowner is told once, discovery goes on, and everything is written
/// when there is room again.
#[test]
fn a_full_disk_loses_no_decision_and_everything_is_written_when_room_returns() {
    let mut h = home(default_config());
    let pages = h.state.store.page_count();
    h.state.store.cap_pages(Some(pages));
    // New devices until the capped file is full: the one that does not fit
    // is known and in force all the same, and the answer says so.
    let mut refused = None;
    for i in 0..2000u16 {
        let m = crate::config::MacAddr([2, 0, 0, 1, (i >> 8) as u8, i as u8]);
        let msg = done(h.state.handle(Request::AddDevice { mac: m, ip: None }, 2));
        if msg.contains("not saved yet") {
            refused = Some(m);
            break;
        }
    }
    let newcomer = refused.expect("the capped store never filled up");
    assert!(h.state.knows(&newcomer) && h.state.store.is_unsaved(&newcomer));
    // A name that makes a row grow cannot be written either; it is in force.
    let name = "Kitchen speaker, the one by the window, that plays the radio".to_string();
    let msg = done(h.state.handle(
        Request::Rename {
            mac: mac(2),
            name: Some(name.clone()),
        },
        2,
    ));
    assert!(msg.contains("not saved yet"), "{msg}");
    assert_eq!(view(&h, mac(2)).name.as_deref(), Some(name.as_str()), "in force");
    // Another decision: in force whether or not it fits in place.
    done(h.state.handle(
        Request::Block {
            mac: mac(1),
            blocked: true,
        },
        3,
    ));
    assert!(applied(&h).blocked.macs.contains(&mac(1)), "in force");
    let Response::Alerts { alerts } = h.state.handle(Request::Alerts { limit: 50 }, 4) else {
        panic!("alerts");
    };
    let told: Vec<_> = alerts.iter().filter(|a| a.kind == AlertKind::StoreFailed).collect();
    assert_eq!(told.len(), 1, "told once, counted after: {told:?}");
    assert!(told[0].message.contains("full"), "{}", told[0].message);
    // Discovery goes on: a new address is enforced though it may not be saved.
    h.state.apply_event(
        &Event::Address {
            mac: mac(3),
            ip: "10.0.1.30".parse().expect("ip"),
        },
        5,
    );
    assert!(h.state.knows(&mac(3)));
    // Room again: the timer writes everything, as it is now.
    h.state.store.cap_pages(None);
    h.state.handle_timeout(6);
    assert_eq!(h.state.store.unsaved_count(), 0);
    assert_eq!(
        stored(&h, mac(2)).name.as_deref(),
        Some(name.as_str()),
        "the name reached the disk"
    );
    assert!(stored(&h, mac(1)).blocked);
    let macs = stored_macs(&h);
    assert!(macs.contains(&mac(3)) && macs.contains(&newcomer));
}
