//! The demo home: a router running the real `bulkhead` binary in a network
//! namespace, an "internet", and hosts on two segments. `bulkhead demo` shows it;
//! the end-to-end tests in `netns-tests/` use the same builder.
//!
//! ```text
//!   isp (203.0.113.10; VPN server wireguard-go, canary 203.0.113.77)
//!     |  wan0
//!   router ── br-lan 10.0.1.1/24 fd00:1::1/64 ── laptop   (trusted, approved)  10.0.1.10
//!          │   web UI 127.0.0.1:8080           ├─ phone    (trusted, approved)  10.0.1.50
//!          │   and 10.0.1.1:8080               ├─ plug     (iot)                10.0.1.20  same bridge as the laptop
//!          │                                   ├─ speaker  (iot)                10.0.1.60
//!          │                                   └─ stranger (nobody)             10.0.1.99  quarantined: in no set
//!          └─ br-iot 10.0.2.1/24 fd00:2::1/64 ── camera   (iot)                10.0.2.10
//!                                              └─ tv       (iot, through the VPN) 10.0.2.30  a Chromecast:
//!                                                 casting is shared to trusted ([[share]]), the laptop finds it
//!
//!   host namespace: only `bulkhead demo`'s listener on 127.0.0.1:8080, forwarded
//!   into the router namespace (bulkhead_netns::Forwarder)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bulkhead_netns::{Home, HomeSpec, HostSpec, SegmentSpec};

use crate::config::MacAddr;
use crate::control::{self, Request, Response};

pub mod dns;
mod join;
mod traffic;
pub mod vpn;

pub use join::{have, DhcpIdentity, MdnsService};
pub use traffic::Chatter;

/// Which DHCP client a host runs in the discovering demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoClient {
    /// busybox udhcpc.
    Udhcpc,
    /// ISC dhclient.
    Dhclient,
}

/// A service a host announces over mDNS.
pub struct DemoMdns {
    /// Service type, e.g. `_googlecast._tcp`.
    pub service_type: &'static str,
    /// Instance name.
    pub instance: &'static str,
    /// Port.
    pub port: u16,
    /// TXT pairs.
    pub txt: &'static [(&'static str, &'static str)],
}

/// One demo host.
pub struct DemoHost {
    /// Host (and namespace tag) name.
    pub name: &'static str,
    /// Segment.
    pub segment: &'static str,
    /// MAC (real vendor prefixes, so the OUI is evidence too).
    pub mac: [u8; 6],
    /// IPv4 with prefix (static in the static home; a DHCP reservation in the
    /// discovering home).
    pub ipv4: &'static str,
    /// IPv6 with prefix (static home only; the discovering home uses SLAAC).
    pub ipv6: &'static str,
    /// The zone the static demo pins it to, and the zone it should end up in
    /// when discovered; empty: unknown (quarantine).
    pub zone: &'static str,
    /// DHCP hostname (option 12).
    pub hostname: &'static str,
    /// DHCP vendor class (option 60), empty for the client's default.
    pub vendor_class: &'static str,
    /// Its DHCP client.
    pub client: DemoClient,
    /// What it announces over mDNS (one announcer per service, as a device
    /// with several services answers for each).
    pub mdns: &'static [DemoMdns],
}

