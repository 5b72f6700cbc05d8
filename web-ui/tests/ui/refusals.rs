//! What is refused and how: missing CSRF, foreign origins and hosts, no
//! session, other methods, slow or oversized bodies; the security headers on
//! every answer.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use bulkhead_web::model::ErrorBody;
use bulkhead_web::testing::{FakeBackend, SETUP_TOKEN};
use bulkhead_web::WebSettings;
use serde_json::Value;

use crate::common::{
    cookie_value, form_req, json, json_req, location, req, ui, ui_with, Session, Ui, CAMERA, HOST, PASSWORD,
};

/// Every state-changing form, with fields that would be valid.
const FORM_POSTS: [(&str, &str); 12] = [
    ("/devices/02:00:00:00:02:01/rename", "name=Hacked"),
    ("/devices/02:00:00:00:02:01/zone", "zone=trusted"),
    ("/devices/02:00:00:00:09:01/approve", "zone=trusted"),
    ("/devices/02:00:00:00:02:01/tunnel", "route=direct"),
    ("/devices/02:00:00:00:02:01/block", "blocked=true"),
    ("/devices/02:00:00:00:02:01/watch", "watched=true"),
    ("/devices/02:00:00:00:02:01/forget", ""),
    ("/alerts/3/ack", ""),
    ("/alerts/ack-all", ""),
    ("/notifications/home/test", ""),
    (
        "/settings/password",
        "current=correct+horse+battery&password=new+password+1&confirm=new+password+1",
    ),
    ("/logout", ""),
];

/// Every state-changing API call, with a valid body.
fn api_posts() -> Vec<(&'static str, Option<Value>)> {
    vec![
        (
            "/api/devices/02:00:00:00:02:01",
            Some(serde_json::json!({"action": "set-zone", "zone": "trusted"})),
        ),
        ("/api/alerts/3/ack", None),
        ("/api/alerts/ack-all", None),
        ("/api/notifications/home/test", None),
        (
            "/api/settings/password",
            Some(serde_json::json!({"current": PASSWORD, "password": "new password 1"})),
        ),
        ("/api/logout", None),
    ]
}

async fn nothing_changed(ui: &Ui, s: &Session) {
    assert!(ui.fake.actions().is_empty(), "no device action reached the backend");
    assert!(ui.fake.tests_sent().is_empty(), "no notification test was sent");
    assert!(
        ui.fake.alert_list().iter().any(|a| !a.acknowledged),
        "no alert was acknowledged"
    );
    let r = ui.send(json_req(Method::GET, "/api/session", Some(s), None)).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "still signed in: neither logout nor password change happened"
    );
}

#[tokio::test]
async fn form_posts_without_csrf_are_refused() {
    let ui = ui();
    let s = ui.login().await;
    for (path, fields) in FORM_POSTS {
        let r = ui.send(form_req(path, &s.cookie, fields)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} without csrf");
        let r = ui
            .send(form_req(path, &s.cookie, &format!("csrf={}&{fields}", "0".repeat(64))))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} with a wrong csrf");
    }
    nothing_changed(&ui, &s).await;
}

