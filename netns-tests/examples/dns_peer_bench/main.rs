//! Side-by-side DNS resolver benchmark in network namespaces (needs root):
//! Bulkhead's resolver (the real `bulkhead` daemon) against dnsmasq.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-dnsbench cargo build --release -p bulkhead   # as shipped
//! cargo run -p bulkhead-netns --example dns_peer_bench -- [--rounds 3] [--seconds 5]
//!     [--rate 10000] [--clients 4] [--bulk 100000] [--hit-names 1000]
//!     [--a-cache 10000] [--b bulkhead|dnsmasq] [--b-cache 10000]
//!     [--bulkhead PATH] [--policies DIR] [--bulkhead-dns 'KEY = VALUE']...
//!     [--sources N] [--quiet-wait S] [--max-other-load CORES] [--keep] [--only hit,miss,fixed]
//!     [--a-firewall]
//! ```
//!
//! (A debug build of the example is fine: it only drives external processes.
//! Avoid `--release` for the example while it is being changed: the
//! workspace's release profile aborts on panic, which skips the namespaces'
//! cleanup; a later run removes what a dead run left, see
//! `Netns::cleanup_stale`. The daemon, though, is benchmarked as it ships: the
//! release binary, `--bulkhead PATH` or `$BULKHEAD_BIN`, default
//! `/tmp/target-dnsbench/release/bulkhead`, with the policies of the same
//! version, `--policies DIR`: a newer shipped policy file can be one an older
//! binary rejects.) Results and findings: BENCHMARKS.md, "DNS resolver vs
//! dnsmasq (issue 11)".
//!
//! Topology, all in namespaces this program creates and removes:
//!
//! ```text
//!  client ns                resolver ns                        upstream ns
//!  eth0 10.53.1.2/24 <-veth-> eth0 10.53.1.1/24  (A or B on :53)
//!  02:53:00:00:01:02        up0  10.53.2.2/24  <-veth-> down0 10.53.2.1/24
//!  (--sources N: 10.53.1.10+) 192.0.2.53 via 10.53.2.1         lo 192.0.2.53 (unbound)
//! ```
//!
//! The upstream is an authoritative unbound serving `TestZones::with_bulk(N)`.
//! Two contenders, A and B, run in turn in the resolver namespace, each started
//! afresh (cold cache) for every measured run, alternating A B A B for the
//! given number of rounds. For each contender and round:
//!
//! - cache hit: after a warm-up (two passes over the hit names), the same
//!   `--hit-names` names repeated for `--seconds`, as fast as answers come;
//! - cache miss: names never asked before (`-n 1`: each sent once), as fast as
//!   answers come; the run ends early if the names run out;
//! - fixed rate: fresh names at `--rate` queries per second (`dnsperf -Q`),
//!   with latency percentiles (from `dnsperf -v`), reporting lost queries.
//!
//! Around each measured run it reads the contender's CPU time
//! (`/proc/PID/stat`, user + system, all threads), dnsperf's (this program's
//! reaped children), unbound's, the machine's (`/proc/stat`: busy, softirq,
//! idle) and the resolver namespace's `UdpRcvbufErrors`; after it, the
//! contender's resident memory (`VmRSS`, `VmHWM`), also read once it first
//! answered. The machine is shared: before each run it waits for the machine
//! to be idle (`--quiet-wait`), and a run during which other work took more
//! than `--max-other-load` cores is measured again (up to 3 times; the table
//! of every run shows that load). It prints the medians over the rounds and
//! B/A ratios as a markdown table, then every run.
//!
//! A is dnsmasq (`--a-cache`). B is, by default, Bulkhead's daemon run as
//! `bulkhead --config CONFIG daemon` in the resolver namespace: WAN `up0`, one
//! segment `lan` on `eth0` (10.53.1.1/24, DHCP off), no web UI, `[dns]`
//! listening on 10.53.1.1:53 with the unbound upstream, `cache_entries` =
//! `--b-cache`, `client_qps = 100000` (the default 200 per client would
//! throttle dnsperf; 100,000 is the most the config accepts, and dnsperf from
//! one address asks faster than that from the cache: `--sources 4` spreads it
//! over four addresses of the one device) and `bypass = "off"`; the policies
//! are the shipped ones plus the client's MAC pinned to `trusted` (an unknown
//! device is in the quarantine zone, which resolves no internet name), and the
//! client's addresses are told to the daemon (`bulkhead device add MAC --ip
//! IP`). `bulkhead check-config` runs first; after each run `bulkhead dns
//! status` is printed (its `over rate` counter is the rate limiter's drops).
//! The daemon applies its firewall in the resolver namespace (so its runs pay
//! for nftables and connection tracking, as on a router); it leaves its tables
//! when it stops, so they are removed after each of its runs and dnsmasq always
//! runs without them. `--b dnsmasq` makes B a second dnsmasq (`--b-cache`)
//! instead.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_netns::dns::{
    self, Dnsmasq, Dnsperf, DnsperfResult, ScratchDir, TestZones, Unbound, RCODE_NOERROR, TYPE_A,
};
use bulkhead_netns::{Error, Netns, Result};

