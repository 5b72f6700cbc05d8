//! mDNS answers → evidence: arbitrary bytes split into type, instance, host,
//! addresses, interface and TXT pairs, through the pure conversion and the
//! browse state (`bulkhead::discovery::mdns::fuzz_entry`). Looks for panics and broken
//! bounds (text longer than MAX_TEXT, sets over MAX_ITEMS).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bulkhead::discovery::mdns::fuzz_entry(data);
});
