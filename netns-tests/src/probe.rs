//! Reachability probes, run from inside a namespace.
//!
//! Every probe has a timeout and answers `Ok(true)` (reached), `Ok(false)`
//! (blocked, refused, unreachable, timed out) or `Err` (the harness itself
//! failed: namespace gone, `busybox` missing, ...). Any network error after the
//! socket exists counts as "not reached".

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::responder::BANNER;
use crate::{Error, Netns, Result};

/// How long a UDP probe waits for an echo before sending its datagram again.
const UDP_RESEND: Duration = Duration::from_millis(250);
/// How often [`eventually`] retries.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Makes probe payloads unique, so a late echo of an earlier probe never counts.
static PROBE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Connects from `ns` to `addr` over TCP and reads the banner responder's `ok`.
///
/// `Ok(true)` only if the banner arrived within `timeout`. A closed port answers
/// quickly (`Ok(false)` on the RST); a dropped SYN takes the whole timeout.
pub fn tcp_probe(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    ns.run_in(|| {
        let Some(left) = remaining(deadline) else {
            return false;
        };
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, left) else {
            return false;
        };
        let mut banner = Vec::new();
        while !banner.ends_with(b"\n") && banner.len() < 64 {
            let Some(left) = remaining(deadline) else {
                break;
            };
            if stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let mut buf = [0u8; 64];
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => banner.extend_from_slice(&buf[..n]),
            }
        }
        banner == BANNER
    })
}

/// Sends a datagram from `ns` to `addr` and waits for the UDP echo responder to
/// send it back.
///
/// The socket is left unconnected and the reply is recognised by its unique
/// payload, not its source address: a host with several addresses may answer
/// from another one than was asked. The datagram is resent every 250 ms until
/// `timeout`. A closed port is therefore only known after the full timeout.
pub fn udp_probe(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let token = format!(
        "bulkhead-probe {} {}",
        std::process::id(),
        PROBE_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let local: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = ns
        .run_in(|| UdpSocket::bind((local, 0)))?
        .map_err(|e| Error::io(format!("binding a udp socket in {}", ns.name()), e))?;
    let mut buf = [0u8; 2048];
    while let Some(left) = remaining(deadline) {
        if socket.send_to(token.as_bytes(), addr).is_err() {
            // No route and the like: as unreachable as it gets.
            return Ok(false);
        }
        let resend_at = Instant::now() + left.min(UDP_RESEND);
        while let Some(wait) = remaining(resend_at) {
            if socket.set_read_timeout(Some(wait)).is_err() {
                return Ok(false);
            }
            match socket.recv_from(&mut buf) {
                Ok((n, _)) if &buf[..n] == token.as_bytes() => return Ok(true),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Ok(false),
            }
        }
    }
    Ok(false)
}

/// Pings `addr` once from `ns` with `busybox ping`, waiting up to `timeout`
/// (rounded up to whole seconds, at least 1).
pub fn ping(ns: &Netns, addr: IpAddr, timeout: Duration) -> Result<bool> {
    let secs = (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(1);
    let secs = secs.to_string();
    let family = if addr.is_ipv6() { "-6" } else { "-4" };
    let addr = addr.to_string();
    ns.exec_ok(&["busybox", "ping", family, "-c", "1", "-W", &secs, &addr])
}

/// Calls `probe` every 100 ms until it answers `Ok(true)` or `timeout` passes;
/// answers whether it ever did. Errors end the wait at once.
///
/// For state that settles (the daemon adding an address, DAD finishing).
pub fn eventually<F>(timeout: Duration, mut probe: F) -> Result<bool>
where
    F: FnMut() -> Result<bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if probe()? {
            return Ok(true);
        }
        if Instant::now() + RETRY_INTERVAL > deadline {
            return Ok(false);
        }
        std::thread::sleep(RETRY_INTERVAL);
    }
}

/// A TCP connection to an echo responder (port
/// [`ECHO_PORT`](crate::responder::ECHO_PORT)) that stays open, to check that
/// an established connection keeps working, or gets cut.
#[derive(Debug)]
pub struct TcpSession {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Bytes of a line not yet complete when the last read timed out.
    pending: Vec<u8>,
    seq: u64,
}

impl TcpSession {
    /// Connects from `ns` to `addr` within `timeout`.
    ///
    /// Failing to connect is an error here: a session is opened where it must
    /// work, and what a test checks is what happens to it afterwards.
    pub fn open(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<TcpSession> {
        let context = || format!("tcp session from {} to {addr}", ns.name());
        let stream = ns
            .run_in(|| TcpStream::connect_timeout(&addr, timeout))?
            .map_err(|e| Error::io(context(), e))?;
        let reader = stream.try_clone().map_err(|e| Error::io(context(), e))?;
        Ok(TcpSession {
            stream,
            reader: BufReader::new(reader),
            pending: Vec::new(),
            seq: 0,
        })
    }

    /// Sends a numbered line and waits up to `timeout` for its echo.
    ///
    /// `false` if the echo did not come back in time or the connection broke.
    /// Echoes of earlier, timed-out lines that arrive late are skipped.
    pub fn roundtrip(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.seq += 1;
        let line = format!("bulkhead-session {}\n", self.seq);
        if self.stream.set_write_timeout(Some(timeout)).is_err() || self.stream.write_all(line.as_bytes()).is_err() {
            return false;
        }
        while let Some(left) = remaining(deadline) {
            if self.reader.get_ref().set_read_timeout(Some(left)).is_err() {
                return false;
            }
            // read_until keeps what it read before a timeout in `pending`, so a
            // line split across two calls is not lost.
            match self.reader.read_until(b'\n', &mut self.pending) {
                Ok(0) => return false,
                Ok(_) if self.pending.ends_with(b"\n") => {
                    let matched = self.pending == line.as_bytes();
                    self.pending.clear();
                    if matched {
                        return true;
                    }
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// Time left until `deadline`, `None` once it has passed (socket timeouts must
/// not be zero).
fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}
