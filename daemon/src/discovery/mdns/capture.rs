//! The capture beside mdns-sd: the same mDNS packets, read off each LAN
//! interface with packet sockets (they take a copy of each frame and steal
//! nothing from mdns-sd's or the share proxy's sockets, unlike a second UDP
//! socket on port 5353), each response's claims tagged with the Ethernet
//! source of its frame. What the claims mean is [`super::senders`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::senders::{claims_of, Claim, MDNS_PORT};
use crate::config::MacAddr;
use crate::discovery::dhcp::{CaptureSocket, CaptureSocketError};

/// Largest mDNS packet read whole (RFC 6762 allows up to 9000 bytes).
const BUFFER: usize = 9000;

/// One response's claims and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// The frame's Ethernet source.
    pub sender: MacAddr,
    /// What the response claims (never empty).
    pub claims: Vec<Claim>,
}

/// What the capture has read so far.
#[derive(Debug, Default)]
struct Counts {
    responses: AtomicU64,
    malformed: AtomicU64,
}

/// Packet sockets on the LAN interfaces, read by one task each.
#[derive(Debug)]
pub struct SenderCapture {
    heard: mpsc::Receiver<Heard>,
    counts: Arc<Counts>,
    readers: Vec<JoinHandle<()>>,
}

impl SenderCapture {
    /// Opens an IPv4 and an IPv6 capture on each interface. Needs
    /// CAP_NET_RAW and a tokio runtime; all or nothing.
    pub fn start(interfaces: &[String]) -> Result<SenderCapture, CaptureSocketError> {
        let mut sockets = Vec::new();
        for interface in interfaces {
            sockets.push(CaptureSocket::open_port(interface, MDNS_PORT)?);
            sockets.push(CaptureSocket::open_port_v6(interface, MDNS_PORT)?);
        }
        let (tx, heard) = mpsc::channel(256);
        let counts = Arc::new(Counts::default());
        let readers = sockets
            .into_iter()
            .map(|socket| tokio::spawn(read(socket, tx.clone(), counts.clone())))
            .collect();
        Ok(SenderCapture { heard, counts, readers })
    }

    /// The next response heard; `None` if every reader stopped.
    /// Cancel-safe (a channel receive).
    pub async fn next(&mut self) -> Option<Heard> {
        self.heard.recv().await
    }

    /// (responses with claims, packets that were not mDNS messages).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.responses.load(Ordering::Relaxed),
            self.counts.malformed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for SenderCapture {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

async fn read(socket: CaptureSocket, heard: mpsc::Sender<Heard>, counts: Arc<Counts>) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let (len, sender) = match socket.recv_from_mac(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, interface = socket.interface(), "mDNS capture failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let packet = buf.get(..len).unwrap_or(&buf);
        let claims = match claims_of(packet) {
            Ok(c) => c,
            Err(_) => {
                counts.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let Some(sender) = sender.filter(|_| !claims.is_empty()) else {
            continue;
        };
        counts.responses.fetch_add(1, Ordering::Relaxed);
        if heard.send(Heard { sender, claims }).await.is_err() {
            return;
        }
    }
}
