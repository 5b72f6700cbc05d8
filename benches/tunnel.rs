//! Tunnel throughput benchmark (issue 4; root; builds its own namespaces, removes
//! them after).
//!
//! ```text
//!  lan ns                router ns                        server ns                      behind ns
//!  iperf3 -c  ──veth──  10.0.1.1   192.0.2.1  ──veth──  192.0.2.2                       198.18.0.2
//!  10.0.1.10            client under test (tun)          wireguard-go server wgs         iperf3 -s
//!                       198.18.0.0/24 -> tun             10.64.0.1/24    198.18.0.1 ──veth──┘
//!                       masquerade out of the tun
//! ```
//!
//! Three WireGuard clients run in the router namespace at the same time, each with
//! its own interface, tunnel address and key (one peer each on the server):
//!
//! - **A** Bulkhead's data plane (`TunnelDevice`), in a child process: this
//!   binary started again with `BULKHEAD_BENCH_CHILD=tunnel`, so its CPU time can
//!   be read from `/proc/PID/stat` like the others';
//! - **B** Debian's wireguard-go, configured with `wg set`;
//! - **C** boringtun-cli (crates.io), configured with `wg set` through its UAPI
//!   socket; found through `BORINGTUN_CLI` or `PATH` (`cargo install
//!   boringtun-cli`), reported as not measured when absent.
//!
//! The route to 198.18.0.0/24 is switched from one client's interface to the next
//! between runs: A B C A B C …, iperf3 TCP runs from the lan host to the behind
//! host (upload: the client encrypts the data) and back (`-R`, download: the client
//! decrypts it). Medians, ratios against wireguard-go, and each client process's
//! CPU seconds (user + system, /proc/PID/stat) per GB received by iperf3.
//!
//! - **D** the kernel's WireGuard, where the kernel has it (not this machine's:
//!   `TUNNEL_BENCH_VM=1` runs the whole bench in a VM with Debian's kernel).
//!
//! Run: `cargo bench -p bulkhead --features demo --bench tunnel` (figures in BENCHMARKS.md).
//! `TUNNEL_BENCH_ROUNDS` and `TUNNEL_BENCH_SECS` override the 5 rounds of 5 s.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::config::WgKey;
use bulkhead::tunnel::device::{DeviceConfig, PeerConfig, TunnelDevice};
use bulkhead::tunnel::keys::{format_key, generate_private, parse_key, public_key, write_key_file};
use bulkhead_netns::{eventually, ping, HostSnapshot, Netns};

const SERVER_PORT: u16 = 51820;
const MTU: u16 = 1420;
const CHILD_ENV: &str = "BULKHEAD_BENCH_CHILD";
const BEHIND: &str = "198.18.0.2";

/// The child process: Bulkhead's device in the router namespace (the parent
/// starts it there through `ip netns exec`) until it is signalled.
fn child() -> Result<()> {
    // Gone with the bench, even if the bench dies without cleaning up.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).context("pdeathsig")?;
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} not set"));
    let private = parse_key(&var("BH_BENCH_KEY")?)?;
    let server = parse_key(&var("BH_BENCH_PEER")?)?;
    let endpoint: SocketAddr = var("BH_BENCH_ENDPOINT")?.parse()?;
    let config = DeviceConfig {
        ifname: var("BH_BENCH_IF")?,
        mtu: MTU,
        private_key: private,
        listen_port: None,
        peers: vec![PeerConfig {
            public_key: server,
            preshared_key: None,
            endpoint: Some(endpoint),
            allowed_ips: vec!["0.0.0.0/0".parse()?],
            persistent_keepalive: None,
        }],
    };
    let _device = TunnelDevice::start(&config)?;
    loop {
        std::thread::park();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// CPU seconds used by a process, all its threads (/proc/PID/stat utime + stime).
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("/proc stat")?;
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After the command: state (not a number, so filtered out), ppid, …; utime is
    // field 14 and stime field 15 of the whole line.
    let ticks: f64 = f.get(10..12).context("/proc stat fields")?.iter().sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok(ticks / hz)
}

struct Topology {
    lan: Netns,
    router: Netns,
    server: Netns,
    behind: Netns,
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    Ok(())
}

