//! An in-memory [`Backend`] for tests and benchmarks: a small demo home, or any
//! number of generated devices. It applies device actions to its own state (so
//! pages show their effect) and records each one. Its resolver keeps a query
//! log (with hostile names in the demo's) and counts as the daemon's does.

use std::sync::{Mutex, MutexGuard};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::broadcast;

use crate::backend::{Backend, BackendError, BackendFuture};
use crate::model::{
    AckTarget, AlertView, AuthRecord, DeviceAction, DeviceDetail, DeviceSummary, DeviceTrafficView, DnsDeviceCounts,
    DnsListView, DnsLogQuery, DnsOutcome, DnsQueryView, DnsSummaryView, DnsUpstreamView, EvidenceItem, FlowView,
    LiveEvent, NotificationsView, NotifyChannelView, NotifyDeliveryView, PathFlowsView, RuleMatch, ShareAction,
    SharePresetView, ShareView, SharingView, TrafficPoint, TrafficView, TxtEntry, VpnPeer, VpnTransition, VpnView,
    ZoneMember, ZoneView,
};
use crate::Health;

mod demo;
pub use demo::*;

/// The setup token of [`FakeBackend::unconfigured`].
pub const SETUP_TOKEN: &str = "fake-setup-token-0123456789abcdef";

/// An in-memory backend.
pub struct FakeBackend {
    state: Mutex<FakeState>,
    live: broadcast::Sender<LiveEvent>,
}

struct FakeState {
    devices: Vec<DeviceDetail>,
    zones: Vec<ZoneView>,
    alerts: Vec<AlertView>,
    vpn: VpnView,
    auth: AuthRecord,
    actions: Vec<(String, DeviceAction)>,
    unavailable: bool,
    auth_asked: usize,
    /// The resolver; `None`: off.
    dns: Option<FakeDns>,
    /// The notification channels.
    notify: NotificationsView,
    /// The channels a test was sent to, in order.
    tests_sent: Vec<String>,
    /// What is shared across zones.
    sharing: SharingView,
    /// Traffic per device (with series); `None`: counting is off.
    traffic: Option<Vec<DeviceTrafficView>>,
}

impl FakeBackend {
    fn from_parts(devices: Vec<DeviceDetail>, alerts: Vec<AlertView>, auth: AuthRecord, dns: FakeDns) -> FakeBackend {
        let (live, _) = broadcast::channel(64);
        FakeBackend {
            state: Mutex::new(FakeState {
                devices,
                zones: default_zones(),
                alerts,
                vpn: Self::demo_vpn(),
                auth,
                actions: Vec::new(),
                unavailable: false,
                auth_asked: 0,
                dns: Some(dns),
                notify: Self::demo_notify(),
                tests_sent: Vec::new(),
                sharing: Self::demo_sharing(),
                traffic: Some(Self::demo_traffic()),
            }),
            live,
        }
    }

