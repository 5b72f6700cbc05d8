//! The home's own names: every device as `LABEL.<local domain>` (A, AAAA and
//! PTR), from the homeowner's name for it or its DHCP host name, made into a
//! safe DNS label; `router.<local domain>` for the router. Names under the
//! local domain, single-label names and reverse lookups of private ranges are
//! answered here and never go upstream (they would leak the home's layout, and
//! nobody outside can answer them).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::core::InventorySnapshot;

/// Labels no device may claim: the router's, and names clients look up to
/// configure themselves (a device called `wpad` would become the home's web
/// proxy).
const RESERVED_LABELS: [&str; 5] = ["router", "wpad", "isatap", "localhost", "local"];

/// TTL of local answers: short, devices move.
pub const LOCAL_TTL: u32 = 60;

/// A host name made into one DNS label: lower-case letters, digits and
/// hyphens, at most 63 bytes; anything else becomes a hyphen, runs of them
/// one, none at either end. `None` if nothing is left.
pub fn dns_label(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len().min(63));
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 63 {
            break;
        }
    }
    let label = out.trim_end_matches('-');
    (!label.is_empty()).then(|| label.to_string())
}

/// What the local table says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAnswer {
    /// The name is ours and has these addresses (possibly none of the type
    /// asked: an empty answer, not NXDOMAIN).
    Addresses(Vec<IpAddr>),
    /// The name is a pointer to this host name (PTR).
    Pointer(String),
    /// The name is ours to answer and does not exist.
    NoSuchName,
    /// Not a local name: ask upstream.
    NotLocal,
}

/// The names of the home at one snapshot.
#[derive(Debug, Clone, Default)]
pub struct LocalNames {
    domain: String,
    by_label: HashMap<String, Vec<IpAddr>>,
    by_address: HashMap<IpAddr, String>,
}

impl LocalNames {
    /// Builds the table: `domain` is the local domain (`lan`), `router` the
    /// router's own addresses. The homeowner's names come before DHCP host
    /// names; two devices wanting one label: the first by MAC gets it.
    pub fn build(domain: &str, router: &[IpAddr], snapshot: &InventorySnapshot) -> LocalNames {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut claims: BTreeMap<String, (u8, Vec<IpAddr>)> = BTreeMap::new();
        claims.insert("router".into(), (0, router.to_vec()));
        for d in snapshot.devices.values() {
            // A device nobody approved names nothing: a quarantined stranger
            // calling itself `nas` must not take the name from the real one.
            if snapshot.unknown_zone.as_ref() == Some(&d.zone) && d.name.is_none() {
                continue;
            }
            let candidates = [(1u8, d.name.as_deref()), (2u8, d.hostname.as_deref())];
            let Some((rank, label)) = candidates
                .into_iter()
                .find_map(|(rank, n)| n.and_then(dns_label).map(|l| (rank, l)))
            else {
                continue;
            };
            // Names clients look up to configure themselves (proxy
            // auto-discovery, tunnels): never a device's to take.
            if RESERVED_LABELS.contains(&label.as_str()) {
                continue;
            }
            let addresses: Vec<IpAddr> = d.addresses.iter().copied().collect();
            match claims.get(&label) {
                // Devices are visited in MAC order: an equal rank keeps the first.
                Some((held, _)) if *held <= rank => {}
                _ => {
                    claims.insert(label, (rank, addresses));
                }
            }
        }
        let mut by_address = HashMap::new();
        let mut by_label = HashMap::new();
        for (label, (_, addresses)) in claims {
            for a in &addresses {
                by_address.entry(*a).or_insert_with(|| format!("{label}.{domain}"));
            }
            by_label.insert(label, addresses);
        }
        LocalNames {
            domain,
            by_label,
            by_address,
        }
    }

