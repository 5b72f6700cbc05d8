//! `[tunnel]`: the WireGuard tunnel in the main file, and what goes through it in
//! the policy files. Raw TOML with spans -> [`TunnelConfig`] and
//! [`TunnelSelectors`], every problem reported at file:line:column with its field.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Range;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::class_rules::ZoneRef;
use super::error::Reporter;
use super::load::{check_ifname, is_dns_name, resolve, ReadKey, SpannedList};
use super::types::*;
use crate::tunnel::keys::{self, KeyError};

/// The interface name when `interface` is not given.
pub const DEFAULT_INTERFACE: &str = "bhwg0";
/// The MTU when `mtu` is not given (WireGuard's usual 1420).
pub const DEFAULT_MTU: u16 = 1420;

/// `[tunnel]` in the main file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    interface: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    private_key_file: Option<Spanned<String>>,
    addresses: Option<SpannedList>,
    mtu: Option<Spanned<i64>>,
    listen_port: Option<Spanned<i64>>,
    #[serde(default)]
    peers: Vec<Spanned<RawPeer>>,
}

/// One `[[tunnel.peers]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    public_key: Option<Spanned<String>>,
    preshared_key: Option<Spanned<String>>,
    preshared_key_file: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    allowed_ips: Option<SpannedList>,
    persistent_keepalive: Option<Spanned<i64>>,
}

/// `[tunnel]` in a policy file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyTunnel {
    zones: Option<SpannedList>,
    devices: Option<SpannedList>,
    destinations: Option<SpannedList>,
    domain_sets: Option<SpannedList>,
    /// `domains.SET = ["example.com", …]`: the domains whose answers fill SET.
    domains: Option<BTreeMap<String, SpannedList>>,
    // Not `Spanned`: toml cannot span a table that is only implied (by
    // `[tunnel.exclude]` or a dotted key), and no error points at the table.
    exclude: Option<RawTunnelExclude>,
}

/// `[tunnel.exclude]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnelExclude {
    devices: Option<SpannedList>,
    destinations: Option<SpannedList>,
}

/// An error and its causes, `: `-separated.
fn chain(e: &KeyError) -> String {
    let mut out = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

fn key(rep: &mut Reporter<'_>, v: &Spanned<String>, field: String) -> Option<WgKey> {
    keys::parse_key(v.get_ref())
        .map_err(|e| rep.at(v.span(), field, chain(&e)))
        .ok()
}

fn ranged<T: TryFrom<i64>>(
    rep: &mut Reporter<'_>,
    v: &Spanned<i64>,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
    message: &str,
) -> Option<T> {
    match T::try_from(*v.get_ref()) {
        Ok(x) if range.contains(v.get_ref()) => Some(x),
        _ => {
            rep.at(v.span(), field, message);
            None
        }
    }
}

/// Where the `[tunnel]` header is in `text` (toml cannot span a table that may be
/// only implied, by `[[tunnel.peers]]` alone or a dotted key): the header line, else
/// the first of the section's values, else the file's start.
fn section_span(t: &RawTunnel, text: &str) -> Range<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix('[').filter(|_| !l.starts_with("[[")) {
            let name = rest.split(']').next().unwrap_or_default().trim();
            if name == "tunnel" || name == "\"tunnel\"" {
                let indent = line.len() - line.trim_start().len();
                return offset + indent..offset + indent + l.len();
            }
        }
        offset += line.len();
    }
    let spans = [
        t.interface.as_ref().map(|v| v.span()),
        t.private_key.as_ref().map(|v| v.span()),
        t.private_key_file.as_ref().map(|v| v.span()),
        t.addresses.as_ref().map(|v| v.span()),
        t.mtu.as_ref().map(|v| v.span()),
        t.listen_port.as_ref().map(|v| v.span()),
        t.peers.first().map(|v| v.span()),
    ];
    spans.into_iter().flatten().min_by_key(|s| s.start).unwrap_or(0..0)
}

