//! `[notify]`: where alerts go besides the web UI — webhooks, ntfy topics, an
//! MQTT broker with Home Assistant discovery. Secrets (a webhook's signing
//! key, an ntfy token, the broker's password) live in files the config names;
//! the service reads them at start and refuses a file others may read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::Reporter;
use super::load::resolve;
use crate::alerts::{AlertKind, Severity};

/// The raw `[notify]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    #[serde(default)]
    webhook: Vec<Spanned<RawChannel>>,
    #[serde(default)]
    ntfy: Vec<Spanned<RawChannel>>,
    mqtt: Option<Spanned<RawMqtt>>,
    tls_ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: Spanned<String>,
    url: Spanned<String>,
    /// Webhook: the HMAC-SHA256 key; ntfy: the access token.
    secret_file: Option<Spanned<String>>,
    #[serde(default)]
    kinds: Vec<Spanned<String>>,
    min_severity: Option<Spanned<String>>,
    per_hour: Option<Spanned<i64>>,
    quiet_hours: Option<Spanned<String>>,
    quiet_min_severity: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    broker: Spanned<String>,
    username: Option<String>,
    password_file: Option<Spanned<String>>,
    discovery_prefix: Option<String>,
    topic_prefix: Option<String>,
    #[serde(default)]
    commands: bool,
    #[serde(default)]
    kinds: Vec<Spanned<String>>,
    min_severity: Option<Spanned<String>>,
    per_hour: Option<Spanned<i64>>,
    quiet_hours: Option<Spanned<String>>,
    quiet_min_severity: Option<Spanned<String>>,
}

/// Which alerts a channel sends, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelFilter {
    /// Only these kinds (empty: every kind).
    pub kinds: BTreeSet<String>,
    /// Only at or above this severity.
    pub min_severity: Severity,
    /// At most this many an hour (a burst of a tenth of it at once).
    pub per_hour: u32,
    /// When only urgent alerts go out (local time), if ever.
    pub quiet: Option<QuietHours>,
    /// What still goes out in quiet hours (default: critical).
    pub quiet_min_severity: Severity,
}

impl ChannelFilter {
    /// What it lets through, in words (the status and the Notifications page).
    pub fn describe(&self) -> String {
        let kinds = if self.kinds.is_empty() {
            "every kind".to_string()
        } else {
            self.kinds.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
        };
        let severity = match self.min_severity {
            Severity::Info => String::new(),
            s => format!(", {} and above", s.as_str()),
        };
        let quiet = match self.quiet {
            Some(q) => format!("; quiet {q} (only {} and above)", self.quiet_min_severity.as_str()),
            None => String::new(),
        };
        format!("{kinds}{severity}, at most {} an hour{quiet}", self.per_hour)
    }
}

/// A webhook or ntfy channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpChannel {
    /// Its name (`bulkhead notify test NAME`).
    pub name: String,
    /// Where alerts are POSTed (http:// or https://).
    pub url: String,
    /// Webhook: the signing key's file; ntfy: the access token's file.
    pub secret_file: Option<PathBuf>,
    /// Which alerts.
    pub filter: ChannelFilter,
}

/// The MQTT channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MqttChannel {
    /// `host:port` (MQTT 3.1.1 over TCP; port 1883, or 8883 with TLS, if
    /// none was written).
    pub broker: String,
    /// Over TLS (`mqtts://` in the config), checked against
    /// `[notify] tls_ca_file`.
    pub tls: bool,
    /// The user name, if the broker wants one.
    pub username: Option<String>,
    /// The password's file.
    pub password_file: Option<PathBuf>,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Bulkhead's own topics start with this.
    pub topic_prefix: String,
    /// Home Assistant may approve quarantined devices and block or unblock
    /// devices (off by default: anyone who may publish on the broker could).
    pub commands: bool,
    /// Which alerts go to `<topic_prefix>/alert`.
    pub filter: ChannelFilter,
}

