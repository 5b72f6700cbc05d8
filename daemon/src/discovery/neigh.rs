//! The kernel's neighbour table (ARP and NDP) as device sightings: dump once,
//! then follow it through rtnetlink's multicast groups. Ties IPv4 and IPv6
//! addresses (SLAAC and privacy addresses included) to MACs, so a device's IPv6
//! addresses join its zone's sets exactly like its IPv4 ones.
//!
//! `update_of` is pure (a netlink message in, a sighting out) and tested without
//! a kernel; `watch` and `dump` are the I/O.

use std::net::IpAddr;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, MulticastGroup};

use crate::config::MacAddr;

/// Errors of the neighbour watcher.
#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    /// The netlink socket could not be opened or joined to its groups.
    #[error("cannot open the rtnetlink neighbour/link subscription")]
    Open(#[source] std::io::Error),
    /// The dump failed.
    #[error("cannot dump the neighbour table")]
    Dump(#[source] rtnetlink::Error),
    /// No tokio runtime to run the connection on.
    #[error("no tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

/// What the neighbour table says about one (MAC, address) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourUpdate {
    /// The address answers (or recently did) from this MAC on this link.
    Present {
        /// Link index.
        ifindex: u32,
        /// The device.
        mac: MacAddr,
        /// Its address.
        ip: IpAddr,
    },
    /// The entry went away or failed: the address is not (or no longer) there.
    Gone {
        /// Link index.
        ifindex: u32,
        /// The device, when the kernel still said.
        mac: Option<MacAddr>,
        /// The address.
        ip: IpAddr,
    },
    /// The bridge's forwarding table: a bridge learned `mac` on the port
    /// `port` (`learned`), or forgot it there (aged out, the port went down
    /// or left the bridge). Only entries the bridge learned from traffic:
    /// its own and static ones say nothing about a device.
    Port {
        /// The bridge's link index.
        bridge: u32,
        /// The port's link index.
        port: u32,
        /// The device.
        mac: MacAddr,
        /// Learned (true) or forgotten (false).
        learned: bool,
    },
    /// A link appeared, changed or went away (bridge ports may have changed),
    /// or one of its IPv6 addresses did.
    LinkChanged,
    /// The kernel dropped notifications (ENOBUFS: the socket's buffer was full,
    /// a burst of changes): what was missed is unknown, so the table must be
    /// read again (and the links looked at again).
    Overrun,
}

/// Addresses worth tying to a device: routable unicast. Link-local IPv6 is left
/// out (never forwarded; zones are judged by MAC on the bridge), as are
/// multicast, unspecified and loopback.
pub fn is_device_address(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local()),
    }
}

/// One neighbour message as an update (None: not about a device address).
pub fn neighbour_update(msg: &NeighbourMessage, deleted: bool) -> Option<NeighbourUpdate> {
    let mut ip = None;
    let mut mac = None;
    for a in &msg.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some(IpAddr::V4(*v4)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => ip = Some(IpAddr::V6(*v6)),
            NeighbourAttribute::LinkLayerAddress(b) => {
                mac = <[u8; 6]>::try_from(b.as_slice())
                    .ok()
                    .map(MacAddr)
                    .filter(|m| !m.is_multicast() && m.0 != [0; 6]);
            }
            _ => {}
        }
    }
    let ip = ip.filter(is_device_address)?;
    let ifindex = msg.header.ifindex;
    let present = matches!(
        msg.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    if deleted || matches!(msg.header.state, NeighbourState::Failed) {
        return Some(NeighbourUpdate::Gone { ifindex, mac, ip });
    }
    // Incomplete (still resolving), noarp and the like say nothing about a device.
    present
        .then_some(mac)
        .flatten()
        .map(|mac| NeighbourUpdate::Present { ifindex, mac, ip })
}

