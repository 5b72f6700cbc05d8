//! Per-device DNS counts by day: questions, blocked, and the most asked
//! names (of devices whose questions are logged). Pure: the day is an
//! argument. What the homeowner sees as "today", and what survives a restart
//! (`daily_store.rs` writes the changed rows once an hour and when the
//! resolver stops: a handful of flash pages, never one write per question).
//!
//! The most asked names are kept with the Space-Saving algorithm (Metwally,
//! Agrawal, El Abbadi 2005): [`TOP_KEPT`] counters per device and day; a new
//! name takes the smallest counter's place and count plus one, and remembers
//! that count as its possible error. Memory is fixed whatever a device asks,
//! every name asked more often than 1/K of its questions is in, and what is
//! shown is the count less its error: how often the name was surely asked
//! (a name asked once never shows as asked 57 times).

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
    /// Its most asked names: (name, count, possible overcount), unordered.
    pub top: Vec<(String, u64, u64)>,
    /// Changed since it was last written.
    #[serde(skip)]
    dirty: bool,
}

impl DeviceDay {
    /// A day as read back from flash (not changed since).
    pub fn read_back(queries: u64, blocked: u64, top: Vec<(String, u64, u64)>) -> DeviceDay {
        DeviceDay {
            queries,
            blocked,
            top,
            dirty: false,
        }
    }

    /// Counts one question (`name`: `None` when its questions are not
    /// logged — and then the names counted before go too: turning a
    /// device's log off keeps its names off the page and off flash).
    fn count(&mut self, name: Option<&str>, blocked: bool) {
        self.queries += 1;
        self.blocked += u64::from(blocked);
        self.dirty = true;
        let Some(name) = name else {
            self.top.clear();
            return;
        };
        if let Some(slot) = self.top.iter_mut().find(|(n, _, _)| n == name) {
            slot.1 += 1;
        } else if self.top.len() < TOP_KEPT {
            self.top.push((name.to_string(), 1, 0));
        } else if let Some(smallest) = self.top.iter_mut().min_by_key(|(_, c, _)| *c) {
            *smallest = (name.to_string(), smallest.1 + 1, smallest.1);
        }
    }

    /// Its `n` most asked names with how often each surely was (count less
    /// possible overcount), most first (ties by name).
    pub fn most_asked(&self, n: usize) -> Vec<(&str, u64)> {
        let mut top: Vec<(&str, u64)> = self
            .top
            .iter()
            .map(|(name, c, error)| (name.as_str(), c.saturating_sub(*error)))
            .filter(|(_, sure)| *sure > 0)
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top.truncate(n);
        top
    }

    /// Adds a day read back from flash to what was counted since the start.
    fn absorb(&mut self, earlier: DeviceDay) {
        self.queries += earlier.queries;
        self.blocked += earlier.blocked;
        for (name, count, error) in earlier.top {
            match self.top.iter_mut().find(|(n, _, _)| *n == name) {
                Some(slot) => {
                    slot.1 += count;
                    slot.2 += error;
                }
                None => self.top.push((name, count, error)),
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
    /// yesterday go once written, and any older day whatever its state (a
    /// store that cannot be written must not grow memory day after day).
    pub fn count(&mut self, day: i64, mac: MacAddr, name: Option<&str>, blocked: bool) {
        if !self.days.contains_key(&day) {
            self.forget_before(day - (DAYS_IN_MEMORY - 1));
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

    fn forget_before(&mut self, day: i64) {
        self.days
            .retain(|d, devices| *d >= day || (*d == day - 1 && devices.values().any(|x| x.dirty)));
    }
}

/// The local calendar day of a Unix time, given the local offset from UTC.
pub fn local_day(wall: u64, utc_offset_secs: i32) -> i64 {
    i64::try_from(wall)
        .unwrap_or(i64::MAX)
        .saturating_add(i64::from(utc_offset_secs))
        .div_euclid(86_400)
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
        let day: Vec<_> = c.day(7).collect();
        let (_, d) = day[0];
        assert_eq!((d.queries, d.blocked), (1000, 250));
        let top = d.most_asked(TOP_KEPT);
        assert_eq!(top[0].0, "often.test");
        assert!((400..=500).contains(&top[0].1), "{top:?}");
        assert_eq!(top[1].0, "sometimes.test");
        assert!(top[1].1 <= 100, "{top:?}");
        assert!(
            top.iter().all(|(n, sure)| !n.starts_with("noise") || *sure <= 1),
            "a name asked once is never shown as asked more: {top:?}"
        );
        assert!(d.top.len() <= TOP_KEPT, "memory is fixed");
        assert_eq!(c.day(8).count(), 0);
        // Its log turned off: the names go, the counts stay.
        c.count(7, MAC, None, false);
        let (_, d) = c.day(7).next().expect("the day");
        assert!(d.top.is_empty());
        assert_eq!(d.queries, 1001);
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
        // Never written (no store, or a store that fails): memory stays
        // bounded, at most one day more than written days.
        let mut c = DailyCounts::default();
        for day in 0..100 {
            c.count(day, MAC, Some("a.test"), false);
        }
        assert!(c.days.len() <= 3, "{} days in memory", c.days.len());
    }

    #[test]
    fn a_restored_day_adds_to_what_was_counted_since_the_start() {
        let mut c = DailyCounts::default();
        c.count(5, MAC, Some("a.test"), true);
        let earlier = DeviceDay {
            queries: 10,
            blocked: 2,
            top: vec![("a.test".into(), 4, 0), ("b.test".into(), 6, 0)],
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
