//! What `bulkhead init` writes, as a function of what the machine has and what
//! the homeowner asked for. Pure: the caller reads the machine and probes for
//! DHCP servers (see `mod.rs`).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::net::{ObservedKind, ObservedLink, ObservedNet};

/// What the machine has, as far as planning cares.
#[derive(Debug, Clone, Default)]
pub struct MachineFacts {
    /// Links and their addresses.
    pub net: ObservedNet,
    /// The interface of the default route (IPv4's, else IPv6's).
    pub default_route: Option<String>,
    /// The resolvers this machine uses now (from resolv.conf), loopback ones
    /// left out.
    pub resolvers: Vec<IpAddr>,
}

/// What the homeowner asked for on the command line (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitRequest {
    /// The WAN interface (default: the default route's).
    pub wan: Option<String>,
    /// The home network's interfaces (default: every other plain link).
    pub lan: Vec<String>,
    /// One bridge of all LAN interfaces, with this name. Without it, one LAN
    /// interface is its own segment and several are bridged as `br-lan`
    /// unless they were named one by one on the command line.
    pub bridge: Option<String>,
}

/// Whether Bulkhead serves DHCP on a segment or watches another server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpRole {
    /// Bulkhead is the DHCP server.
    Serve,
    /// Another server answered on this network: Bulkhead observes it.
    Observe {
        /// The server that answered.
        server: Ipv4Addr,
    },
}

/// One planned home network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSegment {
    /// Segment name (`lan`, `lan2`, …).
    pub name: String,
    /// The interface the router's address goes on.
    pub interface: String,
    /// The ports of a bridge Bulkhead creates; empty: an existing link.
    pub ports: Vec<String>,
    /// The router's address and the network.
    pub ipv4: Ipv4Net,
    /// The router's IPv6 address in a ULA /64.
    pub ipv6: Ipv6Net,
    /// DHCP.
    pub dhcp: DhcpRole,
}

impl PlannedSegment {
    /// The links carrying this network (the ports, or the link itself): where
    /// to look for another DHCP server.
    pub fn links(&self) -> Vec<String> {
        if self.ports.is_empty() {
            vec![self.interface.clone()]
        } else {
            self.ports.clone()
        }
    }

    /// The DHCP pool: .100 to .199 of the /24.
    pub fn pool(&self) -> (Ipv4Addr, Ipv4Addr) {
        let base = u32::from(self.ipv4.network());
        (Ipv4Addr::from(base + 100), Ipv4Addr::from(base + 199))
    }
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// The WAN interface.
    pub wan: String,
    /// The home networks.
    pub segments: Vec<PlannedSegment>,
    /// Upstream resolvers.
    pub resolvers: Vec<IpAddr>,
    /// What was chosen and why, one line each, for the homeowner.
    pub reasons: Vec<String>,
}

/// Why no plan could be made; each says what to pass instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// No default route and no `--wan`.
    #[error(
        "this machine has no default route, so the internet side is unknown: say which interface it is with --wan IF"
    )]
    NoWan,
    /// A named interface does not exist.
    #[error("there is no interface {0} (see `ip link`)")]
    NoSuchInterface(String),
    /// The WAN was also named as a LAN.
    #[error("{0} cannot be both the WAN and a home network")]
    WanIsLan(String),
    /// Nothing left for the home network.
    #[error("no interface is left for the home network besides the WAN {0}: say which with --lan IF")]
    NoLan(String),
    /// A LAN interface is unusable as one.
    #[error("{name} cannot carry the home network: it is {why}")]
    Unusable {
        /// The interface.
        name: String,
        /// Why not.
        why: String,
    },
    /// Every candidate network collides with an address already here.
    #[error("every 192.168.x.0/24 and 10.x.0.0/24 this plan tries is in use on this machine")]
    NoFreeNetwork,
}

