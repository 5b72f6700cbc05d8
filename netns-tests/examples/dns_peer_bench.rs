//! Side-by-side DNS resolver benchmark in network namespaces (needs root).
//!
//! ```text
//! cargo run -p bulkhead-netns --example dns_peer_bench -- [--rounds 3] [--seconds 5]
//!     [--rate 10000] [--clients 4] [--bulk 100000] [--hit-names 1000]
//!     [--a-cache 10000] [--b-cache 150] [--keep]
//! ```
//!
//! (A debug build is fine: the example only drives external processes. Avoid
//! `--release` while it is being changed: the workspace's release profile
//! aborts on panic, which skips the namespaces' cleanup; a later run removes
//! what a dead run left, see `Netns::cleanup_stale`.)
//!
//! Topology, all in namespaces this program creates and removes:
//!
//! ```text
//!  client ns                resolver ns                        upstream ns
//!  eth0 10.53.1.2/24 <-veth-> eth0 10.53.1.1/24  (A or B on :53)
//!                           up0  10.53.2.2/24  <-veth-> down0 10.53.2.1/24
//!                           192.0.2.53 via 10.53.2.1           lo 192.0.2.53 (unbound)
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
//! It prints the medians over the rounds and B/A ratios as a markdown table,
//! then every run. Contenders implement [`Contender`]; for now A and B are
//! dnsmasq with two cache sizes (`--a-cache`, `--b-cache`); Bulkhead's resolver
//! plugs in as another implementation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_netns::dns::{self, Dnsmasq, Dnsperf, DnsperfResult, ScratchDir, TestZones, Unbound};
use bulkhead_netns::{Netns, Result};

/// Where the contenders answer.
const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 53, 1, 1);
/// The upstream's address (a documentation address: "a public server").
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// A resolver under test. [`Contender::start`] is called once per measured
/// run, so every run begins with a cold cache.
///
/// To benchmark Bulkhead's resolver, implement this: write its configuration
/// (listen on `listen`, forward to `upstream`) into `workdir`, start the binary
/// with `ns.spawn_logged`, wait until it answers (e.g. poll
/// `bulkhead_netns::dns::udp_query`), and return a guard that stops it by pid
/// on drop (`ns.stop_tracked`).
trait Contender {
    /// Its name in the tables.
    fn label(&self) -> String;

    /// Starts it in `ns`, answering DNS on `listen` and forwarding to
    /// `upstream` (port 53), with its files in `workdir`. Returns once it
    /// answers; dropping the returned guard must stop it.
    fn start<'ns>(
        &self,
        ns: &'ns Netns,
        listen: SocketAddr,
        upstream: IpAddr,
        workdir: &Path,
    ) -> Result<Box<dyn Running + 'ns>>;
}

/// A started contender; dropping it stops it.
trait Running {
    /// Its pid, for the log.
    fn pid(&self) -> u32;
}

impl Running for Dnsmasq<'_> {
    fn pid(&self) -> u32 {
        Dnsmasq::pid(self)
    }
}

/// dnsmasq as a caching forwarder with a given cache size.
struct DnsmasqContender {
    cache_size: u32,
}

impl Contender for DnsmasqContender {
    fn label(&self) -> String {
        format!("dnsmasq (cache {})", self.cache_size)
    }

    fn start<'ns>(
        &self,
        ns: &'ns Netns,
        listen: SocketAddr,
        upstream: IpAddr,
        workdir: &Path,
    ) -> Result<Box<dyn Running + 'ns>> {
        let dnsmasq = Dnsmasq::start(ns, listen.ip(), listen.port(), upstream, self.cache_size, workdir)?;
        Ok(Box::new(dnsmasq))
    }
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
    b_cache: u32,
    keep: bool,
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
            b_cache: 150,
            keep: false,
        }
    }
}

const USAGE: &str = "usage: dns_peer_bench [--rounds N] [--seconds S] [--rate QPS] [--clients C] \
[--bulk NAMES] [--hit-names N] [--a-cache N] [--b-cache N] [--keep]
  --rounds     A B rounds, medians over them (3)
  --seconds    length of each measured run (5)
  --rate       queries per second of the fixed-rate run (10000)
  --clients    dnsperf clients (-c) (4)
  --bulk       names in the upstream's bulk.test zone (100000)
  --hit-names  names repeated in the cache-hit run (1000)
  --a-cache    contender A's dnsmasq cache size (10000)
  --b-cache    contender B's dnsmasq cache size (150, dnsmasq's default)
  --keep       keep the work directory (logs, configuration)";

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
            "--b-cache" => args.b_cache = number(&flag, argv.next())?,
            "--keep" => args.keep = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.rounds == 0 || args.seconds == 0 || args.clients == 0 || args.rate == 0 {
        return Err("--rounds, --seconds, --clients and --rate must be at least 1".into());
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
}

/// The three namespaces and the upstream.
struct Bench {
    client: Netns,
    resolver: Netns,
    upstream: Netns,
}

