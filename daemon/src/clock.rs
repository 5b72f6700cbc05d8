//! The wall clock, watched (used by the runtime; the core and the DHCP
//! server only take its verdicts): PURE detection of a jump (the wall clock moving
//! apart from the monotonic one). A router without a clock battery boots at
//! its build date and NTP steps it months forward; a mis-set clock is stepped
//! back. Leases, held addresses and seen times are wall-clock deadlines, so
//! the runtime moves them by the jump (`DaemonState::clock_jumped`,
//! `DhcpIo::clock_jumped`): what each had left stays left.

use std::time::Instant;

use crate::inventory::UnixTime;

/// A difference smaller than this is drift or a late timer, not a jump.
pub const JUMP_SECS: i64 = 30;

/// A deadline further than this after the old clock's "now" was not set on
/// that clock (it came from the store, written by a previous run on a clock
/// that was right): it does not move. Longer than any lease or hold.
pub const DEADLINE_HORIZON_SECS: i64 = 31 * 24 * 3600;

/// Whether a deadline set on the old clock (which read `before` when the
/// jump was seen) moves with the jump.
pub fn deadline_moves(deadline: UnixTime, before: UnixTime) -> bool {
    deadline <= before.saturating_add(DEADLINE_HORIZON_SECS)
}

/// How far the router's local time is ahead of UTC at `at`, in seconds (the C
/// library's answer: `/etc/localtime` or `TZ`, with daylight saving time);
/// 0 when it has none or cannot say.
/// glibc reads the zone once per process (a changed zone needs a restart);
/// musl reads it on each call.
#[allow(unsafe_code)]
// `time_t` is 64 bits here, 32 on some routers' C libraries.
#[allow(irrefutable_let_patterns)]
// The libc crate marks musl's `time_t` deprecated (it is to become 64 bits on
// 32-bit targets, as musl 1.2 has it); `try_from` is right for either width.
#[allow(deprecated)]
pub fn local_utc_offset(at: UnixTime) -> i32 {
    let Ok(t) = libc::time_t::try_from(at) else {
        return 0;
    };
    // SAFETY: `tm` is plain data (integers and, on glibc, a pointer that
    // `localtime_r` sets); zeroed is a valid value for it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `localtime_r` is the thread-safe form: it reads `t` and
    // writes only into `tm`, both alive for the call.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        i32::try_from(tm.tm_gmtoff).unwrap_or(0)
    } else {
        0
    }
}

/// `at` in the router's local time, for people (the CLI).
pub fn local(at: UnixTime) -> bulkhead_web::format::Local {
    bulkhead_web::format::Local {
        at,
        offset_secs: local_utc_offset(at),
    }
}

/// The last reading of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct ClockWatch {
    mono: Instant,
    wall: UnixTime,
    /// When this run started, on the wall clock of that time (moves with
    /// every jump: it is "this run's times start here").
    pub started: UnixTime,
}

impl ClockWatch {
    /// Starts watching with this reading.
    pub fn new(mono: Instant, wall: UnixTime) -> ClockWatch {
        ClockWatch {
            mono,
            wall,
            started: wall,
        }
    }

    /// A new reading; the jump in seconds if the wall clock moved by more
    /// than [`JUMP_SECS`] against the monotonic one since the last reading.
    pub fn check(&mut self, mono: Instant, wall: UnixTime) -> Option<i64> {
        let elapsed = i64::try_from(mono.saturating_duration_since(self.mono).as_secs()).unwrap_or(i64::MAX);
        let expected = self.wall.saturating_add(elapsed);
        let jump = wall.saturating_sub(expected);
        self.mono = mono;
        self.wall = wall;
        if jump.abs() < JUMP_SECS {
            return None;
        }
        self.started = self.started.saturating_add(jump);
        Some(jump)
    }
}

#[cfg(test)]
mod local_time_tests {
    #[test]
    fn the_local_offset_is_a_real_zone_s() {
        // Whatever zone this machine has: within UTC-12..UTC+14, whole
        // quarter hours (every zone in use is).
        let offset = super::local_utc_offset(1_796_596_200);
        assert!((-12 * 3600..=14 * 3600).contains(&offset), "{offset}");
        assert_eq!(offset % 900, 0, "{offset}");
        assert_eq!(
            super::local_utc_offset(i64::MAX),
            0,
            "out of range: no answer, no panic"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn jumps_are_told_drift_and_late_timers_are_not() {
        let t0 = Instant::now();
        let mut c = ClockWatch::new(t0, 1_000);
        // Ten seconds later on both clocks, then a timer that fired late.
        assert_eq!(c.check(t0 + Duration::from_secs(10), 1_010), None);
        assert_eq!(c.check(t0 + Duration::from_secs(70), 1_070), None);
        // A little drift.
        assert_eq!(c.check(t0 + Duration::from_secs(80), 1_082), None);
        // NTP steps months forward.
        let months = 180 * 24 * 3600;
        assert_eq!(c.check(t0 + Duration::from_secs(90), 1_092 + months), Some(months));
        assert_eq!(c.started, 1_000 + months);
        // And back a little later.
        assert_eq!(
            c.check(t0 + Duration::from_secs(100), 1_102 + months - 3600),
            Some(-3600)
        );
        assert_eq!(c.check(t0 + Duration::from_secs(110), 1_112 + months - 3600), None);
        // Deadlines: set on this clock (within the horizon) move; others not.
        assert!(deadline_moves(1_000 + 3600, 1_000));
        assert!(!deadline_moves(1_000 + DEADLINE_HORIZON_SECS + 1, 1_000));
    }
}
