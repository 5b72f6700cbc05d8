//! The list formats, line by line, into a parsed list's name arena (see the
//! module's table of formats), and reading records back out of an arena.

use super::*;

/// Names from hosts-file boilerplate that are never rules.
pub(crate) const BOILERPLATE_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// What a rule does and to which names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Block exactly this name (hosts files, `|name^`).
    BlockExact,
    /// Block this name and all its subdomains (plain lists, `||name^`).
    BlockSubtree,
    /// Exception for exactly this name (`@@|name^`).
    AllowExact,
    /// Exception for this name and all its subdomains (`@@||name^`).
    AllowSubtree,
}

impl RuleKind {
    /// The byte stored in a record.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::BlockExact => 0,
            Self::BlockSubtree => 1,
            Self::AllowExact => 2,
            Self::AllowSubtree => 3,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Self::BlockExact),
            1 => Some(Self::BlockSubtree),
            2 => Some(Self::AllowExact),
            3 => Some(Self::AllowSubtree),
            _ => None,
        }
    }

    /// Whether this is an exception (allow) rule.
    pub fn is_allow(self) -> bool {
        matches!(self, Self::AllowExact | Self::AllowSubtree)
    }
}

/// A line that could not be used: bad (malformed) or unsupported (valid syntax of a
/// feature this matcher does not have). Both kinds use this record; [`ParsedList`]
/// keeps them in separate lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the list's text.
    pub line: usize,
    /// What is wrong, for people.
    pub reason: &'static str,
}

/// Shows `line: reason`, so that `format!("{path}:{bad}")` gives `path:line: reason`.
impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.reason)
    }
}

/// One rule of a [`ParsedList`], as text (see [`ParsedList::rules`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What the rule does.
    pub kind: RuleKind,
    /// The domain, lower-case, without trailing dot.
    pub name: String,
}

/// The rules of one list, compactly, and what the parser thought of its lines.
///
/// Made by [`parse_list`], consumed by [`Blocklists::build`]. Duplicates are kept here
/// (and counted in the rule counts); the build merges them.
#[derive(Default)]
pub struct ParsedList {
    /// Records `[len][kind tag][reversed lower-case name]`, in line order.
    pub(crate) records: Vec<u8>,
    pub(crate) block_rules: usize,
    pub(crate) allow_rules: usize,
    /// Boilerplate names skipped (`localhost` and friends).
    pub boilerplate_skipped: usize,
    /// The first [`MAX_LINE_RECORDS`] malformed lines, in line order.
    pub bad_lines: Vec<BadLine>,
    /// How many lines were malformed.
    pub bad_lines_total: usize,
    /// The first [`MAX_LINE_RECORDS`] lines with features this matcher does not
    /// support (`$modifiers`, wildcards, regular expressions, ...), in line order.
    pub unsupported_lines: Vec<BadLine>,
    /// How many lines used unsupported features.
    pub unsupported_total: usize,
}

impl fmt::Debug for ParsedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedList")
            .field("block_rules", &self.block_rules)
            .field("allow_rules", &self.allow_rules)
            .field("boilerplate_skipped", &self.boilerplate_skipped)
            .field("bad_lines_total", &self.bad_lines_total)
            .field("unsupported_total", &self.unsupported_total)
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// Why a line (or one name on it) was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    Bad(&'static str),
    Unsupported(&'static str),
}

/// Parses the text of one blocklist in any of the formats in the [module
/// docs](self). Never fails and never panics: lines it cannot use are counted and
/// (the first [`MAX_LINE_RECORDS`] of each kind) listed in the result.
pub fn parse_list(text: &str) -> ParsedList {
    let mut list = ParsedList::default();
    // A record is about one byte longer than its line in a plain list and shorter in
    // the other formats: reserve once instead of doubling (and copying) while parsing.
    list.records.reserve(text.len() + text.len() / 8);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, line) in text.split('\n').enumerate() {
        if let Err(problem) = list.parse_line(line) {
            list.note(index + 1, problem);
        }
    }
    list.records.shrink_to_fit();
    list
}

impl ParsedList {
    /// Block rules read (names from hosts lines, plain lines and block rules),
    /// duplicates included.
    pub fn block_rules(&self) -> usize {
        self.block_rules
    }

    /// Exception rules read, duplicates included.
    pub fn allow_rules(&self) -> usize {
        self.allow_rules
    }

    /// Block and exception rules read.
    pub fn rules_total(&self) -> usize {
        self.block_rules + self.allow_rules
    }

