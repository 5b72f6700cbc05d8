//! End-to-end discovery tests: real DHCP clients (busybox udhcpc, ISC dhclient)
//! against Bulkhead's server, radvd for SLAAC, an mDNS announcer, Debian's
//! dnsmasq for observer mode. Bulkhead learns every device from that traffic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bulkhead::config::MacAddr;
use bulkhead::control::{Request, Response};
use bulkhead::demo::{DemoHome, HOSTS};

use super::{expect_tcp, set_elements, Outcome, SHORT};

fn zone(z: &str) -> Result<bulkhead::config::ZoneId> {
    bulkhead::config::ZoneId::new(z).map_err(anyhow::Error::msg)
}

fn host(name: &str) -> Result<&'static bulkhead::demo::DemoHost> {
    HOSTS.iter().find(|h| h.name == name).context("no such demo host")
}

fn discovering_home(extra: &[(&str, &str)]) -> Result<DemoHome> {
    let demo = DemoHome::build_discovering(&super::daemon_bin(), extra)?;
    demo.start_daemon()?;
    demo.start_router_adverts()?;
    Ok(demo)
}

/// Every device as the daemon reports it.
fn device_list(demo: &DemoHome) -> Result<Vec<bulkhead::control::DeviceView>> {
    let Response::Devices { devices } = demo.call(Request::Devices)? else {
        anyhow::bail!("unexpected answer to Devices")
    };
    Ok(devices)
}

/// The device as the daemon reports it, as JSON (class, evidence, zone…).
fn device(demo: &DemoHome, mac: MacAddr) -> Result<Option<serde_json::Value>> {
    Ok(device_list(demo)?
        .into_iter()
        .find(|d| d.mac == mac)
        .map(|d| serde_json::to_value(d).unwrap_or_default()))
}

/// Waits until `check` holds for the device's JSON.
fn wait_device(
    demo: &DemoHome,
    mac: MacAddr,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = device(demo, mac)?;
        if let Some(d) = d.as_ref().filter(|d| check(d)) {
            return Ok(d.clone());
        }
        ensure!(
            Instant::now() < deadline,
            "{mac}: {what} did not happen within 10 s; device = {}\n--- daemon log:\n{}",
            d.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn in_set(demo: &DemoHome, set: &str, element: &str) -> Result<bool> {
    Ok(set_elements(demo, set)?.contains(element))
}

/// k. Real DHCP clients get their reservations from Bulkhead (udhcpc and
/// dhclient), and each device's MAC and address are in its zone's sets.
pub fn k_dhcp_clients_are_discovered_and_enforced() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    for name in ["plug", "laptop"] {
        let h = host(name)?;
        let got = demo.join(h)?;
        let want: Ipv4Addr = h.ipv4.split('/').next().unwrap_or_default().parse()?;
        ensure!(got == want, "{name} got {got}, its reservation is {want}");
    }
    // The plug is recognised from its evidence (TP-Link vendor, HS105 hostname).
    let plug = MacAddr(host("plug")?.mac);
    let d = wait_device(&demo, plug, "placed in iot", |d| d["zone"] == "iot")?;
    ensure!(
        d["reason"] == "classified",
        "plug placed by {}, not classification",
        d["reason"]
    );
    ensure!(d["evidence"]["hostname"] == "HS105", "evidence: {}", d["evidence"]);
    ensure!(in_set(&demo, "iot_mac", &plug.to_string())?, "plug MAC not in iot_mac");
    ensure!(in_set(&demo, "iot_v4", "10.0.1.20")?, "plug address not in iot_v4");
    // The laptop is unknown until the homeowner approves it; it has a lease.
    let laptop = MacAddr(host("laptop")?.mac);
    let d = wait_device(&demo, laptop, "seen with its address", |d| {
        d["addresses"].to_string().contains("10.0.1.10")
    })?;
    ensure!(d["evidence"]["hostname"] == "annas-laptop", "dhclient's hostname: {d}");
    ensure!(
        d["evidence"]["dhcp_params"].as_array().is_some_and(|a| !a.is_empty()),
        "no fingerprint: {d}"
    );
    demo.call(Request::Approve {
        mac: laptop,
        zone: Some(zone("trusted")?),
    })?;
    ensure!(
        in_set(&demo, "trusted_v4", "10.0.1.10")?,
        "approved laptop not in trusted_v4"
    );
    expect_tcp(&demo, "laptop", "10.0.1.20".parse()?, 80, true)?;
    expect_tcp(&demo, "plug", "10.0.1.10".parse()?, 80, false)?;
    expect_tcp(&demo, "plug", demo.home.internet_v4().into(), 80, true)?;
    Ok(Outcome::Passed)
}

/// l. A host announcing `_googlecast._tcp` is classified as a media device and
/// placed in iot, with its mDNS evidence kept.
pub fn l_mdns_cast_device_is_media_in_iot() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    let tv = host("tv")?;
    let ip = demo.join(tv)?;
    demo.announce(tv, ip)?;
    let d = wait_device(&demo, MacAddr(tv.mac), "classified from mDNS", |d| {
        d["evidence"]["mdns_services"].to_string().contains("_googlecast._tcp")
    })?;
    ensure!(d["zone"] == "iot", "tv in {}: {d}", d["zone"]);
    ensure!(d["class"]["class"] == "media", "tv class: {d}");
    ensure!(
        d["evidence"]["txt"]["md"] == "Chromecast",
        "TXT md not kept: {}",
        d["evidence"]
    );
    ensure!(in_set(&demo, "iot_v4", &ip.to_string())?, "tv address not in iot_v4");
    // Joining and being recognised is one event: one alert, by name.
    let about_tv = || -> Result<Vec<bulkhead::alerts::Alert>> {
        let Response::Alerts { alerts } = demo.call(Request::Alerts { limit: 50 })? else {
            anyhow::bail!("unexpected answer")
        };
        Ok(alerts.into_iter().filter(|a| a.mac == Some(MacAddr(tv.mac))).collect())
    };
    super::wait_until("an alert about the tv", Duration::from_secs(30), || {
        Ok(!about_tv()?.is_empty())
    })?;
    // Past the hold: nothing more comes.
    std::thread::sleep(Duration::from_secs(2));
    let told = about_tv()?;
    ensure!(
        told.len() == 1
            && told[0].kind == bulkhead::alerts::AlertKind::NewDevice
            && told[0].message.starts_with("Chromecast joined and was placed in iot (")
            && told[0].message.contains("a media device"),
        "one alert, \"Chromecast joined and was placed in iot\": {told:?}"
    );
    Ok(Outcome::Passed)
}

