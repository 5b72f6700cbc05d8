//! mDNS in the event loop: mdns-sd's observations, the capture of who sent
//! which records ([`SenderBook`]), and observations waiting for their device
//! — to hold the address (a lease or a neighbour entry ties it to a MAC) or
//! to be heard announcing it (the capture can be a moment behind mdns-sd).
//!
//! An observation counts only for a device that announced its address and
//! names itself ([`DaemonState::mdns`]). A response giving an address another
//! device holds is counted, and said once an hour per sender as `spoofing`.

use std::collections::HashMap;

use crate::alerts::{Alert, AlertKind};
use crate::config::MacAddr;
use crate::core::{DaemonState, MdnsVerdict};
use crate::discovery::mdns::{
    Browser, BrowserConfig, Claim, Heard, MdnsCounters, MdnsObservation, SenderBook, SenderCapture,
};
use crate::firewall::error_chain;
use crate::inventory::UnixTime;

/// Most observations waiting.
const MAX_WAITING: usize = 256;
/// How long one waits (the device announces again).
const WAIT_SECS: UnixTime = 60;
/// One `spoofing` alert per sender this often.
const SAY_EVERY_SECS: UnixTime = 3600;
/// Apple's sleep proxies (Apple TV, HomePod) answer for sleeping Macs with
/// the Macs' addresses: that is their job, not a forgery.
const SLEEP_PROXY: &str = "_sleep-proxy._udp";

/// One thing mDNS brought.
pub(super) enum MdnsInput {
    /// mdns-sd resolved a service.
    Observation(Box<MdnsObservation>),
    /// The capture read a response and its sender.
    Heard(Heard),
}

struct Waiting {
    since: UnixTime,
    observation: MdnsObservation,
    verdict: MdnsVerdict,
}

/// See the module documentation.
pub(super) struct MdnsIntake {
    browser: Option<Browser>,
    capture: Option<SenderCapture>,
    senders: SenderBook,
    waiting: Vec<Waiting>,
    /// (the inventory's facts, the senders' changes) at the last retry.
    seen: (u64, u64),
    unverified: u64,
    contested: u64,
    foreign_addresses: u64,
    foreign_said: HashMap<MacAddr, UnixTime>,
}

