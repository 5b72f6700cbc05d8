//! Protocol tests (pure) and server tests (temp dir sockets). The test with the
//! real `wg` binary, which needs root, is in `netns_test.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::testutil::Rng;

pub(super) fn key(b: u8) -> WgKey {
    let mut k = [0u8; 32];
    for (i, x) in k.iter_mut().enumerate() {
        *x = b.wrapping_add(i as u8);
    }
    WgKey(k)
}

fn hexkey(k: &WgKey) -> String {
    let mut s = String::new();
    hex(&mut s, &k.0);
    s
}

pub(super) fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

pub(super) fn sample() -> DeviceSnapshot {
    DeviceSnapshot {
        private_key: Some(key(1)),
        listen_port: 51820,
        fwmark: Some(0x51),
        peers: vec![
            PeerSnapshot {
                public_key: key(2),
                preshared_key: Some(key(3)),
                endpoint: Some("198.51.100.7:51820".parse().expect("addr")),
                allowed_ips: vec![net("0.0.0.0/0"), net("::/0")],
                persistent_keepalive: Some(25),
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)),
                rx_bytes: 1000,
                tx_bytes: 2000,
            },
            PeerSnapshot {
                public_key: key(4),
                preshared_key: None,
                endpoint: Some("[2001:db8::1]:443".parse().expect("addr")),
                allowed_ips: vec![],
                persistent_keepalive: None,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            },
        ],
    }
}

#[test]
fn format_get_matches_wireguard_go() {
    let zeros = "0".repeat(64);
    let expected = format!(
        "private_key={}\nlisten_port=51820\nfwmark=81\n\
         public_key={}\npreshared_key={}\nprotocol_version=1\nendpoint=198.51.100.7:51820\n\
         last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=123456789\n\
         tx_bytes=2000\nrx_bytes=1000\npersistent_keepalive_interval=25\n\
         allowed_ip=0.0.0.0/0\nallowed_ip=::/0\n\
         public_key={}\npreshared_key={zeros}\nprotocol_version=1\nendpoint=[2001:db8::1]:443\n\
         last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
         tx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n\
         errno=0\n\n",
        hexkey(&key(1)),
        hexkey(&key(2)),
        hexkey(&key(3)),
        hexkey(&key(4)),
    );
    assert_eq!(format_get(&sample()), expected);
}

#[test]
fn format_get_empty_device_omits_unset_fields() {
    assert_eq!(format_get(&DeviceSnapshot::default()), "errno=0\n\n");
    let dev = DeviceSnapshot {
        fwmark: Some(0),
        ..Default::default()
    };
    assert_eq!(format_get(&dev), "errno=0\n\n");
    assert_eq!(format_errno(22), "errno=22\n\n");
}

#[test]
fn hex_keys_both_cases() {
    let k = key(0xa0);
    assert_eq!(parse_hex_key(&hexkey(&k)), Some(k.0));
    assert_eq!(parse_hex_key(&hexkey(&k).to_uppercase()), Some(k.0));
    assert_eq!(parse_hex_key(&"0".repeat(63)), None);
    assert_eq!(parse_hex_key(&"g".repeat(64)), None);
    assert_eq!(parse_hex_key(&"é".repeat(32)), None);
}

