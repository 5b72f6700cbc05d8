//! Domain sets: addresses held for a TTL in named sets only, kept through a
//! full replace (inside its document), expired on time.

use std::net::IpAddr;

use super::Harness;
use crate::control::{Request, Response};
use crate::firewall::ApplyOutcome;

#[test]
fn domain_sets_take_named_sets_only_expire_and_survive_full_replaces() {
    use crate::config::DomainSetId;
    let mut h = Harness::new(crate::testutil::tunnel_config());
    h.state.reconcile().expect("apply");
    let set = DomainSetId::new("streaming").expect("id");
    let ip: IpAddr = "198.51.100.7".parse().expect("ip");
    let add = |set: &DomainSetId, ttl_secs| Request::DomainAdd {
        set: set.clone(),
        addresses: vec![ip],
        ttl_secs,
    };
    let other = DomainSetId::new("other").expect("id");
    assert!(matches!(h.state.handle(add(&other, 60), 100), Response::Error { .. }));
    assert!(matches!(h.state.handle(add(&set, 0), 100), Response::Error { .. }));
    assert!(matches!(h.state.handle(add(&set, 60), 100), Response::Done { .. }));
    assert_eq!(h.state.enforcer.held_until(&set, ip).as_ref(), Some(&160));
    // A longer TTL extends it; a shorter one does not shorten it.
    h.state.handle(add(&set, 100), 110);
    h.state.handle(add(&set, 5), 120);
    assert_eq!(h.state.enforcer.held_until(&set, ip).as_ref(), Some(&210));
    // A full replace re-creates the sets holding the address, in the same
    // document: they are never empty in between.
    h.state.enforcer.forget_applied();
    assert_eq!(h.state.reconcile().expect("apply"), ApplyOutcome::FullReplace);
    assert_eq!(h.state.enforcer.held_count(), 1);
    let full = h.last_full.lock().expect("lock").clone().expect("a full document");
    let set_def = full.find("\"dom_streaming_v4\"").expect("the set is created");
    assert!(
        full[set_def..]
            .split("\"set\"")
            .next()
            .is_some_and(|s| s.contains("198.51.100.7")),
        "the held address is in the set's definition: {}",
        &full[set_def..(set_def + 300).min(full.len())]
    );

    h.state.handle_timeout(209);
    assert_eq!(h.state.enforcer.held_count(), 1);
    h.state.handle_timeout(210);
    assert!((h.state.enforcer.held_count() == 0), "expired");
    // The document names the set and the address, nothing else.
    let mut delta = crate::firewall::MembershipDelta::default();
    let v4 = vec!["198.51.100.7".parse().expect("v4")];
    delta.push(
        true,
        crate::firewall::render::SetOwner::DomainSet(set.clone()),
        crate::firewall::Elements::V4(v4),
    );
    let doc = crate::firewall::render::delta_document(&delta);
    let json = serde_json::to_string(&doc).expect("json");
    assert!(
        json.contains("\"dom_streaming_v4\"") && json.contains("198.51.100.7"),
        "{json}"
    );
}

/// A restart: the kernel's domain sets still hold addresses from the previous
/// run; the new enforcer adopts them before its first replace, whose document
/// keeps them, and lets them go when the adoption ends.
#[test]
fn a_restart_keeps_what_the_kernel_domain_sets_hold() {
    use std::sync::Arc;

    use crate::config::DomainSetId;
    use crate::firewall::{Enforcer, MembershipChange};
    use crate::policy::{desired_membership, desired_ruleset};
    use crate::testutil::{listing_of, FakeNft, NoConntrack};

    let config = crate::testutil::tunnel_config();
    let set = DomainSetId::new("streaming").expect("id");
    let ip: IpAddr = "203.0.113.10".parse().expect("ip");
    let ruleset = desired_ruleset(&config, &Default::default());
    let nobody = crate::inventory::Inventory::from_devices(Vec::new());
    let membership = desired_membership(&config, &nobody);
    // What the previous run left in the kernel.
    let before = crate::firewall::render::full_document_holding(
        &ruleset,
        &membership,
        &crate::firewall::render::Holdings {
            domains: [(set.clone(), vec![ip])].into(),
            ..Default::default()
        },
    );
    let nft = Arc::new(FakeNft::default());
    *nft.listing.lock().expect("lock") = Some(listing_of(&before));
    let mut enforcer = Enforcer::new(Box::new(nft.clone()), Box::new(NoConntrack));
    let sets = [set.clone()].into();
    assert_eq!(enforcer.adopt_kernel_domain_sets(&sets, 1_720), 1);
    assert_eq!(enforcer.held_until(&set, ip), Some(1_720));
    let addresses_of = |_: &crate::config::MacAddr| Vec::new();
    enforcer
        .enforce(
            ruleset,
            MembershipChange::Whole {
                membership: Box::new(membership),
                addresses_of: &addresses_of,
            },
        )
        .expect("first apply");
    assert_eq!(enforcer.held_count(), 1, "still held after the first replace");
    enforcer.expire(1_720);
    assert_eq!(enforcer.held_count(), 0);
    // Nothing to adopt without a table (a first start) or without sets.
    let empty = Arc::new(FakeNft::default());
    *empty.listing.lock().expect("lock") = Some(listing_of(&crate::firewall::render::full_document(
        &desired_ruleset(&config, &Default::default()),
        &desired_membership(&config, &nobody),
    )));
    let mut fresh = Enforcer::new(Box::new(empty), Box::new(NoConntrack));
    assert_eq!(fresh.adopt_kernel_domain_sets(&sets, 1_720), 0);
    assert_eq!(fresh.adopt_kernel_domain_sets(&Default::default(), 1_720), 0);
}

#[test]
fn a_clock_jump_keeps_what_held_addresses_and_seen_times_had_left() {
    use crate::config::DomainSetId;
    use crate::inventory::Event;
    let mut h = Harness::new(crate::testutil::tunnel_config());
    h.state.reconcile().expect("apply");
    let set = DomainSetId::new("streaming").expect("id");
    let ip: IpAddr = "198.51.100.7".parse().expect("ip");
    // This run started at 900 on a clock a year slow.
    let t = 1_000;
    let add = Request::DomainAdd {
        set: set.clone(),
        addresses: vec![ip],
        ttl_secs: 300,
    };
    assert!(matches!(h.state.handle(add, t), Response::Done { .. }));
    let cam = super::mac(61);
    h.state.observe(
        Event::Address {
            mac: cam,
            ip: IpAddr::from([10, 0, 1, 61]),
        },
        t,
    );
    h.state.handle(
        Request::Watch {
            mac: cam,
            watched: true,
        },
        t,
    );
    h.state.handle_timeout(t);
    // NTP steps the clock a year forward, 10 s later.
    let year = 365 * 24 * 3600;
    let now = t + 10 + year;
    h.state.wall_clock = || 1_000 + 10 + 365 * 24 * 3600;
    h.state.clock_jumped(900, year);
    assert_eq!(h.state.enforcer.held_until(&set, ip), Some(t + 300 + year));
    h.state.handle_timeout(now);
    assert_eq!(h.state.enforcer.held_count(), 1, "not expired by the jump");
    assert!(
        h.state.snapshot().devices[&cam].online,
        "not offline because of the jump"
    );
    let offline = h
        .state
        .store
        .alerts(20)
        .expect("alerts")
        .into_iter()
        .filter(|a| a.kind == crate::alerts::AlertKind::DeviceOffline)
        .count();
    assert_eq!(offline, 0);
    h.state.handle_timeout(t + 300 + year);
    assert_eq!(h.state.enforcer.held_count(), 0, "expired when its time was up");
}
