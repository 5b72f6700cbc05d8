//! A wg-quick `.conf`, then (after a NUL) a `bulkhead.toml` to import it into
//! (`bulkhead vpn import`, without the files).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::tunnel::fuzz_entry_wgquick(data));
