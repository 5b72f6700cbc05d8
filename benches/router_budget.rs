//! The router budget (issue 13, item 8; root; builds its own namespaces).
//!
//! 1. **Flash writes in steady state**: the demo home joins (DHCP, SLAAC, mDNS,
//!    as after a power cut), settles for a minute, then for `BUDGET_SECS`
//!    (600) nothing changes but what devices do by themselves (lease
//!    renewals, mDNS, traffic). Measured over that window: the daemon's
//!    `/proc/PID/io` (`write_bytes`: what reached the block layer; `syscw`
//!    and `wchar`: every write call, sockets and its log included) and, per
//!    file of its state directory (flash on a router), how often it was
//!    written (`inotifywait`: modify and close-after-write events, creates,
//!    renames; SQLite's database, WAL and shared-memory files listed apart).
//! 2. **Resident memory with 1,000 devices**, with the resolver on (the
//!    default) and off: VmRSS idle with the demo's devices, then after 1,000
//!    more added through the control socket (a name for three in four, an
//!    IPv6 address each), and the high-water mark.
//!
//! Run: `cargo bench -p bulkhead --features demo --bench router_budget`
//! (`apt-get install inotify-tools`). Figures in BENCHMARKS.md.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::config::MacAddr;
use bulkhead::control::{Request, Response};
use bulkhead::demo::DemoHome;
use bulkhead_netns::HostSnapshot;

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");
const DEVICES: usize = 1_000;

fn main() -> Result<()> {
    ensure!(
        bulkhead_netns::is_root(),
        "the budget benchmark builds namespaces and needs root"
    );
    ensure!(
        Command::new("sh")
            .args(["-c", "command -v inotifywait"])
            .output()?
            .status
            .success(),
        "`inotifywait` is missing (apt-get install inotify-tools)"
    );
    let before = HostSnapshot::take()?;
    let result = flash_writes().and_then(|()| memory(true)).and_then(|()| memory(false));
    let after = HostSnapshot::take()?;
    ensure!(before == after, "the host namespace changed during the benchmark");
    result
}

/// `/proc/PID/io` fields.
fn io(pid: u32) -> Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

fn flash_writes() -> Result<()> {
    let window = Duration::from_secs(
        std::env::var("BUDGET_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let demo = DemoHome::build_discovering(std::path::Path::new(BIN), &[])?;
    let pid = demo.start_daemon()?;
    demo.start_router_adverts()?;
    demo.join_all()?;
    eprintln!("joined; settling for 60 s");
    std::thread::sleep(Duration::from_secs(60));

    let state = demo.dir.join("state");
    let mut watch = Command::new("inotifywait")
        .args([
            "-m",
            "-r",
            "-q",
            "-e",
            "modify,close_write,create,moved_to,delete",
            "--format",
            "%e %f",
        ])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("inotifywait")?;
    ensure!(
        state.join("bulkhead.db").exists(),
        "no database in {} to watch",
        state.display()
    );
    let stdout = watch.stdout.take().context("inotifywait's output")?;
    // Events as they come, with when: the window's are counted, the control's
    // (after it) prove the watch sees writes.
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String, String)>>> = Default::default();
    let sink = std::sync::Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((event, file)) = line.split_once(' ') {
                if let Ok(mut v) = sink.lock() {
                    v.push((Instant::now(), file.to_string(), event.to_string()));
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let io_before = io(pid)?;
    let t = Instant::now();
    eprintln!("measuring for {} s", window.as_secs());
    std::thread::sleep(window);
    let io_after = io(pid)?;
    let window_end = Instant::now();
    let secs = t.elapsed().as_secs_f64();
    // The control: the homeowner renames a device, which the store writes.
    let plug = bulkhead::demo::HOSTS
        .iter()
        .find(|h| h.name == "plug")
        .map(|h| MacAddr(h.mac))
        .context("no plug in the demo")?;
    demo.call(Request::Rename {
        mac: plug,
        name: Some("budget control".into()),
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    let all = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("the inotify reader panicked"))?
        .clone();
    let control = all.iter().filter(|(at, _, _)| *at > window_end).count();
    ensure!(
        control > 0,
        "the watch saw nothing of the control write: it cannot be trusted"
    );
    let mut events: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (at, file, event) in &all {
        if *at >= t && *at <= window_end {
            *events.entry((file.clone(), event.clone())).or_default() += 1;
        }
    }

    let minutes = secs / 60.0;
    println!("## Steady state, {secs:.0} s (demo home, 7 devices joined)");
    println!("| /proc/PID/io | total | per minute |");
    println!("|---|---:|---:|");
    for k in ["write_bytes", "wchar", "syscw", "read_bytes"] {
        let d = io_after.get(k).copied().unwrap_or(0) - io_before.get(k).copied().unwrap_or(0);
        println!("| {k} | {d} | {:.1} |", d as f64 / minutes);
    }
    println!();
    println!("| state file | event | count | per minute |");
    println!("|---|---|---:|---:|");
    if events.is_empty() {
        println!("| (none) | | 0 | 0 |");
    }
    for ((file, event), n) in &events {
        println!("| {file} | {event} | {n} | {:.2} |", *n as f64 / minutes);
    }
    let writes: u64 = events
        .iter()
        .filter(|((_, e), _)| e.contains("CLOSE_WRITE") || e.contains("MOVED_TO"))
        .map(|(_, n)| n)
        .sum();
    let modifies: u64 = events
        .iter()
        .filter(|((_, e), _)| e.contains("MODIFY"))
        .map(|(_, n)| n)
        .sum();
    println!();
    println!(
        "files written and closed or renamed into place: {writes} ({:.2}/min); modify events (each write call): {modifies} ({:.2}/min); the control (a rename after the window): {control} events",
        writes as f64 / minutes,
        modifies as f64 / minutes
    );
    Ok(())
}

fn memory(dns: bool) -> Result<()> {
    let demo = DemoHome::build(std::path::Path::new(BIN), &[])?;
    if !dns {
        let path = demo.config_path();
        let cfg = std::fs::read_to_string(&path)?;
        ensure!(!cfg.contains("[dns]"), "the demo's config has a [dns] table already");
        std::fs::write(&path, cfg + "\n[dns]\nenabled = false\n")?;
    }
    let pid = demo.start_daemon()?;
    std::thread::sleep(Duration::from_secs(5));
    let idle = status_kib(pid, "VmRSS:")?;
    for i in 0..DEVICES {
        let mac = MacAddr([0x02, 0xbe, 0, 0, (i >> 8) as u8, i as u8]);
        let ip = format!("fd00:1::be:{i:x}").parse().ok();
        match demo.call(Request::AddDevice { mac, ip })? {
            Response::Done { .. } => {}
            other => bail!("adding a device: {other:?}"),
        }
        if i % 4 != 0 {
            let name = format!("device {i} in the {} room", ["living", "kitchen", "attic"][i % 3]);
            let _ = demo.call(Request::Rename { mac, name: Some(name) })?;
        }
    }
    std::thread::sleep(Duration::from_secs(10));
    let full = status_kib(pid, "VmRSS:")?;
    let hwm = status_kib(pid, "VmHWM:")?;
    println!(
        "| resolver {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        if dns { "on" } else { "off" },
        idle as f64 / 1024.0,
        full as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(())
}
