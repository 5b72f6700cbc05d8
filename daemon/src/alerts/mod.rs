//! Things the homeowner should hear about: new devices (held in quarantine or
//! placed by a rule), classifications, identity suggestions, exhausted address
//! pools, the tunnel's ups and downs, a firewall that refused a change. Plain
//! data, stored by [`crate::store`], shown by the CLI and the web UI.
//!
//! An alert about a device is *data*: its kind, the device's MAC and the
//! facts ([`AlertFacts`]: the zone, the class and rule, the other device).
//! Its sentence is rendered from them ([`text`]) with the device's name *at
//! the time it is read*, so a device named after the alert reads under its
//! new name, and the web UI renders the same facts its own way (links and
//! buttons; later another language). No alert holds a shell command.

pub mod text;

use serde::{Deserialize, Serialize};

use crate::config::MacAddr;
use crate::inventory::UnixTime;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A device no rule places joined and was put in the unknown zone.
    NewDeviceQuarantined,
    /// A device joined for the first time and a rule or its segment placed it
    /// (one alert per new device: this or [`AlertKind::NewDeviceQuarantined`]).
    NewDevice,
    /// A device was classified (or re-classified) and placed by a rule.
    DeviceClassified,
    /// A new randomised MAC looks like a known device.
    IdentitySuggestion,
    /// A segment's DHCP pool had no address to offer.
    PoolExhausted,
    /// The WireGuard tunnel came up (a handshake completed).
    TunnelUp,
    /// The tunnel went down (stopped, or the server stopped answering).
    TunnelDown,
    /// The tunnel could not connect; it retries with a growing delay. Selected
    /// traffic is blocked meanwhile (the kill switch).
    TunnelError,
    /// The firewall refused a change (a full replace or a set delta): the
    /// kernel keeps its previous rules. Raised once until an apply succeeds.
    ApplyFailed,
    /// The device database cannot be written (disk full, damaged): decisions
    /// are in force and kept in memory until it can.
    StoreFailed,
    /// A device tried to use another resolver than the router's (plain DNS
    /// elsewhere, DNS over TLS, a known DoH server). Once a day per device.
    DnsBypass,
    /// A device of a zone that is not trusted tried many ports or hosts the
    /// firewall refused in a short window (a scan).
    Probing,
    /// A device of an iot or unknown zone tried to open connections to
    /// devices of a trusted zone, and was refused.
    LateralAttempt,
    /// A device the homeowner blocked keeps trying to reach the network.
    BlockedDeviceActive,
    /// A watched device stopped answering.
    DeviceOffline,
    /// A watched device is back.
    DeviceBack,
    /// A frame from one device claimed to be another (a DHCP message whose
    /// `chaddr` is not its sender's MAC): dropped, and said once an hour per
    /// sender.
    Spoofing,
    /// Private MACs nobody decided about and not seen for
    /// `devices.forget_private_after_days` were forgotten: one summary.
    DevicesForgotten,
}

/// How much an alert matters: notifiers send what is at or above a channel's
/// threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing (a device was classified, the tunnel came up).
    Info,
    /// Worth a look (a new device waits for approval, a device went offline).
    Warning,
    /// Act now (a device scans the home, the firewall refused a change).
    Critical,
}

