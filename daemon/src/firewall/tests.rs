use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use nftables::schema::Nftables;

use super::*;
use crate::config::{MacAddr, ZoneId};
use crate::inventory::{Event, Inventory};
use crate::policy::{desired_membership, desired_ruleset};
use crate::testutil::{config_with, default_config, listing_of, FakeNft, MAIN};

/// The enforcer's one path over a shared fake nft.
fn reconcile(
    nft: &Arc<FakeNft>,
    applied: Option<&Applied>,
    rs: &crate::policy::DesiredRuleset,
    m: &crate::policy::Membership,
) -> Result<ApplyOutcome, FirewallError> {
    crate::testutil::enforce_whole(Box::new(nft.clone()), applied, rs, m)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

pub(super) fn sample_inventory() -> Inventory {
    let mut inv = Inventory::default();
    inv.apply(
        &Event::ManualAdd {
            mac: mac(1),
            ip: Some(ip("10.0.1.10")),
        },
        0,
    );
    inv.apply(
        &Event::ManualAdd {
            mac: mac(1),
            ip: Some(ip("fd00:1::10")),
        },
        0,
    );
    inv.apply(
        &Event::SetZone {
            mac: mac(1),
            zone: ZoneId::new("trusted").expect("id"),
        },
        0,
    );
    inv.apply(
        &Event::ManualAdd {
            mac: mac(2),
            ip: Some(ip("10.0.2.20")),
        },
        0,
    );
    inv.apply(
        &Event::SetZone {
            mac: mac(2),
            zone: ZoneId::new("iot").expect("id"),
        },
        0,
    );
    inv.apply(
        &Event::ManualAdd {
            mac: mac(3),
            ip: Some(ip("10.0.1.30")),
        },
        0,
    );
    inv
}

/// Compares with `golden/<name>.json`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, doc: &Nftables<'_>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/firewall/golden")
        .join(format!("{name}.json"));
    let got = serde_json::to_string_pretty(doc).expect("serialize") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
        return;
    }
    let want =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert!(
        got == want,
        "{} differs from the rendered document; review and run with UPDATE_GOLDEN=1.\n{got}",
        path.display()
    );
}

#[test]
fn golden_default_policy() {
    let cfg = default_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &sample_inventory());
    golden("default", &render::full_document(&rs, &m));
}

/// The sample home with the homeowner's decisions: mac(3) blocked, mac(1)
/// always through the tunnel, mac(2) (in the tunnel's iot zone) never.
pub(super) fn decided_inventory() -> Inventory {
    let mut inv = sample_inventory();
    inv.apply(
        &Event::Block {
            mac: mac(3),
            blocked: true,
        },
        1,
    );
    inv.apply(
        &Event::TunnelChoice {
            mac: mac(1),
            route: Some(true),
        },
        1,
    );
    inv.apply(
        &Event::TunnelChoice {
            mac: mac(2),
            route: Some(false),
        },
        1,
    );
    inv
}

#[test]
fn golden_tunnel() {
    let cfg = crate::testutil::tunnel_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &decided_inventory());
    golden("tunnel", &render::full_document(&rs, &m));
}

