//! Showing untrusted text. Device-supplied strings (DHCP hostnames, mDNS names
//! and TXT values, vendor classes) reach the pages escaped by askama; on top of
//! that, characters that would hide or disguise text are shown as `\u{XXXX}`,
//! so a name reads the same on the page as in the data:
//!
//! - control characters (C0, DEL, C1: newlines, tabs, escapes) and the line and
//!   paragraph separators U+2028 / U+2029;
//! - bidirectional controls that reorder what follows them;
//! - invisible characters: format characters (soft hyphen, zero-width space,
//!   word joiner, byte order mark, invisible operators, interlinear annotation…),
//!   fillers that render as nothing (Hangul fillers, Braille blank), other
//!   default-ignorable code points, and non-characters;
//! - characters that are fine in their place but can smuggle hidden text
//!   elsewhere: zero-width joiners (kept between two visible non-ASCII
//!   characters: emoji sequences, Indic and Persian words), tag characters
//!   (kept inside a flag's tag sequence) and variation selectors (kept one per
//!   visible character).
//!
//! Everything else is left alone. The JSON API returns the raw strings (JSON
//! escaping is enough there).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` is always shown as an escape, wherever it stands.
pub fn is_hidden(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || is_noncharacter(c)
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{202A}'..='\u{202E}' // LRE, RLE, PDF, LRO, RLO
                | '\u{2066}'..='\u{2069}' // LRI, RLI, FSI, PDI
                | '\u{200E}' | '\u{200F}' // LRM, RLM
                | '\u{061C}' // ALM
                | '\u{00AD}' // soft hyphen
                | '\u{034F}' // combining grapheme joiner
                | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}' | '\u{08E2}' // prepended format marks
                | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
                | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels (invisible)
                | '\u{180E}' // Mongolian vowel separator
                | '\u{200B}' // zero-width space
                | '\u{2060}'..='\u{2065}' // word joiner, invisible operators, unassigned
                | '\u{206A}'..='\u{206F}' // deprecated format characters
                | '\u{2800}' // Braille pattern blank
                | '\u{FEFF}' // zero-width no-break space (byte order mark)
                | '\u{FFF0}'..='\u{FFFB}' // unassigned specials, interlinear annotation
                | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}' // other format characters
                | '\u{E0000}'..='\u{E001F}' | '\u{E0080}'..='\u{E00FF}' | '\u{E01F0}'..='\u{E0FFF}' // default-ignorable, unassigned
        )
}

/// U+FDD0..U+FDEF and the last two code points of every plane.
fn is_noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE
}

/// Zero-width non-joiner and joiner.
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}')
}

