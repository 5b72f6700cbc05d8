//! Root tests of the netlink set writer against a real kernel, each in a
//! throwaway namespace (`bulkhead_netns::Netns`): nft loads the full document,
//! then deltas go over netlink and the sets are listed back with `nft -j`.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_netns::Netns;
use serde_json::Value;

use super::tests::{delta, zone};
use super::*;
use crate::config::MacAddr;
use crate::firewall::{render, Applied, ApplyOutcome, NftBackend, NftCli};
use crate::inventory::{Event, Inventory};
use crate::policy::{desired_membership, desired_ruleset, Membership};
use crate::testutil::default_config;

/// The enforcer's one path with the real backend (its deltas go over
/// netlink), from what `applied` says the kernel holds.
fn reconcile(
    applied: &Applied,
    rs: &crate::policy::DesiredRuleset,
    m: &Membership,
) -> Result<ApplyOutcome, crate::firewall::FirewallError> {
    crate::testutil::enforce_whole(Box::new(NftCli::default()), Some(applied), rs, m)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

/// mac(1) in trusted with 10.0.1.10 and fd00:1::10, mac(2) in iot with 10.0.2.20.
fn small_home() -> Inventory {
    let mut inv = Inventory::default();
    for (m, ip, z) in [
        (1, "10.0.1.10", "trusted"),
        (1, "fd00:1::10", "trusted"),
        (2, "10.0.2.20", "iot"),
    ] {
        let ip = Some(ip.parse().expect("ip"));
        inv.apply(&Event::ManualAdd { mac: mac(m), ip }, 0);
        inv.apply(
            &Event::SetZone {
                mac: mac(m),
                zone: zone(z),
            },
            0,
        );
    }
    inv
}

/// Every set of both our tables in `ns`: "family name" -> elements.
fn sets(ns: &Netns) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for family in ["inet", "bridge"] {
        let listed = ns
            .exec(&["nft", "-j", "list", "table", family, TABLE])
            .expect("nft list table");
        let v: Value = serde_json::from_slice(&listed.stdout).expect("nft -j prints JSON");
        for set in v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("set"))
        {
            let elems = set["elem"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect();
            out.insert(format!("{family} {}", set["name"].as_str().unwrap_or_default()), elems);
        }
    }
    out
}

fn has(sets: &BTreeMap<String, BTreeSet<String>>, set: &str, elem: &str) -> bool {
    sets.get(set).unwrap_or_else(|| panic!("no set {set}")).contains(elem)
}

/// The full document through `nft` in a fresh namespace, then `m1`'s state.
fn namespace_with_tables(tag: &str) -> (Netns, Applied) {
    let ns = Netns::new(tag).expect("create namespace");
    let cfg = default_config();
    let applied = Applied {
        ruleset: desired_ruleset(&cfg, &Default::default()),
        membership: desired_membership(&cfg, &small_home()),
    };
    let doc = render::full_document(&applied.ruleset, &applied.membership);
    ns.run_in(|| NftCli::default().apply(&doc))
        .expect("enter namespace")
        .expect("nft applies the full document");
    (ns, applied)
}

