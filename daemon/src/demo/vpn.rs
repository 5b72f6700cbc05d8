//! The demo's VPN: a wireguard-go server in the `isp` namespace (what a VPN
//! provider runs), the router's `[tunnel]` pointing at it, and a leak watch on
//! the WAN link.
//!
//! ```text
//!  isp ns: eth0 198.51.100.1 (WAN link)   wireguard-go bhv…: 10.64.0.1/24, fd64::1/64, UDP 51820
//!          lo: 203.0.113.10 (internet), 203.0.113.77 + 2001:db8:1::77 (the canary: only tunnelled
//!              devices are ever sent there; dnsmasq answers DNS on it)
//!          table netdev leakwatch: counts every packet for the canary arriving on eth0 in clear
//!          table inet tunnelwatch: counts those arriving decrypted from the VPN interface
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;

use super::DemoHome;
use crate::config::WgKey;
use crate::tunnel::keys;

/// The VPN server's UDP port.
pub const VPN_PORT: u16 = 51820;
/// The canary, IPv4: only tunnel-selected traffic is ever addressed here.
pub const CANARY_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
/// The canary, IPv6.
pub const CANARY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x77);
/// TCP port of the canary's listener.
pub const CANARY_TCP: u16 = 7001;
/// UDP port of the canary's echo.
pub const CANARY_UDP: u16 = 7002;
/// A name the canary's DNS server answers.
pub const CANARY_NAME: &str = "vpn.test";

/// Packets for the canary seen on the WAN link in clear (leaks) and arriving
/// decrypted from the VPN server's interface (tunnelled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeakCount {
    /// IPv4 leaks.
    pub leaked_v4: u64,
    /// IPv6 leaks.
    pub leaked_v6: u64,
    /// IPv4 through the tunnel.
    pub tunnelled_v4: u64,
    /// IPv6 through the tunnel.
    pub tunnelled_v6: u64,
    /// Of the IPv4 leaks, ICMP (diagnosis: errors the router sent).
    pub leaked_v4_icmp: u64,
    /// Of the IPv4 leaks, DNS questions (udp 53).
    pub leaked_v4_dns: u64,
}

impl LeakCount {
    /// Leaked packets of both families.
    pub fn leaked(&self) -> u64 {
        self.leaked_v4 + self.leaked_v6
    }
}

/// The VPN server's keys and interface.
#[derive(Debug, Clone)]
pub struct VpnServerSpec {
    /// wireguard-go's interface in the isp namespace (unique: its UAPI socket
    /// lives in the shared /var/run/wireguard).
    pub ifname: String,
    /// The router's tunnel interface (unique too: the daemon's UAPI socket is
    /// `/var/run/wireguard/<it>.sock`).
    pub tunnel_if: String,
    /// Its key file.
    pub key_file: PathBuf,
    /// Its public key.
    pub public: WgKey,
    /// The router's public key (the server's only peer).
    pub router_public: WgKey,
}

impl DemoHome {
    /// Gives the router a `[tunnel]` to the demo VPN server (keys generated here,
    /// files 0600) and writes `selectors` (the policy's `[tunnel]` TOML) to
    /// `policies/60-demo-tunnel.toml`. `keepalive`: the peer's persistent
    /// keepalive (short in tests, so a dead server is noticed quickly).
    pub fn configure_tunnel(&self, selectors: &str, keepalive: u16) -> anyhow::Result<VpnServerSpec> {
        let router_key = keys::generate_private();
        let server_key = keys::generate_private();
        keys::write_key_file(&self.dir.join("tunnel.key"), &router_key, true)?;
        let server_key_file = self.dir.join("vpn-server.key");
        keys::write_key_file(&server_key_file, &server_key, true)?;
        let spec = VpnServerSpec {
            ifname: unique_ifname(self, "bhv"),
            tunnel_if: unique_ifname(self, "bhwg"),
            key_file: server_key_file,
            public: keys::public_key(&server_key),
            router_public: keys::public_key(&router_key),
        };
        let mut config = std::fs::read_to_string(self.config_path())?;
        config.push_str(&format!(
            "\n[tunnel]\ninterface = \"{}\"\nprivate_key_file = \"tunnel.key\"\naddresses = [\"10.64.0.2/32\", \"fd64::2/128\"]\nmtu = 1420\n\n[[tunnel.peers]]\npublic_key = \"{}\"\nendpoint = \"{}:{VPN_PORT}\"\nallowed_ips = [\"0.0.0.0/0\", \"::/0\"]\npersistent_keepalive = {keepalive}\n",
            spec.tunnel_if,
            keys::format_key(&spec.public),
            bulkhead_netns::home::ISP_V4.addr(),
        ));
        std::fs::write(self.config_path(), config)?;
        std::fs::write(self.dir.join("policies/60-demo-tunnel.toml"), selectors)?;
        *self.vpn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(VpnState {
            spec: spec.clone(),
            pid: None,
            kernel: false,
        });
        Ok(spec)
    }

