//! The core: one coordinator, [`DaemonState`], between what discovery and the
//! homeowner report and what the kernel must hold. It does no socket I/O and
//! never reads the clock itself (time is an argument, or its injected wall
//! clock for what happens outside any timed event), so it is tested with fake
//! backends and explicit time. The runtime ([`crate::runtime`]) owns the loop and
//! calls in; this module never imports it.
//!
//! The walk of one fact: a discovery source's [`Event`] → [`DaemonState::observe`]
//! (`discovery.rs`) → [`DaemonState::apply_event`] (inventory + store) →
//! `policy::device_entry` for the devices it touches → the firewall's
//! [`Enforcer`] (one delta, or the full replace) → alerts.
//!
//! Files: `discovery.rs` (discovery's facts in), `dhcp.rs` (what the DHCP
//! server decided, and observer mode), `requests.rs` (the control protocol: CLI and web UI),
//! `views.rs` (what the CLI and UI are shown), `credentials.rs` (the web UI's
//! password hash and setup token), `services.rs` (the seat for services: DNS,
//! the share proxy, detection).

mod alerting;
mod credentials;
mod dhcp;
mod discovery;
pub(crate) mod ports;
mod presence;
mod requests;
mod services;
mod sharing;
mod views;

use std::net::IpAddr;

pub use discovery::MAX_TRACKED_DEVICES;
pub use presence::PresenceFlip;
pub use services::{
    DeviceSnapshot, HomeownerCommand, InventorySnapshot, RouterSnapshot, ServiceError, ServiceReply, ServiceRequest,
};
pub use views::ONLINE_SECS;

use crate::alerts::{Alert, AlertKind};
use crate::config::{Config, MacAddr};
use crate::firewall::{
    error_chain, ApplyOutcome, ConntrackFlusher, Enforcer, FirewallError, MembershipChange, NftBackend,
};
use crate::inventory::{Change, Event, Inventory, UnixTime};
use crate::policy::{desired_membership, desired_ruleset_for, device_entry, DeviceEntry};
use crate::store::{Store, StoreError};
use credentials::WebCredentials;
use dhcp::DhcpBook;
use discovery::DiscoveryBook;

/// How often alerts are looked at for deletion by age.
const ALERT_PRUNE_EVERY_SECS: UnixTime = 3600;

/// How often stale private MACs are looked for.
const STALE_CHECK_EVERY_SECS: UnixTime = 3600;

/// The coordinator. See the module documentation.
pub struct DaemonState {
    /// The config in force.
    pub config: Config,
    /// What the kernel's links are now (existing bridges' ports, which
    /// links exist, flowtables), found by the net module.
    pub links: crate::policy::LinkFacts,
    store: Store,
    inventory: Inventory,
    /// The one entry into the firewall: what is applied, counters, failures.
    enforcer: Enforcer,
    /// Pool alerts and observer mode's bookkeeping.
    dhcp: DhcpBook,
    /// The web UI's password hash and one-time setup token.
    credentials: WebCredentials,
    /// Identity suggestions, devices awaiting their "new device" alert, limits.
    discovery: DiscoveryBook,
    /// Who is online, as of the last timer pass.
    presence: presence::Presence,
    /// How many events changed facts (or the config changed): a generation
    /// number for cheap "anything new?" checks.
    facts_changed: u64,
    /// Alerts raised, acknowledged or pruned since start (the web UI's live
    /// updates watch it).
    alerts_changed: u64,
    /// When old alerts were last deleted.
    alerts_pruned_at: Option<UnixTime>,
    /// When stale private MACs were last looked for.
    stale_checked_at: Option<UnixTime>,
    /// The alert stream not yet taken, and recent alerts for dedup.
    alert_book: alerting::AlertBook,
    /// Where the bridges learned each MAC (port binding).
    ports: ports::PortBook,
    /// The wall clock, for what happens outside any timed event (a firewall
    /// apply at start or on reload); tests replace it.
    wall_clock: fn() -> UnixTime,
}

impl DaemonState {
    /// State from a config and an opened store (the inventory is loaded from it).
    pub fn new(
        config: Config,
        store: Store,
        nft: Box<dyn NftBackend + Send>,
        conntrack: Box<dyn ConntrackFlusher + Send>,
    ) -> Result<Self, StoreError> {
        let inventory = Inventory::from_devices(store.load_devices()?);
        let discovery = DiscoveryBook::load(&store)?;
        let credentials = WebCredentials::load(&store)?;
        let mut state = DaemonState {
            config,
            links: crate::policy::LinkFacts::default(),
            store,
            inventory,
            enforcer: Enforcer::new(nft, conntrack),
            dhcp: DhcpBook::default(),
            credentials,
            discovery,
            presence: presence::Presence::default(),
            facts_changed: 0,
            alerts_changed: 0,
            alerts_pruned_at: None,
            stale_checked_at: None,
            alert_book: alerting::AlertBook::default(),
            ports: ports::PortBook::default(),
            wall_clock: crate::inventory::unix_now,
        };
        state.merge_homeowner_shares();
        Ok(state)
    }

