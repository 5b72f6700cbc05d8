//! The resolvers under test (Bulkhead and dnsmasq): how each is started, stopped and read.

use super::*;

/// A resolver under test. [`Contender::start`] is called once per measured
/// run, so every run begins with a cold cache.
pub(crate) trait Contender {
    /// Its name in the tables.
    fn label(&self) -> String;

    /// Starts it in `ns`, answering DNS on `listen` and forwarding to
    /// `upstream` (port 53), with its files in `workdir`. `client` is the
    /// namespace the load comes from (for readiness checks). Returns once it
    /// answers; dropping the returned guard must stop it.
    fn start<'ns>(
        &self,
        ns: &'ns Netns,
        client: &Netns,
        listen: SocketAddr,
        upstream: IpAddr,
        workdir: &Path,
    ) -> Result<Box<dyn Running + 'ns>>;
}

/// A started contender; dropping it stops it.
pub(crate) trait Running {
    /// Its pid, for the log and for `/proc`.
    fn pid(&self) -> u32;

    /// Its own counters after a run, one line, if it has any.
    fn counters(&self) -> Option<String> {
        None
    }
}

impl Running for Dnsmasq<'_> {
    fn pid(&self) -> u32 {
        Dnsmasq::pid(self)
    }
}

/// dnsmasq as a caching forwarder with a given cache size, optionally
/// behind Bulkhead's ruleset (`--a-firewall`: the same conntrack and chains
/// on its packets as on Bulkhead's).
pub(crate) struct DnsmasqContender {
    pub(crate) cache_size: u32,
    /// `nft -j list ruleset` of Bulkhead's daemon in this namespace, loaded
    /// before dnsmasq starts and flushed after it stops.
    pub(crate) firewall: Option<PathBuf>,
}

/// dnsmasq behind a loaded ruleset; dropping it stops dnsmasq, then flushes
/// the ruleset (this namespace's only).
struct DnsmasqBehindFirewall<'ns> {
    dnsmasq: Option<Dnsmasq<'ns>>,
    ns: &'ns Netns,
}

impl Running for DnsmasqBehindFirewall<'_> {
    fn pid(&self) -> u32 {
        self.dnsmasq.as_ref().map_or(0, Dnsmasq::pid)
    }
}

impl Drop for DnsmasqBehindFirewall<'_> {
    fn drop(&mut self) {
        drop(self.dnsmasq.take());
        if let Err(e) = self.ns.exec(&["nft", "flush", "ruleset"]) {
            eprintln!("removing the ruleset in {}: {e}", self.ns.name());
        }
    }
}

impl Contender for DnsmasqContender {
    fn label(&self) -> String {
        match self.firewall {
            Some(_) => format!("dnsmasq (cache {}) behind Bulkhead's ruleset", self.cache_size),
            None => format!("dnsmasq (cache {})", self.cache_size),
        }
    }

    fn start<'ns>(
        &self,
        ns: &'ns Netns,
        _client: &Netns,
        listen: SocketAddr,
        upstream: IpAddr,
        workdir: &Path,
    ) -> Result<Box<dyn Running + 'ns>> {
        let Some(ruleset) = &self.firewall else {
            let dnsmasq = Dnsmasq::start(ns, listen.ip(), listen.port(), upstream, self.cache_size, workdir)?;
            return Ok(Box::new(dnsmasq));
        };
        let path = ruleset.display().to_string();
        let mut running = DnsmasqBehindFirewall { dnsmasq: None, ns };
        ns.exec(&["nft", "-j", "-f", &path])?;
        running.dnsmasq = Some(Dnsmasq::start(
            ns,
            listen.ip(),
            listen.port(),
            upstream,
            self.cache_size,
            workdir,
        )?);
        Ok(Box::new(running))
    }
}

/// Bulkhead's daemon (the whole router; its resolver is what is measured).
pub(crate) struct BulkheadContender {
    pub(crate) binary: PathBuf,
    /// The shipped policy files to copy.
    pub(crate) policies: PathBuf,
    /// The client's addresses (all of one device, told to the daemon).
    pub(crate) clients: Vec<Ipv4Addr>,
    pub(crate) cache_entries: u32,
    /// Extra `[dns]` lines (`KEY = VALUE`), for experiments.
    pub(crate) extra_dns: Vec<String>,
    /// Where to save the daemon's ruleset (`nft -j list ruleset`) when it
    /// first stops, for `--a-firewall`.
    pub(crate) save_ruleset: Option<PathBuf>,
}

