//! The test zones the resolvers serve: records, zone files, names.

use super::*;

/// One resource record, as it goes into a zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, fully qualified with the final dot (`www.example.test.`).
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Type mnemonic (`A`, `AAAA`, `CNAME`, `TXT`, ...).
    pub rtype: String,
    /// Record data in zone-file syntax (`192.0.2.80`, `www.example.test.`).
    pub data: String,
}

impl Record {
    /// A record; `name` gets its final dot if it lacks one.
    pub fn new(name: &str, ttl: u32, rtype: &str, data: impl Into<String>) -> Record {
        Record {
            name: fqdn(name),
            ttl,
            rtype: rtype.to_string(),
            data: data.into(),
        }
    }
}

/// One zone: its origin and its records (the SOA and NS are added when the
/// zone file is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Origin, fully qualified (`example.test.`).
    pub origin: String,
    /// Records, all at or below the origin.
    pub records: Vec<Record>,
}

impl Zone {
    /// The zone file text: `$ORIGIN`, SOA (negative TTL [`NEGATIVE_TTL`]), NS,
    /// then the records with fully qualified names.
    pub fn zone_file(&self) -> String {
        let origin = &self.origin;
        let mut text = String::with_capacity(64 + self.records.len() * 48);
        // Writing to a String cannot fail.
        let _ = writeln!(text, "$ORIGIN {origin}\n$TTL {DEFAULT_TTL}");
        let _ = writeln!(
            text,
            "{origin} {DEFAULT_TTL} IN SOA ns.{EXAMPLE_ZONE} hostmaster.{EXAMPLE_ZONE} 1 3600 600 86400 {NEGATIVE_TTL}"
        );
        let _ = writeln!(text, "{origin} {DEFAULT_TTL} IN NS ns.{EXAMPLE_ZONE}");
        for r in &self.records {
            let _ = writeln!(text, "{} {} IN {} {}", r.name, r.ttl, r.rtype, r.data);
        }
        text
    }

    /// The zone file's name in a work directory (`example.test.zone`).
    pub fn file_name(&self) -> String {
        format!("{}zone", self.origin)
    }
}

/// Authoritative test data for [`Unbound`].
///
/// [`TestZones::new`] is the zone [`EXAMPLE_ZONE`]:
///
/// | name | records |
/// | --- | --- |
/// | `ns.example.test` | A 192.0.2.53 |
/// | `www.example.test` | A [`WWW_V4`], AAAA [`WWW_V6`] |
/// | `cdn.example.test` | CNAME `www.example.test.` |
/// | `video.example.test` | A [`VIDEO_V4`] |
/// | `big.example.test` | [`BIG_RECORDS`] A records 192.0.2.101 to .140 |
/// | `short.example.test` | A [`SHORT_V4`], TTL [`SHORT_TTL`] |
/// | `private.example.test` | A [`PRIVATE_V4`] |
/// | `loop.example.test` | A [`LOOP_V4`] |
///
/// Every other name in the zone is NXDOMAIN (with the SOA, negative TTL
/// [`NEGATIVE_TTL`]); TTLs are [`DEFAULT_TTL`] unless said otherwise.
/// [`TestZones::with_bulk`] adds the zone [`BULK_ZONE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestZones {
    pub(crate) zones: Vec<Zone>,
}

impl Default for TestZones {
    fn default() -> Self {
        Self::new()
    }
}

impl TestZones {
    /// The zone `example.test.` (see the table above).
    pub fn new() -> TestZones {
        let r = |name: &str, rtype: &str, data: String| Record::new(name, DEFAULT_TTL, rtype, data);
        let mut records = vec![
            r("ns.example.test", "A", "192.0.2.53".into()),
            r("www.example.test", "A", WWW_V4.to_string()),
            r("www.example.test", "AAAA", WWW_V6.to_string()),
            r("cdn.example.test", "CNAME", "www.example.test.".into()),
            r("video.example.test", "A", VIDEO_V4.to_string()),
            Record::new("short.example.test", SHORT_TTL, "A", SHORT_V4.to_string()),
            r("private.example.test", "A", PRIVATE_V4.to_string()),
            r("loop.example.test", "A", LOOP_V4.to_string()),
        ];
        records.extend((0..BIG_RECORDS).map(|i| r("big.example.test", "A", big_v4(i).to_string())));
        TestZones {
            zones: vec![Zone {
                origin: EXAMPLE_ZONE.to_string(),
                records,
            }],
        }
    }

