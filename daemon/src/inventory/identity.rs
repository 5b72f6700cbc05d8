//! PURE: "is this new randomised MAC the same device as that known one?"
//!
//! Phones and laptops now pick a fresh, locally administered MAC per network (and
//! sometimes per day). A new MAC whose DHCP hostname, parameter-request list
//! (fingerprint) and client identifier all equal a known device's is very likely
//! that device. Bulkhead only SUGGESTS the link: the homeowner accepts it, because
//! applying it silently would hand the known device's access to anyone who copies
//! three public values.

use crate::classify::Evidence;
use crate::config::MacAddr;
use crate::inventory::Device;

/// Why `new` looks like `known`, or None when it does not (all of hostname,
/// fingerprint and client identifier must agree; see [`client_id_is_mac_derived`]).
pub fn same_device_reasons(new: &Device, known: &Device) -> Option<Vec<String>> {
    if new.mac == known.mac || !new.mac.is_locally_administered() {
        return None;
    }
    let (n, k) = (&new.evidence, &known.evidence);
    let mut reasons = Vec::new();
    match (&n.hostname, &k.hostname) {
        (Some(a), Some(b)) if !a.is_empty() && a == b => reasons.push(format!("same DHCP hostname {a:?}")),
        _ => return None,
    }
    match (&n.dhcp_params, &k.dhcp_params) {
        (Some(a), Some(b)) if !a.is_empty() && a == b => reasons.push("same DHCP fingerprint (option 55)".to_string()),
        _ => return None,
    }
    match (client_id(n, new.mac), client_id(k, known.mac)) {
        (Some(a), Some(b)) if a == b => reasons.push("same DHCP client identifier".to_string()),
        // Both derived from their own MACs (type 1 + MAC): necessarily different,
        // and saying nothing about identity.
        (None, None) => {}
        _ => return None,
    }
    Some(reasons)
}

/// The client identifier, unless it is just "hardware type 1 + this MAC" (what
/// most clients send), which carries no identity beyond the MAC itself.
fn client_id(e: &Evidence, mac: MacAddr) -> Option<&str> {
    e.client_id.as_deref().filter(|id| !client_id_is_mac_derived(id, mac))
}

/// True when a hex client identifier is `01` followed by the MAC.
pub fn client_id_is_mac_derived(hex: &str, mac: MacAddr) -> bool {
    let derived: String = std::iter::once("01".to_string())
        .chain(mac.0.iter().map(|b| format!("{b:02x}")))
        .collect();
    hex.eq_ignore_ascii_case(&derived)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(mac: [u8; 6], host: &str, params: &[u8], id: Option<&str>) -> Device {
        let mut d = Device::new(MacAddr(mac), 0);
        d.evidence = Evidence {
            hostname: Some(host.into()),
            dhcp_params: Some(params.to_vec()),
            client_id: id.map(str::to_string),
            ..Default::default()
        };
        d
    }

    const KNOWN: [u8; 6] = [0x3c, 0x22, 0xfb, 1, 2, 3];
    const NEW: [u8; 6] = [0x5a, 0x11, 0x22, 0x33, 0x44, 0x55];

    #[test]
    fn all_three_signals_make_a_suggestion() {
        let known = dev(KNOWN, "Annas-iPhone", &[1, 121, 3, 6, 15, 119, 252], Some("ff00aa"));
        let new = dev(NEW, "Annas-iPhone", &[1, 121, 3, 6, 15, 119, 252], Some("ff00aa"));
        let r = same_device_reasons(&new, &known).expect("suggested");
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn mac_derived_client_ids_are_ignored_not_compared() {
        let known = dev(KNOWN, "laptop", &[1, 3, 6], Some("013c22fb010203"));
        let new = dev(NEW, "laptop", &[1, 3, 6], Some("015a1122334455"));
        assert_eq!(same_device_reasons(&new, &known).map(|r| r.len()), Some(2));
    }

    #[test]
    fn any_difference_means_no_suggestion() {
        let known = dev(KNOWN, "laptop", &[1, 3, 6], Some("aa"));
        assert!(same_device_reasons(&dev(NEW, "laptop2", &[1, 3, 6], Some("aa")), &known).is_none());
        assert!(same_device_reasons(&dev(NEW, "laptop", &[1, 3], Some("aa")), &known).is_none());
        assert!(same_device_reasons(&dev(NEW, "laptop", &[1, 3, 6], Some("bb")), &known).is_none());
        assert!(same_device_reasons(&dev(NEW, "laptop", &[1, 3, 6], None), &known).is_none());
        // A globally unique (vendor) MAC is not randomised: no suggestion.
        let mut g = dev(NEW, "laptop", &[1, 3, 6], Some("aa"));
        g.mac = MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert!(same_device_reasons(&g, &known).is_none());
        // Empty hostnames prove nothing.
        let k2 = dev(KNOWN, "", &[1, 3, 6], None);
        assert!(same_device_reasons(&dev(NEW, "", &[1, 3, 6], None), &k2).is_none());
    }
}
