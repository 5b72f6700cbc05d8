//! Arbitrary bytes as a client's DNS question (UDP and TCP) and an upstream's
//! answer, through the resolver's whole chain: no panic, every reply parses,
//! carries the client's id and fits the transport.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::dns::fuzz_entry_query(data));