    /// Whether the list has no rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules_total() == 0
    }

    /// Heap bytes owned (capacities).
    pub fn heap_bytes(&self) -> usize {
        self.records.capacity()
            + (self.bad_lines.capacity() + self.unsupported_lines.capacity()) * std::mem::size_of::<BadLine>()
    }

    /// The rules in line order, as text. Allocates a `String` per rule: for
    /// diagnostics and tests, not for the lookup path.
    pub fn rules(&self) -> impl Iterator<Item = Rule> + '_ {
        Records::new(&self.records).filter_map(|record| {
            Some(Rule {
                kind: RuleKind::from_tag(record.tag)?,
                name: record.reversed_name.iter().rev().map(|&b| char::from(b)).collect(),
            })
        })
    }

    pub(crate) fn note(&mut self, line: usize, problem: Problem) {
        let (kept, total, reason) = match problem {
            Problem::Bad(reason) => (&mut self.bad_lines, &mut self.bad_lines_total, reason),
            Problem::Unsupported(reason) => (&mut self.unsupported_lines, &mut self.unsupported_total, reason),
        };
        *total += 1;
        if kept.len() < MAX_LINE_RECORDS {
            kept.push(BadLine { line, reason });
        }
    }

    /// Adds the rules of one line; `Err` when the line (or a name on it) is unusable.
    pub(crate) fn parse_line(&mut self, line: &str) -> Result<(), Problem> {
        // ASCII whitespace only, in the whole parser: other spaces make a bad name.
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            return Ok(());
        }
        if line.starts_with('[') {
            return if line.ends_with(']') {
                Ok(()) // `[Adblock Plus 2.0]`
            } else {
                Err(Problem::Bad("'[' header line without closing ']'"))
            };
        }
        if let Some(rule) = line.strip_prefix("@@") {
            return self.parse_adblock(rule, true);
        }
        if line.starts_with('|') {
            return self.parse_adblock(line, false);
        }
        if line.starts_with('/') {
            return Err(Problem::Unsupported("regular expression or path rule"));
        }
        let line = strip_trailing_comment(line);
        if line.contains('#') {
            return Err(Problem::Unsupported("cosmetic (element hiding) rule"));
        }
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else {
            return Ok(());
        };
        match parse_address(first) {
            Some(address) => self.parse_hosts(address, words),
            None if words.next().is_some() => Err(Problem::Bad("several words, but the first is not an IP address")),
            None => self.parse_plain(first),
        }
    }

    /// `rule` is the line after an optional `@@`.
    pub(crate) fn parse_adblock(&mut self, rule: &str, exception: bool) -> Result<(), Problem> {
        let (body, subtree) = if let Some(body) = rule.strip_prefix("||") {
            (body, true)
        } else if let Some(body) = rule.strip_prefix('|') {
            (body, false)
        } else {
            return Err(Problem::Unsupported("adblock rule without '|' or '||' anchor"));
        };
        if body.contains('$') {
            return Err(Problem::Unsupported("adblock rule with $modifiers"));
        }
        if body.bytes().any(|byte| byte.is_ascii_whitespace()) {
            return Err(Problem::Bad("whitespace inside an adblock rule"));
        }
        let Some(name) = body.strip_suffix('^') else {
            return Err(Problem::Unsupported(
                "adblock rule without the '^' separator at the end",
            ));
        };
        if name.contains(['*', '/', '^', '|', ':', '?', '&', '=', '%', '~', ',', '@', '#']) {
            return Err(Problem::Unsupported(
                "adblock pattern (wildcard, path, port or anchor inside)",
            ));
        }
        let kind = match (exception, subtree) {
            (false, false) => RuleKind::BlockExact,
            (false, true) => RuleKind::BlockSubtree,
            (true, false) => RuleKind::AllowExact,
            (true, true) => RuleKind::AllowSubtree,
        };
        self.add_name(name, kind, false)
    }

    pub(crate) fn parse_hosts<'a>(
        &mut self,
        address: IpAddr,
        names: impl Iterator<Item = &'a str>,
    ) -> Result<(), Problem> {
        let mut names = names.peekable();
        if names.peek().is_none() {
            return Err(Problem::Unsupported("IP address rule"));
        }
        if !(address.is_unspecified() || address.is_loopback()) {
            // `ff02::1 ip6-allnodes` is boilerplate; `1.2.3.4 example.com` is a rewrite.
            let mut skipped = 0;
            for name in names {
                if !is_boilerplate(name.strip_suffix('.').unwrap_or(name)) {
                    return Err(Problem::Unsupported(
                        "hosts entry with an address other than 0.0.0.0, ::, or loopback (a rewrite, not a block)",
                    ));
                }
                skipped += 1;
            }
            self.boilerplate_skipped += skipped;
            return Ok(());
        }
        let mut first_problem = None;
        for name in names {
            if let Err(problem) = self.add_name(name, RuleKind::BlockExact, true) {
                first_problem.get_or_insert(problem);
            }
        }
        first_problem.map_or(Ok(()), Err)
    }

    pub(crate) fn parse_plain(&mut self, word: &str) -> Result<(), Problem> {
        match word.bytes().find(|byte| matches!(byte, b'/' | b'|' | b'^' | b'$')) {
            Some(b'/') => return Err(Problem::Unsupported("URL or path")),
            Some(_) => return Err(Problem::Unsupported("adblock pattern without a '|' or '||' anchor")),
            None => {}
        }
        self.add_name(word, RuleKind::BlockSubtree, true)
    }

    /// Validates `name` (one trailing dot allowed) and appends its record.
    pub(crate) fn add_name(&mut self, name: &str, kind: RuleKind, skip_boilerplate: bool) -> Result<(), Problem> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if skip_boilerplate && is_boilerplate(name) {
            self.boilerplate_skipped += 1;
            return Ok(());
        }
        check_name(name.as_bytes())?;
        let Ok(len) = u8::try_from(name.len()) else {
            return Err(Problem::Bad("name longer than 253 bytes"));
        };
        self.records.push(len);
        self.records.push(kind.tag());
        self.records.extend(name.bytes().rev().map(|b| b.to_ascii_lowercase()));
        if kind.is_allow() {
            self.allow_rules += 1;
        } else {
            self.block_rules += 1;
        }
        Ok(())
    }
}