#[tokio::test]
async fn other_methods_change_nothing() {
    let ui = ui();
    let s = ui.login().await;
    let api = api_posts();
    let paths = FORM_POSTS
        .iter()
        .map(|(p, _)| *p)
        .chain(api.iter().map(|(p, _)| *p))
        .chain(["/setup", "/login", "/api/setup", "/api/login"]);
    for path in paths {
        for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::GET, Method::HEAD] {
            let read = matches!(method, Method::GET | Method::HEAD);
            if read && (matches!(path, "/setup" | "/login") || path.starts_with("/api/devices/")) {
                // The forms themselves, a device's data: reads (and the end
                // of the test shows they changed nothing).
                let r = req(method.clone(), path)
                    .header(header::COOKIE, &s.cookie)
                    .body(Body::empty())
                    .expect("request");
                assert!(!ui.send(r).await.status().is_server_error());
                continue;
            }
            // Every token there is, and a method override that is not honoured.
            let body = format!("csrf={}&blocked=true&name=Hacked", s.csrf);
            let r = req(method.clone(), path)
                .header(header::COOKIE, &s.cookie)
                .header("x-csrf-token", &s.csrf)
                .header("x-http-method-override", "POST")
                .header(header::ORIGIN, format!("http://{HOST}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("request");
            let r = ui.send(r).await;
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
        // A form's `_method` field is only a field.
        let r = ui.send(form_req(path, &s.cookie, "csrf=bad&_method=GET")).await;
        assert_ne!(r.status(), StatusCode::OK, "POST {path} with _method");
    }
    nothing_changed(&ui, &s).await;
}

#[tokio::test]
async fn two_setups_at_once_one_wins() {
    let ui = ui_with(FakeBackend::unconfigured());
    let setup = |pw: &str| {
        ui.send(json_req(
            Method::POST,
            "/api/setup",
            None,
            Some(serde_json::json!({"token": SETUP_TOKEN, "password": pw})),
        ))
    };
    let (a, b) = tokio::join!(setup("first password 1"), setup("second password 2"));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::FORBIDDEN]);
    let (winner, loser) = if a.status() == StatusCode::OK {
        ("first password 1", b)
    } else {
        ("second password 2", a)
    };
    assert_eq!(cookie_value(loser.headers(), "bulkhead_session"), None);
    // The winner's password is the one set.
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({"password": winner})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ui.fake.auth_record().setup_token, None);
}

#[tokio::test]
async fn posts_from_a_foreign_origin_are_refused() {
    let ui = ui();
    let s = ui.login().await;
    for (path, fields) in FORM_POSTS {
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
        ] {
            let mut r = form_req(path, &s.cookie, &format!("csrf={}&{fields}", s.csrf));
            r.headers_mut().remove(header::ORIGIN);
            r.headers_mut().insert(name, value.parse().expect("header"));
            let r = ui.send(r).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} with {name}: {value}");
        }
    }
    for (path, body) in api_posts() {
        let mut r = json_req(Method::POST, path, Some(&s), body);
        r.headers_mut()
            .insert(header::ORIGIN, "http://evil.example".parse().expect("header"));
        let r = ui.send(r).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    }
    // Sign-in too (login CSRF).
    let mut r = json_req(
        Method::POST,
        "/api/login",
        None,
        Some(serde_json::json!({"password": PASSWORD})),
    );
    r.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().expect("header"));
    assert_eq!(ui.send(r).await.status(), StatusCode::FORBIDDEN);
    let mut r = form_req("/login", "bulkhead_pre=abc", "csrf=abc&password=correct+horse+battery");
    r.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().expect("header"));
    assert_eq!(ui.send(r).await.status(), StatusCode::FORBIDDEN);
    nothing_changed(&ui, &s).await;
}

#[tokio::test]
async fn posts_without_a_session_are_refused() {
    let ui = ui();
    let s = ui.login().await;
    for (path, fields) in FORM_POSTS {
        let r = ui.send(form_req(path, "", &format!("csrf={}&{fields}", s.csrf))).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&r), "/login");
        let r = ui
            .send(form_req(
                path,
                &format!("bulkhead_session={}", "f".repeat(64)),
                &format!("csrf={}&{fields}", s.csrf),
            ))
            .await;
        assert_eq!(location(&r), "/login", "{path} with an unknown session");
    }
    for (path, body) in api_posts() {
        let mut r = json_req(Method::POST, path, None, body);
        r.headers_mut().insert("x-csrf-token", s.csrf.parse().expect("header"));
        let r = ui.send(r).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    }
    nothing_changed(&ui, &s).await;
}

