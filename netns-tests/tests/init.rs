//! `bulkhead init` on namespaces that look like a fresh box: a WAN link with a
//! default route (its address on 192.168.10.0/24, the first network init would
//! pick), two LAN links with a device behind each. Then the config it wrote
//! runs: a device gets an address from the planned pool by DHCP and waits in
//! quarantine until approved.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bulkhead_netns::responder::BANNER_PORT;
use bulkhead_netns::{tcp_probe, Netns, Responders};

use super::{udhcpc_lease, Outcome, BIN, SHORT};

/// The box and what hangs off it.
struct FreshBox {
    router: Netns,
    isp: Netns,
    dev1: Netns,
    dev2: Netns,
    dir: PathBuf,
}

impl Drop for FreshBox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ISP: &str = "192.168.10.1";

fn fresh_box() -> Result<FreshBox> {
    let b = FreshBox {
        router: Netns::new("init-box")?,
        isp: Netns::new("init-isp")?,
        dev1: Netns::new("init-dev1")?,
        dev2: Netns::new("init-dev2")?,
        dir: std::env::temp_dir().join(format!("bulkhead-e2e-init-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&b.dir);
    std::fs::create_dir_all(&b.dir)?;
    b.router.veth_to("wan0", &b.isp, "eth0")?;
    b.router.veth_to("eth1", &b.dev1, "eth0")?;
    b.router.veth_to("eth2", &b.dev2, "eth0")?;
    b.router.ip_batch(&[
        "addr add 192.168.10.2/24 dev wan0",
        "link set wan0 up",
        "link set eth1 up",
        "link set eth2 up",
        &format!("route add default via {ISP}"),
    ])?;
    b.isp
        .ip_batch(&[&format!("addr add {ISP}/24 dev eth0"), "link set eth0 up"])?;
    for d in [&b.dev1, &b.dev2] {
        d.ip(&["link", "set", "eth0", "up"])?;
    }
    Ok(b)
}

fn init(b: &FreshBox, config: &Path, args: &[&str]) -> Result<(bool, String)> {
    let cfg = config.to_string_lossy().into_owned();
    let mut all = vec![BIN, "--config", &cfg, "init"];
    all.extend_from_slice(args);
    let out = b.router.exec_output(&all)?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// e3. init: the WAN from the default route, a bridge of both LAN links on a
/// network that avoids the WAN's, DHCP served; with another DHCP server on one
/// link (named one by one), that network is observed instead; a second init
/// refuses to overwrite; and the written config runs.
pub fn e3_init_writes_a_config_that_runs_on_a_fresh_box() -> Result<Outcome> {
    let b = fresh_box()?;

    // Another DHCP server behind eth2 (an old router left on the network).
    b.dev2.ip(&["addr", "add", "192.168.77.1/24", "dev", "eth0"])?;
    let leases = b.dir.join("other.leases");
    let other_server = b.dev2.spawn_logged(
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--interface=eth0",
            "--dhcp-range=192.168.77.100,192.168.77.150,1h",
            &format!("--dhcp-leasefile={}", leases.display()),
            &format!("--pid-file={}", b.dir.join("dnsmasq.pid").display()),
        ],
        &b.dir.join("dnsmasq.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let each = b.dir.join("each/bulkhead.toml");
    let (ok, said) = init(&b, &each, &["--lan", "eth1", "--lan", "eth2", "--yes"])?;
    ensure!(ok, "init --lan eth1 --lan eth2 failed:\n{said}");
    let text = std::fs::read_to_string(&each)?;
    let lan2 = text.split("name = \"lan2\"").nth(1).context("no lan2 segment")?;
    ensure!(
        lan2.contains("interface = \"eth2\"") && lan2.contains("dhcp = \"observe\""),
        "eth2 has another DHCP server: lan2 should observe it:\n{text}\n--- init said:\n{said}\n--- dnsmasq:\n{}",
        std::fs::read_to_string(b.dir.join("dnsmasq.log")).unwrap_or_default()
    );
    let lan = text.split("name = \"lan\"").nth(1).context("no lan segment")?;
    let lan = lan.split("[[segments]]").next().unwrap_or(lan);
    ensure!(
        lan.contains("dhcp = \"serve\""),
        "eth1 has no other server: lan should serve:\n{text}"
    );
    ensure!(
        said.contains("192.168.77.1"),
        "init did not say which server answered:\n{said}"
    );
    let cfg = each.to_string_lossy().into_owned();
    let check = b.router.exec_output(&[BIN, "--config", &cfg, "check-config"])?;
    ensure!(
        check.status.success(),
        "check-config on what init wrote:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // The other server goes away before the box takes over.
    b.dev2.stop_tracked(other_server)?;
    b.dev2.ip(&["addr", "flush", "dev", "eth0"])?;

    // The default: no choices.
    let config = b.dir.join("etc/bulkhead.toml");
    let (ok, said) = init(&b, &config, &[])?;
    ensure!(ok, "init failed:\n{said}");
    let text = std::fs::read_to_string(&config)?;
    for want in [
        "interface = \"wan0\"",
        "interface = \"br-lan\"",
        "ports = [\"eth1\", \"eth2\"]",
        // 192.168.10.0/24 is the WAN's.
        "ipv4 = \"192.168.20.1/24\"",
        "dhcp_pool = \"192.168.20.100-192.168.20.199\"",
        "dhcp = \"serve\"",
    ] {
        ensure!(
            text.contains(want),
            "the written config lacks {want}:\n{text}\n--- init said:\n{said}"
        );
    }
    ensure!(
        said.contains("default route") && said.contains("systemctl enable --now bulkhead"),
        "init did not say what it chose and what to run next:\n{said}"
    );
    ensure!(b.dir.join("etc/policies/zones.toml").exists(), "no policies written");
    let (ok, again) = init(&b, &config, &["--yes"])?;
    ensure!(
        !ok && again.contains("never overwrites"),
        "a second init should refuse:\n{again}"
    );
    ensure!(
        std::fs::read_to_string(&config)? == text,
        "the second init changed the config"
    );

    // It runs: state and socket moved into the test's directory.
    let runnable = text
        .replace("/var/lib/bulkhead", &b.dir.join("state").to_string_lossy())
        .replace(
            "/run/bulkhead/control.sock",
            &b.dir.join("control.sock").to_string_lossy(),
        );
    std::fs::write(&config, runnable)?;
    let cfg = config.to_string_lossy().into_owned();
    let log = b.dir.join("daemon.log");
    let pid = b.router.spawn_logged(BIN, &["--config", &cfg, "daemon"], &log)?;
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !daemon_log().contains("bulkhead: ready") {
        ensure!(Instant::now() < deadline, "the daemon did not start:\n{}", daemon_log());
        if let Ok(Some(status)) = b.router.wait_tracked(pid, Duration::from_millis(100)) {
            anyhow::bail!("the daemon exited ({status}):\n{}", daemon_log());
        }
    }
    let mut responders = Responders::new();
    responders.start_standard(&b.isp)?;
    let ip = udhcpc_lease(&b.dev1, &b.dir, 5, 1)
        .with_context(|| format!("the device got no lease from the config init wrote:\n{}", daemon_log()))?;
    ensure!(
        ip.to_string().starts_with("192.168.20.1"),
        "not an address of the planned pool: {ip}"
    );
    // New and unknown: quarantined, no internet.
    let isp = SocketAddr::new(ISP.parse::<IpAddr>()?, BANNER_PORT);
    ensure!(
        !tcp_probe(&b.dev1, isp, SHORT)?,
        "an unknown device reached the internet:\n{}",
        daemon_log()
    );
    // Approved: the internet.
    let mac_out = b.dev1.exec(&["cat", "/sys/class/net/eth0/address"])?;
    let mac = String::from_utf8_lossy(&mac_out.stdout).trim().to_string();
    let approve = b
        .router
        .exec_output(&[BIN, "--config", &cfg, "device", "approve", &mac])?;
    ensure!(
        approve.status.success(),
        "approve: {}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let reached = bulkhead_netns::eventually(Duration::from_secs(3), || tcp_probe(&b.dev1, isp, SHORT))?;
    ensure!(
        reached,
        "the approved device cannot reach the internet:\n{}",
        daemon_log()
    );
    b.router.stop_tracked(pid)?;
    responders.stop();
    Ok(Outcome::Passed)
}
