//! Per-device DNS counts by day: questions, blocked, and the most asked
//! names (of devices whose questions are logged). Pure: the day is an
//! argument. What the homeowner sees as "today", and what survives a restart
//! (`daily_store.rs` writes the changed rows once an hour and when the
//! resolver stops: a handful of flash pages, never one write per question).
//!
//! The most asked names are kept with the Space-Saving algorithm (Metwally,
//! Agrawal, El Abbadi 2005): [`TOP_KEPT`] counters per device and day; a new
//! name takes the smallest counter's place and count plus one. Memory is
//! fixed whatever a device asks, every name asked more often than 1/K of its
//! questions is in, and a count is high by at most the counter it replaced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::MacAddr;

/// Names counted per device and day.
pub const TOP_KEPT: usize = 20;
/// Days kept in memory: today and yesterday (older days are on flash only).
const DAYS_IN_MEMORY: i64 = 2;

/// One device's day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDay {
    /// Questions answered.
    pub queries: u64,
    /// Of which blocked by a list.
    pub blocked: u64,
    /// Its most asked names with their (upper-bound) counts, unordered.
    pub top: Vec<(String, u64)>,
    /// Changed since it was last written.
    #[serde(skip)]
    dirty: bool,
}

impl DeviceDay {
    /// A day as read back from flash (not changed since).
    pub fn read_back(queries: u64, blocked: u64, top: Vec<(String, u64)>) -> DeviceDay {
        DeviceDay {
            queries,
            blocked,
            top,
            dirty: false,
        }
    }

    /// Counts one question (`name`: `None` when its questions are not logged).
    fn count(&mut self, name: Option<&str>, blocked: bool) {
        self.queries += 1;
        self.blocked += u64::from(blocked);
        self.dirty = true;
        let Some(name) = name else { return };
        if let Some(slot) = self.top.iter_mut().find(|(n, _)| n == name) {
            slot.1 += 1;
        } else if self.top.len() < TOP_KEPT {
            self.top.push((name.to_string(), 1));
        } else if let Some(smallest) = self.top.iter_mut().min_by_key(|(_, c)| *c) {
            *smallest = (name.to_string(), smallest.1 + 1);
        }
    }

    /// Its `n` most asked names, most first (ties by name).
    pub fn most_asked(&self, n: usize) -> Vec<(&str, u64)> {
        let mut top: Vec<(&str, u64)> = self.top.iter().map(|(name, c)| (name.as_str(), *c)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top.truncate(n);
        top
    }

    /// Adds a day read back from flash to what was counted since the start.
    fn absorb(&mut self, earlier: DeviceDay) {
        self.queries += earlier.queries;
        self.blocked += earlier.blocked;
        for (name, count) in earlier.top {
            match self.top.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 += count,
                None => self.top.push((name, count)),
            }
        }
        if self.top.len() > TOP_KEPT {
            self.top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            self.top.truncate(TOP_KEPT);
        }
    }
}

/// One row: a device's day.
pub type DayRow = (i64, MacAddr, DeviceDay);

/// The counts of the days in memory.
#[derive(Debug, Default)]
pub struct DailyCounts {
    days: BTreeMap<i64, BTreeMap<MacAddr, DeviceDay>>,
}

impl DailyCounts {
    /// Counts a question of `mac` on `day`. A new day lets the day before
    /// yesterday go (once written).
    pub fn count(&mut self, day: i64, mac: MacAddr, name: Option<&str>, blocked: bool) {
        if !self.days.contains_key(&day) {
            self.forget_written_before(day - (DAYS_IN_MEMORY - 1));
        }
        self.days
            .entry(day)
            .or_default()
            .entry(mac)
            .or_default()
            .count(name, blocked);
    }

    /// The devices' counts of `day`.
    pub fn day(&self, day: i64) -> impl Iterator<Item = (&MacAddr, &DeviceDay)> {
        self.days.get(&day).into_iter().flatten()
    }

    /// Rows changed since the last call (to write), marked clean.
    pub fn take_changed(&mut self) -> Vec<DayRow> {
        let mut rows = Vec::new();
        for (day, devices) in &mut self.days {
            for (mac, d) in devices.iter_mut().filter(|(_, d)| d.dirty) {
                d.dirty = false;
                rows.push((*day, *mac, d.clone()));
            }
        }
        rows
    }

