//! The one entry into the firewall (mullvad's `apply_policy`): the [`Enforcer`]
//! owns the nft and conntrack backends, what was applied, the counters and the
//! failure state. [`Enforcer::enforce`] is the only path that changes our tables'
//! structure or membership: it tries a set-element delta and falls back to the
//! full replace, then cuts the connections the change forbids.
//!
//! It also holds the elements services put in named sets for a while (the
//! tunnel's domain sets, filled from DNS answers): [`Enforcer::hold`] adds them
//! with a deadline, [`Enforcer::expire`] deletes what is due (time is an
//! argument), and every full replace re-creates those sets holding them, in
//! the same transaction.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::boot::BootRecord;
use super::render;
use super::{
    diff_membership, error_chain, full_replace, Applied, ApplyOutcome, ConntrackFlusher, Elements, FirewallError,
    MembershipDelta, NftBackend, Pinhole, SetOwner,
};
use crate::config::{DomainSetId, MacAddr, ZoneId};
use crate::inventory::UnixTime;
use crate::policy::{DesiredRuleset, DeviceEntry, Membership, ZoneMembers};

/// At most this many addresses held across all domain sets (a resolver flooded
/// with answers must not grow the sets without bound).
pub const MAX_HELD_ADDRESSES: usize = 16_384;
/// At most this many pinholes held across all consuming zones (a flood of
/// announcements must not grow the sets without bound).
pub const MAX_HELD_PINHOLES: usize = 4_096;

/// What changed in the membership since the last enforce.
pub enum MembershipChange<'a> {
    /// The whole membership, recomputed from the inventory. `addresses_of`
    /// names a device's addresses (to cut the flows of devices whose way out
    /// changed).
    Whole {
        /// What the sets must hold.
        membership: Box<Membership>,
        /// A device's addresses, from the inventory.
        addresses_of: &'a dyn Fn(&MacAddr) -> Vec<IpAddr>,
    },
    /// A few devices changed: their entries before and after. Enforced in time
    /// proportional to them, not to the inventory; `whole` computes the whole
    /// membership only if the tables must be replaced.
    Entries {
        /// The devices' entries before the change.
        before: &'a [DeviceEntry],
        /// Their entries after it.
        after: &'a [DeviceEntry],
        /// The whole membership, for a full replace.
        whole: &'a dyn Fn() -> Membership,
    },
}

impl MembershipChange<'_> {
    /// The addresses of these devices, before the change.
    fn addresses_of(&self, macs: &BTreeSet<MacAddr>) -> Vec<IpAddr> {
        match self {
            MembershipChange::Whole { addresses_of, .. } => macs.iter().flat_map(addresses_of).collect(),
            MembershipChange::Entries { before, .. } => before
                .iter()
                .filter(|e| macs.contains(&e.mac))
                .flat_map(|e| e.addresses.iter().copied())
                .collect(),
        }
    }
}

/// Counters and the last error, for `bulkhead status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnforceStats {
    /// Full table replaces that went through.
    pub full_applies: u64,
    /// Set-element deltas that went through.
    pub delta_applies: u64,
    /// The last failure (apply, verify or conntrack), cleared by a success.
    pub last_error: Option<String>,
}

/// Refusals of [`Enforcer::hold`].
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// The set is not one the ruleset in force has.
    #[error("`{0}` is not a domain set of the tunnel policy (tunnel.domain_sets)")]
    UnknownSet(DomainSetId),
    /// The lifetime is zero.
    #[error("ttl_secs must be at least 1")]
    NoLifetime,
    /// Holding them would pass [`MAX_HELD_ADDRESSES`].
    #[error("domain sets are full ({MAX_HELD_ADDRESSES} addresses)")]
    Full,
    /// No service is shared to this zone in the ruleset in force.
    #[error("nothing is shared to zone `{0}` ([[share]] to)")]
    NotShared(ZoneId),
    /// Holding them would pass [`MAX_HELD_PINHOLES`].
    #[error("pinhole sets are full ({MAX_HELD_PINHOLES} pinholes)")]
    PinholesFull,
    /// nft refused the elements.
    #[error("nft refused the held set change")]
    Nft(#[source] nftables::helper::NftablesError),
}

