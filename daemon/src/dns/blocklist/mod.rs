//! PURE: DNS blocklists — a parser for the common list formats and a compact matcher.
//!
//! The caller reads each list (file or download), hands its text to [`parse_list`],
//! reports the [`BadLine`]s as `path:line: reason`, and builds one [`Blocklists`] from
//! all parsed lists. The resolver then asks [`Blocklists::check`] for every query name
//! with the [`ListMask`] of the lists that apply to the asking client.
//!
//! # Accepted formats (one rule per line)
//!
//! Lines are trimmed of ASCII whitespace; CRLF and a UTF-8 byte order mark are fine;
//! empty lines are ignored.
//!
//! | line | meaning |
//! | --- | --- |
//! | `# ...`, `! ...`, `[Adblock Plus 2.0]` | comment |
//! | `0.0.0.0 a.example b.example # ads` | hosts file: blocks each name **exactly** (as AdGuard Home does) |
//! | `ads.example` | plain domain list: blocks the name **and its subdomains** (as blocky does) |
//! | `\|\|ads.example^` | adblock: blocks the name and its subdomains |
//! | `\|ads.example^` | adblock: blocks exactly the name |
//! | `@@\|\|ads.example^`, `@@\|ads.example^` | exception (allow rule), same scopes |
//!
//! Hosts lines may use `0.0.0.0`, `::` and any loopback address (`127.0.0.1`, `::1`).
//! The usual hosts-file boilerplate names (`localhost`, `broadcasthost`,
//! `ip6-allnodes`, ...) are skipped silently, also after other addresses
//! (`ff02::1 ip6-allnodes`), and in plain lists.
//!
//! Unsupported, counted and listed but never fatal: `$modifiers` (including
//! `$important`), wildcards (`*`, also `*.example.com`), regular expressions
//! `/.../`, paths and URLs, cosmetic rules (`##`), adblock rules without the `^`
//! separator or without a `|`/`||` anchor, bare IP addresses, and hosts entries that
//! point a name at another address (a rewrite, not a block).
//!
//! Names are case-insensitive (stored lower-case), one trailing dot is dropped, each
//! label is 1–63 bytes of `[A-Za-z0-9_-]` not starting or ending with `-`, the whole
//! name at most 253 bytes. Single-label names are accepted. Non-ASCII (IDN not in
//! punycode) is a bad line. A hosts line with some bad names still blocks its good
//! names and is reported once, with the first problem found.
//!
//! # Matching
//!
//! Only the lists enabled in the client's [`ListMask`] count. If any of them has an
//! exception matching the name, the verdict is [`Verdict::Allowed`] (exceptions win
//! across lists, as in AdGuard without `$important`); otherwise if any has a block rule
//! matching, [`Verdict::Blocked`]. Either names the lowest matching [`ListId`]. A
//! subtree rule for `example.com` matches `example.com` and `x.example.com`, never
//! `badexample.com`; an exact rule matches only the name itself.
//!
//! # Memory layout, and why
//!
//! Routers have 64–256 MB of RAM and big lists have a million names, so a
//! `HashSet<String>` (about 60–80 bytes per name) is too much. Here every rule is a
//! *record* in one byte arena: `[name length][rule kind][name, byte-reversed and
//! lower-case]`, e.g. `moc.elpmaxe.sda` for `ads.example.com`. A [`ParsedList`] is just
//! that arena plus counters: about name + 2 bytes per rule, no per-rule allocation.
//!
//! [`Blocklists::build`] takes the lists by value and appends their arenas into one
//! (the largest is reused, each other one is dropped as soon as it is copied). Then it
//! puts every record into an open-addressing hash table (`NameTable`: per slot a
//! `u32` record offset, a one-byte hash fingerprint and a palette index, 80% full at
//! most); a record whose name is already there only adds its list's bit to that name's
//! rules, and is later squeezed out of the arena in place. A name's rules are four
//! list bit sets (`RuleMasks`: block exact/subtree, allow exact/subtree) kept once
//! per distinct combination in a palette: most names share a handful of combinations
//! ("blocked as a subtree by lists 0 and 2"), so the per-name palette index is one byte.
//! Total: name + 2 bytes in the arena plus 1.25 × 6 bytes of table, about 30 bytes per
//! name for 21-byte names, and the build holds little more than that at any time (see
//! [`Blocklists::build_peak_bytes`]).
//!
//! A lookup walks the query once from its end, lower-casing it into a stack buffer
//! (reversed, like the stored names) and feeding a byte-at-a-time hash: at each dot it
//! has the hash of a parent (`com`, `example.com`, ...) and probes the table for it
//! (subtree rules), and at the end for the full name (exact and subtree rules). About
//! one cache miss per probe; no allocation.
//!
//! The hash is not keyed: a list crafted to collide could slow its own build and
//! lookups down (never make them wrong). Lists are chosen by the router's owner.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

mod parse;
pub use parse::*;

/// How many lists a [`Blocklists`] can hold: ids `0..MAX_LISTS`, one bit each in a
/// [`ListMask`]. Lists with a larger id are ignored by [`Blocklists::build`] and
/// reported by [`Blocklists::ignored_lists`].
pub const MAX_LISTS: u16 = 64;

/// How many bad and how many unsupported lines a [`ParsedList`] keeps as records;
/// the totals count all of them.
pub const MAX_LINE_RECORDS: usize = 100;

/// Longest domain name in text form, without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// Longest label.
const MAX_LABEL_LEN: usize = 63;
/// Bytes in front of the name in a record: length and rule kind.
const RECORD_HEADER: usize = 2;
/// Rule kind byte of a record that [`Blocklists::build`] merged into an earlier
/// record of the same name, until it squeezes it out.
const DEAD_RECORD: u8 = 0xff;

/// One blocklist's number. Ids below [`MAX_LISTS`] are usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListId(pub u16);

impl ListId {
    /// This list's bit in a [`ListMask`]; 0 for an id of [`MAX_LISTS`] or more.
    pub const fn bit(self) -> u64 {
        if self.0 < MAX_LISTS {
            1 << self.0
        } else {
            0
        }
    }

    /// The lowest list id in a non-empty set of bits.
    fn lowest_in(bits: u64) -> Self {
        // trailing_zeros of a non-zero u64 is < 64: fits in u16.
        Self(bits.trailing_zeros() as u16)
    }
}

/// A set of lists (bit `i` = [`ListId`]`(i)`): the lists that apply to a client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListMask(pub u64);

impl ListMask {
    /// No list.
    pub const NONE: Self = Self(0);
    /// Every list.
    pub const ALL: Self = Self(u64::MAX);

    /// Just this list (empty for an id of [`MAX_LISTS`] or more).
    pub const fn single(id: ListId) -> Self {
        Self(id.bit())
    }

    /// This set plus `id` (unchanged for an id of [`MAX_LISTS`] or more).
    #[must_use]
    pub const fn with(self, id: ListId) -> Self {
        Self(self.0 | id.bit())
    }

