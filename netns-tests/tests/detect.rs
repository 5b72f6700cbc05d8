//! Issue 16: detection, end to end. The scanner is Debian's nmap in the
//! devices' namespaces; what the firewall refuses is sampled by the real
//! kernel to NFLOG and read by the real daemon.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bulkhead::alerts::{Alert, AlertKind};
use bulkhead::control::{Request, Response};
use bulkhead::demo::DemoHome;

use nix::sys::signal::Signal;

use super::{mac_of, Outcome, BIN};

pub(crate) fn alerts(demo: &DemoHome) -> Result<Vec<Alert>> {
    let Response::Alerts { alerts } = demo.call(Request::Alerts { limit: 500 })? else {
        bail!("unexpected answer to Alerts");
    };
    Ok(alerts)
}

pub(crate) fn of_kinds(alerts: &[Alert], kinds: &[AlertKind]) -> Vec<Alert> {
    alerts.iter().filter(|a| kinds.contains(&a.kind)).cloned().collect()
}

fn detect_report(demo: &DemoHome) -> Result<bulkhead::detect::DetectReport> {
    match demo.call(Request::Detect { mac: None })? {
        Response::Detect { report } => Ok(*report.context("detection is off in the demo")?),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Runs nmap in `host`'s namespace (SYN scan, no host discovery, no DNS,
/// one try per port) and returns how many raw packets it says it sent.
fn nmap(demo: &DemoHome, host: &str, ports: &str, targets: &[&str]) -> Result<u64> {
    let mut args = vec![
        "nmap",
        "-v",
        "-sS",
        "-Pn",
        "-n",
        "-T4",
        "--max-retries",
        "0",
        "--host-timeout",
        "20s",
        "-p",
        ports,
    ];
    args.extend_from_slice(targets);
    let out = demo.home.ns(host)?.exec_output(&args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "nmap in {host} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Raw packets sent: 2002 (88.064KB) | Rcvd: …"
    text.split("Raw packets sent: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no packet count in nmap's output: {text}"))
}

/// How long ordinary life runs in z0 (the issue: "normal demo chatter raises
/// nothing in 10 minutes").
const ORDINARY_LIFE: Duration = Duration::from_secs(600);

/// z0. Ten minutes of the demo home as `bulkhead demo` shows it (DHCP
/// clients, SLAAC, mDNS announcements, the TV through the VPN), the
/// homeowner's own devices approved and the camera watched: every device
/// talks to the internet twice a second and asks the router's resolver a
/// name (the iot ones an ad name too) every 3 s, the stranger waits in
/// quarantine and is refused each time. Nothing of that is news: no probing,
/// no lateral attempt, no blocked device, no DNS bypass, no device offline,
/// no tunnel down, no failed apply.
pub(crate) fn z0_ordinary_life_for_ten_minutes_raises_nothing() -> Result<Outcome> {
    need(
        &["dig", "wireguard-go", "busybox", "dhclient"],
        "README's first command installs it",
    )?;
    let demo = DemoHome::start_full(&super::daemon_bin(), &[], bulkhead::demo::WEB_PORT)?;
    demo.approve_own_devices()?;
    let camera = mac_of("camera")?;
    let Response::Done { .. } = demo.call(Request::Watch {
        mac: camera,
        watched: true,
    })?
    else {
        bail!("watching the camera was refused");
    };
    let before: Vec<i64> = alerts(&demo)?.iter().map(|a| a.id).collect();
    let chatter = demo.start_chatter(Duration::from_millis(500), &["tv"])?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut askers = Vec::new();
    for h in bulkhead::demo::HOSTS {
        let Some(ip) = demo.host_ipv4(h.name)? else { continue };
        let router = std::net::Ipv4Addr::from(u32::from(ip) & 0xffff_ff00 | 1).to_string();
        let names: &[&str] = if h.zone == "iot" {
            &[bulkhead::demo::dns::STREAM_NAME, bulkhead::demo::dns::AD_NAME]
        } else {
            &[bulkhead::demo::dns::STREAM_NAME]
        };
        let stop = stop.clone();
        // The thread runs in the host's namespace, and so does its dig.
        askers.push(
            demo.home
                .ns(h.name)?
                .spawn_thread(&format!("names {}", h.name), move || -> u64 {
                    let mut answered = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        for name in names {
                            let out = std::process::Command::new("dig")
                                .args(["+time=1", "+tries=1", "+short", &format!("@{router}"), name])
                                .output();
                            if out.is_ok_and(|o| o.status.success()) {
                                answered += 1;
                            }
                        }
                        std::thread::sleep(Duration::from_secs(3));
                    }
                    answered
                })?,
        );
    }
    std::thread::sleep(ORDINARY_LIFE);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answered: u64 = askers
        .into_iter()
        .map(|t| t.join().ok().and_then(Result::ok).unwrap_or(0))
        .sum();
    let exchanges = chatter.completed();
    drop(chatter);
    // About 24 exchanges a second (six hosts answered twice a second on two
    // protocols; the stranger refused) and 3 answers a second.
    let secs = ORDINARY_LIFE.as_secs();
    ensure!(exchanges > secs * 10, "the chatter ran: {exchanges} exchanges");
    ensure!(answered > secs, "the devices asked names: {answered} answers");
    let news = [
        AlertKind::Probing,
        AlertKind::LateralAttempt,
        AlertKind::BlockedDeviceActive,
        AlertKind::DnsBypass,
        AlertKind::DeviceOffline,
        AlertKind::TunnelDown,
        AlertKind::TunnelError,
        AlertKind::ApplyFailed,
    ];
    let told: Vec<Alert> = of_kinds(&alerts(&demo)?, &news)
        .into_iter()
        .filter(|a| !before.contains(&a.id) || a.count > 1)
        .collect();
    ensure!(
        told.is_empty(),
        "ten minutes of ordinary life raised: {told:?}\n--- daemon log:\n{}",
        demo.log()
    );
    let sampled = detect_report(&demo)?
        .devices
        .get(&mac_of("stranger")?)
        .map_or(0, |d| d.routed);
    ensure!(
        sampled > 0,
        "the stranger's refused tries were sampled, and still nothing was told"
    );
    Ok(Outcome::Passed)
}

/// z. Ordinary traffic (the demo's chatter, a quarantined device refused
/// again and again) raises nothing; nmap from the plug (iot) against the
/// laptop (same bridge), the router and the camera (another segment) is ONE
/// probing alert naming the plug,
/// with counts within sampling of what nmap sent; the laptop's nmap against
/// the plug (trusted may reach iot) raises nothing; a blocked device that
/// keeps trying is told once.
pub(crate) fn z_detect_probing_is_one_alert() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let plug = mac_of("plug")?;
    let laptop = mac_of("laptop")?;
    let watched = [AlertKind::Probing, AlertKind::LateralAttempt];

    // Ordinary life first: every device talks to the internet twice a second
    // (the stranger, in quarantine, is refused each time) for 45 s, longer
    // than the detector's window. Nothing to tell.
    let chatter = demo.start_chatter(Duration::from_millis(500), &[])?;
    std::thread::sleep(Duration::from_secs(45));
    ensure!(chatter.completed() > 100, "the chatter ran: {}", chatter.completed());
    drop(chatter);
    std::thread::sleep(Duration::from_secs(3));
    let told = of_kinds(
        &alerts(&demo)?,
        &[
            AlertKind::Probing,
            AlertKind::LateralAttempt,
            AlertKind::BlockedDeviceActive,
        ],
    );
    ensure!(told.is_empty(), "ordinary traffic raised: {told:?}");
    let stranger_refused = detect_report(&demo)?
        .devices
        .get(&mac_of("stranger")?)
        .map_or(0, |d| d.routed);
    ensure!(
        stranger_refused > 0,
        "the quarantined stranger's tries were sampled (and not taken for a scan)"
    );

    // The laptop scans the plug: allowed, so nothing is refused or told.
    nmap(&demo, "laptop", "1-300", &["10.0.1.20"])?;
    std::thread::sleep(Duration::from_secs(5));
    let told = of_kinds(&alerts(&demo)?, &watched);
    ensure!(told.is_empty(), "the laptop may scan the plug, yet: {told:?}");

    // The plug scans the laptop, the router and the camera.
    let sent = nmap(&demo, "plug", "1-400", &["10.0.1.10", "10.0.1.1", "10.0.2.10"])?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let probing = loop {
        let found = of_kinds(&alerts(&demo)?, &[AlertKind::Probing]);
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    ensure!(
        probing.len() == 1 && probing[0].mac == Some(plug),
        "wanted one probing alert naming the plug, got {probing:?}\n--- daemon log:\n{}",
        demo.log()
    );
    let text = &probing[0].message;
    ensure!(
        text.contains("10.0.1.10") && text.contains("zone iot"),
        "the alert says whom it tried: {text}"
    );
    // It names the laptop among the devices of other zones it tried.
    ensure!(text.contains(&laptop.to_string()), "the laptop is named: {text}");
    // A second scan within the episode updates, never repeats.
    nmap(&demo, "plug", "401-600", &["10.0.1.10"])?;
    std::thread::sleep(Duration::from_secs(4));
    let all = alerts(&demo)?;
    let again = of_kinds(&all, &watched);
    ensure!(again.len() == 1, "one alert for the whole episode: {again:?}");

    // Counts: sampled, so at most what nmap sent, and at least the burst the
    // meter lets through (2 × 20 per chain it hit).
    let report = detect_report(&demo)?;
    let d = report.devices.get(&plug).context("the plug has no refusals")?;
    ensure!(
        d.sampled <= sent + 200 && d.sampled >= 40,
        "the plug's sampled refusals ({}) against nmap's {sent} packets",
        d.sampled
    );
    ensure!(
        d.bridged > 0 && d.to_router > 0 && d.routed > 0,
        "refusals at every place: {d:?}"
    );
    ensure!(
        !report.devices.contains_key(&laptop),
        "trusted is not watched: {:?}",
        report.devices.get(&laptop)
    );

    // A blocked device that keeps trying: one alert.
    let stranger = mac_of("stranger")?;
    let Response::Done { .. } = demo.call(Request::Block {
        mac: stranger,
        blocked: true,
    })?
    else {
        bail!("block refused");
    };
    let router = IpAddr::from([10, 0, 1, 1]).to_string();
    for _ in 0..2 {
        let _ = demo
            .home
            .ns("stranger")?
            .exec_output(&["busybox", "ping", "-c", "3", "-W", "1", &router])?;
        let _ = nmap(&demo, "stranger", "20-30", &[router.as_str()]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let active = loop {
        let found = of_kinds(&alerts(&demo)?, &[AlertKind::BlockedDeviceActive]);
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    ensure!(
        active.len() == 1 && active[0].mac == Some(stranger),
        "a blocked device that keeps trying: {active:?}\n--- daemon log:\n{}",
        demo.log()
    );
    Ok(Outcome::Passed)
}

/// A webhook and ntfy receiver: records every POST as a JSON line, with
/// whether the webhook signature (HMAC-SHA256 over `TIMESTAMP.BODY`) checks.
const RECEIVER: &str = r#"
import hmac, hashlib, json, sys, http.server
key = open(sys.argv[2], 'rb').read().strip()
out = sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        ts = self.headers.get('X-Bulkhead-Timestamp', '')
        want = 'sha256=' + hmac.new(key, ts.encode() + b'.' + body, hashlib.sha256).hexdigest()
        rec = {'path': self.path, 'valid': hmac.compare_digest(want, self.headers.get('X-Bulkhead-Signature', '')),
               'title': self.headers.get('Title'), 'priority': self.headers.get('Priority'),
               'tags': self.headers.get('Tags'), 'auth': self.headers.get('Authorization'),
               'body': body.decode('utf-8', 'replace')}
        with open(out, 'a') as f:
            f.write(json.dumps(rec) + '\n')
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), H).serve_forever()
"#;

/// Fails with what to install when one of `tools` is missing.
fn need(tools: &[&str], install: &str) -> Result<()> {
    for tool in tools {
        ensure!(
            bulkhead::demo::have(tool),
            "`{tool}` is missing: {install} (scripts/test.sh installs it)"
        );
    }
    Ok(())
}

/// The demo's own directory (its config, state and the test's files).
fn demo_dir(demo: &DemoHome) -> Result<std::path::PathBuf> {
    demo.config_path()
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("demo dir")
}

/// The retained message on `topic` of the broker on the laptop's loopback
/// ("" when there is none).
fn retained(laptop: &bulkhead_netns::Netns, topic: &str) -> Result<String> {
    let out = laptop.exec_output(&["mosquitto_sub", "-h", "127.0.0.1", "-t", topic, "-C", "1", "-W", "2"])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Waits until the broker on the laptop's loopback takes a message.
fn wait_for_broker(laptop: &bulkhead_netns::Netns, log: &std::path::Path) -> Result<()> {
    wait_for("mosquitto listening", Duration::from_secs(10), || {
        Ok(laptop
            .exec_output(&["mosquitto_pub", "-h", "127.0.0.1", "-t", "test/up", "-m", "1"])?
            .status
            .success())
    })
    .with_context(|| std::fs::read_to_string(log).unwrap_or_default())
}

/// The daemon's MQTT channel as `bulkhead notify status` shows it.
fn mqtt_status(demo: &DemoHome) -> Result<bulkhead::notify::ChannelStatus> {
    notify_status(demo)?
        .channels
        .into_iter()
        .find(|c| c.kind == "mqtt")
        .context("no mqtt channel")
}

/// `bulkhead notify status`.
fn notify_status(demo: &DemoHome) -> Result<bulkhead::notify::NotifyStatus> {
    let Response::Notify { status: Some(status) } = demo.call(Request::NotifyStatus)? else {
        bail!("no notify status");
    };
    Ok(*status)
}

fn secret_file(path: &std::path::Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn wait_for(what: &str, timeout: Duration, mut found: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if found()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("{what}: not within {} s", timeout.as_secs())
}

/// z2. nmap from the plug → one probing alert that reaches a webhook (signed,
/// retried while the receiver was down), ntfy (title, priority, token) and
/// Home Assistant over a real mosquitto broker (discovery configs with the
/// fields HA requires, the alert, the availability); after the broker
/// restarts, the daemon reconnects and publishes the entities again.
pub(crate) fn z2_notifications_reach_webhook_ntfy_and_mqtt() -> Result<Outcome> {
    need(
        &["mosquitto", "mosquitto_sub", "nmap", "python3"],
        "apt-get install mosquitto mosquitto-clients nmap python3",
    )?;
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let dir = demo_dir(&demo)?;
    secret_file(&dir.join("webhook.key"), "s3cret-key\n")?;
    secret_file(&dir.join("ntfy.token"), "tk_demo\n")?;
    let mut text = std::fs::read_to_string(demo.config_path())?;
    text.push_str(
        "\n[[notify.webhook]]\nname = \"home\"\nurl = \"http://10.0.1.10:8099/hook\"\nsecret_file = \"webhook.key\"\n\
         \n[[notify.ntfy]]\nname = \"phone\"\nurl = \"http://10.0.1.10:8099/bulkhead-alerts\"\nsecret_file = \"ntfy.token\"\n\
         \n[notify.mqtt]\nbroker = \"10.0.1.10:1883\"\ncommands = true\n",
    );
    std::fs::write(demo.config_path(), text)?;
    let laptop = demo.home.ns("laptop")?;
    let mosquitto_conf = dir.join("mosquitto.conf");
    std::fs::write(
        &mosquitto_conf,
        "listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\n",
    )?;
    let conf = mosquitto_conf.to_string_lossy().into_owned();
    let broker = laptop.spawn_logged("mosquitto", &["-c", &conf], &dir.join("mosquitto.log"))?;
    wait_for_broker(laptop, &dir.join("mosquitto.log"))?;
    let mqtt_log = dir.join("mqtt.log");
    laptop.spawn_logged("mosquitto_sub", &["-h", "127.0.0.1", "-v", "-t", "#"], &mqtt_log)?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let plug = mac_of("plug")?;
    let plug_id: String = plug.0.iter().map(|b| format!("{b:02x}")).collect();

    // Home Assistant sees the devices as soon as the daemon is up.
    let tracker_topic = format!("homeassistant/device_tracker/bulkhead_{plug_id}/presence/config");
    wait_for(
        "the plug's device_tracker config on the broker",
        Duration::from_secs(20),
        || Ok(std::fs::read_to_string(&mqtt_log)?.contains(&tracker_topic)),
    )
    .with_context(|| {
        format!(
            "mosquitto_sub saw:\n{}\nmosquitto:\n{}\n--- daemon log:\n{}",
            std::fs::read_to_string(&mqtt_log).unwrap_or_default(),
            std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default(),
            demo.log()
        )
    })?;

    // Presence as Home Assistant reads it now: the home zone in the
    // tracker's attributes.
    wait_for("the plug at home (in_zones)", Duration::from_secs(20), || {
        Ok(std::fs::read_to_string(&mqtt_log)?.lines().any(|l| {
            l.starts_with(&format!("bulkhead/device/{plug_id}/attributes "))
                && l.contains("\"in_zones\":[\"zone.home\"]")
        }))
    })?;

    // The scan, while the HTTP receiver is not running yet.
    nmap(&demo, "plug", "1-300", &["10.0.1.10", "10.0.1.1"])?;
    std::thread::sleep(Duration::from_secs(4));
    let received = dir.join("received.jsonl");
    let script = dir.join("receiver.py");
    std::fs::write(&script, RECEIVER)?;
    let key = dir.join("webhook.key");
    laptop.spawn_logged(
        "python3",
        &[
            &script.to_string_lossy(),
            "8099",
            &key.to_string_lossy(),
            &received.to_string_lossy(),
        ],
        &dir.join("receiver.log"),
    )?;
    let records = || -> Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    };
    wait_for(
        "the probing alert on the webhook and on ntfy",
        Duration::from_secs(30),
        || {
            let r = records()?;
            Ok(r.iter()
                .any(|x| x["path"] == "/hook" && x["body"].as_str().is_some_and(|b| b.contains("\"probing\"")))
                && r.iter()
                    .any(|x| x["path"] == "/bulkhead-alerts" && x["title"] == "Bulkhead: probing"))
        },
    )
    .with_context(|| format!("receiver got {:?}\n{}", records().ok(), demo.log()))?;
    let r = records()?;
    let hooks: Vec<_> = r
        .iter()
        .filter(|x| x["path"] == "/hook" && x["body"].as_str().is_some_and(|b| b.contains("\"probing\"")))
        .collect();
    ensure!(hooks.len() == 1, "one probing delivery on the webhook: {hooks:?}");
    ensure!(
        hooks[0]["valid"] == true,
        "the webhook signature checks: {:?}",
        hooks[0]
    );
    let body: serde_json::Value = serde_json::from_str(hooks[0]["body"].as_str().unwrap_or_default())?;
    ensure!(
        body["mac"] == plug.to_string() && body["severity"] == "critical",
        "{body}"
    );
    let ntfy = r
        .iter()
        .find(|x| x["path"] == "/bulkhead-alerts" && x["title"] == "Bulkhead: probing")
        .context("ntfy")?;
    ensure!(ntfy["priority"] == "5" && ntfy["auth"] == "Bearer tk_demo", "{ntfy}");
    let status = notify_status(&demo)?;
    let home = status
        .channels
        .iter()
        .find(|c| c.name == "home")
        .context("channel home")?;
    ensure!(
        home.failed >= 1 && home.sent >= 1,
        "the receiver was down, then up: {home:?}"
    );

    // The web UI's Notifications API shows the same, without the webhook's
    // path, and its "send a test" reaches the receiver.
    let s = super::web_ui::api_setup(&demo, "laptop", super::web_ui::UI)?;
    let cookie = format!("bulkhead_session={}", s.cookie);
    let ui = |req: super::http::Request<'_>| -> Result<super::http::Response> {
        super::http::send(
            Some(laptop),
            super::web_ui::UI,
            &req.header("Cookie", cookie.clone())
                .header("X-CSRF-Token", s.csrf.clone()),
        )
    };
    let r = ui(super::http::Request::get("/api/notifications"))?;
    ensure!(r.status == 200, "GET /api/notifications: {} {}", r.status, r.text());
    let view = r.json()?;
    let shown = view["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "home"))
        .with_context(|| format!("no channel home in {view}"))?;
    ensure!(
        shown["target"] == "http://10.0.1.10:8099" && shown["sent"].as_u64() >= Some(1),
        "the page's view of the webhook: {shown}"
    );
    let tests_before = records()?
        .iter()
        .filter(|x| x["path"] == "/hook" && x["body"].as_str().is_some_and(|b| b.contains("\"id\":0,")))
        .count();
    let r = ui(super::http::Request::post_json(
        "/api/notifications/home/test",
        &serde_json::json!({}),
    ))?;
    ensure!(
        r.status == 200,
        "POST /api/notifications/home/test: {} {}",
        r.status,
        r.text()
    );
    wait_for("the UI's test on the webhook", Duration::from_secs(15), || {
        Ok(records()?
            .iter()
            .filter(|x| x["path"] == "/hook" && x["body"].as_str().is_some_and(|b| b.contains("\"id\":0,")))
            .count()
            > tests_before)
    })
    .with_context(|| format!("receiver got {:?}", records().ok()))?;
    let r = ui(super::http::Request::post_json(
        "/api/notifications/nobody/test",
        &serde_json::json!({}),
    ))?;
    ensure!(
        r.status == 404,
        "a test to an unknown channel: {} {}",
        r.status,
        r.text()
    );

    // The CLI shows the alerts in the router's local time (here the TZ the
    // homeowner's shell has: India, UTC+05:30, no summer time).
    let socket = demo.socket();
    let out = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(&socket)
        .arg("alerts")
        .env("TZ", "IST-5:30")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("probing") && text.contains("+05:30") && !text.contains("UTC"),
        "bulkhead alerts in local time: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // MQTT: the alert and the availability.
    let log = std::fs::read_to_string(&mqtt_log)?;
    ensure!(log.contains("bulkhead/status online"), "availability");
    ensure!(
        log.lines()
            .any(|l| l.starts_with("bulkhead/alert ") && l.contains("\"probing\"")),
        "the alert on MQTT"
    );
    ensure!(log.contains("bulkhead/alert/last probing"), "the last-alert sensor");

    // The router's entities: the open alerts count the probing one.
    ensure!(
        log.contains("homeassistant/sensor/bulkhead_router/open_alerts/config {"),
        "the open-alerts sensor's config"
    );
    wait_for("open alerts ≥ 1 on the broker", Duration::from_secs(15), || {
        Ok(std::fs::read_to_string(&mqtt_log)?.lines().any(|l| {
            l.strip_prefix("bulkhead/router/open_alerts ")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n >= 1)
        }))
    })?;

    // Commands (`commands = true`): Home Assistant's Blocked switch blocks and
    // unblocks the plug, its Approve button lets the stranger out of
    // quarantine; nonsense on a command topic is refused and changes nothing.
    let publish = |topic: &str, message: &str| -> Result<()> {
        let out = laptop.exec_output(&["mosquitto_pub", "-h", "127.0.0.1", "-t", topic, "-m", message])?;
        ensure!(out.status.success(), "mosquitto_pub {topic}");
        Ok(())
    };
    let view = |mac| -> Result<bulkhead::control::DeviceView> {
        let Response::Devices { devices } = demo.call(Request::Devices)? else {
            bail!("no devices");
        };
        devices.into_iter().find(|d| d.mac == mac).context("device gone")
    };
    let switch = format!("homeassistant/switch/bulkhead_{plug_id}/blocked/config {{");
    ensure!(log.contains(&switch), "the plug's Blocked switch config");
    publish(&format!("bulkhead/device/{plug_id}/blocked/set"), "maybe")?;
    publish(&format!("bulkhead/device/{plug_id}/blocked/set"), "ON")?;
    wait_for("the plug blocked by Home Assistant", Duration::from_secs(10), || {
        Ok(view(plug)?.blocked)
    })?;
    wait_for("the switch's state ON", Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&mqtt_log)?.contains(&format!("bulkhead/device/{plug_id}/blocked ON")))
    })?;
    publish(&format!("bulkhead/device/{plug_id}/blocked/set"), "OFF")?;
    wait_for("the plug unblocked by Home Assistant", Duration::from_secs(10), || {
        Ok(!view(plug)?.blocked)
    })?;
    let stranger = mac_of("stranger")?;
    let stranger_id: String = stranger.0.iter().map(|b| format!("{b:02x}")).collect();
    // The stranger shows up (register_hosts leaves it out: nobody knows it).
    demo.call(Request::AddDevice {
        mac: stranger,
        ip: Some("10.0.1.99".parse()?),
    })?;
    ensure!(view(stranger)?.quarantined, "the stranger starts in quarantine");
    let button = format!("homeassistant/button/bulkhead_{stranger_id}/approve/config {{");
    wait_for("the stranger's Approve button", Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&mqtt_log)?.contains(&button))
    })?;
    publish(&format!("bulkhead/device/{stranger_id}/approve/set"), "PRESS")?;
    wait_for(
        "the stranger approved by Home Assistant",
        Duration::from_secs(10),
        || Ok(!view(stranger)?.quarantined),
    )?;
    // Forgotten, the stranger's entities leave Home Assistant: its retained
    // configs are emptied on the broker.
    let retained = |topic: &str| retained(laptop, topic);
    let stranger_tracker = format!("homeassistant/device_tracker/bulkhead_{stranger_id}/presence/config");
    ensure!(
        retained(&stranger_tracker)?.contains("\"source_type\""),
        "the stranger's tracker is on the broker before it is forgotten"
    );
    let Response::Done { .. } = demo.call(Request::Forget { mac: stranger })? else {
        bail!("forget refused");
    };
    wait_for(
        "the forgotten stranger's entities removed",
        Duration::from_secs(15),
        || Ok(retained(&stranger_tracker)?.is_empty()),
    )?;
    let mqtt = mqtt_status(&demo)?;
    ensure!(
        mqtt.commands == 3 && mqtt.commands_refused == 1,
        "three commands carried out, the nonsense refused: {mqtt:?}"
    );

    // The broker restarts (without persistence: it forgets every retained
    // message); the daemon reconnects and publishes the entities again.
    laptop.kill_tracked(broker, Signal::SIGTERM)?;
    laptop.wait_tracked(broker, Duration::from_secs(5))?;
    let log2 = dir.join("mosquitto2.log");
    laptop.spawn_logged("mosquitto", &["-c", &conf], &log2)?;
    wait_for(
        "the entities again after the broker restarted",
        Duration::from_secs(40),
        || {
            let out = laptop.exec_output(&[
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-v",
                "-t",
                "homeassistant/#",
                "-C",
                "1",
                "-W",
                "2",
            ])?;
            Ok(String::from_utf8_lossy(&out.stdout).contains("homeassistant/"))
        },
    )?;

    // The daemon dies: the broker tells Home Assistant (the last will). A
    // plug's config deleted meanwhile comes back when the daemon restarts.
    demo.kill_daemon()?;
    wait_for("the last will: offline", Duration::from_secs(10), || {
        Ok(retained("bulkhead/status")? == "offline")
    })?;
    let out = laptop.exec_output(&["mosquitto_pub", "-h", "127.0.0.1", "-r", "-n", "-t", &tracker_topic])?;
    ensure!(out.status.success(), "deleting the retained config");
    ensure!(
        retained(&tracker_topic)?.is_empty(),
        "the config is gone from the broker"
    );
    demo.start_daemon()?;
    wait_for(
        "online and the plug's config again after the daemon restarted",
        Duration::from_secs(30),
        || Ok(retained("bulkhead/status")? == "online" && retained(&tracker_topic)?.contains("\"source_type\"")),
    )
    .with_context(|| demo.log())?;
    Ok(Outcome::Passed)
}