/// What [`Enforcer::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Addresses given.
    pub given: usize,
    /// Of them, not held before (added to the kernel's sets).
    pub fresh: usize,
}

/// The firewall's owner. See the module documentation.
pub struct Enforcer {
    nft: Box<dyn NftBackend + Send>,
    conntrack: Box<dyn ConntrackFlusher + Send>,
    applied: Option<Applied>,
    stats: EnforceStats,
    /// A change failed for good and was reported; cleared by the next success,
    /// so a run of failures is reported once.
    failing: bool,
    /// The error that began the current run of failures, until the caller
    /// takes it (to raise one alert).
    new_failure: Option<String>,
    /// Cut connections without waiting (discovery's changes must not stall the
    /// event loop on the conntrack table's dump).
    background_cuts: bool,
    /// Addresses held in domain sets, with when they leave.
    held: BTreeMap<(DomainSetId, IpAddr), UnixTime>,
    /// Pinholes held for the share proxy, by consuming zone, with when they
    /// close.
    pinholes: BTreeMap<(ZoneId, Pinhole), UnixTime>,
    /// The flowtable nft refused (a device gone before the link watch said
    /// so): left out while the wanted one is this same one.
    offload_refused: Option<crate::policy::FlowOffload>,
    /// A cut failed while flows were offloaded: the flowtable stays off for
    /// the rest of the run (only the cut ends an offloaded flow).
    offload_off: bool,
    /// Addresses whose cut failed in this enforce, to settle at its end.
    failed_cut: Option<Vec<IpAddr>>,
}

impl Enforcer {
    /// An enforcer that knows nothing of what the kernel holds: its first
    /// enforce replaces the tables.
    pub fn new(nft: Box<dyn NftBackend + Send>, conntrack: Box<dyn ConntrackFlusher + Send>) -> Self {
        Enforcer {
            nft,
            conntrack,
            applied: None,
            stats: EnforceStats::default(),
            failing: false,
            new_failure: None,
            background_cuts: false,
            held: BTreeMap::new(),
            pinholes: BTreeMap::new(),
            offload_refused: None,
            offload_off: false,
            failed_cut: None,
        }
    }

    /// What the kernel holds, as far as we applied it (None: unknown).
    pub fn applied(&self) -> Option<&Applied> {
        self.applied.as_ref()
    }

    /// Tests: believe the kernel holds `applied`.
    #[cfg(test)]
    pub(crate) fn assume_applied(&mut self, applied: Applied) {
        self.applied = Some(applied);
    }

    /// Forgets what was applied: the next enforce replaces the tables.
    pub fn forget_applied(&mut self) {
        self.applied = None;
    }

    /// Counters and the last error.
    pub fn stats(&self) -> &EnforceStats {
        &self.stats
    }

    /// A failure on the way to the kernel outside the firewall (the store refused
    /// what discovery found): shown as the last error until the next success.
    pub fn report_error(&mut self, msg: String) {
        self.stats.last_error = Some(msg);
    }

    /// Whether connection cuts are left to a background thread.
    pub fn set_background_cuts(&mut self, on: bool) {
        self.background_cuts = on;
    }

    /// The error that began a run of failures, once: the caller raises one alert.
    pub fn take_new_failure(&mut self) -> Option<String> {
        self.new_failure.take()
    }

