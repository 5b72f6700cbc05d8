//! The capture beside mdns-sd: the same mDNS packets, read off each LAN
//! interface with packet sockets (they take a copy of each frame and steal
//! nothing from mdns-sd's or the share proxy's sockets, unlike a second UDP
//! socket on port 5353), each response read and tagged with the Ethernet
//! source of its frame. What a response says is [`super::senders`].

use portable_atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::senders::{response_facts, ResponseFacts, MDNS_PORT};
use crate::config::MacAddr;
use crate::discovery::dhcp::CaptureSocket;

/// Largest mDNS packet read whole (RFC 6762 allows up to 9000 bytes).
const BUFFER: usize = 9000;

/// One response and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// The frame's Ethernet source.
    pub sender: MacAddr,
    /// What the response says.
    pub facts: ResponseFacts,
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
    /// Opens an IPv4 and an IPv6 capture on each interface that exists
    /// (needs CAP_NET_RAW and a tokio runtime); an interface that cannot be
    /// captured on is logged and left out — mDNS from it counts for nobody —
    /// until [`SenderCapture::start`] is called again (links changed).
    pub fn start(interfaces: &[String]) -> SenderCapture {
        let mut sockets = Vec::new();
        for interface in interfaces {
            let both = CaptureSocket::open_port(interface, MDNS_PORT)
                .and_then(|v4| Ok([v4, CaptureSocket::open_port_v6(interface, MDNS_PORT)?]));
            match both {
                Ok(pair) => sockets.extend(pair),
                Err(e) => tracing::error!(
                    error = %crate::firewall::error_chain(&e),
                    interface,
                    "cannot see who sends mDNS answers here; mDNS from this interface counts for no device"
                ),
            }
        }
        let (tx, heard) = mpsc::channel(256);
        let counts = Arc::new(Counts::default());
        let readers = sockets
            .into_iter()
            .map(|socket| tokio::spawn(read(socket, tx.clone(), counts.clone())))
            .collect();
        SenderCapture { heard, counts, readers }
    }

    /// The next response heard; `None` if every reader stopped.
    /// Cancel-safe (a channel receive).
    pub async fn next(&mut self) -> Option<Heard> {
        self.heard.recv().await
    }

    /// (responses read, packets that were not mDNS messages).
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
        let facts = match response_facts(packet) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(_) => {
                counts.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let Some(sender) = sender else { continue };
        counts.responses.fetch_add(1, Ordering::Relaxed);
        if heard.send(Heard { sender, facts }).await.is_err() {
            return;
        }
    }
}
