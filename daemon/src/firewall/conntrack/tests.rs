//! The ctnetlink cut: encoder and parser against bytes the kernel and
//! conntrack-tools exchanged, malformed input, and (root) real entries in
//! throwaway namespaces.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use bulkhead_netns::{ping, root_or_skip, Netns};

use super::*;
use crate::firewall::nfnl::open_socket;
use crate::firewall::nfnl::{u16_at, NLMSG_HDRLEN};
use crate::testutil::Rng;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("v4")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("v6")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

// What the kernel (6.18.44, x86_64) and conntrack-tools 1.4.7 exchanged in a
// throwaway pair of namespaces joined by a veth: A (10.9.0.1, fd09::1) with
// `ct zone set 7` on its pings to 10.9.0.2, B (10.9.0.2, fd09::2). From A: a
// TCP connection 10.9.0.1:40000 -> 10.9.0.2:80, UDP [fd09::1]:5353 ->
// [fd09::2]:53, one ping to each of B's addresses. Then, in A, a dump request
// like ours (family 0, seq 1) and each datagram of the answer; then
// `strace -e trace=sendto -e write=4 conntrack -D -f ipv4 -p tcp` (and the same
// for the other three), whose DELETE messages are below.

/// The dump's first datagram: four IPCTNL_MSG_CT_NEW.
const DUMP: [&str; 4] = [
    // icmp 10.9.0.1 -> 10.9.0.2 type 8 code 0 id 12787, zone 7.
    "bc000000000102000100000039320000020000003c00018014000180080001000a090001080002000a0900022400028005000100010000000600040031f30000050005000800000005000600000000003c00028014000180080001000a090002080002000a0900012400028005000100010000000600040031f30000050005000000000005000600000000000600120000070000080003000000000a080008000000000008000c001924223208000b0000000001080007000000001c",
    // tcp 10.9.0.1 40000 -> 10.9.0.2 80.
    "d4000000000102000100000039320000020000003400018014000180080001000a090001080002000a0900021c0002800500010006000000060002009c40000006000300005000003400028014000180080001000a090002080002000a0900011c00028005000100060000000600020000500000060003009c400000080003000000000e080008000000000008000c00c7a9bad808000b0000000001080007000006977e300004802c0001800500010003000000050002000a000000050003000a00000006000400230000000600050023000000",
    // udp fd09::1 5353 -> fd09::2 53.
    "d40000000001020001000000393200000a0000004c0001802c00018014000300fd09000000000000000000000000000114000400fd0900000000000000000000000000021c00028005000100110000000600020014e9000006000300003500004c0002802c00018014000300fd09000000000000000000000000000214000400fd0900000000000000000000000000011c000280050001001100000006000200003500000600030014e900000800030000000008080008000000000008000c0062ae870308000b0000000001080007000000001c",
    // icmpv6 fd09::1 -> fd09::2 type 128 code 0 id 12788.
    "e40000000001020001000000393200000a000000540001802c00018014000300fd09000000000000000000000000000114000400fd09000000000000000000000000000224000280050001003a0000000600070031f4000005000800800000000500090000000000540002802c00018014000300fd09000000000000000000000000000214000400fd09000000000000000000000000000124000280050001003a0000000600070031f4000005000800810000000500090000000000080003000000000a080008000000000008000c003d8d75be08000b0000000001080007000000001d",
];

/// The dump's second datagram: NLMSG_DONE, result 0.
const DUMP_DONE: &str = "1400000003000200010000003932000000000000";

/// What `conntrack -D` sent to delete each entry above (it sends back the whole
/// entry: both tuples, status, timeout, mark, zone; the kernel reads the
/// original tuple and the zone).
const CONNTRACK_DELETES: [&str; 4] = [
    "ac0000000201050015d1146b00000000020000003c00018014000180080001000a090001080002000a090002240002800500010001000000050006000000000005000500080000000600040031f300003c00028014000180080001000a090002080002000a090001240002800500010001000000050006000000000005000500000000000600040031f30000080003000000000a080007000000001c08000800000000000600120000070000",
    "c40000000201050015d1146b00000000020000003400018014000180080001000a090001080002000a0900021c0002800500010006000000060002009c40000006000300005000003400028014000180080001000a090002080002000a0900011c00028005000100060000000600020000500000060003009c400000080003000000000e080007000006977e0800080000000000300004802c000180050001000300000006000400230000000600050023000000050002000a000000050003000a000000",
    "c40000000201050015d1146b000000000a0000004c0001802c00018014000300fd09000000000000000000000000000114000400fd0900000000000000000000000000021c00028005000100110000000600020014e9000006000300003500004c0002802c00018014000300fd09000000000000000000000000000214000400fd0900000000000000000000000000011c000280050001001100000006000200003500000600030014e900000800030000000008080007000000001c0800080000000000",
    "d40000000201050015d1146b000000000a000000540001802c00018014000300fd09000000000000000000000000000114000400fd09000000000000000000000000000224000280050001003a000000050009000000000005000800800000000600070031f40000540002802c00018014000300fd09000000000000000000000000000214000400fd09000000000000000000000000000124000280050001003a000000050009000000000005000800810000000600070031f40000080003000000000a080007000000001d0800080000000000",
];

/// conntrack's sequence number in those deletes.
const CONNTRACK_SEQ: u32 = 0x6b14_d115;