/// The demo's hosts.
pub const HOSTS: &[DemoHost] = &[
    DemoHost {
        name: "laptop",
        segment: "lan",
        mac: [0xa4, 0xc3, 0xf0, 0x12, 0x34, 0x10],
        ipv4: "10.0.1.10/24",
        ipv6: "fd00:1::10/64",
        zone: "trusted",
        hostname: "annas-laptop",
        vendor_class: "",
        client: DemoClient::Dhclient,
        mdns: &[],
    },
    DemoHost {
        name: "plug",
        segment: "lan",
        mac: [0x50, 0xc7, 0xbf, 0x12, 0x34, 0x20],
        ipv4: "10.0.1.20/24",
        ipv6: "fd00:1::20/64",
        zone: "iot",
        hostname: "HS105",
        vendor_class: "",
        client: DemoClient::Udhcpc,
        mdns: &[],
    },
    DemoHost {
        name: "tv",
        segment: "iot",
        mac: [0xf4, 0xf5, 0xd8, 0x12, 0x34, 0x30],
        ipv4: "10.0.2.30/24",
        ipv6: "fd00:2::30/64",
        zone: "iot",
        hostname: "Chromecast",
        vendor_class: "",
        client: DemoClient::Udhcpc,
        mdns: &[DemoMdns {
            service_type: "_googlecast._tcp",
            instance: "Chromecast-4f3a9c",
            port: 8009,
            txt: &[("md", "Chromecast"), ("fn", "Living Room TV")],
        }],
    },
    DemoHost {
        name: "stranger",
        segment: "lan",
        mac: [0x02, 0xbb, 0, 0, 1, 0x99],
        ipv4: "10.0.1.99/24",
        ipv6: "fd00:1::99/64",
        zone: "",
        hostname: "stranger",
        vendor_class: "",
        client: DemoClient::Udhcpc,
        mdns: &[],
    },
    DemoHost {
        name: "camera",
        segment: "iot",
        mac: [0x2c, 0xaa, 0x8e, 0x12, 0x34, 0x40],
        ipv4: "10.0.2.10/24",
        ipv6: "fd00:2::10/64",
        zone: "iot",
        hostname: "WYZECP1",
        vendor_class: "",
        client: DemoClient::Udhcpc,
        mdns: &[],
    },
    // Anna's phone: an Apple MAC (F0:18:98) and the host name iOS sends by
    // default ("<Name>s-iPhone"). A phone is never trusted by a rule: it waits
    // in quarantine until the homeowner approves it, like the laptop.
    DemoHost {
        name: "phone",
        segment: "lan",
        mac: [0xf0, 0x18, 0x98, 0x12, 0x34, 0x50],
        ipv4: "10.0.1.50/24",
        ipv6: "fd00:1::50/64",
        zone: "trusted",
        hostname: "annas-iphone",
        vendor_class: "",
        client: DemoClient::Udhcpc,
        mdns: &[],
    },
    // A Sonos speaker (Sonos MAC 48:A6:B8) on the main Wi-Fi, as they usually
    // are: it announces _sonos._tcp and _spotify-connect._tcp, so the `sonos`
    // rule (high) places it in iot from its own announcements.
    DemoHost {
        name: "speaker",
        segment: "lan",
        mac: [0x48, 0xa6, 0xb8, 0x12, 0x34, 0x60],
        ipv4: "10.0.1.60/24",
        ipv6: "fd00:1::60/64",
        zone: "iot",
        hostname: "Sonos-48A6B8123460",
        vendor_class: "",
        client: DemoClient::Udhcpc,
        mdns: &[
            DemoMdns {
                service_type: "_sonos._tcp",
                instance: "Sonos-48A6B8123460",
                port: 1443,
                txt: &[
                    ("info", "/api/v1/players/RINCON_48A6B812346001400/info"),
                    ("vers", "3"),
                    ("protovers", "1.40.0"),
                    ("mdnssequence", "0"),
                ],
            },
            DemoMdns {
                service_type: "_spotify-connect._tcp",
                instance: "Kitchen",
                port: 1400,
                txt: &[("CPath", "/spotifyzc"), ("VERSION", "1.0")],
            },
        ],
    },
];

/// The demo homeowner's share: casting from iot to trusted.
pub const DEMO_SHARE: &str =
    "# Cast from your own devices to the TV on the IoT Wi-Fi.\n[[share]]\npreset = \"chromecast\"\nfrom = [\"iot\"]\nto = [\"trusted\"]\n";

/// How the demo's hosts get their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// Configured in each namespace, devices pinned by policy (the firewall tests).
    Static,
    /// DHCP from Bulkhead, SLAAC from radvd, mDNS: Bulkhead discovers everything.
    Discovered,
}

/// The home as the harness builds it: [`HOSTS`], then `extra` hosts (without
/// addresses: they are DHCP clients).
pub fn home_spec(addressing: Addressing, extra: &[HostSpec]) -> anyhow::Result<HomeSpec> {
    let mut spec = HomeSpec::default();
    spec.segments
        .push(SegmentSpec::new("lan", "10.0.1.1/24".parse()?).with_ipv6("fd00:1::1/64".parse()?));
    spec.segments
        .push(SegmentSpec::new("iot", "10.0.2.1/24".parse()?).with_ipv6("fd00:2::1/64".parse()?));
    for h in HOSTS {
        let host = HostSpec::new(h.name, h.segment, h.mac);
        spec.hosts.push(match addressing {
            Addressing::Static => host.with_ipv4(h.ipv4.parse()?).with_ipv6(h.ipv6.parse()?),
            Addressing::Discovered => host,
        });
    }
    spec.hosts.extend(extra.iter().cloned());
    Ok(spec)
}

/// A running demo: the home, a config directory, and the daemon.
pub struct DemoHome {
    /// The namespaces.
    pub home: Home,
    /// Config, policies, state and socket live here (removed on drop).
    pub dir: PathBuf,
    bin: PathBuf,
    /// How hosts get addresses.
    pub addressing: Addressing,
    /// The running daemon's pid (interior: tests kill and restart it while
    /// other threads probe through the same home).
    daemon: std::sync::Mutex<Option<u32>>,
    /// The VPN server, once `configure_tunnel` ran.
    vpn: std::sync::Mutex<Option<vpn::VpnState>>,
}

