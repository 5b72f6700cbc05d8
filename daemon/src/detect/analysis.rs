//! PURE: sampled refusals in, alerts out. No sockets, no clock: every call
//! takes the time, so the windows and episodes are tested with explicit
//! time.
//!
//! Per device, over a sliding [`WINDOW_SECS`] window of its sampled refusals:
//! - **probing**: many distinct ports or hosts of the home (or many ports out
//!   of it). One alert per episode, updated (not repeated) at most every
//!   [`UPDATE_EVERY_SECS`] while it goes on; an episode ends after
//!   [`EPISODE_QUIET_SECS`] without refusals.
//! - **lateral attempt**: a refused connection to a device of another zone,
//!   still there [`LATERAL_GRACE_SECS`] later without having become probing
//!   (a scan is reported once, as probing, naming the devices it tried).
//! - **blocked device active**: a blocked device sent [`BLOCKED_MIN_SAMPLES`]
//!   packets in the window; once a day.
//!
//! Memory is bounded: [`MAX_DEVICES`] watched devices (the least recently
//! refused goes first), [`MAX_WINDOW`] samples each, small top-N tallies.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::packet::{Attempt, Transport};
use crate::alerts::{Alert, AlertKind};
use crate::config::{MacAddr, ZoneId};
use crate::firewall::render::detect::RefusedAt;
use crate::inventory::UnixTime;

/// The sliding window probing is judged over.
pub const WINDOW_SECS: UnixTime = 60;
/// Distinct ports of home hosts (the router included) in a window that make a scan.
pub const PROBE_HOME_PORTS: usize = 10;
/// Distinct home hosts tried in a window that make a sweep.
pub const PROBE_HOME_HOSTS: usize = 6;
/// Distinct internet ports refused in a window that make a scan (a
/// quarantined phone tries many hosts on 443: that is not one).
pub const PROBE_INTERNET_PORTS: usize = 30;
/// A probing alert's text is refreshed at most this often.
pub const UPDATE_EVERY_SECS: UnixTime = 30;
/// Quiet time that ends an episode (a new one raises a new alert).
pub const EPISODE_QUIET_SECS: UnixTime = 600;
/// How long a lateral attempt waits to see whether it is part of a scan.
pub const LATERAL_GRACE_SECS: UnixTime = 4;
/// Samples from a blocked device in a window that count as "keeps trying".
pub const BLOCKED_MIN_SAMPLES: usize = 3;
/// One blocked-device-active alert per device in this many seconds.
pub const BLOCKED_EVERY_SECS: UnixTime = 24 * 3600;
/// Devices watched at once.
pub const MAX_DEVICES: usize = 256;
/// Samples kept per device (the sampling rate bounds it anyway: 20/s × 60 s).
pub const MAX_WINDOW: usize = 512;
const TOP: usize = 8;
const MAX_TALLY: usize = 64;

/// What a refused packet tried to reach, as the inventory tells.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The router itself.
    Router,
    /// A device of the home.
    Device {
        /// Its MAC.
        mac: MacAddr,
        /// Its zone.
        zone: ZoneId,
    },
    /// A home address no device holds (a sweep finds these).
    Home,
    /// Out of the home.
    Internet,
}

impl Target {
    fn is_home(&self) -> bool {
        !matches!(self, Target::Internet)
    }
}

/// One sampled refusal, attributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The sender.
    pub mac: MacAddr,
    /// Where the firewall refused it.
    pub at: RefusedAt,
    /// The sender's zone as the kernel decided it (the rule's prefix).
    pub zone: Option<ZoneId>,
    /// What it tried.
    pub attempt: Attempt,
    /// Who that is.
    pub target: Target,
}

/// What the service must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Raise this alert; remember its id under `key`.
    Raise {
        /// The alert this is (device, kind, episode).
        key: AlertKey,
        /// The alert.
        alert: Box<Alert>,
    },
    /// Rewrite the message of the alert raised under `key`.
    Update {
        /// Which.
        key: AlertKey,
        /// The new text.
        message: String,
    },
}

/// One alert of one device's episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlertKey {
    /// The device.
    pub mac: MacAddr,
    /// The kind.
    pub kind: AlertKind,
    /// The device's episode number.
    pub episode: u64,
}

/// A device's refusals, for its page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRefusals {
    /// Sampled refusals since the daemon started.
    pub sampled: u64,
    /// Of which: to the router's closed ports.
    pub to_router: u64,
    /// Routed (other segments, the internet).
    pub routed: u64,
    /// Within a segment bridge.
    pub bridged: u64,
    /// While blocked.
    pub blocked: u64,
    /// First and last sampled refusal.
    pub first: UnixTime,
    /// Last.
    pub last: UnixTime,
    /// The most refused destinations and how often.
    pub top_targets: Vec<(IpAddr, u64)>,
    /// The most refused ports and how often.
    pub top_ports: Vec<(u16, u64)>,
    /// Episodes (newest last, at most 8).
    pub episodes: Vec<EpisodeSummary>,
}

