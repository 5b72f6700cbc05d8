//! PURE: evidence in, the best-matching rule out.

use serde::{Deserialize, Serialize};

use super::evidence::Evidence;
use super::glob::{is_bidi_control, Glob};
use super::rules::{ClassRule, Conditions, Confidence, DeviceClass};
use crate::config::ZoneId;

/// The rule that classified a device, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassMatch {
    /// The rule's id.
    pub rule: String,
    /// What the device is.
    pub class: DeviceClass,
    /// The zone the rule suggests, if any (see [`super::placement`]).
    pub zone: Option<ZoneId>,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// One line per condition, e.g. `vendor "Espressif" matched Espressif*`.
    /// Evidence in them is escaped (control and bidi characters as `\u{..}`), but
    /// it is still untrusted text: displays must escape it for their medium.
    pub matched: Vec<String>,
}

/// The best rule for a device: the highest confidence, then the most conditions
/// (the most specific rule), then the earliest (file, then order in the file).
/// `vendor` is the MAC's IEEE vendor (see [`crate::discovery::oui::lookup`]), `randomized`
/// whether the MAC is locally administered. `None` when no rule matches.
pub fn classify<'r>(
    rules: impl IntoIterator<Item = &'r ClassRule>,
    evidence: &Evidence,
    vendor: Option<&str>,
    randomized: bool,
) -> Option<ClassMatch> {
    let facts = Facts {
        evidence,
        vendor,
        randomized,
    };
    let mut best: Option<(&'r ClassRule, Vec<String>)> = None;
    for rule in rules {
        let Some(matched) = facts.satisfy(&rule.conditions) else {
            continue;
        };
        let better = best
            .as_ref()
            .is_none_or(|(b, b_matched)| (rule.confidence, matched.len()) > (b.confidence, b_matched.len()));
        if better {
            best = Some((rule, matched));
        }
    }
    best.map(|(rule, matched)| ClassMatch {
        rule: rule.id.clone(),
        class: rule.class,
        zone: rule.zone.clone(),
        confidence: rule.confidence,
        matched,
    })
}

/// What is known about one device.
struct Facts<'a> {
    evidence: &'a Evidence,
    vendor: Option<&'a str>,
    randomized: bool,
}

impl Facts<'_> {
    /// One description per condition when all hold; `None` when one fails.
    fn satisfy(&self, c: &Conditions) -> Option<Vec<String>> {
        let e = self.evidence;
        let mut matched = Vec::new();
        if !c.vendor.is_empty() {
            matched.push(glob_hit("vendor", &c.vendor, self.vendor)?);
        }
        if !c.dhcp_params.is_empty() {
            let params = e.dhcp_params.as_deref()?;
            let hit = c.dhcp_params.iter().find(|want| want.as_slice() == params)?;
            matched.push(format!("DHCP parameter list {} matched exactly", list(hit)));
        }
        if !c.dhcp_params_prefix.is_empty() {
            let params = e.dhcp_params.as_deref()?;
            let hit = c.dhcp_params_prefix.iter().find(|want| params.starts_with(want))?;
            matched.push(format!(
                "DHCP parameter list {} starts with {}",
                list(params),
                list(hit)
            ));
        }
        if !c.vendor_class.is_empty() {
            matched.push(glob_hit(
                "DHCP vendor class",
                &c.vendor_class,
                e.vendor_class.as_deref(),
            )?);
        }
        if !c.hostname.is_empty() {
            let names = e
                .hostname
                .as_deref()
                .into_iter()
                .chain(e.mdns_names.iter().map(|n| mdns_name(n)));
            matched.push(first_glob_hit("host name", &c.hostname, names)?);
        }
        if !c.mdns_service.is_empty() {
            let services = e.mdns_services.iter().map(|s| mdns_service_type(s));
            matched.push(first_glob_hit("mDNS service", &c.mdns_service, services)?);
        }
        for (key, globs) in &c.txt {
            // A missing key fails before the description is formatted.
            let value = e.txt.get(key)?;
            matched.push(glob_hit(&format!("mDNS TXT {key}"), globs, Some(value))?);
        }
        for (field, globs) in &c.upnp {
            let value = e.upnp.get(field)?;
            matched.push(glob_hit(&format!("UPnP {field}"), globs, Some(value))?);
        }
        if let Some(want) = c.randomized_mac {
            if want != self.randomized {
                return None;
            }
            matched.push(
                if want {
                    "MAC is randomised"
                } else {
                    "MAC is not randomised"
                }
                .to_string(),
            );
        }
        Some(matched)
    }
}

/// `what "value" matched pattern`, when `value` matches one of `globs`.
fn glob_hit(what: &str, globs: &[Glob], value: Option<&str>) -> Option<String> {
    first_glob_hit(what, globs, value.into_iter())
}