/// m. A device nobody recognises lands in quarantine with an alert, reaches only
/// DHCP and DNS, and `device approve` releases it.
pub fn m_unknown_device_is_quarantined_until_approved() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    let s = host("stranger")?;
    let ip = demo.join(s)?; // DHCP worked from quarantine
    let mac = MacAddr(s.mac);
    let d = wait_device(&demo, mac, "known", |d| {
        d["addresses"].to_string().contains(&ip.to_string())
    })?;
    ensure!(d["zone"] == "quarantine" && d["reason"] == "unknown", "stranger: {d}");
    ensure!(in_set(&demo, "quarantine_v4", &ip.to_string())?, "not in quarantine_v4");
    // Held for a rule that might still recognise it (JOIN_HOLD_SECS), then
    // said once, by name: the stranger's host name, not its MAC.
    let held = || -> Result<Option<bulkhead::alerts::Alert>> {
        let Response::Alerts { alerts } = demo.call(Request::Alerts { limit: 20 })? else {
            anyhow::bail!("unexpected answer")
        };
        Ok(alerts
            .into_iter()
            .find(|a| a.mac == Some(mac) && a.kind == bulkhead::alerts::AlertKind::NewDeviceQuarantined))
    };
    super::wait_until(
        "the quarantine alert",
        Duration::from_secs(30),
        || Ok(held()?.is_some()),
    )?;
    let alert = held()?.context("the quarantine alert went away")?;
    ensure!(
        alert.message.starts_with("stranger joined and waits in quarantine") && !alert.message.contains("bulkhead "),
        "the alert names the device and holds no command: {:?}",
        alert.message
    );
    let internet: IpAddr = demo.home.internet_v4().into();
    let (status, _) = super::dns::dig(demo.home.ns("stranger")?, "10.0.1.1".parse()?, "router.lan", "A", true)?;
    ensure!(
        status == "NOERROR",
        "quarantine cannot ask the router's DNS over TCP: {status}"
    );
    expect_tcp(&demo, "stranger", internet, 80, false)?;
    demo.call(Request::Approve {
        mac,
        zone: Some(zone("guest")?),
    })?;
    expect_tcp(&demo, "stranger", internet, 80, true)?;
    Ok(Outcome::Passed)
}

/// n. An iot device's SLAAC address joins iot_v6 and is treated like its IPv4:
/// it cannot open a connection to the trusted laptop; the laptop reaches it.
pub fn n_slaac_addresses_are_enforced_like_ipv4() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    for name in ["laptop", "plug"] {
        demo.join(host(name)?)?;
    }
    demo.call(Request::Approve {
        mac: MacAddr(host("laptop")?.mac),
        zone: Some(zone("trusted")?),
    })?;
    let v6_of = |name: &str| -> Result<Vec<std::net::Ipv6Addr>> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let a = demo.host_ipv6(name)?;
            if !a.is_empty() || Instant::now() > deadline {
                return Ok(a);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let plug6 = *v6_of("plug")?
        .first()
        .context("plug got no SLAAC address from the router adverts")?;
    let laptop6 = v6_of("laptop")?;
    ensure!(!laptop6.is_empty(), "laptop got no SLAAC address");
    // Any traffic through the router puts the address in its neighbour table.
    let gw6: IpAddr = "fd00:1::1".parse()?;
    for name in ["plug", "laptop"] {
        let _ = bulkhead_netns::ping(demo.home.ns(name)?, gw6, SHORT)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = false;
    while !found && Instant::now() < deadline {
        found = in_set(&demo, "iot_v6", &plug6.to_string())?;
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        found,
        "plug's SLAAC address {plug6} never reached iot_v6:\n{}",
        set_elements(&demo, "iot_v6")?
    );
    for a in &laptop6 {
        expect_tcp(&demo, "plug", IpAddr::V6(*a), 80, false)?;
    }
    expect_tcp(&demo, "laptop", IpAddr::V6(plug6), 80, true)?;
    Ok(Outcome::Passed)
}

/// The stranger joins by DHCP, is seen in quarantine, and is approved into
/// guest (a homeowner's decision the restart tests look for afterwards).
fn stranger_approved_into_guest(demo: &DemoHome) -> Result<MacAddr> {
    demo.join(host("stranger")?)?;
    let stranger = MacAddr(host("stranger")?.mac);
    wait_device(demo, stranger, "known", |d| d["zone"] == "quarantine")?;
    demo.call(Request::Approve {
        mac: stranger,
        zone: Some(zone("guest")?),
    })?;
    Ok(stranger)
}

/// o. A restart keeps leases and zones: after kill -9 and a new start, the sets
/// hold the same devices and a client asking for its address again gets it.
pub fn o_restart_keeps_leases_and_zones() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    demo.join(host("plug")?)?;
    stranger_approved_into_guest(&demo)?;
    let before: Vec<String> = ["iot_v4", "guest_v4", "iot_mac", "guest_mac"]
        .iter()
        .map(|s| set_elements(&demo, s))
        .collect::<Result<_>>()?;
    demo.kill_daemon()?;
    demo.start_daemon()?;
    let after: Vec<String> = ["iot_v4", "guest_v4", "iot_mac", "guest_mac"]
        .iter()
        .map(|s| set_elements(&demo, s))
        .collect::<Result<_>>()?;
    ensure!(before == after, "sets differ after restart:\n{before:#?}\n{after:#?}");
    let Response::Status(st) = demo.call(Request::Status)? else {
        anyhow::bail!("unexpected answer")
    };
    ensure!(st.leases >= 2, "leases not kept: {st:?}");
    // The stranger (now in guest) asks again: same address.
    let again = demo.join(host("stranger")?)?;
    ensure!(
        again.to_string() == "10.0.1.99",
        "stranger got {again} after the restart"
    );
    Ok(Outcome::Passed)
}

