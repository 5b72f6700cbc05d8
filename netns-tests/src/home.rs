//! A small home network in namespaces: the internet, a router, and hosts.
//!
//! ```text
//!  isp ns ("the internet")          router ns                      host ns (one per host)
//!  lo:   203.0.113.10/32            wan0: 198.51.100.2/24          eth0: spec MAC, addresses
//!        2001:db8:1::10/128               2001:db8:ff::2/64              default via gateway
//!  eth0: 198.51.100.1/24  <-veth->  default via the isp
//!        2001:db8:ff::1/64          {segment}-{host}  <-veth->     eth0
//! ```
//!
//! The router-side host ports are left up and unenslaved: the daemon under test
//! creates each segment's bridge, enslaves the ports and adds the gateway
//! address. The isp has no route to the private ranges, so hosts only reach the
//! internet if the router masquerades.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::responder::Responders;
use crate::{Error, Netns, Result};

/// The router's WAN interface.
pub const WAN_IF: &str = "wan0";
/// The router's WAN address.
pub const ROUTER_WAN_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 2), 24);
/// The router's WAN IPv6 address.
pub const ROUTER_WAN_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2), 64);
/// The isp's address on the WAN link (the router's default gateway).
pub const ISP_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 1), 24);
/// The isp's IPv6 address on the WAN link (the router's default gateway).
pub const ISP_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1), 64);
/// "A host on the internet", in the isp namespace.
pub const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// "A host on the internet" over IPv6, in the isp namespace.
pub const INTERNET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// Names of the router and isp namespaces in [`Home::ns`]; hosts cannot use them.
const ROUTER: &str = "router";
const ISP: &str = "isp";

/// What to build: segments and the hosts on them.
#[derive(Debug, Clone, Default)]
pub struct HomeSpec {
    /// The router's LAN segments.
    pub segments: Vec<SegmentSpec>,
    /// The hosts, each on one segment.
    pub hosts: Vec<HostSpec>,
}

/// One LAN segment, as the daemon under test will be configured to serve it.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    /// Segment name, e.g. `lan`, `iot`; the start of its port names.
    pub name: String,
    /// The bridge the daemon creates, e.g. `br-lan`.
    pub bridge: String,
    /// Gateway address with the segment's prefix, e.g. `10.0.1.1/24`.
    pub gateway_v4: Ipv4Net,
    /// IPv6 gateway address with prefix, e.g. `fd00:1::1/64`.
    pub gateway_v6: Option<Ipv6Net>,
}

/// One host (a namespace with one interface, `eth0`).
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Host name; also its namespace tag and part of its router port's name.
    pub name: String,
    /// Name of the segment it is plugged into.
    pub segment: String,
    /// MAC address of its `eth0`.
    pub mac: [u8; 6],
    /// Static IPv4 address; `None` for a host that will run a DHCP client (then
    /// no address and no route are set).
    pub ipv4: Option<Ipv4Net>,
    /// Static IPv6 address (added with `nodad`).
    pub ipv6: Option<Ipv6Net>,
}

impl SegmentSpec {
    /// A segment with bridge `br-{name}` and no IPv6.
    pub fn new(name: &str, gateway_v4: Ipv4Net) -> SegmentSpec {
        SegmentSpec {
            name: name.to_string(),
            bridge: format!("br-{name}"),
            gateway_v4,
            gateway_v6: None,
        }
    }

    /// Sets the IPv6 gateway.
    pub fn with_ipv6(mut self, gateway_v6: Ipv6Net) -> SegmentSpec {
        self.gateway_v6 = Some(gateway_v6);
        self
    }
}

impl HostSpec {
    /// A host without static addresses (a DHCP client).
    pub fn new(name: &str, segment: &str, mac: [u8; 6]) -> HostSpec {
        HostSpec {
            name: name.to_string(),
            segment: segment.to_string(),
            mac,
            ipv4: None,
            ipv6: None,
        }
    }

    /// Sets the static IPv4 address.
    pub fn with_ipv4(mut self, ipv4: Ipv4Net) -> HostSpec {
        self.ipv4 = Some(ipv4);
        self
    }