    /// The firewall's owner, to read (what it applied, its counters).
    pub fn enforcer(&self) -> &crate::firewall::Enforcer {
        &self.enforcer
    }

    /// At start, before the first [`reconcile`](Self::reconcile): keeps what
    /// the kernel's domain sets hold from the previous run for `secs` more
    /// (the resolver's new answers extend what is still in use).
    pub fn adopt_previous_domain_sets(&mut self, now: UnixTime, secs: u32) -> usize {
        let sets = self.config.policy.tunnel.domain_sets.clone();
        self.enforcer
            .adopt_kernel_domain_sets(&sets, now.saturating_add(i64::from(secs)))
    }

    /// The sets' contents now: the inventory's, and the router's link-local
    /// addresses the kernel has.
    fn membership(&self) -> crate::policy::Membership {
        membership_of(&self.config, &self.inventory, &self.links)
    }

    /// Makes the kernel match config + the whole inventory. On failure the
    /// kernel keeps its previous state and the next reconcile retries.
    pub fn reconcile(&mut self) -> Result<ApplyOutcome, FirewallError> {
        let ruleset = desired_ruleset_for(&self.config, &self.links);
        let membership = self.membership();
        let inventory = &self.inventory;
        let addresses_of = |mac: &MacAddr| -> Vec<IpAddr> {
            inventory
                .get(mac)
                .map(|d| d.addresses.iter().copied().collect())
                .unwrap_or_default()
        };
        let result = self.enforcer.enforce(
            ruleset,
            MembershipChange::Whole {
                membership: Box::new(membership),
                addresses_of: &addresses_of,
            },
        );
        self.alert_new_failure();
        result
    }

    /// Enforces a change to a few devices in time proportional to them, not to
    /// the inventory: their old entries out, their new ones in.
    fn reconcile_entries(
        &mut self,
        before: &[DeviceEntry],
        after: &[DeviceEntry],
    ) -> Result<ApplyOutcome, FirewallError> {
        let ruleset = desired_ruleset_for(&self.config, &self.links);
        let (config, inventory, links) = (&self.config, &self.inventory, &self.links);
        let whole = || membership_of(config, inventory, links);
        let result = self.enforcer.enforce(
            ruleset,
            MembershipChange::Entries {
                before,
                after,
                whole: &whole,
            },
        );
        self.alert_new_failure();
        result
    }

    /// A run of firewall failures began: one alert for the whole run.
    fn alert_new_failure(&mut self) {
        let Some(error) = self.enforcer.take_new_failure() else {
            return;
        };
        let at = (self.wall_clock)();
        self.raise(Alert::new(
            at,
            AlertKind::ApplyFailed,
            None,
            format!(
                "The firewall refused a change; the rules in force before it stay in force. \
                 Bulkhead retries with the next change. Error: {error}"
            ),
        ));
    }

    /// Replaces the config (already validated) and reconciles. Settings that only
    /// take effect at start (store, control socket, web listeners) keep their
    /// running values, with a warning. The DHCP server's leases that no longer
    /// fit are the runtime's to end ([`DaemonState::lease_event`]).
    pub fn replace_config(&mut self, mut config: Config) -> Result<ApplyOutcome, FirewallError> {
        let running = &self.config;
        if config.state_dir != running.state_dir
            || config.control_socket != running.control_socket
            || config.web != running.web
        {
            tracing::warn!(
                "state_dir, control_socket and web.listen change only on restart; keeping the running values"
            );
            config.state_dir = running.state_dir.clone();
            config.control_socket = running.control_socket.clone();
            config.web = running.web.clone();
        }
        let old = std::mem::replace(&mut self.config, config);
        self.merge_homeowner_shares();
        match self.reconcile() {
            Ok(o) => {
                // Zones and placements may differ: services and live pages look again.
                self.facts_changed += 1;
                self.inventory.touch_all();
                Ok(o)
            }
            Err(e @ FirewallError::Nft { .. }) => {
                // nft refused the document: the kernel still holds the old rules;
                // keep the old config with them.
                self.config = old;
                Err(e)
            }
            // Applied but not verified: the kernel holds (most of) the new
            // config, and so does `self.config`: services look again.
            Err(e) => {
                self.facts_changed += 1;
                self.inventory.touch_all();
                Err(e)
            }
        }
    }

