//! Server state machine tests: whole exchanges, bytes in and bytes out.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use super::*;
use crate::config::{Ipv4Range, MacAddr, SegmentId};
use crate::discovery::dhcp::segment::{NEWCOMERS_PER_SEC, NEWCOMER_BURST};
use crate::discovery::dhcp::{DECLINE_HOLD_SECS, OFFER_HOLD_SECS};
use crate::inventory::UnixTime;

const T0: UnixTime = 1_700_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const STATIC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xaa, 0xaa]);
const STATIC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 50);
const BROADCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, last)
}

fn seg(name: &str) -> SegmentId {
    SegmentId::new(name).expect("valid")
}

fn lan() -> SegmentConfig {
    SegmentConfig {
        id: seg("lan"),
        interface: "br-lan".into(),
        server_ip: SERVER,
        subnet: "10.0.1.1/24".parse().expect("net"),
        pool: Ipv4Range {
            start: ip(100),
            end: ip(102),
        },
        lease_secs: 3600,
        domain: Some("home.arpa".into()),
        dns: vec![],
        static_leases: BTreeMap::from([(STATIC_MAC, STATIC_IP)]),
    }
}

fn iot() -> SegmentConfig {
    SegmentConfig {
        id: seg("iot"),
        interface: "br-iot".into(),
        server_ip: Ipv4Addr::new(10, 0, 2, 1),
        subnet: "10.0.2.0/24".parse().expect("net"),
        pool: Ipv4Range {
            start: Ipv4Addr::new(10, 0, 2, 100),
            end: Ipv4Addr::new(10, 0, 2, 199),
        },
        lease_secs: 600,
        domain: None,
        dns: vec![Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(1, 1, 1, 1)],
        static_leases: BTreeMap::new(),
    }
}

fn server() -> DhcpServer {
    DhcpServer::new(vec![lan(), iot()], vec![])
}

/// A simulated client.
#[derive(Clone)]
struct Client {
    mac: MacAddr,
    id: Option<Vec<u8>>,
    hostname: Option<String>,
}

fn client(n: u8) -> Client {
    Client {
        mac: MacAddr([0x02, 0, 0, 0, 0, n]),
        id: None,
        hostname: Some(format!("host{n}")),
    }
}

impl Client {
    fn message(&self, kind: MessageType, ciaddr: Ipv4Addr, options: Vec<DhcpOption>) -> Vec<u8> {
        let mut m = Message::default();
        m.set_chaddr(&self.mac.0).set_xid(0xfeed).set_ciaddr(ciaddr);
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::DomainNameServer,
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainName,
        ]));
        if let Some(id) = &self.id {
            opts.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if let Some(h) = &self.hostname {
            opts.insert(DhcpOption::Hostname(h.clone()));
        }
        for o in options {
            opts.insert(o);
        }
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).expect("encode");
        buf
    }
    fn discover(&self, requested: Option<Ipv4Addr>) -> Vec<u8> {
        let opts = requested.map(DhcpOption::RequestedIpAddress).into_iter().collect();
        self.message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, opts)
    }
    fn select(&self, addr: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
        let opts = vec![
            DhcpOption::RequestedIpAddress(addr),
            DhcpOption::ServerIdentifier(server),
        ];
        self.message(MessageType::Request, Ipv4Addr::UNSPECIFIED, opts)
    }
    fn init_reboot(&self, addr: Ipv4Addr) -> Vec<u8> {
        let opts = vec![DhcpOption::RequestedIpAddress(addr)];
        self.message(MessageType::Request, Ipv4Addr::UNSPECIFIED, opts)
    }
    fn renew(&self, ciaddr: Ipv4Addr) -> Vec<u8> {
        self.message(MessageType::Request, ciaddr, vec![])
    }
    fn release(&self, ciaddr: Ipv4Addr) -> Vec<u8> {
        self.message(MessageType::Release, ciaddr, vec![DhcpOption::ServerIdentifier(SERVER)])
    }
    fn decline(&self, addr: Ipv4Addr) -> Vec<u8> {
        let opts = vec![
            DhcpOption::RequestedIpAddress(addr),
            DhcpOption::ServerIdentifier(SERVER),
        ];
        self.message(MessageType::Decline, Ipv4Addr::UNSPECIFIED, opts)
    }
    fn inform(&self, ciaddr: Ipv4Addr) -> Vec<u8> {
        self.message(MessageType::Inform, ciaddr, vec![])
    }
}

