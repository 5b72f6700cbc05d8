//! Bulkhead: a home router daemon that discovers devices, sorts them into zones
//! enforced by nftables, and tunnels chosen traffic through WireGuard.
//!
//! The data flow is one-directional (see DESIGN.md): sources emit events, the
//! inventory holds device facts, `policy` computes the desired state as plain data,
//! and appliers (`firewall`, `net`) make the kernel match it.

pub mod alerts;
pub mod classify;
pub mod clock;
pub mod config;
pub mod control;
pub mod core;
#[cfg(feature = "demo")]
pub mod demo;
pub mod detect;
pub mod discovery;
pub mod dns;
pub mod firewall;
pub mod init;
pub mod inventory;
pub mod kernel_ids;
pub mod net;
pub mod notify;
pub mod policy;
pub mod runtime;
pub mod share;
pub mod store;
pub mod traffic;
pub mod tunnel;

#[cfg(test)]
mod testutil;
