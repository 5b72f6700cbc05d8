//! Device and alert text chosen to break the page (markup, control and
//! bidi characters, 255-byte names) renders inert.

use bulkhead_web::model::{AlertView, DeviceDetail};
use bulkhead_web::testing::sample_device;

use crate::common::{json, text, ui, Ui};

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";
const RLO: char = '\u{202E}';

fn hostile_ui() -> (Ui, String) {
    let ui = ui();
    let long = format!("{}{}", "W".repeat(200), "界".repeat(18)); // 200 + 54 = 254 bytes
    let long = format!("{long}x"); // 255 bytes
    assert_eq!(long.len(), 255);
    let hostile: [(&str, Option<&str>, &str, &str); 5] = [
        ("02:00:00:00:0e:01", None, SCRIPT, "iot"),
        ("02:00:00:00:0e:02", Some(IMG), "img-host", "unknown"),
        (
            "02:00:00:00:0e:03",
            None,
            "line1\nline2\tTAB\r\u{1b}[31m\u{85}",
            "unknown",
        ),
        ("02:00:00:00:0e:04", None, "invoice\u{202E}fdp.exe", "iot"),
        ("02:00:00:00:0e:05", None, &long, "trusted"),
    ];
    for (mac, name, host, zone) in hostile {
        let mut d = sample_device(mac, name, Some(host), zone);
        d.device.vendor = Some(format!("{SCRIPT} vendor"));
        d.device.class = Some(format!("{IMG}class"));
        d.evidence.push(bulkhead_web::model::EvidenceItem {
            source: "mdns".into(),
            field: "TXT".into(),
            value: format!("{SCRIPT}{IMG}"),
            unverified: Some(format!("{SCRIPT} reason")),
        });
        d.txt.push(bulkhead_web::model::TxtEntry {
            key: IMG.into(),
            value: "a\u{2066}b\u{061C}c".into(),
        });
        d.mdns_services.push(format!("_x{SCRIPT}._tcp"));
        d.shares.push(bulkhead_web::model::SharedServiceView {
            service: format!("_x{IMG}._tcp"),
            instance: format!("Living {SCRIPT} TV\u{202E}"),
            port: 8009,
            to: vec!["trusted".into()],
        });
        ui.fake.insert_device(d);
    }
    ui.fake.push_alert(AlertView {
        id: 99,
        at: 1_700_000_000,
        kind: "probing".into(),
        mac: Some("02:00:00:00:0e:01".into()),
        message: format!("{SCRIPT} ({IMG}) is probing: line1\nline2 {RLO}gnp.exe"),
        acknowledged: false,
        count: 3,
        last_at: 1_700_000_600,
        severity: "warning".into(),
        name: None,
        facts: Default::default(),
        actions: Vec::new(),
    });
    // Alerts rendered from facts: the names come from the devices, the
    // class from a policy file; all of it text.
    ui.fake.push_alert(AlertView {
        id: 100,
        at: 1_700_000_700,
        kind: "new-device-quarantined".into(),
        mac: Some("02:00:00:00:0e:02".into()),
        message: "the daemon's sentence".into(),
        acknowledged: false,
        count: 1,
        last_at: 1_700_000_700,
        severity: "warning".into(),
        name: None,
        facts: bulkhead_web::model::AlertFacts {
            zone: Some("unknown".into()),
            class: Some(format!("cam{SCRIPT}")),
            ..Default::default()
        },
        actions: Vec::new(),
    });
    ui.fake.push_alert(AlertView {
        id: 101,
        at: 1_700_000_800,
        kind: "identity-suggestion".into(),
        mac: Some("02:00:00:00:0e:03".into()),
        message: "the daemon's sentence".into(),
        acknowledged: false,
        count: 1,
        last_at: 1_700_000_800,
        severity: "info".into(),
        name: None,
        facts: bulkhead_web::model::AlertFacts {
            other: Some("02:00:00:00:0e:04".into()),
            reasons: vec![format!("same host name {IMG}")],
            ..Default::default()
        },
        actions: Vec::new(),
    });
    // A hostile name among the top talkers.
    ui.fake.set_traffic(Some(bulkhead_web::model::DeviceTrafficView {
        mac: "02:00:00:00:0e:02".into(),
        last_hour_sent: 1_000_000_000,
        ..Default::default()
    }));
    (ui, long)
}

pub(crate) fn assert_inert(what: &str, html: &str) {
    for raw in [
        SCRIPT,
        "<img",
        "onerror=alert(1)>",
        "line1\nline2",
        "\t",
        "\u{1b}",
        "\u{85}",
    ] {
        assert!(!html.contains(raw), "{what}: raw {raw:?} in the page");
    }
    for c in ['\u{202E}', '\u{2066}', '\u{061C}'] {
        assert!(!html.contains(c), "{what}: raw bidi control {c:?} in the page");
    }
    // The only scripts are our own file; no inline styles or handlers.
    assert_eq!(html.matches("<script").count(), 1, "{what}");
    assert!(html.contains("<script src=\"/static/app.js"), "{what}");
    assert!(!html.contains("style="), "{what}");
}

