//! Reading `bulkhead.toml` and `policies/*.toml` into a validated [`Config`].
//!
//! Files are parsed into "raw" structs whose fields keep their byte spans, then
//! validated in one pass that collects every error (with file:line:column and the
//! field) instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use toml::Spanned;

use super::class_rules::{validate_class_rules, SeenRuleIds};
use super::detect::{validate_detect, DetectConfig, RawDetect};
use super::dns::{validate_dns, DnsConfig, RawDns, ZoneDns};
use super::error::{ConfigError, ConfigErrors, Reporter};
use super::notify::{validate_notify, NotifyConfig, RawNotify};
use super::tunnel::{validate_tunnel, RawPolicyTunnel, RawTunnel, SelectorMerge};
use super::types::*;
use crate::tunnel::keys::KeyError;

/// Default location of the main file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/bulkhead/bulkhead.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMain {
    state_dir: Option<Spanned<String>>,
    policies_dir: Option<Spanned<String>>,
    control_socket: Option<Spanned<String>>,
    wan: RawWan,
    #[serde(default)]
    segments: Vec<Spanned<RawSegment>>,
    #[serde(default)]
    web: Option<RawWeb>,
    #[serde(default)]
    dhcp: Option<RawDhcp>,
    tunnel: Option<RawTunnel>,
    dns: Option<RawDns>,
    detect: Option<RawDetect>,
    notify: Option<RawNotify>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDhcp {
    domain: Option<Spanned<String>>,
    lease_secs: Option<Spanned<i64>>,
    observe_lease_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWan {
    interface: Spanned<String>,
    #[serde(default = "default_true")]
    police_input: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    /// Absent: loopback:8080. Empty: no web UI.
    listen: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    hostnames: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    name: Spanned<String>,
    interface: Spanned<String>,
    kind: Spanned<String>,
    ports: Option<Spanned<Vec<String>>>,
    parent: Option<Spanned<String>>,
    vlan_id: Option<Spanned<i64>>,
    ipv4: Spanned<String>,
    ipv6: Option<Spanned<String>>,
    dhcp_pool: Option<Spanned<String>>,
    dhcp: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    unknown_zone: Option<Spanned<String>>,
    approved_zone: Option<Spanned<String>>,
    #[serde(default)]
    zones: BTreeMap<String, Spanned<RawZone>>,
    #[serde(default)]
    segment_zones: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    devices: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    classify: Vec<Spanned<RawClassRule>>,
    tunnel: Option<RawPolicyTunnel>,
    /// Known DNS-over-HTTPS servers (HTTPS to them is refused while
    /// `dns.bypass` is on); the lists of all files add up.
    #[serde(default)]
    doh_servers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    #[serde(default)]
    description: String,
    #[serde(default)]
    internet: bool,
    #[serde(default)]
    reach_zones: Vec<Spanned<String>>,
    #[serde(default)]
    router_services: Vec<Spanned<String>>,
    #[serde(default = "default_true")]
    intra_zone: bool,
    #[serde(default)]
    dns_blocklists: Vec<Spanned<String>>,
    #[serde(default = "default_true")]
    dns_log: bool,
    #[serde(default)]
    dns_upstreams: Vec<Spanned<String>>,
    #[serde(default = "default_true")]
    detect: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    mac: Spanned<String>,
    zone: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    ip: Option<Spanned<String>>,
    dns_blocklists: Option<Vec<Spanned<String>>>,
    dns_log: Option<bool>,
}

/// A list of strings as written, with the list's span and each entry's.
pub(super) type SpannedList = Spanned<Vec<Spanned<String>>>;

/// One `[[classify]]` rule as written. Every field is optional here so that a
/// missing one is reported with the rule's position and field path, along with the
/// file's other errors (see `class_rules`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClassRule {
    pub(super) id: Option<Spanned<String>>,
    pub(super) class: Option<Spanned<String>>,
    pub(super) zone: Option<Spanned<String>>,
    pub(super) confidence: Option<Spanned<String>>,
    pub(super) source: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub(super) conditions: Option<Spanned<RawConditions>>,
}

