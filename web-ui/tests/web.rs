//! The web UI in-process: every request goes through the whole router (security
//! middleware included) with an in-memory backend.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use bulkhead_web::model::{
    AckResult, ActionResult, AlertView, DeviceAction, DeviceDetail, DeviceSummary, ErrorBody, LiveEvent, Overview,
    SessionInfo, VpnView, ZoneView,
};
use bulkhead_web::testing::{sample_device, FakeBackend, SETUP_TOKEN};
use bulkhead_web::{router, WebSettings};
use serde_json::Value;
use tower::ServiceExt;

const HOST: &str = "192.168.1.1:8080";
const PASSWORD: &str = "correct horse battery";
const CAMERA: &str = "02:00:00:00:02:01";
const QUARANTINED: &str = "02:00:00:00:09:01";

struct Ui {
    router: Router,
    fake: Arc<FakeBackend>,
}

/// A signed-in client: its cookie header and CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

fn ui_with(fake: FakeBackend) -> Ui {
    let fake = Arc::new(fake);
    let settings = WebSettings {
        allowed_hosts: vec![HOST.to_string(), "localhost:8080".into()],
    };
    Ui {
        router: router(fake.clone(), settings),
        fake,
    }
}

fn ui() -> Ui {
    ui_with(FakeBackend::demo())
}

fn peer(ip: [u8; 4]) -> ConnectInfo<SocketAddr> {
    ConnectInfo(SocketAddr::from((ip, 50000)))
}

fn req(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path).header(header::HOST, HOST)
}

