//! What the pages and the JSON API show: plain data, filled by the daemon through
//! [`crate::Backend`]. Every `String` that came from a device (names, hostnames,
//! mDNS text, vendor classes) is untrusted: templates escape it (askama's default,
//! never `|safe`), and [`crate::text`] makes control and bidi characters visible.
//!
//! The same types are the JSON API's bodies, described in `/api/openapi.json`.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// One device as the inventory list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// MAC, lower-case `aa:bb:cc:dd:ee:ff` (the device's id in URLs).
    pub mac: String,
    /// The name the homeowner gave it, if any.
    pub name: Option<String>,
    /// The name it gave itself (DHCP hostname, else an mDNS name), untrusted.
    pub hostname: Option<String>,
    /// Its class (`camera`, `media`, …) if a rule matched.
    pub class: Option<String>,
    /// How sure the matching rule is: `low`, `medium`, `high`.
    pub confidence: Option<String>,
    /// The MAC's IEEE vendor, if registered.
    pub vendor: Option<String>,
    /// Its zone.
    pub zone: String,
    /// Why it is in that zone: `user-choice`, `policy-override`, `classified`,
    /// `segment-default`, `unknown`.
    pub zone_reason: String,
    /// In the unknown zone, waiting for the homeowner.
    pub quarantined: bool,
    /// Blocked by the homeowner: the router forwards nothing from or to it.
    pub blocked: bool,
    /// The homeowner watches it: told when it goes offline and comes back.
    #[serde(default)]
    pub watched: bool,
    /// Whether its internet traffic goes through the tunnel (policy and choice).
    pub tunnel_routed: bool,
    /// The homeowner's tunnel choice: `Some(true)` through, `Some(false)` never,
    /// `None` as the policy says.
    pub tunnel_choice: Option<bool>,
    /// Addresses, IPv4 first.
    pub addresses: Vec<String>,
    /// Seen within the last ten minutes.
    pub online: bool,
    /// First seen.
    pub first_seen: UnixTime,
    /// Last seen.
    pub last_seen: UnixTime,
    /// A locally administered (randomised, private) MAC.
    pub randomized: bool,
    /// What it is called everywhere (the daemon's one naming rule: the
    /// homeowner's name, else its host or mDNS name, else its vendor and
    /// class, e.g. "Google media device"); `None`: nothing names it.
    #[serde(default)]
    pub best_name: Option<String>,
}

impl DeviceSummary {
    /// The name to show: its best name, else the homeowner's, else the
    /// device's own, else its MAC.
    pub fn display_name(&self) -> &str {
        self.best_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.name.as_deref().filter(|n| !n.is_empty()))
            .or(self.hostname.as_deref().filter(|h| !h.is_empty()))
            .unwrap_or(&self.mac)
    }
}

/// One piece of evidence and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceItem {
    /// `dhcp`, `mdns`, `oui`, `neighbour`, `homeowner`, `policy`.
    pub source: String,
    /// What it is (`hostname`, `parameter request list`, `service`, …).
    pub field: String,
    /// The value as received (untrusted).
    pub value: String,
    /// Why it is not known to come from this device, when it is not: a claim
    /// tied to the device by what it names, not by who sent it. `None`: it
    /// came in frames from the device's own MAC (on its port) or its own
    /// address.
    #[serde(default)]
    pub unverified: Option<String>,
}

/// The classification rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    /// The rule's id.
    pub rule: String,
    /// The class it gives.
    pub class: String,
    /// The zone it suggests, if any.
    pub zone: Option<String>,
    /// `low`, `medium`, `high`.
    pub confidence: String,
    /// The conditions that matched, in words.
    pub matched: Vec<String>,
}

/// One mDNS TXT entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxtEntry {
    /// Key (lower-case).
    pub key: String,
    /// Value (untrusted).
    pub value: String,
}

