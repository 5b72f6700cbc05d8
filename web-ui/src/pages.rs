//! The HTML pages and their forms. Every form answers 303 back to a page with a
//! flash message; every page works without JavaScript.

use std::collections::BTreeSet;
use std::convert::Infallible;

use askama::Template;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::app::{
    add_retry_after, backend_status, clear_session_cookie, cookie, session_cookie, set_cookie, AppState, CsrfField,
    PageForm, PageSession, PeerIp, PreForm,
};
use crate::auth::{self, Flash, PRE_COOKIE};
use crate::backend::BackendError;
use crate::dns::RawDnsLogQuery;
use crate::inventory::{DeviceQuery, RawDeviceQuery};
use crate::model::{AckTarget, DeviceAction, DnsLogQuery};
use crate::signin::{self, SignInError};
use crate::views::{
    AlertsPage, DeviceDns, DevicePage, DevicesPage, ErrorPage, Layout, LoginPage, NotificationsPage, OverviewPage,
    QueriesPage, SettingsPage, SetupPage, VpnPage, ZonesPage, APP_CSS, APP_JS, ICON_SVG,
};

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/devices", get(devices))
        .route("/devices/{mac}", get(device))
        .route("/devices/{mac}/rename", post(rename))
        .route("/devices/{mac}/zone", post(set_zone))
        .route("/devices/{mac}/approve", post(approve))
        .route("/devices/{mac}/tunnel", post(tunnel))
        .route("/devices/{mac}/block", post(block))
        .route("/devices/{mac}/watch", post(watch))
        .route("/devices/{mac}/forget", post(forget))
        .route("/devices/{mac}/link", post(link))
        .route("/zones", get(zones))
        .route("/zones/share", post(share))
        .route("/queries", get(queries))
        .route("/alerts", get(alerts))
        .route("/alerts/{id}/ack", post(ack_one))
        .route("/alerts/ack-all", post(ack_all))
        .route("/notifications", get(notifications))
        .route("/notifications/{name}/test", post(notify_test))
        .route("/vpn", get(vpn))
        .route("/settings", get(settings))
        .route("/settings/password", post(change_password))
        .route("/setup", get(setup_page).post(setup))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/events", get(events))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/icon.svg", get(icon))
}

/// Renders a template, with `status`.
pub fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the page could not be rendered: {e}"),
        )
            .into_response(),
    }
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::BAD_REQUEST => "That did not work",
        StatusCode::SERVICE_UNAVAILABLE => "The router is busy",
        _ => "Something went wrong",
    };
    let page = ErrorPage {
        layout: Layout::public(heading, None),
        heading: heading.into(),
        message: message.into(),
    };
    render(status, &page)
}

fn backend_error_page(e: &BackendError) -> Response {
    error_page(backend_status(e), &e.to_string())
}

/// 404 for any other path (JSON under `/api/`).
pub async fn not_found(uri: axum::http::Uri) -> Response {
    if crate::security::is_api(uri.path()) {
        crate::security::refusal(uri.path(), StatusCode::NOT_FOUND, "no such API route")
    } else {
        error_page(StatusCode::NOT_FOUND, "There is no page here.")
    }
}

/// A MAC from a URL, lower-case `aa:bb:cc:dd:ee:ff`; anything else is no device.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

/// Quarantined devices the overview lists (the rest: a link to the list).
const OVERVIEW_QUARANTINED: usize = 20;