/// The four entries of [`DUMP`], as they should read.
fn dumped() -> [Entry; 4] {
    let (a4, b4, a6, b6) = (v4("10.9.0.1"), v4("10.9.0.2"), v6("fd09::1"), v6("fd09::2"));
    [
        Entry {
            orig: Tuple {
                addrs: Addrs::V4 { src: a4, dst: b4 },
                proto: 1,
                l4: L4::Icmp {
                    id: 12787,
                    ty: 8,
                    code: 0,
                },
                zone: None,
            },
            zone: Some(7),
            id: Some(0x1924_2232),
            mark: Some(0),
            counters: None,
        },
        Entry {
            orig: Tuple {
                addrs: Addrs::V4 { src: a4, dst: b4 },
                proto: 6,
                l4: L4::Ports { src: 40000, dst: 80 },
                zone: None,
            },
            zone: None,
            id: Some(0xc7a9_bad8),
            mark: Some(0),
            counters: None,
        },
        Entry {
            orig: Tuple {
                addrs: Addrs::V6 { src: a6, dst: b6 },
                proto: 17,
                l4: L4::Ports { src: 5353, dst: 53 },
                zone: None,
            },
            zone: None,
            id: Some(0x62ae_8703),
            mark: Some(0),
            counters: None,
        },
        Entry {
            orig: Tuple {
                addrs: Addrs::V6 { src: a6, dst: b6 },
                proto: 58,
                l4: L4::Icmpv6 {
                    id: 12788,
                    ty: 128,
                    code: 0,
                },
                zone: None,
            },
            zone: None,
            id: Some(0x3d8d_75be),
            mark: Some(0),
            counters: None,
        },
    ]
}

/// Keeps every entry.
fn all(_: &Entry) -> bool {
    true
}

fn dump_datagram() -> Vec<u8> {
    hex(&DUMP.concat())
}

/// Top-level attributes of a ctnetlink message, as (type, raw bytes with padding).
fn top_attrs(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = &msg[NLMSG_HDRLEN + NFGENMSG_LEN..];
    while !b.is_empty() {
        let len = u16_at(b, 0).expect("nla_len") as usize;
        let ty = u16_at(b, 2).expect("nla_type") & nfnl::NLA_TYPE_MASK;
        let end = nfnl::align4(len).min(b.len());
        out.push((ty, b[..end].to_vec()));
        b = &b[end..];
    }
    out
}

/// `msg` with only the top-level attributes of types `keep`, length fixed.
fn keep_attrs(msg: &[u8], keep: &[u16]) -> Vec<u8> {
    let mut out = msg[..NLMSG_HDRLEN + NFGENMSG_LEN].to_vec();
    for (ty, raw) in top_attrs(msg) {
        if keep.contains(&ty) {
            out.extend_from_slice(&raw);
        }
    }
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
    out
}

fn encode_one(entry: &Entry, seq: u32) -> Vec<u8> {
    let mut w = MessageWriter::default();
    encode_delete(&mut w, entry, seq).expect("encode");
    w.buf
}

/// The numbers above that the `libc` crate has too.
#[test]
fn constants_match_libc() {
    assert_eq!(NFNL_SUBSYS_CTNETLINK, libc::NFNL_SUBSYS_CTNETLINK as u16);
    assert_eq!(AF_UNSPEC, libc::AF_UNSPEC as u8);
    assert_eq!(AF_INET, libc::AF_INET as u8);
    assert_eq!(AF_INET6, libc::AF_INET6 as u8);
}

#[cfg(target_endian = "little")]
#[test]
fn a_dump_captured_from_the_kernel_reads_back() {
    let mut dump = Dump::default();
    assert!(!read_dump(&dump_datagram(), 1, &mut dump, all).expect("first datagram"));
    assert_eq!(dump.entries, dumped());
    assert_eq!((dump.listed, dump.malformed, dump.unreadable), (4, 0, 0));
    assert!(read_dump(&hex(DUMP_DONE), 1, &mut dump, all).expect("second datagram"));
    // Another request's answers are not ours.
    let mut other = Dump::default();
    assert!(!read_dump(&dump_datagram(), 2, &mut other, all).expect("skipped"));
    assert!(other.entries.is_empty());
    assert_eq!(
        dumped().map(|e| e.to_string()),
        [
            "icmp 10.9.0.1 -> 10.9.0.2 type 8 code 0 id 12787 (zone 7)",
            "tcp 10.9.0.1 40000 -> 10.9.0.2 80",
            "udp fd09::1 5353 -> fd09::2 53",
            "icmpv6 fd09::1 -> fd09::2 type 128 code 0 id 12788",
        ]
    );
}

/// A cut keeps only its addresses' entries of a dump.
#[cfg(target_endian = "little")]
#[test]
fn a_dump_keeps_what_it_is_asked_to() {
    let mut dump = Dump::default();
    read_dump(&dump_datagram(), 1, &mut dump, |e| e.orig.src().is_ipv6()).expect("read");
    assert_eq!(dump.entries, dumped()[2..]);
    assert_eq!(dump.listed, 4);
}