mod contenders;
mod procstat;
mod report;
use contenders::*;
use procstat::*;
use report::*;

/// Where the contenders answer.
const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 53, 1, 1);
/// The prefix length of the client-facing subnet.
const RESOLVER_PREFIX: u8 = 24;
/// The client (dnsperf's source address).
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 53, 1, 2);
/// The first of the extra source addresses of `--sources N` (N > 1).
const FIRST_SOURCE: u8 = 10;
/// The client's MAC (fixed, so Bulkhead's policy can pin it).
const CLIENT_MAC: &str = "02:53:00:00:01:02";
/// The resolver namespace's interface towards the client (Bulkhead's segment).
const LAN_IF: &str = "eth0";
/// The resolver namespace's interface towards the upstream (Bulkhead's WAN).
const WAN_IF: &str = "up0";
/// The upstream's address (a documentation address: "a public server").
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// Where the Bulkhead binary is looked for without `--bulkhead` or `$BULKHEAD_BIN`.
const DEFAULT_BULKHEAD: &str = "/tmp/target-dnsbench/release/bulkhead";
/// How long Bulkhead gets to start (store, firewall, links) and answer.
const BULKHEAD_READY: Duration = Duration::from_secs(20);
/// Tries per measured run when other work disturbed it (`--max-other-load`).
const MAX_ATTEMPTS: u32 = 3;
/// `/proc/PID/stat` counts CPU time in these per second (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// Which resolver B is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Bulkhead,
    Dnsmasq,
}

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    rounds: usize,
    seconds: u32,
    rate: u32,
    clients: u32,
    bulk: usize,
    hit_names: usize,
    a_cache: u32,
    b: Peer,
    b_cache: u32,
    bulkhead: PathBuf,
    policies: PathBuf,
    bulkhead_dns: Vec<String>,
    sources: u8,
    quiet_wait: u32,
    max_other_load: f64,
    keep: bool,
    /// Only these workloads (`--only`; all by default).
    only: Vec<Kind>,
    /// A runs behind the ruleset B's daemon leaves (`--a-firewall`).
    a_firewall: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            rounds: 3,
            seconds: 5,
            rate: 10_000,
            clients: 4,
            bulk: 100_000,
            hit_names: 1000,
            a_cache: 10_000,
            b: Peer::Bulkhead,
            b_cache: 10_000,
            bulkhead: std::env::var_os("BULKHEAD_BIN").map_or_else(|| PathBuf::from(DEFAULT_BULKHEAD), PathBuf::from),
            policies: Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
            bulkhead_dns: Vec::new(),
            sources: 1,
            quiet_wait: 300,
            max_other_load: 0.1,
            keep: false,
            only: Kind::ALL.to_vec(),
            a_firewall: false,
        }
    }
}

