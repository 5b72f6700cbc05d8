//! A device's traffic as a small bar chart, drawn on the server as SVG (no
//! script, no library): one slot per minute (the last hour) or per hour (the
//! last day); what it received grows up from the middle line, what it sent
//! grows down, both on one scale. PURE: points + now → bars; the template
//! writes them out.

use crate::format::Bytes;
use crate::model::{TrafficPoint, UnixTime};

/// The chart's width (its `viewBox`).
pub const WIDTH: u32 = 800;
/// Its height.
pub const HEIGHT: u32 = 140;
/// Room on the left for the scale's label.
const LEFT: u32 = 80;
/// Room above and below the bars.
const PAD: u32 = 6;

/// One slot with traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Width.
    pub w: u32,
    /// The received bar's top (it ends at the middle line).
    pub up_y: u32,
    /// Its height.
    pub up_h: u32,
    /// The sent bar's height (it starts at the middle line).
    pub down_h: u32,
    /// The slot's start.
    pub at: UnixTime,
    /// Bytes received in it.
    pub received: u64,
    /// Bytes sent in it.
    pub sent: u64,
}

/// The chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The bars, oldest first; slots without traffic have none.
    pub bars: Vec<Bar>,
    /// The middle line's y.
    pub mid: u32,
    /// What a full bar stands for, e.g. "1.2 MiB".
    pub scale: String,
    /// Bytes received over the chart's span.
    pub received: u64,
    /// Bytes sent over the chart's span.
    pub sent: u64,
}

impl Chart {
    /// Where the bars start.
    pub fn left(&self) -> u32 {
        LEFT
    }

    /// The span's right edge.
    pub fn right(&self) -> u32 {
        WIDTH
    }

    /// The sent bar's top (the middle line).
    pub fn down_y(&self) -> u32 {
        self.mid
    }

    /// Whether anything moved in the span.
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    /// The received total, readable.
    pub fn received_text(&self) -> String {
        Bytes(self.received).to_string()
    }

    /// The sent total, readable.
    pub fn sent_text(&self) -> String {
        Bytes(self.sent).to_string()
    }
}

/// The last `slots` slots of `slot_secs` before `now` (the current slot
/// last, partly filled).
pub fn chart(points: &[TrafficPoint], now: UnixTime, slot_secs: i64, slots: usize) -> Chart {
    let slot_secs = slot_secs.max(1);
    let current = now - now.rem_euclid(slot_secs);
    let first = current - slot_secs * (slots as i64 - 1);
    let mut sums = vec![(0u64, 0u64); slots];
    for p in points.iter().filter(|p| p.at >= first && p.at <= current) {
        let i = ((p.at - first) / slot_secs) as usize;
        if let Some(s) = sums.get_mut(i) {
            s.0 = s.0.saturating_add(p.received);
            s.1 = s.1.saturating_add(p.sent);
        }
    }
    let max = sums.iter().map(|(r, s)| (*r).max(*s)).max().unwrap_or(0).max(1);
    let mid = HEIGHT / 2;
    let half = mid - PAD;
    let w = (WIDTH - LEFT) / slots.max(1) as u32;
    let height = |v: u64| -> u32 {
        if v == 0 {
            return 0;
        }
        // At least a pixel: a slot with traffic never looks empty.
        let h = (u128::from(v) * u128::from(half) / u128::from(max)) as u32;
        h.clamp(1, half)
    };
    let bars = sums
        .iter()
        .enumerate()
        .filter(|(_, (r, s))| r + s > 0)
        .map(|(i, (r, s))| {
            let up_h = height(*r);
            Bar {
                x: LEFT + i as u32 * w,
                w: w.saturating_sub(1).max(1),
                up_y: mid - up_h,
                up_h,
                down_h: height(*s),
                at: first + i as i64 * slot_secs,
                received: *r,
                sent: *s,
            }
        })
        .collect();
    Chart {
        bars,
        mid,
        scale: Bytes(max).to_string(),
        received: sums.iter().map(|(r, _)| r).sum(),
        sent: sums.iter().map(|(_, s)| s).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(at: i64, received: u64, sent: u64) -> TrafficPoint {
        TrafficPoint { at, received, sent }
    }

    #[test]
    fn bars_sit_in_their_minutes_on_one_scale() {
        let now = 10_000 * 60 + 30;
        let minute = now - 30;
        let points = [
            p(minute - 59 * 60, 100, 0),
            p(minute - 60 * 60, 999, 999), // before the hour: not drawn
            p(minute - 60, 400, 50),
            p(minute, 200, 400),
        ];
        let c = chart(&points, now, 60, 60);
        assert_eq!(c.bars.len(), 3);
        assert_eq!((c.received, c.sent), (700, 450));
        assert_eq!(c.bars[0].at, minute - 59 * 60);
        assert_eq!(c.bars[0].x, LEFT);
        let last = c.bars.last().expect("bar");
        assert_eq!(last.at, minute);
        assert!(last.x + last.w <= WIDTH);
        // The biggest value fills half the height; the others by ratio.
        let full = HEIGHT / 2 - PAD;
        assert_eq!(c.bars[1].up_h, full);
        assert_eq!(c.bars[2].down_h, full);
        assert_eq!(c.bars[0].up_h, full / 4);
        assert_eq!(c.bars[0].down_h, 0);
        assert_eq!(c.bars[1].up_y + c.bars[1].up_h, c.mid);
        assert_eq!(c.scale, "400 B");
    }

    #[test]
    fn a_trickle_next_to_a_flood_still_shows_and_nothing_is_empty() {
        let c = chart(&[p(0, 1, 0), p(60, 10_000_000_000, 0)], 60, 60, 60);
        assert_eq!(c.bars[0].up_h, 1);
        assert!(chart(&[], 60, 60, 60).is_empty());
    }
}
