//! Casting across zones (`[[share]]`), with real mDNS stacks: avahi-daemon
//! in the devices' namespaces announces and browses; Bulkhead's proxy answers
//! across segments and opens pinholes to exactly what was announced.
//!
//! The demo's TV is on the IoT segment (`br-iot`, with the camera): the
//! Chromecast there ("Living Room TV"). The Sonos speaker, on the main bridge
//! with the laptop, plays one on the same segment as its users. The stranger
//! is pinned to `guest`: guests may cast, and reach nothing else.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bulkhead::demo::DemoHome;
use bulkhead_netns::avahi::Avahi;

use super::{expect_tcp, mac_of, running_home, set_elements, Outcome};

const CAST: &str = "_googlecast._tcp";

fn policy() -> Result<String> {
    Ok(format!(
        "[[devices]]\nmac = \"{}\"\nzone = \"guest\"\n\n[[share]]\npreset = \"chromecast\"\nfrom = [\"iot\"]\nto = [\"trusted\", \"guest\"]\n",
        mac_of("stranger")?
    ))
}

/// Tries `probe` every 250 ms until it says yes or `timeout` passes.
fn until(timeout: Duration, mut probe: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if probe()? {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn found(avahi: &Avahi<'_>, name: &str, address: IpAddr) -> Result<bool> {
    Ok(avahi
        .browse(CAST, Duration::from_secs(4))?
        .iter()
        .any(|r| r.name == name && r.address == address.to_string()))
}

/// The stranger is a guest once Bulkhead has seen it (the policy pins it).
fn guest_is_placed(demo: &DemoHome) -> Result<()> {
    let mac = mac_of("stranger")?.to_string();
    let router: IpAddr = [10, 0, 1, 1].into();
    let placed = until(Duration::from_secs(15), || {
        // Anything it sends makes it known (its neighbour entry, at least).
        bulkhead_netns::ping(demo.home.ns("stranger")?, router, Duration::from_millis(300))?;
        Ok(set_elements(demo, "guest_mac")?.contains(&mac))
    })?;
    ensure!(
        placed,
        "the stranger never joined guest_mac:\n{}",
        set_elements(demo, "guest_mac")?
    );
    Ok(())
}

/// Every mDNS datagram `host` receives for `secs` seconds (a socket in its
/// namespace, in the group beside its avahi): what its segment carries.
fn capture_mdns(demo: &DemoHome, host: &str, secs: u64) -> Result<Vec<Vec<u8>>> {
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    let sock: UdpSocket = demo.home.ns(host)?.run_in(|| -> std::io::Result<UdpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5353)).into())?;
        s.join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 251), &Ipv4Addr::UNSPECIFIED)?;
        Ok(s.into())
    })??;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 9000];
    while std::time::Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    Ok(got)
}

/// The answers (responses) among captured mDNS datagrams that name `needle`.
fn answers_naming(packets: &[Vec<u8>], needle: &str) -> usize {
    use hickory_proto::op::{Message, MessageType};
    packets
        .iter()
        .filter_map(|p| Message::from_vec(p).ok())
        .filter(|m| m.metadata.message_type == MessageType::Response)
        .filter(|m| {
            m.answers
                .iter()
                .chain(m.additionals.iter())
                .any(|r| r.name.to_ascii().to_ascii_lowercase().contains(needle))
        })
        .count()
}

/// A casting announcement (PTR, SRV, A) under a hostile instance name.
fn hostile_announcement(instance: &str, address: std::net::Ipv4Addr) -> Result<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::{PTR, SRV};
    use hickory_proto::rr::{Name, RData, Record};
    let service = Name::from_ascii("_googlecast._tcp.local.")?;
    let mut label = Name::new();
    label = label.append_label(instance.as_bytes())?;
    let inst = label.append_domain(&service)?;
    let host = Name::from_ascii("fake-host.local.")?;
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.add_answer(Record::from_rdata(service, 120, RData::PTR(PTR(inst.clone()))));
    m.add_answer(Record::from_rdata(
        inst,
        120,
        RData::SRV(SRV::new(0, 0, 8009, host.clone())),
    ));
    m.add_answer(Record::from_rdata(host, 120, RData::A(address.into())));
    Ok(m.to_vec()?)
}

