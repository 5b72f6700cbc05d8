//! The discovering demo home: hosts have no addresses until they ask. Bulkhead's
//! DHCP server answers real clients (busybox `udhcpc`, ISC `dhclient`), radvd
//! sends router adverts so hosts take SLAAC addresses, and hosts with a service
//! announce it over mDNS. Bulkhead learns every device from that traffic alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{DemoClient, DemoHome, DemoHost, HOSTS};

/// Numbers the announcers' log files.
static ANNOUNCERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What a host tells the DHCP server about itself.
#[derive(Debug, Clone, Copy)]
pub struct DhcpIdentity<'a> {
    /// Host name (option 12).
    pub hostname: &'a str,
    /// Vendor class (option 60), empty for the client's default.
    pub vendor_class: &'a str,
    /// Which client sends it.
    pub client: DemoClient,
}

/// One mDNS service a host announces.
#[derive(Debug, Clone)]
pub struct MdnsService {
    /// Service type, e.g. `_sonos._tcp`.
    pub service_type: String,
    /// Instance name (at most 63 bytes: one DNS label).
    pub instance: String,
    /// Host name (letters, digits, `-`).
    pub host: String,
    /// The host's address.
    pub ipv4: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// TXT pairs.
    pub txt: Vec<(String, String)>,
}

/// busybox udhcpc's event script: configure what the server gave, nothing else
/// (never /etc/resolv.conf: the namespaces share the host's files).
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$subnet" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"#;

/// ISC dhclient's event script, same rules.
const DHCLIENT_SCRIPT: &str = r#"#!/bin/sh
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr flush dev "$interface"
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_routers" ] && ip route replace default via "${new_routers%% *}" dev "$interface"
    ;;
  EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev "$interface" ;;
esac
exit 0
"#;

