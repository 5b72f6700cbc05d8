//! The proxy's state machine, with hand-built mDNS messages (hickory-proto
//! writes them as avahi would) and explicit time.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::proxy::{Action, Proxy, SegmentInfo, MAX_INSTANCES_PER_ADDRESS};
use super::rules::Sharing;
use crate::config::{parse_port_range, MacAddr, ServiceType, ShareRule, ZoneId};
use crate::core::{DeviceSnapshot, InventorySnapshot};

const LAN: usize = 0;
const IOT: usize = 1;
const LAPTOP: [u8; 4] = [10, 0, 1, 10];
const TV: [u8; 4] = [10, 0, 2, 30];
const PLUG: [u8; 4] = [10, 0, 2, 20];
const GUEST: [u8; 4] = [10, 0, 1, 77];

fn zone(n: &str) -> ZoneId {
    ZoneId::new(n).expect("test data")
}

fn device(last: u8, zone_name: &str, ip: [u8; 4]) -> DeviceSnapshot {
    crate::testutil::device_snapshot(MacAddr([2, 0, 0, 0, 0, last]), zone_name, IpAddr::from(ip))
}

fn home() -> InventorySnapshot {
    let mut inv = InventorySnapshot {
        unknown_zone: Some(zone("quarantine")),
        ..Default::default()
    };
    for d in [
        device(10, "trusted", LAPTOP),
        device(30, "iot", TV),
        device(20, "iot", PLUG),
        device(77, "guest", GUEST),
    ] {
        inv.patch(d.mac, Some(d));
    }
    inv
}

/// The laptop's segment (LAN) and the TV's (IOT).
fn segments() -> Vec<SegmentInfo> {
    vec![
        SegmentInfo {
            interface: "br-lan".into(),
            ipv4: "10.0.1.0/24".parse().expect("test data"),
        },
        SegmentInfo {
            interface: "br-iot".into(),
            ipv4: "10.0.2.0/24".parse().expect("test data"),
        },
    ]
}

fn proxy() -> Proxy {
    let sharing = Sharing::new(vec![ShareRule {
        name: "chromecast".into(),
        services: [ServiceType::new("_googlecast._tcp").expect("test data")].into(),
        ports: vec![parse_port_range("tcp/8008-8009").expect("test data")],
        ssdp: ["urn:dial-multiscreen-org:service:dial:1".to_string()].into(),
        from: [zone("iot")].into(),
        to: [zone("trusted")].into(),
        homeowner: false,
    }]);
    Proxy::new(sharing, segments())
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test data")
}

/// What avahi sends when it announces a service: PTR, SRV, TXT, A.
fn announcement(service: &str, instance: &str, host: &str, port: u16, addr: [u8; 4], ttl: u32) -> Vec<u8> {
    let inst = name(&format!("{instance}.{service}.local."));
    let host = name(host);
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.add_answer(Record::from_rdata(
        name(&format!("{service}.local.")),
        ttl,
        RData::PTR(PTR(inst.clone())),
    ));
    m.add_answer(Record::from_rdata(
        inst.clone(),
        ttl,
        RData::SRV(SRV::new(0, 0, port, host.clone())),
    ));
    m.add_answer(Record::from_rdata(
        inst,
        ttl,
        RData::TXT(TXT::new(vec!["md=Chromecast".into()])),
    ));
    m.add_answer(Record::from_rdata(
        host,
        ttl,
        RData::A(std::net::Ipv4Addr::from(addr).into()),
    ));
    m.to_vec().expect("test data")
}

fn question(service: &str, unicast: bool) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    let mut q = Query::query(name(&format!("{service}.local.")), RecordType::PTR);
    q.mdns_unicast_response = unicast;
    m.add_query(q);
    m.to_vec().expect("test data")
}

fn from(ip: [u8; 4]) -> SocketAddr {
    SocketAddr::from((ip, 5353))
}

fn sends(actions: &[Action]) -> Vec<(usize, SocketAddr, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { segment, to, packet } => {
                Some((*segment, *to, Message::from_vec(packet).expect("test data")))
            }
            _ => None,
        })
        .collect()
}