/// Validates the main file's `[tunnel]`. `taken` holds the WAN's and the segments'
/// interface names; `base` is the main file's directory, `text` its content.
pub(super) fn validate_tunnel(
    t: &RawTunnel,
    text: &str,
    base: &Path,
    read_key: ReadKey<'_>,
    taken: &BTreeSet<String>,
    rep: &mut Reporter<'_>,
) -> Option<TunnelConfig> {
    let at = section_span(t, text);
    let mut ok = true;
    let interface = match &t.interface {
        None => DEFAULT_INTERFACE.to_string(),
        Some(i) => {
            if let Err(m) = check_ifname(i.get_ref()) {
                rep.at(i.span(), "tunnel.interface", m);
                ok = false;
            }
            i.get_ref().clone()
        }
    };
    if ok && taken.contains(&interface) {
        let span = t.interface.as_ref().map_or(at.clone(), |i| i.span());
        rep.at(
            span,
            "tunnel.interface",
            format!("interface `{interface}` is already used by the WAN or a segment"),
        );
        ok = false;
    }
    let private_key = match (&t.private_key, &t.private_key_file) {
        (Some(k), None) => key(rep, k, "tunnel.private_key".into()).map(PrivateKeySource::Inline),
        (None, Some(f)) => Some(PrivateKeySource::File(resolve(base, f.get_ref()))),
        (Some(_), Some(f)) => {
            rep.at(
                f.span(),
                "tunnel.private_key_file",
                "give either `private_key` or `private_key_file`, not both",
            );
            None
        }
        (None, None) => {
            rep.at(
                at.clone(),
                "tunnel.private_key_file",
                "the tunnel needs `private_key_file` (created with a new key when missing) or `private_key`",
            );
            None
        }
    };
    let mut addresses = Vec::new();
    match &t.addresses {
        None => {
            rep.at(
                at.clone(),
                "tunnel.addresses",
                "the tunnel needs `addresses`, e.g. [\"10.64.0.2/32\"] (from your VPN provider)",
            );
            ok = false;
        }
        Some(list) if list.get_ref().is_empty() => {
            rep.at(list.span(), "tunnel.addresses", "give at least one address");
            ok = false;
        }
        Some(list) => {
            for (i, a) in list.get_ref().iter().enumerate() {
                match a.get_ref().parse::<IpNet>() {
                    Ok(n) => addresses.push(n),
                    Err(_) => {
                        rep.at(
                            a.span(),
                            format!("tunnel.addresses[{i}]"),
                            format!(
                                "`{}` is not an address/prefix like 10.64.0.2/32 or fd64::2/128",
                                a.get_ref().escape_debug()
                            ),
                        );
                        ok = false;
                    }
                }
            }
        }
    }
    let mtu = match &t.mtu {
        None => Some(DEFAULT_MTU),
        Some(m) => ranged(
            rep,
            m,
            "tunnel.mtu",
            1280..=9000,
            "the MTU must be between 1280 and 9000",
        ),
    };
    let listen_port = match &t.listen_port {
        None => Some(None),
        Some(p) => ranged(
            rep,
            p,
            "tunnel.listen_port",
            1..=65535,
            "a UDP port is 1-65535 (leave `listen_port` out for a random one)",
        )
        .map(Some),
    };
    let mut peers = Vec::new();
    if t.peers.is_empty() {
        rep.at(
            at.clone(),
            "tunnel.peers",
            "the tunnel needs at least one [[tunnel.peers]] (your VPN provider's server)",
        );
        ok = false;
    }
    let mut seen: BTreeMap<[u8; 32], Range<usize>> = BTreeMap::new();
    for (i, p) in t.peers.iter().enumerate() {
        match validate_peer(i, p, base, read_key, rep) {
            Some(peer) => {
                if let Some(first) = seen.get(&peer.public_key.0) {
                    let span = p.get_ref().public_key.as_ref().map_or(p.span(), |k| k.span());
                    let msg = format!(
                        "this peer's public key is already used by the peer at {}",
                        rep.position(first.start)
                    );
                    rep.at(span, format!("tunnel.peers[{i}].public_key"), msg);
                    ok = false;
                } else {
                    let span = p.get_ref().public_key.as_ref().map_or(p.span(), |k| k.span());
                    seen.insert(peer.public_key.0, span);
                    peers.push(peer);
                }
            }
            None => ok = false,
        }
    }
    match (private_key, mtu, listen_port) {
        (Some(private_key), Some(mtu), Some(listen_port)) if ok => Some(TunnelConfig {
            interface,
            private_key,
            addresses,
            mtu,
            listen_port,
            peers,
        }),
        _ => None,
    }
}

