//! Bulkhead's local web UI. It does not depend on the daemon: it defines the
//! [`Backend`] trait and the view types it needs ([`model`]), the daemon
//! implements them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

pub mod backend;
pub mod model;

pub use backend::{Backend, BackendError, BackendFuture};

/// What the health page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Devices known.
    pub devices: usize,
    /// Devices per zone, by zone name.
    pub zones: Vec<(String, usize)>,
}

/// The UI's routes.
pub fn router(backend: Arc<dyn Backend>) -> Router {
    Router::new().route("/healthz", get(healthz)).with_state(backend)
}

async fn healthz(State(b): State<Arc<dyn Backend>>) -> impl IntoResponse {
    let h = b.health();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "status": "ok", "devices": h.devices, "zones": h.zones })),
    )
}

/// Serves the UI on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, backend: Arc<dyn Backend>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(backend)).await
}
