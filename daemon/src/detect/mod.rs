//! Detection: what devices try and the firewall refuses. A service beside the
//! core (docs/ARCHITECTURE.md, "Detection"): the firewall's sampling rules
//! (`firewall/render/detect.rs`) copy refused packets to an NFLOG group; this
//! service reads them, attributes each to a device with the services snapshot,
//! and asks the core to raise (or update) alerts. It never writes nft, never
//! touches the store and adds nothing to `DaemonState`.
//!
//! - `packet.rs`: what a sampled packet tried (pure).
//! - `analysis.rs`: windows and episodes → probing, lateral and blocked-device
//!   alerts (pure, time as an argument).
//! - here: the task (the NFLOG socket, a 2-second judging timer) and the
//!   report the CLI and the web UI read.

pub mod analysis;
pub mod packet;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::config::{Config, MacAddr};
use crate::core::{InventorySnapshot, ServiceReply, ServiceRequest};
use crate::firewall::nflog::{LoggedPacket, NflogError, NflogSocket};
use crate::firewall::render::detect::{
    parse_prefix, SPOOF_ARP_PREFIX, SPOOF_IP_PREFIX, SPOOF_ND_PREFIX, SPOOF_PORT_PREFIX,
};
use crate::inventory::unix_now;
use crate::runtime::services::ServiceHandle;
use analysis::{Action, AlertKey, Detector, Refusal, Target};
pub use analysis::{DeviceRefusals, EpisodeSummary};

/// How often the detector judges what it saw.
const JUDGE_EVERY: Duration = Duration::from_secs(2);

/// A forged-ARP sender is reported to the core at most this often.
const SPOOF_SAY_EVERY_SECS: crate::inventory::UnixTime = 60;

/// What the service needs from the config (a change restarts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectSettings {
    /// The NFLOG group the sampling rules log to.
    pub group: u16,
    /// The segments' IPv4 networks and IPv6 prefixes: "the home".
    pub home: Vec<ipnet::IpNet>,
    /// The router's own addresses.
    pub router: Vec<IpAddr>,
}

impl DetectSettings {
    /// From the config; `None` when detection is off.
    pub fn from_config(config: &Config) -> Option<DetectSettings> {
        if !config.detect.enabled || config.segments.is_empty() {
            return None;
        }
        let mut home = Vec::new();
        let mut router = Vec::new();
        for s in &config.segments {
            home.push(ipnet::IpNet::V4(s.ipv4.trunc()));
            router.push(IpAddr::V4(s.ipv4.addr()));
            if let Some(p) = &s.ipv6 {
                home.push(ipnet::IpNet::V6(p.trunc()));
                router.push(IpAddr::V6(p.addr()));
            }
        }
        Some(DetectSettings {
            group: config.detect.nflog_group,
            home,
            router,
        })
    }
}

/// `bulkhead detect`: what detection saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectReport {
    /// Sampled packets read.
    pub sampled: u64,
    /// Sampled packets that could not be read (dropped, counted).
    pub malformed: u64,
    /// Sampled packets no device could be found for.
    pub unattributed: u64,
    /// Times the kernel dropped samples because the daemon was slow.
    pub overruns: u64,
    /// Watches dropped to bound memory.
    pub evicted: u64,
    /// Per device.
    pub devices: BTreeMap<MacAddr, DeviceRefusals>,
}

/// The running service.
pub struct DetectService {
    settings: DetectSettings,
    report: Arc<RwLock<DetectReport>>,
    task: JoinHandle<()>,
}

impl Drop for DetectService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DetectService {
    /// Binds the NFLOG group (so a refusal is reported here, not in a task)
    /// and starts the task.
    pub fn start(settings: DetectSettings, services: ServiceHandle) -> Result<DetectService, NflogError> {
        let socket = NflogSocket::bind(settings.group)?;
        let report = Arc::new(RwLock::new(DetectReport::default()));
        let task = tokio::spawn(run(settings.clone(), socket, services, report.clone()));
        tracing::info!(group = settings.group, "detection is sampling refused connections");
        Ok(DetectService { settings, report, task })
    }

    /// Its settings.
    pub fn settings(&self) -> &DetectSettings {
        &self.settings
    }

