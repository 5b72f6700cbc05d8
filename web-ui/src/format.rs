//! Numbers and times as people read them: "3 min ago", "2024-05-01 12:34 UTC",
//! "1.2 MiB". Display types, so the pages format without allocating.

use std::fmt;

use crate::model::UnixTime;

/// Seconds since the epoch, now.
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long before `now` a moment was.
#[derive(Debug, Clone, Copy)]
pub struct Ago {
    /// The moment.
    pub at: UnixTime,
    /// Now.
    pub now: UnixTime,
}

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at <= 0 {
            return f.write_str("never");
        }
        let s = self.now.saturating_sub(self.at);
        if s < 0 {
            return f.write_str("just now");
        }
        match s {
            0..10 => f.write_str("just now"),
            10..60 => write!(f, "{s} s ago"),
            60..3600 => write!(f, "{} min ago", s / 60),
            3600..86_400 => write!(f, "{} h ago", s / 3600),
            86_400..172_800 => f.write_str("yesterday"),
            _ => write!(f, "{} days ago", s / 86_400),
        }
    }
}

/// A moment in UTC, `2024-05-01 12:34 UTC`.
#[derive(Debug, Clone, Copy)]
pub struct Utc(pub UnixTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
    }
}

/// A time in a zone `offset_secs` ahead of UTC (the router's local time, for
/// the CLI): "2026-12-06 23:30 +01:00"; "UTC" when the offset is 0.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    /// When.
    pub at: UnixTime,
    /// The zone's offset from UTC then, in seconds.
    pub offset_secs: i32,
}

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset_secs == 0 {
            return Utc(self.at).fmt(f);
        }
        let t = self.at + i64::from(self.offset_secs);
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let sign = if self.offset_secs < 0 { '-' } else { '+' };
        let off = self.offset_secs.unsigned_abs();
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02} {sign}{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            off / 3600,
            off % 3600 / 60
        )
    }
}

/// An RFC 3339 timestamp for `<time datetime>`.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub UnixTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01),
/// after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A byte count, binary units.
#[derive(Debug, Clone, Copy)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        // Precision is not the point here; f64 holds any u64 closely enough.
        #[allow(clippy::cast_precision_loss)]
        let mut v = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while v >= 1024.0 && unit < UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_reads_naturally() {
        let now = 1_700_000_000;
        let ago = |s: i64| Ago { at: now - s, now }.to_string();
        assert_eq!(ago(3), "just now");
        assert_eq!(ago(-30), "just now");
        assert_eq!(ago(42), "42 s ago");
        assert_eq!(ago(125), "2 min ago");
        assert_eq!(ago(7200), "2 h ago");
        assert_eq!(ago(90_000), "yesterday");
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(Ago { at: 0, now }.to_string(), "never");
    }

    #[test]
    fn dates() {
        assert_eq!(Utc(0).to_string(), "1970-01-01 00:00 UTC");
        assert_eq!(Utc(951_782_400).to_string(), "2000-02-29 00:00 UTC");
        assert_eq!(Utc(1_700_000_000).to_string(), "2023-11-14 22:13 UTC");
        assert_eq!(Rfc3339(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(Utc(-86_400).to_string(), "1969-12-31 00:00 UTC");
        let local = |at, offset_secs| Local { at, offset_secs }.to_string();
        assert_eq!(local(1_700_000_000, 0), "2023-11-14 22:13 UTC");
        assert_eq!(local(1_700_000_000, 3600), "2023-11-14 23:13 +01:00");
        assert_eq!(
            local(1_700_000_000, 5 * 3600 + 1800),
            "2023-11-15 03:43 +05:30",
            "across midnight"
        );
        assert_eq!(local(1_700_000_000, -8 * 3600), "2023-11-14 14:13 -08:00");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(5 * 1024 * 1024 * 1024).to_string(), "5.0 GiB");
        assert_eq!(Bytes(u64::MAX).to_string(), "16.0 EiB");
    }
}
