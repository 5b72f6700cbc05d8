//! What every subject shares: the UI over an in-memory backend (`Ui`, `ui`,
//! `ui_with`), a signed-in client (`Session`, `Ui::login`), request builders
//! (`req`, `form_req`, `json_req`), answer readers (`text`, `json`, `location`,
//! cookies, the CSRF field) and the demo's constants.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use bulkhead_web::model::SessionInfo;
use bulkhead_web::testing::FakeBackend;
use bulkhead_web::{router, WebSettings};
use serde_json::Value;
use tower::ServiceExt;

pub(crate) const HOST: &str = "192.168.1.1:8080";
pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const CAMERA: &str = "02:00:00:00:02:01";
pub(crate) const QUARANTINED: &str = "02:00:00:00:09:01";

pub(crate) struct Ui {
    pub(crate) router: Router,
    pub(crate) fake: Arc<FakeBackend>,
}

/// A signed-in client: its cookie header and CSRF token.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

pub(crate) fn ui_with(fake: FakeBackend) -> Ui {
    let fake = Arc::new(fake);
    let settings = WebSettings {
        allowed_hosts: vec![HOST.to_string(), "localhost:8080".into()],
    };
    Ui {
        router: router(fake.clone(), settings),
        fake,
    }
}

pub(crate) fn ui() -> Ui {
    ui_with(FakeBackend::demo())
}

pub(crate) fn peer(ip: [u8; 4]) -> ConnectInfo<SocketAddr> {
    ConnectInfo(SocketAddr::from((ip, 50000)))
}

pub(crate) fn req(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path).header(header::HOST, HOST)
}

pub(crate) fn form_req(path: &str, cookie: &str, body: &str) -> Request<Body> {
    req(Method::POST, path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .body(Body::from(body.to_string()))
        .expect("request")
}

pub(crate) fn json_req(method: Method, path: &str, session: Option<&Session>, body: Option<Value>) -> Request<Body> {
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

pub(crate) async fn text(r: Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

pub(crate) async fn json(r: Response) -> Value {
    serde_json::from_str(&text(r).await).expect("JSON body")
}

pub(crate) fn location(r: &Response) -> &str {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `name=value` of each Set-Cookie.
pub(crate) fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.to_string())
        .collect()
}

pub(crate) fn cookie_value(h: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(h).iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The value of `<input type="hidden" name="csrf" value="…">` in a page.
pub(crate) fn csrf_in(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[i..].split('"').next().expect("value").to_string()
}

impl Ui {
    pub(crate) async fn send(&self, mut r: Request<Body>) -> Response {
        if r.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            r.extensions_mut().insert(peer([192, 168, 1, 50]));
        }
        self.router.clone().oneshot(r).await.expect("infallible")
    }

    pub(crate) async fn get(&self, path: &str, session: Option<&Session>) -> Response {
        let mut b = req(Method::GET, path);
        if let Some(s) = session {
            b = b.header(header::COOKIE, &s.cookie);
        }
        self.send(b.body(Body::empty()).expect("request")).await
    }

    pub(crate) async fn page(&self, path: &str, s: &Session) -> String {
        let r = self.get(path, Some(s)).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        text(r).await
    }

    /// Signs in through the JSON API.
    pub(crate) async fn login(&self) -> Session {
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

    pub(crate) async fn post_form(&self, path: &str, s: &Session, fields: &str) -> Response {
        let body = if fields.is_empty() {
            format!("csrf={}", s.csrf)
        } else {
            format!("csrf={}&{fields}", s.csrf)
        };
        self.send(form_req(path, &s.cookie, &body)).await
    }
}