    /// Makes the kernel hold `ruleset` with the membership `change` describes.
    ///
    /// Order matters: (1) with the structure unchanged, a set-element delta; a
    /// delta the kernel refuses (someone edited our sets by hand) falls through
    /// to (2) the full replace of both tables in one transaction, verified by
    /// reading back, which is always correct; (3) only after the kernel took
    /// the change are the connections it forbids cut (cut earlier, they could
    /// re-establish under the old rules). The held domain-set addresses are
    /// part of the replace document: the sets are never empty in between.
    /// On failure the kernel keeps its previous state (nft transactions are
    /// atomic) and so does `applied`, so the next enforce retries from the
    /// truth; a failed read-back forgets `applied`, so the next one replaces.
    pub fn enforce(
        &mut self,
        ruleset: DesiredRuleset,
        change: MembershipChange<'_>,
    ) -> Result<ApplyOutcome, FirewallError> {
        let outcome = self.enforce_once(ruleset, change);
        self.settle_failed_cut();
        outcome
    }

    /// A cut failed while the tables held a flowtable: the flows it was
    /// meant to end may still be offloaded, and nothing else ends them (a
    /// kernel that refuses to delete offloaded entries, EBUSY before the
    /// ctnetlink backports of June 2023). The tables are replaced without
    /// the flowtable — which lets go of every offloaded flow, so the rules
    /// see their next packets — the cut is tried again, and the flowtable
    /// stays off for the rest of the run.
    fn settle_failed_cut(&mut self) {
        let Some(addrs) = self.failed_cut.take() else { return };
        let Some(applied) = self.applied.as_ref().filter(|a| a.ruleset.offload.is_some()) else {
            return;
        };
        self.offload_off = true;
        let ruleset = DesiredRuleset {
            offload: None,
            ..applied.ruleset.clone()
        };
        let membership = applied.membership.clone();
        let msg = "a connection cut failed while flows were offloaded: flow offload is off until Bulkhead restarts";
        tracing::error!("{msg}");
        self.stats.last_error = Some(msg.to_string());
        match full_replace(self.nft.as_ref(), &ruleset, &membership, &self.holdings()) {
            Ok(()) => {
                self.stats.full_applies += 1;
                self.applied = Some(Applied { ruleset, membership });
            }
            Err(e) => {
                // The kernel kept the tables with the flowtable; the next
                // enforce replaces them (the flowtable is off for good now).
                tracing::error!(error = %error_chain(&e), "could not take the flowtable away");
                self.applied = None;
            }
        }
        if let Err(e) = self.conntrack.flush(&addrs) {
            tracing::error!(error = %e, "the connections could not be cut again");
        }
    }

    fn enforce_once(
        &mut self,
        mut ruleset: DesiredRuleset,
        mut change: MembershipChange<'_>,
    ) -> Result<ApplyOutcome, FirewallError> {
        if self.offload_off || (ruleset.offload.is_some() && ruleset.offload == self.offload_refused) {
            ruleset.offload = None;
        }
        if let Some(outcome) = self.try_delta(&ruleset, &mut change) {
            return Ok(outcome);
        }
        // Owned once: what the kernel is given is what `applied` keeps.
        let membership = match &mut change {
            MembershipChange::Whole { membership, .. } => std::mem::take(&mut **membership),
            MembershipChange::Entries { whole, .. } => whole(),
        };
        // Held addresses of sets the new ruleset still has go into the document.
        let sets = ruleset
            .tunnel
            .as_ref()
            .map(|t| t.domain_sets.clone())
            .unwrap_or_default();
        self.held.retain(|(set, _), _| sets.contains(set));
        self.pinholes.retain(|(zone, _), _| ruleset.share_to.contains(zone));
        let held = self.holdings();
        let mut result = full_replace(self.nft.as_ref(), &ruleset, &membership, &held);
        if matches!(result, Err(FirewallError::Nft { what: "full", .. })) && ruleset.offload.is_some() {
            // A decision must never wait for the speed-up: the same tables
            // without the flowtable (one of its devices may have gone before
            // the link watch said so; the next link change tries again).
            if let Err(e) = &result {
                tracing::warn!(error = %error_chain(e), "the firewall with a flowtable was refused; applying it without");
            }
            self.offload_refused = ruleset.offload.take();
            result = full_replace(self.nft.as_ref(), &ruleset, &membership, &held);
        }
        if let Err(e) = result {
            let msg = error_chain(&e);
            if matches!(e, FirewallError::Verify(_)) {
                // The kernel took the document but does not hold what we meant:
                // we no longer know what it holds, so the next change must
                // replace everything rather than patch with a delta.
                self.applied = None;
                tracing::error!(error = %msg, "firewall read-back differs; the next change replaces the tables");
            } else {
                tracing::error!(error = %msg, "firewall apply failed; the previous rules stay in force");
            }
            self.failed(&msg);
            self.stats.last_error = Some(msg);
            return Err(e);
        }
        self.stats.full_applies += 1;
        self.succeeded();
        if let Some(old) = self.applied.take() {
            // A structural change (a zone lost the internet or a reach) can
            // forbid connections of devices that did not move: cut them all.
            // The flowtable decides nothing: a change of it alone cuts nobody.
            let everyone = !old.ruleset.decides_as(&ruleset);
            let rerouted = change.addresses_of(&rerouted_macs(&old.membership, &membership));
            self.cut(addresses_to_cut(&old.membership, &membership, everyone, &rerouted));
        }
        self.applied = Some(Applied { ruleset, membership });
        Ok(ApplyOutcome::FullReplace)
    }