fn decode(reply: &Reply) -> Message {
    Message::decode(&mut Decoder::new(&reply.bytes)).expect("reply decodes")
}

fn kind(reply: &Reply) -> MessageType {
    decode(reply).opts().msg_type().expect("message type")
}

/// DISCOVER → OFFER → REQUEST → ACK on `lan`; returns the address.
fn dora(s: &mut DhcpServer, c: &Client, now: UnixTime) -> Ipv4Addr {
    let lan = seg("lan");
    let offer = s.handle(&lan, &c.discover(None), now).reply.expect("offer");
    assert_eq!(kind(&offer), MessageType::Offer);
    let offered = decode(&offer).yiaddr();
    let h = s.handle(&lan, &c.select(offered, SERVER), now);
    let ack = h.reply.expect("ack");
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(decode(&ack).yiaddr(), offered);
    assert!(matches!(h.event, Some(LeaseEvent::Bound(ref l)) if l.ip == offered && l.mac == c.mac));
    offered
}

fn lease_of(s: &DhcpServer, mac: MacAddr) -> Option<Lease> {
    s.leases().find(|l| l.mac == mac).cloned()
}

#[test]
fn full_dora_binds_and_reports() {
    let mut s = server();
    let c = client(1);
    let lan = seg("lan");
    let h = s.handle(&lan, &c.discover(None), T0);
    let offer = h.reply.expect("offer");
    assert_eq!(offer.to, BROADCAST);
    let m = decode(&offer);
    assert_eq!(m.yiaddr(), ip(100));
    assert_eq!(m.xid(), 0xfeed);
    assert_eq!(m.chaddr(), c.mac.0);
    assert_eq!(h.event, None);
    let (mac, evidence) = h.evidence.expect("evidence from a DISCOVER");
    assert_eq!(mac, c.mac);
    assert_eq!(evidence.hostname.as_deref(), Some("host1"));
    assert_eq!(evidence.dhcp_params, Some(vec![6, 1, 3, 15]));

    assert_eq!(dora(&mut s, &c, T0), ip(100));
    let lease = lease_of(&s, c.mac).expect("lease");
    assert_eq!(lease.expires, T0 + 3600);
    assert_eq!(lease.hostname.as_deref(), Some("host1"));
    assert_eq!(lease.segment, lan);
    let n = s.counters(&lan).expect("counters");
    assert_eq!((n.discovers, n.offers, n.requests, n.acks), (2, 2, 1, 1));
    assert_eq!(n.malformed + n.ignored + n.naks, 0);
}

#[test]
fn reply_options_are_all_there_in_the_asked_order() {
    let mut s = server();
    let c = client(1);
    let offer = s.handle(&seg("lan"), &c.discover(None), T0).reply.expect("offer");
    let m = decode(&offer);
    let o = m.opts();
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(o.get(OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![SERVER]))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("home.arpa".into()))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(o.get(OptionCode::Rebinding), Some(&DhcpOption::Rebinding(3150)));
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    // Raw order: type, server id, then the client's 6, 1, 3, 15.
    let mut codes = Vec::new();
    let mut rest = &offer.bytes[240..];
    while let [code, len, tail @ ..] = rest {
        if *code == 255 {
            break;
        }
        codes.push(*code);
        rest = &tail[usize::from(*len)..];
    }
    assert_eq!(&codes[..6], &[53, 54, 6, 1, 3, 15]);
    assert!(offer.bytes.len() >= 300);

    // Configured DNS servers on iot; no domain there.
    let offer = s.handle(&seg("iot"), &c.discover(None), T0).reply.expect("offer");
    let m = decode(&offer);
    assert_eq!(
        m.opts().get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![
            Ipv4Addr::new(9, 9, 9, 9),
            Ipv4Addr::new(1, 1, 1, 1)
        ]))
    );
    assert_eq!(m.opts().get(OptionCode::DomainName), None);
}