    /// Whether `id` is in the set.
    pub const fn contains(self, id: ListId) -> bool {
        self.0 & id.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<ListId> for ListMask {
    fn from_iter<I: IntoIterator<Item = ListId>>(ids: I) -> Self {
        ids.into_iter().fold(Self::NONE, Self::with)
    }
}

/// What the enabled lists say about a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No enabled list has a rule for the name.
    NotListed,
    /// An enabled list blocks the name and no enabled list excepts it; `list` is the
    /// lowest such id.
    Blocked {
        /// The lowest enabled list that blocks the name.
        list: ListId,
    },
    /// An exception (`@@` rule) of an enabled list matches the name; it wins over
    /// blocks. `list` is the lowest such id.
    Allowed {
        /// The lowest enabled list with a matching exception.
        list: ListId,
    },
}

/// Rule counts of one list in a [`Blocklists`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListStats {
    /// The list.
    pub list: ListId,
    /// Rules the list brought, duplicates included.
    pub rules: usize,
    /// Distinct names the list blocks (exactly or as a subtree).
    pub blocked_names: usize,
    /// Distinct names the list has exceptions for.
    pub allowed_names: usize,
}

/// Which lists have which kind of rule for one name: one bit per list in each mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct RuleMasks {
    block_exact: u64,
    block_subtree: u64,
    allow_exact: u64,
    allow_subtree: u64,
}

impl RuleMasks {
    /// These masks plus a rule of `kind` from the list with bit `bit`.
    fn with(mut self, kind: RuleKind, bit: u64) -> Self {
        match kind {
            RuleKind::BlockExact => self.block_exact |= bit,
            RuleKind::BlockSubtree => self.block_subtree |= bit,
            RuleKind::AllowExact => self.allow_exact |= bit,
            RuleKind::AllowSubtree => self.allow_subtree |= bit,
        }
        self
    }
}

/// Per slot of the [`NameTable`], its index into the palette of [`RuleMasks`]: one
/// byte each while there are at most 256 combinations, wider only when needed.
enum PaletteIndex {
    Narrow(Vec<u8>),
    Medium(Vec<u16>),
    Wide(Vec<u32>),
}

impl PaletteIndex {
    fn set(&mut self, position: usize, index: u32) {
        loop {
            match self {
                Self::Narrow(indices) => match u8::try_from(index) {
                    Ok(index) => return set_at(indices, position, index),
                    Err(_) => *self = Self::Medium(indices.iter().map(|&i| u16::from(i)).collect()),
                },
                Self::Medium(indices) => match u16::try_from(index) {
                    Ok(index) => return set_at(indices, position, index),
                    Err(_) => *self = Self::Wide(indices.iter().map(|&i| u32::from(i)).collect()),
                },
                Self::Wide(indices) => return set_at(indices, position, index),
            }
        }
    }

    fn get(&self, position: usize) -> usize {
        let index = match self {
            Self::Narrow(indices) => indices.get(position).map(|&i| u32::from(i)),
            Self::Medium(indices) => indices.get(position).map(|&i| u32::from(i)),
            Self::Wide(indices) => indices.get(position).copied(),
        };
        index.unwrap_or(0) as usize
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Narrow(indices) => indices.capacity(),
            Self::Medium(indices) => indices.capacity() * 2,
            Self::Wide(indices) => indices.capacity() * 4,
        }
    }
}

fn set_at<T>(values: &mut [T], position: usize, value: T) {
    if let Some(slot) = values.get_mut(position) {
        *slot = value;
    }
}

/// Hash of a reversed name, fed one byte at a time so that a lookup gets the hash of
/// every parent (`moc`, `moc.elpmaxe`, ...) on its way through the query: FNV-1a,
/// finished with a 64-bit mixer so that all bits are usable.
#[derive(Clone, Copy)]
struct NameHash(u64);

impl NameHash {
    const START: Self = Self(0xcbf2_9ce4_8422_2325);

    fn push(self, byte: u8) -> Self {
        Self((self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
    }

    fn of(reversed_name: &[u8]) -> Self {
        reversed_name.iter().fold(Self::START, |hash, &byte| hash.push(byte))
    }

    fn finish(self) -> u64 {
        let mut x = self.0;
        x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

/// Marks a free slot of the [`NameTable`] (offsets are below it: the arena is
/// smaller than 4 GiB).
const EMPTY_SLOT: u32 = u32::MAX;

/// What a probe of the [`NameTable`] found.
enum Probe {
    /// The name is in this slot.
    Found(usize),
    /// The name is absent; this is the free slot where it would go.
    Vacant(usize),
    /// The name is absent and no slot is free (never, with the sizes used).
    Full,
}

/// Open-addressing hash table (linear probing) from a name to its rule masks, at most
/// 80% full. Three parallel arrays, one entry per slot.
struct NameTable {
    /// Arena offset of the name's record, or [`EMPTY_SLOT`].
    slots: Vec<u32>,
    /// The low byte of the name's hash: a probe reads the record (another cache miss)
    /// only when this matches, i.e. for 1 in 256 other names.
    fingerprints: Vec<u8>,
    /// The name's entry in the palette.
    palette_index: PaletteIndex,
}

impl NameTable {
    /// An empty table with room for `names` names.
    fn for_names(names: usize) -> Self {
        let len = if names == 0 { 0 } else { names + names / 4 + 1 };
        Self {
            slots: vec![EMPTY_SLOT; len],
            fingerprints: vec![0; len],
            palette_index: PaletteIndex::Narrow(vec![0; len]),
        }
    }

    fn probe(&self, arena: &[u8], hash: u64, reversed_name: &[u8]) -> Probe {
        let len = self.slots.len();
        let fingerprint = hash as u8;
        // The high half of the hash scaled to the table (Lemire's "fastrange").
        let mut slot = (((hash >> 32) * len as u64) >> 32) as usize;
        for _ in 0..len {
            let offset = self.slots.get(slot).copied().unwrap_or(EMPTY_SLOT);
            if offset == EMPTY_SLOT {
                return Probe::Vacant(slot);
            }
            if self.fingerprints.get(slot) == Some(&fingerprint) && record_name(arena, offset) == reversed_name {
                return Probe::Found(slot);
            }
            slot += 1;
            if slot == len {
                slot = 0;
            }
        }
        Probe::Full
    }

    fn occupy(&mut self, slot: usize, offset: u32, hash: u64, palette_index: u32) {
        set_at(&mut self.slots, slot, offset);
        set_at(&mut self.fingerprints, slot, hash as u8);
        self.palette_index.set(slot, palette_index);
    }

    /// `(slot, record offset)` of every name in the table.
    fn occupied(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.slots
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, offset)| offset != EMPTY_SLOT)
    }

    /// The same names in a table sized for them.
    fn refit(&self, arena: &[u8], names: usize) -> Self {
        let mut fitted = Self::for_names(names);
        for (slot, offset) in self.occupied() {
            let name = record_name(arena, offset);
            let hash = NameHash::of(name).finish();
            if let Probe::Vacant(free) = fitted.probe(arena, hash, name) {
                fitted.occupy(free, offset, hash, self.palette_index.get(slot) as u32);
            }
        }
        fitted
    }

    fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
            + self.fingerprints.capacity()
            + self.palette_index.heap_bytes()
    }
}

/// The distinct [`RuleMasks`] combinations, each stored once.
#[derive(Default)]
struct Palette {
    masks: Vec<RuleMasks>,
    /// Only while building.
    lookup: HashMap<RuleMasks, u32>,
}

impl Palette {
    fn intern(&mut self, masks: RuleMasks) -> u32 {
        let all = &mut self.masks;
        *self.lookup.entry(masks).or_insert_with(|| {
            all.push(masks);
            // At most one combination per record, and records are < 4 GiB.
            (all.len() - 1) as u32
        })
    }

