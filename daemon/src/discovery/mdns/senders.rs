//! PURE: who announced what over mDNS.
//!
//! mdns-sd resolves services from every answer it hears and merges them in
//! one cache, but never says who sent an answer: a plug can announce a
//! service whose host name resolves to the laptop's address, or add a TXT
//! record to the laptop's own instance. So the same packets are also captured
//! (`capture.rs`: the frame's Ethernet source, which the bridge binds to its
//! port) and each response's claims are written here, per sender: the names
//! its SRV, TXT, A and AAAA records are for, and the addresses its A and AAAA
//! records give. An observation counts for the device holding its address
//! only if that device announced the address, the instance and the host name
//! itself, and nobody else announced those names lately ([`SenderBook::check`]).
//!
//! Queries are not claims (their known-answer records are the asker's cache
//! of other hosts' records) and are skipped.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::{Name, RData};

use crate::config::MacAddr;
use crate::inventory::UnixTime;

/// mDNS's UDP port.
pub const MDNS_PORT: u16 = 5353;
/// How long a claim counts: past the wait for an address holder (a minute)
/// and a record's usual re-announcement (hosts' records live 120 s), short
/// enough that a name passing to a new MAC (a phone's new private address)
/// is contested only for a while.
pub const CLAIM_SECS: UnixTime = 600;
/// Most claims kept in all (older ones go first).
pub const MAX_CLAIMS: usize = 4096;
/// Most claims kept per sender: one device cannot crowd out the others.
pub const MAX_CLAIMS_PER_SENDER: usize = 64;
/// Most claims read from one packet.
pub const MAX_CLAIMS_PER_PACKET: usize = 64;

/// Something an mDNS response says is its sender's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claim {
    /// An address an A or AAAA record gives.
    Address(IpAddr),
    /// A name an SRV, TXT, A or AAAA record is for: an instance
    /// (`living room tv._googlecast._tcp.local`) or a host
    /// (`livingroom-tv.local`), in [`claim_name`]'s spelling.
    Name(String),
}

/// Why a captured packet gave no claims. Counted, never logged per packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketDropped {
    /// Not a whole UDP packet to port 5353 (IPv4 or IPv6).
    #[error("not a whole UDP packet to port 5353")]
    NotUdp,
    /// The UDP payload is not a DNS message.
    #[error("not a DNS message")]
    NotDns,
}

/// The claims of one captured IP packet (from its IP header on): empty for
/// a query. Bounded to [`MAX_CLAIMS_PER_PACKET`].
pub fn claims_of(ip_packet: &[u8]) -> Result<Vec<Claim>, PacketDropped> {
    let payload = match ip_packet.first().map(|b| b >> 4) {
        Some(4) => crate::discovery::dhcp::udp_payload_to(ip_packet, MDNS_PORT).map_err(|_| PacketDropped::NotUdp)?,
        Some(6) => udp6_payload_to(ip_packet, MDNS_PORT).ok_or(PacketDropped::NotUdp)?,
        _ => return Err(PacketDropped::NotUdp),
    };
    let message = Message::from_vec(payload).map_err(|_| PacketDropped::NotDns)?;
    if message.metadata.op_code != OpCode::Query || message.metadata.message_type != MessageType::Response {
        return Ok(Vec::new());
    }
    let mut claims: Vec<Claim> = Vec::new();
    for record in message.answers.iter().chain(message.additionals.iter()) {
        let address = match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            RData::SRV(_) | RData::TXT(_) => None,
            _ => continue,
        };
        claims.push(Claim::Name(claim_name_of(&record.name)));
        claims.extend(address.map(Claim::Address));
    }
    claims.sort();
    claims.dedup();
    claims.truncate(MAX_CLAIMS_PER_PACKET);
    Ok(claims)
}

/// A DNS name as claims spell it: labels as text joined by `.`, ASCII
/// lower-cased, no trailing dot — as mdns-sd spells a full name or host
/// name, after the same folding.
pub fn claim_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn claim_name_of(name: &Name) -> String {
    let labels: Vec<String> = name.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    claim_name(&labels.join("."))
}

