//! Validated, typed configuration. Everything here has passed `load`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::classify::ClassRule;

/// A zone's name. Lower-case ASCII letters, digits and `_`, starting with a letter,
/// at most 15 characters: it becomes part of nft chain and set names, so it is
/// validated like an identifier even though it only ever comes from policy files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneId(String);

/// A segment's name, same rules as [`ZoneId`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SegmentId(String);

fn check_ident(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid name: use 1-15 characters a-z, 0-9 and _, starting with a letter",
            s.escape_debug()
        ))
    }
}

macro_rules! ident_type {
    ($t:ident) => {
        impl $t {
            /// Validates and wraps a name.
            pub fn new(s: &str) -> Result<Self, String> {
                check_ident(s)?;
                Ok(Self(s.to_string()))
            }
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                check_ident(&s)?;
                Ok(Self(s))
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
    };
}
ident_type!(ZoneId);
ident_type!(SegmentId);

/// A network interface's name as the kernel keeps it (at most 15 bytes, no
/// NUL; `IFNAMSIZ` with its terminator): a bridge port. `Copy`, so member
/// sets of (MAC, port) pairs diff like the others.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortName {
    bytes: [u8; 16],
}

impl PortName {
    /// `name`, if the kernel could have it (1 to 15 bytes, no NUL, `/` or
    /// whitespace).
    pub fn new(name: &str) -> Option<PortName> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > 15 || b.iter().any(|c| *c == 0 || *c == b'/' || c.is_ascii_whitespace()) {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        Some(PortName { bytes })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        let len = self.bytes.iter().position(|c| *c == 0).unwrap_or(16);
        // Built from a `&str` cut at a NUL the name never holds: valid UTF-8.
        std::str::from_utf8(&self.bytes[..len]).unwrap_or("")
    }

    /// As an nft `ifname` key: the name, NUL-padded to 16 bytes.
    pub fn key_bytes(&self) -> [u8; 16] {
        self.bytes
    }
}

