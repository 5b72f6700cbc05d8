//! Devices that tried to go around the resolver: the DNS guards' rules put
//! the sender's MAC in the kernel's dynamic set `dns_bypass` (see
//! `firewall/render/dns.rs`); every tick the runtime reads it and raises one
//! `dns-bypass` alert per device per day, however many packets it sent.

use std::collections::HashMap;

use nftables::expr::Expression;
use nftables::schema::{NfListObject, NfObject, Nftables};

use crate::alerts::{Alert, AlertKind};
use crate::config::{BypassMode, MacAddr};
use crate::core::{DaemonState, ServiceRequest};
use crate::firewall::render::dns::BYPASS_SET;
use crate::firewall::{error_chain, TABLE};
use crate::inventory::UnixTime;

/// One alert per device in this many seconds.
const ALERT_EVERY_SECS: UnixTime = 24 * 3600;

/// What the runtime keeps between ticks.
#[derive(Default)]
pub struct BypassWatch {
    alerted: HashMap<MacAddr, UnixTime>,
}

impl BypassWatch {
    /// Reads the set and alerts for devices not alerted today.
    pub fn check(&mut self, state: &mut DaemonState, now: UnixTime) {
        if !state.config.dns.enabled || state.config.dns.bypass == BypassMode::Off {
            return;
        }
        let doc = match nftables::helper::get_current_ruleset_with_args(
            None::<&str>,
            ["list", "set", "inet", TABLE, BYPASS_SET],
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "reading the dns_bypass set");
                return;
            }
        };
        self.alerted.retain(|_, at| now - *at < ALERT_EVERY_SECS);
        for mac in senders(&doc) {
            if self.alerted.contains_key(&mac) {
                continue;
            }
            self.alerted.insert(mac, now);
            let alert = Alert::about(now, AlertKind::DnsBypass, mac, Default::default());
            if let Err(e) = state.service_request(ServiceRequest::Alert(alert), now) {
                tracing::warn!(error = %error_chain(&e), "dns-bypass alert");
            }
        }
    }
}

/// The MACs in a listed `dns_bypass` set.
pub fn senders(doc: &Nftables<'_>) -> Vec<MacAddr> {
    let mut out = Vec::new();
    for o in doc.objects.iter() {
        let NfObject::ListObject(NfListObject::Set(set)) = o else {
            continue;
        };
        if set.name != BYPASS_SET {
            continue;
        }
        for e in set.elem.iter().flat_map(|e| e.iter()) {
            // Dynamic elements with a timeout are listed as {"elem": {"val": …, "expires": …}}.
            let value = match e {
                Expression::String(s) => Some(s.to_string()),
                Expression::Named(nftables::expr::NamedExpression::Elem(el)) => match &*el.val {
                    Expression::String(s) => Some(s.to_string()),
                    _ => None,
                },
                _ => None,
            };
            if let Some(mac) = value.and_then(|v| v.parse::<MacAddr>().ok()) {
                out.push(mac);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_read_from_a_listed_dynamic_set() {
        // As `nft -j list set inet bulkhead dns_bypass` prints it.
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},
            {"set":{"family":"inet","name":"dns_bypass","table":"bulkhead","type":"ether_addr","handle":9,"size":1024,
            "flags":["timeout","dynamic"],"timeout":3600,
            "elem":[{"elem":{"val":"02:00:00:00:00:0a","timeout":3600,"expires":3599}},"02:00:00:00:00:0b"]}}]}"#;
        let doc: Nftables<'static> = serde_json::from_str(json).expect("parses");
        assert_eq!(
            senders(&doc),
            vec![MacAddr([2, 0, 0, 0, 0, 10]), MacAddr([2, 0, 0, 0, 0, 11])]
        );
        let other = json.replace("\"dns_bypass\"", "\"other\"");
        let doc: Nftables<'static> = serde_json::from_str(&other).expect("parses");
        assert!(senders(&doc).is_empty());
    }
}