fn validate_peer(
    i: usize,
    raw: &Spanned<RawPeer>,
    base: &Path,
    read_key: ReadKey<'_>,
    rep: &mut Reporter<'_>,
) -> Option<TunnelPeer> {
    let f = |n: &str| format!("tunnel.peers[{i}].{n}");
    let p = raw.get_ref();
    let mut ok = true;
    let public_key = match &p.public_key {
        Some(k) => key(rep, k, f("public_key")),
        None => {
            rep.at(raw.span(), f("public_key"), "a peer needs its `public_key`");
            None
        }
    };
    let preshared_key = match (&p.preshared_key, &p.preshared_key_file) {
        (None, None) => Some(None),
        (Some(k), None) => key(rep, k, f("preshared_key")).map(Some),
        (None, Some(file)) => match read_key(&resolve(base, file.get_ref())) {
            Ok(k) => Some(Some(k)),
            Err(e) => {
                rep.at(file.span(), f("preshared_key_file"), chain(&e));
                None
            }
        },
        (Some(_), Some(file)) => {
            rep.at(
                file.span(),
                f("preshared_key_file"),
                "give either `preshared_key` or `preshared_key_file`, not both",
            );
            None
        }
    };
    let endpoint = match &p.endpoint {
        None => Some(None),
        Some(e) => match parse_endpoint(e.get_ref()) {
            Ok(ep) => Some(Some(ep)),
            Err(m) => {
                rep.at(e.span(), f("endpoint"), m);
                None
            }
        },
    };
    let mut allowed_ips = Vec::new();
    match &p.allowed_ips {
        None => {
            rep.at(
                raw.span(),
                f("allowed_ips"),
                "a peer needs `allowed_ips`, e.g. [\"0.0.0.0/0\", \"::/0\"] for a VPN provider's server",
            );
            ok = false;
        }
        Some(list) if list.get_ref().is_empty() => {
            rep.at(list.span(), f("allowed_ips"), "give at least one network");
            ok = false;
        }
        Some(list) => {
            for (j, a) in list.get_ref().iter().enumerate() {
                match parse_network(a.get_ref()) {
                    Ok(n) => allowed_ips.push(n),
                    Err(m) => {
                        rep.at(a.span(), format!("tunnel.peers[{i}].allowed_ips[{j}]"), m);
                        ok = false;
                    }
                }
            }
        }
    }
    let persistent_keepalive = match &p.persistent_keepalive {
        None => Some(None),
        Some(k) if *k.get_ref() == 0 => Some(None),
        Some(k) => ranged(
            rep,
            k,
            &f("persistent_keepalive"),
            1..=65535,
            "the keepalive interval is 1-65535 seconds (0 or left out: none)",
        )
        .map(Some),
    };
    match (public_key, preshared_key, endpoint, persistent_keepalive) {
        (Some(public_key), Some(preshared_key), Some(endpoint), Some(persistent_keepalive)) if ok => Some(TunnelPeer {
            public_key,
            preshared_key,
            endpoint,
            allowed_ips,
            persistent_keepalive,
        }),
        _ => None,
    }
}

/// Parses `host:port` or `[v6]:port`; the host is an IP address or a DNS name.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let bad = || {
        format!(
            "`{}` is not an endpoint like vpn.example.net:51820, 198.51.100.7:51820 or [2001:db8::7]:51820",
            s.escape_debug()
        )
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
        host.parse::<Ipv6Addr>().map_err(|_| bad())?;
        (host, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(format!(
                "`{}`: write an IPv6 endpoint in brackets, like [2001:db8::7]:51820",
                s.escape_debug()
            ));
        }
        if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
            return Err(bad());
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Endpoint {
            host: host.to_string(),
            port: p,
        }),
        _ => Err(bad()),
    }
}

/// Parses a network (`203.0.113.0/24`; a bare address is a /32 or /128). Host bits
/// must be zero: `10.0.0.1/24` is most likely a typo for one of two things.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(format!(
                    "`{}` is not a network like 203.0.113.0/24 or 2001:db8::/48",
                    s.escape_debug()
                ))
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "`{s}` is not a network: its host bits are not zero (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Merges the policy files' `[tunnel]` selectors (a union), remembering where each
/// device was selected or excluded to report one that is both.
#[derive(Default)]
pub(super) struct SelectorMerge {
    sel: TunnelSelectors,
    selected_at: BTreeMap<MacAddr, String>,
    excluded_at: BTreeMap<MacAddr, String>,
}