const USAGE: &str = "usage: dns_peer_bench [--rounds N] [--seconds S] [--rate QPS] [--clients C] \
[--bulk NAMES] [--hit-names N] [--a-cache N] [--b bulkhead|dnsmasq] [--b-cache N] [--bulkhead PATH] [--policies DIR] \
[--bulkhead-dns 'KEY = VALUE']... [--sources N] [--quiet-wait S] [--max-other-load CORES] [--keep] [--only hit,miss,fixed] [--a-firewall]
  --rounds        A B rounds, medians over them (3)
  --seconds       length of each measured run (5)
  --rate          queries per second of the fixed-rate run (10000)
  --clients       dnsperf clients (-c) (4)
  --bulk          names in the upstream's bulk.test zone (100000)
  --hit-names     names repeated in the cache-hit run (1000)
  --a-cache       contender A's (dnsmasq) cache size (10000)
  --b             contender B: bulkhead (default) or dnsmasq
  --b-cache       contender B's cache size: Bulkhead's dns.cache_entries or dnsmasq's (10000)
  --bulkhead      the bulkhead binary ($BULKHEAD_BIN, else /tmp/target-dnsbench/release/bulkhead)
  --policies      the shipped policies copied for Bulkhead: those of the binary's version
                  (default: the repository's policies/)
  --bulkhead-dns  one more line for Bulkhead's [dns] section (repeatable), e.g. 'query_log_entries = 0'
  --sources       client source addresses (1): with N > 1 the client namespace NATs each new
                  dnsperf socket to the next of N addresses (10.53.1.10 up), all one device's
  --quiet-wait    before each measured run, wait up to S seconds for the machine to be idle
                  (under 15 % busy over 1 s: other work on a shared machine skews runs) (300)
  --max-other-load  a run during which other work took more cores than this (on average) is
                  measured again, up to 3 times in all (0.1)
  --keep          keep the work directory (logs, configuration)
  --only          only these workloads, comma-separated: hit, miss, fixed (all)
  --a-firewall    A (dnsmasq) runs behind the ruleset Bulkhead's daemon installs in the same
                  namespace (saved from an unmeasured start of B before the rounds): both
                  resolvers' packets then pay the same conntrack and chains";

fn parse_args(mut argv: impl Iterator<Item = String>) -> std::result::Result<Args, String> {
    fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> std::result::Result<T, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
        value.parse().map_err(|_| format!("{flag}: not a number: {value:?}"))
    }
    let mut args = Args::default();
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "--rounds" => args.rounds = number(&flag, argv.next())?,
            "--seconds" => args.seconds = number(&flag, argv.next())?,
            "--rate" => args.rate = number(&flag, argv.next())?,
            "--clients" => args.clients = number(&flag, argv.next())?,
            "--bulk" => args.bulk = number(&flag, argv.next())?,
            "--hit-names" => args.hit_names = number(&flag, argv.next())?,
            "--a-cache" => args.a_cache = number(&flag, argv.next())?,
            "--b" => {
                args.b = match argv.next().as_deref() {
                    Some("bulkhead") => Peer::Bulkhead,
                    Some("dnsmasq") => Peer::Dnsmasq,
                    other => return Err(format!("--b: expected bulkhead or dnsmasq, not {other:?}")),
                }
            }
            "--b-cache" => args.b_cache = number(&flag, argv.next())?,
            "--bulkhead" => args.bulkhead = argv.next().ok_or("--bulkhead needs a path")?.into(),
            "--policies" => args.policies = argv.next().ok_or("--policies needs a directory")?.into(),
            "--bulkhead-dns" => {
                let line = argv.next().ok_or("--bulkhead-dns needs a `KEY = VALUE` line")?;
                if !line.contains('=') || line.contains('\n') {
                    return Err(format!("--bulkhead-dns: not one `KEY = VALUE` line: {line:?}"));
                }
                args.bulkhead_dns.push(line);
            }
            "--sources" => args.sources = number(&flag, argv.next())?,
            "--quiet-wait" => args.quiet_wait = number(&flag, argv.next())?,
            "--max-other-load" => args.max_other_load = number(&flag, argv.next())?,
            "--keep" => args.keep = true,
            "--a-firewall" => args.a_firewall = true,
            "--only" => {
                let list = argv
                    .next()
                    .ok_or("--only needs hit, miss and/or fixed, comma-separated")?;
                args.only = list
                    .split(',')
                    .map(|k| match k {
                        "hit" => Ok(Kind::Hit),
                        "miss" => Ok(Kind::Miss),
                        "fixed" => Ok(Kind::Fixed),
                        other => Err(format!("--only: expected hit, miss or fixed, not {other:?}")),
                    })
                    .collect::<std::result::Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.rounds == 0 || args.seconds == 0 || args.clients == 0 || args.rate == 0 {
        return Err("--rounds, --seconds, --clients and --rate must be at least 1".into());
    }
    if args.a_firewall && args.b != Peer::Bulkhead {
        return Err("--a-firewall needs B to be bulkhead (its ruleset is what A runs behind)".into());
    }
    if args.sources == 0 || args.sources > 100 {
        return Err("--sources must be 1 to 100".into());
    }
    if args.hit_names == 0 || args.hit_names >= args.bulk {
        return Err("--hit-names must be at least 1 and below --bulk (the rest are the fresh names)".into());
    }
    Ok(args)
}

/// What a measured run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hit,
    Miss,
    Fixed,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Hit, Kind::Miss, Kind::Fixed];

    fn name(self, rate: u32) -> String {
        match self {
            Kind::Hit => "cache hit".into(),
            Kind::Miss => "cache miss".into(),
            Kind::Fixed => format!("{rate} QPS, fresh names"),
        }
    }
}

