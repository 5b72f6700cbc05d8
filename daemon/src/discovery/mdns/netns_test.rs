//! Root test over real links, in throwaway namespaces (never the host's):
//!
//! ```text
//!  dev (announces)          rtr (browses lan0 only)         wan (announces)
//!  d0 10.77.0.30/24 ──veth── lan0 10.77.0.1/24
//!                            wan0 10.78.0.1/24 ──veth── w0 10.78.0.30/24
//! ```
//!
//! The browser must see the device's services (a fixed type, and a type only
//! the meta-query names), must not see the service behind `wan0`, and must not
//! send a single mDNS packet out of `wan0` (counted by nftables in `rtr`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bulkhead_netns::Netns;
use serde_json::Value;

use super::*;

const DEV_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 30);
const WAN_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 30);

fn spec(interface: &str, ty: &str, instance: &str, host: &str, ip: Ipv4Addr) -> AnnounceSpec {
    AnnounceSpec {
        interface: interface.into(),
        service_type: ty.into(),
        instance: instance.into(),
        host: host.into(),
        addresses: vec![IpAddr::V4(ip)],
        port: 8009,
        txt: vec![("md".into(), "Chromecast".into()), ("fn".into(), "Living Room".into())],
    }
}

/// `ip -n` commands that must succeed.
fn ip(ns: &Netns, commands: &[&str]) {
    ns.ip_batch(commands).expect("ip commands in the test namespace");
}

/// Packets counted by the rule with `comment` in the test table of `ns`.
fn nft_counter(ns: &Netns, comment: &str) -> u64 {
    let out = ns
        .exec(&["nft", "-j", "list", "chain", "inet", "mdnstest", "out"])
        .expect("nft list");
    let json: Value = serde_json::from_slice(&out.stdout).expect("nft -j prints JSON");
    let rules = json["nftables"].as_array().expect("nftables array");
    rules
        .iter()
        .filter_map(|item| item.get("rule"))
        .find(|rule| rule["comment"] == comment)
        .and_then(|rule| {
            rule["expr"]
                .as_array()?
                .iter()
                .find_map(|e| e.get("counter")?.get("packets")?.as_u64())
        })
        .unwrap_or_else(|| panic!("no counter {comment} in {json}"))
}

