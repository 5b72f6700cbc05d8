//! Real DNS servers and DNS load for tests and benchmarks, run in namespaces.
//!
//! - [`TestZones`]: the authoritative test data (zone `example.test.`, and
//!   optionally `bulk.test.` with many names for cache-miss benchmarks), written
//!   as zone files; [`TestZones::queries_file`] writes a matching dnsperf input.
//! - [`Unbound`]: an authoritative-only unbound serving [`TestZones`] on UDP and
//!   TCP 53 and DNS-over-TLS 853 (with a self-signed certificate made at start);
//!   "the upstream" of a resolver under test.
//! - [`Dnsmasq`]: a plain caching forwarder, the peer in side-by-side
//!   benchmarks.
//! - [`dnsperf`] / [`Dnsperf`]: runs Debian's `dnsperf` in a namespace and
//!   parses its summary into a [`DnsperfResult`].
//! - [`udp_query`]: one query over UDP from a namespace, with a small parser of
//!   the reply (A, AAAA and CNAME answers), for readiness checks and asserts.
//!
//! Servers are processes tracked by their [`Netns`] ([`Netns::spawn_logged`]),
//! so they are stopped by pid when their guard drops, and at the latest when
//! the namespace drops. Their files (configuration, zone files, certificate,
//! pid file, logs) go to a caller-chosen work directory; [`ScratchDir`] makes
//! and removes one.
//!
//! Tools used: `unbound`, `unbound-checkconf`, `unbound-control` (only for
//! [`Unbound::queries_seen`]), `openssl`, `dnsmasq`, `dnsperf`; the root test
//! also uses `dig` and `kdig`. On Debian: `apt-get install unbound openssl
//! dnsmasq-base dnsperf bind9-dnsutils knot-dnsutils`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Netns, Result};

mod dnsmasq;
mod dnsperf;
mod query;
mod unbound;
mod zones;
pub use dnsmasq::*;
pub use dnsperf::*;
pub use query::*;
pub use unbound::*;
pub use zones::*;

/// The zone every [`TestZones`] serves.
pub const EXAMPLE_ZONE: &str = "example.test.";
/// The zone of [`TestZones::with_bulk`]'s generated names.
pub const BULK_ZONE: &str = "bulk.test.";
/// `www.example.test A`.
pub const WWW_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// `www.example.test AAAA`.
pub const WWW_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80);
/// `video.example.test A` (the same address as the harness's "internet host",
/// [`crate::home::INTERNET_V4`], so a home's hosts can reach what it names).
pub const VIDEO_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// `short.example.test A`, served with TTL [`SHORT_TTL`].
pub const SHORT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// TTL of `short.example.test`, for cache-expiry tests.
pub const SHORT_TTL: u32 = 5;
/// `private.example.test A`: a public name with a private address (DNS
/// rebinding tests).
pub const PRIVATE_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 99);
/// `loop.example.test A`: a public name with a loopback address (DNS rebinding
/// tests).
pub const LOOP_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Number of A records of `big.example.test`: too many for a 512-byte UDP
/// answer (40 x 16 bytes), so a query without EDNS gets a truncated (TC) reply
/// and must retry over TCP. With EDNS (dig's default 1232 bytes) it fits.
pub const BIG_RECORDS: usize = 40;
/// TTL of every record without its own.
pub const DEFAULT_TTL: u32 = 300;
/// TTL of the bulk names: long enough never to expire during a benchmark.
pub const BULK_TTL: u32 = 3600;
/// Negative-caching TTL (the SOA minimum) of the test zones.
pub const NEGATIVE_TTL: u32 = 60;
/// Name in [`Unbound`]'s TLS certificate, for clients' hostname checks.
pub const TLS_HOSTNAME: &str = "dns.example.test";
/// Query type A.
pub const TYPE_A: u16 = 1;
/// Query type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Query type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Response code NOERROR.
pub const RCODE_NOERROR: u8 = 0;
/// Response code SERVFAIL.
pub const RCODE_SERVFAIL: u8 = 2;
/// Response code NXDOMAIN.
pub const RCODE_NXDOMAIN: u8 = 3;
/// Response code REFUSED.
pub const RCODE_REFUSED: u8 = 5;

