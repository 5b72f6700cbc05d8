//! The IoT VLAN, end to end (issue 14): a router whose home networks arrive on
//! one trunk port from a VLAN-aware switch — lan untagged, iot on VLAN 20,
//! guest on VLAN 30 — with one device on an access port of each. Run where the
//! kernel has 802.1Q; elsewhere the test runs itself in a VM with Debian's
//! kernel (`super::in_vm`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead_netns::responder::BANNER_PORT;
use bulkhead_netns::{tcp_probe, Netns, Responders};
use nix::sys::signal::Signal;

use super::{in_vm, udhcpc_lease, Outcome, BIN, IN_VM};

const ISP: &str = "192.0.2.1";

/// A VLAN segment's lines for bulkhead.toml.
fn vlan_segment(name: &str, id: u16) -> String {
    format!(
        "\n[[segments]]\nname = \"{name}\"\ninterface = \"trunk.{id}\"\nkind = \"vlan\"\nparent = \"trunk\"\nvlan_id = {id}\n\
         ipv4 = \"10.0.{id}.1/24\"\ndhcp_pool = \"10.0.{id}.100-10.0.{id}.199\"\n"
    )
}

fn config(with_guest: bool) -> String {
    let mut c = String::from(
        "state_dir = \"state\"\npolicies_dir = \"policies\"\ncontrol_socket = \"c.sock\"\n\
         [wan]\ninterface = \"wan0\"\n\n[[segments]]\nname = \"lan\"\ninterface = \"trunk\"\nkind = \"existing\"\n\
         ipv4 = \"10.0.1.1/24\"\ndhcp_pool = \"10.0.1.100-10.0.1.199\"\n",
    );
    c.push_str(&vlan_segment("iot", 20));
    if with_guest {
        c.push_str(&vlan_segment("guest", 30));
    }
    c
}

