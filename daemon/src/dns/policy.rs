//! Who is asking, and what they may have: client address → device → zone →
//! the zone's DNS policy, with the device's own overrides. Pure: the settings
//! are taken from the config, the devices from a services snapshot.
//!
//! Decisions (docs/ARCHITECTURE.md, "DNS"):
//! - an address outside every segment (and not loopback) is refused: the
//!   resolver is never an open resolver, even if a packet from the WAN got in;
//! - a blocked device is refused;
//! - a device whose zone may not reach the internet (quarantine by default)
//!   resolves only local names: an internet name is of no use to it, and a
//!   resolver that forwards for it is a tunnel out (DNS exfiltration);
//! - a device whose traffic goes through the VPN has its questions forwarded
//!   through the VPN too, or not at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

use super::blocklist::{ListId, ListMask};
use crate::config::{Config, DnsConfig, DomainSetId, MacAddr, ZoneDns, ZoneId};
use crate::core::InventorySnapshot;

/// The resolver's view of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `[dns]`.
    pub dns: DnsConfig,
    /// The local domain (`dhcp.domain`, default `lan`).
    pub local_domain: String,
    /// The router's addresses on the segments.
    pub router_addresses: Vec<IpAddr>,
    /// The segments' subnets: who may ask.
    pub home_networks: Vec<IpNet>,
    /// Per zone: may it reach the internet, and its DNS policy.
    pub zones: BTreeMap<ZoneId, (bool, ZoneDns)>,
    /// Per device: its own blocklists and logging choice.
    pub devices: BTreeMap<MacAddr, (Option<BTreeSet<String>>, Option<bool>)>,
    /// The zone of addresses no device holds.
    pub unknown_zone: ZoneId,
    /// The tunnel's domain sets and the domains that fill them.
    pub domain_sets: BTreeMap<DomainSetId, BTreeSet<String>>,
    /// A tunnel is configured (else nobody is routed through it).
    pub tunnel: bool,
    /// Where the per-device day counts are kept (`state_dir/dns-days.db`;
    /// `None`: in memory only).
    pub days_file: Option<std::path::PathBuf>,
}

impl DnsSettings {
    /// The settings a config gives.
    pub fn from_config(c: &Config) -> DnsSettings {
        let mut router_addresses = Vec::new();
        let mut home_networks = Vec::new();
        for s in &c.segments {
            router_addresses.push(IpAddr::V4(s.ipv4.addr()));
            home_networks.push(IpNet::V4(s.ipv4.trunc()));
            if let Some(v6) = s.ipv6 {
                router_addresses.push(IpAddr::V6(v6.addr()));
                home_networks.push(IpNet::V6(v6.trunc()));
            }
        }
        DnsSettings {
            dns: c.dns.clone(),
            local_domain: c.dhcp.domain.clone().unwrap_or_else(|| "lan".into()),
            router_addresses,
            home_networks,
            zones: c
                .policy
                .zones
                .values()
                .map(|z| (z.id.clone(), (z.internet, z.dns.clone())))
                .collect(),
            devices: c
                .policy
                .devices
                .iter()
                .filter(|(_, o)| o.dns_blocklists.is_some() || o.dns_log.is_some())
                .map(|(m, o)| (*m, (o.dns_blocklists.clone(), o.dns_log)))
                .collect(),
            unknown_zone: c.policy.unknown_zone.clone(),
            domain_sets: c.policy.tunnel.domains.clone(),
            tunnel: c.tunnel.is_some(),
            days_file: Some(c.state_dir.join("dns-days.db")),
        }
    }
}

impl DnsSettings {
    /// A fixed home for the fuzz target: one `trusted` segment 10.0.1.0/24
    /// with internet, quarantine for the unknown, a domain set `streaming`.
    pub fn fuzz_sample() -> DnsSettings {
        let trusted = ZoneId::new("trusted").unwrap_or_else(|_| unreachable!("a valid zone name"));
        let quarantine = ZoneId::new("quarantine").unwrap_or_else(|_| unreachable!("a valid zone name"));
        let set = DomainSetId::new("streaming").unwrap_or_else(|_| unreachable!("a valid set name"));
        DnsSettings {
            dns: DnsConfig::defaults(&[]),
            local_domain: "lan".into(),
            router_addresses: vec![IpAddr::from([10, 0, 1, 1])],
            home_networks: vec!["10.0.1.0/24"
                .parse()
                .unwrap_or_else(|_| unreachable!("a valid network"))],
            zones: [
                (
                    trusted,
                    (
                        true,
                        ZoneDns {
                            blocklists: ["ads".to_string()].into(),
                            log: true,
                            upstreams: Vec::new(),
                        },
                    ),
                ),
                (quarantine.clone(), (false, ZoneDns::default())),
            ]
            .into(),
            devices: BTreeMap::new(),
            unknown_zone: quarantine,
            domain_sets: [(set, ["example".to_string()].into())].into(),
            tunnel: false,
            days_file: None,
        }
    }
}

