//! The fake home's data: its resolver (log and counters), zones, devices and
//! alerts, built the way the daemon reports them.

use super::*;

/// The fake resolver: its log, newest first, and its counters.
#[derive(Debug, Clone)]
pub(crate) struct FakeDns {
    pub(crate) log: Vec<DnsQueryView>,
    pub(crate) summary: DnsSummaryView,
}

impl FakeDns {
    pub(crate) fn new(upstreams: Vec<DnsUpstreamView>, lists: Vec<DnsListView>) -> FakeDns {
        FakeDns {
            log: Vec::new(),
            summary: DnsSummaryView {
                answered: 0,
                blocked: 0,
                forwarded: 0,
                failed: 0,
                cache_hits: 0,
                local: 0,
                rebinding_dropped: 0,
                per_device: Vec::new(),
                upstreams,
                lists,
            },
        }
    }

    /// Logs and counts one question, as the daemon's resolver does.
    pub(crate) fn push(&mut self, q: DnsQueryView) {
        let s = &mut self.summary;
        s.answered += 1;
        match &q.outcome {
            DnsOutcome::Forwarded { .. } => s.forwarded += 1,
            DnsOutcome::Cached => s.cache_hits += 1,
            DnsOutcome::Local => s.local += 1,
            DnsOutcome::Blocked { .. } => s.blocked += 1,
            DnsOutcome::RebindingDropped => {
                s.forwarded += 1;
                s.rebinding_dropped += 1;
            }
            DnsOutcome::Refused => {}
            DnsOutcome::Failed => {
                s.forwarded += 1;
                s.failed += 1;
            }
        }
        if let Some(mac) = &q.mac {
            let i = match s.per_device.binary_search_by(|d| d.mac.cmp(mac)) {
                Ok(i) => i,
                Err(i) => {
                    s.per_device.insert(
                        i,
                        DnsDeviceCounts {
                            mac: mac.clone(),
                            queries: 0,
                            blocked: 0,
                            top: Vec::new(),
                        },
                    );
                    i
                }
            };
            let d = &mut s.per_device[i];
            d.queries += 1;
            d.blocked += u64::from(q.outcome.is_blocked());
            match d.top.iter_mut().find(|(n, _)| *n == q.name) {
                Some(slot) => slot.1 += 1,
                None => d.top.push((q.name.clone(), 1)),
            }
            d.top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        self.log.insert(0, q);
    }
}

/// The demo's upstream resolver.
pub const DEMO_UPSTREAM: &str = "192.0.2.53:53";

pub(crate) fn upstream(
    upstream: &str,
    through_tunnel: bool,
    answered: u64,
    failed: u64,
    failing: u32,
    rtt: u32,
) -> DnsUpstreamView {
    DnsUpstreamView {
        upstream: upstream.into(),
        through_tunnel,
        answered,
        failed,
        failing,
        last_rtt_ms: rtt,
    }
}

/// One logged question.
pub fn dns_query(
    at: i64,
    mac: Option<&str>,
    client: &str,
    name: &str,
    qtype: &str,
    outcome: DnsOutcome,
) -> DnsQueryView {
    let rcode = match &outcome {
        DnsOutcome::Refused => "Refused",
        DnsOutcome::Failed => "ServFail",
        _ => "NoError",
    };
    DnsQueryView {
        at,
        client: client.into(),
        mac: mac.map(str::to_string),
        name: name.into(),
        qtype: qtype.into(),
        rcode: rcode.into(),
        outcome,
        micros: 850,
    }
}

/// The demo's DNS: a direct upstream, a failing one and one through the
/// tunnel; the `ads` list and an unreadable one; questions of every outcome,
/// two of them with hostile names.
pub(crate) fn demo_dns(now: i64) -> FakeDns {
    let mut dns = FakeDns::new(
        vec![
            upstream(DEMO_UPSTREAM, false, 9, 0, 0, 12),
            upstream("198.51.100.53:53", false, 0, 3, 3, 0),
            upstream("10.8.0.1:53", true, 1, 0, 0, 31),
        ],
        vec![
            DnsListView {
                name: "ads".into(),
                file: "/etc/bulkhead/lists/ads.txt".into(),
                rules: 3,
                exceptions: 1,
                bad_lines: 0,
                error: None,
            },
            DnsListView {
                name: "malware".into(),
                file: "/etc/bulkhead/lists/malware.txt".into(),
                rules: 0,
                exceptions: 0,
                bad_lines: 0,
                error: Some("No such file or directory (os error 2)".into()),
            },
        ],
    );
    let fwd = || DnsOutcome::Forwarded {
        upstream: DEMO_UPSTREAM.into(),
    };
    let ads = || DnsOutcome::Blocked { list: "ads".into() };
    let (laptop, phone, camera, plug, tv, speaker, stranger) = (
        Some("02:00:00:00:01:01"),
        Some("02:00:00:00:01:02"),
        Some("02:00:00:00:02:01"),
        Some("02:00:00:00:02:02"),
        Some("02:00:00:00:02:03"),
        Some("02:00:00:00:02:04"),
        Some("02:00:00:00:09:01"),
    );
    let questions = [
        (900, laptop, "192.168.1.10", "www.example.com", "A", fwd()),
        (880, laptop, "192.168.1.10", "www.example.com", "AAAA", fwd()),
        (700, phone, "192.168.1.11", "connectivitycheck.example.net", "A", fwd()),
        (650, camera, "192.168.1.12", "p2p.camera-cloud.example", "A", fwd()),
        (
            640,
            camera,
            "192.168.1.12",
            "telemetry.camera-cloud.example",
            "A",
            ads(),
        ),
        (600, plug, "192.168.1.13", "ads.example.test", "A", ads()),
        (590, plug, "192.168.1.13", "ads.example.test", "AAAA", ads()),
        (
            500,
            tv,
            "192.168.1.14",
            "stream.example.test",
            "A",
            DnsOutcome::Forwarded {
                upstream: "10.8.0.1:53".into(),
            },
        ),
        (400, laptop, "192.168.1.10", "printer.lan", "A", DnsOutcome::Local),
        (
            300,
            speaker,
            "192.168.1.15",
            "rebind.example.test",
            "A",
            DnsOutcome::RebindingDropped,
        ),
        (
            200,
            speaker,
            "192.168.1.15",
            "\"onmouseover=alert(1) x=\".example.test",
            "A",
            fwd(),
        ),
        (
            120,
            stranger,
            "192.168.1.16",
            "<script>alert(1)</script>.example.test",
            "A",
            DnsOutcome::Refused,
        ),
        (90, None, "192.168.1.99", "pool.ntp.example", "A", DnsOutcome::Failed),
        (60, laptop, "192.168.1.10", "www.example.com", "A", DnsOutcome::Cached),
        (30, phone, "fd00:1::11", "www.example.com", "HTTPS", DnsOutcome::Cached),
        (10, camera, "192.168.1.12", "ads.example.test", "A", ads()),
    ];
    for (ago, mac, client, name, qtype, outcome) in questions {
        let mut q = dns_query(now - ago, mac, client, name, qtype, outcome);
        if name.starts_with('"') {
            q.rcode = "NXDomain".into();
        }
        dns.push(q);
    }
    dns
}

/// A PHC string for `password` with tiny argon2 parameters (8 KiB, one pass),
/// so tests sign in quickly; the UI verifies with the parameters in the hash.
pub fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).expect("valid argon2 parameters");
    let salt = SaltString::encode_b64(b"bulkhead-fake-salt").expect("valid salt");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes")
        .to_string()
}