#[cfg(target_endian = "little")]
#[test]
fn the_dump_request_is_what_conntrack_sends() {
    // strace: {nlmsg_len=20, nlmsg_type=NFNL_SUBSYS_CTNETLINK<<8|IPCTNL_MSG_CT_GET,
    // nlmsg_flags=NLM_F_REQUEST|NLM_F_DUMP, nlmsg_seq=1796526183, nlmsg_pid=0},
    // {nfgen_family=AF_INET, version=NFNETLINK_V0, res_id=htons(0)}
    let expected = hex(&["14000000", "0101", "0103", "67d0146b", "00000000", "02", "00", "0000"].concat());
    assert_eq!(encode_dump_request(AF_INET, 1_796_526_183), expected);
}

/// conntrack's deletes read back as the dumped entries (less the id, which it
/// does not send), and ours are its messages less what the kernel ignores: byte
/// for byte for TCP and UDP; ICMP's three fields come in another order from
/// conntrack, so those compare as parsed.
#[cfg(target_endian = "little")]
#[test]
fn deletes_are_what_conntrack_sends() {
    for (theirs, entry) in CONNTRACK_DELETES.iter().map(|h| hex(h)).zip(dumped()) {
        assert_eq!(u16_at(&theirs, 4), Some(CT_DELETE));
        let mut malformed = 0;
        let read = parse_entry(&theirs[NLMSG_HDRLEN..], &mut malformed).expect("conntrack's delete reads");
        assert_eq!(malformed, 0);
        let without_id = Entry { id: None, ..entry };
        assert_eq!(read, without_id, "{entry}");

        let ours = encode_one(&without_id, CONNTRACK_SEQ);
        if matches!(entry.orig.l4, L4::Ports { .. }) {
            assert_eq!(ours, keep_attrs(&theirs, &[CTA_TUPLE_ORIG, CTA_ZONE]), "{entry}");
        } else {
            let kept = keep_attrs(&theirs, &[CTA_TUPLE_ORIG, CTA_ZONE]);
            // Same header (length, type, flags, seq, pid, nfgenmsg), same fields.
            assert_eq!(ours[..NLMSG_HDRLEN + NFGENMSG_LEN], kept[..NLMSG_HDRLEN + NFGENMSG_LEN]);
            let mut m = 0;
            // Ours names the connection only: no mark.
            let named = Entry {
                mark: None,
                ..without_id
            };
            assert_eq!(parse_entry(&ours[NLMSG_HDRLEN..], &mut m), Some(named));
        }
        // With the id, it follows the zone.
        let with_id = encode_one(&entry, CONNTRACK_SEQ);
        let ids: Vec<_> = top_attrs(&with_id).into_iter().map(|(ty, _)| ty).collect();
        let expected_ids: Vec<u16> = [CTA_TUPLE_ORIG]
            .into_iter()
            .chain(entry.zone.map(|_| CTA_ZONE))
            .chain([CTA_ID])
            .collect();
        assert_eq!(ids, expected_ids);
        assert_eq!(with_id.len(), ours.len() + 8);
    }
}

/// The layout of a delete, field by field: IPv4 TCP with an id, IPv6 UDP with a
/// zone of the original direction and an id.
#[cfg(target_endian = "little")]
#[test]
fn delete_layout_v4_tcp_and_v6_udp() {
    let tcp = Entry {
        orig: Tuple {
            addrs: Addrs::V4 {
                src: v4("10.0.1.10"),
                dst: v4("93.184.216.34"),
            },
            proto: 6,
            l4: L4::Ports { src: 51226, dst: 443 },
            zone: None,
        },
        zone: None,
        id: Some(0x0102_0304),
        mark: Some(0),
        counters: None,
    };
    let expected = [
        "50000000",         // nlmsg_len 80
        "0201",             // NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
        "0500",             // NLM_F_REQUEST | NLM_F_ACK
        "07000000",         // seq
        "00000000",         // pid
        "02000000",         // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
        "34000180",         //   CTA_TUPLE_ORIG, nested, 52
        "14000180",         //     CTA_TUPLE_IP, nested, 20
        "080001000a00010a", // CTA_IP_V4_SRC 10.0.1.10
        "080002005db8d822", // CTA_IP_V4_DST 93.184.216.34
        "1c000280",         //     CTA_TUPLE_PROTO, nested, 28
        "0500010006000000", // CTA_PROTO_NUM 6, padded
        "06000200c81a0000", // CTA_PROTO_SRC_PORT 51226, big-endian, padded
        "0600030001bb0000", // CTA_PROTO_DST_PORT 443
        "08000c0001020304", // CTA_ID, big-endian
    ];
    assert_eq!(encode_one(&tcp, 7), hex(&expected.concat()));

    let udp = Entry {
        orig: Tuple {
            addrs: Addrs::V6 {
                src: v6("fd00:1::10"),
                dst: v6("fd00:1::1"),
            },
            proto: 17,
            l4: L4::Ports { src: 5353, dst: 53 },
            zone: Some(9),
        },
        zone: None,
        id: Some(0xa0b0_c0d0),
        mark: Some(0),
        counters: None,
    };
    let expected = [
        "70000000",                                 // nlmsg_len 112
        "0201",                                     // IPCTNL_MSG_CT_DELETE
        "0500",                                     // NLM_F_REQUEST | NLM_F_ACK
        "08000000",                                 // seq
        "00000000",                                 // pid
        "0a000000",                                 // AF_INET6
        "54000180",                                 //   CTA_TUPLE_ORIG, 84
        "2c000180",                                 //     CTA_TUPLE_IP, 44
        "14000300fd000001000000000000000000000010", // CTA_IP_V6_SRC
        "14000400fd000001000000000000000000000001", // CTA_IP_V6_DST
        "1c000280",                                 //     CTA_TUPLE_PROTO, 28
        "0500010011000000",                         // CTA_PROTO_NUM 17
        "0600020014e90000",                         // CTA_PROTO_SRC_PORT 5353
        "0600030000350000",                         // CTA_PROTO_DST_PORT 53
        "0600030000090000",                         //   CTA_TUPLE_ZONE 9
        "08000c00a0b0c0d0",                         // CTA_ID
    ];
    assert_eq!(encode_one(&udp, 8), hex(&expected.concat()));
}