impl DemoHome {
    /// Builds the static home (addresses configured, devices pinned by policy)
    /// and writes the router's config (not started yet). `extra_policies` are
    /// added to the shipped policies, e.g. `("pins.toml", ...)`.
    pub fn build(bin: &Path, extra_policies: &[(&str, &str)]) -> anyhow::Result<DemoHome> {
        Self::build_with(bin, extra_policies, Addressing::Static, &[])
    }

    /// Builds the discovering home: hosts have no addresses until they ask
    /// Bulkhead's DHCP server; nothing is pinned (only DHCP reservations).
    pub fn build_discovering(bin: &Path, extra_policies: &[(&str, &str)]) -> anyhow::Result<DemoHome> {
        Self::build_discovering_with(bin, extra_policies, &[])
    }

    /// The discovering home with `extra_hosts` beside [`HOSTS`] (no
    /// reservations: they get pool addresses; join them with
    /// [`DemoHome::join_as`]).
    pub fn build_discovering_with(
        bin: &Path,
        extra_policies: &[(&str, &str)],
        extra_hosts: &[HostSpec],
    ) -> anyhow::Result<DemoHome> {
        for tool in ["radvd", "dhclient"] {
            anyhow::ensure!(
                have(tool),
                "`{tool}` is missing: apt-get install radvd isc-dhcp-client (see README)"
            );
        }
        Self::build_with(bin, extra_policies, Addressing::Discovered, extra_hosts)
    }

    fn build_with(
        bin: &Path,
        extra_policies: &[(&str, &str)],
        addressing: Addressing,
        extra_hosts: &[HostSpec],
    ) -> anyhow::Result<DemoHome> {
        let home = Home::new(&home_spec(addressing, extra_hosts)?).context("building the namespaces")?;
        let dir = std::env::temp_dir().join(format!("bulkhead-demo-{}", home.router().name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies"))?;
        let demo = DemoHome {
            home,
            dir,
            bin: bin.to_path_buf(),
            addressing,
            daemon: std::sync::Mutex::new(None),
            vpn: std::sync::Mutex::new(None),
        };
        demo.write_config()?;
        if addressing == Addressing::Discovered {
            demo.write_discovery_files()?;
        }
        for (name, text) in shipped_policies() {
            std::fs::write(demo.dir.join("policies").join(name), text)?;
        }
        let pins = match addressing {
            Addressing::Static => {
                let mut pins = String::from("# The demo's devices, pinned by the homeowner.\n");
                for h in HOSTS.iter().filter(|h| !h.zone.is_empty()) {
                    pins.push_str(&format!(
                        "\n[[devices]]\nmac = \"{}\"\nzone = \"{}\"\nname = \"{}\"\n",
                        MacAddr(h.mac),
                        h.zone,
                        h.name
                    ));
                }
                pins
            }
            Addressing::Discovered => {
                // DHCP reservations only (so addresses are predictable); zones
                // come from discovery and the homeowner's approvals.
                let mut r =
                    String::from("# DHCP reservations for the demo's devices. No zones: Bulkhead finds them.\n");
                for h in HOSTS {
                    let ip = h.ipv4.split('/').next().unwrap_or_default();
                    r.push_str(&format!("\n[[devices]]\nmac = \"{}\"\nip = \"{ip}\"\n", MacAddr(h.mac)));
                }
                r
            }
        };
        std::fs::write(demo.dir.join("policies/50-demo-devices.toml"), pins)?;
        if addressing == Addressing::Discovered {
            // The IoT Wi-Fi: what joins it starts in iot, not quarantine.
            std::fs::write(
                demo.dir.join("policies/40-demo-segments.toml"),
                "# New devices on the IoT segment start in the iot zone.\n[segment_zones]\niot = \"iot\"\n",
            )?;
            // The homeowner casts from the laptop to the TV on the IoT Wi-Fi.
            std::fs::write(demo.dir.join("policies/45-demo-share.toml"), DEMO_SHARE)?;
        }
        for (name, text) in extra_policies {
            std::fs::write(demo.dir.join("policies").join(name), text)?;
        }
        Ok(demo)
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let mut c = format!(
            "# Written by the demo.\nstate_dir = \"state\"\npolicies_dir = \"policies\"\ncontrol_socket = \"control.sock\"\n\n[wan]\ninterface = \"{}\"\n\n{}\n# Counters read every 5 s (60 by default), so the charts move while you watch.\n[traffic]\nsample_secs = 5\n",
            bulkhead_netns::home::WAN_IF,
            web_section(WEB_PORT)
        );
        for s in self.home.segments() {
            let ports: Vec<String> = self
                .home
                .hosts()
                .iter()
                .filter(|h| h.spec().segment == s.name)
                .map(|h| format!("\"{}\"", h.router_port()))
                .collect();
            c.push_str(&format!(
                "\n[[segments]]\nname = \"{}\"\ninterface = \"{}\"\nkind = \"bridge\"\nports = [{}]\nipv4 = \"{}\"\n",
                s.name,
                s.bridge,
                ports.join(", "),
                s.gateway_v4
            ));
            if let Some(v6) = s.gateway_v6 {
                c.push_str(&format!("ipv6 = \"{v6}\"\n"));
            }
            if self.addressing == Addressing::Discovered {
                let net = s.gateway_v4.trunc().addr().octets();
                c.push_str(&format!(
                    "dhcp_pool = \"{0}.{1}.{2}.100-{0}.{1}.{2}.199\"\n",
                    net[0], net[1], net[2]
                ));
            }
        }
        std::fs::write(self.config_path(), c)?;
        Ok(())
    }

    /// Moves the UI's loopback listener in the router namespace to `port`
    /// (before the daemon starts): `bulkhead demo --port` forwards the host's
    /// `127.0.0.1:<port>` there, and the Host allowlist follows the listener.
    pub fn set_web_loopback_port(&self, port: u16) -> anyhow::Result<()> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path)?;
        let now = web_section(WEB_PORT);
        anyhow::ensure!(text.contains(&now), "the [web] section was changed already");
        std::fs::write(path, text.replacen(&now, &web_section(port), 1))?;
        Ok(())
    }

