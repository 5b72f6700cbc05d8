//! First setup with the one-time token (forms and API), signing in and out,
//! wrong passwords and the login rate limit.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use bulkhead_web::model::{ErrorBody, SessionInfo};
use bulkhead_web::testing::{FakeBackend, SETUP_TOKEN};

use crate::common::{
    cookie_value, csrf_in, form_req, json, json_req, location, peer, req, set_cookies, text, ui, ui_with, Session,
    PASSWORD,
};

#[tokio::test]
async fn setup_flow_with_the_one_time_token() {
    let ui = ui_with(FakeBackend::unconfigured());
    // Everything leads to the setup while no password is set.
    for path in ["/", "/devices", "/login"] {
        let r = ui.get(path, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&r), "/setup");
    }
    let r = ui.get("/setup", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pre = cookie_value(r.headers(), "bulkhead_pre").expect("pre-session cookie");
    assert!(set_cookies(r.headers())[0].contains("HttpOnly; SameSite=Strict; Path=/"));
    let html = text(r).await;
    assert!(html.contains("id=\"setup-form\""));
    let csrf = csrf_in(&html);
    assert_eq!(csrf, pre);
    let cookie = format!("bulkhead_pre={pre}");
    let post = |body: String| form_req("/setup", &cookie, &body);

    // Wrong token: refused, nothing stored.
    let r = ui
        .send(post(format!(
            "csrf={csrf}&token=wrong-token&password=a+long+password&confirm=a+long+password"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(text(r).await.contains("id=\"flash\""));
    assert_eq!(ui.fake.auth_record().password_hash, None);
    // The passwords differ / too short: refused before the token is looked at.
    let r = ui
        .send(post(format!(
            "csrf={csrf}&token={SETUP_TOKEN}&password=a+long+password&confirm=another+password"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = ui
        .send(post(format!(
            "csrf={csrf}&token={SETUP_TOKEN}&password=short&confirm=short"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Without the pre-session token: 403.
    let r = ui
        .send(form_req(
            "/setup",
            "",
            &format!("token={SETUP_TOKEN}&password=a+long+password&confirm=a+long+password"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(ui.fake.auth_record().password_hash, None);

    // The right token sets the password and signs in.
    let r = ui
        .send(post(format!(
            "csrf={csrf}&token={SETUP_TOKEN}&password=a+long+password&confirm=a+long+password"
        )))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    let session = cookie_value(r.headers(), "bulkhead_session").expect("signed in");
    let auth = ui.fake.auth_record();
    assert!(auth
        .password_hash
        .as_deref()
        .is_some_and(|h| h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")));
    assert_eq!(auth.setup_token, None, "the token is spent");
    let s = Session {
        cookie: format!("bulkhead_session={session}"),
        csrf: String::new(),
    };
    let html = ui.page("/", &s).await;
    assert!(html.contains("Your password is set"), "flash after setup");

    // The token is spent: setup is over, by form and by API.
    let r = ui.get("/setup", None).await;
    assert_eq!(location(&r), "/login");
    let r = ui
        .send(post(format!(
            "csrf={csrf}&token={SETUP_TOKEN}&password=evil+password+1&confirm=evil+password+1"
        )))
        .await;
    assert_eq!(location(&r), "/login");
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/setup",
            None,
            Some(serde_json::json!({"token": SETUP_TOKEN, "password": "evil password 1"})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(ui.fake.auth_record().password_hash, auth.password_hash);
}

#[tokio::test]
async fn setup_by_api() {
    let ui = ui_with(FakeBackend::unconfigured());
    let body = |token: &str, pw: &str| Some(serde_json::json!({"token": token, "password": pw}));
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/setup",
            None,
            body("nope", "a long password"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = ui
        .send(json_req(Method::POST, "/api/setup", None, body(SETUP_TOKEN, "short")))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({"password": "x"})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no password to sign in with yet");
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/setup",
            None,
            body(SETUP_TOKEN, "a long password"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = cookie_value(r.headers(), "bulkhead_session").expect("cookie");
    let info: SessionInfo = serde_json::from_value(json(r).await).expect("SessionInfo");
    let s = Session {
        cookie: format!("bulkhead_session={cookie}"),
        csrf: info.csrf,
    };
    let r = ui.send(json_req(Method::GET, "/api/session", Some(&s), None)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn login_and_logout_with_forms() {
    let ui = ui();
    let r = ui.get("/", None).await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/login"));
    let r = ui.get("/login", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let pre = cookie_value(r.headers(), "bulkhead_pre").expect("pre cookie");
    let html = text(r).await;
    assert!(html.contains("id=\"login-form\""));
    let csrf = csrf_in(&html);
    let r = ui
        .send(form_req(
            "/login",
            &format!("bulkhead_pre={pre}"),
            &format!("csrf={csrf}&password=correct+horse+battery"),
        ))
        .await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/"));
    let cookies = set_cookies(r.headers());
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("bulkhead_session="))
        .expect("session cookie");
    assert!(
        session_cookie.contains("; HttpOnly; SameSite=Strict; Path=/"),
        "{session_cookie}"
    );
    let id = cookie_value(r.headers(), "bulkhead_session").expect("session");
    assert_eq!(id.len(), 64, "256-bit id, hex");
    let mut s = Session {
        cookie: format!("bulkhead_session={id}"),
        csrf: String::new(),
    };
    let html = ui.page("/", &s).await;
    assert!(html.contains("id=\"logout-form\""));
    s.csrf = csrf_in(&html);
    // Signed in: the login page sends home.
    assert_eq!(location(&ui.get("/login", Some(&s)).await), "/");

    let r = ui.post_form("/logout", &s, "").await;
    assert_eq!((r.status(), location(&r)), (StatusCode::SEE_OTHER, "/login"));
    assert!(set_cookies(r.headers())
        .iter()
        .any(|c| c.starts_with("bulkhead_session=;")));
    let r = ui.get("/", Some(&s)).await;
    assert_eq!(
        (r.status(), location(&r)),
        (StatusCode::SEE_OTHER, "/login"),
        "the session ended"
    );
}

#[tokio::test]
async fn visitors_without_a_session_do_not_flood_the_daemon() {
    let ui = ui();
    for path in ["/login", "/", "/devices", "/setup", "/events"] {
        for _ in 0..20 {
            let r = ui.get(path, None).await;
            assert!(matches!(r.status(), StatusCode::OK | StatusCode::SEE_OTHER), "{path}");
        }
    }
    // Unknown session cookies cost nothing either.
    for i in 0..20 {
        let r = req(Method::GET, "/")
            .header(header::COOKIE, format!("bulkhead_session={i:064x}"))
            .body(Body::empty())
            .expect("request");
        assert_eq!(ui.send(r).await.status(), StatusCode::SEE_OTHER);
    }
    assert!(ui.fake.auth_asked() <= 2, "asked {} times", ui.fake.auth_asked());
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let ui = ui();
    let r = ui.get("/login", None).await;
    let pre = cookie_value(r.headers(), "bulkhead_pre").expect("pre");
    let r = ui
        .send(form_req(
            "/login",
            &format!("bulkhead_pre={pre}"),
            &format!("csrf={pre}&password=wrong+horse+battery"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(cookie_value(r.headers(), "bulkhead_session"), None);
    let html = text(r).await;
    assert!(html.contains("id=\"flash\"") && html.contains("not right"));
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({"password": "wrong horse battery"})),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let e: ErrorBody = serde_json::from_value(json(r).await).expect("ErrorBody");
    assert!(!e.error.is_empty());
}

#[tokio::test]
async fn login_rate_limit_kicks_in_per_client() {
    let ui = ui();
    let attempt = |ip: [u8; 4], pw: &str| {
        let mut r = json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({ "password": pw })),
        );
        r.extensions_mut().insert(peer(ip));
        r
    };
    for _ in 0..5 {
        let r = ui.send(attempt([192, 168, 1, 66], "wrong password!")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = ui.send(attempt([192, 168, 1, 66], "wrong password!")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=30).contains(&wait), "{wait}");
    // Locked out even with the right password…
    let r = ui.send(attempt([192, 168, 1, 66], PASSWORD)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // …and the form says so too.
    let mut r = form_req("/login", "bulkhead_pre=abc", "csrf=abc&password=whatever+password");
    r.extensions_mut().insert(peer([192, 168, 1, 66]));
    let r = ui.send(r).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    // Another client is not affected.
    let r = ui.send(attempt([192, 168, 1, 67], PASSWORD)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_passwords_sent_at_once_are_limited_as_if_sent_one_by_one() {
    let ui = ui();
    let attempts = (0..12).map(|_| {
        let mut r = json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({ "password": "wrong password!" })),
        );
        r.extensions_mut().insert(peer([192, 168, 1, 66]));
        ui.send(r)
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let judged = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((judged, limited), (5, 7), "{statuses:?}");
    // And now the client is locked out.
    let mut r = json_req(
        Method::POST,
        "/api/login",
        None,
        Some(serde_json::json!({ "password": PASSWORD })),
    );
    r.extensions_mut().insert(peer([192, 168, 1, 66]));
    assert_eq!(ui.send(r).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Claiming to be someone else changes nothing: only the peer address counts.
    for (name, value) in [
        ("x-forwarded-for", "192.168.1.99"),
        ("x-real-ip", "192.168.1.99"),
        ("forwarded", "for=192.168.1.99"),
    ] {
        let mut r = json_req(
            Method::POST,
            "/api/login",
            None,
            Some(serde_json::json!({ "password": PASSWORD })),
        );
        r.headers_mut().insert(name, value.parse().expect("header"));
        r.extensions_mut().insert(peer([192, 168, 1, 66]));
        assert_eq!(ui.send(r).await.status(), StatusCode::TOO_MANY_REQUESTS, "{name}");
    }
}
