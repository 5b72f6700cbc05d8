//! Kernel tests of the harness itself. They need root; see [`crate::root_or_skip`].

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::responder::{BANNER_PORT, ECHO_PORT};
use crate::{
    ping, root_or_skip, tcp_probe, udp_probe, Error, Home, HomeSpec, HostSnapshot, HostSpec, Netns, Result,
    SegmentSpec, TcpSession,
};

const SHORT: Duration = Duration::from_millis(500);
const LONG: Duration = Duration::from_secs(2);

/// Parses a literal the test wrote itself.
fn p<T: std::str::FromStr>(s: &str) -> T {
    match s.parse() {
        Ok(value) => value,
        Err(_) => panic!("bad literal {s:?} in the test"),
    }
}

fn to(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(p(ip), port)
}

/// Does by hand what the daemon would: the bridge, its ports, the gateway.
fn bridge_by_hand(home: &Home) -> Result<()> {
    for segment in home.segments() {
        let bridge = &segment.bridge;
        let mut commands = vec![format!("link add {bridge} type bridge")];
        for port in &segment.ports {
            commands.push(format!("link set {port} master {bridge}"));
        }
        commands.push(format!("addr add {} dev {bridge}", segment.gateway_v4));
        if let Some(v6) = segment.gateway_v6 {
            commands.push(format!("addr add {v6} dev {bridge} nodad"));
        }
        commands.push(format!("link set {bridge} up"));
        home.router().ip_batch(&commands)?;
    }
    Ok(())
}

#[test]
fn home_without_daemon() -> Result<()> {
    if !root_or_skip("home_without_daemon") {
        return Ok(());
    }
    let before = HostSnapshot::take()?;
    let spec = HomeSpec {
        segments: vec![
            SegmentSpec::new("lan", p("10.0.1.1/24")).with_ipv6(p("fd00:1::1/64")),
            SegmentSpec::new("iot", p("10.0.2.1/24")),
        ],
        hosts: vec![
            HostSpec::new("a", "lan", [2, 0, 0, 0, 1, 0x0a])
                .with_ipv4(p("10.0.1.10/24"))
                .with_ipv6(p("fd00:1::10/64")),
            HostSpec::new("b", "lan", [2, 0, 0, 0, 1, 0x0b])
                .with_ipv4(p("10.0.1.11/24"))
                .with_ipv6(p("fd00:1::11/64")),
            // A DHCP client: no addresses, no routes.
            HostSpec::new("cam", "iot", [2, 0, 0, 0, 2, 0x0c]),
        ],
    };
    let names = {
        let home = Home::new(&spec)?;
        let ports = home.segment("lan").map(|s| s.ports.clone());
        assert_eq!(ports, Some(vec!["lan-a".to_string(), "lan-b".to_string()]));
        assert_eq!(home.host("cam").map(|h| h.router_port()), Some("iot-cam"));
        let cam_link = home.ns("cam")?.ip(&["-br", "addr", "show", "eth0"])?;
        let cam_link = String::from_utf8_lossy(&cam_link.stdout).to_string();
        assert!(cam_link.contains("UP") && !cam_link.contains("10.0."), "{cam_link}");
        let cam_mac = home.ns("cam")?.ip(&["-br", "link", "show", "eth0"])?;
        assert!(String::from_utf8_lossy(&cam_mac.stdout).contains("02:00:00:00:02:0c"));
        bridge_by_hand(&home)?;
        let a = home.ns("a")?;

        // Host to host, across the bridge, and to the gateway.
        assert!(ping(a, p("10.0.1.11"), LONG)?, "a pings b");
        assert!(ping(a, p("fd00:1::11"), LONG)?, "a pings b over IPv6");
        assert!(ping(a, p("10.0.1.1"), LONG)?, "a pings its gateway");
        assert!(tcp_probe(a, to("10.0.1.11", BANNER_PORT), LONG)?, "b's banner");
        assert!(udp_probe(a, to("fd00:1::11", ECHO_PORT), LONG)?, "b's echo");
        home.start_tcp_listener("b", 8080)?;
        assert!(tcp_probe(a, to("10.0.1.11", 8080), LONG)?, "extra listener");

        // A closed port is refused at once.
        let start = Instant::now();
        assert!(!tcp_probe(a, to("10.0.1.11", BANNER_PORT + 1), LONG)?);
        assert!(start.elapsed() < SHORT, "closed port took {:?}", start.elapsed());

        // The router reaches the internet; hosts do not, without NAT.
        let web_v4 = SocketAddr::new(IpAddr::V4(home.internet_v4()), BANNER_PORT);
        let web_v6 = SocketAddr::new(IpAddr::V6(home.internet_v6()), BANNER_PORT);
        let echo_v4 = SocketAddr::new(IpAddr::V4(home.internet_v4()), ECHO_PORT);
        let router = home.router();
        assert!(tcp_probe(router, web_v4, LONG)?, "router reaches the internet");
        assert!(tcp_probe(router, web_v6, LONG)?, "router reaches the internet (v6)");
        assert!(udp_probe(router, echo_v4, LONG)?, "router gets the internet's echo");
        assert!(!tcp_probe(a, web_v4, SHORT)?, "no NAT, no internet");
        assert!(!tcp_probe(a, web_v6, SHORT)?, "no NAT66, no internet (v6)");

        // With masquerading on the WAN (the daemon's job) the internet answers:
        // proves forwarding is on and the isp routes replies to the WAN address.
        router.exec(&[
            "nft",
            "add table inet t; \
             add chain inet t post { type nat hook postrouting priority srcnat; }; \
             add rule inet t post oifname wan0 masquerade",
        ])?;
        assert!(tcp_probe(a, web_v4, LONG)?, "NAT gives the internet");
        assert!(tcp_probe(a, web_v6, LONG)?, "NAT66 gives the internet (v6)");
        assert!(udp_probe(a, echo_v4, LONG)?, "NAT gives the internet (UDP)");

        // An established session works, then is cut when b's port goes down.
        let mut session = TcpSession::open(a, to("10.0.1.11", ECHO_PORT), LONG)?;
        assert!(session.roundtrip(LONG), "session echoes");
        assert!(session.roundtrip(LONG), "session echoes again");
        router.ip(&["link", "set", "lan-b", "down"])?;
        assert!(!session.roundtrip(SHORT), "session is cut");

        home.ns_names()
    };

    for name in &names {
        assert!(!Netns::exists(name), "{name} left behind");
    }
    if let Some(diff) = before.diff(&HostSnapshot::take()?) {
        panic!("the host namespace changed during the test:\n{diff}");
    }
    Ok(())
}