    /// Switches the lan segment to observer mode: another DHCP server (the test
    /// runs dnsmasq) hands out addresses and writes `lease_file`.
    pub fn set_observe(&self, lease_file: &Path) -> anyhow::Result<()> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path)?;
        let lan_pool = "dhcp_pool = \"10.0.1.100-10.0.1.199\"\n";
        anyhow::ensure!(text.contains(lan_pool), "observer mode needs the discovering home");
        let text = text.replacen(lan_pool, "dhcp = \"observe\"\n", 1)
            + &format!("\n[dhcp]\nobserve_lease_file = {:?}\n", lease_file.to_string_lossy());
        std::fs::write(path, text)?;
        Ok(())
    }

    /// The router's config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("bulkhead.toml")
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// Starts the daemon in the router namespace and waits until it answers.
    pub fn start_daemon(&self) -> anyhow::Result<u32> {
        let bin = self.bin.to_string_lossy().into_owned();
        let cfg = self.config_path().to_string_lossy().into_owned();
        let pid = self
            .home
            .router()
            .spawn_logged(&bin, &["--config", &cfg, "daemon"], &self.log_path())?;
        self.set_pid(Some(pid));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Response::Status(_)) = control::call(&self.socket(), &Request::Status) {
                return Ok(pid);
            }
            if let Ok(Some(status)) = self.home.router().wait_tracked(pid, Duration::from_millis(50)) {
                self.set_pid(None);
                bail!("the daemon exited ({status}) during start-up:\n{}", self.log());
            }
        }
        bail!("the daemon did not answer within 15 s:\n{}", self.log())
    }

    /// The daemon's pid, if running.
    pub fn daemon_pid(&self) -> Option<u32> {
        *self.daemon.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_pid(&self, pid: Option<u32>) -> Option<u32> {
        std::mem::replace(
            &mut *self.daemon.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            pid,
        )
    }

    /// Sends a signal to the daemon.
    pub fn signal_daemon(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = self.daemon_pid().context("daemon not running")?;
        self.home.router().kill_tracked(pid, signal)?;
        Ok(())
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill_daemon(&self) -> anyhow::Result<()> {
        self.signal_daemon(nix::sys::signal::Signal::SIGKILL)?;
        if let Some(pid) = self.set_pid(None) {
            self.home.router().wait_tracked(pid, Duration::from_secs(5))?;
        }
        Ok(())
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop_daemon(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.set_pid(None) {
            self.home.router().stop_tracked(pid)?;
        }
        Ok(())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends a control request; an error answer becomes an error.
    pub fn call(&self, req: Request) -> anyhow::Result<Response> {
        match control::call(&self.socket(), &req)? {
            Response::Error { message } => bail!("daemon refused: {message}"),
            r => Ok(r),
        }
    }

    /// Tells the daemon each pinned host's addresses (manual entry, until
    /// discovery lands). The stranger is left out: nobody knows it.
    pub fn register_hosts(&self) -> anyhow::Result<()> {
        for h in HOSTS.iter().filter(|h| !h.zone.is_empty()) {
            for ip in [h.ipv4, h.ipv6] {
                let ip = crate::config::parse_ip(ip).map_err(anyhow::Error::msg)?;
                self.call(Request::AddDevice {
                    mac: MacAddr(h.mac),
                    ip: Some(ip),
                })?;
            }
        }
        Ok(())
    }

    /// The host's IPv4 address.
    pub fn ipv4(&self, host: &str) -> anyhow::Result<IpAddr> {
        let h = HOSTS.iter().find(|h| h.name == host).context("no such host")?;
        crate::config::parse_ip(h.ipv4).map_err(anyhow::Error::msg)
    }

    /// The host's IPv6 address.
    pub fn ipv6(&self, host: &str) -> anyhow::Result<IpAddr> {
        let h = HOSTS.iter().find(|h| h.name == host).context("no such host")?;
        crate::config::parse_ip(h.ipv6).map_err(anyhow::Error::msg)
    }

    /// TCP probe from a namespace to an address's port-80 banner responder.
    pub fn tcp(&self, from: &str, to: IpAddr, port: u16) -> anyhow::Result<bool> {
        Ok(bulkhead_netns::tcp_probe(
            self.home.ns(from)?,
            SocketAddr::new(to, port),
            PROBE_TIMEOUT,
        )?)
    }

    /// Who reaches whom over TCP (port 80, IPv4): rows are sources, columns
    /// are destinations (every host, then the internet).
    pub fn reachability(&self) -> anyhow::Result<Vec<MatrixRow>> {
        let mut rows = Vec::new();
        for from in HOSTS {
            let mut row = Vec::new();
            for to in HOSTS.iter().filter(|t| t.name != from.name) {
                row.push((to.name.to_string(), self.tcp(from.name, self.ipv4(to.name)?, 80)?));
            }
            row.push((
                "internet".to_string(),
                self.tcp(from.name, self.home.internet_v4().into(), 80)?,
            ));
            rows.push((from.name.to_string(), row));
        }
        Ok(rows)
    }
}

/// One row of the reachability matrix: a source and, per destination, whether
/// it was reached.
pub type MatrixRow = (String, Vec<(String, bool)>);

/// How long a probe waits before calling a destination unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

impl Drop for DemoHome {
    fn drop(&mut self) {
        // The Home's drop stops the daemon (a tracked process) and removes the
        // namespaces; the config directory is ours.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The default policies, embedded so the demo works from any directory.
pub fn shipped_policies() -> [(&'static str, &'static str); 5] {
    crate::config::SHIPPED_POLICIES
}

/// Formats the reachability matrix.
pub fn format_matrix(rows: &[MatrixRow]) -> String {
    let zone = |n: &str| {
        HOSTS
            .iter()
            .find(|h| h.name == n)
            .map(|h| if h.zone.is_empty() { "quarantine" } else { h.zone })
            .unwrap_or("")
    };
    let mut cols: Vec<&str> = HOSTS.iter().map(|h| h.name).collect();
    cols.push("internet");
    let mut out = format!("{:<22}", "from \\ to");
    for c in &cols {
        out.push_str(&format!("{c:>10}"));
    }
    out.push('\n');
    for (from, row) in rows {
        out.push_str(&format!("{:<22}", format!("{from} ({})", zone(from))));
        for c in &cols {
            let cell = if *c == from {
                "-"
            } else if row.iter().any(|(t, ok)| t == c && *ok) {
                "yes"
            } else {
                "no"
            };
            out.push_str(&format!("{cell:>10}"));
        }
        out.push('\n');
    }
    out
}

/// The web UI's port inside the router namespace (loopback and the lan
/// gateway), and the host port `bulkhead demo` forwards to it by default.
pub const WEB_PORT: u16 = 8080;

/// The lan gateway, where trusted devices open the web UI.
pub const LAN_GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 1, 1);

/// The config's `[web]` section: the UI on the lan gateway (for trusted
/// devices; the zones' `web-ui` router service lets them in) and on the router
/// namespace's loopback at `loopback_port` (what `bulkhead demo` forwards the
/// host's 127.0.0.1:<port> to). The loopback listener uses the host's port so
/// the daemon's Host allowlist (listen addresses, plus `localhost` for
/// loopback ones) admits exactly what the browser sends: `127.0.0.1:<port>`
/// and `localhost:<port>`. The lan address comes first: the firewall opens the
/// first listener's port to the zones with `web-ui`.
fn web_section(loopback_port: u16) -> String {
    format!("[web]\nlisten = [\"{LAN_GATEWAY}:{WEB_PORT}\", \"127.0.0.1:{loopback_port}\"]\n")
}

/// The service types a host announces, as the daemon reports them.
fn announced(h: &DemoHost) -> Vec<&'static str> {
    h.mdns.iter().map(|m| m.service_type).collect()
}

impl DemoHome {
    /// The demo's home up to where the homeowner steps in: the discovering
    /// home (plus `extra_hosts`, not joined), the VPN server in the isp with
    /// the TV routed through it, the daemon, router adverts, every host of
    /// [`HOSTS`] joined (DHCP, SLAAC, mDNS) and its mDNS services seen.
    /// `bulkhead demo` shows this; the browser tests start from it.
    /// `ui_port`: the UI's loopback port in the router namespace (see
    /// [`DemoHome::set_web_loopback_port`]; [`WEB_PORT`] normally).
    pub fn start_full(bin: &Path, extra_hosts: &[HostSpec], ui_port: u16) -> anyhow::Result<DemoHome> {
        let demo = DemoHome::build_discovering_with(bin, &[], extra_hosts)?;
        if ui_port != WEB_PORT {
            demo.set_web_loopback_port(ui_port)?;
        }
        // The VPN: a wireguard-go server in the isp namespace; the TV (a
        // streaming box) is routed through it, everything else goes direct.
        let tv = HOSTS.iter().find(|h| h.name == "tv").context("tv")?;
        demo.configure_tunnel(
            &format!(
                "# The streaming box goes through the VPN; everything else goes direct.\n[tunnel]\ndevices = [\"{}\"]\n",
                MacAddr(tv.mac)
            ),
            25,
        )?;
        demo.install_canary()?;
        demo.start_vpn_server()?;
        // The ISP's resolver as Bulkhead's upstream; the VPN's resolver (the
        // canary's dnsmasq) for the TV's questions, through the tunnel.
        demo.start_isp_resolver(&format!("tunnel_upstreams = [\"{}\"]", vpn::CANARY_V4))?;
        demo.start_daemon()?;
        demo.start_router_adverts()?;
        demo.join_all()?;
        demo.wait_for_mdns(Duration::from_secs(15))?;
        Ok(demo)
    }

    /// Waits until the daemon reports every announced service of [`HOSTS`].
    pub fn wait_for_mdns(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let Response::Devices { devices } = self.call(Request::Devices)? else {
                bail!("unexpected answer")
            };
            let missing: Vec<String> = HOSTS
                .iter()
                .flat_map(|h| announced(h).into_iter().map(move |t| (h, t)))
                .filter(|(h, t)| {
                    !devices
                        .iter()
                        .any(|d| d.mac == MacAddr(h.mac) && d.evidence.mdns_services.iter().any(|s| s == t))
                })
                .map(|(h, t)| format!("{} {t}", h.name))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "mDNS services not seen within {within:?}: {}\n--- daemon log:\n{}",
                    missing.join(", "),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The homeowner's step: the laptop and the phone are Anna's, approved into
    /// trusted (no rule ever puts a device there by itself).
    pub fn approve_own_devices(&self) -> anyhow::Result<()> {
        for h in HOSTS.iter().filter(|h| h.zone == "trusted") {
            self.call(Request::Approve {
                mac: MacAddr(h.mac),
                zone: crate::config::ZoneId::new("trusted").ok(),
            })?;
        }
        Ok(())
    }

    /// The web UI's one-time setup token, as the daemon tells it over the
    /// control socket (`Request::Auth`); `Err` says why there is none.
    pub fn setup_token(&self) -> anyhow::Result<String> {
        match self.call(Request::Auth)? {
            Response::Auth {
                setup_token: Some(t), ..
            } => Ok(t),
            Response::Auth { setup_token: None, .. } => bail!("a password is already set"),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

/// Binds the UI's port on the host's loopback, saying plainly when it is taken.
fn bind_ui_port(port: u16) -> anyhow::Result<std::net::TcpListener> {
    let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    match std::net::TcpListener::bind(addr) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "{addr} is already in use on this machine (another program listens there), so the demo \
             cannot show its web UI there. Stop that program, or pick another port: bulkhead demo --port {}",
            port.wrapping_add(1).max(1024)
        ),
        Err(e) => Err(e).with_context(|| format!("listening on {addr}")),
    }
}

/// `bulkhead demo`: `once` builds, probes, prints and tears down; otherwise the
/// web UI is forwarded to `127.0.0.1:<port>` of this machine until Ctrl-C.
pub fn run(once: bool, port: u16) -> anyhow::Result<()> {
    anyhow::ensure!(
        bulkhead_netns::is_root(),
        "the demo builds network namespaces and needs root"
    );
    // The UI's door on this machine first: a taken port stops the demo before
    // anything is built.
    let listener = if once { None } else { Some(bind_ui_port(port)?) };
    let removed = bulkhead_netns::Netns::cleanup_stale().unwrap_or_default();
    if !removed.is_empty() {
        eprintln!("removed {} namespaces left by an earlier run", removed.len());
    }
    let bin = std::env::current_exe().context("finding the bulkhead binary")?;
    // Ctrl-C must tear the home down: catch it instead of dying mid-build.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let mut signals = nix_signals()?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    eprintln!("building the demo home in network namespaces…");
    eprintln!("devices join: DHCP (udhcpc, dhclient), SLAAC, mDNS…");
    let demo = DemoHome::start_full(&bin, &[], port)?;
    println!(
        "\nBulkhead demo home (router namespace: {})\n\nWhat Bulkhead found on its own:\n",
        demo.home.router().name()
    );
    print_devices(&demo)?;
    let own: Vec<String> = HOSTS
        .iter()
        .filter(|h| h.zone == "trusted")
        .map(|h| format!("bulkhead device approve {} trusted", MacAddr(h.mac)))
        .collect();
    println!(
        "\nThe homeowner approves the laptop and the phone:\n  {}\n",
        own.join("\n  ")
    );
    demo.approve_own_devices()?;
    print_devices(&demo)?;
    println!("\nWho can open a TCP connection to whom (real probes, port 80):\n");
    println!("{}", format_matrix(&demo.reachability()?));
    print_vpn(&demo)?;
    print_casting(&demo)?;
    println!("Try it yourself while the demo runs:");
    println!(
        "  ip netns exec {} nft list table inet bulkhead",
        demo.home.router().name()
    );
    println!("  bulkhead --socket {} devices", demo.socket().display());
    // The laptop asks the router (Bulkhead's resolver); the plug's zone blocks ads.
    if let (Ok(laptop), Ok(plug)) = (demo.home.ns("laptop"), demo.home.ns("plug")) {
        println!("  ip netns exec {} dig @10.0.1.1 www.example.test", laptop.name());
        println!("  ip netns exec {} dig @10.0.1.1 {}", plug.name(), dns::AD_NAME);
        println!("  bulkhead --socket {} dns log", demo.socket().display());
        // A hijacked plug scans the home: one probing alert, the plug's page
        // shows its refused attempts.
        println!(
            "  ip netns exec {} nmap -Pn -n -T4 -p 1-200 10.0.1.10 10.0.1.1",
            plug.name()
        );
        println!(
            "  bulkhead --socket {} detect; bulkhead --socket {} alerts",
            demo.socket().display(),
            demo.socket().display()
        );
    }
    let Some(listener) = listener else {
        demo.stop_daemon()?;
        return Ok(());
    };
    // The devices at work (the UI's last seen and the VPN counters move), and
    // the UI on this machine's loopback, forwarded into the router namespace.
    let chatter = demo.start_chatter(Duration::from_secs(5), &["tv"])?;
    let forwarder = bulkhead_netns::Forwarder::start_with_listener(
        listener,
        demo.home.router(),
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
    )?;
    let token = demo.setup_token().unwrap_or_else(|e| format!("(none: {e:#})"));
    let stranger = HOSTS.iter().find(|h| h.name == "stranger").map_or([0; 6], |h| h.mac);
    println!(
        "\nThe web UI: open http://{}/ in a browser on this machine.\n  \
         setup token: {token}\n  \
         (the first visit asks for it and a password of at least 10 characters)\n\n\
         Things to try there:\n  \
         - the overview lists the stranger ({}) in quarantine: approve it, and it reaches the internet\n  \
         - VPN: the TV goes through the tunnel; its transfer counters grow as the devices talk\n  \
         - a device's page: rename it, move it to another zone, block it\n  \
         - alerts: acknowledge the new-device alerts\n  \
         - after the nmap line above: the probing alert, and the plug's page lists what it tried",
        forwarder.local_addr(),
        MacAddr(stranger)
    );
    println!("\nPress Ctrl-C to remove the demo home.");
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("removing the demo home…");
    drop(forwarder);
    drop(chatter);
    demo.stop_daemon()?;
    Ok(())
}

/// Casting across zones: the laptop (trusted, on br-lan) finds the TV
/// (iot, on br-iot) with a real mDNS browser, through Bulkhead's proxy, and
/// reaches its cast port; the TV still reaches nothing in trusted.
fn print_casting(demo: &DemoHome) -> anyhow::Result<()> {
    println!("Casting, shared from iot to trusted (policies/45-demo-share.toml: [[share]] preset chromecast):");
    demo.home.start_tcp_listener("tv", 8009)?;
    let laptop = demo.home.ns("laptop")?;
    let avahi =
        match bulkhead_netns::avahi::Avahi::start(laptop, &demo.dir.join("avahi-laptop"), "annas-laptop", "eth0") {
            Ok(a) => a,
            Err(e) => {
                println!(
                    "  (no avahi here to browse with: {e}; apt-get install avahi-daemon avahi-utils dbus-daemon)\n"
                );
                return Ok(());
            }
        };
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        let found = avahi.browse("_googlecast._tcp", Duration::from_secs(3))?;
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
    };
    if found.is_empty() {
        println!("  the laptop's avahi-browse found no _googlecast._tcp (see the daemon's log)");
    }
    for r in &found {
        println!(
            "  laptop: avahi-browse -rt _googlecast._tcp -> {:?} at {}:{} ({})",
            r.name, r.address, r.port, r.txt
        );
    }
    let tv = demo.ipv4("tv")?;
    let laptop_ip = demo.ipv4("laptop")?;
    let reach = |from: &str, to: IpAddr, port: u16| -> anyhow::Result<&'static str> {
        let ok = bulkhead_netns::tcp_probe(demo.home.ns(from)?, SocketAddr::new(to, port), PROBE_TIMEOUT)?;
        Ok(if ok { "connects" } else { "refused" })
    };
    println!(
        "  laptop -> tv {tv}:8009 (cast control): {}",
        reach("laptop", tv, 8009)?
    );
    println!("  tv -> laptop {laptop_ip}:80: {}", reach("tv", laptop_ip, 80)?);
    println!(
        "  pinholes: ip netns exec {} nft list set inet bulkhead share-trusted-v4\n",
        demo.home.router().name()
    );
    Ok(())
}

/// The tunnel's state, and the TV reaching the internet through it (counted on
/// the WAN link: nothing in clear).
fn print_vpn(demo: &DemoHome) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let view = loop {
        let Response::Tunnel(v) = demo.call(Request::Tunnel)? else {
            bail!("unexpected answer")
        };
        if v.state == "up" || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("The VPN (wireguard-go in the isp namespace): tunnel {}", view.state);
    for r in &view.routed {
        println!("  routed through it: {r}");
    }
    let canary = SocketAddr::new(vpn::CANARY_V4.into(), vpn::CANARY_TCP);
    let via_tunnel = bulkhead_netns::tcp_probe(demo.home.ns("tv")?, canary, PROBE_TIMEOUT)?;
    let c = demo.leak_count()?;
    println!(
        "  tv -> {canary}: {} (arrived through the tunnel: {} packets; seen in clear on the WAN: {})",
        if via_tunnel { "connected" } else { "FAILED" },
        c.tunnelled_v4,
        c.leaked()
    );
    if let Some(p) = view.peers.first() {
        println!(
            "  peer {} at {}: {} B received, {} B sent",
            p.public_key,
            p.endpoint.as_deref().unwrap_or("?"),
            p.rx_bytes,
            p.tx_bytes
        );
    }
    println!(
        "  try: ip netns exec {} wg show   (the daemon answers wg's UAPI)\n",
        demo.home.router().name()
    );
    Ok(())
}

/// The inventory as the demo prints it (device text escaped).
fn print_devices(demo: &DemoHome) -> anyhow::Result<()> {
    let Response::Devices { devices } = demo.call(Request::Devices)? else {
        bail!("unexpected answer")
    };
    let host_of = |mac: MacAddr| HOSTS.iter().find(|h| MacAddr(h.mac) == mac).map_or("?", |h| h.name);
    println!(
        "  {:<9} {:<17} {:<11} {:<11} {:<8} {:<16} evidence",
        "host", "mac", "zone", "why", "class", "vendor"
    );
    for d in devices {
        let why = serde_json::to_value(d.reason)?.as_str().unwrap_or_default().to_string();
        let class = d
            .class
            .as_ref()
            .map_or("-".to_string(), |c| c.class.as_str().to_string());
        let mut ev = Vec::new();
        if let Some(h) = &d.evidence.hostname {
            ev.push(format!("hostname {}", h.escape_debug()));
        }
        for s in &d.evidence.mdns_services {
            ev.push(format!("mDNS {}", s.escape_debug()));
        }
        if let Some(c) = &d.class {
            ev.push(format!("rule {} ({})", c.rule, c.confidence.as_str()));
        }
        let addrs: Vec<String> = d.addresses.iter().map(|a| a.to_string()).collect();
        println!(
            "  {:<9} {:<17} {:<11} {:<11} {:<8} {:<16} {}\n  {:<9} {}",
            host_of(d.mac),
            d.mac,
            d.zone,
            why,
            class,
            d.vendor
                .as_deref()
                .unwrap_or(if d.randomized { "(private MAC)" } else { "-" }),
            ev.join("; "),
            "",
            addrs.join(" ")
        );
    }
    Ok(())
}

/// SIGINT/SIGTERM as an iterator on a thread.
fn nix_signals() -> anyhow::Result<SignalWait> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // Blocked in this thread (and inherited by threads spawned after), then
    // waited for synchronously by the waiter thread.
    set.thread_block().context("blocking SIGINT/SIGTERM")?;
    Ok(SignalWait { set })
}

struct SignalWait {
    set: nix::sys::signal::SigSet,
}

impl SignalWait {
    fn forever(&mut self) -> impl Iterator<Item = nix::sys::signal::Signal> + '_ {
        std::iter::from_fn(move || self.set.wait().ok())
    }
}