#[test]
fn renew_and_rebind_extend_the_lease() {
    let mut s = server();
    let c = client(1);
    let lan = seg("lan");
    let a = dora(&mut s, &c, T0);
    let h = s.handle(&lan, &c.renew(a), T0 + 1800);
    let ack = h.reply.expect("ack");
    assert_eq!(ack.to, SocketAddrV4::new(a, 68), "unicast to ciaddr");
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(decode(&ack).ciaddr(), a);
    assert!(matches!(h.event, Some(LeaseEvent::Bound(ref l)) if l.expires == T0 + 1800 + 3600));
    // Rebinding looks the same on the wire (broadcast instead of unicast).
    let h = s.handle(&lan, &c.renew(a), T0 + 3200);
    assert_eq!(kind(&h.reply.expect("ack")), MessageType::Ack);
    assert_eq!(lease_of(&s, c.mac).expect("lease").expires, T0 + 3200 + 3600);
    // Hostname kept when a renewal does not send it.
    let quiet = Client {
        hostname: None,
        ..c.clone()
    };
    s.handle(&lan, &quiet.renew(a), T0 + 3300);
    assert_eq!(lease_of(&s, c.mac).expect("lease").hostname.as_deref(), Some("host1"));
}

#[test]
fn renewing_someone_elses_address_is_refused() {
    let mut s = server();
    let lan = seg("lan");
    let a = dora(&mut s, &client(1), T0);
    let reply = s.handle(&lan, &client(2).renew(a), T0).reply.expect("nak");
    assert_eq!(kind(&reply), MessageType::Nak);
    assert_eq!(reply.to, BROADCAST);
    assert_eq!(lease_of(&s, client(1).mac).expect("still there").ip, a);
}

#[test]
fn init_reboot_acks_own_address_and_naks_others() {
    let mut s = server();
    let lan = seg("lan");
    let c1 = client(1);
    let a = dora(&mut s, &c1, T0);
    let h = s.handle(&lan, &c1.init_reboot(a), T0 + 10);
    assert_eq!(kind(h.reply.as_ref().expect("ack")), MessageType::Ack);
    assert_eq!(h.reply.expect("ack").to, BROADCAST);
    // Wrong subnet (moved from another network).
    let h = s.handle(&lan, &c1.init_reboot(Ipv4Addr::new(192, 168, 1, 7)), T0 + 10);
    assert_eq!(kind(&h.reply.expect("nak")), MessageType::Nak);
    assert_eq!(h.event, None);
    // Someone else's address.
    let h = s.handle(&lan, &client(2).init_reboot(a), T0 + 10);
    assert_eq!(kind(&h.reply.expect("nak")), MessageType::Nak);
    // In the subnet but outside the pool, and the server's own address.
    for addr in [ip(20), SERVER, STATIC_IP] {
        let h = s.handle(&lan, &client(2).init_reboot(addr), T0 + 10);
        assert_eq!(kind(&h.reply.expect("nak")), MessageType::Nak, "{addr}");
    }
    // A free pool address is granted (authoritative, e.g. after losing the store).
    let h = s.handle(&lan, &client(2).init_reboot(ip(102)), T0 + 10);
    assert_eq!(kind(&h.reply.expect("ack")), MessageType::Ack);
    assert_eq!(s.counters(&lan).expect("counters").naks, 5);
}

