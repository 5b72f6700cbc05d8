//! dnsperf runs and what they report.

use super::*;

/// dnsperf's transport (`-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Plain DNS over UDP (the default).
    #[default]
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// DNS over TLS. dnsperf does not verify the certificate.
    Dot,
}

/// A dnsperf run, configured builder-style; [`dnsperf`] is the short form.
///
/// What dnsperf 2.10 reports, and so what [`DnsperfResult`] has: queries sent,
/// completed, lost (timed out) and interrupted, the rcode counts, run time,
/// QPS, and average, minimum, maximum and standard deviation of the latency.
/// It prints no histogram or percentiles. With [`Dnsperf::latencies`] it is run
/// with `-v`, which prints one line per response with its latency; the
/// percentiles are computed from those (see [`Percentiles`]). That costs
/// dnsperf a write per response, so leave it off when measuring the highest
/// QPS, and use it at a fixed rate ([`Dnsperf::qps`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Dnsperf {
    pub(crate) server: SocketAddr,
    pub(crate) queries: PathBuf,
    pub(crate) seconds: u32,
    pub(crate) clients: u32,
    pub(crate) threads: Option<u32>,
    pub(crate) qps: Option<u32>,
    pub(crate) max_runs: Option<u32>,
    pub(crate) outstanding: Option<u32>,
    pub(crate) timeout_secs: u32,
    pub(crate) transport: Transport,
    pub(crate) latencies: bool,
}

impl Dnsperf {
    /// Queries `server` with the lines of `queries` (`NAME TYPE` per line),
    /// looping over the file, for 10 s, as one client, over UDP, with a 2 s
    /// query timeout (dnsperf's default is 5 s).
    pub fn new(server: SocketAddr, queries: &Path) -> Dnsperf {
        Dnsperf {
            server,
            queries: queries.to_path_buf(),
            seconds: 10,
            clients: 1,
            threads: None,
            qps: None,
            max_runs: None,
            outstanding: None,
            timeout_secs: 2,
            transport: Transport::Udp,
            latencies: false,
        }
    }

    /// Run for at most `seconds` (`-l`).
    pub fn seconds(mut self, seconds: u32) -> Dnsperf {
        self.seconds = seconds;
        self
    }

    /// Act as `clients` clients, each with its own source port (`-c`).
    pub fn clients(mut self, clients: u32) -> Dnsperf {
        self.clients = clients;
        self
    }

    /// Use `threads` pairs of send/receive threads (`-T`; at most `clients`).
    pub fn threads(mut self, threads: u32) -> Dnsperf {
        self.threads = Some(threads);
        self
    }

    /// Send at most `qps` queries per second (`-Q`); `None`: as fast as
    /// answers come back.
    pub fn qps(mut self, qps: Option<u32>) -> Dnsperf {
        self.qps = qps;
        self
    }

    /// Go through the query file at most `runs` times (`-n`): with 1, every
    /// query is sent once, so fresh names stay fresh. The run then ends when
    /// the file is used up or the time is, whichever comes first.
    pub fn max_runs(mut self, runs: u32) -> Dnsperf {
        self.max_runs = Some(runs);
        self
    }

    /// At most `n` queries in flight (`-q`; dnsperf's default is 100).
    pub fn outstanding(mut self, n: u32) -> Dnsperf {
        self.outstanding = Some(n);
        self
    }

    /// A query with no answer after `seconds` counts as lost (`-t`).
    pub fn timeout(mut self, seconds: u32) -> Dnsperf {
        self.timeout_secs = seconds;
        self
    }

    /// The transport (`-m`).
    pub fn transport(mut self, transport: Transport) -> Dnsperf {
        self.transport = transport;
        self
    }

    /// Also compute latency percentiles (runs dnsperf with `-v`; see above).
    pub fn latencies(mut self, on: bool) -> Dnsperf {
        self.latencies = on;
        self
    }