    fn get(&self, index: usize) -> RuleMasks {
        self.masks.get(index).copied().unwrap_or_default()
    }

    fn heap_bytes(&self) -> usize {
        self.masks.capacity() * std::mem::size_of::<RuleMasks>()
            + self.lookup.capacity() * (std::mem::size_of::<(RuleMasks, u32)>() + 1)
    }
}

/// All blocklists, merged for lookups. Immutable once built; rebuild to change.
pub struct Blocklists {
    /// Records `[len][unused][reversed lower-case name]`, one per distinct name, in no
    /// particular order.
    arena: Vec<u8>,
    /// Name → palette entry.
    table: NameTable,
    /// The distinct rule-mask combinations.
    palette: Palette,
    /// Distinct names.
    names: usize,
    /// Per list, by id.
    stats: Vec<ListStats>,
    ignored: Vec<ListId>,
    build_peak_bytes: usize,
}

impl Default for Blocklists {
    fn default() -> Self {
        Self::build(Vec::new())
    }
}

impl fmt::Debug for Blocklists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocklists")
            .field("names", &self.names)
            .field("palette", &self.palette.masks.len())
            .field("stats", &self.stats)
            .field("ignored", &self.ignored)
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

impl Blocklists {
    /// Merges parsed lists into one matcher.
    ///
    /// Lists with an id of [`MAX_LISTS`] or more are ignored (see
    /// [`ignored_lists`](Self::ignored_lists)); so is a list that would push the merged
    /// arena past 4 GiB. Several lists with the same id are merged into that one list.
    /// Takes the lists by value to reuse and free their memory while building.
    pub fn build(lists: Vec<(ListId, ParsedList)>) -> Self {
        let mut peak = PeakEstimate::default();
        let mut ignored = Vec::new();
        let mut accepted = Vec::with_capacity(lists.len());
        for (id, list) in lists {
            if id.0 < MAX_LISTS {
                accepted.push((id, list));
            } else {
                ignored.push(id);
            }
        }
        let Appended {
            mut arena,
            owners,
            records,
            mut stats,
        } = append_arenas(accepted, &mut peak, &mut ignored);

        // One slot per record: a record whose name is already in the table adds its
        // list's bit there and is marked dead.
        let mut table = NameTable::for_names(records);
        let mut palette = Palette::default();
        let mut names = 0;
        let mut next = 0;
        while let Some(record) = Records::new(&arena).at(next) {
            next = record.offset + RECORD_HEADER + record.reversed_name.len();
            let Some(kind) = RuleKind::from_tag(record.tag) else {
                continue;
            };
            // Below 4 GiB: checked by append_arenas.
            let offset = record.offset as u32;
            let bit = owner_bit(&owners, offset);
            let hash = NameHash::of(record.reversed_name).finish();
            match table.probe(&arena, hash, record.reversed_name) {
                Probe::Found(slot) => {
                    let masks = palette.get(table.palette_index.get(slot)).with(kind, bit);
                    table.palette_index.set(slot, palette.intern(masks));
                    set_at(&mut arena, offset as usize + 1, DEAD_RECORD);
                }
                Probe::Vacant(slot) => {
                    table.occupy(slot, offset, hash, palette.intern(RuleMasks::default().with(kind, bit)));
                    names += 1;
                }
                Probe::Full => {}
            }
        }
        peak.note(arena.capacity() + table.heap_bytes() + palette.heap_bytes());
        count_names_per_list(&table, &palette, &mut stats);

        if names < records {
            remove_dead_records(&mut arena, &mut table);
            arena.shrink_to_fit();
            // Sized for every record, duplicates included: refit if that matters.
            if records - names > names / 10 {
                let fitted = table.refit(&arena, names);
                peak.note(arena.capacity() + table.heap_bytes() + fitted.heap_bytes() + palette.heap_bytes());
                table = fitted;
            }
        }
        palette.lookup = HashMap::new();
        palette.masks.shrink_to_fit();

        let mut blocklists = Self {
            arena,
            table,
            palette,
            names,
            stats,
            ignored,
            build_peak_bytes: 0,
        };
        blocklists.build_peak_bytes = peak.bytes.max(blocklists.heap_bytes());
        blocklists
    }

    /// What the lists enabled in `enabled` say about the query name `name` (any case,
    /// optional trailing dot). Names that are empty, the root (`.`) or longer than 253
    /// bytes are never listed. Does not allocate.
    pub fn check(&self, name: &str, enabled: ListMask) -> Verdict {
        if enabled.is_empty() || self.names == 0 {
            return Verdict::NotListed;
        }
        let name = name.as_bytes();
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Verdict::NotListed;
        }
        let mut blocked = 0u64;
        let mut allowed = 0u64;
        // The query reversed and lower-cased, like the stored names. Each parent is a
        // prefix of it that ends before a dot, and its hash is on the way.
        let mut reversed = [0u8; MAX_NAME_LEN];
        let mut hash = NameHash::START;
        for (position, &byte) in name.iter().rev().enumerate() {
            let byte = byte.to_ascii_lowercase();
            if byte == b'.' && position > 0 {
                let masks = self.masks_of(&reversed[..position], hash);
                blocked |= masks.block_subtree;
                allowed |= masks.allow_subtree;
            }
            reversed[position] = byte;
            hash = hash.push(byte);
        }
        let masks = self.masks_of(&reversed[..name.len()], hash);
        blocked |= masks.block_exact | masks.block_subtree;
        allowed |= masks.allow_exact | masks.allow_subtree;

        let (blocked, allowed) = (blocked & enabled.0, allowed & enabled.0);
        if allowed != 0 {
            Verdict::Allowed {
                list: ListId::lowest_in(allowed),
            }
        } else if blocked != 0 {
            Verdict::Blocked {
                list: ListId::lowest_in(blocked),
            }
        } else {
            Verdict::NotListed
        }
    }

    /// The rules for exactly this (reversed) name; no bits if it has none.
    fn masks_of(&self, reversed_name: &[u8], hash: NameHash) -> RuleMasks {
        match self.table.probe(&self.arena, hash.finish(), reversed_name) {
            Probe::Found(slot) => self.palette.get(self.table.palette_index.get(slot)),
            Probe::Vacant(_) | Probe::Full => RuleMasks::default(),
        }
    }

    /// Distinct names with at least one rule.
    pub fn len(&self) -> usize {
        self.names
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.names == 0
    }

    /// Rule counts per list, by id (lists merged under one id count as one).
    pub fn stats(&self) -> &[ListStats] {
        &self.stats
    }

    /// Lists left out by [`build`](Self::build): id of [`MAX_LISTS`] or more, or past
    /// the 4 GiB arena limit.
    pub fn ignored_lists(&self) -> &[ListId] {
        &self.ignored
    }

    /// Heap bytes owned now (capacities of the arena, the table and the palette).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.table.heap_bytes()
            + self.palette.heap_bytes()
            + self.stats.capacity() * std::mem::size_of::<ListStats>()
            + self.ignored.capacity() * std::mem::size_of::<ListId>()
    }

    /// Estimated most heap bytes held at once by [`build`](Self::build), counting the
    /// input lists it was given (their arenas become its arena). Counts capacities;
    /// assumes `realloc` of a big block grows or shrinks it in place (glibc does, with
    /// `mremap`), otherwise one list's bytes more for a moment.
    pub fn build_peak_bytes(&self) -> usize {
        self.build_peak_bytes
    }
}