/// o2. A damaged device database does not stop the router: the file is
/// overwritten while the daemon is down; it starts all the same, keeps the
/// damaged file for the homeowner, says so in an alert, and fails closed —
/// the stranger, approved into guest before, is back in quarantine (the
/// decision is not silently kept nor silently lost: the alert says to decide
/// again) until the homeowner decides again.
pub fn o2_a_damaged_database_does_not_stop_the_router() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    let stranger = stranger_approved_into_guest(&demo)?;
    ensure!(
        set_elements(&demo, "guest_mac")?.contains(&stranger.to_string()),
        "approved into guest"
    );
    demo.kill_daemon()?;
    let state = demo.dir.join("state");
    std::fs::write(state.join("bulkhead.db"), b"this is not a database ".repeat(400))?;
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(state.join(format!("bulkhead.db{ext}")));
    }
    demo.start_daemon()
        .with_context(|| format!("the daemon did not start on a damaged database:\n{}", demo.log()))?;
    let Response::Alerts { alerts } = demo.call(Request::Alerts { limit: 20 })? else {
        anyhow::bail!("unexpected answer")
    };
    let told = alerts
        .iter()
        .find(|a| a.kind == bulkhead::alerts::AlertKind::StoreFailed)
        .with_context(|| format!("no store-failed alert in {alerts:?}"))?;
    ensure!(
        told.message.contains("damaged") && told.message.contains("kept as"),
        "the alert says what happened: {}",
        told.message
    );
    let kept: Vec<_> = std::fs::read_dir(&state)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("bulkhead.db.damaged-"))
        .collect();
    ensure!(!kept.is_empty(), "the damaged file is kept in {}", state.display());
    // Fail-closed: the stranger comes back and waits in quarantine again.
    demo.join(host("stranger")?)?;
    wait_device(&demo, stranger, "quarantined again", |d| d["zone"] == "quarantine")?;
    ensure!(
        !set_elements(&demo, "guest_mac")?.contains(&stranger.to_string()),
        "a decision the database lost must not stay in force unseen"
    );
    Ok(Outcome::Passed)
}

/// p. Observer mode: Debian's dnsmasq hands out addresses; Bulkhead captures the
/// client's DHCP packets (fingerprint) and reads dnsmasq's lease file (binding);
/// the device lands in its zone; dnsmasq serves no DNS (`--port=0`) and Bulkhead
/// answers the device by its own address, with its zone's list.
pub fn p_observer_mode_with_dnsmasq() -> Result<Outcome> {
    let demo = DemoHome::build_discovering(&super::daemon_bin(), &[])?;
    let leases = demo.dir.join("dnsmasq.leases");
    demo.set_observe(&leases)?;
    // DNS coexistence as on OpenWrt: dnsmasq keeps DHCP only (`--port=0`,
    // option 6 naming the router), Bulkhead answers DNS on port 53 and so
    // sees each device's own address (a forwarding dnsmasq would hide it).
    demo.start_isp_resolver("")?;
    demo.start_daemon()?;
    demo.start_dnsmasq(
        "10.0.1.150,10.0.1.160,1h",
        &leases,
        &["--log-dhcp", "--dhcp-option=option:dns-server,10.0.1.1"],
    )?;
    let plug = host("plug")?;
    let ip = demo.join(plug)?;
    ensure!(
        (150..=160).contains(&ip.octets()[3]),
        "the plug's address {ip} is not from dnsmasq's range"
    );
    let d = wait_device(&demo, MacAddr(plug.mac), "seen with its dnsmasq address", |d| {
        d["addresses"].to_string().contains(&ip.to_string())
    })?;
    ensure!(d["evidence"]["hostname"] == "HS105", "captured hostname: {d}");
    ensure!(
        d["evidence"]["dhcp_params"].as_array().is_some_and(|a| !a.is_empty()),
        "captured fingerprint: {d}"
    );
    ensure!(d["zone"] == "iot", "plug zone: {d}");
    ensure!(in_set(&demo, "iot_v4", &ip.to_string())?, "not in iot_v4");
    // Per-device DNS policy with dnsmasq serving DHCP: the plug (iot) gets
    // its zone's ad list, by its own address.
    let (status, answers) = super::dns::dig(
        demo.home.ns("plug")?,
        "10.0.1.1".parse()?,
        bulkhead::demo::dns::AD_NAME,
        "A",
        false,
    )?;
    ensure!(
        status == "NOERROR" && answers == ["0.0.0.0"],
        "the plug's zone list did not apply beside dnsmasq: {status} {answers:?}\n{}",
        demo.log()
    );
    // Forged in the plug's name from the stranger (its own frames, the
    // plug's MAC in `chaddr`): a RELEASE of the plug's address, then a
    // REQUEST for another address under a phone's name. dnsmasq reads DHCP
    // from a UDP socket and believes both (its lease file says so); Bulkhead
    // believes a binding change only as the MAC's own packets say: the plug
    // keeps its address, name, zone and internet, and gains nothing.
    demo.join(host("stranger")?)?;
    let server = [10u8, 0, 1, 1];
    let other: Ipv4Addr = if ip.octets()[3] == 159 {
        "10.0.1.158"
    } else {
        "10.0.1.159"
    }
    .parse()?;
    let release = dhcp_request(7, plug.mac, ip, &[(54, &server)]);
    let rename = dhcp_request(
        3,
        plug.mac,
        Ipv4Addr::UNSPECIFIED,
        &[(50, &other.octets()), (54, &server), (12, b"annas-new-iphone")],
    );
    let forge = |message: &[u8]| -> Result<()> {
        demo.home.ns("stranger")?.run_in(|| -> Result<()> {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket.set_broadcast(true)?;
            socket.send_to(message, "255.255.255.255:67")?;
            Ok(())
        })??;
        Ok(())
    };
    let plug_mac = MacAddr(plug.mac).to_string();
    let lease_line = || -> Result<Option<String>> {
        Ok(std::fs::read_to_string(&leases)?
            .lines()
            .find(|l| l.contains(&plug_mac))
            .map(str::to_string))
    };
    let ignored = || -> Result<u64> {
        let Response::Status(status) = demo.call(Request::Status)? else {
            anyhow::bail!("unexpected answer to Status")
        };
        Ok(status.dhcp_lease_changes_ignored)
    };
    let plug_unchanged = |what: &str| -> Result<()> {
        let d = device(&demo, MacAddr(plug.mac))?.context("the plug is gone")?;
        ensure!(
            d["zone"] == "iot"
                && d["evidence"]["hostname"] == "HS105"
                && d["addresses"].to_string().contains(&ip.to_string())
                && !d["addresses"].to_string().contains(&other.to_string()),
            "{what} changed the plug: {d}\n{}",
            demo.log()
        );
        ensure!(
            in_set(&demo, "iot_v4", &ip.to_string())?,
            "{what}: the plug's address left iot_v4"
        );
        expect_tcp(&demo, "plug", demo.home.internet_v4().into(), 80, true)
    };
    forge(&release)?;
    super::wait_until("dnsmasq believed the forged release", Duration::from_secs(5), || {
        Ok(lease_line()?.is_none())
    })?;
    super::wait_until("the daemon read the lease file", Duration::from_secs(5), || {
        Ok(ignored()? >= 1)
    })?;
    plug_unchanged("a forged release to dnsmasq")?;
    forge(&rename)?;
    super::wait_until("dnsmasq believed the forged request", Duration::from_secs(5), || {
        Ok(lease_line()?.is_some_and(|l| l.contains(&other.to_string())))
    })?;
    super::wait_until("the daemon read the lease file again", Duration::from_secs(5), || {
        Ok(ignored()? >= 2)
    })?;
    plug_unchanged("a forged request to dnsmasq")?;
    let spoofing = super::detect::of_kinds(&super::detect::alerts(&demo)?, &[bulkhead::alerts::AlertKind::Spoofing]);
    let stranger = MacAddr(host("stranger")?.mac);
    ensure!(
        spoofing.iter().any(|a| a.mac == Some(stranger)),
        "no spoofing alert names the stranger: {spoofing:?}"
    );
    Ok(Outcome::Passed)
}