/// One measured run.
struct Sample {
    contender: usize,
    kind: Kind,
    round: usize,
    result: DnsperfResult,
    /// Queries the upstream received during the run (warm-up excluded).
    upstream_queries: u64,
    /// The contender's CPU seconds during the run (warm-up excluded).
    cpu_secs: Option<f64>,
    /// The machine's CPU seconds during the run (dnsperf, the contender, the
    /// kernel, unbound, anything else).
    machine: Option<MachineCpu>,
    /// UDP datagrams the resolver namespace's kernel dropped for a full
    /// receive buffer during the run (`UdpRcvbufErrors`).
    rcvbuf_drops: Option<u64>,
    /// CPU seconds of the upstream (unbound) during the run.
    upstream_cpu: Option<f64>,
    /// Its memory right after the run.
    memory: Option<ProcStats>,
    /// Its memory once it answered, before any load.
    memory_ready: Option<ProcStats>,
}

impl Sample {
    /// Microseconds per answered query of `secs` seconds.
    fn per_answer(&self, secs: Option<f64>) -> Option<f64> {
        let done = self.result.queries_completed;
        secs.filter(|_| done > 0).map(|s| s * 1e6 / done as f64)
    }

    /// The contender's CPU microseconds per answered query.
    fn cpu_per_query(&self) -> Option<f64> {
        self.per_answer(self.cpu_secs)
    }

    /// Cores busy with anything but this benchmark (other work on the
    /// machine) during the run, on average: the machine's busy time less the
    /// contender's, dnsperf's, unbound's and softirq time.
    fn other_load(&self) -> Option<f64> {
        let m = self.machine?;
        let ours = self.cpu_secs? + m.children + self.upstream_cpu? + m.softirq;
        let secs = self.result.run_time.as_secs_f64();
        (secs > 0.0).then(|| ((m.busy - ours) / secs).max(0.0))
    }
}

/// The three namespaces and the upstream.
struct Bench {
    client: Netns,
    resolver: Netns,
    upstream: Netns,
}

/// The client's addresses: its own, and the NAT sources of `--sources N`.
fn client_addresses(sources: u8) -> Vec<Ipv4Addr> {
    let mut all = vec![CLIENT];
    if sources > 1 {
        all.extend((0..sources).map(|i| Ipv4Addr::new(10, 53, 1, FIRST_SOURCE + i)));
    }
    all
}

