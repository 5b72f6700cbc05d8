//! Notifications: the alert stream, sent where the homeowner asked. A service
//! beside the core (docs/ARCHITECTURE.md, "Notifications"): it reads the
//! alert stream and the services snapshot and asks the core for nothing. It
//! never writes nft, never touches the store and adds nothing to
//! `DaemonState`. Everything leaves from the router itself (its own routing
//! table: the tunnel marks only the devices' traffic).
//!
//! - `payload.rs`: bytes out and which alerts a channel takes (pure).
//! - `http.rs`: one POST (webhooks, ntfy).
//! - `mqtt.rs`: a small MQTT 3.1.1 client (codec pure).
//! - here: one task per channel; status; "send a test".
//!
//! Delivery: at least once while the daemon runs. A webhook or ntfy
//! delivery that fails is retried with a growing delay (2 s to 5 min) for up
//! to a day; each channel queues at most [`QUEUE`] alerts (the oldest go
//! first, counted). MQTT sends alerts at QoS 0 while connected; the device
//! entities are retained and republished on every (re)connection and when
//! Home Assistant says it came online.

pub mod http;
pub mod mqtt;
pub mod payload;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::alerts::{Alert, AlertKind};
use crate::config::{HttpChannel, MacAddr, MqttChannel, NotifyConfig};
use crate::core::{HomeownerCommand, InventorySnapshot, ServiceRequest};
use crate::inventory::{unix_now, UnixTime};
use crate::runtime::services::ServiceHandle;
use payload::{Gate, Retained, Topics};

/// Alerts one channel holds while its receiver is away.
pub const QUEUE: usize = 256;
/// A delivery is given up after this long.
const GIVE_UP_SECS: UnixTime = 24 * 3600;
/// Deliveries remembered per channel for `bulkhead notify status`.
const LOG: usize = 20;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A secret file is unreadable or readable by others.
    #[error("{path}: {why}")]
    Secret {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

/// Reads a secret file: mode 0600 or stricter, at most 4 KiB, trailing
/// whitespace trimmed.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, NotifyError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |why: String| NotifyError::Secret {
        path: path.display().to_string(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(err(format!("mode {mode:04o}: others may read it (chmod 600)")));
    }
    if meta.len() > 4096 {
        return Err(err("larger than 4 KiB".into()));
    }
    let mut bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(err("empty".into()));
    }
    Ok(bytes)
}

/// One delivery, for the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// When.
    pub at: UnixTime,
    /// The alert's id (0: a test).
    pub alert: i64,
    /// Its kind.
    pub kind: String,
    /// Delivered, or why not (this try).
    pub result: Result<u16, String>,
}

/// One channel's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// Its name (`mqtt` for the broker).
    pub name: String,
    /// `webhook`, `ntfy` or `mqtt`.
    pub kind: String,
    /// Where.
    pub target: String,
    /// Which alerts it sends, in words.
    #[serde(default)]
    pub sends: String,
    /// Alerts delivered.
    pub sent: u64,
    /// Tries that failed (each retry counts).
    pub failed: u64,
    /// Alerts dropped: queue full, or given up after a day.
    pub dropped: u64,
    /// Alerts held back by the channel's rate.
    pub rate_limited: u64,
    /// Alerts held back by quiet hours.
    #[serde(default)]
    pub quiet: u64,
    /// Waiting.
    pub queued: usize,
    /// MQTT: connected now.
    pub connected: bool,
    /// MQTT: Home Assistant's commands carried out.
    #[serde(default)]
    pub commands: u64,
    /// MQTT: commands refused or not understood.
    #[serde(default)]
    pub commands_refused: u64,
    /// The last deliveries, newest last.
    pub log: Vec<Delivery>,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// `bulkhead notify status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyStatus {
    /// Every channel.
    pub channels: Vec<ChannelStatus>,
    /// Alerts the service missed (it fell behind the stream).
    pub missed: u64,
}

type Shared = Arc<Mutex<ChannelStatus>>;

fn with<T>(s: &Shared, f: impl FnOnce(&mut ChannelStatus) -> T) -> T {
    f(&mut s.lock().unwrap_or_else(PoisonError::into_inner))
}

