//! The one seam between the UI and the daemon. The daemon implements [`Backend`]
//! by sending requests to its event loop (the single owner of its state); the
//! UI's tests implement it in memory.

use std::future::Future;
use std::pin::Pin;

use crate::model::{
    AckTarget, AlertView, AuthRecord, DeviceAction, DeviceDetail, DeviceSummary, DnsLogQuery, DnsQueryView,
    DnsSummaryView, LiveEvent, NotificationsView, ShareAction, SharingView, TrafficView, VpnView, ZoneView,
};

/// A boxed future, so [`Backend`] stays object-safe.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// Why the backend did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No such device / alert (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was understood and refused (unknown zone, name too long, …): 422.
    #[error("{0}")]
    Refused(String),
    /// The daemon could not answer (stopping, store error): 503.
    #[error("the daemon could not answer: {0}")]
    Unavailable(String),
}

/// What the UI needs from the daemon.
pub trait Backend: Send + Sync + 'static {
    /// Current health figures (cheap, synchronous).
    fn health(&self) -> crate::Health;

    /// Every device.
    fn devices(&self) -> BackendFuture<'_, Vec<DeviceSummary>>;

    /// One device by MAC (`aa:bb:cc:dd:ee:ff`, lower-case).
    fn device(&self, mac: String) -> BackendFuture<'_, DeviceDetail>;

    /// Changes a device; returns what happened, in words.
    fn device_action(&self, mac: String, action: DeviceAction) -> BackendFuture<'_, String>;

    /// Zones with their members.
    fn zones(&self) -> BackendFuture<'_, Vec<ZoneView>>;

    /// What is shared across zones, and the presets.
    fn sharing(&self) -> BackendFuture<'_, SharingView>;

    /// Turns a preset's share on or off; returns what happened, in words.
    fn share(&self, action: ShareAction) -> BackendFuture<'_, String>;

    /// The newest alerts, newest first.
    fn alerts(&self, limit: usize) -> BackendFuture<'_, Vec<AlertView>>;

    /// Acknowledges alerts; returns how many changed.
    fn acknowledge(&self, target: AckTarget) -> BackendFuture<'_, usize>;

    /// The tunnel.
    fn vpn(&self) -> BackendFuture<'_, VpnView>;

    /// The resolver's query log, newest first, as `query` filters it; `None`
    /// when the resolver is off.
    fn dns_log(&self, query: DnsLogQuery) -> BackendFuture<'_, Option<Vec<DnsQueryView>>>;

    /// The resolver's counters since it started, its upstreams and lists;
    /// `None` when the resolver is off.
    fn dns_summary(&self) -> BackendFuture<'_, Option<DnsSummaryView>>;

    /// Traffic per device: the last hour's top talkers, or (with `mac`) that
    /// device with its series (`top` empty: it moved nothing yet); `None`
    /// when counting is off.
    fn traffic(&self, mac: Option<String>) -> BackendFuture<'_, Option<TrafficView>>;

    /// The notification channels and their deliveries.
    fn notifications(&self) -> BackendFuture<'_, NotificationsView>;

    /// Sends a test alert on channel `name`; returns what happened, in words.
    fn notify_test(&self, name: String) -> BackendFuture<'_, String>;

    /// The password hash and setup token.
    fn auth(&self) -> BackendFuture<'_, AuthRecord>;

    /// Stores a new password hash (argon2id PHC string) and forgets the setup
    /// token for good.
    fn set_password_hash(&self, hash: String) -> BackendFuture<'_, ()>;

    /// Change notifications for server-sent events.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LiveEvent>;
}
