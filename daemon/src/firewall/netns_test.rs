//! Root tests of the firewall documents against the real `nft`.
//!
//! `nft -c` (check mode) runs where the test runs, in the host's namespace: the
//! kernel parses and validates the documents and nothing is applied. The
//! netlink set writer's root tests, in throwaway namespaces, are in
//! `netlink/netns_test.rs`.

use super::render;
use super::tests::{decided_inventory, edge_ruleset, sample_inventory};
use crate::policy::{desired_membership, desired_ruleset};
use crate::testutil::{config_with, default_config};

/// Whether `nft` is there; without it, under CI=true the test fails, elsewhere it
/// is skipped (say so and return false).
fn nft_or_skip(test: &str) -> bool {
    if std::process::Command::new("nft").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs nft (install nftables), and CI=true forbids skipping it");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs nft");
    false
}

/// The rendered documents must be accepted by the real `nft` (check mode: parsed
/// and validated against the kernel, nothing applied).
#[test]
fn real_nft_accepts_the_documents() {
    if !bulkhead_netns::root_or_skip("firewall::netns_test::real_nft_accepts_the_documents")
        || !nft_or_skip("firewall::netns_test::real_nft_accepts_the_documents")
    {
        return;
    }
    let cfg = default_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &sample_inventory());
    let json = serde_json::to_string(&render::full_document(&rs, &m)).expect("json");
    let out = nftables::helper::apply_ruleset_raw(&json, Some("nft"), ["-c"]);
    assert!(out.is_ok(), "nft -c refused the document: {out:?}");
    let cfg = crate::testutil::tunnel_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &decided_inventory());
    let json = serde_json::to_string(&render::full_document(&rs, &m)).expect("json");
    let out = nftables::helper::apply_ruleset_raw(&json, Some("nft"), ["-c"]);
    assert!(out.is_ok(), "nft -c refused the tunnel document: {out:?}");
    // Casting shared: concatenated pinhole sets holding an element, in both tables.
    let cfg = super::tests::sharing_config();
    let rs = desired_ruleset(&cfg, &Default::default());
    let m = desired_membership(&cfg, &sample_inventory());
    let held = render::Holdings {
        pinholes: [(
            crate::config::ZoneId::new("guest").expect("zone"),
            vec![super::Pinhole {
                address: "10.0.2.30".parse().expect("ip"),
                transport: crate::config::Transport::Tcp,
                port: 8009,
            }],
        )]
        .into(),
        ..Default::default()
    };
    let json = serde_json::to_string(&render::full_document_holding(&rs, &m, &held)).expect("json");
    let out = nftables::helper::apply_ruleset_raw(&json, Some("nft"), ["-c"]);
    assert!(out.is_ok(), "nft -c refused the sharing document: {out:?}");
    // A router being set up: no segments (no LAN interface to name; nft refuses
    // an empty anonymous set), with and without an existing bridge's ports.
    let main = "policies_dir = \"policies\"\n[wan]\ninterface = \"wan0\"\n";
    let cfg = config_with(main, &[]);
    for rs in [desired_ruleset(&cfg, &Default::default()), edge_ruleset()] {
        let json = serde_json::to_string(&render::full_document(&rs, &Default::default())).expect("json");
        let out = nftables::helper::apply_ruleset_raw(&json, Some("nft"), ["-c"]);
        assert!(out.is_ok(), "nft -c refused the document without segments: {out:?}");
    }
}

/// A document nft refuses: the error says what nft said (its stderr used to
/// go to the daemon's own stderr, unlabelled, and the error said only
/// "did not return successfully").
#[test]
fn a_refused_document_carries_nfts_complaint() {
    if !bulkhead_netns::root_or_skip("firewall::netns_test::a_refused_document_carries_nfts_complaint")
        || !nft_or_skip("firewall::netns_test::a_refused_document_carries_nfts_complaint")
    {
        return;
    }
    use super::NftBackend;
    let ns = bulkhead_netns::Netns::new("nfterr").expect("namespace");
    let doc: nftables::schema::Nftables<'static> = serde_json::from_str(
        r#"{"nftables":[{"add":{"rule":{"family":"inet","table":"no-such-table","chain":"c","expr":[{"accept":null}]}}}]}"#,
    )
    .expect("document");
    let err = ns
        .run_in(|| super::NftCli::default().apply(&doc))
        .expect("ran in the namespace")
        .expect_err("nft must refuse it");
    let text = super::error_chain(&err);
    assert!(text.contains("No such file or directory"), "{text}");
}
