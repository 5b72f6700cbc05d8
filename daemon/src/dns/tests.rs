//! The resolver's chain, without sockets: local names, outsiders, quarantine,
//! blocking, cache, rebinding, domain sets, hostile packets.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{rdata::CNAME, Name, RData, Record, RecordType};

use super::blocklist::{parse_list, Blocklists, ListId};
use super::policy::{DnsSettings, Route};
use super::querylog::{LogFilter, Outcome};
use super::resolver::{Begin, Pending, Resolver};
use super::wire::address_record;
use crate::config::{BlocklistSource, MacAddr, ZoneId};
use crate::core::{DeviceSnapshot, InventorySnapshot};
use crate::testutil::tunnel_config;

const LAPTOP: [u8; 6] = [2, 0, 0, 0, 0, 10];
const TV: [u8; 6] = [2, 0, 0, 0, 0, 11];
const PLUG: [u8; 6] = [2, 0, 0, 0, 0, 12];

fn snapshot() -> InventorySnapshot {
    let mut s = InventorySnapshot {
        generation: 1,
        ..Default::default()
    };
    for (mac, zone, ip, host, tunnel) in [
        (LAPTOP, "trusted", "10.0.1.10", "Anna's Laptop", false),
        (TV, "trusted", "10.0.1.11", "tv", true),
        (PLUG, "iot", "10.0.1.12", "<b>plug</b>", false),
    ] {
        let d = DeviceSnapshot {
            mac: MacAddr(mac),
            name: None,
            hostname: Some(host.into()),
            zone: ZoneId::new(zone).expect("zone"),
            addresses: [ip.parse().expect("ip")].into(),
            blocked: false,
            tunnel_routed: tunnel,
            quarantined: false,
            class: None,
            vendor: None,
            last_seen: 0,
            online: true,
            watched: false,
        };
        for a in &d.addresses {
            s.by_address.insert(*a, d.mac);
        }
        s.devices.insert(d.mac, d);
    }
    s
}

/// The tunnel test config with one list "ads" for zone iot, upstreams set.
fn resolver() -> Resolver {
    let mut config = tunnel_config();
    config.dns.upstreams = vec![crate::config::parse_upstream("192.0.2.53").expect("upstream")];
    config.dns.blocklists = vec![BlocklistSource {
        name: "ads".into(),
        file: "/nonexistent".into(),
        url: None,
        refresh_hours: 24,
    }];
    let iot = ZoneId::new("iot").expect("zone");
    if let Some(z) = config.policy.zones.get_mut(&iot) {
        z.dns.blocklists.insert("ads".into());
    }
    let settings = DnsSettings::from_config(&config);
    let lists = Blocklists::build(vec![(ListId(0), parse_list("ads.example.test\n||tracker.test^\n"))]);
    Resolver::new(settings, lists)
}

fn packet(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m.to_vec().expect("encode")
}

fn from(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), 40000)
}

fn ask(r: &mut Resolver, name: &str, qtype: RecordType, client: &str, now: Instant) -> Begin {
    r.begin(
        &packet(name, qtype),
        from(client),
        super::wire::Transport::Udp,
        &snapshot(),
        now,
        1000,
    )
}