    /// One event into the inventory and the store. A write the store
    /// refuses (disk full, a damaged file) does not undo the event: the
    /// inventory has it and the caller enforces it; the device is kept for
    /// [`DaemonState::retry_unsaved`] and the homeowner is told once per run
    /// of failures. What the homeowner decided is never dropped for want of
    /// disk.
    pub fn apply_event(&mut self, event: &Event, now: UnixTime) -> Change {
        let mac = event.mac();
        let change = self.inventory.apply(event, now);
        if change == Change::Facts {
            // A device met just now (by discovery or the homeowner) is bound
            // to the port the bridge learned it on, with its first entry.
            self.port_for_new_device(mac);
        }
        let written = match change {
            Change::Facts => {
                self.facts_changed += 1;
                // The homeowner's decisions are forced to disk; what discovery
                // learns is written at once but not fsync'd (it is re-learned).
                let decision = matches!(
                    event,
                    Event::SetZone { .. }
                        | Event::Rename { .. }
                        | Event::ManualAdd { .. }
                        | Event::Block { .. }
                        | Event::Watch { .. }
                        | Event::TunnelChoice { .. }
                        | Event::Merge { .. }
                );
                // Saving an address takes it from whoever held it on disk too
                // (the store keeps one row per address), as the inventory did.
                if let Event::Forget { mac } = event {
                    self.store.forget_device(*mac)
                } else if let (Event::Merge { from, .. }, Some(d)) = (event, self.inventory.get(&mac)) {
                    self.store.save_device(d).and_then(|()| self.store.forget_device(*from))
                } else if let Some(d) = self.inventory.get(&mac) {
                    if decision {
                        self.store.save_device(d)
                    } else {
                        self.store.save_discovered(d)
                    }
                } else {
                    Ok(())
                }
            }
            Change::SeenOnly => {
                self.store.note_seen(mac, now);
                Ok(())
            }
            Change::None => Ok(()),
        };
        if let Err(e) = written {
            self.store.mark_unsaved(mac);
            self.store_failed(&e, now);
        }
        change
    }

    /// A write failed: one alert per run of failures (the alert's dedup
    /// window counts the rest).
    fn store_failed(&mut self, e: &StoreError, now: UnixTime) {
        tracing::error!(error = %error_chain(e), "could not write the device database");
        let waiting = self.store.unsaved_count();
        self.raise(Alert::new(
            now,
            AlertKind::StoreFailed,
            None,
            format!(
                "Bulkhead cannot write its device database ({}). Your decisions are in force and kept in \
                 memory ({waiting} device(s) waiting); they are written as soon as it can. Is the disk full?",
                error_chain(e)
            ),
        ));
    }

    /// On the timer: writes what could not be written before.
    pub fn retry_unsaved(&mut self) {
        if self.store.unsaved_count() == 0 {
            return;
        }
        let inventory = &self.inventory;
        match self.store.retry_unsaved(|m| inventory.get(m)) {
            Ok(n) => tracing::info!(
                devices = n,
                "the device database is writable again; everything is saved"
            ),
            Err(e) => {
                let left = self.store.unsaved_count();
                tracing::warn!(error = %error_chain(&e), left, "the device database still cannot be written");
            }
        }
    }

    /// A decision (CLI, web UI): persist it, enforce just the devices it touches,
    /// answer with `done` or why not.
    fn change(&mut self, event: &Event, now: UnixTime, done: String) -> crate::control::Response {
        use crate::control::Response;
        let affected = self.affected_by(event);
        let before = self.entries(&affected);
        self.apply_event(event, now);
        let after = self.entries(&affected);
        let done = if self.store.is_unsaved(&event.mac()) {
            format!("{done} (in force, but not saved yet: the device database cannot be written; kept in memory)")
        } else {
            done
        };
        match self.reconcile_entries(&before, &after) {
            Ok(_) => {
                self.settle_alerts(event);
                Response::Done { message: done }
            }
            Err(e) => Response::Error {
                message: format!("saved, but the firewall refused it: {}", error_chain(&e)),
            },
        }
    }