impl Bench {
    fn build() -> Result<Bench> {
        let client = Netns::new("bench-client")?;
        let resolver = Netns::new("bench-resolver")?;
        let upstream = Netns::new("bench-upstream")?;
        client.ip_batch(&[
            format!("link add eth0 type veth peer name eth0 netns {}", resolver.name()),
            "addr add 10.53.1.2/24 dev eth0".to_string(),
            "link set eth0 up".to_string(),
        ])?;
        upstream.ip_batch(&[
            format!("link add down0 type veth peer name up0 netns {}", resolver.name()),
            "addr add 10.53.2.1/24 dev down0".to_string(),
            format!("addr add {UPSTREAM}/32 dev lo"),
            "link set down0 up".to_string(),
        ])?;
        resolver.ip_batch(&[
            format!("addr add {RESOLVER}/24 dev eth0"),
            "addr add 10.53.2.2/24 dev up0".to_string(),
            "link set eth0 up".to_string(),
            "link set up0 up".to_string(),
            format!("route add {UPSTREAM}/32 via 10.53.2.1"),
        ])?;
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
    let tools = [
        "unbound",
        "unbound-checkconf",
        "unbound-control",
        "openssl",
        "dnsmasq",
        "dnsperf",
    ];
    let missing = dns::missing_tools(&tools);
    if !missing.is_empty() {
        return Err(format!(
            "missing {}: apt-get install -y {}",
            missing.join(", "),
            dns::DEBIAN_PACKAGES
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
    let contenders: Vec<Box<dyn Contender>> = vec![
        Box::new(DnsmasqContender {
            cache_size: args.a_cache,
        }),
        Box::new(DnsmasqContender {
            cache_size: args.b_cache,
        }),
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
    let bench = Bench::build()?;
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

    let mut samples = Vec::new();
    for round in 0..args.rounds {
        for (index, contender) in contenders.iter().enumerate() {
            let workdir: PathBuf = dir.join(format!("contender-{}", letter(index)));
            for kind in Kind::ALL {
                let running = contender.start(&bench.resolver, listen, upstream, &workdir)?;
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
                let before = unbound.queries_seen()?;
                let result = run.run(&bench.client)?;
                let upstream_queries = unbound.queries_seen()?.saturating_sub(before);
                eprintln!(
                    "round {} {} (pid {}) {}: {:.0} QPS, {} lost",
                    round + 1,
                    letter(index),
                    running.pid(),
                    kind.name(args.rate),
                    result.qps,
                    result.queries_lost
                );
                drop(running);
                samples.push(Sample {
                    contender: index,
                    kind,
                    round,
                    result,
                    upstream_queries,
                });
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

/// One row of the summary: a label and how to read a number from a sample.
struct Metric {
    label: &'static str,
    kinds: &'static [Kind],
    value: fn(&Sample) -> Option<f64>,
    /// Decimals to print.
    decimals: usize,
}

fn metrics() -> Vec<Metric> {
    const ALL: &[Kind] = &Kind::ALL;
    const FAST: &[Kind] = &[Kind::Hit, Kind::Miss];
    vec![
        Metric {
            label: "QPS",
            kinds: FAST,
            value: |s| Some(s.result.qps),
            decimals: 0,
        },
        Metric {
            label: "avg latency (µs)",
            kinds: ALL,
            value: |s| Some(micros(s.result.avg_latency)),
            decimals: 0,
        },
        Metric {
            label: "p50 latency (µs)",
            kinds: &[Kind::Fixed],
            value: |s| s.result.latency_percentiles.map(|p| micros(p.p50)),
            decimals: 0,
        },
        Metric {
            label: "p99 latency (µs)",
            kinds: &[Kind::Fixed],
            value: |s| s.result.latency_percentiles.map(|p| micros(p.p99)),
            decimals: 0,
        },
        Metric {
            label: "queries sent",
            kinds: ALL,
            value: |s| Some(s.result.queries_sent as f64),
            decimals: 0,
        },
        Metric {
            label: "lost",
            kinds: ALL,
            value: |s| Some(s.result.queries_lost as f64),
            decimals: 0,
        },
        Metric {
            label: "answers not NOERROR",
            kinds: ALL,
            value: |s| Some(s.result.queries_completed.saturating_sub(s.result.rcode("NOERROR")) as f64),
            decimals: 0,
        },
        Metric {
            label: "upstream queries",
            kinds: ALL,
            value: |s| Some(s.upstream_queries as f64),
            decimals: 0,
        },
    ]
}

fn print_report(args: &Args, contenders: &[Box<dyn Contender>], samples: &[Sample]) {
    let labels: Vec<String> = contenders.iter().map(|c| c.label()).collect();
    println!(
        "\n## DNS peer benchmark: medians of {} rounds, {} s runs, {} dnsperf clients\n",
        args.rounds, args.seconds, args.clients
    );
    println!(
        "| run | measure | A: {} | B: {} | B/A |",
        labels.first().map_or("", String::as_str),
        labels.get(1).map_or("", String::as_str)
    );
    println!("| --- | --- | ---: | ---: | ---: |");
    for kind in Kind::ALL {
        for metric in metrics().iter().filter(|m| m.kinds.contains(&kind)) {
            let med = |contender: usize| {
                median(
                    samples
                        .iter()
                        .filter(|s| s.contender == contender && s.kind == kind)
                        .filter_map(|s| (metric.value)(s))
                        .collect(),
                )
            };
            let (a, b) = (med(0), med(1));
            let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.*}", metric.decimals));
            let ratio = match (a, b) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
                _ => "-".to_string(),
            };
            println!(
                "| {} | {} | {} | {} | {ratio} |",
                kind.name(args.rate),
                metric.label,
                show(a),
                show(b)
            );
        }
    }

    println!("\n### Every run\n");
    println!("| round | contender | run | QPS | avg µs | p99 µs | sent | lost | not NOERROR | upstream queries |");
    println!("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in samples {
        let r = &s.result;
        let p99 = r
            .latency_percentiles
            .map_or("-".to_string(), |p| format!("{:.0}", micros(p.p99)));
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {p99} | {} | {} | {} | {} |",
            s.round + 1,
            letter(s.contender),
            s.kind.name(args.rate),
            r.qps,
            micros(r.avg_latency),
            r.queries_sent,
            r.queries_lost,
            r.queries_completed.saturating_sub(r.rcode("NOERROR")),
            s.upstream_queries
        );
    }
}
