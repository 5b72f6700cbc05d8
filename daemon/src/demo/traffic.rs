//! The demo's devices at work: every host talks to "the internet" now and then,
//! the way a phone checks mail or a camera uploads a clip, so what the web UI
//! shows moves: last seen, online, the VPN's transfer counters.
//!
//! Each host gets one thread that entered its namespace (its sockets are the
//! host's own), opening a short TCP exchange with the banner on port 80 and a
//! UDP echo on port 7 of [`INTERNET_V4`](bulkhead_netns::home::INTERNET_V4),
//! every `period` with a per-host offset. Tunnelled devices also reach the
//! canary, so the leak watch's "arrived through the tunnel" counter grows too.
//! A quarantined device tries as well and gets nowhere: that is the point.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{vpn, DemoHome, HOSTS};

/// How long one exchange may take before the host gives up on it.
const EXCHANGE_TIMEOUT: Duration = Duration::from_millis(800);
/// How often a chatting thread looks at the stop flag while it waits.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The running chatter. Dropping it stops every host's thread (within about
/// [`STOP_CHECK`] plus one exchange).
pub struct Chatter {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<bulkhead_netns::Result<()>>>,
    exchanges: Arc<AtomicU64>,
}

impl Chatter {
    /// Exchanges completed so far (all hosts): a test that the chatter works.
    pub fn completed(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }
}

impl Drop for Chatter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl DemoHome {
    /// Starts the chatter: every host of [`HOSTS`] talks to the internet every
    /// `period`; `tunnelled` hosts also to the VPN canary.
    pub fn start_chatter(&self, period: Duration, tunnelled: &[&str]) -> anyhow::Result<Chatter> {
        let stop = Arc::new(AtomicBool::new(false));
        let exchanges = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        let internet = bulkhead_netns::home::INTERNET_V4;
        for (i, h) in HOSTS.iter().enumerate() {
            let mut tcp = vec![SocketAddr::from((internet, 80))];
            let mut udp = vec![SocketAddr::from((internet, 7))];
            if tunnelled.contains(&h.name) {
                tcp.push(SocketAddr::from((vpn::CANARY_V4, vpn::CANARY_TCP)));
                udp.push(SocketAddr::from((vpn::CANARY_V4, vpn::CANARY_UDP)));
            }
            // Spread the hosts over the period, so the internet sees a trickle.
            let offset = period.mul_f64(i as f64 / HOSTS.len() as f64);
            let (stop, exchanges) = (stop.clone(), exchanges.clone());
            let ns = self.home.ns(h.name)?;
            threads.push(ns.spawn_thread(&format!("chatter {}", h.name), move || {
                let mut next = Instant::now() + offset;
                while !stop.load(Ordering::SeqCst) {
                    if Instant::now() < next {
                        std::thread::sleep(STOP_CHECK.min(next - Instant::now()));
                        continue;
                    }
                    next += period;
                    for to in &tcp {
                        if tcp_exchange(*to) {
                            exchanges.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for to in &udp {
                        if udp_exchange(*to) {
                            exchanges.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })?);
        }
        Ok(Chatter {
            stop,
            threads,
            exchanges,
        })
    }
}

/// Connects, reads the banner to its end; whether it all worked.
fn tcp_exchange(to: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&to, EXCHANGE_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(EXCHANGE_TIMEOUT));
    let mut banner = Vec::new();
    s.read_to_end(&mut banner).is_ok() && !banner.is_empty()
}

/// Sends a datagram and waits for the echo; whether it came back.
fn udp_exchange(to: SocketAddr) -> bool {
    let Ok(s) = UdpSocket::bind(("0.0.0.0", 0)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(EXCHANGE_TIMEOUT));
    let msg = b"bulkhead demo: still here";
    if s.send_to(msg, to).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.recv_from(&mut buf), Ok((n, from)) if from == to && &buf[..n] == msg)
}