/// A rule's `[classify.match]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConditions {
    pub(super) vendor: Option<SpannedList>,
    pub(super) dhcp_params: Option<SpannedList>,
    pub(super) dhcp_params_prefix: Option<SpannedList>,
    pub(super) vendor_class: Option<SpannedList>,
    pub(super) hostname: Option<SpannedList>,
    pub(super) mdns_service: Option<SpannedList>,
    pub(super) txt: Option<Spanned<BTreeMap<String, SpannedList>>>,
    pub(super) randomized_mac: Option<Spanned<bool>>,
}

/// Loads and validates the main file and the policy directory it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Err(ConfigErrors(vec![unreadable(path, &e)])),
    };
    load_with(path, &text, read_policy_dir, &crate::tunnel::keys::read_key_file)
}

/// How key files named in the configuration are read (`preshared_key_file`).
pub(super) type ReadKey<'a> = &'a dyn Fn(&Path) -> Result<WgKey, KeyError>;

/// [`load`] without the filesystem: `text` is the main file (named `path` in
/// errors; relative paths in it resolve against its directory) and `policies` are
/// the policy files as (path, text), in the order to merge them, whatever
/// `policies_dir` says. Key files are not read: a `preshared_key_file` is an
/// error (give `preshared_key` instead). Never panics: every problem is a
/// [`ConfigErrors`].
pub fn load_from_texts(path: &Path, text: &str, policies: &[(PathBuf, String)]) -> Result<Config, ConfigErrors> {
    let no_files = |p: &Path| {
        Err(KeyError::Read {
            path: p.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::Unsupported, "key files are not read here"),
        })
    };
    load_with(path, text, |_, _| Some(policies.to_vec()), &no_files)
}

/// `read_policies(dir, errors)`: the policy files' paths and texts, sorted, or
/// `None` (with an error pushed) when the directory cannot be read.
fn load_with(
    path: &Path,
    text: &str,
    read_policies: impl FnOnce(&Path, &mut Vec<ConfigError>) -> Option<Vec<(PathBuf, String)>>,
    read_key: ReadKey<'_>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut rep = Reporter::new(path, text, &mut errors);
    let raw: RawMain = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            rep.toml(&e);
            return Err(ConfigErrors(errors));
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let main = validate_main(raw, text, base, read_key, &mut rep);
    let policy = match &main {
        Some(m) => {
            let no_tunnel_in = m.tunnel.is_none().then_some(path);
            let lists = m.dns.blocklist_names();
            read_policies(&m.policies_dir, &mut errors)
                .and_then(|files| load_policy(&m.policies_dir, files, &m.segments, &lists, no_tunnel_in, &mut errors))
        }
        None => None,
    };
    match (main, policy) {
        (Some(m), Some(policy)) if errors.is_empty() => Ok(Config {
            source: path.to_path_buf(),
            wan_interface: m.wan_interface,
            police_wan_input: m.police_wan_input,
            segments: m.segments,
            state_dir: m.state_dir,
            policies_dir: m.policies_dir,
            control_socket: m.control_socket,
            web: m.web,
            dhcp: m.dhcp,
            tunnel: m.tunnel,
            dns: m.dns,
            detect: m.detect,
            notify: m.notify,
            policy,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

fn unreadable(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    }
}

struct MainPart {
    wan_interface: String,
    police_wan_input: bool,
    segments: Vec<Segment>,
    state_dir: PathBuf,
    policies_dir: PathBuf,
    control_socket: PathBuf,
    web: WebConfig,
    dhcp: DhcpSettings,
    tunnel: Option<TunnelConfig>,
    dns: DnsConfig,
    detect: DetectConfig,
    notify: NotifyConfig,
}

pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Interface names reach the kernel and nft (as JSON strings, never nft text);
/// still, refuse anything the kernel would refuse so the error is ours and early.
pub(super) fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid interface name (1-15 of a-z A-Z 0-9 - _ .)",
            name.escape_debug()
        ))
    }
}

