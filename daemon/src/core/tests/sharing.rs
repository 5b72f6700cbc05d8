//! The homeowner's shares: on, off, kept in the store across a restart and
//! a reload, refused with a reason, undone when the firewall refuses.

use super::{done, refused, zone, Harness};
use crate::control::{Request, Response};
use crate::store::Store;

fn share(preset: &str, from: &str, to: &str, on: bool) -> Request {
    Request::Share {
        preset: preset.into(),
        from: zone(from),
        to: zone(to),
        on,
    }
}

fn consumers(h: &Harness) -> Vec<String> {
    let rs = crate::policy::desired_ruleset(&h.state.config, &Default::default());
    rs.share_to.iter().map(ToString::to_string).collect()
}

#[test]
fn homeowner_shares_go_on_off_and_survive_a_restart_and_a_reload() {
    let dir = std::env::temp_dir().join(format!("bulkhead-shares-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.clone();
    let config = crate::testutil::default_config();
    let mut h = Harness::with_store(config.clone(), Store::open(&path, 0).expect("store"));
    h.state.reconcile().expect("apply");
    assert!(consumers(&h).is_empty(), "nothing shared by default");

    assert_eq!(
        done(h.state.handle(share("chromecast", "iot", "guest", true), 10)),
        "chromecast is shared from iot to guest"
    );
    assert_eq!(consumers(&h), ["guest"]);
    let full = h.last_full.lock().expect("lock").clone().expect("a full replace");
    assert!(
        full.contains("\"share-guest-v4\""),
        "the pinhole sets exist in the kernel"
    );
    let Response::Sharing { sharing } = h.state.handle(Request::Sharing, 11) else {
        panic!("sharing")
    };
    assert!(sharing.shares.iter().any(|s| s.name == "chromecast" && s.homeowner));
    assert!(sharing.presets.iter().any(|p| p.name == "dlna"));
    // Again: nothing changes.
    assert!(done(h.state.handle(share("chromecast", "iot", "guest", true), 12)).contains("already"));

    // Refused, with why, and nothing stored.
    assert!(refused(h.state.handle(share("teleporter", "iot", "guest", true), 13)).contains("no preset"));
    assert!(refused(h.state.handle(share("chromecast", "iot", "iot", true), 13)).contains("two different zones"));
    assert!(refused(h.state.handle(share("printer", "iot", "guest", false), 13)).contains("not shared"));

    // A restart: the store still has it.
    drop(h);
    let mut h = Harness::with_store(config.clone(), Store::open(&path, 0).expect("store"));
    assert_eq!(consumers(&h), ["guest"], "kept across a restart");
    // A reload (the policy files again): still there.
    h.state.replace_config(config.clone()).expect("reload");
    assert_eq!(consumers(&h), ["guest"], "kept across a reload");

    // The firewall refuses: nothing changes, in force or stored.
    h.refuse_full.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(refused(h.state.handle(share("printer", "iot", "trusted", true), 20)).contains("firewall refused"));
    assert_eq!(consumers(&h), ["guest"]);
    h.refuse_full.store(false, std::sync::atomic::Ordering::SeqCst);

    assert_eq!(
        done(h.state.handle(share("chromecast", "iot", "guest", false), 30)),
        "chromecast is no longer shared from iot to guest"
    );
    assert!(consumers(&h).is_empty());
    drop(h);
    let h = Harness::with_store(config, Store::open(&path, 0).expect("store"));
    assert!(consumers(&h).is_empty(), "off is kept too");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