/// The UDP payload of an IPv6 packet whose header is followed directly by a
/// UDP header to `port` (no extension headers).
fn udp6_payload_to(p: &[u8], port: u16) -> Option<&[u8]> {
    if p.first()? >> 4 != 6 || *p.get(6)? != 17 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]));
    let udp = p.get(40..40usize.checked_add(payload_len)?)?;
    let dst = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dst != port || udp_len < 8 || udp_len > udp.len() {
        return None;
    }
    udp.get(8..udp_len)
}

/// What [`SenderBook::check`] found for one observation and the device
/// holding its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The holder announced the address and the names; nobody else the names.
    Own,
    /// The holder has not (yet) been heard announcing all of it: the capture
    /// may be a moment behind mdns-sd; wait.
    NotHeard,
    /// Another device announced one of the names lately: the observation may
    /// mix its records with the holder's. It counts for nobody.
    Contested {
        /// Who else announced it.
        by: MacAddr,
    },
}

/// Claims heard lately, by sender. Bounded: [`MAX_CLAIMS`] in all,
/// [`MAX_CLAIMS_PER_SENDER`] per sender, each for [`CLAIM_SECS`].
#[derive(Debug, Default, Clone)]
pub struct SenderBook {
    heard: HashMap<(Claim, MacAddr), UnixTime>,
    per_sender: HashMap<MacAddr, usize>,
    changes: u64,
}

impl SenderBook {
    /// `sender` claimed these at `now`.
    pub fn record(&mut self, sender: MacAddr, claims: &[Claim], now: UnixTime) {
        for claim in claims {
            let key = (claim.clone(), sender);
            if let Some(at) = self.heard.get_mut(&key) {
                *at = now;
                continue;
            }
            if self.per_sender.get(&sender).copied().unwrap_or(0) >= MAX_CLAIMS_PER_SENDER {
                self.forget_oldest(|s| *s == sender);
            }
            if self.heard.len() >= MAX_CLAIMS {
                self.heard.retain(|_, at| now - *at < CLAIM_SECS);
                self.recount();
                if self.heard.len() >= MAX_CLAIMS {
                    self.forget_oldest(|_| true);
                }
            }
            self.heard.insert(key, now);
            *self.per_sender.entry(sender).or_default() += 1;
        }
        self.changes += 1;
    }

    /// Grows each time something is recorded: pending observations are
    /// checked again when it moved.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// How many claims are kept.
    pub fn len(&self) -> usize {
        self.heard.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.heard.is_empty()
    }

    /// Who claimed `claim` within [`CLAIM_SECS`] of `now`.
    pub fn claimed_by(&self, claim: &Claim, now: UnixTime) -> Vec<MacAddr> {
        let mut by: Vec<MacAddr> = self
            .heard
            .iter()
            .filter(|((c, _), at)| c == claim && now - **at < CLAIM_SECS)
            .map(|((_, m), _)| *m)
            .collect();
        by.sort();
        by
    }

    /// May an observation naming `names` (its instance and host, any
    /// spelling mdns-sd gives) count for `holder`, which holds `address`?
    pub fn check(&self, names: &[String], address: IpAddr, holder: MacAddr, now: UnixTime) -> Check {
        let mut heard_all = self.claimed_by(&Claim::Address(address), now).contains(&holder);
        for name in names {
            let by = self.claimed_by(&Claim::Name(claim_name(name)), now);
            if let Some(other) = by.iter().find(|m| **m != holder) {
                return Check::Contested { by: *other };
            }
            heard_all &= by.contains(&holder);
        }
        if heard_all {
            Check::Own
        } else {
            Check::NotHeard
        }
    }

