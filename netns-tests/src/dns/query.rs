//! Readiness and one-off queries: a small DNS client for the tests.

use super::*;

/// Polls `addr` from `ns` with `name A` until a reply comes (with NOERROR, if
/// `want_noerror`), the process `pid` exits, or [`READY_TIMEOUT`] passes.
///
/// The error is the reason, to go into [`not_started`].
pub(crate) fn wait_answering(
    ns: &Netns,
    pid: u32,
    addr: SocketAddr,
    name: &str,
    want_noerror: bool,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no reply");
    loop {
        match ns.wait_tracked(pid, Duration::ZERO) {
            Ok(None) => {}
            Ok(Some(status)) => return Err(format!("it exited ({status}) before answering on {addr}")),
            Err(e) => return Err(e.to_string()),
        }
        match udp_query(ns, addr, name, TYPE_A, READY_POLL) {
            Ok(Some(reply)) if !want_noerror || reply.rcode == RCODE_NOERROR => return Ok(()),
            Ok(Some(reply)) => last = format!("rcode {}", reply.rcode),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no answer to {name} A on {addr} within {READY_TIMEOUT:?} ({last})"
            ));
        }
        // A refused port answers at once: do not spin.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A DNS reply, as much of it as tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    /// Response code ([`RCODE_NOERROR`], [`RCODE_NXDOMAIN`], ...).
    pub rcode: u8,
    /// AA: the server is authoritative for the name.
    pub authoritative: bool,
    /// TC: the answer did not fit; ask again over TCP.
    pub truncated: bool,
    /// RA: the server offers recursion.
    pub recursion_available: bool,
    /// The answer section, in order.
    pub answers: Vec<Answer>,
}

/// One record of an answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Owner name, lower-cased, with the final dot.
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// The data.
    pub data: AnswerData,
}

/// Record data of an [`Answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    /// An A record.
    A(Ipv4Addr),
    /// An AAAA record.
    Aaaa(Ipv6Addr),
    /// A CNAME record's target, lower-cased, with the final dot.
    Cname(String),
    /// Another type (its number); the data is not decoded.
    Other(u16),
}

impl DnsReply {
    /// The A addresses of the answer.
    pub fn a(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter_map(|a| match a.data {
                AnswerData::A(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }

    /// The AAAA addresses of the answer.
    pub fn aaaa(&self) -> Vec<Ipv6Addr> {
        self.answers
            .iter()
            .filter_map(|a| match a.data {
                AnswerData::Aaaa(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }
}

/// Sends one query (`name`, type `qtype`, class IN, RD set, no EDNS) over UDP
/// from `ns` to `server` and waits up to `timeout` for the reply.
///
/// `Ok(None)` if nothing (or an ICMP error) came back in time; `Err` if the
/// socket could not be made or the reply could not be parsed. Without EDNS the
/// reply is at most 512 bytes: `big.example.test` comes back truncated.
pub fn udp_query(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Option<DnsReply>> {
    // Truncation to 16 bits is the point: any id will do, as long as it changes.
    let id = (SEQ.fetch_add(1, Ordering::Relaxed) as u16) ^ (std::process::id() as u16);
    let query = build_query(id, name, qtype)?;
    let context = || format!("querying {server} from {}", ns.name());
    let reply = ns.run_in(|| -> std::io::Result<Option<Vec<u8>>> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        // Connected, so ICMP errors are reported and strangers filtered out.
        socket.connect(server)?;
        socket.send(&query)?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buf) {
                Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes() => return Ok(Some(buf[..n].to_vec())),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    })?;
    match reply.map_err(|e| Error::io(context(), e))? {
        None => Ok(None),
        Some(bytes) => parse_reply(&bytes).map(Some).ok_or_else(|| {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            invalid_output(&format!("{}: malformed reply", context()), &hex)
        }),
    }
}

pub(crate) fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: RD. One question, no other records.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&l| (1..=63).contains(&l))
            .ok_or_else(|| Error::Spec(format!("bad DNS name {name:?}")))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// Parses the header and the answer section; `None` if malformed.
pub(crate) fn parse_reply(msg: &[u8]) -> Option<DnsReply> {
    let u16_at = |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?])) };
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return None;
    }
    let qdcount = u16_at(4)?;
    let ancount = u16_at(6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut answers = Vec::with_capacity(usize::from(ancount));
    let truncated = flags & 0x0200 != 0;
    for _ in 0..ancount {
        // A truncated reply may end mid-section.
        let Some((name, next)) = read_name(msg, pos) else {
            if truncated {
                break;
            }
            return None;
        };
        let rtype = u16_at(next)?;
        let ttl = u32::from_be_bytes(msg.get(next + 4..next + 8)?.try_into().ok()?);
        let rdlen = usize::from(u16_at(next + 8)?);
        let rdata_at = next + 10;
        let rdata = msg.get(rdata_at..rdata_at + rdlen)?;
        let data = match (rtype, rdlen) {
            (TYPE_A, 4) => AnswerData::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
            (TYPE_AAAA, 16) => AnswerData::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?)),
            (TYPE_CNAME, _) => AnswerData::Cname(read_name(msg, rdata_at)?.0),
            _ => AnswerData::Other(rtype),
        };
        answers.push(Answer { name, ttl, data });
        pos = rdata_at + rdlen;
    }
    Some(DnsReply {
        rcode: (flags & 0x000f) as u8,
        authoritative: flags & 0x0400 != 0,
        truncated,
        recursion_available: flags & 0x0080 != 0,
        answers,
    })
}

/// Reads a (possibly compressed) name at `pos`: the name, lower-cased with its
/// final dot, and where the data after it starts.
pub(crate) fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    // Compression pointers can loop; a real name has at most 127 labels.
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        match len {
            0 => {
                if name.is_empty() {
                    name.push('.');
                }
                return Some((name, end.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let target = usize::from(u16::from_be_bytes([l & 0x3f, *msg.get(pos + 1)?]));
                end.get_or_insert(pos + 2);
                pos = target;
            }
            l if l & 0xc0 == 0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(l))?;
                name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
                name.push('.');
                pos += 1 + usize::from(l);
            }
            _ => return None,
        }
    }
    None
}
