//! A WireGuard UAPI request (what `wg set` / `wg show` send over the socket):
//! the request parser, and a round trip of every accepted `set`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::tunnel::fuzz_entry_uapi(data));