/// Parses a `get` reply the way wireguard-tools does (ipc-uapi.h), for round trips.
fn parse_get_reply(text: &str) -> DeviceSnapshot {
    let mut dev = DeviceSnapshot::default();
    let body = text.strip_suffix("errno=0\n\n").expect("ends with errno=0");
    let mut secs = 0u64;
    for line in body.lines() {
        let (k, v) = line.split_once('=').expect("key=value");
        let peer = dev.peers.last_mut();
        match (k, peer) {
            ("private_key", _) => dev.private_key = Some(WgKey(parse_hex_key(v).expect("hex"))),
            ("listen_port", _) => dev.listen_port = v.parse().expect("port"),
            ("fwmark", _) => dev.fwmark = Some(v.parse().expect("mark")),
            ("public_key", _) => dev.peers.push(PeerSnapshot {
                public_key: WgKey(parse_hex_key(v).expect("hex")),
                preshared_key: None,
                endpoint: None,
                allowed_ips: vec![],
                persistent_keepalive: None,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            }),
            ("preshared_key", Some(p)) => {
                let k = parse_hex_key(v).expect("hex");
                p.preshared_key = (k != [0; 32]).then_some(WgKey(k));
            }
            ("protocol_version", Some(_)) => assert_eq!(v, "1"),
            ("endpoint", Some(p)) => p.endpoint = Some(v.parse().expect("endpoint")),
            ("last_handshake_time_sec", Some(_)) => secs = v.parse().expect("secs"),
            ("last_handshake_time_nsec", Some(p)) => {
                let nsec: u32 = v.parse().expect("nsec");
                p.last_handshake = (secs != 0 || nsec != 0).then(|| UNIX_EPOCH + Duration::new(secs, nsec));
            }
            ("tx_bytes", Some(p)) => p.tx_bytes = v.parse().expect("tx"),
            ("rx_bytes", Some(p)) => p.rx_bytes = v.parse().expect("rx"),
            ("persistent_keepalive_interval", Some(p)) => {
                let s: u16 = v.parse().expect("ka");
                p.persistent_keepalive = (s != 0).then_some(s);
            }
            ("allowed_ip", Some(p)) => p.allowed_ips.push(net(v)),
            other => panic!("unexpected line {other:?}"),
        }
    }
    dev
}

/// A `set` body that configures `dev` from scratch (what `wg setconf` sends).
fn set_text(dev: &DeviceSnapshot) -> String {
    let mut s = String::new();
    if let Some(k) = &dev.private_key {
        s += &format!("private_key={}\n", hexkey(k));
    }
    s += &format!("listen_port={}\n", dev.listen_port);
    s += &format!("fwmark={}\n", dev.fwmark.unwrap_or(0));
    s += "replace_peers=true\n";
    for p in &dev.peers {
        s += &format!("public_key={}\n", hexkey(&p.public_key));
        if let Some(k) = &p.preshared_key {
            s += &format!("preshared_key={}\n", hexkey(k));
        }
        s += "protocol_version=1\n";
        if let Some(ep) = p.endpoint {
            s += &format!("endpoint={ep}\n");
        }
        s += &format!(
            "persistent_keepalive_interval={}\n",
            p.persistent_keepalive.unwrap_or(0)
        );
        s += "replace_allowed_ips=true\n";
        for n in &p.allowed_ips {
            s += &format!("allowed_ip={n}\n");
        }
    }
    s += "\n";
    s
}

/// A device with wireguard-go's `set` semantics, on a snapshot.
#[derive(Default)]
pub(super) struct FakeDevice {
    pub(super) dev: DeviceSnapshot,
    pub(super) applied: Vec<Vec<SetOp>>,
}

impl UapiDevice for FakeDevice {
    fn snapshot(&self) -> DeviceSnapshot {
        self.dev.clone()
    }

    fn apply(&mut self, ops: Vec<SetOp>) -> Result<(), UapiError> {
        self.applied.push(ops.clone());
        let mut dev = self.dev.clone();
        // Index of the current peer in dev.peers; None while on device keys or
        // for an update_only peer that does not exist.
        let mut cur: Option<usize> = None;
        let mut skipping = false;
        for op in ops {
            match op {
                SetOp::PrivateKey(k) => dev.private_key = k,
                SetOp::ListenPort(p) => dev.listen_port = p,
                SetOp::Fwmark(m) => dev.fwmark = m,
                SetOp::ReplacePeers => dev.peers.clear(),
                SetOp::Peer(k) => {
                    skipping = false;
                    cur = Some(match dev.peers.iter().position(|p| p.public_key == k) {
                        Some(i) => i,
                        None => {
                            dev.peers.push(PeerSnapshot {
                                public_key: k,
                                preshared_key: None,
                                endpoint: None,
                                allowed_ips: vec![],
                                persistent_keepalive: None,
                                last_handshake: None,
                                rx_bytes: 0,
                                tx_bytes: 0,
                            });
                            dev.peers.len() - 1
                        }
                    });
                }
                SetOp::UpdateOnly => {
                    // Created just now by Peer: undo.
                    if let Some(i) = cur {
                        if i == dev.peers.len() - 1 && dev.peers[i].allowed_ips.is_empty() {
                            dev.peers.pop();
                            skipping = true;
                            cur = None;
                        }
                    }
                }
                _ if skipping => {}
                SetOp::RemovePeer => {
                    if let Some(i) = cur.take() {
                        dev.peers.remove(i);
                    }
                    skipping = true;
                }
                op => {
                    let Some(p) = cur.map(|i| &mut dev.peers[i]) else {
                        return Err(UapiError::Rejected {
                            errno: EINVAL,
                            reason: "peer op without peer".into(),
                        });
                    };
                    match op {
                        SetOp::PresharedKey(k) => p.preshared_key = k,
                        SetOp::Endpoint(e) => p.endpoint = Some(e),
                        SetOp::PersistentKeepalive(k) => p.persistent_keepalive = k,
                        SetOp::ReplaceAllowedIps => p.allowed_ips.clear(),
                        SetOp::AllowedIp(n) => p.allowed_ips.push(n),
                        _ => unreachable!("device ops handled above"),
                    }
                }
            }
        }
        self.dev = dev;
        Ok(())
    }
}

