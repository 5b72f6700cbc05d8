//! Flow offload (issue 14): on a kernel with flowtables, established flows
//! between the home and the internet take the kernel's fast path, and that
//! changes no decision: blocking or moving a device still ends its flows,
//! tunnelled flows keep their path, offloaded bytes are still counted. This
//! machine's kernel has no `nf_flow_table`: the test runs itself in the VM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bulkhead::control::{Request, Response};
use bulkhead::demo::DemoHome;

use super::{mac_of, wait_until, Outcome, IN_VM};

/// The modules the VM loads first (the kernel would also load them on
/// demand).
const MODULES: &[&str] = &["nf_flow_table", "nf_flow_table_inet", "nft_flow_offload", "wireguard"];

/// Counts the bytes every connection to `port` brings, written to `out`
/// every 100 ms.
const SINK: &str = r#"
import os, socket, sys, threading, time
port, out = int(sys.argv[1]), sys.argv[2]
total = [0]
def serve(c):
    while True:
        b = c.recv(65536)
        if not b:
            return
        total[0] += len(b)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(8)
def accept():
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
while True:
    try:
        with open(out + ".tmp", "w") as f:
            f.write(str(total[0]))
        os.replace(out + ".tmp", out)
    except OSError:
        pass  # the test's folder is gone: it is ending
    time.sleep(0.1)
"#;

/// Sends 1,000 bytes every 10 ms to `host:port` until killed.
const SOURCE: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.settimeout(None)
while True:
    s.sendall(b"x" * 1000)
    time.sleep(0.01)
"#;

fn kernel_has_flowtables() -> Result<bool> {
    let ns = bulkhead_netns::Netns::new("ftprobe")?;
    Ok(ns.exec_ok(&[
        "nft",
        "add table inet p; add flowtable inet p f { hook ingress priority 0; devices = { lo }; }",
    ])?)
}

fn sink_count(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.trim().parse().context("the sink's count")
}

/// The router's conntrack entries of connections to `port` (the kernel's
/// `/proc/net/nf_conntrack`, one line each; `[OFFLOAD]` marks those in the
/// flowtable).
fn conntrack_lines(demo: &DemoHome, port: u16) -> Result<Vec<String>> {
    let out = demo.home.router().exec(&["cat", "/proc/net/nf_conntrack"])?;
    let dport = format!("dport={port} ");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&dport))
        .map(str::to_owned)
        .collect())
}

/// Whether the sink's count stops growing: read `settle` after the change,
/// then again 5 s later.
fn stops(file: &Path, settle: Duration) -> Result<(u64, u64)> {
    std::thread::sleep(settle);
    let a = sink_count(file)?;
    std::thread::sleep(Duration::from_secs(5));
    Ok((a, sink_count(file)?))
}