    /// A small home: a laptop and a phone in trusted, a camera, a plug, a TV and
    /// a speaker in iot (the TV routed through the tunnel), one unknown device in
    /// quarantine, a few alerts; the password is `correct horse battery`.
    pub fn demo() -> FakeBackend {
        let now = crate::format::now();
        let mut devices = Vec::new();
        let mut add =
            |mac: &str, name: Option<&str>, host: &str, zone: &str, class: &str, vendor: &str, online: bool| {
                let mut d = sample_device(mac, name, Some(host), zone);
                if zone != "unknown" {
                    d.device.class = Some(class.into());
                    if let Some(r) = d.rule.as_mut() {
                        r.class = class.into();
                        r.zone = Some(zone.into());
                    }
                }
                d.device.vendor = Some(vendor.into());
                d.device.online = online;
                if !online {
                    d.device.last_seen = now - 7200;
                }
                let n = devices.len() + 10;
                d.device.addresses = vec![format!("192.168.1.{n}")];
                devices.push(d);
            };
        add(
            "02:00:00:00:01:01",
            Some("Anna's laptop"),
            "anna-laptop",
            "trusted",
            "laptop",
            "Framework",
            true,
        );
        add("02:00:00:00:01:02", None, "pixel-7", "trusted", "phone", "Google", true);
        add(
            "02:00:00:00:02:01",
            Some("Front door camera"),
            "cam-frontdoor",
            "iot",
            "camera",
            "Reolink",
            true,
        );
        add(
            "02:00:00:00:02:02",
            None,
            "plug-kitchen",
            "iot",
            "plug",
            "Shelly",
            false,
        );
        add(
            "02:00:00:00:02:03",
            Some("Living room TV"),
            "tv-livingroom",
            "iot",
            "media",
            "LG",
            true,
        );
        add(
            "02:00:00:00:02:04",
            None,
            "speaker-kitchen",
            "iot",
            "media",
            "Sonos",
            true,
        );
        add("02:00:00:00:09:01", None, "esp-3f2a", "unknown", "", "Espressif", true);
        devices[4].device.tunnel_choice = Some(true);
        let mut held = alert(
            3,
            now - 60,
            "new-device-quarantined",
            Some("02:00:00:00:09:01"),
            "esp-3f2a joined and waits in unknown until you approve it",
            false,
        );
        held.facts.zone = Some("unknown".into());
        held.facts.class = Some("plug".into());
        held.facts.suggested_zone = Some("iot".into());
        let alerts = vec![
            held,
            alert(2, now - 3600, "tunnel-up", None, "The tunnel is up", false),
            alert(
                1,
                now - 86_400,
                "new-device",
                Some("02:00:00:00:01:02"),
                "New device pixel-7 joined trusted",
                true,
            ),
        ];
        FakeBackend::from_parts(
            devices,
            alerts,
            AuthRecord {
                password_hash: Some(cheap_hash("correct horse battery")),
                setup_token: None,
            },
            demo_dns(now),
        )
    }

    /// `n` generated devices across the zones (a tenth in quarantine, a third
    /// offline), signed in with `correct horse battery`: the benchmark's home.
    pub fn with_devices(n: usize) -> FakeBackend {
        let now = crate::format::now();
        const CLASSES: [&str; 6] = ["camera", "plug", "media", "laptop", "phone", "speaker"];
        const VENDORS: [&str; 5] = ["Reolink", "Shelly", "LG", "Sonos", "Espressif"];
        const ZONES: [&str; 3] = ["trusted", "iot", "guest"];
        let devices = (0..n)
            .map(|i| {
                let (hi, lo) = ((i >> 8) & 0xff, i & 0xff);
                let mac = format!("02:00:00:01:{hi:02x}:{lo:02x}");
                let zone = if i % 10 == 9 { "unknown" } else { ZONES[i % 3] };
                let host = format!("device-{i:04}");
                let name = format!("Device {i:04}");
                let mut d = sample_device(&mac, (i % 2 == 0).then_some(name.as_str()), Some(&host), zone);
                if zone != "unknown" {
                    d.device.class = Some(CLASSES[i % CLASSES.len()].into());
                }
                d.device.vendor = Some(VENDORS[i % VENDORS.len()].into());
                d.device.online = i % 3 != 0;
                d.device.last_seen = now - i64::try_from(i).unwrap_or(0) * 97;
                d.device.addresses = vec![format!("10.{}.{}.{}", (i >> 16) & 0xff, hi, lo)];
                d
            })
            .collect();
        FakeBackend::from_parts(
            devices,
            Vec::new(),
            AuthRecord {
                password_hash: Some(cheap_hash("correct horse battery")),
                setup_token: None,
            },
            FakeDns::new(vec![upstream(DEMO_UPSTREAM, false, 0, 0, 0, 0)], Vec::new()),
        )
    }