/// The address at the start of a hosts line, if `word` is one. Cheap for names:
/// IPv4 addresses start with a digit, IPv6 addresses contain a colon.
pub(crate) fn parse_address(word: &str) -> Option<IpAddr> {
    if !(word.starts_with(|c: char| c.is_ascii_digit()) || word.contains(':')) {
        return None;
    }
    // `fe80::1%lo0 localhost` (macOS): the zone does not matter here.
    let address = word.split('%').next().unwrap_or(word);
    address.parse().ok()
}

/// Cuts a ` # comment` (whitespace before the `#`) off a hosts or plain line.
pub(crate) fn strip_trailing_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    match bytes
        .windows(2)
        .position(|pair| pair[0].is_ascii_whitespace() && pair[1] == b'#')
    {
        Some(space) => line[..space].trim_end(),
        None => line,
    }
}

pub(crate) fn is_boilerplate(name: &str) -> bool {
    BOILERPLATE_NAMES
        .iter()
        .any(|boilerplate| boilerplate.eq_ignore_ascii_case(name))
}

/// Checks a domain name without its trailing dot.
pub(crate) fn check_name(name: &[u8]) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::Bad("empty name"));
    }
    if !name.is_ascii() {
        return Err(Problem::Bad(
            "non-ASCII character (IDN names must be in punycode, xn--)",
        ));
    }
    if name.contains(&b'*') {
        return Err(Problem::Unsupported("wildcard"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Problem::Bad("name longer than 253 bytes"));
    }
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(Problem::Bad("empty label"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(Problem::Bad("label longer than 63 bytes"));
        }
        if !label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Problem::Bad("invalid character in name"));
        }
        if label.starts_with(b"-") || label.ends_with(b"-") {
            return Err(Problem::Bad("label starts or ends with '-'"));
        }
    }
    Ok(())
}

/// One record of an arena.
pub(crate) struct Record<'a> {
    pub(crate) offset: usize,
    pub(crate) tag: u8,
    pub(crate) reversed_name: &'a [u8],
}

/// Walks the records of an arena in storage order.
pub(crate) struct Records<'a> {
    pub(crate) arena: &'a [u8],
    pub(crate) next: usize,
}

impl<'a> Records<'a> {
    pub(crate) fn new(arena: &'a [u8]) -> Self {
        Self { arena, next: 0 }
    }

    /// The record at `offset`, if one fits there.
    pub(crate) fn at(mut self, offset: usize) -> Option<Record<'a>> {
        self.next = offset;
        self.next()
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let offset = self.next;
        let len = usize::from(*self.arena.get(offset)?);
        let tag = *self.arena.get(offset + 1)?;
        let reversed_name = self.arena.get(offset + RECORD_HEADER..offset + RECORD_HEADER + len)?;
        self.next = offset + RECORD_HEADER + len;
        Some(Record {
            offset,
            tag,
            reversed_name,
        })
    }
}

/// The reversed name of the record at `offset` (empty if the offset is off: never
/// for offsets made by the build).
pub(crate) fn record_name(arena: &[u8], offset: u32) -> &[u8] {
    let start = offset as usize;
    let len = arena.get(start).map_or(0, |&len| usize::from(len));
    arena
        .get(start + RECORD_HEADER..start + RECORD_HEADER + len)
        .unwrap_or(&[])
}
