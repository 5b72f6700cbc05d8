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

/// Makes query ids and scratch directory names unique within this process.
static SEQ: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

/// One resource record, as it goes into a zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, fully qualified with the final dot (`www.example.test.`).
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Type mnemonic (`A`, `AAAA`, `CNAME`, `TXT`, ...).
    pub rtype: String,
    /// Record data in zone-file syntax (`192.0.2.80`, `www.example.test.`).
    pub data: String,
}

impl Record {
    /// A record; `name` gets its final dot if it lacks one.
    pub fn new(name: &str, ttl: u32, rtype: &str, data: impl Into<String>) -> Record {
        Record {
            name: fqdn(name),
            ttl,
            rtype: rtype.to_string(),
            data: data.into(),
        }
    }
}

/// One zone: its origin and its records (the SOA and NS are added when the
/// zone file is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Origin, fully qualified (`example.test.`).
    pub origin: String,
    /// Records, all at or below the origin.
    pub records: Vec<Record>,
}

impl Zone {
    /// The zone file text: `$ORIGIN`, SOA (negative TTL [`NEGATIVE_TTL`]), NS,
    /// then the records with fully qualified names.
    pub fn zone_file(&self) -> String {
        let origin = &self.origin;
        let mut text = String::with_capacity(64 + self.records.len() * 48);
        // Writing to a String cannot fail.
        let _ = writeln!(text, "$ORIGIN {origin}\n$TTL {DEFAULT_TTL}");
        let _ = writeln!(
            text,
            "{origin} {DEFAULT_TTL} IN SOA ns.{EXAMPLE_ZONE} hostmaster.{EXAMPLE_ZONE} 1 3600 600 86400 {NEGATIVE_TTL}"
        );
        let _ = writeln!(text, "{origin} {DEFAULT_TTL} IN NS ns.{EXAMPLE_ZONE}");
        for r in &self.records {
            let _ = writeln!(text, "{} {} IN {} {}", r.name, r.ttl, r.rtype, r.data);
        }
        text
    }

    /// The zone file's name in a work directory (`example.test.zone`).
    pub fn file_name(&self) -> String {
        format!("{}zone", self.origin)
    }
}

/// Authoritative test data for [`Unbound`].
///
/// [`TestZones::new`] is the zone [`EXAMPLE_ZONE`]:
///
/// | name | records |
/// | --- | --- |
/// | `ns.example.test` | A 192.0.2.53 |
/// | `www.example.test` | A [`WWW_V4`], AAAA [`WWW_V6`] |
/// | `cdn.example.test` | CNAME `www.example.test.` |
/// | `video.example.test` | A [`VIDEO_V4`] |
/// | `big.example.test` | [`BIG_RECORDS`] A records 192.0.2.101 to .140 |
/// | `short.example.test` | A [`SHORT_V4`], TTL [`SHORT_TTL`] |
/// | `private.example.test` | A [`PRIVATE_V4`] |
/// | `loop.example.test` | A [`LOOP_V4`] |
///
/// Every other name in the zone is NXDOMAIN (with the SOA, negative TTL
/// [`NEGATIVE_TTL`]); TTLs are [`DEFAULT_TTL`] unless said otherwise.
/// [`TestZones::with_bulk`] adds the zone [`BULK_ZONE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestZones {
    zones: Vec<Zone>,
}

impl Default for TestZones {
    fn default() -> Self {
        Self::new()
    }
}

impl TestZones {
    /// The zone `example.test.` (see the table above).
    pub fn new() -> TestZones {
        let r = |name: &str, rtype: &str, data: String| Record::new(name, DEFAULT_TTL, rtype, data);
        let mut records = vec![
            r("ns.example.test", "A", "192.0.2.53".into()),
            r("www.example.test", "A", WWW_V4.to_string()),
            r("www.example.test", "AAAA", WWW_V6.to_string()),
            r("cdn.example.test", "CNAME", "www.example.test.".into()),
            r("video.example.test", "A", VIDEO_V4.to_string()),
            Record::new("short.example.test", SHORT_TTL, "A", SHORT_V4.to_string()),
            r("private.example.test", "A", PRIVATE_V4.to_string()),
            r("loop.example.test", "A", LOOP_V4.to_string()),
        ];
        records.extend((0..BIG_RECORDS).map(|i| r("big.example.test", "A", big_v4(i).to_string())));
        TestZones {
            zones: vec![Zone {
                origin: EXAMPLE_ZONE.to_string(),
                records,
            }],
        }
    }

