//! `[dns]` in the main file (the resolver's sockets, upstreams, cache, lists)
//! and the DNS fields of zones and devices in the policy files.
//!
//! ```toml
//! [dns]
//! upstreams = ["192.0.2.53", "tcp://198.51.100.53:53"]
//! tunnel_upstreams = ["10.64.0.1"]       # default: the upstreams, through the tunnel
//! # tls://NAME and https://NAME/PATH are found through these (plain DNS);
//! # tls://IP#NAME and https://IP#NAME/PATH pin the address instead.
//! bootstrap = ["192.0.2.53"]
//! block_answer = "null"                  # or "nxdomain"
//! rebind_allow = ["plex.direct"]
//! [[dns.blocklists]]
//! name = "ads"
//! file = "lists/ads.txt"
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::Reporter;
use super::load::{is_dns_name, resolve};
use super::types::Segment;

/// How a DNS upstream is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// UDP, and TCP when the answer is truncated.
    Udp,
    /// TCP only.
    Tcp,
    /// DNS over TLS (RFC 7858): the certificate must chain to
    /// `dns.tls_ca_file` and be valid for the upstream's name, or its IP
    /// address when it has none.
    Tls,
    /// DNS over HTTPS (RFC 8484): POST over HTTP/2, the certificate checked
    /// as for `Tls`.
    Https,
}

/// One upstream resolver.
///
/// `tls://` and `https://` upstreams may have a `name`: the name their
/// certificate must carry (SNI and check). Their address is then either
/// pinned (`tls://192.0.2.53#dns.example.test`) or found by asking
/// `dns.bootstrap` (`tls://dns.example.test`): such an upstream's `addr` is
/// the unspecified address with the port ([`Upstream::by_bootstrap`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Upstream {
    /// Its address and port (the unspecified address: `name` is asked of
    /// `dns.bootstrap`).
    pub addr: SocketAddr,
    /// How it is asked.
    pub protocol: UpstreamProtocol,
    /// The name its certificate must carry; none: its IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The HTTP path of an `https://` upstream (`/dns-query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Upstream {
    /// A plain upstream at `addr`.
    pub fn plain(addr: SocketAddr, protocol: UpstreamProtocol) -> Upstream {
        Upstream {
            addr,
            protocol,
            name: None,
            path: None,
        }
    }

    /// Its address is found by asking `dns.bootstrap` for its name.
    pub fn by_bootstrap(&self) -> bool {
        self.addr.ip().is_unspecified() && self.name.is_some()
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.protocol {
            UpstreamProtocol::Udp => return write!(f, "{}", self.addr),
            UpstreamProtocol::Tcp => return write!(f, "tcp://{}", self.addr),
            UpstreamProtocol::Tls => "tls",
            UpstreamProtocol::Https => "https",
        };
        match &self.name {
            Some(name) if self.by_bootstrap() => write!(f, "{scheme}://{name}:{}", self.addr.port())?,
            Some(name) => write!(f, "{scheme}://{}#{name}", self.addr)?,
            None => write!(f, "{scheme}://{}", self.addr)?,
        }
        if let Some(path) = &self.path {
            write!(f, "{path}")?;
        }
        Ok(())
    }
}

/// What a blocked name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlockAnswer {
    /// 0.0.0.0 for A, :: for AAAA, no data for other types (AdGuard's default):
    /// apps fail fast instead of retrying.
    #[default]
    Null,
    /// NXDOMAIN: the name does not exist.
    Nxdomain,
}

/// What happens to plain DNS a device sends to another server than the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BypassMode {
    /// Port 53 to anywhere is answered by Bulkhead (the device never knows).
    #[default]
    Redirect,
    /// Port 53 to anywhere but the router is refused (the device sees an error).
    Refuse,
    /// Devices may use any resolver (DNS policy is then advice, not rule).
    Off,
}

