//! The cache-hit path in bytes: the common question read straight from the
//! packet, and a cached answer kept encoded, answered by copying it with the
//! client's id, flags and question and the TTLs lowered by its age.
//!
//! Why: a home's resolver answers most questions from its cache, and building
//! hickory `Message`s for them (parse, clone records, encode with name
//! compression) cost more than the rest of the chain together (BENCHMARKS.md,
//! "DNS resolver vs dnsmasq"). Nothing here decides anything: the resolver
//! runs the same chain (who is asking, local names, lists, holds) and only the
//! parsing and the encoding are skipped. Anything of another shape — EDNS
//! version above 0, a compression pointer in the question, bytes outside host
//! names, a class other than IN, an answer that does not fit — is `None`, and
//! the full path (hickory-proto) takes the packet as before.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::wire::{payload_limit, Transport, MAX_UDP_PAYLOAD};

/// Header length.
const HEADER: usize = 12;
/// An OPT record without options: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;
/// RR type OPT.
const TYPE_OPT: u16 = 41;
/// EDNS option codes the byte reader lets through (RFC 7873, RFC 7830).
const OPTION_COOKIE: u16 = 10;
/// See [`OPTION_COOKIE`].
const OPTION_PADDING: u16 = 12;

/// A standard query of the common shape, read without allocating more than
/// its lookup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickQuery {
    /// The client's id.
    pub id: u16,
    /// Recursion desired.
    pub recursion_desired: bool,
    /// Checking disabled.
    pub checking_disabled: bool,
    /// Where the question section ends (the header, the name, type and class).
    pub question_end: usize,
    /// Lower-case name without the trailing dot (as `Question::key`).
    pub key: String,
    /// The type asked.
    pub qtype: RecordType,
    /// The client's EDNS: (its UDP payload size, at least 512; DNSSEC OK).
    pub edns: Option<(u16, bool)>,
}

impl QuickQuery {
    /// The query in `packet` if it has the common shape: a query (QR 0,
    /// opcode 0) with one question of class IN, no answer or authority
    /// records, at most an EDNS version 0 OPT as the only additional record,
    /// a name of host-name bytes (`[A-Za-z0-9_-]`, no label starting with
    /// `-`, no compression) and a data
    /// type; nothing after it. Else `None` (not an error: the full parser
    /// decides).
    pub fn read(packet: &[u8]) -> Option<QuickQuery> {
        let header = packet.get(..HEADER)?;
        let (flags_hi, flags_lo) = (header[2], header[3]);
        // QR and opcode (bits 7..3 of the third byte) must be zero.
        if flags_hi & 0xf8 != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
        let additional = count(10);
        if count(4) != 1 || count(6) != 0 || count(8) != 0 || additional > 1 {
            return None;
        }
        let mut key = String::with_capacity(64);
        let mut at = HEADER;
        loop {
            let len = usize::from(*packet.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // Labels above 63 bytes and compression pointers (0xc0) alike.
            if len > 63 {
                return None;
            }
            let label = packet.get(at..at + len)?;
            // What hickory writes without escaping (a leading hyphen is
            // escaped, and an escaped name is refused by the full path).
            if label[0] == b'-'
                || !label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            {
                return None;
            }
            if !key.is_empty() {
                key.push('.');
            }
            key.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
            at += len;
        }
        // The root, and names over 255 bytes on the wire: the full parser.
        if key.is_empty() || at - HEADER > 255 {
            return None;
        }
        let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
        let qclass = u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]);
        // Data types only: meta and question-only types (OPT, TKEY, TSIG,
        // IXFR, AXFR, ANY, …) are the full parser's to refuse or forward.
        if qclass != 1 || qtype == 0 || qtype == TYPE_OPT || qtype >= 128 {
            return None;
        }
        let question_end = at + 4;
        let mut at = question_end;
        let edns = if additional == 1 {
            // Root name, type OPT, class = payload size, TTL = extended
            // rcode, version, flags; then the options, each code, length, data.
            let opt = packet.get(at..at + OPT_LEN)?;
            if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != TYPE_OPT || opt[5] != 0 || opt[6] != 0 {
                return None;
            }
            let payload = u16::from_be_bytes([opt[3], opt[4]]).max(512);
            let dnssec_ok = opt[7] & 0x80 != 0;
            let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
            at += OPT_LEN;
            let end = at + rdlen;
            let options = packet.get(at..end)?;
            // Only options hickory reads whatever their content: a cookie
            // (10) or padding (12). Client subnet, NSID and the others have
            // contents the full parser checks (and answers FORMERR for).
            let mut o = 0;
            while o < options.len() {
                let code = u16::from_be_bytes([*options.get(o)?, *options.get(o + 1)?]);
                if !matches!(code, OPTION_COOKIE | OPTION_PADDING) {
                    return None;
                }
                let len = usize::from(u16::from_be_bytes([*options.get(o + 2)?, *options.get(o + 3)?]));
                o += 4 + len;
            }
            if o != options.len() {
                return None;
            }
            at = end;
            Some((payload, dnssec_ok))
        } else {
            None
        };
        if at != packet.len() {
            return None;
        }
        Some(QuickQuery {
            id: u16::from_be_bytes([header[0], header[1]]),
            recursion_desired: flags_hi & 0x01 != 0,
            checking_disabled: flags_lo & 0x10 != 0,
            question_end,
            key,
            qtype: RecordType::from(qtype),
            edns,
        })
    }

    /// The largest answer the client takes over `transport`.
    pub fn payload_limit(&self, transport: Transport) -> usize {
        payload_limit(self.edns, transport)
    }
}