/// z3. MQTT over TLS: with `broker = "mqtts://…"` the daemon reaches a real
/// mosquitto TLS listener whose certificate chains to `[notify]
/// tls_ca_file` and publishes Home Assistant's entities there; given a CA
/// that did not sign the broker's certificate, it refuses the broker (not
/// connected, the error says why) and publishes nothing.
pub(crate) fn z3_mqtt_over_tls_checks_the_broker() -> Result<Outcome> {
    need(
        &["mosquitto", "mosquitto_sub", "openssl"],
        "apt-get install mosquitto mosquitto-clients openssl",
    )?;
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    let dir = demo_dir(&demo)?;
    let laptop_ip: IpAddr = "10.0.1.10".parse()?;
    let (key, cert, ca) = (dir.join("broker.key"), dir.join("broker.crt"), dir.join("ca.crt"));
    bulkhead_netns::dns::make_test_cert(&key, &cert, &ca, &[laptop_ip])?;
    // Another CA, which signed nothing the broker shows.
    let other = dir.join("other");
    std::fs::create_dir_all(&other)?;
    let other_ca = other.join("ca.crt");
    bulkhead_netns::dns::make_test_cert(&other.join("x.key"), &other.join("x.crt"), &other_ca, &[laptop_ip])?;
    let base = std::fs::read_to_string(demo.config_path())?;
    let config = |ca: &std::path::Path| {
        format!(
            "{base}\n[notify]\ntls_ca_file = \"{}\"\n\n[notify.mqtt]\nbroker = \"mqtts://10.0.1.10:8883\"\n",
            ca.display()
        )
    };
    std::fs::write(demo.config_path(), config(&ca))?;
    let laptop = demo.home.ns("laptop")?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: the key lives in the test's private directory, which
            // the `mosquitto` user mosquitto would switch to cannot read.
            "user root\nper_listener_settings false\nallow_anonymous true\npersistence false\n\
             listener 1883 127.0.0.1\n\
             listener 8883 0.0.0.0\ncertfile {}\nkeyfile {}\n",
            cert.display(),
            key.display()
        ),
    )?;
    laptop.spawn_logged(
        "mosquitto",
        &["-c", &conf.to_string_lossy()],
        &dir.join("mosquitto.log"),
    )?;
    let retained = |topic: &str| retained(laptop, topic);
    wait_for_broker(laptop, &dir.join("mosquitto.log"))?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let plug_id: String = mac_of("plug")?.0.iter().map(|b| format!("{b:02x}")).collect();
    let tracker = format!("homeassistant/device_tracker/bulkhead_{plug_id}/presence/config");
    wait_for("the plug's tracker over TLS", Duration::from_secs(20), || {
        Ok(retained(&tracker)?.contains("\"source_type\""))
    })
    .with_context(|| {
        format!(
            "mosquitto:\n{}\n--- daemon log:\n{}",
            std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default(),
            demo.log()
        )
    })?;
    let mqtt_status = || mqtt_status(&demo);
    let s = mqtt_status()?;
    ensure!(s.connected && s.target == "mqtts://10.0.1.10:8883", "{s:?}");

    // The wrong CA: the broker is refused. Its retained availability is
    // cleared first, so "online" can only come from a new connection.
    let out = laptop.exec_output(&["mosquitto_pub", "-h", "127.0.0.1", "-r", "-n", "-t", "bulkhead/status"])?;
    ensure!(out.status.success(), "clearing bulkhead/status");
    std::fs::write(demo.config_path(), config(&other_ca))?;
    demo.signal_daemon(Signal::SIGHUP)?;
    wait_for(
        "the broker refused for its certificate",
        Duration::from_secs(20),
        || {
            let s = mqtt_status()?;
            Ok(!s.connected && s.last_error.as_deref().is_some_and(|e| e.contains("TLS")))
        },
    )
    .with_context(|| format!("{:?}\n--- daemon log:\n{}", mqtt_status().ok(), demo.log()))?;
    ensure!(
        retained("bulkhead/status")? != "online",
        "nothing was published through a broker whose certificate failed"
    );
    Ok(Outcome::Passed)
}