/// Plans the config. `ula_id` is the 40-bit random global ID of the home's
/// IPv6 ULA prefix (RFC 4193), given by the caller so planning stays pure.
pub fn plan(facts: &MachineFacts, request: &InitRequest, ula_id: [u8; 5]) -> Result<InitPlan, InitError> {
    let mut reasons = Vec::new();
    let wan = match (&request.wan, &facts.default_route) {
        (Some(w), _) => {
            link(&facts.net, w)?;
            reasons.push(format!("WAN {w}: as you said"));
            w.clone()
        }
        (None, Some(r)) => {
            reasons.push(format!("WAN {r}: the default route goes out of it"));
            r.clone()
        }
        (None, None) => return Err(InitError::NoWan),
    };
    let lan: Vec<String> = if request.lan.is_empty() {
        let found: Vec<String> = facts
            .net
            .links
            .iter()
            // Found by itself: plain Ethernet links (and veth, what a virtual
            // machine or a test has) only. A bridge or VLAN someone made is
            // used when named with --lan.
            .filter(|l| l.name != wan && matches!(&l.kind, ObservedKind::Other(None) | ObservedKind::Other(Some(_))))
            .filter(|l| usable_as_lan(&facts.net, l).is_ok())
            .map(|l| l.name.clone())
            .collect();
        if found.is_empty() {
            return Err(InitError::NoLan(wan));
        }
        reasons.push(format!(
            "home network on {}: every other Ethernet link of this machine",
            found.join(", ")
        ));
        found
    } else {
        for name in &request.lan {
            if *name == wan {
                return Err(InitError::WanIsLan(wan));
            }
            let l = link(&facts.net, name)?;
            usable_as_lan(&facts.net, l).map_err(|why| InitError::Unusable {
                name: name.clone(),
                why,
            })?;
        }
        if request.bridge.is_some() {
            if let Some(b) = request
                .lan
                .iter()
                .find(|n| matches!(facts.net.link(n).map(|l| &l.kind), Some(ObservedKind::Bridge)))
            {
                return Err(InitError::Unusable {
                    name: b.clone(),
                    why: "a bridge, which cannot be a port of another".into(),
                });
            }
        }
        reasons.push(format!("home network on {}: as you said", request.lan.join(", ")));
        request.lan.clone()
    };

    // One bridge, or one segment per link.
    let bridge = match &request.bridge {
        Some(b) => Some(b.clone()),
        None if request.lan.is_empty() && lan.len() > 1 => Some("br-lan".to_string()),
        None => None,
    };
    let shapes: Vec<(String, Vec<String>)> = match &bridge {
        Some(b) => {
            reasons.push(format!(
                "one network: Bulkhead creates the bridge {b} with {} as its ports",
                lan.join(", ")
            ));
            vec![(b.clone(), lan.clone())]
        }
        None => lan.iter().map(|l| (l.clone(), Vec::new())).collect(),
    };

    let in_use: Vec<IpNet> = facts
        .net
        .links
        .iter()
        .flat_map(|l| l.addresses.iter().copied())
        .collect();
    let mut networks = free_networks(&in_use);
    let mut segments = Vec::new();
    for (i, (interface, ports)) in shapes.into_iter().enumerate() {
        let net = networks.next().ok_or(InitError::NoFreeNetwork)?;
        let ipv4 =
            Ipv4Net::new(Ipv4Addr::from(u32::from(net.network()) + 1), 24).map_err(|_| InitError::NoFreeNetwork)?;
        let ipv6 = ula_router(ula_id, i as u16);
        let name = if i == 0 {
            "lan".to_string()
        } else {
            format!("lan{}", i + 1)
        };
        segments.push(PlannedSegment {
            name,
            interface,
            ports,
            ipv4,
            ipv6,
            dhcp: DhcpRole::Serve,
        });
    }
    if let Some(first) = segments.first() {
        let wan_nets: Vec<String> = link(&facts.net, &wan)
            .map(|l| {
                l.addresses
                    .iter()
                    .filter(|a| a.addr().is_ipv4())
                    .map(|a| a.to_string())
                    .collect()
            })
            .unwrap_or_default();
        reasons.push(format!(
            "addresses from {}: no network of this machine overlaps it{}",
            first.ipv4.trunc(),
            if wan_nets.is_empty() {
                String::new()
            } else {
                format!(" (the WAN has {})", wan_nets.join(", "))
            }
        ));
    }
    if facts.resolvers.is_empty() {
        reasons.push("DNS: no resolver found in resolv.conf; set dns.upstreams before starting".to_string());
    } else {
        let list: Vec<String> = facts.resolvers.iter().map(IpAddr::to_string).collect();
        reasons.push(format!(
            "DNS upstreams {}: the resolvers this machine uses now",
            list.join(", ")
        ));
    }
    Ok(InitPlan {
        wan,
        segments,
        resolvers: facts.resolvers.clone(),
        reasons,
    })
}

impl InitPlan {
    /// Another DHCP server answered on a segment's links: observe it.
    pub fn another_dhcp_server(&mut self, segment: usize, server: Ipv4Addr) {
        if let Some(s) = self.segments.get_mut(segment) {
            s.dhcp = DhcpRole::Observe { server };
            self.reasons.push(format!(
                "DHCP on {}: observe — the server at {server} already answers there (Bulkhead watches it instead of competing)",
                s.name
            ));
        }
    }