/// q. Hostile names and malformed packets: a hostname full of HTML, quotes,
/// newlines and a bidi override is stored as data (never in nft text), and
/// garbage sent to port 67 is dropped and counted while the daemon keeps serving.
pub fn q_hostile_names_and_malformed_packets() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    let ns = demo.home.ns("stranger")?;
    // Garbage first: truncated, wrong op, random bytes, a maximal datagram.
    let sent = ns.run_in(|| -> std::io::Result<usize> {
        // As a client without an address does: from 0.0.0.0:68, out of eth0.
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        raw.set_broadcast(true)?;
        raw.bind_device(Some(b"eth0"))?;
        raw.bind(&SocketAddr::from(([0, 0, 0, 0], 68)).into())?;
        let sock: std::net::UdpSocket = raw.into();
        let to = SocketAddr::from(([255, 255, 255, 255], 67));
        let mut n = 0;
        let mut junk = vec![0u8; 1400];
        for (i, b) in junk.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        for payload in [&b"\x01"[..], &[2u8; 300][..], &junk[..], &[0xffu8; 240][..]] {
            n += sock.send_to(payload, to)?;
        }
        Ok(n)
    })??;
    ensure!(sent > 0, "sent nothing");
    let hostile = "<script>alert(1)</script>\"';\u{202e}x";
    let mac = MacAddr(host("stranger")?.mac);
    let out = ns.exec(&[
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-f",
        "-q",
        "-n",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        &demo.dir.join("udhcpc.script").to_string_lossy(),
        "-x",
        &format!("hostname:{hostile}"),
    ]);
    out.context("the daemon stopped serving after garbage")?;
    let d = wait_device(&demo, mac, "hostname stored", |d| d["evidence"]["hostname"].is_string())?;
    ensure!(d["evidence"]["hostname"] == hostile, "hostname altered: {d}");
    let Response::Status(st) = demo.call(Request::Status)? else {
        anyhow::bail!("unexpected answer")
    };
    ensure!(st.dhcp_malformed >= 3, "malformed packets not counted: {st:?}");
    let listing = demo.home.router().exec(&["nft", "list", "ruleset"])?;
    ensure!(
        !String::from_utf8_lossy(&listing.stdout).contains("script"),
        "device text reached nft"
    );
    Ok(Outcome::Passed)
}

/// One DHCPDISCOVER (BOOTP header, magic cookie, option 53 = 1) claiming `mac`.
fn forged_discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut p = dhcp_request(1, mac, Ipv4Addr::UNSPECIFIED, &[]);
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p
}

