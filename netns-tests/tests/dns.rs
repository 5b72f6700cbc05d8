//! Issue 11: Bulkhead as the home's resolver, end to end. The upstream is
//! Debian's unbound in the `isp` namespace (the demo's "ISP resolver"), the
//! clients are `dig` and `kdig` in the devices' namespaces, and the leak oracle
//! for domain routing is the tunnel tests' canary counter on the WAN link.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::control::{Request, Response};
use bulkhead::demo::dns::{AD_NAME, RESOLVER_V4, STREAM_NAME};
use bulkhead::demo::vpn::{CANARY_TCP, CANARY_V4};
use bulkhead::demo::DemoHome;
use bulkhead::dns::querylog::{LogFilter, Outcome as Logged};
use bulkhead_netns::{tcp_probe, Netns};

use super::{mac_of, Outcome};

/// Asks `server` for `name` with Debian's dig (one try, one second); the
/// status (`NOERROR`, `REFUSED`, …, empty if nothing answered) and the answer
/// section's data.
pub(crate) fn dig(ns: &Netns, server: IpAddr, name: &str, qtype: &str, tcp: bool) -> Result<(String, Vec<String>)> {
    let at = format!("@{server}");
    let mut args = vec![
        "dig",
        at.as_str(),
        name,
        qtype,
        "+time=1",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
    ];
    if tcp {
        args.push("+tcp");
    }
    let out = ns.exec_output(&args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_default()
        .to_string();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    Ok((status, answers))
}

/// `/etc/netns/<ns>/resolv.conf` for the namespace's programs, removed on drop.
struct NetnsEtc(std::path::PathBuf);

impl NetnsEtc {
    fn new(ns: &Netns, resolv_conf: &str) -> Result<NetnsEtc> {
        let dir = std::path::Path::new("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir)?;
        let guard = NetnsEtc(dir);
        std::fs::write(guard.0.join("resolv.conf"), resolv_conf)?;
        Ok(guard)
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn expect_answer(demo: &DemoHome, from: &str, name: &str, qtype: &str, want: &str) -> Result<()> {
    let (status, answers) = dig(demo.home.ns(from)?, gateway(), name, qtype, false)?;
    ensure!(
        status == "NOERROR" && answers.iter().any(|a| a == want),
        "{from} asked {name} {qtype}: {status} {answers:?}, wanted {want}\n--- daemon log:\n{}",
        demo.log()
    );
    Ok(())
}

fn gateway() -> IpAddr {
    IpAddr::from([10, 0, 1, 1])
}

fn query_log(demo: &DemoHome, filter: LogFilter) -> Result<Vec<bulkhead::dns::querylog::QueryLogEntry>> {
    match demo.call(Request::DnsLog { filter })? {
        Response::DnsLog { entries } => Ok(entries),
        other => bail!("unexpected answer {other:?}"),
    }
}

fn dns_status(demo: &DemoHome) -> Result<bulkhead::dns::DnsStatus> {
    match demo.call(Request::DnsStatus)? {
        Response::Dns(s) => Ok(*s),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// The static home with the ISP's resolver as upstream, the ad list on iot.
fn resolving_home() -> Result<DemoHome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    demo.start_isp_resolver("")?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    Ok(demo)
}

/// u. Devices resolve through Bulkhead: upstream answers over UDP and TCP,
/// local names (hostile ones as safe labels), the iot zone's ad list, rebinding
/// dropped, quarantine limited to local names, nothing for the WAN side, the
/// query log and `dns test`, and malformed packets counted without harm.
pub(crate) fn u_dns_resolves_blocks_and_refuses() -> Result<Outcome> {
    let demo = resolving_home()?;
    // Upstream answers, UDP and TCP.
    expect_answer(&demo, "laptop", "www.example.test", "A", "192.0.2.80")?;
    let (status, answers) = dig(demo.home.ns("laptop")?, gateway(), "cdn.example.test", "A", true)?;
    ensure!(
        status == "NOERROR" && answers.iter().any(|a| a == "192.0.2.80"),
        "CNAME chain over TCP: {status} {answers:?}"
    );
    let (status, answers) = dig(demo.home.ns("laptop")?, gateway(), "big.example.test", "A", false)?;
    ensure!(
        status == "NOERROR" && answers.len() == 40,
        "40 records: dig falls back to TCP after a truncated UDP answer: {status} {} answers",
        answers.len()
    );
    // Over IPv6 to the segment's IPv6 address (bound before its address was
    // usable: the socket is free-bound at start).
    let router_v6: IpAddr = "fd00:1::1".parse()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, answers) = loop {
        // Until duplicate address detection is over on both ends.
        let got = dig(demo.home.ns("laptop")?, router_v6, "www.example.test", "AAAA", false)?;
        if !got.0.is_empty() || Instant::now() > deadline {
            break got;
        }
    };
    ensure!(
        status == "NOERROR" && answers.iter().any(|a| a == "2001:db8::80"),
        "over IPv6: {status} {answers:?}\n{}\n{}",
        String::from_utf8_lossy(&demo.home.router().exec_output(&["ss", "-uanp"])?.stdout),
        String::from_utf8_lossy(&demo.home.ns("laptop")?.exec_output(&["ip", "-6", "addr"])?.stdout)
    );
    // The C library's resolver (getent), with the router as nameserver in the
    // laptop's resolv.conf (`ip netns exec` mounts /etc/netns/NAME/ over /etc).
    let etc = NetnsEtc::new(demo.home.ns("laptop")?, "nameserver 10.0.1.1\nsearch lan\n")?;
    for (name, want) in [("www.example.test", "192.0.2.80"), ("plug", "10.0.1.20")] {
        let out = demo.home.ns("laptop")?.exec_output(&["getent", "ahostsv4", name])?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(text.contains(want), "getent ahostsv4 {name}: {text:?}");
    }
    drop(etc);
    // Local names: the pinned names, and reverse lookups.
    expect_answer(&demo, "laptop", "plug.lan", "A", "10.0.1.20")?;
    expect_answer(&demo, "plug", "laptop", "A", "10.0.1.10")?;
    expect_answer(&demo, "laptop", "20.1.0.10.in-addr.arpa", "PTR", "plug.lan.")?;
    let (status, _) = dig(demo.home.ns("laptop")?, gateway(), "nobody.lan", "A", false)?;
    ensure!(status == "NXDOMAIN", "an unknown local name: {status}");
    // The iot zone's list: the plug gets 0.0.0.0, the laptop the real answer.
    expect_answer(&demo, "plug", AD_NAME, "A", "0.0.0.0")?;
    expect_answer(&demo, "laptop", AD_NAME, "A", "192.0.2.66")?;
    // Rebinding: a public name answering a private address gets no address.
    let (status, answers) = dig(demo.home.ns("laptop")?, gateway(), "private.example.test", "A", false)?;
    ensure!(
        status == "NOERROR" && answers.is_empty(),
        "rebinding: {status} {answers:?}"
    );
    // Quarantine: its own router's name, nothing of the internet.
    let (status, _) = dig(demo.home.ns("stranger")?, gateway(), "www.example.test", "A", false)?;
    ensure!(status == "REFUSED", "quarantine resolved an internet name: {status}");
    expect_answer(&demo, "stranger", "router.lan", "A", "10.0.1.1")?;
    // The WAN side: no resolver there (and the WAN's input is dropped).
    let wan = IpAddr::from(bulkhead_netns::home::ROUTER_WAN_V4.addr());
    let (status, answers) = dig(demo.home.isp(), wan, "www.example.test", "A", false)?;
    ensure!(
        status.is_empty() && answers.is_empty(),
        "the WAN got an answer: {status} {answers:?}"
    );
    // The query log and `dns test`.
    let plug = mac_of("plug")?;
    let blocked = query_log(
        &demo,
        LogFilter {
            device: Some(plug),
            blocked_only: true,
            limit: 10,
            ..Default::default()
        },
    )?;
    ensure!(
        blocked
            .iter()
            .any(|e| e.name == AD_NAME && e.outcome == Logged::Blocked { list: "ads".into() }),
        "the plug's blocked question is not in the log: {blocked:?}"
    );
    let Response::Done { message } = demo.call(Request::DnsTest {
        name: AD_NAME.into(),
        from: Some(plug),
    })?
    else {
        bail!("dns test failed")
    };
    ensure!(message.contains("blocked by list ads"), "dns test: {message}");
    // Hostile packets from a device: dropped and counted, the resolver goes on.
    let before = dns_status(&demo)?.stats.malformed;
    demo.home.ns("laptop")?.run_in(|| -> std::io::Result<()> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let header = [0x12u8, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        let looping = [&header[..], &[0xc0, 0x0c, 0, 1, 0, 1]].concat();
        let long_label = [&header[..], &[64], &[b'a'; 64], &[0, 0, 1, 0, 1]].concat();
        for p in [&header[..4], &header[..], &looping[..], &long_label[..]] {
            s.send_to(p, (gateway(), 53))?;
        }
        Ok(())
    })??;
    std::thread::sleep(Duration::from_millis(200));
    let after = dns_status(&demo)?.stats.malformed;
    ensure!(
        after >= before + 4,
        "malformed packets not counted: {before} -> {after}"
    );
    expect_answer(&demo, "laptop", "www.example.test", "A", "192.0.2.80")?;
    // Today's counts per device, its most asked names, and both across a
    // restart (written when the resolver stops, read back when it starts).
    let today = |s: &bulkhead::dns::DnsStatus| {
        let counts = s.per_device.iter().find(|(m, _)| *m == plug).map(|(_, c)| *c);
        let top = s.top_today.iter().find(|(m, _)| *m == plug).map(|(_, t)| t.clone());
        (counts, top.unwrap_or_default())
    };
    let (counts, top) = today(&dns_status(&demo)?);
    let counts = counts.context("no counts today for the plug")?;
    ensure!(
        counts.blocked >= 1 && counts.queries >= counts.blocked,
        "the plug's counts today: {counts:?}"
    );
    ensure!(
        top.iter().any(|(name, n)| name == AD_NAME && *n >= 1),
        "the plug's most asked names today: {top:?}"
    );
    demo.stop_daemon()?;
    demo.start_daemon()?;
    expect_answer(&demo, "laptop", "www.example.test", "A", "192.0.2.80")?;
    let (after, top_after) = today(&dns_status(&demo)?);
    let after = after.context("the plug's counts are gone after a restart")?;
    ensure!(
        after.queries >= counts.queries && after.blocked >= counts.blocked,
        "the plug's counts went back across a restart: {counts:?} -> {after:?}"
    );
    ensure!(
        top_after.iter().any(|(name, _)| name == AD_NAME),
        "the plug's most asked names are gone after a restart: {top_after:?}"
    );
    Ok(Outcome::Passed)
}

/// v. Nobody goes around the resolver: plain DNS to the ISP's resolver is
/// answered by Bulkhead (the question shows in its log), DNS over TLS to it is
/// refused, and so is HTTPS to a configured DoH server.
pub(crate) fn v_dns_bypass_is_redirected_or_refused() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    // The "public DoH server" is the ISP resolver's address, on 443.
    demo.start_isp_resolver(&format!("doh_servers = [\"{RESOLVER_V4}/32\"]"))?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    demo.home.start_tcp_listener("isp", 443)?;
    let laptop = demo.home.ns("laptop")?;
    // Control, from the router itself: the resolver serves DoT and HTTPS.
    let resolver = IpAddr::V4(RESOLVER_V4);
    ensure!(
        connects(demo.home.router(), SocketAddr::new(resolver, 853))?,
        "the ISP resolver's DoT port is closed; the refusals below would prove nothing"
    );
    ensure!(connects(demo.home.router(), SocketAddr::new(resolver, 443))?);
    let (status, answers) = dig(laptop, resolver, "video.example.test", "A", false)?;
    ensure!(
        status == "NOERROR" && answers.iter().any(|a| a == "203.0.113.10"),
        "plain DNS to another server: {status} {answers:?}"
    );
    let laptop_mac = mac_of("laptop")?;
    let log = query_log(
        &demo,
        LogFilter {
            device: Some(laptop_mac),
            search: Some("video.example.test".into()),
            limit: 5,
            ..Default::default()
        },
    )?;
    ensure!(
        !log.is_empty(),
        "the question to {resolver} did not go through Bulkhead"
    );
    ensure!(
        !connects(laptop, SocketAddr::new(resolver, 853))?,
        "DNS over TLS to another server got through"
    );
    ensure!(
        !connects(laptop, SocketAddr::new(resolver, 443))?,
        "HTTPS to a known DoH server got through"
    );
    // Control: the laptop does reach port 443 of a server not on the list.
    ensure!(
        connects(laptop, SocketAddr::new(demo.home.internet_v4().into(), 443))?,
        "HTTPS to an ordinary server is refused too: the refusals above prove nothing"
    );
    // One dns-bypass alert for the laptop (it tried five times), none for the
    // plug (it only asked the router).
    dig(demo.home.ns("plug")?, gateway(), "www.example.test", "A", false)?;
    let deadline = Instant::now() + Duration::from_secs(25);
    let bypass_alerts = loop {
        let Response::Alerts { alerts } = demo.call(Request::Alerts { limit: 100 })? else {
            bail!("unexpected answer")
        };
        let found: Vec<_> = alerts
            .into_iter()
            .filter(|a| a.kind == bulkhead::alerts::AlertKind::DnsBypass)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    ensure!(
        bypass_alerts.len() == 1 && bypass_alerts[0].mac == Some(laptop_mac),
        "expected one dns-bypass alert for the laptop: {bypass_alerts:?}\n{}",
        demo.log()
    );
    ensure!(
        bypass_alerts[0]
            .message
            .starts_with("laptop tried to use another DNS resolver"),
        "the alert names the laptop: {:?}",
        bypass_alerts[0].message
    );
    Ok(Outcome::Passed)
}

/// A TCP handshake completes (whatever the server then says).
fn connects(ns: &Netns, addr: SocketAddr) -> Result<bool> {
    Ok(ns.run_in(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())?)
}

fn set_holds(demo: &DemoHome, ip: &str) -> Result<bool> {
    let out = demo
        .home
        .router()
        .exec(&["nft", "list", "set", "inet", "bulkhead", "dom_streaming_v4"])?;
    Ok(String::from_utf8_lossy(&out.stdout).contains(ip))
}

fn wait_tunnel_up(demo: &DemoHome, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Response::Tunnel(v) = demo.call(Request::Tunnel)? {
            if v.state == "up" {
                return Ok(());
            }
        }
        ensure!(Instant::now() < deadline, "the tunnel did not come up:\n{}", demo.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// w. Domain routing that never leaks: the answer for a selected domain puts
/// its address in the domain set before the client has it; the laptop (not
/// itself selected) then reaches it only through the tunnel; after `kill -9`
/// and a restart the set still holds it and nothing leaves in clear; with the
/// tunnel down the TV's own questions fail (SERVFAIL) instead of leaving by the
/// WAN. The oracle: the canary's counter on the WAN link stays at 0.
pub(crate) fn w_dns_domain_routing_never_leaks() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let tv = mac_of("tv")?;
    demo.configure_tunnel(
        &format!("[tunnel]\ndevices = [\"{tv}\"]\ndomains.streaming = [\"{STREAM_NAME}\"]\n"),
        2,
    )?;
    demo.install_canary()?;
    demo.start_isp_resolver(&format!("tunnel_upstreams = [\"{CANARY_V4}\"]"))?;
    demo.start_vpn_server()?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    wait_tunnel_up(&demo, Duration::from_secs(15))?;
    let canary = CANARY_V4.to_string();
    ensure!(
        !set_holds(&demo, &canary)?,
        "the set holds the canary before any question"
    );
    // The answer, and the set holds it by the time the client has it.
    expect_answer(&demo, "laptop", STREAM_NAME, "A", &canary)?;
    ensure!(
        set_holds(&demo, &canary)?,
        "the answer reached the client before its address was in the set"
    );
    let to_canary = SocketAddr::new(IpAddr::V4(CANARY_V4), CANARY_TCP);
    let laptop = demo.home.ns("laptop")?;
    ensure!(
        tcp_probe(laptop, to_canary, Duration::from_secs(2))?,
        "the laptop cannot reach the streaming address through the tunnel"
    );
    let c = demo.leak_count()?;
    ensure!(c.leaked() == 0 && c.tunnelled_v4 > 0, "after the answer: {c:?}");
    // The TV's own DNS goes through the tunnel to the VPN's resolver.
    expect_answer(&demo, "tv", "www.example.test", "A", "192.0.2.80")?;
    let c = demo.leak_count()?;
    ensure!(c.leaked() == 0, "the TV's DNS left in clear: {c:?}");
    // kill -9 and a restart: the kernel kept the set, the new daemon keeps it.
    demo.kill_daemon()?;
    demo.start_daemon()?;
    ensure!(
        set_holds(&demo, &canary)?,
        "after a restart the set lost the address:\n{}",
        demo.log()
    );
    wait_tunnel_up(&demo, Duration::from_secs(15))?;
    ensure!(
        tcp_probe(laptop, to_canary, Duration::from_secs(2))?,
        "after the restart the laptop no longer reaches the streaming address"
    );
    let c = demo.leak_count()?;
    ensure!(c.leaked() == 0, "after the restart: {c:?}");
    // The tunnel down: nothing for it leaves in clear, the TV's DNS fails.
    demo.kill_vpn_server()?;
    let fails = (0..3).all(|_| !tcp_probe(laptop, to_canary, Duration::from_millis(500)).unwrap_or(true));
    ensure!(fails, "the streaming address is reachable with the VPN server gone");
    let (status, _) = dig(demo.home.ns("tv")?, gateway(), "video.example.test", "A", false)?;
    ensure!(
        status == "SERVFAIL" || status.is_empty(),
        "the TV resolved a name with the tunnel down: {status}"
    );
    let c = demo.leak_count()?;
    ensure!(c.leaked() == 0, "with the tunnel down: {c:?}\n{}", demo.log());
    let status = dns_status(&demo).context("dns status")?;
    println!("    tunnel upstreams: {:?}", status.tunnel_upstreams);
    Ok(Outcome::Passed)
}

/// w2. A tunnelled device's upstream given by name finds its address through
/// the tunnel too: with `tunnel_upstreams = ["tls://dns.example.test"]` and
/// the canary as `dns.bootstrap` server, and the tunnel down (no VPN server),
/// the TV's questions get SERVFAIL, `dns status` says the bootstrap failed,
/// and not one packet reaches the canary in clear on the WAN (an unmarked
/// bootstrap question would).
pub(crate) fn w2_dns_tunnel_bootstrap_never_leaks() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let tv = mac_of("tv")?;
    demo.configure_tunnel(&format!("[tunnel]\ndevices = [\"{tv}\"]\n"), 2)?;
    demo.install_canary()?;
    let ca = demo.isp_resolver_ca();
    demo.start_isp_resolver(&format!(
        "tunnel_upstreams = [\"tls://dns.example.test\"]\nbootstrap = [\"{CANARY_V4}\"]\ntls_ca_file = {:?}",
        ca.display().to_string()
    ))?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    // The laptop's questions go directly (plain DNS): the home resolves.
    expect_answer(&demo, "laptop", "www.example.test", "A", "192.0.2.80")?;
    let tv_ns = demo.home.ns("tv")?;
    for name in ["www.example.test", "video.example.test", "short.example.test"] {
        let (status, answers) = dig(tv_ns, gateway(), name, "A", false)?;
        ensure!(
            status == "SERVFAIL" || status.is_empty(),
            "the TV resolved {name} with the tunnel down: {status} {answers:?}"
        );
    }
    let c = demo.leak_count()?;
    let status = dns_status(&demo).context("dns status")?;
    println!("    {c:?}; tunnel upstreams: {:?}", status.tunnel_upstreams);
    ensure!(
        c.leaked() == 0,
        "a bootstrap question left in clear: {c:?}\n{}",
        demo.log()
    );
    let (_, health) = status.tunnel_upstreams.first().context("the tunnel's upstream")?;
    ensure!(
        health.failing > 0
            && health
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("no address from the bootstrap servers")),
        "{health:?}"
    );
    Ok(Outcome::Passed)
}

/// x. DNS over TLS to the upstream: with plain DNS to the ISP's resolver
/// dropped in its namespace, answers still come (over 853, the certificate
/// checked against the configured CA); with the system's CA bundle instead,
/// the self-signed certificate is refused and the client gets SERVFAIL.
pub(crate) fn x_dns_over_tls_upstream() -> Result<Outcome> {
    for trusted in [true, false] {
        let demo = DemoHome::build(&super::daemon_bin(), &[])?;
        let ca = if trusted {
            demo.isp_resolver_ca()
        } else {
            std::path::PathBuf::from(bulkhead::config::DEFAULT_CA_FILE)
        };
        demo.start_isp_resolver_as(
            &format!("\"tls://{RESOLVER_V4}\""),
            &format!("tls_ca_file = {:?}", ca.display().to_string()),
        )?;
        // Plain DNS to the ISP resolver cannot be what answers.
        demo.home.isp().exec(&[
            "nft",
            "add table inet nodns; add chain inet nodns in { type filter hook input priority 0; }; \
             add rule inet nodns in th dport 53 meta l4proto { tcp, udp } counter drop",
        ])?;
        demo.start_daemon()?;
        demo.register_hosts()?;
        let (status, answers) = dig(demo.home.ns("laptop")?, gateway(), "www.example.test", "A", false)?;
        if trusted {
            ensure!(
                status == "NOERROR" && answers.iter().any(|a| a == "192.0.2.80"),
                "over TLS: {status} {answers:?}\n{}",
                demo.log()
            );
        } else {
            ensure!(
                status == "SERVFAIL" || status.is_empty(),
                "an upstream whose certificate does not chain to the CA answered: {status} {answers:?}"
            );
        }
    }
    Ok(Outcome::Passed)
}

/// The packets counted by the rule of `table` (inet, in `ns`) whose text
/// holds `needle`.
fn rule_packets(ns: &Netns, table: &str, needle: &str) -> Result<u64> {
    let out = ns.exec(&["nft", "list", "table", "inet", table])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split("packets ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no counter for {needle:?} in\n{text}"))
}

/// x2. Upstreams given by name, DNS over HTTPS, kept connections. The ISP's
/// resolver has a certificate for `dns.example.test`; in its namespace nft
/// counts plain DNS (53) and new connections (SYN) to 853 (DoT) and 8443
/// (DoH, HTTP/2 only in unbound):
/// - `tls://dns.example.test` with `dns.bootstrap`: answers; one bootstrap
///   question on 53, the questions themselves over TLS on one connection
///   (kept, RFC 7858); when the server drops it (`ss -K`), the next question
///   is asked again on a new one and the upstream has no failure;
/// - `https://dns.example.test:8443/dns-query` (found through bootstrap) and
///   `https://192.0.2.53:8443#dns.example.test/dns-query` (pinned, no
///   bootstrap: nothing on 53 at all): answers on one HTTP/2 connection,
///   renewed as for DoT;
/// - `tls://192.0.2.53#wrong.example.test`: the certificate does not name
///   it: SERVFAIL, and `dns status` says why (TLS, the name).
pub(crate) fn x2_dns_upstreams_by_name_and_over_https() -> Result<Outcome> {
    const NAMES: [&str; 5] = [
        "www.example.test",
        "video.example.test",
        "ns.example.test",
        "cdn.example.test",
        "short.example.test",
    ];
    let bootstrap = format!("bootstrap = [\"{RESOLVER_V4}\"]");
    // (upstream, extra, answers, the port its questions go to, bootstrap questions at most)
    let cases = [
        (
            "\"tls://dns.example.test\"".to_string(),
            bootstrap.clone(),
            true,
            853,
            2,
        ),
        (
            "\"https://dns.example.test:8443/dns-query\"".to_string(),
            bootstrap.clone(),
            true,
            8443,
            2,
        ),
        (
            format!("\"https://{RESOLVER_V4}:8443#dns.example.test/dns-query\""),
            String::new(),
            true,
            8443,
            0,
        ),
        (
            format!("\"tls://{RESOLVER_V4}#wrong.example.test\""),
            String::new(),
            false,
            853,
            0,
        ),
    ];
    for (upstream, extra, answers, port, max_plain) in cases {
        println!("    upstream {upstream}");
        let demo = DemoHome::build(&super::daemon_bin(), &[])?;
        let ca = demo.isp_resolver_ca();
        demo.start_isp_resolver_as(
            &upstream,
            &format!("{extra}\ntls_ca_file = {:?}", ca.display().to_string()),
        )?;
        // Counted from here on (unbound's readiness questions are over).
        demo.home.isp().exec(&[
            "nft",
            "add table inet seen; add chain inet seen in { type filter hook input priority 0; }; \
             add rule inet seen in th dport 53 meta l4proto { tcp, udp } counter; \
             add rule inet seen in tcp dport 853 tcp flags & (syn | ack) == syn counter; \
             add rule inet seen in tcp dport 8443 tcp flags & (syn | ack) == syn counter",
        ])?;
        demo.start_daemon()?;
        demo.register_hosts()?;
        let laptop = demo.home.ns("laptop")?;
        for name in NAMES {
            let (status, answer) = dig(laptop, gateway(), name, "A", false)?;
            if answers {
                ensure!(
                    status == "NOERROR" && !answer.is_empty(),
                    "{upstream}: {name}: {status} {answer:?}\n{:?}\n{}",
                    dns_status(&demo)?.upstreams,
                    demo.log()
                );
            } else {
                ensure!(
                    status == "SERVFAIL",
                    "{upstream}: a server whose certificate does not carry the name answered {name}: {status} {answer:?}"
                );
            }
        }
        let isp = demo.home.isp();
        if answers {
            // The server drops its connections (RST): the kept one is dead;
            // the next question is asked again on a new connection, and
            // that is not a failure of the upstream.
            isp.exec(&["ss", "-K", "state", "established", &format!("( sport = :{port} )")])?;
            let (status, answer) = dig(laptop, gateway(), "www.example.test", "AAAA", false)?;
            ensure!(
                status == "NOERROR" && !answer.is_empty(),
                "{upstream}: after the server dropped its connections: {status} {answer:?}\n{:?}",
                dns_status(&demo)?.upstreams
            );
        }
        let plain = rule_packets(isp, "seen", "dport 53 ")?;
        let connections = rule_packets(isp, "seen", &format!("dport {port} "))?;
        let status = dns_status(&demo)?;
        println!(
            "    {} questions: {plain} packets on 53, {connections} connections to {port}; {:?}",
            NAMES.len(),
            status.upstreams
        );
        let (_, health) = status.upstreams.first().context("an upstream in dns status")?;
        ensure!(
            plain <= max_plain,
            "{upstream}: {plain} plain DNS packets to the resolver"
        );
        if answers {
            ensure!(
                health.answered == NAMES.len() as u64 + 1 && health.failed == 0,
                "{upstream}: {health:?}"
            );
            ensure!(
                (2..=3).contains(&connections),
                "{upstream}: {connections} connections for {} questions (not kept, or not renewed)",
                NAMES.len() + 1
            );
        } else {
            let why = health.last_error.clone().unwrap_or_default();
            ensure!(
                health.failing > 0
                    && why.contains("TLS: invalid peer certificate")
                    && why.contains("wrong.example.test"),
                "{upstream}: dns status does not say why: {health:?}"
            );
        }
    }
    Ok(Outcome::Passed)
}

/// y. A blocklist from a URL: downloaded at start, again on `dns refresh`
/// (the new rules apply, the copy on disk follows), a broken download keeps
/// the last good copy, and after a restart with the server gone the copy
/// still blocks.
pub(crate) fn y_dns_blocklist_from_url() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let www = demo.dir.join("isp-www");
    std::fs::create_dir_all(&www)?;
    let list = www.join("remote.txt");
    std::fs::write(&list, "# served by the test\n||one.example.test^\n")?;
    let www_arg = www.display().to_string();
    demo.home.isp().spawn_logged(
        "python3",
        &[
            "-m",
            "http.server",
            "8000",
            "--bind",
            "203.0.113.10",
            "--directory",
            &www_arg,
        ],
        &demo.dir.join("http.log"),
    )?;
    // Python takes a moment to listen.
    let server = SocketAddr::new(IpAddr::from([203, 0, 113, 10]), 8000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connects(demo.home.isp(), server)? {
        ensure!(Instant::now() < deadline, "the list's HTTP server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    demo.start_isp_resolver(
        "\n[[dns.blocklists]]\nname = \"remote\"\nurl = \"http://203.0.113.10:8000/remote.txt\"\nrefresh_hours = 1",
    )?;
    let zones = demo.dir.join("policies/zones.toml");
    let text = std::fs::read_to_string(&zones)?;
    ensure!(text.contains("[zones.trusted]\n"), "the shipped zones define trusted");
    std::fs::write(
        &zones,
        text.replacen(
            "[zones.trusted]\n",
            "[zones.trusted]\ndns_blocklists = [\"remote\"]\n",
            1,
        ),
    )?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let blocked = |name: &str| -> Result<bool> {
        let (status, answers) = dig(demo.home.ns("laptop")?, gateway(), name, "A", false)?;
        Ok(status == "NOERROR" && answers == ["0.0.0.0"])
    };
    let wait_for = |what: &str, check: &dyn Fn() -> Result<bool>| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !check()? {
            ensure!(
                Instant::now() < deadline,
                "{what}\n--- daemon log:\n{}\n--- http log:\n{}",
                demo.log(),
                std::fs::read_to_string(demo.dir.join("http.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    };
    wait_for("the downloaded list never blocked one.example.test", &|| {
        blocked("one.example.test")
    })?;
    // A new version, on demand.
    std::fs::write(&list, "||two.example.test^\n")?;
    demo.call(Request::DnsRefresh)?;
    wait_for("the refreshed list never blocked two.example.test", &|| {
        blocked("two.example.test")
    })?;
    ensure!(!blocked("one.example.test")?, "the old rule outlived the new list");
    let copy = demo.dir.join("state/blocklists/remote.txt");
    ensure!(
        std::fs::read_to_string(&copy)? == "||two.example.test^\n",
        "the last good copy is not the new list"
    );
    // A broken download (an error page) keeps the copy in force.
    std::fs::write(&list, "<html><body>Service unavailable</body></html>\n")?;
    demo.call(Request::DnsRefresh)?;
    wait_for("a broken download was not reported", &|| {
        let s = dns_status(&demo)?;
        Ok(s.lists.iter().any(|l| l.name == "remote" && l.download_error.is_some()))
    })?;
    ensure!(blocked("two.example.test")?, "a broken download replaced the list");
    ensure!(std::fs::read_to_string(&copy)? == "||two.example.test^\n");
    // The server gone and the daemon restarted: the copy still blocks.
    std::fs::remove_file(&list)?;
    demo.stop_daemon()?;
    demo.start_daemon()?;
    ensure!(
        blocked("two.example.test")?,
        "after a restart without the server, the last good copy does not block:\n{}",
        demo.log()
    );
    Ok(Outcome::Passed)
}
