//! Traffic per device: the overview's top talkers, the device page's charts,
//! the API, counting off.

use axum::http::StatusCode;
use bulkhead_web::model::{DeviceTrafficView, TrafficPoint, TrafficView};

use crate::common::{json, ui};

#[tokio::test]
async fn top_talkers_and_a_devices_charts() {
    let ui = ui();
    let s = ui.login().await;
    // The overview: the busy camera first, by name, linked to its traffic.
    let html = ui.page("/", &s).await;
    let talkers = &html[html.find("id=\"top-talkers\"").expect("top talkers")..];
    let camera = talkers.find("data-mac=\"02:00:00:00:02:01\"").expect("the camera");
    let laptop = talkers.find("data-mac=\"02:00:00:00:01:01\"").expect("the laptop");
    assert!(camera < laptop, "most first");
    assert!(talkers.contains("href=\"/devices/02:00:00:00:02:01#traffic\"><bdi>Front door camera</bdi></a>"));
    // The device page: both charts, their totals as data, bars in the hour.
    let html = ui.page("/devices/02:00:00:00:02:01", &s).await;
    let hour = &html[html.find("<svg id=\"traffic-hour\"").expect("the hour chart")..];
    let hour = &hour[..hour.find("</svg>").expect("closed")];
    let r = ui.get("/api/devices/02:00:00:00:02:01/traffic", Some(&s)).await;
    let d: DeviceTrafficView = serde_json::from_value(json(r).await).expect("DeviceTrafficView");
    let received: u64 = d.minutes.iter().map(|p| p.received).sum();
    assert!(received > 0);
    assert!(hour.contains(&format!("data-received=\"{received}\"")), "{hour}");
    assert_eq!(hour.matches("class=\"bar-received\"").count(), 60, "one bar a minute");
    assert!(html.contains("<svg id=\"traffic-day\""));
    assert!(html.contains("Through the VPN"));
    // A device that moved nothing: the section says so.
    let html = ui.page("/devices/02:00:00:00:09:01", &s).await;
    assert!(html.contains("id=\"traffic-hour\"") && html.contains("nothing yet"));

    // A new minute of traffic shows at once.
    let mut more = d.clone();
    let last = more.minutes.last().copied().expect("minutes");
    more.minutes.push(TrafficPoint {
        at: last.at + 60,
        received: 0,
        sent: 5_000_000,
    });
    ui.fake.set_traffic(Some(more));
    let r = ui.get("/api/devices/02:00:00:00:02:01/traffic", Some(&s)).await;
    let after: DeviceTrafficView = serde_json::from_value(json(r).await).expect("view");
    assert_eq!(after.minutes.len(), d.minutes.len() + 1);

    // The API's top talkers carry no series.
    let r = ui.get("/api/traffic", Some(&s)).await;
    let t: TrafficView = serde_json::from_value(json(r).await).expect("TrafficView");
    assert_eq!(t.top[0].mac, "02:00:00:00:02:01");
    assert!(t.top.iter().all(|d| d.minutes.is_empty() && d.hours.is_empty()));

    // Counting off: no section, no talkers, the API says why.
    ui.fake.set_traffic(None);
    let html = ui.page("/devices/02:00:00:00:02:01", &s).await;
    assert!(!html.contains("id=\"traffic\""));
    let html = ui.page("/", &s).await;
    assert!(html.contains("No traffic counted in the last hour."));
    let r = ui.get("/api/traffic", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = ui.get("/api/devices/02:00:00:00:02:01/traffic", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = ui.get("/api/devices/02:00:00:00:77:77/traffic", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no such device");
}