    /// Acknowledging happens by acting: a homeowner's decision about a device
    /// settles the open alerts that asked for it (a zone chosen answers "it
    /// waits for approval"; a block answers what it was caught doing; a link
    /// answers the identity suggestion).
    fn settle_alerts(&mut self, event: &Event) {
        use crate::alerts::AlertKind as K;
        let kinds: Vec<K> = match event {
            Event::SetZone { .. } => K::ALL.into_iter().filter(|k| k.asks_for_placement()).collect(),
            Event::Block { blocked: true, .. } => K::ALL
                .into_iter()
                .filter(|k| k.asks_for_placement() || k.catches_device())
                .collect(),
            Event::Merge { .. } => vec![K::IdentitySuggestion, K::NewDeviceQuarantined],
            _ => return,
        };
        let (mac, kinds) = (event.mac(), &kinds[..]);
        match self.store.acknowledge_alerts_about(mac, kinds) {
            Ok(0) => {}
            Ok(_) => self.alerts_changed += 1,
            Err(e) => tracing::warn!(error = %error_chain(&e), "could not acknowledge the device's alerts"),
        }
    }

    /// The devices whose set entries an event can change: its own, and for a new
    /// address, the device that held it until now.
    fn affected_by(&self, event: &Event) -> Vec<MacAddr> {
        let mut macs = vec![event.mac()];
        if let Some(owner) = event.claimed_address().and_then(|ip| self.inventory.owner_of(&ip)) {
            macs.push(owner);
        }
        // A merge retires the old MAC: its entries leave the sets.
        if let Event::Merge { from, .. } = event {
            macs.push(*from);
        }
        macs.sort();
        macs.dedup();
        macs
    }

    fn entries(&self, macs: &[MacAddr]) -> Vec<DeviceEntry> {
        macs.iter()
            .filter_map(|m| self.inventory.get(m))
            .map(|d| device_entry(&self.config, d))
            .collect()
    }

    /// Stores an alert (logging it either way) and publishes it to the
    /// alert stream ([`DaemonState::take_published_alerts`]); returns its id
    /// (0 when the store refused it). The same kind for the same device
    /// within its dedup window is counted on the first one instead (a storm
    /// is one alert with a count) and not published again.
    pub fn raise(&mut self, mut alert: Alert) -> i64 {
        // The stored sentence (what notifiers send) names devices as they are
        // called now; readers render it again with the names of their time.
        alert.render(&|m| self.device_name(m));
        if let alerting::Raise::Again { id } = self.alert_book.classify(&alert) {
            tracing::debug!(kind = alert.kind.as_str(), id, "alert again");
            match self.store.repeat_alert(id, alert.at, &alert.message) {
                Ok(true) => {
                    self.alerts_changed += 1;
                    return id;
                }
                // Pruned meanwhile: raise it anew.
                Ok(false) => {}
                Err(e) => tracing::error!(error = %error_chain(&e), "could not count an alert"),
            }
        }
        tracing::info!(kind = alert.kind.as_str(), mac = ?alert.mac.map(|m| m.to_string()), message = %alert.message.escape_debug(), "alert");
        match self.store.add_alert(&alert) {
            Ok(id) => alert.id = id,
            Err(e) => tracing::error!(error = %error_chain(&e), "could not store an alert"),
        }
        self.alerts_changed += 1;
        let id = alert.id;
        self.alert_book.raised(alert);
        id
    }

    /// Rewrites a stored alert's text (not published again: notifiers heard
    /// of it when it was raised).
    fn update_alert(&mut self, id: i64, message: &str) {
        match self.store.update_alert_message(id, message) {
            Ok(true) => self.alerts_changed += 1,
            Ok(false) => {}
            Err(e) => tracing::error!(error = %error_chain(&e), "could not update an alert"),
        }
    }

    /// The alerts raised since the last call, oldest first (the runtime hands
    /// them to the notifiers after each loop turn).
    pub fn take_published_alerts(&mut self) -> Vec<Alert> {
        self.alert_book.take_published()
    }

