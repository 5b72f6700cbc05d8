//! The web UI's [`bulkhead_web::Backend`]: every call becomes a control
//! [`Request`] to the event loop (the one owner of the state), and every answer
//! becomes the UI's view types. Nothing here decides anything.

use std::sync::{Arc, RwLock};

use tokio::sync::{broadcast, mpsc, oneshot};

use bulkhead_web::model::{
    AckTarget, AlertFacts, AlertView, AuthRecord, DeviceAction, DeviceDetail, DeviceSummary, DeviceTrafficView,
    DnsDeviceCounts, DnsListView, DnsLogQuery, DnsOutcome, DnsQueryView, DnsSummaryView, DnsUpstreamView, EvidenceItem,
    FlowView, LiveEvent, NotificationsView, NotifyChannelView, NotifyDeliveryView, PathFlowsView, RuleMatch,
    TrafficPoint, TrafficView, TxtEntry, VpnPeer, VpnTransition, VpnView, ZoneMember, ZoneView,
};
use bulkhead_web::{BackendError, BackendFuture};

use crate::config::{MacAddr, ZoneId};
use crate::control::{DeviceView, Request, Response, TunnelView, ZoneInfo};
use crate::dns::querylog::{LogFilter, Outcome, QueryLogEntry};
use crate::dns::DnsStatus;
use crate::notify::{ChannelStatus, NotifyStatus};

use super::control_socket::Job;

/// The daemon side of the web UI.
pub struct WebBackend {
    health: Arc<RwLock<bulkhead_web::Health>>,
    jobs: mpsc::Sender<Job>,
    live: broadcast::Sender<LiveEvent>,
}

impl WebBackend {
    /// A backend that sends its requests to `jobs` and its change notifications
    /// through `live`.
    pub fn new(
        health: Arc<RwLock<bulkhead_web::Health>>,
        jobs: mpsc::Sender<Job>,
        live: broadcast::Sender<LiveEvent>,
    ) -> WebBackend {
        WebBackend { health, jobs, live }
    }

