//! Configuration errors: every one names the file, line, column and field.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a configuration or policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, 0 when the file could not be read at all.
    pub line: usize,
    /// 1-based column (in characters), 0 when unknown.
    pub column: usize,
    /// Dotted path of the field, e.g. `segments[1].ipv4` or `zones.iot.reach_zones`.
    pub field: String,
    /// What is wrong, in words a homeowner can act on.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every error found while loading; loading reports all of them, not the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_lines(f, &self.0)
    }
}

/// Writes one item per line (no newline after the last): how every "all the
/// errors in a file" type displays.
pub(crate) fn write_lines<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// Collects errors for one source file, turning byte spans into line:column.
pub(crate) struct Reporter<'a> {
    file: &'a Path,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str, errors: &'a mut Vec<ConfigError>) -> Self {
        Self { file, text, errors }
    }

    /// Records an error at `span` (a byte range into the file text).
    pub(crate) fn at(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// `file:line:column` of a byte offset, to point at an earlier definition.
    pub(crate) fn position(&self, offset: usize) -> String {
        let (line, column) = line_col(self.text, offset);
        format!("{}:{line}:{column}", self.file.display())
    }

    /// Records a TOML syntax or shape error as reported by the parser.
    pub(crate) fn toml(&mut self, err: &toml::de::Error) {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let field = field_from_message(&message);
        self.at(span, field, message);
    }
}

/// Byte offset -> 1-based (line, column in chars).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The parser names the field inside its message (``unknown field `foo` ``,
/// ``missing field `bar` ``); lift it out so every error has a field.
fn field_from_message(message: &str) -> String {
    for prefix in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = message.split(prefix).nth(1) {
            if let Some(end) = rest.find('`') {
                return rest[..end].to_string();
            }
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 8), (2, 3));
        assert_eq!(line_col(text, 999), (3, 1));
    }

    #[test]
    fn field_is_lifted_from_parser_message() {
        assert_eq!(
            field_from_message("unknown field `colour`, expected one of `a`"),
            "colour"
        );
        assert_eq!(field_from_message("missing field `interface`"), "interface");
        assert_eq!(field_from_message("invalid type"), "");
    }
}
