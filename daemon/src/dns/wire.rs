//! DNS messages in and out (hickory-proto's types): what a question is, and
//! the answers the resolver builds itself (errors, blocks, local names) with
//! EDNS and UDP truncation done as RFC 6891 and RFC 1035 say.
//!
//! Every packet is hostile: `Question::parse` turns anything that is not one
//! well-formed standard query into a `Malformed` (no reply possible: dropped and
//! counted) or a `Refuse` with the right code (FORMERR, NOTIMP, BADVERS).

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// The largest UDP answer we send, whatever the client offers (the DNS flag
/// day 2020 value: no IP fragmentation on any path).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How the question arrived (truncation applies to UDP only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram.
    Udp,
    /// A TCP stream (length-prefixed messages).
    Tcp,
}

/// One standard query, as the resolver needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The client's message id.
    pub id: u16,
    /// The name as asked (case kept for the answer).
    pub name: Name,
    /// Lower-case, without the trailing dot (`example.com`; `` for the root).
    pub key: String,
    /// The type asked.
    pub qtype: RecordType,
    /// Recursion desired.
    pub recursion_desired: bool,
    /// Checking disabled (passed upstream).
    pub checking_disabled: bool,
    /// The client's EDNS, if it sent one: (its UDP payload size, DNSSEC OK).
    pub edns: Option<(u16, bool)>,
}

/// Why a packet is not a question we answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAQuestion {
    /// Not even a header, or a response: nothing can be sent back.
    Malformed,
    /// A message we can answer with an error code (and the id to answer).
    Refuse {
        /// The client's id.
        id: u16,
        /// Its opcode (echoed).
        op_code: OpCode,
        /// FORMERR, NOTIMP, REFUSED or BADVERS.
        code: ResponseCode,
        /// Whether to include an OPT record (the client sent one).
        edns: bool,
    },
}

impl Question {
    /// Parses a client's packet.
    pub fn parse(packet: &[u8]) -> Result<Question, NotAQuestion> {
        if packet.len() < 12 {
            return Err(NotAQuestion::Malformed);
        }
        let id = u16::from_be_bytes([packet[0], packet[1]]);
        // QR set: a response sent to a server is a reflection attempt or noise.
        if packet[2] & 0x80 != 0 {
            return Err(NotAQuestion::Malformed);
        }
        let message = match Message::from_vec(packet) {
            Ok(m) => m,
            // Header readable, body not: FORMERR so a broken client learns why.
            Err(_) => {
                return Err(NotAQuestion::Refuse {
                    id,
                    op_code: OpCode::Query,
                    code: ResponseCode::FormErr,
                    edns: false,
                })
            }
        };
        let refuse = |code| NotAQuestion::Refuse {
            id,
            op_code: message.metadata.op_code,
            code,
            edns: message.edns.is_some(),
        };
        if message.metadata.op_code != OpCode::Query {
            return Err(refuse(ResponseCode::NotImp));
        }
        if let Some(edns) = &message.edns {
            if edns.version() > 0 {
                return Err(refuse(ResponseCode::BADVERS));
            }
        }
        let [query] = message.queries.as_slice() else {
            return Err(refuse(ResponseCode::FormErr));
        };
        if !message.answers.is_empty() || !message.authorities.is_empty() {
            return Err(refuse(ResponseCode::FormErr));
        }
        if query.query_class() != DNSClass::IN {
            return Err(refuse(ResponseCode::NotImp));
        }
        // Zone transfers and meta types are not a home resolver's business.
        if matches!(
            query.query_type(),
            RecordType::AXFR | RecordType::IXFR | RecordType::ANY | RecordType::OPT
        ) {
            return Err(refuse(ResponseCode::NotImp));
        }
        let key = name_key(query.name());
        Ok(Question {
            id,
            name: query.name().clone(),
            key,
            qtype: query.query_type(),
            recursion_desired: message.metadata.recursion_desired,
            checking_disabled: message.metadata.checking_disabled,
            edns: message
                .edns
                .as_ref()
                .map(|e| (e.max_payload().max(512), e.flags().dnssec_ok)),
        })
    }

    /// The largest answer the client takes over `transport`.
    pub fn payload_limit(&self, transport: Transport) -> usize {
        payload_limit(self.edns, transport)
    }

    /// An empty response to this question with `code`.
    pub fn response(&self, code: ResponseCode) -> Message {
        let mut m = Message::new(self.id, MessageType::Response, OpCode::Query);
        m.metadata.recursion_desired = self.recursion_desired;
        m.metadata.recursion_available = true;
        m.metadata.checking_disabled = self.checking_disabled;
        m.metadata.response_code = code;
        m.add_query(Query::query(self.name.clone(), self.qtype));
        if let Some((_, dnssec_ok)) = self.edns {
            m.set_edns(our_edns(dnssec_ok));
        }
        m
    }