fn form_req(path: &str, cookie: &str, body: &str) -> Request<Body> {
    req(Method::POST, path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn json_req(method: Method, path: &str, session: Option<&Session>, body: Option<Value>) -> Request<Body> {
    let mut b = req(method, path);
    if let Some(s) = session {
        b = b.header(header::COOKIE, &s.cookie).header("x-csrf-token", &s.csrf);
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .expect("request"),
        None => b.body(Body::empty()).expect("request"),
    }
}

async fn text(r: Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

async fn json(r: Response) -> Value {
    serde_json::from_str(&text(r).await).expect("JSON body")
}

fn location(r: &Response) -> &str {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `name=value` of each Set-Cookie.
fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.to_string())
        .collect()
}

fn cookie_value(h: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(h).iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The value of `<input type="hidden" name="csrf" value="…">` in a page.
fn csrf_in(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[i..].split('"').next().expect("value").to_string()
}

impl Ui {
    async fn send(&self, mut r: Request<Body>) -> Response {
        if r.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            r.extensions_mut().insert(peer([192, 168, 1, 50]));
        }
        self.router.clone().oneshot(r).await.expect("infallible")
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> Response {
        let mut b = req(Method::GET, path);
        if let Some(s) = session {
            b = b.header(header::COOKIE, &s.cookie);
        }
        self.send(b.body(Body::empty()).expect("request")).await
    }

    async fn page(&self, path: &str, s: &Session) -> String {
        let r = self.get(path, Some(s)).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        text(r).await
    }

    /// Signs in through the JSON API.
    async fn login(&self) -> Session {
        let r = self
            .send(json_req(
                Method::POST,
                "/api/login",
                None,
                Some(serde_json::json!({ "password": PASSWORD })),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = format!(
            "bulkhead_session={}",
            cookie_value(r.headers(), "bulkhead_session").expect("session cookie")
        );
        let info: SessionInfo = serde_json::from_value(json(r).await).expect("SessionInfo");
        Session {
            cookie,
            csrf: info.csrf,
        }
    }

    async fn post_form(&self, path: &str, s: &Session, fields: &str) -> Response {
        let body = if fields.is_empty() {
            format!("csrf={}", s.csrf)
        } else {
            format!("csrf={}&{fields}", s.csrf)
        };
        self.send(form_req(path, &s.cookie, &body)).await
    }
}

// ---------------------------------------------------------------- setup, login

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

// ---------------------------------------------------------------- refusals

/// Every state-changing form, with fields that would be valid.
const FORM_POSTS: [(&str, &str); 9] = [
    ("/devices/02:00:00:00:02:01/rename", "name=Hacked"),
    ("/devices/02:00:00:00:02:01/zone", "zone=trusted"),
    ("/devices/02:00:00:00:09:01/approve", "zone=trusted"),
    ("/devices/02:00:00:00:02:01/tunnel", "route=direct"),
    ("/devices/02:00:00:00:02:01/block", "blocked=true"),
    ("/alerts/3/ack", ""),
    ("/alerts/ack-all", ""),
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
        (
            "/api/settings/password",
            Some(serde_json::json!({"current": PASSWORD, "password": "new password 1"})),
        ),
        ("/api/logout", None),
    ]
}

async fn nothing_changed(ui: &Ui, s: &Session) {
    assert!(ui.fake.actions().is_empty(), "no device action reached the backend");
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

// ---------------------------------------------------------------- hostile text

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
        });
        d.txt.push(bulkhead_web::model::TxtEntry {
            key: IMG.into(),
            value: "a\u{2066}b\u{061C}c".into(),
        });
        d.mdns_services.push(format!("_x{SCRIPT}._tcp"));
        ui.fake.insert_device(d);
    }
    ui.fake.push_alert(AlertView {
        id: 99,
        at: 1_700_000_000,
        kind: "new-device".into(),
        mac: Some("02:00:00:00:0e:01".into()),
        message: format!("New device {SCRIPT} {IMG} line1\nline2 {RLO}gnp.exe"),
        acknowledged: false,
    });
    (ui, long)
}

fn assert_inert(what: &str, html: &str) {
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
    assert!(html.contains(escaped_script), "alert message on the overview");
    let html = ui.page("/zones", &s).await;
    assert!(html.contains(escaped_script) && html.contains("line1\\u{000A}line2"));
    let html = ui.page("/alerts", &s).await;
    assert!(html.contains("\\u{202E}gnp.exe") && html.contains(escaped_img));

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

// ---------------------------------------------------------------- devices list

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

// ---------------------------------------------------------------- device actions

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

// ---------------------------------------------------------------- alerts

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

// ---------------------------------------------------------------- other pages

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
    for label in ["Overview", "Devices", "Zones", "Alerts", "VPN", "Settings", "Log out"] {
        assert!(html.contains(&format!(">{label}<")), "nav: {label}");
    }
    let html = ui.page("/zones", &s).await;
    assert!(html.contains("data-zone=\"iot\"") && html.contains("Cameras, plugs, TVs"));
    let html = ui.page("/vpn", &s).await;
    assert!(html.contains("<span id=\"vpn-state\" class=\"badge state-up\">up</span>"));
    assert!(html.contains("203.0.113.7:51820") && html.contains("117.7 MiB") && html.contains("zone iot"));
    let html = ui.page("/settings", &s).await;
    assert!(html.contains("id=\"password-form\""));
    // Every form submits with a button.
    for path in ["/", "/devices/02:00:00:00:09:01", "/alerts", "/settings"] {
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
    for path in ["/", "/devices", "/zones", "/alerts", "/vpn"] {
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

// ---------------------------------------------------------------- OpenAPI

/// Resolves `#/components/schemas/X`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "dangling $ref {r}");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Checks `v` against an OpenAPI 3.0 schema (the subset the document uses:
/// type, nullable, required, properties, additionalProperties, items, enum,
/// allOf, oneOf with a discriminator, minimum/maximum).
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if v.is_null() {
        assert!(
            schema["nullable"] == Value::Bool(true),
            "{at}: null where the schema is not nullable"
        );
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, v, at);
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let tag = schema["discriminator"]["propertyName"].as_str().expect("discriminator");
        let value = v[tag].as_str().expect("tag");
        let target = &schema["discriminator"]["mapping"][value];
        assert!(one.iter().any(|s| s["$ref"] == *target), "{at}: unknown tag {value}");
        check(
            doc,
            target
                .as_str()
                .map(|r| serde_json::json!({ "$ref": r }))
                .as_ref()
                .expect("ref"),
            v,
            at,
        );
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        assert!(e.contains(v), "{at}: {v} not in {e:?}");
    }
    match schema.get("type").and_then(Value::as_str) {
        None => {}
        Some("object") => {
            let o = v.as_object().unwrap_or_else(|| panic!("{at}: not an object"));
            let props = schema["properties"].as_object();
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().expect("name");
                assert!(o.contains_key(r), "{at}: missing required {r}");
            }
            if let Some(props) = props {
                for (k, val) in o {
                    match props.get(k) {
                        Some(p) => check(doc, p, val, &format!("{at}.{k}")),
                        None => panic!("{at}: property {k} is not documented"),
                    }
                }
                // Every model field is listed as required (serde writes them all).
                for k in props.keys() {
                    assert!(o.contains_key(k), "{at}: documented {k} missing from the body");
                }
            }
        }
        Some("array") => {
            for (i, item) in v
                .as_array()
                .unwrap_or_else(|| panic!("{at}: not an array"))
                .iter()
                .enumerate()
            {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"));
            }
        }
        Some("string") => assert!(v.is_string(), "{at}: not a string"),
        Some("boolean") => assert!(v.is_boolean(), "{at}: not a boolean"),
        Some("integer") => {
            assert!(v.is_i64() || v.is_u64(), "{at}: not an integer");
            if let (Some(min), Some(n)) = (schema["minimum"].as_i64(), v.as_i64()) {
                assert!(n >= min, "{at}: {n} < {min}");
            }
        }
        Some(t) => panic!("{at}: unexpected type {t}"),
    }
}

fn openapi() -> Value {
    serde_json::from_str(bulkhead_web::api::OPENAPI).expect("the OpenAPI document is JSON")
}

#[tokio::test]
async fn openapi_lists_every_api_route_and_nothing_else() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    let table = bulkhead_web::api::route_table();
    assert_eq!(paths.len(), table.len(), "one document entry per route");
    let ui = ui();
    let s = ui.login().await;
    for route in &table {
        let entry = paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} is not in the document", route.path));
        let documented: Vec<String> = entry
            .as_object()
            .expect("ops")
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        let served: Vec<String> = route.methods.iter().map(|m| m.to_string()).collect();
        assert_eq!(documented, served, "{}", route.path);
        // The router answers each one (not 404/405), and with a documented status.
        for m in route.methods {
            let path = route
                .path
                .replace("{mac}", "02:00:00:00:77:77")
                .replace("{id}", "424242");
            let method: Method = m.parse().expect("method");
            let body = (method == Method::POST).then(|| serde_json::json!({}));
            let r = ui.send(json_req(method.clone(), &path, Some(&s), body)).await;
            let status = r.status().as_str().to_string();
            assert_ne!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            let responses = &entry[m.to_lowercase()]["responses"];
            assert!(
                responses.get(&status).is_some(),
                "{m} {path} answered {status}, not documented"
            );
            assert!(responses.get("421").is_some(), "{m} {path}: 421 undocumented");
            let public = ["/api/openapi.json", "/api/setup", "/api/login"].contains(&route.path);
            assert_eq!(
                responses.get("401").is_some(),
                !public || route.path == "/api/login",
                "{m} {path}: 401"
            );
            if method == Method::POST {
                assert!(responses.get("403").is_some(), "{m} {path}: 403 (Origin) undocumented");
            }
        }
    }
    // Every $ref resolves; the security schemes are the cookie and the header.
    let text = bulkhead_web::api::OPENAPI;
    for r in text.split("\"$ref\": \"").skip(1) {
        let r = r.split('"').next().expect("ref");
        resolve(&doc, &serde_json::json!({ "$ref": r }));
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "bulkhead_session");
    assert_eq!(schemes["csrf"]["in"], "header");
    assert_eq!(schemes["csrf"]["name"], "X-CSRF-Token");
}