/// The arenas of all lists, one after the other.
struct Appended {
    arena: Vec<u8>,
    /// (offset of the first record, list bit) per list, by offset.
    owners: Vec<(u32, u64)>,
    /// Records in `arena`.
    records: usize,
    /// One per list id, by id, without the name counts yet.
    stats: Vec<ListStats>,
}

/// Appends the lists' arenas into one, largest first (so a single big list is never
/// copied), dropping each list as soon as it is in. Lists that would take the arena
/// to 4 GiB go to `ignored`.
fn append_arenas(mut lists: Vec<(ListId, ParsedList)>, peak: &mut PeakEstimate, ignored: &mut Vec<ListId>) -> Appended {
    lists.sort_by_key(|(_, list)| std::cmp::Reverse(list.records.len()));
    let mut input_bytes: usize = lists.iter().map(|(_, list)| list.heap_bytes()).sum();
    peak.note(input_bytes);
    let mut appended = Appended {
        arena: Vec::new(),
        owners: Vec::new(),
        records: 0,
        stats: Vec::new(),
    };
    for (id, list) in lists {
        input_bytes -= list.heap_bytes();
        let arena = &mut appended.arena;
        // Offsets, even one past the end, must stay below EMPTY_SLOT.
        let (Ok(start), Ok(end)) = (
            u32::try_from(arena.len()),
            u32::try_from(arena.len() + list.records.len()),
        ) else {
            ignored.push(id);
            continue;
        };
        if end == EMPTY_SLOT {
            ignored.push(id);
            continue;
        }
        let rules = list.rules_total();
        if arena.is_empty() {
            *arena = list.records;
        } else {
            arena.reserve_exact(list.records.len());
            peak.note(arena.capacity() + list.records.capacity() + input_bytes);
            arena.extend_from_slice(&list.records);
        }
        appended.owners.push((start, id.bit()));
        appended.records += rules;
        match appended.stats.iter_mut().find(|stats| stats.list == id) {
            Some(stats) => stats.rules += rules,
            None => appended.stats.push(ListStats {
                list: id,
                rules,
                blocked_names: 0,
                allowed_names: 0,
            }),
        }
    }
    appended.stats.sort_by_key(|stats| stats.list);
    appended
}

/// Fills in the distinct names each list blocks and excepts.
fn count_names_per_list(table: &NameTable, palette: &Palette, stats: &mut [ListStats]) {
    let mut per_list = [(0usize, 0usize); MAX_LISTS as usize];
    for (slot, _) in table.occupied() {
        let masks = palette.get(table.palette_index.get(slot));
        for bit in Bits(masks.block_exact | masks.block_subtree) {
            per_list[bit].0 += 1;
        }
        for bit in Bits(masks.allow_exact | masks.allow_subtree) {
            per_list[bit].1 += 1;
        }
    }
    for stats in stats {
        let (blocked, allowed) = per_list[usize::from(stats.list.0)];
        stats.blocked_names = blocked;
        stats.allowed_names = allowed;
    }
}

/// The list bit of the record at `offset`, from the table of where each list's
/// records start.
fn owner_bit(owners: &[(u32, u64)], offset: u32) -> u64 {
    let after = owners.partition_point(|&(start, _)| start <= offset);
    after
        .checked_sub(1)
        .and_then(|index| owners.get(index))
        .map_or(0, |&(_, bit)| bit)
}

/// Squeezes the records marked [`DEAD_RECORD`] out of `arena` in place, moving the
/// others down and updating their offsets in `table`.
///
/// Records only move down, each to below its old end, so every record the table
/// points to stays readable throughout: the ones not reached yet are untouched, the
/// ones already moved are at their new offsets.
fn remove_dead_records(arena: &mut Vec<u8>, table: &mut NameTable) {
    let mut write = 0;
    let mut next = 0;
    while let Some(record) = Records::new(arena).at(next) {
        let (read, size) = (record.offset, RECORD_HEADER + record.reversed_name.len());
        next = read + size;
        if record.tag == DEAD_RECORD {
            continue;
        }
        if write != read {
            let hash = NameHash::of(record.reversed_name).finish();
            let slot = match table.probe(arena, hash, record.reversed_name) {
                Probe::Found(slot) => Some(slot),
                Probe::Vacant(_) | Probe::Full => None,
            };
            arena.copy_within(read..next, write);
            if let Some(slot) = slot {
                // Below 4 GiB, like every offset.
                set_at(&mut table.slots, slot, write as u32);
            }
        }
        write += size;
    }
    arena.truncate(write);
}

/// The positions of the set bits of a mask, lowest first.
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(bit)
    }
}

/// Running maximum of heap bytes held during a build.
#[derive(Default)]
struct PeakEstimate {
    bytes: usize,
}

