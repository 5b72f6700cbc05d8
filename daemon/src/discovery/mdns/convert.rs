//! PURE: untrusted mDNS answers in, bounded [`Evidence`] out.
//!
//! Everything here is data a device on the LAN chose to send. Nothing is trusted,
//! nothing panics: names and TXT values are kept as data (through
//! [`classify::bounded`](crate::classify::bounded)), sets are capped, and an
//! answer that cannot name a device (bad service type, no instance name, no
//! usable address) is dropped with a reason the browser counts.

use std::collections::BTreeSet;
use std::net::IpAddr;

use mdns_sd::{ResolvedService, ScopedIp};

use crate::classify::{bounded, Evidence, MAX_ITEMS};

/// Longest service name accepted, after the leading `_` (`googlecast` is 10).
/// RFC 6335 allows 15; mdns-sd registers up to 30 and so do some devices.
pub const MAX_TYPE_LABEL: usize = 30;
/// Most addresses kept from one answer.
pub const MAX_ADDRESSES: usize = 16;

/// What one resolved mDNS service instance says about the device behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsObservation {
    /// The device's addresses, as announced (A/AAAA records), sorted, at most
    /// [`MAX_ADDRESSES`]. Announced, not observed: a device can name any
    /// address here (see docs/ARCHITECTURE.md, "mDNS").
    pub addresses: Vec<IpAddr>,
    /// The router interface the answer arrived on, when mdns-sd knows it.
    pub interface: Option<String>,
    /// Service type, instance and host names, TXT keys and values.
    pub evidence: Evidence,
}

/// Why an answer was not turned into an observation. Untrusted text in here is
/// bounded, and `Display` prints it escaped, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdnsDropped {
    /// The service type is not `_name._tcp` or `_name._udp` with a sane name.
    #[error("malformed service type {0:?}")]
    MalformedType(String),
    /// The full name is not `<instance>.<service type>` with a non-empty instance.
    #[error("no instance name in {0:?}")]
    NoInstance(String),
    /// No address a device could have (none, or only unspecified, loopback,
    /// multicast or broadcast ones).
    #[error("no usable address for {0:?}")]
    NoAddress(String),
}

/// A resolved service instance as plain parts: what [`observation_of`] reads.
/// [`parts_of`] makes one from mdns-sd's [`ResolvedService`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceParts {
    /// Service type and domain, e.g. `_googlecast._tcp.local.`.
    pub ty_domain: String,
    /// Full instance name, e.g. `Living Room TV._googlecast._tcp.local.`.
    pub fullname: String,
    /// SRV target host, e.g. `livingroom-tv.local.`.
    pub host: String,
    /// Addresses, each with the name of the interface it was seen on, if known.
    pub addresses: Vec<(IpAddr, Option<String>)>,
    /// TXT entries in record order: key, and value (`None` for a boolean key).
    /// Values are bytes: RFC 6763 does not promise UTF-8.
    pub txt: Vec<(String, Option<Vec<u8>>)>,
}

/// Checks a service type name and returns it without the domain, spelled as
/// given: `_googlecast._tcp`, `_googlecast._tcp.local` and
/// `_googlecast._tcp.local.` all give `_googlecast._tcp`.
///
/// Accepted: `_` + 1 to [`MAX_TYPE_LABEL`] bytes of ASCII letters, digits, `-`
/// and `_`, with at least one letter, no leading or trailing `-` and no `--`;
/// then `._tcp` or `._udp` (any case). Anything else is
/// [`MdnsDropped::MalformedType`], with the name bounded.
pub fn service_type_of(name: &str) -> Result<String, MdnsDropped> {
    let malformed = || MdnsDropped::MalformedType(bounded(name.as_bytes()));
    let bare = strip_suffix_ignore_case(name, ".local.")
        .or_else(|| strip_suffix_ignore_case(name, ".local"))
        .unwrap_or(name);
    let (service, proto) = bare.split_once('.').ok_or_else(malformed)?;
    if !(proto.eq_ignore_ascii_case("_tcp") || proto.eq_ignore_ascii_case("_udp")) {
        return Err(malformed());
    }
    let label = service.strip_prefix('_').ok_or_else(malformed)?;
    let sane_chars = label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let ok = !label.is_empty()
        && label.len() <= MAX_TYPE_LABEL
        && sane_chars
        && label.bytes().any(|b| b.is_ascii_alphabetic())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && !label.contains("--");
    if ok {
        Ok(bare.to_string())
    } else {
        Err(malformed())
    }
}

