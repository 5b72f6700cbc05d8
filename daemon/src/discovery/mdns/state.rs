//! PURE: what the browser does with each mDNS event — which service types to
//! browse (bounded), which answers become observations, what is counted.
//!
//! [`Browser`](super::Browser) feeds events in and carries out the returned
//! [`Step`]s against the mdns-sd daemon; this part needs no network, so it is
//! tested (and fuzzed) on its own.

use std::collections::BTreeSet;

use mdns_sd::ServiceEvent;
use serde::Serialize;

use super::convert::{observation_of, parts_of, service_type_of, MdnsObservation};

/// The DNS-SD meta-query (RFC 6763 §9): its answers name the service types present.
pub const META_QUERY: &str = "_services._dns-sd._udp.local.";

/// Service types browsed from the start, before the meta-query answers: the
/// common home devices, some of which do not answer the meta-query.
pub const FIXED_TYPES: [&str; 21] = [
    "_hap._tcp",
    "_googlecast._tcp",
    "_airplay._tcp",
    "_raop._tcp",
    "_ipp._tcp",
    "_ipps._tcp",
    "_printer._tcp",
    "_pdl-datastream._tcp",
    "_sonos._tcp",
    "_hue._tcp",
    "_spotify-connect._tcp",
    "_esphomelib._tcp",
    "_matter._tcp",
    "_matterc._udp",
    "_home-assistant._tcp",
    "_homekit._tcp",
    "_companion-link._tcp",
    "_device-info._tcp",
    "_smb._tcp",
    "_amzn-wplay._tcp",
    "_rdlink._tcp",
];

/// Default bound on the number of service types browsed, fixed ones included.
pub const DEFAULT_MAX_TYPES: usize = 64;

/// What the browser has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MdnsCounters {
    /// Answers turned into observations.
    pub resolved: u64,
    /// Answers dropped as malformed (bad type, no instance name, no usable address).
    pub dropped_malformed: u64,
    /// Distinct service types being browsed (fixed and discovered).
    pub types_seen: u64,
    /// Meta-query answers not browsed: malformed type names, or over the bound.
    /// Counted per answer, so a type repeated by a device counts again.
    pub types_dropped: u64,
    /// Responses captured with their sender: what mDNS evidence is read from.
    #[serde(default)]
    pub responses_captured: u64,
    /// Captured packets to port 5353 that were not mDNS messages.
    #[serde(default)]
    pub captured_malformed: u64,
    /// Captured responses from a MAC no device has, given up after a minute
    /// (their evidence counted for nobody).
    #[serde(default)]
    pub unattributed: u64,
    /// Responses giving an address another device holds (a sender speaking
    /// for it: a forgery, or a sleep proxy answering for a sleeping Mac).
    #[serde(default)]
    pub foreign_addresses: u64,
}

/// What to do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Nothing,
    /// Hand this observation to the caller.
    Observe(Box<MdnsObservation>),
    /// Start browsing this type (`_x._tcp.local.`): newly learned, or its
    /// subscription ended (mdns-sd closes one whose channel filled up).
    Browse(String),
}

/// The browse state: the set of types browsed and the counters.
#[derive(Debug, Clone)]
pub struct BrowseState {
    /// Lower-cased types (`_x._tcp`) browsed; at most `max_types`.
    browsed: BTreeSet<String>,
    max_types: usize,
    counters: MdnsCounters,
}