impl fmt::Display for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Serialize for PortName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An Ethernet MAC address. Displayed and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// True for locally administered (often randomised) addresses.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
    /// True for group (multicast/broadcast) addresses, which never name a device.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `aa:bb:cc:dd:ee:ff` written into a stack buffer: no allocation per MAC
        // (the devices list formats one per row).
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 17];
        for (i, b) in self.0.iter().enumerate() {
            text[i * 3] = HEX[usize::from(b >> 4)];
            text[i * 3 + 1] = HEX[usize::from(b & 0xf)];
        }
        f.pad(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{}` is not a MAC address (expected aa:bb:cc:dd:ee:ff)",
                s.escape_debug()
            )
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        let mac = MacAddr(out);
        if mac.is_multicast() || out == [0; 6] {
            return Err(format!("`{s}` is a group or zero address, not a device"));
        }
        Ok(mac)
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

/// A service the router itself offers to LAN devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouterService {
    /// DNS, udp and tcp 53.
    Dns,
    /// DHCPv4 (udp 67) and DHCPv6 (udp 547).
    Dhcp,
    /// NTP, udp 123.
    Ntp,
    /// Bulkhead's web UI (its configured port).
    WebUi,
    /// SSH to the router (tcp 22): without it an OpenWrt admin is locked out.
    Ssh,
    /// The router's own admin pages, e.g. OpenWrt's LuCI (tcp 80 and 443).
    AdminWeb,
}

impl FromStr for RouterService {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dns" => Ok(Self::Dns),
            "dhcp" => Ok(Self::Dhcp),
            "ntp" => Ok(Self::Ntp),
            "web-ui" => Ok(Self::WebUi),
            "ssh" => Ok(Self::Ssh),
            "admin-web" => Ok(Self::AdminWeb),
            _ => Err(format!(
                "unknown router service `{}` (expected dns, dhcp, ntp, web-ui, ssh or admin-web)",
                s.escape_debug()
            )),
        }
    }
}

/// A trust group and what its members may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Zone {
    /// The zone's name.
    pub id: ZoneId,
    /// Shown in the UI.
    pub description: String,
    /// May open connections to the internet (out of the WAN interface).
    pub internet: bool,
    /// Zones whose devices this zone may open connections to. Replies always flow
    /// back (conntrack), so `iot` can answer `trusted` without being in this list.
    pub reach_zones: BTreeSet<ZoneId>,
    /// Router services its devices may use.
    pub router_services: BTreeSet<RouterService>,
    /// Whether members may open connections to each other.
    pub intra_zone: bool,
    /// What the resolver does for its devices.
    pub dns: super::dns::ZoneDns,
    /// What the firewall refuses its devices is sampled and watched for
    /// probing and lateral attempts (default true).
    pub detect: bool,
}

/// A device named in policy: pinned to a zone and/or given a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceOverride {
    /// The zone it always belongs to, if set.
    pub zone: Option<ZoneId>,
    /// Its name, if set.
    pub name: Option<String>,
    /// Its fixed DHCP address, if set (a static lease).
    pub ip: Option<Ipv4Addr>,
    /// Its blocklists instead of its zone's, if set.
    pub dns_blocklists: Option<BTreeSet<String>>,
    /// Whether its questions are logged, instead of its zone's choice, if set.
    pub dns_log: Option<bool>,
}

/// The policy: zones, where unknown devices go, segment defaults, device overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// All zones by name.
    pub zones: BTreeMap<ZoneId, Zone>,
    /// The zone for devices nobody knows yet (quarantine).
    pub unknown_zone: ZoneId,
    /// Zone a new device on this segment starts in, instead of `unknown_zone`.
    pub segment_zones: BTreeMap<SegmentId, ZoneId>,
    /// Devices pinned by the policy files.
    pub devices: BTreeMap<MacAddr, DeviceOverride>,
    /// Classification rules (`[[classify]]`): files in name order, each in order.
    pub classify: Vec<ClassRule>,
    /// The zone `bulkhead device approve MAC` uses when no zone is given and the
    /// device's classification suggests none (`approved_zone`; optional).
    pub approved_zone: Option<ZoneId>,
    /// What goes through the WireGuard tunnel (`[tunnel]`).
    pub tunnel: TunnelSelectors,
    /// Known DNS-over-HTTPS servers (`doh_servers`; the shipped
    /// `policies/doh-servers.toml`), besides `dns.doh_servers`.
    pub doh_servers: Vec<ipnet::IpNet>,
    /// Services shared across zones (`[[share]]`; none unless the homeowner
    /// says so).
    pub shares: Vec<super::ShareRule>,
    /// The presets `[[share]]` may name (`[[share_preset]]`; the shipped
    /// `policies/shares.toml`).
    pub share_presets: Vec<super::SharePreset>,
}

/// How a segment's interface comes to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SegmentKind {
    /// The interface exists already (made by the OS or OpenWrt's netifd).
    Existing,
    /// Bulkhead creates the bridge and enslaves these ports.
    Bridge {
        /// Member ports.
        ports: Vec<String>,
    },
    /// Bulkhead creates an 802.1Q VLAN link on `parent`.
    Vlan {
        /// Parent link.
        parent: String,
        /// VLAN id, 1-4094.
        id: u16,
    },
}

/// An inclusive range of IPv4 addresses handed out by DHCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ipv4Range {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

/// An L2 network the router serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Its name.
    pub id: SegmentId,
    /// The interface name (bridge, VLAN or existing link).
    pub interface: String,
    /// How the interface comes to exist.
    pub kind: SegmentKind,
    /// The router's address on it, with the prefix (e.g. 10.0.1.1/24).
    pub ipv4: Ipv4Net,
    /// The router's IPv6 address with its prefix, if IPv6 is served.
    pub ipv6: Option<Ipv6Net>,
    /// DHCP pool, if Bulkhead hands out addresses here.
    pub dhcp_pool: Option<Ipv4Range>,
    /// What Bulkhead does with DHCP here.
    pub dhcp: DhcpMode,
}

/// A segment's DHCP role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// Bulkhead's own server hands out addresses from `dhcp_pool`.
    Serve,
    /// Another server (dnsmasq on OpenWrt) does; Bulkhead captures the clients'
    /// packets for fingerprints and reads that server's lease file.
    Observe,
    /// No DHCP here.
    Off,
}

/// DHCP settings shared by all segments (`[dhcp]` in the main file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DhcpSettings {
    /// Domain handed to clients (option 15), if any.
    pub domain: Option<String>,
    /// Lease length in seconds.
    pub lease_secs: u32,
    /// The other server's lease file, for segments in observe mode (dnsmasq's
    /// format; OpenWrt keeps it in /tmp/dhcp.leases).
    pub observe_lease_file: PathBuf,
}

impl Default for DhcpSettings {
    fn default() -> Self {
        DhcpSettings {
            domain: Some("lan".into()),
            lease_secs: 12 * 3600,
            observe_lease_file: PathBuf::from("/tmp/dhcp.leases"),
        }
    }
}

/// A WireGuard key (public, private or preshared): 32 bytes, base64 in files.
/// `Debug` never prints the bytes (a private key must not reach a log).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct WgKey(#[serde(skip)] pub [u8; 32]);

impl std::fmt::Debug for WgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WgKey(..)")
    }
}

/// Where the tunnel's private key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PrivateKeySource {
    /// Written in `bulkhead.toml` (`private_key = "base64"`).
    Inline(WgKey),
    /// A file holding the base64 key (`private_key_file`); generated with mode 0600
    /// on first start when it does not exist.
    File(PathBuf),
}

/// A peer's endpoint as written: a host name or address, and a port. Names are
/// resolved by the tunnel (and again when it reconnects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One WireGuard peer (`[[tunnel.peers]]`): normally the VPN provider's server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelPeer {
    /// The peer's public key.
    pub public_key: WgKey,
    /// Optional preshared key (inline `preshared_key` or `preshared_key_file`).
    pub preshared_key: Option<WgKey>,
    /// Where to send handshakes; `None` for a peer that only answers.
    pub endpoint: Option<Endpoint>,
    /// Inner source addresses accepted from this peer and destinations sent to it.
    pub allowed_ips: Vec<ipnet::IpNet>,
    /// Keepalive interval in seconds, if any.
    pub persistent_keepalive: Option<u16>,
}

/// The WireGuard tunnel (`[tunnel]` in the main file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelConfig {
    /// The TUN interface's name (default `bhwg0`).
    pub interface: String,
    /// Our private key.
    pub private_key: PrivateKeySource,
    /// Addresses of the tunnel interface (IPv4 and/or IPv6, with prefix).
    pub addresses: Vec<ipnet::IpNet>,
    /// MTU of the tunnel interface (default 1420).
    pub mtu: u16,
    /// UDP port to listen on; `None`: a random one.
    pub listen_port: Option<u16>,
    /// Peers.
    pub peers: Vec<TunnelPeer>,
}

/// What goes through the tunnel (`[tunnel]` in the policy files). Default:
/// nothing. Exclusions win over selections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TunnelSelectors {
    /// Every device of these zones.
    pub zones: BTreeSet<ZoneId>,
    /// These devices.
    pub devices: BTreeSet<MacAddr>,
    /// Traffic to these networks, from any device of an internet-reaching zone.
    pub destinations: Vec<ipnet::IpNet>,
    /// Traffic to the addresses of these named domain sets (filled by the DNS
    /// resolver, or `bulkhead vpn domain-add`).
    pub domain_sets: BTreeSet<DomainSetId>,
    /// The domains (each with its subdomains) whose DNS answers fill each
    /// domain set (`[tunnel] domains.SET = [...]`).
    pub domains: BTreeMap<DomainSetId, BTreeSet<String>>,
    /// Devices that always go direct.
    pub exclude_devices: BTreeSet<MacAddr>,
    /// Networks always reached directly.
    pub exclude_destinations: Vec<ipnet::IpNet>,
}

impl TunnelSelectors {
    /// True when nothing is selected (the default).
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.devices.is_empty() && self.destinations.is_empty() && self.domain_sets.is_empty()
    }
}

/// Name of a domain set: like a zone name (lower-case ASCII letters, digits and
/// `_`, at most 15 bytes) because it becomes part of nft set names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct DomainSetId(String);

impl TryFrom<String> for DomainSetId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DomainSetId::new(&s)
    }
}

impl std::str::FromStr for DomainSetId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DomainSetId::new(s)
    }
}

impl DomainSetId {
    /// Validates a domain set name.
    pub fn new(s: &str) -> Result<DomainSetId, String> {
        ZoneId::new(s).map(|z| DomainSetId(z.as_str().to_string()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DomainSetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Web UI settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebConfig {
    /// Addresses to listen on (loopback and the router's segment addresses only).
    pub listen: Vec<SocketAddr>,
    /// Names the UI is reached by (`router.lan`), besides its addresses: the
    /// Host header must be one of them (DNS rebinding).
    pub hostnames: Vec<String>,
}

impl WebConfig {
    /// The Host header values the UI answers: each listen address, each
    /// configured name and `localhost` (for loopback listeners), with the port.
    pub fn allowed_hosts(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        for a in &self.listen {
            let host = match a.ip() {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            };
            let mut names = vec![host];
            names.extend(self.hostnames.iter().cloned());
            if a.ip().is_loopback() {
                names.push("localhost".into());
            }
            // A Host without a port means port 80; the UI's check knows that.
            for n in names {
                out.insert(format!("{n}:{}", a.port()));
            }
        }
        out.into_iter().collect()
    }
}

/// `[devices]`: keeping the inventory bounded over the years.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicesConfig {
    /// A private (randomised) MAC nobody decided anything about and unseen
    /// for this many days is forgotten (0: never). Phones pick a new one per
    /// network and now and then; each would be a device forever.
    pub forget_private_after_days: u32,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            forget_private_after_days: 30,
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The file it came from.
    pub source: PathBuf,
    /// The uplink interface.
    pub wan_interface: String,
    /// Drop unsolicited input arriving on the WAN (`wan.police_input`, default true;
    /// the OpenWrt package turns it off because fw4 already guards the WAN).
    pub police_wan_input: bool,
    /// Established forwarded flows take the kernel's flowtable fast path where
    /// the kernel has one (`wan.flow_offload`, default true).
    pub flow_offload: bool,
    /// LAN segments.
    pub segments: Vec<Segment>,
    /// Where the store lives.
    pub state_dir: PathBuf,
    /// Where the policy files live.
    pub policies_dir: PathBuf,
    /// The CLI's unix socket.
    pub control_socket: PathBuf,
    /// Web UI.
    pub web: WebConfig,
    /// DHCP settings.
    pub dhcp: DhcpSettings,
    /// The WireGuard tunnel, if configured.
    pub tunnel: Option<TunnelConfig>,
    /// The resolver.
    pub dns: super::dns::DnsConfig,
    /// Detection's settings (`[detect]`).
    pub detect: super::detect::DetectConfig,
    /// Traffic counting (`[traffic]`).
    pub traffic: super::traffic::TrafficConfig,
    /// Where alerts are sent (`[notify]`).
    pub notify: super::notify::NotifyConfig,
    /// How long devices are kept (`[devices]`).
    pub devices: DevicesConfig,
    /// The policy loaded from `policies_dir`.
    pub policy: Policy,
}

impl Config {
    /// The segment whose IPv4 or IPv6 subnet contains `ip`.
    pub fn segment_for_ip(&self, ip: std::net::IpAddr) -> Option<&Segment> {
        self.segments.iter().find(|s| match ip {
            std::net::IpAddr::V4(v4) => s.ipv4.contains(&v4),
            std::net::IpAddr::V6(v6) => s.ipv6.is_some_and(|n| n.contains(&v6)),
        })
    }

    /// The web UI's TCP port (the first listen address's), used by the firewall.
    pub fn web_port(&self) -> Option<u16> {
        self.web.listen.first().map(|a| a.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let m: MacAddr = "02:AB:cd:00:11:ff".parse().expect("valid");
        assert_eq!(m.to_string(), "02:ab:cd:00:11:ff");
        assert_eq!(format!("[{m:>19}]"), "[  02:ab:cd:00:11:ff]", "width still pads");
        assert!(m.is_locally_administered());
        assert!("02:ab:cd:00:11".parse::<MacAddr>().is_err());
        assert!("02:ab:cd:00:11:ff:00".parse::<MacAddr>().is_err());
        assert!(
            "01:00:5e:00:00:01".parse::<MacAddr>().is_err(),
            "multicast is no device"
        );
        assert!("zz:ab:cd:00:11:ff".parse::<MacAddr>().is_err());
    }

    #[test]
    fn idents_are_strict() {
        assert!(ZoneId::new("iot_2").is_ok());
        assert!(ZoneId::new("IoT").is_err());
        assert!(ZoneId::new("a\"b").is_err());
        assert!(ZoneId::new("abcdefghijklmnop").is_err());
        assert!(ZoneId::new("").is_err());
    }
}
