//! Root test against a real kernel and a real client, in throwaway namespaces.
//!
//! Safety: nothing here touches the host's namespace. Links are created inside
//! the server namespace with their peers placed directly in the client
//! namespace; sockets are opened by a thread that has joined the server
//! namespace (`Netns::run_in`); busybox runs via `ip netns exec`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bulkhead_netns::Netns;
use dhcproto::v4::MessageType;

use super::*;
use crate::config::{Ipv4Range, MacAddr, SegmentId};

const CLIENT_MAC: &str = "02:00:00:77:00:01";
const OTHER_MAC: &str = "02:00:00:77:00:02";

fn lan() -> SegmentConfig {
    SegmentConfig {
        id: SegmentId::new("lan").expect("valid"),
        interface: "s0".into(),
        server_ip: Ipv4Addr::new(10, 77, 0, 1),
        subnet: "10.77.0.1/24".parse().expect("net"),
        pool: Ipv4Range {
            start: Ipv4Addr::new(10, 77, 0, 100),
            end: Ipv4Addr::new(10, 77, 0, 150),
        },
        lease_secs: 3600,
        domain: Some("home.arpa".into()),
        dns: vec![],
        static_leases: Default::default(),
    }
}

/// What the server thread saw.
struct Served {
    leases: Vec<Lease>,
    captured: Vec<Result<ClientPacket, CaptureError>>,
    /// From the capture socket on `s1`, where nobody serves.
    captured_other: Vec<Result<ClientPacket, CaptureError>>,
}

/// Runs the server and a capture socket on `s0`, and a capture socket on `s1`,
/// until `stop` (or 15 s).
fn serve(ready: mpsc::Sender<()>, stop: &AtomicBool) -> Served {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let socket = server_socket("s0").expect("server socket");
        let capture = CaptureSocket::open("s0").expect("capture socket");
        let capture_other = CaptureSocket::open("s1").expect("capture socket");
        let segment = SegmentId::new("lan").expect("valid");
        let mut server = DhcpServer::new(vec![lan()], vec![]);
        let (mut captured, mut captured_other) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(15);
        ready.send(()).expect("main thread waits");
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let (n, _) = r.expect("recv");
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("clock")
                        .as_secs() as i64;
                    if let Some(reply) = server.handle(&segment, &buf[..n], now).reply {
                        socket.send_to(&reply.bytes, reply.to).await.expect("send");
                    }
                }
                r = capture.recv_client_packet() => captured.push(r.expect("capture recv")),
                r = capture_other.recv_client_packet() => captured_other.push(r.expect("capture recv")),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        Served {
            leases: server.leases().cloned().collect(),
            captured,
            captured_other,
        }
    })
}

#[test]
fn busybox_udhcpc_gets_an_address_and_capture_sees_only_its_interface() {
    if !bulkhead_netns::root_or_skip(
        "discovery::dhcp::netns_test::busybox_udhcpc_gets_an_address_and_capture_sees_only_its_interface",
    ) {
        return;
    }
    let srv = Netns::new("dhcp-srv").expect("server namespace");
    let cli = Netns::new("dhcp-cli").expect("client namespace");
    for (s, c, mac) in [("s0", "c0", CLIENT_MAC), ("s1", "c1", OTHER_MAC)] {
        srv.ip(&["link", "add", s, "type", "veth", "peer", "name", c, "netns", cli.name()])
            .expect("veth");
        cli.ip(&["link", "set", c, "address", mac, "up"]).expect("client link");
        srv.ip(&["link", "set", s, "up"]).expect("server link");
    }
    srv.ip(&["addr", "add", "10.77.0.1/24", "dev", "s0"]).expect("address");

    let stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (served, got_lease, other_tried) = std::thread::scope(|scope| {
        let server = scope.spawn(|| srv.run_in(|| serve(ready_tx, &stop)).expect("run in namespace"));
        ready_rx.recv_timeout(Duration::from_secs(5)).expect("server ready");
        // A client on the other link: its packets must not reach the capture.
        let other_tried = cli
            .exec_ok(&[
                "busybox",
                "udhcpc",
                "-f",
                "-i",
                "c1",
                "-n",
                "-q",
                "-t",
                "1",
                "-T",
                "1",
                "-s",
                "/bin/true",
            ])
            .expect("udhcpc on c1 runs");
        let out = cli
            .exec(&[
                "busybox",
                "udhcpc",
                "-f",
                "-i",
                "c0",
                "-n",
                "-q",
                "-t",
                "3",
                "-T",
                "1",
                "-s",
                "/bin/true",
            ])
            .expect("udhcpc on c0 gets a lease");
        stop.store(true, Ordering::SeqCst);
        let served = server.join().expect("server thread");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (served, text, other_tried)
    });
    assert!(!other_tried, "nobody serves c1");
    assert!(
        got_lease.contains("lease of 10.77.0.100 obtained"),
        "udhcpc said: {got_lease}"
    );
    let mac: MacAddr = CLIENT_MAC.parse().expect("mac");
    assert!(
        served
            .leases
            .iter()
            .any(|l| l.mac == mac && l.ip == Ipv4Addr::new(10, 77, 0, 100)),
        "leases: {:?}",
        served.leases
    );
    let packets: Vec<&ClientPacket> = served.captured.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        packets.len(),
        served.captured.len(),
        "all captured packets parse: {:?}",
        served.captured
    );
    assert!(packets.iter().all(|p| p.mac == mac), "only s0's client: {packets:?}");
    assert!(packets.iter().any(|p| p.kind == MessageType::Discover));
    assert!(packets
        .iter()
        .any(|p| p.kind == MessageType::Request && p.address == Some(Ipv4Addr::new(10, 77, 0, 100))));
    let other: MacAddr = OTHER_MAC.parse().expect("mac");
    assert!(!served.captured_other.is_empty(), "c1's client did send");
    assert!(
        served
            .captured_other
            .iter()
            .all(|r| r.as_ref().is_ok_and(|p| p.mac == other)),
        "only s1's client on s1: {:?}",
        served.captured_other
    );
}