/// i2. The VLAN home: each device gets its address by DHCP over its VLAN
/// (through the switch, tagged on the trunk); the zones hold between VLANs
/// (trusted reaches iot, iot reaches neither trusted nor guest, guest reaches
/// no one; all reach the internet); frames tagged with a VLAN the router does
/// not serve reach nothing; a reload that drops the guest VLAN removes
/// trunk.30 and leaves trunk.20 (same interface) and its device untouched.
pub fn i2_iot_vlan_home_end_to_end() -> Result<Outcome> {
    if !bulkhead::net::vlan_supported() {
        if std::env::var_os(IN_VM).is_some() {
            return Ok(Outcome::Skipped(bulkhead::net::VLAN_UNSUPPORTED.to_string()));
        }
        return in_vm("i2_iot_vlan_home_end_to_end", &["8021q"]);
    }
    let patience = Duration::from_secs(if std::env::var_os(IN_VM).is_some() { 90 } else { 15 });
    let router = Netns::new("vl-router")?;
    let switch = Netns::new("vl-switch")?;
    let isp = Netns::new("vl-isp")?;
    let devices = [("laptop", 1u16), ("camera", 20), ("guest", 30)];
    let hosts: Vec<Netns> = devices
        .iter()
        .map(|(n, _)| Netns::new(&format!("vl-{n}")))
        .collect::<Result<_, _>>()?;

    // The internet.
    router.veth_to("wan0", &isp, "eth0")?;
    router.ip_batch(&[
        "addr add 192.0.2.2/24 dev wan0",
        "link set wan0 up",
        &format!("route add default via {ISP}"),
    ])?;
    isp.ip_batch(&[&format!("addr add {ISP}/24 dev eth0"), "link set eth0 up"])?;
    // The trunk, and a VLAN-aware switch: the uplink carries VLAN 1
    // untagged and 20, 30 tagged; each access port one VLAN, untagged.
    router.veth_to("trunk", &switch, "uplink")?;
    router.ip(&["link", "set", "trunk", "up"])?;
    switch.ip_batch(&[
        "link add br0 type bridge vlan_filtering 1",
        "link set uplink master br0",
        "link set uplink up",
    ])?;
    switch.exec(&["bridge", "vlan", "add", "dev", "uplink", "vid", "20"])?;
    switch.exec(&["bridge", "vlan", "add", "dev", "uplink", "vid", "30"])?;
    for ((name, vid), host) in devices.iter().zip(&hosts) {
        let port = format!("p-{name}");
        switch.veth_to(&port, host, "eth0")?;
        switch.ip_batch(&[format!("link set {port} master br0"), format!("link set {port} up")])?;
        if *vid != 1 {
            switch.exec(&["bridge", "vlan", "del", "dev", &port, "vid", "1"])?;
            switch.exec(&[
                "bridge",
                "vlan",
                "add",
                "dev",
                &port,
                "vid",
                &vid.to_string(),
                "pvid",
                "untagged",
            ])?;
        }
        host.ip(&["link", "set", "eth0", "up"])?;
    }
    switch.ip(&["link", "set", "br0", "up"])?;

    // Bulkhead, with the VLANs' zones given by the policy.
    let dir: PathBuf = std::env::temp_dir().join(format!("bulkhead-e2e-vlanhome-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies"))?;
    for (name, text) in bulkhead::demo::shipped_policies() {
        std::fs::write(dir.join("policies").join(name), text)?;
    }
    std::fs::write(
        dir.join("policies/vlans.toml"),
        "[segment_zones]\niot = \"iot\"\nguest = \"guest\"\n",
    )?;
    let cfg = dir.join("bulkhead.toml");
    std::fs::write(&cfg, config(true))?;
    let cfg_s = cfg.to_string_lossy().into_owned();
    let log = dir.join("daemon.log");
    let pid = router.spawn_logged(BIN, &["--config", &cfg_s, "daemon"], &log)?;
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let result = (|| -> Result<()> {
        let started = Instant::now();
        while !daemon_log().contains("bulkhead: ready") {
            ensure!(
                started.elapsed() < patience,
                "the daemon did not start:\n{}",
                daemon_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // DHCP over each VLAN.
        let mut addrs = Vec::new();
        for ((name, vid), host) in devices.iter().zip(&hosts) {
            let ip = udhcpc_lease(host, &dir, 8, 2)
                .with_context(|| format!("{name} got no lease over VLAN {vid}:\n{}", daemon_log()))?;
            let net = if *vid == 1 {
                "10.0.1.".to_string()
            } else {
                format!("10.0.{vid}.")
            };
            ensure!(ip.to_string().starts_with(&net), "{name} on VLAN {vid} got {ip}");
            addrs.push(ip);
        }
        // The laptop is the homeowner's.
        let laptop_mac = String::from_utf8_lossy(&hosts[0].exec(&["cat", "/sys/class/net/eth0/address"])?.stdout)
            .trim()
            .to_string();
        let approved = router.exec_output(&[BIN, "--config", &cfg_s, "device", "approve", &laptop_mac, "trusted"])?;
        ensure!(
            approved.status.success(),
            "approve: {}",
            String::from_utf8_lossy(&approved.stderr)
        );

        let mut responders = Responders::new();
        for h in hosts.iter().chain([&isp]) {
            responders.start_standard(h)?;
        }
        let internet: IpAddr = ISP.parse()?;
        let reach = |from: usize, to: IpAddr| -> Result<bool> {
            bulkhead_netns::eventually(Duration::from_secs(3), || {
                tcp_probe(
                    &hosts[from],
                    SocketAddr::new(to, BANNER_PORT),
                    Duration::from_millis(700),
                )
            })
            .map_err(anyhow::Error::from)
        };
        let never = |from: usize, to: IpAddr| -> Result<bool> {
            tcp_probe(
                &hosts[from],
                SocketAddr::new(to, BANNER_PORT),
                Duration::from_millis(700),
            )
            .map_err(anyhow::Error::from)
        };
        let (laptop, camera, guest) = (0, 1, 2);
        let matrix = [
            ("laptop → camera", reach(laptop, addrs[camera])?, true),
            ("laptop → internet", reach(laptop, internet)?, true),
            ("camera → internet", reach(camera, internet)?, true),
            ("guest → internet", reach(guest, internet)?, true),
            ("camera → laptop", never(camera, addrs[laptop])?, false),
            ("camera → guest", never(camera, addrs[guest])?, false),
            ("guest → camera", never(guest, addrs[camera])?, false),
            ("guest → laptop", never(guest, addrs[laptop])?, false),
        ];
        let wrong: Vec<String> = matrix
            .iter()
            .filter(|(_, got, want)| got != want)
            .map(|(what, got, want)| format!("{what}: {got}, expected {want}"))
            .collect();
        ensure!(
            wrong.is_empty(),
            "{}\n--- daemon log:\n{}",
            wrong.join("\n"),
            daemon_log()
        );

        // A frame tagged with a VLAN the router does not serve (99, which the
        // switch lets up the trunk) reaches nothing: there is no trunk.99, so
        // not even the router's ARP answers it, nor the laptop on VLAN 1. The
        // same host moved to VLAN 1 is answered (the control).
        let rogue = Netns::new("vl-rogue")?;
        switch.veth_to("p-rogue", &rogue, "eth0")?;
        switch.ip_batch(&["link set p-rogue master br0", "link set p-rogue up"])?;
        switch.exec(&["bridge", "vlan", "add", "dev", "uplink", "vid", "99"])?;
        switch.exec(&["bridge", "vlan", "del", "dev", "p-rogue", "vid", "1"])?;
        switch.exec(&[
            "bridge", "vlan", "add", "dev", "p-rogue", "vid", "99", "pvid", "untagged",
        ])?;
        rogue.ip_batch(&["addr add 10.0.1.66/24 dev eth0", "link set eth0 up"])?;
        let router_answers_arp = |ns: &Netns| ns.exec_ok(&["arping", "-c", "2", "-w", "3", "-I", "eth0", "10.0.1.1"]);
        ensure!(
            !router_answers_arp(&rogue)?,
            "the router answered ARP from VLAN 99, which it does not serve"
        );
        ensure!(
            !tcp_probe(
                &rogue,
                SocketAddr::new(addrs[laptop], BANNER_PORT),
                Duration::from_millis(700)
            )?,
            "a host on VLAN 99 reached the laptop on VLAN 1"
        );
        switch.exec(&["bridge", "vlan", "del", "dev", "p-rogue", "vid", "99"])?;
        switch.exec(&[
            "bridge", "vlan", "add", "dev", "p-rogue", "vid", "1", "pvid", "untagged",
        ])?;
        ensure!(
            router_answers_arp(&rogue)?,
            "control: the router does not answer ARP on VLAN 1 either"
        );

        // A reload without the guest VLAN: trunk.30 goes, trunk.20 stays the
        // same interface and its camera keeps the internet.
        let index = |name: &str| -> Result<Option<String>> {
            let o = router.exec_output(&["cat", &format!("/sys/class/net/{name}/ifindex")])?;
            Ok(o.status
                .success()
                .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string()))
        };
        let iot_before = index("trunk.20")?.context("no trunk.20")?;
        ensure!(index("trunk.30")?.is_some(), "no trunk.30");
        std::fs::write(&cfg, config(false))?;
        // (A policy naming a segment that no longer exists is refused.)
        std::fs::write(dir.join("policies/vlans.toml"), "[segment_zones]\niot = \"iot\"\n")?;
        router.kill_tracked(pid, Signal::SIGHUP)?;
        let started = Instant::now();
        while index("trunk.30")?.is_some() {
            ensure!(
                started.elapsed() < patience,
                "trunk.30 is still there after the reload:\n{}",
                daemon_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ensure!(
            index("trunk.20")?.as_deref() == Some(iot_before.as_str()),
            "trunk.20 was replaced by the reload"
        );
        ensure!(reach(camera, internet)?, "the camera lost the internet in the reload");
        responders.stop();
        Ok(())
    })();
    let _ = router.stop_tracked(pid);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => Ok(Outcome::Passed),
        Err(e) => bail!("{e:#}"),
    }
}