impl Severity {
    /// The config's and the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses a config name.
    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl AlertKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewDeviceQuarantined => "new-device-quarantined",
            AlertKind::NewDevice => "new-device",
            AlertKind::DeviceClassified => "device-classified",
            AlertKind::IdentitySuggestion => "identity-suggestion",
            AlertKind::PoolExhausted => "pool-exhausted",
            AlertKind::TunnelUp => "tunnel-up",
            AlertKind::TunnelDown => "tunnel-down",
            AlertKind::TunnelError => "tunnel-error",
            AlertKind::ApplyFailed => "apply-failed",
            AlertKind::StoreFailed => "store-failed",
            AlertKind::DnsBypass => "dns-bypass",
            AlertKind::Probing => "probing",
            AlertKind::LateralAttempt => "lateral-attempt",
            AlertKind::BlockedDeviceActive => "blocked-device-active",
            AlertKind::DeviceOffline => "device-offline",
            AlertKind::DeviceBack => "device-back",
            AlertKind::Spoofing => "spoofing",
            AlertKind::DevicesForgotten => "devices-forgotten",
        }
    }

    /// Every kind, in a stable order.
    pub const ALL: [AlertKind; 18] = [
        AlertKind::NewDeviceQuarantined,
        AlertKind::NewDevice,
        AlertKind::DeviceClassified,
        AlertKind::IdentitySuggestion,
        AlertKind::PoolExhausted,
        AlertKind::TunnelUp,
        AlertKind::TunnelDown,
        AlertKind::TunnelError,
        AlertKind::ApplyFailed,
        AlertKind::StoreFailed,
        AlertKind::DnsBypass,
        AlertKind::Probing,
        AlertKind::LateralAttempt,
        AlertKind::BlockedDeviceActive,
        AlertKind::DeviceOffline,
        AlertKind::DeviceBack,
        AlertKind::Spoofing,
        AlertKind::DevicesForgotten,
    ];

    /// Within this many seconds of the last one, the same kind for the same
    /// device (or the router) is the same alert happening again: its count
    /// grows, it is not raised (or sent) again. `None`: every one is news
    /// (they are one per device by construction).
    pub fn dedup_secs(self) -> Option<UnixTime> {
        match self {
            AlertKind::NewDeviceQuarantined
            | AlertKind::NewDevice
            | AlertKind::IdentitySuggestion
            | AlertKind::DevicesForgotten => None,
            AlertKind::DeviceClassified
            | AlertKind::TunnelUp
            | AlertKind::TunnelDown
            | AlertKind::TunnelError
            | AlertKind::Probing
            | AlertKind::LateralAttempt => Some(600),
            AlertKind::PoolExhausted
            | AlertKind::ApplyFailed
            | AlertKind::StoreFailed
            | AlertKind::DeviceOffline
            | AlertKind::DeviceBack
            | AlertKind::Spoofing => Some(3600),
            AlertKind::DnsBypass | AlertKind::BlockedDeviceActive => Some(24 * 3600),
        }
    }

    /// How much it matters.
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::DeviceClassified
            | AlertKind::NewDevice
            | AlertKind::TunnelUp
            | AlertKind::DeviceBack
            | AlertKind::IdentitySuggestion
            | AlertKind::DevicesForgotten => Severity::Info,
            AlertKind::NewDeviceQuarantined
            | AlertKind::PoolExhausted
            | AlertKind::TunnelDown
            | AlertKind::TunnelError
            | AlertKind::DnsBypass
            | AlertKind::BlockedDeviceActive
            | AlertKind::DeviceOffline => Severity::Warning,
            AlertKind::ApplyFailed
            | AlertKind::StoreFailed
            | AlertKind::Probing
            | AlertKind::LateralAttempt
            | AlertKind::Spoofing => Severity::Critical,
        }
    }

    /// Alerts that ask the homeowner where a device belongs (answered by
    /// choosing its zone: Approve).
    pub fn asks_for_placement(self) -> bool {
        matches!(
            self,
            AlertKind::NewDeviceQuarantined | AlertKind::NewDevice | AlertKind::DeviceClassified
        )
    }

    /// Alerts that caught a device doing something (answered by blocking it).
    pub fn catches_device(self) -> bool {
        matches!(
            self,
            AlertKind::Probing | AlertKind::LateralAttempt | AlertKind::DnsBypass | AlertKind::Spoofing
        )
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Store id (0 before it is stored).
    pub id: i64,
    /// When.
    pub at: UnixTime,
    /// What.
    pub kind: AlertKind,
    /// The device concerned, if one.
    pub mac: Option<MacAddr>,
    /// A sentence for the homeowner (may quote untrusted device text: escape on
    /// display).
    pub message: String,
    /// The homeowner has seen it.
    #[serde(default)]
    pub acknowledged: bool,
    /// How many times it happened within its kind's dedup window
    /// ([`AlertKind::dedup_secs`]): a storm is one alert with a count.
    #[serde(default = "one")]
    pub count: u32,
    /// When it last happened (= `at` until it happens again).
    #[serde(default)]
    pub last_at: UnixTime,
    /// What the sentence is made of, for the kinds [`text`] renders.
    #[serde(default)]
    pub facts: AlertFacts,
}