    /// Records that no DHCP server answered on any segment.
    pub fn serving_dhcp(&mut self) {
        let names: Vec<&str> = self
            .segments
            .iter()
            .filter(|s| s.dhcp == DhcpRole::Serve)
            .map(|s| s.name.as_str())
            .collect();
        if !names.is_empty() {
            self.reasons.push(format!(
                "DHCP on {}: serve — no other DHCP server answered there",
                names.join(", ")
            ));
        }
    }
}

fn link<'a>(net: &'a ObservedNet, name: &str) -> Result<&'a ObservedLink, InitError> {
    net.link(name)
        .ok_or_else(|| InitError::NoSuchInterface(name.to_string()))
}

/// Whether a link can carry the home network (a port of a bridge Bulkhead
/// makes, or a network of its own): an Ethernet link of this machine, not
/// loopback, not a tunnel, not a port of some other bridge.
fn usable_as_lan(net: &ObservedNet, l: &ObservedLink) -> Result<(), String> {
    if l.name == "lo" {
        return Err("the loopback".into());
    }
    if let Some(m) = l.master {
        let master = net.link_by_index(m).map_or_else(|| format!("#{m}"), |b| b.name.clone());
        return Err(format!("already a port of {master}"));
    }
    match &l.kind {
        ObservedKind::Other(None) | ObservedKind::Vlan { .. } | ObservedKind::Bridge => Ok(()),
        ObservedKind::Other(Some(k)) if k == "veth" => Ok(()),
        other => Err(other.to_string()),
    }
}

/// /24 networks to try, in order, that overlap nothing in use.
fn free_networks(in_use: &[IpNet]) -> impl Iterator<Item = Ipv4Net> + '_ {
    let candidates = (1..=25u8)
        .map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 10, 0), 24))
        .chain((1..=25u8).map(|i| Ipv4Net::new(Ipv4Addr::new(10, i * 10, 0, 0), 24)))
        .filter_map(Result::ok);
    candidates.filter(move |c| {
        !in_use.iter().any(|n| match n {
            IpNet::V4(n) => n.contains(&c.network()) || c.contains(&n.network()),
            IpNet::V6(_) => false,
        })
    })
}

/// `fdXX:XXXX:XXXX:<subnet>::1/64` from the 40-bit global ID.
fn ula_router(id: [u8; 5], subnet: u16) -> Ipv6Net {
    let [a, b, c, d, e] = id;
    let addr = Ipv6Addr::new(
        0xfd00 | u16::from(a),
        u16::from_be_bytes([b, c]),
        u16::from_be_bytes([d, e]),
        0x10 + subnet,
        0,
        0,
        0,
        1,
    );
    // A /64 always fits.
    Ipv6Net::new(addr, 64).unwrap_or_else(|_| Ipv6Net::default())
}

/// The resolvers named in a resolv.conf, loopback ones (a local stub such as
/// systemd-resolved's 127.0.0.53) left out.
pub fn resolvers_of(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        // A scoped IPv6 address (fe80::1%eth0) cannot be an upstream here.
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect()
}