    /// Starts (or restarts) wireguard-go in the isp namespace.
    pub fn start_vpn_server(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            super::join::have("wireguard-go") && super::join::have("wg"),
            "wireguard-go or wg is missing: apt-get install wireguard-go wireguard-tools"
        );
        let spec = self.vpn_spec()?;
        let pid = start_wireguard_go(
            self.home.isp(),
            &spec.ifname,
            &spec.key_file,
            &spec.router_public,
            &self.dir.join("wireguard-go.log"),
        )?;
        self.set_vpn_pid(Some(pid));
        Ok(())
    }

    /// Starts the kernel's WireGuard (`ip link add … type wireguard`, the
    /// module a router's firmware has) as the VPN server instead of
    /// wireguard-go: same interface name, key, port, peer and addresses.
    pub fn start_kernel_vpn_server(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            super::join::have("wg"),
            "wg is missing: apt-get install wireguard-tools"
        );
        let spec = self.vpn_spec()?;
        let isp = self.home.isp();
        isp.ip(&["link", "add", &spec.ifname, "type", "wireguard"])
            .context("the kernel has no WireGuard (module wireguard)")?;
        configure_server(isp, &spec.ifname, &spec.key_file, &spec.router_public)?;
        self.set_vpn_kernel(true);
        Ok(())
    }

    /// Kills the VPN server (SIGKILL: a crash, not a goodbye; the kernel's:
    /// its interface deleted).
    pub fn kill_vpn_server(&self) -> anyhow::Result<()> {
        let spec = self.vpn_spec()?;
        if self.set_vpn_kernel(false) {
            self.home.isp().ip(&["link", "del", &spec.ifname])?;
        }
        if let Some(pid) = self.set_vpn_pid(None) {
            let isp = self.home.isp();
            isp.kill_tracked(pid, Signal::SIGKILL)?;
            isp.wait_tracked(pid, Duration::from_secs(5))?;
        }
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", spec.ifname));
        Ok(())
    }

    /// The canary: addresses, listeners, a DNS server, and the two counters.
    pub fn install_canary(&self) -> anyhow::Result<()> {
        let spec = self.vpn_spec()?;
        let isp = self.home.isp();
        isp.ip_batch(&[
            format!("addr add {CANARY_V4}/32 dev lo"),
            format!("addr add {CANARY_V6}/128 dev lo"),
        ])?;
        self.home.start_tcp_listener("isp", CANARY_TCP)?;
        // Bound to the canary itself: a wildcard socket would answer from the
        // address of the interface the reply leaves by (the VPN's 10.64.0.1).
        self.home
            .start_udp_echo_at("isp", std::net::SocketAddr::from((CANARY_V4, CANARY_UDP)))?;
        let watch = format!(
            "table netdev leakwatch {{\n\
               chain wan {{ type filter hook ingress device \"eth0\" priority -500; policy accept;\n\
                 ip daddr {CANARY_V4} meta l4proto icmp counter comment \"leak-v4-icmp\"\n\
                 ip daddr {CANARY_V4} udp dport 53 counter comment \"leak-v4-dns\"\n\
                 ip daddr {CANARY_V4} counter comment \"leak-v4\"\n\
                 ip6 daddr {CANARY_V6} counter comment \"leak-v6\"\n\
               }}\n\
             }}\n\
             table inet tunnelwatch {{\n\
               chain pre {{ type filter hook prerouting priority -300; policy accept;\n\
                 iifname \"{0}\" ip daddr {CANARY_V4} counter comment \"tunnel-v4\"\n\
                 iifname \"{0}\" ip6 daddr {CANARY_V6} counter comment \"tunnel-v6\"\n\
               }}\n\
             }}\n",
            spec.ifname
        );
        let file = self.dir.join("leakwatch.nft");
        std::fs::write(&file, watch)?;
        let out = isp.exec(&["nft", "-f", &file.display().to_string()])?;
        anyhow::ensure!(
            out.status.success(),
            "leak watch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // An outside resolver on the canary ("DNS to an outside resolver" must
        // not leak either).
        let listen4 = format!("--listen-address={CANARY_V4}");
        let listen6 = format!("--listen-address={CANARY_V6}");
        let answer = format!("--address=/{CANARY_NAME}/{}", bulkhead_netns::home::INTERNET_V4);
        // A VPN provider's resolver answers every name: the rest from the
        // ISP's resolver, when the demo runs one.
        let upstream = format!("--server={}", super::dns::RESOLVER_V4);
        let pid_file = format!("--pid-file={}", self.dir.join("canary-dns.pid").display());
        isp.spawn_logged(
            "dnsmasq",
            &[
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                &listen4,
                &listen6,
                &answer,
                &upstream,
                &pid_file,
            ],
            &self.dir.join("canary-dns.log"),
        )?;
        Ok(())
    }

    /// The leak and tunnel counters.
    pub fn leak_count(&self) -> anyhow::Result<LeakCount> {
        let isp = self.home.isp();
        let mut c = LeakCount::default();
        for table in [["netdev", "leakwatch"], ["inet", "tunnelwatch"]] {
            let out = isp.exec(&["nft", "-j", "list", "table", table[0], table[1]])?;
            anyhow::ensure!(
                out.status.success(),
                "nft list: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("nft -j output")?;
            for item in v["nftables"].as_array().into_iter().flatten() {
                let rule = &item["rule"];
                let Some(name) = rule["comment"].as_str() else { continue };
                let packets = rule["expr"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|e| e["counter"]["packets"].as_u64())
                    .unwrap_or(0);
                match name {
                    "leak-v4" => c.leaked_v4 = packets,
                    "leak-v4-icmp" => c.leaked_v4_icmp = packets,
                    "leak-v4-dns" => c.leaked_v4_dns = packets,
                    "leak-v6" => c.leaked_v6 = packets,
                    "tunnel-v4" => c.tunnelled_v4 = packets,
                    "tunnel-v6" => c.tunnelled_v6 = packets,
                    _ => {}
                }
            }
        }
        Ok(c)
    }

    /// The VPN's keys and interfaces (after `configure_tunnel`).
    pub fn vpn_spec(&self) -> anyhow::Result<VpnServerSpec> {
        self.vpn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|v| v.spec.clone())
            .context("configure_tunnel first")
    }

    fn set_vpn_pid(&self, pid: Option<u32>) -> Option<u32> {
        let mut v = self.vpn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        v.as_mut().and_then(|v| std::mem::replace(&mut v.pid, pid))
    }

    /// Sets whether the kernel's WireGuard serves; returns what it was.
    fn set_vpn_kernel(&self, kernel: bool) -> bool {
        let mut v = self.vpn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        v.as_mut().is_some_and(|v| std::mem::replace(&mut v.kernel, kernel))
    }
}

