//! PURE: what goes out, byte for byte — the webhook's JSON and signature,
//! ntfy's headers, Home Assistant's discovery configs and states — and which
//! alerts a channel sends (kinds, severity, a rate). No I/O, no clock.

use ring::hmac;
use serde_json::{json, Value};

use crate::alerts::{Alert, Severity};
use crate::config::{ChannelFilter, MacAddr};
use crate::core::{DeviceSnapshot, RouterSnapshot};
use crate::inventory::UnixTime;

/// The webhook's JSON for one alert (the device as the router knows it, if
/// any). Device text (names) is the devices' own: receivers must escape it.
pub fn webhook_body(alert: &Alert, device: Option<&DeviceSnapshot>) -> String {
    let device = device.map(|d| {
        json!({
            "mac": d.mac.to_string(),
            "name": crate::detect::best_name_of(d),
            "zone": d.zone.to_string(),
            "addresses": d.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "class": d.class,
            "vendor": d.vendor,
        })
    });
    json!({
        "source": "bulkhead",
        "id": alert.id,
        "kind": alert.kind.as_str(),
        "severity": alert.kind.severity().as_str(),
        "at": alert.at,
        "count": alert.count,
        "mac": alert.mac.map(|m| m.to_string()),
        "device": device,
        "message": alert.message,
    })
    .to_string()
}

/// `X-Bulkhead-Signature`: `sha256=` and the hex HMAC-SHA256, under `key`, of
/// `TIMESTAMP.BODY` (`X-Bulkhead-Timestamp`, unix seconds): a receiver checks
/// both and refuses old timestamps, so a captured delivery cannot be replayed.
pub fn signature(key: &[u8], timestamp: UnixTime, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    let tag = ctx.sign();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// ntfy's headers for an alert: `Title`, `Priority` (5 critical, 4 warning,
/// 3 info) and `Tags` (the kind, and an emoji tag ntfy renders). ASCII only:
/// device text goes in the body, never in a header.
pub fn ntfy_headers(alert: &Alert) -> Vec<(&'static str, String)> {
    let (priority, emoji) = match alert.kind.severity() {
        Severity::Critical => ("5", "rotating_light"),
        Severity::Warning => ("4", "warning"),
        Severity::Info => ("3", "information_source"),
    };
    let mut title = format!("Bulkhead: {}", alert.kind.as_str());
    if alert.count > 1 {
        title.push_str(&format!(" (x{})", alert.count));
    }
    vec![
        ("Title", title),
        ("Priority", priority.to_string()),
        ("Tags", format!("{emoji},{}", alert.kind.as_str())),
    ]
}

/// Which alerts a channel sends: kinds, severity, quiet hours (in the
/// router's local time) and a token bucket of `per_hour` (a tenth of it at
/// once). Time and the local offset are arguments.
#[derive(Debug, Clone)]
pub struct Gate {
    filter: ChannelFilter,
    tokens: f64,
    at: UnixTime,
    /// Alerts the rate held back.
    pub rate_limited: u64,
    /// Alerts held back by quiet hours (they stay on the Alerts page).
    pub quiet: u64,
}

impl Gate {
    /// A full bucket.
    pub fn new(filter: ChannelFilter) -> Gate {
        let burst = f64::from((filter.per_hour / 10).max(1));
        Gate {
            filter,
            tokens: burst,
            at: 0,
            rate_limited: 0,
            quiet: 0,
        }
    }

    /// Whether `alert` goes out on this channel at `now`, where local time
    /// is `utc_offset_secs` ahead of UTC.
    pub fn admit(&mut self, alert: &Alert, now: UnixTime, utc_offset_secs: i32) -> bool {
        let severity = alert.kind.severity();
        if severity < self.filter.min_severity
            || (!self.filter.kinds.is_empty() && !self.filter.kinds.contains(alert.kind.as_str()))
        {
            return false;
        }
        if let Some(quiet) = self.filter.quiet {
            let minute = (now + i64::from(utc_offset_secs)).rem_euclid(86_400) / 60;
            if quiet.contains(minute as u16) && severity < self.filter.quiet_min_severity {
                self.quiet += 1;
                return false;
            }
        }
        let burst = f64::from((self.filter.per_hour / 10).max(1));
        let elapsed = (now - self.at).max(0) as f64;
        self.tokens = (self.tokens + elapsed * f64::from(self.filter.per_hour) / 3600.0).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.rate_limited += 1;
            false
        }
    }
}

