//! 802.1Q VLAN links: the creation message, kept pure so its bytes can be
//! tested on kernels without the `8021q` module, and a probe for that module.

use std::path::Path;

use netlink_packet_route::link::LinkMessage;
use rtnetlink::LinkVlan;

/// Builds the `RTM_NEWLINK` payload that creates VLAN `name` with id `id` on
/// the link with index `parent_index`: `IFLA_IFNAME`, `IFLA_LINK` (parent)
/// and `IFLA_LINKINFO { IFLA_INFO_KIND "vlan", IFLA_INFO_DATA { IFLA_VLAN_ID } }`.
/// The link is created down; [`super::NetChange::SetUp`] brings it up once
/// it is wired.
pub fn vlan_link_message(name: &str, parent_index: u32, id: u16) -> LinkMessage {
    LinkVlan::new(name, parent_index, id).build()
}

/// Why [`vlan_supported`] said no, for test output and logs.
pub const VLAN_UNSUPPORTED: &str = "this kernel has no 802.1Q VLAN support loaded \
     (no /proc/net/vlan/config, no /sys/module/8021q); try `modprobe 8021q`";

/// True when VLAN links can be created here: the `8021q` module is loaded
/// or built in. Checks what is loaded, not what could be autoloaded: inside
/// a container `/lib/modules` is not the host's, so only the kernel's own
/// view is trustworthy. A false "no" just means a VLAN test is skipped with
/// [`VLAN_UNSUPPORTED`] as the reason.
pub fn vlan_supported() -> bool {
    // /proc/net/vlan/config appears in every network namespace once 8021q
    // is initialised, whether built in or loaded as a module.
    Path::new("/proc/net/vlan/config").exists() || Path::new("/sys/module/8021q").exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::LinkFlags;
    use rtnetlink::packet_core::Emitable;

    // Values from <linux/if_link.h>; netlink-packet-route keeps its own private.
    const IFLA_IFNAME: u16 = 3;
    const IFLA_LINK: u16 = 5;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    const IFLA_VLAN_ID: u16 = 1;
    /// sizeof(struct ifinfomsg).
    const IFINFOMSG_LEN: usize = 16;
    const NLA_TYPE_MASK: u16 = 0x3fff;

    /// Splits a run of netlink attributes into (type, value) pairs,
    /// checking lengths and 4-byte alignment as the kernel would.
    fn nlas(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            assert!(buf.len() >= 4, "truncated attribute header");
            let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
            let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
            assert!(len >= 4 && len <= buf.len(), "bad attribute length {len}");
            out.push((kind, &buf[4..len]));
            let padded = (len + 3) & !3;
            buf = &buf[padded.min(buf.len())..];
        }
        out
    }

    fn only<'a>(attrs: &[(u16, &'a [u8])], kind: u16) -> &'a [u8] {
        let found: Vec<_> = attrs.iter().filter(|(k, _)| *k == kind).collect();
        assert_eq!(found.len(), 1, "want exactly one attribute {kind}");
        found[0].1
    }

    #[test]
    fn vlan_message_bytes() {
        let msg = vlan_link_message("eth0.10", 7, 10);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);

        // ifinfomsg: created down, no index (the kernel picks one).
        let index = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let flags = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        assert_eq!(index, 0);
        assert_eq!(flags & LinkFlags::Up.bits(), 0);

        let attrs = nlas(&buf[IFINFOMSG_LEN..]);
        assert_eq!(only(&attrs, IFLA_IFNAME), b"eth0.10\0");
        assert_eq!(only(&attrs, IFLA_LINK), 7u32.to_ne_bytes());

        let info = nlas(only(&attrs, IFLA_LINKINFO));
        assert_eq!(only(&info, IFLA_INFO_KIND), b"vlan\0");
        let data = nlas(only(&info, IFLA_INFO_DATA));
        assert_eq!(data.len(), 1, "only the id: no flags, protocol or QoS");
        assert_eq!(only(&data, IFLA_VLAN_ID), 10u16.to_ne_bytes());
    }

    #[test]
    fn vlan_message_reads_back_as_observed_vlan() {
        let mut msg = vlan_link_message("lan.4094", 3, 4094);
        msg.header.index = 12;
        let link = super::super::observe::parse_link(&msg).expect("has a name");
        assert_eq!(link.name, "lan.4094");
        assert_eq!(link.index, 12);
        assert_eq!(link.kind, super::super::ObservedKind::Vlan { parent: 3, id: 4094 });
        assert!(!link.up);
    }
}