fn validate_main(
    raw: RawMain,
    text: &str,
    base: &Path,
    read_key: ReadKey<'_>,
    rep: &mut Reporter<'_>,
) -> Option<MainPart> {
    let mut ok = true;
    let wan = raw.wan.interface;
    if let Err(m) = check_ifname(wan.get_ref()) {
        rep.at(wan.span(), "wan.interface", m);
        ok = false;
    }
    let mut segments = Vec::new();
    let mut names = BTreeSet::new();
    let mut ifaces = BTreeSet::new();
    ifaces.insert(wan.get_ref().clone());
    for (i, s) in raw.segments.into_iter().enumerate() {
        let f = |name: &str| format!("segments[{i}].{name}");
        let s = s.into_inner();
        match validate_segment(&s, &f, rep) {
            Some(seg) => {
                if !names.insert(seg.id.clone()) {
                    rep.at(
                        s.name.span(),
                        f("name"),
                        format!("segment `{}` is defined twice", seg.id),
                    );
                    ok = false;
                } else if !ifaces.insert(seg.interface.clone()) {
                    rep.at(
                        s.interface.span(),
                        f("interface"),
                        format!(
                            "interface `{}` is already used by the WAN or another segment",
                            seg.interface
                        ),
                    );
                    ok = false;
                } else {
                    segments.push(seg);
                }
            }
            None => ok = false,
        }
    }
    // Overlapping subnets would make "which segment is this address on" ambiguous.
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            if a.ipv4.trunc().contains(&b.ipv4.network()) || b.ipv4.trunc().contains(&a.ipv4.network()) {
                rep.at(
                    0..0,
                    "segments",
                    format!("segments `{}` and `{}` have overlapping IPv4 subnets", a.id, b.id),
                );
                ok = false;
            }
        }
    }
    let mut web = WebConfig {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))],
        hostnames: Vec::new(),
    };
    if let Some(w) = raw.web {
        let mut listen = Vec::new();
        for (i, l) in w.listen.iter().flatten().enumerate() {
            match l.get_ref().parse::<SocketAddr>() {
                // The UI is for the homeowner: loopback, or the router's own
                // address on a LAN segment (the firewall then admits only the
                // zones whose router_services include web-ui). Never a wildcard
                // (it would include the WAN) or anyone else's address.
                Ok(a) if web_listen_allowed(a.ip(), &segments) => listen.push(a),
                Ok(a) => {
                    rep.at(
                        l.span(),
                        format!("web.listen[{i}]"),
                        format!(
                            "the web UI listens only on loopback or on the router's address of a LAN segment, not on {}",
                            a.ip()
                        ),
                    );
                    ok = false;
                }
                Err(_) => {
                    rep.at(
                        l.span(),
                        format!("web.listen[{i}]"),
                        format!("`{}` is not an address:port", l.get_ref().escape_debug()),
                    );
                    ok = false;
                }
            }
        }
        if w.listen.is_some() {
            web.listen = listen;
        }
        for (i, h) in w.hostnames.iter().enumerate() {
            let name = h.get_ref().to_ascii_lowercase();
            if is_dns_name(&name) {
                web.hostnames.push(name);
            } else {
                rep.at(
                    h.span(),
                    format!("web.hostnames[{i}]"),
                    format!(
                        "`{}` is not a host name (dot-separated letters, digits and hyphens)",
                        h.get_ref().escape_debug()
                    ),
                );
                ok = false;
            }
        }
    }
    let mut dhcp = DhcpSettings::default();
    if let Some(d) = raw.dhcp {
        if let Some(domain) = d.domain {
            if is_dns_name(domain.get_ref()) {
                dhcp.domain = Some(domain.get_ref().clone());
            } else {
                rep.at(
                    domain.span(),
                    "dhcp.domain",
                    "a domain is dot-separated labels of letters, digits and hyphens (at most 253 characters)",
                );
                ok = false;
            }
        }
        if let Some(secs) = d.lease_secs {
            match u32::try_from(*secs.get_ref()) {
                Ok(v) if (120..=7 * 86_400).contains(&v) => dhcp.lease_secs = v,
                _ => {
                    rep.at(
                        secs.span(),
                        "dhcp.lease_secs",
                        "a lease lasts between 120 seconds and 7 days (604800)",
                    );
                    ok = false;
                }
            }
        }
        if let Some(f) = d.observe_lease_file {
            dhcp.observe_lease_file = resolve(base, f.get_ref());
        }
    }
    let tunnel = match &raw.tunnel {
        None => None,
        Some(t) => {
            let t = validate_tunnel(t, text, base, read_key, &ifaces, rep);
            ok &= t.is_some();
            t
        }
    };
    let path_or = |v: Option<Spanned<String>>, default: &str| {
        v.map_or_else(|| PathBuf::from(default), |s| resolve(base, s.get_ref()))
    };
    let state_dir = path_or(raw.state_dir, "/var/lib/bulkhead");
    let dns = validate_dns(raw.dns.as_ref(), base, &state_dir, &segments, rep);
    ok &= dns.is_some();
    let detect = validate_detect(raw.detect.as_ref(), rep);
    ok &= detect.is_some();
    let notify = validate_notify(raw.notify.as_ref(), base, rep);
    ok &= notify.is_some();
    let part = MainPart {
        wan_interface: wan.into_inner(),
        police_wan_input: raw.wan.police_input,
        segments,
        state_dir,
        policies_dir: path_or(raw.policies_dir, "/etc/bulkhead/policies"),
        control_socket: path_or(raw.control_socket, "/run/bulkhead/control.sock"),
        web,
        dhcp,
        tunnel,
        dns: dns.unwrap_or_else(|| DnsConfig::defaults(&[])),
        detect: detect.unwrap_or_default(),
        notify: notify.unwrap_or_default(),
    };
    ok.then_some(part)
}