/// Every prefix of the captured dump: never a panic, never an entry that was not
/// in it; a message cut short is an error.
#[test]
fn truncated_dumps_are_refused_without_panicking() {
    let full = dump_datagram();
    for n in 0..full.len() {
        let mut dump = Dump::default();
        match read_dump(&full[..n], 1, &mut dump, all) {
            Ok(done) => assert!(!done && n % 4 == 0, "{n}"),
            Err(ConntrackError::Malformed(_)) => {}
            Err(e) => panic!("{n}: {e}"),
        }
        assert!(dump.entries.iter().all(|e| dumped().contains(e)), "{n}");
    }
}

/// Where the attribute headers of one dumped message are, at every depth (this
/// kernel flags nests with NLA_F_NESTED).
fn attribute_headers(msg: &[u8]) -> Vec<usize> {
    fn walk(b: &[u8], base: usize, out: &mut Vec<usize>) {
        let mut at = 0;
        while at + 4 <= b.len() {
            let len = u16_at(b, at).expect("len") as usize;
            let ty = u16_at(b, at + 2).expect("type");
            out.push(base + at);
            if ty & nfnl::NLA_F_NESTED != 0 {
                walk(&b[at + 4..at + len], base + at + 4, out);
            }
            at += nfnl::align4(len);
        }
    }
    let mut out = Vec::new();
    let start = NLMSG_HDRLEN + NFGENMSG_LEN;
    walk(&msg[start..], start, &mut out);
    out
}

/// Every attribute of every captured message, its length replaced by a lie: the
/// entry reads as it was (the lie is in a part not read, or harmless) or is left
/// out and counted; never a panic, never another entry.
#[test]
fn lying_attribute_lengths_are_counted_and_never_make_up_an_entry() {
    let mut lies_told = 0;
    let mut left_out = 0;
    for (raw, truth) in DUMP.iter().map(|h| hex(h)).zip(dumped()) {
        let headers = attribute_headers(&raw);
        assert!(headers.len() > 20, "{}", headers.len());
        for at in headers {
            let len = u16_at(&raw, at).expect("len");
            for lie in [0, 1, 3, 4, len - 1, len + 1, len + 4, 0xffff] {
                let mut msg = raw.clone();
                msg[at..at + 2].copy_from_slice(&lie.to_ne_bytes());
                let mut dump = Dump::default();
                read_dump(&msg, 1, &mut dump, all).expect("the message itself is whole");
                lies_told += 1;
                match dump.entries.as_slice() {
                    [e] => assert_eq!(*e, truth, "lie {lie} at {at}"),
                    [] => {
                        assert_eq!(dump.unreadable, 1, "lie {lie} at {at}");
                        left_out += 1;
                    }
                    more => panic!("lie {lie} at {at}: {more:?}"),
                }
            }
        }
    }
    assert!(left_out > lies_told / 4, "{left_out} of {lies_told}");
}

/// Attributes of the right kind with the wrong size, and tuples missing a part:
/// counted and left out.
#[test]
fn wrong_sizes_and_missing_parts_leave_the_entry_out() {
    let tcp = hex(DUMP[1]);
    // CTA_IP_V4_SRC's payload is at 16+4+4+4+4 = 32: make it 3 bytes long.
    let mut short_addr = tcp.clone();
    assert_eq!(u16_at(&short_addr, 28), Some(8));
    short_addr[28..30].copy_from_slice(&7u16.to_ne_bytes());
    // CTA_PROTO_SRC_PORT's type (at 16+4+4+20+4+8+2 = 58) made CTA_PROTO_ICMP_ID:
    // one port and one ICMP field.
    let mut mixed = tcp.clone();
    assert_eq!(u16_at(&mixed, 58), Some(CTA_PROTO_SRC_PORT));
    mixed[58..60].copy_from_slice(&CTA_PROTO_ICMP_ID.to_ne_bytes());
    // The family byte says IPv6 while the addresses are IPv4.
    let mut family = tcp.clone();
    family[16] = AF_INET6;
    // A family conntrack does not have.
    let mut bridge = tcp.clone();
    bridge[16] = 7;
    for (what, msg, malformed) in [
        ("3-byte address", short_addr, 1),
        ("a port and an ICMP id", mixed, 0),
        ("IPv4 addresses in an IPv6 entry", family, 2),
        ("family 7", bridge, 0),
    ] {
        let mut dump = Dump::default();
        assert!(!read_dump(&msg, 1, &mut dump, all).expect(what));
        assert_eq!(
            (dump.entries.len(), dump.unreadable, dump.malformed),
            (0, 1, malformed),
            "{what}"
        );
    }
    // Too short for an nfgenmsg.
    let mut dump = Dump::default();
    let mut stub = hex(DUMP_DONE);
    stub[4..6].copy_from_slice(&CT_NEW.to_ne_bytes());
    stub.truncate(18);
    stub[..4].copy_from_slice(&18u32.to_ne_bytes());
    assert!(!read_dump(&stub, 1, &mut dump, all).expect("stub"));
    assert_eq!((dump.unreadable, dump.malformed), (1, 1));
}

