//! Fail closed from boot: the ruleset in force, kept in the state directory so
//! `bulkhead restore` can put it back before any interface is up.
//!
//! Like Mullvad's early-boot firewall: at boot the kernel holds no rules, and
//! until the daemon has started (config read, store opened, links set up) a
//! quarantined device or an iot device would be forwarded like any other. The
//! daemon writes the document it last applied — both tables *with* their set
//! contents (which device is in which zone, who is blocked) and the held
//! domain-set addresses — and whether a tunnel was configured. `restore` applies
//! that document in one nft transaction and, for a tunnel, the kill switch's
//! policy rules and blackhole routes (no tunnel device yet, so selected traffic
//! goes nowhere rather than out of the WAN). When the daemon starts it replaces
//! both tables atomically as on any restart.
//!
//! The rules match interfaces by name (`iifname`, `oifname`), never by index,
//! so the document applies before the links exist and holds once they appear.
//!
//! This module is pure but for [`save`] and [`load`] (files) and [`restore`]
//! (through an [`NftBackend`]); the routing half is done by the caller.

use std::io::Write;
use std::path::{Path, PathBuf};

use nftables::schema::{NfListObject, NfObject, Nftables};
use nftables::types::NfFamily;
use serde::{Deserialize, Serialize};

use super::render::bridge::{ND_CLAIMS_CHAIN, ND_CLAIM_RULES};
use super::NftBackend;
use crate::inventory::UnixTime;

/// The file in the state directory.
pub const BOOT_FILE: &str = "boot-ruleset.json";

/// The file's format version; a newer one is refused (not guessed at).
const FORMAT: u32 = 1;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootRecord {
    /// [`FORMAT`].
    pub format: u32,
    /// When the daemon wrote it (Unix seconds).
    pub saved_at: UnixTime,
    /// A tunnel was configured: restore its kill switch (rules + blackholes).
    pub tunnel: bool,
    /// The nft JSON document that replaces both our tables, contents included.
    pub nftables: Nftables<'static>,
}

impl BootRecord {
    /// A record of `document` as of `now`.
    pub fn new(document: Nftables<'static>, tunnel: bool, now: UnixTime) -> Self {
        BootRecord {
            format: FORMAT,
            saved_at: now,
            tunnel,
            nftables: document,
        }
    }

    /// Rules, sets and set elements the document creates (what restore checks
    /// the kernel holds afterwards).
    pub fn counts(&self) -> ObjectCounts {
        let mut c = ObjectCounts::of_commands(&self.nftables);
        if self.guards_nd_claims() {
            // What the record puts in the chain (the placeholder; nothing in
            // records of the previous version) out, the guards in.
            c.rules = c.rules - self.nd_claims_document_rules() + ND_CLAIM_RULES.len();
        }
        c
    }

    /// How many rules the document itself adds to the bridge `nd-claims` chain.
    fn nd_claims_document_rules(&self) -> usize {
        self.nftables
            .objects
            .iter()
            .filter(|o| {
                matches!(o, NfObject::CmdObject(nftables::schema::NfCmd::Add(NfListObject::Rule(r)))
                    if r.family == NfFamily::Bridge && r.chain == ND_CLAIMS_CHAIN)
            })
            .count()
    }

    /// The document creates the bridge table's `nd-claims` chain, whose rules
    /// come over netlink after it (nft cannot load them: see
    /// [`TargetClaimRule`](super::render::bridge::TargetClaimRule)).
    fn guards_nd_claims(&self) -> bool {
        self.nftables.objects.iter().any(|o| {
            matches!(o, NfObject::CmdObject(nftables::schema::NfCmd::Add(NfListObject::Chain(c)))
                if c.family == NfFamily::Bridge && c.name == ND_CLAIMS_CHAIN)
        })
    }
}

/// How many rules, sets and set elements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    /// Tables.
    pub tables: usize,
    /// Rules.
    pub rules: usize,
    /// Sets.
    pub sets: usize,
    /// Elements in all sets.
    pub elements: usize,
}

impl ObjectCounts {
    fn add(&mut self, o: &NfListObject<'_>) {
        match o {
            NfListObject::Table(_) => self.tables += 1,
            NfListObject::Rule(_) => self.rules += 1,
            NfListObject::Set(s) => {
                self.sets += 1;
                self.elements += s.elem.as_ref().map_or(0, |e| e.len());
            }
            NfListObject::Element(e) => self.elements += e.elem.len(),
            _ => {}
        }
    }

    /// Of a document of commands: what its `add`s create (the leading
    /// `add table; delete table; add table` counts its table once).
    fn of_commands(doc: &Nftables<'_>) -> Self {
        let mut c = ObjectCounts::default();
        for o in doc.objects.iter() {
            if let NfObject::CmdObject(nftables::schema::NfCmd::Add(obj)) = o {
                c.add(obj);
            }
        }
        c.tables /= 2;
        c
    }

    /// Of listings (`nft -j list table …`).
    pub fn of_listings(listings: &[Nftables<'_>]) -> Self {
        let mut c = ObjectCounts::default();
        for doc in listings {
            for o in doc.objects.iter() {
                if let NfObject::ListObject(obj) = o {
                    c.add(obj);
                }
            }
        }
        c
    }
}

/// Errors of saving, loading and restoring.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a record (damaged, or hand-edited).
    #[error("{path} is not a saved ruleset")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Written by a newer Bulkhead.
    #[error("{path} has format {found}; this bulkhead reads format {FORMAT}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
    },
    /// nft refused the document (the kernel keeps what it had).
    #[error("nft refused the saved ruleset")]
    Nft(#[source] nftables::helper::NftablesError),
    /// The kernel does not hold what the document says.
    #[error("after restoring, the kernel holds {found:?}, the saved ruleset has {expected:?}")]
    ReadBack {
        /// What the document creates.
        expected: ObjectCounts,
        /// What the listing shows.
        found: ObjectCounts,
    },
}

