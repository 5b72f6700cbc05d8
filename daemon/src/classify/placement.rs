//! PURE: which zone a classification may put a device in.
//!
//! The rule: a match without a zone places nothing; a medium or high confidence
//! match places the device in its zone; a low confidence match only when that zone
//! is at least as restricted as where the device would be anyway. A device never
//! moves to a less-restricted zone on a low-confidence match.

use super::classifier::ClassMatch;
use super::rules::Confidence;
use crate::config::{Policy, ZoneId};

/// True when devices in `candidate` may do no more than devices in `than`: no
/// internet unless `than` has it, reach no zone `than` cannot, use no router
/// service `than` cannot, open connections within the zone only if `than` may.
///
/// Fails closed: a zone missing from the policy is only as restricted as itself.
/// (It compares what a zone's devices may start; who may reach the zone is not
/// part of it.)
pub fn at_least_as_restricted(policy: &Policy, candidate: &ZoneId, than: &ZoneId) -> bool {
    if candidate == than {
        return true;
    }
    let (Some(c), Some(t)) = (policy.zones.get(candidate), policy.zones.get(than)) else {
        return false;
    };
    c.internet <= t.internet
        && c.reach_zones.is_subset(&t.reach_zones)
        && c.router_services.is_subset(&t.router_services)
        && c.intra_zone <= t.intra_zone
}

/// The zone `m` puts a device in, or `None` to keep `fallback` (the zone the
/// device would have without classification: its segment's default or the
/// unknown zone). A zone the policy no longer has places nothing.
pub fn placement(policy: &Policy, m: &ClassMatch, fallback: &ZoneId) -> Option<ZoneId> {
    let zone = m.zone.as_ref().filter(|z| policy.zones.contains_key(*z))?;
    let allowed = match m.confidence {
        Confidence::Medium | Confidence::High => true,
        Confidence::Low => at_least_as_restricted(policy, zone, fallback),
    };
    allowed.then(|| zone.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::DeviceClass;
    use crate::config::Config;
    use crate::testutil::{Fixture, MAIN};

    /// Zones ordered by what they allow, plus two that are not comparable.
    const ZONES: &str = r#"
unknown_zone = "quarantine"
[zones.trusted]
internet = true
reach_zones = ["iot", "quarantine"]
router_services = ["dns", "dhcp", "ntp", "ssh"]
[zones.iot]
internet = true
router_services = ["dns", "dhcp", "ntp"]
intra_zone = false
[zones.iot_mesh]
internet = true
router_services = ["dns", "dhcp", "ntp"]
intra_zone = true
[zones.lab]
internet = false
reach_zones = ["iot"]
router_services = ["dns", "dhcp"]
intra_zone = false
[zones.quarantine]
router_services = ["dns", "dhcp"]
intra_zone = false
"#;

    fn config() -> Config {
        let fx = Fixture::new(MAIN, &[("zones.toml", ZONES)]);
        crate::config::load(&fx.main()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn z(name: &str) -> ZoneId {
        ZoneId::new(name).expect("zone id")
    }

    fn matched(zone: Option<&str>, confidence: Confidence) -> ClassMatch {
        ClassMatch {
            rule: "r".into(),
            class: DeviceClass::Plug,
            zone: zone.map(z),
            confidence,
            matched: vec![],
        }
    }

    #[test]
    fn restriction_compares_every_permission() {
        let cfg = config();
        let p = &cfg.policy;
        let r = |a: &str, b: &str| at_least_as_restricted(p, &z(a), &z(b));
        assert!(r("quarantine", "iot"), "fewer services, no internet");
        assert!(!r("iot", "quarantine"), "internet and ntp are more");
        assert!(r("iot", "trusted"));
        assert!(!r("trusted", "iot"), "reaching zones is more");
        assert!(r("iot", "iot_mesh"));
        assert!(!r("iot_mesh", "iot"), "intra-zone connections are more");
        assert!(
            !r("lab", "iot") && !r("iot", "lab"),
            "neither: lab reaches iot, iot has internet"
        );
        assert!(r("quarantine", "quarantine"));
        // Fail closed on zones the policy does not have.
        assert!(!r("nowhere", "trusted"));
        assert!(!r("quarantine", "nowhere"));
        assert!(r("nowhere", "nowhere"));
    }

    #[test]
    fn placement_follows_confidence() {
        let cfg = config();
        let p = &cfg.policy;
        let q = z("quarantine");
        // No zone: nothing to place.
        assert_eq!(placement(p, &matched(None, Confidence::High), &q), None);
        // Medium and high place the device in their zone, even a less restricted one.
        assert_eq!(
            placement(p, &matched(Some("iot"), Confidence::High), &q),
            Some(z("iot"))
        );
        assert_eq!(
            placement(p, &matched(Some("iot"), Confidence::Medium), &q),
            Some(z("iot"))
        );
        // Low never loosens.
        assert_eq!(placement(p, &matched(Some("iot"), Confidence::Low), &q), None);
        assert_eq!(placement(p, &matched(Some("lab"), Confidence::Low), &z("iot")), None);
        // Low may tighten, or keep the same zone.
        assert_eq!(
            placement(p, &matched(Some("quarantine"), Confidence::Low), &z("iot")),
            Some(q.clone())
        );
        assert_eq!(
            placement(p, &matched(Some("iot"), Confidence::Low), &z("trusted")),
            Some(z("iot"))
        );
        assert_eq!(
            placement(p, &matched(Some("iot"), Confidence::Low), &z("iot")),
            Some(z("iot"))
        );
        // A zone that is gone places nothing, whatever the confidence.
        assert_eq!(placement(p, &matched(Some("gone"), Confidence::High), &q), None);
    }
}