async fn overview(State(st): State<AppState>, PageSession(s): PageSession) -> Response {
    match crate::overview::load(st.backend.as_ref()).await {
        Ok(mut o) => {
            let waiting = o.quarantined.len();
            o.quarantined.truncate(OVERVIEW_QUARANTINED);
            let page = OverviewPage {
                layout: Layout::signed_in("Overview", "overview", &s),
                o: &o,
                waiting,
                now: crate::format::now(),
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => backend_error_page(&e),
    }
}

async fn devices(State(st): State<AppState>, PageSession(s): PageSession, RawQuery(raw): RawQuery) -> Response {
    // An unreadable query string shows the whole list rather than an error.
    let raw: RawDeviceQuery = raw
        .as_deref()
        .and_then(|q| Query::<RawDeviceQuery>::try_from_uri(&format!("/?{q}").parse().ok()?).ok())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let query = DeviceQuery::parse_lenient(&raw);
    let all = match st.backend.devices().await {
        Ok(d) => d,
        Err(e) => return backend_error_page(&e),
    };
    let total = all.len();
    // The filter's choices come from all devices, before filtering.
    let zones: BTreeSet<&str> = all.iter().map(|d| d.zone.as_str()).collect();
    let zones: Vec<String> = zones.into_iter().map(str::to_owned).collect();
    let classes: BTreeSet<&str> = all.iter().filter_map(|d| d.class.as_deref()).collect();
    let classes: Vec<String> = classes.into_iter().map(str::to_owned).collect();
    let mut shown = all;
    query.apply(&mut shown);
    let page = DevicesPage::new(
        Layout::signed_in("Devices", "devices", &s),
        &shown,
        zones,
        classes,
        total,
        &query,
        crate::format::now(),
    );
    render(StatusCode::OK, &page)
}

async fn device(State(st): State<AppState>, PageSession(s): PageSession, Path(mac): Path<String>) -> Response {
    let Some(mac) = normalize_mac(&mac) else {
        return error_page(StatusCode::NOT_FOUND, "There is no such device.");
    };
    // Its top names come from as much of its log as one read gives.
    let log_query = DnsLogQuery {
        device: Some(mac.clone()),
        limit: DnsLogQuery::MAX_LIMIT,
        ..DnsLogQuery::default()
    };
    let b = st.backend.as_ref();
    let (d, log, summary, traffic) = match tokio::try_join!(
        b.device(mac.clone()),
        b.dns_log(log_query),
        b.dns_summary(),
        b.traffic(Some(mac.clone()))
    ) {
        Ok(answers) => answers,
        Err(e) => return backend_error_page(&e),
    };
    let now = crate::format::now();
    let dns = match (&log, &summary) {
        (Some(log), Some(summary)) => Some(DeviceDns::new(
            summary.device(&d.device.mac),
            summary.device_top(&d.device.mac),
            log,
            now,
        )),
        _ => None,
    };
    let title = crate::text::visible(d.device.display_name()).into_owned();
    let page = DevicePage {
        layout: Layout::signed_in(title, "devices", &s),
        d: &d,
        dns,
        traffic: traffic.map(|t| {
            let view = t.top.into_iter().next().unwrap_or(crate::model::DeviceTrafficView {
                mac,
                ..Default::default()
            });
            crate::views::DeviceTraffic::new(view, now)
        }),
        now,
    };
    render(StatusCode::OK, &page)
}

async fn queries(State(st): State<AppState>, PageSession(s): PageSession, RawQuery(raw): RawQuery) -> Response {
    // An unreadable query string shows the newest questions rather than an error.
    let raw: RawDnsLogQuery = raw
        .as_deref()
        .and_then(|q| Query::<RawDnsLogQuery>::try_from_uri(&format!("/?{q}").parse().ok()?).ok())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let query = DnsLogQuery::parse_lenient(&raw);
    let b = st.backend.as_ref();
    let (log, summary, devices) = match tokio::try_join!(b.dns_log(query.clone()), b.dns_summary(), b.devices()) {
        Ok(answers) => answers,
        Err(e) => return backend_error_page(&e),
    };
    let page = QueriesPage::new(
        Layout::signed_in("Queries", "queries", &s),
        &query,
        log.as_deref(),
        summary.as_ref(),
        &devices,
        crate::format::now(),
    );
    render(StatusCode::OK, &page)
}

macro_rules! csrf_form {
    ($(#[$m:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, Deserialize)]
        pub struct $name {
            csrf: Option<String>,
            $($field: Option<String>,)*
        }
        impl CsrfField for $name {
            fn csrf(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        }
    };
}

csrf_form!(
    /// A form with nothing but the token.
    CsrfOnly {}
);
csrf_form!(
    /// `POST /devices/{mac}/rename`.
    RenameForm { name }
);
csrf_form!(
    /// `POST /devices/{mac}/zone`, `POST /devices/{mac}/approve`.
    ZoneForm { zone, from }
);
csrf_form!(
    /// `POST /devices/{mac}/tunnel`.
    TunnelForm { route }
);
csrf_form!(
    /// `POST /devices/{mac}/block`.
    BlockForm { blocked, from }
);
csrf_form!(
    /// `POST /devices/{mac}/link`.
    LinkForm { known, from }
);
csrf_form!(
    /// `POST /zones/share`.
    ShareForm { preset, from, to, on }
);
csrf_form!(
    /// `POST /devices/{mac}/watch`.
    WatchForm { watched }
);
csrf_form!(
    /// `POST /settings/password`.
    PasswordForm { current, password, confirm }
);
csrf_form!(
    /// `POST /setup`.
    SetupForm { token, password, confirm }
);
csrf_form!(
    /// `POST /login`.
    LoginForm { password }
);

/// Runs a device action from a form and goes back to `back` with its message.
async fn device_action(
    st: &AppState,
    session: &str,
    mac: &str,
    action: Result<DeviceAction, &str>,
    back: &str,
) -> Response {
    let Some(mac) = normalize_mac(mac) else {
        return error_page(StatusCode::NOT_FOUND, "There is no such device.");
    };
    let back = back.replace("{mac}", &mac);
    let action = match action {
        Ok(a) => a,
        Err(why) => {
            st.flash(session, Flash::error(why));
            return Redirect::to(&back).into_response();
        }
    };
    match st.backend.device_action(mac, action).await {
        Ok(message) => st.flash(session, Flash::ok(message)),
        Err(e @ BackendError::NotFound(_)) => return backend_error_page(&e),
        Err(e) => st.flash(session, Flash::error(e.to_string())),
    }
    Redirect::to(&back).into_response()
}

async fn rename(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<RenameForm>) -> Response {
    let name = f.form.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    device_action(
        &st,
        &f.session.id,
        &mac,
        Ok(DeviceAction::Rename { name }),
        "/devices/{mac}",
    )
    .await
}

async fn set_zone(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<ZoneForm>) -> Response {
    let action = match f.form.zone.filter(|z| !z.is_empty()) {
        Some(zone) => Ok(DeviceAction::SetZone { zone }),
        None => Err("Choose a zone."),
    };
    device_action(&st, &f.session.id, &mac, action, "/devices/{mac}").await
}

/// Where a form goes back to: the page it was sent from (the overview, the
/// alerts) when it says so, else the device's page.
fn back_to(from: Option<&str>) -> &'static str {
    match from {
        Some("overview") => "/",
        Some("alerts") => "/alerts",
        _ => "/devices/{mac}",
    }
}

async fn approve(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<ZoneForm>) -> Response {
    let zone = f.form.zone.filter(|z| !z.is_empty());
    let back = back_to(f.form.from.as_deref());
    device_action(&st, &f.session.id, &mac, Ok(DeviceAction::Approve { zone }), back).await
}

/// Accepts an identity suggestion: this device is that known one.
async fn link(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<LinkForm>) -> Response {
    let action = match f.form.known.as_deref().and_then(normalize_mac) {
        Some(known) => Ok(DeviceAction::Link { known }),
        None => Err("Say which known device it is."),
    };
    device_action(&st, &f.session.id, &mac, action, back_to(f.form.from.as_deref())).await
}

async fn tunnel(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<TunnelForm>) -> Response {
    let action = match f.form.route.as_deref() {
        Some("through") => Ok(DeviceAction::Tunnel { route: Some(true) }),
        Some("direct") => Ok(DeviceAction::Tunnel { route: Some(false) }),
        Some("policy") => Ok(DeviceAction::Tunnel { route: None }),
        _ => Err("Choose through the VPN, direct, or as the policy says."),
    };
    device_action(&st, &f.session.id, &mac, action, "/devices/{mac}").await
}

async fn block(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<BlockForm>) -> Response {
    let action = match f.form.blocked.as_deref() {
        Some("true") => Ok(DeviceAction::Block { blocked: true }),
        Some("false") => Ok(DeviceAction::Block { blocked: false }),
        _ => Err("Say whether to block or unblock."),
    };
    device_action(&st, &f.session.id, &mac, action, back_to(f.form.from.as_deref())).await
}

async fn watch(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<WatchForm>) -> Response {
    let action = match f.form.watched.as_deref() {
        Some("true") => Ok(DeviceAction::Watch { watched: true }),
        Some("false") => Ok(DeviceAction::Watch { watched: false }),
        _ => Err("Say whether to watch it or not."),
    };
    device_action(&st, &f.session.id, &mac, action, "/devices/{mac}").await
}

/// Forgetting: back to the list (the device's page is gone).
async fn forget(State(st): State<AppState>, Path(mac): Path<String>, f: PageForm<CsrfOnly>) -> Response {
    device_action(&st, &f.session.id, &mac, Ok(DeviceAction::Forget), "/devices").await
}

async fn zones(State(st): State<AppState>, PageSession(s): PageSession) -> Response {
    let (zones, sharing) = tokio::join!(st.backend.zones(), st.backend.sharing());
    match zones {
        Ok(z) => render(
            StatusCode::OK,
            &ZonesPage {
                layout: Layout::signed_in("Zones", "zones", &s),
                zones: &z,
                // The zones still show when sharing cannot be read.
                sharing: sharing.ok(),
                map: crate::zone_map::layout(&z),
            },
        ),
        Err(e) => backend_error_page(&e),
    }
}

/// Turns a preset's share on or off, back to the zones page with what happened.
async fn share(State(st): State<AppState>, f: PageForm<ShareForm>) -> Response {
    let field = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let on = match f.form.on.as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let action = match (field(&f.form.preset), field(&f.form.from), field(&f.form.to), on) {
        (Some(preset), Some(from), Some(to), Some(on)) => crate::model::ShareAction { preset, from, to, on },
        _ => {
            st.flash(
                &f.session.id,
                Flash::error("Choose what to share, from which zone and to which."),
            );
            return Redirect::to("/zones#sharing").into_response();
        }
    };
    match st.backend.share(action).await {
        Ok(message) => st.flash(&f.session.id, Flash::ok(message)),
        Err(e) => st.flash(&f.session.id, Flash::error(e.to_string())),
    }
    Redirect::to("/zones#sharing").into_response()
}

/// How many alerts the alerts page lists.
const ALERTS_PAGE: usize = 200;

async fn alerts(State(st): State<AppState>, PageSession(s): PageSession) -> Response {
    let (alerts, zones) = tokio::join!(st.backend.alerts(ALERTS_PAGE), st.backend.zones());
    match alerts {
        Ok(a) => render(
            StatusCode::OK,
            &AlertsPage {
                layout: Layout::signed_in("Alerts", "alerts", &s),
                unacknowledged: a.iter().filter(|a| !a.acknowledged).count(),
                alerts: &a,
                // Approve's choices; without them Approve takes the
                // suggested zone.
                zones: zones
                    .map(|z| z.into_iter().filter(|z| !z.is_unknown_zone).map(|z| z.id).collect())
                    .unwrap_or_default(),
                now: crate::format::now(),
            },
        ),
        Err(e) => backend_error_page(&e),
    }
}

async fn acknowledge(st: &AppState, session: &str, target: AckTarget) -> Response {
    match st.backend.acknowledge(target).await {
        Ok(n) => st.flash(
            session,
            Flash::ok(match n {
                0 => "Nothing new to acknowledge.".to_string(),
                1 => "1 alert acknowledged.".to_string(),
                n => format!("{n} alerts acknowledged."),
            }),
        ),
        Err(e @ BackendError::NotFound(_)) => return backend_error_page(&e),
        Err(e) => st.flash(session, Flash::error(e.to_string())),
    }
    Redirect::to("/alerts").into_response()
}

async fn ack_one(State(st): State<AppState>, Path(id): Path<String>, f: PageForm<CsrfOnly>) -> Response {
    match id.parse::<i64>() {
        Ok(id) => acknowledge(&st, &f.session.id, AckTarget::One(id)).await,
        Err(_) => error_page(StatusCode::NOT_FOUND, "There is no such alert."),
    }
}

async fn ack_all(State(st): State<AppState>, f: PageForm<CsrfOnly>) -> Response {
    acknowledge(&st, &f.session.id, AckTarget::All).await
}

async fn notifications(State(st): State<AppState>, PageSession(s): PageSession) -> Response {
    match st.backend.notifications().await {
        Ok(n) => render(
            StatusCode::OK,
            &NotificationsPage {
                layout: Layout::signed_in("Notifications", "notifications", &s),
                n: &n,
                now: crate::format::now(),
            },
        ),
        Err(e) => backend_error_page(&e),
    }
}

/// "Send a test": the answer (sent, or why not) comes back as the flash.
async fn notify_test(State(st): State<AppState>, Path(name): Path<String>, f: PageForm<CsrfOnly>) -> Response {
    match st.backend.notify_test(name).await {
        Ok(message) => st.flash(&f.session.id, Flash::ok(message)),
        Err(e @ BackendError::NotFound(_)) => return backend_error_page(&e),
        Err(e) => st.flash(&f.session.id, Flash::error(e.to_string())),
    }
    Redirect::to("/notifications").into_response()
}

async fn vpn(State(st): State<AppState>, PageSession(s): PageSession) -> Response {
    match st.backend.vpn().await {
        Ok(v) => render(
            StatusCode::OK,
            &VpnPage {
                layout: Layout::signed_in("VPN", "vpn", &s),
                vpn: &v,
                now: crate::format::now(),
            },
        ),
        Err(e) => backend_error_page(&e),
    }
}

async fn settings(PageSession(s): PageSession) -> Response {
    render(
        StatusCode::OK,
        &SettingsPage {
            layout: Layout::signed_in("Settings", "settings", &s),
        },
    )
}

async fn change_password(State(st): State<AppState>, request_peer: PeerIp, f: PageForm<PasswordForm>) -> Response {
    let form = f.form;
    let (current, password) = (form.current.unwrap_or_default(), form.password.unwrap_or_default());
    if let Err(why) = auth::check_new_password(&password, Some(form.confirm.as_deref().unwrap_or(""))) {
        st.flash(&f.session.id, Flash::error(why));
        return Redirect::to("/settings").into_response();
    }
    match signin::change_password(&st, request_peer.0, &current, password).await {
        Ok((id, _csrf)) => {
            st.flash(&id, Flash::ok("Password changed. Other browsers are signed out."));
            with_cookie(Redirect::to("/settings").into_response(), session_cookie(&id))
        }
        Err(e) => {
            st.flash(&f.session.id, Flash::error(e.to_string()));
            let mut r = Redirect::to("/settings").into_response();
            if let SignInError::Limited(wait) = e {
                add_retry_after(&mut r, wait);
            }
            r
        }
    }
}

fn with_cookie(mut r: Response, cookie: HeaderValue) -> Response {
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

/// The pre-session token of this browser, or a new one (with its cookie).
fn pre_token(headers: &HeaderMap) -> Result<(String, Option<HeaderValue>), auth::AuthError> {
    if let Some(t) = cookie(headers, PRE_COOKIE).filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Ok((t.to_string(), None));
    }
    let t = auth::random_token()?;
    let c = set_cookie(PRE_COOKIE, &t, 3600);
    Ok((t, Some(c)))
}

/// The setup or login page, with a fresh pre-session token if needed.
fn pre_session_page(headers: &HeaderMap, status: StatusCode, flash: Option<Flash>, setup: bool) -> Response {
    let (token, set) = match pre_token(headers) {
        Ok(t) => t,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let r = if setup {
        render(
            status,
            &SetupPage {
                layout: Layout::public("Set up", flash),
                pre_csrf: token,
            },
        )
    } else {
        render(
            status,
            &LoginPage {
                layout: Layout::public("Sign in", flash),
                pre_csrf: token,
            },
        )
    };
    match set {
        Some(c) => with_cookie(r, c),
        None => r,
    }
}

async fn setup_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    match st.password_hash().await {
        Ok(Some(_)) => Redirect::to("/login").into_response(),
        Ok(_) => pre_session_page(&headers, StatusCode::OK, None, true),
        Err(e) => backend_error_page(&e),
    }
}

async fn login_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if st.session(&headers, false).await.is_some() {
        return Redirect::to("/").into_response();
    }
    match st.password_hash().await {
        Ok(None) => Redirect::to("/setup").into_response(),
        Ok(_) => pre_session_page(&headers, StatusCode::OK, None, false),
        Err(e) => backend_error_page(&e),
    }
}

/// After a failed setup or login: the form again, with the reason.
fn sign_in_failed(headers: &HeaderMap, e: &SignInError, setup: bool) -> Response {
    match e {
        SignInError::AlreadySetUp => Redirect::to("/login").into_response(),
        SignInError::NotSetUp => Redirect::to("/setup").into_response(),
        _ => {
            let mut r = pre_session_page(headers, e.status(), Some(Flash::error(e.to_string())), setup);
            if let SignInError::Limited(wait) = e {
                add_retry_after(&mut r, *wait);
            }
            r
        }
    }
}

fn signed_in_redirect(id: &str) -> Response {
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(header::SET_COOKIE, session_cookie(id));
    // The pre-session token has done its job.
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(PRE_COOKIE, "", 0));
    r
}

async fn setup(State(st): State<AppState>, headers: HeaderMap, f: PreForm<SetupForm>) -> Response {
    let form = f.form;
    let password = form.password.unwrap_or_default();
    if let Err(why) = auth::check_new_password(&password, Some(form.confirm.as_deref().unwrap_or(""))) {
        return pre_session_page(
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(Flash::error(why)),
            true,
        );
    }
    match signin::setup(&st, f.peer, form.token.as_deref().unwrap_or(""), password).await {
        Ok((id, _)) => {
            st.flash(&id, Flash::ok("Welcome! Your password is set."));
            signed_in_redirect(&id)
        }
        Err(e) => sign_in_failed(&headers, &e, true),
    }
}

async fn login(State(st): State<AppState>, headers: HeaderMap, f: PreForm<LoginForm>) -> Response {
    match signin::login(&st, f.peer, f.form.password.unwrap_or_default()).await {
        Ok((id, _)) => signed_in_redirect(&id),
        Err(e) => sign_in_failed(&headers, &e, false),
    }
}

async fn logout(State(st): State<AppState>, f: PageForm<CsrfOnly>) -> Response {
    signin::logout(&st, &f.session.id);
    with_cookie(Redirect::to("/login").into_response(), clear_session_cookie())
}

/// How often an event stream with nothing to say checks that its session still
/// lives.
const EVENTS_SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Server-sent events: `devices`, `alerts`, `vpn` as they happen, while the
/// session lives: signing out, a password change or the session's timeout ends
/// the stream (the browser's reconnection then meets the sign-in redirect).
async fn events(State(st): State<AppState>, headers: HeaderMap) -> Response {
    // Signed in, but this request must not take the flash message meant for
    // the page that is about to load.
    let Some(session) = st.session(&headers, false).await else {
        return st.sign_in_redirect().await;
    };
    let Ok(permit) = st.event_streams.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many open event streams").into_response();
    };
    let rx = st.backend.subscribe();
    let alive = (st, session.id);
    let stream = futures::stream::unfold((rx, permit, alive), |(mut rx, permit, alive)| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let next = tokio::time::timeout(EVENTS_SESSION_RECHECK, rx.recv()).await;
            // Looking does not count as use: an open tab still times out.
            let (st, id) = &alive;
            st.session_by_id(id, false, false).await?;
            let name = match next {
                // Nothing happened; the session is still there.
                Err(_) => continue,
                Ok(Ok(e)) => e.as_str(),
                // Missed some: the page refreshes anyway.
                Ok(Err(RecvError::Lagged(_))) => "devices",
                Ok(Err(RecvError::Closed)) => return None,
            };
            // Browsers drop events without data: the name again.
            let event = Event::default().event(name).data(name);
            return Some((Ok::<Event, Infallible>(event), (rx, permit, alive)));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The pages link them with a fingerprint (?v=..), so a new build
            // is fetched anew.
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_normalized() {
        assert_eq!(normalize_mac("AA:bb:CC:dd:EE:ff").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(normalize_mac("aa-bb-cc-dd-ee-ff").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:fg",
            "aa:bb:cc:dd:ee:ff:00",
            "aab:b:cc:dd:ee:ff",
            "a\n:bb:cc:dd:ee:ff",
        ] {
            assert_eq!(normalize_mac(bad), None, "{bad:?}");
        }
    }
}
