//! The coordinator with a fake nft and conntrack, explicit time and an in-memory
//! store: every request and discovery path, what reaches the kernel, and the
//! alerts.
//!
//! This file holds what the tests share: `Harness` (a `DaemonState` over
//! `ListingNft`, a fake nft whose listing follows the last full document, and
//! `FakeConntrack`, which records the addresses it was asked to cut; the wall
//! clock fixed), `home` (a harness with two devices applied) and the helpers
//! `mac`, `zone`, `evidence`, `done`, `refused`, `view`, `applied`, `stored`.
//! The tests, by subject:
//!
//! - `enforcement.rs`: the incremental path against a full recompute, a config
//!   nft refuses, a failing firewall's one alert, a refused delta a table
//!   replace repairs.
//! - `discovery.rs`: a discovered device enforced and alerted, identity
//!   suggestions and linking, neighbour sightings, the tracking limit, the
//!   new-device alert once an address says where it joined.
//! - `requests.rs`: the homeowner's requests: approve, rename, block, tunnel
//!   choices, the zones list, acknowledging alerts; and the alerts' prune.
//! - `domain_sets.rs`: addresses held in domain sets, expiry, full replaces.
//! - `credentials.rs`: the setup token and the password hash.
//!
//! The harness and helpers stay private: the subject files are child modules,
//! which see them.

mod credentials;
mod discovery;
mod domain_sets;
mod enforcement;
mod requests;
mod sharing;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::config::ZoneId;
use crate::control::{DeviceView, Request, Response};
use crate::firewall::NftBackend;
use crate::policy::Membership;
use crate::testutil::{listing_of, FakeNft};

use crate::testutil::RecordingConntrack as FakeConntrack;

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn zone(z: &str) -> ZoneId {
    ZoneId::new(z).expect("zone")
}

/// A state whose fake nft "holds" whatever full document it was given last.
struct Harness {
    state: DaemonState,
    cut: FakeConntrack,
    refuse_full: Arc<AtomicBool>,
    refuse_deltas: Arc<AtomicBool>,
    /// The JSON of the last full document the fake nft took.
    last_full: Arc<std::sync::Mutex<Option<String>>>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        Harness::with_store(config, Store::in_memory(0).expect("store"))
    }
    fn with_store(config: Config, store: Store) -> Harness {
        let cut = FakeConntrack::default();
        let nft = ListingNft::default();
        let refuse_full = nft.refuse_full.clone();
        let refuse_deltas = nft.refuse_deltas.clone();
        let last_full = nft.last_full.clone();
        let mut state = DaemonState::new(config, store, Box::new(nft), Box::new(cut.clone())).expect("state");
        state.wall_clock = || 1_000_000;
        Harness {
            state,
            cut,
            refuse_full,
            refuse_deltas,
            last_full,
        }
    }
    fn full_membership(&self) -> Membership {
        super::membership_of(&self.state.config, &self.state.inventory, &self.state.links)
    }
}

/// FakeNft whose listing follows the last full document; can be told to
/// refuse full documents as nft would refuse a bad one, and set deltas as the
/// kernel would refuse one for an element that is not there.
#[derive(Default)]
struct ListingNft {
    inner: FakeNft,
    refuse_full: Arc<AtomicBool>,
    refuse_deltas: Arc<AtomicBool>,
    last_full: Arc<std::sync::Mutex<Option<String>>>,
}

impl NftBackend for ListingNft {
    fn apply(&self, doc: &nftables::schema::Nftables<'_>) -> Result<(), nftables::helper::NftablesError> {
        let json = serde_json::to_string(doc).expect("json");
        if !json.contains("\"table\":{") && self.refuse_deltas.load(Ordering::SeqCst) {
            return Err(nftables::helper::NftablesError::NftFailed {
                program: "netlink".into(),
                hint: "applying a set delta: the kernel refused the batch".into(),
                stdout: String::new(),
                stderr: "ENOENT".into(),
            });
        }
        if json.contains("\"table\":{") {
            if self.refuse_full.load(Ordering::SeqCst) {
                return Err(nftables::helper::NftablesError::NftFailed {
                    program: "nft".into(),
                    hint: "applying ruleset".into(),
                    stdout: String::new(),
                    stderr: "Error: Could not process rule".into(),
                });
            }
            let owned: nftables::schema::Nftables<'static> = serde_json::from_str(&json).expect("reparse");
            *self.inner.listing.lock().expect("lock") = Some(listing_of(&owned));
            *self.last_full.lock().expect("lock") = Some(json.clone());
        }
        self.inner.apply(doc)
    }
    fn list_table(
        &self,
        family: nftables::types::NfFamily,
    ) -> Result<nftables::schema::Nftables<'static>, nftables::helper::NftablesError> {
        self.inner.list_table(family)
    }
}

fn evidence(host: &str, params: &[u8]) -> Box<crate::classify::Evidence> {
    Box::new(crate::classify::Evidence {
        hostname: Some(host.into()),
        dhcp_params: Some(params.to_vec()),
        ..Default::default()
    })
}

/// A harness with mac(1) (trusted, 10.0.1.10) and mac(2) (iot, 10.0.2.20),
/// applied.
fn home(config: Config) -> Harness {
    let mut h = Harness::new(config);
    h.state.reconcile().expect("start");
    for (m, ip, z) in [(1, "10.0.1.10", "trusted"), (2, "10.0.2.20", "iot")] {
        let add = Request::AddDevice {
            mac: mac(m),
            ip: Some(ip.parse().expect("ip")),
        };
        assert!(matches!(h.state.handle(add, 1), Response::Done { .. }));
        let set = Request::SetZone {
            mac: mac(m),
            zone: zone(z),
        };
        assert!(matches!(h.state.handle(set, 1), Response::Done { .. }));
    }
    h.cut.0.lock().expect("lock").clear();
    h
}

fn done(r: Response) -> String {
    match r {
        Response::Done { message } => message,
        other => panic!("expected done, got {other:?}"),
    }
}

fn refused(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn view(h: &Harness, m: MacAddr) -> DeviceView {
    h.state
        .device_views(2)
        .into_iter()
        .find(|d| d.mac == m)
        .expect("device view")
}

fn applied(h: &Harness) -> &Membership {
    &h.state.enforcer.applied().expect("applied").membership
}

/// The MACs the store holds devices for.
fn stored_macs(h: &Harness) -> Vec<MacAddr> {
    h.state
        .store
        .load_devices()
        .expect("load")
        .iter()
        .map(|d| d.mac)
        .collect()
}

fn stored(h: &Harness, m: MacAddr) -> crate::inventory::Device {
    h.state
        .store
        .load_devices()
        .expect("load")
        .into_iter()
        .find(|d| d.mac == m)
        .expect("stored")
}