    /// dnsperf's arguments. `-W` puts its warnings on stdout, with the rest.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-W".to_string(),
            "-s".into(),
            self.server.ip().to_string(),
            "-p".into(),
            self.server.port().to_string(),
            "-d".into(),
            self.queries.display().to_string(),
            "-l".into(),
            self.seconds.to_string(),
            "-c".into(),
            self.clients.to_string(),
            "-t".into(),
            self.timeout_secs.to_string(),
            "-m".into(),
            match self.transport {
                Transport::Udp => "udp",
                Transport::Tcp => "tcp",
                Transport::Dot => "dot",
            }
            .into(),
        ];
        let mut opt = |flag: &str, value: Option<u32>| {
            if let Some(value) = value {
                args.push(flag.to_string());
                args.push(value.to_string());
            }
        };
        opt("-T", self.threads);
        opt("-Q", self.qps);
        opt("-n", self.max_runs);
        opt("-q", self.outstanding);
        if self.latencies {
            args.push("-v".into());
        }
        args
    }

    /// Runs dnsperf in `ns` and parses its output.
    ///
    /// Fails if dnsperf cannot start or exits unsuccessfully (with its stderr),
    /// or if its summary cannot be parsed (with its output).
    pub fn run(&self, ns: &Netns) -> Result<DnsperfResult> {
        let args = self.args();
        let command_line = format!("dnsperf {}", args.join(" "));
        let outcome = ns.run_in(|| run_dnsperf(&args))?;
        let (status, collected, stderr) = outcome.map_err(|e| Error::io(format!("running {command_line}"), e))?;
        if !status.success() {
            return Err(Error::Command {
                command: command_line,
                status,
                stderr: format!("{}\n{}", stderr.trim(), collected.text.trim()),
            });
        }
        let mut result = DnsperfResult::parse(&collected.text)?;
        if self.latencies {
            result.latency_percentiles = Percentiles::from_samples(collected.latencies);
        }
        Ok(result)
    }
}

/// Runs dnsperf with `args` on this thread's namespace, streaming its stdout
/// through a [`Collector`] (a `-v` run can print millions of lines).
pub(crate) fn run_dnsperf(args: &[String]) -> std::io::Result<(std::process::ExitStatus, Collector, String)> {
    let mut child = Command::new("dnsperf")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|scope| {
        let err_reader = scope.spawn(move || {
            let mut text = String::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_string(&mut text);
            }
            text
        });
        let mut collector = Collector::default();
        let mut read_error = None;
        if let Some(stdout) = stdout {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => collector.push(&line),
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
        }
        let status = child.wait()?;
        let stderr = err_reader.join().unwrap_or_default();
        match read_error {
            Some(e) => Err(e),
            None => Ok((status, collector, stderr)),
        }
    })
}

/// Sorts dnsperf's stdout lines: the summary text is kept, `-v` response lines
/// become latency samples, timeout notices are counted (only the first few
/// kept).
#[derive(Debug, Default)]
pub(crate) struct Collector {
    pub(crate) text: String,
    pub(crate) latencies: Vec<f64>,
    pub(crate) timeouts: u64,
}

impl Collector {
    /// How many `[Timeout]` lines are kept in the text.
    pub(crate) const KEEP_TIMEOUT_LINES: u64 = 5;

    pub(crate) fn push(&mut self, line: &str) {
        if let Some(response) = line.strip_prefix("> ") {
            // "> NOERROR www.example.test A 0.000144", or "> T name type" for a
            // timeout, "> I name type" for an interrupted query.
            let mut fields = response.split_whitespace();
            let rcode = fields.next().unwrap_or_default();
            if rcode != "T" && rcode != "I" {
                if let Some(latency) = fields.last().and_then(|l| l.parse::<f64>().ok()) {
                    self.latencies.push(latency);
                }
            }
            return;
        }
        if line.starts_with("[Timeout]") {
            self.timeouts += 1;
            if self.timeouts > Self::KEEP_TIMEOUT_LINES {
                return;
            }
        }
        self.text.push_str(line);
        self.text.push('\n');
    }
}

/// Latency percentiles of the answered queries of a run (lost queries are not
/// in them: see [`DnsperfResult::queries_lost`]), nearest-rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// Number of latency samples (answered queries).
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
}

impl Percentiles {
    /// Percentiles of latencies in seconds; `None` without samples.
    pub fn from_samples(mut seconds: Vec<f64>) -> Option<Percentiles> {
        if seconds.is_empty() {
            return None;
        }
        seconds.sort_by(f64::total_cmp);
        let n = seconds.len();
        let at = |p: f64| {
            // Nearest rank: the smallest sample with at least p of them at or below.
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            Duration::from_secs_f64(seconds[rank - 1].max(0.0))
        };
        Some(Percentiles {
            samples: n,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
        })
    }
}

/// dnsperf's summary of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsperfResult {
    /// Queries sent.
    pub queries_sent: u64,
    /// Queries answered (any rcode).
    pub queries_completed: u64,
    /// Queries with no answer within the timeout.
    pub queries_lost: u64,
    /// Queries still in flight when the run was interrupted (0 if dnsperf
    /// does not print the line).
    pub queries_interrupted: u64,
    /// Answers per rcode, as dnsperf names them (`NOERROR`, `NXDOMAIN`, ...).
    pub rcodes: Vec<(String, u64)>,
    /// How long the run took.
    pub run_time: Duration,
    /// Completed queries per second of run time.
    pub qps: f64,
    /// Mean latency of the answered queries.
    pub avg_latency: Duration,
    /// Lowest latency.
    pub min_latency: Duration,
    /// Highest latency.
    pub max_latency: Duration,
    /// Standard deviation of the latency; dnsperf leaves it out when nothing
    /// was answered.
    pub latency_stddev: Option<Duration>,
    /// Only with [`Dnsperf::latencies`].
    pub latency_percentiles: Option<Percentiles>,
}

