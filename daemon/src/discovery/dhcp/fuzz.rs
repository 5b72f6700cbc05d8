//! Fuzz entry points, shared by `fuzz/fuzz_targets/*` (cargo-fuzz, nightly) and a
//! stable unit test that runs them over a deterministic corpus. Each panics only
//! on a real bug: a panic in the code under test or a broken invariant.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::capture::parse_client_packet;
use super::dnsmasq::parse_leases;
use super::lease::LeaseEvent;
use super::segment::SegmentConfig;
use super::server::DhcpServer;
use crate::classify::MAX_TEXT;
use crate::config::{Ipv4Range, MacAddr, SegmentId};
use crate::inventory::UnixTime;

/// Start of fuzzed time.
const T0: UnixTime = 1_700_000_000;

/// The server the fuzzer talks to: `lan` with a small pool (so exhaustion and
/// reuse are reachable) and a static lease, and `iot`.
fn fuzz_server() -> Option<DhcpServer> {
    let segment = |name: &str, third: u8, end: u8| -> Option<SegmentConfig> {
        Some(SegmentConfig {
            id: SegmentId::new(name).ok()?,
            interface: format!("br-{name}"),
            server_ip: Ipv4Addr::new(10, 0, third, 1),
            subnet: format!("10.0.{third}.1/24").parse().ok()?,
            pool: Ipv4Range {
                start: Ipv4Addr::new(10, 0, third, 100),
                end: Ipv4Addr::new(10, 0, third, end),
            },
            lease_secs: 120,
            domain: Some("home.arpa".into()),
            dns: vec![],
            static_leases: BTreeMap::from([(MacAddr([2, 0, 0, 0, 0, 0x50]), Ipv4Addr::new(10, 0, third, 50))]),
        })
    };
    Some(DhcpServer::new(
        vec![segment("lan", 1, 103)?, segment("iot", 2, 199)?],
        vec![],
    ))
}

/// Feeds `data` to a fresh server as a sequence of packets: each chunk is
/// `[segment byte, time step, length high, length low, packet...]`, and time
/// steps also run `handle_timeout`. Checks that leases stay consistent.
#[doc(hidden)]
pub fn fuzz_entry_server(data: &[u8]) {
    let Some(mut server) = fuzz_server() else {
        return;
    };
    let ids: Vec<SegmentId> = server.segments().map(|s| s.id.clone()).collect();
    let mut now = T0;
    let mut rest = data;
    while let [seg, step, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (packet, after) = tail.split_at(len);
        rest = after;
        if *step > 0 {
            now += i64::from(*step) * 7;
            for event in server.handle_timeout(now) {
                if let LeaseEvent::Expired(l) = event {
                    assert!(l.expires <= now, "expired early");
                }
            }
        }
        let segment = ids.get(usize::from(*seg) % ids.len().max(1));
        if let Some(segment) = segment {
            let handled = server.handle(segment, packet, now);
            if let Some(reply) = &handled.reply {
                assert!(super::wire::decode(&reply.bytes).is_err(), "a reply is never a request");
                assert!(reply.bytes.len() >= 300);
            }
        }
        check_leases(&server);
    }
    // The whole input once more as a single packet.
    if let Some(segment) = ids.first() {
        server.handle(segment, data, now);
        check_leases(&server);
    }
}

fn check_leases(server: &DhcpServer) {
    let mut seen = std::collections::BTreeSet::new();
    for lease in server.leases() {
        assert!(
            seen.insert((lease.segment.clone(), lease.ip)),
            "two leases on one address"
        );
        let config = server.segments().find(|s| s.id == lease.segment);
        assert!(config.is_some_and(|c| c.subnet.contains(&lease.ip) && c.server_ip != lease.ip));
        assert!(lease.hostname.as_ref().is_none_or(|h| h.len() <= MAX_TEXT));
    }
}

/// Parses `data` as a captured IPv4 packet.
#[doc(hidden)]
pub fn fuzz_entry_capture(data: &[u8]) {
    if let Ok(p) = parse_client_packet(data) {
        assert!(!p.mac.is_multicast());
        assert!(p.evidence.hostname.as_ref().is_none_or(|h| h.len() <= MAX_TEXT));
        assert!(p.evidence.client_id.as_ref().is_none_or(|h| h.len() <= MAX_TEXT));
    }
}

/// Parses `data` (lossily as UTF-8) as a dnsmasq lease file.
#[doc(hidden)]
pub fn fuzz_entry_dnsmasq(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (leases, skipped) = parse_leases(&text);
    assert!(leases.len() + skipped <= text.lines().count());
    for lease in leases {
        assert!(lease.hostname.as_ref().is_none_or(|h| h.len() <= MAX_TEXT));
    }
}

#[cfg(test)]
mod tests {
    use dhcproto::v4::{DhcpOption, MessageType};

    use super::*;
    use crate::discovery::dhcp::capture::tests::frame;
    use crate::discovery::dhcp::wire::tests::client_message;
    use crate::testutil::Rng;