    /// What it saw.
    pub fn report(&self) -> DetectReport {
        self.report.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// One device's refusals.
    pub fn device(&self, mac: &MacAddr) -> Option<DeviceRefusals> {
        self.report.read().ok()?.devices.get(mac).cloned()
    }
}

async fn run(
    settings: DetectSettings,
    mut socket: NflogSocket,
    services: ServiceHandle,
    report: Arc<RwLock<DetectReport>>,
) {
    let mut detector = Detector::default();
    let mut raised: HashMap<AlertKey, i64> = HashMap::new();
    let mut counts = DetectReport::default();
    let mut judge = tokio::time::interval(JUDGE_EVERY);
    // Senders of forged ARP already told to the core (it keeps one alert an
    // hour per sender; this spares it a request per sample).
    let mut spoof_said: HashMap<MacAddr, crate::inventory::UnixTime> = HashMap::new();
    // Devices another port posed as, told to the core (one alert an hour each).
    let mut posed_said: HashMap<MacAddr, crate::inventory::UnixTime> = HashMap::new();
    loop {
        tokio::select! {
            batch = socket.next() => match batch {
                Ok(batch) => {
                    counts.malformed += batch.malformed;
                    let now = unix_now();
                    let mut claims = Vec::new();
                    let mut posers = Vec::new();
                    {
                        let Ok(inventory) = services.inventory.read() else { continue };
                        for p in &batch.packets {
                            counts.sampled += 1;
                            if p.prefix == SPOOF_PORT_PREFIX {
                                // The source MAC is the device posed as; the
                                // port is where the frame really came from.
                                if let Some(mac) = p.source_mac.map(MacAddr) {
                                    // The physical in-device when the kernel has
                                    // br_netfilter; without it the in-device is
                                    // the port itself.
                                    let port = p.in_port_ifindex.or(p.in_ifindex).and_then(port_name);
                                    posers.push((mac, best_name(&inventory, &mac), port));
                                }
                                continue;
                            }
                            let claimed = match p.prefix.as_str() {
                                SPOOF_ARP_PREFIX => {
                                    Some((Claim::Arp, arp_sender_ip(&p.payload).map(std::net::IpAddr::V4)))
                                }
                                SPOOF_IP_PREFIX => Some((Claim::Ip, ip_source(&p.payload))),
                                SPOOF_ND_PREFIX => {
                                    Some((Claim::Nd, nd_advert_target(&p.payload).map(std::net::IpAddr::V6)))
                                }
                                _ => None,
                            };
                            if let Some((how, ip)) = claimed {
                                if let (Some(mac), Some(ip)) = (p.source_mac.map(MacAddr), ip) {
                                    // Whose address: a device's, else the router's.
                                    let holder = inventory
                                        .device_at(ip)
                                        .map(|d| best_name(&inventory, &d.mac));
                                    claims.push((how, mac, ip, best_name(&inventory, &mac), holder));
                                }
                                continue;
                            }
                            match attribute(p, &inventory, &settings) {
                                Some(r) => detector.observe(r, now),
                                None => counts.unattributed += 1,
                            }
                        }
                    }
                    for (victim, name, port) in posers {
                        // One alert an hour per device posed as (the poser's
                        // own MAC is not in the frame).
                        if posed_said.get(&victim).is_some_and(|t| now - t < SPOOF_SAY_EVERY_SECS) {
                            continue;
                        }
                        if posed_said.len() >= 4096 {
                            posed_said.retain(|_, t| now - *t < SPOOF_SAY_EVERY_SECS);
                        }
                        posed_said.insert(victim, now);
                        let alert = crate::alerts::Alert::new(
                            now,
                            crate::alerts::AlertKind::Spoofing,
                            None,
                            poser_text(&name, port.as_deref()),
                        );
                        if let Err(e) = services.request(ServiceRequest::Alert(alert)).await {
                            tracing::warn!(error = %e, "detection could not raise an alert");
                        }
                    }
                    for (how, mac, ip, name, holder) in claims {
                        if spoof_said.get(&mac).is_some_and(|t| now - t < SPOOF_SAY_EVERY_SECS) {
                            continue;
                        }
                        // Forged sources can be endless: a bounded memory.
                        if spoof_said.len() >= 4096 {
                            spoof_said.retain(|_, t| now - *t < SPOOF_SAY_EVERY_SECS);
                            if spoof_said.len() >= 4096 {
                                spoof_said.clear();
                            }
                        }
                        spoof_said.insert(mac, now);
                        let alert = crate::alerts::Alert::new(
                            now,
                            crate::alerts::AlertKind::Spoofing,
                            Some(mac),
                            claim_text(how, &name, ip, holder.as_deref()),
                        );
                        if let Err(e) = services.request(ServiceRequest::Alert(alert)).await {
                            tracing::warn!(error = %e, "detection could not raise an alert");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %crate::firewall::error_chain(&e), "detection stopped reading samples");
                    return;
                }
            },
            _ = judge.tick() => {
                let now = unix_now();
                let actions = {
                    let Ok(inventory) = services.inventory.read() else { continue };
                    let name = |m: &MacAddr| best_name(&inventory, m);
                    detector.evaluate(now, &name)
                };
                for a in actions {
                    perform(&services, &mut raised, a).await;
                }
                counts.overruns = socket.overruns;
                counts.evicted = detector.evicted;
                counts.devices = detector.all();
                if let Ok(mut r) = report.write() {
                    *r = counts.clone();
                }
            }
        }
    }
}

/// Raises or updates an alert through the core.
async fn perform(services: &ServiceHandle, raised: &mut HashMap<AlertKey, i64>, action: Action) {
    let request = match &action {
        Action::Raise { alert, .. } => ServiceRequest::Alert((**alert).clone()),
        Action::Update { key, message } => match raised.get(key) {
            Some(id) => ServiceRequest::UpdateAlert {
                id: *id,
                message: message.clone(),
            },
            None => return,
        },
    };
    match services.request(request).await {
        Ok(ServiceReply::Raised { id }) => {
            if let Action::Raise { key, .. } = action {
                if raised.len() >= 4096 {
                    raised.clear();
                }
                raised.insert(key, id);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "detection could not raise an alert"),
    }
}

/// How a device claimed an address that is not its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// In ARP (to other devices or to the router).
    Arp,
    /// As the source of IPv4 sent to the router.
    Ip,
    /// As the target of an IPv6 neighbour advertisement.
    Nd,
}

/// The spoofing alert's sentence.
fn claim_text(how: Claim, name: &str, ip: std::net::IpAddr, holder: Option<&str>) -> String {
    match (how, holder) {
        (Claim::Arp, Some(holder)) => {
            format!("{name} claimed {holder}'s address {ip} in ARP, to receive its traffic. Those frames were dropped.")
        }
        (Claim::Arp, None) => format!(
            "{name} claimed the router's address {ip} in ARP, to become the gateway of other devices. \
             Those frames were dropped."
        ),
        (Claim::Nd, Some(holder)) => format!(
            "{name} claimed {holder}'s address {ip} in a neighbour advertisement, to receive its traffic. \
             Those packets were dropped."
        ),
        (Claim::Nd, None) => format!(
            "{name} claimed the router's address {ip} in a neighbour advertisement, to become the IPv6 \
             gateway of other devices. Those packets were dropped."
        ),
        (Claim::Ip, holder) => format!(
            "{name} sent packets to the router as {}'s address {ip}, to be taken for it. Those packets were dropped.",
            holder.unwrap_or("another device")
        ),
    }
}

/// The spoofing alert for frames with `name`'s MAC from another port.
fn poser_text(name: &str, port: Option<&str>) -> String {
    let from = port.map_or_else(|| "another port".to_string(), |p| format!("port {p}"));
    format!(
        "Frames with {name}'s MAC came in on {from}, not on the port it is on: a device there posed as it, \
         to take its traffic, its zone or its lease. Those frames were dropped."
    )
}

/// The name of the interface with index `index` (the port a frame came in on).
fn port_name(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|n| n.into_string().ok())
}

/// PURE: the source address of an IPv4 or IPv6 header (a sample of the
/// source guards), if it is one.
pub fn ip_source(ip: &[u8]) -> Option<std::net::IpAddr> {
    match ip.first()? >> 4 {
        4 => {
            let h = ip.get(..20)?;
            Some(std::net::Ipv4Addr::new(h[12], h[13], h[14], h[15]).into())
        }
        6 => {
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(src).into())
        }
        _ => None,
    }
}

