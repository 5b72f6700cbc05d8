//! Fuzz entry: arbitrary bytes into the pure conversion and the browse state.
//! Used by `fuzz/fuzz_targets/mdns_evidence.rs`, and run over a fixed
//! pseudo-random corpus by a unit test, so no-panic is checked in CI too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mdns_sd::ServiceEvent;

use super::convert::{observation_of, service_type_of, ServiceParts, MAX_ADDRESSES};
use super::state::{BrowseState, FIXED_TYPES, META_QUERY};
use crate::classify::{MAX_ITEMS, MAX_TEXT};

/// Splits `data` into the parts of an mDNS answer and runs them through
/// [`observation_of`] and [`BrowseState`].
///
/// Layout: a flags byte, then fields, each a length byte and that many bytes
/// (the last may be short): type, instance, host, address bytes, interface,
/// then TXT key/value pairs. Flags pick a well-formed type or domain suffix now
/// and then, so the fuzzer gets past the first checks.
///
/// # Panics
///
/// When a conversion breaks one of its promises (bounded text, capped sets):
/// that is the finding.
pub fn fuzz_entry(data: &[u8]) {
    let Some((ty_raw, parts)) = split(data) else {
        return;
    };

    if let Ok(ty) = service_type_of(&ty_raw) {
        assert!(ty.len() <= ty_raw.len());
    }
    let mut state = BrowseState::new(4);
    let found = ServiceEvent::ServiceFound(META_QUERY.to_string(), ty_raw);
    let _ = state.on_event(META_QUERY, Some(found));
    assert!(state.counters().types_seen <= 4);

    if let Ok(o) = observation_of(&parts) {
        let e = &o.evidence;
        assert!(!o.addresses.is_empty() && o.addresses.len() <= MAX_ADDRESSES);
        assert!(o.addresses.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(e.mdns_services.len(), 1);
        assert!(!e.mdns_names.is_empty() && e.mdns_names.len() <= 2);
        assert!(e.txt.len() <= MAX_ITEMS);
        let texts = e
            .mdns_services
            .iter()
            .chain(&e.mdns_names)
            .chain(e.txt.keys())
            .chain(e.txt.values())
            .chain(&o.interface);
        for text in texts {
            assert!(text.len() <= MAX_TEXT, "{} bytes", text.len());
        }
        assert!(e.hostname.is_none() && e.client_id.is_none() && e.vendor_class.is_none());
    }
}

/// The raw type field and the answer parts made from `data`; `None` when empty.
fn split(data: &[u8]) -> Option<(String, ServiceParts)> {
    let (&flags, rest) = data.split_first()?;
    let mut fields = Fields(rest);
    let ty_raw = lossy(fields.next().unwrap_or_default());
    let instance = lossy(fields.next().unwrap_or_default());
    let host = lossy(fields.next().unwrap_or_default());
    let address_bytes = fields.next().unwrap_or_default();
    let interface = lossy(fields.next().unwrap_or_default());

    let ty_domain = if flags & 1 != 0 {
        let pick = ty_raw.len() % FIXED_TYPES.len();
        format!("{}.local.", FIXED_TYPES.get(pick).copied().unwrap_or("_hap._tcp"))
    } else {
        ty_raw.clone()
    };
    let fullname = if flags & 2 != 0 {
        format!("{instance}.{ty_domain}")
    } else {
        instance
    };
    let host = if flags & 4 != 0 { format!("{host}.local.") } else { host };
    let interface = (flags & 16 != 0).then_some(interface);
    let addresses = if flags & 8 != 0 {
        address_bytes
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .map(|b| (IpAddr::V6(Ipv6Addr::from(b)), interface.clone()))
            .collect()
    } else {
        address_bytes
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(|b| (IpAddr::V4(Ipv4Addr::from(b)), interface.clone()))
            .collect()
    };
    let mut txt = Vec::new();
    while let Some(key) = fields.next() {
        let value = fields.next().unwrap_or_default();
        let value = (flags & 32 == 0 || !value.is_empty()).then(|| value.to_vec());
        txt.push((lossy(key), value));
    }
    let parts = ServiceParts {
        ty_domain,
        fullname,
        host,
        addresses,
        txt,
    };
    Some((ty_raw, parts))
}

/// Length-prefixed fields; the last one may be cut short by the end of data.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, rest) = self.0.split_first()?;
        let len = usize::from(len).min(rest.len());
        let (field, rest) = rest.split_at(len);
        self.0 = rest;
        Some(field)
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that make parsers stumble: NUL, invalid UTF-8, the parts of
    /// `.local.`, `_`, `=`, `<`, newline, U+202E (e2 80 ae), 0xff.
    const SPICE: &[u8] = b"\0\xff\xfe\xc3\xe2\x80\xae._=<>\"'\n\r\x1blocal_tcp_udp";

    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn fuzz_entry_survives_a_pseudo_random_corpus() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut input = Vec::new();
        for _ in 0..20_000 {
            input.clear();
            let len = (rng.next_u64() % 700) as usize;
            for _ in 0..len {
                let r = rng.next_u64();
                let byte = match r % 8 {
                    0 | 1 => SPICE[(r >> 8) as usize % SPICE.len()],
                    // Short lengths, so that many fields fit.
                    2 => (r >> 8) as u8 % 24,
                    _ => (r >> 8) as u8,
                };
                input.push(byte);
            }
            fuzz_entry(&input);
        }
    }

    #[test]
    fn fuzz_entry_reaches_an_observation() {
        // flags: fixed type, instance + type, host + .local., IPv4, interface.
        let mut input = vec![1 | 2 | 4 | 16];
        for field in [
            &b"x"[..],
            b"Living Room TV",
            b"tv",
            &[10, 0, 1, 30],
            b"lan0",
            b"md",
            b"Chromecast",
        ] {
            input.push(field.len() as u8);
            input.extend_from_slice(field);
        }
        let (ty_raw, parts) = split(&input).expect("non-empty");
        assert_eq!(ty_raw, "x");
        let o = observation_of(&parts).expect("a well-formed answer");
        assert_eq!(o.interface.as_deref(), Some("lan0"));
        assert!(o.evidence.mdns_names.contains("Living Room TV"));
        assert_eq!(o.evidence.txt.get("md").map(String::as_str), Some("Chromecast"));
        fuzz_entry(&input);
        fuzz_entry(&[]);
        fuzz_entry(&[0xff]);
        fuzz_entry(&[0xff, 0xff]);
    }
}
