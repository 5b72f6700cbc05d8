//! PURE: the tunnel's connection state machine. Time is an argument
//! (`handle_timeout(now, observed)`), so every transition is tested without
//! clocks or sockets.
//!
//! WireGuard itself has no "connected" state: it is datagrams and handshakes. What
//! a homeowner means by "my VPN is up" is "the last handshake is fresh and the
//! server answers". So the machine reads three observations from the device (last
//! handshake, last packet received, last packet sent) and decides:
//!
//! ```text
//!            start                handshake seen
//!   Down ───────────▶ Connecting ───────────────▶ Up
//!    ▲                  │   ▲                      │ handshake older than REJECT_AFTER,
//!    │ stop (any)       │   │ retry_at             │ or data sent and nothing heard
//!    │                  ▼   │ (backoff)            │ for NO_REPLY_AFTER
//!    └──────────────  Error ◀──── no handshake ────┘──▶ Connecting
//!                             within connect_timeout
//! ```
//!
//! The kill switch does not depend on this machine: selected traffic goes to the
//! tunnel or to the blackhole in every state. The machine only decides what to
//! report and when to re-resolve the endpoint and start a fresh handshake.

use std::time::{Duration, Instant};

use serde::Serialize;

/// WireGuard's REJECT_AFTER_TIME: a session older than this carries no data.
pub const REJECT_AFTER: Duration = Duration::from_secs(180);
/// WireGuard's KEEPALIVE_TIMEOUT + REKEY_TIMEOUT: data sent and nothing received
/// for this long means the peer is not answering (WireGuard starts a new
/// handshake at that point too).
pub const NO_REPLY_AFTER: Duration = Duration::from_secs(15);
/// An idle tunnel's handshake older than this is refreshed (WireGuard's
/// REKEY_AFTER_TIME), so "up" keeps meaning "the server answered recently".
pub const REFRESH_AFTER: Duration = Duration::from_secs(120);

/// Timing of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// No handshake within this long after starting to connect → error.
    pub connect_timeout: Duration,
    /// First retry delay after an error; doubles per attempt.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Minimum time between two handshakes the machine asks for.
    pub handshake_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_timeout: Duration::from_secs(20),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            handshake_interval: Duration::from_secs(5),
        }
    }
}

/// The state's name, for the API, the UI and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// Not running (no tunnel configured, or stopped).
    Down,
    /// Waiting for a handshake.
    Connecting,
    /// A fresh handshake and the server answers.
    Up,
    /// Could not connect; retrying later.
    Error,
}

impl std::fmt::Display for StateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateKind::Down => "down",
            StateKind::Connecting => "connecting",
            StateKind::Up => "up",
            StateKind::Error => "error",
        })
    }
}

/// Why the machine left a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The daemon started the tunnel (start-up, reload).
    Started,
    /// The daemon stopped it (config removed, exit).
    Stopped,
    /// A handshake completed.
    Handshake,
    /// No handshake within the connect timeout.
    NoHandshake,
    /// The last handshake is older than [`REJECT_AFTER`].
    HandshakeExpired,
    /// Data was sent but nothing came back for [`NO_REPLY_AFTER`].
    NoReply,
    /// The endpoint's name did not resolve.
    ResolveFailed(String),
    /// The device failed (socket or TUN error).
    DeviceFailed(String),
    /// The retry delay passed.
    Retry,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Started => f.write_str("started"),
            Reason::Stopped => f.write_str("stopped"),
            Reason::Handshake => f.write_str("handshake completed"),
            Reason::NoHandshake => f.write_str("no handshake"),
            Reason::HandshakeExpired => f.write_str("handshake expired"),
            Reason::NoReply => f.write_str("server stopped answering"),
            Reason::ResolveFailed(e) => write!(f, "endpoint did not resolve: {e}"),
            Reason::DeviceFailed(e) => write!(f, "device failed: {e}"),
            Reason::Retry => f.write_str("retrying"),
        }
    }
}

