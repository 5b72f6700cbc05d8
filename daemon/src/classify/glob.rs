//! Case-insensitive glob patterns (`*` and `?` only) for matching untrusted text.
//!
//! The matcher is the classic greedy one with a single backtrack point: work is
//! at most (pattern length x text length) steps, never exponential, whatever the
//! text. Text from the network is at most [`super::MAX_TEXT`] bytes and patterns at
//! most [`Glob::MAX_LEN`] characters.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern is empty.
    #[error("a pattern cannot be empty")]
    Empty,
    /// The pattern is longer than [`Glob::MAX_LEN`] characters.
    #[error("a pattern is at most {max} characters", max = Glob::MAX_LEN)]
    TooLong,
    /// The pattern contains a control character.
    #[error("a pattern cannot contain control characters")]
    ControlCharacter,
    /// The pattern uses syntax this matcher does not have (`[`, `]`, `{`, `}`, `\`).
    #[error("`{0}` is not supported: only `*` (any run of characters) and `?` (one character) are special")]
    Unsupported(char),
    /// The pattern is only `*`s and would match anything.
    #[error("a pattern of only `*` matches everything: leave the condition out instead")]
    MatchesEverything,
}

/// Unicode bidirectional-text controls (marks, embeddings, overrides, isolates).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters, also none.
    AnyRun,
    /// `?`: exactly one character.
    AnyOne,
    /// A literal character, case-folded.
    Literal(char),
}

/// A validated glob pattern: `*` matches any run of characters, `?` exactly one,
/// everything else itself, ignoring case. Serialized as the pattern text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

/// Simple case folding: the lower-case form when it is one character.
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

impl Glob {
    /// Longest pattern accepted, in characters.
    pub const MAX_LEN: usize = 128;

    /// Validates a pattern.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.chars().count() > Self::MAX_LEN {
            return Err(GlobError::TooLong);
        }
        let mut tokens = Vec::new();
        for c in pattern.chars() {
            let token = match c {
                '*' if tokens.last() == Some(&Token::AnyRun) => continue,
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                '[' | ']' | '{' | '}' | '\\' => return Err(GlobError::Unsupported(c)),
                c if c.is_control() => return Err(GlobError::ControlCharacter),
                c => Token::Literal(fold(c)),
            };
            tokens.push(token);
        }
        if tokens == [Token::AnyRun] {
            return Err(GlobError::MatchesEverything);
        }
        Ok(Glob {
            text: pattern.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `text` matches, ignoring case. Text holding a control
    /// character or a bidirectional-text control never matches: devices do not
    /// send them in names, and they are how a name hides or reorders what it says.
    pub fn matches(&self, text: &str) -> bool {
        if text.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return false;
        }
        let next_char = |at: usize| text.get(at..).and_then(|rest| rest.chars().next());
        let (mut p, mut t) = (0usize, 0usize);
        // After the last `*`: the token after it, and where in the text it resumes.
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            if let Some(Token::AnyRun) = self.tokens.get(p) {
                p += 1;
                backtrack = Some((p, t));
                continue;
            }
            let Some(c) = next_char(t) else {
                // Text used up: only trailing `*`s may remain (they were skipped above).
                return p == self.tokens.len();
            };
            let step = match self.tokens.get(p) {
                Some(Token::AnyOne) => true,
                Some(Token::Literal(l)) => *l == fold(c),
                Some(Token::AnyRun) | None => false,
            };
            if step {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            // Mismatch: let the last `*` swallow one more character, or fail.
            let Some((after_star, resume)) = backtrack else {
                return false;
            };
            let Some(swallowed) = next_char(resume) else {
                return false;
            };
            let resume = resume + swallowed.len_utf8();
            backtrack = Some((after_star, resume));
            p = after_star;
            t = resume;
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).expect("valid pattern")
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(glob("Espressif*").matches("Espressif"));
        assert!(glob("Espressif*").matches("espressif inc"));
        assert!(!glob("Espressif*").matches("Not Espressif"));
        assert!(glob("*Tuya*").matches("Tuya Smart"));
        assert!(glob("*Tuya*").matches("Hangzhou TUYA"));
        assert!(glob("ESP_??????").matches("esp_a1b2c3"));
        assert!(!glob("ESP_??????").matches("esp_a1b2c"));
        assert!(!glob("ESP_??????").matches("esp_a1b2c3d"));
        assert!(glob("a*b*c").matches("aXXbYYc"));
        assert!(glob("a*b*c").matches("abc"));
        assert!(!glob("a*b*c").matches("aXXbYY"));
        assert!(glob("*.local").matches("x.y.local"));
        assert!(glob("android-dhcp-*").matches("android-dhcp-13"));
        assert!(!glob("android-dhcp-*").matches("android-dhcp"));
        assert!(glob("exact").matches("EXACT"));
        assert!(!glob("exact").matches("exactly"));
        assert!(!glob("x").matches(""));
        assert!(glob("**x**").matches("x"));
    }

    #[test]
    fn question_mark_is_one_character_not_one_byte() {
        assert!(glob("caf?").matches("café"));
        assert!(glob("CAFÉ").matches("café"));
        assert!(!glob("caf??").matches("café"));
    }

    #[test]
    fn hidden_characters_never_match() {
        assert!(!glob("ESP_??????").matches("ESP_\u{202e}ABCDE"));
        assert!(!glob("*iPhone*").matches("Annas-iPhone\n"));
        assert!(!glob("MSFT 5.0").matches("MSFT 5.0\0"));
        assert!(!glob("a*").matches("a\u{2066}b"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert_eq!(Glob::new("**"), Err(GlobError::MatchesEverything));
        assert_eq!(Glob::new("[ab]*"), Err(GlobError::Unsupported('[')));
        assert_eq!(Glob::new("a\\*"), Err(GlobError::Unsupported('\\')));
        assert_eq!(Glob::new("a\nb"), Err(GlobError::ControlCharacter));
        assert_eq!(Glob::new(&"a".repeat(129)), Err(GlobError::TooLong));
        assert!(Glob::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn work_is_bounded_on_hostile_input() {
        // The classic exponential case for backtracking matchers.
        let p = glob(&"*a".repeat(40));
        let text = "a".repeat(254) + "b";
        let start = std::time::Instant::now();
        for _ in 0..100 {
            assert!(!p.matches(&text));
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(p.matches(&"a".repeat(255)));
    }
}
