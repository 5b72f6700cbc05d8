//! PURE: readings of the kernel's counters in, each device's traffic out.
//! Time is an argument; nothing here reads a clock or the kernel.
//!
//! A reading is cumulative per meter element; the book keeps the last value
//! of each element and takes the difference. A value that went down is a
//! counter that started again (the element expired and came back, a full
//! replace re-created the table): its whole value is new. Sending is
//! counted by MAC, receiving by address, put on the device that holds the
//! address at reading time.
//!
//! Bounded: [`MAX_DEVICES`] devices (the quietest leaves first), a minute
//! series of the last 24 hours and an hour series of the last 30 days each.
//! Only the hours are written to flash, once an hour (see `super`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::read::{Reading, Who};
use crate::config::MacAddr;
use crate::core::InventorySnapshot;
use crate::inventory::UnixTime;

/// Devices with traffic kept.
pub const MAX_DEVICES: usize = 1024;
/// Minute points kept (24 hours).
pub const MINUTES: usize = 24 * 60;
/// Hour points kept (30 days).
pub const HOURS: usize = 30 * 24;
/// Meter elements remembered between readings (three meters of 65,535).
const MAX_ELEMENTS: usize = 3 * 65_535;

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

/// What the interfaces are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    /// The WAN.
    pub wan: String,
    /// The tunnel, if there is one.
    pub tunnel: Option<String>,
}

impl Interfaces {
    fn path(&self, interface: &str) -> Path {
        if interface == self.wan {
            Path::Internet
        } else if self.tunnel.as_deref() == Some(interface) {
            Path::Tunnel
        } else {
            Path::Zones
        }
    }
}

/// Which way a meter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `traffic_out`: what devices sent.
    Sent,
    /// `traffic_in_*`: what addresses received.
    Received,
}