/// A running Bulkhead daemon; dropping it stops it (SIGTERM by pid) and
/// removes the nftables tables it leaves behind.
pub(crate) struct BulkheadRunning<'ns> {
    pub(crate) ns: &'ns Netns,
    pub(crate) pid: u32,
    pub(crate) binary: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) clients: Vec<Ipv4Addr>,
    pub(crate) save_ruleset: Option<PathBuf>,
}

impl BulkheadContender {
    /// The main configuration file's text.
    pub(crate) fn config(&self, listen: SocketAddr, upstream: IpAddr, workdir: &Path) -> String {
        let dir = workdir.display();
        let mut c = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(c, "# Written by dns_peer_bench for a benchmark namespace.");
        let _ = writeln!(c, "state_dir = \"{dir}/state\"");
        let _ = writeln!(c, "policies_dir = \"{dir}/policies\"");
        let _ = writeln!(c, "control_socket = \"{dir}/control.sock\"\n");
        let _ = writeln!(c, "[wan]\ninterface = \"{WAN_IF}\"\n");
        let _ = writeln!(
            c,
            "[[segments]]\nname = \"lan\"\ninterface = \"{LAN_IF}\"\nkind = \"existing\""
        );
        let _ = writeln!(c, "ipv4 = \"{RESOLVER}/{RESOLVER_PREFIX}\"\ndhcp = \"off\"\n");
        let _ = writeln!(c, "[web]\nlisten = []\n");
        let _ = writeln!(c, "[dns]\nlisten = [\"{listen}\"]\nupstreams = [\"{upstream}\"]");
        let _ = writeln!(c, "cache_entries = {}", self.cache_entries);
        let _ = writeln!(c, "client_qps = 100000\nbypass = \"off\"");
        for line in &self.extra_dns {
            let _ = writeln!(c, "{line}");
        }
        c
    }

    /// The shipped policies plus the client pinned to `trusted`.
    pub(crate) fn write_policies(&self, dir: &Path) -> Result<()> {
        let shipped = &self.policies;
        let entries = std::fs::read_dir(shipped).map_err(|e| io_error(shipped, e))?;
        for entry in entries {
            let path = entry.map_err(|e| io_error(shipped, e))?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                if let Some(name) = path.file_name() {
                    std::fs::copy(&path, dir.join(name)).map_err(|e| io_error(&path, e))?;
                }
            }
        }
        let bench = dir.join("90-bench.toml");
        let text = format!(
            "# The benchmark's client (dnsperf): a known device in a zone that reaches the internet.\n\
             [[devices]]\nmac = \"{CLIENT_MAC}\"\nzone = \"trusted\"\nname = \"dnsperf\"\n"
        );
        std::fs::write(&bench, text).map_err(|e| io_error(&bench, e))
    }
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        context: path.display().to_string(),
        source,
    }
}

