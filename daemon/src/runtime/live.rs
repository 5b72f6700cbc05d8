//! What the web UI's open pages and its health endpoint see change: after each
//! loop turn, generations are compared (O(1)) and subscribers told.

use super::tunnel;
use crate::core::DaemonState;

/// Runs after every event: O(zones), never a pass over the inventory.
pub(super) fn health_of(state: &DaemonState) -> bulkhead_web::Health {
    bulkhead_web::Health {
        devices: state.device_count(),
        zones: state.zone_counts(),
    }
}

/// What the web UI's open pages last heard about: after each event the loop
/// compares generations (O(1)) and tells subscribers what changed.
#[derive(Default)]
pub(super) struct LiveSeen {
    facts: u64,
    alerts: u64,
    vpn: String,
}

impl LiveSeen {
    pub(super) fn notify(
        &mut self,
        state: &DaemonState,
        vpn: &tunnel::TunnelRuntime,
        live: &tokio::sync::broadcast::Sender<bulkhead_web::model::LiveEvent>,
    ) {
        use bulkhead_web::model::LiveEvent;
        if state.facts_changed() != self.facts {
            self.facts = state.facts_changed();
            let _ = live.send(LiveEvent::Devices);
        }
        if state.alerts_changed() != self.alerts {
            self.alerts = state.alerts_changed();
            let _ = live.send(LiveEvent::Alerts);
        }
        let vpn_state = vpn.state_name();
        if vpn_state != self.vpn {
            self.vpn = vpn_state;
            let _ = live.send(LiveEvent::Vpn);
        }
    }
}
