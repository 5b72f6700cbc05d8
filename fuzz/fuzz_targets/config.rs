//! `bulkhead.toml`, then (after NULs) policy files, through the whole config
//! loader without the filesystem: a bad configuration is errors, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead::config::fuzz_entry_config(data));