#[test]
fn get_reply_round_trips() {
    let dev = sample();
    assert_eq!(parse_get_reply(&format_get(&dev)), dev);
}

#[test]
fn set_round_trips_through_a_device() {
    let mut want = sample();
    // `set` cannot carry counters or handshakes.
    for p in &mut want.peers {
        p.last_handshake = None;
        p.rx_bytes = 0;
        p.tx_bytes = 0;
    }
    let ops = parse_set(&set_text(&want)).expect("parses");
    let mut fake = FakeDevice::default();
    fake.apply(ops).expect("applies");
    assert_eq!(fake.snapshot(), want);
    // And the whole request form, through `answer`.
    let req = format!("set=1\n{}", set_text(&want));
    let kind = parse_request(req.as_bytes()).expect("parses");
    let (tx, mut rx) = oneshot::channel();
    let mut fresh = FakeDevice::default();
    answer(UapiRequest { kind, reply: tx }, &mut fresh).expect("applied");
    assert_eq!(rx.try_recv().expect("replied"), "errno=0\n\n");
    assert_eq!(fresh.snapshot(), want);
    let (tx, mut rx) = oneshot::channel();
    let kind = parse_request(b"get=1\n\n").expect("get");
    answer(UapiRequest { kind, reply: tx }, &mut fresh).expect("get");
    assert_eq!(rx.try_recv().expect("replied"), format_get(&want));
}

/// The `set` example of <https://www.wireguard.com/xplatform/>.
const SPEC_SET: &str = "set=1
private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a
fwmark=0
listen_port=12912
replace_peers=true
public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33
preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52
replace_allowed_ips=true
allowed_ip=192.168.4.4/32
endpoint=[abcd:23::33%2]:51820
public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376
replace_allowed_ips=true
allowed_ip=192.168.4.6/32
persistent_keepalive_interval=111
endpoint=182.122.22.19:3233
public_key=662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58
endpoint=5.152.198.39:51820
replace_allowed_ips=true
allowed_ip=192.168.4.10/32
allowed_ip=192.168.4.11/32
public_key=e818b58db5274087fcc1be5dc728cf53d3b5726b4cef6b9bab8f8f8c2452c25c
remove=true

";

fn k(hex: &str) -> WgKey {
    WgKey(parse_hex_key(hex).expect("hex"))
}

