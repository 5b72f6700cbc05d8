//! PURE: conntrack's per-connection counts in, each device's traffic out.
//! Time is an argument; nothing here reads a clock or the kernel.
//!
//! A reading is cumulative per connection; the book keeps the last value of
//! each connection and takes the difference (a connection it has not seen is
//! new: all of it counts). A connection's ends are looked up in the
//! inventory: the device that opened it sent what went out and received
//! what came back; a device it was opened to (another zone's, a port
//! forward's) the other way round. The path is the tunnel when the
//! connection carries the tunnel's mark, "other zones" when the far end is
//! on one of the home's networks, the internet otherwise.
//!
//! Bounded: [`MAX_DEVICES`] devices (the quietest leaves first), a minute
//! series of the last 24 hours and an hour series of the last 30 days each.
//! Only the hours are written to flash, once an hour (see `super`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::read::FlowReading;
use crate::config::MacAddr;
use crate::core::InventorySnapshot;
use crate::inventory::UnixTime;

/// Devices with traffic kept.
pub const MAX_DEVICES: usize = 1024;
/// Minute points kept (24 hours).
pub const MINUTES: usize = 24 * 60;
/// Hour points kept (30 days).
pub const HOURS: usize = 30 * 24;
/// Connections remembered between readings (a router's conntrack table is
/// about this big).
const MAX_CONNECTIONS: usize = 65_536;

type ConnectionKey = (crate::firewall::Tuple, Option<u32>);
/// A connection's (packets, bytes) each way: (original, reply).
type Counts = ((u64, u64), (u64, u64));

/// Where traffic went or came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    /// The WAN: the internet, directly.
    Internet,
    /// The tunnel.
    Tunnel,
    /// Another segment: devices of other zones.
    Zones,
}

/// Bytes and packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Bytes.
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
}

impl Flow {
    fn add(&mut self, bytes: u64, packets: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.packets = self.packets.saturating_add(packets);
    }
}

/// A device's traffic by path and direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sent, by path.
    pub sent: PathFlows,
    /// Received, by path.
    pub received: PathFlows,
}

/// One flow per path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFlows {
    /// To or from the internet directly.
    pub internet: Flow,
    /// Through the tunnel.
    pub tunnel: Flow,
    /// To or from devices of other segments.
    pub zones: Flow,
}

impl PathFlows {
    fn get_mut(&mut self, path: Path) -> &mut Flow {
        match path {
            Path::Internet => &mut self.internet,
            Path::Tunnel => &mut self.tunnel,
            Path::Zones => &mut self.zones,
        }
    }

    /// All paths together.
    pub fn bytes(&self) -> u64 {
        self.internet
            .bytes
            .saturating_add(self.tunnel.bytes)
            .saturating_add(self.zones.bytes)
    }
}

/// Bytes in one minute or hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The start of the minute or hour.
    pub at: UnixTime,
    /// Bytes received.
    pub received: u64,
    /// Bytes sent.
    pub sent: u64,
}

/// One device's traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTraffic {
    /// Since counting began (kept across restarts with the hours).
    pub totals: Totals,
    /// The last 24 hours by minute (minutes without traffic are absent).
    #[serde(skip)]
    pub minutes: VecDeque<Point>,
    /// The last 30 days by hour.
    pub hours: VecDeque<Point>,
    /// When it last sent or received anything.
    pub last_active: UnixTime,
}

/// How to tell the paths apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paths {
    /// The home's networks (the segments' subnets): a far end in one is
    /// another zone's device.
    pub lan: Vec<ipnet::IpNet>,
}

impl Paths {
    fn path(&self, far_end: std::net::IpAddr, tunnel: bool) -> Path {
        if tunnel {
            Path::Tunnel
        } else if self.lan.iter().any(|n| n.contains(&far_end)) {
            Path::Zones
        } else {
            Path::Internet
        }
    }
}

/// Which way bytes went, for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Sent,
    Received,
}

