//! Bulkhead as it runs on OpenWrt, beside the router's own firewall and DHCP
//! server: firewall4's real ruleset for the default configuration (the
//! fixture `fw4-default.nft`), dnsmasq handing out the addresses, netifd's
//! `br-lan` made before Bulkhead starts, and Bulkhead configured by UCI files
//! (`/etc/config/bulkhead` and `/etc/config/network` shapes, read directly).
//!
//! Both firewalls hold at once: fw4 drops what the internet sends the router
//! (Bulkhead leaves the WAN's input to it), Bulkhead enforces the zones that
//! fw4's "lan may forward to wan" would let through. A `fw4 reload` (flush and
//! refill of `inet fw4`) and a `fw4 stop`/`start` (the table deleted and made
//! again) leave Bulkhead's tables working, and nothing Bulkhead does — start,
//! approvals, a reload with its full replace, stop — changes a byte of fw4's.
//! A Wi-Fi port hostapd adds to `br-lan` after the start is policed at once.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bulkhead_netns::responder::BANNER_PORT;
use bulkhead_netns::{tcp_probe, Netns, Responders};
use nix::sys::signal::Signal;

use super::{udhcpc_lease, wait_until, Outcome, BIN, SHORT};

const FW4: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../netns-tests/fixtures/fw4-default.nft");
const ISP: &str = "203.0.113.1";
const ROUTER_WAN: &str = "203.0.113.2";

struct OpenWrtBox {
    router: Netns,
    isp: Netns,
    laptop: Netns,
    plug: Netns,
    dir: PathBuf,
}

impl Drop for OpenWrtBox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl OpenWrtBox {
    fn build() -> Result<OpenWrtBox> {
        let b = OpenWrtBox {
            router: Netns::new("owrt-router")?,
            isp: Netns::new("owrt-isp")?,
            laptop: Netns::new("owrt-laptop")?,
            plug: Netns::new("owrt-plug")?,
            dir: std::env::temp_dir().join(format!("bulkhead-e2e-openwrt-{}", std::process::id())),
        };
        let _ = std::fs::remove_dir_all(&b.dir);
        std::fs::create_dir_all(b.dir.join("policies"))?;
        b.router.veth_to("eth1", &b.isp, "eth0")?;
        b.router.veth_to("lan1", &b.laptop, "eth0")?;
        b.router.veth_to("lan2", &b.plug, "eth0")?;
        // What netifd makes from OpenWrt's default network config.
        b.router.ip_batch(&[
            "link add br-lan type bridge",
            "link set lan1 master br-lan",
            "link set lan2 master br-lan",
            "addr add 192.168.1.1/24 dev br-lan",
            &format!("addr add {ROUTER_WAN}/24 dev eth1"),
            "link set br-lan up",
            "link set lan1 up",
            "link set lan2 up",
            "link set eth1 up",
            &format!("route add default via {ISP}"),
        ])?;
        b.isp
            .ip_batch(&[&format!("addr add {ISP}/24 dev eth0"), "link set eth0 up"])?;
        for d in [&b.laptop, &b.plug] {
            d.ip(&["link", "set", "eth0", "up"])?;
        }
        Ok(b)
    }

