//! Root test against a real kernel, inside a throwaway network namespace.
//!
//! Safety: nothing here touches the host's namespace. Every `ip` command runs
//! with `-n <ns>`, and the rtnetlink socket is opened on a thread that has
//! joined the namespace (`Netns::run_in`) and checked that it did. The
//! namespace is deleted on drop, also when an assertion fails.

use std::future::Future;
use std::process::Command;

use bulkhead_netns::Netns;

use super::*;

/// Runs `f` with an rtnetlink handle opened inside `ns`.
fn in_ns<T, Fut>(ns: &Netns, f: impl FnOnce(Handle) -> Fut + Send) -> T
where
    T: Send,
    Fut: Future<Output = T>,
{
    crate::net::in_netns::with_rtnetlink_in(ns.path(), f)
}

fn reconcile_in(ns: &Netns, desired: &DesiredRouting) -> RoutingReport {
    in_ns(ns, |handle| async move {
        reconcile(&handle, desired).await.expect("reconcile")
    })
}

/// `ip -n <ns> args…`, stdout; panics unless it succeeds.
fn ip(ns: &Netns, args: &[&str]) -> String {
    let out = ns.ip(args).unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -n <ns> args…` that may fail: success and stdout + stderr.
fn ip_any(ns: &Netns, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["-n", ns.name()])
        .args(args)
        .output()
        .expect("run ip");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ifindex(ns: &Netns, name: &str) -> u32 {
    let json: serde_json::Value =
        serde_json::from_str(&ip(ns, &["-j", "link", "show", "dev", name])).expect("ip -j prints JSON");
    let index = json[0]["ifindex"].as_u64().expect("ifindex");
    u32::try_from(index).expect("ifindex fits u32")
}

/// A link standing in for the TUN device, with the tunnel's addresses, up.
/// A veth pair (its peer up too, for carrier) rather than a dummy: the
/// `dummy` module is not everywhere. Deleting the link deletes the pair.
fn add_tunnel(ns: &Netns, name: &str) -> u32 {
    add_link(ns, name);
    ip(ns, &["addr", "add", "10.64.0.2/32", "dev", name]);
    ip(ns, &["addr", "add", "fd64::2/128", "dev", name, "nodad"]);
    ip(ns, &["link", "set", name, "up"]);
    ifindex(ns, name)
}

/// The lines of `ip [-6] rule` with our priority.
fn rules_at_our_priority(ns: &Netns, family: &str) -> Vec<String> {
    ip(ns, &[family, "rule", "show"])
        .lines()
        .filter(|l| l.starts_with(&format!("{RULE_PRIORITY}:")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn table(ns: &Netns, family: &str) -> Vec<String> {
    ip(ns, &[family, "route", "show", "table", &ROUTE_TABLE.to_string()])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// A veth pair `name` + `name`p, both up.
fn add_link(ns: &Netns, name: &str) {
    let peer = format!("{name}p");
    ip(ns, &["link", "add", name, "type", "veth", "peer", "name", &peer]);
    ip(ns, &["link", "set", &peer, "up"]);
}

const OUR_RULE: &str = "10200: from all fwmark 0x20000000/0x20000000 lookup 25192";
const MARK: &str = "0x20000000";

#[test]
fn tunnel_routing_in_netns() {
    if !bulkhead_netns::root_or_skip("tunnel::routing::netns_test::tunnel_routing_in_netns") {
        return;
    }
    let ns = Netns::new("tunroute").expect("namespace");
    // The WAN: the main table's default routes.
    add_link(&ns, "w0");
    ip(&ns, &["addr", "add", "192.0.2.2/24", "dev", "w0"]);
    ip(&ns, &["addr", "add", "2001:db8::2/64", "dev", "w0", "nodad"]);
    ip(&ns, &["link", "set", "w0", "up"]);
    ip(&ns, &["route", "add", "default", "via", "192.0.2.1", "dev", "w0"]);
    ip(
        &ns,
        &["-6", "route", "add", "default", "via", "2001:db8::1", "dev", "w0"],
    );
    // Someone else's rules at our priority (one with our very mark and mask,
    // but another table) and someone else's table.
    ip(
        &ns,
        &["rule", "add", "fwmark", "0x100", "lookup", "100", "priority", "10200"],
    );
    ip(
        &ns,
        &[
            "-6", "rule", "add", "fwmark", "0x100", "lookup", "100", "priority", "10200",
        ],
    );
    ip(
        &ns,
        &[
            "rule",
            "add",
            "fwmark",
            "0x20000000/0x20000000",
            "lookup",
            "101",
            "priority",
            "10200",
        ],
    );
    ip(&ns, &["route", "add", "198.51.100.0/24", "dev", "w0", "table", "100"]);
    let foreign_rules_v4 = rules_at_our_priority(&ns, "-4");
    let foreign_rules_v6 = rules_at_our_priority(&ns, "-6");
    assert_eq!(foreign_rules_v4.len(), 2, "{foreign_rules_v4:?}");

    let t0 = add_tunnel(&ns, "t0");
    let running = TunnelRouting {
        tunnel_ifindex: Some(t0),
        ipv4: true,
        ipv6: true,
    };
    let desired = plan(Some(&running));

    // First run: everything is added.
    let first = reconcile_in(&ns, &desired);
    assert_eq!(first.applied.len(), 6, "{first:?}");
    assert!(first.already.is_empty(), "{first:?}");

    for family in ["-4", "-6"] {
        let rules = rules_at_our_priority(&ns, family);
        assert!(rules.iter().any(|r| r == OUR_RULE), "{family} {rules:?}");
    }
    let v4 = table(&ns, "-4");
    assert!(
        v4.contains(&"blackhole default proto static metric 4294967295".to_owned()),
        "{v4:?}"
    );
    assert!(
        v4.contains(&"default dev t0 proto static scope link".to_owned()),
        "{v4:?}"
    );
    assert_eq!(v4.len(), 2, "{v4:?}");
    let v6 = table(&ns, "-6");
    assert!(
        v6.iter()
            .any(|r| r.starts_with("blackhole default") && r.contains("metric 4294967295")),
        "{v6:?}"
    );
    assert!(
        v6.iter()
            .any(|r| r.starts_with("default dev t0 proto static metric 1024")),
        "{v6:?}"
    );
    assert_eq!(v6.len(), 2, "{v6:?}");

    // Marked traffic goes through the tunnel, unmarked through the WAN.
    let (ok, out) = ip_any(&ns, &["route", "get", "1.1.1.1", "mark", MARK]);
    assert!(ok && out.contains("dev t0") && out.contains("table 25192"), "{out}");
    let (ok, out) = ip_any(&ns, &["-6", "route", "get", "2606:4700::1111", "mark", MARK]);
    assert!(ok && out.contains("dev t0") && out.contains("table 25192"), "{out}");
    let (ok, out) = ip_any(&ns, &["route", "get", "1.1.1.1"]);
    assert!(ok && out.contains("dev w0"), "{out}");
    let (ok, out) = ip_any(&ns, &["-6", "route", "get", "2606:4700::1111"]);
    assert!(ok && out.contains("dev w0"), "{out}");

    // Second run: nothing to do, not even an "already".
    let second = reconcile_in(&ns, &desired);
    assert_eq!(second, RoutingReport::default());
    // Replaying an add is "already exists", i.e. success.
    let replay = in_ns(&ns, |handle| async move {
        apply(
            &handle,
            &[
                RoutingChange::AddRule(Family::V4),
                RoutingChange::AddRoute(TableRoute::blackhole(Family::V6)),
            ],
        )
        .await
        .expect("replay")
    });
    assert!(replay.applied.is_empty() && replay.already.len() == 2, "{replay:?}");

    // Loose reverse-path filtering on the tunnel only.
    let rp = ns.run_in(|| {
        set_loose_rp_filter("t0").expect("set rp_filter");
        let t0 = std::fs::read_to_string("/proc/sys/net/ipv4/conf/t0/rp_filter").expect("read");
        let all = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter").expect("read");
        (t0, all)
    });
    let (rp_t0, _) = rp.expect("run in the namespace");
    assert_eq!(rp_t0.trim(), "2");
    assert!(ns.run_in(|| set_loose_rp_filter("../all")).expect("run").is_err());

    // The daemon dies: the TUN device goes, the kernel drops its routes, and
    // marked traffic hits the blackhole instead of leaking to the WAN.
    ip(&ns, &["link", "del", "t0"]);
    assert_eq!(
        table(&ns, "-4"),
        vec!["blackhole default proto static metric 4294967295".to_owned()]
    );
    let v6 = table(&ns, "-6");
    assert!(v6.len() == 1 && v6[0].starts_with("blackhole default"), "{v6:?}");
    // `ip route get` answers a blackhole with EINVAL (no route at all
    // would be ENETUNREACH).
    let (ok, out) = ip_any(&ns, &["route", "get", "1.1.1.1", "mark", MARK]);
    assert!(!ok && out.contains("Invalid argument"), "{out}");
    let (ok, out) = ip_any(&ns, &["-6", "route", "get", "2606:4700::1111", "mark", MARK]);
    assert!(!ok && out.contains("Invalid argument"), "{out}");
    let (ok, out) = ip_any(&ns, &["route", "get", "1.1.1.1"]);
    assert!(ok && out.contains("dev w0"), "{out}");

    // The daemon, restarted before its TUN device is back, finds nothing to do.
    let waiting = plan(Some(&TunnelRouting {
        tunnel_ifindex: None,
        ..running
    }));
    assert_eq!(reconcile_in(&ns, &waiting), RoutingReport::default());

    // A new TUN device (another ifindex), IPv4 only this time.
    let t1 = add_tunnel(&ns, "t1");
    assert_ne!(t0, t1);
    let v4_only = plan(Some(&TunnelRouting {
        tunnel_ifindex: Some(t1),
        ipv4: true,
        ipv6: false,
    }));
    let report = reconcile_in(&ns, &v4_only);
    assert_eq!(
        report.applied,
        vec![RoutingChange::AddRoute(TableRoute::via_tunnel(Family::V4, t1))]
    );
    let (ok, out) = ip_any(&ns, &["route", "get", "1.1.1.1", "mark", MARK]);
    assert!(ok && out.contains("dev t1"), "{out}");
    // No IPv6 on the tunnel: marked IPv6 still must not take the WAN.
    let (ok, out) = ip_any(&ns, &["-6", "route", "get", "2606:4700::1111", "mark", MARK]);
    assert!(!ok && out.contains("Invalid argument"), "{out}");
    // A stray route in our table is ours to remove.
    ip(&ns, &["route", "add", "203.0.113.0/24", "dev", "t1", "table", "25192"]);
    let report = reconcile_in(&ns, &v4_only);
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert!(
        matches!(&report.applied[0], RoutingChange::DeleteRoute(r) if r.destination.to_string() == "203.0.113.0/24")
    );

    // Tunnel removed from the config: our rules and table go, nothing else.
    let removed = in_ns(
        &ns,
        |handle| async move { remove_all(&handle).await.expect("remove_all") },
    );
    assert_eq!(removed.applied.len(), 5, "{removed:?}");
    assert_eq!(rules_at_our_priority(&ns, "-4"), foreign_rules_v4);
    assert_eq!(rules_at_our_priority(&ns, "-6"), foreign_rules_v6);
    assert_eq!(table(&ns, "-4"), Vec::<String>::new());
    assert_eq!(table(&ns, "-6"), Vec::<String>::new());
    let foreign = table_of(&ns, "100");
    assert_eq!(foreign, vec!["198.51.100.0/24 dev w0 scope link".to_owned()]);
    let (ok, out) = ip_any(&ns, &["route", "get", "1.1.1.1", "mark", MARK]);
    assert!(ok && out.contains("dev w0"), "{out}");

    // Removing again: nothing to do; deleting what is gone is "already".
    let again = in_ns(
        &ns,
        |handle| async move { remove_all(&handle).await.expect("remove_all") },
    );
    assert_eq!(again, RoutingReport::default());
    let gone = in_ns(&ns, |handle| async move {
        apply(
            &handle,
            &[
                RoutingChange::DeleteRule(Family::V6),
                RoutingChange::DeleteRoute(TableRoute::blackhole(Family::V4)),
                RoutingChange::DeleteRoute(TableRoute::via_tunnel(Family::V6, t1)),
            ],
        )
        .await
        .expect("deleting what is gone")
    });
    assert!(gone.applied.is_empty() && gone.already.len() == 3, "{gone:?}");
}

fn table_of(ns: &Netns, id: &str) -> Vec<String> {
    ip(ns, &["route", "show", "table", id])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}
