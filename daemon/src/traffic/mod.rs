//! Traffic per device: how much each device sends and receives, to the
//! internet, through the tunnel and to other zones, over time.
//!
//! The kernel counts: conntrack's accounting (`net.netfilter.
//! nf_conntrack_acct`, switched on when the service starts) keeps bytes and
//! packets per connection, each way, on the path every forwarded packet
//! already takes — no rule of ours walks per packet. This service lists the
//! connections every `traffic.sample_secs` (over ctnetlink, the dump the
//! connection cuts use), puts the differences on devices ([`book`], pure)
//! and answers the CLI and the web UI. It reads the inventory snapshot and
//! asks the core for nothing: counting enforces nothing.
//!
//! A connection that ends between two readings keeps its last counts in the
//! table for its timeout (30 s for unanswered UDP, 120 s for answered UDP and
//! closed TCP, 10 s after a reset), so readings at most every 30 s see nearly
//! all of it; a reset connection's last 10 s, or one the daemon cuts (a zone
//! move), can go uncounted.
//!
//! - [`read`]: conntrack entries → flow readings (pure);
//! - [`book`]: readings + the inventory + time → totals, a minute series
//!   (24 h, in memory) and an hour series (30 days);
//! - here: the task, `nft` and the file. The hours and totals are written
//!   to `state_dir/traffic.json` once an hour (write, fsync, rename: one
//!   small write an hour is what flash can take) and read back at start.

pub mod book;
pub mod read;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::config::{Config, MacAddr};
use crate::firewall::error_chain;
use crate::inventory::{unix_now, UnixTime};
use crate::runtime::services::ServiceHandle;

use book::{Paths, Point, Totals, TrafficBook};

/// Top talkers listed.
pub const TOP: usize = 10;
/// The file the hours are kept in.
const FILE: &str = "traffic.json";
/// How often the hours are written.
const SAVE_EVERY_SECS: UnixTime = 3600;

/// What the service needs from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSettings {
    /// Seconds between readings.
    pub sample_secs: u32,
    /// The home's networks (a far end in one is another zone).
    pub paths: Paths,
    /// Where the hours are kept.
    pub file: PathBuf,
}

impl TrafficSettings {
    /// `None` when counting is off.
    pub fn from_config(config: &Config) -> Option<TrafficSettings> {
        config.traffic.enabled.then(|| TrafficSettings {
            sample_secs: config.traffic.sample_secs,
            paths: Paths {
                lan: config
                    .segments
                    .iter()
                    .flat_map(|s| {
                        std::iter::once(ipnet::IpNet::V4(s.ipv4.trunc()))
                            .chain(s.ipv6.map(|v6| ipnet::IpNet::V6(v6.trunc())))
                    })
                    .collect(),
            },
            file: config.state_dir.join(FILE),
        })
    }
}

/// One device's traffic as the CLI and the web UI get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTrafficReport {
    /// The device.
    pub mac: MacAddr,
    /// Its name now (`inventory::naming`; untrusted), if anything names it.
    #[serde(default)]
    pub name: Option<String>,
    /// Since counting began, by path.
    pub totals: Totals,
    /// Bytes (received, sent) in the last hour.
    pub last_hour: (u64, u64),
    /// Bytes (received, sent) in the last 24 hours.
    pub last_day: (u64, u64),
    /// The last 24 hours by minute (only for one device's report).
    pub minutes: Vec<Point>,
    /// The last 30 days by hour (only for one device's report).
    pub hours: Vec<Point>,
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// When it was made.
    pub at: UnixTime,
    /// Seconds between readings.
    pub sample_secs: u32,
    /// Readings taken since the daemon started.
    pub readings: u64,
    /// The last reading's failure, if it failed.
    pub last_error: Option<String>,
    /// The devices: the top talkers of the last hour, or the one asked for.
    pub devices: Vec<DeviceTrafficReport>,
}

#[derive(Debug, Default)]
struct Shared {
    book: TrafficBook,
    readings: u64,
    last_error: Option<String>,
}

/// The running service.
pub struct TrafficService {
    settings: TrafficSettings,
    shared: Arc<RwLock<Shared>>,
    inventory: crate::runtime::services::SharedInventory,
    task: JoinHandle<()>,
}

