//! What a device told us about itself, kept as data.
//!
//! Every field is untrusted text or bytes from the network. It is stored and shown
//! as data (escaped by whoever displays it), never put into a shell, a file format
//! or nft text. Sources bound every field's length before it gets here
//! ([`bounded`]), so one chatty device cannot grow the store without limit.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Longest text kept from one field (DHCP options carry at most 255 bytes; mDNS
/// names at most 255; TXT values are cut here).
pub const MAX_TEXT: usize = 255;
/// Most mDNS service types / names / TXT keys kept per device.
pub const MAX_ITEMS: usize = 32;

/// Evidence about one device, merged from DHCP, mDNS and the MAC itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// DHCP option 12 (host name), as sent.
    pub hostname: Option<String>,
    /// DHCP option 61 (client identifier), hex.
    pub client_id: Option<String>,
    /// DHCP option 55 (parameter request list), in the order sent: the fingerprint.
    pub dhcp_params: Option<Vec<u8>>,
    /// DHCP option 60 (vendor class identifier).
    pub vendor_class: Option<String>,
    /// mDNS service types the device announces, e.g. `_googlecast._tcp`.
    pub mdns_services: BTreeSet<String>,
    /// mDNS instance names and host names it announces.
    pub mdns_names: BTreeSet<String>,
    /// mDNS TXT keys and values (`md`, `model`, `manufacturer`, …), lower-case keys.
    pub txt: BTreeMap<String, String>,
    /// What it says over SSDP/UPnP: [`UPNP_FIELDS`] (`server` from its SSDP
    /// messages, the rest from its device description).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub upnp: BTreeMap<String, String>,
}

/// The UPnP facts kept: the SSDP `SERVER` header, and the device
/// description's `manufacturer`, `model` (modelName), `model_number`,
/// `device_type` and `friendly_name`.
pub const UPNP_FIELDS: [&str; 6] = [
    "server",
    "manufacturer",
    "model",
    "model_number",
    "device_type",
    "friendly_name",
];

impl Evidence {
    /// Merges newer evidence in: new values replace old ones, sets grow (bounded).
    /// Returns whether anything changed.
    pub fn merge(&mut self, newer: &Evidence) -> bool {
        let before = self.clone();
        if newer.hostname.is_some() {
            self.hostname.clone_from(&newer.hostname);
        }
        if newer.client_id.is_some() {
            self.client_id.clone_from(&newer.client_id);
        }
        if newer.dhcp_params.is_some() {
            self.dhcp_params.clone_from(&newer.dhcp_params);
        }
        if newer.vendor_class.is_some() {
            self.vendor_class.clone_from(&newer.vendor_class);
        }
        for s in &newer.mdns_services {
            if self.mdns_services.len() < MAX_ITEMS || self.mdns_services.contains(s) {
                self.mdns_services.insert(s.clone());
            }
        }
        for s in &newer.mdns_names {
            if self.mdns_names.len() < MAX_ITEMS || self.mdns_names.contains(s) {
                self.mdns_names.insert(s.clone());
            }
        }
        for (k, v) in &newer.txt {
            if self.txt.len() < MAX_ITEMS || self.txt.contains_key(k) {
                self.txt.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in newer.upnp.iter().filter(|(k, _)| UPNP_FIELDS.contains(&k.as_str())) {
            self.upnp.insert(k.clone(), v.clone());
        }
        *self != before
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == Evidence::default()
    }
}

/// Untrusted bytes as bounded text: invalid UTF-8 replaced, cut to [`MAX_TEXT`]
/// bytes on a character boundary. Control and bidi characters are KEPT (they are
/// evidence too); displays must escape them.
pub fn bounded(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_a_char_boundary_and_keeps_hostile_text_as_data() {
        let long = "é".repeat(300);
        let b = bounded(long.as_bytes());
        assert!(b.len() <= MAX_TEXT);
        assert!(b.chars().all(|c| c == 'é'));
        assert_eq!(bounded(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(bounded("x\u{202e}<script>\n".as_bytes()), "x\u{202e}<script>\n");
    }

    #[test]
    fn merge_replaces_scalars_and_bounds_sets() {
        let mut e = Evidence {
            hostname: Some("old".into()),
            ..Default::default()
        };
        let mut n = Evidence {
            hostname: Some("new".into()),
            ..Default::default()
        };
        for i in 0..100 {
            n.mdns_services.insert(format!("_s{i}._tcp"));
        }
        assert!(e.merge(&n));
        assert_eq!(e.hostname.as_deref(), Some("new"));
        assert_eq!(e.mdns_services.len(), MAX_ITEMS);
        assert!(!e.merge(&n), "merging the same evidence twice changes nothing");
    }
}