fn pinholes(demo: &DemoHome, zone: &str) -> Result<String> {
    set_elements(demo, &format!("share-{zone}-v4"))
}

pub(crate) fn s_casting_is_shared_across_zones_and_nothing_else() -> Result<Outcome> {
    let demo = running_home(&[("50-share.toml", &policy()?)])?;
    let cast_ip = demo.ipv4("tv")?;
    let (laptop_ip, guest_ip) = (demo.ipv4("laptop")?, demo.ipv4("stranger")?);
    for port in [8008, 8009, 8010] {
        demo.home.start_tcp_listener("tv", port)?;
    }
    let work = demo.dir.join("avahi");
    let cast = Avahi::start(demo.home.ns("tv")?, &work.join("tv"), "livingroom-tv", "eth0")?;
    let laptop = Avahi::start(demo.home.ns("laptop")?, &work.join("laptop"), "annas-laptop", "eth0")?;
    let guest = Avahi::start(demo.home.ns("stranger")?, &work.join("stranger"), "visitor", "eth0")?;

    // Nothing announced yet: a guest reaches nothing in iot.
    guest_is_placed(&demo)?;
    expect_tcp(&demo, "stranger", cast_ip, 8009, false)?;
    let announcer = cast.publish("Living Room TV", CAST, 8009, &["md=Chromecast", "fn=Living Room TV"])?;
    let sonos = cast.publish("Kitchen", "_sonos._tcp", 1443, &["vers=3"])?;

    // The laptop, on another segment, finds the TV at its own address.
    let seen = until(Duration::from_secs(20), || found(&laptop, "Living Room TV", cast_ip))?;
    ensure!(
        seen,
        "the laptop's avahi-browse never found the TV: {:?}\n--- the TV's avahi:\n{}\n--- daemon log:\n{}",
        laptop.browse(CAST, Duration::from_secs(4))?,
        cast.log(),
        demo.log()
    );
    // A service that is not shared is never seen there: not by the browser,
    // and no answer naming it on the laptop's segment (a capture there while
    // the laptop asks for it and the TV announces it on its own segment).
    let capture = std::thread::scope(|scope| -> Result<Vec<Vec<u8>>> {
        let listening = scope.spawn(|| capture_mdns(&demo, "laptop", 5));
        std::thread::sleep(Duration::from_millis(300));
        let sonos_seen = laptop.browse("_sonos._tcp", Duration::from_secs(3))?;
        ensure!(
            sonos_seen.is_empty(),
            "_sonos._tcp crossed into trusted: {sonos_seen:?}"
        );
        listening
            .join()
            .map_err(|_| anyhow::anyhow!("the capture thread panicked"))?
    })?;
    ensure!(
        !capture.is_empty(),
        "the capture on the laptop's segment saw no mDNS at all"
    );
    ensure!(
        answers_naming(&capture, "_sonos") == 0,
        "an answer naming _sonos reached the laptop's segment"
    );

    // The pinholes: the announced port and the preset's, for both zones, nothing else.
    for zone in ["trusted", "guest"] {
        let set = pinholes(&demo, zone)?;
        for port in [8008, 8009] {
            ensure!(
                set.contains(&format!("{cast_ip} . tcp . {port}")),
                "share-{zone}-v4 lacks {cast_ip}:{port}:\n{set}"
            );
        }
        ensure!(!set.contains("8010"), "an unannounced port is open:\n{set}");
        ensure!(!set.contains("1443"), "the unshared service's port is open:\n{set}");
    }

    // `bulkhead status` (and the TV's page) says what it shares, to whom.
    let bulkhead::control::Response::Status(status) = demo.call(bulkhead::control::Request::Status)? else {
        anyhow::bail!("unexpected answer to status")
    };
    let shared = status.share.map(|s| s.shared).unwrap_or_default();
    ensure!(
        shared.iter().any(|s| s.instance == "Living Room TV"
            && s.service == CAST
            && s.port == 8009
            && s.to == ["guest", "trusted"]),
        "status does not list the shared TV: {shared:?}"
    );
    ensure!(!shared.iter().any(|s| s.service == "_sonos._tcp"), "{shared:?}");

    // The guest finds it too and reaches exactly its casting ports.
    let seen = until(Duration::from_secs(15), || found(&guest, "Living Room TV", cast_ip))?;
    ensure!(seen, "the guest's avahi-browse never found the TV");
    expect_tcp(&demo, "laptop", cast_ip, 8009, true)?;
    expect_tcp(&demo, "stranger", cast_ip, 8009, true)?;
    expect_tcp(&demo, "stranger", cast_ip, 8008, true)?;
    expect_tcp(&demo, "stranger", cast_ip, 8010, false)?;
    expect_tcp(&demo, "stranger", cast_ip, 80, false)?;
    // Nothing opens the other way, and the rest of iot stays shut.
    expect_tcp(&demo, "tv", laptop_ip, 80, false)?;
    expect_tcp(&demo, "tv", guest_ip, 80, false)?;
    expect_tcp(&demo, "plug", laptop_ip, 80, false)?;
    expect_tcp(&demo, "stranger", demo.ipv4("plug")?, 80, false)?;
    expect_tcp(&demo, "stranger", demo.ipv4("camera")?, 8009, false)?;

    // Goodbye: the announcement stops, the pinholes close, the TV is gone.
    cast.unpublish(announcer)?;
    let closed = until(Duration::from_secs(10), || {
        Ok(!pinholes(&demo, "guest")?.contains(&cast_ip.to_string()))
    })?;
    ensure!(
        closed,
        "the pinholes stayed after the goodbye:\n{}",
        pinholes(&demo, "guest")?
    );
    expect_tcp(&demo, "stranger", cast_ip, 8009, false)?;
    let gone = until(Duration::from_secs(10), || {
        Ok(!found(&laptop, "Living Room TV", cast_ip)?)
    })?;
    ensure!(gone, "the laptop still finds the TV after its goodbye");
    cast.unpublish(sonos)?;

    // Hostile mDNS and SSDP from the plug (in the shared zone itself):
    // garbage, and a flood of announcements under new names. Dropped and
    // counted, the cache bounded, the daemon answering.
    demo.home.ns("plug")?.run_in(|| -> std::io::Result<()> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let mut junk = 0x9e37_79b9_u32;
        for i in 0..300u32 {
            let len = 12 + (i as usize % 200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    junk ^= junk << 13;
                    junk ^= junk >> 17;
                    junk ^= junk << 5;
                    junk as u8
                })
                .collect();
            s.send_to(&bytes, "224.0.0.251:5353")?;
            s.send_to(&bytes, "239.255.255.250:1900")?;
        }
        Ok(())
    })??;
    let flood_from = demo.ipv4("plug")?;
    let IpAddr::V4(plug_v4) = flood_from else {
        anyhow::bail!("the plug has no IPv4 address")
    };
    let announcements: Vec<Vec<u8>> = (0..60)
        .map(|i| hostile_announcement(&format!("Fake {i} <script>alert(1)</script>"), plug_v4))
        .collect::<Result<_>>()?;
    demo.home.ns("plug")?.run_in(|| -> std::io::Result<()> {
        let s = std::net::UdpSocket::bind("0.0.0.0:5353")?;
        for a in &announcements {
            s.send_to(a, "224.0.0.251:5353")?;
        }
        Ok(())
    })??;
    std::thread::sleep(Duration::from_millis(500));
    let bulkhead::control::Response::Status(status) = demo.call(bulkhead::control::Request::Status)? else {
        anyhow::bail!("the daemon stopped answering after the hostile traffic")
    };
    let share = status.share.context("status has no share section")?;
    ensure!(
        share.counters.malformed >= 250,
        "garbage counted as malformed: {:?}",
        share.counters
    );
    ensure!(share.ssdp.malformed >= 250, "SSDP garbage counted: {:?}", share.ssdp);
    let from_plug = share.shared.iter().filter(|s| s.address == flood_from).count();
    ensure!(
        (1..=16).contains(&from_plug),
        "the plug's announcements are taken (it is in iot) but bounded per device: {from_plug}"
    );
    ensure!(
        share.counters.cache_full > 0,
        "the rest were refused: {:?}",
        share.counters
    );
    Ok(Outcome::Passed)
}

