//! The answer cache: upstream answers kept for their TTL (the smallest TTL of
//! the answer's records), negative answers (NXDOMAIN, no data) for the SOA's
//! negative TTL (RFC 2308), at most `capacity` entries; when full the oldest
//! insertion goes first. Time is an argument: no clock is read here.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, Record, RecordType};

use super::hit::WireAnswer;

/// Longest a positive answer is kept (a day), whatever its TTL says.
const MAX_TTL: u32 = 86_400;
/// Longest a negative answer is kept (RFC 2308 suggests 1-3 hours).
const MAX_NEGATIVE_TTL: u32 = 3_600;
/// A negative answer without an SOA is kept this long.
const DEFAULT_NEGATIVE_TTL: u32 = 60;
/// Answers larger than this (encoded) are not kept: one big TXT answer per
/// question must not fill a router's memory.
pub const MAX_ENTRY_BYTES: usize = 4096;
/// Bytes the cache may hold per entry of its capacity, on average (the
/// budget is `capacity` × this, at most [`MAX_CACHE_BYTES`]).
const BYTES_PER_ENTRY: usize = 512;
/// The cache never holds more than this many bytes of answers.
pub const MAX_CACHE_BYTES: usize = 16 << 20;

/// What the cache is keyed by: the lower-case name, the type, and whether the
/// client wants DNSSEC records (answers differ).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Lower-case name, no trailing dot.
    pub name: String,
    /// The type asked.
    pub qtype: RecordType,
    /// DNSSEC OK.
    pub dnssec_ok: bool,
    /// Checking disabled: an answer not validated upstream is never given
    /// to a client that wants validation.
    pub checking_disabled: bool,
    /// Which upstreams answered: answers of the tunnel's or of a zone's own
    /// resolver (a family-safe one) are never given to others.
    pub source: AnswerSource,
}

/// Which upstream group an answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum AnswerSource {
    /// `dns.upstreams`.
    #[default]
    Default,
    /// The tunnel's upstreams.
    Tunnel,
    /// A zone's own upstreams.
    Zone(crate::config::ZoneId),
}

/// One answer as kept: encoded, as a cache hit sends it (`hit.rs`); the
/// paths that need records decode it.
#[derive(Debug, Clone)]
struct Entry {
    wire: WireAnswer,
    /// Its addresses fill domain sets: a hit must wait for their holds.
    selected: bool,
    stored: Instant,
    ttl: u32,
    serial: u64,
}

/// An answer taken from the cache, TTLs already lowered by its age.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// NOERROR or NXDOMAIN.
    pub code: ResponseCode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of a negative answer).
    pub authorities: Vec<Record>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries now.
    pub entries: usize,
    /// Answers given from the cache.
    pub hits: u64,
    /// Questions it could not answer.
    pub misses: u64,
    /// Entries pushed out to make room.
    pub evicted: u64,
    /// Bytes of answers held.
    pub bytes: usize,
}

/// The cache.
#[derive(Debug)]
pub struct AnswerCache {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<CacheKey, Entry>,
    order: VecDeque<(CacheKey, u64)>,
    serial: u64,
    stats: CacheStats,
}

impl AnswerCache {
    /// A cache of at most `capacity` answers (0: nothing is cached).
    pub fn new(capacity: usize) -> AnswerCache {
        AnswerCache {
            capacity,
            max_bytes: capacity.saturating_mul(BYTES_PER_ENTRY).min(MAX_CACHE_BYTES),
            bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
            serial: 0,
            stats: CacheStats::default(),
        }
    }

