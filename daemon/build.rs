//! Build script: compiles the IEEE MAC address registries into the vendor table
//! that `src/vendor.rs` embeds.
//!
//! Input: Debian's `ieee-data` CSV files (`oui.csv` MA-L 24-bit, `mam.csv` MA-M
//! 28-bit, `oui36.csv` MA-S 36-bit) from `$BULKHEAD_IEEE_DATA_DIR`, or else
//! `/usr/share/ieee-data`. A missing file fails the build: the daemon must not ship
//! without its table.
//!
//! Output: `$OUT_DIR/vendor_table.bin`, laid out as
//!
//! ```text
//! "BHV1"                                      magic
//! u32 LE n24, n28, n36, names_len             counts and the name blob's size
//! n24 x [prefix: 3 bytes BE][name: 3 bytes BE] MA-L records, sorted by prefix
//! n28 x [prefix: 4 bytes BE][name: 3 bytes BE] MA-M records (prefix = top 28 bits)
//! n36 x [prefix: 5 bytes BE][name: 3 bytes BE] MA-S records (prefix = top 36 bits)
//! names_len bytes: [len: u8][UTF-8 name] ...  each distinct short name once
//! ```
//!
//! A record's name field is the byte offset of its name in the name blob. Vendor
//! names are shortened (corporate suffixes such as ", Inc." or "Co.,Ltd" dropped)
//! and deduplicated. Placeholder assignments ("Private", and the 24-bit blocks
//! registered to "IEEE Registration Authority", which are carved into MA-M/MA-S
//! blocks) are left out: they name no vendor.
//!
//! Dependency-free on purpose (hand-written CSV parsing), so the table builds
//! wherever the daemon builds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

const ENV_DIR: &str = "BULKHEAD_IEEE_DATA_DIR";
const DEFAULT_DIR: &str = "/usr/share/ieee-data";
const OUTPUT: &str = "vendor_table.bin";
const MAGIC: &[u8; 4] = b"BHV1";
/// Longest name kept, in bytes (the length prefix is one byte).
const MAX_NAME: usize = 96;
/// Name offsets are stored in three bytes.
const MAX_NAMES_LEN: usize = 1 << 24;

/// One registry file and the size of its assignments.
struct Registry {
    file: &'static str,
    /// Hex digits of an assignment: 6 (MA-L), 7 (MA-M) or 9 (MA-S).
    hex_digits: usize,
    /// Bytes a record's prefix takes in the table.
    key_bytes: usize,
}

const REGISTRIES: [Registry; 3] = [
    Registry {
        file: "oui.csv",
        hex_digits: 6,
        key_bytes: 3,
    },
    Registry {
        file: "mam.csv",
        hex_digits: 7,
        key_bytes: 4,
    },
    Registry {
        file: "oui36.csv",
        hex_digits: 9,
        key_bytes: 5,
    },
];

/// Why the table could not be built.
#[derive(Debug)]
enum BuildError {
    /// A registry file is missing or unreadable.
    Unreadable { path: PathBuf, source: std::io::Error },
    /// A registry file is not the CSV we expect.
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The output could not be written.
    Write { path: PathBuf, source: std::io::Error },
    /// `OUT_DIR` is not set (not run by cargo).
    NoOutDir,
    /// The vendor names outgrew the table's 24-bit offsets.
    TooLarge { names_len: usize },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { path, source } => write!(
                f,
                "cannot read the IEEE MAC registry {}: {source}; install Debian's ieee-data \
                 (apt-get install ieee-data) or set {ENV_DIR} to a directory holding oui.csv, \
                 mam.csv and oui36.csv",
                path.display()
            ),
            Self::Malformed { path, line, message } => write!(f, "{}:{line}: {message}", path.display()),
            Self::Write { path, source } => write!(f, "cannot write {}: {source}", path.display()),
            Self::NoOutDir => write!(f, "OUT_DIR is not set; run through cargo"),
            Self::TooLarge { names_len } => write!(
                f,
                "the vendor names take {names_len} bytes, more than the table's 24-bit offsets reach"
            ),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { source, .. } | Self::Write { source, .. } => Some(source),
            Self::Malformed { .. } | Self::NoOutDir | Self::TooLarge { .. } => None,
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BuildError> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={ENV_DIR}");
    let dir = std::env::var_os(ENV_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    for r in &REGISTRIES {
        println!("cargo:rerun-if-changed={}", dir.join(r.file).display());
    }
    let mut tables = Vec::new();
    for r in &REGISTRIES {
        tables.push(read_registry(&dir.join(r.file), r.hex_digits)?);
    }
    let table = encode(&tables)?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or(BuildError::NoOutDir)?).join(OUTPUT);
    std::fs::write(&out, &table).map_err(|source| BuildError::Write { path: out, source })
}