impl Bench {
    fn build(sources: u8) -> Result<Bench> {
        let client = Netns::new("bench-client")?;
        let resolver = Netns::new("bench-resolver")?;
        let upstream = Netns::new("bench-upstream")?;
        client.ip_batch(&[
            format!(
                "link add {LAN_IF} address {CLIENT_MAC} type veth peer name {LAN_IF} netns {}",
                resolver.name()
            ),
            format!("addr add {CLIENT}/{RESOLVER_PREFIX} dev {LAN_IF}"),
            format!("link set {LAN_IF} up"),
        ])?;
        upstream.ip_batch(&[
            format!("link add down0 type veth peer name {WAN_IF} netns {}", resolver.name()),
            "addr add 10.53.2.1/24 dev down0".to_string(),
            format!("addr add {UPSTREAM}/32 dev lo"),
            "link set down0 up".to_string(),
        ])?;
        resolver.ip_batch(&[
            format!("addr add {RESOLVER}/{RESOLVER_PREFIX} dev {LAN_IF}"),
            format!("addr add 10.53.2.2/24 dev {WAN_IF}"),
            format!("link set {LAN_IF} up"),
            format!("link set {WAN_IF} up"),
            format!("route add {UPSTREAM}/32 via 10.53.2.1"),
        ])?;
        if sources > 1 {
            // Each new flow to the resolver (one per dnsperf socket) leaves from
            // the next source address: several clients of one device, each with
            // its own rate limit in Bulkhead.
            let sources = client_addresses(sources).split_off(1);
            let adds: Vec<String> = sources
                .iter()
                .map(|ip| format!("addr add {ip}/{RESOLVER_PREFIX} dev {LAN_IF}"))
                .collect();
            client.ip_batch(&adds)?;
            let map: Vec<String> = sources
                .iter()
                .enumerate()
                .map(|(i, ip)| format!("{i} : {ip}"))
                .collect();
            let rules = format!(
                "table ip bench_sources {{\n chain post {{\n  type nat hook postrouting priority srcnat; policy accept;\n  \
                 ip daddr {RESOLVER} udp dport 53 snat to numgen inc mod {} map {{ {} }}\n }}\n}}\n",
                sources.len(),
                map.join(", ")
            );
            let file = std::env::temp_dir().join(format!("dns-bench-sources-{}.nft", std::process::id()));
            std::fs::write(&file, rules).map_err(|e| io_error(&file, e))?;
            let loaded = client.exec(&["nft", "-f", &file.display().to_string()]);
            let _ = std::fs::remove_file(&file);
            loaded?;
        }
        Ok(Bench {
            client,
            resolver,
            upstream,
        })
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dns_peer_bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dns_peer_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> std::result::Result<(), String> {
    if !bulkhead_netns::is_root() {
        return Err("needs root (network namespaces)".into());
    }
    let mut tools = vec![
        "unbound",
        "unbound-checkconf",
        "unbound-control",
        "openssl",
        "dnsmasq",
        "dnsperf",
    ];
    if args.b == Peer::Bulkhead || args.sources > 1 {
        tools.push("nft");
    }
    let missing = dns::missing_tools(&tools);
    if !missing.is_empty() {
        return Err(format!(
            "missing {}: apt-get install -y {} nftables",
            missing.join(", "),
            dns::DEBIAN_PACKAGES
        ));
    }
    if args.b == Peer::Bulkhead && !args.bulkhead.is_file() {
        return Err(format!(
            "no bulkhead binary at {} (build it: cargo build --release -p bulkhead; or give --bulkhead PATH)",
            args.bulkhead.display()
        ));
    }
    let started = Instant::now();
    for stale in Netns::cleanup_stale().map_err(|e| e.to_string())? {
        eprintln!("removed namespace {stale} of a dead run");
    }
    let mut dir = ScratchDir::new("dns-bench").map_err(|e| e.to_string())?;
    if args.keep {
        dir.keep();
        eprintln!("work directory: {}", dir.path().display());
    }
    let b: Box<dyn Contender> = match args.b {
        Peer::Bulkhead => Box::new(BulkheadContender {
            binary: args.bulkhead.clone(),
            policies: args.policies.clone(),
            clients: client_addresses(args.sources),
            cache_entries: args.b_cache,
            extra_dns: args.bulkhead_dns.clone(),
            save_ruleset: args.a_firewall.then(|| dir.path().join("bulkhead-ruleset.json")),
        }),
        Peer::Dnsmasq => Box::new(DnsmasqContender {
            cache_size: args.b_cache,
            firewall: None,
        }),
    };
    let contenders: Vec<Box<dyn Contender>> = vec![
        Box::new(DnsmasqContender {
            cache_size: args.a_cache,
            firewall: args.a_firewall.then(|| dir.path().join("bulkhead-ruleset.json")),
        }),
        b,
    ];
    let outcome = measure(args, &contenders, dir.path());
    if outcome.is_err() && !args.keep {
        // The logs are what explains a failure.
        dir.keep();
        eprintln!("work directory kept: {}", dir.path().display());
    }
    let samples = outcome.map_err(|e| e.to_string())?;
    print_report(args, &contenders, &samples);
    eprintln!("total time {:.1?}", started.elapsed());
    Ok(())
}

fn measure(args: &Args, contenders: &[Box<dyn Contender>], dir: &Path) -> Result<Vec<Sample>> {
    let bench = Bench::build(args.sources)?;
    let load = Instant::now();
    let zones = TestZones::with_bulk(args.bulk);
    let unbound = Unbound::start(&bench.upstream, &[IpAddr::V4(UPSTREAM)], &zones, &dir.join("unbound"))?;
    eprintln!(
        "upstream unbound (pid {}) serving {} bulk names, ready in {:.1?}",
        unbound.pid(),
        args.bulk,
        load.elapsed()
    );

    let hit_file = dir.join("hit.txt");
    TestZones::queries_file(&hit_file, args.hit_names)?;
    let miss_file = dir.join("miss.txt");
    TestZones::queries_file_from(&miss_file, args.hit_names, args.bulk - args.hit_names)?;
    let listen = SocketAddr::new(IpAddr::V4(RESOLVER), 53);
    let upstream = IpAddr::V4(UPSTREAM);
    if args.a_firewall {
        // One unmeasured start of B: its ruleset is saved when it stops, and
        // A's runs load it.
        let workdir = dir.join("contender-B");
        drop(contenders[1].start(&bench.resolver, &bench.client, listen, upstream, &workdir)?);
        if !dir.join("bulkhead-ruleset.json").is_file() {
            return Err(Error::Spec("--a-firewall: bulkhead's ruleset was not saved".into()));
        }
    }

    let mut samples = Vec::new();
    for round in 0..args.rounds {
        for (index, contender) in contenders.iter().enumerate() {
            let workdir: PathBuf = dir.join(format!("contender-{}", letter(index)));
            for &kind in &args.only {
                let mut attempt = 1;
                loop {
                    let running = contender.start(&bench.resolver, &bench.client, listen, upstream, &workdir)?;
                    let memory_ready = proc_stats(running.pid());
                    let base = Dnsperf::new(listen, if kind == Kind::Hit { &hit_file } else { &miss_file })
                        .clients(args.clients)
                        .seconds(args.seconds);
                    if kind == Kind::Hit {
                        // Two passes, so every hit name is cached (or, with a small
                        // cache, has been evicted as it would be).
                        base.clone().max_runs(2).seconds(60).run(&bench.client)?;
                    }
                    let run = match kind {
                        Kind::Hit => base,
                        Kind::Miss => base.max_runs(1),
                        Kind::Fixed => base.max_runs(1).qps(Some(args.rate)).latencies(true),
                    };
                    wait_quiet(Duration::from_secs(u64::from(args.quiet_wait)));
                    let drops_before = udp_rcvbuf_errors(&bench.resolver);
                    let before = unbound.queries_seen()?;
                    let upstream_before = proc_stats(unbound.pid());
                    let cpu_before = proc_stats(running.pid());
                    let machine_before = machine_cpu();
                    let result = run.run(&bench.client)?;
                    let machine_after = machine_cpu();
                    let after = proc_stats(running.pid());
                    let upstream_cpu = upstream_before
                        .zip(proc_stats(unbound.pid()))
                        .map(|(b, a)| a.cpu_secs - b.cpu_secs);
                    let machine = machine_before.zip(machine_after).map(|(b, a)| a.since(b));
                    let upstream_queries = unbound.queries_seen()?.saturating_sub(before);
                    let rcvbuf_drops = drops_before
                        .zip(udp_rcvbuf_errors(&bench.resolver))
                        .map(|(b, a)| a.saturating_sub(b));
                    let cpu_secs = cpu_before.zip(after).map(|(b, a)| a.cpu_secs - b.cpu_secs);
                    let sample = Sample {
                        contender: index,
                        kind,
                        round,
                        result,
                        upstream_queries,
                        cpu_secs,
                        machine,
                        upstream_cpu,
                        rcvbuf_drops,
                        memory: after,
                        memory_ready,
                    };
                    eprintln!(
                        "round {} {} (pid {}) {}: {:.0} QPS, {} lost, {} CPU µs/query, VmRSS {} KiB, other load {} cores",
                        round + 1,
                        letter(index),
                        running.pid(),
                        kind.name(args.rate),
                        sample.result.qps,
                        sample.result.queries_lost,
                        sample.cpu_per_query().map_or("-".into(), |c| format!("{c:.1}")),
                        after.map_or("-".into(), |m| m.rss_kib.to_string()),
                        sample.other_load().map_or("-".into(), |l| format!("{l:.2}")),
                    );
                    if let Some(counters) = running.counters() {
                        eprintln!("    {counters}");
                    }
                    drop(running);
                    let other = sample.other_load().unwrap_or(0.0);
                    if other > args.max_other_load && attempt < MAX_ATTEMPTS {
                        eprintln!("    other work on the machine took {other:.2} cores during the run: again");
                        attempt += 1;
                        continue;
                    }
                    samples.push(sample);
                    break;
                }
            }
        }
    }
    Ok(samples)
}

fn letter(index: usize) -> char {
    match index {
        0 => 'A',
        1 => 'B',
        _ => '?',
    }
}

/// Median (mean of the middle two for an even count); `None` if empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