    /// The answer for `key` if one is fresh at `now`, as records.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Cached> {
        let Some((e, age)) = self.fresh(key, now) else {
            self.stats.misses += 1;
            if self.entries.get(key).is_some_and(|e| e.ttl <= age_of(e, now)) {
                if let Some(gone) = self.entries.remove(key) {
                    self.bytes -= gone.wire.len();
                }
            }
            return None;
        };
        let Some(message) = e.wire.decode() else {
            self.stats.misses += 1;
            return None;
        };
        self.stats.hits += 1;
        let lower = |records: Vec<Record>| {
            records
                .into_iter()
                .map(|mut r| {
                    r.ttl = r.ttl.saturating_sub(age).max(1);
                    r
                })
                .collect()
        };
        Some(Cached {
            code: message.metadata.response_code,
            answers: lower(message.answers),
            authorities: lower(message.authorities),
        })
    }

    /// The encoded answer for `key` if one is fresh at `now` and needs no
    /// domain-set holds, with its age in seconds; counts nothing (the
    /// caller counts the hit with [`AnswerCache::count_hit`] if it uses it).
    pub fn fresh_wire(&self, key: &CacheKey, now: Instant) -> Option<(&WireAnswer, u32)> {
        self.fresh(key, now)
            .filter(|(e, _)| !e.selected)
            .map(|(e, age)| (&e.wire, age))
    }

    /// Counts a hit answered from [`AnswerCache::fresh_wire`].
    pub fn count_hit(&mut self) {
        self.stats.hits += 1;
    }

    fn fresh(&self, key: &CacheKey, now: Instant) -> Option<(&Entry, u32)> {
        let e = self.entries.get(key)?;
        let age = age_of(e, now);
        (age < e.ttl).then_some((e, age))
    }

    /// Keeps an upstream answer if it may be kept (NOERROR or NXDOMAIN, a
    /// TTL above zero, at most [`MAX_ENTRY_BYTES`] encoded); returns the TTL
    /// it is kept for. `answers` and `authorities` are `wire`'s records
    /// (their TTLs decide); `selected`: its addresses fill domain sets. The
    /// oldest entries go to make room, by count and by bytes.
    pub fn put(
        &mut self,
        key: CacheKey,
        answers: &[Record],
        authorities: &[Record],
        wire: WireAnswer,
        selected: bool,
        now: Instant,
    ) -> Option<u32> {
        let bytes = wire.len();
        if self.capacity == 0 || bytes > MAX_ENTRY_BYTES {
            return None;
        }
        let ttl = cache_ttl(wire.code(), answers, authorities)?;
        if ttl == 0 {
            return None;
        }
        if let Some(replaced) = self.entries.remove(&key) {
            self.bytes -= replaced.wire.len();
        }
        while self.entries.len() >= self.capacity || self.bytes + bytes > self.max_bytes {
            let Some((old, serial)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.serial == serial) {
                if let Some(gone) = self.entries.remove(&old) {
                    self.bytes -= gone.wire.len();
                }
                self.stats.evicted += 1;
            }
        }
        self.serial += 1;
        self.order.push_back((key.clone(), self.serial));
        // Stale positions of replaced entries pile up in `order`; compact now and
        // then so it stays proportional to the cache.
        if self.order.len() > self.capacity.saturating_mul(2).max(64) {
            let entries = &self.entries;
            self.order
                .retain(|(k, s)| entries.get(k).is_some_and(|e| e.serial == *s) || k == &key);
        }
        self.entries.insert(
            key,
            Entry {
                wire,
                selected,
                stored: now,
                ttl,
                serial: self.serial,
            },
        );
        self.bytes += bytes;
        Some(ttl)
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            bytes: self.bytes,
            ..self.stats
        }
    }
}

/// Whole seconds since `e` was kept.
fn age_of(e: &Entry, now: Instant) -> u32 {
    u32::try_from(now.saturating_duration_since(e.stored).as_secs()).unwrap_or(u32::MAX)
}

/// How long an answer may be kept, or `None` if it may not.
pub fn cache_ttl(code: ResponseCode, answers: &[Record], authorities: &[Record]) -> Option<u32> {
    match code {
        ResponseCode::NoError if !answers.is_empty() => answers.iter().map(|r| r.ttl).min().map(|t| t.min(MAX_TTL)),
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let soa = authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            });
            Some(soa.unwrap_or(DEFAULT_NEGATIVE_TTL).min(MAX_NEGATIVE_TTL))
        }
        _ => None,
    }
}

