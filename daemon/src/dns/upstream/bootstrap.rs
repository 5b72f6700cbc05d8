//! Finding the address of an upstream given by name (`tls://NAME`,
//! `https://NAME/PATH`): an A question (then AAAA) to the `dns.bootstrap`
//! servers, in plain DNS on the group's sockets (a tunnel group's carry the
//! tunnel mark, so a tunnelled device's bootstrap never leaves by the WAN).
//! The address is kept for the answer's TTL (clamped) and forgotten when the
//! upstream fails, so a moved server is found again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// An address is kept at least this long (a TTL of 0 would ask before every
/// question).
pub const MIN_KEEP: Duration = Duration::from_secs(30);
/// And at most this long.
pub const MAX_KEEP: Duration = Duration::from_secs(24 * 3600);

/// The question for `name`'s `qtype` records, recursion desired.
pub fn question(name: &str, qtype: RecordType, id: u16) -> Result<Message, String> {
    let name = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| format!("`{name}`: {e}"))?;
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, qtype));
    Ok(m)
}

/// The addresses an answer gives (A and AAAA records of its answer section,
/// CNAME chains included), and how long to keep them.
pub fn addresses(answer: &Message) -> (Vec<IpAddr>, Duration) {
    let mut ips = Vec::new();
    let mut ttl = u32::MAX;
    for record in &answer.answers {
        let ip = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        ips.push(ip);
        ttl = ttl.min(record.ttl);
    }
    let keep = Duration::from_secs(u64::from(ttl)).clamp(MIN_KEEP, MAX_KEEP);
    (ips, keep)
}

/// The first address an upstream may be asked at: never this host (the
/// unspecified address), and for the tunnel never loopback (a local stub
/// answers whatever the mark, and forwards by the WAN).
pub fn usable(ips: &[IpAddr], tunnel: bool) -> Option<IpAddr> {
    ips.iter()
        .copied()
        .find(|ip| !(ip.is_unspecified() || (tunnel && ip.is_loopback())))
}

/// Addresses found, by name, until they expire.
#[derive(Debug, Default)]
pub struct Addresses {
    known: Mutex<HashMap<String, (IpAddr, Instant)>>,
}

impl Addresses {
    /// `name`'s address, if found and not expired.
    pub fn get(&self, name: &str, now: Instant) -> Option<IpAddr> {
        let known = self.known.lock().ok()?;
        known.get(name).filter(|(_, until)| now < *until).map(|(ip, _)| *ip)
    }

    /// Keeps `ip` for `name` for `keep`.
    pub fn put(&self, name: &str, ip: IpAddr, keep: Duration, now: Instant) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(name.to_string(), (ip, now + keep));
        }
    }

    /// Forgets `name` (its upstream failed: ask again next time).
    pub fn forget(&self, name: &str) {
        if let Ok(mut known) = self.known.lock() {
            known.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::Record;

    #[test]
    fn the_question_asks_for_the_name_with_recursion() {
        let q = question("dns.example.test", RecordType::AAAA, 7).expect("question");
        assert_eq!(q.metadata.id, 7);
        assert!(q.metadata.recursion_desired);
        assert_eq!(q.queries[0].name().to_ascii(), "dns.example.test.");
        assert_eq!(q.queries[0].query_type(), RecordType::AAAA);
        assert!(question("bad..name", RecordType::A, 1).is_err());
    }

    #[test]
    fn addresses_follow_the_answer_and_its_smallest_ttl_clamped() {
        let q = question("dns.example.test", RecordType::A, 7).expect("question");
        let mut answer = q.clone();
        answer.metadata.message_type = MessageType::Response;
        let name = Name::from_ascii("dns.example.test.").expect("name");
        let target = Name::from_ascii("resolver.example.test.").expect("name");
        answer.add_answer(Record::from_rdata(name, 600, RData::CNAME(CNAME(target.clone()))));
        answer.add_answer(Record::from_rdata(target.clone(), 120, RData::A(A::new(192, 0, 2, 53))));
        answer.add_answer(Record::from_rdata(
            target.clone(),
            300,
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 0x53)),
        ));
        let (ips, keep) = addresses(&answer);
        assert_eq!(
            ips,
            [
                "192.0.2.53".parse::<IpAddr>().expect("ip"),
                "2001:db8:53::53".parse().expect("ip")
            ]
        );
        assert_eq!(
            keep,
            Duration::from_secs(120),
            "the CNAME's TTL does not count, the smallest address's does"
        );
        let mut short = q.clone();
        short.add_answer(Record::from_rdata(target, 0, RData::A(A::new(192, 0, 2, 53))));
        assert_eq!(addresses(&short).1, MIN_KEEP);
        assert_eq!(addresses(&q), (Vec::new(), MAX_KEEP), "no address");
    }

    #[test]
    fn this_host_is_never_an_address_nor_loopback_for_the_tunnel() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let found = [ip("0.0.0.0"), ip("127.0.0.1"), ip("192.0.2.53")];
        assert_eq!(usable(&found, false), Some(ip("127.0.0.1")));
        assert_eq!(usable(&found, true), Some(ip("192.0.2.53")));
        assert_eq!(usable(&[ip("::1"), ip("::")], true), None);
    }

    #[test]
    fn addresses_expire_and_are_forgotten() {
        let a = Addresses::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.53".parse().expect("ip");
        assert_eq!(a.get("dns.example.test", t0), None);
        a.put("dns.example.test", ip, Duration::from_secs(60), t0);
        assert_eq!(a.get("dns.example.test", t0 + Duration::from_secs(59)), Some(ip));
        assert_eq!(a.get("dns.example.test", t0 + Duration::from_secs(60)), None, "expired");
        a.put("dns.example.test", ip, Duration::from_secs(60), t0);
        a.forget("dns.example.test");
        assert_eq!(a.get("dns.example.test", t0), None, "forgotten");
    }
}