fn reply(b: Begin) -> Message {
    match b {
        Begin::Reply(bytes) => Message::from_vec(&bytes).expect("a DNS message"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn forwarded(b: Begin) -> Pending {
    match b {
        Begin::Forward(p) => p,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn upstream_answer(p: &Pending, records: Vec<Record>) -> Message {
    let mut m = Message::new(99, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(p.question.name.clone(), p.question.qtype));
    m.insert_answers(records);
    m
}

#[test]
fn devices_resolve_by_safe_local_names_and_local_names_never_go_upstream() {
    let mut r = resolver();
    let now = Instant::now();
    let m = reply(ask(&mut r, "anna-s-laptop.lan.", RecordType::A, "10.0.1.11", now));
    assert_eq!(addresses(&m), vec!["10.0.1.10".parse::<IpAddr>().expect("ip")]);
    assert!(m.metadata.authoritative);
    let m = reply(ask(&mut r, "b-plug-b.lan.", RecordType::A, "10.0.1.10", now));
    assert_eq!(
        addresses(&m),
        vec!["10.0.1.12".parse::<IpAddr>().expect("ip")],
        "a hostile name as a safe label"
    );
    let m = reply(ask(&mut r, "nobody.lan.", RecordType::A, "10.0.1.10", now));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = reply(ask(
        &mut r,
        "10.1.0.10.in-addr.arpa.",
        RecordType::PTR,
        "10.0.1.10",
        now,
    ));
    assert!(
        matches!(&m.answers[0].data, RData::PTR(p) if p.0.to_ascii() == "anna-s-laptop.lan."),
        "{m:?}"
    );
    let m = reply(ask(
        &mut r,
        "77.1.0.10.in-addr.arpa.",
        RecordType::PTR,
        "10.0.1.10",
        now,
    ));
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "private reverse: never upstream"
    );
    let m = reply(ask(&mut r, "router.lan.", RecordType::A, "10.0.1.10", now));
    assert!(addresses(&m).contains(&"10.0.1.1".parse::<IpAddr>().expect("ip")));
    assert_eq!(r.stats().0.forwarded, 0);
}

#[test]
fn outsiders_are_refused_quarantine_gets_local_names_only() {
    let mut r = resolver();
    let now = Instant::now();
    let m = reply(ask(&mut r, "www.example.test.", RecordType::A, "192.0.2.1", now));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "not an open resolver");
    // 10.0.1.99 holds no device: the unknown zone (quarantine), no internet.
    let m = reply(ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.99", now));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = reply(ask(&mut r, "router.lan.", RecordType::A, "10.0.1.99", now));
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "the router's own name still answers"
    );
    let log = r.log().read(&LogFilter {
        limit: 10,
        ..Default::default()
    });
    assert!(log.iter().any(|e| e.outcome == Outcome::NotAllowed));
    assert_eq!(r.stats().0.refused, 1);
}

#[test]
fn a_zone_list_blocks_its_devices_only_and_says_which_list() {
    let mut r = resolver();
    let now = Instant::now();
    let m = reply(ask(&mut r, "x.ads.example.test.", RecordType::A, "10.0.1.12", now));
    assert_eq!(addresses(&m), vec!["0.0.0.0".parse::<IpAddr>().expect("ip")]);
    let m = reply(ask(&mut r, "tracker.test.", RecordType::AAAA, "10.0.1.12", now));
    assert_eq!(addresses(&m), vec!["::".parse::<IpAddr>().expect("ip")]);
    // The laptop's zone has no list: the same name is forwarded.
    let p = forwarded(ask(&mut r, "x.ads.example.test.", RecordType::A, "10.0.1.10", now));
    assert_eq!(p.client.route, Route::Direct);
    let blocked = r.log().read(&LogFilter {
        blocked_only: true,
        limit: 10,
        ..Default::default()
    });
    assert_eq!(blocked.len(), 2);
    assert_eq!(blocked[0].outcome, Outcome::Blocked { list: "ads".into() });
    assert_eq!(blocked[0].mac, Some(MacAddr(PLUG)));
}

#[test]
fn firefox_is_told_not_to_use_its_own_doh_while_the_guards_are_on() {
    let mut r = resolver();
    let m = reply(ask(
        &mut r,
        "use-application-dns.net.",
        RecordType::A,
        "10.0.1.10",
        Instant::now(),
    ));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.stats().0.forwarded, 0);
}

#[test]
fn answers_are_cached_for_their_ttl_and_failures_are_servfail() {
    let mut r = resolver();
    let t0 = Instant::now();
    let p = forwarded(ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.10", t0));
    let name = p.question.name.clone();
    let answer = upstream_answer(&p, vec![address_record(&name, 30, "192.0.2.80".parse().expect("ip"))]);
    let done = r.finish(p, Ok((answer, "192.0.2.53:53".into())), t0, 1000);
    let m = Message::from_vec(&done.reply.expect("reply")).expect("message");
    assert_eq!(m.metadata.id, 7, "the client's id, not ours");
    assert!(done.holds.is_empty(), "not a domain-set name");
    let hit = reply(ask(
        &mut r,
        "WWW.example.test.",
        RecordType::A,
        "10.0.1.12",
        t0 + Duration::from_secs(10),
    ));
    assert_eq!(hit.answers[0].ttl, 20, "from the cache, TTL lowered by age");
    forwarded(ask(
        &mut r,
        "www.example.test.",
        RecordType::A,
        "10.0.1.10",
        t0 + Duration::from_secs(31),
    ));
    let p = forwarded(ask(&mut r, "down.example.test.", RecordType::A, "10.0.1.10", t0));
    let done = r.finish(p, Err("every upstream failed".into()), t0, 1000);
    let m = Message::from_vec(&done.reply.expect("reply")).expect("message");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn private_answers_for_public_names_are_dropped_as_rebinding() {
    let mut r = resolver();
    let now = Instant::now();
    let p = forwarded(ask(&mut r, "evil.example.test.", RecordType::A, "10.0.1.10", now));
    let name = p.question.name.clone();
    let answer = upstream_answer(&p, vec![address_record(&name, 300, "192.168.1.1".parse().expect("ip"))]);
    let done = r.finish(p, Ok((answer, "up".into())), now, 1000);
    let m = Message::from_vec(&done.reply.expect("reply")).expect("message");
    assert!(m.answers.is_empty());
    assert_eq!(r.stats().0.rebind, 1);
    // Not cached either: the next question goes upstream again.
    forwarded(ask(&mut r, "evil.example.test.", RecordType::A, "10.0.1.10", now));
}

#[test]
fn a_domain_set_name_and_its_cname_chain_put_the_addresses_in_the_set_first() {
    let mut r = resolver();
    let now = Instant::now();
    // The TV goes through the tunnel: so do its questions.
    let p = forwarded(ask(&mut r, "www.other.test.", RecordType::A, "10.0.1.11", now));
    assert_eq!(p.client.route, Route::Tunnel);
    let name = p.question.name.clone();
    let target = Name::from_ascii("video.example.test.").expect("name");
    let answer = upstream_answer(
        &p,
        vec![
            Record::from_rdata(name, 600, RData::CNAME(CNAME(target.clone()))),
            address_record(&target, 120, "203.0.113.10".parse().expect("ip")),
        ],
    );
    let done = r.finish(p, Ok((answer, "up".into())), now, 1000);
    assert_eq!(done.holds.len(), 1);
    let (set, addrs, secs) = &done.holds[0];
    assert_eq!(set.as_str(), "streaming");
    assert_eq!(addrs, &vec!["203.0.113.10".parse::<IpAddr>().expect("ip")]);
    assert!(*secs >= 300, "held at least the floor: {secs}");
    let sent = Message::from_vec(done.reply.as_deref().expect("reply")).expect("message");
    assert!(
        sent.answers.iter().all(|r| r.ttl <= 300),
        "the client keeps it no longer than the set holds it"
    );
    // Not cached until the core confirmed the hold: the same question goes
    // upstream again instead of being answered for an unheld address.
    let to_cache = done.to_cache.expect("an answer to cache after the hold");
    forwarded(ask(&mut r, "www.other.test.", RecordType::A, "10.0.1.11", now));
    r.commit(to_cache, now);
    // From the cache, a selected domain's answer still waits for its holds.
    match ask(&mut r, "www.other.test.", RecordType::A, "10.0.1.11", now) {
        Begin::AfterHolds { holds, servfail, .. } => {
            assert_eq!(holds.len(), 1);
            assert!(servfail.is_some());
        }
        other => panic!("a cached domain-set answer without holds: {other:?}"),
    }
}

#[test]
fn hostile_packets_are_dropped_or_refused_and_counted_never_a_panic() {
    let mut r = resolver();
    let now = Instant::now();
    let client = from("10.0.1.10");
    let header = |qd: u16| {
        let mut p = vec![0x12, 0x34, 0x01, 0x00];
        p.extend_from_slice(&qd.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        p
    };
    let mut corpus: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 11],
        header(1),                                                           // a question promised, none there
        [header(1), vec![0xc0, 0x0c, 0, 1, 0, 1]].concat(),                  // a name pointing at itself
        [header(1), vec![64], vec![b'a'; 64], vec![0, 0, 1, 0, 1]].concat(), // a label of 64
        [header(1), vec![63; 1], vec![b'a'; 63]].concat(),                   // cut short
        [header(65535), vec![0, 0, 1, 0, 1]].concat(),                       // counts that lie
    ];
    // A name of more than 255 bytes.
    let mut long = header(1);
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    corpus.push(long);
    // A huge EDNS payload and a future EDNS version.
    let mut m = Message::new(1, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii("a.test.").expect("name"), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(65535);
    e.set_version(1);
    m.set_edns(e);
    corpus.push(m.to_vec().expect("encode"));
    // Deterministic noise.
    let mut x: u32 = 0x9e37_79b9;
    for len in 0..300usize {
        let mut p = header(1);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p.push(x as u8);
        }
        corpus.push(p);
    }
    for p in &corpus {
        match r.begin(p, client, super::wire::Transport::Udp, &snapshot(), now, 1000) {
            Begin::Reply(bytes) | Begin::AfterHolds { reply: bytes, .. } => {
                Message::from_vec(&bytes).expect("whatever we send parses");
            }
            Begin::Drop => {}
            Begin::Forward(p) => assert!(!p.question.key.is_empty() || p.question.qtype != RecordType::A),
        }
    }
    let stats = r.stats().0;
    assert!(stats.malformed >= 8, "{stats:?}");
    // A future EDNS version gets BADVERS with an OPT record.
    let b = reply(r.begin(&corpus[8], client, super::wire::Transport::Udp, &snapshot(), now, 1000));
    assert!(b.edns.is_some());
}

/// Seeds of the `dns_query` fuzz target: real questions with real answers.
fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let framed = |q: Vec<u8>, a: Vec<u8>| {
        let mut v = u16::try_from(q.len()).expect("small").to_be_bytes().to_vec();
        v.extend(q);
        v.extend(a);
        v
    };
    let answer = |name: &str, qtype: RecordType, records: Vec<Record>| {
        let mut m = Message::new(99, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        m.insert_answers(records);
        m.to_vec().expect("encode")
    };
    let www = Name::from_ascii("www.example.").expect("name");
    vec![
        (
            "a-forwarded",
            framed(
                packet("www.example.", RecordType::A),
                answer(
                    "www.example.",
                    RecordType::A,
                    vec![address_record(&www, 60, "192.0.2.80".parse().expect("ip"))],
                ),
            ),
        ),
        (
            "cname-into-set",
            framed(
                packet("v.other.", RecordType::A),
                answer(
                    "v.other.",
                    RecordType::A,
                    vec![
                        Record::from_rdata(
                            Name::from_ascii("v.other.").expect("name"),
                            60,
                            RData::CNAME(CNAME(www.clone())),
                        ),
                        address_record(&www, 60, "203.0.113.10".parse().expect("ip")),
                    ],
                ),
            ),
        ),
        (
            "blocked",
            framed(packet("x.ads.example.", RecordType::AAAA), Vec::new()),
        ),
        ("local", framed(packet("laptop.lan.", RecordType::A), Vec::new())),
        (
            "ptr",
            framed(packet("10.1.0.10.in-addr.arpa.", RecordType::PTR), Vec::new()),
        ),
        (
            "rebind",
            framed(
                packet("www.example.", RecordType::A),
                answer(
                    "www.example.",
                    RecordType::A,
                    vec![address_record(&www, 60, "10.9.9.9".parse().expect("ip"))],
                ),
            ),
        ),
    ]
}

/// The fuzz target's entry over its seeds and 20,000 deterministic mutations:
/// no panic, every reply well formed (checked inside the entry).
#[test]
fn the_dns_fuzz_entry_survives_mutated_seeds() {
    let seeds = fuzz_seeds();
    for (_, s) in &seeds {
        super::fuzz_entry_query(s);
    }
    let mut rng = crate::testutil::Rng(0x5eed_d115);
    for _ in 0..20_000 {
        let (_, seed) = &seeds[rng.below(seeds.len())];
        let mut v = seed.clone();
        for _ in 0..=rng.below(5) {
            if v.is_empty() {
                break;
            }
            let i = rng.below(v.len());
            match rng.below(4) {
                0 => v[i] = rng.next() as u8,
                1 => v[i] = [0, 1, 63, 64, 0xc0, 0xff][rng.below(6)],
                2 => v.truncate(i.max(2)),
                _ => {
                    let n = rng.below(8);
                    let extra = rng.bytes(n);
                    v.splice(i..i, extra);
                }
            }
        }
        super::fuzz_entry_query(&v);
    }
}

/// `BULKHEAD_WRITE_FUZZ_SEEDS=1 cargo test -p bulkhead --lib write_dns_fuzz_seeds -- --ignored`
#[test]
#[ignore = "writes fuzz/corpus/dns_query (run by hand)"]
fn write_dns_fuzz_seeds() {
    if std::env::var_os("BULKHEAD_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    for (name, bytes) in fuzz_seeds() {
        crate::testutil::write_fuzz_seed("dns_query", name, &bytes);
    }
}

/// A zone with its own upstreams (the kids' family-safe resolver): its
/// devices' questions go there, and answers never cross between the groups
/// through the cache.
#[test]
fn a_zone_with_its_own_upstreams_gets_its_own_answers() {
    let mut config = tunnel_config();
    config.dns.upstreams = vec![crate::config::parse_upstream("192.0.2.53").expect("upstream")];
    let iot = ZoneId::new("iot").expect("zone");
    if let Some(z) = config.policy.zones.get_mut(&iot) {
        z.dns.upstreams = vec![crate::config::parse_upstream("tls://198.51.100.3").expect("upstream")];
    }
    let mut r = Resolver::new(DnsSettings::from_config(&config), Blocklists::build(Vec::new()));
    let now = Instant::now();
    let p = forwarded(ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.10", now));
    assert_eq!(
        super::resolver::answer_source(&p.client),
        super::cache::AnswerSource::Default
    );
    let name = p.question.name.clone();
    let answer = upstream_answer(&p, vec![address_record(&name, 300, "192.0.2.80".parse().expect("ip"))]);
    r.finish(p, Ok((answer, "up".into())), now, 1000);
    // The plug (iot) is not answered from the laptop's cache: its zone asks its own.
    let p = forwarded(ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.12", now));
    assert_eq!(
        super::resolver::answer_source(&p.client),
        super::cache::AnswerSource::Zone(iot)
    );
    // The laptop's next question is a cache hit.
    reply(ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.10", now));
}

/// Found by `scripts/fuzz.sh` (dns_query): replayed as a regression test.
#[test]
fn fuzz_findings_replay() {
    for data in [
        &include_bytes!("testdata/fuzz-crash-reply-does-not-parse")[..],
        &include_bytes!("testdata/fuzz-crash-2")[..],
    ] {
        super::fuzz_entry_query(data);
    }
}

/// Review findings, each pinned: TLD questions go upstream, escaped names are
/// refused, the carrier-grade NAT range counts as internal for rebinding, and
/// a quarantined device or a reserved label names nothing.
#[test]
fn tlds_escaped_names_cgnat_rebinding_and_name_claims() {
    let mut r = resolver();
    let now = Instant::now();
    forwarded(ask(&mut r, "com.", RecordType::DS, "10.0.1.10", now));
    let m = reply(ask(&mut r, "nobody.", RecordType::A, "10.0.1.10", now));
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "a single label's address stays home"
    );
    // Three labels of zero bytes, then a listed domain: refused, not forwarded.
    let mut name = Name::root();
    for _ in 0..3 {
        name = name.append_label(&[0u8; 60][..]).expect("label");
    }
    let name = name
        .append_name(&Name::from_ascii("ads.example.test.").expect("name"))
        .expect("name");
    let mut q = Message::new(9, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(name, RecordType::A));
    let b = r.begin(
        &q.to_vec().expect("encode"),
        from("10.0.1.12"),
        super::wire::Transport::Udp,
        &snapshot(),
        now,
        1000,
    );
    assert_eq!(reply(b).metadata.response_code, ResponseCode::Refused);
    // 100.64/10 under a public name is rebinding too.
    let p = forwarded(ask(&mut r, "cgnat.example.test.", RecordType::A, "10.0.1.10", now));
    let n = p.question.name.clone();
    let answer = upstream_answer(&p, vec![address_record(&n, 60, "100.64.1.1".parse().expect("ip"))]);
    let done = r.finish(p, Ok((answer, "up".into())), now, 1000);
    let m = Message::from_vec(&done.reply.expect("reply")).expect("message");
    assert!(m.answers.is_empty(), "{m:?}");
    // Name claims.
    let mut s = snapshot();
    s.unknown_zone = Some(ZoneId::new("quarantine").expect("zone"));
    for (last, zone, host) in [(50u8, "quarantine", "nas"), (51, "trusted", "wpad")] {
        let d = DeviceSnapshot {
            mac: MacAddr([2, 0, 0, 0, 1, last]),
            name: None,
            hostname: Some(host.into()),
            zone: ZoneId::new(zone).expect("zone"),
            addresses: [IpAddr::from([10, 0, 1, last])].into(),
            blocked: false,
            tunnel_routed: false,
            quarantined: false,
            class: None,
            vendor: None,
            last_seen: 0,
            online: true,
            watched: false,
        };
        s.devices.insert(d.mac, d);
    }
    let names = super::local::LocalNames::build("lan", &[], &s);
    assert_eq!(names.lookup("nas.lan"), super::local::LocalAnswer::NoSuchName);
    assert_eq!(names.lookup("wpad.lan"), super::local::LocalAnswer::NoSuchName);
}

/// A browser connects to an HTTPS record's address hints without asking for
/// A/AAAA: for a selected domain they are held like addresses.
#[test]
fn https_record_hints_of_a_selected_domain_are_held() {
    use hickory_proto::rr::rdata::svcb::{IpHint, SvcParamKey, SvcParamValue, SVCB};
    use hickory_proto::rr::rdata::{A, HTTPS};
    let mut r = resolver();
    let now = Instant::now();
    let p = forwarded(ask(&mut r, "video.example.test.", RecordType::HTTPS, "10.0.1.10", now));
    let name = p.question.name.clone();
    let svcb = SVCB::new(
        1,
        Name::root(),
        vec![(
            SvcParamKey::Ipv4Hint,
            SvcParamValue::Ipv4Hint(IpHint(vec![A::new(203, 0, 113, 44)])),
        )],
    );
    let answer = upstream_answer(&p, vec![Record::from_rdata(name, 300, RData::HTTPS(HTTPS(svcb)))]);
    let done = r.finish(p, Ok((answer, "up".into())), now, 1000);
    assert_eq!(done.holds.len(), 1, "{:?}", done.holds);
    assert_eq!(done.holds[0].1, vec!["203.0.113.44".parse::<IpAddr>().expect("ip")]);
}

#[test]
fn a_cache_hit_answered_in_bytes_is_the_full_paths_answer_and_counted_alike() {
    let mut r = resolver();
    let t0 = Instant::now();
    let p = forwarded(ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.10", t0));
    let name = p.question.name.clone();
    let edge = Name::from_ascii("edge.cdn.test.").expect("name");
    let answer = upstream_answer(
        &p,
        vec![
            Record::from_rdata(name, 300, RData::CNAME(CNAME(edge.clone()))),
            address_record(&edge, 30, "192.0.2.80".parse().expect("ip")),
        ],
    );
    r.finish(p, Ok((answer, "192.0.2.53:53".into())), t0, 1000);
    let later = t0 + Duration::from_secs(10);
    let common = packet("www.example.test.", RecordType::A);
    assert!(super::hit::QuickQuery::read(&common).is_some(), "the common shape");
    // One byte after the OPT: not the common shape, but a question hickory
    // reads — the same question through the full path.
    let mut uncommon = common.clone();
    uncommon.push(0);
    assert!(super::hit::QuickQuery::read(&uncommon).is_none());
    let mut answer_to = |packet: &[u8]| match r.begin(
        packet,
        from("10.0.1.12"),
        super::wire::Transport::Udp,
        &snapshot(),
        later,
        1000,
    ) {
        Begin::Reply(bytes) => bytes,
        other => panic!("expected a reply, got {other:?}"),
    };
    let quick = answer_to(&common);
    let full = answer_to(&uncommon);
    assert_eq!(quick, full, "byte for byte");
    let m = Message::from_vec(&quick).expect("message");
    assert_eq!(m.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(), vec![290, 20]);
    // In another case: the client's question as asked, the same records
    // (hickory compresses names case-sensitively, so the bytes differ).
    let shouted = packet("WWW.EXAMPLE.TEST.", RecordType::A);
    let other = Message::from_vec(&answer_to(&shouted)).expect("message");
    assert_eq!(other.queries[0].name().to_ascii(), "WWW.EXAMPLE.TEST.");
    assert_eq!(other.answers, m.answers);
    let (stats, cache) = r.stats();
    assert_eq!((cache.hits, stats.answered, stats.forwarded), (3, 4, 1));
    let logged: Vec<Outcome> = r
        .log()
        .read(&LogFilter {
            limit: 10,
            ..Default::default()
        })
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(logged[..2], [Outcome::Cached, Outcome::Cached]);
}

#[test]
fn cache_hits_in_bytes_still_take_a_rate_token() {
    let mut config = tunnel_config();
    config.dns.upstreams = vec![crate::config::parse_upstream("192.0.2.53").expect("upstream")];
    config.dns.client_qps = 1;
    let mut r = Resolver::new(DnsSettings::from_config(&config), Blocklists::default());
    let t0 = Instant::now();
    let p = forwarded(ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.10", t0));
    let name = p.question.name.clone();
    let answer = upstream_answer(&p, vec![address_record(&name, 300, "192.0.2.80".parse().expect("ip"))]);
    r.finish(p, Ok((answer, "192.0.2.53:53".into())), t0, 1000);
    // A burst of twice the rate: the first question took one token, one is left.
    assert!(matches!(
        ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.10", t0),
        Begin::Reply(_)
    ));
    assert!(matches!(
        ask(&mut r, "www.example.test.", RecordType::A, "10.0.1.10", t0),
        Begin::Drop
    ));
    assert_eq!(r.stats().0.rate_limited, 1);
}
