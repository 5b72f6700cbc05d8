//! The other pages and what they hook into: every page's hooks, the backend
//! down, password changes and resets ending sessions, live events, static assets.

use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use bulkhead_web::model::{ErrorBody, LiveEvent, SessionInfo, VpnView};
use bulkhead_web::testing::FakeBackend;
use bulkhead_web::WebSettings;

use crate::common::{cookie_value, json, json_req, location, text, ui, Session, Ui, CAMERA, HOST, PASSWORD};

#[tokio::test]
async fn every_page_renders_its_hooks() {
    let ui = ui();
    let s = ui.login().await;
    let html = ui.page("/", &s).await;
    for hook in [
        "id=\"quarantined\"",
        "id=\"vpn-state\"",
        "data-mac=\"02:00:00:00:09:01\"",
        "data-alert-id=\"3\"",
    ] {
        assert!(html.contains(hook), "overview: {hook}");
    }
    assert!(html.contains("aria-current=\"page\">Overview</a>"));
    for label in [
        "Overview", "Devices", "Zones", "Queries", "Alerts", "VPN", "Settings", "Log out",
    ] {
        assert!(html.contains(&format!(">{label}<")), "nav: {label}");
    }
    let html = ui.page("/zones", &s).await;
    assert!(html.contains("data-zone=\"iot\"") && html.contains("Cameras, plugs, TVs"));
    // The picture: every device in its zone's area, arrows for what each
    // zone may reach (the fake home's iot goes out through the VPN).
    let svg = &html[html.find("<svg id=\"zone-map\"").expect("the zones picture")..];
    let svg = &svg[..svg.find("</svg>").expect("closed")];
    for d in ui.fake.device_list() {
        assert!(
            svg.contains(&format!("class=\"map-member\" data-mac=\"{}\"", d.mac)),
            "{} is not in the picture",
            d.mac
        );
    }
    assert!(svg.contains("data-from=\"iot\" data-to=\"vpn\""), "{svg}");
    assert!(svg.contains("data-from=\"vpn\" data-to=\"internet\""));
    assert!(
        !svg.contains("data-from=\"unknown\" data-to=\"internet\""),
        "quarantine has no way out"
    );
    // The device page: what came from the device's own frames is shown
    // plainly, what only names it (mDNS) is marked unverified, with why.
    let html = ui.page("/devices/02:00:00:00:09:01", &s).await;
    let table = &html[html.find("<table class=\"evidence\">").expect("the evidence table")..];
    let table = &table[..table.find("</table>").expect("closed")];
    let rows: Vec<&str> = table.split("<tr").skip(2).collect();
    assert!(rows.len() >= 3, "{table}");
    for row in &rows {
        let mdns = row.contains("source-mdns");
        assert_eq!(row.contains("claim-unverified"), mdns, "{row}");
    }
    assert!(rows.iter().any(|r| r.contains("source-dhcp")));
    assert!(html.contains("id=\"unverified-note\"") && html.contains("who sent it is not checked"));
    let html = ui.page("/vpn", &s).await;
    assert!(html.contains("<span id=\"vpn-state\" class=\"badge state-up\">up</span>"));
    assert!(html.contains("203.0.113.7:51820") && html.contains("117.7 MiB") && html.contains("zone iot"));
    let html = ui.page("/settings", &s).await;
    assert!(html.contains("id=\"password-form\""));
    // Every form submits with a button.
    for path in ["/", "/devices/02:00:00:00:09:01", "/queries", "/alerts", "/settings"] {
        let html = ui.page(path, &s).await;
        let forms = html.matches("<form").count();
        assert!(forms > 0);
        assert_eq!(forms, html.matches("<button type=\"submit\"").count(), "{path}");
    }
    // An unconfigured tunnel.
    ui.fake.set_vpn(VpnView {
        state: "down".into(),
        ..VpnView::default()
    });
    assert!(ui.page("/vpn", &s).await.contains("not configured"));
}

