//! Datagrams in batches (`recvmmsg`/`sendmmsg`): under load the resolver
//! takes every question already queued in one system call, decides them under
//! one taking of the locks, and sends their answers in one call. Without load
//! a batch is one datagram, and nothing waits to fill one. Measured
//! (BENCHMARKS.md, "DNS resolver vs dnsmasq"): the gain is within the
//! benchmark's run-to-run spread, and the hoped-for saving — a client woken
//! once per batch instead of once per answer — did not show: the wake-ups
//! stayed at a sixth of the resolver's samples (the queue rarely holds more
//! than a few questions when the resolver keeps up).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

/// Datagrams taken or sent in one call at most.
pub const BATCH: usize = 32;
/// The largest question read (EDNS allows more, no client sends it; a longer
/// datagram is cut and the parser refuses it).
pub const MAX_QUESTION: usize = 4096;

/// Reads the datagrams queued on `fd` (non-blocking) into `buffers`: for
/// each, the buffer it is in, its length and its sender (a datagram without
/// a sender address, which an IP socket never gives, is skipped).
/// `WouldBlock` when none is queued.
pub fn receive(fd: RawFd, buffers: &mut [Vec<u8>]) -> io::Result<Vec<(usize, usize, SocketAddr)>> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(buffers.len(), None);
    let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
    let received =
        recvmmsg(fd, &mut headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None).map_err(io::Error::from)?;
    Ok(received
        .enumerate()
        .filter_map(|(i, m)| Some((i, m.bytes, socket_addr(&m.address?)?)))
        .collect())
}

/// Sends `datagrams` (non-blocking); how many left. `WouldBlock` when the
/// socket's buffer is full before the first.
pub fn send(fd: RawFd, datagrams: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    if datagrams.is_empty() {
        return Ok(0);
    }
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(datagrams.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = datagrams.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let addresses: Vec<Option<SockaddrStorage>> = datagrams
        .iter()
        .map(|(_, to)| Some(SockaddrStorage::from(*to)))
        .collect();
    let none: [ControlMessage<'_>; 0] = [];
    let sent =
        sendmmsg(fd, &mut headers, slices.iter(), addresses, none, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)?;
    Ok(sent.count())
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    s.as_sockaddr_in()
        .map(|v4| SocketAddr::V4(SocketAddrV4::from(*v4)))
        .or_else(|| s.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_is_read_and_answered_in_order_with_its_senders() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        server.set_nonblocking(true).expect("nonblocking");
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let to = server.local_addr().expect("addr");
        let mut buffers = vec![vec![0u8; MAX_QUESTION]; BATCH];
        assert_eq!(
            receive(server.as_raw_fd(), &mut buffers).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "nothing queued"
        );
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 3][..=i], to).expect("send");
        }
        let got = receive(server.as_raw_fd(), &mut buffers).expect("receive");
        assert_eq!(got.len(), 3);
        for (i, (buffer, len, from)) in got.iter().enumerate() {
            assert_eq!(*buffer, i);
            assert_eq!(*len, i + 1);
            assert_eq!(*from, clients[i].local_addr().expect("addr"));
            assert_eq!(buffers[i][0], i as u8);
        }
        let answers: Vec<(Vec<u8>, SocketAddr)> = got.iter().map(|(_, len, from)| (vec![7; *len], *from)).collect();
        assert_eq!(send(server.as_raw_fd(), &answers).expect("send"), 3);
        for (i, c) in clients.iter().enumerate() {
            let mut b = [0u8; 8];
            let (n, _) = c.recv_from(&mut b).expect("answer");
            assert_eq!(n, i + 1);
        }
    }
}