fn record(s: &Shared, alert: &Alert, result: Result<u16, String>) {
    with(s, |c| {
        match &result {
            Ok(_) => {
                c.sent += 1;
                c.last_error = None;
            }
            Err(e) => {
                c.failed += 1;
                c.last_error = Some(e.clone());
            }
        }
        if c.log.len() >= LOG {
            c.log.remove(0);
        }
        c.log.push(Delivery {
            at: unix_now(),
            alert: alert.id,
            kind: alert.kind.as_str().to_string(),
            result,
        });
    });
}

/// What a channel task is sent.
enum Job {
    /// An alert that passed the channel's gate.
    Alert(Alert),
    /// "Send a test", past the gate.
    Test(Alert),
}

/// A channel as the service sees it: its queue and its state.
#[derive(Clone)]
struct ChannelHandle {
    name: String,
    jobs: mpsc::Sender<Job>,
    status: Shared,
}

/// The running service.
pub struct NotifyService {
    config: NotifyConfig,
    channels: Vec<ChannelHandle>,
    missed: Arc<Mutex<u64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for NotifyService {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NotifyService {
    /// Reads the secrets (a bad one stops the service, with why) and starts a
    /// task per channel and the dispatcher.
    pub fn start(config: NotifyConfig, services: ServiceHandle) -> Result<NotifyService, NotifyError> {
        let tls = crate::dns::upstream::tls_client(&config.tls_ca_file).ok();
        let mut channels: Vec<(Gate, ChannelHandle)> = Vec::new();
        let mut tasks = Vec::new();
        for (kind, list) in [("webhook", &config.webhooks), ("ntfy", &config.ntfy)] {
            for c in list {
                let secret = c.secret_file.as_deref().map(read_secret).transpose()?;
                let status = Arc::new(Mutex::new(ChannelStatus {
                    name: c.name.clone(),
                    kind: kind.into(),
                    target: c.url.clone(),
                    sends: c.filter.describe(),
                    ..ChannelStatus::default()
                }));
                let (tx, rx) = mpsc::channel(QUEUE);
                let http = HttpTask {
                    channel: c.clone(),
                    ntfy: kind == "ntfy",
                    secret,
                    tls: tls.clone(),
                    inventory: services.clone(),
                    status: status.clone(),
                };
                tasks.push(tokio::spawn(http.run(rx)));
                channels.push((
                    Gate::new(c.filter.clone()),
                    ChannelHandle {
                        name: c.name.clone(),
                        jobs: tx,
                        status,
                    },
                ));
            }
        }
        if let Some(m) = &config.mqtt {
            let password = m.password_file.as_deref().map(read_secret).transpose()?;
            let status = Arc::new(Mutex::new(ChannelStatus {
                name: "mqtt".into(),
                kind: "mqtt".into(),
                target: if m.tls {
                    format!("mqtts://{}", m.broker)
                } else {
                    m.broker.clone()
                },
                sends: m.filter.describe(),
                ..ChannelStatus::default()
            }));
            let (tx, rx) = mpsc::channel(QUEUE);
            let server = m.broker.rsplit_once(':').map_or(m.broker.as_str(), |(h, _)| h);
            let server = server.trim_start_matches('[').trim_end_matches(']').to_string();
            let task = MqttTask {
                tls: m.tls.then(|| {
                    tls.clone()
                        .map(|config| mqtt::Tls { config, server })
                        .ok_or_else(|| "no CA certificates to check the broker with ([notify] tls_ca_file)".to_string())
                }),
                channel: m.clone(),
                password,
                services: services.clone(),
                status: status.clone(),
            };
            tasks.push(tokio::spawn(task.run(rx)));
            channels.push((
                Gate::new(m.filter.clone()),
                ChannelHandle {
                    name: "mqtt".into(),
                    jobs: tx,
                    status,
                },
            ));
        }
        let missed = Arc::new(Mutex::new(0));
        let handles = channels.iter().map(|(_, h)| h.clone()).collect();
        tasks.push(tokio::spawn(dispatch(
            services.subscribe_alerts(),
            channels,
            missed.clone(),
        )));
        let service = NotifyService {
            config,
            channels: handles,
            missed,
            tasks,
        };
        tracing::info!(channels = service.channels.len(), "notifications on");
        Ok(service)
    }

    /// Its config.
    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// Every channel's state.
    pub fn status(&self) -> NotifyStatus {
        NotifyStatus {
            channels: self
                .channels
                .iter()
                .map(|c| {
                    let mut s = c.status.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    s.queued = QUEUE - c.jobs.capacity();
                    s
                })
                .collect(),
            missed: *self.missed.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Queues a test alert on channel `name` (past its filters).
    pub fn test(&self, name: &str) -> Result<String, String> {
        let c = self.channels.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
            format!("no channel `{name}` (channels: {})", names.join(", "))
        })?;
        let alert = Alert::new(
            unix_now(),
            AlertKind::TunnelUp,
            None,
            "This is a test from Bulkhead: notifications reach you here.".into(),
        );
        c.jobs
            .try_send(Job::Test(alert))
            .map_err(|_| format!("channel `{name}` has a full queue"))?;
        Ok(format!(
            "a test is on its way to `{name}` (bulkhead notify status shows whether it arrived)"
        ))
    }
}

/// The alert stream → each channel whose gate admits it.
async fn dispatch(
    mut alerts: broadcast::Receiver<Alert>,
    mut channels: Vec<(Gate, ChannelHandle)>,
    missed: Arc<Mutex<u64>>,
) {
    loop {
        let alert = match alerts.recv().await {
            Ok(a) => a,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                *missed.lock().unwrap_or_else(PoisonError::into_inner) += n;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let now = unix_now();
        let offset = crate::clock::local_utc_offset(now);
        for (gate, c) in &mut channels {
            if !gate.admit(&alert, now, offset) {
                let (limited, quiet) = (gate.rate_limited, gate.quiet);
                with(&c.status, |s| {
                    s.rate_limited = limited;
                    s.quiet = quiet;
                });
                continue;
            }
            if c.jobs.try_send(Job::Alert(alert.clone())).is_err() {
                with(&c.status, |s| s.dropped += 1);
            }
        }
    }
}

/// A webhook's or an ntfy topic's task.
struct HttpTask {
    channel: HttpChannel,
    ntfy: bool,
    secret: Option<Vec<u8>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    inventory: ServiceHandle,
    status: Shared,
}

impl HttpTask {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let mut pending: VecDeque<Alert> = VecDeque::new();
        let mut delay = Duration::from_secs(2);
        loop {
            if pending.is_empty() {
                match jobs.recv().await {
                    Some(Job::Alert(a) | Job::Test(a)) => pending.push_back(a),
                    None => return,
                }
            }
            while let Ok(Job::Alert(a) | Job::Test(a)) = jobs.try_recv() {
                if pending.len() >= QUEUE {
                    pending.pop_front();
                    with(&self.status, |s| s.dropped += 1);
                }
                pending.push_back(a);
            }
            let Some(alert) = pending.front().cloned() else {
                continue;
            };
            if unix_now() - alert.at > GIVE_UP_SECS {
                pending.pop_front();
                with(&self.status, |s| s.dropped += 1);
                continue;
            }
            let result = self.deliver(&alert).await;
            let ok = matches!(result, Ok(200..=299));
            let result = result.and_then(|code| {
                if (200..300).contains(&code) {
                    Ok(code)
                } else {
                    Err(format!("HTTP {code}"))
                }
            });
            record(&self.status, &alert, result);
            if ok {
                pending.pop_front();
                delay = Duration::from_secs(2);
            } else {
                // Wait, but keep taking new alerts meanwhile (bounded).
                let until = tokio::time::Instant::now() + delay;
                delay = (delay * 2).min(Duration::from_secs(300));
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        job = jobs.recv() => match job {
                            Some(Job::Alert(a) | Job::Test(a)) => {
                                if pending.len() >= QUEUE {
                                    pending.pop_front();
                                    with(&self.status, |s| s.dropped += 1);
                                }
                                pending.push_back(a);
                            }
                            None => return,
                        },
                    }
                }
            }
        }
    }