/// An answer kept encoded: the header, the question, the answer and
/// authority sections (no additional section: the OPT is the client's), and
/// where each record's TTL is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireAnswer {
    bytes: Box<[u8]>,
    question_end: usize,
    ttl_offsets: Box<[u16]>,
    code: ResponseCode,
}

impl WireAnswer {
    /// Encodes `message` (its OPT record left out) and finds its TTLs; `None`
    /// if it cannot be encoded or read back.
    pub fn encode(message: &Message) -> Option<WireAnswer> {
        let mut m = message.clone();
        m.edns = None;
        m.additionals.clear();
        m.signature = None;
        m.metadata.id = 0;
        let bytes = m.to_vec().ok()?;
        let code = m.metadata.response_code;
        WireAnswer::from_bytes(bytes, code)
    }

    fn from_bytes(bytes: Vec<u8>, code: ResponseCode) -> Option<WireAnswer> {
        let count = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        if count(4)? != 1 || count(10)? != 0 {
            return None;
        }
        let records = usize::from(count(6)?) + usize::from(count(8)?);
        let question_end = skip_name(&bytes, HEADER)? + 4;
        let mut at = question_end;
        let mut ttl_offsets = Vec::with_capacity(records);
        for _ in 0..records {
            at = skip_name(&bytes, at)?;
            // Type, class, TTL, RDLENGTH, RDATA.
            let fixed = bytes.get(at..at + 10)?;
            ttl_offsets.push(u16::try_from(at + 4).ok()?);
            at += 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        }
        if at != bytes.len() {
            return None;
        }
        Some(WireAnswer {
            bytes: bytes.into_boxed_slice(),
            question_end,
            ttl_offsets: ttl_offsets.into_boxed_slice(),
            code,
        })
    }

    /// Its encoded length (what the cache's budget counts).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it has no bytes (never: a header is 12).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The response code.
    pub fn code(&self) -> ResponseCode {
        self.code
    }

    /// Back as a message (for the paths that need records).
    pub fn decode(&self) -> Option<Message> {
        Message::from_vec(&self.bytes).ok()
    }

    /// The answer to `query` (whose bytes are `packet`): its id, RD and CD,
    /// its question as asked (case kept), these sections with every TTL
    /// lowered by `age` (at least 1), and an OPT if it sent one. `None` if it
    /// does not fit in `limit` (the full path truncates) or the question's
    /// length differs from the kept one's.
    pub fn reply(&self, query: &QuickQuery, packet: &[u8], age: u32, limit: usize) -> Option<Vec<u8>> {
        if query.question_end != self.question_end {
            return None;
        }
        let len = self.bytes.len() + if query.edns.is_some() { OPT_LEN } else { 0 };
        if len > limit {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&query.id.to_be_bytes());
        // QR, RD as asked; RA, CD as asked, the kept rcode.
        out.push(0x80 | u8::from(query.recursion_desired));
        let cd = if query.checking_disabled { 0x10 } else { 0 };
        out.push(0x80 | cd | (self.bytes[3] & 0x0f));
        out.extend_from_slice(&self.bytes[4..10]);
        out.extend_from_slice(&u16::from(query.edns.is_some()).to_be_bytes());
        out.extend_from_slice(packet.get(HEADER..self.question_end)?);
        out.extend_from_slice(&self.bytes[self.question_end..]);
        for &offset in self.ttl_offsets.iter() {
            let at = usize::from(offset);
            let field = out.get_mut(at..at + 4)?;
            let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&ttl.saturating_sub(age).max(1).to_be_bytes());
        }
        if let Some((_, dnssec_ok)) = query.edns {
            // Root, OPT, our payload size, extended rcode 0, version 0, DO as asked.
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
            out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        Some(out)
    }
}

