//! Arbitrary bytes as a dnsmasq lease file (`parse_leases`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::discovery::dhcp::fuzz_entry_dnsmasq(data));