    /// [`TestZones::new`] plus the zone `bulk.test.` with `n` names
    /// `host{i}.bulk.test` (`i` in `0..n`), each with one A record
    /// [`TestZones::bulk_addr`] and TTL [`BULK_TTL`]: distinct names for
    /// cache-miss benchmarks.
    pub fn with_bulk(n: usize) -> TestZones {
        let mut zones = TestZones::new();
        let records = (0..n)
            .map(|i| {
                Record::new(
                    &TestZones::bulk_name(i),
                    BULK_TTL,
                    "A",
                    TestZones::bulk_addr(i).to_string(),
                )
            })
            .collect();
        zones.zones.push(Zone {
            origin: BULK_ZONE.to_string(),
            records,
        });
        zones
    }

    /// Adds a record to the zone it belongs to (the one with the longest
    /// matching origin); fails if no zone holds its name.
    pub fn with_record(mut self, record: Record) -> Result<TestZones> {
        let zone = self
            .zones
            .iter_mut()
            .filter(|z| in_zone(&record.name, &z.origin))
            .max_by_key(|z| z.origin.len())
            .ok_or_else(|| Error::Spec(format!("{} is in none of the test zones", record.name)))?;
        zone.records.push(record);
        Ok(self)
    }

    /// The zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// How many bulk names there are (0 without [`TestZones::with_bulk`]).
    pub fn bulk_count(&self) -> usize {
        self.zones
            .iter()
            .find(|z| z.origin == BULK_ZONE)
            .map_or(0, |z| z.records.len())
    }

    /// The `i`th bulk name, `host{i}.bulk.test.`.
    pub fn bulk_name(i: usize) -> String {
        format!("host{i}.{BULK_ZONE}")
    }

    /// The `i`th bulk name's address: `198.51.100.x` and `203.0.113.x`, x
    /// cycling through 1..=254 (addresses repeat; names do not).
    pub fn bulk_addr(i: usize) -> Ipv4Addr {
        // Both casts are of values below 256 by construction.
        let host = (i % 254) as u8 + 1;
        if (i / 254).is_multiple_of(2) {
            Ipv4Addr::new(198, 51, 100, host)
        } else {
            Ipv4Addr::new(203, 0, 113, host)
        }
    }

    /// Writes a dnsperf query file: `host{i}.bulk.test A` for `i` in `0..n`,
    /// one per line. Names past the zone's [`TestZones::bulk_count`] are
    /// NXDOMAIN.
    pub fn queries_file(path: &Path, n: usize) -> Result<()> {
        TestZones::queries_file_from(path, 0, n)
    }

    /// Like [`TestZones::queries_file`], for `i` in `first..first + n`: a
    /// slice of names that another file did not use.
    pub fn queries_file_from(path: &Path, first: usize, n: usize) -> Result<()> {
        let mut text = String::with_capacity(n * 24);
        for i in first..first + n {
            let _ = writeln!(text, "{} A", TestZones::bulk_name(i));
        }
        write_file(path, &text)
    }

    /// Writes every zone's file into `dir`; returns `(origin, path)` pairs.
    pub fn write_zone_files(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        let mut written = Vec::with_capacity(self.zones.len());
        for zone in &self.zones {
            let path = dir.join(zone.file_name());
            write_file(&path, &zone.zone_file())?;
            written.push((zone.origin.clone(), path));
        }
        Ok(written)
    }
}

/// The `i`th address of `big.example.test` (0-based): 192.0.2.101 upwards.
pub fn big_v4(i: usize) -> Ipv4Addr {
    // BIG_RECORDS is 40, so the sum stays far below 256 for the records served.
    Ipv4Addr::new(192, 0, 2, (101 + i % 150) as u8)
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn in_zone(name: &str, origin: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let origin = origin.to_ascii_lowercase();
    name == origin || name.ends_with(&format!(".{origin}"))
}

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
// Unbound
// ---------------------------------------------------------------------------

/// Files of an [`Unbound`] in its work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnboundFiles {
    conf: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    /// The process's own stdout and stderr (messages before the log opens).
    out: PathBuf,
    key: PathBuf,
    cert: PathBuf,
    /// The test CA that signed `cert` (clients trust this one).
    ca: PathBuf,
    /// The remote-control socket, if its path fits in a `sun_path`.
    control: Option<PathBuf>,
}