/// Everything about one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDetail {
    /// The list entry.
    pub device: DeviceSummary,
    /// All evidence with its source.
    pub evidence: Vec<EvidenceItem>,
    /// The rule that placed or classified it.
    pub rule: Option<RuleMatch>,
    /// mDNS service types it announces.
    pub mdns_services: Vec<String>,
    /// mDNS instance and host names it announces.
    pub mdns_names: Vec<String>,
    /// mDNS TXT entries.
    pub txt: Vec<TxtEntry>,
    /// DHCP option 55 (parameter request list) as sent, e.g. `1,3,6,15,119,252`.
    pub dhcp_fingerprint: Option<String>,
    /// DHCP option 60.
    pub dhcp_vendor_class: Option<String>,
    /// DHCP option 61, hex.
    pub dhcp_client_id: Option<String>,
    /// Zones it may be moved to.
    pub zones: Vec<String>,
    /// What the firewall refused it, as detection sampled it; `None` when
    /// nothing was refused (or detection is off).
    #[serde(default)]
    pub refused: Option<RefusedView>,
    /// Services it announced that the homeowner shares with other zones
    /// (`[[share]]`), and to which.
    #[serde(default)]
    pub shares: Vec<SharedServiceView>,
}

impl DeviceDetail {
    /// Why some of its evidence is unverified (the first reason given), for
    /// the note under the evidence table.
    pub fn unverified_reason(&self) -> Option<&str> {
        self.evidence.iter().find_map(|e| e.unverified.as_deref())
    }
}

/// What is shared across zones, and what could be (the zones page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingView {
    /// The presets a share may name.
    pub presets: Vec<SharePresetView>,
    /// The shares in force: the policy files' and the homeowner's from here.
    pub shares: Vec<ShareView>,
}

/// A bundle of service types and ports (`policies/shares.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePresetView {
    /// Its name (`chromecast`).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// mDNS service types and SSDP targets.
    pub services: Vec<String>,
    /// Extra ports (`tcp/8008-8009`).
    pub ports: Vec<String>,
}

/// One share in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareView {
    /// The preset it uses, or `share[N]` when written out in a file.
    pub name: String,
    /// The zones offering it.
    pub from: Vec<String>,
    /// The zones that may find and use it.
    pub to: Vec<String>,
    /// Turned on from the UI (or CLI), so it can be turned off there; the
    /// policy files' are changed in the files.
    pub homeowner: bool,
}

/// Turning a preset's share from one zone to another on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareAction {
    /// The preset.
    pub preset: String,
    /// The offering zone.
    pub from: String,
    /// The consuming zone.
    pub to: String,
    /// On (true) or off.
    pub on: bool,
}

/// One service a device offers to other zones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedServiceView {
    /// The service type, e.g. `_googlecast._tcp` (network input).
    pub service: String,
    /// The instance name it announced (network input).
    pub instance: String,
    /// The port it announced.
    pub port: u16,
    /// The zones that may find and use it.
    pub to: Vec<String>,
}

/// What the firewall refused one device since the daemon started: sampled
/// (at most a few packets per second per device), so counts are of samples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedView {
    /// Sampled refusals.
    pub sampled: u64,
    /// To the router's closed ports.
    pub to_router: u64,
    /// Routed: other segments, the internet.
    pub routed: u64,
    /// Within its segment bridge.
    pub bridged: u64,
    /// While blocked.
    pub blocked: u64,
    /// First sampled refusal.
    pub first: UnixTime,
    /// Last.
    pub last: UnixTime,
    /// Most refused destinations (address, samples).
    pub top_targets: Vec<(String, u64)>,
    /// Most refused ports (port, samples).
    pub top_ports: Vec<(u16, u64)>,
    /// Its episodes, oldest first: the probing timeline.
    pub episodes: Vec<RefusalEpisode>,
}

/// One episode of refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalEpisode {
    /// Began.
    pub started: UnixTime,
    /// Last refusal in it.
    pub last: UnixTime,
    /// Samples.
    pub samples: u64,
    /// Distinct hosts.
    pub hosts: usize,
    /// Distinct ports.
    pub ports: usize,
    /// Judged a scan.
    pub probing: bool,
    /// Tried devices of other zones.
    pub lateral: bool,
}

/// A change the homeowner makes to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum DeviceAction {
    /// Give it a name (`None` or empty: forget the name).
    Rename {
        /// The name (at most 64 characters).
        name: Option<String>,
    },
    /// Move it to a zone (the homeowner's choice always wins).
    SetZone {
        /// The zone.
        zone: String,
    },
    /// Release it from quarantine (into `zone`, else what its class suggests,
    /// else the policy's approved zone).
    Approve {
        /// The zone, if chosen.
        zone: Option<String>,
    },
    /// Route its internet traffic through the tunnel or not (`None`: as the
    /// policy says).
    Tunnel {
        /// The choice.
        route: Option<bool>,
    },
    /// Block or unblock it.
    Block {
        /// Blocked?
        blocked: bool,
    },
    /// Watch it (told when it goes offline and comes back), or stop.
    Watch {
        /// Watched?
        watched: bool,
    },
    /// Forget it: everything known and decided about it goes; if it shows up
    /// again it is a new device.
    Forget,
    /// It is the known device `known` with a new private address (accepts
    /// the identity suggestion): the known device's name, zone and choices
    /// move to it and the old entry is retired.
    Link {
        /// The known device's MAC.
        known: String,
    },
}

