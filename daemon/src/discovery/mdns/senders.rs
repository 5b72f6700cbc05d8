//! PURE: what one captured mDNS response says about the device that sent it.
//!
//! mdns-sd merges every sender's records in one cache and never says who sent
//! an answer, so its resolved services cannot be tied to a device: a plug can
//! announce a printer whose host resolves to the laptop's address, or add a
//! TXT record to the laptop's own instance, and the merged service reads as
//! the laptop's. So evidence is read from the captured packets themselves
//! (`capture.rs`, with the frame's Ethernet source, which the bridge binds to
//! its port), one response at a time: service types and instance names from
//! PTR, SRV and TXT records, host names from SRV targets, TXT keys and values
//! — everything the *sender* said about itself, and it counts for the sender
//! only. The inventory merges the pieces (a TXT in one packet, its SRV in
//! another). The addresses its A/AAAA records give are returned too: a sender
//! giving an address another device holds is speaking for it (a forgery, or a
//! sleep proxy), which the caller tells.
//!
//! Queries are skipped (their known-answer records are the asker's cache of
//! other hosts' records), and so are goodbyes (TTL 0: evidence is history).

use std::net::IpAddr;

use hickory_proto::op::{Header, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::convert::{service_type_of, strip_local};
use crate::classify::{bounded, Evidence, MAX_ITEMS};

/// mDNS's UDP port.
pub const MDNS_PORT: u16 = 5353;
/// Most addresses read from one response.
pub const MAX_RESPONSE_ADDRESSES: usize = 16;

/// What one response says: evidence about its sender, and the addresses it
/// gives for hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    /// Service types, instance and host names, TXT keys and values (bounded);
    /// empty when the response names no service.
    pub evidence: Evidence,
    /// Addresses from its A and AAAA records, sorted, at most
    /// [`MAX_RESPONSE_ADDRESSES`].
    pub addresses: Vec<IpAddr>,
}

/// Why a captured packet was not read. Counted, never logged per packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketDropped {
    /// Not a whole UDP packet to port 5353 (IPv4, or IPv6 without extension
    /// headers).
    #[error("not a whole UDP packet to port 5353")]
    NotUdp,
    /// The UDP payload is not a DNS message hickory accepts.
    #[error("not a DNS message")]
    NotDns,
}

/// Reads one captured IP packet (from its IP header on). `None`: a query, or
/// a response with nothing in it about services or addresses.
pub fn response_facts(ip_packet: &[u8]) -> Result<Option<ResponseFacts>, PacketDropped> {
    let payload = match ip_packet.first().map(|b| b >> 4) {
        Some(4) => crate::discovery::dhcp::udp_payload_to(ip_packet, MDNS_PORT).map_err(|_| PacketDropped::NotUdp)?,
        Some(6) => crate::discovery::dhcp::udp6_payload_to(ip_packet, MDNS_PORT).ok_or(PacketDropped::NotUdp)?,
        _ => return Err(PacketDropped::NotUdp),
    };
    let Some(records) = response_records(payload)? else {
        return Ok(None);
    };
    let mut facts = ResponseFacts::default();
    for record in records.iter().filter(|r| r.ttl > 0) {
        read_record(record, &mut facts);
    }
    facts.addresses.sort();
    facts.addresses.dedup();
    facts.addresses.truncate(MAX_RESPONSE_ADDRESSES);
    Ok((!facts.evidence.is_empty() || !facts.addresses.is_empty()).then_some(facts))
}