#[test]
fn blocking_and_tunnel_choices_are_element_deltas() {
    let cfg = crate::testutil::tunnel_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let before = desired_membership(&cfg, &sample_inventory());
    let after = desired_membership(&cfg, &decided_inventory());
    assert_eq!(
        desired_ruleset(&cfg, &Default::default()),
        rs,
        "decisions are not structure"
    );
    let d = diff_membership(&before, &after);
    let owners = |add: bool| {
        d.changes()
            .filter(|(a, _, _)| *a == add)
            .map(|(_, o, e)| (o.set_name(e.kind()), e.texts()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        owners(true),
        [
            ("blocked-mac".to_string(), vec!["02:00:00:00:00:03".to_string()]),
            ("blocked-v4".into(), vec!["10.0.1.30".into()]),
            ("tunnel-devices".into(), vec!["02:00:00:00:00:01".into()]),
            ("tunnel-exclude-devices".into(), vec!["02:00:00:00:00:02".into()]),
        ]
    );
    assert!(owners(false).is_empty(), "{:?}", owners(false));
    golden("delta-decisions", &render::delta_document(&d));

    // Through the reconcile: a delta, never a full replace.
    let nft = Arc::new(FakeNft::default());
    let applied = Applied {
        ruleset: rs.clone(),
        membership: before,
    };
    assert_eq!(
        reconcile(&nft, Some(&applied), &rs, &after).expect("apply"),
        ApplyOutcome::Delta { added: 4, removed: 0 }
    );
    assert_eq!(*nft.applied.lock().expect("lock"), ["delta"]);
}

#[test]
fn verify_checks_the_blocked_and_tunnel_sets() {
    let cfg = crate::testutil::tunnel_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let meant = desired_membership(&cfg, &decided_inventory());
    let held = desired_membership(&cfg, &sample_inventory());
    let (inet, bridge) = listing_of(&render::full_document(&rs, &held));
    let err = verify(&rs, &meant, &[inet, bridge]).expect_err("the sets differ");
    let text = err.to_string();
    for set in [
        "set inet blocked-mac",
        "set bridge blocked-mac",
        "set inet blocked-v4",
        "set inet tunnel-devices",
        "set inet tunnel-exclude-devices",
    ] {
        assert!(text.contains(set), "{set} not reported: {text}");
    }
    // Without a tunnel there are no tunnel sets to hold.
    let plain = default_config();
    let rs = desired_ruleset(&plain, &Default::default());
    let names: Vec<String> = render::member_sets(&rs).iter().map(|(o, k)| o.set_name(*k)).collect();
    assert!(names.contains(&"blocked-mac".to_string()) && !names.iter().any(|n| n.starts_with("tunnel")));
}

/// No segments at all (a router being set up), a zone that reaches itself and
/// another, a WAN whose input is left to fw4, and an existing bridge's ports.
pub(super) fn edge_ruleset() -> crate::policy::DesiredRuleset {
    let main = "policies_dir = \"policies\"\n[wan]\ninterface = \"eth1\"\npolice_input = false\n";
    let pol =
        "unknown_zone = \"quar\"\n[zones.quar]\n[zones.lab]\nreach_zones = [\"lab\", \"quar\"]\nintra_zone = false\n";
    let dir = crate::testutil::Fixture::new(main, &[("p.toml", pol)]);
    let cfg = crate::config::load(&dir.main()).unwrap_or_else(|e| panic!("{e}"));
    desired_ruleset(&cfg, &["wlan0".to_string()].into_iter().collect())
}

#[test]
fn golden_edge_cases() {
    golden(
        "edge-no-segments",
        &render::full_document(&edge_ruleset(), &Default::default()),
    );
}

#[test]
fn moving_a_device_is_a_delta_of_its_elements_only() {
    let cfg = default_config();
    let mut inv = sample_inventory();
    let before = desired_membership(&cfg, &inv);
    inv.apply(
        &Event::SetZone {
            mac: mac(1),
            zone: ZoneId::new("iot").expect("id"),
        },
        1,
    );
    let after = desired_membership(&cfg, &inv);
    let d = diff_membership(&before, &after);
    assert_eq!(d.added(), 3);
    assert_eq!(d.removed(), 3);
    golden("delta-move", &render::delta_document(&d));
    assert!(diff_membership(&after, &after).is_empty());
}

#[test]
fn reconcile_chooses_full_or_delta_and_falls_back() {
    let cfg = default_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let mut inv = sample_inventory();
    let m1 = desired_membership(&cfg, &inv);
    let nft = Arc::new(FakeNft::default());
    *nft.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&rs, &m1)));
    assert_eq!(
        reconcile(&nft, None, &rs, &m1).expect("apply"),
        ApplyOutcome::FullReplace
    );
    let applied = Applied {
        ruleset: rs.clone(),
        membership: m1.clone(),
    };
    assert_eq!(
        reconcile(&nft, Some(&applied), &rs, &m1).expect("apply"),
        ApplyOutcome::Unchanged
    );
    inv.apply(
        &Event::SetZone {
            mac: mac(3),
            zone: ZoneId::new("guest").expect("id"),
        },
        1,
    );
    let m2 = desired_membership(&cfg, &inv);
    assert_eq!(
        reconcile(&nft, Some(&applied), &rs, &m2).expect("apply"),
        ApplyOutcome::Delta { added: 2, removed: 2 }
    );
    assert_eq!(*nft.applied.lock().expect("lock"), ["full", "delta"]);

    // A refused delta falls back to a full replace, which is then verified.
    let refusing = Arc::new(FakeNft {
        refuse_deltas: true,
        ..Default::default()
    });
    *refusing.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&rs, &m2)));
    assert_eq!(
        reconcile(&refusing, Some(&applied), &rs, &m2).expect("apply"),
        ApplyOutcome::FullReplace
    );

    // Verification catches a kernel that does not hold what we meant.
    let lying = Arc::new(FakeNft::default());
    *lying.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&rs, &m1)));
    let err = reconcile(&lying, None, &rs, &m2).expect_err("must not verify");
    assert!(matches!(err, FirewallError::Verify(_)), "{err}");
    assert!(
        error_chain(&err).contains("set inet guest_mac"),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn a_structure_change_is_a_full_replace() {
    let cfg = default_config();
    let cfg2 = config_with(MAIN, &[("seg.toml", "[segment_zones]\niot = \"iot\"\n")]);
    let rs = desired_ruleset(&cfg, &Default::default());
    let mut rs2 = desired_ruleset(&cfg2, &Default::default());
    // A segment default is structure: the kernel sends MACs it has never seen on
    // that segment to the default zone's chains.
    assert_ne!(rs, rs2);
    assert_eq!(rs2.segment_defaults.len(), 1);
    assert_eq!(rs2.segment_defaults[0].interface, "br-iot");
    rs2.police_wan_input = false;
    let m = desired_membership(&cfg, &sample_inventory());
    let nft = Arc::new(FakeNft::default());
    *nft.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&rs2, &m)));
    let applied = Applied {
        ruleset: rs,
        membership: m.clone(),
    };
    assert_eq!(
        reconcile(&nft, Some(&applied), &rs2, &m).expect("apply"),
        ApplyOutcome::FullReplace
    );
    // Every full replace adds the neighbour-advert guards nft cannot load;
    // a delta does not touch them.
    assert_eq!(*nft.nd_guarded.lock().expect("lock"), 1);
    let mut moved = m.clone();
    moved.v4_owners.clear();
    let applied = Applied {
        ruleset: rs2.clone(),
        membership: m.clone(),
    };
    assert!(matches!(
        reconcile(&nft, Some(&applied), &rs2, &moved).expect("delta"),
        ApplyOutcome::Delta { .. }
    ));
    assert_eq!(*nft.nd_guarded.lock().expect("lock"), 1);
}