/// One bridge forwarding-table message as an update (None: not a learned
/// entry of a device). The kernel reports learned entries as reachable (or
/// stale once half their age is gone), its own as permanent and static
/// ones as noarp.
pub fn fdb_update(msg: &NeighbourMessage, deleted: bool) -> Option<NeighbourUpdate> {
    // A bridge's entries name it (`NDA_MASTER`); a port device's own table
    // (its unicast and multicast addresses, `self`) does not.
    let bridge = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Controller(index) => Some(*index),
        _ => None,
    })?;
    if msg.header.family != AddressFamily::Bridge
        || !matches!(msg.header.state, NeighbourState::Reachable | NeighbourState::Stale)
    {
        return None;
    }
    let mac = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr),
        _ => None,
    })?;
    if mac.is_multicast() || mac.0 == [0; 6] {
        return None;
    }
    Some(NeighbourUpdate::Port {
        bridge,
        port: msg.header.ifindex,
        mac,
        learned: !deleted,
    })
}

/// One rtnetlink multicast message as an update.
pub fn update_of(msg: &NetlinkMessage<RouteNetlinkMessage>) -> Option<NeighbourUpdate> {
    match &msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n))
            if n.header.family == AddressFamily::Bridge =>
        {
            fdb_update(n, false)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(n))
            if n.header.family == AddressFamily::Bridge =>
        {
            fdb_update(n, true)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) => neighbour_update(n, false),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(n)) => neighbour_update(n, true),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_)) => {
            Some(NeighbourUpdate::LinkChanged)
        }
        // An IPv6 address came or went: a segment's link-local address (made
        // by the kernel a moment after the link comes up) is what devices may
        // not claim, so the firewall follows it.
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_)) => {
            Some(NeighbourUpdate::LinkChanged)
        }
        // netlink-proto turns a recv that failed with ENOBUFS into this.
        NetlinkPayload::Overrun(_) => Some(NeighbourUpdate::Overrun),
        _ => None,
    }
}

/// A live subscription to neighbour and link changes, in the calling thread's
/// network namespace.
pub struct NeighbourWatch {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl NeighbourWatch {
    /// Subscribes to neighbours, links and IPv6 addresses (before any dump,
    /// so nothing between the two is missed).
    pub fn start() -> Result<NeighbourWatch, NeighbourError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(NeighbourError::NoRuntime)?;
        let (connection, _handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Neigh,
            MulticastGroup::Link,
            MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(NeighbourError::Open)?;
        Ok(NeighbourWatch {
            messages,
            task: runtime.spawn(connection),
        })
    }

