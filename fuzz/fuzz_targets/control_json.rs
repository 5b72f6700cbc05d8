//! One control-socket line as a `Request` (and as a `Response`), and a JSON
//! round trip of whatever parses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::control::fuzz_entry_control(data));
