//! Root tests against a real kernel: the homeowner's block and per-device tunnel
//! choice, applied by `DaemonState` as set deltas, do what they say to real
//! traffic. A home in throwaway namespaces (`bulkhead_netns::Home`); the bridges
//! are made by hand in the router namespace (the daemon's net module is not under
//! test here); the state runs its `nft` and netlink calls (nf_tables and
//! ctnetlink) from a thread inside the router namespace. Nothing touches the
//! host's namespace.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bulkhead_netns::{tcp_probe, Home, HomeSpec, HostSpec, SegmentSpec, TcpSession};

use super::*;
use crate::config::ZoneId;
use crate::control::{Request, Response};
use crate::firewall::{ConntrackNetlink, NftCli};

/// Long enough for a dropped SYN to count as blocked, short enough for a suite.
const PROBE: Duration = Duration::from_millis(700);

const MAIN: &str = r#"
policies_dir = "policies"
state_dir = "state"

[wan]
interface = "wan0"

[[segments]]
name = "lan"
interface = "br-lan"
kind = "bridge"
ports = ["lan-laptop", "lan-phone"]
ipv4 = "10.0.1.1/24"
ipv6 = "fd00:1::1/64"

[[segments]]
name = "iot"
interface = "br-iot"
kind = "bridge"
ports = ["iot-plug", "iot-pc"]
ipv4 = "10.0.2.1/24"
"#;

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0x77, 0, n])
}

/// laptop and phone (trusted) share br-lan; plug (iot) and pc (trusted) share
/// br-iot. Responders: TCP banner on 80 and echo on 7 everywhere, a banner on
/// the router's port 53.
fn build_home() -> Home {
    let net = |s: &str| s.parse::<ipnet::Ipv4Net>().expect("net");
    let net6 = |s: &str| s.parse::<ipnet::Ipv6Net>().expect("net");
    let spec = HomeSpec {
        segments: vec![
            SegmentSpec::new("lan", net("10.0.1.1/24")).with_ipv6(net6("fd00:1::1/64")),
            SegmentSpec::new("iot", net("10.0.2.1/24")),
        ],
        hosts: vec![
            HostSpec::new("laptop", "lan", mac(1).0)
                .with_ipv4(net("10.0.1.10/24"))
                .with_ipv6(net6("fd00:1::10/64")),
            HostSpec::new("phone", "lan", mac(2).0).with_ipv4(net("10.0.1.11/24")),
            HostSpec::new("plug", "iot", mac(3).0).with_ipv4(net("10.0.2.20/24")),
            HostSpec::new("pc", "iot", mac(4).0).with_ipv4(net("10.0.2.30/24")),
        ],
    };
    let home = Home::new(&spec).expect("home");
    home.router()
        .ip_batch(&[
            "link add br-lan type bridge",
            "link add br-iot type bridge",
            "link set lan-laptop master br-lan",
            "link set lan-phone master br-lan",
            "link set iot-plug master br-iot",
            "link set iot-pc master br-iot",
            "addr add 10.0.1.1/24 dev br-lan",
            "addr add fd00:1::1/64 dev br-lan nodad",
            "addr add 10.0.2.1/24 dev br-iot",
            "link set br-lan up",
            "link set br-iot up",
        ])
        .expect("bridges");
    home.start_tcp_listener("router", 53).expect("router listener");
    home
}

/// The state with every host known and placed, rules applied in the router.
fn state_in(home: &Home, config: Config) -> DaemonState {
    let store = Store::in_memory(0).expect("store");
    let mut state =
        DaemonState::new(config, store, Box::new(NftCli::default()), Box::new(ConntrackNetlink)).expect("state");
    let hosts = [
        (1, "10.0.1.10", "trusted"),
        (1, "fd00:1::10", "trusted"),
        (2, "10.0.1.11", "trusted"),
        (3, "10.0.2.20", "iot"),
        (4, "10.0.2.30", "trusted"),
    ];
    home.router()
        .run_in(|| {
            state.reconcile().expect("first apply");
            for (n, ip, zone) in hosts {
                let add = Request::AddDevice {
                    mac: mac(n),
                    ip: Some(ip.parse().expect("ip")),
                };
                assert!(matches!(state.handle(add, 1), Response::Done { .. }));
                let set = Request::SetZone {
                    mac: mac(n),
                    zone: ZoneId::new(zone).expect("zone"),
                };
                assert!(matches!(state.handle(set, 1), Response::Done { .. }));
            }
        })
        .expect("router namespace");
    state
}

fn handle(home: &Home, state: &mut DaemonState, req: Request) {
    let r = home.router().run_in(|| state.handle(req, 2)).expect("router namespace");
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
}