#[tokio::test]
async fn the_backend_down_is_503() {
    let ui = ui();
    let s = ui.login().await;
    ui.fake.set_unavailable(true);
    for path in [
        "/",
        "/devices",
        "/devices/02:00:00:00:02:01",
        "/zones",
        "/queries",
        "/alerts",
        "/vpn",
    ] {
        assert_eq!(
            ui.get(path, Some(&s)).await.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }
    for path in ["/api/overview", "/api/devices", "/api/zones", "/api/alerts", "/api/vpn"] {
        let r = ui.get(path, Some(&s)).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    }
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let ui = ui();
    let a = ui.login().await;
    let b = ui.login().await;
    // Wrong current password, or a mismatch: refused, nothing changes.
    let r = ui
        .post_form(
            "/settings/password",
            &a,
            "current=wrong+password+x&password=new+password+1&confirm=new+password+1",
        )
        .await;
    assert_eq!(location(&r), "/settings");
    assert!(ui.page("/settings", &a).await.contains("flash-error"));
    let r = ui
        .post_form(
            "/settings/password",
            &a,
            "current=correct+horse+battery&password=new+password+1&confirm=new+password+2",
        )
        .await;
    assert_eq!(location(&r), "/settings");
    assert_eq!(ui.get("/", Some(&b)).await.status(), StatusCode::OK);

    let r = ui
        .post_form(
            "/settings/password",
            &a,
            "current=correct+horse+battery&password=new+password+1&confirm=new+password+1",
        )
        .await;
    assert_eq!(location(&r), "/settings");
    let fresh = cookie_value(r.headers(), "bulkhead_session").expect("a new session");
    let a2 = Session {
        cookie: format!("bulkhead_session={fresh}"),
        csrf: String::new(),
    };
    assert!(ui.page("/settings", &a2).await.contains("Password changed"));
    for old in [&a, &b] {
        assert_eq!(location(&ui.get("/", Some(old)).await), "/login", "old sessions end");
    }
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({"password": "new password 1"})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // By API: 204 and a new cookie; the old session is gone.
    let c = Session {
        cookie: format!(
            "bulkhead_session={}",
            cookie_value(r.headers(), "bulkhead_session").expect("cookie")
        ),
        csrf: serde_json::from_value::<SessionInfo>(json(r).await).expect("info").csrf,
    };
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/settings/password",
            Some(&c),
            Some(serde_json::json!({"current": "wrong", "password": "third password"})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/settings/password",
            Some(&c),
            Some(serde_json::json!({"current": "new password 1", "password": "third password"})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(cookie_value(r.headers(), "bulkhead_session").is_some());
    assert_eq!(
        ui.get("/api/session", Some(&c)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_password_reset_at_the_daemon_ends_every_session() {
    use futures::StreamExt;
    let fake = Arc::new(FakeBackend::demo());
    let settings = WebSettings {
        allowed_hosts: vec![HOST.to_string()],
    };
    // Checked on every request (the default: at most 5 seconds late).
    let limits = bulkhead_web::Limits {
        auth_recheck: std::time::Duration::ZERO,
        ..bulkhead_web::Limits::default()
    };
    let ui = Ui {
        router: bulkhead_web::router_with(fake.clone(), settings, limits),
        fake,
    };
    let s = ui.login().await;
    let r = ui.get("/events", Some(&s)).await;
    let mut events = r.into_body().into_data_stream();
    ui.page("/", &s).await;
    // `bulkhead reset-password`, behind the UI's back.
    ui.fake.reset_password();
    let r = ui.get("/", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/setup");
    assert_eq!(
        ui.get("/api/devices", Some(&s)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/block"), &s, "blocked=true")
        .await;
    assert_eq!(location(&r), "/setup");
    let r = ui
        .send(json_req(
            Method::POST,
            &format!("/api/devices/{CAMERA}"),
            Some(&s),
            Some(serde_json::json!({"action": "block", "blocked": true})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(ui.fake.actions().is_empty());
    ui.fake.notify(LiveEvent::Devices);
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .expect("the stream ends in time");
    assert!(next.is_none(), "{next:?}");
}

#[tokio::test]
async fn live_events_stream() {
    let ui = ui();
    let s = ui.login().await;
    let r = ui.get("/events", None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = ui.get("/events", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = r.into_body().into_data_stream();
    ui.fake.notify(LiveEvent::Alerts);
    use futures::StreamExt;
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("an event in time")
        .expect("a frame")
        .expect("bytes");
    let frame = String::from_utf8(frame.to_vec()).expect("utf-8");
    // A name and data: browsers drop events without data.
    assert!(frame.contains("event: alerts\ndata: alerts\n"), "{frame:?}");
}

#[tokio::test]
async fn live_events_end_with_the_session() {
    use futures::StreamExt;
    let ui = ui();
    // Signing out ends the stream.
    let s = ui.login().await;
    let r = ui.get("/events", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.into_body().into_data_stream();
    let r = ui.post_form("/logout", &s, "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    ui.fake.notify(LiveEvent::Devices);
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("the stream ends in time");
    assert!(next.is_none(), "a signed-out stream still carries events: {next:?}");
    // So does a password change elsewhere (every session ends).
    let s = ui.login().await;
    let other = ui.login().await;
    let r = ui.get("/events", Some(&other)).await;
    let mut body = r.into_body().into_data_stream();
    let change = serde_json::json!({"current": PASSWORD, "password": "a new password 2"});
    let r = ui
        .send(json_req(Method::POST, "/api/settings/password", Some(&s), Some(change)))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    ui.fake.notify(LiveEvent::Alerts);
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("the stream ends in time");
    assert!(next.is_none(), "{next:?}");
}

#[tokio::test]
async fn static_assets() {
    let ui = ui();
    let r = ui.get("/static/app.js", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    let js = text(r).await;
    assert!(js.contains("new EventSource('/events')"));
    let r = ui.get("/static/app.css", None).await;
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let r = ui.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = json(r).await;
    assert_eq!(h["devices"], 7);
}