impl Drop for TrafficService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TrafficService {
    /// Reads the saved hours and starts counting.
    pub fn start(settings: TrafficSettings, services: ServiceHandle) -> TrafficService {
        let book = match load(&settings.file) {
            Ok(devices) => TrafficBook::with_devices(devices),
            Err(e) => {
                tracing::warn!(file = %settings.file.display(), error = %e, "saved traffic not read; counting from zero");
                TrafficBook::default()
            }
        };
        let shared = Arc::new(RwLock::new(Shared {
            book,
            ..Shared::default()
        }));
        let inventory = services.inventory.clone();
        let task = tokio::spawn(run(settings.clone(), services, shared.clone()));
        TrafficService {
            settings,
            shared,
            inventory,
            task,
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &TrafficSettings {
        &self.settings
    }

    /// The top talkers of the last hour, or one device with its series.
    pub fn report(&self, mac: Option<MacAddr>, now: UnixTime) -> TrafficReport {
        let Ok(s) = self.shared.read() else {
            return TrafficReport {
                at: now,
                sample_secs: self.settings.sample_secs,
                readings: 0,
                last_error: Some("the traffic book is unavailable".into()),
                devices: Vec::new(),
            };
        };
        let inventory = self.inventory.read().ok();
        let name = |m: &MacAddr| inventory.as_ref()?.devices.get(m)?.best_name();
        let entry = |m: MacAddr, series: bool| {
            s.book.device(&m).map(|d| DeviceTrafficReport {
                mac: m,
                name: name(&m),
                totals: d.totals,
                last_hour: s.book.recent(&m, 3600, now),
                last_day: s.book.recent(&m, 24 * 3600, now),
                minutes: if series {
                    d.minutes.iter().copied().collect()
                } else {
                    Vec::new()
                },
                hours: if series {
                    d.hours.iter().copied().collect()
                } else {
                    Vec::new()
                },
            })
        };
        let devices = match mac {
            Some(m) => entry(m, true).into_iter().collect(),
            None => s
                .book
                .top(3600, now, TOP)
                .into_iter()
                .filter_map(|(m, _, _)| entry(m, false))
                .collect(),
        };
        TrafficReport {
            at: now,
            sample_secs: self.settings.sample_secs,
            readings: s.readings,
            last_error: s.last_error.clone(),
            devices,
        }
    }
}

async fn run(settings: TrafficSettings, services: ServiceHandle, shared: Arc<RwLock<Shared>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(settings.sample_secs)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved_at = unix_now();
    // Switched on once; until then (the file appears with conntrack) it is
    // tried again each reading.
    let mut accounting = false;
    loop {
        tick.tick().await;
        let switch = !accounting;
        let listed = tokio::task::spawn_blocking(move || {
            if switch {
                switch_on_accounting()?;
            }
            list()
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        accounting |= listed.is_ok();
        let now = unix_now();
        let due = now - saved_at >= SAVE_EVERY_SECS;
        let Some(to_save) = take_reading(&shared, &services, &settings, listed, now, due) else {
            continue;
        };
        saved_at = now;
        let file = settings.file.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = save(&file, &to_save) {
                tracing::warn!(file = %file.display(), error = %e, "traffic hours not saved");
            }
        })
        .await;
    }
}

/// Puts one reading in the book (under the locks, no await); the devices
/// to save when `due`.
fn take_reading(
    shared: &RwLock<Shared>,
    services: &ServiceHandle,
    settings: &TrafficSettings,
    listed: Result<Vec<read::FlowReading>, String>,
    now: UnixTime,
    due: bool,
) -> Option<BTreeMap<MacAddr, book::DeviceTraffic>> {
    let inventory = services.inventory.read().ok()?;
    let mut s = shared.write().ok()?;
    match listed {
        Ok(flows) => {
            s.book.record(&flows, &inventory, &settings.paths, now);
            s.readings += 1;
            s.last_error = None;
        }
        Err(e) => {
            if s.last_error.as_deref() != Some(&e) {
                tracing::warn!(error = %e, "traffic counters not read");
            }
            s.last_error = Some(e);
        }
    }
    due.then(|| s.book.devices().map(|(m, d)| (*m, d.clone())).collect())
}

/// Switches accounting on (it counts for connections made from then on).
fn switch_on_accounting() -> Result<(), String> {
    std::fs::write(ACCT_SYSCTL, b"1").map_err(|e| format!("switching on {ACCT_SYSCTL}: {e}"))
}

/// The connections, listed.
fn list() -> Result<Vec<read::FlowReading>, String> {
    let dump = crate::firewall::ConntrackNetlink
        .dump(0)
        .map_err(|e| format!("listing the connections: {}", error_chain(&e)))?;
    let (flows, uncounted) = read::flows(&dump.entries, crate::kernel_ids::MARK_TUNNEL);
    if uncounted > 0 {
        tracing::debug!(
            uncounted,
            "connections without counters (made before accounting was on)"
        );
    }
    Ok(flows)
}

/// Conntrack's per-connection accounting, per network namespace.
const ACCT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

/// The saved hours and totals.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    devices: BTreeMap<MacAddr, book::DeviceTraffic>,
}

fn load(file: &Path) -> Result<BTreeMap<MacAddr, book::DeviceTraffic>, String> {
    match std::fs::read(file) {
        Ok(bytes) => {
            let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            Ok(saved.devices)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn save(file: &Path, devices: &BTreeMap<MacAddr, book::DeviceTraffic>) -> std::io::Result<()> {
    use std::io::Write as _;
    let json = serde_json::to_vec(&Saved {
        version: 1,
        devices: devices.clone(),
    })
    .map_err(std::io::Error::other)?;
    let tmp = file.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hours_survive_a_restart_through_the_file() {
        let dir = crate::testutil::Fixture::new("", &[]);
        let file = dir.dir.join(FILE);
        assert!(load(&file).expect("no file is no traffic").is_empty());
        let mut d = book::DeviceTraffic::default();
        d.totals.sent.internet.bytes = 42;
        d.hours.push_back(Point {
            at: 3600,
            received: 1,
            sent: 42,
        });
        d.minutes.push_back(Point::default());
        let devices: BTreeMap<MacAddr, book::DeviceTraffic> = [(MacAddr([2, 0, 0, 0, 0, 1]), d)].into();
        save(&file, &devices).expect("saved");
        let back = load(&file).expect("read");
        let got = &back[&MacAddr([2, 0, 0, 0, 0, 1])];
        assert_eq!(got.totals.sent.internet.bytes, 42);
        assert_eq!(got.hours.len(), 1);
        assert!(got.minutes.is_empty(), "minutes stay in memory");
        std::fs::write(&file, b"{ damaged").expect("write");
        assert!(load(&file).is_err());
    }
}