/// How long [`Unbound::start`] and [`Dnsmasq::start`] wait for an answer.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one readiness query waits before the next is sent.
const READY_POLL: Duration = Duration::from_millis(100);
/// Longest path of a unix socket (`sun_path` is 108 bytes with the NUL).
const UNIX_PATH_MAX: usize = 107;
/// Port of plain DNS.
const DNS_PORT: u16 = 53;
/// Port of DNS over TLS.
const DOT_PORT: u16 = 853;
/// Port of unbound's DNS over HTTPS in the tests (not 443: tests run their
/// own listeners on the ISP's 443).
pub const DOH_PORT: u16 = 8443;
/// Path of unbound's DNS over HTTPS.
pub const DOH_PATH: &str = "/dns-query";

/// Makes query ids and scratch directory names unique within this process.
static SEQ: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// Scratch directory
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed (with its contents)
/// on drop: a work directory for [`Unbound`] and [`Dnsmasq`].
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// Creates `$TMPDIR/bulkhead-{tag}-{pid}-{n}`.
    pub fn new(tag: &str) -> Result<ScratchDir> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("bulkhead-{tag}-{}-{n}", std::process::id()));
        // A leftover of a dead process with the same pid: start clean.
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        std::fs::create_dir_all(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(ScratchDir { path, keep: false })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on drop (to read logs after a failure).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::Spec(format!("path {} is not UTF-8", path.display())))
}

/// An output that could not be parsed, with the output in the message.
fn invalid_output(what: &str, output: &str) -> Error {
    Error::io(
        format!("{what}; the output was:\n{output}"),
        std::io::Error::new(ErrorKind::InvalidData, "unexpected output"),
    )
}

/// A server that did not come up: why, and its logs.
fn not_started(server: &str, ns: &Netns, why: String, logs: &str) -> Error {
    Error::io(
        format!("starting {server} in {}", ns.name()),
        std::io::Error::other(format!("{why}\n{logs}")),
    )
}