fn validate_segment(s: &RawSegment, f: &dyn Fn(&str) -> String, rep: &mut Reporter<'_>) -> Option<Segment> {
    let mut ok = true;
    let id = SegmentId::new(s.name.get_ref())
        .map_err(|m| rep.at(s.name.span(), f("name"), m))
        .ok();
    if let Err(m) = check_ifname(s.interface.get_ref()) {
        rep.at(s.interface.span(), f("interface"), m);
        ok = false;
    }
    let kind = match s.kind.get_ref().as_str() {
        "existing" => Some(SegmentKind::Existing),
        "bridge" => {
            let ports = s.ports.as_ref().map(|p| p.get_ref().clone()).unwrap_or_default();
            for p in &ports {
                if let Err(m) = check_ifname(p) {
                    let span = s.ports.as_ref().map_or(s.kind.span(), |p| p.span());
                    rep.at(span, f("ports"), m);
                    ok = false;
                }
            }
            Some(SegmentKind::Bridge { ports })
        }
        "vlan" => match (&s.parent, &s.vlan_id) {
            (Some(parent), Some(id)) => {
                if let Err(m) = check_ifname(parent.get_ref()) {
                    rep.at(parent.span(), f("parent"), m);
                    ok = false;
                }
                match u16::try_from(*id.get_ref()) {
                    Ok(v) if (1..=4094).contains(&v) => Some(SegmentKind::Vlan {
                        parent: parent.get_ref().clone(),
                        id: v,
                    }),
                    _ => {
                        rep.at(id.span(), f("vlan_id"), "VLAN id must be between 1 and 4094");
                        None
                    }
                }
            }
            _ => {
                rep.at(s.kind.span(), f("kind"), "a vlan segment needs `parent` and `vlan_id`");
                None
            }
        },
        other => {
            rep.at(
                s.kind.span(),
                f("kind"),
                format!(
                    "unknown kind `{}` (expected existing, bridge or vlan)",
                    other.escape_debug()
                ),
            );
            None
        }
    };
    if let Some(k) = &kind {
        // A field for another kind is almost certainly a mistake; say so.
        if !matches!(k, SegmentKind::Bridge { .. }) {
            if let Some(p) = &s.ports {
                rep.at(p.span(), f("ports"), "`ports` only applies to kind = \"bridge\"");
                ok = false;
            }
        }
        if !matches!(k, SegmentKind::Vlan { .. }) {
            for (name, span) in [
                ("parent", s.parent.as_ref().map(|p| p.span())),
                ("vlan_id", s.vlan_id.as_ref().map(|p| p.span())),
            ] {
                if let Some(span) = span {
                    rep.at(span, f(name), format!("`{name}` only applies to kind = \"vlan\""));
                    ok = false;
                }
            }
        }
    }
    let ipv4 = match s.ipv4.get_ref().parse::<Ipv4Net>() {
        Ok(n) if n.addr() == n.network() || (n.prefix_len() < 31 && n.addr() == n.broadcast()) => {
            rep.at(
                s.ipv4.span(),
                f("ipv4"),
                "the router's address must be a host address of the subnet, e.g. 192.168.1.1/24",
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            rep.at(
                s.ipv4.span(),
                f("ipv4"),
                format!(
                    "`{}` is not an IPv4 address/prefix like 192.168.1.1/24",
                    s.ipv4.get_ref().escape_debug()
                ),
            );
            None
        }
    };
    let ipv6 = match &s.ipv6 {
        None => None,
        Some(v) => match v.get_ref().parse::<Ipv6Net>() {
            Ok(n) => Some(Some(n)),
            Err(_) => {
                rep.at(
                    v.span(),
                    f("ipv6"),
                    format!(
                        "`{}` is not an IPv6 address/prefix like fd00:1::1/64",
                        v.get_ref().escape_debug()
                    ),
                );
                None
            }
        },
    };
    let dhcp_pool = match (&s.dhcp_pool, ipv4) {
        (None, _) => Some(None),
        (Some(p), Some(net)) => match parse_pool(p.get_ref(), net) {
            Ok(r) => Some(Some(r)),
            Err(m) => {
                rep.at(p.span(), f("dhcp_pool"), m);
                None
            }
        },
        (Some(_), None) => None,
    };
    // Serve where a pool is given, unless told otherwise; observing and off need
    // no pool (another server hands out addresses, or nobody does).
    let pool_given = matches!(dhcp_pool, Some(Some(_)));
    let dhcp = match s.dhcp.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
        None if pool_given => Some(DhcpMode::Serve),
        None => Some(DhcpMode::Off),
        Some(("serve", span)) => {
            if !pool_given && dhcp_pool.is_some() {
                rep.at(span, f("dhcp"), "dhcp = \"serve\" needs a `dhcp_pool`");
                ok = false;
            }
            Some(DhcpMode::Serve)
        }
        Some(("observe", _)) => Some(DhcpMode::Observe),
        Some(("off", _)) => Some(DhcpMode::Off),
        Some((other, span)) => {
            rep.at(
                span,
                f("dhcp"),
                format!(
                    "unknown DHCP mode `{}` (expected serve, observe or off)",
                    other.escape_debug()
                ),
            );
            None
        }
    };
    match (id, kind, ipv4, s.ipv6.is_none() || ipv6.is_some(), dhcp_pool, dhcp) {
        (Some(id), Some(kind), Some(ipv4), true, Some(dhcp_pool), Some(dhcp)) if ok => Some(Segment {
            id,
            interface: s.interface.get_ref().clone(),
            kind,
            ipv4,
            ipv6: ipv6.flatten(),
            dhcp_pool,
            dhcp,
        }),
        _ => None,
    }
}

