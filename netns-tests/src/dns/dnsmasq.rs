//! dnsmasq as a caching forwarder, the peer in the DNS benchmarks.

use super::*;

/// A caching forwarder (dnsmasq, DNS only), running in a namespace; stopped by
/// pid on drop.
#[derive(Debug)]
pub struct Dnsmasq<'ns> {
    pub(crate) ns: &'ns Netns,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) log: PathBuf,
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

pub(crate) fn dnsmasq_args(
    listen: IpAddr,
    port: u16,
    upstream: IpAddr,
    cache_size: u32,
    workdir: &Path,
) -> Result<Vec<String>> {
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
