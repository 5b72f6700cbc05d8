//! Fail closed from boot (`bulkhead restore`), replayed in namespaces: the
//! router "reboots" (our tables gone, every link down), restore runs, the links
//! come up, and devices probe before the daemon has started.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bulkhead::demo::DemoHome;
use bulkhead_netns::tcp_probe;

use super::{listing, mac_of, running_home, set_elements, Outcome, BIN, SHORT};

/// The router's links, but loopback: what a boot brings up.
fn router_links(demo: &DemoHome) -> Result<Vec<String>> {
    let out = demo.home.router().exec(&["ip", "-o", "link", "show"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let links: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|n| n != "lo")
        .collect();
    ensure!(links.len() >= 4, "the router has too few links: {links:?}");
    Ok(links)
}

/// The router's default routes (`ip route` arguments), which taking a link
/// down removes and a boot's network configuration puts back.
fn default_routes(demo: &DemoHome) -> Result<Vec<Vec<String>>> {
    let mut routes = Vec::new();
    for family in ["-4", "-6"] {
        let out = demo.home.router().exec(&["ip", family, "route", "show", "default"])?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut args = vec![family.to_string(), "route".into(), "replace".into()];
            args.extend(line.split_whitespace().map(str::to_string));
            routes.push(args);
        }
    }
    ensure!(!routes.is_empty(), "the router has no default route");
    Ok(routes)
}

/// Power off: the kernel forgets every rule, the links are down.
fn power_off(demo: &DemoHome, links: &[String]) -> Result<()> {
    for fam in ["inet", "bridge"] {
        demo.home.router().exec(&["nft", "delete", "table", fam, "bulkhead"])?;
    }
    links_down(demo, links)
}

/// Takes the links down keeping their addresses (a boot's network
/// configuration would put them back; the test keeps the harness's).
fn links_down(demo: &DemoHome, links: &[String]) -> Result<()> {
    for l in links {
        let keep = format!("net.ipv6.conf.{l}.keep_addr_on_down=1");
        demo.home.router().exec(&["sysctl", "-q", "-w", &keep])?;
        demo.home.router().exec(&["ip", "link", "set", "dev", l, "down"])?;
    }
    Ok(())
}

