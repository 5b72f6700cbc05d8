//! The resolver's decisions, as a chain of steps with explicit control flow
//! (hickory-server's handler style), and no I/O: the server hands it a packet
//! and gets back either the answer, nothing (dropped and counted) or a
//! question to forward; after forwarding it hands back the upstream's answer
//! and gets the client's answer plus the addresses that must be in domain
//! sets **before** that answer is sent.
//!
//! `begin`: parse → who is asking (outsiders and blocked devices refused) →
//! rate limit → local names → local-only zones stop here → blocklists →
//! cache → forward.
//! `finish`: upstream failed → SERVFAIL; rebinding check; domain sets (CNAME
//! chains followed); cache; log.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde::{Deserialize, Serialize};

use super::blocklist::{Blocklists, Verdict};
use super::cache::{AnswerCache, AnswerSource, CacheKey, CacheStats};
use super::daily::{local_day, DailyCounts};
use super::hit::{QuickQuery, WireAnswer};
use super::local::{is_private, LocalAnswer, LocalNames, LOCAL_TTL};
use super::policy::{domain_sets_of, who_is_asking, Client, DnsSettings, RateLimiter, Refusal, Route};
use super::querylog::{Outcome, QueryLog, QueryLogEntry};
use super::wire::{address_record, encode, refusal, Question, Transport};
use crate::config::{BlockAnswer, DomainSetId};
use crate::core::InventorySnapshot;

/// Mozilla's canary domain: a resolver that says it does not exist tells
/// Firefox not to turn on its own DNS over HTTPS.
const DOH_CANARY: &str = "use-application-dns.net";

/// TTL of a blocked answer.
const BLOCK_TTL: u32 = 60;
/// A domain-set element outlives the answer that put it there by this much,
/// and lives at least [`HOLD_FLOOR`]: clients keep answers a little longer
/// than their TTL, and a connection opened just before expiry must still go
/// through the tunnel.
const HOLD_GRACE: u32 = 60;
/// See [`HOLD_GRACE`].
const HOLD_FLOOR: u32 = 300;

/// What to do with a packet.
#[derive(Debug)]
pub enum Begin {
    /// Send this to the client.
    Reply(Vec<u8>),
    /// Send nothing (malformed, over its rate, or an answer that cannot be encoded).
    Drop,
    /// Ask upstream.
    Forward(Pending),
    /// Send this, but only after the core holds these domain-set addresses
    /// (a cached answer for a selected domain); if it cannot, SERVFAIL.
    AfterHolds {
        /// The answer.
        reply: Vec<u8>,
        /// The SERVFAIL to send instead.
        servfail: Option<Vec<u8>>,
        /// What must be held first.
        holds: Vec<(DomainSetId, Vec<IpAddr>, u32)>,
    },
}

/// A question waiting for its upstream answer.
#[derive(Debug)]
pub struct Pending {
    /// The question.
    pub question: Question,
    /// Who asked.
    pub client: Client,
    /// How it came.
    pub transport: Transport,
    /// When it came.
    pub started: Instant,
}

/// The client's answer and what must be enforced first.
#[derive(Debug)]
pub struct Finished {
    /// The encoded answer (`None`: nothing to send).
    pub reply: Option<Vec<u8>>,
    /// Domain-set elements to hold (set, addresses, seconds) before replying.
    pub holds: Vec<(DomainSetId, Vec<IpAddr>, u32)>,
    /// The answer to cache once the holds are confirmed
    /// ([`Resolver::commit`]): never before, or a later question could be
    /// answered from the cache for addresses nobody holds.
    pub to_cache: Option<ToCache>,
}

