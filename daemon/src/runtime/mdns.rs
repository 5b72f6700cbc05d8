//! mDNS in the event loop: mdns-sd browses (its queries make devices
//! answer), the capture reads the answers with their sender, and evidence
//! counts for the device that sent it ([`DaemonState::mdns`]). mdns-sd's own
//! resolved services are only counted: it merges every sender's records, so
//! they cannot be tied to a device. Evidence from a MAC no device has yet
//! waits (a lease or a neighbour entry may bring the device).
//!
//! A response giving an address another device holds is counted, and said
//! as `spoofing` once an hour per device spoken for (so senders with made-up
//! MACs cannot multiply the alerts).

use std::collections::HashMap;

use crate::alerts::{Alert, AlertKind};
use crate::classify::Evidence;
use crate::config::MacAddr;
use crate::core::DaemonState;
use crate::discovery::mdns::{Browser, BrowserConfig, Heard, MdnsCounters, SenderCapture};
use crate::firewall::error_chain;
use crate::inventory::UnixTime;

/// Most senders whose evidence waits for their device.
const MAX_WAITING: usize = 256;
/// How long it waits (the device announces again).
const WAIT_SECS: UnixTime = 60;
/// One `spoofing` alert per sender this often.
const SAY_EVERY_SECS: UnixTime = 3600;
/// Apple's sleep proxies (Apple TV, HomePod) answer for sleeping Macs with
/// the Macs' addresses: that is their job, not a forgery.
const SLEEP_PROXY: &str = "_sleep-proxy._udp";

/// One thing mDNS brought.
pub(super) enum MdnsInput {
    /// mdns-sd resolved a service (counted by the browser; not evidence).
    Resolved,
    /// The capture read a response and its sender.
    Heard(Box<Heard>),
}

/// See the module documentation.
pub(super) struct MdnsIntake {
    lan: Vec<String>,
    browser: Option<Browser>,
    capture: SenderCapture,
    /// Sender → (since, what it said meanwhile).
    waiting: HashMap<MacAddr, (UnixTime, Evidence)>,
    /// The inventory's facts at the last retry.
    facts_seen: u64,
    unattributed: u64,
    foreign_addresses: u64,
    /// Device spoken for → when that was last said.
    foreign_said: HashMap<MacAddr, UnixTime>,
}

impl MdnsIntake {
    /// Browses and captures on the LAN interfaces (never the WAN).
    pub(super) fn start(lan: Vec<String>) -> MdnsIntake {
        let capture = SenderCapture::start(&lan);
        let browser = match Browser::start(&BrowserConfig::new(lan.clone())) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "mDNS discovery is off");
                None
            }
        };
        MdnsIntake {
            lan,
            browser,
            capture,
            waiting: HashMap::new(),
            facts_seen: 0,
            unattributed: 0,
            foreign_addresses: 0,
            foreign_said: HashMap::new(),
        }
    }

    /// The links changed (a bridge re-created, an interface that was missing
    /// at start): capture afresh on the LAN interfaces as they are now.
    pub(super) fn links_changed(&mut self) {
        self.capture = SenderCapture::start(&self.lan);
    }

    /// The next input; pending forever when neither part runs.
    /// Cancel-safe: both parts are.
    pub(super) async fn next(&mut self) -> MdnsInput {
        tokio::select! {
            Some(_) = next_resolved(&mut self.browser) => MdnsInput::Resolved,
            Some(h) = self.capture.next() => MdnsInput::Heard(Box::new(h)),
            else => std::future::pending().await,
        }
    }

    /// Takes one input.
    pub(super) fn handle(&mut self, input: MdnsInput, state: &mut DaemonState, now: UnixTime) {
        let MdnsInput::Heard(heard) = input else { return };
        self.foreign_addresses(&heard, state, now);
        let evidence = &heard.facts.evidence;
        if evidence.is_empty() || state.mdns(heard.sender, evidence, now) {
            return;
        }
        if !self.waiting.contains_key(&heard.sender) && self.waiting.len() >= MAX_WAITING {
            let oldest = self
                .waiting
                .iter()
                .min_by_key(|(_, (since, _))| *since)
                .map(|(m, _)| *m);
            if let Some(m) = oldest {
                self.waiting.remove(&m);
                self.unattributed += 1;
            }
        }
        self.waiting
            .entry(heard.sender)
            .or_insert_with(|| (now, Evidence::default()))
            .1
            .merge(evidence);
    }

    /// Evidence waiting for its device is tried again when the inventory
    /// learned something since the last try; what waited too long is
    /// given up.
    pub(super) fn retry(&mut self, state: &mut DaemonState, now: UnixTime) {
        if self.waiting.is_empty() {
            return;
        }
        let moved = state.facts_changed() != self.facts_seen;
        self.facts_seen = state.facts_changed();
        let mut given_up = 0;
        self.waiting.retain(|mac, (since, evidence)| {
            if moved && state.mdns(*mac, evidence, now) {
                return false;
            }
            let keep = now - *since < WAIT_SECS;
            given_up += u64::from(!keep);
            keep
        });
        self.unattributed += given_up;
    }

    /// The browser's counters with the capture's.
    pub(super) fn counters(&self) -> Option<MdnsCounters> {
        let browser = self.browser.as_ref()?.counters();
        let (responses_captured, captured_malformed) = self.capture.counts();
        Some(MdnsCounters {
            responses_captured,
            captured_malformed,
            unattributed: self.unattributed,
            foreign_addresses: self.foreign_addresses,
            ..browser
        })
    }

    /// A response giving addresses other devices hold: counted; one alert an
    /// hour per device spoken for (none when the sender announced itself as
    /// a sleep proxy).
    fn foreign_addresses(&mut self, heard: &Heard, state: &mut DaemonState, now: UnixTime) {
        let foreign = heard.facts.addresses.iter().find_map(|ip| {
            state
                .address_owner(ip)
                .filter(|holder| *holder != heard.sender)
                .map(|holder| (*ip, holder))
        });
        let Some((ip, holder)) = foreign else { return };
        self.foreign_addresses += 1;
        tracing::debug!(sender = %heard.sender, %holder, %ip, "mDNS response giving another device's address");
        if state.announces_service(&heard.sender, SLEEP_PROXY)
            || self.foreign_said.get(&holder).is_some_and(|t| now - t < SAY_EVERY_SECS)
        {
            return;
        }
        if self.foreign_said.len() >= 4096 {
            self.foreign_said.retain(|_, t| now - *t < SAY_EVERY_SECS);
            if self.foreign_said.len() >= 4096 {
                self.foreign_said.clear();
            }
        }
        self.foreign_said.insert(holder, now);
        let name = |m: &MacAddr| {
            state
                .device_name(m)
                .map_or_else(|| m.to_string(), |n| format!("{n} ({m})"))
        };
        let text = format!(
            "{} announced {}'s address {ip} over mDNS. It was not believed: what it announces counts only for \
             itself, and nothing the router knows about {} changed.",
            name(&heard.sender),
            name(&holder),
            state.device_name(&holder).unwrap_or_else(|| holder.to_string()),
        );
        state.raise(Alert::new(now, AlertKind::Spoofing, Some(heard.sender), text));
    }
}

async fn next_resolved(b: &mut Option<Browser>) -> Option<()> {
    match b {
        Some(b) => b.next().await.map(|_| ()),
        None => std::future::pending().await,
    }
}