#[test]
fn request_for_another_server_forgets_our_offer_silently() {
    let mut s = server();
    let lan = seg("lan");
    let c1 = client(1);
    let offer = s.handle(&lan, &c1.discover(None), T0).reply.expect("offer");
    let offered = decode(&offer).yiaddr();
    let h = s.handle(
        &lan,
        &c1.select(Ipv4Addr::new(10, 0, 1, 254), Ipv4Addr::new(10, 0, 1, 254)),
        T0,
    );
    assert_eq!((h.reply, h.event), (None, None));
    assert!(h.evidence.is_some());
    // The address is free again at once.
    let offer = s.handle(&lan, &client(2).discover(None), T0).reply.expect("offer");
    assert_eq!(decode(&offer).yiaddr(), offered);
}

#[test]
fn release_frees_and_the_address_is_reused() {
    let mut s = server();
    let lan = seg("lan");
    let (c1, c2, c3, c4) = (client(1), client(2), client(3), client(4));
    let a = dora(&mut s, &c1, T0);
    dora(&mut s, &c2, T0);
    dora(&mut s, &c3, T0);
    assert!(
        s.handle(&lan, &c4.discover(None), T0).reply.is_none(),
        "pool of 3 is full"
    );
    // A release from someone else is ignored.
    let h = s.handle(&lan, &c2.release(a), T0 + 5);
    assert_eq!(h.event, None);
    let h = s.handle(&lan, &c1.release(a), T0 + 5);
    assert!(h.reply.is_none());
    assert!(matches!(h.event, Some(LeaseEvent::Released(ref l)) if l.ip == a && l.mac == c1.mac));
    assert!(lease_of(&s, c1.mac).is_none());
    assert_eq!(dora(&mut s, &c4, T0 + 6), a);
    let n = s.counters(&lan).expect("counters");
    assert_eq!((n.releases, n.ignored, n.pool_exhausted), (2, 1, 1));
}

#[test]
fn a_returning_client_gets_its_old_address_back() {
    let mut s = server();
    let lan = seg("lan");
    let c1 = client(1);
    dora(&mut s, &client(9), T0);
    let a = dora(&mut s, &c1, T0);
    s.handle(&lan, &c1.release(a), T0 + 1);
    // A newcomer gets a fresh address, not c1's old one...
    assert_ne!(dora(&mut s, &client(2), T0 + 2), a);
    // ...and c1 gets its own back.
    assert_eq!(dora(&mut s, &c1, T0 + 3), a);
}

#[test]
fn decline_rests_the_address_and_counts() {
    let mut s = server();
    let lan = seg("lan");
    let c1 = client(1);
    let a = dora(&mut s, &c1, T0);
    let h = s.handle(&lan, &c1.decline(a), T0 + 1);
    assert!(h.reply.is_none());
    assert_eq!(
        h.event,
        Some(LeaseEvent::Declined {
            segment: lan.clone(),
            mac: c1.mac,
            ip: a
        })
    );
    assert!(lease_of(&s, c1.mac).is_none());
    // The address is not offered again while it rests, not even when asked for.
    let offer = s.handle(&lan, &c1.discover(Some(a)), T0 + 2).reply.expect("offer");
    assert_ne!(decode(&offer).yiaddr(), a);
    let h = s.handle(&lan, &client(2).init_reboot(a), T0 + 2);
    assert_eq!(kind(&h.reply.expect("nak")), MessageType::Nak);
    // Declining an address one does not hold does nothing.
    let h = s.handle(&lan, &client(3).decline(ip(102)), T0 + 2);
    assert_eq!(h.event, None);
    s.handle_timeout(T0 + 2 + DECLINE_HOLD_SECS);
    let offer = s
        .handle(&lan, &client(4).discover(Some(a)), T0 + 3 + DECLINE_HOLD_SECS)
        .reply
        .expect("offer");
    assert_eq!(decode(&offer).yiaddr(), a);
    let n = s.counters(&lan).expect("counters");
    assert_eq!((n.declines, n.ignored), (2, 1));
}

