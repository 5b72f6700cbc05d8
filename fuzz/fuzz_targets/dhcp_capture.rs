//! Arbitrary bytes as a captured IPv4 packet (`parse_client_packet`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::discovery::dhcp::fuzz_entry_capture(data));