/// A refused dump (no CAP_NET_ADMIN), or one the kernel ended with an error.
#[test]
fn refused_dumps_are_errors() {
    let mut refused = hex(DUMP_DONE);
    refused[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
    refused.truncate(16);
    refused.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
    refused.extend_from_slice(&hex("1400000001010103010000000000000000000000")[..16]);
    let len = refused.len() as u32;
    refused[..4].copy_from_slice(&len.to_ne_bytes());
    let err = read_dump(&refused, 1, &mut Dump::default(), all).expect_err("EPERM");
    assert!(matches!(err, ConntrackError::DumpRefused(Errno::EPERM)), "{err:?}");
    assert_eq!(err.into_io_error().kind(), io::ErrorKind::PermissionDenied);

    let mut failed = hex(DUMP_DONE);
    failed[16..20].copy_from_slice(&(-libc::ENOMEM).to_ne_bytes());
    assert!(matches!(
        read_dump(&failed, 1, &mut Dump::default(), all),
        Err(ConntrackError::DumpRefused(Errno::ENOMEM))
    ));
}

/// An `NLMSG_ERROR` answer to delete `seq` (error 0: an acknowledgement).
fn answer(error: i32, seq: u32) -> Vec<u8> {
    crate::firewall::nfnl::test_answer(error, seq, 80, CT_DELETE)
}

#[test]
fn answers_are_tallied_and_enoent_is_not_a_refusal() {
    let mut pending: BTreeMap<u32, usize> = (10..15).map(|s| (s, s as usize - 10)).collect();
    let mut tally = Tally::default();
    let datagram = [
        answer(0, 10),
        answer(-libc::ENOENT, 12),
        answer(0, 99), // not ours
        answer(-libc::EINVAL, 13),
        answer(-libc::EPERM, 11),
    ]
    .concat();
    read_acks(&datagram, &mut pending, &mut tally).expect("acks");
    assert_eq!(pending, BTreeMap::from([(14, 4)]));
    assert_eq!(
        tally,
        Tally {
            deleted: 1,
            vanished: 1,
            refused: 2,
            first_refusal: Some((3, Errno::EINVAL)),
        }
    );
    assert!(matches!(
        read_acks(&answer(0, 14)[..30], &mut pending, &mut tally),
        Err(ConntrackError::Malformed(_))
    ));
}

#[test]
fn an_empty_cut_opens_nothing() {
    // No socket is opened (this passes without root).
    assert_eq!(ConntrackNetlink.cut(&[]).expect("nothing to do"), CutReport::default());
}

/// The fuzz entry over mutations of the captured dump: flipped bytes, lengths
/// and types set to small numbers, cuts, and bytes spliced in.
#[test]
fn fuzz_entry_survives_a_pseudo_random_corpus() {
    let seed = [dump_datagram(), hex(DUMP_DONE)].concat();
    let mut rng = Rng(0x0c0f_fee0_dead_beef);
    let mut read_some = 0;
    for _ in 0..20_000 {
        let mut v = seed.clone();
        for _ in 0..=rng.below(6) {
            let i = rng.below(v.len());
            match rng.below(4) {
                0 => v[i] = rng.next() as u8,
                1 => v[i] = [0, 1, 2, 3, 4, 5, 6, 8, 12, 18, 0x80][rng.below(11)],
                2 => v.truncate(i),
                _ => {
                    let at = rng.below(v.len() + 1);
                    let n = rng.below(12);
                    let extra: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    v.splice(at..at, extra);
                }
            }
            if v.is_empty() {
                break;
            }
        }
        fuzz_entry_conntrack_dump(&v);
        let mut dump = Dump::default();
        let _ = read_dump(&v, 1, &mut dump, all);
        read_some += usize::from(!dump.entries.is_empty());
    }
    assert!(read_some > 1000, "{read_some}");
}

// Root tests: real entries in throwaway namespaces.

/// Long enough for a ping over a veth.
const WAIT: Duration = Duration::from_secs(5);

/// A (10.9.0.1, fd09::1), whose table is under test, joined by a veth to B
/// (10.9.0.2, 10.9.0.3, fd09::2, fd09::3). A's ruleset has a `ct state` rule, so
/// conntrack tracks its traffic, and zones: 7 for both directions of its pings to
/// 10.9.0.2, 9 for the original direction of UDP to [fd09::2]:53, 5 for both
/// directions of UDP to 10.9.0.3:53.
struct Pair {
    a: Netns,
    b: Netns,
}

fn pair(tag: &str) -> Pair {
    let a = Netns::new(&format!("{tag}-a")).expect("namespace a");
    let b = Netns::new(&format!("{tag}-b")).expect("namespace b");
    a.ip(&[
        "link",
        "add",
        "ct0",
        "type",
        "veth",
        "peer",
        "name",
        "ct1",
        "netns",
        b.name(),
    ])
    .expect("veth");
    a.ip_batch(&[
        "addr add 10.9.0.1/24 dev ct0",
        "addr add fd09::1/64 dev ct0 nodad",
        "link set ct0 up",
    ])
    .expect("addresses of a");
    b.ip_batch(&[
        "addr add 10.9.0.2/24 dev ct1",
        "addr add 10.9.0.3/24 dev ct1",
        "addr add fd09::2/64 dev ct1 nodad",
        "addr add fd09::3/64 dev ct1 nodad",
        "link set ct1 up",
    ])
    .expect("addresses of b");
    let ruleset = "table inet ct_test {
        chain raw_out {
            type filter hook output priority raw;
            ip daddr 10.9.0.2 icmp type echo-request ct zone set 7
            ip6 daddr fd09::2 udp dport 53 ct original zone set 9
            ip daddr 10.9.0.3 udp dport 53 ct zone set 5
        }
        chain raw_in {
            type filter hook prerouting priority raw;
            ip saddr 10.9.0.2 icmp type echo-reply ct zone set 7
            ip saddr 10.9.0.3 udp sport 53 ct zone set 5
        }
        chain input {
            type filter hook input priority 0;
            ct state established,related accept
        }
    }";
    a.exec(&["nft", ruleset]).expect("ruleset of a");
    Pair { a, b }
}

