//! Casting across zones (`[[share]]`), with real mDNS stacks: avahi-daemon
//! in the devices' namespaces announces and browses; Bulkhead's proxy answers
//! across segments and opens pinholes to exactly what was announced.
//!
//! The demo's camera sits alone on the IoT segment (`br-iot`), so it plays
//! the Chromecast there ("Living Room TV"); the TV on the main bridge plays
//! one on the same segment as the laptop. The stranger is pinned to `guest`:
//! guests may cast, and reach nothing else.

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

fn pinholes(demo: &DemoHome, zone: &str) -> Result<String> {
    set_elements(demo, &format!("share-{zone}-v4"))
}

pub(crate) fn s_casting_is_shared_across_zones_and_nothing_else() -> Result<Outcome> {
    let demo = running_home(&[("50-share.toml", &policy()?)])?;
    let cast_ip = demo.ipv4("camera")?;
    let (laptop_ip, guest_ip) = (demo.ipv4("laptop")?, demo.ipv4("stranger")?);
    for port in [8008, 8009, 8010] {
        demo.home.start_tcp_listener("camera", port)?;
    }
    let work = demo.dir.join("avahi");
    let cast = Avahi::start(demo.home.ns("camera")?, &work.join("camera"), "livingroom-tv", "eth0")?;
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
        "the laptop's avahi-browse never found the TV: {:?}\n--- camera's avahi:\n{}\n--- daemon log:\n{}",
        laptop.browse(CAST, Duration::from_secs(4))?,
        cast.log(),
        demo.log()
    );
    // A service that is not shared is never seen there.
    let sonos_seen = laptop.browse("_sonos._tcp", Duration::from_secs(3))?;
    ensure!(
        sonos_seen.is_empty(),
        "_sonos._tcp crossed into trusted: {sonos_seen:?}"
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

    // The guest finds it too and reaches exactly its casting ports.
    let seen = until(Duration::from_secs(15), || found(&guest, "Living Room TV", cast_ip))?;
    ensure!(seen, "the guest's avahi-browse never found the TV");
    expect_tcp(&demo, "laptop", cast_ip, 8009, true)?;
    expect_tcp(&demo, "stranger", cast_ip, 8009, true)?;
    expect_tcp(&demo, "stranger", cast_ip, 8008, true)?;
    expect_tcp(&demo, "stranger", cast_ip, 8010, false)?;
    expect_tcp(&demo, "stranger", cast_ip, 80, false)?;
    // Nothing opens the other way, and the rest of iot stays shut.
    expect_tcp(&demo, "camera", laptop_ip, 80, false)?;
    expect_tcp(&demo, "camera", guest_ip, 80, false)?;
    expect_tcp(&demo, "plug", laptop_ip, 80, false)?;
    expect_tcp(&demo, "stranger", demo.ipv4("plug")?, 80, false)?;

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
    Ok(Outcome::Passed)
}

/// The TV on the laptop's own bridge: the devices see each other's mDNS
/// there already, and the bridge table opens exactly the announced ports
/// (statelessly: the TV answers, never opens).
pub(crate) fn s2_casting_on_one_bridge_opens_only_the_announced_ports() -> Result<Outcome> {
    let demo = running_home(&[("50-share.toml", &policy()?)])?;
    let tv_ip = demo.ipv4("tv")?;
    let guest_ip = demo.ipv4("stranger")?;
    for port in [8009, 8010] {
        demo.home.start_tcp_listener("tv", port)?;
    }
    let work = demo.dir.join("avahi");
    let tv = Avahi::start(demo.home.ns("tv")?, &work.join("tv"), "bedroom-tv", "eth0")?;
    guest_is_placed(&demo)?;
    expect_tcp(&demo, "stranger", tv_ip, 8009, false)?;
    let _announcer = tv.publish("Bedroom TV", CAST, 8009, &["md=Chromecast"])?;
    let open = until(Duration::from_secs(15), || {
        Ok(pinholes(&demo, "guest")?.contains(&format!("{tv_ip} . tcp . 8009")))
    })?;
    ensure!(
        open,
        "no pinhole for the TV on the bridge:\n{}\n--- daemon log:\n{}",
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
        bridge.contains(&tv_ip.to_string()),
        "bridge set lacks the TV:\n{bridge}"
    );
    expect_tcp(&demo, "stranger", tv_ip, 8009, true).with_context(|| {
        format!(
            "the guest reaches the TV's cast port\n{}",
            super::listing(&demo, "bridge").unwrap_or_default()
        )
    })?;
    expect_tcp(&demo, "stranger", tv_ip, 8010, false)?;
    expect_tcp(&demo, "stranger", tv_ip, 80, false)?;
    expect_tcp(&demo, "tv", guest_ip, 80, false)?;
    Ok(Outcome::Passed)
}
