//! Classification rules as validated from the policy files' `[[classify]]` tables.
//!
//! ```toml
//! [[classify]]
//! id = "chromecast-mdns"          # unique across files: a-z, 0-9, -; at most 48
//! class = "media"                 # a DeviceClass
//! zone = "iot"                    # optional: a zone of the policy
//! confidence = "high"             # low | medium | high
//! source = "Google Cast docs: ..." # where the signature comes from (required)
//! [classify.match]                # every condition given must hold; a list is any-of
//! vendor = ["Google*"]            # globs on the MAC's IEEE vendor name
//! dhcp_params = ["1,3,6,15"]      # DHCP option 55, exactly
//! dhcp_params_prefix = ["1,121"]  # DHCP option 55, starts with
//! vendor_class = ["android-dhcp-*"] # globs on DHCP option 60
//! hostname = ["Chromecast*"]      # globs on DHCP option 12 or an mDNS name
//! mdns_service = ["_googlecast._tcp"] # globs on any announced mDNS service type
//! txt = { md = ["Chromecast*"] }  # mDNS TXT key -> globs on its value
//! randomized_mac = false          # the MAC is (not) locally administered
//! ```
//!
//! The raw TOML side (spans, error positions) lives in `config`; this module holds
//! the validated types and the parsers of their parts.

use std::collections::BTreeMap;
use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::glob::{Glob, GlobError};
use crate::config::ZoneId;

/// Longest rule id, in characters.
pub const MAX_RULE_ID: usize = 48;

/// Why a part of a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The id is empty, too long or has characters other than a-z, 0-9 and `-`.
    #[error("`{}` is not a valid rule id: use 1-{MAX_RULE_ID} characters a-z, 0-9 and -", .0.escape_debug())]
    BadId(String),
    /// The class is not one of [`DeviceClass::ALL`].
    #[error("unknown class `{}` (expected one of: {})", .0.escape_debug(), DeviceClass::names())]
    UnknownClass(String),
    /// The confidence is not low, medium or high.
    #[error("unknown confidence `{}` (expected low, medium or high)", .0.escape_debug())]
    UnknownConfidence(String),
    /// A DHCP option list that is not comma-separated numbers 0-255.
    #[error("`{}` is not a DHCP option list like \"1,3,6,15\" (comma-separated numbers 0-255, at most 255 of them)", text.escape_debug())]
    BadDhcpList {
        /// The text given.
        text: String,
        /// The number that did not parse, if one did not.
        #[source]
        cause: Option<ParseIntError>,
    },
    /// A glob pattern that [`Glob::new`] refused.
    #[error("`{}` is not a usable pattern: {source}", pattern.escape_debug())]
    BadGlob {
        /// The pattern given.
        pattern: String,
        /// Why it was refused.
        #[source]
        source: GlobError,
    },
    /// A TXT key that is empty, too long or not printable ASCII without `=`.
    #[error("`{}` is not a TXT key (1-64 printable ASCII characters, no `=`)", .0.escape_debug())]
    BadTxtKey(String),
}

/// What kind of device a rule says it is. Serialized as the lower-case name
/// (`access-point`, `voice-assistant`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceClass {
    /// Security or baby camera.
    Camera,
    /// Smart plug.
    Plug,
    /// Smart light bulb or light strip.
    Bulb,
    /// Wall switch, relay or dimmer.
    Switch,
    /// Speaker (network audio).
    Speaker,
    /// Media player or streaming stick.
    Media,
    /// Television.
    Tv,
    /// Smart-home hub or bridge.
    Hub,
    /// Printer (also multi-function).
    Printer,
    /// Scanner.
    Scanner,
    /// Thermostat.
    Thermostat,
    /// Sensor (temperature, air, motion, energy ...).
    Sensor,
    /// Video doorbell.
    Doorbell,
    /// Door lock.
    Lock,
    /// Robot vacuum.
    Vacuum,
    /// Household appliance (washer, oven, fridge ...).
    Appliance,
    /// Network storage.
    Nas,
    /// Router.
    Router,
    /// Wireless access point or mesh node.
    AccessPoint,
    /// Laptop.
    Laptop,
    /// Desktop computer.
    Desktop,
    /// Phone.
    Phone,
    /// Tablet.
    Tablet,
    /// Game console.
    Console,
    /// Smart watch.
    Watch,
    /// E-book reader.
    Ereader,
    /// Voice assistant (smart speaker with a microphone).
    VoiceAssistant,
    /// Anything else.
    Other,
}

