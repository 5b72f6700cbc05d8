//! Firewall benchmarks (root; builds its own namespaces, removes them after).
//!
//! 1. With 10, 1,000 and 10,000 devices in the sets: time to move one device
//!    between zones (one set-delta transaction through `nft`, as the daemon does
//!    it) and time of a full table replace (one transaction) plus its read-back
//!    verification.
//! 2. iperf3 from a LAN host through the router namespace to the internet host
//!    (TCP, and 100-byte UDP datagrams for the per-packet cost) with no ruleset
//!    at all, with Bulkhead's ruleset (10,000 devices in the sets) and
//!    conntrack accounting off, and on (traffic counting, the default), and
//!    where the kernel has flowtables the same with the flowtable (what the
//!    daemon adds there): in turn each round, medians and the ratios.
//!
//! Run: `cargo bench -p bulkhead --features demo --bench firewall`
//! (`-- --throughput-only` skips part 1; figures in BENCHMARKS.md).
//! `FIREWALL_BENCH_VM=1` runs the throughput part inside the test VM with
//! Debian's kernel, which has flowtables (this machine's kernel has not).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bulkhead::config::{Config, MacAddr, ZoneId};
use bulkhead::demo::{DemoHome, HOSTS};
use bulkhead::firewall::{self, diff_membership, render, NftBackend, NftCli};
use bulkhead::inventory::{Event, Inventory};
use bulkhead::policy::{desired_membership, desired_ruleset, device_entry, DesiredRuleset, Membership};

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn p95(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64) * 0.95) as usize % v.len()]
}

/// The demo hosts plus `n` synthetic devices spread over the zones, each with a
/// MAC, an IPv4 and an IPv6 address.
fn inventory(n: usize) -> Inventory {
    let mut inv = Inventory::default();
    let zones = ["trusted", "iot", "guest", "quarantine"];
    for h in HOSTS {
        for ip in [h.ipv4, h.ipv6] {
            let ip = bulkhead::config::parse_ip(ip).ok();
            inv.apply(
                &Event::ManualAdd {
                    mac: MacAddr(h.mac),
                    ip,
                },
                0,
            );
        }
    }
    for i in 0..n {
        let b = (i as u32).to_be_bytes();
        let mac = MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]]);
        // 10.0.64.0/18 keeps clear of the demo hosts; IPv6 in fd00:1::/64.
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 64 + ((i >> 8) & 0x3f) as u8, (i & 0xff) as u8));
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0x42, i as u16));
        inv.apply(&Event::ManualAdd { mac, ip: Some(v4) }, 0);
        inv.apply(&Event::ManualAdd { mac, ip: Some(v6) }, 0);
        let zone = ZoneId::new(zones[i % zones.len()]).expect("zone");
        inv.apply(&Event::SetZone { mac, zone }, 0);
    }
    inv
}

fn desired(config: &Config, n: usize) -> (DesiredRuleset, Membership, Inventory) {
    let inv = inventory(n);
    (
        desired_ruleset(config, &BTreeSet::new()),
        desired_membership(config, &inv),
        inv,
    )
}

struct SizeResult {
    devices: usize,
    full_ms: f64,
    verify_ms: f64,
    move_ms: f64,
    move_p95_ms: f64,
}

