//! Domain sets: addresses held for a TTL in named sets only, put back after a
//! full replace, expired on time.

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
    // A full replace empties the kernel's sets: the state puts them back.
    h.state.enforcer.forget_applied();
    assert_eq!(h.state.reconcile().expect("apply"), ApplyOutcome::FullReplace);
    assert_eq!(h.state.enforcer.held_count(), 1);
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