impl UnboundFiles {
    fn in_dir(workdir: &Path) -> UnboundFiles {
        let control = workdir.join("unbound.ctl");
        let control = (control.as_os_str().len() <= UNIX_PATH_MAX).then_some(control);
        UnboundFiles {
            conf: workdir.join("unbound.conf"),
            pid: workdir.join("unbound.pid"),
            log: workdir.join("unbound.log"),
            out: workdir.join("unbound.out"),
            key: workdir.join("tls-key.pem"),
            cert: workdir.join("tls-cert.pem"),
            ca: workdir.join("tls-ca.pem"),
            control,
        }
    }
}

/// An authoritative-only unbound serving [`TestZones`], running in a
/// namespace; stopped (by pid: SIGTERM, then SIGKILL after 1 s) on drop.
///
/// It listens on UDP and TCP port 53 and on DNS-over-TLS port 853 of each
/// address it was given, answers anyone (it only lives in a test namespace),
/// never recurses: names outside the test zones are REFUSED, so it sends no
/// query anywhere.
#[derive(Debug)]
pub struct Unbound<'ns> {
    ns: &'ns Netns,
    pid: u32,
    listen: Vec<IpAddr>,
    files: UnboundFiles,
}

impl<'ns> Unbound<'ns> {
    /// Writes the zone files, a self-signed TLS certificate for
    /// [`TLS_HOSTNAME`] and each listen address (`openssl req`), and an
    /// `unbound.conf` into `workdir` (created if missing; one unbound per
    /// directory), checks the configuration with `unbound-checkconf`, starts
    /// `unbound -d` in `ns` and waits up to 5 s for it to answer
    /// `www.example.test A` on every address.
    ///
    /// The addresses must already be on an interface of `ns` (IPv6 ones added
    /// with `nodad`, or bound only once DAD is over). On failure the error
    /// holds unbound's log.
    pub fn start(ns: &'ns Netns, listen: &[IpAddr], zones: &TestZones, workdir: &Path) -> Result<Unbound<'ns>> {
        if listen.is_empty() {
            return Err(Error::Spec("unbound needs at least one listen address".into()));
        }
        check_conf_path(workdir)?;
        std::fs::create_dir_all(workdir).map_err(|e| Error::io(format!("creating {}", workdir.display()), e))?;
        let files = UnboundFiles::in_dir(workdir);
        let zone_files = zones.write_zone_files(workdir)?;
        make_test_cert(&files.key, &files.cert, &files.ca, listen)?;
        write_file(&files.conf, &unbound_conf(listen, workdir, &zone_files, &files))?;
        crate::netns::run_checked(Command::new("unbound-checkconf").arg(&files.conf))?;

        // Leftovers of an earlier run in the same directory would confuse the
        // error messages below.
        for stale in [&files.log, &files.out, &files.pid] {
            let _ = std::fs::remove_file(stale);
        }
        let conf = path_str(&files.conf)?;
        let pid = ns.spawn_logged("unbound", &["-d", "-c", conf], &files.out)?;
        // From here on Drop stops it, also when it never becomes ready.
        let unbound = Unbound {
            ns,
            pid,
            listen: listen.to_vec(),
            files,
        };
        for ip in listen {
            let addr = SocketAddr::new(*ip, DNS_PORT);
            wait_answering(ns, pid, addr, "www.example.test", true).map_err(|e| unbound.with_logs(e))?;
        }
        Ok(unbound)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets it run for as long as its namespace lives (the namespace stops
    /// the processes it started when it is removed); returns its pid.
    pub fn detach(self) -> u32 {
        let pid = self.pid;
        std::mem::forget(self);
        pid
    }

    /// The plain DNS address (port 53) of the first listen address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.listen[0], DNS_PORT)
    }

    /// The plain DNS addresses (port 53), one per listen address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listen.iter().map(|ip| SocketAddr::new(*ip, DNS_PORT)).collect()
    }

    /// The DNS-over-TLS address (port 853) of the first listen address.
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::new(self.listen[0], DOT_PORT)
    }

    /// The TLS certificate (PEM). It is self-signed, so it is also the CA file
    /// a client trusts (`kdig +tls-ca=FILE +tls-hostname=`[`TLS_HOSTNAME`]).
    /// Its subject alternative names are [`TLS_HOSTNAME`] and every listen
    /// address.
    pub fn ca_cert(&self) -> &Path {
        &self.files.ca
    }

