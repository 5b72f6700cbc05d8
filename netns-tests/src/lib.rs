//! Network-namespace harness for Bulkhead's demo and end-to-end tests.
//!
//! Everything this crate builds lives in network namespaces it creates itself
//! (named `bh{pid}-{counter}-{tag}`) and removes on drop, also when a test panics.
//! It never adds links, addresses, routes or nftables rules to the namespace it
//! runs in: veth pairs are created inside a namespace with their peer placed
//! directly in another one, so nothing appears in the host namespace even for a
//! moment. [`HostSnapshot`] lets a suite prove that.
//!
//! - [`Netns`]: one namespace; run commands, processes and closures inside it.
//! - [`Home`]: an "internet", a router and hosts on segments, built from a
//!   [`HomeSpec`], with responders in the internet and every host.
//! - [`probe`]: TCP, UDP and ping reachability checks, and [`TcpSession`] for
//!   checking that an established connection gets cut.
//! - [`Forwarder`]: a TCP port of this namespace forwarded into another one
//!   (the demo's web UI on the host's loopback), with no link between them.
//! - [`HostSnapshot`]: read-only view of the host namespace's network state.

pub mod avahi;
pub mod dns;
mod error;
pub mod forward;
pub mod home;
pub mod netns;
pub mod probe;
pub mod raw;
pub mod responder;
pub mod snapshot;
pub mod vm;

#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use forward::Forwarder;
pub use home::{Home, HomeSpec, Host, HostSpec, Segment, SegmentSpec};
pub use netns::Netns;
pub use probe::{eventually, ping, tcp_probe, udp_probe, TcpSession};
pub use responder::Responders;
pub use snapshot::HostSnapshot;

/// Whether this process runs as root (namespaces need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Gate for tests that need root.
///
/// Returns `true` when running as root. Otherwise, under `CI=true` it panics (a
/// skipped kernel test must not pass silently in CI); elsewhere it prints a skip
/// message naming `test` and returns `false`, and the caller should return.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root (network namespaces), and CI=true forbids skipping it");
    }
    use std::io::Write;
    // Straight to stderr, not eprintln!: the test harness captures eprintln!
    // output of passing tests, and a skip must not look like a silent pass.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs root (network namespaces)");
    false
}