#[tokio::test]
async fn hostile_device_text_renders_inert() {
    let (ui, long) = hostile_ui();
    let s = ui.login().await;
    let escaped_script = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let escaped_img = "&#34;&#62;&#60;img src=x onerror=alert(1)&#62;";

    let html = ui.page("/devices", &s).await;
    assert_inert("devices", &html);
    assert!(html.contains(&format!("<bdi>{escaped_script}</bdi>")));
    assert!(html.contains(&format!("<bdi>{escaped_img}</bdi>")));
    assert!(html.contains("line1\\u{000A}line2\\u{0009}TAB\\u{000D}\\u{001B}[31m\\u{0085}"));
    assert!(html.contains("invoice\\u{202E}fdp.exe"));
    assert!(
        html.contains(&format!("<bdi>{long}</bdi>")),
        "the 255-byte name, whole, isolated"
    );

    let html = ui.page("/devices/02:00:00:00:0e:01", &s).await;
    assert_inert("device", &html);
    assert!(html.contains(&format!("<h1 id=\"device-name\"><bdi>{escaped_script}</bdi></h1>")));
    assert!(html.contains("a\\u{2066}b\\u{061C}c"), "TXT values");
    assert!(html.contains(&format!("_x{escaped_script}._tcp")), "mDNS services");
    assert!(
        html.contains(&format!("<li><bdi>Living {escaped_script} TV\\u{{202E}}</bdi> <code><bdi>_x{escaped_img}._tcp</bdi></code> port 8009, to <strong>trusted</strong></li>")),
        "what it shares, names inert: {html}"
    );
    let html = ui.page("/devices/02:00:00:00:0e:02", &s).await;
    assert_inert("device 2", &html);
    assert!(html.contains(escaped_img));
    let html = ui.page("/devices/02:00:00:00:0e:04", &s).await;
    assert_inert("device 4", &html);
    assert!(html.contains("invoice\\u{202E}fdp.exe"));

    for path in ["/", "/zones", "/alerts"] {
        let html = ui.page(path, &s).await;
        assert_inert(path, &html);
    }
    let html = ui.page("/", &s).await;
    assert!(html.contains(escaped_img), "quarantined list on the overview");
    assert!(
        html.contains(&format!(
            "href=\"/devices/02:00:00:00:0e:02#traffic\"><bdi>{escaped_img}</bdi></a>"
        )),
        "the top talker by its hostile name, as text"
    );
    assert!(html.contains(escaped_script), "alert message on the overview");
    let html = ui.page("/zones", &s).await;
    assert!(html.contains(escaped_script) && html.contains("line1\\u{000A}line2"));
    // Inside the picture too, as text.
    assert!(
        html.contains("<text x=\"90\" y=\"") && html.contains(&format!("\">{escaped_script}</text>")),
        "the hostile name as SVG text"
    );
    let html = ui.page("/alerts", &s).await;
    assert!(html.contains("\\u{202E}gnp.exe") && html.contains(escaped_img));
    // Named by the devices' own (hostile) names, as text inside the links.
    assert!(
        html.contains(&format!(
            "<a class=\"who\" href=\"/devices/02:00:00:00:0e:02\"><bdi>{escaped_img}</bdi></a> joined and waits in"
        )),
        "the held device by its name: {html}"
    );
    assert!(html.contains(&format!("<bdi>cam{escaped_script}</bdi>")), "the class");
    assert!(
        html.contains("<a class=\"who\" href=\"/devices/02:00:00:00:0e:04\"><bdi>invoice\\u{202E}fdp.exe</bdi></a> with a new private address"),
        "the known device by its name"
    );
    assert!(
        html.contains("action=\"/devices/02:00:00:00:0e:02/approve\""),
        "Approve where the alert is"
    );
    // A storm is one row with its count.
    assert!(
        html.contains("<span class=\"storm\">3 times, last"),
        "the count is shown"
    );
    assert!(html.contains("severity-warning"));

    // The stylesheet keeps long names from breaking the layout.
    let css = text(ui.get("/static/app.css", None).await).await;
    assert!(css.contains("overflow-wrap: anywhere"));

    // The JSON API returns the raw strings (JSON-escaped).
    let r = ui.get("/api/devices/02:00:00:00:0e:03", Some(&s)).await;
    let d: DeviceDetail = serde_json::from_value(json(r).await).expect("DeviceDetail");
    assert_eq!(
        d.device.hostname.as_deref(),
        Some("line1\nline2\tTAB\r\u{1b}[31m\u{85}")
    );
}