/// Starts Debian's wireguard-go as `ifname` in `ns` (tracked by `ns`, output to
/// `log`) and configures it as the demo's VPN server: `key_file`, UDP
/// [`VPN_PORT`], one peer (`peer`, allowed 10.64.0.2/32 and fd64::2/128), and the
/// addresses 10.64.0.1/24 and fd64::1/64. Returns its pid.
pub fn start_wireguard_go(
    ns: &bulkhead_netns::Netns,
    ifname: &str,
    key_file: &Path,
    peer: &WgKey,
    log: &Path,
) -> anyhow::Result<u32> {
    anyhow::ensure!(
        super::join::have("wireguard-go") && super::join::have("wg"),
        "wireguard-go or wg is missing: apt-get install wireguard-go wireguard-tools"
    );
    let sock = PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"));
    let pid = ns.spawn_logged("env", &["WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", ifname], log)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "wireguard-go did not start (see {})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    configure_server(ns, ifname, key_file, peer)?;
    Ok(pid)
}

/// Configures the WireGuard interface `ifname` in `ns` (wireguard-go's or the
/// kernel's) as the demo's VPN server: `key_file`, UDP [`VPN_PORT`], one peer
/// (`peer`, allowed 10.64.0.2/32 and fd64::2/128), the addresses 10.64.0.1/24
/// and fd64::1/64, up.
fn configure_server(ns: &bulkhead_netns::Netns, ifname: &str, key_file: &Path, peer: &WgKey) -> anyhow::Result<()> {
    let key = key_file.display().to_string();
    let port = VPN_PORT.to_string();
    let peer = keys::format_key(peer);
    let out = ns.exec(&[
        "wg",
        "set",
        ifname,
        "private-key",
        &key,
        "listen-port",
        &port,
        "peer",
        &peer,
        "allowed-ips",
        "10.64.0.2/32,fd64::2/128",
    ])?;
    anyhow::ensure!(out.status.success(), "wg set: {}", String::from_utf8_lossy(&out.stderr));
    ns.ip_batch(&[
        format!("addr add 10.64.0.1/24 dev {ifname}"),
        format!("addr add fd64::1/64 dev {ifname} nodad"),
        format!("link set {ifname} up"),
    ])?;
    Ok(())
}

/// The VPN server's running state.
#[derive(Debug)]
pub(super) struct VpnState {
    spec: VpnServerSpec,
    pid: Option<u32>,
    /// The kernel's WireGuard serves (its interface is the server).
    kernel: bool,
}

/// `prefix` + the router namespace's unique digits (at most 15 bytes).
fn unique_ifname(demo: &DemoHome, prefix: &str) -> String {
    let digits: String = demo.home.router().name().chars().filter(char::is_ascii_digit).collect();
    let tail = &digits[digits.len().saturating_sub(15 - prefix.len())..];
    format!("{prefix}{tail}")
}

impl Drop for VpnState {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.spec.ifname));
    }
}
