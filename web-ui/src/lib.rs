//! Bulkhead's local web UI. It does not depend on the daemon: it defines the
//! [`Backend`] trait and the view types it needs ([`model`]), the daemon
//! implements them.
//!
//! Server-rendered pages (askama) that work without JavaScript, a JSON API
//! ([`api`]) with an OpenAPI document, live updates over server-sent events.
//! Safe by default: a Host allowlist against DNS rebinding, an Origin check and
//! CSRF tokens on every change, argon2id passwords set with a one-time setup
//! token, rate-limited sign-in, sessions in HttpOnly SameSite=Strict cookies, a
//! strict Content-Security-Policy, and device-supplied text escaped and shown
//! with its control characters visible ([`text`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::Serialize;

pub mod alert_text;
pub mod api;
pub mod app;
pub mod auth;
pub mod backend;
pub mod dns;
pub mod format;
pub mod inventory;
pub mod model;
pub mod overview;
pub mod pages;
pub mod security;
pub mod serve;
pub mod signin;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod traffic_chart;
pub mod views;
pub mod zone_map;

pub use app::AppState;
pub use backend::{Backend, BackendError, BackendFuture};
pub use security::WebSettings;
pub use serve::ServeLimits;

/// Request bodies larger than this are refused (forms and JSON are small).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What one request may cost the router, beyond what [`ServeLimits`] bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request body larger than this is refused (413).
    pub max_body_bytes: usize,
    /// A request body must arrive within this long (else 408): hyper times
    /// out only the head, and a body sent a byte at a time would hold its
    /// connection for ever.
    pub body_read_timeout: Duration,
    /// A session is checked against the password hash in force, as read from
    /// the daemon at most this long ago (`bulkhead reset-password` changes it
    /// behind the UI's back).
    pub auth_recheck: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: MAX_BODY_BYTES,
            body_read_timeout: Duration::from_secs(10),
            auth_recheck: Duration::from_secs(5),
        }
    }
}

/// What the health page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Devices known.
    pub devices: usize,
    /// Devices per zone, by zone name.
    pub zones: Vec<(String, usize)>,
}

/// The UI's routes, behind the security middleware. Clones share one state
/// (sessions, rate limits), so serve the same router on every address.
pub fn router(backend: Arc<dyn Backend>, settings: WebSettings) -> Router {
    router_with(backend, settings, Limits::default())
}

/// [`router`] with other [`Limits`].
pub fn router_with(backend: Arc<dyn Backend>, settings: WebSettings, limits: Limits) -> Router {
    let state = AppState::new(backend, settings, limits);
    let settings = state.settings.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .merge(pages::routes())
        .merge(api::routes())
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Outermost last: headers on everything, then the Host check before
        // anything else, then the Origin check, then the body read in time.
        .layer(middleware::from_fn_with_state(limits, security::read_body))
        .layer(middleware::from_fn(security::origin_check))
        .layer(middleware::from_fn_with_state(settings, security::host_allowlist))
        .layer(middleware::from_fn(security::security_headers))
        .with_state(state)
}

async fn healthz(State(st): State<AppState>) -> impl IntoResponse {
    let h = st.backend.health();
    Json(serde_json::json!({ "status": "ok", "devices": h.devices, "zones": h.zones }))
}

/// Serves the UI on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, backend: Arc<dyn Backend>, settings: WebSettings) -> std::io::Result<()> {
    serve_router(addr, router(backend, settings)).await
}

/// Serves a router made by [`router`] on `addr` (clone it to serve one UI on
/// several addresses with shared sessions and rate limits).
pub async fn serve_router(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve::serve_listener(listener, router, ServeLimits::default()).await
}