fn topology() -> Result<Topology> {
    let t = Topology {
        lan: Netns::new("tlan")?,
        router: Netns::new("trouter")?,
        server: Netns::new("tserver")?,
        behind: Netns::new("tbehind")?,
    };
    veth(&t.lan, "l0", &t.router, "l1")?;
    veth(&t.router, "w0", &t.server, "w1")?;
    veth(&t.server, "s0", &t.behind, "b0")?;
    t.lan.ip_batch(&[
        "addr add 10.0.1.10/24 dev l0",
        "link set l0 up",
        "route add default via 10.0.1.1",
    ])?;
    t.router.ip_batch(&[
        "addr add 10.0.1.1/24 dev l1",
        "link set l1 up",
        "addr add 192.0.2.1/24 dev w0",
        "link set w0 up",
    ])?;
    t.server.ip_batch(&[
        "addr add 192.0.2.2/24 dev w1",
        "link set w1 up",
        "addr add 198.18.0.1/24 dev s0",
        "link set s0 up",
    ])?;
    t.behind.ip_batch(&[
        "addr add 198.18.0.2/24 dev b0",
        "link set b0 up",
        "route add default via 198.18.0.1",
    ])?;
    for ns in [&t.router, &t.server] {
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    }
    Ok(t)
}

/// Writes a key to a 0600 file for `wg set … private-key FILE`.
fn key_file(dir: &Path, name: &str, key: &WgKey) -> Result<PathBuf> {
    let path = dir.join(name);
    write_key_file(&path, key, true)?;
    Ok(path)
}

fn wait_for_socket(ifname: &str) -> Result<()> {
    let sock = format!("/var/run/wireguard/{ifname}.sock");
    ensure!(
        eventually(Duration::from_secs(10), || Ok(Path::new(&sock).exists()))?,
        "{sock} did not appear"
    );
    Ok(())
}

fn wg_set(ns: &Netns, args: &[&str]) -> Result<()> {
    let mut all = vec!["wg", "set"];
    all.extend_from_slice(args);
    ns.exec(&all).with_context(|| format!("wg set {}", args.join(" ")))?;
    Ok(())
}

/// One client under test.
struct Client {
    label: &'static str,
    name: String,
    ifname: String,
    /// The process doing the work; `None` for the kernel's WireGuard (its
    /// work runs in softirq and kworkers, which no process owns).
    pid: Option<u32>,
}

/// The UAPI sockets the userspace implementations leave in the (shared)
/// /var/run/wireguard; removed on drop.
struct Sockets(Vec<String>);

impl Drop for Sockets {
    fn drop(&mut self) {
        for ifname in &self.0 {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{ifname}.sock"));
        }
    }
}

fn boringtun_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BORINGTUN_CLI") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("boringtun-cli"))
            .find(|p| p.is_file())
    })
}

fn version(program: &Path, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// lan → behind: the client encrypts the data.
    Upload,
    /// behind → lan (`-R`): the client decrypts the data.
    Download,
}

struct Run {
    gbps: f64,
    bytes: f64,
    cpu: f64,
    retransmits: f64,
}

fn iperf(lan: &Netns, secs: u32, dir: Direction) -> Result<(f64, f64, f64)> {
    let secs = secs.to_string();
    let mut args = vec!["iperf3", "-c", BEHIND, "-t", &secs, "-J"];
    if dir == Direction::Download {
        args.push("-R");
    }
    let out = lan.exec(&args)?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 json")?;
    let recv = &v["end"]["sum_received"];
    let gbps = recv["bits_per_second"].as_f64().context("iperf3 result")? / 1e9;
    let bytes = recv["bytes"].as_f64().context("iperf3 bytes")?;
    let retransmits = v["end"]["sum_sent"]["retransmits"].as_f64().unwrap_or(f64::NAN);
    Ok((gbps, bytes, retransmits))
}

fn measure(t: &Topology, c: &Client, secs: u32, dir: Direction) -> Result<Run> {
    t.router.ip(&["route", "replace", "198.18.0.0/24", "dev", &c.ifname])?;
    let cpu_now = || -> Result<f64> {
        match c.pid {
            Some(pid) => cpu_secs(pid).with_context(|| format!("{} is not running", c.name)),
            None => Ok(f64::NAN),
        }
    };
    let before = cpu_now()?;
    let (gbps, bytes, retransmits) = iperf(&t.lan, secs, dir)?;
    let cpu = cpu_now()? - before;
    Ok(Run {
        gbps,
        bytes,
        cpu,
        retransmits,
    })
}

