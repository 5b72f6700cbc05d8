//! The runtime side of the services seat (see `core/services.rs` for the
//! contract): a service task gets a [`ServiceHandle`]; the event loop owns the
//! [`ServiceHub`], publishes snapshots after a turn in which facts changed, and
//! answers requests in order with the rest of the loop's work.
//!
//! Snapshots go through a `tokio::sync::watch` channel: a slow service sees
//! only the newest one, never a backlog, and building one costs nothing while
//! no service listens.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::core::{DaemonState, InventorySnapshot, ServiceReply, ServiceRequest};
use crate::firewall::error_chain;
use crate::inventory::UnixTime;

/// Requests waiting for the loop; a service that floods waits for room.
const QUEUE: usize = 64;

/// One request and where its answer goes.
pub struct ServiceCall {
    request: ServiceRequest,
    reply: oneshot::Sender<Result<ServiceReply, String>>,
}

/// What a service task holds.
#[derive(Clone)]
pub struct ServiceHandle {
    /// The newest snapshot; `changed().await` wakes on the next.
    pub snapshots: watch::Receiver<Arc<InventorySnapshot>>,
    requests: mpsc::Sender<ServiceCall>,
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
}

/// What the event loop holds.
pub struct ServiceHub {
    snapshots: watch::Sender<Arc<InventorySnapshot>>,
    published: Option<u64>,
    requests_tx: mpsc::Sender<ServiceCall>,
    requests: mpsc::Receiver<ServiceCall>,
}

impl Default for ServiceHub {
    fn default() -> Self {
        let (snapshots, _) = watch::channel(Arc::new(InventorySnapshot::default()));
        let (requests_tx, requests) = mpsc::channel(QUEUE);
        ServiceHub {
            snapshots,
            published: None,
            requests_tx,
            requests,
        }
    }
}

impl ServiceHub {
    /// A handle for one more service (it sees the newest snapshot at once
    /// after the next [`publish`](Self::publish)).
    pub fn handle(&mut self) -> ServiceHandle {
        // A new listener must get a snapshot even if nothing changes.
        self.published = None;
        ServiceHandle {
            snapshots: self.snapshots.subscribe(),
            requests: self.requests_tx.clone(),
        }
    }

    /// After a loop turn: a new snapshot if facts changed and a service listens.
    pub fn publish(&mut self, state: &DaemonState) {
        if self.snapshots.receiver_count() == 0 || self.published == Some(state.facts_changed()) {
            return;
        }
        self.published = Some(state.facts_changed());
        self.snapshots.send_replace(Arc::new(state.snapshot()));
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
            let mut snapshots = service.snapshots.clone();
            loop {
                let zone = snapshots
                    .borrow_and_update()
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
                snapshots.changed().await.expect("hub alive");
            }
        });

        hub.publish(&state);
        let added = state.handle(
            Request::AddDevice {
                mac: laptop,
                ip: Some(laptop_ip),
            },
            100,
        );
        assert!(matches!(added, crate::control::Response::Done { .. }), "{added:?}");
        hub.publish(&state);
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

    #[test]
    fn nothing_is_built_while_no_service_listens() {
        let (state, _) = state();
        let mut hub = ServiceHub::default();
        hub.publish(&state);
        assert_eq!(hub.published, None, "no listener, no snapshot");
        let _service = hub.handle();
        hub.publish(&state);
        assert_eq!(hub.published, Some(state.facts_changed()));
    }
}
