//! What a device is called where a person reads about it: the alerts, the
//! pages, the CLI, the notifications. One rule everywhere, so the homeowner
//! never meets the same device under two names:
//!
//! 1. the name the homeowner gave it (or the policy's);
//! 2. the host name it sent in DHCP;
//! 3. its first mDNS name (without `.local`);
//! 4. its vendor and class, e.g. "Google media device";
//! 5. nothing: the caller shows the MAC.
//!
//! Names 2–3 are the device's own text (hostile): callers escape them for
//! their medium. The MAC stays the id and is shown beside the name.

/// What a name can be made of.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameParts<'a> {
    /// The homeowner's (or the policy's) name.
    pub homeowner: Option<&'a str>,
    /// The DHCP host name.
    pub hostname: Option<&'a str>,
    /// An mDNS instance or host name (the first that is not blank).
    pub mdns_name: Option<&'a str>,
    /// The MAC prefix's registered vendor.
    pub vendor: Option<&'a str>,
    /// The class a rule gave it (`media`, `access-point`, …).
    pub class: Option<&'a str>,
}

/// The best name, or `None` when nothing names the device (show its MAC).
pub fn best_name(parts: NameParts<'_>) -> Option<String> {
    let given = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    given(parts.homeowner)
        .or_else(|| given(parts.hostname))
        .or_else(|| {
            let n = parts.mdns_name?.trim().trim_end_matches('.');
            given(Some(n.strip_suffix(".local").unwrap_or(n)))
        })
        .or_else(|| {
            let vendor = given(parts.vendor);
            match (vendor, parts.class.map(class_noun)) {
                (Some(v), Some(c)) => Some(format!("{v} {c}")),
                (Some(v), None) => Some(format!("{v} device")),
                (None, Some(c)) => Some(capitalised(&c)),
                (None, None) => None,
            }
        })
}

/// A class id as a noun: `media` → "media device", `tv` → "TV".
pub fn class_noun(class: &str) -> String {
    match class {
        "media" => "media device".into(),
        "tv" => "TV".into(),
        "nas" => "NAS".into(),
        "other" => "device".into(),
        "voice-assistant" => "voice assistant".into(),
        "access-point" => "access point".into(),
        "ereader" => "e-reader".into(),
        c => c.replace('-', " "),
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_homeowner_wins_then_the_device_then_what_it_is() {
        let all = NameParts {
            homeowner: Some("TV in the den"),
            hostname: Some("Chromecast"),
            mdns_name: Some("Living-Room.local."),
            vendor: Some("Google"),
            class: Some("media"),
        };
        assert_eq!(best_name(all).as_deref(), Some("TV in the den"));
        let blank_owner = NameParts {
            homeowner: Some("  "),
            ..all
        };
        assert_eq!(best_name(blank_owner).as_deref(), Some("Chromecast"));
        let no_host = NameParts {
            homeowner: None,
            hostname: Some(""),
            ..all
        };
        assert_eq!(best_name(no_host).as_deref(), Some("Living-Room"));
        let bare = NameParts {
            mdns_name: None,
            ..no_host
        };
        assert_eq!(best_name(bare).as_deref(), Some("Google media device"));
        assert_eq!(
            best_name(NameParts { class: None, ..bare }).as_deref(),
            Some("Google device")
        );
        assert_eq!(
            best_name(NameParts {
                vendor: None,
                class: Some("tv"),
                ..bare
            })
            .as_deref(),
            Some("TV")
        );
        assert_eq!(
            best_name(NameParts {
                vendor: None,
                class: Some("camera"),
                ..bare
            })
            .as_deref(),
            Some("Camera")
        );
        assert_eq!(best_name(NameParts::default()), None);
    }
}