impl DeviceClass {
    /// Every class, in declaration order.
    pub const ALL: [DeviceClass; 28] = [
        Self::Camera,
        Self::Plug,
        Self::Bulb,
        Self::Switch,
        Self::Speaker,
        Self::Media,
        Self::Tv,
        Self::Hub,
        Self::Printer,
        Self::Scanner,
        Self::Thermostat,
        Self::Sensor,
        Self::Doorbell,
        Self::Lock,
        Self::Vacuum,
        Self::Appliance,
        Self::Nas,
        Self::Router,
        Self::AccessPoint,
        Self::Laptop,
        Self::Desktop,
        Self::Phone,
        Self::Tablet,
        Self::Console,
        Self::Watch,
        Self::Ereader,
        Self::VoiceAssistant,
        Self::Other,
    ];

    /// The name used in policy files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Camera => "camera",
            Self::Plug => "plug",
            Self::Bulb => "bulb",
            Self::Switch => "switch",
            Self::Speaker => "speaker",
            Self::Media => "media",
            Self::Tv => "tv",
            Self::Hub => "hub",
            Self::Printer => "printer",
            Self::Scanner => "scanner",
            Self::Thermostat => "thermostat",
            Self::Sensor => "sensor",
            Self::Doorbell => "doorbell",
            Self::Lock => "lock",
            Self::Vacuum => "vacuum",
            Self::Appliance => "appliance",
            Self::Nas => "nas",
            Self::Router => "router",
            Self::AccessPoint => "access-point",
            Self::Laptop => "laptop",
            Self::Desktop => "desktop",
            Self::Phone => "phone",
            Self::Tablet => "tablet",
            Self::Console => "console",
            Self::Watch => "watch",
            Self::Ereader => "ereader",
            Self::VoiceAssistant => "voice-assistant",
            Self::Other => "other",
        }
    }

    /// A person's own computing device (laptop, desktop, phone, tablet, console,
    /// watch, e-reader): what the homeowner, not a fingerprint, should trust.
    pub fn is_personal(self) -> bool {
        matches!(
            self,
            Self::Laptop | Self::Desktop | Self::Phone | Self::Tablet | Self::Console | Self::Watch | Self::Ereader
        )
    }

    fn names() -> String {
        Self::ALL.map(Self::as_str).join(" ")
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for DeviceClass {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| RuleError::UnknownClass(s.to_string()))
    }
}

/// How sure a rule is. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// One weak signal (e.g. only the MAC vendor). Never moves a device to a
    /// less-restricted zone (see [`super::placement`]).
    Low,
    /// A specific signal that a few other devices could also send.
    Medium,
    /// A signal specific to this kind of device (a vendor's own mDNS type or model).
    High,
}

impl Confidence {
    /// The name used in policy files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Confidence {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(RuleError::UnknownConfidence(s.to_string())),
        }
    }
}

/// What a rule requires of a device. Every non-empty condition must hold; within
/// one list, any entry may match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Conditions {
    /// Globs on the IEEE vendor name of the MAC (none for randomised MACs).
    pub vendor: Vec<Glob>,
    /// DHCP option 55 lists; the device's must equal one.
    pub dhcp_params: Vec<Vec<u8>>,
    /// DHCP option 55 lists; the device's must start with one.
    pub dhcp_params_prefix: Vec<Vec<u8>>,
    /// Globs on DHCP option 60.
    pub vendor_class: Vec<Glob>,
    /// Globs on DHCP option 12 or any mDNS name (without `.local` and service).
    pub hostname: Vec<Glob>,
    /// Globs on any announced mDNS service type (`_googlecast._tcp`).
    pub mdns_service: Vec<Glob>,
    /// mDNS TXT key (lower case) -> globs on its value. Each key is a condition.
    pub txt: BTreeMap<String, Vec<Glob>>,
    /// UPnP field ([`super::evidence::UPNP_FIELDS`]) -> globs on its value. Each
    /// field is a condition.
    pub upnp: BTreeMap<String, Vec<Glob>>,
    /// Whether the MAC must (true) or must not (false) be locally administered.
    pub randomized_mac: Option<bool>,
}

impl Conditions {
    /// How many conditions there are (each TXT key counts once). A more specific
    /// rule has more.
    pub fn count(&self) -> usize {
        [
            !self.vendor.is_empty(),
            !self.dhcp_params.is_empty(),
            !self.dhcp_params_prefix.is_empty(),
            !self.vendor_class.is_empty(),
            !self.hostname.is_empty(),
            !self.mdns_service.is_empty(),
            self.randomized_mac.is_some(),
        ]
        .into_iter()
        .filter(|present| *present)
        .count()
            + self.txt.len()
            + self.upnp.len()
    }