    /// The query to send upstream for it (our own id; EDNS with our size).
    pub fn upstream_query(&self, id: u16) -> Message {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = self.checking_disabled;
        m.add_query(Query::query(self.name.clone(), self.qtype));
        m.set_edns(our_edns(self.edns.is_some_and(|(_, d)| d)));
        m
    }
}

/// The largest answer a client with `edns` (payload size, DO) takes over
/// `transport`.
pub fn payload_limit(edns: Option<(u16, bool)>, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => match edns {
            Some((size, _)) => size.clamp(512, MAX_UDP_PAYLOAD) as usize,
            None => 512,
        },
    }
}

fn our_edns(dnssec_ok: bool) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(MAX_UDP_PAYLOAD);
    e.set_dnssec_ok(dnssec_ok);
    e
}

/// A name as a lookup key: lower-case ASCII, no trailing dot.
pub fn name_key(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// The answer to a packet that is no question, if one can be sent.
pub fn refusal(n: &NotAQuestion) -> Option<Message> {
    match n {
        NotAQuestion::Malformed => None,
        NotAQuestion::Refuse {
            id,
            op_code,
            code,
            edns,
        } => {
            let mut m = Message::error_msg(*id, *op_code, *code);
            m.metadata.recursion_available = true;
            if *edns || *code == ResponseCode::BADVERS {
                let mut e = our_edns(false);
                // BADVERS is an extended code: its high bits travel in the OPT.
                e.set_rcode_high(code.high());
                m.set_edns(e);
            }
            Some(m)
        }
    }
}

/// Encodes `message` for the client; over UDP, an answer larger than it takes
/// becomes the header and question with TC set (the client retries over TCP).
pub fn encode(message: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = message.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut cut = message.truncate();
    cut.metadata.truncation = true;
    cut.edns = message.edns.clone();
    cut.to_vec().ok().filter(|b| b.len() <= limit)
}

/// An A or AAAA record.
pub fn address_record(name: &Name, ttl: u32, ip: std::net::IpAddr) -> Record {
    let data = match ip {
        std::net::IpAddr::V4(v4) => RData::A(v4.into()),
        std::net::IpAddr::V6(v6) => RData::AAAA(v6.into()),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn a_standard_query_parses_with_its_key_and_edns() {
        let q = Question::parse(&query("WWW.Example.TEST.", RecordType::A, Some(4096))).expect("query");
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.key, "www.example.test");
        assert_eq!(q.qtype, RecordType::A);
        assert_eq!(q.edns, Some((4096, false)));
        assert_eq!(q.payload_limit(Transport::Udp), MAX_UDP_PAYLOAD as usize);
        let q = Question::parse(&query("a.test.", RecordType::A, None)).expect("query");
        assert_eq!(q.payload_limit(Transport::Udp), 512);
        assert_eq!(q.payload_limit(Transport::Tcp), 65535);
        // The answer keeps the client's case and has an OPT only if asked.
        let r = q.response(ResponseCode::NXDomain);
        assert!(r.edns.is_none());
        assert_eq!(r.queries[0].name().to_ascii(), "a.test.");
    }

    #[test]
    fn what_is_no_standard_query_is_refused_with_its_code_or_dropped() {
        assert_eq!(Question::parse(&[0; 5]), Err(NotAQuestion::Malformed));
        let mut response = query("a.test.", RecordType::A, None);
        response[2] |= 0x80;
        assert_eq!(Question::parse(&response), Err(NotAQuestion::Malformed));
        let axfr = Question::parse(&query("a.test.", RecordType::AXFR, None));
        assert!(matches!(
            axfr,
            Err(NotAQuestion::Refuse {
                code: ResponseCode::NotImp,
                ..
            })
        ));
        // A header that promises a question the packet does not have.
        let mut lying = query("a.test.", RecordType::A, None);
        lying[5] = 3;
        let e = Question::parse(&lying).expect_err("lies");
        assert!(
            matches!(
                e,
                NotAQuestion::Refuse {
                    code: ResponseCode::FormErr,
                    id: 0x1234,
                    ..
                }
            ),
            "{e:?}"
        );
        let answer = refusal(&e).expect("answerable");
        assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn a_big_answer_over_udp_is_truncated_to_the_question() {
        let q = Question::parse(&query("big.test.", RecordType::A, None)).expect("query");
        let mut r = q.response(ResponseCode::NoError);
        for i in 0..100u8 {
            r.add_answer(address_record(&q.name, 60, std::net::IpAddr::from([192, 0, 2, i])));
        }
        let whole = encode(&r, 65535).expect("fits TCP");
        assert!(whole.len() > 512);
        let cut = encode(&r, q.payload_limit(Transport::Udp)).expect("truncated");
        assert!(cut.len() <= 512);
        let back = Message::from_vec(&cut).expect("parses");
        assert!(back.metadata.truncation);
        assert!(back.answers.is_empty());
        assert_eq!(back.queries.len(), 1);
    }
}
