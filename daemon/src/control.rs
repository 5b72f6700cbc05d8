//! The control protocol: what the CLI (and later the web UI) asks the daemon, and
//! what it answers. One JSON object per line over a root-only unix socket.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{MacAddr, ZoneId};
use crate::inventory::UnixTime;
use crate::policy::ZoneReason;

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// List devices.
    Devices,
    /// Put a device in a zone (the homeowner's decision; persists, always wins).
    SetZone {
        /// The device.
        mac: MacAddr,
        /// The zone.
        zone: ZoneId,
    },
    /// Add a device by hand, optionally with an address.
    AddDevice {
        /// The device.
        mac: MacAddr,
        /// An address it uses.
        ip: Option<IpAddr>,
    },
    /// Daemon status.
    Status,
    /// Release a device from quarantine into a zone (the homeowner's decision):
    /// the given zone, else the zone its classification suggests, else the
    /// policy's `approved_zone`.
    Approve {
        /// The device.
        mac: MacAddr,
        /// The zone, if named.
        zone: Option<ZoneId>,
    },
    /// The newest alerts.
    Alerts {
        /// How many at most.
        limit: usize,
    },
    /// Identity suggestions for randomised MACs.
    Suggestions,
    /// Accept an identity suggestion: the new MAC gets the known device's zone and
    /// name.
    Link {
        /// The new (randomised) MAC.
        new_mac: MacAddr,
        /// The known device.
        known_mac: MacAddr,
    },
    /// The WireGuard tunnel's state.
    Tunnel,
    /// Put addresses in a domain set (what the DNS resolver will do with its
    /// answers): traffic to them goes through the tunnel for `ttl_secs`.
    DomainAdd {
        /// The domain set (`domain_sets` in the tunnel policy).
        set: crate::config::DomainSetId,
        /// The addresses.
        addresses: Vec<IpAddr>,
        /// How long they stay.
        ttl_secs: u32,
    },
    /// Name a device (the homeowner's name; `None` or empty forgets it).
    Rename {
        /// The device.
        mac: MacAddr,
        /// The name (at most [`MAX_DEVICE_NAME`] bytes).
        name: Option<String>,
    },
    /// Block or unblock a device: blocked, the router forwards nothing from or to
    /// it and answers nothing (a set membership, applied as a delta).
    Block {
        /// The device.
        mac: MacAddr,
        /// Blocked?
        blocked: bool,
    },
    /// What is shared across zones, and the presets.
    Sharing,
    /// Turn a preset's share from one zone to another on or off (the
    /// homeowner's; kept in the store, beside the policy files' shares).
    Share {
        /// The preset (`chromecast`).
        preset: String,
        /// The zone offering it.
        from: ZoneId,
        /// The zone that may find and use it.
        to: ZoneId,
        /// On or off.
        on: bool,
    },
    /// Watch a device (told when it goes offline and comes back), or stop.
    Watch {
        /// The device.
        mac: MacAddr,
        /// Watched?
        watched: bool,
    },
    /// Forget a device: its name, zone, block and everything learned go; if
    /// it shows up again it is a new device (in quarantine).
    Forget {
        /// The device.
        mac: MacAddr,
    },
    /// The homeowner's tunnel choice for one device: through, never, or as the
    /// policy says (`None`).
    DeviceTunnel {
        /// The device.
        mac: MacAddr,
        /// The choice.
        route: Option<bool>,
    },
    /// Zones with what they may reach and their members.
    Zones,
    /// Acknowledge alerts: the given ids, or all (`None`).
    AckAlerts {
        /// Ids; `None` for all.
        ids: Option<Vec<i64>>,
    },
    /// The web UI's password hash and the one-time setup token (root-only socket;
    /// `bulkhead setup-token` shows the token).
    Auth,
    /// Store the web UI's new password hash (argon2id PHC string); the setup
    /// token is spent.
    SetPasswordHash {
        /// The hash.
        hash: String,
    },
    /// Forget the web UI's password (`bulkhead reset-password`): a new setup
    /// token is made, and the web UI asks for a new password with it.
    ResetPassword,
    /// The resolver's state (`bulkhead dns`).
    DnsStatus,
    /// The resolver's query log, newest first (`bulkhead dns log`).
    DnsLog {
        /// Which questions.
        filter: crate::dns::querylog::LogFilter,
    },
    /// Download the URL blocklists now (`bulkhead dns refresh`).
    DnsRefresh,
    /// What a device would get for a name, and why (`bulkhead dns test`).
    DnsTest {
        /// The name.
        name: String,
        /// The device asking (default: the router itself).
        from: Option<MacAddr>,
    },
    /// The notification channels' state (`bulkhead notify status`).
    NotifyStatus,
    /// Send a test alert on one channel (`bulkhead notify test NAME`).
    NotifyTest {
        /// The channel (`mqtt` for the broker).
        channel: String,
    },
    /// What detection saw (`bulkhead detect`): every device, or one.
    Detect {
        /// Only this device.
        mac: Option<MacAddr>,
    },
    /// Traffic per device (`bulkhead traffic`): the last hour's top
    /// talkers, or one device with its minute and hour series.
    Traffic {
        /// Only this device.
        mac: Option<MacAddr>,
    },
}