/// Every entry of `ns`'s table, through our own dump.
fn table(ns: &Netns) -> BTreeSet<Entry> {
    let dump = ns
        .run_in(|| ConntrackNetlink.dump(AF_UNSPEC))
        .expect("enter namespace")
        .expect("dump");
    assert_eq!((dump.malformed, dump.unreadable), (0, 0));
    dump.entries.into_iter().collect()
}

/// The kernel's own text view of `ns`'s table, `/proc/net/nf_conntrack` (when
/// the kernel has it): each entry's original source and destination, sorted.
fn proc_view(ns: &Netns) -> Option<Vec<(IpAddr, IpAddr)>> {
    let text = ns
        .run_in(|| std::fs::read_to_string("/proc/thread-self/net/nf_conntrack"))
        .expect("enter namespace")
        .ok()?;
    let mut pairs: Vec<(IpAddr, IpAddr)> = text
        .lines()
        .map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {key} in {line}"))
            };
            (field("src="), field("dst="))
        })
        .collect();
    pairs.sort();
    Some(pairs)
}

fn orig_pairs(entries: &BTreeSet<Entry>) -> Vec<(IpAddr, IpAddr)> {
    let mut pairs: Vec<_> = entries.iter().map(|e| (e.orig.src(), e.orig.dst())).collect();
    pairs.sort();
    pairs
}

fn udp_from(ns: &Netns, from: &str, to: &str) {
    let (from, to): (SocketAddr, SocketAddr) = (from.parse().expect("from"), to.parse().expect("to"));
    ns.run_in(|| UdpSocket::bind(from)?.send_to(b"x", to))
        .expect("enter namespace")
        .expect("udp");
}

#[test]
fn cuts_exactly_the_entries_of_the_given_addresses() {
    if !root_or_skip("firewall::conntrack::cuts_exactly_the_entries_of_the_given_addresses") {
        return;
    }
    let Pair { a, b } = pair("ct-cut");
    // One listener for both families and both of B's addresses of each.
    let listener = b
        .run_in(|| TcpListener::bind("[::]:80"))
        .expect("enter b")
        .expect("listen");
    let mut streams = Vec::new();
    for to in ["10.9.0.2:80", "10.9.0.3:80", "[fd09::2]:80", "[fd09::3]:80"] {
        let to: SocketAddr = to.parse().expect("addr");
        streams.push(
            a.run_in(|| TcpStream::connect_timeout(&to, WAIT))
                .expect("enter a")
                .expect("connect"),
        );
    }
    for to in ["10.9.0.2:53", "10.9.0.3:53"] {
        udp_from(&a, "10.9.0.1:0", to);
    }
    for to in ["[fd09::2]:53", "[fd09::3]:53"] {
        udp_from(&a, "[fd09::1]:0", to);
    }
    assert!(ping(&a, ip("10.9.0.2"), WAIT).expect("ping"), "ping 10.9.0.2 in zone 7");
    assert!(ping(&a, ip("fd09::2"), WAIT).expect("ping"), "ping fd09::2");
    // Connections B opens: A's address is their destination.
    udp_from(&b, "10.9.0.2:4000", "10.9.0.1:9999");
    udp_from(&b, "[fd09::2]:4000", "[fd09::1]:9999");
    udp_from(&b, "10.9.0.3:4000", "10.9.0.1:9999");

    let before = table(&a);
    let cut = [ip("10.9.0.2"), ip("fd09::2")];
    let (doomed, kept): (BTreeSet<Entry>, BTreeSet<Entry>) = before
        .iter()
        .partition(|e| cut.contains(&e.orig.src()) || cut.contains(&e.orig.dst()));
    // TCP, UDP out and in, ICMP, each over both families, to or from the
    // addresses cut; TCP and UDP out over both families and UDP in, of the others.
    assert_eq!((doomed.len(), kept.len()), (8, 5), "{before:#?}");
    // Both kinds of zone were read, and will be sent back.
    let zone = |e: &&Entry| (e.zone, e.orig.zone);
    let zones: BTreeSet<_> = before.iter().map(|e| zone(&e)).collect();
    assert_eq!(
        zones,
        BTreeSet::from([(None, None), (Some(7), None), (None, Some(9)), (Some(5), None)])
    );
    assert!(doomed.iter().any(|e| e.zone == Some(7)) && doomed.iter().any(|e| e.orig.zone == Some(9)));
    assert!(kept.iter().any(|e| e.zone == Some(5)));

    let report = a.run_in(|| ConntrackNetlink.cut(&cut)).expect("enter a").expect("cut");
    assert_eq!(
        (report.deleted, report.vanished, report.listed, report.datagrams),
        (8, 0, 13, 1),
        "{report:?}"
    );
    assert_eq!(table(&a), kept, "exactly the others are left");
    match proc_view(&a) {
        Some(pairs) => assert_eq!(pairs, orig_pairs(&kept), "the kernel's own view"),
        None => eprintln!("no /proc/net/nf_conntrack: checked through the dump only"),
    }

    // One family only: the dump lists that family's entries.
    let report = a
        .run_in(|| ConntrackNetlink.cut(&[ip("fd09::3")]))
        .expect("enter a")
        .expect("cut");
    assert_eq!((report.deleted, report.listed), (2, 2), "{report:?}");
    assert!(table(&a).iter().all(|e| e.orig.dst() != ip("fd09::3")));
    drop((streams, listener));
}

