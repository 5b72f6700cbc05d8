//! PURE: which of the tunnel's state changes the homeowner hears about. A
//! tunnel that drops and is back within [`DOWN_GRACE`] (a lost handshake
//! retried, a roaming server) is not news; one that stays down is, once, and
//! so is its return. Selected traffic is blocked all the while either way
//! (the kill switch does not wait for an alert). Time is an argument.

use std::time::{Duration, Instant};

use super::state::{Reason, StateKind, Transition};
use crate::alerts::AlertKind;

/// How long the tunnel may be down before the homeowner is told.
pub const DOWN_GRACE: Duration = Duration::from_secs(60);

/// See the module documentation.
#[derive(Debug, Default)]
pub struct TunnelAlerting {
    /// Down since, and why (`None`: up, or never up).
    down_since: Option<(Instant, String)>,
    told_down: bool,
    ever_up: bool,
}

impl TunnelAlerting {
    /// The transitions since the last call (possibly none: a timer tick) and
    /// the connect attempts so far; the alerts to raise.
    pub fn on(&mut self, transitions: &[Transition], attempts: u32, now: Instant) -> Vec<(AlertKind, String)> {
        let mut out = Vec::new();
        for t in transitions {
            match (t.from, t.to) {
                (_, StateKind::Up) => {
                    if self.told_down {
                        let secs = self
                            .down_since
                            .as_ref()
                            .map_or(0, |(at, _)| now.duration_since(*at).as_secs());
                        out.push((
                            AlertKind::TunnelUp,
                            format!("VPN tunnel is back up after {secs} s down"),
                        ));
                    } else if !self.ever_up {
                        out.push((AlertKind::TunnelUp, "VPN tunnel is up".to_string()));
                    }
                    self.ever_up = true;
                    self.down_since = None;
                    self.told_down = false;
                }
                // The homeowner (or a reload) stopped it: not news.
                (_, _) if t.reason == Reason::Stopped => {
                    self.down_since = None;
                    self.told_down = false;
                    self.ever_up = false;
                }
                (StateKind::Up, _) => self.down_since = Some((t.at, t.reason.to_string())),
                (_, StateKind::Error) if attempts <= 1 && !self.ever_up => out.push((
                    AlertKind::TunnelError,
                    format!(
                        "VPN tunnel could not connect ({}); retrying, selected traffic is blocked meanwhile",
                        t.reason
                    ),
                )),
                _ => {}
            }
        }
        if let Some((since, reason)) = &self.down_since {
            if !self.told_down && now.duration_since(*since) >= DOWN_GRACE {
                self.told_down = true;
                out.push((
                    AlertKind::TunnelDown,
                    format!(
                        "VPN tunnel has been down for {} s ({reason}); selected traffic is blocked until it is back",
                        now.duration_since(*since).as_secs()
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(at: Instant, from: StateKind, to: StateKind, reason: Reason) -> Transition {
        Transition { at, from, to, reason }
    }

    #[test]
    fn a_short_drop_is_not_news_a_long_one_is_told_once_and_its_return_too() {
        let t0 = Instant::now();
        let mut a = TunnelAlerting::default();
        let up = a.on(&[t(t0, StateKind::Connecting, StateKind::Up, Reason::Handshake)], 1, t0);
        assert_eq!(up.len(), 1, "the first up is news");
        // A blip: down, back within the grace.
        let s = t0 + Duration::from_secs(100);
        assert!(a
            .on(&[t(s, StateKind::Up, StateKind::Connecting, Reason::NoReply)], 1, s)
            .is_empty());
        assert!(a.on(&[], 1, s + Duration::from_secs(30)).is_empty());
        let back = s + Duration::from_secs(40);
        assert!(a
            .on(
                &[t(back, StateKind::Connecting, StateKind::Up, Reason::Handshake)],
                1,
                back
            )
            .is_empty());
        // A long drop: told once, after the grace, then its return.
        let d = t0 + Duration::from_secs(300);
        assert!(a
            .on(&[t(d, StateKind::Up, StateKind::Error, Reason::NoHandshake)], 3, d)
            .is_empty());
        assert!(a.on(&[], 3, d + DOWN_GRACE - Duration::from_secs(1)).is_empty());
        let told = a.on(&[], 3, d + DOWN_GRACE);
        assert!(
            matches!(&told[..], [(AlertKind::TunnelDown, m)] if m.contains("no handshake")),
            "{told:?}"
        );
        assert!(a.on(&[], 4, d + DOWN_GRACE * 3).is_empty(), "once");
        let r = d + DOWN_GRACE * 4;
        let back = a.on(&[t(r, StateKind::Error, StateKind::Up, Reason::Handshake)], 4, r);
        assert!(
            matches!(&back[..], [(AlertKind::TunnelUp, m)] if m.contains("back up after 240 s")),
            "{back:?}"
        );
    }

    #[test]
    fn stopping_it_is_not_news_and_a_first_failure_is() {
        let t0 = Instant::now();
        let mut a = TunnelAlerting::default();
        let failed = a.on(
            &[t(t0, StateKind::Connecting, StateKind::Error, Reason::NoHandshake)],
            1,
            t0,
        );
        assert!(matches!(&failed[..], [(AlertKind::TunnelError, _)]));
        a.on(&[t(t0, StateKind::Error, StateKind::Up, Reason::Handshake)], 2, t0);
        let s = t0 + Duration::from_secs(10);
        assert!(a
            .on(&[t(s, StateKind::Up, StateKind::Down, Reason::Stopped)], 2, s)
            .is_empty());
        assert!(a.on(&[], 2, s + DOWN_GRACE * 2).is_empty());
    }
}
