//! The overview: composed from the device list, the newest alerts, the
//! tunnel, the resolver's counters and the top talkers (five backend calls, made together).

use std::collections::BTreeMap;

use crate::backend::{Backend, BackendError};
use crate::model::{AlertView, DeviceSummary, DnsSummaryView, Overview, VpnView, ZoneCount};

/// Asks the backend and composes.
pub async fn load(backend: &dyn Backend) -> Result<Overview, BackendError> {
    let (devices, alerts, vpn, dns, traffic) = tokio::try_join!(
        backend.devices(),
        backend.alerts(Overview::ALERT_WINDOW),
        backend.vpn(),
        backend.dns_summary(),
        backend.traffic(None)
    )?;
    let mut o = compose(devices, alerts, &vpn, dns.as_ref());
    o.top_talkers = traffic.map(|t| t.top).unwrap_or_default();
    Ok(o)
}

/// The overview of these devices, alerts (newest first), tunnel and resolver
/// (`None`: it is off).
pub fn compose(
    devices: Vec<DeviceSummary>,
    alerts: Vec<AlertView>,
    vpn: &VpnView,
    dns: Option<&DnsSummaryView>,
) -> Overview {
    let mut zones: BTreeMap<&str, ZoneCount> = BTreeMap::new();
    for d in &devices {
        let z = zones.entry(d.zone.as_str()).or_insert_with(|| ZoneCount {
            zone: d.zone.clone(),
            devices: 0,
            online: 0,
        });
        z.devices += 1;
        z.online += usize::from(d.online);
    }
    let zones = zones.into_values().collect();
    let online = devices.iter().filter(|d| d.online).count();
    let blocked = devices.iter().filter(|d| d.blocked).count();
    let total = devices.len();
    let mut quarantined: Vec<DeviceSummary> = devices.into_iter().filter(|d| d.quarantined).collect();
    quarantined.sort_by(|a, b| b.first_seen.cmp(&a.first_seen).then_with(|| a.mac.cmp(&b.mac)));
    Overview {
        devices: total,
        online,
        zones,
        quarantined,
        blocked,
        vpn_configured: vpn.configured,
        vpn_state: vpn.state.clone(),
        vpn_last_handshake: vpn.peers.iter().filter_map(|p| p.last_handshake).max(),
        unacknowledged_alerts: alerts.iter().filter(|a| !a.acknowledged).count(),
        latest_alerts: alerts.into_iter().take(Overview::LATEST_ALERTS).collect(),
        dns_questions: dns.map(|d| d.per_device.iter().map(|c| c.queries).sum()),
        dns_blocked: dns.map(|d| d.per_device.iter().map(|c| c.blocked).sum()),
        top_talkers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeBackend;

    #[test]
    fn counts_by_zone_and_lists_quarantined() {
        let fake = FakeBackend::demo();
        let devices = fake.device_list();
        let alerts = fake.alert_list();
        let dns = fake.dns_summary_view();
        let o = compose(devices.clone(), alerts.clone(), &fake.vpn_view(), dns.as_ref());
        assert_eq!(o.devices, devices.len());
        assert_eq!(o.online, devices.iter().filter(|d| d.online).count());
        assert_eq!(o.zones.iter().map(|z| z.devices).sum::<usize>(), devices.len());
        assert!(o.zones.windows(2).all(|w| w[0].zone < w[1].zone));
        assert!(!o.quarantined.is_empty());
        assert!(o.quarantined.iter().all(|d| d.quarantined));
        assert_eq!(
            o.unacknowledged_alerts,
            alerts.iter().filter(|a| !a.acknowledged).count()
        );
        assert!(o.latest_alerts.len() <= Overview::LATEST_ALERTS);
        assert_eq!(o.vpn_state, "up");
        let dns = dns.expect("the demo runs the resolver");
        let today = |f: fn(&crate::model::DnsDeviceCounts) -> u64| Some(dns.per_device.iter().map(f).sum::<u64>());
        assert_eq!(
            (o.dns_questions, o.dns_blocked),
            (today(|c| c.queries), today(|c| c.blocked))
        );
        assert!(o.dns_questions > Some(0));
        let off = compose(devices, alerts, &fake.vpn_view(), None);
        assert_eq!((off.dns_questions, off.dns_blocked), (None, None));
    }
}
