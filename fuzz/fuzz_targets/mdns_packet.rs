//! mDNS packets → mdns-sd's DNS parser, the code that reads every datagram the
//! browser receives. Needs mdns-sd's `unstable-fuzz-api` feature, enabled in
//! fuzz/Cargo.toml only (never in the daemon's build).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mdns_sd::fuzz_api::parse_packet(data);
});