/// Writes `record` to `state_dir`/[`BOOT_FILE`]: a temporary file, synced,
/// then renamed over the old one, so a power cut leaves the old record or the
/// new one, never half of either.
pub fn save(state_dir: &Path, record: &BootRecord) -> Result<(), BootError> {
    let path = state_dir.join(BOOT_FILE);
    let io = |source| BootError::Io {
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec(record).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.part");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io)?;
    // The rename itself is durable once the directory is.
    if let Ok(dir) = std::fs::File::open(state_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads the record, `None` when there is none (the daemon never applied a
/// ruleset on this machine).
pub fn load(state_dir: &Path) -> Result<Option<BootRecord>, BootError> {
    let path = state_dir.join(BOOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BootError::Io { path, source }),
    };
    parse(&path, &bytes).map(Some)
}

/// Parses a record's bytes (`path` names it in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<BootRecord, BootError> {
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let damaged = |source| BootError::Damaged {
        path: path.to_path_buf(),
        source,
    };
    let v: Version = serde_json::from_slice(bytes).map_err(damaged)?;
    if v.format != FORMAT {
        return Err(BootError::Format {
            path: path.to_path_buf(),
            found: v.format,
        });
    }
    serde_json::from_slice(bytes).map_err(damaged)
}

/// Applies the record's document in one transaction and checks, by reading
/// both tables back, that the kernel holds as many tables, rules, sets and
/// elements as it says. Returns what it holds.
pub fn restore(nft: &dyn NftBackend, record: &BootRecord) -> Result<ObjectCounts, BootError> {
    nft.apply(&record.nftables).map_err(BootError::Nft)?;
    let mut expected = record.counts();
    if record.guards_nd_claims() {
        // As at a replace: without NETLINK_NETFILTER the rest holds.
        match super::guard_nd_claims(nft).map_err(BootError::Nft)? {
            super::verify::NetlinkRules::Added => {}
            super::verify::NetlinkRules::Absent => expected.rules -= ND_CLAIM_RULES.len(),
            super::verify::NetlinkRules::Pending => {
                expected.rules = expected.rules + record.nd_claims_document_rules() - ND_CLAIM_RULES.len();
            }
        }
    }
    let mut listings = Vec::new();
    for fam in [NfFamily::INet, NfFamily::Bridge] {
        listings.push(nft.list_table(fam).map_err(BootError::Nft)?);
    }
    let found = ObjectCounts::of_listings(&listings);
    // Dynamic sets (the DNS-bypass guards, detection's meters) fill from
    // traffic at once: more elements than the document is no mismatch.
    let same_structure = (found.tables, found.rules, found.sets) == (expected.tables, expected.rules, expected.sets);
    if !same_structure || found.elements < expected.elements {
        return Err(BootError::ReadBack { expected, found });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::render;
    use crate::policy::{desired_membership, desired_ruleset};

    fn home_record() -> BootRecord {
        let config = crate::testutil::default_config();
        let ruleset = desired_ruleset(&config, &Default::default());
        let membership = desired_membership(&config, &crate::firewall::tests::sample_inventory());
        let doc = render::full_document_holding(&ruleset, &membership, &Default::default());
        BootRecord::new(doc, ruleset.tunnel.is_some(), 1_700_000_000)
    }

    #[test]
    fn a_saved_record_loads_back_the_same() {
        let dir = crate::testutil::Fixture::new("", &[]);
        let dir = dir.dir.as_path();
        assert_eq!(load(dir).expect("no file is not an error"), None);
        let record = home_record();
        save(dir, &record).expect("save");
        assert_eq!(load(dir).expect("load"), Some(record.clone()));
        assert!(!dir.join("boot-ruleset.json.part").exists());
        // Counts: both tables, their rules, and the members of the home
        // (the listing the fake kernel gives has no table objects).
        let c = record.counts();
        assert_eq!(c.tables, 2);
        assert!(c.rules > 10 && c.sets > 4 && c.elements >= 5, "{c:?}");
        let (inet, bridge) = crate::testutil::listing_of(&record.nftables);
        let listed = ObjectCounts::of_listings(&[inet, bridge]);
        assert_eq!(
            (listed.rules, listed.sets, listed.elements),
            (c.rules, c.sets, c.elements)
        );
    }

    #[test]
    fn a_restore_adds_the_guards_nft_cannot_load() {
        let record = home_record();
        let nft = crate::testutil::FakeNft::default();
        *nft.listing.lock().expect("lock") = Some(crate::testutil::listing_of(&record.nftables));
        // (The fake lists no table objects, so its read-back differs in
        // tables only: the rules, the guards included, are all there.)
        match restore(&nft, &record) {
            Err(BootError::ReadBack { expected, found }) => assert_eq!(found.rules, expected.rules),
            other => panic!("{other:?}"),
        }
        assert_eq!(*nft.nd_guarded.lock().expect("lock"), 1);
    }

    #[test]
    fn damaged_or_newer_files_are_refused_by_name() {
        let p = Path::new("/var/lib/bulkhead/boot-ruleset.json");
        let e = parse(p, b"{\"format\":1,\"saved_at\":1,\"tunnel\":false,\"nftables\":").expect_err("cut short");
        assert!(
            e.to_string().contains("boot-ruleset.json is not a saved ruleset"),
            "{e}"
        );
        let e = parse(p, b"{\"format\":7}").expect_err("newer");
        assert!(e.to_string().contains("format 7"), "{e}");
        assert!(parse(p, b"").is_err());
    }
}