    /// Real client messages to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        let mac = [2, 0, 0, 0, 0, 7];
        let ip = Ipv4Addr::new(10, 0, 1, 100);
        let server = Ipv4Addr::new(10, 0, 1, 1);
        vec![
            client_message(MessageType::Discover, mac, vec![DhcpOption::Hostname("fuzz".into())]),
            client_message(
                MessageType::Request,
                mac,
                vec![DhcpOption::RequestedIpAddress(ip), DhcpOption::ServerIdentifier(server)],
            ),
            client_message(MessageType::Request, mac, vec![DhcpOption::RequestedIpAddress(ip)]),
            client_message(MessageType::Release, mac, vec![DhcpOption::ServerIdentifier(server)]),
            client_message(MessageType::Decline, mac, vec![DhcpOption::RequestedIpAddress(ip)]),
            client_message(
                MessageType::Inform,
                mac,
                vec![DhcpOption::ClientIdentifier(vec![1, 2, 3])],
            ),
        ]
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=rng.below(8) {
            match rng.below(5) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
                1 => v.truncate(rng.below(v.len() + 1)),
                2 => {
                    let n = rng.below(64);
                    let extra = rng.bytes(n);
                    let at = rng.below(v.len() + 1);
                    v.splice(at..at, extra);
                }
                3 if v.len() > 240 => {
                    // Plausible option header somewhere in the options area.
                    let i = 240 + rng.below(v.len() - 240);
                    v[i] = [12, 50, 53, 54, 55, 61, 0, 255][rng.below(8)];
                }
                _ => {}
            }
        }
        v
    }

    /// Packs packets into the server entry's chunk format.
    fn chunks(rng: &mut Rng, packets: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            out.push(rng.next() as u8);
            out.push(if rng.below(4) == 0 { rng.next() as u8 } else { 0 });
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn fuzz_entries_survive_a_deterministic_corpus() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let seeds = seeds();
        for i in 0..20_000 {
            let n = rng.below(700);
            let random = rng.bytes(n);
            let seed = &seeds[i % seeds.len()];
            let mutated = mutate(&mut rng, seed);
            fuzz_entry_capture(&random);
            fuzz_entry_capture(&frame(&mutated));
            fuzz_entry_dnsmasq(&random);
            if i % 4 == 0 {
                fuzz_entry_server(&random);
                let mut exchange: Vec<Vec<u8>> = seeds.clone();
                exchange.push(mutated);
                let data = chunks(&mut rng, &exchange);
                fuzz_entry_server(&data);
            }
        }
        // A dnsmasq-looking corpus too.
        let alphabet: &[u8] = b"0123456789abcdef:. *\n-duid";
        for _ in 0..5_000 {
            let text: Vec<u8> = (0..rng.below(200))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            fuzz_entry_dnsmasq(&text);
        }
    }

    #[test]
    fn the_server_entry_reaches_real_bindings() {
        // A clean DISCOVER/REQUEST exchange through the chunk format binds.
        let s = seeds();
        let mut data = Vec::new();
        for p in &s[..2] {
            data.extend_from_slice(&[0, 0]);
            data.extend_from_slice(&(p.len() as u16).to_be_bytes());
            data.extend_from_slice(p);
        }
        fuzz_entry_server(&data);
        let mut server = fuzz_server().expect("server");
        let lan = SegmentId::new("lan").expect("valid");
        server.handle(&lan, &s[0], T0);
        assert!(server.handle(&lan, &s[1], T0).event.is_some());
    }

    /// Writes the seed corpus under `fuzz/corpus/` (run by hand:
    /// `BULKHEAD_WRITE_FUZZ_SEEDS=1 cargo test -p bulkhead --lib write_fuzz_seeds -- --ignored`).
    #[test]
    #[ignore = "writes files; run by hand to regenerate fuzz/corpus"]
    fn write_fuzz_seeds() {
        if std::env::var_os("BULKHEAD_WRITE_FUZZ_SEEDS").is_none() {
            return;
        }
        let write = crate::testutil::write_fuzz_seed;
        let names = ["discover", "select", "init_reboot", "release", "decline", "inform"];
        let seeds = seeds();
        for (name, seed) in names.iter().zip(&seeds) {
            write("dhcp_capture", name, &frame(seed));
            let mut one = vec![0, 0];
            one.extend_from_slice(&(seed.len() as u16).to_be_bytes());
            one.extend_from_slice(seed);
            write("dhcp_server", name, &one);
        }
        let mut rng = Rng(1);
        write("dhcp_server", "exchange", &chunks(&mut rng, &seeds));
        write(
            "dnsmasq_leases",
            "openwrt",
            b"1700003600 aa:bb:cc:dd:ee:01 192.168.1.23 tv 01:aa:bb:cc:dd:ee:01\n\
              0 02:00:00:00:00:02 192.168.1.5 * *\n\
              duid 00:01:00:01:2b:3c:4d:5e:aa:bb:cc:dd:ee:ff\n\
              1700009999 123456789 fd00::1:23 laptop 00:01:00:01:2b:3c:4d:5e:aa:bb:cc:dd:ee:01\n",
        );
    }
}