/// A duration in whole seconds, for callers that keep `Instant`s.
pub fn secs(d: u32) -> Duration {
    Duration::from_secs(u64::from(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::Name;

    fn key(n: &str) -> CacheKey {
        CacheKey {
            name: n.into(),
            qtype: RecordType::A,
            dnssec_ok: false,
            checking_disabled: false,
            source: AnswerSource::Default,
        }
    }

    /// Keeps `answers`/`authorities` as the answer to `name`.
    fn put(
        c: &mut AnswerCache,
        name: &str,
        code: ResponseCode,
        answers: &[Record],
        authorities: &[Record],
        now: Instant,
    ) -> Option<u32> {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        m.metadata.response_code = code;
        m.add_query(Query::query(
            Name::from_ascii(format!("{name}.")).expect("name"),
            RecordType::A,
        ));
        m.insert_answers(answers.to_vec());
        m.insert_authorities(authorities.to_vec());
        let wire = WireAnswer::encode(&m).expect("encodes");
        c.put(key(name), answers, authorities, wire, false, now)
    }

    /// `n` A records for `name` (16 bytes each, encoded).
    fn many(name: &str, n: u8) -> Vec<Record> {
        (0..n).map(|i| a(&format!("{name}."), 60, i)).collect()
    }

    fn a(n: &str, ttl: u32, last: u8) -> Record {
        crate::dns::wire::address_record(
            &Name::from_ascii(n).expect("name"),
            ttl,
            std::net::IpAddr::from([192, 0, 2, last]),
        )
    }

    #[test]
    fn answers_live_for_their_smallest_ttl_with_ttls_lowered_by_age() {
        let t0 = Instant::now();
        let mut c = AnswerCache::new(10);
        let kept = put(
            &mut c,
            "www.test",
            ResponseCode::NoError,
            &[a("www.test.", 300, 1), a("www.test.", 30, 2)],
            &[],
            t0,
        );
        assert_eq!(kept, Some(30));
        let hit = c.get(&key("www.test"), t0 + secs(10)).expect("fresh");
        assert_eq!(hit.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(), vec![290, 20]);
        assert!(c.get(&key("www.test"), t0 + secs(30)).is_none(), "expired at its TTL");
        assert_eq!(c.stats().hits, 1);
        assert_eq!(c.stats().misses, 1);
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn negative_answers_use_the_soa_and_errors_are_not_kept() {
        let t0 = Instant::now();
        let mut c = AnswerCache::new(10);
        let zone = Name::from_ascii("test.").expect("name");
        let soa = Record::from_rdata(
            zone.clone(),
            900,
            RData::SOA(SOA::new(zone.clone(), zone.clone(), 1, 60, 60, 60, 120)),
        );
        assert_eq!(
            put(&mut c, "no.test", ResponseCode::NXDomain, &[], &[soa], t0),
            Some(120)
        );
        assert_eq!(put(&mut c, "x.test", ResponseCode::NXDomain, &[], &[], t0), Some(60));
        assert_eq!(put(&mut c, "y.test", ResponseCode::ServFail, &[], &[], t0), None);
        assert_eq!(
            put(&mut c, "z.test", ResponseCode::NoError, &[a("z.test.", 0, 1)], &[], t0),
            None
        );
        assert_eq!(c.get(&key("no.test"), t0).map(|h| h.code), Some(ResponseCode::NXDomain));
    }

    #[test]
    fn a_full_cache_drops_its_oldest_entry_and_stays_bounded() {
        let t0 = Instant::now();
        let mut c = AnswerCache::new(3);
        for i in 0..1000u32 {
            let name = format!("n{}.test", i % 7);
            put(
                &mut c,
                &name,
                ResponseCode::NoError,
                &[a(&format!("{name}."), 60, 1)],
                &[],
                t0,
            );
            assert!(c.entries.len() <= 3);
            assert!(c.order.len() <= 64 + 1, "{}", c.order.len());
        }
        assert!(c.stats().evicted > 0);
        let newest = format!("n{}.test", 999 % 7);
        assert!(c.get(&key(&newest), t0).is_some());
        assert_eq!(
            put(
                &mut AnswerCache::new(0),
                "a",
                ResponseCode::NoError,
                &[a("a.", 60, 1)],
                &[],
                t0
            ),
            None
        );
        // By bytes: 10 entries' budget is 5,120 bytes; a ~4,000-byte answer
        // pushes older ones out, a ~4,800-byte one is not kept at all.
        let mut c = AnswerCache::new(10);
        for i in 0..5 {
            let name = format!("s{i}");
            put(&mut c, &name, ResponseCode::NoError, &many(&name, 30), &[], t0);
        }
        assert!((2_400..2_600).contains(&c.stats().bytes), "{:?}", c.stats());
        let big = put(&mut c, "big", ResponseCode::NoError, &many("big", 220), &[], t0);
        assert_eq!(big, Some(60), "{:?}", c.stats());
        assert!(c.stats().bytes <= 5120, "{:?}", c.stats());
        assert!(c.stats().evicted >= 3, "{:?}", c.stats());
        assert!(c.get(&key("big"), t0).is_some());
        assert_eq!(
            put(
                &mut c,
                "huge",
                ResponseCode::NoError,
                &[many("huge", 255), many("huge", 45)].concat(),
                &[],
                t0
            ),
            None
        );
    }
}