    /// The event loop's answer, whatever it is.
    async fn answer(&self, req: Request) -> Result<Response, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((req, tx))
            .await
            .map_err(|_| BackendError::Unavailable("the daemon is stopping".into()))?;
        rx.await
            .map_err(|_| BackendError::Unavailable("the daemon is stopping".into()))
    }

    async fn ask(&self, req: Request) -> Result<Response, BackendError> {
        match self.answer(req).await? {
            Response::Error { message } => Err(BackendError::Refused(message)),
            r => Ok(r),
        }
    }

    /// A question for the resolver; `None` when it is off (the one error the
    /// runtime answers its requests with).
    async fn ask_resolver(&self, req: Request) -> Result<Option<Response>, BackendError> {
        match self.answer(req).await? {
            Response::Error { message } => {
                tracing::debug!(%message, "web UI: no resolver");
                Ok(None)
            }
            r => Ok(Some(r)),
        }
    }

    async fn device_views(&self) -> Result<Vec<DeviceView>, BackendError> {
        match self.ask(Request::Devices).await? {
            Response::Devices { devices } => Ok(devices),
            other => Err(unexpected(&other)),
        }
    }

    async fn zone_infos(&self) -> Result<Vec<ZoneInfo>, BackendError> {
        match self.ask(Request::Zones).await? {
            Response::Zones { zones } => Ok(zones),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(r: &Response) -> BackendError {
    BackendError::Unavailable(format!(
        "unexpected answer {}",
        serde_json::to_string(r).unwrap_or_default()
    ))
}

fn parse_mac(mac: &str) -> Result<MacAddr, BackendError> {
    mac.parse()
        .map_err(|_| BackendError::NotFound(format!("`{}` is not a MAC address", mac.escape_debug())))
}

fn parse_zone(zone: &str) -> Result<ZoneId, BackendError> {
    ZoneId::new(zone).map_err(|_| BackendError::Refused(format!("unknown zone `{}`", zone.escape_debug())))
}

fn done(r: Response) -> Result<String, BackendError> {
    match r {
        Response::Done { message } => Ok(message),
        other => Err(unexpected(&other)),
    }
}

/// The traffic report as the UI shows it, devices named.
fn traffic_view(
    r: crate::traffic::TrafficReport,
    names: &std::collections::BTreeMap<MacAddr, Option<String>>,
) -> TrafficView {
    use crate::traffic::book::{Flow, PathFlows, Point};
    let flow = |f: Flow| FlowView {
        bytes: f.bytes,
        packets: f.packets,
    };
    let paths = |p: PathFlows| PathFlowsView {
        internet: flow(p.internet),
        tunnel: flow(p.tunnel),
        zones: flow(p.zones),
    };
    let points = |v: Vec<Point>| {
        v.into_iter()
            .map(|p| TrafficPoint {
                at: p.at,
                received: p.received,
                sent: p.sent,
            })
            .collect()
    };
    TrafficView {
        sample_secs: r.sample_secs,
        last_error: r.last_error,
        top: r
            .devices
            .into_iter()
            .map(|d| DeviceTrafficView {
                mac: d.mac.to_string(),
                name: names.get(&d.mac).cloned().flatten(),
                sent: paths(d.totals.sent),
                received: paths(d.totals.received),
                last_hour_received: d.last_hour.0,
                last_hour_sent: d.last_hour.1,
                last_day_received: d.last_day.0,
                last_day_sent: d.last_day.1,
                minutes: points(d.minutes),
                hours: points(d.hours),
            })
            .collect(),
    }
}

/// An alert as the UI shows it: the devices' names now, its facts, and what
/// can still be done about it.
fn alert_view(a: crate::alerts::Alert, devices: &std::collections::BTreeMap<MacAddr, DeviceView>) -> AlertView {
    use crate::alerts::AlertKind as K;
    let device = a.mac.and_then(|m| devices.get(&m));
    let other = a.facts.other.and_then(|m| devices.get(&m));
    let mut actions = Vec::new();
    if let Some(d) = device.filter(|d| !d.blocked) {
        let placement = a.kind.asks_for_placement();
        if placement && d.quarantined {
            actions.push("approve".to_string());
        }
        if a.kind.catches_device() || (placement && d.quarantined) {
            actions.push("block".to_string());
        }
        if a.kind == K::IdentitySuggestion && other.is_some() {
            actions.push("link".to_string());
        }
    }
    let f = a.facts;
    AlertView {
        id: a.id,
        at: a.at,
        kind: a.kind.as_str().to_string(),
        mac: a.mac.map(|m| m.to_string()),
        severity: a.kind.severity().as_str().to_string(),
        message: a.message,
        acknowledged: a.acknowledged,
        count: a.count,
        last_at: a.last_at,
        name: device.and_then(DeviceView::best_name),
        facts: AlertFacts {
            zone: f.zone,
            placed_by: f.placed_by,
            class: f.class,
            rule: f.rule,
            suggested_zone: f.suggested_zone,
            other: f.other.map(|m| m.to_string()),
            other_name: other.and_then(DeviceView::best_name),
            reasons: f.reasons,
            minutes: f.minutes,
        },
        actions,
    }
}

/// The list entry for one device.
pub fn summary(d: &DeviceView) -> DeviceSummary {
    let mut addresses = d.addresses.clone();
    addresses.sort_by_key(|a| (a.is_ipv6(), *a));
    DeviceSummary {
        mac: d.mac.to_string(),
        name: d.name.clone(),
        hostname: d
            .evidence
            .hostname
            .clone()
            .or_else(|| d.evidence.mdns_names.iter().next().cloned()),
        class: d.class.as_ref().map(|c| c.class.as_str().to_string()),
        confidence: d.class.as_ref().map(|c| c.confidence.as_str().to_string()),
        vendor: d.vendor.clone(),
        zone: d.zone.to_string(),
        zone_reason: d.reason.as_str().to_string(),
        quarantined: d.quarantined,
        blocked: d.blocked,
        watched: d.watched,
        tunnel_routed: d.tunnel_routed,
        tunnel_choice: d.tunnel_choice,
        addresses: addresses.iter().map(ToString::to_string).collect(),
        online: d.online,
        first_seen: d.first_seen,
        last_seen: d.last_seen,
        randomized: d.randomized,
        best_name: d.best_name(),
    }
}

/// Everything about one device, with each piece of evidence's source.
/// What detection saw of a device, for its page.
fn refused_view(r: &crate::detect::DeviceRefusals) -> bulkhead_web::model::RefusedView {
    bulkhead_web::model::RefusedView {
        sampled: r.sampled,
        to_router: r.to_router,
        routed: r.routed,
        bridged: r.bridged,
        blocked: r.blocked,
        first: r.first,
        last: r.last,
        top_targets: r.top_targets.iter().map(|(ip, n)| (ip.to_string(), *n)).collect(),
        top_ports: r.top_ports.clone(),
        episodes: r
            .episodes
            .iter()
            .map(|e| bulkhead_web::model::RefusalEpisode {
                started: e.started,
                last: e.last,
                samples: e.samples,
                hosts: e.hosts,
                ports: e.ports,
                probing: e.probing,
                lateral: e.lateral,
            })
            .collect(),
    }
}

pub fn detail(d: &DeviceView, zones: Vec<String>) -> DeviceDetail {
    let e = &d.evidence;
    let mut evidence = Vec::new();
    // Every source is the device's own: DHCP counts only from frames with
    // the device's own MAC on its port, mDNS only from responses its own MAC
    // sent (captured beside mdns-sd), SSDP from its own address (bound to its
    // MAC by the bridge), the neighbour table by MAC. `unverified` stays for
    // a source that cannot be bound to its sender.
    let mut item = |source: &str, field: &str, value: String| {
        evidence.push(EvidenceItem {
            source: source.into(),
            field: field.into(),
            value,
            unverified: None,
        })
    };
    if let Some(v) = &d.vendor {
        item("oui", "MAC vendor", v.clone());
    }
    if d.randomized {
        item("oui", "MAC", "locally administered (randomised / private)".into());
    }
    if let Some(h) = &e.hostname {
        item("dhcp", "hostname (option 12)", h.clone());
    }
    let fingerprint = e
        .dhcp_params
        .as_ref()
        .map(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    if let Some(f) = &fingerprint {
        item("dhcp", "parameter request list (option 55)", f.clone());
    }
    if let Some(v) = &e.vendor_class {
        item("dhcp", "vendor class (option 60)", v.clone());
    }
    if let Some(c) = &e.client_id {
        item("dhcp", "client identifier (option 61)", c.clone());
    }
    for s in &e.mdns_services {
        item("mdns", "service", s.clone());
    }
    for n in &e.mdns_names {
        item("mdns", "name", n.clone());
    }
    for (k, v) in &e.txt {
        item("mdns", "TXT", format!("{k}={v}"));
    }
    for (k, v) in &e.upnp {
        item("ssdp", &format!("UPnP {}", k.replace('_', " ")), v.clone());
    }
    if !d.addresses.is_empty() {
        item("neighbour", "addresses", d.addresses.len().to_string());
    }
    DeviceDetail {
        device: summary(d),
        evidence,
        rule: d.class.as_ref().map(|c| RuleMatch {
            rule: c.rule.clone(),
            class: c.class.as_str().to_string(),
            zone: c.zone.as_ref().map(ToString::to_string),
            confidence: c.confidence.as_str().to_string(),
            matched: c.matched.clone(),
        }),
        mdns_services: e.mdns_services.iter().cloned().collect(),
        mdns_names: e.mdns_names.iter().cloned().collect(),
        txt: e
            .txt
            .iter()
            .map(|(key, value)| TxtEntry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        dhcp_fingerprint: fingerprint,
        dhcp_vendor_class: e.vendor_class.clone(),
        dhcp_client_id: e.client_id.clone(),
        zones,
        refused: None,
        shares: Vec::new(),
    }
}

fn vpn_view(t: TunnelView) -> VpnView {
    VpnView {
        configured: t.configured,
        state: t.state,
        interface: t.interface,
        public_key: t.public_key,
        listen_port: t.listen_port,
        peers: t
            .peers
            .into_iter()
            .map(|p| VpnPeer {
                public_key: p.public_key,
                endpoint_config: p.endpoint_config,
                endpoint: p.endpoint,
                last_handshake: p.last_handshake,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                allowed_ips: p.allowed_ips,
            })
            .collect(),
        attempts: t.attempts,
        transitions: t
            .transitions
            .into_iter()
            .map(|x| VpnTransition {
                at: x.at,
                from: x.from,
                to: x.to,
                reason: x.reason,
            })
            .collect(),
        routed: t.routed,
        leak_guard_drops: t.leak_guard_drops,
    }
}

/// The UI's filter as the resolver's.
fn log_filter(q: DnsLogQuery) -> Result<LogFilter, BackendError> {
    Ok(LogFilter {
        device: q
            .device
            .as_deref()
            .map(|m| {
                m.parse()
                    .map_err(|_| BackendError::Refused(format!("`{}` is not a MAC address", m.escape_debug())))
            })
            .transpose()?,
        blocked_only: q.blocked_only,
        search: q.search,
        limit: q.limit,
    })
}

/// One logged question as the UI shows it.
pub fn dns_query_view(e: QueryLogEntry) -> DnsQueryView {
    DnsQueryView {
        at: i64::try_from(e.at).unwrap_or(i64::MAX),
        client: e.client.to_string(),
        mac: e.mac.map(|m| m.to_string()),
        name: e.name,
        qtype: e.qtype.into_owned(),
        rcode: e.rcode.into_owned(),
        outcome: match e.outcome {
            Outcome::Forwarded { upstream } => DnsOutcome::Forwarded { upstream },
            Outcome::Cached => DnsOutcome::Cached,
            Outcome::Local => DnsOutcome::Local,
            Outcome::Blocked { list } => DnsOutcome::Blocked { list },
            Outcome::Rebind => DnsOutcome::RebindingDropped,
            Outcome::NotAllowed => DnsOutcome::Refused,
            Outcome::Failed => DnsOutcome::Failed,
        },
        micros: e.micros,
    }
}

/// The resolver's state as the UI shows it.
pub fn dns_summary_view(s: DnsStatus) -> DnsSummaryView {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let mut top_today: std::collections::HashMap<MacAddr, Vec<(String, u64)>> = s.top_today.into_iter().collect();
    let upstreams = s
        .upstreams
        .iter()
        .map(|(u, h)| (u.to_string(), h, false))
        .chain(s.tunnel_upstreams.iter().map(|(u, h)| (u.to_string(), h, true)))
        .chain(
            s.zone_upstreams
                .iter()
                .map(|(zone, u, h)| (format!("{u} (zone {zone})"), h, false)),
        )
        .map(|(upstream, h, through_tunnel)| DnsUpstreamView {
            upstream,
            through_tunnel,
            answered: h.answered,
            failed: h.failed,
            failing: h.failing,
            last_rtt_ms: h.last_rtt_ms,
        })
        .collect();
    DnsSummaryView {
        answered: s.stats.answered,
        blocked: s.stats.blocked,
        forwarded: s.stats.forwarded,
        failed: s.stats.failed,
        cache_hits: s.cache_hits,
        local: s.stats.local,
        rebinding_dropped: s.stats.rebind,
        per_device: s
            .per_device
            .iter()
            .map(|(mac, c)| DnsDeviceCounts {
                mac: mac.to_string(),
                queries: c.queries,
                blocked: c.blocked,
                top: top_today.remove(mac).unwrap_or_default(),
            })
            .collect(),
        upstreams,
        lists: s
            .lists
            .into_iter()
            .map(|l| DnsListView {
                name: l.name,
                file: l.file,
                rules: count(l.rules),
                exceptions: count(l.exceptions),
                bad_lines: count(l.bad_lines),
                error: l.error,
            })
            .collect(),
    }
}

impl bulkhead_web::Backend for WebBackend {
    fn health(&self) -> bulkhead_web::Health {
        self.health.read().map(|h| h.clone()).unwrap_or_default()
    }

    fn devices(&self) -> BackendFuture<'_, Vec<DeviceSummary>> {
        Box::pin(async move { Ok(self.device_views().await?.iter().map(summary).collect()) })
    }

    fn device(&self, mac: String) -> BackendFuture<'_, DeviceDetail> {
        Box::pin(async move {
            let mac = parse_mac(&mac)?;
            // Both questions wait in the event loop's queue together, not one
            // after the other. (The protocol has no one-device request: the
            // whole list is copied for one device; cheap next to a page.)
            let (devices, zones, refused, status) = tokio::join!(
                self.device_views(),
                self.zone_infos(),
                self.ask(Request::Detect { mac: Some(mac) }),
                self.ask(Request::Status)
            );
            let devices = devices?;
            let d = devices
                .iter()
                .find(|d| d.mac == mac)
                .ok_or_else(|| BackendError::NotFound(format!("no device {mac}")))?;
            let zones = zones?.into_iter().map(|z| z.id.to_string()).collect();
            let mut detail = detail(d, zones);
            if let Ok(Response::Detect { report: Some(report) }) = refused {
                detail.refused = report.devices.get(&mac).map(refused_view);
            }
            if let Ok(Response::Status(status)) = status {
                let shared = status.share.map(|s| s.shared).unwrap_or_default();
                detail.shares = shared
                    .into_iter()
                    .filter(|s| d.addresses.contains(&s.address))
                    .map(|s| bulkhead_web::model::SharedServiceView {
                        service: s.service,
                        instance: s.instance,
                        port: s.port,
                        to: s.to,
                    })
                    .collect();
            }
            Ok(detail)
        })
    }

    fn sharing(&self) -> BackendFuture<'_, bulkhead_web::model::SharingView> {
        Box::pin(async move {
            match self.ask(Request::Sharing).await? {
                Response::Sharing { sharing } => Ok(bulkhead_web::model::SharingView {
                    presets: sharing
                        .presets
                        .into_iter()
                        .map(|p| bulkhead_web::model::SharePresetView {
                            name: p.name,
                            description: p.description,
                            services: p.services,
                            ports: p.ports,
                        })
                        .collect(),
                    shares: sharing
                        .shares
                        .into_iter()
                        .map(|s| bulkhead_web::model::ShareView {
                            name: s.name,
                            from: s.from.iter().map(ToString::to_string).collect(),
                            to: s.to.iter().map(ToString::to_string).collect(),
                            homeowner: s.homeowner,
                        })
                        .collect(),
                }),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn share(&self, action: bulkhead_web::model::ShareAction) -> BackendFuture<'_, String> {
        Box::pin(async move {
            let from = parse_zone(&action.from)?;
            let to = parse_zone(&action.to)?;
            match self
                .ask(Request::Share {
                    preset: action.preset,
                    from,
                    to,
                    on: action.on,
                })
                .await?
            {
                Response::Error { message } => Err(BackendError::Refused(message)),
                other => done(other),
            }
        })
    }

    fn device_action(&self, mac: String, action: DeviceAction) -> BackendFuture<'_, String> {
        Box::pin(async move {
            let mac = parse_mac(&mac)?;
            if !self.device_views().await?.iter().any(|d| d.mac == mac) {
                return Err(BackendError::NotFound(format!("no device {mac}")));
            }
            let req = match action {
                DeviceAction::Rename { name } => Request::Rename { mac, name },
                DeviceAction::SetZone { zone } => Request::SetZone {
                    mac,
                    zone: parse_zone(&zone)?,
                },
                DeviceAction::Approve { zone } => Request::Approve {
                    mac,
                    zone: zone.as_deref().map(parse_zone).transpose()?,
                },
                DeviceAction::Tunnel { route } => Request::DeviceTunnel { mac, route },
                DeviceAction::Block { blocked } => Request::Block { mac, blocked },
                DeviceAction::Watch { watched } => Request::Watch { mac, watched },
                DeviceAction::Forget => Request::Forget { mac },
                DeviceAction::Link { known } => Request::Link {
                    new_mac: mac,
                    known_mac: parse_mac(&known)?,
                },
            };
            let message = done(self.ask(req).await?)?;
            let _ = self.live.send(LiveEvent::Devices);
            Ok(message)
        })
    }

    fn zones(&self) -> BackendFuture<'_, Vec<ZoneView>> {
        Box::pin(async move {
            let (zones, devices) = tokio::join!(self.zone_infos(), self.device_views());
            let (zones, devices) = (zones?, devices?);
            let by_mac: std::collections::BTreeMap<MacAddr, &DeviceView> = devices.iter().map(|d| (d.mac, d)).collect();
            Ok(zones
                .into_iter()
                .map(|z| ZoneView {
                    id: z.id.to_string(),
                    description: z.description,
                    internet: z.internet,
                    reach_zones: z.reach_zones.iter().map(ToString::to_string).collect(),
                    router_services: z.router_services,
                    intra_zone: z.intra_zone,
                    is_unknown_zone: z.is_unknown_zone,
                    tunnel: z.tunnel,
                    members: z
                        .members
                        .iter()
                        .map(|m| {
                            let d = by_mac.get(m);
                            ZoneMember {
                                mac: m.to_string(),
                                name: d.and_then(|d| d.best_name()),
                                online: d.is_some_and(|d| d.online),
                            }
                        })
                        .collect(),
                })
                .collect())
        })
    }

    fn alerts(&self, limit: usize) -> BackendFuture<'_, Vec<AlertView>> {
        Box::pin(async move {
            let (alerts, devices) = tokio::join!(self.ask(Request::Alerts { limit }), self.device_views());
            let devices: std::collections::BTreeMap<MacAddr, DeviceView> =
                devices?.into_iter().map(|d| (d.mac, d)).collect();
            match alerts? {
                Response::Alerts { alerts } => Ok(alerts.into_iter().map(|a| alert_view(a, &devices)).collect()),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn traffic(&self, mac: Option<String>) -> BackendFuture<'_, Option<TrafficView>> {
        Box::pin(async move {
            let mac = mac.as_deref().map(parse_mac).transpose()?;
            let (report, devices) = tokio::join!(self.ask(Request::Traffic { mac }), self.device_views());
            let names: std::collections::BTreeMap<MacAddr, Option<String>> =
                devices?.iter().map(|d| (d.mac, d.best_name())).collect();
            match report? {
                Response::Traffic { report: None } => Ok(None),
                Response::Traffic { report: Some(r) } => Ok(Some(traffic_view(*r, &names))),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn acknowledge(&self, target: AckTarget) -> BackendFuture<'_, usize> {
        Box::pin(async move {
            let ids = match target {
                AckTarget::One(id) => Some(vec![id]),
                AckTarget::All => None,
            };
            let count = match self.ask(Request::AckAlerts { ids }).await? {
                Response::Acknowledged { count } => count,
                other => return Err(unexpected(&other)),
            };
            let _ = self.live.send(LiveEvent::Alerts);
            Ok(count)
        })
    }

    fn vpn(&self) -> BackendFuture<'_, VpnView> {
        Box::pin(async move {
            match self.ask(Request::Tunnel).await? {
                Response::Tunnel(t) => Ok(vpn_view(*t)),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn dns_log(&self, query: DnsLogQuery) -> BackendFuture<'_, Option<Vec<DnsQueryView>>> {
        Box::pin(async move {
            let filter = log_filter(query)?;
            match self.ask_resolver(Request::DnsLog { filter }).await? {
                None => Ok(None),
                Some(Response::DnsLog { entries }) => Ok(Some(entries.into_iter().map(dns_query_view).collect())),
                Some(other) => Err(unexpected(&other)),
            }
        })
    }

    fn dns_summary(&self) -> BackendFuture<'_, Option<DnsSummaryView>> {
        Box::pin(async move {
            match self.ask_resolver(Request::DnsStatus).await? {
                None => Ok(None),
                Some(Response::Dns(status)) => Ok(Some(dns_summary_view(*status))),
                Some(other) => Err(unexpected(&other)),
            }
        })
    }

    fn notifications(&self) -> BackendFuture<'_, NotificationsView> {
        Box::pin(async move {
            match self.ask(Request::NotifyStatus).await? {
                Response::Notify { status } => Ok(status.map(|s| notifications_view(*s)).unwrap_or_default()),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn notify_test(&self, name: String) -> BackendFuture<'_, String> {
        Box::pin(async move {
            // An unknown channel is a missing thing (404), not a refusal.
            let known = match self.ask(Request::NotifyStatus).await? {
                Response::Notify { status } => status.is_some_and(|s| s.channels.iter().any(|c| c.name == name)),
                other => return Err(unexpected(&other)),
            };
            if !known {
                return Err(BackendError::NotFound(format!(
                    "no notification channel `{}`",
                    name.escape_debug()
                )));
            }
            done(self.ask(Request::NotifyTest { channel: name }).await?)
        })
    }

    fn auth(&self) -> BackendFuture<'_, AuthRecord> {
        Box::pin(async move {
            match self.ask(Request::Auth).await? {
                Response::Auth {
                    password_hash,
                    setup_token,
                } => Ok(AuthRecord {
                    password_hash,
                    setup_token,
                }),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn set_password_hash(&self, hash: String) -> BackendFuture<'_, ()> {
        Box::pin(async move { done(self.ask(Request::SetPasswordHash { hash }).await?).map(|_| ()) })
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }
}

/// The Notifications page's view of the notifier.
pub fn notifications_view(s: NotifyStatus) -> NotificationsView {
    NotificationsView {
        channels: s.channels.into_iter().map(channel_view).collect(),
        missed: s.missed,
    }
}

fn channel_view(c: ChannelStatus) -> NotifyChannelView {
    let last_delivered = c.log.iter().rev().find(|d| d.result.is_ok()).map(|d| d.at);
    NotifyChannelView {
        target: server_only(&c.target),
        connected: (c.kind == "mqtt").then_some(c.connected),
        queued: u64::try_from(c.queued).unwrap_or(u64::MAX),
        last_delivered,
        log: c
            .log
            .into_iter()
            .rev()
            .map(|d| NotifyDeliveryView {
                at: d.at,
                alert: d.alert,
                kind: d.kind,
                ok: d.result.is_ok(),
                detail: match d.result {
                    Ok(code) if code > 0 => format!("HTTP {code}"),
                    Ok(_) => String::new(),
                    Err(e) => e,
                },
            })
            .collect(),
        name: c.name,
        kind: c.kind,
        sends: c.sends,
        sent: c.sent,
        failed: c.failed,
        dropped: c.dropped,
        rate_limited: c.rate_limited,
        quiet: c.quiet,
        last_error: c.last_error,
    }
}

/// A URL's scheme and server, without its path, query or user: a webhook's
/// path or an ntfy topic can be the secret that lets anyone post to it, and
/// the page is not the place to show it. A broker's `host:port` stays.
fn server_only(target: &str) -> String {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target.to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let server = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{server}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_web::Backend as _;

    #[test]
    fn the_page_shows_a_channel_s_server_not_its_secret_path() {
        assert_eq!(
            server_only("https://hooks.example.org:8443/hook/s3cr3t?x=1"),
            "https://hooks.example.org:8443"
        );
        assert_eq!(
            server_only("http://user:pw@[2001:db8::1]/topic"),
            "http://[2001:db8::1]"
        );
        assert_eq!(server_only("10.0.9.2:1883"), "10.0.9.2:1883");
    }

    #[test]
    fn a_channel_view_lists_deliveries_newest_first_and_its_last_success() {
        use crate::notify::Delivery;
        let d = |at, result| Delivery {
            at,
            alert: 7,
            kind: "probing".into(),
            result,
        };
        let view = notifications_view(NotifyStatus {
            channels: vec![ChannelStatus {
                name: "home".into(),
                kind: "webhook".into(),
                target: "http://10.0.9.2:8000/hook/abc".into(),
                sent: 1,
                failed: 1,
                log: vec![d(100, Ok(200)), d(200, Err("connection refused".into()))],
                ..ChannelStatus::default()
            }],
            missed: 3,
        });
        let c = &view.channels[0];
        assert_eq!(c.target, "http://10.0.9.2:8000");
        assert_eq!(c.connected, None);
        assert_eq!(c.last_delivered, Some(100));
        assert_eq!(c.log.iter().map(|d| d.at).collect::<Vec<_>>(), vec![200, 100]);
        assert_eq!(c.log[1].detail, "HTTP 200");
        assert!(!c.log[0].ok && c.log[0].detail == "connection refused");
        assert_eq!(view.missed, 3);
    }

    /// A backend whose event loop is the test: it sees the requests and
    /// answers them when it likes.
    fn backend() -> (WebBackend, mpsc::Receiver<Job>) {
        let (jobs_tx, jobs) = mpsc::channel::<Job>(8);
        let (live, _) = broadcast::channel(4);
        (WebBackend::new(Arc::default(), jobs_tx, live), jobs)
    }

    fn answer(req: &Request) -> Response {
        match req {
            Request::Devices => Response::Devices { devices: Vec::new() },
            Request::Zones => Response::Zones { zones: Vec::new() },
            other => Response::Error {
                message: format!("unexpected {other:?}"),
            },
        }
    }

    /// Takes two requests before answering either: a backend that asked one
    /// after the other would never send the second.
    async fn both_at_once(mut jobs: mpsc::Receiver<Job>) -> Vec<Request> {
        let (first, reply1) = jobs.recv().await.expect("a first request");
        let (second, reply2) = tokio::time::timeout(std::time::Duration::from_secs(5), jobs.recv())
            .await
            .expect("the second request before the first is answered")
            .expect("a second request");
        let _ = reply1.send(answer(&first));
        let _ = reply2.send(answer(&second));
        vec![first, second]
    }

    #[tokio::test]
    async fn a_device_page_asks_for_devices_and_zones_at_once() {
        let (b, jobs) = backend();
        let loop_side = tokio::spawn(both_at_once(jobs));
        let r = b.device("02:00:00:00:00:01".into()).await;
        assert!(matches!(r, Err(BackendError::NotFound(_))), "{r:?}");
        let asked = loop_side.await.expect("event loop");
        assert!(
            asked.contains(&Request::Devices) && asked.contains(&Request::Zones),
            "{asked:?}"
        );
    }

    #[tokio::test]
    async fn the_zones_page_asks_for_zones_and_devices_at_once() {
        let (b, jobs) = backend();
        let loop_side = tokio::spawn(both_at_once(jobs));
        assert_eq!(b.zones().await.expect("zones"), Vec::new());
        let asked = loop_side.await.expect("event loop");
        assert!(
            asked.contains(&Request::Devices) && asked.contains(&Request::Zones),
            "{asked:?}"
        );
    }

    /// Answers the next request with `response` and hands the request back.
    fn answer_once(mut jobs: mpsc::Receiver<Job>, response: Response) -> tokio::task::JoinHandle<Request> {
        tokio::spawn(async move {
            let (req, reply) = jobs.recv().await.expect("a request");
            let _ = reply.send(response);
            req
        })
    }

    fn resolver_off() -> Response {
        Response::Error {
            message: "the resolver is off (dns.enabled = false)".into(),
        }
    }

    #[tokio::test]
    async fn the_resolver_off_is_none_not_an_error() {
        let (b, jobs) = backend();
        let loop_side = answer_once(jobs, resolver_off());
        assert_eq!(b.dns_summary().await, Ok(None));
        assert_eq!(loop_side.await.expect("event loop"), Request::DnsStatus);
        let (b, jobs) = backend();
        let loop_side = answer_once(jobs, resolver_off());
        assert_eq!(b.dns_log(DnsLogQuery::default()).await, Ok(None));
        assert!(matches!(loop_side.await.expect("event loop"), Request::DnsLog { .. }));
    }

    #[tokio::test]
    async fn the_query_log_is_asked_with_the_filter_and_mapped() {
        use crate::dns::querylog::QueryLogEntry;
        let mac = MacAddr([2, 0, 0, 0, 2, 2]);
        let entry = |outcome: Outcome| QueryLogEntry {
            at: 1_700_000_000,
            client: std::net::IpAddr::from([10, 0, 1, 20]),
            mac: Some(mac),
            name: "<script>.example.test".into(),
            qtype: "AAAA".into(),
            rcode: "NoError".into(),
            outcome,
            micros: 42,
        };
        let outcomes = [
            Outcome::Forwarded {
                upstream: "192.0.2.53:53".into(),
            },
            Outcome::Cached,
            Outcome::Local,
            Outcome::Blocked { list: "ads".into() },
            Outcome::Rebind,
            Outcome::NotAllowed,
            Outcome::Failed,
        ];
        let mut no_device = entry(Outcome::Failed);
        no_device.mac = None;
        let mut entries: Vec<QueryLogEntry> = outcomes.iter().cloned().map(entry).collect();
        entries.push(no_device);
        let (b, jobs) = backend();
        let loop_side = answer_once(jobs, Response::DnsLog { entries });
        let query = DnsLogQuery {
            device: Some(mac.to_string()),
            blocked_only: true,
            search: Some("script".into()),
            limit: 7,
        };
        let views = b.dns_log(query).await.expect("answer").expect("the resolver is on");
        assert_eq!(
            loop_side.await.expect("event loop"),
            Request::DnsLog {
                filter: LogFilter {
                    device: Some(mac),
                    blocked_only: true,
                    search: Some("script".into()),
                    limit: 7,
                }
            }
        );
        let kinds: Vec<&str> = views.iter().map(|v| v.outcome.kind()).collect();
        assert_eq!(
            kinds,
            [
                "forwarded",
                "cached",
                "local",
                "blocked",
                "rebinding-dropped",
                "refused",
                "failed",
                "failed"
            ]
        );
        let v = &views[3];
        assert_eq!(v.outcome, DnsOutcome::Blocked { list: "ads".into() });
        assert_eq!(
            (
                v.at,
                v.client.as_str(),
                v.mac.as_deref(),
                v.name.as_str(),
                v.qtype.as_str(),
                v.micros
            ),
            (
                1_700_000_000,
                "10.0.1.20",
                Some("02:00:00:00:02:02"),
                "<script>.example.test",
                "AAAA",
                42
            )
        );
        assert_eq!(views[7].mac, None);
        // A device that is no MAC never reaches the event loop.
        let (b, _jobs) = backend();
        let bad = DnsLogQuery {
            device: Some("nope".into()),
            ..DnsLogQuery::default()
        };
        assert!(matches!(b.dns_log(bad).await, Err(BackendError::Refused(_))));
    }

    #[test]
    fn the_summary_maps_counters_upstreams_and_lists() {
        use crate::config::{Upstream, UpstreamProtocol};
        use crate::dns::querylog::DeviceCounts;
        use crate::dns::upstream::Health;
        use crate::dns::ListStatus;
        let up = |addr: &str, protocol| Upstream::plain(addr.parse().expect("address"), protocol);
        let status = DnsStatus {
            listening: vec!["10.0.1.1:53".parse().expect("address")],
            not_listening: Vec::new(),
            upstreams: vec![(
                up("192.0.2.53:53", UpstreamProtocol::Udp),
                Health {
                    answered: 9,
                    failed: 1,
                    failing: 0,
                    last_rtt_ms: 12,
                    last_error: None,
                },
            )],
            tunnel_upstreams: vec![(
                up("10.8.0.1:53", UpstreamProtocol::Tcp),
                Health {
                    answered: 0,
                    failed: 3,
                    failing: 3,
                    last_rtt_ms: 0,
                    last_error: Some("10.8.0.1:53: no answer in time".into()),
                },
            )],
            zone_upstreams: Vec::new(),
            stats: crate::dns::resolver::ResolverStats {
                answered: 20,
                blocked: 4,
                forwarded: 10,
                failed: 2,
                local: 3,
                rebind: 1,
                ..Default::default()
            },
            cache_entries: 5,
            cache_hits: 6,
            cache_misses: 10,
            lists: vec![ListStatus {
                name: "ads".into(),
                file: "/lists/ads.txt".into(),
                url: None,
                downloaded: None,
                download_error: None,
                blocked: 2,
                rules: 3,
                exceptions: 1,
                bad_lines: 2,
                unsupported: 0,
                error: None,
            }],
            list_bytes: 100,
            per_device: vec![(MacAddr([2, 0, 0, 0, 2, 2]), DeviceCounts { queries: 5, blocked: 2 })],
            top_today: vec![(MacAddr([2, 0, 0, 0, 2, 2]), vec![("often.test".into(), 4)])],
        };
        let v = dns_summary_view(status);
        assert_eq!(
            (
                v.answered,
                v.blocked,
                v.forwarded,
                v.failed,
                v.cache_hits,
                v.local,
                v.rebinding_dropped
            ),
            (20, 4, 10, 2, 6, 3, 1)
        );
        assert_eq!(v.device("02:00:00:00:02:02"), (5, 2));
        assert_eq!(v.device_top("02:00:00:00:02:02"), [("often.test".to_string(), 4)]);
        assert_eq!(v.upstreams.len(), 2);
        assert_eq!(
            (
                v.upstreams[0].upstream.as_str(),
                v.upstreams[0].through_tunnel,
                v.upstreams[0].answered
            ),
            ("192.0.2.53:53", false, 9)
        );
        assert_eq!(
            (
                v.upstreams[1].upstream.as_str(),
                v.upstreams[1].through_tunnel,
                v.upstreams[1].failing
            ),
            ("tcp://10.8.0.1:53", true, 3)
        );
        assert_eq!(
            (
                v.lists[0].name.as_str(),
                v.lists[0].rules,
                v.lists[0].exceptions,
                v.lists[0].bad_lines
            ),
            ("ads", 3, 1, 2)
        );
    }

    /// The state, named as in the core's tests.
    struct Harness<'a> {
        state: &'a mut crate::core::DaemonState,
    }

    /// Timing harness for the devices list (the web bench's inventory: 1,000
    /// locally administered MACs, one IPv6 address each, three in four named, no
    /// evidence). Run: `cargo test --release -p bulkhead --lib -- --ignored --nocapture device_views_timing`.
    #[test]
    #[ignore = "timing, not a check"]
    fn device_views_timing() {
        use crate::testutil::{default_config, listing_of, FakeNft, NoConntrack};
        let config = default_config();
        let nft = FakeNft::default();
        let empty = crate::firewall::render::full_document(
            &crate::policy::desired_ruleset(&config, &Default::default()),
            &Default::default(),
        );
        *nft.listing.lock().expect("lock") = Some(listing_of(&empty));
        let store = crate::store::Store::in_memory(0).expect("store");
        let mut state =
            crate::core::DaemonState::new(config, store, Box::new(nft), Box::new(NoConntrack)).expect("state");
        let h = &mut Harness { state: &mut state };
        h.state.reconcile().expect("start");
        for i in 0..1000usize {
            let mac = MacAddr([0x02, 0xbe, 0, 0, (i >> 8) as u8, i as u8]);
            let ip = format!("fd00:1::be:{i:x}").parse().ok();
            h.state.handle(Request::AddDevice { mac, ip }, 1);
            if i % 4 != 0 {
                let name = format!("device {i} in the {} room", ["living", "kitchen", "attic"][i % 3]);
                h.state.handle(Request::Rename { mac, name: Some(name) }, 1);
            }
        }
        let rounds = 200;
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..rounds {
            n += std::hint::black_box(h.state.device_views(2)).len();
        }
        let views = t.elapsed() / rounds;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            let v = h.state.device_views(2);
            n += std::hint::black_box(v.iter().map(summary).collect::<Vec<_>>()).len();
        }
        let both = t.elapsed() / rounds;
        eprintln!("device_views: {views:?}, with summaries: {both:?} ({n} rows)");
    }
}
