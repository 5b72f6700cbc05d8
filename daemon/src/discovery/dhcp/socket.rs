//! The server's socket: one per segment, each on UDP port 67 and tied to its
//! interface, so a reply leaves by the link its request came in on.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use super::server::SERVER_PORT;

/// A non-blocking UDP socket bound to 0.0.0.0:67 with SO_REUSEADDR,
/// SO_BROADCAST and SO_BINDTODEVICE(`interface`). Needs CAP_NET_BIND_SERVICE and
/// CAP_NET_RAW (for SO_BINDTODEVICE) and a running tokio runtime; the socket
/// belongs to the calling thread's network namespace.
pub fn server_socket(interface: &str) -> io::Result<tokio::net::UdpSocket> {
    let context = |what: &str| {
        let interface = interface.to_string();
        let what = what.to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("DHCP server socket on {interface}: {what}: {e}"))
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(context("socket"))?;
    socket.set_reuse_address(true).map_err(context("SO_REUSEADDR"))?;
    socket.set_broadcast(true).map_err(context("SO_BROADCAST"))?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .map_err(context("SO_BINDTODEVICE"))?;
    socket.set_nonblocking(true).map_err(context("non-blocking"))?;
    let address = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT);
    socket.bind(&address.into()).map_err(context("bind 0.0.0.0:67"))?;
    tokio::net::UdpSocket::from_std(socket.into()).map_err(context("register with tokio"))
}
