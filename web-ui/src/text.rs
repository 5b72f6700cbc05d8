//! Showing untrusted text. Device-supplied strings (DHCP hostnames, mDNS names
//! and TXT values, vendor classes) reach the pages escaped by askama; on top of
//! that, characters that would hide or disguise text — control characters
//! (C0, DEL, C1: newlines, tabs, escapes) and bidirectional controls that
//! reorder what follows them — are shown as `\u{XXXX}`, so a name reads the
//! same on the page as in the data. Everything else is left alone.
//!
//! The JSON API returns the raw strings (JSON escaping is enough there).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` is shown as an escape rather than as itself.
pub fn is_hidden(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' // LRE, RLE, PDF, LRO, RLO
                | '\u{2066}'..='\u{2069}' // LRI, RLI, FSI, PDI
                | '\u{200E}' | '\u{200F}' // LRM, RLM
                | '\u{061C}' // ALM
        )
}

/// `s` with hidden characters made visible (borrowed when there are none, the
/// common case).
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", Shown(s));
    Cow::Owned(out)
}

/// Displays a string with hidden characters made visible, without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((i, c)) = rest.char_indices().find(|&(_, c)| is_hidden(c)) {
            f.write_str(&rest[..i])?;
            write!(f, "\\u{{{:04X}}}", u32::from(c))?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Percent-encodes `s` for a URL query value (everything but unreserved
/// characters), for links that carry the devices page's filter.
pub fn query_value(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if s.bytes().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_left_alone_and_borrowed() {
        for s in ["Living room TV", "Küche", "日本語のテレビ", "שלום", "<script>", ""] {
            assert!(matches!(visible(s), Cow::Borrowed(x) if x == s), "{s}");
        }
    }

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(visible("a\nb"), "a\\u{000A}b");
        assert_eq!(visible("\ttab\r"), "\\u{0009}tab\\u{000D}");
        assert_eq!(visible("esc\u{1b}[31m"), "esc\\u{001B}[31m");
        assert_eq!(visible("nul\0"), "nul\\u{0000}");
        assert_eq!(visible("del\u{7f}"), "del\\u{007F}");
        assert_eq!(visible("c1\u{85}\u{9b}"), "c1\\u{0085}\\u{009B}");
    }

    #[test]
    fn bidi_controls_become_visible() {
        assert_eq!(visible("abc\u{202E}gpj.exe"), "abc\\u{202E}gpj.exe");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let s = format!("x{c}y");
            assert_eq!(visible(&s), format!("x\\u{{{:04X}}}y", u32::from(c)));
        }
        // Neighbours of the ranges are ordinary text.
        for c in ['\u{2029}', '\u{202F}', '\u{2065}', '\u{206A}', '\u{200D}', '\u{2010}'] {
            let s = format!("x{c}y");
            assert_eq!(visible(&s), s);
        }
    }

    #[test]
    fn shown_equals_visible() {
        let s = "a\u{202E}b\nc\u{2066}";
        assert_eq!(Shown(s).to_string(), visible(s));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("tv-1.x_y~"), "tv-1.x_y~");
        assert_eq!(query_value("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(query_value("ü"), "%C3%BC");
    }
}