    /// The local domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Answers `key` (lower-case, no trailing dot) if it is ours to answer.
    pub fn lookup(&self, key: &str) -> LocalAnswer {
        if let Some(ip) = reverse_address(key) {
            if let Some(name) = self.by_address.get(&ip) {
                return LocalAnswer::Pointer(name.clone());
            }
            return if is_private(ip) {
                LocalAnswer::NoSuchName
            } else {
                LocalAnswer::NotLocal
            };
        }
        if key.ends_with(".arpa") {
            // A partial reverse name (a zone cut) of a private range.
            return if private_reverse_zone(key) {
                LocalAnswer::NoSuchName
            } else {
                LocalAnswer::NotLocal
            };
        }
        let label = if key == self.domain {
            return LocalAnswer::Addresses(Vec::new());
        } else if let Some(l) = key.strip_suffix(&self.domain).and_then(|r| r.strip_suffix('.')) {
            l
        } else if !key.contains('.') && !key.is_empty() {
            // A single-label name: never forwarded (dnsmasq's domain-needed).
            key
        } else {
            return LocalAnswer::NotLocal;
        };
        match self.by_label.get(label) {
            Some(a) => LocalAnswer::Addresses(a.clone()),
            None => LocalAnswer::NoSuchName,
        }
    }

    /// How many names the table holds.
    pub fn len(&self) -> usize {
        self.by_label.len()
    }

    /// True when only the router is named.
    pub fn is_empty(&self) -> bool {
        self.by_label.len() <= 1
    }
}

/// The address a full reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles of
/// `ip6.arpa`) points at.
pub fn reverse_address(key: &str) -> Option<IpAddr> {
    if let Some(rest) = key.strip_suffix(".in-addr.arpa") {
        let parts: Vec<&str> = rest.split('.').collect();
        let [d, c, b, a] = parts.as_slice() else { return None };
        let octet = |s: &str| s.parse::<u8>().ok().filter(|_| !s.starts_with('+'));
        return Some(IpAddr::V4(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?)));
    }
    let rest = key.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 {
        return None;
    }
    let mut bits: u128 = 0;
    for n in nibbles.iter().rev() {
        let [c] = n.as_bytes() else { return None };
        bits = (bits << 4) | u128::from(char::from(*c).to_digit(16)?);
    }
    Some(IpAddr::V6(Ipv6Addr::from(bits)))
}

/// Private, loopback, link-local and unique-local addresses: never a public
/// name's answer, never a reverse lookup sent upstream.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

