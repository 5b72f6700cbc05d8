//! Detection under a flood of refused packets (issue 16): does sampling what
//! the firewall drops slow forwarding for everyone else, and what does it cost
//! the daemon?
//!
//! The demo home with the real daemon. In each round, three runs of iperf3
//! TCP from the laptop (trusted) through the router to the internet host, in
//! this order:
//!
//! - **quiet**: no flood, detection on (the shipped default);
//! - **flood, detection on**: nmap SYN floods (`-T5`, a fixed rate each) from
//!   three devices at once — the plug (iot, same bridge as the laptop) at the
//!   laptop and the router, the camera (iot, other segment) at the laptop, the
//!   stranger (quarantine) at the laptop and the router — every packet refused
//!   by a default-deny rule, so every one passes a `sample` rule;
//! - **flood, detection off**: the same flood after `[detect] enabled = false`
//!   and SIGHUP (no sample rules, no NFLOG reader).
//!
//! Reported: throughput medians and the ratios, the flood's packet rate (from
//! the flooding namespaces' interface counters), the daemon's CPU time per
//! second of flood (from /proc), and how many samples reached the daemon.
//! Both cores of this machine are shared by iperf3, the kernel's forwarding
//! and the three nmap processes, so the "flood vs quiet" ratio includes the
//! flooders' own CPU; "detection on vs off" under the same flood is what
//! sampling costs.
//!
//! Run: `cargo bench -p bulkhead --features demo --bench detect_flood`
//! (`ROUNDS=N`, default 5; `FLOOD_RATE=PPS` per flooder, default 5,000)
//! (figures in BENCHMARKS.md).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::control::{Request, Response};
use bulkhead::demo::DemoHome;
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");
/// Packets per second each flooder is asked for (`FLOOD_RATE` overrides).
const FLOOD_RATE_EACH: u32 = 5_000;
/// How long each flooder's scan lasts at least (the measurement is 4 s plus
/// a start and a stop).
const FLOOD_SECONDS_AT_LEAST: u64 = 12;
const IPERF_SECS: u32 = 4;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn iperf(demo: &DemoHome) -> Result<f64> {
    let out = demo
        .home
        .ns("laptop")?
        .exec(&["iperf3", "-c", "203.0.113.10", "-t", &IPERF_SECS.to_string(), "-J"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 json")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3 result")
}

/// Packets sent by a namespace's interfaces (lo excluded), from /proc/net/dev.
fn tx_packets(demo: &DemoHome, host: &str) -> Result<u64> {
    let out = demo.home.ns(host)?.exec(&["cat", "/proc/net/dev"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sum = 0;
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets …
        let fields: Vec<u64> = counters.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        sum += fields.get(9).copied().context("short /proc/net/dev line")?;
    }
    Ok(sum)
}

/// The daemon's user + system CPU time so far, in seconds.
fn daemon_cpu(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).context("odd /proc/pid/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(ticks as f64 / hz)
}

/// Samples read and NFLOG overruns so far, if detection runs.
fn samples_read(demo: &DemoHome) -> Result<Option<(u64, u64)>> {
    match demo.call(Request::Detect { mac: None })? {
        Response::Detect { report } => Ok(report.map(|r| (r.sampled, r.overruns))),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Who floods whom: every target is refused to that device by its zone.
fn flooders(demo: &DemoHome) -> Result<Vec<(&'static str, Vec<String>)>> {
    let laptop = demo.ipv4("laptop")?.to_string();
    let router = "10.0.1.1".to_string();
    Ok(vec![
        ("plug", vec![laptop.clone(), router.clone()]),
        ("camera", vec![laptop.clone()]),
        ("stranger", vec![laptop, router]),
    ])
}

struct Flood {
    pids: Vec<(&'static str, u32)>,
    tx_before: Vec<u64>,
    started: Instant,
}

fn start_flood(demo: &DemoHome) -> Result<Flood> {
    let rate = std::env::var("FLOOD_RATE").unwrap_or_else(|_| FLOOD_RATE_EACH.to_string());
    let rate_pps: u64 = rate.parse().context("FLOOD_RATE: packets per second")?;
    let mut pids = Vec::new();
    let mut tx_before = Vec::new();
    for (host, targets) in flooders(demo)? {
        tx_before.push(tx_packets(demo, host)?);
        let mut args = vec![
            "-sS",
            "-Pn",
            "-n",
            "-T5",
            "--max-retries",
            "0",
            "--min-rate",
            &rate,
            "--max-rate",
            &rate,
            "-p",
            "1-65535",
        ];
        // nmap scans a target given twice twice: enough passes that the scan
        // outlasts the measurement (about 5 s) at any rate.
        let per_pass = 65_535 * targets.len() as u64;
        let passes = (rate_pps * FLOOD_SECONDS_AT_LEAST).div_ceil(per_pass).max(1);
        for _ in 0..passes {
            args.extend(targets.iter().map(String::as_str));
        }
        let log = demo.dir.join(format!("nmap-{host}.log"));
        let pid = demo.home.ns(host)?.spawn_logged("nmap", &args, &log)?;
        pids.push((host, pid));
    }
    // nmap needs a moment before it sends at its rate.
    std::thread::sleep(Duration::from_millis(700));
    Ok(Flood {
        pids,
        tx_before,
        started: Instant::now(),
    })
}

/// Stops the flood; returns packets per second sent by all flooders.
fn stop_flood(demo: &DemoHome, flood: Flood) -> Result<f64> {
    let secs = flood.started.elapsed().as_secs_f64() + 0.7;
    let mut sent = 0;
    for ((host, pid), before) in flood.pids.into_iter().zip(flood.tx_before) {
        let ns = demo.home.ns(host)?;
        let still_running = ns.wait_tracked(pid, Duration::from_millis(1))?.is_none();
        ensure!(
            still_running,
            "nmap in {host} ended before the iperf3 run did: the flood was shorter than the measurement"
        );
        ns.stop_tracked(pid)?;
        sent += tx_packets(demo, host)? - before;
    }
    Ok(sent as f64 / secs)
}

fn set_detection(demo: &DemoHome, base_config: &str, on: bool) -> Result<()> {
    let text = if on {
        base_config.to_string()
    } else {
        format!("{base_config}\n[detect]\nenabled = false\n")
    };
    std::fs::write(demo.config_path(), text)?;
    demo.signal_daemon(Signal::SIGHUP)?;
    // The reload is applied when the sample rules are there (or gone).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = demo.home.router().exec(&["nft", "list", "table", "inet", "bulkhead"])?;
        let sampling = String::from_utf8_lossy(&out.stdout).contains("log prefix \"bh ");
        if sampling == on && samples_read(demo)?.is_some() == on {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "detection did not turn {} after SIGHUP:\n{}",
            if on { "on" } else { "off" },
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Default)]
struct Variant {
    gbits: Vec<f64>,
    flood_pps: Vec<f64>,
    cpu_per_sec: Vec<f64>,
    samples_per_sec: Vec<f64>,
    overruns: u64,
}

fn measure(demo: &DemoHome, pid: u32, flood: bool, v: &mut Variant) -> Result<()> {
    let samples_before = samples_read(demo)?;
    let cpu_before = daemon_cpu(pid)?;
    let running = if flood { Some(start_flood(demo)?) } else { None };
    let t = Instant::now();
    v.gbits.push(iperf(demo)?);
    let secs = t.elapsed().as_secs_f64();
    v.cpu_per_sec.push((daemon_cpu(pid)? - cpu_before) / secs);
    if let Some(f) = running {
        v.flood_pps.push(stop_flood(demo, f)?);
    }
    if let (Some((a, over_a)), Some((b, over_b))) = (samples_before, samples_read(demo)?) {
        v.samples_per_sec.push((b - a) as f64 / secs);
        v.overruns += over_b - over_a;
    }
    Ok(())
}

fn fmt(v: &[f64], digits: usize) -> String {
    v.iter().map(|x| format!("{x:.digits$}")).collect::<Vec<_>>().join(", ")
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("detect_flood: benchmark");
        return Ok(());
    }
    ensure!(
        bulkhead_netns::is_root(),
        "the flood benchmark builds network namespaces: run as root"
    );
    for tool in ["nmap", "iperf3"] {
        ensure!(
            bulkhead::demo::have(tool),
            "`{tool}` is missing: apt-get install {tool}"
        );
    }
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let demo = DemoHome::build(Path::new(BIN), &[])?;
    let pid = demo.start_daemon()?;
    demo.register_hosts()?;
    let base_config = std::fs::read_to_string(demo.config_path())?;
    let isp = demo.home.isp();
    let server = isp.spawn_logged("iperf3", &["-s", "-B", "203.0.113.10"], &demo.dir.join("iperf3.log"))?;
    std::thread::sleep(Duration::from_millis(300));

    let (mut quiet, mut on, mut off) = (Variant::default(), Variant::default(), Variant::default());
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        set_detection(&demo, &base_config, true)?;
        measure(&demo, pid, false, &mut quiet)?;
        measure(&demo, pid, true, &mut on)?;
        set_detection(&demo, &base_config, false)?;
        measure(&demo, pid, true, &mut off)?;
    }
    isp.stop_tracked(server)?;
    ensure!(
        !on.samples_per_sec.is_empty() && on.samples_per_sec.iter().all(|s| *s > 0.0),
        "every flood with detection on was sampled: {:?}",
        on.samples_per_sec
    );

    let (q, n, f) = (
        median(quiet.gbits.clone()),
        median(on.gbits.clone()),
        median(off.gbits.clone()),
    );
    println!(
        "\n## Forwarding under a flood of refused packets (iperf3 TCP laptop -> internet, {IPERF_SECS} s runs, {rounds} rounds, each: quiet / flood with detection / flood without)\n"
    );
    println!("| run | throughput median | runs (Gbit/s) | flood (packets/s, median) | daemon CPU (median) | samples read/s (median) |");
    println!("| --- | ---: | --- | ---: | ---: | ---: |");
    println!(
        "| quiet, detection on | {q:.2} Gbit/s | {} | 0 | {:.2} % | {:.1} |",
        fmt(&quiet.gbits, 2),
        median(quiet.cpu_per_sec.clone()) * 100.0,
        median(quiet.samples_per_sec.clone())
    );
    println!(
        "| flood, detection on | {n:.2} Gbit/s | {} | {:.0} | {:.2} % | {:.1} |",
        fmt(&on.gbits, 2),
        median(on.flood_pps.clone()),
        median(on.cpu_per_sec.clone()) * 100.0,
        median(on.samples_per_sec.clone())
    );
    println!(
        "| flood, detection off | {f:.2} Gbit/s | {} | {:.0} | {:.2} % | – |",
        fmt(&off.gbits, 2),
        median(off.flood_pps.clone()),
        median(off.cpu_per_sec.clone()) * 100.0,
    );
    println!("\nratio flood with detection / quiet: {:.3}", n / q);
    println!("ratio flood with detection / flood without: {:.3}", n / f);
    println!(
        "daemon CPU per round (flood, detection on): {} %",
        fmt(&on.cpu_per_sec.iter().map(|c| c * 100.0).collect::<Vec<_>>(), 2)
    );
    println!("NFLOG overruns while flooded: {}", on.overruns);
    Ok(())
}