#[test]
fn parses_the_spec_example() {
    let UapiRequestKind::Set(ops) = parse_request(SPEC_SET.as_bytes()).expect("parses") else {
        panic!("not a set");
    };
    let v4 = |a, b, c, d, port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port);
    let scoped = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xabcd, 0x23, 0, 0, 0, 0, 0, 0x33),
        51820,
        0,
        2,
    ));
    let want = vec![
        SetOp::PrivateKey(Some(k(
            "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a",
        ))),
        SetOp::Fwmark(None),
        SetOp::ListenPort(12912),
        SetOp::ReplacePeers,
        SetOp::Peer(k("b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33")),
        SetOp::PresharedKey(Some(k(
            "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52",
        ))),
        SetOp::ReplaceAllowedIps,
        SetOp::AllowedIp(net("192.168.4.4/32")),
        SetOp::Endpoint(scoped),
        SetOp::Peer(k("58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376")),
        SetOp::ReplaceAllowedIps,
        SetOp::AllowedIp(net("192.168.4.6/32")),
        SetOp::PersistentKeepalive(Some(111)),
        SetOp::Endpoint(v4(182, 122, 22, 19, 3233)),
        SetOp::Peer(k("662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58")),
        SetOp::Endpoint(v4(5, 152, 198, 39, 51820)),
        SetOp::ReplaceAllowedIps,
        SetOp::AllowedIp(net("192.168.4.10/32")),
        SetOp::AllowedIp(net("192.168.4.11/32")),
        SetOp::Peer(k("e818b58db5274087fcc1be5dc728cf53d3b5726b4cef6b9bab8f8f8c2452c25c")),
        SetOp::RemovePeer,
    ];
    assert_eq!(ops, want);
    // The scoped endpoint is reported back as wireguard-go writes it.
    let dev = DeviceSnapshot {
        peers: vec![PeerSnapshot {
            public_key: key(9),
            preshared_key: None,
            endpoint: Some(scoped),
            allowed_ips: vec![],
            persistent_keepalive: None,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        }],
        ..Default::default()
    };
    assert!(format_get(&dev).contains("\nendpoint=[abcd:23::33%2]:51820\n"));
}

#[test]
fn values_and_clearing() {
    let z = "0".repeat(64);
    let pk = hexkey(&key(7));
    let ops = parse_set(&format!(
        "private_key={z}\nlisten_port=0\nfwmark=4294967295\npublic_key={pk}\nupdate_only=true\n\
         preshared_key={z}\npersistent_keepalive_interval=0\nallowed_ip=10.1.2.3/8\n\
         allowed_ip=fe80::1/64\n"
    ))
    .expect("parses");
    assert_eq!(
        ops,
        vec![
            SetOp::PrivateKey(None),
            SetOp::ListenPort(0),
            SetOp::Fwmark(Some(u32::MAX)),
            SetOp::Peer(key(7)),
            SetOp::UpdateOnly,
            SetOp::PresharedKey(None),
            SetOp::PersistentKeepalive(None),
            SetOp::AllowedIp(net("10.0.0.0/8")),
            SetOp::AllowedIp(net("fe80::/64")),
        ]
    );
    assert_eq!(parse_set("").expect("empty"), vec![]);
    assert_eq!(parse_request(b"set=1\n\n"), Ok(UapiRequestKind::Set(vec![])));
}

fn err(text: &str) -> UapiError {
    match parse_set(text) {
        Err(e) => {
            assert_eq!(e.errno(), EINVAL, "{e}");
            e
        }
        Ok(ops) => panic!("accepted {text:?}: {ops:?}"),
    }
}

#[test]
fn refuses_bad_values_and_misplaced_keys() {
    let pk = hexkey(&key(7));
    let peer = |rest: &str| format!("public_key={pk}\n{rest}\n");
    for bad in [
        "listen_port=65536",
        "listen_port=-1",
        "listen_port=+1",
        "listen_port= 1",
        "listen_port=",
        "fwmark=0x10",
        "fwmark=4294967296",
        "private_key=abc",
        "replace_peers=false",
        "replace_peers=1",
        "public_key=",
        "remove=true",
        "endpoint=1.2.3.4:5",
        "allowed_ip=10.0.0.0/8",
        "protocol_version=1",
        "bogus=1",
        "no equals sign",
        "=",
        "listen_port=1\r",
    ] {
        err(&format!("{bad}\n"));
    }
    for bad in [
        "remove=yes",
        "update_only=false",
        "endpoint=example.com:51820",
        "endpoint=1.2.3.4",
        "endpoint=::1:51820",
        "endpoint=[::1]:65536",
        "persistent_keepalive_interval=65536",
        "allowed_ip=10.0.0.0/33",
        "allowed_ip=10.0.0.1",
        "allowed_ip=",
        "protocol_version=2",
        "listen_port=1",
        "private_key=0000",
        "fwmark=1",
        "replace_peers=true",
        "preshared_key=xyz",
    ] {
        err(&peer(bad));
    }
    // Unknown keys are reported escaped and truncated.
    let e = err(&format!("{}\u{1b}=1\n", "k".repeat(100)));
    let UapiError::UnknownKey { key, line } = e else {
        panic!("{e:?}")
    };
    assert_eq!((key.len(), line), (64, 2));
    // Values are never echoed.
    let secret = "f".repeat(63);
    let msg = err(&format!("private_key={secret}\n")).to_string();
    assert!(!msg.contains(&secret), "{msg}");
}

