//! The JSON API: everything the pages do, as the [`crate::model`] types,
//! described by the OpenAPI document served at `/api/openapi.json`. Errors are
//! `{"error": ".."}`. One table ([`route_table`]) builds the router and lists the
//! routes for the test that holds the document to them.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::app::{add_retry_after, backend_status, clear_session_cookie, session_cookie, ApiSession, AppState, PeerIp};
use crate::backend::BackendError;
use crate::dns::RawDnsLogQuery;
use crate::inventory::{DeviceQuery, RawDeviceQuery};
use crate::model::{
    AckResult, AckTarget, ActionResult, DeviceAction, DeviceTrafficView, DnsLogQuery, ErrorBody, LoginRequest,
    PasswordChange, SessionInfo, SetupRequest,
};
use crate::pages::normalize_mac;
use crate::signin::{self, SignInError};

/// The OpenAPI 3.0 document (hand-written; the tests hold it to the routes and
/// the model types).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Alerts `GET /api/alerts` returns without `limit`.
pub const DEFAULT_ALERT_LIMIT: usize = 50;
/// The largest `limit`.
pub const MAX_ALERT_LIMIT: usize = 1000;

/// One API route: its path (axum and OpenAPI share the `{param}` syntax), the
/// methods it answers, its handlers.
pub struct ApiRoute {
    /// The path.
    pub path: &'static str,
    /// The methods, upper-case.
    pub methods: &'static [&'static str],
    handler: MethodRouter<AppState>,
}

/// Every API route.
pub fn route_table() -> Vec<ApiRoute> {
    let r = |path, methods, handler| ApiRoute { path, methods, handler };
    vec![
        r("/api/openapi.json", &["GET"], get(openapi)),
        r("/api/setup", &["POST"], post(setup)),
        r("/api/login", &["POST"], post(login)),
        r("/api/logout", &["POST"], post(logout)),
        r("/api/session", &["GET"], get(session)),
        r("/api/overview", &["GET"], get(overview)),
        r("/api/devices", &["GET"], get(devices)),
        r("/api/devices/{mac}", &["GET", "POST"], get(device).post(device_action)),
        r("/api/devices/{mac}/traffic", &["GET"], get(device_traffic)),
        r("/api/traffic", &["GET"], get(traffic)),
        r("/api/zones", &["GET"], get(zones)),
        r("/api/alerts", &["GET"], get(alerts)),
        r("/api/alerts/{id}/ack", &["POST"], post(ack_one)),
        r("/api/alerts/ack-all", &["POST"], post(ack_all)),
        r("/api/vpn", &["GET"], get(vpn)),
        r("/api/dns/log", &["GET"], get(dns_log)),
        r("/api/dns/summary", &["GET"], get(dns_summary)),
        r("/api/notifications", &["GET"], get(notifications)),
        r("/api/notifications/{name}/test", &["POST"], post(notify_test)),
        r("/api/settings/password", &["POST"], post(change_password)),
    ]
}

/// The API's routes.
pub fn routes() -> Router<AppState> {
    route_table()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
}

/// A JSON error.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: message.into() })).into_response()
}

fn backend_error(e: &BackendError) -> Response {
    error(backend_status(e), e.to_string())
}

fn sign_in_error(e: &SignInError) -> Response {
    let mut r = error(e.status(), e.to_string());
    if let SignInError::Limited(wait) = e {
        add_retry_after(&mut r, *wait);
    }
    r
}

/// A JSON body, refused as JSON: 400 when it is not JSON (or not
/// `application/json`, or too large), 422 when it is JSON of the wrong shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, e.body_text())),
            Err(e) => Err(error(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// A path parameter, refused as JSON (400) when it is not readable (say, not
/// UTF-8).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(error(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

fn with_session(body: SessionInfo, id: &str) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut().append(header::SET_COOKIE, session_cookie(id));
    r
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn setup(State(st): State<AppState>, peer: PeerIp, ApiJson(req): ApiJson<SetupRequest>) -> Response {
    match signin::setup(&st, peer.0, &req.token, req.password).await {
        Ok((id, csrf)) => with_session(SessionInfo { csrf }, &id),
        Err(e) => sign_in_error(&e),
    }
}

async fn login(State(st): State<AppState>, peer: PeerIp, ApiJson(req): ApiJson<LoginRequest>) -> Response {
    match signin::login(&st, peer.0, req.password).await {
        Ok((id, csrf)) => with_session(SessionInfo { csrf }, &id),
        Err(e) => sign_in_error(&e),
    }
}

async fn logout(State(st): State<AppState>, ApiSession(s): ApiSession) -> Response {
    signin::logout(&st, &s.id);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_session_cookie())]).into_response()
}

async fn session(ApiSession(s): ApiSession) -> Response {
    Json(SessionInfo { csrf: s.csrf }).into_response()
}