/// The default policy with casting shared from iot to guest.
pub(super) fn sharing_config() -> crate::config::Config {
    config_with(
        MAIN,
        &[(
            "50-share.toml",
            "[[share]]\npreset = \"chromecast\"\nfrom = [\"iot\"]\nto = [\"guest\"]\n",
        )],
    )
}

#[test]
fn golden_sharing() {
    let cfg = sharing_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    assert_eq!(rs.share_to.iter().map(ZoneId::as_str).collect::<Vec<_>>(), ["guest"]);
    let m = desired_membership(&cfg, &sample_inventory());
    let held = render::Holdings {
        pinholes: [(
            ZoneId::new("guest").expect("zone"),
            vec![Pinhole {
                address: ip("10.0.2.30"),
                transport: crate::config::Transport::Tcp,
                port: 8009,
            }],
        )]
        .into(),
        ..Default::default()
    };
    golden("sharing", &render::full_document_holding(&rs, &m, &held));
}

#[test]
fn pinholes_are_held_refreshed_closed_and_expired() {
    let cfg = sharing_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &sample_inventory());
    let nft = Arc::new(FakeNft::default());
    *nft.listing.lock().expect("lock") = Some(crate::testutil::listing_of(&render::full_document(&rs, &m)));
    let mut e = Enforcer::new(Box::new(nft.clone()), Box::new(crate::testutil::NoConntrack));
    let guest = ZoneId::new("guest").expect("zone");
    let trusted = ZoneId::new("trusted").expect("zone");
    let hole = |port| Pinhole {
        address: ip("10.0.2.30"),
        transport: crate::config::Transport::Tcp,
        port,
    };
    // Nothing applied yet, and a zone nothing is shared to: refused.
    assert!(matches!(
        e.hold_pinholes(&guest, &[hole(8009)], 120, 0),
        Err(HoldError::NotShared(_))
    ));
    e.enforce(
        rs.clone(),
        MembershipChange::Whole {
            membership: Box::new(m.clone()),
            addresses_of: &|_| Vec::new(),
        },
    )
    .expect("apply");
    assert!(matches!(
        e.hold_pinholes(&trusted, &[hole(8009)], 120, 0),
        Err(HoldError::NotShared(_))
    ));
    assert!(matches!(
        e.hold_pinholes(&guest, &[hole(8009)], 0, 0),
        Err(HoldError::NoLifetime)
    ));
    let held = e
        .hold_pinholes(&guest, &[hole(8008), hole(8009)], 120, 1000)
        .expect("hold");
    assert_eq!((held.given, held.fresh), (2, 2));
    // Again later: nothing new for the kernel, the deadline moves.
    let deltas = nft.applied.lock().expect("lock").len();
    let held = e.hold_pinholes(&guest, &[hole(8009)], 120, 1100).expect("hold");
    assert_eq!(held.fresh, 0);
    assert_eq!(
        nft.applied.lock().expect("lock").len(),
        deltas,
        "no kernel change for a refresh"
    );
    e.expire(1120);
    let left: Vec<u16> = e.pinholes().map(|(_, p, _)| p.port).collect();
    assert_eq!(left, [8009], "8008 expired at 1120, 8009 lives until 1220");
    // A full replace keeps them in the document.
    let doc = serde_json::to_string(&e.boot_record(1121).expect("record").nftables).expect("json");
    assert!(doc.contains("\"share-guest-v4\"") && doc.contains("8009"), "{doc}");
    assert_eq!(e.close_pinholes(ip("10.0.2.30")), 1);
    assert_eq!(e.pinholes().count(), 0);
}

