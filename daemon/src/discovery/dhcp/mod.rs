//! DHCPv4: the server state machine (pure), packet capture parsing for observer
//! mode, and dnsmasq lease files.
//!
//! - [`DhcpServer`] (pure; `server`, `segment`, `lease`): one state machine for
//!   all segments. `handle(segment, bytes, now)` returns a [`Handled`] (reply,
//!   lease event, evidence); `handle_timeout(now)` expires leases and offers and
//!   `poll_timeout()` says when it is next due; `leases()` is what to persist and
//!   hand back to [`DhcpServer::new`] after a restart. Time is always an argument.
//! - [`evidence_of`] (pure): what a client message says about the device.
//! - [`wire`] (pure): defensive decoding of client messages, reply encoding.
//! - [`parse_client_packet`] (pure): observer mode, captured IPv4/UDP packets.
//! - [`parse_leases`] (pure): dnsmasq's lease file.
//! - [`server_socket`] and [`CaptureSocket`] (I/O): a UDP port-67 socket per
//!   segment, and an AF_PACKET socket filtered to client DHCP packets on one
//!   interface for observer mode.
//!
//! Malformed input is dropped and counted ([`Counters::malformed`], or by the
//! caller for [`CaptureError`]s and skipped lease lines), never a panic.

mod capture;
mod capture_socket;
mod dnsmasq;
mod evidence;
mod fuzz;
mod lease;
mod lease_gate;
mod segment;
mod server;
mod socket;
pub mod wire;

#[cfg(test)]
mod netns_test;

pub use capture::{parse_client_packet, udp6_payload_to, udp_payload, udp_payload_to, CaptureError, ClientPacket};
pub use capture_socket::{CaptureSocket, CaptureSocketError, CAPTURE_BUFFER};
pub use dnsmasq::{parse_leases, ObservedLease};
pub use evidence::evidence_of;
#[doc(hidden)]
pub use fuzz::{fuzz_entry_capture, fuzz_entry_dnsmasq, fuzz_entry_server};
pub use lease::{Lease, LeaseEvent};
pub use lease_gate::{LeaseGate, HEARD_WITHIN_SECS};
pub use segment::{Counters, SegmentConfig, DECLINE_HOLD_SECS, OFFER_HOLD_SECS};
pub use server::{DhcpServer, Handled, Reply, CLIENT_PORT, SERVER_PORT};
pub use socket::server_socket;