/// `[notify]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotifyConfig {
    /// Webhooks: JSON POSTs signed with HMAC-SHA256.
    pub webhooks: Vec<HttpChannel>,
    /// ntfy topics (the JSON publish format).
    pub ntfy: Vec<HttpChannel>,
    /// A broker, with Home Assistant discovery.
    pub mqtt: Option<MqttChannel>,
    /// CA certificates (PEM) https:// receivers must chain to.
    pub tls_ca_file: PathBuf,
}

impl NotifyConfig {
    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.ntfy.is_empty() && self.mqtt.is_none()
    }
}

/// Per hour, by default: a scan is one alert, so this only stops a storm.
pub const DEFAULT_PER_HOUR: u32 = 60;

/// A channel's filter keys as written.
struct RawFilter<'a> {
    kinds: &'a [Spanned<String>],
    min_severity: Option<&'a Spanned<String>>,
    per_hour: Option<&'a Spanned<i64>>,
    quiet_hours: Option<&'a Spanned<String>>,
    quiet_min_severity: Option<&'a Spanned<String>>,
}

fn severity(s: &Spanned<String>, field: String, rep: &mut Reporter<'_>) -> Option<Severity> {
    let v = Severity::parse(s.get_ref());
    if v.is_none() {
        rep.at(s.span(), field, "one of info, warning, critical");
    }
    v
}

fn filter(raw: RawFilter<'_>, field: &str, rep: &mut Reporter<'_>) -> Option<ChannelFilter> {
    let RawFilter {
        kinds,
        min_severity,
        per_hour,
        quiet_hours,
        quiet_min_severity,
    } = raw;
    let mut ok = true;
    let mut set = BTreeSet::new();
    for (i, k) in kinds.iter().enumerate() {
        if AlertKind::parse(k.get_ref()).is_some() {
            set.insert(k.get_ref().clone());
        } else {
            let all: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
            rep.at(
                k.span(),
                format!("{field}.kinds[{i}]"),
                format!(
                    "`{}` is not an alert kind (one of {})",
                    k.get_ref().escape_debug(),
                    all.join(", ")
                ),
            );
            ok = false;
        }
    }
    let min_severity = match min_severity {
        None => Severity::Warning,
        Some(s) => severity(s, format!("{field}.min_severity"), rep).unwrap_or_else(|| {
            ok = false;
            Severity::Warning
        }),
    };
    let per_hour = match per_hour {
        None => DEFAULT_PER_HOUR,
        Some(p) => match u32::try_from(*p.get_ref()) {
            Ok(v @ 1..=3600) => v,
            _ => {
                rep.at(p.span(), format!("{field}.per_hour"), "from 1 to 3600");
                ok = false;
                DEFAULT_PER_HOUR
            }
        },
    };
    let quiet = match quiet_hours {
        None => None,
        Some(q) => match QuietHours::parse(q.get_ref()) {
            Some(v) => Some(v),
            None => {
                rep.at(
                    q.span(),
                    format!("{field}.quiet_hours"),
                    "`HH:MM-HH:MM` in the router's local time, e.g. \"22:00-07:00\"",
                );
                ok = false;
                None
            }
        },
    };
    let quiet_min_severity = match quiet_min_severity {
        None => Severity::Critical,
        Some(s) => severity(s, format!("{field}.quiet_min_severity"), rep).unwrap_or_else(|| {
            ok = false;
            Severity::Critical
        }),
    };
    ok.then_some(ChannelFilter {
        kinds: set,
        min_severity,
        per_hour,
        quiet,
        quiet_min_severity,
    })
}

/// Hours in the router's local time when only urgent alerts go out:
/// minutes after midnight, `start` included, `end` not; across midnight
/// when `end < start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuietHours {
    /// First quiet minute of the day.
    pub start: u16,
    /// First minute that is not quiet.
    pub end: u16,
}