/// The system's CA bundle (Debian's ca-certificates, OpenWrt's ca-bundle).
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// At most this many blocklists (a client's lists are a 64-bit mask).
pub const MAX_BLOCKLISTS: usize = 64;

/// A named blocklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlocklistSource {
    /// Its name (what zones and devices refer to).
    pub name: String,
    /// The file it is read from (for a URL list: its last good copy, under
    /// `state_dir/blocklists/`).
    pub file: PathBuf,
    /// Where it is downloaded from, if it is a URL list.
    pub url: Option<String>,
    /// Hours between downloads of a URL list.
    pub refresh_hours: u32,
}

/// Default hours between downloads of a URL list.
pub const DEFAULT_REFRESH_HOURS: u32 = 24;

/// The resolver's settings (`[dns]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsConfig {
    /// The resolver runs (default true: the DHCP server names the router as
    /// every device's DNS server).
    pub enabled: bool,
    /// Where it listens: loopback and the segments' router addresses, port 53
    /// unless given (never a wildcard or the WAN).
    pub listen: Vec<SocketAddr>,
    /// Where questions the cache cannot answer go, in order of preference.
    pub upstreams: Vec<Upstream>,
    /// The upstreams for devices whose traffic goes through the tunnel, asked
    /// through the tunnel (empty: `upstreams`, through the tunnel).
    pub tunnel_upstreams: Vec<Upstream>,
    /// Plain DNS servers (IP addresses) asked for the addresses of `tls://`
    /// and `https://` upstreams given by name; for the tunnel's upstreams,
    /// asked through the tunnel.
    pub bootstrap: Vec<Upstream>,
    /// Answers kept (each at most a few hundred bytes).
    pub cache_entries: usize,
    /// What a blocked name gets.
    pub block_answer: BlockAnswer,
    /// Drop answers that put private, loopback or link-local addresses under
    /// public names (dnsmasq's stop-dns-rebind).
    pub rebind_protection: bool,
    /// Domains (and their subdomains) allowed to answer with private addresses.
    pub rebind_allow: Vec<String>,
    /// Questions per second one client may ask (twice that in a burst).
    pub client_qps: u32,
    /// Queries remembered in the query log.
    pub query_log_entries: usize,
    /// What happens to plain DNS sent elsewhere.
    pub bypass: BypassMode,
    /// The blocklists zones and devices may use.
    pub blocklists: Vec<BlocklistSource>,
    /// Addresses of known DNS-over-HTTPS servers: HTTPS to them is refused
    /// while `bypass` is on.
    pub doh_servers: Vec<ipnet::IpNet>,
    /// The CA certificates (PEM) that `tls://` and `https://` upstreams'
    /// certificates must chain to (default: the system's bundle).
    pub tls_ca_file: PathBuf,
}

impl DnsConfig {
    /// The defaults for a config without `[dns]`: on, on loopback and every
    /// segment's router addresses, no upstream (local names only).
    pub fn defaults(segments: &[Segment]) -> DnsConfig {
        DnsConfig {
            enabled: true,
            listen: default_listen(segments),
            upstreams: Vec::new(),
            tunnel_upstreams: Vec::new(),
            bootstrap: Vec::new(),
            cache_entries: 10_000,
            block_answer: BlockAnswer::Null,
            rebind_protection: true,
            rebind_allow: Vec::new(),
            client_qps: 200,
            query_log_entries: 10_000,
            bypass: BypassMode::Redirect,
            blocklists: Vec::new(),
            doh_servers: Vec::new(),
            tls_ca_file: PathBuf::from(DEFAULT_CA_FILE),
        }
    }

    /// The names of the configured blocklists.
    pub fn blocklist_names(&self) -> BTreeSet<String> {
        self.blocklists.iter().map(|b| b.name.clone()).collect()
    }
}

