//! The IEEE MAC vendor registry, compiled in at build time.
//!
//! `build.rs` turns Debian's `ieee-data` CSV files (MA-L 24-bit, MA-M 28-bit and
//! MA-S 36-bit assignments) into one sorted binary table, embedded here with
//! `include_bytes!` and binary-searched; the longest registered prefix wins.
//!
//! Size: built from Debian's ieee-data 20220827 the table is 731,697 bytes (about
//! 715 KiB) for 41,480 prefixes: 263,209 bytes of records and 468,468 of 25,966
//! distinct short names. It is the largest single item in the binary; mind it on
//! routers with 8 MB of flash (a test keeps it under 1 MiB).
//!
//! Names are shortened ("Apple, Inc." is `Apple`, "TP-LINK TECHNOLOGIES CO.,LTD."
//! is `TP-LINK TECHNOLOGIES`). Locally administered (randomised) addresses have no
//! vendor.

use crate::config::MacAddr;

/// The table written by `build.rs` (layout documented there).
const TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vendor_table.bin"));

const HEADER_LEN: usize = 20;
/// Bytes of a record's name offset.
const NAME_REF_LEN: usize = 3;

const fn u32_at(at: usize) -> usize {
    u32::from_le_bytes([TABLE[at], TABLE[at + 1], TABLE[at + 2], TABLE[at + 3]]) as usize
}

/// One sorted run of records: all prefixes of one length.
struct Run {
    /// Prefix length in bits.
    bits: u32,
    /// Bytes of the prefix in a record.
    key_len: usize,
    /// Offset of the first record in [`TABLE`].
    start: usize,
    /// Number of records.
    len: usize,
}

const COUNT_24: usize = u32_at(4);
const COUNT_28: usize = u32_at(8);
const COUNT_36: usize = u32_at(12);
const NAMES_LEN: usize = u32_at(16);
const START_24: usize = HEADER_LEN;
const START_28: usize = START_24 + COUNT_24 * (3 + NAME_REF_LEN);
const START_36: usize = START_28 + COUNT_28 * (4 + NAME_REF_LEN);
const NAMES_START: usize = START_36 + COUNT_36 * (5 + NAME_REF_LEN);

// The table must be what build.rs writes; checked when compiling.
const _: () = assert!(TABLE.len() == NAMES_START + NAMES_LEN, "vendor table size mismatch");
const _: () = assert!(
    TABLE[0] == b'B' && TABLE[1] == b'H' && TABLE[2] == b'V' && TABLE[3] == b'1',
    "vendor table magic mismatch"
);

/// Longest prefix first.
const RUNS: [Run; 3] = [
    Run {
        bits: 36,
        key_len: 5,
        start: START_36,
        len: COUNT_36,
    },
    Run {
        bits: 28,
        key_len: 4,
        start: START_28,
        len: COUNT_28,
    },
    Run {
        bits: 24,
        key_len: 3,
        start: START_24,
        len: COUNT_24,
    },
];

/// Big-endian number from `len` bytes at `at`.
fn be_at(at: usize, len: usize) -> Option<u64> {
    let bytes = TABLE.get(at..at.checked_add(len)?)?;
    Some(bytes.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
}

impl Run {
    fn record_len(&self) -> usize {
        self.key_len + NAME_REF_LEN
    }

    /// Binary search for `prefix`; its name's offset in the name blob.
    fn find(&self, prefix: u64) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.start + mid * self.record_len();
            match be_at(at, self.key_len)?.cmp(&prefix) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return usize::try_from(be_at(at + self.key_len, NAME_REF_LEN)?).ok();
                }
            }
        }
        None
    }
}

fn name_at(offset: usize) -> Option<&'static str> {
    let at = NAMES_START.checked_add(offset)?;
    let len = usize::from(*TABLE.get(at)?);
    let bytes = TABLE.get(at + 1..at + 1 + len)?;
    std::str::from_utf8(bytes).ok()
}