#[test]
fn browser_sees_lan_services_and_nothing_of_a_disabled_interface() {
    if !bulkhead_netns::root_or_skip(
        "discovery::mdns::netns_test::browser_sees_lan_services_and_nothing_of_a_disabled_interface",
    ) {
        return;
    }
    let rtr = Netns::new("mdns-rtr").expect("router namespace");
    let dev = Netns::new("mdns-dev").expect("device namespace");
    let wan = Netns::new("mdns-wan").expect("wan namespace");
    ip(
        &dev,
        &[
            &format!("link add d0 type veth peer name lan0 netns {}", rtr.name()),
            "addr add 10.77.0.30/24 dev d0",
            "link set d0 up",
        ],
    );
    ip(
        &wan,
        &[
            &format!("link add w0 type veth peer name wan0 netns {}", rtr.name()),
            "addr add 10.78.0.30/24 dev w0",
            "link set w0 up",
        ],
    );
    ip(
        &rtr,
        &[
            "addr add 10.77.0.1/24 dev lan0",
            "link set lan0 up",
            "addr add 10.78.0.1/24 dev wan0",
            "link set wan0 up",
        ],
    );
    for command in [
        "add table inet mdnstest",
        "add chain inet mdnstest out { type filter hook output priority 0; }",
        "add rule inet mdnstest out oifname \"lan0\" udp dport 5353 counter comment \"lan\"",
        "add rule inet mdnstest out oifname \"wan0\" udp dport 5353 counter comment \"wan\"",
    ] {
        rtr.exec(&["nft", command]).expect("nft in the router namespace");
    }

    // The device: a Chromecast, and a type no fixed list has (only the
    // meta-query can name it). The far side: the same type, on the WAN.
    let tv = spec("d0", "_googlecast._tcp", "Living Room TV", "livingroom-tv", DEV_IP);
    let probe = spec("d0", "_bhmeta._tcp", "Meta Probe", "livingroom-tv", DEV_IP);
    let far = spec("w0", "_googlecast._tcp", "Wrong Side", "wrongside", WAN_IP);
    let dev_daemon = dev
        .run_in(move || {
            let daemon = announce(&tv)?;
            let (info, _) = service_info_of(&probe)?;
            daemon.register(info).map_err(|source| MdnsError::Daemon {
                context: "registering the probe",
                source,
            })?;
            Ok::<_, MdnsError>(daemon)
        })
        .expect("run in dev")
        .expect("announce in dev");
    let wan_daemon = wan
        .run_in(move || announce(&far))
        .expect("run in wan")
        .expect("announce in wan");
    // Let both finish probing, so the first queries are answered.
    std::thread::sleep(Duration::from_millis(1200));

    let mut browser = rtr
        .run_in(|| Browser::start(&BrowserConfig::new(vec!["lan0".into()])))
        .expect("run in rtr")
        .expect("browser starts");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let mut seen: Vec<MdnsObservation> = Vec::new();
    let (mut tv_at, mut probe_at) = (None, None);
    // Listen for 6 s in all: long enough for the browser's first queries and
    // retransmissions, so a leak from wan0 would have shown up.
    while let Some(left) = Duration::from_secs(6).checked_sub(started.elapsed()) {
        let Ok(next) = runtime.block_on(async { tokio::time::timeout(left, browser.next()).await }) else {
            break;
        };
        let observation = next.expect("the browser keeps running");
        let services = &observation.evidence.mdns_services;
        if services.contains("_googlecast._tcp") && observation.evidence.mdns_names.contains("Living Room TV") {
            tv_at.get_or_insert(started.elapsed());
        }
        if services.contains("_bhmeta._tcp") {
            probe_at.get_or_insert(started.elapsed());
        }
        seen.push(observation);
    }

    eprintln!("mDNS over veth: Chromecast after {tv_at:?}, meta-query type after {probe_at:?}");
    let tv_at = tv_at.unwrap_or_else(|| panic!("no Chromecast observation; saw {seen:#?}"));
    assert!(tv_at < Duration::from_secs(5), "Chromecast seen only after {tv_at:?}");
    let probe_at = probe_at.unwrap_or_else(|| panic!("meta-query type never browsed; saw {seen:#?}"));
    assert!(
        probe_at < Duration::from_secs(5),
        "meta-query type seen only after {probe_at:?}"
    );
    let o = seen
        .iter()
        .find(|o| o.evidence.mdns_names.contains("Living Room TV"))
        .expect("found above");
    assert_eq!(o.addresses, vec![IpAddr::V4(DEV_IP)]);
    assert_eq!(o.interface.as_deref(), Some("lan0"));
    assert!(o.evidence.mdns_names.contains("livingroom-tv"), "{o:#?}");
    assert_eq!(o.evidence.txt.get("md").map(String::as_str), Some("Chromecast"));
    assert_eq!(o.evidence.txt.get("fn").map(String::as_str), Some("Living Room"));

    for o in &seen {
        assert!(
            !o.evidence.mdns_names.contains("Wrong Side"),
            "WAN service leaked: {o:#?}"
        );
        assert!(!o.addresses.contains(&IpAddr::V4(WAN_IP)), "WAN address leaked: {o:#?}");
        assert_eq!(o.interface.as_deref(), Some("lan0"), "{o:#?}");
    }
    let counters = browser.counters();
    assert!(counters.resolved >= 2, "{counters:?}");
    assert_eq!(counters.dropped_malformed, 0, "{counters:?}");
    assert!(counters.types_seen > FIXED_TYPES.len() as u64, "{counters:?}");

    assert!(nft_counter(&rtr, "lan") > 0, "the browser queried lan0");
    // `udp dport` in an inet table counts IPv4 and IPv6 alike.
    assert_eq!(nft_counter(&rtr, "wan"), 0, "mDNS sent out of the disabled wan0");

    browser.shutdown();
    for daemon in [dev_daemon, wan_daemon] {
        if let Ok(done) = daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
    }
}
