//! The plain-text sentence of an alert about a device, for the CLI and the
//! notifiers (the web UI renders the same facts as HTML with links and
//! buttons). Devices are named by their best name
//! ([`crate::inventory::naming`]), their MAC when nothing names them; the MAC
//! is shown beside the sentence, not inside it. Names are the device's own
//! text: the CLI and the notifiers escape them for their medium.

use crate::config::MacAddr;
use crate::inventory::naming::class_noun;

use super::{Alert, AlertKind};

/// The sentence of an alert whose kind is rendered from facts; `None` for
/// kinds that keep the text they were raised with (the tunnel's, the
/// firewall's, detection's episodes).
pub fn sentence(alert: &Alert, name: &dyn Fn(&MacAddr) -> Option<String>) -> Option<String> {
    let f = &alert.facts;
    let called = |mac: &MacAddr| name(mac).unwrap_or_else(|| mac.to_string());
    let subject = called(alert.mac.as_ref()?);
    let zone = f.zone.as_deref().unwrap_or("its zone");
    let a_class = f.class.as_deref().map(|c| with_article(&class_noun(c)));
    Some(match alert.kind {
        AlertKind::NewDeviceQuarantined => {
            let mut s = format!("{subject} joined and waits in {zone} until you approve it");
            match (&a_class, &f.suggested_zone) {
                (Some(c), Some(z)) => s.push_str(&format!(" (it looks like {c}; suggested zone: {z})")),
                (Some(c), None) => s.push_str(&format!(" (it looks like {c})")),
                _ => {}
            }
            s
        }
        AlertKind::NewDevice => {
            let why = match (f.placed_by.as_deref(), &a_class) {
                (Some("classified"), Some(c)) => match &f.rule {
                    Some(r) => format!("recognised as {c} by rule {r}"),
                    None => format!("recognised as {c}"),
                },
                (Some("classified"), None) => "recognised".into(),
                (Some("segment-default"), Some(c)) => format!("the zone of the network it joined; it looks like {c}"),
                (Some("segment-default"), None) => "the zone of the network it joined".into(),
                (Some("policy-override"), _) => "pinned in the policy".into(),
                (Some("user-choice"), _) => "your choice".into(),
                _ => String::new(),
            };
            if why.is_empty() {
                format!("{subject} joined and was placed in {zone}")
            } else {
                format!("{subject} joined and was placed in {zone} ({why})")
            }
        }
        AlertKind::DeviceClassified => match (&a_class, &f.rule) {
            (Some(c), Some(r)) => format!("{subject} was recognised as {c} by rule {r} and placed in {zone}"),
            (Some(c), None) => format!("{subject} was recognised as {c} and placed in {zone}"),
            _ => format!("{subject} was recognised and placed in {zone}"),
        },
        AlertKind::IdentitySuggestion => {
            let known = f.other.as_ref().map_or_else(|| "a known device".into(), called);
            let mut s = format!("{subject} looks like {known} with a new private address");
            if !f.reasons.is_empty() {
                s.push_str(&format!(" ({})", f.reasons.join(", ")));
            }
            s.push_str("; it stays where it is until you link them");
            s
        }
        AlertKind::DeviceOffline => match f.minutes {
            Some(m) => format!("{subject} went offline: nothing heard from it for {m} minutes"),
            None => format!("{subject} went offline"),
        },
        AlertKind::DeviceBack => format!("{subject} is back online"),
        AlertKind::DnsBypass => format!(
            "{subject} tried to use another DNS resolver than the router's (plain DNS to another server, \
             DNS over TLS, or a known DNS-over-HTTPS server); it was answered by the router or refused"
        ),
        AlertKind::Spoofing if f.other.is_some() => {
            let victim = f.other.as_ref().map_or_else(String::new, |m| match name(m) {
                Some(n) => format!("{n} ({m})"),
                None => format!("{m}, which is not a device here"),
            });
            format!(
                "{subject} sent a DHCP message in the name of {victim}. It was ignored: no device's zone, \
                 address or name changed."
            )
        }
        _ => return None,
    })
}

