//! DHCPv4 bytes: decoding client messages (defensively) and encoding our replies.
//!
//! Decoding uses dhcproto's [`Message`] for the fixed part, but walks the options
//! itself: dhcproto stops at the first option it cannot decode (a hostname that is
//! not UTF-8 would silently drop every option after it) and runs its full decoders
//! on every option. Here only the options the server and the classifier use are
//! interpreted, each checked for its length; every other option is kept as raw
//! bytes ([`DhcpOption::Unknown`]). Repeated options are concatenated (RFC 3396).
//!
//! Replies are encoded here too, so their options come in the order the client
//! asked for them (option 55), after the message type and server identifier.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, DhcpOptions, HType, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::{Decodable, Decoder};

use crate::classify::bounded;
use crate::config::MacAddr;

/// Length of the fixed BOOTP part, before the magic cookie.
const FIXED_LEN: usize = 236;
/// The DHCP magic cookie, right after the fixed part.
pub(crate) const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Smallest message worth decoding: fixed part plus cookie.
const MIN_LEN: usize = FIXED_LEN + MAGIC.len();
/// BOOTP's minimum message size; replies are padded up to it (some clients drop
/// shorter ones).
const MIN_REPLY_LEN: usize = 300;
/// Longest client identifier accepted (one option's worth). Longer ones only come
/// from hostile clients and would let one client grow every lease record.
pub const MAX_CLIENT_ID: usize = 255;

/// Why a client message was dropped.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Shorter than the fixed part and magic cookie.
    #[error("message is {0} bytes, shorter than the {MIN_LEN}-byte fixed part")]
    Short(usize),
    /// `op` is not BOOTREQUEST (1).
    #[error("op {0} is not BOOTREQUEST")]
    NotRequest(u8),
    /// Hardware type or length is not Ethernet (1, 6).
    #[error("hardware type {htype} / length {hlen} is not Ethernet")]
    NotEthernet {
        /// `htype` as sent.
        htype: u8,
        /// `hlen` as sent.
        hlen: u8,
    },
    /// The magic cookie is wrong (BOOTP, or garbage).
    #[error("no DHCP magic cookie")]
    BadCookie,
    /// `chaddr` is a group or all-zero address, which never names a client.
    #[error("client hardware address {0} is a group or zero address")]
    BadChaddr(MacAddr),
    /// An option's length runs past the end of the message.
    #[error("option {0} runs past the end of the message")]
    TruncatedOption(u8),
    /// No (or an unreadable) message type option.
    #[error("no DHCP message type")]
    NoMessageType,
    /// The client identifier is longer than [`MAX_CLIENT_ID`].
    #[error("client identifier is {0} bytes, more than {MAX_CLIENT_ID}")]
    ClientIdTooLong(usize),
    /// dhcproto refused the fixed part (cannot happen after the length check;
    /// kept so that a future dhcproto change is an error, not a panic).
    #[error("fixed part: {source}")]
    Header {
        /// dhcproto's error.
        #[source]
        source: dhcproto::error::DecodeError,
    },
}

/// A client message that passed [`decode`]: its [`Message`], with the facts the
/// server needs already pulled out and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The decoded message (options as described in the module docs).
    pub message: Message,
    /// Its DHCP message type (option 53).
    pub kind: MessageType,
    /// `chaddr`, checked to be a unicast Ethernet address.
    pub mac: MacAddr,
}

impl ClientMessage {
    /// Option 61, when present and non-empty.
    pub fn client_id(&self) -> Option<&[u8]> {
        match self.message.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => Some(id),
            _ => None,
        }
    }

    /// Option 50 (requested IP address).
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        match self.message.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        }
    }

    /// Option 54 (server identifier).
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        match self.message.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        }
    }

    /// Option 12 (host name), already bounded.
    pub fn hostname(&self) -> Option<&str> {
        match self.message.opts().get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) if !h.is_empty() => Some(h),
            _ => None,
        }
    }

    /// Option 55 (parameter request list) as raw codes, empty when absent.
    pub fn requested_params(&self) -> Vec<u8> {
        match self.message.opts().get(OptionCode::ParameterRequestList) {
            Some(DhcpOption::ParameterRequestList(codes)) => codes.iter().map(|c| u8::from(*c)).collect(),
            _ => Vec::new(),
        }
    }
}

/// The `chaddr` of a BOOTP message over Ethernet (htype 1, hlen 6), read
/// without decoding the rest: whose message it claims to be.
pub fn chaddr(bytes: &[u8]) -> Option<MacAddr> {
    let (htype, hlen) = (*bytes.get(1)?, *bytes.get(2)?);
    if htype != 1 || hlen != 6 {
        return None;
    }
    let mac: [u8; 6] = bytes.get(28..34)?.try_into().ok()?;
    Some(MacAddr(mac))
}