/// The last `lines` lines of a log file, headed by its path; empty if absent.
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    format!("--- {} ---\n{}\n", path.display(), tail.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dnsperf -s 192.0.2.53 -d q.txt -l 2 -c 4` against unbound (2.10.0).
    const DNSPERF_OK: &str = "DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 192.0.2.53 -d q.txt -l 2 -c 4
[Status] Sending queries (to 192.0.2.53:53)
[Status] Started at: Sun Dec  6 04:55:57 2026
[Status] Stopping after 2.000000 seconds
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         420089
  Queries completed:    420089 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 280060 (66.67%), NXDOMAIN 140029 (33.33%)
  Average packet size:  request 34, response 67
  Run time (s):         2.003721
  Queries per second:   209654.437918

  Average Latency (s):  0.000422 (min 0.000005, max 0.003970)
  Latency StdDev (s):   0.000184

";

    /// `dnsperf -s 192.0.2.99 -d q.txt -l 1 -t 1 -Q 5` at a server that drops
    /// everything: no StdDev line, an empty rcode list.
    const DNSPERF_ALL_LOST: &str = "DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 192.0.2.99 -d q.txt -l 1 -t 1 -Q 5
[Status] Sending queries (to 192.0.2.99:53)
[Status] Started at: Sun Dec  6 04:56:16 2026
[Status] Stopping after 1.000000 seconds
[Timeout] Query timed out: msg id 0
[Timeout] Query timed out: msg id 1
[Timeout] Query timed out: msg id 2
[Timeout] Query timed out: msg id 3
[Timeout] Query timed out: msg id 4
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         5
  Queries completed:    0 (0.00%)
  Queries lost:         5 (100.00%)

  Response codes:       
  Average packet size:  request 34, response 0
  Run time (s):         1.000252
  Queries per second:   0.000000

  Average Latency (s):  0.000000 (min 0.000000, max 0.000000)

";

    fn us(micros: u64) -> Duration {
        Duration::from_micros(micros)
    }

    #[test]
    fn parses_a_real_dnsperf_summary() {
        let r = DnsperfResult::parse(DNSPERF_OK).expect("parses");
        assert_eq!(r.queries_sent, 420_089);
        assert_eq!(r.queries_completed, 420_089);
        assert_eq!(r.queries_lost, 0);
        assert_eq!(r.queries_interrupted, 0);
        assert_eq!(
            r.rcodes,
            vec![("NOERROR".into(), 280_060), ("NXDOMAIN".into(), 140_029)]
        );
        assert_eq!(r.rcode("NXDOMAIN"), 140_029);
        assert_eq!(r.rcode("SERVFAIL"), 0);
        assert!((r.qps - 209_654.437_918).abs() < 1e-6);
        assert_eq!(r.run_time, Duration::from_secs_f64(2.003_721));
        assert_eq!(r.avg_latency, us(422));
        assert_eq!(r.min_latency, us(5));
        assert_eq!(r.max_latency, us(3970));
        assert_eq!(r.latency_stddev, Some(us(184)));
        assert_eq!(r.latency_percentiles, None);
        assert_eq!(r.loss_ratio(), 0.0);
    }

    #[test]
    fn parses_a_run_where_everything_was_lost() {
        let r = DnsperfResult::parse(DNSPERF_ALL_LOST).expect("parses");
        assert_eq!((r.queries_sent, r.queries_completed, r.queries_lost), (5, 0, 5));
        assert!(r.rcodes.is_empty());
        assert_eq!(r.qps, 0.0);
        assert_eq!(r.latency_stddev, None);
        assert_eq!(r.loss_ratio(), 1.0);
    }

    #[test]
    fn unparsable_output_is_an_error_that_shows_it() {
        let cut = DNSPERF_OK.replace("Queries per second:", "Queries/s:");
        let err = DnsperfResult::parse(&cut).expect_err("no QPS line").to_string();
        assert!(err.contains("Queries per second:"), "{err}");
        assert!(
            err.contains("Queries sent:         420089"),
            "raw output missing: {err}"
        );
        assert!(DnsperfResult::parse("").is_err());
        assert!(DnsperfResult::parse("dnsperf: command not found").is_err());
        let garbage = DNSPERF_OK.replace("Queries lost:         0", "Queries lost:         x");
        assert!(DnsperfResult::parse(&garbage).is_err());
    }

    #[test]
    fn verbose_lines_become_latency_samples() {
        let mut c = Collector::default();
        for line in DNSPERF_ALL_LOST.lines() {
            c.push(line);
        }
        assert_eq!(c.timeouts, 5);
        c.push("> NOERROR www.example.test A 0.000144");
        c.push("> NXDOMAIN nope.example.test A 0.000036");
        c.push("> T www.example.test A");
        c.push("> I www.example.test A");
        assert_eq!(c.latencies, vec![0.000144, 0.000036]);
        assert!(!c.text.contains("> NOERROR"));
        assert!(c.text.contains("Queries sent:"));
        let r = DnsperfResult::parse(&c.text).expect("summary survives the filtering");
        assert_eq!(r.queries_lost, 5);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Percentiles::from_samples(Vec::new()), None);
        let samples: Vec<f64> = (1..=1000).rev().map(|i| f64::from(i) * 1e-6).collect();
        let p = Percentiles::from_samples(samples).expect("samples");
        assert_eq!(p.samples, 1000);
        assert_eq!(p.p50, us(500));
        assert_eq!(p.p90, us(900));
        assert_eq!(p.p99, us(990));
        assert_eq!(p.p999, us(999));
        let one = Percentiles::from_samples(vec![0.25]).expect("one sample");
        assert_eq!(
            (one.p50, one.p999),
            (Duration::from_millis(250), Duration::from_millis(250))
        );
    }

    #[test]
    fn dnsperf_arguments() {
        let server: SocketAddr = "[2001:db8::53]:5353".parse().expect("literal");
        let args = Dnsperf::new(server, Path::new("/tmp/q.txt"))
            .seconds(3)
            .clients(4)
            .qps(Some(10_000))
            .max_runs(1)
            .latencies(true)
            .args()
            .join(" ");
        assert_eq!(
            args,
            "-W -s 2001:db8::53 -p 5353 -d /tmp/q.txt -l 3 -c 4 -t 2 -m udp -Q 10000 -n 1 -v"
        );
        let plain = Dnsperf::new(server, Path::new("q")).transport(Transport::Dot).args();
        assert!(!plain.contains(&"-v".to_string()) && !plain.contains(&"-Q".to_string()));
        assert!(plain.join(" ").contains("-m dot"));
    }

    #[test]
    fn unbound_conf_serves_the_zones_and_nothing_else() {
        let dir = Path::new("/tmp/w");
        let files = UnboundFiles::in_dir(dir);
        let listen: Vec<IpAddr> = vec![
            "192.0.2.53".parse().expect("literal"),
            "2001:db8::53".parse().expect("literal"),
        ];
        let zones = vec![
            ("example.test.".to_string(), dir.join("example.test.zone")),
            ("bulk.test.".to_string(), dir.join("bulk.test.zone")),
        ];
        let conf = unbound_conf(&listen, dir, &zones, &files);
        for want in [
            "server:\n",
            "    num-threads: 1\n",
            "    do-daemonize: no\n",
            "    chroot: \"\"\n",
            "    username: \"\"\n",
            "    pidfile: \"/tmp/w/unbound.pid\"\n",
            "    logfile: \"/tmp/w/unbound.log\"\n",
            "    interface: 192.0.2.53@53\n",
            "    interface: 2001:db8::53@53\n",
            "    interface: 192.0.2.53@853\n",
            "    interface: 2001:db8::53@853\n",
            "    tls-port: 853\n",
            "    interface: 192.0.2.53@8443\n",
            "    https-port: 8443\n",
            "    http-endpoint: \"/dns-query\"\n",
            "    tls-service-key: \"/tmp/w/tls-key.pem\"\n",
            "    tls-service-pem: \"/tmp/w/tls-cert.pem\"\n",
            "    do-tcp: yes\n",
            "    access-control: 0.0.0.0/0 allow\n",
            "    access-control: ::/0 allow\n",
            "    do-not-query-localhost: yes\n",
            "    local-zone: \"test.\" nodefault\n",
            "    local-zone: \".\" refuse\n",
            "    local-zone: \"example.test.\" transparent\n",
            "    local-zone: \"bulk.test.\" transparent\n",
            "auth-zone:\n    name: \"example.test.\"\n    zonefile: \"/tmp/w/example.test.zone\"\n",
            "auth-zone:\n    name: \"bulk.test.\"\n    zonefile: \"/tmp/w/bulk.test.zone\"\n",
            "    control-interface: \"/tmp/w/unbound.ctl\"\n",
        ] {
            assert!(conf.contains(want), "{want:?} missing from:\n{conf}");
        }
        // The interface lines live in server:, before any other clause.
        let server_part = conf.split("auth-zone:").next().unwrap_or_default();
        assert_eq!(server_part.matches("interface: ").count(), 6);

        // A directory too deep for a unix socket turns remote control off.
        let deep = PathBuf::from(format!("/tmp/{}", "d".repeat(120)));
        let conf = unbound_conf(&listen, &deep, &zones, &UnboundFiles::in_dir(&deep));
        assert!(conf.contains("remote-control:\n    control-enable: no\n"), "{conf}");
        assert!(check_conf_path(Path::new("/tmp/a\"b")).is_err());
    }

    #[test]
    fn test_zone_contents() {
        let zones = TestZones::new();
        assert_eq!(zones.zones().len(), 1);
        assert_eq!(zones.bulk_count(), 0);
        let text = zones.zones()[0].zone_file();
        for want in [
            "$ORIGIN example.test.\n",
            "example.test. 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\n",
            "www.example.test. 300 IN A 192.0.2.80\n",
            "www.example.test. 300 IN AAAA 2001:db8::80\n",
            "cdn.example.test. 300 IN CNAME www.example.test.\n",
            "video.example.test. 300 IN A 203.0.113.10\n",
            "short.example.test. 5 IN A 198.51.100.7\n",
            "private.example.test. 300 IN A 10.0.1.99\n",
            "loop.example.test. 300 IN A 127.0.0.1\n",
            "big.example.test. 300 IN A 192.0.2.101\n",
            "big.example.test. 300 IN A 192.0.2.140\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert_eq!(text.matches("big.example.test. 300 IN A ").count(), BIG_RECORDS);

        let bulk = TestZones::with_bulk(600);
        assert_eq!(bulk.bulk_count(), 600);
        let bulk_text = bulk.zones()[1].zone_file();
        assert!(bulk_text.contains("host0.bulk.test. 3600 IN A 198.51.100.1\n"));
        assert!(bulk_text.contains("host253.bulk.test. 3600 IN A 198.51.100.254\n"));
        assert!(bulk_text.contains("host254.bulk.test. 3600 IN A 203.0.113.1\n"));
        assert!(bulk_text.contains("host508.bulk.test. 3600 IN A 198.51.100.1\n"));
        assert_eq!(bulk.zones()[1].file_name(), "bulk.test.zone");

        let more = TestZones::new()
            .with_record(Record::new("mail.example.test", 60, "A", "192.0.2.25"))
            .expect("in zone");
        assert!(more.zones()[0]
            .zone_file()
            .contains("mail.example.test. 60 IN A 192.0.2.25\n"));
        assert!(TestZones::new()
            .with_record(Record::new("www.example.org", 60, "A", "192.0.2.25"))
            .is_err());
        assert!(TestZones::new()
            .with_record(Record::new("notexample.test", 60, "A", "192.0.2.25"))
            .is_err());
    }

    #[test]
    fn queries_files() -> Result<()> {
        let dir = ScratchDir::new("dns-unit")?;
        let path = dir.path().join("q.txt");
        TestZones::queries_file(&path, 3)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", e))?;
        assert_eq!(text, "host0.bulk.test. A\nhost1.bulk.test. A\nhost2.bulk.test. A\n");
        TestZones::queries_file_from(&path, 1000, 2)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", e))?;
        assert_eq!(text, "host1000.bulk.test. A\nhost1001.bulk.test. A\n");
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists(), "scratch dir left behind");
        Ok(())
    }

    /// A reply to `cdn.example.test A`, as unbound sends it (compressed names).
    fn cdn_reply(id: u16) -> Vec<u8> {
        let mut m = build_query(id, "cdn.example.test", TYPE_A).expect("valid name");
        // QR, AA, RD, RA; NOERROR; two answers.
        m[2] = 0x85;
        m[3] = 0x80;
        m[7] = 2;
        // cdn.example.test. (pointer to the question) CNAME www + pointer to example.test.
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 6, 3, b'w', b'w', b'w', 0xc0, 16]);
        // www.example.test. (pointer to the CNAME data, at offset 46) A 192.0.2.80.
        m.extend_from_slice(&[0xc0, 46, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 80]);
        m
    }

    #[test]
    fn dns_wire_query_and_reply() {
        let q = build_query(0x1234, "www.example.test.", TYPE_AAAA).expect("valid name");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..17], &[3, b'w', b'w', b'w', 7]);
        assert_eq!(&q[q.len() - 4..], &[0, 28, 0, 1]);
        assert!(build_query(1, "a..b", TYPE_A).is_err());
        assert!(build_query(1, &"x".repeat(64), TYPE_A).is_err());

        let reply = parse_reply(&cdn_reply(7)).expect("parses");
        assert_eq!(reply.rcode, RCODE_NOERROR);
        assert!(reply.authoritative && reply.recursion_available && !reply.truncated);
        assert_eq!(
            reply.answers,
            vec![
                Answer {
                    name: "cdn.example.test.".into(),
                    ttl: 300,
                    data: AnswerData::Cname("www.example.test.".into()),
                },
                Answer {
                    name: "www.example.test.".into(),
                    ttl: 300,
                    data: AnswerData::A(WWW_V4),
                },
            ]
        );
        assert_eq!(reply.a(), vec![WWW_V4]);
        assert!(reply.aaaa().is_empty());

        // A query (QR clear), a cut reply, and a pointer loop are rejected.
        assert!(parse_reply(&q).is_none());
        let full = cdn_reply(7);
        assert!(parse_reply(&full[..full.len() - 3]).is_none());
        let mut looped = build_query(1, "a", TYPE_A).expect("valid name");
        looped[2] = 0x80;
        looped[12] = 0xc0;
        looped[13] = 12;
        assert!(parse_reply(&looped).is_none());
    }

    #[test]
    fn tool_lookup() {
        assert!(missing_tools(&["sh"]).is_empty());
        assert_eq!(
            missing_tools(&["sh", "no-such-tool-bulkhead"]),
            vec!["no-such-tool-bulkhead"]
        );
    }
}

/// Root tests: real unbound, dnsmasq, dig, kdig and dnsperf in namespaces.
#[cfg(test)]
mod root_tests {
    use std::io::Write;

    use super::*;
    use crate::root_or_skip;

    const UPSTREAM_V4: &str = "192.0.2.53";
    const UPSTREAM_V6: &str = "2001:db8:53::53";

    /// Like [`root_or_skip`], for the programs the test runs: under CI=true a
    /// missing one fails the test.
    fn tools_or_skip(test: &str) -> bool {
        let missing = missing_tools(TOOLS);
        if missing.is_empty() {
            return true;
        }
        let missing = missing.join(", ");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test} needs {missing} (apt-get install -y {DEBIAN_PACKAGES}), and CI=true forbids skipping it");
        }
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {missing} not found on PATH");
        false
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal")
    }

    fn text(output: std::process::Output) -> String {
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Two namespaces: `up` (unbound on lo addresses) and `client`, joined by a
    /// veth, the client routing the upstream addresses over it.
    fn pair() -> Result<(Netns, Netns)> {
        let up = Netns::new("dns-up")?;
        let client = Netns::new("dns-client")?;
        up.ip_batch(&[
            format!("link add down0 type veth peer name eth0 netns {}", client.name()),
            "addr add 10.53.0.1/30 dev down0".into(),
            "addr add fd53::1/64 dev down0 nodad".into(),
            format!("addr add {UPSTREAM_V4}/32 dev lo"),
            format!("addr add {UPSTREAM_V6}/128 dev lo nodad"),
            "link set down0 up".into(),
        ])?;
        client.ip_batch(&[
            "addr add 10.53.0.2/30 dev eth0".into(),
            "addr add fd53::2/64 dev eth0 nodad".into(),
            "link set eth0 up".into(),
            format!("route add {UPSTREAM_V4}/32 via 10.53.0.1"),
            format!("route add {UPSTREAM_V6}/128 via fd53::1"),
        ])?;
        Ok((up, client))
    }

    #[test]
    fn unbound_and_dnsmasq_answer_for_real() -> Result<()> {
        let test = "unbound_and_dnsmasq_answer_for_real";
        if !root_or_skip(test) || !tools_or_skip(test) {
            return Ok(());
        }
        let started = Instant::now();
        let dir = ScratchDir::new("dns-root")?;
        let (up, client) = pair()?;
        let unbound = Unbound::start(
            &up,
            &[ip(UPSTREAM_V4), ip(UPSTREAM_V6)],
            &TestZones::new(),
            &dir.path().join("unbound"),
        )?;
        let unbound_pid = unbound.pid();
        // An address the namespace does not have: the error carries unbound's log.
        let bad = Unbound::start(&up, &[ip("192.0.2.99")], &TestZones::new(), &dir.path().join("bad"));
        let bad = bad
            .map(|u| u.pid())
            .expect_err("192.0.2.99 is on no interface")
            .to_string();
        assert!(bad.contains("exited") && bad.contains("can't bind socket"), "{bad}");
        let dig = |args: &[&str]| -> Result<String> {
            let mut all = vec!["dig", "+time=2", "+tries=1"];
            all.extend_from_slice(args);
            client.exec(&all).map(text)
        };
        let at4 = format!("@{UPSTREAM_V4}");
        let at6 = format!("@{UPSTREAM_V6}");

        // A and AAAA over UDP, IPv4 and IPv6.
        assert_eq!(dig(&["+short", &at4, "www.example.test", "A"])?, "192.0.2.80");
        assert_eq!(dig(&["+short", &at6, "www.example.test", "AAAA"])?, "2001:db8::80");
        assert_eq!(dig(&["+short", &at6, "video.example.test"])?, "203.0.113.10");
        // The CNAME chain, over TCP.
        assert_eq!(
            dig(&["+short", "+tcp", &at4, "cdn.example.test"])?,
            "www.example.test.\n192.0.2.80"
        );
        // NXDOMAIN, authoritative, with the SOA.
        let nx = dig(&[&at4, "nope.example.test"])?;
        assert!(nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa"), "{nx}");
        assert!(nx.contains("IN\tSOA\tns.example.test."), "{nx}");
        // The short TTL, and the rebinding names.
        let short = dig(&["+noall", "+answer", &at4, "short.example.test"])?;
        let fields: Vec<&str> = short.split_whitespace().collect();
        assert_eq!(
            fields,
            ["short.example.test.", "5", "IN", "A", "198.51.100.7"],
            "{short}"
        );
        assert_eq!(dig(&["+short", &at4, "private.example.test"])?, "10.0.1.99");
        assert_eq!(dig(&["+short", &at4, "loop.example.test"])?, "127.0.0.1");
        // Names outside the zones are refused, not looked up.
        let outside = dig(&[&at4, "www.example.com"])?;
        assert!(outside.contains("status: REFUSED"), "{outside}");

        // 40 records do not fit in 512 bytes: truncated over UDP, whole over TCP.
        let cut = dig(&["+noedns", "+ignore", &at4, "big.example.test"])?;
        assert!(cut.contains("flags: qr aa tc"), "{cut}");
        let retried = dig(&["+noedns", &at4, "big.example.test"])?;
        assert!(retried.contains("Truncated, retrying in TCP mode"), "{retried}");
        assert!(retried.contains("ANSWER: 40,"), "{retried}");
        let over_tcp = dig(&["+short", "+tcp", &at6, "big.example.test"])?;
        assert_eq!(over_tcp.lines().count(), BIG_RECORDS, "{over_tcp}");
        assert!(over_tcp.lines().any(|l| l == "192.0.2.140"), "{over_tcp}");

        // The same through this module's own query function.
        let server = unbound.addr();
        let www = udp_query(&client, server, "www.example.test", TYPE_A, Duration::from_secs(2))?;
        let www = www.expect("a reply");
        assert!(www.authoritative);
        assert_eq!(www.a(), vec![WWW_V4]);
        let cdn = udp_query(&client, server, "cdn.example.test", TYPE_A, Duration::from_secs(2))?;
        let cdn = cdn.expect("a reply");
        assert_eq!(cdn.answers[0].data, AnswerData::Cname("www.example.test.".into()));
        assert_eq!(cdn.a(), vec![WWW_V4]);
        let nx = udp_query(&client, server, "nope.example.test", TYPE_A, Duration::from_secs(2))?;
        assert_eq!(nx.map(|r| r.rcode), Some(RCODE_NXDOMAIN));
        let big = udp_query(&client, server, "big.example.test", TYPE_A, Duration::from_secs(2))?;
        assert_eq!(big.map(|r| r.truncated), Some(true));
        let none = udp_query(
            &client,
            "10.53.0.1:53".parse().expect("literal"),
            "x.test",
            1,
            Duration::from_millis(300),
        )?;
        assert_eq!(none, None, "nothing listens on the veth address");

        // DNS over TLS, trusting the test certificate, by name and by address.
        let ca = format!("+tls-ca={}", unbound.ca_cert().display());
        let host = format!("+tls-hostname={TLS_HOSTNAME}");
        for at in [&at4, &at6] {
            let out = client.exec(&[
                "kdig",
                "+time=2",
                "+retry=0",
                at,
                &ca,
                &host,
                "+short",
                "www.example.test",
            ])?;
            assert_eq!(text(out), "192.0.2.80", "kdig over TLS to {at}");
        }
        let out = client.exec(&["kdig", "+time=2", "+retry=0", &at4, &ca, "+short", "cdn.example.test"])?;
        assert_eq!(text(out), "www.example.test.\n192.0.2.80", "certificate checked by IP");
        let wrong = format!("+tls-hostname=other.{TLS_HOSTNAME}");
        let out = crate::netns::run(
            std::process::Command::new("ip")
                .args(["netns", "exec", client.name(), "kdig", "+time=2", "+retry=0"])
                .args([&at4, &ca, &wrong, "+short", "www.example.test"]),
        )?;
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("192.0.2.80") && all.contains("TLS"),
            "a wrong name must fail: {all}"
        );

        // The counter moves with each query.
        let seen = unbound.queries_seen()?;
        assert!(seen >= 15, "unbound saw {seen} queries");
        dig(&["+short", &at4, "www.example.test"])?;
        assert_eq!(unbound.queries_seen()?, seen + 1);

        // dnsmasq in the client, forwarding to unbound.
        let dnsmasq = Dnsmasq::start(
            &client,
            ip("10.53.0.2"),
            5353,
            ip(UPSTREAM_V4),
            1000,
            &dir.path().join("dnsmasq"),
        )?;
        let dnsmasq_pid = dnsmasq.pid();
        let through = dig(&["+short", "-p", "5353", "@10.53.0.2", "cdn.example.test"])?;
        assert_eq!(through, "www.example.test.\n192.0.2.80");
        let before = unbound.queries_seen()?;
        assert_eq!(
            dig(&["+short", "-p", "5353", "@10.53.0.2", "cdn.example.test"])?,
            through
        );
        assert_eq!(
            unbound.queries_seen()?,
            before,
            "the second answer came from dnsmasq's cache"
        );

        // dnsperf through dnsmasq, at a fixed rate, with percentiles.
        let queries = dir.path().join("q.txt");
        write_file(
            &queries,
            "www.example.test A\ncdn.example.test A\nnope.example.test A\n",
        )?;
        let r = Dnsperf::new(dnsmasq.addr(), &queries)
            .seconds(1)
            .qps(Some(2000))
            .latencies(true)
            .run(&client)?;
        // What is parsed must add up; how fast it went is the benchmarks' job
        // (a loaded CI machine may lose a few queries), never a test's.
        assert!(r.queries_completed > 0, "{r:?}");
        assert_eq!(
            r.queries_completed + r.queries_lost + r.queries_interrupted,
            r.queries_sent,
            "{r:?}"
        );
        assert_eq!(r.rcode("NXDOMAIN") + r.rcode("NOERROR"), r.queries_completed, "{r:?}");
        assert!(r.rcode("NXDOMAIN") > 0, "{r:?}");
        let p = r.latency_percentiles.expect("percentiles with -v");
        assert_eq!(p.samples as u64, r.queries_completed);
        assert!(
            p.p50 <= p.p99 && p.p99 <= r.max_latency + Duration::from_micros(1),
            "{r:?}"
        );
        // And at full speed against unbound, through the short form.
        let fast = dnsperf(&client, unbound.addr(), &queries, None, 1, 2)?;
        assert!(fast.qps > 0.0 && fast.queries_completed > 0, "{fast:?}");

        // Stopping by pid: the processes are gone, then the namespaces.
        dnsmasq.stop()?;
        drop(unbound);
        for pid in [unbound_pid, dnsmasq_pid] {
            let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None);
            assert_eq!(gone, Err(nix::errno::Errno::ESRCH), "pid {pid} still there");
        }
        let names = [up.name().to_string(), client.name().to_string()];
        drop((up, client));
        for name in &names {
            assert!(!Netns::exists(name), "{name} left behind");
        }
        let _ = writeln!(std::io::stderr(), "{test}: {:?}", started.elapsed());
        Ok(())
    }
}
