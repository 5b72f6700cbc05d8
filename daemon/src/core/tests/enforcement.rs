//! What reaches the kernel: the incremental path against a full recompute, a
//! config nft refuses, a failing firewall's alert, a refused delta.

use std::sync::atomic::Ordering;

use super::{applied, done, home, mac, refused, zone, Harness};
use crate::alerts::AlertKind;
use crate::control::{Request, Response};
use crate::firewall::ApplyOutcome;
use crate::policy::desired_ruleset;
use crate::testutil::{config_with, default_config, MAIN};

#[test]
fn single_device_changes_take_the_incremental_path_and_match_a_full_recompute() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let steps = [
        Request::AddDevice {
            mac: mac(1),
            ip: Some("10.0.1.10".parse().expect("ip")),
        },
        Request::AddDevice {
            mac: mac(1),
            ip: Some("fd00:1::10".parse().expect("ip")),
        },
        Request::SetZone {
            mac: mac(1),
            zone: zone("trusted"),
        },
        Request::AddDevice {
            mac: mac(2),
            ip: Some("10.0.2.20".parse().expect("ip")),
        },
        Request::SetZone {
            mac: mac(2),
            zone: zone("iot"),
        },
        // The address moves from device 2 to device 3.
        Request::AddDevice {
            mac: mac(3),
            ip: Some("10.0.2.20".parse().expect("ip")),
        },
        Request::SetZone {
            mac: mac(1),
            zone: zone("guest"),
        },
    ];
    for (i, req) in steps.into_iter().enumerate() {
        let resp = h.state.handle(req, i as i64);
        assert!(matches!(resp, Response::Done { .. }), "{resp:?}");
        let applied = h.state.enforcer.applied().expect("applied");
        assert_eq!(applied.membership, h.full_membership(), "step {i}: incremental != full");
    }
    assert_eq!(
        h.state.enforcer.stats().full_applies,
        1,
        "only the start-up apply is a full replace"
    );
    assert!(h.state.enforcer.stats().delta_applies >= 6);
    let cut = h.cut.0.lock().expect("lock").clone();
    // Device 1 moved (quarantine -> trusted -> guest): both its addresses cut;
    // 10.0.2.20 moved from device 2 (iot) to device 3 (quarantine): cut.
    assert!(cut.contains(&"10.0.1.10".parse().expect("ip")), "{cut:?}");
    assert!(cut.contains(&"fd00:1::10".parse().expect("ip")), "{cut:?}");
    assert!(cut.contains(&"10.0.2.20".parse().expect("ip")), "{cut:?}");
}

#[test]
fn a_config_nft_refuses_leaves_the_old_one_in_force() {
    let mut h = Harness::new(default_config());
    h.state.reconcile().expect("start");
    let before = h.state.config.clone();
    h.refuse_full.store(true, Ordering::SeqCst);
    let new = config_with(MAIN, &[("seg.toml", "[segment_zones]\niot = \"iot\"\n")]);
    assert!(h.state.replace_config(new).is_err());
    assert_eq!(h.state.config, before);
    assert_eq!(
        h.state.enforcer.applied().expect("applied").ruleset,
        desired_ruleset(&before, &Default::default())
    );
}

/// How many times an apply failure was told: the stored alerts' counts (a
/// failure within the kind's dedup window counts on the first alert).
fn apply_failed_alerts(h: &Harness) -> usize {
    h.state
        .store
        .alerts(100)
        .expect("alerts")
        .iter()
        .filter(|a| a.kind == AlertKind::ApplyFailed)
        .map(|a| a.count as usize)
        .sum()
}

#[test]
fn a_failing_firewall_raises_one_alert_until_it_works_again() {
    let mut h = home(default_config());
    h.refuse_deltas.store(true, Ordering::SeqCst);
    h.refuse_full.store(true, Ordering::SeqCst);
    let msg = refused(h.state.handle(
        Request::SetZone {
            mac: mac(1),
            zone: zone("guest"),
        },
        2,
    ));
    assert!(msg.contains("firewall refused"), "{msg}");
    assert_eq!(apply_failed_alerts(&h), 1);
    let alert = &h.state.store.alerts(1).expect("alerts")[0];
    assert!(
        alert.message.contains("Could not process rule"),
        "error chain: {}",
        alert.message
    );
    assert_eq!(alert.at, 1_000_000, "the wall clock");
    // More failures (a delta path and a full one): no more alerts.
    refused(h.state.handle(
        Request::Block {
            mac: mac(2),
            blocked: true,
        },
        3,
    ));
    assert!(h.state.reconcile().is_err());
    assert_eq!(apply_failed_alerts(&h), 1, "not repeated while failing");
    // It works again (the full replace the failures left owed), and the next
    // failure alerts again. A refused delta that a full replace repairs is
    // no failure.
    h.refuse_full.store(false, Ordering::SeqCst);
    assert_eq!(h.state.reconcile().expect("works"), ApplyOutcome::FullReplace);
    done(h.state.handle(
        Request::SetZone {
            mac: mac(2),
            zone: zone("guest"),
        },
        4,
    ));
    assert_eq!(apply_failed_alerts(&h), 1);
    h.refuse_full.store(true, Ordering::SeqCst);
    refused(h.state.handle(
        Request::SetZone {
            mac: mac(2),
            zone: zone("iot"),
        },
        5,
    ));
    assert_eq!(apply_failed_alerts(&h), 2, "re-armed by the success");
    let stored = h.state.store.alerts(100).expect("alerts");
    let failed: Vec<_> = stored.iter().filter(|a| a.kind == AlertKind::ApplyFailed).collect();
    assert_eq!(
        failed.len(),
        1,
        "within the hour, the same alert counted again: {failed:?}"
    );
    assert_eq!((failed[0].count, failed[0].acknowledged), (2, false));
}

#[test]
fn a_refused_delta_that_a_table_replace_repairs_is_no_failure() {
    let mut h = home(default_config());
    h.refuse_deltas.store(true, Ordering::SeqCst);
    let full = h.state.enforcer.stats().full_applies;
    done(h.state.handle(
        Request::Block {
            mac: mac(1),
            blocked: true,
        },
        2,
    ));
    assert_eq!(
        h.state.enforcer.stats().full_applies,
        full + 1,
        "the delta fell back to a replace"
    );
    assert_eq!(applied(&h), &h.full_membership());
    assert_eq!(apply_failed_alerts(&h), 0, "the kernel holds what was meant");
    assert!(h.state.enforcer.stats().last_error.is_none());
}