fn main() -> Result<()> {
    if std::env::var(CHILD_ENV).is_ok_and(|v| v == "tunnel") {
        return child();
    }
    if std::env::args().any(|a| a == "--list") {
        println!("tunnel: benchmark");
        return Ok(());
    }
    ensure!(
        bulkhead_netns::is_root(),
        "the tunnel benchmark builds network namespaces: run as root"
    );
    for tool in ["wireguard-go", "wg", "iperf3", "nft"] {
        ensure!(bulkhead::demo::have(tool), "`{tool}` is missing");
    }
    let env_num = |k: &str, default: u32| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    if std::env::var_os(VM_ENV).is_some() && std::env::var_os(IN_VM_ENV).is_none() {
        return in_vm(env_num("TUNNEL_BENCH_ROUNDS", 3), env_num("TUNNEL_BENCH_SECS", 5));
    }
    let rounds = env_num("TUNNEL_BENCH_ROUNDS", 5) as usize;
    let secs = env_num("TUNNEL_BENCH_SECS", 5);
    let host_before = HostSnapshot::take()?;
    let t0 = Instant::now();
    let result = run(rounds, secs);
    println!("\ntotal time: {:.0} s", t0.elapsed().as_secs_f64());
    let host_after = HostSnapshot::take()?;
    if let Some(diff) = host_before.diff(&host_after) {
        bail!("the host namespace changed during the benchmark:\n{diff}");
    }
    result
}

/// `TUNNEL_BENCH_VM=1`: the whole bench again inside a VM with Debian's
/// kernel (the test harness's runner), where the kernel's WireGuard is client
/// D. TCG emulates the CPU, so every client is slower: only ratios count.
const VM_ENV: &str = "TUNNEL_BENCH_VM";
const IN_VM_ENV: &str = "TUNNEL_BENCH_IN_VM";