/// The offset after the name at `at` (labels, ending in the root or a
/// compression pointer).
fn skip_name(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *bytes.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => {
                bytes.get(at + 1)?;
                return Some(at + 2);
            }
            l if l > 63 => return None,
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{address_record, encode, Question};
    use hickory_proto::op::{Edns, MessageType, OpCode, Query};
    use hickory_proto::rr::{rdata::CNAME, Name, RData, Record};

    fn query(name: &str, qtype: RecordType, edns: Option<(u16, bool)>, cd: bool) -> Vec<u8> {
        let mut m = Message::new(0xbeef, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = cd;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        if let Some((size, dnssec_ok)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }

    /// A query for `a.test A` with an EDNS OPT carrying one option.
    fn with_option(code: u16, data: &[u8]) -> Vec<u8> {
        let mut p = query("a.test.", RecordType::A, Some((1232, false)), false);
        let n = p.len();
        // The OPT's RDLENGTH is the last two bytes: append one option.
        let rdlen = u16::try_from(4 + data.len()).expect("small");
        p[n - 2..].copy_from_slice(&rdlen.to_be_bytes());
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(&u16::try_from(data.len()).expect("small").to_be_bytes());
        p.extend_from_slice(data);
        p
    }

    /// The full path's answer and the byte path's, for the same question.
    fn both(packet: &[u8], kept_from: &[u8], age: u32, transport: Transport) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let first = Question::parse(kept_from).expect("question");
        let name = first.name.clone();
        let mut upstream = first.response(ResponseCode::NoError);
        upstream.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::CNAME(CNAME(Name::from_ascii("edge.cdn.test.").expect("name"))),
        ));
        upstream.add_answer(address_record(
            &Name::from_ascii("edge.cdn.test.").expect("name"),
            60,
            [192, 0, 2, 7].into(),
        ));
        let kept = WireAnswer::encode(&upstream).expect("kept");
        // The full path: the kept records, TTLs lowered, in a response to
        // this question.
        let q = Question::parse(packet).expect("question");
        let back = kept.decode().expect("decodes");
        let mut full = q.response(back.metadata.response_code);
        full.insert_answers(
            back.answers
                .into_iter()
                .map(|mut r| {
                    r.ttl = r.ttl.saturating_sub(age).max(1);
                    r
                })
                .collect(),
        );
        let quick = QuickQuery::read(packet).expect("common shape");
        (
            encode(&full, q.payload_limit(transport)),
            kept.reply(&quick, packet, age, quick.payload_limit(transport)),
        )
    }

    #[test]
    fn a_hit_in_bytes_is_the_full_paths_answer_byte_for_byte() {
        for (edns, cd) in [(None, false), (Some((1232, false)), false), (Some((4096, true)), true)] {
            let packet = query("www.Example.test.", RecordType::A, edns, cd);
            let (full, quick) = both(&packet, &packet, 17, Transport::Udp);
            assert!(full.is_some());
            assert_eq!(quick, full, "edns {edns:?} cd {cd}");
        }
        // Another client asking in another case gets its own case back.
        let first = query("www.example.test.", RecordType::A, None, false);
        let other = query("WWW.EXAMPLE.TEST.", RecordType::A, Some((1232, false)), false);
        let (_, quick) = both(&other, &first, 0, Transport::Udp);
        let reply = Message::from_vec(&quick.expect("reply")).expect("parses");
        assert_eq!(reply.queries[0].name().to_ascii(), "WWW.EXAMPLE.TEST.");
        assert_eq!(reply.metadata.id, 0xbeef);
        assert_eq!(reply.answers.len(), 2);
        // TTLs are lowered by age and never reach 0.
        let (_, quick) = both(&first, &first, 1000, Transport::Udp);
        let reply = Message::from_vec(&quick.expect("reply")).expect("parses");
        assert!(reply.answers.iter().all(|r| r.ttl == 1));
    }

    #[test]
    fn a_negative_hit_with_its_soa_and_cd_is_the_full_paths_answer_byte_for_byte() {
        use hickory_proto::rr::rdata::SOA;
        let packet = query("gone.example.test.", RecordType::AAAA, Some((1232, true)), true);
        let q = Question::parse(&packet).expect("question");
        let zone = Name::from_ascii("example.test.").expect("name");
        let soa = Record::from_rdata(
            zone.clone(),
            900,
            RData::SOA(SOA::new(zone.clone(), zone, 7, 60, 60, 60, 300)),
        );
        let mut upstream = q.response(ResponseCode::NXDomain);
        upstream.add_authority(soa.clone());
        let kept = WireAnswer::encode(&upstream).expect("kept");
        assert_eq!(kept.code(), ResponseCode::NXDomain);
        let mut full = q.response(ResponseCode::NXDomain);
        let mut lowered = soa;
        lowered.ttl -= 40;
        full.add_authority(lowered);
        let quick = QuickQuery::read(&packet).expect("common shape");
        assert_eq!(
            kept.reply(&quick, &packet, 40, quick.payload_limit(Transport::Udp)),
            encode(&full, q.payload_limit(Transport::Udp))
        );
    }

    #[test]
    fn edns_options_hickory_checks_go_to_the_full_path() {
        let cookie = with_option(OPTION_COOKIE, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(QuickQuery::read(&cookie).is_some(), "a client cookie");
        assert!(Question::parse(&cookie).is_ok());
        assert!(QuickQuery::read(&with_option(OPTION_PADDING, &[0; 16])).is_some());
        // A client subnet with address family 9: hickory's business.
        assert_eq!(QuickQuery::read(&with_option(8, &[0, 9, 24, 0, 192, 0, 2])), None);
        assert_eq!(QuickQuery::read(&with_option(3, &[])), None, "NSID");
    }

    #[test]
    fn a_hit_too_big_for_the_client_goes_to_the_full_path() {
        let q = Question::parse(&query("big.test.", RecordType::A, None, false)).expect("query");
        let mut m = q.response(ResponseCode::NoError);
        for i in 0..40u8 {
            m.add_answer(address_record(&q.name, 60, [192, 0, 2, i].into()));
        }
        let kept = WireAnswer::encode(&m).expect("kept");
        let packet = query("big.test.", RecordType::A, None, false);
        let quick = QuickQuery::read(&packet).expect("common shape");
        assert!(kept.len() > 512);
        assert_eq!(
            kept.reply(&quick, &packet, 0, quick.payload_limit(Transport::Udp)),
            None
        );
        assert!(kept
            .reply(&quick, &packet, 0, quick.payload_limit(Transport::Tcp))
            .is_some());
    }

    #[test]
    fn only_the_common_shape_is_read_quickly_and_it_agrees_with_the_full_parser() {
        let plain = query("a-b_c.Example.test.", RecordType::AAAA, Some((600, true)), true);
        let quick = QuickQuery::read(&plain).expect("common shape");
        let full = Question::parse(&plain).expect("question");
        assert_eq!(
            (
                quick.id,
                quick.key.as_str(),
                quick.qtype,
                quick.edns,
                quick.recursion_desired,
                quick.checking_disabled
            ),
            (
                full.id,
                full.key.as_str(),
                full.qtype,
                full.edns,
                full.recursion_desired,
                full.checking_disabled
            )
        );
        // Bytes hickory would escape: a NUL, a space, a leading hyphen.
        let with_byte = |b: u8| {
            let mut p = query("axb.test.", RecordType::A, None, false);
            p[HEADER + 2] = b;
            p
        };
        let mut hyphen = query("xb.test.", RecordType::A, None, false);
        hyphen[HEADER + 1] = b'-';
        let not_quick = [
            query("a.test.", RecordType::ANY, None, false),
            query("a.test.", RecordType::AXFR, None, false),
            query(".", RecordType::NS, None, false),
            with_byte(0),
            with_byte(b' '),
            with_byte(b'.'),
            hyphen,
        ];
        for p in &not_quick {
            assert_eq!(QuickQuery::read(p), None, "{p:?}");
        }
        // EDNS version 1, a response, trailing bytes, a lying count, a
        // truncated packet: the full parser decides.
        let mut v1 = query("a.test.", RecordType::A, Some((1232, false)), false);
        let n = v1.len();
        v1[n - 5] = 1;
        let mut response = query("a.test.", RecordType::A, None, false);
        response[2] |= 0x80;
        let mut trailing = query("a.test.", RecordType::A, None, false);
        trailing.push(0);
        let mut lying = query("a.test.", RecordType::A, None, false);
        lying[11] = 1;
        for p in [v1, response, trailing, lying, plain[..plain.len() - 3].to_vec()] {
            assert_eq!(QuickQuery::read(&p), None, "{p:?}");
        }
    }

    #[test]
    fn any_bytes_are_read_without_panic_and_what_is_read_the_full_parser_agrees_with() {
        // A small deterministic mutation corpus around real queries.
        let seeds = [
            query("www.example.test.", RecordType::A, Some((1232, true)), false),
            query("x.test.", RecordType::HTTPS, None, true),
            with_option(OPTION_COOKIE, &[1, 2, 3, 4, 5, 6, 7, 8]),
            with_option(8, &[0, 1, 24, 0, 192, 0, 2]),
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..40_000 {
            let mut p = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
            if next() % 5 == 0 {
                p.truncate((next() as usize) % (p.len() + 1));
            }
            if let Some(quick) = QuickQuery::read(&p) {
                let full = Question::parse(&p).expect("what is read quickly is a question");
                assert_eq!(
                    (quick.key.as_str(), quick.qtype, quick.edns),
                    (full.key.as_str(), full.qtype, full.edns)
                );
            }
        }
    }
}