/// A MAC as a topic and id part: lower-case hex, no colons.
pub fn mac_id(mac: &MacAddr) -> String {
    mac.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// One retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    /// Topic.
    pub topic: String,
    /// Payload (empty: delete).
    pub payload: String,
}

/// Topic prefixes of the MQTT channel.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Home Assistant's discovery prefix (`homeassistant`).
    pub discovery: String,
    /// Bulkhead's own (`bulkhead`).
    pub own: String,
    /// Home Assistant may approve and block devices (`[notify.mqtt]
    /// commands`): an Approve button while a device is quarantined and a
    /// Blocked switch instead of the read-only sensor.
    pub commands: bool,
}

/// A command from Home Assistant, as its topic and payload say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The Approve button was pressed.
    Approve(MacAddr),
    /// The Blocked switch was turned on (`true`) or off.
    Block(MacAddr, bool),
}

/// Reads `<own>/device/<id>/approve/set` (any payload: a button press) and
/// `<own>/device/<id>/blocked/set` (`ON`/`OFF`); anything else is `None`
/// (counted and dropped by the caller, never a panic).
pub fn parse_command(t: &Topics, topic: &str, payload: &[u8]) -> Option<Command> {
    let rest = topic.strip_prefix(&t.own)?.strip_prefix("/device/")?;
    let mut parts = rest.split('/');
    let (id, what, set) = (parts.next()?, parts.next()?, parts.next()?);
    if set != "set" || parts.next().is_some() || id.len() != 12 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mac = MacAddr(mac);
    match (what, payload) {
        ("approve", _) => Some(Command::Approve(mac)),
        ("blocked", b"ON") => Some(Command::Block(mac, true)),
        ("blocked", b"OFF") => Some(Command::Block(mac, false)),
        _ => None,
    }
}

impl Topics {
    /// Where Bulkhead says it is online (`online`/`offline`, the last will).
    pub fn availability(&self) -> String {
        format!("{}/status", self.own)
    }

    /// Every alert, as the webhook's JSON (not retained).
    pub fn alert(&self) -> String {
        format!("{}/alert", self.own)
    }

    fn state(&self, mac: &MacAddr, what: &str) -> String {
        format!("{}/device/{}/{what}", self.own, mac_id(mac))
    }

    /// Where Home Assistant sends a device's commands.
    pub fn command(&self, mac: &MacAddr, what: &str) -> String {
        format!("{}/device/{}/{what}/set", self.own, mac_id(mac))
    }

    /// Every command topic (to subscribe to).
    pub fn commands_filter(&self) -> String {
        format!("{}/device/+/+/set", self.own)
    }

    /// The discovery config topics of a device's entities: presence, zone,
    /// quarantined, blocked (a sensor), blocked (a switch), approve.
    pub fn device_configs(&self, mac: &MacAddr) -> [String; 6] {
        let id = mac_id(mac);
        let d = &self.discovery;
        [
            format!("{d}/device_tracker/bulkhead_{id}/presence/config"),
            format!("{d}/sensor/bulkhead_{id}/zone/config"),
            format!("{d}/binary_sensor/bulkhead_{id}/quarantined/config"),
            format!("{d}/binary_sensor/bulkhead_{id}/blocked/config"),
            format!("{d}/switch/bulkhead_{id}/blocked/config"),
            format!("{d}/button/bulkhead_{id}/approve/config"),
        ]
    }
}

fn origin() -> Value {
    json!({"name": "Bulkhead", "sw": env!("CARGO_PKG_VERSION")})
}

fn router_device() -> Value {
    json!({"identifiers": ["bulkhead_router"], "name": "Bulkhead router", "manufacturer": "Bulkhead", "model": "home router daemon"})
}