    /// The name to check the certificate against, [`TLS_HOSTNAME`].
    pub fn tls_hostname(&self) -> &'static str {
        TLS_HOSTNAME
    }

    /// The generated `unbound.conf`.
    pub fn conf_path(&self) -> &Path {
        &self.files.conf
    }

    /// unbound's log file.
    pub fn log_path(&self) -> &Path {
        &self.files.log
    }

    /// How many queries it has received since it started, all transports
    /// (`total.num.queries` of `unbound-control stats_noreset`; a few ms).
    ///
    /// Fails if the work directory's path is too long for the control socket
    /// (over 100 bytes or so), which is then left out of the configuration.
    pub fn queries_seen(&self) -> Result<u64> {
        if self.files.control.is_none() {
            return Err(Error::Spec(
                "unbound-control is off: the work directory's path is too long for a unix socket".into(),
            ));
        }
        let conf = path_str(&self.files.conf)?;
        let output = self.ns.exec(&["unbound-control", "-c", conf, "stats_noreset"])?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix("total.num.queries="))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| invalid_output("unbound-control stats_noreset has no total.num.queries", &text))
    }

    /// Stops it now (SIGTERM, up to 1 s, SIGKILL) and reaps it; Drop does the
    /// same.
    pub fn stop(self) -> Result<()> {
        // Drop then finds it untracked, and does nothing.
        self.ns.stop_tracked(self.pid)
    }

    /// A start-up failure, with the tail of unbound's log and output.
    fn with_logs(&self, why: String) -> Error {
        let logs = format!("{}{}", log_tail(&self.files.log, 20), log_tail(&self.files.out, 20));
        not_started("unbound", self.ns, why, &logs)
    }
}

impl Drop for Unbound<'_> {
    fn drop(&mut self) {
        // Fails only if it was reaped already.
        let _ = self.ns.stop_tracked(self.pid);
    }
}

/// The `unbound.conf` text for serving `zone_files` on `listen`.
///
/// Options worth knowing:
/// - `local-zone: "test." nodefault`: `test.` is one of unbound's built-in
///   local zones (RFC 6761); those are answered before auth zones, so without
///   this every `*.test` name is NXDOMAIN from the built-in zone.
/// - `local-zone: "." refuse` with each test zone `transparent`: names outside
///   the test zones are REFUSED at once instead of being looked up at the root
///   servers (no root hints, no internet, no recursion).
/// - `module-config: "iterator"`: no validator, so no trust anchor is needed.
/// - `username: ""`, `chroot: ""`, `do-daemonize: no`: runs as root in the
///   foreground, writing only to the work directory.
fn unbound_conf(listen: &[IpAddr], workdir: &Path, zone_files: &[(String, PathBuf)], files: &UnboundFiles) -> String {
    let q = |p: &Path| p.display().to_string();
    let mut c = String::new();
    let mut line = |s: String| {
        c.push_str(&s);
        c.push('\n');
    };
    line("# Written by bulkhead-netns (netns-tests/src/dns.rs) for a test namespace.".into());
    line("server:".into());
    line("    verbosity: 1".into());
    line("    num-threads: 1".into());
    line("    do-daemonize: no".into());
    line("    chroot: \"\"".into());
    line("    username: \"\"".into());
    line(format!("    directory: \"{}\"", q(workdir)));
    line(format!("    pidfile: \"{}\"", q(&files.pid)));
    line(format!("    logfile: \"{}\"", q(&files.log)));
    line("    use-syslog: no".into());
    line("    log-time-ascii: yes".into());
    line("    interface-automatic: no".into());
    line(format!("    port: {DNS_PORT}"));
    for ip in listen {
        line(format!("    interface: {ip}@{DNS_PORT}"));
    }
    for ip in listen {
        line(format!("    interface: {ip}@{DOT_PORT}"));
    }
    line(format!("    tls-port: {DOT_PORT}"));
    line(format!("    tls-service-key: \"{}\"", q(&files.key)));
    line(format!("    tls-service-pem: \"{}\"", q(&files.cert)));
    line("    do-ip4: yes".into());
    line("    do-ip6: yes".into());
    line("    do-udp: yes".into());
    line("    do-tcp: yes".into());
    line("    access-control: 0.0.0.0/0 allow".into());
    line("    access-control: ::/0 allow".into());
    line("    module-config: \"iterator\"".into());
    line("    do-not-query-localhost: yes".into());
    line("    ratelimit: 0".into());
    line("    ip-ratelimit: 0".into());
    line("    local-zone: \"test.\" nodefault".into());
    line("    local-zone: \".\" refuse".into());
    for (origin, _) in zone_files {
        line(format!("    local-zone: \"{origin}\" transparent"));
    }
    for (origin, path) in zone_files {
        line("auth-zone:".into());
        line(format!("    name: \"{origin}\""));
        line(format!("    zonefile: \"{}\"", q(path)));
        line("    for-downstream: yes".into());
        line("    for-upstream: no".into());
        line("    fallback-enabled: no".into());
    }
    line("remote-control:".into());
    match &files.control {
        Some(control) => {
            line("    control-enable: yes".into());
            line(format!("    control-interface: \"{}\"", q(control)));
            line("    control-use-cert: no".into());
        }
        None => line("    control-enable: no".into()),
    }
    c
}