fn in_vm(rounds: u32, secs: u32) -> Result<()> {
    bulkhead_netns::vm::available().map_err(anyhow::Error::msg)?;
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm");
    let (rounds, secs) = (rounds.to_string(), secs.to_string());
    let (kernel, outcome) = bulkhead_netns::vm::run_self(
        &target,
        &[],
        &[
            (IN_VM_ENV, "1"),
            ("TUNNEL_BENCH_ROUNDS", &rounds),
            ("TUNNEL_BENCH_SECS", &secs),
        ],
        &["wireguard", "tun"],
        Duration::from_secs(1500),
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

fn run(rounds: usize, secs: u32) -> Result<()> {
    let tag = std::process::id() % 100_000;
    let dir = std::env::temp_dir().join(format!("bh-tunnel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in_dir(rounds, secs, tag, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in_dir(rounds: usize, secs: u32, tag: u32, dir: &Path) -> Result<()> {
    let wgs = format!("bhts{tag}");
    let if_a = format!("bhta{tag}");
    let if_b = format!("bhtb{tag}");
    let if_c = format!("bhtc{tag}");
    let if_d = format!("bhtd{tag}");
    let _sockets = Sockets(vec![wgs.clone(), if_b.clone(), if_c.clone()]);
    let t = topology()?;

    // Keys: the server and three clients.
    let server_key = generate_private();
    let server_pub = format_key(&public_key(&server_key));
    let keys: Vec<WgKey> = (0..4).map(|_| generate_private()).collect();
    let server_file = key_file(dir, "server.key", &server_key)?;
    let endpoint = format!("192.0.2.2:{SERVER_PORT}");

    // The server: wireguard-go, one peer per client.
    t.server.spawn_logged(
        "env",
        &["WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", &wgs],
        &dir.join("server.log"),
    )?;
    wait_for_socket(&wgs)?;
    let port = SERVER_PORT.to_string();
    let peers: Vec<String> = keys.iter().map(|k| format_key(&public_key(k))).collect();
    let server_file_s = server_file.display().to_string();
    wg_set(
        &t.server,
        &[
            &wgs,
            "private-key",
            &server_file_s,
            "listen-port",
            &port,
            "peer",
            &peers[0],
            "allowed-ips",
            "10.64.0.2/32",
            "peer",
            &peers[1],
            "allowed-ips",
            "10.64.0.3/32",
            "peer",
            &peers[2],
            "allowed-ips",
            "10.64.0.4/32",
            "peer",
            &peers[3],
            "allowed-ips",
            "10.64.0.5/32",
        ],
    )?;
    t.server.ip_batch(&[
        format!("addr add 10.64.0.1/24 dev {wgs}"),
        format!("link set {wgs} mtu {MTU}"),
        format!("link set {wgs} up"),
    ])?;
    t.behind
        .spawn_logged("iperf3", &["-s", "-B", BEHIND], &dir.join("iperf3.log"))?;

    let mut clients = Vec::new();
    let mut missing = Vec::new();

    // A: Bulkhead's device, in a child process (this binary again).
    let exe = std::env::current_exe()?.display().to_string();
    let pid = t.router.spawn_logged(
        "env",
        &[
            &format!("{CHILD_ENV}=tunnel"),
            &format!("BH_BENCH_IF={if_a}"),
            &format!("BH_BENCH_KEY={}", format_key(&keys[0])),
            &format!("BH_BENCH_PEER={server_pub}"),
            &format!("BH_BENCH_ENDPOINT={endpoint}"),
            &exe,
        ],
        &dir.join("bulkhead.log"),
    )?;
    ensure!(
        eventually(Duration::from_secs(10), || t
            .router
            .exec_ok(&["ip", "link", "show", &if_a]))?,
        "Bulkhead's device did not create {if_a}"
    );
    t.router.ip_batch(&[
        format!("addr add 10.64.0.2/32 dev {if_a}"),
        format!("link set {if_a} up"),
    ])?;
    clients.push(Client {
        label: "A",
        name: "Bulkhead (TunnelDevice)".into(),
        ifname: if_a.clone(),
        pid: Some(pid),
    });

    // B: wireguard-go.
    let b_file = key_file(dir, "b.key", &keys[1])?.display().to_string();
    let pid = t.router.spawn_logged(
        "env",
        &["WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", &if_b],
        &dir.join("wireguard-go.log"),
    )?;
    wait_for_socket(&if_b)?;
    wg_set(
        &t.router,
        &[
            &if_b,
            "private-key",
            &b_file,
            "peer",
            &server_pub,
            "endpoint",
            &endpoint,
            "allowed-ips",
            "0.0.0.0/0",
        ],
    )?;
    t.router.ip_batch(&[
        format!("addr add 10.64.0.3/32 dev {if_b}"),
        format!("link set {if_b} mtu {MTU}"),
        format!("link set {if_b} up"),
    ])?;
    clients.push(Client {
        label: "B",
        name: format!("wireguard-go ({})", version(Path::new("wireguard-go"), "--version")),
        ifname: if_b.clone(),
        pid: Some(pid),
    });

    // C: boringtun-cli.
    match boringtun_cli() {
        None => missing.push("C boringtun-cli: not found (set BORINGTUN_CLI or put it in PATH)".to_string()),
        Some(cli) => {
            let c_file = key_file(dir, "c.key", &keys[2])?.display().to_string();
            let cli_s = cli.display().to_string();
            let pid = t.router.spawn_logged(
                "env",
                &[
                    "WG_LOG_FILE=/dev/stderr",
                    &cli_s,
                    "-f",
                    "--disable-drop-privileges",
                    &if_c,
                ],
                &dir.join("boringtun.log"),
            )?;
            match wait_for_socket(&if_c) {
                Err(e) => {
                    let log = std::fs::read_to_string(dir.join("boringtun.log")).unwrap_or_default();
                    missing.push(format!("C boringtun-cli: did not start ({e}): {}", log.trim()));
                }
                Ok(()) => {
                    wg_set(
                        &t.router,
                        &[
                            &if_c,
                            "private-key",
                            &c_file,
                            "peer",
                            &server_pub,
                            "endpoint",
                            &endpoint,
                            "allowed-ips",
                            "0.0.0.0/0",
                        ],
                    )?;
                    t.router.ip_batch(&[
                        format!("addr add 10.64.0.4/32 dev {if_c}"),
                        format!("link set {if_c} mtu {MTU}"),
                        format!("link set {if_c} up"),
                    ])?;
                    clients.push(Client {
                        label: "C",
                        name: format!("boringtun-cli ({})", version(&cli, "--version")),
                        ifname: if_c.clone(),
                        pid: Some(pid),
                    });
                }
            }
        }
    }

    // D: the kernel's WireGuard, where the kernel has it (the VM's Debian
    // kernel; this machine's has no module).
    if t.router.ip(&["link", "add", &if_d, "type", "wireguard"]).is_ok() {
        let d_file = key_file(dir, "d.key", &keys[3])?.display().to_string();
        wg_set(
            &t.router,
            &[
                &if_d,
                "private-key",
                &d_file,
                "peer",
                &server_pub,
                "endpoint",
                &endpoint,
                "allowed-ips",
                "0.0.0.0/0",
            ],
        )?;
        t.router.ip_batch(&[
            format!("addr add 10.64.0.5/32 dev {if_d}"),
            format!("link set {if_d} mtu {MTU}"),
            format!("link set {if_d} up"),
        ])?;
        clients.push(Client {
            label: "D",
            name: "the kernel's WireGuard".into(),
            ifname: if_d.clone(),
            pid: None,
        });
    } else {
        missing.push(
            "D the kernel's WireGuard: this kernel has none (TUNNEL_BENCH_VM=1 runs the bench in a VM with Debian's)"
                .to_string(),
        );
    }

    // The lan's address leaves each tunnel masqueraded to that client's tunnel
    // address (the same rule for all three).
    let ifs: Vec<String> = clients.iter().map(|c| format!("\"{}\"", c.ifname)).collect();
    let nat = format!(
        "add table ip bhbench\n\
         add chain ip bhbench post {{ type nat hook postrouting priority 100; }}\n\
         add rule ip bhbench post oifname {{ {} }} masquerade\n",
        ifs.join(", ")
    );
    let script = dir.join("nat.nft");
    std::fs::write(&script, nat)?;
    t.router.exec(&["nft", "-f", &script.display().to_string()])?;

    // Every client: handshake, then the path works end to end.
    let behind: IpAddr = BEHIND.parse()?;
    for c in &clients {
        t.router.ip(&["route", "replace", "198.18.0.0/24", "dev", &c.ifname])?;
        ensure!(
            eventually(Duration::from_secs(15), || ping(&t.lan, behind, Duration::from_secs(1)))?,
            "lan -> behind through {} does not work",
            c.name
        );
        // Warm-up (sessions, TCP caches), not measured; the first one also
        // waits for the iperf3 server to listen.
        let mut tries = 0;
        while let Err(e) = iperf(&t.lan, 1, Direction::Upload) {
            tries += 1;
            ensure!(tries < 10, "iperf3 through {}: {e:#}", c.name);
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    let dirs = [Direction::Upload, Direction::Download];
    // runs[dir][client]
    let mut runs: Vec<Vec<Vec<Run>>> = dirs
        .iter()
        .map(|_| clients.iter().map(|_| Vec::new()).collect())
        .collect();
    for round in 0..rounds {
        for (d, &dir) in dirs.iter().enumerate() {
            for (i, c) in clients.iter().enumerate() {
                let r = measure(&t, c, secs, dir)?;
                eprintln!(
                    "round {} {} {}: {:.2} Gbit/s, {:.2} CPU s",
                    round + 1,
                    if dir == Direction::Upload { "up" } else { "down" },
                    c.label,
                    r.gbps,
                    r.cpu
                );
                runs[d][i].push(r);
            }
        }
    }

    println!(
        "\n## Tunnel throughput, lan -> router (client) -> wireguard-go server -> behind \
         (iperf3 TCP, {secs} s runs, {rounds} rounds, the clients alternating, MTU {MTU})\n"
    );
    for c in &clients {
        println!("- {} = {}", c.label, c.name);
    }
    for m in &missing {
        println!("- not measured: {m}");
    }
    let wg = clients.iter().position(|c| c.label == "B");
    let kernel = clients.iter().position(|c| c.label == "D");
    println!("\n| direction | client | median | vs wireguard-go | vs kernel | CPU s/GB (median) | retransmits (median) | runs (Gbit/s) |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for (d, &dir) in dirs.iter().enumerate() {
        let med_of = |i: usize| median(runs[d][i].iter().map(|r| r.gbps).collect());
        let wg_median = wg.map(med_of);
        let kernel_median = kernel.map(med_of);
        for (i, c) in clients.iter().enumerate() {
            let v = &runs[d][i];
            let med = median(v.iter().map(|r| r.gbps).collect());
            let cpu_gb = median(v.iter().map(|r| r.cpu / (r.bytes / 1e9)).collect());
            let cpu_gb = if cpu_gb.is_nan() {
                "n/a".to_string()
            } else {
                format!("{cpu_gb:.2}")
            };
            let retr = median(v.iter().map(|r| r.retransmits).collect());
            let ratio = wg_median.map(|w| format!("{:.3}", med / w)).unwrap_or_default();
            let vs_kernel = kernel_median.map(|k| format!("{:.3}", med / k)).unwrap_or_default();
            println!(
                "| {} | {} {} | {med:.2} Gbit/s | {ratio} | {vs_kernel} | {cpu_gb} | {retr:.0} | {} |",
                if dir == Direction::Upload {
                    "upload (client encrypts)"
                } else {
                    "download (client decrypts)"
                },
                c.label,
                c.name,
                v.iter()
                    .map(|r| format!("{:.2}", r.gbps))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}