    /// The demo home before its first visit: no password, setup token [`SETUP_TOKEN`].
    pub fn unconfigured() -> FakeBackend {
        let f = FakeBackend::demo();
        f.lock().auth = AuthRecord {
            password_hash: None,
            setup_token: Some(SETUP_TOKEN.into()),
        };
        f
    }

    fn demo_vpn() -> VpnView {
        let now = crate::format::now();
        VpnView {
            configured: true,
            state: "up".into(),
            interface: Some("bh-vpn".into()),
            public_key: Some("hX7fcEJ4o0SdmYcWcbAqBL/GQh5Hqf1QiZ2pVAMn+kU=".into()),
            listen_port: Some(51820),
            peers: vec![VpnPeer {
                public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
                endpoint_config: Some("vpn.example.net:51820".into()),
                endpoint: Some("203.0.113.7:51820".into()),
                last_handshake: Some(now - 42),
                rx_bytes: 123_456_789,
                tx_bytes: 9_876_543,
                allowed_ips: vec!["0.0.0.0/0".into(), "::/0".into()],
            }],
            attempts: 0,
            transitions: vec![
                VpnTransition {
                    at: now - 3605,
                    from: "down".into(),
                    to: "connecting".into(),
                    reason: "configured".into(),
                },
                VpnTransition {
                    at: now - 3600,
                    from: "connecting".into(),
                    to: "up".into(),
                    reason: "handshake completed".into(),
                },
            ],
            routed: vec![
                "zone iot".into(),
                "device 02:00:00:00:02:03 (homeowner's choice)".into(),
            ],
            leak_guard_drops: Some(17),
        }
    }

    /// Three channels: a webhook whose last try failed (with hostile text in
    /// the error), an ntfy topic, and an MQTT broker.
    fn demo_notify() -> NotificationsView {
        let now = crate::format::now();
        let delivery = |at, alert, kind: &str, ok, detail: &str| NotifyDeliveryView {
            at,
            alert,
            kind: kind.into(),
            ok,
            detail: detail.into(),
        };
        NotificationsView {
            channels: vec![
                NotifyChannelView {
                    name: "home".into(),
                    kind: "webhook".into(),
                    target: "https://hooks.example.org".into(),
                    sends: "every kind, at most 60 an hour".into(),
                    sent: 4,
                    failed: 1,
                    last_delivered: Some(now - 300),
                    last_error: Some("<script>alert('hook')</script> connection refused".into()),
                    log: vec![
                        delivery(now - 60, 3, "probing", false, "<b>connection refused</b>"),
                        delivery(now - 300, 2, "new-device", true, "HTTP 200"),
                    ],
                    ..NotifyChannelView::default()
                },
                NotifyChannelView {
                    name: "phone".into(),
                    kind: "ntfy".into(),
                    target: "https://ntfy.example.org".into(),
                    sends: "probing, lateral-attempt, warning and above, at most 20 an hour".into(),
                    ..NotifyChannelView::default()
                },
                NotifyChannelView {
                    name: "mqtt".into(),
                    kind: "mqtt".into(),
                    target: "10.0.9.2:1883".into(),
                    sends: "every kind, at most 60 an hour".into(),
                    sent: 2,
                    connected: Some(true),
                    last_delivered: Some(now - 120),
                    log: vec![delivery(now - 120, 3, "probing", true, "")],
                    ..NotifyChannelView::default()
                },
            ],
            missed: 0,
        }
    }

    /// Replaces the notification channels.
    pub fn set_notifications(&self, n: NotificationsView) {
        self.lock().notify = n;
    }