impl MdnsIntake {
    /// Browses and captures on the LAN interfaces (never the WAN). Without
    /// the capture nothing mDNS says counts for any device (it cannot be
    /// tied to its sender): said once, here.
    pub(super) fn start(lan: Vec<String>) -> MdnsIntake {
        let capture = match SenderCapture::start(&lan) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(
                    error = %error_chain(&e),
                    "cannot see who sends mDNS answers; mDNS will not add evidence to any device"
                );
                None
            }
        };
        let browser = match Browser::start(&BrowserConfig::new(lan)) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "mDNS discovery is off");
                None
            }
        };
        MdnsIntake {
            browser,
            capture,
            senders: SenderBook::default(),
            waiting: Vec::new(),
            seen: (0, 0),
            unverified: 0,
            contested: 0,
            foreign_addresses: 0,
            foreign_said: HashMap::new(),
        }
    }

    /// The next input; pending forever when neither part runs.
    /// Cancel-safe: both parts are.
    pub(super) async fn next(&mut self) -> MdnsInput {
        tokio::select! {
            Some(o) = next_observation(&mut self.browser) => MdnsInput::Observation(Box::new(o)),
            Some(h) = next_heard(&mut self.capture) => MdnsInput::Heard(h),
            else => std::future::pending().await,
        }
    }

    /// Takes one input.
    pub(super) fn handle(&mut self, input: MdnsInput, state: &mut DaemonState, now: UnixTime) {
        match input {
            MdnsInput::Observation(observation) => {
                let verdict = state.mdns(&observation, &self.senders, now);
                if verdict != MdnsVerdict::Attached {
                    if self.waiting.len() >= MAX_WAITING {
                        let oldest = self.waiting.remove(0);
                        self.count_given_up(&oldest);
                    }
                    self.waiting.push(Waiting {
                        since: now,
                        observation: *observation,
                        verdict,
                    });
                }
            }
            MdnsInput::Heard(heard) => {
                self.senders.record(heard.sender, &heard.claims, now);
                self.foreign_claims(&heard, state, now);
            }
        }
    }

    /// Observations waiting are tried again when the inventory or the
    /// senders moved since the last try; those waiting too long are given up.
    pub(super) fn retry(&mut self, state: &mut DaemonState, now: UnixTime) {
        if self.waiting.is_empty() {
            return;
        }
        let seen = (state.facts_changed(), self.senders.changes());
        let moved = seen != self.seen;
        self.seen = seen;
        let mut kept = Vec::with_capacity(self.waiting.len());
        for mut w in std::mem::take(&mut self.waiting) {
            if moved {
                w.verdict = state.mdns(&w.observation, &self.senders, now);
                if w.verdict == MdnsVerdict::Attached {
                    continue;
                }
            }
            if now - w.since >= WAIT_SECS {
                self.count_given_up(&w);
            } else {
                kept.push(w);
            }
        }
        self.waiting = kept;
    }

    /// The browser's counters with the sender checks'.
    pub(super) fn counters(&self) -> Option<MdnsCounters> {
        let browser = self.browser.as_ref()?.counters();
        let (responses_captured, captured_malformed) = self.capture.as_ref().map_or((0, 0), SenderCapture::counts);
        Some(MdnsCounters {
            responses_captured,
            captured_malformed,
            unverified: self.unverified,
            contested: self.contested,
            foreign_addresses: self.foreign_addresses,
            ..browser
        })
    }

    fn count_given_up(&mut self, w: &Waiting) {
        match w.verdict {
            MdnsVerdict::Attached | MdnsVerdict::NoHolder => {}
            MdnsVerdict::NotHeard { holder } => {
                self.unverified += 1;
                tracing::debug!(%holder, "an mDNS answer for a device it was not heard from counted for nobody");
            }
            MdnsVerdict::Contested { holder, by } => {
                self.contested += 1;
                tracing::debug!(%holder, %by, "an mDNS answer whose names two devices announced counted for nobody");
            }
        }
    }

    /// A response giving addresses other devices hold: counted; one alert an
    /// hour per sender (none for a sleep proxy).
    fn foreign_claims(&mut self, heard: &Heard, state: &mut DaemonState, now: UnixTime) {
        let foreign: Vec<(std::net::IpAddr, MacAddr)> = heard
            .claims
            .iter()
            .filter_map(|c| match c {
                Claim::Address(ip) => state
                    .address_owner(ip)
                    .filter(|holder| *holder != heard.sender)
                    .map(|holder| (*ip, holder)),
                Claim::Name(_) => None,
            })
            .collect();
        let Some((ip, holder)) = foreign.first().copied() else {
            return;
        };
        self.foreign_addresses += 1;
        tracing::debug!(sender = %heard.sender, %holder, %ip, "mDNS response giving another device's address");
        if state.announces_service(&heard.sender, SLEEP_PROXY)
            || self
                .foreign_said
                .get(&heard.sender)
                .is_some_and(|t| now - t < SAY_EVERY_SECS)
        {
            return;
        }
        if self.foreign_said.len() >= 4096 {
            self.foreign_said.retain(|_, t| now - *t < SAY_EVERY_SECS);
            if self.foreign_said.len() >= 4096 {
                self.foreign_said.clear();
            }
        }
        self.foreign_said.insert(heard.sender, now);
        let name = |m: &MacAddr| {
            state
                .device_name(m)
                .map_or_else(|| m.to_string(), |n| format!("{n} ({m})"))
        };
        let text = format!(
            "{} announced {}'s address {ip} over mDNS. It was not believed: nothing the router knows about {} \
             changed.",
            name(&heard.sender),
            name(&holder),
            state.device_name(&holder).unwrap_or_else(|| holder.to_string()),
        );
        state.raise(Alert::new(now, AlertKind::Spoofing, Some(heard.sender), text));
    }
}

async fn next_observation(b: &mut Option<Browser>) -> Option<MdnsObservation> {
    match b {
        Some(b) => b.next().await,
        None => std::future::pending().await,
    }
}

async fn next_heard(c: &mut Option<SenderCapture>) -> Option<Heard> {
    match c {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}