fn links_up(demo: &DemoHome, links: &[String], routes: &[Vec<String>]) -> Result<()> {
    // Ports before bridges, as an init system would bring them up.
    for l in links
        .iter()
        .filter(|l| !l.starts_with("br-"))
        .chain(links.iter().filter(|l| l.starts_with("br-")))
    {
        demo.home.router().exec(&["ip", "link", "set", "dev", l, "up"])?;
    }
    // IPv6 addresses come back after duplicate address detection; until
    // then their routes cannot be added.
    for r in routes {
        let mut args = vec!["ip"];
        args.extend(r.iter().map(String::as_str));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !demo.home.router().exec_ok(&args)? {
            ensure!(Instant::now() < deadline, "could not put back the route {r:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Give the links a moment to carry frames.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

pub(crate) fn restore(demo: &DemoHome) -> Result<String> {
    let cfg = demo.config_path().to_string_lossy().into_owned();
    let out = demo.home.router().exec_output(&[BIN, "--config", &cfg, "restore"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "bulkhead restore failed:\n{text}");
    Ok(text)
}

/// What gets through, before the daemon runs: each forbidden pair, and the
/// allowed ones as a control that the links carry traffic at all.
struct Probes {
    forbidden: Vec<String>,
    allowed_failed: Vec<String>,
}

fn probe(demo: &DemoHome) -> Result<Probes> {
    let laptop = demo.ipv4("laptop")?;
    let camera = demo.ipv4("camera")?;
    let internet: IpAddr = demo.home.internet_v4().into();
    let mut p = Probes {
        forbidden: Vec::new(),
        allowed_failed: Vec::new(),
    };
    // Tries a few times: links that just came up may drop the first SYN.
    let reach = |from: &str, to: IpAddr| -> Result<bool> {
        for _ in 0..3 {
            if tcp_probe(demo.home.ns(from)?, SocketAddr::new(to, 80), SHORT)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    for (from, to) in [
        ("camera", laptop),
        ("plug", laptop),
        ("stranger", internet),
        ("stranger", laptop),
    ] {
        if reach(from, to)? {
            p.forbidden.push(format!("{from} -> {to}"));
        }
    }
    for (from, to) in [("laptop", camera), ("laptop", internet)] {
        if !reach(from, to)? {
            p.allowed_failed.push(format!("{from} -> {to}"));
        }
    }
    Ok(p)
}

/// The stranger known and quarantined, so the saved record has it.
fn stranger_quarantined(demo: &DemoHome) -> Result<()> {
    let _ = bulkhead_netns::ping(demo.home.ns("stranger")?, "10.0.1.1".parse()?, SHORT)?;
    let stranger = mac_of("stranger")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !set_elements(demo, "quarantine_mac")?.contains(&stranger.to_string()) {
        ensure!(Instant::now() < deadline, "the stranger was never discovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// e2. A replayed boot: without `restore` the zones are open until the daemon
/// starts (the control: this test can fail); with it, a quarantined device and
/// iot devices probing as the links come up reach nothing they may not, while
/// trusted traffic flows; the daemon then takes over with the same ruleset.
/// Without a saved record (or a damaged one) restore derives the ruleset from
/// the config and the device database.
pub fn e2_restore_at_boot_holds_the_zones_before_the_daemon() -> Result<Outcome> {
    let demo = running_home(&[])?;
    stranger_quarantined(&demo)?;
    let before = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    // Not under a running daemon: it holds the rules.
    let cfg = demo.config_path().to_string_lossy().into_owned();
    let refused = demo.home.router().exec_output(&[BIN, "--config", &cfg, "restore"])?;
    ensure!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("the daemon is running"),
        "restore under a running daemon should refuse: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    demo.stop_daemon()?;
    let record = demo.dir.join("state").join("boot-ruleset.json");
    ensure!(
        record.exists(),
        "the daemon saved no boot ruleset at {}",
        record.display()
    );
    let links = router_links(&demo)?;
    let routes = default_routes(&demo)?;

    // The control: a boot without restore leaves iot and quarantine open.
    power_off(&demo, &links)?;
    links_up(&demo, &links, &routes)?;
    let open = probe(&demo)?;
    ensure!(
        open.forbidden.len() >= 3,
        "without restore the zones should be open until the daemon starts (or the probes see nothing); forbidden that got through: {:?}",
        open.forbidden
    );

    // A boot with restore, before any link is up.
    for links_before in [true, false] {
        // Once with the tables already gone and the links down (a boot), once
        // restoring over the links up (restore run by hand): the same result.
        if links_before {
            links_down(&demo, &links)?;
        }
        let said = restore(&demo)?;
        ensure!(said.contains("restored the ruleset in force"), "restore said: {said}");
        links_up(&demo, &links, &routes)?;
        let p = probe(&demo)?;
        ensure!(
            p.forbidden.is_empty(),
            "after restore, forbidden traffic got through: {:?}\n{said}",
            p.forbidden
        );
        ensure!(
            p.allowed_failed.is_empty(),
            "after restore, allowed traffic failed: {:?}\n{said}",
            p.allowed_failed
        );
        let restored = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
        ensure!(
            restored == before,
            "the restored ruleset differs from the one in force:\n--- before\n{}\n--- restored\n{}",
            before.0,
            restored.0
        );
    }

    // The daemon takes over: the same ruleset, and it works.
    demo.start_daemon()?;
    let after = (listing(&demo, "inet")?, listing(&demo, "bridge")?);
    ensure!(
        after == before,
        "the daemon's ruleset after the boot differs from before"
    );
    demo.stop_daemon()?;

    // No record, then a damaged one: the config and the database decide.
    for damage in [None, Some(&b"{\"format\":1,\"nftab"[..])] {
        match damage {
            None => std::fs::remove_file(&record).context("removing the record")?,
            Some(bytes) => std::fs::write(&record, bytes)?,
        }
        power_off(&demo, &links)?;
        let said = restore(&demo)?;
        ensure!(said.contains("no saved ruleset yet"), "restore said: {said}");
        links_up(&demo, &links, &routes)?;
        let p = probe(&demo)?;
        ensure!(
            p.forbidden.is_empty(),
            "restored from the config, forbidden traffic got through: {:?}",
            p.forbidden
        );
        ensure!(
            p.allowed_failed.is_empty(),
            "restored from the config, allowed traffic failed: {:?}",
            p.allowed_failed
        );
        ensure!(
            set_elements(&demo, "quarantine_mac")?.contains(&mac_of("stranger")?.to_string()),
            "the stranger is not in quarantine after a restore from the database"
        );
    }
    Ok(Outcome::Passed)
}
