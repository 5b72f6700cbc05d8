//! The WireGuard tunnel: boringtun's `noise` (no I/O) driven by our own device
//! (TUN + UDP I/O), a pure connection state machine with time passed in, the UAPI
//! socket `wg show` talks to, and the routing (own table, fwmark rules, blackhole
//! kill switch).
//!
//! | module | pure? | what |
//! | --- | --- | --- |
//! | `keys` | yes (+ key file edge) | base64 keys, public from private, key file generated 0600 |
//! | `wgquick` | yes | a wg-quick `.conf` → `[tunnel]` TOML (`bulkhead vpn import`) |
//! | `state` | yes | down / connecting / up / error, `handle_timeout(now)` |
//! | `uapi` | protocol pure; server the edge | WireGuard's cross-platform UAPI (`wg show`) |
//! | `routing` | plan pure; apply the edge | table, fwmark rules, default via the tunnel, blackhole |
//! | `device` | edge | TUN (offloads) + UDP (batched) data plane threads |

pub mod alerting;
pub mod device;
mod fuzz;
pub mod keys;
pub mod routing;
pub mod state;
pub mod uapi;
pub mod wgquick;

pub use fuzz::{fuzz_entry_uapi, fuzz_entry_wgquick};

// Interop with wireguard-go runs the demo's VPN server (`demo::vpn`), so it
// exists with `--features demo` (as `scripts/test.sh` builds the lib tests).
#[cfg(all(test, feature = "demo"))]
mod netns_test;