/// The facts of an alert about a device: what [`text::sentence`] and the web
/// UI render. Every field is optional; each kind uses its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertFacts {
    /// The zone the device is in (placed in, held in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Why it is there: `classified`, `segment-default`, `policy-override`,
    /// `user-choice`, `unknown` (the zone reason's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placed_by: Option<String>,
    /// The class a rule gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// That rule's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A held device: the zone its class suggests (where Approve puts it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_zone: Option<String>,
    /// The other device: the known one a private MAC resembles, the one a
    /// forged message spoke for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<MacAddr>,
    /// What matched (an identity suggestion's reasons).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Minutes (how long a device has been silent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<i64>,
}

fn one() -> u32 {
    1
}

impl Alert {
    /// A new alert (not stored yet), happened once at `at`.
    pub fn new(at: UnixTime, kind: AlertKind, mac: Option<MacAddr>, message: String) -> Alert {
        Alert {
            id: 0,
            at,
            kind,
            mac,
            message,
            acknowledged: false,
            count: 1,
            last_at: at,
            facts: AlertFacts::default(),
        }
    }

    /// A new alert about a device whose sentence [`text`] renders from
    /// `facts` (see [`Alert::render`]).
    pub fn about(at: UnixTime, kind: AlertKind, mac: MacAddr, facts: AlertFacts) -> Alert {
        Alert {
            facts,
            ..Alert::new(at, kind, Some(mac), String::new())
        }
    }

    /// Renders the sentence of a kind [`text`] knows from its facts, naming
    /// devices with `name` (their best name, `None`: the MAC). Other kinds
    /// keep the text they were raised with.
    pub fn render(&mut self, name: &dyn Fn(&MacAddr) -> Option<String>) {
        if let Some(s) = text::sentence(self, name) {
            self.message = s;
        }
    }
}

/// "This new randomised MAC is probably that known device": recorded for the
/// homeowner to accept or ignore, never applied silently (it would widen access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySuggestion {
    /// The new MAC.
    pub new_mac: MacAddr,
    /// The known device it resembles.
    pub known_mac: MacAddr,
    /// When it was noticed.
    pub at: UnixTime,
    /// What matched.
    pub reasons: Vec<String>,
    /// Whether the homeowner accepted it.
    pub accepted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip_and_match_serde() {
        for name in [
            "new-device-quarantined",
            "new-device",
            "device-classified",
            "identity-suggestion",
            "pool-exhausted",
            "tunnel-up",
            "tunnel-down",
            "tunnel-error",
            "apply-failed",
            "dns-bypass",
            "probing",
            "lateral-attempt",
            "blocked-device-active",
            "device-offline",
            "device-back",
        ] {
            let kind = AlertKind::parse(name).unwrap_or_else(|| panic!("{name} parses"));
            assert_eq!(kind.as_str(), name);
            assert_eq!(serde_json::to_string(&kind).expect("json"), format!("\"{name}\""));
        }
        assert_eq!(AlertKind::parse("new-devices"), None);
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!(Severity::parse("warning"), Some(Severity::Warning));
        assert_eq!(Severity::parse("loud"), None);
        assert_eq!(AlertKind::Probing.severity(), Severity::Critical);
    }
}
