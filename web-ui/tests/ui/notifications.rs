//! The Notifications page: the channels, their deliveries and errors, and
//! "send a test", by form and by API.

use axum::http::{Method, StatusCode};
use bulkhead_web::model::{ActionResult, NotificationsView};
use bulkhead_web::testing::FakeBackend;

use crate::common::{json, json_req, location, ui, ui_with};

#[tokio::test]
async fn the_page_lists_each_channel_with_its_deliveries_and_last_error() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page("/notifications", &s).await;
    for name in ["home", "phone", "mqtt"] {
        assert!(html.contains(&format!("data-channel=\"{name}\"")), "channel {name}");
        assert!(
            html.contains(&format!("action=\"/notifications/{name}/test\"")),
            "test form for {name}"
        );
    }
    assert!(html.contains("https://hooks.example.org"));
    assert!(html.contains("probing, lateral-attempt, warning and above, at most 20 an hour"));
    assert!(
        html.contains("<span class=\"badge ok\">connected</span>"),
        "MQTT's state"
    );
    assert!(
        html.contains("<span class=\"badge danger\">failed</span>"),
        "a failed try"
    );
    assert!(html.contains("HTTP 200"));
    // The error text came from a server: shown as text.
    assert!(!html.contains("<script>alert('hook')"), "raw error text in the page");
    assert!(
        !html.contains("<b>connection refused</b>"),
        "raw delivery detail in the page"
    );
    assert!(
        html.contains("&#60;script&#62;alert(&#39;hook&#39;)"),
        "the error is shown, escaped"
    );
    assert_eq!(html.matches("<script").count(), 1, "only our own script");
    assert!(html.contains("href=\"/notifications\""), "the navigation links it");
}

#[tokio::test]
async fn without_channels_the_page_says_how_to_add_one() {
    let fake = FakeBackend::demo();
    fake.set_notifications(NotificationsView::default());
    let ui = ui_with(fake);
    let s = ui.login().await;
    let html = ui.page("/notifications", &s).await;
    assert!(html.contains("id=\"no-channels\""));
    assert!(html.contains("[[notify.webhook]]"));
    assert!(!html.contains("class=\"test-form\""));
}

#[tokio::test]
async fn send_a_test_by_form_flashes_and_logs_it() {
    let ui = ui();
    let s = ui.login().await;
    let r = ui.post_form("/notifications/phone/test", &s, "").await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/notifications"));
    assert_eq!(ui.fake.tests_sent(), vec!["phone".to_string()]);
    let html = ui.page("/notifications", &s).await;
    assert!(html.contains("a test is on its way to `phone`"), "the flash");
    let r = ui.post_form("/notifications/nobody/test", &s, "").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(ui.fake.tests_sent().len(), 1);
}

#[tokio::test]
async fn the_api_lists_channels_and_sends_tests() {
    let ui = ui();
    let s = ui.login().await;
    let r = ui.get("/api/notifications", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let n: NotificationsView = serde_json::from_value(json(r).await).expect("NotificationsView");
    assert_eq!(
        n.channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["home", "phone", "mqtt"]
    );
    let r = ui
        .send(json_req(Method::POST, "/api/notifications/home/test", Some(&s), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: ActionResult = serde_json::from_value(json(r).await).expect("ActionResult");
    assert!(done.message.contains("home"), "{}", done.message);
    let r = ui.get("/api/notifications", Some(&s)).await;
    let n: NotificationsView = serde_json::from_value(json(r).await).expect("NotificationsView");
    let home = &n.channels[0];
    assert_eq!(
        (home.sent, home.log[0].alert),
        (5, 0),
        "the test is the newest delivery"
    );
    let r = ui
        .send(json_req(Method::POST, "/api/notifications/nobody/test", Some(&s), None))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        ui.get("/api/notifications", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