/// q2. A flood of forged DISCOVERs (fresh MACs, Ethernet sources forged to
/// match, 2,000 a second, from the quarantined stranger) starves nobody: the plug (reserved) and a newcomer
/// with no reservation get their leases from real DHCP clients meanwhile; the
/// flood is counted as throttled and does not fill the inventory.
pub fn q2_dhcp_flood_starves_nobody() -> Result<Outcome> {
    let newbie_mac = [0x02, 0x5e, 0, 0, 0x0a, 0x01];
    let demo = DemoHome::build_discovering_with(
        &super::daemon_bin(),
        &[],
        &[bulkhead_netns::HostSpec::new("newbie", "lan", newbie_mac)],
    )?;
    demo.start_daemon()?;
    demo.start_router_adverts()?;
    let devices_before = match demo.call(Request::Devices)? {
        Response::Devices { devices } => devices.len(),
        other => anyhow::bail!("unexpected answer {other:?}"),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood_stop = stop.clone();
    let flood = demo
        .home
        .ns("stranger")?
        .spawn_thread("dhcp-flood", move || -> std::io::Result<u64> {
            // Each DISCOVER in a frame from its own fresh MAC (as macof
            // does): they pass the sender check and reach the server's
            // throttle, which is what this tests.
            let raw = bulkhead_netns::raw::RawSender::open("eth0")?;
            let mut n: u64 = 0;
            let started = Instant::now();
            while !flood_stop.load(std::sync::atomic::Ordering::Relaxed) {
                let b = (n as u32).to_be_bytes();
                let mac = [0x02, 0xee, b[0], b[1], b[2], b[3]];
                raw.send(&bulkhead_netns::raw::udp_broadcast_frame(
                    mac,
                    68,
                    67,
                    &forged_discover(mac, n as u32),
                ))?;
                n += 1;
                // 2,000 a second.
                let due = Duration::from_micros(n * 500);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(n)
        })?;
    std::thread::sleep(Duration::from_secs(2));
    let joined = (|| -> Result<(Ipv4Addr, Ipv4Addr)> {
        let plug = demo.join(host("plug")?)?;
        let newbie = demo.join_as(
            "newbie",
            &bulkhead::demo::DhcpIdentity {
                hostname: "newbie",
                vendor_class: "",
                client: bulkhead::demo::DemoClient::Udhcpc,
            },
        )?;
        Ok((plug, newbie))
    })();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood
        .join()
        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))???;
    let (plug, newbie) =
        joined.with_context(|| format!("joining during a flood of {sent} DISCOVERs\n{}", demo.log()))?;
    ensure!(plug == Ipv4Addr::new(10, 0, 1, 20), "the plug got {plug}");
    ensure!(newbie.octets()[..3] == [10, 0, 1], "the newcomer got {newbie}");
    ensure!(sent > 4_000, "the flood sent only {sent}");
    let Response::Status(st) = demo.call(Request::Status)? else {
        anyhow::bail!("unexpected answer to Status");
    };
    let lan = st
        .dhcp
        .iter()
        .find(|(s, _)| s.as_str() == "lan")
        .map(|(_, c)| *c)
        .context("no lan counters")?;
    ensure!(
        lan.throttled > sent / 2,
        "the flood was not throttled: {lan:?} after {sent} DISCOVERs"
    );
    let devices_after = match demo.call(Request::Devices)? {
        Response::Devices { devices } => devices.len(),
        other => anyhow::bail!("unexpected answer {other:?}"),
    };
    // The admitted part of the flood (5 a second after a burst of 20) may be
    // tracked; the rest never reaches the inventory.
    ensure!(
        devices_after < devices_before + 200,
        "the flood filled the inventory: {devices_before} → {devices_after} devices"
    );
    Ok(Outcome::Passed)
}

/// A BOOTP request from a DHCP client with `chaddr` (whoever sends it):
/// message type `kind`, `ciaddr`, and options as (code, data).
fn dhcp_request(kind: u8, chaddr: [u8; 6], ciaddr: Ipv4Addr, options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&0x5eed_0001u32.to_be_bytes());
    m[10] = 0x80;
    m[12..16].copy_from_slice(&ciaddr.octets());
    m[28..34].copy_from_slice(&chaddr);
    m.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    for (code, data) in options {
        m.push(*code);
        m.push(data.len() as u8);
        m.extend_from_slice(data);
    }
    m.push(255);
    m
}

