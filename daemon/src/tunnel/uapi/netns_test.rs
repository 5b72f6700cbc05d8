//! Root test: the real `wg` binary against our UAPI server, in a private mount
//! namespace (`unshare --mount`) where a temp dir is mounted on /var/run, so wg
//! finds our socket there and the host's /var/run is never touched.

use std::collections::BTreeMap;

use super::tests::{key, net, sample, serve_while, FakeDevice, TempDir};
use super::*;

/// Whether the real-`wg` test has its tools, `wg` and `unshare` (root is checked
/// first, by `root_or_skip`). Under CI=true a missing one fails the test.
fn wg_or_skip(test: &str) -> bool {
    let have = |bin: &str| std::process::Command::new(bin).arg("--version").output().is_ok();
    let missing: Vec<_> = ["wg", "unshare"].into_iter().filter(|b| !have(b)).collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test} needs {} (apt-get install wireguard-tools util-linux)",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}, and CI=true forbids skipping it");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
    false
}

/// Runs `wg args...` in a private mount namespace where `run_dir` is mounted on
/// /var/run: wg finds our socket at /var/run/wireguard/<if>.sock and the host's
/// /var/run is never touched.
async fn wg(run_dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /var/run && exec wg "$@""#)
        .arg(run_dir)
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("unshare runs")
}

fn b64(k: &WgKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(k.0)
}

#[tokio::test]
async fn real_wg_show_and_set() {
    if !bulkhead_netns::root_or_skip("tunnel::uapi::netns_test::real_wg_show_and_set")
        || !wg_or_skip("tunnel::uapi::netns_test::real_wg_show_and_set")
    {
        return;
    }
    let tmp = TempDir::new();
    let ifname = format!("bhtest{}", std::process::id() % 100_000);
    let path = tmp.0.join("wireguard").join(format!("{ifname}.sock"));
    let (tx, mut rx) = mpsc::channel(4);
    let server = UapiServer::bind(&path, tx).expect("bind");
    let mut fake = FakeDevice {
        dev: sample(),
        ..Default::default()
    };

    let out = serve_while(&mut rx, &mut fake, wg(&tmp.0, &["show", &ifname, "dump"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wg show failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = key(1);
    let public = {
        let secret = boringtun::x25519::StaticSecret::from(private.0);
        WgKey(boringtun::x25519::PublicKey::from(&secret).to_bytes())
    };
    let mut lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.remove(0),
        format!("{}\t{}\t51820\t0x51", b64(&private), b64(&public))
    );
    lines.sort();
    let mut want = vec![
        format!(
            "{}\t{}\t198.51.100.7:51820\t0.0.0.0/0,::/0\t1700000000\t1000\t2000\t25",
            b64(&key(2)),
            b64(&key(3))
        ),
        format!("{}\t(none)\t[2001:db8::1]:443\t(none)\t0\t0\t0\toff", b64(&key(4))),
    ];
    want.sort();
    assert_eq!(lines, want);

    // `wg set` with a new peer.
    let new_peer = key(0x40);
    let out = serve_while(
        &mut rx,
        &mut fake,
        wg(
            &tmp.0,
            &["set", &ifname, "peer", &b64(&new_peer), "allowed-ips", "10.0.0.0/8"],
        ),
    )
    .await;
    assert!(
        out.status.success(),
        "wg set failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fake.applied.last(),
        Some(&vec![
            SetOp::Peer(new_peer.clone()),
            SetOp::ReplaceAllowedIps,
            SetOp::AllowedIp(net("10.0.0.0/8")),
        ])
    );

    // The change is visible to `wg show`.
    let out = serve_while(&mut rx, &mut fake, wg(&tmp.0, &["show", &ifname, "allowed-ips"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let by_peer: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('\t')).collect();
    assert_eq!(by_peer.get(b64(&new_peer).as_str()), Some(&"10.0.0.0/8"));

    // wg's liveness probes are not counted as errors.
    let stats = server.stats();
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 0);
    assert_eq!(stats.io_errors.load(Ordering::Relaxed), 0);
    assert_eq!(stats.forwarded.load(Ordering::Relaxed), 3);
    drop(server);
    assert!(!path.exists());
}