/// The discovery configs of one device's entities (retained): presence
/// (`device_tracker`, `source_type: router`), zone (`sensor`), quarantined and
/// blocked (`binary_sensor`), all one HA device tied to the router.
pub fn device_configs(t: &Topics, d: &DeviceSnapshot) -> Vec<Retained> {
    let id = mac_id(&d.mac);
    let name = crate::detect::best_name_of(d);
    let device = json!({
        "identifiers": [format!("bulkhead_{id}")],
        "connections": [["mac", d.mac.to_string()]],
        "name": name,
        "manufacturer": d.vendor,
        "model": d.class,
        "via_device": "bulkhead_router",
    });
    // `default_entity_id` (HA 2025.10+) replaced `object_id`: discovery drops
    // unknown keys silently, so the retired one would just be lost.
    let common = |platform: &str, object: &str, label: &str| {
        json!({
            "unique_id": format!("bulkhead_{id}_{object}"),
            "default_entity_id": format!("{platform}.bulkhead_{id}_{object}"),
            "name": label,
            "availability_topic": t.availability(),
            "device": device,
            "origin": origin(),
        })
    };
    // Presence through the attributes' `in_zones` (HA deprecated a
    // tracker's state_topic and payload_home/not_home; they stop working in
    // HA Core 2027.1).
    let mut presence = common("device_tracker", "presence", "Presence");
    presence["source_type"] = json!("router");
    presence["json_attributes_topic"] = json!(t.state(&d.mac, "attributes"));
    let mut zone = common("sensor", "zone", "Zone");
    zone["state_topic"] = json!(t.state(&d.mac, "zone"));
    zone["icon"] = json!("mdi:shield-home");
    let mut quarantined = common("binary_sensor", "quarantined", "Quarantined");
    quarantined["state_topic"] = json!(t.state(&d.mac, "quarantined"));
    quarantined["payload_on"] = json!("ON");
    quarantined["payload_off"] = json!("OFF");
    quarantined["device_class"] = json!("problem");
    let mut blocked = common("binary_sensor", "blocked", "Blocked");
    blocked["state_topic"] = json!(t.state(&d.mac, "blocked"));
    blocked["payload_on"] = json!("ON");
    blocked["payload_off"] = json!("OFF");
    // With commands, "Blocked" is a switch (the same state topic and unique
    // id: one entity, writable) and the read-only sensor is removed; an
    // Approve button exists only while the device waits in quarantine.
    let mut block_switch = None;
    let mut approve = None;
    if t.commands {
        let mut switch = blocked.clone();
        switch["default_entity_id"] = json!(format!("switch.bulkhead_{id}_blocked"));
        switch["command_topic"] = json!(t.command(&d.mac, "blocked"));
        switch["state_on"] = json!("ON");
        switch["state_off"] = json!("OFF");
        switch["icon"] = json!("mdi:lan-disconnect");
        block_switch = Some(switch);
        if d.quarantined {
            let mut button = common("button", "approve", "Approve");
            button["command_topic"] = json!(t.command(&d.mac, "approve"));
            button["payload_press"] = json!("PRESS");
            button["icon"] = json!("mdi:check-decagram");
            approve = Some(button);
        }
    }
    let [p, z, q, b, bs, a] = t.device_configs(&d.mac);
    let payload = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_default();
    vec![
        Retained {
            topic: p,
            payload: presence.to_string(),
        },
        Retained {
            topic: z,
            payload: zone.to_string(),
        },
        Retained {
            topic: q,
            payload: quarantined.to_string(),
        },
        Retained {
            topic: b,
            payload: if block_switch.is_some() {
                String::new()
            } else {
                blocked.to_string()
            },
        },
        Retained {
            topic: bs,
            payload: payload(block_switch.as_ref()),
        },
        Retained {
            topic: a,
            payload: payload(approve.as_ref()),
        },
    ]
}

