//! The devices list: filter, sort, search, and a thousand devices.

use axum::http::StatusCode;
use bulkhead_web::model::{DeviceSummary, ErrorBody};
use bulkhead_web::testing::FakeBackend;

use crate::common::{json, ui, ui_with, CAMERA, QUARANTINED};

fn row_macs(html: &str) -> Vec<String> {
    html.split("<tr data-mac=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn devices_filter_sort_search() {
    let ui = ui();
    let s = ui.login().await;
    let all = row_macs(&ui.page("/devices", &s).await);
    assert_eq!(all.len(), 7);
    // Default: by name, case-insensitive: "Anna's laptop" first.
    assert_eq!(all[0], "02:00:00:00:01:01");

    let iot = row_macs(&ui.page("/devices?zone=iot", &s).await);
    assert_eq!(iot.len(), 4);
    assert!(iot.iter().all(|m| m.starts_with("02:00:00:00:02:")));
    let cams = row_macs(&ui.page("/devices?class=camera", &s).await);
    assert_eq!(cams, [CAMERA]);
    let q = row_macs(&ui.page("/devices?q=KITCHEN", &s).await);
    assert_eq!(q, ["02:00:00:00:02:02", "02:00:00:00:02:04"]);
    let by_vendor = row_macs(&ui.page("/devices?q=sonos", &s).await);
    assert_eq!(by_vendor, ["02:00:00:00:02:04"]);
    let offline = row_macs(&ui.page("/devices?status=offline", &s).await);
    assert_eq!(offline, ["02:00:00:00:02:02"]);
    let quarantined = row_macs(&ui.page("/devices?status=quarantined", &s).await);
    assert_eq!(quarantined, [QUARANTINED]);
    let by_addr = row_macs(&ui.page("/devices?sort=address&dir=desc", &s).await);
    assert_eq!(
        by_addr.first().map(String::as_str),
        Some(QUARANTINED),
        "192.168.1.16 is last"
    );
    let zone_desc = row_macs(&ui.page("/devices?sort=zone&dir=desc", &s).await);
    assert_eq!(zone_desc[0], QUARANTINED, "unknown sorts last by zone");
    // The form as the browser sends it (every field, most empty) and junk values.
    let html = ui
        .page("/devices?q=&zone=iot&class=&status=&sort=name&dir=asc", &s)
        .await;
    assert_eq!(row_macs(&html).len(), 4);
    assert!(html.contains("<option value=\"iot\" selected>"));
    assert_eq!(
        row_macs(&ui.page("/devices?status=sleeping&sort=price&q=a&q=b", &s).await).len(),
        7
    );
    // Sort links keep the filter.
    let html = ui.page("/devices?zone=iot&q=k", &s).await;
    assert!(html.contains("href=\"/devices?q=k&#38;zone=iot&#38;sort=vendor&#38;dir=asc\""));

    // The API: same query, strict.
    let r = ui.get("/api/devices?zone=iot&sort=last_seen&dir=desc", Some(&s)).await;
    let list: Vec<DeviceSummary> = serde_json::from_value(json(r).await).expect("devices");
    assert_eq!(list.len(), 4);
    assert!(list.windows(2).all(|w| w[0].last_seen >= w[1].last_seen));
    for bad in ["status=sleeping", "sort=price", "dir=up", "status=", "q=a&q=b"] {
        let r = ui.get(&format!("/api/devices?{bad}"), Some(&s)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    }
}

#[tokio::test]
async fn a_thousand_devices_render() {
    let ui = ui_with(FakeBackend::with_devices(1000));
    let s = ui.login().await;
    let html = ui.page("/devices", &s).await;
    assert_eq!(row_macs(&html).len(), 1000);
    // The server's time, for the curious (`--release --nocapture`); the
    // benchmark measures it properly.
    let mut times: Vec<f64> = Vec::new();
    for _ in 0..20 {
        let r = ui.get("/devices", Some(&s)).await;
        let t = r.headers()["server-timing"].to_str().expect("ascii").to_string();
        times.push(t.trim_start_matches("app;dur=").parse().expect("ms"));
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "/devices with 1,000 devices: median {:.3} ms, {} bytes",
        times[10],
        html.len()
    );
    let html = ui.page("/devices?status=quarantined", &s).await;
    assert_eq!(row_macs(&html).len(), 100);
    let html = ui.page("/", &s).await;
    assert!(html.contains("<span class=\"stat-num\">1000</span>"));
    assert!(html.contains("<span class=\"stat-num\">100</span><span class=\"stat-label\">waiting"));
    assert_eq!(
        html.matches("class=\"approve-form\"").count(),
        20,
        "the overview lists the newest 20"
    );
    assert!(html.contains("All 100 waiting devices"));
}