    /// The held domain-set addresses and pinholes, by set.
    fn holdings(&self) -> render::Holdings {
        let mut held = render::Holdings::default();
        for (set, ip) in self.held.keys() {
            held.domains.entry(set.clone()).or_default().push(*ip);
        }
        for (zone, p) in self.pinholes.keys() {
            held.pinholes.entry(zone.clone()).or_default().push(*p);
        }
        held
    }

    /// What `bulkhead restore` puts back at boot: the document that replaces
    /// both tables with what the kernel holds now, contents and held
    /// addresses included (None before the first apply).
    pub fn boot_record(&self, now: UnixTime) -> Option<BootRecord> {
        let applied = self.applied.as_ref()?;
        // Without the flowtable: at boot its devices may not exist yet (the
        // kernel would refuse the whole record), and the restore is there to
        // keep devices out, not to speed them up.
        let ruleset = DesiredRuleset {
            offload: None,
            ..applied.ruleset.clone()
        };
        // Without the port bindings: they follow the bridges' forwarding
        // tables (every 300 s of a device's silence), so the record would be
        // rewritten all day, and at boot they are stale (the daemon binds
        // again from the tables).
        let membership = Membership {
            port_bindings: Default::default(),
            ..applied.membership.clone()
        };
        let doc = render::full_document_holding(&ruleset, &membership, &self.holdings());
        Some(BootRecord::new(doc, applied.ruleset.tunnel.is_some(), now))
    }

    /// Step (1) of [`enforce`](Self::enforce): Some(outcome) when a delta (or
    /// nothing) was enough, None when the tables must be replaced.
    /// A whole membership that went in as a delta is moved into `applied`.
    fn try_delta(&mut self, ruleset: &DesiredRuleset, change: &mut MembershipChange<'_>) -> Option<ApplyOutcome> {
        let applied = self.applied.as_ref().filter(|a| &a.ruleset == ruleset)?;
        let (old, new): (Cow<'_, Membership>, Cow<'_, Membership>) = match &*change {
            MembershipChange::Whole { membership, .. } => {
                (Cow::Borrowed(&applied.membership), Cow::Borrowed(membership))
            }
            MembershipChange::Entries { before, after, .. } => (
                Cow::Owned(Membership::of_entries(&applied.membership, before)),
                Cow::Owned(Membership::of_entries(&applied.membership, after)),
            ),
        };
        let delta = diff_membership(&old, &new);
        if delta.is_empty() {
            self.succeeded();
            return Some(ApplyOutcome::Unchanged);
        }
        if let Err(e) = self.nft.apply_delta(&delta) {
            tracing::warn!(error = %error_chain(&e), "set delta refused; replacing the tables instead");
            return None;
        }
        let rerouted = change.addresses_of(&rerouted_macs(&old, &new));
        let cut = addresses_to_cut(&old, &new, false, &rerouted);
        drop((old, new));
        if let Some(applied) = self.applied.as_mut() {
            match change {
                MembershipChange::Whole { membership, .. } => applied.membership = std::mem::take(membership),
                MembershipChange::Entries { before, after, .. } => {
                    for e in before.iter() {
                        applied.membership.remove_entry(e);
                    }
                    for e in after.iter() {
                        applied.membership.insert_entry(e);
                    }
                }
            }
        }
        self.stats.delta_applies += 1;
        self.succeeded();
        self.cut(cut);
        Some(ApplyOutcome::Delta {
            added: delta.added(),
            removed: delta.removed(),
        })
    }