#[test]
fn hostile_sizes_are_bounded() {
    let long = format!("allowed_ip={}\n", "1".repeat(MAX_LINE));
    assert!(matches!(err(&long), UapiError::LineTooLong { line: 2 }));
    let huge = "listen_port=1\n".repeat(MAX_REQUEST / 14 + 1);
    assert_eq!(err(&huge), UapiError::RequestTooLarge);
    let many: String = (0..=MAX_PEERS)
        .map(|i| format!("public_key={:064x}\n", i + 1))
        .collect();
    assert_eq!(err(&many), UapiError::TooManyPeers);
    let ok: String = (0..MAX_PEERS).map(|i| format!("public_key={:064x}\n", i + 1)).collect();
    assert_eq!(parse_set(&ok).expect("max peers").len(), MAX_PEERS);
    // Content after the blank line.
    assert_eq!(
        err("listen_port=1\n\nlisten_port=2\n"),
        UapiError::Unexpected { line: 4 }
    );
}

#[test]
fn request_framing() {
    assert_eq!(parse_request(b"get=1\n\n"), Ok(UapiRequestKind::Get));
    for (bad, want) in [
        (&b"get=1\n"[..], UapiError::Truncated),
        (b"get=1\nx=1\n\n", UapiError::Unexpected { line: 2 }),
        (b"get=2\n\n", UapiError::BadOperation),
        (b"\n", UapiError::BadOperation),
        (b"", UapiError::Truncated),
        (b"set=1\nlisten_port=1\n", UapiError::Truncated),
        (b"set=1\nlisten_port=\xff\n\n", UapiError::NotUtf8),
        (b"GET=1\n\n", UapiError::BadOperation),
    ] {
        assert_eq!(parse_request(bad), Err(want), "{:?}", String::from_utf8_lossy(bad));
    }
    let mut long = vec![b'x'; MAX_LINE + 1];
    long.extend_from_slice(b"\n\n");
    assert_eq!(parse_request(&long), Err(UapiError::LineTooLong { line: 1 }));
    assert_eq!(request_end(b"get=1\n\nrest"), Some(7));
    assert_eq!(request_end(b"\nrest"), Some(1));
    assert_eq!(request_end(b"get=1\n"), None);
}

#[test]
fn never_panics_on_random_input() {
    let mut rng = Rng(0x5eed_b0a7_1234_5678);
    let alphabet: &[u8] = b"=\n0123456789abcdef:[]./%-truesgtpkyl_";
    let seed = SPEC_SET.as_bytes();
    for i in 0..10_000 {
        let bytes: Vec<u8> = match i % 3 {
            // Raw random bytes.
            0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
            // Random protocol-ish characters.
            1 => (0..rng.below(300))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect(),
            // Mutations of the spec example.
            _ => {
                let mut b = seed.to_vec();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(b.len());
                    match rng.below(3) {
                        0 => b[at] = alphabet[rng.below(alphabet.len())],
                        1 => {
                            b.remove(at);
                        }
                        _ => b.insert(at, rng.next() as u8),
                    }
                }
                b
            }
        };
        let _ = parse_request(&bytes);
        let _ = parse_set(&String::from_utf8_lossy(&bytes));
        let _ = request_end(&bytes);
    }
}

// ---------------------------------------------------------------- server