/// The MAC a namespace's neighbour table holds for `ip` (None: no entry).
fn neighbour_mac(demo: &DemoHome, host: &str, ip: &str) -> Result<Option<String>> {
    neighbour_mac_in(demo.home.ns(host)?, ip)
}

/// The MAC `ns`'s neighbour table holds for `ip`.
fn neighbour_mac_in(ns: &bulkhead_netns::Netns, ip: &str) -> Result<Option<String>> {
    let out = ns.exec(&["ip", "neigh", "show", ip])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_string))
}

/// z4. ARP spoofing of the gateway, with Debian's arping: the quarantined
/// stranger takes the router's address on its interface and sends
/// unsolicited ARP and ARP replies claiming it, to become the laptop's
/// gateway. The bridge drops them: the laptop still sends to the router's MAC
/// and reaches the internet; one spoofing alert names the stranger.
pub(crate) fn z4_arp_claims_of_the_gateway_are_dropped_and_said() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let stranger = mac_of("stranger")?;
    let gateway = "10.0.1.1";
    let router_mac = {
        let out = demo.home.router().exec(&["cat", "/sys/class/net/br-lan/address"])?;
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The laptop knows its gateway.
    ensure!(
        bulkhead_netns::ping(demo.home.ns("laptop")?, gateway.parse()?, Duration::from_millis(500))?,
        "the laptop cannot ping its gateway"
    );
    ensure!(
        neighbour_mac(&demo, "laptop", gateway)?.as_deref() == Some(router_mac.as_str()),
        "the laptop's gateway entry is not the router's MAC to begin with"
    );
    let s = demo.home.ns("stranger")?;
    s.exec(&["ip", "addr", "add", &format!("{gateway}/32"), "dev", "eth0", "nodad"])?;
    for mode in ["-U", "-A"] {
        s.exec_output(&[
            "arping", "-q", "-c", "3", "-w", "2", mode, "-I", "eth0", "-s", gateway, gateway,
        ])?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let seen = neighbour_mac(&demo, "laptop", gateway)?;
    ensure!(
        seen.as_deref() == Some(router_mac.as_str()),
        "the laptop's gateway now points at {seen:?}, not the router's {router_mac}"
    );
    ensure!(
        bulkhead_netns::tcp_probe(
            demo.home.ns("laptop")?,
            std::net::SocketAddr::new(demo.home.internet_v4().into(), 80),
            Duration::from_millis(500)
        )?,
        "the laptop lost the internet"
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let told = of_kinds(&alerts(&demo)?, &[AlertKind::Spoofing]);
        if told.len() == 1 && told[0].mac == Some(stranger) && told[0].message.contains(gateway) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "one spoofing alert naming the stranger and the gateway: {told:?}\n{}",
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Outcome::Passed)
}

/// The logged DNS questions whose name contains `search`.
fn logged_questions(demo: &DemoHome, search: &str) -> Result<Vec<bulkhead::dns::querylog::QueryLogEntry>> {
    let bulkhead::control::Response::DnsLog { entries } = demo.call(bulkhead::control::Request::DnsLog {
        filter: bulkhead::dns::querylog::LogFilter {
            search: Some(search.into()),
            limit: 10,
            ..Default::default()
        },
    })?
    else {
        anyhow::bail!("unexpected answer to DnsLog")
    };
    Ok(entries)
}

/// The packets the bridge table's `input` rule named `comment` counted, and
/// the chain as nft lists it (for the message).
fn input_rule_packets(demo: &DemoHome, comment: &str) -> Result<(Option<u64>, String)> {
    bridge_rule_packets(demo, "input", comment)
}

/// z5. The plug claims the laptop's address in ARP (gratuitous and replies)
/// to the phone on the same bridge and to the router itself: the bridge
/// drops the claims, the phone and the router still send to the laptop's own
/// MAC (before the bridge's `input` chain, the router's entry went to the
/// plug: the laptop's answers from the internet with it), and one spoofing
/// alert names both. A DNS question to the router from the laptop's address
/// is dropped too (the resolver would have taken it for the laptop's). The
/// laptop's own ARP and DNS keep working (its address . MAC pair is known).
pub(crate) fn z5_arp_claims_of_another_devices_address_are_dropped() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let plug = mac_of("plug")?;
    let laptop_ip = demo.ipv4("laptop")?.to_string();
    let laptop_mac = mac_of("laptop")?.to_string();
    // The phone knows the laptop.
    ensure!(
        bulkhead_netns::ping(demo.home.ns("phone")?, laptop_ip.parse()?, Duration::from_millis(500))?,
        "the phone cannot ping the laptop"
    );
    ensure!(
        neighbour_mac(&demo, "phone", &laptop_ip)?.as_deref() == Some(laptop_mac.as_str()),
        "the phone's entry for the laptop is not the laptop's MAC to begin with"
    );
    let owners = String::from_utf8_lossy(
        &demo
            .home
            .router()
            .exec(&["nft", "list", "set", "bridge", "bulkhead", "owner-of-v4"])?
            .stdout,
    )
    .into_owned();
    ensure!(
        owners.contains(&format!("{laptop_ip} . {laptop_mac}")),
        "the laptop's address is not bound to its MAC: {owners}"
    );
    // The router knows the laptop too (it sends the laptop's answers from
    // the internet there).
    let router = demo.home.router();
    ensure!(
        bulkhead_netns::ping(router, laptop_ip.parse()?, Duration::from_millis(500))?,
        "the router cannot ping the laptop"
    );
    let router_entry = || neighbour_mac_in(router, &laptop_ip);
    ensure!(router_entry()?.as_deref() == Some(laptop_mac.as_str()));
    let p = demo.home.ns("plug")?;
    p.exec(&["ip", "addr", "add", &format!("{laptop_ip}/32"), "dev", "eth0", "nodad"])?;
    for mode in ["-U", "-A"] {
        p.exec_output(&[
            "arping", "-q", "-c", "3", "-w", "2", mode, "-I", "eth0", "-s", &laptop_ip, &laptop_ip,
        ])?;
    }
    // And asks the router itself, as the laptop: an ARP request updates the
    // asked host's entry for the sender.
    p.exec_output(&[
        "arping", "-q", "-c", "3", "-w", "2", "-I", "eth0", "-s", &laptop_ip, "10.0.1.1",
    ])?;
    std::thread::sleep(Duration::from_millis(500));
    let seen = neighbour_mac(&demo, "phone", &laptop_ip)?;
    ensure!(
        seen.as_deref() == Some(laptop_mac.as_str()),
        "the phone's entry for the laptop now points at {seen:?}, not {laptop_mac}"
    );
    let seen = router_entry()?;
    ensure!(
        seen.as_deref() == Some(laptop_mac.as_str()),
        "the router's entry for the laptop now points at {seen:?}, not {laptop_mac}: the laptop's \
         answers from the internet would go to the plug"
    );
    // A question to the router's resolver from the laptop's address: it
    // would be logged as the laptop's and answered by its policy. Dropped
    // at the bridge (the guard's counter says so), never logged. (The plug
    // knows the router's MAC already: its ARP as the laptop is dropped.)
    let router_mac = String::from_utf8_lossy(&router.exec(&["cat", "/sys/class/net/br-lan/address"])?.stdout)
        .trim()
        .to_string();
    p.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.0.1.1",
        "lladdr",
        &router_mac,
        "dev",
        "eth0",
    ])?;
    let _ = p.exec_output(&[
        "dig",
        "+tries=1",
        "+time=1",
        "-b",
        &laptop_ip,
        "@10.0.1.1",
        "spoofed-question.example",
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    let entries = logged_questions(&demo, "spoofed-question")?;
    ensure!(
        entries.is_empty(),
        "the forged question reached the resolver: {entries:?}"
    );
    let (dropped, input) = input_rule_packets(&demo, "ip-claims-device")?;
    ensure!(
        dropped.is_some_and(|n| n >= 1),
        "the IPv4 source guard dropped nothing: {input}"
    );
    // The same over IPv6, from the laptop's IPv6 address to the router's.
    let laptop6 = demo.ipv6("laptop")?.to_string();
    let router6 = ipv6_on(router, "br-lan", "global")?.to_string();
    p.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        &format!("{laptop6}/128"),
        "dev",
        "eth0",
        "nodad",
    ])?;
    p.exec(&[
        "ip",
        "-6",
        "neigh",
        "replace",
        &router6,
        "lladdr",
        &router_mac,
        "dev",
        "eth0",
    ])?;
    let _ = p.exec_output(&[
        "dig",
        "-6",
        "+tries=1",
        "+time=1",
        "-b",
        &laptop6,
        &format!("@{router6}"),
        "spoofed-question6.example",
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    let entries = logged_questions(&demo, "spoofed-question6")?;
    ensure!(
        entries.is_empty(),
        "the forged IPv6 question reached the resolver: {entries:?}"
    );
    let (dropped6, input) = input_rule_packets(&demo, "ip6-claims-device")?;
    ensure!(
        dropped6.is_some_and(|n| n >= 1),
        "the IPv6 source guard dropped nothing: {input}"
    );
    // The laptop's own question is answered as ever.
    let own = demo.home.ns("laptop")?.exec_output(&[
        "dig",
        "+tries=1",
        "+time=2",
        "@10.0.1.1",
        "laptop-own-question.example",
    ])?;
    let own = String::from_utf8_lossy(&own.stdout).into_owned();
    ensure!(
        own.contains("status:"),
        "the laptop's own question got no answer: {own}"
    );
    // The laptop's own ARP still passes (its pair is known): the phone
    // resolves it afresh.
    demo.home.ns("phone")?.exec(&["ip", "neigh", "flush", "dev", "eth0"])?;
    ensure!(
        bulkhead_netns::ping(demo.home.ns("phone")?, laptop_ip.parse()?, Duration::from_millis(1000))?,
        "the phone cannot resolve the laptop any more"
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let told = of_kinds(&alerts(&demo)?, &[AlertKind::Spoofing]);
        if told.len() == 1
            && told[0].mac == Some(plug)
            && told[0].message.contains(&laptop_ip)
            && told[0].message.contains("laptop")
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "one spoofing alert naming the plug and the laptop's address: {told:?}\n{}",
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Outcome::Passed)
}

/// The packets the rule named `comment` in the bridge table's `chain`
/// counted, and the chain as nft lists it (for the message).
pub(crate) fn bridge_rule_packets(demo: &DemoHome, chain: &str, comment: &str) -> Result<(Option<u64>, String)> {
    let out = demo
        .home
        .router()
        .exec(&["nft", "list", "chain", "bridge", "bulkhead", chain])?;
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let quoted = format!("\"{comment}\"");
    let packets = listed
        .lines()
        .find(|l| l.contains(&quoted))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "packets").nth(1))
        .and_then(|n| n.parse::<u64>().ok());
    Ok((packets, listed))
}