/// A zone: what it may reach and who is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneView {
    /// Id.
    pub id: String,
    /// The policy's description.
    pub description: String,
    /// May start connections to the internet.
    pub internet: bool,
    /// Zones it may start connections to.
    pub reach_zones: Vec<String>,
    /// Router services it may use (`dns`, `dhcp`, `web-ui`, …).
    pub router_services: Vec<String>,
    /// Members may reach each other.
    pub intra_zone: bool,
    /// The zone unknown devices land in.
    pub is_unknown_zone: bool,
    /// Its internet traffic goes through the tunnel.
    pub tunnel: bool,
    /// Members.
    pub members: Vec<ZoneMember>,
}

/// A zone member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneMember {
    /// MAC.
    pub mac: String,
    /// Display name (homeowner's name, else hostname; untrusted).
    pub name: Option<String>,
    /// Online now.
    pub online: bool,
}

/// Bytes and packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowView {
    /// Bytes (IP packets as forwarded, headers included).
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
}

/// One direction's traffic by path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFlowsView {
    /// To or from the internet directly.
    pub internet: FlowView,
    /// Through the VPN tunnel.
    pub tunnel: FlowView,
    /// To or from devices of other zones (other segments).
    pub zones: FlowView,
}

/// Bytes in one minute or hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficPoint {
    /// The minute's or hour's start.
    pub at: UnixTime,
    /// Bytes received.
    pub received: u64,
    /// Bytes sent.
    pub sent: u64,
}

/// One device's traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTrafficView {
    /// MAC.
    pub mac: String,
    /// Its name now (untrusted), if anything names it.
    pub name: Option<String>,
    /// Sent since counting began, by path.
    pub sent: PathFlowsView,
    /// Received since counting began, by path.
    pub received: PathFlowsView,
    /// Bytes received in the last hour.
    pub last_hour_received: u64,
    /// Bytes sent in the last hour.
    pub last_hour_sent: u64,
    /// Bytes received in the last 24 hours.
    pub last_day_received: u64,
    /// Bytes sent in the last 24 hours.
    pub last_day_sent: u64,
    /// The last 24 hours by minute (one device's view only; minutes without
    /// traffic are absent).
    pub minutes: Vec<TrafficPoint>,
    /// The last 30 days by hour (one device's view only).
    pub hours: Vec<TrafficPoint>,
}

/// Traffic per device: the last hour's top talkers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficView {
    /// Seconds between two readings of the kernel's counters.
    pub sample_secs: u32,
    /// The last reading's failure, if it failed.
    pub last_error: Option<String>,
    /// The devices that moved the most bytes in the last hour, most first.
    pub top: Vec<DeviceTrafficView>,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    /// Id.
    pub id: i64,
    /// When.
    pub at: UnixTime,
    /// `new-device`, `new-device-quarantined`, `device-classified`,
    /// `tunnel-up`, `tunnel-down`, `tunnel-error`, `apply-failed`, …
    pub kind: String,
    /// The device concerned.
    pub mac: Option<String>,
    /// A sentence (may quote untrusted device text).
    pub message: String,
    /// The homeowner has seen it.
    pub acknowledged: bool,
    /// How many times it happened (a storm is one alert with a count).
    #[serde(default = "one")]
    pub count: u32,
    /// When it last happened (= `at` when once).
    #[serde(default)]
    pub last_at: UnixTime,
    /// How much it matters: `info`, `warning` or `critical`.
    #[serde(default = "info")]
    pub severity: String,
    /// The device's name now (the homeowner's, else its host or mDNS name,
    /// else its vendor and class; untrusted), when it is a known device. The
    /// MAC is the secondary detail.
    #[serde(default)]
    pub name: Option<String>,
    /// What the alert says, as data (the page renders its sentence from
    /// these; `message` is the daemon's plain-text rendering).
    #[serde(default)]
    pub facts: AlertFacts,
    /// What the homeowner can do about it here and now: `approve`, `block`,
    /// `link` (only what still applies: an approved device offers no
    /// Approve).
    #[serde(default)]
    pub actions: Vec<String>,
}