#[test]
fn inform_acks_options_without_a_lease() {
    let mut s = server();
    let lan = seg("lan");
    let c = client(1);
    let h = s.handle(&lan, &c.inform(ip(30)), T0);
    let ack = h.reply.expect("ack");
    assert_eq!(ack.to, SocketAddrV4::new(ip(30), 68));
    let m = decode(&ack);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.ciaddr(), ip(30));
    assert_eq!(m.opts().get(OptionCode::AddressLeaseTime), None);
    assert_eq!(
        m.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![SERVER]))
    );
    assert_eq!(h.event, None);
    assert_eq!(s.leases().count(), 0);
    let n = s.counters(&lan).expect("counters");
    assert_eq!((n.informs, n.acks), (1, 1));
}

#[test]
fn client_identifier_is_the_identity() {
    let mut s = server();
    let lan = seg("lan");
    let phone = Client {
        id: Some(b"\x01phone".to_vec()),
        ..client(1)
    };
    let a = dora(&mut s, &phone, T0);
    // Same identifier, new (randomised) MAC: same lease, new MAC recorded.
    let moved = Client {
        mac: MacAddr([0x06, 1, 2, 3, 4, 5]),
        ..phone.clone()
    };
    let offer = s.handle(&lan, &moved.discover(None), T0 + 1).reply.expect("offer");
    assert_eq!(decode(&offer).yiaddr(), a);
    assert_eq!(
        decode(&offer).opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(b"\x01phone".to_vec())),
        "echoed (RFC 6842)"
    );
    let h = s.handle(&lan, &moved.renew(a), T0 + 2);
    assert!(matches!(h.event, Some(LeaseEvent::Bound(ref l)) if l.ip == a && l.mac == moved.mac));
    assert_eq!(s.leases().count(), 1);
    // Another identifier on the old MAC is another client.
    let twin = Client {
        id: Some(b"\x01other".to_vec()),
        ..client(1)
    };
    let b = dora(&mut s, &twin, T0 + 3);
    assert_ne!(a, b);
    let h = s.handle(&lan, &twin.renew(a), T0 + 4);
    assert_eq!(kind(&h.reply.expect("nak")), MessageType::Nak);
    assert_eq!(s.leases().count(), 2);
}

#[test]
fn static_lease_always_goes_to_its_mac() {
    let mut s = server();
    let lan = seg("lan");
    let printer = Client {
        mac: STATIC_MAC,
        id: None,
        hostname: Some("printer".into()),
    };
    // Even when it asks for something else.
    let offer = s
        .handle(&lan, &printer.discover(Some(ip(101))), T0)
        .reply
        .expect("offer");
    assert_eq!(decode(&offer).yiaddr(), STATIC_IP);
    assert_eq!(dora(&mut s, &printer, T0), STATIC_IP);
    let h = s.handle(&lan, &printer.init_reboot(ip(101)), T0);
    assert_eq!(
        kind(&h.reply.expect("nak")),
        MessageType::Nak,
        "its address is the static one"
    );
    // Nobody else gets it.
    let h = s.handle(&lan, &client(1).init_reboot(STATIC_IP), T0);
    assert_eq!(kind(&h.reply.expect("nak")), MessageType::Nak);
}

#[test]
fn exhaustion_is_counted_and_other_segments_are_unaffected() {
    let mut s = server();
    let (lan, iot) = (seg("lan"), seg("iot"));
    for n in 1..=3 {
        dora(&mut s, &client(n), T0);
    }
    let h = s.handle(&lan, &client(4).discover(None), T0);
    assert!(h.reply.is_none());
    assert!(h.evidence.is_some(), "evidence even without an answer");
    assert!(h.pool_exhausted, "the outcome says so (the core's alert)");
    assert_eq!(s.counters(&lan).expect("counters").pool_exhausted, 1);
    let h = s.handle(&iot, &client(4).discover(None), T0);
    assert!(!h.pool_exhausted);
    let offer = h.reply.expect("iot still answers");
    assert_eq!(decode(&offer).yiaddr(), Ipv4Addr::new(10, 0, 2, 100));
    assert_eq!(s.counters(&iot).expect("counters").pool_exhausted, 0);
}