/// The longest name a homeowner may give a device, in bytes.
pub const MAX_DEVICE_NAME: usize = 64;

/// Checks a homeowner's device name: trimmed; empty means no name; at most
/// [`MAX_DEVICE_NAME`] bytes; no control characters and no bidirectional
/// overrides or isolates (they would reorder the text around the name wherever
/// it is shown). The name is stored and shown as data, never put into nft text.
pub fn check_device_name(name: Option<&str>) -> Result<Option<String>, String> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.len() > MAX_DEVICE_NAME {
        return Err(format!(
            "the name is {} bytes long; at most {MAX_DEVICE_NAME} are allowed",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(format!(
            "the name contains the control character {}",
            c.escape_unicode()
        ));
    }
    Ok(Some(name.to_string()))
}

/// One zone as the CLI and the web UI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneInfo {
    /// Id.
    pub id: ZoneId,
    /// The policy's description.
    pub description: String,
    /// May start connections to the internet.
    pub internet: bool,
    /// Zones it may start connections to.
    pub reach_zones: Vec<ZoneId>,
    /// Router services it may use.
    pub router_services: Vec<String>,
    /// Members reach each other.
    pub intra_zone: bool,
    /// The zone unknown devices land in.
    pub is_unknown_zone: bool,
    /// Its internet traffic goes through the tunnel.
    pub tunnel: bool,
    /// Members' MACs.
    pub members: Vec<MacAddr>,
}

/// The tunnel as the CLI and the web UI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelView {
    /// Whether a tunnel is configured.
    pub configured: bool,
    /// down / connecting / up / error.
    pub state: String,
    /// The interface.
    pub interface: Option<String>,
    /// Our public key (base64).
    pub public_key: Option<String>,
    /// UDP port.
    pub listen_port: Option<u16>,
    /// Peers.
    pub peers: Vec<TunnelPeerView>,
    /// Failed attempts since it was last up.
    pub attempts: u32,
    /// Recent transitions, newest last: (unix time, from, to, reason).
    pub transitions: Vec<TunnelTransitionView>,
    /// What is routed through it, in words (from the policy).
    pub routed: Vec<String>,
    /// Packets the leak guard dropped (marked traffic that tried another way out).
    pub leak_guard_drops: Option<u64>,
    /// Data-plane drop counters.
    pub counters: Option<crate::tunnel::device::CounterValues>,
}

/// One peer of the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelPeerView {
    /// Public key (base64).
    pub public_key: String,
    /// Endpoint as configured (name:port).
    pub endpoint_config: Option<String>,
    /// Endpoint in use (address:port).
    pub endpoint: Option<String>,
    /// Unix time of the last handshake.
    pub last_handshake: Option<UnixTime>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
}

/// One state change of the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelTransitionView {
    /// When (unix time).
    pub at: UnixTime,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Why.
    pub reason: String,
}

/// One device as the CLI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// MAC.
    pub mac: MacAddr,
    /// Name, if any (untrusted text: display escaped).
    pub name: Option<String>,
    /// Zone.
    pub zone: ZoneId,
    /// Why it is in that zone.
    pub reason: ZoneReason,
    /// Addresses.
    pub addresses: Vec<IpAddr>,
    /// First seen.
    pub first_seen: UnixTime,
    /// Last seen.
    pub last_seen: UnixTime,
    /// Seen within the last ten minutes (lease, neighbour table, packets).
    pub online: bool,
    /// The MAC's IEEE vendor, if registered.
    pub vendor: Option<String>,
    /// Whether the MAC is locally administered (randomised / private).
    pub randomized: bool,
    /// What the device is and the rule that says so, if any rule matched.
    pub class: Option<crate::classify::ClassMatch>,
    /// Everything it told us (untrusted text: display escaped).
    pub evidence: crate::classify::Evidence,
    /// In the policy's unknown zone (waiting for the homeowner).
    #[serde(default)]
    pub quarantined: bool,
    /// Blocked by the homeowner.
    #[serde(default)]
    pub blocked: bool,
    /// The homeowner's tunnel choice (`None`: as the policy says).
    #[serde(default)]
    pub tunnel_choice: Option<bool>,
    /// The homeowner watches it (told when it goes offline and comes back).
    #[serde(default)]
    pub watched: bool,
    /// Its internet traffic goes through the tunnel (policy and choice).
    #[serde(default)]
    pub tunnel_routed: bool,
}