/// Waits until the firewall holds both bridges' link-local addresses (the
/// kernel makes them a moment after the links come up, and the daemon's
/// replace for them resets the rules' counters the tests read).
pub(crate) fn wait_link_locals_guarded(demo: &DemoHome) -> Result<()> {
    super::wait_until(
        "the router's link-local addresses are guarded",
        Duration::from_secs(10),
        || {
            let out = demo
                .home
                .router()
                .exec(&["nft", "list", "set", "bridge", "bulkhead", "router-v6"])?;
            Ok(String::from_utf8_lossy(&out.stdout).matches("fe80::").count() >= 2)
        },
    )?;
    // The replace that follows them is done once the address events settled.
    std::thread::sleep(Duration::from_millis(1500));
    Ok(())
}

/// Sends `frames` whole out of `host`'s `eth0`, three rounds 100 ms apart
/// (forged sources: what a compromised device with root can send).
pub(crate) fn send_frames(demo: &DemoHome, host: &str, frames: Vec<Vec<u8>>) -> Result<()> {
    let sent = demo
        .home
        .ns(host)?
        .spawn_thread("forged-frames", move || -> std::io::Result<()> {
            let raw = bulkhead_netns::raw::RawSender::open("eth0")?;
            for _ in 0..3 {
                for f in &frames {
                    raw.send(f)?;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        })?;
    sent.join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))???;
    Ok(())
}