/// A Chromecast on the guest's own bridge (the speaker plays one): the devices see each other's mDNS
/// there already, and the bridge table opens exactly the announced ports
/// (statelessly: the TV answers, never opens).
pub(crate) fn s2_casting_on_one_bridge_opens_only_the_announced_ports() -> Result<Outcome> {
    let demo = running_home(&[("50-share.toml", &policy()?)])?;
    let cast_ip = demo.ipv4("speaker")?;
    let guest_ip = demo.ipv4("stranger")?;
    for port in [8009, 8010] {
        demo.home.start_tcp_listener("speaker", port)?;
    }
    let work = demo.dir.join("avahi");
    let cast = Avahi::start(demo.home.ns("speaker")?, &work.join("speaker"), "bedroom-tv", "eth0")?;
    guest_is_placed(&demo)?;
    expect_tcp(&demo, "stranger", cast_ip, 8009, false)?;
    let _announcer = cast.publish("Bedroom TV", CAST, 8009, &["md=Chromecast"])?;
    let open = until(Duration::from_secs(15), || {
        Ok(pinholes(&demo, "guest")?.contains(&format!("{cast_ip} . tcp . 8009")))
    })?;
    ensure!(
        open,
        "no pinhole for the cast device on the bridge:\n{}\n--- daemon log:\n{}",
        pinholes(&demo, "guest")?,
        demo.log()
    );
    // Both tables hold it: the bridge decides between ports of one segment.
    let bridge = demo
        .home
        .router()
        .exec(&["nft", "list", "set", "bridge", "bulkhead", "share-guest-v4"])?;
    let bridge = String::from_utf8_lossy(&bridge.stdout);
    ensure!(
        bridge.contains(&cast_ip.to_string()),
        "bridge set lacks the TV:\n{bridge}"
    );
    expect_tcp(&demo, "stranger", cast_ip, 8009, true).with_context(|| {
        format!(
            "the guest reaches the TV's cast port\n{}",
            super::listing(&demo, "bridge").unwrap_or_default()
        )
    })?;
    expect_tcp(&demo, "stranger", cast_ip, 8010, false)?;
    expect_tcp(&demo, "stranger", cast_ip, 80, false)?;
    expect_tcp(&demo, "speaker", guest_ip, 80, false)?;
    Ok(Outcome::Passed)
}