/// One device's states (retained).
pub fn device_states(t: &Topics, d: &DeviceSnapshot) -> Vec<Retained> {
    let on = |b: bool| if b { "ON" } else { "OFF" }.to_string();
    let ip = d.addresses.iter().find(|a| a.is_ipv4()).or(d.addresses.iter().next());
    let in_zones: &[&str] = if d.online { &["zone.home"] } else { &[] };
    vec![
        Retained {
            topic: t.state(&d.mac, "zone"),
            payload: d.zone.to_string(),
        },
        Retained {
            topic: t.state(&d.mac, "quarantined"),
            payload: on(d.quarantined),
        },
        Retained {
            topic: t.state(&d.mac, "blocked"),
            payload: on(d.blocked),
        },
        Retained {
            topic: t.state(&d.mac, "attributes"),
            payload: json!({
                "in_zones": in_zones,
                "mac": d.mac.to_string(),
                "ip": ip.map(ToString::to_string),
                "host_name": d.hostname,
            })
            .to_string(),
        },
    ]
}

/// A forgotten device: empty retained configs remove its entities.
pub fn device_removal(t: &Topics, mac: &MacAddr) -> Vec<Retained> {
    t.device_configs(mac)
        .into_iter()
        .map(|topic| Retained {
            topic,
            payload: String::new(),
        })
        .collect()
}

/// The router's entities (retained configs and states): the last alert (a
/// `sensor` whose state is the kind, the alert as attributes), the open
/// alerts (a count), and the tunnel's state — its config removed while no
/// tunnel is configured, so Home Assistant shows no dead entity.
pub fn router_entities(t: &Topics, r: &RouterSnapshot) -> Vec<Retained> {
    let sensor = |object: &str, name: &str, icon: &str, extra: Value| {
        let mut config = json!({
            "unique_id": format!("bulkhead_router_{object}"),
            "default_entity_id": format!("sensor.bulkhead_{object}"),
            "name": name,
            "state_topic": format!("{}/router/{object}", t.own),
            "availability_topic": t.availability(),
            "icon": icon,
            "device": router_device(),
            "origin": origin(),
        });
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        Retained {
            topic: format!("{}/sensor/bulkhead_router/{object}/config", t.discovery),
            payload: config.to_string(),
        }
    };
    // The last alert's state topic predates the router's other entities.
    let last_alert = sensor(
        "last_alert",
        "Last alert",
        "mdi:shield-alert",
        json!({
            "state_topic": format!("{}/alert/last", t.own),
            "json_attributes_topic": format!("{}/alert/last/attributes", t.own),
        }),
    );
    let mut out = vec![
        last_alert,
        sensor(
            "open_alerts",
            "Open alerts",
            "mdi:bell-alert",
            json!({"state_class": "measurement", "unit_of_measurement": "alerts"}),
        ),
        Retained {
            topic: format!("{}/router/open_alerts", t.own),
            payload: r.open_alerts.to_string(),
        },
    ];
    match &r.tunnel {
        Some(state) => {
            out.push(sensor(
                "tunnel",
                "VPN tunnel",
                "mdi:vpn",
                json!({"device_class": "enum", "options": ["down", "connecting", "up", "error"]}),
            ));
            out.push(Retained {
                topic: format!("{}/router/tunnel", t.own),
                payload: state.clone(),
            });
        }
        None => out.push(Retained {
            topic: format!("{}/sensor/bulkhead_router/tunnel/config", t.discovery),
            payload: String::new(),
        }),
    }
    out
}