/// One episode of a device's refusals, for the probing timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeSummary {
    /// When it began.
    pub started: UnixTime,
    /// The last refusal in it.
    pub last: UnixTime,
    /// Sampled refusals.
    pub samples: u64,
    /// Distinct hosts tried.
    pub hosts: usize,
    /// Distinct ports tried.
    pub ports: usize,
    /// It was judged probing.
    pub probing: bool,
    /// It tried devices of other zones.
    pub lateral: bool,
}

#[derive(Debug, Clone)]
struct Sample {
    at: UnixTime,
    dst: IpAddr,
    port: Option<u16>,
    target: Target,
    refused_at: RefusedAt,
}

#[derive(Debug, Default)]
struct Episode {
    number: u64,
    started: UnixTime,
    last: UnixTime,
    samples: u64,
    hosts: BTreeSet<IpAddr>,
    ports: BTreeSet<u16>,
    lateral_targets: BTreeSet<MacAddr>,
    lateral_first: Option<UnixTime>,
    lateral_raised: bool,
    probing_raised: bool,
    probing_updated: UnixTime,
    probing_samples_told: u64,
}

#[derive(Debug, Default)]
struct Watch {
    zone: Option<ZoneId>,
    totals: DeviceRefusals,
    targets: BTreeMap<IpAddr, u64>,
    ports: BTreeMap<u16, u64>,
    window: VecDeque<Sample>,
    episode: Option<Episode>,
    episodes: u64,
    blocked_alerted: Option<UnixTime>,
}

/// The detector. See the module documentation.
#[derive(Debug, Default)]
pub struct Detector {
    devices: HashMap<MacAddr, Watch>,
    /// Watches dropped to stay within [`MAX_DEVICES`].
    pub evicted: u64,
}

impl Detector {
    /// One sampled refusal.
    pub fn observe(&mut self, r: Refusal, now: UnixTime) {
        if !self.devices.contains_key(&r.mac) && self.devices.len() >= MAX_DEVICES {
            if let Some(oldest) = self.devices.iter().min_by_key(|(_, w)| w.totals.last).map(|(m, _)| *m) {
                self.devices.remove(&oldest);
                self.evicted += 1;
            }
        }
        let w = self.devices.entry(r.mac).or_default();
        if r.zone.is_some() {
            w.zone = r.zone.clone();
        }
        let t = &mut w.totals;
        if t.sampled == 0 {
            t.first = now;
        }
        t.sampled += 1;
        t.last = now;
        match r.at {
            RefusedAt::Router => t.to_router += 1,
            RefusedAt::Routed => t.routed += 1,
            RefusedAt::Bridged => t.bridged += 1,
            RefusedAt::Blocked => t.blocked += 1,
        }
        tally(&mut w.targets, r.attempt.dst);
        if let Some(p) = r.attempt.dst_port {
            tally(&mut w.ports, p);
        }
        if r.at != RefusedAt::Blocked {
            let e = match &mut w.episode {
                Some(e) => e,
                None => {
                    w.episodes += 1;
                    w.episode.insert(Episode {
                        number: w.episodes,
                        started: now,
                        ..Episode::default()
                    })
                }
            };
            e.last = now;
            e.samples += 1;
            if e.hosts.len() < MAX_TALLY {
                e.hosts.insert(r.attempt.dst);
            }
            if let Some(p) = r.attempt.dst_port {
                if e.ports.len() < MAX_TALLY * 4 {
                    e.ports.insert(p);
                }
            }
            if let Target::Device { mac, zone } = &r.target {
                if Some(zone) != w.zone.as_ref() && e.lateral_targets.len() < MAX_TALLY {
                    e.lateral_targets.insert(*mac);
                    e.lateral_first.get_or_insert(now);
                }
            }
        }
        if w.window.len() >= MAX_WINDOW {
            w.window.pop_front();
        }
        w.window.push_back(Sample {
            at: now,
            dst: r.attempt.dst,
            port: r.attempt.dst_port.filter(|_| r.attempt.transport != Transport::Icmp),
            target: r.target,
            refused_at: r.at,
        });
    }