/// A DNS domain name: labels of ASCII letters, digits and hyphens.
/// Loopback, or the router's own address on a segment.
fn web_listen_allowed(ip: std::net::IpAddr, segments: &[Segment]) -> bool {
    ip.is_loopback()
        || segments.iter().any(|s| match ip {
            std::net::IpAddr::V4(v4) => s.ipv4.addr() == v4,
            std::net::IpAddr::V6(v6) => s.ipv6.is_some_and(|n| n.addr() == v6),
        })
}

pub(super) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn parse_pool(s: &str, net: Ipv4Net) -> Result<Ipv4Range, String> {
    let bad = || format!("`{}` is not a range like 192.168.1.100-192.168.1.199", s.escape_debug());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
    let end: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
    if start > end {
        return Err("the pool's start is after its end".into());
    }
    let hosts = net.trunc();
    if !hosts.contains(&start) || !hosts.contains(&end) || start == hosts.network() || end == hosts.broadcast() {
        return Err(format!(
            "the pool must lie inside {hosts}, without its network and broadcast addresses"
        ));
    }
    if (start..=end).contains(&net.addr()) {
        return Err(format!("the pool contains the router's own address {}", net.addr()));
    }
    Ok(Ipv4Range { start, end })
}

/// One raw policy file with its text (for spans).
struct PolicySource {
    path: PathBuf,
    text: String,
    raw: RawPolicyFile,
}