    /// Sets the static IPv6 address.
    pub fn with_ipv6(mut self, ipv6: Ipv6Net) -> HostSpec {
        self.ipv6 = Some(ipv6);
        self
    }
}

/// A segment as built: what the daemon under test must be configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Segment name.
    pub name: String,
    /// Bridge name (not created by the harness).
    pub bridge: String,
    /// Gateway address and prefix (not assigned by the harness).
    pub gateway_v4: Ipv4Net,
    /// IPv6 gateway address and prefix.
    pub gateway_v6: Option<Ipv6Net>,
    /// Router-side veth ends of this segment's hosts, in spec order.
    pub ports: Vec<String>,
}

/// A host as built.
#[derive(Debug)]
pub struct Host {
    spec: HostSpec,
    port: String,
    ns: Netns,
}

impl Host {
    /// What it was built from.
    pub fn spec(&self) -> &HostSpec {
        &self.spec
    }

    /// Its namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The router-side end of its veth (the bridge port).
    pub fn router_port(&self) -> &str {
        &self.port
    }
}

/// The built home network. Dropping it stops the responders, then removes every
/// namespace (stopping the processes tracked in them).
#[derive(Debug)]
pub struct Home {
    // Declared first so it drops first: responder threads end before their
    // namespaces go.
    responders: Mutex<Responders>,
    hosts: Vec<Host>,
    router: Netns,
    isp: Netns,
    segments: Vec<Segment>,
}