/// q3. Forged DHCP from the quarantined stranger, in the plug's name (its MAC
/// in `chaddr`, the frame from the stranger's own MAC): a DISCOVER with a
/// phone's host name and a RELEASE of the plug's address. Before the fix the
/// first moved the plug to quarantine and planted "annas-new-iphone"; the
/// second took its address out of the firewall's sets. Now both are dropped:
/// the plug keeps zone, name, address and internet; one spoofing alert names
/// the stranger. And an nmap UDP scan of port 67 (whose probe carries a fixed
/// `chaddr`) creates no device, nor does a whole TCP and UDP scan of the
/// camera's network.
pub fn q3_forged_dhcp_cannot_move_or_evict_a_device() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    for name in ["plug", "stranger", "camera"] {
        demo.join(host(name)?)?;
    }
    let plug = MacAddr(host("plug")?.mac);
    let stranger = MacAddr(host("stranger")?.mac);
    wait_device(&demo, plug, "placed in iot", |d| d["zone"] == "iot")?;
    let plug_ip: Ipv4Addr = host("plug")?.ipv4.split('/').next().unwrap_or_default().parse()?;
    let forged = [
        dhcp_request(1, plug.0, Ipv4Addr::UNSPECIFIED, &[(12, b"annas-new-iphone")]),
        dhcp_request(7, plug.0, plug_ip, &[(54, &[10, 0, 1, 1])]),
        dhcp_request(
            4,
            plug.0,
            Ipv4Addr::UNSPECIFIED,
            &[(50, &plug_ip.octets()), (54, &[10, 0, 1, 1])],
        ),
    ];
    demo.home.ns("stranger")?.run_in(|| -> Result<()> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.set_broadcast(true)?;
        for message in &forged {
            for to in ["255.255.255.255:67", "10.0.1.1:67"] {
                socket.send_to(message, to)?;
            }
        }
        Ok(())
    })??;
    std::thread::sleep(Duration::from_millis(800));
    let d = device(&demo, plug)?.context("the plug is gone")?;
    ensure!(
        d["zone"] == "iot"
            && d["evidence"]["hostname"] == "HS105"
            && d["addresses"].to_string().contains(&plug_ip.to_string()),
        "a forged message changed the plug: {d}\n{}",
        demo.log()
    );
    ensure!(
        in_set(&demo, "iot_v4", &plug_ip.to_string())?,
        "the plug's address left the iot set"
    );
    expect_tcp(&demo, "plug", demo.home.internet_v4().into(), 80, true)?;
    let Response::Devices { devices } = demo.call(Request::Devices)? else {
        anyhow::bail!("unexpected answer to Devices")
    };
    ensure!(
        !devices
            .iter()
            .any(|d| d.evidence.hostname.as_deref() == Some("annas-new-iphone")),
        "a forged host name planted a device"
    );
    let Response::Alerts { alerts } = demo.call(Request::Alerts { limit: 50 })? else {
        anyhow::bail!("unexpected answer to Alerts")
    };
    let spoofing: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == bulkhead::alerts::AlertKind::Spoofing)
        .collect();
    ensure!(
        spoofing.len() == 1 && spoofing[0].mac == Some(stranger) && spoofing[0].count >= 3,
        "one spoofing alert naming the stranger, counting every message: {spoofing:?}"
    );

    // nmap's DHCP probe, from the camera: no device appears.
    let before = devices.len();
    let camera = demo.home.ns("camera")?;
    camera.exec(&["nmap", "-n", "-sU", "-p", "67", "--max-retries", "1", "10.0.2.1"])?;
    std::thread::sleep(Duration::from_millis(500));
    let devices = device_list(&demo)?;
    ensure!(
        devices.len() == before,
        "nmap -sU -p67 created a device: {:?}",
        devices.iter().map(|d| d.mac.to_string()).collect::<Vec<_>>()
    );

    // A whole scan of the camera's network: ARP host discovery of the /24,
    // then TCP and UDP on the 40 commonest ports of what answered (nmap's
    // UDP probes carry DHCP, mDNS, SSDP, NetBIOS and SNMP payloads): still
    // no device that did not send a frame of its own.
    let out = camera.exec(&[
        "nmap",
        "-n",
        "-T5",
        "--max-retries",
        "1",
        "-sS",
        "-sU",
        "--top-ports",
        "40",
        "10.0.2.0/24",
    ])?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(report.contains("Nmap done"), "nmap did not finish: {report}");
    std::thread::sleep(Duration::from_secs(2));
    let devices = device_list(&demo)?;
    ensure!(
        devices.len() == before,
        "a full nmap scan created a device: {:?}\n{report}",
        devices.iter().map(|d| d.mac.to_string()).collect::<Vec<_>>()
    );
    Ok(Outcome::Passed)
}

/// q5. A forged Ethernet source from another bridge port, the case q3's
/// sender check cannot tell: the quarantined stranger sends frames with the
/// plug's MAC as their source (a gratuitous ARP for the plug's address, and
/// a DHCP DISCOVER with a phone's host name whose `chaddr` matches the forged
/// source). The bridge drops them before it learns: its forwarding table
/// keeps the plug on the plug's port, the plug keeps its zone, name, address
/// and internet, the guard's counter moves and one spoofing alert names the
/// plug and the port the frames came in on. When the plug's port goes down
/// (it was unplugged), the binding is released, and the port the MAC shows
/// up on next binds it.
pub fn q5_a_forged_source_mac_from_another_port_is_dropped() -> Result<Outcome> {
    use super::detect::{alerts, bridge_rule_packets, fdb_port, of_kinds, send_frames};
    let demo = discovering_home(&[])?;
    for name in ["plug", "stranger"] {
        demo.join(host(name)?)?;
    }
    let plug = MacAddr(host("plug")?.mac);
    wait_device(&demo, plug, "placed in iot", |d| d["zone"] == "iot")?;
    let plug_s = plug.to_string();
    let plug_ip: Ipv4Addr = host("plug")?.ipv4.split('/').next().unwrap_or_default().parse()?;
    let plug_port = fdb_port(&demo, "br-lan", &plug_s)?.context("the bridge has not learned the plug")?;
    let bound = |port: &str| -> Result<bool> {
        let out = demo
            .home
            .router()
            .exec(&["nft", "list", "set", "bridge", "bulkhead", "port-of"])?;
        Ok(String::from_utf8_lossy(&out.stdout).contains(&format!("{plug_s} . \"{port}\"")))
    };
    super::wait_until("the plug is bound to its port", Duration::from_secs(5), || {
        bound(&plug_port)
    })?;
    super::detect::wait_link_locals_guarded(&demo)?;
    let forge = |frames: Vec<Vec<u8>>| -> Result<()> {
        send_frames(&demo, "stranger", frames)?;
        std::thread::sleep(Duration::from_millis(800));
        Ok(())
    };
    let mut garp = vec![0xff; 6];
    garp.extend_from_slice(&plug.0);
    garp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    garp.extend_from_slice(&plug.0);
    garp.extend_from_slice(&plug_ip.octets());
    garp.extend_from_slice(&[0xff; 6]);
    garp.extend_from_slice(&plug_ip.octets());
    let discover = dhcp_request(1, plug.0, Ipv4Addr::UNSPECIFIED, &[(12, b"annas-new-iphone")]);
    let dhcp = bulkhead_netns::raw::udp_broadcast_frame(plug.0, 68, 67, &discover);
    forge(vec![garp.clone(), dhcp])?;
    let now_on = fdb_port(&demo, "br-lan", &plug_s)?;
    ensure!(
        now_on.as_deref() == Some(plug_port.as_str()),
        "the bridge moved the plug's MAC to {now_on:?} (was {plug_port})"
    );
    ensure!(bound(&plug_port)?, "the plug is no longer bound to {plug_port}");
    let (dropped, listed) = bridge_rule_packets(&demo, "prerouting", "mac-on-other-port")?;
    ensure!(
        dropped.is_some_and(|n| n >= 6),
        "the forged frames were not all dropped: {listed}"
    );
    let d = device(&demo, plug)?.context("the plug is gone")?;
    ensure!(
        d["zone"] == "iot"
            && d["evidence"]["hostname"] == "HS105"
            && d["addresses"].to_string().contains(&plug_ip.to_string()),
        "a forged frame changed the plug: {d}\n{}",
        demo.log()
    );
    expect_tcp(&demo, "plug", demo.home.internet_v4().into(), 80, true)?;
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let spoofing = of_kinds(&alerts(&demo)?, &[bulkhead::alerts::AlertKind::Spoofing]);
        if spoofing.len() == 1 && spoofing[0].message.contains("HS105") && spoofing[0].message.contains("port ") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "one spoofing alert naming the plug and the port: {spoofing:?}\n{}",
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Unplugged: the kernel forgets the plug on its port, the daemon lets
    // the binding go, and the next port the MAC shows up on binds it.
    demo.home
        .router()
        .exec(&["ip", "link", "set", "dev", &plug_port, "down"])?;
    super::wait_until("the plug's binding is released", Duration::from_secs(5), || {
        Ok(!bound(&plug_port)?)
    })?;
    forge(vec![garp])?;
    let new_port = fdb_port(&demo, "br-lan", &plug_s)?.context("the MAC was not learned anew")?;
    ensure!(new_port != plug_port, "still on {plug_port}");
    super::wait_until(
        "the MAC is bound to the port it showed up on",
        Duration::from_secs(5),
        || bound(&new_port),
    )?;
    // And the homeowner is told: moved, or taken while it was gone.
    let spoofing = of_kinds(&alerts(&demo)?, &[bulkhead::alerts::AlertKind::Spoofing]);
    ensure!(
        spoofing.iter().any(|a| a.message.contains("HS105")
            && a.message.contains(&format!("now comes from port {new_port}"))
            && a.message.contains(&format!("port {plug_port}"))),
        "no alert that the plug's MAC moved to {new_port}: {spoofing:?}"
    );
    Ok(Outcome::Passed)
}

