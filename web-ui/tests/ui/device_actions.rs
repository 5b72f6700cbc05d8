//! Each device action (rename, zone, approve, tunnel, block) by form and by
//! API reaches the backend.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use bulkhead_web::model::{ActionResult, DeviceAction, ErrorBody};
use bulkhead_web::testing::sample_device;

use crate::common::{json, json_req, location, ui, CAMERA, QUARANTINED};

#[tokio::test]
async fn each_device_form_reaches_the_backend() {
    let ui = ui();
    let s = ui.login().await;
    let page = |mac: &str| format!("/devices/{mac}");
    let cases: Vec<(&str, &str, &str, DeviceAction)> = vec![
        (
            "rename",
            CAMERA,
            "name=Porch+cam",
            DeviceAction::Rename {
                name: Some("Porch cam".into()),
            },
        ),
        ("rename", CAMERA, "name=", DeviceAction::Rename { name: None }),
        (
            "zone",
            CAMERA,
            "zone=trusted",
            DeviceAction::SetZone { zone: "trusted".into() },
        ),
        (
            "tunnel",
            CAMERA,
            "route=through",
            DeviceAction::Tunnel { route: Some(true) },
        ),
        (
            "tunnel",
            CAMERA,
            "route=direct",
            DeviceAction::Tunnel { route: Some(false) },
        ),
        ("tunnel", CAMERA, "route=policy", DeviceAction::Tunnel { route: None }),
        ("block", CAMERA, "blocked=true", DeviceAction::Block { blocked: true }),
        ("block", CAMERA, "blocked=false", DeviceAction::Block { blocked: false }),
        (
            "approve",
            QUARANTINED,
            "zone=iot",
            DeviceAction::Approve {
                zone: Some("iot".into()),
            },
        ),
    ];
    for (i, (action, mac, fields, expected)) in cases.into_iter().enumerate() {
        let r = ui.post_form(&format!("/devices/{mac}/{action}"), &s, fields).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{action} {fields}");
        assert_eq!(location(&r), page(mac));
        let actions = ui.fake.actions();
        assert_eq!(actions.len(), i + 1);
        assert_eq!(actions[i], (mac.to_string(), expected), "{action} {fields}");
        let html = ui.page(&page(mac), &s).await;
        assert!(
            html.contains("id=\"flash\" class=\"flash flash-ok\""),
            "{action}: flash"
        );
    }
    let html = ui.page(&page(CAMERA), &s).await;
    assert!(html.contains("<span id=\"device-zone\" class=\"badge zone zone-trusted\">trusted</span>"));
    assert!(html.contains("id=\"device-name\""));
    assert!(
        !html.contains("id=\"approve-form\""),
        "approve only for quarantined devices"
    );
    // The flash is shown once.
    assert!(!ui.page(&page(CAMERA), &s).await.contains("id=\"flash\""));

    // A quarantined device has the approve form; approving from the overview goes back there.
    let mut d = sample_device("02:00:00:00:09:02", None, Some("new-thing"), "unknown");
    d.device.first_seen += 1;
    ui.fake.insert_device(d);
    let html = ui.page("/devices/02:00:00:00:09:02", &s).await;
    assert!(html.contains("id=\"approve-form\""));
    let html = ui.page("/", &s).await;
    assert!(html.contains("id=\"quarantined\"") && html.contains("class=\"approve-form\""));
    let r = ui
        .post_form("/devices/02:00:00:00:09:02/approve", &s, "from=overview")
        .await;
    assert_eq!(location(&r), "/");
    assert_eq!(
        ui.fake.actions().last(),
        Some(&("02:00:00:00:09:02".to_string(), DeviceAction::Approve { zone: None }))
    );

    // Refusals come back as an error flash; bad values never reach the backend.
    let n = ui.fake.actions().len();
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/zone"), &s, "zone=nowhere")
        .await;
    assert_eq!(location(&r), page(CAMERA));
    assert!(ui.page(&page(CAMERA), &s).await.contains("flash-error"));
    assert_eq!(ui.fake.actions().len(), n + 1);
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/tunnel"), &s, "route=sideways")
        .await;
    assert_eq!(location(&r), page(CAMERA));
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/block"), &s, "blocked=maybe")
        .await;
    assert_eq!(location(&r), page(CAMERA));
    assert_eq!(ui.fake.actions().len(), n + 1);
    // Unknown and malformed devices: 404.
    let r = ui
        .post_form("/devices/02:00:00:00:77:77/block", &s, "blocked=true")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = ui.post_form("/devices/not-a-mac/block", &s, "blocked=true").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(ui.get("/devices/nope", Some(&s)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        ui.get("/devices/02:00:00:00:77:77", Some(&s)).await.status(),
        StatusCode::NOT_FOUND
    );
    // Upper-case and dashed MACs in URLs are the same device.
    ui.fake
        .insert_device(sample_device("02:00:00:00:0a:0b", None, Some("hex"), "iot"));
    for url in ["/devices/02:00:00:00:0A:0B", "/devices/02-00-00-00-0a-0b"] {
        assert_eq!(ui.get(url, Some(&s)).await.status(), StatusCode::OK, "{url}");
    }
}

#[tokio::test]
async fn device_actions_by_api() {
    let ui = ui();
    let s = ui.login().await;
    let actions = [
        serde_json::json!({"action": "rename", "name": "Porch"}),
        serde_json::json!({"action": "set-zone", "zone": "guest"}),
        serde_json::json!({"action": "tunnel", "route": null}),
        serde_json::json!({"action": "block", "blocked": true}),
    ];
    for a in &actions {
        let r = ui
            .send(json_req(
                Method::POST,
                &format!("/api/devices/{CAMERA}"),
                Some(&s),
                Some(a.clone()),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{a}");
        let done: ActionResult = serde_json::from_value(json(r).await).expect("ActionResult");
        assert!(!done.message.is_empty());
    }
    let got: Vec<DeviceAction> = ui.fake.actions().into_iter().map(|(_, a)| a).collect();
    let want: Vec<DeviceAction> = actions
        .iter()
        .map(|a| serde_json::from_value(a.clone()).expect("DeviceAction"))
        .collect();
    assert_eq!(got, want);
    for (body, status) in [
        (
            serde_json::json!({"action": "set-zone", "zone": "nowhere"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (serde_json::json!({"action": "fly"}), StatusCode::UNPROCESSABLE_ENTITY),
        (serde_json::json!({"action": "block"}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = ui
            .send(json_req(
                Method::POST,
                &format!("/api/devices/{CAMERA}"),
                Some(&s),
                Some(body.clone()),
            ))
            .await;
        assert_eq!(r.status(), status, "{body}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    }
    let mut r = json_req(Method::POST, &format!("/api/devices/{CAMERA}"), Some(&s), None);
    *r.body_mut() = Body::from("{not json");
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().expect("header"));
    assert_eq!(ui.send(r).await.status(), StatusCode::BAD_REQUEST);
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/devices/02:00:00:00:77:77",
            Some(&s),
            Some(serde_json::json!({"action": "block", "blocked": true})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_device_page_shows_what_the_firewall_refused_it() {
    let ui = ui();
    let s = ui.login().await;
    let mut d = sample_device("02:00:00:00:0c:01", None, Some("plug"), "iot");
    d.refused = Some(bulkhead_web::model::RefusedView {
        sampled: 62,
        to_router: 12,
        routed: 0,
        bridged: 50,
        blocked: 0,
        first: 1_000,
        last: 1_040,
        top_targets: vec![("10.0.1.10".into(), 50), ("10.0.1.1".into(), 12)],
        top_ports: vec![(22, 3), (80, 2)],
        episodes: vec![bulkhead_web::model::RefusalEpisode {
            started: 1_000,
            last: 1_040,
            samples: 62,
            hosts: 2,
            ports: 60,
            probing: true,
            lateral: true,
        }],
    });
    ui.fake.insert_device(d);
    let html = ui.page("/devices/02:00:00:00:0c:01", &s).await;
    assert!(
        html.contains("<p id=\"refused-counts\"><strong>62</strong> attempts refused (sampled)"),
        "{html}"
    );
    assert!(html.contains("<code>10.0.1.10</code> <span class=\"muted\">× 50</span>"));
    assert!(html.contains("<span class=\"badge danger\">probing</span>"));
    // A device refused nothing says so.
    let html = ui.page(&format!("/devices/{CAMERA}"), &s).await;
    assert!(html.contains("id=\"refused-none\""));
}

#[tokio::test]
async fn watching_a_device_works_without_javascript() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page(&format!("/devices/{CAMERA}"), &s).await;
    assert!(html.contains("id=\"watch-form\"") && html.contains("Watch it (tell me when it goes offline)"));
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/watch"), &s, "watched=true")
        .await;
    assert_eq!(location(&r), format!("/devices/{CAMERA}"));
    let html = ui.page(&format!("/devices/{CAMERA}"), &s).await;
    assert!(html.contains("Stop watching"), "watched now");
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/watch"), &s, "watched=maybe")
        .await;
    assert_ne!(r.status(), StatusCode::OK, "a bad value is refused");
}

#[tokio::test]
async fn forgetting_a_device_leads_back_to_the_list_and_the_api_forgets_too() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page(&format!("/devices/{CAMERA}"), &s).await;
    assert!(html.contains(&format!("action=\"/devices/{CAMERA}/forget\"")));
    let r = ui.post_form(&format!("/devices/{CAMERA}/forget"), &s, "").await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/devices"));
    assert!(
        !ui.fake.device_list().iter().any(|d| d.mac == CAMERA),
        "the camera is gone"
    );
    assert!(ui.page("/devices", &s).await.contains("is forgotten"), "the flash");
    assert_eq!(
        ui.get(&format!("/devices/{CAMERA}"), Some(&s)).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = ui
        .send(json_req(
            Method::POST,
            &format!("/api/devices/{QUARANTINED}"),
            Some(&s),
            Some(serde_json::json!({"action": "forget"})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: ActionResult = serde_json::from_value(json(r).await).expect("ActionResult");
    assert!(done.message.contains("forgotten"), "{}", done.message);
    assert_eq!(
        ui.get(&format!("/api/devices/{QUARANTINED}"), Some(&s)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn sharing_is_turned_on_and_off_from_the_zones_page_without_javascript() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page("/zones", &s).await;
    assert!(html.contains("id=\"sharing\""), "the sharing card");
    // The policy file's share is shown, without a button to stop it.
    assert!(html.contains("<strong>chromecast</strong> from <span class=\"badge zone zone-iot\">iot</span> to <span class=\"badge zone zone-trusted\">trusted</span>\n <span class=\"muted\">(a policy file)</span>"), "{html}");
    assert!(!html.contains("Stop sharing"));
    assert!(html.contains("id=\"share-form\"") && html.contains("<option value=\"printer\">"));

    let r = ui
        .post_form("/zones/share", &s, "preset=printer&from=iot&to=guest&on=true")
        .await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/zones#sharing"));
    let html = ui.page("/zones", &s).await;
    assert!(
        html.contains("printer is shared from iot to guest"),
        "the flash says so"
    );
    assert!(
        html.contains("<li data-share=\"printer\"><strong>printer</strong> from"),
        "{html}"
    );
    assert!(html.contains("Stop sharing"));

    // Refusals come back as a message, nothing changes.
    for bad in [
        "preset=teleporter&from=iot&to=guest&on=true",
        "preset=printer&from=iot&to=iot&on=true",
        "preset=printer&from=iot&to=nowhere&on=true",
        "preset=printer&from=iot&on=true",
        "preset=printer&from=iot&to=guest&on=maybe",
    ] {
        let r = ui.post_form("/zones/share", &s, bad).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{bad}");
        let html = ui.page("/zones", &s).await;
        assert!(html.contains("flash-error"), "{bad}: an error is shown");
    }

    let r = ui
        .post_form("/zones/share", &s, "preset=printer&from=iot&to=guest&on=false")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = ui.page("/zones", &s).await;
    assert!(html.contains("printer is no longer shared from iot to guest"));
    assert!(!html.contains("data-share=\"printer\""));
    // Without the CSRF token: refused.
    let r = ui
        .send(crate::common::form_req(
            "/zones/share",
            &s.cookie,
            "preset=printer&from=iot&to=guest&on=true",
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!ui.page("/zones", &s).await.contains("data-share=\"printer\""));
}