/// One transition: the web UI and alerts show these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// When.
    pub at: Instant,
    /// From.
    pub from: StateKind,
    /// To.
    pub to: StateKind,
    /// Why.
    pub reason: Reason,
}

/// What the device saw, read at each tick. `None`: never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// The latest completed handshake (any peer).
    pub last_handshake: Option<Instant>,
    /// The latest authenticated packet received.
    pub last_rx: Option<Instant>,
    /// The latest data packet sent.
    pub last_tx: Option<Instant>,
}

/// What the machine asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Resolve the peers' endpoint names again (then report with
    /// [`TunnelMachine::resolve_failed`] on failure).
    ResolveEndpoints,
    /// Send a handshake initiation to every peer now.
    Handshake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Down,
    Connecting { since: Instant },
    Up,
    Error { retry_at: Instant },
}

/// The machine.
#[derive(Debug, Clone)]
pub struct TunnelMachine {
    timing: Timing,
    state: State,
    /// Failed attempts since the last Up (drives the backoff).
    attempts: u32,
    last_handshake_asked: Option<Instant>,
    /// The first tick that saw data sent after the last packet received.
    unanswered_since: Option<Instant>,
    transitions: Vec<Transition>,
}

impl TunnelMachine {
    /// A machine in `Down`.
    pub fn new(timing: Timing) -> Self {
        TunnelMachine {
            timing,
            state: State::Down,
            attempts: 0,
            last_handshake_asked: None,
            unanswered_since: None,
            transitions: Vec::new(),
        }
    }

    /// The current state.
    pub fn kind(&self) -> StateKind {
        match self.state {
            State::Down => StateKind::Down,
            State::Connecting { .. } => StateKind::Connecting,
            State::Up => StateKind::Up,
            State::Error { .. } => StateKind::Error,
        }
    }

    /// Failed attempts since the tunnel was last up.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the next retry happens, in `Error`.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.state {
            State::Error { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    /// Transitions since the last call (oldest first).
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    fn go(&mut self, to: State, reason: Reason, now: Instant) {
        let from = self.kind();
        self.state = to;
        let to = self.kind();
        if from != to {
            self.transitions.push(Transition {
                at: now,
                from,
                to,
                reason,
            });
        }
    }

    fn connect(&mut self, reason: Reason, now: Instant) -> Vec<Action> {
        self.unanswered_since = None;
        self.go(State::Connecting { since: now }, reason, now);
        self.last_handshake_asked = Some(now);
        vec![Action::ResolveEndpoints, Action::Handshake]
    }

    fn fail(&mut self, reason: Reason, now: Instant) {
        let delay = self
            .timing
            .backoff_base
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.timing.backoff_max);
        self.attempts = self.attempts.saturating_add(1);
        self.go(State::Error { retry_at: now + delay }, reason, now);
    }