fn default_listen(segments: &[Segment]) -> Vec<SocketAddr> {
    let mut out = vec![
        SocketAddr::from((Ipv4Addr::LOCALHOST, 53)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, 53)),
    ];
    for s in segments {
        out.push(SocketAddr::from((s.ipv4.addr(), 53)));
        if let Some(v6) = s.ipv6 {
            out.push(SocketAddr::from((v6.addr(), 53)));
        }
    }
    out
}

/// A zone's DNS policy (`dns_blocklists`, `dns_log` in `[zones.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneDns {
    /// The blocklists its devices' questions are checked against.
    pub blocklists: BTreeSet<String>,
    /// Its devices' questions go into the query log.
    pub log: bool,
    /// Its own upstreams (e.g. a family-safe resolver for the kids' zone);
    /// empty: `dns.upstreams`. Devices routed through the tunnel still use
    /// the tunnel's.
    pub upstreams: Vec<Upstream>,
}

impl Default for ZoneDns {
    fn default() -> Self {
        ZoneDns {
            blocklists: BTreeSet::new(),
            log: true,
            upstreams: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    enabled: Option<bool>,
    listen: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    upstreams: Vec<Spanned<String>>,
    #[serde(default)]
    tunnel_upstreams: Vec<Spanned<String>>,
    #[serde(default)]
    bootstrap: Vec<Spanned<String>>,
    cache_entries: Option<Spanned<i64>>,
    block_answer: Option<Spanned<String>>,
    rebind_protection: Option<bool>,
    #[serde(default)]
    rebind_allow: Vec<Spanned<String>>,
    client_qps: Option<Spanned<i64>>,
    query_log_entries: Option<Spanned<i64>>,
    bypass: Option<Spanned<String>>,
    #[serde(default)]
    blocklists: Vec<Spanned<RawBlocklist>>,
    #[serde(default)]
    doh_servers: Vec<Spanned<String>>,
    tls_ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlocklist {
    name: Spanned<String>,
    file: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    refresh_hours: Option<Spanned<i64>>,
}

/// Parses an upstream: `IP`, `IP:PORT`, `[V6]:PORT`, with `udp://` or
/// `tcp://`; `tls://` and `https://` also by name:
///
/// - `tls://IP[:PORT]`: the certificate is checked against the address;
/// - `tls://IP[:PORT]#NAME`: the address is pinned, the certificate checked
///   against NAME (unbound's `forward-addr: IP#NAME`);
/// - `tls://NAME[:PORT]`: NAME is asked of `dns.bootstrap` and checked;
/// - `https://` the same, followed by the path (default `/dns-query`):
///   `https://dns.example/dns-query`, `https://192.0.2.53#dns.example/dns-query`.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let shown = s.escape_debug();
    let (protocol, rest) = if let Some(r) = s.strip_prefix("tcp://") {
        (UpstreamProtocol::Tcp, r)
    } else if let Some(r) = s.strip_prefix("udp://") {
        (UpstreamProtocol::Udp, r)
    } else if let Some(r) = s.strip_prefix("tls://") {
        (UpstreamProtocol::Tls, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (UpstreamProtocol::Https, r)
    } else {
        (UpstreamProtocol::Udp, s)
    };
    let default_port = match protocol {
        UpstreamProtocol::Udp | UpstreamProtocol::Tcp => 53,
        UpstreamProtocol::Tls => 853,
        UpstreamProtocol::Https => 443,
    };
    let (authority, path) = match protocol {
        UpstreamProtocol::Https => match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        },
        _ => (rest, None),
    };
    let path = match path {
        None if protocol == UpstreamProtocol::Https => Some("/dns-query".to_string()),
        None => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#') => Some(p.to_string()),
        Some(_) => {
            return Err(format!(
                "`{shown}`: the path of a DNS-over-HTTPS upstream is plain (no query, no #, no spaces)"
            ))
        }
    };
    let literal = |text: &str| {
        text.parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, default_port)))
    };
    let named = matches!(protocol, UpstreamProtocol::Tls | UpstreamProtocol::Https);
    let (addr, name) = if let Some((pinned, name)) = authority.split_once('#') {
        if !named {
            return Err(format!(
                "`{shown}`: a server name (#NAME) is only for tls:// and https:// upstreams"
            ));
        }
        let addr = literal(pinned)
            .map_err(|_| format!("`{shown}`: before # comes the server's address (IP, IP:PORT or [IPv6]:PORT)"))?;
        (
            addr,
            Some(
                server_name(name)
                    .ok_or_else(|| format!("`{shown}`: `{}` is not a server name", name.escape_debug()))?,
            ),
        )
    } else if let Ok(addr) = literal(authority) {
        (addr, None)
    } else if named {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("`{shown}`: `{}` is not a port", p.escape_debug()))?,
            ),
            None => (authority, default_port),
        };
        let name = server_name(host).ok_or_else(|| {
            format!(
                "`{shown}` is not an upstream (NAME, NAME:PORT, IP, IP:PORT or IP#NAME after {}://)",
                if protocol == UpstreamProtocol::Tls {
                    "tls"
                } else {
                    "https"
                }
            )
        })?;
        (SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), Some(name))
    } else {
        return Err(format!(
            "`{shown}` is not an upstream (IP, IP:PORT or [IPv6]:PORT, optionally with udp://, tcp://; \
             tls:// and https:// also take a name)"
        ));
    };
    let by_bootstrap = name.is_some() && !authority.contains('#');
    if (!by_bootstrap && addr.ip().is_unspecified()) || addr.port() == 0 {
        return Err(format!("`{shown}` is not an address a question can be sent to"));
    }
    Ok(Upstream {
        addr,
        protocol,
        name,
        path,
    })
}