/// Turns one resolved instance into an observation. Pure; never panics.
///
/// Evidence: `mdns_services` = the type without `.local.`, lower-cased;
/// `mdns_names` = the instance name and the host name without `.local.`; `txt` =
/// lower-cased key → value (a boolean key maps to `""`; first occurrence wins;
/// at most [`MAX_ITEMS`] keys). All text goes through [`bounded`]: invalid UTF-8
/// is replaced, length is cut, control and bidi characters are kept as data.
pub fn observation_of(parts: &ServiceParts) -> Result<MdnsObservation, MdnsDropped> {
    let ty = service_type_of(&parts.ty_domain)?;
    let instance = instance_of(&parts.fullname, &parts.ty_domain)
        .ok_or_else(|| MdnsDropped::NoInstance(bounded(parts.fullname.as_bytes())))?;

    let mut usable: Vec<(IpAddr, Option<&str>)> = parts
        .addresses
        .iter()
        .filter(|(ip, _)| usable_address(ip))
        .map(|(ip, intf)| (*ip, intf.as_deref().filter(|s| !s.is_empty())))
        .collect();
    // Sorted by address, and among equal addresses those with a known interface first.
    usable.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.is_some().cmp(&a.1.is_some())));
    usable.dedup_by_key(|(ip, _)| *ip);
    usable.truncate(MAX_ADDRESSES);
    if usable.is_empty() {
        return Err(MdnsDropped::NoAddress(bounded(parts.fullname.as_bytes())));
    }
    let interface = usable.iter().find_map(|(_, intf)| *intf).map(|s| bounded(s.as_bytes()));
    let addresses = usable.into_iter().map(|(ip, _)| ip).collect();

    let mut evidence = Evidence::default();
    evidence.mdns_services.insert(ty.to_ascii_lowercase());
    evidence.mdns_names = names(instance, &parts.host);
    for (key, value) in &parts.txt {
        let key = bounded(key.to_lowercase().as_bytes());
        if key.is_empty() || evidence.txt.contains_key(&key) {
            continue;
        }
        if evidence.txt.len() >= MAX_ITEMS {
            break;
        }
        let value = bounded(value.as_deref().unwrap_or_default());
        evidence.txt.insert(key, value);
    }
    Ok(MdnsObservation {
        addresses,
        interface,
        evidence,
    })
}

/// The plain parts of mdns-sd's resolved service. Addresses come sorted, each
/// with the first interface mdns-sd recorded for it.
pub fn parts_of(service: &ResolvedService) -> ServiceParts {
    let mut addresses: Vec<(IpAddr, Option<String>)> = service
        .get_addresses()
        .iter()
        .map(|scoped| (scoped.to_ip_addr(), interface_of(scoped)))
        .collect();
    addresses.sort();
    ServiceParts {
        ty_domain: service.ty_domain.clone(),
        fullname: service.get_fullname().to_string(),
        host: service.get_hostname().to_string(),
        addresses,
        txt: service
            .get_properties()
            .iter()
            .map(|p| (p.key().to_string(), p.val().map(<[u8]>::to_vec)))
            .collect(),
    }
}

fn interface_of(scoped: &ScopedIp) -> Option<String> {
    let name = match scoped {
        ScopedIp::V4(v4) => v4.interface_ids().first().map(|id| id.name.clone()),
        ScopedIp::V6(v6) => Some(v6.scope_id().name.clone()),
        // ScopedIp is non_exhaustive: a future kind has no known interface.
        _ => None,
    };
    name.filter(|n| !n.is_empty())
}

