//! `[[share]]` and `[[share_preset]]` in the policy files: which services the
//! homeowner shares across zones (casting, printing), one direction each.
//!
//! ```toml
//! [[share_preset]]            # shipped in policies/shares.toml
//! name = "chromecast"
//! services = ["_googlecast._tcp"]
//! ports = ["tcp/8008-8009"]   # what the SRV record does not say
//! source = "…"
//!
//! [[share]]                   # the homeowner's
//! preset = "chromecast"       # or services = […] (and ports = […])
//! from = ["iot"]              # where the devices offering it are
//! to = ["trusted"]            # who may find and use them
//! ```
//!
//! Nothing is shared unless a `[[share]]` says so.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::Reporter;
use super::types::ZoneId;

/// At most this many `[[share]]` entries (each one is a rule pair per zone).
pub const MAX_SHARES: usize = 32;
/// A port range in a share opens at most this many ports (each is a set
/// element per device: AirPlay's 49152-65535 is not a pinhole).
pub const MAX_PORTS_PER_RANGE: u32 = 64;

/// The transport of a shared port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// The IP protocol number.
    pub fn protocol_number(self) -> u8 {
        match self {
            Transport::Tcp => 6,
            Transport::Udp => 17,
        }
    }

    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Ports a shared service needs beyond the one its SRV record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortRange {
    /// TCP or UDP.
    pub transport: Transport,
    /// First port.
    pub first: u16,
    /// Last port (inclusive; `first` for one port).
    pub last: u16,
}

impl PortRange {
    /// Every port of the range.
    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.transport.as_str(), self.first)
        } else {
            write!(f, "{}/{}-{}", self.transport.as_str(), self.first, self.last)
        }
    }
}

/// A DNS-SD service type, lower-case, without the domain: `_googlecast._tcp`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceType(String);

impl ServiceType {
    /// Parses `_name._tcp` / `_name._udp` (RFC 6335: the name is 1-15
    /// letters, digits and hyphens, with a letter, not starting or ending
    /// with a hyphen; case-insensitive).
    pub fn new(text: &str) -> Result<ServiceType, String> {
        let bad = || {
            format!(
                "`{}` is not a service type like `_googlecast._tcp` (`_name._tcp` or `_name._udp`)",
                text.escape_debug()
            )
        };
        let lower = text.to_ascii_lowercase();
        let (name, proto) = lower.split_once('.').ok_or_else(bad)?;
        let name = name.strip_prefix('_').ok_or_else(bad)?;
        if !matches!(proto, "_tcp" | "_udp")
            || name.is_empty()
            || name.len() > 15
            || name.starts_with('-')
            || name.ends_with('-')
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || !name.bytes().any(|b| b.is_ascii_alphabetic())
        {
            return Err(bad());
        }
        Ok(ServiceType(lower))
    }

    /// As written in policy: `_googlecast._tcp`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServiceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shipped (or the homeowner's) bundle of service types and ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharePreset {
    /// Its name (`chromecast`).
    pub name: String,
    /// What it is for, for the UI.
    pub description: String,
    /// The service types.
    pub services: BTreeSet<ServiceType>,
    /// The extra ports.
    pub ports: Vec<PortRange>,
    /// SSDP search targets (`urn:dial-multiscreen-org:service:dial:1`), lower-case.
    pub ssdp: BTreeSet<String>,
    /// Where its ports come from.
    pub source: String,
}

/// One direction of sharing, in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShareRule {
    /// The preset's name, or `share[N]` for one written out.
    pub name: String,
    /// The service types shared.
    pub services: BTreeSet<ServiceType>,
    /// The ports opened besides each instance's SRV port.
    pub ports: Vec<PortRange>,
    /// SSDP search targets shared (their LOCATION's port is opened).
    pub ssdp: BTreeSet<String>,
    /// The zones offering them.
    pub from: BTreeSet<ZoneId>,
    /// The zones that may find and use them.
    pub to: BTreeSet<ZoneId>,
    /// Turned on by the homeowner (CLI, web UI), not written in a file.
    pub homeowner: bool,
}

impl ShareRule {
    /// A preset's share from one zone to another (the homeowner's).
    pub fn of_preset(preset: &SharePreset, from: ZoneId, to: ZoneId) -> ShareRule {
        ShareRule {
            name: preset.name.clone(),
            services: preset.services.clone(),
            ports: preset.ports.clone(),
            ssdp: preset.ssdp.clone(),
            from: [from].into(),
            to: [to].into(),
            homeowner: true,
        }
    }
}

/// A raw `[[share_preset]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSharePreset {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    services: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    ssdp: Vec<Spanned<String>>,
    source: Spanned<String>,
}