impl QuietHours {
    /// `HH:MM-HH:MM`; equal ends are not a range.
    pub fn parse(s: &str) -> Option<QuietHours> {
        let minute = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let digits = |x: &str, n: std::ops::RangeInclusive<usize>| {
                n.contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
            };
            if !digits(h, 1..=2) || !digits(m, 2..=2) {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (a, b) = s.split_once('-')?;
        let (start, end) = (minute(a)?, minute(b)?);
        (start != end).then_some(QuietHours { start, end })
    }

    /// Whether `minute` (after local midnight) is quiet.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Validates `[notify]`; `None` after reporting errors.
pub(super) fn validate_notify(raw: Option<&RawNotify>, base: &Path, rep: &mut Reporter<'_>) -> Option<NotifyConfig> {
    let mut out = NotifyConfig {
        tls_ca_file: PathBuf::from(super::DEFAULT_CA_FILE),
        ..NotifyConfig::default()
    };
    let Some(raw) = raw else { return Some(out) };
    let mut ok = true;
    if let Some(ca) = &raw.tls_ca_file {
        out.tls_ca_file = resolve(base, ca.get_ref());
    }
    let mut names = BTreeSet::new();
    for (table, list, into_ntfy) in [
        ("notify.webhook", &raw.webhook, false),
        ("notify.ntfy", &raw.ntfy, true),
    ] {
        for (i, c) in list.iter().enumerate() {
            let field = format!("{table}[{i}]");
            let c = c.get_ref();
            let name = c.name.get_ref();
            if name.is_empty()
                || name.len() > 32
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                rep.at(
                    c.name.span(),
                    format!("{field}.name"),
                    "a name of 1 to 32 letters, digits, - or _",
                );
                ok = false;
            } else if !names.insert(name.clone()) {
                rep.at(
                    c.name.span(),
                    format!("{field}.name"),
                    format!("channel `{name}` is defined twice"),
                );
                ok = false;
            }
            let url = c.url.get_ref();
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.parse::<hyper::Uri>().is_err() {
                rep.at(c.url.span(), format!("{field}.url"), "an http:// or https:// URL");
                ok = false;
            }
            let raw_filter = RawFilter {
                kinds: &c.kinds,
                min_severity: c.min_severity.as_ref(),
                per_hour: c.per_hour.as_ref(),
                quiet_hours: c.quiet_hours.as_ref(),
                quiet_min_severity: c.quiet_min_severity.as_ref(),
            };
            let Some(filter) = filter(raw_filter, &field, rep) else {
                ok = false;
                continue;
            };
            let channel = HttpChannel {
                name: name.clone(),
                url: url.clone(),
                secret_file: c.secret_file.as_ref().map(|f| resolve(base, f.get_ref())),
                filter,
            };
            if into_ntfy {
                out.ntfy.push(channel);
            } else {
                out.webhooks.push(channel);
            }
        }
    }
    if let Some(m) = &raw.mqtt {
        let m = m.get_ref();
        let written = m.broker.get_ref();
        let (tls, broker) = match (written.strip_prefix("mqtts://"), written.strip_prefix("mqtt://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => (false, written.as_str()),
        };
        let default_port = if tls { "8883" } else { "1883" };
        let (host, port) = match broker.rsplit_once(':') {
            // An IPv6 address without a port ends in `]` or has more colons.
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p),
            _ => (broker, default_port),
        };
        if host.is_empty() || port.parse::<u16>().is_err() || broker.contains('/') {
            rep.at(
                m.broker.span(),
                "notify.mqtt.broker",
                "`host:port` of an MQTT broker (`mqtts://host:port` for TLS)",
            );
            ok = false;
        }
        let broker = format!("{host}:{port}");
        let raw_filter = RawFilter {
            kinds: &m.kinds,
            min_severity: m.min_severity.as_ref(),
            per_hour: m.per_hour.as_ref(),
            quiet_hours: m.quiet_hours.as_ref(),
            quiet_min_severity: m.quiet_min_severity.as_ref(),
        };
        match filter(raw_filter, "notify.mqtt", rep) {
            Some(filter) => {
                out.mqtt = Some(MqttChannel {
                    broker,
                    tls,
                    username: m.username.clone(),
                    password_file: m.password_file.as_ref().map(|f| resolve(base, f.get_ref())),
                    discovery_prefix: m.discovery_prefix.clone().unwrap_or_else(|| "homeassistant".into()),
                    topic_prefix: m.topic_prefix.clone().unwrap_or_else(|| "bulkhead".into()),
                    commands: m.commands,
                    filter,
                });
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}