/// "a camera", "an e-reader", "a TV".
fn with_article(noun: &str) -> String {
    let vowel = noun
        .chars()
        .next()
        .is_some_and(|c| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'A' | 'E' | 'I' | 'O' | 'U'));
    // Spelled-out letters: "an NAS" reads wrong, "a NAS" is what people say.
    if vowel {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertFacts;

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("mac")
    }

    fn named(m: &MacAddr) -> Option<String> {
        (*m == mac("f4:f5:d8:12:34:30")).then(|| "Chromecast".to_string())
    }

    #[test]
    fn a_device_is_named_not_numbered_and_no_sentence_holds_a_command() {
        let tv = mac("f4:f5:d8:12:34:30");
        let placed = Alert::about(
            0,
            AlertKind::NewDevice,
            tv,
            AlertFacts {
                zone: Some("iot".into()),
                placed_by: Some("classified".into()),
                class: Some("media".into()),
                rule: Some("google-cast".into()),
                ..AlertFacts::default()
            },
        );
        assert_eq!(
            sentence(&placed, &named).as_deref(),
            Some("Chromecast joined and was placed in iot (recognised as a media device by rule google-cast)")
        );
        let stranger = mac("02:bb:00:00:01:99");
        let held = Alert::about(
            0,
            AlertKind::NewDeviceQuarantined,
            stranger,
            AlertFacts {
                zone: Some("quarantine".into()),
                ..AlertFacts::default()
            },
        );
        let text = sentence(&held, &named).expect("rendered");
        assert_eq!(
            text,
            "02:bb:00:00:01:99 joined and waits in quarantine until you approve it"
        );
        assert!(!text.contains("bulkhead "), "a command in the sentence: {text}");
        let suggested = Alert::about(
            0,
            AlertKind::NewDeviceQuarantined,
            tv,
            AlertFacts {
                zone: Some("quarantine".into()),
                class: Some("ereader".into()),
                suggested_zone: Some("iot".into()),
                ..AlertFacts::default()
            },
        );
        assert_eq!(
            sentence(&suggested, &named).as_deref(),
            Some("Chromecast joined and waits in quarantine until you approve it (it looks like an e-reader; suggested zone: iot)")
        );
    }

    #[test]
    fn the_other_device_is_named_too_and_free_text_kinds_keep_their_text() {
        let phone = mac("02:00:00:00:00:01");
        let tv = mac("f4:f5:d8:12:34:30");
        let spoof = Alert::about(
            0,
            AlertKind::Spoofing,
            phone,
            AlertFacts {
                other: Some(tv),
                ..AlertFacts::default()
            },
        );
        let text = sentence(&spoof, &named).expect("rendered");
        assert!(
            text.starts_with("02:00:00:00:00:01 sent a DHCP message in the name of Chromecast (f4:f5:d8:12:34:30)."),
            "{text}"
        );
        let not_here = Alert::about(
            0,
            AlertKind::Spoofing,
            tv,
            AlertFacts {
                other: Some(phone),
                ..AlertFacts::default()
            },
        );
        assert!(sentence(&not_here, &named)
            .expect("rendered")
            .contains("02:00:00:00:00:01, which is not a device here"));
        let probing = Alert::new(0, AlertKind::Probing, Some(tv), "as detection wrote it".into());
        assert_eq!(sentence(&probing, &named), None);
        let mut rendered = probing.clone();
        rendered.render(&named);
        assert_eq!(rendered.message, "as detection wrote it");
        let offline = Alert::about(
            0,
            AlertKind::DeviceOffline,
            tv,
            AlertFacts {
                minutes: Some(12),
                ..AlertFacts::default()
            },
        );
        assert_eq!(
            sentence(&offline, &named).as_deref(),
            Some("Chromecast went offline: nothing heard from it for 12 minutes")
        );
    }
}