/// q6. mDNS evidence counts only for the device that sent it. The laptop
/// and the plug run avahi (the plug as a compromised Linux device would).
/// The plug announces its own service, a printer on a made-up host whose
/// address is the laptop's (an HP printer: a class rule would place it in
/// iot), and — hand-made, from its own socket — a TXT record for the
/// laptop's own instance saying it is a Chromecast. The laptop's and the
/// plug's own services count for each; nothing the plug said counts for the
/// laptop: no evidence, same zone and class; one spoofing alert names both.
pub fn q6_mdns_evidence_counts_only_for_the_device_that_sent_it() -> Result<Outcome> {
    use super::detect::{alerts, of_kinds};
    use bulkhead_netns::avahi::Avahi;
    let demo = discovering_home(&[])?;
    let laptop_ip = demo.join(host("laptop")?)?;
    demo.join(host("plug")?)?;
    let (laptop, plug) = (MacAddr(host("laptop")?.mac), MacAddr(host("plug")?.mac));
    wait_device(&demo, plug, "placed in iot", |d| d["zone"] == "iot")?;
    let before = wait_device(&demo, laptop, "known", |d| d["zone"].is_string())?;

    let anna = Avahi::start(
        demo.home.ns("laptop")?,
        &demo.dir.join("avahi-laptop"),
        "annas-laptop",
        "eth0",
    )?;
    anna.publish("Anna's Laptop", "_ssh._tcp", 22, &[])?;
    let evil = Avahi::start(demo.home.ns("plug")?, &demo.dir.join("avahi-plug"), "hs105", "eth0")?;
    evil.publish("HS105 setup", "_http._tcp", 80, &[])?;
    evil.publish_address("annas-printer.local", &laptop_ip.to_string())?;
    evil.publish_on(
        "annas-printer.local",
        "Anna's Printer",
        "_ipp._tcp",
        631,
        &["ty=HP LaserJet 400", "rp=ipp/print"],
    )?;
    let injected = laptop_instance_txt()?;
    let inject = || -> Result<()> {
        demo.home.ns("plug")?.run_in(|| -> std::io::Result<()> {
            let s = std::net::UdpSocket::bind("0.0.0.0:5353").or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))?;
            s.send_to(&injected, "224.0.0.251:5353").map(drop)
        })??;
        Ok(())
    };

    // Each device's own announcements count for it: the capture works.
    let services = |mac| -> Result<String> {
        let d = device(&demo, mac)?.context("a device is gone")?;
        Ok(d["evidence"]["mdns_services"].to_string())
    };
    super::wait_until("own mDNS services counted", Duration::from_secs(30), || {
        inject()?;
        let (d, p) = (services(laptop)?, services(plug)?);
        Ok(d.contains("_ssh._tcp") && p.contains("_http._tcp") && p.contains("_ipp._tcp"))
    })
    .with_context(|| {
        format!(
            "laptop {:?}\nplug {:?}\n--- daemon log:\n{}",
            device(&demo, laptop),
            device(&demo, plug),
            demo.log()
        )
    })?;
    // The forged address is seen and said once, naming both.
    let spoofing = || -> Result<Vec<bulkhead::alerts::Alert>> {
        Ok(of_kinds(&alerts(&demo)?, &[bulkhead::alerts::AlertKind::Spoofing]))
    };
    super::wait_until(
        "one spoofing alert naming the plug and the laptop's address",
        Duration::from_secs(20),
        || {
            let spoofing = spoofing()?;
            Ok(spoofing.len() == 1
                && spoofing[0].mac == Some(plug)
                && spoofing[0].message.contains("HS105")
                && spoofing[0].message.contains(&format!("address {laptop_ip} over mDNS")))
        },
    )
    .with_context(|| format!("{:?}\n{}", spoofing(), demo.log()))?;
    // Everything the plug said was read (the printer and the TXT counted
    // for the plug) and none of it for the laptop.
    let p = device(&demo, plug)?.context("the plug is gone")?;
    ensure!(
        p["evidence"]["txt"]["md"] == "Chromecast"
            && p["evidence"]["mdns_names"].to_string().contains("Anna's Printer"),
        "the plug's own words were not all read: {p}"
    );
    let d = device(&demo, laptop)?.context("the laptop is gone")?;
    ensure!(
        !d["evidence"]["mdns_services"].to_string().contains("_ipp")
            && !d["evidence"]["mdns_names"].to_string().contains("Printer")
            && d["evidence"]["txt"].get("md").is_none()
            && d["zone"] == before["zone"]
            && d["class"] == before["class"],
        "what the plug said counted for the laptop: {d}\n(before: {before})"
    );
    let Response::Status(status) = demo.call(Request::Status)? else {
        anyhow::bail!("unexpected answer to Status")
    };
    let counters = status.mdns.context("no mDNS counters")?;
    ensure!(
        counters.foreign_addresses >= 1 && counters.responses_captured >= 2,
        "counters: {counters:?}"
    );
    Ok(Outcome::Passed)
}