/// The first value (in order) that matches one of `globs`, described.
fn first_glob_hit<'v>(what: &str, globs: &[Glob], values: impl Iterator<Item = &'v str>) -> Option<String> {
    values.into_iter().find_map(|value| {
        let glob = globs.iter().find(|g| g.matches(value))?;
        Some(format!("{what} \"{}\" matched {glob}", escape(value)))
    })
}

/// An mDNS name as a host name: without a trailing dot and `.local`, and for a
/// service instance (`Living Room._googlecast._tcp.local.`) only the instance.
fn mdns_name(name: &str) -> &str {
    let name = strip_local(name);
    name.find("._").map_or(name, |i| &name[..i])
}

/// An mDNS service type without a trailing dot and `.local`.
fn mdns_service_type(service: &str) -> &str {
    strip_local(service)
}

fn strip_local(name: &str) -> &str {
    let name = name.strip_suffix('.').unwrap_or(name);
    let cut = name.len().saturating_sub(".local".len());
    match name.get(cut..) {
        Some(tail) if tail.eq_ignore_ascii_case(".local") => &name[..cut],
        _ => name,
    }
}

fn list(params: &[u8]) -> String {
    params.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// Untrusted text made visible: control characters, bidi controls and quotes
/// escaped, so a description cannot hide or reorder what it quotes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_bidi_control(c) || c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::rules::parse_glob;

    fn rule(id: &str, confidence: Confidence, conditions: Conditions) -> ClassRule {
        ClassRule {
            id: id.into(),
            class: DeviceClass::Plug,
            zone: ZoneId::new("iot").ok(),
            confidence,
            source: "test".into(),
            conditions,
        }
    }

    fn globs(patterns: &[&str]) -> Vec<Glob> {
        patterns.iter().map(|p| parse_glob(p).expect("glob")).collect()
    }

    fn espressif_plug() -> Evidence {
        Evidence {
            hostname: Some("ESP_A1B2C3".into()),
            dhcp_params: Some(vec![1, 3, 28, 6, 15, 44, 46, 47, 31, 33, 121, 43]),
            ..Default::default()
        }
    }

    #[test]
    fn all_conditions_must_hold() {
        let r = rule(
            "esp",
            Confidence::Medium,
            Conditions {
                vendor: globs(&["Espressif*"]),
                hostname: globs(&["ESP_*"]),
                ..Default::default()
            },
        );
        let e = espressif_plug();
        let m = classify(std::slice::from_ref(&r), &e, Some("Espressif"), false).expect("match");
        assert_eq!(m.rule, "esp");
        assert_eq!(
            m.matched,
            [
                "vendor \"Espressif\" matched Espressif*",
                "host name \"ESP_A1B2C3\" matched ESP_*"
            ]
        );
        assert_eq!(classify(std::slice::from_ref(&r), &e, Some("Apple"), false), None);
        assert_eq!(classify(std::slice::from_ref(&r), &e, None, true), None);
    }

    #[test]
    fn confidence_then_specificity_then_order() {
        let vendor_only = |id: &str, c| {
            rule(
                id,
                c,
                Conditions {
                    vendor: globs(&["Espressif"]),
                    ..Default::default()
                },
            )
        };
        let two = |id: &str, c| {
            rule(
                id,
                c,
                Conditions {
                    vendor: globs(&["Espressif"]),
                    dhcp_params_prefix: vec![vec![1, 3]],
                    ..Default::default()
                },
            )
        };
        let e = espressif_plug();
        let best = |rules: &[ClassRule]| classify(rules, &e, Some("Espressif"), false).map(|m| m.rule);
        assert_eq!(
            best(&[
                two("two-low", Confidence::Low),
                vendor_only("one-high", Confidence::High)
            ]),
            Some("one-high".into()),
            "confidence first"
        );
        assert_eq!(
            best(&[vendor_only("one", Confidence::Medium), two("two", Confidence::Medium)]),
            Some("two".into()),
            "then the more specific rule"
        );
        assert_eq!(
            best(&[
                vendor_only("first", Confidence::Low),
                vendor_only("second", Confidence::Low)
            ]),
            Some("first".into()),
            "then the earlier rule"
        );
    }

    #[test]
    fn dhcp_lists_exact_and_prefix() {
        let e = espressif_plug();
        let exact = |l: Vec<u8>| {
            rule(
                "x",
                Confidence::Low,
                Conditions {
                    dhcp_params: vec![l],
                    ..Default::default()
                },
            )
        };
        assert!(classify(
            &[exact(vec![1, 3, 28, 6, 15, 44, 46, 47, 31, 33, 121, 43])],
            &e,
            None,
            false
        )
        .is_some());
        assert!(classify(&[exact(vec![1, 3, 28])], &e, None, false).is_none());
        let prefix = rule(
            "p",
            Confidence::Low,
            Conditions {
                dhcp_params_prefix: vec![vec![9], vec![1, 3, 28]],
                ..Default::default()
            },
        );
        let m = classify(std::slice::from_ref(&prefix), &e, None, false).expect("prefix");
        assert_eq!(
            m.matched,
            ["DHCP parameter list 1,3,28,6,15,44,46,47,31,33,121,43 starts with 1,3,28"]
        );
        assert!(classify(&[prefix], &Evidence::default(), None, false).is_none());
    }

    #[test]
    fn upnp_fields_are_conditions() {
        let mut e = Evidence::default();
        e.upnp.insert("manufacturer".into(), "Samsung Electronics".into());
        e.upnp.insert(
            "device_type".into(),
            "urn:schemas-upnp-org:device:MediaRenderer:1".into(),
        );
        let tv = rule(
            "samsung",
            Confidence::High,
            Conditions {
                upnp: [
                    ("manufacturer".to_string(), globs(&["Samsung Electronics"])),
                    (
                        "device_type".to_string(),
                        globs(&["urn:schemas-upnp-org:device:MediaRenderer:*"]),
                    ),
                ]
                .into(),
                ..Default::default()
            },
        );
        let m = classify(std::slice::from_ref(&tv), &e, None, false).expect("match");
        assert_eq!(
            m.matched,
            [
                "UPnP device_type \"urn:schemas-upnp-org:device:MediaRenderer:1\" matched urn:schemas-upnp-org:device:MediaRenderer:*",
                "UPnP manufacturer \"Samsung Electronics\" matched Samsung Electronics",
            ]
        );
        e.upnp.remove("device_type");
        assert!(classify(&[tv], &e, None, false).is_none(), "every field must hold");
    }

    #[test]
    fn mdns_names_services_and_txt() {
        let mut e = Evidence::default();
        e.mdns_services.insert("_googlecast._tcp.local.".into());
        e.mdns_names.insert("Living Room TV._googlecast._tcp.local.".into());
        e.mdns_names.insert("Chromecast-Ultra-0123.local".into());
        e.txt.insert("md".into(), "Chromecast Ultra".into());
        let r = rule(
            "cast",
            Confidence::High,
            Conditions {
                mdns_service: globs(&["_googlecast._tcp"]),
                hostname: globs(&["Chromecast-*"]),
                txt: [("md".to_string(), globs(&["Chromecast*"]))].into(),
                ..Default::default()
            },
        );
        let m = classify(&[r], &e, None, true).expect("match");
        assert_eq!(
            m.matched,
            [
                "host name \"Chromecast-Ultra-0123\" matched Chromecast-*",
                "mDNS service \"_googlecast._tcp\" matched _googlecast._tcp",
                "mDNS TXT md \"Chromecast Ultra\" matched Chromecast*",
            ]
        );
        let instance = rule(
            "instance",
            Confidence::Low,
            Conditions {
                hostname: globs(&["living room tv"]),
                ..Default::default()
            },
        );
        assert!(
            classify(&[instance], &e, None, true).is_some(),
            "instance names count as names"
        );
    }

    #[test]
    fn randomized_condition() {
        let r = rule(
            "r",
            Confidence::Low,
            Conditions {
                randomized_mac: Some(true),
                ..Default::default()
            },
        );
        assert!(classify(std::slice::from_ref(&r), &Evidence::default(), None, true).is_some());
        assert!(classify(std::slice::from_ref(&r), &Evidence::default(), None, false).is_none());
    }

    #[test]
    fn descriptions_escape_hostile_text() {
        assert_eq!(escape("a\"b\\c\nd\u{202e}e"), "a\\\"b\\\\c\\nd\\u{202e}e");
        assert_eq!(
            escape("<b>ok</b>"),
            "<b>ok</b>",
            "HTML is the display's job, kept as data"
        );
        assert_eq!(strip_local("x.LOCAL."), "x");
        assert_eq!(strip_local("é"), "é");
        assert_eq!(mdns_name("a._b._tcp.local"), "a");
    }

    #[test]
    fn class_match_round_trips_as_json() {
        let m = ClassMatch {
            rule: "r".into(),
            class: DeviceClass::VoiceAssistant,
            zone: ZoneId::new("iot").ok(),
            confidence: Confidence::Medium,
            matched: vec!["x".into()],
        };
        let json = serde_json::to_string(&m).expect("json");
        assert!(json.contains("\"class\":\"voice-assistant\"") && json.contains("\"confidence\":\"medium\""));
        assert_eq!(serde_json::from_str::<ClassMatch>(&json).expect("parse"), m);
    }
}