/// The vendor registered for `mac`'s prefix (longest registered prefix: 36, then
/// 28, then 24 bits), shortened; `None` for unregistered, private, randomised
/// (locally administered) and group addresses.
pub fn lookup(mac: &MacAddr) -> Option<&'static str> {
    if mac.is_locally_administered() || mac.is_multicast() {
        return None;
    }
    let value = mac.0.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    RUNS.iter()
        .find_map(|run| run.find(value >> (48 - run.bits)))
        .and_then(name_at)
}

/// True when `mac` is locally administered: randomised by the device (Android,
/// iOS and Windows "private addresses") or set by software, so it names no vendor
/// and identifies the device only as long as the device keeps it.
pub fn is_randomized(mac: &MacAddr) -> bool {
    mac.is_locally_administered()
}

/// How many prefixes the table holds (all three registries).
pub fn entries() -> usize {
    COUNT_24 + COUNT_28 + COUNT_36
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("test MAC")
    }

    #[test]
    fn ma_l_vendors_are_found_and_shortened() {
        // oui.csv: MA-L,246F28,Espressif Inc.
        assert_eq!(lookup(&mac("24:6f:28:12:34:56")), Some("Espressif"));
        // oui.csv: MA-L,608B0E,"Apple, Inc."
        assert_eq!(lookup(&mac("60:8b:0e:00:00:01")), Some("Apple"));
        // oui.csv: MA-L,D03745,"TP-LINK TECHNOLOGIES CO.,LTD."
        assert_eq!(lookup(&mac("d0:37:45:ab:cd:ef")), Some("TP-LINK TECHNOLOGIES"));
        // oui.csv: MA-L,542A1B,"Sonos, Inc."
        assert_eq!(lookup(&mac("54:2a:1b:00:00:01")), Some("Sonos"));
        // oui.csv: MA-L,C42996,Signify B.V.
        assert_eq!(lookup(&mac("c4:29:96:00:00:01")), Some("Signify"));
    }

    #[test]
    fn longer_prefixes_win_and_placeholders_are_left_out() {
        // mam.csv: MA-M,208593B,IOG Products LLC (inside 20:85:93, which oui.csv
        // lists as "IEEE Registration Authority").
        assert_eq!(lookup(&mac("20:85:93:b1:23:45")), Some("IOG Products"));
        // mam.csv: MA-M,208593A,"H3 Industries, Inc."
        assert_eq!(lookup(&mac("20:85:93:a0:00:00")), Some("H3 Industries"));
        // oui36.csv: MA-S,70B3D5719,2M Technology (inside 70:B3:D5, the IEEE's).
        assert_eq!(lookup(&mac("70:b3:d5:71:9a:bc")), Some("2M Technology"));
        // A neighbouring 36-bit block is not 2M Technology's.
        assert_ne!(lookup(&mac("70:b3:d5:71:aa:bc")), Some("2M Technology"));
        // mam.csv: MA-M,741AE09,Private: no vendor, and the IEEE's own block is no vendor either.
        assert_eq!(lookup(&mac("74:1a:e0:90:00:01")), None);
    }

    #[test]
    fn randomised_and_unregistered_addresses_have_no_vendor() {
        let random = mac("da:a1:19:12:34:56");
        assert!(is_randomized(&random));
        assert_eq!(lookup(&random), None);
        // Espressif's prefix with the locally-administered bit set.
        let random = mac("26:6f:28:12:34:56");
        assert!(is_randomized(&random));
        assert_eq!(lookup(&random), None);
        assert!(!is_randomized(&mac("24:6f:28:12:34:56")));
    }

    #[test]
    fn table_is_complete_and_within_budget() {
        assert!(entries() > 40_000, "{} entries", entries());
        assert!(TABLE.len() < 1 << 20, "{} bytes", TABLE.len());
    }
}