pub(crate) fn zone(
    id: &str,
    description: &str,
    internet: bool,
    reach: &[&str],
    services: &[&str],
    tunnel: bool,
) -> ZoneView {
    ZoneView {
        id: id.into(),
        description: description.into(),
        internet,
        reach_zones: reach.iter().map(|s| s.to_string()).collect(),
        router_services: services.iter().map(|s| s.to_string()).collect(),
        intra_zone: id != "guest",
        is_unknown_zone: id == "unknown",
        tunnel,
        members: Vec::new(),
    }
}

pub(crate) fn default_zones() -> Vec<ZoneView> {
    vec![
        zone(
            "trusted",
            "Our laptops and phones",
            true,
            &["iot"],
            &["dns", "dhcp", "web-ui", "ssh"],
            false,
        ),
        zone(
            "iot",
            "Cameras, plugs, TVs: internet only",
            true,
            &[],
            &["dns", "dhcp", "ntp"],
            true,
        ),
        zone("guest", "Visitors", true, &[], &["dns", "dhcp"], false),
        zone(
            "unknown",
            "New devices wait here until approved",
            false,
            &[],
            &["dns", "dhcp"],
            false,
        ),
    ]
}

/// A device with plausible evidence; tests change what they need.
pub fn sample_device(mac: &str, name: Option<&str>, hostname: Option<&str>, zone: &str) -> DeviceDetail {
    let now = crate::format::now();
    let quarantined = zone == "unknown";
    let device = DeviceSummary {
        mac: mac.to_string(),
        name: name.map(str::to_string),
        hostname: hostname.map(str::to_string),
        class: (!quarantined).then(|| "media".to_string()),
        confidence: (!quarantined).then(|| "high".to_string()),
        vendor: Some("Example Devices Inc.".into()),
        zone: zone.to_string(),
        zone_reason: if quarantined { "unknown" } else { "classified" }.into(),
        quarantined,
        blocked: false,
        watched: false,
        tunnel_routed: zone == "iot",
        tunnel_choice: None,
        addresses: vec!["192.168.2.20".into(), "fd00:2::20".into()],
        online: true,
        first_seen: now - 86_400 * 3,
        last_seen: now - 30,
        randomized: false,
        best_name: None,
    };
    let host = hostname.unwrap_or("device");
    DeviceDetail {
        evidence: vec![
            EvidenceItem {
                source: "oui".into(),
                field: "MAC vendor".into(),
                value: "Example Devices Inc.".into(),
                unverified: None,
            },
            EvidenceItem {
                source: "dhcp".into(),
                field: "hostname (option 12)".into(),
                value: host.to_string(),
                unverified: None,
            },
            EvidenceItem {
                source: "dhcp".into(),
                field: "parameter request list (option 55)".into(),
                value: "1,3,6,15,119,252".into(),
                unverified: None,
            },
            EvidenceItem {
                source: "mdns".into(),
                field: "name".into(),
                value: format!("{host}.local"),
                unverified: Some("An mDNS answer that named this device's address: who sent it is not checked.".into()),
            },
        ],
        rule: (!quarantined).then(|| RuleMatch {
            rule: "media-airplay".into(),
            class: "media".into(),
            zone: Some("iot".into()),
            confidence: "high".into(),
            matched: vec![
                "mDNS service _airplay._tcp".into(),
                "DHCP option 55 = 1,3,6,15,119,252".into(),
            ],
        }),
        mdns_services: vec!["_airplay._tcp".into(), "_raop._tcp".into()],
        mdns_names: vec![format!("{host}.local")],
        txt: vec![TxtEntry {
            key: "model".into(),
            value: host.to_string(),
        }],
        dhcp_fingerprint: Some("1,3,6,15,119,252".into()),
        dhcp_vendor_class: Some("ExampleOS 1.0".into()),
        dhcp_client_id: Some("01aabbccddeeff".into()),
        device,
        zones: default_zones().into_iter().map(|z| z.id).collect(),
        refused: None,
        shares: Vec::new(),
    }
}

pub(crate) fn alert(id: i64, at: i64, kind: &str, mac: Option<&str>, message: &str, acknowledged: bool) -> AlertView {
    AlertView {
        id,
        at,
        kind: kind.into(),
        mac: mac.map(str::to_string),
        message: message.into(),
        acknowledged,
        count: 1,
        last_at: at,
        severity: "info".into(),
        name: None,
        facts: Default::default(),
        actions: Vec::new(),
    }
}
