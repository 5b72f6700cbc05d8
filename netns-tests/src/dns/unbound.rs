//! Unbound, the ISP's resolver in the tests: its config, its TLS certificate, its life.

use super::*;

/// Files of an [`Unbound`] in its work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnboundFiles {
    pub(crate) conf: PathBuf,
    pub(crate) pid: PathBuf,
    pub(crate) log: PathBuf,
    /// The process's own stdout and stderr (messages before the log opens).
    pub(crate) out: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) cert: PathBuf,
    /// The test CA that signed `cert` (clients trust this one).
    pub(crate) ca: PathBuf,
    /// The remote-control socket, if its path fits in a `sun_path`.
    pub(crate) control: Option<PathBuf>,
}

impl UnboundFiles {
    pub(crate) fn in_dir(workdir: &Path) -> UnboundFiles {
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
/// It listens on UDP and TCP port 53, on DNS-over-TLS port 853 and on
/// DNS-over-HTTPS port [`DOH_PORT`] (HTTP/2, path [`DOH_PATH`]) of each
/// address it was given, answers anyone (it only lives in a test namespace),
/// never recurses: names outside the test zones are REFUSED, so it sends no
/// query anywhere.
#[derive(Debug)]
pub struct Unbound<'ns> {
    pub(crate) ns: &'ns Netns,
    pub(crate) pid: u32,
    pub(crate) listen: Vec<IpAddr>,
    pub(crate) files: UnboundFiles,
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

    /// The DNS-over-HTTPS URL path (on [`DOH_PORT`] of every listen address).
    pub fn doh_path(&self) -> &'static str {
        DOH_PATH
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
    pub(crate) fn with_logs(&self, why: String) -> Error {
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
pub(crate) fn unbound_conf(
    listen: &[IpAddr],
    workdir: &Path,
    zone_files: &[(String, PathBuf)],
    files: &UnboundFiles,
) -> String {
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
    for ip in listen {
        line(format!("    interface: {ip}@{DOH_PORT}"));
    }
    line(format!("    tls-port: {DOT_PORT}"));
    // DNS over HTTPS (HTTP/2 only in unbound), same certificate.
    line(format!("    https-port: {DOH_PORT}"));
    line(format!("    http-endpoint: \"{DOH_PATH}\""));
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
pub(crate) fn check_conf_path(path: &Path) -> Result<()> {
    let text = path_str(path)?;
    if text.contains(['"', '\n']) {
        return Err(Error::Spec(format!("work directory {text:?} has a quote or newline")));
    }
    Ok(())
}