    /// Judges every watched device at `now`; `name` gives a device's best
    /// name for the alert text.
    pub fn evaluate(&mut self, now: UnixTime, name: &dyn Fn(&MacAddr) -> String) -> Vec<Action> {
        let mut actions = Vec::new();
        for (mac, w) in self.devices.iter_mut() {
            while w.window.front().is_some_and(|s| now - s.at >= WINDOW_SECS) {
                w.window.pop_front();
            }
            if w.episode.as_ref().is_some_and(|e| now - e.last >= EPISODE_QUIET_SECS) {
                if let Some(e) = w.episode.take() {
                    push_episode(&mut w.totals, &e);
                }
            }
            judge_blocked(mac, w, now, name, &mut actions);
            judge_episode(mac, w, now, name, &mut actions);
        }
        actions
    }

    /// A device's refusals so far (with its episode in progress).
    pub fn device(&self, mac: &MacAddr) -> Option<DeviceRefusals> {
        let w = self.devices.get(mac)?;
        let mut out = w.totals.clone();
        out.top_targets = top(&w.targets);
        out.top_ports = top(&w.ports);
        if let Some(e) = &w.episode {
            push_episode(&mut out, e);
        }
        Some(out)
    }

    /// Every watched device's refusals.
    pub fn all(&self) -> BTreeMap<MacAddr, DeviceRefusals> {
        self.devices
            .keys()
            .filter_map(|m| Some((*m, self.device(m)?)))
            .collect()
    }
}

fn tally<K: Ord + Copy>(map: &mut BTreeMap<K, u64>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n += 1;
    } else if map.len() < MAX_TALLY {
        map.insert(key, 1);
    }
}

fn top<K: Copy>(map: &BTreeMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = map.iter().map(|(k, n)| (*k, *n)).collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    v.truncate(TOP);
    v
}

fn push_episode(t: &mut DeviceRefusals, e: &Episode) {
    if t.episodes.len() >= 8 {
        t.episodes.remove(0);
    }
    t.episodes.push(EpisodeSummary {
        started: e.started,
        last: e.last,
        samples: e.samples,
        hosts: e.hosts.len(),
        ports: e.ports.len(),
        probing: e.probing_raised,
        lateral: !e.lateral_targets.is_empty(),
    });
}

fn judge_blocked(
    mac: &MacAddr,
    w: &mut Watch,
    now: UnixTime,
    name: &dyn Fn(&MacAddr) -> String,
    out: &mut Vec<Action>,
) {
    let recent = w.window.iter().filter(|s| s.refused_at == RefusedAt::Blocked).count();
    if recent < BLOCKED_MIN_SAMPLES || w.blocked_alerted.is_some_and(|at| now - at < BLOCKED_EVERY_SECS) {
        return;
    }
    w.blocked_alerted = Some(now);
    out.push(Action::Raise {
        key: AlertKey {
            mac: *mac,
            kind: AlertKind::BlockedDeviceActive,
            episode: 0,
        },
        alert: alert(
            now,
            AlertKind::BlockedDeviceActive,
            *mac,
            format!(
                "{} is blocked and keeps trying to reach the network ({recent} attempts sampled in the last minute, {} since it was first seen trying); nothing got through",
                name(mac),
                w.totals.blocked
            ),
        ),
    });
}

fn judge_episode(
    mac: &MacAddr,
    w: &mut Watch,
    now: UnixTime,
    name: &dyn Fn(&MacAddr) -> String,
    out: &mut Vec<Action>,
) {
    let Some(e) = w.episode.as_mut() else { return };
    let mut home_ports = BTreeSet::new();
    let mut home_hosts = BTreeSet::new();
    let mut internet_ports = BTreeSet::new();
    for s in w.window.iter().filter(|s| s.refused_at != RefusedAt::Blocked) {
        if s.target.is_home() {
            home_hosts.insert(s.dst);
            if let Some(p) = s.port {
                home_ports.insert((s.dst, p));
            }
        } else if let Some(p) = s.port {
            internet_ports.insert(p);
        }
    }
    let probing = home_ports.len() >= PROBE_HOME_PORTS
        || home_hosts.len() >= PROBE_HOME_HOSTS
        || internet_ports.len() >= PROBE_INTERNET_PORTS;
    let zone = w
        .zone
        .as_ref()
        .map_or_else(|| "its zone".to_string(), |z| format!("zone {z}"));
    let key = |kind| AlertKey {
        mac: *mac,
        kind,
        episode: e.number,
    };
    if probing && !e.probing_raised {
        e.probing_raised = true;
        e.probing_updated = now;
        e.probing_samples_told = e.samples;
        out.push(Action::Raise {
            key: key(AlertKind::Probing),
            alert: alert(now, AlertKind::Probing, *mac, probing_text(mac, e, &zone, now, name)),
        });
    } else if e.probing_raised && now - e.probing_updated >= UPDATE_EVERY_SECS && e.samples > e.probing_samples_told {
        e.probing_updated = now;
        e.probing_samples_told = e.samples;
        out.push(Action::Update {
            key: key(AlertKind::Probing),
            message: probing_text(mac, e, &zone, now, name),
        });
    } else if !e.probing_raised && !e.lateral_raised && e.lateral_first.is_some_and(|at| now - at >= LATERAL_GRACE_SECS)
    {
        e.lateral_raised = true;
        let targets: Vec<String> = e.lateral_targets.iter().take(TOP).map(name).collect();
        out.push(Action::Raise {
            key: key(AlertKind::LateralAttempt),
            alert: alert(
                now,
                AlertKind::LateralAttempt,
                *mac,
                format!(
                    "{} ({zone}) tried to open connections to {} in another zone; the firewall refused them",
                    name(mac),
                    targets.join(", ")
                ),
            ),
        });
    }
}