/// Where a client's questions may go when the cache cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// To the upstreams, out of the WAN.
    Direct,
    /// To the tunnel upstreams, through the tunnel only.
    Tunnel,
    /// Nowhere: local names only.
    LocalOnly,
}

/// One client as the resolver treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its address.
    pub ip: IpAddr,
    /// Its device, if the address is a known device's.
    pub mac: Option<MacAddr>,
    /// Its zone (`None`: the router itself, on loopback).
    pub zone: Option<ZoneId>,
    /// The blocklists its questions are checked against (bit `i`: the
    /// `i`-th of `dns.blocklists`, the order the resolver builds them in).
    pub blocklists: ListMask,
    /// Its questions are logged.
    pub log: bool,
    /// Where its questions may go.
    pub route: Route,
    /// Its zone has its own upstreams (used on the direct route).
    pub zone_upstreams: bool,
}

/// Why a client gets nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not from the home.
    Outsider,
    /// The homeowner blocked the device.
    Blocked,
}

/// Who `ip` is and what its questions get.
pub fn who_is_asking(settings: &DnsSettings, snapshot: &InventorySnapshot, ip: IpAddr) -> Result<Client, Refusal> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return Ok(Client {
            ip,
            mac: None,
            zone: None,
            blocklists: ListMask::NONE,
            log: true,
            route: Route::Direct,
            zone_upstreams: false,
        });
    }
    if !settings.home_networks.iter().any(|n| n.contains(&ip)) && !is_link_local(ip) {
        return Err(Refusal::Outsider);
    }
    let device = snapshot.device_at(ip);
    if device.is_some_and(|d| d.blocked) {
        return Err(Refusal::Blocked);
    }
    // Borrowed, not cloned: this runs for every question, cache hits included.
    let zone = device.map_or(&settings.unknown_zone, |d| &d.zone);
    let default_dns = ZoneDns::default();
    let (internet, zone_dns) = settings
        .zones
        .get(zone)
        .map_or((false, &default_dns), |(internet, dns)| (*internet, dns));
    let (own_lists, own_log) = device
        .and_then(|d| settings.devices.get(&d.mac))
        .map_or((None, None), |(lists, log)| (lists.as_ref(), *log));
    let route = if !internet {
        Route::LocalOnly
    } else if settings.tunnel && device.is_some_and(|d| d.tunnel_routed) {
        Route::Tunnel
    } else {
        Route::Direct
    };
    Ok(Client {
        ip,
        mac: device.map(|d| d.mac),
        zone: Some(zone.clone()),
        blocklists: settings.list_mask(own_lists.unwrap_or(&zone_dns.blocklists)),
        log: own_log.unwrap_or(zone_dns.log),
        zone_upstreams: route == Route::Direct && !zone_dns.upstreams.is_empty(),
        route,
    })
}