#[test]
fn pinhole_keys_are_padded_fields_in_network_order() {
    let (v4, v6) = Elements::of_pinholes([
        Pinhole {
            address: ip("10.0.2.30"),
            transport: crate::config::Transport::Tcp,
            port: 8009,
        },
        Pinhole {
            address: ip("fd00:2::30"),
            transport: crate::config::Transport::Udp,
            port: 319,
        },
    ]);
    assert_eq!(v4.key_bytes(), [vec![10, 0, 2, 30, 6, 0, 0, 0, 0x1f, 0x49, 0, 0]]);
    let k6 = &v6.key_bytes()[0];
    assert_eq!(k6.len(), 24);
    assert_eq!(&k6[16..], [17, 0, 0, 0, 0x01, 0x3f, 0, 0]);
    assert_eq!(v4.texts(), ["10.0.2.30 . tcp . 8009"]);
}

#[test]
fn address_owners_follow_the_devices_addresses() {
    let cfg = default_config();
    let before = desired_membership(&cfg, &sample_inventory());
    let laptop = ("10.0.1.10".parse::<std::net::Ipv4Addr>().expect("ip"), mac(1));
    assert!(before.v4_owners.contains(&laptop), "{:?}", before.v4_owners);
    assert!(before.owned_v4().contains(&laptop.0));
    // The laptop's address moves: its old pair goes, the new one comes, in one delta.
    let mut inv = sample_inventory();
    inv.apply(
        &Event::Address {
            mac: mac(1),
            ip: ip("10.0.1.11"),
        },
        5,
    );
    let after = desired_membership(&cfg, &inv);
    let delta = diff_membership(&before, &after);
    let changes: Vec<(bool, String, Vec<String>)> = delta
        .changes()
        .map(|(add, owner, e)| (add, owner.set_name(e.kind()), e.texts()))
        .filter(|(_, name, _)| name.starts_with("owne"))
        .collect();
    assert!(
        changes.contains(&(true, "owner-of-v4".into(), vec!["10.0.1.11 . 02:00:00:00:00:01".into()])),
        "{changes:?}"
    );
    assert_eq!(
        Elements::Owners4(vec![laptop]).key_bytes(),
        [vec![10, 0, 1, 10, 2, 0, 0, 0, 0, 1, 0, 0]]
    );
    // IPv6 the same, in its own pair of sets.
    let laptop6 = ("fd00:1::10".parse::<std::net::Ipv6Addr>().expect("ip"), mac(1));
    assert!(before.v6_owners.contains(&laptop6), "{:?}", before.v6_owners);
    assert!(before.owned_v6().contains(&laptop6.0));
    let elements: Vec<String> = render::elements(&before, &SetOwner::AddressOwners, SetKind::Owners6)
        .iter()
        .map(|e| serde_json::to_string(e).expect("json"))
        .collect();
    assert_eq!(elements, [r#"{"concat":["fd00:1::10","02:00:00:00:00:01"]}"#]);
    assert_eq!(SetOwner::AddressOwners.set_name(SetKind::Owners6), "owner-of-v6");
    assert_eq!(SetOwner::AddressOwners.set_name(SetKind::V6), "owned-v6");
    let mut key = laptop6.0.octets().to_vec();
    key.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(Elements::Owners6(vec![laptop6]).key_bytes(), [key]);
}

/// The kernel's links as a router with `present` links and flowtables.
fn facts(present: &[&str], flowtables: bool) -> crate::policy::LinkFacts {
    crate::policy::LinkFacts {
        bridge_ports: Default::default(),
        present: present.iter().zip(1..).map(|(s, i)| (s.to_string(), i)).collect(),
        flowtables,
        router_link_local: Default::default(),
        wireless_ports: Default::default(),
    }
}

#[test]
fn the_flowtable_covers_the_wan_and_the_segments_that_exist() {
    use crate::policy::desired_ruleset_for;
    let cfg = default_config();
    let all = ["wan0", "br-lan", "br-iot", "eth-other"];
    let rs = desired_ruleset_for(&cfg, &facts(&all, true));
    let devices: Vec<&str> = rs
        .offload
        .as_ref()
        .expect("offload")
        .devices
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(devices, ["br-iot", "br-lan", "wan0"], "only ours: {devices:?}");
    // A segment's bridge not made yet: not named (the kernel would refuse).
    let rs = desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan"], true));
    assert_eq!(rs.offload.expect("offload").devices.len(), 2);
    // No WAN (a PPPoE session down), no flowtables, or the config says no: none.
    assert!(desired_ruleset_for(&cfg, &facts(&["br-lan", "br-iot"], true))
        .offload
        .is_none());
    assert!(desired_ruleset_for(&cfg, &facts(&all, false)).offload.is_none());
    let off = config_with(&MAIN.replace("[wan]\n", "[wan]\nflow_offload = false\n"), &[]);
    assert!(!off.flow_offload);
    assert!(desired_ruleset_for(&off, &facts(&all, true)).offload.is_none());
    // Everything else is the ruleset without it.
    let mut with = desired_ruleset_for(&cfg, &facts(&all, true));
    assert!(with.decides_as(&desired_ruleset(&cfg, &Default::default())));
    with.offload = None;
    assert_eq!(with, desired_ruleset(&cfg, &Default::default()));
}

#[test]
fn the_offload_rule_sits_after_the_guards_and_before_established() {
    let cfg = default_config();
    let rs = crate::policy::desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan", "br-iot"], true));
    let doc = render::full_document(&rs, &desired_membership(&cfg, &sample_inventory()));
    let json = serde_json::to_value(&doc).expect("json");
    let objects = json["nftables"].as_array().expect("objects");
    let position = |pred: &dyn Fn(&serde_json::Value) -> bool| objects.iter().position(pred);
    let flowtable = position(&|o| o["add"]["flowtable"].is_object()).expect("a flowtable");
    let first_chain = position(&|o| o["add"]["chain"].is_object()).expect("chains");
    assert!(
        flowtable < first_chain,
        "the flowtable exists before the rule naming it"
    );
    let ft = &objects[flowtable]["add"]["flowtable"];
    assert_eq!(ft["name"], "offload");
    assert_eq!(ft["hook"], "ingress");
    assert_eq!(ft["dev"], serde_json::json!(["br-iot", "br-lan", "wan0"]));
    let forward: Vec<String> = render::chains(&rs)
        .into_iter()
        .find(|c| c.name == "forward")
        .expect("forward")
        .rules
        .into_iter()
        .map(|r| r.name)
        .collect();
    let at = |name: &str| forward.iter().position(|r| r == name).expect(name);
    assert_eq!(at("offload") + 1, at("established"), "{forward:?}");
    assert_eq!(
        at("established-port-forwards") + 1,
        at("offload"),
        "port forwards are accepted before they could be offloaded: {forward:?}"
    );
    assert!(at("blocked-from") < at("offload") && at("blocked-to-v6") < at("offload"));
    let rule = objects
        .iter()
        .find(|o| o["add"]["rule"]["comment"] == "offload")
        .expect("the rule");
    let text = rule.to_string();
    assert!(text.contains(r#""flow":{"flowtable":"@offload","op":"add"}"#), "{text}");
    // Pairs of two different devices only: nothing a bridge carries within itself.
    assert!(
        text.contains(r#"["br-lan","wan0"]"#) && text.contains(r#"["wan0","br-lan"]"#),
        "{text}"
    );
    assert!(!text.contains(r#"["br-lan","br-lan"]"#), "{text}");
    assert!(!text.contains("mark"), "no tunnel, no mark test: {text}");
    // Without flowtables, nothing of it.
    let plain = serde_json::to_string(&render::full_document(
        &desired_ruleset(&cfg, &Default::default()),
        &Default::default(),
    ))
    .expect("json");
    assert!(!plain.contains("flowtable") && !plain.contains("offload"));
}

#[test]
fn tunnelled_connections_are_never_offloaded() {
    let cfg = crate::testutil::tunnel_config();
    let mut present: Vec<String> = vec!["wan0".into(), "br-lan".into(), "br-iot".into()];
    let tunnel_if = cfg.tunnel.as_ref().expect("tunnel").interface.clone();
    present.push(tunnel_if.clone());
    let refs: Vec<&str> = present.iter().map(String::as_str).collect();
    let rs = crate::policy::desired_ruleset_for(&cfg, &facts(&refs, true));
    let off = rs.offload.as_ref().expect("offload");
    assert!(!off.devices.contains(&tunnel_if), "the tunnel is no flowtable device");
    let rule = render::chains(&rs)
        .into_iter()
        .find(|c| c.name == "forward")
        .and_then(|c| c.rules.into_iter().find(|r| r.name == "offload"))
        .expect("the rule");
    let text = serde_json::to_string(&rule.stmts).expect("json");
    assert!(
        text.contains(&format!(
            r#"{{"&":[{{"ct":{{"key":"mark"}}}},{}]}}"#,
            render::marks::TUNNEL
        )) && text.contains(r#""right":0"#),
        "ct mark & TUNNEL == 0: {text}"
    );
}

#[test]
fn a_flowtable_change_alone_cuts_nobody_and_sets_the_counter() {
    let cfg = default_config();
    let m = desired_membership(&cfg, &sample_inventory());
    let without = crate::policy::desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan"], true));
    let with = crate::policy::desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan", "br-iot"], true));
    assert_ne!(without, with);
    let nft = Arc::new(FakeNft::default());
    *nft.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&with, &m)));
    let cuts = crate::testutil::RecordingConntrack::default();
    let mut e = Enforcer::new(Box::new(nft.clone()), Box::new(cuts.clone()));
    e.assume_applied(Applied {
        ruleset: without,
        membership: m.clone(),
    });
    let outcome = e.enforce(
        with.clone(),
        MembershipChange::Whole {
            membership: Box::new(m.clone()),
            addresses_of: &|_| Vec::new(),
        },
    );
    assert_eq!(outcome.expect("apply"), ApplyOutcome::FullReplace);
    assert!(
        cuts.0.lock().expect("lock").is_empty(),
        "a faster path is no new decision"
    );
    assert_eq!(
        *nft.counted.lock().expect("lock"),
        [(
            "offload".to_string(),
            vec!["br-iot".to_string(), "br-lan".into(), "wan0".into()]
        )]
    );
    // The boot record leaves it out: at boot its devices may not exist yet.
    let record = serde_json::to_string(&e.boot_record(0).expect("record")).expect("json");
    assert!(!record.contains("flowtable"), "{record}");
    // Whereas a decision's change still cuts everyone.
    let mut stricter = with.clone();
    stricter.zones.iter_mut().for_each(|z| z.internet = false);
    *nft.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&stricter, &m)));
    e.enforce(
        stricter,
        MembershipChange::Whole {
            membership: Box::new(m),
            addresses_of: &|_| Vec::new(),
        },
    )
    .expect("apply");
    assert!(!cuts.0.lock().expect("lock").is_empty());
}

#[test]
fn verify_checks_the_flowtable_and_its_devices() {
    let cfg = default_config();
    let m = desired_membership(&cfg, &sample_inventory());
    let rs = crate::policy::desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan", "br-iot"], true));
    let (inet, bridge) = listing_of(&render::full_document(&rs, &m));
    verify(&rs, &m, &[inet.clone(), bridge.clone()]).expect("as meant");
    // The kernel dropped a device that went away.
    let mut fewer = rs.clone();
    fewer.offload.as_mut().expect("offload").devices.remove("br-iot");
    let (inet2, _) = listing_of(&render::full_document(&fewer, &m));
    let err = verify(&rs, &m, &[inet2, bridge.clone()]).expect_err("a device missing");
    assert!(err.to_string().contains("flowtable devices"), "{err}");
    // None where one is meant, one where none is.
    let plain = desired_ruleset(&cfg, &Default::default());
    let (inet3, _) = listing_of(&render::full_document(&plain, &m));
    assert!(verify(&rs, &m, &[inet3, bridge.clone()]).is_err());
    let err = verify(&plain, &m, &[inet, bridge]).expect_err("unexpected");
    assert!(err.to_string().contains("unexpected flowtable offload"), "{err}");
}

#[test]
fn the_probe_leaves_nothing_and_touches_no_table_of_ours() {
    let doc = serde_json::to_value(render::offload::probe_document()).expect("json");
    let objects = doc["nftables"].as_array().expect("objects");
    for o in objects {
        let text = o.to_string();
        assert!(
            text.contains(r#""table":"bulkhead-probe""#) || text.contains(r#""name":"bulkhead-probe""#),
            "{text}"
        );
    }
    assert!(objects.first().expect("first")["add"]["table"].is_object());
    let last = objects.last().expect("last");
    assert_eq!(
        last["delete"]["table"]["name"], "bulkhead-probe",
        "deleted in the same transaction"
    );
    assert!(objects
        .iter()
        .any(|o| o["add"]["rule"]["expr"][0]["flow"]["flowtable"] == "@offload"));
}

#[test]
fn a_refused_flowtable_never_holds_a_decision_back() {
    let cfg = default_config();
    let m = desired_membership(&cfg, &sample_inventory());
    let rs = crate::policy::desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan", "br-iot"], true));
    let nft = Arc::new(FakeNft {
        refuse_flowtables: true,
        ..FakeNft::default()
    });
    let plain = DesiredRuleset {
        offload: None,
        ..rs.clone()
    };
    *nft.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&plain, &m)));
    let mut e = Enforcer::new(Box::new(nft.clone()), Box::new(crate::testutil::NoConntrack));
    let whole = |m: &crate::policy::Membership| MembershipChange::Whole {
        membership: Box::new(m.clone()),
        addresses_of: &|_| Vec::new(),
    };
    assert_eq!(
        e.enforce(rs.clone(), whole(&m)).expect("applied without"),
        ApplyOutcome::FullReplace
    );
    assert_eq!(
        e.applied().expect("applied").ruleset,
        plain,
        "the tables without the flowtable"
    );
    assert!(nft.counted.lock().expect("lock").is_empty());
    // The same wish again is not tried again (a delta, not two refused replaces).
    let before = nft.applied.lock().expect("lock").len();
    assert_eq!(e.enforce(rs.clone(), whole(&m)).expect("same"), ApplyOutcome::Unchanged);
    assert_eq!(nft.applied.lock().expect("lock").len(), before);
    // Another set of devices (the links changed) is tried again.
    let other = crate::policy::desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan"], true));
    assert_eq!(
        e.enforce(other, whole(&m)).expect("again without"),
        ApplyOutcome::FullReplace
    );
}

