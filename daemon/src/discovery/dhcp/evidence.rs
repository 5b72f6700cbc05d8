//! What a DHCP client message tells about the device that sent it.

use dhcproto::v4::{DhcpOption, Message, OptionCode};

use crate::classify::{bounded, Evidence, MAX_TEXT};

/// The evidence in one client message: host name (12), client identifier (61, as
/// lower-case hex), parameter request list (55, the fingerprint) and vendor class
/// (60). Every field is bounded ([`bounded`], [`MAX_TEXT`]); the client
/// identifier's hex covers at most its first `MAX_TEXT / 2` bytes.
///
/// Options may be typed or raw ([`DhcpOption::Unknown`]); both are read.
pub fn evidence_of(message: &Message) -> Evidence {
    let opts = message.opts();
    let raw = |code: OptionCode| match opts.get(code) {
        Some(DhcpOption::Unknown(u)) => Some(u.data().to_vec()),
        _ => None,
    };
    let hostname = match opts.get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => Some(bounded(h.as_bytes())),
        _ => raw(OptionCode::Hostname).map(|d| bounded(&d)),
    };
    let client_id = match opts.get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) => Some(id.clone()),
        _ => raw(OptionCode::ClientIdentifier),
    };
    let dhcp_params = match opts.get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(codes)) => Some(codes.iter().map(|c| u8::from(*c)).collect::<Vec<_>>()),
        _ => raw(OptionCode::ParameterRequestList),
    };
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(bounded(v)),
        _ => raw(OptionCode::ClassIdentifier).map(|d| bounded(&d)),
    };
    Evidence {
        hostname: hostname.filter(|h| !h.is_empty()),
        client_id: client_id.filter(|id| !id.is_empty()).map(|id| hex(&id)),
        dhcp_params: dhcp_params
            .filter(|p| !p.is_empty())
            .map(|p| p.into_iter().take(MAX_TEXT).collect()),
        vendor_class: vendor_class.filter(|v| !v.is_empty()),
        ..Evidence::default()
    }
}

/// Lower-case hex of the first `MAX_TEXT / 2` bytes, so the text stays within
/// [`MAX_TEXT`].
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len().min(MAX_TEXT / 2) * 2);
    for b in bytes.iter().take(MAX_TEXT / 2) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use dhcproto::v4::{MessageType, UnknownOption};

    use super::*;

    fn message(options: Vec<DhcpOption>) -> Message {
        let mut m = Message::default();
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
        for o in options {
            m.opts_mut().insert(o);
        }
        m
    }

    #[test]
    fn extracts_the_four_fields() {
        let e = evidence_of(&message(vec![
            DhcpOption::Hostname("Living-Room-TV".into()),
            DhcpOption::ClientIdentifier(vec![0x01, 0xAA, 0x0b]),
            DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::Router,
                OptionCode::Unknown(249),
            ]),
            DhcpOption::ClassIdentifier(b"android-dhcp-13".to_vec()),
        ]));
        assert_eq!(e.hostname.as_deref(), Some("Living-Room-TV"));
        assert_eq!(e.client_id.as_deref(), Some("01aa0b"));
        assert_eq!(e.dhcp_params, Some(vec![1, 3, 249]));
        assert_eq!(e.vendor_class.as_deref(), Some("android-dhcp-13"));
        assert!(e.mdns_services.is_empty() && e.txt.is_empty());
    }

    #[test]
    fn nothing_known_is_empty_evidence() {
        assert!(evidence_of(&message(vec![])).is_empty());
        assert!(evidence_of(&message(vec![DhcpOption::Hostname(String::new())])).is_empty());
    }

    #[test]
    fn raw_options_are_read_and_everything_is_bounded() {
        let e = evidence_of(&message(vec![
            DhcpOption::Unknown(UnknownOption::new(OptionCode::Hostname, vec![b'a', 0xff, b'\n'])),
            DhcpOption::ClientIdentifier(vec![0xab; 1000]),
            DhcpOption::Unknown(UnknownOption::new(OptionCode::ParameterRequestList, vec![1; 1000])),
            DhcpOption::ClassIdentifier("v\u{202e}".repeat(500).into_bytes()),
        ]));
        assert_eq!(e.hostname.as_deref(), Some("a\u{fffd}\n"));
        let id = e.client_id.expect("client id");
        assert!(id.len() <= MAX_TEXT && id.chars().all(|c| c == 'a' || c == 'b'));
        assert_eq!(e.dhcp_params.map(|p| p.len()), Some(MAX_TEXT));
        assert!(e.vendor_class.expect("vendor class").len() <= MAX_TEXT);
    }
}