impl PeakEstimate {
    fn note(&mut self, bytes: usize) {
        self.bytes = self.bytes.max(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(text: &str) -> Vec<(RuleKind, String)> {
        parse_list(text).rules().map(|rule| (rule.kind, rule.name)).collect()
    }

    fn rule(kind: RuleKind, name: &str) -> (RuleKind, String) {
        (kind, name.to_string())
    }

    fn lists(texts: &[&str]) -> Blocklists {
        Blocklists::build(
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| (ListId(i as u16), parse_list(text)))
                .collect(),
        )
    }

    fn blocked(list: u16) -> Verdict {
        Verdict::Blocked { list: ListId(list) }
    }

    fn allowed(list: u16) -> Verdict {
        Verdict::Allowed { list: ListId(list) }
    }

    fn reasons(lines: &[BadLine]) -> Vec<(usize, &'static str)> {
        lines.iter().map(|bad| (bad.line, bad.reason)).collect()
    }

    // ---- parser -------------------------------------------------------------

    #[test]
    fn hosts_lines_block_exact_names() {
        let text = "0.0.0.0 ads.example.com\n127.0.0.1 a.example b.example\n:: six.example\n::1 one.example\n\
                    ::0 zero.example\n0.0.0.0\ttab.example   # trailing comment\n";
        let list = parse_list(text);
        assert_eq!(
            list.rules().map(|rule| (rule.kind, rule.name)).collect::<Vec<_>>(),
            vec![
                rule(RuleKind::BlockExact, "ads.example.com"),
                rule(RuleKind::BlockExact, "a.example"),
                rule(RuleKind::BlockExact, "b.example"),
                rule(RuleKind::BlockExact, "six.example"),
                rule(RuleKind::BlockExact, "one.example"),
                rule(RuleKind::BlockExact, "zero.example"),
                rule(RuleKind::BlockExact, "tab.example"),
            ]
        );
        assert_eq!(
            (list.block_rules(), list.allow_rules(), list.bad_lines_total),
            (7, 0, 0)
        );
        assert_eq!(list.unsupported_total, 0);
    }

    #[test]
    fn hosts_boilerplate_is_skipped_silently() {
        let text = "127.0.0.1 localhost\n127.0.0.1 localhost.localdomain\n127.0.0.1 local\n\
                    255.255.255.255 broadcasthost\n::1 localhost ip6-localhost ip6-loopback\nfe80::1%lo0 localhost\n\
                    fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n\
                    ff02::3 ip6-allhosts\n0.0.0.0 0.0.0.0\n0.0.0.0 LOCALHOST. real.example\n";
        let list = parse_list(text);
        assert_eq!(
            list.rules().map(|rule| rule.name).collect::<Vec<_>>(),
            vec!["real.example"]
        );
        assert_eq!(list.bad_lines_total, 0, "{:?}", list.bad_lines);
        assert_eq!(list.unsupported_total, 0, "{:?}", list.unsupported_lines);
        assert!(list.boilerplate_skipped >= 13);
    }

    #[test]
    fn hosts_rewrites_and_bare_addresses_are_unsupported() {
        let list = parse_list("1.2.3.4 example.com\n0.0.0.0\n::1\n");
        assert_eq!(list.rules_total(), 0);
        assert_eq!(list.unsupported_total, 3);
        assert_eq!(list.unsupported_lines[0].line, 1);
        assert_eq!(list.unsupported_lines[1].reason, "IP address rule");
    }

    #[test]
    fn plain_domains_block_subtrees() {
        assert_eq!(
            rules_of("ads.example.com\ntracker.example.net # note\n_dmarc.example.org\nxn--bcher-kva.example\n"),
            vec![
                rule(RuleKind::BlockSubtree, "ads.example.com"),
                rule(RuleKind::BlockSubtree, "tracker.example.net"),
                rule(RuleKind::BlockSubtree, "_dmarc.example.org"),
                rule(RuleKind::BlockSubtree, "xn--bcher-kva.example"),
            ]
        );
    }

    #[test]
    fn single_labels_are_allowed_unless_boilerplate() {
        assert_eq!(
            rules_of("intranet\nlocalhost\n0.0.0.0 wpad\n"),
            vec![
                rule(RuleKind::BlockSubtree, "intranet"),
                rule(RuleKind::BlockExact, "wpad")
            ]
        );
    }

    #[test]
    fn adblock_rules_and_exceptions() {
        assert_eq!(
            rules_of("[Adblock Plus 2.0]\n! Title: test\n||ads.example^\n|exact.example^\n@@||good.example^\n@@|one.example^\n"),
            vec![
                rule(RuleKind::BlockSubtree, "ads.example"),
                rule(RuleKind::BlockExact, "exact.example"),
                rule(RuleKind::AllowSubtree, "good.example"),
                rule(RuleKind::AllowExact, "one.example"),
            ]
        );
        let list = parse_list("||a.example^\n@@||b.example^\n");
        assert_eq!((list.block_rules(), list.allow_rules()), (1, 1));
    }

    #[test]
    fn comments_crlf_case_and_trailing_dots() {
        let text = "\u{feff}# comment\r\n! other comment\r\n\r\n   \r\n  ADS.Example.COM.  \r\n0.0.0.0 Host.EXAMPLE.\r\n||Sub.Example^\r\n";
        let list = parse_list(text);
        assert_eq!(
            list.rules().map(|rule| (rule.kind, rule.name)).collect::<Vec<_>>(),
            vec![
                rule(RuleKind::BlockSubtree, "ads.example.com"),
                rule(RuleKind::BlockExact, "host.example"),
                rule(RuleKind::BlockSubtree, "sub.example"),
            ]
        );
        assert_eq!(list.bad_lines_total + list.unsupported_total, 0);
    }

    #[test]
    fn unsupported_lines_are_counted_with_line_numbers() {
        let text = "||a.example^$important\n||b.example^$third-party\n||c.example/ads^\n/ads[0-9]+/\n\
                    example.com##.banner\n*.wild.example\n||wild*.example^\n||noseparator.example\n\
                    @@plain.example\nhttp://x.example/\nplain.example^\n||ok.example^\n0.0.0.0 *.example\n";
        let list = parse_list(text);
        assert_eq!(
            list.rules().map(|rule| rule.name).collect::<Vec<_>>(),
            vec!["ok.example"]
        );
        assert_eq!(list.bad_lines_total, 0, "{:?}", list.bad_lines);
        assert_eq!(list.unsupported_total, 12);
        let lines: Vec<usize> = list.unsupported_lines.iter().map(|bad| bad.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]);
        assert_eq!(list.unsupported_lines[0].reason, "adblock rule with $modifiers");
        assert_eq!(list.unsupported_lines[5].reason, "wildcard");
    }

    #[test]
    fn bad_lines_have_line_numbers_and_reasons() {
        let long_label = "a".repeat(64);
        let long_name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        assert_eq!(long_name.len(), 254);
        let text = format!(
            "ok.example\n{long_label}.example\n{long_name}\na..b\nbücher.example\n-lead.example\ntrail-.example\n\
             a b c\nexa!mple.com\n||.^\n[unclosed\n0.0.0.0 good.example bad..example\n"
        );
        let list = parse_list(&text);
        assert_eq!(
            reasons(&list.bad_lines),
            vec![
                (2, "label longer than 63 bytes"),
                (3, "name longer than 253 bytes"),
                (4, "empty label"),
                (5, "non-ASCII character (IDN names must be in punycode, xn--)"),
                (6, "label starts or ends with '-'"),
                (7, "label starts or ends with '-'"),
                (8, "several words, but the first is not an IP address"),
                (9, "invalid character in name"),
                (10, "empty name"),
                (11, "'[' header line without closing ']'"),
                (12, "empty label"),
            ]
        );
        assert_eq!(list.bad_lines_total, 11);
        // The good name of line 12 is still used.
        assert_eq!(
            list.rules().map(|rule| rule.name).collect::<Vec<_>>(),
            vec!["ok.example", "good.example"]
        );
        assert_eq!(
            format!("lists/x.txt:{}", list.bad_lines[0]),
            "lists/x.txt:2: label longer than 63 bytes"
        );
    }

    #[test]
    fn a_253_byte_name_is_accepted() {
        let name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(name.len(), 253);
        assert_eq!(
            rules_of(&format!("{name}.\n")),
            vec![rule(RuleKind::BlockSubtree, &name)]
        );
    }

    #[test]
    fn only_the_first_hundred_problems_are_kept_but_all_are_counted() {
        let mut text = String::new();
        for i in 0..150 {
            text.push_str(&format!("bad..{i}\n||x{i}.example^$important\nfine{i}.example\n"));
        }
        let list = parse_list(&text);
        assert_eq!(list.bad_lines.len(), MAX_LINE_RECORDS);
        assert_eq!(list.bad_lines_total, 150);
        assert_eq!(list.unsupported_lines.len(), MAX_LINE_RECORDS);
        assert_eq!(list.unsupported_total, 150);
        assert_eq!(list.bad_lines[99].line, 99 * 3 + 1);
        assert_eq!(list.unsupported_lines[99].line, 99 * 3 + 2);
        assert_eq!(list.block_rules(), 150);
    }

    // ---- matcher ------------------------------------------------------------