/// Cuts that always fail (a kernel that refuses to delete offloaded entries).
struct RefusingConntrack(Arc<std::sync::Mutex<usize>>);

impl ConntrackFlusher for RefusingConntrack {
    fn flush(&self, _addrs: &[IpAddr]) -> Result<usize, std::io::Error> {
        *self.0.lock().expect("lock") += 1;
        Err(std::io::Error::from_raw_os_error(16)) // EBUSY
    }
}

#[test]
fn a_failed_cut_takes_the_flowtable_away() {
    let cfg = crate::testutil::tunnel_config();
    let with = crate::policy::desired_ruleset_for(&cfg, &facts(&["wan0", "br-lan", "br-iot"], true));
    let without = DesiredRuleset {
        offload: None,
        ..with.clone()
    };
    let before = desired_membership(&cfg, &sample_inventory());
    let after = desired_membership(&cfg, &decided_inventory()); // blocks 10.0.1.30
    let nft = Arc::new(FakeNft::default());
    *nft.listing.lock().expect("lock") = Some(listing_of(&render::full_document(&without, &after)));
    let tries = Arc::new(std::sync::Mutex::new(0));
    let mut e = Enforcer::new(Box::new(nft.clone()), Box::new(RefusingConntrack(tries.clone())));
    e.assume_applied(Applied {
        ruleset: with.clone(),
        membership: before,
    });
    let whole = |m: &crate::policy::Membership| MembershipChange::Whole {
        membership: Box::new(m.clone()),
        addresses_of: &|_| Vec::new(),
    };
    // The block goes in as a delta; its cut fails; the tables are replaced
    // without the flowtable (letting go of every offloaded flow) and the cut
    // is tried again.
    e.enforce(with.clone(), whole(&after)).expect("the block");
    assert_eq!(*nft.applied.lock().expect("lock"), ["delta", "full"]);
    assert_eq!(*tries.lock().expect("lock"), 2, "cut, then cut again");
    assert_eq!(e.applied().expect("applied").ruleset, without);
    assert!(e
        .stats()
        .last_error
        .as_deref()
        .is_some_and(|m| m.contains("flow offload is off")));
    // And it stays off: the same wish is no change.
    assert_eq!(e.enforce(with, whole(&after)).expect("same"), ApplyOutcome::Unchanged);
}