fn bench_size(demo: &DemoHome, config: &Config, n: usize) -> Result<SizeResult> {
    let (rs, m, mut inv) = desired(config, n);
    let nft = NftCli::default();
    let mut full = Vec::new();
    let mut verify = Vec::new();
    for _ in 0..7 {
        let doc = render::full_document(&rs, &m);
        let (apply_t, verify_t) = demo.home.router().run_in(|| -> Result<(f64, f64)> {
            let t0 = Instant::now();
            nft.apply(&doc).context("full replace")?;
            let t1 = Instant::now();
            let inet = nft.list_table(nftables::types::NfFamily::INet)?;
            let bridge = nft.list_table(nftables::types::NfFamily::Bridge)?;
            firewall::verify(&rs, &m, &[inet, bridge])?;
            Ok(((t1 - t0).as_secs_f64() * 1e3, t1.elapsed().as_secs_f64() * 1e3))
        })??;
        full.push(apply_t);
        verify.push(verify_t);
    }
    // Moves: one synthetic device back and forth between iot and guest, each move
    // computed as the daemon does it (DaemonState::reconcile_entries): the
    // device's old entry out, its new entry in, one set delta, one nfnetlink batch.
    let mac = MacAddr([0x02, 0x42, 0, 0, 0, 1]);
    let mut current = m;
    let mut moves = Vec::new();
    for i in 0..40 {
        let zone = ZoneId::new(if i % 2 == 0 { "guest" } else { "iot" }).expect("zone");
        let t0 = Instant::now();
        let before = [device_entry(config, inv.get(&mac).context("device")?)];
        inv.apply(&Event::SetZone { mac, zone }, 0);
        let after = [device_entry(config, inv.get(&mac).context("device")?)];
        let delta = diff_membership(
            &Membership::of_entries(&current, &before),
            &Membership::of_entries(&current, &after),
        );
        ensure!(delta.added() == 3 && delta.removed() == 3, "unexpected delta {delta:?}");
        demo.home.router().run_in(|| nft.apply_delta(&delta))??;
        current.remove_entry(&before[0]);
        current.insert_entry(&after[0]);
        moves.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ensure!(
        current == desired_membership(config, &inv),
        "incremental membership drifted from the full one"
    );
    Ok(SizeResult {
        devices: n,
        full_ms: median(full),
        verify_ms: median(verify),
        move_ms: median(moves.clone()),
        move_p95_ms: p95(moves),
    })
}

/// Packets per second the iperf3 server received of small UDP datagrams
/// (100 bytes, as fast as the sender can): the per-packet cost shows here,
/// where TCP's large offloaded segments hide it.
fn iperf_udp_pps(demo: &DemoHome, secs: u32) -> Result<f64> {
    let out = demo.home.ns("laptop")?.exec(&[
        "iperf3",
        "-c",
        "203.0.113.10",
        "-u",
        "-b",
        "0",
        "-l",
        "100",
        "-t",
        &secs.to_string(),
        "-J",
    ])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 json")?;
    let sum = &v["end"]["sum"];
    let packets = sum["packets"].as_f64().context("iperf3 packets")?;
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let seconds = sum["seconds"].as_f64().context("iperf3 seconds")?;
    Ok((packets - lost) / seconds)
}

fn iperf(demo: &DemoHome, secs: u32) -> Result<f64> {
    let out = demo
        .home
        .ns("laptop")?
        .exec(&["iperf3", "-c", "203.0.113.10", "-t", &secs.to_string(), "-J"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 json")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3 result")
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("firewall: benchmark");
        return Ok(());
    }
    ensure!(
        bulkhead_netns::is_root(),
        "the firewall benchmark builds network namespaces: run as root"
    );
    if std::env::var_os(VM_ENV).is_some() && std::env::var_os(IN_VM_ENV).is_none() {
        return in_vm();
    }
    // `--throughput-only`: skip the set-delta and replace timings.
    let sizes: Vec<usize> =
        if std::env::args().any(|a| a == "--throughput-only") || std::env::var_os(IN_VM_ENV).is_some() {
            Vec::new()
        } else {
            vec![10, 1_000, 10_000]
        };
    let demo = DemoHome::build(Path::new(BIN), &[])?;
    // The daemon sets up the bridges and addresses, then stops; its rules stay,
    // and the benchmark drives nft directly from here on.
    demo.start_daemon()?;
    demo.stop_daemon()?;
    let config = bulkhead::config::load(&demo.config_path()).map_err(|e| anyhow::anyhow!("{e}"))?;

    if !sizes.is_empty() {
        println!("\n## Set delta vs full replace (medians; nft {})\n", nft_version());
        println!("| devices in sets | move one device (set delta) | p95 | full table replace | read-back verify |");
        println!("| ---: | ---: | ---: | ---: | ---: |");
    }
    for n in &sizes {
        let r = bench_size(&demo, &config, *n)?;
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms |",
            r.devices, r.move_ms, r.move_p95_ms, r.full_ms, r.verify_ms
        );
    }

    // Throughput: the isp gets a route back to the LAN so the no-ruleset path
    // (no masquerade) works too; it changes nothing for the ruleset path.
    let isp = demo.home.isp();
    isp.ip(&["route", "add", "10.0.0.0/16", "via", "198.51.100.2"])?;
    let server = isp.spawn_logged("iperf3", &["-s", "-B", "203.0.113.10"], &demo.dir.join("iperf3.log"))?;
    std::thread::sleep(Duration::from_millis(300));
    let (rs, m, _) = desired(&config, 10_000);
    let full = render::full_document(&rs, &m);
    let nft = NftCli::default();
    let router = demo.home.router();
    // The flowtable the daemon adds where the kernel has one: over the WAN
    // and the segments (all present here).
    let flowtables = router.run_in(|| firewall::probe_flowtables(&nft).is_ok())?;
    let facts = bulkhead::policy::LinkFacts {
        present: std::iter::once(config.wan_interface.clone())
            .chain(config.segments.iter().map(|s| s.interface.clone()))
            .zip(1..)
            .collect(),
        flowtables,
        ..Default::default()
    };
    let offloaded = DesiredRuleset {
        offload: bulkhead::policy::desired_ruleset_for(&config, &facts).offload,
        ..rs.clone()
    };
    let full_offloaded = render::full_document(&offloaded, &m);
    // Port binding (issue 20): every device bound to a port, the laptop to
    // its own, so each of its frames walks the bridge `prerouting` guard's
    // three lookups (ports, bound MACs, MAC . port) and passes.
    let mut bound = m.clone();
    let laptop = HOSTS
        .iter()
        .find(|h| h.name == "laptop")
        .map(|h| MacAddr(h.mac))
        .ok_or_else(|| anyhow::anyhow!("no laptop host"))?;
    let port = |n: &str| bulkhead::config::PortName::new(n).ok_or_else(|| anyhow::anyhow!("port name {n}"));
    bound.port_bindings.insert((laptop, port("lan-laptop")?));
    let elsewhere = port("lan-plug")?;
    for mac in m.zones.values().flat_map(|z| z.macs.iter()) {
        bound.port_bindings.insert((*mac, elsewhere));
    }
    let full_bound = render::full_document(&rs, &bound);
    // Traffic counting is conntrack's accounting (`[traffic]`, on by
    // default): the ruleset with it off and on measures its cost per packet.
    let mut variants = vec![
        "no ruleset",
        "Bulkhead, 10,000 devices, accounting off",
        "Bulkhead, 10,000 devices, accounting on (default)",
        "Bulkhead, 10,000 devices bound to ports (the sender to its own), accounting on",
    ];
    if offloaded.offload.is_some() {
        variants.push("Bulkhead, 10,000 devices, accounting on, flowtable (default where the kernel has one)");
    }
    let n = variants.len();
    let mut tcp: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut udp: Vec<Vec<f64>> = vec![Vec::new(); n];
    let rounds = std::env::var("FIREWALL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    for _ in 0..rounds {
        for i in 0..n {
            router.exec(&["nft", "delete", "table", "inet", "bulkhead"]).ok();
            router.exec(&["nft", "delete", "table", "bridge", "bulkhead"]).ok();
            if i == 4 {
                // As the daemon does it: the replace, then the counter flag.
                router.run_in(|| nft.apply(&full_offloaded))??;
                let devices: Vec<&str> = facts.present.keys().map(String::as_str).collect();
                router.run_in(|| nft.count_offloaded(render::offload::FLOWTABLE, &devices))??;
            } else if i == 3 {
                router.run_in(|| nft.apply(&full_bound))??;
            } else if i > 0 {
                router.run_in(|| nft.apply(&full))??;
            }
            let acct = if i >= 2 { "1" } else { "0" };
            router.exec(&["sysctl", "-qw", &format!("net.netfilter.nf_conntrack_acct={acct}")])?;
            tcp[i].push(iperf(&demo, 3)?);
            udp[i].push(iperf_udp_pps(&demo, 3)? / 1000.0);
        }
    }
    isp.stop_tracked(server)?;
    println!(
        "\n## Throughput, laptop -> router -> internet host (iperf3, 3 s runs, {rounds} rounds, the variants in turn)\n"
    );
    println!("| path | TCP median | TCP runs (Gbit/s) | UDP 100 B median | UDP runs (k packets/s) |");
    println!("| --- | ---: | --- | ---: | --- |");
    for (i, name) in variants.iter().enumerate() {
        println!(
            "| {name} | {:.2} Gbit/s | {} | {:.0} kpps | {} |",
            median(tcp[i].clone()),
            fmt_runs(&tcp[i]),
            median(udp[i].clone()),
            fmt_runs(&udp[i])
        );
    }
    let m = |v: &Vec<f64>| median(v.clone());
    println!(
        "\nTCP ratio vs no ruleset: {:.3} accounting off, {:.3} on; on / off: {:.3}",
        m(&tcp[1]) / m(&tcp[0]),
        m(&tcp[2]) / m(&tcp[0]),
        m(&tcp[2]) / m(&tcp[1])
    );
    println!(
        "UDP 100 B ratio vs no ruleset: {:.3} accounting off, {:.3} on; on / off: {:.3}",
        m(&udp[1]) / m(&udp[0]),
        m(&udp[2]) / m(&udp[0]),
        m(&udp[2]) / m(&udp[1])
    );
    println!(
        "port binding (bound / unbound, accounting on): TCP {:.3}, UDP 100 B {:.3}",
        m(&tcp[3]) / m(&tcp[2]),
        m(&udp[3]) / m(&udp[2])
    );
    if n > 4 {
        println!(
            "with the flowtable, ratio vs no ruleset: TCP {:.3}, UDP 100 B {:.3}",
            m(&tcp[4]) / m(&tcp[0]),
            m(&udp[4]) / m(&udp[0])
        );
    } else {
        println!("(no flowtable variant: this kernel has no flowtables)");
    }
    Ok(())
}

