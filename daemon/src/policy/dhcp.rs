//! PURE: what Bulkhead's DHCP server serves, from the config: one
//! [`SegmentConfig`] per segment whose `dhcp` is `serve` and that has a pool;
//! and where observer mode listens beside another server.

use std::collections::BTreeSet;

use crate::config::{Config, DhcpMode};
use crate::discovery::dhcp::SegmentConfig;

/// The server's view of the segments it serves.
pub fn dhcp_segments(config: &Config) -> Vec<SegmentConfig> {
    config
        .segments
        .iter()
        .filter(|s| s.dhcp == DhcpMode::Serve)
        .filter_map(|s| {
            let pool = s.dhcp_pool?;
            Some(SegmentConfig {
                id: s.id.clone(),
                interface: s.interface.clone(),
                server_ip: s.ipv4.addr(),
                subnet: s.ipv4.trunc(),
                pool,
                lease_secs: config.dhcp.lease_secs,
                domain: config.dhcp.domain.clone(),
                dns: vec![s.ipv4.addr()],
                static_leases: config
                    .policy
                    .devices
                    .iter()
                    .filter_map(|(mac, o)| o.ip.filter(|ip| s.ipv4.contains(ip)).map(|ip| (*mac, ip)))
                    .collect(),
            })
        })
        .collect()
}

/// Interfaces of observing segments.
pub fn observing_interfaces(config: &Config) -> BTreeSet<String> {
    config
        .segments
        .iter()
        .filter(|s| s.dhcp == DhcpMode::Observe)
        .map(|s| s.interface.clone())
        .collect()
}
