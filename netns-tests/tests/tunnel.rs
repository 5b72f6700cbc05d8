//! Issue 4: the WireGuard tunnel, end to end. The oracle is the WAN link inside
//! the `isp` namespace: an nftables ingress counter on its `eth0` counts every
//! packet addressed to the canary (203.0.113.77, 2001:db8:1::77) that arrives in
//! clear. Only tunnel-selected devices ever send to the canary, so any count
//! there is a leak. A second counter (prerouting on the VPN server's interface)
//! proves the same traffic did arrive through the tunnel.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bulkhead::control::{Request, Response, TunnelView};
use bulkhead::demo::vpn::{LeakCount, CANARY_NAME, CANARY_TCP, CANARY_UDP, CANARY_V4, CANARY_V6};
use bulkhead::demo::DemoHome;
use bulkhead_netns::{ping, tcp_probe, udp_probe};
use nix::sys::signal::Signal;

use super::{mac_of, Outcome};

fn tunnel(demo: &DemoHome) -> Result<TunnelView> {
    match demo.call(Request::Tunnel)? {
        Response::Tunnel(v) => Ok(*v),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

pub(crate) fn wait_up(demo: &DemoHome, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let v = tunnel(demo)?;
        if v.state == "up" {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the tunnel did not come up: {v:?}\n--- daemon log:\n{}",
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the prober saw in one phase.
#[derive(Debug, Default)]
struct Seen {
    rounds: usize,
    /// Successes per kind: tcp, udp, icmp, dns, tcp6.
    through: [usize; 5],
    /// The unselected laptop's direct connections to the internet.
    direct_ok: usize,
}

/// Probes from the selected `tv` to the canary (TCP, UDP, ICMP, DNS to an
/// outside resolver, IPv6 TCP) and from the unselected laptop to the internet,
/// while `during` runs; returns what got through.
fn probing<F: FnOnce() -> Result<()>>(demo: &DemoHome, during: F) -> Result<Seen> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicUsize; 7]> = Arc::new(Default::default());
    std::thread::scope(|scope| -> Result<Seen> {
        let h = &demo.home;
        let t = Duration::from_millis(150);
        // Slow probes (ping and DNS wait a second when nothing answers) run in
        // their own threads so the fast ones keep a steady pace.
        let (stop1, c1) = (stop.clone(), counts.clone());
        let fast = scope.spawn(move || -> Result<()> {
            let tv = h.ns("tv")?;
            let laptop = h.ns("laptop")?;
            while !stop1.load(Ordering::SeqCst) {
                let oks = [
                    (0, tcp_probe(tv, SocketAddr::new(CANARY_V4.into(), CANARY_TCP), t)?),
                    (1, udp_probe(tv, SocketAddr::new(CANARY_V4.into(), CANARY_UDP), t)?),
                    (4, tcp_probe(tv, SocketAddr::new(CANARY_V6.into(), CANARY_TCP), t)?),
                    (5, tcp_probe(laptop, SocketAddr::new(h.internet_v4().into(), 80), t)?),
                ];
                for (i, ok) in oks {
                    if ok {
                        c1[i].fetch_add(1, Ordering::SeqCst);
                    }
                }
                c1[6].fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        });
        let (stop2, c2) = (stop.clone(), counts.clone());
        let icmp = scope.spawn(move || -> Result<()> {
            let tv = h.ns("tv")?;
            while !stop2.load(Ordering::SeqCst) {
                if ping(tv, CANARY_V4.into(), Duration::from_secs(1))? {
                    c2[2].fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(())
        });
        let (stop3, c3) = (stop.clone(), counts.clone());
        let dns = scope.spawn(move || -> Result<()> {
            let tv = h.ns("tv")?;
            let server = CANARY_V4.to_string();
            while !stop3.load(Ordering::SeqCst) {
                if tv.exec_ok(&["timeout", "1", "busybox", "nslookup", "-type=a", CANARY_NAME, &server])? {
                    c3[3].fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(())
        });
        let result = during();
        stop.store(true, Ordering::SeqCst);
        for p in [fast, icmp, dns] {
            p.join().map_err(|_| anyhow::anyhow!("prober panicked"))??;
        }
        result?;
        let l = |i: usize| counts[i].load(Ordering::SeqCst);
        Ok(Seen {
            rounds: l(6),
            through: [l(0), l(1), l(2), l(3), l(4)],
            direct_ok: l(5),
        })
    })
}

/// Probing for two seconds while nothing else happens.
fn idle(demo: &DemoHome) -> Result<Seen> {
    probing(demo, || {
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    })
}

fn no_leaks(demo: &DemoHome, phase: &str, seen: &Seen) -> Result<LeakCount> {
    let c = demo.leak_count()?;
    println!("    {phase}: {seen:?}, {c:?}");
    ensure!(
        c.leaked() == 0,
        "{phase}: {} packet(s) for the canary left by the WAN in clear: {c:?}\n--- daemon log:\n{}",
        c.leaked(),
        demo.log()
    );
    ensure!(seen.rounds >= 2, "{phase}: too few probe rounds ({})", seen.rounds);
    ensure!(
        seen.direct_ok * 10 >= seen.rounds * 7,
        "{phase}: the unselected laptop lost its direct internet: {seen:?}"
    );
    Ok(c)
}

/// r0. The kill switch with the tunnel down from the start (no VPN server
/// ever; under qemu-user, for the router binary, not even the device: see
/// `router_binary.rs`): nothing of the selected TV leaves by the WAN, and
/// nothing of it gets anywhere, while the laptop keeps its direct internet.
pub(crate) fn r0_tunnel_down_never_leaks() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let tv = mac_of("tv")?;
    demo.configure_tunnel(&format!("[tunnel]\ndevices = [\"{tv}\"]\n"), 2)?;
    demo.install_canary()?;
    demo.start_isp_resolver(&format!("tunnel_upstreams = [\"{CANARY_V4}\"]"))?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let seen = probing(&demo, || {
        std::thread::sleep(Duration::from_secs(4));
        Ok(())
    })?;
    let state = tunnel(&demo)?.state;
    ensure!(state != "up", "the tunnel is up without a server");
    ensure!(
        seen.through == [0; 5],
        "tunnel {state}: something of the TV got through: {seen:?}"
    );
    no_leaks(&demo, &format!("tunnel {state}"), &seen)?;
    Ok(Outcome::Passed)
}

/// The kernel server's peer line of `wg show IF dump`: public key,
/// preshared key, endpoint, allowed IPs, latest handshake, rx, tx, keepalive.
fn peer_fields(demo: &DemoHome) -> Result<Vec<String>> {
    let spec = demo.vpn_spec()?;
    let show = demo.home.isp().exec(&["wg", "show", &spec.ifname, "dump"])?;
    let dump = String::from_utf8_lossy(&show.stdout).into_owned();
    Ok(dump
        .lines()
        .nth(1)
        .with_context(|| format!("no peer in the kernel's wg show: {dump}"))?
        .split('\t')
        .map(str::to_owned)
        .collect())
}

/// Whether this kernel makes WireGuard links (routers' kernels do; this
/// machine's has no module).
fn kernel_has_wireguard() -> Result<bool> {
    let ns = bulkhead_netns::Netns::new("wgprobe")?;
    Ok(ns.ip(&["link", "add", "wgprobe0", "type", "wireguard"]).is_ok())
}

/// r2. The kernel's WireGuard as the VPN server (what a commercial VPN or a
/// second router runs; this machine's kernel has none, so the test runs
/// itself in the VM with Debian's kernel): Bulkhead's boringtun data plane
/// handshakes with it, TCP, UDP, ICMP, DNS and IPv6 of the selected TV go
/// through and nothing leaves in clear; the router roams to a new WAN
/// address: the server follows, nothing leaks; 120 s on, the session is
/// rekeyed with the kernel's peer without losing the tunnel; the server gone
/// (its link deleted): nothing gets through, nothing leaks, the laptop keeps
/// its internet; the server back: the tunnel comes up again by itself.
pub(crate) fn r2_kernel_wireguard_server() -> Result<Outcome> {
    if !kernel_has_wireguard()? {
        ensure!(
            std::env::var_os(super::IN_VM).is_none(),
            "the VM's kernel has no WireGuard either"
        );
        return super::in_vm("r2_kernel_wireguard_server", &["wireguard"]);
    }
    // TCG in the VM is several times slower than this machine.
    let patience = Duration::from_secs(if std::env::var_os(super::IN_VM).is_some() {
        60
    } else {
        15
    });
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let tv = mac_of("tv")?;
    demo.configure_tunnel(&format!("[tunnel]\ndevices = [\"{tv}\"]\n"), 2)?;
    demo.install_canary()?;
    demo.start_isp_resolver(&format!("tunnel_upstreams = [\"{CANARY_V4}\"]"))?;
    demo.start_daemon()?;
    demo.register_hosts()?;

    demo.start_kernel_vpn_server()?;
    let seen = probing(&demo, || {
        wait_up(&demo, patience)?;
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    })?;
    let c = no_leaks(&demo, "kernel server up", &seen)?;
    for (i, kind) in ["tcp", "udp", "icmp", "dns", "tcp6"].iter().enumerate() {
        ensure!(
            seen.through[i] > 0,
            "kernel server up: no {kind} through the tunnel: {seen:?}"
        );
    }
    ensure!(
        c.tunnelled_v4 > 0 && c.tunnelled_v6 > 0,
        "the canary saw nothing from the tunnel: {c:?}"
    );
    // The kernel's own view of the peer: Bulkhead's key, a handshake, bytes.
    let spec = demo.vpn_spec()?;
    let peer = peer_fields(&demo)?;
    ensure!(
        peer.first() == Some(&bulkhead::tunnel::keys::format_key(&spec.router_public))
            && peer.get(2).is_some_and(|e| e.starts_with("198.51.100.2:"))
            && peer.get(4).is_some_and(|h| h != "0")
            && peer.get(5).is_some_and(|rx| rx != "0"),
        "the kernel saw no handshake or data from Bulkhead: {peer:?}"
    );

    // Roaming: the ISP gives the router a new WAN address. The kernel's
    // server learns the new endpoint from Bulkhead's next authenticated
    // packet (Bulkhead's socket is unconnected, so it sends from the new
    // address at once); nothing leaks meanwhile.
    let router = demo.home.router();
    let wan = bulkhead_netns::home::WAN_IF;
    let (old_addr, new_addr) = (bulkhead_netns::home::ROUTER_WAN_V4, "198.51.100.3/24");
    let seen = probing(&demo, || {
        std::thread::sleep(Duration::from_millis(500));
        // The new address first, promoted when the old one goes (else
        // deleting the primary deletes it too).
        router.exec(&["sysctl", "-qw", &format!("net.ipv4.conf.{wan}.promote_secondaries=1")])?;
        router.ip(&["addr", "add", new_addr, "dev", wan])?;
        router.ip(&["addr", "del", &old_addr.to_string(), "dev", wan])?;
        router.ip(&[
            "route",
            "replace",
            "default",
            "via",
            &bulkhead_netns::home::ISP_V4.addr().to_string(),
        ])?;
        super::wait_until("the server following the roam", patience, || {
            Ok(peer_fields(&demo)?
                .get(2)
                .is_some_and(|e| e.starts_with("198.51.100.3:")))
        })
        .with_context(|| format!("{:?}", peer_fields(&demo)))?;
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    })?;
    no_leaks(&demo, "router roamed to a new WAN address", &seen)?;
    ensure!(
        seen.through[0] > 0,
        "nothing through the tunnel after the roam: {seen:?}"
    );

    // Rekeying: WireGuard makes new session keys every 120 s of use; the
    // kernel's peer takes Bulkhead's new handshake and traffic goes on.
    let handshake =
        |demo: &DemoHome| -> Result<u64> { Ok(peer_fields(demo)?.get(4).and_then(|h| h.parse().ok()).unwrap_or(0)) };
    let first = handshake(&demo)?;
    let seen = probing(&demo, || {
        super::wait_until("a new handshake", Duration::from_secs(240), || {
            Ok(handshake(&demo)? > first)
        })
        .with_context(|| format!("none after {first}: {:?}", peer_fields(&demo)))?;
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    })?;
    no_leaks(&demo, "rekeyed", &seen)?;
    ensure!(
        seen.through[0] * 10 >= seen.rounds * 8,
        "the TV lost the tunnel around the rekey: {seen:?}"
    );

    // The server goes away.
    let seen = probing(&demo, || {
        std::thread::sleep(Duration::from_millis(500));
        demo.kill_vpn_server()?;
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    })?;
    no_leaks(&demo, "kernel server gone", &seen)?;
    let seen = idle(&demo)?;
    ensure!(seen.through == [0; 5], "through a deleted server: {seen:?}");
    no_leaks(&demo, "kernel server still gone", &seen)?;

    // And comes back.
    demo.start_kernel_vpn_server()?;
    let seen = probing(&demo, || {
        std::thread::sleep(Duration::from_secs(1));
        let deadline = Instant::now() + patience;
        while tunnel(&demo)?.state != "up"
            || !tcp_probe(
                demo.home.ns("tv")?,
                SocketAddr::new(CANARY_V4.into(), CANARY_TCP),
                Duration::from_millis(500),
            )?
        {
            ensure!(
                Instant::now() < deadline,
                "the tunnel did not come back: {:?}",
                tunnel(&demo)?
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    })?;
    no_leaks(&demo, "kernel server back", &seen)?;
    Ok(Outcome::Passed)
}

/// A device selected for the tunnel reaches the internet only through it, and
/// nothing of it leaks in clear: (a) while connecting, (b) while up, (c) after
/// the VPN server is killed, (d) while Bulkhead is killed -9 and restarted, (e)
/// while the tunnel config is reloaded. The laptop (not selected) keeps its
/// direct internet throughout.
pub(crate) fn r_tunnel_kill_switch_never_leaks() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let tv = mac_of("tv")?;
    demo.configure_tunnel(
        &format!("# The streaming box goes through the VPN.\n[tunnel]\ndevices = [\"{tv}\"]\n"),
        2,
    )?;
    demo.install_canary()?;
    // The TV's DNS (even to an outside resolver: redirected) is answered by
    // Bulkhead through the tunnel, by the VPN's resolver on the canary.
    demo.start_isp_resolver(&format!("tunnel_upstreams = [\"{CANARY_V4}\"]"))?;
    demo.start_daemon()?;
    demo.register_hosts()?;

    // (a) connecting: the VPN server is not there yet.
    let seen = idle(&demo)?;
    ensure!(tunnel(&demo)?.state != "up", "up without a server?");
    ensure!(
        seen.through == [0; 5],
        "(a) connecting: something got through: {seen:?}"
    );
    no_leaks(&demo, "(a) connecting", &seen)?;

    // (b) up.
    demo.start_vpn_server()?;
    let seen = probing(&demo, || {
        wait_up(&demo, Duration::from_secs(15))?;
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    })?;
    let c = no_leaks(&demo, "(b) up", &seen)?;
    for (i, kind) in ["tcp", "udp", "icmp", "dns", "tcp6"].iter().enumerate() {
        ensure!(
            seen.through[i] > 0,
            "(b) up: no {kind} through the tunnel: {seen:?}\n--- canary DNS log:\n{}",
            std::fs::read_to_string(demo.dir.join("canary-dns.log")).unwrap_or_default()
        );
    }
    ensure!(
        c.tunnelled_v4 > 0 && c.tunnelled_v6 > 0,
        "(b) the canary saw nothing from the tunnel: {c:?}"
    );
    // `wg show` (wireguard-tools) talks to the daemon's UAPI socket.
    let tunnel_if = demo.vpn_spec()?.tunnel_if;
    let show = demo.home.router().exec(&["wg", "show", &tunnel_if, "dump"])?;
    let dump = String::from_utf8_lossy(&show.stdout);
    ensure!(
        show.status.success() && dump.lines().count() == 2,
        "wg show {tunnel_if}: {dump} {}",
        String::from_utf8_lossy(&show.stderr)
    );
    let peer: Vec<&str> = dump.lines().nth(1).context("peer line")?.split('\t').collect();
    ensure!(peer.get(4).is_some_and(|h| *h != "0"), "wg show: no handshake: {dump}");

    // (c) the VPN server dies.
    let seen = probing(&demo, || {
        std::thread::sleep(Duration::from_millis(500));
        demo.kill_vpn_server()?;
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    })?;
    no_leaks(&demo, "(c) server killed", &seen)?;
    let after_kill = demo.leak_count()?;
    let seen = idle(&demo)?;
    ensure!(
        seen.through == [0; 5],
        "(c) nothing gets through without the server: {seen:?}"
    );
    let still = no_leaks(&demo, "(c) server gone", &seen)?;
    ensure!(
        still.tunnelled_v4 == after_kill.tunnelled_v4,
        "(c) the canary heard from a dead tunnel"
    );

    // (d) Bulkhead killed -9 and restarted (the server is back first).
    demo.start_vpn_server()?;
    wait_up(&demo, Duration::from_secs(20))?;
    let seen = probing(&demo, || {
        std::thread::sleep(Duration::from_millis(500));
        demo.kill_daemon()?;
        std::thread::sleep(Duration::from_secs(2));
        demo.start_daemon()?;
        wait_up(&demo, Duration::from_secs(15))?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(())
    })?;
    no_leaks(&demo, "(d) kill -9 and restart", &seen)?;
    ensure!(
        seen.through[0] > 0,
        "(d) the tunnel works again after the restart: {seen:?}"
    );

    // (e) the tunnel config reloaded: a new MTU needs a new device.
    let path = demo.config_path();
    let seen = probing(&demo, || {
        std::thread::sleep(Duration::from_millis(500));
        let text = std::fs::read_to_string(&path)?.replace("mtu = 1420", "mtu = 1380");
        std::fs::write(&path, text)?;
        demo.signal_daemon(Signal::SIGHUP)?;
        std::thread::sleep(Duration::from_millis(500));
        wait_up(&demo, Duration::from_secs(15))?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(())
    })?;
    no_leaks(&demo, "(e) reload", &seen)?;
    let mtu = std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{tunnel_if}/mtu")).unwrap_or_default();
    let link = demo.home.router().exec(&["ip", "link", "show", &tunnel_if])?;
    let link = String::from_utf8_lossy(&link.stdout);
    ensure!(link.contains("mtu 1380"), "reload applied the new MTU: {link} {mtu}");
    ensure!(seen.through[0] > 0, "(e) the tunnel works after the reload: {seen:?}");

    // (f) a boot: the daemon stopped, the kernel forgets our tables, rules and
    // routes; `bulkhead restore` alone (no daemon, no tunnel device) keeps the
    // TV's traffic from leaving by the WAN.
    demo.stop_daemon()?;
    let forget = || -> Result<()> {
        let r = demo.home.router();
        for fam in ["inet", "bridge"] {
            r.exec(&["nft", "delete", "table", fam, "bulkhead"])?;
        }
        let (prio, table) = (
            bulkhead::kernel_ids::RULE_PRIORITY.to_string(),
            bulkhead::kernel_ids::ROUTE_TABLE.to_string(),
        );
        for family in ["-4", "-6"] {
            while r.exec_ok(&["ip", family, "rule", "del", "priority", &prio])? {}
            r.exec(&["ip", family, "route", "flush", "table", &table])?;
        }
        Ok(())
    };
    // As at boot, the home's network is down until restore has run (with it
    // up, the TV's retransmissions would leave in the gap this replay makes).
    let r = demo.home.router();
    for bridge in ["br-lan", "br-iot"] {
        r.exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv6.conf.{bridge}.keep_addr_on_down=1"),
        ])?;
        r.exec(&["ip", "link", "set", "dev", bridge, "down"])?;
    }
    forget()?;
    let said = super::boot::restore(&demo)?;
    for bridge in ["br-lan", "br-iot"] {
        r.exec(&["ip", "link", "set", "dev", bridge, "up"])?;
    }
    // The router's IPv6 addresses are usable again after DAD.
    std::thread::sleep(Duration::from_secs(2));
    ensure!(said.contains("kill switch is in place"), "(f) restore said: {said}");
    let rules = demo.home.router().exec(&["ip", "rule", "show"])?;
    let routes = demo
        .home
        .router()
        .exec(&["ip", "route", "show", "table", "all", "type", "blackhole"])?;
    let seen = idle(&demo)?;
    ensure!(
        seen.through == [0; 5],
        "(f) restored at boot: nothing goes through without the daemon: {seen:?}"
    );
    no_leaks(&demo, "(f) restored at boot", &seen).with_context(|| {
        format!(
            "rules:\n{}\nblackholes:\n{}",
            String::from_utf8_lossy(&rules.stdout),
            String::from_utf8_lossy(&routes.stdout)
        )
    })?;
    // The control: the same boot without restore leaks (the probe can fail).
    let before = demo.leak_count()?;
    forget()?;
    let _ = idle(&demo)?;
    ensure!(
        demo.leak_count()?.leaked() > before.leaked(),
        "(f) control: without restore the TV's traffic should have left by the WAN"
    );
    Ok(Outcome::Passed)
}

/// Selectors: a zone through the tunnel with one of its devices excluded, and a
/// domain set filled through the control API.
pub(crate) fn s_tunnel_selectors_zone_exclusion_domain_set() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let plug = mac_of("plug")?;
    demo.configure_tunnel(
        &format!(
            "[tunnel]\nzones = [\"iot\"]\ndomain_sets = [\"streaming\"]\n\n[tunnel.exclude]\ndevices = [\"{plug}\"]\n"
        ),
        2,
    )?;
    demo.install_canary()?;
    demo.start_vpn_server()?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    wait_up(&demo, Duration::from_secs(15))?;
    let canary = SocketAddr::new(IpAddr::V4(CANARY_V4), CANARY_TCP);
    let short = Duration::from_millis(500);
    let probe = |from: &str| -> Result<LeakCount> {
        let before = demo.leak_count()?;
        let ok = tcp_probe(demo.home.ns(from)?, canary, short)?;
        let after = demo.leak_count()?;
        ensure!(ok, "{from} -> canary failed");
        Ok(LeakCount {
            leaked_v4: after.leaked_v4 - before.leaked_v4,
            leaked_v6: 0,
            tunnelled_v4: after.tunnelled_v4 - before.tunnelled_v4,
            ..LeakCount::default()
        })
    };
    // The camera (iot) goes through the tunnel; the plug (iot, excluded) and the
    // laptop (trusted) go direct.
    let cam = probe("camera")?;
    ensure!(cam.tunnelled_v4 > 0 && cam.leaked_v4 == 0, "camera: {cam:?}");
    let p = probe("plug")?;
    ensure!(
        p.tunnelled_v4 == 0 && p.leaked_v4 > 0,
        "plug (excluded) goes direct: {p:?}"
    );
    let l = probe("laptop")?;
    ensure!(
        l.tunnelled_v4 == 0 && l.leaked_v4 > 0,
        "laptop (trusted) goes direct: {l:?}"
    );
    // The canary's address joins the domain set: now the laptop's traffic to it
    // goes through the tunnel too.
    let r = demo.call(Request::DomainAdd {
        set: "streaming".parse().map_err(anyhow::Error::msg)?,
        addresses: vec![IpAddr::V4(CANARY_V4)],
        ttl_secs: 600,
    })?;
    ensure!(matches!(r, Response::Done { .. }), "domain-add: {r:?}");
    let l = probe("laptop")?;
    ensure!(
        l.tunnelled_v4 > 0 && l.leaked_v4 == 0,
        "laptop to a domain-set address: {l:?}"
    );
    // A set the policy does not name is refused.
    let r = demo.call(Request::DomainAdd {
        set: "other".parse().map_err(anyhow::Error::msg)?,
        addresses: vec![IpAddr::V4(CANARY_V4)],
        ttl_secs: 600,
    });
    ensure!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("not a domain set")),
        "unknown domain set: {r:?}"
    );
    Ok(Outcome::Passed)
}
