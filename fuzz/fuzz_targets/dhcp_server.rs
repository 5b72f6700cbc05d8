//! Arbitrary bytes into a configured `DhcpServer`, as a sequence of packets
//! (format: see `bulkhead::discovery::dhcp::fuzz_entry_server`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::discovery::dhcp::fuzz_entry_server(data));