#[test]
fn offers_expire() {
    let mut s = server();
    let lan = seg("lan");
    for n in 1..=3 {
        s.handle(&lan, &client(n).discover(None), T0).reply.expect("offer");
    }
    // All held: the offer waiting longest for its REQUEST is taken back.
    let reclaimed = s.handle(&lan, &client(4).discover(None), T0 + 1).reply.expect("offer");
    assert_eq!(decode(&reclaimed).yiaddr(), ip(100), "client 1's offer");
    assert_eq!(s.counters(&lan).map(|c| c.offers_reclaimed), Some(1));
    assert_eq!(s.poll_timeout(), Some(T0 + OFFER_HOLD_SECS));
    assert!(
        s.handle_timeout(T0 + OFFER_HOLD_SECS + 1).is_empty(),
        "no event for offers"
    );
    assert_eq!(s.poll_timeout(), None);
    assert!(s.handle(&lan, &client(5).discover(None), T0 + 62).reply.is_some());
}

#[test]
fn a_flood_of_forged_discovers_starves_nobody() {
    let mut s = server();
    let lan = seg("lan");
    // A known client (it had an address before) and a real newcomer.
    let known = client(1);
    let a = dora(&mut s, &known, T0);
    let newcomer = client(2);
    // 1,000 DISCOVERs a second with fresh forged MACs, for 10 seconds.
    let forged = |n: u32| {
        let mut c = client(3);
        let b = n.to_be_bytes();
        c.mac = MacAddr([0x02, 0xee, b[0], b[1], b[2], b[3]]);
        c
    };
    let mut offered_to_flood = 0;
    let mut newcomer_offer = None;
    for second in 0..10 {
        let now = T0 + 10 + second;
        for i in 0..1000 {
            let h = s.handle(&lan, &forged(second as u32 * 1000 + i).discover(None), now);
            assert_eq!(
                h.reply.is_some(),
                h.evidence.is_some(),
                "a refused DISCOVER brings no device"
            );
            if h.reply.is_some() {
                offered_to_flood += 1;
            }
        }
        // The known client renews and is answered, whatever the flood.
        let h = s.handle(&lan, &known.renew(a), now);
        assert_eq!(kind(&h.reply.expect("ack")), MessageType::Ack, "second {second}");
        // The newcomer asks every two seconds, like a real client.
        if second % 2 == 0 && newcomer_offer.is_none() {
            newcomer_offer = s.handle(&lan, &newcomer.discover(None), now).reply;
        }
    }
    assert!(newcomer_offer.is_some(), "the real newcomer got an offer on its retry");
    let c = s.counters(&lan).expect("counters");
    assert!(
        offered_to_flood <= (NEWCOMER_BURST + 10 * NEWCOMERS_PER_SEC) as usize,
        "the flood got {offered_to_flood} offers"
    );
    assert!(c.throttled >= 9_000, "{c:?}");
    // Bounded: offers never exceed the pool, forgotten refusals are bounded.
    assert!(s.leases().count() <= 3);
}

#[test]
fn leases_expire_via_handle_timeout() {
    let mut s = server();
    let lan = seg("lan");
    let c1 = client(1);
    let a = dora(&mut s, &c1, T0);
    assert!(s.handle_timeout(T0 + 3599).is_empty());
    assert_eq!(s.poll_timeout(), Some(T0 + 3600));
    let events = s.handle_timeout(T0 + 3600);
    assert!(matches!(events.as_slice(), [LeaseEvent::Expired(l)] if l.ip == a && l.mac == c1.mac));
    assert_eq!(s.leases().count(), 0);
    // An expired binding is free for a renewal only if still free: here it is.
    let h = s.handle(&lan, &c1.renew(a), T0 + 3700);
    assert_eq!(kind(&h.reply.expect("ack")), MessageType::Ack);
}

