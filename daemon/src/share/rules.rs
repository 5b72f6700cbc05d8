//! PURE: who may find and use which service, from the `[[share]]` rules.

use std::collections::BTreeSet;

use crate::config::{PortRange, ServiceType, ShareRule, Transport, ZoneId};
use crate::firewall::Pinhole;

/// The shares in force, asked by (service type, providing zone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sharing {
    rules: Vec<ShareRule>,
}

impl Sharing {
    /// From the policy's `[[share]]` rules.
    pub fn new(rules: Vec<ShareRule>) -> Sharing {
        Sharing { rules }
    }

    /// True when nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every service type some rule shares.
    pub fn service_types(&self) -> BTreeSet<&ServiceType> {
        self.rules.iter().flat_map(|r| r.services.iter()).collect()
    }

    /// The zones `service` offered in `provider` is shared to.
    pub fn consumers(&self, service: &ServiceType, provider: &ZoneId) -> BTreeSet<&ZoneId> {
        self.rules
            .iter()
            .filter(|r| r.services.contains(service) && r.from.contains(provider))
            .flat_map(|r| r.to.iter())
            .filter(|z| *z != provider)
            .collect()
    }

    /// Every SSDP search target some rule shares.
    pub fn ssdp_targets(&self) -> BTreeSet<&String> {
        self.rules.iter().flat_map(|r| r.ssdp.iter()).collect()
    }

    /// The zones SSDP target `target` offered in `provider` is shared to.
    pub fn ssdp_consumers(&self, target: &str, provider: &ZoneId) -> BTreeSet<&ZoneId> {
        self.rules
            .iter()
            .filter(|r| r.ssdp.contains(target) && r.from.contains(provider))
            .flat_map(|r| r.to.iter())
            .filter(|z| *z != provider)
            .collect()
    }

    /// Is anything shared to `zone`?
    pub fn shares_to(&self, zone: &ZoneId) -> bool {
        self.rules.iter().any(|r| r.to.contains(zone))
    }

    /// May a device in `consumer` see `service` offered in `provider`?
    pub fn allows(&self, service: &ServiceType, provider: &ZoneId, consumer: &ZoneId) -> bool {
        self.consumers(service, provider).contains(consumer)
    }

    /// The pinholes `consumer` gets into a device at `address` offering
    /// `service` on `srv_port` in `provider`: the SRV port (on the service
    /// type's transport) and every extra port of the rules that share it.
    pub fn pinholes(
        &self,
        service: &ServiceType,
        provider: &ZoneId,
        consumer: &ZoneId,
        address: std::net::IpAddr,
        srv_port: u16,
    ) -> Vec<Pinhole> {
        let transport = if service.as_str().ends_with("._udp") {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let mut out: BTreeSet<Pinhole> = BTreeSet::new();
        if srv_port != 0 {
            out.insert(Pinhole {
                address,
                transport,
                port: srv_port,
            });
        }
        let extra = self
            .rules
            .iter()
            .filter(|r| r.services.contains(service) && r.from.contains(provider) && r.to.contains(consumer))
            .flat_map(|r| r.ports.iter());
        for range in extra {
            let PortRange { transport, .. } = *range;
            out.extend(range.ports().map(|port| Pinhole {
                address,
                transport,
                port,
            }));
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_port_range;

    fn zone(n: &str) -> ZoneId {
        ZoneId::new(n).expect("test data")
    }

    fn cast_to_trusted() -> Sharing {
        Sharing::new(vec![ShareRule {
            name: "chromecast".into(),
            services: [ServiceType::new("_googlecast._tcp").expect("test data")].into(),
            ports: vec![parse_port_range("tcp/8008-8009").expect("test data")],
            ssdp: Default::default(),
            from: [zone("iot")].into(),
            to: [zone("trusted")].into(),
            homeowner: false,
        }])
    }

    #[test]
    fn one_direction_only() {
        let s = cast_to_trusted();
        let cast = ServiceType::new("_googlecast._tcp").expect("test data");
        assert!(s.allows(&cast, &zone("iot"), &zone("trusted")));
        assert!(!s.allows(&cast, &zone("trusted"), &zone("iot")), "nothing shared back");
        assert!(!s.allows(&cast, &zone("iot"), &zone("guest")));
        let sonos = ServiceType::new("_sonos._tcp").expect("test data");
        assert!(!s.allows(&sonos, &zone("iot"), &zone("trusted")), "not shared");
    }

    #[test]
    fn pinholes_are_the_srv_port_and_the_presets_ports() {
        let s = cast_to_trusted();
        let cast = ServiceType::new("_googlecast._tcp").expect("test data");
        let ip = std::net::IpAddr::from([10, 0, 2, 30]);
        let holes = s.pinholes(&cast, &zone("iot"), &zone("trusted"), ip, 8009);
        let ports: Vec<String> = holes.iter().map(ToString::to_string).collect();
        assert_eq!(ports, ["10.0.2.30 . tcp . 8008", "10.0.2.30 . tcp . 8009"]);
        let other = s.pinholes(
            &ServiceType::new("_x._udp").expect("test data"),
            &zone("iot"),
            &zone("trusted"),
            ip,
            5000,
        );
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].transport, Transport::Udp);
    }
}
