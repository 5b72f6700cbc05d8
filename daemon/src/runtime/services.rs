//! The runtime side of the services seat (see `core/services.rs` for the
//! contract): a service task gets a [`ServiceHandle`]; the event loop owns the
//! [`ServiceHub`], patches the shared snapshot after each turn with the devices
//! whose facts changed, and answers requests in order with the rest of the
//! loop's work.
//!
//! The snapshot is one [`InventorySnapshot`] behind a read-write lock, patched
//! in place (O(devices changed) per turn: a DHCP burst of new devices must not
//! cost a pass over the whole inventory per packet — the DHCP benchmark fell
//! from 4,528 to 317 new devices per second when it did). Its generation goes
//! out on a `watch` channel for services that wait for changes.

use std::sync::{Arc, RwLock};

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::alerts::Alert;
use crate::core::{DaemonState, InventorySnapshot, RouterSnapshot, ServiceReply, ServiceRequest};
use crate::firewall::error_chain;
use crate::inventory::Touched;
use crate::inventory::UnixTime;

/// Requests waiting for the loop; a service that floods waits for room.
const QUEUE: usize = 64;

/// Alerts a slow subscriber may fall behind by before it misses some (it is
/// told how many: `RecvError::Lagged`).
const ALERT_BACKLOG: usize = 256;

/// One request and where its answer goes.
pub struct ServiceCall {
    request: ServiceRequest,
    reply: oneshot::Sender<Result<ServiceReply, String>>,
}

/// The inventory as services see it, patched by the loop.
pub type SharedInventory = Arc<RwLock<InventorySnapshot>>;

/// What a service task holds.
#[derive(Clone)]
pub struct ServiceHandle {
    /// The inventory; read it under the lock, briefly.
    pub inventory: SharedInventory,
    /// Its generation; `changed().await` wakes after the next patch.
    pub generations: watch::Receiver<u64>,
    /// The router: the tunnel's state and the open alerts (changes only).
    pub router: watch::Receiver<RouterSnapshot>,
    requests: mpsc::Sender<ServiceCall>,
    alerts: broadcast::Sender<Alert>,
}

impl ServiceHandle {
    /// Asks the core; the answer, or why not (the refusal's whole chain, or
    /// "the daemon is stopping").
    pub async fn request(&self, request: ServiceRequest) -> Result<ServiceReply, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(ServiceCall { request, reply })
            .await
            .map_err(|_| "the daemon is stopping".to_string())?;
        answer.await.map_err(|_| "the daemon is stopping".to_string())?
    }

    /// The alert stream from now on: every alert the core raises (stored,
    /// with its id), in order, after the loop turn that raised it.
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<Alert> {
        self.alerts.subscribe()
    }
}

/// What the event loop holds.
pub struct ServiceHub {
    inventory: SharedInventory,
    generations: watch::Sender<u64>,
    /// The whole snapshot must be rebuilt (nothing built yet).
    stale: bool,
    requests_tx: mpsc::Sender<ServiceCall>,
    requests: mpsc::Receiver<ServiceCall>,
    alerts: broadcast::Sender<Alert>,
    router: watch::Sender<RouterSnapshot>,
    /// The alerts' generation the router snapshot was counted at.
    router_alerts: Option<u64>,
}

impl Default for ServiceHub {
    fn default() -> Self {
        let (generations, _) = watch::channel(0);
        let (requests_tx, requests) = mpsc::channel(QUEUE);
        let (alerts, _) = broadcast::channel(ALERT_BACKLOG);
        let (router, _) = watch::channel(RouterSnapshot::default());
        ServiceHub {
            alerts,
            router,
            router_alerts: None,
            inventory: Arc::new(RwLock::new(InventorySnapshot::default())),
            generations,
            stale: true,
            requests_tx,
            requests,
        }
    }
}

impl ServiceHub {
    /// A handle for one more service (the snapshot is whole after the next
    /// [`publish`](Self::publish)).
    pub fn handle(&mut self) -> ServiceHandle {
        ServiceHandle {
            inventory: self.inventory.clone(),
            generations: self.generations.subscribe(),
            router: self.router.subscribe(),
            requests: self.requests_tx.clone(),
            alerts: self.alerts.clone(),
        }
    }

    /// After a loop turn: the alerts raised onto the alert stream, and the
    /// changed devices into the shared snapshot (the whole of it after a new
    /// config). The changes are taken even while no
    /// service listens, so they never pile up.
    pub fn publish(&mut self, state: &mut DaemonState) {
        for alert in state.take_published_alerts() {
            // No subscriber: nobody to tell (the store has it).
            let _ = self.alerts.send(alert);
        }
        let touched = state.take_touched();
        if self.generations.receiver_count() == 0 {
            self.stale = true;
            return;
        }
        let generation = state.facts_changed();
        let whole = match (&touched, self.stale) {
            (_, true) | (Touched::All, _) => Some(state.snapshot()),
            (Touched::Some(macs), false) if macs.is_empty() => return,
            (Touched::Some(_), false) => None,
        };
        // Built before the lock is taken: readers wait only for the swap or
        // the patches.
        let patches: Vec<_> = match &touched {
            Touched::Some(macs) if whole.is_none() => macs.iter().map(|m| (*m, state.device_snapshot(m))).collect(),
            _ => Vec::new(),
        };
        let Ok(mut shared) = self.inventory.write() else { return };
        match whole {
            Some(snapshot) => *shared = snapshot,
            None => {
                for (mac, device) in patches {
                    shared.patch(mac, device);
                }
                shared.generation = generation;
            }
        }
        drop(shared);
        self.stale = false;
        self.generations.send_replace(generation);
    }

