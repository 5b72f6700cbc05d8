//! The DNS query log as the UI reads it: the filter (the Queries page and
//! `GET /api/dns/log` share it) and what the pages compute from log entries
//! (a device's most asked names).

use std::collections::HashMap;

use serde::Deserialize;

use crate::model::{DnsLogQuery, DnsQueryView};

/// The query string as sent (`/queries?device=..&blocked=..&search=..&limit=..`);
/// every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawDnsLogQuery {
    /// A device's MAC.
    pub device: Option<String>,
    /// `true` (or `1`, `on`): blocked questions only.
    pub blocked: Option<String>,
    /// Text the name must contain.
    pub search: Option<String>,
    /// How many, 1 to [`DnsLogQuery::MAX_LIMIT`].
    pub limit: Option<String>,
}

/// A query value that is not one of the allowed ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsLogQueryError {
    /// `device` is not a MAC address.
    #[error("device must be a MAC address (aa:bb:cc:dd:ee:ff)")]
    Device,
    /// `blocked` is not a boolean.
    #[error("blocked must be true or false")]
    Blocked,
    /// `search` is too long.
    #[error("search has at most 255 bytes")]
    Search,
    /// `limit` is out of range.
    #[error("limit must be a number from 1 to 1000")]
    Limit,
}

/// A value that was sent and is not blank.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

fn parse_limit(s: &str) -> Option<usize> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=DnsLogQuery::MAX_LIMIT).contains(n))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl DnsLogQuery {
    /// The API's parse: blank values mean "any", others must be valid.
    pub fn parse(raw: &RawDnsLogQuery) -> Result<DnsLogQuery, DnsLogQueryError> {
        let search = given(&raw.search);
        if search.is_some_and(|s| s.len() > DnsLogQuery::MAX_SEARCH_BYTES) {
            return Err(DnsLogQueryError::Search);
        }
        Ok(DnsLogQuery {
            device: given(&raw.device)
                .map(|m| crate::pages::normalize_mac(m).ok_or(DnsLogQueryError::Device))
                .transpose()?,
            blocked_only: given(&raw.blocked)
                .map(|b| parse_bool(b).ok_or(DnsLogQueryError::Blocked))
                .transpose()?
                .unwrap_or(false),
            search: search.map(str::to_owned),
            limit: given(&raw.limit)
                .map(|l| parse_limit(l).ok_or(DnsLogQueryError::Limit))
                .transpose()?
                .unwrap_or(DnsLogQuery::DEFAULT_LIMIT),
        })
    }

    /// Like [`DnsLogQuery::parse`], for the page: values that are not valid
    /// are dropped (a limit out of range is brought into it, a long search
    /// cut), so the page shows the log rather than an error.
    pub fn parse_lenient(raw: &RawDnsLogQuery) -> DnsLogQuery {
        DnsLogQuery {
            device: given(&raw.device).and_then(crate::pages::normalize_mac),
            blocked_only: given(&raw.blocked).and_then(parse_bool).unwrap_or(false),
            search: given(&raw.search)
                .map(|s| truncate(s, DnsLogQuery::MAX_SEARCH_BYTES).trim().to_owned())
                .filter(|s| !s.is_empty()),
            limit: given(&raw.limit)
                .and_then(|l| l.parse::<u64>().ok())
                .map_or(DnsLogQuery::DEFAULT_LIMIT, |n| {
                    usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .clamp(1, DnsLogQuery::MAX_LIMIT)
                }),
        }
    }

    /// Whether anything but the limit narrows the log.
    pub fn is_filtered(&self) -> bool {
        self.device.is_some() || self.blocked_only || self.search.is_some()
    }

    /// Whether `q` passes the filter (the limit aside): what the daemon's log
    /// does, for backends that filter themselves.
    pub fn matches(&self, q: &DnsQueryView) -> bool {
        self.device.as_ref().is_none_or(|d| q.mac.as_ref() == Some(d))
            && (!self.blocked_only || q.outcome.is_blocked())
            && self
                .search
                .as_ref()
                .is_none_or(|s| q.name.to_ascii_lowercase().contains(&s.to_ascii_lowercase()))
    }
}