    /// The channels a test was sent to, in order.
    pub fn tests_sent(&self) -> Vec<String> {
        self.lock().tests_sent.clone()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds (or replaces, by MAC) a device.
    pub fn insert_device(&self, d: DeviceDetail) {
        let mut s = self.lock();
        s.devices.retain(|x| x.device.mac != d.device.mac);
        s.devices.push(d);
    }

    /// Adds an alert (it becomes the newest).
    pub fn push_alert(&self, a: AlertView) {
        self.lock().alerts.insert(0, a);
    }

    /// Replaces the tunnel.
    pub fn set_vpn(&self, vpn: VpnView) {
        self.lock().vpn = vpn;
    }

    /// Every call fails with [`BackendError::Unavailable`] while set.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Turns the resolver off (`dns_log` and `dns_summary` answer `None`), or
    /// on again with an empty log and zero counters.
    pub fn set_resolver(&self, on: bool) {
        let mut s = self.lock();
        s.dns = on.then(|| FakeDns::new(vec![upstream(DEMO_UPSTREAM, false, 0, 0, 0, 0)], Vec::new()));
    }

    /// Logs and counts a question (it becomes the newest); the resolver must be on.
    pub fn push_dns_query(&self, q: DnsQueryView) {
        self.lock().dns.as_mut().expect("the fake resolver is on").push(q);
    }

    /// The resolver's counters, if it is on.
    pub fn dns_summary_view(&self) -> Option<DnsSummaryView> {
        self.lock().dns.as_ref().map(|d| d.summary.clone())
    }

    /// Replaces one device's traffic (adds it if new); `None` turns counting
    /// off.
    pub fn set_traffic(&self, t: Option<DeviceTrafficView>) {
        let mut s = self.lock();
        match t {
            None => s.traffic = None,
            Some(t) => {
                let all = s.traffic.get_or_insert_with(Vec::new);
                all.retain(|x| x.mac != t.mac);
                all.push(t);
            }
        }
    }

    /// A fake home's traffic: the camera uploads, the laptop browses; a
    /// minute series of the last hour ending `now`.
    fn demo_traffic() -> Vec<DeviceTrafficView> {
        let now = crate::format::now();
        let minute = now - now.rem_euclid(60);
        let series = |per_minute: u64| -> Vec<TrafficPoint> {
            (0..60)
                .map(|i| TrafficPoint {
                    at: minute - 60 * (59 - i),
                    received: per_minute * (1 + (i as u64 % 5)),
                    sent: per_minute / 20,
                })
                .collect()
        };
        let view = |mac: &str, per_minute: u64| {
            let minutes = series(per_minute);
            let received: u64 = minutes.iter().map(|p| p.received).sum();
            let sent: u64 = minutes.iter().map(|p| p.sent).sum();
            DeviceTrafficView {
                mac: mac.into(),
                name: None,
                sent: PathFlowsView {
                    internet: FlowView {
                        bytes: sent,
                        packets: sent / 1000,
                    },
                    ..PathFlowsView::default()
                },
                received: PathFlowsView {
                    internet: FlowView {
                        bytes: received,
                        packets: received / 1400,
                    },
                    ..PathFlowsView::default()
                },
                last_hour_received: received,
                last_hour_sent: sent,
                last_day_received: received,
                last_day_sent: sent,
                minutes,
                hours: Vec::new(),
            }
        };
        vec![
            view("02:00:00:00:02:01", 40_000_000),
            view("02:00:00:00:01:01", 2_000_000),
        ]
    }

    /// The whole query log, newest first, if the resolver is on.
    pub fn dns_queries(&self) -> Option<Vec<DnsQueryView>> {
        self.lock().dns.as_ref().map(|d| d.log.clone())
    }

    /// The device actions received, in order.
    pub fn actions(&self) -> Vec<(String, DeviceAction)> {
        self.lock().actions.clone()
    }

    /// The device list as [`Backend::devices`] returns it.
    pub fn device_list(&self) -> Vec<DeviceSummary> {
        self.lock().devices.iter().map(|d| d.device.clone()).collect()
    }

    /// The alerts, newest first.
    pub fn alert_list(&self) -> Vec<AlertView> {
        self.lock().alerts.clone()
    }

    /// The tunnel.
    pub fn vpn_view(&self) -> VpnView {
        self.lock().vpn.clone()
    }

    /// How often [`Backend::auth`] was called.
    pub fn auth_asked(&self) -> usize {
        self.lock().auth_asked
    }

    /// The stored password hash and setup token.
    pub fn auth_record(&self) -> AuthRecord {
        self.lock().auth.clone()
    }

    /// Forgets the password and makes [`SETUP_TOKEN`] the setup token again,
    /// as `bulkhead reset-password` does.
    pub fn reset_password(&self) {
        self.lock().auth = AuthRecord {
            password_hash: None,
            setup_token: Some(SETUP_TOKEN.to_string()),
        };
    }

    /// Sends a live event, as the daemon does when something changes.
    pub fn notify(&self, e: LiveEvent) {
        let _ = self.live.send(e);
    }

    /// Two presets; casting shared from iot to trusted by a policy file.
    fn demo_sharing() -> SharingView {
        let preset = |name: &str, description: &str, services: &[&str], ports: &[&str]| SharePresetView {
            name: name.into(),
            description: description.into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            ports: ports.iter().map(|s| s.to_string()).collect(),
        };
        SharingView {
            presets: vec![
                preset(
                    "chromecast",
                    "Google Cast: Chromecast, Google TV",
                    &["_googlecast._tcp", "urn:dial-multiscreen-org:service:dial:1"],
                    &["tcp/8008-8009"],
                ),
                preset("printer", "Network printers", &["_ipp._tcp"], &["tcp/631"]),
            ],
            shares: vec![ShareView {
                name: "chromecast".into(),
                from: vec!["iot".into()],
                to: vec!["trusted".into()],
                homeowner: false,
            }],
        }
    }

    fn zone_views(s: &FakeState) -> Vec<ZoneView> {
        s.zones
            .iter()
            .map(|z| ZoneView {
                members: s
                    .devices
                    .iter()
                    .filter(|d| d.device.zone == z.id)
                    .map(|d| ZoneMember {
                        mac: d.device.mac.clone(),
                        name: d.device.name.clone().or_else(|| d.device.hostname.clone()),
                        online: d.device.online,
                    })
                    .collect(),
                ..z.clone()
            })
            .collect()
    }

    fn apply(s: &mut FakeState, mac: &str, action: &DeviceAction) -> Result<String, BackendError> {
        let zone_ids: Vec<String> = s.zones.iter().map(|z| z.id.clone()).collect();
        let tunnel_zones: Vec<String> = s.zones.iter().filter(|z| z.tunnel).map(|z| z.id.clone()).collect();
        let known_zone = |z: &str| {
            if zone_ids.iter().any(|x| x == z) {
                Ok(())
            } else {
                Err(BackendError::Refused(format!("unknown zone `{}`", z.escape_debug())))
            }
        };
        if let DeviceAction::Link { known } = action {
            // The known device's name and zone move to the new MAC; the old
            // entry is retired.
            let old = s
                .devices
                .iter()
                .position(|d| &d.device.mac == known)
                .ok_or_else(|| BackendError::Refused(format!("{known} is not a known device")))?;
            let old = s.devices.remove(old).device;
            let d = s
                .devices
                .iter_mut()
                .find(|d| d.device.mac == mac)
                .ok_or_else(|| BackendError::NotFound(format!("no device {mac}")))?;
            d.device.name = old.name;
            d.device.zone = old.zone;
            d.device.zone_reason = "user-choice".into();
            d.device.quarantined = old.quarantined;
            return Ok(format!("{mac} is {known} from now on"));
        }
        if matches!(action, DeviceAction::Forget) {
            let before = s.devices.len();
            s.devices.retain(|d| d.device.mac != mac);
            if s.devices.len() == before {
                return Err(BackendError::NotFound(format!("no device {mac}")));
            }
            return Ok(format!("{mac} is forgotten"));
        }
        let d = s
            .devices
            .iter_mut()
            .find(|d| d.device.mac == mac)
            .ok_or_else(|| BackendError::NotFound(format!("no device {mac}")))?;
        let dev = &mut d.device;
        let message = match action {
            DeviceAction::Rename { name } => {
                let name = name.as_deref().map(str::trim).filter(|n| !n.is_empty());
                if name.is_some_and(|n| n.chars().count() > 64) {
                    return Err(BackendError::Refused("a name has at most 64 characters".into()));
                }
                dev.name = name.map(str::to_string);
                match name {
                    Some(n) => format!("{mac} is now called {n}"),
                    None => format!("{mac} has no name now"),
                }
            }
            DeviceAction::SetZone { zone } => {
                known_zone(zone)?;
                dev.zone = zone.clone();
                dev.zone_reason = "user-choice".into();
                dev.quarantined = zone == "unknown";
                format!("{mac} moved to {zone}")
            }
            DeviceAction::Approve { zone } => {
                if !dev.quarantined {
                    return Err(BackendError::Refused(format!("{mac} is not in quarantine")));
                }
                let to = zone
                    .clone()
                    .or_else(|| d.rule.as_ref().and_then(|r| r.zone.clone()))
                    .unwrap_or_else(|| "trusted".into());
                known_zone(&to)?;
                let dev = &mut d.device;
                dev.zone = to.clone();
                dev.zone_reason = "user-choice".into();
                dev.quarantined = false;
                format!("{mac} approved into {to}")
            }
            DeviceAction::Tunnel { route } => {
                dev.tunnel_choice = *route;
                dev.tunnel_routed = route.unwrap_or_else(|| tunnel_zones.contains(&dev.zone));
                match route {
                    Some(true) => format!("{mac} now goes through the tunnel"),
                    Some(false) => format!("{mac} now goes direct"),
                    None => format!("{mac} follows the policy"),
                }
            }
            DeviceAction::Watch { watched } => {
                dev.watched = *watched;
                if *watched {
                    format!("{mac} is watched")
                } else {
                    format!("{mac} is no longer watched")
                }
            }
            DeviceAction::Forget | DeviceAction::Link { .. } => unreachable!("handled above"),
            DeviceAction::Block { blocked } => {
                dev.blocked = *blocked;
                if *blocked {
                    format!("{mac} is blocked")
                } else {
                    format!("{mac} is unblocked")
                }
            }
        };
        Ok(message)
    }

    /// An alert as the daemon hands it over: its device's name now and what
    /// can still be done (as the daemon decides it).
    fn as_read(s: &FakeState, a: &AlertView) -> AlertView {
        let device = |mac: &Option<String>| {
            mac.as_ref()
                .and_then(|m| s.devices.iter().find(|d| &d.device.mac == m))
                .map(|d| &d.device)
        };
        let name = |d: &DeviceSummary| Some(d.display_name().to_string()).filter(|n| n != &d.mac);
        let mut a = a.clone();
        let dev = device(&a.mac);
        a.name = dev.and_then(name);
        a.facts.other_name = device(&a.facts.other).and_then(name);
        a.actions.clear();
        if let Some(d) = dev.filter(|d| !d.blocked) {
            let placement = matches!(
                a.kind.as_str(),
                "new-device-quarantined" | "new-device" | "device-classified"
            );
            if placement && d.quarantined {
                a.actions.extend(["approve".to_string(), "block".to_string()]);
            }
            if matches!(
                a.kind.as_str(),
                "probing" | "lateral-attempt" | "dns-bypass" | "spoofing"
            ) {
                a.actions.push("block".into());
            }
            if a.kind == "identity-suggestion" && device(&a.facts.other).is_some() {
                a.actions.push("link".into());
            }
        }
        a
    }

    fn check(&self) -> Result<MutexGuard<'_, FakeState>, BackendError> {
        let s = self.lock();
        if s.unavailable {
            return Err(BackendError::Unavailable("the fake daemon is down".into()));
        }
        Ok(s)
    }
}