    /// The next update (pending forever once the connection is gone).
    pub async fn next(&mut self) -> NeighbourUpdate {
        loop {
            match self.messages.next().await {
                Some((msg, _)) => {
                    if let Some(u) = update_of(&msg) {
                        return u;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }
}

impl Drop for NeighbourWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every learned entry of the bridges' forwarding tables now.
pub async fn dump_fdb(handle: &Handle) -> Result<Vec<NeighbourUpdate>, NeighbourError> {
    let mut stream = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(NeighbourError::Dump)?;
        if let Some(u) = fdb_update(&msg, false) {
            out.push(u);
        }
    }
    Ok(out)
}

/// The whole neighbour table now.
pub async fn dump(handle: &Handle) -> Result<Vec<NeighbourUpdate>, NeighbourError> {
    let mut stream = handle.neighbours().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(NeighbourError::Dump)?;
        if let Some(u @ NeighbourUpdate::Present { .. }) = neighbour_update(&msg, false) {
            out.push(u);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourHeader};

    #[test]
    fn dropped_notifications_ask_for_a_resync() {
        // What netlink-proto hands on after a recv failed with ENOBUFS.
        let overrun =
            NetlinkMessage::<RouteNetlinkMessage>::new(Default::default(), NetlinkPayload::Overrun(Vec::new()));
        assert_eq!(update_of(&overrun), Some(NeighbourUpdate::Overrun));
    }

    fn msg(state: NeighbourState, ip: IpAddr, mac: Option<[u8; 6]>) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header = NeighbourHeader {
            ifindex: 7,
            state,
            ..Default::default()
        };
        m.attributes.push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        if let Some(mac) = mac {
            m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        m
    }

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];

    /// An entry as the kernel sends it: a bridge's (`master`) names the
    /// bridge, a port device's own (`self`) does not.
    fn fdb(state: NeighbourState, of_bridge: bool, mac: [u8; 6]) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header = NeighbourHeader {
            family: AddressFamily::Bridge,
            ifindex: 12,
            state,
            flags: if of_bridge {
                NeighbourFlags::empty()
            } else {
                NeighbourFlags::Own
            },
            ..Default::default()
        };
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        if of_bridge {
            m.attributes.push(NeighbourAttribute::Controller(3));
        }
        m
    }

    #[test]
    fn learned_forwarding_entries_say_which_port_a_device_is_on() {
        let learned = |state| fdb(state, true, MAC);
        for state in [NeighbourState::Reachable, NeighbourState::Stale] {
            assert_eq!(
                fdb_update(&learned(state), false),
                Some(NeighbourUpdate::Port {
                    bridge: 3,
                    port: 12,
                    mac: MacAddr(MAC),
                    learned: true
                })
            );
        }
        assert_eq!(
            fdb_update(&learned(NeighbourState::Reachable), true),
            Some(NeighbourUpdate::Port {
                bridge: 3,
                port: 12,
                mac: MacAddr(MAC),
                learned: false
            }),
            "aged out or flushed"
        );
        // The bridge's own MACs (permanent), static entries (noarp), the
        // port device's own table (no bridge named) and group MACs are
        // no device's.
        for not_a_device in [
            fdb(NeighbourState::Permanent, true, MAC),
            fdb(NeighbourState::Noarp, true, MAC),
            fdb(NeighbourState::Reachable, false, MAC),
            fdb(NeighbourState::Reachable, true, [0x33, 0x33, 0, 0, 0, 1]),
        ] {
            assert_eq!(fdb_update(&not_a_device, false), None, "{not_a_device:?}");
        }
        // Through the multicast path too, not mistaken for an address entry.
        let wrapped = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(learned(NeighbourState::Reachable)));
        assert!(matches!(
            update_of(&wrapped),
            Some(NeighbourUpdate::Port { learned: true, .. })
        ));
    }

    #[test]
    fn reachable_and_stale_entries_are_sightings() {
        for state in [NeighbourState::Reachable, NeighbourState::Stale, NeighbourState::Delay] {
            let ip: IpAddr = "fd00:1::abcd".parse().expect("ip");
            assert_eq!(
                neighbour_update(&msg(state, ip, Some(MAC)), false),
                Some(NeighbourUpdate::Present {
                    ifindex: 7,
                    mac: MacAddr(MAC),
                    ip
                })
            );
        }
    }

    #[test]
    fn link_local_multicast_and_incomplete_entries_are_not_devices() {
        let ll: IpAddr = "fe80::1".parse().expect("ip");
        assert_eq!(
            neighbour_update(&msg(NeighbourState::Reachable, ll, Some(MAC)), false),
            None
        );
        let mc: IpAddr = "224.0.0.251".parse().expect("ip");
        assert_eq!(neighbour_update(&msg(NeighbourState::Noarp, mc, None), false), None);
        let v4: IpAddr = "10.0.1.5".parse().expect("ip");
        assert_eq!(
            neighbour_update(&msg(NeighbourState::Incomplete, v4, None), false),
            None
        );
        // A bogus lladdr (wrong length, multicast, zero) is no device.
        let mut m = msg(NeighbourState::Reachable, v4, None);
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![1, 2, 3]));
        assert_eq!(neighbour_update(&m, false), None, "no usable MAC, no device");
    }

    #[test]
    fn failed_and_deleted_entries_are_gone() {
        let v6: IpAddr = "fd00:2::5".parse().expect("ip");
        assert!(matches!(
            neighbour_update(&msg(NeighbourState::Failed, v6, None), false),
            Some(NeighbourUpdate::Gone { .. })
        ));
        assert!(matches!(
            neighbour_update(&msg(NeighbourState::Stale, v6, Some(MAC)), true),
            Some(NeighbourUpdate::Gone { mac: Some(_), .. })
        ));
    }
}

#[cfg(test)]
mod netns_test;