/// A response with a TXT record for the laptop's own instance
/// (`Anna's Laptop._ssh._tcp.local`) saying it is a Chromecast.
fn laptop_instance_txt() -> Result<Vec<u8>> {
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{Name, RData, Record};
    let instance = Name::new()
        .append_label("Anna's Laptop".as_bytes())?
        .append_domain(&Name::from_ascii("_ssh._tcp.local.")?)?;
    let mut m = Message::response(0, OpCode::Query);
    m.add_answer(Record::from_rdata(
        instance,
        4500,
        RData::TXT(TXT::new(vec!["md=Chromecast".into(), "model=AppleTV6,2".into()])),
    ));
    Ok(m.to_vec()?)
}

/// m2. Anna's phone, approved and named, comes back with a new private MAC
/// (twice, as phones do): each time Bulkhead suggests it is the same phone,
/// and once the homeowner links them there is one device — the new MAC, in
/// trusted, with its name and history; the old MAC leaves the firewall's sets
/// and the device list. A third new MAC nobody links waits in quarantine
/// (and is forgotten after `devices.forget_private_after_days`, a unit test).
pub fn m2_a_phone_with_new_private_macs_stays_one_device() -> Result<Outcome> {
    let demo = discovering_home(&[])?;
    let phone = host("phone")?;
    demo.join(phone)?;
    let first = MacAddr(phone.mac);
    wait_device(&demo, first, "seen", |d| d["evidence"]["hostname"] == "annas-iphone")?;
    for req in [
        Request::Approve {
            mac: first,
            zone: Some(zone("trusted")?),
        },
        Request::Rename {
            mac: first,
            name: Some("Anna's phone".into()),
        },
    ] {
        let r = demo.call(req)?;
        ensure!(matches!(r, Response::Done { .. }), "{r:?}");
    }
    let ns = demo.home.ns("phone")?;
    let rejoin = |mac: MacAddr| -> Result<()> {
        let text = mac.to_string();
        ns.ip_batch(&[
            "link set dev eth0 down",
            &format!("link set dev eth0 address {text}"),
            "link set dev eth0 up",
        ])?;
        demo.join_as(
            "phone",
            &bulkhead::demo::DhcpIdentity {
                hostname: "annas-iphone",
                vendor_class: "",
                client: bulkhead::demo::DemoClient::Udhcpc,
            },
        )?;
        Ok(())
    };
    let mut known = first;
    for n in 1..=3u8 {
        let fresh = MacAddr([0x02, 0xaa, 0, 0, 0, n]);
        rejoin(fresh)?;
        wait_device(&demo, fresh, "held in quarantine", |d| d["zone"] == "quarantine")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let Response::Suggestions { suggestions } = demo.call(Request::Suggestions)? else {
                anyhow::bail!("unexpected answer to Suggestions")
            };
            if suggestions.iter().any(|s| s.new_mac == fresh && s.known_mac == known) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "no suggestion that {fresh} is {known}: {suggestions:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if n == 3 {
            // Not linked: it stays a stranger.
            break;
        }
        let r = demo.call(Request::Link {
            new_mac: fresh,
            known_mac: known,
        })?;
        ensure!(matches!(r, Response::Done { .. }), "link {fresh} {known}: {r:?}");
        let d = device(&demo, fresh)?.context("the linked device")?;
        ensure!(
            d["zone"] == "trusted" && d["name"] == "Anna's phone",
            "the new MAC did not take over: {d}"
        );
        ensure!(device(&demo, known)?.is_none(), "the old MAC {known} is still a device");
        ensure!(
            in_set(&demo, "trusted_mac", &fresh.to_string())? && !in_set(&demo, "trusted_mac", &known.to_string())?,
            "trusted_mac: {}",
            set_elements(&demo, "trusted_mac")?
        );
        expect_tcp(&demo, "phone", demo.home.internet_v4().into(), 80, true)?;
        known = fresh;
    }
    let Response::Devices { devices } = demo.call(Request::Devices)? else {
        anyhow::bail!("unexpected answer to Devices")
    };
    let phones: Vec<String> = devices
        .iter()
        .filter(|d| d.evidence.hostname.as_deref() == Some("annas-iphone"))
        .map(|d| format!("{} {}", d.mac, d.zone))
        .collect();
    ensure!(
        phones == [format!("{known} trusted"), "02:aa:00:00:00:03 quarantine".to_string()],
        "one linked phone and the unlinked new MAC: {phones:?}"
    );
    Ok(Outcome::Passed)
}