#[test]
fn restart_from_leases_keeps_the_same_address() {
    let mut s = server();
    let lan = seg("lan");
    let c = client(2);
    dora(&mut s, &client(1), T0);
    let a = dora(&mut s, &c, T0);
    let stored: Vec<Lease> = s.leases().cloned().collect();
    let json = serde_json::to_string(&stored).expect("serialize");
    let restored: Vec<Lease> = serde_json::from_str(&json).expect("deserialize");
    let mut s = DhcpServer::new(vec![self::lan(), iot()], restored);
    assert_eq!(s.leases().count(), 2);
    let offer = s.handle(&lan, &c.discover(None), T0 + 100).reply.expect("offer");
    assert_eq!(decode(&offer).yiaddr(), a);
    let h = s.handle(&lan, &c.renew(a), T0 + 100);
    assert_eq!(kind(&h.reply.expect("ack")), MessageType::Ack);
    let h = s.handle(&lan, &client(3).init_reboot(a), T0 + 100);
    assert_eq!(kind(&h.reply.expect("nak")), MessageType::Nak);
}

#[test]
fn reconfigure_keeps_leases_that_still_fit() {
    let mut s = server();
    let c1 = client(1);
    let c2 = client(2);
    let a1 = dora(&mut s, &c1, T0);
    let a2 = dora(&mut s, &c2, T0);
    let mut narrower = lan();
    narrower.pool.end = a1;
    let dropped = s.reconfigure(vec![narrower]);
    // c2's address left the pool; iot is gone (it had no leases).
    assert_eq!(dropped.iter().map(|l| l.ip).collect::<Vec<_>>(), vec![a2]);
    assert_eq!(s.leases().map(|l| l.ip).collect::<Vec<_>>(), vec![a1]);
    assert!(s.counters(&seg("iot")).is_none());
    assert_eq!(s.counters(&seg("lan")).expect("kept").acks, 2);
    // A new static lease for another MAC evicts a dynamic lease on that address.
    let mut pinned = lan();
    pinned.static_leases.insert(client(7).mac, a1);
    let dropped = s.reconfigure(vec![pinned]);
    assert_eq!(dropped.len(), 1);
    assert_eq!(s.leases().count(), 0);
}

#[test]
fn relayed_and_server_messages_are_ignored() {
    let mut s = server();
    let lan = seg("lan");
    let c = client(1);
    let mut relayed = c.discover(None);
    relayed[24..28].copy_from_slice(&[10, 9, 9, 9]); // giaddr
    let h = s.handle(&lan, &relayed, T0);
    assert!(h.reply.is_none());
    let offer_from_a_client = c.message(MessageType::Offer, Ipv4Addr::UNSPECIFIED, vec![]);
    assert!(s.handle(&lan, &offer_from_a_client, T0).reply.is_none());
    let unknown = c.message(MessageType::Unknown(200), Ipv4Addr::UNSPECIFIED, vec![]);
    assert!(s.handle(&lan, &unknown, T0).reply.is_none());
    let n = s.counters(&lan).expect("counters");
    assert_eq!((n.discovers, n.ignored, n.offers), (1, 3, 0));
    // Unknown segment: nothing, and no counters appear.
    assert_eq!(s.handle(&seg("guest"), &c.discover(None), T0), Handled::default());
    assert!(s.counters(&seg("guest")).is_none());
}

