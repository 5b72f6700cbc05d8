//! An alert's sentence on the page, rendered from its kind and facts (the
//! daemon's `message` is its plain-text rendering, for the CLI and the
//! notifiers). The device is a link to its page under its name now, the MAC
//! beside it; zones stand out; a placement links to "why it is what it is".
//! Kinds without facts of their own show the daemon's sentence.
//!
//! Pieces, not HTML: the template escapes every one (device names also go
//! through `shown`), so a hostile name stays text.

use crate::model::AlertView;

/// One piece of an alert's sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Words.
    Text(String),
    /// A device: a link to its page, named (untrusted) or by its MAC.
    Device {
        /// Its MAC (the link).
        mac: String,
        /// Its name now.
        name: Option<String>,
    },
    /// A zone's name.
    Zone(String),
    /// A class, shown as a badge (untrusted: it comes from a policy file, but
    /// is shown as text all the same).
    Class(String),
    /// The link to the device's "why it is what it is".
    Why {
        /// The device's MAC.
        mac: String,
    },
}

impl AlertView {
    /// The sentence as pieces, or `None`: show `message`.
    pub fn pieces(&self) -> Option<Vec<Piece>> {
        let mac = self.mac.clone()?;
        let f = &self.facts;
        let text = |s: &str| Piece::Text(s.to_string());
        let zone = Piece::Zone(f.zone.clone().unwrap_or_else(|| "its zone".into()));
        let mut p = vec![Piece::Device {
            mac: mac.clone(),
            name: self.name.clone(),
        }];
        let class = f.class.clone().map(Piece::Class);
        match self.kind.as_str() {
            "new-device-quarantined" => {
                p.extend([text(" joined and waits in "), zone, text(" until you approve it")]);
                if let Some(c) = class {
                    p.extend([text(". It looks like "), c]);
                    if let Some(z) = &f.suggested_zone {
                        p.extend([text("; suggested zone "), Piece::Zone(z.clone())]);
                    }
                }
                p.push(text("."));
            }
            "new-device" => {
                p.extend([text(" joined and was placed in "), zone]);
                match (f.placed_by.as_deref(), class) {
                    (Some("classified"), Some(c)) => p.extend([text(", recognised as "), c]),
                    (Some("segment-default"), Some(c)) => {
                        p.extend([text(", the zone of the network it joined. It looks like "), c])
                    }
                    (Some("segment-default"), None) => p.push(text(", the zone of the network it joined")),
                    (Some("policy-override"), _) => p.push(text(", pinned in the policy")),
                    (Some("user-choice"), _) => p.push(text(", your choice")),
                    _ => {}
                }
                p.extend([text(". "), Piece::Why { mac }]);
            }
            "device-classified" => {
                p.push(text(" was recognised"));
                if let Some(c) = class {
                    p.extend([text(" as "), c]);
                }
                p.extend([text(" and placed in "), zone, text(". "), Piece::Why { mac }]);
            }
            "identity-suggestion" => {
                p.push(text(" looks like "));
                match &f.other {
                    Some(other) => p.push(Piece::Device {
                        mac: other.clone(),
                        name: f.other_name.clone(),
                    }),
                    None => p.push(text("a known device")),
                }
                p.push(text(" with a new private address"));
                if !f.reasons.is_empty() {
                    p.push(text(&format!(" ({})", f.reasons.join(", "))));
                }
                p.push(text(". It stays where it is until you link them."));
            }
            "device-offline" => match f.minutes {
                Some(m) => p.push(text(&format!(" went offline: nothing heard from it for {m} minutes."))),
                None => p.push(text(" went offline.")),
            },
            "device-back" => p.push(text(" is back online.")),
            "dns-bypass" => p.push(text(
                " tried to use another DNS resolver than the router's (plain DNS to another server, DNS over TLS, \
                 or a known DNS-over-HTTPS server); it was answered by the router or refused.",
            )),
            "spoofing" if f.other.is_some() => {
                p.push(text(" sent a DHCP message in the name of "));
                if let Some(other) = &f.other {
                    p.push(Piece::Device {
                        mac: other.clone(),
                        name: f.other_name.clone(),
                    });
                }
                p.push(text(". It was ignored: no device's zone, address or name changed."));
            }
            _ => return None,
        }
        Some(p)
    }

    /// Whether the homeowner can still do `action` (`approve`, `block`,
    /// `link`) about this alert.
    pub fn offers(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertFacts;

    fn alert(kind: &str, name: Option<&str>, facts: AlertFacts) -> AlertView {
        AlertView {
            id: 1,
            at: 0,
            kind: kind.into(),
            mac: Some("f4:f5:d8:12:34:30".into()),
            message: "the daemon's sentence".into(),
            acknowledged: false,
            count: 1,
            last_at: 0,
            severity: "info".into(),
            name: name.map(str::to_string),
            facts,
            actions: Vec::new(),
        }
    }

    fn words(p: &[Piece]) -> String {
        p.iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Device { mac, name } => name.clone().unwrap_or_else(|| mac.clone()),
                Piece::Zone(z) | Piece::Class(z) => z.clone(),
                Piece::Why { .. } => "Why?".into(),
            })
            .collect()
    }

    #[test]
    fn a_placed_device_reads_by_name_with_a_why_link() {
        let a = alert(
            "new-device",
            Some("Chromecast"),
            AlertFacts {
                zone: Some("iot".into()),
                placed_by: Some("classified".into()),
                class: Some("media".into()),
                ..AlertFacts::default()
            },
        );
        let p = a.pieces().expect("pieces");
        assert_eq!(
            words(&p),
            "Chromecast joined and was placed in iot, recognised as media. Why?"
        );
        assert!(p.contains(&Piece::Why {
            mac: "f4:f5:d8:12:34:30".into()
        }));
        let held = alert(
            "new-device-quarantined",
            None,
            AlertFacts {
                zone: Some("quarantine".into()),
                ..AlertFacts::default()
            },
        );
        assert_eq!(
            words(&held.pieces().expect("pieces")),
            "f4:f5:d8:12:34:30 joined and waits in quarantine until you approve it."
        );
    }

    #[test]
    fn kinds_without_facts_show_the_daemons_sentence() {
        assert_eq!(alert("probing", Some("plug"), AlertFacts::default()).pieces(), None);
        let mut router = alert("tunnel-up", None, AlertFacts::default());
        router.mac = None;
        assert_eq!(router.pieces(), None);
    }
}