/// f2. On Debian's kernel in the VM: the daemon finds flowtables and makes
/// one (with the counter flag) over the WAN and the segments; the laptop's
/// TCP stream to the internet is offloaded and its bytes are counted as
/// its traffic; the TV's stream through the tunnel is never offloaded, nor
/// is a stream port-forwarded to the laptop; blocking the laptop ends both
/// of its streams, and moving it to quarantine its offloaded one (both only delete the connections: the flowtable lets go at
/// its next pass).
pub(crate) fn f2_flow_offload_speeds_up_and_decides_nothing() -> Result<Outcome> {
    if !kernel_has_flowtables()? {
        ensure!(
            std::env::var_os(IN_VM).is_none(),
            "the VM's kernel has no flowtables either"
        );
        return super::in_vm("f2_flow_offload_speeds_up_and_decides_nothing", MODULES);
    }
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let tv = mac_of("tv")?;
    demo.configure_tunnel(&format!("[tunnel]\ndevices = [\"{tv}\"]\n"), 2)?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    demo.start_kernel_vpn_server()?;
    let log = || format!("--- daemon log:\n{}", demo.log());
    ensure!(
        demo.log()
            .contains("flow offload: established flows take the kernel's flowtable"),
        "the daemon did not find the flowtables\n{}",
        log()
    );
    let listed = demo.home.router().exec(&["nft", "list", "flowtables"])?;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    ensure!(
        listed.contains("flowtable offload") && listed.contains("counter"),
        "no counting flowtable: {listed}\n{}",
        log()
    );

    let dir: PathBuf = demo.config_path().with_file_name("offload");
    std::fs::create_dir_all(&dir)?;
    let internet = demo.home.internet_v4().to_string();
    let (direct, tunnelled) = (5201u16, 5202u16);
    let isp = demo.home.isp();
    let sink = |port: u16| -> Result<PathBuf> {
        let file = dir.join(format!("sink-{port}"));
        isp.spawn("python3", &["-c", SINK, &port.to_string(), &file.to_string_lossy()])?;
        Ok(file)
    };
    let (direct_sink, tunnel_sink) = (sink(direct)?, sink(tunnelled)?);
    wait_until("the sinks", Duration::from_secs(20), || {
        Ok(direct_sink.exists() && tunnel_sink.exists())
    })?;
    let source = |host: &str, port: u16| -> Result<u32> {
        Ok(demo
            .home
            .ns(host)?
            .spawn("python3", &["-c", SOURCE, &internet, &port.to_string()])?)
    };
    super::tunnel::wait_up(&demo, Duration::from_secs(90))?;
    source("laptop", direct)?;
    source("tv", tunnelled)?;

    // The laptop's stream is offloaded, the TV's (through the tunnel) is not.
    wait_until("the laptop's stream offloaded", Duration::from_secs(60), || {
        Ok(conntrack_lines(&demo, direct)?.iter().any(|l| l.contains("[OFFLOAD]")))
    })
    .with_context(|| format!("{:?}\n{}", conntrack_lines(&demo, direct), log()))?;
    wait_until("the TV's stream flowing", Duration::from_secs(60), || {
        Ok(sink_count(&tunnel_sink)? > 50_000)
    })?;
    let tv_lines = conntrack_lines(&demo, tunnelled)?;
    ensure!(
        !tv_lines.is_empty() && tv_lines.iter().all(|l| !l.contains("[OFFLOAD]")),
        "the tunnelled stream must keep its path: {tv_lines:?}"
    );

    // Offloaded bytes are still the laptop's traffic.
    let laptop = mac_of("laptop")?;
    wait_until("the offloaded bytes counted", Duration::from_secs(60), || {
        let Response::Traffic { report: Some(r) } = demo.call(Request::Traffic { mac: Some(laptop) })? else {
            anyhow::bail!("traffic counting is off")
        };
        let sent = r.devices.first().map_or(0, |d| d.totals.sent.internet.bytes);
        // Read the sink after the report: it can only have grown since.
        Ok(sent > 200_000 && sent * 10 >= sink_count(&direct_sink)? * 8)
    })
    .with_context(log)?;

    // A port forward to the laptop, as fw4 makes them (DNAT in a table of
    // its own): its stream flows and is never offloaded (the cut would not
    // find the laptop in its original tuple).
    let forwarded_port = 5203u16;
    let forward = format!(
        "table ip bh-test-portfwd {{\n  chain pre {{\n    type nat hook prerouting priority dstnat\n    iifname \"{}\" tcp dport 8022 dnat to {}:{forwarded_port}\n  }}\n}}\n",
        bulkhead_netns::home::WAN_IF,
        demo.ipv4("laptop")?
    );
    let forward_file = dir.join("portfwd.nft");
    std::fs::write(&forward_file, forward)?;
    demo.home
        .router()
        .exec(&["nft", "-f", &forward_file.to_string_lossy()])?;
    let forwarded_sink = dir.join(format!("sink-{forwarded_port}"));
    demo.home.ns("laptop")?.spawn(
        "python3",
        &[
            "-c",
            SINK,
            &forwarded_port.to_string(),
            &forwarded_sink.to_string_lossy(),
        ],
    )?;
    wait_until("the laptop's sink", Duration::from_secs(20), || {
        Ok(forwarded_sink.exists())
    })?;
    let router_wan = bulkhead_netns::home::ROUTER_WAN_V4.addr().to_string();
    isp.spawn("python3", &["-c", SOURCE, &router_wan, "8022"])?;
    wait_until("the port-forwarded stream flowing", Duration::from_secs(60), || {
        Ok(sink_count(&forwarded_sink)? > 50_000)
    })
    .with_context(log)?;
    let forwarded = conntrack_lines(&demo, 8022)?;
    ensure!(
        !forwarded.is_empty() && forwarded.iter().all(|l| !l.contains("[OFFLOAD]")),
        "a port-forwarded stream must not be offloaded: {forwarded:?}"
    );

    // Blocked: the stream ends although the flowtable forwards it, and so
    // does the port-forwarded one.
    let Response::Done { .. } = demo.call(Request::Block {
        mac: laptop,
        blocked: true,
    })?
    else {
        anyhow::bail!("block refused");
    };
    let (a, b) = stops(&direct_sink, Duration::from_secs(5))?;
    ensure!(
        a == b,
        "the blocked laptop's stream went on: {a} then {b} bytes\n{}",
        log()
    );
    let (a, b) = stops(&forwarded_sink, Duration::from_secs(0))?;
    ensure!(
        a == b,
        "the blocked laptop's port-forwarded stream went on: {a} then {b} bytes\n{}",
        log()
    );
    demo.call(Request::Block {
        mac: laptop,
        blocked: false,
    })?;

    // A new stream, offloaded again; then the laptop moves to quarantine.
    source("laptop", direct)?;
    let before = sink_count(&direct_sink)?;
    wait_until("a new offloaded stream", Duration::from_secs(60), || {
        Ok(sink_count(&direct_sink)? > before + 50_000
            && conntrack_lines(&demo, direct)?.iter().any(|l| l.contains("[OFFLOAD]")))
    })
    .with_context(log)?;
    demo.call(Request::Approve {
        mac: laptop,
        zone: Some(bulkhead::config::ZoneId::new("quarantine").map_err(anyhow::Error::msg)?),
    })?;
    let (a, b) = stops(&direct_sink, Duration::from_secs(5))?;
    ensure!(
        a == b,
        "the laptop's stream went on in quarantine: {a} then {b} bytes\n{}",
        log()
    );
    // The TV was never touched.
    let t0 = sink_count(&tunnel_sink)?;
    wait_until("the TV's stream still flowing", Duration::from_secs(20), || {
        Ok(sink_count(&tunnel_sink)? > t0)
    })?;
    Ok(Outcome::Passed)
}