/// Decodes and checks a client message (the UDP payload).
pub fn decode(bytes: &[u8]) -> Result<ClientMessage, WireError> {
    let (fixed, rest) = match (bytes.get(..MIN_LEN), bytes.get(MIN_LEN..)) {
        (Some(fixed), Some(rest)) => (fixed, rest),
        _ => return Err(WireError::Short(bytes.len())),
    };
    let (op, htype, hlen) = (fixed[0], fixed[1], fixed[2]);
    if op != 1 {
        return Err(WireError::NotRequest(op));
    }
    if htype != 1 || hlen != 6 {
        return Err(WireError::NotEthernet { htype, hlen });
    }
    if fixed[FIXED_LEN..] != MAGIC {
        return Err(WireError::BadCookie);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&fixed[28..34]);
    let mac = MacAddr(mac);
    if mac.is_multicast() || mac.0 == [0; 6] {
        return Err(WireError::BadChaddr(mac));
    }
    // Only the fixed part goes to dhcproto: its option decoder never sees input.
    let mut message = Message::decode(&mut Decoder::new(fixed)).map_err(|source| WireError::Header { source })?;
    debug_assert!(message.opcode() == Opcode::BootRequest && message.htype() == HType::Eth);
    let options = decode_options(rest)?;
    let kind = options.msg_type().ok_or(WireError::NoMessageType)?;
    message.set_opts(options);
    let decoded = ClientMessage { message, kind, mac };
    if let Some(DhcpOption::ClientIdentifier(id)) = decoded.message.opts().get(OptionCode::ClientIdentifier) {
        if id.len() > MAX_CLIENT_ID {
            return Err(WireError::ClientIdTooLong(id.len()));
        }
    }
    Ok(decoded)
}

/// Walks the options area: pads skipped, stops at End (or the end of the
/// bytes), repeated codes concatenated.
fn decode_options(mut rest: &[u8]) -> Result<DhcpOptions, WireError> {
    let mut raw: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    loop {
        match rest {
            [] | [255, ..] => break,
            [0, tail @ ..] => rest = tail,
            [code, len, tail @ ..] => {
                let len = usize::from(*len);
                let (data, after) = match (tail.get(..len), tail.get(len..)) {
                    (Some(data), Some(after)) => (data, after),
                    _ => return Err(WireError::TruncatedOption(*code)),
                };
                raw.entry(*code).or_default().extend_from_slice(data);
                rest = after;
            }
            [code] => return Err(WireError::TruncatedOption(*code)),
        }
    }
    let mut options = DhcpOptions::new();
    for (code, data) in raw {
        if let Some(option) = interpret(code, data) {
            options.insert(option);
        }
    }
    Ok(options)
}

/// One option's value, for the codes we use; `None` when such an option has the
/// wrong length (it is then treated as absent). Other codes are kept raw.
fn interpret(code: u8, data: Vec<u8>) -> Option<DhcpOption> {
    let ipv4 = |d: &[u8]| <[u8; 4]>::try_from(d).ok().map(Ipv4Addr::from);
    Some(match OptionCode::from(code) {
        OptionCode::MessageType => match data.as_slice() {
            [t] => DhcpOption::MessageType(MessageType::from(*t)),
            _ => return None,
        },
        OptionCode::RequestedIpAddress => DhcpOption::RequestedIpAddress(ipv4(&data)?),
        OptionCode::ServerIdentifier => DhcpOption::ServerIdentifier(ipv4(&data)?),
        OptionCode::Hostname => DhcpOption::Hostname(bounded(&data)),
        OptionCode::ParameterRequestList => {
            DhcpOption::ParameterRequestList(data.iter().map(|c| OptionCode::from(*c)).collect())
        }
        OptionCode::ClassIdentifier => DhcpOption::ClassIdentifier(data),
        OptionCode::ClientIdentifier => DhcpOption::ClientIdentifier(data),
        OptionCode::MaxMessageSize => DhcpOption::MaxMessageSize(u16::from_be_bytes(data.as_slice().try_into().ok()?)),
        OptionCode::AddressLeaseTime => {
            DhcpOption::AddressLeaseTime(u32::from_be_bytes(data.as_slice().try_into().ok()?))
        }
        // Pad and End never reach here; everything else stays raw bytes.
        other => DhcpOption::Unknown(UnknownOption::new(other, data)),
    })
}

/// One option of a reply, raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawOption {
    pub(crate) code: u8,
    pub(crate) data: Vec<u8>,
}

impl RawOption {
    pub(crate) fn new(code: u8, data: impl Into<Vec<u8>>) -> Self {
        RawOption {
            code,
            data: data.into(),
        }
    }
}

