//! Alerts are acknowledged, one and all.

use axum::http::{Method, StatusCode};
use bulkhead_web::model::{AckResult, AlertView};
use bulkhead_web::testing::FakeBackend;

use crate::common::{json, json_req, location, ui, ui_with};

#[tokio::test]
async fn alerts_are_acknowledged() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page("/alerts", &s).await;
    assert!(html.contains("data-alert-id=\"3\" data-acknowledged=\"false\""));
    assert!(html.contains("action=\"/alerts/3/ack\""));
    assert!(html.contains("id=\"ack-all-form\""));
    let r = ui.post_form("/alerts/3/ack", &s, "").await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/alerts"));
    let html = ui.page("/alerts", &s).await;
    assert!(html.contains("data-alert-id=\"3\" data-acknowledged=\"true\""));
    assert!(html.contains("data-alert-id=\"2\" data-acknowledged=\"false\""));
    assert!(html.contains("1 alert acknowledged."));
    let r = ui.post_form("/alerts/ack-all", &s, "").await;
    assert_eq!(location(&r), "/alerts");
    assert!(ui.fake.alert_list().iter().all(|a| a.acknowledged));
    assert_eq!(
        ui.post_form("/alerts/12345/ack", &s, "").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ui.post_form("/alerts/x/ack", &s, "").await.status(),
        StatusCode::NOT_FOUND
    );

    let ui = ui_with(FakeBackend::demo());
    let s = ui.login().await;
    let r = ui
        .send(json_req(Method::POST, "/api/alerts/2/ack", Some(&s), None))
        .await;
    let n: AckResult = serde_json::from_value(json(r).await).expect("AckResult");
    assert_eq!(n.acknowledged, 1);
    let r = ui
        .send(json_req(Method::POST, "/api/alerts/ack-all", Some(&s), None))
        .await;
    let n: AckResult = serde_json::from_value(json(r).await).expect("AckResult");
    assert_eq!(n.acknowledged, 1);
    let r = ui.get("/api/alerts?limit=2", Some(&s)).await;
    let a: Vec<AlertView> = serde_json::from_value(json(r).await).expect("alerts");
    assert_eq!(a.len(), 2);
    for bad in ["limit=0", "limit=1001", "limit=x", "limit="] {
        assert_eq!(
            ui.get(&format!("/api/alerts?{bad}"), Some(&s)).await.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let r = ui
        .send(json_req(Method::POST, "/api/alerts/999/ack", Some(&s), None))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn alerts_name_devices_and_offer_what_still_applies_in_place() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page("/alerts", &s).await;
    // Named, linked, with the MAC beside it; no command anywhere.
    assert!(
        html.contains("<a class=\"who\" href=\"/devices/02:00:00:00:09:01\"><bdi>esp-3f2a</bdi></a> joined and waits in <strong class=\"zone-name\">unknown</strong>"),
        "{html}"
    );
    assert!(!html.contains("bulkhead device"), "a shell command on the page");
    assert!(html.contains("Suggested (iot)"));
    // The held device's alert offers Approve and Block; the joined one,
    // already placed, offers nothing.
    assert!(html.contains("action=\"/devices/02:00:00:00:09:01/approve\""));
    assert!(html.contains("action=\"/devices/02:00:00:00:09:01/block\""));
    assert!(!html.contains("action=\"/devices/02:00:00:00:01:02/approve\""));
    // Approve from the alert: back to the alerts, the device released, the
    // button gone.
    let r = ui
        .post_form("/devices/02:00:00:00:09:01/approve", &s, "zone=iot&from=alerts")
        .await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/alerts"));
    let device = |ui: &crate::common::Ui| {
        ui.fake
            .device_list()
            .into_iter()
            .find(|d| d.mac == "02:00:00:00:09:01")
            .expect("device")
    };
    let d = device(&ui);
    assert_eq!((d.zone.as_str(), d.quarantined), ("iot", false));
    let html = ui.page("/alerts", &s).await;
    assert!(!html.contains("action=\"/devices/02:00:00:00:09:01/approve\""));
    assert!(html.contains("approved into iot"), "the flash says what happened");
    // Block from an alert goes back there too.
    let r = ui
        .post_form("/devices/02:00:00:00:09:01/block", &s, "blocked=true&from=alerts")
        .await;
    assert_eq!(location(&r), "/alerts");
    assert!(device(&ui).blocked);
    // A link with no known device is refused with a reason, nothing moves.
    let r = ui.post_form("/devices/02:00:00:00:09:01/link", &s, "from=alerts").await;
    assert_eq!(location(&r), "/alerts");
    assert!(ui.page("/alerts", &s).await.contains("Say which known device it is."));
}