fn probing_text(mac: &MacAddr, e: &Episode, zone: &str, now: UnixTime, name: &dyn Fn(&MacAddr) -> String) -> String {
    let hosts: Vec<String> = e.hosts.iter().take(TOP).map(|h| h.to_string()).collect();
    let ports: Vec<String> = e.ports.iter().take(12).map(|p| p.to_string()).collect();
    let more = |shown: usize, all: usize| if all > shown { ", …" } else { "" };
    let mut text = format!(
        "{} ({zone}) is probing: {} refused attempts sampled over {} s, to {} host(s) ({}{}) and {} port(s) ({}{})",
        name(mac),
        e.samples,
        (now - e.started).max(1),
        e.hosts.len(),
        hosts.join(", "),
        more(hosts.len(), e.hosts.len()),
        e.ports.len(),
        ports.join(", "),
        more(ports.len(), e.ports.len()),
    );
    if !e.lateral_targets.is_empty() {
        let targets: Vec<String> = e.lateral_targets.iter().take(TOP).map(name).collect();
        text.push_str(&format!("; it tried devices of other zones: {}", targets.join(", ")));
    }
    text.push_str("; every attempt was refused");
    text
}

fn alert(at: UnixTime, kind: AlertKind, mac: MacAddr, message: String) -> Box<Alert> {
    Box::new(Alert::new(at, kind, Some(mac), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUG: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x20]);
    const LAPTOP: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);

    fn zone(z: &str) -> ZoneId {
        ZoneId::new(z).expect("zone")
    }

    fn refusal(at: RefusedAt, dst: [u8; 4], port: u16, target: Target) -> Refusal {
        Refusal {
            mac: PLUG,
            at,
            zone: Some(zone("iot")),
            attempt: Attempt {
                transport: Transport::Tcp,
                src: IpAddr::from([10, 0, 1, 20]),
                dst: IpAddr::from(dst),
                dst_port: Some(port),
            },
            target,
        }
    }

    fn laptop() -> Target {
        Target::Device {
            mac: LAPTOP,
            zone: zone("trusted"),
        }
    }

    fn names(m: &MacAddr) -> String {
        if *m == PLUG {
            "Plug".into()
        } else {
            "Laptop".into()
        }
    }

    #[test]
    fn a_port_scan_is_one_probing_alert_updated_not_repeated() {
        let mut d = Detector::default();
        let t0 = 1000;
        for p in 0..40 {
            d.observe(refusal(RefusedAt::Bridged, [10, 0, 1, 10], 20 + p, laptop()), t0);
        }
        let a = d.evaluate(t0 + 1, &names);
        assert_eq!(a.len(), 1, "{a:?}");
        let Action::Raise { key, alert } = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(alert.kind, AlertKind::Probing);
        assert_eq!(key.mac, PLUG);
        assert!(
            alert.message.starts_with("Plug (zone iot) is probing: 40 refused"),
            "{}",
            alert.message
        );
        assert!(
            alert.message.contains("Laptop"),
            "names the lateral target: {}",
            alert.message
        );
        // More of the same scan: no new alert, an update after 30 s.
        for p in 0..10 {
            d.observe(refusal(RefusedAt::Bridged, [10, 0, 1, 10], 100 + p, laptop()), t0 + 5);
        }
        assert!(d.evaluate(t0 + 10, &names).is_empty());
        let a = d.evaluate(t0 + 31, &names);
        assert!(
            matches!(&a[..], [Action::Update { message, .. }] if message.contains("50 refused")),
            "{a:?}"
        );
        assert!(d.evaluate(t0 + 70, &names).is_empty(), "nothing new: no update");
        // After a quiet episode, a new scan is a new alert.
        let later = t0 + 31 + EPISODE_QUIET_SECS + 1;
        assert!(d.evaluate(later, &names).is_empty());
        for p in 0..12 {
            d.observe(
                refusal(RefusedAt::Router, [10, 0, 1, 1], 1000 + p, Target::Router),
                later,
            );
        }
        let a = d.evaluate(later + 1, &names);
        assert!(
            matches!(&a[..], [Action::Raise { key, .. }] if key.episode == 2),
            "{a:?}"
        );
        let r = d.device(&PLUG).expect("watched");
        assert_eq!(r.sampled, 62);
        assert_eq!((r.bridged, r.to_router), (50, 12));
        assert_eq!(r.episodes.len(), 2);
        assert!(r.episodes[0].probing && r.episodes[0].lateral);
    }

    #[test]
    fn one_refused_connection_to_another_zone_is_a_lateral_attempt_after_the_grace() {
        let mut d = Detector::default();
        d.observe(refusal(RefusedAt::Bridged, [10, 0, 1, 10], 445, laptop()), 100);
        d.observe(refusal(RefusedAt::Bridged, [10, 0, 1, 10], 445, laptop()), 101);
        assert!(d.evaluate(102, &names).is_empty(), "grace: it may become a scan");
        let a = d.evaluate(100 + LATERAL_GRACE_SECS, &names);
        assert!(
            matches!(&a[..], [Action::Raise { alert, .. }] if alert.kind == AlertKind::LateralAttempt && alert.message.contains("Laptop")),
            "{a:?}"
        );
        assert!(d.evaluate(110, &names).is_empty(), "once per episode");
    }

    #[test]
    fn a_quarantined_phone_trying_many_internet_hosts_on_443_is_not_probing() {
        let mut d = Detector::default();
        for h in 0..50u8 {
            d.observe(refusal(RefusedAt::Routed, [203, 0, 113, h], 443, Target::Internet), 100);
        }
        assert!(d.evaluate(101, &names).is_empty());
        for p in 0..30 {
            d.observe(
                refusal(RefusedAt::Routed, [203, 0, 113, 1], 1000 + p, Target::Internet),
                102,
            );
        }
        let a = d.evaluate(103, &names);
        assert!(
            matches!(&a[..], [Action::Raise { alert, .. }] if alert.kind == AlertKind::Probing),
            "{a:?}"
        );
    }

    #[test]
    fn a_blocked_device_that_keeps_trying_is_told_once_a_day() {
        let mut d = Detector::default();
        for i in 0..2 {
            d.observe(
                refusal(RefusedAt::Blocked, [255, 255, 255, 255], 67, Target::Home),
                100 + i,
            );
        }
        assert!(d.evaluate(103, &names).is_empty(), "two packets are not 'keeps trying'");
        d.observe(refusal(RefusedAt::Blocked, [10, 0, 1, 1], 53, Target::Router), 104);
        let a = d.evaluate(105, &names);
        assert!(
            matches!(&a[..], [Action::Raise { alert, .. }] if alert.kind == AlertKind::BlockedDeviceActive),
            "{a:?}"
        );
        for i in 0..5 {
            d.observe(refusal(RefusedAt::Blocked, [10, 0, 1, 1], 53, Target::Router), 200 + i);
        }
        assert!(d.evaluate(210, &names).is_empty());
        for i in 0..5 {
            d.observe(
                refusal(RefusedAt::Blocked, [10, 0, 1, 1], 53, Target::Router),
                105 + BLOCKED_EVERY_SECS + i,
            );
        }
        assert_eq!(d.evaluate(110 + BLOCKED_EVERY_SECS, &names).len(), 1);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_forged_macs() {
        let mut d = Detector::default();
        for i in 0..(MAX_DEVICES as u32 + 100) {
            let mut r = refusal(RefusedAt::Routed, [203, 0, 113, 1], 1, Target::Internet);
            let b = i.to_be_bytes();
            r.mac = MacAddr([2, 1, b[0], b[1], b[2], b[3]]);
            for _ in 0..3 {
                d.observe(r.clone(), UnixTime::from(i));
            }
        }
        assert_eq!(d.devices.len(), MAX_DEVICES);
        assert_eq!(d.evicted, 100);
        for p in 0..(MAX_WINDOW as u16 + 50) {
            d.observe(refusal(RefusedAt::Routed, [203, 0, 113, 1], p, Target::Internet), 5000);
        }
        let w = d.devices.get(&PLUG).expect("watched");
        assert_eq!(w.window.len(), MAX_WINDOW);
        assert!(w.ports.len() <= MAX_TALLY);
    }
}
