//! The edge: an mdns-sd daemon on the LAN interfaces only, browsing the
//! meta-query, the fixed types and every type learned, turning answers into
//! [`MdnsObservation`]s.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::{self, BoxStream, SelectAll};
use futures::StreamExt;
use mdns_sd::{ServiceDaemon, ServiceEvent};

use super::convert::MdnsObservation;
use super::state::{BrowseState, MdnsCounters, Step, DEFAULT_MAX_TYPES, FIXED_TYPES, META_QUERY};
use super::{restricted_daemon, MdnsError};

/// How long to wait before asking a busy mdns-sd daemon again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Events of one subscription, tagged with its type; `None` last, when it ends.
type Events = BoxStream<'static, (String, Option<ServiceEvent>)>;

/// What to browse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserConfig {
    /// The LAN interfaces to query and listen on (`br-lan`, ...). Every other
    /// interface, the WAN and loopback included, is disabled in the daemon.
    pub interfaces: Vec<String>,
    /// Most service types browsed, the fixed ones included.
    pub max_types: usize,
}

impl BrowserConfig {
    /// Browse on `interfaces`, at most [`DEFAULT_MAX_TYPES`] service types.
    pub fn new(interfaces: Vec<String>) -> Self {
        Self {
            interfaces,
            max_types: DEFAULT_MAX_TYPES,
        }
    }
}

/// A running mDNS browser. Dropping it (or [`Browser::shutdown`]) stops the
/// mdns-sd daemon thread.
///
/// The daemon thread is created in the network namespace of the thread that
/// calls [`Browser::start`] and stays there.
pub struct Browser {
    daemon: ServiceDaemon,
    events: SelectAll<Events>,
    state: BrowseState,
    /// Types whose browse found the daemon's command queue full; tried again.
    pending: VecDeque<String>,
    /// The daemon has shut down: nothing more will come.
    stopped: bool,
}

impl Browser {
    /// Starts the daemon restricted to `config.interfaces` and browses the
    /// meta-query and [`FIXED_TYPES`].
    ///
    /// Interfaces that do not exist yet are picked up by mdns-sd when they get
    /// an address (it checks every few seconds); names are only checked for
    /// syntax here.
    pub fn start(config: &BrowserConfig) -> Result<Browser, MdnsError> {
        let daemon = restricted_daemon(&config.interfaces)?;
        let mut browser = Browser {
            daemon,
            events: SelectAll::new(),
            state: BrowseState::new(config.max_types),
            pending: VecDeque::new(),
            stopped: false,
        };
        browser.browse(META_QUERY.to_string());
        for ty in FIXED_TYPES {
            if let Some(ty_domain) = browser.state.admit(ty) {
                browser.browse(ty_domain);
            }
        }
        if browser.stopped {
            return Err(MdnsError::Stopped);
        }
        Ok(browser)
    }

    /// The next observation; `None` once the daemon has stopped.
    ///
    /// Cancel-safe: it only awaits between events, so it can sit in a
    /// `tokio::select!` with other branches. Needs a tokio runtime with time
    /// enabled (for retries when the daemon is busy).
    pub async fn next(&mut self) -> Option<MdnsObservation> {
        loop {
            self.retry_pending();
            if self.stopped || (self.events.is_empty() && self.pending.is_empty()) {
                return None;
            }
            let item = if self.pending.is_empty() {
                self.events.next().await
            } else if self.events.is_empty() {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            } else {
                tokio::select! {
                    item = self.events.next() => item,
                    () = tokio::time::sleep(RETRY_PAUSE) => continue,
                }
            };
            // `None`: every subscription has ended; the checks above decide.
            let Some((ty_domain, event)) = item else {
                continue;
            };
            match self.state.on_event(&ty_domain, event) {
                Step::Observe(observation) => return Some(*observation),
                Step::Browse(ty_domain) => self.browse(ty_domain),
                Step::Nothing => {}
            }
        }
    }

    /// What the browser has done so far.
    pub fn counters(&self) -> MdnsCounters {
        self.state.counters()
    }

    /// Stops the daemon (without waiting for its thread).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Subscribes to `ty_domain`; a busy daemon means later, a stopped one never.
    fn browse(&mut self, ty_domain: String) {
        match self.daemon.browse(&ty_domain) {
            Ok(receiver) => {
                let tag = ty_domain.clone();
                let events = receiver
                    .into_stream()
                    .map(move |event| (tag.clone(), Some(event)))
                    .chain(stream::once(futures::future::ready((ty_domain, None))));
                self.events.push(events.boxed());
            }
            Err(mdns_sd::Error::Again) => self.pending.push_back(ty_domain),
            Err(mdns_sd::Error::DaemonShutdown) => self.stopped = true,
            Err(e) => tracing::warn!(service_type = ?ty_domain, error = %e, "mDNS browse refused"),
        }
    }

    fn retry_pending(&mut self) {
        for _ in 0..self.pending.len() {
            match self.pending.pop_front() {
                Some(ty_domain) => self.browse(ty_domain),
                None => break,
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Err(e) = self.daemon.shutdown() {
            tracing::debug!(error = %e, "mDNS daemon shutdown");
        }
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("subscriptions", &self.events.len())
            .field("pending", &self.pending)
            .field("state", &self.state)
            .field("stopped", &self.stopped)
            .finish()
    }
}