/// minidlna (a real DLNA server) in `host`'s namespace, on port 8200,
/// announcing itself under `name`; files in the demo's directory.
fn start_minidlna(demo: &DemoHome, host: &str, name: &str) -> Result<std::path::PathBuf> {
    let dir = demo.dir.join(format!("minidlna-{host}"));
    for d in ["media", "db", "log"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::write(dir.join("media/holiday.mp3"), b"ID3")?;
    std::fs::write(
        dir.join("minidlna.conf"),
        format!(
            "port=8200\nnetwork_interface=eth0\nmedia_dir=A,{0}/media\nfriendly_name={name}\ndb_dir={0}/db\n\
             log_dir={0}/log\ninotify=no\nnotify_interval=30\n",
            dir.display()
        ),
    )?;
    let conf = dir.join("minidlna.conf").display().to_string();
    let pid = dir.join("minidlna.pid").display().to_string();
    demo.home.ns(host)?.spawn_logged(
        "minidlnad",
        &["-d", "-f", &conf, "-P", &pid],
        &dir.join("minidlnad.out"),
    )?;
    Ok(dir)
}

/// SSDP as a discovery source: a DLNA server's SERVER header and device
/// description (read from its own LOCATION) become the camera's evidence,
/// and a `upnp` rule labels it — with nothing shared at all.
pub(crate) fn k3_a_upnp_description_is_evidence() -> Result<Outcome> {
    let demo = running_home(&[])?;
    let camera = mac_of("camera")?;
    let dir = start_minidlna(&demo, "camera", "Garage NAS")?;
    let mut last = None;
    let seen = until(Duration::from_secs(20), || {
        let bulkhead::control::Response::Devices { devices } = demo.call(bulkhead::control::Request::Devices)? else {
            anyhow::bail!("unexpected answer")
        };
        last = devices.into_iter().find(|d| d.mac == camera);
        Ok(last
            .as_ref()
            .is_some_and(|d| d.evidence.upnp.contains_key("manufacturer")))
    })?;
    ensure!(
        seen,
        "no UPnP evidence on the camera: {last:?}\n--- minidlna:\n{}\n--- daemon log:\n{}",
        std::fs::read_to_string(dir.join("minidlnad.out")).unwrap_or_default(),
        demo.log()
    );
    let d = last.context("the camera")?;
    let u = &d.evidence.upnp;
    ensure!(
        u.get("manufacturer").map(String::as_str) == Some("Justin Maggard"),
        "{u:?}"
    );
    ensure!(u.get("model").is_some_and(|m| m.contains("MiniDLNA")), "{u:?}");
    ensure!(
        u.get("friendly_name").map(String::as_str) == Some("Garage NAS"),
        "{u:?}"
    );
    ensure!(
        u.get("server").is_some_and(|s| s.contains("MiniDLNA")),
        "the SERVER header: {u:?}"
    );
    let class = d.class.as_ref().context("a class")?;
    ensure!(
        class.rule == "upnp-media-server" && class.class.as_str() == "nas",
        "classified from UPnP: {class:?}"
    );
    Ok(Outcome::Passed)
}

/// gssdp-discover's "Location:" lines: what a real control point found.
fn ssdp_discover(demo: &DemoHome, host: &str, target: &str) -> Result<Vec<String>> {
    let t = format!("--target={target}");
    let out = demo
        .home
        .ns(host)?
        .exec_output(&["gssdp-discover", "-i", "eth0", "--timeout=3", &t])?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Location:"))
        .map(|l| l.trim().to_string())
        .collect())
}