#[tokio::test]
async fn api_changes_need_the_csrf_header() {
    let ui = ui();
    let s = ui.login().await;
    for (path, body) in api_posts() {
        let mut r = json_req(Method::POST, path, Some(&s), body.clone());
        r.headers_mut().remove("x-csrf-token");
        assert_eq!(
            ui.send(r).await.status(),
            StatusCode::FORBIDDEN,
            "{path} without X-CSRF-Token"
        );
        let mut r = json_req(Method::POST, path, Some(&s), body);
        r.headers_mut()
            .insert("x-csrf-token", "0".repeat(64).parse().expect("header"));
        assert_eq!(
            ui.send(r).await.status(),
            StatusCode::FORBIDDEN,
            "{path} with a wrong token"
        );
    }
    nothing_changed(&ui, &s).await;
    // Reads need the session only.
    let mut r = json_req(Method::GET, "/api/devices", Some(&s), None);
    r.headers_mut().remove("x-csrf-token");
    assert_eq!(ui.send(r).await.status(), StatusCode::OK);
    // Without a session: 401 JSON; pages redirect.
    let r = ui.get("/api/devices", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
}

#[tokio::test]
async fn foreign_host_gets_421() {
    let ui = ui();
    let s = ui.login().await;
    let paths = [
        "/",
        "/devices",
        "/login",
        "/setup",
        "/healthz",
        "/static/app.css",
        "/api/devices",
        "/api/openapi.json",
        "/nope",
    ];
    for host in ["evil.example", "evil.example:8080", "192.168.1.1:8081", "192.168.1.1"] {
        for path in paths {
            let r = ui
                .send(
                    Request::builder()
                        .uri(path)
                        .header(header::HOST, host)
                        .header(header::COOKIE, &s.cookie)
                        .body(Body::empty())
                        .expect("request"),
                )
                .await;
            assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "GET {path} Host {host}");
        }
        for (path, fields) in FORM_POSTS {
            let mut r = form_req(path, &s.cookie, &format!("csrf={}&{fields}", s.csrf));
            r.headers_mut().insert(header::HOST, host.parse().expect("header"));
            r.headers_mut()
                .insert(header::ORIGIN, format!("http://{host}").parse().expect("header"));
            let r = ui.send(r).await;
            assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "POST {path} Host {host}");
        }
        let mut r = json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({"password": PASSWORD})),
        );
        r.headers_mut().insert(header::HOST, host.parse().expect("header"));
        let r = ui.send(r).await;
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(cookie_value(r.headers(), "bulkhead_session"), None);
    }
    // No Host at all.
    let r = ui
        .send(Request::builder().uri("/").body(Body::empty()).expect("request"))
        .await;
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    // The page answer is plain text, the API's JSON.
    let r = ui
        .send(
            Request::builder()
                .uri("/")
                .header(header::HOST, "evil.example")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let r = ui
        .send(
            Request::builder()
                .uri("/api/vpn")
                .header(header::HOST, "evil.example")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    nothing_changed(&ui, &s).await;
    // Allowed names work, whatever their case.
    let r = ui
        .send(
            Request::builder()
                .uri("/healthz")
                .header(header::HOST, "LOCALHOST:8080")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn host_header_tricks_get_421() {
    let ui = ui();
    let send = |uri: &'static str, hosts: Vec<&'static [u8]>| {
        let mut b = Request::builder().uri(uri);
        for h in hosts {
            b = b.header(header::HOST, axum::http::HeaderValue::from_bytes(h).expect("header"));
        }
        ui.send(b.body(Body::empty()).expect("request"))
    };
    // An unreadable Host does not fall back to the request line's authority.
    let r = send("http://192.168.1.1:8080/healthz", vec![b"\xffevil.example"]).await;
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    // Two Host headers: whichever a check reads, refuse.
    let r = send("/healthz", vec![HOST.as_bytes(), b"evil.example"]).await;
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    // The request line names another host than the Host header.
    let r = send("http://evil.example/healthz", vec![HOST.as_bytes()]).await;
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    // Agreeing, or only one of them: fine.
    let r = send("http://192.168.1.1:8080/healthz", vec![HOST.as_bytes()]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send("http://192.168.1.1:8080/healthz", vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A body that sends `first` and then nothing, for ever.
fn stalled_body(first: &'static [u8]) -> Body {
    let first = futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(first))]);
    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let fake = Arc::new(FakeBackend::demo());
    let settings = WebSettings {
        allowed_hosts: vec![HOST.to_string()],
    };
    let limits = bulkhead_web::Limits {
        body_read_timeout: std::time::Duration::from_millis(200),
        ..bulkhead_web::Limits::default()
    };
    let ui = Ui {
        router: bulkhead_web::router_with(fake.clone(), settings, limits),
        fake,
    };
    let r = req(Method::POST, "/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(stalled_body(b"{\"password\": \"cor"))
        .expect("request");
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), ui.send(r))
        .await
        .expect("an answer, not a connection held for ever");
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    let r = req(Method::POST, "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(stalled_body(b"csrf=abc&password=cor"))
        .expect("request");
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), ui.send(r))
        .await
        .expect("an answer in time");
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn bodies_over_16_kib_are_413() {
    let ui = ui();
    let s = ui.login().await;
    let name = "n".repeat(16 * 1024);
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/rename"), &s, &format!("name={name}"))
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Sent in chunks, without a length up front.
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> =
        (0..20).map(|_| Ok(axum::body::Bytes::from(vec![b' '; 1024]))).collect();
    let r = req(Method::POST, &format!("/api/devices/{CAMERA}"))
        .header(header::COOKIE, &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .expect("request");
    let r = ui.send(r).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    assert!(ui.fake.actions().is_empty());
    // Just under the limit is read (and refused for what it says, not its size).
    let name = "n".repeat(15 * 1024);
    let r = ui
        .post_form(&format!("/devices/{CAMERA}/rename"), &s, &format!("name={name}"))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn unreadable_api_paths_are_json_errors() {
    let ui = ui();
    let s = ui.login().await;
    let r = ui.get("/api/devices/%FF", Some(&s)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
    let r = ui
        .send(json_req(Method::POST, "/api/alerts/%FF%FE/ack", Some(&s), None))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(serde_json::from_value::<ErrorBody>(json(r).await).is_ok());
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let ui = ui();
    let s = ui.login().await;
    let mut responses = vec![
        ("page", ui.get("/", Some(&s)).await),
        ("redirect", ui.get("/", None).await),
        ("login", ui.get("/login", None).await),
        ("api", ui.get("/api/devices", Some(&s)).await),
        ("api 401", ui.get("/api/devices", None).await),
        ("openapi", ui.get("/api/openapi.json", None).await),
        ("css", ui.get("/static/app.css", None).await),
        ("404", ui.get("/no/such/page", Some(&s)).await),
        ("healthz", ui.get("/healthz", None).await),
        ("403", ui.send(form_req("/alerts/ack-all", &s.cookie, "")).await),
        ("405", ui.get("/logout", Some(&s)).await),
        ("413", ui.send(form_req("/login", "", &"x".repeat(20 * 1024))).await),
    ];
    let foreign = Request::builder()
        .uri("/")
        .header(header::HOST, "evil.example")
        .body(Body::empty())
        .expect("request");
    responses.push(("421", ui.send(foreign).await));
    for (what, r) in &responses {
        let h = r.headers();
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(
            get("content-security-policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "{what}"
        );
        assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(get("x-frame-options"), "DENY", "{what}");
        assert_eq!(get("referrer-policy"), "same-origin", "{what}");
        let timing = get("server-timing");
        let ms = timing.strip_prefix("app;dur=").expect("Server-Timing: app;dur=");
        let (whole, frac) = ms.split_once('.').expect("milliseconds with decimals");
        assert!(whole.parse::<u64>().is_ok() && frac.len() == 3, "{what}: {timing}");
        if *what != "css" {
            assert_eq!(get("cache-control"), "no-store", "{what}");
        }
    }
}
