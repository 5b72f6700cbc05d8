//! The homeowner's shares (`bulkhead share on`, the web UI's zones page):
//! a preset from one zone to another, kept in the store's settings beside
//! the policy files' `[[share]]` rules, merged into the config in force.
//! What a share does is the share proxy's (`crate::share`); the core only
//! keeps the list and re-enforces (the pinhole sets are structure: a new
//! consuming zone is a full replace).

use serde::{Deserialize, Serialize};

use super::DaemonState;
use crate::config::{ShareRule, ZoneId};
use crate::control::{Response, ShareInfo, SharePresetInfo, SharingInfo};
use crate::firewall::error_chain;

/// The settings key of the homeowner's shares (a JSON list).
pub const HOMEOWNER_SHARES: &str = "homeowner_shares";

/// At most this many homeowner shares.
const MAX_HOMEOWNER_SHARES: usize = 32;

/// One homeowner share, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    preset: String,
    from: String,
    to: String,
}

impl DaemonState {
    /// The stored homeowner shares (an unreadable list is logged and empty:
    /// sharing less is the safe side).
    fn stored_text(&self) -> Option<String> {
        self.store.setting(HOMEOWNER_SHARES).unwrap_or_else(|e| {
            tracing::warn!(error = %error_chain(&e), "the stored shares cannot be read; none are in force");
            None
        })
    }

    /// The list a stored text holds (unreadable: empty, logged).
    fn parse_stored(text: Option<&str>) -> Vec<Stored> {
        text.map_or_else(Vec::new, |t| {
            serde_json::from_str(t).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the stored shares cannot be read; none are in force");
                Vec::new()
            })
        })
    }

    /// Puts the homeowner's shares into the config in force, after the
    /// policy files' (at start and after each reload). One whose preset or
    /// zone no longer exists is left out, with a warning.
    pub(super) fn merge_homeowner_shares(&mut self) {
        let stored = Self::parse_stored(self.stored_text().as_deref());
        self.apply_homeowner_shares(&stored);
    }

    fn apply_homeowner_shares(&mut self, stored: &[Stored]) {
        self.config.policy.shares.retain(|r| !r.homeowner);
        for s in stored {
            match self.homeowner_rule(&s.preset, &s.from, &s.to) {
                Ok(rule) => self.config.policy.shares.push(rule),
                Err(why) => {
                    tracing::warn!(preset = %s.preset, from = %s.from, to = %s.to, "a stored share is not in force: {why}")
                }
            }
        }
    }

    fn homeowner_rule(&self, preset: &str, from: &str, to: &str) -> Result<ShareRule, String> {
        let p = &self.config.policy;
        let preset = p
            .share_presets
            .iter()
            .find(|q| q.name == preset)
            .ok_or_else(|| format!("no preset `{}`", preset.escape_debug()))?;
        let zone = |z: &str| {
            ZoneId::new(z)
                .ok()
                .filter(|id| p.zones.contains_key(id))
                .ok_or_else(|| format!("unknown zone `{}`", z.escape_debug()))
        };
        let (from, to) = (zone(from)?, zone(to)?);
        if from == to {
            return Err("choose two different zones (within a zone, intra_zone decides)".into());
        }
        Ok(ShareRule::of_preset(preset, from, to))
    }

    /// What is shared, and the presets.
    pub(super) fn sharing_info(&self) -> SharingInfo {
        let p = &self.config.policy;
        SharingInfo {
            presets: p
                .share_presets
                .iter()
                .map(|q| SharePresetInfo {
                    name: q.name.clone(),
                    description: q.description.clone(),
                    services: q
                        .services
                        .iter()
                        .map(ToString::to_string)
                        .chain(q.ssdp.iter().cloned())
                        .collect(),
                    ports: q.ports.iter().map(ToString::to_string).collect(),
                    source: q.source.clone(),
                })
                .collect(),
            shares: p
                .shares
                .iter()
                .map(|r| ShareInfo {
                    name: r.name.clone(),
                    from: r.from.iter().cloned().collect(),
                    to: r.to.iter().cloned().collect(),
                    homeowner: r.homeowner,
                })
                .collect(),
        }
    }

    /// Turns a preset's share on or off: stored first (durably), then in
    /// force. A store or firewall refusal changes nothing and says why.
    pub(super) fn set_share(&mut self, preset: &str, from: &ZoneId, to: &ZoneId, on: bool) -> Response {
        let error = |message: String| Response::Error { message };
        if let Err(why) = self.homeowner_rule(preset, from.as_str(), to.as_str()) {
            return error(why);
        }
        let before = self.stored_text();
        let mut stored = Self::parse_stored(before.as_deref());
        let entry = Stored {
            preset: preset.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        };
        let present = stored.contains(&entry);
        match (on, present) {
            (true, true) => {
                return Response::Done {
                    message: format!("{preset} is already shared from {from} to {to}"),
                }
            }
            (false, false) => return error(format!("{preset} is not shared from {from} to {to} by you")),
            (true, false) if stored.len() >= MAX_HOMEOWNER_SHARES => {
                return error(format!("at most {MAX_HOMEOWNER_SHARES} shares"))
            }
            (true, false) => stored.push(entry),
            (false, true) => stored.retain(|s| *s != entry),
        }
        let text = match serde_json::to_string(&stored) {
            Ok(t) => t,
            Err(e) => return error(format!("the shares could not be written: {e}")),
        };
        if let Err(e) = self.store.set_setting(HOMEOWNER_SHARES, Some(&text)) {
            return error(format!("the share could not be saved: {}", error_chain(&e)));
        }
        self.apply_homeowner_shares(&stored);
        if let Err(e) = self.reconcile() {
            // Back to what was in force and stored.
            if let Err(e) = self.store.set_setting(HOMEOWNER_SHARES, before.as_deref()) {
                tracing::warn!(error = %error_chain(&e), "the previous shares could not be stored again");
            }
            self.apply_homeowner_shares(&Self::parse_stored(before.as_deref()));
            return error(format!("the firewall refused the change: {}", error_chain(&e)));
        }
        Response::Done {
            message: if on {
                format!("{preset} is shared from {from} to {to}")
            } else {
                format!("{preset} is no longer shared from {from} to {to}")
            },
        }
    }
}