/// The `*.toml` files of the policy directory, sorted, with their text; an
/// unreadable file is an error (and left out), an unreadable directory `None`.
fn read_policy_dir(dir: &Path, errors: &mut Vec<ConfigError>) -> Option<Vec<(PathBuf, String)>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            errors.push(unreadable(dir, &e));
            return None;
        }
    };
    files.sort();
    let mut out = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => out.push((path, text)),
            Err(e) => errors.push(unreadable(&path, &e)),
        }
    }
    Some(out)
}

/// `no_tunnel_in` is the main file when it has no `[tunnel]` section.
fn load_policy(
    dir: &Path,
    files: Vec<(PathBuf, String)>,
    segments: &[Segment],
    blocklists: &BTreeSet<String>,
    no_tunnel_in: Option<&Path>,
    errors: &mut Vec<ConfigError>,
) -> Option<Policy> {
    let mut sources = Vec::new();
    for (path, text) in files {
        match toml::from_str::<RawPolicyFile>(&text) {
            Ok(raw) => sources.push(PolicySource { path, text, raw }),
            Err(e) => Reporter::new(&path, &text, errors).toml(&e),
        }
    }
    let before = errors.len();
    let policy = validate_policy(dir, &sources, segments, blocklists, no_tunnel_in, errors);
    (errors.len() == before).then_some(policy).flatten()
}

