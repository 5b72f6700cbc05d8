//! Every number Bulkhead claims in shared kernel namespaces, in one place, chosen
//! to stay clear of what OpenWrt's own packages use:
//!
//! | what | OpenWrt users | ours |
//! | --- | --- | --- |
//! | packet mark bits | fw4: none by default; mwan3: 0x3f00; pbr: 0x00ff0000; sqm/qosify: ct mark only; wg-quick: 0xca6c | 0x1000_0000, 0x2000_0000 |
//! | routing tables | main 254, default 253, local 255; mwan3 1–250; pbr 256+ (one per interface); wg-quick 51820 | 0x6268 (25192) |
//! | `ip rule` priorities | mwan3 1000–3000ish; pbr 29000–30000 (counting down); wg-quick 32764/32765; main 32766, default 32767 | 10200 |
//!
//! Our rule sits before pbr's and after mwan3's: a homeowner who selected a device
//! for the tunnel means all its traffic, whatever pbr says, while mwan3's rules
//! (which only match its own marks) never see our mark bit.

/// Set on every frame the bridge forward hook sees, i.e. traffic between two
/// hosts of one segment. Lets the inet forward chain tell a bridged frame (seen
/// again through br_netfilter) from one the router routes back out of the bridge
/// it came from (a hairpin, which must be judged by zone).
pub const MARK_BRIDGED: u32 = 0x1000_0000;

/// Set in prerouting on LAN traffic selected for the WireGuard tunnel. The
/// fwmark rule sends it to [`ROUTE_TABLE`]; the forward chain drops it if it would
/// leave by any other interface than the tunnel. The same bit is set in the
/// connection's mark (ct mark; qosify/sqm use its low bits), so packets the
/// kernel sends for a tunnelled flow (ICMP errors) are recognised in `output`.
pub const MARK_TUNNEL: u32 = 0x2000_0000;

/// Bulkhead's routing table: the default route through the tunnel, and under it
/// a blackhole, so that without the tunnel selected traffic goes nowhere.
pub const ROUTE_TABLE: u32 = 0x6268;

/// Priority of the `fwmark MARK_TUNNEL/MARK_TUNNEL lookup ROUTE_TABLE` rules
/// (IPv4 and IPv6).
pub const RULE_PRIORITY: u32 = 10200;

/// Metric of the blackhole default route in [`ROUTE_TABLE`]: the largest, so the
/// tunnel's own default route (metric 0) always wins while it exists.
pub const BLACKHOLE_METRIC: u32 = u32::MAX;

// Checked when compiling: above pbr's and mwan3's tables, not wg-quick's; between
// mwan3's and pbr's rule priorities.
const _: () = assert!(ROUTE_TABLE > 300 && ROUTE_TABLE != 51820);
const _: () = assert!(RULE_PRIORITY > 3000 && RULE_PRIORITY < 29000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_distinct_single_bits_clear_of_openwrt() {
        for m in [MARK_BRIDGED, MARK_TUNNEL] {
            assert_eq!(m.count_ones(), 1);
            assert_eq!(m & 0x3f00, 0, "mwan3");
            assert_eq!(m & 0x00ff_0000, 0, "pbr");
            assert_eq!(m & 0xca6c, 0, "wg-quick");
        }
        assert_ne!(MARK_BRIDGED, MARK_TUNNEL);
    }
}
