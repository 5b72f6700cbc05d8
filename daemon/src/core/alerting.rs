//! The alerts' bookkeeping, apart from the coordinator: what was raised and
//! not yet handed to the notifiers (the alert stream), and storms: the same
//! kind for the same device (or the router) within its kind's dedup window
//! ([`AlertKind::dedup_secs`]) is the first alert happening again — its count
//! grows in the store, nothing new is raised or sent.

use std::collections::{HashMap, VecDeque};

use crate::alerts::{Alert, AlertKind};
use crate::config::MacAddr;
use crate::inventory::UnixTime;

/// Alerts kept for the runtime between two loop turns (it takes them every
/// turn; this bounds a storm raised within one).
const MAX_PUBLISHED: usize = 1024;
/// Recent alerts remembered for dedup (the oldest are forgotten first).
const MAX_RECENT: usize = 4096;

/// What became of an alert being raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Raise {
    /// New: store it (then [`AlertBook::raised`]).
    New,
    /// The alert `id` happened again: count it.
    Again {
        /// The stored alert.
        id: i64,
    },
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct AlertBook {
    published: VecDeque<Alert>,
    /// (kind, device) → (stored id, last time it happened).
    recent: HashMap<(AlertKind, Option<MacAddr>), (i64, UnixTime)>,
}

impl AlertBook {
    /// PURE: is `alert` new, or one that happened recently?
    pub(super) fn classify(&mut self, alert: &Alert) -> Raise {
        let key = (alert.kind, alert.mac);
        let Some(window) = alert.kind.dedup_secs() else {
            return Raise::New;
        };
        match self.recent.get_mut(&key) {
            Some((id, last)) if *id > 0 && alert.at - *last < window => {
                *last = alert.at;
                Raise::Again { id: *id }
            }
            _ => Raise::New,
        }
    }

    /// A new alert was stored (as `alert.id`): remember it, publish it.
    pub(super) fn raised(&mut self, alert: Alert) {
        if alert.kind.dedup_secs().is_some() && alert.id > 0 {
            if self.recent.len() >= MAX_RECENT {
                if let Some(oldest) = self.recent.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    self.recent.remove(&oldest);
                }
            }
            self.recent.insert((alert.kind, alert.mac), (alert.id, alert.at));
        }
        if self.published.len() >= MAX_PUBLISHED {
            self.published.pop_front();
        }
        self.published.push_back(alert);
    }

    /// The wall clock jumped by `delta` seconds: dedup windows keep their
    /// place.
    pub(super) fn shift_times(&mut self, delta: i64) {
        for (_, at) in self.recent.values_mut() {
            *at = at.saturating_add(delta);
        }
    }

    /// The alerts raised since the last call, oldest first.
    pub(super) fn take_published(&mut self) -> Vec<Alert> {
        self.published.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_one_alert_and_a_later_one_is_news() {
        let mut book = AlertBook::default();
        let mac = Some(MacAddr([2, 0, 0, 0, 0, 1]));
        let mut first = Alert::new(100, AlertKind::PoolExhausted, None, "full".into());
        assert_eq!(book.classify(&first), Raise::New);
        first.id = 7;
        book.raised(first);
        assert_eq!(book.take_published().len(), 1);
        let again = Alert::new(200, AlertKind::PoolExhausted, None, "full".into());
        assert_eq!(book.classify(&again), Raise::Again { id: 7 });
        // The window slides with each repeat.
        let later = Alert::new(200 + 3599, AlertKind::PoolExhausted, None, "full".into());
        assert_eq!(book.classify(&later), Raise::Again { id: 7 });
        let much_later = Alert::new(200 + 3599 + 3600, AlertKind::PoolExhausted, None, "full".into());
        assert_eq!(book.classify(&much_later), Raise::New);
        // Another device, or a kind without a window, is news.
        let other = Alert::new(300, AlertKind::PoolExhausted, mac, "full".into());
        assert_eq!(book.classify(&other), Raise::New);
        let joined = Alert::new(300, AlertKind::NewDevice, mac, "hello".into());
        assert_eq!(book.classify(&joined), Raise::New);
        assert!(book.take_published().is_empty(), "repeats are not published");
    }
}