fn opened(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Open {
                zone,
                pinholes,
                ttl_secs,
            } => Some(
                pinholes
                    .iter()
                    .map(|p| format!("{zone}: {p} ({ttl_secs}s)"))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

fn cast_announcement(ttl: u32) -> Vec<u8> {
    announcement("_googlecast._tcp", "Chromecast-4f3a9c", "tv.local.", 8009, TV, ttl)
}

#[test]
fn a_shared_announcement_opens_pinholes_and_is_announced_to_the_consumers_only() {
    let (mut p, inv) = (proxy(), home());
    let actions = p.on_packet(IOT, from(TV), &cast_announcement(120), &inv, 1000);
    assert_eq!(
        opened(&actions),
        [
            "trusted: 10.0.2.30 . tcp . 8008 (120s)",
            "trusted: 10.0.2.30 . tcp . 8009 (120s)"
        ]
    );
    let out = sends(&actions);
    assert_eq!(out.len(), 1, "announced once, on the laptop's segment: {out:?}");
    let (segment, to, m) = &out[0];
    assert_eq!((*segment, to.to_string().as_str()), (LAN, "224.0.0.251:5353"));
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m
        .answers
        .iter()
        .any(|r| matches!(&r.data, RData::SRV(s) if s.port == 8009)));
    assert!(m
        .answers
        .iter()
        .any(|r| matches!(&r.data, RData::A(a) if a.0 == std::net::Ipv4Addr::from(TV))));
    assert_eq!(p.counters().instances, 1);
}

#[test]
fn the_consumer_gets_answers_and_the_provider_side_and_other_zones_get_none() {
    let (mut p, inv) = (proxy(), home());
    p.on_packet(IOT, from(TV), &cast_announcement(120), &inv, 1000);
    // The laptop (trusted) asks: a multicast answer on its segment.
    let out = sends(&p.on_packet(LAN, from(LAPTOP), &question("_googlecast._tcp", false), &inv, 1001));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.to_string(), "224.0.0.251:5353");
    assert!(out[0]
        .2
        .answers
        .iter()
        .any(|r| matches!(&r.data, RData::PTR(PTR(n)) if n.to_ascii().starts_with("Chromecast-4f3a9c"))));
    // A guest on the same segment asks: nothing shared to guest, no answer.
    assert!(sends(&p.on_packet(LAN, from(GUEST), &question("_googlecast._tcp", false), &inv, 1002)).is_empty());
    // The plug, in the providing zone and segment, asks: no echo of the TV's own records.
    assert!(sends(&p.on_packet(IOT, from(PLUG), &question("_googlecast._tcp", false), &inv, 1003)).is_empty());
    // A type that is not shared: no answer.
    assert!(sends(&p.on_packet(LAN, from(LAPTOP), &question("_sonos._tcp", false), &inv, 1004)).is_empty());
}

#[test]
fn legacy_unicast_and_qu_questions_get_unicast_answers() {
    let (mut p, inv) = (proxy(), home());
    p.on_packet(IOT, from(TV), &cast_announcement(120), &inv, 1000);
    let mut q = Message::from_vec(&question("_googlecast._tcp", false)).expect("test data");
    q.metadata.id = 0x4242;
    let legacy = SocketAddr::from((LAPTOP, 40000));
    let out = sends(&p.on_packet(LAN, legacy, &q.to_vec().expect("test data"), &inv, 1001));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, legacy, "straight back to the asking port");
    assert_eq!(out[0].2.metadata.id, 0x4242, "the legacy querier's id");
    assert_eq!(out[0].2.queries.len(), 1, "the question echoed");
    assert!(out[0].2.answers.iter().all(|r| r.ttl <= 10), "legacy TTLs are capped");
    let out = sends(&p.on_packet(LAN, from(LAPTOP), &question("_googlecast._tcp", true), &inv, 1002));
    assert_eq!(out[0].1, SocketAddr::from((LAPTOP, 5353)), "QU: unicast to the querier");
}

#[test]
fn a_device_cannot_announce_for_another_or_from_outside_the_providing_zone() {
    let (mut p, inv) = (proxy(), home());
    // The plug announces a "Chromecast" at the laptop's address.
    let forged = announcement("_googlecast._tcp", "Evil", "evil.local.", 8009, LAPTOP, 120);
    let actions = p.on_packet(IOT, from(PLUG), &forged, &inv, 1000);
    assert_eq!(
        opened(&actions),
        [
            "trusted: 10.0.2.20 . tcp . 8008 (120s)",
            "trusted: 10.0.2.20 . tcp . 8009 (120s)"
        ],
        "the pinhole is to the sender itself, never the address it named"
    );
    assert_eq!(p.counters().foreign_addresses, 1);
    // The laptop (trusted) announces a Chromecast: trusted shares nothing.
    let actions = p.on_packet(LAN, from(LAPTOP), &cast_announcement(120), &inv, 1001);
    assert!(actions.is_empty(), "{actions:?}");
    // An address no device holds.
    let actions = p.on_packet(IOT, from([10, 0, 2, 99]), &cast_announcement(120), &inv, 1002);
    assert!(actions.is_empty());
    assert_eq!(p.counters().unknown_sender, 1);
}

