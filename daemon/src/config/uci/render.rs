//! `/etc/config/bulkhead` → the TOML main file the loader validates.
//!
//! Every UCI section type stands for one table of `bulkhead.toml` and every
//! option for the setting of the same name (so one reference documents both);
//! OpenWrt adds only what UCI users expect:
//! - networks by their OpenWrt name: `option network 'lan'` in a `wan` or
//!   `segment` section, and `list listen 'lan:8080'` in `web`, are read from
//!   `/etc/config/network` (device and static address);
//! - booleans as UCI writes them (`1`/`0`, `yes`/`no`, `on`/`off`,
//!   `true`/`false`), and a single `option` where TOML wants a list;
//! - the defaults of an OpenWrt router: the WAN's input is fw4's (police_input
//!   off), DHCP is dnsmasq's (`dhcp = "observe"`), state on the overlay
//!   (`/etc/bulkhead/state`, kept over sysupgrade).
//!
//! Each TOML line remembers the UCI line it came from, so the loader's errors
//! point into the file the homeowner edits.

use std::fmt::Write as _;

use super::network;
use super::parse::{Located, Pos, Section, UciFile, UciOption};

/// The TOML text and, per TOML line (index = line - 1), where in the UCI file
/// it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// A main file in `bulkhead.toml`'s format.
    pub toml: String,
    /// The UCI position of each TOML line.
    pub origins: Vec<Pos>,
}

/// A problem found while rendering, at an option of the bulkhead file (a
/// network's problem is reported where the bulkhead file names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// Where.
    pub at: Pos,
    /// UCI path of the option, `bulkhead.@segment[0].network`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Where a section type's options go in the TOML document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    Table(&'static str),
    Array(&'static str),
}

/// Section types in the order their tables are written (a table before its
/// sub-tables).
const PLACES: &[(&str, Place)] = &[
    ("bulkhead", Place::Root),
    ("wan", Place::Table("wan")),
    ("segment", Place::Array("segments")),
    ("web", Place::Table("web")),
    ("dhcp", Place::Table("dhcp")),
    ("dns", Place::Table("dns")),
    ("blocklist", Place::Array("dns.blocklists")),
    ("tunnel", Place::Table("tunnel")),
    ("peer", Place::Array("tunnel.peers")),
    ("detect", Place::Table("detect")),
    ("traffic", Place::Table("traffic")),
    ("notify", Place::Table("notify")),
    ("mqtt", Place::Table("notify.mqtt")),
    ("webhook", Place::Array("notify.webhook")),
    ("ntfy", Place::Array("notify.ntfy")),
    ("devices", Place::Table("devices")),
];

/// Settings that are booleans in `bulkhead.toml`.
pub(super) const BOOL_KEYS: &[&str] = &[
    "police_input",
    "flow_offload",
    "enabled",
    "rebind_protection",
    "commands",
];

/// Settings that are whole numbers.
pub(super) const INT_KEYS: &[&str] = &[
    "lease_secs",
    "vlan_id",
    "cache_entries",
    "client_qps",
    "query_log_entries",
    "refresh_hours",
    "mtu",
    "listen_port",
    "persistent_keepalive",
    "sample_secs",
    "per_hour",
    "nflog_group",
    "samples_per_second",
    "forget_private_after_days",
];

/// Settings that are lists (an `option` is taken as a list of one).
pub(super) const LIST_KEYS: &[&str] = &[
    "listen",
    "hostnames",
    "upstreams",
    "tunnel_upstreams",
    "bootstrap",
    "rebind_allow",
    "doh_servers",
    "ports",
    "addresses",
    "allowed_ips",
    "kinds",
];

/// OpenWrt's defaults where `bulkhead.toml`'s differ (section type, key, TOML value).
const OPENWRT_DEFAULTS: &[(&str, &str, &str)] = &[
    ("bulkhead", "state_dir", "\"/etc/bulkhead/state\""),
    ("bulkhead", "policies_dir", "\"/etc/bulkhead/policies\""),
    ("bulkhead", "control_socket", "\"/var/run/bulkhead/control.sock\""),
    ("wan", "police_input", "false"),
    ("segment", "dhcp", "\"observe\""),
    // dnsmasq answers port 53 until the homeowner moves it (README).
    ("dns", "enabled", "false"),
];

/// Where an error that belongs to no option points: the file as a whole.
const NO_POSITION: Pos = Pos { line: 0, column: 0 };

/// Options only the init script reads.
const INIT_ONLY: &[(&str, &str)] = &[("bulkhead", "enabled")];

struct Out {
    toml: String,
    origins: Vec<Pos>,
    errors: Vec<RenderError>,
}

impl Out {
    fn line(&mut self, text: &str, at: Pos) {
        self.toml.push_str(text);
        self.toml.push('\n');
        self.origins.push(at);
    }