    /// The device is running: start connecting (from any state but Up).
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Up | State::Connecting { .. } => Vec::new(),
            State::Down | State::Error { .. } => self.connect(Reason::Started, now),
        }
    }

    /// The tunnel is stopped (removed from the config, daemon exit).
    pub fn stop(&mut self, now: Instant) {
        self.attempts = 0;
        self.go(State::Down, Reason::Stopped, now);
    }

    /// The endpoint's name did not resolve.
    pub fn resolve_failed(&mut self, error: String, now: Instant) {
        if matches!(self.state, State::Connecting { .. }) {
            self.fail(Reason::ResolveFailed(error), now);
        }
    }

    /// The device failed.
    pub fn device_failed(&mut self, error: String, now: Instant) {
        if !matches!(self.state, State::Down) {
            self.fail(Reason::DeviceFailed(error), now);
        }
    }

    /// Advances the machine to `now` given what the device saw.
    pub fn handle_timeout(&mut self, now: Instant, seen: Observed) -> Vec<Action> {
        match self.state {
            State::Down => Vec::new(),
            State::Connecting { since } => {
                if seen.last_handshake.is_some_and(|h| h >= since) {
                    self.attempts = 0;
                    self.go(State::Up, Reason::Handshake, now);
                    Vec::new()
                } else if now.saturating_duration_since(since) >= self.timing.connect_timeout {
                    self.fail(Reason::NoHandshake, now);
                    Vec::new()
                } else {
                    self.ask_handshake(now)
                }
            }
            State::Up => {
                let handshake_age = seen.last_handshake.map(|h| now.saturating_duration_since(h));
                if handshake_age.is_none_or(|age| age >= REJECT_AFTER) {
                    return self.connect(Reason::HandshakeExpired, now);
                }
                if self.no_reply(seen, now) {
                    return self.connect(Reason::NoReply, now);
                }
                if handshake_age.is_some_and(|age| age >= REFRESH_AFTER) {
                    return self.ask_handshake(now);
                }
                Vec::new()
            }
            State::Error { retry_at } => {
                if now >= retry_at {
                    self.connect(Reason::Retry, now)
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Data went out after the last thing that came in, and nothing came in for
    /// [`NO_REPLY_AFTER`] since the first tick that noticed.
    fn no_reply(&mut self, seen: Observed, now: Instant) -> bool {
        let unanswered = match (seen.last_tx, seen.last_rx) {
            (Some(tx), Some(rx)) => tx > rx,
            (Some(_), None) => true,
            _ => false,
        };
        if !unanswered {
            self.unanswered_since = None;
            return false;
        }
        let since = *self.unanswered_since.get_or_insert(now);
        now.saturating_duration_since(since) >= NO_REPLY_AFTER
    }

    /// A handshake, at most once per `handshake_interval`.
    fn ask_handshake(&mut self, now: Instant) -> Vec<Action> {
        let due = self
            .last_handshake_asked
            .is_none_or(|t| now.saturating_duration_since(t) >= self.timing.handshake_interval);
        if due {
            self.last_handshake_asked = Some(now);
            vec![Action::Handshake]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn kinds(m: &mut TunnelMachine) -> Vec<(StateKind, StateKind)> {
        m.take_transitions().into_iter().map(|t| (t.from, t.to)).collect()
    }

    #[test]
    fn starts_connects_and_comes_up_on_a_handshake() {
        let t0 = Instant::now();
        let mut m = TunnelMachine::new(Timing::default());
        assert_eq!(m.kind(), StateKind::Down);
        assert_eq!(m.start(t0), vec![Action::ResolveEndpoints, Action::Handshake]);
        assert_eq!(m.kind(), StateKind::Connecting);
        // A handshake from before this attempt does not count.
        let old = Observed {
            last_handshake: t0.checked_sub(secs(1)),
            ..Default::default()
        };
        m.handle_timeout(t0 + secs(1), old);
        assert_eq!(m.kind(), StateKind::Connecting);
        let fresh = Observed {
            last_handshake: Some(t0 + secs(2)),
            last_rx: Some(t0 + secs(2)),
            ..Default::default()
        };
        assert!(m.handle_timeout(t0 + secs(2), fresh).is_empty());
        assert_eq!(m.kind(), StateKind::Up);
        assert_eq!(
            kinds(&mut m),
            vec![
                (StateKind::Down, StateKind::Connecting),
                (StateKind::Connecting, StateKind::Up)
            ]
        );
    }

    #[test]
    fn no_handshake_is_an_error_then_retries_with_growing_backoff() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let mut m = TunnelMachine::new(timing);
        m.start(t0);
        // Handshakes are re-asked at most every handshake_interval while connecting.
        assert_eq!(m.handle_timeout(t0 + secs(1), Observed::default()), vec![]);
        assert_eq!(
            m.handle_timeout(t0 + secs(5), Observed::default()),
            vec![Action::Handshake]
        );
        m.handle_timeout(t0 + timing.connect_timeout, Observed::default());
        assert_eq!(m.kind(), StateKind::Error);
        let first = m.retry_at().expect("retry") - (t0 + timing.connect_timeout);
        assert_eq!(first, timing.backoff_base);
        // Not before retry_at.
        let retry = m.retry_at().expect("retry");
        assert!(m.handle_timeout(retry - secs(1), Observed::default()).is_empty());
        assert_eq!(
            m.handle_timeout(retry, Observed::default()),
            vec![Action::ResolveEndpoints, Action::Handshake]
        );
        assert_eq!(m.kind(), StateKind::Connecting);
        m.handle_timeout(retry + timing.connect_timeout, Observed::default());
        let second = m.retry_at().expect("retry") - (retry + timing.connect_timeout);
        assert_eq!(second, timing.backoff_base * 2);
        // The delay is capped.
        let mut now = retry + timing.connect_timeout;
        for _ in 0..20 {
            now = m.retry_at().expect("retry");
            m.handle_timeout(now, Observed::default());
            now += timing.connect_timeout;
            m.handle_timeout(now, Observed::default());
        }
        assert_eq!(m.retry_at().expect("retry") - now, timing.backoff_max);
        // A handshake resets the backoff.
        let at = m.retry_at().expect("retry");
        m.handle_timeout(at, Observed::default());
        let up = Observed {
            last_handshake: Some(at + secs(1)),
            ..Default::default()
        };
        m.handle_timeout(at + secs(1), up);
        assert_eq!(m.kind(), StateKind::Up);
        assert_eq!(m.attempts(), 0);
    }

    #[test]
    fn up_notices_a_silent_server_and_an_expired_handshake() {
        let t0 = Instant::now();
        let mut m = TunnelMachine::new(Timing::default());
        m.start(t0);
        let seen = Observed {
            last_handshake: Some(t0),
            last_rx: Some(t0),
            last_tx: Some(t0),
        };
        m.handle_timeout(t0, seen);
        assert_eq!(m.kind(), StateKind::Up);
        m.take_transitions();
        // Data goes out, nothing comes back.
        let silent = Observed {
            last_tx: Some(t0 + secs(20)),
            ..seen
        };
        assert!(
            m.handle_timeout(t0 + secs(20), silent).is_empty(),
            "heard recently enough"
        );
        assert_eq!(m.kind(), StateKind::Up);
        assert!(m.handle_timeout(t0 + secs(34), silent).is_empty(), "14 s unanswered");
        let actions = m.handle_timeout(t0 + secs(36), silent);
        assert_eq!(actions, vec![Action::ResolveEndpoints, Action::Handshake]);
        let t = m.take_transitions();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].reason, Reason::NoReply);

        // An idle tunnel: the handshake is refreshed at 120 s and lost at 180 s.
        let mut m = TunnelMachine::new(Timing::default());
        m.start(t0);
        let idle = Observed {
            last_handshake: Some(t0),
            last_rx: Some(t0),
            last_tx: None,
        };
        m.handle_timeout(t0, idle);
        assert!(m.handle_timeout(t0 + secs(60), idle).is_empty());
        assert_eq!(m.handle_timeout(t0 + secs(121), idle), vec![Action::Handshake]);
        assert_eq!(m.kind(), StateKind::Up);
        m.handle_timeout(t0 + secs(180), idle);
        assert_eq!(m.kind(), StateKind::Connecting);
    }

    #[test]
    fn resolve_and_device_failures_are_errors_and_stop_is_down() {
        let t0 = Instant::now();
        let mut m = TunnelMachine::new(Timing::default());
        m.resolve_failed("x".into(), t0);
        assert_eq!(m.kind(), StateKind::Down, "a late resolve answer changes nothing");
        m.start(t0);
        m.resolve_failed("no such host".into(), t0);
        assert_eq!(m.kind(), StateKind::Error);
        let t = m.take_transitions();
        assert_eq!(t[1].reason, Reason::ResolveFailed("no such host".into()));
        m.device_failed("tun gone".into(), t0);
        assert_eq!(m.attempts(), 2);
        m.stop(t0);
        assert_eq!(m.kind(), StateKind::Down);
        assert_eq!(m.attempts(), 0);
        assert!(m.handle_timeout(t0 + secs(1000), Observed::default()).is_empty());
        m.device_failed("late".into(), t0);
        assert_eq!(m.kind(), StateKind::Down);
    }
}