/// A real DLNA server (minidlna) on the IoT segment, shared to guests: a real
/// control point (gssdp-discover) in the guest's namespace finds it through
/// Bulkhead's answers, and its description is fetched through the pinhole;
/// from other zones it stays invisible.
pub(crate) fn s3_ssdp_media_server_is_found_and_fetched_across_zones() -> Result<Outcome> {
    let policy = format!(
        "[[devices]]\nmac = \"{}\"\nzone = \"guest\"\n\n[[share]]\npreset = \"dlna\"\nfrom = [\"iot\"]\nto = [\"guest\", \"trusted\"]\n",
        mac_of("stranger")?
    );
    let demo = running_home(&[("50-share.toml", &policy)])?;
    let nas = demo.ipv4("tv")?;
    let dir = start_minidlna(&demo, "tv", "Living Room NAS")?;
    guest_is_placed(&demo)?;
    let url = format!("http://{nas}:8200/rootDesc.xml");
    let fetch = |host: &str| -> Result<String> {
        let out = demo
            .home
            .ns(host)?
            .exec_output(&["curl", "-s", "--max-time", "2", &url])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    const TARGET: &str = "urn:schemas-upnp-org:device:MediaServer:1";
    let mut found = Vec::new();
    let seen = until(Duration::from_secs(25), || {
        found = ssdp_discover(&demo, "stranger", TARGET)?;
        Ok(found.contains(&url))
    })?;
    ensure!(
        seen,
        "the guest's gssdp-discover never found {url}: {found:?}\n--- minidlna:\n{}\n--- daemon log:\n{}",
        std::fs::read_to_string(dir.join("minidlnad.out")).unwrap_or_default(),
        demo.log()
    );
    let description = fetch("stranger")?;
    ensure!(
        description.contains("urn:schemas-upnp-org:device:MediaServer:1") && description.contains("Living Room NAS"),
        "the description did not come through the pinhole: {description}"
    );
    ensure!(pinholes(&demo, "guest")?.contains(&format!("{nas} . tcp . 8200")));
    // Only the description's port: the rest of the NAS stays shut.
    expect_tcp(&demo, "stranger", nas, 80, false)?;
    expect_tcp(&demo, "tv", demo.ipv4("stranger")?, 80, false)?;
    // The trusted laptop's control point finds it too.
    let laptop = until(Duration::from_secs(15), || {
        Ok(ssdp_discover(&demo, "laptop", TARGET)?.contains(&url))
    })?;
    ensure!(laptop, "the laptop's gssdp-discover never found {url}");
    // Other zones do not see it (the plug is in iot on the main bridge).
    let plug = ssdp_discover(&demo, "plug", TARGET)?;
    ensure!(plug.is_empty(), "the plug's zone found the shared server: {plug:?}");
    Ok(Outcome::Passed)
}

/// `bulkhead share on/off` (the CLI, as the web UI's zones page does): no
/// share in any file; the homeowner shares casting with guests, a guest's
/// avahi finds the TV and reaches its cast port; off again, the pinholes
/// close and the guest is refused.
pub(crate) fn s4_the_homeowner_shares_and_unshares_from_the_cli() -> Result<Outcome> {
    let pin = format!("[[devices]]\nmac = \"{}\"\nzone = \"guest\"\n", mac_of("stranger")?);
    let demo = running_home(&[("50-guest.toml", &pin)])?;
    let cast_ip = demo.ipv4("tv")?;
    demo.home.start_tcp_listener("tv", 8009)?;
    let work = demo.dir.join("avahi");
    let cast = Avahi::start(demo.home.ns("tv")?, &work.join("tv"), "livingroom-tv", "eth0")?;
    let guest = Avahi::start(demo.home.ns("stranger")?, &work.join("stranger"), "visitor", "eth0")?;
    let _announcer = cast.publish("Living Room TV", CAST, 8009, &["md=Chromecast"])?;
    guest_is_placed(&demo)?;
    let cli = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new(super::BIN)
            .arg("--socket")
            .arg(demo.socket())
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "bulkhead {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    ensure!(cli(&["share", "list"])?.contains("nothing is shared"));
    expect_tcp(&demo, "stranger", cast_ip, 8009, false)?;
    let said = cli(&["share", "on", "chromecast", "iot", "guest"])?;
    ensure!(said.contains("chromecast is shared from iot to guest"), "{said}");
    let seen = until(Duration::from_secs(20), || found(&guest, "Living Room TV", cast_ip))?;
    ensure!(seen, "the guest never found the TV after `share on`\n{}", demo.log());
    expect_tcp(&demo, "stranger", cast_ip, 8009, true)?;
    let list = cli(&["share", "list"])?;
    ensure!(list.contains("chromecast") && list.contains("(yours"), "{list}");

    cli(&["share", "off", "chromecast", "iot", "guest"])?;
    let sets = String::from_utf8_lossy(&demo.home.router().exec(&["nft", "list", "sets", "inet"])?.stdout).into_owned();
    ensure!(!sets.contains("share-guest"), "the pinhole sets are gone: {sets}");
    expect_tcp(&demo, "stranger", cast_ip, 8009, false)?;
    Ok(Outcome::Passed)
}