impl Home {
    /// Builds the isp, the router and the hosts of `spec`, and starts the
    /// standard responders (TCP banner on 80, TCP and UDP echo on 7) in the isp
    /// (bound to [`INTERNET_V4`] and [`INTERNET_V6`]) and in every host (on all
    /// addresses).
    pub fn new(spec: &HomeSpec) -> Result<Home> {
        let segments = plan(spec)?;
        let isp = Netns::new(ISP)?;
        let router = Netns::new(ROUTER)?;

        isp.ip_batch(&[
            format!("link add eth0 type veth peer name {WAN_IF} netns {}", router.name()),
            format!("addr add {ISP_V4} dev eth0"),
            format!("addr add {ISP_V6} dev eth0 nodad"),
            format!("addr add {INTERNET_V4}/32 dev lo"),
            format!("addr add {INTERNET_V6}/128 dev lo"),
            "link set eth0 up".to_string(),
        ])?;

        // Inside the router namespace only: `ip netns exec` makes sysctl write
        // that namespace's /proc/sys/net. all.forwarding also sets the default
        // for interfaces created later (the daemon's bridges).
        router.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ])?;
        router.ip_batch(&[
            format!("addr add {ROUTER_WAN_V4} dev {WAN_IF}"),
            format!("addr add {ROUTER_WAN_V6} dev {WAN_IF} nodad"),
            format!("link set {WAN_IF} up"),
            format!("route add default via {} dev {WAN_IF}", ISP_V4.addr()),
            format!("route add ::/0 via {} dev {WAN_IF}", ISP_V6.addr()),
        ])?;

        let mut hosts = Vec::with_capacity(spec.hosts.len());
        for host_spec in &spec.hosts {
            let segment = segments
                .iter()
                .find(|s| s.name == host_spec.segment)
                .ok_or_else(|| Error::Spec(format!("unknown segment {}", host_spec.segment)))?;
            hosts.push(build_host(host_spec, segment, &router)?);
        }
        let ports_up: Vec<String> = hosts.iter().map(|h| format!("link set {} up", h.port)).collect();
        router.ip_batch(&ports_up)?;

        let mut responders = Responders::new();
        responders.start_standard_on(&isp, INTERNET_V4.into())?;
        responders.start_standard_on(&isp, INTERNET_V6.into())?;
        for host in &hosts {
            responders.start_standard(&host.ns)?;
        }

        Ok(Home {
            responders: Mutex::new(responders),
            hosts,
            router,
            isp,
            segments,
        })
    }

    /// A namespace by name: `"router"`, `"isp"`, or a host's name.
    pub fn ns(&self, name: &str) -> Result<&Netns> {
        match name {
            ROUTER => Ok(&self.router),
            ISP => Ok(&self.isp),
            _ => self.host(name).map(Host::ns).ok_or_else(|| Error::NotFound {
                kind: "namespace",
                name: name.to_string(),
            }),
        }
    }

    /// The router namespace.
    pub fn router(&self) -> &Netns {
        &self.router
    }

    /// The isp ("internet") namespace.
    pub fn isp(&self) -> &Netns {
        &self.isp
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.spec.name == name)
    }

    /// All hosts, in spec order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// A segment by name.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// All segments, in spec order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The internet host's IPv4 address ([`INTERNET_V4`]).
    pub fn internet_v4(&self) -> Ipv4Addr {
        INTERNET_V4
    }

    /// The internet host's IPv6 address ([`INTERNET_V6`]).
    pub fn internet_v6(&self) -> Ipv6Addr {
        INTERNET_V6
    }

    /// Names of all namespaces of this home (isp, router, hosts).
    pub fn ns_names(&self) -> Vec<String> {
        [&self.isp, &self.router]
            .into_iter()
            .chain(self.hosts.iter().map(Host::ns))
            .map(|ns| ns.name().to_string())
            .collect()
    }

    /// Starts an extra TCP banner responder (writes `ok\n`, closes) on `port`, all
    /// addresses, in namespace `ns` (see [`Home::ns`]); stopped with the home.
    pub fn start_tcp_listener(&self, ns: &str, port: u16) -> Result<()> {
        let addr = (IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into();
        self.lock_responders().start_tcp_banner(self.ns(ns)?, addr)
    }

    /// Starts an extra UDP echo responder on `port`, all addresses, in namespace
    /// `ns`; stopped with the home.
    pub fn start_udp_echo(&self, ns: &str, port: u16) -> Result<()> {
        let addr = (IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into();
        self.lock_responders().start_udp_echo(self.ns(ns)?, addr)
    }

    /// Starts a UDP echo responder bound to `addr` in namespace `ns` (replies
    /// then come from that address, whatever the route back); stopped with the
    /// home.
    pub fn start_udp_echo_at(&self, ns: &str, addr: std::net::SocketAddr) -> Result<()> {
        self.lock_responders().start_udp_echo(self.ns(ns)?, addr)
    }

    fn lock_responders(&self) -> std::sync::MutexGuard<'_, Responders> {
        self.responders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates a host's namespace and its veth pair; the router end is named by
/// [`port_name`] and left down (the caller brings all ports up at once).
fn build_host(spec: &HostSpec, segment: &Segment, router: &Netns) -> Result<Host> {
    let port = port_name(&segment.name, &spec.name);
    let ns = Netns::new(&spec.name)?;
    let mac = format_mac(spec.mac);
    let mut commands = vec![format!(
        "link add eth0 address {mac} type veth peer name {port} netns {}",
        router.name()
    )];
    if let Some(ipv4) = spec.ipv4 {
        commands.push(format!("addr add {ipv4} dev eth0"));
    }
    if let Some(ipv6) = spec.ipv6 {
        commands.push(format!("addr add {ipv6} dev eth0 nodad"));
    }
    commands.push("link set eth0 up".to_string());
    if spec.ipv4.is_some() {
        commands.push(format!("route add default via {}", segment.gateway_v4.addr()));
    }
    if let (Some(_), Some(gateway)) = (spec.ipv6, segment.gateway_v6) {
        commands.push(format!("route add ::/0 via {}", gateway.addr()));
    }
    ns.ip_batch(&commands)?;
    Ok(Host {
        spec: spec.clone(),
        port,
        ns,
    })
}

/// The router-side port name of `host` on `segment`: `{segment}-{host}`, cut to
/// 15 bytes (the kernel's limit).
///
/// The rule is kept simple so tests can predict names; [`Home::new`] rejects a
/// spec where two ports would get the same name (rename the hosts instead).
pub fn port_name(segment: &str, host: &str) -> String {
    let mut name = format!("{segment}-{host}");
    // Names are validated as ASCII, so cutting at a byte index is safe.
    name.truncate(IFNAME_MAX);
    name
}

/// Validates `spec` and works out every segment's ports.
fn plan(spec: &HomeSpec) -> Result<Vec<Segment>> {
    let mut segments: Vec<Segment> = Vec::new();
    for s in &spec.segments {
        check_name("segment", &s.name)?;
        check_name("bridge", &s.bridge)?;
        if s.bridge.len() > IFNAME_MAX {
            return Err(Error::Spec(format!("bridge name {} is over 15 bytes", s.bridge)));
        }
        if segments.iter().any(|o| o.name == s.name || o.bridge == s.bridge) {
            return Err(Error::Spec(format!(
                "segment {} or bridge {} given twice",
                s.name, s.bridge
            )));
        }
        segments.push(Segment {
            name: s.name.clone(),
            bridge: s.bridge.clone(),
            gateway_v4: s.gateway_v4,
            gateway_v6: s.gateway_v6,
            ports: Vec::new(),
        });
    }

    let mut taken: Vec<String> = vec![WAN_IF.to_string(), "lo".to_string()];
    taken.extend(segments.iter().map(|s| s.bridge.clone()));
    let mut host_names: Vec<&str> = Vec::new();
    for h in &spec.hosts {
        check_name("host", &h.name)?;
        if h.name == ROUTER || h.name == ISP || host_names.contains(&h.name.as_str()) {
            return Err(Error::Spec(format!("host name {} is reserved or given twice", h.name)));
        }
        host_names.push(&h.name);
        let segment = segments
            .iter_mut()
            .find(|s| s.name == h.segment)
            .ok_or_else(|| Error::Spec(format!("host {} is on unknown segment {}", h.name, h.segment)))?;
        let port = port_name(&segment.name, &h.name);
        if taken.contains(&port) {
            return Err(Error::Spec(format!(
                "router port name {port} (for host {}) is not unique; shorten the names",
                h.name
            )));
        }
        taken.push(port.clone());
        segment.ports.push(port);
    }
    Ok(segments)
}

/// Names end up in interface names, namespace names and `ip` batch lines, so
/// they are held to a strict alphabet.
fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || name.len() > 24 || !ok_chars {
        return Err(Error::Spec(format!(
            "{kind} name {name:?} must be 1-24 characters of [A-Za-z0-9_-]"
        )));
    }
    Ok(())
}

fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod unit {
    use super::*;

    fn net4(s: &str) -> Ipv4Net {
        s.parse().expect("test CIDR")
    }

    fn spec(hosts: &[(&str, &str)]) -> HomeSpec {
        HomeSpec {
            segments: vec![
                SegmentSpec::new("lan", net4("10.0.1.1/24")),
                SegmentSpec::new("iot", net4("10.0.2.1/24")),
            ],
            hosts: hosts
                .iter()
                .map(|(name, seg)| HostSpec::new(name, seg, [2, 0, 0, 0, 0, 1]))
                .collect(),
        }
    }

    #[test]
    fn port_names_follow_the_rule() {
        assert_eq!(port_name("lan", "laptop"), "lan-laptop");
        assert_eq!(port_name("iot", "thermostat-kitchen"), "iot-thermostat-");
        assert_eq!(port_name("iot", "thermostat-kitchen").len(), 15);
    }

    #[test]
    fn plan_lists_ports_per_segment() {
        let segments = plan(&spec(&[("laptop", "lan"), ("cam", "iot"), ("phone", "lan")])).expect("valid spec");
        assert_eq!(segments[0].ports, ["lan-laptop", "lan-phone"]);
        assert_eq!(segments[1].ports, ["iot-cam"]);
        assert_eq!(segments[0].bridge, "br-lan");
    }

    #[test]
    fn plan_rejects_bad_specs() {
        // Same port after truncation.
        assert!(plan(&spec(&[("thermostat-kitchen", "iot"), ("thermostat-hall", "iot")])).is_err());
        assert!(plan(&spec(&[("a", "lan"), ("a", "iot")])).is_err());
        assert!(plan(&spec(&[("router", "lan")])).is_err());
        assert!(plan(&spec(&[("a", "nowhere")])).is_err());
        assert!(plan(&spec(&[("a b", "lan")])).is_err());
    }

    #[test]
    fn macs_are_formatted_for_ip() {
        assert_eq!(format_mac([2, 0, 0, 0xab, 0, 1]), "02:00:00:ab:00:01");
    }
}