#[tokio::test]
async fn api_bodies_match_the_document_and_the_model() {
    let doc = openapi();
    // A home with everything: nulls and values, quarantined and not.
    let ui = ui();
    let mut bare = sample_device("02:00:00:00:0f:01", None, None, "unknown");
    bare.device.vendor = None;
    bare.device.confidence = None;
    bare.dhcp_fingerprint = None;
    bare.dhcp_vendor_class = None;
    bare.dhcp_client_id = None;
    ui.fake.insert_device(bare);
    let s = ui.login().await;
    let schema_of = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"].clone()
    };
    let cases = [
        ("/api/overview", "/api/overview"),
        ("/api/devices", "/api/devices"),
        ("/api/devices/{mac}", "/api/devices/02:00:00:00:0f:01"),
        ("/api/devices/{mac}", "/api/devices/02:00:00:00:02:01"),
        ("/api/zones", "/api/zones"),
        ("/api/alerts", "/api/alerts"),
        ("/api/vpn", "/api/vpn"),
        ("/api/session", "/api/session"),
    ];
    for (doc_path, path) in cases {
        let r = ui.get(path, Some(&s)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("application/json"));
        let v = json(r).await;
        check(&doc, &schema_of(doc_path, "get", "200"), &v, path);
        // And the bodies are the model types.
        match doc_path {
            "/api/overview" => drop(serde_json::from_value::<Overview>(v).expect("Overview")),
            "/api/devices" => drop(serde_json::from_value::<Vec<DeviceSummary>>(v).expect("devices")),
            "/api/devices/{mac}" => drop(serde_json::from_value::<DeviceDetail>(v).expect("DeviceDetail")),
            "/api/zones" => drop(serde_json::from_value::<Vec<ZoneView>>(v).expect("zones")),
            "/api/alerts" => drop(serde_json::from_value::<Vec<AlertView>>(v).expect("alerts")),
            "/api/vpn" => drop(serde_json::from_value::<VpnView>(v).expect("VpnView")),
            _ => drop(serde_json::from_value::<SessionInfo>(v).expect("SessionInfo")),
        }
    }
    // The unconfigured tunnel, too.
    ui.fake.set_vpn(VpnView {
        state: "down".into(),
        ..VpnView::default()
    });
    let v = json(ui.get("/api/vpn", Some(&s)).await).await;
    check(&doc, &schema_of("/api/vpn", "get", "200"), &v, "vpn (unconfigured)");
    // Posts.
    let r = ui
        .send(json_req(
            Method::POST,
            "/api/devices/02:00:00:00:0f:01",
            Some(&s),
            Some(serde_json::json!({"action": "approve", "zone": null})),
        ))
        .await;
    let v = json(r).await;
    check(&doc, &schema_of("/api/devices/{mac}", "post", "200"), &v, "action");
    let r = ui
        .send(json_req(Method::POST, "/api/alerts/ack-all", Some(&s), None))
        .await;
    check(
        &doc,
        &schema_of("/api/alerts/ack-all", "post", "200"),
        &json(r).await,
        "ack-all",
    );
    let r = ui.get("/api/devices/02:00:00:00:77:77", Some(&s)).await;
    check(
        &doc,
        &schema_of("/api/devices/{mac}", "get", "404"),
        &json(r).await,
        "404",
    );
    // Every documented request body example the model accepts is a DeviceAction.
    for variant in doc["components"]["schemas"]["DeviceAction"]["discriminator"]["mapping"]
        .as_object()
        .expect("mapping")
        .keys()
    {
        let body = match variant.as_str() {
            "rename" => serde_json::json!({"action": "rename", "name": "x"}),
            "set-zone" => serde_json::json!({"action": "set-zone", "zone": "iot"}),
            "approve" => serde_json::json!({"action": "approve"}),
            "tunnel" => serde_json::json!({"action": "tunnel", "route": true}),
            "block" => serde_json::json!({"action": "block", "blocked": false}),
            other => panic!("undocumented variant {other}"),
        };
        serde_json::from_value::<DeviceAction>(body).expect("documented variants are DeviceActions");
    }
}

