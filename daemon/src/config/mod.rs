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
mod tunnel;
mod types;

pub use detect::{DetectConfig, DEFAULT_NFLOG_GROUP, DEFAULT_SAMPLES_PER_SECOND};
pub use dns::{
    parse_upstream, BlockAnswer, BlocklistSource, BypassMode, DnsConfig, Upstream, UpstreamProtocol, ZoneDns,
    DEFAULT_CA_FILE, MAX_BLOCKLISTS,
};
pub(crate) use error::write_lines;
pub use error::{ConfigError, ConfigErrors};
pub use fuzz::fuzz_entry_config;
pub use load::{load, load_from_texts, parse_ip, DEFAULT_CONFIG_PATH};
pub use notify::{ChannelFilter, HttpChannel, MqttChannel, NotifyConfig, QuietHours, DEFAULT_PER_HOUR};
pub use tunnel::{
    parse_endpoint, parse_network, DEFAULT_INTERFACE as DEFAULT_TUNNEL_INTERFACE, DEFAULT_MTU as DEFAULT_TUNNEL_MTU,
};
pub use types::*;

#[cfg(test)]
mod tests;
