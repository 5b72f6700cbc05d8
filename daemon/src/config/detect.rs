//! `[detect]`: sampling what the firewall refuses, to notice devices that
//! probe the home (see `crate::detect`). Which zones are watched is each
//! zone's `detect` (default on; the shipped `trusted` zone turns it off).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::Reporter;

/// The NFLOG group the sampling rules log to by default: far from the groups
/// ulogd and logging examples use (0, 1, 2…).
pub const DEFAULT_NFLOG_GROUP: u16 = 4242;
/// Refused packets sampled per device per second by default (twice that in a
/// burst): enough to see a scan's spread, little enough that a flood costs
/// the router nothing.
pub const DEFAULT_SAMPLES_PER_SECOND: u32 = 20;

/// The raw `[detect]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetect {
    enabled: Option<bool>,
    nflog_group: Option<Spanned<i64>>,
    samples_per_second: Option<Spanned<i64>>,
}

/// Detection's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectConfig {
    /// Refusals are sampled and watched (default true).
    pub enabled: bool,
    /// The NFLOG group the sampling rules log to.
    pub nflog_group: u16,
    /// Refused packets sampled per device per second (twice that in a burst).
    pub samples_per_second: u32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            nflog_group: DEFAULT_NFLOG_GROUP,
            samples_per_second: DEFAULT_SAMPLES_PER_SECOND,
        }
    }
}

/// Validates `[detect]`; `None` after reporting errors.
pub(super) fn validate_detect(raw: Option<&RawDetect>, rep: &mut Reporter<'_>) -> Option<DetectConfig> {
    let mut d = DetectConfig::default();
    let Some(raw) = raw else { return Some(d) };
    let mut ok = true;
    if let Some(e) = raw.enabled {
        d.enabled = e;
    }
    if let Some(g) = &raw.nflog_group {
        match u16::try_from(*g.get_ref()) {
            Ok(v) => d.nflog_group = v,
            Err(_) => {
                rep.at(
                    g.span(),
                    "detect.nflog_group",
                    "an NFLOG group is a number from 0 to 65535",
                );
                ok = false;
            }
        }
    }
    if let Some(s) = &raw.samples_per_second {
        match u32::try_from(*s.get_ref()) {
            Ok(v @ 1..=1000) => d.samples_per_second = v,
            _ => {
                rep.at(
                    s.span(),
                    "detect.samples_per_second",
                    "samples per device per second must be from 1 to 1000",
                );
                ok = false;
            }
        }
    }
    ok.then_some(d)
}