/// Runs `bulkhead --config CONFIG args...` in `ns`; its stdout, or an error
/// with its stdout and stderr.
pub(crate) fn bulkhead_cli(ns: &Netns, binary: &Path, config: &Path, args: &[&str]) -> Result<String> {
    let binary = binary.display().to_string();
    let config = config.display().to_string();
    let mut all = vec![binary.as_str(), "--config", config.as_str()];
    all.extend_from_slice(args);
    let output = ns.exec(&all)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last `lines` lines of a file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Contender for BulkheadContender {
    fn label(&self) -> String {
        format!("Bulkhead (cache {})", self.cache_entries)
    }

    fn start<'ns>(
        &self,
        ns: &'ns Netns,
        client: &Netns,
        listen: SocketAddr,
        upstream: IpAddr,
        workdir: &Path,
    ) -> Result<Box<dyn Running + 'ns>> {
        if listen.ip() != IpAddr::V4(RESOLVER) {
            return Err(Error::Spec(format!(
                "Bulkhead answers on its segment address {RESOLVER}, not {listen}"
            )));
        }
        // A cold start every time: no store, devices or leases of an earlier run.
        if workdir.exists() {
            std::fs::remove_dir_all(workdir).map_err(|e| io_error(workdir, e))?;
        }
        let policies = workdir.join("policies");
        for dir in [&policies, &workdir.join("state")] {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        self.write_policies(&policies)?;
        let config = workdir.join("bulkhead.toml");
        std::fs::write(&config, self.config(listen, upstream, workdir)).map_err(|e| io_error(&config, e))?;
        let check = bulkhead_cli(ns, &self.binary, &config, &["check-config"])
            .map_err(|e| Error::Spec(format!("bulkhead check-config rejects {}: {e}", config.display())))?;
        if !check.trim().is_empty() {
            eprintln!("bulkhead check-config: {}", check.trim());
        }
        let log = workdir.join("bulkhead.log");
        let binary = self.binary.display().to_string();
        let config_arg = config.display().to_string();
        let pid = ns.spawn_logged(&binary, &["--config", &config_arg, "daemon"], &log)?;
        // From here on Drop stops it, also when it never becomes ready.
        let running = BulkheadRunning {
            ns,
            pid,
            binary: self.binary.clone(),
            config,
            log,
            clients: self.clients.clone(),
            save_ruleset: self.save_ruleset.clone(),
        };
        running.wait_ready(client, listen)?;
        Ok(Box::new(running))
    }
}

impl BulkheadRunning<'_> {
    /// Waits until it answers the client at all (REFUSED while the client is
    /// still an unknown device), tells it the client's address, then waits
    /// for a NOERROR answer (forwarded to the upstream).
    pub(crate) fn wait_ready(&self, client: &Netns, listen: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + BULKHEAD_READY;
        let fail = |why: String| {
            Error::Spec(format!(
                "bulkhead (pid {}) did not become ready: {why}\n--- {}:\n{}",
                self.pid,
                self.log.display(),
                tail(&self.log, 30)
            ))
        };
        let mut told = false;
        let mut last = String::from("no reply");
        loop {
            match self.ns.wait_tracked(self.pid, Duration::ZERO) {
                Ok(None) => {}
                Ok(Some(status)) => return Err(fail(format!("it exited ({status})"))),
                Err(e) => return Err(fail(e.to_string())),
            }
            match dns::udp_query(client, listen, "www.example.test", TYPE_A, Duration::from_millis(200)) {
                Ok(Some(reply)) if reply.rcode == RCODE_NOERROR && told => return Ok(()),
                Ok(Some(reply)) => {
                    last = format!("rcode {}", reply.rcode);
                    if !told {
                        for ip in &self.clients {
                            let ip = ip.to_string();
                            bulkhead_cli(
                                self.ns,
                                &self.binary,
                                &self.config,
                                &["device", "add", CLIENT_MAC, "--ip", &ip],
                            )
                            .map_err(|e| fail(format!("device add {CLIENT_MAC} --ip {ip}: {e}")))?;
                        }
                        told = true;
                    }
                }
                Ok(None) => {}
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "no NOERROR answer on {listen} within {BULKHEAD_READY:?} ({last})"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Running for BulkheadRunning<'_> {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn counters(&self) -> Option<String> {
        match bulkhead_cli(self.ns, &self.binary, &self.config, &["dns", "status"]) {
            Ok(text) => Some(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            Err(e) => Some(format!("bulkhead dns status failed: {e}")),
        }
    }
}

impl Drop for BulkheadRunning<'_> {
    fn drop(&mut self) {
        // Fails only if it was reaped already.
        let _ = self.ns.stop_tracked(self.pid);
        if let Some(path) = self.save_ruleset.as_ref().filter(|p| !p.exists()) {
            match self.ns.exec(&["nft", "-j", "list", "ruleset"]) {
                Ok(out) => {
                    if let Err(e) = std::fs::write(path, &out.stdout) {
                        eprintln!("saving bulkhead's ruleset to {}: {e}", path.display());
                    }
                }
                Err(e) => eprintln!("reading bulkhead's ruleset in {}: {e}", self.ns.name()),
            }
        }
        // The daemon leaves its rules in force when it stops (as a router
        // must); the next contender runs without them. Only this namespace's.
        if let Err(e) = self.ns.exec(&["nft", "flush", "ruleset"]) {
            eprintln!("removing bulkhead's nftables tables in {}: {e}", self.ns.name());
        }
    }
}
