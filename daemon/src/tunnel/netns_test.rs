//! Interop: our device against wireguard-go (Debian's), the VPN server most
//! homeowners' providers run something like, in two throwaway namespaces:
//!
//! ```text
//!   client ns                               server ns
//!   bhwg<N> 10.64.0.2/32, fd64::2/128       wireguard-go bhs<N> 10.64.0.1/24, fd64::1/64
//!   veth 192.0.2.1/24  <───── veth ─────>   192.0.2.2/24 (later 192.0.2.3: roaming)
//! ```
//!
//! Needs root, `wireguard-go` and `wg`; under CI=true their absence fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bulkhead_netns::{eventually, ping, Netns};

use super::device::{DeviceConfig, PeerConfig, TunnelDevice};
use super::keys;
use crate::config::WgKey;
use crate::demo::vpn::start_wireguard_go;
use crate::firewall::ConntrackNetlink;

const SERVER_PORT: u16 = crate::demo::vpn::VPN_PORT;

/// Whether `wireguard-go` and `wg` are there (root is checked first, by
/// `root_or_skip`). Under CI=true a missing one fails the test.
fn tools_or_skip(test: &str) -> bool {
    let have = |p: &str| {
        std::process::Command::new("which")
            .arg(p)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have("wireguard-go") && have("wg") {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs wireguard-go and wg (apt-get install wireguard-go wireguard-tools)");
    }
    eprintln!("SKIPPED {test}: needs wireguard-go and wg");
    false
}

fn keypair() -> (WgKey, WgKey) {
    let private = keys::generate_private();
    let public = keys::public_key(&private);
    (private, public)
}

/// A wireguard-go server in `ns`, removed with the namespace.
struct Server {
    ifname: String,
    public: WgKey,
    key_file: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_file);
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.ifname));
    }
}

fn start_server(ns: &Netns, client_public: &WgKey, tag: &str) -> Server {
    let ifname = format!("bhs{}{tag}", std::process::id() % 100_000);
    let (private, public) = keypair();
    let key_file = std::env::temp_dir().join(format!("{ifname}.key"));
    keys::write_key_file(&key_file, &private, true).expect("write server key");
    let server = Server {
        ifname: ifname.clone(),
        public,
        key_file,
    };
    let log = std::env::temp_dir().join(format!("{ifname}.log"));
    start_wireguard_go(ns, &ifname, &server.key_file, client_public, &log).expect("wireguard-go server");
    let _ = std::fs::remove_file(&log);
    server
}

struct Pair {
    client: Netns,
    server_ns: Netns,
}

fn pair() -> Pair {
    let client = Netns::new("wgcli").expect("client ns");
    let server_ns = Netns::new("wgsrv").expect("server ns");
    client
        .ip(&[
            "link",
            "add",
            "v0",
            "type",
            "veth",
            "peer",
            "name",
            "v1",
            "netns",
            server_ns.name(),
        ])
        .expect("veth");
    client
        .ip_batch(&["addr add 192.0.2.1/24 dev v0", "link set v0 up"])
        .expect("client veth");
    server_ns
        .ip_batch(&["addr add 192.0.2.2/24 dev v1", "link set v1 up"])
        .expect("server veth");
    Pair { client, server_ns }
}

fn client_config(ifname: &str, private: &WgKey, server: &WgKey, endpoint: Ipv4Addr) -> DeviceConfig {
    DeviceConfig {
        ifname: ifname.into(),
        mtu: 1420,
        private_key: private.clone(),
        listen_port: None,
        peers: vec![PeerConfig {
            public_key: server.clone(),
            preshared_key: None,
            endpoint: Some(SocketAddr::from((endpoint, SERVER_PORT))),
            allowed_ips: vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")],
            persistent_keepalive: None,
        }],
    }
}

fn start_client(ns: &Netns, config: DeviceConfig) -> TunnelDevice {
    let ifname = config.ifname.clone();
    let device = ns
        .run_in(move || TunnelDevice::start(&config))
        .expect("enter ns")
        .expect("device starts");
    ns.ip_batch(&[
        format!("addr add 10.64.0.2/32 dev {ifname}"),
        format!("addr add fd64::2/128 dev {ifname} nodad"),
        format!("route add 10.64.0.0/24 dev {ifname}"),
        format!("route add fd64::/64 dev {ifname}"),
    ])
    .expect("client addresses");
    device
}