/// The fixed-part fields a reply sets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyHeader {
    pub(crate) xid: u32,
    pub(crate) flags: u16,
    pub(crate) ciaddr: Ipv4Addr,
    pub(crate) yiaddr: Ipv4Addr,
    pub(crate) chaddr: MacAddr,
}

impl ReplyHeader {
    /// The header of a reply to `request`, with `yiaddr`.
    pub(crate) fn to(request: &ClientMessage, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr) -> Self {
        ReplyHeader {
            xid: request.message.xid(),
            flags: request.message.flags().into(),
            ciaddr,
            yiaddr,
            chaddr: request.mac,
        }
    }
}

/// Encodes a BOOTREPLY. `first` go first in the given order (message type,
/// server identifier), then the options of `rest` the client asked for in `prl`
/// order, then the remaining ones in the given order. Options longer than 255
/// bytes are split (RFC 3396).
pub(crate) fn encode_reply(header: &ReplyHeader, first: &[RawOption], rest: &[RawOption], prl: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_REPLY_LEN + 64);
    out.extend_from_slice(&[2, 1, 6, 0]);
    out.extend_from_slice(&header.xid.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // secs
    out.extend_from_slice(&header.flags.to_be_bytes());
    out.extend_from_slice(&header.ciaddr.octets());
    out.extend_from_slice(&header.yiaddr.octets());
    out.extend_from_slice(&[0; 4]); // siaddr: no next server
    out.extend_from_slice(&[0; 4]); // giaddr: no relays
    out.extend_from_slice(&header.chaddr.0);
    out.extend_from_slice(&[0; 10]); // rest of chaddr
    out.extend_from_slice(&[0; 64 + 128]); // sname, file
    out.extend_from_slice(&MAGIC);
    let mut ordered: Vec<&RawOption> = first.iter().collect();
    for code in prl {
        if let Some(o) = rest.iter().find(|o| o.code == *code) {
            if !ordered.iter().any(|p| p.code == o.code) {
                ordered.push(o);
            }
        }
    }
    for o in rest {
        if !ordered.iter().any(|p| p.code == o.code) {
            ordered.push(o);
        }
    }
    for o in ordered {
        if o.data.is_empty() {
            out.extend_from_slice(&[o.code, 0]);
        }
        for chunk in o.data.chunks(255) {
            out.push(o.code);
            out.push(chunk.len() as u8); // chunks(255): always fits
            out.extend_from_slice(chunk);
        }
    }
    out.push(255);
    if out.len() < MIN_REPLY_LEN {
        out.resize(MIN_REPLY_LEN, 0);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dhcproto::{Encodable, Encoder};

    #[test]
    fn chaddr_is_read_only_from_ethernet_messages() {
        let m = client_message(MessageType::Discover, [2, 0, 0, 0, 0, 9], Vec::new());
        assert_eq!(chaddr(&m), Some(MacAddr([2, 0, 0, 0, 0, 9])));
        let mut token_ring = m.clone();
        token_ring[1] = 6;
        assert_eq!(chaddr(&token_ring), None);
        assert_eq!(chaddr(&m[..33]), None);
        assert_eq!(chaddr(&[]), None);
    }

    /// A client message built with dhcproto, as test input.
    pub(crate) fn client_message(kind: MessageType, mac: [u8; 6], options: Vec<DhcpOption>) -> Vec<u8> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_chaddr(&mac)
            .set_xid(0x1234_5678)
            .opts_mut()
            .insert(DhcpOption::MessageType(kind));
        for o in options {
            m.opts_mut().insert(o);
        }
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).expect("encode");
        buf
    }

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    #[test]
    fn decodes_a_discover_and_its_options() {
        let bytes = client_message(
            MessageType::Discover,
            MAC,
            vec![
                DhcpOption::Hostname("laptop".into()),
                DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1]),
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 5)),
                DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::Router]),
                DhcpOption::Router(vec![Ipv4Addr::new(1, 2, 3, 4)]),
            ],
        );
        let m = decode(&bytes).expect("valid");
        assert_eq!(m.kind, MessageType::Discover);
        assert_eq!(m.mac, MacAddr(MAC));
        assert_eq!(m.hostname(), Some("laptop"));
        assert_eq!(m.client_id(), Some(&[1, 2, 0, 0, 0, 0, 1][..]));
        assert_eq!(m.requested_ip(), Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(m.requested_params(), vec![1, 3]);
        assert_eq!(m.server_id(), None);
        // An option we do not interpret is kept, raw.
        assert!(matches!(
            m.message.opts().get(OptionCode::Router),
            Some(DhcpOption::Unknown(u)) if u.data() == [1, 2, 3, 4]
        ));
    }

    /// Replaces the options area of `bytes` with `options` (raw).
    fn with_raw_options(bytes: &[u8], options: &[u8]) -> Vec<u8> {
        let mut out = bytes[..MIN_LEN].to_vec();
        out.extend_from_slice(options);
        out
    }

    #[test]
    fn a_bad_hostname_does_not_hide_later_options() {
        let base = client_message(MessageType::Discover, MAC, vec![]);
        let bytes = with_raw_options(&base, &[12, 3, b'a', 0xff, b'b', 53, 1, 1, 50, 4, 10, 0, 0, 9, 255]);
        let m = decode(&bytes).expect("valid");
        assert_eq!(m.hostname(), Some("a\u{fffd}b"));
        assert_eq!(m.kind, MessageType::Discover);
        assert_eq!(m.requested_ip(), Some(Ipv4Addr::new(10, 0, 0, 9)));
    }

    #[test]
    fn repeated_options_are_concatenated_and_wrong_lengths_ignored() {
        let base = client_message(MessageType::Discover, MAC, vec![]);
        let bytes = with_raw_options(
            &base,
            &[12, 2, b'a', b'b', 53, 1, 1, 0, 12, 1, b'c', 50, 3, 1, 2, 3, 255],
        );
        let m = decode(&bytes).expect("valid");
        assert_eq!(m.hostname(), Some("abc"));
        assert_eq!(m.requested_ip(), None, "a 3-byte address is no address");
    }

    #[test]
    fn rejects_what_is_not_an_ethernet_client_request() {
        let good = client_message(MessageType::Discover, MAC, vec![]);
        assert!(decode(&good).is_ok());
        let mut b = good.clone();
        b[0] = 2;
        assert!(matches!(decode(&b), Err(WireError::NotRequest(2))));
        let mut b = good.clone();
        b[2] = 16;
        assert!(matches!(decode(&b), Err(WireError::NotEthernet { htype: 1, hlen: 16 })));
        let mut b = good.clone();
        b[1] = 6;
        assert!(matches!(decode(&b), Err(WireError::NotEthernet { .. })));
        let mut b = good.clone();
        b[236] = 0;
        assert!(matches!(decode(&b), Err(WireError::BadCookie)));
        let mut b = good.clone();
        b[28] = 0x01;
        assert!(matches!(decode(&b), Err(WireError::BadChaddr(_))));
        let b = with_raw_options(&good, &[50, 4, 1, 2, 3, 4, 255]);
        assert!(matches!(decode(&b), Err(WireError::NoMessageType)));
        let b = with_raw_options(&good, &[53, 1, 1, 12, 9, b'x']);
        assert!(matches!(decode(&b), Err(WireError::TruncatedOption(12))));
        let mut long = vec![53, 1, 1];
        for _ in 0..2 {
            long.extend_from_slice(&[61, 200]);
            long.extend_from_slice(&[7; 200]);
        }
        assert!(matches!(
            decode(&with_raw_options(&good, &long)),
            Err(WireError::ClientIdTooLong(400))
        ));
        for len in 0..MIN_LEN {
            assert!(matches!(decode(&good[..len]), Err(WireError::Short(n)) if n == len));
        }
    }

    #[test]
    fn every_prefix_of_a_valid_message_is_an_error_or_a_message() {
        let good = client_message(
            MessageType::Request,
            MAC,
            vec![
                DhcpOption::Hostname("h".repeat(200)),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)),
            ],
        );
        for len in 0..=good.len() {
            let _ = decode(&good[..len]);
        }
    }

    #[test]
    fn replies_put_type_and_server_first_then_the_clients_order() {
        let header = ReplyHeader {
            xid: 7,
            flags: 0x8000,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 0, 0, 9),
            chaddr: MacAddr(MAC),
        };
        let first = [RawOption::new(53, [2]), RawOption::new(54, [10, 0, 0, 1])];
        let rest = [
            RawOption::new(1, [255, 255, 255, 0]),
            RawOption::new(3, [10, 0, 0, 1]),
            RawOption::new(15, vec![b'x'; 300]),
        ];
        let bytes = encode_reply(&header, &first, &rest, &[15, 3, 99]);
        let opts = &bytes[MIN_LEN..];
        let mut codes = Vec::new();
        let mut i = 0;
        while opts[i] != 255 {
            codes.push(opts[i]);
            i += 2 + usize::from(opts[i + 1]);
        }
        assert_eq!(codes, vec![53, 54, 15, 15, 3, 1]);
        let m = Message::decode(&mut Decoder::new(&bytes)).expect("dhcproto reads our reply");
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(m.chaddr(), MAC);
        assert!(m.flags().broadcast());
        assert_eq!(
            m.opts().get(OptionCode::DomainName),
            Some(&DhcpOption::DomainName("x".repeat(300)))
        );
    }
}