#[test]
fn cuts_a_thousand_entries_in_one_call() {
    if !root_or_skip("firewall::conntrack::cuts_a_thousand_entries_in_one_call") {
        return;
    }
    let Pair { a, b: _b } = pair("ct-many");
    a.run_in(|| -> io::Result<()> {
        let s = UdpSocket::bind("10.9.0.1:0")?;
        for port in 20_000..21_000u16 {
            s.send_to(b"x", (v4("10.9.0.2"), port))?;
        }
        for port in 20_000..20_010u16 {
            s.send_to(b"x", (v4("10.9.0.3"), port))?;
        }
        Ok(())
    })
    .expect("enter a")
    .expect("udp");
    assert_eq!(table(&a).len(), 1010);

    let (report, took) = a
        .run_in(|| {
            let t = Instant::now();
            let r = ConntrackNetlink.cut(&[ip("10.9.0.2")]);
            (r, t.elapsed())
        })
        .expect("enter a");
    let report = report.expect("cut");
    assert_eq!(
        (report.deleted, report.vanished, report.listed),
        (1000, 0, 1010),
        "{report:?}"
    );
    assert_eq!(report.datagrams, 1, "one sendmsg for all deletes");
    eprintln!("cut 1,000 of 1,010 entries in {took:?}");
    let left = table(&a);
    assert_eq!(left.len(), 10);
    assert!(left.iter().all(|e| e.orig.dst() == ip("10.9.0.3")));
}

#[test]
fn an_entry_gone_meanwhile_is_not_an_error() {
    if !root_or_skip("firewall::conntrack::an_entry_gone_meanwhile_is_not_an_error") {
        return;
    }
    let Pair { a, b: _b } = pair("ct-gone");
    for port in [53, 54, 55] {
        udp_from(&a, "10.9.0.1:0", &format!("10.9.0.2:{port}"));
    }
    let stale: Vec<Entry> = table(&a).into_iter().collect();
    assert_eq!(stale.len(), 3);
    // All three go; then one's tuple comes back as a new entry.
    a.run_in(|| ConntrackNetlink.cut(&[ip("10.9.0.2")]))
        .expect("enter a")
        .expect("first cut");
    let (sport, dport) = ports(&stale[0]);
    udp_from(&a, &format!("10.9.0.1:{sport}"), &format!("10.9.0.2:{dport}"));
    let back: Vec<Entry> = table(&a).into_iter().collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].orig, stale[0].orig);
    // Deletes from the old listing of the two that did not come back: gone.
    let delete = |entries: &[Entry]| {
        a.run_in(|| {
            delete_on(
                &open_socket().map_err(|(what, source)| ConntrackError::Io { what, source })?,
                entries,
                1,
            )
        })
        .expect("enter a")
        .expect("deletes of gone entries are fine")
    };
    let done = delete(&stale[1..]);
    assert_eq!((done.tally.deleted, done.tally.vanished, done.datagrams), (0, 2, 1));
    // The tuple that came back, with an id that is not its own: the kernel
    // refuses it as not found. (The old listing's id may be its own: the id
    // hashes the entry's address and tuple, and a new entry can take both.)
    let other_id = Entry {
        id: back[0].id.map(|id| id ^ 1),
        ..back[0]
    };
    let done = delete(&[other_id]);
    assert_eq!((done.tally.deleted, done.tally.vanished), (0, 1));
    assert_eq!(table(&a).len(), 1, "the entry with another id stays");
    let done = delete(&back);
    assert_eq!((done.tally.deleted, done.tally.vanished), (1, 0));
    assert!(table(&a).is_empty());
}