    /// After a loop turn: the router's state (`tunnel`: its state's name, if
    /// one is configured). The open alerts are counted again only when the
    /// alerts' generation moved; subscribers wake only on a change.
    pub fn publish_router(&mut self, state: &DaemonState, tunnel: Option<String>) {
        let alerts = state.alerts_changed();
        let open_alerts = match self.router_alerts {
            Some(seen) if seen == alerts => self.router.borrow().open_alerts,
            _ if self.router.receiver_count() == 0 => return,
            _ => state.open_alerts(),
        };
        self.router_alerts = Some(alerts);
        let now = RouterSnapshot { tunnel, open_alerts };
        self.router.send_if_modified(|r| {
            let changed = *r != now;
            *r = now;
            changed
        });
    }

    /// The next request (cancel-safe; pending while none comes).
    pub async fn next(&mut self) -> Option<ServiceCall> {
        self.requests.recv().await
    }

    /// Answers one request on the loop.
    pub fn answer(state: &mut DaemonState, call: ServiceCall, now: UnixTime) {
        let answer = state.service_request(call.request, now).map_err(|e| error_chain(&e));
        // The service may have gone; nothing to do then.
        let _ = call.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::{DomainSetId, MacAddr};
    use crate::control::Request;
    use crate::testutil::{listing_of, tunnel_config, FakeNft, NoConntrack};

    fn state() -> (DaemonState, Arc<FakeNft>) {
        let config = tunnel_config();
        let nft = Arc::new(FakeNft::default());
        let nobody = crate::inventory::Inventory::from_devices(Vec::new());
        let empty = crate::firewall::render::full_document(
            &crate::policy::desired_ruleset(&config, &Default::default()),
            &crate::policy::desired_membership(&config, &nobody),
        );
        *nft.listing.lock().expect("lock") = Some(listing_of(&empty));
        let store = crate::store::Store::in_memory(0).expect("store");
        let mut state = DaemonState::new(config, store, Box::new(nft.clone()), Box::new(NoConntrack)).expect("state");
        state.reconcile().expect("start");
        (state, nft)
    }

    /// A service task sees the device a DHCP-like event added, asks for its
    /// DNS answer to be held in a domain set, and the core holds it until the
    /// TTL passes.
    #[tokio::test(flavor = "current_thread")]
    async fn a_service_reads_snapshots_and_holds_elements_through_the_core() {
        let (mut state, nft) = state();
        let mut hub = ServiceHub::default();
        let service = hub.handle();
        let laptop = MacAddr([2, 0, 0, 0, 0, 10]);
        let laptop_ip: IpAddr = "10.0.1.10".parse().expect("ip");
        let answer: IpAddr = "198.51.100.7".parse().expect("ip");
        let set = DomainSetId::new("streaming").expect("id");

        // The "DNS service": waits for a snapshot naming the client, then asks.
        let task_set = set.clone();
        let task = tokio::spawn(async move {
            let mut generations = service.generations.clone();
            loop {
                generations.borrow_and_update();
                let zone = service
                    .inventory
                    .read()
                    .expect("lock")
                    .device_at(laptop_ip)
                    .map(|d| d.zone.clone());
                if let Some(zone) = zone {
                    let request = ServiceRequest::Hold {
                        set: task_set,
                        addresses: vec![answer],
                        ttl_secs: 30,
                    };
                    return (zone, service.request(request).await);
                }
                generations.changed().await.expect("hub alive");
            }
        });

        hub.publish(&mut state);
        let added = state.handle(
            Request::AddDevice {
                mac: laptop,
                ip: Some(laptop_ip),
            },
            100,
        );
        assert!(matches!(added, crate::control::Response::Done { .. }), "{added:?}");
        hub.publish(&mut state);
        let call = hub.next().await.expect("a request");
        ServiceHub::answer(&mut state, call, 100);
        let (zone, reply) = task.await.expect("service task");
        assert_eq!(zone.as_str(), "quarantine", "an unknown device, as enforced");
        assert_eq!(
            reply,
            Ok(ServiceReply::Held(crate::firewall::Held { given: 1, fresh: 1 }))
        );
        assert_eq!(
            nft.applied.lock().expect("lock").last().map(String::as_str),
            Some("delta"),
            "the address went to the kernel as an element delta"
        );
        assert!(state.snapshot().domain_sets.contains(&set));

        // A set the policy does not have is refused with the reason.
        let other = DomainSetId::new("other").expect("id");
        let mut hub2 = ServiceHub::default();
        let service = hub2.handle();
        let ask = tokio::spawn(async move {
            service
                .request(ServiceRequest::Hold {
                    set: other,
                    addresses: vec![answer],
                    ttl_secs: 30,
                })
                .await
        });
        let call = hub2.next().await.expect("a request");
        ServiceHub::answer(&mut state, call, 101);
        let refused = ask.await.expect("task").expect_err("unknown set");
        assert!(refused.contains("is not a domain set"), "{refused}");
    }

    /// Home Assistant's buttons through the seat: the core carries out the
    /// homeowner's command or refuses it with the CLI's reason; the router
    /// snapshot counts the open alerts.
    #[test]
    fn homeowner_commands_go_through_the_core_and_the_router_counts_open_alerts() {
        use crate::core::{HomeownerCommand, ServiceError};
        let (mut state, _) = state();
        let mut hub = ServiceHub::default();
        let service = hub.handle();
        let stranger = MacAddr([2, 0, 0, 0, 0, 66]);
        state.handle(
            Request::AddDevice {
                mac: stranger,
                ip: None,
            },
            100,
        );
        hub.publish(&mut state);
        assert!(service.inventory.read().expect("lock").devices[&stranger].quarantined);
        let r = state.service_request(ServiceRequest::Homeowner(HomeownerCommand::Block(stranger, true)), 101);
        assert_eq!(r.ok(), Some(ServiceReply::Commanded));
        let r = state.service_request(ServiceRequest::Homeowner(HomeownerCommand::Approve(stranger)), 102);
        assert_eq!(r.ok(), Some(ServiceReply::Commanded));
        hub.publish(&mut state);
        let seen = service.inventory.read().expect("lock").devices[&stranger].clone();
        assert!(seen.blocked && !seen.quarantined, "{seen:?}");
        let nobody = MacAddr([2, 0, 0, 0, 0, 67]);
        let r = state.service_request(ServiceRequest::Homeowner(HomeownerCommand::Approve(nobody)), 103);
        assert!(matches!(r, Err(ServiceError::Refused(_))), "{r:?}");

        state.raise(crate::alerts::Alert::new(
            104,
            crate::alerts::AlertKind::TunnelDown,
            None,
            "down".into(),
        ));
        hub.publish_router(&state, Some("down".into()));
        let router = service.router.borrow().clone();
        assert_eq!(router.tunnel.as_deref(), Some("down"));
        assert!(router.open_alerts >= 1, "{router:?}");
        state.handle(Request::AckAlerts { ids: None }, 105);
        hub.publish_router(&state, Some("up".into()));
        assert_eq!(service.router.borrow().open_alerts, 0);
    }

    #[test]
    fn nothing_is_built_while_no_service_listens_and_then_only_what_changed() {
        let (mut state, _) = state();
        let mut hub = ServiceHub::default();
        let laptop = MacAddr([2, 0, 0, 0, 0, 10]);
        state.handle(
            Request::AddDevice {
                mac: laptop,
                ip: Some("10.0.1.10".parse().expect("ip")),
            },
            100,
        );
        hub.publish(&mut state);
        assert!(hub.stale, "no listener: nothing built");
        assert!(hub.inventory.read().expect("lock").devices.is_empty());
        let service = hub.handle();
        hub.publish(&mut state);
        assert!(!hub.stale);
        assert_eq!(*service.generations.borrow(), state.facts_changed());
        assert!(service.inventory.read().expect("lock").devices.contains_key(&laptop));
        // A new address moves from the laptop to the phone: both are patched,
        // and the index follows.
        let phone = MacAddr([2, 0, 0, 0, 0, 11]);
        let moved: IpAddr = "10.0.1.10".parse().expect("ip");
        state.handle(
            Request::AddDevice {
                mac: phone,
                ip: Some(moved),
            },
            101,
        );
        hub.publish(&mut state);
        {
            let shared = service.inventory.read().expect("lock");
            assert_eq!(shared.device_at(moved).map(|d| d.mac), Some(phone));
            assert!(
                shared.devices.get(&laptop).is_some_and(|d| d.addresses.is_empty()),
                "the loser of the address was patched too"
            );
        }
        state.handle(
            Request::AddDevice {
                mac: laptop,
                ip: Some("10.0.1.11".parse().expect("ip")),
            },
            102,
        );
        assert_eq!(state.take_touched(), crate::inventory::Touched::Some([laptop].into()));
        state.handle(
            Request::AddDevice {
                mac: laptop,
                ip: Some("10.0.1.12".parse().expect("ip")),
            },
            103,
        );
        hub.publish(&mut state);
        let shared = service.inventory.read().expect("lock");
        assert_eq!(
            shared.device_at("10.0.1.12".parse().expect("ip")).map(|d| d.mac),
            Some(laptop)
        );
        assert_eq!(shared.generation, state.facts_changed());
        // The patch reads the device as it is now (.11 included, although the
        // test took that touch): the same as a whole rebuild.
        assert_eq!(*shared, state.snapshot(), "the patched snapshot equals a whole rebuild");
    }
}