/// Merges all policy files. Zones and devices may be split across files; a zone,
/// device or setting defined in two files is an error naming the second place.
fn validate_policy(
    dir: &Path,
    sources: &[PolicySource],
    segments: &[Segment],
    blocklists: &BTreeSet<String>,
    no_tunnel_in: Option<&Path>,
    errors: &mut Vec<ConfigError>,
) -> Option<Policy> {
    // Pass 1: collect zone names, so references can be checked in any order.
    let mut zone_names = BTreeSet::new();
    for src in sources {
        let mut rep = Reporter::new(&src.path, &src.text, errors);
        for (name, z) in &src.raw.zones {
            match ZoneId::new(name) {
                Ok(id) => {
                    if !zone_names.insert(id) {
                        rep.at(
                            z.span(),
                            format!("zones.{name}"),
                            format!("zone `{name}` is defined in more than one policy file"),
                        );
                    }
                }
                Err(m) => rep.at(z.span(), format!("zones.{}", name.escape_debug()), m),
            }
        }
    }
    let zone_ref = |rep: &mut Reporter<'_>, v: &Spanned<String>, field: String| -> Option<ZoneId> {
        match ZoneId::new(v.get_ref()) {
            Ok(id) if zone_names.contains(&id) => Some(id),
            _ => {
                rep.at(
                    v.span(),
                    field,
                    format!("unknown zone `{}`", v.get_ref().escape_debug()),
                );
                None
            }
        }
    };
    let list_refs = |rep: &mut Reporter<'_>, lists: &[Spanned<String>], field: &dyn Fn(usize) -> String| {
        let mut out = BTreeSet::new();
        for (i, l) in lists.iter().enumerate() {
            if blocklists.contains(l.get_ref()) {
                out.insert(l.get_ref().clone());
            } else {
                rep.at(
                    l.span(),
                    field(i),
                    format!(
                        "unknown blocklist `{}` (lists are defined by [[dns.blocklists]] in the main file)",
                        l.get_ref().escape_debug()
                    ),
                );
            }
        }
        out
    };
    let mut zones = BTreeMap::new();
    let mut unknown_zone: Option<ZoneId> = None;
    let mut approved_zone: Option<Option<ZoneId>> = None;
    let mut classify = Vec::new();
    let mut rule_ids = SeenRuleIds::new();
    let mut segment_zones = BTreeMap::new();
    let mut devices = BTreeMap::new();
    let mut static_ips: BTreeMap<Ipv4Addr, std::ops::Range<usize>> = BTreeMap::new();
    let mut tunnel = SelectorMerge::default();
    let mut doh_servers = Vec::new();
    for src in sources {
        let mut rep = Reporter::new(&src.path, &src.text, errors);
        for (i, d) in src.raw.doh_servers.iter().enumerate() {
            match super::tunnel::parse_network(d.get_ref()) {
                Ok(n) if !doh_servers.contains(&n) => doh_servers.push(n),
                Ok(_) => {}
                Err(m) => rep.at(d.span(), format!("doh_servers[{i}]"), m),
            }
        }
        for (name, z) in &src.raw.zones {
            let Ok(id) = ZoneId::new(name) else { continue };
            let z = z.get_ref();
            let mut reach = BTreeSet::new();
            for (i, r) in z.reach_zones.iter().enumerate() {
                if let Some(r) = zone_ref(&mut rep, r, format!("zones.{name}.reach_zones[{i}]")) {
                    reach.insert(r);
                }
            }
            let mut services = BTreeSet::new();
            for (i, s) in z.router_services.iter().enumerate() {
                match s.get_ref().parse::<RouterService>() {
                    Ok(svc) => {
                        services.insert(svc);
                    }
                    Err(m) => rep.at(s.span(), format!("zones.{name}.router_services[{i}]"), m),
                }
            }
            let mut upstreams = Vec::new();
            for (i, u) in z.dns_upstreams.iter().enumerate() {
                match super::dns::parse_upstream(u.get_ref()) {
                    Ok(up) => upstreams.push(up),
                    Err(m) => rep.at(u.span(), format!("zones.{name}.dns_upstreams[{i}]"), m),
                }
            }
            let dns = ZoneDns {
                blocklists: list_refs(&mut rep, &z.dns_blocklists, &|i| {
                    format!("zones.{name}.dns_blocklists[{i}]")
                }),
                log: z.dns_log,
                upstreams,
            };
            zones.entry(id.clone()).or_insert(Zone {
                id,
                description: z.description.clone(),
                internet: z.internet,
                reach_zones: reach,
                router_services: services,
                intra_zone: z.intra_zone,
                dns,
                detect: z.detect,
            });
        }
        if let Some(u) = &src.raw.unknown_zone {
            if unknown_zone.is_some() {
                rep.at(
                    u.span(),
                    "unknown_zone",
                    "`unknown_zone` is set in more than one policy file",
                );
            } else {
                unknown_zone = zone_ref(&mut rep, u, "unknown_zone".into());
            }
        }
        if let Some(a) = &src.raw.approved_zone {
            if approved_zone.is_some() {
                rep.at(
                    a.span(),
                    "approved_zone",
                    "`approved_zone` is set in more than one policy file",
                );
            } else {
                approved_zone = Some(zone_ref(&mut rep, a, "approved_zone".into()));
            }
        }
        if let Some(t) = &src.raw.tunnel {
            tunnel.add(t, &mut rep, &zone_ref, no_tunnel_in);
        }
        classify.extend(validate_class_rules(
            &src.raw.classify,
            &mut rep,
            &zone_ref,
            &mut rule_ids,
        ));
        for (seg, zone) in &src.raw.segment_zones {
            let field = format!("segment_zones.{}", seg.escape_debug());
            let known = segments.iter().find(|s| s.id.as_str() == seg);
            match known {
                None => rep.at(
                    zone.span(),
                    field.clone(),
                    format!("unknown segment `{}`", seg.escape_debug()),
                ),
                Some(s) => {
                    if let Some(z) = zone_ref(&mut rep, zone, field.clone()) {
                        if segment_zones.insert(s.id.clone(), z).is_some() {
                            rep.at(
                                zone.span(),
                                field,
                                "this segment's zone is set in more than one policy file",
                            );
                        }
                    }
                }
            }
        }
        for (i, d) in src.raw.devices.iter().enumerate() {
            let d = d.get_ref();
            let field = |n: &str| format!("devices[{i}].{n}");
            let mac = match d.mac.get_ref().parse::<MacAddr>() {
                Ok(m) => Some(m),
                Err(m) => {
                    rep.at(d.mac.span(), field("mac"), m);
                    None
                }
            };
            let zone = d.zone.as_ref().map(|z| zone_ref(&mut rep, z, field("zone")));
            let name = d.name.as_ref().map(|n| n.get_ref().clone());
            if let Some(n) = &d.name {
                if n.get_ref().chars().count() > 64 || n.get_ref().chars().any(char::is_control) {
                    rep.at(
                        n.span(),
                        field("name"),
                        "a device name is at most 64 characters, without control characters",
                    );
                }
            }
            let ip = match &d.ip {
                None => Some(None),
                Some(v) => match v.get_ref().parse::<Ipv4Addr>() {
                    Ok(a) if segments.iter().any(|s| s.ipv4.contains(&a) && s.ipv4.addr() != a) => {
                        if static_ips.insert(a, v.span()).is_some() {
                            rep.at(v.span(), field("ip"), format!("{a} is given to two devices"));
                            None
                        } else {
                            Some(Some(a))
                        }
                    }
                    Ok(a) => {
                        rep.at(
                            v.span(),
                            field("ip"),
                            format!("{a} is not a host address in any segment's subnet (or it is the router's)"),
                        );
                        None
                    }
                    Err(_) => {
                        rep.at(
                            v.span(),
                            field("ip"),
                            format!("`{}` is not an IPv4 address", v.get_ref().escape_debug()),
                        );
                        None
                    }
                },
            };
            if let (Some(mac), Some(Some(_)) | None, Some(ip)) = (mac, &zone, ip) {
                let dns_blocklists = d
                    .dns_blocklists
                    .as_ref()
                    .map(|l| list_refs(&mut rep, l, &|j| format!("devices[{i}].dns_blocklists[{j}]")));
                let over = DeviceOverride {
                    zone: zone.flatten(),
                    name,
                    ip,
                    dns_blocklists,
                    dns_log: d.dns_log,
                };
                if devices.insert(mac, over).is_some() {
                    rep.at(d.mac.span(), field("mac"), format!("device {mac} is listed twice"));
                }
            }
        }
    }
    let Some(unknown_zone) = unknown_zone else {
        if errors.is_empty() {
            errors.push(ConfigError {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                field: "unknown_zone".into(),
                message:
                    "no policy file sets `unknown_zone` (the zone for devices nobody knows yet, e.g. \"quarantine\")"
                        .into(),
            });
        }
        return None;
    };
    Some(Policy {
        zones,
        unknown_zone,
        segment_zones,
        devices,
        classify,
        approved_zone: approved_zone.flatten(),
        tunnel: tunnel.finish(),
        doh_servers,
    })
}

/// Parses an `IP` or `IP/prefix` given on the command line.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<IpNet>().map(|n| n.addr()))
        .map_err(|_| format!("`{}` is not an IP address", s.escape_debug()))
}