/// An answer waiting to be cached.
#[derive(Debug)]
pub struct ToCache {
    key: CacheKey,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    wire: WireAnswer,
    selected: bool,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverStats {
    /// Questions answered (any way).
    pub answered: u64,
    /// Packets dropped as malformed.
    pub malformed: u64,
    /// Questions from outside the home or from blocked devices, refused.
    pub refused: u64,
    /// Questions dropped over a client's rate.
    pub rate_limited: u64,
    /// Answered from local names.
    pub local: u64,
    /// Blocked by a list.
    pub blocked: u64,
    /// Forwarded upstream.
    pub forwarded: u64,
    /// Upstream failed (SERVFAIL sent).
    pub failed: u64,
    /// Answers dropped as DNS rebinding.
    pub rebind: u64,
    /// Questions of local-only zones for internet names.
    pub not_allowed: u64,
}

/// The resolver's state.
pub struct Resolver {
    settings: DnsSettings,
    lists: Blocklists,
    list_names: Vec<String>,
    cache: AnswerCache,
    local: LocalNames,
    local_generation: Option<u64>,
    limiter: RateLimiter,
    log: QueryLog,
    stats: ResolverStats,
    /// Questions each list blocked (by list index).
    blocked_by_list: Vec<u64>,
    /// Per device and day: questions, blocked, most asked names.
    daily: DailyCounts,
    /// The local offset from UTC, and until when (Unix seconds) it holds:
    /// read once an hour, not per question.
    utc_offset: (i32, u64),
}

impl Resolver {
    /// A resolver with `lists` (built in the order of `settings.dns.blocklists`).
    pub fn new(settings: DnsSettings, lists: Blocklists) -> Resolver {
        let list_names = settings.dns.blocklists.iter().map(|b| b.name.clone()).collect();
        Resolver {
            cache: AnswerCache::new(settings.dns.cache_entries),
            limiter: RateLimiter::new(settings.dns.client_qps),
            log: QueryLog::new(settings.dns.query_log_entries),
            local: LocalNames::default(),
            local_generation: None,
            stats: ResolverStats::default(),
            blocked_by_list: vec![0; settings.dns.blocklists.len()],
            daily: DailyCounts::default(),
            utc_offset: (0, 0),
            list_names,
            lists,
            settings,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// Counters.
    pub fn stats(&self) -> (ResolverStats, CacheStats) {
        (self.stats, self.cache.stats())
    }

    /// The query log.
    pub fn log(&self) -> &QueryLog {
        &self.log
    }

    /// The per-device day counts.
    pub fn daily(&self) -> &DailyCounts {
        &self.daily
    }

    /// The per-device day counts, to restore or take what changed.
    pub fn daily_mut(&mut self) -> &mut DailyCounts {
        &mut self.daily
    }

    /// The local day of `wall` (Unix seconds).
    pub fn day_of(&mut self, wall: u64) -> i64 {
        if wall >= self.utc_offset.1 {
            let offset = crate::clock::local_utc_offset(i64::try_from(wall).unwrap_or(i64::MAX));
            self.utc_offset = (offset, wall - wall % 3_600 + 3_600);
        }
        local_day(wall, self.utc_offset.0)
    }

    /// Questions each list blocked, by list name.
    pub fn blocked_by_list(&self) -> impl Iterator<Item = (&str, u64)> {
        self.list_names
            .iter()
            .map(String::as_str)
            .zip(self.blocked_by_list.iter().copied())
    }

    /// Replaces the blocklists (a URL list was downloaded again).
    pub fn set_blocklists(&mut self, lists: Blocklists) {
        self.lists = lists;
    }

    /// The blocklists.
    pub fn blocklists(&self) -> (&Blocklists, &[String]) {
        (&self.lists, &self.list_names)
    }

    /// Step one for a client's packet.
    pub fn begin(
        &mut self,
        packet: &[u8],
        src: SocketAddr,
        transport: Transport,
        snapshot: &InventorySnapshot,
        now: Instant,
        wall: u64,
    ) -> Begin {
        if let Some(answer) = self.begin_quick(packet, src, transport, snapshot, now, wall) {
            return answer;
        }
        let question = match Question::parse(packet) {
            Ok(q) => q,
            Err(bad) => {
                self.stats.malformed += 1;
                return refusal(&bad)
                    .and_then(|m| encode(&m, 512))
                    .map_or(Begin::Drop, Begin::Reply);
            }
        };
        // A name with bytes outside what host names use comes out escaped
        // (`\\000`) and longer than any list entry: it would slip past the
        // blocklists. No real name needs it.
        if question.key.contains('\\') {
            self.stats.malformed += 1;
            return self.reply(&question.response(ResponseCode::Refused), &question, transport);
        }
        let client = match who_is_asking(&self.settings, snapshot, src.ip()) {
            Ok(c) => c,
            Err(Refusal::Outsider | Refusal::Blocked) => {
                self.stats.refused += 1;
                return self.reply(&question.response(ResponseCode::Refused), &question, transport);
            }
        };
        // Over TCP the handshake proves the address; over UDP a flood from one
        // address (or spoofing it) must not starve the others.
        if transport == Transport::Udp && !self.limiter.allow(client.ip, now) {
            self.stats.rate_limited += 1;
            return Begin::Drop;
        }
        let started = now;
        let pending = Pending {
            question,
            client,
            transport,
            started,
        };
        if let Some(answer) = self.answer_locally(&pending, snapshot, now, wall) {
            return answer;
        }
        if pending.client.route == Route::LocalOnly {
            self.stats.not_allowed += 1;
            let m = pending.question.response(ResponseCode::Refused);
            return self.done(&pending, m, Outcome::NotAllowed, now, wall);
        }
        // Firefox's canary: NXDOMAIN turns its default DNS-over-HTTPS off, so
        // its questions come here (only while the bypass guards are on).
        if pending.question.key == DOH_CANARY && self.settings.dns.bypass != crate::config::BypassMode::Off {
            let m = pending.question.response(ResponseCode::NXDomain);
            return self.done(&pending, m, Outcome::Local, now, wall);
        }
        if let Some(answer) = self.answer_blocked(&pending, now, wall) {
            return answer;
        }
        let key = pending_key(&pending);
        if let Some(hit) = self.cache.get(&key, now) {
            let holds = self.holds_for(&pending.question.key, &hit.answers);
            let mut m = pending.question.response(hit.code);
            m.insert_answers(hit.answers);
            m.insert_authorities(hit.authorities);
            let servfail = (!holds.is_empty())
                .then(|| encode(&pending.question.response(ResponseCode::ServFail), 512))
                .flatten();
            return match (self.done(&pending, m, Outcome::Cached, now, wall), holds.is_empty()) {
                (Begin::Reply(reply), false) => Begin::AfterHolds { reply, servfail, holds },
                (other, _) => other,
            };
        }
        self.stats.forwarded += 1;
        Begin::Forward(pending)
    }

    /// The cache-hit path in bytes (`hit.rs`): the same chain as below
    /// for a question of the common shape whose fresh answer is cached and
    /// fills no domain set, without building messages. `None` (nothing
    /// counted, no token taken) for anything else: the full path decides.
    fn begin_quick(
        &mut self,
        packet: &[u8],
        src: SocketAddr,
        transport: Transport,
        snapshot: &InventorySnapshot,
        now: Instant,
        wall: u64,
    ) -> Option<Begin> {
        let mut query = QuickQuery::read(packet)?;
        // Refusals, local names, local-only zones, Firefox's canary and
        // blocked names are the full path's (they are not cache hits).
        let client = who_is_asking(&self.settings, snapshot, src.ip()).ok()?;
        if client.route == Route::LocalOnly || self.may_be_local(&query.key) || query.key == DOH_CANARY {
            return None;
        }
        if let Verdict::Blocked { .. } = self.lists.check(&query.key, client.blocklists) {
            return None;
        }
        // The name moves into the key (and on into the log): the answer is
        // built from the packet's bytes, not from the key.
        let name = std::mem::take(&mut query.key);
        let key = cache_key(name, query.qtype, query.edns, query.checking_disabled, &client);
        let (reply, code) = {
            let (wire, age) = self.cache.fresh_wire(&key, now)?;
            (
                wire.reply(&query, packet, age, query.payload_limit(transport))?,
                wire.code(),
            )
        };
        if transport == Transport::Udp && !self.limiter.allow(client.ip, now) {
            self.stats.rate_limited += 1;
            return Some(Begin::Drop);
        }
        self.cache.count_hit();
        self.note(&client, key.name, query.qtype, code, Outcome::Cached, 0, wall);
        Some(Begin::Reply(reply))
    }

    /// Step two: the upstream's answer (or why there is none).
    pub fn finish(
        &mut self,
        pending: Pending,
        upstream: Result<(Message, String), String>,
        now: Instant,
        wall: u64,
    ) -> Finished {
        let q = &pending.question;
        let (answer, from) = match upstream {
            Ok(a) => a,
            Err(_) => {
                self.stats.failed += 1;
                let m = q.response(ResponseCode::ServFail);
                return Finished {
                    reply: self.done_bytes(&pending, m, Outcome::Failed, now, wall),
                    holds: Vec::new(),
                    to_cache: None,
                };
            }
        };
        let code = answer.metadata.response_code;
        // Only data records go on: an UPDATE-style empty record, or an OPT or
        // signature out of place, would make our answer one that clients (and
        // hickory itself) refuse to parse (found by fuzzing).
        let mut answers: Vec<Record> = answer.answers.into_iter().filter(forwardable).collect();
        let mut authorities: Vec<Record> = answer.authorities.into_iter().filter(forwardable).collect();
        let mut outcome = Outcome::Forwarded { upstream: from };
        if self.settings.dns.rebind_protection && self.rebinding(&q.key, &answers) {
            // dnsmasq's stop-dns-rebind: the answer's sections are dropped.
            tracing::warn!(name = %q.key.escape_debug(), client = %pending.client.ip, "possible DNS rebinding: private address in a public name's answer dropped");
            self.stats.rebind += 1;
            answers.clear();
            authorities.clear();
            outcome = Outcome::Rebind;
        }
        let holds = self.holds_for(&q.key, &answers);
        if !holds.is_empty() {
            // The client may keep the answer no longer than the set holds its
            // addresses (and a restart's adoption covers that).
            for r in answers.iter_mut() {
                r.ttl = r.ttl.min(HOLD_FLOOR);
            }
        }
        let keep = (outcome != Outcome::Rebind).then(|| (pending_key(&pending), answers.clone(), authorities.clone()));
        let mut m = q.response(code);
        m.insert_answers(answers);
        m.insert_authorities(authorities);
        let wire = keep.as_ref().and_then(|_| WireAnswer::encode(&m));
        let reply = self.done_bytes(&pending, m, outcome, now, wall);
        let to_cache = match (keep, wire, &reply) {
            (Some((key, answers, authorities)), Some(wire), Some(_)) => Some(ToCache {
                key,
                answers,
                authorities,
                wire,
                selected: !holds.is_empty(),
            }),
            _ => None,
        };
        if holds.is_empty() {
            if let Some(c) = to_cache {
                self.commit(c, now);
            }
            return Finished {
                reply,
                holds,
                to_cache: None,
            };
        }
        Finished { reply, holds, to_cache }
    }

    /// Caches an answer whose holds the core confirmed.
    pub fn commit(&mut self, c: ToCache, now: Instant) {
        self.cache
            .put(c.key, &c.answers, &c.authorities, c.wire, c.selected, now);
    }

    /// What a client at `from` would get for `name` and why, in words
    /// (`bulkhead dns test`); nothing is asked upstream or counted.
    pub fn explain(&self, snapshot: &InventorySnapshot, name: &str, from: IpAddr) -> String {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let mut out = Vec::new();
        let client = match who_is_asking(&self.settings, snapshot, from) {
            Ok(c) => c,
            Err(Refusal::Outsider) => return format!("{from} is not in the home: REFUSED"),
            Err(Refusal::Blocked) => return format!("{from} is a blocked device: REFUSED"),
        };
        let device = client
            .mac
            .map_or_else(|| "no known device".to_string(), |m| m.to_string());
        let zone = client.zone.as_ref().map_or("the router itself", |z| z.as_str());
        out.push(format!("client {} ({device}), zone {zone}", client.ip));
        let lists: Vec<&str> = self
            .list_names
            .iter()
            .enumerate()
            .filter(|(i, _)| u16::try_from(*i).is_ok_and(|i| client.blocklists.contains(super::blocklist::ListId(i))))
            .map(|(_, n)| n.as_str())
            .collect();
        out.push(format!(
            "blocklists: {}; query log: {}",
            if lists.is_empty() {
                "none".to_string()
            } else {
                lists.join(", ")
            },
            if client.log { "on" } else { "off" }
        ));
        let local = LocalNames::build(&self.settings.local_domain, &self.settings.router_addresses, snapshot);
        match local.lookup(&key) {
            LocalAnswer::Addresses(a) => {
                let a: Vec<String> = a.iter().map(ToString::to_string).collect();
                out.push(format!(
                    "local name: {}",
                    if a.is_empty() {
                        "no addresses".into()
                    } else {
                        a.join(", ")
                    }
                ));
                return out.join("\n");
            }
            LocalAnswer::Pointer(p) => {
                out.push(format!("local reverse name: {p}"));
                return out.join("\n");
            }
            LocalAnswer::NoSuchName => {
                out.push("local name that does not exist: NXDOMAIN (never asked upstream)".into());
                return out.join("\n");
            }
            LocalAnswer::NotLocal => {}
        }
        if client.route == Route::LocalOnly {
            out.push("its zone may not reach the internet: internet names are REFUSED".into());
            return out.join("\n");
        }
        let list_name =
            |l: super::blocklist::ListId| self.list_names.get(usize::from(l.0)).cloned().unwrap_or_default();
        match self.lists.check(&key, client.blocklists) {
            Verdict::Blocked { list } => {
                let answer = match self.settings.dns.block_answer {
                    BlockAnswer::Null => "0.0.0.0 / ::",
                    BlockAnswer::Nxdomain => "NXDOMAIN",
                };
                out.push(format!("blocked by list {}: {answer}", list_name(list)));
                return out.join("\n");
            }
            Verdict::Allowed { list } => out.push(format!("allowed by an exception in list {}", list_name(list))),
            Verdict::NotListed => out.push("on none of its lists".into()),
        }
        let sets: Vec<String> = domain_sets_of(&self.settings.domain_sets, &key)
            .map(ToString::to_string)
            .collect();
        if !sets.is_empty() {
            out.push(format!(
                "answers go into domain set(s) {} before the client gets them",
                sets.join(", ")
            ));
        }
        let (route, ups) = match client.route {
            Route::Tunnel if self.settings.dns.tunnel_upstreams.is_empty() => {
                ("through the tunnel", &self.settings.dns.upstreams)
            }
            Route::Tunnel => ("through the tunnel", &self.settings.dns.tunnel_upstreams),
            _ => ("directly", &self.settings.dns.upstreams),
        };
        let ups: Vec<String> = ups.iter().map(ToString::to_string).collect();
        out.push(if ups.is_empty() {
            "no upstream is configured: SERVFAIL".to_string()
        } else {
            format!("asked {route} of {} (unless cached)", ups.join(", "))
        });
        out.join("\n")
    }

    /// The local domain and its subdomains, single labels, reverse names.
    fn may_be_local(&self, key: &str) -> bool {
        let domain = self.settings.local_domain.as_str();
        !key.contains('.')
            || key.ends_with(".arpa")
            || key == domain
            || key.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
    }

    fn refresh_local(&mut self, snapshot: &InventorySnapshot) {
        if self.local_generation != Some(snapshot.generation) {
            self.local = LocalNames::build(&self.settings.local_domain, &self.settings.router_addresses, snapshot);
            self.local_generation = Some(snapshot.generation);
        }
    }

    fn answer_locally(&mut self, p: &Pending, snapshot: &InventorySnapshot, now: Instant, wall: u64) -> Option<Begin> {
        let q = &p.question;
        // Only names the home may own need the local table (rebuilt when the
        // inventory changed): the common question for an internet name costs
        // nothing here.
        if !self.may_be_local(&q.key) {
            return None;
        }
        // A single label asked for another type than an address is a TLD
        // question (`com DS`, `org NS`: validating stubs need them): upstream.
        if !q.key.contains('.') && !matches!(q.qtype, RecordType::A | RecordType::AAAA) {
            return None;
        }
        self.refresh_local(snapshot);
        let m = match self.local.lookup(&q.key) {
            LocalAnswer::NotLocal => return None,
            LocalAnswer::NoSuchName => q.response(ResponseCode::NXDomain),
            LocalAnswer::Addresses(addresses) => {
                let mut m = q.response(ResponseCode::NoError);
                m.metadata.authoritative = true;
                for a in addresses {
                    let wanted = matches!(
                        (q.qtype, a),
                        (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_))
                    );
                    if wanted {
                        m.add_answer(address_record(&q.name, LOCAL_TTL, a));
                    }
                }
                m
            }
            LocalAnswer::Pointer(host) => {
                let mut m = q.response(ResponseCode::NoError);
                m.metadata.authoritative = true;
                if q.qtype == RecordType::PTR {
                    if let Ok(target) = Name::from_ascii(format!("{host}.")) {
                        m.add_answer(Record::from_rdata(
                            q.name.clone(),
                            LOCAL_TTL,
                            RData::PTR(hickory_proto::rr::rdata::PTR(target)),
                        ));
                    }
                }
                m
            }
        };
        self.stats.local += 1;
        Some(self.done(p, m, Outcome::Local, now, wall))
    }

    fn answer_blocked(&mut self, p: &Pending, now: Instant, wall: u64) -> Option<Begin> {
        let list = match self.lists.check(&p.question.key, p.client.blocklists) {
            Verdict::Blocked { list } => list,
            Verdict::Allowed { .. } | Verdict::NotListed => return None,
        };
        self.stats.blocked += 1;
        if let Some(n) = self.blocked_by_list.get_mut(usize::from(list.0)) {
            *n += 1;
        }
        let q = &p.question;
        let m = match self.settings.dns.block_answer {
            BlockAnswer::Nxdomain => q.response(ResponseCode::NXDomain),
            BlockAnswer::Null => {
                let mut m = q.response(ResponseCode::NoError);
                match q.qtype {
                    RecordType::A => m.add_answer(address_record(&q.name, BLOCK_TTL, [0, 0, 0, 0].into())),
                    RecordType::AAAA => m.add_answer(address_record(
                        &q.name,
                        BLOCK_TTL,
                        std::net::Ipv6Addr::UNSPECIFIED.into(),
                    )),
                    _ => &mut m,
                };
                m
            }
        };
        let name = self.list_names.get(usize::from(list.0)).cloned().unwrap_or_default();
        Some(self.done(p, m, Outcome::Blocked { list: name }, now, wall))
    }

    fn rebinding(&self, key: &str, answers: &[Record]) -> bool {
        let allowed = |d: &String| key == d || key.ends_with(&format!(".{d}"));
        if self.settings.dns.rebind_allow.iter().any(allowed) {
            return false;
        }
        // Private ranges, the carrier-grade NAT range, and the home's own
        // networks (its global IPv6 prefix is as internal as 10/8).
        let internal = |ip: IpAddr| {
            is_private(ip)
                || matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
                || self.settings.home_networks.iter().any(|n| n.contains(&ip))
        };
        answers.iter().any(|r| match &r.data {
            RData::A(a) => internal(IpAddr::V4(a.0)),
            RData::AAAA(a) => internal(IpAddr::V6(a.0)),
            _ => false,
        })
    }

    /// Addresses of an answer that belong in domain sets: the question's name
    /// or any name of its CNAME chain is a listed domain (or under one).
    fn holds_for(&self, key: &str, answers: &[Record]) -> Vec<(DomainSetId, Vec<IpAddr>, u32)> {
        if self.settings.domain_sets.is_empty() {
            return Vec::new();
        }
        let mut names = vec![key.to_string()];
        for r in answers {
            if let RData::CNAME(c) = &r.data {
                names.push(super::wire::name_key(&r.name));
                names.push(super::wire::name_key(&c.0));
            }
        }
        let sets: BTreeSet<&DomainSetId> = names
            .iter()
            .flat_map(|n| domain_sets_of(&self.settings.domain_sets, n))
            .collect();
        if sets.is_empty() {
            return Vec::new();
        }
        let mut addresses = Vec::new();
        let mut ttl = u32::MAX;
        for r in answers {
            let found = record_addresses(&r.data);
            if found.is_empty() {
                continue;
            }
            addresses.extend(found);
            ttl = ttl.min(r.ttl);
        }
        if addresses.is_empty() {
            return Vec::new();
        }
        let secs = ttl.max(HOLD_FLOOR).saturating_add(HOLD_GRACE);
        sets.into_iter().map(|s| (s.clone(), addresses.clone(), secs)).collect()
    }

    fn reply(&self, m: &Message, q: &Question, transport: Transport) -> Begin {
        encode(m, q.payload_limit(transport)).map_or(Begin::Drop, Begin::Reply)
    }

    fn done(&mut self, p: &Pending, m: Message, outcome: Outcome, now: Instant, wall: u64) -> Begin {
        self.done_bytes(p, m, outcome, now, wall)
            .map_or(Begin::Drop, Begin::Reply)
    }

    fn done_bytes(&mut self, p: &Pending, m: Message, outcome: Outcome, now: Instant, wall: u64) -> Option<Vec<u8>> {
        let micros = u64::try_from(now.saturating_duration_since(p.started).as_micros()).unwrap_or(u64::MAX);
        let name = if p.client.log {
            p.question.key.clone()
        } else {
            String::new()
        };
        let code = m.metadata.response_code;
        self.note(&p.client, name, p.question.qtype, code, outcome, micros, wall);
        encode(&m, p.question.payload_limit(p.transport))
    }

    /// Counts an answer, and logs it if the client's questions are logged.
    #[allow(clippy::too_many_arguments)]
    fn note(
        &mut self,
        client: &Client,
        name: String,
        qtype: RecordType,
        code: ResponseCode,
        outcome: Outcome,
        micros: u64,
        wall: u64,
    ) {
        self.stats.answered += 1;
        let blocked = matches!(outcome, Outcome::Blocked { .. });
        if let Some(mac) = client.mac {
            let day = self.day_of(wall);
            self.daily.count(day, mac, client.log.then_some(name.as_str()), blocked);
        }
        if client.log {
            self.log.push(QueryLogEntry {
                at: wall,
                client: client.ip,
                mac: client.mac,
                name,
                qtype: super::querylog::qtype_text(qtype),
                rcode: super::querylog::rcode_text(code),
                outcome,
                micros,
            });
        }
    }
}

/// The addresses a record gives a client to connect to: A, AAAA, and the
/// address hints of HTTPS/SVCB records (browsers connect to those without
/// asking for A/AAAA: an unheld hint would be a way around the tunnel).
fn record_addresses(data: &RData) -> Vec<IpAddr> {
    use hickory_proto::rr::rdata::svcb::SvcParamValue;
    let svcb = match data {
        RData::A(a) => return vec![IpAddr::V4(a.0)],
        RData::AAAA(a) => return vec![IpAddr::V6(a.0)],
        RData::HTTPS(h) => &h.0,
        RData::SVCB(s) => s,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for (_, value) in &svcb.svc_params {
        match value {
            SvcParamValue::Ipv4Hint(h) => out.extend(h.0.iter().map(|a| IpAddr::V4(a.0))),
            SvcParamValue::Ipv6Hint(h) => out.extend(h.0.iter().map(|a| IpAddr::V6(a.0))),
            _ => {}
        }
    }
    out
}

/// A record that may go into an answer's answer or authority section.
fn forwardable(r: &Record) -> bool {
    !matches!(r.data, RData::Update0(_))
        && !matches!(r.record_type(), RecordType::OPT | RecordType::TSIG | RecordType::SIG)
}

/// What an answer to this question from this client is cached under (both
/// paths: the full one's `Question` and the byte path's `QuickQuery`).
fn cache_key(
    name: String,
    qtype: RecordType,
    edns: Option<(u16, bool)>,
    checking_disabled: bool,
    client: &Client,
) -> CacheKey {
    CacheKey {
        name,
        qtype,
        dnssec_ok: edns.is_some_and(|(_, d)| d),
        checking_disabled,
        source: answer_source(client),
    }
}

fn pending_key(p: &Pending) -> CacheKey {
    let q = &p.question;
    cache_key(q.key.clone(), q.qtype, q.edns, q.checking_disabled, &p.client)
}

/// Which upstream group a client's questions go to.
pub fn answer_source(c: &Client) -> AnswerSource {
    match (c.route, &c.zone) {
        (Route::Tunnel, _) => AnswerSource::Tunnel,
        (_, Some(zone)) if c.zone_upstreams => AnswerSource::Zone(zone.clone()),
        _ => AnswerSource::Default,
    }
}