/// A raw `[[share]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShare {
    preset: Option<Spanned<String>>,
    services: Option<Vec<Spanned<String>>>,
    ports: Option<Vec<Spanned<String>>>,
    ssdp: Option<Vec<Spanned<String>>>,
    from: Spanned<Vec<Spanned<String>>>,
    to: Spanned<Vec<Spanned<String>>>,
}

/// Parses `tcp/8009` or `tcp/8008-8009`.
pub fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let bad = || {
        format!(
            "`{}` is not a port like `tcp/8009` or `udp/5000-5010`",
            text.escape_debug()
        )
    };
    let (proto, ports) = text.split_once('/').ok_or_else(bad)?;
    let transport = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        _ => return Err(bad()),
    };
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (a, b),
        None => (ports, ports),
    };
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || last < first {
        return Err(bad());
    }
    if u32::from(last - first) + 1 > MAX_PORTS_PER_RANGE {
        return Err(format!(
            "`{}` opens {} ports; a share opens at most {MAX_PORTS_PER_RANGE} per range",
            text.escape_debug(),
            u32::from(last - first) + 1
        ));
    }
    Ok(PortRange { transport, first, last })
}

/// An SSDP search target: `urn:…`, `uuid:…` or `upnp:rootdevice`, printable,
/// no spaces, at most 128 characters; lower-cased.
pub fn parse_ssdp_target(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    let ok = (t.starts_with("urn:") || t.starts_with("uuid:") || t == "upnp:rootdevice")
        && t.len() <= 128
        && t.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(t)
    } else {
        Err(format!(
            "`{}` is not an SSDP search target like `urn:dial-multiscreen-org:service:dial:1`",
            text.escape_debug()
        ))
    }
}

fn ssdp_targets(rep: &mut Reporter<'_>, raw: &[Spanned<String>], field: &dyn Fn(usize) -> String) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, t) in raw.iter().enumerate() {
        match parse_ssdp_target(t.get_ref()) {
            Ok(t) => {
                out.insert(t);
            }
            Err(m) => rep.at(t.span(), field(i), m),
        }
    }
    out
}

fn services(rep: &mut Reporter<'_>, raw: &[Spanned<String>], field: &dyn Fn(usize) -> String) -> BTreeSet<ServiceType> {
    let mut out = BTreeSet::new();
    for (i, s) in raw.iter().enumerate() {
        match ServiceType::new(s.get_ref()) {
            Ok(t) => {
                out.insert(t);
            }
            Err(m) => rep.at(s.span(), field(i), m),
        }
    }
    out
}

fn ports(rep: &mut Reporter<'_>, raw: &[Spanned<String>], field: &dyn Fn(usize) -> String) -> Vec<PortRange> {
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        match parse_port_range(p.get_ref()) {
            Ok(r) if !out.contains(&r) => out.push(r),
            Ok(_) => {}
            Err(m) => rep.at(p.span(), field(i), m),
        }
    }
    out
}

/// Validates one file's presets into `presets` (a name defined twice is an
/// error at the second).
pub(super) fn validate_presets(
    raw: &[Spanned<RawSharePreset>],
    rep: &mut Reporter<'_>,
    presets: &mut Vec<SharePreset>,
) {
    for (i, p) in raw.iter().enumerate() {
        let p = p.get_ref();
        let field = |n: &str| format!("share_preset[{i}].{n}");
        let name = p.name.get_ref().trim().to_string();
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            rep.at(
                p.name.span(),
                field("name"),
                "a preset name is 1-32 lower-case letters, digits and hyphens",
            );
            continue;
        }
        if presets.iter().any(|q| q.name == name) {
            rep.at(
                p.name.span(),
                field("name"),
                format!("preset `{name}` is defined more than once"),
            );
            continue;
        }
        let services = services(rep, &p.services, &|j| format!("share_preset[{i}].services[{j}]"));
        let ssdp = ssdp_targets(rep, &p.ssdp, &|j| format!("share_preset[{i}].ssdp[{j}]"));
        if p.services.is_empty() && p.ssdp.is_empty() {
            rep.at(
                p.name.span(),
                field("services"),
                "a preset names at least one service type or SSDP target",
            );
        }
        let ports = ports(rep, &p.ports, &|j| format!("share_preset[{i}].ports[{j}]"));
        if p.source.get_ref().trim().is_empty() {
            rep.at(p.source.span(), field("source"), "say where the ports come from");
        }
        presets.push(SharePreset {
            name,
            description: p.description.clone(),
            services,
            ports,
            ssdp,
            source: p.source.get_ref().clone(),
        });
    }
}