/// Makes a self-signed EC P-256 certificate for [`TLS_HOSTNAME`] and `ips`.
/// A test CA (`ca`, its key beside it) and a server certificate it signs
/// (`key`, `cert`) for [`TLS_HOSTNAME`] and `ips`: a real chain, as strict
/// clients (rustls/webpki) refuse a self-signed CA used as the server's own
/// certificate.
pub fn make_test_cert(key: &Path, cert: &Path, ca: &Path, ips: &[IpAddr]) -> Result<()> {
    let mut san = format!("subjectAltName=DNS:{TLS_HOSTNAME}");
    for ip in ips {
        let _ = write!(san, ",IP:{ip}");
    }
    let ca_key = ca.with_extension("key");
    let csr = cert.with_extension("csr");
    let ext = cert.with_extension("ext");
    write_file(
        &ext,
        &format!("{san}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )?;
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    crate::netns::run_checked(
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(p256)
            .args(["-days", "30", "-subj", "/CN=Bulkhead test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(ca),
    )?;
    crate::netns::run_checked(
        Command::new("openssl")
            .arg("req")
            .args(p256)
            .arg("-subj")
            .arg(format!("/CN={TLS_HOSTNAME}"))
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(&csr),
    )?;
    crate::netns::run_checked(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "30", "-set_serial", "1"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(cert),
    )
    .map(drop)
}

/// Paths go into unbound.conf in double quotes: refuse what would break that.
fn check_conf_path(path: &Path) -> Result<()> {
    let text = path_str(path)?;
    if text.contains(['"', '\n']) {
        return Err(Error::Spec(format!("work directory {text:?} has a quote or newline")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Dnsmasq
// ---------------------------------------------------------------------------

/// A caching forwarder (dnsmasq, DNS only), running in a namespace; stopped by
/// pid on drop.
#[derive(Debug)]
pub struct Dnsmasq<'ns> {
    ns: &'ns Netns,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
}

impl<'ns> Dnsmasq<'ns> {
    /// Starts, in `ns`:
    ///
    /// ```text
    /// dnsmasq --keep-in-foreground --no-resolv --no-hosts --server=UPSTREAM
    ///     --listen-address=LISTEN --bind-interfaces --port=PORT
    ///     --cache-size=N --pid-file=WORKDIR/dnsmasq.pid --user=root
    ///     --log-facility=WORKDIR/dnsmasq.log
    /// ```
    ///
    /// (no DHCP, no query logging: the log gets only start-up lines) and waits
    /// up to 5 s for it to answer a query on `listen:port`, whatever the rcode
    /// (that query, for `ready.example.test`, is forwarded and cached).
    ///
    /// dnsmasq's defaults stay: notably at most 150 forwarded queries in flight
    /// (`--dns-forward-max`), which caps cache-miss throughput under load.
    pub fn start(
        ns: &'ns Netns,
        listen: IpAddr,
        port: u16,
        upstream: IpAddr,
        cache_size: u32,
        workdir: &Path,
    ) -> Result<Dnsmasq<'ns>> {
        std::fs::create_dir_all(workdir).map_err(|e| Error::io(format!("creating {}", workdir.display()), e))?;
        let log = workdir.join("dnsmasq.log");
        let out = workdir.join("dnsmasq.out");
        for stale in [&log, &out] {
            let _ = std::fs::remove_file(stale);
        }
        let args = dnsmasq_args(listen, port, upstream, cache_size, workdir)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = ns.spawn_logged("dnsmasq", &args, &out)?;
        let addr = SocketAddr::new(listen, port);
        let dnsmasq = Dnsmasq { ns, pid, addr, log };
        wait_answering(ns, pid, addr, "ready.example.test", false).map_err(|e| {
            let logs = format!("{}{}", log_tail(&dnsmasq.log, 20), log_tail(&out, 20));
            not_started("dnsmasq", ns, e, &logs)
        })?;
        Ok(dnsmasq)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log file (start-up lines).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stops it now (SIGTERM, up to 1 s, SIGKILL) and reaps it; Drop does the
    /// same.
    pub fn stop(self) -> Result<()> {
        // Drop then finds it untracked, and does nothing.
        self.ns.stop_tracked(self.pid)
    }
}

impl Drop for Dnsmasq<'_> {
    fn drop(&mut self) {
        let _ = self.ns.stop_tracked(self.pid);
    }
}

fn dnsmasq_args(listen: IpAddr, port: u16, upstream: IpAddr, cache_size: u32, workdir: &Path) -> Result<Vec<String>> {
    let dir = path_str(workdir)?;
    Ok(vec![
        "--keep-in-foreground".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        format!("--server={upstream}"),
        format!("--listen-address={listen}"),
        "--bind-interfaces".into(),
        format!("--port={port}"),
        format!("--cache-size={cache_size}"),
        format!("--pid-file={dir}/dnsmasq.pid"),
        "--user=root".into(),
        // There is no syslog in a test; keep its start-up lines for errors.
        format!("--log-facility={dir}/dnsmasq.log"),
    ])
}

// ---------------------------------------------------------------------------
// Readiness and one-off queries
// ---------------------------------------------------------------------------

/// Polls `addr` from `ns` with `name A` until a reply comes (with NOERROR, if
/// `want_noerror`), the process `pid` exits, or [`READY_TIMEOUT`] passes.
///
/// The error is the reason, to go into [`not_started`].
fn wait_answering(
    ns: &Netns,
    pid: u32,
    addr: SocketAddr,
    name: &str,
    want_noerror: bool,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no reply");
    loop {
        match ns.wait_tracked(pid, Duration::ZERO) {
            Ok(None) => {}
            Ok(Some(status)) => return Err(format!("it exited ({status}) before answering on {addr}")),
            Err(e) => return Err(e.to_string()),
        }
        match udp_query(ns, addr, name, TYPE_A, READY_POLL) {
            Ok(Some(reply)) if !want_noerror || reply.rcode == RCODE_NOERROR => return Ok(()),
            Ok(Some(reply)) => last = format!("rcode {}", reply.rcode),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no answer to {name} A on {addr} within {READY_TIMEOUT:?} ({last})"
            ));
        }
        // A refused port answers at once: do not spin.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A DNS reply, as much of it as tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    /// Response code ([`RCODE_NOERROR`], [`RCODE_NXDOMAIN`], ...).
    pub rcode: u8,
    /// AA: the server is authoritative for the name.
    pub authoritative: bool,
    /// TC: the answer did not fit; ask again over TCP.
    pub truncated: bool,
    /// RA: the server offers recursion.
    pub recursion_available: bool,
    /// The answer section, in order.
    pub answers: Vec<Answer>,
}

/// One record of an answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Owner name, lower-cased, with the final dot.
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// The data.
    pub data: AnswerData,
}

/// Record data of an [`Answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    /// An A record.
    A(Ipv4Addr),
    /// An AAAA record.
    Aaaa(Ipv6Addr),
    /// A CNAME record's target, lower-cased, with the final dot.
    Cname(String),
    /// Another type (its number); the data is not decoded.
    Other(u16),
}

impl DnsReply {
    /// The A addresses of the answer.
    pub fn a(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter_map(|a| match a.data {
                AnswerData::A(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }

    /// The AAAA addresses of the answer.
    pub fn aaaa(&self) -> Vec<Ipv6Addr> {
        self.answers
            .iter()
            .filter_map(|a| match a.data {
                AnswerData::Aaaa(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }
}

/// Sends one query (`name`, type `qtype`, class IN, RD set, no EDNS) over UDP
/// from `ns` to `server` and waits up to `timeout` for the reply.
///
/// `Ok(None)` if nothing (or an ICMP error) came back in time; `Err` if the
/// socket could not be made or the reply could not be parsed. Without EDNS the
/// reply is at most 512 bytes: `big.example.test` comes back truncated.
pub fn udp_query(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Option<DnsReply>> {
    // Truncation to 16 bits is the point: any id will do, as long as it changes.
    let id = (SEQ.fetch_add(1, Ordering::Relaxed) as u16) ^ (std::process::id() as u16);
    let query = build_query(id, name, qtype)?;
    let context = || format!("querying {server} from {}", ns.name());
    let reply = ns.run_in(|| -> std::io::Result<Option<Vec<u8>>> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        // Connected, so ICMP errors are reported and strangers filtered out.
        socket.connect(server)?;
        socket.send(&query)?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buf) {
                Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes() => return Ok(Some(buf[..n].to_vec())),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    })?;
    match reply.map_err(|e| Error::io(context(), e))? {
        None => Ok(None),
        Some(bytes) => parse_reply(&bytes).map(Some).ok_or_else(|| {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            invalid_output(&format!("{}: malformed reply", context()), &hex)
        }),
    }
}

fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: RD. One question, no other records.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&l| (1..=63).contains(&l))
            .ok_or_else(|| Error::Spec(format!("bad DNS name {name:?}")))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// Parses the header and the answer section; `None` if malformed.
fn parse_reply(msg: &[u8]) -> Option<DnsReply> {
    let u16_at = |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?])) };
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return None;
    }
    let qdcount = u16_at(4)?;
    let ancount = u16_at(6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut answers = Vec::with_capacity(usize::from(ancount));
    let truncated = flags & 0x0200 != 0;
    for _ in 0..ancount {
        // A truncated reply may end mid-section.
        let Some((name, next)) = read_name(msg, pos) else {
            if truncated {
                break;
            }
            return None;
        };
        let rtype = u16_at(next)?;
        let ttl = u32::from_be_bytes(msg.get(next + 4..next + 8)?.try_into().ok()?);
        let rdlen = usize::from(u16_at(next + 8)?);
        let rdata_at = next + 10;
        let rdata = msg.get(rdata_at..rdata_at + rdlen)?;
        let data = match (rtype, rdlen) {
            (TYPE_A, 4) => AnswerData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
            (TYPE_AAAA, 16) => AnswerData::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?)),
            (TYPE_CNAME, _) => AnswerData::Cname(read_name(msg, rdata_at)?.0),
            _ => AnswerData::Other(rtype),
        };
        answers.push(Answer { name, ttl, data });
        pos = rdata_at + rdlen;
    }
    Some(DnsReply {
        rcode: (flags & 0x000f) as u8,
        authoritative: flags & 0x0400 != 0,
        truncated,
        recursion_available: flags & 0x0080 != 0,
        answers,
    })
}

/// Reads a (possibly compressed) name at `pos`: the name, lower-cased with its
/// final dot, and where the data after it starts.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    // Compression pointers can loop; a real name has at most 127 labels.
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        match len {
            0 => {
                if name.is_empty() {
                    name.push('.');
                }
                return Some((name, end.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let target = usize::from(u16::from_be_bytes([l & 0x3f, *msg.get(pos + 1)?]));
                end.get_or_insert(pos + 2);
                pos = target;
            }
            l if l & 0xc0 == 0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(l))?;
                name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
                name.push('.');
                pos += 1 + usize::from(l);
            }
            _ => return None,
        }
    }
    None
}

// ---------------------------------------------------------------------------
// dnsperf
// ---------------------------------------------------------------------------

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
    server: SocketAddr,
    queries: PathBuf,
    seconds: u32,
    clients: u32,
    threads: Option<u32>,
    qps: Option<u32>,
    max_runs: Option<u32>,
    outstanding: Option<u32>,
    timeout_secs: u32,
    transport: Transport,
    latencies: bool,
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
fn run_dnsperf(args: &[String]) -> std::io::Result<(std::process::ExitStatus, Collector, String)> {
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
struct Collector {
    text: String,
    latencies: Vec<f64>,
    timeouts: u64,
}

impl Collector {
    /// How many `[Timeout]` lines are kept in the text.
    const KEEP_TIMEOUT_LINES: u64 = 5;

    fn push(&mut self, line: &str) {
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
        assert_eq!(server_part.matches("interface: ").count(), 4);

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