#[test]
fn neighbour_adverts_are_checked_before_they_are_let_through() {
    use nftables::types::NfFamily;
    let mut cfg = default_config();
    cfg.detect.enabled = true;
    let rs = crate::policy::desired_ruleset_for(&cfg, &facts(&["br-lan"], false));
    let router_ll: std::net::Ipv6Addr = "fe80::1:2ff:fe00:1".parse().expect("v6");
    let chains = render::chains(&rs);
    let names = |family: NfFamily, chain: &str| -> Vec<String> {
        chains
            .iter()
            .find(|c| c.family == family && c.name == chain)
            .unwrap_or_else(|| panic!("{chain}"))
            .rules
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    // Between ports: the check comes before the neighbour-discovery accept.
    let forward = names(NfFamily::Bridge, "forward");
    let at = |rules: &[String], name: &str| rules.iter().position(|r| r == name).expect(name);
    assert!(at(&forward, "nd-claims") < at(&forward, "icmpv6-nd"), "{forward:?}");
    // To the router: after the source guards.
    let input = names(NfFamily::Bridge, "input");
    assert!(at(&input, "ip6-claims-device") < at(&input, "nd-claims"), "{input:?}");
    // The check's rules come over netlink, in place of a placeholder that
    // drops every advert; where a claim goes samples it, counts it, drops it.
    let check = chains.iter().find(|c| c.name == "nd-claims").expect("nd-claims");
    let placeholder: Vec<&str> = check.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(placeholder, ["guards-pending"]);
    let json = serde_json::to_string(&check.rules[0].stmts).expect("json");
    assert!(
        json.contains("\"drop\"") && !json.contains("\"match\""),
        "it drops everything: {json}"
    );
    assert_eq!(check.netlink_rules, ["claims-router", "claims-device"]);
    for chain in ["nd-claim-router", "nd-claim-device"] {
        let rules = names(NfFamily::Bridge, chain);
        assert_eq!(rules.last().map(String::as_str), Some("drop"), "{chain}: {rules:?}");
        assert!(rules[0].starts_with("sample-spoof-nd"), "{chain}: {rules:?}");
    }
    // The router's link-local address is one nobody may claim: with the
    // configured ones in `router-v6`, and the kernel making one later is an
    // element delta of that set, not a replace.
    let without = desired_membership(&cfg, &sample_inventory());
    let mut with = without.clone();
    with.router_link_local.insert(router_ll);
    let doc = render::full_document(&rs, &with);
    let json = serde_json::to_string(&doc).expect("json");
    assert!(
        json.contains(&router_ll.to_string()),
        "router-v6 lacks the link-local address"
    );
    let delta = crate::firewall::diff_membership(&without, &with);
    assert_eq!((delta.added(), delta.removed()), (1, 0));
    let delta_json = serde_json::to_string(&render::delta_document(&delta)).expect("json");
    assert!(
        delta_json.contains("\"router-v6\"") && delta_json.contains("fe80::1:2ff:fe00:1"),
        "{delta_json}"
    );
    // The read-back wants both netlink rules.
    let (inet, mut bridge) = crate::testutil::listing_of(&doc);
    crate::firewall::verify(&rs, &with, &[inet.clone(), bridge.clone()]).expect("as meant");
    let objects = bridge.objects.to_mut();
    objects.retain(|o| {
        !matches!(o, nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Rule(r))
            if r.chain == "nd-claims" && r.comment.as_deref() == Some("claims-device"))
    });
    let e = crate::firewall::verify(&rs, &with, &[inet.clone(), bridge]).expect_err("a guard is missing");
    assert!(e.to_string().contains("nd-claims"), "{e}");
    // Killed before the netlink batch: the placeholder, which the read-back
    // tells apart (and which is not what an apply leaves).
    let mut pending = crate::testutil::listing_of(&doc).1;
    let objects = pending.objects.to_mut();
    objects.retain(|o| {
        !matches!(o, nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Rule(r))
            if r.chain == "nd-claims")
    });
    objects.push(nftables::schema::NfObject::ListObject(
        nftables::schema::NfListObject::Rule(nftables::schema::Rule {
            family: NfFamily::Bridge,
            table: "bulkhead".into(),
            chain: "nd-claims".into(),
            expr: Vec::new().into(),
            handle: None,
            index: None,
            comment: Some("guards-pending".into()),
        }),
    ));
    let listed = [inet, pending];
    use crate::firewall::verify::NetlinkRules;
    crate::firewall::verify::verify_with(&rs, &with, &listed, NetlinkRules::Pending).expect("the placeholder state");
    crate::firewall::verify(&rs, &with, &listed).expect_err("the placeholder is not the guards");
}