    fn error(&mut self, at: Pos, field: &str, message: impl Into<String>) {
        self.errors.push(RenderError {
            at,
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// Renders the bulkhead file; `network` is `/etc/config/network` (parsed),
/// or why it could not be read (then naming a network is an error).
pub fn render(file: &UciFile, network: Result<&UciFile, &str>) -> Result<Rendered, Vec<RenderError>> {
    let mut out = Out {
        toml: String::new(),
        origins: Vec::new(),
        errors: Vec::new(),
    };
    // Line 1 belongs to no option: the loader's errors without a position
    // (span 0) come back as the file's line 0, not as some option's line.
    out.line("# rendered from UCI", NO_POSITION);
    for s in &file.sections {
        if !PLACES.iter().any(|(k, _)| *k == s.kind) {
            let known: Vec<&str> = PLACES.iter().map(|(k, _)| *k).collect();
            out.error(
                s.at,
                &s.kind,
                format!(
                    "unknown section type `{}` (Bulkhead's are: {})",
                    s.kind,
                    known.join(", ")
                ),
            );
        }
    }
    for (kind, place) in PLACES {
        let sections: Vec<(usize, &Section)> = file.sections.iter().filter(|s| s.kind == *kind).enumerate().collect();
        let mut sections = sections.as_slice();
        if let (Place::Root | Place::Table(_), [first, second, ..]) = (place, sections) {
            out.error(
                second.1.at,
                &path(second.1, 1),
                format!(
                    "a second `{kind}` section; Bulkhead reads one (the first is on line {})",
                    first.1.at.line
                ),
            );
            sections = &sections[..1];
        }
        if sections.is_empty() {
            // A table OpenWrt gives defaults to exists even when not written.
            if let Place::Table(t) = place {
                if OPENWRT_DEFAULTS.iter().any(|(k, _, _)| k == kind) {
                    out.line(&format!("[{t}]"), NO_POSITION);
                    write_defaults(&mut out, kind, &[], NO_POSITION);
                }
            }
        }
        for &(index, section) in sections {
            match place {
                Place::Root => {}
                Place::Table(t) => out.line(&format!("[{t}]"), section.at),
                Place::Array(t) => out.line(&format!("[[{t}]]"), section.at),
            }
            write_section(&mut out, section, index, network);
        }
    }
    // A file without a `bulkhead` section still gets OpenWrt's root defaults:
    // they must come before any table, so they go first.
    if !file.sections.iter().any(|s| s.kind == "bulkhead") {
        let mut head = Out {
            toml: String::new(),
            origins: Vec::new(),
            errors: Vec::new(),
        };
        // After `out`'s first line (the comment), before its tables.
        let (first, rest) = out.toml.split_once('\n').unwrap_or((&out.toml, ""));
        head.line(first, NO_POSITION);
        write_defaults(&mut head, "bulkhead", &[], NO_POSITION);
        head.toml.push_str(rest);
        head.origins.extend(out.origins.iter().skip(1));
        out.toml = head.toml;
        out.origins = head.origins;
    }
    if out.errors.is_empty() {
        Ok(Rendered {
            toml: out.toml,
            origins: out.origins,
        })
    } else {
        Err(out.errors)
    }
}

/// `bulkhead.NAME.OPTION` or `bulkhead.@TYPE[i].OPTION`, as `uci get` takes it.
fn path(s: &Section, index: usize) -> String {
    match &s.name {
        Some(n) => format!("bulkhead.{n}"),
        None => format!("bulkhead.@{}[{index}]", s.kind),
    }
}

fn write_section(out: &mut Out, s: &Section, index: usize, network: Result<&UciFile, &str>) {
    let base = path(s, index);
    let mut written: Vec<&str> = Vec::new();
    for o in &s.options {
        let field = format!("{base}.{}", o.name);
        if INIT_ONLY.contains(&(s.kind.as_str(), o.name.as_str())) {
            continue;
        }
        match (s.kind.as_str(), o.name.as_str()) {
            ("wan" | "segment", "network") => {
                written.extend(write_network(out, s, o, &field, network));
                continue;
            }
            ("web", "listen") => {
                write_listen(out, o, &field, network);
                written.push("listen");
                continue;
            }
            _ => {}
        }
        if let Some(value) = toml_value(out, o, &field) {
            out.line(&format!("{} = {value}", o.name), o.at);
            written.push(o.name.as_str());
        }
    }
    if s.kind == "segment" && s.option("name").is_none() {
        // The section's name, else its network's, names the segment.
        let name = s.name.clone().or_else(|| {
            s.option("network")
                .and_then(|o| o.values.last())
                .map(|v| v.text.clone())
        });
        if let Some(name) = name {
            out.line(&format!("name = {}", quoted(&name)), s.at);
        }
    }
    write_defaults(out, &s.kind, &written, s.at);
}

fn write_defaults(out: &mut Out, kind: &str, written: &[&str], at: Pos) {
    for (k, key, value) in OPENWRT_DEFAULTS {
        if *k == kind && !written.contains(key) {
            out.line(&format!("{key} = {value}"), at);
        }
    }
}

/// `option network 'lan'`: the interface (and, for a segment, how it exists
/// and the router's address on it) from the network file. Returns the keys
/// written.
fn write_network(
    out: &mut Out,
    s: &Section,
    o: &UciOption,
    field: &str,
    network: Result<&UciFile, &str>,
) -> Vec<&'static str> {
    let Some(value) = single(out, o, field) else {
        return Vec::new();
    };
    let network = match network {
        Ok(n) => n,
        Err(why) => {
            out.error(
                value.at,
                field,
                format!("the network configuration could not be read: {why}"),
            );
            return Vec::new();
        }
    };
    if s.option("interface").is_some() {
        out.error(value.at, field, "give `network` or `interface`, not both");
        return Vec::new();
    }
    let net = match network::lookup(network, &value.text) {
        Ok(n) => n,
        Err(e) => {
            out.error(value.at, field, e);
            return Vec::new();
        }
    };
    out.line(&format!("interface = {}", quoted(&net.device)), value.at);
    let mut keys = vec!["interface"];
    if s.kind == "segment" {
        if s.option("kind").is_none() {
            // netifd made it; Bulkhead only polices it.
            out.line("kind = \"existing\"", value.at);
            keys.push("kind");
        }
        if s.option("ipv4").is_none() {
            match net.ipv4 {
                Some(ip) => out.line(&format!("ipv4 = {}", quoted(&ip.to_string())), value.at),
                None => out.error(
                    value.at,
                    field,
                    format!(
                        "network `{}` has no static IPv4 address (proto static, ipaddr) for the router",
                        value.text
                    ),
                ),
            }
            keys.push("ipv4");
        }
    }
    keys
}

/// `list listen 'lan:8080'`: a network's name for its router address.
fn write_listen(out: &mut Out, o: &UciOption, field: &str, network: Result<&UciFile, &str>) {
    let mut items = Vec::new();
    for v in &o.values {
        let text = v.text.trim();
        let resolved = match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                match network.map(|n| network::lookup(n, host)) {
                    Ok(Ok(network::Network { ipv4: Some(ip), .. })) => format!("{}:{port}", ip.addr()),
                    Ok(Ok(_)) => {
                        out.error(
                            v.at,
                            field,
                            format!("network `{host}` has no static IPv4 address to listen on"),
                        );
                        continue;
                    }
                    // Not a network name: an address the loader checks.
                    _ => text.to_string(),
                }
            }
            _ => text.to_string(),
        };
        items.push(quoted(&resolved));
    }
    out.line(&format!("listen = [{}]", items.join(", ")), o.at);
}

fn single<'a>(out: &mut Out, o: &'a UciOption, field: &str) -> Option<&'a Located> {
    if o.is_list && o.values.len() != 1 {
        out.error(o.at, field, "takes one value (`option`), not a list");
        return None;
    }
    o.values.first()
}