impl DnsSettings {
    /// The mask of the lists named (names no list has are ignored: the config
    /// refused them).
    pub fn list_mask(&self, names: &BTreeSet<String>) -> ListMask {
        if names.is_empty() {
            return ListMask::NONE;
        }
        self.dns
            .blocklists
            .iter()
            .enumerate()
            .filter(|(_, list)| names.contains(&list.name))
            .filter_map(|(i, _)| u16::try_from(i).ok().map(ListId))
            .collect()
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The domain sets `name` (lower-case, no trailing dot) belongs to: a listed
/// domain and all its subdomains.
pub fn domain_sets_of<'a>(
    sets: &'a BTreeMap<DomainSetId, BTreeSet<String>>,
    name: &str,
) -> impl Iterator<Item = &'a DomainSetId> + 'a {
    let name = name.to_string();
    sets.iter()
        .filter(move |(_, domains)| {
            let mut suffix = name.as_str();
            loop {
                if domains.contains(suffix) {
                    return true;
                }
                match suffix.split_once('.') {
                    Some((_, rest)) => suffix = rest,
                    None => return false,
                }
            }
        })
        .map(|(id, _)| id)
}

/// Per-client token buckets: `rate` questions a second, bursts of twice that.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

/// Clients remembered before idle full buckets are forgotten.
const MAX_BUCKETS: usize = 4096;

impl RateLimiter {
    /// A limiter of `rate` per second per client.
    pub fn new(rate: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether `ip` may ask one more question at `now`.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let burst = self.rate * 2.0;
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&ip) {
            let rate = self.rate;
            self.buckets
                .retain(|_, (tokens, at)| *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DeviceSnapshot;
    use crate::testutil::tunnel_config;

    fn snapshot_with(devices: Vec<DeviceSnapshot>) -> InventorySnapshot {
        let mut s = InventorySnapshot::default();
        for d in devices {
            for a in &d.addresses {
                s.by_address.insert(*a, d.mac);
            }
            s.devices.insert(d.mac, d);
        }
        s
    }

    fn device(last: u8, zone: &str, ip: &str, tunnel: bool) -> DeviceSnapshot {
        DeviceSnapshot {
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            name: None,
            hostname: None,
            zone: ZoneId::new(zone).expect("zone"),
            addresses: [ip.parse().expect("ip")].into(),
            blocked: false,
            tunnel_routed: tunnel,
            quarantined: false,
            class: None,
            vendor: None,
            last_seen: 0,
            online: true,
            watched: false,
        }
    }

    #[test]
    fn clients_get_their_zone_route_and_outsiders_nothing() {
        let settings = DnsSettings::from_config(&tunnel_config());
        let snap = snapshot_with(vec![
            device(10, "trusted", "10.0.1.10", false),
            device(11, "trusted", "10.0.1.11", true),
            device(12, "iot", "10.0.1.12", false),
        ]);
        let ask = |ip: &str| who_is_asking(&settings, &snap, ip.parse().expect("ip"));
        assert_eq!(ask("10.0.1.10").map(|c| c.route), Ok(Route::Direct));
        assert_eq!(ask("10.0.1.11").map(|c| c.route), Ok(Route::Tunnel));
        let unknown = ask("10.0.1.99").expect("a home address");
        assert_eq!(unknown.zone, Some(settings.unknown_zone.clone()));
        assert_eq!(unknown.route, Route::LocalOnly, "quarantine reaches no internet");
        assert_eq!(ask("192.0.2.1"), Err(Refusal::Outsider));
        assert_eq!(ask("127.0.0.1").map(|c| c.zone), Ok(None));
        assert_eq!(ask("::ffff:127.0.0.1").map(|c| c.zone), Ok(None));
        let mut blocked = snap.clone();
        if let Some(d) = blocked.devices.get_mut(&MacAddr([2, 0, 0, 0, 0, 10])) {
            d.blocked = true;
        }
        assert_eq!(
            who_is_asking(&settings, &blocked, "10.0.1.10".parse().expect("ip")),
            Err(Refusal::Blocked)
        );
    }

    #[test]
    fn a_domain_set_holds_its_domains_and_their_subdomains_only() {
        let settings = DnsSettings::from_config(&tunnel_config());
        let sets = |n: &str| domain_sets_of(&settings.domain_sets, n).count();
        assert_eq!(sets("video.example.test"), 1);
        assert_eq!(sets("a.b.video.example.test"), 1);
        assert_eq!(sets("badvideo.example.test"), 0);
        assert_eq!(sets("example.test"), 0);
    }

    #[test]
    fn a_client_over_its_rate_is_refused_until_its_bucket_refills() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10);
        let ip: IpAddr = "10.0.1.10".parse().expect("ip");
        let allowed = (0..100).filter(|_| limiter.allow(ip, t0)).count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        assert!(!limiter.allow(ip, t0));
        assert!(limiter.allow(ip, t0 + std::time::Duration::from_millis(200)));
        assert!(limiter.allow("10.0.1.11".parse().expect("ip"), t0), "per client");
    }
}
