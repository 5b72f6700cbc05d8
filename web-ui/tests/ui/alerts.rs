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
