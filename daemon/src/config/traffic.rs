//! `[traffic]`: counting what each device sends and receives (see
//! `crate::traffic`). On by default: conntrack's per-connection accounting,
//! read over ctnetlink (its cost per packet is in BENCHMARKS.md).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::Reporter;

/// How often the connections are read by default.
pub const DEFAULT_SAMPLE_SECS: u32 = 10;
/// The longest interval: an unanswered UDP connection stays listed 30 s
/// after its last packet; read less often and its last counts are missed.
pub const MAX_SAMPLE_SECS: u32 = 30;

/// The raw `[traffic]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTraffic {
    enabled: Option<bool>,
    sample_secs: Option<Spanned<i64>>,
}

/// Traffic counting's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficConfig {
    /// Forwarded bytes and packets are counted per device (default true).
    pub enabled: bool,
    /// Seconds between two readings of the connections (1 to 30).
    pub sample_secs: u32,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            enabled: true,
            sample_secs: DEFAULT_SAMPLE_SECS,
        }
    }
}

/// Validates `[traffic]`; `None` after reporting errors.
pub(super) fn validate_traffic(raw: Option<&RawTraffic>, rep: &mut Reporter<'_>) -> Option<TrafficConfig> {
    let mut t = TrafficConfig::default();
    let Some(raw) = raw else { return Some(t) };
    if let Some(e) = raw.enabled {
        t.enabled = e;
    }
    if let Some(s) = &raw.sample_secs {
        match u32::try_from(*s.get_ref()) {
            Ok(v @ 1..=MAX_SAMPLE_SECS) => t.sample_secs = v,
            _ => {
                rep.at(
                    s.span(),
                    "traffic.sample_secs",
                    "seconds between readings, from 1 to 30 (connections that end stay listed 30 s)",
                );
                return None;
            }
        }
    }
    Some(t)
}