#[test]
fn goodbye_and_expiry_close_the_pinholes() {
    let (mut p, inv) = (proxy(), home());
    p.on_packet(IOT, from(TV), &cast_announcement(120), &inv, 1000);
    let bye = p.on_packet(IOT, from(TV), &cast_announcement(0), &inv, 1010);
    assert!(bye.contains(&Action::Close {
        address: IpAddr::from(TV)
    }));
    let goodbyes = sends(&bye);
    assert_eq!(goodbyes.len(), 1);
    assert!(
        goodbyes[0].2.answers.iter().all(|r| r.ttl == 0),
        "a goodbye to the consumers"
    );
    assert_eq!(p.counters().instances, 0);

    p.on_packet(IOT, from(TV), &cast_announcement(120), &inv, 2000);
    assert!(!p.tick(&inv, 2100).contains(&Action::Close {
        address: IpAddr::from(TV)
    }));
    assert!(p.tick(&inv, 2120).contains(&Action::Close {
        address: IpAddr::from(TV)
    }));
    assert_eq!(p.counters().instances, 0);
}

#[test]
fn a_device_that_moves_zone_loses_its_share() {
    let (mut p, mut inv) = (proxy(), home());
    p.on_packet(IOT, from(TV), &cast_announcement(120), &inv, 1000);
    let mut tv = inv.device_at(IpAddr::from(TV)).expect("test data").clone();
    tv.zone = zone("quarantine");
    inv.patch(tv.mac, Some(tv));
    assert!(p.tick(&inv, 1001).contains(&Action::Close {
        address: IpAddr::from(TV)
    }));
}

#[test]
fn floods_are_bounded_and_garbage_is_counted() {
    let (mut p, inv) = (proxy(), home());
    for i in 0..100 {
        let a = announcement("_googlecast._tcp", &format!("cast-{i}"), "tv.local.", 8009, TV, 120);
        p.on_packet(IOT, from(TV), &a, &inv, 1000);
    }
    assert_eq!(p.counters().instances, MAX_INSTANCES_PER_ADDRESS as u64);
    assert!(p.counters().cache_full > 0);
    for junk in [
        &b""[..],
        &[0xff; 3],
        &[0u8; 12][..],
        &[0x00, 0x00, 0x84, 0x00, 0x00, 0x00, 0x00, 0xff],
    ] {
        p.on_packet(IOT, from(TV), junk, &inv, 1001);
    }
    assert!(p.counters().malformed >= 3, "{:?}", p.counters());
    for _ in 0..100 {
        p.on_packet(LAN, from(LAPTOP), &question("_googlecast._tcp", true), &inv, 1002);
    }
    assert!(p.counters().rate_limited >= 80, "{:?}", p.counters());
}

#[test]
fn a_question_with_nothing_cached_asks_the_other_segments() {
    let (mut p, inv) = (proxy(), home());
    let out = sends(&p.on_packet(LAN, from(LAPTOP), &question("_googlecast._tcp", false), &inv, 1000));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, IOT);
    assert_eq!(out[0].2.metadata.message_type, MessageType::Query);
    // Not again within a few seconds.
    assert!(sends(&p.on_packet(LAN, from(LAPTOP), &question("_googlecast._tcp", false), &inv, 1001)).is_empty());
}

fn ssdp_proxy() -> super::ssdp::SsdpProxy {
    super::ssdp::SsdpProxy::new(
        Sharing::new(vec![ShareRule {
            name: "dlna".into(),
            services: Default::default(),
            ports: Vec::new(),
            ssdp: ["urn:schemas-upnp-org:device:mediaserver:1".to_string()].into(),
            from: [zone("iot")].into(),
            to: [zone("trusted")].into(),
            homeowner: false,
        }]),
        segments(),
    )
}

fn notify(nts: &str, location: &str) -> Vec<u8> {
    format!(
        "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=60\r\nLOCATION: {location}\r\n\
         NT: urn:schemas-upnp-org:device:MediaServer:1\r\nNTS: {nts}\r\nSERVER: Debian/12 DLNADOC/1.50 UPnP/1.0 MiniDLNA/1.3.0\r\n\
         USN: uuid:4d696e69-444c-164e-9d41-000000000030::urn:schemas-upnp-org:device:MediaServer:1\r\n\r\n"
    )
    .into_bytes()
}