impl DeviceView {
    /// The name to show ([`crate::inventory::naming`]): the homeowner's (or
    /// the policy's), else the DHCP host name, else the first mDNS name, else
    /// its vendor and class. Device-supplied text: escape it for the terminal
    /// or the page it goes to.
    pub fn best_name(&self) -> Option<String> {
        crate::inventory::naming::best_name(crate::inventory::naming::NameParts {
            homeowner: self.name.as_deref(),
            hostname: self.evidence.hostname.as_deref(),
            mdns_name: self
                .evidence
                .mdns_names
                .iter()
                .map(String::as_str)
                .find(|n| !n.trim().is_empty()),
            vendor: self.vendor.as_deref(),
            class: self.class.as_ref().map(|c| c.class.as_str()),
        })
    }
}

/// Daemon status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// Devices known.
    pub devices: usize,
    /// Zones in the policy.
    pub zones: Vec<ZoneId>,
    /// Full table replaces since start.
    pub full_applies: u64,
    /// Set-delta applies since start.
    pub delta_applies: u64,
    /// The last apply error, if the last apply failed.
    pub last_error: Option<String>,
    /// DHCP leases held by Bulkhead's server.
    pub leases: usize,
    /// Malformed DHCP packets dropped (all segments, server and capture).
    pub dhcp_malformed: u64,
    /// DHCP messages dropped because their `chaddr` was not their sender's MAC.
    #[serde(default)]
    pub dhcp_spoofed: u64,
    /// Observer mode: changes of the other server's lease file not believed
    /// (the MAC they were for had not sent a client packet itself lately).
    #[serde(default)]
    pub dhcp_lease_changes_ignored: u64,
    /// Per serving segment, the DHCP server's counters.
    pub dhcp: Vec<(crate::config::SegmentId, crate::discovery::dhcp::Counters)>,
    /// mDNS discovery counters, if it runs.
    pub mdns: Option<crate::discovery::mdns::MdnsCounters>,
    /// New devices discovery left untracked because the inventory was full.
    pub untracked_new_devices: u64,
    /// Known devices bound to the bridge port they are on (port binding).
    #[serde(default)]
    pub port_bound_devices: usize,
    /// MACs the bridges learned that the port book could not remember (full).
    #[serde(default)]
    pub port_book_overflow: u64,
    /// The share proxy's counters and shared services, if anything is shared.
    #[serde(default)]
    pub share: Option<Box<crate::share::ShareStatus>>,
}

/// What is shared across zones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingInfo {
    /// The presets a share may name.
    pub presets: Vec<SharePresetInfo>,
    /// The shares in force.
    pub shares: Vec<ShareInfo>,
}

/// One preset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePresetInfo {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// mDNS service types and SSDP targets.
    pub services: Vec<String>,
    /// Extra ports (`tcp/8008-8009`).
    pub ports: Vec<String>,
    /// Where its ports come from.
    pub source: String,
}

