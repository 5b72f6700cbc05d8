//! PURE: what both sides of the proxy (mDNS, SSDP) share: who is asking,
//! whether a provider still stands behind what it announced, how often one
//! address may ask, and how often the proxy asks itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{MacAddr, ZoneId};
use crate::core::InventorySnapshot;
use crate::inventory::UnixTime;

/// The zone of whoever asks from `ip`: its device's, or the unknown zone
/// for an address no device holds; `None` for a blocked device (or no
/// unknown zone).
pub fn asker_zone(inventory: &InventorySnapshot, ip: IpAddr) -> Option<ZoneId> {
    match inventory.device_at(ip) {
        Some(d) if d.blocked => None,
        Some(d) => Some(d.zone.clone()),
        None => inventory.unknown_zone.clone(),
    }
}

/// Whether what `provider` announced from `sender` in `zone` no longer
/// stands: the device is gone or blocked, left the zone, or no longer holds
/// the address.
pub fn provider_gone(inventory: &InventorySnapshot, provider: &MacAddr, zone: &ZoneId, sender: &IpAddr) -> bool {
    inventory
        .devices
        .get(provider)
        .is_none_or(|d| d.blocked || d.zone != *zone || !d.addresses.contains(sender))
}

/// At most `limit` questions per address per second (a fixed one-second
/// window; the memory of addresses is bounded).
#[derive(Debug)]
pub struct PerAddressRate {
    limit: u32,
    asked: BTreeMap<IpAddr, (UnixTime, u32)>,
}

impl PerAddressRate {
    /// `limit` per address per second.
    pub fn new(limit: u32) -> PerAddressRate {
        PerAddressRate {
            limit,
            asked: BTreeMap::new(),
        }
    }

    /// Counts one question from `ip`; true when it is over the limit.
    pub fn over(&mut self, ip: IpAddr, now: UnixTime) -> bool {
        if self.asked.len() > 1024 {
            self.asked.retain(|_, (at, _)| *at == now);
        }
        let e = self.asked.entry(ip).or_insert((now, 0));
        if e.0 != now {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 > self.limit
    }
}

/// Something the proxy does itself (a question on a segment) at most once
/// per `every` seconds per key.
#[derive(Debug)]
pub struct Throttle<K: Ord> {
    every: i64,
    last: BTreeMap<K, UnixTime>,
}

impl<K: Ord> Throttle<K> {
    /// Once per `every` seconds per key.
    pub fn new(every: i64) -> Throttle<K> {
        Throttle {
            every,
            last: BTreeMap::new(),
        }
    }

    /// True (and remembered) when `key` may go now.
    pub fn due(&mut self, key: K, now: UnixTime) -> bool {
        if self
            .last
            .get(&key)
            .is_some_and(|at| now.saturating_sub(*at) < self.every)
        {
            return false;
        }
        self.last.insert(key, now);
        true
    }
}
