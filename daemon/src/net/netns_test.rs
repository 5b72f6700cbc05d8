//! Root test against a real kernel, inside a throwaway network namespace.
//!
//! Safety: nothing here touches the host's namespace. Every `ip` command
//! runs with `-n <ns>`, and the rtnetlink socket is opened on a dedicated
//! thread only after that thread has entered the namespace and checked that
//! it did.

use serde_json::Value;

use super::{
    apply, vlan_supported, DesiredNet, LinkKind, NetChange, NetPlan, NetReport, SegmentLink, VLAN_UNSUPPORTED,
};

/// A throwaway namespace ([`bulkhead_netns::Netns`], deleted when dropped, also
/// on panic) with the helpers these tests use.
struct Netns(bulkhead_netns::Netns);

impl Netns {
    fn create(tag: &str) -> Self {
        Self(bulkhead_netns::Netns::new(tag).expect("create namespace"))
    }

    /// `ip -n <ns> <args>`: runs inside the namespace only; stdout, and panics
    /// unless it succeeds.
    fn ip(&self, args: &[&str]) -> String {
        let out = self.0.ip(args).unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ip(&full)).expect("ip -j prints JSON")
    }

    /// Runs `f` with an rtnetlink handle opened inside the namespace.
    fn with_rtnetlink<T, F, Fut>(&self, f: F) -> T
    where
        T: Send,
        F: FnOnce(rtnetlink::Handle) -> Fut + Send,
        Fut: std::future::Future<Output = T>,
    {
        super::in_netns::with_rtnetlink_in(self.0.path(), f)
    }
}

/// Observes, plans and applies in the namespace; returns plan and report.
fn reconcile_in(ns: &Netns, desired: &DesiredNet) -> (NetPlan, NetReport) {
    let desired = desired.clone();
    ns.with_rtnetlink(move |handle| async move {
        crate::net::reconcile(&mut crate::net::RtnetlinkNet { handle }, &desired)
            .await
            .expect("reconcile")
    })
}

fn link<'a>(links: &'a Value, name: &str) -> &'a Value {
    links
        .as_array()
        .and_then(|a| a.iter().find(|l| l["ifname"] == name))
        .unwrap_or_else(|| panic!("no link {name} in {links}"))
}

fn is_up(link: &Value) -> bool {
    link["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"))
}

fn has_addr(addrs: &Value, ifname: &str, local: &str, prefix: u64) -> bool {
    link(addrs, ifname)["addr_info"]
        .as_array()
        .is_some_and(|a| a.iter().any(|i| i["local"] == local && i["prefixlen"] == prefix))
}

#[test]
fn bridge_segment_in_netns() {
    if !bulkhead_netns::root_or_skip("net::netns_test::bridge_segment_in_netns") {
        return;
    }
    let ns = Netns::create("net-br");
    for (a, b) in [("p1", "p1x"), ("p2", "p2x")] {
        ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    }
    // p2 starts enslaved to a bridge Bulkhead does not manage: it must move.
    ns.ip(&["link", "add", "brx", "type", "bridge"]);
    ns.ip(&["link", "set", "p2", "master", "brx"]);

    let desired = DesiredNet {
        segments: vec![SegmentLink {
            interface: "br-test".into(),
            kind: LinkKind::Bridge {
                ports: vec!["p1".into(), "p2".into()],
            },
            addresses: vec![
                "10.9.0.1/24".parse().expect("literal"),
                "fd00:9::1/64".parse().expect("literal"),
            ],
        }],
    };

    let (first_plan, first) = reconcile_in(&ns, &desired);
    assert!(first_plan.problems.is_empty(), "{first_plan:?}");
    assert_eq!(first.applied, first_plan.changes);
    assert!(first.already.is_empty());
    assert!(first
        .applied
        .contains(&NetChange::CreateBridge { name: "br-test".into() }));

    let links = ns.ip_json(&["-d", "link", "show"]);
    let bridge = link(&links, "br-test");
    assert_eq!(bridge["linkinfo"]["info_kind"], "bridge", "{bridge}");
    assert!(is_up(bridge), "{bridge}");
    for port in ["p1", "p2"] {
        let p = link(&links, port);
        assert_eq!(p["master"], "br-test", "{p}");
        assert!(is_up(p), "{p}");
    }
    let addrs = ns.ip_json(&["addr", "show"]);
    assert!(has_addr(&addrs, "br-test", "10.9.0.1", 24), "{addrs}");
    assert!(has_addr(&addrs, "br-test", "fd00:9::1", 64), "{addrs}");

    // An address someone else added must survive reconciling.
    ns.ip(&["addr", "add", "10.9.0.99/24", "dev", "br-test"]);

    let (second_plan, second) = reconcile_in(&ns, &desired);
    assert_eq!(second_plan, NetPlan::default());
    assert_eq!(second, NetReport::default());
    let addrs = ns.ip_json(&["addr", "show"]);
    assert!(has_addr(&addrs, "br-test", "10.9.0.99", 24), "{addrs}");

    // Replaying the stale first plan: creations and addresses come back as
    // "already exists", which is success.
    let stale = first_plan.clone();
    let replay = ns.with_rtnetlink(move |handle| async move { apply(&handle, &stale).await.expect("replay applies") });
    let already: Vec<_> = first_plan
        .changes
        .iter()
        .filter(|c| matches!(c, NetChange::CreateBridge { .. } | NetChange::AddAddress { .. }))
        .cloned()
        .collect();
    assert_eq!(replay.already, already);
}

/// Ignored by default rather than passing silently where VLANs cannot be
/// made; `cargo test -- --ignored` runs it and fails loudly if unsupported.
#[test]
#[ignore = "needs root and the 8021q module (see vlan_supported)"]
fn vlan_segment_in_netns() {
    if !bulkhead_netns::root_or_skip("net::netns_test::vlan_segment_in_netns") {
        return;
    }
    assert!(vlan_supported(), "{VLAN_UNSUPPORTED}");
    let ns = Netns::create("net-vlan");
    ns.ip(&["link", "add", "d0", "type", "dummy"]);
    let desired = DesiredNet {
        segments: vec![SegmentLink {
            interface: "d0.10".into(),
            kind: LinkKind::Vlan {
                parent: "d0".into(),
                id: 10,
            },
            addresses: vec!["10.10.0.1/24".parse().expect("literal")],
        }],
    };
    let (first_plan, _) = reconcile_in(&ns, &desired);
    assert!(first_plan.problems.is_empty(), "{first_plan:?}");
    let links = ns.ip_json(&["-d", "link", "show"]);
    let vlan = link(&links, "d0.10");
    assert_eq!(vlan["link"], "d0", "{vlan}");
    assert_eq!(vlan["linkinfo"]["info_kind"], "vlan", "{vlan}");
    assert_eq!(vlan["linkinfo"]["info_data"]["id"], 10, "{vlan}");
    let (second_plan, _) = reconcile_in(&ns, &desired);
    assert_eq!(second_plan, NetPlan::default());
}