impl DemoHome {
    /// Writes the DHCP client scripts and radvd's config into the demo dir.
    pub(super) fn write_discovery_files(&self) -> anyhow::Result<()> {
        for (name, text) in [("udhcpc.script", UDHCPC_SCRIPT), ("dhclient.script", DHCLIENT_SCRIPT)] {
            let p = self.dir.join(name);
            std::fs::write(&p, text)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
        let mut radvd = String::new();
        for s in self.home.segments() {
            if let Some(v6) = s.gateway_v6 {
                radvd.push_str(&format!(
                    "interface {} {{\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 5;\n  prefix {}/{} {{ AdvOnLink on; AdvAutonomous on; }};\n}};\n",
                    s.bridge,
                    v6.trunc().addr(),
                    v6.prefix_len()
                ));
            }
        }
        std::fs::write(self.dir.join("radvd.conf"), radvd)?;
        Ok(())
    }

    /// Starts radvd in the router namespace (after the daemon made the bridges).
    pub fn start_router_adverts(&self) -> anyhow::Result<()> {
        let conf = self.dir.join("radvd.conf");
        let pid = self.dir.join("radvd.pid");
        let log = self.dir.join("radvd.log");
        self.home.router().spawn_logged(
            "radvd",
            &[
                "--nodaemon",
                "--config",
                &conf.to_string_lossy(),
                "--pidfile",
                &pid.to_string_lossy(),
                "--logmethod",
                "stderr",
            ],
            &log,
        )?;
        Ok(())
    }

    /// One host joins the network the way a real device does: SLAAC settings,
    /// then its DHCP client with its hostname and vendor class; returns the
    /// address it was given.
    pub fn join(&self, host: &DemoHost) -> anyhow::Result<Ipv4Addr> {
        self.join_as(
            host.name,
            &DhcpIdentity {
                hostname: host.hostname,
                vendor_class: host.vendor_class,
                client: host.client,
            },
        )
    }

    /// Like [`DemoHome::join`], for any host namespace of the home (also hosts
    /// outside [`HOSTS`]) with the identity given: `udhcpc` passes the host
    /// name on as given (hostile names included), `dhclient` needs a quotable
    /// one.
    pub fn join_as(&self, name: &str, id: &DhcpIdentity<'_>) -> anyhow::Result<Ipv4Addr> {
        let ns = self.home.ns(name)?;
        // Privacy addresses on the laptop (as laptops do): they must be tied to
        // its MAC like the stable ones.
        let tempaddr = if matches!(id.client, DemoClient::Dhclient) {
            "2"
        } else {
            "0"
        };
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.eth0.accept_dad=0",
            &format!("net.ipv6.conf.eth0.use_tempaddr={tempaddr}"),
        ])?;
        let log = self.dir.join(format!("dhcp-{name}.log"));
        match id.client {
            DemoClient::Udhcpc => {
                // busybox's option area is 308 bytes: with a longer name its
                // REQUEST loses the requested address and is NAKed forever.
                anyhow::ensure!(
                    id.hostname.len() <= 200,
                    "udhcpc cannot send a {}-byte host name with its other options",
                    id.hostname.len()
                );
                let script = self.dir.join("udhcpc.script");
                let mut args = vec![
                    "udhcpc".to_string(),
                    "-i".into(),
                    "eth0".into(),
                    "-f".into(),
                    "-q".into(),
                    "-n".into(),
                    "-t".into(),
                    "5".into(),
                    "-T".into(),
                    "1".into(),
                    "-s".into(),
                    script.to_string_lossy().into_owned(),
                    "-x".into(),
                    udhcpc_hostname_option(id.hostname),
                ];
                if !id.vendor_class.is_empty() {
                    args.extend(["-V".into(), id.vendor_class.into()]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = ns.exec(&[&["busybox"], args.as_slice()].concat());
                let text = match &out {
                    Ok(o) => format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    Err(e) => format!("{e:#}"),
                };
                std::fs::write(&log, &text)?;
                out.with_context(|| format!("udhcpc on {name} got no lease:\n{text}\n{}", self.log()))?;
            }
            DemoClient::Dhclient => {
                // Inside dhclient.conf's double quotes: printable ASCII, no quote
                // or backslash.
                let quotable = |s: &str| {
                    s.chars()
                        .all(|c| c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\'))
                };
                anyhow::ensure!(
                    quotable(id.hostname) && quotable(id.vendor_class),
                    "dhclient's config cannot carry {:?} / {:?}: use udhcpc for hostile names",
                    id.hostname,
                    id.vendor_class
                );
                let conf = self.dir.join(format!("dhclient-{name}.conf"));
                let mut c = format!("send host-name \"{}\";\n", id.hostname);
                if !id.vendor_class.is_empty() {
                    c.push_str(&format!("send vendor-class-identifier \"{}\";\n", id.vendor_class));
                }
                c.push_str(
                    "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n",
                );
                std::fs::write(&conf, c)?;
                let lease = self.dir.join(format!("dhclient-{name}.leases"));
                let pidf = self.dir.join(format!("dhclient-{name}.pid"));
                let script = self.dir.join("dhclient.script");
                // Foreground (-d) so the harness tracks and ends it.
                ns.spawn_logged(
                    "dhclient",
                    &[
                        "-d",
                        "-4",
                        "-cf",
                        &conf.to_string_lossy(),
                        "-lf",
                        &lease.to_string_lossy(),
                        "-pf",
                        &pidf.to_string_lossy(),
                        "-sf",
                        &script.to_string_lossy(),
                        "eth0",
                    ],
                    &log,
                )?;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(a) = self.host_ipv4(name)? {
                return Ok(a);
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} got no address within 15 s\n--- client log:\n{}\n--- daemon log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the host's mDNS announcements, if it has any (one announcer per
    /// service).
    pub fn announce(&self, host: &DemoHost, ipv4: Ipv4Addr) -> anyhow::Result<()> {
        for m in host.mdns {
            self.announce_service(
                host.name,
                &MdnsService {
                    service_type: m.service_type.to_string(),
                    instance: m.instance.to_string(),
                    host: host.hostname.to_string(),
                    ipv4,
                    port: m.port,
                    txt: m.txt.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                },
            )?;
        }
        Ok(())
    }

    /// Starts `bulkhead mdns-announce` for one service in host namespace
    /// `name` (tracked: stopped with the home).
    pub fn announce_service(&self, name: &str, m: &MdnsService) -> anyhow::Result<()> {
        let ns = self.home.ns(name)?;
        let bin = self.bin.to_string_lossy().into_owned();
        let ip = m.ipv4.to_string();
        let port = m.port.to_string();
        let mut args: Vec<String> = [
            "mdns-announce",
            "--interface",
            "eth0",
            "--type",
            &m.service_type,
            "--name",
            &m.instance,
            "--host",
            &m.host,
            "--ip",
            &ip,
            "--port",
            &port,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in &m.txt {
            args.push("--txt".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let n = ANNOUNCERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ns.spawn_logged(&bin, &args, &self.dir.join(format!("mdns-{name}-{n}.log")))?;
        Ok(())
    }

    /// Starts Debian's dnsmasq as the lan segment's DHCP server (observer-mode
    /// tests, the DHCP benchmark), writing its lease file to `lease_file`;
    /// `range` is dnsmasq's `--dhcp-range`, `extra` more options. Returns its pid
    /// (a tracked process of the router namespace). Never run it while Bulkhead
    /// serves the same segment.
    pub fn start_dnsmasq(&self, range: &str, lease_file: &Path, extra: &[&str]) -> anyhow::Result<u32> {
        let range = format!("--dhcp-range={range}");
        let leases = format!("--dhcp-leasefile={}", lease_file.display());
        let pid_file = format!("--pid-file={}", self.dir.join("dnsmasq.pid").display());
        let mut args = vec![
            "--keep-in-foreground",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--interface=br-lan",
            "--except-interface=lo",
            range.as_str(),
            leases.as_str(),
            pid_file.as_str(),
        ];
        args.extend_from_slice(extra);
        Ok(self
            .home
            .router()
            .spawn_logged("dnsmasq", &args, &self.dir.join("dnsmasq.log"))?)
    }

    /// Every host of [`HOSTS`] joins (DHCP, SLAAC, mDNS), all at once as after
    /// a power cut.
    pub fn join_all(&self) -> anyhow::Result<()> {
        std::thread::scope(|scope| {
            let joins: Vec<_> = HOSTS
                .iter()
                .map(|h| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        let ip = self.join(h)?;
                        self.announce(h, ip)
                    })
                })
                .collect();
            joins
                .into_iter()
                .try_for_each(|j| j.join().map_err(|_| anyhow::anyhow!("a join panicked"))?)
        })
    }

    /// The host's IPv4 address on eth0, as its DHCP client configured it.
    pub fn host_ipv4(&self, host: &str) -> anyhow::Result<Option<Ipv4Addr>> {
        Ok(self.host_addresses(host)?.into_iter().find_map(|a| match a {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }))
    }

    /// The host's global IPv6 addresses (SLAAC, privacy) on eth0.
    pub fn host_ipv6(&self, host: &str) -> anyhow::Result<Vec<Ipv6Addr>> {
        Ok(self
            .host_addresses(host)?
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(v6),
                _ => None,
            })
            .collect())
    }

    fn host_addresses(&self, host: &str) -> anyhow::Result<Vec<IpAddr>> {
        let out = self.home.ns(host)?.exec(&["ip", "-j", "addr", "show", "dev", "eth0"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j addr")?;
        let mut addrs = Vec::new();
        for link in v.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                if let Some(ip) = a["local"].as_str().and_then(|s| s.parse().ok()) {
                    if !a["tentative"].as_bool().unwrap_or(false) {
                        addrs.push(ip);
                    }
                }
            }
        }
        Ok(addrs)
    }
}

/// udhcpc's `-x` value for a host name. busybox splits a `hostname:` value at
/// spaces and cuts it at 254 bytes, so any other name goes out as the raw
/// option 12 (`0x0c:` and hex bytes): every byte as given, up to 255.
fn udhcpc_hostname_option(hostname: &str) -> String {
    let plain = hostname.len() < 64
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        format!("hostname:{hostname}")
    } else {
        let hex: String = hostname.bytes().map(|b| format!("{b:02x}")).collect();
        format!("0x0c:{hex}")
    }
}

/// Whether a path exists and is executable (for clear "install X" errors).
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| Path::new(&d).join(program).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(program).is_file()
        || Path::new("/sbin").join(program).is_file()
}