/// The `n` names asked most often among `entries`, with how often: most first,
/// then by name.
pub fn top_names(entries: &[DnsQueryView], n: usize) -> Vec<(&str, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in entries {
        *counts.entry(e.name.as_str()).or_default() += 1;
    }
    let mut top: Vec<(&str, usize)> = counts.into_iter().collect();
    top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    top.truncate(n);
    top
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DnsOutcome;

    fn raw(device: &str, blocked: &str, search: &str, limit: &str) -> RawDnsLogQuery {
        let v = |s: &str| Some(s.to_string());
        RawDnsLogQuery {
            device: v(device),
            blocked: v(blocked),
            search: v(search),
            limit: v(limit),
        }
    }

    #[test]
    fn the_api_parse_is_strict_and_blank_means_any() {
        assert_eq!(
            DnsLogQuery::parse(&RawDnsLogQuery::default()),
            Ok(DnsLogQuery::default())
        );
        assert_eq!(DnsLogQuery::parse(&raw("", "", " ", "")), Ok(DnsLogQuery::default()));
        assert_eq!(
            DnsLogQuery::parse(&raw("02-00-00-00-01-0A", "true", " Example ", "1000")),
            Ok(DnsLogQuery {
                device: Some("02:00:00:00:01:0a".into()),
                blocked_only: true,
                search: Some("Example".into()),
                limit: 1000,
            })
        );
        assert_eq!(DnsLogQuery::parse(&raw("x", "", "", "")), Err(DnsLogQueryError::Device));
        assert_eq!(
            DnsLogQuery::parse(&raw("", "maybe", "", "")),
            Err(DnsLogQueryError::Blocked)
        );
        for limit in ["0", "1001", "-1", "ten", "99999999999999999999999"] {
            assert_eq!(
                DnsLogQuery::parse(&raw("", "", "", limit)),
                Err(DnsLogQueryError::Limit),
                "{limit}"
            );
        }
        let long = "a".repeat(256);
        assert_eq!(
            DnsLogQuery::parse(&raw("", "", &long, "")),
            Err(DnsLogQueryError::Search)
        );
    }

    #[test]
    fn the_page_parse_drops_or_clamps() {
        let q = DnsLogQuery::parse_lenient(&raw("not-a-mac", "maybe", &"界".repeat(100), "5000"));
        assert_eq!(q.device, None);
        assert!(!q.blocked_only);
        assert_eq!(
            q.search.as_deref(),
            Some("界".repeat(85).as_str()),
            "cut on a character"
        );
        assert_eq!(q.limit, DnsLogQuery::MAX_LIMIT);
        assert_eq!(DnsLogQuery::parse_lenient(&raw("", "on", "", "0")).limit, 1);
        assert!(DnsLogQuery::parse_lenient(&raw("", "on", "", "")).blocked_only);
        assert_eq!(
            DnsLogQuery::parse_lenient(&raw("", "", "", "x")).limit,
            DnsLogQuery::DEFAULT_LIMIT
        );
        assert!(!DnsLogQuery::default().is_filtered());
    }

    fn entry(name: &str, mac: Option<&str>, outcome: DnsOutcome) -> DnsQueryView {
        DnsQueryView {
            at: 1,
            client: "192.168.1.10".into(),
            mac: mac.map(str::to_string),
            name: name.into(),
            qtype: "A".into(),
            rcode: "NoError".into(),
            outcome,
            micros: 1,
        }
    }

    #[test]
    fn filters_and_top_names() {
        let a = Some("02:00:00:00:00:01");
        let entries = vec![
            entry("b.example", a, DnsOutcome::Cached),
            entry("a.example", a, DnsOutcome::Cached),
            entry("b.example", None, DnsOutcome::Blocked { list: "ads".into() }),
            entry("c.example", a, DnsOutcome::Local),
            entry("a.example", a, DnsOutcome::Failed),
        ];
        assert_eq!(
            top_names(&entries, 2),
            vec![("a.example", 2), ("b.example", 2)],
            "most first, ties by name"
        );
        assert_eq!(top_names(&entries, 10).len(), 3);
        let q = DnsLogQuery {
            device: a.map(str::to_string),
            search: Some("B.EX".into()),
            ..DnsLogQuery::default()
        };
        assert_eq!(entries.iter().filter(|e| q.matches(e)).count(), 1);
        let blocked = DnsLogQuery {
            blocked_only: true,
            ..DnsLogQuery::default()
        };
        assert_eq!(entries.iter().filter(|e| blocked.matches(e)).count(), 1);
    }
}
