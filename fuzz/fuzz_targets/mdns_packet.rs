//! mDNS packets → mdns-sd's DNS parser, the code that reads every datagram the
//! browser receives. Needs mdns-sd's `unstable-fuzz-api` feature, enabled in
//! fuzz/Cargo.toml only (never in the daemon's build).
//!
//! mdns-sd 0.21.7's `fuzz_api::parse_packet` asserts that every question the
//! header counts is parsed, but its parser deliberately skips questions of
//! unknown types (`read_questions`), so any packet with one trips that assert
//! (found in 45 s, FUZZING.md). A harness bug, not a parser one: packets with a
//! question of an unknown type are left out here, everything else is parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Question types mdns-sd's `RRType::from_u16` knows.
const KNOWN_QTYPES: [u16; 11] = [1, 5, 12, 13, 16, 28, 33, 47, 64, 65, 255];

/// Whether the question section (as far as it can be walked) holds a question
/// of a type mdns-sd skips. `false` when the walk fails: the parser then fails too.
fn has_unknown_question(data: &[u8]) -> bool {
    let Some(count) = data.get(4..6).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return false;
    };
    let mut at = 12;
    for _ in 0..count {
        // The name: labels up to a zero byte or a compression pointer.
        loop {
            let Some(&len) = data.get(at) else { return false };
            if len & 0xc0 == 0xc0 {
                at += 2;
                break;
            }
            at += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        let Some(ty) = data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return false;
        };
        if data.len() < at + 4 {
            return false;
        }
        if !KNOWN_QTYPES.contains(&ty) {
            return true;
        }
        at += 4;
    }
    false
}

fuzz_target!(|data: &[u8]| {
    if has_unknown_question(data) {
        return;
    }
    mdns_sd::fuzz_api::parse_packet(data);
});