    /// Puts `addresses` in domain set `set` until `now + ttl_secs` (a held
    /// address keeps the later deadline). Only sets of the ruleset in force.
    pub fn hold(
        &mut self,
        set: &DomainSetId,
        addresses: &[IpAddr],
        ttl_secs: u32,
        now: UnixTime,
    ) -> Result<Held, HoldError> {
        let selected = self
            .applied
            .as_ref()
            .and_then(|a| a.ruleset.tunnel.as_ref())
            .is_some_and(|t| t.domain_sets.contains(set));
        if !selected {
            return Err(HoldError::UnknownSet(set.clone()));
        }
        if ttl_secs == 0 {
            return Err(HoldError::NoLifetime);
        }
        let fresh: BTreeSet<IpAddr> = addresses
            .iter()
            .filter(|ip| !self.held.contains_key(&(set.clone(), **ip)))
            .copied()
            .collect();
        if self.held.len() + fresh.len() > MAX_HELD_ADDRESSES {
            return Err(HoldError::Full);
        }
        let mut delta = MembershipDelta::default();
        push_addresses(&mut delta, true, set, fresh.iter().copied());
        if !delta.is_empty() {
            self.nft.apply_delta(&delta).map_err(HoldError::Nft)?;
        }
        let until = now.saturating_add(i64::from(ttl_secs));
        for ip in addresses {
            let e = self.held.entry((set.clone(), *ip)).or_insert(until);
            *e = (*e).max(until);
        }
        Ok(Held {
            given: addresses.len(),
            fresh: fresh.len(),
        })
    }

    /// At start, before the first apply: the addresses the kernel's domain
    /// sets still hold from the previous run (the daemon restarted, its tables
    /// stayed in force) are held until `until`, so the first replace keeps
    /// them and nothing selected goes out directly while clients still use
    /// answers they got before the restart. Returns how many were adopted.
    pub fn adopt_kernel_domain_sets(&mut self, sets: &BTreeSet<DomainSetId>, until: UnixTime) -> usize {
        use nftables::schema::{NfListObject, NfObject};
        if sets.is_empty() {
            return 0;
        }
        let listing = match self.nft.list_table(nftables::types::NfFamily::INet) {
            Ok(l) => l,
            // No table yet (a first start): nothing to adopt.
            Err(_) => return 0,
        };
        let mut adopted = 0;
        for object in listing.objects.iter() {
            let NfObject::ListObject(NfListObject::Set(set)) = object else {
                continue;
            };
            let Some(id) = sets.iter().find(|d| {
                [false, true]
                    .iter()
                    .any(|v6| super::render::domain_set_name(d, *v6) == set.name)
            }) else {
                continue;
            };
            for e in set.elem.iter().flat_map(|e| e.iter()) {
                let nftables::expr::Expression::String(text) = e else {
                    continue;
                };
                let Ok(ip) = text.parse::<IpAddr>() else { continue };
                if self.held.len() >= MAX_HELD_ADDRESSES {
                    return adopted;
                }
                let deadline = self.held.entry((id.clone(), ip)).or_insert(until);
                *deadline = (*deadline).max(until);
                adopted += 1;
            }
        }
        adopted
    }

    /// The wall clock jumped by `delta` seconds: held addresses keep the time
    /// they had left.
    pub fn shift_deadlines(&mut self, delta: i64, moves: &dyn Fn(UnixTime) -> bool) {
        for until in self
            .held
            .values_mut()
            .chain(self.pinholes.values_mut())
            .filter(|u| moves(**u))
        {
            *until = until.saturating_add(delta);
        }
    }

