//! Bulkhead: a home router daemon that discovers devices, sorts them into zones
//! enforced by nftables, and tunnels chosen traffic through WireGuard.
//!
//! The data flow is one-directional (see DESIGN.md): sources emit events, the
//! inventory holds device facts, `policy` computes the desired state as plain data,
//! and appliers (`firewall`, `net`) make the kernel match it.

pub mod alerts;
pub mod classify;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod dhcp;
pub mod firewall;
pub mod identity;
pub mod inventory;
pub mod kernel_ids;
pub mod mdns;
pub mod neigh;
pub mod net;
pub mod policy;
pub mod store;
pub mod tunnel;
pub mod vendor;

#[cfg(test)]
mod testutil;