/// One share in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    /// Its preset, or `share[N]`.
    pub name: String,
    /// Offering zones.
    pub from: Vec<ZoneId>,
    /// Consuming zones.
    pub to: Vec<ZoneId>,
    /// The homeowner's (`bulkhead share on`, the web UI), not a policy file's.
    pub homeowner: bool,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// Devices.
    Devices {
        /// The list.
        devices: Vec<DeviceView>,
    },
    /// Done; says what happened.
    Done {
        /// In words.
        message: String,
    },
    /// Status.
    Status(StatusView),
    /// What is shared across zones.
    Sharing {
        /// Presets and shares.
        sharing: SharingInfo,
    },
    /// Alerts acknowledged (a number, not text: the UI shows it its own way).
    Acknowledged {
        /// How many were not acknowledged before.
        count: usize,
    },
    /// Alerts, newest first.
    Alerts {
        /// The list.
        alerts: Vec<crate::alerts::Alert>,
    },
    /// The tunnel.
    Tunnel(Box<TunnelView>),
    /// Identity suggestions, newest first.
    Suggestions {
        /// The list.
        suggestions: Vec<crate::alerts::IdentitySuggestion>,
    },
    /// Zones.
    Zones {
        /// The list, in policy order.
        zones: Vec<ZoneInfo>,
    },
    /// The web UI's credentials.
    Auth {
        /// The argon2id PHC string, once a password is set.
        password_hash: Option<String>,
        /// The one-time setup token, while no password is set.
        setup_token: Option<String>,
    },
    /// The resolver's state.
    Dns(Box<crate::dns::DnsStatus>),
    /// The notification channels (`None`: none configured).
    Notify {
        /// Their state.
        status: Option<Box<crate::notify::NotifyStatus>>,
    },
    /// What detection saw (`None`: detection is off).
    Detect {
        /// The report.
        report: Option<Box<crate::detect::DetectReport>>,
    },
    /// Traffic per device (`None`: counting is off).
    Traffic {
        /// The report.
        report: Option<Box<crate::traffic::TrafficReport>>,
    },
    /// Query log entries, newest first.
    DnsLog {
        /// The entries.
        entries: Vec<crate::dns::querylog::QueryLogEntry>,
    },
    /// Refused or failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot reach the daemon at {path} (is `bulkhead daemon` running, and are you root?)")]
    Connect {
        /// Socket path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// I/O after connecting.
    #[error("talking to the daemon failed")]
    Io(#[source] std::io::Error),
    /// The answer was not understood.
    #[error("the daemon's answer was not understood")]
    Decode(#[source] serde_json::Error),
}

/// Sends one request and waits for the answer.
pub fn call(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(ClientError::Io)?;
    let mut line = serde_json::to_string(req).map_err(ClientError::Decode)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(ClientError::Io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(ClientError::Io)?;
    serde_json::from_str(&answer).map_err(ClientError::Decode)
}

/// Parses `data` (lossily UTF-8) as one control-socket line, as the daemon reads
/// a [`Request`] and the CLI a [`Response`]; whatever parses must survive a round
/// trip through its JSON unchanged.
#[doc(hidden)]
pub fn fuzz_entry_control(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(req) = serde_json::from_str::<Request>(&text) {
        let json = serde_json::to_string(&req).expect("a request serializes");
        assert_eq!(
            serde_json::from_str::<Request>(&json).ok(),
            Some(req),
            "request round trip: {json}"
        );
    }
    if let Ok(resp) = serde_json::from_str::<Response>(&text) {
        let json = serde_json::to_string(&resp).expect("a response serializes");
        assert_eq!(
            serde_json::from_str::<Response>(&json).ok(),
            Some(resp),
            "response round trip: {json}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_name_is_yours_then_the_host_name_then_mdns() {
        let mut d = DeviceView {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            name: None,
            zone: ZoneId::new("iot").expect("id"),
            reason: crate::policy::ZoneReason::Unknown,
            addresses: Vec::new(),
            first_seen: 0,
            last_seen: 0,
            online: false,
            vendor: None,
            randomized: true,
            class: None,
            evidence: Default::default(),
            quarantined: false,
            blocked: false,
            tunnel_choice: None,
            watched: false,
            tunnel_routed: false,
        };
        assert_eq!(d.best_name(), None);
        d.evidence.mdns_names.insert("Living Room TV".into());
        assert_eq!(d.best_name().as_deref(), Some("Living Room TV"));
        d.evidence.hostname = Some("Chromecast".into());
        assert_eq!(d.best_name().as_deref(), Some("Chromecast"));
        d.name = Some("TV".into());
        assert_eq!(d.best_name().as_deref(), Some("TV"));
        d.name = Some("  ".into());
        assert_eq!(d.best_name().as_deref(), Some("Chromecast"), "a blank name is no name");
    }

    #[test]
    fn wire_format_is_stable() {
        let r = Request::SetZone {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            zone: ZoneId::new("iot").expect("id"),
        };
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"cmd":"set-zone","mac":"02:00:00:00:00:01","zone":"iot"}"#
        );
        let bad: Result<Request, _> =
            serde_json::from_str(r#"{"cmd":"set-zone","mac":"02:00:00:00:00:zz","zone":"iot"}"#);
        assert!(bad.is_err());
        let bad: Result<Request, _> =
            serde_json::from_str(r#"{"cmd":"set-zone","mac":"02:00:00:00:00:01","zone":"Bad Zone"}"#);
        assert!(bad.is_err());
        assert_eq!(
            serde_json::to_string(&Request::ResetPassword).expect("json"),
            r#"{"cmd":"reset-password"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::DeviceTunnel {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                route: None
            })
            .expect("json"),
            r#"{"cmd":"device-tunnel","mac":"02:00:00:00:00:01","route":null}"#
        );
    }

    /// Control lines to mutate: every request shape, and a few answers.
    fn control_seeds() -> Vec<String> {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let zone = ZoneId::new("iot").expect("id");
        let requests = [
            Request::Devices,
            Request::SetZone {
                mac,
                zone: zone.clone(),
            },
            Request::AddDevice {
                mac,
                ip: "fd00::7".parse().ok(),
            },
            Request::Status,
            Request::Approve { mac, zone: Some(zone) },
            Request::Alerts { limit: 20 },
            Request::Suggestions,
            Request::Link {
                new_mac: mac,
                known_mac: MacAddr([0, 0x11, 0x22, 0x33, 0x44, 0x55]),
            },
            Request::Tunnel,
            Request::DomainAdd {
                set: crate::config::DomainSetId::new("streaming").expect("id"),
                addresses: vec!["192.0.2.1".parse().expect("ip")],
                ttl_secs: 300,
            },
            Request::Rename {
                mac,
                name: Some("Küche \"tv\"".into()),
            },
            Request::Block { mac, blocked: true },
            Request::DeviceTunnel {
                mac,
                route: Some(false),
            },
            Request::Zones,
            Request::AckAlerts {
                ids: Some(vec![1, -2, i64::MAX]),
            },
            Request::Auth,
            Request::SetPasswordHash {
                hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            },
            Request::ResetPassword,
        ];
        let responses = [
            Response::Done { message: "ok".into() },
            Response::Acknowledged { count: 3 },
            Response::Auth {
                password_hash: None,
                setup_token: Some("t0k3n".into()),
            },
            Response::Error {
                message: "no such device".into(),
            },
        ];
        let mut out: Vec<String> = requests
            .iter()
            .map(|r| serde_json::to_string(r).expect("json"))
            .collect();
        out.extend(responses.iter().map(|r| serde_json::to_string(r).expect("json")));
        out
    }

    #[test]
    fn control_fuzz_entry_survives_a_deterministic_corpus() {
        let seeds = control_seeds();
        let tokens: &[&str] = &[
            "\"",
            "\\u0000",
            "\\ud800",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "null",
            "true",
            "-0",
            "1e999",
            "18446744073709551616",
            "\"cmd\":",
            "\"result\":",
            "é",
            " ",
        ];
        let mut state = 0x00c0_ffee_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d) as usize
        };
        for i in 0..20_000 {
            let mut v = seeds[i % seeds.len()].as_bytes().to_vec();
            for _ in 0..=next() % 4 {
                let at = next() % (v.len() + 1);
                match next() % 3 {
                    0 if at < v.len() => v[at] = next() as u8,
                    1 => {
                        let end = (at + next() % 12).min(v.len());
                        v.drain(at..end);
                    }
                    _ => {
                        let t = tokens[next() % tokens.len()].as_bytes();
                        v.splice(at..at, t.iter().copied());
                    }
                }
            }
            fuzz_entry_control(&v);
        }
        for seed in &seeds {
            assert!(serde_json::from_str::<Request>(seed).is_ok() || serde_json::from_str::<Response>(seed).is_ok());
        }
    }

    /// Writes the seed corpus (see `write_fuzz_seeds` in `discovery::dhcp::fuzz`).
    #[test]
    #[ignore = "writes files; run by hand to regenerate fuzz/corpus"]
    fn write_control_fuzz_seeds() {
        if std::env::var_os("BULKHEAD_WRITE_FUZZ_SEEDS").is_none() {
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control_json");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (i, seed) in control_seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed{i:02}")), seed).expect("write");
        }
    }

    #[test]
    fn device_names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(check_device_name(None), Ok(None));
        assert_eq!(check_device_name(Some("  \t ")), Ok(None), "blank forgets");
        assert_eq!(
            check_device_name(Some("  Anna's <phone> ")),
            Ok(Some("Anna's <phone>".into())),
            "markup is data, escaped where shown"
        );
        assert_eq!(check_device_name(Some("Küche 📺")), Ok(Some("Küche 📺".into())));
        let long = "é".repeat(MAX_DEVICE_NAME / 2 + 1);
        assert!(check_device_name(Some(&long)).is_err(), "bytes, not characters");
        assert!(check_device_name(Some(&"x".repeat(MAX_DEVICE_NAME))).is_ok());
        for bad in ["a\nb", "a\u{1b}[31mb", "a\u{202e}b", "a\u{7f}", "a\u{2066}b"] {
            assert!(check_device_name(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