#[test]
fn malformed_inputs_are_counted_never_a_panic() {
    let mut s = server();
    let lan = seg("lan");
    let good = client(1).select(ip(100), SERVER);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    // Every proper prefix that cuts into the fixed part or an option.
    for len in 0..good.len() {
        inputs.push(good[..len].to_vec());
    }
    let mut wrong_op = good.clone();
    wrong_op[0] = 2;
    let mut wrong_hlen = good.clone();
    wrong_hlen[2] = 200;
    let mut garbage = vec![0u8; 600];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let mut huge = good[..240].to_vec();
    huge.extend_from_slice(&[53, 1, 1]);
    for _ in 0..250 {
        huge.extend_from_slice(&[12, 255]);
        huge.extend_from_slice(&[b'x'; 255]);
    }
    let mut huge_id = good[..240].to_vec();
    huge_id.extend_from_slice(&[53, 1, 1]);
    for _ in 0..200 {
        huge_id.extend_from_slice(&[61, 255]);
        huge_id.extend_from_slice(&[7; 255]);
    }
    let mut multicast = good.clone();
    multicast[28] = 0x01;
    inputs.extend([wrong_op, wrong_hlen, garbage, huge_id, multicast]);
    let mut malformed = 0;
    for input in &inputs {
        let h = s.handle(&lan, input, T0);
        if h.evidence.is_none() {
            malformed += 1;
            assert_eq!(h, Handled::default());
        }
    }
    assert_eq!(s.counters(&lan).expect("counters").malformed, malformed);
    // Only the prefixes that keep every option whole (cut after End, in the
    // padding) decode.
    assert!(malformed >= 240 + 5);
    // Huge but well-formed options: fine, and the hostname is bounded.
    let h = s.handle(&lan, &huge, T0);
    let (_, e) = h.evidence.expect("valid");
    assert_eq!(e.hostname.map(|h| h.len()), Some(crate::classify::MAX_TEXT));
    assert!(s
        .leases()
        .all(|l| l.hostname.as_ref().is_none_or(|h| h.len() <= crate::classify::MAX_TEXT)));
}

#[test]
fn hostnames_are_bounded_in_leases() {
    let mut s = server();
    let c = Client {
        hostname: Some("ü".repeat(200)),
        ..client(1)
    };
    dora(&mut s, &c, T0);
    let h = lease_of(&s, c.mac).and_then(|l| l.hostname).expect("hostname");
    assert!(h.len() <= crate::classify::MAX_TEXT && h.chars().all(|ch| ch == 'ü'));
}

#[test]
fn a_clock_jump_moves_leases_with_it_but_not_a_previous_runs_leases() {
    let mut s = server();
    let c1 = client(1);
    let a = dora(&mut s, &c1, T0);
    // A lease the store kept from a run whose clock was a year ahead.
    let year = 365 * 24 * 3600;
    let mut from_before = lease_of(&s, c1.mac).expect("bound");
    from_before.mac = client(2).mac;
    from_before.ip = ip(101);
    from_before.expires = T0 + year + 7200;
    let mut s = DhcpServer::new(
        vec![lan(), iot()],
        [s.leases().cloned().collect::<Vec<_>>(), vec![from_before]].concat(),
    );
    // NTP steps the clock a year forward 100 s after the lease was bound.
    let before = T0 + 100;
    let moved = s.shift_deadlines(year, &|t| crate::clock::deadline_moves(t, before));
    assert_eq!(moved.len(), 2);
    let now = before + year;
    assert!(s.handle_timeout(now).is_empty(), "no lease ends because of the jump");
    assert_eq!(
        lease_of(&s, c1.mac).map(|l| l.expires),
        Some(T0 + 3600 + year),
        "it kept what it had left"
    );
    assert_eq!(
        lease_of(&s, client(2).mac).map(|l| l.expires),
        Some(T0 + year + 7200),
        "a deadline from another clock does not move"
    );
    let events = s.handle_timeout(T0 + 3600 + year);
    assert!(matches!(events.as_slice(), [LeaseEvent::Expired(l)] if l.ip == a));
}