    /// The deadline of an address held in a domain set.
    pub fn held_until(&self, set: &DomainSetId, ip: IpAddr) -> Option<UnixTime> {
        self.held.get(&(set.clone(), ip)).copied()
    }

    /// How many addresses are held in all domain sets.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Opens `pinholes` for zone `zone` until `now + ttl_secs` (a held
    /// pinhole keeps the later deadline). Only zones something is shared to
    /// in the ruleset in force.
    pub fn hold_pinholes(
        &mut self,
        zone: &ZoneId,
        pinholes: &[Pinhole],
        ttl_secs: u32,
        now: UnixTime,
    ) -> Result<Held, HoldError> {
        let shared = self.applied.as_ref().is_some_and(|a| a.ruleset.share_to.contains(zone));
        if !shared {
            return Err(HoldError::NotShared(zone.clone()));
        }
        if ttl_secs == 0 {
            return Err(HoldError::NoLifetime);
        }
        let fresh: BTreeSet<Pinhole> = pinholes
            .iter()
            .filter(|p| !self.pinholes.contains_key(&(zone.clone(), **p)))
            .copied()
            .collect();
        if self.pinholes.len() + fresh.len() > MAX_HELD_PINHOLES {
            return Err(HoldError::PinholesFull);
        }
        let mut delta = MembershipDelta::default();
        let (v4, v6) = Elements::of_pinholes(fresh.iter().copied());
        delta.push(true, SetOwner::Share(zone.clone()), v4);
        delta.push(true, SetOwner::Share(zone.clone()), v6);
        if !delta.is_empty() {
            self.nft.apply_delta(&delta).map_err(HoldError::Nft)?;
        }
        let until = now.saturating_add(i64::from(ttl_secs));
        for p in pinholes {
            let e = self.pinholes.entry((zone.clone(), *p)).or_insert(until);
            *e = (*e).max(until);
        }
        Ok(Held {
            given: pinholes.len(),
            fresh: fresh.len(),
        })
    }

    /// Closes every pinhole into `address` (the shared device said goodbye
    /// or left), in every zone. Returns how many closed.
    pub fn close_pinholes(&mut self, address: IpAddr) -> usize {
        let closing: Vec<(ZoneId, Pinhole)> = self
            .pinholes
            .keys()
            .filter(|(_, p)| p.address == address)
            .cloned()
            .collect();
        self.remove_pinholes(&closing);
        closing.len()
    }

    /// The pinholes held, with their deadlines.
    pub fn pinholes(&self) -> impl Iterator<Item = (&ZoneId, &Pinhole, UnixTime)> {
        self.pinholes.iter().map(|((z, p), u)| (z, p, *u))
    }

    fn remove_pinholes(&mut self, closing: &[(ZoneId, Pinhole)]) {
        if closing.is_empty() {
            return;
        }
        let mut delta = MembershipDelta::default();
        for (zone, p) in closing {
            let (v4, v6) = Elements::of_pinholes([*p]);
            delta.push(false, SetOwner::Share(zone.clone()), v4);
            delta.push(false, SetOwner::Share(zone.clone()), v6);
        }
        if let Err(e) = self.nft.apply_delta(&delta) {
            // Gone already (or the set is): a full replace re-creates the
            // sets from what remains.
            tracing::warn!(error = %error_chain(&e), "could not delete pinholes");
        }
        for k in closing {
            self.pinholes.remove(k);
        }
    }