/// The book. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct TrafficBook {
    last: HashMap<ConnectionKey, Counts>,
    devices: HashMap<MacAddr, DeviceTraffic>,
    /// Bytes of connections no device of the home is an end of (the
    /// router's own).
    pub unattributed_bytes: u64,
    /// Devices dropped to stay within [`MAX_DEVICES`].
    pub evicted: u64,
}

impl TrafficBook {
    /// A book that goes on from saved devices (their hours and totals).
    pub fn with_devices(devices: BTreeMap<MacAddr, DeviceTraffic>) -> TrafficBook {
        TrafficBook {
            devices: devices.into_iter().take(MAX_DEVICES).collect(),
            ..TrafficBook::default()
        }
    }

    /// One reading of the connections at `now`. Connections no longer
    /// listed ended: they are forgotten.
    pub fn record(&mut self, flows: &[FlowReading], inventory: &InventorySnapshot, paths: &Paths, now: UnixTime) {
        let mut seen = std::collections::HashSet::with_capacity(flows.len());
        for f in flows {
            let (orig, reply) = match self.last.get(&f.key) {
                Some(&(o, r)) if f.orig.0 >= o.0 && f.orig.1 >= o.1 && f.reply.0 >= r.0 && f.reply.1 >= r.1 => {
                    ((f.orig.0 - o.0, f.orig.1 - o.1), (f.reply.0 - r.0, f.reply.1 - r.1))
                }
                // New (or, should a count ever go down, counting again).
                _ => (f.orig, f.reply),
            };
            if self.last.len() < MAX_CONNECTIONS || self.last.contains_key(&f.key) {
                self.last.insert(f.key, (f.orig, f.reply));
            }
            seen.insert(f.key);
            if orig.1 == 0 && reply.1 == 0 {
                continue;
            }
            let opener = inventory.by_address.get(&f.src).copied();
            let opened_to = inventory.by_address.get(&f.dst).copied();
            if let Some(mac) = opener {
                let path = paths.path(f.dst, f.tunnel);
                self.add(mac, Direction::Sent, path, orig.1, orig.0, now);
                self.add(mac, Direction::Received, path, reply.1, reply.0, now);
            }
            if let Some(mac) = opened_to {
                let path = paths.path(f.src, f.tunnel);
                self.add(mac, Direction::Sent, path, reply.1, reply.0, now);
                self.add(mac, Direction::Received, path, orig.1, orig.0, now);
            }
            if opener.is_none() && opened_to.is_none() {
                self.unattributed_bytes = self.unattributed_bytes.saturating_add(orig.1 + reply.1);
            }
        }
        self.last.retain(|k, _| seen.contains(k));
    }

    fn add(&mut self, mac: MacAddr, direction: Direction, path: Path, bytes: u64, packets: u64, now: UnixTime) {
        if bytes == 0 && packets == 0 {
            return;
        }
        if !self.devices.contains_key(&mac) && self.devices.len() >= MAX_DEVICES {
            if let Some(quietest) = self.devices.iter().min_by_key(|(_, d)| d.last_active).map(|(m, _)| *m) {
                self.devices.remove(&quietest);
                self.evicted += 1;
            }
        }
        let d = self.devices.entry(mac).or_default();
        d.last_active = now;
        let flows = match direction {
            Direction::Sent => &mut d.totals.sent,
            Direction::Received => &mut d.totals.received,
        };
        flows.get_mut(path).add(bytes, packets);
        for (series, width, keep) in [(&mut d.minutes, 60, MINUTES), (&mut d.hours, 3600, HOURS)] {
            let at = now - now.rem_euclid(width);
            if series.back().is_none_or(|p| p.at != at) {
                series.push_back(Point { at, ..Point::default() });
            }
            if let Some(p) = series.back_mut() {
                match direction {
                    Direction::Sent => p.sent = p.sent.saturating_add(bytes),
                    Direction::Received => p.received = p.received.saturating_add(bytes),
                }
            }
            let oldest = now - width * keep as i64;
            while series.len() > keep || series.front().is_some_and(|p| p.at <= oldest) {
                series.pop_front();
            }
        }
    }