async fn overview(State(st): State<AppState>, _: ApiSession) -> Response {
    match crate::overview::load(st.backend.as_ref()).await {
        Ok(o) => Json(o).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn devices(State(st): State<AppState>, _: ApiSession, RawQuery(raw): RawQuery) -> Response {
    let raw = match raw {
        None => RawDeviceQuery::default(),
        Some(q) => match parse_query::<RawDeviceQuery>(&q) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
    };
    let query = match DeviceQuery::parse(&raw) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match st.backend.devices().await {
        Ok(mut d) => {
            query.apply(&mut d);
            Json(d).into_response()
        }
        Err(e) => backend_error(&e),
    }
}

/// A query string as `T`, or why not.
fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, String> {
    let uri: axum::http::Uri = format!("/?{q}")
        .parse()
        .map_err(|_| "the query string is not valid".to_string())?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(v)| v)
        .map_err(|e| e.body_text())
}

fn no_such_device() -> Response {
    error(StatusCode::NOT_FOUND, "no such device")
}

async fn device(State(st): State<AppState>, _: ApiSession, ApiPath(mac): ApiPath<String>) -> Response {
    let Some(mac) = normalize_mac(&mac) else {
        return no_such_device();
    };
    match st.backend.device(mac).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn device_action(
    State(st): State<AppState>,
    _: ApiSession,
    ApiPath(mac): ApiPath<String>,
    ApiJson(action): ApiJson<DeviceAction>,
) -> Response {
    let Some(mac) = normalize_mac(&mac) else {
        return no_such_device();
    };
    match st.backend.device_action(mac, action).await {
        Ok(message) => Json(ActionResult { message }).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn zones(State(st): State<AppState>, _: ApiSession) -> Response {
    match st.backend.zones().await {
        Ok(z) => Json(z).into_response(),
        Err(e) => backend_error(&e),
    }
}

#[derive(Deserialize)]
struct AlertsQuery {
    limit: Option<String>,
}

async fn alerts(State(st): State<AppState>, _: ApiSession, RawQuery(raw): RawQuery) -> Response {
    let q = match raw.as_deref().map(parse_query::<AlertsQuery>).transpose() {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let limit = match q.and_then(|q| q.limit) {
        None => DEFAULT_ALERT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_ALERT_LIMIT).contains(&n) => n,
            _ => return error(StatusCode::BAD_REQUEST, "limit must be a number from 1 to 1000"),
        },
    };
    match st.backend.alerts(limit).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn acknowledge(st: &AppState, target: AckTarget) -> Response {
    match st.backend.acknowledge(target).await {
        Ok(acknowledged) => Json(AckResult { acknowledged }).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn ack_one(State(st): State<AppState>, _: ApiSession, ApiPath(id): ApiPath<String>) -> Response {
    match id.parse::<i64>() {
        Ok(id) => acknowledge(&st, AckTarget::One(id)).await,
        Err(_) => error(StatusCode::NOT_FOUND, "no such alert"),
    }
}

async fn ack_all(State(st): State<AppState>, _: ApiSession) -> Response {
    acknowledge(&st, AckTarget::All).await
}

async fn vpn(State(st): State<AppState>, _: ApiSession) -> Response {
    match st.backend.vpn().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => backend_error(&e),
    }
}

/// The answer of the DNS routes while the resolver is off.
fn counting_off() -> Response {
    error(StatusCode::NOT_FOUND, "traffic counting is off")
}

/// The last hour's top talkers.
async fn traffic(State(st): State<AppState>, _: ApiSession) -> Response {
    match st.backend.traffic(None).await {
        Ok(Some(t)) => Json(t).into_response(),
        Ok(None) => counting_off(),
        Err(e) => backend_error(&e),
    }
}

/// One device's traffic with its series (all zero before it moved a byte).
async fn device_traffic(State(st): State<AppState>, _: ApiSession, ApiPath(mac): ApiPath<String>) -> Response {
    let Some(mac) = normalize_mac(&mac) else {
        return no_such_device();
    };
    let (device, traffic) = tokio::join!(st.backend.device(mac.clone()), st.backend.traffic(Some(mac.clone())));
    if let Err(e) = device {
        return backend_error(&e);
    }
    match traffic {
        Ok(Some(t)) => Json(t.top.into_iter().next().unwrap_or(DeviceTrafficView {
            mac,
            ..DeviceTrafficView::default()
        }))
        .into_response(),
        Ok(None) => counting_off(),
        Err(e) => backend_error(&e),
    }
}

fn resolver_off() -> Response {
    error(StatusCode::NOT_FOUND, "the DNS resolver is off")
}

async fn dns_log(State(st): State<AppState>, _: ApiSession, RawQuery(raw): RawQuery) -> Response {
    let raw = match raw.as_deref().map(parse_query::<RawDnsLogQuery>).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let query = match DnsLogQuery::parse(&raw) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match st.backend.dns_log(query).await {
        Ok(Some(entries)) => Json(entries).into_response(),
        Ok(None) => resolver_off(),
        Err(e) => backend_error(&e),
    }
}

async fn dns_summary(State(st): State<AppState>, _: ApiSession) -> Response {
    match st.backend.dns_summary().await {
        Ok(Some(summary)) => Json(summary).into_response(),
        Ok(None) => resolver_off(),
        Err(e) => backend_error(&e),
    }
}

async fn notifications(State(st): State<AppState>, _: ApiSession) -> Response {
    match st.backend.notifications().await {
        Ok(n) => Json(n).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn notify_test(State(st): State<AppState>, _: ApiSession, ApiPath(name): ApiPath<String>) -> Response {
    match st.backend.notify_test(name).await {
        Ok(message) => Json(ActionResult { message }).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn change_password(
    State(st): State<AppState>,
    _: ApiSession,
    peer: PeerIp,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Response {
    match signin::change_password(&st, peer.0, &req.current, req.password).await {
        // Every session ended; the caller continues in a new one (new cookie;
        // `GET /api/session` gives its CSRF token).
        Ok((id, _)) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, session_cookie(&id))]).into_response(),
        Err(e) => sign_in_error(&e),
    }
}