pub(super) struct TempDir(pub(super) PathBuf);
impl TempDir {
    pub(super) fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("bh-uapi-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        TempDir(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `req` on a fresh connection, returns everything the server answers.
async fn exchange(path: &Path, req: &[u8]) -> String {
    let mut s = UnixStream::connect(path).await.expect("connect");
    s.write_all(req).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// Serves requests against `fake` while `client` runs; returns its result.
pub(super) async fn serve_while<T>(
    rx: &mut mpsc::Receiver<UapiRequest>,
    fake: &mut FakeDevice,
    client: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(client);
    loop {
        tokio::select! {
            out = &mut client => return out,
            Some(req) = rx.recv() => { let _ = answer(req, fake); }
        }
    }
}

#[tokio::test]
async fn server_answers_get_and_set() {
    let tmp = TempDir::new();
    let path = tmp.0.join("run/wireguard/bhtest0.sock");
    let (tx, mut rx) = mpsc::channel(4);
    let server = UapiServer::bind(&path, tx).expect("bind");
    let dir_mode = std::fs::metadata(path.parent().expect("dir")).expect("dir").mode();
    assert_eq!(dir_mode & 0o777, 0o755);
    let mode = std::fs::symlink_metadata(&path).expect("sock").mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut fake = FakeDevice {
        dev: sample(),
        ..Default::default()
    };
    let got = serve_while(&mut rx, &mut fake, exchange(&path, b"get=1\n\n")).await;
    assert_eq!(got, format_get(&sample()));

    let set = format!("set=1\npublic_key={}\nremove=true\n\n", hexkey(&key(4)));
    let got = serve_while(&mut rx, &mut fake, exchange(&path, set.as_bytes())).await;
    assert_eq!(got, "errno=0\n\n");
    assert_eq!(fake.dev.peers.len(), 1);

    // Malformed: answered by the server, the daemon never sees it.
    let applied = fake.applied.len();
    for bad in [
        &b"set=1\nbogus=1\n\n"[..],
        b"hello\n\n",
        b"set=1\nlisten_port=1\xff\n\n",
    ] {
        let got = serve_while(&mut rx, &mut fake, exchange(&path, bad)).await;
        assert_eq!(got, "errno=22\n\n");
    }
    assert_eq!(fake.applied.len(), applied);
    // A request split over many writes.
    let got = serve_while(&mut rx, &mut fake, async {
        let mut s = UnixStream::connect(&path).await.expect("connect");
        for b in b"get=1\n\n" {
            s.write_all(&[*b]).await.expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    })
    .await;
    assert!(got.starts_with("private_key="), "{got}");
    // A probe (connect, close) is not an error.
    drop(UnixStream::connect(&path).await.expect("connect"));
    // An oversized request is cut off.
    let huge = vec![b'a'; MAX_REQUEST + 10];
    let got = serve_while(&mut rx, &mut fake, async {
        let mut s = UnixStream::connect(&path).await.expect("connect");
        // The server may stop reading (and close) before all is written.
        let _ = s.write_all(&huge).await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    })
    .await;
    assert!(got.is_empty() || got == "errno=22\n\n", "{got}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stats = server.stats();
    assert_eq!(stats.forwarded.load(Ordering::Relaxed), 3);
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 4);
    assert_eq!(stats.probes.load(Ordering::Relaxed), 1);

    // The daemon gone: EIO, not a hang.
    drop(rx);
    assert_eq!(exchange(&path, b"get=1\n\n").await, "errno=5\n\n");
    assert_eq!(stats.unanswered.load(Ordering::Relaxed), 1);

    drop(server);
    assert!(!path.exists(), "socket removed on drop");
}

#[tokio::test]
async fn bind_never_steals_a_live_socket_but_replaces_a_stale_one() {
    let tmp = TempDir::new();
    let path = tmp.0.join("bhtest1.sock");
    let (tx, _rx) = mpsc::channel(1);
    let first = UapiServer::bind(&path, tx.clone()).expect("bind");
    assert_eq!(
        UapiServer::bind(&path, tx.clone()).map(|_| ()),
        Err(UapiError::InUse(path.clone()))
    );
    assert!(path.exists(), "the live socket is left alone");
    drop(first);

    // A stale socket file (nobody listening).
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
    assert!(path.exists());
    let second = UapiServer::bind(&path, tx.clone()).expect("replaces the stale socket");
    // Drop leaves a successor's socket alone.
    std::fs::remove_file(&path).expect("rm");
    let successor = std::os::unix::net::UnixListener::bind(&path).expect("successor");
    drop(second);
    assert!(path.exists(), "not ours any more");
    drop(successor);
    std::fs::remove_file(&path).expect("rm");

    // Never removes something that is not a socket.
    std::fs::write(&path, "precious").expect("write");
    assert!(matches!(UapiServer::bind(&path, tx), Err(UapiError::Io { .. })));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "precious");
}