/// The first address of `scope` (`global`, `link`) on `dev` in `ns`.
fn ipv6_on(ns: &bulkhead_netns::Netns, dev: &str, scope: &str) -> Result<std::net::Ipv6Addr> {
    let out = ns.exec(&["ip", "-6", "-o", "addr", "show", "dev", dev, "scope", scope])?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no {scope} IPv6 address on {dev}"))
}

/// z6. IPv6 neighbour-advert spoofing, the NA counterpart of z4 and z5: the
/// plug sends unsolicited adverts (override flag, to all nodes and to the
/// router) saying the laptop's IPv6 address and the router's link-local
/// address (every device's IPv6 gateway) are at its own MAC. The bridge
/// drops them (the guards nft 1.0.6 cannot load, added over netlink): the
/// router's and the phone's entries for the laptop stay the laptop's, the
/// phone's gateway entry stays the router's, the guards' counters move and
/// a spoofing alert names the plug. The plug's adverts for its own address
/// still pass.
pub(crate) fn z6_neighbour_advert_claims_are_dropped() -> Result<Outcome> {
    let demo = DemoHome::build(&super::daemon_bin(), &[])?;
    demo.start_daemon()?;
    demo.register_hosts()?;
    let plug = mac_of("plug")?;
    let laptop_mac = mac_of("laptop")?.to_string();
    let laptop6: std::net::Ipv6Addr = match demo.ipv6("laptop")? {
        IpAddr::V6(a) => a,
        other => anyhow::bail!("the laptop's IPv6 address is {other}"),
    };
    let plug6: std::net::Ipv6Addr = match demo.ipv6("plug")? {
        IpAddr::V6(a) => a,
        other => anyhow::bail!("the plug's IPv6 address is {other}"),
    };
    let router = demo.home.router();
    let router_mac = String::from_utf8_lossy(&router.exec(&["cat", "/sys/class/net/br-lan/address"])?.stdout)
        .trim()
        .to_string();
    let router_ll = ipv6_on(router, "br-lan", "link")?;
    let phone = demo.home.ns("phone")?;
    // Everyone's entries to begin with: the router and the phone know the
    // laptop, the phone knows its gateway (the router's link-local address).
    // (Within 10 s: addresses and routes from router adverts settle after
    // the hosts join.)
    for (from, name, to) in [
        (router, "the router", IpAddr::from(laptop6)),
        (phone, "the phone", IpAddr::from(laptop6)),
    ] {
        ensure!(
            bulkhead_netns::eventually(Duration::from_secs(10), || bulkhead_netns::ping(
                from,
                to,
                Duration::from_secs(1)
            ))?,
            "{name} cannot ping {to}"
        );
    }
    let scoped = format!("{router_ll}%eth0");
    ensure!(
        bulkhead_netns::eventually(Duration::from_secs(10), || phone
            .exec_ok(&["busybox", "ping", "-6", "-c", "1", "-W", "1", &scoped]))?,
        "the phone cannot ping its gateway {scoped}"
    );
    let laptop_s = laptop6.to_string();
    let router_ll_s = router_ll.to_string();
    let entries = || -> Result<[Option<String>; 3]> {
        Ok([
            neighbour_mac_in(router, &laptop_s)?,
            neighbour_mac_in(phone, &laptop_s)?,
            neighbour_mac_in(phone, &router_ll_s)?,
        ])
    };
    let before = entries()?;
    ensure!(
        before
            == [
                Some(laptop_mac.clone()),
                Some(laptop_mac.clone()),
                Some(router_mac.clone())
            ],
        "the entries are not the laptop's and the router's to begin with: {before:?}"
    );
    let guards = String::from_utf8_lossy(
        &router
            .exec(&["nft", "list", "chain", "bridge", "bulkhead", "nd-claims"])?
            .stdout,
    )
    .into_owned();
    ensure!(
        guards.contains("claims-router") && guards.contains("claims-device"),
        "the guards are not in the nd-claims chain: {guards}"
    );
    wait_link_locals_guarded(&demo)?;
    let plug_ll = ipv6_on(demo.home.ns("plug")?, "eth0", "link")?;
    let router_mac_bytes: bulkhead::config::MacAddr = router_mac.parse().map_err(anyhow::Error::msg)?;
    let all_nodes: std::net::Ipv6Addr = "ff02::1".parse()?;
    // Adverts from the plug for `targets`, three rounds: unsolicited with
    // the override flag to all nodes (the phone, the laptop and the router
    // each get a copy), and as if solicited to the router itself.
    let advertise = |targets: Vec<std::net::Ipv6Addr>| -> Result<()> {
        let sent = demo
            .home
            .ns("plug")?
            .spawn_thread("forged-na", move || -> std::io::Result<()> {
                use bulkhead_netns::raw::{neighbour_advert_frame, RawSender};
                let raw = RawSender::open("eth0")?;
                let me = plug.0;
                let multicast = [0x33, 0x33, 0, 0, 0, 1];
                for _ in 0..3 {
                    for target in &targets {
                        raw.send(&neighbour_advert_frame(
                            me, multicast, plug_ll, all_nodes, 0x20, *target, me,
                        ))?;
                        raw.send(&neighbour_advert_frame(
                            me,
                            router_mac_bytes.0,
                            plug_ll,
                            router_ll,
                            0x60,
                            *target,
                            me,
                        ))?;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            })?;
        sent.join()
            .map_err(|_| anyhow::anyhow!("the sender thread panicked"))???;
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    };
    let drops = |chain: &str| -> Result<u64> {
        let (n, listed) = bridge_rule_packets(&demo, chain, "drop")?;
        n.with_context(|| format!("no counted drop rule in {chain}: {listed}"))
    };
    // Its own address: honest adverts, which pass.
    advertise(vec![plug6])?;
    ensure!(
        drops("nd-claim-device")? == 0 && drops("nd-claim-router")? == 0,
        "the plug's adverts for its own address were dropped"
    );
    advertise(vec![laptop6, router_ll])?;
    let after = entries()?;
    ensure!(
        after == before,
        "forged adverts moved neighbour entries (router's and phone's for the laptop, phone's for \
         its gateway): {after:?}, were {before:?}"
    );
    // Each forged advert at least once (the multicast ones once per port
    // they were flooded to, and once to the router).
    ensure!(
        drops("nd-claim-device")? >= 6,
        "the claims of the laptop's address were not all dropped"
    );
    ensure!(
        drops("nd-claim-router")? >= 6,
        "the claims of the router's address were not all dropped"
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let told = of_kinds(&alerts(&demo)?, &[AlertKind::Spoofing]);
        if told.iter().any(|a| {
            a.mac == Some(plug) && a.message.contains("neighbour advertisement") && a.message.contains("address")
        }) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no spoofing alert naming the plug's neighbour adverts: {told:?}\n{}",
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Outcome::Passed)
}

/// The port of `bridge` the router's forwarding table has `mac` on.
pub(crate) fn fdb_port(demo: &DemoHome, bridge: &str, mac: &str) -> Result<Option<String>> {
    let out = demo.home.router().exec(&["bridge", "fdb", "show", "br", bridge])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(mac) && !l.contains("permanent"))
        .find_map(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "dev")
                .nth(1)
                .map(str::to_string)
        }))
}