/// The instance part of `<instance>.<ty_domain>`, compared without case.
fn instance_of<'a>(fullname: &'a str, ty_domain: &str) -> Option<&'a str> {
    let suffix_len = ty_domain.len().checked_add(1)?;
    let cut = fullname.len().checked_sub(suffix_len)?;
    if !fullname.is_char_boundary(cut) {
        return None;
    }
    let (instance, tail) = fullname.split_at(cut);
    let ty = tail.strip_prefix('.')?;
    (ty.eq_ignore_ascii_case(ty_domain) && !instance.is_empty()).then_some(instance)
}

/// The instance name and the host name (without `.local.`), bounded.
fn names(instance: &str, host: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    names.insert(bounded(instance.as_bytes()));
    let host = strip_local(host);
    if !host.is_empty() {
        names.insert(bounded(host.as_bytes()));
    }
    names
}

/// A host name without `.local.` (or `.local`, or a trailing dot).
pub(super) fn strip_local(host: &str) -> &str {
    strip_suffix_ignore_case(host, ".local.")
        .or_else(|| strip_suffix_ignore_case(host, ".local"))
        .unwrap_or_else(|| host.strip_suffix('.').unwrap_or(host))
}

/// Could a device on the LAN have this address?
fn usable_address(ip: &IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast)
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    if !s.is_char_boundary(cut) {
        return None;
    }
    let (head, tail) = s.split_at(cut);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use mdns_sd::ServiceInfo;

    use super::*;
    use crate::classify::MAX_TEXT;

    fn tv() -> ServiceParts {
        ServiceParts {
            ty_domain: "_googlecast._tcp.local.".into(),
            fullname: "Living Room TV._googlecast._tcp.local.".into(),
            host: "livingroom-tv.local.".into(),
            addresses: vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 30)), Some("br-lan".into()))],
            txt: vec![
                ("md".into(), Some(b"Chromecast".to_vec())),
                ("fn".into(), Some(b"Living Room".to_vec())),
            ],
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_chromecast_becomes_evidence() {
        let o = observation_of(&tv()).expect("valid");
        assert_eq!(o.addresses, vec![IpAddr::V4(Ipv4Addr::new(10, 0, 1, 30))]);
        assert_eq!(o.interface.as_deref(), Some("br-lan"));
        assert_eq!(o.evidence.mdns_services, set(&["_googlecast._tcp"]));
        assert_eq!(o.evidence.mdns_names, set(&["Living Room TV", "livingroom-tv"]));
        assert_eq!(o.evidence.txt.get("md").map(String::as_str), Some("Chromecast"));
        assert_eq!(o.evidence.txt.get("fn").map(String::as_str), Some("Living Room"));
        assert_eq!(o.evidence.hostname, None, "mDNS never fills DHCP fields");
    }

    #[test]
    fn service_types_are_checked() {
        for good in [
            "_hap._tcp",
            "_hap._tcp.local.",
            "_HAP._TCP.LOCAL.",
            "_matterc._udp.local",
            "_spotify-connect._tcp",
            "_nvstream_dbd._tcp",
            "_androidtvremote2._tcp",
            "_a._udp",
        ] {
            assert!(service_type_of(good).is_ok(), "{good}");
        }
        assert_eq!(service_type_of("_HAP._tcp.local.").as_deref(), Ok("_HAP._tcp"));
        let long_ok = format!("_{}._tcp", "a".repeat(MAX_TYPE_LABEL));
        assert!(service_type_of(&long_ok).is_ok());
        let too_long = format!("_{}._tcp", "a".repeat(MAX_TYPE_LABEL + 1));
        for bad in [
            "",
            ".",
            "_hap",
            "hap._tcp",
            "_._tcp",
            "_hap._sctp",
            "_hap._tcp.example.com.",
            "_sub._hap._tcp.local.",
            "x._hap._tcp.local.",
            "_-hap._tcp",
            "_hap-._tcp",
            "_h--p._tcp",
            "_123._tcp",
            "_h p._tcp",
            "_h.p._tcp",
            "_hap\0._tcp",
            "_hap\n._tcp",
            "_h\u{202e}p._tcp",
            "_<script>._tcp",
            "_hé._tcp",
            "_hap._tcp.local.local.",
            too_long.as_str(),
        ] {
            assert!(
                matches!(service_type_of(bad), Err(MdnsDropped::MalformedType(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_answers_are_dropped_with_a_reason() {
        let mut p = tv();
        p.ty_domain = "_<b>._tcp.local.".into();
        assert!(matches!(observation_of(&p), Err(MdnsDropped::MalformedType(_))));

        for fullname in [
            "",
            "_googlecast._tcp.local.",
            "._googlecast._tcp.local.",
            "Living Room TV._hap._tcp.local.",
            "Living Room TV",
            "é",
        ] {
            let mut p = tv();
            p.fullname = fullname.into();
            assert!(
                matches!(observation_of(&p), Err(MdnsDropped::NoInstance(_))),
                "{fullname:?}"
            );
        }

        let mut p = tv();
        p.addresses = vec![
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), None),
            (IpAddr::V4(Ipv4Addr::LOCALHOST), None),
            (IpAddr::V4(Ipv4Addr::BROADCAST), None),
            (IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)), None),
            (IpAddr::V6(Ipv6Addr::UNSPECIFIED), None),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), None),
            (IpAddr::V6("ff02::fb".parse().expect("v6")), None),
        ];
        assert!(matches!(observation_of(&p), Err(MdnsDropped::NoAddress(_))));
        p.addresses.clear();
        assert!(matches!(observation_of(&p), Err(MdnsDropped::NoAddress(_))));
    }

    #[test]
    fn instance_and_types_compare_without_case_and_keep_dots() {
        let mut p = tv();
        p.fullname = "Kitchen.Speaker._GoogleCast._TCP.local.".into();
        let o = observation_of(&p).expect("valid");
        assert!(o.evidence.mdns_names.contains("Kitchen.Speaker"));
        p.ty_domain = "_GoogleCast._tcp.local.".into();
        let o = observation_of(&p).expect("valid");
        assert_eq!(o.evidence.mdns_services, set(&["_googlecast._tcp"]));
    }

    #[test]
    fn addresses_are_sorted_deduplicated_capped_and_give_the_interface() {
        let mut p = tv();
        p.addresses = (0..40u8)
            .rev()
            .map(|i| (IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)), None))
            .chain([
                (IpAddr::V4(Ipv4Addr::new(10, 0, 1, 3)), Some("lan0".into())),
                (IpAddr::V6("fe80::1".parse().expect("v6")), Some("lan1".into())),
            ])
            .collect();
        let o = observation_of(&p).expect("valid");
        assert_eq!(o.addresses.len(), MAX_ADDRESSES);
        assert!(o.addresses.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(o.addresses[0], IpAddr::V4(Ipv4Addr::new(10, 0, 1, 0)));
        assert_eq!(o.interface.as_deref(), Some("lan0"));

        p.addresses = vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 9)), Some(String::new()))];
        assert_eq!(observation_of(&p).expect("valid").interface, None);
    }

    #[test]
    fn host_names_lose_the_domain_and_empty_ones_are_left_out() {
        for (host, want) in [
            ("tv.local.", Some("tv")),
            ("TV.LOCAL", Some("TV")),
            ("tv.example.", Some("tv.example")),
            ("tv", Some("tv")),
            (".local.", None),
            ("", None),
            (".", None),
        ] {
            let mut p = tv();
            p.host = host.into();
            let o = observation_of(&p).expect("valid");
            let mut names = set(&["Living Room TV"]);
            names.extend(want.map(str::to_string));
            assert_eq!(o.evidence.mdns_names, names, "{host:?}");
        }
    }

    #[test]
    fn txt_keys_are_lower_cased_first_wins_and_capped() {
        let mut p = tv();
        p.txt = vec![
            ("MD".into(), Some(b"first".to_vec())),
            ("md".into(), Some(b"second".to_vec())),
            ("".into(), Some(b"no key".to_vec())),
            ("flag".into(), None),
        ];
        p.txt.extend((0..100).map(|i| (format!("k{i}"), Some(vec![b'v']))));
        let o = observation_of(&p).expect("valid");
        assert_eq!(o.evidence.txt.len(), MAX_ITEMS);
        assert_eq!(o.evidence.txt.get("md").map(String::as_str), Some("first"));
        assert_eq!(o.evidence.txt.get("flag").map(String::as_str), Some(""));
        assert!(!o.evidence.txt.contains_key(""));
    }

    #[test]
    fn hostile_text_is_kept_as_bounded_data() {
        let hostile = "<script>alert(\"x\")</script>'\n\r\0\u{1b}[31m\u{202e}gpj.exe\u{7f}";
        let maximal = "x".repeat(255);
        let oversized = "é".repeat(300);
        let mut p = tv();
        p.fullname = format!("{hostile}._googlecast._tcp.local.");
        p.host = format!("{oversized}.local.");
        p.txt = vec![
            ("md".into(), Some(hostile.as_bytes().to_vec())),
            ("raw".into(), Some(vec![0xff, 0xfe, b'a', 0x00, 0xc3])),
            ("max".into(), Some(maximal.as_bytes().to_vec())),
            ("big".into(), Some(oversized.as_bytes().to_vec())),
            (maximal.clone(), Some(b"long key".to_vec())),
            ("KÉY\u{202e}".into(), Some(b"v".to_vec())),
        ];
        let o = observation_of(&p).expect("hostile text is still data");
        assert!(o.evidence.mdns_names.contains(hostile));
        let txt = &o.evidence.txt;
        assert_eq!(txt.get("md").map(String::as_str), Some(hostile));
        assert_eq!(txt.get("raw").map(String::as_str), Some("\u{fffd}\u{fffd}a\0\u{fffd}"));
        assert_eq!(txt.get("max").map(String::as_str), Some(maximal.as_str()));
        assert!(txt
            .get("big")
            .is_some_and(|v| v.len() <= MAX_TEXT && v.chars().all(|c| c == 'é')));
        assert_eq!(txt.get(maximal.as_str()).map(String::as_str), Some("long key"));
        assert_eq!(txt.get("kéy\u{202e}").map(String::as_str), Some("v"));
        let all_text = o.evidence.mdns_names.iter().chain(txt.keys()).chain(txt.values());
        assert!(all_text.clone().all(|s| s.len() <= MAX_TEXT));
        assert!(o
            .evidence
            .mdns_names
            .iter()
            .any(|n| n.len() <= MAX_TEXT && n.starts_with("éé")));
    }

    #[test]
    fn dropped_reasons_print_escaped() {
        let e = service_type_of("_x\n\u{202e}._tcp").expect_err("malformed");
        let shown = e.to_string();
        assert!(!shown.contains('\n') && !shown.contains('\u{202e}'), "{shown}");
        assert!(shown.contains("\\n") && shown.contains("\\u{202e}"), "{shown}");
    }

    #[test]
    fn parts_of_reads_mdns_sd_resolved_services() {
        let info = ServiceInfo::new(
            "_googlecast._tcp.local.",
            "Living Room TV",
            "livingroom-tv.local.",
            &[
                IpAddr::V4(Ipv4Addr::new(10, 0, 1, 30)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
            ][..],
            8009,
            &[("md", "Chromecast"), ("fn", "Living Room")][..],
        )
        .expect("service info");
        let parts = parts_of(&info.as_resolved_service());
        assert_eq!(parts.ty_domain, "_googlecast._tcp.local.");
        assert_eq!(parts.fullname, "Living Room TV._googlecast._tcp.local.");
        assert_eq!(parts.host, "livingroom-tv.local.");
        assert_eq!(
            parts.addresses,
            vec![
                (IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)), None),
                (IpAddr::V4(Ipv4Addr::new(10, 0, 1, 30)), None)
            ]
        );
        assert_eq!(parts.txt[0], ("md".to_string(), Some(b"Chromecast".to_vec())));
        let o = observation_of(&parts).expect("valid");
        assert_eq!(o.evidence.txt.get("md").map(String::as_str), Some("Chromecast"));
    }
}
