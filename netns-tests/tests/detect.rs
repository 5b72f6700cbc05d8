//! Issue 16: detection, end to end. The scanner is Debian's nmap in the
//! devices' namespaces; what the firewall refuses is sampled by the real
//! kernel to NFLOG and read by the real daemon.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::alerts::{Alert, AlertKind};
use bulkhead::control::{Request, Response};
use bulkhead::demo::DemoHome;

use super::{mac_of, Outcome, BIN};

fn alerts(demo: &DemoHome) -> Result<Vec<Alert>> {
    let Response::Alerts { alerts } = demo.call(Request::Alerts { limit: 500 })? else {
        bail!("unexpected answer to Alerts");
    };
    Ok(alerts)
}

fn of_kinds(alerts: &[Alert], kinds: &[AlertKind]) -> Vec<Alert> {
    alerts.iter().filter(|a| kinds.contains(&a.kind)).cloned().collect()
}

fn detect_report(demo: &DemoHome) -> Result<bulkhead::detect::DetectReport> {
    match demo.call(Request::Detect { mac: None })? {
        Response::Detect { report } => Ok(*report.context("detection is off in the demo")?),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Runs nmap in `host`'s namespace (SYN scan, no host discovery, no DNS,
/// one try per port) and returns how many raw packets it says it sent.
fn nmap(demo: &DemoHome, host: &str, ports: &str, targets: &[&str]) -> Result<u64> {
    let mut args = vec![
        "nmap",
        "-v",
        "-sS",
        "-Pn",
        "-n",
        "-T4",
        "--max-retries",
        "0",
        "--host-timeout",
        "20s",
        "-p",
        ports,
    ];
    args.extend_from_slice(targets);
    let out = demo.home.ns(host)?.exec_output(&args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "nmap in {host} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Raw packets sent: 2002 (88.064KB) | Rcvd: …"
    text.split("Raw packets sent: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no packet count in nmap's output: {text}"))
}

/// z. Ordinary traffic (the demo's chatter, a quarantined device refused
/// again and again) raises nothing; nmap from the plug (iot) against the
/// laptop (same bridge), the router and the camera (another segment) is ONE
/// probing alert naming the plug,
/// with counts within sampling of what nmap sent; the laptop's nmap against
/// the plug (trusted may reach iot) raises nothing; a blocked device that
/// keeps trying is told once.
pub(crate) fn z_detect_probing_is_one_alert() -> Result<Outcome> {
    let demo = DemoHome::build(std::path::Path::new(BIN), &[])?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let plug = mac_of("plug")?;
    let laptop = mac_of("laptop")?;
    let watched = [AlertKind::Probing, AlertKind::LateralAttempt];

    // Ordinary life first: every device talks to the internet twice a second
    // (the stranger, in quarantine, is refused each time) for 45 s, longer
    // than the detector's window. Nothing to tell.
    let chatter = demo.start_chatter(Duration::from_millis(500), &[])?;
    std::thread::sleep(Duration::from_secs(45));
    ensure!(chatter.completed() > 100, "the chatter ran: {}", chatter.completed());
    drop(chatter);
    std::thread::sleep(Duration::from_secs(3));
    let told = of_kinds(
        &alerts(&demo)?,
        &[
            AlertKind::Probing,
            AlertKind::LateralAttempt,
            AlertKind::BlockedDeviceActive,
        ],
    );
    ensure!(told.is_empty(), "ordinary traffic raised: {told:?}");
    let stranger_refused = detect_report(&demo)?
        .devices
        .get(&mac_of("stranger")?)
        .map_or(0, |d| d.routed);
    ensure!(
        stranger_refused > 0,
        "the quarantined stranger's tries were sampled (and not taken for a scan)"
    );

    // The laptop scans the plug: allowed, so nothing is refused or told.
    nmap(&demo, "laptop", "1-300", &["10.0.1.20"])?;
    std::thread::sleep(Duration::from_secs(5));
    let told = of_kinds(&alerts(&demo)?, &watched);
    ensure!(told.is_empty(), "the laptop may scan the plug, yet: {told:?}");

    // The plug scans the laptop, the router and the camera.
    let sent = nmap(&demo, "plug", "1-400", &["10.0.1.10", "10.0.1.1", "10.0.2.10"])?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let probing = loop {
        let found = of_kinds(&alerts(&demo)?, &[AlertKind::Probing]);
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    ensure!(
        probing.len() == 1 && probing[0].mac == Some(plug),
        "wanted one probing alert naming the plug, got {probing:?}\n--- daemon log:\n{}",
        demo.log()
    );
    let text = &probing[0].message;
    ensure!(
        text.contains("10.0.1.10") && text.contains("zone iot"),
        "the alert says whom it tried: {text}"
    );
    // It names the laptop among the devices of other zones it tried.
    ensure!(text.contains(&laptop.to_string()), "the laptop is named: {text}");
    // A second scan within the episode updates, never repeats.
    nmap(&demo, "plug", "401-600", &["10.0.1.10"])?;
    std::thread::sleep(Duration::from_secs(4));
    let all = alerts(&demo)?;
    let again = of_kinds(&all, &watched);
    ensure!(again.len() == 1, "one alert for the whole episode: {again:?}");

    // Counts: sampled, so at most what nmap sent, and at least the burst the
    // meter lets through (2 × 20 per chain it hit).
    let report = detect_report(&demo)?;
    let d = report.devices.get(&plug).context("the plug has no refusals")?;
    ensure!(
        d.sampled <= sent + 200 && d.sampled >= 40,
        "the plug's sampled refusals ({}) against nmap's {sent} packets",
        d.sampled
    );
    ensure!(
        d.bridged > 0 && d.to_router > 0 && d.routed > 0,
        "refusals at every place: {d:?}"
    );
    ensure!(
        !report.devices.contains_key(&laptop),
        "trusted is not watched: {:?}",
        report.devices.get(&laptop)
    );

    // A blocked device that keeps trying: one alert.
    let stranger = mac_of("stranger")?;
    let Response::Done { .. } = demo.call(Request::Block {
        mac: stranger,
        blocked: true,
    })?
    else {
        bail!("block refused");
    };
    let router = IpAddr::from([10, 0, 1, 1]).to_string();
    for _ in 0..2 {
        let _ = demo
            .home
            .ns("stranger")?
            .exec_output(&["busybox", "ping", "-c", "3", "-W", "1", &router])?;
        let _ = nmap(&demo, "stranger", "20-30", &[router.as_str()]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let active = loop {
        let found = of_kinds(&alerts(&demo)?, &[AlertKind::BlockedDeviceActive]);
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    ensure!(
        active.len() == 1 && active[0].mac == Some(stranger),
        "a blocked device that keeps trying: {active:?}\n--- daemon log:\n{}",
        demo.log()
    );
    Ok(Outcome::Passed)
}