#[test]
fn moves_elements_in_both_tables_atomically() {
    if !bulkhead_netns::root_or_skip("firewall::netlink::netns_test::moves_elements_in_both_tables_atomically") {
        return;
    }
    let (ns, applied) = namespace_with_tables("nl-move");
    let before = sets(&ns);
    assert!(has(&before, "inet trusted_mac", "02:00:00:00:00:01"));
    assert!(has(&before, "bridge trusted_mac", "02:00:00:00:00:01"));

    // Move mac(1) to iot the way the daemon does: reconcile, which takes the
    // netlink path of NftCli.
    let mut inv = small_home();
    inv.apply(
        &Event::SetZone {
            mac: mac(1),
            zone: zone("iot"),
        },
        1,
    );
    let moved: Membership = desired_membership(&default_config(), &inv);
    let outcome = ns
        .run_in(|| reconcile(&applied, &applied.ruleset, &moved))
        .expect("enter namespace")
        .expect("reconcile");
    assert_eq!(outcome, ApplyOutcome::Delta { added: 3, removed: 3 });
    let after = sets(&ns);
    for family in ["inet", "bridge"] {
        assert!(
            has(&after, &format!("{family} iot_mac"), "02:00:00:00:00:01"),
            "{after:?}"
        );
        assert!(
            !has(&after, &format!("{family} trusted_mac"), "02:00:00:00:00:01"),
            "{after:?}"
        );
    }
    assert!(has(&after, "inet iot_v4", "10.0.1.10") && !has(&after, "inet trusted_v4", "10.0.1.10"));
    assert!(has(&after, "inet iot_v6", "fd00:1::10") && !has(&after, "inet trusted_v6", "fd00:1::10"));
    assert!(
        has(&after, "inet iot_mac", "02:00:00:00:00:02"),
        "untouched element kept"
    );

    // A batch with valid messages before and after one that deletes a missing
    // element: the kernel refuses all of it.
    let bad = delta(
        &[
            ("iot", SetKind::Mac, &["02:00:00:00:00:01"]),
            ("iot", SetKind::V4, &["10.0.2.99"]),
        ],
        &[("guest", SetKind::Mac, &["02:00:00:00:00:01"])],
    );
    let err = ns
        .run_in(|| NetlinkSetWriter.apply(&bad))
        .expect("enter namespace")
        .expect_err("deleting a missing element fails");
    assert!(
        matches!(
            err,
            NetlinkError::Refused {
                errno: Errno::ENOENT,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("delete 1 element from inet bulkhead iot_v4"),
        "{err}"
    );
    assert_eq!(sets(&ns), after, "a refused batch changes nothing");

    // And the next batch goes through (on a fresh socket: the refused one's
    // is not kept). Moving back restores the first state exactly.
    let back = crate::firewall::diff_membership(&moved, &applied.membership);
    ns.run_in(|| NetlinkSetWriter.apply(&back))
        .expect("enter namespace")
        .expect("move back");
    assert_eq!(sets(&ns), before);
}

#[test]
fn blocked_and_tunnel_sets_take_deltas_and_verify_after_read_back() {
    if !bulkhead_netns::root_or_skip(
        "firewall::netlink::netns_test::blocked_and_tunnel_sets_take_deltas_and_verify_after_read_back",
    ) {
        return;
    }
    let ns = Netns::new("nl-decide").expect("create namespace");
    let cfg = crate::testutil::tunnel_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let before = desired_membership(&cfg, &small_home());
    ns.run_in(|| {
        let nft = NftCli::default();
        nft.apply(&render::full_document(&rs, &before))?;
        // The neighbour-advert guards nft cannot load: the kernel takes
        // them, and nft lists them back with their names.
        nft.guard_nd_claims(&render::bridge::ND_CLAIM_RULES)
    })
    .expect("enter namespace")
    .expect("nft applies the tunnel document and the kernel takes the ND guards");
    let mut inv = small_home();
    for e in [
        Event::Block {
            mac: mac(2),
            blocked: true,
        },
        Event::TunnelChoice {
            mac: mac(1),
            route: Some(true),
        },
        Event::TunnelChoice {
            mac: mac(9),
            route: Some(false),
        },
    ] {
        inv.apply(&e, 1);
    }
    let after = desired_membership(&cfg, &inv);
    let applied = Applied {
        ruleset: rs.clone(),
        membership: before,
    };
    let outcome = ns
        .run_in(|| reconcile(&applied, &rs, &after))
        .expect("enter namespace")
        .expect("reconcile");
    // blocked: mac(2)'s MAC and v4; tunnel: mac(1) in, mac(9) from devices to
    // exclude; mac(9), a policy device not seen before, is now known and in
    // the unknown zone's MAC set.
    assert_eq!(outcome, ApplyOutcome::Delta { added: 5, removed: 1 });
    assert!(has(&sets(&ns), "inet quarantine_mac", "02:00:00:00:00:09"));
    let sets = sets(&ns);
    for set in ["inet blocked-mac", "bridge blocked-mac"] {
        assert!(has(&sets, set, "02:00:00:00:00:02"), "{set}: {sets:?}");
    }
    assert!(has(&sets, "inet blocked-v4", "10.0.2.20"));
    assert!(has(&sets, "inet tunnel-devices", "02:00:00:00:00:01"));
    assert!(!has(&sets, "inet tunnel-devices", "02:00:00:00:00:09"));
    assert!(has(&sets, "inet tunnel-exclude-devices", "02:00:00:00:00:09"));
    assert!(
        !sets.contains_key("bridge tunnel-devices"),
        "the tunnel's sets are inet only"
    );
    // What the kernel lists back is what we mean, hyphenated names included.
    let listed = ns
        .run_in(|| {
            let nft = NftCli::default();
            Ok::<_, nftables::helper::NftablesError>([
                nft.list_table(NfFamily::INet)?,
                nft.list_table(NfFamily::Bridge)?,
            ])
        })
        .expect("enter namespace")
        .expect("list");
    crate::firewall::verify(&rs, &after, &listed).expect("verified");
}

#[test]
fn a_delta_larger_than_the_socket_buffer_goes_through() {
    if !bulkhead_netns::root_or_skip(
        "firewall::netlink::netns_test::a_delta_larger_than_the_socket_buffer_goes_through",
    ) {
        return;
    }
    let (ns, _) = namespace_with_tables("nl-large");
    let macs: Vec<MacAddr> = (0..10_000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            MacAddr([2, 0x42, b[0], b[1], b[2], b[3]])
        })
        .collect();
    let mut add = MembershipDelta::default();
    add.push(true, zone("guest").into(), Elements::Mac(macs.clone()));
    let bytes = encode_batch(&add, 1).expect("encode").bytes.len();
    assert!(bytes > 256 * 1024, "bigger than the default send buffer: {bytes}");

    ns.run_in(|| NetlinkSetWriter.apply(&add))
        .expect("enter")
        .expect("add 10,000");
    let after = sets(&ns);
    assert_eq!(after["inet guest_mac"].len(), 10_000);
    assert_eq!(after["bridge guest_mac"].len(), 10_000);

    let mut remove = MembershipDelta::default();
    remove.push(false, zone("guest").into(), Elements::Mac(macs));
    ns.run_in(|| NetlinkSetWriter.apply(&remove))
        .expect("enter")
        .expect("remove 10,000");
    let after = sets(&ns);
    assert!(after["inet guest_mac"].is_empty() && after["bridge guest_mac"].is_empty());
}
