//! Small servers the probes talk to, run as threads of this process.
//!
//! Each socket is opened inside its namespace (through [`Netns::run_in`]) and then
//! served from an ordinary thread: a socket stays in the namespace it was created
//! in. Every loop wakes at least every 100 ms to check a shared stop flag, so
//! [`Responders`] can stop and join all of them on drop.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::{Error, Netns, Result};

/// TCP port of the banner responder.
pub const BANNER_PORT: u16 = 80;
/// What the banner responder writes before closing.
pub const BANNER: &[u8] = b"ok\n";
/// Port of the echo responders, TCP (keeps the connection open) and UDP.
pub const ECHO_PORT: u16 = 7;

/// How often a waiting responder thread checks its stop flag.
const TICK: Duration = Duration::from_millis(100);

/// A group of responder threads, stopped and joined together on drop.
#[derive(Debug)]
pub struct Responders {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Default for Responders {
    fn default() -> Self {
        Self::new()
    }
}

impl Responders {
    /// An empty group.
    pub fn new() -> Responders {
        Responders {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    /// Starts the standard set on all addresses of `ns`: the TCP banner on
    /// [`BANNER_PORT`], TCP and UDP echo on [`ECHO_PORT`].
    pub fn start_standard(&mut self, ns: &Netns) -> Result<()> {
        self.start_standard_on(ns, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    }

    /// Starts the standard set bound to one address `ip` of `ns`.
    ///
    /// Binding to the address (not the wildcard) makes UDP replies leave from it,
    /// which matters when the namespace has several addresses.
    pub fn start_standard_on(&mut self, ns: &Netns, ip: IpAddr) -> Result<()> {
        self.start_tcp_banner(ns, SocketAddr::new(ip, BANNER_PORT))?;
        self.start_tcp_echo(ns, SocketAddr::new(ip, ECHO_PORT))?;
        self.start_udp_echo(ns, SocketAddr::new(ip, ECHO_PORT))
    }

    /// Serves TCP on `addr` in `ns`: every connection gets [`BANNER`] and is
    /// closed. `[::]` also accepts IPv4 (dual stack, the Linux default).
    pub fn start_tcp_banner(&mut self, ns: &Netns, addr: SocketAddr) -> Result<()> {
        let listener = bind_tcp(ns, addr)?;
        let stop = Arc::clone(&self.stop);
        self.spawn(format!("banner {addr}"), move || {
            serve_tcp(&listener, &stop, |stream, _| {
                send_banner(stream);
                None
            });
        })
    }

    /// Serves TCP on `addr` in `ns`: echoes whatever arrives and keeps each
    /// connection open until the peer closes it or the group stops.
    pub fn start_tcp_echo(&mut self, ns: &Netns, addr: SocketAddr) -> Result<()> {
        let listener = bind_tcp(ns, addr)?;
        let stop = Arc::clone(&self.stop);
        self.spawn(format!("tcp echo {addr}"), move || {
            serve_tcp(&listener, &stop, |stream, stop| {
                let stop = Arc::clone(stop);
                std::thread::Builder::new()
                    .name("bh tcp echo conn".into())
                    .spawn(move || echo_connection(stream, &stop))
                    .ok()
            });
        })
    }

    /// Serves UDP on `addr` in `ns`: sends every datagram back to its sender.
    pub fn start_udp_echo(&mut self, ns: &Netns, addr: SocketAddr) -> Result<()> {
        let context = || format!("binding udp {addr} in {}", ns.name());
        let socket = ns
            .run_in(|| UdpSocket::bind(addr))?
            .map_err(|e| Error::io(context(), e))?;
        socket
            .set_read_timeout(Some(TICK))
            .map_err(|e| Error::io(context(), e))?;
        let stop = Arc::clone(&self.stop);
        self.spawn(format!("udp echo {addr}"), move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                // Timeouts just bring us back to the stop check.
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], peer);
                }
            }
        })
    }

    /// Stops and joins every thread of the group (also done on drop).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let thread = std::thread::Builder::new()
            .name(format!("bh {name}"))
            .spawn(f)
            .map_err(|e| Error::io(format!("starting responder {name}"), e))?;
        self.threads.push(thread);
        Ok(())
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind_tcp(ns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
    let context = || format!("binding tcp {addr} in {}", ns.name());
    let listener = ns
        .run_in(|| TcpListener::bind(addr))?
        .map_err(|e| Error::io(context(), e))?;
    // Non-blocking so that a connection reset between poll and accept cannot
    // block the loop past a stop request.
    listener.set_nonblocking(true).map_err(|e| Error::io(context(), e))?;
    Ok(listener)
}

/// Accepts connections until `stop` is set, handing each to `handle`, which may
/// return a thread to join before this function returns.
fn serve_tcp<H>(listener: &TcpListener, stop: &Arc<AtomicBool>, mut handle: H)
where
    H: FnMut(TcpStream, &Arc<AtomicBool>) -> Option<JoinHandle<()>>,
{
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if !readable(listener) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                // Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit.
                if stream.set_nonblocking(false).is_ok() {
                    connections.extend(handle(stream, stop));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // E.g. out of file descriptors: back off instead of spinning.
            Err(_) => std::thread::sleep(TICK),
        }
        connections.retain(|c| !c.is_finished());
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Waits up to one [`TICK`] for the listener to have a connection to accept.
fn readable(listener: &TcpListener) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let tick = u16::try_from(TICK.as_millis()).unwrap_or(u16::MAX);
    matches!(poll(&mut fds, PollTimeout::from(tick)), Ok(n) if n > 0)
}

fn send_banner(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(BANNER);
    // Dropping the stream closes it: the client sees the banner, then EOF.
}

fn echo_connection(mut stream: TcpStream, stop: &AtomicBool) {
    if stream.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