/// The records of a response (answer, authority and additional sections in
/// one list); `None` for a query or another op code. Read leniently, as
/// mdns-sd reads: a record with empty data (some devices send an empty TXT
/// that way) is skipped, not the whole message, and a record that cannot be
/// read ends the list with what came before it. (hickory's `Message` rejects
/// the whole message for either.)
fn response_records(payload: &[u8]) -> Result<Option<Vec<Record>>, PacketDropped> {
    let mut decoder = BinDecoder::new(payload);
    let Header { metadata, counts } = Header::read(&mut decoder).map_err(|_| PacketDropped::NotDns)?;
    if metadata.op_code != OpCode::Query || metadata.message_type != MessageType::Response {
        return Ok(None);
    }
    for _ in 0..counts.queries {
        Query::read(&mut decoder).map_err(|_| PacketDropped::NotDns)?;
    }
    let total = usize::from(counts.answers) + usize::from(counts.authorities) + usize::from(counts.additionals);
    let mut records = Vec::with_capacity(total.min(64));
    for _ in 0..total {
        match Record::read(&mut decoder) {
            Ok(r) if matches!(r.data, RData::Update0(_)) => {}
            Ok(r) => records.push(r),
            Err(_) if records.is_empty() => return Err(PacketDropped::NotDns),
            Err(_) => break,
        }
    }
    Ok(Some(records))
}

fn read_record(record: &Record, facts: &mut ResponseFacts) {
    let evidence = &mut facts.evidence;
    match &record.data {
        RData::A(a) => facts.addresses.push(IpAddr::V4(a.0)),
        RData::AAAA(a) => facts.addresses.push(IpAddr::V6(a.0)),
        // `_ipp._tcp.local. PTR Printer._ipp._tcp.local.`
        RData::PTR(target) => {
            if let Some((ty, instance)) = instance_of(&target.0).filter(|(ty, _)| type_is(&record.name, ty)) {
                add_instance(evidence, &ty, &instance);
            }
        }
        // `Printer._ipp._tcp.local. SRV 0 0 631 printer.local.`
        RData::SRV(srv) => {
            if let Some((ty, instance)) = instance_of(&record.name) {
                add_instance(evidence, &ty, &instance);
                let host = text_of(&srv.target);
                let host = strip_local(&host);
                if !host.is_empty() {
                    add_bounded(&mut evidence.mdns_names, bounded(host.as_bytes()));
                }
            }
        }
        // `Printer._ipp._tcp.local. TXT "ty=HP LaserJet" "rp=ipp/print"`
        RData::TXT(txt) => {
            if let Some((ty, instance)) = instance_of(&record.name) {
                add_instance(evidence, &ty, &instance);
                for entry in &txt.txt_data {
                    let (key, value) = match entry.iter().position(|b| *b == b'=') {
                        Some(at) => (&entry[..at], &entry[at + 1..]),
                        None => (&entry[..], &[][..]),
                    };
                    let key = bounded(&key.to_ascii_lowercase());
                    if key.is_empty() || evidence.txt.contains_key(&key) || evidence.txt.len() >= MAX_ITEMS {
                        continue;
                    }
                    evidence.txt.insert(key, bounded(value));
                }
            }
        }
        _ => {}
    }
}

/// `<instance>.<_svc>.<_proto>.local.` → (the type, `_svc._proto`, and the
/// instance label as bounded text), if the type is well formed.
fn instance_of(name: &Name) -> Option<(String, String)> {
    let mut labels = name.iter();
    let instance = labels.next().filter(|l| !l.is_empty())?;
    let rest: Vec<String> = labels.map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let ty = service_type_of(&rest.join(".")).ok()?;
    Some((ty.to_ascii_lowercase(), bounded(instance)))
}

/// Whether a PTR's owner is the type its target's instance is of.
fn type_is(owner: &Name, ty: &str) -> bool {
    service_type_of(&text_of(owner)).is_ok_and(|t| t.eq_ignore_ascii_case(ty))
}

fn text_of(name: &Name) -> String {
    let labels: Vec<String> = name.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    labels.join(".")
}

fn add_instance(evidence: &mut Evidence, ty: &str, instance: &str) {
    add_bounded(&mut evidence.mdns_services, ty.to_string());
    add_bounded(&mut evidence.mdns_names, instance.to_string());
}