    /// Deletes held addresses and pinholes whose deadline is `now` or
    /// earlier, from the kernel and from memory.
    pub fn expire(&mut self, now: UnixTime) {
        let closing: Vec<(ZoneId, Pinhole)> = self
            .pinholes
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        self.remove_pinholes(&closing);
        let expired: Vec<(DomainSetId, IpAddr)> = self
            .held
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut delta = MembershipDelta::default();
        for (set, ip) in &expired {
            push_addresses(&mut delta, false, set, [*ip]);
        }
        if let Err(e) = self.nft.apply_delta(&delta) {
            // Someone removed them already (or the set is gone): a full replace
            // re-creates the sets from what remains.
            tracing::warn!(error = %error_chain(&e), "could not delete expired domain set addresses");
        }
        for k in expired {
            self.held.remove(&k);
        }
    }

    fn succeeded(&mut self) {
        self.stats.last_error = None;
        self.failing = false;
    }

    /// A change failed for good (after any fallback): the first of a run is
    /// kept for the caller's alert.
    fn failed(&mut self, msg: &str) {
        if !self.failing {
            self.failing = true;
            self.new_failure = Some(msg.to_string());
        }
    }

    /// Deletes the conntrack entries of `addrs` (in the background while
    /// discovery reconciles).
    fn cut(&mut self, addrs: Vec<IpAddr>) {
        if addrs.is_empty() {
            return;
        }
        if self.background_cuts {
            self.conntrack.flush_detached(addrs);
            return;
        }
        match self.conntrack.flush(&addrs) {
            Ok(n) => tracing::info!(entries = n, addresses = addrs.len(), "cut connections of moved devices"),
            Err(e) => {
                let msg = format!("could not delete conntrack entries of moved devices: {e}");
                tracing::error!("{msg}");
                self.stats.last_error = Some(msg);
                self.failed_cut = Some(addrs);
            }
        }
    }
}

/// `addresses` of one family each into `set`'s v4 and v6 sets.
fn push_addresses(
    delta: &mut MembershipDelta,
    add: bool,
    set: &DomainSetId,
    addresses: impl IntoIterator<Item = IpAddr>,
) {
    let (v4, v6) = Elements::of_addresses(addresses);
    delta.push(add, SetOwner::DomainSet(set.clone()), v4);
    delta.push(add, SetOwner::DomainSet(set.clone()), v6);
}

/// MACs whose tunnel set changed: their flows were address-translated for the
/// old way out and would die there, or leave by the old way.
fn rerouted_macs(old: &Membership, new: &Membership) -> BTreeSet<MacAddr> {
    old.tunnel_devices
        .symmetric_difference(&new.tunnel_devices)
        .chain(old.tunnel_exclude.symmetric_difference(&new.tunnel_exclude))
        .copied()
        .collect()
}

/// PURE: a device that changed zone must not keep connections its new zone
/// forbids: every address whose zone or block changed (a device moved, or an
/// address moved to another device) or that left the sets, so the next packet
/// is judged by the new rules. Connections the new zone allows are picked up
/// again mid-stream by conntrack. `everyone`: after a structural change, every
/// address in the old sets. `rerouted`: addresses of devices whose tunnel set
/// changed.
pub fn addresses_to_cut(old: &Membership, new: &Membership, everyone: bool, rerouted: &[IpAddr]) -> Vec<IpAddr> {
    fn addrs(m: &ZoneMembers) -> impl Iterator<Item = IpAddr> + '_ {
        m.v4.iter()
            .map(|a| IpAddr::V4(*a))
            .chain(m.v6.iter().map(|a| IpAddr::V6(*a)))
    }
    let verdicts = |m: &Membership| -> BTreeMap<IpAddr, (ZoneId, bool)> {
        let blocked: BTreeSet<IpAddr> = addrs(&m.blocked).collect();
        m.zones
            .iter()
            .flat_map(|(z, mem)| addrs(mem).map(move |a| (a, z.clone())))
            .map(|(a, z)| (a, (z, blocked.contains(&a))))
            .collect()
    };
    let (before, after) = (verdicts(old), verdicts(new));
    before
        .iter()
        .filter(|(a, v)| everyone || after.get(a) != Some(v))
        .map(|(a, _)| *a)
        .chain(rerouted.iter().copied())
        .collect::<BTreeSet<IpAddr>>()
        .into_iter()
        .collect()
}