/// The last alert's state and attributes (retained).
pub fn last_alert(t: &Topics, alert: &Alert, body: &str) -> Vec<Retained> {
    vec![
        Retained {
            topic: format!("{}/alert/last", t.own),
            payload: alert.kind.as_str().to_string(),
        },
        Retained {
            topic: format!("{}/alert/last/attributes", t.own),
            payload: body.to_string(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;
    use crate::core::InventorySnapshot;

    fn plug() -> DeviceSnapshot {
        let mut s = InventorySnapshot::fuzz_sample();
        let mut d = s.devices.pop_first().expect("one").1;
        d.name = None;
        d.hostname = Some("<b>plug</b>\"".into());
        d
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?") with
        // the message split as TIMESTAMP.BODY would not match it; so check
        // against ring's one-shot over the same bytes, and a fixed value.
        let sig = signature(b"key", 1_700_000_000, "{}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"key");
        let want = hmac::sign(&key, b"1700000000.{}");
        let hex: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sig, format!("sha256={hex}"));
        assert_ne!(signature(b"key", 1_700_000_001, "{}"), sig, "the timestamp is signed");
        // RFC 4231 case 2, with the timestamp part empty-free: "Jefe" over
        // "0.what do ya want for nothing?" is not the RFC's, but "Jefe" over the
        // RFC's data through the same code path is:
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let rfc = hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = rfc.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn the_webhook_body_carries_the_alert_and_the_device_as_data() {
        let d = plug();
        let mut a = Alert::new(1_700_000_000, AlertKind::Probing, Some(d.mac), "x \"probing\"".into());
        a.id = 7;
        let v: Value = serde_json::from_str(&webhook_body(&a, Some(&d))).expect("json");
        assert_eq!(v["kind"], "probing");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["id"], 7);
        assert_eq!(v["device"]["zone"], "trusted");
        assert_eq!(v["message"], "x \"probing\"");
        assert!(v["device"]["name"].as_str().is_some_and(|n| n.contains("<b>plug</b>")));
    }

    #[test]
    fn ntfy_headers_are_ascii_and_say_how_much_it_matters() {
        let mut a = Alert::new(0, AlertKind::DeviceOffline, None, "Caméra \u{202e} went offline".into());
        a.count = 3;
        let h = ntfy_headers(&a);
        assert!(h.iter().all(|(_, v)| v.is_ascii()));
        assert!(h.contains(&("Priority", "4".into())));
        assert!(h.contains(&("Title", "Bulkhead: device-offline (x3)".into())));
    }

    #[test]
    fn the_gate_filters_kinds_severity_and_rate() {
        let filter = ChannelFilter {
            kinds: ["probing".to_string(), "device-classified".to_string()].into(),
            min_severity: Severity::Warning,
            per_hour: 20,
            quiet: None,
            quiet_min_severity: Severity::Critical,
        };
        let mut g = Gate::new(filter);
        let probing = Alert::new(0, AlertKind::Probing, None, String::new());
        let classified = Alert::new(0, AlertKind::DeviceClassified, None, String::new());
        let offline = Alert::new(0, AlertKind::DeviceOffline, None, String::new());
        assert!(!g.admit(&classified, 0, 0), "below the severity");
        assert!(!g.admit(&offline, 0, 0), "not one of its kinds");
        assert!(g.admit(&probing, 0, 0) && g.admit(&probing, 0, 0), "a burst of a tenth");
        assert!(!g.admit(&probing, 0, 0), "then the rate");
        assert_eq!(g.rate_limited, 1);
        assert!(g.admit(&probing, 180, 0), "20 an hour: one every 3 minutes");
    }

    #[test]
    fn quiet_hours_hold_back_all_but_urgent_alerts_in_local_time() {
        let filter = ChannelFilter {
            kinds: Default::default(),
            min_severity: Severity::Info,
            per_hour: 3600,
            quiet: crate::config::QuietHours::parse("22:00-07:00"),
            quiet_min_severity: Severity::Critical,
        };
        let mut g = Gate::new(filter);
        let offline = Alert::new(0, AlertKind::DeviceOffline, None, String::new());
        let probing = Alert::new(0, AlertKind::Probing, None, String::new());
        // 2026-12-06 22:30 UTC is 23:30 in Central Europe (UTC+1): quiet.
        let t = 1_796_596_200;
        assert!(!g.admit(&offline, t, 3600), "a warning waits for the morning");
        assert!(g.admit(&probing, t, 3600), "a scan is urgent: it goes out");
        assert_eq!(g.quiet, 1);
        // The same instant is 17:30 in New York (UTC-5): not quiet.
        assert!(g.admit(&offline, t, -5 * 3600));
        // 07:00 local ends it.
        assert!(g.admit(&offline, t + 7 * 3600 + 30 * 60, 3600), "08:00 local");
        assert!(!g.admit(&offline, t + 7 * 3600, 3600), "06:30 local: still quiet");
    }

    /// The fixture: Home Assistant's discovery keys, with their sources.
    const HA_SCHEMA: &str = include_str!("testdata/ha_mqtt_discovery.json");

    /// Holds one discovery config to the fixture: known keys only (HA drops
    /// the others silently), none retired or deprecated, the platform's
    /// required ones, a device with an identifier, an origin with a name.
    fn check_against_home_assistant(topic: &str, payload: &str) {
        let schema: Value = serde_json::from_str(HA_SCHEMA).expect("fixture");
        let platform = topic.split('/').nth(1).expect("homeassistant/PLATFORM/…");
        let p = &schema["platforms"][platform];
        assert!(p.is_object(), "{topic}: a platform the fixture does not have");
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("list")
                .iter()
                .map(|s| s.as_str().expect("text").to_string())
                .collect()
        };
        let config: Value = serde_json::from_str(payload).expect("json");
        let keys: Vec<&String> = config.as_object().expect("object").keys().collect();
        let (common, own) = (list(&schema["common"]), list(&p["keys"]));
        for k in &keys {
            assert!(
                common.contains(k) || own.contains(k),
                "{topic}: `{k}` is not a key HA knows"
            );
            assert!(!list(&schema["retired"]).contains(k), "{topic}: `{k}` is retired");
            assert!(!list(&p["deprecated"]).contains(k), "{topic}: `{k}` is deprecated");
        }
        for k in list(&p["required"]) {
            assert!(config[&k].is_string(), "{topic}: `{k}` is required");
        }
        let any = list(&p["required_any"]);
        assert!(
            any.is_empty() || any.iter().any(|k| config[k].is_string()),
            "{topic}: one of {any:?} is required"
        );
        let device = &config["device"];
        for k in device.as_object().expect("a device").keys() {
            assert!(list(&schema["device"]).contains(k), "{topic}: device `{k}`");
        }
        assert!(
            device["identifiers"].as_array().is_some_and(|a| !a.is_empty())
                || device["connections"].as_array().is_some_and(|a| !a.is_empty()),
            "{topic}: a device needs identifiers or connections"
        );
        assert!(config["origin"]["name"].is_string(), "{topic}: origin needs a name");
        let entity = config["default_entity_id"].as_str().expect("default_entity_id");
        assert!(entity.starts_with(&format!("{platform}.")), "{topic}: {entity}");
    }

    #[test]
    fn every_discovery_config_is_one_home_assistant_accepts() {
        for commands in [false, true] {
            let t = Topics {
                discovery: "homeassistant".into(),
                own: "bulkhead".into(),
                commands,
            };
            let mut d = plug();
            for quarantined in [false, true] {
                d.quarantined = quarantined;
                let configs = device_configs(&t, &d);
                assert_eq!(configs.len(), 6);
                for c in configs.iter().filter(|c| !c.payload.is_empty()) {
                    assert!(c.topic.starts_with("homeassistant/") && c.topic.ends_with("/config"));
                    check_against_home_assistant(&c.topic, &c.payload);
                }
            }
            let router = RouterSnapshot {
                tunnel: Some("up".into()),
                open_alerts: 1,
            };
            for r in router_entities(&t, &router)
                .iter()
                .filter(|r| r.topic.ends_with("/config"))
            {
                check_against_home_assistant(&r.topic, &r.payload);
            }
        }
    }

    #[test]
    fn presence_is_the_home_zone_in_the_tracker_s_attributes() {
        let t = Topics {
            discovery: "homeassistant".into(),
            own: "bulkhead".into(),
            commands: false,
        };
        let mut d = plug();
        let tracker: Value = serde_json::from_str(&device_configs(&t, &d)[0].payload).expect("json");
        assert_eq!(tracker["source_type"], "router");
        let attributes_topic = tracker["json_attributes_topic"].as_str().expect("topic").to_string();
        let attributes = |d: &DeviceSnapshot| -> Value {
            let states = device_states(&t, d);
            let a = states.iter().find(|s| s.topic == attributes_topic).expect("attributes");
            serde_json::from_str(&a.payload).expect("json")
        };
        d.online = true;
        assert_eq!(attributes(&d)["in_zones"], json!(["zone.home"]));
        d.online = false;
        assert_eq!(attributes(&d)["in_zones"], json!([]));
        assert!(device_removal(&t, &d.mac).iter().all(|r| r.payload.is_empty()));
    }

    #[test]
    fn with_commands_blocked_is_a_switch_and_a_quarantined_device_has_approve() {
        let t = Topics {
            discovery: "homeassistant".into(),
            own: "bulkhead".into(),
            commands: true,
        };
        let mut d = plug();
        d.quarantined = true;
        let configs = device_configs(&t, &d);
        let id = mac_id(&d.mac);
        assert!(configs[3].payload.is_empty(), "the read-only sensor goes");
        let switch: Value = serde_json::from_str(&configs[4].payload).expect("switch");
        assert_eq!(switch["command_topic"], format!("bulkhead/device/{id}/blocked/set"));
        assert_eq!(switch["state_topic"], format!("bulkhead/device/{id}/blocked"));
        let button: Value = serde_json::from_str(&configs[5].payload).expect("button");
        assert_eq!(button["command_topic"], format!("bulkhead/device/{id}/approve/set"));
        d.quarantined = false;
        assert!(device_configs(&t, &d)[5].payload.is_empty(), "approved: no button");

        let cmd = |topic: &str, payload: &[u8]| parse_command(&t, topic, payload);
        assert_eq!(
            cmd(&format!("bulkhead/device/{id}/approve/set"), b"PRESS"),
            Some(Command::Approve(d.mac))
        );
        assert_eq!(
            cmd(&format!("bulkhead/device/{id}/blocked/set"), b"ON"),
            Some(Command::Block(d.mac, true))
        );
        assert_eq!(
            cmd(&format!("bulkhead/device/{id}/blocked/set"), b"OFF"),
            Some(Command::Block(d.mac, false))
        );
        for (topic, payload) in [
            (format!("bulkhead/device/{id}/blocked/set"), &b"maybe"[..]),
            (format!("bulkhead/device/{id}/zone/set"), b"trusted"),
            (format!("bulkhead/device/{id}/blocked/set/x"), b"ON"),
            ("bulkhead/device/zz0000000000/blocked/set".to_string(), b"ON"),
            ("bulkhead/device/é00000000000/blocked/set".to_string(), b"ON"),
            ("other/device/0a0000000001/blocked/set".to_string(), b"ON"),
            ("bulkhead/device/".to_string(), b""),
        ] {
            assert_eq!(cmd(&topic, payload), None, "{topic}");
        }
    }

    #[test]
    fn the_router_shows_open_alerts_and_the_tunnel_only_when_there_is_one() {
        let t = Topics {
            discovery: "homeassistant".into(),
            own: "bulkhead".into(),
            commands: false,
        };
        let with_tunnel = router_entities(
            &t,
            &RouterSnapshot {
                tunnel: Some("up".into()),
                open_alerts: 3,
            },
        );
        let get = |all: &[Retained], topic: &str| {
            all.iter()
                .find(|r| r.topic == topic)
                .map(|r| r.payload.clone())
                .unwrap_or_else(|| panic!("no {topic} in {all:?}"))
        };
        assert_eq!(get(&with_tunnel, "bulkhead/router/open_alerts"), "3");
        assert_eq!(get(&with_tunnel, "bulkhead/router/tunnel"), "up");
        for object in ["last_alert", "open_alerts", "tunnel"] {
            let config: Value = serde_json::from_str(&get(
                &with_tunnel,
                &format!("homeassistant/sensor/bulkhead_router/{object}/config"),
            ))
            .expect("json");
            for field in ["state_topic", "unique_id", "availability_topic", "name"] {
                assert!(config[field].is_string(), "{object}: {field} in {config}");
            }
            assert_eq!(config["device"]["identifiers"][0], "bulkhead_router");
        }
        let last: Value = serde_json::from_str(&get(
            &with_tunnel,
            "homeassistant/sensor/bulkhead_router/last_alert/config",
        ))
        .expect("json");
        assert_eq!(last["state_topic"], "bulkhead/alert/last");
        let without = router_entities(&t, &RouterSnapshot::default());
        assert_eq!(get(&without, "homeassistant/sensor/bulkhead_router/tunnel/config"), "");
        assert!(!without.iter().any(|r| r.topic == "bulkhead/router/tunnel"));
    }
}
