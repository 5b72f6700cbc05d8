//! `bulkhead.toml` + `policies/*.toml` -> a validated, typed [`Config`].
//!
//! Errors name file, line, column and field; all of them are reported at once.

mod class_rules;
mod detect;
mod dns;
mod error;
mod fuzz;
mod load;
mod notify;
mod share;
mod traffic;
mod tunnel;
mod types;
pub mod uci;

pub use detect::{DetectConfig, DEFAULT_NFLOG_GROUP, DEFAULT_SAMPLES_PER_SECOND};
pub use dns::{
    parse_bootstrap, parse_upstream, BlockAnswer, BlocklistSource, BypassMode, DnsConfig, Upstream, UpstreamProtocol,
    ZoneDns, DEFAULT_CA_FILE, MAX_BLOCKLISTS,
};
pub(crate) use error::write_lines;
pub use error::{ConfigError, ConfigErrors};
pub use fuzz::fuzz_entry_config;
pub use load::{load, load_from_texts, parse_ip, DEFAULT_CONFIG_PATH};
pub use notify::{ChannelFilter, HttpChannel, MqttChannel, NotifyConfig, QuietHours, DEFAULT_PER_HOUR};
pub use share::{
    parse_port_range, parse_ssdp_target, PortRange, ServiceType, SharePreset, ShareRule, Transport,
    MAX_PORTS_PER_RANGE, MAX_SHARES,
};
pub use traffic::{TrafficConfig, DEFAULT_SAMPLE_SECS};
pub use tunnel::{
    parse_endpoint, parse_network, DEFAULT_INTERFACE as DEFAULT_TUNNEL_INTERFACE, DEFAULT_MTU as DEFAULT_TUNNEL_MTU,
};
pub use types::*;

/// The default policy files (`policies/*.toml`), as (file name, text):
/// `bulkhead init` writes them, the demo uses them.
pub const SHIPPED_POLICIES: [(&str, &str); 5] = [
    ("zones.toml", include_str!("../../../policies/zones.toml")),
    ("devices.toml", include_str!("../../../policies/devices.toml")),
    ("classes.toml", include_str!("../../../policies/classes.toml")),
    ("doh-servers.toml", include_str!("../../../policies/doh-servers.toml")),
    ("shares.toml", include_str!("../../../policies/shares.toml")),
];

/// The control socket when the configuration cannot say (it does not load):
/// the default of `bulkhead.toml` (`/run`) or of OpenWrt's UCI file
/// (`/var/run`), whichever exists.
pub fn fallback_control_socket() -> std::path::PathBuf {
    let candidates = ["/run/bulkhead/control.sock", "/var/run/bulkhead/control.sock"];
    let found = candidates.iter().find(|p| std::path::Path::new(p).exists());
    std::path::PathBuf::from(found.copied().unwrap_or(candidates[0]))
}

#[cfg(test)]
mod tests;
