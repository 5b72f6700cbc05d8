//! Avahi (Debian's avahi-daemon and avahi-utils) in a namespace: a real mDNS
//! stack for a test host, to announce services and browse for them.
//!
//! Each host gets its own D-Bus system bus (a `dbus-daemon` listening on a
//! socket in the test's directory; clients find it through
//! `DBUS_SYSTEM_BUS_ADDRESS`) and its own `/run` (avahi-daemon keeps its pid
//! file and socket in `/run/avahi-daemon`, so two daemons on one file system
//! need a private mount namespace each). Nothing of the host's bus, avahi or
//! `/run` is touched. The processes are tracked by the namespace: stopped by
//! pid on drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// One avahi-daemon (and its bus) in a namespace.
#[derive(Debug)]
pub struct Avahi<'ns> {
    ns: &'ns Netns,
    bus: String,
    dbus_pid: u32,
    daemon_pid: u32,
    dir: PathBuf,
}

/// One service avahi-browse resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Instance name.
    pub name: String,
    /// Service type.
    pub service_type: String,
    /// Host name.
    pub host: String,
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// TXT, as avahi-browse prints it.
    pub txt: String,
}

impl<'ns> Avahi<'ns> {
    /// Starts a bus and avahi-daemon in `ns` (IPv4 only, on `interface`,
    /// under `host_name`), files in `dir`; waits until it answers.
    pub fn start(ns: &'ns Netns, dir: &Path, host_name: &str, interface: &str) -> Result<Avahi<'ns>> {
        let io = |what: &str, e| Error::io(format!("{what} in {}", dir.display()), e);
        std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
        let socket = dir.join("bus");
        let system = std::fs::read_to_string("/usr/share/dbus-1/system.conf")
            .map_err(|e| Error::io("reading /usr/share/dbus-1/system.conf (is dbus installed?)", e))?;
        let conf: String = system
            .lines()
            .filter(|l| !l.contains("<pidfile>") && !l.contains("<user>"))
            .map(|l| {
                if l.contains("<listen>") {
                    format!("  <listen>unix:path={}</listen>", socket.display())
                } else if l.contains("<includedir>system.d</includedir>") {
                    "  <includedir>/usr/share/dbus-1/system.d</includedir>".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join("dbus.conf"), conf).map_err(|e| io("writing dbus.conf", e))?;
        std::fs::write(
            dir.join("avahi.conf"),
            format!(
                "[server]\nhost-name={host_name}\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces={interface}\n\
                 enable-dbus=yes\nratelimit-interval-usec=0\n[publish]\npublish-hinfo=no\npublish-workstation=no\n\
                 [reflector]\nenable-reflector=no\n"
            ),
        )
        .map_err(|e| io("writing avahi.conf", e))?;
        let dbus_conf = format!("--config-file={}", dir.join("dbus.conf").display());
        let dbus_pid = ns.spawn_logged(
            "dbus-daemon",
            &[&dbus_conf, "--nofork", "--nopidfile"],
            &dir.join("dbus.log"),
        )?;
        let bus = format!("DBUS_SYSTEM_BUS_ADDRESS=unix:path={}", socket.display());
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && exec avahi-daemon --no-drop-root --no-chroot \
             --no-rlimits -f {}",
            dir.join("avahi.conf").display()
        );
        let daemon_pid = ns.spawn_logged(
            "env",
            &[&bus, "unshare", "--mount", "sh", "-c", &script],
            &dir.join("avahi.log"),
        )?;
        let avahi = Avahi {
            ns,
            bus,
            dbus_pid,
            daemon_pid,
            dir: dir.to_path_buf(),
        };
        // Up when its startup completed (it has probed its host name).
        let log = dir.join("avahi.log");
        for _ in 0..100 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server startup complete") {
                return Ok(avahi);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::NotReady(format!(
            "avahi-daemon in {} did not start within 5 s:\n{}",
            ns.name(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )))
    }

    /// Announces a service (`avahi-publish -s`) until the returned pid is
    /// stopped (then avahi says goodbye).
    pub fn publish(&self, name: &str, service_type: &str, port: u16, txt: &[&str]) -> Result<u32> {
        let port = port.to_string();
        let mut args = vec![self.bus.as_str(), "avahi-publish", "-s", name, service_type, &port];
        args.extend_from_slice(txt);
        let pid = self
            .ns
            .spawn_logged("env", &args, &self.dir.join(format!("publish-{service_type}.log")))?;
        Ok(pid)
    }

    /// Announces a service on another host name than avahi's own
    /// (`avahi-publish -s -H HOST`), e.g. one [`Avahi::publish_address`]
    /// made up.
    pub fn publish_on(&self, host: &str, name: &str, service_type: &str, port: u16, txt: &[&str]) -> Result<u32> {
        let port = port.to_string();
        let mut args = vec![
            self.bus.as_str(),
            "avahi-publish",
            "-s",
            "-H",
            host,
            name,
            service_type,
            &port,
        ];
        args.extend_from_slice(txt);
        self.ns.spawn_logged(
            "env",
            &args,
            &self.dir.join(format!("publish-{host}-{service_type}.log")),
        )
    }

    /// Announces `host` at `address` (`avahi-publish -a -R`: an A record,
    /// any address, no reverse record).
    pub fn publish_address(&self, host: &str, address: &str) -> Result<u32> {
        self.ns.spawn_logged(
            "env",
            &[self.bus.as_str(), "avahi-publish", "-a", "-R", host, address],
            &self.dir.join(format!("publish-address-{host}.log")),
        )
    }

    /// Stops a publisher (avahi withdraws the service: a goodbye).
    pub fn unpublish(&self, pid: u32) -> Result<()> {
        self.ns.stop_tracked(pid)
    }

    /// `avahi-browse -rtp TYPE`: the resolved services (IPv4) it found
    /// before it printed "all for now" (or `timeout`).
    pub fn browse(&self, service_type: &str, timeout: Duration) -> Result<Vec<Resolved>> {
        let secs = timeout.as_secs().max(1).to_string();
        let out = self.ns.exec_output(&[
            "env",
            &self.bus,
            "timeout",
            &secs,
            "avahi-browse",
            "-r",
            "-t",
            "-p",
            service_type,
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter(|l| l.starts_with("=;"))
            .filter_map(|l| {
                let f: Vec<&str> = l.splitn(10, ';').collect();
                (f.len() == 10).then(|| Resolved {
                    name: unescape(f[3]),
                    service_type: f[4].to_string(),
                    host: f[6].to_string(),
                    address: f[7].to_string(),
                    port: f[8].parse().unwrap_or(0),
                    txt: f[9].to_string(),
                })
            })
            .collect())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("avahi.log")).unwrap_or_default()
    }
}

/// avahi-browse -p writes a name's special characters as `\DDD` (decimal).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u8>().ok());
        match (bytes[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Avahi<'_> {
    fn drop(&mut self) {
        let _ = self.ns.stop_tracked(self.daemon_pid);
        let _ = self.ns.stop_tracked(self.dbus_pid);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn browse_names_are_unescaped() {
        assert_eq!(super::unescape("Living\\032Room\\032TV"), "Living Room TV");
        assert_eq!(super::unescape("a\\092b\\0"), "a\\b\\0");
    }
}
