//! The tunnel's domain sets: addresses put there (by `bulkhead vpn domain-add`
//! now, by Bulkhead's DNS resolver from its answers later) are routed through the
//! tunnel until they expire. The daemon is the source of truth: it adds them back
//! after every full table replace and deletes them when they expire.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::DaemonState;
use crate::config::DomainSetId;
use crate::control::Response;
use crate::firewall::{error_chain, render};
use crate::inventory::UnixTime;

/// At most this many addresses across all domain sets (a resolver flooded with
/// answers must not grow the sets without bound).
pub const MAX_DOMAIN_ADDRESSES: usize = 16_384;

fn set_of(set: &DomainSetId, ip: &IpAddr) -> String {
    render::domain_set_name(set, ip.is_ipv6())
}

impl DaemonState {
    /// Puts `addresses` in domain set `set` for `ttl_secs`.
    pub fn add_domain_addresses(
        &mut self,
        set: &DomainSetId,
        addresses: &[IpAddr],
        ttl_secs: u32,
        now: UnixTime,
    ) -> Response {
        let selected = self
            .applied
            .as_ref()
            .and_then(|a| a.ruleset.tunnel.as_ref())
            .is_some_and(|t| t.domain_sets.contains(set));
        if !selected {
            return Response::Error {
                message: format!("`{set}` is not a domain set of the tunnel policy (tunnel.domain_sets)"),
            };
        }
        if ttl_secs == 0 {
            return Response::Error {
                message: "ttl_secs must be at least 1".into(),
            };
        }
        let fresh: Vec<IpAddr> = addresses
            .iter()
            .filter(|ip| !self.domains.contains_key(&(set.clone(), **ip)))
            .copied()
            .collect();
        if self.domains.len() + fresh.len() > MAX_DOMAIN_ADDRESSES {
            return Response::Error {
                message: format!("domain sets are full ({MAX_DOMAIN_ADDRESSES} addresses)"),
            };
        }
        let mut elements: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ip in &fresh {
            elements.entry(set_of(set, ip)).or_default().push(ip.to_string());
        }
        if let Err(e) = self.nft.apply(&render::domain_elements_document(true, &elements)) {
            return Response::Error {
                message: format!("nft refused the domain set change: {}", error_chain(&e)),
            };
        }
        let expires = now.saturating_add(i64::from(ttl_secs));
        for ip in addresses {
            let e = self.domains.entry((set.clone(), *ip)).or_insert(expires);
            *e = (*e).max(expires);
        }
        Response::Done {
            message: format!(
                "{} address(es) in domain set {set} for {ttl_secs} s ({} new)",
                addresses.len(),
                fresh.len()
            ),
        }
    }

    /// Deletes expired addresses from the kernel and from memory.
    pub(super) fn expire_domains(&mut self, now: UnixTime) {
        let expired: Vec<(DomainSetId, IpAddr)> = self
            .domains
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut elements: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (set, ip) in &expired {
            elements.entry(set_of(set, ip)).or_default().push(ip.to_string());
        }
        if let Err(e) = self.nft.apply(&render::domain_elements_document(false, &elements)) {
            // Someone removed them already (or the set is gone): a full replace
            // re-creates the sets from what remains.
            tracing::warn!(error = %error_chain(&e), "could not delete expired domain set addresses");
        }
        for k in expired {
            self.domains.remove(&k);
        }
    }

    /// After a full replace: the sets are empty again; put back what is held.
    pub(super) fn reapply_domains(&mut self) {
        let sets = self
            .applied
            .as_ref()
            .and_then(|a| a.ruleset.tunnel.as_ref())
            .map(|t| t.domain_sets.clone())
            .unwrap_or_default();
        // Sets no longer in the policy lose their addresses.
        self.domains.retain(|(set, _), _| sets.contains(set));
        let mut elements: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (set, ip) in self.domains.keys() {
            elements.entry(set_of(set, ip)).or_default().push(ip.to_string());
        }
        if elements.is_empty() {
            return;
        }
        if let Err(e) = self.nft.apply(&render::domain_elements_document(true, &elements)) {
            let msg = format!(
                "could not restore the domain sets after a table replace: {}",
                error_chain(&e)
            );
            tracing::error!("{msg}");
            self.apply_failed(&msg);
        }
    }
}