/// The option's value as TOML, typed by the setting it stands for.
fn toml_value(out: &mut Out, o: &UciOption, field: &str) -> Option<String> {
    let name = o.name.as_str();
    if BOOL_KEYS.contains(&name) {
        let v = single(out, o, field)?;
        return match uci_bool(&v.text) {
            Some(b) => Some(b.to_string()),
            None => {
                out.error(
                    v.at,
                    field,
                    format!(
                        "`{}` is not a yes/no value (1/0, yes/no, on/off, true/false)",
                        v.text.escape_debug()
                    ),
                );
                None
            }
        };
    }
    if INT_KEYS.contains(&name) {
        let v = single(out, o, field)?;
        return match v.text.trim().parse::<i64>() {
            Ok(n) => Some(n.to_string()),
            Err(_) => {
                out.error(
                    v.at,
                    field,
                    format!("`{}` is not a whole number", v.text.escape_debug()),
                );
                None
            }
        };
    }
    if o.is_list || LIST_KEYS.contains(&name) {
        let items: Vec<String> = o.values.iter().map(|v| quoted(&v.text)).collect();
        return Some(format!("[{}]", items.join(", ")));
    }
    single(out, o, field).map(|v| quoted(&v.text))
}

/// UCI's booleans, as `config_get_bool` reads them.
fn uci_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "yes" | "on" | "true" | "enabled" => Some(true),
        "0" | "no" | "off" | "false" | "disabled" => Some(false),
        _ => None,
    }
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