    /// Periodic work: expired domain-set addresses, who is online, batched store writes, alerts older than
    /// [`crate::store::ALERT_MAX_AGE_SECS`] (looked for hourly). The DHCP
    /// server's timers are the runtime's.
    pub fn handle_timeout(&mut self, now: UnixTime) {
        self.enforcer.expire(now);
        let flips = self.presence.pass(&mut self.inventory, now);
        self.on_presence_flips(&flips, now);
        self.announce_held_joins(now);
        if self
            .alerts_pruned_at
            .is_none_or(|at| now - at >= ALERT_PRUNE_EVERY_SECS)
        {
            self.alerts_pruned_at = Some(now);
            match self.store.prune_alerts(now) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(alerts = n, "deleted old alerts");
                    self.alerts_changed += 1;
                }
                Err(e) => tracing::warn!(error = %error_chain(&e), "could not delete old alerts"),
            }
        }
        if self
            .stale_checked_at
            .is_none_or(|at| now - at >= STALE_CHECK_EVERY_SECS)
        {
            self.stale_checked_at = Some(now);
            self.forget_stale_private_macs(now);
        }
        if let Err(e) = self.store.flush_if_due(now) {
            tracing::warn!(error = %error_chain(&e), "could not write last-seen times");
        }
        self.retry_unsaved();
    }

    /// Private (randomised) MACs that nobody decided anything about — no
    /// name, zone, block, watch or tunnel choice of the homeowner's — and not
    /// seen for `devices.forget_private_after_days` are forgotten, with one
    /// summary alert. A phone picks a new private MAC per network and now and
    /// then; without this each would stay a device forever. Devices the
    /// homeowner decided about are never forgotten this way.
    pub fn forget_stale_private_macs(&mut self, now: UnixTime) -> usize {
        let days = self.config.devices.forget_private_after_days;
        if days == 0 {
            return 0;
        }
        let cutoff = now - i64::from(days) * 86_400;
        let stale: Vec<MacAddr> = self
            .inventory
            .devices()
            .filter(|d| {
                crate::discovery::oui::is_randomized(&d.mac)
                    && d.last_seen < cutoff
                    && d.name.is_none()
                    && d.user_zone.is_none()
                    && !d.blocked
                    && !d.watched
                    && d.tunnel_choice.is_none()
            })
            .map(|d| d.mac)
            .collect();
        if stale.is_empty() {
            return 0;
        }
        // All of them in one firewall change.
        let before = self.entries(&stale);
        for mac in &stale {
            self.apply_event(&Event::Forget { mac: *mac }, now);
        }
        if let Err(e) = self.reconcile_entries(&before, &[]) {
            tracing::error!(error = %error_chain(&e), "forgetting stale private MACs: the firewall refused it");
        }
        let shown: Vec<String> = stale.iter().take(10).map(MacAddr::to_string).collect();
        let more = stale.len().saturating_sub(shown.len());
        self.raise(Alert::new(
            now,
            AlertKind::DevicesForgotten,
            None,
            format!(
                "Forgot {} private address(es) not seen for {days} days, none named or decided about by you \
                 (phones and tablets pick new ones): {}{}",
                stale.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
        stale.len()
    }

    /// The wall clock jumped by `delta` seconds (seen by the runtime's
    /// [`crate::runtime`] clock watch; `since`: when this run started, on the
    /// old clock): held domain-set addresses, this run's seen times and the
    /// alerts' dedup windows keep their place, so the jump neither expires
    /// nor prolongs anything. (The DHCP server's leases are the runtime's.)
    pub fn clock_jumped(&mut self, since: UnixTime, delta: i64) {
        tracing::warn!(
            delta_secs = delta,
            "the wall clock jumped; deadlines keep the time they had left"
        );
        let before = (self.wall_clock)().saturating_sub(delta);
        let moves = |t: UnixTime| crate::clock::deadline_moves(t, before);
        self.enforcer.shift_deadlines(delta, &moves);
        self.inventory.shift_times(since, before, delta);
        self.alert_book.shift_times(delta);
    }

    /// Before exiting: write what is buffered. Rules stay in the kernel.
    pub fn shutdown(&mut self, now: UnixTime) {
        if let Err(e) = self.store.flush(now) {
            tracing::warn!(error = %error_chain(&e), "could not write last-seen times at shutdown");
        }
    }

    /// Generation of the inventory's facts: grows whenever an event (or a
    /// config reload) changed them.
    pub fn facts_changed(&self) -> u64 {
        self.facts_changed
    }

    /// Generation of the alerts: grows whenever one is raised, acknowledged or
    /// pruned.
    pub fn alerts_changed(&self) -> u64 {
        self.alerts_changed
    }

    /// The one-time setup token, while no web UI password is set.
    pub fn setup_token(&self) -> Option<&str> {
        self.credentials.setup_token()
    }

    /// Whether a device with this MAC is known.
    pub fn knows(&self, mac: &MacAddr) -> bool {
        self.inventory.get(mac).is_some()
    }
}

/// [`desired_membership`] with the router's link-local addresses from `links`.
fn membership_of(
    config: &Config,
    inventory: &Inventory,
    links: &crate::policy::LinkFacts,
) -> crate::policy::Membership {
    let mut m = desired_membership(config, inventory);
    m.router_link_local.clone_from(&links.router_link_local);
    m
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod netns_test;
