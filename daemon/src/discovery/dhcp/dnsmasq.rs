//! dnsmasq's lease file (`/tmp/dhcp.leases` on OpenWrt,
//! `/var/lib/misc/dnsmasq.leases` on Debian), for observer mode. Pure parsing.
//!
//! IPv4 lines are `<expiry|0> <mac> <ip> <hostname|*> <client-id|*>`. The
//! `duid <server-duid>` line and the IPv6 lines after it
//! (`<expiry> <iaid> <ipv6> <hostname|*> <duid>`) name no MAC, so they are
//! skipped and counted, as is every line that does not parse.

use std::net::IpAddr;

use super::evidence::hex;
use crate::classify::bounded;
use crate::config::MacAddr;
use crate::inventory::UnixTime;

/// One lease dnsmasq handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLease {
    /// The client's MAC.
    pub mac: MacAddr,
    /// Its address.
    pub ip: IpAddr,
    /// When the lease ends; `None` for infinite leases (written as 0).
    pub expires: Option<UnixTime>,
    /// Its host name, bounded untrusted text.
    pub hostname: Option<String>,
    /// Its client identifier: lower-case hex without separators (as in
    /// [`crate::classify::Evidence::client_id`]) when it is dnsmasq's
    /// colon-separated hex, else the bounded text as written.
    pub client_id: Option<String>,
}

/// Parses a lease file: the leases, and how many non-empty lines were skipped.
/// Never fails and never panics, whatever the text.
pub fn parse_leases(text: &str) -> (Vec<ObservedLease>, usize) {
    let mut leases = Vec::new();
    let mut skipped = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(lease) => leases.push(lease),
            None => skipped += 1,
        }
    }
    (leases, skipped)
}

fn parse_line(line: &str) -> Option<ObservedLease> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let [expiry, mac, ip, hostname, client_id] = fields.as_slice() else {
        return None;
    };
    let expiry: UnixTime = expiry.parse().ok().filter(|e| *e >= 0)?;
    let mac: MacAddr = mac.parse().ok()?;
    let ip: IpAddr = ip.parse().ok()?;
    let text = |s: &str| (s != "*").then(|| bounded(s.as_bytes()));
    Some(ObservedLease {
        mac,
        ip,
        expires: (expiry != 0).then_some(expiry),
        hostname: text(hostname),
        client_id: (*client_id != "*")
            .then(|| colon_hex(client_id).map_or_else(|| bounded(client_id.as_bytes()), |b| hex(&b))),
    })
}

/// `01:aa:0B` → bytes; `None` unless it is that form.
fn colon_hex(s: &str) -> Option<Vec<u8>> {
    s.split(':')
        .map(|b| match b.len() {
            1 | 2 => u8::from_str_radix(b, 16).ok(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENWRT: &str = "\
1700003600 aa:bb:cc:dd:ee:01 192.168.1.23 living-room-tv 01:aa:bb:cc:dd:ee:01
0 02:00:00:00:00:02 192.168.1.5 * *
1700001234 02:00:00:00:00:03 192.168.1.77 Galaxy-S23 ff:7a:1b:2c:3d:00:01:00:01:2b:aa:bb:cc
duid 00:01:00:01:2b:3c:4d:5e:aa:bb:cc:dd:ee:ff
1700009999 123456789 fd00::1:23 laptop 00:01:00:01:2b:3c:4d:5e:aa:bb:cc:dd:ee:01
";

    #[test]
    fn parses_ipv4_leases_and_counts_the_rest() {
        let (leases, skipped) = parse_leases(OPENWRT);
        assert_eq!(skipped, 2, "duid line and IPv6 line");
        assert_eq!(leases.len(), 3);
        assert_eq!(
            leases[0],
            ObservedLease {
                mac: "aa:bb:cc:dd:ee:01".parse().expect("mac"),
                ip: "192.168.1.23".parse().expect("ip"),
                expires: Some(1_700_003_600),
                hostname: Some("living-room-tv".into()),
                client_id: Some("01aabbccddee01".into()),
            }
        );
        assert_eq!(leases[1].expires, None);
        assert_eq!(leases[1].hostname, None);
        assert_eq!(leases[1].client_id, None);
        assert_eq!(leases[2].hostname.as_deref(), Some("Galaxy-S23"));
    }

    #[test]
    fn hostile_text_is_kept_as_bounded_data_or_skipped() {
        let long = "x".repeat(1000);
        let text = format!(
            "1 02:00:00:00:00:01 10.0.0.1 <script>alert(1)</script> *\n\
             2 02:00:00:00:00:02 10.0.0.2 {long} not-hex-{long}\n\
             3 02:00:00:00:00:03 10.0.0.3 \u{202e}evil\u{0} *\r\n\
             4 02:00:00:00:00:04 10.0.0.4 a b extra\n\
             -5 02:00:00:00:00:05 10.0.0.5 a *\n\
             6 01:00:5e:00:00:01 10.0.0.6 group *\n\
             7 02:00:00:00:00:07 10.0.0.300 a *\n\
             99999999999999999999999 02:00:00:00:00:08 10.0.0.8 a *\n\
             \n   \n\
             short line\n"
        );
        let (leases, skipped) = parse_leases(&text);
        assert_eq!(leases.len(), 3);
        assert_eq!(skipped, 6);
        assert_eq!(leases[0].hostname.as_deref(), Some("<script>alert(1)</script>"));
        assert_eq!(
            leases[1].hostname.as_ref().map(String::len),
            Some(crate::classify::MAX_TEXT)
        );
        assert_eq!(
            leases[1].client_id.as_ref().map(String::len),
            Some(crate::classify::MAX_TEXT)
        );
        assert_eq!(leases[2].hostname.as_deref(), Some("\u{202e}evil\u{0}"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "",
            "\0",
            "* * * * *",
            "0 :::::: 1 2 3",
            "1 aa:bb:cc:dd:ee 1.2.3.4 x *",
            "é é é é é",
        ] {
            let _ = parse_leases(text);
        }
    }
}