/// Validates one file's shares (after every file's presets are known).
pub(super) fn validate_shares(
    raw: &[Spanned<RawShare>],
    rep: &mut Reporter<'_>,
    presets: &[SharePreset],
    zone_ref: &super::class_rules::ZoneRef<'_>,
    shares: &mut Vec<ShareRule>,
) {
    for (i, spanned) in raw.iter().enumerate() {
        let s = spanned.get_ref();
        let field = |n: &str| format!("share[{i}].{n}");
        if shares.len() >= MAX_SHARES {
            rep.at(
                spanned.span(),
                format!("share[{i}]"),
                format!("at most {MAX_SHARES} shares"),
            );
            return;
        }
        let named = s.services.is_some() || s.ssdp.is_some();
        let (name, services_of, mut ports_of, ssdp_of) = match (&s.preset, named) {
            (Some(p), false) => match presets.iter().find(|q| q.name == *p.get_ref()) {
                Some(q) => (q.name.clone(), q.services.clone(), q.ports.clone(), q.ssdp.clone()),
                None => {
                    let known: Vec<&str> = presets.iter().map(|q| q.name.as_str()).collect();
                    rep.at(
                        p.span(),
                        field("preset"),
                        format!(
                            "unknown preset `{}` (known: {})",
                            p.get_ref().escape_debug(),
                            known.join(", ")
                        ),
                    );
                    continue;
                }
            },
            (None, true) => {
                let list = s.services.as_deref().unwrap_or_default();
                let set = services(rep, list, &|j| format!("share[{i}].services[{j}]"));
                let targets = s.ssdp.as_deref().unwrap_or_default();
                let ssdp = ssdp_targets(rep, targets, &|j| format!("share[{i}].ssdp[{j}]"));
                if list.is_empty() && targets.is_empty() {
                    rep.at(
                        spanned.span(),
                        field("services"),
                        "name at least one service type or SSDP target",
                    );
                    continue;
                }
                (format!("share[{i}]"), set, Vec::new(), ssdp)
            }
            _ => {
                rep.at(
                    spanned.span(),
                    format!("share[{i}]"),
                    "a share names either `preset` or `services`/`ssdp` (not both)",
                );
                continue;
            }
        };
        if let Some(extra) = &s.ports {
            for r in ports(rep, extra, &|j| format!("share[{i}].ports[{j}]")) {
                if !ports_of.contains(&r) {
                    ports_of.push(r);
                }
            }
        }
        let mut zones = |list: &Spanned<Vec<Spanned<String>>>, which: &str| {
            let mut out = BTreeSet::new();
            for (j, z) in list.get_ref().iter().enumerate() {
                if let Some(id) = zone_ref(rep, z, format!("share[{i}].{which}[{j}]")) {
                    out.insert(id);
                }
            }
            if list.get_ref().is_empty() {
                rep.at(list.span(), field(which), "name at least one zone");
            }
            out
        };
        let from = zones(&s.from, "from");
        let to = zones(&s.to, "to");
        if let Some(z) = from.intersection(&to).next() {
            rep.at(
                s.to.span(),
                field("to"),
                format!("zone `{z}` is on both sides (within a zone, `intra_zone` decides)"),
            );
            continue;
        }
        if from.is_empty() || to.is_empty() || (services_of.is_empty() && ssdp_of.is_empty()) {
            continue;
        }
        shares.push(ShareRule {
            name,
            services: services_of,
            ports: ports_of,
            ssdp: ssdp_of,
            from,
            to,
            homeowner: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_types_follow_rfc_6335() {
        assert_eq!(
            ServiceType::new("_GoogleCast._TCP").expect("test data").as_str(),
            "_googlecast._tcp"
        );
        assert!(ServiceType::new("_ipp._tcp").is_ok());
        assert!(ServiceType::new("_spotify-connect._tcp").is_ok());
        for bad in [
            "googlecast._tcp",
            "_googlecast",
            "_googlecast._sctp",
            "_._tcp",
            "_-x._tcp",
            "_123._tcp",
            "_sixteen-chars-xx._tcp",
            "_a b._tcp",
            "_cast._tcp.local",
        ] {
            assert!(ServiceType::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_are_bounded() {
        let r = parse_port_range("tcp/8008-8009").expect("test data");
        assert_eq!((r.transport, r.first, r.last), (Transport::Tcp, 8008, 8009));
        assert_eq!(r.to_string(), "tcp/8008-8009");
        assert_eq!(parse_port_range("UDP/319").expect("test data").to_string(), "udp/319");
        for bad in ["tcp/0", "tcp/9-8", "sctp/1", "8009", "tcp/x", "tcp/70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
        let wide = parse_port_range("tcp/49152-65535").expect_err("too wide");
        assert!(wide.contains("at most 64"), "{wide}");
    }
}