#[test]
fn interop_with_wireguard_go_handshake_data_rekey_roaming() {
    if !bulkhead_netns::root_or_skip("tunnel::netns_test::interop_with_wireguard_go_handshake_data_rekey_roaming")
        || !tools_or_skip("tunnel::netns_test::interop_with_wireguard_go_handshake_data_rekey_roaming")
    {
        return;
    }
    let p = pair();
    let (client_private, client_public) = keypair();
    let server = start_server(&p.server_ns, &client_public, "a");
    let ifname = format!("bhwg{}a", std::process::id() % 100_000);
    let device = start_client(
        &p.client,
        client_config(&ifname, &client_private, &server.public, Ipv4Addr::new(192, 0, 2, 2)),
    );

    // Handshake and data, both directions, both families.
    let second = Duration::from_secs(1);
    let v4 = IpAddr::from([10, 64, 0, 1]);
    assert!(
        eventually(Duration::from_secs(10), || ping(&p.client, v4, second)).expect("ping"),
        "client -> server over the tunnel"
    );
    assert!(
        ping(&p.server_ns, IpAddr::from([10, 64, 0, 2]), second).expect("ping"),
        "server -> client"
    );
    assert!(
        ping(&p.client, "fd64::1".parse().expect("v6"), second).expect("ping"),
        "IPv6 inside"
    );
    let status = device.peers();
    let first_handshake = status[0].last_handshake_at.expect("a handshake happened");
    assert!(status[0].wg.rx_bytes > 0 && status[0].wg.tx_bytes > 0, "{status:?}");

    // `wg show` on the server sees us.
    let show = p
        .server_ns
        .exec(&["wg", "show", &server.ifname, "dump"])
        .expect("wg show");
    let dump = String::from_utf8_lossy(&show.stdout);
    assert!(dump.contains(&keys::format_key(&client_public)), "{dump}");

    // Rekey: a new handshake (forced; WireGuard's own timer is 120 s), and data
    // keeps flowing on the new session.
    std::thread::sleep(Duration::from_millis(1100));
    device.handshake_now();
    assert!(
        eventually(Duration::from_secs(5), || Ok(device.peers()[0]
            .last_handshake_at
            .is_some_and(|h| h > first_handshake + Duration::from_millis(500))))
        .expect("wait"),
        "a second handshake completed"
    );
    assert!(ping(&p.client, v4, second).expect("ping"), "data after rekey");

    // Roaming: the server's public address changes (its NAT rebinds to a new
    // address, as a CGNAT or a provider's failover does). Its next packet comes
    // from the new address and our endpoint follows it; nothing is configured.
    p.server_ns
        .ip(&["addr", "add", "192.0.2.3/24", "dev", "v1"])
        .expect("new address");
    let nat = "add table ip roam\n\
               add chain ip roam post { type nat hook postrouting priority 100; }\n\
               add rule ip roam post udp sport 51820 snat to 192.0.2.3\n";
    let script = std::env::temp_dir().join(format!("bh-roam-{}.nft", std::process::id()));
    std::fs::write(&script, nat).expect("write nft script");
    let out = p
        .server_ns
        .exec(&["nft", "-f", &script.display().to_string()])
        .expect("nft");
    let _ = std::fs::remove_file(&script);
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    // The old flow's NAT decision is kept by conntrack: forget it (every entry
    // of the client's address in the server's table).
    p.server_ns
        .run_in(|| ConntrackNetlink.cut(&[IpAddr::from([192, 0, 2, 1])]))
        .expect("enter the server's namespace")
        .expect("cut the old flow");
    assert!(
        eventually(Duration::from_secs(10), || ping(
            &p.server_ns,
            IpAddr::from([10, 64, 0, 2]),
            second
        ))
        .expect("ping"),
        "server -> client from its new address: {:?} {:?}",
        device.peers(),
        device.counters(),
    );
    assert_eq!(
        device.peers()[0].wg.endpoint,
        Some(SocketAddr::from(([192, 0, 2, 3], SERVER_PORT))),
        "endpoint followed the server"
    );
    assert!(
        ping(&p.client, v4, second).expect("ping"),
        "client -> server at its new address"
    );
    drop(device);
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || Ok(!p
            .client
            .exec_ok(&["ip", "link", "show", &ifname])
            .unwrap_or(true)))
        .expect("wait"),
        "dropping the device removes its interface ({:?})",
        started.elapsed()
    );
}

#[test]
fn a_wrong_key_gets_no_tunnel() {
    if !bulkhead_netns::root_or_skip("tunnel::netns_test::a_wrong_key_gets_no_tunnel")
        || !tools_or_skip("tunnel::netns_test::a_wrong_key_gets_no_tunnel")
    {
        return;
    }
    let p = pair();
    let (_, expected_public) = keypair();
    let (client_private, _) = keypair();
    // The server expects another client key.
    let server = start_server(&p.server_ns, &expected_public, "b");
    let ifname = format!("bhwg{}b", std::process::id() % 100_000);
    let device = start_client(
        &p.client,
        client_config(&ifname, &client_private, &server.public, Ipv4Addr::new(192, 0, 2, 2)),
    );
    let v4 = IpAddr::from([10, 64, 0, 1]);
    for _ in 0..3 {
        assert!(
            !ping(&p.client, v4, Duration::from_secs(1)).expect("ping"),
            "no data without a handshake"
        );
    }
    assert_eq!(device.peers()[0].wg.last_handshake, None);
    let show = p
        .server_ns
        .exec(&["wg", "show", &server.ifname, "latest-handshakes"])
        .expect("wg show");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.trim().ends_with("\t0"), "server saw no handshake: {text}");
}