    /// [`TestZones::new`] plus the zone `bulk.test.` with `n` names
    /// `host{i}.bulk.test` (`i` in `0..n`), each with one A record
    /// [`TestZones::bulk_addr`] and TTL [`BULK_TTL`]: distinct names for
    /// cache-miss benchmarks.
    pub fn with_bulk(n: usize) -> TestZones {
        let mut zones = TestZones::new();
        let records = (0..n)
            .map(|i| {
                Record::new(
                    &TestZones::bulk_name(i),
                    BULK_TTL,
                    "A",
                    TestZones::bulk_addr(i).to_string(),
                )
            })
            .collect();
        zones.zones.push(Zone {
            origin: BULK_ZONE.to_string(),
            records,
        });
        zones
    }

    /// Adds a record to the zone it belongs to (the one with the longest
    /// matching origin); fails if no zone holds its name.
    pub fn with_record(mut self, record: Record) -> Result<TestZones> {
        let zone = self
            .zones
            .iter_mut()
            .filter(|z| in_zone(&record.name, &z.origin))
            .max_by_key(|z| z.origin.len())
            .ok_or_else(|| Error::Spec(format!("{} is in none of the test zones", record.name)))?;
        zone.records.push(record);
        Ok(self)
    }

    /// The zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// How many bulk names there are (0 without [`TestZones::with_bulk`]).
    pub fn bulk_count(&self) -> usize {
        self.zones
            .iter()
            .find(|z| z.origin == BULK_ZONE)
            .map_or(0, |z| z.records.len())
    }

    /// The `i`th bulk name, `host{i}.bulk.test.`.
    pub fn bulk_name(i: usize) -> String {
        format!("host{i}.{BULK_ZONE}")
    }

    /// The `i`th bulk name's address: `198.51.100.x` and `203.0.113.x`, x
    /// cycling through 1..=254 (addresses repeat; names do not).
    pub fn bulk_addr(i: usize) -> Ipv4Addr {
        // Both casts are of values below 256 by construction.
        let host = (i % 254) as u8 + 1;
        if (i / 254).is_multiple_of(2) {
            Ipv4Addr::new(198, 51, 100, host)
        } else {
            Ipv4Addr::new(203, 0, 113, host)
        }
    }

    /// Writes a dnsperf query file: `host{i}.bulk.test A` for `i` in `0..n`,
    /// one per line. Names past the zone's [`TestZones::bulk_count`] are
    /// NXDOMAIN.
    pub fn queries_file(path: &Path, n: usize) -> Result<()> {
        TestZones::queries_file_from(path, 0, n)
    }

    /// Like [`TestZones::queries_file`], for `i` in `first..first + n`: a
    /// slice of names that another file did not use.
    pub fn queries_file_from(path: &Path, first: usize, n: usize) -> Result<()> {
        let mut text = String::with_capacity(n * 24);
        for i in first..first + n {
            let _ = writeln!(text, "{} A", TestZones::bulk_name(i));
        }
        write_file(path, &text)
    }

    /// Writes every zone's file into `dir`; returns `(origin, path)` pairs.
    pub fn write_zone_files(&self, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
        let mut written = Vec::with_capacity(self.zones.len());
        for zone in &self.zones {
            let path = dir.join(zone.file_name());
            write_file(&path, &zone.zone_file())?;
            written.push((zone.origin.clone(), path));
        }
        Ok(written)
    }
}

/// The `i`th address of `big.example.test` (0-based): 192.0.2.101 upwards.
pub fn big_v4(i: usize) -> Ipv4Addr {
    // BIG_RECORDS is 40, so the sum stays far below 256 for the records served.
    Ipv4Addr::new(192, 0, 2, (101 + i % 150) as u8)
}

pub(crate) fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

pub(crate) fn in_zone(name: &str, origin: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let origin = origin.to_ascii_lowercase();
    name == origin || name.ends_with(&format!(".{origin}"))
}