    /// True when nothing but `randomized_mac` is asked: the only conditions that
    /// can hold for a device without evidence and without a MAC vendor (every
    /// other condition reads one of them).
    pub fn asks_only_about_the_mac(&self) -> bool {
        self.count() == usize::from(self.randomized_mac.is_some())
    }
}

/// One validated `[[classify]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassRule {
    /// Unique id, a-z, 0-9 and `-`.
    pub id: String,
    /// What the device is.
    pub class: DeviceClass,
    /// The zone it suggests, if any (a zone of the policy).
    pub zone: Option<ZoneId>,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// Where the signature comes from (documentation, capture, common knowledge).
    pub source: String,
    /// What the device must show. Never empty.
    #[serde(rename = "match")]
    pub conditions: Conditions,
}

/// Checks a rule id: 1-[`MAX_RULE_ID`] characters a-z, 0-9 and `-`.
pub fn check_rule_id(id: &str) -> Result<(), RuleError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_RULE_ID
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RuleError::BadId(id.to_string()))
    }
}

/// Parses a DHCP option 55 list written as `"1,3,6,15"` (spaces allowed).
pub fn parse_dhcp_params(text: &str) -> Result<Vec<u8>, RuleError> {
    let bad = |cause| RuleError::BadDhcpList {
        text: text.to_string(),
        cause,
    };
    let mut out = Vec::new();
    for item in text.split(',') {
        out.push(item.trim().parse::<u8>().map_err(|e| bad(Some(e)))?);
    }
    if out.len() > 255 {
        return Err(bad(None));
    }
    Ok(out)
}

/// Parses a glob, naming the pattern in the error.
pub fn parse_glob(pattern: &str) -> Result<Glob, RuleError> {
    Glob::new(pattern).map_err(|source| RuleError::BadGlob {
        pattern: pattern.to_string(),
        source,
    })
}

/// Checks and lower-cases a TXT key (keys are case-insensitive, RFC 6763 6.4).
pub fn parse_txt_key(key: &str) -> Result<String, RuleError> {
    let ok = !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_graphic() && c != '=');
    if ok {
        Ok(key.to_ascii_lowercase())
    } else {
        Err(RuleError::BadTxtKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_through_their_names() {
        for c in DeviceClass::ALL {
            assert_eq!(c.as_str().parse::<DeviceClass>(), Ok(c));
            let json = serde_json::to_string(&c).expect("json");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert!(matches!(
            "Camera".parse::<DeviceClass>(),
            Err(RuleError::UnknownClass(_))
        ));
        assert!(DeviceClass::Phone.is_personal());
        assert!(!DeviceClass::Plug.is_personal());
    }

    #[test]
    fn confidence_orders_and_parses() {
        assert!(Confidence::Low < Confidence::Medium && Confidence::Medium < Confidence::High);
        assert_eq!("medium".parse::<Confidence>(), Ok(Confidence::Medium));
        assert!("certain".parse::<Confidence>().is_err());
        assert_eq!(serde_json::to_string(&Confidence::High).expect("json"), "\"high\"");
    }

    #[test]
    fn dhcp_lists_parse_strictly() {
        assert_eq!(parse_dhcp_params("1,3,6,15"), Ok(vec![1, 3, 6, 15]));
        assert_eq!(parse_dhcp_params(" 1, 121 ,3"), Ok(vec![1, 121, 3]));
        assert_eq!(parse_dhcp_params("0,255"), Ok(vec![0, 255]));
        for bad in ["", "1,,3", "1,256", "1;3", "-1", "1,3,"] {
            assert!(parse_dhcp_params(bad).is_err(), "{bad}");
        }
        let long = vec!["1"; 256].join(",");
        assert!(parse_dhcp_params(&long).is_err());
        let e = parse_dhcp_params("1,x").expect_err("bad");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parse error is kept as the source"
        );
    }

    #[test]
    fn ids_and_txt_keys() {
        assert!(check_rule_id("chromecast-mdns").is_ok());
        assert!(check_rule_id(&"a".repeat(48)).is_ok());
        for bad in ["", "Chromecast", "a_b", "a b", &"a".repeat(49)] {
            assert!(check_rule_id(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_txt_key("MD"), Ok("md".into()));
        assert!(parse_txt_key("a=b").is_err());
        assert!(parse_txt_key("").is_err());
    }
}