    #[test]
    fn exact_and_subtree_rules() {
        let lists = lists(&["0.0.0.0 exact.example\nsubtree.example\n"]);
        let all = ListMask::ALL;
        assert_eq!(lists.check("exact.example", all), blocked(0));
        assert_eq!(lists.check("www.exact.example", all), Verdict::NotListed);
        assert_eq!(lists.check("subtree.example", all), blocked(0));
        assert_eq!(lists.check("a.subtree.example", all), blocked(0));
        assert_eq!(lists.check("b.a.subtree.example", all), blocked(0));
        assert_eq!(lists.check("example", all), Verdict::NotListed);
        assert_eq!(lists.check("other.example", all), Verdict::NotListed);
    }

    #[test]
    fn subtree_stops_at_label_boundaries() {
        let lists = lists(&["example.com\n"]);
        assert_eq!(lists.check("badexample.com", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.check("bad-example.com", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.check("example.com.evil", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.check("xample.com", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.check("bad.example.com", ListMask::ALL), blocked(0));
    }

    #[test]
    fn exceptions_win_across_lists() {
        let lists = lists(&["ads.example\n", "@@||good.ads.example^\n@@|one.ads.example^\n"]);
        let both = ListMask::single(ListId(0)).with(ListId(1));
        assert_eq!(lists.check("x.ads.example", both), blocked(0));
        assert_eq!(lists.check("good.ads.example", both), allowed(1));
        assert_eq!(lists.check("x.good.ads.example", both), allowed(1));
        assert_eq!(lists.check("one.ads.example", both), allowed(1));
        assert_eq!(lists.check("x.one.ads.example", both), blocked(0));
        // Exceptions of a list that is not enabled do not count.
        assert_eq!(lists.check("good.ads.example", ListMask::single(ListId(0))), blocked(0));
        assert_eq!(lists.check("good.ads.example", ListMask::single(ListId(1))), allowed(1));
    }

    #[test]
    fn exception_for_a_parent_wins_over_a_block_of_a_child() {
        let lists = lists(&["||ads.good.example^\n@@||good.example^\n"]);
        assert_eq!(lists.check("ads.good.example", ListMask::ALL), allowed(0));
    }

    #[test]
    fn mask_selects_lists_and_lowest_id_is_reported() {
        let lists = Blocklists::build(vec![
            (ListId(5), parse_list("shared.example\nfive.example\n")),
            (ListId(2), parse_list("0.0.0.0 shared.example\n")),
            (ListId(9), parse_list("shared.example\nnine.example\n")),
        ]);
        assert_eq!(lists.check("shared.example", ListMask::ALL), blocked(2));
        assert_eq!(
            lists.check("shared.example", [ListId(5), ListId(9)].into_iter().collect()),
            blocked(5)
        );
        assert_eq!(lists.check("x.shared.example", ListMask::ALL), blocked(5));
        assert_eq!(
            lists.check("nine.example", ListMask::single(ListId(5))),
            Verdict::NotListed
        );
        assert_eq!(lists.check("nine.example", ListMask::single(ListId(9))), blocked(9));
        assert_eq!(lists.check("shared.example", ListMask::NONE), Verdict::NotListed);
        assert_eq!(lists.len(), 3);
        assert_eq!(
            lists.stats(),
            &[
                ListStats {
                    list: ListId(2),
                    rules: 1,
                    blocked_names: 1,
                    allowed_names: 0
                },
                ListStats {
                    list: ListId(5),
                    rules: 2,
                    blocked_names: 2,
                    allowed_names: 0
                },
                ListStats {
                    list: ListId(9),
                    rules: 2,
                    blocked_names: 2,
                    allowed_names: 0
                },
            ]
        );
    }

    #[test]
    fn query_case_trailing_dot_root_and_empty() {
        let lists = lists(&["Ads.Example\n"]);
        assert_eq!(lists.check("ADS.EXAMPLE.", ListMask::ALL), blocked(0));
        assert_eq!(lists.check("Www.Ads.Example", ListMask::ALL), blocked(0));
        assert_eq!(lists.check(".", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.check("", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.check("..", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.check(&"a.".repeat(200), ListMask::ALL), Verdict::NotListed);
    }

    #[test]
    fn a_253_byte_query() {
        let name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        let lists = lists(&[&format!("|{name}^\n{}\n", "d".repeat(61))]);
        assert_eq!(lists.check(&name, ListMask::ALL), blocked(0));
        assert_eq!(lists.check(&format!("{name}."), ListMask::ALL), blocked(0));
        assert_eq!(
            lists.check(&format!("x{name}"), ListMask::ALL),
            Verdict::NotListed,
            "254 bytes"
        );
        let parent_only = format!("{}.{}", "c".repeat(63), "d".repeat(61));
        assert_eq!(lists.check(&parent_only, ListMask::ALL), blocked(0));
    }

    #[test]
    fn duplicates_are_merged_and_stats_count_them() {
        let lists = Blocklists::build(vec![
            (
                ListId(0),
                parse_list("a.example\nb.example\na.example\n0.0.0.0 a.example\n"),
            ),
            (ListId(1), parse_list("b.example\nc.example\n@@||c.example^\n")),
            (ListId(1), parse_list("d.example\n")),
        ]);
        assert_eq!(lists.len(), 4);
        assert_eq!(
            lists.stats(),
            &[
                ListStats {
                    list: ListId(0),
                    rules: 4,
                    blocked_names: 2,
                    allowed_names: 0
                },
                ListStats {
                    list: ListId(1),
                    rules: 4,
                    blocked_names: 3,
                    allowed_names: 1
                },
            ]
        );
        for name in ["a.example", "x.a.example", "b.example"] {
            assert_eq!(lists.check(name, ListMask::ALL), blocked(0), "{name}");
        }
        assert_eq!(lists.check("c.example", ListMask::ALL), allowed(1));
        assert_eq!(lists.check("d.example", ListMask::ALL), blocked(1));
        assert_eq!(lists.check("e.example", ListMask::ALL), Verdict::NotListed);
    }

    #[test]
    fn few_duplicates_keep_the_table_and_still_match() {
        let text: String = (0..100).map(|i| format!("n{i}.example\n")).collect();
        let built = Blocklists::build(vec![
            (ListId(3), parse_list(&text)),
            (ListId(1), parse_list("n50.example\n@@|n7.example^\n")),
        ]);
        assert_eq!(built.len(), 100);
        for i in 0..100 {
            let expected = match i {
                50 => blocked(1),
                7 => allowed(1),
                _ => blocked(3),
            };
            assert_eq!(built.check(&format!("n{i}.example"), ListMask::ALL), expected, "n{i}");
        }
        assert_eq!(built.check("x.n7.example", ListMask::ALL), blocked(3));
    }

    #[test]
    fn list_ids_beyond_the_limit_are_ignored() {
        let lists = Blocklists::build(vec![
            (ListId(63), parse_list("a.example\n")),
            (ListId(64), parse_list("b.example\n")),
        ]);
        assert_eq!(lists.ignored_lists(), &[ListId(64)]);
        assert_eq!(lists.check("a.example", ListMask::ALL), blocked(63));
        assert_eq!(lists.check("b.example", ListMask::ALL), Verdict::NotListed);
        assert_eq!(ListMask::single(ListId(64)), ListMask::NONE);
        assert!(ListMask::single(ListId(63)).contains(ListId(63)));
    }

    #[test]
    fn empty_blocklists() {
        let lists = Blocklists::default();
        assert!(lists.is_empty());
        assert_eq!(lists.check("example.com", ListMask::ALL), Verdict::NotListed);
        let lists = Blocklists::build(vec![
            (ListId(0), parse_list("")),
            (ListId(1), parse_list("# nothing\n")),
        ]);
        assert_eq!(lists.check("example.com", ListMask::ALL), Verdict::NotListed);
        assert_eq!(lists.stats().len(), 2);
        assert_eq!(lists.stats()[1].rules, 0);
    }

    #[test]
    fn many_mask_combinations_widen_the_palette_index() {
        // 64 lists, names listed by every subset pattern of the bits of their number:
        // more than 256 distinct combinations.
        let mut texts = vec![String::new(); 64];
        for n in 1..2000u64 {
            let pattern = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for (list, text) in texts.iter_mut().enumerate() {
                if (pattern >> list) & 1 == 1 {
                    text.push_str(&format!("n{n}.example\n"));
                }
            }
        }
        let built = Blocklists::build(
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| (ListId(i as u16), parse_list(text)))
                .collect(),
        );
        assert!(built.palette.masks.len() > 256);
        assert!(matches!(built.table.palette_index, PaletteIndex::Medium(_)));
        for n in 1..2000u64 {
            let pattern = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let name = format!("x.n{n}.example");
            let expected = if pattern == 0 {
                Verdict::NotListed
            } else {
                blocked(pattern.trailing_zeros() as u16)
            };
            assert_eq!(built.check(&name, ListMask::ALL), expected, "{name}");
            let high = ListMask(pattern & !(pattern & pattern.wrapping_neg()));
            let expected = if high.is_empty() {
                Verdict::NotListed
            } else {
                blocked(high.0.trailing_zeros() as u16)
            };
            assert_eq!(built.check(&name, high), expected, "{name} high bits");
        }
    }

    // ---- robustness ---------------------------------------------------------

    /// Deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Pieces of list syntax, space-separated, for random lines.
    const FRAGMENTS: &str = "|| | ^ @@ $important $ 0.0.0.0 127.0.0.1 :: ::1 # ! [ ] . .. - _ * / é example com \
                             xn--80ak6aa92e a localhost ads ## 1.2.3.4 co.uk % :";
    const SPACES: &[&str] = &[" ", "\t", "\r", "\u{0}", "\u{3000}"];

    fn random_line(rng: &mut XorShift, out: &mut String) {
        for _ in 0..rng.below(8) {
            match rng.below(10) {
                0 => out.extend((0..rng.below(70)).map(|_| char::from(b'a' + rng.below(26) as u8))),
                1 => out.push(char::from(rng.below(128) as u8)),
                2 | 3 => out.push_str(SPACES[rng.below(SPACES.len())]),
                _ => out.push_str(
                    FRAGMENTS
                        .split(' ')
                        .nth(rng.below(FRAGMENTS.split(' ').count()))
                        .unwrap_or_default(),
                ),
            }
        }
    }

    #[test]
    fn random_lines_never_panic_and_rules_are_found() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let mut text = String::new();
        let mut query = String::new();
        for _ in 0..10_000 {
            text.clear();
            let lines = rng.below(12);
            for _ in 0..lines {
                random_line(&mut rng, &mut text);
                text.push(if rng.below(4) == 0 { '\r' } else { '\n' });
            }
            let list = parse_list(&text);
            assert!(list.bad_lines.len() <= list.bad_lines_total);
            assert!(list.unsupported_lines.len() <= list.unsupported_total);
            let line_count = text.split('\n').count();
            assert!(list
                .bad_lines
                .iter()
                .chain(&list.unsupported_lines)
                .all(|bad| (1..=line_count).contains(&bad.line)));
            let rules: Vec<Rule> = list.rules().collect();
            assert_eq!(rules.len(), list.rules_total());

            let other = parse_list("example\n@@||a.example^\n||com^\n");
            let built = Blocklists::build(vec![(ListId(1), list), (ListId(0), other)]);
            for rule in &rules {
                let verdict = built.check(&rule.name, ListMask::single(ListId(1)));
                let expected = if rule.kind.is_allow() { allowed(1) } else { blocked(1) };
                // An exception for the same name in the list wins over its block.
                assert!(
                    verdict == expected || verdict == allowed(1),
                    "{rule:?} -> {verdict:?} in {text:?}"
                );
            }
            query.clear();
            random_line(&mut rng, &mut query);
            let _ = built.check(&query, ListMask(rng.next()));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2_000 {
            let bytes: Vec<u8> = (0..rng.below(600)).map(|_| rng.next() as u8).collect();
            let text = String::from_utf8_lossy(&bytes);
            let list = parse_list(&text);
            let built = Blocklists::build(vec![(ListId(0), list)]);
            let _ = built.check(&text, ListMask::ALL);
        }
    }

    /// The verdict by brute force over the rules as text.
    fn naive_check(lists: &[(ListId, Vec<Rule>)], query: &str, enabled: ListMask) -> Verdict {
        let query = query.strip_suffix('.').unwrap_or(query).to_ascii_lowercase();
        let (mut blocking, mut allowing) = (0u64, 0u64);
        for (id, rules) in lists {
            for rule in rules {
                let subtree = matches!(rule.kind, RuleKind::BlockSubtree | RuleKind::AllowSubtree);
                let matches = query == rule.name
                    || (subtree
                        && query
                            .strip_suffix(rule.name.as_str())
                            .is_some_and(|rest| rest.ends_with('.')));
                if matches && rule.kind.is_allow() {
                    allowing |= id.bit();
                } else if matches {
                    blocking |= id.bit();
                }
            }
        }
        let (blocking, allowing) = (blocking & enabled.0, allowing & enabled.0);
        if allowing != 0 {
            allowed(allowing.trailing_zeros() as u16)
        } else if blocking != 0 {
            blocked(blocking.trailing_zeros() as u16)
        } else {
            Verdict::NotListed
        }
    }

    /// A name from a small universe (so that lists overlap a lot), in random case.
    fn small_universe_name(rng: &mut XorShift) -> String {
        const LABELS: &[&str] = &["a", "b", "ads", "x-y", "_s", "Cdn"];
        let labels: Vec<&str> = (0..1 + rng.below(4)).map(|_| LABELS[rng.below(LABELS.len())]).collect();
        let name = labels.join(".");
        if rng.below(2) == 0 {
            name.to_ascii_uppercase()
        } else {
            name
        }
    }

    #[test]
    fn matches_a_naive_reference() {
        let mut rng = XorShift(0xDEAD_BEEF_1234_5678);
        for _ in 0..200 {
            let mut lists = Vec::new();
            let mut texts = Vec::new();
            for _ in 0..1 + rng.below(5) {
                let id = ListId(rng.below(64) as u16);
                let mut text = String::new();
                for _ in 0..rng.below(60) {
                    let name = small_universe_name(&mut rng);
                    let dot = if rng.below(4) == 0 { "." } else { "" };
                    let line = match rng.below(6) {
                        0 => format!("0.0.0.0 {name}{dot}"),
                        1 => format!("{name}{dot}"),
                        2 => format!("||{name}{dot}^"),
                        3 => format!("|{name}{dot}^"),
                        4 => format!("@@||{name}{dot}^"),
                        _ => format!("@@|{name}{dot}^"),
                    };
                    text.push_str(&line);
                    text.push_str(if rng.below(3) == 0 { "\r\n" } else { "\n" });
                }
                let list = parse_list(&text);
                assert_eq!(list.bad_lines_total + list.unsupported_total, 0, "{text}");
                texts.push((id, list.rules().collect::<Vec<_>>()));
                lists.push((id, list));
            }
            let built = Blocklists::build(lists);
            for _ in 0..200 {
                let query = format!(
                    "{}{}",
                    small_universe_name(&mut rng),
                    if rng.below(4) == 0 { "." } else { "" }
                );
                let enabled = ListMask(rng.next() | rng.next());
                assert_eq!(
                    built.check(&query, enabled),
                    naive_check(&texts, &query, enabled),
                    "{query} {enabled:?}"
                );
            }
        }
    }

    // ---- memory and speed ---------------------------------------------------

    /// Second-level words of generated domains, space-separated.
    const WORDS: &str =
        "cdn ads tracker metrics pixel static media analytics cloud shop news mail video stream social \
                         games weather bank travel music photo store search login beacon telemetry adserver click \
                         promo banner stats collect";
    const TLDS: &[&str] = &["com", "net", "io", "co.uk"];

    /// `{random 6-14 chars}.{word}.{tld}`: about 22 bytes.
    fn push_domain(rng: &mut XorShift, out: &mut String) {
        for _ in 0..6 + rng.below(9) {
            out.push(char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.below(36)]));
        }
        out.push('.');
        out.push_str(WORDS.split_whitespace().nth(rng.below(32)).unwrap_or_default());
        out.push('.');
        out.push_str(TLDS[rng.below(TLDS.len())]);
    }

    fn domain_list(seed: u64, count: usize) -> String {
        let mut rng = XorShift(seed);
        let mut text = String::with_capacity(count * 24);
        for _ in 0..count {
            push_domain(&mut rng, &mut text);
            text.push('\n');
        }
        text
    }

    #[test]
    fn memory_per_domain_100k() {
        let text = domain_list(7, 100_000);
        let list = parse_list(&text);
        assert_eq!(list.rules_total(), 100_000);
        let built = Blocklists::build(vec![(ListId(0), list)]);
        let per_domain = built.heap_bytes() / built.len();
        let peak_per_domain = built.build_peak_bytes() / built.len();
        assert!(built.len() > 99_000);
        assert!(per_domain <= 40, "{per_domain} bytes per domain");
        assert!(
            peak_per_domain <= 40,
            "{peak_per_domain} bytes per domain at the build's peak"
        );
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(built.check(first, ListMask::ALL), blocked(0));
        assert_eq!(built.check(&format!("www.{first}"), ListMask::ALL), blocked(0));
    }

    /// Three hosts-format lists of `per_list` names: list 1 repeats the second half
    /// of list 0, list 2 the second half of list 1. Checks every name and returns the
    /// built lists.
    fn overlapping_lists(per_list: usize) -> Blocklists {
        let text = domain_list(21, per_list * 2);
        let names: Vec<&str> = text.lines().collect();
        let hosts = |range: std::ops::Range<usize>| -> String {
            names[range].iter().map(|name| format!("0.0.0.0 {name}\n")).collect()
        };
        let half = per_list / 2;
        let built = Blocklists::build(vec![
            (ListId(2), parse_list(&hosts(2 * half..2 * half + per_list))),
            (ListId(0), parse_list(&hosts(0..per_list))),
            (ListId(1), parse_list(&hosts(half..half + per_list))),
        ]);
        assert_eq!(built.len(), 2 * per_list);
        for (index, name) in names.iter().enumerate() {
            let lowest = match index / half {
                0 | 1 => 0,
                2 => 1,
                _ => 2,
            };
            assert_eq!(built.check(name, ListMask::ALL), blocked(lowest), "{name}");
        }
        built
    }

    #[test]
    fn overlapping_lists_are_merged_in_place() {
        let built = overlapping_lists(10_000);
        assert_eq!(
            built
                .stats()
                .iter()
                .map(|stats| stats.blocked_names)
                .collect::<Vec<_>>(),
            vec![10_000, 10_000, 10_000]
        );
        assert!(built.heap_bytes() / built.len() <= 40);
    }

    #[test]
    #[ignore = "slow: run with --release -- --ignored --nocapture"]
    fn overlapping_lists_memory() {
        let started = std::time::Instant::now();
        let built = overlapping_lists(400_000);
        println!(
            "3 lists x 400000 names, {} distinct: build and check {:?}, {:.1} heap bytes per name, build peak {:.1}",
            built.len(),
            started.elapsed(),
            built.heap_bytes() as f64 / built.len() as f64,
            built.build_peak_bytes() as f64 / built.len() as f64,
        );
    }

    /// Resident-set figures from /proc, for the printout only.
    fn proc_memory() -> String {
        std::fs::read_to_string("/proc/self/status")
            .map(|status| {
                status
                    .lines()
                    .filter(|line| line.starts_with("VmRSS") || line.starts_with("VmHWM"))
                    .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }

    #[test]
    #[ignore = "slow: run with --release -- --ignored --nocapture"]
    fn million_domains_memory_and_speed() {
        use std::time::Instant;
        const COUNT: usize = 1_000_000;
        let text = domain_list(11, COUNT);
        println!(
            "text: {} bytes ({:.1} per line); {}",
            text.len(),
            text.len() as f64 / COUNT as f64,
            proc_memory()
        );

        let started = Instant::now();
        let list = parse_list(&text);
        let parse_time = started.elapsed();
        println!(
            "parse: {parse_time:?}, list heap {} bytes; {}",
            list.heap_bytes(),
            proc_memory()
        );

        let started = Instant::now();
        let built = Blocklists::build(vec![(ListId(0), list)]);
        let build_time = started.elapsed();
        let names = built.len();
        println!(
            "build: {build_time:?}, {names} names, {} heap bytes = {:.1} per name, build peak {:.1} per name; {}",
            built.heap_bytes(),
            built.heap_bytes() as f64 / names as f64,
            built.build_peak_bytes() as f64 / names as f64,
            proc_memory()
        );

        // Half hits (the name or a subdomain), half misses (new random names).
        let mut hits = XorShift(11);
        let mut misses = XorShift(12345);
        let mut choose = XorShift(99);
        let mut queries = Vec::with_capacity(COUNT);
        for _ in 0..COUNT {
            let mut query = String::new();
            match choose.below(4) {
                0 => push_domain(&mut hits, &mut query),
                1 => {
                    query.push_str("www.");
                    push_domain(&mut hits, &mut query);
                }
                _ => push_domain(&mut misses, &mut query),
            }
            queries.push(query);
        }
        let started = Instant::now();
        let mut blocked_count = 0;
        for query in &queries {
            if matches!(built.check(query, ListMask::ALL), Verdict::Blocked { .. }) {
                blocked_count += 1;
            }
        }
        let lookup_time = started.elapsed();
        println!(
            "lookups: {COUNT} in {lookup_time:?} = {:.0} per second, {blocked_count} blocked",
            COUNT as f64 / lookup_time.as_secs_f64()
        );
        assert!((COUNT / 2 - COUNT / 50..=COUNT / 2 + COUNT / 50).contains(&blocked_count));
        let per_name = built.heap_bytes() / names;
        assert!(per_name <= 40, "{per_name} bytes per name");
        assert!(built.build_peak_bytes() / names <= 40);
    }
}