/// The facts of an alert about a device; each kind uses its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertFacts {
    /// The zone the device is in (placed in, held in).
    pub zone: Option<String>,
    /// Why: `classified`, `segment-default`, `policy-override`,
    /// `user-choice`, `unknown`.
    pub placed_by: Option<String>,
    /// The class a rule gave it.
    pub class: Option<String>,
    /// That rule.
    pub rule: Option<String>,
    /// A held device: the zone its class suggests.
    pub suggested_zone: Option<String>,
    /// The other device (the known device a private MAC resembles, the one a
    /// forged message spoke for).
    pub other: Option<String>,
    /// The other device's name now, if it is known (untrusted).
    pub other_name: Option<String>,
    /// What matched (an identity suggestion's reasons).
    pub reasons: Vec<String>,
    /// How long a device has been silent, in minutes.
    pub minutes: Option<i64>,
}

fn one() -> u32 {
    1
}

fn info() -> String {
    "info".into()
}

/// Which alerts to acknowledge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckTarget {
    /// One alert.
    One(i64),
    /// All of them.
    All,
}

/// The notification channels (`/notifications`, `GET /api/notifications`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationsView {
    /// Every configured channel; empty when none is.
    pub channels: Vec<NotifyChannelView>,
    /// Alerts the notifier missed because it fell behind.
    pub missed: u64,
}

/// One channel: a webhook, an ntfy topic, or the MQTT broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyChannelView {
    /// Its name (the test action's path parameter).
    pub name: String,
    /// `webhook`, `ntfy` or `mqtt`.
    pub kind: String,
    /// Where it sends: the server only (a URL's path can be a secret,
    /// say a webhook id or an ntfy topic).
    pub target: String,
    /// Which alerts it sends, in words.
    pub sends: String,
    /// Alerts delivered.
    pub sent: u64,
    /// Tries that failed (each retry counts).
    pub failed: u64,
    /// Alerts given up on (queue full, or still failing after a day).
    pub dropped: u64,
    /// Alerts held back by its rate limit.
    pub rate_limited: u64,
    /// Alerts held back by its quiet hours.
    pub quiet: u64,
    /// Waiting to be sent.
    pub queued: u64,
    /// MQTT: connected to the broker now (`None` for the others).
    pub connected: Option<bool>,
    /// When something was last delivered.
    pub last_delivered: Option<UnixTime>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The last deliveries and tries, newest first.
    pub log: Vec<NotifyDeliveryView>,
}

/// One delivery or failed try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyDeliveryView {
    /// When.
    pub at: UnixTime,
    /// The alert's id (0 for a test).
    pub alert: i64,
    /// The alert's kind.
    pub kind: String,
    /// Delivered.
    pub ok: bool,
    /// The server's status code, or what went wrong.
    pub detail: String,
}

/// The VPN tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnView {
    /// A tunnel is configured.
    pub configured: bool,
    /// `down`, `connecting`, `up`, `error`.
    pub state: String,
    /// Interface.
    pub interface: Option<String>,
    /// Our public key (base64).
    pub public_key: Option<String>,
    /// UDP port.
    pub listen_port: Option<u16>,
    /// Peers.
    pub peers: Vec<VpnPeer>,
    /// Failed attempts since it was last up.
    pub attempts: u32,
    /// Recent transitions, newest last.
    pub transitions: Vec<VpnTransition>,
    /// What is routed through it, in words.
    pub routed: Vec<String>,
    /// Packets the kill switch dropped.
    pub leak_guard_drops: Option<u64>,
}

/// One VPN peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnPeer {
    /// Public key (base64).
    pub public_key: String,
    /// Endpoint as configured.
    pub endpoint_config: Option<String>,
    /// Endpoint in use.
    pub endpoint: Option<String>,
    /// Last handshake.
    pub last_handshake: Option<UnixTime>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
}

/// One tunnel state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnTransition {
    /// When.
    pub at: UnixTime,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Why.
    pub reason: String,
}

/// What the UI needs to authenticate: kept by the daemon (the hash in its store,
/// the setup token in memory), checked by the UI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthRecord {
    /// The argon2id PHC string, once a password is set.
    pub password_hash: Option<String>,
    /// The one-time setup token, while no password is set.
    pub setup_token: Option<String>,
}