    async fn deliver(&self, alert: &Alert) -> Result<u16, String> {
        let device = alert.mac.and_then(|m| {
            self.inventory
                .inventory
                .read()
                .ok()
                .and_then(|i| i.devices.get(&m).cloned())
        });
        if self.ntfy {
            let mut headers = payload::ntfy_headers(alert);
            if let Some(token) = &self.secret {
                headers.push(("Authorization", format!("Bearer {}", String::from_utf8_lossy(token))));
            }
            let name = device.as_ref().map(crate::detect::best_name_of);
            let body = match name {
                Some(n) if !alert.message.contains(&n) => format!("{}\n({n})", alert.message),
                _ => alert.message.clone(),
            };
            http::post(
                &self.channel.url,
                &headers,
                "text/plain; charset=utf-8",
                body,
                self.tls.clone(),
            )
            .await
        } else {
            let body = payload::webhook_body(alert, device.as_ref());
            let now = unix_now();
            let mut headers = vec![("X-Bulkhead-Timestamp", now.to_string())];
            if let Some(key) = &self.secret {
                headers.push(("X-Bulkhead-Signature", payload::signature(key, now, &body)));
            }
            http::post(&self.channel.url, &headers, "application/json", body, self.tls.clone()).await
        }
    }
}

/// The MQTT channel's task: one connection at a time, rebuilt with a
/// growing delay.
struct MqttTask {
    channel: MqttChannel,
    /// TLS to the broker, or why it cannot be had; `None`: plain TCP.
    tls: Option<Result<mqtt::Tls, String>>,
    password: Option<Vec<u8>>,
    services: ServiceHandle,
    status: Shared,
}

