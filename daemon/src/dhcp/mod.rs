//! DHCPv4: the server state machine (pure), packet capture parsing for observer
//! mode, and dnsmasq lease files.
//!
//! - [`DhcpServer`] (pure, `server`, `segment`, `lease`): one state machine for all
//!   segments. `handle(segment, bytes, now)` returns a [`Handled`] (reply, lease
//!   event, evidence); `handle_timeout(now)` expires leases and offers;
//!   `leases()` is what to persist and hand back to [`DhcpServer::new`] after a
//!   restart. Time is always an argument.
//! - [`evidence_of`] (pure): what a client message says about the device.
//! - [`wire`] (pure): defensive decoding of client messages, reply encoding.
//!
//! Malformed input is counted ([`Counters::malformed`]) and dropped, never a
//! panic.

mod evidence;
mod lease;
mod segment;
mod server;
pub mod wire;

#[cfg(test)]
mod server_tests;

pub use evidence::evidence_of;
pub use lease::{Lease, LeaseEvent};
pub use segment::{Counters, SegmentConfig, DECLINE_HOLD_SECS, OFFER_HOLD_SECS};
pub use server::{DhcpServer, Handled, Reply, CLIENT_PORT, SERVER_PORT};