/// Something changed: pages showing it refresh (server-sent events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiveEvent {
    /// Devices or zones changed.
    Devices,
    /// A new alert, or one was acknowledged.
    Alerts,
    /// The tunnel changed.
    Vpn,
}

impl LiveEvent {
    /// The SSE event name.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveEvent::Devices => "devices",
            LiveEvent::Alerts => "alerts",
            LiveEvent::Vpn => "vpn",
        }
    }
}

/// What became of a DNS question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DnsOutcome {
    /// Answered by an upstream resolver.
    Forwarded {
        /// The upstream that answered (`192.0.2.53:53`, `tcp://…`, `tls://…`).
        upstream: String,
    },
    /// Answered from the resolver's cache.
    Cached,
    /// Answered from the home's own names.
    Local,
    /// A blocklist matched.
    Blocked {
        /// The list's name.
        list: String,
    },
    /// The upstream answered private addresses for a public name (DNS
    /// rebinding): the answer was dropped.
    RebindingDropped,
    /// Refused: the asker's zone may not resolve internet names.
    Refused,
    /// No upstream answered (or the tunnel was down for a tunnelled device).
    Failed,
}

impl DnsOutcome {
    /// The `kind` tag (`forwarded`, `blocked`, …), also a CSS class suffix.
    pub fn kind(&self) -> &'static str {
        match self {
            DnsOutcome::Forwarded { .. } => "forwarded",
            DnsOutcome::Cached => "cached",
            DnsOutcome::Local => "local",
            DnsOutcome::Blocked { .. } => "blocked",
            DnsOutcome::RebindingDropped => "rebinding-dropped",
            DnsOutcome::Refused => "refused",
            DnsOutcome::Failed => "failed",
        }
    }

    /// A blocklist matched.
    pub fn is_blocked(&self) -> bool {
        matches!(self, DnsOutcome::Blocked { .. })
    }
}

/// One question in the resolver's query log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQueryView {
    /// When it was asked.
    pub at: UnixTime,
    /// The address that asked.
    pub client: String,
    /// The device that asked, if known (lower-case MAC).
    pub mac: Option<String>,
    /// The name asked, lower-case, as the device sent it (untrusted).
    pub name: String,
    /// The record type asked (`A`, `AAAA`, `HTTPS`, …).
    pub qtype: String,
    /// The response code sent (`NoError`, `NXDomain`, `ServFail`, `Refused`, …).
    pub rcode: String,
    /// What became of it.
    pub outcome: DnsOutcome,
    /// Microseconds from question to answer.
    pub micros: u64,
}

/// Which questions of the query log to read (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsLogQuery {
    /// Only this device's (lower-case MAC).
    pub device: Option<String>,
    /// Only blocked questions.
    pub blocked_only: bool,
    /// Only names containing this (case-insensitive).
    pub search: Option<String>,
    /// At most this many ([`DnsLogQuery::DEFAULT_LIMIT`] unless asked,
    /// at most [`DnsLogQuery::MAX_LIMIT`]).
    pub limit: usize,
}

impl DnsLogQuery {
    /// Questions listed unless another limit is asked.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The largest limit.
    pub const MAX_LIMIT: usize = 1000;
    /// The longest search text, in bytes (a DNS name has at most 253).
    pub const MAX_SEARCH_BYTES: usize = 255;
}

impl Default for DnsLogQuery {
    fn default() -> Self {
        DnsLogQuery {
            device: None,
            blocked_only: false,
            search: None,
            limit: DnsLogQuery::DEFAULT_LIMIT,
        }
    }
}

/// One device's DNS counters today (the router's local day; kept across
/// restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsDeviceCounts {
    /// The device (lower-case MAC).
    pub mac: String,
    /// Questions it asked today that were answered.
    pub queries: u64,
    /// Of which blocked by a list.
    pub blocked: u64,
    /// Its most asked names today with how often, most first (empty when
    /// its questions are not logged).
    #[serde(default)]
    pub top: Vec<(String, u64)>,
}

/// One upstream resolver and its health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsUpstreamView {
    /// Its address (`192.0.2.53:53`, `tcp://…`, `tls://…`).
    pub upstream: String,
    /// Asked for tunnelled devices, through the tunnel.
    pub through_tunnel: bool,
    /// Answers received.
    pub answered: u64,
    /// Failures.
    pub failed: u64,
    /// Failures in a row (0: healthy).
    pub failing: u32,
    /// The last answer's round trip, in milliseconds.
    pub last_rtt_ms: u32,
}