/// Reads one registry: assignment (as a number) -> short vendor name.
fn read_registry(path: &Path, hex_digits: usize) -> Result<BTreeMap<u64, String>, BuildError> {
    let bytes = std::fs::read(path).map_err(|source| BuildError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let malformed = |line: usize, message: String| BuildError::Malformed {
        path: path.to_path_buf(),
        line,
        message,
    };
    let records = parse_csv(&text).map_err(|(line, m)| malformed(line, m))?;
    let mut out = BTreeMap::new();
    for (line, fields) in records.iter().skip(1) {
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (Some(assignment), Some(name)) = (fields.get(1), fields.get(2)) else {
            return Err(malformed(
                *line,
                "expected Registry,Assignment,Organization Name,...".into(),
            ));
        };
        let assignment = assignment.trim();
        let prefix = match u64::from_str_radix(assignment, 16) {
            Ok(p) if assignment.len() == hex_digits => p,
            _ => {
                return Err(malformed(
                    *line,
                    format!("`{assignment}` is not a {hex_digits}-digit hex assignment"),
                ))
            }
        };
        let name = short_vendor_name(name);
        if is_placeholder(&name) {
            continue;
        }
        // The registries hold a few duplicates; keep the first, deterministically.
        out.entry(prefix).or_insert(name);
    }
    if out.is_empty() {
        return Err(malformed(1, "no assignments found".into()));
    }
    Ok(out)
}

/// Assignments that name no vendor.
fn is_placeholder(name: &str) -> bool {
    name.is_empty() || name.eq_ignore_ascii_case("private") || name.eq_ignore_ascii_case("IEEE Registration Authority")
}

/// One CSV record: the 1-based line it starts on, and its fields.
type CsvRecord = (usize, Vec<String>);

/// RFC 4180-style CSV: `,` between fields, `"` quotes (`""` inside is a quote),
/// line breaks inside quotes belong to the field, `\r\n` or `\n` ends a record.
/// Returns the records, or the line and reason of the first syntax error.
fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut record_line = 1;
    let mut quote_line = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(' ');
                }
                '\r' => {}
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                quote_line = line;
            }
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                records.push((record_line, std::mem::take(&mut fields)));
                line += 1;
                record_line = line;
            }
            c => field.push(c),
        }
    }
    if in_quotes {
        return Err((quote_line, "unterminated quoted field".into()));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((record_line, fields));
    }
    Ok(records)
}

/// Corporate forms dropped from the end of a vendor name, compared without dots
/// and case ("Co.,Ltd." is the two words "Co" and "Ltd").
const CORPORATE_SUFFIXES: &[&str] = &[
    "a/s",
    "ab",
    "ag",
    "aps",
    "as",
    "asa",
    "bhd",
    "bv",
    "co",
    "coltd",
    "company",
    "corp",
    "corporation",
    "ead",
    "ek",
    "eood",
    "gmbh",
    "inc",
    "incorporated",
    "kg",
    "kk",
    "limited",
    "llc",
    "ltd",
    "ltda",
    "nv",
    "oy",
    "oyj",
    "plc",
    "pte",
    "pty",
    "pvt",
    "sa",
    "sarl",
    "sas",
    "sdn",
    "sl",
    "spa",
    "sro",
    "srl",
];

/// "TP-LINK TECHNOLOGIES CO.,LTD." -> "TP-LINK TECHNOLOGIES"; "Apple, Inc." -> "Apple".
/// Never shortens a name to nothing; cut to at most [`MAX_NAME`] bytes.
fn short_vendor_name(raw: &str) -> String {
    let suffixes: BTreeSet<&str> = CORPORATE_SUFFIXES.iter().copied().collect();
    let mut name: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let trimmed = name.trim_end_matches([',', '.', ' ']);
        let word_start = trimmed.rfind([' ', ',']).map_or(0, |i| i + 1);
        let word: String = trimmed[word_start..].chars().filter(|&c| c != '.').collect();
        let rest = trimmed[..word_start].trim_end_matches([',', ' ']);
        if word_start > 0 && !rest.is_empty() && suffixes.contains(word.to_ascii_lowercase().as_str()) {
            name = rest.to_string();
        } else {
            name = trimmed.to_string();
            break;
        }
    }
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// Encodes the three registries (24, 28, 36 bits, in that order) as described in
/// the module documentation.
fn encode(tables: &[BTreeMap<u64, String>]) -> Result<Vec<u8>, BuildError> {
    let mut names = Vec::new();
    let mut offsets: BTreeMap<&str, usize> = BTreeMap::new();
    let mut records = Vec::new();
    for (registry, table) in REGISTRIES.iter().zip(tables) {
        for (prefix, name) in table {
            let offset = *offsets.entry(name.as_str()).or_insert_with(|| {
                let at = names.len();
                names.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
                names.extend_from_slice(name.as_bytes());
                at
            });
            let key = prefix.to_be_bytes();
            records.extend_from_slice(&key[key.len() - registry.key_bytes..]);
            records.extend_from_slice(&offset_bytes(offset));
        }
    }
    if names.len() >= MAX_NAMES_LEN {
        return Err(BuildError::TooLarge { names_len: names.len() });
    }
    let mut out = Vec::with_capacity(20 + records.len() + names.len());
    out.extend_from_slice(MAGIC);
    for table in tables {
        out.extend_from_slice(&len_u32(table.len()).to_le_bytes());
    }
    out.extend_from_slice(&len_u32(names.len()).to_le_bytes());
    out.extend_from_slice(&records);
    out.extend_from_slice(&names);
    Ok(out)
}

fn offset_bytes(offset: usize) -> [u8; 3] {
    let b = len_u32(offset).to_be_bytes();
    [b[1], b[2], b[3]]
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
