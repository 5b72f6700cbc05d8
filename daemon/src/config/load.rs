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
use super::traffic::{validate_traffic, RawTraffic, TrafficConfig};
use super::tunnel::{validate_tunnel, RawPolicyTunnel, RawTunnel, SelectorMerge};
use super::types::*;
use crate::tunnel::keys::KeyError;

mod policy_file;
mod segment;
use policy_file::*;
pub(super) use segment::is_dns_name;
use segment::*;

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
    traffic: Option<RawTraffic>,
    notify: Option<RawNotify>,
    devices: Option<RawDevices>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevices {
    forget_private_after_days: Option<Spanned<i64>>,
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
    #[serde(default = "default_true")]
    flow_offload: bool,
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
    /// Bundles of service types and ports (`policies/shares.toml`).
    #[serde(default)]
    share_preset: Vec<Spanned<super::share::RawSharePreset>>,
    /// What the homeowner shares across zones.
    #[serde(default)]
    share: Vec<Spanned<super::share::RawShare>>,
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
    pub(super) upnp: Option<Spanned<BTreeMap<String, SpannedList>>>,
    pub(super) randomized_mac: Option<Spanned<bool>>,
}

/// Loads and validates the main file and the policy directory it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Err(ConfigErrors(vec![unreadable(path, &e)])),
    };
    if super::uci::looks_like_uci(&text) {
        // OpenWrt: /etc/config/bulkhead, with networks named as in
        // /etc/config/network beside it.
        let network_path = super::uci::network_file_for(path);
        let network_text =
            std::fs::read_to_string(&network_path).map_err(|e| format!("{}: {e}", network_path.display()));
        let rendered =
            super::uci::to_toml(path, &text, network_text.as_deref().map_err(String::as_str)).map_err(ConfigErrors)?;
        return load_with(
            path,
            &rendered.toml,
            read_policy_dir,
            &crate::tunnel::keys::read_key_file,
        )
        .map_err(|mut e| {
            rendered.point_back(path, &mut e.0);
            e
        });
    }
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
            let bootstrap = !m.dns.bootstrap.is_empty();
            read_policies(&m.policies_dir, &mut errors).and_then(|files| {
                load_policy(
                    &m.policies_dir,
                    files,
                    &m.segments,
                    &lists,
                    no_tunnel_in,
                    bootstrap,
                    &mut errors,
                )
            })
        }
        None => None,
    };
    match (main, policy) {
        (Some(m), Some(policy)) if errors.is_empty() => Ok(Config {
            source: path.to_path_buf(),
            wan_interface: m.wan_interface,
            police_wan_input: m.police_wan_input,
            flow_offload: m.flow_offload,
            segments: m.segments,
            state_dir: m.state_dir,
            policies_dir: m.policies_dir,
            control_socket: m.control_socket,
            web: m.web,
            dhcp: m.dhcp,
            tunnel: m.tunnel,
            dns: m.dns,
            detect: m.detect,
            traffic: m.traffic,
            notify: m.notify,
            devices: m.devices,
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
    flow_offload: bool,
    segments: Vec<Segment>,
    state_dir: PathBuf,
    policies_dir: PathBuf,
    control_socket: PathBuf,
    web: WebConfig,
    dhcp: DhcpSettings,
    tunnel: Option<TunnelConfig>,
    dns: DnsConfig,
    detect: DetectConfig,
    traffic: TrafficConfig,
    notify: NotifyConfig,
    devices: DevicesConfig,
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
    let traffic = validate_traffic(raw.traffic.as_ref(), rep);
    ok &= traffic.is_some();
    let notify = validate_notify(raw.notify.as_ref(), base, rep);
    ok &= notify.is_some();
    let mut devices = DevicesConfig::default();
    if let Some(days) = raw.devices.as_ref().and_then(|d| d.forget_private_after_days.as_ref()) {
        match u32::try_from(*days.get_ref()) {
            Ok(v @ 0..=3650) => devices.forget_private_after_days = v,
            _ => {
                rep.at(
                    days.span(),
                    "devices.forget_private_after_days",
                    "days from 0 (never) to 3650",
                );
                ok = false;
            }
        }
    }
    let part = MainPart {
        wan_interface: wan.into_inner(),
        police_wan_input: raw.wan.police_input,
        flow_offload: raw.wan.flow_offload,
        segments,
        state_dir,
        policies_dir: path_or(raw.policies_dir, "/etc/bulkhead/policies"),
        control_socket: path_or(raw.control_socket, "/run/bulkhead/control.sock"),
        web,
        dhcp,
        tunnel,
        dns: dns.unwrap_or_else(|| DnsConfig::defaults(&[])),
        detect: detect.unwrap_or_default(),
        traffic: traffic.unwrap_or_default(),
        notify: notify.unwrap_or_default(),
        devices,
    };
    ok.then_some(part)
}

/// Parses an `IP` or `IP/prefix` given on the command line.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<IpNet>().map(|n| n.addr()))
        .map_err(|_| format!("`{}` is not an IP address", s.escape_debug()))
}