/// The book. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct TrafficBook {
    last: HashMap<(Who, String), (u64, u64)>,
    devices: HashMap<MacAddr, DeviceTraffic>,
    /// Counts no device could be found for (an address nobody holds).
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

    /// One meter's reading at `now`. Elements of this meter that are gone
    /// expired: they are forgotten (if they come back they start from zero).
    pub fn record(
        &mut self,
        direction: Direction,
        readings: &[Reading],
        inventory: &InventorySnapshot,
        interfaces: &Interfaces,
        now: UnixTime,
    ) {
        let mut seen = Vec::with_capacity(readings.len());
        for r in readings {
            let key = (r.who, r.interface.clone());
            let (packets, bytes) = match self.last.get(&key) {
                Some(&(p, b)) if r.packets >= p && r.bytes >= b => (r.packets - p, r.bytes - b),
                // New, or counting again from zero.
                _ => (r.packets, r.bytes),
            };
            if self.last.len() < MAX_ELEMENTS || self.last.contains_key(&key) {
                self.last.insert(key.clone(), (r.packets, r.bytes));
            }
            seen.push(key);
            if bytes == 0 && packets == 0 {
                continue;
            }
            let owner = match r.who {
                Who::Mac(mac) => inventory.devices.contains_key(&mac).then_some(mac),
                Who::Ip(ip) => inventory.by_address.get(&ip).copied(),
            };
            let Some(mac) = owner else {
                self.unattributed_bytes = self.unattributed_bytes.saturating_add(bytes);
                continue;
            };
            self.add(mac, direction, interfaces.path(&r.interface), bytes, packets, now);
        }
        let seen: std::collections::HashSet<(Who, String)> = seen.into_iter().collect();
        let mine = |who: &Who| match direction {
            Direction::Sent => matches!(who, Who::Mac(_)),
            Direction::Received => matches!(who, Who::Ip(_)),
        };
        self.last.retain(|k, _| !mine(&k.0) || seen.contains(k));
    }

    fn add(&mut self, mac: MacAddr, direction: Direction, path: Path, bytes: u64, packets: u64, now: UnixTime) {
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
    use crate::core::DeviceSnapshot;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn home() -> InventorySnapshot {
        let mut inv = InventorySnapshot::default();
        for (n, ip) in [(1, "10.0.1.10"), (2, "10.0.2.30")] {
            let ip: std::net::IpAddr = ip.parse().expect("ip");
            inv.devices.insert(
                mac(n),
                DeviceSnapshot {
                    mac: mac(n),
                    name: None,
                    hostname: None,
                    zone: crate::config::ZoneId::new("iot").expect("zone"),
                    addresses: [ip].into(),
                    blocked: false,
                    tunnel_routed: false,
                    quarantined: false,
                    class: None,
                    vendor: None,
                    last_seen: 0,
                    online: true,
                    watched: false,
                },
            );
            inv.by_address.insert(ip, mac(n));
        }
        inv
    }

    fn ifaces() -> Interfaces {
        Interfaces {
            wan: "wan0".into(),
            tunnel: Some("bh-wg0".into()),
        }
    }

    fn out(n: u8, interface: &str, packets: u64, bytes: u64) -> Reading {
        Reading {
            who: Who::Mac(mac(n)),
            interface: interface.into(),
            packets,
            bytes,
        }
    }

    fn into(ip: &str, interface: &str, packets: u64, bytes: u64) -> Reading {
        Reading {
            who: Who::Ip(ip.parse().expect("ip")),
            interface: interface.into(),
            packets,
            bytes,
        }
    }

    #[test]
    fn differences_by_path_and_a_counter_that_starts_again() {
        let (inv, i) = (home(), ifaces());
        let mut b = TrafficBook::default();
        b.record(
            Direction::Sent,
            &[out(1, "wan0", 10, 1000), out(1, "bh-wg0", 1, 100)],
            &inv,
            &i,
            120,
        );
        b.record(
            Direction::Sent,
            &[out(1, "wan0", 15, 1500), out(1, "br-iot", 2, 200)],
            &inv,
            &i,
            130,
        );
        let d = b.device(&mac(1)).expect("counted");
        assert_eq!(
            d.totals.sent.internet,
            Flow {
                bytes: 1500,
                packets: 15
            }
        );
        assert_eq!(d.totals.sent.tunnel, Flow { bytes: 100, packets: 1 });
        assert_eq!(d.totals.sent.zones, Flow { bytes: 200, packets: 2 });
        // The tunnel element expired, then came back: from zero.
        b.record(
            Direction::Sent,
            &[out(1, "wan0", 15, 1500), out(1, "bh-wg0", 1, 40)],
            &inv,
            &i,
            140,
        );
        assert_eq!(b.device(&mac(1)).expect("d").totals.sent.tunnel.bytes, 140);
        // A full replace: every counter lower than before.
        b.record(Direction::Sent, &[out(1, "wan0", 1, 60)], &inv, &i, 150);
        assert_eq!(b.device(&mac(1)).expect("d").totals.sent.internet.bytes, 1560);
    }

    #[test]
    fn received_goes_to_whoever_holds_the_address_and_strangers_are_counted_apart() {
        let (inv, i) = (home(), ifaces());
        let mut b = TrafficBook::default();
        b.record(
            Direction::Received,
            &[into("10.0.2.30", "wan0", 3, 3000), into("10.0.9.9", "wan0", 1, 77)],
            &inv,
            &i,
            60,
        );
        b.record(Direction::Sent, &[out(9, "wan0", 1, 5)], &inv, &i, 60);
        assert_eq!(b.device(&mac(2)).expect("tv").totals.received.internet.bytes, 3000);
        assert_eq!(b.unattributed_bytes, 82);
        assert!(b.device(&mac(9)).is_none(), "an unknown MAC makes no entry");
        // Sent readings do not forget received elements.
        b.record(Direction::Received, &[into("10.0.2.30", "wan0", 4, 3500)], &inv, &i, 70);
        assert_eq!(b.device(&mac(2)).expect("tv").totals.received.internet.bytes, 3500);
    }

    #[test]
    fn minutes_and_hours_are_bounded_and_top_talkers_sorted() {
        let (inv, i) = (home(), ifaces());
        let mut b = TrafficBook::default();
        let mut sent = 0;
        // Two days of one reading a minute.
        for minute in 0..(2 * 24 * 60) {
            sent += 100;
            b.record(
                Direction::Sent,
                &[out(1, "wan0", minute, sent)],
                &inv,
                &i,
                minute as i64 * 60,
            );
        }
        let d = b.device(&mac(1)).expect("d");
        assert_eq!(d.minutes.len(), MINUTES);
        assert_eq!(d.hours.len(), 48);
        assert!(
            d.hours.iter().skip(1).all(|p| p.sent == 6000),
            "{:?}",
            &d.hours.iter().take(3).collect::<Vec<_>>()
        );
        let now = (2 * 24 * 60 - 1) * 60;
        assert_eq!(b.recent(&mac(1), 600, now), (0, 1000));
        b.record(Direction::Sent, &[out(2, "br-lan", 1, 50_000)], &inv, &i, now);
        assert_eq!(b.top(3600, now, 5), [(mac(2), 0, 50_000), (mac(1), 0, 6000)]);
        assert_eq!(b.top(3600, now, 1).len(), 1);
    }

    #[test]
    fn the_quietest_device_leaves_when_the_book_is_full() {
        let i = ifaces();
        let mut inv = home();
        let mut b = TrafficBook::default();
        for n in 0..=MAX_DEVICES {
            let m = MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
            inv.devices.insert(m, inv.devices[&mac(1)].clone());
            b.record(
                Direction::Sent,
                &[Reading {
                    who: Who::Mac(m),
                    interface: "wan0".into(),
                    packets: 1,
                    bytes: 1,
                }],
                &inv,
                &i,
                n as i64,
            );
        }
        assert_eq!(b.devices().count(), MAX_DEVICES);
        assert_eq!(b.evicted, 1);
        assert!(b.device(&MacAddr([2, 0, 0, 0, 0, 0])).is_none(), "the oldest left");
    }
}