impl DnsperfResult {
    /// Parses dnsperf's output (its stdout; the statistics block at the end).
    /// Fails, with the whole text in the error, if a required line is missing
    /// or malformed: queries sent, completed and lost, run time, QPS and the
    /// average latency.
    pub fn parse(output: &str) -> Result<DnsperfResult> {
        let fail = |what: &str| invalid_output(&format!("dnsperf output: {what}"), output);
        let field = |label: &str| -> Option<&str> {
            output
                .lines()
                .find_map(|line| line.trim_start().strip_prefix(label))
                .map(str::trim)
        };
        // "420089 (100.00%)": the number before the percentage.
        let count = |label: &str| -> Result<u64> {
            field(label)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| fail(&format!("no number after {label:?}")))
        };
        let float = |label: &str| -> Result<f64> {
            field(label)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| fail(&format!("no number after {label:?}")))
        };
        let secs = |v: f64| Duration::from_secs_f64(v);

        let queries_sent = count("Queries sent:")?;
        let queries_completed = count("Queries completed:")?;
        let queries_lost = count("Queries lost:")?;
        let queries_interrupted = match field("Queries interrupted:") {
            Some(_) => count("Queries interrupted:")?,
            None => 0,
        };
        let run_time = secs(float("Run time (s):")?);
        let qps = float("Queries per second:")?;
        let avg_latency = secs(float("Average Latency (s):")?);
        // "0.000422 (min 0.000005, max 0.003970)"
        let latency_line = field("Average Latency (s):").unwrap_or_default();
        let bound = |key: &str| -> Result<Duration> {
            latency_line
                .split(['(', ')', ','])
                .find_map(|part| part.trim().strip_prefix(key))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(secs)
                .ok_or_else(|| fail(&format!("no {key} in the latency line")))
        };
        let min_latency = bound("min")?;
        let max_latency = bound("max")?;
        let latency_stddev = match field("Latency StdDev (s):") {
            Some(_) => Some(secs(float("Latency StdDev (s):")?)),
            None => None,
        };
        // "NOERROR 280060 (66.67%), NXDOMAIN 140029 (33.33%)", or empty.
        let mut rcodes = Vec::new();
        for part in field("Response codes:").unwrap_or_default().split(',') {
            let mut words = part.split_whitespace();
            let (Some(name), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n = n
                .parse()
                .map_err(|_| fail(&format!("bad response code count {part:?}")))?;
            rcodes.push((name.to_string(), n));
        }
        if queries_completed + queries_lost > queries_sent {
            return Err(fail("more queries completed and lost than sent"));
        }
        Ok(DnsperfResult {
            queries_sent,
            queries_completed,
            queries_lost,
            queries_interrupted,
            rcodes,
            run_time,
            qps,
            avg_latency,
            min_latency,
            max_latency,
            latency_stddev,
            latency_percentiles: None,
        })
    }

    /// Lost queries as a fraction of those sent (0 if none were sent).
    pub fn loss_ratio(&self) -> f64 {
        if self.queries_sent == 0 {
            0.0
        } else {
            self.queries_lost as f64 / self.queries_sent as f64
        }
    }

    /// The count of answers with rcode `name` (`"NOERROR"`), 0 if none.
    pub fn rcode(&self, name: &str) -> u64 {
        self.rcodes.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c)
    }
}

/// Runs dnsperf in `ns` against `server` with the query file `queries` for
/// `seconds`, as `clients` clients, at most `qps` queries per second if given;
/// see [`Dnsperf`] for the other settings and what is measured.
pub fn dnsperf(
    ns: &Netns,
    server: SocketAddr,
    queries: &Path,
    qps: Option<u32>,
    seconds: u32,
    clients: u32,
) -> Result<DnsperfResult> {
    Dnsperf::new(server, queries)
        .qps(qps)
        .seconds(seconds)
        .clients(clients)
        .run(ns)
}

/// Every program this module runs, plus the clients the root test uses.
pub const TOOLS: &[&str] = &[
    "unbound",
    "unbound-checkconf",
    "unbound-control",
    "openssl",
    "dnsmasq",
    "dnsperf",
    "dig",
    "kdig",
];

/// Debian packages that provide [`TOOLS`].
pub const DEBIAN_PACKAGES: &str = "unbound openssl dnsmasq-base dnsperf bind9-dnsutils knot-dnsutils";

/// Those of `tools` that are not on `PATH` (where `ip netns exec` looks).
pub fn missing_tools(tools: &[&str]) -> Vec<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    tools
        .iter()
        .filter(|tool| {
            !std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(tool)).is_ok_and(|m| {
                    m.is_file() && {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o111 != 0
                    }
                })
            })
        })
        .map(|tool| (*tool).to_string())
        .collect()
}