/// Tag characters (U+E0001, U+E0020..U+E007F): invisible ASCII look-alikes.
fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Variation selectors (standard, Mongolian free, supplement).
fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{180B}'..='\u{180D}' | '\u{180F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Whether `c` may be hidden, depending on where it stands.
fn maybe_hidden(c: char) -> bool {
    is_hidden(c) || is_joiner(c) || is_tag(c) || is_variation_selector(c)
}

/// A character that shows as itself and is not ASCII (a joiner may stand
/// between two of these).
fn joinable(c: Option<char>) -> bool {
    c.is_some_and(|c| !c.is_ascii() && !c.is_whitespace() && !maybe_hidden(c))
}

/// The length in bytes of a flag's tag sequence at the start of `rest` (after a
/// U+1F3F4 black flag): tag letters and digits ended by U+E007F CANCEL TAG;
/// 0 when there is none.
fn flag_tags_len(rest: &str) -> usize {
    let mut len = 0;
    for (i, c) in rest.char_indices().take(8) {
        match c {
            '\u{E0030}'..='\u{E0039}' | '\u{E0061}'..='\u{E007A}' => len += 1,
            '\u{E007F}' if len > 0 => return i + c.len_utf8(),
            _ => return 0,
        }
    }
    0
}

/// `s` with hidden characters made visible (borrowed when there are none, the
/// common case).
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(maybe_hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", Shown(s));
    if out == s {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(out)
    }
}

/// Displays a string with hidden characters made visible, without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        // The plain text not written yet starts here.
        let mut plain = 0;
        let mut prev: Option<char> = None;
        // A flag's tag sequence, kept as it is, ends here.
        let mut flag_end = 0;
        for (i, c) in s.char_indices() {
            let end = i + c.len_utf8();
            if c == '\u{1F3F4}' {
                flag_end = end + flag_tags_len(&s[end..]);
            }
            let hide = if i < flag_end {
                false
            } else if is_joiner(c) {
                // An emoji may end in a variation selector before the joiner.
                let before = prev.is_some_and(is_variation_selector) || joinable(prev);
                !(before && joinable(s[end..].chars().next()))
            } else if is_variation_selector(c) {
                // One selector chooses how the character before it looks; a
                // run of them (or one with nothing before it) carries data.
                !prev.is_some_and(|p| !p.is_whitespace() && !maybe_hidden(p))
            } else {
                is_hidden(c) || is_tag(c)
            };
            if hide {
                f.write_str(&s[plain..i])?;
                write!(f, "\\u{{{:04X}}}", u32::from(c))?;
                plain = end;
            }
            prev = Some(c);
        }
        f.write_str(&s[plain..])
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
        for c in [
            '\u{2027}', '\u{202F}', '\u{2070}', '\u{2010}', '\u{205F}', '\u{0606}', '\u{2801}',
        ] {
            let s = format!("x{c}y");
            assert_eq!(visible(&s), s);
        }
    }

    #[test]
    fn invisible_characters_become_visible() {
        for c in [
            '\u{2028}',
            '\u{2029}', // line and paragraph separators
            '\u{200B}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{034F}',
            '\u{180E}', // zero-width
            '\u{2061}',
            '\u{2064}',
            '\u{206A}',
            '\u{206F}',
            '\u{FFF9}',
            '\u{FFFB}', // format
            '\u{115F}',
            '\u{1160}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{2800}', // blank "letters"
            '\u{FDD0}',
            '\u{FDEF}',
            '\u{FFFE}',
            '\u{FFFF}',
            '\u{1FFFE}',
            '\u{10FFFF}', // non-characters
            '\u{E0001}',
            '\u{E0041}',
            '\u{E007F}',
            '\u{E0000}',
            '\u{E0080}', // tags, ignorables
        ] {
            let s = format!("x{c}y");
            assert_eq!(
                visible(&s),
                format!("x\\u{{{:04X}}}y", u32::from(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
        // Tag characters spelling hidden ASCII.
        let smuggled: String = "admin"
            .chars()
            .map(|c| char::from_u32(0xE0000 + u32::from(c)).expect("tag"))
            .collect();
        assert!(!visible(&format!("TV{smuggled}")).contains('\u{E0061}'));
    }

    #[test]
    fn joiners_and_selectors_stay_where_they_belong() {
        for ok in [
            "👨\u{200D}👩\u{200D}👧",                                   // family: joiners between emoji
            "👩\u{1F3FD}\u{200D}💻",                                    // skin tone, then joiner
            "❤\u{FE0F}\u{200D}🔥",                                      // selector, then joiner
            "1\u{FE0F}\u{20E3}",                                        // keycap
            "\u{00A9}\u{FE0F} TV",                                      // one selector after a character
            "मि\u{200D}त्र",                                             // Devanagari with a joiner
            "می\u{200C}خواهم",                                          // Persian with a non-joiner
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}", // Scotland's flag
        ] {
            assert!(matches!(visible(ok), Cow::Borrowed(_)), "{ok:?} -> {:?}", visible(ok));
        }
        // A joiner beside ASCII, at an end, or doubled.
        assert_eq!(visible("ad\u{200D}min"), "ad\\u{200D}min");
        assert_eq!(visible("\u{200C}TV"), "\\u{200C}TV");
        assert_eq!(visible("界\u{200D}"), "界\\u{200D}");
        assert_eq!(visible("界\u{200D}\u{200D}界"), "界\\u{200D}\\u{200D}界");
        // A run of selectors carries data; one at the start has nothing to select.
        assert_eq!(visible("x\u{FE0F}\u{FE01}"), "x\u{FE0F}\\u{FE01}");
        assert_eq!(visible("\u{FE0F}x"), "\\u{FE0F}x");
        assert_eq!(visible("x\u{E0100}\u{E0101}"), "x\u{E0100}\\u{E0101}");
        // Tags outside a flag, or a flag sequence without its end.
        assert_eq!(visible("🏴\u{E0067}x"), "🏴\\u{E0067}x");
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