#[test]
fn without_netlink_the_tables_hold_and_only_the_advert_guards_are_missing() {
    // Under qemu-user (the router binary's scenarios) there is no
    // NETLINK_NETFILTER: the placeholder is flushed with nft, and the
    // replace is in force, verified without the guards.
    let cfg = default_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &sample_inventory());
    let nft = listing_full_document(
        FakeNft {
            refuse_nd_guards: true,
            ..FakeNft::default()
        },
        &rs,
        &m,
    );
    assert_eq!(
        reconcile(&nft, None, &rs, &m).expect("apply"),
        ApplyOutcome::FullReplace
    );
    // The read-back still checks the rest: a missing rule elsewhere is found.
    let (inet, bridge) = nft.listing.lock().expect("lock").clone().expect("listing");
    assert!(crate::firewall::verify(&rs, &m, &[inet.clone(), bridge.clone()]).is_err());
    let mut cut = inet.clone();
    cut.objects.to_mut().retain(|o| {
        !matches!(o, nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Rule(r))
            if r.chain == "forward")
    });
    let absent = crate::firewall::verify::NetlinkRules::Absent;
    crate::firewall::verify::verify_with(&rs, &m, &[inet, bridge.clone()], absent).expect("as meant");
    assert!(crate::firewall::verify::verify_with(&rs, &m, &[cut, bridge], absent).is_err());
}

#[test]
fn a_refused_advert_guard_batch_fails_the_apply_and_flushes_nothing() {
    // Netlink works but the kernel refused the batch: the placeholder stays
    // (adverts dropped), and the apply is an error to try again — never a
    // quiet fall back to unchecked adverts.
    let cfg = default_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &sample_inventory());
    let nft = listing_full_document(
        FakeNft {
            nd_guards_refused_with: Some("the kernel refused the batch at: add rule claims-device: Invalid argument"),
            ..FakeNft::default()
        },
        &rs,
        &m,
    );
    let e = reconcile(&nft, None, &rs, &m).expect_err("a refused guard is an apply error");
    assert!(
        crate::firewall::error_chain(&e).contains("neighbour-advert guards"),
        "{e}"
    );
    let applied = nft.applied.lock().expect("lock").clone();
    assert_eq!(applied, ["full"], "no flush of the placeholder followed: {applied:?}");
}

/// `nft`, listing what the full document for `rs` and `m` would leave.
fn listing_full_document(nft: FakeNft, rs: &DesiredRuleset, m: &Membership) -> Arc<FakeNft> {
    *nft.listing.lock().expect("lock") = Some(listing_of(&render::full_document(rs, m)));
    Arc::new(nft)
}
