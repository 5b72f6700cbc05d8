//! The neighbour watch against a real kernel in a throwaway namespace.

use std::time::Duration;

use bulkhead_netns::{root_or_skip, Netns};

use super::{NeighbourUpdate, NeighbourWatch};

/// A burst of neighbour changes while the watch is not read fills its socket:
/// the kernel drops notifications, and the watch says so (the runtime then
/// reads the whole table again) instead of going on as if nothing was missed.
#[test]
fn a_burst_the_socket_cannot_hold_is_reported_as_an_overrun() {
    if !root_or_skip("discovery::neigh::netns_test::a_burst_the_socket_cannot_hold_is_reported_as_an_overrun") {
        return;
    }
    let ns = Netns::new("neigh-overrun").expect("namespace");
    ns.ip_batch(&[
        "link add nb0 type veth peer name nb1",
        "link set nb0 up",
        "link set nb1 up",
        "addr add 10.9.0.1/16 dev nb0",
    ])
    .expect("link");
    // 6,000 entries of ~100 bytes each: far more than a default receive buffer
    // (~212 KB) holds, written while the watch's connection task cannot run
    // (the current-thread runtime is blocked in this very call).
    let burst: Vec<String> = (0..6000u32)
        .map(|i| {
            let (a, b) = (i / 250, i % 250 + 2);
            format!(
                "neigh add 10.9.{a}.{b} lladdr 02:00:00:00:{:02x}:{:02x} dev nb0 nud permanent",
                a, b
            )
        })
        .collect();
    let seen = ns
        .run_in(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut watch = NeighbourWatch::start().expect("watch");
                // Let the connection task start listening, then block it out.
                tokio::time::sleep(Duration::from_millis(50)).await;
                ns.ip_batch(&burst).expect("burst");
                let mut present = 0usize;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    match tokio::time::timeout_at(deadline, watch.next()).await {
                        Ok(NeighbourUpdate::Overrun) => return (present, true),
                        Ok(NeighbourUpdate::Present { .. }) => present += 1,
                        Ok(_) => {}
                        Err(_) => return (present, false),
                    }
                }
            })
        })
        .expect("enter namespace");
    let (present, overrun) = seen;
    assert!(overrun, "no overrun reported after {present} of 6,000 notifications");
    assert!(present < 6000, "every notification arrived: the burst did not overrun");
}