fn search(st: &str) -> Vec<u8> {
    format!("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n")
        .into_bytes()
}

#[test]
fn ssdp_answers_the_consumers_searches_with_the_devices_own_location() {
    let (mut p, inv) = (ssdp_proxy(), home());
    let actions = p.on_packet(
        IOT,
        SocketAddr::from((TV, 1900)),
        &notify("ssdp:alive", "http://10.0.2.30:8200/rootDesc.xml"),
        &inv,
        1000,
    );
    assert_eq!(opened(&actions), ["trusted: 10.0.2.30 . tcp . 8200 (60s)"]);
    let cp = SocketAddr::from((LAPTOP, 50000));
    let answers = p.on_packet(LAN, cp, &search("ssdp:all"), &inv, 1010);
    let [Action::Send { segment, to, packet }] = answers.as_slice() else {
        panic!("one answer: {answers:?}")
    };
    assert_eq!((*segment, *to), (LAN, cp), "unicast back to the control point");
    let text = String::from_utf8_lossy(packet);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("LOCATION: http://10.0.2.30:8200/rootDesc.xml\r\n"),
        "{text}"
    );
    assert!(text.contains("CACHE-CONTROL: max-age=50\r\n"), "the time left: {text}");
    // Not for the guest, not for a target that is not shared, not in the provider's segment.
    assert!(p
        .on_packet(LAN, SocketAddr::from((GUEST, 50000)), &search("ssdp:all"), &inv, 1011)
        .is_empty());
    assert!(p
        .on_packet(
            LAN,
            cp,
            &search("urn:schemas-upnp-org:device:MediaRenderer:1"),
            &inv,
            1012
        )
        .iter()
        .all(|a| !matches!(a, Action::Send { segment: LAN, .. })));
    assert!(p
        .on_packet(IOT, SocketAddr::from((PLUG, 50000)), &search("ssdp:all"), &inv, 1013)
        .is_empty());
    // Byebye closes the pinhole.
    let bye = p.on_packet(
        IOT,
        SocketAddr::from((TV, 1900)),
        &notify("ssdp:byebye", "http://10.0.2.30:8200/rootDesc.xml"),
        &inv,
        1020,
    );
    assert!(bye.contains(&Action::Close {
        address: IpAddr::from(TV)
    }));
    assert_eq!(p.counters().entries, 0);
}

#[test]
fn ssdp_location_must_be_the_sender() {
    let (mut p, inv) = (ssdp_proxy(), home());
    // The plug announces a media server whose description is on the laptop.
    let forged = p.on_packet(
        IOT,
        SocketAddr::from((PLUG, 1900)),
        &notify("ssdp:alive", "http://10.0.1.10:22/x"),
        &inv,
        1000,
    );
    assert!(forged.is_empty(), "{forged:?}");
    assert_eq!(p.counters().foreign_locations, 1);
    let named = p.on_packet(
        IOT,
        SocketAddr::from((TV, 1900)),
        &notify("ssdp:alive", "http://evil.example:8200/x"),
        &inv,
        1000,
    );
    assert!(named.is_empty());
    // Expiry closes it.
    p.on_packet(
        IOT,
        SocketAddr::from((TV, 1900)),
        &notify("ssdp:alive", "http://10.0.2.30:8200/x"),
        &inv,
        2000,
    );
    assert!(p.tick(&inv, 2060).contains(&Action::Close {
        address: IpAddr::from(TV)
    }));
}

#[test]
fn an_instance_past_half_its_life_is_asked_for_again_in_its_own_segment() {
    let (mut p, inv) = (proxy(), home());
    p.tick(&inv, 1000); // the first browse of every segment
    p.on_packet(IOT, from(TV), &cast_announcement(100), &inv, 1000);
    assert!(sends(&p.tick(&inv, 1030)).is_empty(), "not yet");
    let asked = sends(&p.tick(&inv, 1050));
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].0, IOT, "where the TV lives");
    assert_eq!(asked[0].2.metadata.message_type, MessageType::Query);
    // The laptop's segment may still be asked on a consumer's question.
    let out = sends(&p.on_packet(LAN, from(LAPTOP), &question("_sonos._tcp", false), &inv, 1062));
    assert!(out.is_empty(), "not shared: nothing asked");
}