/// One blocklist as the resolver loaded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsListView {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Rules that block.
    pub rules: u64,
    /// Exceptions (`@@` rules).
    pub exceptions: u64,
    /// Lines that did not parse (skipped).
    pub bad_lines: u64,
    /// Why the file could not be read, if it could not (the list is left out).
    pub error: Option<String>,
}

/// The resolver's counters since it started, its upstreams and its lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSummaryView {
    /// Questions answered (any way).
    pub answered: u64,
    /// Blocked by a list.
    pub blocked: u64,
    /// Sent to an upstream.
    pub forwarded: u64,
    /// No upstream answered (SERVFAIL sent).
    pub failed: u64,
    /// Answered from the cache.
    pub cache_hits: u64,
    /// Answered from the home's own names.
    pub local: u64,
    /// Upstream answers dropped as DNS rebinding.
    pub rebinding_dropped: u64,
    /// Per device, by MAC.
    pub per_device: Vec<DnsDeviceCounts>,
    /// The upstreams, direct first, then those asked through the tunnel.
    pub upstreams: Vec<DnsUpstreamView>,
    /// The blocklists.
    pub lists: Vec<DnsListView>,
}

impl DnsSummaryView {
    /// The most asked names of one device today, most first.
    pub fn device_top(&self, mac: &str) -> &[(String, u64)] {
        self.per_device
            .iter()
            .find(|d| d.mac == mac)
            .map_or(&[], |d| d.top.as_slice())
    }

    /// The counters of one device today (zero if it asked nothing).
    pub fn device(&self, mac: &str) -> (u64, u64) {
        self.per_device
            .iter()
            .find(|d| d.mac == mac)
            .map_or((0, 0), |d| (d.queries, d.blocked))
    }
}

/// Devices in one zone (the overview's counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCount {
    /// The zone.
    pub zone: String,
    /// Devices in it.
    pub devices: usize,
    /// Of which online now.
    pub online: usize,
}

/// The overview page and `GET /api/overview`: composed by the UI from
/// [`crate::Backend::devices`], [`crate::Backend::alerts`], [`crate::Backend::vpn`]
/// and [`crate::Backend::dns_summary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// Devices known.
    pub devices: usize,
    /// Devices online now.
    pub online: usize,
    /// Devices per zone, by zone name.
    pub zones: Vec<ZoneCount>,
    /// Devices in quarantine, waiting for the homeowner (newest first).
    pub quarantined: Vec<DeviceSummary>,
    /// Blocked devices.
    pub blocked: usize,
    /// A tunnel is configured.
    pub vpn_configured: bool,
    /// The tunnel's state: `down`, `connecting`, `up`, `error`.
    pub vpn_state: String,
    /// The newest handshake of any tunnel peer.
    pub vpn_last_handshake: Option<UnixTime>,
    /// Alerts not acknowledged yet (among the newest [`Overview::ALERT_WINDOW`]).
    pub unacknowledged_alerts: usize,
    /// The newest alerts, newest first.
    pub latest_alerts: Vec<AlertView>,
    /// DNS questions of the home's devices answered today (null: the
    /// resolver is off).
    pub dns_questions: Option<u64>,
    /// Of which blocked by a list (null: the resolver is off).
    pub dns_blocked: Option<u64>,
    /// The devices that moved the most bytes in the last hour (empty when
    /// traffic counting is off).
    #[serde(default)]
    pub top_talkers: Vec<DeviceTrafficView>,
}

impl Overview {
    /// How many of the newest alerts the unacknowledged count looks at.
    pub const ALERT_WINDOW: usize = 500;
    /// How many alerts the overview lists.
    pub const LATEST_ALERTS: usize = 5;
}

/// `GET /api/session`, `POST /api/login`, `POST /api/setup`: the session's CSRF
/// token, to send back in the `X-CSRF-Token` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The token.
    pub csrf: String,
}

/// `POST /api/setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time setup token the daemon printed.
    pub token: String,
    /// The new password (at least 10 characters, at most 1024 bytes).
    pub password: String,
}

/// `POST /api/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The password.
    pub password: String,
}

/// `POST /api/settings/password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    pub current: String,
    /// The new password (at least 10 characters, at most 1024 bytes).
    pub password: String,
}

/// What a device action did, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// The message.
    pub message: String,
}

/// How many alerts an acknowledgement changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResult {
    /// Alerts newly acknowledged.
    pub acknowledged: usize,
}

/// Every JSON API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
}
