//! mDNS discovery (mdns-sd): service types, instances, host names and TXT records
//! as evidence.
//!
//! - [`Browser`]: an mdns-sd daemon restricted to the LAN interfaces (every other
//!   interface, the WAN included, is disabled before anything is sent), browsing
//!   the DNS-SD meta-query, [`FIXED_TYPES`] and each type learned (at most
//!   `max_types`), yielding [`MdnsObservation`]s through the cancel-safe
//!   `async fn next()`.
//! - [`observation_of`]: the PURE conversion of one answer (as [`ServiceParts`])
//!   into bounded [`Evidence`](crate::classify::Evidence), or [`MdnsDropped`].
//! - [`announce`]: one service on one interface, for tests and the demo (and the
//!   hidden `bulkhead mdns-announce` command).
//! - [`SenderCapture`] and [`response_facts`]: the same packets captured with
//!   their Ethernet sender and read one by one: what counts as evidence, for
//!   the sender only (mdns-sd merges every sender's records and does not say
//!   whose they are, so its resolved services are not evidence).

mod announce;
mod browser;
mod capture;
mod convert;
mod fuzz;
mod senders;
mod state;

#[cfg(test)]
mod netns_test;

use mdns_sd::{IfKind, ServiceDaemon};

pub use announce::{announce, parse_txt_pair, service_info_of, AnnounceSpec};
pub use browser::{Browser, BrowserConfig};
pub use capture::{Heard, SenderCapture};
pub use convert::{
    observation_of, parts_of, service_type_of, MdnsDropped, MdnsObservation, ServiceParts, MAX_ADDRESSES,
    MAX_TYPE_LABEL,
};
#[doc(hidden)]
pub use fuzz::fuzz_entry;
pub use senders::{response_facts, PacketDropped, ResponseFacts, MAX_RESPONSE_ADDRESSES, MDNS_PORT};
pub use state::{BrowseState, MdnsCounters, Step, DEFAULT_MAX_TYPES, FIXED_TYPES, META_QUERY};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Why the mDNS browser or announcer could not start.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// No interface given: mDNS must be bound to named LAN interfaces.
    #[error("no interfaces given for mDNS")]
    NoInterfaces,
    /// An interface name Linux would not accept.
    #[error("bad interface name {name:?}")]
    BadInterface {
        /// The name given.
        name: String,
    },
    /// A service type that is not `_name._tcp` or `_name._udp`.
    #[error("bad service type {name:?} (want _name._tcp or _name._udp)")]
    BadServiceType {
        /// The type given.
        name: String,
    },
    /// An announcement that cannot be made as given.
    #[error("bad announcement: {0}")]
    BadSpec(String),
    /// The mdns-sd daemon refused a command.
    #[error("{context}")]
    Daemon {
        /// What was being done.
        context: &'static str,
        /// The daemon's error.
        #[source]
        source: mdns_sd::Error,
    },
    /// The mdns-sd daemon stopped while starting up.
    #[error("the mDNS daemon stopped")]
    Stopped,
}

/// Checks an interface name as Linux would: 1-15 bytes, not `.` or `..`, no
/// `/`, `:` or whitespace.
pub fn check_interface_name(name: &str) -> Result<(), MdnsError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(MdnsError::BadInterface { name: name.to_string() })
    }
}

/// A new mdns-sd daemon on `interfaces` only: all interfaces disabled, then
/// these enabled, before any other command, so nothing is ever sent elsewhere.
///
/// mdns-sd opens its sockets and joins the mDNS group on every interface when
/// its thread starts, and leaves the disabled ones when it runs these first
/// commands; a packet arriving on another interface in between is dropped
/// (nothing is browsed or registered yet, and unsolicited answers are not kept).
fn restricted_daemon(interfaces: &[String]) -> Result<ServiceDaemon, MdnsError> {
    if interfaces.is_empty() {
        return Err(MdnsError::NoInterfaces);
    }
    for name in interfaces {
        check_interface_name(name)?;
    }
    let daemon = ServiceDaemon::new().map_err(|source| MdnsError::Daemon {
        context: "starting the mDNS daemon",
        source,
    })?;
    let enabled: Vec<IfKind> = interfaces.iter().map(|n| IfKind::Name(n.clone())).collect();
    let restricted = daemon
        .disable_interface(IfKind::All)
        .and_then(|()| daemon.enable_interface(enabled));
    match restricted {
        Ok(()) => Ok(daemon),
        Err(source) => {
            let _ = daemon.shutdown();
            Err(MdnsError::Daemon {
                context: "restricting mDNS to the LAN interfaces",
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        for good in ["eth0", "br-lan", "wlan0.1", "veth_x", "a", "x".repeat(15).as_str()] {
            assert!(check_interface_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a:1", "a b", "a\n", "x".repeat(16).as_str()] {
            assert!(check_interface_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_interfaces_no_daemon() {
        // Refused before a daemon (and its sockets) exists.
        assert!(matches!(restricted_daemon(&[]), Err(MdnsError::NoInterfaces)));
        assert!(matches!(
            restricted_daemon(&["bad/name".to_string()]),
            Err(MdnsError::BadInterface { .. })
        ));
    }
}
