//! The coordinator with a fake nft and conntrack, explicit time and an in-memory
//! store: every request and discovery path, what reaches the kernel, and the
//! alerts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::net::IpAddr;

use super::*;
use crate::alerts::AlertKind;
use crate::config::ZoneId;
use crate::control::{DeviceView, Request, Response};
use crate::firewall::{ApplyOutcome, NftBackend};
use crate::policy::{desired_ruleset, Membership};
use crate::testutil::{config_with, default_config, listing_of, FakeNft, MAIN};

/// Records the addresses it was asked to cut.
#[derive(Clone, Default)]
struct FakeConntrack(Arc<Mutex<Vec<IpAddr>>>);

impl ConntrackFlusher for FakeConntrack {
    fn flush(&self, addrs: &[IpAddr]) -> Result<usize, std::io::Error> {
        self.0.lock().expect("lock").extend_from_slice(addrs);
        Ok(addrs.len())
    }
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn zone(z: &str) -> ZoneId {
    ZoneId::new(z).expect("zone")
}

/// A state whose fake nft "holds" whatever full document it was given last.
struct Harness {
    state: DaemonState,
    cut: FakeConntrack,
    refuse_full: Arc<AtomicBool>,
    refuse_deltas: Arc<AtomicBool>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        Harness::with_store(config, Store::in_memory(0).expect("store"))
    }
    fn with_store(config: Config, store: Store) -> Harness {
        let cut = FakeConntrack::default();
        let nft = ListingNft::default();
        let refuse_full = nft.refuse_full.clone();
        let refuse_deltas = nft.refuse_deltas.clone();
        let mut state = DaemonState::new(config, store, Box::new(nft), Box::new(cut.clone())).expect("state");
        state.set_wall_clock(|| 1_000_000);
        Harness {
            state,
            cut,
            refuse_full,
            refuse_deltas,
        }
    }
    fn full_membership(&self) -> Membership {
        desired_membership(&self.state.config, &self.state.inventory)
    }
}

/// FakeNft whose listing follows the last full document; can be told to
/// refuse full documents as nft would refuse a bad one, and set deltas as the
/// kernel would refuse one for an element that is not there.
#[derive(Default)]
struct ListingNft {
    inner: FakeNft,
    refuse_full: Arc<AtomicBool>,
    refuse_deltas: Arc<AtomicBool>,
}

impl NftBackend for ListingNft {
    fn apply(&self, doc: &nftables::schema::Nftables<'_>) -> Result<(), nftables::helper::NftablesError> {
        let json = serde_json::to_string(doc).expect("json");
        if !json.contains("\"table\":{") && self.refuse_deltas.load(Ordering::SeqCst) {
            return Err(nftables::helper::NftablesError::NftFailed {
                program: "netlink".into(),
                hint: "applying a set delta: the kernel refused the batch".into(),
                stdout: String::new(),
                stderr: "ENOENT".into(),
            });
        }
        if json.contains("\"table\":{") {
            if self.refuse_full.load(Ordering::SeqCst) {
                return Err(nftables::helper::NftablesError::NftFailed {
                    program: "nft".into(),
                    hint: "applying ruleset".into(),
                    stdout: String::new(),
                    stderr: "Error: Could not process rule".into(),
                });
            }
            let owned: nftables::schema::Nftables<'static> = serde_json::from_str(&json).expect("reparse");
            *self.inner.listing.lock().expect("lock") = Some(listing_of(&owned));
        }
        self.inner.apply(doc)
    }
    fn list_table(
        &self,
        family: nftables::types::NfFamily,
    ) -> Result<nftables::schema::Nftables<'static>, nftables::helper::NftablesError> {
        self.inner.list_table(family)
    }
}

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

fn evidence(host: &str, params: &[u8]) -> Box<crate::classify::Evidence> {
    Box::new(crate::classify::Evidence {
        hostname: Some(host.into()),
        dhcp_params: Some(params.to_vec()),
        ..Default::default()
    })
}

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
    let alerts = h.state.store.alerts(10).expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, crate::alerts::AlertKind::NewDeviceQuarantined);
    assert_eq!(h.state.enforcer.stats().full_applies, 1);
    // The hostile hostname is stored as data.
    let d = h.state.inventory.get(&m).expect("device");
    assert_eq!(d.evidence.hostname.as_deref(), Some("<img src=x>\u{202e}"));
}

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
    assert!(h.state.store.suggestions().expect("s")[0].accepted);
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