/// `FIREWALL_BENCH_VM=1`: the throughput part inside the test VM (Debian's
/// kernel, TCG here: only ratios count).
const VM_ENV: &str = "FIREWALL_BENCH_VM";
const IN_VM_ENV: &str = "FIREWALL_BENCH_IN_VM";

fn in_vm() -> Result<()> {
    bulkhead_netns::vm::available().map_err(anyhow::Error::msg)?;
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm");
    let rounds = std::env::var("FIREWALL_BENCH_ROUNDS").unwrap_or_else(|_| "5".into());
    let (kernel, outcome) = bulkhead_netns::vm::run_self(
        &target,
        &["--throughput-only"],
        &[(IN_VM_ENV, "1"), ("FIREWALL_BENCH_ROUNDS", &rounds)],
        &["nf_flow_table", "nf_flow_table_inet", "nft_flow_offload"],
        Duration::from_secs(1800),
    )
    .context("running the bench in the VM")?;
    println!(
        "(in a VM: {}, Debian kernel {})\n{}",
        outcome.accel, kernel.release, outcome.output
    );
    ensure!(
        outcome.status == Some(0),
        "the bench failed in the VM: {:?}",
        outcome.status
    );
    Ok(())
}

fn fmt_runs(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
}

fn nft_version() -> String {
    std::process::Command::new("nft")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