    fn fw4_load(&self) -> Result<()> {
        let out = self.router.exec_output(&["nft", "-f", FW4])?;
        ensure!(
            out.status.success(),
            "fw4's ruleset did not load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The table without its counters' values (`-s`): what fw4 wrote.
    fn fw4_table(&self) -> Result<String> {
        let out = self.router.exec(&["nft", "-s", "list", "table", "inet", "fw4"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn bulkhead(&self, args: &[&str]) -> Result<String> {
        let config = self.dir.join("config/bulkhead");
        let cfg = config.to_string_lossy();
        let mut all = vec![BIN, "--config", &cfg];
        all.extend_from_slice(args);
        let out = self.router.exec_output(&all)?;
        ensure!(
            out.status.success(),
            "bulkhead {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn mac(ns: &Netns) -> Result<String> {
    let out = ns.exec(&["cat", "/sys/class/net/eth0/address"])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// o1. Bulkhead on OpenWrt beside firewall4 and dnsmasq.
pub fn o1_openwrt_beside_fw4_and_dnsmasq() -> Result<Outcome> {
    let b = OpenWrtBox::build()?;
    let mut responders = Responders::new();
    responders.start_standard(&b.isp)?;
    // Something listening on the router, reachable from the WAN unless a
    // firewall stops it (OpenWrt's uhttpd, dropbear…).
    let router_wan = SocketAddr::new(ROUTER_WAN.parse::<IpAddr>()?, BANNER_PORT);
    responders.start_tcp_banner(&b.router, router_wan)?;
    ensure!(
        tcp_probe(&b.isp, router_wan, SHORT)?,
        "control: without firewalls the router's listener should answer the WAN"
    );

    b.fw4_load()?;
    ensure!(
        !tcp_probe(&b.isp, router_wan, SHORT)?,
        "fw4 let the internet reach the router"
    );
    let fw4_before = b.fw4_table()?;

    // dnsmasq serves DHCP only (port 0: no DNS), as OpenWrt runs it.
    let leases = b.dir.join("dhcp.leases");
    let dnsmasq = b.router.spawn_logged(
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--interface=br-lan",
            "--dhcp-authoritative",
            "--dhcp-range=192.168.1.100,192.168.1.150,1h",
            &format!("--dhcp-leasefile={}", leases.display()),
            &format!("--pid-file={}", b.dir.join("dnsmasq.pid").display()),
        ],
        &b.dir.join("dnsmasq.log"),
    )?;

    // /etc/config/network and /etc/config/bulkhead, as an OpenWrt box has them.
    std::fs::create_dir_all(b.dir.join("config"))?;
    std::fs::write(
        b.dir.join("config/network"),
        "config interface 'loopback'\n\toption device 'lo'\n\toption proto 'static'\n\toption ipaddr '127.0.0.1'\n\toption netmask '255.0.0.0'\n\n\
         config device\n\toption name 'br-lan'\n\toption type 'bridge'\n\tlist ports 'lan1'\n\tlist ports 'lan2'\n\n\
         config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\toption ipaddr '192.168.1.1'\n\toption netmask '255.255.255.0'\n\n\
         config interface 'wan'\n\toption device 'eth1'\n\toption proto 'dhcp'\n",
    )?;
    for (name, text) in bulkhead::config::SHIPPED_POLICIES {
        std::fs::write(b.dir.join("policies").join(name), text)?;
    }
    let d = b.dir.display();
    std::fs::write(
        b.dir.join("config/bulkhead"),
        format!(
            "config bulkhead 'main'\n\toption enabled '1'\n\toption state_dir '{d}/state'\n\
             \toption policies_dir '{d}/policies'\n\toption control_socket '{d}/control.sock'\n\n\
             config wan 'wan'\n\toption network 'wan'\n\n\
             config segment 'lan'\n\toption network 'lan'\n\n\
             config dhcp 'dhcp'\n\toption observe_lease_file '{d}/dhcp.leases'\n\n\
             config web 'web'\n\tlist listen 'lan:8080'\n"
        ),
    )?;
    b.bulkhead(&["check-config"])
        .context("the UCI config should be valid")?;

    let log = b.dir.join("daemon.log");
    let config = b.dir.join("config/bulkhead");
    let cfg = config.to_string_lossy().into_owned();
    let daemon = b.router.spawn_logged(BIN, &["--config", &cfg, "daemon"], &log)?;
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the daemon is ready", Duration::from_secs(15), || {
        if let Some(status) = b.router.wait_tracked(daemon, Duration::from_millis(50))? {
            anyhow::bail!("the daemon exited ({status}):\n{}", daemon_log());
        }
        Ok(daemon_log().contains("bulkhead: ready"))
    })?;
    ensure!(b.fw4_table()? == fw4_before, "starting Bulkhead changed table inet fw4");

    // Both devices lease from dnsmasq; Bulkhead learns them from it.
    let laptop_ip = udhcpc_lease(&b.laptop, &b.dir, 5, 1).context("the laptop got no lease from dnsmasq")?;
    udhcpc_lease(&b.plug, &b.dir, 5, 1).context("the plug got no lease from dnsmasq")?;
    ensure!(
        laptop_ip.to_string().starts_with("192.168.1.1"),
        "not dnsmasq's pool: {laptop_ip}"
    );
    let (laptop_mac, plug_mac) = (mac(&b.laptop)?, mac(&b.plug)?);
    wait_until("Bulkhead lists both devices", Duration::from_secs(10), || {
        let devices = b.bulkhead(&["devices"])?;
        Ok(devices.contains(&laptop_mac) && devices.contains(&plug_mac))
    })
    .with_context(daemon_log)?;

    // New devices wait in quarantine: fw4 would let lan reach wan, Bulkhead does not.
    let internet = SocketAddr::new(ISP.parse::<IpAddr>()?, BANNER_PORT);
    ensure!(
        !tcp_probe(&b.laptop, internet, SHORT)?,
        "a quarantined device reached the internet through fw4"
    );
    b.bulkhead(&["device", "approve", &laptop_mac])?;
    let both = |what: &str| -> Result<()> {
        ensure!(
            bulkhead_netns::eventually(Duration::from_secs(3), || tcp_probe(&b.laptop, internet, SHORT))?,
            "{what}: the approved laptop cannot reach the internet"
        );
        ensure!(
            !tcp_probe(&b.plug, internet, SHORT)?,
            "{what}: the quarantined plug reached the internet"
        );
        Ok(())
    };
    both("approved")?;

    // hostapd adds a Wi-Fi port to br-lan after Bulkhead started: a phone
    // behind it leases from dnsmasq and is policed at once (quarantined: not
    // the laptop on the same bridge, not the internet), until approved.
    let phone = Netns::new("owrt-phone")?;
    b.router.veth_to("wlan0", &phone, "eth0")?;
    b.router
        .ip_batch(&["link set wlan0 master br-lan", "link set wlan0 up"])?;
    phone.ip(&["link", "set", "eth0", "up"])?;
    udhcpc_lease(&phone, &b.dir, 5, 1).context("the phone on the new port got no lease")?;
    let phone_mac = mac(&phone)?;
    wait_until("Bulkhead lists the phone", Duration::from_secs(10), || {
        Ok(b.bulkhead(&["devices"])?.contains(&phone_mac))
    })
    .with_context(daemon_log)?;
    let laptop_banner = SocketAddr::new(laptop_ip, BANNER_PORT);
    responders.start_tcp_banner(&b.laptop, laptop_banner)?;
    ensure!(
        !tcp_probe(&phone, laptop_banner, SHORT)? && !tcp_probe(&phone, internet, SHORT)?,
        "a quarantined phone on a port added after the start reached the laptop or the internet"
    );
    b.bulkhead(&["device", "approve", &phone_mac, "trusted"])?;
    ensure!(
        bulkhead_netns::eventually(Duration::from_secs(3), || tcp_probe(&phone, laptop_banner, SHORT))?,
        "control: the approved phone cannot reach the laptop beside it"
    );

    // fw4 reload: one transaction that flushes and refills its table.
    b.fw4_load()?;
    both("after fw4 reload")?;
    ensure!(
        !tcp_probe(&b.isp, router_wan, SHORT)?,
        "after fw4 reload the internet reached the router"
    );

    // A Bulkhead reload replaces its whole ruleset: fw4's stays as it was.
    b.router.kill_tracked(daemon, Signal::SIGHUP)?;
    wait_until("the reload is done", Duration::from_secs(10), || {
        let log = daemon_log();
        ensure!(!log.contains("reload refused"), "the reload was refused:\n{log}");
        Ok(log.contains("config reloaded"))
    })
    .with_context(daemon_log)?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(b.fw4_table()? == fw4_before, "Bulkhead's reload changed table inet fw4");
    both("after Bulkhead's reload")?;

    // fw4 stop deletes its table: the WAN's input was fw4's alone (Bulkhead
    // leaves it: police_input off on OpenWrt), the zones stay Bulkhead's.
    b.router.exec(&["nft", "delete", "table", "inet", "fw4"])?;
    ensure!(
        tcp_probe(&b.isp, router_wan, SHORT)?,
        "with fw4 stopped the WAN should reach the router (Bulkhead leaves WAN input to fw4 on OpenWrt)"
    );
    both("fw4 stopped")?;
    b.fw4_load()?;
    ensure!(
        !tcp_probe(&b.isp, router_wan, SHORT)?,
        "fw4 started again but the internet reaches the router"
    );
    both("fw4 started again")?;

    b.router.stop_tracked(daemon)?;
    ensure!(b.fw4_table()? == fw4_before, "stopping Bulkhead changed table inet fw4");
    b.router.stop_tracked(dnsmasq)?;
    responders.stop();
    Ok(Outcome::Passed)
}