    /// One device's traffic.
    pub fn device(&self, mac: &MacAddr) -> Option<&DeviceTraffic> {
        self.devices.get(mac)
    }

    /// Every device's traffic (what is saved).
    pub fn devices(&self) -> impl Iterator<Item = (&MacAddr, &DeviceTraffic)> {
        self.devices.iter()
    }

    /// Bytes (received, sent) of a device in the `secs` before `now`, from
    /// its minute series (up to 24 hours).
    pub fn recent(&self, mac: &MacAddr, secs: UnixTime, now: UnixTime) -> (u64, u64) {
        let Some(d) = self.devices.get(mac) else { return (0, 0) };
        let since = now - secs;
        d.minutes
            .iter()
            .filter(|p| p.at > since)
            .fold((0, 0), |(r, s), p| (r + p.received, s + p.sent))
    }

    /// The devices that moved the most bytes in the `secs` before `now`,
    /// most first: (MAC, received, sent).
    pub fn top(&self, secs: UnixTime, now: UnixTime, n: usize) -> Vec<(MacAddr, u64, u64)> {
        let mut all: Vec<(MacAddr, u64, u64)> = self
            .devices
            .keys()
            .map(|m| {
                let (r, s) = self.recent(m, secs, now);
                (*m, r, s)
            })
            .filter(|(_, r, s)| r + s > 0)
            .collect();
        all.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Forgets a device (it was forgotten by the homeowner).
    pub fn forget(&mut self, mac: &MacAddr) {
        self.devices.remove(mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{Addrs, Tuple, L4};

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn home() -> InventorySnapshot {
        let mut inv = InventorySnapshot::default();
        for (n, ip) in [(1, "10.0.1.10"), (2, "10.0.2.30")] {
            let ip: std::net::IpAddr = ip.parse().expect("ip");
            inv.devices
                .insert(mac(n), crate::testutil::device_snapshot(mac(n), "iot", ip));
            inv.by_address.insert(ip, mac(n));
        }
        inv
    }

    fn paths() -> Paths {
        Paths {
            lan: vec!["10.0.1.0/24".parse().expect("net"), "10.0.2.0/24".parse().expect("net")],
        }
    }

    /// A UDP connection from `src:sport` to `dst:7` with these counts.
    fn flow(src: &str, sport: u16, dst: &str, tunnel: bool, orig: (u64, u64), reply: (u64, u64)) -> FlowReading {
        let (src, dst): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (src.parse().expect("ip"), dst.parse().expect("ip"));
        FlowReading {
            key: (
                Tuple {
                    addrs: Addrs::V4 { src, dst },
                    proto: 17,
                    l4: L4::Ports { src: sport, dst: 7 },
                    zone: None,
                },
                Some(u32::from(sport)),
            ),
            src: src.into(),
            dst: dst.into(),
            tunnel,
            orig,
            reply,
        }
    }

    #[test]
    fn differences_by_path_and_both_ends_of_a_connection_between_zones() {
        let (inv, p) = (home(), paths());
        let mut b = TrafficBook::default();
        let web = |o, r| flow("10.0.1.10", 40000, "203.0.113.10", false, o, r);
        let vpn = |o, r| flow("10.0.1.10", 40001, "198.51.100.7", true, o, r);
        let tv = |o, r| flow("10.0.1.10", 40002, "10.0.2.30", false, o, r);
        b.record(&[web((10, 1000), (8, 8000)), vpn((1, 100), (1, 50))], &inv, &p, 120);
        b.record(&[web((15, 1500), (9, 9000)), tv((2, 200), (1, 64))], &inv, &p, 130);
        let laptop = b.device(&mac(1)).expect("counted");
        assert_eq!(
            laptop.totals.sent.internet,
            Flow {
                bytes: 1500,
                packets: 15
            }
        );
        assert_eq!(
            laptop.totals.received.internet,
            Flow {
                bytes: 9000,
                packets: 9
            }
        );
        assert_eq!(laptop.totals.sent.tunnel.bytes, 100);
        assert_eq!(laptop.totals.received.tunnel.bytes, 50);
        assert_eq!(laptop.totals.sent.zones.bytes, 200);
        // The TV was opened to: what the laptop sent it received, and back.
        let t = b.device(&mac(2)).expect("tv");
        assert_eq!(t.totals.received.zones, Flow { bytes: 200, packets: 2 });
        assert_eq!(t.totals.sent.zones, Flow { bytes: 64, packets: 1 });
        // The VPN connection ended (not listed); a new one on the same tuple
        // with another id counts from zero.
        let mut again = vpn((1, 40), (0, 0));
        again.key.1 = Some(9);
        b.record(&[web((15, 1500), (9, 9000)), again], &inv, &p, 140);
        assert_eq!(b.device(&mac(1)).expect("d").totals.sent.tunnel.bytes, 140);
    }

    #[test]
    fn the_routers_own_connections_are_counted_apart() {
        let (inv, p) = (home(), paths());
        let mut b = TrafficBook::default();
        b.record(
            &[flow("198.51.100.2", 1, "203.0.113.10", false, (1, 77), (1, 5))],
            &inv,
            &p,
            60,
        );
        assert_eq!(b.unattributed_bytes, 82);
        assert_eq!(b.devices().count(), 0);
    }

    #[test]
    fn minutes_and_hours_are_bounded_and_top_talkers_sorted() {
        let (inv, p) = (home(), paths());
        let mut b = TrafficBook::default();
        let mut sent = 0;
        // Two days of one reading a minute.
        for minute in 0..(2 * 24 * 60) {
            sent += 100;
            b.record(
                &[flow("10.0.1.10", 1, "203.0.113.10", false, (minute, sent), (0, 0))],
                &inv,
                &p,
                minute as i64 * 60,
            );
        }
        let d = b.device(&mac(1)).expect("d");
        assert_eq!(d.minutes.len(), MINUTES);
        assert_eq!(d.hours.len(), 48);
        assert!(d.hours.iter().skip(1).all(|p| p.sent == 6000));
        let now = (2 * 24 * 60 - 1) * 60;
        assert_eq!(b.recent(&mac(1), 600, now), (0, 1000));
        b.record(
            &[
                flow("10.0.1.10", 1, "203.0.113.10", false, (2 * 24 * 60, sent), (0, 0)),
                flow("10.0.2.30", 2, "203.0.113.10", false, (1, 50_000), (0, 0)),
            ],
            &inv,
            &p,
            now,
        );
        assert_eq!(b.top(3600, now, 5), [(mac(2), 0, 50_000), (mac(1), 0, 6000)]);
        assert_eq!(b.top(3600, now, 1).len(), 1);
    }

    #[test]
    fn the_quietest_device_leaves_when_the_book_is_full() {
        let p = paths();
        let mut inv = home();
        let mut b = TrafficBook::default();
        for n in 0..=MAX_DEVICES {
            let m = MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
            let ip = std::net::Ipv4Addr::new(10, 9, (n >> 8) as u8, n as u8);
            inv.devices.insert(m, inv.devices[&mac(1)].clone());
            inv.by_address.insert(ip.into(), m);
            b.record(
                &[flow(&ip.to_string(), n as u16, "203.0.113.10", false, (1, 1), (0, 0))],
                &inv,
                &p,
                n as i64,
            );
        }
        assert_eq!(b.devices().count(), MAX_DEVICES);
        assert_eq!(b.evicted, 1);
        assert!(b.device(&MacAddr([2, 0, 0, 0, 0, 0])).is_none(), "the oldest left");
    }
}