    /// Marks rows changed again (their write failed: tried at the next flush).
    pub fn mark_changed(&mut self, rows: &[DayRow]) {
        for (day, mac, _) in rows {
            if let Some(d) = self.days.get_mut(day).and_then(|m| m.get_mut(mac)) {
                d.dirty = true;
            }
        }
    }

    /// Adds rows read back at start (today's and yesterday's) to the counts.
    pub fn restore(&mut self, rows: Vec<DayRow>) {
        for (day, mac, earlier) in rows {
            self.days
                .entry(day)
                .or_default()
                .entry(mac)
                .or_default()
                .absorb(earlier);
        }
    }

    fn forget_written_before(&mut self, day: i64) {
        self.days
            .retain(|d, devices| *d >= day || devices.values().any(|x| x.dirty));
    }
}

/// The local calendar day of a Unix time, given the local offset from UTC.
pub fn local_day(wall: u64, utc_offset_secs: i32) -> i64 {
    (i64::try_from(wall).unwrap_or(i64::MAX) + i64::from(utc_offset_secs)).div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    #[test]
    fn a_day_counts_questions_blocked_and_the_most_asked_names() {
        let mut c = DailyCounts::default();
        for i in 0..1000u32 {
            // One name every second question, one every tenth, and noise.
            let name = match i {
                i if i % 2 == 0 => "often.test".to_string(),
                i if i % 10 == 1 => "sometimes.test".to_string(),
                i => format!("noise{i}.test"),
            };
            c.count(7, MAC, Some(&name), i % 4 == 0);
        }
        c.count(7, MAC, None, false);
        let day: Vec<_> = c.day(7).collect();
        let (_, d) = day[0];
        assert_eq!((d.queries, d.blocked), (1001, 250));
        let top = d.most_asked(2);
        assert_eq!(top[0].0, "often.test");
        assert!(top[0].1 >= 500, "{top:?}");
        assert_eq!(top[1].0, "sometimes.test");
        assert!(d.top.len() <= TOP_KEPT, "memory is fixed");
        assert_eq!(c.day(8).count(), 0);
    }

    #[test]
    fn changed_rows_are_taken_once_and_old_days_go_only_once_written() {
        let mut c = DailyCounts::default();
        c.count(1, MAC, Some("a.test"), false);
        let rows = c.take_changed();
        assert_eq!(rows.len(), 1);
        assert!(c.take_changed().is_empty(), "nothing changed since");
        c.count(2, MAC, Some("b.test"), false);
        // Day 1 is yesterday now: kept. Day 3 makes it older; written, it goes.
        c.count(3, MAC, Some("c.test"), false);
        assert_eq!(c.day(1).count(), 0);
        assert_eq!(c.day(2).count(), 1, "yesterday, not written yet: kept");
        // A failed write marks its rows again.
        let rows = c.take_changed();
        assert_eq!(rows.len(), 2);
        c.mark_changed(&rows);
        assert_eq!(c.take_changed().len(), 2);
    }

    #[test]
    fn a_restored_day_adds_to_what_was_counted_since_the_start() {
        let mut c = DailyCounts::default();
        c.count(5, MAC, Some("a.test"), true);
        let earlier = DeviceDay {
            queries: 10,
            blocked: 2,
            top: vec![("a.test".into(), 4), ("b.test".into(), 6)],
            dirty: false,
        };
        c.restore(vec![(5, MAC, earlier)]);
        let (_, d) = c.day(5).next().expect("the day");
        assert_eq!((d.queries, d.blocked), (11, 3));
        assert_eq!(d.most_asked(5), vec![("b.test", 6), ("a.test", 5)]);
    }

    #[test]
    fn local_days_follow_the_offset() {
        assert_eq!(local_day(86_400 * 10 + 3_600, 0), 10);
        assert_eq!(local_day(86_400 * 10 + 3_600, -2 * 3_600), 9);
        assert_eq!(local_day(86_400 * 10 - 1, 3_600), 10);
    }
}