/// The config file for the plan, commented in the homeowner's words.
pub fn render_config(plan: &InitPlan, written_on: &str) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Written by `bulkhead init` on {written_on} for this machine.\n\
         # Every setting is explained in /usr/share/bulkhead/examples/bulkhead.toml\n\
         # (examples/bulkhead.toml in the source). Check a change with\n\
         # `bulkhead check-config`, apply it with `systemctl reload bulkhead`.\n\
         state_dir = \"/var/lib/bulkhead\"\n\
         policies_dir = \"/etc/bulkhead/policies\"\n\
         control_socket = \"/run/bulkhead/control.sock\"\n\n\
         # The internet side.\n\
         [wan]\n\
         interface = \"{}\"",
        plan.wan
    );
    for s in &plan.segments {
        let _ = writeln!(
            t,
            "\n# A home network. Unknown devices wait in quarantine until you approve them."
        );
        let _ = writeln!(
            t,
            "[[segments]]\nname = \"{}\"\ninterface = \"{}\"",
            s.name, s.interface
        );
        if s.ports.is_empty() {
            let _ = writeln!(t, "kind = \"existing\"");
        } else {
            let ports: Vec<String> = s.ports.iter().map(|p| format!("\"{p}\"")).collect();
            let _ = writeln!(t, "kind = \"bridge\"\nports = [{}]", ports.join(", "));
        }
        let (lo, hi) = s.pool();
        let _ = writeln!(
            t,
            "ipv4 = \"{}\"\nipv6 = \"{}\"\ndhcp_pool = \"{lo}-{hi}\"",
            s.ipv4, s.ipv6
        );
        match s.dhcp {
            DhcpRole::Serve => {
                let _ = writeln!(t, "dhcp = \"serve\"");
            }
            DhcpRole::Observe { server } => {
                let _ = writeln!(
                    t,
                    "# {server} answered DHCP here when `bulkhead init` looked: Bulkhead\n\
                     # watches it. Turn that server off and set \"serve\" to let Bulkhead do it.\n\
                     dhcp = \"observe\""
                );
            }
        }
    }
    let first = plan.segments.first().map(|s| s.ipv4.addr());
    let listen = match first {
        Some(a) => format!("[\"127.0.0.1:8080\", \"{a}:8080\"]"),
        None => "[\"127.0.0.1:8080\"]".to_string(),
    };
    let _ = writeln!(
        t,
        "\n# The web UI, on loopback and the home network (never the WAN).\n[web]\nlisten = {listen}"
    );
    let upstreams: Vec<String> = plan.resolvers.iter().map(|r| format!("\"{r}\"")).collect();
    let _ = writeln!(
        t,
        "\n# Bulkhead answers DNS for the home, with per-device policy.\n[dns]\nenabled = true\n\
         # The resolvers this machine used when `bulkhead init` ran.\nupstreams = [{}]",
        upstreams.join(", ")
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ObservedLink;

    fn l(name: &str, index: u32, kind: ObservedKind, master: Option<u32>, addrs: &[&str]) -> ObservedLink {
        ObservedLink {
            name: name.into(),
            index,
            kind,
            master,
            up: true,
            addresses: addrs.iter().map(|a| a.parse().expect("net")).collect(),
        }
    }

    /// A fresh box: loopback, a WAN with an address from the ISP's router
    /// (on 192.168.10.0/24, the first network init would pick), two NICs, a
    /// WireGuard link and docker's bridge with a port.
    fn fresh_box() -> MachineFacts {
        MachineFacts {
            net: ObservedNet {
                links: vec![
                    l("lo", 1, ObservedKind::Other(None), None, &["127.0.0.1/8"]),
                    l("eth0", 2, ObservedKind::Other(None), None, &["192.168.10.57/24"]),
                    l("eth1", 3, ObservedKind::Other(None), None, &[]),
                    l("eth2", 4, ObservedKind::Other(None), None, &[]),
                    l(
                        "wg0",
                        5,
                        ObservedKind::Other(Some("wireguard".into())),
                        None,
                        &["10.64.0.2/32"],
                    ),
                    l("docker0", 6, ObservedKind::Bridge, None, &["172.17.0.1/16"]),
                    l("veth1a2b", 7, ObservedKind::Other(Some("veth".into())), Some(6), &[]),
                ],
            },
            default_route: Some("eth0".into()),
            resolvers: vec!["192.168.10.1".parse().expect("ip")],
        }
    }

    const ULA: [u8; 5] = [0xab, 0xcd, 0xef, 0x01, 0x23];

    #[test]
    fn a_fresh_box_gets_a_bridge_of_its_nics_on_a_free_network() {
        let p = plan(&fresh_box(), &InitRequest::default(), ULA).expect("plan");
        assert_eq!(p.wan, "eth0");
        assert_eq!(p.segments.len(), 1);
        let s = &p.segments[0];
        assert_eq!(
            (s.interface.as_str(), s.ports.clone()),
            ("br-lan", vec!["eth1".to_string(), "eth2".into()])
        );
        // 192.168.10.0/24 is the WAN's: the next one.
        assert_eq!(s.ipv4.to_string(), "192.168.20.1/24");
        assert_eq!(
            s.pool(),
            (
                "192.168.20.100".parse().expect("ip"),
                "192.168.20.199".parse().expect("ip")
            )
        );
        assert_eq!(s.ipv6.to_string(), "fdab:cdef:123:10::1/64");
        assert!(p.reasons.iter().any(|r| r.contains("default route")), "{:?}", p.reasons);
    }

    #[test]
    fn links_of_other_bridges_tunnels_and_loopback_are_never_picked() {
        let facts = fresh_box();
        let p = plan(&facts, &InitRequest::default(), ULA).expect("plan");
        // Only the two NICs: not docker's bridge or its port, the tunnel or lo.
        assert_eq!(p.segments[0].ports, ["eth1", "eth2"]);
        for (name, why) in [
            ("veth1a2b", "already a port of docker0"),
            ("wg0", "a wireguard link"),
            ("lo", "the loopback"),
        ] {
            let e = plan(
                &facts,
                &InitRequest {
                    lan: vec![name.into()],
                    ..Default::default()
                },
                ULA,
            )
            .expect_err("unusable");
            assert!(e.to_string().contains(why), "{name}: {e}");
        }
    }

    #[test]
    fn named_links_without_a_bridge_are_one_network_each_and_with_one_a_bridge() {
        let facts = fresh_box();
        let each = InitRequest {
            wan: Some("eth0".into()),
            lan: vec!["eth1".into(), "eth2".into()],
            bridge: None,
        };
        let p = plan(&facts, &each, ULA).expect("plan");
        let got: Vec<(&str, &str, String)> = p
            .segments
            .iter()
            .map(|s| (s.name.as_str(), s.interface.as_str(), s.ipv4.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("lan", "eth1", "192.168.20.1/24".to_string()),
                ("lan2", "eth2", "192.168.30.1/24".to_string())
            ]
        );
        assert_ne!(p.segments[0].ipv6.trunc(), p.segments[1].ipv6.trunc());
        let bridged = plan(
            &facts,
            &InitRequest {
                bridge: Some("br-home".into()),
                ..each
            },
            ULA,
        )
        .expect("plan");
        assert_eq!(bridged.segments.len(), 1);
        assert_eq!(bridged.segments[0].interface, "br-home");
    }

    #[test]
    fn what_cannot_be_planned_says_what_to_pass() {
        let mut facts = fresh_box();
        facts.default_route = None;
        assert_eq!(plan(&facts, &InitRequest::default(), ULA), Err(InitError::NoWan));
        let facts = fresh_box();
        let e = plan(
            &facts,
            &InitRequest {
                wan: Some("eth9".into()),
                ..Default::default()
            },
            ULA,
        );
        assert_eq!(e, Err(InitError::NoSuchInterface("eth9".into())));
        let e = plan(
            &facts,
            &InitRequest {
                lan: vec!["eth0".into()],
                ..Default::default()
            },
            ULA,
        );
        assert_eq!(e, Err(InitError::WanIsLan("eth0".into())));
        let mut only_wan = fresh_box();
        only_wan.net.links.retain(|l| l.name == "lo" || l.name == "eth0");
        assert_eq!(
            plan(&only_wan, &InitRequest::default(), ULA),
            Err(InitError::NoLan("eth0".into()))
        );
        // Every candidate taken: a /8 and a /16 cover them all.
        let mut crowded = fresh_box();
        crowded.net.links[1].addresses = vec![
            "10.0.0.2/8".parse().expect("net"),
            "192.168.0.2/16".parse().expect("net"),
        ];
        assert_eq!(
            plan(&crowded, &InitRequest::default(), ULA),
            Err(InitError::NoFreeNetwork)
        );
    }

    #[test]
    fn resolv_conf_gives_upstreams_without_local_stubs() {
        let text = "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver  2001:db8::53 \nnameserver fe80::1%eth0\noptions edns0\nsearch lan\n";
        assert_eq!(
            resolvers_of(text),
            [
                "192.0.2.1".parse::<IpAddr>().expect("ip"),
                "2001:db8::53".parse().expect("ip")
            ]
        );
    }

    #[test]
    fn the_written_config_loads_and_says_what_was_planned() {
        let mut facts = fresh_box();
        facts.net.links.retain(|l| l.name != "docker0" && l.name != "veth1a2b");
        let mut p = plan(
            &facts,
            &InitRequest {
                lan: vec!["eth1".into(), "eth2".into()],
                ..Default::default()
            },
            ULA,
        )
        .expect("plan");
        p.another_dhcp_server(1, "192.168.30.254".parse().expect("ip"));
        p.serving_dhcp();
        let text = render_config(&p, "2026-12-06");
        let policies: Vec<(std::path::PathBuf, String)> = crate::testutil::shipped_policies()
            .into_iter()
            .map(|(name, text)| (std::path::PathBuf::from(format!("/etc/bulkhead/policies/{name}")), text))
            .collect();
        let c = crate::config::load_from_texts(std::path::Path::new("/etc/bulkhead/bulkhead.toml"), &text, &policies)
            .unwrap_or_else(|e| panic!("the written config does not load:\n{e}\n---\n{text}"));
        assert_eq!(c.wan_interface, "eth0");
        assert_eq!(c.segments.len(), 2);
        assert_eq!(c.dns.upstreams.len(), 1);
        assert!(text.contains("dhcp = \"observe\""), "{text}");
        assert!(p.reasons.iter().any(|r| r.contains("lan2: observe")), "{:?}", p.reasons);
        assert!(
            p.reasons.iter().any(|r| r.contains("DHCP on lan: serve")),
            "{:?}",
            p.reasons
        );
    }
}