// ---------------------------------------------------------------- serving

mod serving {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use bulkhead_web::serve::{serve_listener, ServeLimits};
    use bulkhead_web::testing::FakeBackend;
    use bulkhead_web::{router, WebSettings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// The UI served on a loopback port (answering to that address).
    async fn served(limits: ServeLimits) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let settings = WebSettings {
            allowed_hosts: vec![addr.to_string()],
        };
        let app = router(Arc::new(FakeBackend::demo()), settings);
        (addr, tokio::spawn(serve_listener(listener, app, limits)))
    }

    /// Whether the server closes `s` within `d` (answers before that are read
    /// and skipped).
    async fn closed_within(s: &mut TcpStream, d: Duration) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Sends a GET and reads the answer's status line (and the rest of the
    /// answer, by its Content-Length).
    async fn status_of(s: &mut TcpStream, addr: SocketAddr, path: &str) -> String {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(n > 0, "closed mid-answer");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return head.lines().next().unwrap_or("").to_string();
            }
        }
    }

    #[tokio::test]
    async fn requests_are_answered() {
        let (addr, server) = served(ServeLimits::default()).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(status_of(&mut s, addr, "/healthz").await, "HTTP/1.1 200 OK");
        // Kept alive: a second request on the same connection.
        assert_eq!(status_of(&mut s, addr, "/").await, "HTTP/1.1 303 See Other");
        server.abort();
    }

    #[tokio::test]
    async fn a_silent_or_slow_client_is_dropped() {
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let (addr, server) = served(limits).await;
        // Sends nothing.
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        // Sends a head that never ends.
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nHost: ").await.expect("write");
        // Idle after one request.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(status_of(&mut idle, addr, "/healthz").await, "HTTP/1.1 200 OK");
        for (what, s) in [("silent", &mut silent), ("slow", &mut slow), ("idle", &mut idle)] {
            assert!(
                closed_within(s, Duration::from_secs(3)).await,
                "{what} connection still open"
            );
        }
        server.abort();
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let (addr, server) = served(ServeLimits::default()).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let big = "x".repeat(64 * 1024);
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Big: {big}\r\n\r\n");
        // The server may close before taking it all.
        let _ = s.write_all(req.as_bytes()).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        let answer = String::from_utf8_lossy(&buf);
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.abort();
    }

    #[tokio::test]
    async fn connections_per_client_are_capped() {
        let limits = ServeLimits {
            max_connections_per_client: 2,
            ..ServeLimits::default()
        };
        let (addr, server) = served(limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            assert_eq!(status_of(&mut s, addr, "/healthz").await, "HTTP/1.1 200 OK");
            held.push(s);
        }
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(
            closed_within(&mut third, Duration::from_secs(2)).await,
            "a third connection from one client is closed"
        );
        // One closes: there is room again.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(status_of(&mut again, addr, "/healthz").await, "HTTP/1.1 200 OK");
        server.abort();
    }

    #[tokio::test]
    async fn connections_in_all_are_capped() {
        let limits = ServeLimits {
            max_connections: 2,
            ..ServeLimits::default()
        };
        let (addr, server) = served(limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            assert_eq!(status_of(&mut s, addr, "/healthz").await, "HTTP/1.1 200 OK");
            held.push(s);
        }
        // The third waits in the backlog, unanswered…
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        third.write_all(req.as_bytes()).await.expect("write");
        let mut buf = [0u8; 1024];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf))
                .await
                .is_err(),
            "answered beyond the cap"
        );
        // …until another closes.
        drop(held.pop());
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("answered once there is room")
            .expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
        server.abort();
    }
}
