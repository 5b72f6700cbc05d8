//! A TCP port forwarder from the namespace this process runs in into another
//! namespace, without any link between them.
//!
//! ```text
//!  caller's namespace                       target namespace (e.g. the router)
//!  listener 127.0.0.1:8080  --accept-->  connector thread (setns'd) --connect--> 127.0.0.1:8080
//!         client socket  <== copy both ways ==>  socket created inside the target
//! ```
//!
//! A socket belongs to the namespace it was created in for its whole life,
//! whichever thread uses it later. So one thread enters the target namespace
//! and does nothing but open connections there; the accepted and the opened
//! socket are then spliced by ordinary threads of the caller. Nothing changes in
//! the caller's namespace except the one listening socket: no veth, no address,
//! no route, no firewall rule.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::{Error, Netns, Result};

/// How long the connector waits for the target to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop looks at the stop flag.
const STOP_POLL_MS: u16 = 100;

/// A request to the connector thread: where to reply with the new socket.
type ConnectReply = mpsc::Sender<std::io::Result<TcpStream>>;

/// The forwarder's own handles on the connections it carries (client side,
/// target side), so dropping it can cut them.
type OpenConnections = Arc<Mutex<HashMap<u64, (TcpStream, TcpStream)>>>;

/// A running forwarder. Dropping it stops accepting, cuts the connections it
/// carries, and closes the listener.
#[derive(Debug)]
pub struct Forwarder {
    local: SocketAddr,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    open: OpenConnections,
    accept: Option<JoinHandle<()>>,
    connector: Option<JoinHandle<Result<()>>>,
}

impl Forwarder {
    /// Listens on `listen` in the caller's namespace and forwards every
    /// connection to `target` inside `ns`.
    ///
    /// Port 0 picks a free port ([`Forwarder::local_addr`] says which). A port
    /// already in use is an [`Error::Io`] whose source has kind
    /// [`ErrorKind::AddrInUse`], so callers can say so plainly.
    pub fn start(listen: SocketAddr, ns: &Netns, target: SocketAddr) -> Result<Forwarder> {
        let listener = TcpListener::bind(listen).map_err(|e| Error::io(format!("listening on {listen}"), e))?;
        Forwarder::start_with_listener(listener, ns, target)
    }

    /// Like [`Forwarder::start`], on a listener the caller bound (e.g. early, to
    /// report a taken port before building anything).
    pub fn start_with_listener(listener: TcpListener, ns: &Netns, target: SocketAddr) -> Result<Forwarder> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("address of the forwarder's listener", e))?;
        let (connect_tx, connect_rx) = mpsc::channel::<ConnectReply>();
        // The connector lives in the target namespace; it ends when the accept
        // loop (the only sender) goes away.
        let connector = ns.spawn_thread(&format!("fwd-connect {target}"), move || {
            for reply in connect_rx {
                let _ = reply.send(TcpStream::connect_timeout(&target, CONNECT_TIMEOUT));
            }
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = OpenConnections::default();
        let accept = {
            let (stop, open) = (stop.clone(), open.clone());
            std::thread::Builder::new()
                .name(format!("fwd-accept {local}"))
                .spawn(move || accept_loop(&listener, &connect_tx, &stop, &open))
                .map_err(|e| Error::io("starting the forwarder's accept thread", e))?
        };
        Ok(Forwarder {
            local,
            target,
            stop,
            open,
            accept: Some(accept),
            connector: Some(connector),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where it forwards to (inside the target namespace).
    pub fn target(&self) -> SocketAddr {
        self.target
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // The accept loop dropped the connector's channel: it ends by itself.
        if let Some(connector) = self.connector.take() {
            let _ = connector.join();
        }
        // Cut what is still open so the copy threads end now.
        for (_, (a, b)) in self.open.lock().unwrap_or_else(PoisonError::into_inner).drain() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    connect: &mpsc::Sender<ConnectReply>,
    stop: &AtomicBool,
    open: &OpenConnections,
) {
    let mut next_id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        // Wait for a client with a timeout, so the stop flag is seen.
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(STOP_POLL_MS)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::WouldBlock => continue,
            Err(_) => continue,
        };
        let (reply_tx, reply_rx) = mpsc::channel();
        if connect.send(reply_tx).is_err() {
            return;
        }
        let upstream = match reply_rx.recv() {
            Ok(Ok(s)) => s,
            // The target refused or is gone: the client sees its connection
            // closed, as it would talking to the target directly.
            _ => continue,
        };
        let clones = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        );
        let (Ok(client2), Ok(upstream2), Ok(client3), Ok(upstream3)) = clones else {
            continue;
        };
        next_id += 1;
        let id = next_id;
        open.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (client3, upstream3));
        // The second copy to finish forgets the connection (closing the
        // forwarder's handles on it).
        let remaining = Arc::new(AtomicU8::new(2));
        for (from, to, dir) in [(client, upstream2, "up"), (upstream, client2, "down")] {
            let (open2, remaining) = (open.clone(), remaining.clone());
            let spawned = std::thread::Builder::new().name(format!("fwd-{dir}")).spawn(move || {
                copy_then_half_close(from, to);
                if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                    open2.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                }
            });
            if spawned.is_err() {
                if let Some((a, b)) = open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id) {
                    let _ = a.shutdown(Shutdown::Both);
                    let _ = b.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Copies until `from` reaches end of stream (or fails), then passes the end on
/// to `to` as a half close, the way the two ends would have seen each other.
fn copy_then_half_close(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod unit {
    use super::*;

    /// The copy passes bytes and the end of stream on (no namespace needed:
    /// two loopback pairs).
    #[test]
    fn copy_passes_bytes_and_end_of_stream() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut a = TcpStream::connect(addr).expect("connect a");
        let (b, _) = l.accept().expect("accept b");
        let c = TcpStream::connect(addr).expect("connect c");
        let (mut d, _) = l.accept().expect("accept d");
        // a -> b ==copy==> c -> d
        let t = std::thread::spawn(move || copy_then_half_close(b, c));
        a.write_all(b"hello").expect("write");
        a.shutdown(Shutdown::Write).expect("half close");
        let mut got = Vec::new();
        d.read_to_end(&mut got).expect("read to end");
        assert_eq!(got, b"hello");
        t.join().expect("copy thread");
    }
}
