//! Traffic per device (issue 18): the kernel counts every forwarded packet
//! by device and path, the daemon reads the counts into totals and series.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bulkhead::control::{Request, Response};
use bulkhead::traffic::TrafficReport;

use super::Outcome;

/// One datagram of `PAYLOAD` bytes as the forward hook counts it: IPv4
/// header (20) + UDP header (8) + payload.
const PAYLOAD: u64 = 1000;
const ON_THE_WIRE: u64 = PAYLOAD + 28;

fn report(demo: &bulkhead::demo::DemoHome, mac: bulkhead::config::MacAddr) -> Result<TrafficReport> {
    let Response::Traffic { report } = demo.call(Request::Traffic { mac: Some(mac) })? else {
        anyhow::bail!("unexpected answer")
    };
    Ok(*report.context("traffic counting is off")?)
}

/// `count` datagrams of [`PAYLOAD`] bytes from host `from` to `to`'s UDP
/// echo (port 7).
fn send(demo: &bulkhead::demo::DemoHome, from: &str, to: std::net::IpAddr, count: u32) -> Result<()> {
    demo.home.ns(from)?.exec(&[
        "bash",
        "-c",
        &format!("for i in $(seq {count}); do head -c {PAYLOAD} /dev/zero > /dev/udp/{to}/7; done"),
    ])?;
    Ok(())
}

/// t3. 100 datagrams from the laptop to the internet and 50 to the TV (another
/// zone): the laptop's sent bytes by path are exactly that (plus nothing
/// much), the echoes come back as received bytes, the TV received the 50
/// from another zone; `bulkhead traffic` lists the laptop among the top
/// talkers.
pub(crate) fn t3_traffic_is_counted_per_device_and_path() -> Result<Outcome> {
    let demo = super::running_home(&[])?;
    let laptop = super::mac_of("laptop")?;
    let tv = super::mac_of("tv")?;
    let internet: std::net::IpAddr = demo.home.internet_v4().into();
    let tv_ip = demo.ipv4("tv")?;
    send(&demo, "laptop", internet, 100)?;
    send(&demo, "laptop", tv_ip, 50)?;
    super::wait_until("the laptop's traffic counted", Duration::from_secs(30), || {
        let r = report(&demo, laptop)?;
        Ok(r.devices.first().is_some_and(|d| {
            d.totals.sent.internet.bytes >= 100 * ON_THE_WIRE && d.totals.sent.zones.bytes >= 50 * ON_THE_WIRE
        }))
    })
    .with_context(|| format!("--- daemon log:\n{}", demo.log()))?;
    // One more reading so late echoes are in.
    std::thread::sleep(Duration::from_secs(6));
    let r = report(&demo, laptop)?;
    let d = r.devices.first().context("the laptop")?;
    let slack = 10_000;
    ensure!(
        (100 * ON_THE_WIRE..100 * ON_THE_WIRE + slack).contains(&d.totals.sent.internet.bytes),
        "sent to the internet: {} bytes, {} expected: {:?}",
        d.totals.sent.internet.bytes,
        100 * ON_THE_WIRE,
        d.totals
    );
    ensure!(
        d.totals.sent.internet.packets >= 100 && d.totals.sent.internet.packets < 100 + 40,
        "packets: {:?}",
        d.totals.sent.internet
    );
    ensure!(
        d.totals.received.internet.bytes >= 90 * ON_THE_WIRE,
        "the echoes received: {:?}",
        d.totals.received
    );
    ensure!(
        (50 * ON_THE_WIRE..50 * ON_THE_WIRE + slack).contains(&d.totals.sent.zones.bytes),
        "sent to other zones: {:?}",
        d.totals.sent
    );
    ensure!(d.totals.sent.tunnel.bytes == 0, "no tunnel here: {:?}", d.totals.sent);
    ensure!(
        d.last_hour.1 >= 150 * ON_THE_WIRE && !d.minutes.is_empty(),
        "the minute series holds it: {:?} {:?}",
        d.last_hour,
        d.minutes
    );
    let tv_report = report(&demo, tv)?;
    let t = tv_report.devices.first().context("the tv")?;
    ensure!(
        t.totals.received.zones.bytes >= 50 * ON_THE_WIRE,
        "the tv received from another zone: {:?}",
        t.totals
    );
    // The top talkers: the laptop first.
    let Response::Traffic { report: Some(top) } = demo.call(Request::Traffic { mac: None })? else {
        anyhow::bail!("no top talkers")
    };
    ensure!(
        top.devices.first().map(|d| d.mac) == Some(laptop),
        "the laptop talks the most: {:?}",
        top.devices.iter().map(|d| (d.mac, d.last_hour)).collect::<Vec<_>>()
    );
    // The CLI says it too.
    let out = demo.home.router().exec(&[
        super::BIN,
        "--socket",
        &demo.socket().to_string_lossy(),
        "traffic",
        &laptop.to_string(),
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.contains("internet") && text.contains("sent 1"),
        "bulkhead traffic: {text}"
    );
    Ok(Outcome::Passed)
}
