//! The query log: the last N questions in memory (a ring: the oldest goes
//! first). Nothing is written to flash per query; the per-device counts by
//! day are `daily.rs`'s.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::MacAddr;

/// What became of a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// Answered from upstream.
    Forwarded {
        /// The upstream that answered.
        upstream: String,
    },
    /// Answered from the cache.
    Cached,
    /// Answered from the home's own names.
    Local,
    /// A blocklist matched.
    Blocked {
        /// The list.
        list: String,
    },
    /// Upstream answered with private addresses under a public name.
    Rebind,
    /// The client's zone may not resolve internet names.
    NotAllowed,
    /// No upstream answered (or the tunnel is down for a tunnelled device).
    Failed,
}

/// One logged question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryLogEntry {
    /// Unix seconds.
    pub at: u64,
    /// The client's address.
    pub client: IpAddr,
    /// Its device, if known.
    pub mac: Option<MacAddr>,
    /// The name asked (lower-case; hostile input: escape when shown).
    pub name: String,
    /// The type asked (`A`, `AAAA`, …): a static string, not an allocation
    /// per logged question.
    pub qtype: Cow<'static, str>,
    /// The response code sent (`NoError`, `NXDomain`, …).
    pub rcode: Cow<'static, str>,
    /// What happened.
    pub outcome: Outcome,
    /// Microseconds from question to answer.
    pub micros: u64,
}

/// A type's name as the log shows it (hickory's mnemonic).
pub fn qtype_text(t: hickory_proto::rr::RecordType) -> Cow<'static, str> {
    Cow::Borrowed(t.into())
}

/// A response code's name as the log shows it (`NoError`, `NXDomain`, …).
pub fn rcode_text(code: hickory_proto::op::ResponseCode) -> Cow<'static, str> {
    use hickory_proto::op::ResponseCode as R;
    Cow::Borrowed(match code {
        R::NoError => "NoError",
        R::FormErr => "FormErr",
        R::ServFail => "ServFail",
        R::NXDomain => "NXDomain",
        R::NotImp => "NotImp",
        R::Refused => "Refused",
        R::BADVERS => "BADVERS",
        other => return Cow::Owned(format!("{other:?}")),
    })
}

/// Per-device counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounts {
    /// Questions asked.
    pub queries: u64,
    /// Of which blocked.
    pub blocked: u64,
}

/// The log.
#[derive(Debug)]
pub struct QueryLog {
    capacity: usize,
    entries: VecDeque<QueryLogEntry>,
}

/// What to read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilter {
    /// Only this device's questions.
    pub device: Option<MacAddr>,
    /// Only blocked questions.
    pub blocked_only: bool,
    /// Only names containing this (lower-case).
    pub search: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl QueryLog {
    /// A log of at most `capacity` entries.
    pub fn new(capacity: usize) -> QueryLog {
        QueryLog {
            capacity,
            entries: VecDeque::new(),
        }
    }

    /// Remembers one question.
    pub fn push(&mut self, entry: QueryLogEntry) {
        if self.capacity == 0 {
            return;
        }
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Entries matching `filter`, newest first.
    pub fn read(&self, filter: &LogFilter) -> Vec<QueryLogEntry> {
        let search = filter.search.as_ref().map(|s| s.to_ascii_lowercase());
        self.entries
            .iter()
            .rev()
            .filter(|e| filter.device.is_none() || e.mac == filter.device)
            .filter(|e| !filter.blocked_only || matches!(e.outcome, Outcome::Blocked { .. }))
            .filter(|e| search.as_ref().is_none_or(|s| e.name.contains(s.as_str())))
            .take(filter.limit.max(1))
            .cloned()
            .collect()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64, mac: u8, blocked: bool) -> QueryLogEntry {
        QueryLogEntry {
            at: i,
            client: IpAddr::from([10, 0, 1, mac]),
            mac: Some(MacAddr([2, 0, 0, 0, 0, mac])),
            name: format!("n{i}.example.test"),
            qtype: "A".into(),
            rcode: "NoError".into(),
            outcome: if blocked {
                Outcome::Blocked { list: "ads".into() }
            } else {
                Outcome::Cached
            },
            micros: 5,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_and_filters() {
        let mut log = QueryLog::new(5);
        for i in 0..12 {
            log.push(entry(i, (i % 2) as u8 + 1, i % 3 == 0));
        }
        assert_eq!(log.len(), 5);
        let all = log.read(&LogFilter {
            limit: 100,
            ..Default::default()
        });
        assert_eq!(all.iter().map(|e| e.at).collect::<Vec<_>>(), vec![11, 10, 9, 8, 7]);
        let blocked = log.read(&LogFilter {
            blocked_only: true,
            limit: 100,
            ..Default::default()
        });
        assert_eq!(blocked.iter().map(|e| e.at).collect::<Vec<_>>(), vec![9]);
        let one = log.read(&LogFilter {
            device: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            search: Some("N10".into()),
            limit: 100,
            ..Default::default()
        });
        assert_eq!(one.iter().map(|e| e.at).collect::<Vec<_>>(), vec![10]);
        assert!(QueryLog::new(0).is_empty());
    }
}