#[test]
fn netns_basics() -> Result<()> {
    if !root_or_skip("netns_basics") {
        return Ok(());
    }
    let ns = Netns::new("basics")?;
    let name = ns.name().to_string();
    assert!(name.starts_with(&format!("bh{}-", std::process::id())));
    assert!(Netns::list_own()?.contains(&name));

    // Errors carry the command's stderr.
    let err = ns.exec(&["ip", "link", "show", "nosuchdev"]).err();
    let err = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("nosuchdev"), "{err}");
    assert!(!ns.exec_ok(&["false"])?);
    assert!(ns.exec_ok(&["nosuchprogram-bulkhead"]).is_err());

    // run_in really is inside the namespace, and the caller does not move.
    let ns_of_thread = || std::fs::read_link("/proc/thread-self/ns/net").ok();
    let outside = ns_of_thread();
    assert_ne!(ns.run_in(ns_of_thread)?, outside);
    assert_eq!(ns_of_thread(), outside);
    assert!(
        ns.run_in(HostSnapshot::take)?.is_err(),
        "snapshot refuses a moved thread"
    );

    // Tracked processes: signalled, reaped, and stopped on drop.
    let pid = ns.spawn("sleep", &["30"])?;
    let other = ns.spawn("sleep", &["30"])?;
    ns.kill_tracked(other, Signal::SIGKILL)?;
    assert!(ns.wait_tracked(other, LONG)?.is_some(), "killed process is reaped");
    assert!(ns.kill_tracked(other, Signal::SIGTERM).is_err(), "no longer tracked");
    let start = Instant::now();
    drop(ns);
    assert!(start.elapsed() < Duration::from_millis(900), "sleep ignores SIGTERM?");
    assert_eq!(kill(Pid::from_raw(pid as i32), None), Err(Errno::ESRCH));
    assert!(!Netns::exists(&name));
    Ok(())
}

#[test]
fn namespaces_go_when_a_test_panics() -> Result<()> {
    if !root_or_skip("namespaces_go_when_a_test_panics") {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || -> Result<()> {
        let ns = Netns::new("panics")?;
        ns.spawn("sleep", &["30"])?;
        let _ = tx.send(ns.name().to_string());
        panic!("deliberate panic to test cleanup on unwind");
    });
    assert!(outcome.is_err(), "the closure did not panic: {outcome:?}");
    let name = rx.recv().map_err(|_| Error::Spec("no namespace was made".into()))?;
    assert!(!Netns::exists(&name), "{name} survived the panic");
    Ok(())
}

#[test]
fn cleanup_stale_removes_dead_runs() -> Result<()> {
    if !root_or_skip("cleanup_stale_removes_dead_runs") {
        return Ok(());
    }
    // A pid that just died stands in for a crashed test run.
    let mut child = Command::new("true").spawn().map_err(|e| Error::io("true", e))?;
    let dead = child.id();
    child.wait().map_err(|e| Error::io("true", e))?;
    let stale = format!("bh{dead}-0-stale");
    crate::netns::run_checked(Command::new("ip").args(["netns", "add", &stale]))?;

    let live = Netns::new("live")?;
    Netns::cleanup_stale()?;
    // Another process may have cleaned it first; either way it must be gone.
    assert!(!Netns::exists(&stale), "stale namespace {stale} survived");
    assert!(Netns::exists(live.name()), "a live namespace was removed");
    Ok(())
}