impl SelectorMerge {
    /// Adds one file's `[tunnel]`. `no_tunnel_in` is the main file when it has no
    /// `[tunnel]` section (then any selector is an error).
    pub(super) fn add(
        &mut self,
        t: &RawPolicyTunnel,
        rep: &mut Reporter<'_>,
        zone_ref: &ZoneRef<'_>,
        no_tunnel_in: Option<&Path>,
    ) {
        let exclude = t.exclude.as_ref();
        if let Some(main) = no_tunnel_in {
            let present = [
                ("tunnel.zones", &t.zones),
                ("tunnel.devices", &t.devices),
                ("tunnel.destinations", &t.destinations),
                ("tunnel.domain_sets", &t.domain_sets),
                ("tunnel.exclude.devices", &exclude.and_then(|e| e.devices.clone())),
                (
                    "tunnel.exclude.destinations",
                    &exclude.and_then(|e| e.destinations.clone()),
                ),
            ]
            .into_iter()
            .find_map(|(field, list)| {
                list.as_ref()
                    .filter(|l| !l.get_ref().is_empty())
                    .map(|l| (field, l.span()))
            });
            let present = present.or_else(|| {
                t.domains
                    .iter()
                    .flatten()
                    .next()
                    .map(|(_, l)| ("tunnel.domains", l.span()))
            });
            if let Some((field, span)) = present {
                rep.at(
                    span,
                    field,
                    format!("tunnel selectors need a [tunnel] section in {}", main.display()),
                );
            }
        }
        let items = |l: &Option<SpannedList>| l.as_ref().map(|l| l.get_ref().clone()).unwrap_or_default();
        for (i, z) in items(&t.zones).iter().enumerate() {
            if let Some(id) = zone_ref(rep, z, format!("tunnel.zones[{i}]")) {
                self.sel.zones.insert(id);
            }
        }
        for (i, d) in items(&t.domain_sets).iter().enumerate() {
            match DomainSetId::new(d.get_ref()) {
                Ok(id) => {
                    self.sel.domain_sets.insert(id);
                }
                Err(m) => rep.at(d.span(), format!("tunnel.domain_sets[{i}]"), m),
            }
        }
        for (set, list) in t.domains.iter().flatten() {
            let id = match DomainSetId::new(set) {
                Ok(id) => id,
                Err(m) => {
                    rep.at(list.span(), format!("tunnel.domains.{}", set.escape_debug()), m);
                    continue;
                }
            };
            let domains = self.sel.domains.entry(id.clone()).or_default();
            for (i, d) in list.get_ref().iter().enumerate() {
                let name = d.get_ref().trim_end_matches('.').to_ascii_lowercase();
                if is_dns_name(&name) {
                    domains.insert(name);
                } else {
                    rep.at(
                        d.span(),
                        format!("tunnel.domains.{set}[{i}]"),
                        format!("`{}` is not a domain", d.get_ref().escape_debug()),
                    );
                }
            }
            // Naming a set's domains selects it.
            self.sel.domain_sets.insert(id);
        }
        for (i, d) in items(&t.destinations).iter().enumerate() {
            network_into(rep, d, format!("tunnel.destinations[{i}]"), &mut self.sel.destinations);
        }
        let excl_dest = exclude.map(|e| items(&e.destinations)).unwrap_or_default();
        for (i, d) in excl_dest.iter().enumerate() {
            network_into(
                rep,
                d,
                format!("tunnel.exclude.destinations[{i}]"),
                &mut self.sel.exclude_destinations,
            );
        }
        for (i, d) in items(&t.devices).iter().enumerate() {
            self.device(rep, d, format!("tunnel.devices[{i}]"), false);
        }
        let excl_dev = exclude.map(|e| items(&e.devices)).unwrap_or_default();
        for (i, d) in excl_dev.iter().enumerate() {
            self.device(rep, d, format!("tunnel.exclude.devices[{i}]"), true);
        }
    }

    fn device(&mut self, rep: &mut Reporter<'_>, d: &Spanned<String>, field: String, exclude: bool) {
        let mac = match d.get_ref().parse::<MacAddr>() {
            Ok(m) => m,
            Err(m) => return rep.at(d.span(), field, m),
        };
        let (this, other) = if exclude {
            (&mut self.excluded_at, &self.selected_at)
        } else {
            (&mut self.selected_at, &self.excluded_at)
        };
        if let Some(there) = other.get(&mac) {
            let (a, b) = if exclude {
                ("excluded", "selected")
            } else {
                ("selected", "excluded")
            };
            rep.at(
                d.span(),
                field,
                format!("device {mac} is {a} here but {b} at {there}: remove one of the two"),
            );
            return;
        }
        this.entry(mac).or_insert_with(|| rep.position(d.span().start));
        if exclude {
            self.sel.exclude_devices.insert(mac);
        } else {
            self.sel.devices.insert(mac);
        }
    }

    /// The merged selectors.
    pub(super) fn finish(self) -> TunnelSelectors {
        self.sel
    }
}

fn network_into(rep: &mut Reporter<'_>, v: &Spanned<String>, field: String, out: &mut Vec<IpNet>) {
    match parse_network(v.get_ref()) {
        Ok(n) => {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Err(m) => rep.at(v.span(), field, m),
    }
}