fn add_bounded(set: &mut std::collections::BTreeSet<String>, item: String) {
    if set.len() < MAX_ITEMS || set.contains(&item) {
        set.insert(item);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{PTR, SRV, TXT};
    use hickory_proto::rr::RecordType;

    use super::*;

    /// A name with any bytes in its labels (instance names have spaces).
    fn name(s: &str) -> Name {
        let mut n = Name::from_labels(s.trim_end_matches('.').split('.').map(str::as_bytes)).expect("name");
        n.set_fqdn(true);
        n
    }

    fn address() -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, 20)
    }

    /// An announcement of `instance` (a `_ipp._tcp` service) on `host` at `address`.
    fn announcement(instance: &str, host: &str, address: Ipv4Addr) -> Message {
        let mut m = Message::response(0, OpCode::Query);
        let ty = name("_ipp._tcp.local.");
        let inst = name(&format!("{instance}._ipp._tcp.local."));
        let host = name(host);
        m.add_answer(Record::from_rdata(ty, 4500, RData::PTR(PTR(inst.clone()))));
        m.add_additional(Record::from_rdata(
            inst.clone(),
            120,
            RData::SRV(SRV::new(0, 0, 631, host.clone())),
        ));
        m.add_additional(Record::from_rdata(
            inst,
            4500,
            RData::TXT(TXT::new(vec![
                "TY=HP LaserJet".into(),
                "rp=ipp/print".into(),
                "ty=second".into(),
            ])),
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

    fn facts(m: &Message) -> Option<ResponseFacts> {
        response_facts(&ipv4(&m.to_vec().expect("encode"))).expect("read")
    }

    #[test]
    fn a_response_is_evidence_about_its_sender_over_either_ip() {
        let m = announcement("Office Printer", "printer.local.", address());
        let bytes = m.to_vec().expect("encode");
        let read = response_facts(&ipv4(&bytes)).expect("read").expect("facts");
        assert_eq!(read.evidence.mdns_services, ["_ipp._tcp".to_string()].into());
        assert_eq!(
            read.evidence.mdns_names,
            ["Office Printer".to_string(), "printer".to_string()].into()
        );
        // Keys lower-cased, the first of a key wins.
        assert_eq!(read.evidence.txt.get("ty").map(String::as_str), Some("HP LaserJet"));
        assert_eq!(read.evidence.txt.get("rp").map(String::as_str), Some("ipp/print"));
        assert_eq!(read.addresses, vec![IpAddr::V4(address())]);
        assert_eq!(response_facts(&ipv6(&bytes)), Ok(Some(read)));
    }

    #[test]
    fn every_section_counts_and_goodbyes_and_queries_do_not() {
        // A TXT for an instance in the authority section: the sender's words too.
        let mut m = Message::response(0, OpCode::Query);
        m.add_authority(Record::from_rdata(
            name("Anna's Laptop._ssh._tcp.local."),
            120,
            RData::TXT(TXT::new(vec!["md=Chromecast".into()])),
        ));
        let read = facts(&m).expect("facts");
        assert_eq!(read.evidence.txt.get("md").map(String::as_str), Some("Chromecast"));
        assert!(read.evidence.mdns_services.contains("_ssh._tcp"));

        let mut goodbye = announcement("P", "p.local.", address());
        for r in goodbye.answers.iter_mut().chain(goodbye.additionals.iter_mut()) {
            r.ttl = 0;
        }
        assert_eq!(facts(&goodbye), None);

        let mut query = announcement("P", "p.local.", address());
        query.metadata.message_type = MessageType::Query;
        query.add_query(Query::query(name("_ipp._tcp.local."), RecordType::PTR));
        assert_eq!(facts(&query), None, "known answers are the asker's cache");
    }

    #[test]
    fn an_empty_record_or_a_cut_tail_loses_only_itself() {
        let m = announcement("Office Printer", "printer.local.", address());
        let mut bytes = m.to_vec().expect("encode");
        // The TXT record's data cut to nothing (RDLENGTH 0), the records
        // after it intact: hickory's Message would reject all of it.
        let txt = bytes
            .windows(4)
            .position(|w| w == [0, 16, 0, 1])
            .expect("the TXT record's type and class");
        let rdlength = txt + 8;
        let len = usize::from(u16::from_be_bytes([bytes[rdlength], bytes[rdlength + 1]]));
        bytes.drain(rdlength + 2..rdlength + 2 + len);
        bytes[rdlength..rdlength + 2].copy_from_slice(&[0, 0]);
        let read = response_facts(&ipv4(&bytes)).expect("read").expect("facts");
        assert!(read.evidence.txt.is_empty());
        assert!(read.evidence.mdns_names.contains("printer"), "the SRV before it");
        assert_eq!(read.addresses, vec![IpAddr::V4(address())], "the A after it");
        // A tail that cannot be read: what came before counts.
        let whole = m.to_vec().expect("encode");
        let cut = response_facts(&ipv4(&whole[..whole.len() - 3]))
            .expect("read")
            .expect("facts");
        assert!(cut.evidence.mdns_services.contains("_ipp._tcp") && cut.addresses.is_empty());
    }

    #[test]
    fn malformed_names_and_packets_are_dropped_never_a_panic() {
        // A PTR whose target is not an instance of its owner's type, a
        // malformed type, the DNS-SD meta-query: no evidence.
        let mut m = Message::response(0, OpCode::Query);
        m.add_answer(Record::from_rdata(
            name("_ipp._tcp.local."),
            120,
            RData::PTR(PTR(name("X._http._tcp.local."))),
        ));
        m.add_answer(Record::from_rdata(
            name("X._not a type._tcp.local."),
            120,
            RData::TXT(TXT::new(vec!["a=b".into()])),
        ));
        m.add_answer(Record::from_rdata(
            name("_services._dns-sd._udp.local."),
            120,
            RData::PTR(PTR(name("_ipp._tcp.local."))),
        ));
        assert_eq!(facts(&m), None);

        let bytes = announcement("P", "p.local.", address()).to_vec().expect("encode");
        let good = ipv4(&bytes);
        for len in 0..good.len() {
            let _ = response_facts(&good[..len]);
        }
        assert_eq!(response_facts(&good[..28]), Err(PacketDropped::NotUdp));
        assert_eq!(response_facts(&ipv4(b"\x00\x01")), Err(PacketDropped::NotDns));
        let six = ipv6(&bytes);
        for len in 0..six.len() {
            let _ = response_facts(&six[..len]);
        }
        let mut other_port = six.clone();
        other_port[43] = 0x35;
        assert_eq!(response_facts(&other_port), Err(PacketDropped::NotUdp));
        assert_eq!(response_facts(&[0x50; 60]), Err(PacketDropped::NotUdp));
    }

    #[test]
    fn a_hostile_response_is_bounded() {
        let mut m = Message::response(0, OpCode::Query);
        for i in 0..40 {
            let inst = name(&format!("n{i}\u{202e}<b>._t{i}._tcp.local."));
            let txt: Vec<String> = (0..36).map(|k| format!("k{i}x{k}={}", "v".repeat(20))).collect();
            m.add_answer(Record::from_rdata(inst, 120, RData::TXT(TXT::new(txt))));
        }
        for i in 0..100u32 {
            m.add_additional(Record::from_rdata(
                name("h.local."),
                120,
                RData::A(Ipv4Addr::from(0x0a00_0000 + i).into()),
            ));
        }
        let read = facts(&m).expect("facts");
        assert!(read.evidence.mdns_services.len() <= MAX_ITEMS);
        assert!(read.evidence.mdns_names.len() <= MAX_ITEMS);
        assert!(read.evidence.txt.len() <= MAX_ITEMS);
        assert!(read.evidence.txt.values().all(|v| v.len() <= crate::classify::MAX_TEXT));
        assert_eq!(read.addresses.len(), MAX_RESPONSE_ADDRESSES);
        assert!(
            read.evidence.mdns_names.iter().any(|n| n.contains('\u{202e}')),
            "kept as data"
        );
    }
}