/// PURE: the target address of an IPv6 neighbour advertisement (the IPv6
/// header, then ICMPv6 type 136 with the target at bytes 8 to 24), if the
/// packet is one with no extension header (an advert has none).
pub fn nd_advert_target(ip6: &[u8]) -> Option<std::net::Ipv6Addr> {
    let header = ip6.get(..40)?;
    if header[0] >> 4 != 6 || header[6] != 58 || *ip6.get(40)? != 136 {
        return None;
    }
    let target: [u8; 16] = ip6.get(48..64)?.try_into().ok()?;
    Some(target.into())
}

/// PURE: the sender protocol address an Ethernet/IPv4 ARP packet claims.
pub fn arp_sender_ip(arp: &[u8]) -> Option<std::net::Ipv4Addr> {
    match arp.get(..18)? {
        [0, 1, 8, 0, 6, 4, _, _, _, _, _, _, _, _, a, b, c, d] => Some(std::net::Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// PURE: a sampled packet → a refusal of a device, or `None` (not ours, not
/// readable, or nobody to blame).
pub fn attribute(p: &LoggedPacket, inventory: &InventorySnapshot, settings: &DetectSettings) -> Option<Refusal> {
    let (at, zone) = parse_prefix(&p.prefix)?;
    let attempt = packet::parse(&p.payload)?;
    let mac = match p.source_mac.map(MacAddr) {
        Some(m) => m,
        None => inventory.device_at(attempt.src)?.mac,
    };
    let target = if settings.router.contains(&attempt.dst) {
        Target::Router
    } else if let Some(d) = inventory.device_at(attempt.dst) {
        Target::Device {
            mac: d.mac,
            zone: d.zone.clone(),
        }
    } else if settings.home.iter().any(|n| n.contains(&attempt.dst)) {
        Target::Home
    } else {
        Target::Internet
    };
    Some(Refusal {
        mac,
        at,
        zone,
        attempt,
        target,
    })
}

/// A device's name for alert text: the homeowner's, its host name, its class
/// and vendor, else its MAC (always followed by the MAC).
pub fn best_name(inventory: &InventorySnapshot, mac: &MacAddr) -> String {
    match inventory.devices.get(mac) {
        Some(d) => best_name_of(d),
        None => mac.to_string(),
    }
}

/// [`best_name`] of a device in hand.
pub fn best_name_of(d: &crate::core::DeviceSnapshot) -> String {
    match d.best_name() {
        Some(n) => format!("{n} ({})", d.mac),
        None => d.mac.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DeviceSnapshot;

    #[test]
    fn an_arp_packet_names_the_address_it_claims() {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 2];
        arp.extend_from_slice(&[2, 0, 0, 0, 1, 0x99]);
        arp.extend_from_slice(&[10, 0, 1, 1]);
        arp.extend_from_slice(&[0; 10]);
        assert_eq!(arp_sender_ip(&arp), Some(std::net::Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(arp_sender_ip(&arp[..17]), None, "cut short");
        let mut ipv6_arp = arp.clone();
        ipv6_arp[2] = 0x86;
        assert_eq!(arp_sender_ip(&ipv6_arp), None, "not IPv4 over Ethernet");
    }

    #[test]
    fn a_neighbour_advert_sample_names_its_target() {
        let plug6: std::net::Ipv6Addr = "fd00:1::30".parse().expect("v6");
        let laptop6: std::net::Ipv6Addr = "fd00:1::10".parse().expect("v6");
        let mut na = vec![0x60, 0, 0, 0, 0, 32, 58, 255];
        na.extend_from_slice(&plug6.octets());
        na.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        na.extend_from_slice(&[136, 0, 0, 0, 0x20, 0, 0, 0]);
        na.extend_from_slice(&laptop6.octets());
        na.extend_from_slice(&[2, 1, 2, 0, 0, 0, 1, 0x99]);
        assert_eq!(nd_advert_target(&na), Some(laptop6));
        assert_eq!(nd_advert_target(&na[..63]), None, "cut short");
        let mut solicit = na.clone();
        solicit[40] = 135;
        assert_eq!(nd_advert_target(&solicit), None, "a solicitation");
        let mut udp = na.clone();
        udp[6] = 17;
        assert_eq!(nd_advert_target(&udp), None, "not ICMPv6");
        assert_eq!(nd_advert_target(&[0x45; 64]), None, "IPv4");
    }

    #[test]
    fn an_ipv4_sample_names_its_source_and_the_alert_says_whose() {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&[10, 0, 1, 10, 10, 0, 1, 1]);
        assert_eq!(ip_source(&ip), Some(std::net::Ipv4Addr::new(10, 0, 1, 10).into()));
        assert_eq!(ip_source(&ip[..19]), None, "cut short");
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        let laptop6: std::net::Ipv6Addr = "fd00:1::10".parse().expect("v6");
        v6.extend_from_slice(&laptop6.octets());
        v6.extend_from_slice(&[0; 16]);
        assert_eq!(ip_source(&v6), Some(laptop6.into()));
        assert_eq!(ip_source(&v6[..23]), None, "cut short");
        assert_eq!(ip_source(&[0x50; 40]), None, "neither");
        let at = std::net::IpAddr::from([10, 0, 1, 10]);
        let text = claim_text(Claim::Ip, "HS105", at, Some("annas-laptop"));
        assert!(
            text.contains("HS105") && text.contains("annas-laptop's address 10.0.1.10") && text.contains("dropped"),
            "{text}"
        );
        assert!(claim_text(Claim::Ip, "HS105", at, None).contains("another device's address"));
        assert!(claim_text(Claim::Arp, "HS105", at, None).contains("the router's address"));
        assert!(claim_text(Claim::Nd, "HS105", at, None).contains("the router's address"));
        let posed = poser_text("annas-laptop (02:00:00:00:00:10)", Some("lan3"));
        assert!(posed.contains("annas-laptop") && posed.contains("port lan3") && posed.contains("dropped"));
        assert!(poser_text("x", None).contains("another port"));
        assert!(claim_text(Claim::Nd, "HS105", at, Some("annas-laptop")).contains("annas-laptop's address"));
    }

    #[test]
    fn a_sample_is_blamed_on_its_sender_and_its_target_found() {
        let mut inv = InventorySnapshot::fuzz_sample(); // laptop 10.0.1.10, trusted
        let plug = MacAddr([2, 0, 0, 0, 0, 0x20]);
        let ip = IpAddr::from([10, 0, 1, 20]);
        inv.patch(
            plug,
            Some(DeviceSnapshot {
                mac: plug,
                name: None,
                hostname: Some("plug".into()),
                zone: crate::config::ZoneId::new("iot").expect("zone"),
                addresses: [ip].into(),
                blocked: false,
                tunnel_routed: false,
                quarantined: false,
                class: Some("plug".into()),
                vendor: None,
                last_seen: 0,
                online: true,
                watched: false,
            }),
        );
        let settings = DetectSettings {
            group: 1,
            home: vec!["10.0.1.0/24".parse().expect("net")],
            router: vec![IpAddr::from([10, 0, 1, 1])],
        };
        let logged = |prefix: &str, mac: Option<[u8; 6]>, dst: [u8; 4]| LoggedPacket {
            prefix: prefix.into(),
            source_mac: mac,
            ethertype: 0x0800,
            in_ifindex: None,
            in_port_ifindex: None,
            payload: packet::tcp_syn_v4([10, 0, 1, 20], dst, 22),
        };
        let r = attribute(&logged("bh br iot", Some(plug.0), [10, 0, 1, 10]), &inv, &settings).expect("ours");
        assert_eq!(r.mac, plug);
        assert!(matches!(&r.target, Target::Device { mac, .. } if *mac == MacAddr([2, 0, 0, 0, 0, 10])));
        // No MAC: found by its source address.
        let r = attribute(&logged("bh in iot", None, [10, 0, 1, 1]), &inv, &settings).expect("ours");
        assert_eq!((r.mac, r.target), (plug, Target::Router));
        let r = attribute(&logged("bh fwd iot", Some(plug.0), [10, 0, 1, 99]), &inv, &settings).expect("ours");
        assert_eq!(r.target, Target::Home);
        let r = attribute(&logged("bh fwd iot", Some(plug.0), [192, 0, 2, 1]), &inv, &settings).expect("ours");
        assert_eq!(r.target, Target::Internet);
        assert_eq!(
            attribute(&logged("someone else", Some(plug.0), [192, 0, 2, 1]), &inv, &settings),
            None
        );
        assert_eq!(best_name(&inv, &plug), "plug (02:00:00:00:00:20)");
    }
}