    fn forget_oldest(&mut self, of: impl Fn(&MacAddr) -> bool) {
        let oldest = self
            .heard
            .iter()
            .filter(|((_, m), _)| of(m))
            .min_by_key(|(_, at)| **at)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            self.heard.remove(&key);
            if let Some(n) = self.per_sender.get_mut(&key.1) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_sender.remove(&key.1);
                }
            }
        }
    }

    fn recount(&mut self) {
        self.per_sender.clear();
        for (_, m) in self.heard.keys() {
            *self.per_sender.entry(*m).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::{SRV, TXT};
    use hickory_proto::rr::{Record, RecordType};

    use super::*;

    const PLUG: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const LAPTOP: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 2]);

    /// A name with any bytes in its labels (instance names have spaces).
    fn name(s: &str) -> Name {
        let mut n = Name::from_labels(s.trim_end_matches('.').split('.').map(str::as_bytes)).expect("name");
        n.set_fqdn(true);
        n
    }

    /// An announcement of `instance` (a `_ipp._tcp` service) on `host` at `address`.
    fn announcement(instance: &str, host: &str, address: Ipv4Addr) -> Message {
        let mut m = Message::response(0, OpCode::Query);
        let ty = name("_ipp._tcp.local.");
        let inst = name(&format!("{instance}._ipp._tcp.local."));
        let host = name(host);
        m.add_answer(Record::from_rdata(
            ty,
            4500,
            RData::PTR(hickory_proto::rr::rdata::PTR(inst.clone())),
        ));
        m.add_additional(Record::from_rdata(
            inst.clone(),
            120,
            RData::SRV(SRV::new(0, 0, 631, host.clone())),
        ));
        m.add_additional(Record::from_rdata(
            inst,
            4500,
            RData::TXT(TXT::new(vec!["ty=Printer".into()])),
        ));
        m.add_additional(Record::from_rdata(host, 120, RData::A(address.into())));
        m
    }

    /// `payload` in IPv4/UDP to 224.0.0.251:5353.
    fn ipv4(payload: &[u8]) -> Vec<u8> {
        let udp_len = (8 + payload.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 255, 17, 0, 0, 10, 0, 0, 9, 224, 0, 0, 251];
        p[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        p.extend_from_slice(&5353u16.to_be_bytes());
        p.extend_from_slice(&5353u16.to_be_bytes());
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    /// `payload` in IPv6/UDP to [ff02::fb]:5353.
    fn ipv6(payload: &[u8]) -> Vec<u8> {
        let udp_len = (8 + payload.len()) as u16;
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[17, 255]);
        p.extend_from_slice(&"fe80::9".parse::<Ipv6Addr>().expect("v6").octets());
        p.extend_from_slice(&"ff02::fb".parse::<Ipv6Addr>().expect("v6").octets());
        p.extend_from_slice(&5353u16.to_be_bytes());
        p.extend_from_slice(&5353u16.to_be_bytes());
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn laptop_ip() -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, 20)
    }

    #[test]
    fn a_response_claims_its_instance_host_and_address_over_either_ip() {
        let m = announcement("Office Printer", "printer.local.", laptop_ip());
        let bytes = m.to_vec().expect("encode");
        let want = vec![
            Claim::Address(IpAddr::V4(laptop_ip())),
            Claim::Name("office printer._ipp._tcp.local".into()),
            Claim::Name("printer.local".into()),
        ];
        assert_eq!(claims_of(&ipv4(&bytes)), Ok(want.clone()));
        assert_eq!(claims_of(&ipv6(&bytes)), Ok(want));
    }

    #[test]
    fn a_query_with_known_answers_claims_nothing() {
        let mut m = announcement("Office Printer", "printer.local.", laptop_ip());
        m.metadata.message_type = MessageType::Query;
        m.add_query(Query::query(name("_ipp._tcp.local."), RecordType::PTR));
        assert_eq!(claims_of(&ipv4(&m.to_vec().expect("encode"))), Ok(Vec::new()));
    }

    #[test]
    fn malformed_packets_are_dropped_never_a_panic() {
        let bytes = announcement("P", "p.local.", laptop_ip()).to_vec().expect("encode");
        let good = ipv4(&bytes);
        for len in 0..good.len() {
            let _ = claims_of(&good[..len]);
        }
        assert_eq!(claims_of(&good[..28]), Err(PacketDropped::NotUdp));
        assert_eq!(claims_of(&ipv4(b"\x00\x01")), Err(PacketDropped::NotDns));
        let six = ipv6(&bytes);
        for len in 0..six.len() {
            let _ = claims_of(&six[..len]);
        }
        let mut other_port = six.clone();
        other_port[43] = 0x35;
        assert_eq!(claims_of(&other_port), Err(PacketDropped::NotUdp));
        assert_eq!(claims_of(&[0x50; 60]), Err(PacketDropped::NotUdp));
    }

    fn claims(instance: &str, host: &str, address: Ipv4Addr) -> Vec<Claim> {
        claims_of(&ipv4(&announcement(instance, host, address).to_vec().expect("encode"))).expect("claims")
    }

    fn names(instance: &str, host: &str) -> Vec<String> {
        // As mdns-sd spells them: full name and host name, case as sent.
        vec![format!("{instance}._ipp._tcp.local."), host.to_string()]
    }

    #[test]
    fn only_the_holder_announcing_its_own_records_counts() {
        let ip = IpAddr::V4(laptop_ip());
        let mut book = SenderBook::default();
        let laptop_names = names("Anna's Laptop", "annas-laptop.local.");
        assert_eq!(book.check(&laptop_names, ip, LAPTOP, 100), Check::NotHeard);
        book.record(
            LAPTOP,
            &claims("Anna's Laptop", "annas-laptop.local.", laptop_ip()),
            100,
        );
        assert_eq!(book.check(&laptop_names, ip, LAPTOP, 101), Check::Own);

        // The plug announces a printer on a host of its own naming the
        // laptop's address: the laptop never announced those names.
        book.record(PLUG, &claims("Printer", "evil.local.", laptop_ip()), 102);
        assert_eq!(
            book.check(&names("Printer", "evil.local."), ip, LAPTOP, 103),
            Check::Contested { by: PLUG }
        );
        // ... or on the laptop's own host name: contested, for everything
        // of that host, until the plug's claim is old.
        book.record(PLUG, &claims("Printer", "annas-laptop.local.", laptop_ip()), 104);
        assert_eq!(
            book.check(&laptop_names, ip, LAPTOP, 105),
            Check::Contested { by: PLUG }
        );
        book.record(
            LAPTOP,
            &claims("Anna's Laptop", "annas-laptop.local.", laptop_ip()),
            104 + CLAIM_SECS,
        );
        assert_eq!(book.check(&laptop_names, ip, LAPTOP, 104 + CLAIM_SECS), Check::Own);
        // Heard too long ago is not heard.
        assert_eq!(
            book.check(&laptop_names, ip, LAPTOP, 104 + 2 * CLAIM_SECS),
            Check::NotHeard
        );
    }

    #[test]
    fn the_book_is_bounded_per_sender_and_in_all() {
        let mut book = SenderBook::default();
        book.record(LAPTOP, &claims("Anna's Laptop", "annas-laptop.local.", laptop_ip()), 1);
        for i in 0..10_000u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            book.record(PLUG, &[Claim::Address(IpAddr::V4(ip))], 2 + UnixTime::from(i));
        }
        assert!(book.len() <= MAX_CLAIMS_PER_SENDER + 3, "{}", book.len());
        let names = names("Anna's Laptop", "annas-laptop.local.");
        assert_eq!(
            book.check(&names, IpAddr::V4(laptop_ip()), LAPTOP, 3),
            Check::Own,
            "the plug crowded the laptop out"
        );
        for i in 0..10_000u32 {
            let mut mac = [0x02, 0xaa, 0, 0, 0, 0];
            mac[2..].copy_from_slice(&i.to_be_bytes());
            book.record(
                MacAddr(mac),
                &[Claim::Name(format!("n{i}"))],
                10_000 + UnixTime::from(i),
            );
        }
        assert!(book.len() <= MAX_CLAIMS);
    }
}