impl BrowseState {
    /// An empty state that browses at most `max_types` service types.
    pub fn new(max_types: usize) -> Self {
        Self {
            browsed: BTreeSet::new(),
            max_types,
            counters: MdnsCounters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> MdnsCounters {
        MdnsCounters {
            types_seen: self.browsed.len() as u64,
            ..self.counters
        }
    }

    /// Takes a service type name (`_x._tcp`, with or without `.local.`) into the
    /// browse set. Returns the name to browse (`_x._tcp.local.`, spelled as
    /// given) when it is new, well-formed and within the bound; counts it as
    /// dropped when malformed or over the bound; `None` when already browsed.
    pub fn admit(&mut self, name: &str) -> Option<String> {
        let Ok(ty) = service_type_of(name) else {
            self.counters.types_dropped += 1;
            return None;
        };
        let key = ty.to_ascii_lowercase();
        if self.browsed.contains(&key) {
            return None;
        }
        if self.browsed.len() >= self.max_types {
            self.counters.types_dropped += 1;
            return None;
        }
        self.browsed.insert(key);
        Some(format!("{ty}.local."))
    }

    /// Handles one event from the subscription for `ty_domain`; `None` means
    /// that subscription ended.
    pub fn on_event(&mut self, ty_domain: &str, event: Option<ServiceEvent>) -> Step {
        let Some(event) = event else {
            return if self.is_browsed(ty_domain) {
                tracing::debug!(service_type = ty_domain, "mDNS subscription ended; browsing again");
                Step::Browse(ty_domain.to_string())
            } else {
                Step::Nothing
            };
        };
        match event {
            ServiceEvent::ServiceFound(_, found) if ty_domain == META_QUERY => match self.admit(&found) {
                Some(new) => {
                    tracing::debug!(service_type = ?found, "mDNS service type found");
                    Step::Browse(new)
                }
                None => Step::Nothing,
            },
            ServiceEvent::ServiceResolved(service) => match observation_of(&parts_of(&service)) {
                Ok(observation) => {
                    self.counters.resolved += 1;
                    Step::Observe(Box::new(observation))
                }
                Err(dropped) => {
                    self.counters.dropped_malformed += 1;
                    tracing::debug!(%dropped, "mDNS answer dropped");
                    Step::Nothing
                }
            },
            ServiceEvent::ServiceRemoved(_, fullname) => {
                // Evidence is history: a device that leaves keeps what it said.
                tracing::debug!(service = ?fullname, "mDNS service removed");
                Step::Nothing
            }
            other => {
                tracing::trace!(event = ?other, "mDNS event");
                Step::Nothing
            }
        }
    }

    /// Whether `ty_domain` is the meta-query or a type in the browse set.
    fn is_browsed(&self, ty_domain: &str) -> bool {
        ty_domain == META_QUERY
            || service_type_of(ty_domain).is_ok_and(|ty| self.browsed.contains(&ty.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use mdns_sd::ServiceInfo;

    use super::*;

    fn resolved(fullname_instance: &str, ip: &str) -> ServiceEvent {
        let info = ServiceInfo::new(
            "_googlecast._tcp.local.",
            fullname_instance,
            "tv.local.",
            ip,
            8009,
            &[("md", "Chromecast")][..],
        )
        .expect("service info");
        ServiceEvent::ServiceResolved(Box::new(info.as_resolved_service()))
    }

    fn found(ty: &str) -> Option<ServiceEvent> {
        Some(ServiceEvent::ServiceFound(META_QUERY.into(), ty.into()))
    }

    #[test]
    fn fixed_types_are_well_formed_and_distinct() {
        let mut s = BrowseState::new(DEFAULT_MAX_TYPES);
        for ty in FIXED_TYPES {
            assert_eq!(s.admit(ty), Some(format!("{ty}.local.")), "{ty}");
        }
        assert_eq!(s.counters().types_seen, FIXED_TYPES.len() as u64);
        assert_eq!(s.counters().types_dropped, 0);
    }

    #[test]
    fn meta_query_answers_are_browsed_once_bounded_and_checked() {
        let mut s = BrowseState::new(4);
        assert_eq!(
            s.on_event(META_QUERY, found("_hap._tcp.local.")),
            Step::Browse("_hap._tcp.local.".into())
        );
        // Same type again, in another case: already browsed.
        assert_eq!(s.on_event(META_QUERY, found("_HAP._tcp.local.")), Step::Nothing);
        // ServiceFound on an ordinary type is an instance, not a type.
        let instance = Some(ServiceEvent::ServiceFound(
            "_hap._tcp.local.".into(),
            "Bridge._hap._tcp.local.".into(),
        ));
        assert_eq!(s.on_event("_hap._tcp.local.", instance), Step::Nothing);
        for bad in ["_x\n._tcp.local.", "<b>._tcp.local.", "", "_sub._x._tcp.local."] {
            assert_eq!(s.on_event(META_QUERY, found(bad)), Step::Nothing, "{bad:?}");
        }
        for i in 0..10 {
            let _ = s.on_event(META_QUERY, found(&format!("_t{i}._udp.local.")));
        }
        let c = s.counters();
        assert_eq!(c.types_seen, 4);
        assert_eq!(c.types_dropped, 4 + 7);
    }

    #[test]
    fn resolved_answers_become_observations_and_bad_ones_are_counted() {
        let mut s = BrowseState::new(DEFAULT_MAX_TYPES);
        let step = s.on_event("_googlecast._tcp.local.", Some(resolved("Living Room TV", "10.0.1.30")));
        let Step::Observe(o) = step else {
            panic!("expected an observation, got {step:?}")
        };
        assert_eq!(o.addresses, vec![IpAddr::V4(Ipv4Addr::new(10, 0, 1, 30))]);
        assert!(o.evidence.mdns_names.contains("Living Room TV"));
        assert!(o.evidence.mdns_names.contains("tv"));

        let step = s.on_event("_googlecast._tcp.local.", Some(resolved("Loopy", "127.0.0.1")));
        assert_eq!(step, Step::Nothing);
        let removed = ServiceEvent::ServiceRemoved("_googlecast._tcp.local.".into(), "x".into());
        assert_eq!(s.on_event("_googlecast._tcp.local.", Some(removed)), Step::Nothing);
        let c = s.counters();
        assert_eq!((c.resolved, c.dropped_malformed), (1, 1));
    }

    #[test]
    fn an_ended_subscription_is_browsed_again_only_if_ours() {
        let mut s = BrowseState::new(DEFAULT_MAX_TYPES);
        assert!(s.admit("_hap._tcp").is_some());
        assert_eq!(
            s.on_event("_hap._tcp.local.", None),
            Step::Browse("_hap._tcp.local.".into())
        );
        assert_eq!(s.on_event(META_QUERY, None), Step::Browse(META_QUERY.into()));
        assert_eq!(s.on_event("_ipp._tcp.local.", None), Step::Nothing);
    }
}
