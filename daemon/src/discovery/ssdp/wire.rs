//! PURE: SSDP messages (HTTP over UDP, 239.255.255.250:1900) parsed
//! defensively: a bounded datagram, bounded printable header values, only
//! the three message kinds SSDP has. Used by discovery (a device's `SERVER`
//! and description as evidence) and the share proxy.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// SSDP's port.
pub const SSDP_PORT: u16 = 1900;
/// SSDP's IPv4 group.
pub const SSDP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
/// A datagram longer than this is not SSDP.
const MAX_MESSAGE: usize = 4096;
/// A header value longer than this is cut (SERVER, USN…).
const MAX_VALUE: usize = 256;
/// Lifetime when CACHE-CONTROL says nothing usable, and the most we believe.
const DEFAULT_MAX_AGE: u32 = 1800;
const MAX_MAX_AGE: u32 = 86_400;

/// One SSDP message, parsed (every text bounded, printable ASCII only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `M-SEARCH * HTTP/1.1` with `MAN: "ssdp:discover"`.
    Search {
        /// The search target (ST), lower-case.
        target: String,
    },
    /// `NOTIFY * HTTP/1.1` (ssdp:alive or ssdp:byebye).
    Notify {
        /// Alive (false: byebye).
        alive: bool,
        /// The announcement.
        announcement: Announcement,
    },
    /// `HTTP/1.1 200 OK`: an answer to a search.
    Response(Announcement),
}

/// What a device says about one of its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// NT (notify) or ST (response), as sent (control points compare it
    /// exactly); matched without regard to case.
    pub target: String,
    /// USN, as sent.
    pub usn: String,
    /// LOCATION, as sent (absent in a byebye).
    pub location: Option<String>,
    /// SERVER, as sent.
    pub server: Option<String>,
    /// CACHE-CONTROL max-age.
    pub max_age: u32,
}

/// A header value kept only if printable ASCII, cut at [`MAX_VALUE`].
fn value(v: &str) -> Option<String> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    Some(v.chars().take(MAX_VALUE).collect())
}

/// Parses one datagram; `None` for anything that is not SSDP.
pub fn parse(bytes: &[u8]) -> Option<Message> {
    if bytes.len() > MAX_MESSAGE {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    let start = lines.next()?.trim();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for line in lines.take(32) {
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        if let Some(v) = value(v) {
            headers.entry(k.trim().to_ascii_lowercase()).or_insert(v);
        } else if v.trim().is_empty() {
            headers.entry(k.trim().to_ascii_lowercase()).or_default();
        }
    }
    let get = |k: &str| headers.get(k).filter(|v| !v.is_empty()).cloned();
    let max_age = get("cache-control")
        .and_then(|c| {
            c.split(',')
                .filter_map(|p| {
                    p.trim()
                        .to_ascii_lowercase()
                        .strip_prefix("max-age")
                        .map(str::to_string)
                })
                .find_map(|rest| rest.trim_start_matches([' ', '=']).parse::<u32>().ok())
        })
        .unwrap_or(DEFAULT_MAX_AGE)
        .clamp(1, MAX_MAX_AGE);
    let announcement = |target: Option<String>| -> Option<Announcement> {
        Some(Announcement {
            target: target?,
            usn: get("usn")?,
            location: get("location"),
            server: get("server"),
            max_age,
        })
    };
    match start {
        "M-SEARCH * HTTP/1.1" => {
            if get("man").map(|m| m.trim_matches('"').to_ascii_lowercase()) != Some("ssdp:discover".into()) {
                return None;
            }
            Some(Message::Search {
                target: get("st")?.to_ascii_lowercase(),
            })
        }
        "NOTIFY * HTTP/1.1" => {
            let alive = match get("nts")?.to_ascii_lowercase().as_str() {
                "ssdp:alive" => true,
                "ssdp:byebye" => false,
                _ => return None,
            };
            Some(Message::Notify {
                alive,
                announcement: announcement(get("nt"))?,
            })
        }
        s if s.starts_with("HTTP/1.1 200") => Some(Message::Response(announcement(get("st"))?)),
        _ => None,
    }
}

/// The host and port of an `http://HOST:PORT/…` LOCATION (IPv4 literal host
/// only: a name would have to be resolved, and could name anyone).
pub fn location_endpoint(location: &str) -> Option<(IpAddr, u16)> {
    let rest = location.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (authority, 80),
    };
    let ip: Ipv4Addr = host.parse().ok()?;
    (port != 0).then_some((IpAddr::V4(ip), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_searches_notifies_and_responses() {
        let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 3\r\nST: ssdp:all\r\n\r\n";
        assert_eq!(
            parse(search),
            Some(Message::Search {
                target: "ssdp:all".into()
            })
        );
        let notify = b"NOTIFY * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nCache-Control: max-age=1800\r\nLocation: http://10.0.2.30:8008/ssdp/device-desc.xml\r\nNT: urn:dial-multiscreen-org:service:dial:1\r\nNTS: ssdp:alive\r\nServer: Linux/3.8.13 UPnP/1.0 quick_ssdp/1.0\r\nUSN: uuid:abc::urn:dial-multiscreen-org:service:dial:1\r\n\r\n";
        let Some(Message::Notify { alive, announcement }) = parse(notify) else {
            panic!("notify")
        };
        assert!(alive);
        assert_eq!(announcement.max_age, 1800);
        assert_eq!(announcement.target, "urn:dial-multiscreen-org:service:dial:1");
        let upper = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:MediaServer:1\r\nUSN: u\r\nLOCATION: http://10.0.2.30/\r\n\r\n";
        let Some(Message::Response(a)) = parse(upper) else {
            panic!("response")
        };
        assert_eq!(a.target, "urn:schemas-upnp-org:device:MediaServer:1", "kept as sent");
        assert_eq!(
            location_endpoint(announcement.location.as_deref().unwrap_or_default()),
            Some((IpAddr::from([10, 0, 2, 30]), 8008))
        );
        let response = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age = 60\r\nEXT:\r\nLOCATION: http://10.0.2.30:8200/rootDesc.xml\r\nST: urn:schemas-upnp-org:device:MediaServer:1\r\nUSN: uuid:4d696e69::urn:schemas-upnp-org:device:MediaServer:1\r\n\r\n";
        let Some(Message::Response(a)) = parse(response) else {
            panic!("response")
        };
        assert_eq!(a.max_age, 60);
    }

    #[test]
    fn hostile_messages_are_refused() {
        for bad in [
            &b""[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n",
            b"NOTIFY * HTTP/1.1\r\nNTS: ssdp:alive\r\n\r\n",
            &[0xff; 64],
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let long = format!(
            "NOTIFY * HTTP/1.1\r\nNT: x\r\nNTS: ssdp:alive\r\nUSN: {}\r\n\r\n",
            "u".repeat(5000)
        );
        assert_eq!(parse(long.as_bytes()), None);
        // A control character in a value drops the value.
        let ctl = b"HTTP/1.1 200 OK\r\nST: a\r\nUSN: u\x1b[31m\r\n\r\n";
        assert_eq!(parse(ctl), None);
        for loc in [
            "http://evil.example/x",
            "http://10.0.1.10@10.0.2.30/",
            "https://10.0.2.30/",
            "http://10.0.2.30:0/",
            "http://[fd00::1]:80/",
        ] {
            assert_eq!(location_endpoint(loc), None, "{loc}");
        }
        assert_eq!(
            location_endpoint("http://10.0.2.30/d.xml"),
            Some((IpAddr::from([10, 0, 2, 30]), 80))
        );
    }
}