fn reach(home: &Home, from: &str, to: IpAddr, port: u16) -> bool {
    tcp_probe(home.ns(from).expect("ns"), SocketAddr::new(to, port), PROBE).expect("probe")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn a_blocked_device_gets_nothing_and_unblocking_gives_back_its_zone() {
    if !bulkhead_netns::root_or_skip(
        "core::netns_test::a_blocked_device_gets_nothing_and_unblocking_gives_back_its_zone",
    ) {
        return;
    }
    let home = build_home();
    let mut state = state_in(&home, crate::testutil::config_with(MAIN, &[]));
    let internet = IpAddr::V4(home.internet_v4());
    // What the laptop may do as a trusted device, and others to it.
    let checks = |expect: bool| {
        let cases = [
            ("laptop", internet, 80, "laptop -> internet"),
            ("laptop", ip("fd00:1::1"), 53, "laptop -> router DNS over IPv6"),
            ("laptop", ip("10.0.1.11"), 80, "laptop -> phone, same bridge"),
            ("laptop", ip("10.0.2.20"), 80, "laptop -> plug, routed"),
            ("laptop", ip("10.0.1.1"), 53, "laptop -> router DNS"),
            ("phone", ip("10.0.1.10"), 80, "phone -> laptop, same bridge"),
            ("pc", ip("10.0.1.10"), 80, "pc -> laptop, routed"),
        ];
        for (from, to, port, what) in cases {
            assert_eq!(reach(&home, from, to, port), expect, "{what}");
        }
        // Others are never affected.
        assert!(reach(&home, "phone", internet, 80), "phone -> internet");
        assert!(reach(&home, "pc", ip("10.0.1.11"), 80), "pc -> phone");
    };
    checks(true);
    let mut session = TcpSession::open(home.ns("laptop").expect("ns"), SocketAddr::new(internet, 7), PROBE)
        .expect("session to the internet");
    assert!(session.roundtrip(PROBE));

    let full = state.enforcer.stats().full_applies;
    handle(
        &home,
        &mut state,
        Request::Block {
            mac: mac(1),
            blocked: true,
        },
    );
    assert_eq!(
        state.enforcer.stats().full_applies,
        full,
        "blocking is an element delta"
    );
    assert!(!session.roundtrip(PROBE), "an open connection ends with the block");
    checks(false);

    handle(
        &home,
        &mut state,
        Request::Block {
            mac: mac(1),
            blocked: false,
        },
    );
    assert_eq!(state.enforcer.stats().full_applies, full);
    checks(true);
}

#[test]
fn a_tunnel_choice_moves_one_device_in_or_out_of_the_tunnel_mark() {
    if !bulkhead_netns::root_or_skip("core::netns_test::a_tunnel_choice_moves_one_device_in_or_out_of_the_tunnel_mark")
    {
        return;
    }
    let home = build_home();
    // A tunnel whose interface does not exist: marked traffic can leave by
    // nowhere (the forward leak guard drops it), so "reaches the internet" here
    // means "not marked". iot is a tunnel zone.
    let mut config = crate::testutil::config_with(MAIN, &[]);
    let mut tunnel = crate::testutil::tunnel_config().tunnel.expect("tunnel");
    // Not the internet host's address: the endpoint's own address is never
    // marked.
    for peer in &mut tunnel.peers {
        if let Some(e) = &mut peer.endpoint {
            e.host = "192.0.2.99".into();
        }
    }
    config.tunnel = Some(tunnel);
    config.policy.tunnel = crate::config::TunnelSelectors {
        zones: [ZoneId::new("iot").expect("zone")].into(),
        ..Default::default()
    };
    let mut state = state_in(&home, config);
    let internet = IpAddr::V4(home.internet_v4());
    assert!(reach(&home, "laptop", internet, 80), "trusted goes direct");
    assert!(!reach(&home, "plug", internet, 80), "iot is marked for the tunnel");

    let full = state.enforcer.stats().full_applies;
    let mut session =
        TcpSession::open(home.ns("phone").expect("ns"), SocketAddr::new(internet, 7), PROBE).expect("phone's session");
    for (n, route) in [(1, Some(true)), (3, Some(false))] {
        handle(&home, &mut state, Request::DeviceTunnel { mac: mac(n), route });
    }
    assert!(!reach(&home, "laptop", internet, 80), "laptop: through the tunnel");
    assert!(reach(&home, "plug", internet, 80), "plug: never through it");
    assert!(session.roundtrip(PROBE), "another device's connection is not cut");
    assert!(
        reach(&home, "laptop", ip("10.0.1.11"), 80),
        "home traffic is never marked"
    );

    for n in [1, 3] {
        handle(
            &home,
            &mut state,
            Request::DeviceTunnel {
                mac: mac(n),
                route: None,
            },
        );
    }
    assert!(reach(&home, "laptop", internet, 80));
    assert!(!reach(&home, "plug", internet, 80));
    assert_eq!(state.enforcer.stats().full_applies, full, "choices are element deltas");
}