/// A server name as certificates carry it: lower case, no final dot, at least
/// two labels, not all digits (an IP address is written as one).
fn server_name(text: &str) -> Option<String> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    (is_dns_name(&name) && name.contains('.') && !numeric).then_some(name)
}

/// Parses a `dns.bootstrap` server: plain DNS at an IP address
/// (`IP`, `IP:PORT`, `udp://…`, `tcp://…`).
pub fn parse_bootstrap(s: &str) -> Result<Upstream, String> {
    match parse_upstream(s) {
        Ok(up) if matches!(up.protocol, UpstreamProtocol::Udp | UpstreamProtocol::Tcp) => Ok(up),
        Ok(_) => Err(format!(
            "`{}`: bootstrap servers are asked in plain DNS (IP, IP:PORT, udp:// or tcp://): \
             they find the address of tls:// and https:// upstreams given by name",
            s.escape_debug()
        )),
        Err(e) => Err(e),
    }
}

fn count(v: &Spanned<i64>, field: &str, range: std::ops::RangeInclusive<i64>, rep: &mut Reporter<'_>) -> Option<i64> {
    let n = *v.get_ref();
    if range.contains(&n) {
        Some(n)
    } else {
        rep.at(
            v.span(),
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        );
        None
    }
}

/// Validates `[dns]`; every error is reported; `None` if any.
pub(super) fn validate_dns(
    raw: Option<&RawDns>,
    base: &Path,
    state_dir: &Path,
    segments: &[Segment],
    rep: &mut Reporter<'_>,
) -> Option<DnsConfig> {
    let mut dns = DnsConfig::defaults(segments);
    let Some(raw) = raw else { return Some(dns) };
    let mut ok = true;
    if let Some(e) = raw.enabled {
        dns.enabled = e;
    }
    if let Some(listen) = &raw.listen {
        dns.listen.clear();
        for (i, l) in listen.iter().enumerate() {
            let text = l.get_ref();
            let parsed = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                // Answering the WAN would make the home an open resolver
                // (amplification); a wildcard includes the WAN.
                Ok(a) if listen_allowed(a.ip(), segments) => dns.listen.push(a),
                Ok(a) => {
                    rep.at(
                        l.span(),
                        format!("dns.listen[{i}]"),
                        format!(
                            "the resolver listens only on loopback or on the router's address of a LAN segment, not on {}",
                            a.ip()
                        ),
                    );
                    ok = false;
                }
                Err(_) => {
                    rep.at(
                        l.span(),
                        format!("dns.listen[{i}]"),
                        format!("`{}` is not an address or address:port", text.escape_debug()),
                    );
                    ok = false;
                }
            }
        }
    }
    for (i, b) in raw.bootstrap.iter().enumerate() {
        match parse_bootstrap(b.get_ref()) {
            Ok(up) if up.addr.ip().is_loopback() && listen_conflict(&up, &dns.listen) => {
                rep.at(b.span(), format!("dns.bootstrap[{i}]"), "this is the resolver itself");
                ok = false;
            }
            Ok(up) => dns.bootstrap.push(up),
            Err(m) => {
                rep.at(b.span(), format!("dns.bootstrap[{i}]"), m);
                ok = false;
            }
        }
    }
    for (field, list, out) in [
        ("upstreams", &raw.upstreams, &mut dns.upstreams),
        ("tunnel_upstreams", &raw.tunnel_upstreams, &mut dns.tunnel_upstreams),
    ] {
        for (i, u) in list.iter().enumerate() {
            match parse_upstream(u.get_ref()) {
                Ok(up) if up.addr.ip().is_loopback() && listen_conflict(&up, &dns.listen) => {
                    rep.at(u.span(), format!("dns.{field}[{i}]"), "this is the resolver itself");
                    ok = false;
                }
                Ok(up) if up.by_bootstrap() && raw.bootstrap.is_empty() => {
                    rep.at(u.span(), format!("dns.{field}[{i}]"), needs_bootstrap(&up));
                    ok = false;
                }
                Ok(up) => out.push(up),
                Err(m) => {
                    rep.at(u.span(), format!("dns.{field}[{i}]"), m);
                    ok = false;
                }
            }
        }
    }
    if let Some(v) = &raw.cache_entries {
        match count(v, "dns.cache_entries", 0..=1_000_000, rep) {
            Some(n) => dns.cache_entries = n as usize,
            None => ok = false,
        }
    }
    if let Some(v) = &raw.client_qps {
        match count(v, "dns.client_qps", 1..=100_000, rep) {
            Some(n) => dns.client_qps = n as u32,
            None => ok = false,
        }
    }
    if let Some(v) = &raw.query_log_entries {
        match count(v, "dns.query_log_entries", 0..=1_000_000, rep) {
            Some(n) => dns.query_log_entries = n as usize,
            None => ok = false,
        }
    }
    if let Some(v) = &raw.block_answer {
        match v.get_ref().as_str() {
            "null" => dns.block_answer = BlockAnswer::Null,
            "nxdomain" => dns.block_answer = BlockAnswer::Nxdomain,
            other => {
                rep.at(
                    v.span(),
                    "dns.block_answer",
                    format!("`{}`: expected \"null\" or \"nxdomain\"", other.escape_debug()),
                );
                ok = false;
            }
        }
    }
    if let Some(v) = &raw.bypass {
        match v.get_ref().as_str() {
            "redirect" => dns.bypass = BypassMode::Redirect,
            "refuse" => dns.bypass = BypassMode::Refuse,
            "off" => dns.bypass = BypassMode::Off,
            other => {
                rep.at(
                    v.span(),
                    "dns.bypass",
                    format!(
                        "`{}`: expected \"redirect\", \"refuse\" or \"off\"",
                        other.escape_debug()
                    ),
                );
                ok = false;
            }
        }
    }
    for (i, d) in raw.doh_servers.iter().enumerate() {
        match super::tunnel::parse_network(d.get_ref()) {
            Ok(n) => dns.doh_servers.push(n),
            Err(m) => {
                rep.at(d.span(), format!("dns.doh_servers[{i}]"), m);
                ok = false;
            }
        }
    }
    if let Some(f) = &raw.tls_ca_file {
        dns.tls_ca_file = resolve(base, f.get_ref());
    }
    if let Some(r) = raw.rebind_protection {
        dns.rebind_protection = r;
    }
    for (i, d) in raw.rebind_allow.iter().enumerate() {
        let name = d.get_ref().trim_end_matches('.').to_ascii_lowercase();
        if is_dns_name(&name) {
            dns.rebind_allow.push(name);
        } else {
            rep.at(
                d.span(),
                format!("dns.rebind_allow[{i}]"),
                format!("`{}` is not a domain", d.get_ref().escape_debug()),
            );
            ok = false;
        }
    }
    let mut names = BTreeSet::new();
    for (i, entry) in raw.blocklists.iter().enumerate() {
        let b = entry.get_ref();
        let name = b.name.get_ref();
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
        if !valid {
            rep.at(
                b.name.span(),
                format!("dns.blocklists[{i}].name"),
                "a list name is 1-32 of a-z 0-9 - _",
            );
            ok = false;
        } else if !names.insert(name.clone()) {
            rep.at(
                b.name.span(),
                format!("dns.blocklists[{i}].name"),
                format!("list `{name}` is defined twice"),
            );
            ok = false;
        } else if names.len() > MAX_BLOCKLISTS {
            rep.at(
                b.name.span(),
                format!("dns.blocklists[{i}].name"),
                format!("at most {} lists", MAX_BLOCKLISTS),
            );
            ok = false;
        }
        let refresh_hours = match &b.refresh_hours {
            None => DEFAULT_REFRESH_HOURS,
            Some(h) => match count(h, &format!("dns.blocklists[{i}].refresh_hours"), 1..=24 * 30, rep) {
                Some(h) => h as u32,
                None => {
                    ok = false;
                    DEFAULT_REFRESH_HOURS
                }
            },
        };
        let (file, url) = match (&b.file, &b.url) {
            (Some(f), None) => (resolve(base, f.get_ref()), None),
            (None, Some(u)) if u.get_ref().starts_with("https://") || u.get_ref().starts_with("http://") => (
                state_dir.join("blocklists").join(format!("{name}.txt")),
                Some(u.get_ref().clone()),
            ),
            (None, Some(u)) => {
                rep.at(
                    u.span(),
                    format!("dns.blocklists[{i}].url"),
                    format!("`{}` is not an http:// or https:// URL", u.get_ref().escape_debug()),
                );
                ok = false;
                continue;
            }
            _ => {
                rep.at(
                    entry.span(),
                    format!("dns.blocklists[{i}]"),
                    "a list has either `file` or `url`",
                );
                ok = false;
                continue;
            }
        };
        dns.blocklists.push(BlocklistSource {
            name: name.clone(),
            file,
            url,
            refresh_hours,
        });
    }
    ok.then_some(dns)
}

/// Why an upstream given by name needs `dns.bootstrap` (none is configured).
pub(crate) fn needs_bootstrap(up: &Upstream) -> String {
    let name = up.name.as_deref().unwrap_or_default();
    format!(
        "`{up}` is given by name and no `dns.bootstrap` server is configured to find its address: \
         add `bootstrap = [\"IP\"]` to [dns] or pin the address (`IP#{name}`)"
    )
}

fn listen_allowed(ip: IpAddr, segments: &[Segment]) -> bool {
    ip.is_loopback()
        || segments.iter().any(|s| match ip {
            IpAddr::V4(v4) => s.ipv4.addr() == v4,
            IpAddr::V6(v6) => s.ipv6.is_some_and(|n| n.addr() == v6),
        })
}

fn listen_conflict(up: &Upstream, listen: &[SocketAddr]) -> bool {
    listen
        .iter()
        .any(|l| l.port() == up.addr.port() && l.ip() == up.addr.ip())
}