/// The ports of a listed UDP entry.
fn ports(e: &Entry) -> (u16, u16) {
    match e.orig.l4 {
        L4::Ports { src, dst } => (src, dst),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_detached_cut_happens_in_the_callers_namespace() {
    if !root_or_skip("firewall::conntrack::a_detached_cut_happens_in_the_callers_namespace") {
        return;
    }
    let Pair { a, b: _b } = pair("ct-bg");
    udp_from(&a, "10.9.0.1:0", "10.9.0.2:53");
    udp_from(&a, "10.9.0.1:0", "10.9.0.3:53");
    assert_eq!(table(&a).len(), 2);
    a.run_in(|| ConntrackNetlink.flush_detached(vec![ip("10.9.0.2")]))
        .expect("enter a");
    let gone = bulkhead_netns::eventually(WAIT, || Ok(table(&a).len() == 1)).expect("wait");
    assert!(gone, "{:?}", table(&a));
    assert_eq!(
        a.run_in(|| ConntrackNetlink.flush(&[ip("10.9.0.3")]))
            .expect("enter a")
            .expect("flush"),
        1
    );
    assert!(table(&a).is_empty());
}

#[test]
fn a_burst_of_detached_cuts_is_cut_in_a_few_walks() {
    if !root_or_skip("firewall::conntrack::a_burst_of_detached_cuts_is_cut_in_a_few_walks") {
        return;
    }
    let Pair { a, b: _b } = pair("ct-burst");
    a.ip(&["route", "add", "10.9.1.0/24", "via", "10.9.0.2"])
        .expect("route");
    let addrs: Vec<IpAddr> = (1..=200u8).map(|x| IpAddr::from([10, 9, 1, x])).collect();
    a.run_in(|| -> io::Result<()> {
        let s = UdpSocket::bind("10.9.0.1:0")?;
        for to in &addrs {
            s.send_to(b"x", (*to, 53))?;
        }
        s.send_to(b"x", (v4("10.9.0.3"), 53))?;
        Ok(())
    })
    .expect("enter a")
    .expect("udp");
    assert_eq!(table(&a).len(), 201);
    let (took_detached, left) = a
        .run_in(|| {
            let t = Instant::now();
            for to in &addrs {
                ConntrackNetlink.flush_detached(vec![*to]);
            }
            let left = bulkhead_netns::eventually(WAIT, || Ok(table(&a).len() == 1)).expect("wait");
            (t.elapsed(), left)
        })
        .expect("enter a");
    assert!(left, "{:?}", table(&a));
    assert!(table(&a).iter().all(|e| e.orig.dst() == ip("10.9.0.3")));
    let netns = a.run_in(current_netns).expect("enter a").expect("namespace");
    let walks = detached_walks().get(&netns).copied().unwrap_or_default();
    assert!((1..=50).contains(&walks), "{walks} dumps for 200 addresses");
    // The same cuts one call each, for comparison (printed, not asserted).
    a.run_in(|| -> io::Result<()> {
        let s = UdpSocket::bind("10.9.0.1:0")?;
        for to in &addrs {
            s.send_to(b"x", (*to, 53))?;
        }
        Ok(())
    })
    .expect("enter a")
    .expect("udp");
    let took_one_by_one = a
        .run_in(|| {
            let t = Instant::now();
            for to in &addrs {
                assert_eq!(ConntrackNetlink.flush(&[*to]).expect("flush"), 1);
            }
            t.elapsed()
        })
        .expect("enter a");
    eprintln!("200 one-address cuts: detached {took_detached:?} in {walks} dumps (with polling), one by one {took_one_by_one:?}");
}

/// An entry with accounting on: its mark and both directions' counters
/// read (nested, 64-bit, as `ctnetlink_dump_acct` writes them).
#[test]
fn counters_and_mark_read_from_an_accounted_entry() {
    let entry = dumped()[1];
    let mut msg = encode_one(&Entry { id: None, ..entry }, 1);
    let attr = |ty: u16, payload: &[u8]| {
        let mut a = Vec::new();
        a.extend_from_slice(&u16::try_from(4 + payload.len()).expect("small").to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    };
    let counters = |packets: u64, bytes: u64| {
        let mut inner = attr(CTA_COUNTERS_PACKETS, &packets.to_be_bytes());
        inner.extend(attr(CTA_COUNTERS_BYTES, &bytes.to_be_bytes()));
        inner
    };
    msg.extend(attr(CTA_MARK, &0x0020_0000u32.to_be_bytes()));
    msg.extend(attr(CTA_COUNTERS_ORIG | 0x8000, &counters(10, 1028)));
    msg.extend(attr(CTA_COUNTERS_REPLY | 0x8000, &counters(3, 300)));
    let len = u32::try_from(msg.len()).expect("small");
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    let mut malformed = 0;
    let read = parse_entry(&msg[NLMSG_HDRLEN..], &mut malformed).expect("reads");
    assert_eq!(malformed, 0);
    assert_eq!(read.mark, Some(0x0020_0000));
    assert_eq!(
        read.counters,
        Some(FlowCounters {
            orig: (10, 1028),
            reply: (3, 300)
        })
    );
    // One direction's counters alone are no counters.
    let half = &msg[..msg.len() - attr(CTA_COUNTERS_REPLY, &counters(3, 300)).len()];
    let read = parse_entry(&half[NLMSG_HDRLEN..], &mut malformed).expect("reads");
    assert_eq!(read.counters, None);
}