fn private_reverse_zone(key: &str) -> bool {
    let v4 = [
        "10.in-addr.arpa",
        "168.192.in-addr.arpa",
        "127.in-addr.arpa",
        "254.169.in-addr.arpa",
    ];
    if v4.iter().any(|z| key == *z || key.ends_with(&format!(".{z}"))) {
        return true;
    }
    if (16..32).any(|b| {
        let z = format!("{b}.172.in-addr.arpa");
        key == z || key.ends_with(&format!(".{z}"))
    }) {
        return true;
    }
    [
        "c.f.ip6.arpa",
        "d.f.ip6.arpa",
        "8.e.f.ip6.arpa",
        "9.e.f.ip6.arpa",
        "a.e.f.ip6.arpa",
        "b.e.f.ip6.arpa",
    ]
    .iter()
    .any(|z| key == *z || key.ends_with(&format!(".{z}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MacAddr, ZoneId};
    use crate::core::DeviceSnapshot;

    fn device(last: u8, name: Option<&str>, hostname: Option<&str>, ip: &str) -> DeviceSnapshot {
        DeviceSnapshot {
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            name: name.map(str::to_string),
            hostname: hostname.map(str::to_string),
            zone: ZoneId::new("trusted").expect("zone"),
            addresses: [ip.parse().expect("ip")].into(),
            blocked: false,
            tunnel_routed: false,
            quarantined: false,
            class: None,
            vendor: None,
            last_seen: 0,
            online: true,
            watched: false,
        }
    }

    fn snapshot(devices: Vec<DeviceSnapshot>) -> InventorySnapshot {
        InventorySnapshot {
            devices: devices.into_iter().map(|d| (d.mac, d)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn hostile_and_odd_names_become_safe_labels_or_nothing() {
        assert_eq!(dns_label("Anna's iPhone").as_deref(), Some("anna-s-iphone"));
        assert_eq!(
            dns_label("<script>alert(1)</script>").as_deref(),
            Some("script-alert-1-script")
        );
        assert_eq!(
            dns_label("\"; DROP TABLE devices; --").as_deref(),
            Some("drop-table-devices")
        );
        assert_eq!(
            dns_label("x.evil.com").as_deref(),
            Some("x-evil-com"),
            "no dots: one label"
        );
        assert_eq!(dns_label("Ünïcödé").as_deref(), Some("n-c-d"));
        assert_eq!(dns_label("日本語"), None);
        assert_eq!(dns_label("---"), None);
        assert_eq!(dns_label(""), None);
        let long = dns_label(&"a".repeat(300)).expect("label");
        assert_eq!(long.len(), 63);
    }

    #[test]
    fn devices_answer_by_name_and_address_and_the_owner_name_wins() {
        let router: IpAddr = "10.0.1.1".parse().expect("ip");
        let names = LocalNames::build(
            "lan",
            &[router],
            &snapshot(vec![
                device(1, None, Some("laptop"), "10.0.1.10"),
                device(2, Some("Laptop"), None, "10.0.1.11"),
                device(3, None, Some("tv"), "10.0.1.12"),
                device(4, None, Some("TV"), "10.0.1.13"),
            ]),
        );
        assert_eq!(
            names.lookup("laptop.lan"),
            LocalAnswer::Addresses(vec!["10.0.1.11".parse().expect("ip")]),
            "the homeowner's name beats a DHCP host name"
        );
        assert_eq!(
            names.lookup("tv.lan"),
            LocalAnswer::Addresses(vec!["10.0.1.12".parse().expect("ip")]),
            "equal claims: the first MAC"
        );
        assert_eq!(names.lookup("tv"), names.lookup("tv.lan"), "single label");
        assert_eq!(names.lookup("router.lan"), LocalAnswer::Addresses(vec![router]));
        assert_eq!(names.lookup("nobody.lan"), LocalAnswer::NoSuchName);
        assert_eq!(names.lookup("nobody"), LocalAnswer::NoSuchName);
        assert_eq!(names.lookup("example.com"), LocalAnswer::NotLocal);
        assert_eq!(
            names.lookup("12.1.0.10.in-addr.arpa"),
            LocalAnswer::Pointer("tv.lan".into())
        );
        assert_eq!(names.lookup("99.1.0.10.in-addr.arpa"), LocalAnswer::NoSuchName);
        assert_eq!(
            names.lookup("1.0.10.in-addr.arpa"),
            LocalAnswer::NoSuchName,
            "a private zone cut"
        );
        assert_eq!(names.lookup("80.2.0.192.in-addr.arpa"), LocalAnswer::NotLocal);
        assert_eq!(names.lookup("x.in-addr.arpa"), LocalAnswer::NotLocal);
    }

    #[test]
    fn reverse_names_parse_both_families() {
        assert_eq!(
            reverse_address("1.2.0.192.in-addr.arpa"),
            Some("192.0.2.1".parse().expect("ip"))
        );
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
        assert_eq!(reverse_address(v6), Some("2001:db8::1".parse().expect("ip")));
        assert_eq!(reverse_address("256.2.0.192.in-addr.arpa"), None);
        assert_eq!(reverse_address("2.0.192.in-addr.arpa"), None);
        assert!(is_private("fd00::1".parse().expect("ip")));
        assert!(is_private("::ffff:192.168.1.1".parse().expect("ip")));
        assert!(!is_private("2001:db8::1".parse().expect("ip")));
    }
}