/// What was last published for a device (to publish only changes).
type Published = BTreeMap<MacAddr, (Vec<Retained>, Vec<Retained>)>;

impl MqttTask {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let topics = Topics {
            discovery: self.channel.discovery_prefix.clone(),
            own: self.channel.topic_prefix.clone(),
            commands: self.channel.commands,
        };
        let mut delay = Duration::from_secs(1);
        // Devices whose entities were published: kept across connections, so
        // a device forgotten while the broker was away is still removed.
        let mut published: Published = BTreeMap::new();
        loop {
            match self.session(&topics, &mut jobs, &mut published).await {
                Ok(()) => return,
                Err(e) => {
                    with(&self.status, |s| {
                        s.connected = false;
                        s.failed += 1;
                        s.last_error = Some(e.to_string());
                    });
                    tracing::warn!(error = %e, broker = %self.channel.broker, "MQTT");
                }
            }
            // Alerts that come while away are not queued: HA reads states.
            let until = tokio::time::Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    job = jobs.recv() => if job.is_none() { return },
                }
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }

    /// One connection, until it fails (`Err`) or the service stops (`Ok`).
    async fn session(
        &self,
        topics: &Topics,
        jobs: &mut mpsc::Receiver<Job>,
        published: &mut Published,
    ) -> Result<(), mqtt::MqttError> {
        let availability = topics.availability();
        let client_id = format!("bulkhead-{}", std::process::id());
        let tls = match &self.tls {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(why)) => return Err(mqtt::MqttError::Tls(why.clone())),
        };
        let conn = mqtt::Connection::open(
            &self.channel.broker,
            tls,
            &mqtt::Connect {
                client_id: &client_id,
                keep_alive: 60,
                will: (&availability, "offline"),
                username: self.channel.username.as_deref(),
                password: self.password.as_deref(),
            },
        )
        .await?;
        let (mut read, mut write) = conn.into_split();
        use tokio::io::AsyncWriteExt;
        let birth = format!("{}/status", topics.discovery);
        write.write_all(&mqtt::subscribe(1, &birth)).await?;
        if topics.commands {
            write.write_all(&mqtt::subscribe(2, &topics.commands_filter())).await?;
        }
        write.write_all(&mqtt::publish(&availability, b"online", true)).await?;
        with(&self.status, |s| {
            s.connected = true;
            s.last_error = None;
        });
        // Everything, as on a first connection.
        let mut shown: Published = BTreeMap::new();
        self.sync(&mut write, topics, published, &mut shown, true).await?;
        let mut generations = self.services.generations.clone();
        let mut router = self.services.router.clone();
        router.mark_unchanged();
        let mut ping = tokio::time::interval(Duration::from_secs(20));
        ping.tick().await;
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(Job::Alert(a) | Job::Test(a)) => {
                        let device = a.mac.and_then(|m| self.services.inventory.read().ok().and_then(|i| i.devices.get(&m).cloned()));
                        let body = payload::webhook_body(&a, device.as_ref());
                        write.write_all(&mqtt::publish(&topics.alert(), body.as_bytes(), false)).await?;
                        for r in payload::last_alert(topics, &a, &body) {
                            write.write_all(&mqtt::publish(&r.topic, r.payload.as_bytes(), true)).await?;
                        }
                        record(&self.status, &a, Ok(0));
                    }
                    None => {
                        let _ = write.write_all(&mqtt::publish(&availability, b"offline", true)).await;
                        return Ok(());
                    }
                },
                changed = generations.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.sync(&mut write, topics, published, &mut shown, false).await?;
                }
                changed = router.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let now = router.borrow_and_update().clone();
                    for r in payload::router_entities(topics, &now) {
                        write.write_all(&mqtt::publish(&r.topic, r.payload.as_bytes(), true)).await?;
                    }
                }
                _ = ping.tick() => write.write_all(&mqtt::PINGREQ).await?,
                packet = mqtt::read_packet(&mut read) => {
                    if let mqtt::Incoming::Publish { topic, payload } = packet? {
                        // Home Assistant restarted: it forgot the non-retained
                        // and asks everyone to announce again.
                        if topic == birth && payload == b"online" {
                            shown.clear();
                            self.sync(&mut write, topics, published, &mut shown, true).await?;
                        } else if topics.commands {
                            self.command(topics, &topic, &payload).await;
                        }
                    }
                }
            }
        }
    }

    /// A command from Home Assistant, handed to the core as the homeowner's
    /// decision (the core refuses what the CLI would: an unknown device, a
    /// device not in quarantine). Its effect comes back as a state change.
    async fn command(&self, topics: &Topics, topic: &str, payload: &[u8]) {
        let Some(command) = payload::parse_command(topics, topic, payload) else {
            tracing::warn!(topic = %topic.escape_debug(), "MQTT: not a command; dropped");
            with(&self.status, |s| s.commands_refused += 1);
            return;
        };
        let request = match command {
            payload::Command::Approve(mac) => HomeownerCommand::Approve(mac),
            payload::Command::Block(mac, blocked) => HomeownerCommand::Block(mac, blocked),
        };
        match self.services.request(ServiceRequest::Homeowner(request)).await {
            Ok(_) => {
                tracing::info!(?request, "MQTT: Home Assistant's command carried out");
                with(&self.status, |s| s.commands += 1);
            }
            Err(why) => {
                tracing::warn!(?request, %why, "MQTT: Home Assistant's command refused");
                with(&self.status, |s| {
                    s.commands_refused += 1;
                    s.last_error = Some(format!("command refused: {why}"));
                });
            }
        }
    }

    /// Publishes what changed since `shown` (everything with `all`), and
    /// removes the entities of devices no longer in the inventory.
    async fn sync(
        &self,
        write: &mut mqtt::Writer,
        topics: &Topics,
        published: &mut Published,
        shown: &mut Published,
        all: bool,
    ) -> Result<(), mqtt::MqttError> {
        use tokio::io::AsyncWriteExt;
        let wanted: Published = {
            let Ok(inv) = self.services.inventory.read() else {
                return Ok(());
            };
            entities(&inv, topics)
        };
        let mut out: Vec<Retained> = Vec::new();
        if all {
            let router = self.services.router.borrow().clone();
            out.extend(payload::router_entities(topics, &router));
        }
        for (mac, (configs, states)) in &wanted {
            let before = shown.get(mac);
            if all || before.map(|b| &b.0) != Some(configs) {
                out.extend(configs.iter().cloned());
            }
            if all || before.map(|b| &b.1) != Some(states) {
                out.extend(states.iter().cloned());
            }
        }
        for mac in published.keys().filter(|m| !wanted.contains_key(m)) {
            out.extend(payload::device_removal(topics, mac));
        }
        for r in &out {
            write
                .write_all(&mqtt::publish(&r.topic, r.payload.as_bytes(), true))
                .await?;
        }
        write.flush().await?;
        *published = wanted.clone();
        *shown = wanted;
        Ok(())
    }
}

/// Every device's entities (configs, states).
fn entities(inv: &InventorySnapshot, topics: &Topics) -> Published {
    inv.devices
        .values()
        .map(|d| {
            (
                d.mac,
                (payload::device_configs(topics, d), payload::device_states(topics, d)),
            )
        })
        .collect()
}
