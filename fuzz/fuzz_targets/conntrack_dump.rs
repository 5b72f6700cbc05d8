//! Arbitrary bytes as a datagram of a ctnetlink dump (what the conntrack cut
//! reads from the kernel); every entry read must survive a delete's round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::firewall::fuzz_entry_conntrack_dump(data));