impl Backend for FakeBackend {
    fn health(&self) -> Health {
        let s = self.lock();
        Health {
            devices: s.devices.len(),
            zones: FakeBackend::zone_views(&s)
                .into_iter()
                .map(|z| (z.id, z.members.len()))
                .collect(),
        }
    }

    fn devices(&self) -> BackendFuture<'_, Vec<DeviceSummary>> {
        Box::pin(async move { Ok(self.check()?.devices.iter().map(|d| d.device.clone()).collect()) })
    }

    fn device(&self, mac: String) -> BackendFuture<'_, DeviceDetail> {
        Box::pin(async move {
            self.check()?
                .devices
                .iter()
                .find(|d| d.device.mac == mac)
                .cloned()
                .ok_or_else(|| BackendError::NotFound(format!("no device {mac}")))
        })
    }

    fn device_action(&self, mac: String, action: DeviceAction) -> BackendFuture<'_, String> {
        Box::pin(async move {
            let message = {
                let mut s = self.check()?;
                s.actions.push((mac.clone(), action.clone()));
                FakeBackend::apply(&mut s, &mac, &action)?
            };
            self.notify(LiveEvent::Devices);
            Ok(message)
        })
    }

    fn zones(&self) -> BackendFuture<'_, Vec<ZoneView>> {
        Box::pin(async move {
            let s = self.check()?;
            Ok(FakeBackend::zone_views(&s))
        })
    }

    fn sharing(&self) -> BackendFuture<'_, SharingView> {
        Box::pin(async move { Ok(self.check()?.sharing.clone()) })
    }

    fn share(&self, action: ShareAction) -> BackendFuture<'_, String> {
        Box::pin(async move {
            let mut s = self.check()?;
            if !s.sharing.presets.iter().any(|p| p.name == action.preset) {
                return Err(BackendError::Refused(format!("no preset `{}`", action.preset)));
            }
            for z in [&action.from, &action.to] {
                if !s.zones.iter().any(|v| &v.id == z) {
                    return Err(BackendError::Refused(format!("unknown zone `{z}`")));
                }
            }
            if action.from == action.to {
                return Err(BackendError::Refused("choose two different zones".into()));
            }
            let same = |v: &ShareView| {
                v.homeowner && v.name == action.preset && v.from == [action.from.clone()] && v.to == [action.to.clone()]
            };
            if action.on {
                if !s.sharing.shares.iter().any(same) {
                    s.sharing.shares.push(ShareView {
                        name: action.preset.clone(),
                        from: vec![action.from.clone()],
                        to: vec![action.to.clone()],
                        homeowner: true,
                    });
                }
                Ok(format!(
                    "{} is shared from {} to {}",
                    action.preset, action.from, action.to
                ))
            } else {
                let before = s.sharing.shares.len();
                s.sharing.shares.retain(|v| !same(v));
                if s.sharing.shares.len() == before {
                    return Err(BackendError::Refused("that is not shared from here".into()));
                }
                Ok(format!(
                    "{} is no longer shared from {} to {}",
                    action.preset, action.from, action.to
                ))
            }
        })
    }

    fn alerts(&self, limit: usize) -> BackendFuture<'_, Vec<AlertView>> {
        Box::pin(async move {
            let s = self.check()?;
            Ok(s.alerts
                .iter()
                .take(limit)
                .map(|a| FakeBackend::as_read(&s, a))
                .collect())
        })
    }

    fn acknowledge(&self, target: AckTarget) -> BackendFuture<'_, usize> {
        Box::pin(async move {
            let n = {
                let mut s = self.check()?;
                match target {
                    AckTarget::One(id) => {
                        let a = s
                            .alerts
                            .iter_mut()
                            .find(|a| a.id == id)
                            .ok_or_else(|| BackendError::NotFound(format!("no alert {id}")))?;
                        let changed = !a.acknowledged;
                        a.acknowledged = true;
                        usize::from(changed)
                    }
                    AckTarget::All => {
                        let n = s.alerts.iter().filter(|a| !a.acknowledged).count();
                        s.alerts.iter_mut().for_each(|a| a.acknowledged = true);
                        n
                    }
                }
            };
            self.notify(LiveEvent::Alerts);
            Ok(n)
        })
    }

    fn vpn(&self) -> BackendFuture<'_, VpnView> {
        Box::pin(async move { Ok(self.check()?.vpn.clone()) })
    }

    fn dns_log(&self, query: DnsLogQuery) -> BackendFuture<'_, Option<Vec<DnsQueryView>>> {
        Box::pin(async move {
            Ok(self.check()?.dns.as_ref().map(|d| {
                d.log
                    .iter()
                    .filter(|q| query.matches(q))
                    .take(query.limit.max(1))
                    .cloned()
                    .collect()
            }))
        })
    }

    fn dns_summary(&self) -> BackendFuture<'_, Option<DnsSummaryView>> {
        Box::pin(async move { Ok(self.check()?.dns.as_ref().map(|d| d.summary.clone())) })
    }

    fn traffic(&self, mac: Option<String>) -> BackendFuture<'_, Option<TrafficView>> {
        Box::pin(async move {
            let s = self.check()?;
            let Some(all) = &s.traffic else { return Ok(None) };
            let name = |m: &str| {
                s.devices
                    .iter()
                    .find(|d| d.device.mac == m)
                    .map(|d| d.device.display_name().to_string())
                    .filter(|n| n != m)
            };
            let top = match mac {
                Some(m) => all
                    .iter()
                    .filter(|t| t.mac == m)
                    .map(|t| DeviceTrafficView {
                        name: name(&t.mac),
                        ..t.clone()
                    })
                    .collect(),
                None => {
                    let mut top: Vec<DeviceTrafficView> = all
                        .iter()
                        .filter(|t| t.last_hour_received + t.last_hour_sent > 0)
                        .map(|t| DeviceTrafficView {
                            name: name(&t.mac),
                            minutes: Vec::new(),
                            hours: Vec::new(),
                            ..t.clone()
                        })
                        .collect();
                    top.sort_by_key(|t| std::cmp::Reverse(t.last_hour_received + t.last_hour_sent));
                    top
                }
            };
            Ok(Some(TrafficView {
                sample_secs: 60,
                last_error: None,
                top,
            }))
        })
    }

    fn notifications(&self) -> BackendFuture<'_, NotificationsView> {
        Box::pin(async move { Ok(self.check()?.notify.clone()) })
    }

    /// Like the daemon: an unknown channel is not found; a known one gets the
    /// test at once (the fake delivers it and logs it).
    fn notify_test(&self, name: String) -> BackendFuture<'_, String> {
        Box::pin(async move {
            let mut s = self.check()?;
            let c =
                s.notify.channels.iter_mut().find(|c| c.name == name).ok_or_else(|| {
                    BackendError::NotFound(format!("no notification channel `{}`", name.escape_debug()))
                })?;
            let now = crate::format::now();
            c.sent += 1;
            c.last_delivered = Some(now);
            c.log.insert(
                0,
                NotifyDeliveryView {
                    at: now,
                    alert: 0,
                    kind: "tunnel-up".into(),
                    ok: true,
                    detail: "HTTP 200".into(),
                },
            );
            s.tests_sent.push(name.clone());
            Ok(format!("a test is on its way to `{name}`"))
        })
    }

    fn auth(&self) -> BackendFuture<'_, AuthRecord> {
        Box::pin(async move {
            let mut s = self.check()?;
            s.auth_asked += 1;
            Ok(s.auth.clone())
        })
    }

    fn set_password_hash(&self, hash: String) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let mut s = self.check()?;
            s.auth = AuthRecord {
                password_hash: Some(hash),
                setup_token: None,
            };
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }
}