/// A harness with mac(1) (trusted, 10.0.1.10) and mac(2) (iot, 10.0.2.20),
/// applied.
fn home(config: Config) -> Harness {
    let mut h = Harness::new(config);
    h.state.reconcile().expect("start");
    for (m, ip, z) in [(1, "10.0.1.10", "trusted"), (2, "10.0.2.20", "iot")] {
        let add = Request::AddDevice {
            mac: mac(m),
            ip: Some(ip.parse().expect("ip")),
        };
        assert!(matches!(h.state.handle(add, 1), Response::Done { .. }));
        let set = Request::SetZone {
            mac: mac(m),
            zone: zone(z),
        };
        assert!(matches!(h.state.handle(set, 1), Response::Done { .. }));
    }
    h.cut.0.lock().expect("lock").clear();
    h
}

fn done(r: Response) -> String {
    match r {
        Response::Done { message } => message,
        other => panic!("expected done, got {other:?}"),
    }
}

fn refused(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn view(h: &Harness, m: MacAddr) -> DeviceView {
    h.state
        .device_views(2)
        .into_iter()
        .find(|d| d.mac == m)
        .expect("device view")
}

fn applied(h: &Harness) -> &Membership {
    &h.state.enforcer.applied().expect("applied").membership
}

fn stored(h: &Harness, m: MacAddr) -> crate::inventory::Device {
    h.state
        .store
        .load_devices()
        .expect("load")
        .into_iter()
        .find(|d| d.mac == m)
        .expect("stored")
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
    h.state.raise(Alert {
        id: 0,
        at: 0,
        kind: AlertKind::TunnelUp,
        mac: None,
        message: "old".into(),
        acknowledged: false,
    });
    h.state.handle_timeout(30 * day);
    assert_eq!(h.state.store.alerts(10).expect("a").len(), 1, "30 days are kept");
    h.state.handle_timeout(30 * day + 10);
    assert_eq!(h.state.store.alerts(10).expect("a").len(), 1, "looked at hourly");
    h.state.handle_timeout(30 * day + 3600);
    assert!(h.state.store.alerts(10).expect("a").is_empty());
}

fn apply_failed_alerts(h: &Harness) -> usize {
    h.state
        .store
        .alerts(100)
        .expect("alerts")
        .iter()
        .filter(|a| a.kind == AlertKind::ApplyFailed)
        .count()
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

fn is_token(t: &str) -> bool {
    let groups: Vec<&str> = t.split('-').collect();
    groups.len() == 8
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

#[test]
fn the_setup_token_lives_until_a_password_is_set_and_returns_with_a_reset() {
    let dir = std::env::temp_dir().join(format!("bulkhead-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
    let Response::Auth {
        password_hash: None,
        setup_token: Some(token),
    } = h.state.handle(Request::Auth, 1)
    else {
        panic!("a new router has a token and no password")
    };
    assert!(is_token(&token), "{token}");
    let other = Harness::new(default_config());
    assert_ne!(other.state.setup_token(), Some(token.as_str()), "random");

    for bad in ["", "hunter2 hunter2", "plain", &format!("${}", "a".repeat(600))] {
        refused(h.state.handle(Request::SetPasswordHash { hash: bad.into() }, 2));
    }
    assert_eq!(h.state.setup_token(), Some(token.as_str()), "a refusal spends nothing");
    done(h.state.handle(Request::SetPasswordHash { hash: HASH.into() }, 2));
    assert_eq!(
        h.state.handle(Request::Auth, 3),
        Response::Auth {
            password_hash: Some(HASH.into()),
            setup_token: None
        }
    );
    drop(h);

    // A restart keeps the password, and makes no token.
    let mut h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
    assert_eq!(h.state.setup_token(), None);
    assert_eq!(h.state.credentials.password_hash(), Some(HASH));

    done(h.state.handle(Request::ResetPassword, 4));
    let Response::Auth {
        password_hash: None,
        setup_token: Some(fresh),
    } = h.state.handle(Request::Auth, 5)
    else {
        panic!("a reset makes a token")
    };
    assert!(is_token(&fresh) && fresh != token);
    drop(h);
    let h = Harness::with_store(default_config(), Store::open(&dir, 0).expect("store"));
    assert_eq!(h.state.credentials.password_hash(), None, "the reset is on disk");
    let _ = std::fs::remove_dir_all(&dir);
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
    let alerts = h.state.store.alerts(10).expect("a");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::NewDevice);
    assert_eq!(alerts[0].mac, Some(m));
    assert!(
        alerts[0].message.contains("zone iot (its segment's zone)"),
        "{}",
        alerts[0].message
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
    let kinds: Vec<AlertKind> = h.state.store.alerts(10).expect("a").iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [AlertKind::NewDeviceQuarantined, AlertKind::NewDevice]);
}
